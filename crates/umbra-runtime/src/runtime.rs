use crate::modules::agent_wallet::{self, AgentWallets};
use crate::modules::agents::{Agents, Change};
use crate::modules::balances::Balances;
use crate::modules::contracts::{self, Contracts};
use crate::modules::economics::{self, Economics};
use crate::modules::governance::{self, Governance};
use crate::modules::mq;
use crate::modules::multisig::{Multisig, Step};
use crate::modules::registry::{self, Registry};
use crate::modules::staking::Staking;
use crate::modules::system::System;
use crate::{AdmissionError, BlockError, ChangeSet, Module, Overlay, RuntimeError, StateRead};
use std::collections::BTreeSet;
use umbra_tee::Policy;
use umbra_types::economics::{Holding, PoolRecord, VaultRecord, WorkerEconRecord};
use umbra_types::governance::{Proposal, ProposalId, SpendRecord, Tally, VoteRecord, VoterRecord};
use umbra_types::registry::{ClusterRecord, KeysRecord};
use umbra_types::state_keys::{CandidateRecord, OffenceRecord, StakeRecord};
use umbra_types::{
    Address, Amount, Call, EvidenceVerifier, Genesis, Hash, Message, Origin, Params, PoolId, Receipt,
    RejectAllEvidence, SignedTransaction, Topic, ValidatorKey, VaultId, WorkerId, WorkerRecord, epoch_of,
};

/// What a block's execution needs from its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockEnv {
    /// The block's height.
    pub height: u64,
    /// The block's timestamp (the only clock the state machine sees).
    pub timestamp_ms: u64,
    /// The proposer's account, which receives its share of the fees.
    pub proposer: Address,
    /// The consensus epoch. The runtime derives the epoch from `height` and `epoch_length`
    /// ([`umbra_types::epoch_of`]) and does not read this; the node checks that they agree.
    pub epoch: u64,
    /// The parent header's hash. Block 1 records it as the genesis hash, which workers bind into
    /// their attestation's report data.
    pub parent: Hash,
}

/// The result of executing a block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockOutcome {
    /// Every state write.
    pub changes: ChangeSet,
    /// One receipt per transaction, in order.
    pub receipts: Vec<Receipt>,
    /// Fees charged in the block.
    pub fees: Amount,
    /// `Some` exactly in the last block of an epoch: the next epoch's committee, in selection order
    /// (stake descending, then key ascending), for the node to put into the header and for
    /// verifiers to compare with it.
    pub next_committee: Option<Vec<ValidatorKey>>,
    /// The chain-to-worker messages the block emitted, in emission order (what `messages_root`
    /// commits to). A failed call's messages are not among them.
    pub messages: Vec<Message>,
}

/// A block assembled by a proposer from candidate transactions.
#[derive(Clone, Debug, Default)]
pub struct BuiltBlock {
    /// The transactions that made it in, in order.
    pub txs: Vec<SignedTransaction>,
    /// Their execution.
    pub outcome: BlockOutcome,
    /// Candidates left out and why (stale nonce, fee no longer payable ...).
    pub rejected: Vec<(Hash, AdmissionError)>,
}

/// The checks that need no state: size, chain id, minimum fee and (optionally) the signature.
pub fn stateless_check(
    chain_id: &str,
    params: &Params,
    stx: &SignedTransaction,
    size: usize,
    check_signature: bool,
) -> Result<(), AdmissionError> {
    let max = params.max_tx_bytes as usize;
    if size > max {
        return Err(AdmissionError::TooLarge { size, max });
    }
    if stx.tx.chain_id != chain_id {
        return Err(AdmissionError::WrongChainId { expected: chain_id.to_string(), got: stx.tx.chain_id.clone() });
    }
    let min = params.fees.min_fee(size, &stx.tx.call);
    if stx.tx.fee < min {
        return Err(AdmissionError::FeeTooLow { fee: stx.tx.fee, min });
    }
    if check_signature {
        umbra_crypto::verify_transaction(stx).map_err(|e| AdmissionError::BadSignature(e.to_string()))?;
    }
    Ok(())
}

/// The state machine: the modules, applied in the order written in this type's methods.
pub struct Runtime {
    system: System,
    balances: Balances,
    staking: Staking,
    registry: Registry,
    contracts: Contracts,
    agents: Agents,
    governance: Governance,
    economics: Economics,
    multisig: Multisig,
    /// Checks equivocation evidence; part of the consensus rules, so every node must use the same.
    verifier: Box<dyn EvidenceVerifier>,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            system: System,
            balances: Balances,
            staking: Staking,
            registry: Registry,
            contracts: Contracts,
            agents: Agents,
            governance: Governance,
            economics: Economics,
            multisig: Multisig,
            verifier: Box::new(RejectAllEvidence),
        }
    }
}

/// What every transaction of a block sees: read once per block.
struct TxCtx<'a> {
    chain_id: &'a str,
    params: &'a Params,
}

impl Runtime {
    /// A runtime with every module and no evidence verifier: every `submit_evidence` call fails
    /// with `TxError::BadEvidence`. Nodes use [`Runtime::with_evidence_verifier`].
    pub fn new() -> Self {
        Runtime::default()
    }

    /// A runtime with every module, checking equivocation evidence with `verifier` (the consensus
    /// binding's implementation in production).
    pub fn with_evidence_verifier(verifier: Box<dyn EvidenceVerifier>) -> Self {
        Runtime { verifier, ..Runtime::default() }
    }

