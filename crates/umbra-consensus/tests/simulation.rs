//! Seeded fault simulations (issue 3.6) on Commonware's deterministic runtime and simulated p2p:
//! random partitions, lossy and jittery links, crashes and restarts with storage kept, an
//! equivocating validator, and a peer sending garbage, oversized and replayed messages.
//!
//! Every scenario prints its seed when it fails. Seeds: each test runs a few by default (CI stays
//! well under a minute); `UMBRA_SIM_SEEDS=N` runs `N` seeds per scenario instead, and
//! `UMBRA_SIM_SEED=S` replays exactly seed `S`.

mod common;

use common::{genesis_block, next_root};
use commonware_codec::{Decode as _, DecodeExt as _, Encode as _};
use commonware_consensus::{
    simplex::{
        scheme::ed25519::Scheme,
        types::{Finalization, Finalize, Notarize, Nullify, Proposal, Vote},
    },
    types::{Epoch, Round, View},
};
use commonware_cryptography::{Signer as _, certificate::Verifier as _, ed25519, sha256};
use commonware_macros::select;
use commonware_p2p::{
    Receiver as _, Recipients, Sender as _,
    simulated::{self, Link, Network, Oracle},
    utils::mux,
};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Handle, Runner as _, Spawner, Supervisor as _, deterministic};
use commonware_utils::{NZUsize, ordered::Set, probability};
use rand_core::Rng as _;
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Debug,
    sync::{Arc, Mutex},
    time::Duration,
};
use umbra_consensus::{
    APPLICATION_CHANNEL, BACKFILL_CHANNEL, BLOCK_CHANNEL, CERTIFICATE_CHANNEL, Channels, ConsensusConfig,
    ConsensusHandle, Executor, ProposeContext, RESOLVER_CHANNEL, Timeouts, VOTE_CHANNEL, start_with_channels,
    validator_key, verify_evidence,
};
use umbra_types::{Block, Hash, Header, ValidatorKey};

const NAMESPACE: &[u8] = b"umbra-sim";
const MAX_BLOCK_BYTES: usize = 1 << 20;
const CHANNELS: [u64; 6] =
    [VOTE_CHANNEL, CERTIFICATE_CHANNEL, RESOLVER_CHANNEL, BLOCK_CHANNEL, BACKFILL_CHANNEL, APPLICATION_CHANNEL];
/// Channels the engine multiplexes per epoch (their messages start with a varint subchannel).
const MUXED: [u64; 3] = [VOTE_CHANNEL, CERTIFICATE_CHANNEL, RESOLVER_CHANNEL];

type Ctx = deterministic::Context;
type Pk = ed25519::PublicKey;
type Channel = (simulated::Sender<Pk, Ctx>, simulated::Receiver<Pk>);

// ---------------------------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------------------------

/// The seeds a scenario runs: `UMBRA_SIM_SEED=S` alone if set, else `UMBRA_SIM_SEEDS` (or
/// `default`) consecutive seeds from `base`.
fn seeds(base: u64, default: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("UMBRA_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![seed];
    }
    let count = std::env::var("UMBRA_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    (base..base + count).collect()
}

/// Prints the seed if the scenario panics, so the failure can be replayed with `UMBRA_SIM_SEED`.
struct SeedGuard(&'static str, u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("scenario `{}` failed with seed {} (replay: UMBRA_SIM_SEED={})", self.0, self.1, self.1);
        }
    }
}

/// A seeded draw from `range` (the runtime's RNG, so the whole run replays from the seed).
fn pick(ctx: &mut Ctx, range: std::ops::Range<u64>) -> u64 {
    range.start + ctx.next_u64() % (range.end - range.start)
}

/// Sleeps a seeded random number of milliseconds from `range`.
async fn pause(ctx: &mut Ctx, range: std::ops::Range<u64>) {
    let duration = Duration::from_millis(pick(ctx, range));
    ctx.sleep(duration).await;
}

fn random_bytes(ctx: &mut Ctx, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    ctx.fill_bytes(&mut bytes);
    bytes
}

// ---------------------------------------------------------------------------------------------
// Executor: the state root is a hash chain over heights (deterministic; verify recomputes it).
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Ledger {
    /// Applied blocks by height: the node's durable state, kept across crashes.
    applied: BTreeMap<u64, Block>,
    /// Every height `finalized` was called with, in call order.
    deliveries: Vec<u64>,
    /// Gossip received: count and largest size.
    gossip: (usize, usize),
}

