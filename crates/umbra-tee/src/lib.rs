//! Umbra's trusted-execution layer: platform traits to attest, seal and identify the running code, with
//! `dev`, `sgx` (Gramine) and `tdx` (configfs-tsm) providers, and offline verification of the quotes they
//! produce against a chain's policy.
//!
//! # Why it is shaped this way
//!
//! - **Traits with a dev provider.** Worker code sees only [`Identity`], [`Attester`] and [`Sealer`], so
//!   every worker path runs in CI on [`DevPlatform`]. The dev provider is honest about itself: its quotes
//!   are of kind [`TeeKind::Dev`] with TCB status [`TcbStatus::Simulated`], `is_simulated()` is true, and a
//!   [`Policy`] refuses them unless genesis enables dev and lists the dev attestation key.
//! - **Real providers behind an injectable root.** [`GramineSgx`] and [`TdxGuest`] use the real kernel and
//!   Gramine file interfaces; their root directory is a parameter so tests run them against a directory
//!   that mimics the interface, and outside a TEE they fail with [`PlatformError::InterfaceMissing`].
//! - **Verification is pure.** [`verify_quote`] takes the quote, Intel's collateral and `now` (on chain,
//!   the block time; never the clock), so every validator reaches the same verdict. DCAP quotes go through
//!   `dcap-qvl` (ring backend, no network); the result is one typed [`VerifiedQuote`] for every kind.
//! - **Genuine is not acceptable.** Verification only establishes that a quote is genuine; [`Policy::check`]
//!   decides acceptance (kind, TCB status, advisories, measurement allow-list) and grades it with a
//!   [`Confidence`]: 1 = `UpToDate` hardware, 2 = hardware needing mitigations whose advisories the policy
//!   allows, 3 = simulated.
//!
//! # Formats
//!
//! - Measurement: one 32-byte digest for every kind (MRENCLAVE for SGX, a SHA-256 over MRTD and RTMR0-3
//!   for TDX); see [`Measurement`].
//! - Report data: a domain-separated SHA-512 binding a worker's keys, chain and operator; see
//!   [`report_data`].
//! - Sealed blobs: `version (0x01) || nonce (24) || XChaCha20-Poly1305 ciphertext`, the key derived with
//!   HKDF-SHA256 from the platform's sealing secret (dev: a per-machine secret file and the measurement;
//!   SGX: Gramine's MRENCLAVE key), a caller's label authenticated as associated data. TDX has no
//!   hardware sealing key, so [`TdxGuest`] is not a [`Sealer`].
//! - Dev quotes: a fixed 202-byte layout signed with ed25519; see [`DevPlatform`].

mod dev;
mod platform;
mod policy;
mod seal;
mod sgx;
mod tdx;
mod types;
mod verify;

pub use dev::DevPlatform;
pub use platform::{Attester, Identity, PlatformError, Sealer};
pub use policy::{AttestationError, Confidence, Policy, PolicyError};
pub use seal::SealError;
pub use sgx::GramineSgx;
pub use tdx::TdxGuest;
pub use types::{Measurement, TcbStatus, TeeKind, report_data};
pub use verify::{
    Collateral, Registers, VerifiedQuote, VerifyError, bench_verify, quote_kind, verify_dcap, verify_quote,
};
