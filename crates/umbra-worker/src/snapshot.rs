//! Contract state transfer to a worker joining a cluster: a member seals its contracts' state to the joiner,
//! the joiner checks every root against the chain and follows on from there.
//!
//! # Why it is shaped this way
//!
//! Replaying a cluster's history from the chain needs every command's key epoch, and a rotation erases the
//! old epochs' keys (`docs/worker-protocol.md`, "Keys"): a worker joining after a rotation cannot open the
//! older commands. A member holds the state already, so the joiner asks one for it:
//!
//! 1. The joiner's host names members' HTTP endpoints (`--snapshot-peer`; endpoints are not on chain, so they
//!    are only hints) and sends a [`SnapshotRequest`]: the joiner's id, its cluster, a `state_getValue` proof
//!    of its own registration record, signed by its identity key.
//! 2. The member checks, on its own light client, the proof (certificate and state proof) and that the record
//!    is a registered, active (attestation not expired, not revoked) member of the same cluster, other than
//!    itself, proven at most [`MAX_PROOF_AGE_BLOCKS`] blocks before its own head. It answers a
//!    [`SnapshotReply`]: its contracts' state at its applied height (code, storage, next command number, the
//!    cluster topic's next message number) sealed with HPKE to the X25519 key *of that record* (attested on
//!    chain, never a key the request names), and signed by its identity key.
//! 3. The joiner's enclave verifies the signature, that the member is an active member of its cluster (a proof
//!    the host fetches), opens the envelope, and for every contract checks the chain's records: the code hash,
//!    the cluster, and that the root it recomputes from the storage equals the root the chain recorded for
//!    the contract's last command (`ContractCommand { contract, seq }.result.state_root`). Then it applies the
//!    cluster topic's messages after the snapshot's block (verified like a replay) and follows the topic.
//!
//! The host carries only sealed bytes and signed, public metadata (heights, ids). It may withhold or delay a
//! snapshot (the joiner then asks another member or falls back to replaying the history) but cannot read,
//! alter or substitute one.

use crate::contracts::ContractState;
use crate::verify::{Rejection, decode_value, verify_value};
use borsh::{BorshDeserialize, BorshSerialize};
use rand::SeedableRng as _;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use umbra_crypto::{Keypair, open_envelope, seal_envelope};
use umbra_light::LightClient;
use umbra_rpc::StateValueResponse;
use umbra_types::agents::AgentRecord;
use umbra_types::contracts::{CodeKind, CommandRecord, ContractId, ContractRecord, code_hash, state_root};
use umbra_types::registry::{ClusterId, WorkerId};
use umbra_types::state_keys::StateKey;
use umbra_types::{Address, Hash, WorkerRecord, decode, encode, sha256};

/// HPKE label of a snapshot envelope.
pub const LABEL_SNAPSHOT: &str = "contract-snapshot";
/// Largest snapshot reply a joiner reads (and a member sends).
pub const MAX_SNAPSHOT_BYTES: usize = 64 << 20;
/// Largest snapshot request a member reads.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// How far behind the member's head the requester's record proof may be.
pub const MAX_PROOF_AGE_BLOCKS: u64 = 600;

/// What a joiner sends a member (`POST /snapshot`, JSON).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotRequest {
    /// The joiner's worker id.
    pub requester: Hash,
    /// The cluster it joined.
    pub cluster: ClusterId,
    /// `state_getValue(Worker(requester))`: its registration record with a proof.
    pub record: StateValueResponse,
    /// Hex of the identity key's signature over [`request_signing_bytes`].
    pub signature: String,
}

/// What a member answers: public metadata, the sealed state and the member's signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SnapshotReply {
    /// The member that made it.
    pub member: WorkerId,
    /// The worker it is sealed to.
    pub joiner: WorkerId,
    /// The cluster.
    pub cluster: ClusterId,
    /// The member's applied height the state is at.
    pub height: u64,
    /// HPKE envelope (label [`LABEL_SNAPSHOT`], AAD [`snapshot_aad`]) of the encoded state.
    pub sealed: Vec<u8>,
    /// The member's identity signature over [`reply_signing_bytes`].
    pub signature: [u8; 64],
}

/// One contract as a snapshot carries it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct ContractSnapshot {
    pub(crate) id: ContractId,
    pub(crate) kind: CodeKind,
    pub(crate) code: Vec<u8>,
    pub(crate) storage: Vec<(Vec<u8>, Vec<u8>)>,
    /// The next command number: the state is the one after command `next_seq - 1`.
    pub(crate) next_seq: u64,
}

