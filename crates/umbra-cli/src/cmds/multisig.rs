//! `umbra multisig ...`: accounts that several keys control together.
//!
//! A multisig's address is derived from its members and threshold (no key exists for it): print it with
//! `umbra multisig address`, fund it with `umbra transfer`, or hand it an agent with `umbra agent transfer ID
//! ADDRESS`. A member then proposes a call to run as the multisig (`umbra multisig propose ... agent-pause ID`);
//! the proposal is the first approval, and the approval that reaches the threshold runs the call.

use super::agent::{PolicyFlags, read_code};
use super::{block_on, parse_amount_arg, print_rows, resolve_address, send_call, show_amount};
use crate::Ctx;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use umbra_types::contracts::contract_account;
use umbra_types::governance::governance_owner;
use umbra_types::multisig::{MAX_OP_LIFETIME, MultisigOp, check_members, multisig_address};
use umbra_types::{Address, Amount, Call, Hash};

/// `umbra multisig ...`
#[derive(Args, Debug)]
#[command(after_help = "\
Example: a 2-of-3 multisig owning an agent
  umbra multisig address --members alice,bob,carol --threshold 2      # prints umbra1...
  umbra agent transfer AGENT_ID umbra1...                             # the owner hands the agent over
  umbra multisig propose --members alice,bob,carol --threshold 2 --from alice agent-pause AGENT_ID
  umbra multisig pending umbra1...                                    # operation 0: 1 of 2 approvals
  umbra multisig approve umbra1... 0 --from bob                       # runs the pause as the multisig
Members are addresses or names of local keys. Any call can be proposed in its JSON form:
  umbra multisig propose ... json '{\"type\": \"pause_agent\", \"agent\": \"0x...\"}'")]
pub(crate) struct MultisigArgs {
    #[command(subcommand)]
    cmd: MultisigCmd,
    /// The signing key's name in the keystore [default: the default key].
    #[arg(long, global = true)]
    from: Option<String>,
}

/// Members and threshold, which name a multisig.
#[derive(Args, Debug, Clone)]
struct Members {
    /// The members, comma-separated: addresses (umbra1...) or names of local keys.
    #[arg(long, value_delimiter = ',', required = true)]
    members: Vec<String>,
    /// Approvals needed (1 to the number of members).
    #[arg(long)]
    threshold: u16,
}

#[derive(Subcommand, Debug)]
enum MultisigCmd {
    /// Print the multisig address of MEMBERS and THRESHOLD (the same set in any order gives the same address).
    Address {
        #[command(flatten)]
        members: Members,
    },
    /// Propose a call to run as the multisig (your approval counts); prints the operation's number.
    Propose {
        #[command(flatten)]
        members: Members,
        /// Blocks the operation stays approvable.
        #[arg(long, default_value_t = 14_400)]
        expires_in: u64,
        #[command(subcommand)]
        call: InnerCall,
    },
    /// Approve a pending operation; the approval that reaches the threshold runs it.
    Approve {
        /// The multisig's address.
        multisig: Address,
        /// The operation's number.
        op: u64,
    },
    /// Drop a pending operation (its proposer; any member once it expired).
    Cancel {
        /// The multisig's address.
        multisig: Address,
        /// The operation's number.
        op: u64,
    },
    /// The multisig's members, threshold, balance and pending operations.
    Pending {
        /// The multisig's address.
        multisig: Address,
    },
}

/// The call a multisig runs.
#[derive(Subcommand, Debug)]
enum InnerCall {
    /// Send tokens from the multisig's account.
    Transfer {
        /// The recipient: an address or a local key's name.
        to: String,
        /// The amount (e.g. 1.5).
        #[arg(value_parser = parse_amount_arg)]
        amount: Amount,
    },
    /// Pause an agent the multisig owns.
    AgentPause {
        /// The agent id.
        id: Hash,
    },
    /// Resume an agent the multisig owns.
    AgentResume {
        /// The agent id.
        id: Hash,
    },
    /// Upgrade an agent the multisig owns to the code in FILE (.js or .ts).
    AgentUpgrade {
        /// The agent id.
        id: Hash,
        /// The new code.
        file: PathBuf,
    },
    /// Change an agent's policy: only the flags given change.
    AgentPolicy {
        /// The agent id.
        id: Hash,
        #[command(flatten)]
        policy: PolicyFlags,
    },
    /// Hand an agent to a new owner (an address, a local key's name, or `governance`).
    AgentTransfer {
        /// The agent id.
        id: Hash,
        /// The new owner.
        new_owner: String,
    },
    /// Send tokens from the multisig to an agent's account.
    AgentFund {
        /// The agent id.
        id: Hash,
        /// The amount.
        #[arg(value_parser = parse_amount_arg)]
        amount: Amount,
    },
    /// Any call in its JSON form (as `umbra block` shows calls), e.g. '{"type": "resume_agent", "agent": "0x..."}'.
    Json {
        /// The call's JSON.
        call: String,
    },
}

/// An owner given on the command line: `governance`, an address, or a local key's name.
pub(crate) fn resolve_owner(ctx: &Ctx, s: &str) -> Result<Address> {
    if s == "governance" {
        return Ok(governance_owner());
    }
    Ok(resolve_address(&ctx.keystore()?, s)?.0)
}

fn members_of(ctx: &Ctx, m: &Members) -> Result<(Vec<Address>, Address)> {
    let store = ctx.keystore()?;
    let list: Vec<Address> =
        m.members.iter().map(|s| resolve_address(&store, s.trim()).map(|a| a.0)).collect::<Result<_>>()?;
    let list = check_members(&list, m.threshold).map_err(|e| anyhow::anyhow!("{e}"))?;
    let address = multisig_address(&list, m.threshold);
    Ok((list, address))
}

