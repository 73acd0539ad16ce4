//! `umbra status`: the chain, its latest finalized block, its validators and the node's health.

use super::block_on;
use crate::Ctx;
use anyhow::{Context as _, Result};
use serde::Serialize;
use umbra_rpc::{Health, ValidatorInfo};
use umbra_types::Hash;

#[derive(Serialize)]
struct Output {
    chain_id: String,
    genesis_hash: Hash,
    /// Latest finalized height.
    height: u64,
    head_hash: Hash,
    validators: Vec<ValidatorInfo>,
    tee_dev_enabled: bool,
    rpc: String,
    health: Health,
}

/// Runs `umbra status`.
pub(crate) fn run(ctx: &Ctx) -> Result<()> {
    let client = ctx.client()?;
    let (info, head, health) =
        block_on(async { tokio::try_join!(client.chain_info(), client.head(), client.health()) })?
            .with_context(|| format!("reading the status of {}", client.url()))?;
    let out = Output {
        chain_id: info.chain_id,
        genesis_hash: info.genesis_hash,
        height: head.header.height,
        head_hash: head.hash,
        validators: info.validators,
        tee_dev_enabled: info.tee_dev_enabled,
        rpc: client.url().to_string(),
        health,
    };
    if ctx.json {
        return ctx.print_json(&out);
    }
    let h = &out.health;
    let state = if h.healthy { "healthy" } else { "UNHEALTHY" };
    let mut rows = vec![
        ("chain id", out.chain_id.clone()),
        ("genesis", out.genesis_hash.to_string()),
        ("height", format!("{} ({})", out.height, out.head_hash)),
        ("last block", format!("{:.1}s ago", h.since_last_block_ms as f64 / 1000.0)),
        ("node", format!("{} at {}: {state}", h.name, out.rpc)),
        ("mempool", format!("{} transactions", h.mempool_size)),
        ("validators", out.validators.len().to_string()),
    ];
    if out.tee_dev_enabled {
        rows.push(("tee", "simulated (dev) attestation accepted".to_string()));
    }
    super::print_rows(&rows);
    let width = out.validators.iter().map(|v| v.name.len()).max().unwrap_or(0);
    for v in &out.validators {
        println!("  {:<width$}  {}", v.name, v.key);
    }
    Ok(())
}
