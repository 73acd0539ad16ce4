//! Agent wallets and attested outputs: what the chain records when an agent spends from its account, publishes
//! its Ethereum address of a key epoch, or posts a signed result (the egress payloads `AgentTransfer`,
//! `AgentWallet` and `AgentOutput`, all from `Origin::Worker`, a member of the agent's cluster).
//!
//! # Why it is shaped this way
//!
//! - **The Umbra account is the contract account** ([`crate::contracts::contract_account`]): its address comes
//!   from the contract id, so it survives master key rotations, and `umbra agent fund` already pays it. A
//!   worker cannot sign for it; it asks the chain to move tokens (`AgentTransfer`) and the chain checks the
//!   worker's membership, the paused flag, the balance and the owner's rolling daily cap ([`AgentSpend`]).
//! - **The Ethereum key derives from the contract key**, which derives from the master key of a key epoch:
//!   the address changes at a rotation, so the chain keeps one address per epoch ([`AgentEthAddress`]), each
//!   signed by the contract's ed25519 key of that epoch, and refuses a second, different one.
//! - **An attested output carries two signatures over the same content**: the contract's ed25519 key (checked
//!   against the contract's published key of the epoch, [`output_signing_bytes`]) and the agent's Ethereum
//!   key (EIP-191 over `umbra_crypto::attested_output_digest(agent, nonce, output)`, so EVM contracts can
//!   check it with `ecrecover`). The worker cannot know the chain's counter when it signs, so the EVM digest's
//!   `seq` is a 64-bit `nonce` the worker draws at random; the chain refuses a nonce it still holds and
//!   numbers the outputs itself ([`AttestedOutput::index`]).

use crate::contracts::ContractId;
use crate::registry::{KeyEpoch, WorkerId};
use crate::{Address, Amount};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Largest attested output in bytes.
pub const MAX_OUTPUT_BYTES: usize = 4 * 1024;
/// Attested outputs the chain keeps per agent (the latest).
pub const MAX_OUTPUTS_KEPT: usize = 64;
/// Transfers one agent may make in a rolling day (the window's records are kept to sum the cap).
pub const MAX_TRANSFERS_PER_DAY: usize = 256;
/// Ethereum addresses the chain keeps per agent (one per key epoch, the latest).
pub const MAX_ETH_ADDRESSES: usize = 64;
/// Domain tag of the contract's ed25519 signature over an attested output.
pub const OUTPUT_DOMAIN: &[u8] = b"umbra/agent-output/v1";
/// Domain tag of the contract's ed25519 signature over its Ethereum address of a key epoch.
pub const WALLET_DOMAIN: &[u8] = b"umbra/agent-wallet/v1";

/// Blocks in a rolling day: `86_400_000 / target_block_ms` (at least 1). Derived from the chain's parameter,
/// never from a clock, so every node computes the same window.
pub fn blocks_per_day(target_block_ms: u64) -> u64 {
    (86_400_000 / target_block_ms.max(1)).max(1)
}

fn push_part(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u64).to_le_bytes());
    out.extend_from_slice(part);
}

/// The bytes the contract's ed25519 key signs for an attested output: `OUTPUT_DOMAIN`, then length-prefixed
/// chain id, agent, key epoch (u64 LE), nonce (u64 LE) and output.
pub fn output_signing_bytes(
    chain_id: &str,
    agent: &ContractId,
    key_epoch: KeyEpoch,
    nonce: u64,
    output: &[u8],
) -> Vec<u8> {
    let mut out = OUTPUT_DOMAIN.to_vec();
    for part in [chain_id.as_bytes(), agent, &key_epoch.to_le_bytes(), &nonce.to_le_bytes(), output] {
        push_part(&mut out, part);
    }
    out
}

/// The bytes the contract's ed25519 key signs to publish its Ethereum address of a key epoch: `WALLET_DOMAIN`,
/// then length-prefixed chain id, agent, key epoch (u64 LE) and the 20-byte address.
pub fn wallet_signing_bytes(chain_id: &str, agent: &ContractId, key_epoch: KeyEpoch, eth: &[u8; 20]) -> Vec<u8> {
    let mut out = WALLET_DOMAIN.to_vec();
    for part in [chain_id.as_bytes(), agent, &key_epoch.to_le_bytes(), eth] {
        push_part(&mut out, part);
    }
    out
}

/// One transfer an agent made from its account (`StateKey::AgentSpend`).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AgentTransferRecord {
    /// The worker's id for it (what `env.wallet.transfer` returned, hex).
    #[serde(with = "hex16")]
    pub id: [u8; 16],
    /// The worker that asked.
    #[serde(with = "crate::block::hex32")]
    pub worker: WorkerId,
    /// The recipient.
    pub to: Address,
    /// How much.
    #[serde(with = "crate::genesis::amount_str")]
    pub amount: Amount,
    /// Height it landed.
    pub height: u64,
}

/// `agent_wallet`: an agent's transfers of the last rolling day, oldest first (older ones are dropped when a
/// new one lands), what the daily cap is summed over.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AgentSpend {
    /// The transfers, oldest first.
    pub transfers: Vec<AgentTransferRecord>,
}

