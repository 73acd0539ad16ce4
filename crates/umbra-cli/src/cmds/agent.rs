//! `umbra agent ...`: deploy AI agents (JavaScript, or TypeScript stripped locally), call them through a worker
//! of their cluster (sealed by default, the worker's signature checked against the chain), manage their sealed
//! secrets, read their logs as the owner, and control them on chain (pause, resume, upgrade, policy, transfer,
//! fund, info).

use super::{block_on, parse_amount_arg, send_call};
use crate::Ctx;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use umbra_types::agents::{AgentHttpRequest, AgentPolicy};
use umbra_types::contracts::{CodeKind, contract_account, contract_id};
use umbra_types::{Address, Amount, Call, Hash};

/// `umbra agent ...`
#[derive(Args, Debug)]
pub(crate) struct AgentArgs {
    #[command(subcommand)]
    cmd: AgentCmd,
    /// The signing key's name in the keystore [default: the default key].
    #[arg(long, global = true)]
    from: Option<String>,
}

/// Policy settings; on `policy`, only those given change.
#[derive(Args, Debug, Default, Clone)]
pub(crate) struct PolicyFlags {
    /// Serve the agent as plain HTTP at /agents/ID/... too.
    #[arg(long)]
    public: bool,
    /// Serve it sealed only.
    #[arg(long, conflicts_with = "public")]
    private: bool,
    /// An account allowed to call (repeat); sealed, signed calls only once any is set.
    #[arg(long = "caller")]
    callers: Vec<Address>,
    /// Allow any caller again.
    #[arg(long)]
    any_caller: bool,
    /// A host the agent may fetch (repeat; `*.example.com` for subdomains).
    #[arg(long = "egress-allow")]
    egress_allow: Vec<String>,
    /// Wall-clock budget per request in ms.
    #[arg(long)]
    timeout_ms: Option<u32>,
    /// Requests one worker runs at once.
    #[arg(long)]
    max_concurrency: Option<u32>,
    /// Largest request body in bytes.
    #[arg(long)]
    max_request_bytes: Option<u32>,
    /// Requests per minute per worker (0: no cap).
    #[arg(long)]
    requests_per_minute: Option<u32>,
    /// Outbound `fetch` calls per hour per worker, redirect hops included (0: no cap).
    #[arg(long)]
    egress_calls_per_hour: Option<u32>,
    /// Tokens the agent may send from its account with `env.wallet.transfer` in a rolling day (e.g. 2.5 for
    /// 2.5 UMB; 0: none).
    #[arg(long, value_parser = parse_amount_arg)]
    spend_cap_per_day: Option<Amount>,
}

impl PolicyFlags {
    pub(crate) fn apply(&self, mut p: AgentPolicy) -> AgentPolicy {
        if self.public {
            p.public = true;
        }
        if self.private {
            p.public = false;
        }
        if self.any_caller {
            p.callers.clear();
        }
        p.callers.extend(self.callers.iter().copied());
        p.egress_allow.extend(self.egress_allow.iter().cloned());
        if let Some(v) = self.timeout_ms {
            p.timeout_ms = v;
        }
        if let Some(v) = self.max_concurrency {
            p.max_concurrency = v;
        }
        if let Some(v) = self.max_request_bytes {
            p.max_request_bytes = v;
        }
        if let Some(v) = self.requests_per_minute {
            p.requests_per_minute = v;
        }
        if let Some(v) = self.egress_calls_per_hour {
            p.egress_calls_per_hour = v;
        }
        if let Some(v) = self.spend_cap_per_day {
            p.spend_cap_per_day = v;
        }
        p
    }
}

