//! The chain's attestation policy: which verified quotes it accepts, and with what confidence.

use crate::types::{Measurement, TcbStatus, TeeKind};
use crate::verify::{Collateral, VerifiedQuote, VerifyError, quote_kind, verify_quote};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// How much an accepted quote is worth; a lower level is stronger.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
#[borsh(use_discriminant = true)]
pub enum Confidence {
    /// Level 1: genuine hardware whose TCB is `UpToDate`.
    UpToDate = 1,
    /// Level 2: genuine hardware whose TCB needs mitigations or configuration (or is older) and whose
    /// advisories the policy explicitly allows.
    Mitigated = 2,
    /// Level 3: a simulated dev quote; proves nothing about hardware.
    Simulated = 3,
}

impl Confidence {
    /// The level number: 1 (strongest) to 3 (simulated).
    pub fn level(self) -> u8 {
        self as u8
    }
}

/// Which attestations a chain accepts; lives in genesis and changes by governance.
///
/// Plain data: [`Policy::default`] accepts SGX and TDX at `UpToDate` only, no advisories, no dev, and an
/// empty measurement allow-list (so nothing until measurements are added).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Accepted TEE kinds; dev quotes are accepted only if this holds [`TeeKind::Dev`].
    pub accepted_kinds: BTreeSet<TeeKind>,
    /// Dev attestation public keys (hex) whose dev quotes verify; used only when dev is enabled.
    #[serde(with = "hex_keys")]
    pub dev_keys: BTreeSet<[u8; 32]>,
    /// Accepted TCB statuses of hardware quotes (`Revoked` is never accepted).
    pub accepted_tcb_statuses: BTreeSet<TcbStatus>,
    /// Intel advisory ids tolerated; a hardware quote listing any other is refused.
    pub allowed_advisories: BTreeSet<String>,
    /// The measurement allow-list, for every kind including dev.
    pub measurements: BTreeSet<Measurement>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            accepted_kinds: [TeeKind::Sgx, TeeKind::Tdx].into(),
            dev_keys: BTreeSet::new(),
            accepted_tcb_statuses: [TcbStatus::UpToDate].into(),
            allowed_advisories: BTreeSet::new(),
            measurements: BTreeSet::new(),
        }
    }
}

/// Why a verified quote is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A dev quote, and this chain's policy does not enable dev attestation.
    #[error("simulated (dev) attestation is not enabled by this chain's policy")]
    DevNotEnabled,
    /// A hardware kind the policy does not accept.
    #[error("{0} attestation is not accepted by this chain's policy")]
    KindNotAccepted(TeeKind),
    /// The measurement is not on the allow-list.
    #[error("measurement {0} is not on the allow-list")]
    MeasurementNotAllowed(Measurement),
    /// The TCB status is not accepted.
    #[error("TCB status {0} is not accepted")]
    TcbStatusNotAccepted(TcbStatus),
    /// The platform has an advisory the policy does not allow.
    #[error("advisory {0} is not allowed")]
    AdvisoryNotAllowed(String),
}

/// Why [`Policy::verify`] refused a quote: it did not verify, or it verified and is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    /// The quote is not genuine (or could not be checked).
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The quote is genuine but the policy refuses it.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl Policy {
    /// True if dev (simulated) quotes are accepted.
    pub fn dev_enabled(&self) -> bool {
        self.accepted_kinds.contains(&TeeKind::Dev)
    }

    /// Decides whether a verified quote is acceptable, and how strong it is.
    pub fn check(&self, quote: &VerifiedQuote) -> Result<Confidence, PolicyError> {
        self.check_kind(quote.kind)?;
        if !self.measurements.contains(&quote.measurement) {
            return Err(PolicyError::MeasurementNotAllowed(quote.measurement));
        }
        if quote.kind == TeeKind::Dev {
            return Ok(Confidence::Simulated);
        }
        if quote.tcb_status == TcbStatus::Revoked
            || quote.tcb_status == TcbStatus::Simulated
            || !self.accepted_tcb_statuses.contains(&quote.tcb_status)
        {
            return Err(PolicyError::TcbStatusNotAccepted(quote.tcb_status));
        }
        if let Some(id) = quote.advisory_ids.iter().find(|id| !self.allowed_advisories.contains(*id)) {
            return Err(PolicyError::AdvisoryNotAllowed(id.clone()));
        }
        Ok(if quote.tcb_status == TcbStatus::UpToDate { Confidence::UpToDate } else { Confidence::Mitigated })
    }

    /// Verifies `quote` (DCAP quotes against `collateral` at `now`, dev quotes against
    /// [`Policy::dev_keys`]) and checks it. A dev quote is refused before its signature is looked at when
    /// dev is not enabled.
    pub fn verify(
        &self,
        quote: &[u8],
        collateral: Option<&Collateral>,
        now: u64,
    ) -> Result<(VerifiedQuote, Confidence), AttestationError> {
        self.check_kind(quote_kind(quote)?)?;
        let dev_keys: Vec<[u8; 32]> = self.dev_keys.iter().copied().collect();
        let verified = verify_quote(quote, collateral, now, &dev_keys)?;
        let confidence = self.check(&verified)?;
        Ok((verified, confidence))
    }

    fn check_kind(&self, kind: TeeKind) -> Result<(), PolicyError> {
        if self.accepted_kinds.contains(&kind) {
            Ok(())
        } else if kind == TeeKind::Dev {
            Err(PolicyError::DevNotEnabled)
        } else {
            Err(PolicyError::KindNotAccepted(kind))
        }
    }
}

