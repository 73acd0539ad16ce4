//! Typed keys of the authenticated state, one section per module.
//!
//! The state stores 32-byte keys: each typed key is hashed with a per-module tag. They are public API
//! because a proof names the key it is about, and clients rebuild the key to check a proof.

use crate::{Address, Amount, ValidatorKey, sha256};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// A key of the authenticated state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub enum StateKey {
    /// `system`: the last applied block (height, hash, time).
    SystemTip,
    /// `system`: the chain parameters.
    SystemParams,
    /// `system`: the chain id and genesis facts.
    SystemChain,
    /// `balances`: an account's balance and nonce.
    Account(Address),
    /// `balances`: total tokens issued so far (never above the maximum supply). Every issued token
    /// is in an account balance, bonded ([`StateKey::TotalBonded`]) or unbonding
    /// ([`StateKey::TotalUnbonding`]).
    TotalIssued,
    /// `staking`: a candidate ([`CandidateRecord`]), kept forever once registered (a slashed
    /// candidate's record is its tombstone).
    Candidate(ValidatorKey),
    /// `staking`: the keys of the candidates that can still be selected (not slashed, and either
    /// from genesis or with stake), sorted ascending.
    Candidates,
    /// `staking`: one account's stake toward one candidate ([`StakeRecord`]).
    Stake {
        /// The candidate.
        validator: ValidatorKey,
        /// The staking account (the owner for a self-bond, otherwise a nominator).
        account: Address,
    },
    /// `staking`: the accounts with a [`StakeRecord`] toward a candidate, sorted ascending.
    Stakers(ValidatorKey),
    /// `staking`: the candidates an account has a [`StakeRecord`] with, sorted ascending.
    AccountStakes(Address),
    /// `staking`: the committee (a `Vec<ValidatorKey>`) of an epoch, written at genesis for epoch 0
    /// and by the last block of epoch `e` for `e + 1`.
    Committee(u64),
    /// `staking`: the sum of all bonded stake (an `Amount`).
    TotalBonded,
    /// `staking`: the sum of all unbonding entries not yet withdrawn (an `Amount`).
    TotalUnbonding,
    /// `staking`: an offence already punished ([`OffenceRecord`]); evidence for it again is a replay.
    Offence {
        /// The offender.
        validator: ValidatorKey,
        /// The epoch of the conflicting votes.
        epoch: u64,
        /// Their view.
        view: u64,
    },
    /// `balances`: what is left of the rewards reserve set at genesis (never minted beyond it, so
    /// `TotalIssued + RewardsReserve` never exceeds the maximum supply).
    RewardsReserve,
    /// `registry`: the attestation policy (`umbra_tee::Policy`), measurement allow-list included.
    RegistryPolicy,
    /// `registry`: a worker ([`crate::WorkerRecord`]), kept after revocation.
    Worker(crate::WorkerId),
    /// `registry`: every registered worker id (a `Vec<WorkerId>`), ascending.
    Workers,
    /// `registry`: stored Intel collateral (JSON bytes) by the SHA-256 of its bytes.
    Collateral(crate::Hash),
    /// `registry`: the hashes of stored collateral (a `Vec<Hash>`), newest first.
    Collaterals,
    /// `registry`: the gatekeepers and key epochs ([`crate::registry::KeysRecord`]).
    Keys,
    /// `registry`: a cluster ([`crate::registry::ClusterRecord`]).
    Cluster(crate::ClusterId),
    /// `registry`: every cluster id (a `Vec<ClusterId>`), ascending.
    Clusters,
    /// `mq`: the next sequence number (a `u64`) the chain accepts from an egress origin.
    EgressNext(crate::Origin),
    /// `mq`: the next sequence number (a `u64`) of a chain-to-worker topic: how many messages it has had.
    TopicNext(crate::Topic),
    /// `system`: the hash of the genesis block header, recorded by block 1 (its parent).
    GenesisHash,
    /// `registry`: the account allowed to make administrative calls (an `Address`), absent when the
    /// chain has none (`registry.sudo` in genesis; only dev chains may have one).
    RegistrySudo,
    /// `governance`: the number the next proposal gets (a `u64`).
    GovNextId,
    /// `governance`: a proposal ([`crate::governance::Proposal`]).
    GovProposal(u64),
    /// `governance`: the proposals open or waiting for enactment (a `Vec<u64>`), ascending.
    GovActive,
    /// `governance`: one account's vote on one proposal ([`crate::governance::VoteRecord`]).
    GovVote {
        /// The proposal.
        proposal: u64,
        /// The voter.
        voter: Address,
    },
    /// `governance`: the accounts that voted on a proposal (a `Vec<Address>`), ascending.
    GovVoters(u64),
    /// `governance`: an account's voting tokens, locks and delegation
    /// ([`crate::governance::VoterRecord`]).
    GovVoter(Address),
    /// `governance`: the accounts delegating to an account (a `Vec<Address>`), ascending.
    GovDelegators(Address),
    /// `governance`: the technical committee (a `Vec<Address>`), from genesis.
    GovCommittee,
    /// `governance`: the treasury's payments (a `Vec<SpendRecord>`), oldest first.
    TreasurySpends,
    /// `economics`: the decayed per-block budget ([`crate::economics::BudgetRecord`]).
    EconBudget,
    /// `economics`: the next pool number.
    EconPoolNext,
    /// `economics`: a pool ([`crate::economics::PoolRecord`]).
    EconPool(u64),
    /// `economics`: every pool number, ascending.
    EconPools,
    /// `economics`: one holder's shares of one pool ([`crate::economics::Holding`]).
    EconPoolHolding(u64, Address),
    /// `economics`: the next vault number.
    EconVaultNext,
    /// `economics`: a vault ([`crate::economics::VaultRecord`]).
    EconVault(u64),
    /// `economics`: every vault number, ascending.
    EconVaults,
    /// `economics`: one holder's shares of one vault.
    EconVaultHolding(u64, Address),
    /// `economics`: a worker's benchmark, pool and session ([`crate::economics::WorkerEconRecord`]).
    EconWorker([u8; 32]),
    /// `economics`: workers with a session (computing or cooling down), ascending.
    EconSessions,
    /// `contracts`: uploaded code's record ([`crate::contracts::CodeRecord`]).
    ContractCode(crate::Hash),
    /// `contracts`: uploaded code's bytes (raw, not encoded).
    ContractCodeBytes(crate::Hash),
    /// `contracts`: an instance ([`crate::contracts::ContractRecord`]).
    Contract(crate::contracts::ContractId),
    /// `contracts`: one ordered command ([`crate::contracts::CommandRecord`]).
    ContractCommand {
        /// The contract.
        contract: crate::contracts::ContractId,
        /// The command's number (0 first).
        seq: u64,
    },
    /// `contracts`: state-root incidents of a contract (a `Vec<Incident>`, the latest 64).
    ContractIncidents(crate::contracts::ContractId),
    /// `agents`: an agent's owner, versions, policy and sealed secrets ([`crate::agents::AgentRecord`]).
    Agent(crate::contracts::ContractId),
    /// `contracts`: a cluster's own contract settings ([`crate::contracts::ClusterContractParams`]).
    ClusterContracts(crate::registry::ClusterId),
    /// `economics`: compute stake on one contract ([`crate::economics::ComputeStakeRecord`]).
    EconComputeStake(crate::contracts::ContractId),
    /// `economics`: contracts with compute stake on one cluster (a `Vec<ContractId>`), ascending.
    EconClusterStakes(u32),
    /// `economics`: compute stake being paid back (a `Vec<ComputeUnstake>`), by release height.
    EconUnstakes,
    /// `agents`: an agent's committed egress receipt batches (a `Vec<crate::agents::ReceiptCommit>`, the latest
    /// [`crate::agents::MAX_RECEIPT_COMMITS`], oldest first).
    AgentReceipts(crate::contracts::ContractId),
    /// `multisig`: a multisig used on chain ([`crate::multisig::MultisigRecord`]), by its address.
    Multisig(Address),
    /// `multisig`: a pending operation ([`crate::multisig::MultisigOp`]).
    MultisigOp {
        /// The multisig's address.
        multisig: Address,
        /// The operation's number.
        op: u64,
    },
    /// `agents`: an agent's transfers of the last rolling day ([`crate::agent_wallet::AgentSpend`]).
    AgentSpend(crate::contracts::ContractId),
    /// `agents`: an agent's Ethereum address per key epoch (a `Vec<crate::agent_wallet::AgentEthAddress>`,
    /// by epoch ascending).
    AgentWallets(crate::contracts::ContractId),
    /// `agents`: an agent's latest attested outputs (a `Vec<crate::agent_wallet::AttestedOutput>`, the latest
    /// [`crate::agent_wallet::MAX_OUTPUTS_KEPT`], oldest first).
    AgentOutputs(crate::contracts::ContractId),
    /// `agents`: how many attested outputs an agent has posted (a `u64`, the next output's index).
    AgentOutputCount(crate::contracts::ContractId),
}

