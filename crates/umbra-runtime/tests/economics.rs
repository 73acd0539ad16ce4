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
use umbra_types::contracts::{
    CodeKind, CommandStatus, ContractPublic, code_hash, contract_account, contract_id, gas_escrow,
};
use umbra_types::economics::{
    EconomicsParams, PoolRecord, SessionState, compute_stake_account, heartbeat_challenge, min_stake, vault_address,
    worker_share, worker_value,
};
use umbra_types::registry::{ClusterKeys, ClusterPublic, KeyShare};
use umbra_types::{
    Address, AdminCall, Allocation, Amount, Call, Egress, EgressPayload, Genesis, GenesisValidator, Hash, MAX_SUPPLY,
    Message, MessageBody, Origin, Params, Receipt, RegistryGenesis, SignedEgress, SignedTransaction, TokenInfo, Topic,
    Transaction, TxError, UNIT, sha256,
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
    /// More accounts the supply check sums (contract accounts).
    extra_holders: Vec<Address>,
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
            extra_holders: Vec::new(),
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
        holders.extend([self.proposer, Address::module("treasury"), escrow, compute_stake_account(), gas_escrow()]);
        holders.extend(self.extra_holders.iter().copied());
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
    // The expired challenge is refused by name; the unresponsive worker was challenged again at once,
    // and answering that one recovers it, with an instant score within the cap.
    let e = c.egress(&w, EgressPayload::Heartbeat { challenge, score: 500 }).expect("refused");
    assert!(matches!(&e, TxError::BadHeartbeat { reason } if reason.contains("expired")), "{e:?}");
    assert!(c.egress(&w, EgressPayload::Heartbeat { challenge: Hash([1; 32]), score: 1 }).is_some());
    let (_, next, _) = *c.challenges(&w).last().expect("a new challenge");
    assert_ne!(next, challenge);
    let e = c.egress(&w, EgressPayload::Heartbeat { challenge: next, score: 10_000 }).expect("refused");
    assert!(matches!(&e, TxError::BadHeartbeat { reason } if reason.contains("outside 1..=600")), "{e:?}");
    assert_eq!(c.egress(&w, EgressPayload::Heartbeat { challenge: next, score: 600 }), None);
    let rec = block_on(c.rt.econ_worker(&c.state, &w.id())).expect("readable");
    assert!(rec.session.as_ref().expect("session").responsive);
    assert_eq!((rec.score, rec.answered), (600, 1), "instant score recorded, at most 120% of the benchmark");
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

// ---- more scenarios: heartbeat rate, bad input, state roots, stake-to-compute, reclaim, vault mode ----

impl Chain {
    /// The signer's balance and every pool, vault and the escrow balance: what a refused call must not move
    /// (apart from the signer's fee).
    fn snapshot(&self) -> (Vec<PoolRecord>, Vec<umbra_types::economics::VaultRecord>, Amount, Amount) {
        let pools =
            block_on(self.rt.econ_pool_ids(&self.state)).expect("readable").iter().map(|i| self.pool(*i)).collect();
        let vaults = block_on(self.rt.econ_vault_ids(&self.state))
            .expect("readable")
            .iter()
            .map(|i| block_on(self.rt.econ_vault(&self.state, *i)).expect("readable").expect("vault"))
            .collect();
        (pools, vaults, self.balance(&self.rt.econ_escrow()), self.balance(&compute_stake_account()))
    }

    /// Runs a call that must fail in a block where nothing else moves tokens; asserts that it cost its
    /// signer exactly the fee and changed no pool, vault or escrow.
    fn refused(&mut self, from: usize, call: Call) -> TxError {
        let before = (self.balance(&self.addr(from)), self.snapshot());
        let tx = self.tx(from, call);
        let fee = tx.tx.fee;
        let (receipts, rejected) = self.run(vec![tx]);
        assert!(rejected.is_empty(), "rejected: {rejected:?}");
        let e = receipts[0].error.clone().expect("the call fails");
        assert_eq!(self.balance(&self.addr(from)), before.0 - fee, "only the fee is paid: {e}");
        assert_eq!(self.snapshot(), before.1, "nothing moved: {e}");
        e
    }

    /// Answers every pending challenge of `ws` in one block (one egress each).
    fn answer_all(&mut self, ws: &[&Worker]) -> usize {
        let mut txs = Vec::new();
        for w in ws {
            let rec = block_on(self.rt.econ_worker(&self.state, &w.id())).expect("readable");
            if let Some(p) = rec.session.and_then(|s| s.pending) {
                let m = self.sign(w, EgressPayload::Heartbeat { challenge: p.challenge, score: rec.initial_score });
                txs.push(self.tx(RELAYER, Call::Egress { message: m }));
            }
        }
        let n = txs.len();
        let (receipts, rejected) = self.run(txs);
        assert!(rejected.is_empty() && receipts.iter().all(Receipt::is_success), "{receipts:?} {rejected:?}");
        n
    }
}

/// Counts the challenges three always-answering workers get over `blocks` blocks at `block_ms`.
fn challenges_over(block_ms: u64, blocks: u64) -> usize {
    let mut p = params();
    p.economics.heartbeat_interval_blocks = 0;
    p.economics.heartbeats_per_hour = 60;
    p.economics.target_block_ms = block_ms;
    p.economics.heartbeat_window_blocks = 5;
    let mut c = Chain::new(p);
    let pool = funded_pool(&mut c);
    let ws: Vec<Worker> = (1..=3).map(|i| c.worker_in_pool(i, pool, 100)).collect();
    for w in &ws {
        c.ok(OP, Call::StartComputing { worker: w.id(), stake: 1_000 * UNIT });
    }
    let start = c.messages.len();
    let refs: Vec<&Worker> = ws.iter().collect();
    for _ in 0..blocks {
        c.answer_all(&refs);
    }
    for w in &ws {
        let rec = block_on(c.rt.econ_worker(&c.state, &w.id())).expect("readable");
        assert_eq!(rec.missed, 0, "answered every challenge in time");
    }
    c.messages[start..].iter().filter(|(_, m)| matches!(m.body, MessageBody::HeartbeatChallenge { .. })).count()
}

#[test]
fn heartbeats_per_hour_scale_with_the_target_block_time() {
    // 60 an hour: with 6-second blocks a worker is asked once every 10 blocks, with 3-second blocks once
    // every 20. Three workers over 600 blocks: about 180 and 90 challenges.
    let fast = challenges_over(6_000, 600);
    let slow = challenges_over(3_000, 600);
    assert!((135..=225).contains(&fast), "about 180 challenges at 6 s blocks: {fast}");
    assert!((60..=120).contains(&slow), "about 90 challenges at 3 s blocks: {slow}");
    assert!(fast > slow * 3 / 2, "twice as many per block when blocks last twice as long: {fast} vs {slow}");
}

#[test]
fn contributing_nothing_too_little_or_beyond_the_cap_is_refused_and_loses_nothing() {
    let mut c = Chain::new(params());
    c.ok(OP, Call::CreatePool { commission_bps: 0, cap: Some(1_000 * UNIT), allow: Some(vec![c.addr(ALICE)]) });
    assert_eq!(c.refused(ALICE, Call::PoolContribute { pool: 0, amount: 0 }), TxError::ZeroAmount);
    let e = c.refused(ALICE, Call::PoolContribute { pool: 0, amount: 1_000 * UNIT + 1 });
    assert!(matches!(&e, TxError::EconomicsPrecondition { reason } if reason.contains("cap")), "{e:?}");
    let e = c.refused(BOB, Call::PoolContribute { pool: 0, amount: UNIT });
    assert!(matches!(e, TxError::NotAuthorized { .. }), "not on the allow-list: {e:?}");
    assert_eq!(c.refused(ALICE, Call::PoolContribute { pool: 9, amount: UNIT }), TxError::UnknownPool { id: 9 });
    c.ok(ALICE, Call::PoolContribute { pool: 0, amount: 1_000 * UNIT });
    // The pool is full: even one more base unit is beyond the cap.
    let e = c.refused(ALICE, Call::PoolContribute { pool: 0, amount: 1 });
    assert!(matches!(e, TxError::EconomicsPrecondition { .. }), "{e:?}");
    // A contribution worth less than one share (after the price rose) buys nothing and is refused.
    let mut c = Chain::new(params());
    let pool = funded_pool(&mut c);
    let w = c.worker_in_pool(1, pool, 100);
    c.ok(OP, Call::StartComputing { worker: w.id(), stake: 1_000 * UNIT });
    c.ok(OP, Call::StopComputing { worker: w.id() });
    c.blocks(4);
    assert!(c.pool(pool).value() > c.pool(pool).shares, "a share is worth more than one base unit");
    let e = c.refused(ALICE, Call::PoolContribute { pool, amount: 1 });
    assert!(matches!(&e, TxError::EconomicsPrecondition { reason } if reason.contains("no share")), "{e:?}");
}

#[test]
fn withdrawing_more_shares_than_held_or_zero_shares_is_refused_and_loses_nothing() {
    let mut c = Chain::new(params());
    let pool = funded_pool(&mut c);
    let held = c.shares(pool, &c.addr(ALICE));
    let e = c.refused(ALICE, Call::PoolWithdraw { pool, shares: held + 1 });
    assert_eq!(e, TxError::InsufficientShares { available: held, requested: held + 1 });
    assert_eq!(c.refused(ALICE, Call::PoolWithdraw { pool, shares: 0 }), TxError::ZeroAmount);
    let e = c.refused(SUDO, Call::PoolWithdraw { pool, shares: 1 });
    assert_eq!(e, TxError::InsufficientShares { available: 0, requested: 1 });
    c.ok(SUDO, Call::CreateVault { auto: false });
    c.ok(ALICE, Call::VaultContribute { vault: 0, amount: 10 * UNIT });
    let e = c.refused(BOB, Call::VaultWithdraw { vault: 0, shares: 1 });
    assert_eq!(e, TxError::InsufficientShares { available: 0, requested: 1 });
    assert_eq!(c.refused(ALICE, Call::VaultWithdraw { vault: 0, shares: 0 }), TxError::ZeroAmount);
}

#[test]
fn adding_a_worker_the_owner_does_not_operate_or_an_unregistered_one_is_refused() {
    let mut c = Chain::new(params());
    let pool = funded_pool(&mut c);
    let stranger = Worker::new(7);
    assert_eq!(c.refused(OP, Call::PoolAddWorker { pool, worker: stranger.id() }), TxError::UnknownWorker);
    let call = stranger.register(&c.addr(BOB));
    c.ok(BOB, call);
    let e = c.refused(OP, Call::PoolAddWorker { pool, worker: stranger.id() });
    assert!(matches!(e, TxError::NotAuthorized { .. }), "{e:?}");
    // Bob operates it but does not own the pool.
    let e = c.refused(BOB, Call::PoolAddWorker { pool, worker: stranger.id() });
    assert!(matches!(e, TxError::NotAuthorized { .. }), "{e:?}");
}

#[test]
fn arithmetic_at_the_limits_is_refused_without_creating_or_losing_tokens() {
    let mut c = Chain::new(params());
    let pool = funded_pool(&mut c);
    let w = c.worker_in_pool(1, pool, 100);
    let e = c.refused(ALICE, Call::PoolContribute { pool, amount: u128::MAX });
    assert!(matches!(e, TxError::Overflow | TxError::InsufficientBalance { .. }), "{e:?}");
    let e = c.refused(ALICE, Call::PoolWithdraw { pool, shares: u128::MAX });
    assert!(matches!(e, TxError::InsufficientShares { .. }), "{e:?}");
    let e = c.refused(OP, Call::StartComputing { worker: w.id(), stake: u128::MAX });
    assert!(matches!(e, TxError::InsufficientBalance { .. }), "{e:?}");
    // Too little stake for the benchmark score.
    let e = c.refused(OP, Call::StartComputing { worker: w.id(), stake: 100 * UNIT });
    assert_eq!(e, TxError::StakeBelowMinimum { stake: 100 * UNIT, min: 101 * UNIT });
    c.ok(SUDO, Call::CreateVault { auto: false });
    let e = c.refused(ALICE, Call::VaultContribute { vault: 0, amount: u128::MAX });
    assert!(matches!(e, TxError::InsufficientBalance { .. }), "{e:?}");
    c.ok(ALICE, Call::VaultContribute { vault: 0, amount: UNIT });
    let e = c.refused(SUDO, Call::VaultAllocate { vault: 0, pool, amount: u128::MAX });
    assert!(matches!(e, TxError::InsufficientBalance { .. }), "{e:?}");
    let e = c.refused(ALICE, Call::StakeCompute { contract: [9; 32], amount: u128::MAX });
    assert_eq!(e, TxError::UnknownContract);
    // A pool everyone left has zero shares and takes a new first contribution at one share per unit.
    let alice_shares = c.shares(pool, &c.addr(ALICE));
    let bob_shares = c.shares(pool, &c.addr(BOB));
    c.ok(ALICE, Call::PoolWithdraw { pool, shares: alice_shares });
    c.ok(BOB, Call::PoolWithdraw { pool, shares: bob_shares });
    let p = c.pool(pool);
    assert_eq!((p.shares, p.value()), (0, 0), "emptied: {p:?}");
    c.ok(BOB, Call::PoolContribute { pool, amount: 7 });
    assert_eq!(c.shares(pool, &c.addr(BOB)), 7);
}

#[test]
fn heartbeats_from_the_wrong_worker_replayed_or_with_a_forged_score_are_refused() {
    let mut p = params();
    p.economics.heartbeat_interval_blocks = 1;
    p.economics.heartbeat_window_blocks = 3;
    let mut c = Chain::new(p);
    let pool = funded_pool(&mut c);
    let w = c.worker_in_pool(1, pool, 500);
    let other = c.worker_in_pool(2, pool, 500);
    c.ok(OP, Call::StartComputing { worker: w.id(), stake: 1_000 * UNIT });
    let (_, challenge, _) = c.challenges(&w)[0];
    let relayer = c.addr(RELAYER);
    let check = |c: &mut Chain, e: Option<TxError>, what: &str| {
        let e = e.unwrap_or_else(|| panic!("{what} is refused"));
        assert!(matches!(e, TxError::BadHeartbeat { .. }), "{what}: {e:?}");
        let rec = block_on(c.rt.econ_worker(&c.state, &w.id())).expect("readable");
        assert_eq!((rec.answered, rec.score), (0, 500), "{what} changed nothing");
    };
    // Another worker answering this worker's challenge (signed with its own key).
    let before = c.balance(&relayer);
    let e = c.egress(&other, EgressPayload::Heartbeat { challenge, score: 500 });
    check(&mut c, e, "a heartbeat from the wrong worker");
    assert!(c.balance(&relayer) < before, "its relayer paid the fee");
    // A forged score: above the cap, or zero.
    let e = c.egress(&w, EgressPayload::Heartbeat { challenge, score: 601 });
    check(&mut c, e, "a score above 120% of the benchmark");
    let e = c.egress(&w, EgressPayload::Heartbeat { challenge, score: 0 });
    check(&mut c, e, "a zero score");
    // The real answer, then the same message replayed (not admitted), then a re-signed copy.
    let m = c.sign(&w, EgressPayload::Heartbeat { challenge, score: 550 });
    let tx = c.tx(RELAYER, Call::Egress { message: m.clone() });
    let (r, _) = c.run(vec![tx]);
    assert_eq!(r[0].error, None);
    let replay = c.tx(RELAYER, Call::Egress { message: m });
    let (r, rejected) = c.run(vec![replay]);
    assert!(r.is_empty() && rejected.len() == 1, "a replayed message is not admitted: {rejected:?}");
    c.nonces.entry(RELAYER).and_modify(|n| *n -= 1);
    let e = c.egress(&w, EgressPayload::Heartbeat { challenge, score: 550 }).expect("refused");
    assert!(matches!(e, TxError::BadHeartbeat { .. }), "an answered challenge cannot be answered twice: {e:?}");
    assert_eq!(block_on(c.rt.econ_worker(&c.state, &w.id())).expect("readable").answered, 1);
}

#[test]
fn stake_to_compute_locks_tokens_for_a_contract_and_pays_them_back_after_the_delay() {
    let mut s = state_root_setup();
    let c = &mut s.c;
    let id = s.contract;
    assert!(matches!(c.refused(ALICE, Call::StakeCompute { contract: id, amount: 0 }), TxError::ZeroAmount));
    let alice = c.addr(ALICE);
    let before = c.balance(&alice);
    let tx = c.tx(ALICE, Call::StakeCompute { contract: id, amount: 300 * UNIT });
    let fee = tx.tx.fee;
    assert_eq!(c.run(vec![tx]).0[0].error, None);
    c.ok(BOB, Call::StakeCompute { contract: id, amount: 100 * UNIT });
    assert_eq!(c.balance(&alice), before - fee - 300 * UNIT);
    let rec = block_on(c.rt.econ_compute_stake(&c.state, &id)).expect("readable").expect("staked");
    assert_eq!((rec.cluster, rec.total, rec.stakers.len()), (CLUSTER, 400 * UNIT, 2));
    assert_eq!(block_on(c.rt.econ_cluster_stakes(&c.state, CLUSTER)).expect("readable"), vec![(id, 400 * UNIT)]);
    let e = c.refused(ALICE, Call::UnstakeCompute { contract: id, amount: 301 * UNIT });
    assert!(matches!(e, TxError::InsufficientBalance { .. }), "{e:?}");
    let before = c.balance(&alice) + fee + 300 * UNIT;
    let tx = c.tx(ALICE, Call::UnstakeCompute { contract: id, amount: 300 * UNIT });
    let fee2 = tx.tx.fee;
    assert_eq!(c.run(vec![tx]).0[0].error, None);
    let release = block_on(c.rt.econ_unstakes(&c.state)).expect("readable")[0].release_at;
    assert_eq!(release, c.height + 5);
    while c.height < release - 1 {
        c.run(vec![]);
    }
    assert_eq!(c.balance(&alice), before - fee - fee2 - 300 * UNIT, "still locked before the delay ends");
    c.run(vec![]);
    assert_eq!(c.balance(&alice), before - fee - fee2, "paid back");
    assert_eq!(block_on(c.rt.econ_cluster_stakes(&c.state, CLUSTER)).expect("readable"), vec![(id, 100 * UNIT)]);
}

const CLUSTER: u32 = 7;

/// A chain with a keyed cluster of three workers (all operated by `OP`), one of them in a funded pool and
/// computing, and a deployed contract with one command reported with root 5.
struct RootSetup {
    c: Chain,
    members: Vec<Worker>,
    contract: [u8; 32],
    pool: u64,
}

fn state_root_setup() -> RootSetup {
    let mut p = params();
    // No budget: pools only move by what a test does.
    p.rewards.block_budget = 0;
    p.economics.compute_unstake_blocks = 5;
    p.economics.heartbeat_window_blocks = 3;
    let mut c = Chain::new(p);
    let pool = funded_pool(&mut c);
    let gk_worker = Worker::new(9);
    let call = gk_worker.register(&c.addr(OP));
    c.ok(OP, call);
    c.ok(SUDO, Call::Admin { call: AdminCall::AppointGatekeeper { worker: gk_worker.id() } });
    let gk = Keypair::from_seed([41; 32]);
    let first = EgressPayload::MasterKey {
        key_epoch: 1,
        master_public: [51; 32],
        gatekeeper_key: gk.address().0,
        shares: vec![],
        clusters: vec![],
    };
    assert_eq!(c.egress(&gk_worker, first), None);
    c.ok(SUDO, Call::Admin { call: AdminCall::CreateCluster { cluster: CLUSTER } });
    let cluster_key = Keypair::from_seed([63; 32]);
    let public = ClusterPublic { x25519: [61; 32], ed25519: cluster_key.address().0 };
    let mut members = Vec::new();
    for n in 1..=3 {
        let w = c.worker_in_pool(n, pool, 100);
        c.ok(SUDO, Call::Admin { call: AdminCall::AssignWorker { worker: w.id(), cluster: CLUSTER } });
        let seq = c.messages.iter().rev().find(|(_, m)| m.topic == Topic::Gatekeepers).expect("request").1.topic_seq;
        let shares = vec![KeyShare { to: w.id(), sealed: vec![7; 48] }];
        let answer =
            EgressPayload::ClusterKeys { key_epoch: 1, keys: ClusterKeys { cluster: CLUSTER, public, shares } };
        let tx = c.tx(RELAYER, Call::Egress { message: sign_egress(&gk, Origin::Gatekeeper, seq, answer) });
        assert_eq!(c.run(vec![tx]).0[0].error, None);
        members.push(w);
    }
    c.ok(OP, Call::StartComputing { worker: members[0].id(), stake: 2_000 * UNIT });
    let code = b"export function f() {}".to_vec();
    c.ok(ALICE, Call::UploadCode { kind: CodeKind::JavaScript, code: code.clone() });
    let hash = code_hash(CodeKind::JavaScript, &code);
    c.ok(ALICE, Call::Instantiate { code_hash: hash, cluster: CLUSTER, salt: vec![], args: vec![] });
    let contract = contract_id(&c.addr(ALICE), &hash, &[], CLUSTER);
    c.extra_holders.push(contract_account(&contract));
    let key = Keypair::from_seed(sha256(&[b"contract key", &contract]).0);
    let public = ContractPublic { x25519: [71; 32], ed25519: key.address().0 };
    let payload = EgressPayload::ContractKeys { contract, key_epoch: 1, public };
    let tx = c.tx(RELAYER, Call::Egress { message: sign_egress(&cluster_key, Origin::Cluster(CLUSTER), 0, payload) });
    assert_eq!(c.run(vec![tx]).0[0].error, None);
    c.ok(BOB, Call::ContractCommand { contract, key_epoch: 1, gas_limit: 1_000, sealed: vec![0x5e; 80] });
    let report = EgressPayload::ContractReport {
        status: CommandStatus::Ok,
        gas_used: 10,
        state_root: Hash([5; 32]),
        events_hash: Hash([0; 32]),
        transfers: vec![],
        stored_bytes: 0,
    };
    let tx = c.tx(RELAYER, Call::Egress { message: sign_egress(&key, Origin::Contract(contract), 0, report) });
    assert_eq!(c.run(vec![tx]).0[0].error, None);
    RootSetup { c, members, contract, pool }
}

#[test]
fn a_state_root_against_the_cluster_majority_slashes_the_worker_and_wrong_evidence_costs_the_fee() {
    let mut s = state_root_setup();
    let (c, id) = (&mut s.c, s.contract);
    let bad_worker = &s.members[0];
    let incident = |root: u8| EgressPayload::ContractIncident { contract: id, seq: 0, state_root: Hash([root; 32]) };
    // The worker reports its differing root (recorded as an incident); its signed message is the evidence.
    let evidence = c.sign(bad_worker, incident(6));
    let tx = c.tx(RELAYER, Call::Egress { message: evidence.clone() });
    assert_eq!(c.run(vec![tx]).0[0].error, None);
    let bad = |c: &mut Chain, message: SignedEgress, why: &str| {
        let e = c.refused(RELAYER, Call::ReportStateRootDisagreement { message });
        assert!(matches!(&e, TxError::BadStateRootEvidence { reason } if reason.contains(why)), "{why}: {e:?}");
    };
    // Too early: the members still have their dispute window.
    bad(c, evidence.clone(), "dispute window");
    c.blocks(3);
    // Wrong evidence: a forged signature, a root that agrees, an unknown command, a non-member.
    let mut forged = evidence.clone();
    forged.signature[0] ^= 1;
    bad(c, forged, "signature");
    bad(c, s.members[0].egress(99, incident(5)), "agrees");
    bad(
        c,
        s.members[0].egress(99, EgressPayload::ContractIncident { contract: id, seq: 4, state_root: Hash([6; 32]) }),
        "no recorded result",
    );
    let outsider = Worker::new(30);
    bad(c, outsider.egress(0, incident(6)), "not a member");
    bad(c, s.members[0].egress(99, EgressPayload::Benchmark { score: 1 }), "not a contract incident");
    // Real evidence: one of three members disputes, so the recorded root is the majority's.
    let treasury = c.balance(&Address::module("treasury"));
    let value = c.pool(s.pool).value();
    let tx = c.tx(RELAYER, Call::ReportStateRootDisagreement { message: evidence.clone() });
    let (r, _) = c.run(vec![tx]);
    assert_eq!(r[0].error, None);
    let rec = block_on(c.rt.econ_worker(&c.state, &bad_worker.id())).expect("readable");
    assert!(rec.slashed && rec.slash_reason.as_deref().is_some_and(|r| r.contains("state root")), "{rec:?}");
    let sess = rec.session.expect("session");
    assert_eq!(sess.stake, 1_800 * UNIT, "10% slashed");
    assert!(matches!(sess.state, SessionState::CoolingDown { .. }), "stopped");
    assert_eq!(c.pool(s.pool).value(), value - 200 * UNIT, "the pool's holders carry the loss");
    assert!(c.balance(&Address::module("treasury")) >= treasury + 200 * UNIT);
    let reg = block_on(c.rt.worker(&c.state, &bad_worker.id())).expect("readable").expect("record");
    assert!(reg.revoked.is_some(), "registration revoked");
    // Duplicate evidence is refused.
    bad(c, evidence, "already slashed");
}

#[test]
fn a_root_disputed_by_half_the_cluster_is_not_evidence_against_a_member() {
    let mut s = state_root_setup();
    let (c, id) = (&mut s.c, s.contract);
    let incident = EgressPayload::ContractIncident { contract: id, seq: 0, state_root: Hash([6; 32]) };
    let evidence = c.sign(&s.members[0], incident.clone());
    let tx = c.tx(RELAYER, Call::Egress { message: evidence.clone() });
    assert_eq!(c.run(vec![tx]).0[0].error, None);
    let second = c.sign(&s.members[1], incident);
    let tx = c.tx(RELAYER, Call::Egress { message: second });
    assert_eq!(c.run(vec![tx]).0[0].error, None);
    c.blocks(3);
    let e = c.refused(RELAYER, Call::ReportStateRootDisagreement { message: evidence });
    assert!(matches!(&e, TxError::BadStateRootEvidence { reason } if reason.contains("not the majority")), "{e:?}");
    assert!(!block_on(c.rt.econ_worker(&c.state, &s.members[0].id())).expect("readable").slashed);
}

#[test]
fn reclaim_removes_an_idle_worker_from_its_pool_and_refuses_a_busy_one() {
    let mut c = Chain::new(params());
    let pool = funded_pool(&mut c);
    let w = c.worker_in_pool(1, pool, 100);
    c.ok(OP, Call::StartComputing { worker: w.id(), stake: 1_000 * UNIT });
    let e = c.fails(OP, Call::PoolReclaim { pool, worker: w.id() });
    assert!(matches!(&e, TxError::EconomicsPrecondition { reason } if reason.contains("computing")), "{e:?}");
    c.ok(OP, Call::StopComputing { worker: w.id() });
    let e = c.fails(OP, Call::PoolReclaim { pool, worker: w.id() });
    assert!(matches!(&e, TxError::EconomicsPrecondition { reason } if reason.contains("cools down")), "{e:?}");
    c.blocks(3);
    let e = c.fails(ALICE, Call::PoolReclaim { pool, worker: w.id() });
    assert!(matches!(e, TxError::NotAuthorized { .. }), "only the owner reclaims an active worker: {e:?}");
    c.ok(OP, Call::PoolReclaim { pool, worker: w.id() });
    assert!(c.pool(pool).workers.is_empty());
    assert_eq!(block_on(c.rt.econ_worker(&c.state, &w.id())).expect("readable").pool, None);
    // Free to join another pool now.
    c.ok(OP, Call::CreatePool { commission_bps: 0, cap: None, allow: None });
    c.ok(OP, Call::PoolAddWorker { pool: 1, worker: w.id() });
}

#[test]
fn a_vault_switches_between_manual_and_automatic_allocation_by_its_owner_only() {
    let mut c = Chain::new(params());
    c.ok(BOB, Call::CreateVault { auto: false });
    let e = c.fails(ALICE, Call::VaultSetMode { vault: 0, auto: true });
    assert!(matches!(e, TxError::NotAuthorized { .. }), "{e:?}");
    c.ok(BOB, Call::VaultSetMode { vault: 0, auto: true });
    assert!(block_on(c.rt.econ_vault(&c.state, 0)).expect("readable").expect("vault").auto);
    assert!(matches!(c.fails(BOB, Call::VaultSetMode { vault: 0, auto: true }), TxError::EconomicsPrecondition { .. }));
    c.ok(BOB, Call::VaultSetMode { vault: 0, auto: false });
    assert_eq!(c.fails(BOB, Call::VaultSetMode { vault: 3, auto: false }), TxError::UnknownVault { id: 3 });
}

#[test]
fn a_workers_cumulative_rewards_follow_its_share_across_sessions() {
    let mut c = Chain::new(params());
    let pool = funded_pool(&mut c);
    let w = c.worker_in_pool(1, pool, 100);
    c.ok(OP, Call::StartComputing { worker: w.id(), stake: 1_000 * UNIT });
    c.blocks(2);
    let rec = block_on(c.rt.econ_worker(&c.state, &w.id())).expect("readable");
    assert_eq!(rec.rewards, 3 * 1_000 * UNIT, "the only computing worker gets the whole budget, gross");
    c.ok(OP, Call::StopComputing { worker: w.id() });
    c.blocks(4);
    c.ok(OP, Call::StartComputing { worker: w.id(), stake: 1_000 * UNIT });
    let rec = block_on(c.rt.econ_worker(&c.state, &w.id())).expect("readable");
    // Three blocks of the first session (the stop's block pays nothing), one of the second.
    assert_eq!(rec.rewards, 4 * 1_000 * UNIT, "kept over sessions: {rec:?}");
}
