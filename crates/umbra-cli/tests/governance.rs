//! End-to-end test of on-chain governance on real processes: one `umbra node` validator on a dev-TEE chain
//! without a registry administrator, and an `umbra worker` whose measurement is not on the allow-list,
//! driven through the `umbra` CLI (`gov propose`, `gov vote`, `gov show`, `gov list`, `treasury`).

mod common;
use common::{CliUser, free_port, ok, umbra, wait_until};

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

/// A measurement the dev worker claims that genesis does not allow.
const OTHER: &str = "7777777777777777777777777777777777777777777777777777777777777777";
/// A measurement a proposal without quorum tries to allow.
const UNPOPULAR: &str = "8888888888888888888888888888888888888888888888888888888888888888";
/// Blocks of voting (about 5 blocks a second on an idle chain: long enough for the CLI to vote).
const VOTING: &str = "120";

/// The validator and the worker, as child processes killed on drop.
struct Net {
    dir: PathBuf,
    rpc: String,
    node: Option<Child>,
    worker: Option<Child>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in [self.worker.take(), self.node.take()].into_iter().flatten() {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
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
    fn start(dir: &Path) -> Net {
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
        let mut net = Net { dir: dir.to_path_buf(), rpc: format!("http://127.0.0.1:{rpc}"), node: None, worker: None };
        let voter = net.new_key("voter");
        let small = net.new_key("small");
        let op = net.new_key("op0");
        ok(
            umbra()
                .args(["genesis", "new", "--chain-id", "umbra-gov", "--node"])
                .arg(&home)
                // A dev-TEE chain without --sudo: only governance can change the allow-list.
                .args(["--dev-tee", "--commitment-interval", "10"])
                .args(["--gov-preparation-period", "0", "--gov-voting-period", VOTING, "--gov-enactment-delay", "5"])
                .args(["--gov-quorum-bps", "1000", "--gov-min-deposit", "1"])
                .args(["--alloc", &format!("{voter}=1000000"), "--alloc", &format!("{small}=1000")])
                .args(["--alloc", &format!("{op}=1000")])
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
        net
    }

    fn start_worker(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("worker.log")).expect("log");
        let child = umbra()
            .args(["worker", "--node", &self.rpc, "--tee", "dev", "--operator", "op0", "--dev-measurement", OTHER])
            .arg("--data")
            .arg(self.dir.join("worker"))
            .env("UMBRA_HOME", self.dir.join("home"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("worker starts");
        self.worker = Some(child);
    }

    fn worker_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("worker.log")).unwrap_or_default()
    }

    fn worker_id(&self) -> String {
        wait_until("the worker to write its id", Duration::from_secs(60), || {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(self.dir.join("worker/status.json")).ok()?).ok()?;
            v["id"].as_str().map(str::to_string)
        })
    }

    fn registered(&self, id: &str) -> bool {
        self.cli(&["worker-info", id, "--json"]).status.success()
    }

    fn height(&self) -> u64 {
        self.json(&["status"])["height"].as_u64().expect("height")
    }

    fn wait_height(&self, h: u64) {
        wait_until(&format!("height {h}"), Duration::from_secs(120), || (self.height() >= h).then_some(()));
    }

    fn proposal(&self, id: u64) -> serde_json::Value {
        self.json(&["gov", "show", &id.to_string()])
    }

    fn status(&self, id: u64) -> String {
        self.proposal(id)["proposal"]["status"]["status"].as_str().expect("status").to_string()
    }

    fn measurements(&self) -> Vec<String> {
        let p = self.json(&["registry", "policy"]);
        p["policy"]["measurements"].as_array().expect("list").iter().map(|m| m.to_string()).collect()
    }
}

/// A scratch directory, kept after the test when `UMBRA_KEEP_TEST_DIRS` is set (for reading the logs).
fn scratch() -> (Option<tempfile::TempDir>, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    if std::env::var_os("UMBRA_KEEP_TEST_DIRS").is_some() {
        eprintln!("test directory kept: {}", dir.path().display());
        return (None, dir.keep());
    }
    let path = dir.path().to_path_buf();
    (Some(dir), path)
}

