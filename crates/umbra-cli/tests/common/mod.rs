//! What the process-level tests share: running the `umbra` binary, free ports, waiting, scratch directories.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The `umbra` binary under test.
pub fn umbra() -> Command {
    Command::new(env!("CARGO_BIN_EXE_umbra"))
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The standard output of a command that must have succeeded (its output is shown if it did not).
pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` every 250 ms until it gives a value, failing the test after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A scratch directory, kept after the test when `UMBRA_KEEP_TEST_DIRS` is set (for reading the logs).
pub struct Scratch {
    _guard: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Scratch {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A new scratch directory.
pub fn scratch() -> Scratch {
    let dir = tempfile::tempdir().expect("tempdir");
    if std::env::var_os("UMBRA_KEEP_TEST_DIRS").is_some() {
        eprintln!("test directory kept: {}", dir.path().display());
        return Scratch { path: dir.keep(), _guard: None };
    }
    Scratch { path: dir.path().to_path_buf(), _guard: Some(dir) }
}
