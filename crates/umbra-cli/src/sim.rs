//! `umbra bench economics`: a deterministic multi-year simulation of compute economics on the real state
//! machine (`umbra-runtime`), with hundreds of dev workers, pools, vaults and delegators.
//!
//! # What runs
//! One in-memory chain (the runtime's genesis and `execute_block`, signatures checked) with a dev
//! attestation policy. Every action is a signed transaction or a worker's signed egress, exactly as on a
//! network: workers register with dev quotes, join their operator's pool, report a benchmark and answer
//! heartbeat challenges; operators start and stop sessions and reclaim stopped workers; delegators
//! contribute to and withdraw from pools and vaults; one vault is allocated by hand, one automatically.
//! A seeded SplitMix64 generator (integer only) picks every event, so a seed gives the same run.
//!
//! # Time compression (stated plainly)
//! A block stands for `hours_per_block` simulated hours (full: 1 hour, reduced: 24 hours); a year is
//! `8760 / hours_per_block` blocks. Time parameters are set in hours and converted: the budget decays 2%
//! every 30 days, cool-down 3 days, withdrawal grace 7 days, vault period 7 days. Heartbeats are the one
//! compressed rate: each worker is challenged about once per simulated day (at 1-hour blocks, once every
//! 24 blocks; at 24-hour blocks every block) instead of a few times an hour, and has 2 blocks to answer.
//!
//! # Checks after every block
//! - Supply: the sum of every account's balance equals `TotalIssued`, and `TotalIssued + reserve` stays
//!   exactly what it was at genesis and at most `MAX_SUPPLY` (no token created or lost anywhere).
//! - Custody: the economics account holds exactly the pools' `free + locked` plus the vaults' free tokens,
//!   and each pool's holdings add up to its shares.
//! - Rewards track share: each worker's gross reward this block equals `compute * share_i / sum(shares)`
//!   computed independently from the state (`share = isqrt(V^2 + w P^2)`) to within 2 base units of
//!   rounding; the report gives the largest difference and the cumulative relative difference (ppm).

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use std::collections::BTreeMap;
use umbra_crypto::{Keypair, sign_transaction};
use umbra_runtime::{BlockEnv, ChangeSet, Runtime, RuntimeError, StateRead};
use umbra_tee::{Attester, DevPlatform, Measurement, Policy, TeeKind};
use umbra_types::economics::{SessionState, compute_stake_account, mul_div, worker_share};
use umbra_types::{
    Address, Allocation, Amount, Call, Egress, EgressPayload, Genesis, GenesisValidator, Hash, MAX_SUPPLY, Origin,
    Params, RegistryGenesis, SignedEgress, SignedTransaction, TokenInfo, Transaction, UNIT, sha256,
};

/// `umbra bench economics`
#[derive(Args, Debug, Clone)]
pub(crate) struct EconSimArgs {
    /// The full form: 3 years at 1-hour blocks starting with 300 workers (minutes); without it the reduced
    /// form CI runs: 2 years at 24-hour blocks starting with 24 workers.
    #[arg(long)]
    pub(crate) full: bool,
    /// The generator's seed.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Override the number of simulated years.
    #[arg(long)]
    pub(crate) years: Option<u64>,
    /// Override the number of workers at the start.
    #[arg(long)]
    pub(crate) workers: Option<usize>,
}

/// The simulation's shape.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SimConfig {
    /// Simulated years.
    pub(crate) years: u64,
    /// Simulated hours per block.
    pub(crate) hours_per_block: u64,
    /// Workers registered at the start.
    pub(crate) workers: usize,
    /// Operators (one pool each).
    pub(crate) operators: usize,
    /// Delegators.
    pub(crate) delegators: usize,
    /// The seed.
    pub(crate) seed: u64,
}

impl SimConfig {
    pub(crate) fn from_args(a: &EconSimArgs) -> SimConfig {
        let mut c = if a.full {
            SimConfig { years: 3, hours_per_block: 1, workers: 300, operators: 20, delegators: 200, seed: a.seed }
        } else {
            SimConfig { years: 2, hours_per_block: 24, workers: 24, operators: 3, delegators: 24, seed: a.seed }
        };
        if let Some(y) = a.years {
            c.years = y;
        }
        if let Some(w) = a.workers {
            c.workers = w;
        }
        c
    }
}

