//! `umbra node`: one validator process from a TOML config (owned by the node engineer).
use clap::Args;

/// Arguments of `umbra node`.
#[derive(Args, Debug)]
pub(crate) struct NodeArgs {
    /// The node's TOML config.
    #[arg(long)]
    pub(crate) config: std::path::PathBuf,
}

pub(crate) fn run(_args: NodeArgs) -> anyhow::Result<()> {
    anyhow::bail!("umbra node is being wired up")
}
