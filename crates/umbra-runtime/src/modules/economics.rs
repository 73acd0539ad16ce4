//! `economics`: the decaying rewards budget, stake pools, vaults, computation sessions, benchmarks,
//! heartbeats and worker slashing.
//!
//! # Custody
//! Every token of a pool or a vault is an ordinary balance of the economics account
//! (`Address::module("economics")`), so the supply invariant stays `balances + bonded + unbonding ==
//! TotalIssued`; the module's own invariant is that this balance equals the sum over pools of `free +
//! locked` plus the sum over vaults of `free`.
//!
//! # Budget
//! `BudgetRecord::budget` starts at `params.rewards.block_budget` and, at the end of every block whose
//! height is a multiple of `decay_period_blocks`, becomes `budget * (10000 - decay_bps) / 10000`
//! (rounded down). A governance change of `rewards.block_budget` resets it to the new value. Each block
//! pays `budget * validator_reward_share_bps / 10000` to the proposer's owner (staking, up to the reserve),
//! then `min(budget - that, reserve left)` to computing workers.
//!
//! # Compute rewards
//! The compute part is split over the sessions that are computing and responsive, in proportion to
//! `share_i = isqrt(V_i^2 + w * P_i^2)`: `pay_i = compute * share_i / sum(shares)` (rounded down; what
//! rounding leaves stays in the reserve). Of `pay_i`, `pay_i * treasury_share_bps / 10000` goes to the
//! treasury; of the rest, `commission_bps` to the pool owner and the remainder to the pool's free
//! tokens, raising its share price. Every payment is issued from the reserve (never beyond it).
//!
//! # Pools and vaults
//! Shares are minted at `amount * shares / value` (or `amount` for an empty pool) and withdrawn at
//! `shares * value / shares_total`, rounding down both ways so the pool never loses. A withdrawal the
//! free tokens cannot pay (or that arrives while others wait) queues; the queue is paid in order at the
//! end of every block as tokens free. If the oldest request has waited `withdrawal_grace_blocks`, the
//! pool's computing workers are stopped in the order they were added until the free tokens plus the
//! cooling stake cover the whole queue. A vault withdraws what its free tokens cannot pay from its
//! pools, in allocation order (`ceil(shortfall * pool_shares / pool_value)` shares of each, at most what
//! it holds); the pools pay into the vault's free tokens and the vault queue is paid from them.
//! Automatic vaults allocate every `vault_period_blocks` all free tokens (up to the cap room) to the
//! open pool with the highest score `rate * reliability`, where `rate = last_period_rewards * 10^12 /
//! value` and `reliability = answered * 10000 / (answered + missed)` (10000 with no heartbeats); ties go
//! to the lowest pool number, and a score of 0 allocates nothing.
//!
//! # Sessions and heartbeats
//! A session's value is `V = (stake / UNIT + P) * confidence_bps[level] / 10000`. Every block after
//! the transactions, the challenge `SHA-256("umbra/heartbeat/v1" || parent || height)` selects each
//! computing worker without a pending challenge with probability `1 / heartbeat_interval_blocks`
//! ([`umbra_types::economics::heartbeat_selected`]) and sends it `HeartbeatChallenge`. A challenge
//! unanswered after its deadline marks the session unresponsive: it earns nothing and its `V` loses
//! `unresponsive_decay_bps` each block until the worker answers (the loss stays).
//!
//! # Slashing
//! `ReportEquivocation` with two differently-signed messages of one worker origin with the same
//! sequence number slashes `slash_bps` of its session stake to the treasury (the pool's delegators
//! share it through the share price), stops the session and revokes the worker. The other kind of
//! evidence in the design, a contract state-root disagreement, needs contract execution and comes
//! with the contracts issue.
#![allow(clippy::too_many_arguments)] // calls take the block, state, params and the call's fields

use crate::modules::balances::{Balances, treasury};
use crate::modules::registry::{self, Registry};
use crate::{BlockEnv, Overlay, RuntimeError, StateRead};
use umbra_types::economics::{
    AmountStr, BudgetRecord, ComputeStakeRecord, ComputeUnstake, Holding, PendingHeartbeat, PoolRecord, Session,
    SessionState, VaultRecord, WithdrawalRequest, WorkerEconRecord, WorkerIdHex32, compute_stake_account,
    heartbeat_challenge, heartbeat_selected, heartbeat_threshold, min_stake, mul_div, vault_address, worker_share,
    worker_value,
};
use umbra_types::state_keys::StateKey;
use umbra_types::{
    Address, Amount, EconomicsParams, Egress, EgressPayload, MessageBody, Origin, Params, PoolId, SignedEgress, Topic,
    TxError, VaultId, WorkerId,
};

/// The account holding every pool's and vault's tokens.
pub(crate) fn escrow() -> Address {
    Address::module("economics")
}

enum Fail {
    Tx(TxError),
    Rt(RuntimeError),
}

impl From<TxError> for Fail {
    fn from(e: TxError) -> Self {
        Fail::Tx(e)
    }
}

impl From<RuntimeError> for Fail {
    fn from(e: RuntimeError) -> Self {
        Fail::Rt(e)
    }
}

type Res<T> = Result<T, Fail>;

fn settle(r: Res<()>) -> Result<Result<(), TxError>, RuntimeError> {
    match r {
        Ok(()) => Ok(Ok(())),
        Err(Fail::Tx(e)) => Ok(Err(e)),
        Err(Fail::Rt(e)) => Err(e),
    }
}

fn pre(reason: impl Into<String>) -> Fail {
    Fail::Tx(TxError::EconomicsPrecondition { reason: reason.into() })
}

fn not_owner(what: &str) -> Fail {
    Fail::Tx(TxError::NotAuthorized { reason: format!("only the {what}'s owner may do this") })
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

fn bps(amount: Amount, bps: u16) -> Amount {
    mul_div(amount, u128::from(bps), 10_000)
}

/// Shares minted for `amount` in a pot worth `value` with `shares` issued (rounded down).
fn mint(amount: Amount, value: Amount, shares: u128) -> Res<u128> {
    if shares == 0 {
        return Ok(amount);
    }
    if value == 0 {
        return Err(pre("the pot is worth nothing while shares exist; it takes no contributions"));
    }
    Ok(mul_div(amount, shares, value))
}

/// What a block's transactions see of the economics module.
pub(crate) struct Deps<'a> {
    pub(crate) bal: &'a Balances,
    pub(crate) reg: &'a Registry,
}

/// The `economics` module.
pub(crate) struct Economics;

impl Economics {
    // ---- reads ----