/// The plaintext of a snapshot: the cluster's contracts at the member's applied block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct SnapshotPlain {
    pub(crate) cluster: ClusterId,
    pub(crate) height: u64,
    /// The hash of block `height`: ties the snapshot to the joiner's chain.
    pub(crate) last_hash: Hash,
    /// The cluster topic's next message number at `height`.
    pub(crate) topic_next: u64,
    /// The cluster's `Origin::Cluster` egress numbering.
    pub(crate) cluster_seq: u64,
    pub(crate) contracts: Vec<ContractSnapshot>,
}

/// Why a snapshot request or a snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Too large.
    #[error("a snapshot message of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// Does not decode.
    #[error("malformed snapshot message: {0}")]
    Malformed(String),
    /// A signature does not verify (tampered request or reply).
    #[error("the {0}'s signature does not verify (tampered or forged)")]
    BadSignature(&'static str),
    /// The reply is addressed to another worker.
    #[error("the snapshot is for worker {to}, not this one")]
    NotForMe {
        /// The addressee.
        to: Hash,
    },
    /// The requester (or the answering member) is not an active member of the cluster on chain.
    #[error("worker {worker} is not an active member of cluster {cluster} on chain: {reason}")]
    NotAMember {
        /// The worker.
        worker: Hash,
        /// The cluster.
        cluster: ClusterId,
        /// Why.
        reason: String,
    },
    /// A proof did not verify.
    #[error("proof: {0}")]
    Proof(#[from] Rejection),
    /// The envelope does not open (tampered, or sealed to another key).
    #[error("the snapshot envelope does not open with this worker's key: {0}")]
    Envelope(String),
    /// The worker cannot serve or take a snapshot now.
    #[error("not ready: {0}")]
    NotReady(String),
    /// The snapshot is ahead of the joiner: it must apply more blocks first.
    #[error("the snapshot is at height {snapshot}, above this worker's {ours}: catch up first")]
    Ahead {
        /// The snapshot's height.
        snapshot: u64,
        /// The joiner's.
        ours: u64,
    },
    /// A contract's recomputed root is not the one the chain recorded.
    #[error(
        "contract {contract}: the snapshot's state root {ours} is not the root {chain} the chain recorded after command {seq}"
    )]
    RootMismatch {
        /// The contract.
        contract: Hash,
        /// The command.
        seq: u64,
        /// Recomputed from the snapshot.
        ours: Hash,
        /// Recorded on chain.
        chain: Hash,
    },
    /// The chain has not recorded the report of the snapshot's last command yet.
    #[error("contract {contract}: command {seq} is not reported on chain yet; try again")]
    NotReported {
        /// The contract.
        contract: Hash,
        /// The command.
        seq: u64,
    },
    /// The snapshot disagrees with the chain's record of a contract (code, cluster, command count).
    #[error("contract {contract}: {reason}")]
    Inconsistent {
        /// The contract.
        contract: Hash,
        /// What differs.
        reason: String,
    },
    /// The joiner's chain and the snapshot's block differ (another fork, or a wrong height).
    #[error("the snapshot's block does not match this worker's chain: {0}")]
    OtherChain(String),
    /// The verified state could not be sealed to the data directory (nothing changed).
    #[error("cannot seal the caught-up state: {0}")]
    Persist(String),
}

/// The bytes a requester signs: `SHA-256("umbra/snapshot-request/v1" || borsh(chain_id, requester, cluster,
/// record header hash))`.
pub fn request_signing_bytes(
    chain_id: &str,
    requester: &WorkerId,
    cluster: ClusterId,
    record_header: &Hash,
) -> Vec<u8> {
    let body = encode(&(chain_id.to_string(), *requester, cluster, *record_header));
    sha256(&[b"umbra/snapshot-request/v1", &body]).0.to_vec()
}

/// The bytes a member signs: `SHA-256("umbra/snapshot-reply/v1" || borsh(chain_id, member, joiner, cluster,
/// height, SHA-256(sealed)))`.
pub fn reply_signing_bytes(chain_id: &str, reply: &SnapshotReply) -> Vec<u8> {
    let body = encode(&(
        chain_id.to_string(),
        reply.member,
        reply.joiner,
        reply.cluster,
        reply.height,
        sha256(&[&reply.sealed]),
    ));
    sha256(&[b"umbra/snapshot-reply/v1", &body]).0.to_vec()
}

