//! `umbra worker`: runs a TEE worker (host part and enclave part in one process) against a node.

use crate::Ctx;
use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use umbra_crypto::Keypair;
use umbra_types::Hash;
use umbra_worker::host::{DEFAULT_BATCH_BLOCKS, DEFAULT_POLL, HostConfig};

/// The TEE platform to run on.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum TeeArg {
    /// Simulated: nothing is hardware-protected (dev chains only).
    Dev,
    /// Intel SGX under Gramine.
    Sgx,
    /// Intel TDX (refused: a TDX guest cannot seal the worker's keys).
    Tdx,
}

/// `umbra worker` arguments.
#[derive(Args, Debug)]
pub(crate) struct WorkerArgs {
    /// JSON-RPC URL of the node to follow [default: the global --rpc].
    #[arg(long, value_name = "RPC_URL")]
    node: Option<String>,
    /// Data directory: sealed keys and state, status.json.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// TEE platform.
    #[arg(long, value_enum)]
    tee: TeeArg,
    /// Operator account (a key name in the keystore, or a key file); signs the registration and pays for
    /// egress transactions [default: the default key].
    #[arg(long, value_name = "KEYNAME_OR_FILE")]
    operator: Option<String>,
    /// Require this genesis: a file holding the genesis hash (0x...) or JSON with a "genesis_hash" field
    /// (as `umbra status --json` prints).
    #[arg(long, value_name = "FILE")]
    genesis: Option<PathBuf>,
    /// With --tee dev: the measurement (64 hex digits) the simulated platform claims [default: the
    /// documented dev measurement, which `umbra dev` and `genesis new --dev-tee` allow].
    #[arg(long, value_name = "HEX")]
    dev_measurement: Option<String>,
    /// Serve confidential contract queries over HTTP on this address (e.g. 127.0.0.1:9955).
    #[arg(long, value_name = "ADDR")]
    query_listen: Option<std::net::SocketAddr>,
    /// Let agents' `fetch` reach loopback, private and link-local addresses (still only hosts on each agent's
    /// allow-list). Off by default: agents run inside this machine's network. For tests and local development.
    #[arg(long)]
    egress_allow_private: bool,
    /// Trust this root certificate (DER) for agents' HTTPS `fetch`, besides the bundled web roots; repeatable.
    #[arg(long, value_name = "FILE")]
    egress_extra_root: Vec<PathBuf>,
    /// The largest response body an agent's `fetch` reads; a longer one fails the fetch.
    #[arg(long, value_name = "BYTES", default_value_t = umbra_worker::agents::DEFAULT_EGRESS_RESPONSE_BYTES)]
    egress_max_response_bytes: u64,
    /// How often (ms) the worker commits each agent's pending egress receipts on chain as a Merkle root.
    #[arg(long, value_name = "MS", default_value_t = umbra_worker::agents::DEFAULT_RECEIPT_EVERY.as_millis() as u64)]
    egress_receipt_interval_ms: u64,
    /// Query endpoint (http://HOST:PORT) of another worker to ask for a sealed, chain-verified snapshot of the
    /// contracts when this worker joins a cluster; repeatable, tried in order. Without one, the worker replays
    /// the cluster's history (which fails for commands sealed to key epochs erased by a rotation).
    #[arg(long, value_name = "URL")]
    snapshot_peer: Vec<String>,
}

/// Runs the worker until interrupted.
pub(crate) fn run(ctx: &Ctx, args: WorkerArgs) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let operator = operator_key(ctx, args.operator.as_deref())?;
    let genesis = args.genesis.as_deref().map(read_genesis_pin).transpose()?;
    let tee = match args.tee {
        TeeArg::Dev => umbra_tee::TeeKind::Dev,
        TeeArg::Sgx => umbra_tee::TeeKind::Sgx,
        TeeArg::Tdx => umbra_tee::TeeKind::Tdx,
    };
    let dev_measurement = match &args.dev_measurement {
        Some(m) => {
            umbra_tee::Measurement::from_hex(m.trim()).map_err(|e| anyhow::anyhow!("--dev-measurement '{m}': {e}"))?
        }
        None => umbra_worker::dev_measurement(),
    };
    let mut extra_roots = Vec::new();
    for f in &args.egress_extra_root {
        extra_roots.push(std::fs::read(f).with_context(|| format!("reading --egress-extra-root {}", f.display()))?);
    }
    if args.egress_allow_private {
        tracing::warn!("--egress-allow-private: agents may reach loopback and private addresses on their allow-lists");
    }
    let egress = umbra_worker::agents::EgressSettings {
        allow_private: args.egress_allow_private,
        extra_roots,
        max_response_bytes: args.egress_max_response_bytes,
        receipt_every: std::time::Duration::from_millis(args.egress_receipt_interval_ms.max(100)),
    };
    let config = HostConfig {
        dev_measurement,
        node: args.node.unwrap_or_else(|| ctx.rpc.clone()),
        data_dir: args.data,
        tee,
        operator,
        genesis,
        batch_blocks: DEFAULT_BATCH_BLOCKS,
        poll: DEFAULT_POLL,
        query_listen: args.query_listen,
        egress,
        snapshot_peers: args.snapshot_peer,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        tokio::select! {
            r = umbra_worker::host::run(config) => r.context("the worker stopped"),
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted; the sealed state is saved after every batch");
                Ok(())
            }
        }
    })
}

/// The operator key: a file (`{"seed": "hex"}` as the keystore writes), a key name, or the default key.
fn operator_key(ctx: &Ctx, arg: Option<&str>) -> Result<Keypair> {
    let ks = ctx.keystore()?;
    match arg {
        Some(s) if Path::new(s).is_file() => {
            let text = std::fs::read_to_string(s).with_context(|| format!("reading {s}"))?;
            let json: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {s}"))?;
            let seed = json.get("seed").and_then(|v| v.as_str()).context("the key file has no \"seed\"")?;
            let bytes = hex::decode(seed.trim_start_matches("0x")).context("the seed is not hex")?;
            let seed: [u8; 32] = bytes.try_into().map_err(|_| anyhow::anyhow!("the seed is not 32 bytes"))?;
            Ok(Keypair::from_seed(seed))
        }
        Some(name) => Ok(ks.get(name)?),
        None => match ks.default_key() {
            Ok((_, key)) => Ok(key),
            Err(_) => ks.get("default").context("no --operator given and no default key"),
        },
    }
}

/// A genesis hash from a file: the hash itself, or JSON with `genesis_hash`.
fn read_genesis_pin(path: &Path) -> Result<Hash> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if let Ok(h) = text.trim().parse::<Hash>() {
        return Ok(h);
    }
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is neither a hash nor JSON", path.display()))?;
    let Some(h) = json.get("genesis_hash").and_then(|v| v.as_str()) else {
        bail!("{} has no \"genesis_hash\"", path.display());
    };
    h.parse::<Hash>().map_err(|e| anyhow::anyhow!("{}: genesis_hash: {e}", path.display()))
}
