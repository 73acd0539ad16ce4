//! On-chain governance and the treasury: proposals, votes with conviction, delegation, and what the
//! chain records about them.
//!
//! # Conviction
//! A vote (or a delegation) locks `amount` tokens; its weight is `amount` times the conviction's
//! multiplier, counted in tenths so the arithmetic stays integer:
//!
//! | conviction | weight (tenths) | lock after the voting period ends |
//! |---|---|---|
//! | 0 | 1 (0.1x) | none (only while the vote is open) |
//! | 1 | 10 (1x) | 1 x enactment delay |
//! | 2 | 20 (2x) | 2 x enactment delay |
//! | 3 | 30 (3x) | 4 x enactment delay |
//! | 4 | 40 (4x) | 8 x enactment delay |
//! | 5 | 50 (5x) | 16 x enactment delay |
//! | 6 | 60 (6x) | 32 x enactment delay |
//!
//! # Tally
//! A proposal passes when `ayes * 10_000 > threshold_bps * (ayes + nays)` (weighted; `threshold_bps` is
//! 5,000 on the normal track, so more than half) and its turnout (tokens, not weight, abstentions
//! included) is at least `quorum_bps` of the tokens issued. A proposal that fails and whose
//! spam-flagged weight is at least `spam_threshold_bps` of all weight cast loses its deposit (burned).

use crate::registry::AdminCall;
use crate::{Address, Amount, Params, TxError};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// A proposal's number, counting from 0.
pub type ProposalId = u64;

/// The highest conviction.
pub const MAX_CONVICTION: u8 = 6;

/// A conviction's weight in tenths (0.1x for 0, `c`x for `c` in 1..=6); `None` above
/// [`MAX_CONVICTION`].
pub fn conviction_weight_tenths(conviction: u8) -> Option<Amount> {
    match conviction {
        0 => Some(1),
        c if c <= MAX_CONVICTION => Some(Amount::from(c) * 10),
        _ => None,
    }
}

/// How many enactment delays a conviction locks the tokens for after the voting period
/// (0, then 1, 2, 4 ... 32); `None` above [`MAX_CONVICTION`].
pub fn conviction_lock_periods(conviction: u8) -> Option<u64> {
    match conviction {
        0 => Some(0),
        c if c <= MAX_CONVICTION => Some(1u64 << (c - 1)),
        _ => None,
    }
}

/// What a passed proposal does, one call at a time.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GovCall {
    /// A registry administrative call (policy, measurements, gatekeepers, master key, clusters).
    Admin {
        /// The call.
        call: AdminCall,
    },
    /// Replace every chain parameter at once (validated like genesis; `epoch_length` cannot change).
    SetParams {
        /// The new parameters.
        params: Box<Params>,
    },
    /// Pay `amount` from the treasury to `to`.
    TreasurySpend {
        /// The recipient.
        to: Address,
        /// Amount in the smallest unit.
        #[serde(with = "crate::genesis::amount_str")]
        amount: Amount,
    },
    /// A text the chain records and does nothing with.
    Signal {
        /// The text.
        text: String,
    },
    /// An owner-only agent call (`upgrade_agent`, `pause_agent`, `resume_agent`, `set_agent_policy`,
    /// `set_agent_secret`, `remove_agent_secret`, `transfer_agent_ownership`) run with the governance owner
    /// ([`governance_owner`]) as its signer: it succeeds only for an agent that governance owns.
    AgentControl {
        /// The agent call.
        #[borsh(deserialize_with = "crate::codec::nested_call")]
        call: Box<crate::Call>,
    },
}

/// Domain tag of the governance owner's address.
pub const GOVERNANCE_OWNER_DOMAIN: &[u8] = b"umbra/owner/governance/v1";

/// The well-known address that stands for "governance" as an owner: `SHA-256(GOVERNANCE_OWNER_DOMAIN)`. No
/// key exists for it, so no account can sign as it; an owner hands an agent to governance by transferring it
/// here, and from then on only an enacted proposal's [`GovCall::AgentControl`] changes the agent.
pub fn governance_owner() -> Address {
    Address(crate::sha256(&[GOVERNANCE_OWNER_DOMAIN]).0)
}

/// Whether `call` is an owner-only agent call (what [`GovCall::AgentControl`] may carry).
pub fn is_agent_owner_call(call: &crate::Call) -> bool {
    use crate::Call;
    matches!(
        call,
        Call::UpgradeAgent { .. }
            | Call::PauseAgent { .. }
            | Call::ResumeAgent { .. }
            | Call::SetAgentPolicy { .. }
            | Call::SetAgentSecret { .. }
            | Call::RemoveAgentSecret { .. }
            | Call::TransferAgentOwnership { .. }
    )
}

