//! Multisig accounts: an address that `threshold` of its `members` control together, with no key of its own.
//!
//! # Why it is shaped this way
//!
//! - **The address is derived, not registered.** [`multisig_address`] hashes the sorted, deduplicated members
//!   and the threshold under [`MULTISIG_DOMAIN`], so anyone can compute it before it is ever used (to fund it,
//!   or to hand it an agent with `TransferAgentOwnership`) and nobody holds a private key for it. The same
//!   members and threshold always give the same address; a different threshold is a different account.
//! - **Any call, as the multisig.** A member proposes an inner [`crate::Call`] (`Call::MultisigPropose`, which
//!   counts as the first approval); other members approve it by number (`Call::MultisigApprove`). The approval
//!   that reaches the threshold runs the inner call in the same transaction with the multisig address as its
//!   signer, through the chain's ordinary dispatch, so everything owner-only (agents, pools, vaults,
//!   candidates) works for a multisig unchanged. Its fee is the approver's; funds the multisig holds move only
//!   through such executed calls.
//! - **Bounded.** At most [`MAX_MEMBERS`] members, [`MAX_PENDING_OPS`] pending operations per multisig, an inner
//!   call of at most [`MAX_CALL_BYTES`], and each operation expires `expires_in` (at most [`MAX_OP_LIFETIME`])
//!   blocks after its proposal. Nesting (an inner multisig call) and inner `Egress` (whose checks happen at
//!   admission, not in dispatch) are refused.

use crate::{Address, Call, Hash, encode, sha256};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Domain tag of a multisig address.
pub const MULTISIG_DOMAIN: &[u8] = b"umbra/multisig/v1";
/// Most members of one multisig.
pub const MAX_MEMBERS: usize = 32;
/// Most operations one multisig may have pending at once (expired ones are dropped first).
pub const MAX_PENDING_OPS: usize = 16;
/// The longest an operation may stay pending, in blocks.
pub const MAX_OP_LIFETIME: u64 = 100_800;
/// Largest encoded inner call.
pub const MAX_CALL_BYTES: usize = 64 * 1024;

/// A pending operation's number within its multisig (0 first, never reused).
pub type OpId = u64;

/// The members sorted ascending with duplicates removed: the form the address is derived from.
pub fn normalize_members(members: &[Address]) -> Vec<Address> {
    let mut m = members.to_vec();
    m.sort();
    m.dedup();
    m
}

/// The members (normalized) if they and the threshold make a valid multisig: 2 to [`MAX_MEMBERS`] distinct
/// members and a threshold of 1 to their number.
pub fn check_members(members: &[Address], threshold: u16) -> Result<Vec<Address>, String> {
    let m = normalize_members(members);
    if m.len() < 2 || m.len() > MAX_MEMBERS {
        return Err(format!("a multisig has 2 to {MAX_MEMBERS} distinct members, not {}", m.len()));
    }
    if threshold == 0 || usize::from(threshold) > m.len() {
        return Err(format!("the threshold must be 1 to {} (the members), not {threshold}", m.len()));
    }
    Ok(m)
}

/// The address of the multisig of `members` (in any order, duplicates ignored) with `threshold`:
/// `SHA-256(MULTISIG_DOMAIN || borsh(sorted members) || threshold as u16 little-endian)`.
pub fn multisig_address(members: &[Address], threshold: u16) -> Address {
    let m = normalize_members(members);
    Address(sha256(&[MULTISIG_DOMAIN, &encode(&m), &threshold.to_le_bytes()]).0)
}

/// Why an inner call cannot be proposed to a multisig, if it cannot.
pub fn check_inner_call(call: &Call) -> Result<(), String> {
    match call {
        Call::MultisigPropose { .. } | Call::MultisigApprove { .. } | Call::MultisigCancel { .. } => {
            Err("a multisig call cannot run another multisig call (no nesting)".into())
        }
        Call::Egress { .. } => Err("egress messages are carried by any account, not through a multisig".into()),
        _ => {
            let size = encode(call).len();
            if size > MAX_CALL_BYTES {
                return Err(format!("the inner call is {size} bytes; at most {MAX_CALL_BYTES}"));
            }
            Ok(())
        }
    }
}

