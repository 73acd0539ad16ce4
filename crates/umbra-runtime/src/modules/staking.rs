//! `staking`: validator candidates, bonds and nominations, unbonding, committee selection at epoch
//! boundaries, and slashing for equivocation.
//!
//! # Candidates and stake
//! A candidate is a consensus key ([`ValidatorKey`]) plus the account that owns it; the two are
//! separate, so a validator's signing key never has to hold funds. An account registers a candidate
//! with `Call::Bond` to a key nobody has registered, bonding at least `min_self_bond`; the owner's
//! later bonds add to its self-bond. Other accounts `Call::Nominate` it. Each (candidate, account)
//! pair has one [`StakeRecord`] holding the bonded amount and the pending unbondings; the candidate
//! record keeps the two sums (self-bond, nominations) that selection ranks by.
//!
//! Bonded and unbonding tokens leave the account's balance and live only in these records, counted
//! by `TotalBonded` and `TotalUnbonding`. The supply invariant is therefore
//! `sum(balances) + TotalBonded + TotalUnbonding == TotalIssued`; nothing here mints or burns.
//!
//! # Genesis validators
//! Genesis cannot bond tokens out of nowhere without breaking the supply invariant, so each genesis
//! validator starts as a candidate with no stake, owned by its key read as an address, and flagged
//! `genesis`: it is eligible without the minimum self-bond. Like every candidate it ranks by total
//! stake, so with no stake it comes after every bonded candidate (ties by key, ascending). Its
//! owner may bond to it and others may nominate it. The epoch-0 committee is the genesis list in
//! genesis order (what the genesis header carries).
//!
//! # Epochs and selection
//! Epoch `e` is heights `[e*L, (e+1)*L)` with `L = params.epoch_length`
//! ([`umbra_types::epoch_of`]). At the end of the last block of epoch `e`, after every module's
//! end-of-block hook, the committee of epoch `e+1` is chosen: candidates that are not jailed and
//! either are genesis validators or have `self_bond >= min_self_bond`, ranked by total stake
//! (descending), then key (ascending), top `committee_size`. If none is eligible the current
//! committee is kept, so a committee is never empty. The result is stored under
//! `StateKey::Committee(e+1)` (so clients can prove it) and returned in the block's outcome, where
//! the node puts it into the header. The runtime derives the epoch from the height; the node checks
//! the header's `epoch` field against the same function. Committees of past epochs stay in state.
//!
//! # Unbonding
//! `Call::Unbond` moves stake into an entry withdrawable from `height + unbonding_period`; it stops
//! counting for selection at once. `Call::WithdrawUnbonded` releases every matured entry of the
//! signer, across candidates. Entries made in the same block toward the same candidate merge.
//!
//! # Evidence and slashing
//! `Call::SubmitEvidence` carries an encoded [`Evidence`] (epoch plus the engine's opaque proof).
//! Checks, cheapest first, each failure a typed [`TxError`] with nothing slashed (the fee is paid):
//! the envelope decodes; the epoch is not in the future and its committee is on chain; the evidence
//! is younger than the unbonding period (`height < first_height(epoch) + unbonding_period`; since
//! `unbonding_period >= epoch_length` this covers the whole epoch, and no stake that backed it can
//! have been withdrawn yet); the injected [`EvidenceVerifier`] accepts the proof under the chain's
//! consensus namespace and that epoch's committee; the offender is in that committee; and this
//! (offender, epoch, view) was not punished before (a replay, however re-encoded). Each distinct
//! (epoch, view) offence is punished once, so repeated equivocation compounds.
//!
//! Slashing takes `slash_fraction_bps` from every stake toward the offender: each bonded amount,
//! and each unbonding entry started at or after the first height of the offence's epoch (it backed
//! the committee when the offence happened). Each amount is cut by `floor(amount * bps / 10000)`
//! on its own, so the total taken is at most one unit per record below the exact fraction; that
//! remainder stays with the stakers. Stake bonded after the offence is cut too (the candidate's
//! current stake answers for it). The cut goes to the treasury, so the supply is unchanged. The
//! offender is then jailed for good: removed from the selectable candidates (so absent from the
//! next committee chosen, though a committee already chosen for the running epoch is not changed),
//! refusing new bonds and nominations; its stakers can still unbond. Its record stays as a
//! tombstone so the key cannot register again.
//!
//! # Rewards
//! Validators earn the proposer's share of fees (paid by `balances` to the proposer key's account).
//! `validator_reward_share_bps` is recorded but unused until the rewards budget arrives with the
//! economics issue.
//!
//! # Known limits
//! A `Bond` carries no proof of possession of the consensus key, so whoever registers a key first
//! owns it (griefing only: the registrant cannot sign with it). Per-candidate staker lists are read
//! whole (bounded by `max_stakers_per_candidate`), and every selectable candidate is read at each
//! boundary.

