//! Contract execution inside the enclave: the contracts this worker's cluster runs, their storage, and the
//! deterministic handling of `ContractInstantiated`, `ContractCommand` and `ContractResult` messages.
//!
//! # Why it is shaped this way
//!
//! - **Pure state, engine at the edge.** [`ContractsState`] is plain data inside the sealed [`WorkerState`]
//!   (so the rollback commitment covers it); the engine (`umbra-engine`, not `Send`) lives on one dedicated
//!   thread behind [`EngineThread`], which takes a job and returns the outcome. The enclave applies outcomes.
//! - **Same input, same bytes.** A command depends only on the message (envelope, sender, gas, block time),
//!   the contract key and the storage before it, so every member computes the same report; reports are
//!   signed with the contract's deterministic ed25519 key (`umbra_engine::contract_signer`) and numbered with
//!   the command's sequence, so the chain takes the first copy and refuses the rest as stale.
//!
//! [`WorkerState`]: crate::state::WorkerState

use crate::keys::{contract_key, contract_public};
use borsh::{BorshDeserialize, BorshSerialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::sync::{Arc, mpsc};
use tracing::{info, warn};
use umbra_crypto::open_envelope;
use umbra_engine::{
    CallOutput, Code, Engine, EngineError, Event, Failure, Host, HostError, Invocation, Limits, Mode, Outcome,
    contract_signer, invocation_seed,
};
use umbra_types::contracts::{
    CodeKind, CommandPlain, CommandStatus, ContractId, ContractTransfer, LABEL_COMMAND, command_aad, state_root,
};
use umbra_types::registry::{ClusterId, KeyEpoch};
use umbra_types::{Address, Hash, decode, sha256};
use zeroize::Zeroizing;

/// Roots kept per contract for comparing with the chain's `ContractResult`s.
const ROOTS_KEPT: usize = 1_024;
/// Commands whose events each contract keeps for their senders to read (see [`remember_events`]).
pub(crate) const EVENTS_KEPT: usize = 1_024;
/// Largest return value kept for a command's sender.
pub(crate) const OUTPUT_KEPT: usize = 16 * 1024;

/// A copy of every contract's state, shared by the read-only views (queries, snapshots) of one update.
pub(crate) type SharedContracts =
    std::sync::Arc<std::collections::BTreeMap<umbra_types::contracts::ContractId, ContractState>>;

/// One contract as this worker runs it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct ContractState {
    /// The cluster that runs it.
    pub(crate) cluster: ClusterId,
    /// The code's language.
    pub(crate) kind: CodeKind,
    /// The code.
    pub(crate) code: Vec<u8>,
    /// Its storage.
    pub(crate) storage: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The next command number expected.
    pub(crate) next_seq: u64,
    /// State roots after recent commands, by command number.
    pub(crate) roots: BTreeMap<u64, Hash>,
    /// Set when this worker could not run a command (key not held): it stops running the contract
    /// rather than diverge.
    pub(crate) stalled: Option<String>,
    /// What recent commands returned and emitted, by command number: the chain has only the events' hash
    /// (and nothing of the return value); the sender reads them through a signed query of
    /// [`EVENTS_METHOD`](crate::query::EVENTS_METHOD).
    pub(crate) events: BTreeMap<u64, CommandOutput>,
}

/// A successful command's return value and events, kept for its sender.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct CommandOutput {
    /// Who sent the command.
    pub(crate) sender: Address,
    /// Its events (those of the contracts it called included), as hashed in the report.
    pub(crate) events: Vec<Event>,
    /// Its return value (empty if larger than [`OUTPUT_KEPT`]).
    pub(crate) output: Vec<u8>,
}

impl ContractState {
    /// The state root of the storage.
    pub(crate) fn root(&self) -> Hash {
        state_root(self.storage.iter())
    }

    /// Bytes of the storage: every key and value (what the chain's storage deposit follows).
    pub(crate) fn stored_bytes(&self) -> u64 {
        self.storage.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
    }

    /// The engine's view of the code.
    pub(crate) fn engine_code(&self) -> Code {
        match self.kind {
            CodeKind::JavaScript => Code::JavaScript(self.code.clone()),
            CodeKind::Wasm => Code::Wasm(self.code.clone()),
        }
    }
}

