//! The vocabulary of compute economics: the decaying rewards budget, stake pools, vaults, computation
//! sessions, benchmarks, heartbeats and worker slashing.
//!
//! Everything here is integer arithmetic on [`Amount`]s (`u128`) and `u64` scores; every division
//! rounds down and the remainder stays where it was (in the rewards reserve or in the pool). The
//! exact formulas are written next to the functions that compute them ([`worker_value`],
//! [`worker_share`], [`min_stake`], [`heartbeat_selected`]) and in `ARCHITECTURE.md` section 12
//! ("Economics").

use crate::registry::WorkerId;
use crate::{Address, Amount, Hash, UNIT, sha256};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use umbra_tee::Confidence;

/// A stake pool's number (0 first).
pub type PoolId = u64;
/// A vault's number (0 first).
pub type VaultId = u64;

/// Economics parameters (in [`crate::Params`], so governance changes them with `SetParams`).
///
/// Defaults: the budget decays 1% every 100,000 blocks; 20% of every compute payout goes to the
/// treasury; withdrawals wait at most 1,000 blocks before workers are stopped to pay them; stopped
/// stake cools down 1,000 blocks; the minimum stake is 100 UMB plus 0.01 UMB per benchmark point;
/// a heartbeat is asked of each computing worker 6 times an hour on average at the target block time
/// of 1 second (see [`heartbeat_threshold`]) and must come within 10 blocks; an unresponsive worker's
/// value loses 5% a block; an equivocating (or state-root-disagreeing) worker loses 10% of its stake;
/// compute stake for contracts unlocks 1,000 blocks after it is unstaked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EconomicsParams {
    /// The per-block budget shrinks by this share (basis points) every `decay_period_blocks`.
    pub decay_bps: u16,
    /// Blocks between two decays of the budget.
    pub decay_period_blocks: u64,
    /// Share of every compute payout paid to the treasury, in basis points.
    pub treasury_share_bps: u16,
    /// Blocks a queued withdrawal may wait before the pool is forced to stop workers to pay it.
    pub withdrawal_grace_blocks: u64,
    /// Blocks between stopping a worker and the release of its stake to the pool.
    pub cooldown_blocks: u64,
    /// The minimum stake of any computing worker.
    #[serde(with = "crate::genesis::amount_str")]
    pub min_stake_base: Amount,
    /// Extra minimum stake per benchmark point: `min_stake = base + per_score * P`.
    #[serde(with = "crate::genesis::amount_str")]
    pub min_stake_per_score: Amount,
    /// `w` in the share formula `isqrt(V^2 + w * P^2)`.
    pub performance_weight: u64,
    /// The highest benchmark score the chain records; higher reports are refused.
    pub max_score: u64,
    /// A heartbeat's instant score counts at most this share of the initial benchmark (basis points).
    pub heartbeat_cap_bps: u32,
    /// Expected blocks between two heartbeat challenges of one worker; 0 (the default): derived from
    /// `heartbeats_per_hour` and `target_block_ms` (see [`heartbeat_threshold`]).
    pub heartbeat_interval_blocks: u64,
    /// Blocks after the challenge within which the heartbeat must land.
    pub heartbeat_window_blocks: u64,
    /// Share of an unresponsive worker's value lost each block (basis points).
    pub unresponsive_decay_bps: u16,
    /// Share of an equivocating worker's stake slashed to the treasury (basis points).
    pub slash_bps: u16,
    /// Blocks between automatic vault allocations (and between pools' reward-rate periods).
    pub vault_period_blocks: u64,
    /// Value multiplier per attestation confidence level 1, 2, 3 (basis points).
    pub confidence_bps: [u16; 3],
    /// Most workers in one pool.
    pub max_pool_workers: u32,
    /// Most holders of one pool or vault, and most queued withdrawals of one pool or vault.
    pub max_holders: u32,
    /// Heartbeats expected of each computing worker per hour (used when `heartbeat_interval_blocks`
    /// is 0).
    pub heartbeats_per_hour: u32,
    /// The chain's target block time in milliseconds, which turns `heartbeats_per_hour` into a
    /// per-block probability.
    pub target_block_ms: u64,
    /// Blocks between `UnstakeCompute` and the return of the tokens.
    pub compute_unstake_blocks: u64,
    /// Weight of a contract without compute stake in a worker's fair queue, as if it had staked this
    /// much (the free quota).
    #[serde(with = "crate::genesis::amount_str")]
    pub free_quota_stake: Amount,
    /// Most contracts with compute stake on one cluster, and most stakers of one contract.
    pub max_compute_stakers: u32,
}

