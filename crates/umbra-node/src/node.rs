//! The node core: ties the state, the runtime, the mempool and the index together and implements
//! the consensus `Executor` (propose, verify, apply finalized blocks exactly once).
//!
//! Blocks are executed when proposed or verified, on top of their parent's *speculative* state (a
//! chained QMDB batch that is not yet on disk), and the result is kept by block hash. When a block is
//! finalized its batch is committed; siblings that lost are dropped. A restart loses only speculative
//! results, which are recomputed on demand; a finalized block delivered again (marshal delivers at
//! least once) is recognised by height and skipped, so nothing is applied twice.

use crate::index::{Index, IndexError};
use crate::mempool::{Mempool, PoolError};
use commonware_runtime::{Clock, Metrics, Spawner, Storage, Supervisor};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{debug, error, info, warn};
use umbra_consensus::{ConsensusHandle, Executor, ProposeContext};
use umbra_rpc::{ErrorCode, RpcError};
use umbra_runtime::{AdmissionError, BlockEnv, Runtime, RuntimeError, StateRead, stateless_check};
use umbra_state::{Pending, State, StateProof};
use umbra_types::state_keys::{AccountRecord, StateKey};
use umbra_types::{
    Address, Block, Call, Genesis, Hash, Header, Message, Params, Receipt, SignedTransaction, Topic, ValidatorKey,
};

/// How far ahead of a validator's clock a proposed timestamp may be before it waits.
const MAX_CLOCK_DRIFT_MS: u64 = 2_000;
/// With an empty mempool a leader waits up to this long after its parent's timestamp for
/// transactions before proposing an empty block, so an idle chain makes about five blocks a second
/// instead of hundreds. It stays below the consensus leader timeout (250 ms) so the view is not lost.
const EMPTY_BLOCK_INTERVAL_MS: u64 = 200;
/// How often admitted transactions are gossiped, as one batch.
const GOSSIP_INTERVAL: Duration = Duration::from_millis(2);
/// The largest gossip batch (well under the p2p message limit).
const GOSSIP_BATCH_BYTES: usize = 512 * 1024;

/// Why the node could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The state database failed.
    #[error("state: {0}")]
    State(#[from] umbra_state::StateError),
    /// The runtime failed.
    #[error("runtime: {0}")]
    Runtime(#[from] RuntimeError),
    /// The block index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The data directory does not match itself or the genesis.
    #[error("data directory is inconsistent: {0}")]
    Inconsistent(String),
    /// Consensus failed to start.
    #[error("consensus: {0}")]
    Consensus(String),
    /// Configuration problem.
    #[error("config: {0}")]
    Config(String),
    /// An I/O failure.
    #[error("{0}")]
    Io(String),
}

/// A block executed but not yet finalized.
struct Executed {
    block: Block,
    pending: Pending,
    receipts: Vec<Receipt>,
    messages: Vec<Message>,
}

/// The latest finalized block that is applied to the state.
#[derive(Clone)]
struct Committed {
    header: Header,
    hash: Hash,
    at: SystemTime,
}

struct Inner<E: Clock + Storage + Metrics + Spawner> {
    ctx: E,
    name: String,
    genesis: Genesis,
    genesis_block: Block,
    runtime: Runtime,
    state: tokio::sync::RwLock<State<E>>,
    committed: Mutex<Committed>,
    executed: Mutex<BTreeMap<Hash, Arc<Executed>>>,
    mempool: Mutex<Mempool>,
    index: Index,
    params: Params,
    heads: tokio::sync::broadcast::Sender<Header>,
    consensus: OnceLock<ConsensusHandle>,
    /// Admitted transactions waiting to be gossiped in the next batch.
    gossip_out: Mutex<Vec<Vec<u8>>>,
    /// Unfinalized blocks the engine showed us (as candidates or parents), by hash, so a missing
    /// ancestor can be executed on demand instead of waiting for a finalization that may need our
    /// own vote.
    known: Mutex<BTreeMap<Hash, Block>>,
    /// See [`crate::NodeConfig::empty_block_interval_ms`].
    empty_block_interval_ms: std::sync::atomic::AtomicU64,
}

/// A running node's shared core. Cheap to clone.
pub struct Node<E: Clock + Storage + Metrics + Spawner> {
    inner: Arc<Inner<E>>,
}

impl<E: Clock + Storage + Metrics + Spawner> Clone for Node<E> {
    fn clone(&self) -> Self {
        Node { inner: self.inner.clone() }
    }
}

/// Reads the committed state.
struct Committed_<'a, E: Clock + Storage + Metrics + Spawner>(&'a State<E>);
/// Reads the committed state plus a chain of speculative batches.
struct Speculative<'a, E: Clock + Storage + Metrics + Spawner>(&'a State<E>, &'a Pending);

impl<E: Clock + Storage + Metrics + Spawner> StateRead for Committed_<'_, E> {
    async fn get(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, RuntimeError> {
        self.0.get(key).await.map_err(|e| RuntimeError::Read(e.to_string()))
    }
}

impl<E: Clock + Storage + Metrics + Spawner> StateRead for Speculative<'_, E> {
    async fn get(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, RuntimeError> {
        self.0.get_pending(self.1, key).await.map_err(|e| RuntimeError::Read(e.to_string()))
    }
}

/// The consensus engine's evidence check, as the runtime's consensus rule for `SubmitEvidence`.
struct CommonwareEvidence;

