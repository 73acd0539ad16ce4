//! Contract execution in the enclave: two members of a cluster run the same sealed commands to byte-identical
//! reports, refuse what does not open, survive a contract that loops forever, report a differing root, and
//! answer sealed, signed queries.

use crate::enclave::Enclave;
use crate::query::{QueryError, QueryService};
use crate::tests::{CHAIN, Keyed, apply, first_gatekeeper, registered, worker};
use rand::SeedableRng as _;
use umbra_crypto::{Keypair, open_envelope, seal_envelope};
use umbra_types::contracts::{
    CodeKind, CommandPlain, CommandStatus, ContractId, ContractPublic, LABEL_COMMAND, LABEL_QUERY, LABEL_QUERY_ANSWER,
    QueryAnswer, QueryCaller, QueryPlain, QueryReply, command_aad, query_caller_bytes, query_reply_bytes,
};
use umbra_types::registry::{ClusterId, EgressPayload, MessageBody, Origin, SignedEgress, Topic};
use umbra_types::{Address, Hash, decode, encode, sha256};

pub(crate) const COUNTER: &str = r#"
export function increment() {
    const n = (umbra.storage.getJson("n") ?? 0) + 1;
    umbra.storage.setJson("n", n);
    umbra.emit("incremented", n);
    return n;
}
export function get() { return umbra.storage.getJson("n") ?? 0; }
export function spin() { for (;;) {} }
"#;
pub(crate) const CLUSTER: ClusterId = 7;
pub(crate) const ID: ContractId = [0xc0; 32];

/// g1 (gatekeeper and member) and w2 (member) of cluster 7, both holding its key and following its topic.
pub(crate) fn cluster() -> (Keyed, Enclave) {
    let mut k = first_gatekeeper();
    let d2 = tempfile::tempdir().expect("tempdir");
    let mut w2 = worker(&k.chain, d2.path(), 0);
    k._dirs.push(d2);
    let members = vec![(k.g1.id(), k.g1.x25519_public()), (w2.id(), w2.x25519_public())];
    k.chain.push(vec![registered(w2.id())]);
    let mut bodies = Vec::new();
    for (id, _) in &members {
        bodies.push((Topic::Worker(*id), MessageBody::AssignedToCluster { worker: *id, cluster: CLUSTER }));
    }
    bodies.push((
        Topic::Gatekeepers,
        MessageBody::ClusterKeyRequest { cluster: CLUSTER, key_epoch: 1, members: members.clone() },
    ));
    k.chain.push(bodies);
    let out = apply(&k.chain, &mut k.g1, k.chain.height());
    apply(&k.chain, &mut w2, k.chain.height());
    let EgressPayload::ClusterKeys { keys, .. } = &out[0].egress.payload else { panic!("cluster keys: {out:?}") };
    let bodies = keys
        .shares
        .iter()
        .map(|s| {
            let body =
                MessageBody::ClusterKey { cluster: CLUSTER, key_epoch: 1, public: keys.public, share: s.clone() };
            (Topic::Worker(s.to), body)
        })
        .collect();
    k.chain.push(bodies);
    apply(&k.chain, &mut k.g1, k.chain.height());
    apply(&k.chain, &mut w2, k.chain.height());
    k.g1.follow_topic(Topic::Cluster(CLUSTER), 0);
    w2.follow_topic(Topic::Cluster(CLUSTER), 0);
    (k, w2)
}

/// Pushes `body` to the cluster's topic and applies it to both members; returns their egress.
pub(crate) fn both(k: &mut Keyed, w2: &mut Enclave, body: MessageBody) -> (Vec<SignedEgress>, Vec<SignedEgress>) {
    k.chain.push(vec![(Topic::Cluster(CLUSTER), body)]);
    let a = apply(&k.chain, &mut k.g1, k.chain.height());
    let b = apply(&k.chain, w2, k.chain.height());
    (a, b)
}

pub(crate) fn seal_command(public: &ContractPublic, key_epoch: u64, sender: &Address, method: &str) -> Vec<u8> {
    let plain = CommandPlain { method: method.into(), args: b"{}".to_vec() };
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);
    let aad = command_aad(CHAIN, &ID, key_epoch, sender);
    seal_envelope(&public.x25519, LABEL_COMMAND, &aad, &encode(&plain), &mut rng).expect("seals")
}

