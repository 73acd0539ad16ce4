//! Scenario tests of the agents module: deploy, owner-only changes (refused to anyone else with nothing
//! changed), the version history, ownership transfer, and egress receipt roots from cluster members only.
#![allow(clippy::result_large_err, dead_code)]

use futures::executor::block_on;
use umbra_types::agents::{AgentPolicy, AgentRecord, ReceiptCommit};
use umbra_types::contracts::{CodeKind, code_hash, contract_account, contract_id};
use umbra_types::state_keys::StateKey;
use umbra_types::{Call, EgressPayload, Hash, MessageBody, Topic, TxError};

mod common;
use common::*;

const AGENT_JS: &[u8] = b"export default { async fetch(request, env) { return new Response('v1'); } };";
const AGENT_V2: &[u8] = b"export default { async fetch(request, env) { return new Response('v2'); } };";
const OWNER: usize = 2;
const STRANGER: usize = 3;

fn agent(c: &Chain, id: &[u8; 32]) -> AgentRecord {
    block_on(c.rt.agent(&c.state, id)).expect("readable").expect("an agent")
}

fn commits(c: &Chain, id: &[u8; 32]) -> Vec<ReceiptCommit> {
    c.state
        .0
        .get(&StateKey::AgentReceipts(*id).hash())
        .map(|v| umbra_types::decode(v, v.len()).expect("decodes"))
        .unwrap_or_default()
}

/// Deploys the agent on cluster 7 as `OWNER`; returns its id.
fn deploy_agent(s: &mut Setup) -> [u8; 32] {
    let policy = AgentPolicy { public: true, ..AgentPolicy::default() };
    s.c.ok(OWNER, Call::DeployAgent { code: AGENT_JS.to_vec(), cluster: CLUSTER, salt: b"a".to_vec(), policy });
    let id = contract_id(&s.c.op(OWNER), &code_hash(CodeKind::JavaScript, AGENT_JS), b"a", CLUSTER);
    s.c.extra_holders.push(contract_account(&id));
    id
}

#[test]
fn only_the_owner_changes_an_agent_and_a_refused_change_leaves_everything_as_it_was() {
    let mut s = setup();
    let id = deploy_agent(&mut s);
    let before = agent(&s.c, &id);
    assert_eq!((before.owner, before.versions.len(), before.paused), (s.c.op(OWNER), 1, false));
    assert!(
        s.c.to(Topic::Cluster(CLUSTER))
            .iter()
            .any(|m| matches!(m, MessageBody::AgentUpdated { record, .. } if record.id == id)),
        "the cluster learns the agent"
    );
    let owner = s.c.op(OWNER);
    let refused = [
        Call::UpgradeAgent { agent: id, code: AGENT_V2.to_vec() },
        Call::PauseAgent { agent: id },
        Call::SetAgentPolicy {
            agent: id,
            policy: AgentPolicy { egress_allow: vec!["evil.example".into()], ..before.policy.clone() },
        },
        Call::TransferAgentOwnership { agent: id, new_owner: s.c.op(STRANGER) },
        Call::RemoveAgentSecret { agent: id, name: "X".into() },
    ];
    for call in refused {
        assert_eq!(s.c.fails(STRANGER, call), TxError::NotAgentOwner { owner });
        assert_eq!(agent(&s.c, &id), before, "nothing changed");
    }
    // A bad policy is refused to the owner too.
    let bad = AgentPolicy { max_concurrency: 0, ..AgentPolicy::default() };
    assert!(matches!(
        s.c.fails(OWNER, Call::SetAgentPolicy { agent: id, policy: bad }),
        TxError::ContractPrecondition { .. }
    ));
    assert_eq!(agent(&s.c, &id), before);
}

#[test]
fn upgrades_build_a_version_history_pause_toggles_and_a_new_owner_takes_over() {
    let mut s = setup();
    let id = deploy_agent(&mut s);
    s.c.ok(OWNER, Call::UpgradeAgent { agent: id, code: AGENT_V2.to_vec() });
    let r = agent(&s.c, &id);
    let hashes: Vec<Hash> = r.versions.iter().map(|v| v.code_hash).collect();
    assert_eq!(hashes, [code_hash(CodeKind::JavaScript, AGENT_JS), code_hash(CodeKind::JavaScript, AGENT_V2)]);
    assert!(r.versions[0].height < r.versions[1].height);
    assert!(
        matches!(
            s.c.fails(OWNER, Call::UpgradeAgent { agent: id, code: AGENT_V2.to_vec() }),
            TxError::ContractPrecondition { .. }
        ),
        "the same code twice"
    );
    s.c.ok(OWNER, Call::PauseAgent { agent: id });
    assert!(agent(&s.c, &id).paused);
    assert!(matches!(s.c.fails(OWNER, Call::PauseAgent { agent: id }), TxError::ContractPrecondition { .. }));
    s.c.ok(OWNER, Call::ResumeAgent { agent: id });
    assert!(!agent(&s.c, &id).paused);
    let new_owner = s.c.op(STRANGER);
    s.c.ok(OWNER, Call::TransferAgentOwnership { agent: id, new_owner });
    assert_eq!(s.c.fails(OWNER, Call::PauseAgent { agent: id }), TxError::NotAgentOwner { owner: new_owner });
    s.c.ok(STRANGER, Call::PauseAgent { agent: id });
    assert!(agent(&s.c, &id).paused);
}

#[test]
fn receipt_roots_are_recorded_from_cluster_members_only_and_bad_batches_are_refused() {
    let mut s = setup();
    let id = deploy_agent(&mut s);
    let member = &s.ws[2];
    let outsider = &s.ws[1];
    let batch = |seq: u64, root: u8, count: u32| EgressPayload::AgentReceipts {
        agent: id,
        batch_seq: seq,
        root: Hash([root; 32]),
        count,
    };
    let tx = s.c.carry(member.egress(0, batch(0, 9, 3)));
    let (r, _) = s.c.run(vec![tx]);
    assert_eq!(r[0].error, None);
    let height = s.c.height;
    assert_eq!(
        commits(&s.c, &id),
        [ReceiptCommit { worker: member.id(), batch_seq: 0, root: Hash([9; 32]), count: 3, height }]
    );
    // Refused, each with nothing recorded: no receipts, an unknown agent, a worker outside the cluster, a
    // duplicate.
    let bad = [
        (member, 1, batch(1, 8, 0)),
        (member, 2, EgressPayload::AgentReceipts { agent: [0xee; 32], batch_seq: 1, root: Hash([8; 32]), count: 1 }),
        (outsider, 0, batch(0, 7, 1)),
        (member, 3, batch(0, 9, 3)),
    ];
    for (w, seq, payload) in bad {
        let tx = s.c.carry(w.egress(seq, payload));
        let (r, _) = s.c.run(vec![tx]);
        assert!(matches!(r[0].error, Some(TxError::ContractPrecondition { .. })), "{:?}", r[0].error);
        assert_eq!(commits(&s.c, &id).len(), 1);
    }
    // The next batch appends.
    let tx = s.c.carry(member.egress(4, batch(1, 6, 2)));
    assert_eq!(s.c.run(vec![tx]).0[0].error, None);
    let list = commits(&s.c, &id);
    assert_eq!(list.iter().map(|c| (c.batch_seq, c.count)).collect::<Vec<_>>(), [(0, 3), (1, 2)]);
}