use crate::modules::balances::{Balances, treasury};
use crate::{BlockEnv, Module, Overlay, RuntimeError, StateRead};
use std::cmp::Reverse;
use umbra_types::state_keys::{CandidateRecord, OffenceRecord, StakeRecord, StateKey, UnbondingEntry};
use umbra_types::{
    Address, Amount, Evidence, EvidenceVerifier, Genesis, MAX_SUPPLY, Params, TxError, ValidatorKey,
    consensus_namespace, epoch_of, first_height_of, is_last_in_epoch,
};

/// The `staking` module.
#[derive(Default)]
pub(crate) struct Staking;

/// A call's result: the outer error is the runtime's, the inner one the user's.
type CallResult = Result<Result<(), TxError>, RuntimeError>;

/// `floor(x * bps / 10000)` without overflow for any `x`.
fn mul_bps(x: Amount, bps: u16) -> Amount {
    let bps = Amount::from(bps.min(10_000));
    (x / 10_000) * bps + (x % 10_000) * bps / 10_000
}

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

impl Staking {
    pub(crate) async fn candidate<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        key: &ValidatorKey,
    ) -> Result<Option<CandidateRecord>, RuntimeError> {
        s.get(&StateKey::Candidate(*key), "staking candidate").await
    }

    /// The selectable candidates' keys, ascending.
    pub(crate) async fn candidate_keys<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
    ) -> Result<Vec<ValidatorKey>, RuntimeError> {
        Ok(s.get(&StateKey::Candidates, "staking candidates").await?.unwrap_or_default())
    }

    pub(crate) async fn stake<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        key: &ValidatorKey,
        account: &Address,
    ) -> Result<StakeRecord, RuntimeError> {
        Ok(s.get(&StateKey::Stake { validator: *key, account: *account }, "staking stake").await?.unwrap_or_default())
    }

    pub(crate) async fn stakers<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        key: &ValidatorKey,
    ) -> Result<Vec<Address>, RuntimeError> {
        Ok(s.get(&StateKey::Stakers(*key), "staking stakers").await?.unwrap_or_default())
    }

    pub(crate) async fn account_stakes<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        account: &Address,
    ) -> Result<Vec<ValidatorKey>, RuntimeError> {
        Ok(s.get(&StateKey::AccountStakes(*account), "staking account stakes").await?.unwrap_or_default())
    }

    pub(crate) async fn committee_of<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        epoch: u64,
    ) -> Result<Option<Vec<ValidatorKey>>, RuntimeError> {
        s.get(&StateKey::Committee(epoch), "staking committee").await
    }

    pub(crate) async fn total_bonded<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Amount, RuntimeError> {
        Ok(s.get(&StateKey::TotalBonded, "staking total bonded").await?.unwrap_or(0))
    }

    pub(crate) async fn total_unbonding<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Amount, RuntimeError> {
        Ok(s.get(&StateKey::TotalUnbonding, "staking total unbonding").await?.unwrap_or(0))
    }

    pub(crate) async fn offence<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        key: &ValidatorKey,
        epoch: u64,
        view: u64,
    ) -> Result<Option<OffenceRecord>, RuntimeError> {
        s.get(&StateKey::Offence { validator: *key, epoch, view }, "staking offence").await
    }

    /// Adds `up` and subtracts `down` from a counter; a counter below what it must cover means the
    /// state is corrupt.
    async fn adjust<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        key: StateKey,
        what: &'static str,
        up: Amount,
        down: Amount,
    ) -> Result<(), RuntimeError> {
        let v: Amount = s.get(&key, what).await?.unwrap_or(0);
        let v = v.checked_add(up).and_then(|v| v.checked_sub(down)).ok_or(RuntimeError::Corrupt(what))?;
        s.put(&key, &v);
        Ok(())
    }

    /// Writes a candidate and keeps the selectable list in step: listed while not jailed and
    /// either genesis or with a staker.
    async fn put_candidate<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        c: &CandidateRecord,
    ) -> Result<(), RuntimeError> {
        s.put(&StateKey::Candidate(c.key), c);
        let selectable = !c.jailed && (c.genesis || !self.stakers(s, &c.key).await?.is_empty());
        let mut list = self.candidate_keys(s).await?;
        let listed = list.binary_search(&c.key).is_ok();
        if selectable && !listed {
            insert_sorted(&mut list, c.key);
        } else if !selectable && listed {
            remove_sorted(&mut list, &c.key);
        }
        if selectable != listed {
            s.put(&StateKey::Candidates, &list);
        }
        Ok(())
    }

    /// Writes a stake record (deleting it when empty) and keeps both index lists in step.
    async fn put_stake<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        key: &ValidatorKey,
        account: &Address,
        rec: &StakeRecord,
    ) -> Result<(), RuntimeError> {
        let sk = StateKey::Stake { validator: *key, account: *account };
        let mut stakers = self.stakers(s, key).await?;
        let mut mine = self.account_stakes(s, account).await?;
        if *rec == StakeRecord::default() {
            s.put_raw(sk.hash(), None);
            remove_sorted(&mut stakers, account);
            remove_sorted(&mut mine, key);
        } else {
            s.put(&sk, rec);
            insert_sorted(&mut stakers, *account);
            insert_sorted(&mut mine, *key);
        }
        let put_list = |s: &mut Overlay<'_, S>, k: StateKey, empty: bool, bytes: Vec<u8>| {
            s.put_raw(k.hash(), if empty { None } else { Some(bytes) });
        };
        put_list(s, StateKey::Stakers(*key), stakers.is_empty(), umbra_types::encode(&stakers));
        put_list(s, StateKey::AccountStakes(*account), mine.is_empty(), umbra_types::encode(&mine));
        Ok(())
    }

    /// Moves `amount` from `signer`'s balance into its stake toward `c`, as self-bond or nomination.
    async fn add_stake<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        balances: &Balances,
        params: &Params,
        mut c: CandidateRecord,
        signer: &Address,
        amount: Amount,
    ) -> CallResult {
        let mut acct = balances.account(s, signer).await?;
        if acct.balance < amount {
            return Ok(Err(TxError::InsufficientBalance { needed: amount, available: acct.balance }));
        }
        let mut rec = self.stake(s, &c.key, signer).await?;
        if rec == StakeRecord::default() {
            let max = params.staking.max_stakers_per_candidate;
            if self.stakers(s, &c.key).await?.len() >= max as usize {
                return Ok(Err(TxError::TooManyStakers { max }));
            }
        }
        let side = if c.owner == *signer { &mut c.self_bond } else { &mut c.nominated };
        let (Some(bonded), Some(sum)) = (rec.bonded.checked_add(amount), side.checked_add(amount)) else {
            return Ok(Err(TxError::Overflow));
        };
        if bonded > MAX_SUPPLY {
            return Ok(Err(TxError::Overflow));
        }
        *side = sum;
        rec.bonded = bonded;
        acct.balance -= amount;
        balances.set_account(s, signer, &acct);
        self.put_stake(s, &c.key, signer, &rec).await?;
        self.put_candidate(s, &c).await?;
        self.adjust(s, StateKey::TotalBonded, "staking total bonded", amount, 0).await?;
        Ok(Ok(()))
    }

    /// `Call::Bond`: register a candidate or add to one's own self-bond.
    pub(crate) async fn bond<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        balances: &Balances,
        params: &Params,
        signer: &Address,
        key: &ValidatorKey,
        amount: Amount,
    ) -> CallResult {
        if amount == 0 {
            return Ok(Err(TxError::ZeroAmount));
        }
        let min = params.staking.min_self_bond;
        let c = match self.candidate(s, key).await? {
            None => {
                if amount < min {
                    return Ok(Err(TxError::BelowMinSelfBond { amount, min }));
                }
                CandidateRecord { key: *key, owner: *signer, self_bond: 0, nominated: 0, genesis: false, jailed: false }
            }
            Some(c) if c.jailed => return Ok(Err(TxError::CandidateJailed)),
            Some(c) if c.owner != *signer => return Ok(Err(TxError::NotCandidateOwner)),
            Some(c) => {
                // A candidate whose stake was all withdrawn registers again under the same rule.
                let dormant = !c.genesis && self.stakers(s, key).await?.is_empty();
                if dormant && amount < min {
                    return Ok(Err(TxError::BelowMinSelfBond { amount, min }));
                }
                c
            }
        };
        self.add_stake(s, balances, params, c, signer, amount).await
    }

    /// `Call::Nominate`: bond toward someone else's candidate.
    pub(crate) async fn nominate<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        balances: &Balances,
        params: &Params,
        signer: &Address,
        key: &ValidatorKey,
        amount: Amount,
    ) -> CallResult {
        if amount == 0 {
            return Ok(Err(TxError::ZeroAmount));
        }
        let c = match self.candidate(s, key).await? {
            None => return Ok(Err(TxError::UnknownCandidate)),
            Some(c) if c.jailed => return Ok(Err(TxError::CandidateJailed)),
            Some(c) if c.owner == *signer => return Ok(Err(TxError::SelfNomination)),
            Some(c) => c,
        };
        self.add_stake(s, balances, params, c, signer, amount).await
    }

    /// `Call::Unbond`: move bonded stake into an unbonding entry.
    pub(crate) async fn unbond<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        params: &Params,
        signer: &Address,
        key: &ValidatorKey,
        amount: Amount,
    ) -> CallResult {
        if amount == 0 {
            return Ok(Err(TxError::ZeroAmount));
        }
        let Some(mut c) = self.candidate(s, key).await? else {
            return Ok(Err(TxError::UnknownCandidate));
        };
        let mut rec = self.stake(s, key, signer).await?;
        if rec.bonded < amount {
            return Ok(Err(TxError::UnbondExceedsBond { bonded: rec.bonded, requested: amount }));
        }
        match rec.unbonding.last_mut() {
            Some(last) if last.start_height == env.height => {
                last.amount = last.amount.checked_add(amount).ok_or(RuntimeError::Corrupt("staking stake"))?;
            }
            _ => {
                let max = params.staking.max_unbonding_entries;
                if rec.unbonding.len() >= max as usize {
                    return Ok(Err(TxError::TooManyUnbondingEntries { max }));
                }
                rec.unbonding.push(UnbondingEntry {
                    amount,
                    start_height: env.height,
                    release_height: env.height.saturating_add(params.staking.unbonding_period),
                });
            }
        }
        rec.bonded -= amount;
        let side = if c.owner == *signer { &mut c.self_bond } else { &mut c.nominated };
        *side = side.checked_sub(amount).ok_or(RuntimeError::Corrupt("staking candidate"))?;
        self.put_stake(s, key, signer, &rec).await?;
        self.put_candidate(s, &c).await?;
        self.adjust(s, StateKey::TotalBonded, "staking total bonded", 0, amount).await?;
        self.adjust(s, StateKey::TotalUnbonding, "staking total unbonding", amount, 0).await?;
        Ok(Ok(()))
    }

    /// `Call::WithdrawUnbonded`: release every matured entry of the signer.
    pub(crate) async fn withdraw_unbonded<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        balances: &Balances,
        signer: &Address,
    ) -> CallResult {
        let mut released: Amount = 0;
        for key in self.account_stakes(s, signer).await? {
            let mut rec = self.stake(s, &key, signer).await?;
            let before = rec.unbonding.len();
            let mut ready: Amount = 0;
            rec.unbonding.retain(|e| {
                let matured = e.release_height <= env.height;
                if matured {
                    ready = ready.saturating_add(e.amount);
                }
                !matured
            });
            if rec.unbonding.len() == before {
                continue;
            }
            released = released.checked_add(ready).ok_or(RuntimeError::Corrupt("staking stake"))?;
            self.put_stake(s, &key, signer, &rec).await?;
            // The candidate may have lost its last staker.
            if let Some(c) = self.candidate(s, &key).await? {
                self.put_candidate(s, &c).await?;
            }
        }
        if released == 0 {
            return Ok(Err(TxError::NothingToWithdraw));
        }
        let mut acct = balances.account(s, signer).await?;
        acct.balance = acct.balance.checked_add(released).ok_or(RuntimeError::Corrupt("account"))?;
        balances.set_account(s, signer, &acct);
        self.adjust(s, StateKey::TotalUnbonding, "staking total unbonding", 0, released).await?;
        Ok(Ok(()))
    }

    /// `Call::SubmitEvidence`: verify an equivocation and slash the offender.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn submit_evidence<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        balances: &Balances,
        params: &Params,
        chain_id: &str,
        verifier: &dyn EvidenceVerifier,
        bytes: &[u8],
    ) -> CallResult {
        let ev = match Evidence::from_bytes(bytes, params.max_tx_bytes as usize) {
            Ok(ev) => ev,
            Err(e) => return Ok(Err(TxError::BadEvidence { reason: format!("malformed evidence: {e}") })),
        };
        let l = params.epoch_length;
        let epoch = ev.epoch;
        if epoch > epoch_of(env.height, l) {
            return Ok(Err(TxError::EvidenceUnknownEpoch { epoch }));
        }
        let Some(committee) = self.committee_of(s, epoch).await? else {
            return Ok(Err(TxError::EvidenceUnknownEpoch { epoch }));
        };
        if env.height >= first_height_of(epoch, l).saturating_add(params.staking.unbonding_period) {
            return Ok(Err(TxError::EvidenceExpired { epoch }));
        }
        let offence = match verifier.verify(&consensus_namespace(chain_id), epoch, &committee, &ev.proof) {
            Ok(o) => o,
            Err(reason) => return Ok(Err(TxError::BadEvidence { reason })),
        };
        if !committee.contains(&offence.offender) {
            return Ok(Err(TxError::OffenderNotInCommittee { epoch }));
        }
        if self.offence(s, &offence.offender, epoch, offence.view).await?.is_some() {
            return Ok(Err(TxError::EvidenceReplay { epoch, view: offence.view }));
        }
        let slashed = self.slash(s, balances, params, &offence.offender, first_height_of(epoch, l)).await?;
        tracing::info!(
            target: "staking.slash",
            height = env.height,
            epoch,
            view = offence.view,
            slashed,
            "equivocation punished"
        );
        s.put(
            &StateKey::Offence { validator: offence.offender, epoch, view: offence.view },
            &OffenceRecord { height: env.height, slashed },
        );
        Ok(Ok(()))
    }

    /// Cuts `slash_fraction_bps` of the stake toward `key` (bonded, and unbonding entries started at
    /// or after `from_height`) into the treasury and jails the candidate. Returns the amount taken.
    async fn slash<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        balances: &Balances,
        params: &Params,
        key: &ValidatorKey,
        from_height: u64,
    ) -> Result<Amount, RuntimeError> {
        // Every committee member has a record: genesis validators get one, and none is deleted.
        let mut c = self.candidate(s, key).await?.ok_or(RuntimeError::Missing("staking candidate"))?;
        let bps = params.staking.slash_fraction_bps;
        let (mut from_bonded, mut from_unbonding): (Amount, Amount) = (0, 0);
        for account in self.stakers(s, key).await? {
            let mut rec = self.stake(s, key, &account).await?;
            let cut = mul_bps(rec.bonded, bps);
            rec.bonded -= cut;
            let side = if account == c.owner { &mut c.self_bond } else { &mut c.nominated };
            *side = side.checked_sub(cut).ok_or(RuntimeError::Corrupt("staking candidate"))?;
            from_bonded = from_bonded.saturating_add(cut);
            for e in rec.unbonding.iter_mut().filter(|e| e.start_height >= from_height) {
                let cut = mul_bps(e.amount, bps);
                e.amount -= cut;
                from_unbonding = from_unbonding.saturating_add(cut);
            }
            rec.unbonding.retain(|e| e.amount > 0);
            self.put_stake(s, key, &account, &rec).await?;
        }
        c.jailed = true;
        self.put_candidate(s, &c).await?;
        self.adjust(s, StateKey::TotalBonded, "staking total bonded", 0, from_bonded).await?;
        self.adjust(s, StateKey::TotalUnbonding, "staking total unbonding", 0, from_unbonding).await?;
        let total = from_bonded.saturating_add(from_unbonding);
        balances.credit(s, &treasury(), total).await?;
        Ok(total)
    }

    /// At the end of the last block of an epoch: chooses, stores and returns the next committee.
    /// `None` in every other block.
    pub(crate) async fn select_at_boundary<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        params: &Params,
    ) -> Result<Option<Vec<ValidatorKey>>, RuntimeError> {
        let l = params.epoch_length;
        if !is_last_in_epoch(env.height, l) {
            return Ok(None);
        }
        let epoch = epoch_of(env.height, l);
        let st = &params.staking;
        let mut ranked: Vec<(Reverse<Amount>, ValidatorKey)> = Vec::new();
        for key in self.candidate_keys(s).await? {
            let c = self.candidate(s, &key).await?.ok_or(RuntimeError::Missing("staking candidate"))?;
            if !c.jailed && (c.genesis || c.self_bond >= st.min_self_bond) {
                ranked.push((Reverse(c.total_stake()), key));
            }
        }
        ranked.sort();
        let mut next: Vec<ValidatorKey> = ranked.into_iter().take(st.committee_size as usize).map(|(_, k)| k).collect();
        if next.is_empty() {
            next = self.committee_of(s, epoch).await?.ok_or(RuntimeError::Missing("staking committee"))?;
        }
        s.put(&StateKey::Committee(epoch.saturating_add(1)), &next);
        tracing::debug!(target: "staking.select", height = env.height, epoch = epoch + 1, size = next.len(), "next committee");
        Ok(Some(next))
    }
}

