//! Scenario tests of compute economics: the decaying budget, pools, vaults, sessions, heartbeats,
//! benchmarks and slashing, driven through blocks with real dev workers. After every block the harness
//! checks that no token was created or lost, that the reserve plus the issued supply never exceeds the
//! maximum, and that the economics account holds exactly what pools and vaults account for.
#![allow(clippy::result_large_err)]

use futures::executor::block_on;
use proptest::prelude::*;
use std::collections::BTreeMap;
use umbra_crypto::{Keypair, sign_transaction};
use umbra_runtime::{AdmissionError, BlockEnv, ChangeSet, Runtime, RuntimeError, StateRead};
use umbra_tee::{Attester, DevPlatform, Measurement, Policy, TeeKind};
use umbra_types::economics::{
    EconomicsParams, PoolRecord, SessionState, heartbeat_challenge, min_stake, vault_address, worker_share,
    worker_value,
};
use umbra_types::{
    Address, Allocation, Amount, Call, Egress, EgressPayload, Genesis, GenesisValidator, Hash, MAX_SUPPLY, Message,
    MessageBody, Origin, Params, Receipt, RegistryGenesis, SignedEgress, SignedTransaction, TokenInfo, Transaction,
    TxError, UNIT, sha256,
};

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

const CHAIN: &str = "umbra-test";
const GENESIS_HASH: Hash = Hash([0xab; 32]);
const SUDO: usize = 0;
const RELAYER: usize = 5;

fn dev_seed() -> [u8; 32] {
    sha256(&[b"umbra dev attestation key"]).0
}

fn dev_key() -> [u8; 32] {
    Keypair::from_seed(dev_seed()).address().0
}

fn dev_measurement() -> Measurement {
    Measurement([0x5a; 32])
}

/// A dev chain's policy: dev (with the well-known dev key) and TDX accepted, the dev measurement allowed.
fn dev_policy() -> Policy {
    Policy {
        accepted_kinds: [TeeKind::Dev, TeeKind::Tdx].into(),
        dev_keys: [dev_key()].into(),
        measurements: [dev_measurement()].into(),
        ..Policy::default()
    }
}

/// A worker played by the test: its identity and X25519 keys, and a dev platform to quote with.
struct Worker {
    identity: Keypair,
    x25519: [u8; 32],
    platform: DevPlatform,
    _dir: tempfile::TempDir,
}

impl Worker {
    fn new(n: u8) -> Worker {
        Worker::with_measurement(n, dev_measurement())
    }

    fn with_measurement(n: u8, m: Measurement) -> Worker {
        let dir = tempfile::tempdir().expect("tempdir");
        let platform = DevPlatform::open(&dir.path().join("machine-secret"), dev_seed(), m).expect("dev platform");
        Worker { identity: Keypair::from_seed([100 + n; 32]), x25519: [150 + n; 32], platform, _dir: dir }
    }

    fn id(&self) -> [u8; 32] {
        self.identity.address().0
    }

    /// A quote binding this worker's keys, the test chain and `operator`.
    fn quote(&self, operator: &Address) -> Vec<u8> {
        let rd = umbra_tee::report_data(&self.id(), &self.x25519, CHAIN, &GENESIS_HASH.0, &operator.0);
        self.platform.quote(&rd).expect("dev quote")
    }

    fn register(&self, operator: &Address) -> Call {
        Call::RegisterWorker { identity: self.id(), x25519: self.x25519, quote: self.quote(operator) }
    }

    fn egress(&self, seq: u64, payload: EgressPayload) -> SignedEgress {
        sign_egress(&self.identity, Origin::Worker(self.id()), seq, payload)
    }
}

fn sign_egress(key: &Keypair, origin: Origin, seq: u64, payload: EgressPayload) -> SignedEgress {
    let egress = Egress { origin, seq, payload };
    let signature = key.sign(&egress.signing_bytes(CHAIN));
    SignedEgress { egress, signature }
}

const OP: usize = 1;
const ALICE: usize = 2;
const BOB: usize = 3;