impl Default for EconomicsParams {
    fn default() -> Self {
        EconomicsParams {
            decay_bps: 100,
            decay_period_blocks: 100_000,
            treasury_share_bps: 2_000,
            withdrawal_grace_blocks: 1_000,
            cooldown_blocks: 1_000,
            min_stake_base: 100 * UNIT,
            min_stake_per_score: UNIT / 100,
            performance_weight: 2,
            max_score: 1_000_000,
            heartbeat_cap_bps: 12_000,
            heartbeat_interval_blocks: 0,
            heartbeat_window_blocks: 10,
            unresponsive_decay_bps: 500,
            slash_bps: 1_000,
            vault_period_blocks: 1_000,
            confidence_bps: [10_000, 8_000, 5_000],
            max_pool_workers: 64,
            max_holders: 1_024,
            heartbeats_per_hour: 6,
            target_block_ms: 1_000,
            compute_unstake_blocks: 1_000,
            free_quota_stake: UNIT,
            max_compute_stakers: 256,
        }
    }
}

impl EconomicsParams {
    /// The rules every value must follow (checked by `Params::validate`).
    pub fn check(&self) -> Result<(), String> {
        let bps = [self.decay_bps, self.treasury_share_bps, self.unresponsive_decay_bps, self.slash_bps];
        if bps.iter().chain(self.confidence_bps.iter()).any(|b| *b > 10_000) {
            return Err("params.economics basis points must be at most 10000".into());
        }
        if self.decay_period_blocks == 0 || self.vault_period_blocks == 0 || self.target_block_ms == 0 {
            return Err("params.economics periods and the target block time must be positive".into());
        }
        if self.heartbeat_interval_blocks == 0 && self.heartbeats_per_hour == 0 {
            return Err("params.economics needs heartbeat_interval_blocks or heartbeats_per_hour".into());
        }
        if self.max_compute_stakers == 0 {
            return Err("params.economics.max_compute_stakers must be positive".into());
        }
        if self.heartbeat_window_blocks == 0 || self.max_score == 0 || self.heartbeat_cap_bps < 10_000 {
            return Err("params.economics heartbeat window and max score must be positive, cap at least 10000".into());
        }
        if self.max_pool_workers == 0 || self.max_holders == 0 {
            return Err("params.economics limits must be positive".into());
        }
        Ok(())
    }
}

/// `a * b / c` rounded down, in `u128`; exact when `a * b` fits, otherwise computed from the quotient
/// and remainder of `a / c` (saturating). `c == 0` gives 0.
pub fn mul_div(a: u128, b: u128, c: u128) -> u128 {
    if c == 0 {
        return 0;
    }
    match a.checked_mul(b) {
        Some(p) => p / c,
        None => (a / c).saturating_mul(b).saturating_add((a % c).saturating_mul(b) / c),
    }
}

/// A worker's value: `V = (stake / UNIT + P) * confidence_bps[level - 1] / 10000` (whole tokens plus
/// benchmark points, scaled by attestation confidence; each division rounds down).
pub fn worker_value(params: &EconomicsParams, stake: Amount, score: u64, confidence: Confidence) -> u128 {
    let level = usize::from(confidence.level()).clamp(1, 3);
    let c = u128::from(params.confidence_bps[level - 1]);
    (stake / UNIT).saturating_add(u128::from(score)).saturating_mul(c) / 10_000
}

/// A computing worker's share of the compute budget: `isqrt(V^2 + w * P^2)` (integer square root,
/// rounding down; saturating).
pub fn worker_share(params: &EconomicsParams, value: u128, score: u64) -> u128 {
    let p = u128::from(score);
    let sum = value
        .saturating_mul(value)
        .saturating_add(u128::from(params.performance_weight).saturating_mul(p.saturating_mul(p)));
    sum.isqrt()
}

