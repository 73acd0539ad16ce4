//! AI agents on chain: a confidential JavaScript contract with an HTTP handler, an owner who controls it
//! (pause, upgrade with a recorded history, policy, sealed secrets, ownership), and the wire shapes of the
//! worker gateway that serves it (`/agents/{id}/...`).
//!
//! # Why it is shaped this way
//!
//! - **An agent is a contract plus a record.** The code, keys, storage and commands are those of an ordinary
//!   contract ([`crate::contracts`]); [`AgentRecord`] adds what only agents have and lives under its own
//!   state key, so nothing of the contracts module changes.
//! - **Secrets are sealed to the contract, not to a worker.** The owner seals each secret with HPKE to the
//!   contract's X25519 key of one key epoch; [`secret_aad`] binds chain, contract, name and epoch, so a secret
//!   copied from another agent (or renamed) does not open. The chain stores only envelopes.
//! - **Workers learn every change through their cluster's topic** (`MessageBody::AgentUpdated` carries the
//!   whole record and, on deploy or upgrade, the code), so the gateway decides from its own verified state.
//! - **Gateway answers are signed.** A worker signs [`response_signing_bytes`] with its identity key, so a
//!   client can check the answer came from a worker whose attestation the chain records.

use crate::contracts::ContractId;
use crate::registry::{KeyEpoch, WorkerId, X25519Public};
use crate::{Address, Amount, Hash, sha256};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Envelope label of a secret sealed to an agent's contract key.
pub const LABEL_SECRET: &str = "agent-secret";
/// Envelope label of a gateway request sealed to a worker.
pub const LABEL_REQUEST: &str = "agent-request";
/// Envelope label of a gateway response sealed to the client's ephemeral key.
pub const LABEL_RESPONSE: &str = "agent-response";
/// Envelope label of an owner's logs sealed to the owner's ephemeral key.
pub const LABEL_LOGS: &str = "agent-logs";
/// Domain tag of a worker's signature over a gateway response.
pub const RESPONSE_DOMAIN: &[u8] = b"umbra/agent-response/v1";
/// Domain tag of a caller's signature over a sealed request.
pub const CALLER_DOMAIN: &[u8] = b"umbra/agent-caller/v1";
/// Domain tag of an owner's signature over a logs request.
pub const LOGS_DOMAIN: &[u8] = b"umbra/agent-logs/v1";
/// Most versions kept in an agent's history.
pub const MAX_VERSIONS: usize = 64;
/// Most secrets per agent.
pub const MAX_SECRETS: usize = 32;
/// Largest sealed secret in bytes.
pub const MAX_SECRET_BYTES: usize = 8 * 1024;
/// Most entries in each policy allow-list.
pub const MAX_ALLOW: usize = 64;
/// Envelope label of an owner's egress receipts sealed to the owner's ephemeral key.
pub const LABEL_RECEIPTS: &str = "agent-receipts";
/// Receipt batch commitments the chain keeps per agent (the latest).
pub const MAX_RECEIPT_COMMITS: usize = 256;
/// Most receipts one committed batch may count.
pub const MAX_RECEIPTS_PER_BATCH: u32 = 65_536;

/// One deployed version of an agent's code.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AgentVersion {
    /// The code ([`crate::contracts::code_hash`]).
    pub code_hash: Hash,
    /// Height of the deploy or upgrade.
    pub height: u64,
}

/// What the owner allows; the gateway enforces the request side, the egress client the outbound side.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentPolicy {
    /// Served as plain HTTP at `/agents/{id}/...` (webhooks, browsers); sealed requests are always served.
    pub public: bool,
    /// Accounts allowed to call (sealed, signed requests); empty: anyone. A non-empty list also closes the
    /// plain path, which carries no caller identity.
    pub callers: Vec<Address>,
    /// Hosts the agent may fetch (`example.com` or `*.example.com`); empty: none.
    pub egress_allow: Vec<String>,
    /// Largest request body in bytes.
    pub max_request_bytes: u32,
    /// Requests one worker runs at once for this agent; more get `429`.
    pub max_concurrency: u32,
    /// Wall-clock budget of one request in milliseconds (also bounded by the worker's own limit).
    pub timeout_ms: u32,
    /// Requests per minute one worker serves for this agent (0: no cap).
    pub requests_per_minute: u32,
    /// Outbound calls per hour (enforced by the egress client; 0: no cap).
    pub egress_calls_per_hour: u32,
    /// Tokens the agent may send from its account with `env.wallet.transfer` in a rolling day (enforced by the
    /// chain, see [`crate::agent_wallet`]; 0: none).
    #[serde(with = "crate::genesis::amount_str")]
    pub spend_cap_per_day: Amount,
}

