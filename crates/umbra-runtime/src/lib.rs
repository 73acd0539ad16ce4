//! Umbra's deterministic state machine: modules that turn a block's transactions into state changes and receipts.
//!
//! The runtime is pure: it reads state through [`StateRead`], buffers every write in an [`Overlay`],
//! and returns the resulting change set, so the node decides when (and whether) to commit it. That is
//! what lets a proposer build blocks speculatively on unfinalized parents and lets every validator
//! re-execute a proposal before voting. Modules share one contract ([`Module`]) and are called in the
//! order written out once, in [`Runtime`]. No clocks, no hash-map iteration, no floating point: the
//! same inputs give the same bytes on every machine.
//!
//! Modules today: `system`, `balances`, `staking` (validator candidates, committee selection at
//! epoch boundaries, equivocation slashing; see its module notes) and `registry` with the message
//! queue `mq` (TEE workers, gatekeepers, clusters and key epochs; the chain side of
//! `docs/worker-protocol.md`). A block's outcome carries the messages it emitted for workers
//! ([`BlockOutcome::messages`]), which the node commits in the header's `messages_root`. Checking equivocation evidence
//! needs the consensus engine's vote formats, which this crate does not depend on: the node injects
//! an [`umbra_types::EvidenceVerifier`] with [`Runtime::with_evidence_verifier`].

mod error;
mod modules;
mod overlay;
mod runtime;

pub use error::{AdmissionError, BlockError, RuntimeError};
pub use modules::Module;
pub use overlay::{ChangeSet, Overlay, StateRead};
pub use runtime::{BlockEnv, BlockOutcome, BuiltBlock, Runtime, stateless_check};
