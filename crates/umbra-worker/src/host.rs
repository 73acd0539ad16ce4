//! The host part: untrusted relaying. It fetches batches from a node, hands them to the enclave, carries
//! the enclave's egress to the chain in `Call::Egress` transactions signed by the operator account,
//! registers the worker, follows the head and writes `status.json`. It never decides anything the
//! enclave does not verify, and it keeps running on any bad input: it logs the reason, backs off, retries.

use crate::enclave::{Enclave, EnclaveConfig, EnclaveError, EnclaveStatus, TailProof};
use crate::platform::{PlatformChoiceError, open_platform};
use crate::query::QueryService;
use jsonrpsee::core::client::{ClientT, Error as ClientError};
use jsonrpsee::core::params::BatchRequestBuilder;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};
use umbra_crypto::{Keypair, sign_with_min_fee};
use umbra_rpc::{BlockId, BlockResponse, ChainInfo, ErrorCode, StateValueResponse, SyncRequest, SyncResponse, methods};
use umbra_types::registry::{Origin, SignedEgress, Topic};
use umbra_types::state_keys::StateKey;
use umbra_types::{Call, Hash, Params, Transaction, decode, encode};

mod catch_up;

/// Blocks asked per `worker_sync` by default.
pub const DEFAULT_BATCH_BLOCKS: u32 = 1_000;
/// How often the head is polled once caught up, by default.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// Longest back-off after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often egress not yet consumed on chain is submitted again.
const RESUBMIT_EVERY: Duration = Duration::from_secs(10);
/// Blocks before expiry at which the worker renews its registration with a fresh quote.
const RENEW_BEFORE_BLOCKS: u64 = 1_000;
/// Least time between two registration attempts.
const REGISTER_EVERY: Duration = Duration::from_secs(30);
/// Most transactions per `tx_submit` batch.
const MAX_SUBMIT_BATCH: usize = 1_000;
/// Most hex characters of transactions per batch (the node takes request bodies up to 2 MiB).
const MAX_SUBMIT_BYTES: usize = 1 << 20;

/// How the host runs.
#[derive(Debug)]
pub struct HostConfig {
    /// JSON-RPC URL of the node.
    pub node: String,
    /// The data directory (sealed keys and state, `status.json`).
    pub data_dir: PathBuf,
    /// The TEE platform.
    pub tee: umbra_tee::TeeKind,
    /// The operator account: signs the registration and pays for egress transactions.
    pub operator: Keypair,
    /// A genesis hash the operator requires (`--genesis`).
    pub genesis: Option<Hash>,
    /// Blocks per `worker_sync`.
    pub batch_blocks: u32,
    /// Poll interval at the head.
    pub poll: Duration,
    /// The measurement a dev platform claims (ignored by hardware platforms); see
    /// [`crate::dev_measurement`].
    pub dev_measurement: umbra_tee::Measurement,
    /// Where to serve confidential queries over HTTP (`None`: no query endpoint).
    pub query_listen: Option<std::net::SocketAddr>,
    /// The operator's egress settings for agents' `fetch` (see [`crate::agents::EgressSettings`]).
    pub egress: crate::agents::EgressSettings,
    /// Query endpoints (`http://host:port`) of other workers to ask for a sealed contract snapshot on joining a
    /// cluster (see [`crate::snapshot`]); untrusted hints, the answer is verified. Empty: replay the history.
    pub snapshot_peers: Vec<String>,
}

