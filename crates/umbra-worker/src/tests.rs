//! The enclave against synthetic chains: real headers linked by parent hash, real finality certificates
//! (`umbra_light::testing`), messages under real Merkle roots and state values under real state proofs.

use crate::enclave::{Enclave, EnclaveConfig, EnclaveError, TailProof};
use crate::keys::{cluster_key, cluster_public, share_aad};
use crate::verify::Rejection;
use std::collections::BTreeMap;
use std::path::Path;
use umbra_crypto::{merkle_proof, merkle_root, seal_envelope, x25519_public};
use umbra_light::testing::TestCommittee;
use umbra_rpc::{ProvenMessage, StateValueResponse, SyncBlock, SyncResponse};
use umbra_tee::{Confidence, DevPlatform, Measurement};
use umbra_types::registry::{
    ClusterId, EgressPayload, KeyEpoch, KeyShare, MessageBody, Origin, SignedEgress, Topic, WorkerId, X25519Public,
};
use umbra_types::state_keys::StateKey;
use umbra_types::{Address, Hash, Header, Message, WorkerRecord, encode};

pub(crate) const CHAIN: &str = "umbra-test";

/// Builds `(key, value)` into a state and proves each of `ask`: the root and the proofs' bytes.
fn prove(records: &[(StateKey, Vec<u8>)], ask: &[StateKey]) -> (Hash, Vec<Vec<u8>>) {
    use commonware_runtime::{Runner as _, deterministic};
    use umbra_state::{State, StateConfig};
    let records = records.to_vec();
    let ask = ask.to_vec();
    deterministic::Runner::default().start(|ctx| async move {
        let mut state = State::open(ctx, &StateConfig::default()).await.expect("opens");
        let changes: BTreeMap<_, _> = records.iter().map(|(k, v)| (k.hash(), Some(v.clone()))).collect();
        let pending = state.speculate(None, &changes).await.expect("speculates");
        let root = state.commit(&pending).await.expect("commits");
        let mut proofs = Vec::new();
        for k in &ask {
            proofs.push(state.prove(&k.hash()).await.expect("proves").to_bytes());
        }
        (Hash(root), proofs)
    })
}

/// A chain whose blocks carry messages; the committee signs every block it is asked to.
pub(crate) struct Chain {
    committee: TestCommittee,
    blocks: Vec<(Header, Vec<Message>)>,
    next: BTreeMap<Topic, u64>,
}

impl Chain {
    fn new() -> Chain {
        let committee = TestCommittee::new(1, 4);
        let genesis = Header {
            height: 0,
            parent: Hash::ZERO,
            timestamp_ms: 1_000,
            proposer: [0; 32],
            epoch: 0,
            tx_root: Hash::ZERO,
            state_root: Hash([7; 32]),
            messages_root: Hash::ZERO,
            next_committee: Some(committee.keys()),
        };
        Chain { committee, blocks: vec![(genesis, Vec::new())], next: BTreeMap::new() }
    }

    fn genesis(&self) -> Header {
        self.blocks[0].0.clone()
    }

    pub(crate) fn height(&self) -> u64 {
        self.blocks.len() as u64 - 1
    }

    /// Appends a block emitting `bodies` (numbered per topic) with state root `state_root`.
    fn push_root(&mut self, bodies: Vec<(Topic, MessageBody)>, state_root: Hash) -> u64 {
        let messages: Vec<Message> = bodies
            .into_iter()
            .map(|(topic, body)| {
                let seq = self.next.entry(topic).or_insert(0);
                let m = Message { topic, topic_seq: *seq, body };
                *seq += 1;
                m
            })
            .collect();
        let leaves: Vec<Hash> = messages.iter().map(Message::leaf_hash).collect();
        let parent = &self.blocks[self.blocks.len() - 1].0;
        let header = Header {
            height: parent.height + 1,
            parent: parent.hash(),
            timestamp_ms: parent.timestamp_ms + 1,
            proposer: [1; 32],
            epoch: 0,
            tx_root: Hash::ZERO,
            state_root,
            messages_root: merkle_root(&leaves),
            next_committee: None,
        };
        self.blocks.push((header, messages));
        self.height()
    }

    pub(crate) fn push(&mut self, bodies: Vec<(Topic, MessageBody)>) -> u64 {
        self.push_root(bodies, Hash::ZERO)
    }

    fn certificate(&self, header: &Header) -> String {
        hex::encode(self.committee.certify_all(CHAIN, header, header.height + 1))
    }

