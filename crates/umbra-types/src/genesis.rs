use crate::{Address, Amount, DECIMALS, MAX_SUPPLY, SYMBOL, ValidatorKey};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The chain's starting point, read from a JSON file that every node of a network shares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// The chain id every transaction must name (lowercase letters, digits and dashes).
    pub chain_id: String,
    /// Timestamp of the genesis block, in milliseconds since the Unix epoch.
    pub genesis_time_ms: u64,
    /// The native token.
    pub token: TokenInfo,
    /// Initial balances.
    pub allocations: Vec<Allocation>,
    /// The first committee.
    pub validators: Vec<GenesisValidator>,
    /// Chain parameters.
    pub params: Params,
    /// The worker registry: attestation policy, measurement allow-list, collateral, dev administrator.
    #[serde(default)]
    pub registry: crate::registry::RegistryGenesis,
    /// Governance: the technical committee (absent: none, so no fast track).
    #[serde(default)]
    pub governance: crate::governance::GovernanceGenesis,
}

/// The native token's fixed description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenInfo {
    /// Ticker symbol.
    pub symbol: String,
    /// Decimal places (must be 12).
    pub decimals: u32,
    /// Maximum supply in the smallest unit (must be 10^9 whole tokens).
    #[serde(with = "amount_str")]
    pub max_supply: Amount,
}

impl Default for TokenInfo {
    fn default() -> Self {
        TokenInfo { symbol: SYMBOL.into(), decimals: DECIMALS, max_supply: MAX_SUPPLY }
    }
}

/// An initial balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    /// Who receives it.
    pub address: Address,
    /// How much, in the smallest unit.
    #[serde(with = "amount_str")]
    pub amount: Amount,
}

/// A member of the first committee.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    /// A human name for logs and status output.
    pub name: String,
    /// Its ed25519 consensus public key, hex.
    #[serde(with = "hex_key")]
    pub key: ValidatorKey,
}

/// Fee schedule: `base + per_byte * size + per_call[kind]`, all in the smallest unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeParams {
    /// Charged for every transaction.
    #[serde(with = "amount_str")]
    pub base: Amount,
    /// Charged per byte of the encoded signed transaction.
    #[serde(with = "amount_str")]
    pub per_byte: Amount,
    /// Extra for a transfer.
    #[serde(with = "amount_str")]
    pub transfer: Amount,
    /// Share of each fee paid to the block proposer, in basis points; the rest goes to the treasury.
    pub proposer_share_bps: u16,
    /// Extra for a `bond` call (absent in older genesis files: 0).
    #[serde(default, with = "amount_str")]
    pub bond: Amount,
    /// Extra for a `nominate` call (absent in older genesis files: 0).
    #[serde(default, with = "amount_str")]
    pub nominate: Amount,
    /// Extra for an `unbond` call (absent in older genesis files: 0).
    #[serde(default, with = "amount_str")]
    pub unbond: Amount,
    /// Extra for a `withdraw_unbonded` call (absent in older genesis files: 0).
    #[serde(default, with = "amount_str")]
    pub withdraw_unbonded: Amount,
    /// Extra for a `submit_evidence` call (absent in older genesis files: 0, so reporting
    /// misbehaviour costs only the size-based fee).
    #[serde(default, with = "amount_str")]
    pub submit_evidence: Amount,
    /// Extra for `register_worker` and `update_collateral` (quote verification is costly; absent: 0).
    #[serde(default, with = "amount_str")]
    pub register_worker: Amount,
    /// Extra for carrying an `egress` message (absent: 0).
    #[serde(default, with = "amount_str")]
    pub egress: Amount,
}

impl Default for FeeParams {
    fn default() -> Self {
        // 0.001 UMB base, 0.00001 UMB per byte: a ~170-byte transfer costs about 0.0027 UMB.
        FeeParams {
            base: 1_000_000_000,
            per_byte: 10_000_000,
            transfer: 0,
            proposer_share_bps: 5_000,
            bond: 0,
            nominate: 0,
            unbond: 0,
            withdraw_unbonded: 0,
            submit_evidence: 0,
            register_worker: 0,
            egress: 0,
        }
    }
}