/// Every contract of this worker's cluster and the cluster's egress numbering.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct ContractsState {
    /// The contracts, by id.
    pub(crate) contracts: BTreeMap<ContractId, ContractState>,
    /// Per cluster, the next `Origin::Cluster` egress sequence (one per `ContractInstantiated`).
    pub(crate) cluster_seq: BTreeMap<ClusterId, u64>,
}

/// What an invocation can reach: every contract of the cluster (for calls between contracts) and the cluster
/// secret their keys derive from. Moved to the engine thread for one run and handed back.
pub(crate) struct World {
    /// The cluster's contracts, by id.
    pub(crate) contracts: Arc<BTreeMap<ContractId, ContractState>>,
    /// The cluster the invocation runs on.
    pub(crate) cluster: ClusterId,
    /// The cluster key of the epoch the invocation runs under.
    pub(crate) secret: Zeroizing<[u8; 32]>,
}

/// The effects of the nested calls of a successful invocation: applied with it, or not at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Nested {
    /// Storage writes per called contract, in call order (later writes win).
    pub(crate) writes: BTreeMap<ContractId, BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    /// Events of the called contracts, in the order their calls returned.
    pub(crate) events: Vec<Event>,
}

/// What a run returns: the outcome with its nested calls' effects, or the failure.
pub(crate) type RunResult = Result<(Outcome, Nested), Failure>;

/// A run for the engine thread.
struct Job {
    world: World,
    invocation: Invocation,
    reply: mpsc::Sender<(World, RunResult)>,
}

/// The engine's host for one run: a read-only view of the cluster's contracts plus the effects of nested calls
/// made so far (kept apart until the outermost invocation succeeds).
struct WorldHost {
    engine: Rc<Engine>,
    contracts: Arc<BTreeMap<ContractId, ContractState>>,
    cluster: ClusterId,
    secret: Zeroizing<[u8; 32]>,
    nested: RefCell<Nested>,
    me: Weak<WorldHost>,
}

impl WorldHost {
    fn key(&self, contract: &ContractId) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(contract_key(&self.secret, contract))
    }

    fn refuse(reason: String) -> Failure {
        Failure { error: EngineError::Host(reason), gas_used: 0 }
    }
}

impl Host for WorldHost {
    fn storage_get(&self, contract: &[u8; 32], key: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        if let Some(v) = self.nested.borrow().writes.get(contract).and_then(|w| w.get(key)) {
            return Ok(v.clone());
        }
        let c = self.contracts.get(contract).ok_or_else(|| HostError(format!("no contract {}", Hash(*contract))))?;
        Ok(c.storage.get(key).cloned())
    }

    fn derive_key(&self, contract: &[u8; 32], salt: &[u8]) -> Result<[u8; 32], HostError> {
        Ok(umbra_engine::derive_contract_key(&self.key(contract), salt))
    }

    fn sign(&self, contract: &[u8; 32], msg: &[u8]) -> Result<[u8; 64], HostError> {
        Ok(contract_signer(&self.key(contract)).sign(msg))
    }

    /// A call to another contract of the same cluster (or the same contract again): run on the same engine
    /// against the committed state plus earlier nested writes; its writes and events are kept for the
    /// outermost invocation, and dropped with everything the callee's own calls did if it fails.
    fn call(&self, invocation: &Invocation) -> Result<CallOutput, Failure> {
        let id = Hash(invocation.contract);
        let callee = match self.contracts.get(&invocation.contract) {
            Some(c) if c.cluster == self.cluster => c,
            _ => {
                return Err(Self::refuse(format!(
                    "contract {id} is not run by cluster {} (a contract may call only contracts of its own cluster)",
                    self.cluster
                )));
            }
        };
        if let Some(why) = &callee.stalled {
            return Err(Self::refuse(format!("contract {id} cannot run on this cluster: {why}")));
        }
        let code = self.engine.load(&callee.engine_code()).map_err(|error| Failure { error, gas_used: 0 })?;
        let me: Rc<dyn Host> = match self.me.upgrade() {
            Some(me) => me,
            None => return Err(Self::refuse("the host of this invocation is gone".into())),
        };
        let before = self.nested.borrow().clone();
        let outcome = match self.engine.invoke(&code, invocation, &me) {
            Ok(o) => o,
            Err(f) => {
                *self.nested.borrow_mut() = before;
                return Err(f);
            }
        };
        if !outcome.transfers.is_empty() {
            *self.nested.borrow_mut() = before;
            return Err(Failure {
                error: EngineError::Host(format!(
                    "contract {id} asked for a token transfer while called by another contract: only the contract \
                     a command is sent to may transfer"
                )),
                gas_used: outcome.gas_used,
            });
        }
        let mut nested = self.nested.borrow_mut();
        nested.writes.entry(invocation.contract).or_default().extend(outcome.writes);
        nested.events.extend(outcome.events);
        Ok(CallOutput { output: outcome.output, gas_used: outcome.gas_used })
    }
}

