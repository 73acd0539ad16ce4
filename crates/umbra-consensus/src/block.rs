//! The block as Commonware sees it: an [`umbra_types::Block`] with its id precomputed and its
//! canonical bytes kept, so digest and encoding are never recomputed on the hot path.

use bytes::BufMut;
use commonware_codec::{Buf, Copying, EncodeSize, Error as CodecError, Read, ReadExt as _, Write, varint::UInt};
use commonware_consensus::{Heightable, types::Height};
use commonware_cryptography::{Digestible, ed25519, sha256};
use std::sync::Arc;
use umbra_types::{Block, Hash, ValidatorKey};

/// Upper bound on the length prefix in front of a block's borsh bytes.
const LENGTH_PREFIX_MAX: usize = <UInt<u32> as commonware_codec::MaxEncodeSize>::MAX_ENCODE_SIZE;

/// An ordered block: the chain's block plus its id (the header hash) and its canonical bytes.
///
/// Wire and archive format: a varint byte length followed by the canonical borsh encoding. The
/// codec config is the block size limit; decoding refuses anything longer, anything that is not
/// exactly one canonical borsh value, and any trailing bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChainBlock {
    block: Arc<Block>,
    digest: sha256::Digest,
    bytes: Arc<[u8]>,
}

impl ChainBlock {
    /// Wraps `block`, computing its id and encoding once.
    pub(crate) fn new(block: Block) -> Self {
        let bytes: Arc<[u8]> = umbra_types::encode(&block).into();
        let digest = to_digest(block.hash());
        Self { block: Arc::new(block), digest, bytes }
    }

    /// The chain's block.
    pub(crate) fn block(&self) -> &Block {
        &self.block
    }

    /// Length of the canonical borsh encoding.
    pub(crate) fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    /// Upper bound on the framed encoding of a block of at most `max_block_bytes` borsh bytes.
    pub(crate) fn max_framed_size(max_block_bytes: usize) -> usize {
        LENGTH_PREFIX_MAX + max_block_bytes
    }
}

/// A chain hash as a Commonware digest (same 32 bytes).
pub(crate) fn to_digest(hash: Hash) -> sha256::Digest {
    sha256::Digest(hash.0)
}

/// A Commonware digest as a chain hash (same 32 bytes).
pub(crate) fn to_hash(digest: &sha256::Digest) -> Hash {
    Hash(digest.0)
}

/// The chain's name for a consensus key: the 32 raw ed25519 public key bytes.
pub fn validator_key(pk: &ed25519::PublicKey) -> ValidatorKey {
    let mut key = [0u8; 32];
    key.copy_from_slice(pk.as_ref());
    key
}

/// The consensus key named by `key`, or `None` if the bytes are not a valid ed25519 point.
pub fn public_key(key: &ValidatorKey) -> Option<ed25519::PublicKey> {
    ed25519::PublicKey::read(&mut Copying(key)).ok()
}

impl Write for ChainBlock {
    fn write(&self, buf: &mut impl BufMut) {
        // Blocks are built or decoded under `max_block_bytes`, which is far below 4 GiB.
        let len = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX);
        UInt(len).write(buf);
        buf.put_slice(&self.bytes);
    }
}

impl EncodeSize for ChainBlock {
    fn encode_size(&self) -> usize {
        let len = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX);
        UInt(len).encode_size() + self.bytes.len()
    }
}

impl Read for ChainBlock {
    /// The largest accepted borsh encoding, in bytes.
    type Cfg = usize;

    fn read_cfg(buf: &mut impl Buf, max: &usize) -> Result<Self, CodecError> {
        let len = u32::from(UInt::<u32>::read(buf)?) as usize;
        if len > *max {
            return Err(CodecError::InvalidLength(len));
        }
        commonware_codec::util::at_least(buf, len)?;
        let mut bytes = vec![0u8; len];
        buf.copy_to_slice(&mut bytes);
        let block: Block =
            umbra_types::decode(&bytes, *max).map_err(|_| CodecError::Invalid("umbra::Block", "malformed borsh"))?;
        let canonical = ChainBlock::new(block);
        if *canonical.bytes != *bytes {
            return Err(CodecError::Invalid("umbra::Block", "non-canonical encoding"));
        }
        Ok(canonical)
    }
}