impl FeeParams {
    /// The minimum fee for a signed transaction of `size` encoded bytes making `call`. Saturates
    /// instead of overflowing (such a fee can never be paid).
    pub fn min_fee(&self, size: usize, call: &crate::Call) -> Amount {
        let per_call = match call {
            crate::Call::Transfer { .. } => self.transfer,
            crate::Call::Bond { .. } => self.bond,
            crate::Call::Nominate { .. } => self.nominate,
            crate::Call::Unbond { .. } => self.unbond,
            crate::Call::WithdrawUnbonded => self.withdraw_unbonded,
            crate::Call::SubmitEvidence { .. } => self.submit_evidence,
            crate::Call::RegisterWorker { .. } | crate::Call::UpdateCollateral { .. } => self.register_worker,
            crate::Call::Egress { .. } => self.egress,
            crate::Call::Admin { .. }
            | crate::Call::Propose { .. }
            | crate::Call::Vote { .. }
            | crate::Call::Delegate { .. }
            | crate::Call::Undelegate
            | crate::Call::UnlockVotes
            | crate::Call::FastTrack { .. }
            | crate::Call::UploadCode { .. }
            | crate::Call::Instantiate { .. }
            | crate::Call::ContractCommand { .. } => 0,
            // A multisig proposal pays its inner call's own charge up front (the approvals pay base and size).
            crate::Call::MultisigPropose { call, .. } => self.min_fee(0, call).saturating_sub(self.base),
            // Economics calls pay the base and size fee only.
            _ => 0,
        };
        self.base.saturating_add(self.per_byte.saturating_mul(size as Amount)).saturating_add(per_call)
    }
}

/// Chain parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The fee schedule.
    pub fees: FeeParams,
    /// Largest accepted encoded transaction.
    pub max_tx_bytes: u32,
    /// Most transactions in one block.
    pub max_block_txs: u32,
    /// Most transactions the mempool holds; the lowest fees are evicted first.
    pub mempool_max_txs: u32,
    /// Blocks per consensus epoch: epoch `e` is heights `[e * epoch_length, (e + 1) * epoch_length)`,
    /// and the last of them carries the committee of epoch `e + 1` (see [`crate::epoch_of`]).
    pub epoch_length: u64,
    /// Validator staking (absent in older genesis files: [`StakingParams::default`]).
    #[serde(default)]
    pub staking: StakingParams,
    /// The rewards budget (absent in older genesis files: no rewards).
    #[serde(default)]
    pub rewards: RewardParams,
    /// The worker registry (absent: [`crate::registry::RegistryParams::default`]).
    #[serde(default)]
    pub registry: crate::registry::RegistryParams,
    /// Governance periods, deposit, quorum and thresholds (absent:
    /// [`crate::GovernanceParams::default`]).
    #[serde(default)]
    pub governance: crate::GovernanceParams,
    /// Compute economics: budget decay, pools, sessions, heartbeats, slashing (absent:
    /// [`crate::EconomicsParams::default`]).
    #[serde(default)]
    pub economics: crate::EconomicsParams,
    /// Contracts: code size, command size, gas (absent: [`crate::contracts::ContractParams::default`]).
    #[serde(default)]
    pub contracts: crate::contracts::ContractParams,
}

/// The rewards budget: a reserve set aside at genesis (part of the maximum supply that is not
/// allocated) from which a fixed budget per block is paid out. Validators receive
/// `staking.validator_reward_share_bps` of each block's budget (to the proposer's candidate
/// owner); the rest of the budget stays in the reserve for computation rewards, which the compute
/// economics add. Rewards stop when the reserve is exhausted, so the supply never exceeds the
/// maximum.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardParams {
    /// Tokens reserved for rewards at genesis, in the smallest unit.
    #[serde(with = "amount_str")]
    pub reserve: Amount,
    /// The budget of each block, in the smallest unit.
    #[serde(with = "amount_str")]
    pub block_budget: Amount,
}

