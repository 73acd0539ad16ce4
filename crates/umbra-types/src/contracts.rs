//! Confidential contracts on chain: uploaded code, instances bound to a cluster, sealed commands and the
//! reports their cluster sends back (the chain side of the contracts flow in `docs/worker-protocol.md`).
//!
//! # Why it is shaped this way
//!
//! - **Content-addressed code.** Code is stored once under [`code_hash`] (the same hash `umbra-engine` keys its
//!   compiled-code cache by), so instances of the same code share it and workers can check what they run.
//! - **Deterministic ids.** [`contract_id`] hashes deployer, code hash, salt and cluster, so a deployer knows
//!   the id before the instantiation lands and the same salt cannot make two instances.
//! - **Nothing readable on chain.** A command's method and arguments are HPKE-sealed to the contract's X25519
//!   key of one key epoch ([`command_aad`] binds chain, contract, epoch and sender); the chain only orders the
//!   envelope, holds the gas deposit and forwards the envelope to the cluster.
//! - **Reports land once.** Every worker of the cluster runs every command in chain order and signs the same
//!   report with the contract's own key (origin `Contract(id)`, sequence = the command's number), so identical
//!   copies collapse into one; a worker whose state root differs tells the chain through its own origin
//!   ([`crate::EgressPayload::ContractIncident`]).

use crate::registry::{ClusterId, KeyEpoch, WorkerId, X25519Public};
use crate::{Address, Amount, Hash, sha256};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// A contract's id (see [`contract_id`]).
pub type ContractId = [u8; 32];

/// Envelope label of a sealed command.
pub const LABEL_COMMAND: &str = "contract-command";
/// Envelope label of a query sealed to a worker.
pub const LABEL_QUERY: &str = "query";
/// Envelope label of a query answer sealed to the client's ephemeral key.
pub const LABEL_QUERY_ANSWER: &str = "query-answer";
/// Domain tag of a worker's signature over a query answer.
pub const QUERY_ANSWER_DOMAIN: &[u8] = b"umbra/query-answer/v1";
/// Domain tag of a caller's signature over a query.
pub const QUERY_CALLER_DOMAIN: &[u8] = b"umbra/query-caller/v1";

/// The language of uploaded code.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CodeKind {
    /// An ES module (UTF-8 source), run on QuickJS.
    JavaScript,
    /// A WebAssembly binary module, run on wasmi.
    Wasm,
}

/// SHA-256 over a kind tag and the code: equal to `umbra_engine::Code::hash` of the same code.
pub fn code_hash(kind: CodeKind, code: &[u8]) -> Hash {
    let tag: &[u8] = match kind {
        CodeKind::JavaScript => b"umbra/js\0",
        CodeKind::Wasm => b"umbra/wasm\0",
    };
    sha256(&[tag, code])
}

/// A contract's id: `SHA-256("umbra/contract-id/v1" || deployer || code hash || len(salt) u64 LE || salt ||
/// cluster u32 LE)`.
pub fn contract_id(deployer: &Address, code_hash: &Hash, salt: &[u8], cluster: ClusterId) -> ContractId {
    let len = (salt.len() as u64).to_le_bytes();
    sha256(&[b"umbra/contract-id/v1", &deployer.0, &code_hash.0, &len, salt, &cluster.to_le_bytes()]).0
}

/// The balance account of a contract: nobody holds its key; only the contract's reported transfers move
/// its tokens.
pub fn contract_account(id: &ContractId) -> Address {
    Address(sha256(&[b"umbra/contract-account/v1", id]).0)
}

/// The account holding command gas deposits until their command is reported.
pub fn gas_escrow() -> Address {
    Address::module("contracts-gas-escrow")
}

/// The account holding contracts' storage deposits (see [`ContractRecord::storage_deposit`]).
pub fn storage_escrow() -> Address {
    Address::module("contracts-storage-deposits")
}

/// The AAD of a sealed command: `len(chain_id) u64 LE || chain_id || contract || key epoch u64 LE || sender`.
/// Binding the sender means a copied envelope cannot be replayed under another account's name.
pub fn command_aad(chain_id: &str, contract: &ContractId, key_epoch: KeyEpoch, sender: &Address) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + chain_id.len() + 32 + 8 + 32);
    out.extend_from_slice(&(chain_id.len() as u64).to_le_bytes());
    out.extend_from_slice(chain_id.as_bytes());
    out.extend_from_slice(contract);
    out.extend_from_slice(&key_epoch.to_le_bytes());
    out.extend_from_slice(&sender.0);
    out
}

