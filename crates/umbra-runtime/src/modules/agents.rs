//! `agents`: the on-chain control of AI agents (types in `umbra_types::agents`).
//!
//! An agent is a JavaScript contract (deployed through the `contracts` module's own upload and instantiate,
//! so ids, keys and commands work unchanged) plus an [`AgentRecord`] under `StateKey::Agent(id)`: its owner,
//! paused flag, version history, policy and sealed secrets. Every change is owner-only and emits
//! `MessageBody::AgentUpdated` (the whole record, plus the code on deploy and upgrade) to the agent's cluster,
//! so its workers decide from their own verified state. The chain never sees a secret: it stores the
//! envelope the owner sealed to the agent's contract key and checks only that the key epoch has published
//! keys. Funding an agent is an ordinary transfer to its contract account.
//!
//! The owner is one address: an account, a multisig address (whose calls arrive through `modules::multisig`
//! with that address as the signer) or the governance owner (whose calls arrive from enacted
//! `GovCall::AgentControl`s).
//!
//! Known limits: a paused agent still takes sealed commands.

use crate::modules::contracts::{self, Contracts};
use crate::modules::mq;
use crate::{Overlay, RuntimeError, StateRead};
use umbra_types::agents::{
    AgentPolicy, AgentRecord, AgentSecret, AgentVersion, MAX_RECEIPT_COMMITS, MAX_RECEIPTS_PER_BATCH, MAX_SECRET_BYTES,
    MAX_SECRETS, MAX_VERSIONS, ReceiptCommit, valid_secret_name,
};
use umbra_types::contracts::{CodeKind, ContractId, code_hash, contract_id};
use umbra_types::registry::KeyEpoch;
use umbra_types::registry::{EgressPayload, Origin, WorkerId, WorkerRecord};
use umbra_types::state_keys::StateKey;
use umbra_types::{Address, Hash, MessageBody, Topic, TxError};

type Res<T> = Result<Result<T, TxError>, RuntimeError>;

fn pre(reason: impl Into<String>) -> TxError {
    TxError::ContractPrecondition { reason: reason.into() }
}

