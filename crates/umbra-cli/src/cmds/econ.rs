//! `umbra pool ...`, `umbra vault ...`, `umbra compute status`, `umbra stake-compute` and `umbra econ
//! budget|stakes`: compute economics from the command line.
//!
//! Transactions (create, contribute, withdraw, start and stop computing, allocate) are signed with
//! `--from` (default: the default key) and wait until final; queries print what the node reports
//! (`econ_*` RPC methods), or one JSON value with `--json`. Amounts and shares are written in whole
//! units (`12.5`): a pool's first contribution mints one share per token unit, so share counts read
//! like token amounts.

use super::registry::parse_worker_id;
use super::{block_on, parse_amount_arg, print_rows, resolve_address, send_call, show_amount};
use crate::Ctx;
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use umbra_rpc::{EconPoolInfo, EconTarget, EconWorkerInfo};
use umbra_types::{Address, Amount, Call, format_amount};

/// `umbra pool ...`
#[derive(Args, Debug)]
pub(crate) struct PoolArgs {
    #[command(subcommand)]
    cmd: PoolCmd,
    /// The signing key's name in the keystore [default: the default key].
    #[arg(long, global = true)]
    from: Option<String>,
}

#[derive(Subcommand, Debug)]
enum PoolCmd {
    /// Create a stake pool owned by the signer.
    Create {
        /// The owner's cut of the pool's rewards, in basis points (100 = 1%).
        #[arg(long, default_value_t = 0)]
        commission_bps: u16,
        /// The most value contributions may bring the pool to, in whole tokens [default: no cap].
        #[arg(long, value_parser = parse_amount_arg)]
        cap: Option<Amount>,
        /// An account allowed to contribute (repeatable; without any: anyone).
        #[arg(long = "allow")]
        allow: Vec<String>,
    },
    /// Add a registered worker the signer operates to the signer's pool.
    AddWorker {
        /// The pool.
        pool: u64,
        /// The worker id (64 hex digits).
        worker: String,
    },
    /// Contribute tokens for shares at the current share price.
    Contribute {
        /// The pool.
        pool: u64,
        /// Tokens, in whole tokens.
        #[arg(value_parser = parse_amount_arg)]
        amount: Amount,
    },
    /// Withdraw shares: paid now from free tokens, or queued until stake frees.
    Withdraw {
        /// The pool.
        pool: u64,
        /// Shares, in whole shares.
        #[arg(long, value_parser = parse_amount_arg, required_unless_present = "all")]
        shares: Option<u128>,
        /// Every share the signer holds and has not queued yet.
        #[arg(long, conflicts_with = "shares")]
        all: bool,
    },
    /// Start one of the pool's workers computing with a stake from the pool's free tokens (pool owner).
    Start {
        /// The worker id.
        worker: String,
        /// The stake, in whole tokens.
        #[arg(long, value_parser = parse_amount_arg)]
        stake: Amount,
    },
    /// Stop a worker; its stake returns to the pool after the cool-down (pool owner).
    Stop {
        /// The worker id.
        worker: String,
    },
    /// Remove a worker without a session from the pool, freeing its slot: the owner for any idle worker,
    /// anyone for a slashed, revoked or expired one. Its stake already returned when its cool-down ended.
    Reclaim {
        /// The pool.
        pool: u64,
        /// The worker id.
        worker: String,
    },
    /// One pool: value, shares, share price, workers with their sessions, the withdrawal queue.
    #[command(visible_alias = "info")]
    Show {
        /// The pool.
        pool: u64,
        /// Also show this account's (address or key name) shares and their value.
        #[arg(long)]
        holder: Option<String>,
    },
    /// Every pool.
    List,
}

/// `umbra vault ...`
#[derive(Args, Debug)]
pub(crate) struct VaultArgs {
    #[command(subcommand)]
    cmd: VaultCmd,
    /// The signing key's name in the keystore [default: the default key].
    #[arg(long, global = true)]
    from: Option<String>,
}

