//! The worker side of the chain: worker records, the message queue in both directions, gatekeeper and key
//! epoch records, and the administrative calls that appoint and rotate.
//!
//! # Message queue
//!
//! - **Chain to worker**: a block's execution emits [`Message`]s, each addressed to a [`Topic`] and numbered
//!   per topic (`topic_seq` counts from 0 and never skips). The header's `messages_root` is the RFC 6962
//!   Merkle root of their [`Message::leaf_hash`]es in emission order, so a worker reads only its topics,
//!   each message with an inclusion proof, and notices a dropped or replayed one by its sequence number. The
//!   next sequence number of each topic is in state ([`crate::state_keys::StateKey::TopicNext`]), so a
//!   worker that has caught up can prove the host withheld nothing at the tail.
//! - **Worker to chain**: an [`Egress`] is signed by its [`Origin`]'s key ([`SignedEgress`]) and numbered
//!   per origin; the chain accepts only the next number, so identical messages from redundant workers land
//!   once, and any account may carry one in a [`crate::Call::Egress`] transaction.
//!
//! # Keys (see the design, section 5)
//!
//! Gatekeepers hold the master key of the current key epoch; cluster keys are derived from it. Secrets only
//! ever travel inside HPKE envelopes sealed to a recipient's attested X25519 key ([`KeyShare`]).

use crate::{Address, Hash, encode, sha256};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use umbra_tee::{Confidence, Measurement, TcbStatus, TeeKind};

/// A worker's id: its ed25519 identity public key (generated and sealed inside the TEE).
pub type WorkerId = [u8; 32];
/// A cluster's id.
pub type ClusterId = u32;
/// A key epoch (numbered separately from consensus epochs; 0 means no master key yet).
pub type KeyEpoch = u64;
/// An X25519 public key (HPKE recipient key).
pub type X25519Public = [u8; 32];

/// Domain tag of an egress signature.
pub const EGRESS_DOMAIN: &[u8] = b"umbra/egress/v1";
/// Domain tag of a chain-to-worker message leaf.
pub const MESSAGE_DOMAIN: &[u8] = b"umbra/message/v1";

/// Who signs an egress message.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Origin {
    /// A registered worker, with its identity key.
    Worker(#[serde(with = "crate::block::hex32")] WorkerId),
    /// The gatekeepers, with the shared gatekeeper key of the current key epoch.
    Gatekeeper,
    /// A cluster, with the cluster's ed25519 key of the current key epoch.
    Cluster(ClusterId),
    /// A contract, with the contract's signing key of the current key epoch.
    Contract(#[serde(with = "crate::block::hex32")] [u8; 32]),
}

/// A worker-to-chain message before signing.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Egress {
    /// The signing origin.
    pub origin: Origin,
    /// The origin's next sequence number (0 first).
    pub seq: u64,
    /// What it says.
    pub payload: EgressPayload,
}

impl Egress {
    /// The exact bytes the origin signs: domain tag, chain id (length-prefixed) and the encoding.
    pub fn signing_bytes(&self, chain_id: &str) -> Vec<u8> {
        let mut out = EGRESS_DOMAIN.to_vec();
        out.extend_from_slice(&(chain_id.len() as u64).to_le_bytes());
        out.extend_from_slice(chain_id.as_bytes());
        out.extend_from_slice(&encode(self));
        out
    }
}

/// An [`Egress`] with its origin's ed25519 signature over [`Egress::signing_bytes`].
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedEgress {
    /// The signed message.
    pub egress: Egress,
    /// The origin's signature.
    #[serde(with = "crate::tx::hex64")]
    pub signature: [u8; 64],
}

/// An HPKE envelope carrying a secret to one worker (`to`'s attested X25519 key).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct KeyShare {
    /// The recipient worker.
    #[serde(with = "crate::block::hex32")]
    pub to: WorkerId,
    /// `enc (32) || ciphertext`, sealed to the recipient's X25519 key.
    #[serde(with = "crate::staking::hex_bytes")]
    pub sealed: Vec<u8>,
}

/// The public halves of a cluster key for one key epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ClusterPublic {
    /// HPKE recipient key of the cluster.
    #[serde(with = "crate::block::hex32")]
    pub x25519: X25519Public,
    /// ed25519 signing key of the cluster.
    #[serde(with = "crate::block::hex32")]
    pub ed25519: [u8; 32],
}

