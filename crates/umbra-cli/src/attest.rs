//! `umbra attest`: offline checks of attestation quotes for operators.
//!
//! `verify` checks a quote (SGX or TDX DCAP, or a dev quote) with Intel's collateral at a given time (the
//! current time by default) and prints what it proves: the TEE kind, the measurement, the report data, the
//! TCB status and advisories. `bench` measures quote verifications per second on one core (also reachable
//! as `umbra bench attest` through [`AttestBenchArgs`] and [`run_bench`]). Nothing here talks to a node:
//! whether a chain would *accept* the quote is its policy's decision.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use umbra_tee::{Collateral, Registers, VerifiedQuote, VerifyError, bench_verify, quote_kind, verify_quote};

/// `umbra attest ...`
#[derive(Args, Debug)]
pub(crate) struct AttestArgs {
    #[command(subcommand)]
    what: AttestCmd,
}

#[derive(Subcommand, Debug)]
enum AttestCmd {
    /// Verify a quote offline and print what it proves.
    Verify(VerifyArgs),
    /// Measure quote verifications per second on one core.
    Bench(AttestBenchArgs),
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// The quote: raw bytes, or hex text.
    #[arg(value_name = "QUOTE_FILE")]
    quote: PathBuf,
    /// Intel collateral for the quote's platform, as QuoteCollateralV3 JSON (needed for SGX and TDX).
    #[arg(long, value_name = "FILE")]
    collateral: Option<PathBuf>,
    /// Verify as of this time (Unix seconds) instead of now, e.g. a block's time.
    #[arg(long, value_name = "UNIX_TIME")]
    at: Option<u64>,
    /// A dev attestation public key (hex) to accept dev quotes from; repeatable.
    #[arg(long = "dev-key", value_name = "HEX")]
    dev_keys: Vec<String>,
}

/// Arguments of `umbra attest bench` (and `umbra bench attest`).
#[derive(Args, Debug)]
pub(crate) struct AttestBenchArgs {
    /// The quote: raw bytes, or hex text.
    #[arg(value_name = "QUOTE_FILE")]
    quote: PathBuf,
    /// Intel collateral for the quote's platform, as QuoteCollateralV3 JSON.
    #[arg(long, value_name = "FILE")]
    collateral: PathBuf,
    /// Verify as of this time (Unix seconds); it must lie inside the collateral's validity window.
    #[arg(long, value_name = "UNIX_TIME")]
    at: Option<u64>,
    /// Verifications to time.
    #[arg(long, default_value_t = 1000)]
    iterations: u32,
}

/// Runs `umbra attest`.
pub(crate) fn run(ctx: &crate::Ctx, args: AttestArgs) -> Result<()> {
    match args.what {
        AttestCmd::Verify(v) => verify(ctx.json, v),
        AttestCmd::Bench(b) => run_bench(ctx, b),
    }
}

/// Runs the verification benchmark and prints verifications/s on one core.
pub(crate) fn run_bench(ctx: &crate::Ctx, args: AttestBenchArgs) -> Result<()> {
    let quote = read_quote(&args.quote)?;
    let collateral = read_collateral(&args.collateral)?;
    let kind = quote_kind(&quote).context("reading the quote")?;
    let (now, explicit) = at_or_now(args.at)?;
    let per_second = bench_verify(&quote, &collateral, now, args.iterations)
        .map_err(|e| explain(e, now, explicit))
        .context("the quote does not verify, so there is nothing to measure")?;
    if ctx.json {
        return print_json(&BenchOutput {
            kind: kind.as_str(),
            iterations: args.iterations,
            verifications_per_second_per_core: per_second,
            ms_per_verification: 1000.0 / per_second,
        });
    }
    println!(
        "{kind} quote: {per_second:.0} verifications/s per core ({:.2} ms each, {} iterations)",
        1000.0 / per_second,
        args.iterations
    );
    Ok(())
}

#[derive(Serialize)]
struct BenchOutput {
    kind: &'static str,
    iterations: u32,
    verifications_per_second_per_core: f64,
    ms_per_verification: f64,
}

#[derive(Serialize)]
struct VerifyOutput {
    kind: &'static str,
    simulated: bool,
    measurement: String,
    report_data: String,
    tcb_status: String,
    advisory_ids: Vec<String>,
    verified_at: u64,
    registers: RegistersOutput,
}

#[derive(Serialize)]
#[serde(untagged)]
enum RegistersOutput {
    Sgx { mr_enclave: String, mr_signer: String, isv_prod_id: u16, isv_svn: u16 },
    Tdx { mr_td: String, rtmr0: String, rtmr1: String, rtmr2: String, rtmr3: String },
    Dev { dev_signer: String },
}

