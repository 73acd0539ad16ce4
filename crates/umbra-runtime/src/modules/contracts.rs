//! `contracts`: confidential contracts on chain (the chain side of the contracts flow in
//! `docs/worker-protocol.md`).
//!
//! # Lifecycle
//! - `UploadCode` stores code under its hash ([`umbra_types::contracts::code_hash`]), at most
//!   `params.contracts.max_code_bytes`.
//! - `Instantiate` creates a [`ContractRecord`] with a deterministic id and emits `ContractInstantiated` (with
//!   the code) to the cluster's topic. A member answers with `ContractKeys` signed as `Origin::Cluster` (the
//!   cluster's ed25519 key of the current key epoch); the chain records the contract's public keys.
//! - `ContractCommand` checks the envelope's key epoch against the recorded keys, moves
//!   `gas_limit * gas_price` from the sender to the gas escrow, records the command (only the envelope's
//!   hash: nothing readable) and emits the envelope to the cluster's topic, numbered per contract.
//! - `ContractReport` (origin `Contract(id)`, egress sequence = the command's number, so the reports arrive
//!   in order and identical copies land once) records the outcome, pays `gas_used * gas_price` to the
//!   treasury, refunds the rest, makes the contract's transfers from its account (all or none) and emits
//!   `ContractResult` to the cluster so a member with another root can report a `ContractIncident`.
//!
//! - Gas price and code size limit are the cluster's own when governance set them
//!   (`AdminCall::SetClusterContracts`, [`ClusterContractParams`]), else `params.contracts`'.
//! - Storage deposit: the cluster's price per byte (`AdminCall::SetClusterStorageDeposit`, else
//!   `params.contracts.storage_deposit_per_byte`). `Instantiate` moves `code bytes * price` from the deployer to
//!   [`storage_escrow`] as the contract's deposit. Every report carries the contract's stored bytes; the chain
//!   then brings the deposit to `(code + stored bytes) * price`: growth is taken from the contract's own account,
//!   shrinking is refunded to it. Growth the account cannot cover becomes the contract's storage debt, and
//!   commands to it are refused (`TxError::StorageUnfunded`) until its account holds the debt, which the next
//!   command then moves to the deposit.
//! - Key rotation: when a key epoch is activated the cluster's members publish every contract's keys of the
//!   new epoch (`ContractKeys`); commands sealed to a retired (erased) epoch are refused, and reports are
//!   checked with the contract key of the epoch their command was sealed to.

use crate::modules::balances::{Balances, treasury};
use crate::modules::mq;
use crate::{Overlay, RuntimeError, StateRead};
use umbra_types::contracts::{
    ClusterContractParams, CodeKind, CodeRecord, CommandRecord, CommandResult, CommandStatus, ContractId,
    ContractPublic, ContractRecord, ContractTransfer, Incident, code_hash, contract_account, contract_id, gas_escrow,
    storage_escrow,
};
use umbra_types::registry::{ClusterRecord, KeyEpoch, KeysRecord};
use umbra_types::state_keys::StateKey;
use umbra_types::{
    Address, Amount, EgressPayload, Hash, MessageBody, Origin, Params, Topic, TxError, WorkerRecord, sha256,
};

/// Most incidents kept per contract.
const MAX_INCIDENTS: usize = 64;

/// What a contracts call sees of its block.
pub(crate) struct Ctx<'a> {
    pub(crate) height: u64,
    pub(crate) timestamp_ms: u64,
    pub(crate) params: &'a Params,
}

type Res<T> = Result<Result<T, TxError>, RuntimeError>;

fn pre(reason: impl Into<String>) -> TxError {
    TxError::ContractPrecondition { reason: reason.into() }
}

/// The `contracts` module.
pub(crate) struct Contracts;

impl Contracts {
    // ---- reads ----