/// The least stake a worker with benchmark score `P` computes with: `base + per_score * P`.
pub fn min_stake(params: &EconomicsParams, score: u64) -> Amount {
    params.min_stake_base.saturating_add(params.min_stake_per_score.saturating_mul(u128::from(score)))
}

/// The challenge of the block after `parent` at `height`: `SHA-256("umbra/heartbeat/v1" || parent ||
/// height_le)`.
pub fn heartbeat_challenge(parent: &Hash, height: u64) -> Hash {
    sha256(&[b"umbra/heartbeat/v1", &parent.0, &height.to_le_bytes()])
}

/// The selection threshold `t` of [`heartbeat_selected`]: a worker is challenged when a 64-bit draw is
/// below `t`, so with probability `t / 2^64` per block.
///
/// - With `heartbeat_interval_blocks = n > 0`: `t = floor((2^64 - 1) / n)` (about once every `n` blocks).
/// - With `n = 0`: `t = floor(2^64 * heartbeats_per_hour * target_block_ms / 3_600_000)`, capped at
///   `2^64 - 1`: a block lasts `target_block_ms`, an hour has `3_600_000 / target_block_ms` blocks, so a
///   worker is asked `heartbeats_per_hour` times an hour on average whatever the block time (at the
///   defaults, 6 an hour with 1-second blocks: once every 600 blocks; with 6-second blocks, once every
///   100 blocks).
pub fn heartbeat_threshold(params: &EconomicsParams) -> u64 {
    if let Some(t) = u64::MAX.checked_div(params.heartbeat_interval_blocks) {
        return t;
    }
    let num = u128::from(params.heartbeats_per_hour).saturating_mul(u128::from(params.target_block_ms));
    let t = mul_div(1u128 << 64, num, 3_600_000);
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// The expected blocks between two challenges of one worker (rounded down, at least 1): what
/// [`heartbeat_threshold`] amounts to.
pub fn heartbeat_expected_interval(params: &EconomicsParams) -> u64 {
    (u64::MAX / heartbeat_threshold(params).max(1)).max(1)
}

/// Whether `worker` must answer `challenge`: the first 8 bytes (little endian) of
/// `SHA-256(challenge || worker)` are below `threshold` ([`heartbeat_threshold`]).
pub fn heartbeat_selected(challenge: &Hash, worker: &WorkerId, threshold: u64) -> bool {
    let h = sha256(&[&challenge.0, worker]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.0[..8]);
    u64::from_le_bytes(b) < threshold
}

/// `economics`: the per-block budget as it stands after decays.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct BudgetRecord {
    /// `params.rewards.block_budget` when the budget was last reset (a change by governance resets it).
    #[serde(with = "crate::genesis::amount_str")]
    pub base: Amount,
    /// The current per-block budget.
    #[serde(with = "crate::genesis::amount_str")]
    pub budget: Amount,
}

/// A queued withdrawal from a pool or a vault, valued when paid.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct WithdrawalRequest {
    /// The holder whose shares are withdrawn.
    pub holder: Address,
    /// For a pool withdrawal by a vault: the vault, whose free tokens receive the payment.
    pub vault: Option<VaultId>,
    /// Shares to withdraw.
    #[serde(with = "crate::genesis::amount_str")]
    pub shares: u128,
    /// The height of the request.
    pub requested_at: u64,
}

/// `economics`: a stake pool. Its tokens are held by the economics account; its value is
/// `free + locked`, and one share is worth `value / shares`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct PoolRecord {
    /// The pool's number.
    pub id: PoolId,
    /// The operator that created it and receives the commission.
    pub owner: Address,
    /// The owner's cut of the pool's rewards, in basis points.
    pub commission_bps: u16,
    /// The most value contributions may bring the pool to.
    #[serde(with = "opt_amount")]
    pub cap: Option<Amount>,
    /// Accounts allowed to contribute (none: anyone).
    pub allow: Option<Vec<Address>>,
    /// Its workers, in the order added.
    pub workers: Vec<WorkerIdHex32>,
    /// Shares issued.
    #[serde(with = "crate::genesis::amount_str")]
    pub shares: u128,
    /// Tokens not staked.
    #[serde(with = "crate::genesis::amount_str")]
    pub free: Amount,
    /// Tokens staked in sessions (computing or cooling down).
    #[serde(with = "crate::genesis::amount_str")]
    pub locked: Amount,
    /// Withdrawals waiting for free tokens, oldest first.
    pub queue: Vec<WithdrawalRequest>,
    /// Holders with shares, ascending.
    pub holders: Vec<Address>,
    /// Rewards kept by the pool (after commission) since creation.
    #[serde(with = "crate::genesis::amount_str")]
    pub rewards_total: Amount,
    /// Rewards kept in the current vault period.
    #[serde(with = "crate::genesis::amount_str")]
    pub period_rewards: Amount,
    /// Rewards kept in the last full vault period (the realized reward rate's numerator).
    #[serde(with = "crate::genesis::amount_str")]
    pub last_period_rewards: Amount,
    /// Heartbeats its workers answered.
    pub heartbeats_answered: u64,
    /// Heartbeats its workers missed.
    pub heartbeats_missed: u64,
}

