//! A light client for Umbra: from a pinned genesis or checkpoint it verifies finality certificates across epoch changes, and state and message proofs against the headers it has verified.
//!
//! # Why it is shaped this way
//!
//! * **Who uses it.** The SDK (and through it `umbra account` and `umbra block`) checks what an
//!   RPC node says with it, and the TEE worker will follow the chain with it without trusting its
//!   host (ARCHITECTURE.md section 4). Both need the same few checks, so they live in one thin
//!   crate with no I/O: callers fetch bytes however they like and hand them in.
//! * **What is pinned.** The consensus namespace (`b"umbra-" + chain_id`, which every vote
//!   signs), the committee of the tracked epoch, and a trusted header: the genesis block or a
//!   checkpoint the caller trusts by other means. Nothing the node says later can change them,
//!   except a header that the pinned committee itself finalized.
//! * **Certificates.** A finality certificate is Commonware simplex's `Finalization` under the
//!   ed25519 scheme (a quorum, 2f+1 of n, of the epoch's committee signing the block digest,
//!   which is the header hash). It is decoded with the committee-bounded codec configuration
//!   (untrusted input: no input panics or allocates beyond the committee's size), verified with
//!   the scheme's verifier, and must name this header's hash and epoch.
//! * **Epochs.** Headers carry their `epoch`; the last block of an epoch carries
//!   `next_committee`. When a verified header carries it, the client keeps that committee for
//!   epoch + 1 and switches to it at the first verified header of that epoch; from then on the
//!   old committee is refused. The genesis header (height 0) is the exception: its
//!   `next_committee` is the committee of epoch 0 itself.
//! * **A token, not a flag.** Verification returns a [`VerifiedHeader`], which only this crate
//!   can make; proofs are checked against a `VerifiedHeader`, so a caller cannot check a proof
//!   against a header whose certificate it skipped. A block finalized without a certificate of
//!   its own (finality covers ancestors) is verified through a verified descendant with
//!   [`LightClient::verify_ancestor`].

mod error;
#[cfg(feature = "test-utils")]
pub mod testing;

pub use error::LightError;

use commonware_codec::{Copying, Decode as _};
use commonware_consensus::simplex::{scheme::ed25519::Scheme, types::Finalization};
use commonware_cryptography::{certificate::Verifier as _, ed25519, sha256};
use commonware_parallel::Sequential;
use commonware_utils::ordered::Set;
use serde::{Deserialize, Serialize};
use umbra_crypto::{MerkleProof, verify_merkle_proof};
use umbra_state::{StateProof, verify_proof};
use umbra_types::state_keys::{AccountRecord, StateKey};
use umbra_types::{Address, Hash, Header, ValidatorKey, decode};

/// The largest committee the client accepts (bounds certificate decoding and memory).
pub const MAX_COMMITTEE: usize = 1024;

/// Largest encoded account record accepted from a proof (a record is 24 bytes).
const MAX_RECORD_BYTES: usize = 1024;

/// The ed25519 finalization certificate type the chain's consensus produces.
type Certificate = Finalization<Scheme, sha256::Digest>;

/// The consensus namespace of a chain: `b"umbra-"` followed by its chain id. Every vote signs it,
/// so a certificate from another chain never verifies.
pub fn namespace(chain_id: &str) -> Vec<u8> {
    format!("umbra-{chain_id}").into_bytes()
}

/// How a [`VerifiedHeader`] came to be trusted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Finality {
    /// The caller's trusted starting point (the pinned genesis block or a checkpoint).
    Trusted,
    /// A finality certificate signed by `signers` of the `committee` members of `epoch`.
    Certificate {
        /// The epoch whose committee signed.
        epoch: u64,
        /// How many members signed.
        signers: u32,
        /// The committee's size.
        committee: u32,
    },
    /// An ancestor of a verified header: its hash is the parent hash committed to, directly or
    /// through a chain of parents, by the verified block at `height`.
    Ancestor {
        /// Height of the verified descendant.
        height: u64,
    },
}

impl std::fmt::Display for Finality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finality::Trusted => write!(f, "the pinned genesis block or checkpoint"),
            Finality::Certificate { epoch, signers, committee } => {
                write!(f, "finality certificate by {signers}/{committee} of the epoch {epoch} committee")
            }
            Finality::Ancestor { height } => {
                write!(f, "ancestor of block {height}, which has a verified finality certificate")
            }
        }
    }
}

