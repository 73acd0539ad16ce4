//! `umbra worker-info`, `umbra gk ...`, `umbra cluster ...` and `umbra registry ...`: what the chain knows
//! about TEE workers, gatekeepers, key epochs and clusters, and the administrative calls that change it.
//!
//! The administrative calls here are allowed only from a dev chain's `registry.sudo` account; on other
//! chains the same calls are proposed and voted with `umbra gov propose`.

use super::{block_on, print_rows, send_call};
use crate::Ctx;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use umbra_tee::Measurement;
use umbra_types::registry::{AdminCall, KeysRecord, WorkerIdHex};
use umbra_types::{Call, WorkerId, WorkerRecord};

/// `umbra worker-info [ID]`
#[derive(Args, Debug)]
pub(crate) struct WorkerInfoArgs {
    /// A worker id (64 hex digits); without it, every registered worker.
    id: Option<String>,
}

/// `umbra gk ...`
#[derive(Args, Debug)]
pub(crate) struct GkArgs {
    #[command(subcommand)]
    cmd: GkCmd,
    /// The signing key's name in the keystore [default: the default key].
    #[arg(long, global = true)]
    from: Option<String>,
}

#[derive(Subcommand, Debug)]
enum GkCmd {
    /// Gatekeepers, master public key, key epoch and rotation state.
    Status,
    /// Appoint a registered worker as gatekeeper (dev chain administrator).
    Appoint {
        /// The worker id.
        worker: String,
    },
    /// Remove a gatekeeper (dev chain administrator).
    Remove {
        /// The worker id.
        worker: String,
    },
    /// Start a master key rotation to the next key epoch (dev chain administrator).
    Rotate,
}

/// `umbra cluster ...`
#[derive(Args, Debug)]
pub(crate) struct ClusterArgs {
    #[command(subcommand)]
    cmd: ClusterCmd,
    /// The signing key's name in the keystore [default: the default key].
    #[arg(long, global = true)]
    from: Option<String>,
}

#[derive(Subcommand, Debug)]
enum ClusterCmd {
    /// Every cluster with its members and public keys.
    List,
    /// Create an empty cluster (dev chain administrator).
    Create {
        /// The new cluster's id.
        id: u32,
    },
    /// Make a registered worker a member of a cluster (dev chain administrator).
    Assign {
        /// The worker id.
        worker: String,
        /// The cluster id.
        cluster: u32,
    },
    /// Pause a cluster: no new contracts or commands (dev chain administrator; governance elsewhere).
    Pause {
        /// The cluster id.
        id: u32,
        /// Resume it instead.
        #[arg(long)]
        resume: bool,
    },
    /// Set a cluster's own contract gas price and code size limit (dev chain administrator; governance
    /// elsewhere). An omitted value falls back to the chain's `params.contracts`.
    Contracts {
        /// The cluster id.
        id: u32,
        /// Price of one unit of gas, in the smallest token unit.
        #[arg(long)]
        gas_price: Option<u64>,
        /// Largest code an instance on this cluster may run, in bytes.
        #[arg(long)]
        max_code_bytes: Option<u32>,
    },
    /// Set a cluster's storage deposit per byte of its contracts' code and state (dev chain administrator;
    /// governance elsewhere). Omitted: the chain's `params.contracts.storage_deposit_per_byte`.
    StorageDeposit {
        /// The cluster id.
        id: u32,
        /// Tokens, in the smallest unit, reserved per stored byte.
        #[arg(long)]
        per_byte: Option<u64>,
    },
}

/// `umbra registry ...`
#[derive(Args, Debug)]
pub(crate) struct RegistryArgs {
    #[command(subcommand)]
    cmd: RegistryCmd,
    /// The signing key's name in the keystore [default: the default key].
    #[arg(long, global = true)]
    from: Option<String>,
}

#[derive(Subcommand, Debug)]
enum RegistryCmd {
    /// The attestation policy and the measurement allow-list.
    Policy,
    /// Add a measurement (64 hex digits) to the allow-list (dev chain administrator).
    Allow {
        /// The measurement.
        measurement: String,
    },
    /// Withdraw a measurement; workers running it are revoked (dev chain administrator).
    Withdraw {
        /// The measurement.
        measurement: String,
    },
    /// Store Intel collateral (a JSON file) on chain; anyone may.
    Collateral {
        /// The collateral file.
        file: std::path::PathBuf,
    },
}

/// Parses a worker id written as 64 hex digits.
pub(crate) fn parse_worker_id(s: &str) -> Result<WorkerId> {
    let bytes = hex::decode(s.trim().trim_start_matches("0x")).with_context(|| format!("'{s}' is not hex"))?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("a worker id is 32 bytes (64 hex digits)"))
}

