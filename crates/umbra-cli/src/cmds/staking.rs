//! `umbra staking ...`: bond, nominate, unbond, withdraw, report equivocation, and show the committee.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use umbra_types::{Call, ValidatorKey, format_amount, parse_amount};

/// `umbra staking ...`
#[derive(Args, Debug)]
pub(crate) struct StakingArgs {
    #[command(subcommand)]
    cmd: StakingCmd,
    /// The signing key's name in the keystore [default: the default key].
    #[arg(long, global = true)]
    from: Option<String>,
}

#[derive(Subcommand, Debug)]
enum StakingCmd {
    /// The current committee, the next one once chosen, and every candidate.
    Committee,
    /// Bond tokens to your own candidate (registers it on the first bond of at least the minimum).
    Bond {
        #[arg(long)]
        validator_key: String,
        #[arg(long)]
        amount: String,
    },
    /// Bond tokens toward someone else's candidate.
    Nominate {
        #[arg(long)]
        validator_key: String,
        #[arg(long)]
        amount: String,
    },
    /// Start unbonding stake from a candidate.
    Unbond {
        #[arg(long)]
        validator_key: String,
        #[arg(long)]
        amount: String,
    },
    /// Return matured unbonding stake to your balance.
    Withdraw,
    /// Submit equivocation evidence (hex of an encoded Evidence, as a node logs it).
    Evidence { hex: String },
}

fn key(hex_key: &str) -> Result<ValidatorKey> {
    umbra_node::parse_key_hex(hex_key).map_err(|e| anyhow::anyhow!("--validator-key: {e}"))
}

pub(crate) fn run(ctx: &crate::Ctx, args: StakingArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let call = match args.cmd {
            StakingCmd::Committee => return committee(ctx).await,
            StakingCmd::Bond { validator_key, amount } => {
                Call::Bond { validator_key: key(&validator_key)?, amount: parse_amount(&amount)? }
            }
            StakingCmd::Nominate { validator_key, amount } => {
                Call::Nominate { validator_key: key(&validator_key)?, amount: parse_amount(&amount)? }
            }
            StakingCmd::Unbond { validator_key, amount } => {
                Call::Unbond { validator_key: key(&validator_key)?, amount: parse_amount(&amount)? }
            }
            StakingCmd::Withdraw => Call::WithdrawUnbonded,
            StakingCmd::Evidence { hex } => Call::SubmitEvidence {
                evidence: hex::decode(hex.trim().trim_start_matches("0x")).context("evidence is not hex")?,
            },
        };
        super::send_call(ctx, args.from, call).await.map(|_| ())
    })
}

async fn committee(ctx: &crate::Ctx) -> Result<()> {
    let client = jsonrpsee::http_client::HttpClientBuilder::default().build(&ctx.rpc)?;
    use jsonrpsee::core::client::ClientT;
    let v: serde_json::Value = client
        .request(umbra_rpc::methods::STAKING_COMMITTEE, jsonrpsee::rpc_params![])
        .await
        .with_context(|| format!("cannot query {}", ctx.rpc))?;
    if ctx.json {
        println!("{v}");
        return Ok(());
    }
    println!("epoch       {} (next at height {})", v["epoch"], v["next_epoch_at"]);
    println!("committee   {}", v["committee"].as_array().map(|c| c.len()).unwrap_or(0));
    for k in v["committee"].as_array().into_iter().flatten() {
        println!("  {}", k.as_str().unwrap_or_default());
    }
    if let Some(next) = v["next_committee"].as_array() {
        println!("next        {} members chosen", next.len());
    }
    println!("candidates");
    for c in v["candidates"].as_array().into_iter().flatten() {
        let amount =
            |f: &str| c[f].as_str().and_then(|s| s.parse::<u128>().ok()).map(format_amount).unwrap_or_default();
        println!(
            "  {}  self {} UMB, nominated {} UMB{}{}",
            c["key"].as_str().unwrap_or_default(),
            amount("self_bond"),
            amount("nominated"),
            if c["genesis"].as_bool() == Some(true) { ", genesis" } else { "" },
            if c["jailed"].as_bool() == Some(true) { ", slashed" } else { "" }
        );
    }
    Ok(())
}
