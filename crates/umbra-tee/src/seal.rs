//! The sealed-blob format every provider shares: a version byte, a random nonce and an AEAD ciphertext.
//!
//! Layout (version 1): `0x01 || nonce (24 bytes) || XChaCha20-Poly1305(ciphertext || tag)`, with associated
//! data `"umbra-tee/sealed/v1" || 0x01 || label`. XChaCha20-Poly1305 is ChaCha20-Poly1305 with a 24-byte
//! nonce: random nonces stay safe for any number of blobs under one sealing key, which a 12-byte nonce
//! does not promise. The label names what is sealed (for example `"identity-key"`), so a blob sealed for
//! one purpose cannot be passed off as another.

use crate::platform::PlatformError;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The only sealed-blob version this code writes and reads.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const AAD_TAG: &[u8] = b"umbra-tee/sealed/v1";

/// Why data could not be sealed or unsealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The blob is shorter than a version byte, a nonce and a tag.
    #[error("sealed blob is truncated ({0} bytes)")]
    Truncated(usize),
    /// The blob was written by an unknown (probably newer) format version.
    #[error("sealed blob has unknown version {0}")]
    UnknownVersion(u8),
    /// Authentication failed: the blob was modified, sealed under another label, or by other code or
    /// another machine (a different sealing key).
    #[error("sealed blob does not authenticate (tampered, wrong label, or sealed by other code or another machine)")]
    Tampered,
    /// The plaintext is too long for the cipher.
    #[error("plaintext too long to seal")]
    TooLong,
    /// The platform could not provide its sealing key.
    #[error("sealing key unavailable: {0}")]
    Key(#[from] PlatformError),
}

/// A 32-byte AEAD key derived with HKDF-SHA256; zeroed on drop.
pub(crate) struct SealingKey(Zeroizing<[u8; 32]>);

impl SealingKey {
    /// `HKDF-SHA256(salt, ikm)` expanded with `info` to 32 bytes.
    pub(crate) fn derive(salt: &[u8], ikm: &[u8], info: &[u8]) -> SealingKey {
        let mut key = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        #[allow(clippy::expect_used)]
        Hkdf::<Sha256>::new(Some(salt), ikm).expand(info, key.as_mut()).expect("32 bytes is a valid HKDF length");
        SealingKey(key)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&(*self.0).into())
    }

    fn aad(label: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(AAD_TAG.len() + 1 + label.len());
        aad.extend_from_slice(AAD_TAG);
        aad.push(VERSION);
        aad.extend_from_slice(label.as_bytes());
        aad
    }

    pub(crate) fn seal(&self, label: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let aad = Self::aad(label);
        let ct = self
            .cipher()
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &aad })
            .map_err(|_| SealError::TooLong)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub(crate) fn unseal(&self, label: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let (&version, rest) = sealed.split_first().ok_or(SealError::Truncated(0))?;
        if version != VERSION {
            return Err(SealError::UnknownVersion(version));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Truncated(sealed.len()));
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let mut nonce_bytes = [0u8; NONCE_LEN];
        nonce_bytes.copy_from_slice(nonce);
        let aad = Self::aad(label);
        self.cipher()
            .decrypt(&XNonce::from(nonce_bytes), Payload { msg: ct, aad: &aad })
            .map_err(|_| SealError::Tampered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ikm: &[u8]) -> SealingKey {
        SealingKey::derive(b"salt", ikm, b"info")
    }

    #[test]
    fn sealed_data_unseals_under_the_same_key_and_label() {
        let k = key(b"machine");
        let blob = k.seal("state", b"secret").expect("seal");
        assert_eq!(blob[0], VERSION);
        assert_eq!(blob.len(), 1 + NONCE_LEN + 6 + TAG_LEN);
        assert_eq!(k.unseal("state", &blob).expect("unseal"), b"secret");
    }

    #[test]
    fn sealing_twice_uses_fresh_nonces() {
        let k = key(b"machine");
        assert_ne!(k.seal("l", b"x").expect("seal"), k.seal("l", b"x").expect("seal"));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let k = key(b"machine");
        let blob = k.seal("state", b"secret").expect("seal");
        for i in 1..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 1;
            assert!(matches!(k.unseal("state", &bad), Err(SealError::Tampered)), "byte {i}");
        }
    }

    #[test]
    fn another_key_label_version_or_truncation_is_refused() {
        let blob = key(b"machine").seal("state", b"secret").expect("seal");
        assert!(matches!(key(b"other").unseal("state", &blob), Err(SealError::Tampered)));
        assert!(matches!(key(b"machine").unseal("keys", &blob), Err(SealError::Tampered)));
        let mut v2 = blob.clone();
        v2[0] = 2;
        assert!(matches!(key(b"machine").unseal("state", &v2), Err(SealError::UnknownVersion(2))));
        assert!(matches!(key(b"machine").unseal("state", &blob[..20]), Err(SealError::Truncated(20))));
        assert!(matches!(key(b"machine").unseal("state", &[]), Err(SealError::Truncated(0))));
    }
}