    /// `worker_sync` from `from` to `to` with the messages of `topics`.
    pub(crate) fn sync(&self, from: u64, to: u64, topics: &[Topic]) -> SyncResponse {
        let mut blocks = Vec::new();
        for h in from..=to {
            let (header, messages) = &self.blocks[h as usize];
            let leaves: Vec<Hash> = messages.iter().map(Message::leaf_hash).collect();
            let messages = messages
                .iter()
                .enumerate()
                .filter(|(_, m)| topics.contains(&m.topic))
                .map(|(i, m)| ProvenMessage { message: m.clone(), proof: merkle_proof(&leaves, i).expect("in range") })
                .collect();
            let certificate = (h == to).then(|| self.certificate(header));
            blocks.push(SyncBlock { header: header.clone(), certificate, messages });
        }
        SyncResponse { blocks, head: self.height() }
    }

    /// A certified answer for `key` from a state holding `records`, at a header of its own.
    pub(crate) fn value(&self, records: &[(StateKey, Vec<u8>)], key: &StateKey) -> StateValueResponse {
        let (root, proofs) = prove(records, std::slice::from_ref(key));
        let mut header = self.blocks[0].0.clone();
        header.height = 1_000_000;
        header.next_committee = None;
        header.state_root = root;
        let value = records.iter().find(|(k, _)| k == key).map(|(_, v)| hex::encode(v));
        StateValueResponse {
            certificate: Some(self.certificate(&header)),
            header,
            value,
            proof: hex::encode(&proofs[0]),
        }
    }
}

fn platform(machine: &Path) -> Box<DevPlatform> {
    Box::new(DevPlatform::open(&machine.join("machine-secret"), [7; 32], Measurement([1; 32])).expect("platform"))
}

fn config(chain: &Chain, interval: u64) -> EnclaveConfig {
    EnclaveConfig {
        chain_id: CHAIN.into(),
        genesis: chain.genesis(),
        expected_genesis: None,
        operator: Address([5; 32]),
        commitment_interval: interval,
    }
}

/// A worker in `dir` (sealing under the machine secret in `dir`) whose rollback check passed (no record).
pub(crate) fn worker(chain: &Chain, dir: &Path, interval: u64) -> Enclave {
    let mut e = Enclave::open(platform(dir), dir, config(chain, interval)).expect("opens");
    let resp = chain.value(&[(StateKey::SystemParams, vec![1])], &StateKey::Worker(e.id()));
    e.check_rollback(&resp).expect("no record, no rollback");
    e
}

fn topics(e: &Enclave) -> Vec<Topic> {
    e.sync_topics()
}

pub(crate) fn registered(id: WorkerId) -> (Topic, MessageBody) {
    (Topic::Worker(id), MessageBody::Registered { worker: id, confidence: Confidence::Simulated, expires_at: 1_000 })
}

/// Applies `from..=to` to `e` and returns its egress.
pub(crate) fn apply(chain: &Chain, e: &mut Enclave, to: u64) -> Vec<SignedEgress> {
    let from = e.height() + 1;
    e.apply(&chain.sync(from, to, &topics(e)), &[]).expect("applies")
}

/// Checks that `batch` is refused with a rejection matching `what`, that nothing changed, and that the
/// honest batch applies afterwards.
fn refused_then_honest(chain: &Chain, e: &mut Enclave, batch: SyncResponse, what: fn(&Rejection) -> bool) {
    let before = e.status();
    let err = e.apply(&batch, &[]).expect_err("refused");
    assert!(what(&err), "unexpected rejection: {err}");
    assert_eq!(e.status(), before, "a refused batch changes nothing");
    let to = batch.blocks.last().map(|b| b.header.height).unwrap_or(0);
    apply(chain, e, to);
    assert_eq!(e.height(), to);
}

#[test]
fn a_correct_batch_applies_and_registration_is_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::new();
    let mut e = worker(&chain, dir.path(), 0);
    chain.push(vec![registered(e.id())]);
    chain.push(vec![]);
    let score = e.benchmark_score();
    let out = apply(&chain, &mut e, 2);
    assert_eq!(out.len(), 1, "registration reports the benchmark, nothing else");
    assert_eq!(out[0].egress.payload, EgressPayload::Benchmark { score });
    assert_eq!(e.height(), 2);
    assert!(e.is_registered());
}