impl GovCall {
    /// A short, stable name for logs and output.
    pub fn kind(&self) -> &'static str {
        match self {
            GovCall::Admin { call } => call.kind(),
            GovCall::SetParams { .. } => "set_params",
            GovCall::TreasurySpend { .. } => "treasury_spend",
            GovCall::Signal { .. } => "signal",
            GovCall::AgentControl { .. } => "agent_control",
        }
    }

    /// Whether the technical committee may fast-track it: withdrawing a measurement, replacing the
    /// attestation policy, removing a gatekeeper, pausing or resuming a cluster, pausing a governance-owned
    /// agent. Never a treasury spend.
    pub fn is_security(&self) -> bool {
        match self {
            GovCall::Admin { call } => matches!(
                call,
                AdminCall::WithdrawMeasurement { .. }
                    | AdminCall::SetPolicy { .. }
                    | AdminCall::RemoveGatekeeper { .. }
                    | AdminCall::PauseCluster { .. }
            ),
            GovCall::AgentControl { call } => matches!(**call, crate::Call::PauseAgent { .. }),
            _ => false,
        }
    }
}

/// How a vote counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteChoice {
    /// In favour.
    Aye,
    /// Against.
    Nay,
    /// Counts for turnout only.
    Abstain,
}

/// Governance parameters (in [`Params`], so governance can change them).
///
/// Defaults: a deposit of 100 UMB, 600 blocks of preparation, 6,000 of voting, 600 of enactment
/// delay, a quorum of 10% of the issued tokens, more than 50% ayes to pass, two thirds spam weight to
/// burn a deposit, and on the emergency track 300 blocks of voting, two thirds ayes and no delay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GovernanceParams {
    /// The smallest deposit a proposal may carry.
    #[serde(with = "crate::genesis::amount_str")]
    pub min_deposit: Amount,
    /// Blocks after submission before votes are accepted (time to review).
    pub preparation_period: u64,
    /// Blocks votes are accepted for, after the preparation period.
    pub voting_period: u64,
    /// Blocks between the end of voting and the enactment of a passed proposal; also the unit of
    /// conviction locks.
    pub enactment_delay: u64,
    /// Turnout needed, in basis points of the tokens issued.
    pub quorum_bps: u16,
    /// Ayes needed, in basis points of ayes plus nays (strictly more than this).
    pub pass_threshold_bps: u16,
    /// Spam-flagged weight, in basis points of all weight cast, that burns a failed proposal's
    /// deposit.
    pub spam_threshold_bps: u16,
    /// The longest voting period of a fast-tracked proposal (from the fast-track on).
    pub emergency_voting_period: u64,
    /// Ayes needed on the emergency track, in basis points of ayes plus nays (strictly more).
    pub emergency_threshold_bps: u16,
    /// The enactment delay of a fast-tracked proposal.
    pub emergency_enactment_delay: u64,
    /// Most calls in one proposal.
    pub max_calls: u32,
    /// Longest description or signal text, in bytes.
    pub max_text_bytes: u32,
    /// Most proposals open or waiting for enactment at once.
    pub max_active_proposals: u32,
}

impl Default for GovernanceParams {
    fn default() -> Self {
        GovernanceParams {
            min_deposit: 100 * crate::UNIT,
            preparation_period: 600,
            voting_period: 6_000,
            enactment_delay: 600,
            quorum_bps: 1_000,
            pass_threshold_bps: 5_000,
            spam_threshold_bps: 6_667,
            emergency_voting_period: 300,
            emergency_threshold_bps: 6_667,
            emergency_enactment_delay: 0,
            max_calls: 16,
            max_text_bytes: 4_096,
            max_active_proposals: 64,
        }
    }
}

