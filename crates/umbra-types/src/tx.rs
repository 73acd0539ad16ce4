use crate::contracts::{CodeKind, ContractId};
use crate::economics::{PoolId, VaultId};
use crate::governance::{GovCall, ProposalId, VoteChoice};
use crate::registry::{AdminCall, ClusterId, KeyEpoch, SignedEgress, WorkerId, X25519Public};
use crate::{Address, Amount, Hash, ValidatorKey, encode, sha256};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Domain tag prepended to every transaction's bytes before signing, so a transaction signature can
/// never be replayed as a signature over anything else.
pub const TX_DOMAIN: &[u8] = b"umbra/tx/v1";

/// What a transaction asks the chain to do. New calls are appended; existing variants never change
/// their position, since the index is part of the signed encoding.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // equivocation evidence carries two messages; calls are short-lived
pub enum Call {
    /// Move `amount` from the signer to `to`.
    Transfer {
        /// Recipient.
        to: Address,
        /// Amount in the smallest unit.
        #[serde(with = "crate::genesis::amount_str")]
        amount: Amount,
    },
    /// Bond `amount` of the signer's tokens to its own candidate `validator_key`. If no candidate
    /// has that key yet, this registers one owned by the signer, provided `amount` is at least
    /// `params.staking.min_self_bond`; later bonds by the owner add to its self-bond.
    Bond {
        /// The candidate's consensus key (separate from the owner's account key).
        #[serde(with = "crate::block::hex32")]
        validator_key: ValidatorKey,
        /// Amount in the smallest unit.
        #[serde(with = "crate::genesis::amount_str")]
        amount: Amount,
    },
    /// Bond `amount` of the signer's tokens toward someone else's candidate.
    Nominate {
        /// The candidate's consensus key.
        #[serde(with = "crate::block::hex32")]
        validator_key: ValidatorKey,
        /// Amount in the smallest unit.
        #[serde(with = "crate::genesis::amount_str")]
        amount: Amount,
    },
    /// Start unbonding `amount` of the signer's stake toward `validator_key` (self-bond or
    /// nomination); it can be withdrawn `params.staking.unbonding_period` blocks later.
    Unbond {
        /// The candidate's consensus key.
        #[serde(with = "crate::block::hex32")]
        validator_key: ValidatorKey,
        /// Amount in the smallest unit.
        #[serde(with = "crate::genesis::amount_str")]
        amount: Amount,
    },
    /// Return every matured unbonding entry of the signer to its balance.
    WithdrawUnbonded,
    /// Report an equivocation: `evidence` is the canonical encoding of an [`crate::Evidence`].
    /// Anyone may submit it.
    SubmitEvidence {
        /// `encode(&Evidence)`.
        #[serde(with = "crate::staking::hex_bytes")]
        evidence: Vec<u8>,
    },
    /// Register (or re-register) a TEE worker operated by the signer: `quote` must verify under the
    /// chain's attestation policy and its report data must bind `identity`, `x25519`, the chain and the
    /// signer (see `umbra_tee::report_data`).
    RegisterWorker {
        /// The worker's ed25519 identity key (its id).
        #[serde(with = "crate::block::hex32")]
        identity: WorkerId,
        /// The worker's HPKE (X25519) key.
        #[serde(with = "crate::block::hex32")]
        x25519: X25519Public,
        /// The attestation quote.
        #[serde(with = "crate::staking::hex_bytes")]
        quote: Vec<u8>,
    },
    /// Store Intel collateral (JSON) on chain; anyone may submit a newer signed copy.
    UpdateCollateral {
        /// The collateral JSON bytes.
        #[serde(with = "crate::staking::hex_bytes")]
        collateral: Vec<u8>,
    },
    /// Carry a signed worker-to-chain message; any account may.
    Egress {
        /// The message.
        message: SignedEgress,
    },
    /// An administrative call of the registry, allowed only from the dev chain's `registry.sudo`;
    /// on other chains the same calls are made by passed governance proposals.
    Admin {
        /// The call.
        call: AdminCall,
    },
    /// Submit a governance proposal, locking `deposit` (at least `params.governance.min_deposit`)
    /// until its tally.
    Propose {
        /// What it does if passed, in order (at least one call).
        calls: Vec<GovCall>,
        /// The deposit, in the smallest unit.
        #[serde(with = "crate::genesis::amount_str")]
        deposit: Amount,
        /// A description for voters.
        #[serde(default)]
        description: String,
    },
    /// Vote on an open proposal, or replace one's earlier vote on it.
    Vote {
        /// The proposal.
        proposal: ProposalId,
        /// Aye, nay or abstain.
        choice: VoteChoice,
        /// Tokens locked for the vote (free balance and bonded stake together).
        #[serde(with = "crate::genesis::amount_str")]
        amount: Amount,
        /// 0 (0.1x, no lock) to 6 (6x); see [`crate::governance`].
        #[serde(default)]
        conviction: u8,
        /// Mark the proposal as spam (see the spam rule in [`crate::governance`]).
        #[serde(default)]
        spam: bool,
    },
    /// Let `to` vote with `amount` of the signer's tokens on every proposal the signer does not
    /// vote on itself.
    Delegate {
        /// The delegate.
        to: Address,
        /// Tokens delegated (locked while the delegation stands).
        #[serde(with = "crate::genesis::amount_str")]
        amount: Amount,
        /// Conviction, as for a vote.
        #[serde(default)]
        conviction: u8,
    },
    /// End the signer's delegation; its tokens stay locked for the conviction's period.
    Undelegate,
    /// Release the signer's voting tokens whose locks have ended.
    UnlockVotes,
    /// A technical committee member's approval to fast-track a security proposal.
    FastTrack {
        /// The proposal.
        proposal: ProposalId,
    },
    /// Create a stake pool owned by the signer.
    CreatePool {
        /// The owner's cut of the pool's rewards, in basis points.
        commission_bps: u16,
        /// The most value contributions may bring the pool to (none: no cap).
        #[serde(default, with = "crate::economics::opt_amount")]
        cap: Option<Amount>,
        /// Accounts allowed to contribute (none: anyone).
        #[serde(default)]
        allow: Option<Vec<Address>>,
    },
    /// Add a registered worker the signer operates to the signer's pool.
    PoolAddWorker {
        /// The pool.
        pool: PoolId,
        /// The worker.
        #[serde(with = "crate::block::hex32")]
        worker: WorkerId,
    },
    /// Contribute tokens to a pool for shares at the current share price.
    PoolContribute {
        /// The pool.
        pool: PoolId,
        /// Tokens, in the smallest unit.
        #[serde(with = "crate::genesis::amount_str")]
        amount: Amount,
    },
    /// Withdraw shares of a pool: paid now from free stake, or queued until stake frees.
    PoolWithdraw {
        /// The pool.
        pool: PoolId,
        /// Shares.
        #[serde(with = "crate::genesis::amount_str")]
        shares: u128,
    },
    /// The pool owner starts one of its workers computing with `stake` of the pool's free tokens.
    StartComputing {
        /// The worker.
        #[serde(with = "crate::block::hex32")]
        worker: WorkerId,
        /// The stake.
        #[serde(with = "crate::genesis::amount_str")]
        stake: Amount,
    },
    /// The pool owner stops a worker; its stake returns to the pool after the cool-down.
    StopComputing {
        /// The worker.
        #[serde(with = "crate::block::hex32")]
        worker: WorkerId,
    },
    /// Create a vault (a pool of pools) owned by the signer.
    CreateVault {
        /// Allocate free tokens automatically each vault period.
        auto: bool,
    },
    /// Contribute tokens to a vault for shares.
    VaultContribute {
        /// The vault.
        vault: VaultId,
        /// Tokens.
        #[serde(with = "crate::genesis::amount_str")]
        amount: Amount,
    },
    /// Withdraw shares of a vault; what its free tokens cannot pay is withdrawn from its pools.
    VaultWithdraw {
        /// The vault.
        vault: VaultId,
        /// Shares.
        #[serde(with = "crate::genesis::amount_str")]
        shares: u128,
    },
    /// The vault owner puts `amount` of the vault's free tokens into a pool.
    VaultAllocate {
        /// The vault.
        vault: VaultId,
        /// The pool.
        pool: PoolId,
        /// Tokens.
        #[serde(with = "crate::genesis::amount_str")]
        amount: Amount,
    },
    /// The vault owner withdraws `shares` of a pool back into the vault.
    VaultDeallocate {
        /// The vault.
        vault: VaultId,
        /// The pool.
        pool: PoolId,
        /// Pool shares.
        #[serde(with = "crate::genesis::amount_str")]
        shares: u128,
    },
    /// Evidence that a worker signed two different egress messages with the same sequence number;
    /// anyone may submit it. Wrong evidence fails (the fee is still paid).
    ReportEquivocation {
        /// One signed message.
        first: SignedEgress,
        /// A conflicting one (same origin and sequence, other content).
        second: SignedEgress,
    },
    /// Store contract code (at most `params.contracts.max_code_bytes`) under its hash
    /// ([`crate::contracts::code_hash`]); uploading stored code again changes nothing.
    UploadCode {
        /// The language.
        kind: CodeKind,
        /// The code.
        #[serde(with = "crate::staking::hex_bytes")]
        code: Vec<u8>,
    },
    /// Instantiate stored code on a cluster: the id is [`crate::contracts::contract_id`] of the signer, the
    /// code hash, `salt` and `cluster`; the cluster's workers learn it and publish its keys.
    Instantiate {
        /// The code.
        code_hash: Hash,
        /// The cluster that runs it.
        cluster: ClusterId,
        /// Chosen by the deployer to make distinct instances of the same code.
        #[serde(default, with = "crate::staking::hex_bytes")]
        salt: Vec<u8>,
        /// Arguments of the contract's `init` method (public; run only if not empty).
        #[serde(default, with = "crate::staking::hex_bytes")]
        args: Vec<u8>,
    },
    /// A command to a contract: `sealed` is an HPKE envelope of a [`crate::contracts::CommandPlain`] to the
    /// contract's X25519 key of `key_epoch`. `gas_limit * gas price` is held until the cluster reports.
    ContractCommand {
        /// The contract.
        #[serde(with = "crate::block::hex32")]
        contract: ContractId,
        /// The key epoch the envelope is sealed to.
        key_epoch: KeyEpoch,
        /// The most gas the command may use.
        gas_limit: u64,
        /// The envelope.
        #[serde(with = "crate::staking::hex_bytes")]
        sealed: Vec<u8>,
    },
    /// Deploy an agent: store the JavaScript `code` (as `UploadCode`), instantiate it on `cluster` (as
    /// `Instantiate`, no init arguments) and record the signer as its owner with `policy`.
    DeployAgent {
        /// The agent's code (an ES module exporting a default object with `fetch`).
        #[serde(with = "crate::staking::hex_bytes")]
        code: Vec<u8>,
        /// The cluster that runs it.
        cluster: ClusterId,
        /// Makes distinct agents of the same code.
        #[serde(default, with = "crate::staking::hex_bytes")]
        salt: Vec<u8>,
        /// What the owner allows.
        policy: crate::agents::AgentPolicy,
    },
    /// Owner only: run new code for the agent (storage kept); the version is recorded.
    UpgradeAgent {
        /// The agent.
        #[serde(with = "crate::block::hex32")]
        agent: ContractId,
        /// The new code.
        #[serde(with = "crate::staking::hex_bytes")]
        code: Vec<u8>,
    },
    /// Owner only: the gateway refuses requests until `ResumeAgent`.
    PauseAgent {
        /// The agent.
        #[serde(with = "crate::block::hex32")]
        agent: ContractId,
    },
    /// Owner only: undo `PauseAgent`.
    ResumeAgent {
        /// The agent.
        #[serde(with = "crate::block::hex32")]
        agent: ContractId,
    },
    /// Owner only: replace the agent's policy.
    SetAgentPolicy {
        /// The agent.
        #[serde(with = "crate::block::hex32")]
        agent: ContractId,
        /// The new policy.
        policy: crate::agents::AgentPolicy,
    },
    /// Owner only: set (or rotate) a secret sealed to the agent's contract key of `key_epoch`
    /// ([`crate::agents::secret_aad`]).
    SetAgentSecret {
        /// The agent.
        #[serde(with = "crate::block::hex32")]
        agent: ContractId,
        /// The secret's name.
        name: String,
        /// The key epoch it is sealed to.
        key_epoch: KeyEpoch,
        /// The envelope.
        #[serde(with = "crate::staking::hex_bytes")]
        sealed: Vec<u8>,
    },
    /// Owner only: remove a secret.
    RemoveAgentSecret {
        /// The agent.
        #[serde(with = "crate::block::hex32")]
        agent: ContractId,
        /// The secret's name.
        name: String,
    },
    /// Owner only: hand the agent to another account.
    TransferAgentOwnership {
        /// The agent.
        #[serde(with = "crate::block::hex32")]
        agent: ContractId,
        /// The new owner.
        new_owner: Address,
    },
    /// Stake tokens to a contract's cluster on behalf of the contract (stake-to-compute): the cluster's
    /// workers weight the contract's queries by its stake. Held until unstaked.
    StakeCompute {
        /// The contract.
        #[serde(with = "crate::block::hex32")]
        contract: ContractId,
        /// Tokens.
        #[serde(with = "crate::genesis::amount_str")]
        amount: Amount,
    },
    /// Take back compute stake the signer put on a contract; paid back after
    /// `params.economics.compute_unstake_blocks`.
    UnstakeCompute {
        /// The contract.
        #[serde(with = "crate::block::hex32")]
        contract: ContractId,
        /// Tokens.
        #[serde(with = "crate::genesis::amount_str")]
        amount: Amount,
    },
    /// Remove a worker without a session from its pool, freeing its slot (pool owner; anyone for a
    /// worker that was slashed or whose registration was revoked or expired).
    PoolReclaim {
        /// The pool.
        pool: PoolId,
        /// The worker.
        #[serde(with = "crate::block::hex32")]
        worker: WorkerId,
    },
    /// Switch a vault between manual and automatic allocation (vault owner).
    VaultSetMode {
        /// The vault.
        vault: VaultId,
        /// Automatic allocation.
        auto: bool,
    },
    /// Evidence that a worker's contract state root disagrees with the cluster majority: the worker's
    /// own signed `ContractIncident` egress; anyone may submit it. Wrong evidence fails (fee paid).
    ReportStateRootDisagreement {
        /// The worker's signed incident.
        message: SignedEgress,
    },
    /// A member proposes `call` to run as the multisig of `members` and `threshold`
    /// ([`crate::multisig::multisig_address`]); the proposal is the signer's approval. At the threshold the call
    /// runs at once with the multisig as its signer (see [`crate::multisig`]); otherwise it waits as a pending
    /// operation numbered by the multisig's counter, for at most `expires_in` blocks.
    MultisigPropose {
        /// The members (any order; duplicates ignored).
        members: Vec<Address>,
        /// Approvals needed.
        threshold: u16,
        /// What to run as the multisig (not a multisig call, not an egress message).
        #[borsh(deserialize_with = "crate::codec::nested_call")]
        call: Box<Call>,
        /// Blocks the operation stays approvable (1 to [`crate::multisig::MAX_OP_LIFETIME`]).
        expires_in: u64,
    },
    /// A member approves a pending operation; the approval that reaches the threshold runs its call as the
    /// multisig in this transaction (if the call fails, so does this approval, and the operation stays pending).
    MultisigApprove {
        /// The multisig's address.
        multisig: Address,
        /// The operation's number.
        op: u64,
    },
    /// Drop a pending operation: its proposer at any time, any member once it expired.
    MultisigCancel {
        /// The multisig's address.
        multisig: Address,
        /// The operation's number.
        op: u64,
    },
}

