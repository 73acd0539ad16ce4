//! Scenario tests of owners other than a single account: a 2-of-3 multisig that owns an agent and holds funds
//! (proposals, approvals, expiry, cancel, no nesting), and an agent owned by governance, changed only by an
//! enacted proposal.
#![allow(clippy::result_large_err, dead_code)]

use futures::executor::block_on;
use umbra_types::agents::{AgentPolicy, AgentRecord};
use umbra_types::contracts::{CodeKind, code_hash, contract_account, contract_id};
use umbra_types::governance::{GovCall, ProposalStatus, VoteChoice, governance_owner};
use umbra_types::multisig::{MultisigRecord, multisig_address};
use umbra_types::{Address, Call, Params, TxError, UNIT};

mod common;
use common::*;

const AGENT_JS: &[u8] = b"export default { async fetch(request, env) { return new Response('v1'); } };";
const OWNER: usize = 2;
/// The members of the multisig (threshold 2).
const A: usize = 1;
const B: usize = 3;
const C: usize = 4;
const OUTSIDER: usize = 5;

fn agent(c: &Chain, id: &[u8; 32]) -> AgentRecord {
    block_on(c.rt.agent(&c.state, id)).expect("readable").expect("an agent")
}

fn members(c: &Chain) -> Vec<Address> {
    vec![c.op(A), c.op(B), c.op(C)]
}

fn msig(c: &Chain) -> Address {
    multisig_address(&members(c), 2)
}

fn record(c: &Chain) -> Option<MultisigRecord> {
    block_on(c.rt.multisig(&c.state, &msig(c))).expect("readable")
}

fn propose(c: &Chain, call: Call, expires_in: u64) -> Call {
    Call::MultisigPropose { members: members(c), threshold: 2, call: Box::new(call), expires_in }
}

fn approve(c: &Chain, op: u64) -> Call {
    Call::MultisigApprove { multisig: msig(c), op }
}

fn balance(c: &Chain, a: &Address) -> u128 {
    block_on(c.rt.account(&c.state, a)).expect("readable").balance
}

/// Deploys the agent on cluster 7 as `OWNER`; returns its id.
fn deploy_agent(s: &mut Setup) -> [u8; 32] {
    let policy = AgentPolicy { public: true, ..AgentPolicy::default() };
    s.c.ok(OWNER, Call::DeployAgent { code: AGENT_JS.to_vec(), cluster: CLUSTER, salt: b"a".to_vec(), policy });
    let id = contract_id(&s.c.op(OWNER), &code_hash(CodeKind::JavaScript, AGENT_JS), b"a", CLUSTER);
    s.c.extra_holders.push(contract_account(&id));
    id
}

/// A chain whose multisig address is counted in the supply check.
fn multisig_setup(params: Params) -> Setup {
    let mut s = setup_with(params);
    let m = msig(&s.c);
    s.c.extra_holders.push(m);
    s
}

#[test]
fn a_two_of_three_multisig_owner_pauses_an_agent_only_after_the_second_approval() {
    let mut s = multisig_setup(Params::default());
    let id = deploy_agent(&mut s);
    let m = msig(&s.c);
    s.c.ok(OWNER, Call::TransferAgentOwnership { agent: id, new_owner: m });
    assert_eq!(agent(&s.c, &id).owner, m);
    // The old single owner can no longer act.
    assert_eq!(s.c.fails(OWNER, Call::PauseAgent { agent: id }), TxError::NotAgentOwner { owner: m });
    // A non-member can neither propose nor approve.
    let call = propose(&s.c, Call::PauseAgent { agent: id }, 100);
    assert_eq!(s.c.fails(OUTSIDER, call.clone()), TxError::NotMultisigMember { multisig: m, signer: s.c.op(OUTSIDER) });
    assert_eq!(record(&s.c), None, "a refused proposal records nothing");
    // The first approval (the proposal) does nothing to the agent.
    s.c.ok(A, call);
    let rec = record(&s.c).expect("the multisig is known on chain");
    assert_eq!((rec.members.len(), rec.threshold, rec.pending.clone()), (3, 2, vec![0]));
    assert!(!agent(&s.c, &id).paused, "one approval of two pauses nothing");
    let op = block_on(s.c.rt.multisig_op(&s.c.state, &m, 0)).expect("readable").expect("pending");
    assert_eq!(op.approvals, vec![s.c.op(A)]);
    let outsider = approve(&s.c, 0);
    assert_eq!(s.c.fails(OUTSIDER, outsider), TxError::NotMultisigMember { multisig: m, signer: s.c.op(OUTSIDER) });
    assert_eq!(s.c.fails(A, approve(&s.c, 0)), TxError::AlreadyApproved, "approving twice counts once");
    assert!(!agent(&s.c, &id).paused);
    // The second member's approval runs the pause as the multisig.
    s.c.ok(B, approve(&s.c, 0));
    assert!(agent(&s.c, &id).paused, "paused after the second approval");
    assert_eq!(record(&s.c).expect("kept").pending, Vec::<u64>::new());
    assert_eq!(s.c.fails(C, approve(&s.c, 0)), TxError::UnknownMultisigOp { multisig: m, op: 0 }, "executed once");
    // Resume the same way, with another pair of members; op numbers are never reused.
    s.c.ok(C, propose(&s.c, Call::ResumeAgent { agent: id }, 100));
    s.c.ok(A, approve(&s.c, 1));
    assert!(!agent(&s.c, &id).paused);
}

