//! Talk to an Umbra node from Rust: typed JSON-RPC calls, account reads checked against state proofs, transfers, and a local keystore.
//!
//! # Why it is shaped this way
//!
//! * **The contract lives elsewhere.** Method names, request and response shapes and error codes
//!   come from `umbra-rpc`, which the node serves; this crate only calls them, so the two sides
//!   cannot drift apart. Node errors arrive as [`SdkError::Rpc`] with the contract's typed
//!   [`umbra_rpc::ErrorCode`].
//! * **Do not trust the node for balances.** [`Client::account`] asks for a proof and returns only
//!   what the proof shows, checked with `umbra-state`'s pure verifier against the state root in
//!   the header the node names; a node that states anything else is caught
//!   ([`SdkError::ProofMismatch`]). Checking that header's finality certificate is not done yet.
//! * **No server code.** The crate depends on the shared types, the crypto and the proof verifier
//!   and on `jsonrpsee`'s clients only, never on node or worker code.
//! * **Typed errors, one line each**, so a command line tool can print them as they are.

mod account;
mod client;
mod error;
mod keystore;
mod transfer;

pub use account::{VerifiedAccount, verify_account};
pub use client::{Client, DEFAULT_REQUEST_TIMEOUT, HeadSubscription};
pub use error::SdkError;
pub use keystore::{HOME_ENV, KeyInfo, Keystore, KeystoreError, umbra_home, validate_name};
pub use transfer::{build_transfer, min_fee, transfer};