impl Module for Staking {
    const NAME: &'static str = "staking";

    async fn genesis<S: StateRead>(&self, g: &Genesis, s: &mut Overlay<'_, S>) -> Result<(), RuntimeError> {
        let mut keys = Vec::with_capacity(g.validators.len());
        for v in &g.validators {
            let c = CandidateRecord {
                key: v.key,
                owner: Address(v.key),
                self_bond: 0,
                nominated: 0,
                genesis: true,
                jailed: false,
            };
            s.put(&StateKey::Candidate(v.key), &c);
            insert_sorted(&mut keys, v.key);
        }
        s.put(&StateKey::Candidates, &keys);
        let committee: Vec<ValidatorKey> = g.validators.iter().map(|v| v.key).collect();
        s.put(&StateKey::Committee(0), &committee);
        s.put(&StateKey::TotalBonded, &Amount::from(0u8));
        s.put(&StateKey::TotalUnbonding, &Amount::from(0u8));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bps_cut_rounds_down_and_never_overflows() {
        assert_eq!(mul_bps(10_000, 500), 500);
        assert_eq!(mul_bps(19, 500), 0);
        assert_eq!(mul_bps(u128::MAX, 10_000), u128::MAX);
        assert_eq!(mul_bps(u128::MAX, 0), 0);
        assert_eq!(mul_bps(12_345, 10_001), 12_345);
        for x in [0u128, 1, 9_999, 10_001, 123_456_789] {
            assert_eq!(mul_bps(x, 2_500), x * 2_500 / 10_000);
        }
    }
}
