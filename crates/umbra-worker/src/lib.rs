//! The Umbra worker: a TEE part that verifies the chain, holds the keys and decides, and a host part that fetches and relays.
//!
//! # How the work is split
//!
//! - [`Enclave`] (the TEE part) does everything that needs trust and nothing that needs the network: it
//!   holds the identity and HPKE keys (sealed with the platform's [`umbra_tee::Sealer`]), follows the chain
//!   with a [`umbra_light::LightClient`] pinned at genesis, verifies each `worker_sync` batch completely
//!   (certificates, parent hashes, message proofs, per-topic sequence numbers, tail proofs) and refuses it
//!   whole on any failure ([`Rejection`]), handles every message deterministically (gatekeeper answers are
//!   byte-identical across gatekeepers), seals its state after every batch and commits to it on chain
//!   every `commitment_interval_blocks` for rollback protection.
//! - [`host::run`] (the host part) is untrusted plumbing: RPC, transactions, registration, retries,
//!   `status.json`. It cannot make the enclave accept anything false; at worst it withholds, which the
//!   enclave notices as a gap or at the tail.
//!
//! - [`snapshot`] moves a cluster's contract state from a member to a joining worker: sealed to the joiner's
//!   attested key, signed by the member, and accepted only if every root equals the one the chain recorded.
//!
//! The protocol is in `docs/worker-protocol.md`.

pub mod agents;
mod contracts;
pub mod econ;
mod enclave;
pub mod host;
pub mod http;
mod keys;
mod platform;
pub mod query;
pub mod schedule;
pub mod snapshot;
mod state;
mod verify;
mod wallet;

#[cfg(test)]
mod contract_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;

pub use enclave::{
    ContractStatus, Enclave, EnclaveConfig, EnclaveError, EnclaveStatus, Platform, Registration, RollbackCheck,
    TailProof,
};
pub use keys::{
    LABEL_CLUSTER_SHARE, LABEL_MASTER_SHARE, cluster_key, cluster_public, cluster_signer, contract_key,
    contract_public, gatekeeper_keypair, master_public, master_x25519_secret, share_aad, share_rng, sign_egress,
};
pub use platform::{DEV_MACHINE_SECRET, PlatformChoiceError, dev_attestation_seed, dev_measurement, open_platform};
pub use verify::Rejection;