#[derive(Subcommand, Debug)]
enum VaultCmd {
    /// Create a vault (a pool of pools) owned by the signer.
    Create {
        /// Put free tokens into the best open pool automatically every vault period.
        #[arg(long)]
        auto: bool,
    },
    /// Contribute tokens to a vault for shares.
    Contribute {
        /// The vault.
        vault: u64,
        /// Tokens, in whole tokens.
        #[arg(value_parser = parse_amount_arg)]
        amount: Amount,
    },
    /// Withdraw vault shares; what the free tokens cannot pay is withdrawn from its pools.
    Withdraw {
        /// The vault.
        vault: u64,
        /// Shares, in whole shares.
        #[arg(value_parser = parse_amount_arg)]
        shares: u128,
    },
    /// Put free tokens of the vault into a pool (vault owner); `--deallocate` takes pool shares back.
    Allocate {
        /// The vault.
        vault: u64,
        /// The pool.
        pool: u64,
        /// Tokens to allocate (or, with `--deallocate`, pool shares to take back), in whole units.
        #[arg(value_parser = parse_amount_arg)]
        amount: Amount,
        /// Withdraw `amount` pool shares back into the vault instead.
        #[arg(long)]
        deallocate: bool,
    },
    /// Switch the vault between allocation by hand (`manual`) and automatic allocation (`auto`) (owner).
    Mode {
        /// The vault.
        vault: u64,
        /// `manual` or `auto`.
        #[arg(value_parser = ["manual", "auto"])]
        mode: String,
    },
    /// One vault: value, shares, free tokens and its pool allocations.
    #[command(visible_alias = "info")]
    Show {
        /// The vault.
        vault: u64,
        /// Also show this account's (address or key name) shares and their value.
        #[arg(long)]
        holder: Option<String>,
    },
}

/// `umbra compute ...`
#[derive(Args, Debug)]
pub(crate) struct ComputeArgs {
    #[command(subcommand)]
    cmd: ComputeCmd,
}

#[derive(Subcommand, Debug)]
enum ComputeCmd {
    /// One worker's (or every worker with a session's) V, P, responsiveness and rewards so far.
    Status {
        /// The worker id [default: every worker with a session].
        worker: Option<String>,
    },
}

/// `umbra stake-compute CONTRACT AMOUNT`
#[derive(Args, Debug)]
pub(crate) struct StakeComputeArgs {
    /// The contract id (64 hex digits).
    contract: String,
    /// Tokens, in whole tokens.
    #[arg(value_parser = parse_amount_arg)]
    amount: Amount,
    /// Take back `amount` of the signer's compute stake instead (paid back after the unstake delay).
    #[arg(long)]
    unstake: bool,
    /// The signing key's name in the keystore [default: the default key].
    #[arg(long)]
    from: Option<String>,
}

/// `umbra econ ...`
#[derive(Args, Debug)]
pub(crate) struct EconArgs {
    #[command(subcommand)]
    cmd: EconCmd,
}

#[derive(Subcommand, Debug)]
enum EconCmd {
    /// The current per-block rewards budget, its validator and compute parts, and the reserve left.
    Budget,
    /// Compute stake on a contract (stake-to-compute), or with `--cluster` every staked contract of a cluster.
    Stakes {
        /// The contract id (64 hex digits).
        #[arg(required_unless_present = "cluster")]
        contract: Option<String>,
        /// A cluster instead.
        #[arg(long, conflicts_with = "contract")]
        cluster: Option<u32>,
    },
}

fn addresses(ctx: &Ctx, specs: &[String]) -> Result<Vec<Address>> {
    let ks = ctx.keystore()?;
    specs.iter().map(|s| resolve_address(&ks, s).map(|(a, _)| a)).collect()
}

