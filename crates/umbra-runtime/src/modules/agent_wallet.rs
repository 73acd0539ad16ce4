//! `agents` (wallets and outputs): an agent spends from its contract account, publishes its Ethereum address
//! of a key epoch and posts attested outputs, each through an egress payload from a worker of its cluster
//! (types and signing bytes in `umbra_types::agent_wallet`).
//!
//! Every payload is accepted only from an active member of the agent's cluster (the worker's egress signature
//! and sequence were checked before, which makes each land once). Then:
//!
//! - `AgentTransfer`: the agent is not paused, the contract account holds the amount, and the transfers of the
//!   last rolling day (`86_400_000 / target_block_ms` blocks, from the height: no clock) plus this one stay
//!   within the owner's `spend_cap_per_day` (0: the agent may not spend). A refusal moves nothing.
//! - `AgentWallet`: the contract's ed25519 key of that epoch signed the address; a second, different address
//!   for an epoch is refused (the same one again is a no-op, so every member may publish it).
//! - `AgentOutput`: at most [`MAX_OUTPUT_BYTES`]; the ed25519 signature verifies against the contract's
//!   published key of the epoch, the EIP-191 signature recovers to the published Ethereum address of the
//!   epoch; a nonce the chain still holds is refused; stored in a ring of the latest [`MAX_OUTPUTS_KEPT`].
//!
//! Known limit: contract commands may still move tokens from the same account (`umbra.transfer` in a
//! command); the cap bounds what the handler sends with `env.wallet.transfer`.

use crate::modules::agents::Agents;
use crate::modules::balances::Balances;
use crate::modules::contracts::{self, Contracts};
use crate::{Overlay, RuntimeError, StateRead};
use umbra_types::agent_wallet::{
    AgentEthAddress, AgentSpend, AgentTransferRecord, AttestedOutput, MAX_ETH_ADDRESSES, MAX_OUTPUT_BYTES,
    MAX_OUTPUTS_KEPT, MAX_TRANSFERS_PER_DAY, blocks_per_day, output_signing_bytes, wallet_signing_bytes,
};
use umbra_types::contracts::{ContractId, ContractRecord};
use umbra_types::registry::{EgressPayload, KeyEpoch, Origin, WorkerId, WorkerRecord};
use umbra_types::state_keys::StateKey;
use umbra_types::{Address, Amount, Hash, TxError};

type Res<T> = Result<Result<T, TxError>, RuntimeError>;

fn pre(reason: impl Into<String>) -> TxError {
    TxError::ContractPrecondition { reason: reason.into() }
}

/// What the wallet payloads need of the other modules.
pub(crate) struct Deps<'a> {
    pub(crate) agents: &'a Agents,
    pub(crate) contracts: &'a Contracts,
    pub(crate) balances: &'a Balances,
    pub(crate) chain_id: &'a str,
}

/// The wallet half of the `agents` module.
pub(crate) struct AgentWallets;

impl AgentWallets {
    /// True for the egress payloads this module handles.
    pub(crate) fn handles(payload: &EgressPayload) -> bool {
        matches!(
            payload,
            EgressPayload::AgentTransfer { .. } | EgressPayload::AgentWallet { .. } | EgressPayload::AgentOutput { .. }
        )
    }

    /// A wallet payload whose egress signature and sequence were checked.
    pub(crate) async fn egress<S: StateRead>(
        &self,
        cx: &contracts::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        deps: &Deps<'_>,
        origin: &Origin,
        payload: &EgressPayload,
    ) -> Res<()> {
        let Origin::Worker(worker) = origin else {
            return Ok(Err(pre(format!("{} is not accepted from origin {origin:?}", payload.kind()))));
        };
        let agent = match payload {
            EgressPayload::AgentTransfer { agent, .. }
            | EgressPayload::AgentWallet { agent, .. }
            | EgressPayload::AgentOutput { agent, .. } => agent,
            other => return Ok(Err(pre(format!("{} is not a wallet payload", other.kind())))),
        };
        let contract = match self.member(cx, s, deps, worker, agent).await? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        match payload {
            EgressPayload::AgentTransfer { id, to, amount, .. } => {
                self.transfer(cx, s, deps, worker, &contract, *id, to, *amount).await
            }
            EgressPayload::AgentWallet { key_epoch, eth_address, signature, .. } => {
                self.publish(cx, s, deps, worker, &contract, *key_epoch, eth_address, signature).await
            }
            EgressPayload::AgentOutput { key_epoch, nonce, output, signature, eth_signature, .. } => {
                let out = Posted { key_epoch: *key_epoch, nonce: *nonce, output, signature, eth_signature };
                self.output(cx, s, deps, worker, &contract, out).await
            }
            _ => Ok(Err(pre("not a wallet payload"))),
        }
    }