/// Dev keys as hex strings in JSON.
mod hex_keys {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeSet;

    pub(super) fn serialize<S: Serializer>(keys: &BTreeSet<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(keys.iter().map(hex::encode))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<[u8; 32]>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|h| {
                let mut key = [0u8; 32];
                hex::decode_to_slice(h, &mut key).map(|()| key).map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Registers;

    fn quote(kind: TeeKind, status: TcbStatus, advisories: &[&str]) -> VerifiedQuote {
        VerifiedQuote {
            kind,
            measurement: Measurement([1; 32]),
            report_data: [0; 64],
            tcb_status: status,
            advisory_ids: advisories.iter().map(|a| a.to_string()).collect(),
            registers: Registers::Dev { signer: [0; 32] },
        }
    }

    fn allowing_m1() -> Policy {
        Policy { measurements: [Measurement([1; 32])].into(), ..Policy::default() }
    }

    #[test]
    fn an_up_to_date_allow_listed_quote_has_confidence_one() {
        let c = allowing_m1().check(&quote(TeeKind::Tdx, TcbStatus::UpToDate, &[])).expect("accepted");
        assert_eq!((c, c.level()), (Confidence::UpToDate, 1));
    }

    #[test]
    fn a_quote_needing_mitigations_needs_its_status_and_every_advisory_allowed() {
        let q = quote(TeeKind::Sgx, TcbStatus::SWHardeningNeeded, &["INTEL-SA-1", "INTEL-SA-2"]);
        let mut p = allowing_m1();
        assert_eq!(p.check(&q), Err(PolicyError::TcbStatusNotAccepted(TcbStatus::SWHardeningNeeded)));
        p.accepted_tcb_statuses.insert(TcbStatus::SWHardeningNeeded);
        p.allowed_advisories.insert("INTEL-SA-1".into());
        assert_eq!(p.check(&q), Err(PolicyError::AdvisoryNotAllowed("INTEL-SA-2".into())));
        p.allowed_advisories.insert("INTEL-SA-2".into());
        assert_eq!(p.check(&q).map(Confidence::level), Ok(2));
    }

    #[test]
    fn a_dev_quote_is_refused_unless_dev_is_enabled_and_then_has_confidence_three() {
        let q = quote(TeeKind::Dev, TcbStatus::Simulated, &[]);
        let mut p = allowing_m1();
        assert_eq!(p.check(&q), Err(PolicyError::DevNotEnabled));
        assert!(PolicyError::DevNotEnabled.to_string().contains("not enabled"));
        p.accepted_kinds.insert(TeeKind::Dev);
        assert_eq!(p.check(&q), Ok(Confidence::Simulated));
    }

    #[test]
    fn a_measurement_off_the_allow_list_is_refused() {
        let q = VerifiedQuote { measurement: Measurement([2; 32]), ..quote(TeeKind::Sgx, TcbStatus::UpToDate, &[]) };
        assert_eq!(allowing_m1().check(&q), Err(PolicyError::MeasurementNotAllowed(Measurement([2; 32]))));
    }

    #[test]
    fn a_kind_the_policy_does_not_list_is_refused() {
        let p = Policy { accepted_kinds: [TeeKind::Sgx].into(), ..allowing_m1() };
        let q = quote(TeeKind::Tdx, TcbStatus::UpToDate, &[]);
        assert_eq!(p.check(&q), Err(PolicyError::KindNotAccepted(TeeKind::Tdx)));
    }

    #[test]
    fn revoked_is_never_accepted() {
        let p = Policy { accepted_tcb_statuses: [TcbStatus::Revoked].into(), ..allowing_m1() };
        let q = quote(TeeKind::Sgx, TcbStatus::Revoked, &[]);
        assert_eq!(p.check(&q), Err(PolicyError::TcbStatusNotAccepted(TcbStatus::Revoked)));
    }

    #[test]
    fn a_policy_round_trips_through_json() {
        let p = Policy {
            accepted_kinds: [TeeKind::Dev, TeeKind::Sgx].into(),
            dev_keys: [[0xaa; 32]].into(),
            allowed_advisories: ["INTEL-SA-00615".to_string()].into(),
            ..allowing_m1()
        };
        let json = serde_json::to_string(&p).expect("serialize");
        assert!(json.contains(&"aa".repeat(32)), "{json}");
        assert_eq!(serde_json::from_str::<Policy>(&json).expect("parse"), p);
        assert_eq!(serde_json::from_str::<Policy>("{}").expect("parse"), Policy::default());
    }
}