async fn inner_call(ctx: &Ctx, call: InnerCall) -> Result<Call> {
    Ok(match call {
        InnerCall::Transfer { to, amount } => Call::Transfer { to: resolve_address(&ctx.keystore()?, &to)?.0, amount },
        InnerCall::AgentPause { id } => Call::PauseAgent { agent: id.0 },
        InnerCall::AgentResume { id } => Call::ResumeAgent { agent: id.0 },
        InnerCall::AgentUpgrade { id, file } => Call::UpgradeAgent { agent: id.0, code: read_code(&file)? },
        InnerCall::AgentPolicy { id, policy } => {
            let record = ctx.client()?.agent(&id.0).await?.with_context(|| format!("no agent {id}"))?;
            Call::SetAgentPolicy { agent: id.0, policy: policy.apply(record.policy) }
        }
        InnerCall::AgentTransfer { id, new_owner } => {
            Call::TransferAgentOwnership { agent: id.0, new_owner: resolve_owner(ctx, &new_owner)? }
        }
        InnerCall::AgentFund { id, amount } => Call::Transfer { to: contract_account(&id.0), amount },
        InnerCall::Json { call } => {
            serde_json::from_str(&call).with_context(|| format!("not a call in JSON: {call}"))?
        }
    })
}

fn signer_address(ctx: &Ctx, from: Option<&str>) -> Result<Address> {
    let store = ctx.keystore()?;
    Ok(match from {
        Some(n) => store.get(n)?.address(),
        None => store.default_key()?.1.address(),
    })
}

/// Runs `umbra multisig ...`.
pub(crate) fn run(ctx: &Ctx, args: MultisigArgs) -> Result<()> {
    let from = args.from;
    block_on(async move {
        match args.cmd {
            MultisigCmd::Address { members } => {
                let (list, address) = members_of(ctx, &members)?;
                if ctx.json {
                    ctx.print_json(&serde_json::json!({
                        "address": address, "members": list, "threshold": members.threshold,
                    }))
                } else {
                    println!("{address}");
                    Ok(())
                }
            }
            MultisigCmd::Propose { members, expires_in, call } => {
                if !(1..=MAX_OP_LIFETIME).contains(&expires_in) {
                    bail!("--expires-in must be 1 to {MAX_OP_LIFETIME} blocks");
                }
                let (list, address) = members_of(ctx, &members)?;
                let me = signer_address(ctx, from.as_deref())?;
                if !list.contains(&me) {
                    bail!("the signing key {me} is not one of the members (use --from)");
                }
                let call = inner_call(ctx, call).await?;
                umbra_types::multisig::check_inner_call(&call).map_err(|e| anyhow::anyhow!("{e}"))?;
                let propose = Call::MultisigPropose {
                    members: list,
                    threshold: members.threshold,
                    call: Box::new(call),
                    expires_in,
                };
                let receipt = send_call(ctx, from.clone(), propose).await?;
                let info = ctx.client()?.multisig_pending(&address).await?;
                let op = info.pending.iter().find(|o| o.created_at == receipt.height && o.proposer == me);
                if !ctx.json {
                    match op {
                        Some(o) => println!(
                            "operation {} proposed to multisig {address}: 1 of {} approvals, expires after height {}",
                            o.id, members.threshold, o.expires_at
                        ),
                        None => println!("executed as multisig {address}"),
                    }
                }
                Ok(())
            }
            MultisigCmd::Approve { multisig, op } => {
                send_call(ctx, from, Call::MultisigApprove { multisig, op }).await?;
                if !ctx.json {
                    let info = ctx.client()?.multisig_pending(&multisig).await?;
                    match (info.pending.iter().find(|o| o.id == op), &info.record) {
                        (Some(o), Some(r)) => {
                            println!("operation {op}: {} of {} approvals", o.approvals.len(), r.threshold)
                        }
                        _ => println!("operation {op} reached its threshold and ran as multisig {multisig}"),
                    }
                }
                Ok(())
            }
            MultisigCmd::Cancel { multisig, op } => {
                send_call(ctx, from, Call::MultisigCancel { multisig, op }).await.map(drop)
            }
            MultisigCmd::Pending { multisig } => pending(ctx, multisig).await,
        }
    })?
}

fn describe(op: &MultisigOp, threshold: u16, height: u64) -> String {
    let state = if op.expires_at < height { "expired".to_string() } else { format!("until height {}", op.expires_at) };
    format!(
        "#{} {} ({} of {threshold} approvals, proposed by {} at {}, {state})",
        op.id,
        op.call.kind(),
        op.approvals.len(),
        op.proposer,
        op.created_at
    )
}

async fn pending(ctx: &Ctx, multisig: Address) -> Result<()> {
    let info = ctx.client()?.multisig_pending(&multisig).await?;
    if ctx.json {
        return ctx.print_json(&info);
    }
    let Some(rec) = &info.record else {
        print_rows(&[
            ("multisig", multisig.to_string()),
            ("balance", show_amount(info.balance)),
            ("members", "unknown: no proposal yet (the address alone does not name them)".into()),
        ]);
        return Ok(());
    };
    print_rows(&[
        ("multisig", multisig.to_string()),
        ("threshold", format!("{} of {}", rec.threshold, rec.members.len())),
        ("members", rec.members.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ")),
        ("balance", show_amount(info.balance)),
        ("pending", info.pending.len().to_string()),
        ("at height", info.height.to_string()),
    ]);
    for op in &info.pending {
        println!("  {}", describe(op, rec.threshold, info.height));
        println!("    call: {}", serde_json::to_string(&op.call)?);
        println!("    approved by: {}", op.approvals.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "));
    }
    Ok(())
}
