//! The bridge from marshal's `Application` and `Update` stream to the node's [`Executor`].

use crate::{
    Executor, ProposeContext,
    block::{ChainBlock, to_hash},
    config::Scheme,
    validator_key,
};
use commonware_actor::Feedback;
use commonware_consensus::{
    Application, Block as _, Heightable as _, Reporter,
    marshal::{Update, ancestry::Ancestry},
    simplex::types::Context,
};
use commonware_cryptography::{Digested, Digestible as _, ed25519, sha256};
use commonware_utils::acknowledgement::Exact;
use futures::{StreamExt as _, channel::mpsc};
use tracing::warn;
use umbra_types::Block;

/// The consensus context simplex hands to propose and verify.
pub(crate) type ConsensusContext = Context<sha256::Digest, ed25519::PublicKey>;

/// Marshal's application: checks the block shape and delegates building and checking.
#[derive(Clone)]
pub(crate) struct App<X> {
    executor: X,
    max_block_bytes: usize,
}

impl<X: Executor> App<X> {
    pub(crate) fn new(executor: X, max_block_bytes: usize) -> Self {
        Self { executor, max_block_bytes }
    }
}

/// Why a block is malformed relative to its parent and the consensus context.
fn shape_error(parent: &ChainBlock, block: &Block, ctx: &ConsensusContext) -> Option<&'static str> {
    let header = &block.header;
    if Some(header.height) != parent.block().header.height.checked_add(1) {
        return Some("height is not parent height + 1");
    }
    if header.parent.0 != parent.digest().0 {
        return Some("parent hash does not match the parent block");
    }
    if header.parent.0 != ctx.parent.1.0 {
        return Some("parent hash does not match the consensus parent");
    }
    if header.epoch != ctx.round.epoch().get() {
        return Some("epoch does not match the view's epoch");
    }
    if header.proposer != validator_key(&ctx.leader) {
        return Some("proposer is not the view's leader");
    }
    None
}

impl<E, X> Application<E> for App<X>
where
    E: Send + 'static,
    X: Executor,
{
    type SigningScheme = Scheme;
    type Context = ConsensusContext;
    type Block = ChainBlock;
    type Input = ();

    fn propose(
        &mut self,
        (_, ctx): (E, ConsensusContext),
        ancestry: impl Ancestry<ChainBlock>,
        _input: (),
    ) -> impl Future<Output = Option<Digested<ChainBlock>>> + Send {
        let executor = self.executor.clone();
        let max = self.max_block_bytes;
        let parent = ancestry.peek().cloned();
        async move {
            let parent = parent?;
            let request = ProposeContext {
                height: parent.height().get().checked_add(1)?,
                epoch: ctx.round.epoch().get(),
                view: ctx.round.view().get(),
                proposer: validator_key(&ctx.leader),
                parent_digest: to_hash(&parent.digest()),
            };
            let block = executor.propose(parent.inner().block().clone(), request).await?;
            if let Some(reason) = shape_error(parent.inner(), &block, &ctx) {
                warn!(reason, "executor proposed a malformed block; declining");
                return None;
            }
            let block = ChainBlock::new(block);
            if block.encoded_len() > max {
                warn!(size = block.encoded_len(), max, "executor proposed an oversized block; declining");
                return None;
            }
            if umbra_types::decode::<Block>(&umbra_types::encode(block.block()), max).as_ref() != Ok(block.block()) {
                warn!("executor proposed a block that does not round-trip; declining");
                return None;
            }
            let digest = block.digest();
            Some(Digested::precomputed(block, digest))
        }
    }

    fn verify(
        &mut self,
        (_, ctx): (E, ConsensusContext),
        mut ancestry: impl Ancestry<ChainBlock>,
    ) -> impl Future<Output = bool> + Send {
        let executor = self.executor.clone();
        async move {
            // Marshal's ancestry starts with the candidate, then its parent.
            let (Some(block), Some(parent)) = (ancestry.next().await, ancestry.next().await) else {
                // Cannot judge without the parent: abstain until consensus cancels.
                return futures::future::pending().await;
            };
            if block.parent() != parent.digest() {
                return false;
            }
            if let Some(reason) = shape_error(parent.inner(), block.inner().block(), &ctx) {
                warn!(reason, height = block.height().get(), "rejecting malformed block");
                return false;
            }
            executor.verify(parent.inner().block().clone(), block.inner().block().clone()).await
        }
    }
}

/// A finalized block and the acknowledgement marshal waits for.
pub(crate) type Delivery = (Digested<ChainBlock>, Exact);

/// Marshal's reporter: forwards finalized blocks, in order, to [`run_finalizer`].
#[derive(Clone)]
pub(crate) struct Finalizer {
    deliveries: mpsc::UnboundedSender<Delivery>,
}

impl Finalizer {
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<Delivery>) {
        // Unbounded is bounded in practice: marshal holds at most `max_pending_acks`
        // unacknowledged blocks.
        let (deliveries, receiver) = mpsc::unbounded();
        (Self { deliveries }, receiver)
    }
}

impl Reporter for Finalizer {
    type Activity = Update<ChainBlock>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        match activity {
            Update::Block(block, ack) => {
                // If the finalizer task is gone we are shutting down; dropping the ack stops marshal.
                let _ = self.deliveries.unbounded_send((block, ack));
            }
            Update::Tip(..) => {}
        }
        Feedback::Ok
    }
}