impl PoolRecord {
    /// `free + locked`.
    pub fn value(&self) -> Amount {
        self.free.saturating_add(self.locked)
    }

    /// What `shares` of this pool are worth now: `shares * value / total_shares`, rounded down.
    pub fn value_of(&self, shares: u128) -> Amount {
        mul_div(shares, self.value(), self.shares)
    }
}

/// A 32-byte id written as hex in JSON.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct WorkerIdHex32(#[serde(with = "crate::block::hex32")] pub [u8; 32]);

/// `economics`: shares of one holder in one pool or vault.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Holding {
    /// Shares held (queued ones included).
    #[serde(with = "crate::genesis::amount_str")]
    pub shares: u128,
    /// Shares in queued withdrawals.
    #[serde(with = "crate::genesis::amount_str")]
    pub queued: u128,
}

/// `economics`: a vault, a pool of pools. Its own tokens (`free`) are held by the economics account;
/// its pool shares are held under [`vault_address`].
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct VaultRecord {
    /// The vault's number.
    pub id: VaultId,
    /// The account that allocates it.
    pub owner: Address,
    /// Allocate free tokens automatically each vault period (see the economics module notes).
    pub auto: bool,
    /// Shares issued.
    #[serde(with = "crate::genesis::amount_str")]
    pub shares: u128,
    /// Tokens not allocated to pools.
    #[serde(with = "crate::genesis::amount_str")]
    pub free: Amount,
    /// Pools it has held shares in, in first-allocation order.
    pub pools: Vec<PoolId>,
    /// Withdrawals waiting for free tokens, oldest first.
    pub queue: Vec<WithdrawalRequest>,
    /// Holders with shares, ascending.
    pub holders: Vec<Address>,
}

/// The address a vault holds its pool shares under.
pub fn vault_address(id: VaultId) -> Address {
    Address::module(&format!("vault/{id}"))
}

/// Whether a session computes or cools down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SessionState {
    /// Computing and (while responsive) earning.
    Computing,
    /// Stopped; the stake returns to the pool at `until`.
    CoolingDown {
        /// The height from which the stake is released.
        until: u64,
    },
}

/// A heartbeat challenge a worker has to answer.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct PendingHeartbeat {
    /// The challenge.
    pub challenge: Hash,
    /// The last height an answer counts as on time.
    pub deadline: u64,
}

/// A worker's computation session.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Session {
    /// The pool's stake.
    #[serde(with = "crate::genesis::amount_str")]
    pub stake: Amount,
    /// Its value V (decayed while unresponsive).
    #[serde(with = "crate::genesis::amount_str")]
    pub value: u128,
    /// The height it started.
    pub started_at: u64,
    /// Computing or cooling down.
    pub state: SessionState,
    /// False from a missed heartbeat until the worker answers.
    pub responsive: bool,
    /// A challenge waiting for an answer.
    pub pending: Option<PendingHeartbeat>,
    /// Rewards earned for the pool (before commission and treasury share are taken out: after).
    #[serde(with = "crate::genesis::amount_str")]
    pub earned: Amount,
    /// The last challenge that expired unanswered (a late answer to it is refused by name).
    pub expired: Option<PendingHeartbeat>,
}

