use crate::{Hash, SignedTransaction, encode, sha256};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// A validator's consensus public key (ed25519, 32 bytes). The same bytes, read as an
/// [`crate::Address`], are the validator's account, where its share of fees is paid.
pub type ValidatorKey = [u8; 32];

/// A block header. Its hash is the block's id; it commits to the transactions (`tx_root`), the state
/// after applying them (`state_root`) and the messages the block emitted for workers (`messages_root`).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Header {
    /// Height: genesis is 0.
    pub height: u64,
    /// Hash of the parent header.
    pub parent: Hash,
    /// Milliseconds since the Unix epoch, chosen by the proposer, strictly increasing.
    pub timestamp_ms: u64,
    /// The proposing validator's consensus key (all zeros in genesis).
    #[serde(with = "hex32")]
    pub proposer: ValidatorKey,
    /// The consensus epoch this block belongs to.
    pub epoch: u64,
    /// Merkle root of the transaction hashes, in block order.
    pub tx_root: Hash,
    /// Root of the authenticated state after applying this block.
    pub state_root: Hash,
    /// Merkle root of the chain-to-worker messages this block emitted.
    pub messages_root: Hash,
    /// In the last block of an epoch: the next epoch's committee.
    pub next_committee: Option<Vec<ValidatorKey>>,
}

impl Header {
    /// The block id: SHA-256 of the canonical header encoding.
    pub fn hash(&self) -> Hash {
        sha256(&[b"umbra/header/v1", &encode(self)])
    }
}

/// A block: a header and the transactions it orders.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// Transactions in execution order.
    pub txs: Vec<SignedTransaction>,
}

impl Block {
    /// The block id (the header hash).
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// The block's height.
    pub fn height(&self) -> u64 {
        self.header.height
    }
}

pub(crate) mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(crate) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let b = hex::decode(s.trim_start_matches("0x")).map_err(serde::de::Error::custom)?;
        b.try_into().map_err(|_| serde::de::Error::custom("a key is 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            height: 1,
            parent: Hash::ZERO,
            timestamp_ms: 5,
            proposer: [3; 32],
            epoch: 0,
            tx_root: Hash::ZERO,
            state_root: Hash([1; 32]),
            messages_root: Hash::ZERO,
            next_committee: None,
        }
    }

    #[test]
    fn the_block_id_changes_with_any_header_field() {
        let a = header();
        let mut b = header();
        b.state_root = Hash([2; 32]);
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn a_block_round_trips_through_the_codec() {
        let blk = Block { header: header(), txs: vec![] };
        assert_eq!(crate::decode::<Block>(&encode(&blk), 1 << 20), Ok(blk));
    }
}
