//! `umbra block`: one block's header, transactions and finality, verified by the light client.

use super::block_on;
use crate::Ctx;
use anyhow::{Context as _, Result};
use clap::Args;
use serde::Serialize;
use umbra_rpc::{BlockId, BlockResponse};
use umbra_sdk::{Client, Finality};
use umbra_types::Hash;

/// Arguments of `umbra block`.
#[derive(Args, Debug)]
pub(crate) struct BlockArgs {
    /// A height or a block hash (0x...) [default: the latest finalized block].
    #[arg(value_name = "HEIGHT|HASH", value_parser = parse_block_id)]
    id: Option<BlockId>,
    /// Trust this genesis block hash for the node's chain (replaces the pin made on first use).
    #[arg(long, value_name = "HASH")]
    trust_genesis: Option<Hash>,
}

#[derive(Serialize)]
struct Output {
    #[serde(flatten)]
    block: BlockResponse,
    verified: Finality,
}

/// A client that verifies what the node says: the chain is pinned in `HOME/trust` on first use
/// (or to `trust_genesis`).
pub(crate) fn verifying_client(ctx: &Ctx, trust_genesis: Option<Hash>) -> Result<Client> {
    let home = match &ctx.home {
        Some(h) => h.clone(),
        None => umbra_sdk::umbra_home()?,
    };
    let client = ctx.client()?.with_trust_store(umbra_sdk::trust_dir(&home));
    Ok(match trust_genesis {
        Some(h) => client.with_trusted_genesis(h),
        None => client,
    })
}

fn parse_block_id(s: &str) -> Result<BlockId, String> {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
        return s.parse().map(BlockId::Height).map_err(|_| format!("height '{s}' is too large"));
    }
    s.parse::<Hash>().map(BlockId::Hash).map_err(|e| format!("'{s}' is neither a height nor a block hash ({e})"))
}

/// Runs `umbra block`.
pub(crate) fn run(ctx: &Ctx, args: BlockArgs) -> Result<()> {
    let client = verifying_client(ctx, args.trust_genesis)?;
    let what = match &args.id {
        None => "the latest block".to_string(),
        Some(BlockId::Height(h)) => format!("block {h}"),
        Some(BlockId::Hash(h)) => format!("block {h}"),
    };
    let verified = block_on(client.verified_block(args.id))?.with_context(|| format!("reading {what}"))?;
    let resp = verified.response;
    if ctx.json {
        return ctx.print_json(&Output { block: resp, verified: verified.finality });
    }
    let h = &resp.block.header;
    let failed = resp.receipts.iter().filter(|r| !r.is_success()).count();
    let txs = match failed {
        0 => resp.block.txs.len().to_string(),
        n => format!("{} ({n} failed)", resp.block.txs.len()),
    };
    let finality = match (&verified.finality, &resp.finality_certificate) {
        (Finality::Trusted, _) => "verified: the pinned genesis block (no certificate)".to_string(),
        (f, Some(c)) => format!("verified: {f} ({} bytes)", c.len() / 2),
        (f, None) => format!("verified: {f}"),
    };
    let mut rows = vec![
        ("height", h.height.to_string()),
        ("hash", resp.hash.to_string()),
        ("parent", h.parent.to_string()),
        ("time", format!("{} ({} ms)", utc(h.timestamp_ms), h.timestamp_ms)),
        ("proposer", hex::encode(h.proposer)),
        ("epoch", h.epoch.to_string()),
        ("tx root", h.tx_root.to_string()),
        ("state root", h.state_root.to_string()),
        ("messages root", h.messages_root.to_string()),
        ("transactions", txs),
        ("finality", finality),
    ];
    if let Some(next) = &h.next_committee {
        rows.push(("next committee", format!("{} validators", next.len())));
    }
    super::print_rows(&rows);
    Ok(())
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian calendar).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm), in unsigned arithmetic.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_times_are_shown_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn a_block_is_named_by_height_or_hash() {
        assert_eq!(parse_block_id("42"), Ok(BlockId::Height(42)));
        let h = Hash([3; 32]);
        assert_eq!(parse_block_id(&h.to_string()), Ok(BlockId::Hash(h)));
        assert!(parse_block_id("latest").is_err());
    }
}
