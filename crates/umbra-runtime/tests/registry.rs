//! Scenario tests of the worker registry and the message queue, driven through blocks with real dev
//! quotes (and the real Intel DCAP samples in `../shared/testdata/dcap`).
#![allow(clippy::result_large_err)]

use futures::executor::block_on;
use std::collections::BTreeMap;
use std::path::PathBuf;
use umbra_crypto::{Keypair, sign_transaction};
use umbra_runtime::{AdmissionError, BlockEnv, BlockError, ChangeSet, Runtime, RuntimeError, StateRead};
use umbra_tee::{Attester, Collateral, Confidence, DevPlatform, Measurement, Policy, TcbStatus, TeeKind};
use umbra_types::registry::{ClusterKeys, ClusterPublic, KeyShare, WorkerIdHex};
use umbra_types::{
    Address, AdminCall, Allocation, Amount, Call, Egress, EgressPayload, Genesis, GenesisValidator, Hash, Message,
    MessageBody, Origin, Params, Receipt, RegistryGenesis, SignedEgress, SignedTransaction, TokenInfo, Topic,
    Transaction, TxError, UNIT, WorkerRecord, sha256,
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
/// 2025-07-01T00:00:00Z: inside the validity window of the DCAP samples' collateral.
const DCAP_NOW_MS: u64 = 1_751_328_000_000;

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

fn share(to: [u8; 32]) -> KeyShare {
    KeyShare { to, sealed: vec![7; 48] }
}

struct Chain {
    rt: Runtime,
    state: MemState,
    height: u64,
    base_ms: u64,
    keys: Vec<Keypair>,
    nonces: BTreeMap<usize, u64>,
    proposer: Address,
    /// Every emitted message, with its block height.
    messages: Vec<(u64, Message)>,
    /// The next `topic_seq` every topic must have.
    topic_next: BTreeMap<Topic, u64>,
}

impl Chain {
    fn dev() -> Chain {
        Chain::new(dev_policy(), Params::default(), 1_000)
    }

    fn new(policy: Policy, params: Params, base_ms: u64) -> Chain {
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
        }
    }

    fn env(&self) -> BlockEnv {
        let height = self.height + 1;
        let parent = if height == 1 { GENESIS_HASH } else { Hash([height as u8; 32]) };
        BlockEnv { height, timestamp_ms: self.base_ms + height * 1_000, proposer: self.proposer, epoch: 0, parent }
    }

    fn tx(&mut self, from: usize, call: Call) -> SignedTransaction {
        let nonce = self.nonces.entry(from).or_insert(0);
        let k = &self.keys[from];
        let mut tx = Transaction { signer: k.address(), nonce: *nonce, chain_id: CHAIN.into(), fee: 0, call };
        *nonce += 1;
        let size = sign_transaction(k, tx.clone()).to_bytes().len();
        tx.fee = Params::default().fees.min_fee(size, &tx.call);
        sign_transaction(k, tx)
    }

    fn op(&self, i: usize) -> Address {
        self.keys[i].address()
    }

    /// Builds a block from `candidates`, executes the built block as a validator would, checks both
    /// agree, applies it, and returns the receipts and the rejected candidates.
    fn run(&mut self, candidates: Vec<SignedTransaction>) -> (Vec<Receipt>, Vec<(Hash, AdmissionError)>) {
        let env = self.env();
        let built = block_on(self.rt.build_block(&self.state, &env, candidates)).expect("builds");
        let executed = block_on(self.rt.execute_block(&self.state, &env, &built.txs, true)).expect("valid block");
        assert_eq!(executed, built.outcome, "building and executing the block agree");
        self.apply(executed.changes, executed.messages);
        (executed.receipts, built.rejected)
    }

    /// Runs one transaction that must succeed.
    fn ok(&mut self, from: usize, call: Call) {
        let tx = self.tx(from, call);
        let (receipts, rejected) = self.run(vec![tx]);
        assert!(rejected.is_empty(), "rejected: {rejected:?}");
        assert_eq!(receipts[0].error, None, "the call succeeds");
    }

    /// Runs one transaction that is included and fails; returns why.
    fn fails(&mut self, from: usize, call: Call) -> TxError {
        let tx = self.tx(from, call);
        let (receipts, rejected) = self.run(vec![tx]);
        assert!(rejected.is_empty(), "rejected: {rejected:?}");
        receipts[0].error.clone().expect("the call fails")
    }

    fn carry(&mut self, message: SignedEgress) -> SignedTransaction {
        self.tx(RELAYER, Call::Egress { message })
    }

    fn execute(&mut self, txs: &[SignedTransaction]) -> Result<Vec<Receipt>, BlockError> {
        let out = block_on(self.rt.execute_block(&self.state, &self.env(), txs, true))?;
        self.apply(out.changes, out.messages);
        Ok(out.receipts)
    }

    fn apply(&mut self, changes: ChangeSet, messages: Vec<Message>) {
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

    fn assert_supply_unchanged(&self) {
        let mut holders: Vec<Address> = self.keys.iter().map(|k| k.address()).collect();
        holders.push(self.proposer);
        holders.push(Address::module("treasury"));
        let sum: Amount =
            holders.iter().map(|a| block_on(self.rt.account(&self.state, a)).expect("readable").balance).sum();
        let bonded = block_on(self.rt.total_bonded(&self.state)).expect("readable");
        let unbonding = block_on(self.rt.total_unbonding(&self.state)).expect("readable");
        let issued = block_on(self.rt.total_issued(&self.state)).expect("readable");
        assert_eq!(sum + bonded + unbonding, issued, "tokens were created or lost at height {}", self.height);
    }

    /// The message bodies sent to `topic`, in order.
    fn to(&self, topic: Topic) -> Vec<MessageBody> {
        self.messages.iter().filter(|(_, m)| m.topic == topic).map(|(_, m)| m.body.clone()).collect()
    }

    /// The last message sent to `topic`, with its `topic_seq`.
    fn last(&self, topic: Topic) -> (u64, MessageBody) {
        let m = self.messages.iter().rev().find(|(_, m)| m.topic == topic).expect("a message to the topic");
        (m.1.topic_seq, m.1.body.clone())
    }

    fn worker(&self, w: &Worker) -> WorkerRecord {
        block_on(self.rt.worker(&self.state, &w.id())).expect("readable").expect("registered")
    }

    fn admin(&mut self, call: AdminCall) {
        self.ok(SUDO, Call::Admin { call });
    }
}

fn refused(e: TxError, needle: &str) {
    match &e {
        TxError::AttestationRefused { reason } => assert!(reason.contains(needle), "{reason}"),
        other => panic!("expected an attestation refusal mentioning {needle:?}, got {other:?}"),
    }
}

#[test]
fn block_one_records_the_genesis_hash() {
    let mut c = Chain::dev();
    assert_eq!(block_on(c.rt.genesis_hash(&c.state)).expect("readable"), None);
    c.run(vec![]);
    c.run(vec![]);
    assert_eq!(block_on(c.rt.genesis_hash(&c.state)).expect("readable"), Some(GENESIS_HASH));
}

#[test]
fn a_dev_worker_registers_and_its_record_says_simulated() {
    let mut c = Chain::dev();
    let w = Worker::new(1);
    c.run(vec![]);
    let call = w.register(&c.op(1));
    c.ok(1, call);
    let r = c.worker(&w);
    assert_eq!((r.tee, r.tcb_status, r.confidence), (TeeKind::Dev, TcbStatus::Simulated, Confidence::Simulated));
    assert_eq!((r.operator, r.x25519, r.measurement), (c.op(1), w.x25519, dev_measurement()));
    assert_eq!((r.registered_at, r.attested_at), (2, 2));
    assert_eq!(r.expires_at, 2 + Params::default().registry.attestation_validity_blocks);
    assert!(r.is_active(c.height) && !r.gatekeeper && r.cluster.is_none());
    assert_eq!(
        c.to(Topic::Worker(w.id())),
        [MessageBody::Registered { worker: w.id(), confidence: Confidence::Simulated, expires_at: r.expires_at }]
    );
    assert_eq!(block_on(c.rt.workers(&c.state)).expect("readable"), [r]);
}

#[test]
fn a_dev_quote_is_refused_on_a_chain_without_dev() {
    let policy = Policy { measurements: [dev_measurement()].into(), ..Policy::default() };
    let mut c = Chain::new(policy, Params::default(), 1_000);
    let w = Worker::new(1);
    c.run(vec![]);
    let call = w.register(&c.op(1));
    refused(c.fails(1, call), "not enabled");
    assert!(block_on(c.rt.workers(&c.state)).expect("readable").is_empty());
    assert!(c.messages.is_empty());
}

#[test]
fn a_forged_quote_is_refused() {
    let mut c = Chain::dev();
    let w = Worker::new(1);
    c.run(vec![]);
    let mut quote = w.quote(&c.op(1));
    // Flip a byte of the measurement: the dev signature no longer covers it.
    quote[12] ^= 1;
    refused(c.fails(1, Call::RegisterWorker { identity: w.id(), x25519: w.x25519, quote }), "signature");
}

#[test]
fn a_quote_replayed_by_another_operator_is_refused_for_its_report_data() {
    let mut c = Chain::dev();
    let w = Worker::new(1);
    c.run(vec![]);
    let call = w.register(&c.op(1));
    c.ok(1, call);
    // Operator 2 copies operator 1's registration.
    let Call::RegisterWorker { identity, x25519, quote } = w.register(&c.op(1)) else { unreachable!() };
    assert_eq!(c.fails(2, Call::RegisterWorker { identity, x25519, quote }), TxError::ReportDataMismatch);
    assert_eq!(c.worker(&w).operator, c.op(1));
}

#[test]
fn a_quote_binding_other_keys_is_refused() {
    let mut c = Chain::dev();
    let w = Worker::new(1);
    c.run(vec![]);
    let quote = w.quote(&c.op(1));
    let other_x = Call::RegisterWorker { identity: w.id(), x25519: [9; 32], quote: quote.clone() };
    assert_eq!(c.fails(1, other_x), TxError::ReportDataMismatch);
    let other_id = Call::RegisterWorker { identity: [9; 32], x25519: w.x25519, quote };
    assert_eq!(c.fails(1, other_id), TxError::ReportDataMismatch);
}

#[test]
fn a_measurement_off_the_allow_list_is_refused_until_allowed() {
    let mut c = Chain::dev();
    let w = Worker::with_measurement(1, Measurement([0x77; 32]));
    c.run(vec![]);
    let call = w.register(&c.op(1));
    refused(c.fails(1, call), "allow-list");
    c.admin(AdminCall::AllowMeasurement { measurement: Measurement([0x77; 32]) });
    let call = w.register(&c.op(1));
    c.ok(1, call);
    assert!(block_on(c.rt.policy(&c.state)).expect("readable").measurements.contains(&Measurement([0x77; 32])));
}

#[test]
fn an_expired_worker_is_inactive_until_it_re_registers() {
    let mut params = Params::default();
    params.registry.attestation_validity_blocks = 3;
    let mut c = Chain::new(dev_policy(), params, 1_000);
    let w = Worker::new(1);
    c.run(vec![]);
    let call = w.register(&c.op(1));
    c.ok(1, call); // height 2, expires at 5
    c.run(vec![]);
    c.run(vec![]); // height 4
    let m = w.egress(0, EgressPayload::StateCommitment { height: 3, state_hash: Hash([1; 32]) });
    let tx = c.carry(m);
    let (r, _) = c.run(vec![tx]); // height 5: expired
    assert!(matches!(&r[0].error, Some(TxError::WorkerInactive { reason }) if reason.contains("expired")), "{r:?}");
    assert_eq!(block_on(c.rt.egress_next(&c.state, &Origin::Worker(w.id()))).expect("readable"), 1);
    assert!(matches!(
        c.fails(SUDO, Call::Admin { call: AdminCall::AppointGatekeeper { worker: w.id() } }),
        TxError::WorkerInactive { .. }
    ));
    let call = w.register(&c.op(1));
    c.ok(1, call); // height 7
    let r = c.worker(&w);
    assert_eq!((r.registered_at, r.attested_at, r.expires_at), (2, 7, 10));
    let tx = c.carry(w.egress(1, EgressPayload::StateCommitment { height: 6, state_hash: Hash([1; 32]) }));
    let (r, _) = c.run(vec![tx]);
    assert_eq!(r[0].error, None);
    assert_eq!(c.worker(&w).commitment, Some((6, Hash([1; 32]))));
}

#[test]
fn re_registration_keeps_the_role_and_refuses_a_new_x25519_key_for_a_gatekeeper() {
    let mut c = Chain::dev();
    let mut w = Worker::new(1);
    c.run(vec![]);
    let call = w.register(&c.op(1));
    c.ok(1, call);
    c.admin(AdminCall::AppointGatekeeper { worker: w.id() });
    let call = w.register(&c.op(1));
    c.ok(1, call);
    let r = c.worker(&w);
    assert!(r.gatekeeper);
    assert_eq!(r.attested_at, c.height);
    w.x25519 = [1; 32];
    let call = w.register(&c.op(1));
    assert!(matches!(c.fails(1, call), TxError::RegistryPrecondition { reason } if reason.contains("x25519")));
    // Another operator cannot take the worker over, even with a quote binding it.
    let call = w.register(&c.op(2));
    assert!(matches!(c.fails(2, call), TxError::NotAuthorized { .. }));
}

#[test]
fn withdrawing_a_measurement_revokes_its_workers() {
    let mut c = Chain::dev();
    let (a, b) = (Worker::new(1), Worker::with_measurement(2, Measurement([0x77; 32])));
    c.run(vec![]);
    c.admin(AdminCall::AllowMeasurement { measurement: Measurement([0x77; 32]) });
    let (ra, rb) = (a.register(&c.op(1)), b.register(&c.op(2)));
    c.ok(1, ra);
    c.ok(2, rb);
    c.admin(AdminCall::AppointGatekeeper { worker: a.id() });
    c.admin(AdminCall::CreateCluster { cluster: 3 });
    c.admin(AdminCall::AssignWorker { worker: b.id(), cluster: 3 });
    c.admin(AdminCall::WithdrawMeasurement { measurement: Measurement([0x77; 32]) });
    let rb = c.worker(&b);
    assert!(rb.revoked.as_deref().is_some_and(|r| r.contains("allow-list")), "{:?}", rb.revoked);
    assert_eq!(rb.cluster, None);
    assert!(c.worker(&a).revoked.is_none());
    let clusters = block_on(c.rt.clusters(&c.state)).expect("readable");
    assert!(clusters[0].members.is_empty());
    assert!(matches!(c.last(Topic::Worker(b.id())).1, MessageBody::Revoked { worker, .. } if worker == b.id()));
    // A revoked worker must register again, and its measurement must be allowed again first.
    let call = b.register(&c.op(2));
    refused(c.fails(2, call), "allow-list");
}

#[test]
fn setting_a_policy_without_dev_revokes_dev_gatekeepers() {
    let mut c = Chain::dev();
    let w = Worker::new(1);
    c.run(vec![]);
    let call = w.register(&c.op(1));
    c.ok(1, call);
    c.admin(AdminCall::AppointGatekeeper { worker: w.id() });
    let policy = Policy { accepted_kinds: [TeeKind::Tdx].into(), ..dev_policy() };
    c.admin(AdminCall::SetPolicy { policy: policy.clone() });
    let r = c.worker(&w);
    assert!(r.revoked.as_deref().is_some_and(|r| r.contains("not enabled")), "{:?}", r.revoked);
    assert!(!r.gatekeeper);
    assert!(block_on(c.rt.keys(&c.state)).expect("readable").gatekeepers.is_empty());
    assert_eq!(block_on(c.rt.policy(&c.state)).expect("readable"), policy);
    assert!(matches!(c.last(Topic::Worker(w.id())).1, MessageBody::Revoked { .. }));
}

#[test]
fn admin_calls_from_anyone_but_sudo_are_refused() {
    let mut c = Chain::dev();
    c.run(vec![]);
    let e = c.fails(1, Call::Admin { call: AdminCall::CreateCluster { cluster: 1 } });
    assert!(matches!(e, TxError::NotAuthorized { .. }), "{e:?}");
    assert!(block_on(c.rt.clusters(&c.state)).expect("readable").is_empty());
    c.admin(AdminCall::CreateCluster { cluster: 1 });
    assert_eq!(block_on(c.rt.clusters(&c.state)).expect("readable").len(), 1);
}

/// Registers workers 1-4 (operators 1-4): `a` and `b` will be gatekeepers, `m` a cluster member.
fn chain_with_workers() -> (Chain, Vec<Worker>) {
    let mut c = Chain::dev();
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

#[test]
fn the_gatekeeper_flow_runs_from_the_first_master_key_through_a_rotation() {
    let (mut c, ws) = chain_with_workers();
    let (a, b, m, d) = (&ws[0], &ws[1], &ws[2], &ws[3]);
    let gk1 = Keypair::from_seed([41; 32]);
    let gk2 = Keypair::from_seed([42; 32]);
    let (mp1, mp2) = ([51; 32], [52; 32]);

    // Flow 1: the first gatekeeper creates the master key.
    c.admin(AdminCall::AppointGatekeeper { worker: a.id() });
    assert_eq!(c.last(Topic::Worker(a.id())).1, MessageBody::GatekeeperAppointed { worker: a.id(), generate: true });
    let first = EgressPayload::MasterKey {
        key_epoch: 1,
        master_public: mp1,
        gatekeeper_key: gk1.address().0,
        shares: vec![],
        clusters: vec![],
    };
    let tx = c.carry(a.egress(0, first));
    assert_eq!(c.run(vec![tx]).0[0].error, None);
    let keys = block_on(c.rt.keys(&c.state)).expect("readable");
    assert_eq!(
        (keys.key_epoch, keys.master_public, keys.gatekeeper_key),
        (1, Some(WorkerIdHex(mp1)), Some(WorkerIdHex(gk1.address().0)))
    );
    assert_eq!(c.worker(a).key_epoch, 1);
    assert_eq!(c.to(Topic::Broadcast), [MessageBody::KeyEpochActivated { key_epoch: 1, retired: None }]);

    // Flow 3: a cluster member gets its key through the gatekeepers.
    c.admin(AdminCall::CreateCluster { cluster: 7 });
    c.admin(AdminCall::AssignWorker { worker: m.id(), cluster: 7 });
    assert_eq!(c.last(Topic::Worker(m.id())).1, MessageBody::AssignedToCluster { worker: m.id(), cluster: 7 });
    let (seq, req) = c.last(Topic::Gatekeepers);
    assert_eq!(req, MessageBody::ClusterKeyRequest { cluster: 7, key_epoch: 1, members: vec![(m.id(), m.x25519)] });
    let p1 = ClusterPublic { x25519: [61; 32], ed25519: [62; 32] };
    let answer = EgressPayload::ClusterKeys {
        key_epoch: 1,
        keys: ClusterKeys { cluster: 7, public: p1, shares: vec![share(m.id())] },
    };
    let tx = c.carry(sign_egress(&gk1, Origin::Gatekeeper, seq, answer));
    assert_eq!(c.run(vec![tx]).0[0].error, None);
    assert_eq!(
        c.last(Topic::Worker(m.id())).1,
        MessageBody::ClusterKey { cluster: 7, key_epoch: 1, public: p1, share: share(m.id()) }
    );
    assert_eq!(block_on(c.rt.clusters(&c.state)).expect("readable")[0].keys, [(1, p1)]);
    let tx = c.carry(m.egress(0, EgressPayload::KeyAck { key_epoch: 1 }));
    assert_eq!(c.run(vec![tx]).0[0].error, None);
    assert_eq!(c.worker(m).key_epoch, 1);

    // Flow 2: a second gatekeeper gets the master key shared.
    c.admin(AdminCall::AppointGatekeeper { worker: b.id() });
    assert_eq!(c.last(Topic::Worker(b.id())).1, MessageBody::GatekeeperAppointed { worker: b.id(), generate: false });
    let (seq, req) = c.last(Topic::Gatekeepers);
    assert_eq!(req, MessageBody::ShareMaster { worker: b.id(), x25519: b.x25519, key_epoch: 1 });
    let answer = EgressPayload::MasterShare { key_epoch: 1, share: share(b.id()) };
    let tx = c.carry(sign_egress(&gk1, Origin::Gatekeeper, seq, answer));
    assert_eq!(c.run(vec![tx]).0[0].error, None);
    assert_eq!(
        c.last(Topic::Worker(b.id())).1,
        MessageBody::MasterKeyShare {
            key_epoch: 1,
            master_public: mp1,
            gatekeeper_key: gk1.address().0,
            share: share(b.id())
        }
    );
    let tx = c.carry(b.egress(0, EgressPayload::KeyAck { key_epoch: 1 }));
    assert_eq!(c.run(vec![tx]).0[0].error, None);
    assert_eq!(c.worker(b).key_epoch, 1);

    // Flow 4: rotation to epoch 2, led by the first gatekeeper.
    c.admin(AdminCall::StartRotation);
    let keys = block_on(c.rt.keys(&c.state)).expect("readable");
    let rot = keys.rotation.expect("a rotation");
    assert_eq!((rot.new_epoch, rot.leader), (2, WorkerIdHex(a.id())));
    let mut pending = vec![WorkerIdHex(a.id()), WorkerIdHex(b.id()), WorkerIdHex(m.id())];
    pending.sort();
    assert_eq!(rot.pending, pending);
    let (seq, started) = c.last(Topic::Gatekeepers);
    assert_eq!(
        started,
        MessageBody::RotationStarted {
            new_epoch: 2,
            leader: a.id(),
            gatekeepers: vec![(a.id(), a.x25519), (b.id(), b.x25519)],
            clusters: vec![(7, vec![(m.id(), m.x25519)])],
        }
    );
    // Appointments, removals and assignments wait for the rotation.
    for call in [
        AdminCall::AppointGatekeeper { worker: d.id() },
        AdminCall::RemoveGatekeeper { worker: b.id() },
        AdminCall::AssignWorker { worker: d.id(), cluster: 7 },
        AdminCall::StartRotation,
    ] {
        assert_eq!(c.fails(SUDO, Call::Admin { call }), TxError::RotationInProgress);
    }
    // An acknowledgement before the new key is published is refused (its sequence is still used).
    let tx = c.carry(b.egress(1, EgressPayload::KeyAck { key_epoch: 2 }));
    assert!(matches!(&c.run(vec![tx]).0[0].error, Some(TxError::RegistryPrecondition { .. })));

    let p2 = ClusterPublic { x25519: [71; 32], ed25519: [72; 32] };
    let leader_key = EgressPayload::MasterKey {
        key_epoch: 2,
        master_public: mp2,
        gatekeeper_key: gk2.address().0,
        shares: vec![share(b.id())],
        clusters: vec![ClusterKeys { cluster: 7, public: p2, shares: vec![share(m.id())] }],
    };
    let tx = c.carry(sign_egress(&gk1, Origin::Gatekeeper, seq, leader_key));
    assert_eq!(c.run(vec![tx]).0[0].error, None);
    assert_eq!(
        c.last(Topic::Worker(b.id())).1,
        MessageBody::MasterKeyShare {
            key_epoch: 2,
            master_public: mp2,
            gatekeeper_key: gk2.address().0,
            share: share(b.id())
        }
    );
    assert_eq!(
        c.last(Topic::Worker(m.id())).1,
        MessageBody::ClusterKey { cluster: 7, key_epoch: 2, public: p2, share: share(m.id()) }
    );
    assert_eq!(block_on(c.rt.clusters(&c.state)).expect("readable")[0].keys, [(1, p1), (2, p2)]);

    // Everyone acknowledges; the last acknowledgement activates epoch 2.
    let acks = vec![
        c.carry(a.egress(1, EgressPayload::KeyAck { key_epoch: 2 })),
        c.carry(b.egress(2, EgressPayload::KeyAck { key_epoch: 2 })),
    ];
    let (r, _) = c.run(acks);
    assert!(r.iter().all(Receipt::is_success), "{r:?}");
    assert_eq!(block_on(c.rt.keys(&c.state)).expect("readable").key_epoch, 1, "the member has not acknowledged");
    let tx = c.carry(m.egress(1, EgressPayload::KeyAck { key_epoch: 2 }));
    assert_eq!(c.run(vec![tx]).0[0].error, None);
    let keys = block_on(c.rt.keys(&c.state)).expect("readable");
    assert_eq!((keys.key_epoch, keys.rotation.is_none()), (2, true));
    assert_eq!((keys.master_public, keys.gatekeeper_key), (Some(WorkerIdHex(mp2)), Some(WorkerIdHex(gk2.address().0))));
    assert_eq!(block_on(c.rt.clusters(&c.state)).expect("readable")[0].keys, [(2, p2)]);
    assert_eq!(c.last(Topic::Broadcast).1, MessageBody::KeyEpochActivated { key_epoch: 2, retired: Some(1) });

    // The old gatekeeper key no longer signs for the gatekeepers; the new one does, and appointments resume.
    let next = block_on(c.rt.egress_next(&c.state, &Origin::Gatekeeper)).expect("readable");
    let stale_key = c.carry(sign_egress(&gk1, Origin::Gatekeeper, next, EgressPayload::KeyAck { key_epoch: 2 }));
    let admitted = block_on(c.rt.check_stateful(&c.state, &stale_key));
    assert!(matches!(admitted, Err(AdmissionError::BadEgressSignature { .. })), "{admitted:?}");
    c.nonces.insert(RELAYER, block_on(c.rt.account(&c.state, &c.op(RELAYER))).expect("readable").nonce);
    c.admin(AdminCall::AppointGatekeeper { worker: d.id() });
    let (seq, req) = c.last(Topic::Gatekeepers);
    assert_eq!(req, MessageBody::ShareMaster { worker: d.id(), x25519: d.x25519, key_epoch: 2 });
    let answer = EgressPayload::MasterShare { key_epoch: 2, share: share(d.id()) };
    let tx = c.carry(sign_egress(&gk2, Origin::Gatekeeper, seq, answer));
    assert_eq!(c.run(vec![tx]).0[0].error, None);
}

#[test]
fn a_rotation_completes_after_its_timeout_with_only_cluster_members_pending() {
    let mut params = Params::default();
    params.registry.rotation_timeout_blocks = 3;
    let mut c = Chain::new(dev_policy(), params, 1_000);
    let ws: Vec<Worker> = (1..=2).map(Worker::new).collect();
    c.run(vec![]);
    for (i, w) in ws.iter().enumerate() {
        let call = w.register(&c.op(i + 1));
        c.ok(i + 1, call);
    }
    let (g, m) = (&ws[0], &ws[1]);
    let gk1 = Keypair::from_seed([41; 32]);
    c.admin(AdminCall::AppointGatekeeper { worker: g.id() });
    let first = EgressPayload::MasterKey {
        key_epoch: 1,
        master_public: [1; 32],
        gatekeeper_key: gk1.address().0,
        shares: vec![],
        clusters: vec![],
    };
    let tx = c.carry(g.egress(0, first));
    c.run(vec![tx]);
    c.admin(AdminCall::CreateCluster { cluster: 1 });
    c.admin(AdminCall::AssignWorker { worker: m.id(), cluster: 1 });
    c.admin(AdminCall::StartRotation);
    let started = block_on(c.rt.keys(&c.state)).expect("readable").rotation.expect("rotation").started_at;
    let next = block_on(c.rt.egress_next(&c.state, &Origin::Gatekeeper)).expect("readable");
    let key = EgressPayload::MasterKey {
        key_epoch: 2,
        master_public: [2; 32],
        gatekeeper_key: [3; 32],
        shares: vec![],
        clusters: vec![],
    };
    let txs = vec![
        c.carry(sign_egress(&gk1, Origin::Gatekeeper, next, key)),
        c.carry(g.egress(1, EgressPayload::KeyAck { key_epoch: 2 })),
    ];
    let (r, _) = c.run(txs);
    assert!(r.iter().all(Receipt::is_success), "{r:?}");
    assert_eq!(block_on(c.rt.keys(&c.state)).expect("readable").key_epoch, 1, "the member is still pending");
    while c.height < started + 3 {
        c.run(vec![]);
    }
    let keys = block_on(c.rt.keys(&c.state)).expect("readable");
    assert_eq!((keys.key_epoch, keys.rotation), (2, None));
    assert_eq!(c.last(Topic::Broadcast).1, MessageBody::KeyEpochActivated { key_epoch: 2, retired: Some(1) });
}

#[test]
fn an_egress_with_a_bad_signature_or_a_wrong_sequence_is_refused_at_admission() {
    let (mut c, ws) = chain_with_workers();
    let w = &ws[0];
    let commit = |h| EgressPayload::StateCommitment { height: h, state_hash: Hash([h as u8; 32]) };
    let tx = c.carry(w.egress(0, commit(1)));
    assert_eq!(c.run(vec![tx]).0[0].error, None);

    let check = |c: &Chain, tx: &SignedTransaction| block_on(c.rt.check_stateful(&c.state, tx));
    let forged = sign_egress(&ws[1].identity, Origin::Worker(w.id()), 1, commit(2));
    let stale = w.egress(0, commit(2));
    let ahead = w.egress(2, commit(2));
    let stranger = Worker::new(9).egress(0, commit(2));
    let gatekeepers = sign_egress(&ws[0].identity, Origin::Gatekeeper, 0, commit(2));
    type Expect = fn(&AdmissionError) -> bool;
    let cases: Vec<(SignedEgress, Expect)> = vec![
        (forged, |e| matches!(e, AdmissionError::BadEgressSignature { .. })),
        (stale, |e| matches!(e, AdmissionError::EgressStale { expected: 1, got: 0, .. })),
        (ahead, |e| matches!(e, AdmissionError::EgressAhead { expected: 1, got: 2, .. })),
        (stranger, |e| matches!(e, AdmissionError::EgressUnknownOrigin { .. })),
        (gatekeepers, |e| matches!(e, AdmissionError::EgressUnknownOrigin { origin: Origin::Gatekeeper })),
    ];
    for (message, expected) in cases {
        let nonce = *c.nonces.get(&RELAYER).expect("used");
        let tx = c.carry(message);
        c.nonces.insert(RELAYER, nonce);
        let err = check(&c, &tx).expect_err("refused at admission");
        assert!(expected(&err), "{err}");
        assert!(!err.to_string().is_empty());
        // A proposer leaves it out, and a block carrying it anyway is invalid.
        let (receipts, rejected) = c.run(vec![tx.clone()]);
        assert!(receipts.is_empty());
        assert_eq!(rejected.len(), 1);
        match c.execute(std::slice::from_ref(&tx)) {
            Err(BlockError::InvalidTransaction { error, .. }) => assert!(expected(&error), "{error}"),
            other => panic!("expected an invalid block, got {other:?}"),
        }
    }
    let tx = c.carry(w.egress(1, commit(2)));
    assert_eq!(check(&c, &tx), Ok(()));
}

#[test]
fn two_identical_egress_copies_in_one_candidate_list_land_once() {
    let (mut c, ws) = chain_with_workers();
    let w = &ws[0];
    let message = w.egress(0, EgressPayload::StateCommitment { height: 1, state_hash: Hash([1; 32]) });
    // Two redundant relayers carry the same message.
    let first = c.tx(RELAYER, Call::Egress { message: message.clone() });
    let second = c.tx(4, Call::Egress { message });
    let (receipts, rejected) = c.run(vec![first.clone(), second.clone()]);
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].tx_hash, first.hash());
    assert_eq!(receipts[0].error, None);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].0, second.hash());
    assert!(matches!(rejected[0].1, AdmissionError::EgressStale { expected: 1, got: 0, .. }));
    assert_eq!(block_on(c.rt.egress_next(&c.state, &Origin::Worker(w.id()))).expect("readable"), 1);
}

