//! The `dev` provider: simulated attestation and sealing so every worker path runs without a TEE.
//!
//! Nothing here is protected by hardware, and everything says so: the quote kind is [`TeeKind::Dev`], the
//! TCB status [`TcbStatus::Simulated`], `is_simulated()` is true, and a policy that does not enable dev
//! refuses the quotes.
//!
//! Dev quote layout (202 bytes): `"UMBRADEV" || version (1) || kind code (1, dev = 0) || measurement (32)
//! || report data (64) || signer public key (32) || ed25519 signature (64)`, the signature covering
//! `"umbra-tee/dev-quote/v1" || kind code || measurement || report data`. The signer must be a dev
//! attestation key that genesis lists. The magic cannot be mistaken for a DCAP header (whose first two
//! bytes are the version 3, 4 or 5).
//!
//! Sealing key: `HKDF-SHA256(salt = "umbra-tee/dev-seal/v1", ikm = machine secret, info = measurement)`,
//! the machine secret being 32 random bytes in a file created on first use (mode 0600).

use crate::platform::{Attester, Identity, PlatformError, Sealer, read};
use crate::seal::{SealError, SealingKey};
use crate::types::{Measurement, TcbStatus, TeeKind};
use crate::verify::{Registers, VerifiedQuote, VerifyError};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::path::Path;
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"UMBRADEV";
const VERSION: u8 = 1;
const SIGNING_TAG: &[u8] = b"umbra-tee/dev-quote/v1";
const SEAL_SALT: &[u8] = b"umbra-tee/dev-seal/v1";
/// Length of a dev quote.
const QUOTE_LEN: usize = 8 + 1 + 1 + 32 + 64 + 32 + 64;

/// The simulated platform: a dev attestation key, a configured measurement and a per-machine secret.
pub struct DevPlatform {
    key: SigningKey,
    measurement: Measurement,
    sealing: SealingKey,
}

impl DevPlatform {
    /// A dev platform attesting with the dev attestation key `attestation_seed` (whose public half genesis
    /// lists) as `measurement`, sealing under the machine secret at `machine_secret` (created with 32
    /// random bytes if absent).
    pub fn open(
        machine_secret: &Path,
        attestation_seed: [u8; 32],
        measurement: Measurement,
    ) -> Result<DevPlatform, PlatformError> {
        let secret = machine_secret_at(machine_secret)?;
        let sealing = SealingKey::derive(SEAL_SALT, secret.as_ref(), &measurement.0);
        Ok(DevPlatform { key: SigningKey::from_bytes(&attestation_seed), measurement, sealing })
    }

    /// The public half of the dev attestation key: what genesis must list for these quotes to verify.
    pub fn attestation_public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }
}

impl std::fmt::Debug for DevPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DevPlatform(simulated, key {}, {:?})", hex::encode(self.attestation_public_key()), self.measurement)
    }
}

impl Identity for DevPlatform {
    fn kind(&self) -> TeeKind {
        TeeKind::Dev
    }

    fn measurement(&self) -> Result<Measurement, PlatformError> {
        Ok(self.measurement)
    }
}

impl Attester for DevPlatform {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, PlatformError> {
        let signature = self.key.sign(&signed_message(&self.measurement, report_data));
        let mut q = Vec::with_capacity(QUOTE_LEN);
        q.extend_from_slice(MAGIC);
        q.push(VERSION);
        q.push(TeeKind::Dev.code());
        q.extend_from_slice(&self.measurement.0);
        q.extend_from_slice(report_data);
        q.extend_from_slice(&self.attestation_public_key());
        q.extend_from_slice(&signature.to_bytes());
        Ok(q)
    }
}

impl Sealer for DevPlatform {
    fn seal(&self, label: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        self.sealing.seal(label, plaintext)
    }

    fn unseal(&self, label: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.sealing.unseal(label, sealed)
    }
}

fn signed_message(measurement: &Measurement, report_data: &[u8; 64]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_TAG.len() + 1 + 32 + 64);
    m.extend_from_slice(SIGNING_TAG);
    m.push(TeeKind::Dev.code());
    m.extend_from_slice(&measurement.0);
    m.extend_from_slice(report_data);
    m
}

/// True if `quote` starts like a dev quote.
pub(crate) fn is_dev_quote(quote: &[u8]) -> bool {
    quote.starts_with(MAGIC)
}

