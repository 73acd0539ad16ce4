//! The agent gateway: every member of an agent's cluster serves it at `/agents/{id}/...` (see
//! `docs/worker-protocol.md`, "Agents").
//!
//! # Why it is shaped this way
//!
//! - **Decisions from verified state.** The [`AgentView`] is a copy of the enclave's agent records, agent
//!   contracts (code and storage) and cluster keys taken after every applied batch, like the query view: a
//!   request never waits for the chain-following loop, and paused flags, policies and secrets are exactly
//!   what the chain recorded.
//! - **Secrets open only here, per request.** Each sealed secret is opened with the agent's contract key on
//!   the engine thread that runs the request, handed to the handler as `env.NAME`, and dropped (zeroized)
//!   afterwards. Logs and error messages are scrubbed of every secret value before they leave the thread;
//!   nothing in this module logs a request or response body.
//! - **Engine threads own the engines.** `umbra_engine::Engine` is not `Send`, so [`AGENT_THREADS`] threads
//!   each hold one and take jobs from a shared queue; nested `env.agents.call` runs on the same thread
//!   through [`Host::call`], bounded by the engine's call depth.
//! - **Every answer is signed** by the worker's identity key over
//!   [`umbra_types::agents::response_signing_bytes`], so a client checks it against the worker's attested
//!   record on chain.

use crate::contracts::ContractState;
use crate::keys::contract_key;
use crate::state::HeldKey;
use rand::SeedableRng as _;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::{Duration, Instant};
use umbra_crypto::{Keypair, open_envelope, seal_envelope};
use umbra_engine::{
    AGENT_CALL_METHOD, AgentCallJson, AgentFailure, AgentOutcome, AgentReplyJson, AgentRequest, CallOutput, Code,
    Engine, EngineError, Failure, FetchRequest, FetchResponse, Host, HostError, Invocation, Limits, Mode,
    WalletRequest,
};
use umbra_types::agents::{
    AgentHttpRequest, AgentHttpResponse, AgentRecord, LABEL_LOGS, LABEL_RECEIPTS, LABEL_REQUEST, LABEL_RESPONSE,
    LABEL_SECRET, LogLine, LogsRequest, ReceiptBatchReply, SealedReply, SealedRequestPlain, caller_signing_bytes,
    logs_signing_bytes, plain_request_hash, request_aad, response_signing_bytes, secret_aad,
};
use umbra_types::contracts::ContractId;
use umbra_types::registry::{ClusterId, EgressPayload, KeyEpoch};
use umbra_types::{Address, Hash, decode, encode, sha256};
use zeroize::Zeroizing;

/// Engine threads serving agent requests.
pub const AGENT_THREADS: usize = 2;
/// Gas of one agent request (nested calls included).
pub const AGENT_GAS: u64 = 2_000_000_000;
/// The longest wall-clock budget a policy may get on this worker, in milliseconds.
pub const MAX_REQUEST_MS: u64 = 10_000;
/// Largest request this worker reads (a policy may allow less).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// `console` lines kept per agent for its owner.
pub const LOG_LINES_KEPT: usize = 256;
/// Largest response body an agent's `fetch` reads unless the operator sets another (`--egress-max-response-bytes`).
pub const DEFAULT_EGRESS_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;
/// How often pending egress receipts are committed unless the operator sets another interval.
pub const DEFAULT_RECEIPT_EVERY: Duration = Duration::from_secs(3);
/// Committed receipt batches a worker keeps per agent for its owner (the latest).
pub const RECEIPT_BATCHES_KEPT: usize = 64;
/// Redirects one agent `fetch` follows (each hop is checked against the agent's allow-list).
pub const EGRESS_MAX_REDIRECTS: u32 = 5;

/// The worker operator's egress settings (flags of `umbra worker`); the agent's own policy comes from the chain.
#[derive(Clone, Debug)]
pub struct EgressSettings {
    /// `--egress-allow-private`: agents may reach loopback, private and link-local addresses (when their
    /// allow-list names them). Off by default: an agent runs inside the worker's network. Tests and `umbra dev`
    /// turn it on to reach servers on 127.0.0.1.
    pub allow_private: bool,
    /// `--egress-extra-root FILE`: more trusted root certificates (DER), besides the bundled web roots.
    pub extra_roots: Vec<Vec<u8>>,
    /// `--egress-max-response-bytes`: the largest response body a `fetch` reads (a longer one is cut off and
    /// the fetch fails).
    pub max_response_bytes: u64,
    /// `--egress-receipt-interval-ms`: how often the worker commits each agent's pending egress receipts on
    /// chain (one `AgentReceipts` root per agent with receipts pending).
    pub receipt_every: Duration,
}

impl Default for EgressSettings {
    fn default() -> Self {
        EgressSettings {
            allow_private: false,
            extra_roots: Vec::new(),
            max_response_bytes: DEFAULT_EGRESS_RESPONSE_BYTES,
            receipt_every: DEFAULT_RECEIPT_EVERY,
        }
    }
}

