//! Epochs, committee hand-over, followers, restarts and partitions: seeded simulations on
//! Commonware's deterministic runtime and simulated p2p. Every scenario prints its seed on
//! failure.

mod common;

use common::{genesis_block, next_root};
use commonware_actor::Feedback;
use commonware_cryptography::{Signer as _, ed25519};
use commonware_macros::select;
use commonware_p2p::{
    Manager, PeerSetSubscription, Provider, TrackedPeers,
    simulated::{self, Link, Network, Oracle},
};
use commonware_runtime::{Clock, Handle, Runner as _, Spawner, Supervisor as _, deterministic};
use commonware_utils::{NZUsize, ordered::Set, probability};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use umbra_consensus::{
    APPLICATION_CHANNEL, BACKFILL_CHANNEL, BLOCK_CHANNEL, CERTIFICATE_CHANNEL, Channels, ConsensusConfig,
    ConsensusHandle, Executor, ProposeContext, RESOLVER_CHANNEL, Timeouts, VOTE_CHANNEL, start_with_channels,
    validator_key,
};
use umbra_types::{Block, Hash, Header, ValidatorKey};

const NAMESPACE: &[u8] = b"umbra-epochs";
const MAX_BLOCK_BYTES: usize = 1 << 20;
type Ctx = deterministic::Context;
type Pk = ed25519::PublicKey;

/// Which committee each epoch has (the genesis committee is epoch 0's).
type Schedule = Arc<dyn Fn(u64) -> Vec<ValidatorKey> + Send + Sync>;

#[derive(Default)]
struct Ledger {
    applied: BTreeMap<u64, Block>,
    deliveries: Vec<u64>,
    stall_at: Option<u64>,
}

/// Builds blocks whose last-of-epoch header names the scheduled next committee, and checks it.
#[derive(Clone)]
struct TestExecutor {
    epoch_length: u64,
    schedule: Schedule,
    ledger: Arc<Mutex<Ledger>>,
}

impl TestExecutor {
    fn new(epoch_length: u64, schedule: Schedule) -> Self {
        Self { epoch_length, schedule, ledger: Arc::default() }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("ledger lock")
    }

    fn tip(&self) -> u64 {
        self.ledger().applied.keys().next_back().copied().unwrap_or(0)
    }

    fn next_committee(&self, height: u64) -> Option<Vec<ValidatorKey>> {
        (height + 1).is_multiple_of(self.epoch_length).then(|| (self.schedule)((height + 1) / self.epoch_length))
    }
}

impl Executor for TestExecutor {
    async fn propose(&self, parent: Block, ctx: ProposeContext) -> Option<Block> {
        assert_eq!(ctx.epoch, ctx.height / self.epoch_length, "the proposal context carries the real epoch");
        assert!((self.schedule)(ctx.epoch).contains(&ctx.proposer), "the proposer is in the epoch's committee");
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
                next_committee: self.next_committee(ctx.height),
            },
            txs: vec![],
        })
    }

    async fn verify(&self, parent: Block, block: Block) -> bool {
        let h = block.header.height;
        block.header.state_root == next_root(&parent, h)
            && block.header.epoch == h / self.epoch_length
            && block.header.next_committee == self.next_committee(h)
            && (self.schedule)(block.header.epoch).contains(&block.header.proposer)
    }

    async fn finalized(&self, block: Block) {
        let stall = {
            let mut ledger = self.ledger();
            let height = block.header.height;
            ledger.deliveries.push(height);
            let tip = ledger.applied.keys().next_back().copied();
            match ledger.applied.get(&height) {
                Some(existing) => assert_eq!(existing, &block, "a different block re-delivered at {height}"),
                None => {
                    assert_eq!(height, tip.map_or(0, |t| t + 1), "finalized heights must be contiguous");
                    if let Some(parent) = tip.and_then(|t| ledger.applied.get(&t)) {
                        assert_eq!(block.header.parent, parent.hash(), "finalized block does not extend the chain");
                    }
                    ledger.applied.insert(height, block);
                }
            }
            ledger.stall_at == Some(height)
        };
        if stall {
            futures::future::pending::<()>().await;
        }
    }

    async fn gossip(&self, _from: ValidatorKey, _bytes: Vec<u8>) {}
}

struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("scenario failed with seed {}", self.0);
        }
    }
}