/// `economics`: what the chain knows of one worker's compute.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct WorkerEconRecord {
    /// The pool it belongs to.
    pub pool: Option<PoolId>,
    /// The benchmark score recorded at the latest `Benchmark` (0: none yet).
    pub initial_score: u64,
    /// The score in use: the latest heartbeat's, capped at `initial * heartbeat_cap_bps / 10000`.
    pub score: u64,
    /// The session, if computing or cooling down.
    pub session: Option<Session>,
    /// Slashed for equivocation (never computes again).
    pub slashed: bool,
    /// Heartbeats answered.
    pub answered: u64,
    /// Heartbeats missed.
    pub missed: u64,
    /// Gross compute rewards paid for this worker over all its sessions (treasury share, commission
    /// and the pool's part together): `sum(compute * share_i / sum(shares))` over the blocks it earned.
    #[serde(default, with = "crate::genesis::amount_str")]
    pub rewards: Amount,
    /// Why it was slashed, if it was.
    #[serde(default)]
    pub slash_reason: Option<String>,
}

/// `economics`: tokens staked to a cluster on behalf of one contract (stake-to-compute).
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ComputeStakeRecord {
    /// The contract's cluster when first staked.
    pub cluster: u32,
    /// Tokens staked (not unstaking).
    #[serde(with = "crate::genesis::amount_str")]
    pub total: Amount,
    /// Each staker's tokens, by address ascending.
    pub stakers: Vec<(Address, AmountStr)>,
}

/// An amount written as a decimal string in JSON.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct AmountStr(#[serde(with = "crate::genesis::amount_str")] pub Amount);

/// `economics`: compute stake on its way back to a staker.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ComputeUnstake {
    /// The staker.
    pub staker: Address,
    /// The contract it was staked for.
    #[serde(with = "crate::block::hex32")]
    pub contract: [u8; 32],
    /// Tokens.
    #[serde(with = "crate::genesis::amount_str")]
    pub amount: Amount,
    /// The height from which it is paid back (at the end of that block).
    pub release_at: u64,
}

/// The account holding compute stake (apart from pools and vaults).
pub fn compute_stake_account() -> Address {
    Address::module("compute-stake")
}

/// Optional amounts as decimal strings.
pub(crate) mod opt_amount {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(crate) fn serialize<S: Serializer>(v: &Option<u128>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&v.to_string()),
            None => s.serialize_none(),
        }
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u128>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| s.parse().map_err(|_| serde::de::Error::custom(format!("'{s}' is not an integer amount"))))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_formula_is_the_integer_square_root() {
        let p = EconomicsParams::default();
        // V = (1000 + 500) * 5000 / 10000 = 750; share = isqrt(750^2 + 2 * 500^2) = isqrt(1_062_500) = 1030.
        let v = worker_value(&p, 1_000 * UNIT, 500, Confidence::Simulated);
        assert_eq!(v, 750);
        assert_eq!(worker_share(&p, v, 500), 1030);
        assert_eq!(worker_share(&p, u128::MAX, u64::MAX), u128::MAX.isqrt());
        assert_eq!(min_stake(&p, 500), 100 * UNIT + 5 * UNIT);
        assert_eq!(mul_div(u128::MAX, 2, 4), u128::MAX / 2);
    }

    #[test]
    fn the_heartbeat_rate_per_hour_scales_with_the_block_time() {
        let mut p = EconomicsParams::default();
        assert_eq!(heartbeat_expected_interval(&p), 600, "6 an hour at 1 s blocks");
        p.target_block_ms = 6_000;
        assert_eq!(heartbeat_expected_interval(&p), 100, "6 an hour at 6 s blocks");
        p.heartbeats_per_hour = 3_600_000;
        assert_eq!(heartbeat_threshold(&p), u64::MAX, "more than one a block saturates");
        p.heartbeat_interval_blocks = 10;
        assert_eq!(heartbeat_expected_interval(&p), 10, "an explicit interval wins");
    }

    #[test]
    fn heartbeat_selection_follows_the_interval() {
        let c = heartbeat_challenge(&Hash([1; 32]), 7);
        let n = (0..2_000u32)
            .filter(|i| {
                let mut w = [0u8; 32];
                w[..4].copy_from_slice(&i.to_le_bytes());
                heartbeat_selected(&c, &w, u64::MAX / 10)
            })
            .count();
        assert!((120..280).contains(&n), "about one in ten: {n}");
    }
}
