//! Whole-network scenarios: seeded simulations on Commonware's deterministic runtime and
//! simulated p2p, plus one real-socket run on the tokio runtime.

mod common;

use common::{genesis_block, next_root};
use commonware_codec::Decode as _;
use commonware_consensus::simplex::{scheme::ed25519::Scheme, types::Finalization};
use commonware_cryptography::{Signer as _, certificate::Verifier as _, ed25519, sha256};
use commonware_macros::select;
use commonware_p2p::simulated::{self, Link, Network, Oracle};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Handle, Runner as _, Spawner, Supervisor as _, deterministic};
use commonware_utils::{NZUsize, ordered::Set, probability};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};
use umbra_consensus::{
    APPLICATION_CHANNEL, BACKFILL_CHANNEL, BLOCK_CHANNEL, CERTIFICATE_CHANNEL, Channels, ConsensusConfig,
    ConsensusHandle, Executor, ProposeContext, RESOLVER_CHANNEL, Timeouts, VOTE_CHANNEL, start_with_channels,
    validator_key,
};
use umbra_types::{Block, Hash, Header, ValidatorKey};

const NAMESPACE: &[u8] = b"umbra-test";
const MAX_BLOCK_BYTES: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// A small executor: the "state root" is a hash chain over heights, so verify can recompute it.
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Ledger {
    /// Applied blocks by height (what a node would persist).
    applied: BTreeMap<u64, Block>,
    /// Every height `finalized` was called with, in call order.
    deliveries: Vec<u64>,
    /// When each height was first applied (runtime clock).
    applied_at: BTreeMap<u64, SystemTime>,
    /// When this executor proposed a block at each height (runtime clock).
    proposed_at: BTreeMap<u64, (SystemTime, ValidatorKey)>,
    /// Blocks `verify` refused.
    rejected: u64,
    /// Simulates a crash in the middle of `finalized`: after applying this height, never return.
    stall_at: Option<u64>,
    /// Gossip received: (from, bytes).
    gossip: Vec<(ValidatorKey, Vec<u8>)>,
}

struct TestExecutor<C: Clock> {
    clock: Arc<C>,
    /// Proposes blocks with a wrong state root.
    lies: bool,
    ledger: Arc<Mutex<Ledger>>,
}

impl<C: Clock> Clone for TestExecutor<C> {
    fn clone(&self) -> Self {
        Self { clock: self.clock.clone(), lies: self.lies, ledger: self.ledger.clone() }
    }
}

impl<C: Clock> TestExecutor<C> {
    fn new(clock: C, lies: bool) -> Self {
        Self { clock: Arc::new(clock), lies, ledger: Arc::default() }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("ledger lock")
    }

    fn tip(&self) -> u64 {
        self.ledger().applied.keys().next_back().copied().unwrap_or(0)
    }
}

impl<C: Clock> Executor for TestExecutor<C> {
    async fn propose(&self, parent: Block, ctx: ProposeContext) -> Option<Block> {
        assert_eq!(parent.hash(), ctx.parent_digest);
        assert_eq!(parent.header.height + 1, ctx.height);
        self.ledger().proposed_at.insert(ctx.height, (self.clock.current(), ctx.proposer));
        let state_root = if self.lies { Hash([0xBA; 32]) } else { next_root(&parent, ctx.height) };
        Some(Block {
            header: Header {
                height: ctx.height,
                parent: ctx.parent_digest,
                timestamp_ms: parent.header.timestamp_ms + 1,
                proposer: ctx.proposer,
                epoch: ctx.epoch,
                tx_root: Hash::ZERO,
                state_root,
                messages_root: Hash::ZERO,
                next_committee: None,
            },
            txs: vec![],
        })
    }

    async fn verify(&self, parent: Block, block: Block) -> bool {
        let ok = block.header.state_root == next_root(&parent, block.header.height)
            && block.header.timestamp_ms > parent.header.timestamp_ms;
        if !ok {
            self.ledger().rejected += 1;
        }
        ok
    }

    async fn finalized(&self, block: Block) {
        if self.apply(block) {
            futures::future::pending::<()>().await;
        }
    }

    async fn gossip(&self, from: ValidatorKey, bytes: Vec<u8>) {
        self.ledger().gossip.push((from, bytes));
    }
}

