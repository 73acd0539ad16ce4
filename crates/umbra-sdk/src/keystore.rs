//! A directory of named account keys on the local disk.
//!
//! Layout: one `NAME.json` file per key (`{"name", "address", "seed"}`, the seed as hex), readable
//! by its owner only (0600, in a 0700 directory), and a `default` file holding the default key's
//! name. Seeds are stored unencrypted: the keystore is for development and operator machines whose
//! disk is trusted; anything else should use a hardware or remote signer.

use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use umbra_crypto::Keypair;
use umbra_types::Address;

/// Environment variable naming Umbra's home directory (default `~/.umbra`).
pub const HOME_ENV: &str = "UMBRA_HOME";

/// Name of the file that names the default key.
const DEFAULT_FILE: &str = "default";

/// Longest key name.
const MAX_NAME_LEN: usize = 64;

/// Why a keystore operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// The name cannot be used for a key.
    #[error("invalid key name '{name}': {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A key of that name already exists.
    #[error("a key named '{name}' already exists in {}", dir.display())]
    Exists {
        /// The name.
        name: String,
        /// The keystore directory.
        dir: PathBuf,
    },
    /// No key of that name.
    #[error("no key named '{name}' in {}", dir.display())]
    NotFound {
        /// The name.
        name: String,
        /// The keystore directory.
        dir: PathBuf,
    },
    /// No default key is set.
    #[error("no default key in {} (create one with 'umbra keys new NAME')", dir.display())]
    NoDefault {
        /// The keystore directory.
        dir: PathBuf,
    },
    /// The home directory cannot be determined.
    #[error("cannot find a home directory: set {HOME_ENV} or HOME")]
    NoHome,
    /// A key file does not hold a valid key.
    #[error("corrupt key file {}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file system refused an operation.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A key's public facts: its name and account address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key's name in the keystore.
    pub name: String,
    /// The account it controls.
    pub address: Address,
}

/// What a key file holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    name: String,
    address: Address,
    seed: String,
}

/// A directory of named keys (see the module docs for the layout).
#[derive(Clone, Debug)]
pub struct Keystore {
    dir: PathBuf,
}

/// Umbra's home directory: `$UMBRA_HOME`, else `~/.umbra`.
pub fn umbra_home() -> Result<PathBuf, KeystoreError> {
    if let Some(h) = std::env::var_os(HOME_ENV).filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    std::env::home_dir().map(|h| h.join(".umbra")).ok_or(KeystoreError::NoHome)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeystoreError + '_ {
    move |source| KeystoreError::Io { path: path.to_path_buf(), source }
}

/// Checks a key name: 1-64 ASCII letters, digits, `-`, `_` or `.`, starting with a letter or digit,
/// and not starting with `umbra1` (so a name can never be mistaken for an address).
pub fn validate_name(name: &str) -> Result<(), KeystoreError> {
    let invalid = |reason| Err(KeystoreError::InvalidName { name: name.to_string(), reason });
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return invalid("a name has 1 to 64 characters");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return invalid("use only letters, digits, '-', '_' and '.'");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return invalid("a name starts with a letter or digit");
    }
    if name.to_ascii_lowercase().starts_with("umbra1") {
        return invalid("a name must not look like an address (starting with 'umbra1')");
    }
    Ok(())
}

impl Keystore {
    /// The keystore in `dir` (created on first write).
    pub fn open(dir: impl Into<PathBuf>) -> Keystore {
        Keystore { dir: dir.into() }
    }

    /// The keystore in `home/keys`.
    pub fn in_home(home: &Path) -> Keystore {
        Keystore::open(home.join("keys"))
    }

    /// The keystore in [`umbra_home`]`/keys`.
    pub fn default_location() -> Result<Keystore, KeystoreError> {
        Ok(Keystore::in_home(&umbra_home()?))
    }

    /// The keystore's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Generates a new random key named `name`. The first key of a keystore becomes its default.
    pub fn generate(&self, name: &str) -> Result<KeyInfo, KeystoreError> {
        self.import(name, Keypair::generate().seed())
    }