#[test]
fn a_measurement_allowed_by_vote_lets_a_refused_worker_register_and_a_proposal_without_quorum_changes_nothing() {
    let (_guard, dir) = scratch();
    let mut net = Net::start(&dir);

    // No sudo: the registry administrator's call is refused on chain.
    let out = net.cli(&["registry", "allow", OTHER, "--from", "voter"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no registry administrator"), "{out:?}");

    // The worker's measurement is not allowed: its registration fails on chain.
    net.start_worker();
    let id = net.worker_id();
    wait_until("the worker to submit its registration", Duration::from_secs(60), || {
        net.worker_log().contains("submitted register_worker").then_some(())
    });
    let submitted_at = net.height();
    net.wait_height(submitted_at + 5);
    assert!(!net.registered(&id), "a worker off the allow-list is refused");

    // Proposal 0 will not reach the quorum (10 of the 1,002,000 tokens vote; 10% are needed).
    let out = net.cli_ok(&["gov", "propose", "allow-measurement", UNPOPULAR, "--from", "small"]);
    assert!(out.contains("proposal 0 submitted"), "{out}");
    net.cli_ok(&["gov", "vote", "0", "aye", "--amount", "10", "--from", "small"]);
    // Proposal 1 passes: 500,000 tokens vote aye.
    let out = net.cli_ok(&["gov", "propose", "allow-measurement", OTHER, "--from", "voter", "--description", "w"]);
    assert!(out.contains("proposal 1 submitted"), "{out}");
    net.cli_ok(&["gov", "vote", "1", "aye", "--amount", "500000", "--conviction", "1", "--from", "voter"]);

    // Proposal 2: a batch from a JSON file (a signal and a new cluster), passed by the same voter.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"[{"type": "launch_rockets"}]"#).expect("write");
    let out = net.cli(&["gov", "propose", "--file", bad.to_str().expect("path"), "--from", "voter"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a JSON array of governance calls"), "{out:?}");
    let small = net.json(&["keys", "show", "small"])["address"].as_str().expect("address").to_string();
    let batch = dir.join("batch.json");
    let calls = serde_json::json!([
        { "type": "signal", "text": "clusters for everyone" },
        { "type": "admin", "call": { "type": "create_cluster", "cluster": 3 } },
        { "type": "treasury_spend", "to": small, "amount": "1000" },
    ]);
    std::fs::write(&batch, calls.to_string()).expect("write");
    let out = net.cli_ok(&["gov", "propose", "--file", batch.to_str().expect("path"), "--from", "voter"]);
    assert!(out.contains("proposal 2 submitted"), "{out}");
    net.cli_ok(&["gov", "vote", "2", "nay", "--amount", "1", "--from", "voter"]);
    net.cli_ok(&["gov", "vote", "2", "aye", "--amount", "400000", "--from", "voter"]); // replaces the nay
    assert_eq!(net.proposal(2)["tally"]["nays"], "0", "a second vote replaces the first");
    // Delegation is revocable; a bad one is refused with a clear reason.
    net.cli_ok(&["gov", "delegate", "voter", "--amount", "5", "--from", "small"]);
    let out = net.cli(&["gov", "delegate", "small", "--amount", "5", "--from", "voter"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("delegation cycle"), "{out:?}");
    net.cli_ok(&["gov", "undelegate", "--from", "small"]);

    let shown = net.proposal(1);
    assert_eq!(shown["passing"], true, "{shown}");
    assert_eq!(shown["tally"]["turnout"], "500000000000000000");
    assert_eq!(net.proposal(0)["passing"], false, "no quorum");
    let human = net.cli_ok(&["gov", "show", "1"]);
    assert!(human.contains("voting: ends in") && human.contains("passing"), "{human}");
    let list = net.json(&["gov", "list"]);
    assert_eq!(list.as_array().expect("list").len(), 3);

    wait_until("proposal 1 to be enacted", Duration::from_secs(120), || (net.status(1) == "enacted").then_some(()));
    let p1 = net.proposal(1);
    assert_eq!(p1["proposal"]["results"], serde_json::json!([null]), "{p1}");
    wait_until("proposal 0 to be decided", Duration::from_secs(60), || (net.status(0) == "rejected").then_some(()));
    assert!(net.measurements().iter().any(|m| m.contains(OTHER)));
    assert!(!net.measurements().iter().any(|m| m.contains(UNPOPULAR)), "the proposal without quorum changed nothing");
    wait_until("proposal 2 to be enacted", Duration::from_secs(60), || (net.status(2) == "enacted").then_some(()));
    assert_eq!(net.proposal(2)["proposal"]["results"], serde_json::json!([null, null, null]));
    let clusters = net.json(&["cluster", "list"]);
    assert_eq!(clusters["clusters"][0]["id"], 3, "{clusters}");

    // The worker, still running, retries its refused registration and now gets in.
    wait_until("the worker to register", Duration::from_secs(90), || net.registered(&id).then_some(()));
    let rec = net.json(&["worker-info", &id]);
    assert!(rec["worker"]["measurement"].to_string().contains(OTHER), "{rec}");

    // Fees flowed into the treasury; proposal 2 spent from it, and only that is in its history.
    let t = net.json(&["treasury"]);
    assert!(t["balance"].as_str().expect("balance").parse::<u128>().expect("amount") > 0, "{t}");
    let spends = t["spends"].as_array().expect("spends");
    assert_eq!(spends.len(), 1, "{t}");
    assert_eq!((spends[0]["proposal"].as_u64(), spends[0]["amount"].as_str()), (Some(2), Some("1000")));
    assert_eq!(spends[0]["to"].as_str(), Some(small.as_str()));
    assert!(net.cli_ok(&["treasury"]).contains("proposal #2"));
}
