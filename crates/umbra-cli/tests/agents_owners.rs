//! End-to-end test of agent owners other than one account, on real processes (an `umbra node` validator with
//! fast governance periods, a gatekeeper worker and a cluster worker serving the agent gateway), driven through
//! the CLI: an agent handed to a 2-of-3 multisig is paused by propose + approve (not by one approval, not by its
//! old owner), resumed through a call in JSON form, then handed to governance, paused by an enacted proposal
//! and never by an account; `umbra agent info` names each owner and the gateway answers 423 while paused.

mod common;
use common::{CliUser, after, free_port, ok, scratch, umbra, wait_until};

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

/// Blocks of voting (about 5 blocks a second on an idle chain: long enough for the CLI to vote).
const VOTING: &str = "60";

struct Net {
    dir: PathBuf,
    rpc: String,
    children: Vec<Child>,
    ports: Vec<u16>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
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
        let mut net =
            Net { dir: dir.to_path_buf(), rpc: format!("http://127.0.0.1:{rpc}"), children: vec![], ports: vec![] };
        let admin = net.new_key("admin");
        let mut allocs = vec!["--alloc".to_string(), format!("{admin}=1000000")];
        for name in ["alice", "bob", "carol", "mallory", "op0", "op1"] {
            let a = net.new_key(name);
            allocs.push("--alloc".into());
            allocs.push(format!("{a}=1000"));
        }
        ok(
            umbra()
                .args(["genesis", "new", "--chain-id", "umbra-owners", "--node"])
                .arg(&home)
                .args(["--dev-tee", "--sudo", &admin])
                .args(["--gov-preparation-period", "0", "--gov-voting-period", VOTING, "--gov-enactment-delay", "2"])
                .args(["--gov-quorum-bps", "1000", "--gov-min-deposit", "1"])
                .args(&allocs)
                .arg("--out")
                .arg(dir.join("genesis.json"))
                .output()
                .expect("runs"),
            "genesis new",
        );
        let log = std::fs::File::create(dir.join("node.log")).expect("log");
        net.children.push(
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
        for i in 0..2 {
            let port = free_port();
            let log = std::fs::File::create(dir.join(format!("worker-{i}.log"))).expect("log");
            let child = umbra()
                .args(["worker", "--node", &net.rpc, "--tee", "dev", "--operator", &format!("op{i}")])
                .args(["--query-listen", &format!("127.0.0.1:{port}")])
                .arg("--data")
                .arg(dir.join(format!("worker-{i}")))
                .env("UMBRA_HOME", dir.join("home"))
                .env("RUST_LOG", "info")
                .stdout(Stdio::from(log.try_clone().expect("log")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("worker starts");
            net.children.push(child);
            net.ports.push(port);
        }
        net
    }

    fn worker_id(&self, i: usize) -> String {
        wait_until("a worker id", Duration::from_secs(60), || {
            let s = std::fs::read(self.dir.join(format!("worker-{i}/status.json"))).ok()?;
            let v: serde_json::Value = serde_json::from_slice(&s).ok()?;
            v["id"].as_str().map(str::to_string)
        })
    }

    /// Waits until the cluster worker answers the agent's `/` with `status` (its view follows the chain).
    fn wait_status(&self, id: &str, status: u64) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}", self.ports[1]);
        wait_until(&format!("the gateway to answer {status}"), Duration::from_secs(30), || {
            let v = self.json(&["agent", "call", id, "--worker", &url, "--path", "/"]);
            (v["status"] == status).then_some(v)
        })
    }

    fn info(&self, id: &str) -> serde_json::Value {
        self.json(&["agent", "info", id])
    }
}

const AGENT: &str = r#"export default { async fetch(request, env) { return Response.json({ hello: "owners" }); } };"#;