fn runner(seed: u64) -> deterministic::Runner {
    common::runner(seed, Duration::from_secs(900))
}

fn genesis(committee: &[ValidatorKey]) -> Block {
    genesis_block(Some(committee.to_vec()))
}

/// Every simulated node tracks each epoch's committee as primary and everyone else as secondary,
/// like `start`'s lookup wiring does with its address book.
#[derive(Clone, Debug)]
struct AllPeers {
    inner: simulated::Manager<Pk, Ctx>,
    everyone: Set<Pk>,
}

impl Provider for AllPeers {
    type PublicKey = Pk;

    fn peer_set(&mut self, id: u64) -> impl Future<Output = Option<TrackedPeers<Pk>>> + Send {
        self.inner.peer_set(id)
    }

    fn subscribe(&mut self) -> impl Future<Output = PeerSetSubscription<Pk>> + Send {
        self.inner.subscribe()
    }
}

impl Manager for AllPeers {
    fn track<R: Into<TrackedPeers<Pk>> + Send>(&mut self, id: u64, peers: R) -> Feedback {
        let primary = peers.into().primary;
        let secondary = Set::from_iter_dedup(self.everyone.iter().filter(|k| primary.position(k).is_none()).cloned());
        self.inner.track(id, TrackedPeers::new(primary, secondary))
    }
}

struct Sim {
    oracle: Oracle<Pk, Ctx>,
    keys: Vec<ed25519::PrivateKey>,
    epoch_length: u64,
    schedule: Schedule,
}

fn link() -> Link {
    Link { latency: Duration::from_millis(5), jitter: Duration::from_millis(1), success_rate: probability!(1.0) }
}

impl Sim {
    async fn new(ctx: &Ctx, n: u64, epoch_length: u64, schedule: Schedule) -> Self {
        let keys: Vec<_> = (0..n).map(|i| ed25519::PrivateKey::from_seed(2_000 + i)).collect();
        let probe = cfg_for(&keys[0], &schedule(0), epoch_length, 0);
        let genesis_committee: Vec<Pk> =
            schedule(0).iter().map(|k| umbra_consensus::public_key(k).expect("key")).collect();
        let others: Vec<Pk> = keys.iter().map(|k| k.public_key()).filter(|k| !genesis_committee.contains(k)).collect();
        let (network, oracle) = Network::new_with_split_peers(
            ctx.child("network"),
            simulated::Config {
                max_size: probe.max_message_size(),
                max_peers_per_set: NZUsize!(n as usize),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(3),
            },
            genesis_committee,
            others,
        )
        .await;
        network.start();
        for a in keys.iter().map(|k| k.public_key()) {
            for b in keys.iter().map(|k| k.public_key()) {
                if a != b {
                    oracle.add_link(a.clone(), b, link()).await.expect("link");
                }
            }
        }
        Self { oracle, keys, epoch_length, schedule }
    }

    fn key(&self, i: usize) -> ValidatorKey {
        validator_key(&self.keys[i].public_key())
    }

    fn executor(&self) -> TestExecutor {
        TestExecutor::new(self.epoch_length, self.schedule.clone())
    }

    async fn start(&self, ctx: &Ctx, i: usize, executor: TestExecutor) -> (ConsensusHandle, Handle<()>) {
        let control = self.oracle.control(self.keys[i].public_key());
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
        let cfg = cfg_for(&self.keys[i], &(self.schedule)(0), self.epoch_length, i);
        let peers = AllPeers {
            inner: self.oracle.manager(),
            everyone: Set::from_iter_dedup(self.keys.iter().map(|k| k.public_key())),
        };
        let (tx, rx) = futures::channel::oneshot::channel();
        let task = ctx.child("node").with_attribute("index", i).spawn(move |ctx| async move {
            let handle = start_with_channels(ctx.child("consensus"), cfg, channels, peers, control, executor)
                .await
                .expect("engine starts");
            let _ = tx.send(handle);
            futures::future::pending::<()>().await;
        });
        (rx.await.expect("started"), task)
    }
}