#[derive(Subcommand, Debug)]
enum AgentCmd {
    /// Deploy an agent (a `.js` ES module, or `.ts` with its types stripped here) on a cluster; prints its id.
    Deploy {
        /// The code file.
        file: PathBuf,
        /// The cluster that runs it.
        #[arg(long, default_value_t = 1)]
        cluster: u32,
        /// Makes distinct agents of the same code (UTF-8).
        #[arg(long, default_value = "")]
        salt: String,
        /// A secret NAME=VALUE sealed to the agent's key once its cluster publishes it (repeat).
        #[arg(long = "secret")]
        secrets: Vec<String>,
        #[command(flatten)]
        policy: PolicyFlags,
    },
    /// Call an agent through a worker: sealed to the worker's attested key by default.
    Call {
        /// The agent id (0x...).
        id: Hash,
        /// The worker's URL (http://HOST:PORT, as `umbra worker --query-listen` serves).
        #[arg(long)]
        worker: String,
        /// The path below the agent.
        #[arg(long, default_value = "/")]
        path: String,
        /// The HTTP method [default: POST with --data, otherwise GET].
        #[arg(long)]
        method: Option<String>,
        /// A JSON body.
        #[arg(long)]
        data: Option<String>,
        /// A header NAME:VALUE (repeat).
        #[arg(long = "header")]
        headers: Vec<String>,
        /// Plain HTTP (public agents) instead of sealed.
        #[arg(long)]
        plain: bool,
        /// Sign the sealed request as the --from key (needed when the agent lists callers).
        #[arg(long)]
        signed: bool,
    },
    /// Set or remove sealed secrets.
    Secrets {
        #[command(subcommand)]
        cmd: SecretsCmd,
    },
    /// The agent's console lines kept by a worker, sealed to you (owner only).
    Logs {
        /// The agent id.
        id: Hash,
        /// The worker's URL.
        #[arg(long)]
        worker: String,
    },
    /// The egress receipt roots workers committed on chain for the agent; with --worker, also that worker's
    /// receipts (sealed to you, owner only), each checked against its on-chain root.
    Receipts {
        /// The agent id.
        id: Hash,
        /// A worker's URL to fetch the receipts themselves from.
        #[arg(long)]
        worker: Option<String>,
    },
    /// Stop serving requests (owner only).
    Pause {
        /// The agent id.
        id: Hash,
    },
    /// Serve requests again (owner only).
    Resume {
        /// The agent id.
        id: Hash,
    },
    /// Run new code, keeping storage; the version is recorded (owner only).
    Upgrade {
        /// The agent id.
        id: Hash,
        /// The new code file (.js or .ts).
        file: PathBuf,
    },
    /// Change the policy: only the flags given change (owner only).
    Policy {
        /// The agent id.
        id: Hash,
        #[command(flatten)]
        policy: PolicyFlags,
    },
    /// Hand the agent to another owner (owner only): an account, a multisig address (`umbra multisig address`),
    /// or `governance` (then only enacted proposals can change it: `umbra gov propose agent-control`).
    Transfer {
        /// The agent id.
        id: Hash,
        /// The new owner: an address, a local key's name, or `governance`.
        new_owner: String,
    },
    /// Send tokens to the agent's account.
    Fund {
        /// The agent id.
        id: Hash,
        /// The amount (e.g. 1.5 for 1.5 UMB).
        #[arg(value_parser = parse_amount_arg)]
        amount: Amount,
    },
    /// The agent's owner, state, versions, policy, secret names and wallets (its account and balance, its
    /// Ethereum address of each key epoch, its transfers of the last day).
    Info {
        /// The agent id.
        id: Hash,
    },
    /// The agent's latest attested outputs, each verified here (contract signature, Ethereum signature against
    /// the agent's published address, the posting worker's registration).
    Outputs {
        /// The agent id.
        id: Hash,
    },
}

#[derive(Subcommand, Debug)]
enum SecretsCmd {
    /// Seal VALUE to the agent's key and store it on chain as NAME (replaces an older one: rotation).
    Set {
        /// The agent id.
        id: Hash,
        /// The name (`env.NAME` in the handler).
        name: String,
        /// The value.
        value: String,
        /// Seal to this other agent's key instead (for testing that such a secret is refused).
        #[arg(long, hide = true)]
        seal_to: Option<Hash>,
    },
    /// Remove secret NAME.
    Rm {
        /// The agent id.
        id: Hash,
        /// The name.
        name: String,
    },
}