    pub(crate) async fn code<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        hash: &Hash,
    ) -> Result<Option<CodeRecord>, RuntimeError> {
        s.get(&StateKey::ContractCode(*hash), "contracts code").await
    }

    pub(crate) async fn contract<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        id: &ContractId,
    ) -> Result<Option<ContractRecord>, RuntimeError> {
        s.get(&StateKey::Contract(*id), "contracts contract").await
    }

    pub(crate) async fn command<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        id: &ContractId,
        seq: u64,
    ) -> Result<Option<CommandRecord>, RuntimeError> {
        s.get(&StateKey::ContractCommand { contract: *id, seq }, "contracts command").await
    }

    pub(crate) async fn incidents<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        id: &ContractId,
    ) -> Result<Vec<Incident>, RuntimeError> {
        Ok(s.get(&StateKey::ContractIncidents(*id), "contracts incidents").await?.unwrap_or_default())
    }

    async fn cluster<S: StateRead>(&self, s: &Overlay<'_, S>, id: u32) -> Result<Option<ClusterRecord>, RuntimeError> {
        s.get(&StateKey::Cluster(id), "registry cluster").await
    }

    /// A cluster's own contract settings (defaults: the chain's).
    pub(crate) async fn cluster_params<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        id: u32,
    ) -> Result<ClusterContractParams, RuntimeError> {
        Ok(s.get(&StateKey::ClusterContracts(id), "contracts cluster params").await?.unwrap_or_default())
    }

    // ---- calls ----

    /// `Call::UploadCode`.
    pub(crate) async fn upload<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        signer: &Address,
        kind: CodeKind,
        code: &[u8],
    ) -> Res<()> {
        let max = cx.params.contracts.max_code_bytes;
        if code.len() > max as usize {
            return Ok(Err(TxError::CodeTooLarge { size: code.len() as u64, max: u64::from(max) }));
        }
        if code.is_empty() {
            return Ok(Err(pre("contract code is empty")));
        }
        if kind == CodeKind::JavaScript && std::str::from_utf8(code).is_err() {
            return Ok(Err(pre("JavaScript code must be UTF-8 source")));
        }
        let hash = code_hash(kind, code);
        if self.code(s, &hash).await?.is_some() {
            return Ok(Ok(()));
        }
        let rec = CodeRecord { hash, kind, size: code.len() as u32, uploader: *signer, uploaded_at: cx.height };
        s.put(&StateKey::ContractCode(hash), &rec);
        s.put_raw(StateKey::ContractCodeBytes(hash).hash(), Some(code.to_vec()));
        tracing::debug!(target: "contracts.upload", height = cx.height, %hash, size = code.len(), "code stored");
        Ok(Ok(()))
    }

    /// `Call::Instantiate`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn instantiate<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        signer: &Address,
        code_hash: &Hash,
        cluster: u32,
        salt: &[u8],
        args: &[u8],
    ) -> Res<()> {
        let Some(code) = self.code(s, code_hash).await? else { return Ok(Err(TxError::UnknownCode)) };
        let Some(c) = self.cluster(s, cluster).await? else {
            return Ok(Err(pre(format!("cluster {cluster} does not exist"))));
        };
        if c.paused {
            return Ok(Err(pre(format!("cluster {cluster} is paused by governance: no new contracts"))));
        }
        if c.members.is_empty() {
            return Ok(Err(pre(format!("cluster {cluster} has no members to run a contract"))));
        }
        let max = self.cluster_params(s, cluster).await?.max_code_bytes(&cx.params.contracts);
        if code.size > max {
            return Ok(Err(TxError::CodeTooLarge { size: u64::from(code.size), max: u64::from(max) }));
        }
        if salt.len() > 64 || args.len() > cx.params.contracts.max_command_bytes as usize {
            return Ok(Err(pre("salt (at most 64 bytes) or init arguments too large")));
        }
        let id = contract_id(signer, code_hash, salt, cluster);
        if self.contract(s, &id).await?.is_some() {
            return Ok(Err(pre(format!("contract {} already exists (use another salt)", Hash(id)))));
        }
        let bytes = s
            .get_raw(&StateKey::ContractCodeBytes(*code_hash).hash())
            .await?
            .ok_or(RuntimeError::Missing("contracts code bytes"))?;
        let per_byte = self.cluster_params(s, cluster).await?.storage_deposit_per_byte(&cx.params.contracts);
        let storage_deposit = Amount::from(code.size).saturating_mul(per_byte);
        if storage_deposit > 0
            && let Err(e) = Balances.transfer(s, signer, &storage_escrow(), storage_deposit).await?
        {
            return Ok(Err(e));
        }
        let rec = ContractRecord {
            id,
            code_hash: *code_hash,
            kind: code.kind,
            cluster,
            deployer: *signer,
            instantiated_at: cx.height,
            account: contract_account(&id),
            keys: Vec::new(),
            commands: 0,
            reported: 0,
            state_root: None,
            incidents: 0,
            storage_deposit,
            stored_bytes: 0,
            storage_debt: 0,
        };
        s.put(&StateKey::Contract(id), &rec);
        let body = MessageBody::ContractInstantiated {
            contract: id,
            kind: code.kind,
            code: bytes,
            deployer: *signer,
            args: args.to_vec(),
            time_ms: cx.timestamp_ms,
        };
        if let Err(e) = mq::emit(s, cx.params.registry.max_block_messages, Topic::Cluster(cluster), body).await? {
            return Ok(Err(e));
        }
        tracing::info!(target: "contracts.instantiate", height = cx.height, contract = %Hash(id), cluster, "contract instantiated");
        Ok(Ok(()))
    }

    /// `Call::ContractCommand`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn command_call<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        signer: &Address,
        id: &ContractId,
        key_epoch: KeyEpoch,
        gas_limit: u64,
        sealed: &[u8],
    ) -> Res<()> {
        let p = &cx.params.contracts;
        let Some(mut rec) = self.contract(s, id).await? else { return Ok(Err(TxError::UnknownContract)) };
        if self.cluster(s, rec.cluster).await?.is_some_and(|c| c.paused) {
            return Ok(Err(pre(format!("cluster {} is paused by governance: no new commands", rec.cluster))));
        }
        if sealed.len() > p.max_command_bytes as usize {
            return Ok(Err(pre(format!(
                "a command envelope of {} bytes exceeds the limit of {}",
                sealed.len(),
                p.max_command_bytes
            ))));
        }
        if sealed.len() < 32 + 16 {
            return Ok(Err(pre("the command envelope is too short to be an HPKE envelope")));
        }
        if gas_limit == 0 || gas_limit > p.max_gas_per_command {
            return Ok(Err(pre(format!("gas limit must be between 1 and {}", p.max_gas_per_command))));
        }
        let current: KeysRecord = s.get(&StateKey::Keys, "registry keys").await?.unwrap_or_default();
        if key_epoch < current.key_epoch {
            return Ok(Err(pre(format!(
                "key epoch {key_epoch} was retired by a key rotation and its keys are erased: seal to epoch {}",
                current.key_epoch
            ))));
        }
        if rec.public(key_epoch).is_none() {
            let known: Vec<KeyEpoch> = rec.keys.iter().map(|(e, _)| *e).collect();
            return Ok(Err(pre(if known.is_empty() {
                "the contract's keys are not published yet: wait for its cluster".to_string()
            } else {
                format!("the contract has no key of epoch {key_epoch} (it has epochs {known:?}): seal to a current key")
            })));
        }
        if rec.storage_debt > 0 {
            let balance = bal.account(s, &rec.account).await?.balance;
            if balance < rec.storage_debt {
                return Ok(Err(TxError::StorageUnfunded { needed: rec.storage_debt, account: rec.account, balance }));
            }
            bal.transfer(s, &rec.account, &storage_escrow(), rec.storage_debt)
                .await?
                .map_err(|_| RuntimeError::Corrupt("contract account"))?;
            rec.storage_deposit = rec.storage_deposit.saturating_add(rec.storage_debt);
            rec.storage_debt = 0;
        }
        let price = self.cluster_params(s, rec.cluster).await?.gas_price(p);
        let deposit = Amount::from(gas_limit).saturating_mul(price);
        if deposit > 0
            && let Err(e) = bal.transfer(s, signer, &gas_escrow(), deposit).await?
        {
            return Ok(Err(e));
        }
        let seq = rec.commands;
        let cmd = CommandRecord {
            sender: *signer,
            height: cx.height,
            key_epoch,
            gas_limit,
            deposit,
            envelope_hash: sha256(&[sealed]),
            result: None,
        };
        s.put(&StateKey::ContractCommand { contract: *id, seq }, &cmd);
        rec.commands = seq.saturating_add(1);
        s.put(&StateKey::Contract(*id), &rec);
        let body = MessageBody::ContractCommand {
            contract: *id,
            seq,
            sender: *signer,
            key_epoch,
            gas_limit,
            sealed: sealed.to_vec(),
            time_ms: cx.timestamp_ms,
        };
        if let Err(e) = mq::emit(s, cx.params.registry.max_block_messages, Topic::Cluster(rec.cluster), body).await? {
            return Ok(Err(e));
        }
        tracing::debug!(target: "contracts.command", height = cx.height, contract = %Hash(*id), seq, gas_limit, "command ordered");
        Ok(Ok(()))
    }

    // ---- egress ----

    /// True for the payloads this module handles.
    pub(crate) fn handles(payload: &EgressPayload) -> bool {
        matches!(
            payload,
            EgressPayload::ContractKeys { .. }
                | EgressPayload::ContractReport { .. }
                | EgressPayload::ContractIncident { .. }
        )
    }

    /// A contracts egress payload whose signature and sequence were checked.
    pub(crate) async fn egress<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        origin: &Origin,
        seq: u64,
        payload: &EgressPayload,
    ) -> Res<()> {
        match (origin, payload) {
            (Origin::Cluster(c), EgressPayload::ContractKeys { contract, key_epoch, public }) => {
                self.keys(cx, s, *c, contract, *key_epoch, public).await
            }
            (
                Origin::Contract(id),
                EgressPayload::ContractReport { status, gas_used, state_root, events_hash, transfers, stored_bytes },
            ) => {
                let report = Report {
                    status,
                    gas_used: *gas_used,
                    state_root,
                    events_hash,
                    transfers,
                    stored_bytes: *stored_bytes,
                };
                self.report(cx, s, bal, id, seq, report).await
            }
            (Origin::Worker(w), EgressPayload::ContractIncident { contract, seq, state_root }) => {
                self.incident(cx, s, w, contract, *seq, state_root).await
            }
            (o, p) => Ok(Err(pre(format!("{} is not accepted from origin {o:?}", p.kind())))),
        }
    }

    async fn keys<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        cluster: u32,
        id: &ContractId,
        key_epoch: KeyEpoch,
        public: &ContractPublic,
    ) -> Res<()> {
        let Some(mut rec) = self.contract(s, id).await? else { return Ok(Err(TxError::UnknownContract)) };
        if rec.cluster != cluster {
            return Ok(Err(pre(format!("the contract runs on cluster {}, not {cluster}", rec.cluster))));
        }
        let keys: KeysRecord = s.get(&StateKey::Keys, "registry keys").await?.unwrap_or_default();
        if key_epoch != keys.key_epoch {
            return Ok(Err(pre(format!("keys of epoch {key_epoch}, the current one is {}", keys.key_epoch))));
        }
        match rec.public(key_epoch) {
            Some(p) if p == *public => return Ok(Ok(())),
            Some(_) => return Ok(Err(pre("the contract's keys of this epoch are already recorded and differ"))),
            None => rec.keys.push((key_epoch, *public)),
        }
        s.put(&StateKey::Contract(*id), &rec);
        tracing::info!(target: "contracts.keys", height = cx.height, contract = %Hash(*id), key_epoch, "contract keys recorded");
        Ok(Ok(()))
    }

    async fn report<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        id: &ContractId,
        seq: u64,
        r: Report<'_>,
    ) -> Res<()> {
        let Some(mut rec) = self.contract(s, id).await? else { return Ok(Err(TxError::UnknownContract)) };
        let Some(mut cmd) = self.command(s, id, seq).await? else {
            return Ok(Err(pre(format!("the contract has no command {seq} yet"))));
        };
        if cmd.result.is_some() {
            return Ok(Err(pre(format!("command {seq} is already reported"))));
        }
        let gas_used = r.gas_used.min(cmd.gas_limit);
        // The price the deposit was taken at (the cluster's price may have changed since).
        let price = cmd.deposit / Amount::from(cmd.gas_limit.max(1));
        let cost = Amount::from(gas_used).saturating_mul(price).min(cmd.deposit);
        let refund = cmd.deposit - cost;
        if cost > 0 {
            bal.transfer(s, &gas_escrow(), &treasury(), cost)
                .await?
                .map_err(|_| RuntimeError::Corrupt("gas escrow"))?;
        }
        if refund > 0 {
            bal.transfer(s, &gas_escrow(), &cmd.sender, refund)
                .await?
                .map_err(|_| RuntimeError::Corrupt("gas escrow"))?;
        }
        let (made, transfer_error) = self.transfers(s, bal, &rec.account, r.transfers).await?;
        self.follow_storage(cx, s, bal, &mut rec, r.stored_bytes).await?;
        cmd.result = Some(CommandResult {
            status: r.status.clone(),
            gas_used,
            state_root: *r.state_root,
            events_hash: *r.events_hash,
            refund,
            transfers: made,
            transfer_error,
            reported_at: cx.height,
        });
        s.put(&StateKey::ContractCommand { contract: *id, seq }, &cmd);
        rec.reported = seq.saturating_add(1);
        rec.state_root = Some(*r.state_root);
        s.put(&StateKey::Contract(*id), &rec);
        let body = MessageBody::ContractResult { contract: *id, seq, state_root: *r.state_root };
        if let Err(e) = mq::emit(s, cx.params.registry.max_block_messages, Topic::Cluster(rec.cluster), body).await? {
            return Ok(Err(e));
        }
        tracing::debug!(target: "contracts.report", height = cx.height, contract = %Hash(*id), seq, gas_used, ok = matches!(r.status, CommandStatus::Ok), "command reported");
        Ok(Ok(()))
    }

    /// Brings the contract's storage deposit to `(code + stored) bytes * price` after a report: growth from the
    /// contract's account (all of it, or none and a storage debt), shrinking refunded to it.
    async fn follow_storage<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        rec: &mut ContractRecord,
        stored_bytes: u64,
    ) -> Result<(), RuntimeError> {
        rec.stored_bytes = stored_bytes;
        let per_byte = self.cluster_params(s, rec.cluster).await?.storage_deposit_per_byte(&cx.params.contracts);
        let code_bytes = self.code(s, &rec.code_hash).await?.map(|c| u64::from(c.size)).unwrap_or(0);
        let needed = Amount::from(code_bytes.saturating_add(stored_bytes)).saturating_mul(per_byte);
        if needed <= rec.storage_deposit {
            let refund = rec.storage_deposit - needed;
            if refund > 0 {
                bal.transfer(s, &storage_escrow(), &rec.account, refund)
                    .await?
                    .map_err(|_| RuntimeError::Corrupt("storage escrow"))?;
            }
            rec.storage_deposit = needed;
            rec.storage_debt = 0;
            return Ok(());
        }
        let growth = needed - rec.storage_deposit;
        if bal.account(s, &rec.account).await?.balance >= growth {
            bal.transfer(s, &rec.account, &storage_escrow(), growth)
                .await?
                .map_err(|_| RuntimeError::Corrupt("contract account"))?;
            rec.storage_deposit = needed;
            rec.storage_debt = 0;
        } else {
            rec.storage_debt = growth;
            tracing::info!(target: "contracts.storage", height = cx.height, contract = %Hash(rec.id), %growth, "storage deposit not covered: commands refused until the contract's account is funded");
        }
        Ok(())
    }

    /// Makes every transfer from `from`, or none if their total exceeds its balance.
    async fn transfers<S: StateRead>(
        &self,
        s: &mut Overlay<'_, S>,
        bal: &Balances,
        from: &Address,
        transfers: &[ContractTransfer],
    ) -> Result<(Vec<ContractTransfer>, Option<String>), RuntimeError> {
        if transfers.is_empty() {
            return Ok((Vec::new(), None));
        }
        let total = transfers.iter().try_fold(0 as Amount, |t, x| t.checked_add(x.amount));
        let balance = bal.account(s, from).await?.balance;
        let refuse = |why: String| Ok((Vec::new(), Some(why)));
        let Some(total) = total else { return refuse("the transfers' total overflows".into()) };
        if total > balance {
            return refuse(format!("the transfers total {total} but the contract's account holds {balance}"));
        }
        if transfers.iter().any(|t| t.to == *from || t.amount == 0) {
            return refuse("a transfer to the contract itself or of zero tokens".into());
        }
        for t in transfers {
            bal.transfer(s, from, &t.to, t.amount).await?.map_err(|_| RuntimeError::Corrupt("contract account"))?;
        }
        Ok((transfers.to_vec(), None))
    }

    async fn incident<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        worker: &[u8; 32],
        id: &ContractId,
        seq: u64,
        root: &Hash,
    ) -> Res<()> {
        let Some(mut rec) = self.contract(s, id).await? else { return Ok(Err(TxError::UnknownContract)) };
        let w: Option<WorkerRecord> = s.get(&StateKey::Worker(*worker), "registry worker").await?;
        match w {
            Some(w) if w.cluster == Some(rec.cluster) && w.is_active(cx.height) => {}
            _ => return Ok(Err(pre("only an active member of the contract's cluster may report an incident"))),
        }
        let recorded = match self.command(s, id, seq).await?.and_then(|c| c.result) {
            Some(r) => r.state_root,
            None => return Ok(Err(pre(format!("command {seq} is not reported yet")))),
        };
        if recorded == *root {
            return Ok(Err(pre("the reported root equals the recorded one: no incident")));
        }
        let mut list = self.incidents(s, id).await?;
        list.push(Incident { seq, worker: *worker, recorded, reported: *root, height: cx.height });
        if list.len() > MAX_INCIDENTS {
            list.remove(0);
        }
        s.put(&StateKey::ContractIncidents(*id), &list);
        rec.incidents = rec.incidents.saturating_add(1);
        s.put(&StateKey::Contract(*id), &rec);
        tracing::warn!(target: "contracts.incident", height = cx.height, contract = %Hash(*id), seq, worker = %Hash(*worker), "state root mismatch");
        Ok(Ok(()))
    }
}

