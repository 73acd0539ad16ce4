//! The light client's typed errors.

use umbra_state::ProofError;
use umbra_types::Hash;

/// Why the light client refused a committee, a header, a certificate or a proof.
///
/// Every message is one line and names what was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LightError {
    /// A committee cannot be used: empty, too large, a duplicate key or a key that is not an
    /// ed25519 point.
    #[error("invalid committee: {0}")]
    InvalidCommittee(String),
    /// The starting point is not what the constructor expects (for example a "genesis" header at
    /// a height other than 0).
    #[error("invalid trusted starting point: {0}")]
    InvalidCheckpoint(String),
    /// The header's epoch has no committee the client knows: it is older than the tracked epoch
    /// (verify it as an ancestor of a newer verified header instead), or later than the next
    /// epoch (verify the boundary blocks in between first).
    #[error("no trusted committee for epoch {epoch}: the client tracks epoch {tracked}{}", next_note(*next))]
    UnknownEpoch {
        /// The header's epoch.
        epoch: u64,
        /// The epoch whose committee the client holds.
        tracked: u64,
        /// The next epoch, when its committee is already known.
        next: Option<u64>,
    },
    /// The certificate is longer than any certificate of the committee can be.
    #[error("finality certificate of {len} bytes exceeds the {max}-byte maximum for this committee")]
    CertificateTooLarge {
        /// Its length.
        len: usize,
        /// The largest possible for the committee.
        max: usize,
    },
    /// The certificate bytes do not decode as a finalization for this committee.
    #[error("malformed finality certificate: {0}")]
    MalformedCertificate(String),
    /// The certificate is for another epoch than the header says.
    #[error("finality certificate is for epoch {certificate} but the header is in epoch {header}")]
    EpochMismatch {
        /// The certificate's epoch.
        certificate: u64,
        /// The header's epoch.
        header: u64,
    },
    /// The certificate finalizes another block.
    #[error("finality certificate is for block {certified}, not for this header ({header})")]
    WrongBlock {
        /// The digest the certificate signs.
        certified: Hash,
        /// The header's hash.
        header: Hash,
    },
    /// The signatures do not verify against the committee and the chain's namespace: a forged
    /// certificate, one signed by another signer set, or one from another chain.
    #[error(
        "forged finality certificate for block {height} ({hash}): its signatures do not verify against the epoch {epoch} committee of chain '{chain_id}'"
    )]
    InvalidCertificate {
        /// The header's height.
        height: u64,
        /// The header's hash.
        hash: Hash,
        /// The epoch whose committee was used.
        epoch: u64,
        /// The chain.
        chain_id: String,
    },
    /// A verified header from another light client (another chain) was passed in.
    #[error("the header was verified for chain '{theirs}', not for '{ours}'")]
    OtherChain {
        /// This client's chain.
        ours: String,
        /// The chain the header was verified for.
        theirs: String,
    },
    /// A header claimed as the parent of a verified header is not its parent.
    #[error("header {height} ({hash}) is not the parent of verified block {child_height}, whose parent is {expected}")]
    NotParent {
        /// The claimed parent's height.
        height: u64,
        /// The claimed parent's hash.
        hash: Hash,
        /// The verified child's height.
        child_height: u64,
        /// The parent hash the child commits to.
        expected: Hash,
    },
    /// A state proof is malformed or does not authenticate the key against the header's state root.
    #[error("invalid state proof against the state root {state_root} of block {height}: {source}")]
    StateProof {
        /// The verified header's height.
        height: u64,
        /// Its state root.
        state_root: Hash,
        /// What is wrong with the proof.
        source: ProofError,
    },
    /// A proven state value does not decode as the type its key holds.
    #[error("the proven value is not a valid {what}: {reason}")]
    MalformedValue {
        /// The expected type.
        what: &'static str,
        /// The decoding error.
        reason: String,
    },
    /// A message proof does not show the leaf under the header's messages root.
    #[error(
        "invalid message proof: leaf {leaf} at index {index} is not under the messages root {root} of block {height}"
    )]
    MessageProof {
        /// The leaf.
        leaf: Hash,
        /// The position the proof claims.
        index: u64,
        /// The verified header's messages root.
        root: Hash,
        /// Its height.
        height: u64,
    },
}

fn next_note(next: Option<u64>) -> String {
    next.map(|n| format!(" and knows the committee of epoch {n}")).unwrap_or_default()
}
