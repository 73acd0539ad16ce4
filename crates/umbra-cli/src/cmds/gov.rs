//! `umbra gov ...` and `umbra treasury`: propose, list, show, vote, delegate and unlock; the treasury's
//! balance and spends.
//!
//! Proposals carry one call named on the command line (`umbra gov propose allow-measurement HEX`) or a
//! batch read from a JSON file (`--file calls.json`: an array of calls in their JSON form, e.g.
//! `[{"type": "admin", "call": {"type": "allow_measurement", "measurement": "…"}},
//! {"type": "treasury_spend", "to": "umbra1…", "amount": "1000000000000"}]`). A governance-owned agent is changed
//! with `agent-control` (or `{"type": "agent_control", "call": {"type": "set_agent_policy", "agent": "0x…",
//! "policy": {…}}}` in a batch).

use super::{block_on, parse_amount_arg, print_rows, resolve_address, send_call, show_amount};
use crate::Ctx;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use umbra_rpc::GovProposalInfo;
use umbra_types::governance::{GovCall, ProposalStatus, VoteChoice};
use umbra_types::registry::AdminCall;
use umbra_types::state_keys::StateKey;
use umbra_types::{Amount, Call, Params};

/// `umbra gov ...`
#[derive(Args, Debug)]
pub(crate) struct GovArgs {
    #[command(subcommand)]
    cmd: GovCmd,
    /// The signing key's name in the keystore [default: the default key].
    #[arg(long, global = true)]
    from: Option<String>,
}

#[derive(Subcommand, Debug)]
enum GovCmd {
    /// Submit a proposal: one call named by KIND, or a JSON batch of calls with --file.
    Propose(ProposeArgs),
    /// Every proposal, newest first, with its state and tally so far.
    List,
    /// One proposal: its calls, the tally so far, blocks left, and the results once enacted.
    Show {
        /// The proposal number.
        id: u64,
    },
    /// Vote on a proposal (a second vote replaces the first).
    Vote {
        /// The proposal number.
        id: u64,
        /// How the vote counts.
        choice: ChoiceArg,
        /// Tokens locked for the vote (free balance, then bonded stake), in whole tokens.
        #[arg(long, value_parser = parse_amount_arg)]
        amount: Amount,
        /// 0 (0.1x, no lock after the vote) to 6 (6x, locked 32 enactment delays).
        #[arg(long, default_value_t = 1)]
        conviction: u8,
        /// Mark the proposal as spam (a failed proposal two thirds marked spam loses its deposit).
        #[arg(long)]
        spam: bool,
    },
    /// Let another account vote with your tokens on proposals you do not vote on yourself.
    Delegate {
        /// The delegate: an address or a local key's name.
        to: String,
        /// Tokens delegated, in whole tokens.
        #[arg(long, value_parser = parse_amount_arg)]
        amount: Amount,
        /// Conviction, as for a vote.
        #[arg(long, default_value_t = 1)]
        conviction: u8,
    },
    /// End your delegation (its tokens stay locked for the conviction's period).
    Undelegate,
    /// Release voting tokens whose locks have ended.
    Unlock,
    /// Approve fast-tracking a security proposal (technical committee members).
    FastTrack {
        /// The proposal number.
        id: u64,
    },
}

/// A vote's choice on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ChoiceArg {
    Aye,
    Nay,
    Abstain,
}

#[derive(Args, Debug)]
struct ProposeArgs {
    #[command(subcommand)]
    kind: Option<ProposeKind>,
    /// A JSON file with an array of calls to propose as one batch (instead of KIND).
    #[arg(long)]
    file: Option<PathBuf>,
    /// The deposit, in whole tokens [default: the chain's minimum].
    #[arg(long, global = true, value_parser = parse_amount_arg)]
    deposit: Option<Amount>,
    /// A description for voters.
    #[arg(long, global = true, default_value = "")]
    description: String,
}

