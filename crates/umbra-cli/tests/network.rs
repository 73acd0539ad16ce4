//! End-to-end tests on real processes: `umbra dev` networks on 127.0.0.1 driven through the `umbra`
//! CLI and the SDK, including SIGKILL and restart.

mod common;
use common::{free_ports, umbra};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use umbra_types::{Address, Genesis, UNIT, parse_amount};

/// A dev network running as a child process; killed when dropped.
struct DevNet {
    child: Option<Child>,
    dir: PathBuf,
    rpc_port: u16,
    p2p_port: u16,
    validators: usize,
}

impl DevNet {
    fn start(dir: &Path, validators: usize) -> DevNet {
        let rpc_port = free_ports(validators as u16);
        let p2p_port = free_ports(validators as u16);
        let mut net = DevNet { child: None, dir: dir.to_path_buf(), rpc_port, p2p_port, validators };
        net.spawn();
        net
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(self.home()).expect("home dir");
        let log = std::fs::File::create(self.dir.join(format!("stdout-{}.log", Instant::now().elapsed().as_nanos())))
            .expect("log file");
        let child = umbra()
            .args(["dev", "--quiet", "--workers", "0", "--validators", &self.validators.to_string()])
            .arg("--home")
            .arg(self.dir.join("net"))
            .args(["--rpc-port", &self.rpc_port.to_string(), "--p2p-port", &self.p2p_port.to_string()])
            .env("UMBRA_HOME", self.home())
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("umbra dev starts");
        self.child = Some(child);
        self.wait_for_height(1, Duration::from_secs(90));
    }

    fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    fn rpc(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port + i as u16)
    }

    /// Runs the CLI against validator `i` with this network's keystore.
    fn cli(&self, i: usize, args: &[&str]) -> Output {
        umbra().args(["--rpc", &self.rpc(i)]).args(args).env("UMBRA_HOME", self.home()).output().expect("umbra runs")
    }

    fn cli_ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.cli(i, args);
        assert!(
            out.status.success(),
            "umbra {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn status(&self, i: usize) -> Option<serde_json::Value> {
        let out = self.cli(i, &["status", "--json"]);
        out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
    }

    fn height(&self, i: usize) -> Option<u64> {
        self.status(i)?.get("height")?.as_u64()
    }

    fn wait_for_height(&self, h: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for i in 0..self.validators {
            loop {
                if self.height(i).is_some_and(|x| x >= h) {
                    break;
                }
                assert!(Instant::now() < deadline, "validator {i} did not reach height {h} in {timeout:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    fn balance(&self, i: usize, who: &str) -> u128 {
        let out = self.cli_ok(i, &["account", who, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("account json");
        let b = &v["balance"];
        b.as_str().map(|s| s.parse().expect("integer balance")).or_else(|| b.as_u64().map(u128::from)).expect("balance")
    }

    fn genesis(&self) -> Genesis {
        Genesis::from_json(&std::fs::read_to_string(self.dir.join("net/genesis.json")).expect("genesis"))
            .expect("valid")
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-9", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }
}

impl Drop for DevNet {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn new_key(net: &DevNet, name: &str) -> String {
    net.cli_ok(0, &["keys", "new", name]);
    let out = net.cli_ok(0, &["keys", "show", name, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("key json");
    v["address"].as_str().expect("address").to_string()
}

/// Everyone who can hold tokens on a fresh dev chain after transfers among `extra`.
fn total_supply(net: &DevNet, node: usize, extra: &[String]) -> u128 {
    let g = net.genesis();
    let mut holders: Vec<String> = g.allocations.iter().map(|a| a.address.to_string()).collect();
    holders.extend(g.validators.iter().map(|v| Address(v.key).to_string()));
    holders.push(Address::module("treasury").to_string());
    holders.extend(extra.iter().cloned());
    holders.iter().map(|h| net.balance(node, h)).sum()
}

#[test]
fn a_four_validator_dev_network_moves_tokens_and_every_node_agrees_on_balances_and_supply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = DevNet::start(dir.path(), 4);
    let alice = new_key(&net, "alice");
    let bob = new_key(&net, "bob");
    let issued = total_supply(&net, 0, &[]);

    net.cli_ok(0, &["transfer", "--to", &alice, "--amount", "12.5"]);
    net.cli_ok(2, &["transfer", "--to", &bob, "--amount", "3"]);
    net.cli_ok(1, &["transfer", "--from", "alice", "--to", &bob, "--amount", "2.25"]);

    // Wait until every node has applied the last transfer.
    let h = net.height(1).expect("height");
    net.wait_for_height(h, Duration::from_secs(30));
    for i in 0..4 {
        let a = net.balance(i, &alice);
        assert!(
            a < parse_amount("10.25").expect("amount") && a > parse_amount("10.2").expect("amount"),
            "alice paid a fee: {a}"
        );
        assert_eq!(net.balance(i, &bob), parse_amount("5.25").expect("amount"), "bob's balance on validator {i}");
        assert_eq!(total_supply(&net, i, &[alice.clone(), bob.clone()]), issued, "supply changed on validator {i}");
    }
    let status = net.status(3).expect("status");
    assert_eq!(status["chain_id"], "umbra-dev");
    assert_eq!(status["validators"].as_array().map(|v| v.len()), Some(4));

    // Every finalized block is served with its finality certificate, by every node.
    for i in 0..4 {
        let out = net.cli_ok(i, &["block", "2", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("block json");
        assert_eq!(v["block"]["header"]["height"], 2);
        assert!(
            v["finality_certificate"].as_str().is_some_and(|c| c.len() > 64),
            "no certificate on validator {i}: {out}"
        );
    }
}

#[test]
fn finalized_heads_stream_over_websocket_and_the_transfer_benchmark_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = DevNet::start(dir.path(), 1);
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    rt.block_on(async {
        let c = umbra_sdk::Client::new(net.rpc(0)).expect("client");
        let mut heads = c.subscribe_heads().await.expect("subscribed");
        let a = heads.next().await.expect("a head").expect("valid head");
        let b = heads.next().await.expect("a head").expect("valid head");
        assert!(b.height > a.height, "heads must advance: {} then {}", a.height, b.height);
    });
    // A short benchmark run against this network (it funds its senders from the dev key).
    let out = net.cli_ok(
        0,
        &[
            "--json",
            "bench",
            "transfers",
            "--network",
            &net.rpc(0),
            "--from",
            "dev",
            "--duration",
            "2",
            "--latency-duration",
            "1",
            "--latency-rate",
            "20",
            "--senders",
            "8",
            "--batch",
            "50",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("bench json");
    assert!(v["throughput_phase"]["transfers_per_s"].as_f64().is_some_and(|t| t > 0.0), "{out}");
    assert!(v["latency_phase"]["finality_ms_p50"].as_f64().is_some_and(|t| t > 0.0), "{out}");
}

#[test]
fn a_dev_network_killed_with_sigkill_resumes_at_its_height_with_identical_balances() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = DevNet::start(dir.path(), 1);
    let carol = new_key(&net, "carol");
    net.cli_ok(0, &["transfer", "--to", &carol, "--amount", "7"]);
    let dev = Address(net.genesis().allocations[0].address.0).to_string();
    let before = (net.balance(0, &carol), net.balance(0, &dev));
    let height = net.height(0).expect("height");

    net.kill9();
    net.spawn();
    let resumed = net.height(0).expect("height after restart");
    assert!(resumed >= height, "resumed at {resumed}, was at {height}");
    assert_eq!((net.balance(0, &carol), net.balance(0, &dev)), before);

    // And it keeps going: blocks and transfers.
    net.wait_for_height(resumed + 3, Duration::from_secs(30));
    net.cli_ok(0, &["transfer", "--to", &carol, "--amount", "1"]);
    assert_eq!(net.balance(0, &carol), 8 * UNIT);
}

/// An HTTP proxy in front of a node that adds 1,000 units to every `balance` in JSON-RPC answers:
/// a lying RPC node.
fn tampering_proxy(upstream: u16) -> u16 {
    use std::io::{Read, Write};
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind proxy");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                // Read the request head and body.
                let (head_end, content_len) = loop {
                    let Ok(n) = client.read(&mut chunk) else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..pos]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        break (pos + 4, len);
                    }
                };
                while buf.len() < head_end + content_len {
                    let Ok(n) = client.read(&mut chunk) else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end - 4]).to_string();
                let mut req: String = head
                    .lines()
                    .filter(|l| !l.to_lowercase().starts_with("connection:"))
                    .map(|l| format!("{l}\r\n"))
                    .collect();
                req.push_str("Connection: close\r\n\r\n");
                let mut up = std::net::TcpStream::connect(("127.0.0.1", upstream)).expect("upstream");
                up.write_all(req.as_bytes()).expect("forward head");
                up.write_all(&buf[head_end..]).expect("forward body");
                let mut resp = Vec::new();
                let _ = up.read_to_end(&mut resp);
                let Some(pos) = resp.windows(4).position(|w| w == b"\r\n\r\n") else { return };
                let body = &resp[pos + 4..];
                let mut json: serde_json::Value = match serde_json::from_slice(body) {
                    Ok(j) => j,
                    Err(_) => {
                        let _ = client.write_all(&resp);
                        return;
                    }
                };
                if let Some(b) = json.pointer_mut("/result/balance")
                    && let Some(s) = b.as_str()
                {
                    let v: u128 = s.parse().unwrap_or(0);
                    *b = serde_json::Value::String((v + 1_000).to_string());
                }
                let new_body = serde_json::to_vec(&json).expect("json");
                let status_line =
                    String::from_utf8_lossy(&resp[..pos]).lines().next().unwrap_or("HTTP/1.1 200 OK").to_string();
                let out = format!(
                    "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    new_body.len()
                );
                let _ = client.write_all(out.as_bytes());
                let _ = client.write_all(&new_body);
            });
        }
    });
    port
}

#[test]
fn umbra_account_verifies_the_state_proof_and_refuses_a_tampered_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = DevNet::start(dir.path(), 1);
    let dev = Address(net.genesis().allocations[0].address.0).to_string();

    // The honest node: verified.
    let out = net.cli_ok(0, &["account", &dev]);
    assert!(out.contains("verified"), "expected a verification note, got: {out}");

    // Through a lying proxy: refused with one line and a non-zero exit.
    let proxy = tampering_proxy(net.rpc_port);
    let out = umbra()
        .args(["--rpc", &format!("http://127.0.0.1:{proxy}"), "account", &dev])
        .env("UMBRA_HOME", net.home())
        .output()
        .expect("umbra runs");
    assert!(!out.status.success(), "a tampered balance was accepted: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one-line error expected, got: {err}");
    assert!(err.to_lowercase().contains("proof"), "the error should name the proof: {err}");
}