#[test]
fn a_batch_before_the_rollback_check_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::new();
    let mut e = Enclave::open(platform(dir.path()), dir.path(), config(&chain, 0)).expect("opens");
    chain.push(vec![]);
    assert_eq!(e.apply(&chain.sync(1, 1, &[]), &[]), Err(Rejection::NotReady));
}

#[test]
fn a_tampered_message_is_refused_and_leaves_the_state_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::new();
    let mut e = worker(&chain, dir.path(), 0);
    chain.push(vec![registered(e.id())]);
    let mut batch = chain.sync(1, 1, &topics(&e));
    batch.blocks[0].messages[0].message.body = MessageBody::GatekeeperAppointed { worker: e.id(), generate: true };
    refused_then_honest(&chain, &mut e, batch, |r| matches!(r, Rejection::MessageProof { .. }));
    assert!(e.is_registered());
}

#[test]
fn a_dropped_message_is_refused_as_a_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::new();
    let mut e = worker(&chain, dir.path(), 0);
    chain.push(vec![registered(e.id())]);
    chain.push(vec![registered(e.id())]);
    let mut batch = chain.sync(1, 2, &topics(&e));
    batch.blocks[0].messages.clear();
    refused_then_honest(&chain, &mut e, batch, |r| matches!(r, Rejection::Dropped { expected: 0, got: 1, .. }));
}

#[test]
fn reordered_messages_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::new();
    let mut e = worker(&chain, dir.path(), 0);
    chain.push(vec![
        registered(e.id()),
        (Topic::Broadcast, MessageBody::KeyEpochActivated { key_epoch: 0, retired: None }),
    ]);
    let mut batch = chain.sync(1, 1, &topics(&e));
    batch.blocks[0].messages.swap(0, 1);
    refused_then_honest(&chain, &mut e, batch, |r| matches!(r, Rejection::Reordered { .. }));
}

#[test]
fn a_replayed_message_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::new();
    let mut e = worker(&chain, dir.path(), 0);
    chain.push(vec![registered(e.id())]);
    apply(&chain, &mut e, 1);
    chain.push(vec![]);
    // The host passes block 1's message again inside block 2 (its proof is for block 1's root).
    let old = chain.sync(1, 1, &topics(&e)).blocks[0].messages[0].clone();
    let mut batch = chain.sync(2, 2, &topics(&e));
    batch.blocks[0].messages.push(old);
    refused_then_honest(&chain, &mut e, batch, |r| {
        matches!(r, Rejection::MessageProof { .. } | Rejection::Replayed { .. })
    });
    // The same batch again (a replayed batch) no longer starts where the worker is.
    let again = chain.sync(1, 2, &topics(&e));
    assert!(matches!(e.apply(&again, &[]), Err(Rejection::WrongStart { expected: 3, got: 1 })));
}

#[test]
fn a_duplicated_message_in_one_block_is_refused_as_a_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::new();
    let mut e = worker(&chain, dir.path(), 0);
    chain.push(vec![registered(e.id()), registered(e.id())]);
    let mut batch = chain.sync(1, 1, &topics(&e));
    let first = batch.blocks[0].messages[0].clone();
    batch.blocks[0].messages[1] = first;
    refused_then_honest(&chain, &mut e, batch, |r| {
        matches!(r, Rejection::Reordered { .. } | Rejection::Replayed { .. })
    });
}

#[test]
fn a_forged_certificate_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::new();
    let mut e = worker(&chain, dir.path(), 0);
    chain.push(vec![registered(e.id())]);
    let mut batch = chain.sync(1, 1, &topics(&e));
    let forger = TestCommittee::new(99, 4);
    batch.blocks[0].certificate = Some(hex::encode(forger.certify_all(CHAIN, &batch.blocks[0].header, 2)));
    refused_then_honest(&chain, &mut e, batch, |r| matches!(r, Rejection::Certificate { .. }));
}

#[test]
fn a_missing_certificate_on_the_last_block_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::new();
    let mut e = worker(&chain, dir.path(), 0);
    chain.push(vec![]);
    let mut batch = chain.sync(1, 1, &topics(&e));
    batch.blocks[0].certificate = None;
    refused_then_honest(&chain, &mut e, batch, |r| matches!(r, Rejection::MissingCertificate { .. }));
}