#[derive(Subcommand, Debug)]
enum ProposeKind {
    /// Add a measurement (64 hex digits) to the allow-list.
    AllowMeasurement { measurement: String },
    /// Withdraw a measurement; workers running it are revoked.
    WithdrawMeasurement { measurement: String },
    /// Replace the attestation policy with the one in a JSON file.
    SetPolicy { file: PathBuf },
    /// Appoint a registered worker as gatekeeper.
    AppointGatekeeper { worker: String },
    /// Remove a gatekeeper.
    RemoveGatekeeper { worker: String },
    /// Start a master key rotation.
    RotateMasterKey,
    /// Create an empty cluster.
    CreateCluster { id: u32 },
    /// Make a registered worker a member of a cluster.
    AssignWorker { worker: String, cluster: u32 },
    /// Pause a cluster (no new contracts or commands; emergency-track eligible); `--resume` lifts it.
    PauseCluster {
        id: u32,
        #[arg(long)]
        resume: bool,
    },
    /// Replace every chain parameter with those in a JSON file (validated like genesis).
    SetParams { file: PathBuf },
    /// Pay tokens from the treasury.
    TreasurySpend {
        /// The recipient: an address or a local key's name.
        to: String,
        /// Whole tokens.
        #[arg(value_parser = parse_amount_arg)]
        amount: Amount,
    },
    /// A text proposal that changes nothing.
    Signal { text: String },
    /// Act on an agent that governance owns (`umbra agent transfer ID governance` hands one over).
    AgentControl {
        /// pause, resume, upgrade (ARG: the code file) or transfer (ARG: the new owner).
        action: AgentAction,
        /// The agent id.
        id: umbra_types::Hash,
        /// The code file for `upgrade`, the new owner for `transfer` (an address, a key's name or `governance`).
        arg: Option<String>,
    },
}

/// What `agent-control` does.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum AgentAction {
    Pause,
    Resume,
    Upgrade,
    Transfer,
}

fn read_json<T: serde::de::DeserializeOwned>(file: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not {what}", file.display()))
}

fn admin(call: AdminCall) -> GovCall {
    GovCall::Admin { call }
}

fn calls(ctx: &Ctx, args: &ProposeArgs) -> Result<Vec<GovCall>> {
    use super::registry::{parse_measurement, parse_worker_id};
    let kind = match (&args.kind, &args.file) {
        (Some(_), Some(_)) => bail!("give either a KIND or --file, not both"),
        (None, None) => bail!("give a KIND (see 'umbra gov propose --help') or --file with a JSON batch of calls"),
        (None, Some(file)) => return read_json(file, "a JSON array of governance calls"),
        (Some(kind), None) => kind,
    };
    Ok(vec![match kind {
        ProposeKind::AllowMeasurement { measurement } => {
            admin(AdminCall::AllowMeasurement { measurement: parse_measurement(measurement)? })
        }
        ProposeKind::WithdrawMeasurement { measurement } => {
            admin(AdminCall::WithdrawMeasurement { measurement: parse_measurement(measurement)? })
        }
        ProposeKind::SetPolicy { file } => admin(AdminCall::SetPolicy { policy: read_json(file, "a policy")? }),
        ProposeKind::AppointGatekeeper { worker } => {
            admin(AdminCall::AppointGatekeeper { worker: parse_worker_id(worker)? })
        }
        ProposeKind::RemoveGatekeeper { worker } => {
            admin(AdminCall::RemoveGatekeeper { worker: parse_worker_id(worker)? })
        }
        ProposeKind::RotateMasterKey => admin(AdminCall::StartRotation),
        ProposeKind::PauseCluster { id, resume } => admin(AdminCall::PauseCluster { cluster: *id, paused: !*resume }),
        ProposeKind::CreateCluster { id } => admin(AdminCall::CreateCluster { cluster: *id }),
        ProposeKind::AssignWorker { worker, cluster } => {
            admin(AdminCall::AssignWorker { worker: parse_worker_id(worker)?, cluster: *cluster })
        }
        ProposeKind::SetParams { file } => {
            let params: Params = read_json(file, "chain parameters")?;
            params.validate()?;
            GovCall::SetParams { params: Box::new(params) }
        }
        ProposeKind::TreasurySpend { to, amount } => {
            GovCall::TreasurySpend { to: resolve_address(&ctx.keystore()?, to)?.0, amount: *amount }
        }
        ProposeKind::Signal { text } => GovCall::Signal { text: text.clone() },
        ProposeKind::AgentControl { action, id, arg } => {
            let agent = id.0;
            let need = |what: &str| arg.clone().with_context(|| format!("agent-control {what} needs ARG"));
            let call = match action {
                AgentAction::Pause => Call::PauseAgent { agent },
                AgentAction::Resume => Call::ResumeAgent { agent },
                AgentAction::Upgrade => {
                    let file = need("upgrade")?;
                    Call::UpgradeAgent { agent, code: super::agent::read_code(Path::new(&file))? }
                }
                AgentAction::Transfer => {
                    let new_owner = super::multisig::resolve_owner(ctx, &need("transfer")?)?;
                    Call::TransferAgentOwnership { agent, new_owner }
                }
            };
            GovCall::AgentControl { call: Box::new(call) }
        }
    }])
}

