//! Scenario tests of validator staking: bonds, nominations, unbonding, committee selection at epoch
//! boundaries and equivocation slashing, over an in-memory state.
//!
//! Evidence is checked by [`FakeVerifier`], a test double for the consensus binding's verifier over
//! Commonware's conflicting-vote activities (that one is tested in `umbra-consensus`). What is under
//! test here is everything the runtime decides around the verifier's answer.
#![allow(clippy::result_large_err)]

use futures::executor::block_on;
use proptest::prelude::*;
use std::collections::BTreeMap;
use umbra_crypto::{Keypair, sign_transaction};
use umbra_runtime::{BlockEnv, BlockOutcome, ChangeSet, Runtime, RuntimeError, StateRead};
use umbra_types::{
    Address, Allocation, Amount, Call, Evidence, EvidenceVerifier, Genesis, GenesisValidator, MAX_SUPPLY, Offence,
    Params, SignedTransaction, StakingParams, TokenInfo, Transaction, TxError, UNIT, ValidatorKey, consensus_namespace,
};

const CHAIN: &str = "umbra-test";
/// Blocks per epoch in these tests: epoch e is heights [4e, 4e+4); 3, 7, 11 ... carry committees.
const L: u64 = 4;
/// Unbonding period: two epochs.
const P: u64 = 8;
const MIN: Amount = 100 * UNIT;
const G0: ValidatorKey = [200; 32];
const G1: ValidatorKey = [201; 32];

#[derive(Default, Clone)]
struct MemState(BTreeMap<[u8; 32], Vec<u8>>);

impl StateRead for MemState {
    async fn get(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, RuntimeError> {
        Ok(self.0.get(key).cloned())
    }
}

/// Test double for the consensus binding's evidence verifier. A "proof" is `b"conflict"`, the
/// offender's key, the view (8 bytes, little endian), then any bytes (so one offence can be
/// re-encoded). It does not check membership: that is the runtime's job under test.
struct FakeVerifier;

impl EvidenceVerifier for FakeVerifier {
    fn verify(
        &self,
        namespace: &[u8],
        _epoch: u64,
        _committee: &[ValidatorKey],
        proof: &[u8],
    ) -> Result<Offence, String> {
        if namespace != consensus_namespace(CHAIN).as_slice() {
            return Err("signed under another namespace".into());
        }
        let rest = proof.strip_prefix(b"conflict").ok_or("not two conflicting votes")?;
        if rest.len() < 40 {
            return Err("truncated votes".into());
        }
        let mut offender = [0; 32];
        offender.copy_from_slice(&rest[..32]);
        let mut view = [0; 8];
        view.copy_from_slice(&rest[32..40]);
        Ok(Offence { offender, view: u64::from_le_bytes(view) })
    }
}

fn evidence(epoch: u64, offender: ValidatorKey, view: u64, slack: &[u8]) -> Vec<u8> {
    let mut proof = b"conflict".to_vec();
    proof.extend_from_slice(&offender);
    proof.extend_from_slice(&view.to_le_bytes());
    proof.extend_from_slice(slack);
    Evidence { epoch, proof }.to_bytes()
}

fn staking_params() -> StakingParams {
    StakingParams {
        committee_size: 2,
        min_self_bond: MIN,
        unbonding_period: P,
        slash_fraction_bps: 1_000,
        ..StakingParams::default()
    }
}

struct Chain {
    rt: Runtime,
    state: MemState,
    height: u64,
    keys: Vec<Keypair>,
    params: Params,
    validators: Vec<ValidatorKey>,
}

impl Chain {
    fn new(accounts: usize, each: Amount) -> Chain {
        Chain::with(
            accounts,
            each,
            staking_params(),
            vec![G0, G1],
            Runtime::with_evidence_verifier(Box::new(FakeVerifier)),
        )
    }