/// A header the light client has verified. Only this crate can make one, so holding one means the
/// checks were done: [`LightClient::verify_finalized`], [`LightClient::verify_ancestor`], or the
/// trusted starting point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedHeader {
    header: Header,
    hash: Hash,
    chain_id: String,
    finality: Finality,
}

impl VerifiedHeader {
    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Its hash (the block id).
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// Its height.
    pub fn height(&self) -> u64 {
        self.header.height
    }

    /// The chain it was verified for.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// Why it is trusted.
    pub fn finality(&self) -> &Finality {
        &self.finality
    }
}

/// One epoch's committee, sorted, with its certificate verifier.
#[derive(Clone, Debug)]
struct Committee {
    epoch: u64,
    keys: Vec<ValidatorKey>,
    verifier: Scheme,
}

impl Committee {
    fn new(namespace: &[u8], epoch: u64, keys: &[ValidatorKey]) -> Result<Self, LightError> {
        let invalid = |reason: String| LightError::InvalidCommittee(reason);
        if keys.is_empty() {
            return Err(invalid(format!("the committee of epoch {epoch} is empty")));
        }
        if keys.len() > MAX_COMMITTEE {
            return Err(invalid(format!("{} members exceed the maximum of {MAX_COMMITTEE}", keys.len())));
        }
        let mut sorted = keys.to_vec();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(format!("key {} appears twice", hex(&w[0]))));
        }
        let mut public = Vec::with_capacity(sorted.len());
        for k in &sorted {
            let pk = public_key(k).ok_or_else(|| invalid(format!("key {} is not an ed25519 public key", hex(k))))?;
            public.push(pk);
        }
        let participants = Set::from_iter_dedup(public);
        if participants.len() != sorted.len() {
            return Err(invalid("two keys name the same ed25519 point".into()));
        }
        Ok(Committee { epoch, keys: sorted, verifier: Scheme::verifier(namespace, participants) })
    }

    fn size(&self) -> usize {
        self.keys.len()
    }
}

