//! `umbra genesis new`: a genesis file for validators made with `umbra node init`.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use umbra_node::PeerConfig;
use umbra_types::{Address, Allocation, Genesis, GenesisValidator, Params, TokenInfo, parse_amount};

/// `umbra genesis ...`
#[derive(Args, Debug)]
pub(crate) struct GenesisArgs {
    #[command(subcommand)]
    cmd: GenesisCmd,
}

#[derive(Subcommand, Debug)]
enum GenesisCmd {
    /// Write a genesis file naming the given nodes as validators, and point their configs at it
    /// and at each other.
    New(NewArgs),
}

#[derive(Args, Debug)]
struct NewArgs {
    /// The chain id (lowercase letters, digits, dashes).
    #[arg(long)]
    chain_id: String,
    /// A node directory made by `umbra node init` (repeat for each validator).
    #[arg(long = "node", required = true)]
    nodes: Vec<PathBuf>,
    /// A node directory made by `umbra node init` that follows the chain without voting until a
    /// committee includes it (repeatable); it is added to every config's peers.
    #[arg(long = "follower")]
    followers: Vec<PathBuf>,
    /// Blocks per epoch (committee changes happen at epoch boundaries).
    #[arg(long)]
    epoch_length: Option<u64>,
    /// Committee size K: the top K candidates by stake form each epoch's committee [default: the number of --node].
    #[arg(long)]
    committee_size: Option<u32>,
    /// Minimum self-bond of a new candidate, in whole tokens [default: 1000].
    #[arg(long)]
    min_self_bond: Option<String>,
    /// Tokens set aside for rewards, in whole tokens [default: everything not allocated].
    #[arg(long)]
    rewards_reserve: Option<String>,
    /// Rewards budget per block, in whole tokens [default: 0]; validators get
    /// `staking.validator_reward_share_bps` of it.
    #[arg(long)]
    block_budget: Option<String>,
    /// An initial balance, ADDRESS=AMOUNT in whole tokens (repeatable).
    #[arg(long = "alloc")]
    allocs: Vec<String>,
    /// Accept simulated (dev) attestation from the well-known dev attestation key, and allow the dev
    /// workers' measurement: never on a production chain.
    #[arg(long)]
    dev_tee: bool,
    /// A measurement (64 hex digits) for the initial allow-list (repeatable).
    #[arg(long = "allow-measurement")]
    measurements: Vec<String>,
    /// The dev chain's registry administrator (needs --dev-tee; governance replaces it on real networks).
    #[arg(long)]
    sudo: Option<String>,
    /// Blocks between a worker's rollback commitments [default: 100].
    #[arg(long)]
    commitment_interval: Option<u64>,
    /// Rotate the master key by itself every N blocks [default: 0, only when governance starts one].
    #[arg(long)]
    rotation_interval: Option<u64>,
    /// Governance: blocks after a proposal before votes count [default: 600].
    #[arg(long)]
    gov_preparation_period: Option<u64>,
    /// Governance: blocks votes are accepted for [default: 6000].
    #[arg(long)]
    gov_voting_period: Option<u64>,
    /// Governance: blocks from the end of voting to enactment, and the conviction lock unit [default: 600].
    #[arg(long)]
    gov_enactment_delay: Option<u64>,
    /// Governance: turnout needed, in basis points of the tokens issued [default: 1000].
    #[arg(long)]
    gov_quorum_bps: Option<u16>,
    /// Governance: the smallest proposal deposit, in whole tokens [default: 100].
    #[arg(long)]
    gov_min_deposit: Option<String>,
    /// A technical committee member (address), who may fast-track security proposals (repeatable).
    #[arg(long = "technical-committee")]
    technical_committee: Vec<String>,
    /// Economics: expected blocks between two heartbeat challenges of a computing worker [default: 0,
    /// derived from --heartbeats-per-hour and --target-block-ms].
    #[arg(long)]
    heartbeat_interval: Option<u64>,
    /// Economics: heartbeats expected of each computing worker per hour [default: 6].
    #[arg(long)]
    heartbeats_per_hour: Option<u32>,
    /// Economics: the target block time in milliseconds the heartbeat rate is scaled by [default: 1000].
    #[arg(long)]
    target_block_ms: Option<u64>,
    /// Economics: blocks before unstaked compute stake is paid back [default: 1000].
    #[arg(long)]
    compute_unstake_blocks: Option<u64>,
    /// Economics: blocks a worker has to answer a heartbeat challenge [default: 10].
    #[arg(long)]
    heartbeat_window: Option<u64>,
    /// Economics: blocks a stopped worker's stake cools down before it returns to its pool [default: 1000].
    #[arg(long)]
    cooldown_blocks: Option<u64>,
    /// Economics: the minimum stake of any computing worker, in whole tokens [default: 100].
    #[arg(long)]
    min_worker_stake: Option<String>,
    /// Where to write the genesis file.
    #[arg(long)]
    out: PathBuf,
}