    /// Stores the key with secret `seed` under `name`. The first key of a keystore becomes its
    /// default. Refuses an invalid or existing name.
    pub fn import(&self, name: &str, seed: [u8; 32]) -> Result<KeyInfo, KeystoreError> {
        validate_name(name)?;
        self.ensure_dir()?;
        let key = Keypair::from_seed(seed);
        let info = KeyInfo { name: name.to_string(), address: key.address() };
        let file = KeyFile { name: name.to_string(), address: info.address, seed: hex::encode(seed) };
        let body = serde_json::to_string_pretty(&file)
            .map_err(|e| KeystoreError::Corrupt { path: self.path_of(name), reason: e.to_string() })?;
        self.write_new(name, format!("{body}\n").as_bytes())?;
        if self.default_name()?.is_none() {
            self.set_default(name)?;
        }
        Ok(info)
    }

    /// Every key's name and address, sorted by name.
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeystoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&self.dir))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if validate_name(name).is_err() {
                continue;
            }
            let key = self.load(name)?;
            out.push(KeyInfo { name: name.to_string(), address: key.address() });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The key named `name`, with its secret.
    pub fn get(&self, name: &str) -> Result<Keypair, KeystoreError> {
        validate_name(name)?;
        self.load(name)
    }

    /// The public facts of the key named `name`.
    pub fn info(&self, name: &str) -> Result<KeyInfo, KeystoreError> {
        Ok(KeyInfo { name: name.to_string(), address: self.get(name)?.address() })
    }

    /// The name of the default key, if one is set.
    pub fn default_name(&self) -> Result<Option<String>, KeystoreError> {
        let path = self.dir.join(DEFAULT_FILE);
        match fs::read_to_string(&path) {
            Ok(s) if s.trim().is_empty() => Ok(None),
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// The default key's name and secret; [`KeystoreError::NoDefault`] if none is set.
    pub fn default_key(&self) -> Result<(String, Keypair), KeystoreError> {
        let name = self.default_name()?.ok_or_else(|| KeystoreError::NoDefault { dir: self.dir.clone() })?;
        let key = self.get(&name)?;
        Ok((name, key))
    }

    /// Makes the existing key `name` the default.
    pub fn set_default(&self, name: &str) -> Result<(), KeystoreError> {
        self.get(name)?;
        let path = self.dir.join(DEFAULT_FILE);
        let tmp = self.dir.join(format!(".{DEFAULT_FILE}.tmp"));
        fs::write(&tmp, format!("{name}\n")).map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))
    }

    fn load(&self, name: &str) -> Result<Keypair, KeystoreError> {
        let path = self.path_of(name);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeystoreError::NotFound { name: name.to_string(), dir: self.dir.clone() });
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let corrupt = |reason: String| KeystoreError::Corrupt { path: path.clone(), reason };
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        let seed: [u8; 32] = hex::decode(&file.seed)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("the seed is not 32 bytes of hex".into()))?;
        let key = Keypair::from_seed(seed);
        if key.address() != file.address {
            return Err(corrupt(format!(
                "the seed belongs to {}, not to the recorded address {}",
                key.address(),
                file.address
            )));
        }
        Ok(key)
    }

    /// Creates the directory (and its parents) and restricts it to its owner.
    fn ensure_dir(&self) -> Result<(), KeystoreError> {
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        restrict(&self.dir, 0o700)
    }

    /// Writes a new key file atomically: a private temporary file, hard-linked into place (which
    /// fails if the name is taken, so two writers cannot both create the same key).
    fn write_new(&self, name: &str, body: &[u8]) -> Result<(), KeystoreError> {
        let path = self.path_of(name);
        let tmp = self.dir.join(format!(".{name}.json.{}.tmp", std::process::id()));
        let result = (|| {
            let mut f = create_private(&tmp).map_err(io(&tmp))?;
            f.write_all(body).and_then(|()| f.sync_all()).map_err(io(&tmp))?;
            fs::hard_link(&tmp, &path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    KeystoreError::Exists { name: name.to_string(), dir: self.dir.clone() }
                } else {
                    io(&path)(e)
                }
            })
        })();
        let _ = fs::remove_file(&tmp);
        result
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> Result<(), KeystoreError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io(path))
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> Result<(), KeystoreError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Keystore) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ks = Keystore::in_home(tmp.path());
        (tmp, ks)
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).expect("exists").permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn a_new_key_file_is_readable_by_its_owner_only() {
        let (_tmp, ks) = store();
        ks.generate("alice").expect("creates");
        assert_eq!(mode(&ks.dir().join("alice.json")), 0o600);
        assert_eq!(mode(ks.dir()), 0o700);
    }

    #[test]
    fn an_imported_key_loads_back_with_the_same_address() {
        let (_tmp, ks) = store();
        let info = ks.import("alice", [7; 32]).expect("imports");
        assert_eq!(info.address, Keypair::from_seed([7; 32]).address());
        assert_eq!(ks.get("alice").expect("loads").seed(), [7; 32]);
        assert_eq!(ks.info("alice").expect("loads"), info);
    }

    #[test]
    fn a_duplicate_name_is_refused_and_the_first_key_kept() {
        let (_tmp, ks) = store();
        ks.import("alice", [1; 32]).expect("imports");
        let err = ks.import("alice", [2; 32]).expect_err("duplicate");
        assert!(matches!(err, KeystoreError::Exists { .. }), "{err}");
        assert_eq!(ks.get("alice").expect("loads").seed(), [1; 32]);
    }

    #[test]
    fn invalid_names_are_refused_with_the_rule_they_break() {
        let (_tmp, ks) = store();
        let long = "a".repeat(65);
        for bad in ["", "../evil", "a/b", ".hidden", "-flag", "with space", long.as_str(), "umbra1abc"] {
            let err = ks.generate(bad).expect_err(bad);
            assert!(matches!(err, KeystoreError::InvalidName { .. }), "{bad}: {err}");
        }
        assert!(ks.list().expect("lists").is_empty());
    }

    #[test]
    fn the_list_is_sorted_by_name_and_skips_other_files() {
        let (_tmp, ks) = store();
        ks.import("carol", [3; 32]).expect("imports");
        ks.import("alice", [1; 32]).expect("imports");
        fs::write(ks.dir().join("notes.txt"), "x").expect("writes");
        let names: Vec<_> = ks.list().expect("lists").into_iter().map(|k| k.name).collect();
        assert_eq!(names, ["alice", "carol"]);
    }

    #[test]
    fn an_empty_keystore_lists_nothing_and_has_no_default() {
        let (_tmp, ks) = store();
        assert!(ks.list().expect("lists").is_empty());
        assert_eq!(ks.default_name().expect("reads"), None);
        assert!(matches!(ks.default_key(), Err(KeystoreError::NoDefault { .. })));
    }

    #[test]
    fn the_first_key_becomes_the_default_until_another_is_chosen() {
        let (_tmp, ks) = store();
        ks.import("alice", [1; 32]).expect("imports");
        ks.import("bob", [2; 32]).expect("imports");
        assert_eq!(ks.default_name().expect("reads").as_deref(), Some("alice"));
        ks.set_default("bob").expect("sets");
        let (name, key) = ks.default_key().expect("reads");
        assert_eq!((name.as_str(), key.seed()), ("bob", [2; 32]));
    }

    #[test]
    fn an_unknown_key_cannot_become_the_default() {
        let (_tmp, ks) = store();
        ks.import("alice", [1; 32]).expect("imports");
        assert!(matches!(ks.set_default("nobody"), Err(KeystoreError::NotFound { .. })));
        assert_eq!(ks.default_name().expect("reads").as_deref(), Some("alice"));
    }

    #[test]
    fn a_key_file_whose_seed_and_address_disagree_is_reported_corrupt() {
        let (_tmp, ks) = store();
        ks.import("alice", [1; 32]).expect("imports");
        let path = ks.dir().join("alice.json");
        let text = fs::read_to_string(&path).expect("reads").replace(&hex::encode([1u8; 32]), &hex::encode([2u8; 32]));
        fs::write(&path, text).expect("writes");
        assert!(matches!(ks.get("alice"), Err(KeystoreError::Corrupt { .. })));
    }
}
