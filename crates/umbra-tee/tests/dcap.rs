//! Verification of real Intel SGX and TDX quotes (from `../shared/testdata/dcap`), the policy on top, and
//! the providers end to end against mimicked interfaces.

use std::path::PathBuf;
use umbra_tee::{
    AttestationError, Attester, Collateral, Confidence, DevPlatform, GramineSgx, Measurement, Policy, PolicyError,
    Registers, TcbStatus, TdxGuest, TeeKind, VerifyError, bench_verify, quote_kind, report_data, verify_dcap,
    verify_quote,
};

/// 2025-07-01T00:00:00Z: inside the validity window of the SGX and TDX samples' collateral (TCB info and
/// QE identity issued 2025-06-19, next update 2025-07-19; CRLs valid into 2026).
const NOW: u64 = 1_751_328_000;
/// 2025-08-01T00:00:00Z: after the samples' TCB info and QE identity expired.
const AFTER_EXPIRY: u64 = 1_754_006_400;
/// 2025-06-01T00:00:00Z: before the samples' collateral was issued.
const BEFORE_ISSUE: u64 = 1_748_736_000;
/// 2026-03-01T00:00:00Z: inside the outdated TDX sample's collateral window (2026-02-18 to 2026-03-20).
const OUTDATED_NOW: u64 = 1_772_323_200;

fn testdata() -> PathBuf {
    let dir =
        std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
            .join("../../../shared/testdata/dcap");
    assert!(
        dir.is_dir(),
        "the DCAP test data is missing: expected the shared directory beside the workspace at {} \
         (these tests need ../shared/testdata/dcap relative to the workspace root)",
        dir.display()
    );
    dir
}