/// A contract's state root: SHA-256 over `"umbra/contract-state/v1"` and, for every key/value in ascending
/// key order, `len(key) u64 LE || key || len(value) u64 LE || value`. Every worker computes the same root for
/// the same storage.
pub fn state_root<'a>(entries: impl IntoIterator<Item = (&'a Vec<u8>, &'a Vec<u8>)>) -> Hash {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"umbra/contract-state/v1");
    for (k, v) in entries {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k);
        h.update((v.len() as u64).to_le_bytes());
        h.update(v);
    }
    Hash(h.finalize().into())
}

/// The plaintext inside a command envelope.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CommandPlain {
    /// The exported function to run.
    pub method: String,
    /// Its argument bytes (JSON by convention for JavaScript).
    pub args: Vec<u8>,
}

/// The public halves of a contract key for one key epoch: `x25519` of `KDF(K, "x25519", "")` (commands are
/// sealed to it) and the ed25519 key contracts sign with (`umbra_engine::contract_signer`), which signs the
/// contract's reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ContractPublic {
    /// HPKE recipient key of the contract.
    #[serde(with = "crate::block::hex32")]
    pub x25519: X25519Public,
    /// ed25519 signing key of the contract.
    #[serde(with = "crate::block::hex32")]
    pub ed25519: [u8; 32],
}

/// `contracts`: uploaded code (the bytes are stored raw under
/// [`crate::state_keys::StateKey::ContractCodeBytes`]).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CodeRecord {
    /// Its hash ([`code_hash`]).
    pub hash: Hash,
    /// The language.
    pub kind: CodeKind,
    /// Size in bytes.
    pub size: u32,
    /// Who uploaded it first.
    pub uploader: Address,
    /// Height of the first upload.
    pub uploaded_at: u64,
}

/// `contracts`: an instance.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ContractRecord {
    /// Its id.
    #[serde(with = "crate::block::hex32")]
    pub id: ContractId,
    /// Its code.
    pub code_hash: Hash,
    /// The code's language.
    pub kind: CodeKind,
    /// The cluster that runs it.
    pub cluster: ClusterId,
    /// Who instantiated it.
    pub deployer: Address,
    /// Height of the instantiation.
    pub instantiated_at: u64,
    /// Its balance account ([`contract_account`]).
    pub account: Address,
    /// Public halves of its key per key epoch, as its cluster published them (empty until then).
    pub keys: Vec<(KeyEpoch, ContractPublic)>,
    /// Commands ordered so far (the next command's number).
    pub commands: u64,
    /// Commands reported so far.
    pub reported: u64,
    /// The state root after the last reported command (the root after instantiation before any).
    pub state_root: Option<Hash>,
    /// Mismatching roots reported by workers.
    pub incidents: u32,
    /// Tokens held in [`storage_escrow`] for this contract's storage: its code's bytes at instantiation and then
    /// (code + stored) bytes times its cluster's storage price, adjusted at every report.
    #[serde(default, with = "crate::genesis::amount_str")]
    pub storage_deposit: Amount,
    /// Bytes of the contract's storage (keys and values) after the last reported command, as its cluster reported.
    #[serde(default)]
    pub stored_bytes: u64,
    /// Deposit the contract's account could not cover at the last report: while non-zero, commands are refused
    /// until its account holds this much (then it is moved to the deposit).
    #[serde(default, with = "crate::genesis::amount_str")]
    pub storage_debt: Amount,
}