/// `multisig`: a multisig that has been used on chain (recorded by its first proposal), under
/// `StateKey::Multisig(address)`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct MultisigRecord {
    /// Its address.
    pub address: Address,
    /// The members, ascending.
    pub members: Vec<Address>,
    /// Approvals needed.
    pub threshold: u16,
    /// The number the next operation gets.
    pub next_op: OpId,
    /// Pending operations, ascending.
    pub pending: Vec<OpId>,
}

/// `multisig`: an operation waiting for approvals, under `StateKey::MultisigOp`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct MultisigOp {
    /// Its number.
    pub id: OpId,
    /// The call to run as the multisig.
    pub call: Call,
    /// SHA-256 of the call's canonical encoding.
    pub call_hash: Hash,
    /// The member that proposed it (the only one who may cancel it before it expires).
    pub proposer: Address,
    /// Members that approved it, ascending (the proposer included).
    pub approvals: Vec<Address>,
    /// The block that proposed it.
    pub created_at: u64,
    /// The last block at which it can still be approved.
    pub expires_at: u64,
}

/// The hash an operation records of its inner call.
pub fn call_hash(call: &Call) -> Hash {
    sha256(&[b"umbra/multisig-call/v1", &encode(call)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_ignores_member_order_and_duplicates_but_not_the_threshold() {
        let (a, b, c) = (Address([1; 32]), Address([2; 32]), Address([3; 32]));
        let one = multisig_address(&[a, b, c], 2);
        assert_eq!(one, multisig_address(&[c, a, b, a], 2));
        assert_ne!(one, multisig_address(&[a, b, c], 3));
        assert_ne!(one, multisig_address(&[a, b], 2));
        assert_ne!(one, Address::module("multisig"));
    }

    #[test]
    fn members_and_threshold_are_checked() {
        let (a, b) = (Address([1; 32]), Address([2; 32]));
        assert_eq!(check_members(&[b, a, b], 2), Ok(vec![a, b]));
        assert!(check_members(&[a, a], 1).is_err(), "one distinct member");
        assert!(check_members(&[a, b], 0).is_err());
        assert!(check_members(&[a, b], 3).is_err());
        let many: Vec<Address> = (0..=MAX_MEMBERS as u8).map(|i| Address([i; 32])).collect();
        assert!(check_members(&many, 2).is_err());
    }

    #[test]
    fn a_proposal_pays_its_inner_calls_own_charge_up_front() {
        let fees = crate::FeeParams { transfer: 7_000, ..crate::FeeParams::default() };
        let transfer = Call::Transfer { to: Address([1; 32]), amount: 1 };
        let propose = Call::MultisigPropose {
            members: vec![Address([1; 32]), Address([2; 32])],
            threshold: 2,
            call: Box::new(transfer.clone()),
            expires_in: 10,
        };
        assert_eq!(fees.min_fee(100, &propose), fees.min_fee(100, &transfer));
        assert_eq!(fees.min_fee(100, &propose), fees.base + fees.per_byte * 100 + 7_000);
        let approve = Call::MultisigApprove { multisig: Address([1; 32]), op: 0 };
        assert_eq!(fees.min_fee(100, &approve), fees.base + fees.per_byte * 100);
    }

    #[test]
    fn nested_multisig_and_egress_calls_are_refused_as_inner_calls() {
        let nested = Call::MultisigApprove { multisig: Address([1; 32]), op: 0 };
        assert!(check_inner_call(&nested).is_err());
        let transfer = Call::Transfer { to: Address([1; 32]), amount: 1 };
        assert_eq!(check_inner_call(&transfer), Ok(()));
        let big = Call::UploadCode { kind: crate::contracts::CodeKind::JavaScript, code: vec![b'x'; MAX_CALL_BYTES] };
        assert!(check_inner_call(&big).is_err());
    }
}
