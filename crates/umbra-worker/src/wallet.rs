//! An agent's wallets on the worker: what `env.wallet`, `env.eth` and `env.attest` do with the agent's contract
//! key of the current key epoch (see `docs/worker-protocol.md`, "Agent wallets and attested outputs").
//!
//! - **Umbra account**: the contract account (`umbra_types::contracts::contract_account`), stable across key
//!   epochs. A transfer becomes an `AgentTransfer` egress payload; the chain checks membership, the paused flag,
//!   the balance and the owner's rolling daily cap. The worker refuses at once what the chain would surely
//!   refuse (a cap of 0, one transfer above the whole cap, a bad recipient); everything else lands
//!   asynchronously, so the handler gets `status: "pending"` and an id.
//! - **Ethereum account**: secp256k1 seeded by `umbra_crypto::agent_eth_seed(contract key)`. The first time
//!   this worker uses it for an agent in a key epoch, it queues an `AgentWallet` payload publishing the address,
//!   signed by the contract's ed25519 key, ahead of anything that needs it.
//! - **Attested outputs**: an `AgentOutput` payload signed by the contract's ed25519 key (over
//!   `umbra_types::agent_wallet::output_signing_bytes`) and the Ethereum key (EIP-191 over
//!   `umbra_crypto::attested_output_digest(agent, nonce, output)`), with a random 64-bit nonce.

use crate::agents::AgentView;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use umbra_crypto::{EthWallet, agent_eth_seed};
use umbra_engine::{HostError, WalletRequest, contract_signer};
use umbra_types::agent_wallet::{MAX_OUTPUT_BYTES, output_signing_bytes, wallet_signing_bytes};
use umbra_types::agents::AgentRecord;
use umbra_types::contracts::{ContractId, contract_account};
use umbra_types::registry::{EgressPayload, KeyEpoch};
use umbra_types::{Address, Hash};
use zeroize::Zeroizing;