pub(crate) fn run(args: GenesisArgs) -> Result<()> {
    let GenesisCmd::New(a) = args.cmd;
    let mut configs = Vec::new();
    for dir in a.nodes.iter().chain(&a.followers) {
        let path = dir.join("node.toml");
        let cfg = crate::dev::load_config(&path)?;
        let key = umbra_node::validator_public(&umbra_node::load_validator_key(&cfg.key)?);
        configs.push((path, cfg, key));
    }
    let validators = a.nodes.len();
    let mut allocations = Vec::new();
    for spec in &a.allocs {
        let Some((addr, amount)) = spec.split_once('=') else { bail!("--alloc '{spec}' must be ADDRESS=AMOUNT") };
        let address: Address = addr.trim().parse()?;
        allocations.push(Allocation { address, amount: parse_amount(amount)? });
    }
    let genesis = Genesis {
        chain_id: a.chain_id.clone(),
        genesis_time_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        token: TokenInfo::default(),
        allocations: allocations.clone(),
        validators: configs[..validators]
            .iter()
            .map(|(_, c, k)| GenesisValidator { name: c.name.clone(), key: *k })
            .collect(),
        params: {
            let mut p = Params::default();
            if let Some(l) = a.epoch_length {
                p.epoch_length = l;
                p.staking.unbonding_period = p.staking.unbonding_period.max(l);
            }
            p.staking.committee_size = a.committee_size.unwrap_or(validators as u32);
            if let Some(b) = &a.min_self_bond {
                p.staking.min_self_bond = parse_amount(b)?;
            }
            let allocated: u128 = allocations.iter().map(|a| a.amount).sum();
            p.rewards.reserve = match &a.rewards_reserve {
                Some(r) => parse_amount(r)?,
                None => umbra_types::MAX_SUPPLY.saturating_sub(allocated),
            };
            if let Some(b) = &a.block_budget {
                p.rewards.block_budget = parse_amount(b)?;
            }
            p
        },
        registry: {
            let mut r = if a.dev_tee { crate::dev::dev_registry() } else { umbra_types::RegistryGenesis::default() };
            for m in &a.measurements {
                r.policy.measurements.insert(
                    umbra_tee::Measurement::from_hex(m.trim())
                        .map_err(|e| anyhow::anyhow!("--allow-measurement '{m}': {e}"))?,
                );
            }
            if let Some(s) = &a.sudo {
                r.sudo = Some(s.trim().parse().with_context(|| format!("--sudo '{s}'"))?);
            }
            r
        },
        governance: Default::default(),
    };
    let mut genesis = genesis;
    if let Some(n) = a.commitment_interval {
        genesis.params.registry.commitment_interval_blocks = n;
    }
    if let Some(n) = a.rotation_interval {
        genesis.params.registry.rotation_interval_blocks = n;
    }
    let e = &mut genesis.params.economics;
    if let Some(n) = a.heartbeat_interval {
        e.heartbeat_interval_blocks = n;
    }
    if let Some(n) = a.heartbeat_window {
        e.heartbeat_window_blocks = n;
    }
    if let Some(n) = a.heartbeats_per_hour {
        e.heartbeats_per_hour = n;
    }
    if let Some(n) = a.target_block_ms {
        e.target_block_ms = n;
    }
    if let Some(n) = a.compute_unstake_blocks {
        e.compute_unstake_blocks = n;
    }
    if let Some(n) = a.cooldown_blocks {
        e.cooldown_blocks = n;
    }
    if let Some(s) = &a.min_worker_stake {
        e.min_stake_base = parse_amount(s)?;
    }
    let g = &mut genesis.params.governance;
    if let Some(n) = a.gov_preparation_period {
        g.preparation_period = n;
    }
    if let Some(n) = a.gov_voting_period {
        g.voting_period = n;
        g.emergency_voting_period = g.emergency_voting_period.min(n);
    }
    if let Some(n) = a.gov_enactment_delay {
        g.enactment_delay = n;
    }
    if let Some(n) = a.gov_quorum_bps {
        g.quorum_bps = n;
    }
    if let Some(d) = &a.gov_min_deposit {
        g.min_deposit = parse_amount(d)?;
    }
    for m in &a.technical_committee {
        let member: Address = m.trim().parse().with_context(|| format!("--technical-committee '{m}'"))?;
        genesis.governance.technical_committee.push(member);
    }
    genesis.validate()?;
    if let Some(parent) = a.out.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    std::fs::write(&a.out, genesis.to_json()).with_context(|| format!("cannot write {}", a.out.display()))?;
    let out = a.out.canonicalize().with_context(|| format!("cannot resolve {}", a.out.display()))?;
    let peers: Vec<PeerConfig> =
        configs.iter().map(|(_, c, k)| PeerConfig { key: hex::encode(k), address: c.p2p_listen }).collect();
    for (path, mut cfg, _) in configs {
        cfg.genesis = out.clone();
        cfg.peers = peers.clone();
        std::fs::write(&path, toml::to_string_pretty(&cfg)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!(
        "genesis for chain '{}' with {validators} validator(s) and {} follower(s) written to {}",
        a.chain_id,
        peers.len() - validators,
        out.display()
    );
    Ok(())
}