struct Chain {
    rt: Runtime,
    state: MemState,
    height: u64,
    keys: Vec<Keypair>,
    nonces: BTreeMap<usize, u64>,
    seqs: BTreeMap<[u8; 32], u64>,
    proposer: Address,
    messages: Vec<(u64, Message)>,
    params: Params,
}

/// Test parameters: a 1,000 UMB budget all for compute, no heartbeats unless a test asks.
fn params() -> Params {
    let mut p = Params::default();
    p.rewards.reserve = 1_000_000 * UNIT;
    p.rewards.block_budget = 1_000 * UNIT;
    p.staking.validator_reward_share_bps = 0;
    p.economics = EconomicsParams {
        heartbeat_interval_blocks: u64::MAX,
        withdrawal_grace_blocks: 5,
        cooldown_blocks: 3,
        vault_period_blocks: 10,
        ..EconomicsParams::default()
    };
    p
}

impl Chain {
    fn new(params: Params) -> Chain {
        let keys: Vec<Keypair> = (0..6).map(|i| Keypair::from_seed([i as u8 + 1; 32])).collect();
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: 1_000,
            token: TokenInfo::default(),
            allocations: keys.iter().map(|k| Allocation { address: k.address(), amount: 100_000 * UNIT }).collect(),
            validators: vec![GenesisValidator { name: "v".into(), key: [200; 32] }],
            params: params.clone(),
            registry: RegistryGenesis { policy: dev_policy(), collateral: vec![], sudo: Some(keys[SUDO].address()) },
            governance: Default::default(),
        };
        let rt = Runtime::new();
        let mut state = MemState::default();
        let changes = block_on(rt.genesis(&genesis, &state)).expect("genesis applies");
        state.apply(changes);
        let mut c = Chain {
            rt,
            state,
            height: 0,
            keys,
            nonces: BTreeMap::new(),
            seqs: BTreeMap::new(),
            proposer: Address([200; 32]),
            messages: Vec::new(),
            params,
        };
        c.run(vec![]);
        c
    }

    fn env(&self) -> BlockEnv {
        let height = self.height + 1;
        let parent = if height == 1 { GENESIS_HASH } else { Hash([height as u8; 32]) };
        BlockEnv { height, timestamp_ms: 1_000 + height * 1_000, proposer: self.proposer, epoch: 0, parent }
    }

    fn tx(&mut self, from: usize, call: Call) -> SignedTransaction {
        let nonce = self.nonces.entry(from).or_insert(0);
        let k = &self.keys[from];
        let mut tx = Transaction { signer: k.address(), nonce: *nonce, chain_id: CHAIN.into(), fee: 0, call };
        *nonce += 1;
        let size = sign_transaction(k, tx.clone()).to_bytes().len();
        tx.fee = self.params.fees.min_fee(size, &tx.call);
        sign_transaction(k, tx)
    }

    fn addr(&self, i: usize) -> Address {
        self.keys[i].address()
    }

    fn run(&mut self, candidates: Vec<SignedTransaction>) -> (Vec<Receipt>, Vec<(Hash, AdmissionError)>) {
        let env = self.env();
        let built = block_on(self.rt.build_block(&self.state, &env, candidates)).expect("builds");
        let executed = block_on(self.rt.execute_block(&self.state, &env, &built.txs, true)).expect("valid block");
        assert_eq!(executed, built.outcome, "building and executing the block agree");
        self.state.apply(executed.changes);
        self.height += 1;
        for m in executed.messages {
            self.messages.push((self.height, m));
        }
        self.check_invariants();
        (executed.receipts, built.rejected)
    }

    fn blocks(&mut self, n: u64) {
        for _ in 0..n {
            self.run(vec![]);
        }
    }

    fn ok(&mut self, from: usize, call: Call) {
        let tx = self.tx(from, call);
        let (receipts, rejected) = self.run(vec![tx]);
        assert!(rejected.is_empty(), "rejected: {rejected:?}");
        assert_eq!(receipts[0].error, None, "the call succeeds");
    }

    fn fails(&mut self, from: usize, call: Call) -> TxError {
        let tx = self.tx(from, call);
        let (receipts, rejected) = self.run(vec![tx]);
        assert!(rejected.is_empty(), "rejected: {rejected:?}");
        receipts[0].error.clone().expect("the call fails")
    }

    fn sign(&mut self, w: &Worker, payload: EgressPayload) -> SignedEgress {
        let seq = self.seqs.entry(w.id()).or_insert(0);
        let m = w.egress(*seq, payload);
        *seq += 1;
        m
    }

    fn egress(&mut self, w: &Worker, payload: EgressPayload) -> Option<TxError> {
        let message = self.sign(w, payload);
        let tx = self.tx(RELAYER, Call::Egress { message });
        let (receipts, rejected) = self.run(vec![tx]);
        assert!(rejected.is_empty(), "rejected: {rejected:?}");
        receipts[0].error.clone()
    }

    fn balance(&self, a: &Address) -> Amount {
        block_on(self.rt.account(&self.state, a)).expect("readable").balance
    }

    fn pool(&self, id: u64) -> PoolRecord {
        block_on(self.rt.econ_pool(&self.state, id)).expect("readable").expect("pool")
    }

    fn shares(&self, pool: u64, who: &Address) -> u128 {
        block_on(self.rt.econ_pool_holding(&self.state, pool, who)).expect("readable").shares
    }

    fn reserve(&self) -> Amount {
        block_on(self.rt.rewards_reserve(&self.state)).expect("readable")
    }

    fn check_invariants(&self) {
        let escrow = self.rt.econ_escrow();
        let mut holders: Vec<Address> = self.keys.iter().map(|k| k.address()).collect();
        holders.extend([self.proposer, Address::module("treasury"), escrow]);
        let sum: Amount = holders.iter().map(|a| self.balance(a)).sum();
        let issued = block_on(self.rt.total_issued(&self.state)).expect("readable");
        assert_eq!(sum, issued, "tokens were created or lost at height {}", self.height);
        assert!(issued + self.reserve() <= MAX_SUPPLY, "supply plus reserve exceed the maximum");
        let mut held: Amount = 0;
        for id in block_on(self.rt.econ_pool_ids(&self.state)).expect("readable") {
            let p = self.pool(id);
            held += p.value();
            let total: u128 = p.holders.iter().map(|h| self.shares(id, h)).sum();
            assert_eq!(total, p.shares, "pool {id}'s holdings add up to its shares");
        }
        for id in block_on(self.rt.econ_vault_ids(&self.state)).expect("readable") {
            held += block_on(self.rt.econ_vault(&self.state, id)).expect("readable").expect("vault").free;
        }
        assert_eq!(self.balance(&escrow), held, "the economics account holds what pools and vaults account for");
    }

    /// Registers a dev worker operated by `OP`, adds it to `pool` and records benchmark `score`.
    fn worker_in_pool(&mut self, n: u8, pool: u64, score: u64) -> Worker {
        let w = Worker::new(n);
        let call = w.register(&self.addr(OP));
        self.ok(OP, call);
        self.ok(OP, Call::PoolAddWorker { pool, worker: w.id() });
        assert_eq!(self.egress(&w, EgressPayload::Benchmark { score }), None);
        w
    }

    fn challenges(&self, w: &Worker) -> Vec<(u64, Hash, u64)> {
        self.messages
            .iter()
            .filter_map(|(h, m)| match &m.body {
                MessageBody::HeartbeatChallenge { worker, challenge, deadline } if *worker == w.id() => {
                    Some((*h, *challenge, *deadline))
                }
                _ => None,
            })
            .collect()
    }
}

