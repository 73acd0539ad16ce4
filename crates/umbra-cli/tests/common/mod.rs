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

/// A TCP port free on 127.0.0.1 right now, never handed out twice in this process.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// A block of `n` consecutive TCP ports free on 127.0.0.1 right now, never handed out twice in this process.
///
/// The ports come from 20000..32000, below Linux's ephemeral range (32768..60999): a port the kernel hands out
/// for `bind(0)` is also the kind it picks as the source port of outgoing connections, so another node of the
/// same test could take it (by dialling a peer) between this check and the node binding it.
pub fn free_ports(n: u16) -> u16 {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32) ^ NEXT.fetch_add(0x9e37_79b9, Ordering::Relaxed);
    loop {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let base = 20_000 + ((x >> 33) % (12_000 - u64::from(n))) as u16;
        let mut taken = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
        let clash = (0..n).any(|i| taken.contains(&(base + i)));
        if !clash && (0..n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            taken.extend((0..n).map(|i| base + i));
            return base;
        }
    }
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

/// The last line of `text` starting with `prefix`, without it (how the CLI's summaries name what they made).
pub fn after(text: &str, prefix: &str) -> String {
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {text}"))
        .trim()
        .to_string()
}

/// Every file below `dir` whose bytes contain `needle` (the marker scans of the confidentiality tests).
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_containing(&p, needle));
        } else if let Ok(bytes) = std::fs::read(&p)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            out.push(p);
        }
    }
    out
}

/// `rel` below the repository root, found at run time (`cargo test` sets `CARGO_MANIFEST_DIR`): a test binary
/// reused from a build cache shared by checkouts at other paths must not look into the checkout it was built in.
pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// The `umbra` CLI as a test network's user runs it: against the network's RPC, with keys in `DIR/home`.
/// A test's `Net` says where those are; the calls are the same everywhere.
pub trait CliUser {
    /// The network's JSON-RPC URL.
    fn rpc(&self) -> &str;
    /// The test's scratch directory.
    fn dir(&self) -> &Path;

    /// The keystore home (`UMBRA_HOME`).
    fn home(&self) -> PathBuf {
        self.dir().join("home")
    }

    /// Runs `umbra ARGS`.
    fn cli(&self, args: &[&str]) -> Output {
        umbra().args(["--rpc", self.rpc()]).args(args).env("UMBRA_HOME", self.home()).output().expect("umbra runs")
    }

    /// Runs `umbra ARGS`, which must succeed; its stdout.
    fn cli_ok(&self, args: &[&str]) -> String {
        ok(self.cli(args), &format!("umbra {args:?}"))
    }

    /// Runs `umbra ARGS`, which must fail; its stderr.
    fn cli_err(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(!out.status.success(), "umbra {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs `umbra ARGS --json`, which must succeed with one JSON value.
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cli_ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("umbra {all:?} printed no JSON ({e}): {out}"))
    }

    /// A new key named `name`; its address.
    fn new_key(&self, name: &str) -> String {
        self.cli_ok(&["keys", "new", name]);
        self.json(&["keys", "show", name])["address"].as_str().expect("address").to_string()
    }

    /// Waits until the chain records that worker `id` holds key epoch `epoch` or later.
    fn wait_key_epoch(&self, id: &str, epoch: u64) {
        wait_until(&format!("worker {id} to hold key epoch {epoch}"), Duration::from_secs(120), || {
            let v: serde_json::Value = serde_json::from_slice(&self.cli(&["worker-info", id, "--json"]).stdout).ok()?;
            (v["worker"]["key_epoch"].as_u64()? >= epoch).then_some(())
        });
    }
}
