//! `umbra keys`: the local keystore in `HOME/keys`.

use crate::Ctx;
use crate::cmds::print_rows;
use anyhow::{Context as _, Result};
use clap::Subcommand;
use serde::Serialize;
use std::io::Read as _;
use std::path::PathBuf;
use umbra_sdk::{KeyInfo, Keystore};
use umbra_types::Address;

/// Subcommands of `umbra keys`.
#[derive(Subcommand, Debug)]
pub(crate) enum KeysCommand {
    /// Generate a new key; the first key becomes the default.
    New {
        /// Name of the key (letters, digits, '-', '_', '.').
        name: String,
    },
    /// Store an existing key, reading its 32-byte hex seed from a file or standard input.
    Import {
        /// Name of the key.
        name: String,
        /// File holding the hex seed [default: read standard input].
        #[arg(long, value_name = "PATH")]
        seed_file: Option<PathBuf>,
    },
    /// List the keys; the default is marked with '*'.
    List,
    /// Show a key's address (and, only when asked, its secret seed).
    Show {
        /// Name of the key.
        name: String,
        /// Also print the secret seed. Anyone who sees it controls the account.
        #[arg(long)]
        reveal_seed: bool,
    },
    /// Make a key the default for commands that sign.
    Default {
        /// Name of the key.
        name: String,
    },
}

#[derive(Serialize)]
struct KeyView {
    name: String,
    address: Address,
    default: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<String>,
}

fn view(ks: &Keystore, info: KeyInfo) -> Result<KeyView> {
    let default = ks.default_name()?.as_deref() == Some(info.name.as_str());
    Ok(KeyView { name: info.name, address: info.address, default, seed: None })
}

fn yes_no(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}

/// Runs a `umbra keys` subcommand.
pub(crate) fn run(ctx: &Ctx, cmd: KeysCommand) -> Result<()> {
    let ks = ctx.keystore()?;
    match cmd {
        KeysCommand::New { name } => {
            let info = ks.generate(&name).with_context(|| format!("creating key '{name}'"))?;
            created(ctx, &ks, info)
        }
        KeysCommand::Import { name, seed_file } => {
            let text = match &seed_file {
                Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
                None => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s).context("reading the seed from standard input")?;
                    s
                }
            };
            let text = text.trim();
            let seed: [u8; 32] = hex::decode(text.strip_prefix("0x").unwrap_or(text))
                .ok()
                .and_then(|b| b.try_into().ok())
                .context("the seed must be 32 bytes of hex (64 hex digits)")?;
            let info = ks.import(&name, seed).with_context(|| format!("importing key '{name}'"))?;
            created(ctx, &ks, info)
        }
        KeysCommand::List => {
            let keys = ks.list()?;
            let default = ks.default_name()?;
            let views: Vec<KeyView> = keys
                .into_iter()
                .map(|k| KeyView {
                    default: default.as_deref() == Some(k.name.as_str()),
                    name: k.name,
                    address: k.address,
                    seed: None,
                })
                .collect();
            if ctx.json {
                return ctx.print_json(&views);
            }
            if views.is_empty() {
                println!("no keys in {} (create one with 'umbra keys new NAME')", ks.dir().display());
                return Ok(());
            }
            let width = views.iter().map(|v| v.name.len()).max().unwrap_or(0).max(4);
            println!("  {:<width$}  ADDRESS", "NAME");
            for v in &views {
                let mark = if v.default { '*' } else { ' ' };
                println!("{mark} {:<width$}  {}", v.name, v.address);
            }
            Ok(())
        }
        KeysCommand::Show { name, reveal_seed } => {
            let key = ks.get(&name)?;
            let mut v = view(&ks, KeyInfo { name, address: key.address() })?;
            if reveal_seed {
                v.seed = Some(hex::encode(key.seed()));
            }
            if ctx.json {
                return ctx.print_json(&v);
            }
            let mut rows =
                vec![("name", v.name.clone()), ("address", v.address.to_string()), ("default", yes_no(v.default))];
            if let Some(seed) = &v.seed {
                rows.push(("seed", seed.clone()));
            }
            print_rows(&rows);
            Ok(())
        }
        KeysCommand::Default { name } => {
            ks.set_default(&name).with_context(|| format!("making '{name}' the default key"))?;
            let v = view(&ks, ks.info(&name)?)?;
            if ctx.json {
                return ctx.print_json(&v);
            }
            println!("default key is now '{}' ({})", v.name, v.address);
            Ok(())
        }
    }
}

fn created(ctx: &Ctx, ks: &Keystore, info: KeyInfo) -> Result<()> {
    let v = view(ks, info)?;
    if ctx.json {
        return ctx.print_json(&v);
    }
    print_rows(&[
        ("created", format!("key '{}'", v.name)),
        ("address", v.address.to_string()),
        ("default", yes_no(v.default)),
        ("keystore", ks.dir().display().to_string()),
    ]);
    Ok(())
}
