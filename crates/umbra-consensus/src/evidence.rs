//! Equivocation evidence: simplex's fault reports, encoded as self-contained bytes the chain can
//! re-verify with only the namespace and the epoch's committee.
//!
//! Encoding (version 1), at most [`MAX_EVIDENCE_BYTES`]:
//!
//! ```text
//! +---------+------+------------------+--------------------------------------------------+
//! | version | kind | offender (32 B)  | the Commonware-encoded fault (both signed votes)  |
//! |  u8 = 1 |  u8  | ed25519 pub key  | each vote: round (epoch, view), proposal, signer  |
//! |         |      |                  | index in the sorted committee, signature          |
//! +---------+------+------------------+--------------------------------------------------+
//! ```
//!
//! `kind` is 1 = two notarize votes for different proposals in one round, 2 = two finalize votes
//! for different proposals in one round, 3 = a nullify and a finalize vote in one round.

use crate::{block::validator_key, config::Scheme, engine::committee_set};
use commonware_actor::Feedback;
use commonware_codec::{Copying, Decode as _, Encode as _};
use commonware_consensus::{
    Epochable as _, Reporter, Viewable as _,
    simplex::types::{Activity, Attributable as _, ConflictingFinalize, ConflictingNotarize, NullifyFinalize},
};
use commonware_cryptography::{ed25519, sha256};
use commonware_parallel::Sequential;
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};
use umbra_types::ValidatorKey;

/// Current evidence encoding version.
pub const EVIDENCE_VERSION: u8 = 1;
/// Largest evidence accepted by [`verify_evidence`] (an ed25519 pair is about 300 bytes).
pub const MAX_EVIDENCE_BYTES: usize = 1_024;
/// Evidence items kept until [`crate::ConsensusHandle::take_evidence`] drains them; older ones
/// are dropped first.
const MAX_QUEUED: usize = 1_024;

const KIND_CONFLICTING_NOTARIZE: u8 = 1;
const KIND_CONFLICTING_FINALIZE: u8 = 2;
const KIND_NULLIFY_FINALIZE: u8 = 3;
const HEADER: usize = 2 + 32;

/// Why evidence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// Longer than [`MAX_EVIDENCE_BYTES`] or shorter than its header.
    #[error("evidence has an invalid length")]
    Length,
    /// Unknown version byte.
    #[error("unknown evidence version {0}")]
    Version(u8),
    /// Unknown kind byte.
    #[error("unknown evidence kind {0}")]
    Kind(u8),
    /// The votes do not decode, are by different signers, are for different rounds, or do not
    /// conflict.
    #[error("malformed evidence: {0}")]
    Malformed(String),
    /// The committee given to check against is invalid.
    #[error("invalid committee: {0}")]
    Committee(String),
    /// The signer index is not in the committee or does not name the stated offender.
    #[error("the offender is not the committee member that signed")]
    NotInCommittee,
    /// A signature does not verify under the namespace and committee.
    #[error("a vote signature does not verify")]
    BadSignature,
}

enum Fault {
    Notarize(ConflictingNotarize<Scheme, sha256::Digest>),
    Finalize(ConflictingFinalize<Scheme, sha256::Digest>),
    NullifyFinalize(NullifyFinalize<Scheme, sha256::Digest>),
}

impl Fault {
    fn from_activity(activity: &Activity<Scheme, sha256::Digest>) -> Option<Self> {
        match activity {
            Activity::ConflictingNotarize(f) => Some(Self::Notarize(f.clone())),
            Activity::ConflictingFinalize(f) => Some(Self::Finalize(f.clone())),
            Activity::NullifyFinalize(f) => Some(Self::NullifyFinalize(f.clone())),
            _ => None,
        }
    }

    fn parts(&self) -> (u8, u32, u64, Vec<u8>) {
        match self {
            Self::Notarize(f) => (KIND_CONFLICTING_NOTARIZE, f.signer().get(), f.epoch().get(), f.encode().to_vec()),
            Self::Finalize(f) => (KIND_CONFLICTING_FINALIZE, f.signer().get(), f.epoch().get(), f.encode().to_vec()),
            Self::NullifyFinalize(f) => (KIND_NULLIFY_FINALIZE, f.signer().get(), f.epoch().get(), f.encode().to_vec()),
        }
    }

    fn decode(kind: u8, body: &[u8]) -> Result<Self, EvidenceError> {
        let malformed = |e: commonware_codec::Error| EvidenceError::Malformed(e.to_string());
        Ok(match kind {
            KIND_CONFLICTING_NOTARIZE => {
                Self::Notarize(ConflictingNotarize::decode_cfg(Copying(body), &()).map_err(malformed)?)
            }
            KIND_CONFLICTING_FINALIZE => {
                Self::Finalize(ConflictingFinalize::decode_cfg(Copying(body), &()).map_err(malformed)?)
            }
            KIND_NULLIFY_FINALIZE => {
                Self::NullifyFinalize(NullifyFinalize::decode_cfg(Copying(body), &()).map_err(malformed)?)
            }
            other => return Err(EvidenceError::Kind(other)),
        })
    }