#[derive(Clone, Default)]
struct TestExecutor {
    ledger: Arc<Mutex<Ledger>>,
}

impl TestExecutor {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("ledger lock")
    }

    fn tip(&self) -> u64 {
        self.ledger().applied.keys().next_back().copied().unwrap_or(0)
    }
}

impl Executor for TestExecutor {
    async fn propose(&self, parent: Block, ctx: ProposeContext) -> Option<Block> {
        Some(Block {
            header: Header {
                height: ctx.height,
                parent: ctx.parent_digest,
                timestamp_ms: parent.header.timestamp_ms + 1,
                proposer: ctx.proposer,
                epoch: ctx.epoch,
                tx_root: Hash::ZERO,
                state_root: next_root(&parent, ctx.height),
                messages_root: Hash::ZERO,
                next_committee: None,
            },
            txs: vec![],
        })
    }

    async fn verify(&self, parent: Block, block: Block) -> bool {
        block.header.state_root == next_root(&parent, block.header.height)
            && block.header.timestamp_ms > parent.header.timestamp_ms
    }

    async fn finalized(&self, block: Block) {
        let mut ledger = self.ledger();
        let height = block.header.height;
        ledger.deliveries.push(height);
        let tip = ledger.applied.keys().next_back().copied();
        match ledger.applied.get(&height) {
            // Re-delivery after a restart: idempotent, and it must be the same block.
            Some(existing) => assert_eq!(existing, &block, "a different block re-delivered at {height}"),
            None => {
                assert_eq!(height, tip.map_or(0, |t| t + 1), "finalized heights must be contiguous");
                if let Some(parent) = tip.and_then(|t| ledger.applied.get(&t)) {
                    assert_eq!(block.header.parent, parent.hash(), "finalized block does not extend the chain");
                    assert_eq!(block.header.state_root, next_root(parent, height), "finalized a wrong state root");
                }
                ledger.applied.insert(height, block);
            }
        }
    }

    async fn gossip(&self, _from: ValidatorKey, bytes: Vec<u8>) {
        let mut ledger = self.ledger();
        ledger.gossip.0 += 1;
        ledger.gossip.1 = ledger.gossip.1.max(bytes.len());
    }
}

// ---------------------------------------------------------------------------------------------
// Network harness
// ---------------------------------------------------------------------------------------------

fn runner(seed: u64) -> deterministic::Runner {
    common::runner(seed, Duration::from_secs(1_200))
}

fn genesis() -> Block {
    genesis_block(None)
}

fn config(signer: ed25519::PrivateKey, committee: &[ValidatorKey], index: usize) -> ConsensusConfig {
    ConsensusConfig {
        namespace: NAMESPACE.to_vec(),
        signer,
        committee: committee.to_vec(),
        epoch_length: u64::MAX,
        genesis: genesis(),
        partition_prefix: format!("validator-{index}"),
        max_block_bytes: MAX_BLOCK_BYTES,
        timeouts: Timeouts::default(),
        gossip_rate_per_sec: 1_000,
    }
}

fn perfect_link() -> Link {
    Link { latency: Duration::from_millis(5), jitter: Duration::from_millis(1), success_rate: probability!(1.0) }
}

/// 10 % loss and jitter of half the mean latency.
fn lossy_link() -> Link {
    Link { latency: Duration::from_millis(10), jitter: Duration::from_millis(5), success_rate: probability!(0.9) }
}

struct Sim {
    oracle: Oracle<Pk, Ctx>,
    keys: Vec<ed25519::PrivateKey>,
    pks: Vec<Pk>,
    committee: Vec<ValidatorKey>,
    link: Link,
    max_size: u32,
}