    /// The agent's contract, if `worker` is an active member of the cluster that runs it.
    async fn member<S: StateRead>(
        &self,
        cx: &contracts::Ctx<'_>,
        s: &Overlay<'_, S>,
        deps: &Deps<'_>,
        worker: &WorkerId,
        agent: &ContractId,
    ) -> Res<ContractRecord> {
        if deps.agents.agent(s, agent).await?.is_none() {
            return Ok(Err(pre(format!("no agent has id {}", Hash(*agent)))));
        }
        let Some(contract) = deps.contracts.contract(s, agent).await? else {
            return Ok(Err(TxError::UnknownContract));
        };
        let record: Option<WorkerRecord> = s.get(&StateKey::Worker(*worker), "agents worker").await?;
        if !record.is_some_and(|r| r.cluster == Some(contract.cluster) && r.is_active(cx.height)) {
            return Ok(Err(pre(format!(
                "worker {} is not an active member of cluster {}, which runs the agent",
                Hash(*worker),
                contract.cluster
            ))));
        }
        Ok(Ok(contract))
    }

    #[allow(clippy::too_many_arguments)]
    async fn transfer<S: StateRead>(
        &self,
        cx: &contracts::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        deps: &Deps<'_>,
        worker: &WorkerId,
        contract: &ContractRecord,
        id: [u8; 16],
        to: &Address,
        amount: Amount,
    ) -> Res<()> {
        let Some(agent) = deps.agents.agent(s, &contract.id).await? else {
            return Ok(Err(pre("no such agent")));
        };
        if agent.paused {
            return Ok(Err(pre("the agent is paused by its owner: it may not spend")));
        }
        let key = StateKey::AgentSpend(contract.id);
        let mut spend: AgentSpend = s.get(&key, "agents spend").await?.unwrap_or_default();
        let day = blocks_per_day(cx.params.economics.target_block_ms);
        let from = cx.height.saturating_sub(day - 1);
        spend.transfers.retain(|t| t.height >= from);
        let cap = agent.policy.spend_cap_per_day;
        let spent = spend.spent_since(cx.height, day);
        if spent.checked_add(amount).is_none_or(|total| total > cap) {
            return Ok(Err(TxError::AgentSpendCap { cap, spent, amount }));
        }
        if spend.transfers.len() >= MAX_TRANSFERS_PER_DAY {
            return Ok(Err(pre(format!("an agent makes at most {MAX_TRANSFERS_PER_DAY} transfers per rolling day"))));
        }
        if spend.transfers.iter().any(|t| t.id == id && t.worker == *worker) {
            return Ok(Err(pre("this transfer is already recorded")));
        }
        if let Err(e) = deps.balances.transfer(s, &contract.account, to, amount).await? {
            return Ok(Err(e));
        }
        spend.transfers.push(AgentTransferRecord { id, worker: *worker, to: *to, amount, height: cx.height });
        s.put(&key, &spend);
        tracing::info!(target: "agents.transfer", height = cx.height, agent = %Hash(contract.id), %amount, "agent transfer");
        Ok(Ok(()))
    }

