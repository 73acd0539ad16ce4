//! Epoch arithmetic and equivocation evidence, shared by the runtime (which slashes), the consensus
//! binding (which produces and verifies evidence) and clients (which submit it).
//!
//! The runtime has no dependency on the consensus engine, so it cannot parse the engine's signed
//! votes itself. Evidence therefore travels as an [`Evidence`] envelope (the epoch plus the engine's
//! opaque encoding of two conflicting votes) and is checked through the [`EvidenceVerifier`] trait,
//! which the consensus binding implements over Commonware's conflicting-vote activities and the
//! node injects into the runtime.

use crate::{CodecError, ValidatorKey, decode, encode};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// The epoch a height belongs to: epoch `e` covers heights `[e * epoch_length, (e + 1) * epoch_length)`,
/// as Commonware's `FixedEpocher` counts them. The genesis block (height 0) is in epoch 0. An
/// `epoch_length` of 0 is treated as 1 (a validated genesis has at least 2).
pub fn epoch_of(height: u64, epoch_length: u64) -> u64 {
    height / epoch_length.max(1)
}

/// Whether `height` is the last block of its epoch, the block that carries the next committee.
pub fn is_last_in_epoch(height: u64, epoch_length: u64) -> bool {
    let l = epoch_length.max(1);
    height % l == l - 1
}

/// The first height of `epoch` (saturating at `u64::MAX`).
pub fn first_height_of(epoch: u64, epoch_length: u64) -> u64 {
    epoch.saturating_mul(epoch_length.max(1))
}

/// The namespace consensus votes are signed under on the chain `chain_id` (`umbra-<chain_id>`).
/// The node configures the engine with it and the runtime hands it to the [`EvidenceVerifier`],
/// so evidence from another chain never verifies.
pub fn consensus_namespace(chain_id: &str) -> Vec<u8> {
    format!("umbra-{chain_id}").into_bytes()
}

/// Evidence that one validator signed two conflicting votes in one round, as carried (encoded) by
/// `Call::SubmitEvidence`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Evidence {
    /// The consensus epoch of the votes. It selects the committee the votes are checked against;
    /// the verifier must refuse a proof whose votes name another epoch.
    pub epoch: u64,
    /// The consensus engine's encoding of the two conflicting signed votes (for Commonware
    /// simplex: a `ConflictingNotarize`, `ConflictingFinalize` or `NullifyFinalize` activity, in
    /// the format the [`EvidenceVerifier`] defines). Opaque to the runtime.
    #[serde(with = "hex_bytes")]
    pub proof: Vec<u8>,
}

impl Evidence {
    /// The canonical encoding, as put into `Call::SubmitEvidence`.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes an encoding of at most `max` bytes.
    pub fn from_bytes(bytes: &[u8], max: usize) -> Result<Evidence, CodecError> {
        decode(bytes, max)
    }
}

/// What a verified piece of evidence proves: who equivocated, and in which view of the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Offence {
    /// The consensus key that signed both votes.
    #[serde(with = "crate::block::hex32")]
    pub offender: ValidatorKey,
    /// The view (round within the epoch) of both votes. One offence is punished at most once per
    /// (offender, epoch, view), however it is encoded.
    pub view: u64,
}

/// Checks equivocation evidence without the runtime depending on the consensus engine.
///
/// The implementation is a consensus rule: every node must use the same one, and it must be
/// deterministic (same inputs, same answer; no I/O, clock or randomness that can change the
/// result). The real implementation lives in `umbra-consensus` and is tested there; the runtime's
/// tests use a test double.
pub trait EvidenceVerifier: Send + Sync {
    /// Verifies that `proof` holds two conflicting votes for one round of `epoch`, both signed
    /// under `namespace` by the same member of `committee`, and returns that member and the view.
    ///
    /// `committee` is the epoch's committee as stored on chain (in selection order; Commonware
    /// indexes signers into the sorted set of these keys, so an implementation sorts them). Any
    /// malformed proof, bad signature, non-conflicting pair, other epoch, other namespace or
    /// signer outside `committee` is an `Err` with a one-line reason.
    fn verify(&self, namespace: &[u8], epoch: u64, committee: &[ValidatorKey], proof: &[u8])
    -> Result<Offence, String>;
}

/// The verifier a runtime has until one is injected: it refuses all evidence.
#[derive(Clone, Copy, Debug, Default)]
pub struct RejectAllEvidence;

impl EvidenceVerifier for RejectAllEvidence {
    fn verify(&self, _: &[u8], _: u64, _: &[ValidatorKey], _: &[u8]) -> Result<Offence, String> {
        Err("this runtime has no evidence verifier".into())
    }
}

/// Serde helper: bytes as a hex string.
pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s.trim_start_matches("0x")).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn epochs_group_heights_like_a_fixed_epocher() {
        assert_eq!((epoch_of(0, 4), epoch_of(3, 4), epoch_of(4, 4)), (0, 0, 1));
        assert!(!is_last_in_epoch(0, 4) && is_last_in_epoch(3, 4) && !is_last_in_epoch(4, 4));
        assert!(is_last_in_epoch(7, 4));
        assert_eq!(first_height_of(2, 4), 8);
        // The extremes do not overflow.
        assert!(is_last_in_epoch(u64::MAX - 1, u64::MAX));
        assert!(!is_last_in_epoch(u64::MAX, u64::MAX));
        assert_eq!(first_height_of(u64::MAX, 4), u64::MAX);
        assert_eq!(epoch_of(9, 0), 9);
    }

    #[test]
    fn evidence_round_trips_and_refuses_garbage() {
        let e = Evidence { epoch: 3, proof: vec![1, 2, 3] };
        assert_eq!(Evidence::from_bytes(&e.to_bytes(), 1024), Ok(e.clone()));
        assert!(Evidence::from_bytes(&[1, 2], 1024).is_err());
        assert!(Evidence::from_bytes(&e.to_bytes(), 4).is_err());
        let json = serde_json::to_string(&e).expect("serializes");
        assert_eq!(serde_json::from_str::<Evidence>(&json).expect("parses"), e);
    }

    proptest! {
        #[test]
        fn every_height_is_in_exactly_one_epoch(h in 0..u64::MAX, l in 2u64..1_000_000) {
            let e = epoch_of(h, l);
            prop_assert!(first_height_of(e, l) <= h);
            prop_assert_eq!(is_last_in_epoch(h, l), epoch_of(h + 1, l) != e);
        }
    }
}