/// A pool of `OP` with 10% commission, funded by Alice and Bob with 5,000 UMB each.
fn funded_pool(c: &mut Chain) -> u64 {
    let id = block_on(c.rt.econ_pool_ids(&c.state)).expect("readable").len() as u64;
    c.ok(OP, Call::CreatePool { commission_bps: 1_000, cap: None, allow: None });
    c.ok(ALICE, Call::PoolContribute { pool: id, amount: 5_000 * UNIT });
    c.ok(BOB, Call::PoolContribute { pool: id, amount: 5_000 * UNIT });
    id
}

#[test]
fn the_budget_decays_each_period_and_never_pays_beyond_the_reserve() {
    let mut p = params();
    p.staking.validator_reward_share_bps = 10_000;
    p.economics.decay_period_blocks = 3;
    p.economics.decay_bps = 1_000;
    p.rewards.reserve = 2_500 * UNIT;
    let mut c = Chain::new(p);
    // Block 1 paid 1,000. Blocks 2 and 3 pay 1,000 each, then the budget is 900; block 4 gets only
    // the 500 left of the reserve, and nothing is paid after.
    assert_eq!(c.balance(&c.proposer), 1_000 * UNIT);
    c.run(vec![]);
    assert_eq!(c.balance(&c.proposer), 2_000 * UNIT);
    assert_eq!(block_on(c.rt.econ_budget(&c.state)).expect("readable"), 1_000 * UNIT);
    c.run(vec![]);
    assert_eq!(block_on(c.rt.econ_budget(&c.state)).expect("readable"), 900 * UNIT);
    assert_eq!(c.reserve(), 0);
    assert_eq!(c.balance(&c.proposer), 2_500 * UNIT);
    c.blocks(4);
    assert_eq!(c.balance(&c.proposer), 2_500 * UNIT, "an empty reserve pays nothing");
    assert_eq!(block_on(c.rt.econ_budget(&c.state)).expect("readable"), 810 * UNIT);
}

