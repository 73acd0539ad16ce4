//! Scenario tests of agent wallets and attested outputs: transfers from the agent's account within the owner's
//! rolling daily cap (refused beyond the cap, beyond the balance, with cap 0 and while paused, each moving
//! nothing), one Ethereum address per key epoch (a conflicting one refused), and attested outputs accepted only
//! with both signatures right, from a cluster member, within the size bound.
#![allow(clippy::result_large_err, dead_code)]

use umbra_crypto::{EthWallet, Keypair};
use umbra_types::agent_wallet::{
    AgentEthAddress, AgentSpend, AttestedOutput, MAX_OUTPUT_BYTES, output_signing_bytes, wallet_signing_bytes,
};
use umbra_types::agents::AgentPolicy;
use umbra_types::contracts::{CodeKind, ContractPublic, code_hash, contract_account, contract_id};
use umbra_types::state_keys::StateKey;
use umbra_types::{Address, Amount, Call, EgressPayload, Origin, TxError, UNIT, sha256};

mod common;
use common::*;

const AGENT_JS: &[u8] = b"export default { async fetch(request, env) { return new Response('ok'); } };";
const OWNER: usize = 2;
const RECIPIENT: usize = 3;

/// An agent with published contract keys (played by the test) and a funded account.
struct Agent {
    s: Setup,
    id: [u8; 32],
    key: Keypair,
    eth: EthWallet,
    /// The next egress sequence of each worker.
    seqs: [u64; 4],
}

fn value<T: borsh::BorshDeserialize>(s: &Setup, key: &StateKey) -> Option<T> {
    s.c.state.0.get(&key.hash()).map(|v| umbra_types::decode(v, v.len()).expect("decodes"))
}

fn balance(s: &Setup, a: &Address) -> Amount {
    value::<umbra_types::state_keys::AccountRecord>(s, &StateKey::Account(*a)).map(|r| r.balance).unwrap_or(0)
}

fn agent_with(cap: Amount, fund: Amount) -> Agent {
    agent_on(setup(), cap, fund)
}

fn agent_on(mut s: Setup, cap: Amount, fund: Amount) -> Agent {
    let policy = AgentPolicy { public: true, spend_cap_per_day: cap, ..AgentPolicy::default() };
    s.c.ok(OWNER, Call::DeployAgent { code: AGENT_JS.to_vec(), cluster: CLUSTER, salt: b"w".to_vec(), policy });
    let id = contract_id(&s.c.op(OWNER), &code_hash(CodeKind::JavaScript, AGENT_JS), b"w", CLUSTER);
    s.c.extra_holders.push(contract_account(&id));
    let key = Keypair::from_seed(sha256(&[b"contract key", &id]).0);
    let public = ContractPublic { x25519: [71; 32], ed25519: key.address().0 };
    let payload = EgressPayload::ContractKeys { contract: id, key_epoch: 1, public };
    let tx = s.c.carry(sign_egress(&s.cluster_key, Origin::Cluster(CLUSTER), 0, payload));
    assert_eq!(s.c.run(vec![tx]).0[0].error, None);
    if fund > 0 {
        s.c.ok(OWNER, Call::Transfer { to: contract_account(&id), amount: fund });
    }
    let eth = EthWallet::from_seed(sha256(&[b"eth key", &id]).0).expect("a valid seed");
    Agent { s, id, key, eth, seqs: [0; 4] }
}

impl Agent {
    /// Carries `payload` from worker `w` (2 and 3 are members, 1 is not); returns the call's error.
    fn send(&mut self, w: usize, payload: EgressPayload) -> Option<TxError> {
        let seq = self.seqs[w];
        self.seqs[w] += 1;
        let tx = self.s.c.carry(self.s.ws[w].egress(seq, payload));
        let (r, rejected) = self.s.c.run(vec![tx]);
        assert!(rejected.is_empty(), "{rejected:?}");
        r[0].error.clone()
    }

    fn transfer(&mut self, id: u8, amount: Amount) -> Option<TxError> {
        let to = self.s.c.op(RECIPIENT);
        self.send(2, EgressPayload::AgentTransfer { agent: self.id, id: [id; 16], to, amount })
    }

    fn wallet_payload(&self, key_epoch: u64, eth: [u8; 20]) -> EgressPayload {
        let signature = self.key.sign(&wallet_signing_bytes(CHAIN, &self.id, key_epoch, &eth));
        EgressPayload::AgentWallet { agent: self.id, key_epoch, eth_address: eth, signature }
    }

