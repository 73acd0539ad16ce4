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
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::mpsc;
use tracing::{info, warn};
use umbra_crypto::open_envelope;
use umbra_engine::{
    CallOutput, Code, Engine, EngineError, Failure, Host, HostError, Invocation, Limits, Mode, Outcome,
    contract_signer, invocation_seed,
};
use umbra_types::contracts::{
    CodeKind, CommandPlain, CommandStatus, ContractId, ContractTransfer, LABEL_COMMAND, command_aad, state_root,
};
use umbra_types::registry::{ClusterId, KeyEpoch};
use umbra_types::{Address, Hash, decode, sha256};

/// Roots kept per contract for comparing with the chain's `ContractResult`s.
const ROOTS_KEPT: usize = 1_024;

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
}

impl ContractState {
    /// The state root of the storage.
    pub(crate) fn root(&self) -> Hash {
        state_root(self.storage.iter())
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

/// A run for the engine thread.
struct Job {
    code: Code,
    invocation: Invocation,
    storage: BTreeMap<Vec<u8>, Vec<u8>>,
    key: [u8; 32],
    reply: mpsc::Sender<Result<Outcome, Failure>>,
}

/// The engine's host for one run: a read-only snapshot of the contract's storage and its key.
struct SnapshotHost {
    contract: ContractId,
    storage: BTreeMap<Vec<u8>, Vec<u8>>,
    key: [u8; 32],
}

impl Host for SnapshotHost {
    fn storage_get(&self, contract: &[u8; 32], key: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        if *contract != self.contract {
            return Err(HostError("a contract may only read its own storage".into()));
        }
        Ok(self.storage.get(key).cloned())
    }

    fn derive_key(&self, _contract: &[u8; 32], salt: &[u8]) -> Result<[u8; 32], HostError> {
        Ok(umbra_engine::derive_contract_key(&self.key, salt))
    }

    fn sign(&self, _contract: &[u8; 32], msg: &[u8]) -> Result<[u8; 64], HostError> {
        Ok(contract_signer(&self.key).sign(msg))
    }

    fn call(&self, invocation: &Invocation) -> Result<CallOutput, Failure> {
        Err(Failure {
            error: EngineError::Host("calls between contracts are not supported by this worker yet".into()),
            gas_used: invocation.budget.min(1_000),
        })
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
                Ok(e) => e,
                Err(e) => {
                    warn!(target: "worker.contracts", "the contract engine cannot start: {e}");
                    return;
                }
            };
            while let Ok(job) = rx.recv() {
                let result = engine.load(&job.code).map_err(|error| Failure { error, gas_used: 0 }).and_then(|c| {
                    let host: Rc<dyn Host> =
                        Rc::new(SnapshotHost { contract: job.invocation.contract, storage: job.storage, key: job.key });
                    engine.invoke(&c, &job.invocation, &host)
                });
                let _ = job.reply.send(result);
            }
        })?;
        Ok(EngineThread { jobs: tx })
    }

    /// Runs `invocation` on `code` against `storage`, waiting for the result.
    pub(crate) fn run(
        &self,
        code: Code,
        invocation: Invocation,
        storage: BTreeMap<Vec<u8>, Vec<u8>>,
        key: [u8; 32],
    ) -> Result<Outcome, Failure> {
        let (reply, answer) = mpsc::channel();
        let gone = || Failure { error: EngineError::Host("the engine thread stopped".into()), gas_used: 0 };
        self.jobs.send(Job { code, invocation, storage, key, reply }).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

/// What running one command produced: the report's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CommandReport {
    pub(crate) status: CommandStatus,
    pub(crate) gas_used: u64,
    pub(crate) state_root: Hash,
    pub(crate) events_hash: Hash,
    pub(crate) transfers: Vec<ContractTransfer>,
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

/// Runs a command on `contract` (its state updated on success) with cluster key `cluster` of the command's
/// key epoch. Deterministic: every member gets the same report.
pub(crate) fn run_command(
    engine: &EngineThread,
    chain_id: &str,
    contract: &mut ContractState,
    cluster_secret: &[u8; 32],
    cmd: &OrderedCommand<'_>,
) -> CommandReport {
    let key = contract_key(cluster_secret, &cmd.contract);
    let failed = |reason: String, gas_used: u64, root: Hash| CommandReport {
        status: CommandStatus::Failed { reason },
        gas_used,
        state_root: root,
        events_hash: events_hash(&[]),
        transfers: Vec::new(),
    };
    let root = contract.root();
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
                root,
            );
        }
    };
    let Ok(plain) = decode::<CommandPlain>(&plain, plain.len()) else {
        return failed("the command's plaintext is not a method and arguments".into(), 0, root);
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
    match engine.run(contract.engine_code(), invocation, contract.storage.clone(), key) {
        Ok(outcome) => {
            apply_writes(contract, &outcome);
            CommandReport {
                status: CommandStatus::Ok,
                gas_used: outcome.gas_used,
                state_root: contract.root(),
                events_hash: events_hash(&outcome.events),
                transfers: outcome
                    .transfers
                    .iter()
                    .map(|t| ContractTransfer { to: Address(t.to), amount: t.amount })
                    .collect(),
            }
        }
        Err(f) => failed(f.error.to_string(), f.gas_used, root),
    }
}

/// Runs `init(args)` at instantiation (deployer as caller, seed from the contract key and "init").
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_init(
    engine: &EngineThread,
    contract: &mut ContractState,
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
    let outcome =
        engine.run(contract.engine_code(), invocation, contract.storage.clone(), key).map_err(|f| f.to_string())?;
    apply_writes(contract, &outcome);
    Ok(())
}

/// Runs a query on a snapshot of `contract` (never changes it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_query(
    engine: &EngineThread,
    contract: &ContractState,
    cluster_secret: &[u8; 32],
    id: &ContractId,
    method: &str,
    args: &[u8],
    caller: Option<Address>,
    height: u64,
    budget: u64,
) -> Result<Outcome, Failure> {
    let key = contract_key(cluster_secret, id);
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
    engine.run(contract.engine_code(), invocation, contract.storage.clone(), key)
}

fn apply_writes(contract: &mut ContractState, outcome: &Outcome) {
    for (k, v) in &outcome.writes {
        match v {
            Some(v) => contract.storage.insert(k.clone(), v.clone()),
            None => contract.storage.remove(k),
        };
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