/// What the simulation reports.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SimReport {
    /// The shape it ran.
    pub(crate) config: SimConfig,
    /// Blocks run.
    pub(crate) blocks: u64,
    /// Workers that ever joined (initial and later).
    pub(crate) workers_joined: usize,
    /// Most workers computing at once.
    pub(crate) max_computing: usize,
    /// Workers computing at the end.
    pub(crate) computing_at_end: usize,
    /// Compute rewards paid (gross, treasury share included), smallest unit.
    #[serde(with = "amount_str")]
    pub(crate) compute_paid: Amount,
    /// Rewards paid to validators, smallest unit.
    #[serde(with = "amount_str")]
    pub(crate) validator_paid: Amount,
    /// The treasury's balance at the end (its compute share, fees and slashes).
    #[serde(with = "amount_str")]
    pub(crate) treasury: Amount,
    /// The per-block budget at the start and at the end.
    #[serde(with = "amount_str")]
    pub(crate) budget_start: Amount,
    /// The per-block budget at the end.
    #[serde(with = "amount_str")]
    pub(crate) budget_end: Amount,
    /// The reserve at the start.
    #[serde(with = "amount_str")]
    pub(crate) reserve_start: Amount,
    /// The reserve left.
    #[serde(with = "amount_str")]
    pub(crate) reserve_end: Amount,
    /// Each pool's final share price (value of `UNIT` shares), smallest unit.
    pub(crate) share_prices: Vec<String>,
    /// Largest difference in one block between a worker's reward and its share-weighted expectation
    /// (smallest units).
    #[serde(with = "amount_str")]
    pub(crate) max_block_deviation: Amount,
    /// Largest cumulative relative difference over workers with an expectation of at least 1 UMB, in
    /// parts per million.
    pub(crate) max_cumulative_deviation_ppm: u128,
    /// Heartbeats answered and missed.
    pub(crate) heartbeats_answered: u64,
    /// Heartbeats missed (outages).
    pub(crate) heartbeats_missed: u64,
    /// Outages started.
    pub(crate) outages: u64,
    /// Transactions sent and how many failed (refused calls are part of the run: withdrawals beyond
    /// holdings, starts without free stake...).
    pub(crate) transactions: u64,
    /// Failed calls.
    pub(crate) failed_calls: u64,
    /// Blocks that ended with a pool withdrawal waiting in a queue.
    pub(crate) blocks_with_queued_withdrawals: u64,
    /// Workers stopped by the chain to pay a withdrawal that waited past the grace period.
    pub(crate) forced_stops: u64,
    /// Invariant checks passed (every block: supply, conservation, custody, holdings, rewards).
    pub(crate) checks_passed: u64,
    /// Per simulated quarter: the block, the budget, the average V of computing workers and the average
    /// pool share price.
    pub(crate) series: Vec<SeriesPoint>,
}

/// One point of the time series.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SeriesPoint {
    /// Simulated day.
    pub(crate) day: u64,
    /// Per-block budget.
    #[serde(with = "amount_str")]
    pub(crate) budget: Amount,
    /// Average V of computing workers.
    pub(crate) avg_v: u128,
    /// Average share price over pools with shares.
    #[serde(with = "amount_str")]
    pub(crate) avg_share_price: Amount,
}

/// Amounts as decimal strings in JSON.
mod amount_str {
    pub(super) fn serialize<S: serde::Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }
}

/// SplitMix64: a small, seeded, integer-only generator.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// True with probability `num / den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

#[derive(Default, Clone)]
struct MemState(BTreeMap<[u8; 32], Vec<u8>>);

