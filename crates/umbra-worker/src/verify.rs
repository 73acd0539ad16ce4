//! Verification of what the host hands in: a `worker_sync` batch (certificates, parent hashes, message
//! proofs, per-topic sequence numbers) and state values with their proofs. Nothing here changes state:
//! every function works on a copy of the light client and returns what it proved.

use std::collections::BTreeMap;
use umbra_light::{LightClient, VerifiedHeader};
use umbra_rpc::{StateValueResponse, SyncResponse};
use umbra_types::registry::Topic;
use umbra_types::state_keys::StateKey;
use umbra_types::{Hash, Message, decode};

/// Largest state value the worker decodes from a proof.
const MAX_VALUE_BYTES: usize = 1 << 20;

/// Why a batch (or a proven value) was refused. The whole batch is refused: nothing of it is applied.
/// Each variant names what the host (or the node behind it) altered, dropped, reordered or replayed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The batch does not start right after the worker's last block.
    #[error("the batch starts at height {got}, but the worker expects {expected}")]
    WrongStart {
        /// The height the worker needs next.
        expected: u64,
        /// The batch's first height.
        got: u64,
    },
    /// The heights of the batch are not consecutive.
    #[error("block {index} of the batch is at height {got}, not {expected}")]
    NotConsecutive {
        /// Position in the batch.
        index: usize,
        /// The height it should have.
        expected: u64,
        /// The height it has.
        got: u64,
    },
    /// A header does not name the previous block as its parent.
    #[error("block {height} does not link to its parent: it names {named}, the previous block is {expected}")]
    NotLinked {
        /// The block.
        height: u64,
        /// The parent hash it names.
        named: Hash,
        /// The hash of the block before it.
        expected: Hash,
    },
    /// The last block of the batch carries no certificate, so nothing in the batch can be trusted.
    #[error("the last block of the batch (height {height}) has no finality certificate")]
    MissingCertificate {
        /// Its height.
        height: u64,
    },
    /// A certificate failed verification (forged, wrong committee, wrong block, malformed).
    #[error("the finality certificate of block {height} does not verify: {reason}")]
    Certificate {
        /// The block.
        height: u64,
        /// What the light client said.
        reason: String,
    },
    /// A message is not under its block's `messages_root` (altered message or proof).
    #[error("a message of topic {topic:?} (seq {seq}) in block {height} is not under the block's messages root")]
    MessageProof {
        /// The block.
        height: u64,
        /// The message's topic.
        topic: Topic,
        /// The message's sequence number.
        seq: u64,
    },
    /// Messages of a block are not in emission order.
    #[error("the messages of block {height} are out of order (leaf {index} after leaf {previous})")]
    Reordered {
        /// The block.
        height: u64,
        /// The earlier leaf index.
        previous: u64,
        /// The leaf index that came after it.
        index: u64,
    },
    /// A message of a topic the worker did not ask for.
    #[error("block {height} carries a message of topic {topic:?}, which the worker did not ask for")]
    UnexpectedTopic {
        /// The block.
        height: u64,
        /// The topic.
        topic: Topic,
    },
    /// A message of a topic is missing: the sequence jumps.
    #[error("topic {topic:?} jumps from seq {expected} to {got} in block {height}: a message was dropped")]
    Dropped {
        /// The topic.
        topic: Topic,
        /// The next sequence number the worker expected.
        expected: u64,
        /// The one it got.
        got: u64,
        /// The block.
        height: u64,
    },
    /// A message the worker already processed (or a duplicate) came again.
    #[error("topic {topic:?} repeats seq {got} (expected {expected}) in block {height}: a message was replayed")]
    Replayed {
        /// The topic.
        topic: Topic,
        /// The next sequence number the worker expected.
        expected: u64,
        /// The one it got.
        got: u64,
        /// The block.
        height: u64,
    },
    /// The chain's `TopicNext` at the batch's last block says messages exist that the batch did not carry.
    #[error(
        "topic {topic:?} has {chain} messages on chain at the batch's end but the worker saw {seen}: messages were withheld"
    )]
    WithheldAtTail {
        /// The topic.
        topic: Topic,
        /// `TopicNext` on chain.
        chain: u64,
        /// The worker's count.
        seen: u64,
    },
    /// A state value or its proof does not verify.
    #[error("the proof of {what} does not verify: {reason}")]
    StateProof {
        /// What was proven.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// Something the host sent does not decode (hex, certificate bytes, value encoding).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The worker cannot accept batches yet: its rollback check has not passed.
    #[error("the rollback check has not passed yet")]
    NotReady,
    /// Nothing was wrong with the batch, but the new state could not be sealed and saved; nothing was applied.
    #[error("the new state could not be saved (nothing applied): {0}")]
    Persist(String),
}