/// Why the host stopped (it retries everything else).
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The platform could not be opened.
    #[error(transparent)]
    Platform(#[from] PlatformChoiceError),
    /// The enclave refused to start (foreign or rolled-back state, genesis mismatch).
    #[error(transparent)]
    Enclave(#[from] EnclaveError),
    /// The node URL is unusable.
    #[error("invalid node URL {url}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The query endpoint could not start.
    #[error("query endpoint on {addr}: {source}")]
    Query {
        /// The address.
        addr: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A status file could not be written.
    #[error("writing {}: {source}", path.display())]
    Status {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A failed RPC call: the method and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{method}: {message}")]
struct RpcFailure {
    method: &'static str,
    code: Option<i32>,
    message: String,
}

/// The few RPC methods the worker uses.
struct Rpc {
    http: HttpClient,
}

impl Rpc {
    async fn call<R: DeserializeOwned>(
        &self,
        method: &'static str,
        params: jsonrpsee::core::params::ArrayParams,
    ) -> Result<R, RpcFailure> {
        self.http.request(method, params).await.map_err(|e| match e {
            ClientError::Call(obj) => RpcFailure { method, code: Some(obj.code()), message: obj.message().to_string() },
            other => RpcFailure { method, code: None, message: other.to_string() },
        })
    }

    async fn value(&self, key: &StateKey) -> Result<StateValueResponse, RpcFailure> {
        self.call(methods::STATE_GET_VALUE, rpc_params![hex::encode(encode(key))]).await
    }

    async fn sync(&self, from: u64, max_blocks: u32, topics: Vec<Topic>) -> Result<SyncResponse, RpcFailure> {
        self.call(methods::WORKER_SYNC, rpc_params![SyncRequest { from, max_blocks, topics }]).await
    }

    /// `tx_submit` of every transaction (hex) in one JSON-RPC batch, answered in order.
    async fn submit_batch(&self, txs: &[String]) -> Result<Vec<Result<Hash, RpcFailure>>, RpcFailure> {
        let method = methods::TX_SUBMIT;
        let transport = |e: String| RpcFailure { method, code: None, message: e };
        let mut batch = BatchRequestBuilder::new();
        for tx in txs {
            batch.insert(method, rpc_params![tx]).map_err(|e| transport(e.to_string()))?;
        }
        let answers = self.http.batch_request::<Hash>(batch).await.map_err(|e| transport(e.to_string()))?;
        Ok(answers
            .into_iter()
            .map(|a| a.map_err(|obj| RpcFailure { method, code: Some(obj.code()), message: obj.message().to_string() }))
            .collect())
    }
}

/// Doubles a back-off up to [`MAX_BACKOFF`].
fn grow(backoff: &mut Duration) -> Duration {
    let now = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    now
}

/// What `status.json` holds: the enclave's non-secret summary and the host's view.
#[derive(Debug, serde::Serialize)]
struct Status<'a> {
    #[serde(flatten)]
    enclave: EnclaveStatus,
    /// A loud reminder on dev.
    warning: Option<&'static str>,
    node: &'a str,
    head: u64,
    operator: String,
    updated_at_ms: u64,
    /// Batches the enclave refused (the host altered, dropped, reordered or replayed something).
    rejected_batches: u64,
    /// Why the latest one was refused.
    last_rejection: Option<&'a str>,
}

/// The host's loop state.
struct Host {
    rpc: Rpc,
    config: HostConfig,
    info: ChainInfo,
    enclave: Enclave,
    head: u64,
    last_resubmit: Option<Instant>,
    rejected_batches: u64,
    last_rejection: Option<String>,
    last_register: Option<Instant>,
    queries: Option<QueryService>,
    agents: Option<crate::agents::AgentService>,
    last_receipts: Instant,
    snapshots: Option<crate::snapshot::SnapshotService>,
    peer_client: Option<reqwest::Client>,
    snapshot_rounds: u32,
    last_snapshot_try: Option<Instant>,
    pending_snapshot: Option<(String, crate::snapshot::SnapshotReply)>,
    /// The operator's next nonce as this host counts it (`None`: read it from the node).
    nonce: Option<u64>,
}

/// Runs the worker until the process ends: opens the platform and the enclave, passes the rollback check,
/// registers if needed, then follows the chain. Returns only on an error that retrying cannot fix.
pub async fn run(config: HostConfig) -> Result<(), HostError> {
    let platform = open_platform(config.tee, &config.data_dir, config.dev_measurement)?;
    if platform.is_simulated() {
        warn!(target: "worker.host",
            "SIMULATED TEE (--tee dev): nothing is hardware-protected; keys and state are readable by this machine's \
             operator. Use only on dev chains.");
    }
    let http = HttpClientBuilder::default()
        .request_timeout(Duration::from_secs(60))
        .max_response_size(256 << 20)
        .build(&config.node)
        .map_err(|e| HostError::Url { url: config.node.clone(), reason: e.to_string() })?;
    let rpc = Rpc { http };
    let mut backoff = Duration::from_secs(1);
    let (info, genesis, interval) = loop {
        match connect(&rpc).await {
            Ok(v) => break v,
            Err(e) => {
                warn!(target: "worker.host", "cannot reach the node at {}: {e}; retrying", config.node);
                tokio::time::sleep(grow(&mut backoff)).await;
            }
        }
    };
    let enclave_config = EnclaveConfig {
        chain_id: info.chain_id.clone(),
        genesis,
        expected_genesis: config.genesis,
        operator: config.operator.address(),
        commitment_interval: interval,
    };
    let enclave = Enclave::open(platform, &config.data_dir, enclave_config)?;
    info!(target: "worker.host", id = %hex::encode(enclave.id()), chain = %info.chain_id, height = enclave.height(), "worker opened");
    let queries = match config.query_listen {
        Some(addr) => {
            let err = |source| HostError::Query { addr: addr.to_string(), source };
            let service = QueryService::start().map_err(err)?;
            service.update(enclave.query_view());
            let agents = crate::agents::AgentService::start(config.egress.clone()).map_err(err)?;
            agents.update(enclave.agent_view());
            let snapshots = crate::snapshot::SnapshotService::new();
            snapshots.update(enclave.snapshot_view());
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(err)?;
            let bound = listener.local_addr().map_err(err)?;
            info!(target: "worker.host", %bound, "serving confidential queries on http://{bound}/query");
            let (s, a, n) = (service.clone(), agents.clone(), snapshots.clone());
            tokio::spawn(async move {
                if let Err(e) = crate::http::serve_with_snapshots(listener, s, a, n).await {
                    error!(target: "worker.host", "the query endpoint stopped: {e}");
                }
            });
            Some((service, agents, snapshots))
        }
        None => None,
    };
    let (queries, agents, snapshots) = match queries {
        Some((q, a, n)) => (Some(q), Some(a), Some(n)),
        None => (None, None, None),
    };
    let mut host = Host {
        rpc,
        config,
        info,
        enclave,
        head: 0,
        last_resubmit: None,
        last_register: None,
        rejected_batches: 0,
        last_rejection: None,
        queries,
        agents,
        last_receipts: Instant::now(),
        snapshots,
        peer_client: None,
        snapshot_rounds: 0,
        last_snapshot_try: None,
        pending_snapshot: None,
        nonce: None,
    };
    host.write_status()?;
    host.start().await?;
    host.follow().await
}

/// Reads the chain id, fees, genesis header and commitment interval.
async fn connect(rpc: &Rpc) -> Result<(ChainInfo, umbra_types::Header, u64), RpcFailure> {
    let info: ChainInfo = rpc.call(methods::CHAIN_INFO, rpc_params![]).await?;
    let genesis: BlockResponse = rpc.call(methods::CHAIN_GET_BLOCK, rpc_params![BlockId::Height(0)]).await?;
    let interval = match rpc.value(&StateKey::SystemParams).await {
        Ok(StateValueResponse { value: Some(v), .. }) => hex::decode(v.trim_start_matches("0x"))
            .ok()
            .and_then(|b| decode::<Params>(&b, 1 << 20).ok())
            .map(|p| p.registry.commitment_interval_blocks),
        _ => None,
    };
    let interval = interval.unwrap_or_else(|| {
        let d = umbra_types::registry::RegistryParams::default().commitment_interval_blocks;
        warn!(target: "worker.host", "cannot read the chain parameters; committing every {d} blocks");
        d
    });
    Ok((info, genesis.block.header, interval))
}

impl Host {
    /// The rollback check (catching the probe up to the proof's epoch if needed), then registration.
    async fn start(&mut self) -> Result<(), HostError> {
        let mut backoff = Duration::from_secs(1);
        let id = self.enclave.id();
        let check = loop {
            let resp = match self.rpc.value(&StateKey::Worker(id)).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(target: "worker.host", "reading this worker's record: {e}; retrying");
                    tokio::time::sleep(grow(&mut backoff)).await;
                    continue;
                }
            };
            match self.enclave.check_rollback(&resp) {
                Ok(check) => break check,
                Err(e @ (EnclaveError::RolledBack { .. } | EnclaveError::Forked { .. })) => {
                    error!(target: "worker.host", "{e}");
                    return Err(e.into());
                }
                Err(e) => {
                    debug!(target: "worker.host", "rollback check not possible yet ({e}); following headers");
                    let from = self.enclave.probe_height().saturating_add(1);
                    match self.rpc.sync(from, umbra_rpc::MAX_SYNC_BLOCKS, Vec::new()).await {
                        Ok(batch) if !batch.blocks.is_empty() => {
                            if let Err(r) = self.enclave.follow_headers(&batch) {
                                warn!(target: "worker.host", "header batch refused: {r}; retrying");
                                tokio::time::sleep(grow(&mut backoff)).await;
                            }
                        }
                        Ok(_) => {
                            warn!(target: "worker.host", "cannot verify the worker record yet: {e}; retrying");
                            tokio::time::sleep(grow(&mut backoff)).await;
                        }
                        Err(f) => {
                            warn!(target: "worker.host", "{f}; retrying");
                            tokio::time::sleep(grow(&mut backoff)).await;
                        }
                    }
                }
            }
        };
        info!(target: "worker.host", height = check.height, "rollback check passed");
        let ours = self.enclave.x25519_public();
        let needs = match &check.record {
            None => true,
            Some(r) => r.x25519 != ours || !r.is_active(check.height),
        };
        if needs {
            self.register().await;
        } else {
            info!(target: "worker.host", "already registered on chain");
        }
        Ok(())
    }

    /// Submits `Call::RegisterWorker` with a fresh quote (at most once per [`REGISTER_EVERY`]).
    async fn register(&mut self) {
        if self.last_register.is_some_and(|t| t.elapsed() < REGISTER_EVERY) {
            return;
        }
        self.last_register = Some(Instant::now());
        match self.enclave.registration() {
            Ok(reg) => {
                let call = Call::RegisterWorker { identity: reg.identity, x25519: reg.x25519, quote: reg.quote };
                self.submit(call, "register_worker").await;
            }
            Err(e) => warn!(target: "worker.host", "cannot produce registration material: {e}"),
        }
    }

    /// Follows the chain forever.
    async fn follow(&mut self) -> Result<(), HostError> {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.step().await {
                Ok(true) => backoff = Duration::from_secs(1),
                Ok(false) => tokio::time::sleep(self.config.poll).await,
                Err(reason) => {
                    warn!(target: "worker.host", "{reason}; backing off");
                    tokio::time::sleep(grow(&mut backoff)).await;
                }
            }
            self.write_status()?;
        }
    }

    /// One round: fetch, verify and apply a batch, carry its egress. `Ok(false)` when at the head.
    async fn step(&mut self) -> Result<bool, String> {
        if let Some((topic, upto)) = self.enclave.replay_request() {
            match self.catch_up(topic).await {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(why) => {
                    if !self.config.snapshot_peers.is_empty() {
                        error!(target: "worker.host", "catching up from a member's snapshot failed ({why}); replaying the \
                            cluster's history from the chain instead (commands sealed to key epochs erased by a rotation \
                            cannot be opened and stall their contracts)");
                    }
                    self.replay(topic, upto).await?;
                }
            }
        }
        let height = self.enclave.height();
        let batch = self.config.batch_blocks.clamp(1, umbra_rpc::MAX_SYNC_BLOCKS);
        // Near the head, prove every topic's counter first and sync exactly up to that block, so the
        // enclave can check that nothing was withheld at the tail.
        let mut tails = Vec::new();
        let mut max = batch;
        if self.head.saturating_sub(height) <= u64::from(batch) {
            tails = self.tails().await.map_err(|e| e.to_string())?;
            if let Some(t) = tails.first() {
                let target = t.value.header.height;
                if target <= height {
                    self.at_head().await;
                    return Ok(false);
                }
                max = u32::try_from(target - height).unwrap_or(batch).min(batch);
            }
        }
        let resp = self
            .rpc
            .sync(height.saturating_add(1), max, self.enclave.sync_topics())
            .await
            .map_err(|e| e.to_string())?;
        self.head = self.head.max(resp.head);
        if resp.blocks.is_empty() {
            self.at_head().await;
            return Ok(false);
        }
        let egress = match self.enclave.apply(&resp, &tails) {
            Ok(e) => e,
            Err(r) => {
                let reason = format!("batch from {} rejected: {r}", height + 1);
                self.rejected_batches += 1;
                self.last_rejection = Some(reason.clone());
                return Err(reason);
            }
        };
        debug!(target: "worker.host", height = self.enclave.height(), head = self.head, egress = egress.len(), "applied");
        self.publish_views();
        self.carry(egress).await;
        Ok(true)
    }

    /// Fetches `topic`'s messages in blocks `from` to `upto`.
    async fn fetch_topic(&self, topic: Topic, mut from: u64, upto: u64) -> Result<Vec<SyncResponse>, String> {
        let mut batches = Vec::new();
        while from <= upto {
            let max =
                u32::try_from(upto - from + 1).unwrap_or(umbra_rpc::MAX_SYNC_BLOCKS).min(umbra_rpc::MAX_SYNC_BLOCKS);
            let mut resp = self.rpc.sync(from, max, vec![topic]).await.map_err(|e| e.to_string())?;
            resp.blocks.retain(|b| b.header.height <= upto);
            let Some(last) = resp.blocks.last().map(|b| b.header.height) else {
                return Err(format!("the node returned no blocks from {from} while fetching {topic:?}"));
            };
            from = last + 1;
            batches.push(resp);
        }
        Ok(batches)
    }

    /// Fetches `topic`'s history from block 1 to `upto` and hands it to the enclave to replay.
    async fn replay(&mut self, topic: Topic, upto: u64) -> Result<(), String> {
        info!(target: "worker.host", ?topic, upto, "replaying a joined cluster's history");
        let batches = self.fetch_topic(topic, 1, upto).await?;
        match self.enclave.replay(topic, &batches) {
            Ok(n) => {
                info!(target: "worker.host", ?topic, messages = n, "replay applied");
                self.publish_views();
                Ok(())
            }
            Err(r) => {
                self.rejected_batches += 1;
                let reason = format!("replay of {topic:?} rejected: {r}");
                self.last_rejection = Some(reason.clone());
                Err(reason)
            }
        }
    }

    /// `TopicNext` proofs of every followed topic, all at the same block (retried once if the head moved).
    async fn tails(&self) -> Result<Vec<TailProof>, RpcFailure> {
        for _ in 0..3 {
            let mut out = Vec::new();
            for topic in self.enclave.tail_topics() {
                out.push(TailProof { topic, value: self.rpc.value(&StateKey::TopicNext(topic)).await? });
            }
            let first = out.first().map(|t| t.value.header.hash());
            if out.iter().all(|t| Some(t.value.header.hash()) == first) {
                return Ok(out);
            }
        }
        Ok(Vec::new())
    }

    /// Commits the agents' pending egress receipts (one `AgentReceipts` root per agent) at most every
    /// `egress.receipt_every` (see [`crate::agents::EgressSettings`]).
    async fn commit_receipts(&mut self) {
        let Some(agents) = &self.agents else { return };
        if !self.enclave.is_registered() || self.last_receipts.elapsed() < self.config.egress.receipt_every {
            return;
        }
        self.last_receipts = Instant::now();
        let payloads = agents.receipt_batches();
        if payloads.is_empty() {
            return;
        }
        match self.enclave.emit(payloads) {
            Ok(out) => self.carry(out).await,
            Err(e) => warn!(target: "worker.host", "cannot sign the egress receipt roots: {e}"),
        }
    }

    /// Signs and sends what agents asked of their wallets (transfers, Ethereum addresses, attested outputs),
    /// in the order they asked, as soon as the worker is at the head.
    async fn commit_wallet(&mut self) {
        let Some(agents) = &self.agents else { return };
        if !self.enclave.is_registered() {
            return;
        }
        let payloads = agents.wallet_payloads();
        if payloads.is_empty() {
            return;
        }
        match self.enclave.emit(payloads) {
            Ok(out) => self.carry(out).await,
            Err(e) => warn!(target: "worker.host", "cannot sign the agents' wallet payloads: {e}"),
        }
    }

    /// At the head: prune the outbox with the chain's counters and submit what is still pending.
    /// Stake-to-compute: weighs the query queue by the cluster's compute stakes (see
    /// [`crate::schedule`]). Untrusted input is fine here: it only orders read-only queries.
    async fn refresh_query_weights(&self, cluster: Option<umbra_types::registry::ClusterId>) {
        let (Some(q), Some(cluster)) = (&self.queries, cluster) else { return };
        match self
            .rpc
            .call::<umbra_rpc::EconClusterStakesInfo>(methods::ECON_CLUSTER_STAKES, rpc_params![cluster])
            .await
        {
            Ok(info) => {
                let stakes = info.contracts.iter().filter_map(|c| {
                    let id: [u8; 32] = hex::decode(&c.contract).ok()?.try_into().ok()?;
                    Some((id, c.stake))
                });
                q.set_weights(crate::schedule::Weights::new(stakes, info.free_quota_stake));
            }
            Err(e) => debug!(target: "worker.host", "cannot read the cluster's compute stakes: {e:?}"),
        }
    }

    async fn at_head(&mut self) {
        self.commit_receipts().await;
        self.commit_wallet().await;
        if self.last_resubmit.is_some_and(|t| t.elapsed() < RESUBMIT_EVERY) {
            return;
        }
        self.last_resubmit = Some(Instant::now());
        let status = self.enclave.status();
        self.refresh_query_weights(status.cluster).await;
        if status.registered {
            let instant = self.enclave.measure_instant();
            debug!(target: "worker.host", instant, "instant score measured");
        }
        if status.registered
            && status.revoked.is_none()
            && self.head.saturating_add(RENEW_BEFORE_BLOCKS) >= status.expires_at
        {
            info!(target: "worker.host", expires_at = status.expires_at, "renewing the registration before it expires");
            self.register().await;
        } else if !status.registered || status.revoked.is_some() {
            // Refused (say, a measurement not yet allowed) or revoked: try again now and then, since the
            // chain's policy may have changed (governance allows a measurement).
            if self.last_register.is_some() {
                info!(target: "worker.host", "not registered on chain yet; registering again");
            }
            self.register().await;
        }
        let me = Origin::Worker(self.enclave.id());
        let (w, g) = match (
            self.rpc.value(&StateKey::EgressNext(me)).await,
            self.rpc.value(&StateKey::EgressNext(Origin::Gatekeeper)).await,
        ) {
            (Ok(w), Ok(g)) => (w, g),
            (Err(e), _) | (_, Err(e)) => {
                debug!(target: "worker.host", "reading egress counters: {e}");
                return;
            }
        };
        if let Err(e) = self.enclave.sync_egress(&w, &g) {
            debug!(target: "worker.host", "egress counters not verified: {e}");
        }
        let outbox = self.enclave.outbox().to_vec();
        self.carry(outbox).await;
    }

    /// Hands the query, snapshot and agent services the enclave's state after it changed; the query and
    /// snapshot views share one copy of the contracts (a copy per view doubled the work of every batch).
    fn publish_views(&self) {
        if self.queries.is_some() || self.snapshots.is_some() {
            let contracts = self.enclave.shared_contracts();
            if let Some(q) = &self.queries {
                q.update(self.enclave.query_view_with(contracts.clone()));
            }
            if let Some(s) = &self.snapshots {
                s.update(self.enclave.snapshot_view_with(contracts));
            }
        }
        if let Some(a) = &self.agents {
            a.update(self.enclave.agent_view());
        }
    }

    /// Carries egress messages, in order, each in a `Call::Egress` transaction.
    async fn carry(&mut self, messages: Vec<SignedEgress>) {
        let calls = messages
            .into_iter()
            .map(|message| {
                let what = message.egress.payload.kind();
                (Call::Egress { message }, what)
            })
            .collect();
        self.submit_all(calls).await;
    }

    /// Signs `call` with the operator key at the next nonce and submits it.
    async fn submit(&mut self, call: Call, what: &'static str) {
        self.submit_all(vec![(call, what)]).await;
    }

    /// Signs `calls` with the operator key at consecutive nonces and submits them in JSON-RPC batches (the node
    /// admits a batch's entries in order). The operator's next nonce is tracked here and read from the node only
    /// when unknown or refused, so a report costs one batch entry rather than two round trips. A message another
    /// worker already carried is refused without using its nonce, which leaves a gap before the entries after it:
    /// those are signed again at the right nonces and resubmitted. What is still not admitted after a few rounds
    /// stays in the enclave's outbox, which is submitted again at the head.
    async fn submit_all(&mut self, calls: Vec<(Call, &'static str)>) {
        if calls.is_empty() {
            return;
        }
        let key = self.config.operator.clone();
        let mut pending = std::collections::VecDeque::from(calls);
        let mut rounds = 0usize;
        let max_rounds = 4 + 2 * pending.len().div_ceil(MAX_SUBMIT_BATCH);
        while !pending.is_empty() {
            rounds += 1;
            if rounds > max_rounds {
                warn!(target: "worker.host", left = pending.len(), "transactions not admitted after {max_rounds} rounds; retrying later");
                return;
            }
            let base = match self.nonce {
                Some(n) => n,
                None => match self.rpc.call::<u64>(methods::MEMPOOL_NEXT_NONCE, rpc_params![key.address()]).await {
                    Ok(n) => n,
                    Err(e) => {
                        warn!(target: "worker.host", "reading the operator's nonce: {e}");
                        return;
                    }
                },
            };
            let mut chunk = Vec::new();
            let mut hexes = Vec::new();
            let mut bytes = 0usize;
            while let Some((call, what)) = pending.pop_front() {
                let tx = Transaction {
                    signer: key.address(),
                    nonce: base + chunk.len() as u64,
                    chain_id: self.info.chain_id.clone(),
                    fee: 0,
                    call,
                };
                let stx = sign_with_min_fee(&key, tx, &self.info.fees);
                let hex = hex::encode(stx.to_bytes());
                bytes += hex.len();
                hexes.push(hex);
                chunk.push((stx.tx.call, what));
                if chunk.len() >= MAX_SUBMIT_BATCH || bytes >= MAX_SUBMIT_BYTES {
                    break;
                }
            }
            let results = match self.rpc.submit_batch(&hexes).await {
                Ok(r) if r.len() == chunk.len() => r,
                Ok(r) => {
                    warn!(target: "worker.host", sent = chunk.len(), answered = r.len(), "a submission batch was answered partly; retrying later");
                    self.nonce = None;
                    return;
                }
                Err(e) => {
                    warn!(target: "worker.host", "submitting {} transactions: {e}; retrying later", chunk.len());
                    self.nonce = None;
                    return;
                }
            };
            let (mut admitted, mut refused_before, mut resync) = (0u64, false, false);
            let mut retry = Vec::new();
            for ((call, what), result) in chunk.into_iter().zip(results) {
                match result {
                    Ok(hash) => {
                        admitted += 1;
                        // Egress reports come by the thousand; the operator's own calls (registration) are rare.
                        if matches!(call, Call::Egress { .. }) {
                            debug!(target: "worker.host", %hash, "submitted {what}");
                        } else {
                            info!(target: "worker.host", %hash, "submitted {what}");
                        }
                        continue;
                    }
                    Err(e) if is_duplicate(&e) => debug!(target: "worker.host", "{what}: already carried ({e})"),
                    Err(e) if matches!(e.code, Some(c) if c == ErrorCode::NonceUsed as i32 || c == ErrorCode::NonceGap as i32) =>
                    {
                        // A gap left by a refusal earlier in this batch, or (first refusal) a stale nonce.
                        if !refused_before {
                            debug!(target: "worker.host", "{what}: nonce race ({e}); reading the nonce again");
                            resync = true;
                        }
                        retry.push((call, what));
                    }
                    Err(e) if e.code == Some(ErrorCode::EgressSequence as i32) => {
                        // Ahead of a message refused earlier in this batch: submitted again after it.
                        debug!(target: "worker.host", "{what}: {e}; submitting again");
                        retry.push((call, what));
                    }
                    Err(e) => warn!(target: "worker.host", "{what} not admitted: {e}"),
                }
                refused_before = true;
            }
            info!(target: "worker.host", admitted, again = retry.len(), "submitted a batch of transactions");
            self.nonce = if resync { None } else { Some(base + admitted) };
            for c in retry.into_iter().rev() {
                pending.push_front(c);
            }
        }
    }

    fn write_status(&self) -> Result<(), HostError> {
        let status = Status {
            enclave: self.enclave.status(),
            warning: self.enclave.status().simulated.then_some("SIMULATED TEE: nothing is hardware-protected"),
            node: &self.config.node,
            head: self.head,
            operator: self.config.operator.address().to_string(),
            rejected_batches: self.rejected_batches,
            last_rejection: self.last_rejection.as_deref(),
            updated_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        };
        let path = self.config.data_dir.join("status.json");
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(&status).unwrap_or_default();
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| HostError::Status { path, source })
    }
}

