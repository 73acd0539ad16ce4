//! Scenario tests of on-chain governance and the treasury, driven block by block on a chain without a
//! registry administrator, with real dev quotes for the worker that governance lets in.
#![allow(clippy::result_large_err)]

use futures::executor::block_on;
use std::collections::BTreeMap;
use umbra_crypto::{Keypair, sign_transaction};
use umbra_runtime::{BlockEnv, ChangeSet, Runtime, RuntimeError, StateRead};
use umbra_tee::{Attester, DevPlatform, Measurement, Policy, TeeKind};
use umbra_types::governance::{GovCall, Proposal, ProposalStatus, VoteChoice};
use umbra_types::{
    Address, AdminCall, Allocation, Amount, Call, Genesis, GenesisValidator, GovernanceGenesis, Hash, Params, Receipt,
    RegistryGenesis, SignedTransaction, TokenInfo, Transaction, TxError, UNIT, sha256,
};

#[derive(Default, Clone)]
struct MemState(BTreeMap<[u8; 32], Vec<u8>>);

impl StateRead for MemState {
    async fn get(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, RuntimeError> {
        Ok(self.0.get(key).cloned())
    }
}

const CHAIN: &str = "umbra-gov-test";
const GENESIS_HASH: Hash = Hash([0xab; 32]);
const VALIDATOR: [u8; 32] = [77; 32];
/// Preparation 2 blocks, voting 5, enactment delay 3: a proposal included at height h opens at h + 2,
/// is tallied at the end of h + 6 and enacted at the end of h + 9.
const PREP: u64 = 2;
const VOTING: u64 = 5;
const DELAY: u64 = 3;

fn dev_seed() -> [u8; 32] {
    sha256(&[b"umbra dev attestation key"]).0
}

fn dev_measurement() -> Measurement {
    Measurement([0x5a; 32])
}

fn dev_policy() -> Policy {
    Policy {
        accepted_kinds: [TeeKind::Dev].into(),
        dev_keys: [Keypair::from_seed(dev_seed()).address().0].into(),
        measurements: [dev_measurement()].into(),
        ..Policy::default()
    }
}

fn params() -> Params {
    let mut p = Params::default();
    p.staking.min_self_bond = 10 * UNIT;
    let g = &mut p.governance;
    g.min_deposit = 10 * UNIT;
    g.preparation_period = PREP;
    g.voting_period = VOTING;
    g.enactment_delay = DELAY;
    g.quorum_bps = 1_000; // 10% of 6,000 issued: 600 tokens
    g.emergency_voting_period = 4;
    g.emergency_enactment_delay = 0;
    p
}

struct Worker {
    identity: Keypair,
    x25519: [u8; 32],
    platform: DevPlatform,
    _dir: tempfile::TempDir,
}

impl Worker {
    fn new(n: u8, m: Measurement) -> Worker {
        let dir = tempfile::tempdir().expect("tempdir");
        let platform = DevPlatform::open(&dir.path().join("machine-secret"), dev_seed(), m).expect("dev platform");
        Worker { identity: Keypair::from_seed([100 + n; 32]), x25519: [150 + n; 32], platform, _dir: dir }
    }

    fn id(&self) -> [u8; 32] {
        self.identity.address().0
    }

    fn register(&self, operator: &Address) -> Call {
        let rd = umbra_tee::report_data(&self.id(), &self.x25519, CHAIN, &GENESIS_HASH.0, &operator.0);
        Call::RegisterWorker {
            identity: self.id(),
            x25519: self.x25519,
            quote: self.platform.quote(&rd).expect("quote"),
        }
    }
}

struct Chain {
    rt: Runtime,
    state: MemState,
    height: u64,
    keys: Vec<Keypair>,
    nonces: BTreeMap<usize, u64>,
    params: Params,
}

impl Chain {
    /// Six accounts with 1,000 tokens each; accounts `committee` form the technical committee; no sudo.
    fn new(committee: &[usize]) -> Chain {
        Chain::with_params(params(), committee)
    }

    fn with_params(params: Params, committee: &[usize]) -> Chain {
        let keys: Vec<Keypair> = (0..6).map(|i| Keypair::from_seed([i as u8 + 1; 32])).collect();
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: 1_000,
            token: TokenInfo::default(),
            allocations: keys.iter().map(|k| Allocation { address: k.address(), amount: 1_000 * UNIT }).collect(),
            validators: vec![GenesisValidator { name: "v".into(), key: [200; 32] }],
            params: params.clone(),
            registry: RegistryGenesis { policy: dev_policy(), collateral: vec![], sudo: None },
            governance: GovernanceGenesis {
                technical_committee: committee.iter().map(|i| keys[*i].address()).collect(),
            },
        };
        let rt = Runtime::new();
        let mut state = MemState::default();
        let changes = block_on(rt.genesis(&genesis, &state)).expect("genesis applies");
        apply(&mut state, changes);
        let mut c = Chain { rt, state, height: 0, keys, nonces: BTreeMap::new(), params };
        c.run(vec![]); // block 1 records the genesis hash
        c
    }