/// The AAD of a snapshot envelope: borsh of `(chain_id, member, joiner, cluster, height)`.
pub fn snapshot_aad(chain_id: &str, member: &WorkerId, joiner: &WorkerId, cluster: ClusterId, height: u64) -> Vec<u8> {
    encode(&(chain_id.to_string(), *member, *joiner, cluster, height))
}

/// Checks that `record` (proven at `height`) is an active member of `cluster`; returns it.
pub(crate) fn check_member<'a>(
    record: Option<&'a WorkerRecord>,
    worker: &WorkerId,
    cluster: ClusterId,
    height: u64,
) -> Result<&'a WorkerRecord, SnapshotError> {
    let refuse = |reason: String| SnapshotError::NotAMember { worker: Hash(*worker), cluster, reason };
    let Some(r) = record else { return Err(refuse("no registration record".into())) };
    if r.id != *worker {
        return Err(refuse(format!("the record proven is worker {}'s", Hash(r.id))));
    }
    if let Some(why) = &r.revoked {
        return Err(refuse(format!("revoked ({why})")));
    }
    if !r.is_active(height) {
        return Err(refuse(format!("its attestation expired at height {} (proof at {height})", r.expires_at)));
    }
    if r.cluster != Some(cluster) {
        return Err(refuse(format!("its cluster is {:?}", r.cluster)));
    }
    Ok(r)
}

/// What a member serves snapshots from: a copy of its contracts and chain view after every applied batch.
pub struct SnapshotView {
    pub(crate) chain_id: String,
    pub(crate) identity: Keypair,
    pub(crate) height: u64,
    pub(crate) last_hash: Hash,
    pub(crate) cluster: Option<ClusterId>,
    /// The cluster topic's next message number, once the member follows it.
    pub(crate) topic_next: Option<u64>,
    pub(crate) cluster_seq: u64,
    pub(crate) contracts: crate::contracts::SharedContracts,
    pub(crate) light: LightClient,
}

impl std::fmt::Debug for SnapshotView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotView").field("height", &self.height).finish_non_exhaustive()
    }
}

impl SnapshotView {
    /// The plaintext of this member's snapshot of its cluster, or why it cannot make one.
    pub(crate) fn plain(&self) -> Result<SnapshotPlain, SnapshotError> {
        let cluster = self.cluster.ok_or_else(|| SnapshotError::NotReady("this worker is in no cluster".into()))?;
        let topic_next = self
            .topic_next
            .ok_or_else(|| SnapshotError::NotReady("this worker has not caught up with its cluster yet".into()))?;
        let mut contracts = Vec::new();
        for (id, c) in self.contracts.iter().filter(|(_, c)| c.cluster == cluster) {
            if let Some(why) = &c.stalled {
                return Err(SnapshotError::NotReady(format!("contract {} is stalled here: {why}", Hash(*id))));
            }
            contracts.push(ContractSnapshot {
                id: *id,
                kind: c.kind,
                code: c.code.clone(),
                storage: c.storage.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                next_seq: c.next_seq,
            });
        }
        Ok(SnapshotPlain {
            cluster,
            height: self.height,
            last_hash: self.last_hash,
            topic_next,
            cluster_seq: self.cluster_seq,
            contracts,
        })
    }

    /// Answers `request`: checks the requester on this member's verified chain view, then seals the snapshot
    /// to the requester's attested key and signs it.
    pub(crate) fn answer(&self, request: &SnapshotRequest) -> Result<SnapshotReply, SnapshotError> {
        let requester = request.requester.0;
        let signature: [u8; 64] = hex::decode(request.signature.trim_start_matches("0x"))
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| SnapshotError::Malformed("the signature is not 64 bytes of hex".into()))?;
        let bytes = request_signing_bytes(&self.chain_id, &requester, request.cluster, &request.record.header.hash());
        umbra_crypto::verify(&Address(requester), &bytes, &signature)
            .map_err(|_| SnapshotError::BadSignature("request"))?;
        let (proven_at, value) = verify_value(&self.light, &StateKey::Worker(requester), &request.record)?;
        let record = value.map(|b| decode_value::<WorkerRecord>(&b, "worker record")).transpose()?;
        if proven_at.saturating_add(MAX_PROOF_AGE_BLOCKS) < self.height {
            return Err(SnapshotError::NotAMember {
                worker: request.requester,
                cluster: request.cluster,
                reason: format!("the record's proof is at height {proven_at}, too old for head {}", self.height),
            });
        }
        let cluster = self.cluster.ok_or_else(|| SnapshotError::NotReady("this worker is in no cluster".into()))?;
        if cluster != request.cluster {
            return Err(SnapshotError::NotAMember {
                worker: request.requester,
                cluster: request.cluster,
                reason: format!("this member serves cluster {cluster}"),
            });
        }
        // Checked before any state is copied: only a member of the cluster costs the member work.
        let record = check_member(record.as_ref(), &requester, cluster, proven_at)?;
        if requester == self.identity.address().0 {
            return Err(SnapshotError::Malformed("a worker does not ask itself for a snapshot".into()));
        }
        let plain = self.plain()?;
        seal_reply(&self.chain_id, &self.identity, requester, &record.x25519, &plain)
    }
}

