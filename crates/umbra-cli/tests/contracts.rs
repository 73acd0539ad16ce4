//! End-to-end test of confidential contracts on real processes: an `umbra node` validator, a gatekeeper and two
//! cluster workers (dev TEE) serving queries, driven through `umbra contract ...`: upload, instantiate, sealed
//! commands run by both workers to one report each, a sealed and signed query, a contract that loops forever,
//! refusals of bad input (wrong key epoch, oversized code, tampered query), and a worker that joins the cluster
//! later replaying its history to the same state root.

mod common;
use common::{free_port, ok, umbra};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

struct Net {
    dir: PathBuf,
    rpc: String,
    node: Option<Child>,
    workers: Vec<Child>,
    query_ports: Vec<u16>,
}

impl Net {
    fn start(dir: &Path, workers: usize) -> Net {
        let (p2p, rpc) = (free_port(), free_port());
        let home = dir.join("v0");
        ok(
            umbra()
                .args(["node", "init", "--name", "v0"])
                .args(["--p2p-listen", &format!("127.0.0.1:{p2p}"), "--rpc-listen", &format!("127.0.0.1:{rpc}")])
                .arg("--dir")
                .arg(&home)
                .output()
                .expect("runs"),
            "node init",
        );
        let mut net = Net {
            dir: dir.to_path_buf(),
            rpc: format!("http://127.0.0.1:{rpc}"),
            node: None,
            workers: vec![],
            query_ports: vec![],
        };
        let admin = net.new_key("admin");
        let mut allocs = vec!["--alloc".to_string(), format!("{admin}=1000000")];
        for i in 0..workers {
            let op = net.new_key(&format!("op{i}"));
            allocs.push("--alloc".into());
            allocs.push(format!("{op}=1000"));
        }
        ok(
            umbra()
                .args(["genesis", "new", "--chain-id", "umbra-contracts", "--node"])
                .arg(&home)
                .args(["--dev-tee", "--sudo", &admin])
                .args(&allocs)
                .arg("--out")
                .arg(dir.join("genesis.json"))
                .output()
                .expect("runs"),
            "genesis new",
        );
        let log = std::fs::File::create(dir.join("node.log")).expect("log");
        net.node = Some(
            umbra()
                .arg("node")
                .arg("--config")
                .arg(home.join("node.toml"))
                .env("RUST_LOG", "info")
                .stdout(Stdio::from(log.try_clone().expect("log")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("node starts"),
        );
        wait_until("the node to finalize block 2", Duration::from_secs(60), || {
            let v: serde_json::Value = serde_json::from_slice(&net.cli(&["status", "--json"]).stdout).ok()?;
            (v["height"].as_u64()? >= 2).then_some(())
        });
        for i in 0..workers {
            let port = free_port();
            let log = std::fs::File::create(dir.join(format!("worker-{i}.log"))).expect("log");
            let child = umbra()
                .args(["worker", "--node", &net.rpc, "--tee", "dev", "--operator", &format!("op{i}")])
                .args(["--query-listen", &format!("127.0.0.1:{port}")])
                .arg("--data")
                .arg(dir.join(format!("worker-{i}")))
                .env("UMBRA_HOME", net.keys_home())
                .env("RUST_LOG", "info")
                .env("TZ", "UTC")
                .stdout(Stdio::from(log.try_clone().expect("log")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("worker starts");
            net.workers.push(child);
            net.query_ports.push(port);
        }
        net
    }

    fn keys_home(&self) -> PathBuf {
        self.dir.join("home")
    }

    fn cli(&self, args: &[&str]) -> Output {
        umbra().args(["--rpc", &self.rpc]).args(args).env("UMBRA_HOME", self.keys_home()).output().expect("umbra runs")
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        ok(self.cli(args), &format!("umbra {args:?}"))
    }

    fn cli_err(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(!out.status.success(), "umbra {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn new_key(&self, name: &str) -> String {
        self.cli_ok(&["keys", "new", name]);
        let v: serde_json::Value = serde_json::from_str(&self.cli_ok(&["keys", "show", name, "--json"])).expect("json");
        v["address"].as_str().expect("address").to_string()
    }

    fn status(&self, i: usize) -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(self.dir.join(format!("worker-{i}/status.json"))).ok()?).ok()
    }

    fn worker_id(&self, i: usize) -> String {
        wait_until("a worker id", Duration::from_secs(60), || self.status(i)?["id"].as_str().map(str::to_string))
    }

    fn wait_key_epoch(&self, id: &str, epoch: u64) {
        wait_until(&format!("worker {id} to hold key epoch {epoch}"), Duration::from_secs(90), || {
            let out = self.cli(&["worker-info", id, "--json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (v["worker"]["key_epoch"].as_u64()? >= epoch).then_some(())
        });
    }

    fn info(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["contract", "info", id, "--json"])).expect("json")
    }

    fn query(&self, worker: usize, id: &str, method: &str) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}", self.query_ports[worker]);
        let out =
            self.cli_ok(&["contract", "query", id, method, "--worker", &url, "--signed", "--from", "admin", "--json"]);
        serde_json::from_str(&out).expect("json")
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in self.workers.iter_mut().chain(self.node.iter_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The last line of `text` starting with `prefix`, without it.
fn after(text: &str, prefix: &str) -> String {
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {text}"))
        .trim()
        .to_string()
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
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

const COUNTER: &str = r#"
export function increment(args) {
    const n = (umbra.storage.getJson("n") ?? 0) + 1;
    umbra.storage.setJson("n", n);
    umbra.emit("incremented", n);
    return n;
}
export function get() { return umbra.storage.getJson("n") ?? 0; }
export function spin() { for (;;) {} }
"#;

#[test]
fn a_js_counter_runs_sealed_commands_on_two_workers_and_answers_a_sealed_signed_query() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = if std::env::var_os("UMBRA_KEEP_TEST_DIRS").is_some() {
        let kept = tmp.keep();
        eprintln!("test directory kept: {}", kept.display());
        kept
    } else {
        tmp.path().to_path_buf()
    };
    let net = Net::start(&dir, 4);
    let ids: Vec<String> = (0..4).map(|i| net.worker_id(i)).collect();
    net.cli_ok(&["gk", "appoint", &ids[0], "--from", "admin"]);
    net.wait_key_epoch(&ids[0], 1);
    net.cli_ok(&["cluster", "create", "1", "--from", "admin"]);
    net.cli_ok(&["cluster", "assign", &ids[1], "1", "--from", "admin"]);
    net.cli_ok(&["cluster", "assign", &ids[2], "1", "--from", "admin"]);
    net.wait_key_epoch(&ids[1], 1);
    net.wait_key_epoch(&ids[2], 1);

    // Oversized code is refused with its size.
    let big = dir.join("big.js");
    std::fs::write(&big, vec![b' '; 50 * 1024]).expect("write");
    let e = net.cli_err(&["contract", "upload", big.to_str().expect("utf-8"), "--from", "admin"]);
    assert!(e.contains("exceeds the limit"), "{e}");

    let file = dir.join("counter.js");
    std::fs::write(&file, COUNTER).expect("write");
    let code =
        after(&net.cli_ok(&["contract", "upload", file.to_str().expect("utf-8"), "--from", "admin"]), "code hash ");
    let id = after(&net.cli_ok(&["contract", "instantiate", &code, "--cluster", "1", "--from", "admin"]), "contract ");
    wait_until("the cluster to publish the contract's keys", Duration::from_secs(60), || {
        (net.info(&id)["contract"]["keys"].as_array()?.len() == 1).then_some(())
    });

    // Three sealed commands; the plaintext never reaches the node.
    for _ in 0..3 {
        let out = net.cli_ok(&[
            "contract",
            "call",
            &id,
            "increment",
            "--args",
            r#"{"note":"secret-plaintext-42"}"#,
            "--from",
            "admin",
            "--wait",
        ]);
        assert!(out.contains("Ok"), "{out}");
    }
    let info = net.info(&id);
    assert_eq!((info["contract"]["commands"].as_u64(), info["contract"]["reported"].as_u64()), (Some(3), Some(3)));
    assert_eq!(info["contract"]["incidents"], 0, "{info}");
    let chain_root = info["contract"]["state_root"].as_str().expect("root").to_string();
    for w in 1..3 {
        wait_until("both workers to run the three commands", Duration::from_secs(30), || {
            let s = net.status(w)?;
            let c = &s["contracts"][id.trim_start_matches("0x")];
            (c["commands"] == 3 && c["state_root"] == chain_root.as_str()).then_some(())
        });
    }
    // Reports land once: the contract's egress sequence is exactly the number of commands.
    assert_eq!(info["last_command"]["result"]["status"]["status"], "ok", "{info}");

    let q = net.query(1, &id, "get");
    assert_eq!(q["output"], 3, "{q}");
    assert_eq!(q["verified"], true);
    assert_eq!(q["state_root"], chain_root.as_str());
    assert_eq!(q["worker"].as_str().map(|s| s.trim_start_matches("0x")), Some(ids[1].as_str()));

    let v0 = dir.join("v0");
    assert!(
        !files_containing(&v0, b"umbra.storage.getJson").is_empty(),
        "control: the node stores the (public) code in a form this scan can read"
    );
    let leaks = files_containing(&v0, b"secret-plaintext-42");
    assert!(leaks.is_empty(), "the node stored command plaintext in {leaks:?}");

    // A contract that loops forever runs out of gas; the workers keep running it.
    let out = net.cli_ok(&["contract", "call", &id, "spin", "--gas", "5000000", "--from", "admin", "--wait"]);
    assert!(out.contains("out of gas"), "{out}");
    net.cli_ok(&["contract", "call", &id, "increment", "--from", "admin", "--wait"]);
    // The chain has the first report; wait for worker 2 to have run the command too before asking it.
    wait_until("worker 2 to run five commands", Duration::from_secs(30), || {
        (net.status(2)?["contracts"][id.trim_start_matches("0x")]["commands"] == 5).then_some(())
    });
    assert_eq!(net.query(2, &id, "get")["output"], 4);

    // Bad input: a command sealed to an epoch without keys, a tampered query envelope.
    let e = net.cli_err(&["contract", "call", &id, "increment", "--key-epoch", "9", "--from", "admin"]);
    assert!(e.contains("no key of epoch 9"), "{e}");
    let mut s = TcpStream::connect(("127.0.0.1", net.query_ports[1])).expect("connects");
    let body = vec![7u8; 120];
    write!(s, "POST /query HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
        .expect("writes");
    s.write_all(&body).expect("writes");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("reads");
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("does not open"), "{answer}");

    // A worker joining the cluster later replays its history and ends with the same root.
    let root = net.info(&id)["contract"]["state_root"].as_str().expect("root").to_string();
    net.cli_ok(&["cluster", "assign", &ids[3], "1", "--from", "admin"]);
    net.wait_key_epoch(&ids[3], 1);
    wait_until("the late worker to replay the cluster's commands", Duration::from_secs(60), || {
        let s = net.status(3)?;
        let c = &s["contracts"][id.trim_start_matches("0x")];
        (c["commands"] == 5 && c["state_root"] == root.as_str()).then_some(())
    });
    assert_eq!(net.query(3, &id, "get")["output"], 4);
}
