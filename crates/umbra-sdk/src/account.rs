//! Checking a node's account answer against its state proof.

use crate::error::SdkError;
use serde::{Deserialize, Serialize};
use umbra_light::Finality;
use umbra_rpc::AccountResponse;
use umbra_state::{StateProof, verify_proof};
use umbra_types::state_keys::{AccountRecord, StateKey};
use umbra_types::{Address, Amount, Hash, SYMBOL, decode, format_amount};

/// Largest encoded account record accepted from a proof (a record is 24 bytes).
const MAX_RECORD_BYTES: usize = 1024;

/// An account's balance and nonce as proven against a block's state root.
///
/// What is proven: the state under `state_root` holds exactly this record for `address` (or,
/// when `exists` is false, holds no record for it). When `finality` is present (answers from
/// [`crate::Client::account`]) the header holding `state_root` was also verified by the light
/// client against the pinned chain: `finality` says how. When it is absent (answers checked with
/// the standalone [`verify_account`]) the header was taken from the node unchecked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedAccount {
    /// The account.
    pub address: Address,
    /// Its proven balance (zero if absent).
    #[serde(with = "amount_str")]
    pub balance: Amount,
    /// Its proven next nonce (zero if absent).
    pub nonce: u64,
    /// Whether the state holds a record for it (inclusion proof) or proves its absence.
    pub exists: bool,
    /// Height of the block whose state root the proof was checked against.
    pub height: u64,
    /// That block's hash.
    pub block_hash: Hash,
    /// That block's state root.
    pub state_root: Hash,
    /// How the light client verified that block (absent: the header was not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finality: Option<Finality>,
}

/// Checks a `state_getAccount` answer for `address`: the proof must authenticate the account's
/// state key against `resp.header.state_root`, and the balance and nonce the node states must
/// equal the proven record (an absent account must be stated as balance 0, nonce 0).
///
/// **Weaker guarantee:** this checks the proof against the header the node names, not that the
/// header is final on the trusted chain (the result has `finality: None`). A node can still
/// invent a header and a state to go with it. [`crate::Client::account`] also verifies the
/// header's finality certificate with the light client; use this function alone only for an
/// answer whose header you verified some other way.
///
/// A missing, malformed or non-authenticating proof is [`SdkError::BadProof`]; a valid proof
/// that contradicts the stated fields (or an answer about another account) is
/// [`SdkError::ProofMismatch`].
pub fn verify_account(address: &Address, resp: &AccountResponse) -> Result<VerifiedAccount, SdkError> {
    let bad = |reason: String| SdkError::BadProof { address: *address, reason };
    let mismatch = |reason: String| SdkError::ProofMismatch { address: *address, reason };
    if resp.address != *address {
        return Err(mismatch(format!("the node answered for another account, {}", resp.address)));
    }
    let Some(proof_hex) = resp.proof.as_deref() else {
        return Err(bad("the node sent no proof".into()));
    };
    let bytes = hex::decode(proof_hex.strip_prefix("0x").unwrap_or(proof_hex))
        .map_err(|e| bad(format!("the proof is not hex: {e}")))?;
    let proof = StateProof::from_bytes(&bytes).map_err(|e| bad(e.to_string()))?;
    let header = &resp.header;
    let key = StateKey::Account(*address).hash();
    let value = verify_proof(header.state_root.as_bytes(), &key, &proof)
        .map_err(|e| bad(format!("{e} (state root {} of block {})", header.state_root, header.height)))?;
    let (record, exists) = match value {
        Some(v) => {
            let record = decode::<AccountRecord>(&v, MAX_RECORD_BYTES)
                .map_err(|e| bad(format!("the proven value is not an account record: {e}")))?;
            (record, true)
        }
        None => (AccountRecord::default(), false),
    };
    let proven = if exists { "the proof shows" } else { "the proof shows the account does not exist, so" };
    if resp.balance != record.balance {
        return Err(mismatch(format!(
            "it states balance {} {SYMBOL} but {proven} {} {SYMBOL}",
            format_amount(resp.balance),
            format_amount(record.balance)
        )));
    }
    if resp.nonce != record.nonce {
        return Err(mismatch(format!("it states nonce {} but {proven} {}", resp.nonce, record.nonce)));
    }
    Ok(VerifiedAccount {
        address: *address,
        balance: record.balance,
        nonce: record.nonce,
        exists,
        height: header.height,
        block_hash: header.hash(),
        state_root: header.state_root,
        finality: None,
    })
}

mod amount_str {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(super) fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use commonware_runtime::{Runner as _, deterministic};
    use std::collections::BTreeMap;
    use umbra_state::{State, StateConfig};
    use umbra_types::{Header, encode};

    /// A state holding `records`, and a proof for each address in `ask` against its root.
    pub(crate) fn prove(records: &[(Address, AccountRecord)], ask: &[Address]) -> ([u8; 32], Vec<String>) {
        let records = records.to_vec();
        let ask = ask.to_vec();
        deterministic::Runner::default().start(|ctx| async move {
            let mut state = State::open(ctx, &StateConfig::default()).await.expect("opens");
            let changes: BTreeMap<_, _> =
                records.iter().map(|(a, r)| (StateKey::Account(*a).hash(), Some(encode(r)))).collect();
            let pending = state.speculate(None, &changes).await.expect("speculates");
            let root = state.commit(&pending).await.expect("commits");
            let mut proofs = Vec::new();
            for a in &ask {
                let p = state.prove(&StateKey::Account(*a).hash()).await.expect("proves");
                proofs.push(hex::encode(p.to_bytes()));
            }
            (root, proofs)
        })
    }

