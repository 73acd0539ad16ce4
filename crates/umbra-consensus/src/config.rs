//! Plain-data configuration, with defaults and a `validate` that turns Commonware's panics on
//! bad values into errors.

use crate::block::ChainBlock;
use commonware_consensus::{marshal, simplex};
use commonware_cryptography::{ed25519, sha256};
use std::{net::SocketAddr, time::Duration};
use umbra_types::{Block, Hash, ValidatorKey};

/// The consensus signing scheme: ed25519, attributable (a certificate names its signers, so a
/// double vote is slashable evidence).
pub(crate) type Scheme = simplex::scheme::ed25519::Scheme;

/// Largest committee the message size limit is computed for (see
/// [`ConsensusConfig::max_message_size`]).
pub const MAX_COMMITTEE: usize = 128;

/// Consensus timing. Commonware checks the ordering with a panic; [`ConsensusConfig::validate`]
/// checks it first and returns an error instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// How long to wait for the leader's proposal (paid only when the leader is down).
    pub leader: Duration,
    /// Deadline to notarize and certify a view; must exceed `leader`.
    pub certification: Duration,
    /// How often a stuck view rebroadcasts its nullify vote and best certificate.
    pub retry: Duration,
    /// A leader silent this long while a quorum is live is skipped at once; must exceed
    /// `certification` and `retry`.
    pub skip: Duration,
    /// Timeout of one certificate or block fetch from a peer.
    pub fetch: Duration,
    /// Pause before retrying an unanswered fetch.
    pub fetch_retry: Duration,
}

impl Default for Timeouts {
    /// Tuned for validators on one host or a LAN (the "Umbra localhost" column of the notes).
    fn default() -> Self {
        Self {
            leader: Duration::from_millis(250),
            certification: Duration::from_millis(500),
            retry: Duration::from_millis(300),
            skip: Duration::from_secs(2),
            fetch: Duration::from_millis(300),
            fetch_retry: Duration::from_millis(20),
        }
    }
}

/// Everything the engine needs besides the network and the executor.
#[derive(Clone, Debug)]
pub struct ConsensusConfig {
    /// Signed into every vote and certificate (for example `b"umbra-" + chain_id`); light clients
    /// need the same bytes to verify finality certificates.
    pub namespace: Vec<u8>,
    /// This validator's consensus (and p2p identity) key.
    pub signer: ed25519::PrivateKey,
    /// The genesis committee (epoch 0), equal weight. Later committees come from the
    /// `next_committee` of each epoch's last block. This node's key need not be a member: a
    /// non-member follows the chain and starts voting in the first epoch whose committee names it.
    pub committee: Vec<ValidatorKey>,
    /// Heights per epoch: epoch `e` is heights `[e * epoch_length, (e + 1) * epoch_length)`. At
    /// least 2; every node of a chain must use the same value (the genesis `params.epoch_length`).
    /// `u64::MAX` keeps a single epoch forever.
    pub epoch_length: u64,
    /// The height-0 block every validator starts from.
    pub genesis: Block,
    /// Prefix of every storage partition this engine opens; unique per node on shared storage.
    pub partition_prefix: String,
    /// Largest accepted block (its borsh encoding). Never lower it while blocks are stored.
    pub max_block_bytes: usize,
    /// Consensus timing.
    pub timeouts: Timeouts,
    /// Per-peer, per-channel message rate (each direction) on every channel, consensus and
    /// application alike. About 1,000/s keeps the quota out of the latency path.
    pub gossip_rate_per_sec: u32,
}

/// Where to listen and whom to dial in the production (TCP) wiring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Local listen address.
    pub listen: SocketAddr,
    /// Every committee member's key and address, this validator included.
    pub peers: Vec<(ValidatorKey, SocketAddr)>,
}

