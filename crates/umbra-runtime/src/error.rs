use umbra_types::{Address, Amount, Hash, Origin};

/// A failure of the runtime itself (not of a user's call): state could not be read or is corrupt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The state backend failed.
    #[error("state read failed: {0}")]
    Read(String),
    /// A stored value does not decode: the state is corrupt.
    #[error("corrupt state value for {0}")]
    Corrupt(&'static str),
    /// A value the chain always has is missing (genesis not applied?).
    #[error("missing state value {0}")]
    Missing(&'static str),
    /// Genesis cannot be applied.
    #[error("invalid genesis: {0}")]
    Genesis(String),
}

/// Why a transaction is not admitted to the mempool (or makes a block containing it invalid).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    /// The bytes do not decode.
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// Larger than the chain allows.
    #[error("transaction of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// The signature does not verify.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// Wrong chain id.
    #[error("wrong chain id: expected '{expected}', got '{got}'")]
    WrongChainId {
        /// This chain's id.
        expected: String,
        /// The transaction's.
        got: String,
    },
    /// The fee does not cover the minimum.
    #[error("fee {fee} is below the minimum {min} for this transaction")]
    FeeTooLow {
        /// Offered.
        fee: Amount,
        /// Required.
        min: Amount,
    },
    /// The nonce was already used.
    #[error("nonce {got} already used: account {account} expects {expected}")]
    NonceUsed {
        /// Signer.
        account: Address,
        /// Next valid nonce.
        expected: u64,
        /// Offered.
        got: u64,
    },
    /// The nonce skips ahead.
    #[error("nonce gap: account {account} expects {expected}, got {got}")]
    NonceGap {
        /// Signer.
        account: Address,
        /// Next valid nonce.
        expected: u64,
        /// Offered.
        got: u64,
    },
    /// The signer cannot pay the fee.
    #[error("account {account} cannot pay the fee {fee}: balance {balance}")]
    CannotPayFee {
        /// Signer.
        account: Address,
        /// Fee.
        fee: Amount,
        /// Balance.
        balance: Amount,
    },
    /// An egress message whose origin has no key on chain (an unregistered worker, gatekeepers before
    /// the first master key, or an origin kind the chain does not serve yet).
    #[error("egress origin {origin:?} has no key on chain")]
    EgressUnknownOrigin {
        /// The claimed origin.
        origin: Origin,
    },
    /// An egress message whose signature does not verify under its origin's key.
    #[error("egress signature does not verify under the key of origin {origin:?}")]
    BadEgressSignature {
        /// The claimed origin.
        origin: Origin,
    },
    /// An egress message whose sequence number the chain already consumed (a replay or a redundant copy
    /// that another worker's identical message beat).
    #[error("egress sequence {got} of origin {origin:?} is stale: the chain expects {expected}")]
    EgressStale {
        /// The origin.
        origin: Origin,
        /// The next sequence number the chain accepts.
        expected: u64,
        /// What the message carried.
        got: u64,
    },
    /// An egress message ahead of the chain's next sequence number (the mempool holds no gaps).
    #[error("egress sequence {got} of origin {origin:?} is ahead: the chain expects {expected}")]
    EgressAhead {
        /// The origin.
        origin: Origin,
        /// The next sequence number the chain accepts.
        expected: u64,
        /// What the message carried.
        got: u64,
    },
    /// The state could not be read.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Why a proposed block is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// A transaction in it could never have been admitted.
    #[error("transaction {index} ({hash}) is invalid: {error}")]
    InvalidTransaction {
        /// Position in the block.
        index: usize,
        /// Its hash.
        hash: Hash,
        /// Why.
        error: AdmissionError,
    },
    /// More transactions than allowed.
    #[error("block has {count} transactions, the limit is {max}")]
    TooManyTransactions {
        /// Count.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// The same transaction twice.
    #[error("transaction {0} appears twice")]
    Duplicate(Hash),
    /// A runtime failure.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}
