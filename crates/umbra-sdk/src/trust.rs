//! The trust anchor: which chain (genesis hash and first committee) a user trusts, pinned on first
//! contact in `$UMBRA_HOME/trust/<chain_id>.json`.

use crate::error::SdkError;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use umbra_types::{Hash, ValidatorKey};

/// Largest trust file read back (a pin with 1,024 validators is about 70 KB).
const MAX_PIN_BYTES: u64 = 1 << 20;

/// The trust directory inside an Umbra home directory: `HOME/trust`.
pub fn trust_dir(home: &Path) -> PathBuf {
    home.join("trust")
}

/// What is pinned for one chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrustPin {
    /// The chain id.
    pub(crate) chain_id: String,
    /// Hash of its genesis block.
    pub(crate) genesis_hash: Hash,
    /// The genesis committee (hex keys, sorted).
    pub(crate) committee: Vec<String>,
}

impl TrustPin {
    pub(crate) fn new(chain_id: &str, genesis_hash: Hash, committee: &[ValidatorKey]) -> Self {
        let mut committee: Vec<String> = committee.iter().map(hex::encode).collect();
        committee.sort();
        TrustPin { chain_id: chain_id.into(), genesis_hash, committee }
    }
}

/// A chain id that is safe as a file name: 1-64 lowercase letters, digits and dashes (what a
/// valid genesis allows).
pub(crate) fn check_chain_id(chain_id: &str) -> Result<(), String> {
    let ok = !chain_id.is_empty()
        && chain_id.len() <= 64
        && chain_id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok { Ok(()) } else { Err(format!("the chain id '{}' is not a valid chain id", chain_id.escape_debug())) }
}

pub(crate) fn pin_path(dir: &Path, chain_id: &str) -> PathBuf {
    dir.join(format!("{chain_id}.json"))
}

fn store_err(path: &Path, reason: impl std::fmt::Display) -> SdkError {
    SdkError::TrustStore { path: path.to_path_buf(), reason: reason.to_string() }
}

/// The pin for `chain_id` in `dir`, if any.
pub(crate) fn load(dir: &Path, chain_id: &str) -> Result<Option<TrustPin>, SdkError> {
    let path = pin_path(dir, chain_id);
    let file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(store_err(&path, e)),
    };
    let mut text = String::new();
    use std::io::Read as _;
    file.take(MAX_PIN_BYTES).read_to_string(&mut text).map_err(|e| store_err(&path, e))?;
    let pin: TrustPin = serde_json::from_str(&text).map_err(|e| store_err(&path, format!("not a trust pin: {e}")))?;
    if pin.chain_id != chain_id {
        return Err(store_err(&path, format!("it pins chain '{}'", pin.chain_id)));
    }
    Ok(Some(pin))
}

/// Writes `pin` to `dir` (created 0700 if missing) as a 0600 file, atomically.
pub(crate) fn save(dir: &Path, pin: &TrustPin) -> Result<PathBuf, SdkError> {
    let path = pin_path(dir, &pin.chain_id);
    create_dir(dir).map_err(|e| store_err(dir, e))?;
    let tmp = dir.join(format!(".{}.json.tmp", pin.chain_id));
    let body = serde_json::to_string_pretty(pin).map_err(|e| store_err(&path, e))?;
    let write = || -> std::io::Result<()> {
        let mut f = open_private(&tmp)?;
        f.write_all(body.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        store_err(&path, e)
    })?;
    Ok(path)
}

#[cfg(unix)]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // `mode` applies only when the file is created; a leftover temporary file keeps its mode.
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create(true).truncate(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_round_trips_and_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let trust = trust_dir(dir.path());
        let pin = TrustPin::new("umbra-x", Hash([4; 32]), &[[2; 32], [1; 32]]);
        assert_eq!(pin.committee[0], hex::encode([1u8; 32]), "sorted");
        let path = save(&trust, &pin).expect("saves");
        assert_eq!(load(&trust, "umbra-x").expect("loads"), Some(pin));
        assert_eq!(load(&trust, "umbra-y").expect("loads"), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(fs::metadata(&path).expect("exists").permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn chain_ids_that_are_not_file_names_are_refused() {
        assert!(check_chain_id("umbra-dev").is_ok());
        for bad in ["", "../x", "A", "a/b", &"x".repeat(65)] {
            assert!(check_chain_id(bad).is_err(), "{bad}");
        }
    }
}