impl StateKey {
    /// The 32-byte key the state stores this under.
    pub fn hash(&self) -> [u8; 32] {
        sha256(&[b"umbra/state/v1", &crate::encode(self)]).0
    }
}

/// `balances`: an account's record.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AccountRecord {
    /// Spendable balance in the smallest unit.
    #[serde(with = "crate::genesis::amount_str")]
    pub balance: Amount,
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
}

/// `system`: the last applied block.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Tip {
    /// Height of the last applied block.
    pub height: u64,
    /// Its timestamp.
    pub timestamp_ms: u64,
}

/// `staking`: a validator candidate. Its consensus key is separate from its owner's account.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CandidateRecord {
    /// The consensus key (what the committee lists).
    #[serde(with = "crate::block::hex32")]
    pub key: ValidatorKey,
    /// The account that registered it and holds its self-bond (for a genesis validator, its key
    /// read as an address).
    pub owner: Address,
    /// The owner's bonded stake.
    #[serde(with = "crate::genesis::amount_str")]
    pub self_bond: Amount,
    /// Everyone else's bonded stake.
    #[serde(with = "crate::genesis::amount_str")]
    pub nominated: Amount,
    /// A genesis validator: eligible without the minimum self-bond, ranked by its stake like any
    /// other candidate (so with no stake, after every bonded candidate).
    pub genesis: bool,
    /// Slashed for equivocation: never selected again and takes no new stake.
    pub jailed: bool,
}