#[test]
fn rewards_raise_the_share_price_and_pay_the_commission_and_treasury_separately() {
    let mut c = Chain::new(params());
    let pool = funded_pool(&mut c);
    assert_eq!(c.shares(pool, &c.addr(ALICE)), 5_000 * UNIT);
    let w = c.worker_in_pool(1, pool, 500);
    let stake = 1_000 * UNIT;
    assert_eq!(min_stake(&c.params.economics, 500), 105 * UNIT);
    let e = c.fails(OP, Call::StartComputing { worker: w.id(), stake: 100 * UNIT });
    assert_eq!(e, TxError::StakeBelowMinimum { stake: 100 * UNIT, min: 105 * UNIT });
    let (owner0, treasury0, reserve0) = (c.balance(&c.addr(OP)), c.balance(&Address::module("treasury")), c.reserve());
    let tx = c.tx(OP, Call::StartComputing { worker: w.id(), stake });
    let fee = tx.tx.fee;
    c.run(vec![tx]);
    // This block's 1,000 UMB: 200 to the treasury, 80 commission, 720 to the pool.
    let p = c.pool(pool);
    assert_eq!((p.free, p.locked), (9_000 * UNIT + 720 * UNIT, stake));
    assert_eq!(c.balance(&c.addr(OP)), owner0 - fee + 80 * UNIT);
    // The treasury also gets its share of the fee.
    let fee_to_treasury = fee - fee * 5_000 / 10_000;
    assert_eq!(c.balance(&Address::module("treasury")), treasury0 + 200 * UNIT + fee_to_treasury);
    assert_eq!(c.reserve(), reserve0 - 1_000 * UNIT);
    assert_eq!(p.value_of(c.shares(pool, &c.addr(ALICE))), 5_360 * UNIT, "half the pool's reward");
    // A late contributor pays the new price: 1,036 UMB buy 1,000 shares (rounded down).
    c.ok(BOB, Call::PoolContribute { pool, amount: 1_072 * UNIT });
    assert!(c.shares(pool, &c.addr(BOB)) >= 5_000 * UNIT + 999 * UNIT);
}

