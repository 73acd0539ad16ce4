//! Wiring: marshal (archives, buffered broadcast, backfill resolver) under simplex, over
//! caller-provided p2p channels.

use crate::{
    ConsensusConfig, ConsensusError, Executor, Timeouts,
    application::{App, Delivery, Finalizer},
    block::ChainBlock,
    config::Scheme,
    evidence::EvidenceCollector,
    public_key, validator_key,
};
use commonware_broadcast::buffered;
use commonware_codec::Encode as _;
use commonware_consensus::{
    Heightable as _, Reporters,
    marshal::{self, standard::Standard},
    simplex::{self, elector::RoundRobin},
    types::{Epoch, Epocher as _, FixedEpocher, Height, ViewDelta},
};
use commonware_cryptography::{
    Digested, Digestible as _, Sha256, Signer as _,
    certificate::{self, Verifier as _},
    ed25519, sha256,
};
use commonware_macros::select;
use commonware_p2p::{
    Blocker, Manager, Receiver, Recipients, Sender, TrackedPeers,
    utils::mux::{Builder as _, MuxHandle, Muxer},
};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Handle, Metrics, Quota, Spawner, Storage, buffer::paged::CacheRef};
use commonware_storage::archive::immutable;
use commonware_utils::{
    Acknowledgement as _, NZDuration, NZU16, NZU32, NZU64, NZUsize, ordered::Set, vec::NonEmptyVec,
};
use futures::{StreamExt as _, channel::mpsc};
use rand_core::CryptoRng;
use std::{
    collections::{BTreeMap, VecDeque},
    num::{NonZeroU32, NonZeroU64, NonZeroUsize},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};
use tracing::{debug, info, warn};

/// Channel carrying votes.
pub const VOTE_CHANNEL: u64 = 0;
/// Channel carrying certificates (notarizations, nullifications, finalizations).
pub const CERTIFICATE_CHANNEL: u64 = 1;
/// Channel carrying simplex's certificate repair requests.
pub const RESOLVER_CHANNEL: u64 = 2;
/// Channel carrying proposed blocks (marshal's buffered broadcast).
pub const BLOCK_CHANNEL: u64 = 3;
/// Channel carrying marshal's block and finalization backfill.
pub const BACKFILL_CHANNEL: u64 = 4;
/// Channel carrying application gossip (mempool transactions).
pub const APPLICATION_CHANNEL: u64 = 5;

/// The p2p channels the engine runs on, one `(sender, receiver)` pair per channel id
/// ([`VOTE_CHANNEL`] .. [`APPLICATION_CHANNEL`]), each registered with a quota of
/// [`ConsensusConfig::gossip_rate_per_sec`] and a message limit of at least
/// [`ConsensusConfig::max_message_size`].
pub struct Channels<S, R> {
    /// [`VOTE_CHANNEL`].
    pub votes: (S, R),
    /// [`CERTIFICATE_CHANNEL`].
    pub certificates: (S, R),
    /// [`RESOLVER_CHANNEL`].
    pub resolver: (S, R),
    /// [`BLOCK_CHANNEL`].
    pub blocks: (S, R),
    /// [`BACKFILL_CHANNEL`].
    pub backfill: (S, R),
    /// [`APPLICATION_CHANNEL`].
    pub application: (S, R),
}

/// A running engine's handle: finality certificates, application gossip, the current epoch and
/// collected equivocation evidence.
#[derive(Clone)]
pub struct ConsensusHandle {
    marshal: marshal::core::Mailbox<Scheme, Standard<ChainBlock>>,
    gossip: mpsc::Sender<Vec<u8>>,
    max_gossip_bytes: usize,
    status: Arc<Status>,
    evidence: Arc<Mutex<VecDeque<Vec<u8>>>>,
}

/// What the epoch orchestrator publishes to the handle.
#[derive(Default)]
pub(crate) struct Status {
    epoch: AtomicU64,
    voting: AtomicBool,
}

impl ConsensusHandle {
    /// The encoded Commonware `Finalization` certificate for the block at `height`, if that
    /// height is finalized and stored here. Decode it with the ed25519 scheme's certificate codec
    /// config and verify it against the committee of the block's epoch and the namespace.
    pub async fn finalization(&self, height: u64) -> Option<Vec<u8>> {
        let finalization = self.marshal.get_finalization(Height::new(height)).await?;
        Some(finalization.encode().to_vec())
    }

