//! `umbra dev`: a whole local network in one process, with its data under one directory.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use umbra_crypto::Keypair;
use umbra_node::{NodeConfig, PeerConfig};
use umbra_types::{Allocation, Genesis, GenesisValidator, Params, TokenInfo, UNIT, format_amount};

/// Arguments of `umbra dev`.
#[derive(Args, Debug)]
pub(crate) struct DevArgs {
    /// Where the network keeps its data [default: $UMBRA_HOME/dev, i.e. ~/.umbra/dev].
    #[arg(long)]
    pub(crate) home: Option<PathBuf>,
    /// Number of validators [default: 1, or what the existing network has].
    #[arg(long)]
    pub(crate) validators: Option<usize>,
    /// Wipe the data directory and start a new chain.
    #[arg(long)]
    pub(crate) reset: bool,
    /// First JSON-RPC port; validator i listens on PORT+i.
    #[arg(long, default_value_t = 9944)]
    pub(crate) rpc_port: u16,
    /// First p2p port; validator i listens on PORT+i.
    #[arg(long, default_value_t = 30333)]
    pub(crate) p2p_port: u16,
    /// Print no status line (for scripts and tests).
    #[arg(long)]
    pub(crate) quiet: bool,
    /// TEE workers (dev TEE) in cluster 1, besides the gatekeeper; 0 runs no workers at all
    /// [default: 2, or what the existing network has].
    #[arg(long)]
    pub(crate) workers: Option<usize>,
    /// With an empty mempool, milliseconds a leader waits before proposing an empty block [default:
    /// 200]; 0 makes blocks as fast as consensus allows (to grow a long chain quickly).
    #[arg(long, value_name = "MS")]
    pub(crate) empty_block_ms: Option<u64>,
    /// Workers serve contract queries: worker i on 127.0.0.1:PORT+i (for `umbra contract query --worker`).
    #[arg(long, value_name = "PORT")]
    pub(crate) query_port: Option<u16>,
}

/// The chain id of dev networks.
const DEV_CHAIN_ID: &str = "umbra-dev";
/// The dev account's balance at genesis: 100 million UMB.
const DEV_BALANCE: u128 = 100_000_000 * UNIT;
/// The name of the dev account in the keystore.
const DEV_KEY_NAME: &str = "dev";

/// The dev account's well-known key (like Substrate's //Alice): anyone can spend it, so it is only
/// ever funded on dev chains.
pub(crate) fn dev_account() -> Keypair {
    Keypair::from_seed(umbra_types::sha256(&[b"umbra/dev/account/0"]).0)
}

