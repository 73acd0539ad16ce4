//! The `umbra` command: keys, transfers and queries against a node, and the node and local dev network themselves.
//!
//! This binary only parses arguments and wires them to the libraries: client commands call
//! `umbra-sdk`, `umbra dev` and `umbra node` call the node's modules. Every failure ends the
//! process with exit code 1 and one line, `error: <reason>`, on stderr; `--json` makes every
//! client command print exactly one JSON value on stdout.

mod attest;
mod bench;
mod bench_agents;
mod bench_contracts;
mod cmds;
mod dev;
mod genesis;
mod keys;
mod node;
mod sim;
mod typescript;

use clap::{ColorChoice, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// The node URL used when neither `--rpc` nor `UMBRA_RPC` is given: the local dev network.
const DEFAULT_RPC: &str = "http://127.0.0.1:9944";

#[derive(Parser, Debug)]
#[command(name = "umbra", version, about = "Umbra: keys, transfers, queries, nodes and the local dev network.")]
#[command(color = ColorChoice::Never, propagate_version = true)]
struct Cli {
    /// JSON-RPC URL of the node to talk to.
    #[arg(long, global = true, env = "UMBRA_RPC", default_value = DEFAULT_RPC, value_name = "URL")]
    rpc: String,
    /// Print machine-readable output: one JSON value on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Umbra's home directory; keys live in HOME/keys [default: ~/.umbra].
    #[arg(long, global = true, env = "UMBRA_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create, list and show local account keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Send tokens and wait until the transfer is final.
    Transfer(cmds::transfer::TransferArgs),
    /// Show an account's balance and nonce, checked against a state proof.
    Account(cmds::account::AccountArgs),
    /// Show a block (the latest finalized one by default).
    Block(cmds::block::BlockArgs),
    /// Show the chain, its latest finalized height, validators and the node's health.
    Status,
    /// Run the whole network locally, in the foreground.
    Dev(dev::DevArgs),
    /// Run a node from its config, or make one (`umbra node init`).
    Node(node::NodeArgs),
    /// Validator staking: bond, nominate, unbond, withdraw, evidence, committee.
    Staking(cmds::staking::StakingArgs),
    /// Create a genesis file for validators made with `umbra node init`.
    Genesis(Box<genesis::GenesisArgs>),
    /// Measure the network: sustained transfers/s and finality latency.
    Bench(bench::BenchArgs),
    /// Verify TEE attestation quotes offline (SGX and TDX DCAP, dev).
    Attest(attest::AttestArgs),
    /// Run a TEE worker: verify the chain, hold keys, answer the registry (`--tee dev` is simulated).
    Worker(cmds::worker::WorkerArgs),
    /// Show registered TEE workers: attestation, cluster, gatekeeper role, last commitment.
    WorkerInfo(cmds::registry::WorkerInfoArgs),
    /// Gatekeepers and master key epochs: status, appoint, remove, rotate.
    Gk(cmds::registry::GkArgs),
    /// Worker clusters: list, create, assign.
    Cluster(cmds::registry::ClusterArgs),
    /// The attestation policy: show it, allow or withdraw measurements, store collateral.
    Registry(cmds::registry::RegistryArgs),
    /// On-chain governance: propose, list, show, vote, delegate, unlock, fast-track.
    Gov(cmds::gov::GovArgs),
    /// The treasury's balance and the payments governance made from it.
    Treasury,
    /// Stake pools: create, add workers, contribute, withdraw, start and stop computing, show, list.
    Pool(cmds::econ::PoolArgs),
    /// Vaults (pools of pools): create, contribute, withdraw, allocate, show.
    Vault(cmds::econ::VaultArgs),
    /// Compute economics: the rewards budget.
    Econ(cmds::econ::EconArgs),
    /// Confidential contracts: upload, instantiate, call (sealed), query (through a worker), info.
    Contract(cmds::contract::ContractArgs),
    /// AI agents: deploy, call (sealed or plain), secrets, logs, pause, resume, upgrade, policy, transfer, fund, info.
    Agent(cmds::agent::AgentArgs),
    /// Computing workers: V, P, responsive, rewards so far (`compute status [WORKER]`).
    Compute(cmds::econ::ComputeArgs),
    /// Stake tokens to a contract's cluster on behalf of the contract (weighted query scheduling).
    StakeCompute(cmds::econ::StakeComputeArgs),
    /// Multisig accounts: address, propose (any call, e.g. agent-pause), approve, cancel, pending.
    Multisig(cmds::multisig::MultisigArgs),
}

/// The global options every client command sees.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// Node URL.
    pub(crate) rpc: String,
    /// Machine output.
    pub(crate) json: bool,
    /// Home directory override.
    pub(crate) home: Option<PathBuf>,
}