/// `umbra pool ...`
pub(crate) fn pool(ctx: &Ctx, args: PoolArgs) -> Result<()> {
    block_on(async {
        let call = match args.cmd {
            PoolCmd::Create { commission_bps, cap, allow } => {
                if commission_bps > 10_000 {
                    bail!("--commission-bps must be at most 10000");
                }
                let allow = if allow.is_empty() { None } else { Some(addresses(ctx, &allow)?) };
                Call::CreatePool { commission_bps, cap, allow }
            }
            PoolCmd::AddWorker { pool, worker } => Call::PoolAddWorker { pool, worker: parse_worker_id(&worker)? },
            PoolCmd::Contribute { pool, amount } => Call::PoolContribute { pool, amount },
            PoolCmd::Withdraw { pool, shares, all } => {
                let shares = match (shares, all) {
                    (Some(s), _) => s,
                    (None, _) => {
                        let store = ctx.keystore()?;
                        let who = match &args.from {
                            Some(n) => store.get(n)?.address(),
                            None => store.default_key()?.1.address(),
                        };
                        let p = ctx.client()?.econ_position(EconTarget::Pool(pool), &who).await?;
                        let free = p.shares.saturating_sub(p.queued);
                        if free == 0 {
                            bail!("{who} holds no unqueued shares of pool {pool}");
                        }
                        free
                    }
                };
                Call::PoolWithdraw { pool, shares }
            }
            PoolCmd::Start { worker, stake } => Call::StartComputing { worker: parse_worker_id(&worker)?, stake },
            PoolCmd::Stop { worker } => Call::StopComputing { worker: parse_worker_id(&worker)? },
            PoolCmd::Reclaim { pool, worker } => Call::PoolReclaim { pool, worker: parse_worker_id(&worker)? },
            PoolCmd::Show { pool, holder } => return show_pool(ctx, pool, holder).await,
            PoolCmd::List => return list_pools(ctx).await,
        };
        send_call(ctx, args.from, call).await.map(|_| ())
    })?
}

/// `umbra vault ...`
pub(crate) fn vault(ctx: &Ctx, args: VaultArgs) -> Result<()> {
    block_on(async {
        let call = match args.cmd {
            VaultCmd::Create { auto } => Call::CreateVault { auto },
            VaultCmd::Contribute { vault, amount } => Call::VaultContribute { vault, amount },
            VaultCmd::Withdraw { vault, shares } => Call::VaultWithdraw { vault, shares },
            VaultCmd::Allocate { vault, pool, amount, deallocate: false } => {
                Call::VaultAllocate { vault, pool, amount }
            }
            VaultCmd::Allocate { vault, pool, amount, deallocate: true } => {
                Call::VaultDeallocate { vault, pool, shares: amount }
            }
            VaultCmd::Mode { vault, mode } => Call::VaultSetMode { vault, auto: mode == "auto" },
            VaultCmd::Show { vault, holder } => return show_vault(ctx, vault, holder).await,
        };
        send_call(ctx, args.from, call).await.map(|_| ())
    })?
}

/// `umbra econ ...`
pub(crate) fn econ(ctx: &Ctx, args: EconArgs) -> Result<()> {
    block_on(async {
        if let EconCmd::Stakes { contract, cluster } = args.cmd {
            return show_stakes(ctx, contract, cluster).await;
        }
        let b = ctx.client()?.econ_budget().await?;
        if ctx.json {
            return ctx.print_json(&b);
        }
        print_rows(&[
            ("height", b.height.to_string()),
            ("budget per block", show_amount(b.budget)),
            ("  to validators", show_amount(b.validator_part)),
            ("  to compute", show_amount(b.compute_part)),
            ("reserve left", show_amount(b.reserve_left)),
            ("escrow account", b.escrow.to_string()),
            ("sessions", b.sessions.len().to_string()),
        ]);
        Ok(())
    })?
}

async fn holder_position(ctx: &Ctx, target: EconTarget, holder: Option<String>) -> Result<Option<serde_json::Value>> {
    let Some(h) = holder else { return Ok(None) };
    let (who, _) = resolve_address(&ctx.keystore()?, &h)?;
    let p = ctx.client()?.econ_position(target, &who).await?;
    Ok(Some(serde_json::to_value(p)?))
}

fn json_amount(v: &serde_json::Value) -> String {
    v.as_str().and_then(|s| s.parse::<u128>().ok()).map(show_amount).unwrap_or_default()
}

async fn show_pool(ctx: &Ctx, id: u64, holder: Option<String>) -> Result<()> {
    let client = ctx.client()?;
    let info = client.econ_pool(id).await?;
    let mut workers = Vec::new();
    for w in &info.pool.workers {
        workers.push(client.econ_worker(&w.0).await?);
    }
    let position = holder_position(ctx, EconTarget::Pool(id), holder).await?;
    if ctx.json {
        let mut v = serde_json::to_value(&info)?;
        v["sessions"] = serde_json::to_value(&workers)?;
        if let Some(p) = position {
            v["position"] = p;
        }
        return ctx.print_json(&v);
    }
    print_pool(&info);
    for w in &workers {
        print_worker(w);
    }
    for q in &info.pool.queue {
        println!("  queued   {} shares of {} since height {}", format_amount(q.shares), q.holder, q.requested_at);
    }
    if let Some(p) = position {
        println!("position   {} shares worth {}", json_amount(&p["shares"]), json_amount(&p["value"]));
    }
    Ok(())
}

