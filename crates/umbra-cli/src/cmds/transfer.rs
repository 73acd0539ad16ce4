//! `umbra transfer`: send tokens and, by default, wait until the transfer is final.

use super::{block_on, parse_amount_arg, resolve_address, show_amount};
use crate::Ctx;
use anyhow::{Context as _, Result};
use clap::Args;
use serde::Serialize;
use std::time::Duration;
use umbra_rpc::TxStatus;
use umbra_types::{Address, Amount, Hash, TxError};

/// Arguments of `umbra transfer`.
#[derive(Args, Debug)]
pub(crate) struct TransferArgs {
    /// Recipient: an address (umbra1...) or the name of a local key.
    #[arg(long, value_name = "ADDR")]
    to: String,
    /// Amount in whole tokens, for example 12.5.
    #[arg(long, value_parser = parse_amount_arg)]
    amount: Amount,
    /// Name of the key that pays [default: the keystore's default key].
    #[arg(long, value_name = "NAME")]
    from: Option<String>,
    /// Fee in whole tokens [default: the chain's minimum for this transaction].
    #[arg(long, value_parser = parse_amount_arg, value_name = "AMOUNT")]
    fee: Option<Amount>,
    /// Return once the node accepts the transaction, without waiting for finalization.
    #[arg(long)]
    no_wait: bool,
    /// Seconds to wait for finalization.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    timeout: u64,
}

#[derive(Serialize)]
struct Output {
    hash: Hash,
    from: Address,
    to: Address,
    #[serde(serialize_with = "as_str")]
    amount: Amount,
    /// `submitted` (with --no-wait) or `finalized`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_as_str")]
    fee_paid: Option<Amount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    success: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<TxError>,
}

fn as_str<S: serde::Serializer>(v: &Amount, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

fn opt_as_str<S: serde::Serializer>(v: &Option<Amount>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&v.to_string()),
        None => s.serialize_none(),
    }
}

/// Why a call failed, with amounts in whole tokens.
fn describe(e: &TxError) -> String {
    match e {
        TxError::InsufficientBalance { needed, available } => {
            format!("insufficient balance: needed {}, available {}", show_amount(*needed), show_amount(*available))
        }
        other => other.to_string(),
    }
}

/// Runs `umbra transfer`.
pub(crate) fn run(ctx: &Ctx, args: TransferArgs) -> Result<()> {
    // Everything local is checked before the node is contacted.
    let ks = ctx.keystore()?;
    let (to, _) = resolve_address(&ks, &args.to).context("reading --to")?;
    let (from_name, key) = match &args.from {
        Some(name) => (name.clone(), ks.get(name).context("reading --from")?),
        None => ks.default_key().context("choosing the paying key (pass --from NAME)")?,
    };
    let client = ctx.client()?;
    let from = key.address();
    let mut out = Output {
        hash: Hash::ZERO,
        from,
        to,
        amount: args.amount,
        status: "submitted",
        height: None,
        fee_paid: None,
        success: None,
        error: None,
    };
    let spinner = (!ctx.json && !args.no_wait).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(120));
        s.set_message("submitting...");
        s
    });
    let result = block_on(async {
        let hash =
            umbra_sdk::transfer(&client, &key, to, args.amount, args.fee).await.context("submitting the transfer")?;
        if args.no_wait {
            return Ok((hash, None));
        }
        if let Some(s) = &spinner {
            s.set_message(format!("waiting for {hash} to be finalized..."));
        }
        let tx =
            client.wait_for_tx(hash, Duration::from_secs(args.timeout)).await.context("waiting for finalization")?;
        anyhow::Ok((hash, Some(tx)))
    })?;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let (hash, tx) = result?;
    out.hash = hash;
    let receipt = tx.filter(|t| t.status == TxStatus::Finalized).and_then(|t| t.receipt);
    if let Some(r) = &receipt {
        out.status = "finalized";
        out.height = Some(r.height);
        out.fee_paid = Some(r.fee_paid);
        out.success = Some(r.is_success());
        out.error = r.error.clone();
    }
    if ctx.json {
        ctx.print_json(&out)?;
    } else {
        let mut rows = vec![
            ("hash", hash.to_string()),
            ("from", format!("{from} ({from_name})")),
            ("to", to.to_string()),
            ("amount", show_amount(args.amount)),
        ];
        match &receipt {
            None => rows.push(("status", "submitted (not waiting for finalization)".into())),
            Some(r) => {
                rows.push(("status", format!("finalized in block {}", r.height)));
                rows.push(("fee", show_amount(r.fee_paid)));
                let result = match &r.error {
                    None => "success".to_string(),
                    Some(e) => format!("failed: {}", describe(e)),
                };
                rows.push(("result", result));
            }
        }
        super::print_rows(&rows);
    }
    if let Some(r) = receipt
        && let Some(e) = r.error
    {
        anyhow::bail!(
            "transfer {hash} was included in block {} but failed: {} (the fee was still charged)",
            r.height,
            describe(&e)
        );
    }
    Ok(())
}