/// A cluster key delivered to some of its members.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ClusterKeys {
    /// The cluster.
    pub cluster: ClusterId,
    /// Its public halves (the chain records them the first time and checks them after).
    pub public: ClusterPublic,
    /// The cluster secret sealed to each recipient.
    pub shares: Vec<KeyShare>,
}

/// What a worker, the gatekeepers, a cluster or a contract tells the chain.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EgressPayload {
    /// Rollback protection (origin: a worker): its confidential state at `height` hashes to `state_hash`.
    StateCommitment {
        /// The height the worker's state reflects.
        height: u64,
        /// SHA-256 of the worker's sealed-state plaintext.
        state_hash: Hash,
    },
    /// A new master key epoch. The first one comes from the first gatekeeper (origin: that worker);
    /// rotations come from the rotation leader (origin: the gatekeepers, signed with the old epoch's key).
    MasterKey {
        /// The new key epoch (current + 1).
        key_epoch: KeyEpoch,
        /// The master HPKE public key of the epoch.
        #[serde(with = "crate::block::hex32")]
        master_public: X25519Public,
        /// The gatekeepers' shared ed25519 signing key of the epoch.
        #[serde(with = "crate::block::hex32")]
        gatekeeper_key: [u8; 32],
        /// The master secret sealed to every other gatekeeper.
        shares: Vec<KeyShare>,
        /// Every cluster's new key, sealed to its members (rotations only).
        clusters: Vec<ClusterKeys>,
    },
    /// The master key handed to a newly appointed gatekeeper (origin: the gatekeepers).
    MasterShare {
        /// The key epoch of the shared key.
        key_epoch: KeyEpoch,
        /// The sealed master secret.
        share: KeyShare,
    },
    /// Cluster keys handed to newly assigned members (origin: the gatekeepers).
    ClusterKeys {
        /// The key epoch the cluster key belongs to.
        key_epoch: KeyEpoch,
        /// The keys.
        keys: ClusterKeys,
    },
    /// The origin worker holds its keys of `key_epoch` (master key for a gatekeeper, cluster key for a
    /// cluster member).
    KeyAck {
        /// The acknowledged epoch.
        key_epoch: KeyEpoch,
    },
    /// The origin worker's benchmark score P over the fixed workload (see `crate::economics`); the
    /// chain bounds it by `params.economics.max_score` and records it while the worker has no session.
    Benchmark {
        /// The score.
        score: u64,
    },
    /// The origin worker answers a heartbeat challenge, with its instant benchmark score.
    Heartbeat {
        /// The challenge answered.
        challenge: Hash,
        /// The instant score (capped by the chain relative to the recorded benchmark).
        score: u64,
    },
    /// A contract's public keys for `key_epoch` (origin: its cluster; the sequence counts the cluster's
    /// `ContractInstantiated` messages).
    ContractKeys {
        /// The contract.
        #[serde(with = "crate::block::hex32")]
        contract: crate::contracts::ContractId,
        /// The key epoch.
        key_epoch: KeyEpoch,
        /// The public halves.
        public: crate::contracts::ContractPublic,
    },
    /// The outcome of a contract's command (origin: the contract; the sequence is the command's number).
    ContractReport {
        /// Success or why not.
        status: crate::contracts::CommandStatus,
        /// Gas used.
        gas_used: u64,
        /// The state root after the command.
        state_root: Hash,
        /// SHA-256 of the events' canonical encoding.
        events_hash: Hash,
        /// Transfers from the contract's account, in order.
        transfers: Vec<crate::contracts::ContractTransfer>,
        /// Bytes of the contract's storage (keys and values) after the command (its storage deposit follows it).
        stored_bytes: u64,
    },
    /// The origin worker computed another state root for a reported command (origin: a cluster member).
    ContractIncident {
        /// The contract.
        #[serde(with = "crate::block::hex32")]
        contract: crate::contracts::ContractId,
        /// The command.
        seq: u64,
        /// The worker's root.
        state_root: Hash,
    },
    /// A batch of an agent's egress receipts (origin: the worker that made the calls, a member of the agent's
    /// cluster): their Merkle root, so the owner can audit what the agent sent where.
    AgentReceipts {
        /// The agent.
        #[serde(with = "crate::block::hex32")]
        agent: crate::contracts::ContractId,
        /// The worker's batch number for this agent.
        batch_seq: u64,
        /// The Merkle root over the receipts' leaves.
        root: Hash,
        /// How many receipts.
        count: u32,
    },
    /// An agent's `env.wallet.transfer` (origin: a member of the agent's cluster): move `amount` from the
    /// agent's contract account to `to`, within the owner's daily spend cap.
    AgentTransfer {
        /// The agent.
        #[serde(with = "crate::block::hex32")]
        agent: crate::contracts::ContractId,
        /// The worker's id for it (returned to the handler).
        #[serde(with = "crate::agent_wallet::hex16")]
        id: [u8; 16],
        /// The recipient.
        to: crate::Address,
        /// How much.
        #[serde(with = "crate::genesis::amount_str")]
        amount: crate::Amount,
    },
    /// An agent's Ethereum address of `key_epoch` (origin: a member of the agent's cluster), signed by the
    /// contract's ed25519 key of that epoch over `crate::agent_wallet::wallet_signing_bytes`.
    AgentWallet {
        /// The agent.
        #[serde(with = "crate::block::hex32")]
        agent: crate::contracts::ContractId,
        /// The key epoch.
        key_epoch: KeyEpoch,
        /// The 20-byte address.
        #[serde(with = "crate::agent_wallet::hex20")]
        eth_address: [u8; 20],
        /// The contract's signature.
        #[serde(with = "crate::tx::hex64")]
        signature: [u8; 64],
    },
    /// An agent's attested output (origin: a member of the agent's cluster): `output` signed by the contract's
    /// ed25519 key and its Ethereum key of `key_epoch` (see `crate::agent_wallet`).
    AgentOutput {
        /// The agent.
        #[serde(with = "crate::block::hex32")]
        agent: crate::contracts::ContractId,
        /// The key epoch whose keys signed.
        key_epoch: KeyEpoch,
        /// The worker's random nonce (the EVM digest's `seq`).
        nonce: u64,
        /// The output.
        #[serde(with = "crate::staking::hex_bytes")]
        output: Vec<u8>,
        /// ed25519 over `crate::agent_wallet::output_signing_bytes`.
        #[serde(with = "crate::tx::hex64")]
        signature: [u8; 64],
        /// EIP-191 signature (65 bytes) over `umbra_crypto::attested_output_digest(agent, nonce, output)`.
        #[serde(with = "crate::staking::hex_bytes")]
        eth_signature: Vec<u8>,
    },
}