#[test]
fn a_header_not_linked_by_parent_hash_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::new();
    let mut e = worker(&chain, dir.path(), 0);
    chain.push(vec![registered(e.id())]);
    chain.push(vec![]);
    let mut batch = chain.sync(1, 2, &topics(&e));
    // Block 1 is replaced by another header at the same height (the certificate on block 2 is genuine).
    batch.blocks[0].header.timestamp_ms += 7;
    refused_then_honest(&chain, &mut e, batch, |r| matches!(r, Rejection::NotLinked { height: 2, .. }));
}

#[test]
fn messages_withheld_at_the_tail_are_noticed_with_a_topic_next_proof() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::new();
    let mut e = worker(&chain, dir.path(), 0);
    let id = e.id();
    let state = vec![
        (StateKey::TopicNext(Topic::Worker(id)), encode(&1u64)),
        (StateKey::TopicNext(Topic::Broadcast), encode(&1u64)),
    ];
    let keys: Vec<StateKey> = e.tail_topics().into_iter().map(StateKey::TopicNext).collect();
    let (root, proofs) = prove(&state, &keys);
    chain.push_root(
        vec![registered(id), (Topic::Broadcast, MessageBody::KeyEpochActivated { key_epoch: 0, retired: None })],
        root,
    );
    let batch = chain.sync(1, 1, &topics(&e));
    let header = batch.blocks[0].header.clone();
    let tails: Vec<TailProof> = e
        .tail_topics()
        .into_iter()
        .zip(&proofs)
        .map(|(topic, proof)| TailProof {
            topic,
            value: StateValueResponse {
                header: header.clone(),
                certificate: None,
                value: state.iter().find(|(k, _)| *k == StateKey::TopicNext(topic)).map(|(_, v)| hex::encode(v)),
                proof: hex::encode(proof),
            },
        })
        .collect();
    let mut withheld = batch.clone();
    withheld.blocks[0].messages.retain(|m| m.message.topic != Topic::Broadcast);
    let before = e.status();
    assert_eq!(
        e.apply(&withheld, &tails),
        Err(Rejection::WithheldAtTail { topic: Topic::Broadcast, chain: 1, seen: 0 })
    );
    assert_eq!(e.status(), before);
    e.apply(&batch, &tails).expect("the complete batch applies");
    assert_eq!(e.height(), 1);
}

// ---- keys ----

/// Two registered workers; the first generates the master key of epoch 1, which is activated.
pub(crate) struct Keyed {
    pub(crate) chain: Chain,
    pub(crate) g1: Enclave,
    master_public: X25519Public,
    gatekeeper_key: [u8; 32],
    pub(crate) _dirs: Vec<tempfile::TempDir>,
}

pub(crate) fn first_gatekeeper() -> Keyed {
    let d1 = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::new();
    let mut g1 = worker(&chain, d1.path(), 0);
    chain.push(vec![
        registered(g1.id()),
        (Topic::Worker(g1.id()), MessageBody::GatekeeperAppointed { worker: g1.id(), generate: true }),
    ]);
    let out = without_benchmark(apply(&chain, &mut g1, chain.height()));
    assert_eq!(out.len(), 1);
    let EgressPayload::MasterKey { key_epoch: 1, master_public, gatekeeper_key, .. } = out[0].egress.payload.clone()
    else {
        panic!("expected the first master key, got {:?}", out[0].egress.payload)
    };
    assert_eq!(out[0].egress.origin, Origin::Worker(g1.id()));
    chain.push(vec![(Topic::Broadcast, MessageBody::KeyEpochActivated { key_epoch: 1, retired: None })]);
    apply(&chain, &mut g1, chain.height());
    Keyed { chain, g1, master_public, gatekeeper_key, _dirs: vec![d1] }
}

/// `out` without the benchmark report every newly registered worker sends.
fn without_benchmark(out: Vec<SignedEgress>) -> Vec<SignedEgress> {
    out.into_iter().filter(|e| !matches!(e.egress.payload, EgressPayload::Benchmark { .. })).collect()
}

/// Brings `w` (registered in the same block) up to the chain's height; its egress but the benchmark.
fn catch_up(k: &Keyed, w: &mut Enclave) -> Vec<SignedEgress> {
    without_benchmark(apply(&k.chain, w, k.chain.height()))
}

fn master_share_of(out: &[SignedEgress]) -> KeyShare {
    out.iter()
        .find_map(|e| match &e.egress.payload {
            EgressPayload::MasterShare { share, .. } => Some(share.clone()),
            _ => None,
        })
        .expect("a master share")
}

