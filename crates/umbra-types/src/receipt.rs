use crate::{Amount, Hash};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Why an included transaction's call failed. The fee is still paid and the nonce still advances.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum TxError {
    /// The signer's balance after the fee cannot cover the call.
    #[error("insufficient balance: needed {needed}, available {available}")]
    InsufficientBalance {
        /// What the call needed.
        #[serde(with = "crate::genesis::amount_str")]
        needed: Amount,
        /// What the signer had.
        #[serde(with = "crate::genesis::amount_str")]
        available: Amount,
    },
    /// An amount would overflow or exceed the maximum supply.
    #[error("arithmetic overflow")]
    Overflow,
    /// A transfer of zero tokens.
    #[error("amount must be greater than zero")]
    ZeroAmount,
    /// A transfer to oneself.
    #[error("sender and recipient are the same account")]
    SelfTransfer,
    /// A `bond` that would register a new candidate with less than the minimum self-bond.
    #[error("self-bond {amount} is below the minimum {min}")]
    BelowMinSelfBond {
        /// The self-bond offered.
        #[serde(with = "crate::genesis::amount_str")]
        amount: Amount,
        /// The chain's minimum.
        #[serde(with = "crate::genesis::amount_str")]
        min: Amount,
    },
    /// No candidate has the named validator key.
    #[error("no validator candidate has this key")]
    UnknownCandidate,
    /// A `bond` to a candidate owned by another account (nominate it instead).
    #[error("the candidate belongs to another account; use nominate")]
    NotCandidateOwner,
    /// A `nominate` of one's own candidate (bond to it instead).
    #[error("the candidate belongs to the signer; use bond")]
    SelfNomination,
    /// The candidate was slashed for equivocation and takes no new stake.
    #[error("the candidate was slashed and is permanently excluded")]
    CandidateJailed,
    /// An `unbond` of more than the signer has bonded toward the candidate.
    #[error("cannot unbond {requested}: only {bonded} is bonded")]
    UnbondExceedsBond {
        /// What the signer has bonded toward the candidate.
        #[serde(with = "crate::genesis::amount_str")]
        bonded: Amount,
        /// What it asked to unbond.
        #[serde(with = "crate::genesis::amount_str")]
        requested: Amount,
    },
    /// The candidate already has the most stakers the chain allows.
    #[error("the candidate already has the maximum of {max} stakers")]
    TooManyStakers {
        /// The limit.
        max: u32,
    },
    /// The signer already has the most pending unbondings toward this candidate.
    #[error("at most {max} pending unbondings per candidate")]
    TooManyUnbondingEntries {
        /// The limit.
        max: u32,
    },
    /// A `withdraw_unbonded` with no matured unbonding entry.
    #[error("no unbonded tokens are ready to withdraw")]
    NothingToWithdraw,
    /// The evidence does not decode or does not prove an equivocation.
    #[error("bad evidence: {reason}")]
    BadEvidence {
        /// Why.
        reason: String,
    },
    /// The evidence names an epoch with no committee on chain (a future epoch).
    #[error("no committee is known for epoch {epoch}")]
    EvidenceUnknownEpoch {
        /// The evidence's epoch.
        epoch: u64,
    },
    /// The evidence is older than the unbonding period allows: the stake it concerns may be gone.
    #[error("evidence about epoch {epoch} is too old")]
    EvidenceExpired {
        /// The evidence's epoch.
        epoch: u64,
    },
    /// The evidence's signer was not in the committee of its epoch.
    #[error("the offender was not in the committee of epoch {epoch}")]
    OffenderNotInCommittee {
        /// The evidence's epoch.
        epoch: u64,
    },
    /// This offence was already punished.
    #[error("the offence in epoch {epoch}, view {view} was already punished")]
    EvidenceReplay {
        /// Its epoch.
        epoch: u64,
        /// Its view.
        view: u64,
    },
    /// The attestation quote was refused (not genuine, or not acceptable under the chain's policy).
    #[error("attestation refused: {reason}")]
    AttestationRefused {
        /// Why, as the verifier or the policy put it.
        reason: String,
    },
    /// The quote's report data does not bind the submitted keys, this chain and the signer.
    #[error("the quote's report data does not bind these worker keys, this chain and the signing operator")]
    ReportDataMismatch,
    /// Collateral that does not parse or is not newer than what the chain holds.
    #[error("bad collateral: {reason}")]
    BadCollateral {
        /// Why.
        reason: String,
    },
    /// An administrative call from an account that may not make it.
    #[error("not authorized: {reason}")]
    NotAuthorized {
        /// Why.
        reason: String,
    },
    /// No registered worker has this id.
    #[error("unknown worker")]
    UnknownWorker,
    /// The worker is revoked or its attestation expired.
    #[error("worker is not active: {reason}")]
    WorkerInactive {
        /// Why.
        reason: String,
    },
    /// An egress message whose origin has no key on chain.
    #[error("egress origin has no key on chain")]
    UnknownOrigin,
    /// An egress message whose signature does not verify under its origin's key.
    #[error("egress signature does not verify under the origin's key")]
    BadEgressSignature,
    /// An egress message out of sequence (stale, duplicate or ahead).
    #[error("egress sequence {got} refused: the chain expects {expected}")]
    EgressSequence {
        /// The next sequence number the chain accepts from this origin.
        expected: u64,
        /// What the message carried.
        got: u64,
    },
    /// A key rotation is in progress; the call must wait for it to finish.
    #[error("a key rotation is in progress")]
    RotationInProgress,
    /// A registry call whose precondition does not hold (named in the reason).
    #[error("{reason}")]
    RegistryPrecondition {
        /// What does not hold.
        reason: String,
    },
    /// A proposal whose calls are malformed (empty, too many, invalid parameters, zero spend ...).
    #[error("malformed proposal: {reason}")]
    MalformedProposal {
        /// What is wrong.
        reason: String,
    },
    /// A proposal deposit below the chain's minimum.
    #[error("deposit {deposit} is below the minimum {min}")]
    DepositTooLow {
        /// The deposit offered.
        #[serde(with = "crate::genesis::amount_str")]
        deposit: Amount,
        /// The minimum.
        #[serde(with = "crate::genesis::amount_str")]
        min: Amount,
    },
    /// No proposal has this number.
    #[error("no proposal {id}")]
    UnknownProposal {
        /// The number asked for.
        id: u64,
    },
    /// A vote before the proposal's preparation period ended.
    #[error("voting opens at height {opens_at}")]
    VotingNotOpen {
        /// The first height votes count.
        opens_at: u64,
    },
    /// A vote after the proposal's voting period ended (or on a decided proposal).
    #[error("voting closed at height {closed_at}")]
    VotingClosed {
        /// The last height votes counted.
        closed_at: u64,
    },
    /// A vote or delegation of more than the signer's free balance plus bonded stake.
    #[error("cannot lock {needed} for voting: only {available} is available (free balance and bonded stake)")]
    InsufficientVotingBalance {
        /// The lock the call needs.
        #[serde(with = "crate::genesis::amount_str")]
        needed: Amount,
        /// What the signer has.
        #[serde(with = "crate::genesis::amount_str")]
        available: Amount,
    },
    /// A conviction above the highest.
    #[error("conviction {conviction} is above the maximum of 6")]
    BadConviction {
        /// The conviction asked for.
        conviction: u8,
    },
    /// A delegation that would lead back to the signer.
    #[error("delegation cycle: the delegate's delegation leads back to the signer")]
    DelegationCycle,
    /// A delegation the chain does not allow (chains of delegations, or delegating twice).
    #[error("delegation refused: {reason}")]
    BadDelegation {
        /// Why.
        reason: String,
    },
    /// An `undelegate` by an account that does not delegate.
    #[error("the signer does not delegate")]
    NotDelegating,
    /// An `unlock_votes` with no ended lock and nothing to release.
    #[error("no voting lock has ended")]
    NothingToUnlock,
    /// An `unbond` that would leave less stake than the signer's voting locks need.
    #[error("{locked} is locked for voting and not covered without this stake")]
    VoteLocked {
        /// The largest lock in force.
        #[serde(with = "crate::genesis::amount_str")]
        locked: Amount,
    },
    /// A fast-track the emergency track does not allow.
    #[error("cannot fast-track: {reason}")]
    NotFastTrackable {
        /// Why.
        reason: String,
    },
    /// Too many proposals are open or waiting for enactment.
    #[error("at most {max} proposals may be active")]
    TooManyProposals {
        /// The limit.
        max: u32,
    },
    /// An enacted governance call whose precondition no longer holds.
    #[error("{reason}")]
    GovernancePrecondition {
        /// What does not hold.
        reason: String,
    },
    /// No pool has this number.
    #[error("no pool {id}")]
    UnknownPool {
        /// The number asked for.
        id: u64,
    },
    /// No vault has this number.
    #[error("no vault {id}")]
    UnknownVault {
        /// The number asked for.
        id: u64,
    },
    /// An economics call whose precondition does not hold (named in the reason).
    #[error("{reason}")]
    EconomicsPrecondition {
        /// What does not hold.
        reason: String,
    },
    /// A withdrawal of more shares than the holder has free (not already queued).
    #[error("cannot withdraw {requested} shares: {available} available")]
    InsufficientShares {
        /// Shares held and not queued.
        #[serde(with = "crate::genesis::amount_str")]
        available: u128,
        /// Shares asked for.
        #[serde(with = "crate::genesis::amount_str")]
        requested: u128,
    },
    /// A session stake below the minimum for the worker's benchmark score.
    #[error("stake {stake} is below the minimum {min}")]
    StakeBelowMinimum {
        /// The stake offered.
        #[serde(with = "crate::genesis::amount_str")]
        stake: Amount,
        /// The minimum.
        #[serde(with = "crate::genesis::amount_str")]
        min: Amount,
    },
    /// Equivocation evidence that does not prove two conflicting signed messages of one worker.
    #[error("bad equivocation evidence: {reason}")]
    BadEquivocationEvidence {
        /// Why.
        reason: String,
    },
    /// Contract code above the chain's limit.
    #[error("contract code of {size} bytes exceeds the limit of {max} bytes")]
    CodeTooLarge {
        /// The code's size.
        size: u64,
        /// The limit (`params.contracts.max_code_bytes`).
        max: u64,
    },
    /// No code is stored under this hash.
    #[error("no contract code is stored under this hash")]
    UnknownCode,
    /// No contract has this id.
    #[error("no contract has this id")]
    UnknownContract,
    /// A contract call whose precondition does not hold (named in the reason).
    #[error("{reason}")]
    ContractPrecondition {
        /// What does not hold.
        reason: String,
    },
    /// An owner-only agent call by another account.
    #[error("only the agent's owner {owner} may do this")]
    NotAgentOwner {
        /// The owner.
        owner: crate::Address,
    },
    /// State-root evidence that does not prove a worker disagreeing with its cluster's majority.
    #[error("bad state-root evidence: {reason}")]
    BadStateRootEvidence {
        /// Why.
        reason: String,
    },
    /// A heartbeat the chain refuses (wrong worker, no such or an expired challenge, forged score).
    #[error("heartbeat refused: {reason}")]
    BadHeartbeat {
        /// Why.
        reason: String,
    },
    /// A multisig call by an account that is not one of the multisig's members.
    #[error("{signer} is not a member of multisig {multisig}")]
    NotMultisigMember {
        /// The multisig.
        multisig: crate::Address,
        /// The signer.
        signer: crate::Address,
    },
    /// No pending operation has this number (never proposed, executed, cancelled or dropped once expired).
    #[error("multisig {multisig} has no pending operation {op}")]
    UnknownMultisigOp {
        /// The multisig.
        multisig: crate::Address,
        /// The operation's number.
        op: u64,
    },
    /// The member already approved this operation.
    #[error("the signer already approved this operation")]
    AlreadyApproved,
    /// The operation expired before reaching its threshold.
    #[error("the operation expired at height {expired_at}")]
    MultisigOpExpired {
        /// Its last approvable height.
        expired_at: u64,
    },
    /// A multisig call that is malformed or not allowed (bad members or threshold, nested or oversized inner
    /// call, too many pending operations, cancel by another member).
    #[error("multisig: {reason}")]
    MultisigPrecondition {
        /// What does not hold.
        reason: String,
    },
    /// An agent's transfer that would pass the owner's spend cap of a rolling day (`spend_cap_per_day`).
    #[error("the agent's spend cap is {cap} per day: {spent} spent in the last day, {amount} more refused")]
    AgentSpendCap {
        /// The owner's cap (0: the agent may not spend).
        #[serde(with = "crate::genesis::amount_str")]
        cap: Amount,
        /// Spent in the rolling day so far.
        #[serde(with = "crate::genesis::amount_str")]
        spent: Amount,
        /// The refused transfer.
        #[serde(with = "crate::genesis::amount_str")]
        amount: Amount,
    },
    /// A command to a contract whose storage deposit is not covered: its account must be funded first.
    #[error(
        "the contract's storage is not covered: its deposit lacks {needed} and its account {account} holds {balance}; \
         transfer at least {needed} to that account"
    )]
    StorageUnfunded {
        /// The deposit missing.
        #[serde(with = "crate::genesis::amount_str")]
        needed: crate::Amount,
        /// The contract's account.
        account: crate::Address,
        /// What the account holds.
        #[serde(with = "crate::genesis::amount_str")]
        balance: crate::Amount,
    },
}