impl EgressPayload {
    /// A short, stable name for logs and receipts.
    pub fn kind(&self) -> &'static str {
        match self {
            EgressPayload::StateCommitment { .. } => "state_commitment",
            EgressPayload::MasterKey { .. } => "master_key",
            EgressPayload::MasterShare { .. } => "master_share",
            EgressPayload::ClusterKeys { .. } => "cluster_keys",
            EgressPayload::KeyAck { .. } => "key_ack",
            EgressPayload::Benchmark { .. } => "benchmark",
            EgressPayload::Heartbeat { .. } => "heartbeat",
            EgressPayload::ContractKeys { .. } => "contract_keys",
            EgressPayload::ContractReport { .. } => "contract_report",
            EgressPayload::ContractIncident { .. } => "contract_incident",
            EgressPayload::AgentReceipts { .. } => "agent_receipts",
            EgressPayload::AgentTransfer { .. } => "agent_transfer",
            EgressPayload::AgentWallet { .. } => "agent_wallet",
            EgressPayload::AgentOutput { .. } => "agent_output",
        }
    }
}

/// Whom a chain-to-worker message is for.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Topic {
    /// One worker.
    Worker(#[serde(with = "crate::block::hex32")] WorkerId),
    /// Every member of a cluster.
    Cluster(ClusterId),
    /// Every gatekeeper.
    Gatekeepers,
    /// Everyone.
    Broadcast,
}

/// A chain-to-worker message: emitted by a block's execution, committed in its `messages_root`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Message {
    /// The addressee.
    pub topic: Topic,
    /// Its number within the topic (0 first, no gaps).
    pub topic_seq: u64,
    /// The content: self-contained, so handling it needs no other state.
    pub body: MessageBody,
}

