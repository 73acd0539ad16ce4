//! Building, pricing and sending transfers.

use crate::client::Client;
use crate::error::SdkError;
use umbra_crypto::{Keypair, sign_transaction};
use umbra_rpc::ChainInfo;
use umbra_types::{Address, Amount, Call, FeeParams, Hash, SignedTransaction, Transaction, encode};

/// The chain's minimum fee for `tx` once signed.
///
/// The fee is a fixed-width field (borsh writes a `u128` as 16 bytes) and a signature is always 64
/// bytes, so the encoded size, and with it the minimum, does not depend on the fee or signature:
/// the size is measured with placeholders.
pub fn min_fee(tx: &Transaction, fees: &FeeParams) -> Amount {
    let size = encode(&SignedTransaction { tx: tx.clone(), signature: [0; 64] }).len();
    fees.min_fee(size, &tx.call)
}

/// Builds and signs a transfer of `amount` from `key` to `to` with the given nonce, paying `fee`
/// or, when `None`, the chain's minimum fee.
///
/// Refuses (before anything is signed) a zero amount, a transfer to oneself and a fee below the
/// minimum: the chain would charge the fee and fail the call, or refuse the transaction.
pub fn build_transfer(
    key: &Keypair,
    chain: &ChainInfo,
    nonce: u64,
    to: Address,
    amount: Amount,
    fee: Option<Amount>,
) -> Result<SignedTransaction, SdkError> {
    if amount == 0 {
        return Err(SdkError::InvalidTransfer("the amount must be greater than zero".into()));
    }
    if to == key.address() {
        return Err(SdkError::InvalidTransfer(format!("sender and recipient are the same account ({to})")));
    }
    let mut tx = Transaction {
        signer: key.address(),
        nonce,
        chain_id: chain.chain_id.clone(),
        fee: 0,
        call: Call::Transfer { to, amount },
    };
    let minimum = min_fee(&tx, &chain.fees);
    tx.fee = match fee {
        None => minimum,
        Some(offered) if offered < minimum => return Err(SdkError::FeeTooLow { offered, minimum }),
        Some(offered) => offered,
    };
    Ok(sign_transaction(key, tx))
}

/// Sends `amount` from `key` to `to`: reads the chain id, fee schedule and the signer's next
/// nonce from the node, builds and signs the transfer ([`build_transfer`]) and submits it.
/// Returns the transaction hash as soon as the mempool accepts it; see
/// [`Client::wait_for_tx`] to wait for finalization.
pub async fn transfer(
    client: &Client,
    key: &Keypair,
    to: Address,
    amount: Amount,
    fee: Option<Amount>,
) -> Result<Hash, SdkError> {
    let chain = client.chain_info().await?;
    let nonce = client.next_nonce(&key.address()).await?;
    let tx = build_transfer(key, &chain, nonce, to, amount, fee)?;
    client.submit(&tx).await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use umbra_crypto::verify_transaction;
    use umbra_types::{TokenInfo, UNIT};

    pub(crate) fn chain() -> ChainInfo {
        ChainInfo {
            chain_id: "umbra-test".into(),
            genesis_hash: Hash::ZERO,
            token: TokenInfo::default(),
            validators: vec![],
            tee_dev_enabled: true,
            fees: FeeParams {
                base: 1_000,
                per_byte: 10,
                transfer: 7,
                proposer_share_bps: 5_000,
                ..FeeParams::default()
            },
            max_tx_bytes: 65_536,
            epoch_length: u64::MAX,
        }
    }

    fn to() -> Address {
        Address([2; 32])
    }

    #[test]
    fn a_transfer_pays_exactly_the_minimum_fee_for_its_signed_size() {
        let key = Keypair::from_seed([1; 32]);
        let tx = build_transfer(&key, &chain(), 4, to(), 5 * UNIT, None).expect("builds");
        let expected = chain().fees.min_fee(tx.to_bytes().len(), &tx.tx.call);
        assert_eq!(tx.tx.fee, expected);
        assert_eq!(expected, 1_000 + 10 * tx.to_bytes().len() as u128 + 7);
        assert_eq!((tx.tx.nonce, tx.tx.chain_id.as_str(), tx.tx.signer), (4, "umbra-test", key.address()));
        assert_eq!(verify_transaction(&tx), Ok(()));
    }

    #[test]
    fn the_encoded_size_does_not_depend_on_the_fee() {
        let key = Keypair::from_seed([1; 32]);
        let small = build_transfer(&key, &chain(), 0, to(), 1, None).expect("builds");
        let large = build_transfer(&key, &chain(), 0, to(), 1, Some(u128::MAX)).expect("builds");
        assert_eq!(small.to_bytes().len(), large.to_bytes().len());
    }

    #[test]
    fn a_higher_explicit_fee_is_kept() {
        let key = Keypair::from_seed([1; 32]);
        let tx = build_transfer(&key, &chain(), 0, to(), 1, Some(UNIT)).expect("builds");
        assert_eq!(tx.tx.fee, UNIT);
    }

    #[test]
    fn a_fee_below_the_minimum_is_refused_before_signing() {
        let key = Keypair::from_seed([1; 32]);
        let err = build_transfer(&key, &chain(), 0, to(), 1, Some(1)).expect_err("too low");
        assert!(matches!(err, SdkError::FeeTooLow { offered: 1, .. }), "{err}");
    }

    #[test]
    fn a_zero_or_self_transfer_is_refused() {
        let key = Keypair::from_seed([1; 32]);
        assert!(matches!(build_transfer(&key, &chain(), 0, to(), 0, None), Err(SdkError::InvalidTransfer(_))));
        assert!(matches!(build_transfer(&key, &chain(), 0, key.address(), 1, None), Err(SdkError::InvalidTransfer(_))));
    }
}