    fn with(
        accounts: usize,
        each: Amount,
        staking: StakingParams,
        validators: Vec<ValidatorKey>,
        rt: Runtime,
    ) -> Chain {
        let keys: Vec<Keypair> = (0..accounts).map(|i| Keypair::from_seed([i as u8 + 1; 32])).collect();
        let params = Params { epoch_length: L, staking, ..Params::default() };
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: 1_000,
            token: TokenInfo::default(),
            allocations: keys.iter().map(|k| Allocation { address: k.address(), amount: each }).collect(),
            validators: validators
                .iter()
                .enumerate()
                .map(|(i, k)| GenesisValidator { name: format!("v{i}"), key: *k })
                .collect(),
            params: params.clone(),
            registry: Default::default(),
            governance: Default::default(),
        };
        let mut state = MemState::default();
        let changes = block_on(rt.genesis(&genesis, &state)).expect("genesis applies");
        apply(&mut state, changes);
        let c = Chain { rt, state, height: 0, keys, params, validators };
        c.assert_supply_unchanged();
        c
    }

    fn addr(&self, i: usize) -> Address {
        self.keys[i].address()
    }

    fn env(&self) -> BlockEnv {
        let height = self.height + 1;
        BlockEnv {
            height,
            timestamp_ms: 1_000 + height,
            proposer: Address(G0),
            epoch: height / L,
            parent: umbra_types::Hash::ZERO,
        }
    }

    fn tx(&self, from: usize, call: Call) -> SignedTransaction {
        let k = &self.keys[from];
        let nonce = self.account(from).nonce;
        let mut tx = Transaction { signer: k.address(), nonce, chain_id: CHAIN.into(), fee: 0, call };
        let size = sign_transaction(k, tx.clone()).to_bytes().len();
        tx.fee = self.params.fees.min_fee(size, &tx.call);
        sign_transaction(k, tx)
    }

    /// Runs one block of the given calls (each from its own account, one per account) and returns
    /// the outcome; the supply invariant is checked after it.
    fn block(&mut self, calls: Vec<(usize, Call)>) -> BlockOutcome {
        let txs: Vec<_> = calls.into_iter().map(|(i, c)| self.tx(i, c)).collect();
        self.run(&txs)
    }

    fn run(&mut self, txs: &[SignedTransaction]) -> BlockOutcome {
        let out = block_on(self.rt.execute_block(&self.state, &self.env(), txs, true)).expect("valid block");
        apply(&mut self.state, out.changes.clone());
        self.height += 1;
        self.assert_supply_unchanged();
        out
    }

    /// Runs one call in its own block and returns its receipt's error.
    fn call(&mut self, from: usize, call: Call) -> Option<TxError> {
        self.block(vec![(from, call)]).receipts.remove(0).error
    }

    fn fee_of(&self, from: usize, call: Call) -> Amount {
        self.tx(from, call).tx.fee
    }

    /// Empty blocks until the tip is at `height`.
    fn advance_to(&mut self, height: u64) -> Vec<(u64, Option<Vec<ValidatorKey>>)> {
        let mut seen = Vec::new();
        while self.height < height {
            let out = self.run(&[]);
            seen.push((self.height, out.next_committee));
        }
        seen
    }

    fn account(&self, i: usize) -> umbra_types::state_keys::AccountRecord {
        block_on(self.rt.account(&self.state, &self.addr(i))).expect("readable")
    }

    fn balance(&self, a: &Address) -> Amount {
        block_on(self.rt.account(&self.state, a)).expect("readable").balance
    }

    fn treasury(&self) -> Amount {
        self.balance(&Address::module("treasury"))
    }

    fn candidate(&self, key: &ValidatorKey) -> umbra_types::state_keys::CandidateRecord {
        block_on(self.rt.candidate(&self.state, key)).expect("readable").expect("a candidate")
    }

    fn stake(&self, key: &ValidatorKey, i: usize) -> umbra_types::state_keys::StakeRecord {
        block_on(self.rt.stake(&self.state, key, &self.addr(i))).expect("readable")
    }

    fn committee(&self) -> Vec<ValidatorKey> {
        block_on(self.rt.committee(&self.state)).expect("readable")
    }

    fn next_committee(&self) -> Option<Vec<ValidatorKey>> {
        block_on(self.rt.next_committee(&self.state)).expect("readable")
    }

    fn total_bonded(&self) -> Amount {
        block_on(self.rt.total_bonded(&self.state)).expect("readable")
    }