pub(crate) fn command(seq: u64, sender: Address, sealed: Vec<u8>, gas_limit: u64) -> MessageBody {
    MessageBody::ContractCommand { contract: ID, seq, sender, key_epoch: 1, gas_limit, sealed, time_ms: 5_000 }
}

pub(crate) fn report(out: &[SignedEgress]) -> (CommandStatus, Hash) {
    match out.iter().find(|e| e.egress.origin == Origin::Contract(ID)).map(|e| &e.egress.payload) {
        Some(EgressPayload::ContractReport { status, state_root, .. }) => (status.clone(), *state_root),
        other => panic!("expected a contract report, got {other:?}"),
    }
}

pub(crate) fn instantiate(k: &mut Keyed, w2: &mut Enclave) -> ContractPublic {
    let body = MessageBody::ContractInstantiated {
        contract: ID,
        kind: CodeKind::JavaScript,
        code: COUNTER.as_bytes().to_vec(),
        deployer: Address([9; 32]),
        args: vec![],
        time_ms: 4_000,
    };
    let (a, b) = both(k, w2, body);
    assert_eq!(a, b, "both members publish byte-identical contract keys");
    assert_eq!(a[0].egress.origin, Origin::Cluster(CLUSTER));
    assert_eq!(a[0].egress.seq, 0);
    let EgressPayload::ContractKeys { public, key_epoch: 1, .. } = a[0].egress.payload else {
        panic!("contract keys: {a:?}")
    };
    public
}

#[test]
fn two_members_run_sealed_commands_to_identical_reports_signed_by_the_contract() {
    let (mut k, mut w2) = cluster();
    let public = instantiate(&mut k, &mut w2);
    let sender = Address([4; 32]);
    let mut roots = Vec::new();
    for seq in 0..3 {
        let sealed = seal_command(&public, 1, &sender, "increment");
        assert!(!sealed.windows(9).any(|w| w == b"increment"), "the envelope hides the method");
        let (a, b) = both(&mut k, &mut w2, command(seq, sender, sealed, 50_000_000));
        assert_eq!(a, b, "reports are byte-identical");
        assert_eq!(a[0].egress.seq, seq, "the report's sequence is the command's number");
        umbra_crypto::verify(&Address(public.ed25519), &a[0].egress.signing_bytes(CHAIN), &a[0].signature)
            .expect("signed with the contract's published key");
        let (status, root) = report(&a);
        assert_eq!(status, CommandStatus::Ok);
        roots.push(root);
    }
    assert_ne!(roots[0], roots[2]);
    let id = hex::encode(ID);
    assert_eq!(k.g1.status().contracts[&id].state_root, roots[2]);
    assert_eq!(w2.status().contracts[&id].commands, 3);
}

#[test]
fn a_wrong_key_command_fails_with_a_reason_and_a_looping_one_runs_out_of_gas_without_stopping_the_worker() {
    let (mut k, mut w2) = cluster();
    let public = instantiate(&mut k, &mut w2);
    let sender = Address([4; 32]);
    // Sealed to another epoch's AAD: does not open.
    let (a, _) = both(&mut k, &mut w2, command(0, sender, seal_command(&public, 2, &sender, "increment"), 1_000_000));
    let (status, _) = report(&a);
    assert!(matches!(&status, CommandStatus::Failed { reason } if reason.contains("does not open")), "{status:?}");
    // Replayed under another sender's name: does not open either.
    let other = Address([5; 32]);
    let (a, _) = both(&mut k, &mut w2, command(1, other, seal_command(&public, 1, &sender, "increment"), 1_000_000));
    assert!(matches!(report(&a).0, CommandStatus::Failed { .. }));
    let (a, b) = both(&mut k, &mut w2, command(2, sender, seal_command(&public, 1, &sender, "spin"), 2_000_000));
    assert_eq!(a, b);
    assert!(matches!(&report(&a).0, CommandStatus::Failed { reason } if reason.contains("out of gas")));
    let EgressPayload::ContractReport { gas_used, .. } = &a[0].egress.payload else { panic!() };
    assert_eq!(*gas_used, 2_000_000);
    let (a, _) = both(&mut k, &mut w2, command(3, sender, seal_command(&public, 1, &sender, "increment"), 50_000_000));
    assert_eq!(report(&a).0, CommandStatus::Ok, "the worker keeps running commands");
}

