//! State transfer to a joining member against a synthetic chain: a member's sealed snapshot installed by the
//! joiner after checking it against the chain's recorded roots, then followed by the later commands; and
//! every refusal (tampered, for another worker, requester not a member, root not the chain's).

use crate::contract_tests::{CLUSTER, COUNTER, ID, both, cluster, command, instantiate, report, seal_command};
use crate::enclave::Enclave;
use crate::snapshot::{SnapshotError, SnapshotReply};
use crate::tests::{Keyed, apply, record, registered, worker};
use umbra_types::contracts::{
    CodeKind, CommandRecord, CommandResult, CommandStatus, ContractRecord, code_hash, contract_account,
};
use umbra_types::registry::{EgressPayload, MessageBody, Topic};
use umbra_types::state_keys::StateKey;
use umbra_types::{Address, Hash, encode};

/// The cluster with the counter after `n` commands, and a third worker w3 assigned to it and holding its key.
struct Scene {
    k: Keyed,
    w2: Enclave,
    w3: Enclave,
    roots: Vec<Hash>,
    public: umbra_types::contracts::ContractPublic,
    _d3: tempfile::TempDir,
}

fn scene(n: u64) -> Scene {
    let (mut k, mut w2) = cluster();
    let public = instantiate(&mut k, &mut w2);
    let sender = Address([4; 32]);
    let mut roots = Vec::new();
    for seq in 0..n {
        let sealed = seal_command(&public, 1, &sender, "increment");
        let (a, _) = both(&mut k, &mut w2, command(seq, sender, sealed, 50_000_000));
        roots.push(report(&a).1);
    }
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
    apply(&k.chain, &mut w2, k.chain.height());
    apply(&k.chain, &mut w3, k.chain.height());
    let EgressPayload::ClusterKeys { keys, .. } = &out[0].egress.payload else { panic!("cluster keys: {out:?}") };
    let body =
        MessageBody::ClusterKey { cluster: CLUSTER, key_epoch: 1, public: keys.public, share: keys.shares[0].clone() };
    k.chain.push(vec![(Topic::Worker(id3), body)]);
    for w in [&mut k.g1, &mut w2, &mut w3] {
        apply(&k.chain, w, k.chain.height());
    }
    assert!(w3.replay_request().is_some(), "w3 waits to catch up its cluster");
    Scene { k, w2, w3, roots, public, _d3: d3 }
}

/// The chain's records for the snapshot's checks: members, the contract, its last command's result, and the
/// cluster topic's counter.
fn records(s: &Scene, commands: u64, recorded_root: Hash, topic_next: u64) -> Vec<(StateKey, Vec<u8>)> {
    let member = |id, x| {
        let mut r = record(id, x, None);
        r.cluster = Some(CLUSTER);
        r.expires_at = 2_000_000;
        r
    };
    let code = s.w2.status().contracts[&hex::encode(ID)].clone();
    assert!(code.commands >= commands);
    let contract = ContractRecord {
        id: ID,
        code_hash: code_hash(CodeKind::JavaScript, COUNTER.as_bytes()),
        kind: CodeKind::JavaScript,
        cluster: CLUSTER,
        deployer: Address([9; 32]),
        instantiated_at: 1,
        account: contract_account(&ID),
        keys: Vec::new(),
        commands,
        reported: commands,
        state_root: Some(recorded_root),
        incidents: 0,
        stored_bytes: 0,
        storage_deposit: 0,
        storage_debt: 0,
    };
    let command = CommandRecord {
        sender: Address([4; 32]),
        height: 1,
        key_epoch: 1,
        gas_limit: 50_000_000,
        deposit: 0,
        envelope_hash: Hash::ZERO,
        result: Some(CommandResult {
            status: CommandStatus::Ok,
            gas_used: 1,
            state_root: recorded_root,
            events_hash: Hash::ZERO,
            refund: 0,
            transfers: Vec::new(),
            transfer_error: None,
            reported_at: 2,
        }),
    };
    vec![
        (StateKey::Worker(s.w2.id()), encode(&member(s.w2.id(), s.w2.x25519_public()))),
        (StateKey::Worker(s.w3.id()), encode(&member(s.w3.id(), s.w3.x25519_public()))),
        (StateKey::Contract(ID), encode(&contract)),
        (StateKey::ContractCommand { contract: ID, seq: commands - 1 }, encode(&command)),
        (StateKey::TopicNext(Topic::Cluster(CLUSTER)), encode(&topic_next)),
    ]
}

/// w2's snapshot for w3, requested with w3's proven record.
fn ask(s: &Scene, recs: &[(StateKey, Vec<u8>)]) -> Result<SnapshotReply, SnapshotError> {
    let request = s.w3.snapshot_request(s.k.chain.value(recs, &StateKey::Worker(s.w3.id()))).expect("in a cluster");
    s.w2.snapshot_view().answer(&request)
}

