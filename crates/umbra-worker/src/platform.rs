//! Choosing the TEE platform: `dev` (simulated, says so loudly), `sgx` (Gramine) and `tdx` (refused:
//! it cannot seal).

use crate::enclave::Platform;
use sha2::{Digest as _, Sha256};
use std::path::Path;
use umbra_tee::{DevPlatform, GramineSgx, Measurement, TeeKind};

/// File (in the data directory) holding the dev platform's machine secret.
pub const DEV_MACHINE_SECRET: &str = "dev-machine-secret";

/// Why a platform could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PlatformChoiceError {
    /// The platform's interface failed.
    #[error("{0}")]
    Platform(#[from] umbra_tee::PlatformError),
    /// The data directory could not be created.
    #[error("creating the worker's data directory: {0}")]
    Executable(std::io::Error),
    /// TDX guests have no sealing provider.
    #[error(
        "a TDX guest cannot seal data (no sealing key is exposed to the guest), and the worker must seal its keys \
         and state; run it under Gramine SGX (--tee sgx), or provide a sealing provider (for example a key \
         released by a KMS after attestation) before using --tee tdx"
    )]
    TdxCannotSeal,
}

/// The dev attestation key's seed: `SHA-256("umbra dev attestation key")`. Dev chains list its public
/// key in `policy.dev_keys`.
pub fn dev_attestation_seed() -> [u8; 32] {
    Sha256::digest(b"umbra dev attestation key").into()
}

/// The default measurement a dev worker claims: `SHA-256("umbra dev worker measurement v1")`.
///
/// A dev measurement is a configured value signed by the dev key, not measured (nothing measures code
/// without a TEE), so it is a fixed, documented constant rather than a hash of the binary: rebuilding the
/// worker must not lock a dev network out of its own sealed keys. `umbra worker --dev-measurement HEX`
/// claims another one, to exercise the allow-list.
pub fn dev_measurement() -> Measurement {
    Measurement(Sha256::digest(b"umbra dev worker measurement v1").into())
}

/// Opens the platform of `kind` for a worker whose data directory is `dir`; a dev platform claims
/// `dev_measurement` ([`dev_measurement()`] unless told otherwise).
pub fn open_platform(
    kind: TeeKind,
    dir: &Path,
    dev_measurement: Measurement,
) -> Result<Box<dyn Platform>, PlatformChoiceError> {
    match kind {
        TeeKind::Dev => {
            std::fs::create_dir_all(dir).map_err(PlatformChoiceError::Executable)?;
            let p = DevPlatform::open(&dir.join(DEV_MACHINE_SECRET), dev_attestation_seed(), dev_measurement)?;
            Ok(Box::new(p))
        }
        TeeKind::Tdx => Err(PlatformChoiceError::TdxCannotSeal),
        TeeKind::Sgx => Ok(Box::new(GramineSgx::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_attestation_key_is_the_well_known_seed_and_dev_says_it_is_simulated() {
        assert_eq!(dev_attestation_seed().to_vec(), Sha256::digest(b"umbra dev attestation key").to_vec());
        let dir = tempfile::tempdir().expect("tempdir");
        let p = open_platform(TeeKind::Dev, dir.path(), dev_measurement()).expect("dev opens");
        assert!(p.is_simulated());
        assert_eq!(p.measurement().expect("measurement"), dev_measurement());
        assert!(!p.quote(&[0; 64]).expect("quote").is_empty());
    }

    #[test]
    fn tdx_is_refused_because_it_cannot_seal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = open_platform(TeeKind::Tdx, dir.path(), dev_measurement()).err().expect("refused");
        assert!(err.to_string().contains("cannot seal"), "{err}");
    }
}
