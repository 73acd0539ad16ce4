//! Consensus-relevant QMDB parameters, on-disk layout constants and [`StateConfig`].

use crate::error::StateError;
use commonware_codec::RangeCfg;
use commonware_parallel::Sequential;
use commonware_runtime::{BLOB_PAGE_SIZE, buffer::paged::CacheRef, buffer::paged::page_size};
use commonware_storage::{
    journal::contiguous::variable::Config as LogConfig, merkle::full::Config as MerkleConfig,
    qmdb::current::VariableConfig,
};
use commonware_utils::{NZU64, NZUsize};
use std::num::{NonZeroU16, NonZeroU64, NonZeroUsize};

/// The hasher of every QMDB node and of the root (SHA-256). Part of the root: a hard fork to change.
pub type StateHasher = commonware_cryptography::Sha256;

/// The Merkle structure family of the operation log (a Merkle mountain range). Part of the root.
pub type StateFamily = commonware_storage::mmr::Family;

/// The ordered translator of QMDB's in-memory index: the first 8 key bytes. Keys are uniform
/// hashes, so collisions are rare. Affects memory and speed only, never the root.
pub type StateTranslator = commonware_storage::translator::EightCap;

/// Bytes per activity-bitmap chunk (256 operations per chunk). One SHA-256 digest wide, which
/// gives the smallest proofs. Part of the root and of the proof format.
pub const CHUNK_BYTES: usize = 32;

/// The largest value, in bytes, the state stores (1 MiB). Larger writes are refused by
/// [`crate::State::speculate`]; the journal codec and proof decoding are bounded by it.
pub const MAX_VALUE_LEN: usize = 1 << 20;

/// The most Merkle digests a decoded proof may carry. An MMR over 2^64 operations needs at most
/// 64 path digests plus 64 peaks, so honest proofs stay far below this.
pub const MAX_PROOF_DIGESTS: usize = 256;

/// Largest encoded proof accepted by [`crate::StateProof::from_bytes`]: one value plus digests,
/// keys, locations and framing.
pub(crate) const MAX_PROOF_BYTES: usize = MAX_VALUE_LEN + 64 * 1024;

/// Operations per blob of the Merkle node journal (32-byte nodes: 2 MiB blobs). On-disk format.
const MERKLE_ITEMS_PER_BLOB: NonZeroU64 = NZU64!(65_536);

/// Operations per section of the operation log. Pruning removes whole sections. On-disk format.
const LOG_ITEMS_PER_SECTION: NonZeroU64 = NZU64!(4_096);

/// Logical page size of the page cache, aligned to the runtime's blob pages. On-disk format.
const PAGE_SIZE: NonZeroU16 = page_size(BLOB_PAGE_SIZE);

/// Pages held by the page cache (about 8 MiB).
const PAGE_CACHE_PAGES: NonZeroUsize = NZUsize!(2_048);

/// Write buffer per open blob.
const WRITE_BUFFER: NonZeroUsize = NZUsize!(1 << 20);

/// Read buffer for sequential replay during recovery.
const REPLAY_BUFFER: NonZeroUsize = NZUsize!(1 << 20);

/// Read buffer for the log replay that rebuilds the index on open.
const INIT_BUFFER: NonZeroUsize = NZUsize!(1 << 21);

/// Longest accepted partition prefix.
const MAX_PREFIX_LEN: usize = 64;

/// Codec configuration of a stored value: a length-prefixed byte vector of at most
/// [`MAX_VALUE_LEN`] bytes.
pub(crate) type ValueCfg = (RangeCfg<usize>, ());

/// Codec configuration of a stored value (see [`ValueCfg`]).
pub(crate) fn value_cfg() -> ValueCfg {
    (RangeCfg::from(..=MAX_VALUE_LEN), ())
}

/// Where and how a [`crate::State`] stores its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateConfig {
    /// Prefix of every storage partition the state uses (`{prefix}-log...`, `{prefix}-mmr...`, `{prefix}-graft-pins`).
    /// ASCII letters, digits, `-` and `_` only; at most 64 characters. Two states in the same
    /// storage need different prefixes.
    pub partition_prefix: String,
    /// Sizing hint for the location-to-key cache used while rebuilding the index on open: set it
    /// to about the number of live keys (reopening 1M keys took 14x longer with a cache 16x too
    /// small). `0` disables the cache. Never affects the root.
    pub cache_items: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self { partition_prefix: "umbra-state".to_owned(), cache_items: 1 << 16 }
    }
}

impl StateConfig {
    /// Checks the configuration, returning [`StateError::InvalidConfig`] with the reason if a
    /// field is unusable. [`crate::State::open`] calls this first.
    pub fn validate(&self) -> Result<(), StateError> {
        let prefix = &self.partition_prefix;
        if prefix.is_empty() {
            return Err(StateError::InvalidConfig("partition_prefix must not be empty".to_owned()));
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(StateError::InvalidConfig(format!(
                "partition_prefix is {} characters long; at most {MAX_PREFIX_LEN} are allowed",
                prefix.len()
            )));
        }
        if let Some(bad) = prefix.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
            return Err(StateError::InvalidConfig(format!(
                "partition_prefix contains {bad:?}; only ASCII letters, digits, '-' and '_' are allowed"
            )));
        }
        Ok(())
    }

    /// The QMDB configuration for this state.
    pub(crate) fn qmdb(&self) -> VariableConfig<StateTranslator, ((), ValueCfg), Sequential> {
        let prefix = &self.partition_prefix;
        let page_cache = CacheRef::new(PAGE_SIZE, PAGE_CACHE_PAGES);
        VariableConfig {
            merkle_config: MerkleConfig {
                journal_partition: format!("{prefix}-mmr"),
                metadata_partition: format!("{prefix}-mmr-pins"),
                items_per_blob: MERKLE_ITEMS_PER_BLOB,
                write_buffer: WRITE_BUFFER,
                replay_buffer: REPLAY_BUFFER,
                strategy: Sequential,
                page_cache: page_cache.clone(),
            },
            journal_config: LogConfig {
                partition: format!("{prefix}-log"),
                items_per_section: LOG_ITEMS_PER_SECTION,
                compression: None,
                codec_config: ((), value_cfg()),
                page_cache,
                write_buffer: WRITE_BUFFER,
                replay_buffer: REPLAY_BUFFER,
            },
            grafted_metadata_partition: format!("{prefix}-graft-pins"),
            translator: StateTranslator::default(),
            init_cache: NonZeroUsize::new(self.cache_items),
            init_buffer: INIT_BUFFER,
            init_concurrency: (),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_valid() {
        assert!(StateConfig::default().validate().is_ok());
    }

    #[test]
    fn an_empty_or_oddly_spelled_prefix_is_refused() {
        for prefix in ["", "has space", "slash/y", "dot.ted", &"x".repeat(65)] {
            let cfg = StateConfig { partition_prefix: prefix.to_owned(), ..StateConfig::default() };
            assert!(matches!(cfg.validate(), Err(StateError::InvalidConfig(_))), "{prefix:?} should be refused");
        }
    }

    #[test]
    fn a_zero_cache_disables_the_init_cache() {
        let cfg = StateConfig { cache_items: 0, ..StateConfig::default() };
        assert!(cfg.validate().is_ok());
        assert!(cfg.qmdb().init_cache.is_none());
    }
}