    fn output_payload(&self, nonce: u64, output: &[u8]) -> EgressPayload {
        EgressPayload::AgentOutput {
            agent: self.id,
            key_epoch: 1,
            nonce,
            output: output.to_vec(),
            signature: self.key.sign(&output_signing_bytes(CHAIN, &self.id, 1, nonce, output)),
            eth_signature: self.eth.sign_attested_output(&self.id, nonce, output).to_vec(),
        }
    }

    fn spend(&self) -> AgentSpend {
        value(&self.s, &StateKey::AgentSpend(self.id)).unwrap_or_default()
    }

    fn outputs(&self) -> Vec<AttestedOutput> {
        value(&self.s, &StateKey::AgentOutputs(self.id)).unwrap_or_default()
    }

    fn wallets(&self) -> Vec<AgentEthAddress> {
        value(&self.s, &StateKey::AgentWallets(self.id)).unwrap_or_default()
    }
}

#[test]
fn transfers_within_the_daily_cap_land_and_one_beyond_the_cap_or_the_balance_moves_nothing() {
    let mut a = agent_with(10 * UNIT, 8 * UNIT);
    let account = contract_account(&a.id);
    let to = a.s.c.op(RECIPIENT);
    let before = balance(&a.s, &to);
    assert_eq!(a.transfer(1, 4 * UNIT), None);
    assert_eq!(balance(&a.s, &to), before + 4 * UNIT);
    assert_eq!(balance(&a.s, &account), 4 * UNIT);
    assert_eq!(a.spend().transfers.len(), 1);
    // 4 spent: 7 more would pass the cap of 10.
    assert_eq!(
        a.transfer(2, 7 * UNIT),
        Some(TxError::AgentSpendCap { cap: 10 * UNIT, spent: 4 * UNIT, amount: 7 * UNIT })
    );
    // 5 is within the cap but beyond the 4 left in the account.
    assert_eq!(a.transfer(3, 5 * UNIT), Some(TxError::InsufficientBalance { needed: 5 * UNIT, available: 4 * UNIT }));
    assert_eq!(balance(&a.s, &to), before + 4 * UNIT, "the refused transfers moved nothing");
    assert_eq!(balance(&a.s, &account), 4 * UNIT);
    assert_eq!(a.spend().transfers.len(), 1, "refused transfers count nothing against the cap");
    // The same transfer id from the same worker twice is refused.
    assert!(matches!(a.transfer(1, UNIT), Some(TxError::ContractPrecondition { .. })));
    a.s.c.assert_supply_unchanged();
}

#[test]
fn an_agent_with_cap_zero_or_paused_or_asked_by_an_outsider_may_not_spend() {
    let mut a = agent_with(0, 5 * UNIT);
    let account = contract_account(&a.id);
    assert_eq!(a.transfer(1, 1), Some(TxError::AgentSpendCap { cap: 0, spent: 0, amount: 1 }));
    let mut a = agent_with(10 * UNIT, 5 * UNIT);
    let to = a.s.c.op(RECIPIENT);
    let payload = EgressPayload::AgentTransfer { agent: a.id, id: [9; 16], to, amount: UNIT };
    let err = a.send(1, payload).expect("an outsider is refused");
    assert!(err.to_string().contains("not an active member"), "{err}");
    a.s.c.ok(OWNER, Call::PauseAgent { agent: a.id });
    let err = a.transfer(1, UNIT).expect("a paused agent is refused");
    assert!(err.to_string().contains("paused"), "{err}");
    assert_eq!(balance(&a.s, &account), 5 * UNIT, "nothing moved");
    a.s.c.ok(OWNER, Call::ResumeAgent { agent: a.id });
    assert_eq!(a.transfer(1, UNIT), None, "resumed, it spends again");
}

#[test]
fn one_ethereum_address_per_key_epoch_is_kept_and_a_conflicting_one_is_refused() {
    let mut a = agent_with(0, 0);
    let eth = a.eth.address();
    assert_eq!(a.send(2, a.wallet_payload(1, eth)), None);
    assert_eq!(a.send(3, a.wallet_payload(1, eth)), None, "the same address again (another member) is a no-op");
    assert_eq!(a.wallets().len(), 1);
    let err = a.send(2, a.wallet_payload(1, [7; 20])).expect("a conflicting address is refused");
    assert!(err.to_string().contains("another Ethereum address"), "{err}");
    // Not signed by the contract's key of the epoch.
    let forged = EgressPayload::AgentWallet { agent: a.id, key_epoch: 1, eth_address: [7; 20], signature: [1; 64] };
    assert!(a.send(2, forged).is_some());
    // No contract key of epoch 2 is published.
    assert!(a.send(2, a.wallet_payload(2, [7; 20])).is_some());
    let w = a.wallets();
    assert_eq!((w.len(), w[0].key_epoch, w[0].address, w[0].worker), (1, 1, eth, a.s.ws[2].id()));
}