/// Seals `plain` to `joiner`'s key `to` and signs it as `member`.
pub(crate) fn seal_reply(
    chain_id: &str,
    member: &Keypair,
    joiner: WorkerId,
    to: &[u8; 32],
    plain: &SnapshotPlain,
) -> Result<SnapshotReply, SnapshotError> {
    let me = member.address().0;
    let aad = snapshot_aad(chain_id, &me, &joiner, plain.cluster, plain.height);
    let bytes = zeroize::Zeroizing::new(encode(plain));
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(rand::random());
    let sealed = seal_envelope(to, LABEL_SNAPSHOT, &aad, &bytes, &mut rng)
        .map_err(|e| SnapshotError::Envelope(format!("cannot seal to the requester's key: {e}")))?;
    let mut reply =
        SnapshotReply { member: me, joiner, cluster: plain.cluster, height: plain.height, sealed, signature: [0; 64] };
    reply.signature = member.sign(&reply_signing_bytes(chain_id, &reply));
    Ok(reply)
}

/// Checks `reply`'s addressee and signature and opens it with `secret` (the joiner's X25519 secret).
pub(crate) fn open_reply(
    chain_id: &str,
    me: &WorkerId,
    secret: &[u8; 32],
    reply: &SnapshotReply,
) -> Result<SnapshotPlain, SnapshotError> {
    if reply.joiner != *me {
        return Err(SnapshotError::NotForMe { to: Hash(reply.joiner) });
    }
    umbra_crypto::verify(&Address(reply.member), &reply_signing_bytes(chain_id, reply), &reply.signature)
        .map_err(|_| SnapshotError::BadSignature("snapshot reply"))?;
    let aad = snapshot_aad(chain_id, &reply.member, me, reply.cluster, reply.height);
    let bytes = zeroize::Zeroizing::new(
        open_envelope(secret, LABEL_SNAPSHOT, &aad, &reply.sealed)
            .map_err(|e| SnapshotError::Envelope(e.to_string()))?,
    );
    let plain: SnapshotPlain =
        decode(&bytes, MAX_SNAPSHOT_BYTES).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
    if plain.cluster != reply.cluster || plain.height != reply.height {
        return Err(SnapshotError::Malformed("the sealed state names another cluster or height than the reply".into()));
    }
    Ok(plain)
}

/// The state keys the joiner needs proven to check a snapshot from `member`: the member's record, and per
/// contract its record, its agent record, and the command the state is after.
pub(crate) fn needed_keys(plain: &SnapshotPlain, member: &WorkerId) -> Vec<StateKey> {
    let mut keys = vec![StateKey::Worker(*member)];
    for c in &plain.contracts {
        keys.push(StateKey::Contract(c.id));
        keys.push(StateKey::Agent(c.id));
        if c.next_seq > 0 {
            keys.push(StateKey::ContractCommand { contract: c.id, seq: c.next_seq - 1 });
        }
    }
    keys
}

/// Proven values by key (each verified by the caller).
pub(crate) type Proven = BTreeMap<StateKey, Option<Vec<u8>>>;

/// What a verified snapshot installs: the contracts and the agents' records.
pub(crate) type Verified = (BTreeMap<ContractId, ContractState>, BTreeMap<ContractId, AgentRecord>);