    fn verify(&self, verifier: &Scheme) -> bool {
        let mut rng = commonware_utils::sys_rng();
        match self {
            Self::Notarize(f) => f.verify(&mut rng, verifier, &Sequential),
            Self::Finalize(f) => f.verify(&mut rng, verifier, &Sequential),
            Self::NullifyFinalize(f) => f.verify(&mut rng, verifier, &Sequential),
        }
    }

    fn view(&self) -> u64 {
        match self {
            Self::Notarize(f) => f.view().get(),
            Self::Finalize(f) => f.view().get(),
            Self::NullifyFinalize(f) => f.view().get(),
        }
    }
}

/// Encodes a simplex fault activity as evidence bytes; `None` for any other activity or if the
/// signer index is not in `committee` (the sorted participant set of the fault's epoch).
pub(crate) fn encode_activity(
    activity: &Activity<Scheme, sha256::Digest>,
    committee: &commonware_utils::ordered::Set<ed25519::PublicKey>,
) -> Option<Vec<u8>> {
    let fault = Fault::from_activity(activity)?;
    let (kind, signer, _, body) = fault.parts();
    let offender = committee.get(signer as usize)?;
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.push(EVIDENCE_VERSION);
    out.push(kind);
    out.extend_from_slice(&validator_key(offender));
    out.extend_from_slice(&body);
    Some(out)
}

fn split(evidence: &[u8]) -> Result<(u8, ValidatorKey, &[u8]), EvidenceError> {
    if evidence.len() > MAX_EVIDENCE_BYTES || evidence.len() <= HEADER {
        return Err(EvidenceError::Length);
    }
    if evidence[0] != EVIDENCE_VERSION {
        return Err(EvidenceError::Version(evidence[0]));
    }
    let mut offender = [0u8; 32];
    offender.copy_from_slice(&evidence[2..HEADER]);
    Ok((evidence[1], offender, &evidence[HEADER..]))
}

/// The epoch (and view) evidence claims, without checking it: use it to pick the committee to
/// pass to [`verify_evidence`]. Bounded decoding; fails like [`verify_evidence`] on malformed
/// bytes.
pub fn evidence_round(evidence: &[u8]) -> Result<(u64, u64), EvidenceError> {
    let (kind, _, body) = split(evidence)?;
    let fault = Fault::decode(kind, body)?;
    let (_, _, epoch, _) = fault.parts();
    Ok((epoch, fault.view()))
}

/// Checks equivocation evidence against `namespace` and the committee of the epoch it names
/// (any order; it is sorted like consensus sorts it). Returns the epoch and the offender.
///
/// Accepts only well-formed version-1 evidence of at most [`MAX_EVIDENCE_BYTES`] whose two
/// votes are for the same round, by the same committee member (the stated offender), conflict
/// (different proposals, or a nullify and a finalize), and both verify.
pub fn verify_evidence(
    namespace: &[u8],
    committee: &[ValidatorKey],
    evidence: &[u8],
) -> Result<(u64, ValidatorKey), EvidenceError> {
    let (kind, offender, body) = split(evidence)?;
    let fault = Fault::decode(kind, body)?;
    let set = committee_set(committee).map_err(|e| EvidenceError::Committee(e.to_string()))?;
    if set.is_empty() {
        return Err(EvidenceError::Committee("empty".into()));
    }
    let (_, signer, epoch, _) = fault.parts();
    match set.get(signer as usize) {
        Some(pk) if validator_key(pk) == offender => {}
        _ => return Err(EvidenceError::NotInCommittee),
    }
    // The decoders already refuse votes by different signers, for different rounds, or for the
    // same proposal; signatures are checked against the committee member at the signer index.
    let verifier = Scheme::verifier(namespace, set);
    if !fault.verify(&verifier) {
        return Err(EvidenceError::BadSignature);
    }
    Ok((epoch, offender))
}

/// Simplex reporter that keeps fault activities as evidence bytes.
#[derive(Clone)]
pub(crate) struct EvidenceCollector {
    committee: commonware_utils::ordered::Set<ed25519::PublicKey>,
    queue: Arc<Mutex<VecDeque<Vec<u8>>>>,
}

impl EvidenceCollector {
    pub(crate) fn new(
        committee: commonware_utils::ordered::Set<ed25519::PublicKey>,
        queue: Arc<Mutex<VecDeque<Vec<u8>>>>,
    ) -> Self {
        Self { committee, queue }
    }
}