impl Sim {
    /// `n` validators, fully linked with `link`. With `disconnect_on_block`, a blocked peer's
    /// messages stop reaching its blocker (as on the authenticated network); without, every
    /// message still arrives and must be rejected again.
    async fn new(ctx: &Ctx, n: u64, link: Link, disconnect_on_block: bool) -> Self {
        let keys: Vec<_> = (0..n).map(|i| ed25519::PrivateKey::from_seed(3_000 + i)).collect();
        let pks: Vec<Pk> = keys.iter().map(|k| k.public_key()).collect();
        let committee: Vec<_> = pks.iter().map(validator_key).collect();
        let max_size = config(keys[0].clone(), &committee, 0).max_message_size();
        let (network, oracle) = Network::new_with_peers(
            ctx.child("network"),
            simulated::Config {
                max_size,
                max_peers_per_set: NZUsize!(n as usize),
                disconnect_on_block,
                tracked_peer_sets: NZUsize!(1),
            },
            pks.iter().cloned(),
        )
        .await;
        network.start();
        let sim = Self { oracle, keys, pks, committee, link, max_size };
        for a in 0..n as usize {
            for b in 0..n as usize {
                if a != b {
                    sim.oracle.add_link(sim.pks[a].clone(), sim.pks[b].clone(), sim.link.clone()).await.expect("link");
                }
            }
        }
        sim
    }

    /// Registers the six channels for validator `i`, in channel-id order.
    async fn channels(&self, i: usize) -> Vec<Channel> {
        let control = self.oracle.control(self.pks[i].clone());
        let quota = commonware_runtime::Quota::per_second(commonware_utils::NZU32!(1_000));
        let mut registered = Vec::new();
        for channel in CHANNELS {
            registered.push(control.register(channel, quota).await.expect("register"));
        }
        registered
    }

    /// Starts honest validator `i` as a child task of `ctx`; aborting the task crashes it (its
    /// storage partitions, and the executor's ledger, survive for a restart).
    async fn start(&self, ctx: &Ctx, i: usize, executor: TestExecutor) -> (ConsensusHandle, Handle<()>) {
        let mut it = self.channels(i).await.into_iter();
        let mut next = || it.next().expect("six channels");
        let channels = Channels {
            votes: next(),
            certificates: next(),
            resolver: next(),
            blocks: next(),
            backfill: next(),
            application: next(),
        };
        let cfg = config(self.keys[i].clone(), &self.committee, i);
        let manager = self.oracle.manager();
        let control = self.oracle.control(self.pks[i].clone());
        let (tx, rx) = futures::channel::oneshot::channel();
        let task = ctx.child("validator").with_attribute("index", i).spawn(move |ctx| async move {
            let handle = start_with_channels(ctx.child("node"), cfg, channels, manager, control, executor)
                .await
                .expect("engine starts");
            let _ = tx.send(handle);
            futures::future::pending::<()>().await;
        });
        (rx.await.expect("started"), task)
    }

    /// Cuts every link between `side` and the rest, both directions.
    async fn partition(&self, side: &[usize]) {
        for (a, b) in self.crossing(side) {
            self.oracle.remove_link(self.pks[a].clone(), self.pks[b].clone()).await.expect("unlink");
        }
    }

    /// Restores the links [`Sim::partition`] cut.
    async fn heal(&self, side: &[usize]) {
        for (a, b) in self.crossing(side) {
            self.oracle.add_link(self.pks[a].clone(), self.pks[b].clone(), self.link.clone()).await.expect("link");
        }
    }

    fn crossing(&self, side: &[usize]) -> Vec<(usize, usize)> {
        let n = self.pks.len();
        let mut pairs = Vec::new();
        for a in side.iter().copied() {
            for b in (0..n).filter(|b| !side.contains(b)) {
                pairs.push((a, b));
                pairs.push((b, a));
            }
        }
        pairs
    }
}

/// Waits (in simulated time) until every executor has applied `height`, or panics at `deadline`.
async fn wait_for_height(ctx: &Ctx, executors: &[&TestExecutor], height: u64, deadline: Duration) {
    let poll = async {
        while !executors.iter().all(|e| e.tip() >= height) {
            ctx.sleep(Duration::from_millis(10)).await;
        }
    };
    select! {
        _ = poll => {},
        _ = ctx.sleep(deadline) => {
            let tips: Vec<u64> = executors.iter().map(|e| e.tip()).collect();
            panic!("not all nodes reached height {height} within {deadline:?}: tips {tips:?}");
        },
    }
}