impl StateRead for MemState {
    async fn get(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, RuntimeError> {
        Ok(self.0.get(key).cloned())
    }
}

impl MemState {
    fn apply(&mut self, changes: ChangeSet) {
        for (k, v) in changes {
            match v {
                Some(v) => self.0.insert(k, v),
                None => self.0.remove(&k),
            };
        }
    }
}

const CHAIN: &str = "umbra-econ-sim";
const GENESIS_HASH: Hash = Hash([0xab; 32]);

struct SimWorker {
    key: Keypair,
    op: usize,
    pool: u64,
    seq: u64,
    score: u64,
    /// Offline until this height (an outage: no heartbeats answered).
    offline_until: u64,
    /// Stopped by its operator and not restarted yet.
    left: bool,
}

struct Sim {
    rt: Runtime,
    state: MemState,
    params: Params,
    height: u64,
    rng: Rng,
    ops: Vec<Keypair>,
    delegators: Vec<Keypair>,
    relayer: Keypair,
    sudo: Keypair,
    nonces: BTreeMap<Address, u64>,
    workers: Vec<SimWorker>,
    platform: DevPlatform,
    _dir: tempfile::TempDir,
    proposer: Address,
    conserved: Amount,
    report: SimReport,
    cum_actual: BTreeMap<usize, Amount>,
    cum_expected: BTreeMap<usize, Amount>,
    /// Each worker's cumulative rewards after the last block.
    last_rewards: Vec<Amount>,
    /// Workers stopped by a transaction in the block being run.
    stopped_now: Vec<usize>,
}

fn dev_seed() -> [u8; 32] {
    sha256(&[b"umbra dev attestation key"]).0
}

impl Sim {
    async fn new(cfg: &SimConfig) -> Result<Sim> {
        let hpb = cfg.hours_per_block.max(1);
        let blocks = |hours: u64| (hours / hpb).max(1);
        let mut params = Params { max_block_txs: 100_000, ..Params::default() };
        params.registry.attestation_validity_blocks = u64::MAX / 4;
        params.registry.max_block_messages = 100_000;
        params.rewards.reserve = 20_000_000 * UNIT;
        params.rewards.block_budget = 10 * UNIT * Amount::from(hpb);
        params.staking.validator_reward_share_bps = 1_000;
        let e = &mut params.economics;
        e.decay_bps = 200;
        e.decay_period_blocks = blocks(30 * 24);
        e.cooldown_blocks = blocks(3 * 24);
        e.withdrawal_grace_blocks = blocks(7 * 24);
        e.vault_period_blocks = blocks(7 * 24);
        e.heartbeat_interval_blocks = blocks(24);
        e.heartbeat_window_blocks = 2;
        e.max_pool_workers = 1_000;
        e.min_stake_base = 2_000 * UNIT;
        e.min_stake_per_score = UNIT;
        let ops: Vec<Keypair> = (0..cfg.operators).map(|i| key(b"op", i)).collect();
        let delegators: Vec<Keypair> = (0..cfg.delegators).map(|i| key(b"delegator", i)).collect();
        let (relayer, sudo) = (key(b"relayer", 0), key(b"sudo", 0));
        let mut rng = Rng(cfg.seed);
        let mut allocations = vec![
            Allocation { address: relayer.address(), amount: 1_000_000 * UNIT },
            Allocation { address: sudo.address(), amount: 1_000_000 * UNIT },
        ];
        for k in &ops {
            allocations.push(Allocation { address: k.address(), amount: 200_000 * UNIT });
        }
        for k in &delegators {
            let amount = (10_000 + u128::from(rng.below(90_000))) * UNIT;
            allocations.push(Allocation { address: k.address(), amount });
        }
        let dev_key = Keypair::from_seed(dev_seed()).address().0;
        let measurement = Measurement([0x5a; 32]);
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: 1_000,
            token: TokenInfo::default(),
            allocations,
            validators: vec![GenesisValidator { name: "v".into(), key: [200; 32] }],
            params: params.clone(),
            registry: RegistryGenesis {
                policy: Policy {
                    accepted_kinds: [TeeKind::Dev].into(),
                    dev_keys: [dev_key].into(),
                    measurements: [measurement].into(),
                    ..Policy::default()
                },
                collateral: vec![],
                sudo: Some(sudo.address()),
            },
            governance: Default::default(),
        };
        let dir = tempfile::tempdir().context("temporary directory")?;
        let platform =
            DevPlatform::open(&dir.path().join("machine-secret"), dev_seed(), measurement).context("dev platform")?;
        let rt = Runtime::new();
        let mut state = MemState::default();
        let changes = rt.genesis(&genesis, &state).await.context("genesis")?;
        state.apply(changes);
        let issued = rt.total_issued(&state).await?;
        let reserve = rt.rewards_reserve(&state).await?;
        let budget = params.rewards.block_budget;
        let report = SimReport {
            config: cfg.clone(),
            blocks: 0,
            workers_joined: 0,
            max_computing: 0,
            computing_at_end: 0,
            compute_paid: 0,
            validator_paid: 0,
            treasury: 0,
            budget_start: budget,
            budget_end: budget,
            reserve_start: reserve,
            reserve_end: reserve,
            share_prices: vec![],
            max_block_deviation: 0,
            max_cumulative_deviation_ppm: 0,
            heartbeats_answered: 0,
            heartbeats_missed: 0,
            outages: 0,
            transactions: 0,
            failed_calls: 0,
            blocks_with_queued_withdrawals: 0,
            forced_stops: 0,
            checks_passed: 0,
            series: vec![],
        };
        Ok(Sim {
            rt,
            state,
            params,
            height: 0,
            rng,
            ops,
            delegators,
            relayer,
            sudo,
            nonces: BTreeMap::new(),
            workers: Vec::new(),
            platform,
            _dir: dir,
            proposer: Address([200; 32]),
            conserved: issued + reserve,
            report,
            cum_actual: BTreeMap::new(),
            cum_expected: BTreeMap::new(),
            last_rewards: Vec::new(),
            stopped_now: Vec::new(),
        })
    }