fn print_pool(info: &EconPoolInfo) {
    let p = &info.pool;
    print_rows(&[
        ("pool", format!("{} (height {})", p.id, info.height)),
        ("owner", p.owner.to_string()),
        ("commission", format!("{} bps", p.commission_bps)),
        ("value", show_amount(info.value)),
        ("  free", show_amount(p.free)),
        ("  locked", show_amount(p.locked)),
        ("shares", format_amount(p.shares)),
        ("share price", show_amount(info.share_price)),
        ("rewards kept", show_amount(p.rewards_total)),
        ("heartbeats", format!("{} answered, {} missed", p.heartbeats_answered, p.heartbeats_missed)),
        ("holders", p.holders.len().to_string()),
        ("workers", p.workers.len().to_string()),
        ("queue", p.queue.len().to_string()),
    ]);
}

fn print_worker(w: &EconWorkerInfo) {
    let r = &w.record;
    let session = match &r.session {
        None => "no session".to_string(),
        Some(s) => format!(
            "{:?}, stake {}, V {}, {}, earned {}{}",
            s.state,
            show_amount(s.stake),
            s.value,
            if s.responsive { "responsive" } else { "UNRESPONSIVE" },
            show_amount(s.earned),
            s.pending.as_ref().map(|p| format!(", challenge due by {}", p.deadline)).unwrap_or_default()
        ),
    };
    println!(
        "  worker   {}  P {} (benchmark {}), heartbeats {}/{} missed, {session}{}",
        w.worker,
        r.score,
        r.initial_score,
        r.answered,
        r.missed,
        if r.slashed { ", SLASHED" } else { "" }
    );
}

async fn list_pools(ctx: &Ctx) -> Result<()> {
    let pools = ctx.client()?.econ_pools().await?;
    if ctx.json {
        return ctx.print_json(&pools);
    }
    if pools.is_empty() {
        println!("no pools");
    }
    for info in &pools {
        let p = &info.pool;
        println!(
            "pool {}  value {}  shares {}  price {}  workers {}  queued {}  owner {}",
            p.id,
            show_amount(info.value),
            format_amount(p.shares),
            show_amount(info.share_price),
            p.workers.len(),
            p.queue.len(),
            p.owner
        );
    }
    Ok(())
}

async fn show_vault(ctx: &Ctx, id: u64, holder: Option<String>) -> Result<()> {
    let info = ctx.client()?.econ_vault(id).await?;
    let position = holder_position(ctx, EconTarget::Vault(id), holder).await?;
    if ctx.json {
        let mut v = serde_json::to_value(&info)?;
        if let Some(p) = position {
            v["position"] = p;
        }
        return ctx.print_json(&v);
    }
    let v = &info.vault;
    print_rows(&[
        ("vault", format!("{} (height {})", v.id, info.height)),
        ("owner", v.owner.to_string()),
        ("automatic", v.auto.to_string()),
        ("value", show_amount(info.value)),
        ("  free", show_amount(v.free)),
        ("shares", format_amount(v.shares)),
        ("share price", show_amount(info.share_price)),
        ("holders", v.holders.len().to_string()),
        ("queue", v.queue.len().to_string()),
    ]);
    for a in &info.allocations {
        println!("  pool {}  {} shares worth {}", a.pool, format_amount(a.shares), show_amount(a.value));
    }
    if let Some(p) = position {
        println!("position   {} shares worth {}", json_amount(&p["shares"]), json_amount(&p["value"]));
    }
    Ok(())
}

fn parse_contract_id(s: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(s.trim().trim_start_matches("0x"))
        .map_err(|e| anyhow::anyhow!("a contract id is 64 hex digits: {e}"))?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("a contract id is 32 bytes (64 hex digits)"))
}