/// Takes everything queued.
pub(crate) fn drain(queue: &Mutex<VecDeque<Vec<u8>>>) -> Vec<Vec<u8>> {
    queue.lock().map(|mut q| q.drain(..).collect()).unwrap_or_default()
}

impl Reporter for EvidenceCollector {
    type Activity = Activity<Scheme, sha256::Digest>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        if let Some(bytes) = encode_activity(&activity, &self.committee) {
            tracing::warn!(len = bytes.len(), "equivocation evidence collected");
            if let Ok(mut q) = self.queue.lock()
                && !q.contains(&bytes)
            {
                if q.len() >= MAX_QUEUED {
                    q.pop_front();
                }
                q.push_back(bytes);
            }
        }
        Feedback::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_consensus::{
        simplex::types::{Finalize, Notarize, Nullify, Proposal},
        types::{Epoch, Round, View},
    };
    use commonware_cryptography::Signer as _;
    use commonware_utils::ordered::Set;

    const NS: &[u8] = b"umbra-evidence";

    fn keys(n: u64) -> Vec<ed25519::PrivateKey> {
        (0..n).map(|i| ed25519::PrivateKey::from_seed(500 + i)).collect()
    }

    fn committee(keys: &[ed25519::PrivateKey]) -> Vec<ValidatorKey> {
        keys.iter().map(|k| validator_key(&k.public_key())).collect()
    }

    fn signer(keys: &[ed25519::PrivateKey], set_of: &[ed25519::PrivateKey], i: usize) -> Scheme {
        let set = Set::from_iter_dedup(set_of.iter().map(|k| k.public_key()));
        Scheme::signer(NS, set, keys[i].clone()).expect("member")
    }

    fn proposal(epoch: u64, view: u64, payload: u8) -> Proposal<sha256::Digest> {
        Proposal::new(
            Round::new(Epoch::new(epoch), View::new(view)),
            View::new(view - 1),
            sha256::Digest([payload; 32]),
        )
    }

    fn set(keys: &[ed25519::PrivateKey]) -> Set<ed25519::PublicKey> {
        Set::from_iter_dedup(keys.iter().map(|k| k.public_key()))
    }

    fn double_notarize(scheme: &Scheme, epoch: u64, view: u64) -> Activity<Scheme, sha256::Digest> {
        let a = Notarize::sign(scheme, proposal(epoch, view, 1)).expect("signs");
        let b = Notarize::sign(scheme, proposal(epoch, view, 2)).expect("signs");
        Activity::ConflictingNotarize(ConflictingNotarize::new(a, b))
    }

    #[test]
    fn a_double_notarize_reported_by_simplex_becomes_evidence_that_names_the_offender() {
        let keys = keys(4);
        let scheme = signer(&keys, &keys, 2);
        let queue = Arc::default();
        let mut collector = EvidenceCollector::new(set(&keys), Arc::clone(&queue));
        let _ = collector.report(double_notarize(&scheme, 3, 7));
        let _ = collector.report(double_notarize(&scheme, 3, 7)); // deduplicated
        let evidence = drain(&queue);
        assert_eq!(evidence.len(), 1);
        let (epoch, offender) = verify_evidence(NS, &committee(&keys), &evidence[0]).expect("valid evidence");
        assert_eq!(epoch, 3);
        assert_eq!(offender, validator_key(&keys[2].public_key()));
        assert_eq!(evidence_round(&evidence[0]), Ok((3, 7)));
        // The committee order does not matter.
        let mut reversed = committee(&keys);
        reversed.reverse();
        assert!(verify_evidence(NS, &reversed, &evidence[0]).is_ok());
        // Another namespace does not verify.
        assert_eq!(verify_evidence(b"other", &committee(&keys), &evidence[0]), Err(EvidenceError::BadSignature));
    }

    #[test]
    fn a_double_finalize_and_a_nullify_finalize_are_evidence_too() {
        let keys = keys(4);
        let scheme = signer(&keys, &keys, 1);
        let f1 = Finalize::sign(&scheme, proposal(0, 4, 1)).expect("signs");
        let f2 = Finalize::sign(&scheme, proposal(0, 4, 2)).expect("signs");
        let double = Activity::ConflictingFinalize(ConflictingFinalize::new(f1.clone(), f2));
        let nullify = Nullify::sign::<sha256::Digest>(&scheme, Round::new(Epoch::new(0), View::new(4))).expect("signs");
        let both = Activity::NullifyFinalize(NullifyFinalize::new(nullify, f1));
        for activity in [double, both] {
            let bytes = encode_activity(&activity, &set(&keys)).expect("a fault");
            let (epoch, offender) = verify_evidence(NS, &committee(&keys), &bytes).expect("valid");
            assert_eq!((epoch, offender), (0, validator_key(&keys[1].public_key())));
        }
    }

