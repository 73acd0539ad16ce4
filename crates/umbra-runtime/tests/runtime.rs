//! Scenario tests of the state machine over an in-memory state.
#![allow(clippy::result_large_err)]

use futures::executor::block_on;
use proptest::prelude::*;
use std::collections::BTreeMap;
use umbra_crypto::{Keypair, sign_transaction};
use umbra_runtime::{AdmissionError, BlockEnv, BlockError, ChangeSet, Runtime, RuntimeError, StateRead};
use umbra_types::{
    Address, Allocation, Amount, Call, Genesis, GenesisValidator, Params, SignedTransaction, TokenInfo, Transaction,
    TxError, UNIT,
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

struct Chain {
    rt: Runtime,
    state: MemState,
    height: u64,
    keys: Vec<Keypair>,
    proposer: Address,
}

const CHAIN: &str = "umbra-test";

impl Chain {
    fn new(accounts: usize, each: Amount) -> Chain {
        Chain::with_params(accounts, each, Params::default())
    }

    fn with_params(accounts: usize, each: Amount, params: Params) -> Chain {
        let keys: Vec<Keypair> = (0..accounts).map(|i| Keypair::from_seed([i as u8 + 1; 32])).collect();
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: 1_000,
            token: TokenInfo::default(),
            allocations: keys.iter().map(|k| Allocation { address: k.address(), amount: each }).collect(),
            validators: vec![GenesisValidator { name: "v".into(), key: [200; 32] }],
            params,
            registry: Default::default(),
            governance: Default::default(),
        };
        let rt = Runtime::new();
        let mut state = MemState::default();
        let changes = block_on(rt.genesis(&genesis, &state)).expect("genesis applies");
        state.apply(changes);
        Chain { rt, state, height: 0, keys, proposer: Address([200; 32]) }
    }

    fn env(&self) -> BlockEnv {
        BlockEnv {
            height: self.height + 1,
            timestamp_ms: 1_000 + self.height + 1,
            proposer: self.proposer,
            epoch: 0,
            parent: umbra_types::Hash([self.height as u8; 32]),
        }
    }

    fn tx(&self, from: usize, nonce: u64, call: Call) -> SignedTransaction {
        let k = &self.keys[from];
        let mut tx = Transaction { signer: k.address(), nonce, chain_id: CHAIN.into(), fee: 0, call };
        let size = sign_transaction(k, tx.clone()).to_bytes().len();
        tx.fee = Params::default().fees.min_fee(size, &tx.call);
        sign_transaction(k, tx)
    }

    fn transfer(&self, from: usize, to: usize, nonce: u64, amount: Amount) -> SignedTransaction {
        self.tx(from, nonce, Call::Transfer { to: self.keys[to].address(), amount })
    }

    fn run(&mut self, txs: &[SignedTransaction]) -> Result<Vec<umbra_types::Receipt>, BlockError> {
        let out = block_on(self.rt.execute_block(&self.state, &self.env(), txs, true))?;
        self.state.apply(out.changes);
        self.height += 1;
        self.assert_supply_unchanged();
        Ok(out.receipts)
    }

    fn balance(&self, a: &Address) -> Amount {
        block_on(self.rt.account(&self.state, a)).expect("readable").balance
    }

    fn nonce(&self, i: usize) -> u64 {
        block_on(self.rt.account(&self.state, &self.keys[i].address())).expect("readable").nonce
    }

    /// The supply invariant: every token is in some account or staked (bonded or unbonding), and
    /// the total never changes.
    fn assert_supply_unchanged(&self) {
        let mut holders: Vec<Address> = self.keys.iter().map(|k| k.address()).collect();
        holders.push(self.proposer);
        holders.push(Address::module("treasury"));
        let sum: Amount = holders.iter().map(|a| self.balance(a)).sum();
        let bonded = block_on(self.rt.total_bonded(&self.state)).expect("readable");
        let unbonding = block_on(self.rt.total_unbonding(&self.state)).expect("readable");
        let issued = block_on(self.rt.total_issued(&self.state)).expect("readable");
        assert_eq!(sum + bonded + unbonding, issued, "tokens were created or lost at height {}", self.height);
        assert!(issued <= umbra_types::MAX_SUPPLY);
    }
}

#[test]
fn a_transfer_moves_tokens_and_the_fee_goes_to_proposer_and_treasury() {
    let mut c = Chain::new(2, 100 * UNIT);
    let tx = c.transfer(0, 1, 0, 10 * UNIT);
    let fee = tx.tx.fee;
    let receipts = c.run(&[tx]).expect("valid block");
    assert!(receipts[0].is_success());
    assert_eq!(c.balance(&c.keys[0].address()), 90 * UNIT - fee);
    assert_eq!(c.balance(&c.keys[1].address()), 110 * UNIT);
    assert_eq!(c.balance(&c.proposer), fee / 2);
    assert_eq!(c.balance(&Address::module("treasury")), fee - fee / 2);
    assert_eq!(c.nonce(0), 1);
}

