//! Votes, voting tokens, delegation and the tally (see the parent module's notes).

use super::{Deps, Governance, escrow, insert_sorted, remove_sorted};
use crate::modules::staking::Staking;
use crate::{BlockEnv, Overlay, RuntimeError, StateRead};
use umbra_types::governance::{
    Delegation, ProposalId, ProposalStatus, Tally, VoteChoice, VoteLock, VoteRecord, VoterRecord,
    conviction_lock_periods, conviction_weight_tenths,
};
use umbra_types::state_keys::StateKey;
use umbra_types::{Address, Amount, Params, TxError};

type CallResult = Result<Result<(), TxError>, RuntimeError>;

/// The first height at which a lock taken with `conviction`, counting from `end`, is released.
fn lock_until(end: u64, conviction: u8, delay: u64) -> u64 {
    let periods = conviction_lock_periods(conviction).unwrap_or(0);
    end.saturating_add(1).saturating_add(periods.saturating_mul(delay))
}

impl Governance {
    /// The tally of a proposal's votes and delegations as they stand.
    pub(crate) async fn tally<S: StateRead>(&self, s: &Overlay<'_, S>, id: ProposalId) -> Result<Tally, RuntimeError> {
        let mut t = Tally::default();
        for v in self.voters(s, id).await? {
            let Some(vote) = self.vote(s, id, &v).await? else { continue };
            add(&mut t, vote.choice, vote.amount, vote.conviction, vote.spam);
            for d in self.delegators(s, &v).await? {
                if self.vote(s, id, &d).await?.is_some() {
                    continue;
                }
                if let Some(del) = self.voter(s, &d).await?.delegation
                    && del.to == v
                {
                    add(&mut t, vote.choice, del.amount, del.conviction, vote.spam);
                }
            }
        }
        Ok(t)
    }

