use crate::{Amount, Hash};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Why an included transaction's call failed. The fee is still paid and the nonce still advances.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum TxError {
    /// The signer's balance after the fee cannot cover the call.
    #[error("insufficient balance: needed {needed}, available {available}")]
    InsufficientBalance {
        /// What the call needed.
        #[serde(with = "crate::genesis::amount_str")]
        needed: Amount,
        /// What the signer had.
        #[serde(with = "crate::genesis::amount_str")]
        available: Amount,
    },
    /// An amount would overflow or exceed the maximum supply.
    #[error("arithmetic overflow")]
    Overflow,
    /// A transfer of zero tokens.
    #[error("amount must be greater than zero")]
    ZeroAmount,
    /// A transfer to oneself.
    #[error("sender and recipient are the same account")]
    SelfTransfer,
}

/// The outcome of one included transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Receipt {
    /// The transaction's hash.
    pub tx_hash: Hash,
    /// The block that included it.
    pub height: u64,
    /// Its position in the block.
    pub index: u32,
    /// The fee charged.
    #[serde(with = "crate::genesis::amount_str")]
    pub fee_paid: Amount,
    /// `None` if the call succeeded, otherwise why it failed.
    pub error: Option<TxError>,
}

impl Receipt {
    /// Whether the call succeeded.
    pub fn is_success(&self) -> bool {
        self.error.is_none()
    }
}
