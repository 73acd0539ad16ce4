//! Process-level fault tests: four real `umbra node` processes on 127.0.0.1, made with
//! `umbra node init` and `umbra genesis new`, killed with SIGKILL, restarted and wiped.

mod common;
use common::{free_port, ok, umbra};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Net {
    dir: PathBuf,
    rpc: Vec<u16>,
    procs: Vec<Option<Child>>,
}

impl Net {
    fn init(dir: &Path, n: usize) -> Net {
        Net::init_with(dir, n, 0, &[])
    }

    /// `n` validators and `followers` more nodes that follow until staked into a committee.
    fn init_with(dir: &Path, n: usize, followers: usize, genesis_args: &[&str]) -> Net {
        let mut rpc = Vec::new();
        let mut nodes = Vec::new();
        for i in 0..n + followers {
            let (p2p, r) = (free_port(), free_port());
            let home = dir.join(format!("v{i}"));
            ok(
                umbra()
                    .args(["node", "init", "--name", &format!("v{i}")])
                    .args(["--p2p-listen", &format!("127.0.0.1:{p2p}"), "--rpc-listen", &format!("127.0.0.1:{r}")])
                    .arg("--dir")
                    .arg(&home)
                    .output()
                    .expect("runs"),
                "node init",
            );
            rpc.push(r);
            nodes.push(if i < n { "--node" } else { "--follower" }.to_string());
            nodes.push(home.display().to_string());
        }
        let dev = umbra_crypto::Keypair::from_seed(umbra_types::sha256(&[b"umbra/dev/account/0"]).0).address();
        ok(
            umbra()
                .args(["genesis", "new", "--chain-id", "umbra-faults"])
                .args(&nodes)
                .args(genesis_args)
                .args(["--alloc", &format!("{dev}=1000000")])
                .arg("--out")
                .arg(dir.join("genesis.json"))
                .output()
                .expect("runs"),
            "genesis new",
        );
        let total = n + followers;
        let mut net = Net { dir: dir.to_path_buf(), rpc, procs: (0..total).map(|_| None).collect() };
        for i in 0..total {
            net.start(i);
        }
        net
    }

    fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("v{i}.log")))
            .expect("log");
        let child = umbra()
            .arg("node")
            .arg("--config")
            .arg(self.dir.join(format!("v{i}/node.toml")))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("node starts");
        self.procs[i] = Some(child);
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = Command::new("kill").args(["-9", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }

    fn cli(&self, i: usize, args: &[&str]) -> Output {
        umbra()
            .args(["--rpc", &format!("http://127.0.0.1:{}", self.rpc[i])])
            .args(args)
            .env("UMBRA_HOME", self.dir.join("home"))
            .output()
            .expect("runs")
    }

    fn height(&self, i: usize) -> Option<u64> {
        let out = self.cli(i, &["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["height"].as_u64()
    }

    fn wait_height(&self, nodes: &[usize], h: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for &i in nodes {
            while self.height(i).is_none_or(|x| x < h) {
                assert!(
                    Instant::now() < deadline,
                    "v{i} did not reach height {h} within {timeout:?} (at {:?}); the end of its log:\n{}",
                    self.height(i),
                    self.log_tail(i)
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join(format!("v{i}.log"))).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A raw JSON-RPC call (no client-side verification: this test compares nodes directly).
    fn rpc_call(&self, i: usize, method: &str, params: serde_json::Value) -> serde_json::Value {
        let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.rpc[i])).expect("connect");
        use std::io::{Read, Write};
        write!(
            stream,
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut resp = String::new();
        stream.read_to_string(&mut resp).expect("read");
        let json = &resp[resp.find("\r\n\r\n").expect("http response") + 4..];
        let v: serde_json::Value = serde_json::from_str(json).expect("json-rpc answer");
        v["result"].clone()
    }

    fn block_hash(&self, i: usize, h: u64) -> String {
        let v = self.rpc_call(i, "chain_getBlock", serde_json::json!([h]));
        v["hash"].as_str().unwrap_or_else(|| panic!("v{i} has no block {h}: {v}")).to_string()
    }

    /// No fork: every node that has a height has the same block there.
    fn assert_same_chain(&self, nodes: &[usize], upto: u64) {
        for h in 1..=upto {
            let first = self.block_hash(nodes[0], h);
            for &i in &nodes[1..] {
                assert_eq!(self.block_hash(i, h), first, "v{i} disagrees with v{} at height {h}", nodes[0]);
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill9(i);
        }
    }
}

#[test]
fn four_node_processes_survive_crashes_stall_without_forking_and_resync_from_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = Net::init(dir.path(), 4);
    let all = [0, 1, 2, 3];
    net.wait_height(&all, 3, Duration::from_secs(90));

    // One validator down: the other three keep finalizing.
    net.kill9(3);
    let h = net.height(0).expect("height");
    net.wait_height(&[0, 1, 2], h + 5, Duration::from_secs(30));

    // Two down: no quorum, finality stops, and what was finalized stays the same everywhere.
    net.kill9(2);
    std::thread::sleep(Duration::from_secs(2));
    let stalled = net.height(0).expect("height");
    std::thread::sleep(Duration::from_secs(3));
    let later = net.height(0).expect("height");
    assert!(later <= stalled + 1, "finality continued without a quorum: {stalled} -> {later}");
    net.assert_same_chain(&[0, 1], later.min(net.height(1).expect("height")));

    // Both back: the network continues and the restarted nodes catch up.
    net.start(2);
    net.start(3);
    net.wait_height(&all, later + 5, Duration::from_secs(90));
    net.assert_same_chain(&all, later + 5);

    // A node whose data is wiped re-syncs from the others.
    net.kill9(1);
    std::fs::remove_dir_all(dir.path().join("v1/data")).expect("wipe");
    let tip = net.height(0).expect("height");
    net.start(1);
    net.wait_height(&all, tip + 3, Duration::from_secs(120));
    net.assert_same_chain(&all, tip + 3);
}

#[test]
fn a_bonded_follower_joins_the_committee_at_the_next_epoch_and_the_chain_keeps_finalizing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net =
        Net::init_with(dir.path(), 4, 1, &["--epoch-length", "10", "--committee-size", "4", "--block-budget", "1"]);
    let validators = [0, 1, 2, 3];
    net.wait_height(&validators, 2, Duration::from_secs(90));
    let committee = net.rpc_call(0, "staking_committee", serde_json::json!([]));
    let follower_key = hex::encode(umbra_node::validator_public(
        &umbra_node::load_validator_key(&dir.path().join("v4/validator.key")).expect("key"),
    ));
    let members: Vec<String> = committee["committee"]
        .as_array()
        .expect("committee")
        .iter()
        .map(|k| k.as_str().expect("hex").to_string())
        .collect();
    assert_eq!(members.len(), 4);
    assert!(!members.contains(&follower_key), "the follower starts outside the committee");
    assert_eq!(net.rpc_call(4, "staking_committee", serde_json::json!([]))["voting"], false);

    // The dev account bonds 5,000 UMB to the follower's key.
    let seed_file = dir.path().join("dev.seed");
    std::fs::write(&seed_file, hex::encode(umbra_types::sha256(&[b"umbra/dev/account/0"]).0)).expect("seed");
    ok(
        umbra()
            .args(["keys", "import", "dev", "--seed-file"])
            .arg(&seed_file)
            .env("UMBRA_HOME", dir.path().join("home"))
            .output()
            .expect("runs"),
        "keys import",
    );
    ok(
        net.cli(0, &["staking", "bond", "--validator-key", &follower_key, "--amount", "5000", "--from", "dev"]),
        "staking bond",
    );

    // At the next epoch boundary it is chosen, and from then on it votes.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let c = net.rpc_call(0, "staking_committee", serde_json::json!([]));
        let now: Vec<&str> = c["committee"].as_array().expect("committee").iter().filter_map(|k| k.as_str()).collect();
        if now.contains(&follower_key.as_str()) {
            assert_eq!(now.len(), 4, "the committee keeps its size");
            break;
        }
        assert!(Instant::now() < deadline, "the bonded key never entered the committee: {c}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let h = net.height(0).expect("height");
    net.wait_height(&[0, 4], h + 15, Duration::from_secs(90));
    let deadline = Instant::now() + Duration::from_secs(30);
    while net.rpc_call(4, "staking_committee", serde_json::json!([]))["voting"] != true {
        assert!(Instant::now() < deadline, "the new member does not vote");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Everyone, including the new member, has the same chain across the epoch change.
    net.assert_same_chain(&[0, 1, 2, 3, 4], h + 10);

    // Validators earned their share (10% by default) of the 1 UMB block budget: v0's account
    // holds at least one block's reward (fees alone here are a few thousandths of a token).
    let v0 = umbra_types::Address(umbra_node::validator_public(
        &umbra_node::load_validator_key(&dir.path().join("v0/validator.key")).expect("key"),
    ));
    let acct = net.rpc_call(1, "state_getAccount", serde_json::json!([v0.to_string(), false]));
    let balance: u128 = acct["balance"].as_str().expect("balance").parse().expect("integer");
    assert!(balance >= umbra_types::UNIT / 10, "no block rewards reached validator v0: {acct}");

    // A client that pinned genesis follows the committee change through the boundary blocks'
    // certificates, so verified reads keep working in later epochs.
    let dev = umbra_crypto::Keypair::from_seed(umbra_types::sha256(&[b"umbra/dev/account/0"]).0).address().to_string();
    let out = ok(net.cli(4, &["account", &dev]), "account after the epoch change");
    assert!(out.contains("verified"), "{out}");
}
