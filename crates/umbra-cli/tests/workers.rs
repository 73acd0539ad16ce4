//! End-to-end tests of TEE workers on real processes: an `umbra node` validator and `umbra worker` processes
//! (dev TEE) on 127.0.0.1, driven through the `umbra` CLI: registration, gatekeepers and the master key,
//! cluster keys, a key rotation, restart from sealed state, refusal of an older sealed state, and a
//! tampering host between a worker and its node.

mod common;
use common::{CliUser, free_port, ok, scratch, umbra, wait_until};

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

/// A validator, its keystore home and the workers, as child processes killed on drop.
struct Net {
    dir: PathBuf,
    rpc: String,
    node: Option<Child>,
    workers: Vec<Option<Child>>,
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
    /// One validator on a dev chain whose administrator is the key `admin`, with `workers` operator keys
    /// `op0..` funded.
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
        let mut net =
            Net { dir: dir.to_path_buf(), rpc: format!("http://127.0.0.1:{rpc}"), node: None, workers: vec![] };
        let admin = net.new_key("admin");
        let mut allocs = vec!["--alloc".to_string(), format!("{admin}=1000000")];
        for i in 0..workers {
            let op = net.new_key(&format!("op{i}"));
            allocs.push("--alloc".into());
            allocs.push(format!("{op}=1000"));
        }
        ok(
            umbra()
                .args(["genesis", "new", "--chain-id", "umbra-workers", "--node"])
                .arg(&home)
                .args(["--dev-tee", "--sudo", &admin, "--commitment-interval", "10"])
                .args(&allocs)
                .arg("--out")
                .arg(dir.join("genesis.json"))
                .output()
                .expect("runs"),
            "genesis new",
        );
        net.start_node();
        net.workers = (0..workers).map(|_| None).collect();
        net
    }

    fn start_node(&mut self) {
        let log = std::fs::File::create(self.dir.join("node.log")).expect("log");
        let child = umbra()
            .arg("node")
            .arg("--config")
            .arg(self.dir.join("v0/node.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("node starts");
        self.node = Some(child);
        wait_until("the node to finalize block 2", Duration::from_secs(60), || {
            let out = self.cli(&["status", "--json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (v["height"].as_u64()? >= 2).then_some(())
        });
    }

    fn worker_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("worker-{i}"))
    }

    fn spawn_worker(&self, i: usize, node_url: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("worker-{i}.log")))
            .expect("log");
        umbra()
            .args(["worker", "--node", node_url, "--tee", "dev", "--operator", &format!("op{i}")])
            .arg("--data")
            .arg(self.worker_dir(i))
            .env("UMBRA_HOME", self.home())
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("worker starts")
    }

    fn start_worker(&mut self, i: usize) {
        let child = self.spawn_worker(i, &self.rpc.clone());
        self.workers[i] = Some(child);
    }

    fn stop_worker(&mut self, i: usize) {
        if let Some(mut c) = self.workers[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn worker_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("worker-{i}.log"))).unwrap_or_default()
    }

    /// The worker's non-secret status file.
    fn worker_status(&self, i: usize) -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(self.worker_dir(i).join("status.json")).ok()?).ok()
    }

    fn worker_id(&self, i: usize) -> String {
        wait_until(&format!("worker {i} to write its id"), Duration::from_secs(60), || {
            self.worker_status(i)?["id"].as_str().map(str::to_string)
        })
    }

    /// The chain's record of a worker (proven), once registered.
    fn record(&self, id: &str) -> Option<serde_json::Value> {
        let out = self.cli(&["worker-info", id, "--json"]);
        out.status.success().then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()).flatten()
    }

    fn keys(&self) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&self.cli_ok(&["gk", "status", "--json"])).expect("json");
        v["keys"].clone()
    }

    fn wait_key_epoch(&self, id: &str, epoch: u64) {
        wait_until(&format!("worker {id} to acknowledge key epoch {epoch}"), Duration::from_secs(90), || {
            (self.record(id)?["worker"]["key_epoch"].as_u64()? >= epoch).then_some(())
        });
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for w in self.workers.iter_mut().chain(std::iter::once(&mut self.node)) {
            if let Some(mut c) = w.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

#[test]
fn two_gatekeepers_and_two_dev_workers_register_share_keys_rotate_and_resume_from_sealed_state() {
    let dir = scratch();
    let mut net = Net::start(dir.path(), 4);
    for i in 0..4 {
        net.start_worker(i);
    }
    let ids: Vec<String> = (0..4).map(|i| net.worker_id(i)).collect();

    // Every worker registers itself, and the chain says plainly that it is simulated.
    for id in &ids {
        let rec = wait_until(&format!("worker {id} to register"), Duration::from_secs(60), || net.record(id));
        assert_eq!(rec["worker"]["tee"], "dev", "{rec}");
        assert_eq!(rec["worker"]["tcb_status"], "Simulated", "{rec}");
        assert!(rec["proven"].as_bool().unwrap_or(false));
    }
    let human = net.cli_ok(&["worker-info", &ids[0]]);
    assert!(human.contains("SIMULATED"), "{human}");

    // The first gatekeeper creates the master key; the second receives it.
    net.cli_ok(&["gk", "appoint", &ids[0], "--from", "admin"]);
    net.wait_key_epoch(&ids[0], 1);
    net.cli_ok(&["gk", "appoint", &ids[1], "--from", "admin"]);
    net.wait_key_epoch(&ids[1], 1);
    let keys = net.keys();
    assert_eq!(keys["key_epoch"], 1, "{keys}");
    let master_1 = keys["master_public"].clone();
    // The second gatekeeper acknowledges only after checking that the key it received derives to the
    // master public key on chain, and the first one published it: both hold the same master key.
    for i in 0..2 {
        wait_until("the gatekeeper's status to show the master key", Duration::from_secs(30), || {
            let s = net.worker_status(i)?;
            (s["master_epochs"] == serde_json::json!([1])).then_some(s)
        });
    }

    // Both workers of the cluster receive the cluster key.
    net.cli_ok(&["cluster", "create", "1", "--from", "admin"]);
    net.cli_ok(&["cluster", "assign", &ids[2], "1", "--from", "admin"]);
    net.cli_ok(&["cluster", "assign", &ids[3], "1", "--from", "admin"]);
    net.wait_key_epoch(&ids[2], 1);
    net.wait_key_epoch(&ids[3], 1);
    // Keep a copy of worker 3's sealed state as it is now, for the rollback check below.
    net.stop_worker(3);
    let old_state = dir.path().join("worker-3-old");
    copy_dir(&net.worker_dir(3), &old_state);
    net.start_worker(3);

    // A rotation completes: both gatekeepers switch to the new master key, members get the new cluster key,
    // and appointments are refused while it runs.
    net.cli_ok(&["gk", "rotate", "--from", "admin"]);
    // The rotation needs the leader's new key and every worker's acknowledgement (several blocks; workers
    // poll every second), so this appointment lands while it runs and must be refused.
    let during = net.cli(&["gk", "appoint", &ids[2], "--from", "admin"]);
    let said = String::from_utf8_lossy(&during.stderr).into_owned();
    assert!(
        !during.status.success() && said.contains("rotation"),
        "an appointment during a rotation is refused: {said}"
    );
    for id in &ids {
        net.wait_key_epoch(id, 2);
    }
    let keys = wait_until("the rotation to complete", Duration::from_secs(90), || {
        let k = net.keys();
        (k["key_epoch"] == 2 && k["rotation"].is_null()).then_some(k)
    });
    assert_ne!(keys["master_public"], master_1, "a rotation makes a new master key");
    for i in 0..4 {
        wait_until("old epoch secrets to be erased", Duration::from_secs(30), || {
            let s = net.worker_status(i)?;
            let held = if i < 2 { s["master_epochs"].clone() } else { s["cluster_keys"].clone() };
            let want = if i < 2 { serde_json::json!([2]) } else { serde_json::json!([[2, 1]]) };
            (held == want).then_some(())
        });
    }

    // A restarted worker resumes from its sealed state.
    let before = net.worker_status(2).expect("status")["height"].as_u64().expect("height");
    net.stop_worker(2);
    net.start_worker(2);
    wait_until("worker 2 to resume past its old height", Duration::from_secs(60), || {
        let s = net.worker_status(2)?;
        (s["height"].as_u64()? > before && s["cluster"] == 1).then_some(())
    });

    // A worker handed an older sealed state refuses to start once the chain holds a newer commitment.
    wait_until("worker 3 to commit a newer state", Duration::from_secs(60), || {
        let c = net.record(&ids[3])?["worker"]["commitment"].clone();
        (c.is_array()).then_some(())
    });
    net.stop_worker(3);
    std::fs::remove_dir_all(net.worker_dir(3)).expect("remove");
    copy_dir(&old_state, &net.worker_dir(3));
    let mut child = net.spawn_worker(3, &net.rpc.clone());
    let status =
        wait_until("the worker with old state to exit", Duration::from_secs(60), || child.try_wait().ok().flatten());
    assert!(!status.success(), "a rolled-back worker must refuse to start");
    let log = net.worker_log(3);
    assert!(log.contains("rolled-back state"), "the refusal names the rollback: {log}");
}

/// How the proxy treats `worker_sync` answers.
const HONEST: u8 = 0;
const ALTER: u8 = 1;
const DROP: u8 = 2;
const REPLAY: u8 = 3;

/// An HTTP proxy between a worker and its node that can tamper with the messages in `worker_sync` answers.
fn tampering_proxy(node: String, mode: Arc<AtomicU8>, tampered: Arc<AtomicUsize>) -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let upstream = node.trim_start_matches("http://").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (upstream, mode, tampered) = (upstream.clone(), mode.clone(), tampered.clone());
            std::thread::spawn(move || {
                let _ = serve(stream, &upstream, &mode, &tampered);
            });
        }
    });
    port
}

