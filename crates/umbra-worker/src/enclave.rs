//! The TEE part: it holds the identity and HPKE keys, follows the chain with a light client, verifies
//! every batch the host hands in, handles the chain's messages deterministically and returns signed
//! egress for the host to carry. Its only I/O is the platform (quotes, sealing) and its data directory.
//!
//! Lifecycle: [`Enclave::open`] (keys and state unsealed or created), [`Enclave::check_rollback`]
//! (against the on-chain commitment; [`Enclave::follow_headers`] lets it catch up to the proof's
//! epoch first), then [`Enclave::apply`] per batch. Every applied batch is sealed before its egress is
//! returned, so a crash never loses an answer ([`Enclave::outbox`] keeps it until the chain consumed it).

use crate::contracts::{
    ContractState, EngineThread, OrderedCommand, public_of, remember_output, remember_root, run_command, run_init,
    stall,
};
use crate::keys::{
    LABEL_CLUSTER_SHARE, LABEL_MASTER_SHARE, cluster_key, cluster_public, cluster_signer, contract_key,
    gatekeeper_keypair, master_public, share_aad, share_rng, sign_egress,
};
use crate::state::{
    HeldKey, KEYS_FILE, KEYS_LABEL, STATE_FILE, STATE_LABEL, SealedKeys, StateFile, TopicCursor, WorkerState,
};
use crate::verify::{
    Rejection, decode_counter, decode_value, verify_headers, verify_messages, verify_value, verify_value_at,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tracing::{debug, info, warn};
use umbra_crypto::{Keypair, Secret32, kdf, open_envelope, seal_envelope, x25519_public};
use umbra_light::LightClient;
use umbra_rpc::{StateValueResponse, SyncResponse};
use umbra_tee::{Attester, Sealer, TeeKind};
use umbra_types::registry::{
    ClusterId, ClusterKeys, Egress, EgressPayload, KeyEpoch, KeyShare, MessageBody, Origin, SignedEgress, Topic,
    WorkerId, X25519Public,
};
use umbra_types::state_keys::StateKey;
use umbra_types::{Address, Hash, Header, Message, WorkerRecord, decode, encode};
use zeroize::Zeroizing;

mod join;

/// Largest sealed file the worker reads.
const MAX_FILE_BYTES: usize = 64 << 20;

/// What a worker platform must provide: quotes and sealing (dev, SGX under Gramine).
pub trait Platform: Attester + Sealer {}
impl<T: Attester + Sealer> Platform for T {}

/// How the enclave is set up: the chain and the operator, as the host learned them.
#[derive(Clone, Debug)]
pub struct EnclaveConfig {
    /// The chain id.
    pub chain_id: String,
    /// The genesis header the host fetched (`chain_getBlock(0)`); pinned in the sealed state on first start.
    pub genesis: Header,
    /// A genesis hash the operator requires (`--genesis`); checked against `genesis` and the pin.
    pub expected_genesis: Option<Hash>,
    /// The account that signs the registration.
    pub operator: Address,
    /// Blocks between rollback commitments (`params.registry.commitment_interval_blocks`; 0: never).
    pub commitment_interval: u64,
}

/// Why the enclave could not start or do what was asked (as opposed to a refused batch, [`Rejection`]).
#[derive(Debug, thiserror::Error)]
pub enum EnclaveError {
    /// A file of the data directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A sealed file does not unseal here: sealed by another worker, other code or another machine.
    #[error(
        "{} was sealed by another worker, other code or another machine and cannot be used here ({reason}); \
         move it away to start this worker afresh",
        path.display()
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The sealed state belongs to a chain other than the one the node serves (or the `--genesis` pin).
    #[error("genesis mismatch: {0}")]
    Genesis(String),
    /// The sealed state is older than the worker's commitment on chain: it was rolled back.
    #[error(
        "the sealed state is at height {sealed} but the chain holds this worker's commitment at height {committed}: \
         refusing a rolled-back state"
    )]
    RolledBack {
        /// The sealed state's height.
        sealed: u64,
        /// The committed height.
        committed: u64,
    },
    /// The sealed state has the committed height but another content: a forked copy.
    #[error(
        "the sealed state at height {height} hashes to {ours}, but the chain's commitment says {committed}: refusing a forked state"
    )]
    Forked {
        /// The height.
        height: u64,
        /// Our hash.
        ours: Hash,
        /// The committed hash.
        committed: Hash,
    },
    /// A proof could not be verified (yet): the host should supply headers up to its epoch.
    #[error("cannot verify the answer: {0}")]
    Unverified(#[from] Rejection),
    /// The platform failed (quote, sealing).
    #[error("platform: {0}")]
    Platform(String),
    /// A secret for this key epoch is not held (never received, or erased).
    #[error("no {what} key of epoch {key_epoch} is held")]
    KeyNotHeld {
        /// Which key.
        what: &'static str,
        /// The epoch.
        key_epoch: KeyEpoch,
    },
    /// An envelope did not open.
    #[error("envelope: {0}")]
    Envelope(#[from] umbra_crypto::EnvelopeError),
}

/// What the host submits as `Call::RegisterWorker`.
#[derive(Clone, Debug)]
pub struct Registration {
    /// The identity key (worker id).
    pub identity: WorkerId,
    /// The HPKE key.
    pub x25519: X25519Public,
    /// The quote over [`umbra_tee::report_data`] of the above, the chain and the operator.
    pub quote: Vec<u8>,
}

/// What the rollback check found on chain.
#[derive(Clone, Debug)]
pub struct RollbackCheck {
    /// The worker's record, if registered.
    pub record: Option<WorkerRecord>,
    /// The height the proof was at.
    pub height: u64,
}

/// A `state_getValue` answer for `TopicNext(topic)`: proves nothing was withheld at a batch's tail when
/// its header is the batch's last block.
#[derive(Clone, Debug)]
pub struct TailProof {
    /// The topic.
    pub topic: Topic,
    /// The proven value.
    pub value: StateValueResponse,
}

/// A non-secret summary for tools (`status.json`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EnclaveStatus {
    /// Worker id, hex.
    pub id: String,
    /// HPKE public key, hex.
    pub x25519: String,
    /// TEE kind.
    pub tee: TeeKind,
    /// True for the dev platform: nothing is hardware-protected.
    pub simulated: bool,
    /// Registered (seen `Registered`, not revoked since).
    pub registered: bool,
    /// Height at which the registration expires unless renewed.
    pub expires_at: u64,
    /// Revocation reason.
    pub revoked: Option<String>,
    /// Gatekeeper role.
    pub gatekeeper: bool,
    /// Cluster.
    pub cluster: Option<ClusterId>,
    /// Current key epoch.
    pub key_epoch: KeyEpoch,
    /// Key epochs of master keys held.
    pub master_epochs: Vec<KeyEpoch>,
    /// (epoch, cluster) of cluster keys held.
    pub cluster_keys: Vec<(KeyEpoch, ClusterId)>,
    /// Height applied.
    pub height: u64,
    /// Latest commitment (height, state hash).
    pub last_commitment: Option<(u64, Hash)>,
    /// Egress waiting to be consumed on chain.
    pub outbox: usize,
    /// The contracts this worker runs, by id (hex).
    #[serde(default)]
    pub contracts: BTreeMap<String, ContractStatus>,
}

