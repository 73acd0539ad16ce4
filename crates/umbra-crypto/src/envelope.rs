//! Key envelopes: HPKE (RFC 9180) base mode with X25519-HKDF-SHA256, HKDF-SHA256 and ChaCha20-Poly1305,
//! and the HKDF-SHA256 key derivation every Umbra key hierarchy uses.
//!
//! An envelope is `enc (32 bytes) || ciphertext`, sealed with `info = "umbra/hpke/v1/" || label`, so an
//! envelope made for one purpose (`master-share`, `cluster-share`, `query`, ...) never opens as another.
//! The caller's AAD binds the context (chain id, recipient, key epoch). Randomness is an argument: the
//! gatekeepers draw it from a seeded ChaCha20 generator so that every gatekeeper produces the same bytes.

use hkdf::Hkdf;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable as _, Kem as _, OpModeR, OpModeS, Serializable as _};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Prefix of every envelope's HPKE `info`.
pub const HPKE_INFO_PREFIX: &[u8] = b"umbra/hpke/v1/";
/// Length of the encapsulated key at the start of an envelope.
pub const ENC_LEN: usize = 32;
/// Length of the AEAD tag at the end of an envelope.
pub const TAG_LEN: usize = 16;

type Kem = X25519HkdfSha256;

/// A 32-byte secret (an X25519 private key, a master or cluster key, a seed); zeroed on drop and never
/// printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Secret32(pub [u8; 32]);

impl Secret32 {
    /// The secret bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(..)")
    }
}

/// Why an envelope could not be sealed or opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The envelope is shorter than an encapsulated key and a tag.
    #[error("envelope is truncated: {len} bytes, at least {min} needed")]
    Truncated {
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// The recipient public key or the encapsulated key is not a usable X25519 point.
    #[error("invalid X25519 key in the envelope or recipient")]
    InvalidKey,
    /// Authentication failed: wrong recipient, wrong label or AAD, or modified bytes.
    #[error("envelope does not open (wrong recipient, label or context, or modified)")]
    Open,
    /// Sealing failed (the recipient key is unusable).
    #[error("envelope could not be sealed")]
    Seal,
}

fn info(label: &str) -> Vec<u8> {
    let mut out = HPKE_INFO_PREFIX.to_vec();
    out.extend_from_slice(label.as_bytes());
    out
}

/// The X25519 public key of `secret` (clamped as X25519 does).
pub fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    match <Kem as hpke::Kem>::PrivateKey::from_bytes(secret) {
        Ok(sk) => to_array(&Kem::sk_to_pk(&sk).to_bytes()),
        // Every 32-byte string is an X25519 scalar; this arm is unreachable in practice.
        Err(_) => [0; 32],
    }
}

/// Seals `plaintext` to `recipient_pk` under `label` and `aad`; returns `enc || ciphertext`.
pub fn seal(
    recipient_pk: &[u8; 32],
    label: &str,
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut impl rand_core::CryptoRng,
) -> Result<Vec<u8>, EnvelopeError> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(recipient_pk).map_err(|_| EnvelopeError::InvalidKey)?;
    let (enc, ct) = hpke::single_shot_seal_with_rng::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeS::Base,
        &pk,
        &info(label),
        plaintext,
        aad,
        rng,
    )
    .map_err(|_| EnvelopeError::Seal)?;
    let mut out = Vec::with_capacity(ENC_LEN + ct.len());
    out.extend_from_slice(&enc.to_bytes());
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens an envelope sealed to the public key of `secret` under `label` and `aad`. Never panics.
pub fn open(secret: &[u8; 32], label: &str, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let min = ENC_LEN + TAG_LEN;
    if sealed.len() < min {
        return Err(EnvelopeError::Truncated { len: sealed.len(), min });
    }
    let (enc, ct) = sealed.split_at(ENC_LEN);
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(secret).map_err(|_| EnvelopeError::InvalidKey)?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| EnvelopeError::InvalidKey)?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(&OpModeR::Base, &sk, &enc, &info(label), ct, aad)
        .map_err(|_| EnvelopeError::Open)
}

/// `HKDF-SHA256(salt = none, ikm = parent, info = label || 0x00 || context)`, 32 bytes: derives a child
/// key. The zero byte separates the label from the context, so `("ab", "c")` and `("a", "bc")` differ.
pub fn kdf(parent: &[u8; 32], label: &str, context: &[u8]) -> [u8; 32] {
    let mut info = Vec::with_capacity(label.len() + 1 + context.len());
    info.extend_from_slice(label.as_bytes());
    info.push(0);
    info.extend_from_slice(context);
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit of 8160, so expanding cannot fail.
    if Hkdf::<Sha256>::new(None, parent).expand(&info, &mut out).is_err() {
        out = [0; 32];
    }
    out
}

fn to_array(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let n = bytes.len().min(32);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng as _;

    fn rng() -> rand_chacha::ChaCha20Rng {
        rand_chacha::ChaCha20Rng::from_seed([9; 32])
    }

    #[test]
    fn an_envelope_opens_with_the_recipient_secret_label_and_aad() {
        let secret = [1u8; 32];
        let sealed = seal(&x25519_public(&secret), "master-share", b"ctx", b"hello", &mut rng()).expect("seal");
        assert_eq!(sealed.len(), ENC_LEN + 5 + TAG_LEN);
        assert_eq!(open(&secret, "master-share", b"ctx", &sealed).expect("open"), b"hello");
        assert_eq!(open(&[2; 32], "master-share", b"ctx", &sealed), Err(EnvelopeError::Open));
        assert_eq!(open(&secret, "cluster-share", b"ctx", &sealed), Err(EnvelopeError::Open));
        assert_eq!(open(&secret, "master-share", b"other", &sealed), Err(EnvelopeError::Open));
        let mut bad = sealed.clone();
        bad[40] ^= 1;
        assert_eq!(open(&secret, "master-share", b"ctx", &bad), Err(EnvelopeError::Open));
    }

    #[test]
    fn the_same_seeded_randomness_gives_byte_identical_envelopes() {
        let pk = x25519_public(&[3; 32]);
        let a = seal(&pk, "l", b"", b"m", &mut rng()).expect("seal");
        let b = seal(&pk, "l", b"", b"m", &mut rng()).expect("seal");
        assert_eq!(a, b);
    }

    #[test]
    fn a_truncated_envelope_is_a_typed_error() {
        assert_eq!(open(&[1; 32], "l", b"", &[0; 10]), Err(EnvelopeError::Truncated { len: 10, min: 48 }));
    }

    #[test]
    fn kdf_separates_labels_and_contexts() {
        let p = [5u8; 32];
        assert_eq!(kdf(&p, "a", b"x"), kdf(&p, "a", b"x"));
        assert_ne!(kdf(&p, "a", b"x"), kdf(&p, "b", b"x"));
        assert_ne!(kdf(&p, "a", b"x"), kdf(&p, "a", b"y"));
        assert_ne!(kdf(&p, "ab", b"c"), kdf(&p, "a", b"bc"));
        assert_ne!(kdf(&p, "a", b""), kdf(&[6; 32], "a", b""));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_open(secret in any::<[u8; 32]>(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = open(&secret, "query", b"aad", &bytes);
        }
    }
}
