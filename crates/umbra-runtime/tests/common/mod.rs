//! The block-driving harness the contracts and agents scenario tests share: an in-memory state, a chain
//! that builds and applies blocks through the runtime, dev-attested workers and a keyed cluster.
#![allow(dead_code, unreachable_pub, clippy::result_large_err)]

use futures::executor::block_on;
use std::collections::BTreeMap;
use umbra_crypto::{Keypair, sign_transaction};
use umbra_runtime::{AdmissionError, BlockEnv, BlockError, ChangeSet, Runtime, RuntimeError, StateRead};
use umbra_tee::{Attester, DevPlatform, Measurement, Policy, TeeKind};
use umbra_types::contracts::{gas_escrow, storage_escrow};
use umbra_types::registry::{ClusterKeys, ClusterPublic, KeyShare};
use umbra_types::{
    Address, AdminCall, Allocation, Amount, Call, Egress, EgressPayload, Genesis, GenesisValidator, Hash, Message,
    MessageBody, Origin, Params, Receipt, RegistryGenesis, SignedEgress, SignedTransaction, TokenInfo, Topic,
    Transaction, TxError, UNIT, WorkerRecord, sha256,
};

#[derive(Default, Clone)]
pub struct MemState(pub BTreeMap<[u8; 32], Vec<u8>>);

impl StateRead for MemState {
    async fn get(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, RuntimeError> {
        Ok(self.0.get(key).cloned())
    }
}

impl MemState {
    pub fn apply(&mut self, changes: ChangeSet) {
        for (k, v) in changes {
            match v {
                Some(v) => self.0.insert(k, v),
                None => self.0.remove(&k),
            };
        }
    }
}

pub const CHAIN: &str = "umbra-test";
pub const GENESIS_HASH: Hash = Hash([0xab; 32]);
pub const SUDO: usize = 0;
pub const RELAYER: usize = 5;
/// 2025-07-01T00:00:00Z: inside the validity window of the DCAP samples' collateral.
pub const DCAP_NOW_MS: u64 = 1_751_328_000_000;

pub fn dev_seed() -> [u8; 32] {
    sha256(&[b"umbra dev attestation key"]).0
}

pub fn dev_key() -> [u8; 32] {
    Keypair::from_seed(dev_seed()).address().0
}

pub fn dev_measurement() -> Measurement {
    Measurement([0x5a; 32])
}

/// A dev chain's policy: dev (with the well-known dev key) and TDX accepted, the dev measurement allowed.
pub fn dev_policy() -> Policy {
    Policy {
        accepted_kinds: [TeeKind::Dev, TeeKind::Tdx].into(),
        dev_keys: [dev_key()].into(),
        measurements: [dev_measurement()].into(),
        ..Policy::default()
    }
}

/// A worker played by the test: its identity and X25519 keys, and a dev platform to quote with.
pub struct Worker {
    pub identity: Keypair,
    pub x25519: [u8; 32],
    pub platform: DevPlatform,
    pub _dir: tempfile::TempDir,
}

impl Worker {
    pub fn new(n: u8) -> Worker {
        Worker::with_measurement(n, dev_measurement())
    }

    pub fn with_measurement(n: u8, m: Measurement) -> Worker {
        let dir = tempfile::tempdir().expect("tempdir");
        let platform = DevPlatform::open(&dir.path().join("machine-secret"), dev_seed(), m).expect("dev platform");
        Worker { identity: Keypair::from_seed([100 + n; 32]), x25519: [150 + n; 32], platform, _dir: dir }
    }

    pub fn id(&self) -> [u8; 32] {
        self.identity.address().0
    }

    /// A quote binding this worker's keys, the test chain and `operator`.
    pub fn quote(&self, operator: &Address) -> Vec<u8> {
        let rd = umbra_tee::report_data(&self.id(), &self.x25519, CHAIN, &GENESIS_HASH.0, &operator.0);
        self.platform.quote(&rd).expect("dev quote")
    }

    pub fn register(&self, operator: &Address) -> Call {
        Call::RegisterWorker { identity: self.id(), x25519: self.x25519, quote: self.quote(operator) }
    }

    pub fn egress(&self, seq: u64, payload: EgressPayload) -> SignedEgress {
        sign_egress(&self.identity, Origin::Worker(self.id()), seq, payload)
    }
}

pub fn sign_egress(key: &Keypair, origin: Origin, seq: u64, payload: EgressPayload) -> SignedEgress {
    let egress = Egress { origin, seq, payload };
    let signature = key.sign(&egress.signing_bytes(CHAIN));
    SignedEgress { egress, signature }
}

pub fn share(to: [u8; 32]) -> KeyShare {
    KeyShare { to, sealed: vec![7; 48] }
}

pub struct Chain {
    pub rt: Runtime,
    pub state: MemState,
    pub height: u64,
    pub base_ms: u64,
    pub keys: Vec<Keypair>,
    pub nonces: BTreeMap<usize, u64>,
    pub proposer: Address,
    /// Every emitted message, with its block height.
    pub messages: Vec<(u64, Message)>,
    /// The next `topic_seq` every topic must have.
    pub topic_next: BTreeMap<Topic, u64>,
    /// More accounts the supply check sums (contract accounts).
    pub extra_holders: Vec<Address>,
}

impl Chain {
    pub fn dev() -> Chain {
        Chain::new(dev_policy(), Params::default(), 1_000)
    }

