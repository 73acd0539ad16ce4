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
    /// The worker's own executable could not be read (dev measurement).
    #[error("reading the worker's executable for its dev measurement: {0}")]
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

/// The dev measurement of the running worker: SHA-256 of its own executable, so a changed binary is a
/// different measurement.
pub fn dev_measurement() -> std::io::Result<Measurement> {
    let exe = std::env::current_exe()?;
    Ok(Measurement(Sha256::digest(std::fs::read(exe)?).into()))
}

/// Opens the platform of `kind` for a worker whose data directory is `dir`.
pub fn open_platform(kind: TeeKind, dir: &Path) -> Result<Box<dyn Platform>, PlatformChoiceError> {
    match kind {
        TeeKind::Dev => {
            std::fs::create_dir_all(dir).map_err(PlatformChoiceError::Executable)?;
            let measurement = dev_measurement().map_err(PlatformChoiceError::Executable)?;
            let p = DevPlatform::open(&dir.join(DEV_MACHINE_SECRET), dev_attestation_seed(), measurement)?;
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
        let p = open_platform(TeeKind::Dev, dir.path()).expect("dev opens");
        assert!(p.is_simulated());
        assert_eq!(p.measurement().expect("measurement"), dev_measurement().expect("measurement"));
        assert!(!p.quote(&[0; 64]).expect("quote").is_empty());
    }

    #[test]
    fn tdx_is_refused_because_it_cannot_seal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = open_platform(TeeKind::Tdx, dir.path()).err().expect("refused");
        assert!(err.to_string().contains("cannot seal"), "{err}");
    }
}
