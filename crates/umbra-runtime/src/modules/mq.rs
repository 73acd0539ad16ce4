//! `mq`: the message queue between the chain and its workers.
//!
//! # Chain to worker
//! [`emit`] numbers a message within its topic (`StateKey::TopicNext`, 0 first, no gaps) and buffers it
//! in the [`Overlay`], so a reverted call takes its messages (and their numbers) with it. A block emits
//! at most `params.registry.max_block_messages`; the call that would exceed it fails.
//!
//! # Worker to chain
//! An egress is admitted only when its signature verifies under its origin's key and its sequence is
//! exactly `StateKey::EgressNext(origin)` ([`check_egress`]); the same rule leaves it out of a built
//! block and makes an executed block that carries it anyway invalid. Once admitted, its sequence
//! number is consumed ([`consume_egress`]) before the payload runs, so a failing payload never stalls
//! a deterministic origin.

use crate::{AdmissionError, Overlay, RuntimeError, StateRead};
use umbra_types::registry::KeysRecord;
use umbra_types::state_keys::StateKey;
use umbra_types::{Address, Egress, Message, MessageBody, Origin, SignedEgress, Topic, TxError};

/// The next sequence number of a topic.
pub(crate) async fn topic_next<S: StateRead>(s: &Overlay<'_, S>, topic: &Topic) -> Result<u64, RuntimeError> {
    Ok(s.get(&StateKey::TopicNext(*topic), "mq topic next").await?.unwrap_or(0))
}

/// The next sequence number the chain accepts from an origin.
pub(crate) async fn egress_next<S: StateRead>(s: &Overlay<'_, S>, origin: &Origin) -> Result<u64, RuntimeError> {
    Ok(s.get(&StateKey::EgressNext(*origin), "mq egress next").await?.unwrap_or(0))
}

/// Emits a message to `topic`: `Ok(Err(..))` when the block already holds `max` messages.
pub(crate) async fn emit<S: StateRead>(
    s: &mut Overlay<'_, S>,
    max: u32,
    topic: Topic,
    body: MessageBody,
) -> Result<Result<(), TxError>, RuntimeError> {
    if s.messages().len() >= max as usize {
        return Ok(Err(TxError::RegistryPrecondition {
            reason: format!("the block already emits the most messages allowed ({max})"),
        }));
    }
    let topic_seq = topic_next(s, &topic).await?;
    s.put(&StateKey::TopicNext(topic), &topic_seq.saturating_add(1));
    tracing::trace!(target: "mq.emit", ?topic, topic_seq, "message");
    s.emit(Message { topic, topic_seq, body });
    Ok(Ok(()))
}

/// The ed25519 key an origin signs with, if it has one on chain: a registered worker's identity,
/// the current epoch's gatekeeper key (during a rotation too: the new master key is signed with the
/// old one, and the new key takes over only at activation), or a cluster's or contract's published
/// key (a contract's report: of the key epoch its command was sealed to).
async fn origin_key<S: StateRead>(
    s: &Overlay<'_, S>,
    origin: &Origin,
    seq: u64,
) -> Result<Option<[u8; 32]>, RuntimeError> {
    Ok(match origin {
        Origin::Worker(id) => {
            let known = s.get_raw(&StateKey::Worker(*id).hash()).await?.is_some();
            known.then_some(*id)
        }
        Origin::Gatekeeper => {
            let keys: KeysRecord = s.get(&StateKey::Keys, "registry keys").await?.unwrap_or_default();
            keys.gatekeeper_key.map(|k| k.0)
        }
        Origin::Cluster(_) | Origin::Contract(_) => crate::modules::contracts::origin_key(s, origin, seq).await?,
    })
}

/// The admission rule of an egress message: its origin has a key, the signature verifies under it and
/// the sequence is the next one, or (for a mempool holding `in_flight` consecutive pending messages of
/// the origin from the next one on) one of those or the one right after them.
pub(crate) async fn check_egress<S: StateRead>(
    s: &Overlay<'_, S>,
    chain_id: &str,
    message: &SignedEgress,
    in_flight: u64,
) -> Result<(), AdmissionError> {
    let e = &message.egress;
    // The sequence first: a copy another worker's message beat is refused without a signature check.
    let expected = egress_next(s, &e.origin).await?;
    if e.seq < expected {
        return Err(AdmissionError::EgressStale { origin: e.origin, expected, got: e.seq });
    }
    let limit = expected.saturating_add(in_flight);
    if e.seq > limit {
        return Err(AdmissionError::EgressAhead { origin: e.origin, expected: limit, got: e.seq });
    }
    let key = origin_key(s, &e.origin, e.seq).await?.ok_or(AdmissionError::EgressUnknownOrigin { origin: e.origin })?;
    umbra_crypto::verify(&Address(key), &e.signing_bytes(chain_id), &message.signature)
        .map_err(|_| AdmissionError::BadEgressSignature { origin: e.origin })?;
    Ok(())
}

/// Consumes an admitted egress's sequence number (kept even if its payload then fails).
pub(crate) fn consume_egress<S: StateRead>(s: &mut Overlay<'_, S>, egress: &Egress) {
    s.put(&StateKey::EgressNext(egress.origin), &egress.seq.saturating_add(1));
}