mod bad_input {
    use super::*;
    use jsonrpsee::core::client::ClientT;
    use umbra_crypto::{Keypair, sign_transaction};
    use umbra_rpc::ErrorCode;
    use umbra_types::{Call, SignedTransaction, Transaction};

    fn dev_key() -> Keypair {
        Keypair::from_seed(umbra_types::sha256(&[b"umbra/dev/account/0"]).0)
    }

    fn signed(k: &Keypair, nonce: u64, chain_id: &str, fee: u128, to: Address, amount: u128) -> SignedTransaction {
        sign_transaction(
            k,
            Transaction {
                signer: k.address(),
                nonce,
                chain_id: chain_id.into(),
                fee,
                call: Call::Transfer { to, amount },
            },
        )
    }

    async fn code_of(c: &umbra_sdk::Client, tx: &SignedTransaction) -> Option<ErrorCode> {
        c.submit(tx).await.err().and_then(|e| e.rpc_code())
    }

    #[test]
    fn every_kind_of_bad_transaction_gets_a_typed_error_and_the_node_keeps_going() {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = DevNet::start(dir.path(), 1);
        let rt = tokio::runtime::Runtime::new().expect("tokio");
        rt.block_on(async {
            let c = umbra_sdk::Client::new(net.rpc(0)).expect("client");
            let info = c.chain_info().await.expect("chain info");
            let k = dev_key();
            let to = Address([9; 32]);
            let nonce = c.next_nonce(&k.address()).await.expect("nonce");
            let fee = umbra_types::UNIT / 100;
            let dev_before = c.account(&k.address()).await.expect("account").balance;

            // Malformed bytes.
            let http = jsonrpsee::http_client::HttpClientBuilder::default().build(net.rpc(0)).expect("http");
            let err = http
                .request::<String, _>("tx_submit", jsonrpsee::rpc_params!["00ff00ff"])
                .await
                .expect_err("garbage refused");
            let jsonrpsee::core::client::Error::Call(obj) = err else { panic!("expected a call error, got {err}") };
            assert_eq!(obj.code(), ErrorCode::MalformedTransaction.code());
            let err =
                http.request::<String, _>("tx_submit", jsonrpsee::rpc_params!["not hex"]).await.expect_err("refused");
            let jsonrpsee::core::client::Error::Call(obj) = err else { panic!("expected a call error") };
            assert_eq!(obj.code(), ErrorCode::MalformedTransaction.code());

            // A bad signature.
            let mut bad = signed(&k, nonce, &info.chain_id, fee, to, 1);
            bad.signature[3] ^= 1;
            assert_eq!(code_of(&c, &bad).await, Some(ErrorCode::BadSignature));
            // A wrong chain id.
            assert_eq!(code_of(&c, &signed(&k, nonce, "other-chain", fee, to, 1)).await, Some(ErrorCode::WrongChainId));
            // A fee below the minimum.
            assert_eq!(code_of(&c, &signed(&k, nonce, &info.chain_id, 1, to, 1)).await, Some(ErrorCode::FeeTooLow));
            // A nonce gap.
            assert_eq!(
                code_of(&c, &signed(&k, nonce + 5, &info.chain_id, fee, to, 1)).await,
                Some(ErrorCode::NonceGap)
            );
            // An oversized transaction: a chain id long enough to pass the size limit.
            let huge = signed(&k, nonce, &"x".repeat(info.max_tx_bytes as usize), fee, to, 1);
            assert_eq!(code_of(&c, &huge).await, Some(ErrorCode::TransactionTooLarge));
            // A good one, then the same nonce again.
            let good = signed(&k, nonce, &info.chain_id, fee, to, 5);
            let hash = c.submit(&good).await.expect("admitted");
            assert_eq!(code_of(&c, &good).await, Some(ErrorCode::AlreadyKnown));
            assert_eq!(
                code_of(&c, &signed(&k, nonce, &info.chain_id, fee + 1, to, 6)).await,
                Some(ErrorCode::NonceUsed)
            );
            let r = c.wait_for_tx(hash, Duration::from_secs(30)).await.expect("finalized");
            assert!(r.receipt.expect("receipt").is_success());
            assert_eq!(
                code_of(&c, &signed(&k, nonce, &info.chain_id, fee + 2, to, 7)).await,
                Some(ErrorCode::NonceUsed)
            );
            // An account that cannot pay the fee.
            let poor = Keypair::generate();
            assert_eq!(code_of(&c, &signed(&poor, 0, &info.chain_id, fee, to, 1)).await, Some(ErrorCode::CannotPayFee));

            // Only the good transfer's amount and fee left the dev account.
            let dev_after = c.account(&k.address()).await.expect("account").balance;
            assert_eq!(dev_before - dev_after, 5 + fee);
            assert_eq!(c.account(&to).await.expect("account").balance, 5);
        });
        // The node is still finalizing.
        let h = net.height(0).expect("height");
        net.wait_for_height(h + 2, Duration::from_secs(30));
    }