    /// The state changes that create the chain from `genesis` (applied to an empty state).
    pub async fn genesis<S: StateRead>(&self, genesis: &Genesis, empty: &S) -> Result<ChangeSet, RuntimeError> {
        genesis.validate().map_err(|e| RuntimeError::Genesis(e.to_string()))?;
        let mut s = Overlay::new(empty);
        self.system.genesis(genesis, &mut s).await?;
        self.balances.genesis(genesis, &mut s).await?;
        self.staking.genesis(genesis, &mut s).await?;
        self.registry.genesis(genesis, &mut s).await?;
        self.governance.genesis(genesis, &mut s).await?;
        Ok(s.into_changes())
    }

    /// The chain id and current parameters.
    pub async fn chain_params<S: StateRead>(&self, state: &S) -> Result<(String, Params), RuntimeError> {
        let s = Overlay::new(state);
        Ok((self.system.chain(&s).await?.chain_id, self.system.params(&s).await?))
    }

    /// An account's balance and nonce.
    pub async fn account<S: StateRead>(
        &self,
        state: &S,
        who: &Address,
    ) -> Result<umbra_types::state_keys::AccountRecord, RuntimeError> {
        self.balances.account(&Overlay::new(state), who).await
    }

    /// The last applied block's height and time, as recorded in state.
    pub async fn tip<S: StateRead>(&self, state: &S) -> Result<umbra_types::state_keys::Tip, RuntimeError> {
        self.system.tip(&Overlay::new(state)).await
    }

    /// What is left of the rewards reserve.
    pub async fn rewards_reserve<S: StateRead>(&self, state: &S) -> Result<Amount, RuntimeError> {
        self.balances.rewards_reserve(&Overlay::new(state)).await
    }

    /// Total tokens issued: the sum of all balances plus [`Runtime::total_bonded`] plus
    /// [`Runtime::total_unbonding`].
    pub async fn total_issued<S: StateRead>(&self, state: &S) -> Result<Amount, RuntimeError> {
        self.balances.total_issued(&Overlay::new(state)).await
    }

    /// Total stake bonded to candidates.
    pub async fn total_bonded<S: StateRead>(&self, state: &S) -> Result<Amount, RuntimeError> {
        self.staking.total_bonded(&Overlay::new(state)).await
    }

    /// Total stake unbonding (not yet withdrawn).
    pub async fn total_unbonding<S: StateRead>(&self, state: &S) -> Result<Amount, RuntimeError> {
        self.staking.total_unbonding(&Overlay::new(state)).await
    }

    /// The committee of the epoch of the last applied block (the tip recorded in state). After the
    /// last block of epoch `e` this is still epoch `e`'s; the next block's committee is
    /// [`Runtime::next_committee`] then (or `committee_of(epoch_of(tip + 1))` in general).
    pub async fn committee<S: StateRead>(&self, state: &S) -> Result<Vec<ValidatorKey>, RuntimeError> {
        let s = Overlay::new(state);
        let epoch = epoch_of(self.system.tip(&s).await?.height, self.system.params(&s).await?.epoch_length);
        self.staking.committee_of(&s, epoch).await?.ok_or(RuntimeError::Missing("staking committee"))
    }

    /// The committee chosen for the epoch after the tip's, once the last block of the tip's epoch
    /// has been applied; `None` before.
    pub async fn next_committee<S: StateRead>(&self, state: &S) -> Result<Option<Vec<ValidatorKey>>, RuntimeError> {
        let s = Overlay::new(state);
        let epoch = epoch_of(self.system.tip(&s).await?.height, self.system.params(&s).await?.epoch_length);
        self.staking.committee_of(&s, epoch.saturating_add(1)).await
    }

    /// The committee of `epoch`, if it has been chosen (epoch 0 is the genesis validators, in
    /// genesis order).
    pub async fn committee_of<S: StateRead>(
        &self,
        state: &S,
        epoch: u64,
    ) -> Result<Option<Vec<ValidatorKey>>, RuntimeError> {
        self.staking.committee_of(&Overlay::new(state), epoch).await
    }

    /// A candidate's record (also for slashed candidates, whose record is kept).
    pub async fn candidate<S: StateRead>(
        &self,
        state: &S,
        key: &ValidatorKey,
    ) -> Result<Option<CandidateRecord>, RuntimeError> {
        self.staking.candidate(&Overlay::new(state), key).await
    }

    /// The records of the candidates that can still be selected, by key ascending.
    pub async fn candidates<S: StateRead>(&self, state: &S) -> Result<Vec<CandidateRecord>, RuntimeError> {
        let s = Overlay::new(state);
        let mut out = Vec::new();
        for key in self.staking.candidate_keys(&s).await? {
            out.push(self.staking.candidate(&s, &key).await?.ok_or(RuntimeError::Missing("staking candidate"))?);
        }
        Ok(out)
    }

    /// One account's stake (bonded and unbonding) toward one candidate; empty if none.
    pub async fn stake<S: StateRead>(
        &self,
        state: &S,
        key: &ValidatorKey,
        account: &Address,
    ) -> Result<StakeRecord, RuntimeError> {
        self.staking.stake(&Overlay::new(state), key, account).await
    }