#[test]
fn a_recorded_root_other_than_ours_makes_an_incident() {
    let (mut k, mut w2) = cluster();
    let public = instantiate(&mut k, &mut w2);
    let sender = Address([4; 32]);
    let (a, _) = both(&mut k, &mut w2, command(0, sender, seal_command(&public, 1, &sender, "increment"), 50_000_000));
    let (_, ours) = report(&a);
    let (a, _) = both(&mut k, &mut w2, MessageBody::ContractResult { contract: ID, seq: 0, state_root: ours });
    assert!(a.is_empty(), "an agreeing root says nothing");
    let (a, b) = both(&mut k, &mut w2, MessageBody::ContractResult { contract: ID, seq: 0, state_root: Hash([1; 32]) });
    for (out, who) in [(&a, k.g1.id()), (&b, w2.id())] {
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].egress.origin, Origin::Worker(who));
        assert_eq!(out[0].egress.payload, EgressPayload::ContractIncident { contract: ID, seq: 0, state_root: ours });
    }
}

fn seal_query(w: &Enclave, method: &str, reply: &[u8; 32], caller: Option<&Keypair>) -> Vec<u8> {
    let mut q = QueryPlain {
        contract: ID,
        method: method.into(),
        args: vec![],
        reply_to: umbra_crypto::x25519_public(reply),
        nonce: [1; 16],
        caller: None,
    };
    if let Some(kp) = caller {
        let signature = kp.sign(&query_caller_bytes(CHAIN, &q));
        q.caller = Some(QueryCaller { address: kp.address(), signature });
    }
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([8; 32]);
    seal_envelope(&w.x25519_public(), LABEL_QUERY, CHAIN.as_bytes(), &encode(&q), &mut rng).expect("seals")
}

#[test]
fn a_sealed_query_returns_the_count_signed_by_the_worker_and_a_tampered_one_is_refused() {
    let (mut k, mut w2) = cluster();
    let public = instantiate(&mut k, &mut w2);
    let sender = Address([4; 32]);
    for seq in 0..2 {
        both(&mut k, &mut w2, command(seq, sender, seal_command(&public, 1, &sender, "increment"), 50_000_000));
    }
    let service = QueryService::start().expect("query engine");
    service.update(w2.query_view());
    let reply_secret = [6; 32];
    let caller = Keypair::from_seed([2; 32]);
    let envelope = seal_query(&w2, "get", &reply_secret, Some(&caller));
    let reply: QueryReply = decode(&service.answer(&envelope).expect("answers"), 1 << 20).expect("decodes");
    assert_eq!(reply.worker, w2.id());
    let request_hash = sha256(&[&envelope]);
    umbra_crypto::verify(&Address(w2.id()), &query_reply_bytes(&request_hash, &reply.sealed), &reply.signature)
        .expect("signed by the worker");
    let plain = open_envelope(&reply_secret, LABEL_QUERY_ANSWER, &request_hash.0, &reply.sealed).expect("opens");
    let answer: QueryAnswer = decode(&plain, 1 << 20).expect("decodes");
    assert_eq!(answer.result, Ok(b"2".to_vec()));
    assert_eq!(answer.state_root, w2.status().contracts[&hex::encode(ID)].state_root);

    let mut tampered = envelope.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(matches!(service.answer(&tampered), Err(QueryError::Envelope(_))));
    // A query never changes state.
    let spin = seal_query(&w2, "increment", &reply_secret, None);
    service.answer(&spin).expect("answers");
    let again: QueryReply = decode(&service.answer(&envelope).expect("answers"), 1 << 20).expect("decodes");
    let plain = open_envelope(&reply_secret, LABEL_QUERY_ANSWER, &request_hash.0, &again.sealed).expect("opens");
    assert_eq!(decode::<QueryAnswer>(&plain, 1 << 20).expect("decodes").result, Ok(b"2".to_vec()));
}