    /// The epoch this node is in: the epoch of the next block it will apply.
    pub fn current_epoch(&self) -> u64 {
        self.status.epoch.load(Ordering::Acquire)
    }

    /// Whether this node is in the current epoch's committee (votes) rather than following.
    pub fn is_voting(&self) -> bool {
        self.status.voting.load(Ordering::Acquire)
    }

    /// Equivocation evidence collected since the last call (each item is accepted by
    /// [`crate::verify_evidence`] with the namespace and the committee of its epoch). At most
    /// 1,024 items are kept; the oldest are dropped first.
    pub fn take_evidence(&self) -> Vec<Vec<u8>> {
        crate::evidence::drain(&self.evidence)
    }

    /// Broadcasts `bytes` to every peer on the application channel. Best effort: dropped if
    /// larger than the network's message limit, if the local queue is full, or if a peer is
    /// over its quota.
    pub async fn gossip(&self, bytes: Vec<u8>) {
        if bytes.len() > self.max_gossip_bytes {
            warn!(size = bytes.len(), max = self.max_gossip_bytes, "gossip message too large; dropped");
            return;
        }
        if self.gossip.clone().try_send(bytes).is_err() {
            debug!("gossip queue full or closed; dropped");
        }
    }
}

/// Starts the engine over caller-provided channels (the simulated network in tests, the
/// authenticated one in [`crate::start`]).
///
/// `peers` tracks one peer set per epoch (id = epoch, primary = that epoch's committee; a
/// manager may add followers as secondary peers, as [`crate::start`] does with every address it
/// knows) and provides them to block broadcast and backfill; `blocker` disconnects peers that
/// send invalid data. Storage partitions are prefixed with
/// [`ConsensusConfig::partition_prefix`].
///
/// This node's key need not be in the genesis committee: outside the current committee the node
/// follows (applies every finalized block) and starts voting in the first epoch that names it.
/// After a restart it re-enters the epoch of the next block to apply.
pub async fn start_with_channels<E, X, S, R, P, B>(
    ctx: E,
    cfg: ConsensusConfig,
    channels: Channels<S, R>,
    peers: P,
    blocker: B,
    executor: X,
) -> Result<ConsensusHandle, ConsensusError>
where
    E: Spawner + Clock + Storage + Metrics + CryptoRng,
    X: Executor,
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
    P: Manager<PublicKey = ed25519::PublicKey>,
    B: Blocker<PublicKey = ed25519::PublicKey>,
{
    cfg.validate()?;
    let me = cfg.signer.public_key();
    let genesis_committee = committee_set(&cfg.committee)?;
    let prefix = cfg.partition_prefix.clone();
    let max_block = cfg.max_block_bytes;
    let timeouts = cfg.timeouts.clone();
    let fetch_timeout = NZDuration!(timeouts.fetch);
    let page_cache = CacheRef::new(NZU16!(16_384), NZUsize!(1_024));
    let mailbox_size = NZUsize!(1_024);
    let epocher = FixedEpocher::new(NonZeroU64::new(cfg.epoch_length).unwrap_or(NZU64!(u64::MAX)));
    let provider = EpochProvider::default();

    // Marshal backfill resolver.
    let resolver = marshal::resolver::p2p::init(
        ctx.child("backfill"),
        marshal::resolver::p2p::Config {
            public_key: me.clone(),
            peer_provider: peers.clone(),
            blocker: blocker.clone(),
            mailbox_size,
            fetch_timeout,
            fetch_retry_delay: timeouts.fetch_retry,
            priority_requests: false,
            priority_responses: false,
        },
        channels.backfill,
    );

    // Buffered broadcast of proposed blocks.
    let (broadcast, buffer) = buffered::Engine::new(
        ctx.child("broadcast"),
        buffered::Config {
            public_key: me.clone(),
            mailbox_size,
            deque_size: 10,
            priority: false,
            codec_config: max_block,
            peer_provider: peers.clone(),
            strategy: Sequential,
        },
    );
    broadcast.start(channels.blocks);

    // Archives of finalized blocks and their certificates (full history).
    let finalizations = immutable::Archive::init(
        ctx.child("finalizations"),
        archive_config(&prefix, "finalizations", &page_cache, Scheme::certificate_codec_config_unbounded()),
    )
    .await
    .map_err(|e| ConsensusError::Storage(e.to_string()))?;
    let blocks =
        immutable::Archive::init(ctx.child("blocks"), archive_config(&prefix, "blocks", &page_cache, max_block))
            .await
            .map_err(|e| ConsensusError::Storage(e.to_string()))?;

    let genesis = ChainBlock::new(cfg.genesis.clone());
    let genesis_digest = genesis.digest();
    let (actor, mailbox, floor) = marshal::core::Actor::init(
        ctx.child("marshal"),
        finalizations,
        blocks,
        marshal::Config {
            provider: provider.clone(),
            epocher: epocher.clone(),
            start: marshal::Start::Genesis(Digested::precomputed(genesis, genesis_digest)),
            partition_prefix: format!("{prefix}-marshal"),
            mailbox_size,
            view_retention: ViewDelta::new(64),
            prunable_items_per_section: NZU64!(1_024),
            page_cache: page_cache.clone(),
            replay_buffer: NZUsize!(1 << 20),
            key_write_buffer: NZUsize!(1 << 20),
            value_write_buffer: NZUsize!(1 << 20),
            block_codec_config: max_block,
            max_repair: NZUsize!(16),
            max_pending_acks: NZUsize!(16),
            strategy: Sequential,
        },
    )
    .await;
    let (finalizer, deliveries) = Finalizer::new();
    actor.start(finalizer, buffer, resolver);

    // Per-epoch subchannels of the three simplex channels; messages for epochs without a
    // running engine land in the backup queues (hints that we are behind).
    let (vote_mux, votes, vote_backup) =
        Muxer::builder(ctx.child("vote_mux"), channels.votes.0, channels.votes.1).with_backup().build();
    vote_mux.start();
    let (cert_mux, certificates, cert_backup) =
        Muxer::builder(ctx.child("certificate_mux"), channels.certificates.0, channels.certificates.1)
            .with_backup()
            .build();
    cert_mux.start();
    let (resolver_mux, resolvers, resolver_backup) =
        Muxer::builder(ctx.child("resolver_mux"), channels.resolver.0, channels.resolver.1).with_backup().build();
    resolver_mux.start();

    // The epoch to (re-)enter: the epoch of the next block to apply.
    let next_height = floor.processed().map_or(0, |p| p.height().get().saturating_add(1));
    let epoch = epocher.containing(Height::new(next_height)).map_or(0, |info| info.epoch().get());
    let (committee, epoch_floor) = recover_epoch(&mailbox, &epocher, &genesis_committee, genesis_digest, epoch).await?;

    // Simplex over the inline-verifying marshal wrapper (one wrapper shared by every epoch).
    let wrapper = marshal::standard::Inline::new(
        ctx.child("application"),
        App::new(executor.clone(), max_block),
        mailbox.clone(),
        epocher.clone(),
    );
    let status = Arc::new(Status::default());
    let evidence = Arc::new(Mutex::new(VecDeque::new()));
    let mut orchestrator = Orchestrator {
        ctx: ctx.child("epochs"),
        namespace: cfg.namespace.clone(),
        signer: cfg.signer.clone(),
        prefix: prefix.clone(),
        timeouts,
        page_cache,
        epocher,
        provider,
        peers,
        blocker,
        wrapper,
        marshal: mailbox.clone(),
        muxes: [votes, certificates, resolvers],
        status: status.clone(),
        evidence: evidence.clone(),
        committee: Set::default(),
        current: None,
        last_hint: None,
    };
    orchestrator.enter(epoch, committee, epoch_floor).await;
    ctx.child("orchestrator").spawn({
        let executor = executor.clone();
        move |_| orchestrator.run(executor, deliveries, [vote_backup, cert_backup, resolver_backup])
    });

    // Application gossip, both directions.
    let (gossip_tx, gossip_rx) = mpsc::channel(1_024);
    let (app_sender, app_receiver) = channels.application;
    ctx.child("gossip_out").spawn(move |_| send_gossip(app_sender, gossip_rx));
    ctx.child("gossip_in").spawn(move |_| receive_gossip(app_receiver, executor));

    Ok(ConsensusHandle {
        marshal: mailbox,
        gossip: gossip_tx,
        max_gossip_bytes: cfg.max_message_size() as usize,
        status,
        evidence,
    })
}

