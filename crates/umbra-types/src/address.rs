use bech32::{Bech32m, Hrp};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

const HRP: Hrp = Hrp::parse_unchecked("umbra");

/// An account: the 32-byte ed25519 public key of its owner, or a module's derived id.
///
/// Its text form is bech32m with the human-readable part `umbra` (for example `umbra1qqq…`), so a
/// mistyped character is caught by the checksum instead of sending tokens to a stranger.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Address(pub [u8; 32]);

/// Why a string is not an Umbra address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The bech32m checksum or encoding is wrong.
    #[error("malformed address '{0}': {1}")]
    Malformed(String, String),
    /// The human-readable prefix is not `umbra`.
    #[error("address '{0}' is not an umbra address (prefix must be 'umbra1')")]
    WrongPrefix(String),
    /// The payload is not 32 bytes.
    #[error("address '{0}' has {1} bytes, expected 32")]
    WrongLength(String, usize),
}

impl Address {
    /// The account of a chain module (treasury, staking, ...): nobody holds its key.
    pub fn module(name: &str) -> Address {
        Address(crate::sha256(&[b"umbra/module/", name.as_bytes()]).0)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Encoding 32 bytes under a fixed valid prefix cannot fail.
        match bech32::encode::<Bech32m>(HRP, &self.0) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "0x{}", hex::encode(self.0)),
        }
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (hrp, data) = bech32::decode(s).map_err(|e| AddressError::Malformed(s.to_string(), e.to_string()))?;
        if hrp != HRP {
            return Err(AddressError::WrongPrefix(s.to_string()));
        }
        let len = data.len();
        let arr: [u8; 32] = data.try_into().map_err(|_| AddressError::WrongLength(s.to_string(), len))?;
        Ok(Address(arr))
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_round_trips_through_its_text_form() {
        let a = Address([7; 32]);
        let s = a.to_string();
        assert!(s.starts_with("umbra1"));
        assert_eq!(s.parse::<Address>(), Ok(a));
    }

    #[test]
    fn a_mistyped_address_fails_its_checksum() {
        let s = Address([7; 32]).to_string();
        let mut chars: Vec<char> = s.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'q' { 'p' } else { 'q' };
        let bad: String = chars.into_iter().collect();
        assert!(matches!(bad.parse::<Address>(), Err(AddressError::Malformed(..))));
    }

    #[test]
    fn an_address_with_another_prefix_is_refused() {
        let other = bech32::encode::<Bech32m>(Hrp::parse_unchecked("cosmos"), &[1u8; 32]).expect("valid encoding");
        assert!(matches!(other.parse::<Address>(), Err(AddressError::WrongPrefix(_))));
    }

    #[test]
    fn a_short_address_is_refused() {
        let short = bech32::encode::<Bech32m>(HRP, &[1u8; 20]).expect("valid encoding");
        assert!(matches!(short.parse::<Address>(), Err(AddressError::WrongLength(_, 20))));
    }
}
