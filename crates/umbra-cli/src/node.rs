//! `umbra node`: one validator process from a TOML config.

use anyhow::Result;
use clap::Args;

/// Arguments of `umbra node`.
#[derive(Args, Debug)]
pub(crate) struct NodeArgs {
    /// The node's TOML config (as written by `umbra dev` under validator-N/node.toml).
    #[arg(long)]
    pub(crate) config: std::path::PathBuf,
}

pub(crate) fn run(args: NodeArgs) -> Result<()> {
    let cfg = crate::dev::load_config(&args.config)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    umbra_node::run_node(cfg, |s| {
        println!("{} running: rpc http://{} (resumed at height {})", s.name, s.rpc, s.height);
    })?;
    Ok(())
}