fn verify(json: bool, args: VerifyArgs) -> Result<()> {
    let quote = read_quote(&args.quote)?;
    let collateral = args.collateral.as_deref().map(read_collateral).transpose()?;
    let dev_keys = args
        .dev_keys
        .iter()
        .map(|h| {
            let mut key = [0u8; 32];
            hex::decode_to_slice(h, &mut key).with_context(|| format!("--dev-key {h} is not 64 hex digits"))?;
            Ok(key)
        })
        .collect::<Result<Vec<_>>>()?;
    let (now, explicit) = at_or_now(args.at)?;
    let verified = verify_quote(&quote, collateral.as_ref(), now, &dev_keys).map_err(|e| explain(e, now, explicit))?;
    let out = output(&verified, now);
    if json {
        return print_json(&out);
    }
    let mut rows = vec![
        ("kind", out.kind.to_string()),
        ("simulated", if out.simulated { "YES (dev quote: no hardware protection)" } else { "no" }.to_string()),
        ("measurement", out.measurement),
        ("report data", out.report_data),
        ("tcb status", out.tcb_status),
        ("advisories", if out.advisory_ids.is_empty() { "none".to_string() } else { out.advisory_ids.join(", ") }),
    ];
    match out.registers {
        RegistersOutput::Sgx { mr_enclave, mr_signer, isv_prod_id, isv_svn } => rows.extend([
            ("mrenclave", mr_enclave),
            ("mrsigner", mr_signer),
            ("isv prod id", isv_prod_id.to_string()),
            ("isv svn", isv_svn.to_string()),
        ]),
        RegistersOutput::Tdx { mr_td, rtmr0, rtmr1, rtmr2, rtmr3 } => {
            rows.extend([("mrtd", mr_td), ("rtmr0", rtmr0), ("rtmr1", rtmr1), ("rtmr2", rtmr2), ("rtmr3", rtmr3)])
        }
        RegistersOutput::Dev { dev_signer } => rows.push(("dev signer", dev_signer)),
    }
    rows.push(("verified at", now.to_string()));
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    for (label, value) in rows {
        println!("{label:<width$}  {value}");
    }
    Ok(())
}

fn output(v: &VerifiedQuote, now: u64) -> VerifyOutput {
    let registers = match &v.registers {
        Registers::Sgx { mr_enclave, mr_signer, isv_prod_id, isv_svn } => RegistersOutput::Sgx {
            mr_enclave: hex::encode(mr_enclave),
            mr_signer: hex::encode(mr_signer),
            isv_prod_id: *isv_prod_id,
            isv_svn: *isv_svn,
        },
        Registers::Tdx { mr_td, rtmrs, .. } => RegistersOutput::Tdx {
            mr_td: hex::encode(mr_td),
            rtmr0: hex::encode(rtmrs[0]),
            rtmr1: hex::encode(rtmrs[1]),
            rtmr2: hex::encode(rtmrs[2]),
            rtmr3: hex::encode(rtmrs[3]),
        },
        Registers::Dev { signer } => RegistersOutput::Dev { dev_signer: hex::encode(signer) },
    };
    VerifyOutput {
        kind: v.kind.as_str(),
        simulated: v.is_simulated(),
        measurement: v.measurement.to_hex(),
        report_data: hex::encode(v.report_data),
        tcb_status: v.tcb_status.to_string(),
        advisory_ids: v.advisory_ids.clone(),
        verified_at: now,
        registers,
    }
}

/// The verification time: `--at`, or the clock (and whether it was given explicitly).
fn at_or_now(at: Option<u64>) -> Result<(u64, bool)> {
    match at {
        Some(t) => Ok((t, true)),
        None => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).context("the system clock is before 1970")?;
            Ok((now.as_secs(), false))
        }
    }
}

/// Turns a verification error into the one-line reason, saying plainly when only the collateral's age is
/// the problem at the current time.
fn explain(e: VerifyError, now: u64, explicit: bool) -> anyhow::Error {
    match e {
        VerifyError::CollateralExpired { .. } if !explicit => anyhow::anyhow!(
            "the collateral has expired (checked at the current time, {now}): fetch fresh collateral for this \
             platform, or pass --at UNIX_TIME inside its validity window ({e})"
        ),
        e => anyhow::Error::new(e).context("quote verification failed"),
    }
}

/// Reads a quote file: raw bytes, or hex text (whitespace ignored).
fn read_quote(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading the quote {}", path.display()))?;
    let text: Vec<u8> = bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    if !text.is_empty() && text.iter().all(u8::is_ascii_hexdigit) {
        return hex::decode(&text).with_context(|| format!("{} looks like hex but does not decode", path.display()));
    }
    if bytes.is_empty() {
        bail!("the quote file {} is empty", path.display());
    }
    Ok(bytes)
}

fn read_collateral(path: &Path) -> Result<Collateral> {
    let json = std::fs::read(path).with_context(|| format!("reading the collateral {}", path.display()))?;
    Collateral::from_json(&json).with_context(|| format!("reading the collateral {}", path.display()))
}

fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(value).context("encoding the output as JSON")?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hex_quote_file_is_decoded_and_a_binary_one_read_as_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hex_path = dir.path().join("q.hex");
        std::fs::write(&hex_path, "0300 0200\n").expect("write");
        assert_eq!(read_quote(&hex_path).expect("read"), [3, 0, 2, 0]);
        let bin_path = dir.path().join("q.bin");
        std::fs::write(&bin_path, [3u8, 0, 2, 0, 0xff]).expect("write");
        assert_eq!(read_quote(&bin_path).expect("read"), [3, 0, 2, 0, 0xff]);
    }

    #[test]
    fn expired_collateral_at_the_current_time_is_explained_as_such() {
        let e = VerifyError::CollateralExpired { now: 5, reason: "TCBInfo expired".into() };
        let text = explain(e.clone(), 5, false).to_string();
        assert!(text.contains("collateral has expired") && text.contains("--at"), "{text}");
        let text = format!("{:#}", explain(e, 5, true));
        assert!(text.starts_with("quote verification failed: collateral expired"), "{text}");
    }
}