impl GovernanceParams {
    /// Why these parameters are unusable, if they are.
    pub fn check(&self) -> Result<(), String> {
        if self.voting_period == 0 || self.emergency_voting_period == 0 {
            return Err("params.governance voting periods must be positive".into());
        }
        if self.emergency_voting_period > self.voting_period {
            return Err("params.governance.emergency_voting_period must not exceed voting_period".into());
        }
        if !(5_000..10_000).contains(&self.pass_threshold_bps) {
            return Err("params.governance.pass_threshold_bps must be in 5000..10000".into());
        }
        if !(self.pass_threshold_bps..10_000).contains(&self.emergency_threshold_bps) {
            return Err("params.governance.emergency_threshold_bps must be in pass_threshold_bps..10000".into());
        }
        if self.quorum_bps > 10_000 || !(5_001..=10_000).contains(&self.spam_threshold_bps) {
            return Err("params.governance.quorum_bps must be at most 10000, spam_threshold_bps in 5001..=10000".into());
        }
        if self.max_calls == 0 || self.max_active_proposals == 0 {
            return Err("params.governance.max_calls and max_active_proposals must be positive".into());
        }
        // Every lock ends at a representable height even on a long-lived chain.
        let longest = self
            .enactment_delay
            .checked_mul(1 << (MAX_CONVICTION - 1))
            .and_then(|l| l.checked_add(self.preparation_period))
            .and_then(|l| l.checked_add(self.voting_period));
        if longest.is_none_or(|l| l > u64::MAX / 4) {
            return Err("params.governance periods are too long".into());
        }
        Ok(())
    }
}

/// Governance at genesis: the technical committee.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GovernanceGenesis {
    /// Accounts that may fast-track security proposals (a strict majority of them must approve).
    pub technical_committee: Vec<Address>,
}

/// Where a proposal is in its life.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ProposalStatus {
    /// Preparing or voting (see the proposal's `voting_start` and `voting_end`).
    Open,
    /// Passed; enacted at the end of block `enact_at`.
    Passed {
        /// The enactment height.
        enact_at: u64,
    },
    /// Did not pass; the deposit was returned, or burned when `spam`.
    Rejected {
        /// Whether voters marked it spam (deposit burned).
        spam: bool,
    },
    /// Enacted at the end of block `at`; the results are in the proposal's `results`.
    Enacted {
        /// The enactment height.
        at: u64,
    },
}

/// The count of a proposal's votes.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Tally {
    /// Weight in favour (tenths of a token unit times conviction).
    #[serde(with = "crate::genesis::amount_str")]
    pub ayes: Amount,
    /// Weight against.
    #[serde(with = "crate::genesis::amount_str")]
    pub nays: Amount,
    /// Weight abstaining.
    #[serde(with = "crate::genesis::amount_str")]
    pub abstains: Amount,
    /// Weight of votes flagged spam (any choice).
    #[serde(with = "crate::genesis::amount_str")]
    pub spam: Amount,
    /// Tokens that voted (not weighted), abstentions included.
    #[serde(with = "crate::genesis::amount_str")]
    pub turnout: Amount,
}

impl Tally {
    /// Whether the ayes exceed `threshold_bps` of ayes plus nays and the turnout reaches
    /// `quorum_bps` of `issued`.
    pub fn passes(&self, threshold_bps: u16, quorum_bps: u16, issued: Amount) -> bool {
        let decided = self.ayes.saturating_add(self.nays);
        decided > 0
            && self.ayes.saturating_mul(10_000) > decided.saturating_mul(Amount::from(threshold_bps))
            && self.turnout.saturating_mul(10_000) >= issued.saturating_mul(Amount::from(quorum_bps))
    }

    /// Whether the spam-flagged weight reaches `spam_bps` of all weight cast.
    pub fn is_spam(&self, spam_bps: u16) -> bool {
        let cast = self.ayes.saturating_add(self.nays).saturating_add(self.abstains);
        cast > 0 && self.spam.saturating_mul(10_000) >= cast.saturating_mul(Amount::from(spam_bps))
    }
}

/// `governance`: a proposal.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Proposal {
    /// Its number.
    pub id: ProposalId,
    /// Who proposed it (and gets the deposit back).
    pub proposer: Address,
    /// The deposit held until the tally.
    #[serde(with = "crate::genesis::amount_str")]
    pub deposit: Amount,
    /// What it asks the proposer to be read as.
    pub description: String,
    /// What it does if passed, in order.
    pub calls: Vec<GovCall>,
    /// The block that included it.
    pub submitted_at: u64,
    /// The first block whose votes count.
    pub voting_start: u64,
    /// The last block whose votes count; the tally is final at its end.
    pub voting_end: u64,
    /// Blocks from `voting_end` to enactment.
    pub enactment_delay: u64,
    /// Ayes needed, in basis points of ayes plus nays (strictly more).
    pub threshold_bps: u16,
    /// Fast-tracked by the technical committee.
    pub emergency: bool,
    /// Committee members that approved a fast-track, ascending.
    pub fast_track_approvals: Vec<Address>,
    /// Where it is.
    pub status: ProposalStatus,
    /// The final tally, once voting ended.
    pub final_tally: Option<Tally>,
    /// One result per call once enacted: `None` for success, otherwise why it failed.
    pub results: Vec<Option<TxError>>,
}

