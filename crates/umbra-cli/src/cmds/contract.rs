//! `umbra contract ...`: upload code, instantiate it on a cluster, send sealed commands, make sealed
//! queries through a worker, and show a contract's record.
//!
//! Commands are sealed to the contract's published X25519 key (the node only ever sees the envelope);
//! queries go to a worker whose key is checked against its attestation on chain, and its signed answer is
//! opened locally.

use super::{block_on, send_call};
use crate::Ctx;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use umbra_types::contracts::{CodeKind, ContractId, code_hash, contract_account, contract_id};
use umbra_types::{Call, Hash};

/// `umbra contract ...`
#[derive(Args, Debug)]
pub(crate) struct ContractArgs {
    #[command(subcommand)]
    cmd: ContractCmd,
    /// The signing key's name in the keystore [default: the default key].
    #[arg(long, global = true)]
    from: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum KindArg {
    /// JavaScript (an ES module).
    Js,
    /// WebAssembly.
    Wasm,
}

#[derive(Subcommand, Debug)]
enum ContractCmd {
    /// Upload contract code (JavaScript source, or wasm for a `.wasm` file); prints its hash.
    Upload {
        /// The code file.
        file: PathBuf,
        /// The language [default: wasm for `.wasm` files, otherwise js].
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
    },
    /// Instantiate uploaded code on a cluster; prints the contract id.
    Instantiate {
        /// The code hash (0x...).
        code_hash: Hash,
        /// The cluster that runs it.
        #[arg(long)]
        cluster: u32,
        /// Makes distinct instances of the same code (UTF-8).
        #[arg(long, default_value = "")]
        salt: String,
        /// JSON arguments of the contract's `init` method (public).
        #[arg(long)]
        args: Option<String>,
    },
    /// Send a command, sealed to the contract's key, with a gas deposit.
    Call {
        /// The contract id (0x...).
        id: Hash,
        /// The method.
        method: String,
        /// JSON arguments.
        #[arg(long, default_value = "null")]
        args: String,
        /// Gas limit (the deposit is gas * the chain's gas price; the unused part is refunded).
        #[arg(long, default_value_t = 100_000_000)]
        gas: u64,
        /// Wait until the cluster reported the command, and print its result.
        #[arg(long)]
        wait: bool,
        /// Seal to this key epoch instead of the newest one the contract has (the chain refuses an epoch
        /// without published keys).
        #[arg(long)]
        key_epoch: Option<u64>,
    },
    /// Query a contract through a worker: sealed to the worker's attested key, answered sealed and signed.
    Query {
        /// The contract id (0x...).
        id: Hash,
        /// The method.
        method: String,
        /// JSON arguments.
        #[arg(long, default_value = "null")]
        args: String,
        /// The worker's query URL (http://HOST:PORT, as `umbra worker --query-listen` serves).
        #[arg(long)]
        worker: String,
        /// Sign the query as the --from key (the contract sees it as the caller).
        #[arg(long)]
        signed: bool,
    },
    /// A contract's record: code, cluster, keys, commands ordered and reported, state root, incidents.
    Info {
        /// The contract id (0x...).
        id: Hash,
    },
}

/// Runs `umbra contract ...`.
pub(crate) fn run(ctx: &Ctx, args: ContractArgs) -> Result<()> {
    block_on(async move {
        match args.cmd {
            ContractCmd::Upload { file, kind } => upload(ctx, args.from, file, kind).await,
            ContractCmd::Instantiate { code_hash, cluster, salt, args: init } => {
                instantiate(ctx, args.from, code_hash, cluster, salt, init).await
            }
            ContractCmd::Call { id, method, args: a, gas, wait, key_epoch } => {
                call(ctx, args.from, id, method, a, gas, wait, key_epoch).await
            }
            ContractCmd::Query { id, method, args: a, worker, signed } => {
                query(ctx, args.from, id, method, a, worker, signed).await
            }
            ContractCmd::Info { id } => info(ctx, id).await,
        }
    })?
}

fn signer(ctx: &Ctx, from: Option<&str>) -> Result<umbra_crypto::Keypair> {
    let store = ctx.keystore()?;
    Ok(match from {
        Some(n) => store.get(n)?,
        None => store.default_key()?.1,
    })
}

fn json_args(s: &str) -> Result<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_str(s).with_context(|| format!("--args is not JSON: {s}"))?;
    Ok(serde_json::to_vec(&v)?)
}

async fn upload(ctx: &Ctx, from: Option<String>, file: PathBuf, kind: Option<KindArg>) -> Result<()> {
    let code = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let wasm = file.extension().is_some_and(|e| e == "wasm");
    let kind = match kind {
        Some(KindArg::Wasm) => CodeKind::Wasm,
        Some(KindArg::Js) => CodeKind::JavaScript,
        None if wasm => CodeKind::Wasm,
        None => CodeKind::JavaScript,
    };
    let hash = code_hash(kind, &code);
    send_call(ctx, from, Call::UploadCode { kind, code }).await?;
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "code_hash": hash }))?;
    } else {
        println!("code hash {hash}");
    }
    Ok(())
}