/// The registry genesis of a dev chain: simulated attestation from the well-known dev attestation key,
/// and the dev workers' measurement on the allow-list.
pub(crate) fn dev_registry() -> umbra_types::RegistryGenesis {
    let dev_key = umbra_crypto::Keypair::from_seed(umbra_worker::dev_attestation_seed()).address().0;
    umbra_types::RegistryGenesis {
        policy: umbra_tee::Policy {
            accepted_kinds: [umbra_tee::TeeKind::Dev, umbra_tee::TeeKind::Sgx, umbra_tee::TeeKind::Tdx].into(),
            dev_keys: [dev_key].into(),
            measurements: [umbra_worker::dev_measurement()].into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn default_home() -> Result<PathBuf> {
    Ok(umbra_sdk::umbra_home().context("cannot find a home directory")?.join("dev"))
}

struct Layout {
    home: PathBuf,
}

impl Layout {
    fn genesis(&self) -> PathBuf {
        self.home.join("genesis.json")
    }
    fn validator_dir(&self, i: usize) -> PathBuf {
        self.home.join(format!("validator-{i}"))
    }
    fn config(&self, i: usize) -> PathBuf {
        self.validator_dir(i).join("node.toml")
    }
    /// Worker 0 is the gatekeeper; workers 1.. are members of the dev cluster.
    fn worker_dir(&self, i: usize) -> PathBuf {
        self.home.join(format!("worker-{i}"))
    }
    fn operator_key(&self, i: usize) -> PathBuf {
        self.worker_dir(i).join("operator.key")
    }
    fn format(&self) -> PathBuf {
        self.home.join("FORMAT")
    }
}

/// The cluster dev workers join.
const DEV_CLUSTER: u32 = 1;
/// The layout of dev networks this build makes (chain state and worker sealed state). A dev network made
/// by a build with another layout cannot resume: its state lacks what newer modules keep.
const DEV_FORMAT: &str = "umbra-dev-format 4";
/// Each dev worker's operator account balance at genesis (it pays the worker's egress fees).
const DEV_OPERATOR_BALANCE: u128 = 10_000 * UNIT;

pub(crate) fn write_private(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
    }
    Ok(())
}

/// Creates a new dev network: validator keys, worker operator keys, genesis and one config per validator.
fn create(layout: &Layout, n: usize, workers: usize, args: &DevArgs) -> Result<()> {
    std::fs::create_dir_all(&layout.home).with_context(|| format!("cannot create {}", layout.home.display()))?;
    let mut allocations = vec![Allocation { address: dev_account().address(), amount: DEV_BALANCE }];
    for i in 0..workers {
        let dir = layout.worker_dir(i);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let op = Keypair::generate();
        write_private(&layout.operator_key(i), &hex::encode(op.seed()))?;
        allocations.push(Allocation { address: op.address(), amount: DEV_OPERATOR_BALANCE });
    }
    let allocated: u128 = allocations.iter().map(|a| a.amount).sum();
    let mut validators = Vec::new();
    let mut keys = Vec::new();
    for i in 0..n {
        let dir = layout.validator_dir(i);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let seed: [u8; 32] = Keypair::generate().seed();
        let key_path = dir.join("validator.key");
        write_private(&key_path, &hex::encode(seed))?;
        let signer = umbra_node::load_validator_key(&key_path)?;
        let public = umbra_node::validator_public(&signer);
        validators.push(GenesisValidator { name: format!("validator-{i}"), key: public });
        keys.push(public);
    }
    let genesis_time_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let genesis = Genesis {
        chain_id: DEV_CHAIN_ID.into(),
        genesis_time_ms,
        token: TokenInfo::default(),
        allocations,
        validators,
        params: {
            let mut p = Params::default();
            p.staking.committee_size = n as u32;
            // The unallocated supply is the rewards reserve; dev chains pay no per-block budget
            // (set one with `umbra genesis new --block-budget` for a real network).
            p.rewards.reserve = umbra_types::MAX_SUPPLY - allocated;
            p.registry.commitment_interval_blocks = 50;
            p
        },
        registry: umbra_types::RegistryGenesis { sudo: Some(dev_account().address()), ..dev_registry() },
        governance: Default::default(),
    };
    std::fs::write(layout.genesis(), genesis.to_json())
        .with_context(|| format!("cannot write {}", layout.genesis().display()))?;
    let peers: Vec<PeerConfig> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| PeerConfig { key: hex::encode(k), address: p2p_addr(args.p2p_port, i) })
        .collect();
    for i in 0..n {
        let dir = layout.validator_dir(i);
        let cfg = NodeConfig {
            name: format!("validator-{i}"),
            data_dir: dir.join("data"),
            genesis: layout.genesis(),
            key: dir.join("validator.key"),
            p2p_listen: p2p_addr(args.p2p_port, i),
            rpc_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, args.rpc_port + i as u16)),
            peers: peers.clone(),
            empty_block_interval_ms: None,
        };
        let text = toml::to_string_pretty(&cfg).context("cannot encode node config")?;
        std::fs::write(layout.config(i), text)
            .with_context(|| format!("cannot write {}", layout.config(i).display()))?;
    }
    Ok(())
}

fn p2p_addr(base: u16, i: usize) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, base + i as u16))
}

fn count_validators(layout: &Layout) -> usize {
    (0..).take_while(|i| layout.config(*i).exists()).count()
}

fn count_workers(layout: &Layout) -> usize {
    (0..).take_while(|i| layout.operator_key(*i).exists()).count()
}

/// Loads a node config file.
pub(crate) fn load_config(path: &Path) -> Result<NodeConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    let cfg: NodeConfig = toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))?;
    cfg.validate().map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))?;
    Ok(cfg)
}