/// A dedicated thread owning an [`Engine`] (which is not `Send`), with the stack its limits need.
#[derive(Debug)]
pub(crate) struct EngineThread {
    jobs: mpsc::Sender<Job>,
}

impl EngineThread {
    /// Starts the thread; `name` names it in logs.
    pub(crate) fn start(name: &str, limits: Limits) -> std::io::Result<EngineThread> {
        let (tx, rx) = mpsc::channel::<Job>();
        let stack = limits.thread_stack_bytes();
        std::thread::Builder::new().name(name.to_string()).stack_size(stack).spawn(move || {
            let engine = match Engine::new(limits) {
                Ok(e) => Rc::new(e),
                Err(e) => {
                    warn!(target: "worker.contracts", "the contract engine cannot start: {e}");
                    return;
                }
            };
            while let Ok(job) = rx.recv() {
                let result = run_job(&engine, &job.world, &job.invocation);
                let _ = job.reply.send((job.world, result));
            }
        })?;
        Ok(EngineThread { jobs: tx })
    }

    /// Runs `invocation` on its contract in `world`, waiting for the result; hands `world` back.
    pub(crate) fn run(&self, world: World, invocation: Invocation) -> (World, RunResult) {
        let (reply, answer) = mpsc::channel();
        let gone = || Failure { error: EngineError::Host("the engine thread stopped".into()), gas_used: 0 };
        let contracts = world.contracts.clone();
        let (cluster, secret) = (world.cluster, world.secret.clone());
        if self.jobs.send(Job { world, invocation, reply }).is_err() {
            return (World { contracts, cluster, secret }, Err(gone()));
        }
        match answer.recv() {
            Ok(done) => done,
            Err(_) => (World { contracts, cluster, secret }, Err(gone())),
        }
    }
}

fn run_job(engine: &Rc<Engine>, world: &World, invocation: &Invocation) -> RunResult {
    let Some(contract) = world.contracts.get(&invocation.contract) else {
        return Err(WorldHost::refuse(format!("no contract {}", Hash(invocation.contract))));
    };
    let code = engine.load(&contract.engine_code()).map_err(|error| Failure { error, gas_used: 0 })?;
    let host = Rc::new_cyclic(|me| WorldHost {
        engine: engine.clone(),
        contracts: world.contracts.clone(),
        cluster: world.cluster,
        secret: world.secret.clone(),
        nested: RefCell::new(Nested::default()),
        me: me.clone(),
    });
    let dyn_host: Rc<dyn Host> = host.clone();
    let outcome = engine.invoke(&code, invocation, &dyn_host);
    drop(dyn_host);
    let nested = host.nested.take();
    outcome.map(|o| (o, nested))
}

/// What running one command produced: the report's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CommandReport {
    pub(crate) status: CommandStatus,
    pub(crate) gas_used: u64,
    pub(crate) state_root: Hash,
    pub(crate) events_hash: Hash,
    pub(crate) transfers: Vec<ContractTransfer>,
    pub(crate) stored_bytes: u64,
}

/// A command as the chain ordered it.
pub(crate) struct OrderedCommand<'a> {
    pub(crate) contract: ContractId,
    pub(crate) seq: u64,
    pub(crate) sender: Address,
    pub(crate) key_epoch: KeyEpoch,
    pub(crate) gas_limit: u64,
    pub(crate) sealed: &'a [u8],
    pub(crate) height: u64,
    pub(crate) time_ms: u64,
}

