//! `umbra account`: an account's balance and nonce, checked against a state proof and the finality
//! certificate of the block whose state root it proves against.

use super::{block_on, resolve_address, show_amount};
use crate::Ctx;
use anyhow::{Context as _, Result};
use clap::Args;
use serde::Serialize;
use umbra_sdk::VerifiedAccount;
use umbra_types::Hash;

/// Arguments of `umbra account`.
#[derive(Args, Debug)]
pub(crate) struct AccountArgs {
    /// An address (umbra1...) or the name of a local key.
    #[arg(value_name = "ADDR_OR_KEYNAME")]
    target: String,
    /// Trust this genesis block hash for the node's chain (replaces the pin made on first use).
    #[arg(long, value_name = "HASH")]
    trust_genesis: Option<Hash>,
}

#[derive(Serialize)]
struct Output {
    #[serde(flatten)]
    account: VerifiedAccount,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    verified: bool,
}

/// Runs `umbra account`.
pub(crate) fn run(ctx: &Ctx, args: AccountArgs) -> Result<()> {
    let ks = ctx.keystore()?;
    let (address, key) = resolve_address(&ks, &args.target)?;
    let client = super::block::verifying_client(ctx, args.trust_genesis)?;
    let account = block_on(client.account(&address))?.with_context(|| format!("reading account {address}"))?;
    if ctx.json {
        return ctx.print_json(&Output { account, key, verified: true });
    }
    let shown = match &key {
        Some(name) => format!("{address} ({name})"),
        None => address.to_string(),
    };
    let exists = if account.exists { "yes" } else { "no (proven absent)" };
    super::print_rows(&[
        ("address", shown),
        ("balance", show_amount(account.balance)),
        ("nonce", account.nonce.to_string()),
        ("exists", exists.to_string()),
    ]);
    let finality = account.finality.as_ref().map(|f| f.to_string()).unwrap_or_else(|| "header unchecked".into());
    println!("verified: {finality}; state proof against block {} state root {}", account.height, account.state_root);
    Ok(())
}
