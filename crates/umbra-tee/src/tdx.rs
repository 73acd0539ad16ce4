//! The `tdx` provider: a TDX trust domain, through the Linux configfs-tsm report interface.
//!
//! A quote is one report entry: `mkdir /sys/kernel/config/tsm/report/<name>`, check `provider` reads
//! `tdx_guest`, write the 64 bytes of report data to `inblob`, read `generation`, read the quote from
//! `outblob`, read `generation` again (if it moved, another writer raced us and the quote is discarded),
//! then remove the entry. The measurement comes from a quote over zero report data (MRTD and RTMR0-3, see
//! [`Measurement`]).
//!
//! TDX has no hardware sealing key, so this provider does not implement [`crate::Sealer`]: a TD gets its
//! sealing key from a key service after attestation instead.
//!
//! The root directory is injectable so tests can point it at a directory that mimics the interface; a test
//! also fixes the entry name, since a plain directory does not create the kernel's attribute files.

use crate::platform::{Attester, Identity, PlatformError, read, write_existing};
use crate::types::{Measurement, TeeKind};
use crate::verify::parse_local_quote;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The configfs-tsm provider name of a TDX guest.
const PROVIDER: &str = "tdx_guest";

/// Distinguishes report entries made by one process.
static NEXT_ENTRY: AtomicU64 = AtomicU64::new(0);

/// A TDX guest, reached through `<root>/sys/kernel/config/tsm/report`.
#[derive(Debug, Clone)]
pub struct TdxGuest {
    root: PathBuf,
    entry: Option<String>,
}

impl TdxGuest {
    /// The real interface (root `/`); each quote uses a fresh entry `umbra-<pid>-<n>`.
    pub fn new() -> TdxGuest {
        TdxGuest::with_root("/")
    }

    /// The interface under `root` instead of `/` (tests point this at a mimic).
    pub fn with_root(root: impl Into<PathBuf>) -> TdxGuest {
        TdxGuest { root: root.into(), entry: None }
    }

    /// Uses the report entry `name` for every quote instead of a fresh one (created if absent, left in
    /// place afterwards).
    pub fn with_entry(mut self, name: impl Into<String>) -> TdxGuest {
        self.entry = Some(name.into());
        self
    }

    fn report_dir(&self) -> Result<PathBuf, PlatformError> {
        let dir = self.root.join("sys/kernel/config/tsm/report");
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(PlatformError::InterfaceMissing {
                what: "TDX attestation (configfs-tsm)",
                path: dir,
                hint: "run in a TDX guest on Linux 6.7 or later with configfs mounted at /sys/kernel/config",
            })
        }
    }

    /// The raw quote from one report entry.
    fn raw_quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, PlatformError> {
        let reports = self.report_dir()?;
        let (name, temporary) = match &self.entry {
            Some(name) => (name.clone(), false),
            None => (format!("umbra-{}-{}", std::process::id(), NEXT_ENTRY.fetch_add(1, Ordering::Relaxed)), true),
        };
        let entry = reports.join(name);
        match std::fs::create_dir(&entry) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(PlatformError::io(&entry, e)),
        }
        let result = quote_from_entry(&entry, report_data);
        if temporary {
            // Best effort: a leftover entry only costs a directory in configfs and never affects the next
            // quote, which uses a fresh entry.
            let _ = std::fs::remove_dir(&entry);
        }
        result
    }
}

impl Default for TdxGuest {
    fn default() -> Self {
        TdxGuest::new()
    }
}

fn quote_from_entry(entry: &Path, report_data: &[u8; 64]) -> Result<Vec<u8>, PlatformError> {
    let provider_path = entry.join("provider");
    let provider = read(&provider_path)?;
    let provider = String::from_utf8_lossy(&provider);
    if provider.trim() != PROVIDER {
        return Err(PlatformError::Unsupported(format!(
            "configfs-tsm provider is {:?} ({}), not {PROVIDER}",
            provider.trim(),
            provider_path.display()
        )));
    }
    write_existing(&entry.join("inblob"), report_data)?;
    let before = generation(entry)?;
    let quote = read(&entry.join("outblob"))?;
    let after = generation(entry)?;
    if before != after {
        return Err(PlatformError::Malformed(format!(
            "another writer changed {} while its quote was read (generation {before} -> {after})",
            entry.display()
        )));
    }
    Ok(quote)
}

