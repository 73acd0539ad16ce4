//! `governance`: proposals, votes with conviction, delegation, enactment and the treasury's spends.
//!
//! # Life of a proposal
//! `propose` moves the deposit into escrow (the `governance` module account) and opens the proposal:
//! votes count from `submitted_at + preparation_period` (`voting_start`) through `voting_end`. At the
//! end of block `voting_end` the tally is final (see [`umbra_types::governance`] for the rule): a
//! passed proposal is enacted at the end of block `voting_end + enactment_delay`, each call in its own
//! checkpoint, so a failing call records its error in `results` and the others still run. The deposit
//! is returned at the tally, or burned when voters marked the proposal spam. Passed
//! `Admin` calls go to the same registry handlers as the dev chain's sudo (`Registry::enact`).
//!
//! # Voting tokens
//! A vote locks `amount` until `voting_end + 1 + periods * enactment_delay` (periods from the
//! conviction table). Locks of one account overlap (the same tokens may vote on every proposal); what
//! is held is the largest lock in force, covered first by the account's bonded stake (which stays
//! bonded and keeps earning; an `unbond` that would uncover a lock is refused) and for the rest by
//! tokens moved from its balance into escrow. `unlock_votes` drops ended locks and returns whatever
//! escrow is no longer needed, so each token is released once. A second vote on a proposal replaces
//! the first (its lock too).
//!
//! # Delegation
//! One level only: an account delegates `amount` (with a conviction) to a delegate that does not
//! itself delegate, and cannot delegate while others delegate to it, so no chain and no cycle can
//! form. A delegation counts with its delegate's vote on every proposal the delegator does not vote
//! on itself, as delegations stand at the tally. `undelegate` starts the conviction's lock period.
//!
//! # Emergency track
//! A strict majority of the genesis technical committee can fast-track a proposal whose calls are
//! all security calls (withdraw a measurement, replace the attestation policy, remove a gatekeeper, pause a
//! cluster, pause a governance-owned agent; never a treasury spend): voting opens at once and ends within
//! `emergency_voting_period` blocks, the threshold becomes `emergency_threshold_bps` and the delay
//! `emergency_enactment_delay`.
//!
//! # Governance as an owner
//! `GovCall::AgentControl` carries an owner-only agent call and runs it at enactment with the well-known
//! governance owner (`umbra_types::governance::governance_owner`, an address without a key) as the signer, so it
//! changes exactly the agents whose owner transferred them to governance.
//!
//! # Known limits
//! Slashing that takes bonded stake below a vote's lock leaves the vote counted as cast. Tallies
//! iterate a proposal's voters and their delegators, bounded by fees, not by a parameter.

use crate::modules::agents::{Agents, Change};
use crate::modules::balances::{Balances, treasury};
use crate::modules::contracts::{self, Contracts};
use crate::modules::registry::{self, Registry};
use crate::modules::staking::Staking;
use crate::{BlockEnv, Module, Overlay, RuntimeError, StateRead};
use umbra_types::governance::{
    GovCall, Proposal, ProposalId, ProposalStatus, SpendRecord, VoteRecord, VoterRecord, governance_owner,
    is_agent_owner_call,
};
use umbra_types::state_keys::StateKey;
use umbra_types::{Address, Amount, Call, Genesis, Params, TxError};

mod votes;

type CallResult = Result<Result<(), TxError>, RuntimeError>;

/// The escrow account holding deposits and voting tokens taken from balances.
pub(crate) fn escrow() -> Address {
    Address::module("governance")
}

/// The most treasury spends kept in the history (oldest dropped first).
const MAX_SPENDS_KEPT: usize = 1_024;

fn insert_sorted<T: Ord>(v: &mut Vec<T>, x: T) {
    if let Err(i) = v.binary_search(&x) {
        v.insert(i, x);
    }
}

fn remove_sorted<T: Ord>(v: &mut Vec<T>, x: &T) {
    if let Ok(i) = v.binary_search(x) {
        v.remove(i);
    }
}

