//! State proofs: their canonical encoding and their pure verification.

use crate::{
    Key, Root,
    config::{CHUNK_BYTES, MAX_PROOF_BYTES, MAX_PROOF_DIGESTS, StateFamily, StateHasher, value_cfg},
    error::ProofError,
};
use commonware_codec::{Buf, Copying, EncodeSize, Read, ReadExt as _, Write};
use commonware_cryptography::sha256::Digest;
use commonware_storage::qmdb::{
    any::value::VariableEncoding,
    current::ordered::proof::constant::{ExclusionProof, KeyValueProof},
};
use commonware_utils::sequence::FixedBytes;

/// The key type inside QMDB.
pub(crate) type DbKey = FixedBytes<32>;

/// QMDB's proof that a key currently holds a value.
pub(crate) type InclusionInner = KeyValueProof<StateFamily, DbKey, Digest, CHUNK_BYTES>;

/// QMDB's proof that a key currently holds no value.
pub(crate) type ExclusionInner = ExclusionProof<StateFamily, DbKey, VariableEncoding<Vec<u8>>, Digest, CHUNK_BYTES>;

/// Leading byte of an encoded inclusion proof.
const TAG_INCLUSION: u8 = 0;
/// Leading byte of an encoded exclusion proof.
const TAG_EXCLUSION: u8 = 1;

/// A proof of a key's current value, or of its absence, against a state root.
///
/// Produced by [`crate::State::prove`], carried as bytes ([`StateProof::to_bytes`],
/// [`StateProof::from_bytes`]) and checked by [`verify_proof`]. An inclusion proof carries the
/// value; an exclusion proof carries the neighbouring key's entry, so it can be as large as one
/// value (typically 0.6-0.9 KB plus that value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateProof(Inner);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Inner {
    Inclusion { value: Vec<u8>, proof: InclusionInner },
    Exclusion(ExclusionInner),
}

impl StateProof {
    /// Wraps QMDB's inclusion proof of `value`.
    pub(crate) const fn inclusion(value: Vec<u8>, proof: InclusionInner) -> Self {
        Self(Inner::Inclusion { value, proof })
    }

    /// Wraps QMDB's exclusion proof.
    pub(crate) const fn exclusion(proof: ExclusionInner) -> Self {
        Self(Inner::Exclusion(proof))
    }

    /// The canonical encoding of the proof (a tag byte, then the commonware-codec encoding of
    /// the value and QMDB proof). [`StateProof::from_bytes`] accepts exactly these bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.encode_size());
        match &self.0 {
            Inner::Inclusion { value, proof } => {
                TAG_INCLUSION.write(&mut buf);
                value.write(&mut buf);
                proof.write(&mut buf);
            }
            Inner::Exclusion(proof) => {
                TAG_EXCLUSION.write(&mut buf);
                proof.write(&mut buf);
            }
        }
        buf
    }

    /// Decodes a proof from untrusted bytes. Every length is bounded ([`crate::MAX_VALUE_LEN`],
    /// [`MAX_PROOF_DIGESTS`]), trailing bytes and non-canonical encodings are refused, and no
    /// input panics. Decoding does not verify: call [`verify_proof`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProofError> {
        if bytes.len() > MAX_PROOF_BYTES {
            return Err(ProofError::TooLarge { len: bytes.len(), max: MAX_PROOF_BYTES });
        }
        let mut buf = Copying(bytes);
        let proof = Self::read(&mut buf).map_err(|e| ProofError::Malformed { reason: e.to_string() })?;
        if !buf.0.is_empty() {
            return Err(ProofError::Malformed { reason: format!("{} trailing bytes", buf.0.len()) });
        }
        // Some fields (varints, options) admit more than one spelling; accept only ours so a
        // proof has exactly one byte representation.
        if proof.to_bytes() != bytes {
            return Err(ProofError::Malformed { reason: "non-canonical encoding".to_owned() });
        }
        Ok(proof)
    }

    fn read(buf: &mut impl Buf) -> Result<Self, commonware_codec::Error> {
        match u8::read(buf)? {
            TAG_INCLUSION => {
                let value = Vec::<u8>::read_cfg(buf, &value_cfg())?;
                let proof = InclusionInner::read_cfg(buf, &(MAX_PROOF_DIGESTS, ()))?;
                Ok(Self::inclusion(value, proof))
            }
            TAG_EXCLUSION => {
                let cfg = (MAX_PROOF_DIGESTS, ((), value_cfg()), value_cfg());
                Ok(Self::exclusion(ExclusionInner::read_cfg(buf, &cfg)?))
            }
            tag => Err(commonware_codec::Error::InvalidEnum(tag)),
        }
    }

    fn encode_size(&self) -> usize {
        1 + match &self.0 {
            Inner::Inclusion { value, proof } => value.encode_size() + proof.encode_size(),
            Inner::Exclusion(proof) => proof.encode_size(),
        }
    }
}

/// Checks `proof` for `key` against `root`, without any database.
///
/// Returns `Ok(Some(value))` when the proof shows `key` currently holds `value`, `Ok(None)` when
/// it shows `key` holds nothing, and [`ProofError::Mismatch`] when the proof does not
/// authenticate `key` against `root` (any altered byte in proof, value, key or root). An
/// exclusion proof shows that no key lies strictly between two adjacent keys, so it also proves
/// the absence of any other key in that gap: that is a property of absence, not a weakness.
pub fn verify_proof(root: &Root, key: &Key, proof: &StateProof) -> Result<Option<Vec<u8>>, ProofError> {
    let root = Digest::from(*root);
    let key = DbKey::new(*key);
    match &proof.0 {
        Inner::Inclusion { value, proof } => {
            if proof.verify::<StateHasher, VariableEncoding<Vec<u8>>>(key, value.clone(), &root) {
                Ok(Some(value.clone()))
            } else {
                Err(ProofError::Mismatch)
            }
        }
        Inner::Exclusion(proof) => {
            if proof.verify::<StateHasher>(&key, &root) {
                Ok(None)
            } else {
                Err(ProofError::Mismatch)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_is_malformed() {
        assert!(matches!(StateProof::from_bytes(&[]), Err(ProofError::Malformed { .. })));
    }

    #[test]
    fn an_unknown_tag_is_malformed() {
        let mut bytes = vec![7u8];
        bytes.extend_from_slice(&[0u8; 64]);
        assert!(matches!(StateProof::from_bytes(&bytes), Err(ProofError::Malformed { .. })));
    }

    #[test]
    fn an_oversized_input_is_refused_before_decoding() {
        let bytes = vec![0u8; MAX_PROOF_BYTES + 1];
        assert!(matches!(StateProof::from_bytes(&bytes), Err(ProofError::TooLarge { .. })));
    }

    #[test]
    fn a_huge_declared_value_length_is_refused_without_allocating_it() {
        // Tag, then a varint length of u32::MAX for the value.
        let bytes = [TAG_INCLUSION, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(StateProof::from_bytes(&bytes), Err(ProofError::Malformed { .. })));
    }
}