/// Puts the dev account's key in the user's default keystore (so `umbra transfer` works at once).
fn install_dev_key() -> Result<(PathBuf, bool)> {
    let store = umbra_sdk::Keystore::default_location().context("cannot open the default keystore")?;
    let dev = dev_account();
    let existing = store.list().context("cannot list the keystore")?;
    match existing.iter().find(|k| k.name == DEV_KEY_NAME) {
        Some(k) if k.address != dev.address() => {
            eprintln!(
                "warning: key '{DEV_KEY_NAME}' in {} is not the dev account; leaving it as it is",
                store.dir().display()
            );
        }
        Some(_) => {}
        None => {
            store.import(DEV_KEY_NAME, dev.seed()).context("cannot add the dev key to the keystore")?;
        }
    }
    let made_default = if store.default_name().ok().flatten().is_none() {
        store.set_default(DEV_KEY_NAME).context("cannot set the default key")?;
        true
    } else {
        false
    };
    Ok((store.dir().to_path_buf(), made_default))
}

fn init_logging(home: &Path) -> Result<PathBuf> {
    let path = home.join("dev.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open log {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(path)
}

pub(crate) fn run(args: DevArgs) -> Result<()> {
    let home = match &args.home {
        Some(h) => h.clone(),
        None => default_home()?,
    };
    if args.reset && home.exists() {
        std::fs::remove_dir_all(&home).with_context(|| format!("cannot remove {}", home.display()))?;
    }
    let layout = Layout { home: home.clone() };
    let existing = count_validators(&layout);
    let mut workers = count_workers(&layout);
    let n = if existing == 0 {
        let n = args.validators.unwrap_or(1);
        if !(1..=16).contains(&n) {
            bail!("--validators must be between 1 and 16");
        }
        let non_empty = std::fs::read_dir(&home).map(|mut d| d.next().is_some()).unwrap_or(false);
        if non_empty && !layout.genesis().exists() {
            bail!("{} exists but is not a dev network; pass --reset or another --home", home.display());
        }
        workers = match args.workers {
            Some(0) => 0,
            Some(w) if w > 8 => bail!("--workers must be at most 8"),
            Some(w) => w + 1,
            None => 3,
        };
        create(&layout, n, workers, &args)?;
        std::fs::write(layout.format(), format!("{DEV_FORMAT}\n"))
            .with_context(|| format!("cannot write {}", layout.format().display()))?;
        n
    } else {
        let format = std::fs::read_to_string(layout.format()).unwrap_or_default();
        if format.trim() != DEV_FORMAT {
            bail!(
                "the dev network in {} was made by an older Umbra whose chain and worker state this build cannot \
                 resume; run `umbra dev --reset` to start a new one",
                home.display()
            );
        }
        if let Some(v) = args.validators
            && v != existing
        {
            bail!(
                "the dev network in {} has {existing} validators, not {v}; pass --reset to start a new one",
                home.display()
            );
        }
        existing
    };
    let log = init_logging(&home)?;
    let (keystore, _) = install_dev_key()?;
    let (tx, rx) = mpsc::channel();
    for i in 0..n {
        let mut cfg = load_config(&layout.config(i))?;
        if args.empty_block_ms.is_some() {
            cfg.empty_block_interval_ms = args.empty_block_ms;
        }
        let tx = tx.clone();
        let name = cfg.name.clone();
        std::thread::Builder::new().name(name.clone()).spawn(move || {
            let ready = tx.clone();
            let result = umbra_node::run_node(cfg, move |s| {
                let _ = ready.send(Ok(s));
            });
            if let Err(e) = result {
                let _ = tx.send(Err(format!("{name}: {e}")));
            }
        })?;
    }
    drop(tx);
    let mut started = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while started.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(s)) => started.push(s),
            Ok(Err(e)) => bail!("{e} (log: {})", log.display()),
            Err(_) => bail!("validators did not start within 120 s (log: {})", log.display()),
        }
    }
    started.sort_by(|a, b| a.name.cmp(&b.name));
    let worker_dirs = start_workers(&layout, workers, &format!("http://{}", started[0].rpc), &log, args.query_port)?;
    let dev = dev_account();
    println!("Umbra dev network: chain '{DEV_CHAIN_ID}', {n} validator(s), data in {}", home.display());
    println!("  TEE mode     dev (SIMULATED attestation: nothing is hardware-protected; never use on a real network)");
    for s in &started {
        println!("  {:<12} rpc http://{}  (resumed at height {})", s.name, s.rpc, s.height);
    }
    if workers > 0 {
        println!(
            "  workers      worker-0 is the gatekeeper, worker-1..{} join cluster {DEV_CLUSTER} (data in {}/worker-*)",
            workers - 1,
            home.display()
        );
    }
    println!(
        "  dev account  {} ({} UMB at genesis; key '{DEV_KEY_NAME}' in {})",
        dev.address(),
        format_amount(DEV_BALANCE),
        keystore.display()
    );
    println!("  log          {}", log.display());
    println!("Try: umbra status · umbra transfer --to <address> --amount 1.5 · Ctrl-C stops");
    let urls: Vec<String> = started.iter().map(|s| format!("http://{}", s.rpc)).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut arranged = worker_dirs.is_empty();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tick.tick() => {
                    if !arranged {
                        match arrange_workers(&urls[0], &worker_dirs).await {
                            Ok(done) => arranged = done,
                            Err(e) => tracing::warn!(target: "dev", "arranging workers: {e:#}"),
                        }
                    }
                    if !args.quiet {
                        let mut line = status_line(&urls).await;
                        if !worker_dirs.is_empty() {
                            line.push_str(&workers_line(&urls[0]).await);
                        }
                        println!("{line}");
                    }
                }
            }
        }
        println!("stopping (state is on disk; run `umbra dev` again to resume)");
    });
    // Every write the nodes make is crash-safe, so leaving now loses nothing.
    std::process::exit(0);
}