/// `governance`: one account's vote on one proposal.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct VoteRecord {
    /// Aye, nay or abstain.
    pub choice: VoteChoice,
    /// Tokens locked for it.
    #[serde(with = "crate::genesis::amount_str")]
    pub amount: Amount,
    /// 0 to [`MAX_CONVICTION`].
    pub conviction: u8,
    /// Marks the proposal as spam.
    pub spam: bool,
}

/// `governance`: a lock on an account's voting tokens.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct VoteLock {
    /// The proposal voted on, or `None` for a delegation.
    pub proposal: Option<ProposalId>,
    /// Tokens locked.
    #[serde(with = "crate::genesis::amount_str")]
    pub amount: Amount,
    /// The first height at which `unlock_votes` releases it (`u64::MAX` while a delegation stands).
    pub until: u64,
}

/// `governance`: an account's delegation of its voting power.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Delegation {
    /// The account whose votes it follows.
    pub to: Address,
    /// Tokens delegated.
    #[serde(with = "crate::genesis::amount_str")]
    pub amount: Amount,
    /// Conviction, as for a vote.
    pub conviction: u8,
}

/// `governance`: an account's voting tokens. Locks overlap: the tokens held are the largest
/// unexpired lock, covered first by the account's bonded stake (which stays bonded) and for the
/// rest by tokens moved from its balance into escrow (the `governance` module account).
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct VoterRecord {
    /// Tokens this account has in escrow.
    #[serde(with = "crate::genesis::amount_str")]
    pub escrowed: Amount,
    /// Its locks, one per proposal voted on and one for a delegation.
    pub locks: Vec<VoteLock>,
    /// Its delegation, if any.
    pub delegation: Option<Delegation>,
}

impl VoterRecord {
    /// The largest lock still in force at `height`.
    pub fn locked_at(&self, height: u64) -> Amount {
        self.locks.iter().filter(|l| l.until > height).map(|l| l.amount).max().unwrap_or(0)
    }
}

/// `governance`: a treasury payment made by an enacted proposal.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SpendRecord {
    /// The proposal that paid it.
    pub proposal: ProposalId,
    /// The recipient.
    pub to: Address,
    /// Amount in the smallest unit.
    #[serde(with = "crate::genesis::amount_str")]
    pub amount: Amount,
    /// The block that paid it.
    pub height: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conviction_table_is_as_documented() {
        let w: Vec<_> = (0..=7).map(conviction_weight_tenths).collect();
        assert_eq!(w, [Some(1), Some(10), Some(20), Some(30), Some(40), Some(50), Some(60), None]);
        let l: Vec<_> = (0..=7).map(conviction_lock_periods).collect();
        assert_eq!(l, [Some(0), Some(1), Some(2), Some(4), Some(8), Some(16), Some(32), None]);
    }

    #[test]
    fn the_tally_rule_needs_a_strict_majority_and_the_quorum() {
        let t = Tally { ayes: 50, nays: 50, abstains: 0, spam: 0, turnout: 100 };
        assert!(!t.passes(5_000, 0, 1_000));
        let t = Tally { ayes: 51, ..t };
        assert!(t.passes(5_000, 1_000, 1_000));
        assert!(!t.passes(5_000, 1_001, 1_000));
        assert!(!Tally::default().passes(5_000, 0, 0));
    }

    #[test]
    fn only_pausing_a_governance_owned_agent_is_a_security_call_and_agent_control_round_trips() {
        let pause = GovCall::AgentControl { call: Box::new(crate::Call::PauseAgent { agent: [1; 32] }) };
        let resume = GovCall::AgentControl { call: Box::new(crate::Call::ResumeAgent { agent: [1; 32] }) };
        assert!(pause.is_security());
        assert!(!resume.is_security());
        assert!(is_agent_owner_call(&crate::Call::ResumeAgent { agent: [1; 32] }));
        assert!(!is_agent_owner_call(&crate::Call::Transfer { to: Address([1; 32]), amount: 1 }));
        assert_eq!(governance_owner(), governance_owner());
        assert_ne!(governance_owner(), Address::module("governance"), "not the escrow account");
        let json = serde_json::to_string(&pause).expect("serializes");
        assert!(json.contains("agent_control") && json.contains("pause_agent"), "{json}");
        assert_eq!(crate::decode::<GovCall>(&crate::encode(&pause), 1 << 10), Ok(pause));
    }

    #[test]
    fn default_parameters_are_usable() {
        assert_eq!(GovernanceParams::default().check(), Ok(()));
        let bad = GovernanceParams { pass_threshold_bps: 4_000, ..GovernanceParams::default() };
        assert!(bad.check().is_err());
    }
}