impl Message {
    /// The Merkle leaf of this message under a header's `messages_root`.
    pub fn leaf_hash(&self) -> Hash {
        sha256(&[MESSAGE_DOMAIN, &encode(self)])
    }
}

/// The content of a chain-to-worker message.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageBody {
    /// To the worker: it is registered (or re-registered) until `expires_at`.
    Registered {
        /// The worker.
        #[serde(with = "crate::block::hex32")]
        worker: WorkerId,
        /// Attestation confidence level recorded.
        confidence: Confidence,
        /// Height at which the attestation expires unless renewed.
        expires_at: u64,
    },
    /// To the worker: its registration is revoked and it must stop.
    Revoked {
        /// The worker.
        #[serde(with = "crate::block::hex32")]
        worker: WorkerId,
        /// Why (measurement withdrawn, TCB no longer accepted, expired ...).
        reason: String,
    },
    /// To the appointed worker: it is a gatekeeper now. `generate` is true for the first gatekeeper of a
    /// chain without a master key: it must create the master key of epoch 1.
    GatekeeperAppointed {
        /// The gatekeeper.
        #[serde(with = "crate::block::hex32")]
        worker: WorkerId,
        /// Create the first master key.
        generate: bool,
    },
    /// To the removed worker: it is no longer a gatekeeper and must erase the master key.
    GatekeeperRemoved {
        /// The former gatekeeper.
        #[serde(with = "crate::block::hex32")]
        worker: WorkerId,
    },
    /// To the gatekeepers: seal the master key of `key_epoch` to this new gatekeeper.
    ShareMaster {
        /// The new gatekeeper.
        #[serde(with = "crate::block::hex32")]
        worker: WorkerId,
        /// Its attested X25519 key.
        #[serde(with = "crate::block::hex32")]
        x25519: X25519Public,
        /// The epoch to share.
        key_epoch: KeyEpoch,
    },
    /// To the gatekeepers: derive the key of `cluster` for `key_epoch` and seal it to these members.
    ClusterKeyRequest {
        /// The cluster.
        cluster: ClusterId,
        /// The key epoch.
        key_epoch: KeyEpoch,
        /// The members to seal to, with their attested X25519 keys.
        members: Vec<(WorkerId, X25519Public)>,
    },
    /// To the gatekeepers: a rotation to `new_epoch` started; `leader` creates the new master key and
    /// seals it (and every cluster's new key) to everyone listed.
    RotationStarted {
        /// The epoch being created.
        new_epoch: KeyEpoch,
        /// The gatekeeper that generates the new master key.
        #[serde(with = "crate::block::hex32")]
        leader: WorkerId,
        /// Every gatekeeper with its X25519 key.
        gatekeepers: Vec<(WorkerId, X25519Public)>,
        /// Every cluster with its members and their X25519 keys.
        clusters: Vec<(ClusterId, Vec<(WorkerId, X25519Public)>)>,
    },
    /// To a gatekeeper: the master key of `key_epoch`, sealed to it.
    MasterKeyShare {
        /// The epoch.
        key_epoch: KeyEpoch,
        /// The master public key the secret must derive to.
        #[serde(with = "crate::block::hex32")]
        master_public: X25519Public,
        /// The gatekeeper signing key the secret must derive to.
        #[serde(with = "crate::block::hex32")]
        gatekeeper_key: [u8; 32],
        /// The sealed master secret.
        share: KeyShare,
    },
    /// To a cluster member: the cluster key of `key_epoch`, sealed to it.
    ClusterKey {
        /// The cluster.
        cluster: ClusterId,
        /// The epoch.
        key_epoch: KeyEpoch,
        /// The public halves the secret must derive to.
        public: ClusterPublic,
        /// The sealed cluster secret.
        share: KeyShare,
    },
    /// To the worker: it is now a member of `cluster`.
    AssignedToCluster {
        /// The worker.
        #[serde(with = "crate::block::hex32")]
        worker: WorkerId,
        /// The cluster.
        cluster: ClusterId,
    },
    /// To everyone: `key_epoch` is current; secrets of `retired` and older must be erased now.
    KeyEpochActivated {
        /// The new current epoch.
        key_epoch: KeyEpoch,
        /// The epoch retired by this activation (none for the first).
        retired: Option<KeyEpoch>,
    },
    /// To a computing worker: answer `challenge` with a `Heartbeat` egress by height `deadline`.
    HeartbeatChallenge {
        /// The worker.
        #[serde(with = "crate::block::hex32")]
        worker: WorkerId,
        /// The block's challenge.
        challenge: Hash,
        /// The last height the answer counts as on time.
        deadline: u64,
    },
    /// To the cluster: a contract was instantiated on it. Members derive its key, publish its public halves
    /// (origin `Cluster`) and run `init(args)` if `args` is not empty.
    ContractInstantiated {
        /// The contract.
        #[serde(with = "crate::block::hex32")]
        contract: crate::contracts::ContractId,
        /// Its code's language.
        kind: crate::contracts::CodeKind,
        /// Its code (so the message is self-contained).
        #[serde(with = "crate::staking::hex_bytes")]
        code: Vec<u8>,
        /// The deployer (the caller of `init`).
        deployer: Address,
        /// Arguments of `init`.
        #[serde(with = "crate::staking::hex_bytes")]
        args: Vec<u8>,
        /// The block's timestamp.
        time_ms: u64,
    },
    /// To the cluster: a sealed command, the contract's `seq`-th, to run in this order.
    ContractCommand {
        /// The contract.
        #[serde(with = "crate::block::hex32")]
        contract: crate::contracts::ContractId,
        /// The command's number (its report's egress sequence).
        seq: u64,
        /// The sending account (the caller; bound in the envelope's AAD).
        sender: Address,
        /// The key epoch the envelope is sealed to.
        key_epoch: KeyEpoch,
        /// The most gas it may use.
        gas_limit: u64,
        /// The envelope.
        #[serde(with = "crate::staking::hex_bytes")]
        sealed: Vec<u8>,
        /// The block's timestamp.
        time_ms: u64,
    },
    /// To the cluster: the chain recorded this state root for a command; a member with another root
    /// reports an incident.
    ContractResult {
        /// The contract.
        #[serde(with = "crate::block::hex32")]
        contract: crate::contracts::ContractId,
        /// The command.
        seq: u64,
        /// The recorded root.
        state_root: Hash,
    },
    /// To the cluster: an agent's record changed (deploy, upgrade, pause, policy, secrets, owner); `code` is
    /// the code to run from now on when it changed (deploy and upgrade; empty otherwise), so the message is
    /// self-contained.
    AgentUpdated {
        /// The whole record as it stands now.
        record: crate::agents::AgentRecord,
        /// New code, or empty if it did not change.
        #[serde(with = "crate::staking::hex_bytes")]
        code: Vec<u8>,
    },
}

