//! Typed keys of the authenticated state, one section per module.
//!
//! The state stores 32-byte keys: each typed key is hashed with a per-module tag. They are public API
//! because a proof names the key it is about, and clients rebuild the key to check a proof.

use crate::{Address, Amount, sha256};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// A key of the authenticated state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub enum StateKey {
    /// `system`: the last applied block (height, hash, time).
    SystemTip,
    /// `system`: the chain parameters.
    SystemParams,
    /// `system`: the chain id and genesis facts.
    SystemChain,
    /// `balances`: an account's balance and nonce.
    Account(Address),
    /// `balances`: total tokens issued so far (never above the maximum supply).
    TotalIssued,
}

impl StateKey {
    /// The 32-byte key the state stores this under.
    pub fn hash(&self) -> [u8; 32] {
        sha256(&[b"umbra/state/v1", &crate::encode(self)]).0
    }
}

/// `balances`: an account's record.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AccountRecord {
    /// Spendable balance in the smallest unit.
    #[serde(with = "crate::genesis::amount_str")]
    pub balance: Amount,
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
}

/// `system`: the last applied block.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Tip {
    /// Height of the last applied block.
    pub height: u64,
    /// Its timestamp.
    pub timestamp_ms: u64,
}