/// The outcome of one included transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Receipt {
    /// The transaction's hash.
    pub tx_hash: Hash,
    /// The block that included it.
    pub height: u64,
    /// Its position in the block.
    pub index: u32,
    /// The fee charged.
    #[serde(with = "crate::genesis::amount_str")]
    pub fee_paid: Amount,
    /// `None` if the call succeeded, otherwise why it failed.
    pub error: Option<TxError>,
}

impl Receipt {
    /// Whether the call succeeded.
    pub fn is_success(&self) -> bool {
        self.error.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, encode};

    #[test]
    fn staking_errors_round_trip_and_older_errors_keep_their_encoding() {
        assert_eq!(encode(&TxError::SelfTransfer), vec![3]);
        let errors = [
            TxError::BelowMinSelfBond { amount: 1, min: 2 },
            TxError::UnknownCandidate,
            TxError::UnbondExceedsBond { bonded: 0, requested: u128::MAX },
            TxError::BadEvidence { reason: "no".into() },
            TxError::EvidenceReplay { epoch: 1, view: 2 },
        ];
        for e in errors {
            assert_eq!(decode::<TxError>(&encode(&e), 1024), Ok(e.clone()));
            let json = serde_json::to_string(&e).expect("serializes");
            assert_eq!(serde_json::from_str::<TxError>(&json).expect("parses"), e);
        }
    }
}