/// The second gatekeeper: appointed, shared the master key by g1, acknowledged.
fn second_gatekeeper(k: &mut Keyed) -> Enclave {
    let d2 = tempfile::tempdir().expect("tempdir");
    let mut g2 = worker(&k.chain, d2.path(), 0);
    k._dirs.push(d2);
    let (id2, x2) = (g2.id(), g2.x25519_public());
    k.chain.push(vec![
        registered(id2),
        (Topic::Worker(id2), MessageBody::GatekeeperAppointed { worker: id2, generate: false }),
        (Topic::Gatekeepers, MessageBody::ShareMaster { worker: id2, x25519: x2, key_epoch: 1 }),
    ]);
    let out = apply(&k.chain, &mut k.g1, k.chain.height());
    let share = master_share_of(&out);
    assert_eq!(out[0].egress.origin, Origin::Gatekeeper);
    assert_eq!(out[0].egress.seq, 0, "the answer's seq is the request's topic_seq");
    k.chain.push(vec![(
        Topic::Worker(id2),
        MessageBody::MasterKeyShare {
            key_epoch: 1,
            master_public: k.master_public,
            gatekeeper_key: k.gatekeeper_key,
            share,
        },
    )]);
    k.g1.apply(&k.chain.sync(k.g1.height() + 1, k.chain.height(), &topics(&k.g1)), &[]).expect("g1 follows");
    let out = catch_up(k, &mut g2);
    assert!(
        out.iter()
            .any(|e| e.egress.payload == EgressPayload::KeyAck { key_epoch: 1 }
                && e.egress.origin == Origin::Worker(id2)),
        "the new gatekeeper acknowledges: {out:?}"
    );
    assert_eq!(g2.status().master_epochs, vec![1]);
    g2
}

#[test]
fn gatekeeper_answers_are_byte_identical_between_two_gatekeepers() {
    let mut k = first_gatekeeper();
    let mut g2 = second_gatekeeper(&mut k);
    let member: (WorkerId, X25519Public) = ([42; 32], x25519_public(&[43; 32]));
    k.chain.push(vec![(
        Topic::Gatekeepers,
        MessageBody::ClusterKeyRequest { cluster: 7, key_epoch: 1, members: vec![member] },
    )]);
    let a = apply(&k.chain, &mut k.g1, k.chain.height());
    let b = apply(&k.chain, &mut g2, k.chain.height());
    assert_eq!(a.len(), 1);
    assert_eq!(encode(&a), encode(&b), "both gatekeepers sign the same bytes");
    assert!(matches!(a[0].egress.payload, EgressPayload::ClusterKeys { key_epoch: 1, .. }));
    assert_eq!(a[0].egress.seq, 1);
    // The answer verifies under the announced gatekeeper key.
    umbra_crypto::verify(&Address(k.gatekeeper_key), &a[0].egress.signing_bytes(CHAIN), &a[0].signature)
        .expect("signed by the gatekeeper key");
}

#[test]
fn a_key_share_addressed_to_another_worker_is_ignored() {
    let mut k = first_gatekeeper();
    let d = tempfile::tempdir().expect("tempdir");
    let mut w = worker(&k.chain, d.path(), 0);
    let id = w.id();
    // g1 shares the master key to some other worker; the chain (wrongly) forwards it to w.
    let other: (WorkerId, X25519Public) = ([9; 32], x25519_public(&[10; 32]));
    k.chain
        .push(vec![(Topic::Gatekeepers, MessageBody::ShareMaster { worker: other.0, x25519: other.1, key_epoch: 1 })]);
    let share = master_share_of(&apply(&k.chain, &mut k.g1, k.chain.height()));
    k.chain.push(vec![
        registered(id),
        (
            Topic::Worker(id),
            MessageBody::MasterKeyShare {
                key_epoch: 1,
                master_public: k.master_public,
                gatekeeper_key: k.gatekeeper_key,
                share,
            },
        ),
    ]);
    let out = catch_up(&k, &mut w);
    assert!(out.is_empty(), "no acknowledgement: {out:?}");
    assert!(w.status().master_epochs.is_empty());
    assert_eq!(w.height(), k.chain.height(), "the batch itself is fine and applied");
}

