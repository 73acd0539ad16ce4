//! Test support (feature `test-utils`): committees of generated keys that sign real finality
//! certificates, exactly as the chain's consensus encodes them. Never enable it in production.

use crate::{Certificate, namespace, public_key};
use commonware_codec::Encode as _;
use commonware_consensus::simplex::{
    scheme::ed25519::Scheme,
    types::{Finalize, Proposal},
};
use commonware_consensus::types::{Epoch, Round, View};
use commonware_cryptography::{Signer as _, ed25519, sha256};
use commonware_parallel::Sequential;
use commonware_utils::{iter::NonEmpty, ordered::Set};
use umbra_types::{Hash, Header, ValidatorKey};

/// A committee whose private keys the test holds.
#[derive(Clone, Debug)]
pub struct TestCommittee {
    keys: Vec<ed25519::PrivateKey>,
}

impl TestCommittee {
    /// `n` members with keys derived from `seed` (different seeds give disjoint committees).
    pub fn new(seed: u64, n: usize) -> Self {
        let keys = (0..n as u64)
            .map(|i| ed25519::PrivateKey::from_seed(seed.wrapping_mul(1_000_003).wrapping_add(i)))
            .collect();
        TestCommittee { keys }
    }

    /// This committee with `other`'s members added.
    pub fn with_member(&self, other: &TestCommittee) -> Self {
        let mut keys = self.keys.clone();
        keys.extend(other.keys.iter().cloned());
        TestCommittee { keys }
    }

    /// The members' public keys, as headers and genesis name them.
    pub fn keys(&self) -> Vec<ValidatorKey> {
        self.keys
            .iter()
            .map(|k| {
                let mut out = [0u8; 32];
                out.copy_from_slice(k.public_key().as_ref());
                out
            })
            .collect()
    }

    /// A finality certificate for `header` in view `view`, signed under `chain_id`'s namespace by
    /// the first `signers` members (a quorum is 2f+1 of n).
    pub fn certify(&self, chain_id: &str, header: &Header, view: u64, signers: usize) -> Vec<u8> {
        self.certify_in(&namespace(chain_id), header, view, signers)
    }

    /// Like [`TestCommittee::certify`] with a raw namespace.
    pub fn certify_in(&self, namespace: &[u8], header: &Header, view: u64, signers: usize) -> Vec<u8> {
        self.certify_digest(namespace, header.epoch, header.hash(), view, signers)
    }

    /// A certificate of `digest` in `epoch` and `view` under a raw namespace, by the first
    /// `signers` members: for forging mismatches between a certificate and a header.
    pub fn certify_digest(&self, namespace: &[u8], epoch: u64, digest: Hash, view: u64, signers: usize) -> Vec<u8> {
        let participants = Set::from_iter_dedup(self.keys().iter().filter_map(public_key));
        let proposal = Proposal::new(
            Round::new(Epoch::new(epoch), View::new(view)),
            View::new(view.saturating_sub(1)),
            sha256::Digest(digest.0),
        );
        let votes: Vec<_> = self
            .keys
            .iter()
            .take(signers)
            .map(|k| {
                let scheme = Scheme::signer(namespace, participants.clone(), k.clone()).expect("a member");
                Finalize::sign(&scheme, proposal.clone()).expect("signs")
            })
            .collect();
        let verifier = Scheme::verifier(namespace, participants);
        let votes = NonEmpty::try_new(votes.iter()).expect("at least one signer");
        Certificate::from_finalizes(&verifier, votes, &Sequential).expect("a quorum of signers").encode().to_vec()
    }

    /// A certificate with a quorum of this committee (all members sign).
    pub fn certify_all(&self, chain_id: &str, header: &Header, view: u64) -> Vec<u8> {
        self.certify(chain_id, header, view, self.keys.len())
    }
}