/// Runs `umbra agent ...`.
pub(crate) fn run(ctx: &Ctx, args: AgentArgs) -> Result<()> {
    let from = args.from;
    block_on(async move {
        match args.cmd {
            AgentCmd::Deploy { file, cluster, salt, secrets, policy } => {
                deploy(ctx, from, &file, cluster, salt, secrets, policy).await
            }
            AgentCmd::Call { id, worker, path, method, data, headers, plain, signed } => {
                call(ctx, from, id, worker, path, method, data, headers, plain, signed).await
            }
            AgentCmd::Secrets { cmd: SecretsCmd::Set { id, name, value, seal_to } } => {
                set_secret(ctx, from, id, seal_to, &name, &value).await
            }
            AgentCmd::Secrets { cmd: SecretsCmd::Rm { id, name } } => {
                send_call(ctx, from, Call::RemoveAgentSecret { agent: id.0, name }).await.map(drop)
            }
            AgentCmd::Logs { id, worker } => logs(ctx, from, id, worker).await,
            AgentCmd::Receipts { id, worker } => receipts(ctx, from, id, worker).await,
            AgentCmd::Pause { id } => send_call(ctx, from, Call::PauseAgent { agent: id.0 }).await.map(drop),
            AgentCmd::Resume { id } => send_call(ctx, from, Call::ResumeAgent { agent: id.0 }).await.map(drop),
            AgentCmd::Upgrade { id, file } => {
                let code = read_code(&file)?;
                send_call(ctx, from, Call::UpgradeAgent { agent: id.0, code }).await.map(drop)
            }
            AgentCmd::Policy { id, policy } => {
                let client = ctx.client()?;
                let record = client.agent(&id.0).await?.with_context(|| format!("no agent {id}"))?;
                let policy = policy.apply(record.policy);
                send_call(ctx, from, Call::SetAgentPolicy { agent: id.0, policy }).await.map(drop)
            }
            AgentCmd::Transfer { id, new_owner } => {
                let new_owner = super::multisig::resolve_owner(ctx, &new_owner)?;
                send_call(ctx, from, Call::TransferAgentOwnership { agent: id.0, new_owner }).await.map(drop)
            }
            AgentCmd::Fund { id, amount } => {
                send_call(ctx, from, Call::Transfer { to: contract_account(&id.0), amount }).await.map(drop)
            }
            AgentCmd::Info { id } => info(ctx, id).await,
            AgentCmd::Outputs { id } => outputs(ctx, id).await,
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

/// The agent's JavaScript: the file as is, or a `.ts` file with its types stripped (oxc, no Node.js).
pub(crate) fn read_code(file: &Path) -> Result<Vec<u8>> {
    let src = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    if file.extension().is_some_and(|e| e == "ts" || e == "mts") {
        return crate::typescript::strip_types(&src, &file.display().to_string()).map(String::into_bytes);
    }
    Ok(src.into_bytes())
}

async fn deploy(
    ctx: &Ctx,
    from: Option<String>,
    file: &Path,
    cluster: u32,
    salt: String,
    secrets: Vec<String>,
    flags: PolicyFlags,
) -> Result<()> {
    let secrets: Vec<(String, String)> = secrets
        .iter()
        .map(|s| s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect::<Option<_>>()
        .context("--secret takes NAME=VALUE")?;
    let code = read_code(file)?;
    let key = signer(ctx, from.as_deref())?;
    let policy = flags.apply(AgentPolicy::default());
    policy.validate().map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    let salt = salt.into_bytes();
    let hash = umbra_types::contracts::code_hash(CodeKind::JavaScript, &code);
    let id = contract_id(&key.address(), &hash, &salt, cluster);
    send_call(ctx, from.clone(), Call::DeployAgent { code, cluster, salt, policy }).await?;
    // The agent is ready once its cluster published its keys (secrets and commands are sealed to them).
    wait_for_keys(ctx, &Hash(id)).await?;
    for (name, value) in &secrets {
        set_secret(ctx, from.clone(), Hash(id), None, name, value).await?;
    }
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "agent": Hash(id), "account": contract_account(&id), "code_hash": hash }))?;
    } else {
        println!("agent {}", Hash(id));
    }
    Ok(())
}

async fn wait_for_keys(ctx: &Ctx, id: &Hash) -> Result<umbra_types::contracts::ContractRecord> {
    let client = ctx.client()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(c) = client.contract(&id.0).await?
            && !c.keys.is_empty()
        {
            return Ok(c);
        }
        if std::time::Instant::now() > deadline {
            bail!("the agent's cluster did not publish its keys within 60 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

async fn set_secret(
    ctx: &Ctx,
    from: Option<String>,
    id: Hash,
    seal_to: Option<Hash>,
    name: &str,
    value: &str,
) -> Result<()> {
    let client = ctx.client()?;
    let chain = client.chain_info().await?;
    let contract = wait_for_keys(ctx, &seal_to.unwrap_or(id)).await?;
    let (sealed, key_epoch) = umbra_sdk::seal_secret(&chain.chain_id, &contract, name, value.as_bytes())?;
    send_call(ctx, from, Call::SetAgentSecret { agent: id.0, name: name.to_string(), key_epoch, sealed }).await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn call(
    ctx: &Ctx,
    from: Option<String>,
    id: Hash,
    worker: String,
    path: String,
    method: Option<String>,
    data: Option<String>,
    header_args: Vec<String>,
    plain: bool,
    signed: bool,
) -> Result<()> {
    let mut headers = Vec::new();
    for h in &header_args {
        let (k, v) = h.split_once(':').with_context(|| format!("--header takes NAME:VALUE, not {h}"))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let body = match &data {
        Some(d) => {
            let v: serde_json::Value = serde_json::from_str(d).with_context(|| format!("--data is not JSON: {d}"))?;
            headers.push(("content-type".into(), "application/json".into()));
            serde_json::to_vec(&v)?
        }
        None => Vec::new(),
    };
    let method =
        method.unwrap_or_else(|| if data.is_some() { "POST".into() } else { "GET".into() }).to_ascii_uppercase();
    let path = if path.starts_with('/') { path } else { format!("/{path}") };
    let request = AgentHttpRequest { method, path, headers, body };
    let client = ctx.client()?;
    let answer = if plain {
        umbra_sdk::call_agent_plain(&client, &worker, &id.0, request).await?
    } else {
        let caller = if signed { Some(signer(ctx, from.as_deref())?) } else { None };
        umbra_sdk::call_agent(&client, &worker, &id.0, request, caller.as_ref()).await?
    };
    let text = String::from_utf8_lossy(&answer.body).to_string();
    if ctx.json {
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        ctx.print_json(&serde_json::json!({
            "status": answer.status,
            "headers": answer.headers,
            "body": body,
            "worker": Hash(answer.worker),
            "sealed": !plain,
            "verified": true,
        }))?;
    } else {
        println!("{text}");
        eprintln!("(status {}, answered by worker {}, signature verified)", answer.status, Hash(answer.worker));
    }
    Ok(())
}

async fn logs(ctx: &Ctx, from: Option<String>, id: Hash, worker: String) -> Result<()> {
    let owner = signer(ctx, from.as_deref())?;
    let client = ctx.client()?;
    let lines = umbra_sdk::agent_logs(&client, &worker, &id.0, &owner).await?;
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "lines": lines }))?;
    } else {
        for l in lines {
            println!("{} {:5} {}", l.time_ms, l.level, l.text);
        }
    }
    Ok(())
}

/// `umbra agent receipts`: the on-chain roots, and with a worker the owner's receipts verified against them.
async fn receipts(ctx: &Ctx, from: Option<String>, id: Hash, worker: Option<String>) -> Result<()> {
    let client = ctx.client()?;
    let commits = umbra_sdk::agent_receipt_commits(&client, &id.0).await?;
    let mut verified = Vec::new();
    if let Some(url) = &worker {
        let owner = signer(ctx, from.as_deref())?;
        let batches = umbra_sdk::agent_receipts(&client, url, &id.0, &owner).await?;
        for b in batches {
            let on_chain = commits.iter().any(|c| c.batch_seq == b.batch_seq && c.root == b.root);
            if !on_chain {
                // Not committed yet (or pruned from the chain's list): nothing to check it against.
                continue;
            }
            if b.receipts.len() != b.proofs.len() {
                bail!(
                    "batch {} from the worker has {} receipts but {} proofs",
                    b.batch_seq,
                    b.receipts.len(),
                    b.proofs.len()
                );
            }
            for (r, p) in b.receipts.iter().zip(&b.proofs) {
                let receipt: umbra_egress::Receipt =
                    umbra_types::decode(r, r.len()).context("a receipt from the worker does not decode")?;
                let proof: umbra_egress::MerkleProof =
                    umbra_types::decode(p, p.len()).context("a proof from the worker does not decode")?;
                if receipt.agent != id.0 || !umbra_egress::verify_receipt(&b.root, &receipt, &proof) {
                    bail!(
                        "a receipt of batch {} ({}) does not verify against the root on chain: the worker's copy is \
                         not what it committed",
                        b.batch_seq,
                        receipt.url
                    );
                }
                verified.push((b.batch_seq, receipt));
            }
        }
    }
    if ctx.json {
        let receipts: Vec<serde_json::Value> = verified
            .iter()
            .map(|(seq, r)| {
                serde_json::json!({
                    "batch_seq": seq,
                    "method": r.method,
                    "url": r.url,
                    "status": r.status,
                    "time_ms": r.time_ms,
                    "request_hash": hex::encode(r.request_hash),
                    "response_hash": hex::encode(r.response_hash),
                    "request_bytes": r.request_bytes,
                    "response_bytes": r.response_bytes,
                    "tls_cert_sha256": r.tls_cert_sha256.map(hex::encode),
                    "error": r.error,
                    "verified": true,
                })
            })
            .collect();
        ctx.print_json(&serde_json::json!({ "agent": id, "commits": commits, "receipts": receipts }))?;
    } else {
        println!("{} receipt batches committed on chain", commits.len());
        for c in &commits {
            println!(
                "  worker {} batch {} at {}: {} receipts, root {}",
                Hash(c.worker),
                c.batch_seq,
                c.height,
                c.count,
                c.root
            );
        }
        if worker.is_some() {
            println!("{} receipts verified against the roots on chain", verified.len());
            for (seq, r) in &verified {
                let cert = r.tls_cert_sha256.map(|c| format!(" cert {}", hex::encode(c))).unwrap_or_default();
                let error = r.error.as_ref().map(|e| format!(" error: {e}")).unwrap_or_default();
                println!("  [{seq}] {} {} -> {} at {}{cert}{error}", r.method, r.url, r.status, r.time_ms);
            }
        }
    }
    Ok(())
}

async fn info(ctx: &Ctx, id: Hash) -> Result<()> {
    let client = ctx.client()?;
    let record = client.agent(&id.0).await?.with_context(|| format!("no agent {id}"))?;
    let contract = client.contract(&id.0).await?.with_context(|| format!("no contract {id}"))?;
    let balance = client.account(&contract.account).await?.balance;
    let owner_kind = client.owner_kind(&record.owner).await?;
    let eth = umbra_sdk::agent_eth_addresses(&client, &id.0).await?;
    let spend = umbra_sdk::agent_spend(&client, &id.0).await?;
    let eth_json: Vec<serde_json::Value> = eth
        .iter()
        .map(|e| {
            serde_json::json!({
                "key_epoch": e.key_epoch,
                "address": umbra_crypto::to_checksum_address(&e.address),
                "height": e.height,
            })
        })
        .collect();
    if ctx.json {
        let secrets: Vec<serde_json::Value> = record
            .secrets
            .iter()
            .map(|s| serde_json::json!({ "name": s.name, "key_epoch": s.key_epoch, "set_at": s.set_at }))
            .collect();
        ctx.print_json(&serde_json::json!({
            "agent": Hash(record.id),
            "owner": record.owner,
            "owner_kind": owner_json(&owner_kind),
            "paused": record.paused,
            "versions": record.versions,
            "policy": record.policy,
            "secrets": secrets,
            "updated_at": record.updated_at,
            "cluster": contract.cluster,
            "account": contract.account,
            "balance": balance.to_string(),
            "keys": contract.keys,
            "wallet": {
                "account": contract.account,
                "balance": balance.to_string(),
                "spend_cap_per_day": record.policy.spend_cap_per_day.to_string(),
                "eth_addresses": eth_json,
                "transfers": spend.transfers,
            },
        }))?;
    } else {
        super::print_rows(&[
            ("agent", id.to_string()),
            ("owner", owner_text(&record.owner, &owner_kind)),
            ("state", if record.paused { "paused".into() } else { "serving".into() }),
            ("cluster", contract.cluster.to_string()),
            ("account", format!("{} ({})", contract.account, super::show_amount(balance))),
            (
                "versions",
                record.versions.iter().map(|v| format!("{}@{}", v.code_hash, v.height)).collect::<Vec<_>>().join(", "),
            ),
            ("public", record.policy.public.to_string()),
            (
                "callers",
                if record.policy.callers.is_empty() { "anyone".into() } else { format!("{:?}", record.policy.callers) },
            ),
            ("secrets", record.secrets.iter().map(|s| s.name.clone()).collect::<Vec<_>>().join(", ")),
            ("spend cap", format!("{} per rolling day", super::show_amount(record.policy.spend_cap_per_day))),
            (
                "eth",
                eth.iter()
                    .map(|e| format!("{} (key epoch {})", umbra_crypto::to_checksum_address(&e.address), e.key_epoch))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (
                "transfers",
                spend
                    .transfers
                    .iter()
                    .map(|t| format!("{} to {} at {}", super::show_amount(t.amount), t.to, t.height))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        ]);
    }
    Ok(())
}

/// The owner's kind for `--json`: `{"kind": "account"}`, `{"kind": "governance"}` or
/// `{"kind": "multisig", "threshold": 2, "members": [...]}`.
fn owner_json(kind: &umbra_sdk::OwnerKind) -> serde_json::Value {
    match kind {
        umbra_sdk::OwnerKind::Account => serde_json::json!({ "kind": "account" }),
        umbra_sdk::OwnerKind::Governance => serde_json::json!({ "kind": "governance" }),
        umbra_sdk::OwnerKind::Multisig(r) => {
            serde_json::json!({ "kind": "multisig", "threshold": r.threshold, "members": r.members })
        }
    }
}

/// The owner for people: the address, and what it stands for when it is governance or a known multisig.
fn owner_text(owner: &Address, kind: &umbra_sdk::OwnerKind) -> String {
    match kind {
        umbra_sdk::OwnerKind::Account => owner.to_string(),
        umbra_sdk::OwnerKind::Governance => format!("governance ({owner}; changed only by enacted proposals)"),
        umbra_sdk::OwnerKind::Multisig(r) => format!(
            "multisig {owner}, {} of {}: {}",
            r.threshold,
            r.members.len(),
            r.members.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// `umbra agent outputs`: the latest attested outputs, verified by the SDK.
async fn outputs(ctx: &Ctx, id: Hash) -> Result<()> {
    let client = ctx.client()?;
    let outputs = umbra_sdk::agent_outputs(&client, &id.0).await?;
    if ctx.json {
        let list: Vec<serde_json::Value> = outputs
            .iter()
            .map(|v| {
                let o = &v.output;
                let text = String::from_utf8_lossy(&o.output);
                serde_json::json!({
                    "index": o.index,
                    "output": text,
                    "json": serde_json::from_slice::<serde_json::Value>(&o.output).ok(),
                    "worker": Hash(o.worker),
                    "worker_active": v.worker_active,
                    "key_epoch": o.key_epoch,
                    "nonce": o.nonce.to_string(),
                    "height": o.height,
                    "signature": hex::encode(o.signature),
                    "eth_address": umbra_crypto::to_checksum_address(&v.eth_address),
                    "eth_signature": format!("0x{}", hex::encode(&o.eth_signature)),
                    "eth_digest": format!("0x{}", hex::encode(umbra_crypto::attested_output_digest(&id.0, o.nonce, &o.output))),
                    "verified": true,
                })
            })
            .collect();
        ctx.print_json(&serde_json::json!({ "agent": id, "outputs": list }))?;
    } else {
        println!(
            "{} attested outputs, each verified (contract and Ethereum signatures, worker on chain)",
            outputs.len()
        );
        for v in &outputs {
            let o = &v.output;
            let active = if v.worker_active { "" } else { " (worker no longer active)" };
            println!(
                "  [{}] at {} by worker {}{active}, key epoch {}, signed by {}: {}",
                o.index,
                o.height,
                Hash(o.worker),
                o.key_epoch,
                umbra_crypto::to_checksum_address(&v.eth_address),
                String::from_utf8_lossy(&o.output)
            );
        }
    }
    Ok(())
}
