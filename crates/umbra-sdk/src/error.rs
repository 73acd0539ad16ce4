//! The SDK's typed errors.

use std::time::Duration;
use umbra_rpc::RpcError;
use umbra_types::{Address, Amount, Hash, SYMBOL, format_amount};

/// Why a call to a node, a proof check or a transfer failed.
///
/// Every message is one line and names what was being done, so a command line tool can print it
/// as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdkError {
    /// The URL is not one the client can connect to.
    #[error("invalid node URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The node could not be reached, or the connection failed mid-request.
    #[error("cannot reach the node at {url}: {reason}")]
    Unreachable {
        /// The node's URL.
        url: String,
        /// The innermost cause (for example `Connection refused (os error 111)`).
        reason: String,
    },
    /// The node answered with one of the typed errors of the RPC contract.
    #[error("{0}")]
    Rpc(RpcError),
    /// The node answered with an error code outside the contract (for example "method not
    /// found" from a node of another version).
    #[error("{message} (code {code})")]
    UnexpectedRpcError {
        /// The JSON-RPC code.
        code: i32,
        /// The node's message.
        message: String,
    },
    /// The node's answer does not have the shape the contract promises.
    #[error("unexpected answer to {method}: {reason}")]
    BadResponse {
        /// The method called.
        method: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// The node's state proof for an account is missing, malformed, or does not authenticate
    /// the account against the header's state root.
    #[error("invalid state proof for {address}: {reason}")]
    BadProof {
        /// The account asked about.
        address: Address,
        /// What is wrong with the proof.
        reason: String,
    },
    /// A state value's proof does not check out against the finalized header the node named.
    #[error("the node's proof of {what} does not verify: {reason}")]
    BadStateProof {
        /// The value asked about.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The proof is valid but the node's answer disagrees with what it proves.
    #[error("the node's answer for {address} contradicts its state proof: {reason}")]
    ProofMismatch {
        /// The account asked about.
        address: Address,
        /// Which field disagrees and how.
        reason: String,
    },
    /// The light client refused the block a node's answer rests on: a forged or mismatched
    /// finality certificate, or a header in an epoch whose committee is not known.
    #[error("block {height} is not proven final: {source}")]
    NotFinal {
        /// The block's height.
        height: u64,
        /// What the light client refused.
        source: umbra_light::LightError,
    },
    /// A block could not be checked at all: the node serves no finality certificate for it or
    /// any of its next blocks.
    #[error("cannot verify block {height}: {reason}")]
    Unverified {
        /// The block's height.
        height: u64,
        /// What is missing.
        reason: String,
    },
    /// The node serves another chain than the one trusted (pinned on first use or given
    /// explicitly).
    #[error("untrusted chain '{chain_id}': {reason}")]
    Untrusted {
        /// The chain id the node names.
        chain_id: String,
        /// What differs and how to proceed.
        reason: String,
    },
    /// The trust store (`$UMBRA_HOME/trust`) could not be read or written.
    #[error("trust store {}: {reason}", path.display())]
    TrustStore {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What failed.
        reason: String,
    },
    /// A transaction was not finalized in time.
    #[error("transaction {hash} was not finalized within {}s ({last_seen})", waited.as_secs())]
    Timeout {
        /// The transaction.
        hash: Hash,
        /// How long we waited.
        waited: Duration,
        /// What the node last said about it.
        last_seen: String,
    },
    /// An explicit fee is below the chain's minimum for the transaction.
    #[error(
        "fee {} {SYMBOL} is below the minimum {} {SYMBOL} for this transaction",
        format_amount(*offered),
        format_amount(*minimum)
    )]
    FeeTooLow {
        /// The fee asked for.
        offered: Amount,
        /// The chain's minimum.
        minimum: Amount,
    },
    /// A transfer that would certainly fail on chain (and still cost its fee).
    #[error("invalid transfer: {0}")]
    InvalidTransfer(String),
    /// A contract call or query could not be made or its answer does not check out.
    #[error("contract: {0}")]
    Contract(String),
}

impl From<RpcError> for SdkError {
    fn from(e: RpcError) -> Self {
        SdkError::Rpc(e)
    }
}

impl SdkError {
    /// The typed RPC error code, if the node returned one of the contract's errors.
    pub fn rpc_code(&self) -> Option<umbra_rpc::ErrorCode> {
        match self {
            SdkError::Rpc(e) => Some(e.code),
            _ => None,
        }
    }
}