/// The worker's egress: one client for every agent, and the operator's settings.
struct Egress {
    client: umbra_egress::Client,
    settings: EgressSettings,
    /// Batches whose roots were handed to the enclave for the chain, per agent (the latest
    /// [`RECEIPT_BATCHES_KEPT`]), for the owner's `receipts` request.
    committed: Mutex<BTreeMap<ContractId, VecDeque<umbra_egress::ReceiptBatch>>>,
    /// Wallet payloads (`AgentTransfer`, `AgentWallet`, `AgentOutput`) waiting for the host to sign and send.
    wallet: Mutex<WalletQueue>,
}

/// What handlers asked of their wallets since the host last collected, and which Ethereum addresses this
/// worker has already published.
#[derive(Default)]
struct WalletQueue {
    pending: Vec<EgressPayload>,
    published: BTreeSet<(ContractId, KeyEpoch)>,
}

/// The `umbra_egress::Policy` of one `fetch`: the owner's allow-list and call cap from the chain, the operator's
/// private-address switch and response limit, and what is left of the request's time budget.
fn egress_policy(p: &umbra_types::agents::AgentPolicy, s: &EgressSettings, remaining_ms: u64) -> umbra_egress::Policy {
    let max_requests = if p.egress_calls_per_hour == 0 { u32::MAX } else { p.egress_calls_per_hour };
    umbra_egress::Policy {
        allow_hosts: p.egress_allow.clone(),
        allow_http: true,
        allow_private: s.allow_private,
        max_request_bytes: MAX_BODY_BYTES as u64,
        max_response_bytes: s.max_response_bytes,
        timeout_ms: remaining_ms.clamp(1, MAX_REQUEST_MS),
        max_redirects: EGRESS_MAX_REDIRECTS,
        rate: umbra_egress::RateCap { max_requests, window_ms: 3_600_000 },
        // Egress bytes are not priced: the owner's spend cap is in tokens and bounds `env.wallet.transfer`.
        spend: umbra_egress::SpendCap { budget: u64::MAX, window_ms: 86_400_000, cost_per_request: 0, cost_per_kib: 0 },
    }
}

/// What the gateway runs against: agent records, agent contracts and the cluster keys.
pub struct AgentView {
    pub(crate) chain_id: String,
    pub(crate) identity: Keypair,
    pub(crate) x25519: Zeroizing<[u8; 32]>,
    pub(crate) height: u64,
    pub(crate) agents: BTreeMap<ContractId, AgentRecord>,
    pub(crate) contracts: BTreeMap<ContractId, ContractState>,
    pub(crate) clusters: BTreeMap<(KeyEpoch, ClusterId), HeldKey>,
    pub(crate) key_epoch: KeyEpoch,
}

impl std::fmt::Debug for AgentView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentView").field("height", &self.height).field("agents", &self.agents.len()).finish()
    }
}

impl AgentView {
    pub(crate) fn contract_key(&self, id: &ContractId, epoch: KeyEpoch) -> Option<Zeroizing<[u8; 32]>> {
        let c = self.contracts.get(id)?;
        let ck = self.clusters.get(&(epoch, c.cluster))?;
        Some(Zeroizing::new(contract_key(&ck.0, id)))
    }
}

impl AgentView {
    /// A view holding one public JavaScript agent `id` with `code`, a fresh identity and a fresh cluster key,
    /// for `umbra bench agents` (it measures the gateway and the engine without a chain). Workers never
    /// build views this way: theirs come from the enclave's verified state.
    pub fn for_benchmark(chain_id: &str, id: ContractId, code: Vec<u8>) -> AgentView {
        let record = AgentRecord {
            id,
            owner: Address([0; 32]),
            paused: false,
            versions: Vec::new(),
            policy: umbra_types::agents::AgentPolicy { public: true, max_concurrency: 256, ..Default::default() },
            secrets: Vec::new(),
            updated_at: 0,
        };
        let contract = ContractState {
            cluster: 1,
            kind: umbra_types::contracts::CodeKind::JavaScript,
            code,
            storage: BTreeMap::new(),
            next_seq: 0,
            roots: BTreeMap::new(),
            stalled: None,
            events: BTreeMap::new(),
        };
        AgentView {
            chain_id: chain_id.to_string(),
            identity: Keypair::generate(),
            x25519: Zeroizing::new(rand::random()),
            height: 0,
            agents: [(id, record)].into(),
            contracts: [(id, contract)].into(),
            clusters: [((1, 1), HeldKey(rand::random()))].into(),
            key_epoch: 1,
        }
    }
}

/// A refused or failed request: an HTTP status and a message for the JSON body `{ "error": ... }`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct GatewayError {
    /// The HTTP status.
    pub status: u16,
    /// Why.
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> GatewayError {
    GatewayError { status, message: message.into() }
}

/// An answer ready for HTTP: status, headers (the signature headers included) and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayAnswer {
    /// The status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Per-agent bookkeeping on this worker (not replicated, not sealed).
#[derive(Default)]
struct Usage {
    in_flight: u32,
    window_start: Option<Instant>,
    window_count: u32,
    logs: VecDeque<LogLine>,
}