fn cfg_for(signer: &ed25519::PrivateKey, committee: &[ValidatorKey], epoch_length: u64, i: usize) -> ConsensusConfig {
    ConsensusConfig {
        namespace: NAMESPACE.to_vec(),
        signer: signer.clone(),
        committee: committee.to_vec(),
        epoch_length,
        genesis: genesis(committee),
        partition_prefix: format!("node-{i}"),
        max_block_bytes: MAX_BLOCK_BYTES,
        timeouts: Timeouts::default(),
        gossip_rate_per_sec: 1_000,
    }
}

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

/// Every pair of executors agrees on every height both applied.
fn assert_no_fork(executors: &[&TestExecutor]) {
    for (i, a) in executors.iter().enumerate() {
        for b in executors.iter().skip(i + 1) {
            let (a, b) = (a.ledger(), b.ledger());
            for (h, block) in &a.applied {
                if let Some(other) = b.applied.get(h) {
                    assert_eq!(block, other, "conflicting finalized blocks at height {h}");
                }
            }
        }
    }
}

#[test]
fn validators_hand_over_to_each_new_committee_and_a_follower_receives_every_block_then_votes() {
    for seed in [1, 2] {
        let _guard = SeedGuard(seed);
        runner(seed).start(|ctx| async move {
            // Five keys; epoch 0 is {0,1,2,3}; from epoch 1 on, 0 is dropped and 4 joins, and in
            // epoch 3 node 0 returns in place of node 1.
            let keys: Vec<ValidatorKey> =
                (0..5).map(|i| validator_key(&ed25519::PrivateKey::from_seed(2_000 + i).public_key())).collect();
            let schedule: Schedule = Arc::new(move |e| match e {
                0 => keys[0..4].to_vec(),
                1 | 2 => keys[1..5].to_vec(),
                _ => vec![keys[0], keys[2], keys[3], keys[4]],
            });
            let sim = Sim::new(&ctx, 5, 10, schedule).await;
            let mut executors = Vec::new();
            let mut handles = Vec::new();
            for i in 0..5 {
                let executor = sim.executor();
                let (handle, _) = sim.start(&ctx, i, executor.clone()).await;
                executors.push(executor);
                handles.push(handle);
            }
            assert!(handles[0].is_voting() && !handles[4].is_voting(), "node 4 starts as a follower");
            let all: Vec<&TestExecutor> = executors.iter().collect();
            wait_for_height(&ctx, &all, 45, Duration::from_secs(300)).await;
            assert_no_fork(&all);
            for (i, e) in executors.iter().enumerate() {
                let ledger = e.ledger();
                let expected: Vec<u64> = (0..ledger.deliveries.len() as u64).collect();
                assert_eq!(ledger.deliveries, expected, "node {i} got every block once, in order");
            }
            let chain = executors[0].ledger().applied.clone();
            for (h, block) in chain.range(1..=45) {
                let epoch = h / 10;
                assert_eq!(block.header.epoch, epoch);
                assert!((sim.schedule)(epoch).contains(&block.header.proposer), "height {h} by a member");
            }
            let proposed_by = |i: usize, epochs: std::ops::Range<u64>| {
                chain.values().filter(|b| epochs.contains(&b.header.epoch) && b.header.proposer == sim.key(i)).count()
            };
            assert_eq!(proposed_by(4, 0..1), 0, "the follower never proposes while following");
            assert!(proposed_by(4, 1..5) > 0, "the follower votes and proposes once in the committee");
            assert_eq!(proposed_by(0, 1..3), 0, "a dropped validator stops proposing");
            assert!(proposed_by(0, 3..5) > 0, "a returning validator proposes again");
            for handle in &handles {
                assert!(handle.current_epoch() >= 4, "every node entered epoch 4");
            }
            assert!(handles[4].is_voting() && handles[0].is_voting() && !handles[1].is_voting());
            for h in [5, 15, 25, 35] {
                assert!(handles[2].finalization(h).await.is_some(), "certificate stored for {h}");
            }
            eprintln!("seed {seed}: epochs 0..4 finalized through height {}", executors[0].tip());
        });
    }
}