#[test]
fn a_transfer_beyond_the_balance_fails_but_pays_the_fee_and_bumps_the_nonce() {
    let mut c = Chain::new(2, 100 * UNIT);
    let tx = c.transfer(0, 1, 0, 1_000 * UNIT);
    let fee = tx.tx.fee;
    let receipts = c.run(&[tx]).expect("valid block");
    assert!(matches!(receipts[0].error, Some(TxError::InsufficientBalance { .. })));
    assert_eq!(c.balance(&c.keys[0].address()), 100 * UNIT - fee);
    assert_eq!(c.balance(&c.keys[1].address()), 100 * UNIT);
    assert_eq!(c.nonce(0), 1);
}

#[test]
fn an_amount_at_the_integer_limit_fails_cleanly() {
    let mut c = Chain::new(2, 100 * UNIT);
    let receipts = c.run(&[c.transfer(0, 1, 0, u128::MAX)]).expect("valid block");
    assert!(matches!(receipts[0].error, Some(TxError::InsufficientBalance { .. })));
}

#[test]
fn zero_and_self_transfers_fail_with_typed_errors() {
    let mut c = Chain::new(2, 100 * UNIT);
    let receipts = c.run(&[c.transfer(0, 1, 0, 0), c.transfer(0, 0, 1, 5)]).expect("valid block");
    assert_eq!(receipts[0].error, Some(TxError::ZeroAmount));
    assert_eq!(receipts[1].error, Some(TxError::SelfTransfer));
}

fn invalid_reason(r: Result<Vec<umbra_types::Receipt>, BlockError>) -> AdmissionError {
    match r {
        Err(BlockError::InvalidTransaction { error, .. }) => error,
        other => panic!("expected an invalid block, got {other:?}"),
    }
}

#[test]
fn a_block_reusing_a_nonce_is_invalid_and_changes_nothing() {
    let mut c = Chain::new(2, 100 * UNIT);
    c.run(&[c.transfer(0, 1, 0, UNIT)]).expect("valid block");
    let before = c.state.0.clone();
    assert!(matches!(invalid_reason(c.run(&[c.transfer(0, 1, 0, UNIT)])), AdmissionError::NonceUsed { .. }));
    assert_eq!(c.state.0, before);
}

#[test]
fn a_block_with_a_nonce_gap_is_invalid() {
    let mut c = Chain::new(2, 100 * UNIT);
    assert!(matches!(invalid_reason(c.run(&[c.transfer(0, 1, 5, UNIT)])), AdmissionError::NonceGap { .. }));
}

#[test]
fn a_block_with_a_bad_signature_is_invalid() {
    let mut c = Chain::new(2, 100 * UNIT);
    let mut tx = c.transfer(0, 1, 0, UNIT);
    tx.signature[10] ^= 0xff;
    assert!(matches!(invalid_reason(c.run(&[tx])), AdmissionError::BadSignature(_)));
}

#[test]
fn a_block_with_a_fee_below_the_minimum_is_invalid() {
    let mut c = Chain::new(2, 100 * UNIT);
    let k = &c.keys[0];
    let tx = sign_transaction(
        k,
        Transaction {
            signer: k.address(),
            nonce: 0,
            chain_id: CHAIN.into(),
            fee: 1,
            call: Call::Transfer { to: c.keys[1].address(), amount: 1 },
        },
    );
    assert!(matches!(invalid_reason(c.run(&[tx])), AdmissionError::FeeTooLow { .. }));
}

#[test]
fn a_block_with_another_chains_transaction_is_invalid() {
    let mut c = Chain::new(2, 100 * UNIT);
    let k = &c.keys[0];
    let tx = sign_transaction(
        k,
        Transaction {
            signer: k.address(),
            nonce: 0,
            chain_id: "other-chain".into(),
            fee: UNIT,
            call: Call::Transfer { to: c.keys[1].address(), amount: 1 },
        },
    );
    assert!(matches!(invalid_reason(c.run(&[tx])), AdmissionError::WrongChainId { .. }));
}

#[test]
fn a_block_with_an_unpayable_fee_is_invalid() {
    let mut c = Chain::new(2, 1_000);
    assert!(matches!(invalid_reason(c.run(&[c.transfer(0, 1, 0, 1)])), AdmissionError::CannotPayFee { .. }));
}

#[test]
fn a_block_with_the_same_transaction_twice_is_invalid() {
    let mut c = Chain::new(2, 100 * UNIT);
    let tx = c.transfer(0, 1, 0, UNIT);
    assert!(matches!(c.run(&[tx.clone(), tx]), Err(BlockError::Duplicate(_))));
}