/// Runs `invocation` in a world made of `contracts` (taken for the run and put back), applying the outcome
/// and its nested calls' writes on success. Returns the outcome (with the nested calls' events appended).
fn run_in(
    engine: &EngineThread,
    contracts: &mut BTreeMap<ContractId, ContractState>,
    cluster: ClusterId,
    cluster_secret: &[u8; 32],
    invocation: Invocation,
) -> Result<Outcome, Failure> {
    let id = invocation.contract;
    let world =
        World { contracts: Arc::new(std::mem::take(contracts)), cluster, secret: Zeroizing::new(*cluster_secret) };
    let (world, result) = engine.run(world, invocation);
    *contracts = Arc::try_unwrap(world.contracts).unwrap_or_else(|shared| (*shared).clone());
    let (mut outcome, nested) = result?;
    for (callee, writes) in nested.writes {
        if let Some(c) = contracts.get_mut(&callee) {
            apply_writes(c, &writes);
        }
    }
    if let Some(c) = contracts.get_mut(&id) {
        apply_writes(c, &outcome.writes);
    }
    outcome.events.extend(nested.events);
    Ok(outcome)
}

/// Runs command `cmd` on its contract in `contracts` (the cluster's, so it may call the others; every state
/// updated only on success) with cluster key `cluster_secret` of the command's key epoch. Deterministic:
/// every member gets the same report. The events and the return value come back apart, for the sender.
pub(crate) fn run_command(
    engine: &EngineThread,
    chain_id: &str,
    contracts: &mut BTreeMap<ContractId, ContractState>,
    cluster_secret: &[u8; 32],
    cmd: &OrderedCommand<'_>,
) -> (CommandReport, Vec<Event>, Vec<u8>) {
    let key = contract_key(cluster_secret, &cmd.contract);
    let failed = |reason: String, gas_used: u64, root: Hash, stored_bytes: u64| {
        let report = CommandReport {
            status: CommandStatus::Failed { reason },
            gas_used,
            state_root: root,
            events_hash: events_hash(&[]),
            transfers: Vec::new(),
            stored_bytes,
        };
        (report, Vec::new(), Vec::new())
    };
    let Some(contract) = contracts.get(&cmd.contract) else {
        return failed("the contract is not known to this worker".into(), 0, state_root(std::iter::empty()), 0);
    };
    // The root is computed once per command (it hashes all the storage): after the run, or, when the command
    // fails (and changes nothing), of the storage as it was.
    let cluster = contract.cluster;
    let root_of = |contracts: &BTreeMap<ContractId, ContractState>| {
        contracts.get(&cmd.contract).map(ContractState::root).unwrap_or_else(|| state_root(std::iter::empty()))
    };
    let stored = contract.stored_bytes();
    let secret = zeroize::Zeroizing::new(umbra_crypto::kdf(&key, "x25519", b""));
    let aad = command_aad(chain_id, &cmd.contract, cmd.key_epoch, &cmd.sender);
    let plain = match open_envelope(&secret, LABEL_COMMAND, &aad, cmd.sealed) {
        Ok(p) => zeroize::Zeroizing::new(p),
        Err(_) => {
            return failed(
                format!(
                    "the command does not open with the contract's key of epoch {} (sealed to another key, epoch, \
                     contract or sender)",
                    cmd.key_epoch
                ),
                0,
                root_of(contracts),
                stored,
            );
        }
    };
    let Ok(plain) = decode::<CommandPlain>(&plain, plain.len()) else {
        return failed("the command's plaintext is not a method and arguments".into(), 0, root_of(contracts), stored);
    };
    let mut command_id = cmd.contract.to_vec();
    command_id.extend_from_slice(&cmd.seq.to_le_bytes());
    let invocation = Invocation {
        contract: cmd.contract,
        mode: Mode::Command,
        method: plain.method,
        args: plain.args,
        caller: Some(cmd.sender.0),
        height: cmd.height,
        time_ms: cmd.time_ms,
        seed: invocation_seed(&key, &command_id),
        budget: cmd.gas_limit,
        depth: 0,
    };
    match run_in(engine, contracts, cluster, cluster_secret, invocation) {
        Ok(outcome) => {
            let root = root_of(contracts);
            let stored_bytes = contracts.get(&cmd.contract).map(ContractState::stored_bytes).unwrap_or(0);
            let report = CommandReport {
                status: CommandStatus::Ok,
                gas_used: outcome.gas_used,
                state_root: root,
                events_hash: events_hash(&outcome.events),
                transfers: outcome
                    .transfers
                    .iter()
                    .map(|t| ContractTransfer { to: Address(t.to), amount: t.amount })
                    .collect(),
                stored_bytes,
            };
            (report, outcome.events, outcome.output)
        }
        Err(f) => failed(f.error.to_string(), f.gas_used, root_of(contracts), stored),
    }
}