    fn tx(&mut self, k: &Keypair, call: Call) -> SignedTransaction {
        let nonce = self.nonces.entry(k.address()).or_insert(0);
        let mut tx = Transaction { signer: k.address(), nonce: *nonce, chain_id: CHAIN.into(), fee: 0, call };
        *nonce += 1;
        let size = sign_transaction(k, tx.clone()).to_bytes().len();
        tx.fee = self.params.fees.min_fee(size, &tx.call);
        sign_transaction(k, tx)
    }

    fn egress(&mut self, w: usize, payload: EgressPayload) -> SignedTransaction {
        let wk = &mut self.workers[w];
        let egress = Egress { origin: Origin::Worker(wk.key.address().0), seq: wk.seq, payload };
        wk.seq += 1;
        let signature = wk.key.sign(&egress.signing_bytes(CHAIN));
        let relayer = Keypair::from_seed(self.relayer.seed());
        self.tx(&relayer, Call::Egress { message: SignedEgress { egress, signature } })
    }

    fn worker_id(&self, w: usize) -> [u8; 32] {
        self.workers[w].key.address().0
    }

    /// Registers, adds to its operator's pool, benchmarks and (if the pool has the stake) starts a new worker.
    fn join(&mut self, txs: &mut Vec<SignedTransaction>, op: Option<usize>) -> Result<()> {
        let n = self.workers.len();
        let op = op.unwrap_or_else(|| self.rng.below(self.ops.len() as u64) as usize);
        let key = key(b"worker", n);
        let x25519 = sha256(&[b"x25519", &key.address().0]).0;
        let opk = Keypair::from_seed(self.ops[op].seed());
        let rd = umbra_tee::report_data(&key.address().0, &x25519, CHAIN, &GENESIS_HASH.0, &opk.address().0);
        let quote = self.platform.quote(&rd).context("dev quote")?;
        let score = 100 + self.rng.below(1_900);
        let id = key.address().0;
        self.workers.push(SimWorker { key, op, pool: op as u64, seq: 0, score, offline_until: 0, left: false });
        txs.push(self.tx(&opk, Call::RegisterWorker { identity: id, x25519, quote }));
        txs.push(self.tx(&opk, Call::PoolAddWorker { pool: op as u64, worker: id }));
        txs.push(self.egress(n, EgressPayload::Benchmark { score }));
        let min = umbra_types::economics::min_stake(&self.params.economics, score);
        let stake = min + mul_div(min, u128::from(self.rng.below(200)), 100);
        txs.push(self.tx(&opk, Call::StartComputing { worker: id, stake }));
        self.report.workers_joined += 1;
        Ok(())
    }

    async fn run_block(&mut self, txs: Vec<SignedTransaction>) -> Result<()> {
        let height = self.height + 1;
        let parent = if height == 1 { GENESIS_HASH } else { Hash(sha256(&[b"sim parent", &height.to_le_bytes()]).0) };
        let hpb = self.report.config.hours_per_block;
        let env = BlockEnv {
            height,
            timestamp_ms: 1_000 + height * hpb * 3_600_000,
            proposer: self.proposer,
            epoch: umbra_types::epoch_of(height, self.params.epoch_length),
            parent,
        };
        // Before: what the block will pay (the budget and the reserve bound it).
        let budget = self.rt.econ_budget(&self.state).await?;
        let reserve = self.rt.rewards_reserve(&self.state).await?;
        let before = std::mem::take(&mut self.last_rewards);
        self.report.transactions += txs.len() as u64;
        let out = self
            .rt
            .execute_block(&self.state, &env, &txs, true)
            .await
            .map_err(|e| anyhow::anyhow!("block {height} invalid: {e}"))?;
        self.report.failed_calls += out.receipts.iter().filter(|r| r.error.is_some()).count() as u64;
        self.state.apply(out.changes);
        self.height = height;
        self.check(budget, reserve, &before).await
    }

    async fn balances_sum(&self) -> Result<Amount> {
        let mut holders: Vec<Address> = self.ops.iter().chain(&self.delegators).map(Keypair::address).collect();
        holders.extend([
            self.relayer.address(),
            self.sudo.address(),
            self.proposer,
            self.rt.treasury_address(),
            self.rt.econ_escrow(),
            compute_stake_account(),
        ]);
        let mut sum: Amount = 0;
        for a in &holders {
            sum += self.rt.account(&self.state, a).await?.balance;
        }
        Ok(sum)
    }