fn read_http(s: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Ok(None);
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

fn serve(mut client: TcpStream, upstream: &str, mode: &AtomicU8, tampered: &AtomicUsize) -> std::io::Result<()> {
    while let Some((head, body)) = read_http(&mut client)? {
        let mut up = TcpStream::connect(upstream)?;
        up.write_all(head.as_bytes())?;
        up.write_all(&body)?;
        let Some((rhead, rbody)) = read_http(&mut up)? else { return Ok(()) };
        let is_sync = String::from_utf8_lossy(&body).contains("worker_sync");
        let rbody = if is_sync { tamper(&rbody, mode.load(Ordering::SeqCst), tampered) } else { rbody };
        let rhead: String = rhead
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:") && !l.is_empty())
            .map(|l| format!("{l}\r\n"))
            .collect();
        client.write_all(format!("{rhead}content-length: {}\r\n\r\n", rbody.len()).as_bytes())?;
        client.write_all(&rbody)?;
    }
    Ok(())
}

/// Alters, drops or replays the first message of a `worker_sync` answer (the proofs are left as they were).
fn tamper(body: &[u8], mode: u8, tampered: &AtomicUsize) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) else { return body.to_vec() };
    let Some(blocks) = v["result"]["blocks"].as_array_mut() else { return body.to_vec() };
    let Some(i) = blocks.iter().position(|b| b["messages"].as_array().is_some_and(|m| !m.is_empty())) else {
        return body.to_vec();
    };
    match mode {
        ALTER => {
            let m = &mut blocks[i]["messages"][0]["message"];
            if let Some(e) = m["body"].get_mut("expires_at") {
                *e = serde_json::json!(e.as_u64().unwrap_or(0) + 1_000_000);
            } else {
                m["topic_seq"] = serde_json::json!(m["topic_seq"].as_u64().unwrap_or(0) + 7);
            }
        }
        DROP => {
            blocks[i]["messages"].as_array_mut().expect("messages").remove(0);
        }
        REPLAY => {
            // The same message shown again in a later block of the answer.
            let m = blocks[i]["messages"][0].clone();
            let last = blocks.len() - 1;
            blocks[last]["messages"].as_array_mut().expect("messages").push(m);
        }
        _ => return body.to_vec(),
    }
    tampered.fetch_add(1, Ordering::SeqCst);
    serde_json::to_vec(&v).expect("json")
}