impl ContractRecord {
    /// The public halves for `key_epoch`, if published.
    pub fn public(&self, key_epoch: KeyEpoch) -> Option<ContractPublic> {
        self.keys.iter().find(|(e, _)| *e == key_epoch).map(|(_, p)| *p)
    }
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CommandStatus {
    /// The method ran and its effects were applied.
    Ok,
    /// Nothing was applied: the envelope did not open, the method failed or ran out of gas.
    Failed {
        /// Why, as the workers determined it (identical on every worker).
        reason: String,
    },
}

/// `contracts`: one ordered command.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CommandRecord {
    /// The account that sent (and paid for) it.
    pub sender: Address,
    /// Height that ordered it.
    pub height: u64,
    /// The key epoch it was sealed to.
    pub key_epoch: KeyEpoch,
    /// The gas it may use.
    pub gas_limit: u64,
    /// Tokens held in [`gas_escrow`] for it (`gas_limit * gas price`).
    #[serde(with = "crate::genesis::amount_str")]
    pub deposit: Amount,
    /// SHA-256 of the envelope.
    pub envelope_hash: Hash,
    /// Set when the cluster reported it.
    pub result: Option<CommandResult>,
}

/// What the chain recorded of a command's report.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CommandResult {
    /// Success or why not.
    pub status: CommandStatus,
    /// Gas used (at most the limit).
    pub gas_used: u64,
    /// The contract's state root after the command.
    pub state_root: Hash,
    /// SHA-256 of the events' canonical encoding.
    pub events_hash: Hash,
    /// Gas deposit returned to the sender.
    #[serde(with = "crate::genesis::amount_str")]
    pub refund: Amount,
    /// Transfers from the contract's account that were made.
    pub transfers: Vec<ContractTransfer>,
    /// Why the requested transfers were not made, if they were not.
    pub transfer_error: Option<String>,
    /// Height of the report.
    pub reported_at: u64,
}

/// A token transfer from a contract's account, as its command's report asks.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ContractTransfer {
    /// The recipient.
    pub to: Address,
    /// The amount in the smallest unit.
    #[serde(with = "crate::genesis::amount_str")]
    pub amount: Amount,
}

/// `contracts`: a worker reported a state root other than the one the chain recorded.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Incident {
    /// The command.
    pub seq: u64,
    /// The worker that disagrees.
    #[serde(with = "crate::block::hex32")]
    pub worker: WorkerId,
    /// The root the chain recorded.
    pub recorded: Hash,
    /// The worker's root.
    pub reported: Hash,
    /// Height of the incident.
    pub height: u64,
}

/// Contract parameters (in [`crate::Params`], so governance can change them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContractParams {
    /// Largest uploaded code in bytes (also bounded by `max_tx_bytes`).
    pub max_code_bytes: u32,
    /// Largest command envelope in bytes.
    pub max_command_bytes: u32,
    /// Most gas one command may ask for.
    pub max_gas_per_command: u64,
    /// Price of one unit of gas in the smallest token unit, for clusters without their own
    /// ([`ClusterContractParams`]).
    #[serde(with = "crate::genesis::amount_str")]
    pub gas_price: Amount,
    /// Gas of the `init` method run at instantiation (paid by nobody: it is bounded by this).
    pub init_gas: u64,
    /// Storage deposit per byte (code and stored state) in the smallest token unit, for clusters without their
    /// own ([`ClusterContractParams`]); 0: no deposit.
    #[serde(with = "crate::genesis::amount_str")]
    pub storage_deposit_per_byte: Amount,
}

impl Default for ContractParams {
    fn default() -> Self {
        ContractParams {
            max_code_bytes: 48 * 1024,
            max_command_bytes: 16 * 1024,
            max_gas_per_command: 1_000_000_000,
            gas_price: 1_000,
            init_gas: 100_000_000,
            storage_deposit_per_byte: 0,
        }
    }
}

/// `contracts`: a cluster's own contract settings, set by governance (or the dev chain's sudo) with
/// `AdminCall::SetClusterContracts`; `None` falls back to the chain's [`ContractParams`].
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ClusterContractParams {
    /// Price of one unit of gas on this cluster.
    pub gas_price: Option<u64>,
    /// Largest code (bytes) an instance on this cluster may run.
    pub max_code_bytes: Option<u32>,
    /// Storage deposit per byte on this cluster (`AdminCall::SetClusterStorageDeposit`).
    #[serde(default)]
    pub storage_deposit_per_byte: Option<u64>,
}

impl ClusterContractParams {
    /// The gas price in force: the cluster's, else the chain's.
    pub fn gas_price(&self, chain: &ContractParams) -> Amount {
        self.gas_price.map(Amount::from).unwrap_or(chain.gas_price)
    }