    /// Every candidate an account has stake toward, with that stake, by key ascending.
    pub async fn stakes_of<S: StateRead>(
        &self,
        state: &S,
        account: &Address,
    ) -> Result<Vec<(ValidatorKey, StakeRecord)>, RuntimeError> {
        let s = Overlay::new(state);
        let mut out = Vec::new();
        for key in self.staking.account_stakes(&s, account).await? {
            out.push((key, self.staking.stake(&s, &key, account).await?));
        }
        Ok(out)
    }

    /// Whether (and how) the offence of `key` in `epoch`, `view` was punished.
    pub async fn offence<S: StateRead>(
        &self,
        state: &S,
        key: &ValidatorKey,
        epoch: u64,
        view: u64,
    ) -> Result<Option<OffenceRecord>, RuntimeError> {
        self.staking.offence(&Overlay::new(state), key, epoch, view).await
    }

    /// A registered worker's record (also once revoked).
    pub async fn worker<S: StateRead>(&self, state: &S, id: &WorkerId) -> Result<Option<WorkerRecord>, RuntimeError> {
        self.registry.worker(&Overlay::new(state), id).await
    }

    /// Every registered worker's record, by id ascending.
    pub async fn workers<S: StateRead>(&self, state: &S) -> Result<Vec<WorkerRecord>, RuntimeError> {
        let s = Overlay::new(state);
        let mut out = Vec::new();
        for id in self.registry.worker_ids(&s).await? {
            out.push(self.registry.worker(&s, &id).await?.ok_or(RuntimeError::Missing("registry worker"))?);
        }
        Ok(out)
    }

    /// The gatekeepers, the current key epoch and any rotation in progress.
    pub async fn keys<S: StateRead>(&self, state: &S) -> Result<KeysRecord, RuntimeError> {
        self.registry.keys(&Overlay::new(state)).await
    }

    /// Every cluster, by id ascending.
    pub async fn clusters<S: StateRead>(&self, state: &S) -> Result<Vec<ClusterRecord>, RuntimeError> {
        let s = Overlay::new(state);
        let mut out = Vec::new();
        for id in self.registry.cluster_ids(&s).await? {
            out.push(self.registry.cluster(&s, id).await?.ok_or(RuntimeError::Missing("registry cluster"))?);
        }
        Ok(out)
    }

    /// The attestation policy, measurement allow-list included.
    pub async fn policy<S: StateRead>(&self, state: &S) -> Result<Policy, RuntimeError> {
        self.registry.policy(&Overlay::new(state)).await
    }

    /// The SHA-256 hashes of the stored collateral, newest first. Each document's JSON bytes are
    /// stored raw (not encoded) under `StateKey::Collateral(hash)`.
    pub async fn collaterals<S: StateRead>(&self, state: &S) -> Result<Vec<Hash>, RuntimeError> {
        self.registry.collaterals(&Overlay::new(state)).await
    }

    /// The administrative account of the registry, if the chain has one (dev chains only).
    pub async fn registry_sudo<S: StateRead>(&self, state: &S) -> Result<Option<Address>, RuntimeError> {
        self.registry.sudo(&Overlay::new(state)).await
    }

    /// A governance proposal, if one has this number.
    pub async fn gov_proposal<S: StateRead>(
        &self,
        state: &S,
        id: ProposalId,
    ) -> Result<Option<Proposal>, RuntimeError> {
        self.governance.proposal(&Overlay::new(state), id).await
    }

    /// How many proposals were ever submitted (their numbers are `0..count`).
    pub async fn gov_proposal_count<S: StateRead>(&self, state: &S) -> Result<u64, RuntimeError> {
        self.governance.next_id(&Overlay::new(state)).await
    }

    /// A proposal's tally as it stands (final once its voting ended: then equal to `final_tally`).
    pub async fn gov_tally<S: StateRead>(&self, state: &S, id: ProposalId) -> Result<Tally, RuntimeError> {
        let s = Overlay::new(state);
        match self.governance.proposal(&s, id).await? {
            Some(Proposal { final_tally: Some(t), .. }) => Ok(t),
            _ => self.governance.tally(&s, id).await,
        }
    }

    /// One account's vote on one proposal.
    pub async fn gov_vote<S: StateRead>(
        &self,
        state: &S,
        id: ProposalId,
        voter: &Address,
    ) -> Result<Option<VoteRecord>, RuntimeError> {
        self.governance.vote(&Overlay::new(state), id, voter).await
    }

    /// An account's voting tokens: escrow, locks and delegation.
    pub async fn gov_voter<S: StateRead>(&self, state: &S, who: &Address) -> Result<VoterRecord, RuntimeError> {
        self.governance.voter(&Overlay::new(state), who).await
    }

    /// The technical committee, ascending.
    pub async fn gov_committee<S: StateRead>(&self, state: &S) -> Result<Vec<Address>, RuntimeError> {
        self.governance.committee(&Overlay::new(state)).await
    }

    /// The treasury's account.
    pub fn treasury_address(&self) -> Address {
        crate::modules::balances::treasury()
    }

    /// The governance escrow account (deposits and voting tokens taken from balances).
    pub fn governance_escrow(&self) -> Address {
        governance::escrow()
    }

    /// The treasury's payments, oldest first (the last 1,024).
    pub async fn treasury_spends<S: StateRead>(&self, state: &S) -> Result<Vec<SpendRecord>, RuntimeError> {
        self.governance.spends(&Overlay::new(state)).await
    }

    /// A stake pool, if one has this number.
    pub async fn econ_pool<S: StateRead>(&self, state: &S, id: PoolId) -> Result<Option<PoolRecord>, RuntimeError> {
        self.economics.pool(&Overlay::new(state), id).await
    }