#[test]
fn a_worker_behind_a_tampering_host_refuses_altered_dropped_and_replayed_messages_and_recovers() {
    let dir = scratch();
    let mut net = Net::start(dir.path(), 1);
    let mode = Arc::new(AtomicU8::new(ALTER));
    let tampered = Arc::new(AtomicUsize::new(0));
    let port = tampering_proxy(net.rpc.clone(), mode.clone(), tampered.clone());
    let child = net.spawn_worker(0, &format!("http://127.0.0.1:{port}"));
    net.workers[0] = Some(child);
    let id = net.worker_id(0);
    // The worker registers through the proxy (transactions pass untouched); the Registered message then
    // comes back through worker_sync, where the proxy tampers with it in turn three ways.
    wait_until("the worker to register", Duration::from_secs(60), || net.record(&id));
    for (m, what) in [(ALTER, "altered"), (DROP, "dropped"), (REPLAY, "replayed")] {
        let before = tampered.load(Ordering::SeqCst);
        mode.store(m, Ordering::SeqCst);
        wait_until(&format!("a {what} message to be refused"), Duration::from_secs(60), || {
            let refused = net.worker_status(0)?["rejected_batches"].as_u64()?;
            (tampered.load(Ordering::SeqCst) > before && refused > 0).then_some(())
        });
        let s = net.worker_status(0).expect("status");
        assert_eq!(s["registered"], false, "no tampered batch was applied: {s}");
    }
    assert!(net.worker_log(0).contains("rejected"), "the worker logs why it refused");
    // An honest host again: the worker, still running, takes the genuine messages.
    mode.store(HONEST, Ordering::SeqCst);
    wait_until("the worker to apply the genuine batch", Duration::from_secs(60), || {
        (net.worker_status(0)?["registered"] == true).then_some(())
    });
}