#[test]
fn an_agent_owned_by_a_multisig_and_then_by_governance_obeys_only_its_owner() {
    let dir = scratch();
    let net = Net::start(dir.path());
    let (gk, member) = (net.worker_id(0), net.worker_id(1));
    net.cli_ok(&["gk", "appoint", &gk, "--from", "admin"]);
    net.wait_key_epoch(&gk, 1);
    net.cli_ok(&["cluster", "create", "1", "--from", "admin"]);
    net.cli_ok(&["cluster", "assign", &member, "1", "--from", "admin"]);
    net.wait_key_epoch(&member, 1);
    let file = dir.path().join("agent.js");
    std::fs::write(&file, AGENT).expect("write");
    let a = after(&net.cli_ok(&["agent", "deploy", file.to_str().expect("utf-8"), "--from", "admin"]), "agent ");
    net.wait_status(&a, 200);

    // A 2-of-3 multisig: its address is the same for the members in any order.
    let members = ["--members", "alice,bob,carol", "--threshold", "2"];
    let m = net.cli_ok(&[&["multisig", "address"][..], &members].concat()).trim().to_string();
    let reordered = net.cli_ok(&["multisig", "address", "--members", "carol,alice,bob", "--threshold", "2"]);
    assert_eq!(reordered.trim(), m);
    assert!(m.starts_with("umbra1"), "{m}");
    net.cli_ok(&["agent", "transfer", &a, &m, "--from", "admin"]);
    let e = net.cli_err(&["agent", "pause", &a, "--from", "admin"]);
    assert!(e.contains("only the agent's owner"), "the old owner can no longer act: {e}");

    // The proposal is one approval of two: nothing happens yet.
    let out = net.cli_ok(&[&["multisig", "propose"][..], &members, &["--from", "alice", "agent-pause", &a]].concat());
    assert!(out.contains("operation 0 proposed") && out.contains("1 of 2 approvals"), "{out}");
    let pending = net.json(&["multisig", "pending", &m]);
    assert_eq!(pending["record"]["threshold"], 2, "{pending}");
    assert_eq!(pending["pending"][0]["call"]["type"], "pause_agent", "{pending}");
    assert_eq!(pending["pending"][0]["approvals"].as_array().map(Vec::len), Some(1), "{pending}");
    let info = net.info(&a);
    assert_eq!((info["owner"].as_str(), &info["owner_kind"]["kind"]), (Some(m.as_str()), &"multisig".into()), "{info}");
    assert_eq!(info["owner_kind"]["members"].as_array().map(Vec::len), Some(3), "{info}");
    assert_eq!(info["paused"], false);
    assert_eq!(net.wait_status(&a, 200)["body"]["hello"], "owners");
    let text = net.cli_ok(&["agent", "info", &a]);
    assert!(text.contains("multisig") && text.contains("2 of 3"), "{text}");
    let e = net.cli_err(&["multisig", "approve", &m, "0", "--from", "mallory"]);
    assert!(e.contains("is not a member"), "{e}");
    let e = net.cli_err(&["multisig", "approve", &m, "0", "--from", "alice"]);
    assert!(e.contains("already approved"), "{e}");

    // The second approval runs the pause as the multisig.
    let out = net.cli_ok(&["multisig", "approve", &m, "0", "--from", "bob"]);
    assert!(out.contains("ran as multisig"), "{out}");
    assert_eq!(net.info(&a)["paused"], true);
    let v = net.wait_status(&a, 423);
    assert!(v["body"]["error"].as_str().is_some_and(|e| e.contains("paused")), "{v}");

    // Any one member reads the logs and receipts of a multisig-owned agent (reading changes nothing); others
    // cannot.
    let url = format!("http://127.0.0.1:{}", net.ports[1]);
    let logs = net.json(&["agent", "logs", &a, "--worker", &url, "--from", "bob"]);
    assert!(logs["lines"].is_array(), "{logs}");
    net.cli_ok(&["agent", "receipts", &a, "--worker", &url, "--from", "carol"]);
    for who in ["mallory", "admin"] {
        let e = net.cli_err(&["agent", "logs", &a, "--worker", &url, "--from", who]);
        assert!(e.contains("403") && e.contains("member of the multisig"), "{who}: {e}");
    }

    // Resume through a call in JSON form, then hand the agent to governance.
    let resume = format!(r#"{{"type": "resume_agent", "agent": "{a}"}}"#);
    net.cli_ok(&[&["multisig", "propose"][..], &members, &["--from", "carol", "json", &resume]].concat());
    net.cli_ok(&["multisig", "approve", &m, "1", "--from", "alice"]);
    net.wait_status(&a, 200);
    net.cli_ok(
        &[&["multisig", "propose"][..], &members, &["--from", "bob", "agent-transfer", &a, "governance"]].concat(),
    );
    net.cli_ok(&["multisig", "approve", &m, "2", "--from", "carol"]);
    let info = net.info(&a);
    assert_eq!(info["owner_kind"]["kind"], "governance", "{info}");
    assert!(net.cli_ok(&["agent", "info", &a]).contains("governance"));
    for who in ["admin", "alice"] {
        let e = net.cli_err(&["agent", "pause", &a, "--from", who]);
        assert!(e.contains("only the agent's owner"), "no account acts for governance: {e}");
    }

    // Governance pauses it: proposal, vote, enactment.
    let out = net.cli_ok(&["gov", "propose", "agent-control", "pause", &a, "--from", "admin"]);
    let id = after(&out, "proposal ").split_whitespace().next().expect("an id").to_string();
    net.cli_ok(&["gov", "vote", &id, "aye", "--amount", "500000", "--from", "admin"]);
    assert_eq!(net.info(&a)["paused"], false, "nothing changes before enactment");
    wait_until("the proposal to be enacted", Duration::from_secs(90), || {
        let p = net.json(&["gov", "show", &id]);
        (p["proposal"]["status"]["status"] == "enacted").then_some(())
    });
    let p = net.json(&["gov", "show", &id]);
    assert_eq!(p["proposal"]["results"], serde_json::json!([null]), "{p}");
    assert_eq!(net.info(&a)["paused"], true);
    net.wait_status(&a, 423);
}
