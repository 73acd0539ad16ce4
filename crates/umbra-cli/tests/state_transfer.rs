//! End-to-end test of state transfer on real processes: an `umbra node` validator, a gatekeeper, a 2-worker
//! cluster running the example JS counter and notebook, a master key rotation that erases the key epoch the
//! first commands were sealed to, and a third worker assigned afterwards. Replaying the history cannot work for
//! it (the old epoch's keys are gone), so it must catch up from a member's sealed snapshot, checked against the
//! chain's recorded state roots: `umbra contract query` on it returns the same count and state root as the
//! members, it runs the next command like them, and the notes' plaintext (in the snapshot) never appears in the
//! node's data, any host-side log or status file.

mod common;
use common::{CliUser, after, files_containing, free_port, ok, repo_path, umbra, wait_until};

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

struct Net {
    dir: PathBuf,
    rpc: String,
    children: Vec<Child>,
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
            children: vec![],
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
                .args(["genesis", "new", "--chain-id", "umbra-join", "--node"])
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
        let node = umbra()
            .arg("node")
            .arg("--config")
            .arg(home.join("node.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("node starts");
        net.children.push(node);
        wait_until("the node to finalize block 2", Duration::from_secs(60), || {
            let v: serde_json::Value = serde_json::from_slice(&net.cli(&["status", "--json"]).stdout).ok()?;
            (v["height"].as_u64()? >= 2).then_some(())
        });
        net.query_ports = (0..workers).map(|_| free_port()).collect();
        for i in 0..workers {
            let child = net.spawn_worker(i);
            net.children.push(child);
        }
        net
    }

    /// Starts worker `i`, naming every other worker's query endpoint as a snapshot peer (except for the last
    /// worker, which has none and can only replay); its host-side log goes to `worker-i.log` (at debug level, so
    /// a leak would show).
    fn spawn_worker(&self, i: usize) -> Child {
        let log = std::fs::File::create(self.dir.join(format!("worker-{i}.log"))).expect("log");
        let mut cmd = umbra();
        cmd.args(["worker", "--node", &self.rpc, "--tee", "dev", "--operator", &format!("op{i}")])
            .args(["--query-listen", &format!("127.0.0.1:{}", self.query_ports[i])])
            .arg("--data")
            .arg(self.dir.join(format!("worker-{i}")));
        let last = self.query_ports.len() - 1;
        for j in (0..self.query_ports.len()).filter(|j| *j != i && i != last) {
            cmd.args(["--snapshot-peer", &self.url(j)]);
        }
        cmd.env("UMBRA_HOME", self.home())
            .env("RUST_LOG", "debug")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("worker starts")
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

    fn query(&self, worker: usize, id: &str, method: &str, args: &str) -> serde_json::Value {
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
        serde_json::Deserializer::from_str(&out).into_iter::<serde_json::Value>().last().expect("output").expect("json")
    }

    /// The state root worker `i` reports for contract `id` in its status file, once it ran `commands`.
    fn root(&self, i: usize, id: &str, commands: u64) -> String {
        wait_until(&format!("worker {i} to run {commands} commands of {id}"), Duration::from_secs(90), || {
            let s = self.status(i)?;
            let c = &s["contracts"][id.trim_start_matches("0x")];
            (c["commands"] == commands).then(|| c["state_root"].as_str().map(str::to_string)).flatten()
        })
    }

    fn instantiate(&self, file: &str, salt: &str, epochs: usize) -> String {
        let path = repo_path("examples/contracts").join(file);
        let out = self.cli_ok(&["contract", "upload", path.to_str().expect("utf-8"), "--from", "admin"]);
        let code = after(&out, "code hash ");
        let out = self.cli_ok(&["contract", "instantiate", &code, "--cluster", "1", "--salt", salt, "--from", "admin"]);
        let id = after(&out, "contract ");
        self.wait_contract_keys(&id, epochs);
        id
    }

    fn wait_contract_keys(&self, id: &str, epochs: usize) {
        wait_until(&format!("the cluster to publish {epochs} key epochs of {id}"), Duration::from_secs(90), || {
            (self.info(id)["contract"]["keys"].as_array()?.len() == epochs).then_some(())
        });
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_worker_joining_after_a_key_rotation_catches_up_from_a_members_verified_snapshot_to_the_same_state() {
    let scratch = common::scratch();
    let dir = scratch.path().to_path_buf();
    let net = Net::start(&dir, 5);
    let ids: Vec<String> = (0..5).map(|i| net.worker_id(i)).collect();
    net.cli_ok(&["gk", "appoint", &ids[0], "--from", "admin"]);
    net.wait_key_epoch(&ids[0], 1);
    net.cli_ok(&["cluster", "create", "1", "--from", "admin"]);
    net.cli_ok(&["cluster", "assign", &ids[1], "1", "--from", "admin"]);
    net.cli_ok(&["cluster", "assign", &ids[2], "1", "--from", "admin"]);
    net.wait_key_epoch(&ids[1], 1);
    net.wait_key_epoch(&ids[2], 1);

    let js = net.instantiate("counter.js", "js", 1);
    let notebook = net.instantiate("notebook.js", "notebook", 1);
    const MARKER: &str = "marker-5d1e0b7a-snapshot-never-in-plaintext";
    for n in 1..=3 {
        assert_eq!(net.command(&js, "increment", "{}")["output"], n);
    }
    let note = format!(r#"{{"title":"secret","text":"{MARKER}"}}"#);
    assert_eq!(net.command(&notebook, "write", &note)["output"], 1);

    // A master key rotation: the members get the epoch-2 cluster key and erase epoch 1, which the commands
    // above were sealed to.
    net.cli_ok(&["gk", "rotate", "--from", "admin"]);
    wait_until("the rotation to complete", Duration::from_secs(120), || {
        let v: serde_json::Value = serde_json::from_str(&net.cli_ok(&["gk", "status", "--json"])).ok()?;
        (v["keys"]["key_epoch"] == 2 && v["keys"]["rotation"].is_null()).then_some(())
    });
    net.wait_contract_keys(&js, 2);
    net.wait_contract_keys(&notebook, 2);
    for n in 4..=5 {
        assert_eq!(net.command(&js, "increment", "{}")["output"], n, "commands sealed to epoch 2 run");
    }
    let note2 = format!(r#"{{"title":"second","text":"{MARKER}-2"}}"#);
    assert_eq!(net.command(&notebook, "write", &note2)["output"], 2);
    let members_root = net.root(1, &js, 5);
    assert_eq!(net.root(2, &js, 5), members_root);

    // The third worker joins now: it holds only the epoch-2 key, so it must take a member's snapshot.
    net.cli_ok(&["cluster", "assign", &ids[3], "1", "--from", "admin"]);
    net.wait_key_epoch(&ids[3], 2);
    assert_eq!(net.root(3, &js, 5), members_root, "the joiner's counter root is the members'");
    assert_eq!(net.root(3, &notebook, 2), net.root(1, &notebook, 2), "and its notebook root");
    let chain_root = net.info(&js)["contract"]["state_root"].as_str().expect("root").to_string();
    assert_eq!(members_root, chain_root);
    let q = net.query(3, &js, "get", "null");
    assert_eq!((q["output"].as_u64(), q["verified"].as_bool()), (Some(5), Some(true)), "{q}");
    assert_eq!(q["state_root"], chain_root.as_str());
    assert_eq!(net.query(3, &notebook, "read", r#"{"title":"secret"}"#)["output"], MARKER);
    let log3 = std::fs::read_to_string(dir.join("worker-3.log")).expect("log");
    assert!(log3.contains("caught up from a member's snapshot"), "the joiner took the snapshot path");
    assert!(!log3.contains("replaying a joined cluster's history"), "and did not replay");
    let s3 = net.status(3).expect("status");
    assert!(s3["contracts"].as_object().expect("contracts").values().all(|c| c["stalled"].is_null()), "{s3}");
    let served = (1..3).any(|i| {
        std::fs::read_to_string(dir.join(format!("worker-{i}.log")))
            .is_ok_and(|l| l.contains("served a sealed contract snapshot"))
    });
    assert!(served, "a member served it");

    // A worker with no peer to ask can only replay: the commands sealed to the erased epoch stall the contract,
    // with an error that says why.
    net.cli_ok(&["cluster", "assign", &ids[4], "1", "--from", "admin"]);
    let why = wait_until("the replaying worker to stall the counter", Duration::from_secs(90), || {
        net.status(4)?["contracts"][js.trim_start_matches("0x")]["stalled"].as_str().map(str::to_string)
    });
    assert!(why.contains("erased by a rotation") && why.contains("snapshot"), "{why}");

    // The joiner runs the next command like the members.
    assert_eq!(net.command(&js, "increment", "{}")["output"], 6);
    let root = net.root(1, &js, 6);
    assert_eq!(net.root(3, &js, 6), root);
    assert_eq!(net.root(2, &js, 6), root);

    // The notes (carried in the snapshot) appear nowhere outside the enclaves.
    let v0 = dir.join("v0");
    assert!(
        !files_containing(&v0, b"umbra.storage.getJson").is_empty(),
        "control: the node stores the (public) code in a form this scan can read"
    );
    let mut leaks = files_containing(&v0, MARKER.as_bytes());
    for f in ["node.log", "worker-0.log", "worker-1.log", "worker-2.log", "worker-3.log", "worker-4.log"] {
        let bytes = std::fs::read(dir.join(f)).expect("log");
        assert!(bytes.len() > 1_000, "control: {f} has content");
        if bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()) {
            leaks.push(dir.join(f));
        }
    }
    for i in 0..5 {
        leaks.extend(files_containing(&dir.join(format!("worker-{i}")), MARKER.as_bytes()));
    }
    assert!(leaks.is_empty(), "the marker leaked into {leaks:?}");
}