impl<C: Clock> TestExecutor<C> {
    /// Applies a finalized block; returns true if this height is where the executor "crashes".
    fn apply(&self, block: Block) -> bool {
        let now = self.clock.current();
        let mut ledger = self.ledger();
        let height = block.header.height;
        ledger.deliveries.push(height);
        let tip = ledger.applied.keys().next_back().copied();
        match ledger.applied.get(&height) {
            // Re-delivery: idempotent, and it must be the same block.
            Some(existing) => assert_eq!(existing, &block, "a different block re-delivered at {height}"),
            None => {
                // New heights extend the applied chain by exactly one: never a gap, never backwards.
                let expected = tip.map_or(0, |t| t + 1);
                assert_eq!(height, expected, "finalized heights must be contiguous");
                if let Some(parent) = tip.and_then(|t| ledger.applied.get(&t)) {
                    assert_eq!(block.header.parent, parent.hash(), "finalized block does not extend the chain");
                }
                ledger.applied.insert(height, block);
                ledger.applied_at.insert(height, now);
            }
        }
        ledger.stall_at == Some(height)
    }
}

// ---------------------------------------------------------------------------------------------
// Network harness
// ---------------------------------------------------------------------------------------------

/// Prints the seed if the scenario panics, so the failure can be replayed.
struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("scenario failed with seed {}", self.0);
        }
    }
}

fn runner(seed: u64) -> deterministic::Runner {
    common::runner(seed, Duration::from_secs(600))
}

fn genesis() -> Block {
    genesis_block(None)
}