/// A `ContractReport`'s fields.
struct Report<'a> {
    status: &'a CommandStatus,
    gas_used: u64,
    state_root: &'a Hash,
    events_hash: &'a Hash,
    transfers: &'a [ContractTransfer],
    stored_bytes: u64,
}

/// The ed25519 key an origin of this module signs with: a cluster's key of the current key epoch, or for a
/// contract's report `seq`, the contract's key of the epoch that command was sealed to (its workers sign
/// with it, so a report of a command ordered before a rotation still verifies after it).
pub(crate) async fn origin_key<S: StateRead>(
    s: &Overlay<'_, S>,
    origin: &Origin,
    seq: u64,
) -> Result<Option<[u8; 32]>, RuntimeError> {
    let keys: KeysRecord = s.get(&StateKey::Keys, "registry keys").await?.unwrap_or_default();
    Ok(match origin {
        Origin::Cluster(c) => {
            let rec: Option<ClusterRecord> = s.get(&StateKey::Cluster(*c), "registry cluster").await?;
            rec.and_then(|r| r.keys.iter().find(|(e, _)| *e == keys.key_epoch).map(|(_, p)| p.ed25519))
        }
        Origin::Contract(id) => {
            let rec: Option<ContractRecord> = s.get(&StateKey::Contract(*id), "contracts contract").await?;
            let cmd: Option<CommandRecord> =
                s.get(&StateKey::ContractCommand { contract: *id, seq }, "contracts command").await?;
            let epoch = cmd.map(|c| c.key_epoch).unwrap_or(keys.key_epoch);
            rec.and_then(|r| r.public(epoch).or_else(|| r.keys.last().map(|(_, p)| *p))).map(|p| p.ed25519)
        }
        Origin::Worker(_) | Origin::Gatekeeper => None,
    })
}