fn install(s: &mut Scene, reply: &SnapshotReply, recs: &[(StateKey, Vec<u8>)]) -> Result<usize, SnapshotError> {
    let keys = s.w3.snapshot_keys(reply)?;
    let values: Vec<_> = keys.iter().map(|k| (k.clone(), s.k.chain.value(recs, k))).collect();
    let batches = if reply.height < s.w3.height() {
        vec![s.k.chain.sync(reply.height + 1, s.w3.height(), &[Topic::Cluster(CLUSTER)])]
    } else {
        Vec::new()
    };
    s.w3.install_snapshot(reply, &values, &batches)
}

#[test]
fn a_joiner_installs_a_members_snapshot_checked_against_the_chain_and_runs_the_later_commands_identically() {
    let mut s = scene(2);
    // 1 instantiation and 2 commands on the cluster topic so far.
    let recs = records(&s, 2, s.roots[1], 3);
    let reply = ask(&s, &recs).expect("the member answers a member of its cluster");
    // A later command the joiner gets from the chain after the snapshot's block.
    let public = s.public;
    let sealed = seal_command(&public, 1, &Address([4; 32]), "increment");
    let (a, _) = both(&mut s.k, &mut s.w2, command(2, Address([4; 32]), sealed, 50_000_000));
    apply(&s.k.chain, &mut s.w3, s.k.chain.height());
    let recs = records(&s, 2, s.roots[1], 4);
    assert_eq!(install(&mut s, &reply, &recs).expect("installs"), 1);
    assert_eq!(s.w3.replay_request(), None, "caught up: nothing to replay");
    let id = hex::encode(ID);
    let (theirs, ours) = (&s.w2.status().contracts[&id], &s.w3.status().contracts[&id]);
    assert_eq!((ours.commands, ours.state_root), (3, report(&a).1), "the later command ran on the snapshot");
    assert_eq!(ours, theirs);
    // It then follows the topic live, to byte-identical reports.
    let sealed = seal_command(&public, 1, &Address([4; 32]), "increment");
    s.k.chain.push(vec![(Topic::Cluster(CLUSTER), command(3, Address([4; 32]), sealed, 50_000_000))]);
    let a = apply(&s.k.chain, &mut s.w2, s.k.chain.height());
    let c = apply(&s.k.chain, &mut s.w3, s.k.chain.height());
    assert_eq!(a, c);
}

#[test]
fn a_tampered_snapshot_is_refused_and_changes_nothing() {
    let mut s = scene(2);
    let recs = records(&s, 2, s.roots[1], 3);
    let reply = ask(&s, &recs).expect("answers");
    let before = s.w3.status();
    let mut bad = reply.clone();
    let n = bad.sealed.len();
    bad.sealed[n - 5] ^= 1;
    let e = install(&mut s, &bad, &recs).expect_err("refused");
    assert!(matches!(e, SnapshotError::BadSignature(_)), "{e}");
    // A signature that is not the member's.
    let mut forged = reply.clone();
    forged.signature[0] ^= 1;
    assert!(matches!(install(&mut s, &forged, &recs), Err(SnapshotError::BadSignature(_))));
    assert_eq!(s.w3.status(), before, "a refused snapshot changes nothing");
    assert!(s.w3.replay_request().is_some());
    install(&mut s, &reply, &recs).expect("the honest one installs");
}

#[test]
fn a_snapshot_sealed_for_another_worker_is_refused() {
    let mut s = scene(1);
    let recs = records(&s, 1, s.roots[0], 2);
    let reply = ask(&s, &recs).expect("answers");
    // The reply names w3: given to w2 (another member, not waiting), or relabelled for another joiner.
    let mut other = reply.clone();
    other.joiner = [0x77; 32];
    let e = install(&mut s, &other, &recs).expect_err("refused");
    assert!(matches!(e, SnapshotError::NotForMe { .. }), "{e}");
    // Sealed to another key but signed for w3 (a member sealing to a key not w3's): does not open.
    let view = s.w2.snapshot_view();
    let plain = view.plain().expect("plain");
    let signer = view.identity.clone();
    let wrong = crate::snapshot::seal_reply(crate::tests::CHAIN, &signer, s.w3.id(), &[9; 32], &plain).expect("seals");
    let e = install(&mut s, &wrong, &recs).expect_err("refused");
    assert!(matches!(e, SnapshotError::Envelope(_)), "{e}");
}