    #[test]
    fn malformed_evidence_is_refused() {
        let keys = keys(4);
        let good = encode_activity(&double_notarize(&signer(&keys, &keys, 0), 1, 2), &set(&keys)).expect("fault");
        let c = committee(&keys);
        assert_eq!(verify_evidence(NS, &c, &[]), Err(EvidenceError::Length));
        assert_eq!(verify_evidence(NS, &c, &vec![1; MAX_EVIDENCE_BYTES + 1]), Err(EvidenceError::Length));
        let mut bad = good.clone();
        bad[0] = 9;
        assert_eq!(verify_evidence(NS, &c, &bad), Err(EvidenceError::Version(9)));
        let mut bad = good.clone();
        bad[1] = 9;
        assert_eq!(verify_evidence(NS, &c, &bad), Err(EvidenceError::Kind(9)));
        // Truncated, extended and bit-flipped bodies.
        assert!(matches!(verify_evidence(NS, &c, &good[..good.len() - 1]), Err(EvidenceError::Malformed(_))));
        let mut bad = good.clone();
        bad.push(0);
        assert!(matches!(verify_evidence(NS, &c, &bad), Err(EvidenceError::Malformed(_))));
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(verify_evidence(NS, &c, &bad), Err(EvidenceError::BadSignature));
        // A wrong stated offender.
        let mut bad = good.clone();
        bad[2..34].copy_from_slice(&c[3]);
        assert_eq!(verify_evidence(NS, &c, &bad), Err(EvidenceError::NotInCommittee));
        for seed in 0..64u8 {
            let junk: Vec<u8> = (0..200u8).map(|i| i.wrapping_mul(seed).wrapping_add(seed)).collect();
            let mut junk = [vec![EVIDENCE_VERSION, KIND_CONFLICTING_NOTARIZE], junk].concat();
            junk[2..34].copy_from_slice(&c[0]);
            assert!(verify_evidence(NS, &c, &junk).is_err());
        }
    }

    /// Builds version-1 evidence from two raw notarize votes (bypassing the constructors' checks).
    fn raw(
        a: &Notarize<Scheme, sha256::Digest>,
        b: &Notarize<Scheme, sha256::Digest>,
        offender: ValidatorKey,
    ) -> Vec<u8> {
        [vec![EVIDENCE_VERSION, KIND_CONFLICTING_NOTARIZE], offender.to_vec(), a.encode().to_vec(), b.encode().to_vec()]
            .concat()
    }

    #[test]
    fn votes_by_two_signers_or_that_do_not_conflict_are_refused() {
        let keys = keys(4);
        let c = committee(&keys);
        let s0 = signer(&keys, &keys, 0);
        let s1 = signer(&keys, &keys, 1);
        let a = Notarize::sign(&s0, proposal(1, 5, 1)).expect("signs");
        let b = Notarize::sign(&s1, proposal(1, 5, 2)).expect("signs");
        let offender = validator_key(&set(&keys)[0]);
        assert!(matches!(verify_evidence(NS, &c, &raw(&a, &b, offender)), Err(EvidenceError::Malformed(_))));
        // Same proposal twice: no conflict.
        assert!(matches!(verify_evidence(NS, &c, &raw(&a, &a, offender)), Err(EvidenceError::Malformed(_))));
        // Different views: no conflict.
        let later = Notarize::sign(&s0, proposal(1, 6, 2)).expect("signs");
        assert!(matches!(verify_evidence(NS, &c, &raw(&a, &later, offender)), Err(EvidenceError::Malformed(_))));
    }

    #[test]
    fn votes_by_a_key_outside_the_committee_are_refused() {
        let keys = keys(5);
        let (committee_keys, outsider) = (&keys[..4], &keys[4]);
        // The outsider signs as if it held index 0 of a committee that includes it.
        let with_outsider: Vec<_> = keys.iter().skip(1).cloned().collect();
        let position = set(&with_outsider).position(&outsider.public_key()).expect("member");
        let scheme = signer(
            &with_outsider,
            &with_outsider,
            with_outsider.iter().position(|k| k.public_key() == outsider.public_key()).expect("in"),
        );
        let bytes = encode_activity(&double_notarize(&scheme, 2, 3), &set(&with_outsider)).expect("fault");
        let real = committee(committee_keys);
        let result = verify_evidence(NS, &real, &bytes);
        assert!(
            matches!(result, Err(EvidenceError::NotInCommittee) | Err(EvidenceError::BadSignature)),
            "index {position}: {result:?}"
        );
        // Even claiming the real member at that index as offender, the signature does not verify.
        let mut claimed = bytes.clone();
        let member = validator_key(&set(committee_keys)[position]);
        claimed[2..34].copy_from_slice(&member);
        assert_eq!(verify_evidence(NS, &real, &claimed), Err(EvidenceError::BadSignature));
    }
}