fn main() -> ExitCode {
    install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let ctx = Ctx { rpc: cli.rpc, json: cli.json, home: cli.home };
    let result = match cli.command {
        Command::Keys(cmd) => keys::run(&ctx, cmd),
        Command::Transfer(args) => cmds::transfer::run(&ctx, args),
        Command::Account(args) => cmds::account::run(&ctx, args),
        Command::Block(args) => cmds::block::run(&ctx, args),
        Command::Status => cmds::status::run(&ctx),
        Command::Dev(args) => dev::run(args),
        Command::Node(args) => node::run(&ctx, args),
        Command::Genesis(args) => genesis::run(*args),
        Command::Staking(args) => cmds::staking::run(&ctx, args),
        Command::Bench(args) => bench::run(&ctx, args),
        Command::Attest(args) => attest::run(&ctx, args),
        Command::Worker(args) => cmds::worker::run(&ctx, args),
        Command::WorkerInfo(args) => cmds::registry::worker_info(&ctx, args),
        Command::Gk(args) => cmds::registry::gk(&ctx, args),
        Command::Cluster(args) => cmds::registry::cluster(&ctx, args),
        Command::Registry(args) => cmds::registry::registry(&ctx, args),
        Command::Gov(args) => cmds::gov::run(&ctx, args),
        Command::Treasury => cmds::gov::treasury(&ctx),
        Command::Pool(args) => cmds::econ::pool(&ctx, args),
        Command::Vault(args) => cmds::econ::vault(&ctx, args),
        Command::Econ(args) => cmds::econ::econ(&ctx, args),
        Command::Contract(args) => cmds::contract::run(&ctx, args),
        Command::Agent(args) => cmds::agent::run(&ctx, args),
        Command::Compute(args) => cmds::econ::compute(&ctx, args),
        Command::StakeCompute(args) => cmds::econ::stake_compute(&ctx, args),
        Command::Multisig(args) => cmds::multisig::run(&ctx, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, joined with ": ". A cause whose text the previous message
/// already contains is skipped, so errors that print their source are not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = collapse(&cause.to_string());
        if text.is_empty() || parts.last().is_some_and(|prev| prev.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Help and version go to stdout with exit code 0; every other argument error becomes one line
/// and exit code 1, like any other failure.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let rendered = e.render().to_string();
    // The command path from the usage line ("umbra keys"), to point at its help.
    let command = rendered
        .lines()
        .find_map(|l| l.strip_prefix("Usage: "))
        .map(|u| u.split_whitespace().take_while(|w| !w.starts_with(['[', '<', '-'])).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "umbra".to_string());
    // The message is everything before the first blank line (tips and usage follow it).
    let head = rendered.split("\n\n").next().unwrap_or_default();
    let text = match e.kind() {
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => "a subcommand is required".to_string(),
        _ => collapse(head.strip_prefix("error:").unwrap_or(head)),
    };
    let line = format!("{text} (see '{command} --help')");
    eprintln!("error: {line}");
    ExitCode::FAILURE
}

/// A panic is a bug, but the user still gets one line (set `RUST_BACKTRACE` for the full report).
fn install_panic_hook() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("error: internal error (a bug): {}{at}", collapse(&msg));
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn causes_are_joined_on_one_line_without_repeats() {
        let e = anyhow::anyhow!("inner\nproblem").context("outer: inner problem").context("doing it");
        assert_eq!(one_line(&e), "doing it: outer: inner problem");
    }
}