    fn env(&self) -> BlockEnv {
        let height = self.height + 1;
        let parent = if height == 1 { GENESIS_HASH } else { Hash([height as u8; 32]) };
        BlockEnv { height, timestamp_ms: 1_000 + height * 1_000, proposer: Address([200; 32]), epoch: 0, parent }
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

    fn run(&mut self, candidates: Vec<SignedTransaction>) -> Vec<Receipt> {
        let env = self.env();
        let built = block_on(self.rt.build_block(&self.state, &env, candidates)).expect("builds");
        assert!(built.rejected.is_empty(), "rejected: {:?}", built.rejected);
        let executed = block_on(self.rt.execute_block(&self.state, &env, &built.txs, true)).expect("valid block");
        assert_eq!(executed, built.outcome, "building and executing the block agree");
        apply(&mut self.state, executed.changes);
        self.height += 1;
        self.assert_supply();
        executed.receipts
    }

    fn assert_supply(&self) {
        let mut holders: Vec<Address> = self.keys.iter().map(|k| k.address()).collect();
        holders.extend([Address([200; 32]), self.rt.treasury_address(), self.rt.governance_escrow()]);
        let sum: Amount = holders.iter().map(|a| self.balance_of(a)).sum();
        let bonded = block_on(self.rt.total_bonded(&self.state)).expect("readable");
        let unbonding = block_on(self.rt.total_unbonding(&self.state)).expect("readable");
        let issued = block_on(self.rt.total_issued(&self.state)).expect("readable");
        assert_eq!(sum + bonded + unbonding, issued, "tokens were created or lost at height {}", self.height);
        // The escrow holds exactly the deposits of undecided proposals and every voter's escrow.
        let mut held: Amount = 0;
        for id in 0..block_on(self.rt.gov_proposal_count(&self.state)).expect("readable") {
            let p = self.proposal(id);
            if p.status == ProposalStatus::Open {
                held += p.deposit;
            }
        }
        for k in &self.keys {
            held += block_on(self.rt.gov_voter(&self.state, &k.address())).expect("readable").escrowed;
        }
        assert_eq!(self.balance_of(&self.rt.governance_escrow()), held, "escrow at height {}", self.height);
    }

    fn ok(&mut self, from: usize, call: Call) {
        let tx = self.tx(from, call);
        let r = self.run(vec![tx]);
        assert_eq!(r[0].error, None, "the call succeeds");
    }

    fn fails(&mut self, from: usize, call: Call) -> TxError {
        let tx = self.tx(from, call);
        self.run(vec![tx])[0].error.clone().expect("the call fails")
    }

    fn addr(&self, i: usize) -> Address {
        self.keys[i].address()
    }

    fn balance_of(&self, a: &Address) -> Amount {
        block_on(self.rt.account(&self.state, a)).expect("readable").balance
    }

    fn balance(&self, i: usize) -> Amount {
        self.balance_of(&self.addr(i))
    }

    fn proposal(&self, id: u64) -> Proposal {
        block_on(self.rt.gov_proposal(&self.state, id)).expect("readable").expect("exists")
    }

    /// Submits a proposal from `from` with the minimum deposit; returns its id.
    fn propose(&mut self, from: usize, calls: Vec<GovCall>) -> u64 {
        self.ok(from, Call::Propose { calls, deposit: 10 * UNIT, description: "test".into() });
        block_on(self.rt.gov_proposal_count(&self.state)).expect("readable") - 1
    }

    fn vote(&mut self, from: usize, id: u64, choice: VoteChoice, tokens: Amount, conviction: u8) {
        self.ok(from, Call::Vote { proposal: id, choice, amount: tokens * UNIT, conviction, spam: false });
    }

    /// Runs empty blocks until `height` is applied.
    fn until(&mut self, height: u64) {
        while self.height < height {
            self.run(vec![]);
        }
    }

    /// Runs empty blocks until voting on `id` has opened.
    fn open(&mut self, id: u64) {
        let start = self.proposal(id).voting_start;
        self.until(start - 1);
    }

    fn measurements(&self) -> std::collections::BTreeSet<Measurement> {
        block_on(self.rt.policy(&self.state)).expect("readable").measurements
    }
}

fn apply(state: &mut MemState, changes: ChangeSet) {
    for (k, v) in changes {
        match v {
            Some(v) => state.0.insert(k, v),
            None => state.0.remove(&k),
        };
    }
}

fn allow(m: Measurement) -> GovCall {
    GovCall::Admin { call: AdminCall::AllowMeasurement { measurement: m } }
}

fn signal() -> GovCall {
    GovCall::Signal { text: "hello".into() }
}

#[test]
fn a_measurement_allowed_by_a_passed_proposal_lets_a_refused_worker_register() {
    let mut c = Chain::new(&[]);
    let other = Measurement([0x77; 32]);
    let w = Worker::new(1, other);
    let call = w.register(&c.addr(1));
    assert!(matches!(c.fails(1, call), TxError::AttestationRefused { reason } if reason.contains("allow-list")));
    // Sudo does not exist: an admin call is refused outright.
    let admin = Call::Admin { call: AdminCall::AllowMeasurement { measurement: other } };
    assert!(matches!(c.fails(0, admin), TxError::NotAuthorized { .. }));

    let before = c.balance(0);
    let id = c.propose(0, vec![allow(other)]);
    let submitted = c.height;
    let p = c.proposal(id);
    assert_eq!((p.voting_start, p.voting_end), (submitted + PREP, submitted + PREP + VOTING - 1));
    c.open(id);
    c.vote(1, id, VoteChoice::Aye, 700, 1);
    c.vote(2, id, VoteChoice::Nay, 100, 1);
    c.until(p.voting_end);
    let p = c.proposal(id);
    assert_eq!(p.status, ProposalStatus::Passed { enact_at: p.voting_end + DELAY });
    let t = p.final_tally.clone().expect("final tally");
    assert_eq!((t.ayes, t.nays, t.turnout), (7_000 * UNIT, 1_000 * UNIT, 800 * UNIT));
    assert!(!c.measurements().contains(&other), "not enacted before the delay");
    // The deposit came back at the tally: the proposer paid only fees.
    assert!(before - c.balance(0) < UNIT, "deposit returned");
    c.until(p.voting_end + DELAY);
    let p = c.proposal(id);
    assert_eq!(p.status, ProposalStatus::Enacted { at: p.voting_end + DELAY });
    assert_eq!(p.results, vec![None]);
    assert!(c.measurements().contains(&other));
    let call = w.register(&c.addr(1));
    c.ok(1, call);
    assert!(block_on(c.rt.worker(&c.state, &w.id())).expect("readable").is_some());
}

#[test]
fn a_proposal_without_quorum_changes_nothing_and_returns_the_deposit() {
    let mut c = Chain::new(&[]);
    let other = Measurement([0x77; 32]);
    let before = c.balance(0);
    let id = c.propose(0, vec![allow(other)]);
    c.open(id);
    c.vote(1, id, VoteChoice::Aye, 500, 1); // 500 of the 600 tokens the quorum needs
    c.vote(2, id, VoteChoice::Abstain, 99, 0);
    let end = c.proposal(id).voting_end;
    c.until(end + DELAY + 2);
    let p = c.proposal(id);
    assert_eq!(p.status, ProposalStatus::Rejected { spam: false });
    assert_eq!(p.final_tally.expect("tally").turnout, 599 * UNIT);
    assert!(p.results.is_empty());
    assert!(!c.measurements().contains(&other));
    assert!(before - c.balance(0) < UNIT, "deposit returned");
}

#[test]
fn abstentions_count_for_quorum_and_a_tie_does_not_pass() {
    let mut c = Chain::new(&[]);
    let id = c.propose(0, vec![signal()]);
    c.open(id);
    c.vote(1, id, VoteChoice::Aye, 10, 1);
    c.vote(2, id, VoteChoice::Abstain, 900, 1);
    let end = c.proposal(id).voting_end;
    c.until(end);
    assert!(matches!(c.proposal(id).status, ProposalStatus::Passed { .. }), "abstentions make the quorum");

    let id = c.propose(0, vec![signal()]);
    c.open(id);
    c.vote(1, id, VoteChoice::Aye, 400, 1);
    c.vote(2, id, VoteChoice::Nay, 400, 1);
    let end = c.proposal(id).voting_end;
    c.until(end);
    assert_eq!(c.proposal(id).status, ProposalStatus::Rejected { spam: false }, "50% is not more than half");
}

#[test]
fn a_second_vote_replaces_the_first_and_never_counts_twice() {
    let mut c = Chain::new(&[]);
    let id = c.propose(0, vec![signal()]);
    c.open(id);
    c.vote(1, id, VoteChoice::Aye, 700, 1);
    c.vote(1, id, VoteChoice::Nay, 650, 1);
    let t = block_on(c.rt.gov_tally(&c.state, id)).expect("readable");
    assert_eq!((t.ayes, t.nays, t.turnout), (0, 6_500 * UNIT, 650 * UNIT));
    // One lock per proposal: the escrow is the larger amount, held once.
    let v = block_on(c.rt.gov_voter(&c.state, &c.addr(1))).expect("readable");
    assert_eq!((v.locks.len(), v.escrowed), (1, 700 * UNIT));
    let end = c.proposal(id).voting_end;
    c.until(end);
    assert_eq!(c.proposal(id).status, ProposalStatus::Rejected { spam: false });
}

#[test]
fn votes_before_opening_after_the_deadline_and_on_unknown_proposals_are_refused() {
    let mut c = Chain::new(&[]);
    let id = c.propose(0, vec![signal()]);
    let p = c.proposal(id);
    let early = Call::Vote { proposal: id, choice: VoteChoice::Aye, amount: UNIT, conviction: 0, spam: false };
    assert_eq!(c.fails(1, early.clone()), TxError::VotingNotOpen { opens_at: p.voting_start });
    c.until(p.voting_end);
    assert_eq!(c.fails(1, early), TxError::VotingClosed { closed_at: p.voting_end });
    let unknown = Call::Vote { proposal: 99, choice: VoteChoice::Aye, amount: UNIT, conviction: 0, spam: false };
    assert_eq!(c.fails(1, unknown), TxError::UnknownProposal { id: 99 });
    let zero = Call::Vote { proposal: id, choice: VoteChoice::Aye, amount: 0, conviction: 0, spam: false };
    assert_eq!(c.fails(1, zero), TxError::ZeroAmount);
    // Nothing was locked by the refused votes.
    assert_eq!(block_on(c.rt.gov_voter(&c.state, &c.addr(1))).expect("readable"), Default::default());
}

#[test]
fn bonded_stake_votes_without_leaving_and_cannot_be_unbonded_while_locked() {
    let mut c = Chain::new(&[]);
    c.ok(1, Call::Bond { validator_key: VALIDATOR, amount: 600 * UNIT });
    let id = c.propose(0, vec![signal()]);
    c.open(id);
    let free = c.balance(1);
    // More than free balance plus stake is refused.
    let too_much =
        Call::Vote { proposal: id, choice: VoteChoice::Aye, amount: 600 * UNIT + free, conviction: 1, spam: false };
    assert!(matches!(c.fails(1, too_much), TxError::InsufficientVotingBalance { .. }));
    // 700 tokens: 600 from stake (stays bonded), 100 moved to escrow.
    c.vote(1, id, VoteChoice::Aye, 700, 1);
    assert_eq!(block_on(c.rt.total_bonded(&c.state)).expect("readable"), 600 * UNIT);
    assert_eq!(block_on(c.rt.gov_voter(&c.state, &c.addr(1))).expect("readable").escrowed, 100 * UNIT);
    let unbond = Call::Unbond { validator_key: VALIDATOR, amount: 1 };
    assert_eq!(c.fails(1, unbond), TxError::VoteLocked { locked: 700 * UNIT });
    let p = c.proposal(id);
    c.until(p.voting_end);
    assert!(matches!(c.proposal(id).status, ProposalStatus::Passed { .. }));
    // Conviction 1 locks for one enactment delay after the end.
    c.until(p.voting_end + 1 + DELAY);
    c.ok(1, Call::UnlockVotes);
    c.ok(1, Call::Unbond { validator_key: VALIDATOR, amount: 600 * UNIT });
}

#[test]
fn conviction_multiplies_weight_and_locks_are_released_exactly_once() {
    let mut c = Chain::new(&[]);
    let id = c.propose(0, vec![signal()]);
    c.open(id);
    let start = c.balance(3);
    c.vote(3, id, VoteChoice::Aye, 100, 0); // 0.1x
    c.vote(4, id, VoteChoice::Nay, 100, 3); // 3x, locked 4 delays
    c.vote(5, id, VoteChoice::Aye, 600, 6); // 6x, locked 32 delays
    let t = block_on(c.rt.gov_tally(&c.state, id)).expect("readable");
    assert_eq!((t.ayes, t.nays), (100 * UNIT + 600 * UNIT * 60, 100 * UNIT * 30));
    let end = c.proposal(id).voting_end;
    c.until(end);
    // Conviction 0: released right after the end, once.
    c.ok(3, Call::UnlockVotes);
    assert_eq!(c.fails(3, Call::UnlockVotes), TxError::NothingToUnlock);
    assert!(start - c.balance(3) < UNIT, "the whole vote came back, minus fees");
    // Conviction 3: not before end + 1 + 4 * DELAY.
    assert_eq!(c.fails(4, Call::UnlockVotes), TxError::NothingToUnlock);
    c.until(end + 4 * DELAY - 1);
    assert_eq!(c.fails(4, Call::UnlockVotes), TxError::NothingToUnlock);
    let before = c.balance(4);
    c.ok(4, Call::UnlockVotes);
    assert!(c.balance(4) > before + 99 * UNIT);
    assert_eq!(c.fails(4, Call::UnlockVotes), TxError::NothingToUnlock);
    let bad = Call::Vote { proposal: id, choice: VoteChoice::Aye, amount: UNIT, conviction: 7, spam: false };
    assert_eq!(c.fails(1, bad), TxError::BadConviction { conviction: 7 });
}

#[test]
fn one_lock_covers_votes_on_several_proposals() {
    let mut c = Chain::new(&[]);
    let a = c.propose(0, vec![signal()]);
    let b = c.propose(0, vec![signal()]);
    c.open(b);
    c.vote(1, a, VoteChoice::Aye, 900, 1);
    c.vote(1, b, VoteChoice::Nay, 900, 1);
    let v = block_on(c.rt.gov_voter(&c.state, &c.addr(1))).expect("readable");
    assert_eq!((v.locks.len(), v.escrowed), (2, 900 * UNIT));
}

#[test]
fn delegated_power_follows_the_delegate_unless_the_delegator_votes_itself() {
    let mut c = Chain::new(&[]);
    c.ok(2, Call::Delegate { to: c.addr(1), amount: 500 * UNIT, conviction: 2 });
    c.ok(3, Call::Delegate { to: c.addr(1), amount: 100 * UNIT, conviction: 1 });
    let id = c.propose(0, vec![signal()]);
    c.open(id);
    c.vote(1, id, VoteChoice::Aye, 10, 1);
    c.vote(3, id, VoteChoice::Nay, 50, 1);
    let t = block_on(c.rt.gov_tally(&c.state, id)).expect("readable");
    // 1's own 10 at 1x plus 2's 500 at 2x; 3 voted itself, so its delegation does not count.
    assert_eq!((t.ayes, t.nays, t.turnout), (100 * UNIT + 10_000 * UNIT, 500 * UNIT, 560 * UNIT));
    // Revoked: 2's power no longer follows 1, and its tokens stay locked for 2 delays.
    c.ok(2, Call::Undelegate);
    let t = block_on(c.rt.gov_tally(&c.state, id)).expect("readable");
    assert_eq!(t.ayes, 100 * UNIT);
    assert_eq!(c.fails(2, Call::Undelegate), TxError::NotDelegating);
    assert_eq!(c.fails(2, Call::UnlockVotes), TxError::NothingToUnlock);
    c.until(c.height + 2 * DELAY + 1);
    c.ok(2, Call::UnlockVotes);
    assert_eq!(block_on(c.rt.gov_voter(&c.state, &c.addr(2))).expect("readable"), Default::default());
}

#[test]
fn delegation_cycles_chains_and_overdrafts_are_refused() {
    let mut c = Chain::new(&[]);
    let to = |c: &Chain, i| Call::Delegate { to: c.addr(i), amount: 10 * UNIT, conviction: 1 };
    assert_eq!(c.fails(1, to(&c, 1)), TxError::DelegationCycle);
    c.ok(1, to(&c, 2));
    assert_eq!(c.fails(2, to(&c, 1)), TxError::DelegationCycle);
    assert!(matches!(c.fails(3, to(&c, 1)), TxError::BadDelegation { .. }), "the delegate delegates");
    assert!(matches!(c.fails(2, to(&c, 3)), TxError::BadDelegation { .. }), "others delegate to the signer");
    assert!(matches!(c.fails(1, to(&c, 3)), TxError::BadDelegation { .. }), "already delegating");
    let much = Call::Delegate { to: c.addr(4), amount: 2_000 * UNIT, conviction: 0 };
    assert!(matches!(c.fails(3, much), TxError::InsufficientVotingBalance { .. }));
}

#[test]
fn malformed_proposals_and_too_small_deposits_are_refused() {
    let mut c = Chain::new(&[]);
    let before = c.balance(0);
    let propose = |calls: Vec<GovCall>, deposit| Call::Propose { calls, deposit, description: String::new() };
    let malformed = |e: TxError| matches!(e, TxError::MalformedProposal { .. });
    assert!(malformed(c.fails(0, propose(vec![], 10 * UNIT))));
    assert!(malformed(c.fails(0, propose(vec![signal(); 17], 10 * UNIT))));
    let zero = GovCall::TreasurySpend { to: c.addr(1), amount: 0 };
    assert!(malformed(c.fails(0, propose(vec![zero], 10 * UNIT))));
    let escrow = GovCall::TreasurySpend { to: c.rt.governance_escrow(), amount: UNIT };
    assert!(malformed(c.fails(0, propose(vec![escrow], 10 * UNIT))));
    let mut reserve = params();
    reserve.rewards.reserve = 1;
    assert!(malformed(c.fails(0, propose(vec![GovCall::SetParams { params: Box::new(reserve) }], 10 * UNIT))));
    let mut bad = params();
    bad.governance.quorum_bps = 10_001;
    assert!(malformed(c.fails(0, propose(vec![GovCall::SetParams { params: Box::new(bad) }], 10 * UNIT))));
    let mut epoch = params();
    epoch.epoch_length = 50;
    assert!(malformed(c.fails(0, propose(vec![GovCall::SetParams { params: Box::new(epoch) }], 10 * UNIT))));
    let long = GovCall::Signal { text: "x".repeat(5_000) };
    assert!(malformed(c.fails(0, propose(vec![long], 10 * UNIT))));
    assert_eq!(
        c.fails(0, propose(vec![signal()], 10 * UNIT - 1)),
        TxError::DepositTooLow { deposit: 10 * UNIT - 1, min: 10 * UNIT }
    );
    assert!(matches!(c.fails(0, propose(vec![signal()], 5_000 * UNIT)), TxError::InsufficientBalance { .. }));
    assert_eq!(block_on(c.rt.gov_proposal_count(&c.state)).expect("readable"), 0);
    assert!(before - c.balance(0) < UNIT, "only fees were charged");
}

#[test]
fn a_proposal_marked_spam_by_a_supermajority_loses_its_deposit() {
    let mut c = Chain::new(&[]);
    let issued = block_on(c.rt.total_issued(&c.state)).expect("readable");
    let id = c.propose(0, vec![signal()]);
    c.open(id);
    let spam = |amount| Call::Vote { proposal: id, choice: VoteChoice::Nay, amount, conviction: 1, spam: true };
    c.ok(1, spam(700 * UNIT));
    c.vote(2, id, VoteChoice::Aye, 300, 1);
    let end = c.proposal(id).voting_end;
    c.until(end);
    assert_eq!(c.proposal(id).status, ProposalStatus::Rejected { spam: true });
    assert_eq!(block_on(c.rt.total_issued(&c.state)).expect("readable"), issued - 10 * UNIT, "deposit burned");

    // Below two thirds the deposit comes back.
    let id = c.propose(0, vec![signal()]);
    c.open(id);
    let spam = |amount| Call::Vote { proposal: id, choice: VoteChoice::Nay, amount, conviction: 1, spam: true };
    c.ok(1, spam(600 * UNIT));
    c.vote(2, id, VoteChoice::Aye, 400, 1);
    let end = c.proposal(id).voting_end;
    c.until(end);
    assert_eq!(c.proposal(id).status, ProposalStatus::Rejected { spam: false });
    assert_eq!(block_on(c.rt.total_issued(&c.state)).expect("readable"), issued - 10 * UNIT);
}

#[test]
fn a_batch_enacts_each_call_on_its_own_and_the_treasury_pays_only_by_proposal() {
    let mut c = Chain::new(&[]);
    let treasury = c.rt.treasury_address();
    c.ok(5, Call::Transfer { to: treasury, amount: 200 * UNIT });
    let funds = c.balance_of(&treasury);
    let calls = vec![
        GovCall::TreasurySpend { to: c.addr(4), amount: 100 * UNIT },
        GovCall::TreasurySpend { to: c.addr(4), amount: 1_000_000 * UNIT }, // more than it holds
        GovCall::Admin { call: AdminCall::CreateCluster { cluster: 7 } },
        GovCall::Admin { call: AdminCall::CreateCluster { cluster: 7 } }, // exists by then
        GovCall::Admin { call: AdminCall::AppointGatekeeper { worker: [9; 32] } }, // no such worker
        signal(),
    ];
    let before = c.balance(4);
    let id = c.propose(0, calls);
    c.open(id);
    c.vote(1, id, VoteChoice::Aye, 700, 1);
    let end = c.proposal(id).voting_end;
    c.until(end + DELAY);
    let p = c.proposal(id);
    assert!(matches!(p.status, ProposalStatus::Enacted { .. }));
    assert_eq!(p.results[0], None);
    assert!(matches!(p.results[1], Some(TxError::InsufficientBalance { .. })), "{:?}", p.results[1]);
    assert_eq!(p.results[2], None);
    assert!(matches!(p.results[3], Some(TxError::RegistryPrecondition { .. })), "{:?}", p.results[3]);
    assert_eq!(p.results[4], Some(TxError::UnknownWorker));
    assert_eq!(p.results[5], None);
    assert_eq!(c.balance(4), before + 100 * UNIT);
    assert!(c.balance_of(&treasury) >= funds - 100 * UNIT, "fees kept flowing in");
    assert_eq!(block_on(c.rt.clusters(&c.state)).expect("readable").len(), 1);
    let spends = block_on(c.rt.treasury_spends(&c.state)).expect("readable");
    assert_eq!(spends.len(), 1);
    assert_eq!((spends[0].proposal, spends[0].to, spends[0].amount), (id, c.addr(4), 100 * UNIT));
    // The chain kept going.
    c.run(vec![]);
}

#[test]
fn set_params_replaces_every_parameter_when_enacted() {
    let mut c = Chain::new(&[]);
    let mut new = params();
    new.governance.min_deposit = 20 * UNIT;
    new.registry.commitment_interval_blocks = 7;
    let id = c.propose(0, vec![GovCall::SetParams { params: Box::new(new.clone()) }]);
    c.open(id);
    c.vote(1, id, VoteChoice::Aye, 700, 1);
    let end = c.proposal(id).voting_end;
    c.until(end + DELAY);
    assert_eq!(c.proposal(id).results, vec![None]);
    let (_, now) = block_on(c.rt.chain_params(&c.state)).expect("readable");
    assert_eq!(now, new);
    let small = Call::Propose { calls: vec![signal()], deposit: 10 * UNIT, description: String::new() };
    assert!(matches!(c.fails(0, small), TxError::DepositTooLow { .. }));
}

/// A normal voting period longer than the emergency one.
fn long_voting() -> Params {
    let mut p = params();
    p.governance.voting_period = 20;
    p
}

#[test]
fn the_technical_committee_fast_tracks_a_measurement_withdrawal_but_never_a_treasury_spend() {
    let mut c = Chain::with_params(long_voting(), &[3, 4, 5]);
    let w = Worker::new(1, dev_measurement());
    let call = w.register(&c.addr(1));
    c.ok(1, call);
    let withdraw = GovCall::Admin { call: AdminCall::WithdrawMeasurement { measurement: dev_measurement() } };
    let id = c.propose(0, vec![withdraw]);
    let normal_end = c.proposal(id).voting_end;
    assert!(matches!(c.fails(1, Call::FastTrack { proposal: id }), TxError::NotAuthorized { .. }));
    c.ok(3, Call::FastTrack { proposal: id });
    assert!(!c.proposal(id).emergency, "one of three is not a majority");
    assert!(matches!(c.fails(3, Call::FastTrack { proposal: id }), TxError::NotFastTrackable { .. }));
    c.ok(4, Call::FastTrack { proposal: id });
    let p = c.proposal(id);
    assert!(p.emergency);
    assert!(p.voting_start <= c.height, "voting is open");
    assert_eq!(p.voting_end, c.height + 3, "for 4 blocks from the fast-track on");
    assert!(p.voting_end < normal_end);
    // Two thirds needed: 60% ayes do not pass, 70% do (the vote is changed before the end).
    c.vote(1, id, VoteChoice::Aye, 600, 1);
    c.vote(2, id, VoteChoice::Nay, 400, 1);
    c.vote(2, id, VoteChoice::Nay, 250, 1);
    let p = c.proposal(id);
    assert_eq!(p.status, ProposalStatus::Enacted { at: p.voting_end }, "no delay on the emergency track");
    let rec = block_on(c.rt.worker(&c.state, &w.id())).expect("readable").expect("registered");
    assert!(rec.revoked.is_some(), "the worker running the withdrawn measurement is revoked");

    let spend = c.propose(0, vec![GovCall::TreasurySpend { to: c.addr(1), amount: UNIT }]);
    assert!(matches!(c.fails(3, Call::FastTrack { proposal: spend }), TxError::NotFastTrackable { .. }));
}

#[test]
fn an_emergency_proposal_below_its_higher_threshold_fails() {
    let mut c = Chain::with_params(long_voting(), &[3]);
    let withdraw = GovCall::Admin { call: AdminCall::WithdrawMeasurement { measurement: dev_measurement() } };
    let id = c.propose(0, vec![withdraw]);
    c.ok(3, Call::FastTrack { proposal: id });
    c.vote(1, id, VoteChoice::Aye, 600, 1);
    c.vote(2, id, VoteChoice::Nay, 400, 1);
    let end = c.proposal(id).voting_end;
    c.until(end);
    assert_eq!(c.proposal(id).status, ProposalStatus::Rejected { spam: false });
    assert!(c.measurements().contains(&dev_measurement()));
}

#[test]
fn a_call_whose_precondition_no_longer_holds_records_its_error_when_enacted() {
    let mut c = Chain::new(&[]);
    let withdraw = GovCall::Admin { call: AdminCall::WithdrawMeasurement { measurement: dev_measurement() } };
    let a = c.propose(0, vec![withdraw.clone()]);
    let b = c.propose(1, vec![withdraw]);
    c.open(b);
    c.vote(2, a, VoteChoice::Aye, 700, 1);
    c.vote(2, b, VoteChoice::Aye, 700, 1);
    let end = c.proposal(b).voting_end;
    c.until(end + DELAY);
    assert_eq!(c.proposal(a).results, vec![None]);
    let r = &c.proposal(b).results;
    assert!(matches!(&r[0], Some(TxError::RegistryPrecondition { reason }) if reason.contains("allow-list")), "{r:?}");
    c.run(vec![]);
}

mod random {
    //! Random sequences of governance and staking calls: whatever succeeds or fails, tokens are
    //! conserved, the escrow equals open deposits plus voters' escrow (checked after every block by
    //! `Chain::run`), and every voter's escrow plus bonded stake covers its largest lock in force.
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Propose(usize),
        Vote { from: usize, proposal: u64, choice: u8, tokens: u64, conviction: u8 },
        Delegate { from: usize, to: usize, tokens: u64, conviction: u8 },
        Undelegate(usize),
        Unlock(usize),
        Bond(usize, u64),
        Unbond(usize, u64),
        Idle,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..6usize).prop_map(Op::Propose),
            (0..6usize, 0..4u64, 0..3u8, 1..1_200u64, 0..8u8).prop_map(
                |(from, proposal, choice, tokens, conviction)| {
                    Op::Vote { from, proposal, choice, tokens, conviction }
                }
            ),
            (0..6usize, 0..6usize, 1..1_200u64, 0..7u8).prop_map(|(from, to, tokens, conviction)| Op::Delegate {
                from,
                to,
                tokens,
                conviction
            }),
            (0..6usize).prop_map(Op::Undelegate),
            (0..6usize).prop_map(Op::Unlock),
            (0..6usize, 10..600u64).prop_map(|(f, t)| Op::Bond(f, t)),
            (0..6usize, 1..600u64).prop_map(|(f, t)| Op::Unbond(f, t)),
            Just(Op::Idle),
        ]
    }

    fn call(c: &Chain, op: &Op) -> Option<(usize, Call)> {
        let choice = |n: u8| [VoteChoice::Aye, VoteChoice::Nay, VoteChoice::Abstain][n as usize % 3];
        Some(match *op {
            Op::Propose(from) => {
                (from, Call::Propose { calls: vec![signal()], deposit: 10 * UNIT, description: String::new() })
            }
            Op::Vote { from, proposal, choice: n, tokens, conviction } => (
                from,
                Call::Vote {
                    proposal,
                    choice: choice(n),
                    amount: Amount::from(tokens) * UNIT,
                    conviction,
                    spam: n == 1,
                },
            ),
            Op::Delegate { from, to, tokens, conviction } => {
                (from, Call::Delegate { to: c.addr(to), amount: Amount::from(tokens) * UNIT, conviction })
            }
            Op::Undelegate(from) => (from, Call::Undelegate),
            Op::Unlock(from) => (from, Call::UnlockVotes),
            // Each account bonds to its own candidate.
            Op::Bond(from, t) => {
                (from, Call::Bond { validator_key: [from as u8 + 1; 32], amount: Amount::from(t) * UNIT })
            }
            Op::Unbond(from, t) => {
                (from, Call::Unbond { validator_key: [from as u8 + 1; 32], amount: Amount::from(t) * UNIT })
            }
            Op::Idle => return None,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn random_governance_keeps_tokens_and_locks_consistent(ops in proptest::collection::vec(op(), 1..60)) {
            let mut c = Chain::new(&[]);
            for op in &ops {
                let txs = match call(&c, op) {
                    Some((from, call)) => vec![c.tx(from, call)],
                    None => vec![],
                };
                c.run(txs);
                for i in 0..6 {
                    let a = c.addr(i);
                    let v = block_on(c.rt.gov_voter(&c.state, &a)).expect("readable");
                    let bonded: Amount = block_on(c.rt.stakes_of(&c.state, &a))
                        .expect("readable")
                        .iter()
                        .map(|(_, s)| s.bonded)
                        .sum();
                    prop_assert!(
                        v.escrowed + bonded >= v.locked_at(c.height + 1),
                        "account {i} at height {}: {v:?}, bonded {bonded}", c.height
                    );
                }
            }
        }
    }
}

#[test]
fn the_technical_committee_fast_tracks_pausing_a_cluster_which_then_takes_no_new_contracts() {
    let mut c = Chain::with_params(long_voting(), &[3, 4, 5]);
    let create = c.propose(0, vec![GovCall::Admin { call: AdminCall::CreateCluster { cluster: 9 } }]);
    c.open(create);
    c.vote(2, create, VoteChoice::Aye, 700, 1);
    let end = c.proposal(create).voting_end;
    c.until(end + DELAY);
    let paused = |c: &Chain| {
        let clusters = block_on(c.rt.clusters(&c.state)).expect("readable");
        clusters.iter().find(|k| k.id == 9).map(|k| k.paused)
    };
    assert_eq!(paused(&c), Some(false), "the cluster exists and runs");

    let pause = c.propose(0, vec![GovCall::Admin { call: AdminCall::PauseCluster { cluster: 9, paused: true } }]);
    c.ok(3, Call::FastTrack { proposal: pause });
    c.ok(4, Call::FastTrack { proposal: pause });
    assert!(c.proposal(pause).emergency, "pausing a cluster is a security call");
    c.vote(2, pause, VoteChoice::Aye, 700, 1);
    let end = c.proposal(pause).voting_end;
    c.until(end);
    assert_eq!(paused(&c), Some(true), "enacted without delay");
    let code = b"export function get() { return 1; }".to_vec();
    let kind = umbra_types::contracts::CodeKind::JavaScript;
    c.ok(1, Call::UploadCode { kind, code: code.clone() });
    let code_hash = umbra_types::contracts::code_hash(kind, &code);
    let e = c.fails(1, Call::Instantiate { code_hash, cluster: 9, salt: vec![], args: vec![] });
    assert!(matches!(&e, TxError::ContractPrecondition { reason } if reason.contains("paused")), "{e:?}");
}
