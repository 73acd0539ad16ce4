//! The three platform traits every provider implements (identity, attestation, sealing) and the error
//! their I/O reports.

use crate::seal::SealError;
use crate::types::{Measurement, TeeKind};
use std::path::{Path, PathBuf};

/// Why a platform interface (Gramine's `/dev/attestation`, configfs-tsm, the dev secret file) failed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The interface does not exist here: not running inside that kind of TEE.
    #[error("{what} is not available: {} does not exist ({hint})", path.display())]
    InterfaceMissing {
        /// The interface, e.g. "Gramine SGX attestation".
        what: &'static str,
        /// The path that was looked for.
        path: PathBuf,
        /// What is needed to have it.
        hint: &'static str,
    },
    /// Reading or writing a file of the interface failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The interface answered with something unusable (a quote that does not parse, the wrong report
    /// data, a key of the wrong size).
    #[error("{0}")]
    Malformed(String),
    /// The interface exists but is configured in a way this code does not support.
    #[error("{0}")]
    Unsupported(String),
}

impl PlatformError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> PlatformError {
        PlatformError::Io { path: path.to_path_buf(), source }
    }
}

/// What the running code is: its TEE kind and its measurement.
pub trait Identity: Send + Sync {
    /// The TEE kind this provider attests as.
    fn kind(&self) -> TeeKind;

    /// True when nothing is hardware-protected (the dev provider). Everything about a simulated
    /// platform says so.
    fn is_simulated(&self) -> bool {
        self.kind().is_simulated()
    }

    /// The measurement a verifier will see in this platform's quotes (see [`Measurement`]).
    fn measurement(&self) -> Result<Measurement, PlatformError>;
}

/// Produces quotes: evidence, verifiable by others, that this measured code runs in this TEE and
/// chose these 64 bytes of report data (see [`crate::report_data`]).
pub trait Attester: Identity {
    /// A quote over `report_data`, in the format [`crate::verify_quote`] reads (a DCAP quote for SGX
    /// and TDX, a signed dev quote for dev).
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, PlatformError>;
}

/// Encrypts data so that only the same measured code on the same machine can decrypt it.
pub trait Sealer: Send + Sync {
    /// Seals `plaintext` under `label` (what it is, e.g. `"identity-key"`); see the blob format in the
    /// crate documentation.
    fn seal(&self, label: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError>;

    /// Opens a blob sealed under the same `label` by the same code on the same machine; anything else
    /// is refused.
    fn unseal(&self, label: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError>;
}

/// Reads a file of a platform interface.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, PlatformError> {
    std::fs::read(path).map_err(|e| PlatformError::io(path, e))
}

/// Writes all of `data` to an existing file of a platform interface (no create, no truncate: pseudo
/// files of Gramine and configfs exist already and take one write).
pub(crate) fn write_existing(path: &Path, data: &[u8]) -> Result<(), PlatformError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| PlatformError::io(path, e))?;
    f.write_all(data).map_err(|e| PlatformError::io(path, e))
}