#[test]
fn the_compute_budget_is_split_by_the_integer_square_root_formula() {
    let mut c = Chain::new(params());
    let a = funded_pool(&mut c);
    c.ok(OP, Call::CreatePool { commission_bps: 0, cap: None, allow: None });
    c.ok(ALICE, Call::PoolContribute { pool: 1, amount: 20_000 * UNIT });
    let w1 = c.worker_in_pool(1, a, 500);
    let w2 = c.worker_in_pool(2, 1, 2_000);
    c.ok(OP, Call::StartComputing { worker: w1.id(), stake: 1_000 * UNIT });
    let tx = c.tx(OP, Call::StartComputing { worker: w2.id(), stake: 8_000 * UNIT });
    let (free_a, free_b) = (c.pool(a).free, c.pool(1).free - 8_000 * UNIT);
    c.run(vec![tx]);
    let ep = EconomicsParams { ..c.params.economics.clone() };
    // Dev workers are confidence level 3 (5000 bps).
    let v1 = worker_value(&ep, 1_000 * UNIT, 500, umbra_tee::Confidence::Simulated);
    let v2 = worker_value(&ep, 8_000 * UNIT, 2_000, umbra_tee::Confidence::Simulated);
    assert_eq!((v1, v2), (750, 5_000));
    let (s1, s2) = (worker_share(&ep, v1, 500), worker_share(&ep, v2, 2_000));
    assert_eq!((s1, s2), (1_030, 5_744), "isqrt(750^2 + 2*500^2), isqrt(5000^2 + 2*2000^2)");
    let compute = 1_000 * UNIT;
    let (pay1, pay2) = (compute * s1 / (s1 + s2), compute * s2 / (s1 + s2));
    let net = |pay: u128, commission: u128| {
        let rest = pay - pay * 2_000 / 10_000;
        rest - rest * commission / 10_000
    };
    assert_eq!(c.pool(a).free - free_a, net(pay1, 1_000));
    assert_eq!(c.pool(1).free - free_b, net(pay2, 0));
}

#[test]
fn an_unpaid_withdrawal_waits_then_forces_the_pool_to_stop_a_worker() {
    let mut c = Chain::new(params());
    c.ok(OP, Call::CreatePool { commission_bps: 0, cap: None, allow: None });
    c.ok(ALICE, Call::PoolContribute { pool: 0, amount: 1_000 * UNIT });
    let w = c.worker_in_pool(1, 0, 100);
    c.ok(OP, Call::StartComputing { worker: w.id(), stake: 1_000 * UNIT });
    let alice = c.addr(ALICE);
    let before = c.balance(&alice);
    let shares = c.shares(0, &alice);
    c.ok(ALICE, Call::PoolWithdraw { pool: 0, shares });
    let p = c.pool(0);
    assert_eq!(p.queue.len(), 1, "rewards alone do not cover it: it waits");
    let requested = p.queue[0].requested_at;
    let e = c.fails(OP, Call::StartComputing { worker: w.id(), stake: 1_000 * UNIT });
    assert!(matches!(e, TxError::EconomicsPrecondition { .. }));
    while c.height < requested + 5 {
        c.run(vec![]);
        let s = block_on(c.rt.econ_worker(&c.state, &w.id())).expect("readable").session.expect("session");
        if c.height < requested + 5 {
            assert_eq!(s.state, SessionState::Computing);
        }
    }
    let s = block_on(c.rt.econ_worker(&c.state, &w.id())).expect("readable").session.expect("session");
    assert_eq!(s.state, SessionState::CoolingDown { until: requested + 5 + 3 }, "stopped after the grace period");
    c.blocks(3);
    assert!(block_on(c.rt.econ_worker(&c.state, &w.id())).expect("readable").session.is_none());
    let p = c.pool(0);
    assert!(p.queue.is_empty() && p.shares == 0, "paid once the stake was released");
    assert!(c.balance(&alice) > before + 1_000 * UNIT, "with the rewards earned meanwhile");
}

#[test]
fn a_stopped_worker_cools_down_before_its_stake_returns() {
    let mut c = Chain::new(params());
    let pool = funded_pool(&mut c);
    let w = c.worker_in_pool(1, pool, 100);
    c.ok(OP, Call::StartComputing { worker: w.id(), stake: 2_000 * UNIT });
    assert!(matches!(c.fails(ALICE, Call::StopComputing { worker: w.id() }), TxError::NotAuthorized { .. }));
    c.ok(OP, Call::StopComputing { worker: w.id() });
    let free = c.pool(pool).free;
    c.blocks(2);
    assert_eq!(c.pool(pool).locked, 2_000 * UNIT, "no rewards and no release while cooling");
    assert_eq!(c.pool(pool).free, free);
    c.run(vec![]);
    assert_eq!((c.pool(pool).locked, c.pool(pool).free), (0, free + 2_000 * UNIT));
}