#[test]
fn a_share_that_does_not_derive_to_the_announced_public_key_is_ignored() {
    let mut k = first_gatekeeper();
    let d = tempfile::tempdir().expect("tempdir");
    let mut w = worker(&k.chain, d.path(), 0);
    let (id, x) = (w.id(), w.x25519_public());
    // A share of some other secret, correctly sealed to w, announced as the epoch's master key.
    let bogus = [77u8; 32];
    let mut rng = crate::keys::share_rng(&bogus, &id, 1, None);
    let sealed =
        seal_envelope(&x, crate::keys::LABEL_MASTER_SHARE, &share_aad(CHAIN, &id, 1), &bogus, &mut rng).expect("seals");
    k.chain.push(vec![
        registered(id),
        (
            Topic::Worker(id),
            MessageBody::MasterKeyShare {
                key_epoch: 1,
                master_public: k.master_public,
                gatekeeper_key: k.gatekeeper_key,
                share: KeyShare { to: id, sealed },
            },
        ),
    ]);
    assert!(catch_up(&k, &mut w).is_empty());
    assert!(w.status().master_epochs.is_empty());
}

fn cluster_envelope(public_x25519: &X25519Public, member: &WorkerId, key_epoch: KeyEpoch) -> Vec<u8> {
    let mut rng = crate::keys::share_rng(&[1; 32], member, key_epoch, Some(0));
    seal_envelope(public_x25519, "query", &share_aad(CHAIN, member, key_epoch), b"secret query", &mut rng)
        .expect("seals")
}

#[test]
fn an_erased_epoch_cluster_key_no_longer_opens_envelopes_but_the_new_one_does() {
    let mut k = first_gatekeeper();
    let (id, x) = (k.g1.id(), k.g1.x25519_public());
    let cluster: ClusterId = 7;
    // g1 is also a member of cluster 7: it answers the request for itself and receives its key.
    k.chain.push(vec![
        (Topic::Worker(id), MessageBody::AssignedToCluster { worker: id, cluster }),
        (Topic::Gatekeepers, MessageBody::ClusterKeyRequest { cluster, key_epoch: 1, members: vec![(id, x)] }),
    ]);
    let out = apply(&k.chain, &mut k.g1, k.chain.height());
    let EgressPayload::ClusterKeys { keys, .. } = &out[0].egress.payload else { panic!("cluster keys: {out:?}") };
    let (public1, share) = (keys.public, keys.shares[0].clone());
    k.chain.push(vec![(Topic::Worker(id), MessageBody::ClusterKey { cluster, key_epoch: 1, public: public1, share })]);
    let out = apply(&k.chain, &mut k.g1, k.chain.height());
    assert_eq!(out.last().map(|e| e.egress.payload.clone()), Some(EgressPayload::KeyAck { key_epoch: 1 }));
    let env1 = cluster_envelope(&public1.x25519, &id, 1);
    let aad1 = share_aad(CHAIN, &id, 1);
    assert_eq!(
        k.g1.open_cluster_envelope(cluster, 1, "query", &aad1, &env1).expect("opens").as_slice(),
        b"secret query"
    );
    // Rotation led by g1: a new master key, its own new cluster key, an acknowledgement.
    k.chain.push(vec![(
        Topic::Gatekeepers,
        MessageBody::RotationStarted {
            new_epoch: 2,
            leader: id,
            gatekeepers: vec![(id, x)],
            clusters: vec![(cluster, vec![(id, x)])],
        },
    )]);
    let out = apply(&k.chain, &mut k.g1, k.chain.height());
    let EgressPayload::MasterKey { key_epoch: 2, clusters, .. } = &out[0].egress.payload else {
        panic!("a rotation master key: {out:?}")
    };
    assert_eq!(out[0].egress.origin, Origin::Gatekeeper);
    umbra_crypto::verify(&Address(k.gatekeeper_key), &out[0].egress.signing_bytes(CHAIN), &out[0].signature)
        .expect("the new key is signed with the old gatekeeper key");
    let public2 = clusters[0].public;
    assert_ne!(public2, public1);
    assert_eq!(out[1].egress.payload, EgressPayload::KeyAck { key_epoch: 2 });
    k.chain.push(vec![(Topic::Broadcast, MessageBody::KeyEpochActivated { key_epoch: 2, retired: Some(1) })]);
    apply(&k.chain, &mut k.g1, k.chain.height());
    assert_eq!(k.g1.status().master_epochs, vec![2]);
    assert_eq!(k.g1.status().cluster_keys, vec![(2, cluster)]);
    assert!(matches!(
        k.g1.open_cluster_envelope(cluster, 1, "query", &aad1, &env1),
        Err(EnclaveError::KeyNotHeld { key_epoch: 1, .. })
    ));
    let env2 = cluster_envelope(&public2.x25519, &id, 2);
    let aad2 = share_aad(CHAIN, &id, 2);
    assert_eq!(
        k.g1.open_cluster_envelope(cluster, 2, "query", &aad2, &env2).expect("opens").as_slice(),
        b"secret query"
    );
    assert_eq!(cluster_public(&cluster_key(&[0; 32], cluster)), cluster_public(&cluster_key(&[0; 32], cluster)));
}