/// Serves agents from the latest [`AgentView`]; cheap to clone and share with the HTTP server.
#[derive(Clone)]
pub struct AgentService {
    view: Arc<RwLock<Option<Arc<AgentView>>>>,
    jobs: mpsc::Sender<Job>,
    usage: Arc<Mutex<BTreeMap<ContractId, Usage>>>,
    egress: Arc<Egress>,
}

impl std::fmt::Debug for AgentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentService").finish_non_exhaustive()
    }
}

struct Job {
    view: Arc<AgentView>,
    agent: ContractId,
    request: AgentRequest,
    caller: Option<Address>,
    deadline: Instant,
    reply: mpsc::Sender<Result<AgentOutcome, AgentFailure>>,
}

/// Releases an agent's concurrency slot when the request ends, however it ends.
struct Slot<'a> {
    usage: &'a Mutex<BTreeMap<ContractId, Usage>>,
    agent: ContractId,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut u) = self.usage.lock()
            && let Some(u) = u.get_mut(&self.agent)
        {
            u.in_flight = u.in_flight.saturating_sub(1);
        }
    }
}

impl AgentService {
    /// A service with [`AGENT_THREADS`] engine threads, the egress client under `egress`, and no view yet.
    pub fn start(egress: EgressSettings) -> std::io::Result<AgentService> {
        let client = umbra_egress::Client::with_extra_roots(&egress.extra_roots)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let egress =
            Arc::new(Egress { client, settings: egress, committed: Mutex::default(), wallet: Mutex::default() });
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let limits = Limits { query_deadline_ms: Some(MAX_REQUEST_MS), ..Limits::default() };
        for i in 0..AGENT_THREADS {
            let rx = rx.clone();
            let limits = limits.clone();
            let egress = egress.clone();
            std::thread::Builder::new()
                .name(format!("umbra-agents-{i}"))
                .stack_size(limits.thread_stack_bytes())
                .spawn(move || engine_loop(limits, &rx, &egress))?;
        }
        Ok(AgentService { view: Arc::new(RwLock::new(None)), jobs: tx, usage: Arc::default(), egress })
    }

    /// Replaces the view requests run against.
    pub fn update(&self, view: AgentView) {
        if let Ok(mut v) = self.view.write() {
            *v = Some(Arc::new(view));
        }
    }

    fn view(&self) -> Result<Arc<AgentView>, GatewayError> {
        self.view
            .read()
            .ok()
            .and_then(|v| v.clone())
            .ok_or_else(|| refuse(503, "the worker has not caught up with the chain yet"))
    }

    /// Serves a plain HTTP request (`/agents/{id}/{path}`): public agents only; the answer is signed.
    pub fn plain(&self, id_hex: &str, request: AgentHttpRequest, host: Option<&str>) -> GatewayAnswer {
        let view = match self.view() {
            Ok(v) => v,
            Err(e) => return json_error(&e),
        };
        let Some(agent) = parse_id(id_hex) else {
            return sign_answer(&view, &[0; 32], &Hash([0; 32]), json_error(&refuse(404, "no agent has this id")));
        };
        let request_hash = plain_request_hash(&agent, &request.method, &request.path, &request.body);
        let answer = match self.check(&view, &agent, request.body.len()) {
            Err(e) => json_error(&e),
            Ok(record) if !record.policy.public => json_error(&refuse(
                403,
                "this agent is not public: call it through the sealed path (umbra agent call, or the SDK)",
            )),
            Ok(record) if !record.policy.callers.is_empty() => json_error(&refuse(
                403,
                "this agent allows listed callers only: call it sealed and signed (plain requests carry no caller)",
            )),
            Ok(_) => {
                let url = format!("http://{}/agents/{}{}", host.unwrap_or("localhost"), Hash(agent), request.path);
                self.run(&view, agent, request, url, None)
            }
        };
        sign_answer(&view, &agent, &request_hash, answer)
    }