#[test]
fn a_multisig_moves_its_own_funds_only_through_an_executed_transfer() {
    let mut s = multisig_setup(Params::default());
    let m = msig(&s.c);
    let to = s.c.op(OUTSIDER);
    s.c.ok(SUDO, Call::Transfer { to: m, amount: 10 * UNIT });
    s.c.ok(A, propose(&s.c, Call::Transfer { to, amount: 4 * UNIT }, 100));
    assert_eq!(balance(&s.c, &m), 10 * UNIT, "nothing moves on the proposal");
    let before = balance(&s.c, &to);
    s.c.ok(C, approve(&s.c, 0));
    assert_eq!(balance(&s.c, &m), 6 * UNIT, "the multisig paid; the approver paid only its fee");
    assert_eq!(balance(&s.c, &to), before + 4 * UNIT);
    // An inner call that fails undoes the approval that ran it: the operation stays pending.
    s.c.ok(A, propose(&s.c, Call::Transfer { to, amount: 50 * UNIT }, 100));
    assert_eq!(s.c.fails(B, approve(&s.c, 1)), TxError::InsufficientBalance { needed: 50 * UNIT, available: 6 * UNIT });
    let op = block_on(s.c.rt.multisig_op(&s.c.state, &m, 1)).expect("readable").expect("still pending");
    assert_eq!(op.approvals, vec![s.c.op(A)]);
    s.c.ok(SUDO, Call::Transfer { to: m, amount: 50 * UNIT });
    s.c.ok(B, approve(&s.c, 1));
    assert_eq!(balance(&s.c, &m), 6 * UNIT);
}

#[test]
fn pending_operations_expire_and_only_the_proposer_cancels_before_then() {
    let mut s = multisig_setup(Params::default());
    let m = msig(&s.c);
    s.c.ok(SUDO, Call::Transfer { to: m, amount: 10 * UNIT });
    let to = s.c.op(OUTSIDER);
    s.c.ok(A, propose(&s.c, Call::Transfer { to, amount: UNIT }, 2));
    let expires_at = s.c.height + 2;
    assert!(matches!(s.c.fails(B, Call::MultisigCancel { multisig: m, op: 0 }), TxError::MultisigPrecondition { .. }));
    s.c.run(vec![]);
    assert_eq!(s.c.height, expires_at, "the last block at which it can be approved is next");
    assert_eq!(s.c.fails(B, approve(&s.c, 0)), TxError::MultisigOpExpired { expired_at: expires_at });
    assert_eq!(balance(&s.c, &m), 10 * UNIT, "an expired operation never runs");
    // Once expired any member may drop it.
    s.c.ok(B, Call::MultisigCancel { multisig: m, op: 0 });
    assert_eq!(record(&s.c).expect("kept").pending, Vec::<u64>::new());
    // The proposer cancels its own operation at any time.
    s.c.ok(A, propose(&s.c, Call::Transfer { to, amount: UNIT }, 100));
    s.c.ok(A, Call::MultisigCancel { multisig: m, op: 1 });
    assert_eq!(s.c.fails(B, approve(&s.c, 1)), TxError::UnknownMultisigOp { multisig: m, op: 1 });
    // Expired operations are dropped when a new one is proposed.
    s.c.ok(A, propose(&s.c, Call::Transfer { to, amount: UNIT }, 1));
    s.c.run(vec![]);
    s.c.run(vec![]);
    s.c.ok(C, propose(&s.c, Call::Transfer { to, amount: UNIT }, 100));
    assert_eq!(record(&s.c).expect("kept").pending, vec![3]);
    assert_eq!(block_on(s.c.rt.multisig_op(&s.c.state, &m, 2)).expect("readable"), None);
}