/// Safety across nodes: no height has two different finalized blocks, and every node that applied
/// a height has the same state root there (each node's chain is contiguous from genesis with
/// `next_root` roots, which `finalized` checks on every apply). Returns the lowest tip.
fn assert_one_chain(executors: &[&TestExecutor]) -> u64 {
    let ledgers: Vec<_> = executors.iter().map(|e| e.ledger()).collect();
    let highest = ledgers.iter().filter_map(|l| l.applied.keys().next_back().copied()).max().unwrap_or(0);
    for h in 0..=highest {
        let mut first: Option<(usize, &Block)> = None;
        for (i, ledger) in ledgers.iter().enumerate() {
            let Some(block) = ledger.applied.get(&h) else { continue };
            match first {
                None => first = Some((i, block)),
                Some((j, other)) => {
                    assert_eq!(
                        block.header.state_root, other.header.state_root,
                        "nodes {j} and {i} have different state roots at height {h}"
                    );
                    assert_eq!(
                        block.hash(),
                        other.hash(),
                        "nodes {j} and {i} finalized different blocks at height {h}"
                    );
                }
            }
        }
    }
    assert!(ledgers.iter().all(|l| l.applied.get(&0) == Some(&genesis())));
    ledgers.iter().map(|l| l.applied.keys().next_back().copied().unwrap_or(0)).min().unwrap_or(0)
}

/// Every finality certificate a node stores verifies (namespace + committee, like a light
/// client) and covers exactly the block every node applied at that height.
async fn assert_certificates_match(
    ctx: &mut Ctx,
    committee: &[ValidatorKey],
    handles: &[&ConsensusHandle],
    executors: &[&TestExecutor],
    upto: u64,
) -> usize {
    let participants = Set::from_iter_dedup(committee.iter().map(|k| umbra_consensus::public_key(k).expect("key")));
    let verifier = Scheme::verifier(NAMESPACE, participants);
    let mut checked = 0;
    for h in 1..=upto {
        let expected = executors[0].ledger().applied[&h].hash();
        for (i, handle) in handles.iter().enumerate() {
            let Some(bytes) = handle.finalization(h).await else { continue };
            let finalization =
                Finalization::<Scheme, sha256::Digest>::decode_cfg(bytes, &verifier.certificate_codec_config())
                    .expect("certificate decodes");
            assert!(finalization.verify(ctx, &verifier, &Sequential), "node {i}: certificate at {h} verifies");
            assert_eq!(finalization.proposal.payload.0, expected.0, "node {i}: certificate at {h} names another block");
            checked += 1;
        }
    }
    checked
}

// ---------------------------------------------------------------------------------------------
// 1. Partitions, link loss, crashes and restarts
// ---------------------------------------------------------------------------------------------

/// Three fault rounds per seed: at seeded random times, split the network into two random sides
/// (one of 1..=n/2 validators), crash a random validator during the split, heal, restart it from
/// its storage. Then every node must make `PROGRESS` more heights.
fn partitions_and_crashes(seed: u64, n: u64) {
    const ROUNDS: usize = 3;
    const PROGRESS: u64 = 10;
    let _guard = SeedGuard("random_partitions_link_loss_and_crashes_never_fork_and_heal", seed);
    runner(seed).start(|mut ctx| async move {
        let sim = Sim::new(&ctx, n, lossy_link(), true).await;
        let n = n as usize;
        let executors: Vec<TestExecutor> = (0..n).map(|_| TestExecutor::default()).collect();
        let mut handles = Vec::new();
        let mut tasks = Vec::new();
        for (i, executor) in executors.iter().enumerate() {
            let (handle, task) = sim.start(&ctx, i, executor.clone()).await;
            handles.push(handle);
            tasks.push(Some(task));
        }
        let all: Vec<&TestExecutor> = executors.iter().collect();
        wait_for_height(&ctx, &all, 3, Duration::from_secs(60)).await;

        let mut log = Vec::new();
        for _ in 0..ROUNDS {
            pause(&mut ctx, 300..2_000).await;
            // A random side of 1..=n/2 validators; the other side may or may not keep a quorum.
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                order.swap(i, pick(&mut ctx, 0..i as u64 + 1) as usize);
            }
            let side: Vec<usize> = order[..pick(&mut ctx, 1..n as u64 / 2 + 1) as usize].to_vec();
            sim.partition(&side).await;
            let split_at = all.iter().map(|e| e.tip()).max().unwrap_or(0);

            pause(&mut ctx, 100..1_500).await;
            let victim = pick(&mut ctx, 0..n as u64) as usize;
            let task = tasks[victim].take().expect("running");
            task.abort();
            let _ = task.await;
            let crashed_at = executors[victim].tip();

            pause(&mut ctx, 1_000..4_000).await;
            sim.heal(&side).await;
            pause(&mut ctx, 0..1_500).await;
            let (handle, task) = sim.start(&ctx, victim, executors[victim].clone()).await;
            handles[victim] = handle;
            tasks[victim] = Some(task);
            assert_one_chain(&all);
            log.push(format!("split {side:?} at {split_at}, crashed {victim} at {crashed_at}"));
        }

        // Healed and everyone running: every node makes progress.
        let target = all.iter().map(|e| e.tip()).max().unwrap_or(0) + PROGRESS;
        wait_for_height(&ctx, &all, target, Duration::from_secs(180)).await;
        let common = assert_one_chain(&all);
        let handle_refs: Vec<&ConsensusHandle> = handles.iter().collect();
        let certificates = assert_certificates_match(&mut ctx, &sim.committee, &handle_refs, &all, common).await;
        let redelivered: usize = executors
            .iter()
            .map(|e| {
                let l = e.ledger();
                l.deliveries.len() - l.applied.len()
            })
            .sum();
        eprintln!(
            "seed {seed}, {n} validators: {}; healed to {target} (all agree through {common}; \
             {certificates} certificates checked, {redelivered} re-deliveries)",
            log.join("; ")
        );
    });
}

