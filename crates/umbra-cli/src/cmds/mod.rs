//! Client commands that talk to a node, and what they share: the keystore, the SDK client, name
//! and address resolution, and output.

pub(crate) mod account;
pub(crate) mod agent;
pub(crate) mod block;
pub(crate) mod contract;
pub(crate) mod econ;
pub(crate) mod gov;
pub(crate) mod multisig;
pub(crate) mod registry;
pub(crate) mod status;
pub(crate) mod transfer;
pub(crate) mod worker;

use crate::Ctx;
use anyhow::{Context as _, Result};
use serde::Serialize;
use std::future::Future;
use umbra_sdk::{Client, Keystore, KeystoreError, validate_name};
use umbra_types::{Address, Amount, SYMBOL, format_amount};

impl Ctx {
    /// The keystore in `--home` (or `$UMBRA_HOME`, or `~/.umbra`).
    pub(crate) fn keystore(&self) -> Result<Keystore> {
        Ok(match &self.home {
            Some(home) => Keystore::in_home(home),
            None => Keystore::default_location()?,
        })
    }

    /// A client for `--rpc`.
    pub(crate) fn client(&self) -> Result<Client> {
        Ok(Client::new(self.rpc.clone())?)
    }

    /// Prints `value` as the command's single JSON output.
    pub(crate) fn print_json(&self, value: &impl Serialize) -> Result<()> {
        println!("{}", serde_json::to_string_pretty(value).context("encoding the output as JSON")?);
        Ok(())
    }
}

/// Runs one client command's async work on a small single-threaded runtime.
pub(crate) fn block_on<F: Future>(fut: F) -> Result<F::Output> {
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    Ok(rt.block_on(fut))
}

/// Reads an amount of whole tokens for clap (`12.5`).
pub(crate) fn parse_amount_arg(s: &str) -> Result<Amount, String> {
    umbra_types::parse_amount(s).map_err(|e| e.to_string())
}

/// An amount for people: `12.5 UMB`.
pub(crate) fn show_amount(a: Amount) -> String {
    format!("{} {SYMBOL}", format_amount(a))
}

/// An address written out (`umbra1...`) or the name of a local key, as an address; with the key's
/// name when it was one.
pub(crate) fn resolve_address(ks: &Keystore, s: &str) -> Result<(Address, Option<String>)> {
    let addr_err = match s.parse::<Address>() {
        Ok(a) => return Ok((a, None)),
        Err(e) => e,
    };
    if validate_name(s).is_err() {
        return Err(addr_err.into());
    }
    match ks.info(s) {
        Ok(info) => Ok((info.address, Some(info.name))),
        Err(KeystoreError::NotFound { dir, .. }) => {
            anyhow::bail!("'{s}' is not an address (umbra1...) and no key in {} has that name", dir.display())
        }
        Err(e) => Err(e.into()),
    }
}

/// Prints `label value` rows with the values aligned.
pub(crate) fn print_rows(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    for (label, value) in rows {
        println!("{label:<width$}  {value}");
    }
}
pub(crate) mod staking;

/// Signs `call` with the key `from` (default: the default key), pays the minimum fee, submits it and
/// waits until it is final; fails (after printing the receipt) if the call failed on chain.
pub(crate) async fn send_call(
    ctx: &Ctx,
    from: Option<String>,
    call: umbra_types::Call,
) -> Result<umbra_types::Receipt> {
    let store = ctx.keystore()?;
    let signer = match from {
        Some(n) => store.get(&n)?,
        None => store.default_key()?.1,
    };
    let client = ctx.client()?;
    let info = client.chain_info().await?;
    let nonce = client.next_nonce(&signer.address()).await?;
    let kind = call.kind();
    let tx =
        umbra_types::Transaction { signer: signer.address(), nonce, chain_id: info.chain_id.clone(), fee: 0, call };
    let stx = umbra_crypto::sign_with_min_fee(&signer, tx, &info.fees);
    let hash = client.submit(&stx).await?;
    let r = client.wait_for_tx(hash, std::time::Duration::from_secs(60)).await?;
    let receipt = r.receipt.context("finalized without a receipt")?;
    if ctx.json {
        println!("{}", serde_json::json!({ "hash": hash, "call": kind, "receipt": receipt }));
    } else {
        println!("{kind} {hash} finalized at height {}", receipt.height);
    }
    if let Some(e) = &receipt.error {
        anyhow::bail!("{kind} failed: {e} (the fee was still charged)");
    }
    Ok(receipt)
}