/// `registry`: a registered worker.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Its identity key.
    #[serde(with = "crate::block::hex32")]
    pub id: WorkerId,
    /// Its attested HPKE key.
    #[serde(with = "crate::block::hex32")]
    pub x25519: X25519Public,
    /// The operator account bound in its report data (the account that registered it).
    pub operator: Address,
    /// The TEE kind of its quote; `Dev` means simulated and proves nothing about hardware.
    pub tee: TeeKind,
    /// The measured code.
    pub measurement: Measurement,
    /// The TCB status of its platform at registration (`Simulated` for dev).
    pub tcb_status: TcbStatus,
    /// Advisories of its platform.
    pub advisories: Vec<String>,
    /// How much the attestation is worth (3 = simulated).
    pub confidence: Confidence,
    /// Height of the first registration.
    pub registered_at: u64,
    /// Height of the latest (re-)registration.
    pub attested_at: u64,
    /// Height from which the attestation is expired unless renewed.
    pub expires_at: u64,
    /// Its cluster, if assigned.
    pub cluster: Option<ClusterId>,
    /// Whether it is a gatekeeper.
    pub gatekeeper: bool,
    /// The latest key epoch it acknowledged holding.
    pub key_epoch: KeyEpoch,
    /// Its latest rollback commitment: (height, state hash).
    pub commitment: Option<(u64, Hash)>,
    /// Set when revoked, with the reason; a revoked worker must register again.
    pub revoked: Option<String>,
}

impl WorkerRecord {
    /// True when the worker is usable at `height`: not revoked and not expired.
    pub fn is_active(&self, height: u64) -> bool {
        self.revoked.is_none() && height < self.expires_at
    }
}