impl Digestible for ChainBlock {
    type Digest = sha256::Digest;

    fn digest(&self) -> sha256::Digest {
        self.digest
    }
}

impl Heightable for ChainBlock {
    fn height(&self) -> Height {
        Height::new(self.block.header.height)
    }
}

impl commonware_consensus::Block for ChainBlock {
    fn parent(&self) -> sha256::Digest {
        to_digest(self.block.header.parent)
    }
}

impl commonware_consensus::BoundedBlock for ChainBlock {
    fn max_encode_size(max: &usize) -> usize {
        Self::max_framed_size(*max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{Decode as _, Encode as _};
    use commonware_consensus::Block as _;
    use commonware_cryptography::Signer as _;
    use umbra_types::Header;

    fn block(height: u64) -> Block {
        Block {
            header: Header {
                height,
                parent: Hash([7; 32]),
                timestamp_ms: 42,
                proposer: [1; 32],
                epoch: 0,
                tx_root: Hash::ZERO,
                state_root: Hash([9; 32]),
                messages_root: Hash::ZERO,
                next_committee: None,
            },
            txs: vec![],
        }
    }

    #[test]
    fn the_digest_is_the_header_hash_and_the_parent_is_the_header_parent() {
        let b = ChainBlock::new(block(3));
        assert_eq!(b.digest().0, b.block().hash().0);
        assert_eq!(b.parent().0, [7; 32]);
        assert_eq!(b.height(), Height::new(3));
    }

    #[test]
    fn a_block_round_trips_and_its_encoding_is_canonical() {
        let b = ChainBlock::new(block(3));
        let bytes = b.encode();
        assert_eq!(bytes.len(), b.encode_size());
        let decoded = ChainBlock::decode_cfg(bytes.clone(), &1024).expect("decodes");
        assert_eq!(decoded, b);
        assert_eq!(decoded.encode(), bytes);
    }

    #[test]
    fn a_block_over_the_size_limit_is_refused() {
        let b = ChainBlock::new(block(3));
        let limit = b.encoded_len() - 1;
        assert!(ChainBlock::decode_cfg(b.encode(), &limit).is_err());
        assert!(b.encode_size() <= ChainBlock::max_framed_size(b.encoded_len()));
    }

    #[test]
    fn trailing_or_truncated_bytes_are_refused() {
        let b = ChainBlock::new(block(3));
        let mut bytes = b.encode().to_vec();
        bytes.push(0);
        assert!(ChainBlock::decode_cfg(Copying(&bytes), &1024).is_err());
        let bytes = b.encode().to_vec();
        assert!(ChainBlock::decode_cfg(Copying(&bytes[..bytes.len() - 1]), &1024).is_err());
    }

    #[test]
    fn a_non_canonical_option_tag_is_refused() {
        // Borsh refuses an Option tag other than 0 or 1; flipping the `next_committee` tag to 2
        // must not decode.
        let b = ChainBlock::new(block(3));
        let mut bytes = b.encode().to_vec();
        // The tag is the last header byte, right before the empty tx vector (4 zero bytes).
        let tag = bytes.len() - 5;
        assert_eq!(bytes[tag], 0);
        bytes[tag] = 2;
        assert!(ChainBlock::decode_cfg(Copying(&bytes), &1024).is_err());
    }

    #[test]
    fn validator_keys_convert_both_ways() {
        let pk = ed25519::PrivateKey::from_seed(5).public_key();
        let key = validator_key(&pk);
        assert_eq!(public_key(&key), Some(pk));
    }
}
