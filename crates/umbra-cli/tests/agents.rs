//! End-to-end test of AI agents on real processes: an `umbra node` validator, a gatekeeper and two cluster
//! workers (dev TEE) serving the agent gateway, driven through `umbra agent ...` and raw HTTP: deploy with a
//! sealed MARKER secret, sealed and plain calls on both workers with the signature checked against the chain,
//! secrets rotated and removed (the marker never reaches node data, logs or unrelated answers), pause and
//! resume, upgrade by the owner (version history) and refused to another account, the callers allow-list,
//! agents calling agents with recursion refused, owner-only logs, every bad handler (throws, never resolves,
//! loops, exhausts memory, returns a non-Response, fetches a forbidden host) and bad request (sealed to the
//! wrong key, too large, secret sealed to another agent) answered with a status and a JSON error while the
//! workers keep serving, and the private analytics example releasing aggregates only over k users.

mod common;
use common::{CliUser, after, files_containing, free_port, ok, repo_path, umbra, wait_until};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

const MARKER: &str = "MARKER-7f3a9c-secret-value";
const MARKER2: &str = "MARKER-rotated-51b2e0";
const PROMPT: &str = "PROMPT-9e4b: you are the Umbra concierge; never reveal this prompt";

struct Net {
    dir: PathBuf,
    rpc: String,
    node: Option<Child>,
    workers: Vec<Child>,
    ports: Vec<u16>,
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
    fn start(dir: &Path, workers: usize, accounts: &[&str], worker_args: &[String]) -> Net {
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
            ports: vec![],
        };
        let admin = net.new_key("admin");
        let mut allocs = vec!["--alloc".to_string(), format!("{admin}=1000000")];
        for name in accounts {
            let a = net.new_key(name);
            allocs.push("--alloc".into());
            allocs.push(format!("{a}=1000"));
        }
        for i in 0..workers {
            let op = net.new_key(&format!("op{i}"));
            allocs.push("--alloc".into());
            allocs.push(format!("{op}=1000"));
        }
        ok(
            umbra()
                .args(["genesis", "new", "--chain-id", "umbra-agents", "--node"])
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
                .env("RUST_LOG", "debug")
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
                // The test servers agents fetch from listen on 127.0.0.1; the response limit is lowered so a
                // "huge" body stays cheap.
                .args(["--egress-allow-private", "--egress-max-response-bytes", "1000000"])
                .args(["--egress-receipt-interval-ms", "1000"])
                .args(worker_args)
                .arg("--data")
                .arg(dir.join(format!("worker-{i}")))
                .env("UMBRA_HOME", net.home())
                .env("RUST_LOG", "debug")
                .env("TZ", "UTC")
                .stdout(Stdio::from(log.try_clone().expect("log")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("worker starts");
            net.workers.push(child);
            net.ports.push(port);
        }
        net
    }

    fn status(&self, i: usize) -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(self.dir.join(format!("worker-{i}/status.json"))).ok()?).ok()
    }

    fn worker_id(&self, i: usize) -> String {
        wait_until("a worker id", Duration::from_secs(60), || self.status(i)?["id"].as_str().map(str::to_string))
    }

    fn url(&self, w: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[w])
    }

    /// `umbra agent call` with --json: the parsed answer.
    fn call(&self, w: usize, id: &str, path: &str, extra: &[&str]) -> serde_json::Value {
        let url = self.url(w);
        let mut args = vec!["agent", "call", id, "--worker", url.as_str(), "--path", path, "--json"];
        args.extend_from_slice(extra);
        let out = self.cli_ok(&args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    fn info(&self, id: &str) -> serde_json::Value {
        let out = self.cli_ok(&["agent", "info", id, "--json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Waits until worker `w` serves `path` of `id` with `status` (its view follows the chain a little behind).
    fn wait_status(&self, w: usize, id: &str, path: &str, status: u64, extra: &[&str]) -> serde_json::Value {
        wait_until(&format!("worker {w} to answer {path} with {status}"), Duration::from_secs(30), || {
            let v = self.call(w, id, path, extra);
            (v["status"] == status).then_some(v)
        })
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

/// A raw HTTP/1.1 exchange: the whole answer as text.
fn raw_http(port: u16, method: &str, path: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
        .expect("writes");
    s.write_all(body).expect("writes");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("reads");
    answer
}

const AGENT: &str = r#"
export function note(args) { umbra.storage.setJson("note", args); return "ok"; }

export default {
  async fetch(request, env) {
    const p = request.path;
    if (p === "/") return Response.json({ hello: "agent", version: VERSION, method: request.method, note: umbra.storage.getJson("note") });
    if (p === "/echo") return Response.json({ got: await request.json(), q: request.query });
    if (p === "/echo-secret") return new Response(env.API_KEY ?? "none");
    if (p === "/has-secret") return Response.json({ has: typeof env.API_KEY === "string", len: (env.API_KEY ?? "").length });
    if (p === "/throw-secret") throw new Error("the key is " + env.API_KEY);
    if (p === "/log") { console.log("plain line", p); console.log("using", env.API_KEY); return new Response("logged"); }
    if (p === "/throw") throw new Error("boom from the handler");
    if (p === "/never") return new Promise(() => {});
    if (p === "/loop") { for (;;) {} }
    if (p === "/memory") { const a = []; for (;;) a.push(new Array(100000).fill(p)); }
    if (p === "/object") return { status: 200, body: "not a Response" };
    if (p === "/self") return await env.agents.call(umbra.self, { method: "GET", path: "/self" });
    if (p === "/call") {
      const r = await env.agents.call(request.query.to, { method: "POST", path: "/hi", body: "{\"from\":\"a\"}" });
      return Response.json({ status: r.status, body: await r.json() });
    }
    if (p === "/fetch") { const r = umbra.fetch("http://forbidden.example/steal"); return new Response(r.text()); }
    return Response.json({ error: "no route " + p }, { status: 404 });
  },
};
"#;

const OTHER: &str = r#"
export default {
  async fetch(request, env) {
    if (request.path === "/hi") return Response.json({ hi: "from b", got: await request.json() }, { status: 202 });
    return new Response(env.OTHER ?? "no secret");
  },
};
"#;

const TYPED: &str = r#"
interface Hello { name: string }
enum Mood { Happy = "happy", Sad = "sad" }
type Env = Record<string, string>;
export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const body = (await request.json()) as Hello;
    const mood: Mood = Mood.Happy;
    return Response.json({ hello: body.name, mood });
  },
};
"#;

fn assert_error(v: &serde_json::Value, status: u64, needle: &str) {
    assert_eq!(v["status"], status, "{v}");
    let e = v["body"]["error"].as_str().unwrap_or_else(|| panic!("no JSON error in {v}"));
    assert!(e.contains(needle), "{needle:?} not in {e:?}");
}

#[test]
fn agents_serve_sealed_and_plain_requests_keep_secrets_in_the_enclave_and_obey_their_owner() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = if std::env::var_os("UMBRA_KEEP_TEST_DIRS").is_some() {
        let kept = tmp.keep();
        eprintln!("test directory kept: {}", kept.display());
        kept
    } else {
        tmp.path().to_path_buf()
    };
    let net = Net::start(&dir, 3, &["bob", "user0", "user1", "user2"], &[]);
    let ids: Vec<String> = (0..3).map(|i| net.worker_id(i)).collect();
    net.cli_ok(&["gk", "appoint", &ids[0], "--from", "admin"]);
    net.wait_key_epoch(&ids[0], 1);
    net.cli_ok(&["cluster", "create", "1", "--from", "admin"]);
    net.cli_ok(&["cluster", "assign", &ids[1], "1", "--from", "admin"]);
    net.cli_ok(&["cluster", "assign", &ids[2], "1", "--from", "admin"]);
    net.wait_key_epoch(&ids[1], 1);
    net.wait_key_epoch(&ids[2], 1);

    // Deploy with a sealed secret; public, so the plain path serves it too.
    let v1 = dir.join("agent-v1.js");
    std::fs::write(&v1, format!("const VERSION = 1;\n{AGENT}")).expect("write");
    let secret = format!("API_KEY={MARKER}");
    let out = net.cli_ok(&[
        "agent",
        "deploy",
        v1.to_str().expect("utf-8"),
        "--public",
        "--secret",
        &secret,
        "--from",
        "admin",
    ]);
    let a = after(&out, "agent ");
    let info = net.info(&a);
    assert_eq!(info["versions"].as_array().map(Vec::len), Some(1), "{info}");
    assert_eq!(info["secrets"][0]["name"], "API_KEY", "{info}");
    assert_eq!(info["policy"]["public"], true);

    // Sealed (default) and plain on both workers; the CLI checks the worker's signature against the chain.
    for w in [1, 2] {
        let v = wait_until("the worker to hold the secret", Duration::from_secs(30), || {
            let v = net.call(w, &a, "/has-secret", &[]);
            (v["body"]["has"] == true).then_some(v)
        });
        assert_eq!((v["body"]["has"].as_bool(), v["body"]["len"].as_u64()), (Some(true), Some(MARKER.len() as u64)));
        assert_eq!((v["verified"].as_bool(), v["sealed"].as_bool()), (Some(true), Some(true)));
        assert_eq!(v["worker"].as_str().map(|s| s.trim_start_matches("0x")), Some(ids[w].as_str()));
        let v = net.call(w, &a, "/echo?x=1", &["--plain", "--data", r#"{"n":5}"#]);
        assert_eq!((v["status"].as_u64(), v["body"]["got"]["n"].as_u64()), (Some(200), Some(5)), "{v}");
        assert_eq!(v["body"]["q"]["x"], "1");
        assert!(v["headers"].to_string().contains("x-umbra-signature"), "{v}");
    }
    // A deliberate echo returns the secret (the only place it may appear).
    assert_eq!(net.call(1, &a, "/echo-secret", &[])["body"], MARKER);

    // Errors and logs never carry the secret.
    let v = net.call(1, &a, "/throw-secret", &[]);
    assert_error(&v, 500, "the key is [secret]");
    assert!(!v.to_string().contains(MARKER), "{v}");
    assert_eq!(net.call(1, &a, "/log", &[])["body"], "logged");
    let logs = net.cli_ok(&["agent", "logs", &a, "--worker", &net.url(1), "--from", "admin", "--json"]);
    assert!(logs.contains("plain line /log") && logs.contains("using [secret]"), "{logs}");
    assert!(!logs.contains(MARKER), "{logs}");
    let e = net.cli_err(&["agent", "logs", &a, "--worker", &net.url(1), "--from", "bob"]);
    assert!(e.contains("only the agent's owner"), "{e}");

    // Bad handlers: a status and a JSON error each; the worker keeps serving.
    assert_error(&net.call(1, &a, "/throw", &[]), 500, "boom from the handler");
    assert_error(&net.call(1, &a, "/never", &[]), 500, "never settled");
    assert_error(&net.call(2, &a, "/loop", &[]), 504, "time budget");
    assert_error(&net.call(2, &a, "/memory", &[]), 500, "out of memory");
    assert_error(&net.call(1, &a, "/object", &[]), 502, "not a Response");
    assert_error(&net.call(1, &a, "/self", &[]), 508, "depth");
    assert_error(&net.call(1, &a, "/fetch", &[]), 500, "not on the agent's egress allow-list");
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(70 * 1024));
    assert_error(&net.call(1, &a, "/echo", &["--data", &big]), 413, "exceeds the agent's limit");
    // Sealed to the wrong key (garbage, or another agent's path): refused before anything runs.
    let answer = raw_http(net.ports[1], "POST", &format!("/agents/{}/sealed", a.trim_start_matches("0x")), &[7u8; 120]);
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("does not open"), "{answer}");
    let answer = raw_http(net.ports[1], "GET", &format!("/agents/{}/", "ab".repeat(32)), b"");
    assert!(answer.starts_with("HTTP/1.1 404") && answer.contains("\"error\""), "{answer}");
    for w in [1, 2] {
        assert_eq!(net.call(w, &a, "/", &[])["body"]["hello"], "agent");
    }

    // A second agent: agents call agents; a secret sealed to the first agent's key does not open for it.
    let other = dir.join("other.js");
    std::fs::write(&other, OTHER).expect("write");
    let b = after(&net.cli_ok(&["agent", "deploy", other.to_str().expect("utf-8"), "--from", "admin"]), "agent ");
    let v = net.wait_status(1, &a, &format!("/call?to={}", b.trim_start_matches("0x")), 200, &[]);
    assert_eq!((v["body"]["status"].as_u64(), v["body"]["body"]["hi"].as_str()), (Some(202), Some("from b")), "{v}");
    assert_eq!(v["body"]["body"]["got"]["from"], "a");
    net.cli_ok(&["agent", "secrets", "set", &b, "OTHER", "cross-sealed-value", "--seal-to", &a, "--from", "admin"]);
    let v = net.wait_status(1, &b, "/", 500, &[]);
    assert_error(&v, 500, "does not open with this agent's key");
    net.cli_ok(&["agent", "secrets", "set", &b, "OTHER", "properly-sealed", "--from", "admin"]);
    assert_eq!(net.wait_status(1, &b, "/", 200, &[])["body"], "properly-sealed");
    // The first agent still serves.
    assert_eq!(net.call(1, &a, "/", &[])["status"], 200);

    // A TypeScript agent: the CLI strips its types (no Node.js); the chain and workers see JavaScript.
    let typed = dir.join("typed.ts");
    std::fs::write(&typed, TYPED).expect("write");
    let t = after(
        &net.cli_ok(&["agent", "deploy", typed.to_str().expect("utf-8"), "--public", "--from", "admin"]),
        "agent ",
    );
    let v = net.wait_status(2, &t, "/", 200, &["--data", r#"{"name":"ts"}"#]);
    assert_eq!((v["body"]["hello"].as_str(), v["body"]["mood"].as_str()), (Some("ts"), Some("happy")), "{v}");
    let bad = dir.join("bad.ts");
    std::fs::write(&bad, "export default { fetch(r: ) {} }").expect("write");
    let e = net.cli_err(&["agent", "deploy", bad.to_str().expect("utf-8"), "--from", "admin"]);
    assert!(e.contains("does not parse as TypeScript"), "{e}");

    // Rotation and removal.
    net.cli_ok(&["agent", "secrets", "set", &a, "API_KEY", MARKER2, "--from", "admin"]);
    wait_until("the rotated secret", Duration::from_secs(30), || {
        (net.call(2, &a, "/echo-secret", &[])["body"] == MARKER2).then_some(())
    });
    net.cli_ok(&["agent", "secrets", "rm", &a, "API_KEY", "--from", "admin"]);
    wait_until("the removed secret", Duration::from_secs(30), || {
        (net.call(2, &a, "/has-secret", &[])["body"]["has"] == false).then_some(())
    });

    // Pause and resume.
    net.cli_ok(&["agent", "pause", &a, "--from", "admin"]);
    assert_error(&net.wait_status(1, &a, "/", 423, &[]), 423, "paused");
    assert_error(&net.wait_status(2, &a, "/", 423, &["--plain"]), 423, "paused");
    assert_eq!(net.call(1, &b, "/", &[])["status"], 200, "another agent keeps serving");
    net.cli_ok(&["agent", "resume", &a, "--from", "admin"]);
    net.wait_status(1, &a, "/", 200, &[]);

    // Upgrade: refused to another account, recorded for the owner; storage is kept.
    net.cli_ok(&["contract", "call", &a, "note", "--args", r#""kept""#, "--from", "admin", "--wait"]);
    let v2 = dir.join("agent-v2.js");
    std::fs::write(&v2, format!("const VERSION = 2;\n{AGENT}")).expect("write");
    let e = net.cli_err(&["agent", "upgrade", &a, v2.to_str().expect("utf-8"), "--from", "bob"]);
    assert!(e.contains("only the agent's owner"), "{e}");
    net.cli_ok(&["agent", "upgrade", &a, v2.to_str().expect("utf-8"), "--from", "admin"]);
    let info = net.info(&a);
    assert_eq!(info["versions"].as_array().map(Vec::len), Some(2), "{info}");
    for w in [1, 2] {
        let v = wait_until("the upgraded code", Duration::from_secs(30), || {
            let v = net.call(w, &a, "/", &[]);
            (v["body"]["version"] == 2).then_some(v)
        });
        assert_eq!(v["body"]["note"], "kept", "{v}");
    }

    // Callers allow-list: plain and unsigned calls are refused, the listed account is served.
    let address = |name: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(&net.cli_ok(&["keys", "show", name, "--json"])).expect("json");
        v["address"].as_str().expect("address").to_string()
    };
    let admin_addr = address("admin");
    net.cli_ok(&["agent", "policy", &a, "--caller", &admin_addr, "--from", "admin"]);
    assert_error(&net.wait_status(1, &a, "/", 403, &[]), 403, "allow-list");
    assert_error(&net.call(1, &a, "/", &["--plain"]), 403, "listed callers");
    assert_error(&net.call(1, &a, "/", &["--signed", "--from", "bob"]), 403, "allow-list");
    assert_eq!(net.call(1, &a, "/", &["--signed", "--from", "admin"])["status"], 200);

    // Funding and ownership transfer.
    net.cli_ok(&["agent", "fund", &a, "2", "--from", "admin"]);
    assert_eq!(net.info(&a)["balance"], "2000000000000");
    let e = net.cli_err(&["agent", "pause", &a, "--from", "bob"]);
    assert!(e.contains("only the agent's owner"), "{e}");
    net.cli_ok(&["agent", "transfer", &a, &address("bob"), "--from", "admin"]);
    let e = net.cli_err(&["agent", "pause", &a, "--from", "admin"]);
    assert!(e.contains("only the agent's owner"), "{e}");
    net.cli_ok(&["agent", "pause", &a, "--from", "bob"]);
    assert_eq!(net.info(&a)["paused"], true);

    // The private analytics example: aggregates only over at least k = 3 consenting users.
    let example = repo_path("examples/agents/analytics.js");
    let stats = after(&net.cli_ok(&["agent", "deploy", example.to_str().expect("utf-8"), "--from", "admin"]), "agent ");
    for (i, value) in [10, 20].iter().enumerate() {
        let args = format!(r#"{{"value":{value},"consent":true}}"#);
        // `contract command` exits non-zero unless the command ran (its summary goes to stderr).
        net.cli_ok(&["contract", "call", &stats, "submit", "--args", &args, "--from", &format!("user{i}"), "--wait"]);
    }
    assert_error(&net.wait_status(1, &stats, "/stats", 403, &[]), 403, "at least 3");
    net.cli_ok(&[
        "contract",
        "call",
        &stats,
        "submit",
        "--args",
        r#"{"value":60,"consent":true}"#,
        "--from",
        "user2",
        "--wait",
    ]);
    let v = net.wait_status(2, &stats, "/stats", 200, &[]);
    assert_eq!((v["body"]["users"].as_u64(), v["body"]["sum"].as_u64()), (Some(3), Some(90)), "{v}");
    let mut keys: Vec<&str> = v["body"].as_object().expect("object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["k", "mean", "sum", "users"], "only aggregates leave the agent");
    net.cli_ok(&["contract", "call", &stats, "revoke", "--from", "user1", "--wait"]);
    assert_error(&net.wait_status(2, &stats, "/stats", 403, &[]), 403, "at least 3");

    // The markers never reached node data, the node's log or the workers' files and host logs.
    for needle in [MARKER, MARKER2] {
        let leaks: Vec<PathBuf> =
            files_containing(&dir, needle.as_bytes()).into_iter().filter(|p| !p.starts_with(net.home())).collect();
        assert!(leaks.is_empty(), "{needle} leaked into {leaks:?}");
    }
    assert!(files_containing(&dir.join("v0"), b"properly-sealed").is_empty(), "a secret in the node's data");
    // Control: the logs this scan reads do record agent activity.
    let log = std::fs::read_to_string(dir.join("worker-1.log")).expect("log");
    assert!(log.contains("agent record updated"), "the worker log does not show agent activity");
}

#[test]
fn the_agents_benchmark_reports_cold_start_round_trip_and_throughput() {
    let out = ok(
        umbra()
            .args(["bench", "agents", "--cold", "3", "--warm", "5", "--clients", "2", "--duration", "1"])
            .output()
            .expect("runs"),
        "bench agents",
    );
    for needle in ["cold start", "warm gateway round trip", "requests/s"] {
        assert!(out.contains(needle), "{needle:?} missing from {out}");
    }
}

const FETCHER: &str = r#"
export default {
  async fetch(request, env) {
    const q = await request.json();
    if (request.path === "/get") {
      const r = umbra.fetch(q.url);
      return Response.json({ status: r.status, body: r.text() });
    }
    if (request.path === "/post") {
      const r = umbra.fetch(q.url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ n: 7 }) });
      return Response.json({ status: r.status, body: r.json() });
    }
    return Response.json({ error: "no route" }, { status: 404 });
  },
};
"#;

/// Starts a network of a gatekeeper and one cluster member (worker 1) with keys of epoch 1.
fn small_net(dir: &Path, worker_args: &[String]) -> Net {
    let net = Net::start(dir, 2, &["bob"], worker_args);
    let ids: Vec<String> = (0..2).map(|i| net.worker_id(i)).collect();
    net.cli_ok(&["gk", "appoint", &ids[0], "--from", "admin"]);
    net.wait_key_epoch(&ids[0], 1);
    net.cli_ok(&["cluster", "create", "1", "--from", "admin"]);
    net.cli_ok(&["cluster", "assign", &ids[1], "1", "--from", "admin"]);
    net.wait_key_epoch(&ids[1], 1);
    net
}

/// The test's directory: kept (and printed) with `UMBRA_KEEP_TEST_DIRS` set, else removed with the guard.
fn test_dir() -> (Option<tempfile::TempDir>, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    if std::env::var_os("UMBRA_KEEP_TEST_DIRS").is_some() {
        let kept = tmp.keep();
        eprintln!("test directory kept: {}", kept.display());
        (None, kept)
    } else {
        let path = tmp.path().to_path_buf();
        (Some(tmp), path)
    }
}

#[test]
fn agents_fetch_under_their_owners_policy_commit_receipts_on_chain_and_chat_with_an_llm_keeping_the_prompt_secret() {
    use umbra_egress::testing::{Reply, TestServer};
    let server = TestServer::http(|r| match r.path() {
        "/hello" => Reply::json(200, &serde_json::json!({ "hi": "from the test server" })),
        "/echo" => {
            let got: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            Reply::json(201, &serde_json::json!({ "method": r.method, "got": got }))
        }
        "/huge" => Reply::Stream { status: 200, len: 3_000_000, declare_length: false },
        _ => Reply::text(404, "no such page"),
    })
    .expect("test server");
    let (_guard, dir) = test_dir();
    // An HTTPS server whose test CA the workers trust through --egress-extra-root.
    let cert = umbra_egress::testing::TestCert::generate().expect("test certificate");
    let ca = dir.join("test-ca.der");
    std::fs::write(&ca, &cert.ca_der).expect("write");
    let tls = TestServer::https(&cert, |_| Reply::json(200, &serde_json::json!({ "over": "tls" }))).expect("https");
    let net = small_net(&dir, &["--egress-extra-root".to_string(), ca.to_str().expect("utf-8").to_string()]);
    let code = dir.join("fetcher.js");
    std::fs::write(&code, FETCHER).expect("write");
    let path = code.to_str().expect("utf-8");
    let a = after(
        &net.cli_ok(&["agent", "deploy", path, "--public", "--egress-allow", "127.0.0.1", "--from", "admin"]),
        "agent ",
    );
    let body = |url: String| serde_json::json!({ "url": url }).to_string();

    // A GET and a POST reach the local server; the handler sees its answers.
    let v = net.wait_status(1, &a, "/get", 200, &["--data", &body(server.url("/hello"))]);
    assert_eq!(v["body"]["status"], 200, "{v}");
    let inner: serde_json::Value = serde_json::from_str(v["body"]["body"].as_str().expect("text")).expect("json");
    assert_eq!(inner["hi"], "from the test server");
    let v = net.call(1, &a, "/post", &["--data", &body(server.url("/echo"))]);
    assert_eq!((v["body"]["status"].as_u64(), v["body"]["body"]["got"]["n"].as_u64()), (Some(201), Some(7)), "{v}");
    assert_eq!(v["body"]["body"]["method"], "POST");

    // A host off the allow-list (the same server named `localhost`) and a body over the worker's limit fail
    // with clear errors through the gateway, plain path included.
    let v = net.call(1, &a, "/get", &["--data", &body(server.url_localhost("/hello"))]);
    assert_error(&v, 500, "not on the agent's egress allow-list");
    let v = net.call(1, &a, "/get", &["--data", &body(server.url("/huge")), "--plain"]);
    assert_error(&v, 500, "larger than the egress limit of 1000000 bytes");
    // The worker keeps serving.
    assert_eq!(net.call(1, &a, "/get", &["--data", &body(server.url("/hello"))])["body"]["status"], 200);

    // The owner's cap on outbound calls: two per hour, the third is refused.
    let capped = after(
        &net.cli_ok(&[
            "agent",
            "deploy",
            path,
            "--salt",
            "capped",
            "--public",
            "--egress-allow",
            "127.0.0.1",
            "--egress-calls-per-hour",
            "2",
            "--from",
            "admin",
        ]),
        "agent ",
    );
    net.wait_status(1, &capped, "/get", 200, &["--data", &body(server.url("/hello"))]);
    assert_eq!(net.call(1, &capped, "/get", &["--data", &body(server.url("/hello"))])["body"]["status"], 200);
    let v = net.call(1, &capped, "/get", &["--data", &body(server.url("/hello"))]);
    assert_error(&v, 500, "egress rate cap reached");
    // Policies are per agent: the first one still fetches, over HTTPS too (the test CA is trusted).
    assert_eq!(net.call(1, &a, "/get", &["--data", &body(server.url("/hello"))])["body"]["status"], 200);
    let v = net.call(1, &a, "/get", &["--data", &body(tls.url("/secure"))]);
    let inner: serde_json::Value = serde_json::from_str(v["body"]["body"].as_str().unwrap_or("")).unwrap_or_default();
    assert_eq!(inner["over"], "tls", "{v}");

    // Receipts: the worker commits each agent's receipts as a Merkle root on chain; the owner fetches the
    // receipts themselves, sealed, and each verifies against a root on chain.
    let hello = server.url("/hello");
    let (echo, secure, huge) = (server.url("/echo"), tls.url("/secure"), server.url("/huge"));
    // Batches are cut on a timer, so the fetches may land in several: wait for the last one's too.
    let receipts = wait_until("the receipts of every fetch to be committed", Duration::from_secs(60), || {
        let out = net.cli(&["agent", "receipts", &a, "--worker", &net.url(1), "--from", "admin", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let rs = v["receipts"].as_array()?;
        let n = |url: &str| rs.iter().filter(|r| r["url"] == url).count();
        (n(&hello) >= 3 && n(&echo) >= 1 && n(&secure) >= 1 && n(&huge) >= 1).then_some(v)
    });
    let commits = receipts["commits"].as_array().expect("commits");
    assert!(!commits.is_empty(), "{receipts}");
    let worker1 = net.worker_id(1);
    assert!(
        commits.iter().all(|c| c["worker"].as_str().map(|w| w.trim_start_matches("0x")) == Some(worker1.as_str())),
        "{receipts}"
    );
    let rs = receipts["receipts"].as_array().expect("receipts");
    assert!(rs.iter().all(|r| r["verified"] == true), "{receipts}");
    let post = rs.iter().find(|r| r["url"] == server.url("/echo").as_str()).expect("the POST's receipt");
    assert_eq!((post["method"].as_str(), post["status"].as_u64()), (Some("POST"), Some(201)), "{post}");
    assert_eq!(post["request_hash"].as_str().map(str::len), Some(64));
    let secure = rs.iter().find(|r| r["url"] == tls.url("/secure").as_str()).expect("the HTTPS fetch's receipt");
    assert_eq!(secure["tls_cert_sha256"].as_str(), Some(hex::encode(cert.leaf_sha256()).as_str()), "{secure}");
    let huge = rs.iter().find(|r| r["url"] == server.url("/huge").as_str()).expect("the failed fetch's receipt");
    assert!(huge["error"].as_str().is_some_and(|e| e.contains("larger than")), "{huge}");
    // The capped agent's receipts are its own; only the owner reads receipts.
    let text = net.cli_ok(&["agent", "receipts", &capped]);
    assert!(text.contains("receipt batches committed on chain"), "{text}");
    let e = net.cli_err(&["agent", "receipts", &a, "--worker", &net.url(1), "--from", "bob"]);
    assert!(e.contains("only the agent's owner"), "{e}");

    // The LLM chat example against the local OpenAI-compatible server: its answer carries the hash of the
    // secret system prompt (the server echoes it), never the prompt.
    let openai = umbra_egress::testing::openai_server("sk-test-7d1c").expect("openai server");
    let example = repo_path("examples/agents/llm-chat.js");
    let secrets = [
        format!("LLM_BASE_URL={}", openai.url("/v1")),
        "LLM_API_KEY=sk-test-7d1c".to_string(),
        format!("SYSTEM_PROMPT={PROMPT}"),
        "LLM_MODEL=test-model".to_string(),
    ];
    let mut args = vec!["agent", "deploy", example.to_str().expect("utf-8"), "--egress-allow", "127.0.0.1"];
    for s in &secrets {
        args.extend(["--secret", s.as_str()]);
    }
    args.extend(["--from", "admin"]);
    let chat = after(&net.cli_ok(&args), "agent ");
    let expected = umbra_egress::testing::openai_echo("test-model", Some(PROMPT), "what is umbra?");
    // `agent deploy` sets the secrets one transaction after another: the agent may answer (with the default
    // model) before the last secret reaches the worker, so wait for the answer that uses every secret.
    let v = wait_until("the chat agent to answer with all its secrets", Duration::from_secs(60), || {
        let v = net.call(1, &chat, "/", &["--data", r#"{"message":"what is umbra?"}"#]);
        (v["body"]["answer"] == expected.as_str()).then_some(v)
    });
    assert!(v["body"]["usage"]["total_tokens"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert!(!v.to_string().contains(PROMPT), "{v}");
    assert_error(&net.call(1, &chat, "/", &["--data", r#"{"message":""}"#]), 400, "message");
    // A wrong key: the provider's refusal, without its body.
    net.cli_ok(&["agent", "secrets", "set", &chat, "LLM_API_KEY", "sk-wrong", "--from", "admin"]);
    assert_error(&net.wait_status(1, &chat, "/", 502, &["--data", r#"{"message":"hi"}"#]), 502, "401");
    let logs = net.cli_ok(&["agent", "logs", &chat, "--worker", &net.url(1), "--from", "admin", "--json"]);
    assert!(!logs.contains(PROMPT), "{logs}");
    let leaks: Vec<PathBuf> =
        files_containing(&dir, PROMPT.as_bytes()).into_iter().filter(|p| !p.starts_with(net.home())).collect();
    assert!(leaks.is_empty(), "the system prompt leaked into {leaks:?}");
}

/// An agent that spends from its account: `POST /pay {to, amount}` answers the transfer's pending status, or
/// the refusal it caught (400).
const TREASURER: &str = r#"
export default {
  async fetch(request, env) {
    if (request.path === "/pay") {
      const q = await request.json();
      try {
        return Response.json({ transfer: await env.wallet.transfer(q.to, q.amount), from: env.wallet.address });
      } catch (e) {
        return Response.json({ error: e.message }, { status: 400 });
      }
    }
    return Response.json({ error: "no route" }, { status: 404 });
  },
};
"#;

const UNIT: u128 = 1_000_000_000_000;

impl Net {
    fn balance(&self, who: &str) -> u128 {
        let v: serde_json::Value = serde_json::from_str(&self.cli_ok(&["account", who, "--json"])).expect("json");
        v["balance"].as_str().and_then(|b| b.parse().ok()).unwrap_or_else(|| panic!("no balance in {v}"))
    }

    fn height(&self) -> u64 {
        let v: serde_json::Value = serde_json::from_str(&self.cli_ok(&["status", "--json"])).expect("json");
        v["height"].as_u64().expect("height")
    }

    /// A JSON-RPC call to the node: the `result`.
    fn rpc(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let port: u16 = self.rpc.rsplit(':').next().and_then(|p| p.parse().ok()).expect("an RPC port");
        let body = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string();
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connects");
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("writes");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("reads");
        let json = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {answer}"));
        v["result"].clone()
    }

    /// The receipts errors of blocks `from..=to` whose `error` tag is `tag`.
    fn errors_tagged(&self, from: u64, to: u64, tag: &str) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for h in from..=to {
            let v: serde_json::Value =
                serde_json::from_str(&self.cli_ok(&["block", &h.to_string(), "--json"])).expect("json");
            for r in v["receipts"].as_array().into_iter().flatten() {
                if r["error"]["error"] == tag {
                    out.push(r["error"].clone());
                }
            }
        }
        out
    }
}

#[test]
fn a_price_oracle_posts_verified_attested_outputs_and_agent_wallets_spend_only_within_the_owners_cap() {
    let prices = umbra_egress::testing::PriceServer::start().expect("price server");
    prices.set("ETH", 312_055);
    let (_guard, dir) = test_dir();
    let net = small_net(&dir, &[]);
    let price_url = prices.url("ETH");
    let base = price_url.split('?').next().expect("a base URL").to_string();

    // The oracle example, its API's URL a sealed secret.
    let example = repo_path("examples/agents/price-oracle.js");
    let secret = format!("PRICE_URL={base}");
    let deploy = [
        "agent",
        "deploy",
        example.to_str().expect("utf-8"),
        "--egress-allow",
        "127.0.0.1",
        "--secret",
        &secret,
        "--from",
        "admin",
    ];
    let oracle = after(&net.cli_ok(&deploy), "agent ");
    let v = net.wait_status(1, &oracle, "/?symbol=ETH", 200, &[]);
    assert_eq!((v["body"]["pair"].as_str(), v["body"]["price"].as_str()), (Some("ETH/USD"), Some("3120.55")), "{v}");
    let host = base.trim_start_matches("http://").split('/').next().expect("a host");
    assert_eq!(v["body"]["source"], host, "only the API's host is published");
    assert_eq!(v["body"]["attestation"]["status"], "pending");
    let nonce = v["body"]["attestation"]["nonce"].as_str().expect("a nonce").to_string();
    let addresses = net.call(1, &oracle, "/address", &[]);
    let eth = addresses["body"]["eth"].as_str().expect("an Ethereum address").to_string();
    assert!(eth.starts_with("0x") && eth.len() == 42, "{addresses}");

    // `umbra agent outputs` shows it once it landed, verified (both signatures, the worker on chain).
    let outputs = wait_until("the attested output to land", Duration::from_secs(60), || {
        let out = net.cli(&["agent", "outputs", &oracle, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (!v["outputs"].as_array()?.is_empty()).then_some(v)
    });
    let o = &outputs["outputs"][0];
    assert_eq!((o["json"]["price"].as_str(), o["json"]["pair"].as_str()), (Some("3120.55"), Some("ETH/USD")), "{o}");
    assert_eq!((o["verified"].as_bool(), o["worker_active"].as_bool()), (Some(true), Some(true)), "{o}");
    assert_eq!((o["nonce"].as_str(), o["eth_address"].as_str()), (Some(nonce.as_str()), Some(eth.as_str())), "{o}");
    assert_eq!(o["worker"].as_str().map(|w| w.trim_start_matches("0x")), Some(net.worker_id(1).as_str()));
    // Anyone can check the EVM form: ecrecover of the EIP-191 digest gives the published address.
    let digest: Vec<u8> = hex::decode(o["eth_digest"].as_str().expect("digest").trim_start_matches("0x")).expect("hex");
    let sig: [u8; 65] = hex::decode(o["eth_signature"].as_str().expect("sig").trim_start_matches("0x"))
        .expect("hex")
        .try_into()
        .expect("65 bytes");
    let signer = umbra_crypto::recover_message(&digest, &sig).expect("recovers");
    assert_eq!(umbra_crypto::to_checksum_address(&signer), eth);
    // The node's JSON-RPC serves the same, unverified, for clients that check signatures themselves.
    let r = net.rpc("agent_outputs", serde_json::json!([oracle]));
    assert_eq!((r["total"].as_u64(), r["outputs"][0]["nonce"].as_str()), (Some(1), Some(nonce.as_str())), "{r}");
    assert_eq!(r["eth_addresses"][0]["address"].as_str(), Some(eth.trim_start_matches("0x").to_lowercase().as_str()));
    let text = net.cli_ok(&["agent", "outputs", &oracle]);
    assert!(text.contains("1 attested outputs, each verified") && text.contains("3120.55"), "{text}");

    // The agent's EIP-191 signature recovers to the Ethereum address `agent info` shows for the key epoch.
    let signed = net.call(1, &oracle, "/sign", &["--data", r#"{"message":"prove it: 8c1f"}"#]);
    let sig: [u8; 65] = hex::decode(signed["body"]["signature"].as_str().expect("sig").trim_start_matches("0x"))
        .expect("hex")
        .try_into()
        .expect("65 bytes");
    let info = net.info(&oracle);
    let published = &info["wallet"]["eth_addresses"];
    assert_eq!(
        (published[0]["key_epoch"].as_u64(), published[0]["address"].as_str()),
        (Some(1), Some(eth.as_str())),
        "{info}"
    );
    let signer = umbra_crypto::recover_message(b"prove it: 8c1f", &sig).expect("recovers");
    assert_eq!(umbra_crypto::to_checksum_address(&signer), eth);
    // A bad symbol is refused before any fetch, and nothing more is attested.
    assert_error(&net.call(1, &oracle, "/?symbol=E%24H", &[]), 400, "symbol");

    let v: serde_json::Value =
        serde_json::from_str(&net.cli_ok(&["agent", "outputs", &oracle, "--json"])).expect("json");
    assert_eq!(v["outputs"].as_array().map(Vec::len), Some(1), "{v}");

    // Wallet transfers under the owner's cap of 5 UMB per rolling day, from an account funded with 10.
    let code = dir.join("treasurer.js");
    std::fs::write(&code, TREASURER).expect("write");
    let deploy = ["agent", "deploy", code.to_str().expect("utf-8"), "--spend-cap-per-day", "5", "--from", "admin"];
    let t = after(&net.cli_ok(&deploy), "agent ");
    net.cli_ok(&["agent", "fund", &t, "10", "--from", "admin"]);
    let bob = net.cli_ok(&["keys", "show", "bob", "--json"]);
    let bob: serde_json::Value = serde_json::from_str(&bob).expect("json");
    let bob = bob["address"].as_str().expect("address").to_string();
    let before = net.balance(&bob);
    let pay = |amount: u128| {
        let body = serde_json::json!({ "to": bob, "amount": amount.to_string() }).to_string();
        net.call(1, &t, "/pay", &["--data", &body])
    };
    let v = pay(3 * UNIT);
    assert_eq!(v["body"]["transfer"]["status"], "pending", "{v}");
    wait_until("the transfer to land", Duration::from_secs(60), || {
        (net.balance(&bob) == before + 3 * UNIT).then_some(())
    });
    let info = net.info(&t);
    assert_eq!(info["wallet"]["transfers"].as_array().map(Vec::len), Some(1), "{info}");
    assert_eq!(info["wallet"]["balance"], (7 * UNIT).to_string());
    let w = net.rpc("agent_wallet", serde_json::json!([t]));
    assert_eq!(
        (w["spent_today"].as_str(), w["spend_cap_per_day"].as_str()),
        (Some("3000000000000"), Some("5000000000000")),
        "{w}"
    );
    // One more than the cap in one go: refused at once by the worker.
    assert_error(&pay(6 * UNIT), 400, "more than the owner's whole spend cap");
    // 3 more would make 6 in the day: the worker queues it, the chain refuses it and moves nothing.
    let from = net.height();
    assert_eq!(pay(3 * UNIT)["body"]["transfer"]["status"], "pending");
    let refused = wait_until("the chain to refuse the transfer beyond the cap", Duration::from_secs(60), || {
        let to = net.height();
        let found = net.errors_tagged(from, to, "agent_spend_cap");
        (!found.is_empty()).then_some(found)
    });
    assert_eq!(refused[0]["spent"], (3 * UNIT).to_string(), "{refused:?}");
    assert_eq!(refused[0]["cap"], (5 * UNIT).to_string(), "{refused:?}");
    assert_eq!(net.balance(&bob), before + 3 * UNIT, "the refused transfer moved nothing");
    assert_eq!(net.info(&t)["wallet"]["balance"], (7 * UNIT).to_string());
    // Paused, the agent serves nothing and so spends nothing.
    net.cli_ok(&["agent", "pause", &t, "--from", "admin"]);
    wait_until("the worker to see the pause", Duration::from_secs(30), || (pay(UNIT)["status"] == 423).then_some(()));
    assert_eq!(net.balance(&bob), before + 3 * UNIT);
    // An agent whose owner set no cap may not spend at all.
    let deploy = ["agent", "deploy", code.to_str().expect("utf-8"), "--salt", "nocap", "--from", "admin"];
    let nocap = after(&net.cli_ok(&deploy), "agent ");
    net.cli_ok(&["agent", "fund", &nocap, "1", "--from", "admin"]);
    let body = serde_json::json!({ "to": bob, "amount": "1" }).to_string();
    let v = net.wait_status(1, &nocap, "/pay", 400, &["--data", &body]);
    assert_error(&v, 400, "spend cap is 0");
}