#[test]
fn umbra_dev_runs_a_gatekeeper_and_two_workers_whose_cluster_gets_its_key() {
    let dir = scratch();
    let rpc_port = free_port();
    let p2p_port = free_port();
    let log = std::fs::File::create(dir.path().join("dev.out")).expect("log");
    let mut child = umbra()
        .args(["dev", "--quiet", "--home"])
        .arg(dir.path().join("net"))
        .args(["--rpc-port", &rpc_port.to_string(), "--p2p-port", &p2p_port.to_string()])
        .env("UMBRA_HOME", dir.path().join("home"))
        .stdout(Stdio::from(log))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("umbra dev starts");
    let rpc = format!("http://127.0.0.1:{rpc_port}");
    let cli = |args: &[&str]| -> Option<serde_json::Value> {
        let out = umbra()
            .args(["--rpc", &rpc, "--json"])
            .args(args)
            .env("UMBRA_HOME", dir.path().join("home"))
            .output()
            .ok()?;
        out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Without any command from us, the dev network appoints the gatekeeper, which creates the master key,
        // and both workers of cluster 1 receive the cluster key.
        wait_until("the dev workers to be arranged and keyed", Duration::from_secs(120), || {
            let keys = cli(&["gk", "status"])?["keys"].clone();
            let workers = cli(&["worker-info"])?["workers"].as_array()?.clone();
            let keyed = workers.iter().filter(|w| w["cluster"] == 1 && w["key_epoch"].as_u64() >= Some(1)).count();
            (keys["key_epoch"] == 1 && keys["gatekeepers"].as_array()?.len() == 1 && workers.len() == 3 && keyed == 2)
                .then_some(())
        });
        let clusters = cli(&["cluster", "list"]).expect("clusters")["clusters"].clone();
        assert_eq!(clusters[0]["members"].as_array().map(|m| m.len()), Some(2), "{clusters}");
        assert!(
            clusters[0]["keys"].as_array().is_some_and(|k| !k.is_empty()),
            "the cluster key is published: {clusters}"
        );
    }));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}