/// A contract as `status.json` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContractStatus {
    /// Commands run.
    pub commands: u64,
    /// The current state root.
    pub state_root: Hash,
    /// Why this worker stopped running it, if it did.
    pub stalled: Option<String>,
}

/// The TEE part of a worker.
pub struct Enclave {
    platform: Box<dyn Platform>,
    dir: PathBuf,
    identity: Keypair,
    x25519: Secret32,
    file: StateFile,
    light: LightClient,
    probe: (LightClient, u64, Hash),
    operator: Address,
    interval: u64,
    ready: bool,
    /// The benchmark score (see [`crate::econ`]).
    pub(crate) benchmark: u64,
    /// The instant score heartbeats carry (see [`crate::econ`]).
    pub(crate) instant: u64,
    engine: EngineThread,
}

impl std::fmt::Debug for Enclave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enclave")
            .field("id", &hex::encode(self.id()))
            .field("height", &self.file.state.height)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EnclaveError + '_ {
    move |source| EnclaveError::Io { path: path.to_path_buf(), source }
}

fn light_from(state: &WorkerState) -> Result<LightClient, EnclaveError> {
    let light = if state.checkpoint.height == 0 {
        LightClient::from_genesis_header(&state.chain_id, &state.checkpoint)
    } else {
        LightClient::from_checkpoint(&state.chain_id, &state.checkpoint, &state.committee)
    };
    light.map_err(|e| EnclaveError::Genesis(format!("the light client cannot start from the sealed checkpoint: {e}")))
}