    /// Every pool number, ascending.
    pub async fn econ_pool_ids<S: StateRead>(&self, state: &S) -> Result<Vec<PoolId>, RuntimeError> {
        self.economics.pool_ids(&Overlay::new(state)).await
    }

    /// A vault, if one has this number.
    pub async fn econ_vault<S: StateRead>(&self, state: &S, id: VaultId) -> Result<Option<VaultRecord>, RuntimeError> {
        self.economics.vault(&Overlay::new(state), id).await
    }

    /// Every vault number, ascending.
    pub async fn econ_vault_ids<S: StateRead>(&self, state: &S) -> Result<Vec<VaultId>, RuntimeError> {
        self.economics.vault_ids(&Overlay::new(state)).await
    }

    /// A vault's value: its free tokens plus the value of its pool shares.
    pub async fn econ_vault_value<S: StateRead>(&self, state: &S, vault: &VaultRecord) -> Result<Amount, RuntimeError> {
        self.economics.vault_value(&Overlay::new(state), vault).await
    }

    /// One holder's shares of a pool.
    pub async fn econ_pool_holding<S: StateRead>(
        &self,
        state: &S,
        pool: PoolId,
        who: &Address,
    ) -> Result<Holding, RuntimeError> {
        self.economics.pool_holding(&Overlay::new(state), pool, who).await
    }

    /// One holder's shares of a vault.
    pub async fn econ_vault_holding<S: StateRead>(
        &self,
        state: &S,
        vault: VaultId,
        who: &Address,
    ) -> Result<Holding, RuntimeError> {
        self.economics.vault_holding(&Overlay::new(state), vault, who).await
    }

    /// A worker's benchmark, pool and session.
    pub async fn econ_worker<S: StateRead>(&self, state: &S, id: &WorkerId) -> Result<WorkerEconRecord, RuntimeError> {
        self.economics.worker(&Overlay::new(state), id).await
    }

    /// Workers with a session (computing or cooling down), ascending.
    pub async fn econ_sessions<S: StateRead>(&self, state: &S) -> Result<Vec<WorkerId>, RuntimeError> {
        self.economics.sessions(&Overlay::new(state)).await
    }

    /// The per-block rewards budget the next block pays (before the reserve bounds it).
    pub async fn econ_budget<S: StateRead>(&self, state: &S) -> Result<Amount, RuntimeError> {
        let s = Overlay::new(state);
        let params = self.system.params(&s).await?;
        self.economics.block_budget(&s, &params).await
    }

    /// The account holding every pool's and vault's tokens.
    pub fn econ_escrow(&self) -> Address {
        self.economics.escrow_address()
    }

    /// Compute stake on one contract (stake-to-compute), if any was ever staked.
    pub async fn econ_compute_stake<S: StateRead>(
        &self,
        state: &S,
        contract: &[u8; 32],
    ) -> Result<Option<umbra_types::economics::ComputeStakeRecord>, RuntimeError> {
        self.economics.compute_stake(&Overlay::new(state), contract).await
    }

    /// Contracts with compute stake on a cluster and their stake, by contract id ascending.
    pub async fn econ_cluster_stakes<S: StateRead>(
        &self,
        state: &S,
        cluster: u32,
    ) -> Result<Vec<([u8; 32], Amount)>, RuntimeError> {
        let s = Overlay::new(state);
        let mut out = Vec::new();
        for c in self.economics.cluster_stakes(&s, cluster).await? {
            let total = self.economics.compute_stake(&s, &c).await?.map_or(0, |r| r.total);
            out.push((c, total));
        }
        Ok(out)
    }

    /// Compute stake on its way back to its stakers.
    pub async fn econ_unstakes<S: StateRead>(
        &self,
        state: &S,
    ) -> Result<Vec<umbra_types::economics::ComputeUnstake>, RuntimeError> {
        self.economics.unstakes(&Overlay::new(state)).await
    }
    /// Uploaded code's record, if stored.
    pub async fn contract_code<S: StateRead>(
        &self,
        state: &S,
        hash: &Hash,
    ) -> Result<Option<umbra_types::contracts::CodeRecord>, RuntimeError> {
        self.contracts.code(&Overlay::new(state), hash).await
    }

    /// A contract's record, if instantiated.
    pub async fn contract<S: StateRead>(
        &self,
        state: &S,
        id: &umbra_types::contracts::ContractId,
    ) -> Result<Option<umbra_types::contracts::ContractRecord>, RuntimeError> {
        self.contracts.contract(&Overlay::new(state), id).await
    }

    /// A contract's `seq`-th command, if ordered.
    pub async fn contract_command<S: StateRead>(
        &self,
        state: &S,
        id: &umbra_types::contracts::ContractId,
        seq: u64,
    ) -> Result<Option<umbra_types::contracts::CommandRecord>, RuntimeError> {
        self.contracts.command(&Overlay::new(state), id, seq).await
    }

    /// A contract's state-root incidents (the latest 64).
    pub async fn contract_incidents<S: StateRead>(
        &self,
        state: &S,
        id: &umbra_types::contracts::ContractId,
    ) -> Result<Vec<umbra_types::contracts::Incident>, RuntimeError> {
        self.contracts.incidents(&Overlay::new(state), id).await
    }