#[test]
fn an_attested_output_lands_only_with_both_signatures_right_from_a_member_and_within_the_size_bound() {
    let mut a = agent_with(0, 0);
    let out = br#"{"pair":"ETH/USD","price":"3120.55"}"#;
    let err = a.send(2, a.output_payload(1, out)).expect("no Ethereum address published yet");
    assert!(err.to_string().contains("no published Ethereum address"), "{err}");
    let eth = a.eth.address();
    assert_eq!(a.send(2, a.wallet_payload(1, eth)), None);
    assert_eq!(a.send(2, a.output_payload(1, out)), None);
    let list = a.outputs();
    assert_eq!((list.len(), list[0].index, list[0].output.as_slice(), list[0].nonce), (1, 0, &out[..], 1));

    // A forged ed25519 signature.
    let mut forged = a.output_payload(2, out);
    if let EgressPayload::AgentOutput { signature, .. } = &mut forged {
        signature[0] ^= 1;
    }
    assert!(a.send(2, forged).expect("refused").to_string().contains("contract key"));
    // An Ethereum signature by another key.
    let mut forged = a.output_payload(3, out);
    let other = EthWallet::from_seed([5; 32]).expect("seed");
    if let EgressPayload::AgentOutput { eth_signature, .. } = &mut forged {
        *eth_signature = other.sign_attested_output(&a.id, 3, out).to_vec();
    }
    assert!(a.send(2, forged).expect("refused").to_string().contains("Ethereum signature"));
    // A truncated Ethereum signature.
    let mut forged = a.output_payload(4, out);
    if let EgressPayload::AgentOutput { eth_signature, .. } = &mut forged {
        eth_signature.pop();
    }
    assert!(a.send(2, forged).is_some());
    // From a worker outside the cluster.
    let err = a.send(1, a.output_payload(5, out)).expect("refused");
    assert!(err.to_string().contains("not an active member"), "{err}");
    // Oversized, and empty.
    let big = vec![b'x'; MAX_OUTPUT_BYTES + 1];
    assert!(a.send(2, a.output_payload(6, &big)).expect("refused").to_string().contains("1 to 4096 bytes"));
    assert!(a.send(2, a.output_payload(7, b"")).is_some());
    // A replayed nonce.
    assert!(a.send(3, a.output_payload(1, out)).expect("refused").to_string().contains("nonce"));
    assert_eq!(a.outputs().len(), 1, "nothing refused was recorded");
    // The next one is numbered after the first.
    assert_eq!(a.send(3, a.output_payload(8, b"second")), None);
    let list = a.outputs();
    assert_eq!(
        list.iter().map(|o| (o.index, o.worker)).collect::<Vec<_>>(),
        [(0, a.s.ws[2].id()), (1, a.s.ws[3].id())]
    );
}

#[test]
fn the_cap_counts_a_rolling_day_of_blocks_so_spending_frees_up_as_old_transfers_age_out() {
    // A "day" of 4 blocks: target_block_ms = 86_400_000 / 4.
    let mut params = umbra_types::Params::default();
    params.economics.target_block_ms = 21_600_000;
    let chain = Chain::new(dev_policy(), params, 1_000);
    let mut a = agent_on(setup_on(chain), 5 * UNIT, 20 * UNIT);
    let to = a.s.c.op(RECIPIENT);
    let before = balance(&a.s, &to);
    assert_eq!(a.transfer(1, 5 * UNIT), None);
    let landed = a.s.c.height;
    assert_eq!(a.transfer(2, UNIT), Some(TxError::AgentSpendCap { cap: 5 * UNIT, spent: 5 * UNIT, amount: UNIT }));
    // Blocks landed+1 ..= landed+3 still see it (each transfer attempt is one block).
    while a.s.c.height + 1 < landed + 4 {
        assert!(matches!(a.transfer(3, UNIT), Some(TxError::AgentSpendCap { .. })), "at {}", a.s.c.height + 1);
    }
    // At landed + 4 it is out of the window: spending is allowed again, and the old record is dropped.
    assert_eq!(a.transfer(4, 5 * UNIT), None, "at {}", a.s.c.height);
    assert_eq!(a.s.c.height, landed + 4);
    assert_eq!(a.spend().transfers.iter().map(|t| t.height).collect::<Vec<_>>(), [landed + 4]);
    assert_eq!(balance(&a.s, &to), before + 10 * UNIT);
}
