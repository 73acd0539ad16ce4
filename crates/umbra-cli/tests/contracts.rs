//! End-to-end test of confidential contracts on real processes: an `umbra node` validator, a gatekeeper and
//! cluster workers (dev TEE) serving queries, driven through `umbra contract ...`. The acceptance scenario:
//! the example JS and WAT counters, the private notebook and a contract calling another, deployed into a
//! 2-worker cluster; sealed commands run by both workers to one report each; encrypted queries answered by
//! each worker; identical state roots on both workers and on chain; a worker restarted and queried again; a
//! third worker joining later and catching up to the same roots; bad input refused with clear errors while
//! everything keeps running; and a marker string carried by commands and state that never appears in the
//! node's data, the node's log, the workers' host-side logs or their status files.

mod common;
use common::{CliUser, after, files_containing, free_port, ok, repo_path, umbra, wait_until};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

struct Net {
    dir: PathBuf,
    rpc: String,
    node: Option<Child>,
    workers: Vec<Child>,
    query_ports: Vec<u16>,
}

impl CliUser for Net {
    fn rpc(&self) -> &str {
        &self.rpc
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
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
            net.query_ports.push(free_port());
            let child = net.spawn_worker(i);
            net.workers.push(child);
        }
        net
    }

    /// Starts worker `i` (its data directory, operator and query port are fixed, so this also restarts it);
    /// its host-side log is appended to `worker-i.log`.
    fn spawn_worker(&self, i: usize) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("worker-{i}.log")))
            .expect("log");
        umbra()
            .args(["worker", "--node", &self.rpc, "--tee", "dev", "--operator", &format!("op{i}")])
            .args(["--query-listen", &format!("127.0.0.1:{}", self.query_ports[i])])
            .arg("--data")
            .arg(self.dir.join(format!("worker-{i}")))
            .env("UMBRA_HOME", self.home())
            .env("RUST_LOG", "debug")
            .env("TZ", "UTC")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("worker starts")
    }

    fn restart_worker(&mut self, i: usize) {
        let _ = self.workers[i].kill();
        let _ = self.workers[i].wait();
        self.workers[i] = self.spawn_worker(i);
    }

    fn status(&self, i: usize) -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(self.dir.join(format!("worker-{i}/status.json"))).ok()?).ok()
    }

    fn worker_id(&self, i: usize) -> String {
        wait_until("a worker id", Duration::from_secs(60), || self.status(i)?["id"].as_str().map(str::to_string))
    }

    fn info(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["contract", "info", id, "--json"])).expect("json")
    }

    fn url(&self, worker: usize) -> String {
        format!("http://127.0.0.1:{}", self.query_ports[worker])
    }

    fn query(&self, worker: usize, id: &str, method: &str) -> serde_json::Value {
        self.query_args(worker, id, method, "null")
    }

    fn query_args(&self, worker: usize, id: &str, method: &str, args: &str) -> serde_json::Value {
        let url = self.url(worker);
        let out = self.cli_ok(&[
            "contract", "query", id, method, "--args", args, "--worker", &url, "--signed", "--from", "admin", "--json",
        ]);
        serde_json::from_str(&out).expect("json")
    }

    /// `umbra contract command` through worker 1: the JSON report with the return value.
    fn command(&self, id: &str, method: &str, args: &str) -> serde_json::Value {
        let url = self.url(1);
        let out =
            self.cli_ok(&["contract", "command", id, method, args, "--worker", &url, "--from", "admin", "--json"]);
        // The transaction's JSON, then the command's.
        serde_json::Deserializer::from_str(&out).into_iter::<serde_json::Value>().last().expect("output").expect("json")
    }

    /// The state root worker `i` reports for contract `id` in its status file, once it ran `commands`.
    fn root(&self, i: usize, id: &str, commands: u64) -> String {
        wait_until(&format!("worker {i} to run {commands} commands of {id}"), Duration::from_secs(60), || {
            let s = self.status(i)?;
            let c = &s["contracts"][id.trim_start_matches("0x")];
            (c["commands"] == commands).then(|| c["state_root"].as_str().map(str::to_string)).flatten()
        })
    }

    fn upload(&self, path: &Path) -> String {
        after(&self.cli_ok(&["contract", "upload", path.to_str().expect("utf-8"), "--from", "admin"]), "code hash ")
    }

    /// Instantiates `code` on cluster 1 and waits for its keys.
    fn instantiate(&self, code: &str, salt: &str) -> String {
        let id = after(
            &self.cli_ok(&["contract", "instantiate", code, "--cluster", "1", "--salt", salt, "--from", "admin"]),
            "contract ",
        );
        wait_until("the cluster to publish the contract's keys", Duration::from_secs(60), || {
            (self.info(&id)["contract"]["keys"].as_array()?.len() == 1).then_some(())
        });
        id
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

/// Misbehaving methods, each refused with a clear error while everything else keeps running.
const BAD: &str = r#"
export function spin() { for (;;) {} }
export function hog() { const a = []; for (;;) { a.push(new Array(100000).fill(7)); } }
export function fail() { throw new Error("deliberately broken"); }
export function garbage() { const o = {}; o.self = o; return o; }
"#;

/// Calls the counter whose id it is given.
const PROXY: &str = r#"
export function bump(a) { return umbra.callJson(a.target, "increment", {}); }
export function forever(a) { return umbra.callJson(umbra.self, "forever", a); }
"#;

fn examples() -> PathBuf {
    repo_path("examples/contracts")
}

#[test]
fn js_and_wat_counters_run_identically_on_a_two_worker_cluster_survive_a_restart_and_a_late_joiner_catches_up() {
    let scratch = common::scratch();
    let dir = scratch.path().to_path_buf();
    let mut net = Net::start(&dir, 4);
    let ids: Vec<String> = (0..4).map(|i| net.worker_id(i)).collect();
    net.cli_ok(&["gk", "appoint", &ids[0], "--from", "admin"]);
    net.wait_key_epoch(&ids[0], 1);
    net.cli_ok(&["cluster", "create", "1", "--from", "admin"]);
    net.cli_ok(&["cluster", "assign", &ids[1], "1", "--from", "admin"]);
    net.cli_ok(&["cluster", "assign", &ids[2], "1", "--from", "admin"]);
    net.wait_key_epoch(&ids[1], 1);
    net.wait_key_epoch(&ids[2], 1);

    // Oversized and invalid code are refused with a reason.
    let big = dir.join("big.js");
    std::fs::write(&big, vec![b' '; 50 * 1024]).expect("write");
    let e = net.cli_err(&["contract", "upload", big.to_str().expect("utf-8"), "--from", "admin"]);
    assert!(e.contains("exceeds the limit"), "{e}");
    let broken = dir.join("broken.wat");
    std::fs::write(&broken, "(module (func").expect("write");
    let e = net.cli_err(&["contract", "upload", broken.to_str().expect("utf-8"), "--from", "admin"]);
    assert!(e.contains("not valid WebAssembly"), "{e}");
    // A binary that is not valid wasm is content the chain stores as is; the cluster refuses to run it.
    let invalid = dir.join("invalid.wasm");
    std::fs::write(&invalid, b"\0asm\x01\0\0\0\x01\xff\xff").expect("write");
    let invalid = net.instantiate(&net.upload(&invalid), "invalid");
    let e = net.cli_err(&["contract", "command", &invalid, "get", "--from", "admin"]);
    assert!(e.contains("invalid module"), "{e}");

    let js = net.instantiate(&net.upload(&examples().join("counter.js")), "js");
    let wat = net.instantiate(&net.upload(&examples().join("counter.wat")), "wat");
    let notebook = net.instantiate(&net.upload(&examples().join("notebook.js")), "notebook");
    let (bad_file, proxy_file) = (dir.join("bad.js"), dir.join("proxy.js"));
    std::fs::write(&bad_file, BAD).expect("write");
    std::fs::write(&proxy_file, PROXY).expect("write");
    let bad = net.instantiate(&net.upload(&bad_file), "bad");
    let proxy = net.instantiate(&net.upload(&proxy_file), "proxy");

    // A storage price on the cluster: instantiation reserves the code's bytes from the deployer, and a command
    // brings the deposit to (code + stored bytes) from the contract's funded account.
    net.cli_ok(&["cluster", "storage-deposit", "1", "--per-byte", "2", "--from", "admin"]);
    let paid = net.instantiate(&net.upload(&examples().join("counter.js")), "paid");
    let code_len = std::fs::metadata(examples().join("counter.js")).expect("counter.js").len();
    let info = net.info(&paid);
    assert_eq!(info["contract"]["storage_deposit"], (code_len * 2).to_string(), "{info}");
    assert_eq!(info["contract"]["stored_bytes"], 0, "{info}");
    let account = info["contract"]["account"].as_str().expect("account").to_string();
    net.cli_ok(&["transfer", "--to", &account, "--amount", "1", "--from", "admin"]);
    assert_eq!(net.command(&paid, "increment", "{}")["output"], 1);
    let info = net.info(&paid);
    let stored = info["contract"]["stored_bytes"].as_u64().expect("stored bytes");
    assert!(stored > 0, "the report carried the contract's stored bytes: {info}");
    assert_eq!(info["contract"]["storage_deposit"], ((code_len + stored) * 2).to_string(), "{info}");
    net.cli_ok(&["cluster", "storage-deposit", "1", "--from", "admin"]);

    // A contract calls the JS counter (same cluster): the counter counts it.
    let target = format!(r#"{{"target":"{}"}}"#, js.trim_start_matches("0x"));
    let out = net.command(&proxy, "bump", &target);
    assert_eq!(out["output"], 1, "{out}");
    let e = net.cli_err(&["contract", "command", &proxy, "forever", "{}", "--from", "admin"]);
    assert!(e.contains("depth"), "endless recursion across calls stops at the depth limit: {e}");

    // Sealed commands, with a marker that must never show outside the enclaves.
    const MARKER: &str = "marker-7f3a9c1e-never-in-plaintext";
    for n in 2..=4 {
        let out = net.command(&js, "increment", &format!(r#"{{"note":"{MARKER}"}}"#));
        assert_eq!(out["output"], n, "the command's return value: {out}");
        assert_eq!(out["result"]["status"]["status"], "ok");
    }
    for n in 1..=2 {
        assert_eq!(net.command(&wat, "increment", "{}")["output"], n);
    }
    let note = format!(r#"{{"title":"secret","text":"{MARKER}"}}"#);
    assert_eq!(net.command(&notebook, "write", &note)["output"], 1);

    // The events of my commands, checked against the chain's events hashes.
    let ev: serde_json::Value = serde_json::from_str(&net.cli_ok(&[
        "contract",
        "events",
        &js,
        "--worker",
        &net.url(2),
        "--from",
        "admin",
        "--json",
    ]))
    .expect("json");
    let cmds = ev["commands"].as_array().expect("commands");
    assert_eq!(cmds.len(), 3, "{ev}");
    assert_eq!(cmds[2]["events"][0], serde_json::json!({ "name": "incremented", "data": 4 }));
    assert!(cmds.iter().all(|c| c["verified"] == true));

    // Encrypted queries from each worker; identical roots on both workers and on chain.
    let counts = [(&js, 3u64, 4), (&wat, 2, 2)];
    for (id, commands, count) in counts {
        let chain_root = net.info(id)["contract"]["state_root"].as_str().expect("root").to_string();
        for w in 1..3 {
            assert_eq!(net.root(w, id, commands), chain_root, "worker {w}'s root of {id} is the chain's");
            let q = net.query(w, id, "get");
            assert_eq!((q["output"].as_u64(), q["verified"].as_bool()), (Some(count), Some(true)), "{q}");
            assert_eq!(q["state_root"], chain_root.as_str());
        }
    }
    assert_eq!(net.root(1, &notebook, 1), net.root(2, &notebook, 1));
    assert_eq!(net.root(1, &proxy, 2), net.root(2, &proxy, 2));
    // The notebook: only its owner reads a note, through a signed query.
    assert_eq!(net.query_args(2, &notebook, "read", r#"{"title":"secret"}"#)["output"], MARKER);
    let url = net.url(1);
    let e = net.cli_err(&["contract", "query", &notebook, "read", "--args", "{}", "--worker", &url]);
    assert!(e.contains("sign the query"), "{e}");

    // Bad input: each a clear error; the workers and the other contracts keep running.
    let before_bad = net.root(1, &bad, 0);
    for (method, why, gas) in [
        ("spin", "out of gas", "20000000"),
        ("hog", "out of memory", "900000000"),
        ("fail", "deliberately broken", "20000000"),
        ("garbage", "circular", "20000000"),
        ("missing", "unknown method", "20000000"),
    ] {
        let e = net.cli_err(&["contract", "command", &bad, method, "--gas", gas, "--from", "admin"]);
        assert!(e.contains(why), "{method}: {e}");
        if method == "spin" {
            let last = net.info(&bad)["last_command"]["result"].clone();
            assert_eq!((last["gas_used"].as_u64(), last["refund"].as_str()), (Some(20_000_000), Some("0")), "{last}");
        }
    }
    assert_eq!(net.info(&bad)["contract"]["state_root"], before_bad.as_str(), "failed commands change nothing");
    let e = net.cli_err(&["contract", "command", &js, "increment", "--key-epoch", "9", "--from", "admin"]);
    assert!(e.contains("no key of epoch 9"), "{e}");
    let unknown = format!("0x{}", "ab".repeat(32));
    let e = net.cli_err(&["contract", "query", &unknown, "get", "--worker", &url]);
    assert!(e.contains("does not run contract"), "{e}");
    let mut s = TcpStream::connect(("127.0.0.1", net.query_ports[1])).expect("connects");
    let body = vec![7u8; 120];
    write!(s, "POST /query HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
        .expect("writes");
    s.write_all(&body).expect("writes");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("reads");
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("does not open"), "{answer}");
    assert_eq!(net.query(1, &js, "get")["output"], 4, "still answering");

    // A restarted worker answers again from its sealed state.
    let root_before = net.root(1, &js, 3);
    net.restart_worker(1);
    let q = wait_until("the restarted worker to answer", Duration::from_secs(60), || {
        let out = net.cli(&["contract", "query", &js, "get", "--worker", &net.url(1), "--json"]);
        out.status.success().then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()).flatten()
    });
    assert_eq!((q["output"].as_u64(), q["state_root"].as_str()), (Some(4), Some(root_before.as_str())), "{q}");
    assert_eq!(net.command(&js, "increment", "{}")["output"], 5, "it keeps running commands");

    // A worker joining later replays the cluster's history to the same roots.
    net.cli_ok(&["cluster", "assign", &ids[3], "1", "--from", "admin"]);
    net.wait_key_epoch(&ids[3], 1);
    for (id, commands) in [(&js, 4), (&wat, 2), (&notebook, 1), (&proxy, 2), (&bad, 5)] {
        let root = net.root(1, id, commands);
        assert_eq!(net.root(2, id, commands), root);
        assert_eq!(net.root(3, id, commands), root, "the late worker caught up on {id}");
    }
    assert_eq!(net.query(3, &js, "get")["output"], 5);
    assert_eq!(net.query_args(3, &notebook, "read", r#"{"title":"secret"}"#)["output"], MARKER);

    // The marker (in command arguments and contract state) appears nowhere outside the enclaves.
    let v0 = dir.join("v0");
    assert!(
        !files_containing(&v0, b"umbra.storage.getJson").is_empty(),
        "control: the node stores the (public) code in a form this scan can read"
    );
    let mut leaks = files_containing(&v0, MARKER.as_bytes());
    for f in ["node.log", "worker-0.log", "worker-1.log", "worker-2.log", "worker-3.log"] {
        let bytes = std::fs::read(dir.join(f)).expect("log");
        assert!(bytes.len() > 1_000, "control: {f} has content");
        if bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()) {
            leaks.push(dir.join(f));
        }
    }
    for i in 0..4 {
        let status = dir.join(format!("worker-{i}/status.json"));
        if std::fs::read_to_string(&status).expect("status").contains(MARKER) {
            leaks.push(status);
        }
    }
    assert!(leaks.is_empty(), "the marker leaked into {leaks:?}");
}

#[test]
fn the_contract_benchmarks_run_end_to_end_with_tiny_parameters() {
    let scratch = common::scratch();
    let home = scratch.path().join("home");
    let run = |args: &[&str]| -> serde_json::Value {
        let out = umbra().args(args).arg("--json").env("UMBRA_HOME", &home).output().expect("umbra runs");
        let text = ok(out, &format!("umbra {args:?}"));
        serde_json::from_str(text.lines().last().expect("a JSON line")).expect("json")
    };
    let js = run(&["bench", "commands", "--commands", "12", "--senders", "3", "--workers", "1"]);
    assert_eq!((js["commands"].as_u64(), js["incidents"].as_u64()), (Some(12), Some(0)), "{js}");
    assert!(js["commands_per_sec"].as_f64().is_some_and(|r| r > 0.0), "{js}");
    let wasm = run(&["bench", "commands", "--wasm", "--commands", "6", "--senders", "2", "--workers", "1"]);
    assert_eq!(wasm["engine"], "wasm", "{wasm}");
    let q = run(&["bench", "query", "--queries", "20", "--cold", "5"]);
    assert_eq!(q["queries"], 20, "{q}");
    assert!(q["p50_ms"].as_f64().is_some() && q["js_cold_start_p50_ms"].as_f64().is_some(), "{q}");
}
