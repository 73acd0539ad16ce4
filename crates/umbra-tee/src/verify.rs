//! Quote verification: DCAP quotes (SGX, TDX) through `dcap-qvl` with supplied collateral and an explicit
//! `now`, dev quotes against the dev keys genesis lists; both end in one typed [`VerifiedQuote`].

use crate::dev;
use crate::types::{Measurement, TcbStatus, TeeKind};
use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::quote::{Quote, Report};
use std::time::Instant;

/// Intel's collateral for one platform (PCK CRLs and chain, TCB info, QE identity, each signed by Intel),
/// as `dcap_qvl::QuoteCollateralV3`. It is authenticated by Intel's signatures, so anyone may supply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collateral(QuoteCollateralV3);

impl Collateral {
    /// Parses the JSON form (the keys of `QuoteCollateralV3`, as Intel's PCS data is usually stored).
    pub fn from_json(json: &[u8]) -> Result<Collateral, VerifyError> {
        serde_json::from_slice(json).map(Collateral).map_err(|e| VerifyError::BadCollateral(e.to_string()))
    }

    /// The JSON form [`Collateral::from_json`] reads.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings and byte vectors cannot fail.
        serde_json::to_vec(&self.0).unwrap_or_default()
    }
}

/// The raw registers behind a [`VerifiedQuote`]'s measurement, for operators and finer policies.
// A `VerifiedQuote` is made once per 1-2 ms verification, so the TDX variant's 336 bytes inline cost
// nothing worth a box (which would make matching on the registers clumsier).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registers {
    /// SGX enclave identity.
    Sgx {
        /// MRENCLAVE: hash of the enclave's code and initial data.
        mr_enclave: [u8; 32],
        /// MRSIGNER: hash of the key that signed the enclave.
        mr_signer: [u8; 32],
        /// The enclave's product id.
        isv_prod_id: u16,
        /// The enclave's security version.
        isv_svn: u16,
    },
    /// TDX trust-domain registers.
    Tdx {
        /// MRTD: the initial TD image.
        mr_td: [u8; 48],
        /// RTMR0-3: runtime-extended measurements (firmware, OS, application).
        rtmrs: [[u8; 48]; 4],
        /// MRCONFIGID: software-defined configuration id.
        mr_config_id: [u8; 48],
        /// MROWNER: software-defined owner id.
        mr_owner: [u8; 48],
    },
    /// A simulated dev quote.
    Dev {
        /// The ed25519 dev attestation key that signed it (one genesis lists).
        signer: [u8; 32],
    },
}

/// A quote whose signatures (and, for hardware quotes, Intel's whole chain and TCB evaluation) verified.
///
/// Verification says only that the quote is genuine; whether it is *acceptable* (kind, TCB status,
/// advisories, measurement allow-list) is [`crate::Policy::check`]'s decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedQuote {
    /// Which TEE produced it.
    pub kind: TeeKind,
    /// The code's measurement (see [`Measurement`] for the per-kind definition).
    pub measurement: Measurement,
    /// The 64 bytes the code chose (see [`crate::report_data`]).
    pub report_data: [u8; 64],
    /// The platform's TCB status at `now` by the collateral; `Simulated` for dev quotes.
    pub tcb_status: TcbStatus,
    /// Intel security advisories that apply to the platform (empty for dev quotes).
    pub advisory_ids: Vec<String>,
    /// The registers behind `measurement`.
    pub registers: Registers,
}

impl VerifiedQuote {
    /// True for dev quotes: nothing about them is hardware-backed.
    pub fn is_simulated(&self) -> bool {
        self.kind.is_simulated()
    }
}