    /// Serves a sealed request (`POST /agents/{id}/sealed`): the encoded [`SealedReply`], or a refusal before
    /// the envelope opened.
    pub fn sealed(&self, id_hex: &str, envelope: &[u8]) -> Result<Vec<u8>, GatewayError> {
        let view = self.view()?;
        let agent = parse_id(id_hex).ok_or_else(|| refuse(404, "no agent has this id"))?;
        if envelope.len() > MAX_BODY_BYTES + 4096 {
            return Err(refuse(413, "the sealed request is too large"));
        }
        let plain = open_envelope(&view.x25519, LABEL_REQUEST, &request_aad(&view.chain_id, &agent), envelope)
            .map_err(|_| {
                refuse(
                    400,
                    "the request envelope does not open with this worker's key (sealed to another worker, agent or \
                     chain, or tampered)",
                )
            })?;
        let p: SealedRequestPlain =
            decode(&plain, plain.len()).map_err(|e| refuse(400, format!("the sealed request does not decode: {e}")))?;
        let caller = match &p.caller {
            Some(c) => {
                umbra_crypto::verify(&c.address, &caller_signing_bytes(&view.chain_id, &agent, &p), &c.signature)
                    .map_err(|_| refuse(401, "the caller's signature does not verify"))?;
                Some(c.address)
            }
            None => None,
        };
        let request_hash = sha256(&[envelope]);
        let answer = match self.check(&view, &agent, p.request.body.len()) {
            Err(e) => json_error(&e),
            Ok(record) if !record.policy.allows_caller(caller.as_ref()) => {
                json_error(&refuse(403, "the caller is not in this agent's callers allow-list"))
            }
            Ok(_) => {
                let url = format!("http://sealed/agents/{}{}", Hash(agent), p.request.path);
                self.run(&view, agent, p.request, url, caller)
            }
        };
        let response = AgentHttpResponse { status: answer.status, headers: answer.headers, body: answer.body };
        let mut rng = rand_chacha::ChaCha20Rng::from_seed(rand::random());
        let sealed = seal_envelope(&p.reply_to, LABEL_RESPONSE, &request_hash.0, &encode(&response), &mut rng)
            .map_err(|e| refuse(400, format!("cannot seal to the reply key: {e}")))?;
        let signature = view.identity.sign(&response_signing_bytes(&agent, &request_hash, 200, &sealed));
        Ok(encode(&SealedReply { worker: view.identity.address().0, sealed, signature }))
    }

    /// Serves an owner's logs request (`POST /agents/{id}/logs`): the lines sealed to the owner's key.
    pub fn logs(&self, id_hex: &str, body: &[u8]) -> Result<Vec<u8>, GatewayError> {
        let view = self.view()?;
        let agent = parse_id(id_hex).ok_or_else(|| refuse(404, "no agent has this id"))?;
        let req: LogsRequest =
            decode(body, body.len()).map_err(|e| refuse(400, format!("the logs request does not decode: {e}")))?;
        let record = view.agents.get(&agent).ok_or_else(|| refuse(404, "no agent has this id on this worker"))?;
        if !req.speaks_for(&record.owner) {
            return Err(refuse(
                403,
                "only the agent's owner (or a member of the multisig owning it) may read its logs",
            ));
        }
        umbra_crypto::verify(
            &req.owner,
            &logs_signing_bytes(&view.chain_id, &agent, &req.reply_to, &req.nonce),
            &req.signature,
        )
        .map_err(|_| refuse(401, "the owner's signature does not verify"))?;
        let lines: Vec<LogLine> = self
            .usage
            .lock()
            .map(|u| u.get(&agent).map(|u| u.logs.iter().cloned().collect()).unwrap_or_default())
            .unwrap_or_default();
        let mut rng = rand_chacha::ChaCha20Rng::from_seed(rand::random());
        seal_envelope(&req.reply_to, LABEL_LOGS, &request_aad(&view.chain_id, &agent), &encode(&lines), &mut rng)
            .map_err(|e| refuse(400, format!("cannot seal to the reply key: {e}")))
    }

    /// Drains every agent's pending egress receipts into a batch and returns the `AgentReceipts` payloads to
    /// commit; the batches stay here for the owner.
    pub fn receipt_batches(&self) -> Vec<umbra_types::registry::EgressPayload> {
        let batches: Vec<umbra_egress::ReceiptBatch> = {
            let mut log = self.egress.client.receipts();
            log.agents_with_pending().into_iter().filter_map(|a| log.batch(&a)).collect()
        };
        let mut out = Vec::new();
        let Ok(mut committed) = self.egress.committed.lock() else { return out };
        for b in batches {
            out.push(umbra_types::registry::EgressPayload::AgentReceipts {
                agent: b.agent,
                batch_seq: b.seq,
                root: b.root,
                count: u32::try_from(b.receipts.len()).unwrap_or(u32::MAX),
            });
            let kept = committed.entry(b.agent).or_default();
            kept.push_back(b);
            while kept.len() > RECEIPT_BATCHES_KEPT {
                kept.pop_front();
            }
        }
        out
    }

    /// Takes the wallet payloads handlers asked for since the last call (transfers, Ethereum addresses to
    /// publish, attested outputs), in order, for the host to sign and send.
    pub fn wallet_payloads(&self) -> Vec<EgressPayload> {
        self.egress.wallet.lock().map(|mut q| std::mem::take(&mut q.pending)).unwrap_or_default()
    }