    /// The invariants after every block (see the module notes).
    async fn check(&mut self, budget: Amount, reserve_before: Amount, before: &[Amount]) -> Result<()> {
        let h = self.height;
        let issued = self.rt.total_issued(&self.state).await?;
        let reserve = self.rt.rewards_reserve(&self.state).await?;
        let sum = self.balances_sum().await?;
        if sum != issued {
            bail!("block {h}: balances sum to {sum} but {issued} are issued: tokens created or lost");
        }
        if issued + reserve != self.conserved || issued + reserve > MAX_SUPPLY {
            bail!("block {h}: issued {issued} + reserve {reserve} != {} at genesis", self.conserved);
        }
        // Custody and holdings.
        let mut held: Amount = 0;
        let mut queued = false;
        for id in self.rt.econ_pool_ids(&self.state).await? {
            let p = self.rt.econ_pool(&self.state, id).await?.context("pool")?;
            held += p.value();
            queued |= !p.queue.is_empty();
            let mut shares = 0;
            for a in &p.holders {
                shares += self.rt.econ_pool_holding(&self.state, id, a).await?.shares;
            }
            if shares != p.shares {
                bail!("block {h}: pool {id}'s holdings add up to {shares}, not its {} shares", p.shares);
            }
        }
        for id in self.rt.econ_vault_ids(&self.state).await? {
            held += self.rt.econ_vault(&self.state, id).await?.context("vault")?.free;
        }
        self.report.blocks_with_queued_withdrawals += u64::from(queued);
        let escrow = self.rt.account(&self.state, &self.rt.econ_escrow()).await?.balance;
        if escrow != held {
            bail!("block {h}: the economics account holds {escrow}, pools and vaults account for {held}");
        }
        // Rewards track share.
        let validator = mul_div(budget, u128::from(self.params.staking.validator_reward_share_bps), 10_000);
        let validator_paid = validator.min(reserve_before);
        let compute = (budget - validator).min(reserve_before - validator_paid);
        let ep = &self.params.economics;
        let mut shares = Vec::with_capacity(self.workers.len());
        let mut computing = 0;
        let mut v_sum: u128 = 0;
        for i in 0..self.workers.len() {
            let r = self.rt.econ_worker(&self.state, &self.worker_id(i)).await?;
            // Stopped in this block's end by the chain (a withdrawal past its grace period): after the
            // rewards, so it was paid as computing.
            let forced = matches!(r.session.as_ref().map(|s| s.state), Some(SessionState::CoolingDown { until })
                if until == h + self.params.economics.cooldown_blocks && !self.stopped_now.contains(&i));
            if forced {
                self.report.forced_stops += 1;
            }
            let share = match &r.session {
                Some(s) if s.state == SessionState::Computing || forced => {
                    computing += 1;
                    v_sum += s.value;
                    if s.responsive { worker_share(ep, s.value, r.score) } else { 0 }
                }
                _ => 0,
            };
            shares.push((share, r.rewards));
        }
        self.last_rewards = shares.iter().map(|(_, r)| *r).collect();
        self.stopped_now.clear();
        let total: u128 = shares.iter().map(|(s, _)| *s).sum();
        let mut paid: Amount = 0;
        for (i, (share, now)) in shares.iter().enumerate() {
            let got = now - before.get(i).copied().unwrap_or(0);
            paid += got;
            let expected = if total == 0 { 0 } else { mul_div(compute, *share, total) };
            let diff = got.abs_diff(expected);
            // Rounding of the treasury share, commission and the pool's part: at most 2 base units.
            if diff > 2 && reserve > 0 {
                bail!("block {h}: worker {i} got {got}, its share {share}/{total} of {compute} is {expected}");
            }
            self.report.max_block_deviation = self.report.max_block_deviation.max(diff);
            *self.cum_actual.entry(i).or_default() += got;
            *self.cum_expected.entry(i).or_default() += expected;
        }
        self.report.compute_paid += paid;
        self.report.validator_paid += validator_paid;
        self.report.max_computing = self.report.max_computing.max(computing);
        self.report.computing_at_end = computing;
        self.report.checks_passed += 5;
        let day_blocks = (24 / self.report.config.hours_per_block).max(1);
        if h.is_multiple_of(91 * day_blocks) {
            let (mut price_sum, mut n) = (0u128, 0u128);
            for id in self.rt.econ_pool_ids(&self.state).await? {
                let p = self.rt.econ_pool(&self.state, id).await?.context("pool")?;
                if p.shares > 0 {
                    price_sum += p.value_of(UNIT);
                    n += 1;
                }
            }
            self.report.series.push(SeriesPoint {
                day: h / day_blocks,
                budget: self.rt.econ_budget(&self.state).await?,
                avg_v: v_sum / computing.max(1) as u128,
                avg_share_price: price_sum / n.max(1),
            });
        }
        Ok(())
    }

