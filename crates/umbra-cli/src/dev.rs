//! `umbra dev`: the whole local network in one process (owned by the node engineer).
use clap::Args;

/// Arguments of `umbra dev`.
#[derive(Args, Debug)]
pub(crate) struct DevArgs {
    /// Where the network keeps its data.
    #[arg(long, env = "UMBRA_DEV_HOME")]
    pub(crate) home: Option<std::path::PathBuf>,
    /// Number of validators.
    #[arg(long, default_value_t = 1)]
    pub(crate) validators: usize,
    /// Wipe the data directory first.
    #[arg(long)]
    pub(crate) reset: bool,
}

pub(crate) fn run(_args: DevArgs) -> anyhow::Result<()> {
    anyhow::bail!("umbra dev is being wired up")
}