    pub(crate) async fn pool<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        id: PoolId,
    ) -> Result<Option<PoolRecord>, RuntimeError> {
        s.get(&StateKey::EconPool(id), "econ pool").await
    }

    pub(crate) async fn pool_ids<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Vec<PoolId>, RuntimeError> {
        Ok(s.get(&StateKey::EconPools, "econ pools").await?.unwrap_or_default())
    }

    pub(crate) async fn vault<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        id: VaultId,
    ) -> Result<Option<VaultRecord>, RuntimeError> {
        s.get(&StateKey::EconVault(id), "econ vault").await
    }

    pub(crate) async fn vault_ids<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Vec<VaultId>, RuntimeError> {
        Ok(s.get(&StateKey::EconVaults, "econ vaults").await?.unwrap_or_default())
    }

    pub(crate) async fn pool_holding<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        pool: PoolId,
        who: &Address,
    ) -> Result<Holding, RuntimeError> {
        Ok(s.get(&StateKey::EconPoolHolding(pool, *who), "econ holding").await?.unwrap_or_default())
    }

    pub(crate) async fn vault_holding<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        vault: VaultId,
        who: &Address,
    ) -> Result<Holding, RuntimeError> {
        Ok(s.get(&StateKey::EconVaultHolding(vault, *who), "econ holding").await?.unwrap_or_default())
    }

    pub(crate) async fn worker<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        id: &WorkerId,
    ) -> Result<WorkerEconRecord, RuntimeError> {
        Ok(s.get(&StateKey::EconWorker(*id), "econ worker").await?.unwrap_or_default())
    }

    pub(crate) async fn sessions<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Vec<WorkerId>, RuntimeError> {
        Ok(s.get(&StateKey::EconSessions, "econ sessions").await?.unwrap_or_default())
    }

    pub(crate) async fn budget<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        params: &Params,
    ) -> Result<BudgetRecord, RuntimeError> {
        let b: Option<BudgetRecord> = s.get(&StateKey::EconBudget, "econ budget").await?;
        Ok(match b {
            Some(b) if b.base == params.rewards.block_budget => b,
            _ => BudgetRecord { base: params.rewards.block_budget, budget: params.rewards.block_budget },
        })
    }

    /// A vault's value: free tokens plus the value of its pool shares.
    pub(crate) async fn vault_value<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        v: &VaultRecord,
    ) -> Result<Amount, RuntimeError> {
        let mut value = v.free;
        let addr = vault_address(v.id);
        for p in &v.pools {
            if let Some(pool) = self.pool(s, *p).await? {
                let h = self.pool_holding(s, *p, &addr).await?;
                value = value.saturating_add(pool.value_of(h.shares));
            }
        }
        Ok(value)
    }

    async fn get_pool<S: StateRead>(&self, s: &Overlay<'_, S>, id: PoolId) -> Res<PoolRecord> {
        self.pool(s, id).await?.ok_or(Fail::Tx(TxError::UnknownPool { id }))
    }

    async fn get_vault<S: StateRead>(&self, s: &Overlay<'_, S>, id: VaultId) -> Res<VaultRecord> {
        self.vault(s, id).await?.ok_or(Fail::Tx(TxError::UnknownVault { id }))
    }

    fn put_pool<S: StateRead>(&self, s: &mut Overlay<'_, S>, p: &PoolRecord) {
        s.put(&StateKey::EconPool(p.id), p);
    }

    fn put_vault<S: StateRead>(&self, s: &mut Overlay<'_, S>, v: &VaultRecord) {
        s.put(&StateKey::EconVault(v.id), v);
    }

    fn put_worker<S: StateRead>(&self, s: &mut Overlay<'_, S>, id: &WorkerId, w: &WorkerEconRecord) {
        s.put(&StateKey::EconWorker(*id), w);
    }

    fn put_holding<S: StateRead>(&self, s: &mut Overlay<'_, S>, key: StateKey, h: &Holding) {
        if *h == Holding::default() {
            s.put_raw(key.hash(), None);
        } else {
            s.put(&key, h);
        }
    }

    // ---- pools ----

    /// `Call::CreatePool`.
    pub(crate) async fn create_pool<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        signer: &Address,
        commission_bps: u16,
        cap: Option<Amount>,
        allow: Option<Vec<Address>>,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        if commission_bps > 10_000 {
            return Ok(Err(TxError::EconomicsPrecondition { reason: "commission must be at most 10000 bps".into() }));
        }
        let id: PoolId = s.get(&StateKey::EconPoolNext, "econ pool next").await?.unwrap_or(0);
        let mut allow = allow;
        if let Some(a) = allow.as_mut() {
            a.sort();
            a.dedup();
        }
        let pool = PoolRecord {
            id,
            owner: *signer,
            commission_bps,
            cap,
            allow,
            workers: Vec::new(),
            shares: 0,
            free: 0,
            locked: 0,
            queue: Vec::new(),
            holders: Vec::new(),
            rewards_total: 0,
            period_rewards: 0,
            last_period_rewards: 0,
            heartbeats_answered: 0,
            heartbeats_missed: 0,
        };
        self.put_pool(s, &pool);
        s.put(&StateKey::EconPoolNext, &id.saturating_add(1));
        let mut ids = self.pool_ids(s).await?;
        ids.push(id);
        s.put(&StateKey::EconPools, &ids);
        tracing::info!(target: "economics.create_pool", pool = id, owner = %signer, commission_bps, "pool created");
        Ok(Ok(()))
    }

    /// `Call::PoolAddWorker`.
    pub(crate) async fn add_worker<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        reg: &Registry,
        params: &Params,
        signer: &Address,
        pool: PoolId,
        worker: &WorkerId,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(
            async {
                let mut p = self.get_pool(s, pool).await?;
                if p.owner != *signer {
                    return Err(not_owner("pool"));
                }
                let rec = reg.worker(s, worker).await?.ok_or(Fail::Tx(TxError::UnknownWorker))?;
                if rec.operator != *signer {
                    return Err(Fail::Tx(TxError::NotAuthorized {
                        reason: "the pool owner must be the worker's operator".into(),
                    }));
                }
                if !rec.is_active(env.height) {
                    return Err(Fail::Tx(TxError::WorkerInactive { reason: "revoked or expired".into() }));
                }
                let mut w = self.worker(s, worker).await?;
                if w.pool.is_some() {
                    return Err(pre("the worker already belongs to a pool"));
                }
                if w.slashed {
                    return Err(pre("the worker was slashed"));
                }
                if p.workers.len() >= params.economics.max_pool_workers as usize {
                    return Err(pre("the pool has the most workers allowed"));
                }
                p.workers.push(WorkerIdHex32(*worker));
                w.pool = Some(pool);
                self.put_worker(s, worker, &w);
                self.put_pool(s, &p);
                Ok(())
            }
            .await,
        )
    }

    /// Adds `amount` (already in escrow) to a pool for `holder`; returns the shares minted.
    async fn pool_deposit<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        ep: &EconomicsParams,
        holder: &Address,
        p: &mut PoolRecord,
        amount: Amount,
    ) -> Res<u128> {
        if amount == 0 {
            return Err(TxError::ZeroAmount.into());
        }
        if let Some(allow) = &p.allow
            && allow.binary_search(holder).is_err()
        {
            return Err(Fail::Tx(TxError::NotAuthorized { reason: "not on the pool's allow-list".into() }));
        }
        let new_value = p.value().checked_add(amount).ok_or(Fail::Tx(TxError::Overflow))?;
        if let Some(cap) = p.cap
            && new_value > cap
        {
            return Err(pre(format!("the pool's cap of {cap} would be exceeded")));
        }
        let minted = mint(amount, p.value(), p.shares)?;
        if minted == 0 {
            return Err(pre("the amount buys no share"));
        }
        let key = StateKey::EconPoolHolding(p.id, *holder);
        let mut h = self.pool_holding(s, p.id, holder).await?;
        if h.shares == 0 {
            if p.holders.len() >= ep.max_holders as usize {
                return Err(pre("the pool has the most holders allowed"));
            }
            insert_sorted(&mut p.holders, *holder);
        }
        h.shares = h.shares.saturating_add(minted);
        p.shares = p.shares.saturating_add(minted);
        p.free = p.free.saturating_add(amount);
        self.put_holding(s, key, &h);
        Ok(minted)
    }

    /// `Call::PoolContribute`.
    pub(crate) async fn contribute<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        params: &Params,
        signer: &Address,
        pool: PoolId,
        amount: Amount,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(
            async {
                let mut p = self.get_pool(s, pool).await?;
                let minted = self.pool_deposit(s, &params.economics, signer, &mut p, amount).await?;
                bal.transfer(s, signer, &escrow(), amount).await??;
                self.put_pool(s, &p);
                tracing::debug!(target: "economics.contribute", pool, who = %signer, amount, minted, "contributed");
                Ok(())
            }
            .await,
        )
    }

    /// Requests a pool withdrawal of `shares` by `holder` (paid into `vault` if set).
    async fn pool_request<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        ep: &EconomicsParams,
        holder: &Address,
        vault: Option<VaultId>,
        p: &mut PoolRecord,
        shares: u128,
    ) -> Res<()> {
        if shares == 0 {
            return Err(TxError::ZeroAmount.into());
        }
        let mut h = self.pool_holding(s, p.id, holder).await?;
        let available = h.shares.saturating_sub(h.queued);
        if shares > available {
            return Err(TxError::InsufficientShares { available, requested: shares }.into());
        }
        if p.queue.len() >= ep.max_holders as usize {
            return Err(pre("the pool's withdrawal queue is full"));
        }
        h.queued = h.queued.saturating_add(shares);
        self.put_holding(s, StateKey::EconPoolHolding(p.id, *holder), &h);
        p.queue.push(WithdrawalRequest { holder: *holder, vault, shares, requested_at: env.height });
        // Paid at once when nothing waits ahead and the free tokens cover it.
        self.pay_pool_queue(s, bal, p).await?;
        Ok(())
    }

    /// `Call::PoolWithdraw`.
    pub(crate) async fn withdraw<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        params: &Params,
        signer: &Address,
        pool: PoolId,
        shares: u128,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(
            async {
                let mut p = self.get_pool(s, pool).await?;
                self.pool_request(env, s, bal, &params.economics, signer, None, &mut p, shares).await?;
                self.put_pool(s, &p);
                Ok(())
            }
            .await,
        )
    }

    /// Pays a pool's queued withdrawals in order while its free tokens cover them.
    async fn pay_pool_queue<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        p: &mut PoolRecord,
    ) -> Result<(), RuntimeError> {
        while let Some(req) = p.queue.first().cloned() {
            let key = StateKey::EconPoolHolding(p.id, req.holder);
            let mut h = self.pool_holding(s, p.id, &req.holder).await?;
            let shares = req.shares.min(h.shares);
            let owed = p.value_of(shares);
            if owed > p.free {
                break;
            }
            p.queue.remove(0);
            h.shares -= shares;
            h.queued = h.queued.saturating_sub(req.shares);
            p.shares = p.shares.saturating_sub(shares);
            p.free -= owed;
            if h.shares == 0 {
                remove_sorted(&mut p.holders, &req.holder);
            }
            self.put_holding(s, key, &h);
            match req.vault {
                Some(v) => {
                    if let Some(mut vault) = self.vault(s, v).await? {
                        vault.free = vault.free.saturating_add(owed);
                        self.put_vault(s, &vault);
                    }
                }
                None if owed > 0 && bal.transfer(s, &escrow(), &req.holder, owed).await?.is_err() => {
                    return Err(RuntimeError::Corrupt("economics escrow"));
                }
                None => {}
            }
            tracing::debug!(target: "economics.withdraw", pool = p.id, holder = %req.holder, shares, owed, "withdrawal paid");
        }
        Ok(())
    }

    // ---- sessions ----

    /// `Call::StartComputing`.
    pub(crate) async fn start<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        reg: &Registry,
        params: &Params,
        signer: &Address,
        worker: &WorkerId,
        stake: Amount,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(
            async {
                let ep = &params.economics;
                let mut w = self.worker(s, worker).await?;
                let pool = w.pool.ok_or_else(|| pre("the worker belongs to no pool"))?;
                let mut p = self.get_pool(s, pool).await?;
                if p.owner != *signer {
                    return Err(not_owner("pool"));
                }
                let rec = reg.worker(s, worker).await?.ok_or(Fail::Tx(TxError::UnknownWorker))?;
                if !rec.is_active(env.height) || w.slashed {
                    return Err(Fail::Tx(TxError::WorkerInactive { reason: "revoked, expired or slashed".into() }));
                }
                if w.session.is_some() {
                    return Err(pre("the worker already has a session"));
                }
                if w.initial_score == 0 {
                    return Err(pre("the worker has not reported a benchmark"));
                }
                let min = min_stake(ep, w.score);
                if stake < min {
                    return Err(TxError::StakeBelowMinimum { stake, min }.into());
                }
                if !p.queue.is_empty() {
                    return Err(pre("withdrawals are waiting for the pool's free tokens"));
                }
                if stake > p.free {
                    return Err(TxError::InsufficientBalance { needed: stake, available: p.free }.into());
                }
                p.free -= stake;
                p.locked = p.locked.saturating_add(stake);
                let value = worker_value(ep, stake, w.score, rec.confidence);
                w.session = Some(Session {
                    stake,
                    value,
                    started_at: env.height,
                    state: SessionState::Computing,
                    responsive: true,
                    pending: None,
                    earned: 0,
                    expired: None,
                });
                self.put_worker(s, worker, &w);
                self.put_pool(s, &p);
                let mut list = self.sessions(s).await?;
                insert_sorted(&mut list, *worker);
                s.put(&StateKey::EconSessions, &list);
                tracing::info!(target: "economics.start", pool, stake, value, "worker computing");
                Ok(())
            }
            .await,
        )
    }

    /// `Call::StopComputing`.
    pub(crate) async fn stop<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        params: &Params,
        signer: &Address,
        worker: &WorkerId,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(
            async {
                let mut w = self.worker(s, worker).await?;
                let pool = w.pool.ok_or_else(|| pre("the worker belongs to no pool"))?;
                if self.get_pool(s, pool).await?.owner != *signer {
                    return Err(not_owner("pool"));
                }
                match w.session.as_mut() {
                    Some(sess) if sess.state == SessionState::Computing => {
                        sess.state = SessionState::CoolingDown {
                            until: env.height.saturating_add(params.economics.cooldown_blocks),
                        };
                        sess.pending = None;
                    }
                    _ => return Err(pre("the worker is not computing")),
                }
                self.put_worker(s, worker, &w);
                Ok(())
            }
            .await,
        )
    }

    // ---- egress ----

    /// Runs a `Benchmark` or `Heartbeat` egress payload of a worker (its sequence already consumed).
    pub(crate) async fn egress<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        reg: &Registry,
        params: &Params,
        egress: &Egress,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(
            async {
                let Origin::Worker(id) = egress.origin else {
                    return Err(pre(format!("{} is accepted only from a worker", egress.payload.kind())));
                };
                let rec = reg.worker(s, &id).await?.ok_or(Fail::Tx(TxError::UnknownWorker))?;
                if !rec.is_active(env.height) {
                    return Err(Fail::Tx(TxError::WorkerInactive { reason: "revoked or expired".into() }));
                }
                let ep = &params.economics;
                let mut w = self.worker(s, &id).await?;
                match &egress.payload {
                    EgressPayload::Benchmark { score } => {
                        if *score == 0 || *score > ep.max_score {
                            return Err(pre(format!("a benchmark score must be 1 to {}", ep.max_score)));
                        }
                        if w.session.is_some() {
                            return Err(pre("a worker with a session cannot re-benchmark"));
                        }
                        w.initial_score = *score;
                        w.score = *score;
                        tracing::info!(target: "economics.benchmark", score, "benchmark recorded");
                    }
                    EgressPayload::Heartbeat { challenge, score } => {
                        let refuse = |r: String| Fail::Tx(TxError::BadHeartbeat { reason: r });
                        let pool = w.pool;
                        let Some(sess) = w.session.as_mut() else {
                            return Err(refuse("the worker has no session".into()));
                        };
                        match (&sess.pending, &sess.expired) {
                            (Some(PendingHeartbeat { challenge: c, .. }), _) if c == challenge => {}
                            (_, Some(PendingHeartbeat { challenge: c, deadline })) if c == challenge => {
                                return Err(refuse(format!(
                                    "the challenge expired at height {deadline}; answer the next one"
                                )));
                            }
                            _ => return Err(refuse("no such challenge is pending for this worker".into())),
                        }
                        let cap = mul_div(u128::from(w.initial_score), u128::from(ep.heartbeat_cap_bps), 10_000);
                        if *score == 0 || u128::from(*score) > cap {
                            return Err(refuse(format!(
                                "instant score {score} is outside 1..={cap} ({} bps of the benchmark {})",
                                ep.heartbeat_cap_bps, w.initial_score
                            )));
                        }
                        sess.pending = None;
                        sess.responsive = true;
                        w.score = *score;
                        w.answered = w.answered.saturating_add(1);
                        if let Some(pool) = pool
                            && let Some(mut p) = self.pool(s, pool).await?
                        {
                            p.heartbeats_answered = p.heartbeats_answered.saturating_add(1);
                            self.put_pool(s, &p);
                        }
                    }
                    other => return Err(pre(format!("{} is not an economics payload", other.kind()))),
                }
                self.put_worker(s, &id, &w);
                Ok(())
            }
            .await,
        )
    }

    // ---- slashing ----

    /// `Call::ReportEquivocation`.
    pub(crate) async fn report_equivocation<S: StateRead>(
        &self,
        cx: &registry::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        deps: &Deps<'_>,
        first: &SignedEgress,
        second: &SignedEgress,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(
            async {
                let bad = |r: &str| Fail::Tx(TxError::BadEquivocationEvidence { reason: r.into() });
                let (a, b) = (&first.egress, &second.egress);
                let Origin::Worker(id) = a.origin else {
                    return Err(bad("only worker origins are slashed here"));
                };
                if a.origin != b.origin || a.seq != b.seq {
                    return Err(bad("the messages differ in origin or sequence"));
                }
                if a == b {
                    return Err(bad("the messages are the same"));
                }
                for m in [first, second] {
                    umbra_crypto::verify(&Address(id), &m.egress.signing_bytes(cx.chain_id), &m.signature)
                        .map_err(|_| bad("a signature does not verify under the worker's key"))?;
                }
                if self.worker(s, &id).await?.slashed {
                    return Err(bad("the worker was already slashed"));
                }
                self.slash(cx, s, deps, &id, "equivocation: two signed messages with one sequence").await?;
                Ok(())
            }
            .await,
        )
    }

    /// Slashes `slash_bps` of a worker's session stake to the treasury (the pool's holders share the
    /// loss through the share price), stops its session and revokes its registration.
    async fn slash<S: StateRead>(
        &self,
        cx: &registry::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        deps: &Deps<'_>,
        id: &WorkerId,
        reason: &str,
    ) -> Res<Amount> {
        let rec = deps.reg.worker(s, id).await?.ok_or(Fail::Tx(TxError::UnknownWorker))?;
        let mut w = self.worker(s, id).await?;
        w.slashed = true;
        w.slash_reason = Some(reason.to_string());
        let mut slashed = 0;
        if let (Some(pool), Some(sess)) = (w.pool, w.session.as_mut()) {
            slashed = bps(sess.stake, cx.params.economics.slash_bps);
            sess.stake -= slashed;
            sess.pending = None;
            if sess.state == SessionState::Computing {
                sess.state = SessionState::CoolingDown {
                    until: cx.env.height.saturating_add(cx.params.economics.cooldown_blocks),
                };
            }
            let mut p = self.get_pool(s, pool).await?;
            p.locked = p.locked.checked_sub(slashed).ok_or(RuntimeError::Corrupt("econ pool locked"))?;
            self.put_pool(s, &p);
            if slashed > 0 {
                deps.bal.transfer(s, &escrow(), &treasury(), slashed).await??;
            }
        }
        self.put_worker(s, id, &w);
        if rec.revoked.is_none() {
            deps.reg.revoke_worker(cx, s, id, reason).await??;
        }
        tracing::warn!(target: "economics.slash", height = cx.env.height, slashed, reason, "worker slashed");
        Ok(slashed)
    }

    /// `Call::ReportStateRootDisagreement`: `message` is a worker's signed `ContractIncident` saying its
    /// root of command `seq` differs from the recorded one. It proves misbehaviour when the signature
    /// verifies under the worker's key, the worker is a member of the contract's cluster, the recorded
    /// result is older than `heartbeat_window_blocks` (the members had a window to dispute it), and the
    /// workers disputing that result (recorded incidents of other workers plus this one) are fewer
    /// than half the cluster's members: the recorded root is the majority's and this worker's is not.
    pub(crate) async fn report_state_root<S: StateRead>(
        &self,
        cx: &registry::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        deps: &Deps<'_>,
        message: &SignedEgress,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        use umbra_types::contracts::{CommandRecord, ContractRecord, Incident};
        use umbra_types::registry::ClusterRecord;
        settle(
            async {
                let bad = |r: &str| Fail::Tx(TxError::BadStateRootEvidence { reason: r.into() });
                let e = &message.egress;
                let Origin::Worker(id) = e.origin else { return Err(bad("the message is not a worker's")) };
                let EgressPayload::ContractIncident { contract, seq, state_root } = &e.payload else {
                    return Err(bad("the message is not a contract incident"));
                };
                umbra_crypto::verify(&Address(id), &e.signing_bytes(cx.chain_id), &message.signature)
                    .map_err(|_| bad("the signature does not verify under the worker's key"))?;
                if self.worker(s, &id).await?.slashed {
                    return Err(bad("the worker was already slashed"));
                }
                let rec: ContractRecord = s
                    .get(&StateKey::Contract(*contract), "contracts contract")
                    .await?
                    .ok_or(bad("no such contract"))?;
                let cmd: Option<CommandRecord> =
                    s.get(&StateKey::ContractCommand { contract: *contract, seq: *seq }, "contracts command").await?;
                let Some(result) = cmd.and_then(|c| c.result) else {
                    return Err(bad("the command has no recorded result"));
                };
                if result.state_root == *state_root {
                    return Err(bad("the worker's root agrees with the recorded one"));
                }
                let window = cx.params.economics.heartbeat_window_blocks;
                if cx.env.height <= result.reported_at.saturating_add(window) {
                    return Err(bad(&format!(
                        "the dispute window of the result ends at height {}",
                        result.reported_at.saturating_add(window)
                    )));
                }
                let cluster: ClusterRecord = s
                    .get(&StateKey::Cluster(rec.cluster), "registry cluster")
                    .await?
                    .ok_or(bad("the contract's cluster is gone"))?;
                if !cluster.members.iter().any(|m| m.0 == id) {
                    return Err(bad("the worker is not a member of the contract's cluster"));
                }
                let incidents: Vec<Incident> =
                    s.get(&StateKey::ContractIncidents(*contract), "contracts incidents").await?.unwrap_or_default();
                let mut disputing: Vec<WorkerId> = incidents
                    .iter()
                    .filter(|i| i.seq == *seq && i.reported != result.state_root)
                    .map(|i| i.worker)
                    .collect();
                disputing.push(id);
                disputing.sort();
                disputing.dedup();
                if disputing.len() * 2 >= cluster.members.len() {
                    return Err(bad(&format!(
                        "{} of the cluster's {} members dispute the recorded root: it is not the majority's",
                        disputing.len(),
                        cluster.members.len()
                    )));
                }
                self.slash(cx, s, deps, &id, "contract state root disagrees with the cluster majority").await?;
                Ok(())
            }
            .await,
        )
    }

    /// `Call::PoolReclaim`.
    pub(crate) async fn reclaim<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        reg: &Registry,
        signer: &Address,
        pool: PoolId,
        worker: &WorkerId,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(
            async {
                let mut p = self.get_pool(s, pool).await?;
                let mut w = self.worker(s, worker).await?;
                if w.pool != Some(pool) {
                    return Err(pre(format!("the worker is not in pool {pool}")));
                }
                let active = reg.worker(s, worker).await?.is_some_and(|r| r.is_active(env.height));
                if p.owner != *signer && active && !w.slashed {
                    return Err(Fail::Tx(TxError::NotAuthorized {
                        reason: "only the pool's owner may reclaim an active worker".into(),
                    }));
                }
                match &w.session {
                    Some(Session { state: SessionState::Computing, .. }) => {
                        return Err(pre("the worker is computing: stop it first"));
                    }
                    Some(Session { state: SessionState::CoolingDown { until }, .. }) => {
                        return Err(pre(format!("the worker's stake cools down until height {until}")));
                    }
                    None => {}
                }
                p.workers.retain(|x| x.0 != *worker);
                w.pool = None;
                self.put_pool(s, &p);
                self.put_worker(s, worker, &w);
                tracing::info!(target: "economics.reclaim", pool, height = env.height, "worker reclaimed from its pool");
                Ok(())
            }
            .await,
        )
    }

    /// `Call::VaultSetMode`.
    pub(crate) async fn vault_set_mode<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        signer: &Address,
        vault: VaultId,
        auto: bool,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(
            async {
                let mut v = self.get_vault(s, vault).await?;
                if v.owner != *signer {
                    return Err(not_owner("vault"));
                }
                if v.auto == auto {
                    return Err(pre(format!("the vault is already {}", if auto { "automatic" } else { "manual" })));
                }
                v.auto = auto;
                self.put_vault(s, &v);
                Ok(())
            }
            .await,
        )
    }

    // ---- stake-to-compute ----

    /// Compute stake on one contract.
    pub(crate) async fn compute_stake<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        contract: &[u8; 32],
    ) -> Result<Option<ComputeStakeRecord>, RuntimeError> {
        s.get(&StateKey::EconComputeStake(*contract), "econ compute stake").await
    }

    /// Contracts with compute stake on a cluster, ascending.
    pub(crate) async fn cluster_stakes<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        cluster: u32,
    ) -> Result<Vec<[u8; 32]>, RuntimeError> {
        Ok(s.get(&StateKey::EconClusterStakes(cluster), "econ cluster stakes").await?.unwrap_or_default())
    }

    /// Compute stake on its way back, by release height.
    pub(crate) async fn unstakes<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Vec<ComputeUnstake>, RuntimeError> {
        Ok(s.get(&StateKey::EconUnstakes, "econ unstakes").await?.unwrap_or_default())
    }

    /// `Call::StakeCompute`.
    pub(crate) async fn stake_compute<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        params: &Params,
        signer: &Address,
        contract: &[u8; 32],
        amount: Amount,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        use umbra_types::contracts::ContractRecord;
        settle(
            async {
                if amount == 0 {
                    return Err(TxError::ZeroAmount.into());
                }
                let c: ContractRecord = s
                    .get(&StateKey::Contract(*contract), "contracts contract")
                    .await?
                    .ok_or(Fail::Tx(TxError::UnknownContract))?;
                let max = params.economics.max_compute_stakers as usize;
                let mut rec = self.compute_stake(s, contract).await?.unwrap_or_else(|| ComputeStakeRecord {
                    cluster: c.cluster,
                    total: 0,
                    stakers: Vec::new(),
                });
                if rec.total == 0 {
                    let mut list = self.cluster_stakes(s, rec.cluster).await?;
                    if list.binary_search(contract).is_err() {
                        if list.len() >= max {
                            return Err(pre("the cluster has the most staked contracts allowed"));
                        }
                        insert_sorted(&mut list, *contract);
                        s.put(&StateKey::EconClusterStakes(rec.cluster), &list);
                    }
                }
                rec.total = rec.total.checked_add(amount).ok_or(Fail::Tx(TxError::Overflow))?;
                match rec.stakers.binary_search_by(|(a, _)| a.cmp(signer)) {
                    Ok(i) => rec.stakers[i].1.0 = rec.stakers[i].1.0.saturating_add(amount),
                    Err(i) => {
                        if rec.stakers.len() >= max {
                            return Err(pre("the contract has the most stakers allowed"));
                        }
                        rec.stakers.insert(i, (*signer, AmountStr(amount)));
                    }
                }
                bal.transfer(s, signer, &compute_stake_account(), amount).await??;
                s.put(&StateKey::EconComputeStake(*contract), &rec);
                Ok(())
            }
            .await,
        )
    }

    /// `Call::UnstakeCompute`.
    pub(crate) async fn unstake_compute<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        params: &Params,
        signer: &Address,
        contract: &[u8; 32],
        amount: Amount,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(
            async {
                if amount == 0 {
                    return Err(TxError::ZeroAmount.into());
                }
                let mut rec =
                    self.compute_stake(s, contract).await?.ok_or_else(|| pre("no compute stake on this contract"))?;
                let i = rec
                    .stakers
                    .binary_search_by(|(a, _)| a.cmp(signer))
                    .map_err(|_| pre("the signer has no compute stake on this contract"))?;
                let held = rec.stakers[i].1.0;
                if amount > held {
                    return Err(TxError::InsufficientBalance { needed: amount, available: held }.into());
                }
                let mut unstakes = self.unstakes(s).await?;
                if unstakes.len() >= params.economics.max_holders as usize {
                    return Err(pre("too many unstakings are waiting; try again later"));
                }
                if held == amount {
                    rec.stakers.remove(i);
                } else {
                    rec.stakers[i].1.0 = held - amount;
                }
                rec.total -= amount;
                if rec.total == 0 {
                    let mut list = self.cluster_stakes(s, rec.cluster).await?;
                    remove_sorted(&mut list, contract);
                    s.put(&StateKey::EconClusterStakes(rec.cluster), &list);
                }
                let release_at = env.height.saturating_add(params.economics.compute_unstake_blocks);
                unstakes.push(ComputeUnstake { staker: *signer, contract: *contract, amount, release_at });
                s.put(&StateKey::EconUnstakes, &unstakes);
                s.put(&StateKey::EconComputeStake(*contract), &rec);
                Ok(())
            }
            .await,
        )
    }

    /// Pays back compute stake whose delay ended.
    async fn release_unstakes<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
    ) -> Result<(), RuntimeError> {
        let unstakes = self.unstakes(s).await?;
        if unstakes.first().is_none_or(|u| u.release_at > env.height) {
            return Ok(());
        }
        let (due, keep): (Vec<_>, Vec<_>) = unstakes.into_iter().partition(|u| u.release_at <= env.height);
        for u in due {
            if bal.transfer(s, &compute_stake_account(), &u.staker, u.amount).await?.is_err() {
                return Err(RuntimeError::Corrupt("compute stake account"));
            }
        }
        s.put(&StateKey::EconUnstakes, &keep);
        Ok(())
    }

    // ---- vaults ----

    /// `Call::CreateVault`.
    pub(crate) async fn create_vault<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        signer: &Address,
        auto: bool,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        let id: VaultId = s.get(&StateKey::EconVaultNext, "econ vault next").await?.unwrap_or(0);
        let v = VaultRecord {
            id,
            owner: *signer,
            auto,
            shares: 0,
            free: 0,
            pools: Vec::new(),
            queue: Vec::new(),
            holders: Vec::new(),
        };
        self.put_vault(s, &v);
        s.put(&StateKey::EconVaultNext, &id.saturating_add(1));
        let mut ids = self.vault_ids(s).await?;
        ids.push(id);
        s.put(&StateKey::EconVaults, &ids);
        Ok(Ok(()))
    }

    /// `Call::VaultContribute`.
    pub(crate) async fn vault_contribute<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        params: &Params,
        signer: &Address,
        vault: VaultId,
        amount: Amount,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(
            async {
                if amount == 0 {
                    return Err(TxError::ZeroAmount.into());
                }
                let mut v = self.get_vault(s, vault).await?;
                let value = self.vault_value(s, &v).await?;
                let minted = mint(amount, value, v.shares)?;
                if minted == 0 {
                    return Err(pre("the amount buys no share"));
                }
                let mut h = self.vault_holding(s, vault, signer).await?;
                if h.shares == 0 {
                    if v.holders.len() >= params.economics.max_holders as usize {
                        return Err(pre("the vault has the most holders allowed"));
                    }
                    insert_sorted(&mut v.holders, *signer);
                }
                h.shares = h.shares.saturating_add(minted);
                v.shares = v.shares.saturating_add(minted);
                v.free = v.free.saturating_add(amount);
                bal.transfer(s, signer, &escrow(), amount).await??;
                self.put_holding(s, StateKey::EconVaultHolding(vault, *signer), &h);
                self.put_vault(s, &v);
                Ok(())
            }
            .await,
        )
    }

    /// Moves `amount` of a vault's free tokens into a pool.
    async fn allocate_inner<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        ep: &EconomicsParams,
        v: &mut VaultRecord,
        pool: PoolId,
        amount: Amount,
    ) -> Res<()> {
        if amount > v.free {
            return Err(TxError::InsufficientBalance { needed: amount, available: v.free }.into());
        }
        let mut p = self.get_pool(s, pool).await?;
        self.pool_deposit(s, ep, &vault_address(v.id), &mut p, amount).await?;
        v.free -= amount;
        if !v.pools.contains(&pool) {
            v.pools.push(pool);
        }
        self.put_pool(s, &p);
        Ok(())
    }

    /// `Call::VaultAllocate`.
    pub(crate) async fn vault_allocate<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        params: &Params,
        signer: &Address,
        vault: VaultId,
        pool: PoolId,
        amount: Amount,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(
            async {
                let mut v = self.get_vault(s, vault).await?;
                if v.owner != *signer {
                    return Err(not_owner("vault"));
                }
                if !v.queue.is_empty() {
                    return Err(pre("withdrawals are waiting for the vault's free tokens"));
                }
                self.allocate_inner(s, &params.economics, &mut v, pool, amount).await?;
                self.put_vault(s, &v);
                Ok(())
            }
            .await,
        )
    }

    /// `Call::VaultDeallocate`.
    pub(crate) async fn vault_deallocate<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        params: &Params,
        signer: &Address,
        vault: VaultId,
        pool: PoolId,
        shares: u128,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(
            async {
                let v = self.get_vault(s, vault).await?;
                if v.owner != *signer {
                    return Err(not_owner("vault"));
                }
                let mut p = self.get_pool(s, pool).await?;
                let addr = vault_address(vault);
                self.pool_request(env, s, bal, &params.economics, &addr, Some(vault), &mut p, shares).await?;
                self.put_pool(s, &p);
                Ok(())
            }
            .await,
        )
    }

    /// `Call::VaultWithdraw`.
    pub(crate) async fn vault_withdraw<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        params: &Params,
        signer: &Address,
        vault: VaultId,
        shares: u128,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(
            async {
                let ep = &params.economics;
                if shares == 0 {
                    return Err(TxError::ZeroAmount.into());
                }
                let mut v = self.get_vault(s, vault).await?;
                let mut h = self.vault_holding(s, vault, signer).await?;
                let available = h.shares.saturating_sub(h.queued);
                if shares > available {
                    return Err(TxError::InsufficientShares { available, requested: shares }.into());
                }
                if v.queue.len() >= ep.max_holders as usize {
                    return Err(pre("the vault's withdrawal queue is full"));
                }
                h.queued = h.queued.saturating_add(shares);
                self.put_holding(s, StateKey::EconVaultHolding(vault, *signer), &h);
                let value = self.vault_value(s, &v).await?;
                let owed = mul_div(shares, value, v.shares);
                v.queue.push(WithdrawalRequest { holder: *signer, vault: None, shares, requested_at: env.height });
                // Cascade: what the free tokens cannot pay (after earlier requests) is withdrawn from the pools.
                let mut waiting: Amount = 0;
                for r in &v.queue {
                    waiting = waiting.saturating_add(mul_div(r.shares, value, v.shares));
                }
                let mut shortfall = waiting.saturating_sub(v.free).min(owed);
                let addr = vault_address(vault);
                for pid in v.pools.clone() {
                    if shortfall == 0 {
                        break;
                    }
                    let mut p = self.get_pool(s, pid).await?;
                    let ph = self.pool_holding(s, pid, &addr).await?;
                    let free_shares = ph.shares.saturating_sub(ph.queued);
                    if free_shares == 0 || p.value() == 0 {
                        continue;
                    }
                    // ceil(shortfall * shares / value), at most what the vault holds unqueued.
                    let need = mul_div(shortfall, p.shares, p.value()).saturating_add(1).min(free_shares);
                    let covers = p.value_of(need);
                    self.pool_request(env, s, bal, ep, &addr, Some(vault), &mut p, need).await?;
                    self.put_pool(s, &p);
                    shortfall = shortfall.saturating_sub(covers);
                }
                // A pool paying at once credited the vault's free tokens: re-read them.
                v.free = self.get_vault(s, vault).await?.free;
                self.pay_vault_queue(s, bal, &mut v).await?;
                self.put_vault(s, &v);
                Ok(())
            }
            .await,
        )
    }

    /// Pays a vault's queued withdrawals in order while its free tokens cover them.
    async fn pay_vault_queue<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        v: &mut VaultRecord,
    ) -> Result<(), RuntimeError> {
        while let Some(req) = v.queue.first().cloned() {
            let value = self.vault_value(s, v).await?;
            let key = StateKey::EconVaultHolding(v.id, req.holder);
            let mut h = self.vault_holding(s, v.id, &req.holder).await?;
            let shares = req.shares.min(h.shares);
            let owed = mul_div(shares, value, v.shares);
            if owed > v.free {
                break;
            }
            v.queue.remove(0);
            h.shares -= shares;
            h.queued = h.queued.saturating_sub(req.shares);
            v.shares = v.shares.saturating_sub(shares);
            v.free -= owed;
            if h.shares == 0 {
                remove_sorted(&mut v.holders, &req.holder);
            }
            self.put_holding(s, key, &h);
            if owed > 0 && bal.transfer(s, &escrow(), &req.holder, owed).await?.is_err() {
                return Err(RuntimeError::Corrupt("economics escrow"));
            }
        }
        Ok(())
    }

    // ---- end of block ----

    /// The per-block budget to pay this block (before the reserve bounds it).
    pub(crate) async fn block_budget<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        params: &Params,
    ) -> Result<Amount, RuntimeError> {
        Ok(self.budget(s, params).await?.budget)
    }

    /// After the block's transactions: pay `compute` to the computing workers, run heartbeats,
    /// release cooled stake, pay queues, force stops, allocate vaults and decay the budget.
    pub(crate) async fn end_block<S: StateRead>(
        &self,
        cx: &registry::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        compute: Amount,
    ) -> Result<(), RuntimeError> {
        let (env, params) = (cx.env, cx.params);
        let ep = &params.economics;
        let list = self.sessions(s).await?;
        // 1. Heartbeat deadlines and decay.
        let mut records = Vec::with_capacity(list.len());
        for id in &list {
            let mut w = self.worker(s, id).await?;
            if let (Some(pool), Some(sess)) = (w.pool, w.session.as_mut())
                && sess.state == SessionState::Computing
            {
                if !sess.responsive {
                    sess.value =
                        mul_div(sess.value, u128::from(10_000 - ep.unresponsive_decay_bps.min(10_000)), 10_000);
                } else if let Some(pend) = &sess.pending
                    && env.height > pend.deadline
                {
                    sess.responsive = false;
                    sess.expired = sess.pending.take();
                    w.missed = w.missed.saturating_add(1);
                    if let Some(mut p) = self.pool(s, pool).await? {
                        p.heartbeats_missed = p.heartbeats_missed.saturating_add(1);
                        self.put_pool(s, &p);
                    }
                    tracing::info!(target: "economics.heartbeat", height = env.height, "worker missed a heartbeat: unresponsive");
                }
            }
            records.push((*id, w));
        }
        // 2. Rewards to computing, responsive workers by isqrt(V^2 + w P^2).
        let shares: Vec<u128> = records
            .iter()
            .map(|(_, w)| match &w.session {
                Some(sess) if sess.state == SessionState::Computing && sess.responsive => {
                    worker_share(ep, sess.value, w.score)
                }
                _ => 0,
            })
            .collect();
        let total: u128 = shares.iter().fold(0u128, |a, b| a.saturating_add(*b));
        if total > 0 && compute > 0 {
            for ((_, w), share) in records.iter_mut().zip(&shares) {
                if *share == 0 {
                    continue;
                }
                let Some(pool) = w.pool else { continue };
                let Some(mut p) = self.pool(s, pool).await? else { continue };
                let pay = mul_div(compute, *share, total);
                let to_treasury = bps(pay, ep.treasury_share_bps);
                let paid_t = bal.pay_reward(s, &treasury(), to_treasury).await?;
                let rest = pay - to_treasury;
                let commission = bps(rest, p.commission_bps);
                let paid_c = bal.pay_reward(s, &p.owner, commission).await?;
                let paid_p = bal.pay_reward(s, &escrow(), rest - commission).await?;
                p.free = p.free.saturating_add(paid_p);
                p.rewards_total = p.rewards_total.saturating_add(paid_p);
                p.period_rewards = p.period_rewards.saturating_add(paid_p);
                if let Some(sess) = w.session.as_mut() {
                    sess.earned = sess.earned.saturating_add(paid_p).saturating_add(paid_c);
                }
                w.rewards = w.rewards.saturating_add(paid_t).saturating_add(paid_c).saturating_add(paid_p);
                self.put_pool(s, &p);
                tracing::trace!(target: "economics.reward", pool, pay, paid_t, paid_c, paid_p, "compute reward");
            }
        }
        // 3. New challenges, and release of cooled stake.
        let challenge = heartbeat_challenge(&env.parent, env.height);
        let threshold = heartbeat_threshold(ep);
        let mut remaining = Vec::with_capacity(records.len());
        for (id, mut w) in records {
            let mut keep = true;
            let pool = w.pool;
            if let Some(sess) = w.session.as_mut() {
                match sess.state {
                    SessionState::Computing => {
                        // An unresponsive worker is challenged at once, so it can recover by answering.
                        if sess.pending.is_none()
                            && (!sess.responsive || heartbeat_selected(&challenge, &id, threshold))
                        {
                            let deadline = env.height.saturating_add(ep.heartbeat_window_blocks);
                            let body = MessageBody::HeartbeatChallenge { worker: id, challenge, deadline };
                            if crate::modules::mq::emit(s, params.registry.max_block_messages, Topic::Worker(id), body)
                                .await?
                                .is_ok()
                            {
                                sess.pending = Some(PendingHeartbeat { challenge, deadline });
                            }
                        }
                    }
                    SessionState::CoolingDown { until } if env.height >= until => {
                        if let Some(pool) = pool
                            && let Some(mut p) = self.pool(s, pool).await?
                        {
                            p.locked = p.locked.saturating_sub(sess.stake);
                            p.free = p.free.saturating_add(sess.stake);
                            self.put_pool(s, &p);
                        }
                        keep = false;
                    }
                    SessionState::CoolingDown { .. } => {}
                }
            }
            if !keep {
                w.session = None;
            } else {
                remaining.push(id);
            }
            self.put_worker(s, &id, &w);
        }
        if remaining != list {
            s.put(&StateKey::EconSessions, &remaining);
        }
        // 4. Pools: pay queues, force stops after the grace period, roll reward periods.
        let period_end = env.height.is_multiple_of(ep.vault_period_blocks);
        for pid in self.pool_ids(s).await? {
            let Some(mut p) = self.pool(s, pid).await? else { continue };
            let before = p.clone();
            self.pay_pool_queue(s, bal, &mut p).await?;
            if let Some(head) = p.queue.first()
                && env.height >= head.requested_at.saturating_add(ep.withdrawal_grace_blocks)
            {
                self.force_stop(env, s, ep, &mut p).await?;
            }
            if period_end {
                p.last_period_rewards = p.period_rewards;
                p.period_rewards = 0;
            }
            if p != before {
                self.put_pool(s, &p);
            }
        }
        // 5. Vaults: pay queues, then automatic allocation.
        for vid in self.vault_ids(s).await? {
            let Some(mut v) = self.vault(s, vid).await? else { continue };
            let before = v.clone();
            self.pay_vault_queue(s, bal, &mut v).await?;
            if period_end && v.auto && v.queue.is_empty() && v.free > 0 {
                self.auto_allocate(s, ep, &mut v).await?;
            }
            if v != before {
                self.put_vault(s, &v);
            }
        }
        // 6. Compute stake whose delay ended goes back to its stakers.
        self.release_unstakes(env, s, bal).await?;
        // 7. Budget decay.
        let mut budget = self.budget(s, params).await?;
        if env.height.is_multiple_of(ep.decay_period_blocks) {
            budget.budget = mul_div(budget.budget, u128::from(10_000 - ep.decay_bps.min(10_000)), 10_000);
        }
        let stored: Option<BudgetRecord> = s.get(&StateKey::EconBudget, "econ budget").await?;
        if stored.as_ref() != Some(&budget) {
            s.put(&StateKey::EconBudget, &budget);
        }
        Ok(())
    }

    /// Stops the pool's computing workers, in the order added, until free tokens plus cooling stake
    /// cover every queued withdrawal.
    async fn force_stop<S: StateRead>(
        &self,
        env: &BlockEnv,
        s: &mut Overlay<'_, S>,
        ep: &EconomicsParams,
        p: &mut PoolRecord,
    ) -> Result<(), RuntimeError> {
        let owed = p.queue.iter().fold(0u128, |a, r| a.saturating_add(p.value_of(r.shares)));
        let mut covered = p.free;
        let mut computing = Vec::new();
        for wid in &p.workers {
            let w = self.worker(s, &wid.0).await?;
            match &w.session {
                Some(sess) if sess.state == SessionState::Computing => computing.push((wid.0, w)),
                Some(sess) => covered = covered.saturating_add(sess.stake),
                None => {}
            }
        }
        for (id, mut w) in computing {
            if covered >= owed {
                break;
            }
            if let Some(sess) = w.session.as_mut() {
                sess.state = SessionState::CoolingDown { until: env.height.saturating_add(ep.cooldown_blocks) };
                sess.pending = None;
                covered = covered.saturating_add(sess.stake);
            }
            self.put_worker(s, &id, &w);
            tracing::info!(target: "economics.force_stop", pool = p.id, height = env.height, "worker stopped to pay withdrawals");
        }
        Ok(())
    }

    /// Puts a vault's free tokens into the open pool with the best `rate * reliability`.
    async fn auto_allocate<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        ep: &EconomicsParams,
        v: &mut VaultRecord,
    ) -> Result<(), RuntimeError> {
        let addr = vault_address(v.id);
        let mut best: Option<(u128, PoolId, Amount)> = None;
        for pid in self.pool_ids(s).await? {
            let Some(p) = self.pool(s, pid).await? else { continue };
            if p.allow.as_ref().is_some_and(|a| a.binary_search(&addr).is_err()) {
                continue;
            }
            if p.shares > 0 && p.value() == 0 {
                continue;
            }
            let room = p.cap.map_or(v.free, |c| c.saturating_sub(p.value())).min(v.free);
            if room == 0 {
                continue;
            }
            let rate = mul_div(p.last_period_rewards, 1_000_000_000_000, p.value().max(1));
            let hb = p.heartbeats_answered.saturating_add(p.heartbeats_missed);
            let reliability =
                if hb == 0 { 10_000 } else { u128::from(p.heartbeats_answered) * 10_000 / u128::from(hb) };
            let score = rate.saturating_mul(reliability);
            if score > 0 && best.is_none_or(|(b, _, _)| score > b) {
                best = Some((score, pid, room));
            }
        }
        if let Some((score, pid, room)) = best {
            match self.allocate_inner(s, ep, v, pid, room).await {
                Ok(()) => {
                    tracing::info!(target: "economics.auto_allocate", vault = v.id, pool = pid, amount = room, score, "allocated")
                }
                Err(Fail::Rt(e)) => return Err(e),
                Err(Fail::Tx(e)) => {
                    tracing::debug!(target: "economics.auto_allocate", vault = v.id, %e, "not allocated")
                }
            }
        }
        Ok(())
    }

    /// The economics account's balance (what pools and vaults hold).
    pub(crate) fn escrow_address(&self) -> Address {
        escrow()
    }
}

/// Whether an egress payload belongs to this module.
pub(crate) fn is_economics_payload(p: &EgressPayload) -> bool {
    matches!(p, EgressPayload::Benchmark { .. } | EgressPayload::Heartbeat { .. })
}