fn read(name: &str) -> Vec<u8> {
    let path = testdata().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn sample(name: &str) -> (Vec<u8>, Collateral) {
    let collateral = Collateral::from_json(&read(&format!("{name}_collateral.json"))).expect("collateral parses");
    (read(name), collateral)
}

#[test]
fn the_sgx_sample_verifies_with_configuration_and_sw_hardening_needed() {
    let (quote, collateral) = sample("sgx_quote");
    let v = verify_dcap(&quote, &collateral, NOW).expect("the SGX sample verifies");
    assert_eq!(v.kind, TeeKind::Sgx);
    assert!(!v.is_simulated());
    assert_eq!(v.tcb_status, TcbStatus::ConfigurationAndSWHardeningNeeded);
    assert_eq!(v.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    let Registers::Sgx { mr_enclave, .. } = v.registers else { panic!("SGX registers expected: {:?}", v.registers) };
    assert_eq!(v.measurement, Measurement(mr_enclave), "the SGX measurement is MRENCLAVE");
    assert_eq!(quote_kind(&quote), Ok(TeeKind::Sgx));
}

#[test]
fn the_tdx_sample_verifies_up_to_date() {
    let (quote, collateral) = sample("tdx_quote");
    let v = verify_dcap(&quote, &collateral, NOW).expect("the TDX sample verifies");
    assert_eq!(v.kind, TeeKind::Tdx);
    assert_eq!(v.tcb_status, TcbStatus::UpToDate);
    let Registers::Tdx { mr_td, rtmrs, .. } = v.registers else { panic!("TDX registers expected: {:?}", v.registers) };
    assert_eq!(v.measurement, Measurement::tdx(&mr_td, &rtmrs), "the TDX measurement digests MRTD and RTMR0-3");
    assert_eq!(quote_kind(&quote), Ok(TeeKind::Tdx));
}

#[test]
fn a_quote_with_a_flipped_byte_is_rejected() {
    // Offsets in the signed report (byte 112: SGX MRENCLAVE, TDX MRSIGNERSEAM), in the report data (its
    // last byte) and in the quote signature (just after the 4-byte signature-data length).
    for (name, offsets) in
        [("sgx_quote", [112, 48 + 384 - 1, 48 + 384 + 4 + 4]), ("tdx_quote", [112, 48 + 584 - 1, 48 + 584 + 4 + 4])]
    {
        let (quote, collateral) = sample(name);
        for at in offsets {
            let mut bad = quote.clone();
            bad[at] ^= 0x01;
            let err = verify_dcap(&bad, &collateral, NOW).expect_err("a modified quote must not verify");
            assert!(matches!(err, VerifyError::Rejected(_)), "{name} byte {at}: {err}");
        }
    }
}

#[test]
fn a_measurement_not_on_the_allow_list_is_rejected_by_the_policy() {
    let (quote, collateral) = sample("sgx_quote");
    let v = verify_dcap(&quote, &collateral, NOW).expect("verifies");
    let mut policy = Policy {
        accepted_tcb_statuses: [TcbStatus::UpToDate, TcbStatus::ConfigurationAndSWHardeningNeeded].into(),
        allowed_advisories: ["INTEL-SA-00289".to_string(), "INTEL-SA-00615".to_string()].into(),
        measurements: [Measurement([0x42; 32])].into(),
        ..Policy::default()
    };
    assert_eq!(policy.check(&v), Err(PolicyError::MeasurementNotAllowed(v.measurement)));
    let err = policy.verify(&quote, Some(&collateral), NOW).expect_err("refused");
    assert!(err.to_string().contains("not on the allow-list"), "{err}");

    policy.measurements.insert(v.measurement);
    assert_eq!(policy.check(&v), Ok(Confidence::Mitigated));
    let (_, confidence) = policy.verify(&quote, Some(&collateral), NOW).expect("accepted");
    assert_eq!(confidence.level(), 2);
}

#[test]
fn the_sgx_sample_needs_its_advisories_allowed() {
    let (quote, collateral) = sample("sgx_quote");
    let v = verify_dcap(&quote, &collateral, NOW).expect("verifies");
    let policy = Policy {
        accepted_tcb_statuses: [TcbStatus::ConfigurationAndSWHardeningNeeded].into(),
        allowed_advisories: ["INTEL-SA-00289".to_string()].into(),
        measurements: [v.measurement].into(),
        ..Policy::default()
    };
    assert_eq!(policy.check(&v), Err(PolicyError::AdvisoryNotAllowed("INTEL-SA-00615".into())));
    let strict = Policy { measurements: [v.measurement].into(), ..Policy::default() };
    assert_eq!(strict.check(&v), Err(PolicyError::TcbStatusNotAccepted(TcbStatus::ConfigurationAndSWHardeningNeeded)));
}

#[test]
fn an_up_to_date_tdx_quote_on_the_allow_list_has_confidence_one() {
    let (quote, collateral) = sample("tdx_quote");
    let v = verify_dcap(&quote, &collateral, NOW).expect("verifies");
    let policy = Policy { measurements: [v.measurement].into(), ..Policy::default() };
    let (verified, confidence) = policy.verify(&quote, Some(&collateral), NOW).expect("accepted");
    assert_eq!((verified, confidence), (v, Confidence::UpToDate));
}

#[test]
fn collateral_used_after_it_expired_is_rejected() {
    for name in ["sgx_quote", "tdx_quote"] {
        let (quote, collateral) = sample(name);
        let err = verify_dcap(&quote, &collateral, AFTER_EXPIRY).expect_err("expired collateral");
        assert!(matches!(err, VerifyError::CollateralExpired { now: AFTER_EXPIRY, .. }), "{name}: {err}");
        assert!(err.to_string().contains("expired"), "{err}");
    }
}

#[test]
fn collateral_used_before_it_was_issued_is_rejected() {
    let (quote, collateral) = sample("sgx_quote");
    let err = verify_dcap(&quote, &collateral, BEFORE_ISSUE).expect_err("collateral from the future");
    assert!(matches!(err, VerifyError::CollateralNotYetValid { .. }), "{err}");
}

#[test]
fn the_outdated_tdx_quote_is_rejected_for_having_no_matching_tcb_level() {
    let (quote, collateral) = sample("tdx_quote_outdated");
    assert_eq!(quote_kind(&quote), Ok(TeeKind::Tdx));
    assert_eq!(verify_dcap(&quote, &collateral, OUTDATED_NOW), Err(VerifyError::NoMatchingTcbLevel));
}

#[test]
fn collateral_for_another_platform_is_rejected() {
    let (quote, _) = sample("sgx_quote");
    let (_, tdx_collateral) = sample("tdx_quote");
    let err = verify_dcap(&quote, &tdx_collateral, NOW).expect_err("wrong collateral");
    assert!(matches!(err, VerifyError::Rejected(_)), "{err}");
}

#[test]
fn a_hardware_quote_without_collateral_or_with_bad_collateral_is_refused() {
    let (quote, _) = sample("tdx_quote");
    assert_eq!(verify_quote(&quote, None, NOW, &[]), Err(VerifyError::MissingCollateral(TeeKind::Tdx)));
    assert!(matches!(Collateral::from_json(b"{\"pck_crl\": 1}"), Err(VerifyError::BadCollateral(_))));
    assert!(matches!(quote_kind(b"abc"), Err(VerifyError::Malformed(_))));
}

#[test]
fn collateral_round_trips_through_json() {
    let (quote, collateral) = sample("sgx_quote");
    let again = Collateral::from_json(&collateral.to_json()).expect("parses");
    assert_eq!(again, collateral);
    assert!(verify_dcap(&quote, &again, NOW).is_ok());
}

fn dev_platform(dir: &std::path::Path) -> DevPlatform {
    DevPlatform::open(&dir.join("machine-secret"), [9; 32], Measurement([0xde; 32])).expect("dev platform")
}

#[test]
fn a_dev_quote_is_refused_by_a_policy_that_does_not_enable_dev() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dev_platform(dir.path());
    let quote = dev.quote(&report_data(&[1; 32], &[2; 32], "umbra-dev", &[3; 32], &[4; 32])).expect("quote");
    let policy = Policy {
        dev_keys: [dev.attestation_public_key()].into(),
        measurements: [Measurement([0xde; 32])].into(),
        ..Policy::default()
    };
    let err = policy.verify(&quote, None, NOW).expect_err("dev is not enabled");
    assert_eq!(err, AttestationError::Policy(PolicyError::DevNotEnabled));
    assert_eq!(err.to_string(), "simulated (dev) attestation is not enabled by this chain's policy");
}

#[test]
fn a_dev_quote_binding_the_workers_keys_is_accepted_when_genesis_enables_dev() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dev_platform(dir.path());
    let bound = report_data(&[1; 32], &[2; 32], "umbra-dev", &[3; 32], &[4; 32]);
    let quote = dev.quote(&bound).expect("quote");
    let mut policy = Policy {
        accepted_kinds: [TeeKind::Dev].into(),
        measurements: [Measurement([0xde; 32])].into(),
        ..Policy::default()
    };
    // Enabled but the key is not listed.
    let err = policy.verify(&quote, None, NOW).expect_err("unlisted key");
    assert!(matches!(err, AttestationError::Verify(VerifyError::UnknownDevKey(_))), "{err}");
    policy.dev_keys.insert(dev.attestation_public_key());
    let (v, confidence) = policy.verify(&quote, None, NOW).expect("accepted");
    assert!(v.is_simulated());
    assert_eq!(
        (v.kind, v.tcb_status, v.report_data, confidence),
        (TeeKind::Dev, TcbStatus::Simulated, bound, Confidence::Simulated)
    );
}