#[test]
fn a_member_joining_later_replays_the_clusters_history_to_the_same_root_and_a_gap_is_refused() {
    let (mut k, mut w2) = cluster();
    let public = instantiate(&mut k, &mut w2);
    let sender = Address([4; 32]);
    let mut last = Hash::ZERO;
    for seq in 0..3 {
        let sealed = seal_command(&public, 1, &sender, "increment");
        let (a, _) = both(&mut k, &mut w2, command(seq, sender, sealed, 50_000_000));
        last = report(&a).1;
    }
    // w3 joins: assigned, then handed the cluster key by the gatekeeper (g1).
    let d3 = tempfile::tempdir().expect("tempdir");
    let mut w3 = worker(&k.chain, d3.path(), 0);
    let (id3, x3) = (w3.id(), w3.x25519_public());
    k.chain.push(vec![
        registered(id3),
        (Topic::Worker(id3), MessageBody::AssignedToCluster { worker: id3, cluster: CLUSTER }),
        (
            Topic::Gatekeepers,
            MessageBody::ClusterKeyRequest { cluster: CLUSTER, key_epoch: 1, members: vec![(id3, x3)] },
        ),
    ]);
    let out = apply(&k.chain, &mut k.g1, k.chain.height());
    apply(&k.chain, &mut w3, k.chain.height());
    assert_eq!(w3.replay_request(), None, "the replay waits for the cluster key");
    let EgressPayload::ClusterKeys { keys, .. } = &out[0].egress.payload else { panic!("cluster keys: {out:?}") };
    let body =
        MessageBody::ClusterKey { cluster: CLUSTER, key_epoch: 1, public: keys.public, share: keys.shares[0].clone() };
    k.chain.push(vec![(Topic::Worker(id3), body)]);
    apply(&k.chain, &mut w3, k.chain.height());
    let (topic, upto) = w3.replay_request().expect("the joined cluster's topic waits for a replay");
    assert_eq!((topic, upto), (Topic::Cluster(CLUSTER), k.chain.height()));
    // A history with a message left out is refused and changes nothing.
    let mut gappy = k.chain.sync(1, upto, &[topic]);
    let with = gappy
        .blocks
        .iter()
        .position(|b| {
            b.messages.len() == 1 && matches!(b.messages[0].message.body, MessageBody::ContractCommand { seq: 1, .. })
        })
        .expect("command 1");
    gappy.blocks[with].messages.clear();
    assert!(w3.replay(topic, &[gappy]).is_err());
    assert!(w3.replay_request().is_some());
    assert_eq!(w3.replay(topic, &[k.chain.sync(1, upto, &[topic])]).expect("replays"), 4);
    assert_eq!(w3.replay_request(), None);
    let id = hex::encode(ID);
    assert_eq!(w3.status().contracts[&id].state_root, last, "the same root as the members that ran it live");
    assert_eq!(w3.status().contracts[&id].commands, 3);
    // It then follows the topic live like the others.
    let sealed = seal_command(&public, 1, &sender, "increment");
    k.chain.push(vec![(Topic::Cluster(CLUSTER), command(3, sender, sealed, 50_000_000))]);
    let a = apply(&k.chain, &mut w2, k.chain.height());
    let c = apply(&k.chain, &mut w3, k.chain.height());
    assert_eq!(a, c, "the late member's report is byte-identical");
}

// ---- calls between contracts, events, key rotation ----

const PROXY: &str = r#"
export function bump(a) { const n = umbra.callJson(a.target, "increment", {}); umbra.storage.setJson("last", n); return n; }
export function bumpThenThrow(a) { umbra.call(a.target, "increment", {}); throw new Error("changed my mind"); }
export function bumpCaught(a) { try { umbra.call(a.target, "spin", {}); } catch (e) {} umbra.storage.setJson("after", 1); }
export function forever(a) { return umbra.callJson(umbra.self, "forever", a); }
export function elsewhere(a) { return umbra.call("ab".repeat(32), "get", {}); }
"#;
const PROXY_ID: ContractId = [0xd1; 32];

fn seal_to(id: &ContractId, public: &ContractPublic, sender: &Address, method: &str, args: &str) -> Vec<u8> {
    let plain = CommandPlain { method: method.into(), args: args.as_bytes().to_vec() };
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);
    let aad = command_aad(CHAIN, id, 1, sender);
    seal_envelope(&public.x25519, LABEL_COMMAND, &aad, &encode(&plain), &mut rng).expect("seals")
}