#[test]
fn a_failing_payload_still_consumes_its_sequence_number() {
    let (mut c, ws) = chain_with_workers();
    let w = &ws[0];
    // A master key from a worker that is not a gatekeeper fails, but its sequence is used.
    let key = EgressPayload::MasterKey {
        key_epoch: 1,
        master_public: [1; 32],
        gatekeeper_key: [2; 32],
        shares: vec![],
        clusters: vec![],
    };
    let tx = c.carry(w.egress(0, key));
    let (r, _) = c.run(vec![tx]);
    assert!(matches!(&r[0].error, Some(TxError::RegistryPrecondition { reason }) if reason.contains("gatekeeper")));
    assert_eq!(block_on(c.rt.egress_next(&c.state, &Origin::Worker(w.id()))).expect("readable"), 1);
    assert_eq!(block_on(c.rt.keys(&c.state)).expect("readable").key_epoch, 0);
}

#[test]
fn messages_of_a_failed_call_are_not_emitted_and_a_block_holds_at_most_the_limit() {
    let mut params = Params::default();
    params.registry.max_block_messages = 2;
    let mut c = Chain::new(dev_policy(), params, 1_000);
    let ws: Vec<Worker> = (1..=3).map(Worker::new).collect();
    c.run(vec![]);
    let mut txs = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        let call = w.register(&c.op(i + 1));
        txs.push(c.tx(i + 1, call));
    }
    let (r, _) = c.run(txs);
    assert_eq!(r.iter().filter(|r| r.is_success()).count(), 2);
    assert!(matches!(&r[2].error, Some(TxError::RegistryPrecondition { reason }) if reason.contains("messages")));
    assert_eq!(c.messages.len(), 2);
    assert!(block_on(c.rt.worker(&c.state, &ws[2].id())).expect("readable").is_none());
    assert_eq!(block_on(c.rt.topic_next(&c.state, &Topic::Worker(ws[2].id()))).expect("readable"), 0);

    // A call that emits one message and then fails on the second leaves only the earlier call's.
    let gk = Keypair::from_seed([41; 32]);
    c.admin(AdminCall::AppointGatekeeper { worker: ws[0].id() });
    let key = EgressPayload::MasterKey {
        key_epoch: 1,
        master_public: [1; 32],
        gatekeeper_key: gk.address().0,
        shares: vec![],
        clusters: vec![],
    };
    let tx = c.carry(ws[0].egress(0, key));
    c.run(vec![tx]);
    c.admin(AdminCall::CreateCluster { cluster: 1 });
    let before = c.messages.len();
    let call = ws[2].register(&c.op(3));
    let txs = vec![
        c.tx(3, call),
        c.tx(SUDO, Call::Admin { call: AdminCall::AssignWorker { worker: ws[1].id(), cluster: 1 } }),
    ];
    let (r, _) = c.run(txs);
    assert_eq!(r[0].error, None);
    assert!(r[1].error.is_some(), "assignment needs two messages, the block has room for one");
    assert_eq!(c.messages.len(), before + 1);
    assert_eq!(c.worker(&ws[1]).cluster, None);
    assert!(block_on(c.rt.clusters(&c.state)).expect("readable")[0].members.is_empty());
}