/// The chain's parameters, proven against a finalized state root.
async fn chain_params(ctx: &Ctx) -> Result<Params> {
    let (bytes, _) = ctx.client()?.state_value(&StateKey::SystemParams).await?;
    let bytes = bytes.context("the chain has no parameters")?;
    Ok(umbra_types::decode(&bytes, 1 << 20)?)
}

pub(crate) fn run(ctx: &Ctx, args: GovArgs) -> Result<()> {
    block_on(async {
        let call = match args.cmd {
            GovCmd::List => return list(ctx).await,
            GovCmd::Show { id } => return show(ctx, id).await,
            GovCmd::Propose(p) => {
                let calls = calls(ctx, &p)?;
                let deposit = match p.deposit {
                    Some(d) => d,
                    None => chain_params(ctx).await?.governance.min_deposit,
                };
                Call::Propose { calls, deposit, description: p.description }
            }
            GovCmd::Vote { id, choice, amount, conviction, spam } => {
                let choice = match choice {
                    ChoiceArg::Aye => VoteChoice::Aye,
                    ChoiceArg::Nay => VoteChoice::Nay,
                    ChoiceArg::Abstain => VoteChoice::Abstain,
                };
                Call::Vote { proposal: id, choice, amount, conviction, spam }
            }
            GovCmd::Delegate { to, amount, conviction } => {
                Call::Delegate { to: resolve_address(&ctx.keystore()?, &to)?.0, amount, conviction }
            }
            GovCmd::Undelegate => Call::Undelegate,
            GovCmd::Unlock => Call::UnlockVotes,
            GovCmd::FastTrack { id } => Call::FastTrack { proposal: id },
        };
        let proposing = matches!(call, Call::Propose { .. });
        let receipt = send_call(ctx, args.from.clone(), call).await?;
        if proposing && !ctx.json {
            let store = ctx.keystore()?;
            let signer = match &args.from {
                Some(n) => store.get(n)?.address(),
                None => store.default_key()?.1.address(),
            };
            let mine = ctx
                .client()?
                .gov_proposals()
                .await?
                .into_iter()
                .find(|p| p.proposal.proposer == signer && p.proposal.submitted_at == receipt.height);
            if let Some(p) = mine {
                println!("proposal {} submitted; voting opens at height {}", p.proposal.id, p.proposal.voting_start);
            }
        }
        Ok(())
    })?
}

/// The average block interval over the last (up to) 100 finalized blocks, in milliseconds.
async fn ms_per_block(ctx: &Ctx) -> Option<u64> {
    let client = ctx.client().ok()?;
    let head = client.head().await.ok()?.header;
    let from = head.height.saturating_sub(100).max(1);
    if from >= head.height {
        return None;
    }
    let old = client.block(Some(umbra_rpc::BlockId::Height(from))).await.ok()?.block.header;
    Some(head.timestamp_ms.saturating_sub(old.timestamp_ms) / (head.height - from))
}

/// `N blocks (about T)` for people.
fn blocks_left(n: u64, ms_per_block: Option<u64>) -> String {
    match ms_per_block {
        Some(ms) if ms > 0 => {
            let secs = n.saturating_mul(ms) / 1_000;
            let t = if secs < 120 {
                format!("{secs} s")
            } else if secs < 7_200 {
                format!("{} min", secs / 60)
            } else {
                format!("{} h", secs / 3_600)
            };
            format!("{n} blocks (about {t})")
        }
        _ => format!("{n} blocks"),
    }
}