    /// Makes the account's escrow plus bonded stake cover its largest lock in force, moving what is
    /// missing from its balance; stores the record.
    async fn cover<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        deps: &Deps<'_>,
        who: &Address,
        mut rec: VoterRecord,
    ) -> CallResult {
        let needed = rec.locked_at(env.height);
        let bonded = self.bonded_of(s, deps.staking, who).await?;
        let free_needed = needed.saturating_sub(bonded);
        if free_needed > rec.escrowed {
            let top_up = free_needed - rec.escrowed;
            let balance = deps.bal.account(s, who).await?.balance;
            if balance < top_up {
                let available = balance.saturating_add(rec.escrowed).saturating_add(bonded);
                return Ok(Err(TxError::InsufficientVotingBalance { needed, available }));
            }
            if let Err(e) = deps.bal.transfer(s, who, &escrow(), top_up).await? {
                return Ok(Err(e));
            }
            rec.escrowed = free_needed;
        }
        self.put_voter(s, who, &rec);
        Ok(Ok(()))
    }

    /// `Call::Vote`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn cast<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        deps: &Deps<'_>,
        signer: &Address,
        id: ProposalId,
        choice: VoteChoice,
        amount: Amount,
        conviction: u8,
        spam: bool,
    ) -> CallResult {
        if amount == 0 {
            return Ok(Err(TxError::ZeroAmount));
        }
        if conviction_weight_tenths(conviction).is_none() {
            return Ok(Err(TxError::BadConviction { conviction }));
        }
        let Some(p) = self.proposal(s, id).await? else {
            return Ok(Err(TxError::UnknownProposal { id }));
        };
        if p.status != ProposalStatus::Open || env.height > p.voting_end {
            return Ok(Err(TxError::VotingClosed { closed_at: p.voting_end }));
        }
        if env.height < p.voting_start {
            return Ok(Err(TxError::VotingNotOpen { opens_at: p.voting_start }));
        }
        let mut rec = self.voter(s, signer).await?;
        let lock =
            VoteLock { proposal: Some(id), amount, until: lock_until(p.voting_end, conviction, p.enactment_delay) };
        match rec.locks.iter_mut().find(|l| l.proposal == Some(id)) {
            Some(l) => *l = lock,
            None => rec.locks.push(lock),
        }
        if let Err(e) = self.cover(env, s, deps, signer, rec).await? {
            return Ok(Err(e));
        }
        s.put(&StateKey::GovVote { proposal: id, voter: *signer }, &VoteRecord { choice, amount, conviction, spam });
        let mut voters = self.voters(s, id).await?;
        insert_sorted(&mut voters, *signer);
        s.put(&StateKey::GovVoters(id), &voters);
        tracing::debug!(target: "governance.vote", height = env.height, id, ?choice, conviction, %signer, "vote cast");
        Ok(Ok(()))
    }

    /// `Call::Delegate`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn delegate<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        deps: &Deps<'_>,
        signer: &Address,
        to: &Address,
        amount: Amount,
        conviction: u8,
    ) -> CallResult {
        if amount == 0 {
            return Ok(Err(TxError::ZeroAmount));
        }
        if conviction_weight_tenths(conviction).is_none() {
            return Ok(Err(TxError::BadConviction { conviction }));
        }
        if to == signer {
            return Ok(Err(TxError::DelegationCycle));
        }
        let mut rec = self.voter(s, signer).await?;
        if rec.delegation.is_some() {
            return Ok(Err(TxError::BadDelegation { reason: "the signer already delegates; undelegate first".into() }));
        }
        if let Some(d) = self.voter(s, to).await?.delegation {
            if d.to == *signer {
                return Ok(Err(TxError::DelegationCycle));
            }
            return Ok(Err(TxError::BadDelegation {
                reason: "the delegate itself delegates; delegations do not chain".into(),
            }));
        }
        if !self.delegators(s, signer).await?.is_empty() {
            return Ok(Err(TxError::BadDelegation {
                reason: "other accounts delegate to the signer; delegations do not chain".into(),
            }));
        }
        rec.locks.push(VoteLock { proposal: None, amount, until: u64::MAX });
        rec.delegation = Some(Delegation { to: *to, amount, conviction });
        if let Err(e) = self.cover(env, s, deps, signer, rec).await? {
            return Ok(Err(e));
        }
        let mut ds = self.delegators(s, to).await?;
        insert_sorted(&mut ds, *signer);
        s.put(&StateKey::GovDelegators(*to), &ds);
        tracing::debug!(target: "governance.delegate", height = env.height, %signer, %to, "delegated");
        Ok(Ok(()))
    }

    /// `Call::Undelegate`.
    pub(crate) async fn undelegate<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        params: &Params,
        signer: &Address,
    ) -> CallResult {
        let mut rec = self.voter(s, signer).await?;
        let Some(d) = rec.delegation.take() else {
            return Ok(Err(TxError::NotDelegating));
        };
        let until = lock_until(env.height, d.conviction, params.governance.enactment_delay);
        if let Some(l) = rec.locks.iter_mut().find(|l| l.proposal.is_none() && l.until == u64::MAX) {
            l.until = until;
        }
        let mut ds = self.delegators(s, &d.to).await?;
        remove_sorted(&mut ds, signer);
        if ds.is_empty() {
            s.put_raw(StateKey::GovDelegators(d.to).hash(), None);
        } else {
            s.put(&StateKey::GovDelegators(d.to), &ds);
        }
        self.put_voter(s, signer, &rec);
        Ok(Ok(()))
    }

    /// `Call::UnlockVotes`: drops ended locks and returns the escrow no lock in force needs.
    pub(crate) async fn unlock<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        deps: &Deps<'_>,
        signer: &Address,
    ) -> CallResult {
        let mut rec = self.voter(s, signer).await?;
        let before = rec.locks.len();
        rec.locks.retain(|l| l.until > env.height);
        let bonded = self.bonded_of(s, deps.staking, signer).await?;
        let keep = rec.locked_at(env.height).saturating_sub(bonded);
        let release = rec.escrowed.saturating_sub(keep);
        if release == 0 && rec.locks.len() == before {
            return Ok(Err(TxError::NothingToUnlock));
        }
        if release > 0 {
            if deps.bal.transfer(s, &escrow(), signer, release).await?.is_err() {
                return Err(RuntimeError::Corrupt("governance escrow"));
            }
            rec.escrowed -= release;
        }
        self.put_voter(s, signer, &rec);
        tracing::debug!(target: "governance.unlock", height = env.height, %signer, release = %release, "voting tokens released");
        Ok(Ok(()))
    }

    /// Refuses an `unbond` of `amount` that would leave the signer's locks uncovered.
    pub(crate) async fn check_unbond<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &Overlay<'_, S>,
        staking: &Staking,
        signer: &Address,
        amount: Amount,
    ) -> Result<Option<TxError>, RuntimeError> {
        let rec = self.voter(s, signer).await?;
        let locked = rec.locked_at(env.height);
        if locked == 0 {
            return Ok(None);
        }
        let bonded = self.bonded_of(s, staking, signer).await?;
        if amount > bonded {
            return Ok(None); // staking refuses it itself
        }
        let covered = rec.escrowed.saturating_add(bonded - amount);
        Ok((covered < locked).then_some(TxError::VoteLocked { locked }))
    }
}

/// Adds one vote (or delegation) to a tally.
fn add(t: &mut Tally, choice: VoteChoice, amount: Amount, conviction: u8, spam: bool) {
    let w = amount.saturating_mul(conviction_weight_tenths(conviction).unwrap_or(0));
    t.turnout = t.turnout.saturating_add(amount);
    let side = match choice {
        VoteChoice::Aye => &mut t.ayes,
        VoteChoice::Nay => &mut t.nays,
        VoteChoice::Abstain => &mut t.abstains,
    };
    *side = side.saturating_add(w);
    if spam {
        t.spam = t.spam.saturating_add(w);
    }
}
