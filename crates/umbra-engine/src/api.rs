//! The engine's contract with its callers: what goes in ([`Invocation`]), what comes out ([`Outcome`]) and
//! what the worker provides ([`Host`]).

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use sha2::{Digest, Sha256};

/// Whether an invocation is replicated (ordered by the chain, run by every worker of the cluster) or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Mode {
    /// A replicated command: deterministic, no network, its outcome changes state.
    Command,
    /// An off-chain query to one worker: may fetch and may use a wall-clock deadline; its writes are discarded
    /// by the worker.
    Query,
}

/// Everything one run of a contract method depends on, besides the contract's code and stored state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// The id of the contract being run (its storage namespace and signing identity).
    pub contract: [u8; 32],
    /// Command or query.
    pub mode: Mode,
    /// The exported function to run.
    pub method: String,
    /// The argument bytes (JSON for JavaScript contracts by convention; see the crate docs).
    pub args: Vec<u8>,
    /// The authenticated caller, `None` for anonymous queries. A contract calling another is its caller.
    pub caller: Option<[u8; 32]>,
    /// The height of the block that ordered the command (for queries: the height the worker has verified).
    pub height: u64,
    /// The block's timestamp in milliseconds since the Unix epoch; `Date.now()` in JavaScript.
    pub time_ms: u64,
    /// Per-invocation randomness seed: derive it with [`invocation_seed`] from the contract key and the command.
    pub seed: [u8; 32],
    /// Gas this invocation may use (wasm: fuel; JavaScript: see [`JS_GAS_PER_TICK`](crate::JS_GAS_PER_TICK)).
    pub budget: u64,
    /// 0 for an invocation from outside; `n + 1` for a call made by an invocation at depth `n`.
    pub depth: u32,
}

/// A named event emitted by a contract.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Event {
    /// The event's name, chosen by the contract.
    pub name: String,
    /// The event's payload.
    pub data: Vec<u8>,
}

/// A token transfer the contract asked for: recorded, never executed by the engine (it leaves through egress).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Transfer {
    /// The recipient account.
    pub to: [u8; 32],
    /// The amount in the smallest unit.
    pub amount: u128,
}

/// The effects of one successful invocation. The worker applies them; the engine never does.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Outcome {
    /// The method's return value.
    pub output: Vec<u8>,
    /// Storage writes of the invoked contract, in key order: `Some(value)` sets, `None` removes.
    pub writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Events in the order they were emitted.
    pub events: Vec<Event>,
    /// Requested transfers in the order they were made.
    pub transfers: Vec<Transfer>,
    /// Gas used, including the gas of nested calls.
    pub gas_used: u64,
}

impl Outcome {
    /// The canonical (borsh) encoding: equal outcomes give equal bytes on every worker.
    pub fn to_bytes(&self) -> Vec<u8> {
        borsh::to_vec(self).unwrap_or_default()
    }

    /// SHA-256 of [`Outcome::to_bytes`].
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.to_bytes()).into()
    }
}

/// What a nested call returned to the calling contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallOutput {
    /// The callee's return value.
    pub output: Vec<u8>,
    /// Gas the callee used; charged to the caller.
    pub gas_used: u64,
}

/// An outbound HTTP request (queries and agents only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// Request headers in order.
    pub headers: Vec<(String, String)>,
    /// Request body (empty for none).
    pub body: Vec<u8>,
}

/// The answer to a [`FetchRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response body.
    pub body: Vec<u8>,
}

/// A failure reported by the host; the invocation ends with [`EngineError::Host`](crate::EngineError::Host).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostError(pub String);

/// What the worker provides to running contracts. Every method takes `&self`: storage writes, events and
/// transfers are collected by the engine into the [`Outcome`], so the host is a read-only view of committed
/// state plus key services. One host may serve many contracts, hence the `contract` arguments.
pub trait Host {
    /// The value of `key` in `contract`'s storage as the worker has it now (including the applied outcomes of
    /// earlier commands in the same block).
    fn storage_get(&self, contract: &[u8; 32], key: &[u8]) -> Result<Option<Vec<u8>>, HostError>;

    /// A 32-byte key derived from `contract`'s key and `salt` (see [`derive_contract_key`](crate::derive_contract_key)).
    fn derive_key(&self, contract: &[u8; 32], salt: &[u8]) -> Result<[u8; 32], HostError>;

    /// An ed25519 signature of `msg` by `contract`'s signing key (see [`contract_signer`](crate::contract_signer)).
    fn sign(&self, contract: &[u8; 32], msg: &[u8]) -> Result<[u8; 64], HostError>;

