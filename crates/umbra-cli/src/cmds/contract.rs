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
use umbra_types::contracts::{CodeKind, CommandStatus, ContractId, code_hash, contract_account, contract_id};
use umbra_types::{Call, Hash};
use umbra_worker::query::EVENTS_METHOD;

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
    /// Upload contract code (JavaScript source; wasm for a `.wasm` file; a `.wat` file is assembled to wasm);
    /// prints its hash.
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
    /// Send a command, sealed to the contract's key, with a gas deposit; waits until the cluster reported it
    /// and prints the result or the error (the return value too with --worker).
    #[command(alias = "call")]
    Command {
        /// The contract id (0x...).
        id: Hash,
        /// The method.
        method: String,
        /// JSON arguments (or --args).
        #[arg(conflicts_with = "args_flag", value_name = "ARGS")]
        positional_args: Option<String>,
        /// JSON arguments.
        #[arg(long = "args", id = "args_flag")]
        args_flag: Option<String>,
        /// Gas limit (the deposit is gas * the cluster's gas price; the unused part is refunded).
        #[arg(long, default_value_t = 100_000_000)]
        gas: u64,
        /// Return once the command is ordered, without waiting for its report.
        #[arg(long)]
        no_wait: bool,
        /// Wait for the report (the default; kept for older scripts).
        #[arg(long, hide = true)]
        wait: bool,
        /// A worker of the contract's cluster (http://HOST:PORT): the command's return value is read from it
        /// through a signed query once reported.
        #[arg(long)]
        worker: Option<String>,
        /// Seal to this key epoch instead of the newest one the contract has (the chain refuses an epoch
        /// without published keys).
        #[arg(long)]
        key_epoch: Option<u64>,
    },
    /// The events (and return values) of your reported commands, read from a worker through a signed query
    /// and checked against the events hash the chain recorded for each command.
    Events {
        /// The contract id (0x...).
        id: Hash,
        /// A worker of the contract's cluster (http://HOST:PORT).
        #[arg(long)]
        worker: String,
        /// The first command number to show.
        #[arg(long, default_value_t = 0)]
        since: u64,
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
            ContractCmd::Command {
                id,
                method,
                positional_args,
                args_flag,
                gas,
                no_wait,
                wait: _,
                worker,
                key_epoch,
            } => {
                let a = positional_args.or(args_flag).unwrap_or_else(|| "null".into());
                let opts = CommandOpts { gas, wait: !no_wait, worker, force_epoch: key_epoch };
                command(ctx, args.from, id, method, a, opts).await
            }
            ContractCmd::Events { id, worker, since } => events(ctx, args.from, id, worker, since).await,
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
    let mut code = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let wat = file.extension().is_some_and(|e| e == "wat");
    if wat {
        code = wat::parse_bytes(&code)
            .with_context(|| format!("{} is not valid WebAssembly text", file.display()))?
            .into_owned();
    }
    let wasm = wat || file.extension().is_some_and(|e| e == "wasm");
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

/// How `umbra contract command` sends and waits.
struct CommandOpts {
    gas: u64,
    wait: bool,
    worker: Option<String>,
    force_epoch: Option<u64>,
}

async fn command(
    ctx: &Ctx,
    from: Option<String>,
    id: Hash,
    method: String,
    args: String,
    opts: CommandOpts,
) -> Result<()> {
    let key = signer(ctx, from.as_deref())?;
    let client = ctx.client()?;
    let chain = client.chain_info().await?;
    let mut record = client.contract(&id.0).await?.with_context(|| format!("no contract {id}"))?;
    if let Some(e) = opts.force_epoch {
        // Seal with the newest key but name another epoch: what a client with a stale view would send.
        if let Some(last) = record.keys.last_mut() {
            last.0 = e;
        }
    }
    let (sealed, key_epoch) =
        umbra_sdk::seal_command(&chain.chain_id, &record, &key.address(), &method, &json_args(&args)?)?;
    let seq_hint = record.commands;
    let gas_limit = opts.gas;
    send_call(ctx, from, Call::ContractCommand { contract: id.0, key_epoch, gas_limit, sealed }).await?;
    if !opts.wait {
        return Ok(());
    }
    // Find our command (the first at or after the hint sent by us) and wait for its report.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seq = seq_hint;
    let (result, ordered_at) = loop {
        match client.contract_command(&id.0, seq).await? {
            Some(c) if c.sender != key.address() => seq += 1,
            Some(c) if c.result.is_some() => break (c.result.context("reported")?, c.height),
            _ if std::time::Instant::now() > deadline => bail!("command {seq} was not reported within 60 s"),
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    };
    let output = match (&opts.worker, &result.status) {
        (Some(url), CommandStatus::Ok) => {
            // The first member's report may land before this worker ran the command: give it a moment.
            let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let (list, height) = read_outputs(&client, url, &id.0, &key, seq).await?;
                if let Some(o) = list.into_iter().find(|o| o.seq == seq) {
                    break Some(o.output);
                }
                if height >= ordered_at {
                    break Some(Vec::new()); // run, with neither a return value nor events
                }
                if std::time::Instant::now() > until {
                    eprintln!("(the worker at {url} has not run command {seq} yet: no return value shown)");
                    break None;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
        _ => None,
    };
    let text = output.as_ref().map(|o| String::from_utf8_lossy(o).to_string());
    if ctx.json {
        let value = text.as_ref().map(|t| serde_json::from_str(t).unwrap_or(serde_json::Value::String(t.clone())));
        ctx.print_json(&serde_json::json!({ "seq": seq, "result": result, "output": value }))?;
    } else {
        match &result.status {
            CommandStatus::Ok => {
                if let Some(t) = &text {
                    println!("{t}");
                }
                eprintln!(
                    "command {seq}: Ok, gas used {}, refund {}, state root {}",
                    result.gas_used, result.refund, result.state_root
                );
            }
            CommandStatus::Failed { reason } => {
                bail!("command {seq} failed: {reason} (gas used {}, refund {})", result.gas_used, result.refund)
            }
        }
    }
    if let CommandStatus::Failed { reason } = &result.status
        && ctx.json
    {
        bail!("command {seq} failed: {reason}");
    }
    Ok(())
}

/// One command's return value and events as its sender reads them from a worker.
struct CommandOutputs {
    seq: u64,
    events: Vec<umbra_engine_event::Event>,
    output: Vec<u8>,
}

/// The events' canonical form, as the workers hash them: `umbra_engine::Event`s borsh-encoded (a u32 LE
/// count, then per event the name and the data, each as a u32 LE length and the bytes).
mod umbra_engine_event {
    /// A contract event.
    #[derive(Debug, Clone)]
    pub(super) struct Event {
        pub(super) name: String,
        pub(super) data: Vec<u8>,
    }

    pub(super) fn encode(events: &[Event]) -> Vec<u8> {
        let mut out = (events.len() as u32).to_le_bytes().to_vec();
        for e in events {
            for part in [e.name.as_bytes(), &e.data] {
                out.extend_from_slice(&(part.len() as u32).to_le_bytes());
                out.extend_from_slice(part);
            }
        }
        out
    }
}

/// Reads the sender's command outputs from `seq` on through a signed query of the reserved events method,
/// and checks every event list against the events hash the chain recorded for its command; also returns the
/// height of the worker's state.
async fn read_outputs(
    client: &umbra_sdk::Client,
    url: &str,
    id: &ContractId,
    key: &umbra_crypto::Keypair,
    from: u64,
) -> Result<(Vec<CommandOutputs>, u64)> {
    let args = serde_json::to_vec(&serde_json::json!({ "from": from }))?;
    let q = umbra_sdk::query(client, url, id, EVENTS_METHOD, &args, Some(key)).await?;
    let bytes = q.result.map_err(|e| anyhow::anyhow!("the worker could not list the events: {e}"))?;
    let list: Vec<serde_json::Value> = serde_json::from_slice(&bytes).context("the events answer is not JSON")?;
    let unhex = |v: &serde_json::Value| hex::decode(v.as_str().unwrap_or_default()).context("hex in the events answer");
    let mut out = Vec::new();
    for item in list {
        let seq = item["seq"].as_u64().context("an events entry without seq")?;
        let mut events = Vec::new();
        for e in item["events"].as_array().cloned().unwrap_or_default() {
            let name = e["name"].as_str().unwrap_or_default().to_string();
            events.push(umbra_engine_event::Event { name, data: unhex(&e["data"])? });
        }
        let recorded = client
            .contract_command(id, seq)
            .await?
            .and_then(|c| c.result)
            .with_context(|| format!("the chain has no report of command {seq}"))?;
        let hash = umbra_types::sha256(&[&umbra_engine_event::encode(&events)]);
        if hash != recorded.events_hash {
            bail!("the events of command {seq} do not match the hash the chain recorded: the worker is lying");
        }
        out.push(CommandOutputs { seq, events, output: unhex(&item["output"])? });
    }
    Ok((out, q.height))
}

async fn events(ctx: &Ctx, from: Option<String>, id: Hash, worker: String, first: u64) -> Result<()> {
    let key = signer(ctx, from.as_deref())?;
    let client = ctx.client()?;
    let (list, _) = read_outputs(&client, &worker, &id.0, &key, first).await?;
    let shown = |b: &[u8]| match std::str::from_utf8(b) {
        Ok(t) => serde_json::from_str(t).unwrap_or(serde_json::Value::String(t.to_string())),
        Err(_) => serde_json::Value::String(format!("0x{}", hex::encode(b))),
    };
    if ctx.json {
        let items: Vec<_> = list
            .iter()
            .map(|c| {
                let events: Vec<_> =
                    c.events.iter().map(|e| serde_json::json!({ "name": e.name, "data": shown(&e.data) })).collect();
                serde_json::json!({ "seq": c.seq, "events": events, "output": shown(&c.output), "verified": true })
            })
            .collect();
        ctx.print_json(&serde_json::json!({ "contract": id, "commands": items }))?;
    } else {
        for c in &list {
            for e in &c.events {
                println!("{}\t{}\t{}", c.seq, e.name, shown(&e.data));
            }
        }
        eprintln!(
            "({} commands of yours with events or output; each checked against the chain's events hash)",
            list.len()
        );
    }
    Ok(())
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
            ("stored bytes", format!("{} (as of the last report)", record.stored_bytes)),
            ("storage deposit", format!("{} (smallest unit)", record.storage_deposit)),
            ("incidents", record.incidents.to_string()),
        ]);
        if record.storage_debt > 0 {
            println!(
                "REFUSING COMMANDS: its storage deposit lacks {} (smallest unit); transfer that much to {}",
                record.storage_debt, record.account
            );
        }
    }
    Ok(())
}
