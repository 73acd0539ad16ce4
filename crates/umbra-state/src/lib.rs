//! `umbra-state` is the chain's versioned, authenticated key-value state: a map from 32-byte keys
//! to byte values whose root every block header commits to, with proofs a light client checks.
//!
//! # Why it is shaped this way
//!
//! The state is a Commonware QMDB (`qmdb::current::ordered::variable`), the one QMDB variant
//! that proves both a key's current value and a key's absence against the latest root. QMDB is
//! ALPHA, so this crate keeps it behind a deliberately small API and pins its parameters here:
//!
//! * **Blocks are speculated before they are final.** [`State::speculate`] builds an in-memory,
//!   merkleized batch (a [`Pending`]) on top of the committed state or on top of another pending
//!   batch, so a proposer can compute the state root of block `h + 1` while `h` is still being
//!   voted on. Nothing touches disk until [`State::commit`], which applies a batch and makes it
//!   durable with one fsync. When one of two sibling batches is committed the other becomes
//!   [`StateError::Stale`].
//! * **Runtime-agnostic.** [`State`] is generic over the `commonware-runtime` traits (storage,
//!   clock, metrics, spawner) and never touches `std::fs`, so the same code runs on the tokio
//!   runtime in production and on the deterministic runtime in simulations, with identical roots.
//! * **Proofs against the latest committed root only.** [`State::prove`] returns an inclusion
//!   proof (with the value) or an exclusion proof; [`verify_proof`] is a pure function a light
//!   client runs. QMDB cannot prove a value against an older root, so the design never needs it.
//! * **Keys are hashes.** Callers hash their typed keys into a [`Key`]; values are opaque byte
//!   strings of at most [`MAX_VALUE_LEN`] bytes.
//!
//! # Parameters (node and light client must agree)
//!
//! | parameter | choice | why |
//! |---|---|---|
//! | hasher | [`StateHasher`] (SHA-256) | the project-wide digest; roots are 32 bytes |
//! | Merkle family | [`StateFamily`] (MMR) | the classic Merkle mountain range; every complete bitmap chunk is graftable at once |
//! | bitmap chunk | [`CHUNK_BYTES`] = 32 bytes (256 operations) | one digest wide: the smallest proofs QMDB allows |
//! | translator | [`StateTranslator`] (first 8 key bytes) | keys are uniform hashes, so 8 bytes rarely collide and keep the in-memory index small; affects memory only, never the root |
//! | value bound | [`MAX_VALUE_LEN`] = 1 MiB | bounds the journal codec and proof decoding |
//! | proof digest bound | [`MAX_PROOF_DIGESTS`] | bounds proof decoding from untrusted bytes |
//! | floor policy | QMDB's `Proportional` | moves one old active operation forward per operation a batch makes inactive, so the log's dead prefix can be pruned |
//!
//! The hasher, family, chunk size, floor policy and value encoding determine the root; changing
//! any of them is a hard fork. The on-disk layout (section sizes, page size) is fixed by private
//! constants in this crate and must not change for an existing data directory.
//!
//! # Durability, errors and pruning
//!
//! Every successful [`State::commit`] is durable. QMDB's mutating calls consume the database
//! handle; if one fails, [`State`] reopens the database from storage (recovering to the last
//! durable commit, which [`State::root`] then reports: the previous commit, or the failed one if
//! its data reached storage anyway) and returns the error, so the handle stays usable. Pending batches built before such a reopen become [`StateError::Stale`]. If the
//! reopen itself fails, every call returns [`StateError::Unavailable`] and the caller must
//! [`State::open`] again. Every 64 commits the state prunes the operation log below QMDB's safe
//! boundary, so disk use follows the live state rather than the full history.

mod config;
mod error;
mod proof;
mod state;

pub use config::{
    CHUNK_BYTES, MAX_PROOF_DIGESTS, MAX_VALUE_LEN, StateConfig, StateFamily, StateHasher, StateTranslator,
};
pub use error::{ProofError, StateError};
pub use proof::{StateProof, verify_proof};
pub use state::{Pending, State};

/// A state key: 32 bytes, normally the hash of a typed key chosen by the caller.
pub type Key = [u8; 32];

/// A state root: the 32-byte SHA-256 digest a block header commits to.
pub type Root = [u8; 32];