fn status(p: &GovProposalInfo, ms: Option<u64>) -> String {
    let h = p.height;
    let q = &p.proposal;
    match &q.status {
        ProposalStatus::Open if h < q.voting_start => {
            format!("preparing: voting opens in {} (height {})", blocks_left(q.voting_start - h, ms), q.voting_start)
        }
        ProposalStatus::Open => format!(
            "voting: ends in {} (height {}), {} now",
            blocks_left(q.voting_end.saturating_sub(h), ms),
            q.voting_end,
            if p.passing { "passing" } else { "failing" }
        ),
        ProposalStatus::Passed { enact_at } => {
            format!("passed: enacted in {} (height {enact_at})", blocks_left(enact_at.saturating_sub(h), ms))
        }
        ProposalStatus::Rejected { spam: false } => "rejected (deposit returned)".into(),
        ProposalStatus::Rejected { spam: true } => "rejected as spam (deposit burned)".into(),
        ProposalStatus::Enacted { at } => {
            let failed = q.results.iter().filter(|r| r.is_some()).count();
            format!("enacted at height {at} ({} calls, {failed} failed)", q.results.len())
        }
    }
}

fn kinds(calls: &[GovCall]) -> String {
    calls.iter().map(|c| c.kind()).collect::<Vec<_>>().join(", ")
}

async fn list(ctx: &Ctx) -> Result<()> {
    let all = ctx.client()?.gov_proposals().await?;
    if ctx.json {
        return ctx.print_json(&all);
    }
    if all.is_empty() {
        println!("no proposals");
    }
    let ms = ms_per_block(ctx).await;
    for p in &all {
        let e = if p.proposal.emergency { " [emergency]" } else { "" };
        println!("#{} {}{e}: {}", p.proposal.id, kinds(&p.proposal.calls), status(p, ms));
    }
    Ok(())
}

/// Tenths of a token unit (vote weight) as tokens.
fn weight(w: Amount) -> String {
    show_amount(w / 10)
}

async fn show(ctx: &Ctx, id: u64) -> Result<()> {
    let p = ctx.client()?.gov_proposal(id).await?;
    if ctx.json {
        return ctx.print_json(&p);
    }
    let q = &p.proposal;
    let t = &p.tally;
    let ms = ms_per_block(ctx).await;
    print_rows(&[
        ("proposal", format!("#{}{}", q.id, if q.emergency { " (emergency track)" } else { "" })),
        ("status", status(&p, ms)),
        ("proposer", q.proposer.to_string()),
        ("deposit", show_amount(q.deposit)),
        ("description", q.description.clone()),
        ("voting", format!("heights {} to {}, enactment delay {}", q.voting_start, q.voting_end, q.enactment_delay)),
        ("ayes", weight(t.ayes)),
        ("nays", weight(t.nays)),
        ("abstains", weight(t.abstains)),
        ("turnout", format!("{} of {} needed for quorum", show_amount(t.turnout), show_amount(p.quorum))),
        ("threshold", format!("more than {}.{:02}% ayes", q.threshold_bps / 100, q.threshold_bps % 100)),
        ("spam flags", weight(t.spam)),
        ("at height", p.height.to_string()),
    ]);
    for (i, c) in q.calls.iter().enumerate() {
        let result = match q.results.get(i) {
            Some(None) => " -> ok".to_string(),
            Some(Some(e)) => format!(" -> FAILED: {e}"),
            None => String::new(),
        };
        println!("  call {i}: {}{result}", serde_json::to_string(c)?);
    }
    Ok(())
}

/// `umbra treasury`: the treasury's balance and spend history.
pub(crate) fn treasury(ctx: &Ctx) -> Result<()> {
    block_on(async {
        let t = ctx.client()?.treasury_info().await?;
        if ctx.json {
            return ctx.print_json(&t);
        }
        print_rows(&[
            ("treasury", t.address.to_string()),
            ("balance", show_amount(t.balance)),
            ("spends", t.spends.len().to_string()),
            ("at height", t.height.to_string()),
        ]);
        for s in &t.spends {
            println!("  height {}: {} to {} (proposal #{})", s.height, show_amount(s.amount), s.to, s.proposal);
        }
        Ok(())
    })?
}