#[test]
fn nested_multisig_calls_egress_and_bad_member_sets_are_refused() {
    let mut s = multisig_setup(Params::default());
    let m = msig(&s.c);
    let nested = propose(&s.c, Call::MultisigApprove { multisig: m, op: 0 }, 100);
    assert!(matches!(s.c.fails(A, nested), TxError::MultisigPrecondition { .. }));
    let inner = propose(&s.c, Call::Transfer { to: s.c.op(OUTSIDER), amount: 1 }, 100);
    let nested_propose = propose(&s.c, inner, 100);
    assert!(matches!(s.c.fails(A, nested_propose), TxError::MultisigPrecondition { .. }));
    let alone = Call::MultisigPropose {
        members: vec![s.c.op(A), s.c.op(A)],
        threshold: 1,
        call: Box::new(Call::Transfer { to: s.c.op(OUTSIDER), amount: 1 }),
        expires_in: 10,
    };
    assert!(matches!(s.c.fails(A, alone), TxError::MultisigPrecondition { .. }), "one distinct member");
    let too_high = Call::MultisigPropose {
        members: members(&s.c),
        threshold: 4,
        call: Box::new(Call::Transfer { to: s.c.op(OUTSIDER), amount: 1 }),
        expires_in: 10,
    };
    assert!(matches!(s.c.fails(A, too_high), TxError::MultisigPrecondition { .. }));
    assert!(matches!(s.c.fails(A, propose(&s.c, Call::Undelegate, 0)), TxError::MultisigPrecondition { .. }));
    assert_eq!(record(&s.c), None, "nothing was recorded");
}

/// Governance periods of a few blocks: a proposal included at height h opens at h + 1, is tallied at the end
/// of h + 2 and enacted at the end of h + 3.
fn fast_governance() -> Params {
    let mut p = Params::default();
    let g = &mut p.governance;
    g.min_deposit = 10 * UNIT;
    g.preparation_period = 1;
    g.voting_period = 2;
    g.enactment_delay = 1;
    g.emergency_voting_period = 1;
    p
}

/// Proposes `call`, votes it through with enough turnout and runs blocks until it is enacted; returns the
/// proposal's results.
fn enact(c: &mut Chain, call: GovCall) -> Vec<Option<TxError>> {
    let id = block_on(c.rt.gov_proposal_count(&c.state)).expect("readable");
    c.ok(SUDO, Call::Propose { calls: vec![call], deposit: 10 * UNIT, description: String::new() });
    c.ok(A, Call::Vote { proposal: id, choice: VoteChoice::Aye, amount: 700 * UNIT, conviction: 0, spam: false });
    for _ in 0..4 {
        let p = block_on(c.rt.gov_proposal(&c.state, id)).expect("readable").expect("a proposal");
        if let ProposalStatus::Enacted { .. } = p.status {
            return p.results;
        }
        c.run(vec![]);
    }
    panic!("the proposal was not enacted in time");
}

#[test]
fn a_governance_owned_agent_changes_only_through_an_enacted_proposal() {
    let mut s = setup_with(fast_governance());
    s.c.extra_holders.push(Address::module("governance"));
    let id = deploy_agent(&mut s);
    let gov = governance_owner();
    // An agent governance does not own yet is not changed by a proposal.
    let pause = GovCall::AgentControl { call: Box::new(Call::PauseAgent { agent: id }) };
    assert_eq!(enact(&mut s.c, pause.clone()), vec![Some(TxError::NotAgentOwner { owner: s.c.op(OWNER) })]);
    assert!(!agent(&s.c, &id).paused);
    s.c.ok(OWNER, Call::TransferAgentOwnership { agent: id, new_owner: gov });
    assert_eq!(agent(&s.c, &id).owner, gov);
    // No account can act for governance: not the old owner, not anyone else.
    for who in [OWNER, SUDO, A] {
        assert_eq!(s.c.fails(who, Call::PauseAgent { agent: id }), TxError::NotAgentOwner { owner: gov });
    }
    assert!(!agent(&s.c, &id).paused);
    assert_eq!(enact(&mut s.c, pause), vec![None]);
    assert!(agent(&s.c, &id).paused, "paused by the enacted proposal");
    let resume = GovCall::AgentControl { call: Box::new(Call::ResumeAgent { agent: id }) };
    assert_eq!(enact(&mut s.c, resume), vec![None]);
    assert!(!agent(&s.c, &id).paused);
    // Governance can hand the agent back to an account.
    let back = Call::TransferAgentOwnership { agent: id, new_owner: s.c.op(OWNER) };
    assert_eq!(enact(&mut s.c, GovCall::AgentControl { call: Box::new(back) }), vec![None]);
    s.c.ok(OWNER, Call::PauseAgent { agent: id });
    // Only owner-only agent calls may be carried.
    let spend = GovCall::AgentControl { call: Box::new(Call::Transfer { to: s.c.op(A), amount: 1 }) };
    let refused = Call::Propose { calls: vec![spend], deposit: 10 * UNIT, description: String::new() };
    assert!(matches!(s.c.fails(SUDO, refused), TxError::MalformedProposal { .. }));
}