async fn instantiate(
    ctx: &Ctx,
    from: Option<String>,
    code_hash: Hash,
    cluster: u32,
    salt: String,
    init: Option<String>,
) -> Result<()> {
    let key = signer(ctx, from.as_deref())?;
    let args = init.as_deref().map(json_args).transpose()?.unwrap_or_default();
    let salt = salt.into_bytes();
    let id = contract_id(&key.address(), &code_hash, &salt, cluster);
    send_call(ctx, from, Call::Instantiate { code_hash, cluster, salt, args }).await?;
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "contract": Hash(id), "account": contract_account(&id) }))?;
    } else {
        println!("contract {}", Hash(id));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn call(
    ctx: &Ctx,
    from: Option<String>,
    id: Hash,
    method: String,
    args: String,
    gas: u64,
    wait: bool,
    force_epoch: Option<u64>,
) -> Result<()> {
    let key = signer(ctx, from.as_deref())?;
    let client = ctx.client()?;
    let chain = client.chain_info().await?;
    let record = client.contract(&id.0).await?.with_context(|| format!("no contract {id}"))?;
    let mut record = record;
    if let Some(e) = force_epoch {
        // Seal with the newest key but name another epoch: what a client with a stale view would send.
        if let Some(last) = record.keys.last_mut() {
            last.0 = e;
        }
    }
    let (sealed, key_epoch) =
        umbra_sdk::seal_command(&chain.chain_id, &record, &key.address(), &method, &json_args(&args)?)?;
    let seq_hint = record.commands;
    send_call(ctx, from, Call::ContractCommand { contract: id.0, key_epoch, gas_limit: gas, sealed }).await?;
    if !wait {
        return Ok(());
    }
    // Find our command (the first at or after the hint sent by us) and wait for its report.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seq = seq_hint;
    loop {
        match client.contract_command(&id.0, seq).await? {
            Some(c) if c.sender != key.address() => seq += 1,
            Some(c) if c.result.is_some() => {
                let result = c.result.context("reported")?;
                if ctx.json {
                    ctx.print_json(&serde_json::json!({ "seq": seq, "result": result }))?;
                } else {
                    println!(
                        "command {seq}: {:?}, gas used {}, state root {}",
                        result.status, result.gas_used, result.state_root
                    );
                }
                return Ok(());
            }
            _ if std::time::Instant::now() > deadline => bail!("command {seq} was not reported within 60 s"),
            _ => tokio::time::sleep(std::time::Duration::from_millis(300)).await,
        }
    }
}

async fn query(
    ctx: &Ctx,
    from: Option<String>,
    id: Hash,
    method: String,
    args: String,
    worker: String,
    signed: bool,
) -> Result<()> {
    let caller = if signed { Some(signer(ctx, from.as_deref())?) } else { None };
    let client = ctx.client()?;
    let q = umbra_sdk::query(&client, &worker, &id.0, &method, &json_args(&args)?, caller.as_ref()).await?;
    let output = match &q.result {
        Ok(bytes) => String::from_utf8_lossy(bytes).to_string(),
        Err(e) => bail!("the query failed in the contract: {e}"),
    };
    if ctx.json {
        let value: serde_json::Value = serde_json::from_str(&output).unwrap_or(serde_json::Value::String(output));
        ctx.print_json(&serde_json::json!({
            "output": value,
            "worker": Hash(q.worker),
            "height": q.height,
            "state_root": q.state_root,
            "gas_used": q.gas_used,
            "verified": true,
        }))?;
    } else {
        println!("{output}");
        eprintln!(
            "(answered by worker {} at height {}, sealed and signed; state root {})",
            Hash(q.worker),
            q.height,
            q.state_root
        );
    }
    Ok(())
}

async fn info(ctx: &Ctx, id: Hash) -> Result<()> {
    let id: ContractId = id.0;
    let client = ctx.client()?;
    let record = client.contract(&id).await?.with_context(|| format!("no contract {}", Hash(id)))?;
    let last = match record.reported.checked_sub(1) {
        Some(seq) => client.contract_command(&id, seq).await?,
        None => None,
    };
    let (incidents, _) = client.state_value(&umbra_types::state_keys::StateKey::ContractIncidents(id)).await?;
    let incidents: Vec<umbra_types::contracts::Incident> =
        incidents.map(|v| umbra_types::decode(&v, 1 << 20)).transpose()?.unwrap_or_default();
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "contract": record, "last_command": last, "incidents": incidents }))?;
    } else {
        super::print_rows(&[
            ("contract", Hash(id).to_string()),
            ("code", format!("{} ({:?})", record.code_hash, record.kind)),
            ("cluster", record.cluster.to_string()),
            ("deployer", record.deployer.to_string()),
            ("account", record.account.to_string()),
            ("key epochs", format!("{:?}", record.keys.iter().map(|(e, _)| *e).collect::<Vec<_>>())),
            ("commands", format!("{} ordered, {} reported", record.commands, record.reported)),
            ("state root", record.state_root.map(|h| h.to_string()).unwrap_or_else(|| "-".into())),
            ("incidents", record.incidents.to_string()),
        ]);
    }
    Ok(())
}