/// Why a quote did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The bytes are not a quote of any kind this crate knows.
    #[error("not a valid quote: {0}")]
    Malformed(String),
    /// The collateral JSON does not parse.
    #[error("collateral is not valid QuoteCollateralV3 JSON: {0}")]
    BadCollateral(String),
    /// A hardware quote was given without collateral.
    #[error("a {0} quote needs collateral (PCK CRLs, TCB info, QE identity) to verify")]
    MissingCollateral(TeeKind),
    /// Some part of the collateral (TCB info, QE identity, a CRL or certificate) expired before `now`.
    #[error("collateral expired at time {now}: {reason}")]
    CollateralExpired {
        /// The time verified at (Unix seconds).
        now: u64,
        /// dcap-qvl's account of what expired.
        reason: String,
    },
    /// Some part of the collateral was issued after `now`.
    #[error("collateral is not yet valid at time {now}: {reason}")]
    CollateralNotYetValid {
        /// The time verified at (Unix seconds).
        now: u64,
        /// dcap-qvl's account.
        reason: String,
    },
    /// No TCB level in the collateral matches the platform: its TCB is older than any Intel lists (or
    /// the collateral belongs to another platform).
    #[error("no matching TCB level: the platform's TCB is not among the levels in the collateral")]
    NoMatchingTcbLevel,
    /// The platform's attestation keys are revoked.
    #[error("the platform's TCB is revoked")]
    Revoked,
    /// Any other DCAP failure: a bad signature, a broken certificate chain, a debug enclave, a
    /// collateral mismatch.
    #[error("DCAP verification failed: {0}")]
    Rejected(String),
    /// A dev quote signed by a key genesis does not list.
    #[error("dev quote signed by {0}, which is not a dev attestation key this chain lists")]
    UnknownDevKey(String),
    /// A dev quote whose signature does not verify.
    #[error("dev quote signature does not verify")]
    BadDevSignature,
}

/// The kind of quote in `quote`, from its header alone (nothing is verified).
pub fn quote_kind(quote: &[u8]) -> Result<TeeKind, VerifyError> {
    if dev::is_dev_quote(quote) {
        return Ok(TeeKind::Dev);
    }
    // DCAP header: version u16, attestation key type u16, TEE type u32 (all little endian).
    let tee_type = quote
        .get(4..8)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| VerifyError::Malformed(format!("{} bytes is too short for a quote header", quote.len())))?;
    match tee_type {
        0x00 => Ok(TeeKind::Sgx),
        0x81 => Ok(TeeKind::Tdx),
        other => Err(VerifyError::Malformed(format!("unknown TEE type {other:#x} in the quote header"))),
    }
}

/// Verifies a quote of any kind: DCAP quotes against `collateral` at `now` (Unix seconds; on chain, the
/// block time), dev quotes against `dev_keys` (the dev attestation keys genesis lists).
///
/// This does not decide acceptance; see [`crate::Policy`], whose `verify` also refuses dev quotes before
/// looking at them when dev is not enabled.
pub fn verify_quote(
    quote: &[u8],
    collateral: Option<&Collateral>,
    now: u64,
    dev_keys: &[[u8; 32]],
) -> Result<VerifiedQuote, VerifyError> {
    match quote_kind(quote)? {
        TeeKind::Dev => dev::verify_dev_quote(quote, dev_keys),
        kind => verify_dcap(quote, collateral.ok_or(VerifyError::MissingCollateral(kind))?, now),
    }
}

/// Verifies an SGX or TDX DCAP quote offline with `dcap-qvl` (ring backend) against Intel's root CA,
/// `collateral` and `now` (Unix seconds). Debug enclaves and TDs are refused.
pub fn verify_dcap(quote: &[u8], collateral: &Collateral, now: u64) -> Result<VerifiedQuote, VerifyError> {
    let report = dcap_qvl::verify::ring::verify(quote, &collateral.0, now).map_err(|e| classify(&e, now))?;
    let tcb_status = TcbStatus::from_name(&report.status)
        .ok_or_else(|| VerifyError::Rejected(format!("unknown TCB status {:?}", report.status)))?;
    let (kind, measurement, report_data, registers) = describe(&report.report);
    Ok(VerifiedQuote { kind, measurement, report_data, tcb_status, advisory_ids: report.advisory_ids, registers })
}