    /// Everything is accounted for: balances, bonded and unbonding stake add up to the issued
    /// total; the counters equal the records; each candidate's sums equal its stakers' records.
    fn assert_supply_unchanged(&self) {
        let mut holders: Vec<Address> = self.keys.iter().map(|k| k.address()).collect();
        holders.extend(self.validators.iter().map(|k| Address(*k)));
        holders.push(Address::module("treasury"));
        let balances: Amount = holders.iter().map(|a| self.balance(a)).sum();
        let bonded = self.total_bonded();
        let unbonding = block_on(self.rt.total_unbonding(&self.state)).expect("readable");
        let issued = block_on(self.rt.total_issued(&self.state)).expect("readable");
        assert_eq!(balances + bonded + unbonding, issued, "tokens were created or lost at height {}", self.height);
        assert!(issued <= MAX_SUPPLY);
        let (mut rec_bonded, mut rec_unbonding) = (0, 0);
        let mut per_candidate: BTreeMap<ValidatorKey, (Amount, Amount)> = BTreeMap::new();
        for a in &holders {
            for (key, rec) in block_on(self.rt.stakes_of(&self.state, a)).expect("readable") {
                assert_ne!(rec, Default::default(), "an empty stake record is deleted");
                rec_bonded += rec.bonded;
                rec_unbonding += rec.unbonding.iter().map(|e| e.amount).sum::<Amount>();
                let owner = block_on(self.rt.candidate(&self.state, &key)).expect("readable").expect("exists").owner;
                let e = per_candidate.entry(key).or_default();
                if owner == *a {
                    e.0 += rec.bonded;
                } else {
                    e.1 += rec.bonded;
                }
            }
        }
        assert_eq!((rec_bonded, rec_unbonding), (bonded, unbonding), "counters match the records");
        for (key, (own, nominated)) in per_candidate {
            let c = self.candidate(&key);
            assert_eq!((c.self_bond, c.nominated), (own, nominated), "candidate sums match its stakers");
        }
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

const K: ValidatorKey = [7; 32];
const K2: ValidatorKey = [8; 32];

fn bond(key: ValidatorKey, amount: Amount) -> Call {
    Call::Bond { validator_key: key, amount }
}

fn nominate(key: ValidatorKey, amount: Amount) -> Call {
    Call::Nominate { validator_key: key, amount }
}

fn unbond(key: ValidatorKey, amount: Amount) -> Call {
    Call::Unbond { validator_key: key, amount }
}

fn submit(ev: Vec<u8>) -> Call {
    Call::SubmitEvidence { evidence: ev }
}

#[test]
fn genesis_validators_are_stakeless_candidates_and_the_first_committee() {
    let c = Chain::new(1, 1_000 * UNIT);
    assert_eq!(c.committee(), vec![G0, G1]);
    assert_eq!(c.next_committee(), None);
    let g = c.candidate(&G0);
    assert!(g.genesis && !g.jailed);
    assert_eq!((g.owner, g.total_stake()), (Address(G0), 0));
    assert_eq!(c.total_bonded(), 0);
}

#[test]
fn bonding_moves_tokens_from_the_balance_into_stake_and_keeps_the_supply() {
    let mut c = Chain::new(1, 1_000 * UNIT);
    let fee = c.fee_of(0, bond(K, 150 * UNIT));
    assert_eq!(c.call(0, bond(K, 150 * UNIT)), None);
    assert_eq!(c.account(0).balance, 850 * UNIT - fee);
    let cand = c.candidate(&K);
    assert_eq!((cand.owner, cand.self_bond, cand.nominated, cand.genesis), (c.addr(0), 150 * UNIT, 0, false));
    assert_eq!(c.stake(&K, 0).bonded, 150 * UNIT);
    assert_eq!(c.total_bonded(), 150 * UNIT);
    // The owner adds to its self-bond with no minimum.
    assert_eq!(c.call(0, bond(K, 1)), None);
    assert_eq!(c.candidate(&K).self_bond, 150 * UNIT + 1);
}

#[test]
fn a_candidate_with_enough_stake_enters_the_committee_at_the_next_epoch_boundary_and_not_before() {
    let mut c = Chain::new(1, 1_000 * UNIT);
    let out = c.block(vec![(0, bond(K, 150 * UNIT))]);
    assert_eq!(out.next_committee, None, "height 1 is not the last of epoch 0");
    let seen = c.advance_to(2 * L);
    assert_eq!(seen[0], (2, None));
    // The last block of epoch 0 (height 3) carries epoch 1's committee: the bonded candidate first,
    // then the stakeless genesis validators by key, cut at K = 2.
    assert_eq!(seen[1], (3, Some(vec![K, G0])));
    assert!(seen[2..].iter().all(|(h, n)| n.is_some() == (*h == 7)), "only last-of-epoch blocks carry one: {seen:?}");
    assert_eq!(block_on(c.rt.committee_of(&c.state, 1)).expect("readable"), Some(vec![K, G0]));
    assert_eq!(block_on(c.rt.committee_of(&c.state, 0)).expect("readable"), Some(vec![G0, G1]));
    assert_eq!(c.committee(), vec![K, G0], "epoch 2's committee is the same selection");
}

#[test]
fn the_committee_is_announced_in_the_last_block_but_takes_over_only_in_the_next_epoch() {
    let mut c = Chain::new(1, 1_000 * UNIT);
    c.block(vec![(0, bond(K, 150 * UNIT))]);
    c.advance_to(L - 1);
    assert_eq!(c.committee(), vec![G0, G1], "the tip is still in epoch 0");
    assert_eq!(c.next_committee(), Some(vec![K, G0]));
    c.advance_to(L);
    assert_eq!(c.committee(), vec![K, G0]);
}

#[test]
fn building_a_boundary_block_gives_the_same_next_committee_as_verifying_it() {
    let mut c = Chain::new(1, 1_000 * UNIT);
    c.advance_to(L - 2);
    let tx = c.tx(0, bond(K, 150 * UNIT));
    let built = block_on(c.rt.build_block(&c.state, &c.env(), vec![tx])).expect("builds");
    let verified = block_on(c.rt.execute_block(&c.state, &c.env(), &built.txs, true)).expect("valid");
    assert_eq!(built.outcome, verified);
    assert_eq!(verified.next_committee, Some(vec![K, G0]));
}

#[test]
fn a_nomination_counts_toward_its_candidate() {
    let mut c = Chain::with(
        3,
        1_000 * UNIT,
        StakingParams { committee_size: 1, ..staking_params() },
        vec![G0],
        Runtime::with_evidence_verifier(Box::new(FakeVerifier)),
    );
    c.block(vec![(0, bond(K, 150 * UNIT)), (1, bond(K2, 120 * UNIT))]);
    c.advance_to(L - 1);
    assert_eq!(c.next_committee(), Some(vec![K]));
    assert_eq!(c.call(2, nominate(K2, 50 * UNIT)), None);
    let k2 = c.candidate(&K2);
    assert_eq!((k2.self_bond, k2.nominated, k2.total_stake()), (120 * UNIT, 50 * UNIT, 170 * UNIT));
    c.advance_to(2 * L - 1);
    assert_eq!(c.next_committee(), Some(vec![K2]));
}

#[test]
fn stake_unbonded_before_the_boundary_no_longer_counts() {
    let mut c = Chain::new(1, 1_000 * UNIT);
    c.block(vec![(0, bond(K, 150 * UNIT))]);
    c.call(0, unbond(K, 100 * UNIT));
    c.advance_to(L - 1);
    // 50 left is below the minimum self-bond: not eligible.
    assert_eq!(c.next_committee(), Some(vec![G0, G1]));
}

#[test]
fn unbonded_tokens_are_released_after_the_period_and_not_before() {
    let mut c = Chain::new(1, 1_000 * UNIT);
    c.call(0, bond(K, 150 * UNIT));
    assert_eq!(c.call(0, unbond(K, 150 * UNIT)), None);
    let at = c.height;
    let entry = c.stake(&K, 0).unbonding[0].clone();
    assert_eq!((entry.amount, entry.start_height, entry.release_height), (150 * UNIT, at, at + P));
    assert_eq!(c.candidate(&K).self_bond, 0);
    c.advance_to(at + P - 2);
    assert_eq!(c.call(0, Call::WithdrawUnbonded), Some(TxError::NothingToWithdraw), "one block early");
    let before = c.account(0).balance;
    let fee = c.fee_of(0, Call::WithdrawUnbonded);
    assert_eq!(c.height + 1, at + P);
    assert_eq!(c.call(0, Call::WithdrawUnbonded), None);
    assert_eq!(c.account(0).balance, before - fee + 150 * UNIT);
    assert_eq!(c.stake(&K, 0), Default::default(), "the empty record is gone");
    assert_eq!(c.call(0, Call::WithdrawUnbonded), Some(TxError::NothingToWithdraw));
    // With no stake left the candidate is no longer selectable; its owner can register it again.
    assert!(block_on(c.rt.candidates(&c.state)).expect("readable").iter().all(|r| r.key != K));
    assert_eq!(c.call(0, bond(K, 1)), Some(TxError::BelowMinSelfBond { amount: 1, min: MIN }));
    assert_eq!(c.call(0, bond(K, MIN)), None);
}

#[test]
fn a_self_bond_below_the_minimum_is_refused_and_moves_nothing() {
    let mut c = Chain::new(1, 1_000 * UNIT);
    let fee = c.fee_of(0, bond(K, MIN - 1));
    assert_eq!(c.call(0, bond(K, MIN - 1)), Some(TxError::BelowMinSelfBond { amount: MIN - 1, min: MIN }));
    assert_eq!(c.account(0).balance, 1_000 * UNIT - fee, "only the fee is paid");
    assert!(block_on(c.rt.candidate(&c.state, &K)).expect("readable").is_none());
    assert_eq!(c.total_bonded(), 0);
}

#[test]
fn bonds_and_nominations_to_the_wrong_candidate_are_refused() {
    let mut c = Chain::new(2, 1_000 * UNIT);
    c.call(0, bond(K, 150 * UNIT));
    assert_eq!(c.call(1, bond(K, 150 * UNIT)), Some(TxError::NotCandidateOwner));
    assert_eq!(c.call(0, nominate(K, UNIT)), Some(TxError::SelfNomination));
    assert_eq!(c.call(1, nominate(K2, UNIT)), Some(TxError::UnknownCandidate));
    assert_eq!(c.call(1, unbond(K2, UNIT)), Some(TxError::UnknownCandidate));
    assert_eq!(c.call(1, unbond(K, UNIT)), Some(TxError::UnbondExceedsBond { bonded: 0, requested: UNIT }));
    assert_eq!(
        c.call(1, nominate(K, 2_000 * UNIT)).map(|e| matches!(e, TxError::InsufficientBalance { .. })),
        Some(true)
    );
    assert_eq!(c.candidate(&K).total_stake(), 150 * UNIT);
}

#[test]
fn amounts_at_the_limits_fail_cleanly() {
    let mut c = Chain::new(2, 1_000 * UNIT);
    assert_eq!(c.call(0, bond(K, 0)), Some(TxError::ZeroAmount));
    assert!(matches!(c.call(0, bond(K, u128::MAX)), Some(TxError::InsufficientBalance { .. })));
    c.call(0, bond(K, MIN));
    assert_eq!(c.call(1, nominate(K, 0)), Some(TxError::ZeroAmount));
    assert!(matches!(c.call(1, nominate(K, u128::MAX)), Some(TxError::InsufficientBalance { .. })));
    assert_eq!(c.call(0, unbond(K, 0)), Some(TxError::ZeroAmount));
    assert_eq!(c.call(0, unbond(K, u128::MAX)), Some(TxError::UnbondExceedsBond { bonded: MIN, requested: u128::MAX }));
}

#[test]
fn the_whole_supply_can_be_bonded_unbonded_and_withdrawn() {
    let mut c = Chain::new(1, MAX_SUPPLY);
    let all = c.account(0).balance - c.fee_of(0, bond(K, MAX_SUPPLY)) - UNIT;
    assert_eq!(c.call(0, bond(K, all)), None);
    assert_eq!(c.total_bonded(), all);
    assert_eq!(c.call(0, unbond(K, all)), None);
    c.advance_to(c.height + P);
    assert_eq!(c.call(0, Call::WithdrawUnbonded), None);
    assert_eq!(c.total_bonded(), 0);
}

#[test]
fn unbonding_entries_are_limited_per_candidate() {
    let mut c = Chain::with(
        1,
        1_000 * UNIT,
        StakingParams { max_unbonding_entries: 2, ..staking_params() },
        vec![G0, G1],
        Runtime::new(),
    );
    c.call(0, bond(K, 150 * UNIT));
    assert_eq!(c.call(0, unbond(K, UNIT)), None);
    assert_eq!(c.call(0, unbond(K, UNIT)), None);
    assert_eq!(c.call(0, unbond(K, UNIT)), Some(TxError::TooManyUnbondingEntries { max: 2 }));
}

#[test]
fn stakers_are_limited_per_candidate() {
    let mut c = Chain::with(
        3,
        1_000 * UNIT,
        StakingParams { max_stakers_per_candidate: 2, ..staking_params() },
        vec![G0],
        Runtime::new(),
    );
    c.call(0, bond(K, 150 * UNIT));
    assert_eq!(c.call(1, nominate(K, UNIT)), None);
    assert_eq!(c.call(2, nominate(K, UNIT)), Some(TxError::TooManyStakers { max: 2 }));
    assert_eq!(c.call(1, nominate(K, UNIT)), None, "an existing staker can add more");
}

/// A chain where `K` (self-bond 200, nomination 100) sits in the committee of epoch 1 and the tip
/// is the first block of epoch 1.
fn chain_with_k_in_the_committee() -> Chain {
    let mut c = Chain::new(3, 1_000 * UNIT);
    c.block(vec![(0, bond(K, 200 * UNIT))]);
    c.call(1, nominate(K, 100 * UNIT));
    c.advance_to(L);
    assert_eq!(c.committee(), vec![K, G0]);
    c
}

#[test]
fn valid_evidence_slashes_the_fraction_into_the_treasury_and_removes_the_offender_from_the_next_committee() {
    let mut c = chain_with_k_in_the_committee();
    let treasury = c.treasury();
    let fee = c.fee_of(2, submit(evidence(1, K, 5, b"")));
    assert_eq!(c.call(2, submit(evidence(1, K, 5, b""))), None);
    // 10% of 300, from the self-bond and the nomination alike; the fee's treasury share on top.
    let fee_share = fee - fee / 2;
    assert_eq!(c.treasury(), treasury + 30 * UNIT + fee_share);
    let k = c.candidate(&K);
    assert_eq!((k.self_bond, k.nominated, k.jailed), (180 * UNIT, 90 * UNIT, true));
    assert_eq!(c.stake(&K, 1).bonded, 90 * UNIT);
    let record = block_on(c.rt.offence(&c.state, &K, 1, 5)).expect("readable").expect("recorded");
    assert_eq!((record.height, record.slashed), (c.height, 30 * UNIT));
    assert_eq!(c.committee(), vec![K, G0], "the running epoch's committee is not changed");
    c.advance_to(2 * L - 1);
    assert_eq!(c.next_committee(), Some(vec![G0, G1]));
    // A slashed candidate takes no new stake, but its stakers can leave.
    assert_eq!(c.call(1, nominate(K, UNIT)), Some(TxError::CandidateJailed));
    assert_eq!(c.call(0, bond(K, MIN)), Some(TxError::CandidateJailed));
    assert_eq!(c.call(1, unbond(K, 90 * UNIT)), None);
}

#[test]
fn replayed_evidence_is_refused_and_slashes_nothing_more() {
    let mut c = chain_with_k_in_the_committee();
    c.call(2, submit(evidence(1, K, 5, b"")));
    let (treasury, stake) = (c.treasury(), c.candidate(&K).total_stake());
    let fee = c.fee_of(2, submit(evidence(1, K, 5, b"")));
    assert_eq!(c.call(2, submit(evidence(1, K, 5, b""))), Some(TxError::EvidenceReplay { epoch: 1, view: 5 }));
    // The same offence encoded differently is the same offence.
    assert_eq!(c.call(2, submit(evidence(1, K, 5, b"reordered"))), Some(TxError::EvidenceReplay { epoch: 1, view: 5 }));
    let fee2 = c.fee_of(2, submit(evidence(1, K, 5, b"reordered")));
    assert_eq!(c.candidate(&K).total_stake(), stake);
    assert_eq!(c.treasury(), treasury + (fee - fee / 2) + (fee2 - fee2 / 2), "only the fees' share arrived");
}

#[test]
fn evidence_about_a_key_outside_the_committee_is_refused_with_nothing_slashed() {
    let mut c = Chain::new(2, 1_000 * UNIT);
    c.call(0, bond(K, 200 * UNIT));
    // K is a bonded candidate but not in epoch 0's committee.
    let before = c.candidate(&K);
    assert_eq!(c.call(1, submit(evidence(0, K, 1, b""))), Some(TxError::OffenderNotInCommittee { epoch: 0 }));
    assert_eq!(c.candidate(&K), before);
    assert!(block_on(c.rt.offence(&c.state, &K, 0, 1)).expect("readable").is_none());
}

#[test]
fn malformed_forged_future_and_stale_evidence_is_refused_with_nothing_slashed() {
    let mut c = chain_with_k_in_the_committee();
    let stake = c.candidate(&K).total_stake();
    let bad = |e: Option<TxError>| matches!(e, Some(TxError::BadEvidence { .. }));
    assert!(bad(c.call(2, submit(vec![1, 2, 3]))), "bytes that are no envelope");
    let mut honest = b"two votes that do not conflict".to_vec();
    honest.extend_from_slice(&K);
    assert!(bad(c.call(2, submit(Evidence { epoch: 1, proof: honest }.to_bytes()))), "no equivocation");
    assert!(bad(c.call(2, submit(Evidence { epoch: 1, proof: b"conflict".to_vec() }.to_bytes()))), "truncated");
    assert_eq!(c.call(2, submit(evidence(9, K, 1, b""))), Some(TxError::EvidenceUnknownEpoch { epoch: 9 }));
    assert_eq!(
        c.call(2, submit(evidence(u64::MAX, K, 1, b""))),
        Some(TxError::EvidenceUnknownEpoch { epoch: u64::MAX })
    );
    // Evidence about epoch 0 is accepted until first_height(0) + P = 8; G1 was in that committee.
    c.advance_to(P - 1);
    assert_eq!(c.call(2, submit(evidence(0, G1, 1, b""))), Some(TxError::EvidenceExpired { epoch: 0 }));
    assert_eq!(c.candidate(&K).total_stake(), stake);
    assert!(!c.candidate(&G1).jailed);
}

#[test]
fn evidence_about_the_previous_epoch_is_accepted_within_the_unbonding_period() {
    let mut c = chain_with_k_in_the_committee();
    // G1 served in epoch 0 only; the tip is in epoch 1.
    assert_eq!(c.call(2, submit(evidence(0, G1, 3, b""))), None);
    assert!(c.candidate(&G1).jailed);
}

#[test]
fn slashing_reaches_stake_that_started_unbonding_after_the_offence() {
    let mut c = chain_with_k_in_the_committee();
    // The nominator leaves after the offence (epoch 1) but before the evidence arrives.
    c.call(1, unbond(K, 100 * UNIT));
    c.call(2, submit(evidence(1, K, 2, b"")));
    assert_eq!(c.stake(&K, 1).unbonding[0].amount, 90 * UNIT);
    assert_eq!(c.candidate(&K).self_bond, 180 * UNIT);
}

#[test]
fn stake_that_left_before_the_offence_epoch_is_not_slashed() {
    let mut c = Chain::new(3, 1_000 * UNIT);
    c.block(vec![(0, bond(K, 200 * UNIT))]);
    c.call(1, nominate(K, 100 * UNIT));
    c.call(1, unbond(K, 100 * UNIT)); // at height 3, in epoch 0
    c.advance_to(L);
    c.call(2, submit(evidence(1, K, 2, b"")));
    assert_eq!(c.stake(&K, 1).unbonding[0].amount, 100 * UNIT);
    assert_eq!(c.candidate(&K).self_bond, 180 * UNIT);
}

#[test]
fn a_full_slash_takes_everything_and_the_committee_is_never_empty() {
    let mut c = Chain::with(
        1,
        1_000 * UNIT,
        StakingParams { slash_fraction_bps: 10_000, ..staking_params() },
        vec![G0],
        Runtime::with_evidence_verifier(Box::new(FakeVerifier)),
    );
    // G0 gets a self-bond from its owner account? It has none: nominate it instead.
    c.call(0, nominate(G0, 50 * UNIT));
    assert_eq!(c.call(0, submit(evidence(0, G0, 1, b""))), None);
    let g = c.candidate(&G0);
    assert_eq!((g.total_stake(), g.jailed), (0, true));
    assert_eq!(c.stake(&G0, 0), Default::default());
    // No eligible candidate is left: the current committee is kept rather than an empty one.
    c.advance_to(L - 1);
    assert_eq!(c.next_committee(), Some(vec![G0]));
}

#[test]
fn a_runtime_without_a_verifier_refuses_all_evidence() {
    let mut c = Chain::with(1, 1_000 * UNIT, staking_params(), vec![G0, G1], Runtime::new());
    assert!(matches!(c.call(0, submit(evidence(0, G0, 1, b""))), Some(TxError::BadEvidence { .. })));
    assert!(!c.candidate(&G0).jailed);
}

#[test]
fn evidence_from_another_chain_does_not_verify() {
    struct OtherChain;
    impl EvidenceVerifier for OtherChain {
        fn verify(&self, ns: &[u8], e: u64, c: &[ValidatorKey], p: &[u8]) -> Result<Offence, String> {
            // Stands for votes signed under another chain's namespace.
            if ns == consensus_namespace("other-chain").as_slice() {
                FakeVerifier.verify(ns, e, c, p)
            } else {
                Err("bad signature".into())
            }
        }
    }
    let mut c = Chain::with(
        1,
        1_000 * UNIT,
        staking_params(),
        vec![G0, G1],
        Runtime::with_evidence_verifier(Box::new(OtherChain)),
    );
    assert!(matches!(c.call(0, submit(evidence(0, G0, 1, b""))), Some(TxError::BadEvidence { .. })));
}

#[derive(Clone, Debug)]
enum Op {
    Bond(usize, u8, Amount),
    Nominate(usize, u8, Amount),
    Unbond(usize, u8, Amount),
    Withdraw(usize),
    Transfer(usize, usize, Amount),
    Evidence(usize, u8, u64),
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0usize..4;
    let key = 0u8..3;
    let amount = prop_oneof![0..300 * UNIT, Just(0), Just(MIN), Just(u128::MAX)];
    prop_oneof![
        (who.clone(), key.clone(), amount.clone()).prop_map(|(a, k, x)| Op::Bond(a, k, x)),
        (who.clone(), key.clone(), amount.clone()).prop_map(|(a, k, x)| Op::Nominate(a, k, x)),
        (who.clone(), key.clone(), amount.clone()).prop_map(|(a, k, x)| Op::Unbond(a, k, x)),
        who.clone().prop_map(Op::Withdraw),
        (who.clone(), who.clone(), amount).prop_map(|(a, b, x)| Op::Transfer(a, b, x)),
        (who, key, 0u64..3).prop_map(|(a, k, v)| Op::Evidence(a, k, v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_staking_never_creates_or_destroys_tokens(blocks in proptest::collection::vec(proptest::collection::vec(op(), 0..6), 1..14)) {
        let mut c = Chain::new(4, 1_000 * UNIT);
        let keys = [K, K2, G0];
        for block in blocks {
            let mut nonces: Vec<u64> = (0..4).map(|i| c.account(i).nonce).collect();
            let txs: Vec<_> = block.into_iter().map(|o| {
                let (from, call) = match o {
                    Op::Bond(a, k, x) => (a, bond(keys[k as usize], x)),
                    Op::Nominate(a, k, x) => (a, nominate(keys[k as usize], x)),
                    Op::Unbond(a, k, x) => (a, unbond(keys[k as usize], x)),
                    Op::Withdraw(a) => (a, Call::WithdrawUnbonded),
                    Op::Transfer(a, b, x) => (a, Call::Transfer { to: c.addr(b), amount: x }),
                    Op::Evidence(a, k, v) => (a, submit(evidence(c.height.saturating_sub(1) / L, keys[k as usize], v, b""))),
                };
                let k = &c.keys[from];
                let mut tx = Transaction { signer: k.address(), nonce: nonces[from], chain_id: CHAIN.into(), fee: 0, call };
                nonces[from] += 1;
                let size = sign_transaction(k, tx.clone()).to_bytes().len();
                tx.fee = c.params.fees.min_fee(size, &tx.call);
                sign_transaction(k, tx)
            }).collect();
            let built = block_on(c.rt.build_block(&c.state, &c.env(), txs)).expect("builds");
            let out = c.run(&built.txs); // checks the invariant
            prop_assert_eq!(out.next_committee.is_some(), c.height % L == L - 1);
            if let Some(next) = out.next_committee {
                prop_assert!(!next.is_empty() && next.len() <= 2);
            }
        }
    }
}