impl Default for AgentPolicy {
    fn default() -> Self {
        AgentPolicy {
            public: false,
            callers: Vec::new(),
            egress_allow: Vec::new(),
            max_request_bytes: 64 * 1024,
            max_concurrency: 8,
            timeout_ms: 2_000,
            requests_per_minute: 0,
            egress_calls_per_hour: 0,
            spend_cap_per_day: 0,
        }
    }
}

impl AgentPolicy {
    /// Refuses lists and limits beyond what the chain stores.
    pub fn validate(&self) -> Result<(), String> {
        if self.callers.len() > MAX_ALLOW || self.egress_allow.len() > MAX_ALLOW {
            return Err(format!("allow-lists hold at most {MAX_ALLOW} entries"));
        }
        if self.egress_allow.iter().any(|d| d.is_empty() || d.len() > 253 || d.contains('/')) {
            return Err("an egress allow-list entry must be a host name (example.com or *.example.com)".into());
        }
        if self.max_request_bytes == 0 || self.max_request_bytes > 1024 * 1024 {
            return Err("max_request_bytes must be between 1 and 1048576".into());
        }
        if self.max_concurrency == 0 || self.max_concurrency > 256 {
            return Err("max_concurrency must be between 1 and 256".into());
        }
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            return Err("timeout_ms must be between 1 and 60000".into());
        }
        Ok(())
    }

    /// True when `caller` may call (an empty list allows anyone).
    pub fn allows_caller(&self, caller: Option<&Address>) -> bool {
        self.callers.is_empty() || caller.is_some_and(|c| self.callers.contains(c))
    }
}

/// A secret sealed to the agent's contract key of `key_epoch` under [`LABEL_SECRET`] with [`secret_aad`].
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AgentSecret {
    /// Its name (`env.NAME` in the handler).
    pub name: String,
    /// The key epoch it is sealed to.
    pub key_epoch: KeyEpoch,
    /// The envelope.
    #[serde(with = "crate::staking::hex_bytes")]
    pub sealed: Vec<u8>,
    /// Height it was set.
    pub set_at: u64,
}

/// `agents`: what makes a contract an agent.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AgentRecord {
    /// The contract.
    #[serde(with = "crate::block::hex32")]
    pub id: ContractId,
    /// Who controls it (the deployer first).
    pub owner: Address,
    /// Paused agents are refused by the gateway (`423`).
    pub paused: bool,
    /// Every version, oldest first; the last is running (the latest [`MAX_VERSIONS`]).
    pub versions: Vec<AgentVersion>,
    /// What the owner allows.
    pub policy: AgentPolicy,
    /// Sealed secrets, by name ascending.
    pub secrets: Vec<AgentSecret>,
    /// Height of the last change.
    pub updated_at: u64,
}

/// Whether `name` may name a secret: 1 to 64 of `A-Z a-z 0-9 _`, not starting with a digit.
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The AAD of a sealed secret: `len(chain_id) u64 LE || chain_id || contract || len(name) u64 LE || name ||
/// key epoch u64 LE`.
pub fn secret_aad(chain_id: &str, contract: &ContractId, name: &str, key_epoch: KeyEpoch) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(chain_id.len() as u64).to_le_bytes());
    out.extend_from_slice(chain_id.as_bytes());
    out.extend_from_slice(contract);
    out.extend_from_slice(&(name.len() as u64).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&key_epoch.to_le_bytes());
    out
}