fn dcap(name: &str) -> Vec<u8> {
    let path = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/dcap")
        .join(name);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e} (the shared DCAP test data is missing)", path.display()))
}

#[test]
fn a_tdx_quote_is_refused_for_its_measurement_and_verifies_once_allowed_with_stored_collateral() {
    let mut c = Chain::new(dev_policy(), Params::default(), DCAP_NOW_MS);
    c.run(vec![]);
    let (quote, collateral) = (dcap("tdx_quote"), dcap("tdx_quote_collateral.json"));
    let measurement =
        umbra_tee::verify_dcap(&quote, &Collateral::from_json(&collateral).expect("parses"), DCAP_NOW_MS / 1000)
            .expect("the sample verifies")
            .measurement;
    let register = || Call::RegisterWorker { identity: [1; 32], x25519: [2; 32], quote: quote.clone() };

    refused(c.fails(1, register()), "collateral");
    let e = c.fails(1, Call::UpdateCollateral { collateral: b"{not json".to_vec() });
    assert!(matches!(e, TxError::BadCollateral { .. }), "{e:?}");
    c.ok(1, Call::UpdateCollateral { collateral: collateral.clone() });
    let stored = block_on(c.rt.collaterals(&c.state)).expect("readable");
    assert_eq!(stored, [sha256(&[&collateral])]);

    refused(c.fails(1, register()), "allow-list");
    c.admin(AdminCall::AllowMeasurement { measurement });
    // Genuine and acceptable now; the sample's report data binds nothing of this chain, so the binding
    // check (which runs only after the policy accepted the quote) refuses it.
    assert_eq!(c.fails(1, register()), TxError::ReportDataMismatch);

    // Newer collateral goes first; the older copy is still tried.
    let sgx_collateral = dcap("sgx_quote_collateral.json");
    c.ok(2, Call::UpdateCollateral { collateral: sgx_collateral.clone() });
    let stored = block_on(c.rt.collaterals(&c.state)).expect("readable");
    assert_eq!(stored, [sha256(&[&sgx_collateral]), sha256(&[&collateral])]);
    assert_eq!(c.fails(1, register()), TxError::ReportDataMismatch);
}