    /// The code size limit in force: the cluster's, else the chain's.
    pub fn max_code_bytes(&self, chain: &ContractParams) -> u32 {
        self.max_code_bytes.unwrap_or(chain.max_code_bytes)
    }

    /// The storage deposit per byte in force: the cluster's, else the chain's.
    pub fn storage_deposit_per_byte(&self, chain: &ContractParams) -> Amount {
        self.storage_deposit_per_byte.map(Amount::from).unwrap_or(chain.storage_deposit_per_byte)
    }
}

/// A caller's proof of identity in a query: an ed25519 signature by `address` over
/// [`query_caller_bytes`].
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct QueryCaller {
    /// The caller's account (its ed25519 public key).
    pub address: Address,
    /// Its signature.
    pub signature: [u8; 64],
}

/// The plaintext of a query, sealed to a worker's X25519 key under [`LABEL_QUERY`] (AAD: the chain id).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct QueryPlain {
    /// The contract.
    pub contract: ContractId,
    /// The method.
    pub method: String,
    /// Its arguments.
    pub args: Vec<u8>,
    /// The client's ephemeral X25519 key: the answer is sealed to it.
    pub reply_to: X25519Public,
    /// Client randomness, so two equal queries have different answers' AAD.
    pub nonce: [u8; 16],
    /// An optional authenticated caller.
    pub caller: Option<QueryCaller>,
}

/// The bytes a query's caller signs: domain, chain id, contract, method, args, reply key and nonce.
pub fn query_caller_bytes(chain_id: &str, q: &QueryPlain) -> Vec<u8> {
    let mut out = QUERY_CALLER_DOMAIN.to_vec();
    for part in [chain_id.as_bytes(), &q.contract, q.method.as_bytes(), &q.args, &q.reply_to, &q.nonce] {
        out.extend_from_slice(&(part.len() as u64).to_le_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// What a query returned, sealed to the client's ephemeral key under [`LABEL_QUERY_ANSWER`] (AAD: the
/// SHA-256 of the request envelope).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct QueryAnswer {
    /// The method's output, or why it failed.
    pub result: Result<Vec<u8>, String>,
    /// Gas used.
    pub gas_used: u64,
    /// The height of the worker's state the query ran on.
    pub height: u64,
    /// The contract's state root the query ran on.
    pub state_root: Hash,
}

/// A worker's reply to a query: the sealed answer and the worker's signature over
/// `QUERY_ANSWER_DOMAIN || SHA-256(request envelope) || sealed`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct QueryReply {
    /// The answering worker.
    pub worker: WorkerId,
    /// The sealed [`QueryAnswer`].
    pub sealed: Vec<u8>,
    /// The worker's identity signature.
    pub signature: [u8; 64],
}

/// The bytes a worker signs for a query reply.
pub fn query_reply_bytes(request_hash: &Hash, sealed: &[u8]) -> Vec<u8> {
    let mut out = QUERY_ANSWER_DOMAIN.to_vec();
    out.extend_from_slice(&request_hash.0);
    out.extend_from_slice(sealed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_change_with_every_input_and_code_hashes_with_the_kind() {
        let (d, h) = (Address([1; 32]), Hash([2; 32]));
        let id = contract_id(&d, &h, b"s", 1);
        assert_ne!(id, contract_id(&Address([3; 32]), &h, b"s", 1));
        assert_ne!(id, contract_id(&d, &Hash([3; 32]), b"s", 1));
        assert_ne!(id, contract_id(&d, &h, b"t", 1));
        assert_ne!(id, contract_id(&d, &h, b"s", 2));
        assert_ne!(code_hash(CodeKind::JavaScript, b"x"), code_hash(CodeKind::Wasm, b"x"));
        assert_ne!(contract_account(&id), Address(id));
    }

    #[test]
    fn the_state_root_depends_on_keys_values_and_their_split() {
        let a = [(b"ab".to_vec(), b"c".to_vec())];
        let b = [(b"a".to_vec(), b"bc".to_vec())];
        assert_ne!(state_root(a.iter().map(|(k, v)| (k, v))), state_root(b.iter().map(|(k, v)| (k, v))));
        assert_ne!(state_root(a.iter().map(|(k, v)| (k, v))), state_root(std::iter::empty()));
    }
}