async fn show_stakes(ctx: &Ctx, contract: Option<String>, cluster: Option<u32>) -> Result<()> {
    let client = ctx.client()?;
    if let Some(c) = cluster {
        let info = client.econ_cluster_stakes(c).await?;
        if ctx.json {
            return ctx.print_json(&info);
        }
        println!(
            "cluster {} (height {}): free quota weight {}",
            info.cluster,
            info.height,
            show_amount(info.free_quota_stake)
        );
        for s in &info.contracts {
            println!("  {}  {}", s.contract, show_amount(s.stake));
        }
        return Ok(());
    }
    let id = parse_contract_id(contract.as_deref().unwrap_or_default())?;
    let info = client.econ_compute_stake(&id).await?;
    if ctx.json {
        return ctx.print_json(&info);
    }
    print_rows(&[
        ("contract", info.contract.clone()),
        ("cluster", info.cluster.map(|c| c.to_string()).unwrap_or_else(|| "-".into())),
        ("staked", show_amount(info.total)),
        ("stakers", info.stakers.len().to_string()),
        (
            "unstaking",
            info.unstaking
                .iter()
                .map(|u| format!("{} at {}", show_amount(u.amount), u.release_at))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ]);
    Ok(())
}

/// `umbra stake-compute CONTRACT AMOUNT`
pub(crate) fn stake_compute(ctx: &Ctx, args: StakeComputeArgs) -> Result<()> {
    block_on(async {
        let contract = parse_contract_id(&args.contract)?;
        let call = if args.unstake {
            Call::UnstakeCompute { contract, amount: args.amount }
        } else {
            Call::StakeCompute { contract, amount: args.amount }
        };
        send_call(ctx, args.from, call).await.map(|_| ())
    })?
}

/// `umbra compute status [WORKER]`
pub(crate) fn compute(ctx: &Ctx, args: ComputeArgs) -> Result<()> {
    block_on(async {
        let ComputeCmd::Status { worker } = args.cmd;
        let client = ctx.client()?;
        let single = worker.is_some();
        let ids = match worker {
            Some(w) => vec![parse_worker_id(&w)?],
            None => {
                let b = client.econ_budget().await?;
                b.sessions.iter().map(|s| parse_worker_id(s)).collect::<Result<Vec<_>>>()?
            }
        };
        let mut rows = Vec::new();
        for id in &ids {
            let w = client.econ_worker(id).await?;
            let r = &w.record;
            let s = r.session.as_ref();
            rows.push(serde_json::json!({
                "worker": w.worker,
                "height": w.height,
                "pool": r.pool,
                "state": s.map(|s| match s.state {
                    umbra_types::economics::SessionState::Computing => "computing".to_string(),
                    umbra_types::economics::SessionState::CoolingDown { until } => format!("cooling_down until {until}"),
                }).unwrap_or_else(|| "idle".into()),
                "v": s.map(|s| s.value.to_string()),
                "p": r.score,
                "benchmark": r.initial_score,
                "responsive": s.map(|s| s.responsive),
                "stake": s.map(|s| s.stake.to_string()),
                "share": w.share.to_string(),
                "rewards": r.rewards.to_string(),
                "answered": r.answered,
                "missed": r.missed,
                "slashed": r.slashed,
            }));
        }
        if ctx.json {
            return if single { ctx.print_json(&rows[0]) } else { ctx.print_json(&rows) };
        }
        if rows.is_empty() {
            println!("no worker has a session");
        }
        for (id, v) in ids.iter().zip(&rows) {
            let resp = match v["responsive"].as_bool() {
                Some(true) => "responsive",
                Some(false) => "UNRESPONSIVE",
                None => "-",
            };
            println!(
                "{}  {}  V {}  P {} (benchmark {})  {}  rewards {}  heartbeats {} answered {} missed{}",
                hex::encode(id),
                v["state"].as_str().unwrap_or_default(),
                v["v"].as_str().unwrap_or("-"),
                v["p"],
                v["benchmark"],
                resp,
                json_amount(&v["rewards"]),
                v["answered"],
                v["missed"],
                if v["slashed"] == true { ", SLASHED" } else { "" }
            );
        }
        Ok(())
    })?
}