#[test]
fn a_dcap_quote_is_refused_when_the_block_time_is_outside_its_collaterals_validity() {
    // 2025-08-01: the samples' TCB info has expired.
    let mut c = Chain::new(dev_policy(), Params::default(), 1_754_006_400_000);
    c.run(vec![]);
    c.ok(1, Call::UpdateCollateral { collateral: dcap("tdx_quote_collateral.json") });
    refused(
        c.fails(1, Call::RegisterWorker { identity: [1; 32], x25519: [2; 32], quote: dcap("tdx_quote") }),
        "expired",
    );
}

#[test]
fn of_two_gatekeepers_asked_to_generate_the_first_key_to_land_wins_and_the_other_gets_it_shared() {
    let (mut c, ws) = chain_with_workers();
    let (a, b) = (&ws[0], &ws[1]);
    c.admin(AdminCall::AppointGatekeeper { worker: a.id() });
    c.admin(AdminCall::AppointGatekeeper { worker: b.id() });
    assert_eq!(c.last(Topic::Worker(b.id())).1, MessageBody::GatekeeperAppointed { worker: b.id(), generate: true });
    assert!(c.to(Topic::Gatekeepers).is_empty(), "nothing to share before a key exists");
    let key = |gk: [u8; 32]| EgressPayload::MasterKey {
        key_epoch: 1,
        master_public: gk,
        gatekeeper_key: gk,
        shares: vec![],
        clusters: vec![],
    };
    let txs = vec![c.carry(b.egress(0, key([2; 32]))), c.carry(a.egress(0, key([1; 32])))];
    let (r, _) = c.run(txs);
    assert_eq!(r[0].error, None);
    assert!(matches!(&r[1].error, Some(TxError::RegistryPrecondition { reason }) if reason.contains("exists")));
    let keys = block_on(c.rt.keys(&c.state)).expect("readable");
    assert_eq!(keys.gatekeeper_key, Some(WorkerIdHex([2; 32])));
    assert_eq!(c.to(Topic::Gatekeepers), [MessageBody::ShareMaster { worker: a.id(), x25519: a.x25519, key_epoch: 1 }]);
    // Two gatekeepers: one may go, the last may not.
    c.admin(AdminCall::RemoveGatekeeper { worker: a.id() });
    assert_eq!(c.last(Topic::Worker(a.id())).1, MessageBody::GatekeeperRemoved { worker: a.id() });
    let e = c.fails(SUDO, Call::Admin { call: AdminCall::RemoveGatekeeper { worker: b.id() } });
    assert!(matches!(e, TxError::RegistryPrecondition { reason } if reason.contains("last")));
}

