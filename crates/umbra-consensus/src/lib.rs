//! Orders Umbra blocks with Commonware: simplex BFT consensus, marshal block dissemination and
//! storage, and authenticated p2p, behind one [`Executor`] trait the node implements.
//!
//! Why it is shaped this way: Commonware's application and marshal APIs are ALPHA, so this crate
//! keeps them private and exposes only what the node needs: an [`Executor`] (build, check and
//! apply blocks; receive gossip), a [`ConsensusConfig`], two ways to start ([`start`] on TCP for
//! production, [`start_with_channels`] over any p2p channels, such as Commonware's simulated
//! network in tests) and a [`ConsensusHandle`] for finality certificates and gossip. All code is
//! generic over Commonware runtime traits, so the same engine runs on the tokio runtime and,
//! seeded and reproducible, on the deterministic one. Signatures are ed25519 (attributable, so
//! equivocation is provable, see [`verify_evidence`]). Epochs are fixed-length height ranges with
//! one simplex instance each; the last block of an epoch names the next committee, and nodes
//! outside the committee follow the chain until a committee includes them.

mod application;
mod block;
mod config;
mod engine;
mod evidence;
mod executor;
mod network;

pub use block::{public_key, validator_key};
pub use config::{ConsensusConfig, ConsensusError, MAX_COMMITTEE, NetConfig, ProposeContext, Timeouts};
pub use engine::{
    APPLICATION_CHANNEL, BACKFILL_CHANNEL, BLOCK_CHANNEL, CERTIFICATE_CHANNEL, Channels, ConsensusHandle,
    RESOLVER_CHANNEL, VOTE_CHANNEL, start_with_channels,
};
pub use evidence::{EVIDENCE_VERSION, EvidenceError, MAX_EVIDENCE_BYTES, evidence_round, verify_evidence};
pub use executor::Executor;
pub use network::start;