fn hex0x(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

/// An account as a handler may write it: bech32m (`umb1...`) or 64 hex digits (with or without `0x`).
fn parse_account(s: &str) -> Option<Address> {
    if let Ok(a) = s.parse::<Address>() {
        return Some(a);
    }
    let bytes = hex::decode(s.strip_prefix("0x").unwrap_or(s)).ok()?;
    Some(Address(bytes.try_into().ok()?))
}

/// Serves one wallet request of `record`'s handler against `view`; payloads for the chain go to `pending`,
/// `published` remembers the Ethereum addresses this worker already queued.
pub(crate) fn serve(
    view: &AgentView,
    record: &AgentRecord,
    request: &WalletRequest,
    pending: &mut Vec<EgressPayload>,
    published: &mut BTreeSet<(ContractId, KeyEpoch)>,
) -> Result<Value, HostError> {
    let agent = record.id;
    let epoch = view.key_epoch;
    let key = || {
        view.contract_key(&agent, epoch)
            .ok_or_else(|| HostError(format!("this worker holds no contract key of epoch {epoch} for the agent")))
    };
    let eth = |key: &Zeroizing<[u8; 32]>| {
        EthWallet::from_seed(agent_eth_seed(key)).map_err(|e| HostError(format!("eth: {e}")))
    };
    // Publishes the Ethereum address of this epoch once per worker run (the chain takes the same address again
    // as a no-op, so other members publishing it too is harmless).
    let mut publish = |key: &Zeroizing<[u8; 32]>, wallet: &EthWallet, pending: &mut Vec<EgressPayload>| {
        if published.insert((agent, epoch)) {
            let eth_address = wallet.address();
            let signature =
                contract_signer(key).sign(&wallet_signing_bytes(&view.chain_id, &agent, epoch, &eth_address));
            pending.push(EgressPayload::AgentWallet { agent, key_epoch: epoch, eth_address, signature });
        }
    };
    match request {
        WalletRequest::Address => Ok(json!(contract_account(&agent).to_string())),
        WalletRequest::Transfer { to, amount } => {
            let to = parse_account(to).ok_or_else(|| {
                HostError(format!("wallet.transfer: {to:?} is not an account (umb1... or 64 hex digits)"))
            })?;
            let from = contract_account(&agent);
            if to == from {
                return Err(HostError("wallet.transfer: the recipient is the agent's own account".into()));
            }
            let cap = record.policy.spend_cap_per_day;
            if cap == 0 {
                return Err(HostError(
                    "wallet.transfer: the owner's spend cap is 0, so this agent may not spend (the owner sets \
                     spend_cap_per_day in the agent's policy)"
                        .into(),
                ));
            }
            if *amount > cap {
                return Err(HostError(format!(
                    "wallet.transfer: {amount} is more than the owner's whole spend cap of {cap} per day"
                )));
            }
            let id: [u8; 16] = rand::random();
            pending.push(EgressPayload::AgentTransfer { agent, id, to, amount: *amount });
            tracing::info!(target: "worker.agents", agent = %Hash(agent), "agent transfer queued");
            Ok(json!({
                "id": hex::encode(id),
                "status": "pending",
                "from": from.to_string(),
                "to": to.to_string(),
                "amount": amount.to_string(),
            }))
        }
        WalletRequest::EthAddress => {
            let key = key()?;
            let wallet = eth(&key)?;
            publish(&key, &wallet, pending);
            Ok(json!(wallet.address_checksum()))
        }
        WalletRequest::EthSignMessage(msg) => {
            let key = key()?;
            let wallet = eth(&key)?;
            publish(&key, &wallet, pending);
            Ok(json!(hex0x(&wallet.sign_message(msg))))
        }
        WalletRequest::EthSignTransaction(tx) => {
            let key = key()?;
            let wallet = eth(&key)?;
            publish(&key, &wallet, pending);
            let signed = wallet.sign_transaction(tx);
            Ok(json!({ "raw": hex0x(&signed.raw), "hash": hex0x(&signed.hash), "from": wallet.address_checksum() }))
        }
        WalletRequest::Attest(output) => {
            if output.is_empty() || output.len() > MAX_OUTPUT_BYTES {
                return Err(HostError(format!(
                    "attest: an attested output is 1 to {MAX_OUTPUT_BYTES} bytes, this one is {}",
                    output.len()
                )));
            }
            let key = key()?;
            let wallet = eth(&key)?;
            publish(&key, &wallet, pending);
            let nonce: u64 = rand::random();
            let signature =
                contract_signer(&key).sign(&output_signing_bytes(&view.chain_id, &agent, epoch, nonce, output));
            let eth_signature = wallet.sign_attested_output(&agent, nonce, output);
            pending.push(EgressPayload::AgentOutput {
                agent,
                key_epoch: epoch,
                nonce,
                output: output.clone(),
                signature,
                eth_signature: eth_signature.to_vec(),
            });
            tracing::info!(target: "worker.agents", agent = %Hash(agent), "attested output queued");
            Ok(json!({
                "agent": hex::encode(agent),
                "keyEpoch": epoch,
                "nonce": nonce.to_string(),
                "ethAddress": wallet.address_checksum(),
                "signature": hex0x(&signature),
                "ethSignature": hex0x(&eth_signature),
                "status": "pending",
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use umbra_types::agents::AgentPolicy;

    fn view_with_cap(cap: u128) -> (AgentView, AgentRecord) {
        let id = [9; 32];
        let mut view = AgentView::for_benchmark("umbra-test", id, b"export default {}".to_vec());
        let record = view.agents.get_mut(&id).expect("agent");
        record.policy = AgentPolicy { spend_cap_per_day: cap, ..record.policy.clone() };
        let record = record.clone();
        (view, record)
    }

    #[test]
    fn an_attestation_publishes_the_address_once_and_both_signatures_verify() {
        let (view, record) = view_with_cap(0);
        let (mut pending, mut published) = (Vec::new(), BTreeSet::new());
        let out = b"{\"price\":\"1\"}".to_vec();
        serve(&view, &record, &WalletRequest::Attest(out.clone()), &mut pending, &mut published).expect("attests");
        serve(&view, &record, &WalletRequest::Attest(out.clone()), &mut pending, &mut published).expect("attests");
        let kinds: Vec<&str> = pending.iter().map(EgressPayload::kind).collect();
        assert_eq!(kinds, ["agent_wallet", "agent_output", "agent_output"]);
        let key = view.contract_key(&record.id, view.key_epoch).expect("key");
        let signer = contract_signer(&key).address();
        let EgressPayload::AgentWallet { eth_address, signature, .. } = &pending[0] else { panic!("wallet first") };
        let msg = wallet_signing_bytes("umbra-test", &record.id, view.key_epoch, eth_address);
        assert!(umbra_crypto::verify(&signer, &msg, signature).is_ok());
        let EgressPayload::AgentOutput { nonce, output, signature, eth_signature, .. } = &pending[1] else {
            panic!("an output")
        };
        let msg = output_signing_bytes("umbra-test", &record.id, view.key_epoch, *nonce, output);
        assert!(umbra_crypto::verify(&signer, &msg, signature).is_ok());
        let sig: [u8; 65] = eth_signature.as_slice().try_into().expect("65 bytes");
        assert!(umbra_crypto::verify_attested_output(eth_address, &record.id, *nonce, output, &sig));
    }

    #[test]
    fn transfers_the_chain_would_refuse_are_refused_at_once_and_queue_nothing() {
        let to = Address([4; 32]).to_string();
        let (mut pending, mut published) = (Vec::new(), BTreeSet::new());
        let (view, record) = view_with_cap(0);
        let e =
            serve(&view, &record, &WalletRequest::Transfer { to: to.clone(), amount: 1 }, &mut pending, &mut published)
                .expect_err("cap 0");
        assert!(e.0.contains("spend cap is 0"), "{}", e.0);
        let (view, record) = view_with_cap(10);
        let e = serve(
            &view,
            &record,
            &WalletRequest::Transfer { to: to.clone(), amount: 11 },
            &mut pending,
            &mut published,
        )
        .expect_err("over the cap");
        assert!(e.0.contains("whole spend cap of 10"), "{}", e.0);
        let e = serve(
            &view,
            &record,
            &WalletRequest::Transfer { to: "bob".into(), amount: 1 },
            &mut pending,
            &mut published,
        )
        .expect_err("bad recipient");
        assert!(e.0.contains("not an account"), "{}", e.0);
        assert!(pending.is_empty());
        let ok = serve(&view, &record, &WalletRequest::Transfer { to, amount: 10 }, &mut pending, &mut published)
            .expect("within the cap");
        assert_eq!(ok["status"], "pending");
        assert!(matches!(pending[..], [EgressPayload::AgentTransfer { amount: 10, .. }]));
    }
}
