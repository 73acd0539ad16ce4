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
}

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

/// Creates a new dev network: validator keys, genesis and one config per validator.
fn create(layout: &Layout, n: usize, args: &DevArgs) -> Result<()> {
    std::fs::create_dir_all(&layout.home).with_context(|| format!("cannot create {}", layout.home.display()))?;
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
        allocations: vec![Allocation { address: dev_account().address(), amount: DEV_BALANCE }],
        validators,
        params: {
            let mut p = Params::default();
            p.staking.committee_size = n as u32;
            // The unallocated supply is the rewards reserve; dev chains pay no per-block budget
            // (set one with `umbra genesis new --block-budget` for a real network).
            p.rewards.reserve = umbra_types::MAX_SUPPLY - DEV_BALANCE;
            p
        },
        registry: umbra_types::RegistryGenesis {
            policy: umbra_tee::Policy { accepted_kinds: [umbra_tee::TeeKind::Dev].into(), ..Default::default() },
            ..Default::default()
        },
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
    let n = if existing == 0 {
        let n = args.validators.unwrap_or(1);
        if !(1..=16).contains(&n) {
            bail!("--validators must be between 1 and 16");
        }
        let non_empty = std::fs::read_dir(&home).map(|mut d| d.next().is_some()).unwrap_or(false);
        if non_empty && !layout.genesis().exists() {
            bail!("{} exists but is not a dev network; pass --reset or another --home", home.display());
        }
        create(&layout, n, &args)?;
        n
    } else {
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
        let cfg = load_config(&layout.config(i))?;
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
    let dev = dev_account();
    println!("Umbra dev network: chain '{DEV_CHAIN_ID}', {n} validator(s), data in {}", home.display());
    println!("  TEE mode     dev (simulated attestation; never use on a real network)");
    for s in &started {
        println!("  {:<12} rpc http://{}  (resumed at height {})", s.name, s.rpc, s.height);
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
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tick.tick() => {
                    if !args.quiet {
                        println!("{}", status_line(&urls).await);
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