#[test]
fn a_rollback_commitment_is_recorded_only_when_higher() {
    let (mut c, ws) = chain_with_workers();
    let w = &ws[0];
    let commit = |h: u64| EgressPayload::StateCommitment { height: h, state_hash: Hash([h as u8; 32]) };
    let txs = vec![c.carry(w.egress(0, commit(2))), c.carry(w.egress(1, commit(2))), c.carry(w.egress(2, commit(99)))];
    let (r, _) = c.run(txs);
    assert_eq!(r[0].error, None);
    assert!(matches!(&r[1].error, Some(TxError::RegistryPrecondition { reason }) if reason.contains("not above")));
    assert!(matches!(&r[2].error, Some(TxError::RegistryPrecondition { reason }) if reason.contains("future")));
    assert_eq!(c.worker(w).commitment, Some((2, Hash([2; 32]))));
    assert_eq!(block_on(c.rt.egress_next(&c.state, &Origin::Worker(w.id()))).expect("readable"), 3);
}

#[test]
fn a_scheduled_rotation_starts_by_itself_at_the_interval_once_a_master_key_exists() {
    let mut params = Params::default();
    params.registry.rotation_interval_blocks = 10;
    let mut c = Chain::new(dev_policy(), params, 1_000);
    let g = Worker::new(1);
    c.run(vec![]);
    let call = g.register(&c.op(1));
    c.ok(1, call);
    // No master key yet: the schedule has nothing to rotate.
    while c.height < 10 {
        c.run(vec![]);
    }
    assert!(block_on(c.rt.keys(&c.state)).expect("readable").rotation.is_none());
    let gk1 = Keypair::from_seed([41; 32]);
    c.admin(AdminCall::AppointGatekeeper { worker: g.id() });
    let first = EgressPayload::MasterKey {
        key_epoch: 1,
        master_public: [1; 32],
        gatekeeper_key: gk1.address().0,
        shares: vec![],
        clusters: vec![],
    };
    let tx = c.carry(g.egress(0, first));
    assert_eq!(c.run(vec![tx]).0[0].error, None);
    while c.height < 20 {
        c.run(vec![]);
    }
    let keys = block_on(c.rt.keys(&c.state)).expect("readable");
    let rot = keys.rotation.expect("a rotation started at the scheduled height");
    assert_eq!((rot.new_epoch, rot.started_at, rot.leader), (2, 20, WorkerIdHex(g.id())));
    assert!(matches!(c.last(Topic::Gatekeepers).1, MessageBody::RotationStarted { new_epoch: 2, .. }));
}