/// The committee of `epoch` and the block its engine starts from (genesis, or the previous
/// epoch's last block), read from finalized blocks in marshal's archive: the committee is the
/// `next_committee` of the latest boundary block before `epoch` that names one, else genesis'.
async fn recover_epoch(
    marshal: &marshal::core::Mailbox<Scheme, Standard<ChainBlock>>,
    epocher: &FixedEpocher,
    genesis_committee: &Set<ed25519::PublicKey>,
    genesis_digest: sha256::Digest,
    epoch: u64,
) -> Result<(Set<ed25519::PublicKey>, sha256::Digest), ConsensusError> {
    if epoch == 0 {
        return Ok((genesis_committee.clone(), genesis_digest));
    }
    let boundary = |e: u64| epocher.last(Epoch::new(e)).expect("a fixed epocher covers every epoch");
    let floor = marshal
        .get_block(boundary(epoch - 1))
        .await
        .ok_or(ConsensusError::Storage(format!("the last block of epoch {} is not stored", epoch - 1)))?;
    let floor_digest = floor.digest();
    let mut block = Some(floor);
    for e in (0..epoch).rev() {
        let b = match block.take() {
            Some(b) => b,
            None => marshal
                .get_block(boundary(e))
                .await
                .ok_or(ConsensusError::Storage(format!("the last block of epoch {e} is not stored")))?,
        };
        if let Some(next) = next_committee(b.inner().block()) {
            return Ok((next, floor_digest));
        }
    }
    Ok((genesis_committee.clone(), floor_digest))
}

