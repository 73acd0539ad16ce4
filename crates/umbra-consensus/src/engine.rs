//! Wiring: marshal (archives, buffered broadcast, backfill resolver) under simplex, over
//! caller-provided p2p channels.

use crate::{
    ConsensusConfig, ConsensusError, Executor,
    application::{App, Finalizer, run_finalizer},
    block::ChainBlock,
    config::Scheme,
    public_key, validator_key,
};
use commonware_broadcast::buffered;
use commonware_codec::Encode as _;
use commonware_consensus::{
    marshal::{self, standard::Standard},
    simplex::{self, elector::RoundRobin},
    types::{Epoch, FixedEpocher, Height, ViewDelta},
};
use commonware_cryptography::{
    Digested, Digestible as _, Sha256, Signer as _, certificate::ConstantProvider, certificate::Verifier as _, ed25519,
};
use commonware_p2p::{Blocker, Provider, Receiver, Recipients, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Metrics, Quota, Spawner, Storage, buffer::paged::CacheRef};
use commonware_storage::archive::immutable;
use commonware_utils::{NZDuration, NZU16, NZU32, NZU64, NZUsize, ordered::Set};
use futures::{StreamExt as _, channel::mpsc};
use rand_core::CryptoRng;
use std::num::{NonZeroU32, NonZeroUsize};
use tracing::{debug, warn};

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

/// Heights per epoch. One epoch for now: the committee never changes. Committee rotation will
/// replace this with a real length (and one simplex instance per epoch).
const EPOCH_LENGTH: u64 = u64::MAX;

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

/// A running engine's handle: finality certificates and application gossip.
#[derive(Clone)]
pub struct ConsensusHandle {
    marshal: marshal::core::Mailbox<Scheme, Standard<ChainBlock>>,
    gossip: mpsc::Sender<Vec<u8>>,
    max_gossip_bytes: usize,
}

impl ConsensusHandle {
    /// The encoded Commonware `Finalization` certificate for the block at `height`, if that
    /// height is finalized and stored here. Decode it with the ed25519 scheme's certificate codec
    /// config and verify it against the committee and namespace.
    pub async fn finalization(&self, height: u64) -> Option<Vec<u8>> {
        let finalization = self.marshal.get_finalization(Height::new(height)).await?;
        Some(finalization.encode().to_vec())
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
/// `peers` provides the tracked peer sets (blocks are broadcast to and fetched from them) and
/// `blocker` disconnects peers that send invalid data. All tasks are spawned from `ctx`, so they
/// stop when the task owning `ctx` ends or is aborted; storage survives in `ctx`'s storage under
/// [`ConsensusConfig::partition_prefix`].
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
    P: Provider<PublicKey = ed25519::PublicKey>,
    B: Blocker<PublicKey = ed25519::PublicKey>,
{
    cfg.validate()?;
    let me = cfg.signer.public_key();
    let committee = committee_set(&cfg.committee)?;
    let scheme = Scheme::signer(&cfg.namespace, committee, cfg.signer.clone()).ok_or(ConsensusError::NotInCommittee)?;
    let prefix = cfg.partition_prefix.clone();
    let max_block = cfg.max_block_bytes;
    let timeouts = cfg.timeouts.clone();
    let fetch_timeout = NZDuration!(timeouts.fetch);
    let page_cache = CacheRef::new(NZU16!(16_384), NZUsize!(1_024));
    let mailbox_size = NZUsize!(1_024);
    let epocher = FixedEpocher::new(NZU64!(EPOCH_LENGTH));

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
            peer_provider: peers,
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
    let (actor, mailbox, _floor) = marshal::core::Actor::init(
        ctx.child("marshal"),
        finalizations,
        blocks,
        marshal::Config {
            provider: ConstantProvider::<_, Epoch>::new(scheme.clone()),
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
    ctx.child("finalizer").spawn({
        let executor = executor.clone();
        move |_| run_finalizer(executor, deliveries)
    });

    // Simplex over the inline-verifying marshal wrapper.
    let wrapper = marshal::standard::Inline::new(
        ctx.child("application"),
        App::new(executor.clone(), max_block),
        mailbox.clone(),
        epocher,
    );
    let epoch = Epoch::zero();
    let engine = simplex::Engine::new(
        ctx.child("simplex"),
        simplex::Config {
            scheme,
            elector: RoundRobin::<Sha256>::default(),
            blocker,
            automaton: wrapper.clone(),
            relay: wrapper.clone(),
            reporter: wrapper,
            strategy: Sequential,
            partition: format!("{prefix}-simplex-{}", epoch.get()),
            mailbox_size,
            epoch,
            floor: simplex::Floor::Genesis(genesis_digest),
            replay_buffer: NZUsize!(1 << 20),
            write_buffer: NZUsize!(1 << 20),
            page_cache,
            leader_timeout: timeouts.leader,
            certification_timeout: timeouts.certification,
            timeout_retry: timeouts.retry,
            view_retention: ViewDelta::new(64),
            skip: simplex::SkipPolicy::Enabled { timeout: timeouts.skip, budget: simplex::SkipBudget::Participants },
            fetch_timeout,
            fetch_retry_delay: timeouts.fetch_retry,
            forward: simplex::ForwardPolicy::SilentLeader,
            track_historical_votes: false,
        },
    );
    engine.start(channels.votes, channels.certificates, channels.resolver);

    // Application gossip, both directions.
    let (gossip_tx, gossip_rx) = mpsc::channel(1_024);
    let (app_sender, app_receiver) = channels.application;
    ctx.child("gossip_out").spawn(move |_| send_gossip(app_sender, gossip_rx));
    ctx.child("gossip_in").spawn(move |_| receive_gossip(app_receiver, executor));

    Ok(ConsensusHandle { marshal: mailbox, gossip: gossip_tx, max_gossip_bytes: cfg.max_message_size() as usize })
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
