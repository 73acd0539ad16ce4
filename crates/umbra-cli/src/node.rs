//! `umbra node`: one validator process from a TOML config, and `umbra node init` to make one.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use umbra_node::NodeConfig;

/// Arguments of `umbra node`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct NodeArgs {
    #[command(subcommand)]
    cmd: Option<NodeCmd>,
    /// Run the node described by this TOML config (`umbra node init` writes one).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum NodeCmd {
    /// Create a validator's key and config in a new directory.
    Init(InitArgs),
}

#[derive(Args, Debug)]
struct InitArgs {
    /// The node's directory (created; must not exist or be empty).
    #[arg(long)]
    dir: PathBuf,
    /// The node's name [default: the directory's name].
    #[arg(long)]
    name: Option<String>,
    /// p2p listen address.
    #[arg(long, default_value = "127.0.0.1:30333")]
    p2p_listen: SocketAddr,
    /// JSON-RPC listen address.
    #[arg(long, default_value = "127.0.0.1:9944")]
    rpc_listen: SocketAddr,
    /// The genesis file the node will run [default: DIR/../genesis.json].
    #[arg(long)]
    genesis: Option<PathBuf>,
}

pub(crate) fn run(ctx: &crate::Ctx, args: NodeArgs) -> Result<()> {
    if let Some(NodeCmd::Init(init)) = args.cmd {
        return run_init(ctx, init);
    }
    let Some(config) = args.config else {
        bail!("pass --config FILE to run a node, or `umbra node init --home DIR` to make one");
    };
    let cfg = crate::dev::load_config(&config)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    umbra_node::run_node(cfg, |s| {
        println!("{} running: rpc http://{} (resumed at height {})", s.name, s.rpc, s.height);
    })?;
    Ok(())
}

fn run_init(ctx: &crate::Ctx, args: InitArgs) -> Result<()> {
    let home = args.dir;
    if home.exists() && std::fs::read_dir(&home).map(|mut d| d.next().is_some()).unwrap_or(false) {
        bail!("{} already exists and is not empty", home.display());
    }
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let home = home.canonicalize().with_context(|| format!("cannot resolve {}", home.display()))?;
    let name = match args.name {
        Some(n) => n,
        None => home.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "node".into()),
    };
    let key_path = home.join("validator.key");
    crate::dev::write_private(&key_path, &hex::encode(umbra_crypto::Keypair::generate().seed()))?;
    let public = umbra_node::validator_public(&umbra_node::load_validator_key(&key_path)?);
    let pub_path = home.join("validator.pub");
    std::fs::write(&pub_path, format!("{}\n", hex::encode(public)))
        .with_context(|| format!("cannot write {}", pub_path.display()))?;
    let genesis = args.genesis.unwrap_or_else(|| home.parent().map(|p| p.join("genesis.json")).unwrap_or_default());
    let cfg = NodeConfig {
        name: name.clone(),
        data_dir: home.join("data"),
        genesis,
        key: key_path,
        p2p_listen: args.p2p_listen,
        rpc_listen: args.rpc_listen,
        peers: vec![],
        empty_block_interval_ms: None,
    };
    let path = home.join("node.toml");
    std::fs::write(&path, toml::to_string_pretty(&cfg)?).with_context(|| format!("cannot write {}", path.display()))?;
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({ "name": name, "key": hex::encode(public), "config": path, "p2p": args.p2p_listen, "rpc": args.rpc_listen })
        );
    } else {
        println!("node        {name}");
        println!("key         {}", hex::encode(public));
        println!("config      {}", path.display());
        println!(
            "next        umbra genesis new --chain-id ID --node {} [--node OTHER ...] --out GENESIS",
            home.display()
        );
    }
    Ok(())
}