fn command_to(id: ContractId, seq: u64, sender: Address, sealed: Vec<u8>) -> MessageBody {
    MessageBody::ContractCommand {
        contract: id,
        seq,
        sender,
        key_epoch: 1,
        gas_limit: 200_000_000,
        sealed,
        time_ms: 5_000,
    }
}

fn report_of(out: &[SignedEgress], id: ContractId) -> (CommandStatus, Hash) {
    match out.iter().find(|e| e.egress.origin == Origin::Contract(id)).map(|e| &e.egress.payload) {
        Some(EgressPayload::ContractReport { status, state_root, .. }) => (status.clone(), *state_root),
        other => panic!("expected a report of {}, got {other:?}", Hash(id)),
    }
}

fn roots(w: &Enclave) -> Vec<(String, Hash)> {
    w.status().contracts.into_iter().map(|(id, c)| (id, c.state_root)).collect()
}

/// The counter (ID) and a proxy that calls it (PROXY_ID), both on the cluster.
fn counter_and_proxy(k: &mut Keyed, w2: &mut Enclave) -> ContractPublic {
    instantiate(k, w2);
    let body = MessageBody::ContractInstantiated {
        contract: PROXY_ID,
        kind: CodeKind::JavaScript,
        code: PROXY.as_bytes().to_vec(),
        deployer: Address([9; 32]),
        args: vec![],
        time_ms: 4_000,
    };
    let (a, b) = both(k, w2, body);
    assert_eq!(a, b);
    let EgressPayload::ContractKeys { public, .. } = a[0].egress.payload else { panic!("keys: {a:?}") };
    public
}