    /// An agent's record.
    pub async fn agent<S: StateRead>(
        &self,
        state: &S,
        id: &umbra_types::contracts::ContractId,
    ) -> Result<Option<umbra_types::agents::AgentRecord>, RuntimeError> {
        self.agents.agent(&Overlay::new(state), id).await
    }

    /// A multisig's record (members, threshold, pending operation numbers), once it was used on chain.
    pub async fn multisig<S: StateRead>(
        &self,
        state: &S,
        address: &Address,
    ) -> Result<Option<umbra_types::multisig::MultisigRecord>, RuntimeError> {
        self.multisig.record(&Overlay::new(state), address).await
    }

    /// A multisig's pending operation.
    pub async fn multisig_op<S: StateRead>(
        &self,
        state: &S,
        address: &Address,
        op: u64,
    ) -> Result<Option<umbra_types::multisig::MultisigOp>, RuntimeError> {
        self.multisig.op(&Overlay::new(state), address, op).await
    }

    /// An agent's Ethereum address of each key epoch (by epoch ascending).
    pub async fn agent_eth_addresses<S: StateRead>(
        &self,
        state: &S,
        id: &umbra_types::contracts::ContractId,
    ) -> Result<Vec<umbra_types::agent_wallet::AgentEthAddress>, RuntimeError> {
        Ok(Overlay::new(state)
            .get(&umbra_types::state_keys::StateKey::AgentWallets(*id), "agents wallets")
            .await?
            .unwrap_or_default())
    }

    /// An agent's transfers of the last rolling day, as last recorded (older ones are dropped at its next
    /// transfer: filter by height).
    pub async fn agent_spend<S: StateRead>(
        &self,
        state: &S,
        id: &umbra_types::contracts::ContractId,
    ) -> Result<umbra_types::agent_wallet::AgentSpend, RuntimeError> {
        Ok(Overlay::new(state)
            .get(&umbra_types::state_keys::StateKey::AgentSpend(*id), "agents spend")
            .await?
            .unwrap_or_default())
    }

    /// An agent's latest attested outputs (oldest first) and how many it has posted in all.
    pub async fn agent_outputs<S: StateRead>(
        &self,
        state: &S,
        id: &umbra_types::contracts::ContractId,
    ) -> Result<(Vec<umbra_types::agent_wallet::AttestedOutput>, u64), RuntimeError> {
        let s = Overlay::new(state);
        let list =
            s.get(&umbra_types::state_keys::StateKey::AgentOutputs(*id), "agents outputs").await?.unwrap_or_default();
        let count =
            s.get(&umbra_types::state_keys::StateKey::AgentOutputCount(*id), "agents output count").await?.unwrap_or(0);
        Ok((list, count))
    }

    /// The next egress sequence number the chain accepts from `origin`.
    pub async fn egress_next<S: StateRead>(&self, state: &S, origin: &Origin) -> Result<u64, RuntimeError> {
        mq::egress_next(&Overlay::new(state), origin).await
    }

    /// The next sequence number of `topic`: how many messages it has had.
    pub async fn topic_next<S: StateRead>(&self, state: &S, topic: &Topic) -> Result<u64, RuntimeError> {
        mq::topic_next(&Overlay::new(state), topic).await
    }

    /// The genesis block's hash, once block 1 recorded it.
    pub async fn genesis_hash<S: StateRead>(&self, state: &S) -> Result<Option<Hash>, RuntimeError> {
        self.registry.genesis_hash(&Overlay::new(state)).await
    }

    /// The stateful admission check against `state`: exact nonce and a balance covering the fee, and
    /// for an egress message a signature by its origin's key and exactly the origin's next sequence.
    pub async fn check_stateful<S: StateRead>(&self, state: &S, stx: &SignedTransaction) -> Result<(), AdmissionError> {
        let s = Overlay::new(state);
        self.balances.check(&s, stx).await?;
        if let Call::Egress { message } = &stx.tx.call {
            let chain = self.system.chain(&s).await?;
            mq::check_egress(&s, &chain.chain_id, message, 0).await?;
        }
        Ok(())
    }

    /// The egress part of mempool admission: the origin has a key on chain, the signature verifies under
    /// it, and the sequence is not stale and at most `in_flight` past the chain's next one (`in_flight`: how
    /// many consecutive messages of the origin, from the next one on, the mempool already holds, so an
    /// origin can have several messages on their way; the mempool refuses duplicates itself).
    pub async fn check_egress<S: StateRead>(
        &self,
        state: &S,
        message: &umbra_types::SignedEgress,
        in_flight: u64,
    ) -> Result<(), AdmissionError> {
        let s = Overlay::new(state);
        let chain = self.system.chain(&s).await?;
        mq::check_egress(&s, &chain.chain_id, message, in_flight).await
    }

