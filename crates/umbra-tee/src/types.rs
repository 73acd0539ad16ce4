//! The vocabulary shared by providers, verification and policy: TEE kinds, measurements, TCB statuses
//! and the report-data binding.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use std::fmt;

/// Which kind of trusted execution environment produced (or claims to have produced) a quote.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
#[borsh(use_discriminant = false)]
#[serde(rename_all = "lowercase")]
pub enum TeeKind {
    /// Simulated attestation signed by a dev key: no hardware protects anything.
    Dev,
    /// Intel SGX enclave (run under Gramine), DCAP quote v3.
    Sgx,
    /// Intel TDX trust domain, DCAP quote v4 or v5.
    Tdx,
}

impl TeeKind {
    /// True only for [`TeeKind::Dev`]: the quote proves nothing about hardware.
    pub fn is_simulated(self) -> bool {
        self == TeeKind::Dev
    }

    /// The stable one-byte code used inside signed dev quotes.
    pub(crate) fn code(self) -> u8 {
        match self {
            TeeKind::Dev => 0,
            TeeKind::Sgx => 1,
            TeeKind::Tdx => 2,
        }
    }

    /// The lowercase name (`dev`, `sgx`, `tdx`).
    pub fn as_str(self) -> &'static str {
        match self {
            TeeKind::Dev => "dev",
            TeeKind::Sgx => "sgx",
            TeeKind::Tdx => "tdx",
        }
    }
}

impl fmt::Display for TeeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The 32-byte digest that names the code running in a TEE; the chain's allow-list holds these.
///
/// One definition per kind, so that every kind fits one allow-list:
/// - **SGX**: MRENCLAVE, verbatim.
/// - **TDX**: `SHA-256("umbra-tee/tdx-measurement/v1" || MRTD || RTMR0 || RTMR1 || RTMR2 || RTMR3)`, each
///   register 48 bytes as in the TD report. MRTD covers the initial TD image (firmware); the RTMRs cover
///   what the firmware and OS measured at boot and after.
/// - **Dev**: the 32 bytes the dev provider was configured with (signed by the dev key, not measured).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Measurement(pub [u8; 32]);

/// Domain tag of the TDX measurement digest.
const TDX_MEASUREMENT_TAG: &[u8] = b"umbra-tee/tdx-measurement/v1";

impl Measurement {
    /// The TDX measurement digest of MRTD and RTMR0-3 (see the type's documentation).
    pub fn tdx(mr_td: &[u8; 48], rtmrs: &[[u8; 48]; 4]) -> Measurement {
        let mut h = Sha256::new();
        h.update(TDX_MEASUREMENT_TAG);
        h.update(mr_td);
        for rtmr in rtmrs {
            h.update(rtmr);
        }
        Measurement(h.finalize().into())
    }

    /// Lowercase hex of the 32 bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Measurement, hex::FromHexError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Measurement(out))
    }
}

impl fmt::Debug for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Measurement({})", self.to_hex())
    }
}

impl fmt::Display for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Measurement {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Measurement {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        Measurement::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// The platform's TCB (trusted computing base) status as Intel's collateral judges it, or `Simulated`
/// for dev quotes, which have no hardware TCB at all.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
pub enum TcbStatus {
    /// Fully patched platform.
    UpToDate,
    /// Patched, but software mitigations (listed in the advisories) are needed.
    SWHardeningNeeded,
    /// Patched, but the platform configuration needs changing.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSWHardeningNeeded,
    /// The platform's TCB is older than the latest.
    OutOfDate,
    /// Out of date and needing configuration.
    OutOfDateConfigurationNeeded,
    /// TDX 1.5: launched on an old TCB, current TCB fine; relaunch the TD.
    TDRelaunchAdvised,
    /// TDX 1.5: as above and needing configuration.
    TDRelaunchAdvisedConfigurationNeeded,
    /// The platform's keys are revoked (never accepted; listed for completeness).
    Revoked,
    /// A dev quote: simulated, no hardware TCB.
    Simulated,
}

impl TcbStatus {
    /// Parses the status name dcap-qvl and Intel's collateral use (`"UpToDate"`, ...).
    pub(crate) fn from_name(name: &str) -> Option<TcbStatus> {
        serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
    }
}

impl fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Domain tag of the report-data binding.
const REPORT_DATA_TAG: &[u8] = b"umbra-tee/report-data/v1";

/// The 64 bytes of report data a worker puts in its quote, binding the quote to its keys and chain.
///
/// `SHA-512(tag || identity_ed25519_pub || x25519_pub || len(chain_id) || chain_id || genesis_hash ||
/// operator)` with `tag = "umbra-tee/report-data/v1"` and `len` a little-endian `u64`; every other field
/// has a fixed size, so the encoding is unambiguous. Dev and hardware quotes use the same binding.
pub fn report_data(
    identity_ed25519_pub: &[u8; 32],
    x25519_pub: &[u8; 32],
    chain_id: &str,
    genesis_hash: &[u8; 32],
    operator: &[u8; 32],
) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(REPORT_DATA_TAG);
    h.update(identity_ed25519_pub);
    h.update(x25519_pub);
    h.update((chain_id.len() as u64).to_le_bytes());
    h.update(chain_id.as_bytes());
    h.update(genesis_hash);
    h.update(operator);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_data_changes_with_every_bound_field() {
        let base = report_data(&[1; 32], &[2; 32], "umbra-1", &[3; 32], &[4; 32]);
        assert_ne!(base, report_data(&[9; 32], &[2; 32], "umbra-1", &[3; 32], &[4; 32]));
        assert_ne!(base, report_data(&[1; 32], &[9; 32], "umbra-1", &[3; 32], &[4; 32]));
        assert_ne!(base, report_data(&[1; 32], &[2; 32], "umbra-2", &[3; 32], &[4; 32]));
        assert_ne!(base, report_data(&[1; 32], &[2; 32], "umbra-1", &[9; 32], &[4; 32]));
        assert_ne!(base, report_data(&[1; 32], &[2; 32], "umbra-1", &[3; 32], &[9; 32]));
        assert_eq!(base, report_data(&[1; 32], &[2; 32], "umbra-1", &[3; 32], &[4; 32]));
    }

    #[test]
    fn a_measurement_round_trips_through_hex_and_json() {
        let m = Measurement([0xab; 32]);
        assert_eq!(Measurement::from_hex(&m.to_hex()), Ok(m));
        let json = serde_json::to_string(&m).expect("serialize");
        assert_eq!(serde_json::from_str::<Measurement>(&json).expect("parse"), m);
        assert!(Measurement::from_hex("abcd").is_err());
    }

    #[test]
    fn the_tdx_measurement_covers_mrtd_and_every_rtmr() {
        let base = Measurement::tdx(&[1; 48], &[[2; 48]; 4]);
        assert_ne!(base, Measurement::tdx(&[9; 48], &[[2; 48]; 4]));
        for i in 0..4 {
            let mut rtmrs = [[2; 48]; 4];
            rtmrs[i] = [9; 48];
            assert_ne!(base, Measurement::tdx(&[1; 48], &rtmrs));
        }
    }
}
