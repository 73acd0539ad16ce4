//! Typed errors of the state and of proof decoding and verification.

use commonware_storage::qmdb::Error as QmdbError;

use crate::config::StateFamily;

/// Why a [`crate::State`] operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The [`crate::StateConfig`] is unusable; the message says which field and why.
    #[error("invalid state config: {0}")]
    InvalidConfig(String),

    /// A value in a change set is longer than [`crate::MAX_VALUE_LEN`].
    #[error("value of {len} bytes exceeds the {max}-byte limit")]
    ValueTooLarge {
        /// Length of the refused value.
        len: usize,
        /// The limit, [`crate::MAX_VALUE_LEN`].
        max: usize,
    },

    /// The pending batch no longer extends the committed state: a sibling (or a batch of another
    /// chain) was committed, the state was reopened after an error, or the batch comes from
    /// another [`crate::State`]. Build a new batch from the current state.
    #[error("pending batch is stale: the committed state is no longer on its chain")]
    Stale,

    /// An earlier write failed and the database could not be reopened; call
    /// [`crate::State::open`] again.
    #[error("state database is unavailable after a failed write; reopen it")]
    Unavailable,

    /// The storage layer failed during `op`. After a failed write the state has already been
    /// reopened at its last durable commit (see [`crate::State::root`]).
    #[error("state storage failed during {op}: {source}")]
    Storage {
        /// The operation that failed (`"open"`, `"commit"`, `"get"`, ...).
        op: &'static str,
        /// The underlying QMDB error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl StateError {
    /// Maps a QMDB error raised during `op`, turning staleness into [`StateError::Stale`].
    pub(crate) fn from_qmdb(op: &'static str, err: QmdbError<StateFamily>) -> Self {
        match err {
            QmdbError::StaleBatch | QmdbError::StaleRead => Self::Stale,
            other => Self::Storage { op, source: Box::new(other) },
        }
    }
}

/// Why a [`crate::StateProof`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The encoded proof is longer than any proof this crate produces.
    #[error("proof of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Length of the refused encoding.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// The bytes are not a canonical proof encoding.
    #[error("malformed proof: {reason}")]
    Malformed {
        /// What was wrong with the bytes.
        reason: String,
    },

    /// The proof does not authenticate the key against the root: the proof, value, key or root
    /// was altered, or the proof is for another state.
    #[error("proof does not match the key and root")]
    Mismatch,
}