/// Validator staking: candidates, committee selection, unbonding and slashing.
///
/// Defaults: a committee of 4, a minimum self-bond of 1,000 UMB, an unbonding period of 200,000
/// blocks (two default epochs), 5% slashed for equivocation, 10% of the future rewards budget to
/// validators, at most 1,024 accounts staking toward one candidate and 16 pending unbondings per
/// account and candidate. The committee size cannot default to the number of genesis validators
/// (a `Default` cannot see them): a genesis with more validators than `committee_size` shrinks its
/// committee to `committee_size` at the first epoch boundary, so set it explicitly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StakingParams {
    /// K: the committee is the top K eligible candidates by total stake.
    pub committee_size: u32,
    /// The self-bond a candidate needs to register and to be eligible for the committee.
    #[serde(with = "amount_str")]
    pub min_self_bond: Amount,
    /// Blocks between an `unbond` and the moment its tokens can be withdrawn. Must be at least
    /// `epoch_length`, so stake that backed a committee stays slashable while evidence about that
    /// epoch is accepted.
    pub unbonding_period: u64,
    /// Share of an equivocating validator's stake (self-bond, nominations and slashable
    /// unbondings) moved to the treasury, in basis points.
    pub slash_fraction_bps: u16,
    /// Share of the per-block rewards budget paid to validators, in basis points. Recorded now;
    /// it takes effect when the rewards budget exists (the economics issue). Until then validators
    /// earn only the proposer's share of fees.
    pub validator_reward_share_bps: u16,
    /// Most accounts with stake (bonded or unbonding) toward one candidate.
    pub max_stakers_per_candidate: u32,
    /// Most pending unbonding entries one account may have toward one candidate.
    pub max_unbonding_entries: u32,
}

impl Default for StakingParams {
    fn default() -> Self {
        StakingParams {
            committee_size: 4,
            min_self_bond: 1_000 * crate::UNIT,
            unbonding_period: 200_000,
            slash_fraction_bps: 500,
            validator_reward_share_bps: 1_000,
            max_stakers_per_candidate: 1_024,
            max_unbonding_entries: 16,
        }
    }
}

impl Default for Params {
    fn default() -> Self {
        Params {
            fees: FeeParams::default(),
            max_tx_bytes: 64 * 1024,
            max_block_txs: 10_000,
            mempool_max_txs: 100_000,
            epoch_length: 100_000,
            staking: StakingParams::default(),
            rewards: RewardParams::default(),
            registry: crate::registry::RegistryParams::default(),
            governance: crate::GovernanceParams::default(),
            economics: crate::EconomicsParams::default(),
            contracts: crate::contracts::ContractParams::default(),
        }
    }
}

impl Params {
    /// Checks every rule the parameters of a running chain must follow (what genesis and a
    /// governance `SetParams` are both held to).
    pub fn validate(&self) -> Result<(), GenesisError> {
        let bad = |m: String| Err(GenesisError::Invalid(m));
        let p = self;
        if p.fees.proposer_share_bps > 10_000 {
            return bad("params.fees.proposer_share_bps must be at most 10000".into());
        }
        if !(256..=1024 * 1024).contains(&p.max_tx_bytes) {
            return bad("params.max_tx_bytes must be between 256 and 1048576".into());
        }
        if p.max_block_txs == 0 || p.mempool_max_txs == 0 {
            return bad("params.max_block_txs and params.mempool_max_txs must be positive".into());
        }
        if p.epoch_length < 2 {
            return bad("params.epoch_length must be at least 2".into());
        }
        let st = &p.staking;
        if st.committee_size == 0 {
            return bad("params.staking.committee_size must be at least 1".into());
        }
        if st.unbonding_period < p.epoch_length {
            return bad("params.staking.unbonding_period must be at least params.epoch_length".into());
        }
        if st.slash_fraction_bps > 10_000 || st.validator_reward_share_bps > 10_000 {
            return bad("params.staking basis points must be at most 10000".into());
        }
        if st.max_stakers_per_candidate == 0 || st.max_unbonding_entries == 0 {
            return bad("params.staking.max_stakers_per_candidate and max_unbonding_entries must be positive".into());
        }
        let r = &p.registry;
        if r.attestation_validity_blocks == 0 || r.commitment_interval_blocks == 0 || r.max_block_messages == 0 {
            return bad("params.registry intervals and limits must be positive".into());
        }
        let c = &p.contracts;
        if c.max_code_bytes == 0 || c.max_command_bytes == 0 || c.max_gas_per_command == 0 {
            return bad("params.contracts sizes and max_gas_per_command must be positive".into());
        }
        if let Err(e) = p.governance.check() {
            return bad(e);
        }
        if let Err(e) = p.economics.check() {
            return bad(e);
        }
        Ok(())
    }
}