/// Verifies a dev quote's layout and signature, and that its signer is one of `trusted_keys`.
pub(crate) fn verify_dev_quote(quote: &[u8], trusted_keys: &[[u8; 32]]) -> Result<VerifiedQuote, VerifyError> {
    if quote.len() != QUOTE_LEN || !is_dev_quote(quote) {
        return Err(VerifyError::Malformed(format!("a dev quote is {QUOTE_LEN} bytes starting \"UMBRADEV\"")));
    }
    let (header, rest) = quote.split_at(10);
    if header[8] != VERSION || header[9] != TeeKind::Dev.code() {
        return Err(VerifyError::Malformed(format!("unknown dev quote version {} or kind {}", header[8], header[9])));
    }
    let (measurement, rest) = rest.split_at(32);
    let (report_data, rest) = rest.split_at(64);
    let (signer, signature) = rest.split_at(32);
    let measurement = Measurement(to_array(measurement));
    let report_data: [u8; 64] = to_array(report_data);
    let signer: [u8; 32] = to_array(signer);
    if !trusted_keys.contains(&signer) {
        return Err(VerifyError::UnknownDevKey(hex::encode(signer)));
    }
    let key = VerifyingKey::from_bytes(&signer).map_err(|_| VerifyError::BadDevSignature)?;
    let signature = Signature::from_bytes(&to_array(signature));
    key.verify_strict(&signed_message(&measurement, &report_data), &signature)
        .map_err(|_| VerifyError::BadDevSignature)?;
    Ok(VerifiedQuote {
        kind: TeeKind::Dev,
        measurement,
        report_data,
        tcb_status: TcbStatus::Simulated,
        advisory_ids: Vec::new(),
        registers: Registers::Dev { signer },
    })
}

/// Copies a slice whose length the caller has fixed by `split_at`.
fn to_array<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(s);
    out
}

/// Reads the 32-byte machine secret, creating it (mode 0600, never overwriting) if it does not exist.
fn machine_secret_at(path: &Path) -> Result<Zeroizing<[u8; 32]>, PlatformError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut f) => {
            let secret = Zeroizing::new(rand::random::<[u8; 32]>());
            f.write_all(secret.as_ref()).and_then(|()| f.sync_all()).map_err(|e| PlatformError::io(path, e))?;
            return Ok(secret);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(PlatformError::io(path, e)),
    }
    let bytes = Zeroizing::new(read(path)?);
    if bytes.len() != 32 {
        return Err(PlatformError::Malformed(format!(
            "{} holds {} bytes; a dev machine secret is 32",
            path.display(),
            bytes.len()
        )));
    }
    Ok(Zeroizing::new(to_array(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(dir: &Path, measurement: [u8; 32]) -> DevPlatform {
        DevPlatform::open(&dir.join("machine-secret"), [7; 32], Measurement(measurement)).expect("open")
    }

    #[test]
    fn a_dev_quote_verifies_and_says_it_is_simulated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = platform(dir.path(), [1; 32]);
        assert!(p.is_simulated());
        let quote = p.quote(&[5; 64]).expect("quote");
        assert_eq!(quote.len(), QUOTE_LEN);
        let v = verify_dev_quote(&quote, &[p.attestation_public_key()]).expect("verify");
        assert_eq!(v.kind, TeeKind::Dev);
        assert!(v.is_simulated());
        assert_eq!(v.tcb_status, TcbStatus::Simulated);
        assert_eq!(v.measurement, Measurement([1; 32]));
        assert_eq!(v.report_data, [5; 64]);
    }

    #[test]
    fn a_dev_quote_from_an_unlisted_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let quote = platform(dir.path(), [1; 32]).quote(&[5; 64]).expect("quote");
        assert!(matches!(verify_dev_quote(&quote, &[[9; 32]]), Err(VerifyError::UnknownDevKey(_))));
    }

    #[test]
    fn a_modified_dev_quote_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = platform(dir.path(), [1; 32]);
        let quote = p.quote(&[5; 64]).expect("quote");
        // Every byte of measurement, report data and signature is covered.
        for i in (10..106).chain(138..QUOTE_LEN) {
            let mut bad = quote.clone();
            bad[i] ^= 0x80;
            assert!(
                matches!(verify_dev_quote(&bad, &[p.attestation_public_key()]), Err(VerifyError::BadDevSignature)),
                "byte {i}"
            );
        }
        assert!(matches!(verify_dev_quote(&quote[..100], &[]), Err(VerifyError::Malformed(_))));
    }

    #[test]
    fn the_same_measurement_on_the_same_machine_unseals_and_nothing_else_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blob = platform(dir.path(), [1; 32]).seal("identity-key", b"secret").expect("seal");
        // Reopened (a restart): same secret file, same measurement.
        assert_eq!(platform(dir.path(), [1; 32]).unseal("identity-key", &blob).expect("unseal"), b"secret");
        // Other code on the same machine.
        assert!(matches!(platform(dir.path(), [2; 32]).unseal("identity-key", &blob), Err(SealError::Tampered)));
        // The same code on another machine.
        let other = tempfile::tempdir().expect("tempdir");
        assert!(matches!(platform(other.path(), [1; 32]).unseal("identity-key", &blob), Err(SealError::Tampered)));
    }

    #[test]
    fn a_machine_secret_of_the_wrong_size_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("machine-secret");
        std::fs::write(&path, b"short").expect("write");
        let err = DevPlatform::open(&path, [7; 32], Measurement([1; 32])).expect_err("must fail");
        assert!(err.to_string().contains("32"), "{err}");
    }

    #[test]
    fn the_machine_secret_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        platform(dir.path(), [1; 32]);
        let mode = std::fs::metadata(dir.path().join("machine-secret")).expect("stat").permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }
}