fn keys(n: u64) -> Vec<ed25519::PrivateKey> {
    (0..n).map(|i| ed25519::PrivateKey::from_seed(1_000 + i)).collect()
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

type Ctx = deterministic::Context;

struct Sim {
    oracle: Oracle<ed25519::PublicKey, Ctx>,
    keys: Vec<ed25519::PrivateKey>,
    committee: Vec<ValidatorKey>,
}

impl Sim {
    async fn new(ctx: &Ctx, n: u64) -> Self {
        let keys = keys(n);
        let committee: Vec<_> = keys.iter().map(|k| validator_key(&k.public_key())).collect();
        let max_size = config(keys[0].clone(), &committee, 0).max_message_size();
        let (network, oracle) = Network::new_with_peers(
            ctx.child("network"),
            simulated::Config {
                max_size,
                max_peers_per_set: NZUsize!(n as usize),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            keys.iter().map(|k| k.public_key()),
        )
        .await;
        network.start();
        let link = Link {
            latency: Duration::from_millis(5),
            jitter: Duration::from_millis(1),
            success_rate: probability!(1.0),
        };
        for a in keys.iter().map(|k| k.public_key()) {
            for b in keys.iter().map(|k| k.public_key()) {
                if a != b {
                    oracle.add_link(a.clone(), b, link.clone()).await.expect("link");
                }
            }
        }
        Self { oracle, keys, committee }
    }

    /// Starts validator `i` as a child task of `ctx`; aborting the returned task stops it.
    async fn start(&self, ctx: &Ctx, i: usize, executor: TestExecutor<Ctx>) -> (ConsensusHandle, Handle<()>) {
        let pk = self.keys[i].public_key();
        let control = self.oracle.control(pk);
        let quota = commonware_runtime::Quota::per_second(commonware_utils::NZU32!(1_000));
        let mut registered = Vec::new();
        for channel in
            [VOTE_CHANNEL, CERTIFICATE_CHANNEL, RESOLVER_CHANNEL, BLOCK_CHANNEL, BACKFILL_CHANNEL, APPLICATION_CHANNEL]
        {
            registered.push(control.register(channel, quota).await.expect("register"));
        }
        let mut it = registered.into_iter();
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
}

/// Waits (in simulated time) until every executor has applied `height`, or panics at `deadline`.
async fn wait_for_height(ctx: &Ctx, executors: &[TestExecutor<Ctx>], height: u64, deadline: Duration) {
    let poll = async {
        while !executors.iter().all(|e| e.tip() >= height) {
            ctx.sleep(Duration::from_millis(10)).await;
        }
    };
    select! {
        _ = poll => {},
        _ = ctx.sleep(deadline) => {
            let tips: Vec<u64> = executors.iter().map(TestExecutor::tip).collect();
            panic!("not all validators reached height {height} within {deadline:?}: tips {tips:?}");
        },
    }
}

/// Asserts all executors applied identical blocks up to `height`.
fn assert_same_chain(executors: &[TestExecutor<Ctx>], height: u64) {
    let reference: Vec<Block> = (0..=height).map(|h| executors[0].ledger().applied[&h].clone()).collect();
    assert_eq!(reference[0], genesis());
    for (i, e) in executors.iter().enumerate().skip(1) {
        let ledger = e.ledger();
        for (h, block) in reference.iter().enumerate() {
            assert_eq!(ledger.applied.get(&(h as u64)), Some(block), "validator {i} differs at height {h}");
        }
    }
}

/// Decodes and verifies a finality certificate like a light client: namespace + committee only.
fn check_certificate(ctx: &mut Ctx, committee: &[ValidatorKey], bytes: Vec<u8>, block: &Block) {
    let participants = Set::from_iter_dedup(committee.iter().map(|k| umbra_consensus::public_key(k).expect("key")));
    let verifier = Scheme::verifier(NAMESPACE, participants);
    let finalization = Finalization::<Scheme, sha256::Digest>::decode_cfg(bytes, &verifier.certificate_codec_config())
        .expect("certificate decodes");
    assert!(finalization.verify(ctx, &verifier, &Sequential), "certificate verifies");
    assert_eq!(finalization.proposal.payload.0, block.hash().0, "certificate covers the block");
    let wrong = Scheme::verifier(
        b"another-chain",
        Set::from_iter_dedup(committee.iter().map(|k| umbra_consensus::public_key(k).expect("key"))),
    );
    assert!(!finalization.verify(ctx, &wrong, &Sequential), "a different namespace does not verify");
}

/// Average simulated time per block between `from` and `to` on one executor.
fn per_block(e: &TestExecutor<Ctx>, from: u64, to: u64) -> Duration {
    let ledger = e.ledger();
    let elapsed = ledger.applied_at[&to].duration_since(ledger.applied_at[&from]).unwrap_or_default();
    elapsed / (to - from) as u32
}

/// Runs `n` honest validators to `height`; returns the auditor state for determinism checks.
fn run_honest(seed: u64, n: u64, height: u64) -> String {
    let _guard = SeedGuard(seed);
    runner(seed).start(|mut ctx| async move {
        let sim = Sim::new(&ctx, n).await;
        let mut executors = Vec::new();
        let mut handles = Vec::new();
        for i in 0..n as usize {
            let executor = TestExecutor::new(ctx.child("clock"), false);
            let (handle, _task) = sim.start(&ctx, i, executor.clone()).await;
            executors.push(executor);
            handles.push(handle);
        }
        wait_for_height(&ctx, &executors, height, Duration::from_secs(60)).await;
        assert_same_chain(&executors, height);
        // Each height delivered once, in order, from genesis (no restarts here).
        for e in &executors {
            let deliveries = e.ledger().deliveries.clone();
            let expected: Vec<u64> = (0..deliveries.len() as u64).collect();
            assert_eq!(deliveries, expected);
        }
        for h in 1..=height {
            let block = executors[0].ledger().applied[&h].clone();
            for handle in &handles {
                let bytes = handle.finalization(h).await.expect("finalized height has a certificate");
                check_certificate(&mut ctx, &sim.committee, bytes, &block);
            }
        }
        let from = height / 4;
        eprintln!(
            "seed {seed}, {n} validators: {:?} per block (simulated, heights {from}..{height}, 5 ms links); propose-to-finalize p50 {:?}",
            per_block(&executors[0], from.max(1), height),
            median_latency(&executors, 0, from.max(1)),
        );
        ctx.auditor().state()
    })
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

#[test]
fn four_validators_finalize_the_same_twenty_blocks_in_order_across_seeds() {
    for seed in [1, 2, 3] {
        run_honest(seed, 4, 20);
    }
}

#[test]
fn a_single_validator_network_finalizes() {
    run_honest(7, 1, 10);
}

#[test]
fn a_seeded_run_is_reproducible() {
    assert_eq!(run_honest(11, 4, 5), run_honest(11, 4, 5));
}

#[test]
fn a_proposer_with_a_bad_state_root_is_nullified_and_the_honest_leaders_continue() {
    for seed in [21, 22] {
        let _guard = SeedGuard(seed);
        runner(seed).start(|ctx| async move {
            let sim = Sim::new(&ctx, 4).await;
            let liar = 3usize;
            let mut executors = Vec::new();
            for i in 0..4 {
                let executor = TestExecutor::new(ctx.child("clock"), i == liar);
                sim.start(&ctx, i, executor.clone()).await;
                executors.push(executor);
            }
            wait_for_height(&ctx, &executors, 12, Duration::from_secs(120)).await;
            assert_same_chain(&executors, 12);
            let liar_key = sim.committee[liar];
            for h in 1..=12 {
                let block = executors[0].ledger().applied[&h].clone();
                assert_ne!(block.header.proposer, liar_key, "the liar's block was finalized at {h}");
                assert_eq!(block.header.state_root, next_root(&executors[0].ledger().applied[&(h - 1)], h));
            }
            let rejected: u64 = executors.iter().map(|e| e.ledger().rejected).sum();
            assert!(rejected > 0, "honest validators saw and refused the bad blocks");
        });
    }
}

#[test]
fn a_crashed_validator_restarts_from_its_storage_and_catches_up() {
    for seed in [31, 32] {
        let _guard = SeedGuard(seed);
        runner(seed).start(|ctx| async move {
            let sim = Sim::new(&ctx, 4).await;
            let mut executors = Vec::new();
            let mut tasks = Vec::new();
            for i in 0..4 {
                let executor = TestExecutor::new(ctx.child("clock"), false);
                let (_, task) = sim.start(&ctx, i, executor.clone()).await;
                executors.push(executor);
                tasks.push(task);
            }
            // Validator 0 applies height 5 durably but crashes before acknowledging it.
            let crashed = 0usize;
            let crash_height = 5;
            executors[crashed].ledger().stall_at = Some(crash_height);
            wait_for_height(&ctx, &executors, crash_height, Duration::from_secs(60)).await;
            let task = tasks.remove(crashed);
            task.abort();
            let _ = task.await;
            executors[crashed].ledger().stall_at = None;
            let tip_at_crash = executors[crashed].tip();
            assert_eq!(tip_at_crash, crash_height);

            // The other three keep finalizing without it.
            wait_for_height(&ctx, &executors[1..], tip_at_crash + 10, Duration::from_secs(60)).await;
            assert_eq!(executors[crashed].tip(), tip_at_crash, "a crashed validator applies nothing");

            // Restart from the same partitions with the same (durable) executor state.
            let (handle, _task) = sim.start(&ctx, crashed, executors[crashed].clone()).await;
            let target = executors[1].tip() + 5;
            wait_for_height(&ctx, &executors, target, Duration::from_secs(120)).await;
            assert_same_chain(&executors, target);
            assert!(handle.finalization(target).await.is_some());

            // The unacknowledged height was delivered again (and applied idempotently); beyond
            // it, heights only moved forward one at a time (also checked in `finalized`).
            let ledger = executors[crashed].ledger();
            let repeats = ledger.deliveries.iter().filter(|h| **h == crash_height).count();
            assert_eq!(repeats, 2, "the unacknowledged block is re-delivered once after restart");
            let after: Vec<u64> = ledger.deliveries.iter().copied().skip_while(|h| *h <= tip_at_crash).collect();
            eprintln!(
                "seed {seed}: crashed at tip {tip_at_crash}, caught up to {target}; deliveries {:?}",
                ledger.deliveries
            );
            assert_eq!(after.first().copied(), Some(tip_at_crash + 1));
            assert!(after.windows(2).all(|w| w[1] == w[0] + 1), "no repeats beyond the crash tip: {after:?}");
        });
    }
}

#[test]
fn gossip_reaches_every_other_validator_and_oversized_gossip_is_dropped() {
    let seed = 41;
    let _guard = SeedGuard(seed);
    runner(seed).start(|ctx| async move {
        let sim = Sim::new(&ctx, 4).await;
        let mut executors = Vec::new();
        let mut handles = Vec::new();
        for i in 0..4 {
            let executor = TestExecutor::new(ctx.child("clock"), false);
            let (handle, _) = sim.start(&ctx, i, executor.clone()).await;
            executors.push(executor);
            handles.push(handle);
        }
        wait_for_height(&ctx, &executors, 2, Duration::from_secs(60)).await;
        handles[0].gossip(b"tx-bytes".to_vec()).await;
        let too_big = config(sim.keys[0].clone(), &sim.committee, 0).max_message_size() as usize + 1;
        handles[0].gossip(vec![0; too_big]).await;
        ctx.sleep(Duration::from_secs(1)).await;
        for (i, e) in executors.iter().enumerate() {
            let got = e.ledger().gossip.clone();
            if i == 0 {
                assert!(got.is_empty(), "gossip is not echoed to the sender");
            } else {
                assert_eq!(got, vec![(sim.committee[0], b"tx-bytes".to_vec())], "validator {i}");
            }
        }
    });
}

#[test]
fn four_validators_on_localhost_sockets_finalize_thirty_blocks() {
    use commonware_runtime::tokio;
    use umbra_consensus::{NetConfig, start};

    let dir = tempfile::tempdir().expect("temp dir");
    // Pick free ports by binding to port 0 and releasing them.
    let addrs: Vec<std::net::SocketAddr> = (0..4)
        .map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr")
        })
        .collect();
    let cfg = tokio::Config::new().with_storage_directory(dir.path()).with_worker_threads(2);
    tokio::Runner::new(cfg).start(|ctx| async move {
        let keys = keys(4);
        let committee: Vec<ValidatorKey> = keys.iter().map(|k| validator_key(&k.public_key())).collect();
        let peers: Vec<(ValidatorKey, std::net::SocketAddr)> = committee.iter().copied().zip(addrs.iter().copied()).collect();
        let mut executors = Vec::new();
        let mut handles = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let executor = TestExecutor::new(ctx.child("clock"), false);
            let net = NetConfig { listen: addrs[i], peers: peers.clone() };
            let handle = start(
                ctx.child("validator").with_attribute("index", i),
                config(key.clone(), &committee, i),
                net,
                executor.clone(),
            )
            .await
            .expect("validator starts");
            executors.push(executor);
            handles.push(handle);
        }
        let target = 30;
        let started = ctx.current();
        let poll = async {
            while !executors.iter().all(|e| e.tip() >= target) {
                ctx.sleep(Duration::from_millis(20)).await;
            }
        };
        select! {
            _ = poll => {},
            _ = ctx.sleep(Duration::from_secs(60)) => {
                let tips: Vec<u64> = executors.iter().map(TestExecutor::tip).collect();
                panic!("localhost network did not reach height {target} in 60 s: tips {tips:?}");
            },
        }
        let first = executors[0].ledger().applied_at[&1];
        eprintln!(
            "localhost, 4 validators: first block after {:?}; steady state {:?} per block (heights 10..{target}); propose-to-finalize p50 {:?}",
            first.duration_since(started).unwrap_or_default(),
            per_block_any(&executors[0], 10, target),
            median_latency(&executors, 0, 10),
        );
        for i in 1..executors.len() {
            for h in 0..=10 {
                assert_eq!(executors[i].ledger().applied.get(&h), executors[0].ledger().applied.get(&h));
            }
        }
        for handle in &handles {
            assert!(handle.finalization(10).await.is_some());
        }
    });
}

/// Median time from a block's proposal (on its proposer) to its application (on `observer`),
/// over heights from `from`, and the number of samples.
fn median_latency<C: Clock>(executors: &[TestExecutor<C>], observer: usize, from: u64) -> (Duration, usize) {
    let (applied_at, proposers): (BTreeMap<u64, SystemTime>, BTreeMap<u64, ValidatorKey>) = {
        let ledger = executors[observer].ledger();
        (ledger.applied_at.clone(), ledger.applied.iter().map(|(h, b)| (*h, b.header.proposer)).collect())
    };
    let mut samples: Vec<Duration> = Vec::new();
    for e in executors {
        let ledger = e.ledger();
        for (h, (proposed, me)) in ledger.proposed_at.range(from..) {
            // Count only proposals that became the finalized block at that height (a later
            // proposal at the same height overwrites an earlier, nullified one).
            if let Some(at) = applied_at.get(h)
                && proposers.get(h) == Some(me)
            {
                samples.push(at.duration_since(*proposed).unwrap_or_default());
            }
        }
    }
    samples.sort();
    (samples.get(samples.len() / 2).copied().unwrap_or_default(), samples.len())
}

/// Average time per block between `from` and `to` on any runtime's executor.
fn per_block_any<C: Clock>(e: &TestExecutor<C>, from: u64, to: u64) -> Duration {
    let ledger = e.ledger();
    let elapsed = ledger.applied_at[&to].duration_since(ledger.applied_at[&from]).unwrap_or_default();
    elapsed / (to - from) as u32
}