    /// The transactions of the next block: heartbeats, joins, leaves, outages, contributions, withdrawals.
    async fn plan(&mut self, first: bool) -> Result<Vec<SignedTransaction>> {
        let mut txs = Vec::new();
        let h = self.height + 1;
        let day_blocks = (24 / self.report.config.hours_per_block).max(1);
        if first {
            for op in 0..self.ops.len() {
                let k = Keypair::from_seed(self.ops[op].seed());
                let commission_bps = (self.rng.below(5) * 500) as u16;
                let cap = if op % 3 == 2 { Some(400_000 * UNIT) } else { None };
                txs.push(self.tx(&k, Call::CreatePool { commission_bps, cap, allow: None }));
                // The operator seeds its own pool.
                txs.push(self.tx(&k, Call::PoolContribute { pool: op as u64, amount: 50_000 * UNIT }));
            }
            let sudo = Keypair::from_seed(self.sudo.seed());
            txs.push(self.tx(&sudo, Call::CreateVault { auto: false }));
            txs.push(self.tx(&sudo, Call::CreateVault { auto: true }));
            for d in 0..self.delegators.len() {
                let k = Keypair::from_seed(self.delegators[d].seed());
                let pool = self.rng.below(self.ops.len() as u64);
                let amount = (2_000 + u128::from(self.rng.below(6_000))) * UNIT;
                txs.push(self.tx(&k, Call::PoolContribute { pool, amount }));
                if d % 4 == 0 {
                    let vault = self.rng.below(2);
                    txs.push(self.tx(&k, Call::VaultContribute { vault, amount: 3_000 * UNIT }));
                }
            }
            return Ok(txs);
        }
        if h == 3 {
            for _ in 0..self.report.config.workers {
                self.join(&mut txs, None)?;
            }
            return Ok(txs);
        }
        // Heartbeats: online workers answer their pending challenge.
        for i in 0..self.workers.len() {
            let r = self.rt.econ_worker(&self.state, &self.worker_id(i)).await?;
            if let Some(p) = r.session.and_then(|s| s.pending)
                && self.workers[i].offline_until < h
            {
                let score = self.workers[i].score;
                txs.push(self.egress(i, EgressPayload::Heartbeat { challenge: p.challenge, score }));
                self.report.heartbeats_answered += 1;
            }
        }
        let n = self.workers.len() as u64;
        // Outages: about one worker in 200 a day goes dark for up to 3 days.
        for _ in 0..(n / 200).max(1) {
            if n > 0 && self.rng.chance(1, day_blocks) {
                let w = self.rng.below(n) as usize;
                self.workers[w].offline_until = h + 1 + self.rng.below(3 * day_blocks);
                self.report.outages += 1;
            }
        }
        // Joins: about one new worker every 10 days.
        if self.rng.chance(1, 10 * day_blocks) {
            self.join(&mut txs, None)?;
        }
        // Leaves and returns: about one a week; a stopped worker is reclaimed and rejoins later.
        if n > 0 && self.rng.chance(1, 7 * day_blocks) {
            let w = self.rng.below(n) as usize;
            let id = self.worker_id(w);
            let opk = Keypair::from_seed(self.ops[self.workers[w].op].seed());
            let r = self.rt.econ_worker(&self.state, &id).await?;
            match r.session.map(|s| s.state) {
                Some(SessionState::Computing) => {
                    txs.push(self.tx(&opk, Call::StopComputing { worker: id }));
                    self.workers[w].left = true;
                    self.stopped_now.push(w);
                }
                None if r.pool.is_some() => {
                    txs.push(self.tx(&opk, Call::PoolReclaim { pool: self.workers[w].pool, worker: id }));
                    txs.push(self.tx(&opk, Call::PoolAddWorker { pool: self.workers[w].pool, worker: id }));
                    let min = umbra_types::economics::min_stake(&self.params.economics, r.score);
                    txs.push(self.tx(&opk, Call::StartComputing { worker: id, stake: min * 2 }));
                    self.workers[w].left = false;
                }
                _ => {}
            }
        }
        // Delegators: contributions and withdrawals, a few a day.
        let d_n = self.delegators.len() as u64;
        for _ in 0..3 {
            if !self.rng.chance(1, day_blocks) {
                continue;
            }
            let d = self.rng.below(d_n) as usize;
            let k = Keypair::from_seed(self.delegators[d].seed());
            let pool = self.rng.below(self.ops.len() as u64);
            match self.rng.below(4) {
                0 | 1 => {
                    let amount = (100 + u128::from(self.rng.below(2_000))) * UNIT;
                    txs.push(self.tx(&k, Call::PoolContribute { pool, amount }));
                }
                2 => {
                    let held = self.rt.econ_pool_holding(&self.state, pool, &k.address()).await?;
                    let free = held.shares - held.queued;
                    if free > 0 {
                        let shares = mul_div(free, u128::from(1 + self.rng.below(100)), 100).max(1);
                        txs.push(self.tx(&k, Call::PoolWithdraw { pool, shares }));
                    }
                }
                _ => {
                    let vault = self.rng.below(2);
                    let held = self.rt.econ_vault_holding(&self.state, vault, &k.address()).await?;
                    let free = held.shares - held.queued;
                    if free > 0 && self.rng.chance(1, 2) {
                        txs.push(self.tx(&k, Call::VaultWithdraw { vault, shares: free / 2 + 1 }));
                    } else {
                        txs.push(self.tx(&k, Call::VaultContribute { vault, amount: 500 * UNIT }));
                    }
                }
            }
        }
        // Now and then (about every 90 days) an operator takes its own stake out of its pool: more than
        // the free tokens, so it queues and, after the grace period, forces workers to stop.
        if self.rng.chance(1, 90 * day_blocks) {
            let op = self.rng.below(self.ops.len() as u64) as usize;
            let k = Keypair::from_seed(self.ops[op].seed());
            let held = self.rt.econ_pool_holding(&self.state, op as u64, &k.address()).await?;
            if held.shares > held.queued {
                txs.push(self.tx(&k, Call::PoolWithdraw { pool: op as u64, shares: held.shares - held.queued }));
            }
        }
        // The manual vault's owner allocates its free tokens weekly to a random pool.
        if h.is_multiple_of(7 * day_blocks) {
            let v = self.rt.econ_vault(&self.state, 0).await?.context("vault")?;
            if v.free > 0 && v.queue.is_empty() {
                let sudo = Keypair::from_seed(self.sudo.seed());
                let pool = self.rng.below(self.ops.len() as u64);
                txs.push(self.tx(&sudo, Call::VaultAllocate { vault: 0, pool, amount: v.free / 2 }));
            }
        }
        // Operators put idle pool stake to work: a pool with more than 30,000 UMB free adds a worker (at
        // most one a day, up to three times the initial workers), and workers without a session (not ones that left) are restarted.
        if h.is_multiple_of(day_blocks) {
            for op in 0..self.ops.len() {
                let p = self.rt.econ_pool(&self.state, op as u64).await?.context("pool")?;
                let cap = 3 * self.report.config.workers;
                if p.free > 30_000 * UNIT && p.queue.is_empty() && self.workers.len() < cap {
                    self.join(&mut txs, Some(op))?;
                }
            }
            for w in 0..self.workers.len() {
                if self.workers[w].left {
                    continue;
                }
                let id = self.worker_id(w);
                let r = self.rt.econ_worker(&self.state, &id).await?;
                if r.session.is_none() && r.pool.is_some() && !r.slashed {
                    let p = self.rt.econ_pool(&self.state, self.workers[w].pool).await?.context("pool")?;
                    let min = umbra_types::economics::min_stake(&self.params.economics, r.score);
                    if p.free >= min && p.queue.is_empty() {
                        let opk = Keypair::from_seed(self.ops[self.workers[w].op].seed());
                        txs.push(self.tx(&opk, Call::StartComputing { worker: id, stake: min }));
                    }
                }
            }
        }
        Ok(txs)
    }
}