#[test]
fn random_partitions_link_loss_and_crashes_never_fork_and_heal() {
    for seed in seeds(100, 4) {
        partitions_and_crashes(seed, 4);
    }
    for seed in seeds(200, 3) {
        partitions_and_crashes(seed, 7);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. An equivocating validator
// ---------------------------------------------------------------------------------------------

/// How the Byzantine validator equivocates (modelled on Commonware's `simplex::mocks::conflicter`
/// and `nuller`, written against the public vote types so the `mocks` feature, and a rebuild of
/// every Commonware crate with it, is not needed). Its first reaction to each view's first
/// notarize it sees.
#[derive(Clone, Copy, Debug)]
enum Equivocation {
    /// Notarizes the proposal and a random payload in the same view.
    Notarize,
    /// Notarizes the proposal, then finalizes it and a random payload in the same view.
    Finalize,
    /// Nullifies the view, then finalizes its proposal.
    NullifyAndFinalize,
}

impl Equivocation {
    /// The evidence kind byte `verify_evidence` expects for this fault.
    fn evidence_kind(self) -> u8 {
        match self {
            Self::Notarize => 1,
            Self::Finalize => 2,
            Self::NullifyAndFinalize => 3,
        }
    }
}

/// A vote on the epoch-0 subchannel of the vote channel.
fn framed(vote: Vote<Scheme, sha256::Digest>) -> Vec<u8> {
    let mut bytes = vec![0u8]; // varint subchannel 0 = epoch 0
    bytes.extend_from_slice(&vote.encode());
    bytes
}

fn random_digest(ctx: &mut Ctx) -> sha256::Digest {
    let mut digest = [0u8; 32];
    ctx.fill_bytes(&mut digest);
    sha256::Digest(digest)
}

/// Runs validator `i` as the Byzantine node: it answers the first notarize of each view with two
/// conflicting signed votes sent to every peer, and ignores everything else.
async fn start_equivocator(ctx: &Ctx, sim: &Sim, i: usize, mode: Equivocation) {
    let mut channels = sim.channels(i).await;
    let (mut votes_tx, mut votes_rx) = channels.remove(0);
    for (_, mut rx) in channels {
        ctx.child("byzantine_drain").spawn(move |_| async move { while rx.recv().await.is_ok() {} });
    }
    let participants = Set::from_iter_dedup(sim.pks.iter().cloned());
    let scheme = Scheme::signer(NAMESPACE, participants, sim.keys[i].clone()).expect("member");
    ctx.child("byzantine").spawn(move |mut ctx| async move {
        let mut seen = BTreeSet::new();
        while let Ok((_, message)) = votes_rx.recv().await {
            let Ok((0, payload)) = mux::parse(message) else { continue };
            let Ok(Vote::Notarize(notarize)) = Vote::<Scheme, sha256::Digest>::decode(payload) else { continue };
            let proposal = notarize.proposal;
            if !seen.insert(proposal.round.view().get()) {
                continue;
            }
            let other = Proposal::new(proposal.round, proposal.parent, random_digest(&mut ctx));
            let votes = match mode {
                Equivocation::Notarize => vec![
                    Vote::Notarize(Notarize::sign(&scheme, proposal.clone()).expect("signs")),
                    Vote::Notarize(Notarize::sign(&scheme, other).expect("signs")),
                ],
                Equivocation::Finalize => vec![
                    Vote::Notarize(Notarize::sign(&scheme, proposal.clone()).expect("signs")),
                    Vote::Finalize(Finalize::sign(&scheme, proposal.clone()).expect("signs")),
                    Vote::Finalize(Finalize::sign(&scheme, other).expect("signs")),
                ],
                Equivocation::NullifyAndFinalize => vec![
                    Vote::Nullify(Nullify::sign::<sha256::Digest>(&scheme, proposal.round).expect("signs")),
                    Vote::Finalize(Finalize::sign(&scheme, proposal.clone()).expect("signs")),
                ],
            };
            for vote in votes {
                votes_tx.send(Recipients::All, framed(vote), true);
            }
        }
    });
}

fn equivocation(seed: u64, mode: Equivocation) {
    let _guard = SeedGuard("an_equivocating_validator_cannot_fork_the_chain_and_its_evidence_is_collected", seed);
    runner(seed).start(|mut ctx| async move {
        let sim = Sim::new(&ctx, 4, perfect_link(), true).await;
        let byzantine = pick(&mut ctx, 0..4) as usize;
        let honest: Vec<usize> = (0..4).filter(|i| *i != byzantine).collect();
        start_equivocator(&ctx, &sim, byzantine, mode).await;
        let mut executors = Vec::new();
        let mut handles = Vec::new();
        for i in honest.iter().copied() {
            let executor = TestExecutor::default();
            let (handle, _) = sim.start(&ctx, i, executor.clone()).await;
            executors.push(executor);
            handles.push(handle);
        }
        let all: Vec<&TestExecutor> = executors.iter().collect();
        wait_for_height(&ctx, &all, 20, Duration::from_secs(120)).await;
        let common = assert_one_chain(&all);
        let handle_refs: Vec<&ConsensusHandle> = handles.iter().collect();
        assert_certificates_match(&mut ctx, &sim.committee, &handle_refs, &all, common).await;

        // Evidence: every item verifies and names the Byzantine key; some node has the fault.
        let offender = sim.committee[byzantine];
        let mut kinds = BTreeSet::new();
        let mut holders = 0;
        for (handle, i) in handles.iter().zip(&honest) {
            let evidence = handle.take_evidence();
            holders += usize::from(!evidence.is_empty());
            for bytes in evidence {
                let verified = verify_evidence(NAMESPACE, &sim.committee, &bytes);
                assert_eq!(verified, Ok((0, offender)), "node {i}: evidence must verify and name the equivocator");
                kinds.insert(bytes[1]);
            }
        }
        let kind = mode.evidence_kind();
        assert!(kinds.contains(&kind), "{mode:?}: no evidence of kind {kind} (got {kinds:?})");
        // The honest nodes blocked the equivocator and nobody else.
        let blocked = sim.oracle.blocked().await.expect("blocked");
        assert!(!blocked.is_empty(), "the equivocator was blocked");
        for (from, to) in &blocked {
            assert_eq!(to, &sim.pks[byzantine], "{from:?} blocked an honest peer");
        }
        // The equivocator proposed nothing that was finalized.
        let chain = executors[0].ledger().applied.clone();
        assert!(chain.values().all(|b| b.header.proposer != offender));
        eprintln!(
            "seed {seed}, {mode:?} by validator {byzantine}: honest nodes finalized through {common}; \
             {holders}/3 hold evidence (kinds {kinds:?}); {} blocks",
            blocked.len()
        );
    });
}

#[test]
fn an_equivocating_validator_cannot_fork_the_chain_and_its_evidence_is_collected() {
    let modes = [Equivocation::Notarize, Equivocation::Finalize, Equivocation::NullifyAndFinalize];
    for (i, seed) in seeds(300, 3).into_iter().enumerate() {
        equivocation(seed, modes[i % modes.len()]);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Garbage, oversized and replayed messages
// ---------------------------------------------------------------------------------------------

/// Collects WARN and ERROR events on the current thread (the deterministic runtime runs every task
/// there): `(message, peer field)`.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<(String, String)>>>);

#[derive(Default)]
struct Fields {
    message: String,
    peer: String,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "peer" => self.peer = format!("{value:?}"),
            _ => {}
        }
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.is_event() && *metadata.level() <= tracing::Level::WARN
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::WARN)
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Ok(mut events) = self.0.lock() {
            events.push((fields.message, fields.peer));
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// Sends `messages` on `sender` to every peer, paced under the 1,000/s per-channel quota; returns
/// how many (message, recipient) deliveries the network accepted.
async fn flood(ctx: &Ctx, sender: &mut simulated::Sender<Pk, Ctx>, messages: Vec<Vec<u8>>) -> usize {
    let mut accepted = 0;
    for (i, message) in messages.into_iter().enumerate() {
        accepted += sender.send(Recipients::All, message, false).len();
        if i % 20 == 19 {
            ctx.sleep(Duration::from_millis(50)).await;
        }
    }
    ctx.sleep(Duration::from_millis(50)).await;
    accepted
}

fn garbage(seed: u64) {
    let _guard = SeedGuard("garbage_and_oversized_consensus_messages_do_not_crash_validators", seed);
    let warnings = Warnings::default();
    let captured = warnings.clone();
    let attacker = tracing::subscriber::with_default(warnings, || {
        runner(seed).start(|mut ctx| async move {
            // Blocking does not disconnect here, so every bad message reaches the engines (and
            // is rejected again) instead of only the first one per peer.
            let sim = Sim::new(&ctx, 4, perfect_link(), false).await;
            let attacker = 3usize;
            let attacker_pk = sim.pks[attacker].clone();
            let max_size = sim.max_size as usize;

            // The attacker is a committee member that runs no engine: it records what it receives
            // (to replay later) and sends only what this test tells it to.
            let mut senders = Vec::new();
            let mut recorded = Vec::new();
            for (sender, mut receiver) in sim.channels(attacker).await {
                let record = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
                let sink = record.clone();
                ctx.child("recorder").spawn(move |_| async move {
                    while let Ok((_, message)) = receiver.recv().await {
                        let mut sink = sink.lock().expect("record");
                        if sink.len() < 64 {
                            sink.push(message.as_ref().to_vec());
                        }
                    }
                });
                senders.push(sender);
                recorded.push(record);
            }
            let mut executors = Vec::new();
            for i in 0..3 {
                let executor = TestExecutor::default();
                let (handle, _) = sim.start(&ctx, i, executor.clone()).await;
                handle.gossip(format!("tx from {i}").into_bytes()).await;
                executors.push(executor);
            }
            let all: Vec<&TestExecutor> = executors.iter().collect();
            wait_for_height(&ctx, &all, 5, Duration::from_secs(60)).await;

            // Random bytes on every channel: raw, behind the epoch-0 subchannel prefix, and behind
            // each plausible message tag.
            let mut sent = BTreeMap::new();
            for (index, channel) in CHANNELS.iter().enumerate() {
                let mut messages = Vec::new();
                for _ in 0..20 {
                    let len = pick(&mut ctx, 0..600) as usize;
                    messages.push(random_bytes(&mut ctx, len));
                    let mut prefixed = vec![0u8, pick(&mut ctx, 0..4) as u8];
                    let len = pick(&mut ctx, 0..600) as usize;
                    prefixed.extend(random_bytes(&mut ctx, len));
                    messages.push(prefixed);
                }
                messages.push(Vec::new());
                let accepted = flood(&ctx, &mut senders[index], messages).await;
                *sent.entry(*channel).or_insert(0) += accepted;
            }

            // Oversized: the largest message the network admits (a larger send is refused by the
            // transport itself; the simulated one asserts it) on every channel, and a block whose
            // length prefix claims more than `max_block_bytes`.
            for (index, channel) in CHANNELS.iter().enumerate() {
                let mut big = random_bytes(&mut ctx, max_size);
                if MUXED.contains(channel) {
                    big[0] = 0;
                }
                let mut claim = commonware_codec::varint::UInt((MAX_BLOCK_BYTES + 1) as u32).encode().to_vec();
                claim.extend(random_bytes(&mut ctx, max_size - claim.len()));
                let accepted = flood(&ctx, &mut senders[index], vec![big, claim]).await;
                *sent.entry(*channel).or_insert(0) += accepted;
            }

            // Replays of old, valid messages once the network has moved on, plus the attacker's
            // own (validly signed) votes for those old views, twice.
            let before_replay = all.iter().map(|e| e.tip()).max().unwrap_or(0);
            wait_for_height(&ctx, &all, before_replay + 5, Duration::from_secs(60)).await;
            let participants = Set::from_iter_dedup(sim.pks.iter().cloned());
            let scheme = Scheme::signer(NAMESPACE, participants, sim.keys[attacker].clone()).expect("member");
            let mut replayed = 0;
            for (index, channel) in CHANNELS.iter().enumerate() {
                let old = recorded[index].lock().expect("record").clone();
                let mut messages: Vec<Vec<u8>> = old.iter().chain(old.iter()).cloned().collect();
                if *channel == VOTE_CHANNEL {
                    for message in &old {
                        let Ok((0, payload)) = mux::parse(message.clone().into()) else { continue };
                        if let Ok(Vote::Notarize(n)) = Vote::<Scheme, sha256::Digest>::decode(payload) {
                            let own = framed(Vote::Notarize(Notarize::sign(&scheme, n.proposal).expect("signs")));
                            messages.push(own.clone());
                            messages.push(own);
                        }
                    }
                    // A stale nullify for genesis' view.
                    let round = Round::new(Epoch::new(0), View::new(1));
                    let nullify = Nullify::sign::<sha256::Digest>(&scheme, round).expect("signs");
                    messages.push(framed(Vote::Nullify(nullify)));
                }
                replayed += messages.len();
                let accepted = flood(&ctx, &mut senders[index], messages).await;
                *sent.entry(*channel).or_insert(0) += accepted;
            }

            // The honest three keep finalizing one chain.
            let after_attack = all.iter().map(|e| e.tip()).max().unwrap_or(0);
            wait_for_height(&ctx, &all, after_attack + 10, Duration::from_secs(120)).await;
            let common = assert_one_chain(&all);
            for (channel, accepted) in &sent {
                assert!(*accepted > 0, "channel {channel}: no attack message was delivered");
            }
            // Bad input was rejected by blocking the attacker, and no honest peer was blocked.
            let blocked = sim.oracle.blocked().await.expect("blocked");
            assert!(!blocked.is_empty(), "the attacker was blocked");
            for (from, to) in &blocked {
                assert_eq!(to, &attacker_pk, "{from:?} blocked an honest peer");
            }
            // Gossip is the application's business: it arrives bounded by the network limit.
            for e in &all {
                let (count, largest) = e.ledger().gossip;
                assert!(count > 0 && largest <= max_size, "gossip count {count}, largest {largest}");
            }
            eprintln!(
                "seed {seed}: attack deliveries per channel {sent:?} ({replayed} replays queued, \
                 oversized = {max_size} B); honest nodes finalized through {common}; {} blocks",
                blocked.len()
            );
            format!("{attacker_pk:?}")
        })
    });
    // Every rejection of the attacker was logged with a reason.
    let events = captured.0.lock().expect("events").clone();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for (message, peer) in &events {
        if *peer == attacker {
            *reasons.entry(message.clone()).or_default() += 1;
        }
    }
    assert!(
        reasons.contains_key("decoding error"),
        "undecodable votes and certificates are rejected with a logged reason: {reasons:?}"
    );
    assert!(
        reasons.keys().any(|r| r.ends_with("signer mismatch")),
        "replayed votes of other validators are rejected with a logged reason: {reasons:?}"
    );
    eprintln!("seed {seed}: warnings naming the attacker: {reasons:?}");
}

#[test]
fn garbage_and_oversized_consensus_messages_do_not_crash_validators() {
    for seed in seeds(400, 2) {
        garbage(seed);
    }
}