    pub fn new(policy: Policy, params: Params, base_ms: u64) -> Chain {
        let keys: Vec<Keypair> = (0..6).map(|i| Keypair::from_seed([i as u8 + 1; 32])).collect();
        let sudo = policy.dev_enabled().then(|| keys[SUDO].address());
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: base_ms,
            token: TokenInfo::default(),
            allocations: keys.iter().map(|k| Allocation { address: k.address(), amount: 1_000 * UNIT }).collect(),
            validators: vec![GenesisValidator { name: "v".into(), key: [200; 32] }],
            params,
            registry: RegistryGenesis { policy, collateral: vec![], sudo },
            governance: Default::default(),
        };
        let rt = Runtime::new();
        let mut state = MemState::default();
        let changes = block_on(rt.genesis(&genesis, &state)).expect("genesis applies");
        state.apply(changes);
        Chain {
            rt,
            state,
            height: 0,
            base_ms,
            keys,
            nonces: BTreeMap::new(),
            proposer: Address([200; 32]),
            messages: Vec::new(),
            topic_next: BTreeMap::new(),
            extra_holders: Vec::new(),
        }
    }

    pub fn env(&self) -> BlockEnv {
        let height = self.height + 1;
        let parent = if height == 1 { GENESIS_HASH } else { Hash([height as u8; 32]) };
        BlockEnv { height, timestamp_ms: self.base_ms + height * 1_000, proposer: self.proposer, epoch: 0, parent }
    }

    pub fn tx(&mut self, from: usize, call: Call) -> SignedTransaction {
        let nonce = self.nonces.entry(from).or_insert(0);
        let k = &self.keys[from];
        let mut tx = Transaction { signer: k.address(), nonce: *nonce, chain_id: CHAIN.into(), fee: 0, call };
        *nonce += 1;
        let size = sign_transaction(k, tx.clone()).to_bytes().len();
        tx.fee = Params::default().fees.min_fee(size, &tx.call);
        sign_transaction(k, tx)
    }

    /// Gives back the nonce of a transaction that was left out of its block.
    pub fn unspend(&mut self, from: usize) {
        if let Some(n) = self.nonces.get_mut(&from) {
            *n -= 1;
        }
    }

    pub fn op(&self, i: usize) -> Address {
        self.keys[i].address()
    }

    /// Builds a block from `candidates`, executes the built block as a validator would, checks both
    /// agree, applies it, and returns the receipts and the rejected candidates.
    pub fn run(&mut self, candidates: Vec<SignedTransaction>) -> (Vec<Receipt>, Vec<(Hash, AdmissionError)>) {
        let env = self.env();
        let built = block_on(self.rt.build_block(&self.state, &env, candidates)).expect("builds");
        let executed = block_on(self.rt.execute_block(&self.state, &env, &built.txs, true)).expect("valid block");
        assert_eq!(executed, built.outcome, "building and executing the block agree");
        self.apply(executed.changes, executed.messages);
        (executed.receipts, built.rejected)
    }

    /// Runs one transaction that must succeed.
    pub fn ok(&mut self, from: usize, call: Call) {
        let tx = self.tx(from, call);
        let (receipts, rejected) = self.run(vec![tx]);
        assert!(rejected.is_empty(), "rejected: {rejected:?}");
        assert_eq!(receipts[0].error, None, "the call succeeds");
    }

    /// Runs one transaction that is included and fails; returns why.
    pub fn fails(&mut self, from: usize, call: Call) -> TxError {
        let tx = self.tx(from, call);
        let (receipts, rejected) = self.run(vec![tx]);
        assert!(rejected.is_empty(), "rejected: {rejected:?}");
        receipts[0].error.clone().expect("the call fails")
    }

    pub fn carry(&mut self, message: SignedEgress) -> SignedTransaction {
        self.tx(RELAYER, Call::Egress { message })
    }

    pub fn execute(&mut self, txs: &[SignedTransaction]) -> Result<Vec<Receipt>, BlockError> {
        let out = block_on(self.rt.execute_block(&self.state, &self.env(), txs, true))?;
        self.apply(out.changes, out.messages);
        Ok(out.receipts)
    }

    pub fn apply(&mut self, changes: ChangeSet, messages: Vec<Message>) {
        self.state.apply(changes);
        self.height += 1;
        for m in messages {
            let next = self.topic_next.entry(m.topic).or_insert(0);
            assert_eq!(m.topic_seq, *next, "topic {:?} is numbered without gaps", m.topic);
            *next += 1;
            self.messages.push((self.height, m));
        }
        for (topic, next) in &self.topic_next {
            assert_eq!(block_on(self.rt.topic_next(&self.state, topic)).expect("readable"), *next);
        }
        self.assert_supply_unchanged();
    }

