//! The `sgx` provider: an SGX enclave run under Gramine, through Gramine's `/dev/attestation` files.
//!
//! - Quote: write the 64 bytes of report data to `/dev/attestation/user_report_data`, read the DCAP quote
//!   from `/dev/attestation/quote` (one process-wide interface, so a lock serializes the two steps).
//! - Measurement: MRENCLAVE, the first 32 bytes of `/dev/attestation/my_target_info`.
//! - Sealing: Gramine's 16-byte MRENCLAVE sealing key at `/dev/attestation/keys/_sgx_mrenclave` (only the
//!   same enclave on the same CPU derives it), stretched with `HKDF-SHA256(salt = "umbra-tee/sgx-seal/v1")`
//!   into the shared blob format.
//!
//! The root directory is injectable so tests can point it at a directory that mimics the interface.

use crate::platform::{Attester, Identity, PlatformError, Sealer, read, write_existing};
use crate::seal::{SealError, SealingKey};
use crate::types::{Measurement, TeeKind};
use crate::verify::parse_local_quote;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use zeroize::Zeroizing;

const SEAL_SALT: &[u8] = b"umbra-tee/sgx-seal/v1";

/// An SGX enclave under Gramine, reached through `<root>/dev/attestation`.
#[derive(Debug)]
pub struct GramineSgx {
    root: PathBuf,
    lock: Mutex<()>,
}

impl GramineSgx {
    /// The real interface (root `/`).
    pub fn new() -> GramineSgx {
        GramineSgx::with_root("/")
    }

    /// The interface under `root` instead of `/` (tests point this at a mimic).
    pub fn with_root(root: impl Into<PathBuf>) -> GramineSgx {
        GramineSgx { root: root.into(), lock: Mutex::new(()) }
    }

    /// `<root>/dev/attestation`, checked to exist and to be configured for DCAP.
    fn attestation_dir(&self) -> Result<PathBuf, PlatformError> {
        let dir = self.root.join("dev/attestation");
        if !dir.is_dir() {
            return Err(PlatformError::InterfaceMissing {
                what: "Gramine SGX attestation",
                path: dir,
                hint: "run inside a Gramine SGX enclave with sgx.remote_attestation = \"dcap\"",
            });
        }
        let kind_path = dir.join("attestation_type");
        let kind = read(&kind_path)?;
        match String::from_utf8_lossy(&kind).trim() {
            "dcap" => Ok(dir),
            other => Err(PlatformError::Unsupported(format!(
                "Gramine attestation type is {other:?} ({}); Umbra needs sgx.remote_attestation = \"dcap\"",
                kind_path.display()
            ))),
        }
    }

    fn sealing_key(&self) -> Result<SealingKey, PlatformError> {
        let path = self.attestation_dir()?.join("keys/_sgx_mrenclave");
        let key = Zeroizing::new(read(&path)?);
        if key.len() != 16 {
            return Err(PlatformError::Malformed(format!(
                "{} holds {} bytes; Gramine's sealing key is 16",
                path.display(),
                key.len()
            )));
        }
        Ok(SealingKey::derive(SEAL_SALT, &key, b""))
    }
}

impl Default for GramineSgx {
    fn default() -> Self {
        GramineSgx::new()
    }
}

impl Identity for GramineSgx {
    fn kind(&self) -> TeeKind {
        TeeKind::Sgx
    }

    fn measurement(&self) -> Result<Measurement, PlatformError> {
        let path = self.attestation_dir()?.join("my_target_info");
        let info = read(&path)?;
        let mr_enclave = info.get(..32).ok_or_else(|| {
            PlatformError::Malformed(format!("{} is too short for an SGX target info", path.display()))
        })?;
        let mut m = [0u8; 32];
        m.copy_from_slice(mr_enclave);
        Ok(Measurement(m))
    }
}

impl Attester for GramineSgx {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, PlatformError> {
        let dir = self.attestation_dir()?;
        let quote_path = dir.join("quote");
        let quote = {
            let _guard = self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            write_existing(&dir.join("user_report_data"), report_data)?;
            read(&quote_path)?
        };
        parse_local_quote(&quote, TeeKind::Sgx, report_data, &display(&quote_path))?;
        Ok(quote)
    }
}

impl Sealer for GramineSgx {
    fn seal(&self, label: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        self.sealing_key()?.seal(label, plaintext)
    }

    fn unseal(&self, label: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.sealing_key()?.unseal(label, sealed)
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory that looks like Gramine's `/dev/attestation` with the given files.
    fn mimic(quote: &[u8], key: &[u8]) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("dev/attestation");
        std::fs::create_dir_all(dir.join("keys")).expect("mkdir");
        std::fs::write(dir.join("attestation_type"), b"dcap").expect("write");
        std::fs::write(dir.join("user_report_data"), b"").expect("write");
        std::fs::write(dir.join("quote"), quote).expect("write");
        std::fs::write(dir.join("my_target_info"), [0x11; 512]).expect("write");
        std::fs::write(dir.join("keys/_sgx_mrenclave"), key).expect("write");
        root
    }

    #[test]
    fn without_dev_attestation_the_error_says_gramine_is_missing() {
        let root = tempfile::tempdir().expect("tempdir");
        let err = GramineSgx::with_root(root.path()).quote(&[0; 64]).expect_err("must fail");
        assert!(matches!(err, PlatformError::InterfaceMissing { .. }), "{err}");
        assert!(err.to_string().contains("dev/attestation"), "{err}");
        assert!(err.to_string().contains("Gramine"), "{err}");
    }

    #[test]
    fn a_non_dcap_gramine_configuration_is_refused() {
        let root = mimic(b"", &[1; 16]);
        std::fs::write(root.path().join("dev/attestation/attestation_type"), b"none").expect("write");
        let err = GramineSgx::with_root(root.path()).measurement().expect_err("must fail");
        assert!(matches!(err, PlatformError::Unsupported(_)), "{err}");
    }

    #[test]
    fn the_measurement_is_mrenclave_from_the_target_info() {
        let root = mimic(b"", &[1; 16]);
        assert_eq!(GramineSgx::with_root(root.path()).measurement().expect("measure"), Measurement([0x11; 32]));
    }

    #[test]
    fn a_quote_that_does_not_parse_is_an_error() {
        let root = mimic(b"not a quote", &[1; 16]);
        let err = GramineSgx::with_root(root.path()).quote(&[0; 64]).expect_err("must fail");
        assert!(err.to_string().contains("does not parse"), "{err}");
        // The report data was written where Gramine reads it.
        let written = std::fs::read(root.path().join("dev/attestation/user_report_data")).expect("read");
        assert_eq!(written, [0; 64]);
    }

    #[test]
    fn sealing_uses_gramines_mrenclave_key() {
        let root = mimic(b"", &[1; 16]);
        let sgx = GramineSgx::with_root(root.path());
        let blob = sgx.seal("state", b"secret").expect("seal");
        assert_eq!(sgx.unseal("state", &blob).expect("unseal"), b"secret");
        let other = mimic(b"", &[2; 16]);
        assert!(matches!(GramineSgx::with_root(other.path()).unseal("state", &blob), Err(SealError::Tampered)));
        let short = mimic(b"", &[1; 8]);
        assert!(matches!(GramineSgx::with_root(short.path()).seal("state", b"x"), Err(SealError::Key(_))));
    }
}