    /// Serves an owner's receipts request (`POST /agents/{id}/receipts`, the body a [`LogsRequest`]): the
    /// committed batches with each receipt's inclusion proof, sealed to the owner's key under
    /// [`LABEL_RECEIPTS`]. Receipts name URLs, which may carry secrets: only the owner reads them.
    pub fn receipts(&self, id_hex: &str, body: &[u8]) -> Result<Vec<u8>, GatewayError> {
        let view = self.view()?;
        let agent = parse_id(id_hex).ok_or_else(|| refuse(404, "no agent has this id"))?;
        let req: LogsRequest =
            decode(body, body.len()).map_err(|e| refuse(400, format!("the receipts request does not decode: {e}")))?;
        let record = view.agents.get(&agent).ok_or_else(|| refuse(404, "no agent has this id on this worker"))?;
        if !req.speaks_for(&record.owner) {
            return Err(refuse(
                403,
                "only the agent's owner (or a member of the multisig owning it) may read its egress receipts",
            ));
        }
        umbra_crypto::verify(
            &req.owner,
            &logs_signing_bytes(&view.chain_id, &agent, &req.reply_to, &req.nonce),
            &req.signature,
        )
        .map_err(|_| refuse(401, "the owner's signature does not verify"))?;
        let replies: Vec<ReceiptBatchReply> = self
            .egress
            .committed
            .lock()
            .map(|c| {
                c.get(&agent)
                    .map(|batches| {
                        batches
                            .iter()
                            .map(|b| ReceiptBatchReply {
                                batch_seq: b.seq,
                                root: b.root,
                                receipts: b.receipts.iter().map(encode).collect(),
                                proofs: (0..b.receipts.len())
                                    .map(|i| b.proof(i).map(|p| encode(&p)).unwrap_or_default())
                                    .collect(),
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let mut rng = rand_chacha::ChaCha20Rng::from_seed(rand::random());
        seal_envelope(&req.reply_to, LABEL_RECEIPTS, &request_aad(&view.chain_id, &agent), &encode(&replies), &mut rng)
            .map_err(|e| refuse(400, format!("cannot seal to the reply key: {e}")))
    }

    /// The checks every request passes before it runs: known, runnable, not paused, small enough.
    fn check<'v>(&self, view: &'v AgentView, agent: &ContractId, body: usize) -> Result<&'v AgentRecord, GatewayError> {
        let record = view
            .agents
            .get(agent)
            .ok_or_else(|| refuse(404, format!("no agent {} runs on this worker's cluster", Hash(*agent))))?;
        let contract = view.contracts.get(agent).ok_or_else(|| refuse(404, "the agent's contract is unknown here"))?;
        if let Some(why) = &contract.stalled {
            return Err(refuse(503, format!("this worker cannot run the agent now: {why}")));
        }
        if record.paused {
            return Err(refuse(423, "the agent is paused by its owner"));
        }
        if body > record.policy.max_request_bytes as usize {
            return Err(refuse(
                413,
                format!(
                    "a request body of {body} bytes exceeds the agent's limit of {}",
                    record.policy.max_request_bytes
                ),
            ));
        }
        Ok(record)
    }

    /// Admits (concurrency, rate), runs on an engine thread and turns the outcome into an answer.
    fn run(
        &self,
        view: &Arc<AgentView>,
        agent: ContractId,
        request: AgentHttpRequest,
        url: String,
        caller: Option<Address>,
    ) -> GatewayAnswer {
        let Some(record) = view.agents.get(&agent) else { return json_error(&refuse(404, "unknown agent")) };
        let policy = &record.policy;
        {
            let Ok(mut usage) = self.usage.lock() else { return json_error(&refuse(500, "usage lock poisoned")) };
            let u = usage.entry(agent).or_default();
            if u.in_flight >= policy.max_concurrency {
                return json_error(&refuse(
                    429,
                    format!("the agent already runs {} requests on this worker (its limit)", u.in_flight),
                ));
            }
            if policy.requests_per_minute > 0 {
                let now = Instant::now();
                if u.window_start.is_none_or(|s| now.duration_since(s) >= Duration::from_secs(60)) {
                    u.window_start = Some(now);
                    u.window_count = 0;
                }
                if u.window_count >= policy.requests_per_minute {
                    return json_error(&refuse(429, "the agent's requests-per-minute cap is reached on this worker"));
                }
                u.window_count += 1;
            }
            u.in_flight += 1;
        }
        let _slot = Slot { usage: &self.usage, agent };
        let budget = u64::from(policy.timeout_ms).min(MAX_REQUEST_MS);
        let started = Instant::now();
        let deadline = started + Duration::from_millis(budget);
        let request = AgentRequest {
            method: request.method,
            url,
            path: request.path,
            headers: request.headers,
            body: request.body,
        };
        let (reply, answer) = mpsc::channel();
        let job = Job { view: view.clone(), agent, request, caller, deadline, reply };
        if self.jobs.send(job).is_err() {
            return json_error(&refuse(500, "the agent engine stopped"));
        }
        let result = answer.recv().unwrap_or_else(|_| {
            Err(AgentFailure {
                failure: Failure { error: EngineError::Host("engine thread gone".into()), gas_used: 0 },
                logs: vec![],
            })
        });
        let (logs, answer) = match result {
            Ok(o) => (o.logs, GatewayAnswer { status: o.status, headers: o.headers, body: o.body }),
            Err(f) => {
                let timed_out = f.failure.error == EngineError::OutOfGas && Instant::now() >= deadline;
                (f.logs, json_error(&engine_refusal(&f.failure.error, timed_out, budget)))
            }
        };
        self.keep_logs(agent, logs);
        tracing::debug!(target: "worker.agents", agent = %Hash(agent), status = answer.status, ms = started.elapsed().as_millis() as u64, "agent request served");
        answer
    }

    fn keep_logs(&self, agent: ContractId, logs: Vec<(String, String)>) {
        if logs.is_empty() {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if let Ok(mut usage) = self.usage.lock() {
            let u = usage.entry(agent).or_default();
            for (level, text) in logs {
                u.logs.push_back(LogLine { time_ms: now, level, text });
                while u.logs.len() > LOG_LINES_KEPT {
                    u.logs.pop_front();
                }
            }
        }
    }
}

/// The HTTP status and message of a failed handler.
fn engine_refusal(e: &EngineError, timed_out: bool, budget_ms: u64) -> GatewayError {
    match e {
        EngineError::OutOfGas if timed_out => {
            refuse(504, format!("the handler passed its time budget of {budget_ms} ms"))
        }
        EngineError::OutOfGas => refuse(500, "the handler ran out of gas"),
        EngineError::OutOfMemory => refuse(500, "the handler ran out of memory"),
        EngineError::Trap(m) => refuse(500, format!("the handler threw: {}", m.lines().next().unwrap_or(""))),
        EngineError::NeverSettled => refuse(500, e.to_string()),
        EngineError::NotAResponse(_) => refuse(502, e.to_string()),
        EngineError::DepthExceeded(_) => refuse(508, format!("agent calls nest too deep: {e}")),
        EngineError::UnknownMethod(_) => {
            refuse(501, "the agent exports no HTTP handler (export default { async fetch(request, env) { ... } })")
        }
        EngineError::InvalidModule(m) => refuse(500, format!("the agent's code does not load: {m}")),
        EngineError::Host(m) => refuse(500, m.clone()),
        other => refuse(500, other.to_string()),
    }
}

fn parse_id(s: &str) -> Option<ContractId> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    let bytes = hex::decode(s).ok()?;
    bytes.try_into().ok()
}

fn json_error(e: &GatewayError) -> GatewayAnswer {
    GatewayAnswer {
        status: e.status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::json!({ "error": e.message }).to_string().into_bytes(),
    }
}

/// Adds `x-umbra-worker` and `x-umbra-signature` (hex) over [`response_signing_bytes`].
fn sign_answer(view: &AgentView, agent: &ContractId, request_hash: &Hash, mut a: GatewayAnswer) -> GatewayAnswer {
    let sig = view.identity.sign(&response_signing_bytes(agent, request_hash, a.status, &a.body));
    a.headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case("x-umbra-worker") && !k.eq_ignore_ascii_case("x-umbra-signature"));
    a.headers.push(("x-umbra-worker".into(), hex::encode(view.identity.address().0)));
    a.headers.push(("x-umbra-signature".into(), hex::encode(sig)));
    a
}

// ---- the engine threads ----

fn engine_loop(limits: Limits, rx: &Mutex<mpsc::Receiver<Job>>, egress: &Arc<Egress>) {
    let engine = match Engine::new(limits) {
        Ok(e) => Rc::new(e),
        Err(e) => {
            tracing::warn!(target: "worker.agents", "the agent engine cannot start: {e}");
            return;
        }
    };
    loop {
        let job = match rx.lock() {
            Ok(rx) => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let host = AgentHost::new(engine.clone(), job.view.clone(), job.deadline, egress.clone());
        let inv = Invocation {
            contract: job.agent,
            mode: Mode::Query,
            method: "fetch".into(),
            args: Vec::new(),
            caller: job.caller.map(|a| a.0),
            height: job.view.height,
            time_ms: now_ms(),
            seed: rand::random(),
            budget: AGENT_GAS,
            depth: 0,
        };
        let result = host.serve(&job.agent, &inv, &job.request);
        let _ = job.reply.send(result);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The engine's host for one request and its nested agent calls: reads the view, holds the opened secrets
/// of the agents it ran (so error texts can be scrubbed of them).
struct AgentHost {
    engine: Rc<Engine>,
    me: Weak<AgentHost>,
    view: Arc<AgentView>,
    deadline: Instant,
    egress: Arc<Egress>,
    /// Every secret value opened for this request, to scrub from logs and errors.
    opened: std::cell::RefCell<Vec<Zeroizing<String>>>,
    /// The agents running, innermost last (whose policy `fetch` checks).
    running: std::cell::RefCell<Vec<ContractId>>,
}

impl AgentHost {
    fn new(engine: Rc<Engine>, view: Arc<AgentView>, deadline: Instant, egress: Arc<Egress>) -> Rc<AgentHost> {
        Rc::new_cyclic(|me| AgentHost {
            engine,
            me: me.clone(),
            view,
            deadline,
            egress,
            opened: Default::default(),
            running: Default::default(),
        })
    }

    /// Opens `record`'s secrets with the agent's contract keys: `(name, value)` pairs, or which one does not
    /// open.
    fn open_secrets(&self, record: &AgentRecord) -> Result<Vec<(String, Zeroizing<String>)>, String> {
        let mut out = Vec::new();
        for s in &record.secrets {
            let Some(key) = self.view.contract_key(&record.id, s.key_epoch) else {
                return Err(format!(
                    "secret {} is sealed to key epoch {}, whose key this worker no longer holds",
                    s.name, s.key_epoch
                ));
            };
            let x = Zeroizing::new(umbra_crypto::kdf(&key, "x25519", b""));
            let aad = secret_aad(&self.view.chain_id, &record.id, &s.name, s.key_epoch);
            let plain = open_envelope(&x, LABEL_SECRET, &aad, &s.sealed).map_err(|_| {
                format!(
                    "secret {} does not open with this agent's key of epoch {} (sealed to another contract, name or \
                     epoch)",
                    s.name, s.key_epoch
                )
            })?;
            let value = Zeroizing::new(String::from_utf8_lossy(&plain).into_owned());
            self.opened.borrow_mut().push(value.clone());
            out.push((s.name.clone(), value));
        }
        Ok(out)
    }

    fn scrub(&self, text: &str) -> String {
        let mut t = text.to_string();
        for v in self.opened.borrow().iter() {
            if v.len() >= 3 {
                t = t.replace(v.as_str(), "[secret]");
            }
        }
        t
    }

    /// Runs `agent`'s handler on `request`; logs and error texts are scrubbed of secrets.
    fn serve(
        &self,
        agent: &ContractId,
        inv: &Invocation,
        request: &AgentRequest,
    ) -> Result<AgentOutcome, AgentFailure> {
        let fail = |e: EngineError| AgentFailure { failure: Failure { error: e, gas_used: 0 }, logs: vec![] };
        let record =
            self.view.agents.get(agent).ok_or_else(|| fail(EngineError::Host(format!("no agent {}", Hash(*agent)))))?;
        let contract = self
            .view
            .contracts
            .get(agent)
            .ok_or_else(|| fail(EngineError::Host("the agent's contract is unknown here".into())))?;
        let secrets = self.open_secrets(record).map_err(|m| fail(EngineError::Host(m)))?;
        let env = {
            let pairs: Vec<(String, String)> = secrets.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
            Zeroizing::new(umbra_engine::env_json(&pairs))
        };
        drop(secrets);
        // The LLM helper (`llm.chat`, see `umbra_egress::LLM_JS`) is a global of every agent, on top of `fetch`.
        let mut source = Vec::with_capacity(umbra_egress::LLM_JS.len() + 1 + contract.code.len());
        source.extend_from_slice(umbra_egress::LLM_JS.as_bytes());
        source.push(b'\n');
        source.extend_from_slice(&contract.code);
        let code = self.engine.load(&Code::JavaScript(source)).map_err(fail)?;
        let host: Rc<dyn Host> = match self.me.upgrade() {
            Some(h) => h,
            None => return Err(fail(EngineError::Host("host gone".into()))),
        };
        self.running.borrow_mut().push(*agent);
        let result = self.engine.handle(&code, inv, request, &env, self.deadline, &host);
        self.running.borrow_mut().pop();
        let scrub_logs = |logs: Vec<(String, String)>| logs.into_iter().map(|(l, t)| (l, self.scrub(&t))).collect();
        match result {
            Ok(mut o) => {
                o.logs = scrub_logs(std::mem::take(&mut o.logs));
                Ok(o)
            }
            Err(mut f) => {
                f.logs = scrub_logs(std::mem::take(&mut f.logs));
                f.failure.error = match f.failure.error {
                    EngineError::Trap(m) => EngineError::Trap(self.scrub(&m)),
                    EngineError::Host(m) => EngineError::Host(self.scrub(&m)),
                    EngineError::NotAResponse(m) => EngineError::NotAResponse(self.scrub(&m)),
                    other => other,
                };
                Err(f)
            }
        }
    }

    fn storage(&self, contract: &ContractId) -> Option<&ContractState> {
        self.view.contracts.get(contract)
    }
}

impl Host for AgentHost {
    fn storage_get(&self, contract: &[u8; 32], key: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        let c = self.storage(contract).ok_or_else(|| HostError("unknown contract".into()))?;
        Ok(c.storage.get(key).cloned())
    }

    fn derive_key(&self, contract: &[u8; 32], salt: &[u8]) -> Result<[u8; 32], HostError> {
        let k = self
            .view
            .contract_key(contract, self.view.key_epoch)
            .ok_or_else(|| HostError("no contract key held".into()))?;
        Ok(umbra_engine::derive_contract_key(&k, salt))
    }

    fn sign(&self, contract: &[u8; 32], msg: &[u8]) -> Result<[u8; 64], HostError> {
        let k = self
            .view
            .contract_key(contract, self.view.key_epoch)
            .ok_or_else(|| HostError("no contract key held".into()))?;
        Ok(umbra_engine::contract_signer(&k).sign(msg))
    }

    /// `env.agents.call(id, request)`: another agent of the same cluster, as a nested request.
    fn call(&self, inv: &Invocation) -> Result<CallOutput, Failure> {
        let host_err = |m: String| Failure { error: EngineError::Host(m), gas_used: 1_000 };
        if inv.method != AGENT_CALL_METHOD {
            return Err(host_err("calls between contracts are not supported by this worker yet".into()));
        }
        let callee =
            self.view.agents.get(&inv.contract).ok_or_else(|| {
                host_err(format!("agents.call: no agent {} runs on this cluster", Hash(inv.contract)))
            })?;
        let same_cluster =
            match (inv.caller.and_then(|c| self.view.contracts.get(&c)), self.view.contracts.get(&inv.contract)) {
                (Some(a), Some(b)) => a.cluster == b.cluster,
                _ => false,
            };
        if !same_cluster {
            return Err(host_err("agents.call: the callee runs on another cluster".into()));
        }
        if callee.paused {
            return Err(host_err(format!("agents.call: agent {} is paused", Hash(inv.contract))));
        }
        if !callee.policy.allows_caller(inv.caller.map(Address).as_ref()) {
            return Err(host_err(format!("agents.call: agent {} does not allow this caller", Hash(inv.contract))));
        }
        let call: AgentCallJson = serde_json::from_slice(&inv.args)
            .map_err(|e| host_err(format!("agents.call: the request does not parse: {e}")))?;
        let path = if call.path.starts_with('/') { call.path } else { format!("/{}", call.path) };
        let request = AgentRequest {
            method: call.method.to_ascii_uppercase(),
            url: format!("http://agents/agents/{}{}", Hash(inv.contract), path),
            path,
            headers: call.headers,
            body: call.body.into_bytes(),
        };
        let out = self.serve(&inv.contract, inv, &request).map_err(|f| f.failure)?;
        let reply = AgentReplyJson {
            status: out.status,
            headers: out.headers,
            body: String::from_utf8_lossy(&out.body).into_owned(),
        };
        Ok(CallOutput { output: serde_json::to_vec(&reply).unwrap_or_default(), gas_used: out.gas_used })
    }

    /// The egress point: the worker's `umbra-egress` client under the running agent's policy (allow-list and
    /// call cap from the chain; private addresses only with `--egress-allow-private`; the response limit; what is
    /// left of the request's time budget). Every exchange leaves a receipt in the client's log.
    fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse, HostError> {
        let agent =
            self.running.borrow().last().copied().ok_or_else(|| HostError("fetch: no agent is running".into()))?;
        let record =
            self.view.agents.get(&agent).ok_or_else(|| HostError("fetch: the agent is unknown here".into()))?;
        let remaining = self.deadline.saturating_duration_since(Instant::now()).as_millis() as u64;
        if remaining == 0 {
            return Err(HostError("fetch: the request's time budget is spent".into()));
        }
        let policy = egress_policy(&record.policy, &self.egress.settings, remaining);
        let req = umbra_egress::Request {
            method: request.method.clone(),
            url: request.url.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
        };
        let (response, _receipt) =
            self.egress.client.fetch(agent, &policy, req).map_err(|e| HostError(format!("fetch: {e}")))?;
        Ok(FetchResponse { status: response.status, body: response.body })
    }

    /// `env.wallet`, `env.eth` and `env.attest` of the running agent (see [`crate::wallet`]).
    fn wallet(&self, request: &WalletRequest) -> Result<serde_json::Value, HostError> {
        let agent =
            self.running.borrow().last().copied().ok_or_else(|| HostError("wallet: no agent is running".into()))?;
        let record =
            self.view.agents.get(&agent).ok_or_else(|| HostError("wallet: the agent is unknown here".into()))?;
        let mut queue = self.egress.wallet.lock().map_err(|_| HostError("wallet: queue lock poisoned".into()))?;
        let WalletQueue { pending, published } = &mut *queue;
        crate::wallet::serve(&self.view, record, request, pending, published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_egress_policy_takes_the_owners_allow_list_and_cap_and_the_operators_switches() {
        let owner = umbra_types::agents::AgentPolicy {
            egress_allow: vec!["api.example.com".into()],
            egress_calls_per_hour: 7,
            ..Default::default()
        };
        let p = egress_policy(&owner, &EgressSettings::default(), 50_000);
        assert!(p.host_allowed("api.example.com") && !p.host_allowed("other.example.com"));
        assert_eq!((p.allow_private, p.rate.max_requests, p.timeout_ms), (false, 7, MAX_REQUEST_MS));
        assert!(p.validate().is_ok());
        let dev = EgressSettings { allow_private: true, max_response_bytes: 10, ..Default::default() };
        let p = egress_policy(&umbra_types::agents::AgentPolicy::default(), &dev, 0);
        assert_eq!((p.allow_private, p.max_response_bytes, p.timeout_ms), (true, 10, 1));
        assert_eq!(p.rate.max_requests, u32::MAX, "0 means no cap");
        assert!(p.allow_hosts.is_empty());
    }

    #[test]
    fn engine_failures_map_to_http_statuses() {
        assert_eq!(engine_refusal(&EngineError::OutOfGas, true, 5).status, 504);
        assert_eq!(engine_refusal(&EngineError::NotAResponse("x".into()), false, 5).status, 502);
        assert_eq!(engine_refusal(&EngineError::DepthExceeded(4), false, 5).status, 508);
        assert_eq!(engine_refusal(&EngineError::NeverSettled, false, 5).status, 500);
    }
}