/// `registry`: the gatekeepers and the key epochs.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct KeysRecord {
    /// The gatekeepers, in appointment order.
    pub gatekeepers: Vec<WorkerIdHex>,
    /// The current key epoch (0: no master key yet).
    pub key_epoch: KeyEpoch,
    /// The master public key of the current epoch.
    pub master_public: Option<WorkerIdHex>,
    /// The gatekeeper signing key of the current epoch.
    pub gatekeeper_key: Option<WorkerIdHex>,
    /// A rotation in progress.
    pub rotation: Option<Rotation>,
}

/// A 32-byte key written as hex in JSON.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct WorkerIdHex(#[serde(with = "crate::block::hex32")] pub [u8; 32]);

/// A key rotation in progress.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Rotation {
    /// The epoch being created.
    pub new_epoch: KeyEpoch,
    /// The gatekeeper that generates it.
    pub leader: WorkerIdHex,
    /// Height the rotation started.
    pub started_at: u64,
    /// The new master public key, once the leader published it.
    pub master_public: Option<WorkerIdHex>,
    /// The new gatekeeper key, once published.
    pub gatekeeper_key: Option<WorkerIdHex>,
    /// Workers (gatekeepers and cluster members) that still have to acknowledge the new epoch.
    pub pending: Vec<WorkerIdHex>,
}

/// `registry`: a cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// The cluster id.
    pub id: ClusterId,
    /// Member workers, ascending.
    pub members: Vec<WorkerIdHex>,
    /// Public halves of its key, per key epoch still kept (current, and the new one during a rotation).
    pub keys: Vec<(KeyEpoch, ClusterPublic)>,
    /// Paused by governance (an emergency): the chain takes no new contracts or commands for it until
    /// resumed; commands already ordered still run.
    #[serde(default)]
    pub paused: bool,
}

/// Administrative calls of the registry. Until on-chain governance exists they are allowed only from the
/// genesis `registry.sudo` account, which only a dev chain may have; governance replaces that origin.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminCall {
    /// Replace the attestation policy; workers it no longer accepts are revoked.
    SetPolicy {
        /// The new policy.
        policy: umbra_tee::Policy,
    },
    /// Add a measurement to the allow-list.
    AllowMeasurement {
        /// The measurement.
        measurement: Measurement,
    },
    /// Withdraw a measurement; workers running it are revoked.
    WithdrawMeasurement {
        /// The measurement.
        measurement: Measurement,
    },
    /// Appoint a registered, active worker as gatekeeper (refused during a rotation).
    AppointGatekeeper {
        /// The worker.
        #[serde(with = "crate::block::hex32")]
        worker: WorkerId,
    },
    /// Remove a gatekeeper (refused during a rotation, and for the last one).
    RemoveGatekeeper {
        /// The worker.
        #[serde(with = "crate::block::hex32")]
        worker: WorkerId,
    },
    /// Create an empty cluster with this id.
    CreateCluster {
        /// The new cluster's id.
        cluster: ClusterId,
    },
    /// Make an active worker a member of a cluster; the gatekeepers then send it the cluster key.
    AssignWorker {
        /// The worker.
        #[serde(with = "crate::block::hex32")]
        worker: WorkerId,
        /// The cluster.
        cluster: ClusterId,
    },
    /// Start a master key rotation to the next key epoch.
    StartRotation,
    /// Pause (or resume) a cluster: while paused the chain refuses new contracts and commands for it.
    PauseCluster {
        /// The cluster.
        cluster: ClusterId,
        /// `true` to pause, `false` to resume.
        paused: bool,
    },
    /// Set a cluster's own contract settings (`None`: the chain's `params.contracts` value).
    SetClusterContracts {
        /// The cluster.
        cluster: ClusterId,
        /// Price of one unit of gas of its contracts, in the smallest token unit.
        gas_price: Option<u64>,
        /// Largest code its contracts may run, in bytes (at most the chain's `max_code_bytes`).
        max_code_bytes: Option<u32>,
    },
    /// Set a cluster's storage deposit per byte of its contracts' code and state (`None`: the chain's
    /// `params.contracts.storage_deposit_per_byte`).
    SetClusterStorageDeposit {
        /// The cluster.
        cluster: ClusterId,
        /// Tokens (smallest unit) per stored byte.
        per_byte: Option<u64>,
    },
}