impl CandidateRecord {
    /// Self-bond plus nominations: what committee selection ranks by.
    pub fn total_stake(&self) -> Amount {
        self.self_bond.saturating_add(self.nominated)
    }
}

/// `staking`: an unbonding entry, withdrawable from `release_height` on.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct UnbondingEntry {
    /// Tokens unbonding.
    #[serde(with = "crate::genesis::amount_str")]
    pub amount: Amount,
    /// The height of the `unbond`.
    pub start_height: u64,
    /// The first height at which `withdraw_unbonded` releases it.
    pub release_height: u64,
}

/// `staking`: one account's stake toward one candidate.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct StakeRecord {
    /// Bonded stake, counted for the candidate.
    #[serde(with = "crate::genesis::amount_str")]
    pub bonded: Amount,
    /// Pending unbondings, oldest first.
    pub unbonding: Vec<UnbondingEntry>,
}

impl StakeRecord {
    /// Bonded plus unbonding.
    pub fn total(&self) -> Amount {
        self.unbonding.iter().fold(self.bonded, |t, e| t.saturating_add(e.amount))
    }
}

/// `staking`: a punished offence.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct OffenceRecord {
    /// The block that applied the evidence.
    pub height: u64,
    /// Tokens moved to the treasury.
    #[serde(with = "crate::genesis::amount_str")]
    pub slashed: Amount,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_older_modules_hash_as_before() {
        // New keys are appended, so the encodings (and hashes) of existing ones never move.
        assert_eq!(crate::encode(&StateKey::TotalIssued), vec![4]);
        assert_eq!(crate::encode(&StateKey::Account(Address([0; 32])))[0], 3);
        assert_ne!(StateKey::Committee(0).hash(), StateKey::Committee(1).hash());
    }
}