/// The consensus key named by 32 raw bytes, or `None` if they are not a valid ed25519 point.
fn public_key(key: &ValidatorKey) -> Option<ed25519::PublicKey> {
    use commonware_codec::ReadExt as _;
    ed25519::PublicKey::read(&mut Copying(key.as_slice())).ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Follows one chain from a trusted starting point: verifies finality certificates against the
/// committee it tracks (switching committees at epoch boundaries), and proofs against the
/// headers it verified.
#[derive(Clone, Debug)]
pub struct LightClient {
    chain_id: String,
    namespace: Vec<u8>,
    current: Committee,
    next: Option<Committee>,
    anchor: Option<VerifiedHeader>,
    tip: Option<VerifiedHeader>,
}

impl LightClient {
    /// A client for a chain started from `genesis` (a genesis file the caller trusts): the
    /// namespace comes from its chain id and the epoch 0 committee from its validators. It has no
    /// trusted header until it verifies one.
    pub fn from_genesis(genesis: &umbra_types::Genesis) -> Result<Self, LightError> {
        let keys: Vec<ValidatorKey> = genesis.validators.iter().map(|v| v.key).collect();
        let namespace = namespace(&genesis.chain_id);
        let current = Committee::new(&namespace, 0, &keys)?;
        Ok(LightClient { chain_id: genesis.chain_id.clone(), namespace, current, next: None, anchor: None, tip: None })
    }

    /// A client for chain `chain_id` starting from its genesis block's header, which the caller
    /// trusts (for example because its hash matches a pinned genesis hash). The header must be at
    /// height 0 in epoch 0 and carry the first committee in `next_committee`.
    pub fn from_genesis_header(chain_id: &str, header: &Header) -> Result<Self, LightError> {
        if header.height != 0 || header.epoch != 0 {
            return Err(LightError::InvalidCheckpoint(format!(
                "a genesis header is at height 0 in epoch 0, not height {} in epoch {}",
                header.height, header.epoch
            )));
        }
        let Some(keys) = &header.next_committee else {
            return Err(LightError::InvalidCheckpoint("the genesis header names no committee".into()));
        };
        Self::start(chain_id, header, keys, None)
    }

    /// A client for chain `chain_id` starting from a checkpoint the caller trusts: `header` and
    /// `committee`, the committee of `header.epoch`. If the checkpoint is the last block of its
    /// epoch (it carries `next_committee`), that committee is kept for the next epoch.
    pub fn from_checkpoint(chain_id: &str, header: &Header, committee: &[ValidatorKey]) -> Result<Self, LightError> {
        let next = match (&header.next_committee, header.height) {
            (Some(keys), h) if h > 0 => Some(keys.as_slice()),
            _ => None,
        };
        Self::start(chain_id, header, committee, next)
    }

    fn start(
        chain_id: &str,
        header: &Header,
        committee: &[ValidatorKey],
        next: Option<&[ValidatorKey]>,
    ) -> Result<Self, LightError> {
        let namespace = namespace(chain_id);
        let current = Committee::new(&namespace, header.epoch, committee)?;
        let next = match next {
            Some(keys) => Some(Committee::new(&namespace, next_epoch(header.epoch)?, keys)?),
            None => None,
        };
        let anchor = VerifiedHeader {
            header: header.clone(),
            hash: header.hash(),
            chain_id: chain_id.into(),
            finality: Finality::Trusted,
        };
        Ok(LightClient {
            chain_id: chain_id.into(),
            namespace,
            current,
            next,
            anchor: Some(anchor.clone()),
            tip: Some(anchor),
        })
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The consensus namespace certificates must be signed under.
    pub fn namespace(&self) -> &[u8] {
        &self.namespace
    }

    /// The epoch whose committee the client tracks.
    pub fn epoch(&self) -> u64 {
        self.current.epoch
    }

    /// The tracked epoch's committee, sorted.
    pub fn committee(&self) -> &[ValidatorKey] {
        &self.current.keys
    }

    /// The next epoch's committee, once a verified boundary header announced it.
    pub fn next_committee(&self) -> Option<(u64, &[ValidatorKey])> {
        self.next.as_ref().map(|c| (c.epoch, c.keys.as_slice()))
    }

    /// The trusted starting point (genesis block or checkpoint), if the client was made from one.
    pub fn anchor(&self) -> Option<&VerifiedHeader> {
        self.anchor.as_ref()
    }

    /// The highest header verified so far (or the starting point).
    pub fn tip(&self) -> Option<&VerifiedHeader> {
        self.tip.as_ref()
    }

    /// The starting point as a [`VerifiedHeader`] if `header` is exactly it: how a caller accepts
    /// the genesis block, which has no certificate.
    pub fn trusted(&self, header: &Header) -> Option<VerifiedHeader> {
        self.anchor.as_ref().filter(|a| a.header == *header).cloned()
    }

    /// Verifies that `certificate` (an encoded Commonware `Finalization`) finalizes `header`:
    /// it decodes under the committee's bounds, names this header's hash and epoch, and carries a
    /// quorum of valid signatures of that epoch's committee under the chain's namespace.
    ///
    /// On success the header becomes the tip if it is higher; a header in the next epoch
    /// switches the client to that epoch's committee; a header carrying `next_committee` makes
    /// that committee the next epoch's. Never panics on any input.
    pub fn verify_finalized(&mut self, header: &Header, certificate: &[u8]) -> Result<VerifiedHeader, LightError> {
        let committee = match &self.next {
            _ if header.epoch == self.current.epoch => &self.current,
            Some(next) if header.epoch == next.epoch => next,
            next => {
                return Err(LightError::UnknownEpoch {
                    epoch: header.epoch,
                    tracked: self.current.epoch,
                    next: next.as_ref().map(|n| n.epoch),
                });
            }
        };
        let (signers, size) = check_certificate(&self.chain_id, committee, header, certificate)?;
        let hash = header.hash();
        // A certified boundary header announces the next committee; check it before changing
        // anything, so a failure leaves the client as it was.
        let announced = match &header.next_committee {
            Some(keys) if header.height > 0 => Some(Committee::new(&self.namespace, next_epoch(header.epoch)?, keys)?),
            _ => None,
        };
        if header.epoch != self.current.epoch
            && let Some(next) = self.next.take()
        {
            self.current = next;
        }
        if let Some(c) = announced {
            self.next = Some(c);
        }
        let verified = VerifiedHeader {
            header: header.clone(),
            hash,
            chain_id: self.chain_id.clone(),
            finality: Finality::Certificate { epoch: header.epoch, signers, committee: size },
        };
        if self.tip.as_ref().is_none_or(|t| t.height() < header.height) {
            self.tip = Some(verified.clone());
        }
        Ok(verified)
    }

    /// Verifies `parent` as the parent of the verified header `child`: finality covers every
    /// ancestor of a finalized block, so this verifies blocks that have no certificate of their
    /// own. Apply repeatedly to walk further back.
    pub fn verify_ancestor(&self, child: &VerifiedHeader, parent: &Header) -> Result<VerifiedHeader, LightError> {
        self.same_chain(child)?;
        let hash = parent.hash();
        if hash != child.header.parent || parent.height.checked_add(1) != Some(child.height()) {
            return Err(LightError::NotParent {
                height: parent.height,
                hash,
                child_height: child.height(),
                expected: child.header.parent,
            });
        }
        let from = match child.finality {
            Finality::Ancestor { height } => height,
            _ => child.height(),
        };
        Ok(VerifiedHeader {
            header: parent.clone(),
            hash,
            chain_id: self.chain_id.clone(),
            finality: Finality::Ancestor { height: from },
        })
    }

    /// Checks a state proof (`proof`: the bytes of an `umbra_state::StateProof`) for `key`
    /// against the state root of the verified header `at`: `Some(value)` if the key holds it,
    /// `None` if the proof shows the key is absent.
    pub fn verify_state(
        &self,
        at: &VerifiedHeader,
        key: &StateKey,
        proof: &[u8],
    ) -> Result<Option<Vec<u8>>, LightError> {
        self.same_chain(at)?;
        let err = |source| LightError::StateProof { height: at.height(), state_root: at.header.state_root, source };
        let proof = StateProof::from_bytes(proof).map_err(err)?;
        verify_proof(at.header.state_root.as_bytes(), &key.hash(), &proof).map_err(err)
    }

    /// Checks a state proof of `address`'s account record against the verified header `at`:
    /// `Some(record)`, or `None` when the proof shows the account does not exist.
    pub fn verify_account(
        &self,
        at: &VerifiedHeader,
        address: &Address,
        proof: &[u8],
    ) -> Result<Option<AccountRecord>, LightError> {
        let Some(value) = self.verify_state(at, &StateKey::Account(*address), proof)? else {
            return Ok(None);
        };
        decode::<AccountRecord>(&value, MAX_RECORD_BYTES)
            .map(Some)
            .map_err(|e| LightError::MalformedValue { what: "account record", reason: e.to_string() })
    }

    /// Checks that `leaf` (a message hash) sits at `proof.index` under the messages root of the
    /// verified header `at`.
    pub fn verify_message(&self, at: &VerifiedHeader, leaf: &Hash, proof: &MerkleProof) -> Result<(), LightError> {
        self.same_chain(at)?;
        if verify_merkle_proof(&at.header.messages_root, leaf, proof) {
            Ok(())
        } else {
            Err(LightError::MessageProof {
                leaf: *leaf,
                index: proof.index,
                root: at.header.messages_root,
                height: at.height(),
            })
        }
    }

    fn same_chain(&self, h: &VerifiedHeader) -> Result<(), LightError> {
        if h.chain_id == self.chain_id {
            Ok(())
        } else {
            Err(LightError::OtherChain { ours: self.chain_id.clone(), theirs: h.chain_id.clone() })
        }
    }
}

fn next_epoch(epoch: u64) -> Result<u64, LightError> {
    epoch.checked_add(1).ok_or_else(|| LightError::InvalidCheckpoint("the epoch number overflows".into()))
}

/// Decodes and verifies `bytes` as `committee`'s finalization of `header`; returns (signers, size).
fn check_certificate(
    chain_id: &str,
    committee: &Committee,
    header: &Header,
    bytes: &[u8],
) -> Result<(u32, u32), LightError> {
    let size = u32::try_from(committee.size()).unwrap_or(u32::MAX);
    let max = Certificate::max_encode_size(size);
    if bytes.len() > max {
        return Err(LightError::CertificateTooLarge { len: bytes.len(), max });
    }
    let finalization = Certificate::decode_cfg(Copying(bytes), &committee.verifier.certificate_codec_config())
        .map_err(|e| LightError::MalformedCertificate(e.to_string()))?;
    let certified_epoch = finalization.proposal.round.epoch().get();
    if certified_epoch != header.epoch {
        return Err(LightError::EpochMismatch { certificate: certified_epoch, header: header.epoch });
    }
    let hash = header.hash();
    if finalization.proposal.payload.0 != hash.0 {
        return Err(LightError::WrongBlock { certified: Hash(finalization.proposal.payload.0), header: hash });
    }
    // Batch verification draws its random coefficients from the thread's OS-seeded CSPRNG.
    if !finalization.verify(&mut rand::rng(), &committee.verifier, &Sequential) {
        return Err(LightError::InvalidCertificate {
            height: header.height,
            hash,
            epoch: committee.epoch,
            chain_id: chain_id.into(),
        });
    }
    let signers = u32::try_from(finalization.certificate.signers.count()).unwrap_or(u32::MAX);
    Ok((signers, size))
}