/// The valid, non-empty committee a boundary block names, if any.
fn next_committee(block: &umbra_types::Block) -> Option<Set<ed25519::PublicKey>> {
    let keys = block.header.next_committee.as_ref()?;
    match committee_set(keys) {
        Ok(set) if !set.is_empty() => Some(set),
        Ok(_) | Err(_) => {
            warn!(height = block.header.height, "finalized next_committee is empty or invalid; keeping the committee");
            None
        }
    }
}

/// Per-epoch schemes, shared by marshal (to verify finalizations) and the orchestrator.
#[derive(Clone, Default)]
pub(crate) struct EpochProvider {
    schemes: Arc<Mutex<BTreeMap<u64, Arc<Scheme>>>>,
}

impl EpochProvider {
    fn insert(&self, epoch: u64, scheme: Scheme) {
        if let Ok(mut schemes) = self.schemes.lock() {
            schemes.insert(epoch, Arc::new(scheme));
            // Keep the previous epoch for late certificates; older ones are never needed again.
            let keep = schemes.split_off(&epoch.saturating_sub(1));
            *schemes = keep;
        }
    }
}

impl certificate::Provider for EpochProvider {
    type Scope = Epoch;
    type Scheme = Scheme;

    fn scoped(&self, scope: Epoch) -> Option<certificate::Scoped<Scheme>> {
        let schemes = self.schemes.lock().ok()?;
        schemes.get(&scope.get()).cloned().map(certificate::Scoped::scheme)
    }
}

type Wrapper<E, X> = marshal::standard::Inline<E, Scheme, App<X>, ChainBlock, FixedEpocher>;
type Backup = commonware_utils::channel::mpsc::Receiver<(u64, (ed25519::PublicKey, commonware_runtime::IoBuf))>;

/// Runs one simplex engine per epoch and hands over at each epoch's last block.
struct Orchestrator<E, X, S, P, B>
where
    E: Spawner + Clock + Storage + Metrics + CryptoRng,
    X: Executor,
    S: Sender<PublicKey = ed25519::PublicKey>,
{
    ctx: E,
    namespace: Vec<u8>,
    signer: ed25519::PrivateKey,
    prefix: String,
    timeouts: Timeouts,
    page_cache: CacheRef,
    epocher: FixedEpocher,
    provider: EpochProvider,
    peers: P,
    blocker: B,
    wrapper: Wrapper<E, X>,
    marshal: marshal::core::Mailbox<Scheme, Standard<ChainBlock>>,
    /// Vote, certificate and resolver subchannel registrars.
    muxes: [MuxHandle<S>; 3],
    status: Arc<Status>,
    evidence: Arc<Mutex<VecDeque<Vec<u8>>>>,
    /// The current epoch's committee.
    committee: Set<ed25519::PublicKey>,
    /// The current epoch and its engine.
    current: Option<(u64, Handle<()>)>,
    /// When we last asked for the current epoch's last block because peers are ahead.
    last_hint: Option<(u64, SystemTime)>,
}