#[test]
fn vaults_allocate_by_hand_and_automatically_and_withdrawals_cascade_into_pools() {
    let mut c = Chain::new(params());
    let pool = funded_pool(&mut c);
    c.ok(OP, Call::CreatePool { commission_bps: 0, cap: None, allow: None });
    let w = c.worker_in_pool(1, pool, 100);
    c.ok(OP, Call::StartComputing { worker: w.id(), stake: 10_000 * UNIT });
    // Manual vault.
    c.ok(BOB, Call::CreateVault { auto: false });
    c.ok(ALICE, Call::VaultContribute { vault: 0, amount: 3_000 * UNIT });
    assert!(matches!(c.fails(ALICE, Call::VaultAllocate { vault: 0, pool, amount: 1 }), TxError::NotAuthorized { .. }));
    c.ok(BOB, Call::VaultAllocate { vault: 0, pool, amount: 2_000 * UNIT });
    let va = vault_address(0);
    assert!(c.shares(pool, &va) > 0);
    // Alice withdraws everything: 1,000 from the vault's free tokens, the rest cascades into a pool
    // withdrawal (paid from the pool's free rewards, or queued until its stake frees).
    let alice = c.addr(ALICE);
    let shares = block_on(c.rt.econ_vault_holding(&c.state, 0, &alice)).expect("readable").shares;
    let held = c.shares(pool, &va);
    c.ok(ALICE, Call::VaultWithdraw { vault: 0, shares });
    let p = c.pool(pool);
    let queued = p.queue.iter().any(|r| r.vault == Some(0));
    assert!(queued || c.shares(pool, &va) < held, "the vault's withdrawal cascaded into the pool");
    c.ok(OP, Call::StopComputing { worker: w.id() });
    c.blocks(4);
    let v = block_on(c.rt.econ_vault(&c.state, 0)).expect("readable").expect("vault");
    assert!(v.queue.is_empty() && v.shares == 0, "paid after the pool's stake cooled down: {v:?}");
    assert!(c.balance(&alice) > 100_000 * UNIT - 10_000 * UNIT, "alice got her tokens and rewards back");
    // Automatic vault: at the next period end its free tokens go to the pool that earned.
    c.ok(OP, Call::StartComputing { worker: w.id(), stake: 5_000 * UNIT });
    c.ok(BOB, Call::CreateVault { auto: true });
    c.ok(ALICE, Call::VaultContribute { vault: 1, amount: 500 * UNIT });
    while !c.height.is_multiple_of(10) {
        c.run(vec![]);
    }
    // The first period end only records the earning rate; the vault allocates at that end too if the
    // pool earned in the period before.
    if c.shares(pool, &vault_address(1)) == 0 {
        c.blocks(10);
    }
    assert!(c.shares(pool, &vault_address(1)) > 0, "auto-allocated to the earning pool");
    assert_eq!(c.shares(1, &vault_address(1)), 0, "not to the idle one");
}