    pub(crate) fn header(root: [u8; 32]) -> Header {
        Header {
            height: 7,
            parent: Hash::ZERO,
            timestamp_ms: 1,
            proposer: [0; 32],
            epoch: 0,
            tx_root: Hash::ZERO,
            state_root: Hash(root),
            messages_root: Hash::ZERO,
            next_committee: None,
        }
    }

    fn alice() -> Address {
        Address([1; 32])
    }

    fn bob() -> Address {
        Address([2; 32])
    }

    fn response(
        address: Address,
        balance: Amount,
        nonce: u64,
        root: [u8; 32],
        proof: Option<String>,
    ) -> AccountResponse {
        AccountResponse { address, balance, nonce, header: header(root), proof }
    }

    fn alice_record() -> AccountRecord {
        AccountRecord { balance: 500, nonce: 3 }
    }

    #[test]
    fn an_honest_answer_with_an_inclusion_proof_verifies() {
        let (root, proofs) = prove(&[(alice(), alice_record())], &[alice()]);
        let resp = response(alice(), 500, 3, root, Some(proofs[0].clone()));
        let v = verify_account(&alice(), &resp).expect("verifies");
        assert_eq!((v.balance, v.nonce, v.exists, v.height), (500, 3, true, 7));
        assert_eq!(v.state_root, Hash(root));
        assert_eq!(v.block_hash, resp.header.hash());
    }

    #[test]
    fn an_absent_account_is_proven_empty() {
        let (root, proofs) = prove(&[(alice(), alice_record())], &[bob()]);
        let v = verify_account(&bob(), &response(bob(), 0, 0, root, Some(proofs[0].clone()))).expect("verifies");
        assert!(!v.exists);
        assert_eq!((v.balance, v.nonce), (0, 0));
    }

    #[test]
    fn a_node_overstating_a_balance_is_caught() {
        let (root, proofs) = prove(&[(alice(), alice_record())], &[alice()]);
        let err = verify_account(&alice(), &response(alice(), 501, 3, root, Some(proofs[0].clone()))).expect_err("lie");
        assert!(matches!(err, SdkError::ProofMismatch { .. }), "{err}");
        assert!(err.to_string().contains("balance"), "{err}");
    }

    #[test]
    fn a_node_misstating_a_nonce_is_caught() {
        let (root, proofs) = prove(&[(alice(), alice_record())], &[alice()]);
        let err = verify_account(&alice(), &response(alice(), 500, 2, root, Some(proofs[0].clone()))).expect_err("lie");
        assert!(matches!(err, SdkError::ProofMismatch { .. }), "{err}");
    }

    #[test]
    fn a_node_claiming_funds_for_a_proven_absent_account_is_caught() {
        let (root, proofs) = prove(&[(alice(), alice_record())], &[bob()]);
        let err = verify_account(&bob(), &response(bob(), 10, 0, root, Some(proofs[0].clone()))).expect_err("lie");
        assert!(matches!(err, SdkError::ProofMismatch { .. }), "{err}");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn a_proof_of_another_account_is_refused() {
        let (root, proofs) = prove(&[(alice(), alice_record()), (bob(), AccountRecord::default())], &[alice()]);
        let err = verify_account(&bob(), &response(bob(), 500, 3, root, Some(proofs[0].clone()))).expect_err("wrong");
        assert!(matches!(err, SdkError::BadProof { .. }), "{err}");
    }

    #[test]
    fn a_proof_against_another_root_is_refused() {
        let (_, proofs) = prove(&[(alice(), alice_record())], &[alice()]);
        let err =
            verify_account(&alice(), &response(alice(), 500, 3, [9; 32], Some(proofs[0].clone()))).expect_err("root");
        assert!(matches!(err, SdkError::BadProof { .. }), "{err}");
        assert!(err.to_string().contains("block 7"), "{err}");
    }

    #[test]
    fn a_missing_or_garbled_proof_is_refused() {
        let no_proof = response(alice(), 0, 0, [0; 32], None);
        assert!(matches!(verify_account(&alice(), &no_proof), Err(SdkError::BadProof { .. })));
        let not_hex = response(alice(), 0, 0, [0; 32], Some("zz".into()));
        assert!(matches!(verify_account(&alice(), &not_hex), Err(SdkError::BadProof { .. })));
        let bogus = response(alice(), 0, 0, [0; 32], Some("00deadbeef".into()));
        assert!(matches!(verify_account(&alice(), &bogus), Err(SdkError::BadProof { .. })));
    }

    #[test]
    fn an_answer_about_another_account_is_a_mismatch() {
        let resp = response(bob(), 0, 0, [0; 32], None);
        assert!(matches!(verify_account(&alice(), &resp), Err(SdkError::ProofMismatch { .. })));
    }
}