async fn status_line(urls: &[String]) -> String {
    let mut healthy = 0;
    let mut best: Option<umbra_rpc::Health> = None;
    for u in urls {
        let Ok(c) = umbra_sdk::Client::with_timeout(u.clone(), Duration::from_millis(500)) else { continue };
        if let Ok(h) = c.health().await {
            if h.healthy {
                healthy += 1;
            }
            if best.as_ref().is_none_or(|b| h.height > b.height) {
                best = Some(h);
            }
        }
    }
    let now = chrono_like_now();
    match best {
        Some(h) => format!(
            "[{now}] height {} · last block {:.1}s ago · mempool {} · {healthy}/{} validators healthy",
            h.height,
            h.since_last_block_ms as f64 / 1000.0,
            h.mempool_size,
            urls.len()
        ),
        None => format!("[{now}] no validator answers RPC yet"),
    }
}

fn chrono_like_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("{:02}:{:02}:{:02}", (secs / 3600) % 24, (secs / 60) % 60, secs % 60)
}

/// Starts the dev workers (dev TEE) in this process, each on its own thread; returns their data directories.
fn start_workers(
    layout: &Layout,
    workers: usize,
    node: &str,
    log: &Path,
    query_port: Option<u16>,
) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for i in 0..workers {
        let seed_hex = std::fs::read_to_string(layout.operator_key(i))
            .with_context(|| format!("cannot read {}", layout.operator_key(i).display()))?;
        let seed: [u8; 32] = hex::decode(seed_hex.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("{} is not a hex key", layout.operator_key(i).display()))?;
        let data = layout.worker_dir(i).join("data");
        let config = umbra_worker::host::HostConfig {
            node: node.to_string(),
            data_dir: data.clone(),
            tee: umbra_tee::TeeKind::Dev,
            operator: Keypair::from_seed(seed),
            genesis: None,
            batch_blocks: umbra_worker::host::DEFAULT_BATCH_BLOCKS,
            poll: Duration::from_millis(300),
            dev_measurement: umbra_worker::dev_measurement(),
            query_listen: query_port.map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p + i as u16))),
            // The dev network's agents may reach local servers (127.0.0.1): a dev chain, never production.
            egress: umbra_worker::agents::EgressSettings { allow_private: true, ..Default::default() },
            // The other dev workers' query endpoints: a worker assigned to a cluster later asks them for a snapshot.
            snapshot_peers: query_port
                .map(|p| {
                    (0..workers).filter(|j| *j != i).map(|j| format!("http://127.0.0.1:{}", p + j as u16)).collect()
                })
                .unwrap_or_default(),
        };
        let name = format!("worker-{i}");
        let log = log.to_path_buf();
        std::thread::Builder::new().name(name.clone()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return eprintln!("{name}: cannot start: {e}"),
            };
            if let Err(e) = rt.block_on(umbra_worker::host::run(config)) {
                tracing::error!(target: "dev", worker = %name, "worker stopped: {e}");
                eprintln!("{name} stopped: {e} (log: {})", log.display());
            }
        })?;
        dirs.push(data);
    }
    Ok(dirs)
}

