//! The real `umbra` binary on commands that need no node: the keystore, argument errors and an
//! unreachable node. Every failure must be exit code 1 and exactly one `error: ...` line.
//! (Tests against running networks live in `network.rs`.)

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

/// The `umbra` binary with a clean environment: `home` as `UMBRA_HOME` and no inherited
/// `UMBRA_RPC`, so a developer's own settings never leak into a test. Add `--rpc` as needed.
fn umbra(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_umbra"));
    cmd.env("UMBRA_HOME", home).env_remove("UMBRA_RPC").env_remove("RUST_BACKTRACE");
    cmd
}

/// Runs `umbra args...` in `home`.
fn run(home: &Path, args: &[&str]) -> Output {
    umbra(home).args(args).output().expect("umbra runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts success and returns stdout.
fn ok(home: &Path, args: &[&str]) -> String {
    let out = run(home, args);
    assert!(out.status.success(), "umbra {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    stdout(&out)
}

/// Asserts the failure contract (exit code 1, one `error:` line on stderr) and returns that line.
fn fails(home: &Path, args: &[&str]) -> String {
    let out = run(home, args);
    assert_eq!(out.status.code(), Some(1), "umbra {args:?} should exit 1; stdout: {}", stdout(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "umbra {args:?} should print one line, printed: {err:?}");
    assert!(lines[0].starts_with("error: "), "{err:?}");
    lines[0].to_string()
}

/// A loopback URL where nothing listens.
fn dead_rpc() -> String {
    let port = TcpListener::bind("127.0.0.1:0").expect("binds").local_addr().expect("addr").port();
    format!("http://127.0.0.1:{port}")
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not one JSON value ({e}): {s}"))
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("exists").permissions().mode() & 0o777
}

#[test]
fn a_new_key_is_private_listed_as_default_and_shown_without_its_seed() {
    let home = tempfile::tempdir().expect("tempdir");
    let created = json(&ok(home.path(), &["keys", "new", "alice", "--json"]));
    let address = created["address"].as_str().expect("address").to_string();
    assert!(address.starts_with("umbra1"));
    assert_eq!(created["default"], true);
    #[cfg(unix)]
    {
        assert_eq!(mode(&home.path().join("keys/alice.json")), 0o600);
        assert_eq!(mode(&home.path().join("keys")), 0o700);
    }

    ok(home.path(), &["keys", "new", "bob"]);
    let list = json(&ok(home.path(), &["keys", "list", "--json"]));
    let names: Vec<_> = list.as_array().expect("array").iter().map(|k| k["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["alice", "bob"]);
    let human = ok(home.path(), &["keys", "list"]);
    assert!(human.lines().any(|l| l.starts_with("* alice") && l.contains(&address)), "{human}");

    let shown = ok(home.path(), &["keys", "show", "alice"]);
    assert!(shown.contains(&address), "{shown}");
    assert!(!shown.contains("seed"), "the seed is printed only on request: {shown}");
    let revealed = json(&ok(home.path(), &["keys", "show", "alice", "--json", "--reveal-seed"]));
    assert_eq!(revealed["seed"].as_str().map(str::len), Some(64));
}

#[test]
fn a_key_is_imported_from_a_seed_file_or_standard_input() {
    use std::io::Write as _;
    use std::process::Stdio;
    let home = tempfile::tempdir().expect("tempdir");
    let seed_file = home.path().join("seed.txt");
    std::fs::write(&seed_file, format!("{}\n", "11".repeat(32))).expect("writes");
    let from_file =
        json(&ok(home.path(), &["keys", "import", "one", "--seed-file", seed_file.to_str().expect("utf-8"), "--json"]));
    let mut child = umbra(home.path())
        .args(["keys", "import", "two", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("runs");
    child.stdin.take().expect("stdin").write_all(format!("0x{}", "11".repeat(32)).as_bytes()).expect("writes");
    let out = child.wait_with_output().expect("finishes");
    assert!(out.status.success());
    assert_eq!(json(&stdout(&out))["address"], from_file["address"], "the same seed gives the same account");
    std::fs::write(&seed_file, "not hex").expect("writes");
    let line = fails(home.path(), &["keys", "import", "three", "--seed-file", seed_file.to_str().expect("utf-8")]);
    assert!(line.contains("32 bytes of hex"), "{line}");
}

#[test]
fn the_default_key_can_be_changed_and_home_can_be_given_as_a_flag() {
    let env_home = tempfile::tempdir().expect("tempdir");
    let flag_home = tempfile::tempdir().expect("tempdir");
    let home_flag = flag_home.path().to_str().expect("utf-8 path");
    ok(env_home.path(), &["--home", home_flag, "keys", "new", "alice"]);
    ok(env_home.path(), &["keys", "new", "bob", "--home", home_flag]);
    ok(env_home.path(), &["keys", "default", "bob", "--home", home_flag]);
    let list = json(&ok(env_home.path(), &["keys", "list", "--json", "--home", home_flag]));
    assert_eq!(list[1]["name"], "bob");
    assert_eq!(list[1]["default"], true);
    assert!(!env_home.path().join("keys").exists(), "--home wins over UMBRA_HOME");
}

#[test]
fn a_duplicate_or_invalid_key_name_is_one_clear_line() {
    let home = tempfile::tempdir().expect("tempdir");
    ok(home.path(), &["keys", "new", "alice"]);
    assert!(fails(home.path(), &["keys", "new", "alice"]).contains("already exists"));
    assert!(fails(home.path(), &["keys", "new", "../evil"]).contains("invalid key name"));
    assert!(fails(home.path(), &["keys", "show", "nobody"]).contains("no key named 'nobody'"));
    assert!(fails(home.path(), &["keys", "default", "nobody"]).contains("no key named 'nobody'"));
}

#[test]
fn a_bad_recipient_address_is_refused_before_contacting_the_node() {
    let home = tempfile::tempdir().expect("tempdir");
    ok(home.path(), &["keys", "new", "alice"]);
    let rpc = dead_rpc();
    let line = fails(home.path(), &["transfer", "--rpc", &rpc, "--to", "umbra1notanaddress", "--amount", "1"]);
    assert!(line.contains("malformed address"), "{line}");
    let line = fails(home.path(), &["transfer", "--rpc", &rpc, "--to", "stranger", "--amount", "1"]);
    assert!(line.contains("'stranger' is not an address"), "{line}");
}

#[test]
fn a_bad_amount_is_one_clear_line() {
    let home = tempfile::tempdir().expect("tempdir");
    let to = json(&ok(home.path(), &["keys", "new", "alice", "--json"]))["address"].as_str().expect("a").to_string();
    for (amount, why) in
        [("12.5x", "is not an amount"), ("1.0000000000001", "decimal places"), ("2000000000", "maximum supply")]
    {
        let line = fails(home.path(), &["transfer", "--to", &to, "--amount", amount]);
        assert!(line.contains(why), "{amount}: {line}");
    }
}

#[test]
fn a_transfer_without_a_key_says_how_to_make_one() {
    let home = tempfile::tempdir().expect("tempdir");
    let line = fails(home.path(), &["transfer", "--to", "umbra1qqqq", "--amount", "1", "--rpc", &dead_rpc()]);
    assert!(line.contains("malformed address"), "{line}");
    let to = "umbra17rtc7gmenec6j7432empvy4wvvv3vd02gjv9y5x5e2vypt4vpdpsw6mjvc";
    let line = fails(home.path(), &["transfer", "--to", to, "--amount", "1", "--rpc", &dead_rpc()]);
    assert!(line.contains("umbra keys new"), "{line}");
}

#[test]
fn an_unreachable_node_is_one_line_for_every_client_command() {
    let home = tempfile::tempdir().expect("tempdir");
    let to = json(&ok(home.path(), &["keys", "new", "alice", "--json"]))["address"].as_str().expect("a").to_string();
    let rpc = dead_rpc();
    let commands: [&[&str]; 5] = [
        &["status"],
        &["status", "--json"],
        &["block", "3"],
        &["account", "alice"],
        &["transfer", "--to", &to, "--amount", "1", "--from", "alice"],
    ];
    for args in commands {
        let mut args = args.to_vec();
        args.extend(["--rpc", &rpc]);
        let line = fails(home.path(), &args);
        assert!(line.contains(&format!("cannot reach the node at {rpc}")), "{args:?}: {line}");
    }
    // The environment variable works as well as the flag.
    let out = umbra(home.path()).env("UMBRA_RPC", &rpc).args(["status", "--json"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no partial JSON on failure");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&rpc));
}

#[test]
fn argument_mistakes_are_one_line_and_exit_1() {
    let home = tempfile::tempdir().expect("tempdir");
    assert!(fails(home.path(), &[]).contains("requires a subcommand"));
    assert!(fails(home.path(), &["keys"]).contains("umbra keys --help"));
    assert!(fails(home.path(), &["frobnicate"]).contains("unrecognized subcommand"));
    assert!(fails(home.path(), &["transfer", "--amount", "1"]).contains("--to"));
    assert!(fails(home.path(), &["block", "nonsense"]).contains("neither a height nor a block hash"));
    assert!(fails(home.path(), &["status", "--rpc", "localhost:9944"]).contains("http://"));
}

#[test]
fn help_and_version_succeed() {
    let home = tempfile::tempdir().expect("tempdir");
    assert!(ok(home.path(), &["--help"]).contains("transfer"));
    assert!(ok(home.path(), &["transfer", "--help"]).contains("--no-wait"));
    assert!(ok(home.path(), &["--version"]).starts_with("umbra "));
}

/// A scripted JSON-RPC node on loopback (chain `umbra-mock`): a genesis block whose committee is
/// the key of `seed`, and blocks 1..=5 whose finality certificates are forged (not signatures of
/// that committee). Returns its URL, the genesis hash and what keeps it running.
mod forged {
    use jsonrpsee::server::{RpcModule, Server, ServerHandle};
    use jsonrpsee::types::{ErrorObject, ErrorObjectOwned};
    use umbra_rpc::{BlockId, BlockResponse, ChainInfo, ErrorCode, methods};
    use umbra_types::{Block, FeeParams, Hash, Header, TokenInfo};

    pub(super) struct MockNode {
        pub(super) url: String,
        pub(super) genesis: Hash,
        _handle: ServerHandle,
        _rt: tokio::runtime::Runtime,
    }

    fn header(height: u64, committee: Option<Vec<[u8; 32]>>) -> Header {
        Header {
            height,
            parent: Hash::ZERO,
            timestamp_ms: 1_000 + height,
            proposer: [0; 32],
            epoch: 0,
            tx_root: umbra_crypto::merkle_root(&[]),
            state_root: Hash([height as u8; 32]),
            messages_root: Hash::ZERO,
            next_committee: committee,
        }
    }

    pub(super) fn start(seed: u8) -> MockNode {
        let committee = vec![umbra_crypto::Keypair::from_seed([seed; 32]).address().0];
        let genesis = header(0, Some(committee));
        let genesis_hash = genesis.hash();
        let rt = tokio::runtime::Runtime::new().expect("tokio");
        let (addr, handle) = rt.block_on(async move {
            let server = Server::builder().build("127.0.0.1:0").await.expect("binds");
            let addr = server.local_addr().expect("addr");
            let mut m = RpcModule::new(genesis);
            m.register_method(methods::CHAIN_INFO, |_, g, _| {
                Ok::<_, ErrorObjectOwned>(ChainInfo {
                    chain_id: "umbra-mock".into(),
                    genesis_hash: g.hash(),
                    token: TokenInfo::default(),
                    validators: vec![],
                    tee_dev_enabled: true,
                    fees: FeeParams::default(),
                    max_tx_bytes: 65_536,
                    epoch_length: u64::MAX,
                })
            })
            .expect("registers");
            m.register_method(methods::CHAIN_GET_BLOCK, |p, g, _| {
                let (id,): (Option<BlockId>,) = p.parse()?;
                let height = match id {
                    None => 5,
                    Some(BlockId::Height(h)) if h <= 5 => h,
                    _ => return Err(ErrorObject::owned(ErrorCode::NotFound.code(), "no such block", None::<()>)),
                };
                let (header, cert) = match height {
                    0 => (g.clone(), None),
                    h => (header(h, None), Some("00".repeat(200))),
                };
                let block = Block { header, txs: vec![] };
                Ok(BlockResponse { hash: block.hash(), block, finality_certificate: cert, receipts: vec![] })
            })
            .expect("registers");
            (addr, server.start(m))
        });
        MockNode { url: format!("http://{addr}"), genesis: genesis_hash, _handle: handle, _rt: rt }
    }
}

#[test]
fn umbra_block_verifies_the_genesis_and_refuses_a_forged_certificate() {
    let home = tempfile::tempdir().expect("tempdir");
    let node = forged::start(1);
    let out = ok(home.path(), &["block", "0", "--rpc", &node.url]);
    assert!(out.contains("verified: the pinned genesis block"), "{out}");
    let v = json(&ok(home.path(), &["block", "0", "--json", "--rpc", &node.url]));
    assert_eq!(v["verified"]["kind"], "trusted");
    assert_eq!(v["block"]["header"]["height"], 0);
    let line = fails(home.path(), &["block", "3", "--rpc", &node.url]);
    assert!(line.contains("block 3 is not proven final"), "{line}");
    let line = fails(home.path(), &["block", "--rpc", &node.url]);
    assert!(line.contains("certificate"), "{line}");
}

#[test]
fn the_chain_is_pinned_on_first_use_and_a_reset_chain_needs_explicit_trust() {
    let home = tempfile::tempdir().expect("tempdir");
    let first = forged::start(1);
    ok(home.path(), &["block", "0", "--rpc", &first.url]);
    let pin = home.path().join("trust/umbra-mock.json");
    assert!(pin.exists(), "first contact writes the pin");
    #[cfg(unix)]
    assert_eq!(mode(&pin), 0o600);

    // Same chain id, another genesis: refused until trusted explicitly.
    let reset = forged::start(2);
    let line = fails(home.path(), &["block", "0", "--rpc", &reset.url]);
    assert!(line.contains("untrusted chain 'umbra-mock'") && line.contains("--trust-genesis"), "{line}");
    let genesis = reset.genesis.to_string();
    ok(home.path(), &["block", "0", "--rpc", &reset.url, "--trust-genesis", &genesis]);
    ok(home.path(), &["block", "0", "--rpc", &reset.url]);
    assert!(fails(home.path(), &["block", "0", "--rpc", &first.url]).contains("untrusted chain"));
}

#[test]
fn a_dev_network_made_by_an_older_umbra_is_refused_with_the_way_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = dir.path().join("net");
    std::fs::create_dir_all(net.join("validator-0")).expect("mkdir");
    std::fs::write(net.join("validator-0/node.toml"), "name = \"validator-0\"\n").expect("write");
    std::fs::write(net.join("genesis.json"), "{}").expect("write");
    let line = fails(dir.path(), &["dev", "--quiet", "--home", net.to_str().expect("utf-8")]);
    assert!(line.contains("older Umbra") && line.contains("--reset"), "{line}");
}