// ---- sealing and rollback ----

#[test]
fn sealed_state_from_another_worker_is_refused() {
    let chain = Chain::new();
    let machine = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"));
    // Two workers on the same machine (same sealing key).
    let pa = || Box::new(DevPlatform::open(&machine.path().join("s"), [7; 32], Measurement([1; 32])).expect("p"));
    Enclave::open(pa(), a.path(), config(&chain, 0)).expect("a opens");
    Enclave::open(pa(), b.path(), config(&chain, 0)).expect("b opens");
    std::fs::copy(b.path().join(crate::state::STATE_FILE), a.path().join(crate::state::STATE_FILE)).expect("copy");
    let err = Enclave::open(pa(), a.path(), config(&chain, 0)).expect_err("refused");
    assert!(matches!(err, EnclaveError::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("belongs to worker"), "{err}");
    // Keys sealed on another machine do not unseal here.
    let other = tempfile::tempdir().expect("other");
    let err = Enclave::open(platform(other.path()), a.path(), config(&chain, 0)).expect_err("refused");
    assert!(matches!(err, EnclaveError::Foreign { .. }), "{err}");
}

pub(crate) fn record(id: WorkerId, x: X25519Public, commitment: Option<(u64, Hash)>) -> WorkerRecord {
    WorkerRecord {
        id,
        x25519: x,
        operator: Address([5; 32]),
        tee: umbra_tee::TeeKind::Dev,
        measurement: Measurement([1; 32]),
        tcb_status: umbra_tee::TcbStatus::Simulated,
        advisories: Vec::new(),
        confidence: Confidence::Simulated,
        registered_at: 1,
        attested_at: 1,
        expires_at: 1_000,
        cluster: None,
        gatekeeper: false,
        key_epoch: 0,
        commitment,
        revoked: None,
    }
}

#[test]
fn an_older_sealed_state_is_refused_against_a_commitment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::new();
    let mut e = worker(&chain, dir.path(), 2);
    let (id, x) = (e.id(), e.x25519_public());
    chain.push(vec![registered(id)]);
    apply(&chain, &mut e, 1);
    let old = std::fs::read(dir.path().join(crate::state::STATE_FILE)).expect("read");
    chain.push(vec![]);
    let out = apply(&chain, &mut e, 2);
    let Some(EgressPayload::StateCommitment { height: 2, state_hash }) = out.first().map(|e| e.egress.payload.clone())
    else {
        panic!("a commitment at height 2: {out:?}")
    };
    let committed =
        chain.value(&[(StateKey::Worker(id), encode(&record(id, x, Some((2, state_hash)))))], &StateKey::Worker(id));
    drop(e);
    // The current state passes.
    let mut reopened = Enclave::open(platform(dir.path()), dir.path(), config(&chain, 2)).expect("opens");
    assert!(reopened.check_rollback(&committed).expect("passes").record.is_some());
    drop(reopened);
    // The host puts back the older sealed file.
    std::fs::write(dir.path().join(crate::state::STATE_FILE), &old).expect("write");
    let mut rolled = Enclave::open(platform(dir.path()), dir.path(), config(&chain, 2)).expect("opens");
    let err = rolled.check_rollback(&committed).expect_err("refused");
    assert!(matches!(err, EnclaveError::RolledBack { sealed: 1, committed: 2 }), "{err}");
    assert!(!rolled.is_ready());
    // Same height, another hash: a forked copy.
    let forked =
        chain.value(&[(StateKey::Worker(id), encode(&record(id, x, Some((1, Hash([3; 32]))))))], &StateKey::Worker(id));
    assert!(matches!(rolled.check_rollback(&forked), Err(EnclaveError::Forked { height: 1, .. })));
}