/// Why a genesis file is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// Not valid genesis JSON.
    #[error("genesis is not valid JSON: {0}")]
    Json(String),
    /// Valid JSON with a value the chain cannot start from.
    #[error("invalid genesis: {0}")]
    Invalid(String),
}

impl Genesis {
    /// Parses and validates a genesis file.
    pub fn from_json(text: &str) -> Result<Genesis, GenesisError> {
        let g: Genesis = serde_json::from_str(text).map_err(|e| GenesisError::Json(e.to_string()))?;
        g.validate()?;
        Ok(g)
    }

    /// The pretty JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks every rule a chain needs to start.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let bad = |m: String| Err(GenesisError::Invalid(m));
        let id_ok = !self.chain_id.is_empty()
            && self.chain_id.len() <= 64
            && self.chain_id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !id_ok {
            return bad(format!("chain_id '{}' must be 1-64 lowercase letters, digits or dashes", self.chain_id));
        }
        if self.token.decimals != DECIMALS {
            return bad(format!("token.decimals must be {DECIMALS}"));
        }
        if self.token.max_supply != MAX_SUPPLY {
            return bad(format!("token.max_supply must be {MAX_SUPPLY} (one billion whole tokens)"));
        }
        let mut seen = BTreeSet::new();
        let mut total: Amount = 0;
        for a in &self.allocations {
            if !seen.insert(a.address) {
                return bad(format!("allocation to {} appears twice", a.address));
            }
            total = match total.checked_add(a.amount) {
                Some(t) if t <= MAX_SUPPLY => t,
                _ => return bad("allocations exceed the maximum supply".into()),
            };
        }
        if total.checked_add(self.params.rewards.reserve).is_none_or(|t| t > MAX_SUPPLY) {
            return bad("allocations plus params.rewards.reserve exceed the maximum supply".into());
        }
        if self.validators.is_empty() {
            return bad("at least one validator is required".into());
        }
        let mut keys = BTreeSet::new();
        for v in &self.validators {
            if !keys.insert(v.key) {
                return bad(format!("validator {} appears twice", v.name));
            }
        }
        self.params.validate()?;
        let mut committee = BTreeSet::new();
        for m in &self.governance.technical_committee {
            if !committee.insert(*m) {
                return bad(format!("governance.technical_committee lists {m} twice"));
            }
        }
        if self.registry.sudo.is_some() && !self.registry.dev_enabled() {
            return bad(
                "registry.sudo is allowed only on a dev chain (one whose policy accepts dev attestation)".into()
            );
        }
        Ok(())
    }
}

/// Serde helpers: amounts as decimal strings in the smallest unit (they exceed JSON's safe integers).
pub(crate) mod amount_str {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(crate) fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            S(String),
            N(u64),
        }
        match Either::deserialize(d)? {
            Either::S(s) => s.parse().map_err(|_| serde::de::Error::custom(format!("'{s}' is not an integer amount"))),
            Either::N(n) => Ok(u128::from(n)),
        }
    }
}