impl Enclave {
    /// Opens the worker in `dir`: unseals its keys (or creates and seals them on first start) and its state
    /// (or starts one at the genesis header). A file sealed elsewhere is refused with [`EnclaveError::Foreign`].
    pub fn open(platform: Box<dyn Platform>, dir: &Path, config: EnclaveConfig) -> Result<Enclave, EnclaveError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let keys_path = dir.join(KEYS_FILE);
        let keys = if keys_path.exists() {
            let sealed = std::fs::read(&keys_path).map_err(io(&keys_path))?;
            let plain = Zeroizing::new(
                platform
                    .unseal(KEYS_LABEL, &sealed)
                    .map_err(|e| EnclaveError::Foreign { path: keys_path.clone(), reason: e.to_string() })?,
            );
            decode::<SealedKeys>(&plain, 1024)
                .map_err(|e| EnclaveError::Foreign { path: keys_path.clone(), reason: e.to_string() })?
        } else {
            let keys = SealedKeys { identity_seed: rand::random(), x25519_secret: rand::random() };
            let plain = Zeroizing::new(encode(&keys));
            let sealed = platform.seal(KEYS_LABEL, &plain).map_err(|e| EnclaveError::Platform(e.to_string()))?;
            write_atomic(&keys_path, &sealed)?;
            info!(target: "worker.enclave", "created and sealed a new identity and HPKE key");
            keys
        };
        let identity = Keypair::from_seed(keys.identity_seed);
        let x25519 = Secret32(keys.x25519_secret);
        let id = identity.address().0;
        let genesis_hash = config.genesis.hash();
        if let Some(pin) = config.expected_genesis
            && pin != genesis_hash
        {
            return Err(EnclaveError::Genesis(format!(
                "the node's genesis block is {genesis_hash}, the pin says {pin}"
            )));
        }
        let state_path = dir.join(STATE_FILE);
        let file = if state_path.exists() {
            let sealed = std::fs::read(&state_path).map_err(io(&state_path))?;
            let foreign = |reason: String| EnclaveError::Foreign { path: state_path.clone(), reason };
            let plain = Zeroizing::new(platform.unseal(STATE_LABEL, &sealed).map_err(|e| foreign(e.to_string()))?);
            let file = decode::<StateFile>(&plain, MAX_FILE_BYTES).map_err(|e| foreign(e.to_string()))?;
            if file.state.id != id {
                return Err(foreign(format!(
                    "it belongs to worker {}, this worker is {}",
                    hex::encode(file.state.id),
                    hex::encode(id)
                )));
            }
            let pinned = file.state.genesis.hash();
            if file.state.chain_id != config.chain_id || pinned != genesis_hash {
                return Err(EnclaveError::Genesis(format!(
                    "the sealed state follows chain {} with genesis {pinned}; the node serves {} with genesis {genesis_hash}",
                    file.state.chain_id, config.chain_id
                )));
            }
            file
        } else {
            let mut topics = BTreeMap::new();
            for t in [Topic::Worker(id), Topic::Gatekeepers, Topic::Broadcast] {
                topics.insert(t, TopicCursor::Next(0));
            }
            let state = WorkerState {
                version: 1,
                id,
                chain_id: config.chain_id.clone(),
                genesis: config.genesis.clone(),
                height: 0,
                last_hash: genesis_hash,
                checkpoint: config.genesis.clone(),
                committee: config.genesis.next_committee.clone().unwrap_or_default(),
                topics,
                registered: false,
                expires_at: 0,
                revoked: None,
                gatekeeper: false,
                cluster: None,
                key_epoch: 0,
                masters: BTreeMap::new(),
                clusters: BTreeMap::new(),
                egress_seq: 0,
                contracts: Default::default(),
                agents: Default::default(),
            };
            StateFile { state, outbox: Vec::new(), commitment: None }
        };
        let benchmark = crate::econ::load_or_measure(platform.as_ref(), dir)?;
        let light = light_from(&file.state)?;
        let probe = (light.clone(), file.state.height, file.state.last_hash);
        let engine = EngineThread::start("umbra-commands", umbra_engine::Limits::default())
            .map_err(|e| EnclaveError::Platform(format!("cannot start the contract engine thread: {e}")))?;
        let enclave = Enclave {
            platform,
            dir: dir.to_path_buf(),
            identity,
            x25519,
            file,
            light,
            probe,
            operator: config.operator,
            interval: config.commitment_interval,
            ready: false,
            benchmark,
            instant: benchmark,
            engine,
        };
        if !state_path.exists() {
            enclave.save(&enclave.file)?;
        }
        Ok(enclave)
    }

    /// The worker id (identity public key).
    pub fn id(&self) -> WorkerId {
        self.identity.address().0
    }

    /// The HPKE public key.
    pub fn x25519_public(&self) -> X25519Public {
        x25519_public(self.x25519.expose())
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.file.state.chain_id
    }

    /// Height of the last applied block.
    pub fn height(&self) -> u64 {
        self.file.state.height
    }

    /// Height the header-only probe reached (for proofs above the applied height).
    pub fn probe_height(&self) -> u64 {
        self.probe.1
    }

    /// True once the rollback check passed and batches are accepted.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Whether the worker has seen its `Registered` message (and no `Revoked` since).
    pub fn is_registered(&self) -> bool {
        self.file.state.registered
    }

    /// Topics to request in `worker_sync`.
    pub fn sync_topics(&self) -> Vec<Topic> {
        self.file.state.topics.iter().filter(|(_, c)| matches!(c, TopicCursor::Next(_))).map(|(t, _)| *t).collect()
    }

    /// Topics whose `TopicNext` the host should prove at a batch's end (every followed topic).
    pub fn tail_topics(&self) -> Vec<Topic> {
        self.file.state.topics.keys().copied().collect()
    }

    /// Egress produced but not yet seen consumed on chain, in order: submit it again.
    pub fn outbox(&self) -> &[SignedEgress] {
        &self.file.outbox
    }

    /// The registration material: identity, HPKE key and a quote over
    /// `report_data(identity, x25519, chain_id, genesis_hash, operator)`.
    pub fn registration(&self) -> Result<Registration, EnclaveError> {
        let identity = self.id();
        let x25519 = self.x25519_public();
        let rd = umbra_tee::report_data(
            &identity,
            &x25519,
            &self.file.state.chain_id,
            &self.file.state.genesis.hash().0,
            &self.operator.0,
        );
        let quote = self.platform.quote(&rd).map_err(|e| EnclaveError::Platform(e.to_string()))?;
        Ok(Registration { identity, x25519, quote })
    }

    /// A topic whose history must be replayed before it is followed, with the height to replay up to (the
    /// applied height): the host fetches `worker_sync` of that topic from block 1 to it and calls
    /// [`Enclave::replay`].
    /// Waits until the cluster key of the current epoch is held (contracts cannot run without it).
    pub fn replay_request(&self) -> Option<(Topic, u64)> {
        let st = &self.file.state;
        st.topics
            .iter()
            .find(|(t, c)| {
                **c == TopicCursor::Replay
                    && matches!(t, Topic::Cluster(id) if st.clusters.contains_key(&(st.key_epoch, *id)))
            })
            .map(|(t, _)| (*t, st.height))
    }

    /// Replays the history of `topic` (a cluster just joined): `batches` must hold blocks 1 to the applied
    /// height in order with that topic's messages. Every header is verified as an ancestor of the trusted tip,
    /// every message by its proof, and the topic's numbering from 0 without gaps; then the messages are
    /// handled in order (rebuilding the cluster's contracts) with their egress discarded (the chain has
    /// consumed those sequences already), and the topic is followed from the next number. A message withheld
    /// at the end shows later as a gap or at a tail proof.
    pub fn replay(&mut self, topic: Topic, batches: &[SyncResponse]) -> Result<usize, Rejection> {
        let height = self.file.state.height;
        if self.file.state.topics.get(&topic) != Some(&TopicCursor::Replay) {
            return Err(Rejection::Malformed {
                what: "replay",
                reason: format!("{topic:?} is not waiting for a replay"),
            });
        }
        let messages = self.verify_history(topic, 1, 0, batches)?;
        let next = messages.len() as u64;
        let mut file = self.file.clone();
        let mut discarded = Vec::new();
        for (h, m) in &messages {
            self.handle(&mut file.state, *h, m, &mut discarded);
        }
        // Egress of the worker's own origin (incidents) keeps its place in the sequence.
        file.outbox.extend(discarded.into_iter().filter(|e| e.egress.origin == Origin::Worker(self.id())));
        file.state.topics.insert(topic, TopicCursor::Next(next));
        self.save(&file).map_err(|e| Rejection::Persist(e.to_string()))?;
        self.file = file;
        info!(target: "worker.enclave", ?topic, messages = next, height, "replayed the topic's history");
        Ok(messages.len())
    }

    /// Verifies `batches` as the history of `topic` in blocks `from` to the applied height (every header an
    /// ancestor of the trusted tip, every message under its block's root, the topic numbered from `first_seq`
    /// without gaps and no other topic) and returns the messages with their heights.
    pub(crate) fn verify_history(
        &self,
        topic: Topic,
        from: u64,
        first_seq: u64,
        batches: &[SyncResponse],
    ) -> Result<Vec<(u64, Message)>, Rejection> {
        let height = self.file.state.height;
        let blocks: Vec<&umbra_rpc::SyncBlock> = batches.iter().flat_map(|b| b.blocks.iter()).collect();
        for (i, b) in blocks.iter().enumerate() {
            let expected = from.saturating_add(i as u64);
            if b.header.height != expected {
                return Err(Rejection::NotConsecutive { index: i, expected, got: b.header.height });
            }
        }
        if blocks.len() as u64 != height.saturating_add(1).saturating_sub(from) {
            return Err(Rejection::Malformed {
                what: "replay",
                reason: format!("{} blocks for a history from {from} to height {height}", blocks.len()),
            });
        }
        if blocks.is_empty() {
            return Ok(Vec::new());
        }
        let tip = self.light.tip().cloned().filter(|t| t.height() == height).ok_or(Rejection::Malformed {
            what: "replay",
            reason: "the trusted tip is not the applied block".into(),
        })?;
        let mut verified = Vec::with_capacity(blocks.len());
        let mut child = tip.clone();
        for b in blocks.iter().rev() {
            let v = if b.header.height == height {
                if b.header.hash() != tip.hash() {
                    return Err(Rejection::NotLinked { height, named: b.header.hash(), expected: tip.hash() });
                }
                tip.clone()
            } else {
                self.light.verify_ancestor(&child, &b.header).map_err(|_| Rejection::NotLinked {
                    height: child.height(),
                    named: child.header().parent,
                    expected: b.header.hash(),
                })?
            };
            child = v.clone();
            verified.push(v);
        }
        verified.reverse();
        let mut next = first_seq;
        let mut messages = Vec::new();
        for (b, v) in blocks.iter().zip(&verified) {
            for pm in &b.messages {
                let m = &pm.message;
                self.light.verify_message(v, &m.leaf_hash(), &pm.proof).map_err(|_| Rejection::MessageProof {
                    height: v.height(),
                    topic: m.topic,
                    seq: m.topic_seq,
                })?;
                if m.topic != topic {
                    return Err(Rejection::UnexpectedTopic { height: v.height(), topic: m.topic });
                }
                if m.topic_seq != next {
                    return Err(Rejection::Dropped { topic, expected: next, got: m.topic_seq, height: v.height() });
                }
                next += 1;
                messages.push((v.height(), m.clone()));
            }
        }
        Ok(messages)
    }

    /// Test only: follow `topic` from `next` (what a tail proof would set for a joined cluster).
    #[cfg(test)]
    pub(crate) fn follow_topic(&mut self, topic: Topic, next: u64) {
        self.file.state.topics.insert(topic, TopicCursor::Next(next));
    }

    /// A copy of the contracts, cluster keys and identity for [`crate::query::QueryService`].
    pub fn query_view(&self) -> crate::query::QueryView {
        self.query_view_with(self.shared_contracts())
    }

    /// One copy of the contracts' state, to share between the views of one update
    /// ([`Enclave::query_view_with`], [`Enclave::snapshot_view_with`]).
    pub(crate) fn shared_contracts(&self) -> crate::contracts::SharedContracts {
        std::sync::Arc::new(self.file.state.contracts.contracts.clone())
    }

    /// [`Enclave::query_view`] over an already taken copy of the contracts.
    pub(crate) fn query_view_with(&self, contracts: crate::contracts::SharedContracts) -> crate::query::QueryView {
        let s = &self.file.state;
        crate::query::QueryView {
            chain_id: s.chain_id.clone(),
            identity: self.identity.clone(),
            x25519: Zeroizing::new(*self.x25519.expose()),
            height: s.height,
            key_epoch: s.key_epoch,
            contracts,
            clusters: s.clusters.clone(),
        }
    }

    /// A copy of the agents, their contracts, the cluster keys and the identity for
    /// [`crate::agents::AgentService`].
    pub fn agent_view(&self) -> crate::agents::AgentView {
        let s = &self.file.state;
        crate::agents::AgentView {
            chain_id: s.chain_id.clone(),
            identity: self.identity.clone(),
            x25519: Zeroizing::new(*self.x25519.expose()),
            height: s.height,
            agents: s.agents.clone(),
            contracts: s
                .contracts
                .contracts
                .iter()
                .filter(|(id, _)| s.agents.contains_key(*id))
                .map(|(id, c)| (*id, c.clone()))
                .collect(),
            clusters: s.clusters.clone(),
            key_epoch: s.key_epoch,
        }
    }

    /// A non-secret summary.
    pub fn status(&self) -> EnclaveStatus {
        let s = &self.file.state;
        EnclaveStatus {
            id: hex::encode(self.id()),
            x25519: hex::encode(self.x25519_public()),
            tee: self.platform.kind(),
            simulated: self.platform.is_simulated(),
            registered: s.registered,
            expires_at: s.expires_at,
            revoked: s.revoked.clone(),
            gatekeeper: s.gatekeeper,
            cluster: s.cluster,
            key_epoch: s.key_epoch,
            master_epochs: s.masters.keys().copied().collect(),
            cluster_keys: s.clusters.keys().copied().collect(),
            height: s.height,
            last_commitment: self.file.commitment,
            outbox: self.file.outbox.len(),
            contracts: s
                .contracts
                .contracts
                .iter()
                .map(|(id, c)| {
                    let status =
                        ContractStatus { commands: c.next_seq, state_root: c.root(), stalled: c.stalled.clone() };
                    (hex::encode(id), status)
                })
                .collect(),
        }
    }

    /// Advances the header-only probe with a batch (fetched with no topics): verifies it like
    /// [`Enclave::apply`] does, changes no state. Used to reach the epoch of a proof above the applied height.
    pub fn follow_headers(&mut self, batch: &SyncResponse) -> Result<(), Rejection> {
        let (light, height, hash) = &self.probe;
        let chain = verify_headers(light, *height, *hash, batch)?;
        if let Some(last) = chain.headers.last() {
            self.probe = (chain.light, last.height(), last.hash());
        }
        Ok(())
    }

    /// The rollback check: verifies the worker's on-chain record (`state_getValue(Worker(id))`) and refuses a
    /// sealed state below its committed height, or at that height with another hash. Batches are accepted
    /// only after it passed.
    pub fn check_rollback(&mut self, record: &StateValueResponse) -> Result<RollbackCheck, EnclaveError> {
        let key = StateKey::Worker(self.id());
        let (height, value) = verify_value(&self.probe.0, &key, record)?;
        let record = match value {
            Some(bytes) => Some(decode_value::<WorkerRecord>(&bytes, "worker record")?),
            None => None,
        };
        let state = &self.file.state;
        if let Some((committed, hash)) = record.as_ref().and_then(|r| r.commitment) {
            if state.height < committed {
                return Err(EnclaveError::RolledBack { sealed: state.height, committed });
            }
            // At the committed height the state may legitimately have changed since the commitment without the
            // height moving (a joined cluster's history replayed at that height); the sealed file then still
            // records the commitment it made, which a state from another history cannot.
            if state.height == committed && state.hash() != hash && self.file.commitment != Some((committed, hash)) {
                return Err(EnclaveError::Forked { height: committed, ours: state.hash(), committed: hash });
            }
        }
        self.ready = true;
        Ok(RollbackCheck { record, height })
    }

    /// Prunes the outbox with the chain's `EgressNext` of this worker's origin and of the gatekeepers (each a
    /// verified `state_getValue` answer), and resynchronizes this worker's own sequence if the chain is ahead.
    pub fn sync_egress(
        &mut self,
        worker_next: &StateValueResponse,
        gatekeeper_next: &StateValueResponse,
    ) -> Result<(), EnclaveError> {
        let me = Origin::Worker(self.id());
        let (_, w) = verify_value(&self.probe.0, &StateKey::EgressNext(me), worker_next)?;
        let (_, g) = verify_value(&self.probe.0, &StateKey::EgressNext(Origin::Gatekeeper), gatekeeper_next)?;
        let w = decode_counter(w.as_deref())?;
        let g = decode_counter(g.as_deref())?;
        let mut file = self.file.clone();
        file.outbox.retain(|e| match e.egress.origin {
            o if o == me => e.egress.seq >= w,
            Origin::Gatekeeper => e.egress.seq >= g,
            _ => false,
        });
        if w > file.state.egress_seq {
            warn!(target: "worker.enclave", chain = w, ours = file.state.egress_seq,
                "the chain has consumed more of this worker's egress than it sent; adopting the chain's sequence");
            file.state.egress_seq = w;
        }
        if file != self.file {
            self.save(&file)?;
            self.file = file;
        }
        Ok(())
    }

    /// Opens an envelope sealed to the public key of this worker's cluster key of `key_epoch`.
    pub fn open_cluster_envelope(
        &self,
        cluster: ClusterId,
        key_epoch: KeyEpoch,
        label: &str,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnclaveError> {
        let held = self
            .file
            .state
            .clusters
            .get(&(key_epoch, cluster))
            .ok_or(EnclaveError::KeyNotHeld { what: "cluster", key_epoch })?;
        let secret = Zeroizing::new(kdf(&held.0, "x25519", b""));
        Ok(Zeroizing::new(open_envelope(&secret, label, aad, sealed)?))
    }

    /// Verifies a batch and applies it: every certificate and parent link, every message proof, every topic's
    /// sequence, and (when a tail proof is about the batch's last block) that nothing was withheld at the tail.
    /// Any failure refuses the whole batch and leaves the state as it was. On success the new state is sealed
    /// and saved, then the egress to carry is returned (it also stays in [`Enclave::outbox`]).
    pub fn apply(&mut self, batch: &SyncResponse, tails: &[TailProof]) -> Result<Vec<SignedEgress>, Rejection> {
        if !self.ready {
            return Err(Rejection::NotReady);
        }
        let state = &self.file.state;
        let chain = verify_headers(&self.light, state.height, state.last_hash, batch)?;
        let Some(last) = chain.headers.last().cloned() else {
            return Ok(Vec::new());
        };
        let mut expected: BTreeMap<Topic, u64> = state
            .topics
            .iter()
            .filter_map(|(t, c)| match c {
                TopicCursor::Next(n) => Some((*t, *n)),
                TopicCursor::Unknown | TopicCursor::Replay => None,
            })
            .collect();
        let messages = verify_messages(&chain.light, &chain, batch, &mut expected)?;
        let mut initialized: BTreeMap<Topic, u64> = BTreeMap::new();
        for tail in tails {
            let Some(value) = verify_value_at(&chain.light, &last, &StateKey::TopicNext(tail.topic), &tail.value)?
            else {
                debug!(target: "worker.enclave", "tail proof about another block; tail not checked");
                continue;
            };
            let chain_next = decode_counter(value.as_deref())?;
            match (state.topics.get(&tail.topic), expected.get(&tail.topic)) {
                (Some(TopicCursor::Unknown), _) => {
                    initialized.insert(tail.topic, chain_next);
                }
                (_, Some(&seen)) if chain_next > seen => {
                    return Err(Rejection::WithheldAtTail { topic: tail.topic, chain: chain_next, seen });
                }
                (_, Some(&seen)) if chain_next < seen => {
                    return Err(Rejection::StateProof {
                        what: format!("TopicNext({:?})", tail.topic),
                        reason: format!("the chain counts {chain_next} messages but {seen} were proven"),
                    });
                }
                _ => {}
            }
        }
        // Everything verified: apply to a copy, save it, then swap it in.
        let mut file = self.file.clone();
        let previous_height = file.state.height;
        file.state.height = last.height();
        file.state.last_hash = last.hash();
        if let Some(tip) = chain.light.tip() {
            file.state.checkpoint = tip.header().clone();
        }
        file.state.committee = chain.light.committee().to_vec();
        for (topic, next) in expected {
            file.state.topics.insert(topic, TopicCursor::Next(next));
        }
        for (topic, next) in initialized {
            file.state.topics.insert(topic, TopicCursor::Next(next));
        }
        let mut out = Vec::new();
        for (height, message) in &messages {
            self.handle(&mut file.state, *height, message, &mut out);
        }
        if file.state.registered
            && self.interval > 0
            && file.state.height / self.interval > previous_height / self.interval
        {
            let seq = file.state.egress_seq;
            file.state.egress_seq = seq.saturating_add(1);
            let height = file.state.height;
            let state_hash = file.state.hash();
            out.push(self.worker_egress(seq, EgressPayload::StateCommitment { height, state_hash }));
            file.commitment = Some((height, state_hash));
            info!(target: "worker.enclave", height, %state_hash, "sealed state committed");
        }
        file.outbox.extend(out.iter().cloned());
        self.save(&file).map_err(|e| Rejection::Persist(e.to_string()))?;
        self.file = file;
        self.light = chain.light;
        if self.probe.1 <= self.file.state.height {
            self.probe = (self.light.clone(), self.file.state.height, self.file.state.last_hash);
        }
        Ok(out)
    }

    /// After a key epoch is activated: publishes the public keys of the new epoch of every contract this
    /// member runs (as `Origin::Cluster`, numbered like those published at instantiation, in id order so
    /// every member signs the same messages), so new commands can be sealed to the new epoch.
    fn publish_contract_keys(&self, st: &mut WorkerState, out: &mut Vec<SignedEgress>) {
        let Some(c) = st.cluster else { return };
        let Some(ck) = st.clusters.get(&(st.key_epoch, c)).map(|k| Zeroizing::new(k.0)) else { return };
        let ids: Vec<_> = st.contracts.contracts.iter().filter(|(_, s)| s.cluster == c).map(|(id, _)| *id).collect();
        for id in ids {
            let seq = st.contracts.cluster_seq.get(&c).copied().unwrap_or(0);
            st.contracts.cluster_seq.insert(c, seq.saturating_add(1));
            let payload =
                EgressPayload::ContractKeys { contract: id, key_epoch: st.key_epoch, public: public_of(&ck, &id) };
            out.push(sign_egress(
                &cluster_signer(&ck),
                &st.chain_id,
                Egress { origin: Origin::Cluster(c), seq, payload },
            ));
            info!(target: "worker.contracts", contract = %Hash(id), key_epoch = st.key_epoch, "published the contract's keys of the new epoch");
        }
    }

    /// Signs `payloads` as this worker's next egress messages (for reports made outside a batch, such as an
    /// agent's egress receipt roots), keeps them in the outbox until the chain consumes them, and returns them.
    pub fn emit(&mut self, payloads: Vec<EgressPayload>) -> Result<Vec<SignedEgress>, EnclaveError> {
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        let mut file = self.file.clone();
        let out: Vec<SignedEgress> =
            payloads.into_iter().map(|p| self.next_worker_egress(&mut file.state, p)).collect();
        file.outbox.extend(out.iter().cloned());
        self.save(&file)?;
        self.file = file;
        Ok(out)
    }

    fn save(&self, file: &StateFile) -> Result<(), EnclaveError> {
        let plain = Zeroizing::new(encode(file));
        let sealed = self.platform.seal(STATE_LABEL, &plain).map_err(|e| EnclaveError::Platform(e.to_string()))?;
        write_atomic(&self.dir.join(STATE_FILE), &sealed)
    }

    fn worker_egress(&self, seq: u64, payload: EgressPayload) -> SignedEgress {
        let egress = Egress { origin: Origin::Worker(self.id()), seq, payload };
        sign_egress(&self.identity, &self.file.state.chain_id, egress)
    }

    fn next_worker_egress(&self, st: &mut WorkerState, payload: EgressPayload) -> SignedEgress {
        let seq = st.egress_seq;
        st.egress_seq = seq.saturating_add(1);
        self.worker_egress(seq, payload)
    }

    /// An answer as `Origin::Gatekeeper`, signed with the current epoch's gatekeeper key.
    fn gatekeeper_egress(&self, st: &WorkerState, seq: u64, payload: EgressPayload) -> Option<SignedEgress> {
        let Some(m) = st.masters.get(&st.key_epoch) else {
            debug!(target: "worker.enclave", key_epoch = st.key_epoch, "no gatekeeper key of the current epoch; not answering");
            return None;
        };
        let egress = Egress { origin: Origin::Gatekeeper, seq, payload };
        Some(sign_egress(&gatekeeper_keypair(&m.0), &st.chain_id, egress))
    }

    /// Seals `secret` to `to` (`x25519`) for `key_epoch` under `label`, with randomness seeded from `seed_key`.
    fn share(
        &self,
        seed_key: &[u8; 32],
        to: (WorkerId, X25519Public),
        key_epoch: KeyEpoch,
        cluster: Option<ClusterId>,
        secret: &[u8; 32],
    ) -> Option<KeyShare> {
        let label = if cluster.is_some() { LABEL_CLUSTER_SHARE } else { LABEL_MASTER_SHARE };
        let mut rng = share_rng(seed_key, &to.0, key_epoch, cluster);
        let aad = share_aad(&self.file.state.chain_id, &to.0, key_epoch);
        match seal_envelope(&to.1, label, &aad, secret, &mut rng) {
            Ok(sealed) => Some(KeyShare { to: to.0, sealed }),
            Err(e) => {
                warn!(target: "worker.enclave", worker = %hex::encode(to.0), "cannot seal a share to this worker: {e}");
                None
            }
        }
    }

    fn cluster_keys(
        &self,
        m: &[u8; 32],
        key_epoch: KeyEpoch,
        cluster: ClusterId,
        members: &[(WorkerId, X25519Public)],
    ) -> ClusterKeys {
        let c = Zeroizing::new(cluster_key(m, cluster));
        let shares = members.iter().filter_map(|w| self.share(m, *w, key_epoch, Some(cluster), &c)).collect();
        ClusterKeys { cluster, public: cluster_public(&c), shares }
    }

    /// Opens a share addressed to this worker; `None` (with a warning) if it is not for it or does not open.
    fn open_share(&self, share: &KeyShare, label: &str, key_epoch: KeyEpoch) -> Option<Zeroizing<[u8; 32]>> {
        if share.to != self.id() {
            warn!(target: "worker.enclave", to = %hex::encode(share.to), "ignoring a key share addressed to another worker");
            return None;
        }
        let aad = share_aad(&self.file.state.chain_id, &share.to, key_epoch);
        match open_envelope(self.x25519.expose(), label, &aad, &share.sealed) {
            Ok(plain) if plain.len() == 32 => {
                let mut out = Zeroizing::new([0u8; 32]);
                out.copy_from_slice(&plain);
                Some(out)
            }
            Ok(_) => {
                warn!(target: "worker.enclave", "ignoring a key share of the wrong length");
                None
            }
            Err(e) => {
                warn!(target: "worker.enclave", "ignoring a key share that does not open: {e}");
                None
            }
        }
    }

    /// Handles one verified message: deterministic except for generating a new master key.
    fn handle(&self, st: &mut WorkerState, height: u64, message: &Message, out: &mut Vec<SignedEgress>) {
        let me = self.id();
        let for_me = |w: &WorkerId| {
            if *w != me {
                warn!(target: "worker.enclave", height, kind = ?message.topic, "ignoring a message about another worker on this worker's topic");
            }
            *w == me
        };
        match &message.body {
            MessageBody::Registered { worker, expires_at, .. } if for_me(worker) => {
                if !st.registered {
                    out.push(self.next_worker_egress(st, crate::econ::benchmark(self.benchmark)));
                }
                st.registered = true;
                st.revoked = None;
                st.expires_at = *expires_at;
                info!(target: "worker.enclave", height, expires_at, "registered");
            }
            MessageBody::Revoked { worker, reason } if for_me(worker) => {
                warn!(target: "worker.enclave", height, reason, "revoked: erasing every key");
                st.registered = false;
                st.revoked = Some(reason.clone());
                st.gatekeeper = false;
                st.cluster = None;
                st.masters.clear();
                st.clusters.clear();
            }
            MessageBody::GatekeeperAppointed { worker, generate } if for_me(worker) => {
                st.gatekeeper = true;
                info!(target: "worker.enclave", height, generate, "appointed gatekeeper");
                if *generate {
                    if !st.masters.is_empty() {
                        warn!(target: "worker.enclave", "asked to generate a first master key while holding one; ignoring");
                        return;
                    }
                    let m = Zeroizing::new(rand::random::<[u8; 32]>());
                    let (master_public, gatekeeper_key) = master_public(&m);
                    st.masters.insert(1, HeldKey(*m));
                    let payload = EgressPayload::MasterKey {
                        key_epoch: 1,
                        master_public,
                        gatekeeper_key,
                        shares: Vec::new(),
                        clusters: Vec::new(),
                    };
                    out.push(self.next_worker_egress(st, payload));
                    info!(target: "worker.enclave", "generated the master key of key epoch 1");
                }
            }
            MessageBody::GatekeeperRemoved { worker } if for_me(worker) => {
                st.gatekeeper = false;
                st.masters.clear();
                info!(target: "worker.enclave", height, "removed as gatekeeper: master keys erased");
            }
            MessageBody::AssignedToCluster { worker, cluster } if for_me(worker) => {
                st.cluster = Some(*cluster);
                // Replay the cluster's history (its contracts and commands) before following it.
                st.topics.entry(Topic::Cluster(*cluster)).or_insert(TopicCursor::Replay);
                info!(target: "worker.enclave", height, cluster, "assigned to a cluster");
            }
            MessageBody::ShareMaster { worker, x25519, key_epoch } => {
                let Some(m) = st.masters.get(key_epoch) else { return };
                let Some(share) = self.share(&m.0, (*worker, *x25519), *key_epoch, None, &m.0) else { return };
                let payload = EgressPayload::MasterShare { key_epoch: *key_epoch, share };
                out.extend(self.gatekeeper_egress(st, message.topic_seq, payload));
            }
            MessageBody::ClusterKeyRequest { cluster, key_epoch, members } => {
                let Some(m) = st.masters.get(key_epoch) else { return };
                let keys = self.cluster_keys(&m.0, *key_epoch, *cluster, members);
                let payload = EgressPayload::ClusterKeys { key_epoch: *key_epoch, keys };
                out.extend(self.gatekeeper_egress(st, message.topic_seq, payload));
            }
            MessageBody::RotationStarted { new_epoch, leader, gatekeepers, clusters } => {
                if *leader != me || !st.masters.contains_key(&st.key_epoch) {
                    return;
                }
                if st.masters.contains_key(new_epoch) {
                    warn!(target: "worker.enclave", new_epoch, "already holding the rotation's key; ignoring");
                    return;
                }
                let m = Zeroizing::new(rand::random::<[u8; 32]>());
                let (master_public, gatekeeper_key) = master_public(&m);
                let shares = gatekeepers
                    .iter()
                    .filter(|(w, _)| *w != me)
                    .filter_map(|w| self.share(&m, *w, *new_epoch, None, &m))
                    .collect();
                let mut cluster_keys = Vec::with_capacity(clusters.len());
                for (cluster, members) in clusters {
                    if members.iter().any(|(w, _)| *w == me) {
                        st.clusters.insert((*new_epoch, *cluster), HeldKey(cluster_key(&m, *cluster)));
                    }
                    // Sealed to every member, this worker included (the protocol's "sealed to every member").
                    cluster_keys.push(self.cluster_keys(&m, *new_epoch, *cluster, members));
                }
                let payload = EgressPayload::MasterKey {
                    key_epoch: *new_epoch,
                    master_public,
                    gatekeeper_key,
                    shares,
                    clusters: cluster_keys,
                };
                // Signed with the current (old) epoch's gatekeeper key, before the new key is stored.
                out.extend(self.gatekeeper_egress(st, message.topic_seq, payload));
                st.masters.insert(*new_epoch, HeldKey(*m));
                out.push(self.next_worker_egress(st, EgressPayload::KeyAck { key_epoch: *new_epoch }));
                info!(target: "worker.enclave", height, new_epoch, "rotation leader: generated the new master key");
            }
            MessageBody::MasterKeyShare { key_epoch, master_public: public, gatekeeper_key, share } => {
                let Some(m) = self.open_share(share, LABEL_MASTER_SHARE, *key_epoch) else { return };
                if master_public(&m) != (*public, *gatekeeper_key) {
                    warn!(target: "worker.enclave", height, key_epoch, "ignoring a master share that does not derive to the announced public keys");
                    return;
                }
                if st.masters.get(key_epoch).is_some_and(|held| held.0 == *m) {
                    debug!(target: "worker.enclave", key_epoch, "already holding this master key");
                    return;
                }
                st.masters.insert(*key_epoch, HeldKey(*m));
                out.push(self.next_worker_egress(st, EgressPayload::KeyAck { key_epoch: *key_epoch }));
                info!(target: "worker.enclave", height, key_epoch, "received the master key");
            }
            MessageBody::ClusterKey { cluster, key_epoch, public, share } => {
                let Some(c) = self.open_share(share, LABEL_CLUSTER_SHARE, *key_epoch) else { return };
                if cluster_public(&c) != *public {
                    warn!(target: "worker.enclave", height, key_epoch, cluster, "ignoring a cluster share that does not derive to the announced public keys");
                    return;
                }
                if st.clusters.get(&(*key_epoch, *cluster)).is_some_and(|held| held.0 == *c) {
                    debug!(target: "worker.enclave", key_epoch, cluster, "already holding this cluster key");
                    return;
                }
                st.clusters.insert((*key_epoch, *cluster), HeldKey(*c));
                out.push(self.next_worker_egress(st, EgressPayload::KeyAck { key_epoch: *key_epoch }));
                info!(target: "worker.enclave", height, key_epoch, cluster, "received the cluster key");
            }
            MessageBody::KeyEpochActivated { key_epoch, retired } => {
                st.key_epoch = *key_epoch;
                let old: Vec<KeyEpoch> = st
                    .masters
                    .keys()
                    .copied()
                    .chain(st.clusters.keys().map(|(e, _)| *e))
                    .filter(|e| e < key_epoch)
                    .collect();
                st.masters.retain(|e, _| e >= key_epoch);
                st.clusters.retain(|(e, _), _| e >= key_epoch);
                self.publish_contract_keys(st, out);
                if old.is_empty() {
                    info!(target: "worker.enclave", height, key_epoch, ?retired, "key epoch activated");
                } else {
                    info!(target: "worker.enclave", height, key_epoch, ?retired, erased = ?old, "key epoch activated: erased every secret of older epochs");
                }
            }
            MessageBody::HeartbeatChallenge { worker, challenge, deadline } if for_me(worker) => {
                out.push(self.next_worker_egress(st, crate::econ::heartbeat(self.instant, *challenge)));
                debug!(target: "worker.enclave", height, deadline, "answered a heartbeat challenge");
            }
            MessageBody::ContractInstantiated { contract, kind, code, deployer, args, time_ms } => {
                let Topic::Cluster(c) = message.topic else { return };
                if st.cluster != Some(c) {
                    return;
                }
                let seq = st.contracts.cluster_seq.get(&c).copied().unwrap_or(0);
                st.contracts.cluster_seq.insert(c, seq.saturating_add(1));
                let mut state = ContractState {
                    cluster: c,
                    kind: *kind,
                    code: code.clone(),
                    storage: BTreeMap::new(),
                    next_seq: 0,
                    roots: BTreeMap::new(),
                    stalled: None,
                    events: BTreeMap::new(),
                };
                let key = st.clusters.get(&(st.key_epoch, c)).map(|k| Zeroizing::new(k.0));
                if key.is_none() {
                    stall(&mut state, contract, format!("no key of cluster {c} in epoch {}", st.key_epoch));
                }
                info!(target: "worker.contracts", height, cluster = c, contract = %Hash(*contract), "contract instantiated");
                st.contracts.contracts.insert(*contract, state);
                if let Some(ck) = key {
                    let public = public_of(&ck, contract);
                    let payload = EgressPayload::ContractKeys { contract: *contract, key_epoch: st.key_epoch, public };
                    let egress = Egress { origin: Origin::Cluster(c), seq, payload };
                    out.push(sign_egress(&cluster_signer(&ck), &st.chain_id, egress));
                    if !args.is_empty() {
                        let gas = umbra_types::contracts::ContractParams::default().init_gas;
                        let contracts = &mut st.contracts.contracts;
                        if let Err(e) =
                            run_init(&self.engine, contracts, c, &ck, contract, deployer, args, height, *time_ms, gas)
                        {
                            warn!(target: "worker.contracts", contract = %Hash(*contract), "init failed: {e}");
                        }
                    }
                }
            }
            MessageBody::ContractCommand { contract, seq, sender, key_epoch, gas_limit, sealed, time_ms } => {
                let Topic::Cluster(c) = message.topic else { return };
                if st.cluster != Some(c) {
                    return;
                }
                let open_key = st.clusters.get(&(*key_epoch, c)).map(|k| Zeroizing::new(k.0));
                let current_epoch = st.key_epoch;
                let chain_id = st.chain_id.clone();
                let Some(cs) = st.contracts.contracts.get_mut(contract) else {
                    warn!(target: "worker.contracts", contract = %Hash(*contract), "a command to a contract this worker does not know");
                    return;
                };
                if cs.stalled.is_some() {
                    return;
                }
                if *seq != cs.next_seq {
                    warn!(target: "worker.contracts", seq, expected = cs.next_seq, "a command out of order; ignoring");
                    return;
                }
                cs.next_seq = seq.saturating_add(1);
                let Some(open_key) = open_key else {
                    let why = if *key_epoch < current_epoch {
                        format!(
                            "no key of cluster {c} in epoch {key_epoch}: command {seq} is sealed to a key epoch erased \
                             by a rotation (current {current_epoch}), so its history cannot be replayed; catch up from \
                             a member's snapshot instead (--snapshot-peer)"
                        )
                    } else {
                        format!("no key of cluster {c} in epoch {key_epoch}")
                    };
                    stall(cs, contract, why);
                    return;
                };
                let cmd = OrderedCommand {
                    contract: *contract,
                    seq: *seq,
                    sender: *sender,
                    key_epoch: *key_epoch,
                    gas_limit: *gas_limit,
                    sealed,
                    height,
                    time_ms: *time_ms,
                };
                let contracts = &mut st.contracts.contracts;
                let (report, events, output) = run_command(&self.engine, &chain_id, contracts, &open_key, &cmd);
                if let Some(cs) = contracts.get_mut(contract) {
                    remember_root(cs, *seq, report.state_root);
                    remember_output(cs, *seq, *sender, events, output);
                }
                debug!(target: "worker.contracts", contract = %Hash(*contract), seq, gas_used = report.gas_used, root = %report.state_root, "command run");
                // Signed with the contract key of the command's epoch: the chain checks it with that epoch's key.
                let signer = umbra_engine::contract_signer(&contract_key(&open_key, contract));
                let payload = EgressPayload::ContractReport {
                    status: report.status,
                    gas_used: report.gas_used,
                    state_root: report.state_root,
                    events_hash: report.events_hash,
                    transfers: report.transfers,
                    stored_bytes: report.stored_bytes,
                };
                let egress = Egress { origin: Origin::Contract(*contract), seq: *seq, payload };
                out.push(sign_egress(&signer, &chain_id, egress));
            }
            MessageBody::ContractResult { contract, seq, state_root } => {
                let ours = st.contracts.contracts.get(contract).and_then(|c| c.roots.get(seq).copied());
                if let Some(ours) = ours
                    && ours != *state_root
                {
                    warn!(target: "worker.contracts", contract = %Hash(*contract), seq, %ours, chain = %state_root, "state root differs from the recorded one: reporting an incident");
                    let payload = EgressPayload::ContractIncident { contract: *contract, seq: *seq, state_root: ours };
                    out.push(self.next_worker_egress(st, payload));
                }
            }
            MessageBody::AgentUpdated { record, code } => {
                let Topic::Cluster(c) = message.topic else { return };
                if st.cluster != Some(c) {
                    return;
                }
                if !code.is_empty()
                    && let Some(cs) = st.contracts.contracts.get_mut(&record.id)
                {
                    cs.code = code.clone();
                }
                info!(target: "worker.agents", height, agent = %Hash(record.id), paused = record.paused, versions = record.versions.len(), secrets = record.secrets.len(), "agent record updated");
                st.agents.insert(record.id, record.clone());
            }
            // Messages about another worker on this worker's topic (already logged).
            _ => {}
        }
    }
}

/// Writes `data` to `path` through a temporary file and a rename, so a crash leaves the old or the new file.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), EnclaveError> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(data).and_then(|()| f.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}