#[test]
fn a_contract_calls_another_of_its_cluster_and_both_states_change_identically_on_every_member() {
    let (mut k, mut w2) = cluster();
    let proxy = counter_and_proxy(&mut k, &mut w2);
    let sender = Address([4; 32]);
    let target = format!(r#"{{"target":"{}"}}"#, hex::encode(ID));
    let before = roots(&k.g1);
    let (a, b) =
        both(&mut k, &mut w2, command_to(PROXY_ID, 0, sender, seal_to(&PROXY_ID, &proxy, &sender, "bump", &target)));
    assert_eq!(a, b, "byte-identical reports");
    assert_eq!(report_of(&a, PROXY_ID).0, CommandStatus::Ok);
    let after = roots(&k.g1);
    assert_eq!(after, roots(&w2), "identical roots of both contracts on both members");
    assert!(before.iter().zip(&after).all(|(x, y)| x.1 != y.1), "the callee's and the caller's state changed");
    // The callee's event is part of the command's events (hashed in the report).
    let EgressPayload::ContractReport { events_hash, .. } = &a[0].egress.payload else { panic!() };
    let expected = vec![umbra_engine::Event { name: "incremented".into(), data: b"1".to_vec() }];
    assert_eq!(*events_hash, crate::contracts::events_hash(&expected));
}

#[test]
fn a_failing_caller_undoes_its_callees_writes_and_endless_recursion_stops_at_the_depth_limit() {
    let (mut k, mut w2) = cluster();
    let proxy = counter_and_proxy(&mut k, &mut w2);
    let sender = Address([4; 32]);
    let target = format!(r#"{{"target":"{}"}}"#, hex::encode(ID));
    let before = roots(&k.g1);
    let cases: [(&str, &str, &str); 4] = [
        ("bumpThenThrow", target.as_str(), "changed my mind"),
        ("bumpCaught", target.as_str(), "out of gas"),
        ("forever", "{}", "depth"),
        ("elsewhere", "{}", "not run by cluster"),
    ];
    for (seq, (method, args, why)) in cases.iter().enumerate() {
        let sealed = seal_to(&PROXY_ID, &proxy, &sender, method, args);
        let (a, b) = both(&mut k, &mut w2, command_to(PROXY_ID, seq as u64, sender, sealed));
        assert_eq!(a, b);
        let (status, root) = report_of(&a, PROXY_ID);
        assert!(matches!(&status, CommandStatus::Failed { reason } if reason.contains(why)), "{method}: {status:?}");
        assert_eq!(root, before[1].1, "{method}: the caller's root is unchanged");
        assert_eq!(roots(&k.g1), before, "{method}: no contract changed");
        assert_eq!(roots(&w2), before);
    }
    // Both contracts keep working.
    let sealed = seal_to(&PROXY_ID, &proxy, &sender, "bump", &target);
    let (a, _) = both(&mut k, &mut w2, command_to(PROXY_ID, 4, sender, sealed));
    assert_eq!(report_of(&a, PROXY_ID).0, CommandStatus::Ok);
}

fn ask(
    service: &QueryService,
    w: &Enclave,
    method: &str,
    args: &[u8],
    caller: Option<&Keypair>,
) -> Result<Vec<u8>, String> {
    let reply_secret = [6; 32];
    let mut q = QueryPlain {
        contract: ID,
        method: method.into(),
        args: args.to_vec(),
        reply_to: umbra_crypto::x25519_public(&reply_secret),
        nonce: [1; 16],
        caller: None,
    };
    if let Some(kp) = caller {
        let signature = kp.sign(&query_caller_bytes(CHAIN, &q));
        q.caller = Some(QueryCaller { address: kp.address(), signature });
    }
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([8; 32]);
    let envelope =
        seal_envelope(&w.x25519_public(), LABEL_QUERY, CHAIN.as_bytes(), &encode(&q), &mut rng).expect("seals");
    let reply: QueryReply = decode(&service.answer(&envelope).map_err(|e| e.to_string())?, 1 << 20).expect("decodes");
    let plain =
        open_envelope(&reply_secret, LABEL_QUERY_ANSWER, &sha256(&[&envelope]).0, &reply.sealed).expect("opens");
    decode::<QueryAnswer>(&plain, 1 << 20).expect("decodes").result
}

#[test]
fn the_sender_reads_its_commands_events_through_a_signed_query_and_nobody_else_does() {
    let (mut k, mut w2) = cluster();
    let public = instantiate(&mut k, &mut w2);
    let alice = Keypair::from_seed([2; 32]);
    let bob = Keypair::from_seed([3; 32]);
    for (seq, who) in [alice.address(), bob.address(), alice.address()].into_iter().enumerate() {
        both(&mut k, &mut w2, command(seq as u64, who, seal_command(&public, 1, &who, "increment"), 50_000_000));
    }
    let service = QueryService::start().expect("query engine");
    service.update(w2.query_view());
    let out = ask(&service, &w2, crate::query::EVENTS_METHOD, b"{}", Some(&alice)).expect("alice's events");
    let list: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
    assert_eq!(
        list,
        serde_json::json!([
            { "seq": 0, "events": [{ "name": "incremented", "data": hex::encode("1") }], "output": hex::encode("1") },
            { "seq": 2, "events": [{ "name": "incremented", "data": hex::encode("3") }], "output": hex::encode("3") },
        ])
    );
    let out = ask(&service, &w2, crate::query::EVENTS_METHOD, br#"{"from":1}"#, Some(&bob)).expect("bob's events");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out).expect("JSON").as_array().map(Vec::len), Some(1));
    let anonymous = ask(&service, &w2, crate::query::EVENTS_METHOD, b"{}", None).expect_err("refused");
    assert!(anonymous.contains("sign the query"), "{anonymous}");
}

#[test]
fn after_a_key_rotation_every_member_publishes_the_contracts_keys_of_the_new_epoch() {
    let (mut k, mut w2) = cluster();
    counter_and_proxy(&mut k, &mut w2);
    let (g, x) = (k.g1.id(), k.g1.x25519_public());
    let (id2, x2) = (w2.id(), w2.x25519_public());
    k.chain.push(vec![(
        Topic::Gatekeepers,
        MessageBody::RotationStarted {
            new_epoch: 2,
            leader: g,
            gatekeepers: vec![(g, x)],
            clusters: vec![(CLUSTER, vec![(g, x), (id2, x2)])],
        },
    )]);
    let out = apply(&k.chain, &mut k.g1, k.chain.height());
    apply(&k.chain, &mut w2, k.chain.height());
    let EgressPayload::MasterKey { clusters, .. } = &out[0].egress.payload else { panic!("master key: {out:?}") };
    let keys = clusters[0].clone();
    let share = keys.shares.iter().find(|s| s.to == id2).expect("a share for w2").clone();
    k.chain.push(vec![(
        Topic::Worker(id2),
        MessageBody::ClusterKey { cluster: CLUSTER, key_epoch: 2, public: keys.public, share },
    )]);
    apply(&k.chain, &mut k.g1, k.chain.height());
    apply(&k.chain, &mut w2, k.chain.height());
    k.chain.push(vec![(Topic::Broadcast, MessageBody::KeyEpochActivated { key_epoch: 2, retired: Some(1) })]);
    let a: Vec<_> = apply(&k.chain, &mut k.g1, k.chain.height())
        .into_iter()
        .filter(|e| e.egress.origin == Origin::Cluster(CLUSTER))
        .collect();
    let b: Vec<_> = apply(&k.chain, &mut w2, k.chain.height())
        .into_iter()
        .filter(|e| e.egress.origin == Origin::Cluster(CLUSTER))
        .collect();
    assert_eq!(a, b, "both members publish the same keys under the same numbers");
    assert_eq!(a.len(), 2, "one per contract: {a:?}");
    for (i, e) in a.iter().enumerate() {
        assert_eq!(e.egress.seq, 2 + i as u64, "numbered after the two instantiations");
        let EgressPayload::ContractKeys { key_epoch, public, contract } = &e.egress.payload else { panic!() };
        assert_eq!(*key_epoch, 2);
        umbra_crypto::verify(&Address(keys.public.ed25519), &e.egress.signing_bytes(CHAIN), &e.signature)
            .expect("signed with the cluster key of the new epoch");
        // A command sealed to the new key runs; its report is signed with the new contract key.
        if *contract == ID {
            let sender = Address([4; 32]);
            let plain = CommandPlain { method: "increment".into(), args: vec![] };
            let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);
            let aad = command_aad(CHAIN, &ID, 2, &sender);
            let sealed = seal_envelope(&public.x25519, LABEL_COMMAND, &aad, &encode(&plain), &mut rng).expect("seals");
            let body = MessageBody::ContractCommand {
                contract: ID,
                seq: 0,
                sender,
                key_epoch: 2,
                gas_limit: 50_000_000,
                sealed,
                time_ms: 6_000,
            };
            let (ra, rb) = both(&mut k, &mut w2, body);
            assert_eq!(ra, rb);
            assert_eq!(report(&ra).0, CommandStatus::Ok);
            umbra_crypto::verify(&Address(public.ed25519), &ra[0].egress.signing_bytes(CHAIN), &ra[0].signature)
                .expect("the report is signed with the contract's key of epoch 2");
        }
    }
}

/// Builds `examples/contracts/counter.c` with `scripts/build-examples.sh` (clang and lld must be installed:
/// `.ci/run` installs them).
fn c_counter() -> Vec<u8> {
    let root =
        std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
            .join("../..");
    let out = tempfile::tempdir().expect("tempdir");
    let run = std::process::Command::new(root.join("scripts/build-examples.sh"))
        .arg(out.path())
        .output()
        .expect("scripts/build-examples.sh runs");
    assert!(
        run.status.success(),
        "building the C example failed (install clang and lld: apt-get install -y clang lld): {}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::read(out.path().join("counter.wasm")).expect("the script wrote counter.wasm")
}

#[test]
fn the_c_counter_compiled_by_clang_counts_identically_on_both_members() {
    let (mut k, mut w2) = cluster();
    let body = MessageBody::ContractInstantiated {
        contract: ID,
        kind: CodeKind::Wasm,
        code: c_counter(),
        deployer: Address([9; 32]),
        args: vec![],
        time_ms: 4_000,
    };
    let (a, b) = both(&mut k, &mut w2, body);
    assert_eq!(a, b);
    let EgressPayload::ContractKeys { public, .. } = a[0].egress.payload else { panic!("keys: {a:?}") };
    let sender = Address([4; 32]);
    for seq in 0..3 {
        let (a, b) =
            both(&mut k, &mut w2, command(seq, sender, seal_command(&public, 1, &sender, "increment"), 10_000_000));
        assert_eq!(a, b, "byte-identical reports");
        assert_eq!(report(&a).0, CommandStatus::Ok);
    }
    let service = QueryService::start().expect("query engine");
    service.update(w2.query_view());
    assert_eq!(ask(&service, &w2, "get", b"", None), Ok(b"3".to_vec()));
    assert!(ask(&service, &w2, "missing", b"", None).expect_err("no such method").contains("missing"));
}