/// What an owner-only call changes.
pub(crate) enum Change<'a> {
    /// New code.
    Upgrade(&'a [u8]),
    /// Paused or not.
    Paused(bool),
    /// A new policy.
    Policy(&'a AgentPolicy),
    /// Set or rotate a secret.
    SetSecret { name: &'a str, key_epoch: KeyEpoch, sealed: &'a [u8] },
    /// Remove a secret.
    RemoveSecret(&'a str),
    /// A new owner.
    Owner(&'a Address),
}

/// The `agents` module.
pub(crate) struct Agents;

impl Agents {
    /// An agent's record.
    pub(crate) async fn agent<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        id: &ContractId,
    ) -> Result<Option<AgentRecord>, RuntimeError> {
        s.get(&StateKey::Agent(*id), "agents agent").await
    }

    /// `Call::DeployAgent`: upload, instantiate, record.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn deploy<S: StateRead>(
        &self,
        cx: &contracts::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        contracts: &Contracts,
        signer: &Address,
        code: &[u8],
        cluster: u32,
        salt: &[u8],
        policy: &AgentPolicy,
    ) -> Res<()> {
        if let Err(why) = policy.validate() {
            return Ok(Err(pre(format!("agent policy: {why}"))));
        }
        if let Err(e) = contracts.upload(cx, s, signer, CodeKind::JavaScript, code).await? {
            return Ok(Err(e));
        }
        let hash = code_hash(CodeKind::JavaScript, code);
        if let Err(e) = contracts.instantiate(cx, s, signer, &hash, cluster, salt, &[]).await? {
            return Ok(Err(e));
        }
        let id = contract_id(signer, &hash, salt, cluster);
        let record = AgentRecord {
            id,
            owner: *signer,
            paused: false,
            versions: vec![AgentVersion { code_hash: hash, height: cx.height }],
            policy: policy.clone(),
            secrets: Vec::new(),
            updated_at: cx.height,
        };
        tracing::info!(target: "agents.deploy", height = cx.height, agent = %Hash(id), cluster, "agent deployed");
        self.store(cx, s, cluster, record, Vec::new()).await
    }

    /// Every owner-only call.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn change<S: StateRead>(
        &self,
        cx: &contracts::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        contracts: &Contracts,
        signer: &Address,
        id: &ContractId,
        change: Change<'_>,
    ) -> Res<()> {
        let Some(mut rec) = self.agent(s, id).await? else {
            return Ok(Err(pre(format!("no agent has id {}", Hash(*id)))));
        };
        if rec.owner != *signer {
            return Ok(Err(TxError::NotAgentOwner { owner: rec.owner }));
        }
        let Some(mut contract) = contracts.contract(s, id).await? else { return Ok(Err(TxError::UnknownContract)) };
        let mut new_code = Vec::new();
        match change {
            Change::Upgrade(code) => {
                if let Err(e) = contracts.upload(cx, s, signer, CodeKind::JavaScript, code).await? {
                    return Ok(Err(e));
                }
                let hash = code_hash(CodeKind::JavaScript, code);
                if rec.versions.last().is_some_and(|v| v.code_hash == hash) {
                    return Ok(Err(pre("the agent already runs this code")));
                }
                rec.versions.push(AgentVersion { code_hash: hash, height: cx.height });
                if rec.versions.len() > MAX_VERSIONS {
                    rec.versions.remove(0);
                }
                contract.code_hash = hash;
                s.put(&StateKey::Contract(*id), &contract);
                new_code = code.to_vec();
            }
            Change::Paused(p) => {
                if rec.paused == p {
                    return Ok(Err(pre(if p { "the agent is already paused" } else { "the agent is not paused" })));
                }
                rec.paused = p;
            }
            Change::Policy(policy) => {
                if let Err(why) = policy.validate() {
                    return Ok(Err(pre(format!("agent policy: {why}"))));
                }
                rec.policy = policy.clone();
            }
            Change::SetSecret { name, key_epoch, sealed } => {
                if !valid_secret_name(name) {
                    return Ok(Err(pre(format!("{name:?} is not a secret name (A-Z, a-z, 0-9, _; 1 to 64)"))));
                }
                if sealed.len() > MAX_SECRET_BYTES || sealed.len() < 32 + 16 {
                    return Ok(Err(pre(format!("a sealed secret is 48 to {MAX_SECRET_BYTES} bytes"))));
                }
                if contract.public(key_epoch).is_none() {
                    return Ok(Err(pre(format!("the agent has no published key of epoch {key_epoch}"))));
                }
                let secret =
                    AgentSecret { name: name.to_string(), key_epoch, sealed: sealed.to_vec(), set_at: cx.height };
                match rec.secrets.binary_search_by(|x| x.name.as_str().cmp(name)) {
                    Ok(i) => rec.secrets[i] = secret,
                    Err(i) if rec.secrets.len() < MAX_SECRETS => rec.secrets.insert(i, secret),
                    Err(_) => return Ok(Err(pre(format!("an agent holds at most {MAX_SECRETS} secrets")))),
                }
            }
            Change::RemoveSecret(name) => match rec.secrets.binary_search_by(|x| x.name.as_str().cmp(name)) {
                Ok(i) => {
                    rec.secrets.remove(i);
                }
                Err(_) => return Ok(Err(pre(format!("the agent has no secret {name:?}")))),
            },
            Change::Owner(to) => rec.owner = *to,
        }
        rec.updated_at = cx.height;
        tracing::info!(target: "agents.change", height = cx.height, agent = %Hash(*id), "agent record changed");
        self.store(cx, s, contract.cluster, rec, new_code).await
    }

    /// True for the egress payloads this module handles.
    pub(crate) fn handles(payload: &EgressPayload) -> bool {
        matches!(payload, EgressPayload::AgentReceipts { .. })
    }

    /// An agents egress payload whose signature and sequence were checked: a worker's receipt batch root,
    /// accepted from an active member of the agent's cluster and appended to the agent's list.
    pub(crate) async fn egress<S: StateRead>(
        &self,
        cx: &contracts::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        contracts: &Contracts,
        origin: &Origin,
        payload: &EgressPayload,
    ) -> Res<()> {
        let (Origin::Worker(w), EgressPayload::AgentReceipts { agent, batch_seq, root, count }) = (origin, payload)
        else {
            return Ok(Err(pre(format!("{} is not accepted from origin {origin:?}", payload.kind()))));
        };
        self.record_receipts(cx, s, contracts, w, agent, *batch_seq, *root, *count).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_receipts<S: StateRead>(
        &self,
        cx: &contracts::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        contracts: &Contracts,
        worker: &WorkerId,
        agent: &ContractId,
        batch_seq: u64,
        root: Hash,
        count: u32,
    ) -> Res<()> {
        if count == 0 || count > MAX_RECEIPTS_PER_BATCH {
            return Ok(Err(pre(format!("a receipt batch counts 1 to {MAX_RECEIPTS_PER_BATCH} receipts"))));
        }
        if self.agent(s, agent).await?.is_none() {
            return Ok(Err(pre(format!("no agent has id {}", Hash(*agent)))));
        }
        let Some(contract) = contracts.contract(s, agent).await? else { return Ok(Err(TxError::UnknownContract)) };
        let record: Option<WorkerRecord> = s.get(&StateKey::Worker(*worker), "agents worker").await?;
        let member = record.is_some_and(|r| r.cluster == Some(contract.cluster) && r.is_active(cx.height));
        if !member {
            return Ok(Err(pre(format!(
                "worker {} is not an active member of cluster {}, which runs the agent",
                Hash(*worker),
                contract.cluster
            ))));
        }
        let key = StateKey::AgentReceipts(*agent);
        let mut list: Vec<ReceiptCommit> = s.get(&key, "agents receipts").await?.unwrap_or_default();
        if list.iter().any(|c| c.worker == *worker && c.batch_seq == batch_seq && c.root == root) {
            return Ok(Err(pre("this receipt batch is already recorded")));
        }
        list.push(ReceiptCommit { worker: *worker, batch_seq, root, count, height: cx.height });
        if list.len() > MAX_RECEIPT_COMMITS {
            list.remove(0);
        }
        s.put(&key, &list);
        tracing::info!(target: "agents.receipts", height = cx.height, agent = %Hash(*agent), batch_seq, count, "egress receipts committed");
        Ok(Ok(()))
    }

    async fn store<S: StateRead>(
        &self,
        cx: &contracts::Ctx<'_>,
        s: &mut Overlay<'_, S>,
        cluster: u32,
        record: AgentRecord,
        code: Vec<u8>,
    ) -> Res<()> {
        s.put(&StateKey::Agent(record.id), &record);
        let body = MessageBody::AgentUpdated { record, code };
        mq::emit(s, cx.params.registry.max_block_messages, Topic::Cluster(cluster), body).await
    }
}
