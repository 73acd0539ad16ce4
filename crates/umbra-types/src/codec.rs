use borsh::{BorshDeserialize, BorshSerialize};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input is longer than the caller allows.
    #[error("input of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a valid encoding (or have trailing bytes).
    #[error("malformed encoding: {0}")]
    Malformed(String),
}

/// The canonical encoding of a value.
pub fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).unwrap_or_default()
}

/// Decodes exactly one value from `bytes`, refusing inputs over `max` bytes and trailing data.
pub fn decode<T: BorshDeserialize>(bytes: &[u8], max: usize) -> Result<T, CodecError> {
    if bytes.len() > max {
        return Err(CodecError::TooLarge { len: bytes.len(), max });
    }
    borsh::from_slice(bytes).map_err(|e| CodecError::Malformed(e.to_string()))
}

/// How many calls may sit inside one another in one encoding (a multisig proposal of a governance proposal
/// of an agent call is 2); deeper input is refused instead of recursing without bound.
pub(crate) const MAX_CALL_NESTING: u8 = 3;

thread_local! {
    static CALL_DEPTH: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

/// Decodes a call nested in another value (`#[borsh(deserialize_with)]` of every `Box<Call>` field), refusing
/// more than [`MAX_CALL_NESTING`] levels so crafted input cannot exhaust the decoder's stack.
pub(crate) fn nested_call<R: borsh::io::Read>(reader: &mut R) -> Result<Box<crate::Call>, borsh::io::Error> {
    let depth = CALL_DEPTH.with(|d| d.get());
    if depth >= MAX_CALL_NESTING {
        return Err(borsh::io::Error::new(borsh::io::ErrorKind::InvalidData, "calls nested too deeply"));
    }
    CALL_DEPTH.with(|d| d.set(depth + 1));
    let call = crate::Call::deserialize_reader(reader);
    CALL_DEPTH.with(|d| d.set(depth));
    call.map(Box::new)
}