impl Call {
    /// A short, stable name for fee schedules, logs and receipts.
    pub fn kind(&self) -> &'static str {
        match self {
            Call::Transfer { .. } => "transfer",
            Call::Bond { .. } => "bond",
            Call::Nominate { .. } => "nominate",
            Call::Unbond { .. } => "unbond",
            Call::WithdrawUnbonded => "withdraw_unbonded",
            Call::SubmitEvidence { .. } => "submit_evidence",
            Call::RegisterWorker { .. } => "register_worker",
            Call::UpdateCollateral { .. } => "update_collateral",
            Call::Egress { .. } => "egress",
            Call::Admin { .. } => "admin",
            Call::Propose { .. } => "propose",
            Call::Vote { .. } => "vote",
            Call::Delegate { .. } => "delegate",
            Call::Undelegate => "undelegate",
            Call::UnlockVotes => "unlock_votes",
            Call::FastTrack { .. } => "fast_track",
            Call::CreatePool { .. } => "create_pool",
            Call::PoolAddWorker { .. } => "pool_add_worker",
            Call::PoolContribute { .. } => "pool_contribute",
            Call::PoolWithdraw { .. } => "pool_withdraw",
            Call::StartComputing { .. } => "start_computing",
            Call::StopComputing { .. } => "stop_computing",
            Call::CreateVault { .. } => "create_vault",
            Call::VaultContribute { .. } => "vault_contribute",
            Call::VaultWithdraw { .. } => "vault_withdraw",
            Call::VaultAllocate { .. } => "vault_allocate",
            Call::VaultDeallocate { .. } => "vault_deallocate",
            Call::ReportEquivocation { .. } => "report_equivocation",
            Call::UploadCode { .. } => "upload_code",
            Call::Instantiate { .. } => "instantiate",
            Call::ContractCommand { .. } => "contract_command",
            Call::DeployAgent { .. } => "deploy_agent",
            Call::UpgradeAgent { .. } => "upgrade_agent",
            Call::PauseAgent { .. } => "pause_agent",
            Call::ResumeAgent { .. } => "resume_agent",
            Call::SetAgentPolicy { .. } => "set_agent_policy",
            Call::SetAgentSecret { .. } => "set_agent_secret",
            Call::RemoveAgentSecret { .. } => "remove_agent_secret",
            Call::TransferAgentOwnership { .. } => "transfer_agent_ownership",
            Call::StakeCompute { .. } => "stake_compute",
            Call::UnstakeCompute { .. } => "unstake_compute",
            Call::PoolReclaim { .. } => "pool_reclaim",
            Call::VaultSetMode { .. } => "vault_set_mode",
            Call::ReportStateRootDisagreement { .. } => "report_state_root_disagreement",
            Call::MultisigPropose { .. } => "multisig_propose",
            Call::MultisigApprove { .. } => "multisig_approve",
            Call::MultisigCancel { .. } => "multisig_cancel",
        }
    }
}