#[test]
fn building_a_block_leaves_out_stale_transactions_and_keeps_the_rest() {
    let mut c = Chain::new(3, 100 * UNIT);
    c.run(&[c.transfer(0, 1, 0, UNIT)]).expect("valid block");
    let candidates = vec![c.transfer(0, 1, 0, UNIT), c.transfer(0, 1, 1, UNIT), c.transfer(2, 1, 0, UNIT)];
    let built = block_on(c.rt.build_block(&c.state, &c.env(), candidates)).expect("builds");
    assert_eq!(built.txs.len(), 2);
    assert!(matches!(built.rejected[0].1, AdmissionError::NonceUsed { .. }));
    // What the builder produced is exactly what verifiers compute.
    let verified = block_on(c.rt.execute_block(&c.state, &c.env(), &built.txs, true)).expect("valid");
    assert_eq!(verified.changes, built.outcome.changes);
    assert_eq!(verified.receipts, built.outcome.receipts);
}

#[test]
fn the_same_block_gives_the_same_changes_every_time() {
    let c = Chain::new(2, 100 * UNIT);
    let txs = [c.transfer(0, 1, 0, UNIT), c.transfer(1, 0, 0, 2 * UNIT)];
    let a = block_on(c.rt.execute_block(&c.state, &c.env(), &txs, true)).expect("valid");
    let b = block_on(c.rt.execute_block(&c.state, &c.env(), &txs, true)).expect("valid");
    assert_eq!(a, b);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_transfers_never_create_or_destroy_tokens(
        blocks in proptest::collection::vec(
            proptest::collection::vec((0usize..4, 0usize..4, 0u128..200 * UNIT), 0..8), 1..6)
    ) {
        let mut c = Chain::new(4, 100 * UNIT);
        for block in blocks {
            let mut nonces: Vec<u64> = (0..4).map(|i| c.nonce(i)).collect();
            let txs: Vec<_> = block.iter().map(|(f, t, a)| {
                let tx = c.transfer(*f, *t, nonces[*f], *a);
                nonces[*f] += 1;
                tx
            }).collect();
            // Build (as a proposer does), which drops anything unpayable; invariant checked in run().
            let built = block_on(c.rt.build_block(&c.state, &c.env(), txs)).expect("builds");
            c.run(&built.txs).expect("a built block is valid");
        }
    }
}

fn rewarded(reserve: Amount, budget: Amount) -> Params {
    let mut p = Params { rewards: umbra_types::RewardParams { reserve, block_budget: budget }, ..Params::default() };
    p.staking.validator_reward_share_bps = 2_500;
    p
}

#[test]
fn each_block_pays_the_proposer_its_share_of_the_budget_from_the_reserve() {
    let mut c = Chain::with_params(2, 100 * UNIT, rewarded(1_000 * UNIT, 4 * UNIT));
    let issued = block_on(c.rt.total_issued(&c.state)).expect("readable");
    for _ in 0..3 {
        c.run(&[]).expect("valid empty block");
    }
    // A quarter of 4 UMB per block, for three blocks, minted from the reserve.
    assert_eq!(c.balance(&c.proposer), 3 * UNIT);
    assert_eq!(block_on(c.rt.total_issued(&c.state)).expect("readable"), issued + 3 * UNIT);
    assert_eq!(block_on(c.rt.rewards_reserve(&c.state)).expect("readable"), 997 * UNIT);
}

#[test]
fn rewards_stop_when_the_reserve_is_exhausted_and_never_pass_the_maximum_supply() {
    let mut c = Chain::with_params(1, 100 * UNIT, rewarded(UNIT + UNIT / 2, 4 * UNIT));
    for _ in 0..4 {
        c.run(&[]).expect("valid empty block");
    }
    assert_eq!(c.balance(&c.proposer), UNIT + UNIT / 2, "only what the reserve held is paid");
    assert_eq!(block_on(c.rt.rewards_reserve(&c.state)).expect("readable"), 0);
    let issued = block_on(c.rt.total_issued(&c.state)).expect("readable");
    assert!(issued <= umbra_types::MAX_SUPPLY);
}

#[test]
fn a_genesis_whose_allocations_and_reserve_exceed_the_maximum_supply_is_refused() {
    let mut p = Params::default();
    p.rewards.reserve = umbra_types::MAX_SUPPLY;
    let g = Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 0,
        token: TokenInfo::default(),
        allocations: vec![Allocation { address: Address([1; 32]), amount: 1 }],
        validators: vec![GenesisValidator { name: "v".into(), key: [200; 32] }],
        params: p,
        registry: Default::default(),
        governance: Default::default(),
    };
    assert!(g.validate().is_err());
    assert!(block_on(Runtime::new().genesis(&g, &MemState::default())).is_err());
}