fn generation(entry: &Path) -> Result<u64, PlatformError> {
    let path = entry.join("generation");
    let text = read(&path)?;
    String::from_utf8_lossy(&text)
        .trim()
        .parse()
        .map_err(|_| PlatformError::Malformed(format!("{} does not hold a number", path.display())))
}

impl Identity for TdxGuest {
    fn kind(&self) -> TeeKind {
        TeeKind::Tdx
    }

    fn measurement(&self) -> Result<Measurement, PlatformError> {
        let zero = [0u8; 64];
        let quote = self.raw_quote(&zero)?;
        parse_local_quote(&quote, TeeKind::Tdx, &zero, "configfs-tsm").map(|(m, _)| m)
    }
}

impl Attester for TdxGuest {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, PlatformError> {
        let quote = self.raw_quote(report_data)?;
        parse_local_quote(&quote, TeeKind::Tdx, report_data, "configfs-tsm outblob")?;
        Ok(quote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory that looks like one configfs-tsm report entry named `e`.
    fn mimic(provider: &str, outblob: &[u8]) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        let entry = root.path().join("sys/kernel/config/tsm/report/e");
        std::fs::create_dir_all(&entry).expect("mkdir");
        std::fs::write(entry.join("provider"), format!("{provider}\n")).expect("write");
        std::fs::write(entry.join("inblob"), b"").expect("write");
        std::fs::write(entry.join("outblob"), outblob).expect("write");
        std::fs::write(entry.join("generation"), b"1\n").expect("write");
        root
    }

    #[test]
    fn without_configfs_tsm_the_error_says_so() {
        let root = tempfile::tempdir().expect("tempdir");
        let err = TdxGuest::with_root(root.path()).quote(&[0; 64]).expect_err("must fail");
        assert!(matches!(err, PlatformError::InterfaceMissing { .. }), "{err}");
        assert!(err.to_string().contains("sys/kernel/config/tsm/report"), "{err}");
    }

    #[test]
    fn another_tsm_provider_is_refused() {
        let root = mimic("sev_guest", b"");
        let err = TdxGuest::with_root(root.path()).with_entry("e").quote(&[0; 64]).expect_err("must fail");
        assert!(matches!(err, PlatformError::Unsupported(_)), "{err}");
        assert!(err.to_string().contains("sev_guest"), "{err}");
    }

    #[test]
    fn the_report_data_goes_to_inblob_and_a_bad_outblob_is_an_error() {
        let root = mimic("tdx_guest", b"garbage");
        let err = TdxGuest::with_root(root.path()).with_entry("e").quote(&[3; 64]).expect_err("must fail");
        assert!(err.to_string().contains("does not parse"), "{err}");
        let inblob = std::fs::read(root.path().join("sys/kernel/config/tsm/report/e/inblob")).expect("read");
        assert_eq!(inblob, [3; 64]);
    }

    #[test]
    fn a_fresh_entry_is_created_and_removed_when_no_name_is_fixed() {
        let root = tempfile::tempdir().expect("tempdir");
        let reports = root.path().join("sys/kernel/config/tsm/report");
        std::fs::create_dir_all(&reports).expect("mkdir");
        // A plain directory has no kernel attribute files, so reading `provider` fails, naming the file.
        let err = TdxGuest::with_root(root.path()).quote(&[0; 64]).expect_err("must fail");
        assert!(err.to_string().contains("provider"), "{err}");
        assert_eq!(std::fs::read_dir(&reports).expect("ls").count(), 0, "the entry was removed");
    }
}