fn key(label: &[u8], i: usize) -> Keypair {
    Keypair::from_seed(sha256(&[b"umbra econ sim", label, &(i as u64).to_le_bytes()]).0)
}

/// Runs the simulation.
pub(crate) async fn simulate(cfg: &SimConfig) -> Result<SimReport> {
    let mut sim = Sim::new(cfg).await?;
    let blocks = cfg.years * 8_760 / cfg.hours_per_block.max(1);
    for b in 0..blocks {
        let txs = sim.plan(b == 0).await?;
        sim.run_block(txs).await?;
    }
    let mut r = sim.report.clone();
    r.blocks = blocks;
    r.budget_end = sim.rt.econ_budget(&sim.state).await?;
    r.reserve_end = sim.rt.rewards_reserve(&sim.state).await?;
    r.treasury = sim.rt.account(&sim.state, &sim.rt.treasury_address()).await?.balance;
    for id in sim.rt.econ_pool_ids(&sim.state).await? {
        let p = sim.rt.econ_pool(&sim.state, id).await?.context("pool")?;
        r.share_prices.push(umbra_types::format_amount(p.value_of(UNIT)));
    }
    let mut missed = 0;
    for i in 0..sim.workers.len() {
        missed += sim.rt.econ_worker(&sim.state, &sim.worker_id(i)).await?.missed;
    }
    r.heartbeats_missed = missed;
    for (i, exp) in &sim.cum_expected {
        if *exp >= UNIT {
            let act = sim.cum_actual.get(i).copied().unwrap_or(0);
            r.max_cumulative_deviation_ppm =
                r.max_cumulative_deviation_ppm.max(mul_div(act.abs_diff(*exp), 1_000_000, *exp));
        }
    }
    Ok(r)
}

