//! Talk to an Umbra node from Rust: typed JSON-RPC calls, account reads checked against state proofs, transfers, and a local keystore.
//!
//! # Why it is shaped this way
//!
//! * **The contract lives elsewhere.** Method names, request and response shapes and error codes
//!   come from `umbra-rpc`, which the node serves; this crate only calls them, so the two sides
//!   cannot drift apart. Node errors arrive as [`SdkError::Rpc`] with the contract's typed
//!   [`umbra_rpc::ErrorCode`].
//! * **Do not trust the node.** [`Client::account`] asks for a proof and returns only what the
//!   proof shows, checked against the state root of the header the node names; a node that
//!   states anything else is caught ([`SdkError::ProofMismatch`]). That header must in turn be
//!   final on the trusted chain: the [`umbra_light`] light client checks its finality certificate
//!   against the committee it follows from the pinned genesis ([`SdkError::NotFinal`] when it
//!   does not verify). [`Client::verified_block`] does the same for a whole block.
//! * **Trust on first use.** The chain is pinned by its genesis block (whose header names the
//!   first committee) the first time the client talks to it; [`Client::with_trust_store`] keeps
//!   the pin in `$UMBRA_HOME/trust/<chain_id>.json` so later runs refuse a node serving another
//!   genesis ([`SdkError::Untrusted`]), and [`Client::with_trusted_genesis`] sets it explicitly.
//! * **No server code.** The crate depends on the shared types, the crypto and the proof verifier
//!   and on `jsonrpsee`'s clients only, never on node or worker code.
//! * **Typed errors, one line each**, so a command line tool can print them as they are.

mod account;
mod agent_wallet;
mod agents;
mod client;
mod contracts;
mod error;
mod keystore;
mod multisig;
mod transfer;
mod trust;

pub use account::{VerifiedAccount, verify_account};
pub use agent_wallet::{VerifiedOutput, agent_eth_addresses, agent_outputs, agent_spend};
pub use agents::{
    AgentAnswer, agent_logs, agent_receipt_commits, agent_receipts, call_agent, call_agent_plain, seal_secret,
};
pub use client::{Client, DEFAULT_REQUEST_TIMEOUT, HeadSubscription, VerifiedBlock};
pub use contracts::{VerifiedQuery, WorkerInfo, query, seal_command, worker_info};
pub use error::SdkError;
pub use keystore::{HOME_ENV, KeyInfo, Keystore, KeystoreError, umbra_home, validate_name};
pub use multisig::{OwnerKind, governance_owner, multisig_address};
pub use transfer::{build_transfer, min_fee, transfer};
pub use trust::trust_dir;
pub use umbra_light::{self, Finality, LightClient, LightError, VerifiedHeader};