    /// The admission rules that depend on state, against the block being built or executed.
    async fn check_in_block<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        chain_id: &str,
        stx: &SignedTransaction,
    ) -> Result<(), AdmissionError> {
        self.balances.check(s, stx).await?;
        if let Call::Egress { message } = &stx.tx.call {
            mq::check_egress(s, chain_id, message, 0).await?;
        }
        Ok(())
    }

    async fn begin<S: StateRead>(&self, env: &BlockEnv, s: &mut Overlay<'_, S>) -> Result<(), RuntimeError> {
        self.system.begin_block(env, s).await?;
        self.balances.begin_block(env, s).await?;
        self.staking.begin_block(env, s).await?;
        self.registry.begin_block(env, s).await
    }

    /// Ends the block; returns the next committee in the last block of an epoch.
    async fn end<S: StateRead>(
        &self,
        env: &BlockEnv,
        ctx: &TxCtx<'_>,
        s: &mut Overlay<'_, S>,
        fees: Amount,
    ) -> Result<Option<Vec<ValidatorKey>>, RuntimeError> {
        let params = ctx.params;
        self.balances.distribute_fees(env, s, fees).await?;
        // This block's rewards: the decayed budget. The validators' share goes to the proposer's owner
        // first, the rest (bounded by what the reserve still holds) to computing workers (economics).
        let budget = self.economics.block_budget(s, params).await?;
        let validator_reward =
            umbra_types::economics::mul_div(budget, Amount::from(params.staking.validator_reward_share_bps), 10_000);
        let compute_part = budget - validator_reward;
        if validator_reward > 0 {
            let owner = match self.staking.candidate(s, &env.proposer.0).await? {
                Some(c) => c.owner,
                None => env.proposer,
            };
            self.balances.pay_reward(s, &owner, validator_reward).await?;
        }
        self.system.end_block(env, s).await?;
        self.balances.end_block(env, s).await?;
        self.staking.end_block(env, s).await?;
        let cx = registry::Ctx { env, params, chain_id: ctx.chain_id };
        self.registry.end_block_with(&cx, s).await?;
        let compute_reward = compute_part.min(self.balances.rewards_reserve(s).await?);
        self.economics.end_block(&cx, s, &self.balances, compute_reward).await?;
        let owned = governance::Owned { agents: &self.agents, contracts: &self.contracts };
        self.governance.end_block_with(&cx, s, &self.balances, &self.registry, &owned).await?;
        self.staking.select_at_boundary(env, s, params).await
    }

    async fn agent_change<S: StateRead>(
        &self,
        cx: &contracts::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        signer: &Address,
        agent: &umbra_types::contracts::ContractId,
        change: Change<'_>,
    ) -> Result<Result<(), umbra_types::TxError>, RuntimeError> {
        self.agents.change(cx, s, &self.contracts, signer, agent, change).await
    }

    /// Applies one admitted transaction: charge the fee, advance the nonce, run the call. A failing
    /// call's writes are undone; its fee stays paid.
    async fn apply_tx<S: StateRead>(
        &self,
        env: &BlockEnv,
        ctx: &TxCtx<'_>,
        s: &mut Overlay<'_, S>,
        stx: &SignedTransaction,
        index: u32,
    ) -> Result<Receipt, RuntimeError> {
        self.balances.charge(s, stx).await?;
        // An admitted egress consumes its sequence number even if its payload fails.
        if let Call::Egress { message } = &stx.tx.call {
            mq::consume_egress(s, &message.egress);
        }
        s.checkpoint();
        let signer = &stx.tx.signer;
        // A multisig proposal or approval that reaches its threshold runs its inner call as the multisig, in
        // this transaction's checkpoint (the inner call is never itself a multisig call: no recursion).
        let step = match &stx.tx.call {
            Call::MultisigPropose { members, threshold, call, expires_in } => {
                Some(self.multisig.propose(env.height, s, signer, members, *threshold, call, *expires_in).await?)
            }
            Call::MultisigApprove { multisig, op } => {
                Some(self.multisig.approve(env.height, s, signer, multisig, *op).await?)
            }
            _ => None,
        };
        let result = match step {
            None => self.dispatch(env, ctx, s, signer, &stx.tx.call).await?,
            Some(Ok(Step::Pending)) => Ok(()),
            Some(Ok(Step::Execute { multisig, call })) => {
                tracing::info!(target: "multisig.execute", height = env.height, %multisig, call = call.kind(), "threshold reached");
                self.dispatch(env, ctx, s, &multisig, &call).await?
            }
            Some(Err(e)) => Err(e),
        };
        match result {
            Ok(()) => s.commit_checkpoint(),
            Err(_) => s.revert(),
        }
        Ok(Receipt { tx_hash: stx.hash(), height: env.height, index, fee_paid: stx.tx.fee, error: result.err() })
    }

    /// Runs one call for `signer`: every call of the chain, by the module that owns it.
    async fn dispatch<S: StateRead>(
        &self,
        env: &BlockEnv,
        ctx: &TxCtx<'_>,
        s: &mut Overlay<'_, S>,
        signer: &Address,
        call: &Call,
    ) -> Result<Result<(), umbra_types::TxError>, RuntimeError> {
        let (reg, cx) = (&self.registry, registry::Ctx { env, params: ctx.params, chain_id: ctx.chain_id });
        let (params, bal, st) = (ctx.params, &self.balances, &self.staking);
        let (gov, deps) = (&self.governance, governance::Deps { bal, staking: st });
        let econ = &self.economics;
        let ccx = contracts::Ctx { height: env.height, timestamp_ms: env.timestamp_ms, params };
        let result = match call {
            Call::Transfer { to, amount } => bal.transfer(s, signer, to, *amount).await?,
            Call::Bond { validator_key, amount } => st.bond(s, bal, params, signer, validator_key, *amount).await?,
            Call::Nominate { validator_key, amount } => {
                st.nominate(s, bal, params, signer, validator_key, *amount).await?
            }
            Call::Unbond { validator_key, amount } => {
                match self.governance.check_unbond(env, s, st, signer, *amount).await? {
                    Some(e) => Err(e),
                    None => st.unbond(env, s, params, signer, validator_key, *amount).await?,
                }
            }
            Call::WithdrawUnbonded => st.withdraw_unbonded(env, s, bal, signer).await?,
            Call::SubmitEvidence { evidence } => {
                st.submit_evidence(env, s, bal, params, ctx.chain_id, self.verifier.as_ref(), evidence).await?
            }
            Call::RegisterWorker { identity, x25519, quote } => {
                reg.register_worker(&cx, s, signer, identity, x25519, quote).await?
            }
            Call::UpdateCollateral { collateral } => reg.update_collateral(params, s, collateral).await?,
            Call::Egress { message } if economics::is_economics_payload(&message.egress.payload) => {
                econ.egress(env, s, reg, params, &message.egress).await?
            }
            Call::Egress { message } if Contracts::handles(&message.egress.payload) => {
                let e = &message.egress;
                self.contracts.egress(&ccx, s, bal, &e.origin, e.seq, &e.payload).await?
            }
            Call::Egress { message } if Agents::handles(&message.egress.payload) => {
                let e = &message.egress;
                self.agents.egress(&ccx, s, &self.contracts, &e.origin, &e.payload).await?
            }
            Call::Egress { message } if AgentWallets::handles(&message.egress.payload) => {
                let e = &message.egress;
                let deps = agent_wallet::Deps {
                    agents: &self.agents,
                    contracts: &self.contracts,
                    balances: bal,
                    chain_id: ctx.chain_id,
                };
                AgentWallets.egress(&ccx, s, &deps, &e.origin, &e.payload).await?
            }
            Call::Egress { message } => reg.egress(&cx, s, &message.egress).await?,
            Call::Admin { call } => reg.admin(&cx, s, signer, call).await?,
            Call::Propose { calls, deposit, description } => {
                gov.propose(env, s, bal, params, signer, calls, *deposit, description).await?
            }
            Call::Vote { proposal, choice, amount, conviction, spam } => {
                gov.cast(env, s, &deps, signer, *proposal, *choice, *amount, *conviction, *spam).await?
            }
            Call::Delegate { to, amount, conviction } => {
                gov.delegate(env, s, &deps, signer, to, *amount, *conviction).await?
            }
            Call::Undelegate => gov.undelegate(env, s, params, signer).await?,
            Call::UnlockVotes => gov.unlock(env, s, &deps, signer).await?,
            Call::FastTrack { proposal } => gov.fast_track(env, s, params, signer, *proposal).await?,
            Call::CreatePool { commission_bps, cap, allow } => {
                econ.create_pool(s, signer, *commission_bps, *cap, allow.clone()).await?
            }
            Call::PoolAddWorker { pool, worker } => econ.add_worker(env, s, reg, params, signer, *pool, worker).await?,
            Call::PoolContribute { pool, amount } => econ.contribute(s, bal, params, signer, *pool, *amount).await?,
            Call::PoolWithdraw { pool, shares } => econ.withdraw(env, s, bal, params, signer, *pool, *shares).await?,
            Call::StartComputing { worker, stake } => econ.start(env, s, reg, params, signer, worker, *stake).await?,
            Call::StopComputing { worker } => econ.stop(env, s, params, signer, worker).await?,
            Call::CreateVault { auto } => econ.create_vault(s, signer, *auto).await?,
            Call::VaultContribute { vault, amount } => {
                econ.vault_contribute(s, bal, params, signer, *vault, *amount).await?
            }
            Call::VaultWithdraw { vault, shares } => {
                econ.vault_withdraw(env, s, bal, params, signer, *vault, *shares).await?
            }
            Call::VaultAllocate { vault, pool, amount } => {
                econ.vault_allocate(s, params, signer, *vault, *pool, *amount).await?
            }
            Call::VaultDeallocate { vault, pool, shares } => {
                econ.vault_deallocate(env, s, bal, params, signer, *vault, *pool, *shares).await?
            }
            Call::ReportEquivocation { first, second } => {
                let deps = economics::Deps { bal, reg };
                econ.report_equivocation(&cx, s, &deps, first, second).await?
            }
            Call::UploadCode { kind, code } => self.contracts.upload(&ccx, s, signer, *kind, code).await?,
            Call::Instantiate { code_hash, cluster, salt, args } => {
                self.contracts.instantiate(&ccx, s, signer, code_hash, *cluster, salt, args).await?
            }
            Call::ContractCommand { contract, key_epoch, gas_limit, sealed } => {
                self.contracts.command_call(&ccx, s, bal, signer, contract, *key_epoch, *gas_limit, sealed).await?
            }
            Call::DeployAgent { code, cluster, salt, policy } => {
                self.agents.deploy(&ccx, s, &self.contracts, signer, code, *cluster, salt, policy).await?
            }
            Call::UpgradeAgent { agent, code } => {
                self.agent_change(&ccx, s, signer, agent, Change::Upgrade(code)).await?
            }
            Call::PauseAgent { agent } => self.agent_change(&ccx, s, signer, agent, Change::Paused(true)).await?,
            Call::ResumeAgent { agent } => self.agent_change(&ccx, s, signer, agent, Change::Paused(false)).await?,
            Call::SetAgentPolicy { agent, policy } => {
                self.agent_change(&ccx, s, signer, agent, Change::Policy(policy)).await?
            }
            Call::SetAgentSecret { agent, name, key_epoch, sealed } => {
                let change = Change::SetSecret { name, key_epoch: *key_epoch, sealed };
                self.agent_change(&ccx, s, signer, agent, change).await?
            }
            Call::RemoveAgentSecret { agent, name } => {
                self.agent_change(&ccx, s, signer, agent, Change::RemoveSecret(name)).await?
            }
            Call::TransferAgentOwnership { agent, new_owner } => {
                self.agent_change(&ccx, s, signer, agent, Change::Owner(new_owner)).await?
            }
            Call::StakeCompute { contract, amount } => {
                econ.stake_compute(s, bal, params, signer, contract, *amount).await?
            }
            Call::UnstakeCompute { contract, amount } => {
                econ.unstake_compute(env, s, params, signer, contract, *amount).await?
            }
            Call::PoolReclaim { pool, worker } => econ.reclaim(env, s, reg, signer, *pool, worker).await?,
            Call::VaultSetMode { vault, auto } => econ.vault_set_mode(s, signer, *vault, *auto).await?,
            Call::ReportStateRootDisagreement { message } => {
                let deps = economics::Deps { bal, reg };
                econ.report_state_root(&cx, s, &deps, message).await?
            }
            Call::MultisigCancel { multisig, op } => self.multisig.cancel(env.height, s, signer, multisig, *op).await?,
            // Handled in `apply_tx`; an inner call is never a multisig call (refused at proposal).
            Call::MultisigPropose { .. } | Call::MultisigApprove { .. } => {
                Err(umbra_types::TxError::MultisigPrecondition {
                    reason: "a multisig call cannot run another multisig call (no nesting)".into(),
                })
            }
        };
        Ok(result)
    }

    /// Executes a proposed block. Any transaction that could not have been admitted (bad signature
    /// when `check_signatures`, wrong chain, too large, fee too low, wrong nonce, unpayable fee) makes
    /// the whole block invalid.
    pub async fn execute_block<S: StateRead>(
        &self,
        state: &S,
        env: &BlockEnv,
        txs: &[SignedTransaction],
        check_signatures: bool,
    ) -> Result<BlockOutcome, BlockError> {
        let mut s = Overlay::new(state);
        let chain = self.system.chain(&s).await?;
        let params = self.system.params(&s).await?;
        if txs.len() > params.max_block_txs as usize {
            return Err(BlockError::TooManyTransactions { count: txs.len(), max: params.max_block_txs as usize });
        }
        if check_signatures && let Err((index, e)) = umbra_crypto::verify_transactions(txs) {
            return Err(BlockError::InvalidTransaction {
                index,
                hash: txs[index].hash(),
                error: AdmissionError::BadSignature(e.to_string()),
            });
        }
        self.begin(env, &mut s).await?;
        let ctx = TxCtx { chain_id: &chain.chain_id, params: &params };
        let mut seen = BTreeSet::new();
        let mut receipts = Vec::with_capacity(txs.len());
        let mut fees: Amount = 0;
        for (index, stx) in txs.iter().enumerate() {
            let hash = stx.hash();
            if !seen.insert(hash) {
                return Err(BlockError::Duplicate(hash));
            }
            let invalid = |error| BlockError::InvalidTransaction { index, hash, error };
            stateless_check(&chain.chain_id, &params, stx, stx.to_bytes().len(), false).map_err(invalid)?;
            self.check_in_block(&s, &chain.chain_id, stx).await.map_err(invalid)?;
            fees = fees.saturating_add(stx.tx.fee);
            receipts.push(self.apply_tx(env, &ctx, &mut s, stx, index as u32).await?);
        }
        let next_committee = self.end(env, &ctx, &mut s, fees).await?;
        let (changes, messages) = s.into_parts();
        Ok(BlockOutcome { changes, receipts, fees, next_committee, messages })
    }

    /// Assembles a block from `candidates` (already signature-checked at admission), in order,
    /// leaving out those that are no longer valid against `state` and stopping at the block limit.
    pub async fn build_block<S: StateRead>(
        &self,
        state: &S,
        env: &BlockEnv,
        candidates: Vec<SignedTransaction>,
    ) -> Result<BuiltBlock, RuntimeError> {
        let mut s = Overlay::new(state);
        let chain = self.system.chain(&s).await?;
        let params = self.system.params(&s).await?;
        self.begin(env, &mut s).await?;
        let ctx = TxCtx { chain_id: &chain.chain_id, params: &params };
        let mut built = BuiltBlock::default();
        let mut seen = BTreeSet::new();
        let mut fees: Amount = 0;
        for stx in candidates {
            if built.txs.len() >= params.max_block_txs as usize {
                break;
            }
            let hash = stx.hash();
            if !seen.insert(hash) {
                continue;
            }
            let check = match stateless_check(&chain.chain_id, &params, &stx, stx.to_bytes().len(), false) {
                Ok(()) => self.check_in_block(&s, &chain.chain_id, &stx).await,
                Err(e) => Err(e),
            };
            if let Err(e) = check {
                built.rejected.push((hash, e));
                continue;
            }
            fees = fees.saturating_add(stx.tx.fee);
            let receipt = self.apply_tx(env, &ctx, &mut s, &stx, built.txs.len() as u32).await?;
            built.outcome.receipts.push(receipt);
            built.txs.push(stx);
        }
        built.outcome.next_committee = self.end(env, &ctx, &mut s, fees).await?;
        built.outcome.fees = fees;
        (built.outcome.changes, built.outcome.messages) = s.into_parts();
        Ok(built)
    }
}