/// The AAD of a request sealed to a worker: `len(chain_id) u64 LE || chain_id || agent`.
pub fn request_aad(chain_id: &str, agent: &ContractId) -> Vec<u8> {
    let mut out = (chain_id.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(chain_id.as_bytes());
    out.extend_from_slice(agent);
    out
}

/// An HTTP request as the gateway hands it to a handler.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct AgentHttpRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path below `/agents/{id}` with the query string (`/` at least).
    pub path: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// An HTTP response as a handler returned it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct AgentHttpResponse {
    /// The status code.
    pub status: u16,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// A caller's signature over [`caller_signing_bytes`].
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct AgentCaller {
    /// The caller's account.
    pub address: Address,
    /// Its ed25519 signature.
    pub signature: [u8; 64],
}

/// The plaintext of a sealed gateway request (`POST /agents/{id}/sealed`), sealed to the worker's attested
/// X25519 key under [`LABEL_REQUEST`] with [`request_aad`].
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SealedRequestPlain {
    /// The request.
    pub request: AgentHttpRequest,
    /// The client's ephemeral X25519 key; the response is sealed to it.
    pub reply_to: X25519Public,
    /// Client randomness.
    pub nonce: [u8; 16],
    /// An optional authenticated caller (required by a policy with a callers list).
    pub caller: Option<AgentCaller>,
}

/// The bytes a sealed request's caller signs: domain, chain id, agent, the encoded request, reply key, nonce.
pub fn caller_signing_bytes(chain_id: &str, agent: &ContractId, p: &SealedRequestPlain) -> Vec<u8> {
    let request = crate::encode(&p.request);
    let mut out = CALLER_DOMAIN.to_vec();
    for part in [chain_id.as_bytes(), agent, &request, &p.reply_to, &p.nonce] {
        out.extend_from_slice(&(part.len() as u64).to_le_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// A worker's answer to a sealed request: the [`AgentHttpResponse`] sealed to `reply_to` under
/// [`LABEL_RESPONSE`] (AAD: SHA-256 of the request envelope) and the worker's signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SealedReply {
    /// The answering worker.
    pub worker: WorkerId,
    /// The sealed response.
    pub sealed: Vec<u8>,
    /// The worker's signature over [`response_signing_bytes`] of the request envelope and `sealed`.
    pub signature: [u8; 64],
}

/// The hash a plain request is identified by in its response signature:
/// `SHA-256("umbra/agent-request/v1" || agent || len-prefixed method, path, body)`.
pub fn plain_request_hash(agent: &ContractId, method: &str, path: &str, body: &[u8]) -> Hash {
    let lens = |b: &[u8]| (b.len() as u64).to_le_bytes();
    sha256(&[
        b"umbra/agent-request/v1",
        agent,
        &lens(method.as_bytes()),
        method.as_bytes(),
        &lens(path.as_bytes()),
        path.as_bytes(),
        &lens(body),
        body,
    ])
}

/// The bytes a worker signs for a gateway answer (`x-umbra-signature`): `RESPONSE_DOMAIN || agent ||
/// request hash || status u16 LE || SHA-256(body)`. For a sealed request the request hash is SHA-256 of the
/// envelope, the status 200 and the body the sealed response.
pub fn response_signing_bytes(agent: &ContractId, request_hash: &Hash, status: u16, body: &[u8]) -> Vec<u8> {
    let mut out = RESPONSE_DOMAIN.to_vec();
    out.extend_from_slice(agent);
    out.extend_from_slice(&request_hash.0);
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&sha256(&[body]).0);
    out
}

/// An owner's request for its agent's logs (`POST /agents/{id}/logs`).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct LogsRequest {
    /// The owner's ephemeral X25519 key; the logs are sealed to it.
    pub reply_to: X25519Public,
    /// Client randomness.
    pub nonce: [u8; 16],
    /// The owner's account, or, for an agent a multisig owns, the member's account that signs.
    pub owner: Address,
    /// Its signature over [`logs_signing_bytes`].
    pub signature: [u8; 64],
    /// For an agent owned by a multisig: its members and threshold, so the worker can derive the multisig's
    /// address and check that `owner` is one of its members (workers do not follow multisig records).
    pub member_of: Option<MultisigMembers>,
}

/// A multisig's members and threshold, as a [`LogsRequest`] names them.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct MultisigMembers {
    /// The members (any order).
    pub members: Vec<Address>,
    /// Its threshold.
    pub threshold: u16,
}

impl LogsRequest {
    /// Whether the request's signer speaks for `owner`: it is `owner`, or one member of the multisig the
    /// request names whose derived address is `owner`. One member suffices: reading logs and receipts changes
    /// nothing, so it needs no threshold. The caller still checks the signature with [`logs_signing_bytes`].
    /// A governance owner has no key and no members: nobody reads for it.
    pub fn speaks_for(&self, owner: &Address) -> bool {
        if self.owner == *owner {
            return true;
        }
        let Some(m) = &self.member_of else { return false };
        crate::multisig::check_members(&m.members, m.threshold).is_ok_and(|members| {
            members.contains(&self.owner) && crate::multisig::multisig_address(&members, m.threshold) == *owner
        })
    }
}