    #[allow(clippy::too_many_arguments)]
    async fn publish<S: StateRead>(
        &self,
        cx: &contracts::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        deps: &Deps<'_>,
        worker: &WorkerId,
        contract: &ContractRecord,
        key_epoch: KeyEpoch,
        eth: &[u8; 20],
        signature: &[u8; 64],
    ) -> Res<()> {
        let Some(public) = contract.public(key_epoch) else {
            return Ok(Err(pre(format!("the agent has no published contract key of epoch {key_epoch}"))));
        };
        let msg = wallet_signing_bytes(deps.chain_id, &contract.id, key_epoch, eth);
        if umbra_crypto::verify(&Address(public.ed25519), &msg, signature).is_err() {
            return Ok(Err(pre("the Ethereum address is not signed by the agent's contract key of its epoch")));
        }
        let key = StateKey::AgentWallets(contract.id);
        let mut list: Vec<AgentEthAddress> = s.get(&key, "agents wallets").await?.unwrap_or_default();
        match list.iter().find(|a| a.key_epoch == key_epoch) {
            Some(known) if known.address == *eth => return Ok(Ok(())),
            Some(_) => {
                return Ok(Err(pre(format!(
                    "the agent already has another Ethereum address for key epoch {key_epoch}"
                ))));
            }
            None => {}
        }
        let entry =
            AgentEthAddress { key_epoch, address: *eth, signature: *signature, worker: *worker, height: cx.height };
        let at = list.partition_point(|a| a.key_epoch < key_epoch);
        list.insert(at, entry);
        if list.len() > MAX_ETH_ADDRESSES {
            list.remove(0);
        }
        s.put(&key, &list);
        tracing::info!(target: "agents.wallet", height = cx.height, agent = %Hash(contract.id), key_epoch, "agent Ethereum address published");
        Ok(Ok(()))
    }

    async fn output<S: StateRead>(
        &self,
        cx: &contracts::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        deps: &Deps<'_>,
        worker: &WorkerId,
        contract: &ContractRecord,
        p: Posted<'_>,
    ) -> Res<()> {
        if p.output.is_empty() || p.output.len() > MAX_OUTPUT_BYTES {
            return Ok(Err(pre(format!(
                "an attested output is 1 to {MAX_OUTPUT_BYTES} bytes, not {}",
                p.output.len()
            ))));
        }
        let Some(public) = contract.public(p.key_epoch) else {
            return Ok(Err(pre(format!("the agent has no published contract key of epoch {}", p.key_epoch))));
        };
        let msg = output_signing_bytes(deps.chain_id, &contract.id, p.key_epoch, p.nonce, p.output);
        if umbra_crypto::verify(&Address(public.ed25519), &msg, p.signature).is_err() {
            return Ok(Err(pre("the output's signature does not verify against the agent's contract key")));
        }
        let wallets: Vec<AgentEthAddress> =
            s.get(&StateKey::AgentWallets(contract.id), "agents wallets").await?.unwrap_or_default();
        let Some(eth) = wallets.iter().find(|a| a.key_epoch == p.key_epoch) else {
            return Ok(Err(pre(format!("the agent has no published Ethereum address of key epoch {}", p.key_epoch))));
        };
        let eth_sig: Option<&[u8; 65]> = p.eth_signature.try_into().ok();
        if !eth_sig
            .is_some_and(|sig| umbra_crypto::verify_attested_output(&eth.address, &contract.id, p.nonce, p.output, sig))
        {
            return Ok(Err(pre("the output's Ethereum signature does not recover to the agent's published address")));
        }
        let key = StateKey::AgentOutputs(contract.id);
        let mut list: Vec<AttestedOutput> = s.get(&key, "agents outputs").await?.unwrap_or_default();
        if list.iter().any(|o| o.nonce == p.nonce) {
            return Ok(Err(pre("an output with this nonce is already recorded")));
        }
        let count_key = StateKey::AgentOutputCount(contract.id);
        let index: u64 = s.get(&count_key, "agents output count").await?.unwrap_or(0);
        list.push(AttestedOutput {
            index,
            worker: *worker,
            key_epoch: p.key_epoch,
            nonce: p.nonce,
            output: p.output.to_vec(),
            signature: *p.signature,
            eth_signature: p.eth_signature.to_vec(),
            height: cx.height,
        });
        if list.len() > MAX_OUTPUTS_KEPT {
            list.remove(0);
        }
        s.put(&key, &list);
        s.put(&count_key, &(index + 1));
        tracing::info!(target: "agents.output", height = cx.height, agent = %Hash(contract.id), index, "attested output recorded");
        Ok(Ok(()))
    }
}

/// An `AgentOutput` payload's fields.
struct Posted<'a> {
    key_epoch: KeyEpoch,
    nonce: u64,
    output: &'a [u8],
    signature: &'a [u8; 64],
    eth_signature: &'a [u8],
}