    #[test]
    fn a_transfer_beyond_the_balance_fails_with_a_receipt_and_only_the_fee_is_charged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = DevNet::start(dir.path(), 1);
        let dave = new_key(&net, "dave");
        net.cli_ok(0, &["transfer", "--to", &dave, "--amount", "1"]);
        let out = net.cli(0, &["transfer", "--from", "dave", "--to", &Address([7; 32]).to_string(), "--amount", "5"]);
        assert!(!out.status.success(), "an overdraft succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.to_lowercase().contains("insufficient balance"), "{err}");
        let left = net.balance(0, &dave);
        assert!(left < UNIT && left > UNIT - UNIT / 100, "only the fee is charged: {left}");
        assert_eq!(net.balance(0, &Address([7; 32]).to_string()), 0);
    }

    #[test]
    fn a_corrupt_genesis_or_a_corrupt_data_directory_stops_the_node_with_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut net = DevNet::start(dir.path(), 1);
        net.kill9();
        let config = dir.path().join("net/validator-0/node.toml");

        // A corrupt block index.
        let index = dir.path().join("net/validator-0/data/index.redb");
        let saved = std::fs::read(&index).expect("index exists");
        std::fs::write(&index, b"this is not a database").expect("corrupt it");
        let out = umbra().arg("node").arg("--config").arg(&config).output().expect("runs");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("index"), "{err}");
        std::fs::write(&index, saved).expect("restore");

        // A corrupt genesis file.
        let genesis = dir.path().join("net/genesis.json");
        let text = std::fs::read_to_string(&genesis).expect("genesis");
        std::fs::write(&genesis, &text[..text.len() / 2]).expect("truncate");
        let out = umbra().arg("node").arg("--config").arg(&config).output().expect("runs");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("genesis"), "{err}");
        assert_eq!(err.trim().lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");

        // A missing genesis file.
        std::fs::remove_file(&genesis).expect("remove");
        let out = umbra().arg("node").arg("--config").arg(&config).output().expect("runs");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read genesis"));

        // The original genesis brings it back, with its data intact.
        std::fs::write(&genesis, text).expect("restore");
        net.spawn();
    }
}