#[test]
fn a_missed_heartbeat_makes_a_worker_unresponsive_until_it_answers() {
    let mut p = params();
    p.economics.heartbeat_interval_blocks = 1;
    p.economics.heartbeat_window_blocks = 2;
    let mut c = Chain::new(p);
    let pool = funded_pool(&mut c);
    let w = c.worker_in_pool(1, pool, 500);
    c.ok(OP, Call::StartComputing { worker: w.id(), stake: 1_000 * UNIT });
    let (issued_at, challenge, deadline) = c.challenges(&w)[0];
    assert_eq!(challenge, heartbeat_challenge(&Hash([issued_at as u8; 32]), issued_at));
    assert_eq!(deadline, issued_at + 2);
    while c.height <= deadline {
        c.run(vec![]);
    }
    let rec = block_on(c.rt.econ_worker(&c.state, &w.id())).expect("readable");
    let sess = rec.session.clone().expect("session");
    assert!(!sess.responsive && rec.missed == 1);
    let (free, v) = (c.pool(pool).free, sess.value);
    c.run(vec![]);
    let sess = block_on(c.rt.econ_worker(&c.state, &w.id())).expect("readable").session.expect("session");
    assert_eq!(c.pool(pool).free, free, "no rewards while unresponsive");
    assert_eq!(sess.value, v * 9_500 / 10_000, "its value decays each block");
    // A wrong challenge is refused; the pending one (late) recovers it, with its score capped.
    assert!(c.egress(&w, EgressPayload::Heartbeat { challenge: Hash([1; 32]), score: 1 }).is_some());
    assert_eq!(c.egress(&w, EgressPayload::Heartbeat { challenge, score: 10_000 }), None);
    let rec = block_on(c.rt.econ_worker(&c.state, &w.id())).expect("readable");
    assert!(rec.session.as_ref().expect("session").responsive);
    assert_eq!((rec.score, rec.answered), (600, 1), "instant score capped at 120% of the benchmark");
    let free = c.pool(pool).free;
    c.run(vec![]);
    assert!(c.pool(pool).free > free, "rewards resume");
}

#[test]
fn benchmarks_are_bounded_and_cannot_change_during_a_session() {
    let mut c = Chain::new(params());
    let pool = funded_pool(&mut c);
    let w = Worker::new(1);
    let call = w.register(&c.addr(OP));
    c.ok(OP, call);
    c.ok(OP, Call::PoolAddWorker { pool, worker: w.id() });
    assert!(c.fails(OP, Call::StartComputing { worker: w.id(), stake: 1_000 * UNIT }) != TxError::Overflow);
    assert!(c.egress(&w, EgressPayload::Benchmark { score: 0 }).is_some());
    assert!(c.egress(&w, EgressPayload::Benchmark { score: 1_000_001 }).is_some());
    assert_eq!(c.egress(&w, EgressPayload::Benchmark { score: 1_000_000 }), None);
    assert_eq!(block_on(c.rt.econ_worker(&c.state, &w.id())).expect("readable").initial_score, 1_000_000);
    assert_eq!(c.egress(&w, EgressPayload::Benchmark { score: 10 }), None);
    c.ok(OP, Call::StartComputing { worker: w.id(), stake: 1_000 * UNIT });
    assert!(c.egress(&w, EgressPayload::Benchmark { score: 20 }).is_some());
    // Someone else's worker cannot join the pool.
    let other = Worker::new(2);
    let call = other.register(&c.addr(BOB));
    c.ok(BOB, call);
    assert!(matches!(c.fails(OP, Call::PoolAddWorker { pool, worker: other.id() }), TxError::NotAuthorized { .. }));
}

#[test]
fn equivocation_slashes_the_stake_stops_and_revokes_the_worker_and_wrong_evidence_costs_the_fee() {
    let mut c = Chain::new(params());
    let pool = funded_pool(&mut c);
    let w = c.worker_in_pool(1, pool, 100);
    c.ok(OP, Call::StartComputing { worker: w.id(), stake: 2_000 * UNIT });
    let a = w.egress(7, EgressPayload::Benchmark { score: 1 });
    let b = w.egress(7, EgressPayload::Benchmark { score: 2 });
    let other_seq = w.egress(8, EgressPayload::Benchmark { score: 2 });
    let mut forged = b.clone();
    forged.signature[0] ^= 1;
    let relayer = c.addr(RELAYER);
    for (first, second) in [(a.clone(), a.clone()), (a.clone(), other_seq), (a.clone(), forged)] {
        let before = c.balance(&relayer);
        let tx = c.tx(RELAYER, Call::ReportEquivocation { first, second });
        let fee = tx.tx.fee;
        let (receipts, _) = c.run(vec![tx]);
        assert!(matches!(receipts[0].error, Some(TxError::BadEquivocationEvidence { .. })));
        assert_eq!(c.balance(&relayer), before - fee, "wrong evidence costs its fee");
    }
    let treasury = c.balance(&Address::module("treasury"));
    let value = c.pool(pool).value();
    let tx = c.tx(RELAYER, Call::ReportEquivocation { first: a.clone(), second: b.clone() });
    let fee = tx.tx.fee;
    let (receipts, _) = c.run(vec![tx]);
    assert_eq!(receipts[0].error, None);
    let rec = block_on(c.rt.econ_worker(&c.state, &w.id())).expect("readable");
    let sess = rec.session.expect("session");
    assert!(rec.slashed);
    assert_eq!(sess.stake, 1_800 * UNIT, "10% slashed");
    assert!(matches!(sess.state, SessionState::CoolingDown { .. }));
    assert_eq!(c.pool(pool).value(), value - 200 * UNIT, "the delegators share the loss");
    let fee_to_treasury = fee - fee * 5_000 / 10_000;
    assert_eq!(c.balance(&Address::module("treasury")), treasury + 200 * UNIT + fee_to_treasury);
    let reg = block_on(c.rt.worker(&c.state, &w.id())).expect("readable").expect("record");
    assert!(reg.revoked.is_some(), "registration revoked");
    let tx = c.tx(RELAYER, Call::ReportEquivocation { first: a, second: b });
    let (receipts, _) = c.run(vec![tx]);
    assert!(matches!(receipts[0].error, Some(TxError::BadEquivocationEvidence { .. })), "punished once");
}