    /// Runs `invocation` (built by the engine: callee, caller, depth, remaining budget) on the callee's code,
    /// usually through the same [`Engine`](crate::Engine). The host keeps the callee's outcome and applies it
    /// only if the outermost invocation succeeds. A failure (the callee's, or the host's own, such as an unknown
    /// contract, as [`EngineError::Host`](crate::EngineError::Host)) ends the caller with the same error, and its
    /// gas is charged to the caller.
    fn call(&self, invocation: &Invocation) -> Result<CallOutput, crate::Failure>;

    /// Performs an outbound HTTP request. Never called for commands. The default refuses.
    fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse, HostError> {
        let _ = request;
        Err(HostError("fetch is not available on this host".into()))
    }

    /// Serves an agent handler's wallet request (`env.wallet`, `env.eth`, `env.attest`, see
    /// [`WalletRequest`](crate::WalletRequest)) for the agent running innermost; the reply is what the handler
    /// gets (JSON). Never called for commands. The default refuses.
    fn wallet(&self, request: &crate::WalletRequest) -> Result<serde_json::Value, HostError> {
        let _ = request;
        Err(HostError("agent wallets are not available on this host".into()))
    }
}

/// The randomness seed of a command: `kdf(contract_key, "umbra/engine/seed", command_id)`, so it is unknown
/// outside the cluster yet identical on every worker.
pub fn invocation_seed(contract_key: &[u8; 32], command_id: &[u8]) -> [u8; 32] {
    umbra_crypto::kdf(contract_key, "umbra/engine/seed", command_id)
}

/// The key `umbra.deriveKey(salt)` returns: `kdf(contract_key, "umbra/engine/derive", salt)`.
pub fn derive_contract_key(contract_key: &[u8; 32], salt: &[u8]) -> [u8; 32] {
    umbra_crypto::kdf(contract_key, "umbra/engine/derive", salt)
}

/// The ed25519 key `umbra.sign` signs with: seeded by `kdf(contract_key, "umbra/engine/sign", "")`.
pub fn contract_signer(contract_key: &[u8; 32]) -> umbra_crypto::Keypair {
    umbra_crypto::Keypair::from_seed(umbra_crypto::kdf(contract_key, "umbra/engine/sign", b""))
}

/// Per-invocation limits; the defaults suit commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest storage key in bytes.
    pub max_key_len: usize,
    /// Largest storage value in bytes.
    pub max_value_len: usize,
    /// Largest total of written keys and values, event payloads and return value per invocation.
    pub max_output_bytes: usize,
    /// Largest `random(n)` request.
    pub max_random_len: usize,
    /// Deepest nesting of contract calls (an outside invocation has depth 0).
    pub max_call_depth: u32,
    /// JavaScript heap limit in bytes.
    pub js_heap_bytes: usize,
    /// JavaScript native stack limit in bytes.
    pub js_stack_bytes: usize,
    /// Largest wasm linear memory in 64 KiB pages.
    pub wasm_max_pages: u32,
    /// Largest contract code in bytes.
    pub max_code_len: usize,
    /// Wall-clock limit for queries only (commands are bounded by gas alone), in milliseconds.
    pub query_deadline_ms: Option<u64>,
}

impl Limits {
    /// The native stack an engine thread needs: every call level may start a QuickJS runtime that uses up to
    /// [`Limits::js_stack_bytes`] below where it was entered, plus room for the engine and host frames.
    pub fn thread_stack_bytes(&self) -> usize {
        const PER_LEVEL_OVERHEAD: usize = 256 * 1024;
        const BASE: usize = 1024 * 1024;
        (self.max_call_depth as usize + 1)
            .saturating_mul(self.js_stack_bytes.saturating_add(PER_LEVEL_OVERHEAD))
            .saturating_add(BASE)
    }

    /// Refuses settings that would silently disable a limit (QuickJS reads a heap limit of 0 as "none") or that
    /// wasm cannot express.
    pub fn validate(&self) -> Result<(), String> {
        let nonzero = [
            ("max_key_len", self.max_key_len),
            ("max_output_bytes", self.max_output_bytes),
            ("js_heap_bytes", self.js_heap_bytes),
            ("js_stack_bytes", self.js_stack_bytes),
            ("max_code_len", self.max_code_len),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        if self.wasm_max_pages > 65_536 {
            return Err("wasm_max_pages is above the 4 GiB of 32-bit wasm".into());
        }
        if self.query_deadline_ms == Some(0) {
            return Err("query_deadline_ms must be positive (None for no deadline)".into());
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_len: 256,
            max_value_len: 64 * 1024,
            max_output_bytes: 1024 * 1024,
            max_random_len: 64 * 1024,
            max_call_depth: 4,
            js_heap_bytes: 32 * 1024 * 1024,
            js_stack_bytes: 512 * 1024,
            wasm_max_pages: 256,
            max_code_len: 2 * 1024 * 1024,
            query_deadline_ms: Some(2_000),
        }
    }
}