/// Writes `files` (path relative to root, contents) under a fresh temporary root.
fn mimic(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    for (path, contents) in files {
        let path = root.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write");
    }
    root
}

#[test]
fn the_sgx_provider_returns_gramines_quote_and_it_verifies() {
    let (quote, collateral) = sample("sgx_quote");
    let wanted = verify_dcap(&quote, &collateral, NOW).expect("verifies").report_data;
    let root = mimic(&[
        ("dev/attestation/attestation_type", b"dcap"),
        ("dev/attestation/user_report_data", b""),
        ("dev/attestation/quote", &quote),
    ]);
    let sgx = GramineSgx::with_root(root.path());
    let produced = sgx.quote(&wanted).expect("quote");
    assert_eq!(std::fs::read(root.path().join("dev/attestation/user_report_data")).expect("read"), wanted);
    assert_eq!(verify_dcap(&produced, &collateral, NOW).expect("verifies").report_data, wanted);
    // A quote that does not carry the requested report data is refused at the source.
    let err = sgx.quote(&[0; 64]).expect_err("report data mismatch");
    assert!(err.to_string().contains("report data"), "{err}");
}

#[test]
fn the_tdx_provider_returns_the_configfs_quote_and_it_verifies() {
    let (quote, collateral) = sample("tdx_quote");
    let verified = verify_dcap(&quote, &collateral, NOW).expect("verifies");
    let entry = "sys/kernel/config/tsm/report/umbra-test";
    let root = mimic(&[
        (&format!("{entry}/provider"), b"tdx_guest\n"),
        (&format!("{entry}/inblob"), b""),
        (&format!("{entry}/generation"), b"7\n"),
        (&format!("{entry}/outblob"), &quote),
    ]);
    let tdx = TdxGuest::with_root(root.path()).with_entry("umbra-test");
    let produced = tdx.quote(&verified.report_data).expect("quote");
    assert_eq!(std::fs::read(root.path().join(entry).join("inblob")).expect("read"), verified.report_data);
    assert_eq!(verify_dcap(&produced, &collateral, NOW).expect("verifies"), verified);
    let err = tdx.quote(&[0; 64]).expect_err("report data mismatch");
    assert!(err.to_string().contains("report data"), "{err}");
}

#[test]
#[ignore = "measurement: run with --release -- --ignored --nocapture"]
fn measure_dcap_verifications_per_second() {
    for name in ["sgx_quote", "tdx_quote"] {
        let (quote, collateral) = sample(name);
        let per_second = bench_verify(&quote, &collateral, NOW, 500).expect("verifies");
        println!("{name}: {per_second:.0} verifications/s on one core ({:.2} ms each)", 1000.0 / per_second);
    }
}