#[derive(Clone, Debug)]
enum Op {
    Contribute(usize, u64, u128),
    Withdraw(usize, u64, u128),
    Start(u128),
    Stop,
    VaultContribute(usize, u128),
    VaultAllocate(u64, u128),
    VaultWithdraw(usize, u128),
    Idle,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (2usize..5, 0u64..2, 1u128..5_000).prop_map(|(w, p, a)| Op::Contribute(w, p, a * UNIT)),
        (2usize..5, 0u64..2, 1u128..10_000).prop_map(|(w, p, a)| Op::Withdraw(w, p, a * UNIT)),
        (100u128..3_000).prop_map(|a| Op::Start(a * UNIT)),
        Just(Op::Stop),
        (2usize..5, 1u128..3_000).prop_map(|(w, a)| Op::VaultContribute(w, a * UNIT)),
        (0u64..2, 1u128..3_000).prop_map(|(p, a)| Op::VaultAllocate(p, a * UNIT)),
        (2usize..5, 1u128..3_000).prop_map(|(w, a)| Op::VaultWithdraw(w, a * UNIT)),
        Just(Op::Idle),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn random_operations_keep_supply_and_pool_accounting_consistent(ops in proptest::collection::vec(op(), 1..25)) {
        let mut p = params();
        p.economics.heartbeat_interval_blocks = 3;
        let mut c = Chain::new(p);
        c.ok(OP, Call::CreatePool { commission_bps: 500, cap: Some(50_000 * UNIT), allow: None });
        c.ok(OP, Call::CreatePool { commission_bps: 0, cap: None, allow: None });
        c.ok(SUDO, Call::CreateVault { auto: true });
        let w = c.worker_in_pool(1, 0, 300);
        for op in ops {
            // Every block runs the invariants in `Chain::run`; calls may fail.
            let (from, call) = match op {
                Op::Contribute(who, pool, amount) => (who, Call::PoolContribute { pool, amount }),
                Op::Withdraw(who, pool, shares) => (who, Call::PoolWithdraw { pool, shares }),
                Op::Start(stake) => (OP, Call::StartComputing { worker: w.id(), stake }),
                Op::Stop => (OP, Call::StopComputing { worker: w.id() }),
                Op::VaultContribute(who, amount) => (who, Call::VaultContribute { vault: 0, amount }),
                Op::VaultAllocate(pool, amount) => (SUDO, Call::VaultAllocate { vault: 0, pool, amount }),
                Op::VaultWithdraw(who, shares) => (who, Call::VaultWithdraw { vault: 0, shares }),
                Op::Idle => (RELAYER, Call::Transfer { to: c.addr(4), amount: 1 }),
            };
            let tx = c.tx(from, call);
            c.run(vec![tx]);
        }
        c.blocks(12);
    }
}