/// The bytes an owner signs to read logs: domain, chain id, agent, reply key, nonce.
pub fn logs_signing_bytes(chain_id: &str, agent: &ContractId, reply_to: &X25519Public, nonce: &[u8; 16]) -> Vec<u8> {
    let mut out = LOGS_DOMAIN.to_vec();
    out.extend_from_slice(&request_aad(chain_id, agent));
    out.extend_from_slice(reply_to);
    out.extend_from_slice(nonce);
    out
}

/// One line a handler logged with `console.log` (kept in a bounded buffer on the worker).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct LogLine {
    /// Wall-clock time in milliseconds.
    pub time_ms: u64,
    /// `log`, `warn` or `error`.
    pub level: String,
    /// The text (secret values replaced by `[secret]`).
    pub text: String,
}

/// `agents`: one batch of egress receipts a worker committed for an agent (`EgressPayload::AgentReceipts`).
/// The receipts themselves stay on the worker, which hands them (with Merkle proofs) to the owner only.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ReceiptCommit {
    /// The worker that made the calls.
    #[serde(with = "crate::block::hex32")]
    pub worker: WorkerId,
    /// The worker's batch number for this agent (0 first; restarts when the worker process restarts).
    pub batch_seq: u64,
    /// Merkle root over the batch's receipt leaves (`umbra_egress::Receipt::leaf`).
    pub root: Hash,
    /// How many receipts the batch holds.
    pub count: u32,
    /// Height at which the chain recorded it.
    pub height: u64,
}

/// The receipts of one committed batch as a worker hands them to the owner (sealed under
/// [`LABEL_RECEIPTS`]): each receipt is the borsh encoding of an `umbra_egress::Receipt`, each proof of an
/// `umbra_crypto::MerkleProof` against `root`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ReceiptBatchReply {
    /// The batch number.
    pub batch_seq: u64,
    /// Its root (as committed on chain).
    pub root: Hash,
    /// The encoded receipts.
    pub receipts: Vec<Vec<u8>>,
    /// The encoded inclusion proofs, one per receipt.
    pub proofs: Vec<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_aads_differ_by_contract_name_and_epoch() {
        let a = secret_aad("c", &[1; 32], "KEY", 1);
        assert_ne!(a, secret_aad("c", &[2; 32], "KEY", 1));
        assert_ne!(a, secret_aad("c", &[1; 32], "KEY2", 1));
        assert_ne!(a, secret_aad("c", &[1; 32], "KEY", 2));
        assert_ne!(a, secret_aad("d", &[1; 32], "KEY", 1));
    }

    #[test]
    fn a_logs_request_speaks_for_its_owner_or_for_a_multisig_it_is_a_member_of_and_nothing_else() {
        let (a, b, c, outsider) = (Address([1; 32]), Address([2; 32]), Address([3; 32]), Address([9; 32]));
        let multisig = crate::multisig::multisig_address(&[a, b, c], 2);
        let req =
            |owner, member_of| LogsRequest { reply_to: [0; 32], nonce: [0; 16], owner, signature: [0; 64], member_of };
        let named = || Some(MultisigMembers { members: vec![c, a, b], threshold: 2 });
        assert!(req(a, None).speaks_for(&a));
        assert!(!req(a, None).speaks_for(&multisig), "a member must name the multisig");
        assert!(req(b, named()).speaks_for(&multisig));
        assert!(!req(outsider, named()).speaks_for(&multisig), "not a member");
        let other_threshold = Some(MultisigMembers { members: vec![a, b, c], threshold: 1 });
        assert!(!req(a, other_threshold).speaks_for(&multisig), "another multisig's address");
        let lone = Some(MultisigMembers { members: vec![a], threshold: 1 });
        assert!(!req(a, lone).speaks_for(&crate::multisig::multisig_address(&[a], 1)), "not a valid multisig");
        assert!(!req(a, named()).speaks_for(&crate::governance::governance_owner()), "governance has no reader");
    }

    #[test]
    fn policy_validation_refuses_silly_limits_and_names_are_checked() {
        assert!(AgentPolicy::default().validate().is_ok());
        assert!(AgentPolicy { max_concurrency: 0, ..AgentPolicy::default() }.validate().is_err());
        assert!(AgentPolicy { egress_allow: vec!["a/b".into()], ..AgentPolicy::default() }.validate().is_err());
        assert!(valid_secret_name("OPENAI_API_KEY") && !valid_secret_name("1X") && !valid_secret_name("a-b"));
        let p = AgentPolicy { callers: vec![Address([1; 32])], ..AgentPolicy::default() };
        assert!(p.allows_caller(Some(&Address([1; 32]))) && !p.allows_caller(None));
        assert!(AgentPolicy::default().allows_caller(None));
    }
}