#[test]
fn a_validator_restarted_mid_epoch_rejoins_the_right_epoch_and_catches_up_across_epochs() {
    for seed in [3, 4] {
        let _guard = SeedGuard(seed);
        runner(seed).start(|ctx| async move {
            let keys: Vec<ValidatorKey> =
                (0..4).map(|i| validator_key(&ed25519::PrivateKey::from_seed(2_000 + i).public_key())).collect();
            let schedule: Schedule = Arc::new(move |_| keys.clone());
            let sim = Sim::new(&ctx, 4, 10, schedule).await;
            let mut executors = Vec::new();
            let mut tasks = Vec::new();
            for i in 0..4 {
                let executor = sim.executor();
                let (_, task) = sim.start(&ctx, i, executor.clone()).await;
                executors.push(executor);
                tasks.push(task);
            }
            // Node 1 crashes in the middle of epoch 1, before acknowledging height 15.
            let crashed = 1;
            executors[crashed].ledger().stall_at = Some(15);
            wait_for_height(&ctx, &[&executors[crashed]], 15, Duration::from_secs(120)).await;
            let task = tasks.remove(crashed);
            task.abort();
            let _ = task.await;
            executors[crashed].ledger().stall_at = None;

            // The others move on two more epochs.
            let others: Vec<&TestExecutor> =
                executors.iter().enumerate().filter(|(i, _)| *i != crashed).map(|(_, e)| e).collect();
            wait_for_height(&ctx, &others, 35, Duration::from_secs(300)).await;

            let (handle, _task) = sim.start(&ctx, crashed, executors[crashed].clone()).await;
            assert_eq!(handle.current_epoch(), 1, "the restarted node re-enters the epoch of its next block");
            assert!(handle.is_voting());
            let target = executors[0].tip() + 15;
            let all: Vec<&TestExecutor> = executors.iter().collect();
            wait_for_height(&ctx, &all, target, Duration::from_secs(300)).await;
            assert_no_fork(&all);
            assert!(handle.current_epoch() >= target / 10);
            let deliveries = executors[crashed].ledger().deliveries.clone();
            assert_eq!(deliveries.iter().filter(|h| **h == 15).count(), 2, "height 15 re-delivered once");
            eprintln!("seed {seed}: restarted node caught up to {target} (epoch {})", handle.current_epoch());
        });
    }
}

#[test]
fn seven_validators_partitioned_four_to_three_finalize_nothing_conflicting_and_progress_after_healing() {
    for seed in [5, 6] {
        let _guard = SeedGuard(seed);
        runner(seed).start(|ctx| async move {
            let keys: Vec<ValidatorKey> =
                (0..7).map(|i| validator_key(&ed25519::PrivateKey::from_seed(2_000 + i).public_key())).collect();
            let schedule: Schedule = Arc::new(move |_| keys.clone());
            let sim = Sim::new(&ctx, 7, 20, schedule).await;
            let mut executors = Vec::new();
            for i in 0..7 {
                let executor = sim.executor();
                sim.start(&ctx, i, executor.clone()).await;
                executors.push(executor);
            }
            let all: Vec<&TestExecutor> = executors.iter().collect();
            wait_for_height(&ctx, &all, 5, Duration::from_secs(120)).await;

            // Partition {0,1,2,3} from {4,5,6}: neither side has a quorum of 5.
            let pks: Vec<Pk> = sim.keys.iter().map(|k| k.public_key()).collect();
            for a in 0..4 {
                for b in 4..7 {
                    sim.oracle.remove_link(pks[a].clone(), pks[b].clone()).await.expect("unlink");
                    sim.oracle.remove_link(pks[b].clone(), pks[a].clone()).await.expect("unlink");
                }
            }
            ctx.sleep(Duration::from_secs(2)).await;
            let stalled: Vec<u64> = executors.iter().map(TestExecutor::tip).collect();
            ctx.sleep(Duration::from_secs(10)).await;
            let during: Vec<u64> = executors.iter().map(TestExecutor::tip).collect();
            assert_eq!(stalled, during, "no side of a 4/3 split finalizes");
            assert_no_fork(&all);

            for a in 0..4 {
                for b in 4..7 {
                    sim.oracle.add_link(pks[a].clone(), pks[b].clone(), link()).await.expect("link");
                    sim.oracle.add_link(pks[b].clone(), pks[a].clone(), link()).await.expect("link");
                }
            }
            let target = during.iter().max().copied().unwrap_or(0) + 25;
            wait_for_height(&ctx, &all, target, Duration::from_secs(300)).await;
            assert_no_fork(&all);
            eprintln!("seed {seed}: stalled at {during:?} while split; healed to {target} (across an epoch boundary)");
        });
    }
}