    pub fn assert_supply_unchanged(&self) {
        let mut holders: Vec<Address> = self.keys.iter().map(|k| k.address()).collect();
        holders.push(self.proposer);
        holders.push(Address::module("treasury"));
        holders.push(gas_escrow());
        holders.push(storage_escrow());
        holders.extend(self.extra_holders.iter().copied());
        let sum: Amount =
            holders.iter().map(|a| block_on(self.rt.account(&self.state, a)).expect("readable").balance).sum();
        let bonded = block_on(self.rt.total_bonded(&self.state)).expect("readable");
        let unbonding = block_on(self.rt.total_unbonding(&self.state)).expect("readable");
        let issued = block_on(self.rt.total_issued(&self.state)).expect("readable");
        assert_eq!(sum + bonded + unbonding, issued, "tokens were created or lost at height {}", self.height);
    }

    /// The message bodies sent to `topic`, in order.
    pub fn to(&self, topic: Topic) -> Vec<MessageBody> {
        self.messages.iter().filter(|(_, m)| m.topic == topic).map(|(_, m)| m.body.clone()).collect()
    }

    /// The last message sent to `topic`, with its `topic_seq`.
    pub fn last(&self, topic: Topic) -> (u64, MessageBody) {
        let m = self.messages.iter().rev().find(|(_, m)| m.topic == topic).expect("a message to the topic");
        (m.1.topic_seq, m.1.body.clone())
    }

    pub fn worker(&self, w: &Worker) -> WorkerRecord {
        block_on(self.rt.worker(&self.state, &w.id())).expect("readable").expect("registered")
    }

    pub fn admin(&mut self, call: AdminCall) {
        self.ok(SUDO, Call::Admin { call });
    }
}

pub fn chain_with_workers() -> (Chain, Vec<Worker>) {
    workers_on(Chain::dev())
}

/// [`chain_with_workers`] on a dev chain with `params`.
pub fn chain_with_workers_and(params: Params) -> (Chain, Vec<Worker>) {
    workers_on(Chain::new(dev_policy(), params, 1_000))
}

/// `c` with four registered workers (operators 1 to 4).
pub fn workers_on(mut c: Chain) -> (Chain, Vec<Worker>) {
    let ws: Vec<Worker> = (1..=4).map(Worker::new).collect();
    c.run(vec![]);
    let txs: Vec<SignedTransaction> = ws
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let call = w.register(&c.op(i + 1));
            c.tx(i + 1, call)
        })
        .collect();
    let (r, _) = c.run(txs);
    assert!(r.iter().all(Receipt::is_success), "{r:?}");
    (c, ws)
}

pub const COUNTER_JS: &[u8] = b"export function increment() { umbra.storage.set('n', '1'); }";
pub const CLUSTER: u32 = 7;
pub const DEPLOYER: usize = 2;

/// A dev chain with a key epoch and cluster 7 whose key (played by `cluster_key`) is published, worker 3 and
/// worker 4 its members.
pub struct Setup {
    pub c: Chain,
    pub ws: Vec<Worker>,
    pub cluster_key: Keypair,
}

pub fn setup() -> Setup {
    setup_on(Chain::dev())
}

/// [`setup`] with other chain parameters (the fees must stay the defaults: [`Chain::tx`] pays those).
pub fn setup_with(params: Params) -> Setup {
    setup_on(Chain::new(dev_policy(), params, 1_000))
}

/// [`setup`] on chain `c` (other parameters).
pub fn setup_on(c: Chain) -> Setup {
    let (mut c, ws) = workers_on(c);
    let gk = Keypair::from_seed([41; 32]);
    c.admin(AdminCall::AppointGatekeeper { worker: ws[0].id() });
    let first = EgressPayload::MasterKey {
        key_epoch: 1,
        master_public: [51; 32],
        gatekeeper_key: gk.address().0,
        shares: vec![],
        clusters: vec![],
    };
    let tx = c.carry(ws[0].egress(0, first));
    assert_eq!(c.run(vec![tx]).0[0].error, None);
    c.admin(AdminCall::CreateCluster { cluster: CLUSTER });
    let cluster_key = Keypair::from_seed([63; 32]);
    let public = ClusterPublic { x25519: [61; 32], ed25519: cluster_key.address().0 };
    for w in &ws[2..4] {
        c.admin(AdminCall::AssignWorker { worker: w.id(), cluster: CLUSTER });
        let (seq, _) = c.last(Topic::Gatekeepers);
        let shares = vec![KeyShare { to: w.id(), sealed: vec![7; 48] }];
        let answer =
            EgressPayload::ClusterKeys { key_epoch: 1, keys: ClusterKeys { cluster: CLUSTER, public, shares } };
        let tx = c.carry(sign_egress(&gk, Origin::Gatekeeper, seq, answer));
        assert_eq!(c.run(vec![tx]).0[0].error, None);
    }
    Setup { c, ws, cluster_key }
}