/// Runs `init(args)` of contract `id` (already in `contracts`) at instantiation (deployer as caller, seed from
/// the contract key and "init").
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_init(
    engine: &EngineThread,
    contracts: &mut BTreeMap<ContractId, ContractState>,
    cluster: ClusterId,
    cluster_secret: &[u8; 32],
    id: &ContractId,
    deployer: &Address,
    args: &[u8],
    height: u64,
    time_ms: u64,
    gas: u64,
) -> Result<(), String> {
    let key = contract_key(cluster_secret, id);
    let invocation = Invocation {
        contract: *id,
        mode: Mode::Command,
        method: "init".into(),
        args: args.to_vec(),
        caller: Some(deployer.0),
        height,
        time_ms,
        seed: invocation_seed(&key, b"init"),
        budget: gas,
        depth: 0,
    };
    run_in(engine, contracts, cluster, cluster_secret, invocation).map(|_| ()).map_err(|f| f.to_string())
}

/// Runs a query on a snapshot of the cluster's `contracts` (never changes them; nested calls see the snapshot).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_query(
    engine: &EngineThread,
    contracts: &Arc<BTreeMap<ContractId, ContractState>>,
    cluster: ClusterId,
    cluster_secret: &[u8; 32],
    id: &ContractId,
    method: &str,
    args: &[u8],
    caller: Option<Address>,
    height: u64,
    budget: u64,
) -> Result<Outcome, Failure> {
    let invocation = Invocation {
        contract: *id,
        mode: Mode::Query,
        method: method.to_string(),
        args: args.to_vec(),
        caller: caller.map(|a| a.0),
        height,
        // Queries are not replicated: they see the wall clock (and fresh randomness).
        time_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        seed: rand::random(),
        budget,
        depth: 0,
    };
    let world = World { contracts: contracts.clone(), cluster, secret: Zeroizing::new(*cluster_secret) };
    engine.run(world, invocation).1.map(|(o, _)| o)
}

fn apply_writes(contract: &mut ContractState, writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
    for (k, v) in writes {
        match v {
            Some(v) => contract.storage.insert(k.clone(), v.clone()),
            None => contract.storage.remove(k),
        };
    }
}

/// Records what command `seq` from `sender` returned and emitted (commands with neither leave no entry),
/// keeping the latest [`EVENTS_KEPT`] entries.
pub(crate) fn remember_output(
    contract: &mut ContractState,
    seq: u64,
    sender: Address,
    events: Vec<Event>,
    output: Vec<u8>,
) {
    let output = if output.len() > OUTPUT_KEPT { Vec::new() } else { output };
    if events.is_empty() && output.is_empty() {
        return;
    }
    contract.events.insert(seq, CommandOutput { sender, events, output });
    while contract.events.len() > EVENTS_KEPT {
        contract.events.pop_first();
    }
}

/// SHA-256 of the events' canonical encoding.
pub(crate) fn events_hash(events: &[umbra_engine::Event]) -> Hash {
    sha256(&[&borsh::to_vec(events).unwrap_or_default()])
}

/// Records `root` as the state after command `seq`, keeping the latest [`ROOTS_KEPT`].
pub(crate) fn remember_root(contract: &mut ContractState, seq: u64, root: Hash) {
    contract.roots.insert(seq, root);
    while contract.roots.len() > ROOTS_KEPT {
        contract.roots.pop_first();
    }
}

/// The contract's public halves from the cluster secret (for `ContractKeys`).
pub(crate) fn public_of(cluster_secret: &[u8; 32], id: &ContractId) -> umbra_types::contracts::ContractPublic {
    contract_public(&contract_key(cluster_secret, id))
}

/// Logs a stalled contract once.
pub(crate) fn stall(contract: &mut ContractState, id: &ContractId, reason: String) {
    if contract.stalled.is_none() {
        warn!(target: "worker.contracts", contract = %Hash(*id), %reason, "contract stalled on this worker");
        contract.stalled = Some(reason);
    } else {
        info!(target: "worker.contracts", contract = %Hash(*id), "contract still stalled");
    }
}