fn malformed(reason: impl Into<String>) -> TxError {
    TxError::MalformedProposal { reason: reason.into() }
}

/// The modules a governance call moves tokens or reads stake through.
pub(crate) struct Deps<'a> {
    pub(crate) bal: &'a Balances,
    pub(crate) staking: &'a Staking,
}

/// The `governance` module.
pub(crate) struct Governance;

impl Governance {
    // ---- reads ----

    pub(crate) async fn proposal<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        id: ProposalId,
    ) -> Result<Option<Proposal>, RuntimeError> {
        s.get(&StateKey::GovProposal(id), "governance proposal").await
    }

    pub(crate) async fn next_id<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<ProposalId, RuntimeError> {
        Ok(s.get(&StateKey::GovNextId, "governance next id").await?.unwrap_or(0))
    }

    async fn active<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Vec<ProposalId>, RuntimeError> {
        Ok(s.get(&StateKey::GovActive, "governance active").await?.unwrap_or_default())
    }

    pub(crate) async fn vote<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        proposal: ProposalId,
        voter: &Address,
    ) -> Result<Option<VoteRecord>, RuntimeError> {
        s.get(&StateKey::GovVote { proposal, voter: *voter }, "governance vote").await
    }

    async fn voters<S: StateRead>(&self, s: &Overlay<'_, S>, id: ProposalId) -> Result<Vec<Address>, RuntimeError> {
        Ok(s.get(&StateKey::GovVoters(id), "governance voters").await?.unwrap_or_default())
    }

    pub(crate) async fn voter<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        a: &Address,
    ) -> Result<VoterRecord, RuntimeError> {
        Ok(s.get(&StateKey::GovVoter(*a), "governance voter").await?.unwrap_or_default())
    }

    fn put_voter<S: StateRead>(&self, s: &mut Overlay<'_, S>, a: &Address, rec: &VoterRecord) {
        if *rec == VoterRecord::default() {
            s.put_raw(StateKey::GovVoter(*a).hash(), None);
        } else {
            s.put(&StateKey::GovVoter(*a), rec);
        }
    }

    async fn delegators<S: StateRead>(&self, s: &Overlay<'_, S>, a: &Address) -> Result<Vec<Address>, RuntimeError> {
        Ok(s.get(&StateKey::GovDelegators(*a), "governance delegators").await?.unwrap_or_default())
    }

    pub(crate) async fn committee<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Vec<Address>, RuntimeError> {
        Ok(s.get(&StateKey::GovCommittee, "governance committee").await?.unwrap_or_default())
    }

    pub(crate) async fn spends<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Vec<SpendRecord>, RuntimeError> {
        Ok(s.get(&StateKey::TreasurySpends, "treasury spends").await?.unwrap_or_default())
    }

    /// An account's bonded stake toward every candidate.
    async fn bonded_of<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        staking: &Staking,
        a: &Address,
    ) -> Result<Amount, RuntimeError> {
        let mut total: Amount = 0;
        for key in staking.account_stakes(s, a).await? {
            total = total.saturating_add(staking.stake(s, &key, a).await?.bonded);
        }
        Ok(total)
    }

    // ---- calls ----

    /// Whether the calls of a proposal are well formed against the current parameters.
    fn check_calls(&self, params: &Params, calls: &[GovCall], description: &str) -> Result<(), TxError> {
        let g = &params.governance;
        if calls.is_empty() {
            return Err(malformed("a proposal needs at least one call"));
        }
        if calls.len() > g.max_calls as usize {
            return Err(malformed(format!("{} calls exceed the limit of {}", calls.len(), g.max_calls)));
        }
        if description.len() > g.max_text_bytes as usize {
            return Err(malformed(format!("the description exceeds {} bytes", g.max_text_bytes)));
        }
        for (i, call) in calls.iter().enumerate() {
            match call {
                GovCall::SetParams { params: new } => {
                    new.validate().map_err(|e| malformed(format!("call {i}: {e}")))?;
                    if new.epoch_length != params.epoch_length {
                        return Err(malformed(format!("call {i}: epoch_length cannot change on a running chain")));
                    }
                    if new.rewards.reserve != params.rewards.reserve {
                        return Err(malformed(format!("call {i}: rewards.reserve is fixed at genesis")));
                    }
                }
                GovCall::TreasurySpend { to, amount } => {
                    if *amount == 0 {
                        return Err(malformed(format!("call {i}: a treasury spend of zero")));
                    }
                    if *to == treasury() || *to == escrow() {
                        return Err(malformed(format!("call {i}: a treasury spend to a module account")));
                    }
                }
                GovCall::Signal { text } => {
                    if text.len() > g.max_text_bytes as usize {
                        return Err(malformed(format!("call {i}: the text exceeds {} bytes", g.max_text_bytes)));
                    }
                }
                GovCall::Admin { .. } => {}
                GovCall::AgentControl { call } => {
                    if !is_agent_owner_call(call) {
                        return Err(malformed(format!(
                            "call {i}: agent_control carries an owner-only agent call, not {}",
                            call.kind()
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// `Call::Propose`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn propose<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        params: &Params,
        signer: &Address,
        calls: &[GovCall],
        deposit: Amount,
        description: &str,
    ) -> CallResult {
        let g = &params.governance;
        if let Err(e) = self.check_calls(params, calls, description) {
            return Ok(Err(e));
        }
        if deposit < g.min_deposit {
            return Ok(Err(TxError::DepositTooLow { deposit, min: g.min_deposit }));
        }
        let mut active = self.active(s).await?;
        if active.len() >= g.max_active_proposals as usize {
            return Ok(Err(TxError::TooManyProposals { max: g.max_active_proposals }));
        }
        if deposit > 0
            && let Err(e) = bal.transfer(s, signer, &escrow(), deposit).await?
        {
            return Ok(Err(e));
        }
        let id = self.next_id(s).await?;
        let voting_start = env.height.saturating_add(g.preparation_period);
        let p = Proposal {
            id,
            proposer: *signer,
            deposit,
            description: description.to_string(),
            calls: calls.to_vec(),
            submitted_at: env.height,
            voting_start,
            voting_end: voting_start.saturating_add(g.voting_period - 1),
            enactment_delay: g.enactment_delay,
            threshold_bps: g.pass_threshold_bps,
            emergency: false,
            fast_track_approvals: Vec::new(),
            status: ProposalStatus::Open,
            final_tally: None,
            results: Vec::new(),
        };
        s.put(&StateKey::GovProposal(id), &p);
        s.put(&StateKey::GovNextId, &(id + 1));
        insert_sorted(&mut active, id);
        s.put(&StateKey::GovActive, &active);
        tracing::info!(target: "governance.propose", height = env.height, id, calls = calls.len(), %signer, "proposal submitted");
        Ok(Ok(()))
    }

    /// `Call::FastTrack`.
    pub(crate) async fn fast_track<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        params: &Params,
        signer: &Address,
        id: ProposalId,
    ) -> CallResult {
        let committee = self.committee(s).await?;
        if !committee.contains(signer) {
            return Ok(Err(TxError::NotAuthorized {
                reason: "only technical committee members may fast-track".into(),
            }));
        }
        let Some(mut p) = self.proposal(s, id).await? else {
            return Ok(Err(TxError::UnknownProposal { id }));
        };
        if p.status != ProposalStatus::Open || env.height > p.voting_end {
            return Ok(Err(TxError::VotingClosed { closed_at: p.voting_end }));
        }
        if let Some((i, c)) = p.calls.iter().enumerate().find(|(_, c)| !c.is_security()) {
            return Ok(Err(TxError::NotFastTrackable {
                reason: format!(
                    "call {i} ({}) is not a security call (withdraw_measurement, set_policy, remove_gatekeeper, pause_cluster, agent_control pause_agent)",
                    c.kind()
                ),
            }));
        }
        if p.fast_track_approvals.contains(signer) {
            return Ok(Err(TxError::NotFastTrackable { reason: "the signer already approved it".into() }));
        }
        insert_sorted(&mut p.fast_track_approvals, *signer);
        if !p.emergency && p.fast_track_approvals.len() * 2 > committee.len() {
            let g = &params.governance;
            p.emergency = true;
            p.threshold_bps = g.emergency_threshold_bps;
            p.voting_start = p.voting_start.min(env.height);
            p.voting_end = p.voting_end.min(env.height.saturating_add(g.emergency_voting_period - 1));
            p.enactment_delay = g.emergency_enactment_delay;
            tracing::info!(target: "governance.fast_track", height = env.height, id, voting_end = p.voting_end, "proposal fast-tracked");
        }
        s.put(&StateKey::GovProposal(id), &p);
        Ok(Ok(()))
    }

    // ---- end of block ----

    /// Tallies proposals whose voting ended and enacts passed ones whose delay is over.
    pub(crate) async fn end_block_with<S: StateRead>(
        &self,
        cx: &registry::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        reg: &Registry,
        owned: &Owned<'_>,
    ) -> Result<(), RuntimeError> {
        let height = cx.env.height;
        let active = self.active(s).await?;
        if active.is_empty() {
            return Ok(());
        }
        let mut still = Vec::with_capacity(active.len());
        let mut changed = false;
        for id in active {
            let mut p = self.proposal(s, id).await?.ok_or(RuntimeError::Missing("governance proposal"))?;
            let before = p.status.clone();
            if p.status == ProposalStatus::Open && height >= p.voting_end {
                self.finish_voting(cx, s, bal, &mut p).await?;
            }
            if let ProposalStatus::Passed { enact_at } = p.status
                && height >= enact_at
            {
                self.enact(cx, s, bal, reg, owned, &mut p).await?;
            }
            if matches!(p.status, ProposalStatus::Open | ProposalStatus::Passed { .. }) {
                still.push(id);
            }
            // Only decided or enacted proposals are written: an idle block writes nothing.
            if p.status != before {
                s.put(&StateKey::GovProposal(id), &p);
                changed = true;
            }
        }
        if changed {
            s.put(&StateKey::GovActive, &still);
        }
        Ok(())
    }

    async fn finish_voting<S: StateRead>(
        &self,
        cx: &registry::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        p: &mut Proposal,
    ) -> Result<(), RuntimeError> {
        let g = &cx.params.governance;
        let tally = self.tally(s, p.id).await?;
        let issued = bal.total_issued(s).await?;
        let passed = tally.passes(p.threshold_bps, g.quorum_bps, issued);
        let spam = !passed && tally.is_spam(g.spam_threshold_bps);
        if spam {
            if p.deposit > 0 {
                bal.burn(s, &escrow(), p.deposit).await?;
            }
            p.status = ProposalStatus::Rejected { spam: true };
        } else {
            if p.deposit > 0 && bal.transfer(s, &escrow(), &p.proposer, p.deposit).await?.is_err() {
                return Err(RuntimeError::Corrupt("governance escrow"));
            }
            p.status = if passed {
                ProposalStatus::Passed { enact_at: p.voting_end.saturating_add(p.enactment_delay) }
            } else {
                ProposalStatus::Rejected { spam: false }
            };
        }
        tracing::info!(
            target: "governance.tally",
            height = cx.env.height,
            id = p.id,
            passed,
            spam,
            ayes = %tally.ayes,
            nays = %tally.nays,
            turnout = %tally.turnout,
            "voting ended"
        );
        p.final_tally = Some(tally);
        Ok(())
    }

    async fn enact<S: StateRead>(
        &self,
        cx: &registry::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        reg: &Registry,
        owned: &Owned<'_>,
        p: &mut Proposal,
    ) -> Result<(), RuntimeError> {
        let mut results = Vec::with_capacity(p.calls.len());
        for call in &p.calls {
            s.checkpoint();
            let r = self.enact_call(cx, s, bal, reg, owned, p.id, call).await?;
            match &r {
                Ok(()) => s.commit_checkpoint(),
                Err(_) => s.revert(),
            }
            tracing::info!(target: "governance.enact", height = cx.env.height, id = p.id, call = call.kind(), ok = r.is_ok(), "call enacted");
            results.push(r.err());
        }
        p.results = results;
        p.status = ProposalStatus::Enacted { at: cx.env.height };
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn enact_call<S: StateRead>(
        &self,
        cx: &registry::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        reg: &Registry,
        owned: &Owned<'_>,
        id: ProposalId,
        call: &GovCall,
    ) -> CallResult {
        match call {
            GovCall::Admin { call } => reg.enact(cx, s, call).await,
            GovCall::SetParams { params } => {
                let current: Params = s
                    .get(&StateKey::SystemParams, "system params")
                    .await?
                    .ok_or(RuntimeError::Missing("system params"))?;
                if let Err(e) = params.validate() {
                    return Ok(Err(TxError::GovernancePrecondition { reason: e.to_string() }));
                }
                if params.epoch_length != current.epoch_length {
                    return Ok(Err(TxError::GovernancePrecondition {
                        reason: "epoch_length cannot change on a running chain".into(),
                    }));
                }
                s.put(&StateKey::SystemParams, params.as_ref());
                Ok(Ok(()))
            }
            GovCall::TreasurySpend { to, amount } => {
                if let Err(e) = bal.transfer(s, &treasury(), to, *amount).await? {
                    return Ok(Err(e));
                }
                let mut spends = self.spends(s).await?;
                spends.push(SpendRecord { proposal: id, to: *to, amount: *amount, height: cx.env.height });
                if spends.len() > MAX_SPENDS_KEPT {
                    spends.remove(0);
                }
                s.put(&StateKey::TreasurySpends, &spends);
                Ok(Ok(()))
            }
            GovCall::Signal { .. } => Ok(Ok(())),
            GovCall::AgentControl { call } => {
                let Some((agent, change)) = agent_change(call) else {
                    return Ok(Err(TxError::GovernancePrecondition {
                        reason: format!("agent_control cannot carry {}", call.kind()),
                    }));
                };
                let ccx =
                    contracts::Ctx { height: cx.env.height, timestamp_ms: cx.env.timestamp_ms, params: cx.params };
                owned.agents.change(&ccx, s, owned.contracts, &governance_owner(), agent, change).await
            }
        }
    }
}

/// The modules an enacted proposal acts through as the governance owner ([`governance_owner`]).
pub(crate) struct Owned<'a> {
    pub(crate) agents: &'a Agents,
    pub(crate) contracts: &'a Contracts,
}

/// The agent and change of an owner-only agent call.
fn agent_change(call: &Call) -> Option<(&umbra_types::contracts::ContractId, Change<'_>)> {
    Some(match call {
        Call::UpgradeAgent { agent, code } => (agent, Change::Upgrade(code)),
        Call::PauseAgent { agent } => (agent, Change::Paused(true)),
        Call::ResumeAgent { agent } => (agent, Change::Paused(false)),
        Call::SetAgentPolicy { agent, policy } => (agent, Change::Policy(policy)),
        Call::SetAgentSecret { agent, name, key_epoch, sealed } => {
            (agent, Change::SetSecret { name, key_epoch: *key_epoch, sealed })
        }
        Call::RemoveAgentSecret { agent, name } => (agent, Change::RemoveSecret(name)),
        Call::TransferAgentOwnership { agent, new_owner } => (agent, Change::Owner(new_owner)),
        _ => return None,
    })
}

impl Module for Governance {
    const NAME: &'static str = "governance";

    async fn genesis<S: StateRead>(&self, g: &Genesis, s: &mut Overlay<'_, S>) -> Result<(), RuntimeError> {
        let mut committee = g.governance.technical_committee.clone();
        committee.sort();
        committee.dedup();
        if !committee.is_empty() {
            s.put(&StateKey::GovCommittee, &committee);
        }
        Ok(())
    }
}