#[test]
fn a_requester_that_is_not_an_active_member_of_the_cluster_gets_no_snapshot() {
    let s = scene(1);
    let mut recs = records(&s, 1, s.roots[0], 2);
    let w3 = StateKey::Worker(s.w3.id());
    for (change, why) in [
        (Box::new(|r: &mut umbra_types::WorkerRecord| r.cluster = Some(CLUSTER + 1)) as Box<dyn Fn(&mut _)>, "cluster"),
        (Box::new(|r: &mut umbra_types::WorkerRecord| r.cluster = None), "cluster"),
        (Box::new(|r: &mut umbra_types::WorkerRecord| r.revoked = Some("bad quote".into())), "revoked"),
        (Box::new(|r: &mut umbra_types::WorkerRecord| r.expires_at = 10), "expired"),
    ] {
        let mut r = record(s.w3.id(), s.w3.x25519_public(), None);
        r.cluster = Some(CLUSTER);
        r.expires_at = 2_000_000;
        change(&mut r);
        recs.retain(|(k, _)| *k != w3);
        recs.push((w3.clone(), encode(&r)));
        let e = ask(&s, &recs).expect_err("refused");
        assert!(matches!(e, SnapshotError::NotAMember { .. }) && e.to_string().contains(why), "{e}");
    }
    // Not registered at all.
    recs.retain(|(k, _)| *k != w3);
    let e = ask(&s, &recs).expect_err("refused");
    assert!(e.to_string().contains("no registration record"), "{e}");
    // A request whose signature is not the requester's.
    let mut request = s.w3.snapshot_request(s.k.chain.value(&recs, &w3)).expect("request");
    request.requester = Hash(s.w2.id());
    let e = s.w2.snapshot_view().answer(&request).expect_err("refused");
    assert!(matches!(e, SnapshotError::BadSignature("request")), "{e}");
}

#[test]
fn a_snapshot_whose_root_is_not_the_chains_or_whose_last_command_is_unreported_is_refused() {
    let mut s = scene(2);
    let recs = records(&s, 2, s.roots[1], 3);
    let reply = ask(&s, &recs).expect("answers");
    // The chain recorded another root after command 1 (the member's state is not the majority's).
    let wrong = records(&s, 2, Hash([0xee; 32]), 3);
    let e = install(&mut s, &reply, &wrong).expect_err("refused");
    assert!(matches!(e, SnapshotError::RootMismatch { seq: 1, .. }), "{e}");
    // Not reported yet: try again later.
    let mut unreported = recs.clone();
    let key = StateKey::ContractCommand { contract: ID, seq: 1 };
    let mut cmd: CommandRecord =
        umbra_types::decode(&unreported.iter().find(|(k, _)| *k == key).expect("cmd").1, 4096).expect("decodes");
    cmd.result = None;
    unreported.retain(|(k, _)| *k != key);
    unreported.push((key, encode(&cmd)));
    let e = install(&mut s, &reply, &unreported).expect_err("refused");
    assert!(matches!(e, SnapshotError::NotReported { seq: 1, .. }), "{e}");
    // Code other than the chain's.
    let mut other_code = recs.clone();
    let mut rec: ContractRecord =
        umbra_types::decode(&other_code.iter().find(|(k, _)| *k == StateKey::Contract(ID)).expect("rec").1, 4096)
            .expect("decodes");
    rec.code_hash = Hash([1; 32]);
    other_code.retain(|(k, _)| *k != StateKey::Contract(ID));
    other_code.push((StateKey::Contract(ID), encode(&rec)));
    let e = install(&mut s, &reply, &other_code).expect_err("refused");
    assert!(matches!(e, SnapshotError::Inconsistent { .. }) && e.to_string().contains("code"), "{e}");
    assert!(s.w3.replay_request().is_some(), "still waiting, nothing installed");
    install(&mut s, &reply, &recs).expect("the verified one installs");
}

#[test]
fn arbitrary_bytes_to_the_members_endpoint_or_as_a_reply_are_refused_without_panicking() {
    let s = scene(1);
    let service = crate::snapshot::SnapshotService::new();
    service.update(s.w2.snapshot_view());
    let recs = records(&s, 1, s.roots[0], 2);
    let request = s.w3.snapshot_request(s.k.chain.value(&recs, &StateKey::Worker(s.w3.id()))).expect("request");
    let good = serde_json::to_vec(&request).expect("json");
    let reply = umbra_types::encode(&ask(&s, &recs).expect("answers"));
    // A seeded LCG (deterministic): which bytes to change, and to what.
    let mut x: u64 = 5;
    let mut next = |below: usize| {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((x >> 33) as usize) % below.max(1)
    };
    for round in 0..300 {
        let (mut req, mut rep) = (good.clone(), reply.clone());
        for _ in 0..1 + next(8) {
            let (i, j) = (next(req.len()), next(rep.len()));
            req[i] = next(256) as u8;
            rep[j] = next(256) as u8;
        }
        if round % 3 == 0 {
            req.truncate(next(req.len()));
            rep.truncate(next(rep.len()));
        }
        let _ = service.answer(&req);
        if rep != reply
            && let Ok(r) = umbra_types::decode::<SnapshotReply>(&rep, crate::snapshot::MAX_SNAPSHOT_BYTES)
        {
            assert!(s.w3.snapshot_keys(&r).is_err(), "every byte of a reply is signed or is the signature");
        }
    }
    assert!(service.answer(&good).is_ok(), "the service still answers");
}