/// The outcome of verifying a batch's headers: a verified header per block and the advanced light client.
pub(crate) struct VerifiedChain {
    pub(crate) headers: Vec<VerifiedHeader>,
    pub(crate) light: LightClient,
}

/// Verifies that `batch` extends the block (`height`, `hash`) that `light` already trusts: consecutive
/// heights, parent links, a certificate on the last block, and every certificate in order.
pub(crate) fn verify_headers(
    light: &LightClient,
    height: u64,
    hash: Hash,
    batch: &SyncResponse,
) -> Result<VerifiedChain, Rejection> {
    let mut light = light.clone();
    let first = height.saturating_add(1);
    let Some(head) = batch.blocks.first() else {
        return Ok(VerifiedChain { headers: Vec::new(), light });
    };
    if head.header.height != first {
        return Err(Rejection::WrongStart { expected: first, got: head.header.height });
    }
    let mut previous = hash;
    for (index, block) in batch.blocks.iter().enumerate() {
        let expected = first.saturating_add(index as u64);
        if block.header.height != expected {
            return Err(Rejection::NotConsecutive { index, expected, got: block.header.height });
        }
        if block.header.parent != previous {
            return Err(Rejection::NotLinked { height: expected, named: block.header.parent, expected: previous });
        }
        previous = block.header.hash();
    }
    let last = batch.blocks.len() - 1;
    if batch.blocks[last].certificate.is_none() {
        return Err(Rejection::MissingCertificate { height: batch.blocks[last].header.height });
    }
    // Certificates in order, so the light client follows committee changes at epoch boundaries.
    let mut certified: BTreeMap<usize, VerifiedHeader> = BTreeMap::new();
    for (index, block) in batch.blocks.iter().enumerate() {
        let Some(cert) = &block.certificate else { continue };
        let bytes = hex::decode(cert.trim_start_matches("0x"))
            .map_err(|e| Rejection::Malformed { what: "certificate hex", reason: e.to_string() })?;
        let verified = light
            .verify_finalized(&block.header, &bytes)
            .map_err(|e| Rejection::Certificate { height: block.header.height, reason: e.to_string() })?;
        certified.insert(index, verified);
    }
    // Every other header is an ancestor of the next certified one.
    let mut headers: Vec<VerifiedHeader> = Vec::with_capacity(batch.blocks.len());
    let mut next: Option<VerifiedHeader> = None;
    for index in (0..batch.blocks.len()).rev() {
        let verified = match (certified.remove(&index), &next) {
            (Some(v), _) => v,
            (None, Some(child)) => {
                light.verify_ancestor(child, &batch.blocks[index].header).map_err(|_| Rejection::NotLinked {
                    height: child.height(),
                    named: child.header().parent,
                    expected: batch.blocks[index].header.hash(),
                })?
            }
            (None, None) => {
                return Err(Rejection::MissingCertificate { height: batch.blocks[index].header.height });
            }
        };
        next = Some(verified.clone());
        headers.push(verified);
    }
    headers.reverse();
    Ok(VerifiedChain { headers, light })
}