impl AgentSpend {
    /// What was spent in the day ending at `height` (blocks `height - day + 1 ..= height`).
    pub fn spent_since(&self, height: u64, day: u64) -> Amount {
        let from = height.saturating_sub(day.saturating_sub(1));
        self.transfers.iter().filter(|t| t.height >= from).map(|t| t.amount).fold(0, Amount::saturating_add)
    }
}

/// An agent's Ethereum address of one key epoch (`StateKey::AgentWallets` holds a `Vec` of them, by epoch).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AgentEthAddress {
    /// The key epoch whose contract key derives it.
    pub key_epoch: KeyEpoch,
    /// The address (`umbra_crypto::to_checksum_address` shows it in EIP-55 form).
    #[serde(with = "hex20")]
    pub address: [u8; 20],
    /// The contract's ed25519 signature over [`wallet_signing_bytes`].
    #[serde(with = "crate::tx::hex64")]
    pub signature: [u8; 64],
    /// The worker that published it.
    #[serde(with = "crate::block::hex32")]
    pub worker: WorkerId,
    /// Height it was recorded.
    pub height: u64,
}

/// One attested output as the chain keeps it (`StateKey::AgentOutputs` holds the latest
/// [`MAX_OUTPUTS_KEPT`], oldest first).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AttestedOutput {
    /// The chain's number for it (0 first, per agent).
    pub index: u64,
    /// The worker that posted it.
    #[serde(with = "crate::block::hex32")]
    pub worker: WorkerId,
    /// The key epoch whose keys signed it.
    pub key_epoch: KeyEpoch,
    /// The worker's random nonce (the `seq` of the EVM digest); a decimal string in JSON (it passes 2^53).
    #[serde(with = "u64_str")]
    pub nonce: u64,
    /// The output (UTF-8 text or JSON as the handler gave it).
    #[serde(with = "crate::staking::hex_bytes")]
    pub output: Vec<u8>,
    /// The contract's ed25519 signature over [`output_signing_bytes`].
    #[serde(with = "crate::tx::hex64")]
    pub signature: [u8; 64],
    /// The agent's EIP-191 signature (65 bytes, `r || s || v`) over
    /// `umbra_crypto::attested_output_digest(agent, nonce, output)`.
    #[serde(with = "crate::staking::hex_bytes")]
    pub eth_signature: Vec<u8>,
    /// Height it was recorded.
    pub height: u64,
}

macro_rules! hex_fixed {
    ($name:ident, $n:literal) => {
        pub(crate) mod $name {
            use serde::{Deserialize, Deserializer, Serializer};
            pub(crate) fn serialize<S: Serializer>(v: &[u8; $n], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&hex::encode(v))
            }
            pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; $n], D::Error> {
                let s = String::deserialize(d)?;
                let b = hex::decode(s.trim_start_matches("0x")).map_err(serde::de::Error::custom)?;
                b.try_into().map_err(|_| serde::de::Error::custom(concat!("expected ", $n, " bytes")))
            }
        }
    };
}
/// A `u64` as a decimal string (JavaScript clients lose precision above 2^53).
mod u64_str {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(crate) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

hex_fixed!(hex16, 16);
hex_fixed!(hex20, 20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rolling_day_sums_only_its_own_blocks() {
        let t =
            |amount, height| AgentTransferRecord { id: [0; 16], worker: [0; 32], to: Address([1; 32]), amount, height };
        let s = AgentSpend { transfers: vec![t(5, 10), t(7, 20), t(11, 29)] };
        assert_eq!(s.spent_since(29, 10), 18, "heights 20..=29");
        assert_eq!(s.spent_since(29, 20), 23, "heights 10..=29");
        assert_eq!(s.spent_since(100, 10), 0);
        assert_eq!(blocks_per_day(1_000), 86_400);
        assert_eq!(blocks_per_day(0), 86_400_000);
        assert_eq!(blocks_per_day(u64::MAX), 1);
    }

    #[test]
    fn signing_bytes_bind_every_field() {
        let a = output_signing_bytes("c", &[1; 32], 1, 2, b"x");
        assert_ne!(a, output_signing_bytes("d", &[1; 32], 1, 2, b"x"));
        assert_ne!(a, output_signing_bytes("c", &[2; 32], 1, 2, b"x"));
        assert_ne!(a, output_signing_bytes("c", &[1; 32], 2, 2, b"x"));
        assert_ne!(a, output_signing_bytes("c", &[1; 32], 1, 3, b"x"));
        assert_ne!(a, output_signing_bytes("c", &[1; 32], 1, 2, b"y"));
        assert_ne!(wallet_signing_bytes("c", &[1; 32], 1, &[0; 20]), wallet_signing_bytes("c", &[1; 32], 2, &[0; 20]));
    }

    #[test]
    fn records_round_trip_through_json_with_hex_fields() {
        let e = AgentEthAddress { key_epoch: 1, address: [0xab; 20], signature: [3; 64], worker: [4; 32], height: 9 };
        let json = serde_json::to_string(&e).expect("json");
        assert!(json.contains(&"ab".repeat(20)), "{json}");
        assert_eq!(serde_json::from_str::<AgentEthAddress>(&json).expect("back"), e);
    }
}
