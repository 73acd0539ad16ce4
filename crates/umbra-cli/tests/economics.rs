//! End-to-end test of compute economics on real processes: an `umbra node` validator on a dev chain with a
//! rewards reserve, a per-block budget and frequent heartbeats, and one `umbra worker` (dev TEE), driven
//! through the `umbra` CLI: the operator creates a pool and adds its worker, a delegator contributes, the
//! worker reports its benchmark, computes and answers heartbeats, and the pool's value grows while the
//! treasury takes its share; then a vault allocates to the pool and takes some back, the delegator
//! withdraws, and the owner stops the worker.

mod common;
use common::{CliUser, free_port, ok, scratch, umbra, wait_until};

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use umbra_types::UNIT;

/// A validator, the keystore home and one worker, as child processes killed on drop.
struct Net {
    dir: PathBuf,
    rpc: String,
    children: Vec<Child>,
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
        Net::start_with(dir, &["--heartbeat-interval", "3", "--heartbeat-window", "8"])
    }

    /// A validator whose genesis takes `econ` flags for its economics parameters.
    fn start_with(dir: &Path, econ: &[&str]) -> Net {
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
        let mut net = Net { dir: dir.to_path_buf(), rpc: format!("http://127.0.0.1:{rpc}"), children: vec![] };
        let admin = net.new_key("admin");
        let op = net.new_key("op0");
        let alice = net.new_key("alice");
        ok(
            umbra()
                .args(["genesis", "new", "--chain-id", "umbra-econ", "--node"])
                .arg(&home)
                .args(["--dev-tee", "--sudo", &admin])
                .args(["--rewards-reserve", "1000000", "--block-budget", "10"])
                .args(econ)
                .args(["--alloc", &format!("{admin}=1000000")])
                .args(["--alloc", &format!("{op}=10000")])
                .args(["--alloc", &format!("{alice}=10000")])
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
        net
    }

    /// Kills the worker process (the last child started).
    fn kill_worker(&mut self) {
        if let Some(mut c) = self.children.pop() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn start_worker(&mut self) -> String {
        let data = self.dir.join("worker-0");
        let log = std::fs::File::create(self.dir.join("worker-0.log")).expect("log");
        let child = umbra()
            .args(["worker", "--node", &self.rpc, "--tee", "dev", "--operator", "op0"])
            .arg("--data")
            .arg(&data)
            .env("UMBRA_HOME", self.dir.join("home"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("worker starts");
        self.children.push(child);
        wait_until("the worker to write its id", Duration::from_secs(60), || {
            let s: serde_json::Value = serde_json::from_slice(&std::fs::read(data.join("status.json")).ok()?).ok()?;
            s["id"].as_str().map(str::to_string)
        })
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

fn amount(v: &serde_json::Value) -> u128 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an amount: {v}"))
}

#[test]
fn a_pool_worker_benchmarks_computes_answers_heartbeats_and_the_pool_and_treasury_earn() {
    let dir = scratch();
    let mut net = Net::start(dir.path());
    let id = net.start_worker();
    wait_until("the worker to register", Duration::from_secs(60), || {
        net.cli(&["worker-info", &id, "--json"]).status.success().then_some(())
    });

    // The operator makes a pool with a 10% commission and adds its worker; a delegator contributes.
    net.cli_ok(&["pool", "create", "--commission-bps", "1000", "--from", "op0"]);
    net.cli_ok(&["pool", "add-worker", "0", &id, "--from", "op0"]);
    net.cli_ok(&["pool", "contribute", "0", "2000", "--from", "alice"]);
    let list = net.json(&["pool", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(amount(&list[0]["value"]), 2_000 * UNIT, "{list}");
    assert_eq!(amount(&list[0]["share_price"]), UNIT, "{list}");

    // The worker measured its benchmark inside the enclave and reported it when it registered.
    let score = wait_until("the benchmark to be recorded", Duration::from_secs(60), || {
        let v = net.json(&["pool", "show", "0"]);
        let s = v["sessions"][0]["record"]["initial_score"].as_u64()?;
        (s > 0).then_some(s)
    });
    let budget = net.json(&["econ", "budget"]);
    assert_eq!(amount(&budget["budget"]), 10 * UNIT, "{budget}");
    let treasury_before = amount(&net.json(&["treasury"])["balance"]);

    // The pool owner starts the worker computing with pool stake.
    net.cli_ok(&["pool", "start", &id, "--stake", "1000", "--from", "op0"]);
    let shown = net.json(&["pool", "show", "0"]);
    assert_eq!(amount(&shown["pool"]["locked"]), 1_000 * UNIT, "{shown}");
    assert_eq!(shown["sessions"][0]["record"]["session"]["state"]["state"], "computing", "{shown}");

    // It answers heartbeats (a challenge about every 3 blocks) and stays responsive while the pool earns.
    let shown = wait_until("heartbeats answered and rewards kept", Duration::from_secs(120), || {
        let v = net.json(&["pool", "show", "0", "--holder", "alice"]);
        let rec = &v["sessions"][0]["record"];
        (rec["answered"].as_u64()? >= 2 && amount(&v["pool"]["rewards_total"]) > 0).then_some(v)
    });
    let rec = &shown["sessions"][0]["record"];
    assert_eq!(rec["missed"], 0, "no heartbeat missed: {shown}");
    assert_eq!(rec["session"]["responsive"], true, "{shown}");
    assert!(rec["score"].as_u64().expect("score") <= score * 12 / 10, "the score stays within the cap: {shown}");
    let info = net.json(&["worker-info", &id]);
    assert!(info["economics"]["record"]["answered"].as_u64() >= Some(2), "worker-info shows the heartbeats: {info}");
    assert!(net.cli_ok(&["worker-info", &id]).contains("heartbeats"));
    let value = amount(&shown["value"]);
    let kept = amount(&shown["pool"]["rewards_total"]);
    assert_eq!(value, 2_000 * UNIT + kept, "the pool's value grew by the rewards it kept: {shown}");
    assert!(amount(&shown["share_price"]) > UNIT, "the share price rose: {shown}");
    assert!(amount(&shown["position"]["value"]) > 2_000 * UNIT, "the delegator's position grew: {shown}");

    // The treasury got 20% of every payout: at least a quarter of what the pool kept (which is 90% of 80%).
    let treasury = amount(&net.json(&["treasury"])["balance"]);
    assert!(treasury - treasury_before >= kept / 4, "treasury {treasury_before} -> {treasury}, pool kept {kept}");

    // The worker's own view over RPC: a share weight, and the human output names the session.
    let human = net.cli_ok(&["pool", "show", "0"]);
    assert!(human.contains("responsive") && human.contains(&id), "{human}");
    let budget = net.json(&["econ", "budget"]);
    assert_eq!(budget["sessions"], serde_json::json!([id]), "{budget}");
    assert!(amount(&budget["reserve_left"]) < 1_000_000 * UNIT, "{budget}");

    // A vault: alice funds it and, as its owner, puts part of it into the pool, then takes some back.
    net.cli_ok(&["vault", "create", "--from", "alice"]);
    net.cli_ok(&["vault", "contribute", "0", "500", "--from", "alice"]);
    net.cli_ok(&["vault", "allocate", "0", "0", "300", "--from", "alice"]);
    let v = net.json(&["vault", "show", "0", "--holder", "alice"]);
    assert_eq!(amount(&v["vault"]["free"]), 200 * UNIT, "{v}");
    assert_eq!(v["allocations"][0]["pool"], 0, "{v}");
    let allocated = amount(&v["allocations"][0]["value"]);
    // Bought at the share price (rounding down), then earning with the pool.
    assert!(allocated + UNIT > 300 * UNIT && allocated < 330 * UNIT, "{v}");
    assert_eq!(amount(&v["position"]["shares"]), 500 * UNIT, "{v}");
    let pool_shares = amount(&v["allocations"][0]["shares"]);
    net.cli_ok(&[
        "vault",
        "allocate",
        "0",
        "0",
        &format!("{}", pool_shares / 2 / UNIT),
        "--deallocate",
        "--from",
        "alice",
    ]);
    net.cli_ok(&["vault", "withdraw", "0", "100", "--from", "alice"]);
    let v = net.json(&["vault", "show", "0", "--holder", "alice"]);
    assert_eq!(amount(&v["position"]["shares"]), 400 * UNIT, "{v}");
    assert!(amount(&v["allocations"][0]["shares"]) < pool_shares, "{v}");

    // Alice withdraws pool shares (paid at once from free tokens); the owner stops the worker.
    net.cli_ok(&["pool", "withdraw", "0", "--shares", "100", "--from", "alice"]);
    let p = net.json(&["pool", "show", "0", "--holder", "alice"]);
    assert_eq!(amount(&p["position"]["shares"]), 1_900 * UNIT, "{p}");
    assert!(p["pool"]["queue"].as_array().is_some_and(Vec::is_empty), "{p}");
    net.cli_ok(&["pool", "stop", &id, "--from", "op0"]);
    let p = net.json(&["pool", "show", "0"]);
    assert_eq!(p["sessions"][0]["record"]["session"]["state"]["state"], "cooling_down", "{p}");
    let list = net.cli_ok(&["pool", "list"]);
    assert!(list.contains("pool 0"), "{list}");
}

#[test]
fn a_delegators_position_grows_then_the_killed_worker_turns_unresponsive_and_a_queued_withdrawal_pays_after_the_cool_down()
 {
    let dir = scratch();
    let mut net = Net::start_with(
        dir.path(),
        &["--heartbeat-interval", "3", "--heartbeat-window", "4", "--cooldown-blocks", "15"],
    );
    let id = net.start_worker();
    wait_until("the worker to register", Duration::from_secs(60), || {
        net.cli(&["worker-info", &id, "--json"]).status.success().then_some(())
    });
    net.cli_ok(&["pool", "create", "--commission-bps", "500", "--from", "op0"]);
    net.cli_ok(&["pool", "add-worker", "0", &id, "--from", "op0"]);
    net.cli_ok(&["pool", "contribute", "0", "1000", "--from", "alice"]);
    wait_until("the benchmark to be recorded", Duration::from_secs(60), || {
        (net.json(&["compute", "status", &id])["benchmark"].as_u64()? > 0).then_some(())
    });
    // All the pool's tokens go into the session: rewards are the only free tokens.
    net.cli_ok(&["pool", "start", &id, "--stake", "1000", "--from", "op0"]);
    let first = amount(&net.json(&["pool", "info", "0", "--holder", "alice"])["position"]["value"]);
    let status = wait_until("heartbeats answered and rewards earned", Duration::from_secs(120), || {
        let s = net.json(&["compute", "status", &id]);
        (s["answered"].as_u64()? >= 2 && amount(&s["rewards"]) > 0).then_some(s)
    });
    assert_eq!(status["responsive"], true, "{status}");
    assert_eq!(status["state"], "computing", "{status}");
    assert!(status["v"].as_str().is_some_and(|v| v.parse::<u128>().is_ok_and(|v| v > 0)), "V shown: {status}");
    assert!(status["p"].as_u64() > Some(0), "P shown: {status}");
    let listed = net.json(&["compute", "status"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "every worker with a session: {listed}");
    let grown = amount(&net.json(&["pool", "info", "0", "--holder", "alice"])["position"]["value"]);
    assert!(grown > first && first >= 1_000 * UNIT, "the delegator's position grew: {first} -> {grown}");

    // Alice withdraws everything: more than the free rewards, so it waits in the queue.
    let alice = net.json(&["keys", "show", "alice"])["address"].as_str().expect("address").to_string();
    let before = amount(&net.json(&["account", &alice])["balance"]);
    net.cli_ok(&["pool", "withdraw", "0", "--all", "--from", "alice"]);
    let p = net.json(&["pool", "info", "0", "--holder", "alice"]);
    assert_eq!(p["pool"]["queue"].as_array().map(Vec::len), Some(1), "the withdrawal waits: {p}");
    assert_eq!(p["position"]["queued"], p["position"]["shares"], "{p}");

    // The worker process dies: its heartbeats stop and the chain marks it unresponsive.
    net.kill_worker();
    let s = wait_until("the worker to be marked unresponsive", Duration::from_secs(60), || {
        let s = net.json(&["compute", "status", &id]);
        (s["responsive"] == false).then_some(s)
    });
    assert!(s["missed"].as_u64() >= Some(1), "{s}");
    let human = net.cli_ok(&["compute", "status", &id]);
    assert!(human.contains("UNRESPONSIVE"), "{human}");

    // The owner stops it; after the cool-down its stake returns to the pool and pays the withdrawal.
    net.cli_ok(&["pool", "stop", &id, "--from", "op0"]);
    let s = net.json(&["compute", "status", &id]);
    assert!(s["state"].as_str().is_some_and(|st| st.starts_with("cooling_down")), "{s}");
    let p = wait_until("the queued withdrawal to be paid", Duration::from_secs(60), || {
        let p = net.json(&["pool", "info", "0", "--holder", "alice"]);
        p["pool"]["queue"].as_array()?.is_empty().then_some(p)
    });
    assert_eq!(amount(&p["position"]["shares"]), 0, "{p}");
    let after = amount(&net.json(&["account", &alice])["balance"]);
    assert!(after > before + 1_000 * UNIT, "alice got her stake and the rewards back: {before} -> {after}");
    // The idle worker can be reclaimed from the pool.
    net.cli_ok(&["pool", "reclaim", "0", &id, "--from", "op0"]);
    let p = net.json(&["pool", "info", "0"]);
    assert!(p["pool"]["workers"].as_array().is_some_and(Vec::is_empty), "{p}");
    let stakes = net.json(&["econ", "stakes", "--cluster", "0"]);
    assert!(stakes["contracts"].as_array().is_some_and(Vec::is_empty), "{stakes}");
}

#[test]
fn the_economics_simulation_runs_in_reduced_form_and_reports_its_invariants() {
    let out = umbra().args(["bench", "economics", "--json", "--seed", "3"]).output().expect("runs");
    let text = ok(out, "umbra bench economics");
    let r: serde_json::Value = serde_json::from_str(&text).expect("json report");
    assert_eq!(r["config"]["years"], 2, "{r}");
    assert_eq!(r["blocks"], 730, "{r}");
    assert_eq!(r["checks_passed"], 5 * 730, "an invariant check of each kind after every block: {r}");
    assert!(r["max_block_deviation"].as_str().and_then(|s| s.parse::<u128>().ok()) <= Some(2), "{r}");
    assert!(r["max_computing"].as_u64() >= Some(20), "{r}");
    assert!(r["forced_stops"].as_u64() > Some(0) && r["blocks_with_queued_withdrawals"].as_u64() > Some(0), "{r}");
    assert!(amount(&r["compute_paid"]) > 0 && amount(&r["treasury"]) > 0, "{r}");
    assert!(amount(&r["budget_end"]) < amount(&r["budget_start"]), "{r}");
}