/// The signed part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Transaction {
    /// The paying and authorizing account.
    pub signer: Address,
    /// The signer's next nonce: 0 for its first transaction, then one more each time.
    pub nonce: u64,
    /// Must equal the chain's id, so a transaction for one chain is void on another.
    pub chain_id: String,
    /// The fee the signer pays, in the smallest unit. It must cover the chain's minimum for this
    /// transaction's size and call; a higher fee buys priority in the mempool.
    #[serde(with = "crate::genesis::amount_str")]
    pub fee: Amount,
    /// What to do.
    pub call: Call,
}

impl Transaction {
    /// The exact bytes the signer signs: the domain tag followed by the canonical encoding.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = TX_DOMAIN.to_vec();
        out.extend_from_slice(&encode(self));
        out
    }
}

/// A transaction with its ed25519 signature by `tx.signer`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedTransaction {
    /// The signed content.
    pub tx: Transaction,
    /// ed25519 signature over [`Transaction::signing_bytes`].
    #[serde(with = "hex64")]
    pub signature: [u8; 64],
}

impl SignedTransaction {
    /// The transaction's id: SHA-256 of its canonical encoding, signature included.
    pub fn hash(&self) -> Hash {
        sha256(&[&encode(self)])
    }

    /// The canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }
}

pub(crate) mod hex64 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(crate) fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let s = String::deserialize(d)?;
        let b = hex::decode(s.trim_start_matches("0x")).map_err(serde::de::Error::custom)?;
        b.try_into().map_err(|_| serde::de::Error::custom("a signature is 64 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;
    use proptest::prelude::*;

    fn sample() -> SignedTransaction {
        SignedTransaction {
            tx: Transaction {
                signer: Address([1; 32]),
                nonce: 3,
                chain_id: "umbra-dev".into(),
                fee: 1000,
                call: Call::Transfer { to: Address([2; 32]), amount: 5 },
            },
            signature: [9; 64],
        }
    }

    #[test]
    fn a_transaction_round_trips_through_the_codec_and_json() {
        let t = sample();
        assert_eq!(decode::<SignedTransaction>(&t.to_bytes(), 1 << 16), Ok(t.clone()));
        let json = serde_json::to_string(&t).expect("serializes");
        assert_eq!(serde_json::from_str::<SignedTransaction>(&json).expect("parses"), t);
    }

    #[test]
    fn signing_bytes_start_with_the_domain_tag() {
        assert!(sample().tx.signing_bytes().starts_with(TX_DOMAIN));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut b = sample().to_bytes();
        b.push(0);
        assert!(decode::<SignedTransaction>(&b, 1 << 16).is_err());
    }

    #[test]
    fn staking_calls_round_trip_and_the_transfer_encoding_is_unchanged() {
        // Appending variants must not move `Transfer`: its tag byte stays 0.
        let t = Call::Transfer { to: Address([2; 32]), amount: 5 };
        assert_eq!(encode(&t)[0], 0);
        let calls = [
            Call::Bond { validator_key: [7; 32], amount: 1 },
            Call::Nominate { validator_key: [7; 32], amount: u128::MAX },
            Call::Unbond { validator_key: [7; 32], amount: 0 },
            Call::WithdrawUnbonded,
            Call::SubmitEvidence { evidence: vec![1, 2, 3] },
        ];
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(encode(&c)[0] as usize, i + 1, "{} keeps its position", c.kind());
            assert_eq!(decode::<Call>(&encode(&c), 1 << 16), Ok(c.clone()));
            let json = serde_json::to_string(&c).expect("serializes");
            assert!(json.contains(c.kind()), "{json}");
            assert_eq!(serde_json::from_str::<Call>(&json).expect("parses"), c);
        }
    }

    #[test]
    fn governance_calls_are_appended_and_round_trip() {
        use crate::governance::{GovCall, VoteChoice};
        let admin = Call::Admin { call: crate::AdminCall::StartRotation };
        assert_eq!(encode(&admin)[0], 9, "admin keeps its position");
        let calls = [
            Call::Propose { calls: vec![GovCall::Signal { text: "hi".into() }], deposit: 5, description: "d".into() },
            Call::Vote { proposal: 3, choice: VoteChoice::Abstain, amount: 1, conviction: 6, spam: true },
            Call::Delegate { to: Address([3; 32]), amount: 2, conviction: 0 },
            Call::Undelegate,
            Call::UnlockVotes,
            Call::FastTrack { proposal: 1 },
        ];
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(encode(&c)[0] as usize, i + 10, "{} is appended", c.kind());
            assert_eq!(decode::<Call>(&encode(&c), 1 << 16), Ok(c.clone()));
            let json = serde_json::to_string(&c).expect("serializes");
            assert_eq!(serde_json::from_str::<Call>(&json).expect("parses"), c);
        }
    }

    #[test]
    fn multisig_calls_are_appended_and_deeply_nested_calls_are_refused_by_the_decoder() {
        let inner = Call::PauseAgent { agent: [4; 32] };
        let propose = Call::MultisigPropose {
            members: vec![Address([1; 32]), Address([2; 32])],
            threshold: 2,
            call: Box::new(inner),
            expires_in: 10,
        };
        assert_eq!(encode(&propose)[0], 44, "multisig_propose follows report_state_root_disagreement");
        assert_eq!(decode::<Call>(&encode(&propose), 1 << 16), Ok(propose.clone()));
        let json = serde_json::to_string(&propose).expect("serializes");
        assert_eq!(serde_json::from_str::<Call>(&json).expect("parses"), propose);
        // Three levels decode; a fourth is refused (without recursing further).
        let mut deep = propose.clone();
        for _ in 0..2 {
            deep = Call::MultisigPropose { members: vec![], threshold: 1, call: Box::new(deep), expires_in: 1 };
        }
        assert_eq!(decode::<Call>(&encode(&deep), 1 << 16), Ok(deep.clone()));
        let deeper = Call::MultisigPropose { members: vec![], threshold: 1, call: Box::new(deep), expires_in: 1 };
        assert!(decode::<Call>(&encode(&deeper), 1 << 16).is_err());
        // A long chain of nested proposals is refused too, not a stack overflow.
        let mut bytes = Vec::new();
        for _ in 0..100_000 {
            bytes.extend_from_slice(&[44, 0, 0, 0, 0, 1, 0]);
        }
        assert!(decode::<Call>(&bytes, 1 << 20).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<SignedTransaction>(&bytes, 1 << 16);
        }
    }
}