/// Verifications per second of `quote` on the calling thread (one core): the mean over `iterations`
/// full verifications. Fails if the quote does not verify at `now`.
pub fn bench_verify(quote: &[u8], collateral: &Collateral, now: u64, iterations: u32) -> Result<f64, VerifyError> {
    verify_dcap(quote, collateral, now)?;
    let iterations = iterations.max(1);
    let start = Instant::now();
    for _ in 0..iterations {
        verify_dcap(quote, collateral, now)?;
    }
    Ok(f64::from(iterations) / start.elapsed().as_secs_f64().max(f64::MIN_POSITIVE))
}

/// Maps dcap-qvl's (string) errors onto [`VerifyError`]. dcap-qvl reports failures as `anyhow` text, so
/// this matches its messages (`{:#}` prints the whole cause chain); the integration tests pin each class
/// against the real samples.
fn classify(e: &impl std::fmt::Display, now: u64) -> VerifyError {
    let text = format!("{e:#}");
    let lower = text.to_lowercase();
    if text.contains("No matching TCB level") {
        VerifyError::NoMatchingTcbLevel
    } else if text.contains("Revoked") && lower.contains("tcb status") {
        VerifyError::Revoked
    } else if lower.contains("expired") {
        VerifyError::CollateralExpired { now, reason: text }
    } else if lower.contains("in the future") || lower.contains("notvalidyet") {
        VerifyError::CollateralNotYetValid { now, reason: text }
    } else if text.contains("Failed to decode quote") || text.contains("Unsupported DCAP quote version") {
        VerifyError::Malformed(text)
    } else {
        VerifyError::Rejected(text)
    }
}

/// Kind, measurement, report data and registers of a parsed report.
pub(crate) fn describe(report: &Report) -> (TeeKind, Measurement, [u8; 64], Registers) {
    match report {
        Report::SgxEnclave(r) => (
            TeeKind::Sgx,
            Measurement(r.mr_enclave),
            r.report_data,
            Registers::Sgx {
                mr_enclave: r.mr_enclave,
                mr_signer: r.mr_signer,
                isv_prod_id: r.isv_prod_id,
                isv_svn: r.isv_svn,
            },
        ),
        Report::TD10(_) | Report::TD15(_) | Report::TD15Ex(_) => {
            // Every TD report variant starts with the TDX 1.0 report, which holds all registers we use.
            let td = match report {
                Report::TD10(r) => r,
                Report::TD15(r) => &r.base,
                Report::TD15Ex(r) => &r.base.base,
                Report::SgxEnclave(_) => unreachable!("handled above"),
            };
            let rtmrs = [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3];
            (
                TeeKind::Tdx,
                Measurement::tdx(&td.mr_td, &rtmrs),
                td.report_data,
                Registers::Tdx { mr_td: td.mr_td, rtmrs, mr_config_id: td.mr_config_id, mr_owner: td.mr_owner },
            )
        }
    }
}

/// Parses a quote this machine's TEE just produced and checks it is of `kind` and carries `report_data`:
/// a cheap guard against a misconfigured or stale interface (the verifier checks everything else).
pub(crate) fn parse_local_quote(
    bytes: &[u8],
    kind: TeeKind,
    report_data: &[u8; 64],
    source: &str,
) -> Result<(Measurement, Registers), crate::PlatformError> {
    let quote = Quote::parse(bytes)
        .map_err(|e| crate::PlatformError::Malformed(format!("the quote from {source} does not parse: {e}")))?;
    let (got_kind, measurement, got_data, registers) = describe(&quote.report);
    if got_kind != kind {
        return Err(crate::PlatformError::Malformed(format!("{source} returned a {got_kind} quote, expected {kind}")));
    }
    if &got_data != report_data {
        return Err(crate::PlatformError::Malformed(format!(
            "the quote from {source} does not carry the requested report data (another process may be using the interface)"
        )));
    }
    Ok((measurement, registers))
}