/// What the proposer is asked to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposeContext {
    /// Height of the block to build (parent height + 1).
    pub height: u64,
    /// Consensus epoch of the view; goes into the header.
    pub epoch: u64,
    /// Consensus view the block is proposed in.
    pub view: u64,
    /// The view's leader (this validator); goes into the header.
    pub proposer: ValidatorKey,
    /// Id of the parent block; goes into the header.
    pub parent_digest: Hash,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// The committee is empty.
    #[error("the committee is empty")]
    EmptyCommittee,
    /// A committee or peer key is not a valid ed25519 public key.
    #[error("invalid validator key {0}")]
    InvalidKey(String),
    /// The committee lists a key twice.
    #[error("the committee lists a validator twice")]
    DuplicateValidator,
    /// The signer's key is not in the committee. No longer returned: a non-member follows.
    #[error("this validator's key is not in the committee")]
    NotInCommittee,
    /// The genesis block is not at height 0 or exceeds `max_block_bytes`.
    #[error("invalid genesis block: {0}")]
    InvalidGenesis(&'static str),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The peer list does not match the committee.
    #[error("invalid peer list: {0}")]
    InvalidPeers(&'static str),
    /// Opening the block or certificate archive failed.
    #[error("storage: {0}")]
    Storage(String),
}

impl ConsensusConfig {
    /// Checks every value Commonware would otherwise panic on.
    pub fn validate(&self) -> Result<(), ConsensusError> {
        if self.committee.is_empty() {
            return Err(ConsensusError::EmptyCommittee);
        }
        let mut sorted = self.committee.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.committee.len() {
            return Err(ConsensusError::DuplicateValidator);
        }
        if self.genesis.header.height != 0 {
            return Err(ConsensusError::InvalidGenesis("height is not 0"));
        }
        if self.max_block_bytes == 0 || self.max_block_bytes > (u32::MAX as usize) / 2 {
            return Err(ConsensusError::InvalidConfig("max_block_bytes out of range"));
        }
        if umbra_types::encode(&self.genesis).len() > self.max_block_bytes {
            return Err(ConsensusError::InvalidGenesis("larger than max_block_bytes"));
        }
        if self.epoch_length < 2 {
            return Err(ConsensusError::InvalidConfig("epoch_length must be at least 2"));
        }
        if self.gossip_rate_per_sec == 0 {
            return Err(ConsensusError::InvalidConfig("gossip_rate_per_sec is 0"));
        }
        if self.partition_prefix.is_empty() {
            return Err(ConsensusError::InvalidConfig("partition_prefix is empty"));
        }
        let t = &self.timeouts;
        if t.leader.is_zero() || t.retry.is_zero() || t.fetch.is_zero() {
            return Err(ConsensusError::InvalidConfig("a timeout is zero"));
        }
        if t.certification <= t.leader {
            return Err(ConsensusError::InvalidConfig("certification timeout must exceed leader timeout"));
        }
        if t.skip <= t.certification || t.skip <= t.retry {
            return Err(ConsensusError::InvalidConfig("skip timeout must exceed certification and retry timeouts"));
        }
        Ok(())
    }

    /// The largest p2p message this configuration sends (votes, certificates, blocks,
    /// backfill responses); the network must admit at least this much. Gossip on the
    /// application channel is capped at the same size.
    ///
    /// Sized for committees of up to [`MAX_COMMITTEE`] members (or the genesis committee, if
    /// larger), so that the limit does not change when committees rotate.
    pub fn max_message_size(&self) -> u32 {
        let n = u32::try_from(self.committee.len().max(MAX_COMMITTEE)).unwrap_or(u32::MAX);
        commonware_p2p::max_message_size(&[
            commonware_p2p::utils::mux::prefixed(simplex::max_payload_size::<Scheme, sha256::Digest>(n)),
            marshal::max_payload_size::<marshal::standard::Standard<ChainBlock>, Scheme>(n, &self.max_block_bytes),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_cryptography::Signer as _;

    fn config() -> ConsensusConfig {
        let signer = ed25519::PrivateKey::from_seed(1);
        ConsensusConfig {
            namespace: b"umbra-test".to_vec(),
            committee: vec![crate::validator_key(&signer.public_key())],
            signer,
            epoch_length: 100,
            genesis: Block {
                header: umbra_types::Header {
                    height: 0,
                    parent: Hash::ZERO,
                    timestamp_ms: 0,
                    proposer: [0; 32],
                    epoch: 0,
                    tx_root: Hash::ZERO,
                    state_root: Hash::ZERO,
                    messages_root: Hash::ZERO,
                    next_committee: None,
                },
                txs: vec![],
            },
            partition_prefix: "n0".into(),
            max_block_bytes: 1 << 20,
            timeouts: Timeouts::default(),
            gossip_rate_per_sec: 1_000,
        }
    }

    #[test]
    fn the_default_configuration_is_valid() {
        config().validate().expect("valid");
    }

    #[test]
    fn timeouts_out_of_order_are_refused_instead_of_panicking() {
        let mut c = config();
        c.timeouts.certification = c.timeouts.leader;
        assert!(matches!(c.validate(), Err(ConsensusError::InvalidConfig(_))));
        let mut c = config();
        c.timeouts.skip = c.timeouts.certification;
        assert!(matches!(c.validate(), Err(ConsensusError::InvalidConfig(_))));
    }

    #[test]
    fn an_epoch_shorter_than_two_heights_is_refused() {
        let mut c = config();
        c.epoch_length = 1;
        assert!(matches!(c.validate(), Err(ConsensusError::InvalidConfig(_))));
        c.epoch_length = u64::MAX;
        c.validate().expect("a single endless epoch is valid");
    }

    #[test]
    fn a_duplicate_or_empty_committee_is_refused() {
        let mut c = config();
        c.committee.push(c.committee[0]);
        assert!(matches!(c.validate(), Err(ConsensusError::DuplicateValidator)));
        c.committee.clear();
        assert!(matches!(c.validate(), Err(ConsensusError::EmptyCommittee)));
    }

    #[test]
    fn the_message_limit_admits_the_largest_block() {
        let c = config();
        assert!(c.max_message_size() as usize >= c.max_block_bytes);
    }
}
