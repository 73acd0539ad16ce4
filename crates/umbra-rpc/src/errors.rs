use serde::{Deserialize, Serialize};

/// Typed JSON-RPC error codes. Codes are stable; messages are for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(i32)]
pub enum ErrorCode {
    /// The parameters are not what the method takes.
    InvalidParams = -32602,
    /// The transaction bytes do not decode.
    MalformedTransaction = 1001,
    /// The signature does not verify.
    BadSignature = 1002,
    /// The transaction names another chain.
    WrongChainId = 1003,
    /// The transaction exceeds the size limit.
    TransactionTooLarge = 1004,
    /// The nonce was already used.
    NonceUsed = 1005,
    /// The nonce skips ahead of the account's next nonce.
    NonceGap = 1006,
    /// The fee is below the chain's minimum for this transaction.
    FeeTooLow = 1007,
    /// The signer cannot pay the fee.
    CannotPayFee = 1008,
    /// The mempool is full of transactions paying higher fees.
    MempoolFull = 1009,
    /// The same transaction is already pending.
    AlreadyKnown = 1010,
    /// An egress message out of sequence: stale (already landed), a duplicate of a pending one, or ahead.
    EgressSequence = 1011,
    /// An egress message whose origin is unknown or whose signature does not verify.
    BadEgress = 1012,
    /// The requested block, transaction or account does not exist.
    NotFound = 2001,
    /// The node cannot serve this right now (starting up, state busy).
    Unavailable = 3001,
    /// An unexpected internal failure; the node keeps running.
    Internal = 3002,
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The code for a number, if it is one of ours.
    pub fn from_code(code: i32) -> Option<ErrorCode> {
        use ErrorCode::*;
        [
            InvalidParams,
            MalformedTransaction,
            BadSignature,
            WrongChainId,
            TransactionTooLarge,
            NonceUsed,
            NonceGap,
            FeeTooLow,
            CannotPayFee,
            MempoolFull,
            AlreadyKnown,
            EgressSequence,
            BadEgress,
            NotFound,
            Unavailable,
            Internal,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }
}

/// An error a node returns: a typed code and a one-line message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {})", code.code())]
pub struct RpcError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What went wrong, in one line.
    pub message: String,
}

impl RpcError {
    /// A new error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RpcError { code, message: message.into() }
    }
}