impl AdminCall {
    /// A short, stable name for logs and receipts.
    pub fn kind(&self) -> &'static str {
        match self {
            AdminCall::SetPolicy { .. } => "set_policy",
            AdminCall::AllowMeasurement { .. } => "allow_measurement",
            AdminCall::WithdrawMeasurement { .. } => "withdraw_measurement",
            AdminCall::AppointGatekeeper { .. } => "appoint_gatekeeper",
            AdminCall::RemoveGatekeeper { .. } => "remove_gatekeeper",
            AdminCall::CreateCluster { .. } => "create_cluster",
            AdminCall::AssignWorker { .. } => "assign_worker",
            AdminCall::StartRotation => "start_rotation",
            AdminCall::PauseCluster { .. } => "pause_cluster",
            AdminCall::SetClusterContracts { .. } => "set_cluster_contracts",
            AdminCall::SetClusterStorageDeposit { .. } => "set_cluster_storage_deposit",
        }
    }
}

/// Registry parameters (in [`crate::Params`], so governance can change them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryParams {
    /// Blocks an attestation stays valid after (re-)registration.
    pub attestation_validity_blocks: u64,
    /// Blocks between a worker's rollback commitments.
    pub commitment_interval_blocks: u64,
    /// Blocks after which a rotation completes with only the gatekeepers' acknowledgements (members that
    /// did not acknowledge get their keys re-sent on request).
    pub rotation_timeout_blocks: u64,
    /// Largest accepted quote, in bytes.
    pub max_quote_bytes: u32,
    /// Largest accepted collateral, in bytes.
    pub max_collateral_bytes: u32,
    /// Most chain-to-worker messages one block may emit.
    pub max_block_messages: u32,
    /// A master key rotation starts by itself every this many blocks (at heights that are multiples of
    /// it, when a key exists and no rotation is running); 0 = only when governance starts one.
    pub rotation_interval_blocks: u64,
}

impl Default for RegistryParams {
    fn default() -> Self {
        RegistryParams {
            attestation_validity_blocks: 1_000_000,
            commitment_interval_blocks: 100,
            rotation_timeout_blocks: 1_000,
            max_quote_bytes: 16 * 1024,
            max_collateral_bytes: 48 * 1024,
            max_block_messages: 10_000,
            rotation_interval_blocks: 0,
        }
    }
}

/// The registry's genesis: policy (with the initial measurement allow-list), collateral and the dev
/// administrator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryGenesis {
    /// The attestation policy, including the measurement allow-list.
    pub policy: umbra_tee::Policy,
    /// Intel collateral (JSON, as `umbra_tee::Collateral::from_json` reads) stored on chain from the start.
    pub collateral: Vec<String>,
    /// The dev chain's administrator, allowed to make [`AdminCall`]s until governance exists. Only a
    /// chain whose policy enables dev attestation may have one.
    pub sudo: Option<Address>,
}

impl RegistryGenesis {
    /// True if simulated (`dev`) attestation is accepted.
    pub fn dev_enabled(&self) -> bool {
        self.policy.dev_enabled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;

    #[test]
    fn egress_signing_bytes_bind_the_chain_id() {
        let e = Egress { origin: Origin::Gatekeeper, seq: 1, payload: EgressPayload::KeyAck { key_epoch: 2 } };
        assert_ne!(e.signing_bytes("a"), e.signing_bytes("b"));
        assert!(e.signing_bytes("a").starts_with(EGRESS_DOMAIN));
    }

    #[test]
    fn messages_round_trip_and_their_leaf_changes_with_the_sequence() {
        let m = Message {
            topic: Topic::Worker([1; 32]),
            topic_seq: 0,
            body: MessageBody::AssignedToCluster { worker: [1; 32], cluster: 7 },
        };
        assert_eq!(decode::<Message>(&encode(&m), 1 << 16), Ok(m.clone()));
        let json = serde_json::to_string(&m).expect("json");
        assert_eq!(serde_json::from_str::<Message>(&json).expect("parses"), m);
        let mut n = m.clone();
        n.topic_seq = 1;
        assert_ne!(m.leaf_hash(), n.leaf_hash());
    }
}