pub(crate) fn parse_measurement(s: &str) -> Result<Measurement> {
    Measurement::from_hex(s.trim()).map_err(|e| anyhow::anyhow!("'{s}' is not a measurement (64 hex digits): {e}"))
}

fn short(id: &[u8; 32]) -> String {
    hex::encode(id)
}

pub(crate) fn worker_info(ctx: &Ctx, args: WorkerInfoArgs) -> Result<()> {
    block_on(async {
        let client = ctx.client()?;
        match args.id {
            Some(id) => {
                let id = parse_worker_id(&id)?;
                let (record, at) = client.worker(&id).await?;
                let Some(w) = record else {
                    bail!("no worker {} is registered (at height {})", short(&id), at.height())
                };
                // Compute economics (benchmark, heartbeats): shown as the node reports it.
                let econ = client.econ_worker(&id).await.ok();
                if ctx.json {
                    return ctx.print_json(
                        &serde_json::json!({ "height": at.height(), "proven": true, "worker": w, "economics": econ }),
                    );
                }
                print_worker(&w, at.height());
                if let Some(e) = econ {
                    let r = &e.record;
                    let session = match &r.session {
                        Some(s) => format!(
                            "{:?}, {}responsive{}",
                            s.state,
                            if s.responsive { "" } else { "NOT " },
                            s.pending
                                .as_ref()
                                .map(|p| format!(", heartbeat due by height {}", p.deadline))
                                .unwrap_or_default()
                        ),
                        None => "not computing".into(),
                    };
                    print_rows(&[
                        ("benchmark", format!("score {} (initial {})", r.score, r.initial_score)),
                        ("heartbeats", format!("{} answered, {} missed", r.answered, r.missed)),
                        ("session", session),
                    ]);
                }
                println!("(record proven against the finalized state root at height {})", at.height());
                Ok(())
            }
            None => {
                let status = client.registry_status().await?;
                if ctx.json {
                    return ctx.print_json(&serde_json::json!({ "height": status.height, "workers": status.workers }));
                }
                if status.workers.is_empty() {
                    println!("no workers registered (height {})", status.height);
                }
                for w in &status.workers {
                    print_worker(w, status.height);
                    println!();
                }
                Ok(())
            }
        }
    })?
}

fn print_worker(w: &WorkerRecord, height: u64) {
    let state = match (&w.revoked, w.is_active(height)) {
        (Some(r), _) => format!("REVOKED: {r}"),
        (None, false) => "EXPIRED: attestation must be renewed".to_string(),
        (None, true) => "active".to_string(),
    };
    let tee = if w.tee.is_simulated() {
        format!("{} (SIMULATED: no hardware protects this worker)", w.tee)
    } else {
        w.tee.to_string()
    };
    print_rows(&[
        ("worker", short(&w.id)),
        ("state", state),
        ("tee", tee),
        ("measurement", w.measurement.to_hex()),
        ("tcb status", format!("{}{}", w.tcb_status, advisories(&w.advisories))),
        ("confidence", format!("{} ({:?})", w.confidence.level(), w.confidence)),
        ("operator", w.operator.to_string()),
        ("x25519", short(&w.x25519)),
        ("registered", format!("height {} (attested {}, expires {})", w.registered_at, w.attested_at, w.expires_at)),
        ("cluster", w.cluster.map(|c| c.to_string()).unwrap_or_else(|| "none".into())),
        ("gatekeeper", if w.gatekeeper { "yes".into() } else { "no".into() }),
        ("key epoch", w.key_epoch.to_string()),
        (
            "commitment",
            w.commitment.map(|(h, s)| format!("height {h}, state {s}")).unwrap_or_else(|| "none yet".into()),
        ),
    ]);
}

fn advisories(a: &[String]) -> String {
    if a.is_empty() { String::new() } else { format!(" ({})", a.join(", ")) }
}

fn hex_opt(k: &Option<WorkerIdHex>) -> String {
    k.map(|k| short(&k.0)).unwrap_or_else(|| "none".into())
}

fn print_keys(k: &KeysRecord, workers: &[WorkerRecord]) {
    let rotation = match &k.rotation {
        None => "none".to_string(),
        Some(r) => format!(
            "to epoch {} since height {} (leader {}, new key {}, {} acknowledgements pending)",
            r.new_epoch,
            r.started_at,
            short(&r.leader.0),
            if r.master_public.is_some() { "published" } else { "not yet published" },
            r.pending.len()
        ),
    };
    print_rows(&[
        ("key epoch", if k.key_epoch == 0 { "0 (no master key yet)".into() } else { k.key_epoch.to_string() }),
        ("master public key", hex_opt(&k.master_public)),
        ("gatekeeper key", hex_opt(&k.gatekeeper_key)),
        ("rotation", rotation),
        ("gatekeepers", k.gatekeepers.len().to_string()),
    ]);
    for g in &k.gatekeepers {
        let held = workers.iter().find(|w| w.id == g.0).map(|w| w.key_epoch).unwrap_or(0);
        println!("  {}  holds key epoch {held}", short(&g.0));
    }
}

