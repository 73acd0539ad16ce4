//! Production wiring: an authenticated `lookup` network (every address given explicitly) under the
//! engine.

use crate::{
    ConsensusConfig, ConsensusError, ConsensusHandle, Executor, NetConfig,
    engine::{
        APPLICATION_CHANNEL, BACKFILL_CHANNEL, BLOCK_CHANNEL, CERTIFICATE_CHANNEL, Channels, RESOLVER_CHANNEL,
        VOTE_CHANNEL, committee_set, quota, start_with_channels,
    },
    public_key,
};
use commonware_actor::Feedback;
use commonware_cryptography::{ChaCha20Poly1305, Signer as _, ed25519};
use commonware_p2p::{
    Address, AddressableTrackedPeers, Manager, PeerSetSubscription, Provider, TrackedPeers, authenticated::lookup,
};
use commonware_runtime::{Clock, Metrics, Network, Resolver, Spawner, Storage};
use commonware_stream::{
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::{NZUsize, ordered::Map};
use rand_core::CryptoRng;
use std::time::Duration;
use tracing::warn;

/// Starts the engine on an authenticated TCP network: listens on `net.listen`, dials every
/// address in `net.peers`, registers the six channels and starts everything under `ctx`.
///
/// `net.peers` lists every node of the network with its address: at least the genesis
/// committee, plus any followers (non-voting full nodes) and future validators. Each epoch's
/// peer set has that epoch's committee as primary peers and every other listed node as
/// secondary peers, so followers receive blocks and certificates. A committee member without a
/// listed address cannot be dialed.
///
/// The tasks stop when the task owning `ctx` ends, so keep that task alive for the node's
/// lifetime. With the tokio runtime, give the runner an explicit storage directory, or state is
/// lost on restart.
pub async fn start<E, X>(
    ctx: E,
    cfg: ConsensusConfig,
    net: NetConfig,
    executor: X,
) -> Result<ConsensusHandle, ConsensusError>
where
    E: Spawner + Clock + Storage + Metrics + CryptoRng + Network + Resolver,
    X: Executor,
{
    cfg.validate()?;
    let committee = committee_set(&cfg.committee)?;
    let me = cfg.signer.public_key();
    let mut addresses = Vec::with_capacity(net.peers.len());
    for (key, addr) in &net.peers {
        let pk = public_key(key).ok_or(ConsensusError::InvalidPeers("a peer key is not an ed25519 key"))?;
        addresses.push((pk, Address::from(*addr)));
    }
    let addresses = Map::try_from(addresses).map_err(|_| ConsensusError::InvalidPeers("a peer is listed twice"))?;
    if !committee.iter().all(|k| addresses.position(k).is_some()) {
        return Err(ConsensusError::InvalidPeers("peers must include every genesis committee member"));
    }

    let handshake = Cups::<_, ChaCha20Poly1305>::new(
        Sake {
            signer: cfg.signer.clone(),
            synchrony_bound: Duration::from_secs(5),
            max_handshake_age: Duration::from_secs(10),
            version: sake::Version::V1,
        },
        cups::Version::V1,
    );
    let mut namespace = cfg.namespace.clone();
    namespace.extend_from_slice(b"/p2p");
    let mut p2p = lookup::Config::recommended(
        handshake,
        &namespace,
        net.listen,
        commonware_p2p::authenticated::peer_set_limit(addresses.keys().iter(), &me),
        cfg.max_message_size(),
        NZUsize!(1_024),
    );
    // A small permissioned committee (only listed keys at listed IPs get in): private addresses
    // are fine, several validators may share one IP (`umbra dev` runs them all on 127.0.0.1, and
    // the production limit of one handshake per IP per 5 s would delay startup by many seconds),
    // and a restarted peer should be redialed within a second, not after a one-minute cooldown.
    p2p.allow_private_ips = true;
    p2p.allowed_handshake_rate_per_ip = quota(16);
    p2p.allowed_handshake_rate_per_subnet = quota(128);
    p2p.peer_connection_cooldown = Duration::from_secs(1);
    p2p.dial_frequency = Duration::from_millis(500);
    p2p.ping_frequency = Duration::from_secs(5);

    let (mut network, oracle) = lookup::Network::new(ctx.child("p2p"), p2p);
    let peers = LookupPeers { oracle: oracle.clone(), book: addresses };
    let rate = quota(cfg.gossip_rate_per_sec);
    let channels = Channels {
        votes: network.register(VOTE_CHANNEL, rate),
        certificates: network.register(CERTIFICATE_CHANNEL, rate),
        resolver: network.register(RESOLVER_CHANNEL, rate),
        blocks: network.register(BLOCK_CHANNEL, rate),
        backfill: network.register(BACKFILL_CHANNEL, rate),
        application: network.register(APPLICATION_CHANNEL, rate),
    };
    network.start();
    start_with_channels(ctx.child("consensus"), cfg, channels, peers, oracle, executor).await
}

/// The lookup network's oracle as a per-epoch [`Manager`]: each tracked set gets the listed
/// addresses of its primary peers, and every other listed node as a secondary peer.
#[derive(Clone, Debug)]
struct LookupPeers {
    oracle: lookup::Oracle<ed25519::PublicKey>,
    book: Map<ed25519::PublicKey, Address>,
}

impl Provider for LookupPeers {
    type PublicKey = ed25519::PublicKey;

    fn peer_set(&mut self, id: u64) -> impl Future<Output = Option<TrackedPeers<ed25519::PublicKey>>> + Send {
        self.oracle.peer_set(id)
    }

    fn subscribe(&mut self) -> impl Future<Output = PeerSetSubscription<ed25519::PublicKey>> + Send {
        self.oracle.subscribe()
    }
}

impl Manager for LookupPeers {
    fn track<R>(&mut self, id: u64, peers: R) -> Feedback
    where
        R: Into<TrackedPeers<ed25519::PublicKey>> + Send,
    {
        let peers = peers.into().union();
        let mut primary = Vec::new();
        let mut secondary = Vec::new();
        for (key, address) in self.book.iter_pairs() {
            if peers.position(key).is_some() {
                primary.push((key.clone(), address.clone()));
            } else {
                secondary.push((key.clone(), address.clone()));
            }
        }
        let missing = peers.len() - primary.len();
        if missing > 0 {
            warn!(id, missing, "committee members without a listed address cannot be dialed");
        }
        let (Ok(primary), Ok(secondary)) = (Map::try_from(primary), Map::try_from(secondary)) else {
            return Feedback::Ok;
        };
        commonware_p2p::AddressableManager::track(
            &mut self.oracle,
            id,
            AddressableTrackedPeers::new(primary, secondary),
        )
    }
}