mod hex_key {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(crate) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let b = hex::decode(s.trim_start_matches("0x")).map_err(serde::de::Error::custom)?;
        b.try_into().map_err(|_| serde::de::Error::custom("a validator key is 32 bytes of hex"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Genesis {
        Genesis {
            chain_id: "umbra-dev".into(),
            genesis_time_ms: 0,
            token: TokenInfo::default(),
            allocations: vec![Allocation { address: Address([1; 32]), amount: 10 }],
            validators: vec![GenesisValidator { name: "v0".into(), key: [5; 32] }],
            params: Params::default(),
            registry: crate::registry::RegistryGenesis {
                policy: umbra_tee::Policy { accepted_kinds: [umbra_tee::TeeKind::Dev].into(), ..Default::default() },
                ..Default::default()
            },
            governance: Default::default(),
        }
    }

    #[test]
    fn a_genesis_round_trips_through_json() {
        let g = sample();
        assert_eq!(Genesis::from_json(&g.to_json()), Ok(g));
    }

    #[test]
    fn a_corrupt_genesis_file_gets_a_clear_error() {
        let text = sample().to_json();
        let cut = &text[..text.len() / 2];
        assert!(matches!(Genesis::from_json(cut), Err(GenesisError::Json(_))));
        assert!(matches!(Genesis::from_json("{\"chain_id\": 5}"), Err(GenesisError::Json(_))));
    }

    #[test]
    fn allocations_beyond_the_maximum_supply_are_refused() {
        let mut g = sample();
        g.allocations.push(Allocation { address: Address([2; 32]), amount: MAX_SUPPLY });
        assert!(matches!(g.validate(), Err(GenesisError::Invalid(_))));
    }

    #[test]
    fn a_genesis_written_before_staking_still_parses_with_defaults() {
        let mut json: serde_json::Value = serde_json::from_str(&sample().to_json()).expect("json");
        let params = json["params"].as_object_mut().expect("params");
        params.remove("staking");
        let fees = params["fees"].as_object_mut().expect("fees");
        for k in ["bond", "nominate", "unbond", "withdraw_unbonded", "submit_evidence"] {
            fees.remove(k);
        }
        let g = Genesis::from_json(&json.to_string()).expect("an old genesis parses");
        assert_eq!(g.params.staking, StakingParams::default());
        assert_eq!(g.params.fees, FeeParams::default());
        // A partial staking section fills in the rest.
        json["params"]["staking"] = serde_json::json!({ "committee_size": 7 });
        let g = Genesis::from_json(&json.to_string()).expect("parses");
        assert_eq!(g.params.staking, StakingParams { committee_size: 7, ..StakingParams::default() });
    }

    #[test]
    fn unusable_staking_parameters_are_refused() {
        let bad = [
            StakingParams { committee_size: 0, ..StakingParams::default() },
            StakingParams { unbonding_period: Params::default().epoch_length - 1, ..StakingParams::default() },
            StakingParams { slash_fraction_bps: 10_001, ..StakingParams::default() },
            StakingParams { validator_reward_share_bps: 10_001, ..StakingParams::default() },
            StakingParams { max_stakers_per_candidate: 0, ..StakingParams::default() },
            StakingParams { max_unbonding_entries: 0, ..StakingParams::default() },
        ];
        for staking in bad {
            let mut g = sample();
            g.params.staking = staking.clone();
            assert!(matches!(g.validate(), Err(GenesisError::Invalid(_))), "{staking:?}");
        }
    }

    #[test]
    fn a_genesis_without_governance_parses_and_bad_governance_is_refused() {
        let mut json: serde_json::Value = serde_json::from_str(&sample().to_json()).expect("json");
        json.as_object_mut().expect("object").remove("governance");
        json["params"].as_object_mut().expect("params").remove("governance");
        let g = Genesis::from_json(&json.to_string()).expect("an older genesis parses");
        assert_eq!(g.params.governance, crate::GovernanceParams::default());
        assert!(g.governance.technical_committee.is_empty());
        let mut g = sample();
        g.governance.technical_committee = vec![Address([1; 32]), Address([1; 32])];
        assert!(matches!(g.validate(), Err(GenesisError::Invalid(_))), "a member listed twice");
        let mut g = sample();
        g.params.governance.voting_period = 0;
        assert!(matches!(g.validate(), Err(GenesisError::Invalid(_))));
    }

    #[test]
    fn a_genesis_without_validators_or_with_a_bad_chain_id_is_refused() {
        let mut g = sample();
        g.validators.clear();
        assert!(g.validate().is_err());
        let mut g = sample();
        g.chain_id = "Umbra Dev".into();
        assert!(g.validate().is_err());
    }
}