pub(crate) fn gk(ctx: &Ctx, args: GkArgs) -> Result<()> {
    block_on(async {
        let call = match args.cmd {
            GkCmd::Status => {
                let s = ctx.client()?.registry_status().await?;
                if ctx.json {
                    return ctx.print_json(&serde_json::json!({ "height": s.height, "keys": s.keys }));
                }
                print_keys(&s.keys, &s.workers);
                return Ok(());
            }
            GkCmd::Appoint { worker } => AdminCall::AppointGatekeeper { worker: parse_worker_id(&worker)? },
            GkCmd::Remove { worker } => AdminCall::RemoveGatekeeper { worker: parse_worker_id(&worker)? },
            GkCmd::Rotate => AdminCall::StartRotation,
        };
        send_call(ctx, args.from, Call::Admin { call }).await.map(|_| ())
    })?
}

pub(crate) fn cluster(ctx: &Ctx, args: ClusterArgs) -> Result<()> {
    block_on(async {
        let call = match args.cmd {
            ClusterCmd::List => {
                let s = ctx.client()?.registry_status().await?;
                if ctx.json {
                    return ctx.print_json(&serde_json::json!({ "height": s.height, "clusters": s.clusters }));
                }
                if s.clusters.is_empty() {
                    println!("no clusters");
                }
                for c in &s.clusters {
                    println!(
                        "cluster {}: {} members{}",
                        c.id,
                        c.members.len(),
                        if c.paused { " (PAUSED)" } else { "" }
                    );
                    for m in &c.members {
                        println!("  member {}", short(&m.0));
                    }
                    for (epoch, k) in &c.keys {
                        println!("  key epoch {epoch}: x25519 {} ed25519 {}", short(&k.x25519), short(&k.ed25519));
                    }
                }
                return Ok(());
            }
            ClusterCmd::Create { id } => AdminCall::CreateCluster { cluster: id },
            ClusterCmd::Pause { id, resume } => AdminCall::PauseCluster { cluster: id, paused: !resume },
            ClusterCmd::Contracts { id, gas_price, max_code_bytes } => {
                AdminCall::SetClusterContracts { cluster: id, gas_price, max_code_bytes }
            }
            ClusterCmd::StorageDeposit { id, per_byte } => {
                AdminCall::SetClusterStorageDeposit { cluster: id, per_byte }
            }
            ClusterCmd::Assign { worker, cluster } => {
                AdminCall::AssignWorker { worker: parse_worker_id(&worker)?, cluster }
            }
        };
        send_call(ctx, args.from, Call::Admin { call }).await.map(|_| ())
    })?
}

pub(crate) fn registry(ctx: &Ctx, args: RegistryArgs) -> Result<()> {
    block_on(async {
        let call = match args.cmd {
            RegistryCmd::Policy => {
                let s = ctx.client()?.registry_status().await?;
                if ctx.json {
                    return ctx.print_json(&serde_json::json!({ "height": s.height, "policy": s.policy }));
                }
                let p = &s.policy;
                let kinds: Vec<String> = p.accepted_kinds.iter().map(|k| k.to_string()).collect();
                let tcb: Vec<String> = p.accepted_tcb_statuses.iter().map(|t| t.to_string()).collect();
                print_rows(&[
                    ("accepted kinds", kinds.join(", ")),
                    (
                        "dev attestation",
                        if p.dev_enabled() { "ENABLED (simulated, dev chain)".into() } else { "refused".into() },
                    ),
                    ("tcb statuses", tcb.join(", ")),
                    ("advisories", p.allowed_advisories.iter().cloned().collect::<Vec<_>>().join(", ")),
                    ("collateral", format!("{} stored", s.collateral.len())),
                    ("measurements", p.measurements.len().to_string()),
                ]);
                for m in &p.measurements {
                    println!("  {}", m.to_hex());
                }
                return Ok(());
            }
            RegistryCmd::Allow { measurement } => {
                Call::Admin { call: AdminCall::AllowMeasurement { measurement: parse_measurement(&measurement)? } }
            }
            RegistryCmd::Withdraw { measurement } => {
                Call::Admin { call: AdminCall::WithdrawMeasurement { measurement: parse_measurement(&measurement)? } }
            }
            RegistryCmd::Collateral { file } => {
                let collateral = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
                umbra_tee::Collateral::from_json(&collateral)
                    .with_context(|| format!("{} is not DCAP collateral JSON", file.display()))?;
                Call::UpdateCollateral { collateral }
            }
        };
        send_call(ctx, args.from, call).await.map(|_| ())
    })?
}
