//! The one interface the node implements.

use crate::ProposeContext;
use umbra_types::{Block, ValidatorKey};

/// Implemented by the node: all block building, checking and applying lives there.
///
/// The engine calls these from several tasks at once, so implementations share their state
/// behind locks or channels. Every method may be cancelled (its future dropped) if consensus
/// moves on; only [`Executor::finalized`] is always driven to completion before the next one.
pub trait Executor: Clone + Send + Sync + 'static {
    /// Build the block at `ctx.height` on top of `parent` (`ctx.parent_digest == parent.hash()`).
    /// `None` declines (the view is nullified). The block must name `parent`, `ctx.height`,
    /// `ctx.epoch` and `ctx.proposer` in its header, or the engine drops it.
    fn propose(&self, parent: Block, ctx: ProposeContext) -> impl Future<Output = Option<Block>> + Send;

    /// Re-execute `block` on top of `parent` and check it. Return `false` only if the block is
    /// permanently invalid; to abstain, do not resolve.
    fn verify(&self, parent: Block, block: Block) -> impl Future<Output = bool> + Send;

    /// A finalized block, in height order, at least once (starting with genesis at 0; again
    /// after restarts). Must be idempotent by height; return only after the block is durably
    /// applied (marshal is acknowledged then, and may prune what it no longer has to re-deliver).
    fn finalized(&self, block: Block) -> impl Future<Output = ()> + Send;

    /// Bytes another validator gossiped on the application channel (mempool transactions).
    /// Unauthenticated content: the sender is authenticated, the bytes are not checked.
    fn gossip(&self, from: ValidatorKey, bytes: Vec<u8>) -> impl Future<Output = ()> + Send;
}