/// Checks every contract of `plain` against the chain's `values` and returns them as the worker runs them,
/// with the agents' records. A contract with no command yet has no recorded root: it is taken on the
/// member's attestation and checked against the chain's root at its first command's result (an incident
/// otherwise).
pub(crate) fn verify_contracts(plain: &SnapshotPlain, values: &Proven) -> Result<Verified, SnapshotError> {
    let get = |key: &StateKey| values.get(key).cloned().flatten();
    let mut contracts = BTreeMap::new();
    let mut agents = BTreeMap::new();
    for c in &plain.contracts {
        let id = Hash(c.id);
        let inconsistent = |reason: String| SnapshotError::Inconsistent { contract: id, reason };
        let record = get(&StateKey::Contract(c.id))
            .map(|b| decode_value::<ContractRecord>(&b, "contract record"))
            .transpose()?
            .ok_or_else(|| inconsistent("no such contract on chain".into()))?;
        if record.cluster != plain.cluster {
            return Err(inconsistent(format!("the chain runs it on cluster {}", record.cluster)));
        }
        if record.kind != c.kind || record.code_hash != code_hash(c.kind, &c.code) {
            return Err(inconsistent("its code is not the code the chain records".into()));
        }
        if c.next_seq > record.commands {
            return Err(inconsistent(format!(
                "the snapshot ran {} commands, the chain ordered {}",
                c.next_seq, record.commands
            )));
        }
        let storage: BTreeMap<Vec<u8>, Vec<u8>> = c.storage.iter().cloned().collect();
        if storage.len() != c.storage.len() {
            return Err(inconsistent("the storage repeats a key".into()));
        }
        let root = state_root(storage.iter());
        let mut roots = BTreeMap::new();
        if c.next_seq > 0 {
            let seq = c.next_seq - 1;
            let cmd = get(&StateKey::ContractCommand { contract: c.id, seq })
                .map(|b| decode_value::<CommandRecord>(&b, "command record"))
                .transpose()?
                .ok_or_else(|| inconsistent(format!("the chain has no command {seq}")))?;
            let chain = cmd.result.map(|r| r.state_root).ok_or(SnapshotError::NotReported { contract: id, seq })?;
            if chain != root {
                return Err(SnapshotError::RootMismatch { contract: id, seq, ours: root, chain });
            }
            roots.insert(seq, root);
        }
        if let Some(b) = get(&StateKey::Agent(c.id)) {
            agents.insert(c.id, decode_value::<AgentRecord>(&b, "agent record")?);
        }
        contracts.insert(
            c.id,
            ContractState {
                cluster: plain.cluster,
                kind: c.kind,
                code: c.code.clone(),
                storage,
                next_seq: c.next_seq,
                roots,
                stalled: None,
                events: BTreeMap::new(),
            },
        );
    }
    Ok((contracts, agents))
}

/// Serves snapshots from the latest [`SnapshotView`]; cheap to clone and share with the HTTP server.
#[derive(Clone, Debug, Default)]
pub struct SnapshotService {
    view: Arc<RwLock<Option<Arc<SnapshotView>>>>,
}

impl SnapshotService {
    /// A service with no view yet.
    pub fn new() -> SnapshotService {
        SnapshotService::default()
    }

    /// Replaces the view snapshots are made from.
    pub fn update(&self, view: SnapshotView) {
        if let Ok(mut v) = self.view.write() {
            *v = Some(Arc::new(view));
        }
    }

    /// Answers one request (JSON [`SnapshotRequest`]): the encoded [`SnapshotReply`].
    pub fn answer(&self, body: &[u8]) -> Result<Vec<u8>, SnapshotError> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(SnapshotError::TooLarge(body.len()));
        }
        let request: SnapshotRequest =
            serde_json::from_slice(body).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        let view = self
            .view
            .read()
            .ok()
            .and_then(|v| v.clone())
            .ok_or_else(|| SnapshotError::NotReady("the worker is starting".into()))?;
        let reply = view.answer(&request)?;
        tracing::info!(target: "worker.snapshot", joiner = %request.requester, cluster = reply.cluster, height = reply.height, bytes = reply.sealed.len(), "served a sealed contract snapshot");
        Ok(encode(&reply))
    }
}

/// Asks the member at `url` (its query endpoint) for a snapshot: `POST {url}/snapshot`.
pub(crate) async fn fetch(
    client: &reqwest::Client,
    url: &str,
    request: &SnapshotRequest,
) -> Result<SnapshotReply, String> {
    let url = format!("{}/snapshot", url.trim_end_matches('/'));
    let body = serde_json::to_vec(request).map_err(|e| format!("encoding the request: {e}"))?;
    let resp = client
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{url}: {status}: {}", String::from_utf8_lossy(&body[..body.len().min(500)])));
    }
    if body.len() > MAX_SNAPSHOT_BYTES {
        return Err(format!("{url}: a reply of {} bytes exceeds the limit", body.len()));
    }
    decode::<SnapshotReply>(&body, MAX_SNAPSHOT_BYTES).map_err(|e| format!("{url}: the reply does not decode: {e}"))
}