impl<E, X, S, P, B> Orchestrator<E, X, S, P, B>
where
    E: Spawner + Clock + Storage + Metrics + CryptoRng,
    X: Executor,
    S: Sender<PublicKey = ed25519::PublicKey>,
    P: Manager<PublicKey = ed25519::PublicKey>,
    B: Blocker<PublicKey = ed25519::PublicKey>,
{
    fn epoch(&self) -> u64 {
        self.current.as_ref().map_or(0, |(e, _)| *e)
    }

    /// Tracks the epoch's peer set, registers its scheme, starts its engine (voting if this key is
    /// a member, observing otherwise), then stops the previous epoch's engine.
    async fn enter(&mut self, epoch: u64, committee: Set<ed25519::PublicKey>, floor: sha256::Digest) {
        let _ = self.peers.track(epoch, TrackedPeers::primary(committee.clone()));
        let (scheme, voting) = match Scheme::signer(&self.namespace, committee.clone(), self.signer.clone()) {
            Some(scheme) => (scheme, true),
            None => (Scheme::verifier(&self.namespace, committee.clone()), false),
        };
        self.provider.insert(epoch, scheme.clone());
        self.committee = committee.clone();
        let [votes, certificates, resolver] = &mut self.muxes;
        let (Ok(votes), Ok(certificates), Ok(resolver)) =
            (votes.register(epoch).await, certificates.register(epoch).await, resolver.register(epoch).await)
        else {
            warn!(epoch, "could not register the epoch's channels; the network is shutting down");
            return;
        };
        let t = &self.timeouts;
        let reporter =
            Reporters::from((self.wrapper.clone(), EvidenceCollector::new(committee, self.evidence.clone())));
        let engine = simplex::Engine::new(
            self.ctx.child("simplex").with_attribute("epoch", epoch),
            simplex::Config {
                scheme,
                elector: RoundRobin::<Sha256>::default(),
                blocker: self.blocker.clone(),
                automaton: self.wrapper.clone(),
                relay: self.wrapper.clone(),
                reporter,
                strategy: Sequential,
                partition: format!("{}-simplex-{epoch}", self.prefix),
                mailbox_size: NZUsize!(1_024),
                epoch: Epoch::new(epoch),
                floor: simplex::Floor::Genesis(floor),
                replay_buffer: NZUsize!(1 << 20),
                write_buffer: NZUsize!(1 << 20),
                page_cache: self.page_cache.clone(),
                leader_timeout: t.leader,
                certification_timeout: t.certification,
                timeout_retry: t.retry,
                view_retention: ViewDelta::new(64),
                skip: simplex::SkipPolicy::Enabled { timeout: t.skip, budget: simplex::SkipBudget::Participants },
                fetch_timeout: NZDuration!(t.fetch),
                fetch_retry_delay: t.fetch_retry,
                forward: simplex::ForwardPolicy::SilentLeader,
                track_historical_votes: false,
            },
        );
        let handle = engine.start(votes, certificates, resolver);
        if let Some((old, previous)) = self.current.replace((epoch, handle)) {
            debug!(old, epoch, "stopping the previous epoch's engine");
            previous.abort();
        }
        self.status.epoch.store(epoch, Ordering::Release);
        self.status.voting.store(voting, Ordering::Release);
        info!(epoch, voting, "entered epoch");
    }

    /// Applies finalized blocks in order (entering the next epoch at each epoch's last block
    /// before acknowledging it) and turns traffic for later epochs into fetch hints.
    async fn run(mut self, executor: X, mut deliveries: mpsc::UnboundedReceiver<Delivery>, backups: [Backup; 3]) {
        let (hints_tx, mut hints) = mpsc::unbounded::<(u64, ed25519::PublicKey)>();
        for mut backup in backups {
            let tx = hints_tx.clone();
            self.ctx.child("backup").spawn(move |_| async move {
                while let Some((epoch, (from, _))) = backup.recv().await {
                    if tx.unbounded_send((epoch, from)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(hints_tx);
        loop {
            select! {
                delivery = deliveries.next() => {
                    let Some((block, ack)) = delivery else { return };
                    executor.finalized(block.inner().block().clone()).await;
                    self.after_finalized(block.inner()).await;
                    ack.acknowledge();
                },
                hint = hints.next() => {
                    let Some((epoch, from)) = hint else { continue };
                    self.hint(epoch, from);
                },
            }
        }
    }

    async fn after_finalized(&mut self, block: &ChainBlock) {
        let height = block.height();
        let current = self.epoch();
        let Some(info) = self.epocher.containing(height) else { return };
        if info.epoch().get() != current || info.last() != height {
            return;
        }
        let next = current + 1;
        let committee = next_committee(block.block()).unwrap_or_else(|| self.committee.clone());
        self.enter(next, committee, block.digest()).await;
    }

    /// A peer sent a message for `epoch`: if that is ahead of us, ask it for our epoch's last
    /// block (marshal then backfills down to what we have).
    fn hint(&mut self, epoch: u64, from: ed25519::PublicKey) {
        let current = self.epoch();
        if epoch <= current {
            return;
        }
        let now = self.ctx.current();
        if let Some((e, at)) = self.last_hint
            && e == current
            && now.duration_since(at).unwrap_or_default() < Duration::from_millis(200)
        {
            return;
        }
        self.last_hint = Some((current, now));
        let Some(last) = self.epocher.last(Epoch::new(current)) else { return };
        debug!(current, ahead = epoch, height = last.get(), "peer is ahead; fetching our epoch's last block");
        self.marshal.hint_finalized(last, NonEmptyVec::new(from));
    }
}

/// The committee as Commonware's ordered participant set.
pub(crate) fn committee_set(
    committee: &[umbra_types::ValidatorKey],
) -> Result<Set<ed25519::PublicKey>, ConsensusError> {
    let keys = committee
        .iter()
        .map(|k| public_key(k).ok_or_else(|| ConsensusError::InvalidKey(hex(k))))
        .collect::<Result<Vec<_>, _>>()?;
    let n = keys.len();
    let set = Set::from_iter_dedup(keys);
    if set.len() != n {
        return Err(ConsensusError::DuplicateValidator);
    }
    Ok(set)
}

fn hex(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// The per-peer, per-channel quota for `rate` messages per second.
pub(crate) fn quota(rate: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(rate).unwrap_or(NZU32!(1)))
}

fn archive_config<C>(prefix: &str, name: &str, page_cache: &CacheRef, codec_config: C) -> immutable::Config<C> {
    let write_buffer: NonZeroUsize = NZUsize!(1 << 20);
    immutable::Config {
        metadata_partition: format!("{prefix}-{name}-metadata"),
        freezer_table_partition: format!("{prefix}-{name}-freezer-table"),
        freezer_table_initial_size: 1_024,
        freezer_table_resize_frequency: 10,
        freezer_table_resize_chunk_size: 128,
        freezer_key_partition: format!("{prefix}-{name}-freezer-key"),
        freezer_key_page_cache: page_cache.clone(),
        freezer_value_partition: format!("{prefix}-{name}-freezer-value"),
        freezer_value_target_size: 1 << 28,
        freezer_value_compression: None,
        ordinal_partition: format!("{prefix}-{name}-ordinal"),
        items_per_section: NZU64!(1_024),
        codec_config,
        replay_buffer: write_buffer,
        freezer_key_write_buffer: write_buffer,
        freezer_value_write_buffer: write_buffer,
        ordinal_write_buffer: write_buffer,
    }
}

async fn send_gossip<S: Sender<PublicKey = ed25519::PublicKey>>(mut sender: S, mut queue: mpsc::Receiver<Vec<u8>>) {
    while let Some(bytes) = queue.next().await {
        sender.send(Recipients::All, bytes, false);
    }
}

async fn receive_gossip<R: Receiver<PublicKey = ed25519::PublicKey>, X: Executor>(mut receiver: R, executor: X) {
    loop {
        match receiver.recv().await {
            Ok((from, message)) => {
                executor.gossip(validator_key(&from), message.as_ref().to_vec()).await;
            }
            Err(err) => {
                debug!(%err, "application channel closed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_committee_key_is_an_error() {
        // The all-ones y coordinate is not on the curve for every encoding; find one that fails.
        let bad = (0u8..=255).map(|b| [b; 32]).find(|k| public_key(k).is_none());
        let bad = bad.expect("some constant key is not a point");
        assert!(matches!(committee_set(&[bad]), Err(ConsensusError::InvalidKey(_))));
    }

    #[test]
    fn a_zero_rate_becomes_one_message_per_second() {
        assert_eq!(quota(0), quota(1));
    }
}