/// The worker id a worker wrote to its status file, once it has.
fn worker_id(data: &Path) -> Option<umbra_types::WorkerId> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(data.join("status.json")).ok()?).ok()?;
    hex::decode(v["id"].as_str()?).ok()?.try_into().ok()
}

/// Makes worker 0 the gatekeeper and the others members of the dev cluster once they are registered, as
/// the dev chain's administrator. Returns true when everything is in place.
async fn arrange_workers(node: &str, dirs: &[PathBuf]) -> Result<bool> {
    let Some(ids) = dirs.iter().map(|d| worker_id(d)).collect::<Option<Vec<_>>>() else { return Ok(false) };
    let client = umbra_sdk::Client::with_timeout(node.to_string(), Duration::from_secs(5))?;
    let status = client.registry_status().await?;
    let registered =
        |id: &umbra_types::WorkerId| status.workers.iter().any(|w| w.id == *id && w.is_active(status.height));
    if !ids.iter().all(registered) {
        return Ok(false);
    }
    let mut calls = Vec::new();
    if !status.keys.gatekeepers.iter().any(|g| g.0 == ids[0]) {
        calls.push(umbra_types::AdminCall::AppointGatekeeper { worker: ids[0] });
    }
    if !status.clusters.iter().any(|c| c.id == DEV_CLUSTER) {
        calls.push(umbra_types::AdminCall::CreateCluster { cluster: DEV_CLUSTER });
    }
    for id in &ids[1..] {
        if !status.workers.iter().any(|w| w.id == *id && w.cluster == Some(DEV_CLUSTER)) {
            calls.push(umbra_types::AdminCall::AssignWorker { worker: *id, cluster: DEV_CLUSTER });
        }
    }
    if calls.is_empty() {
        return Ok(true);
    }
    let dev = dev_account();
    let info = client.chain_info().await?;
    for call in calls {
        let nonce = client.next_nonce(&dev.address()).await?;
        let tx = umbra_types::Transaction {
            signer: dev.address(),
            nonce,
            chain_id: info.chain_id.clone(),
            fee: 0,
            call: umbra_types::Call::Admin { call: call.clone() },
        };
        let hash = client.submit(&umbra_crypto::sign_with_min_fee(&dev, tx, &info.fees)).await?;
        let r = client.wait_for_tx(hash, Duration::from_secs(30)).await?;
        match r.receipt.and_then(|r| r.error) {
            Some(e) => tracing::warn!(target: "dev", "{} failed: {e}", call.kind()),
            None => tracing::info!(target: "dev", "{} done", call.kind()),
        }
    }
    Ok(false)
}

/// ` · workers 3/3 registered · key epoch 1 (1 gatekeeper) · cluster 1: 2/2 keyed`
async fn workers_line(node: &str) -> String {
    let Ok(client) = umbra_sdk::Client::with_timeout(node.to_string(), Duration::from_millis(500)) else {
        return String::new();
    };
    let Ok(s) = client.registry_status().await else { return String::new() };
    let active = s.workers.iter().filter(|w| w.is_active(s.height)).count();
    let members: Vec<_> = s.workers.iter().filter(|w| w.cluster == Some(DEV_CLUSTER)).collect();
    let keyed = members.iter().filter(|w| s.keys.key_epoch > 0 && w.key_epoch >= s.keys.key_epoch).count();
    format!(
        " · workers {active} registered (simulated TEE) · key epoch {} ({} gatekeeper{}) · cluster {DEV_CLUSTER}: {keyed}/{} keyed",
        s.keys.key_epoch,
        s.keys.gatekeepers.len(),
        if s.keys.gatekeepers.len() == 1 { "" } else { "s" },
        members.len()
    )
}
