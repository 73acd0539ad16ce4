//! The worker's confidential state: what is sealed to the data directory after every applied batch, and
//! the sealed identity keys. Plain data, separate from live handles (light client, platform).

use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::BTreeMap;
use umbra_types::registry::{ClusterId, KeyEpoch, SignedEgress, Topic, WorkerId};
use umbra_types::{Hash, Header, ValidatorKey, encode, sha256};

/// Sealing label of the identity keys file.
pub(crate) const KEYS_LABEL: &str = "umbra-worker/keys/v1";
/// Sealing label of the state file.
pub(crate) const STATE_LABEL: &str = "umbra-worker/state/v1";
/// File name of the sealed identity keys.
pub(crate) const KEYS_FILE: &str = "worker-keys.sealed";
/// File name of the sealed state.
pub(crate) const STATE_FILE: &str = "worker-state.sealed";

/// The identity seed and HPKE secret, sealed once on first start.
#[derive(BorshSerialize, BorshDeserialize)]
pub(crate) struct SealedKeys {
    pub(crate) identity_seed: [u8; 32],
    pub(crate) x25519_secret: [u8; 32],
}

impl Drop for SealedKeys {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.identity_seed.zeroize();
        self.x25519_secret.zeroize();
    }
}

/// A secret key held for one key epoch; never printed.
#[derive(Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct HeldKey(pub(crate) [u8; 32]);

impl std::fmt::Debug for HeldKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldKey(..)")
    }
}

impl Drop for HeldKey {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.0.zeroize();
    }
}

/// Where a topic's message numbering stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) enum TopicCursor {
    /// The next sequence number expected.
    Next(u64),
    /// Not known yet (a cluster topic joined mid-way): set from the first `TopicNext` proof.
    Unknown,
    /// A cluster topic just joined: its messages up to the applied height must be replayed from the
    /// first one ([`crate::Enclave::replay`]) before it is followed.
    Replay,
}

/// The confidential state the rollback commitment covers.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct WorkerState {
    /// Layout version.
    pub(crate) version: u8,
    /// The worker's id (so a state file of another worker on the same machine is refused).
    pub(crate) id: WorkerId,
    /// The chain.
    pub(crate) chain_id: String,
    /// The pinned genesis header.
    pub(crate) genesis: Header,
    /// Height of the last applied block.
    pub(crate) height: u64,
    /// Its hash.
    pub(crate) last_hash: Hash,
    /// Light client checkpoint: the highest certified header and its epoch's committee.
    pub(crate) checkpoint: Header,
    /// The committee of the checkpoint's epoch.
    pub(crate) committee: Vec<ValidatorKey>,
    /// Per topic, the next sequence number expected.
    pub(crate) topics: BTreeMap<Topic, TopicCursor>,
    /// Seen `Registered` (and not `Revoked` since).
    pub(crate) registered: bool,
    /// When the registration expires.
    pub(crate) expires_at: u64,
    /// The revocation reason, if revoked.
    pub(crate) revoked: Option<String>,
    /// Whether this worker is a gatekeeper.
    pub(crate) gatekeeper: bool,
    /// Its cluster.
    pub(crate) cluster: Option<ClusterId>,
    /// The current (activated) key epoch.
    pub(crate) key_epoch: KeyEpoch,
    /// Master keys held, by epoch.
    pub(crate) masters: BTreeMap<KeyEpoch, HeldKey>,
    /// Cluster keys held, by (epoch, cluster).
    pub(crate) clusters: BTreeMap<(KeyEpoch, ClusterId), HeldKey>,
    /// The next sequence number of `Origin::Worker(self)`.
    pub(crate) egress_seq: u64,
    /// The contracts of this worker's cluster and their storage.
    pub(crate) contracts: crate::contracts::ContractsState,
    /// The agents of this worker's cluster, as the chain last recorded them.
    pub(crate) agents: BTreeMap<umbra_types::contracts::ContractId, umbra_types::agents::AgentRecord>,
}

impl WorkerState {
    /// SHA-256 of the canonical encoding: what a `StateCommitment` carries.
    pub(crate) fn hash(&self) -> Hash {
        sha256(&[b"umbra-worker/state/v1", &encode(self)])
    }
}

/// What the state file holds: the committed state and bookkeeping outside the commitment.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct StateFile {
    /// The committed state.
    pub(crate) state: WorkerState,
    /// Egress not yet seen consumed on chain, to submit again until it is.
    pub(crate) outbox: Vec<SignedEgress>,
    /// The latest commitment sent: (height, state hash).
    pub(crate) commitment: Option<(u64, Hash)>,
}
