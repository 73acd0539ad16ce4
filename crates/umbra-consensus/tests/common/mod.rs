//! Pieces shared by the consensus test binaries (`consensus`, `epochs`, `simulation`).

use commonware_runtime::deterministic;
use std::time::Duration;
use umbra_types::{Block, Hash, Header, ValidatorKey, sha256};

/// The test executors' "state root": a hash chain over heights, so a verifier can recompute it.
pub(crate) fn next_root(parent: &Block, height: u64) -> Hash {
    sha256(&[parent.header.state_root.as_bytes(), &height.to_be_bytes()])
}

/// A genesis block whose header names `next_committee` (the epoch-0 committee) or none.
pub(crate) fn genesis_block(next_committee: Option<Vec<ValidatorKey>>) -> Block {
    Block {
        header: Header {
            height: 0,
            parent: Hash::ZERO,
            timestamp_ms: 0,
            proposer: [0; 32],
            epoch: 0,
            tx_root: Hash::ZERO,
            state_root: Hash([1; 32]),
            messages_root: Hash::ZERO,
            next_committee,
        },
        txs: vec![],
    }
}

/// A deterministic runner for `seed` that fails the test after `timeout` of simulated time.
pub(crate) fn runner(seed: u64, timeout: Duration) -> deterministic::Runner {
    deterministic::Runner::new(deterministic::Config::new().with_seed(seed).with_timeout(Some(timeout)))
}