/// Verifies the messages of a verified batch against each block's messages root and checks every topic's
/// sequence numbers continue from `expected` without gaps or repeats. Returns the messages in order with
/// their heights, and advances `expected`.
pub(crate) fn verify_messages(
    light: &LightClient,
    chain: &VerifiedChain,
    batch: &SyncResponse,
    expected: &mut BTreeMap<Topic, u64>,
) -> Result<Vec<(u64, Message)>, Rejection> {
    let mut out = Vec::new();
    for (block, verified) in batch.blocks.iter().zip(&chain.headers) {
        let height = verified.height();
        let mut previous: Option<u64> = None;
        for pm in &block.messages {
            let m = &pm.message;
            if let Some(p) = previous
                && pm.proof.index <= p
            {
                return Err(Rejection::Reordered { height, previous: p, index: pm.proof.index });
            }
            previous = Some(pm.proof.index);
            light.verify_message(verified, &m.leaf_hash(), &pm.proof).map_err(|_| Rejection::MessageProof {
                height,
                topic: m.topic,
                seq: m.topic_seq,
            })?;
            let Some(next) = expected.get_mut(&m.topic) else {
                return Err(Rejection::UnexpectedTopic { height, topic: m.topic });
            };
            if m.topic_seq > *next {
                return Err(Rejection::Dropped { topic: m.topic, expected: *next, got: m.topic_seq, height });
            }
            if m.topic_seq < *next {
                return Err(Rejection::Replayed { topic: m.topic, expected: *next, got: m.topic_seq, height });
            }
            *next = next.saturating_add(1);
            out.push((height, m.clone()));
        }
    }
    Ok(out)
}

/// Verifies `resp` (a `state_getValue` answer for `key`) against `at` when its header is that block:
/// `Ok(Some(value))` (the value, `None` inside if absent), `Ok(None)` when the answer is about another block.
pub(crate) fn verify_value_at(
    light: &LightClient,
    at: &VerifiedHeader,
    key: &StateKey,
    resp: &StateValueResponse,
) -> Result<Option<Option<Vec<u8>>>, Rejection> {
    if resp.header.hash() != at.hash() {
        return Ok(None);
    }
    let proof = hex::decode(resp.proof.trim_start_matches("0x"))
        .map_err(|e| Rejection::Malformed { what: "state proof hex", reason: e.to_string() })?;
    let value = light
        .verify_state(at, key, &proof)
        .map_err(|e| Rejection::StateProof { what: format!("{key:?}"), reason: e.to_string() })?;
    Ok(Some(value))
}

/// Verifies `resp` for `key` on its own: its header by its certificate (with a copy of `light`), then the
/// proof. Returns the header's height and the value.
pub(crate) fn verify_value(
    light: &LightClient,
    key: &StateKey,
    resp: &StateValueResponse,
) -> Result<(u64, Option<Vec<u8>>), Rejection> {
    let mut light = light.clone();
    let height = resp.header.height;
    let at = match (&resp.certificate, light.trusted(&resp.header)) {
        (_, Some(anchor)) => anchor,
        (Some(cert), None) => {
            let bytes = hex::decode(cert.trim_start_matches("0x"))
                .map_err(|e| Rejection::Malformed { what: "certificate hex", reason: e.to_string() })?;
            light
                .verify_finalized(&resp.header, &bytes)
                .map_err(|e| Rejection::Certificate { height, reason: e.to_string() })?
        }
        (None, None) => return Err(Rejection::MissingCertificate { height }),
    };
    let value = verify_value_at(&light, &at, key, resp)?.flatten();
    Ok((height, value))
}

/// Decodes a proven `u64` counter (`TopicNext`, `EgressNext`); absent means 0.
pub(crate) fn decode_counter(value: Option<&[u8]>) -> Result<u64, Rejection> {
    match value {
        None => Ok(0),
        Some(bytes) => decode::<u64>(bytes, MAX_VALUE_BYTES)
            .map_err(|e| Rejection::Malformed { what: "counter value", reason: e.to_string() }),
    }
}

/// Decodes a proven value of type `T`.
pub(crate) fn decode_value<T: borsh::BorshDeserialize>(bytes: &[u8], what: &'static str) -> Result<T, Rejection> {
    decode::<T>(bytes, MAX_VALUE_BYTES).map_err(|e| Rejection::Malformed { what, reason: e.to_string() })
}