#[test]
fn registration_binds_the_keys_the_chain_and_the_operator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = Chain::new();
    let e = worker(&chain, dir.path(), 0);
    let reg = e.registration().expect("registration");
    let key = ed25519_public_of_seed([7; 32]);
    let q = umbra_tee::verify_quote(&reg.quote, None, 0, &[key]).expect("a valid dev quote");
    let expected = umbra_tee::report_data(&reg.identity, &reg.x25519, CHAIN, &chain.genesis().hash().0, &[5; 32]);
    assert_eq!(q.report_data, expected);
    assert_eq!((reg.identity, reg.x25519), (e.id(), e.x25519_public()));
}

fn ed25519_public_of_seed(seed: [u8; 32]) -> [u8; 32] {
    umbra_crypto::Keypair::from_seed(seed).address().0
}

#[test]
fn the_benchmark_is_measured_once_sealed_and_reported_on_registration_only() {
    assert_eq!(crate::econ::score_of(64, 1_000_000), 64, "64 MiB in a second");
    assert_eq!(crate::econ::score_of(64, 0), 64_000_000, "no time measured counts as a microsecond");
    assert_eq!(crate::econ::score_of(1, u128::MAX), 1, "at least 1");
    assert_eq!(crate::econ::run_workload(2), crate::econ::run_workload(2), "the workload is fixed");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::new();
    let mut e = worker(&chain, dir.path(), 0);
    let score = e.benchmark_score();
    assert!(score >= 1);
    assert!(dir.path().join(crate::econ::BENCH_FILE).exists(), "the score is sealed");
    chain.push(vec![registered(e.id())]);
    let out = apply(&chain, &mut e, chain.height());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].egress.origin, Origin::Worker(e.id()));
    assert_eq!(out[0].egress.payload, EgressPayload::Benchmark { score });
    // A renewal while registered sends nothing more.
    chain.push(vec![registered(e.id())]);
    assert!(apply(&chain, &mut e, chain.height()).is_empty());
    // A restart reads the sealed score back instead of measuring again.
    drop(e);
    let again = Enclave::open(platform(dir.path()), dir.path(), config(&chain, 0)).expect("reopens");
    assert_eq!(again.benchmark_score(), score);
}

#[test]
fn a_heartbeat_challenge_is_answered_with_the_instant_score_and_others_are_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = Chain::new();
    let mut e = worker(&chain, dir.path(), 0);
    let (id, score) = (e.id(), e.benchmark_score());
    chain.push(vec![registered(id)]);
    let first = apply(&chain, &mut e, chain.height());
    let challenge = Hash([9; 32]);
    chain.push(vec![
        (Topic::Worker(id), MessageBody::HeartbeatChallenge { worker: [3; 32], challenge, deadline: 10 }),
        (Topic::Worker(id), MessageBody::HeartbeatChallenge { worker: id, challenge, deadline: 10 }),
    ]);
    let out = apply(&chain, &mut e, chain.height());
    assert_eq!(out.len(), 1, "only the challenge addressed to this worker is answered: {out:?}");
    assert_eq!(out[0].egress.payload, EgressPayload::Heartbeat { challenge, score });
    assert_eq!(out[0].egress.seq, first[0].egress.seq + 1, "the worker's egress sequence continues");
    umbra_crypto::verify(&Address(id), &out[0].egress.signing_bytes(CHAIN), &out[0].signature)
        .expect("signed by the worker identity");
    // The instant score: the short workload re-run, never above the benchmark; the next answer carries it.
    let instant = e.measure_instant();
    assert!((1..=score).contains(&instant), "instant {instant}, benchmark {score}");
    assert_eq!(e.instant_score(), instant);
    let next = Hash([10; 32]);
    chain
        .push(vec![(Topic::Worker(id), MessageBody::HeartbeatChallenge { worker: id, challenge: next, deadline: 20 })]);
    let later = apply(&chain, &mut e, chain.height());
    assert_eq!(later[0].egress.payload, EgressPayload::Heartbeat { challenge: next, score: instant });
    // Handling is deterministic: a second worker state replaying the same batch signs the same bytes.
    let copy = tempfile::tempdir().expect("tempdir");
    for f in ["machine-secret", "worker-keys.sealed", crate::econ::BENCH_FILE] {
        std::fs::copy(dir.path().join(f), copy.path().join(f)).expect("copies");
    }
    let mut twin = worker(&chain, copy.path(), 0);
    let replay = apply(&chain, &mut twin, chain.height() - 1);
    assert_eq!(encode(&replay[1..].to_vec()), encode(&out));
}