impl umbra_types::EvidenceVerifier for CommonwareEvidence {
    fn verify(
        &self,
        namespace: &[u8],
        epoch: u64,
        committee: &[ValidatorKey],
        proof: &[u8],
    ) -> Result<umbra_types::Offence, String> {
        let (votes_epoch, offender) =
            umbra_consensus::verify_evidence(namespace, committee, proof).map_err(|e| e.to_string())?;
        if votes_epoch != epoch {
            return Err(format!("the votes are from epoch {votes_epoch}, not {epoch}"));
        }
        let (_, view) = umbra_consensus::evidence_round(proof).map_err(|e| e.to_string())?;
        Ok(umbra_types::Offence { offender, view })
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn empty_root() -> Hash {
    umbra_crypto::merkle_root(&[])
}

/// The header's `messages_root`: the Merkle root of the emitted messages' leaves, in order.
fn messages_root(messages: &[Message]) -> Hash {
    let leaves: Vec<Hash> = messages.iter().map(Message::leaf_hash).collect();
    umbra_crypto::merkle_root(&leaves)
}

fn tx_root(txs: &[SignedTransaction]) -> Hash {
    let hashes: Vec<Hash> = txs.iter().map(|t| t.hash()).collect();
    umbra_crypto::merkle_root(&hashes)
}

/// What `UNIT` shares are worth when `shares` shares are worth `value` (`UNIT` while none exist).
fn share_price(value: umbra_types::Amount, shares: u128) -> umbra_types::Amount {
    if shares == 0 { umbra_types::UNIT } else { umbra_types::economics::mul_div(umbra_types::UNIT, value, shares) }
}

/// A pool record with its value and share price.
fn pool_info(height: u64, pool: umbra_types::economics::PoolRecord) -> umbra_rpc::EconPoolInfo {
    let value = pool.value();
    let share_price = share_price(value, pool.shares);
    umbra_rpc::EconPoolInfo { height, pool, value, share_price }
}

fn rpc_err(code: ErrorCode, e: impl std::fmt::Display) -> RpcError {
    RpcError::new(code, e.to_string())
}

fn admission_err(e: AdmissionError) -> RpcError {
    {
        let code = match &e {
            AdmissionError::Malformed(_) => ErrorCode::MalformedTransaction,
            AdmissionError::TooLarge { .. } => ErrorCode::TransactionTooLarge,
            AdmissionError::BadSignature(_) => ErrorCode::BadSignature,
            AdmissionError::WrongChainId { .. } => ErrorCode::WrongChainId,
            AdmissionError::FeeTooLow { .. } => ErrorCode::FeeTooLow,
            AdmissionError::NonceUsed { .. } => ErrorCode::NonceUsed,
            AdmissionError::NonceGap { .. } => ErrorCode::NonceGap,
            AdmissionError::CannotPayFee { .. } => ErrorCode::CannotPayFee,
            AdmissionError::EgressUnknownOrigin { .. } | AdmissionError::BadEgressSignature { .. } => {
                ErrorCode::BadEgress
            }
            AdmissionError::EgressStale { .. } | AdmissionError::EgressAhead { .. } => ErrorCode::EgressSequence,
            AdmissionError::Runtime(_) => ErrorCode::Unavailable,
        };
        rpc_err(code, e)
    }
}

impl<E: Clock + Storage + Metrics + Spawner + Supervisor> Node<E> {
    /// Opens (or creates from `genesis`) the node's state and index.
    pub async fn open(
        ctx: E,
        name: String,
        genesis: Genesis,
        index_path: &std::path::Path,
        state_cfg: &umbra_state::StateConfig,
    ) -> Result<Node<E>, NodeError> {
        genesis.validate().map_err(|e| NodeError::Config(e.to_string()))?;
        let runtime = Runtime::with_evidence_verifier(Box::new(CommonwareEvidence));
        let index = Index::open(index_path)?;
        let mut state = State::open(ctx.child("state"), state_cfg).await?;
        let fresh = runtime.tip(&Committed_(&state)).await.is_err();
        let genesis_block = if fresh {
            if index.head()?.is_some_and(|h| h > 0) {
                return Err(NodeError::Inconsistent(
                    "the block index has blocks but the state is empty; remove the data directory to resync".into(),
                ));
            }
            let changes = runtime.genesis(&genesis, &Committed_(&state)).await?;
            let pending = state.speculate(None, &changes).await?;
            let block = Block {
                header: Header {
                    height: 0,
                    parent: Hash::ZERO,
                    timestamp_ms: genesis.genesis_time_ms,
                    proposer: [0; 32],
                    epoch: 0,
                    tx_root: empty_root(),
                    state_root: Hash(pending.root()),
                    messages_root: empty_root(),
                    next_committee: Some(genesis.validators.iter().map(|v| v.key).collect()),
                },
                txs: vec![],
            };
            index.put_block(&block, &[], &[])?;
            state.commit(&pending).await?;
            info!(target: "node.genesis", hash = %block.hash(), chain_id = %genesis.chain_id, "created chain from genesis");
            block
        } else {
            let (block, _) = index
                .block(0)?
                .ok_or_else(|| NodeError::Inconsistent("state exists but the block index has no genesis".into()))?;
            block
        };
        let tip = runtime.tip(&Committed_(&state)).await?;
        let (head, _) = index.block(tip.height)?.ok_or_else(|| {
            NodeError::Inconsistent(format!("state is at height {} but the block index lacks that block", tip.height))
        })?;
        if head.header.state_root.0 != state.root() {
            return Err(NodeError::Inconsistent(format!(
                "state root {} does not match block {}'s {}",
                Hash(state.root()),
                tip.height,
                head.header.state_root
            )));
        }
        let (chain_id, params) = runtime.chain_params(&Committed_(&state)).await?;
        if chain_id != genesis.chain_id || genesis_block.header.timestamp_ms != genesis.genesis_time_ms {
            return Err(NodeError::Inconsistent(format!(
                "the data directory belongs to chain '{chain_id}', not to this genesis ('{}')",
                genesis.chain_id
            )));
        }
        info!(target: "node.open", height = tip.height, hash = %head.hash(), "state opened");
        let (heads, _) = tokio::sync::broadcast::channel(256);
        Ok(Node {
            inner: Arc::new(Inner {
                committed: Mutex::new(Committed { hash: head.hash(), header: head.header, at: ctx.current() }),
                ctx,
                name,
                genesis,
                genesis_block,
                runtime,
                state: tokio::sync::RwLock::new(state),
                executed: Mutex::new(BTreeMap::new()),
                mempool: Mutex::new(Mempool::new(params.mempool_max_txs as usize)),
                index,
                params,
                heads,
                consensus: OnceLock::new(),
                gossip_out: Mutex::new(Vec::new()),
                known: Mutex::new(BTreeMap::new()),
                empty_block_interval_ms: std::sync::atomic::AtomicU64::new(EMPTY_BLOCK_INTERVAL_MS),
            }),
        })
    }

    /// Connects the node to its consensus engine (for certificates and gossip) and starts the task
    /// that gossips admitted transactions in batches (one p2p message per batch, every 2 ms).
    ///
    /// Equivocation evidence the engine collects is submitted as a `SubmitEvidence` transaction
    /// signed by `account` (the validator's own account) when it can pay the fee; otherwise it is
    /// logged with its hex so anyone can submit it (`umbra staking evidence HEX`).
    pub fn attach_consensus(&self, handle: ConsensusHandle, account: umbra_crypto::Keypair) {
        if self.inner.consensus.set(handle.clone()).is_err() {
            return;
        }
        let (node, evidence_handle) = (self.clone(), handle.clone());
        self.inner.ctx.child("evidence").spawn(move |ctx| async move {
            loop {
                ctx.sleep(Duration::from_secs(1)).await;
                for proof in evidence_handle.take_evidence() {
                    node.submit_evidence(&account, proof).await;
                }
            }
        });
        let node = self.clone();
        self.inner.ctx.child("gossip").spawn(move |ctx| async move {
            loop {
                ctx.sleep(GOSSIP_INTERVAL).await;
                let queued = std::mem::take(&mut *node.lock_gossip());
                let mut batch: Vec<Vec<u8>> = Vec::new();
                let mut size = 0;
                for tx in queued {
                    if size + tx.len() + 4 > GOSSIP_BATCH_BYTES && !batch.is_empty() {
                        handle.gossip(umbra_types::encode(&std::mem::take(&mut batch))).await;
                        size = 0;
                    }
                    size += tx.len() + 4;
                    batch.push(tx);
                }
                if !batch.is_empty() {
                    handle.gossip(umbra_types::encode(&batch)).await;
                }
            }
        });
    }

    async fn submit_evidence(&self, account: &umbra_crypto::Keypair, proof: Vec<u8>) {
        let epoch = match umbra_consensus::evidence_round(&proof) {
            Ok((epoch, _)) => epoch,
            Err(e) => {
                warn!(target: "node.evidence", error = %e, "engine produced unreadable evidence");
                return;
            }
        };
        let evidence = umbra_types::Evidence { epoch, proof }.to_bytes();
        let nonce = match self.next_nonce(&account.address()).await {
            Ok(n) => n,
            Err(e) => {
                warn!(target: "node.evidence", error = %e, evidence = %hex::encode(&evidence), "cannot submit evidence");
                return;
            }
        };
        let tx = umbra_types::Transaction {
            signer: account.address(),
            nonce,
            chain_id: self.inner.genesis.chain_id.clone(),
            fee: 0,
            call: umbra_types::Call::SubmitEvidence { evidence: evidence.clone() },
        };
        let stx = umbra_crypto::sign_with_min_fee(account, tx, &self.inner.params.fees);
        match self.submit(&stx.to_bytes()).await {
            Ok(hash) => info!(target: "node.evidence", %hash, epoch, "submitted equivocation evidence"),
            Err(e) => warn!(
                target: "node.evidence",
                error = %e,
                evidence = %hex::encode(&evidence),
                "could not submit equivocation evidence; anyone can: umbra staking evidence HEX"
            ),
        }
    }

    fn lock_gossip(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        match self.inner.gossip_out.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The genesis block (consensus starts from it).
    pub fn genesis_block(&self) -> Block {
        self.inner.genesis_block.clone()
    }

    /// The genesis file the node runs.
    pub fn genesis(&self) -> &Genesis {
        &self.inner.genesis
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The chain parameters.
    pub fn params(&self) -> &Params {
        &self.inner.params
    }

    /// The latest finalized header applied to the state.
    pub fn head(&self) -> (Header, Hash) {
        let c = self.committed();
        (c.header, c.hash)
    }

    /// Milliseconds since the latest finalized block was applied.
    pub fn since_last_block_ms(&self) -> u64 {
        let at = self.committed().at;
        self.inner.ctx.current().duration_since(at).map(|d| d.as_millis() as u64).unwrap_or(0)
    }

    /// Transactions waiting.
    pub fn mempool_len(&self) -> usize {
        self.lock_mempool().len()
    }

    /// A receiver of every finalized header from now on.
    pub fn subscribe_heads(&self) -> tokio::sync::broadcast::Receiver<Header> {
        self.inner.heads.subscribe()
    }

    fn committed(&self) -> Committed {
        match self.inner.committed.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn lock_mempool(&self) -> std::sync::MutexGuard<'_, Mempool> {
        match self.inner.mempool.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn lock_known(&self) -> std::sync::MutexGuard<'_, BTreeMap<Hash, Block>> {
        match self.inner.known.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Executes `block`, first executing any unexecuted ancestors we know (up to 64 back).
    async fn execute_with_ancestors(&self, block: &Block) -> Result<Option<Arc<Executed>>, String> {
        let mut missing: Vec<Block> = Vec::new();
        let mut cursor = block.clone();
        loop {
            match self.execute(&cursor).await? {
                Some(done) => {
                    if missing.is_empty() {
                        return Ok(Some(done));
                    }
                    break;
                }
                None => {
                    let parent = self.lock_known().get(&cursor.header.parent).cloned();
                    match parent {
                        Some(p) if missing.len() < 64 => {
                            missing.push(cursor);
                            cursor = p;
                        }
                        _ => return Ok(None),
                    }
                }
            }
        }
        // `cursor` is executed; now its descendants, oldest first.
        let mut last = None;
        while let Some(b) = missing.pop() {
            last = self.execute(&b).await?;
            if last.is_none() {
                return Ok(None);
            }
        }
        Ok(last)
    }

    fn lock_executed(&self) -> std::sync::MutexGuard<'_, BTreeMap<Hash, Arc<Executed>>> {
        match self.inner.executed.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    // ----- queries -----

    /// Sets how long a leader waits for transactions before proposing an empty block (see
    /// [`crate::NodeConfig::empty_block_interval_ms`]).
    pub fn set_empty_block_interval(&self, ms: u64) {
        self.inner.empty_block_interval_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// A finalized block with its receipts and (if consensus has it) its finality certificate.
    pub async fn block(&self, id: Option<umbra_rpc::BlockId>) -> Result<umbra_rpc::BlockResponse, RpcError> {
        let height = match id {
            None => self.head().0.height,
            Some(umbra_rpc::BlockId::Height(h)) => h,
            Some(umbra_rpc::BlockId::Hash(hash)) => self
                .inner
                .index
                .height_of(&hash)
                .map_err(|e| rpc_err(ErrorCode::Internal, e))?
                .ok_or_else(|| rpc_err(ErrorCode::NotFound, format!("no finalized block with hash {hash}")))?,
        };
        if height > self.head().0.height {
            return Err(rpc_err(ErrorCode::NotFound, format!("no finalized block at height {height} yet")));
        }
        let (block, receipts) = self
            .inner
            .index
            .block(height)
            .map_err(|e| rpc_err(ErrorCode::Internal, e))?
            .ok_or_else(|| rpc_err(ErrorCode::NotFound, format!("no finalized block at height {height}")))?;
        let finality_certificate = match (height, self.inner.consensus.get()) {
            (0, _) | (_, None) => None,
            (h, Some(c)) => c.finalization(h).await.map(hex::encode),
        };
        Ok(umbra_rpc::BlockResponse { hash: block.hash(), block, finality_certificate, receipts })
    }

    /// A transaction by hash: pending in the mempool or finalized with its receipt.
    pub fn transaction(&self, hash: &Hash) -> Result<umbra_rpc::TxResponse, RpcError> {
        if let Some((h, i)) = self.inner.index.tx_location(hash).map_err(|e| rpc_err(ErrorCode::Internal, e))?
            && h <= self.head().0.height
            && let Some((block, receipts)) = self.inner.index.block(h).map_err(|e| rpc_err(ErrorCode::Internal, e))?
            && let Some(tx) = block.txs.get(i as usize)
        {
            return Ok(umbra_rpc::TxResponse {
                tx: tx.clone(),
                status: umbra_rpc::TxStatus::Finalized,
                receipt: receipts.get(i as usize).cloned(),
            });
        }
        match self.lock_mempool().get(hash) {
            Some(tx) => Ok(umbra_rpc::TxResponse { tx, status: umbra_rpc::TxStatus::Pending, receipt: None }),
            None => Err(rpc_err(ErrorCode::NotFound, format!("unknown transaction {hash}"))),
        }
    }

    /// An account with (optionally) a proof against the latest finalized header.
    pub async fn account(&self, who: &Address, prove: bool) -> Result<umbra_rpc::AccountResponse, RpcError> {
        let state = self.inner.state.read().await;
        // The committed header cannot move while the read lock is held (commits take the write lock).
        let (header, _) = self.head();
        let rec: AccountRecord = self
            .inner
            .runtime
            .account(&Committed_(&state), who)
            .await
            .map_err(|e| rpc_err(ErrorCode::Unavailable, e))?;
        let proof = if prove {
            let p: StateProof =
                state.prove(&StateKey::Account(*who).hash()).await.map_err(|e| rpc_err(ErrorCode::Unavailable, e))?;
            Some(hex::encode(p.to_bytes()))
        } else {
            None
        };
        Ok(umbra_rpc::AccountResponse { address: *who, balance: rec.balance, nonce: rec.nonce, header, proof })
    }

    /// Finalized blocks from `req.from` with sparse certificates and the proven messages of the
    /// requested topics: what a worker's host relays to its TEE part (see `docs/worker-protocol.md`).
    pub async fn worker_sync(&self, req: umbra_rpc::SyncRequest) -> Result<umbra_rpc::SyncResponse, RpcError> {
        let head = self.head().0.height;
        let from = req.from.max(1);
        let count = u64::from(req.max_blocks.clamp(1, umbra_rpc::MAX_SYNC_BLOCKS));
        if from > head {
            return Ok(umbra_rpc::SyncResponse { blocks: vec![], head });
        }
        let to = head.min(from.saturating_add(count - 1));
        let epoch_length = self.inner.params.epoch_length.max(1);
        let topics: std::collections::BTreeSet<Topic> = req.topics.into_iter().collect();
        let mut blocks = Vec::with_capacity((to - from + 1) as usize);
        for h in from..=to {
            let (block, _) = self
                .inner
                .index
                .block(h)
                .map_err(|e| rpc_err(ErrorCode::Internal, e))?
                .ok_or_else(|| rpc_err(ErrorCode::Unavailable, format!("block {h} is not indexed yet")))?;
            let all = self.inner.index.messages(h).map_err(|e| rpc_err(ErrorCode::Internal, e))?;
            let mut messages = Vec::new();
            let wanted: Vec<usize> = (0..all.len()).filter(|&i| topics.contains(&all[i].topic)).collect();
            if !wanted.is_empty() {
                // All of a block's proofs from one pass over its tree (one proof at a time is quadratic).
                let leaves: Vec<Hash> = all.iter().map(Message::leaf_hash).collect();
                let proofs = umbra_crypto::merkle_proofs(&leaves, &wanted)
                    .ok_or_else(|| rpc_err(ErrorCode::Internal, "message index out of range"))?;
                let mut all: Vec<Option<Message>> = all.into_iter().map(Some).collect();
                for (i, proof) in wanted.into_iter().zip(proofs) {
                    if let Some(message) = all[i].take() {
                        messages.push(umbra_rpc::ProvenMessage { message, proof });
                    }
                }
            }
            let certificate = if h == to || (h + 1) % epoch_length == 0 {
                match self.inner.consensus.get() {
                    Some(c) => c.finalization(h).await.map(hex::encode),
                    None => None,
                }
            } else {
                None
            };
            blocks.push(umbra_rpc::SyncBlock { header: block.header, certificate, messages });
        }
        Ok(umbra_rpc::SyncResponse { blocks, head })
    }

    /// One value of the authenticated state with its proof at the latest finalized block.
    pub async fn state_value(&self, key: &StateKey) -> Result<umbra_rpc::StateValueResponse, RpcError> {
        let state = self.inner.state.read().await;
        let (header, _) = self.head();
        let hashed = key.hash();
        let value = Committed_(&state).get(&hashed).await.map_err(|e| rpc_err(ErrorCode::Unavailable, e))?;
        let proof: StateProof = state.prove(&hashed).await.map_err(|e| rpc_err(ErrorCode::Unavailable, e))?;
        drop(state);
        let certificate = match (header.height, self.inner.consensus.get()) {
            (0, _) | (_, None) => None,
            (h, Some(c)) => c.finalization(h).await.map(hex::encode),
        };
        Ok(umbra_rpc::StateValueResponse {
            header,
            certificate,
            value: value.map(hex::encode),
            proof: hex::encode(proof.to_bytes()),
        })
    }

    /// The registry at the latest finalized block: policy, keys, clusters, workers, collateral.
    pub async fn registry_status(&self) -> Result<umbra_rpc::RegistryStatus, RpcError> {
        let state = self.inner.state.read().await;
        let (header, _) = self.head();
        let s = Committed_(&state);
        let rt = &self.inner.runtime;
        let unavailable = |e: RuntimeError| rpc_err(ErrorCode::Unavailable, e);
        Ok(umbra_rpc::RegistryStatus {
            height: header.height,
            policy: rt.policy(&s).await.map_err(unavailable)?,
            keys: rt.keys(&s).await.map_err(unavailable)?,
            clusters: rt.clusters(&s).await.map_err(unavailable)?,
            workers: rt.workers(&s).await.map_err(unavailable)?,
            collateral: rt.collaterals(&s).await.map_err(unavailable)?,
        })
    }

    /// One proposal with its tally so far, at the latest finalized block.
    pub async fn gov_proposal(&self, id: u64) -> Result<umbra_rpc::GovProposalInfo, RpcError> {
        let state = self.inner.state.read().await;
        let (header, _) = self.head();
        self.proposal_info(&Committed_(&state), header.height, id)
            .await?
            .ok_or_else(|| rpc_err(ErrorCode::NotFound, format!("no proposal {id}")))
    }

    /// The newest proposals (at most [`umbra_rpc::MAX_LISTED_PROPOSALS`]), newest first, with their tallies
    /// so far.
    pub async fn gov_proposals(&self) -> Result<Vec<umbra_rpc::GovProposalInfo>, RpcError> {
        let state = self.inner.state.read().await;
        let (header, _) = self.head();
        let s = Committed_(&state);
        let count = self.inner.runtime.gov_proposal_count(&s).await.map_err(|e| rpc_err(ErrorCode::Unavailable, e))?;
        let mut out = Vec::new();
        for id in (count.saturating_sub(umbra_rpc::MAX_LISTED_PROPOSALS)..count).rev() {
            if let Some(p) = self.proposal_info(&s, header.height, id).await? {
                out.push(p);
            }
        }
        Ok(out)
    }

    async fn proposal_info<S: StateRead>(
        &self,
        s: &S,
        height: u64,
        id: u64,
    ) -> Result<Option<umbra_rpc::GovProposalInfo>, RpcError> {
        let rt = &self.inner.runtime;
        let unavailable = |e: RuntimeError| rpc_err(ErrorCode::Unavailable, e);
        let Some(proposal) = rt.gov_proposal(s, id).await.map_err(unavailable)? else { return Ok(None) };
        let tally = rt.gov_tally(s, id).await.map_err(unavailable)?;
        let (_, params) = rt.chain_params(s).await.map_err(unavailable)?;
        let issued = rt.total_issued(s).await.map_err(unavailable)?;
        let quorum_bps = params.governance.quorum_bps;
        let quorum = issued.saturating_mul(umbra_types::Amount::from(quorum_bps)).div_ceil(10_000);
        let passing = tally.passes(proposal.threshold_bps, quorum_bps, issued);
        Ok(Some(umbra_rpc::GovProposalInfo { height, proposal, tally, quorum, passing }))
    }

    /// The treasury's balance and spend history at the latest finalized block.
    pub async fn treasury_info(&self) -> Result<umbra_rpc::TreasuryInfo, RpcError> {
        let state = self.inner.state.read().await;
        let (header, _) = self.head();
        let s = Committed_(&state);
        let rt = &self.inner.runtime;
        let unavailable = |e: RuntimeError| rpc_err(ErrorCode::Unavailable, e);
        let address = rt.treasury_address();
        Ok(umbra_rpc::TreasuryInfo {
            height: header.height,
            address,
            balance: rt.account(&s, &address).await.map_err(unavailable)?.balance,
            spends: rt.treasury_spends(&s).await.map_err(unavailable)?,
        })
    }

    /// A multisig's record, balance and pending operations at the latest finalized block.
    pub async fn multisig_pending(&self, address: &Address) -> Result<umbra_rpc::MultisigInfo, RpcError> {
        let state = self.inner.state.read().await;
        let (header, _) = self.head();
        let s = Committed_(&state);
        let rt = &self.inner.runtime;
        let unavailable = |e: RuntimeError| rpc_err(ErrorCode::Unavailable, e);
        let record = rt.multisig(&s, address).await.map_err(unavailable)?;
        let mut pending = Vec::new();
        for op in record.as_ref().map(|r| r.pending.clone()).unwrap_or_default() {
            if let Some(o) = rt.multisig_op(&s, address, op).await.map_err(unavailable)? {
                pending.push(o);
            }
        }
        Ok(umbra_rpc::MultisigInfo {
            height: header.height,
            address: *address,
            record,
            balance: rt.account(&s, address).await.map_err(unavailable)?.balance,
            pending,
        })
    }

    /// Every stake pool at the latest finalized block, by number.
    pub async fn econ_pools(&self) -> Result<Vec<umbra_rpc::EconPoolInfo>, RpcError> {
        let state = self.inner.state.read().await;
        let (header, _) = self.head();
        let s = Committed_(&state);
        let rt = &self.inner.runtime;
        let ids = rt.econ_pool_ids(&s).await.map_err(|e| rpc_err(ErrorCode::Unavailable, e))?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(p) = rt.econ_pool(&s, id).await.map_err(|e| rpc_err(ErrorCode::Unavailable, e))? {
                out.push(pool_info(header.height, p));
            }
        }
        Ok(out)
    }

    /// One stake pool at the latest finalized block.
    pub async fn econ_pool(&self, id: u64) -> Result<umbra_rpc::EconPoolInfo, RpcError> {
        let state = self.inner.state.read().await;
        let (header, _) = self.head();
        let pool = self.inner.runtime.econ_pool(&Committed_(&state), id).await;
        let pool = pool.map_err(|e| rpc_err(ErrorCode::Unavailable, e))?;
        let pool = pool.ok_or_else(|| rpc_err(ErrorCode::NotFound, format!("no pool {id}")))?;
        Ok(pool_info(header.height, pool))
    }

    /// One vault at the latest finalized block, with the value of each of its pool holdings.
    pub async fn econ_vault(&self, id: u64) -> Result<umbra_rpc::EconVaultInfo, RpcError> {
        let state = self.inner.state.read().await;
        let (header, _) = self.head();
        let s = Committed_(&state);
        let rt = &self.inner.runtime;
        let unavailable = |e: RuntimeError| rpc_err(ErrorCode::Unavailable, e);
        let vault = rt.econ_vault(&s, id).await.map_err(unavailable)?;
        let vault = vault.ok_or_else(|| rpc_err(ErrorCode::NotFound, format!("no vault {id}")))?;
        let value = rt.econ_vault_value(&s, &vault).await.map_err(unavailable)?;
        let holder = umbra_types::economics::vault_address(id);
        let mut allocations = Vec::new();
        for pool_id in &vault.pools {
            let holding = rt.econ_pool_holding(&s, *pool_id, &holder).await.map_err(unavailable)?;
            let pool = rt.econ_pool(&s, *pool_id).await.map_err(unavailable)?;
            let value = pool.map(|p| p.value_of(holding.shares)).unwrap_or(0);
            allocations.push(umbra_rpc::EconAllocation { pool: *pool_id, shares: holding.shares, value });
        }
        let share_price = share_price(value, vault.shares);
        Ok(umbra_rpc::EconVaultInfo { height: header.height, vault, value, share_price, allocations })
    }

    /// What the chain knows of one worker's compute at the latest finalized block.
    pub async fn econ_worker(&self, id: &umbra_types::WorkerId) -> Result<umbra_rpc::EconWorkerInfo, RpcError> {
        use umbra_types::economics::{SessionState, min_stake, worker_share};
        let state = self.inner.state.read().await;
        let (header, _) = self.head();
        let s = Committed_(&state);
        let rt = &self.inner.runtime;
        let unavailable = |e: RuntimeError| rpc_err(ErrorCode::Unavailable, e);
        if rt.worker(&s, id).await.map_err(unavailable)?.is_none() {
            return Err(rpc_err(ErrorCode::NotFound, format!("no worker {}", hex::encode(id))));
        }
        let record = rt.econ_worker(&s, id).await.map_err(unavailable)?;
        let (_, params) = rt.chain_params(&s).await.map_err(unavailable)?;
        let ep = &params.economics;
        let share = match &record.session {
            Some(sess) if sess.state == SessionState::Computing && sess.responsive => {
                worker_share(ep, sess.value, record.score)
            }
            _ => 0,
        };
        let min_stake = min_stake(ep, record.score);
        Ok(umbra_rpc::EconWorkerInfo { height: header.height, worker: hex::encode(id), record, share, min_stake })
    }

    /// One account's shares of a pool or vault and their value, at the latest finalized block.
    pub async fn econ_position(
        &self,
        target: umbra_rpc::EconTarget,
        holder: &Address,
    ) -> Result<umbra_rpc::EconPositionInfo, RpcError> {
        let state = self.inner.state.read().await;
        let (header, _) = self.head();
        let s = Committed_(&state);
        let rt = &self.inner.runtime;
        let unavailable = |e: RuntimeError| rpc_err(ErrorCode::Unavailable, e);
        let (holding, value) = match target {
            umbra_rpc::EconTarget::Pool(id) => {
                let pool = rt.econ_pool(&s, id).await.map_err(unavailable)?;
                let pool = pool.ok_or_else(|| rpc_err(ErrorCode::NotFound, format!("no pool {id}")))?;
                let h = rt.econ_pool_holding(&s, id, holder).await.map_err(unavailable)?;
                let v = pool.value_of(h.shares);
                (h, v)
            }
            umbra_rpc::EconTarget::Vault(id) => {
                let vault = rt.econ_vault(&s, id).await.map_err(unavailable)?;
                let vault = vault.ok_or_else(|| rpc_err(ErrorCode::NotFound, format!("no vault {id}")))?;
                let total = rt.econ_vault_value(&s, &vault).await.map_err(unavailable)?;
                let h = rt.econ_vault_holding(&s, id, holder).await.map_err(unavailable)?;
                let v = umbra_types::economics::mul_div(h.shares, total, vault.shares);
                (h, v)
            }
        };
        Ok(umbra_rpc::EconPositionInfo {
            height: header.height,
            target,
            holder: *holder,
            shares: holding.shares,
            queued: holding.queued,
            value,
        })
    }

    /// The rewards budget at the latest finalized block: the per-block budget, its split, the reserve left.
    pub async fn econ_budget(&self) -> Result<umbra_rpc::EconBudgetInfo, RpcError> {
        let state = self.inner.state.read().await;
        let (header, _) = self.head();
        let s = Committed_(&state);
        let rt = &self.inner.runtime;
        let unavailable = |e: RuntimeError| rpc_err(ErrorCode::Unavailable, e);
        let budget = rt.econ_budget(&s).await.map_err(unavailable)?;
        let (_, params) = rt.chain_params(&s).await.map_err(unavailable)?;
        let share = umbra_types::Amount::from(params.staking.validator_reward_share_bps);
        let validator_part = umbra_types::economics::mul_div(budget, share, 10_000);
        let sessions = rt.econ_sessions(&s).await.map_err(unavailable)?;
        Ok(umbra_rpc::EconBudgetInfo {
            height: header.height,
            budget,
            validator_part,
            compute_part: budget.saturating_sub(validator_part),
            reserve_left: rt.rewards_reserve(&s).await.map_err(unavailable)?,
            escrow: rt.econ_escrow(),
            sessions: sessions.iter().map(hex::encode).collect(),
        })
    }

    /// An agent's wallet at the latest finalized block (`NotFound` for no such agent).
    pub async fn agent_wallet(&self, agent: &[u8; 32]) -> Result<umbra_rpc::AgentWalletInfo, RpcError> {
        let state = self.inner.state.read().await;
        let (header, _) = self.head();
        let s = Committed_(&state);
        let rt = &self.inner.runtime;
        let unavailable = |e: RuntimeError| rpc_err(ErrorCode::Unavailable, e);
        let record = rt
            .agent(&s, agent)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| rpc_err(ErrorCode::NotFound, format!("no agent {}", hex::encode(agent))))?;
        let account = umbra_types::contracts::contract_account(agent);
        let balance = rt.account(&s, &account).await.map_err(unavailable)?.balance;
        let (_, params) = rt.chain_params(&s).await.map_err(unavailable)?;
        let day_blocks = umbra_types::agent_wallet::blocks_per_day(params.economics.target_block_ms);
        let mut spend = rt.agent_spend(&s, agent).await.map_err(unavailable)?;
        let from = header.height.saturating_sub(day_blocks - 1);
        spend.transfers.retain(|t| t.height >= from);
        Ok(umbra_rpc::AgentWalletInfo {
            height: header.height,
            agent: hex::encode(agent),
            account,
            balance,
            spend_cap_per_day: record.policy.spend_cap_per_day,
            spent_today: spend.spent_since(header.height, day_blocks),
            day_blocks,
            transfers: spend.transfers,
            eth_addresses: rt.agent_eth_addresses(&s, agent).await.map_err(unavailable)?,
        })
    }

    /// An agent's latest attested outputs at the latest finalized block (`NotFound` for no such agent).
    pub async fn agent_outputs(&self, agent: &[u8; 32]) -> Result<umbra_rpc::AgentOutputsInfo, RpcError> {
        let state = self.inner.state.read().await;
        let (header, _) = self.head();
        let s = Committed_(&state);
        let rt = &self.inner.runtime;
        let unavailable = |e: RuntimeError| rpc_err(ErrorCode::Unavailable, e);
        if rt.agent(&s, agent).await.map_err(unavailable)?.is_none() {
            return Err(rpc_err(ErrorCode::NotFound, format!("no agent {}", hex::encode(agent))));
        }
        let (outputs, total) = rt.agent_outputs(&s, agent).await.map_err(unavailable)?;
        Ok(umbra_rpc::AgentOutputsInfo {
            height: header.height,
            agent: hex::encode(agent),
            total,
            outputs,
            eth_addresses: rt.agent_eth_addresses(&s, agent).await.map_err(unavailable)?,
        })
    }

    /// Compute stake on one contract at the latest finalized block.
    pub async fn econ_compute_stake(&self, contract: &[u8; 32]) -> Result<umbra_rpc::EconComputeStakeInfo, RpcError> {
        let state = self.inner.state.read().await;
        let (header, _) = self.head();
        let s = Committed_(&state);
        let rt = &self.inner.runtime;
        let unavailable = |e: RuntimeError| rpc_err(ErrorCode::Unavailable, e);
        let rec = rt.econ_compute_stake(&s, contract).await.map_err(unavailable)?;
        let unstaking =
            rt.econ_unstakes(&s).await.map_err(unavailable)?.into_iter().filter(|u| u.contract == *contract).collect();
        Ok(umbra_rpc::EconComputeStakeInfo {
            height: header.height,
            contract: hex::encode(contract),
            cluster: rec.as_ref().map(|r| r.cluster),
            total: rec.as_ref().map_or(0, |r| r.total),
            stakers: rec.map(|r| r.stakers).unwrap_or_default(),
            unstaking,
        })
    }

    /// Every contract with compute stake on a cluster at the latest finalized block.
    pub async fn econ_cluster_stakes(&self, cluster: u32) -> Result<umbra_rpc::EconClusterStakesInfo, RpcError> {
        let state = self.inner.state.read().await;
        let (header, _) = self.head();
        let s = Committed_(&state);
        let rt = &self.inner.runtime;
        let unavailable = |e: RuntimeError| rpc_err(ErrorCode::Unavailable, e);
        let (_, params) = rt.chain_params(&s).await.map_err(unavailable)?;
        let contracts = rt
            .econ_cluster_stakes(&s, cluster)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|(c, stake)| umbra_rpc::EconContractStake { contract: hex::encode(c), stake })
            .collect();
        Ok(umbra_rpc::EconClusterStakesInfo {
            height: header.height,
            cluster,
            contracts,
            free_quota_stake: params.economics.free_quota_stake,
        })
    }

    /// The current committee, the next one once chosen, and every candidate, as JSON.
    pub async fn staking(&self) -> Result<serde_json::Value, RpcError> {
        let state = self.inner.state.read().await;
        let (header, _) = self.head();
        let view = Committed_(&state);
        let rt = &self.inner.runtime;
        let unavailable = |e: RuntimeError| rpc_err(ErrorCode::Unavailable, e);
        let committee = rt.committee(&view).await.map_err(unavailable)?;
        let next = rt.next_committee(&view).await.map_err(unavailable)?;
        let candidates = rt.candidates(&view).await.map_err(unavailable)?;
        let epoch_length = self.inner.params.epoch_length.max(1);
        Ok(serde_json::json!({
            "height": header.height,
            "epoch": header.height / epoch_length,
            "epoch_length": epoch_length,
            "next_epoch_at": (header.height / epoch_length + 1) * epoch_length,
            "committee": committee.iter().map(hex::encode).collect::<Vec<_>>(),
            "next_committee": next.map(|c| c.iter().map(hex::encode).collect::<Vec<_>>()),
            "candidates": candidates,
            "voting": self.inner.consensus.get().map(|c| c.is_voting()),
        }))
    }

    /// The nonce a new transaction from `who` should carry.
    pub async fn next_nonce(&self, who: &Address) -> Result<u64, RpcError> {
        let state = self.inner.state.read().await;
        let rec = self
            .inner
            .runtime
            .account(&Committed_(&state), who)
            .await
            .map_err(|e| rpc_err(ErrorCode::Unavailable, e))?;
        Ok(self.lock_mempool().next_nonce(who, rec.nonce))
    }

    // ----- admission -----

    /// Admits a transaction from a client and gossips it to the other validators.
    pub async fn submit(&self, bytes: &[u8]) -> Result<Hash, RpcError> {
        let hash = self.admit(bytes).await?;
        if self.inner.consensus.get().is_some() {
            self.lock_gossip().push(bytes.to_vec());
        }
        Ok(hash)
    }

    /// Runs every admission check and adds the transaction to the mempool.
    async fn admit(&self, bytes: &[u8]) -> Result<Hash, RpcError> {
        let params = &self.inner.params;
        let max = params.max_tx_bytes as usize;
        if bytes.len() > max {
            return Err(admission_err(AdmissionError::TooLarge { size: bytes.len(), max }));
        }
        let stx: SignedTransaction =
            umbra_types::decode(bytes, max).map_err(|e| admission_err(AdmissionError::Malformed(e.to_string())))?;
        stateless_check(&self.inner.genesis.chain_id, params, &stx, bytes.len(), true).map_err(admission_err)?;
        let rec = {
            let state = self.inner.state.read().await;
            if let Call::Egress { message } = &stx.tx.call {
                let (rt, origin) = (&self.inner.runtime, message.egress.origin);
                // A copy another worker already carried is refused before its signature is checked.
                let seq = message.egress.seq;
                if self.lock_mempool().carries_egress(&origin, seq) {
                    return Err(rpc_err(
                        ErrorCode::EgressSequence,
                        format!(
                            "egress message {seq} of {origin:?} is already pending (carried by another transaction)"
                        ),
                    ));
                }
                let next = rt.egress_next(&Committed_(&state), &origin).await.map_err(|e| admission_err(e.into()))?;
                let in_flight = self.lock_mempool().egress_in_flight(&origin, next);
                rt.check_egress(&Committed_(&state), message, in_flight).await.map_err(admission_err)?;
            }
            self.inner
                .runtime
                .account(&Committed_(&state), &stx.tx.signer)
                .await
                .map_err(|e| admission_err(AdmissionError::from(e)))?
        };
        if stx.tx.nonce < rec.nonce {
            return Err(admission_err(AdmissionError::NonceUsed {
                account: stx.tx.signer,
                expected: rec.nonce,
                got: stx.tx.nonce,
            }));
        }
        let signer = stx.tx.signer;
        let (fee, nonce) = (stx.tx.fee, stx.tx.nonce);
        self.lock_mempool().insert(stx, rec.nonce, rec.balance).map_err(|e| match e {
            PoolError::AlreadyKnown => rpc_err(ErrorCode::AlreadyKnown, "transaction already pending"),
            PoolError::NonceUsed { expected } => {
                admission_err(AdmissionError::NonceUsed { account: signer, expected, got: nonce })
            }
            PoolError::NonceGap { expected } => {
                admission_err(AdmissionError::NonceGap { account: signer, expected, got: nonce })
            }
            PoolError::Full => rpc_err(ErrorCode::MempoolFull, "mempool is full of transactions paying higher fees"),
            PoolError::DuplicateEgress { origin, seq } => rpc_err(
                ErrorCode::EgressSequence,
                format!("egress message {seq} of {origin:?} is already pending (carried by another transaction)"),
            ),
            PoolError::CannotPayFees { pending } => rpc_err(
                ErrorCode::CannotPayFee,
                format!(
                    "account {signer} cannot pay fee {fee} on top of {pending} in pending fees: balance {}",
                    rec.balance
                ),
            ),
        })
    }

    // ----- execution -----

    /// Executes `block` (whose parent must be the committed tip or an executed block) unless already done.
    async fn execute(&self, block: &Block) -> Result<Option<Arc<Executed>>, String> {
        let hash = block.hash();
        if let Some(e) = self.lock_executed().get(&hash) {
            return Ok(Some(e.clone()));
        }
        // Signatures: transactions pending in our mempool were verified when admitted; verify the
        // rest in one batch. This halves signature work on validators that saw the gossip.
        let unverified: Vec<SignedTransaction> = {
            let pool = self.lock_mempool();
            block.txs.iter().filter(|t| !pool.contains(&t.hash())).cloned().collect()
        };
        if let Err((i, e)) = umbra_crypto::verify_transactions(&unverified) {
            return Err(format!("transaction {} has a bad signature: {e}", unverified[i].hash()));
        }
        let state = self.inner.state.read().await;
        let committed = self.committed();
        let parent_pending = if block.header.parent == committed.hash {
            None
        } else {
            match self.lock_executed().get(&block.header.parent) {
                Some(p) => Some(p.clone()),
                None => return Ok(None), // parent not executed (yet)
            }
        };
        let env = BlockEnv {
            height: block.header.height,
            timestamp_ms: block.header.timestamp_ms,
            proposer: Address(block.header.proposer),
            epoch: block.header.epoch,
            parent: block.header.parent,
        };
        let outcome = match &parent_pending {
            None => self.inner.runtime.execute_block(&Committed_(&state), &env, &block.txs, false).await,
            Some(p) => {
                self.inner.runtime.execute_block(&Speculative(&state, &p.pending), &env, &block.txs, false).await
            }
        }
        .map_err(|e| e.to_string())?;
        let pending = state
            .speculate(parent_pending.as_ref().map(|p| &p.pending), &outcome.changes)
            .await
            .map_err(|e| e.to_string())?;
        if pending.root() != block.header.state_root.0 {
            return Err(format!(
                "state root mismatch: block says {}, execution gives {}",
                block.header.state_root,
                Hash(pending.root())
            ));
        }
        if block.header.next_committee != outcome.next_committee {
            return Err(format!(
                "next_committee mismatch: block says {:?}, execution gives {:?}",
                block.header.next_committee.as_ref().map(|c| c.len()),
                outcome.next_committee.as_ref().map(|c| c.len())
            ));
        }
        let root = messages_root(&outcome.messages);
        if root != block.header.messages_root {
            return Err(format!(
                "messages root mismatch: block says {}, execution gives {root}",
                block.header.messages_root
            ));
        }
        let executed = Arc::new(Executed {
            block: block.clone(),
            pending,
            receipts: outcome.receipts,
            messages: outcome.messages,
        });
        self.lock_executed().insert(hash, executed.clone());
        Ok(Some(executed))
    }

    async fn build(&self, parent: &Block, ctx: &ProposeContext) -> Result<Option<Block>, String> {
        let interval = self.inner.empty_block_interval_ms.load(std::sync::atomic::Ordering::Relaxed);
        let empty_deadline = parent.header.timestamp_ms + interval;
        while self.mempool_len() == 0 && millis(self.inner.ctx.current()) < empty_deadline {
            self.inner.ctx.sleep(Duration::from_millis(5)).await;
        }
        // Hold the read lock first: the committed tip cannot move while it is held.
        let state = self.inner.state.read().await;
        let committed = self.committed();
        let parent_hash = parent.hash();
        let parent_pending = if parent_hash == committed.hash {
            None
        } else if let Some(p) = self.lock_executed().get(&parent_hash).cloned() {
            Some(p)
        } else {
            // We never executed the parent (we missed its view): do it now, with its ancestors.
            drop(state);
            self.lock_known().insert(parent_hash, parent.clone());
            if self.execute_with_ancestors(parent).await?.is_none() {
                debug!(target: "node.propose", height = ctx.height, "parent not executable here; declining");
                return Ok(None);
            }
            return Box::pin(self.build(parent, ctx)).await;
        };
        let timestamp_ms = millis(self.inner.ctx.current()).max(parent.header.timestamp_ms + 1);
        let env = BlockEnv {
            height: ctx.height,
            timestamp_ms,
            proposer: Address(ctx.proposer),
            epoch: ctx.epoch,
            parent: parent_hash,
        };
        let candidates = self.lock_mempool().candidates(self.inner.params.max_block_txs as usize);
        let built = match &parent_pending {
            None => self.inner.runtime.build_block(&Committed_(&state), &env, candidates).await,
            Some(p) => self.inner.runtime.build_block(&Speculative(&state, &p.pending), &env, candidates).await,
        }
        .map_err(|e| e.to_string())?;
        let pending = state
            .speculate(parent_pending.as_ref().map(|p| &p.pending), &built.outcome.changes)
            .await
            .map_err(|e| e.to_string())?;
        let block = Block {
            header: Header {
                height: ctx.height,
                parent: parent_hash,
                timestamp_ms,
                proposer: ctx.proposer,
                epoch: ctx.epoch,
                tx_root: tx_root(&built.txs),
                state_root: Hash(pending.root()),
                messages_root: messages_root(&built.outcome.messages),
                next_committee: built.outcome.next_committee.clone(),
            },
            txs: built.txs,
        };
        let executed = Arc::new(Executed {
            block: block.clone(),
            pending,
            receipts: built.outcome.receipts,
            messages: built.outcome.messages,
        });
        self.lock_executed().insert(block.hash(), executed);
        debug!(target: "node.propose", height = ctx.height, txs = block.txs.len(), "proposed");
        Ok(Some(block))
    }

    /// Header checks that need no state. `Err` means permanently invalid.
    fn check_header(&self, parent: &Block, block: &Block) -> Result<(), String> {
        let h = &block.header;
        if h.height != parent.header.height + 1 {
            return Err(format!("height {} does not follow parent {}", h.height, parent.header.height));
        }
        if h.parent != parent.hash() {
            return Err("parent hash mismatch".into());
        }
        if h.timestamp_ms <= parent.header.timestamp_ms {
            return Err("timestamp does not increase".into());
        }
        if h.tx_root != tx_root(&block.txs) {
            return Err("tx_root does not match the transactions".into());
        }
        // Heights are grouped into epochs of `epoch_length` blocks (Commonware's FixedEpocher).
        let epoch = h.height / self.inner.params.epoch_length.max(1);
        if h.epoch != epoch {
            return Err(format!("epoch {} is not height {}'s epoch {epoch}", h.epoch, h.height));
        }
        Ok(())
    }

    async fn apply_finalized(&self, block: Block) {
        let height = block.height();
        let committed = self.committed();
        if height == 0 || height <= committed.header.height {
            debug!(target: "node.finalize", height, "already applied");
            return;
        }
        if block.header.parent != committed.hash {
            // Marshal delivers in height order, so this means our state diverged from the chain.
            error!(target: "node.finalize", height, "finalized block does not extend the applied tip; halting application");
            futures::future::pending::<()>().await;
        }
        let executed = loop {
            match self.execute(&block).await {
                Ok(Some(e)) => break e,
                Ok(None) => {
                    error!(target: "node.finalize", height, "cannot execute finalized block");
                    futures::future::pending::<()>().await;
                }
                Err(e) => {
                    error!(target: "node.finalize", height, error = %e, "finalized block fails here: this node diverged; halting application");
                    futures::future::pending::<()>().await;
                }
            }
        };
        if let Err(e) = self.inner.index.put_block(&block, &executed.receipts, &executed.messages) {
            error!(target: "node.finalize", height, error = %e, "cannot write the block index; retrying");
            self.inner.ctx.sleep(Duration::from_millis(500)).await;
            return Box::pin(self.apply_finalized(block)).await;
        }
        let mut state = self.inner.state.write().await;
        if let Err(e) = state.commit(&executed.pending).await {
            error!(target: "node.finalize", height, error = %e, "state commit failed; halting application");
            drop(state);
            return futures::future::pending::<()>().await;
        }
        {
            let hash = block.hash();
            let mut c = match self.inner.committed.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            *c = Committed { header: block.header.clone(), hash, at: self.inner.ctx.current() };
        }
        self.lock_executed().retain(|_, e| e.block.header.height > height);
        self.lock_known().retain(|_, b| b.header.height > height);
        // Drop what the block included (and anything its new nonces made void).
        let mut signers: Vec<Address> = block.txs.iter().map(|t| t.tx.signer).collect();
        signers.sort();
        signers.dedup();
        let mut nonces = Vec::with_capacity(signers.len());
        for s in &signers {
            if let Ok(rec) = self.inner.runtime.account(&Committed_(&state), s).await {
                nonces.push((*s, rec.nonce));
            }
        }
        // Egress messages other carriers already landed are stale now: drop their copies.
        let origins = self.lock_mempool().egress_origins();
        let mut egress_next = Vec::with_capacity(origins.len());
        for o in origins {
            if let Ok(next) = self.inner.runtime.egress_next(&Committed_(&state), &o).await {
                egress_next.push((o, next));
            }
        }
        drop(state);
        {
            let mut pool = self.lock_mempool();
            for (s, n) in nonces {
                pool.prune_account(&s, n);
            }
            for (o, next) in egress_next {
                for h in pool.stale_egress(&o, next) {
                    pool.remove(&h);
                }
            }
        }
        let _ = self.inner.heads.send(block.header.clone());
        let failed = executed.receipts.iter().filter(|r| !r.is_success()).count();
        info!(target: "node.finalize", height, txs = block.txs.len(), failed, hash = %block.hash(), "finalized");
    }
}

impl<E: Clock + Storage + Metrics + Spawner + Send + Sync + 'static> Executor for Node<E> {
    async fn propose(&self, parent: Block, ctx: ProposeContext) -> Option<Block> {
        match self.build(&parent, &ctx).await {
            Ok(b) => b,
            Err(e) => {
                warn!(target: "node.propose", height = ctx.height, error = %e, "could not build a block");
                None
            }
        }
    }

    async fn verify(&self, parent: Block, block: Block) -> bool {
        if let Err(e) = self.check_header(&parent, &block) {
            warn!(target: "node.verify", height = block.height(), reason = %e, "rejecting proposal");
            return false;
        }
        // A timestamp too far ahead of our clock is not yet acceptable: wait until it is.
        loop {
            let now = millis(self.inner.ctx.current());
            if block.header.timestamp_ms <= now + MAX_CLOCK_DRIFT_MS {
                break;
            }
            self.inner.ctx.sleep(Duration::from_millis(50)).await;
        }
        {
            let mut known = self.lock_known();
            known.insert(parent.hash(), parent.clone());
            known.insert(block.hash(), block.clone());
        }
        loop {
            let committed = self.committed();
            if block.header.height <= committed.header.height {
                // Only a block we already finalized can be valid here.
                return self.inner.index.height_of(&block.hash()).ok().flatten().is_some();
            }
            match self.execute_with_ancestors(&block).await {
                Ok(Some(_)) => return true,
                Ok(None) => {
                    // Our copy of the parent is not executed yet (we were behind): wait for it.
                    self.inner.ctx.sleep(Duration::from_millis(10)).await;
                }
                Err(e) => {
                    warn!(target: "node.verify", height = block.height(), reason = %e, "rejecting proposal");
                    return false;
                }
            }
        }
    }

    async fn finalized(&self, block: Block) {
        self.apply_finalized(block).await;
    }

    async fn gossip(&self, from: ValidatorKey, bytes: Vec<u8>) {
        let batch: Vec<Vec<u8>> = match umbra_types::decode(&bytes, GOSSIP_BATCH_BYTES * 2) {
            Ok(b) => b,
            Err(e) => {
                warn!(target: "node.gossip", peer = %hex::encode(&from[..4]), error = %e, "malformed gossip dropped");
                return;
            }
        };
        for tx in batch {
            if let Err(e) = self.admit(&tx).await {
                debug!(target: "node.gossip", error = %e, "gossiped transaction not admitted");
            }
        }
    }
}