/// True for the normal refusal of an egress another worker already carried (stale or duplicate sequence).
fn is_duplicate(e: &RpcFailure) -> bool {
    let nonce = |c: i32| c == ErrorCode::NonceUsed as i32 || c == ErrorCode::NonceGap as i32;
    match e.code {
        Some(c) if c == ErrorCode::AlreadyKnown as i32 => true,
        Some(c) if nonce(c) => false,
        _ => {
            let m = e.message.to_ascii_lowercase();
            m.contains("stale") || m.contains("duplicate") || m.contains("already")
        }
    }
}

/// What [`bench_sync`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SyncStats {
    /// Blocks verified and applied.
    pub blocks: u64,
    /// Batches fetched.
    pub batches: u64,
    /// Wall time of the whole catch-up, in microseconds.
    pub total_micros: u64,
    /// Of which waiting for the node (`worker_sync` round trips and decoding), in microseconds.
    pub fetch_micros: u64,
    /// Of which inside the enclave (verification, handling, sealing), in microseconds.
    pub enclave_micros: u64,
}

/// Catch-up benchmark: a fresh dev worker in `dir` follows the chain at `node` from genesis to height `target`
/// through the same path as [`run`] (rollback check, then `worker_sync` batches verified and applied by the
/// enclave, sealed state saved after each), without registering. Returns what it measured.
pub async fn bench_sync(
    node: &str,
    dir: &std::path::Path,
    batch_blocks: u32,
    target: u64,
) -> Result<SyncStats, HostError> {
    let platform = open_platform(umbra_tee::TeeKind::Dev, dir, crate::dev_measurement())?;
    let http = HttpClientBuilder::default()
        .request_timeout(Duration::from_secs(120))
        .max_response_size(256 << 20)
        .build(node)
        .map_err(|e| HostError::Url { url: node.to_string(), reason: e.to_string() })?;
    let rpc = Rpc { http };
    let unreachable = |e: RpcFailure| HostError::Url { url: node.to_string(), reason: e.to_string() };
    let (info, genesis, interval) = connect(&rpc).await.map_err(unreachable)?;
    let config = EnclaveConfig {
        chain_id: info.chain_id.clone(),
        genesis,
        expected_genesis: None,
        operator: Keypair::generate().address(),
        commitment_interval: interval,
    };
    let mut enclave = Enclave::open(platform, dir, config)?;
    let started = Instant::now();
    let (mut fetch, mut inside) = (Duration::ZERO, Duration::ZERO);
    let mut batches = 0;
    // The rollback check needs the probe in the epoch of the record's proof: follow headers until it is.
    loop {
        let t = Instant::now();
        let resp = rpc.value(&StateKey::Worker(enclave.id())).await.map_err(unreachable)?;
        fetch += t.elapsed();
        let t = Instant::now();
        let checked = enclave.check_rollback(&resp);
        inside += t.elapsed();
        match checked {
            Ok(_) => break,
            Err(e @ (EnclaveError::RolledBack { .. } | EnclaveError::Forked { .. })) => return Err(e.into()),
            Err(_) => {
                let t = Instant::now();
                let batch = rpc
                    .sync(enclave.probe_height().saturating_add(1), umbra_rpc::MAX_SYNC_BLOCKS, Vec::new())
                    .await
                    .map_err(unreachable)?;
                fetch += t.elapsed();
                let t = Instant::now();
                enclave
                    .follow_headers(&batch)
                    .map_err(|r| HostError::Url { url: node.into(), reason: r.to_string() })?;
                inside += t.elapsed();
            }
        }
    }
    let start_height = enclave.height();
    while enclave.height() < target {
        let max = u32::try_from(target - enclave.height()).unwrap_or(u32::MAX).min(batch_blocks.max(1));
        let t = Instant::now();
        let resp = rpc.sync(enclave.height() + 1, max, enclave.sync_topics()).await.map_err(unreachable)?;
        fetch += t.elapsed();
        if resp.blocks.is_empty() {
            return Err(HostError::Url {
                url: node.into(),
                reason: format!("the chain ends at height {} below the target {target}", resp.head),
            });
        }
        let t = Instant::now();
        enclave.apply(&resp, &[]).map_err(|r| HostError::Url { url: node.into(), reason: r.to_string() })?;
        inside += t.elapsed();
        batches += 1;
    }
    Ok(SyncStats {
        blocks: enclave.height() - start_height,
        batches,
        total_micros: started.elapsed().as_micros() as u64,
        fetch_micros: fetch.as_micros() as u64,
        enclave_micros: inside.as_micros() as u64,
    })
}