/// `umbra bench economics`
pub(crate) fn run(ctx: &crate::Ctx, args: EconSimArgs) -> Result<()> {
    let cfg = SimConfig::from_args(&args);
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let start = std::time::Instant::now();
    let r = rt.block_on(simulate(&cfg))?;
    let secs = start.elapsed().as_secs_f64();
    if ctx.json {
        let mut v = serde_json::to_value(&r)?;
        v["wall_seconds"] = serde_json::json!(secs);
        return ctx.print_json(&v);
    }
    let f = umbra_types::format_amount;
    println!("economics simulation (seed {}, {})", cfg.seed, if args.full { "full" } else { "reduced" });
    println!(
        "  time            {} years, {} blocks of {} simulated hours ({secs:.1} s wall)",
        cfg.years, r.blocks, cfg.hours_per_block
    );
    println!(
        "  workers         {} joined, at most {} computing, {} at the end",
        r.workers_joined, r.max_computing, r.computing_at_end
    );
    println!("  delegators      {} in {} pools and 2 vaults", cfg.delegators, cfg.operators);
    println!("  budget/block    {} -> {} UMB", f(r.budget_start), f(r.budget_end));
    println!("  reserve         {} -> {} UMB", f(r.reserve_start), f(r.reserve_end));
    println!(
        "  paid            {} UMB to compute (gross), {} UMB to validators",
        f(r.compute_paid),
        f(r.validator_paid)
    );
    println!("  treasury        {} UMB", f(r.treasury));
    println!("  share prices    {}", r.share_prices.join(", "));
    println!(
        "  rewards vs share: max {} base units in a block, max {} ppm cumulative",
        r.max_block_deviation, r.max_cumulative_deviation_ppm
    );
    println!(
        "  heartbeats      {} answered, {} missed, {} outages",
        r.heartbeats_answered, r.heartbeats_missed, r.outages
    );
    println!("  transactions    {} ({} calls refused as expected)", r.transactions, r.failed_calls);
    println!(
        "  withdrawals     waiting in {} blocks; {} workers stopped by the chain to pay them",
        r.blocks_with_queued_withdrawals, r.forced_stops
    );
    println!(
        "  invariants      {} checks passed (supply, conservation, custody, holdings, rewards vs share every block)",
        r.checks_passed
    );
    for p in &r.series {
        println!(
            "    day {:>5}  budget {:>12}  avg V {:>6}  avg share price {}",
            p.day,
            f(p.budget),
            p.avg_v,
            f(p.avg_share_price)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> SimConfig {
        SimConfig { years: 1, hours_per_block: 24, workers: 20, operators: 3, delegators: 12, seed }
    }

    #[test]
    fn a_small_simulation_keeps_every_invariant_and_pays_rewards_by_share() {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let r = rt.block_on(simulate(&small(7))).expect("every invariant holds");
        assert_eq!(r.blocks, 365);
        assert_eq!(r.checks_passed, 5 * 365);
        assert!(r.compute_paid > 0 && r.max_computing >= 10, "{r:?}");
        assert!(r.max_block_deviation <= 2, "{r:?}");
        assert!(r.budget_end < r.budget_start, "the budget decayed");
        assert!(r.heartbeats_answered > 1_000 && r.heartbeats_missed > 0, "{r:?}");
        // Deterministic: the same seed gives the same run.
        let again = rt.block_on(simulate(&small(7))).expect("runs");
        assert_eq!(serde_json::to_string(&again).ok(), serde_json::to_string(&r).ok());
    }
}
