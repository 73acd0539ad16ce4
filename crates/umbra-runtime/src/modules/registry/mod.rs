//! `registry`: TEE workers, their attestation, gatekeepers, clusters and key epochs (the chain side of
//! `docs/worker-protocol.md`).
//!
//! # Registration
//! `register_worker` verifies the quote with the stored policy at the block time (seconds), trying the
//! stored collateral newest first for DCAP kinds, then checks that the report data binds the worker's
//! keys, the chain id, the genesis hash (recorded by block 1) and the signing operator. A worker is
//! renewed by its operator with a fresh quote; it keeps its cluster, role, commitment and key epoch,
//! but may not change its X25519 key while a gatekeeper or cluster member.
//!
//! # Revocation and expiry
//! A worker is usable while `height < expires_at` and not revoked. Setting a policy or withdrawing a
//! measurement re-checks every worker's recorded attestation (kind, measurement, TCB status,
//! advisories) with `Policy::check` and revokes those it no longer accepts: they leave the gatekeepers,
//! their cluster and any pending rotation, and are told so.
//!
//! # Keys
//! The flows (first master key, later gatekeepers, cluster keys, rotation, rollback commitments) are
//! driven by admin calls and egress payloads, handled in `keys`; every step the workers act on is a
//! message ([`crate::modules::mq::emit`]). A rotation completes when every pending worker acknowledged
//! the new epoch, or, after `rotation_timeout_blocks`, when only cluster members are left (checked at
//! the end of every block).
//!
//! # Known limits
//! A rotation whose leader is revoked before publishing the new key cannot complete (no call aborts it
//! yet). Revocation re-checks the recorded attestation only; a dev worker stays accepted if the dev
//! key that signed its quote leaves `dev_keys` while dev remains enabled.

use crate::modules::mq;

mod keys;
use crate::{BlockEnv, Module, Overlay, RuntimeError, StateRead};
use umbra_tee::{AttestationError, Collateral, Confidence, Policy, Registers, VerifiedQuote, quote_kind, report_data};
use umbra_types::registry::{ClusterRecord, KeysRecord, X25519Public};
use umbra_types::state_keys::StateKey;
use umbra_types::{
    Address, AdminCall, ClusterId, Genesis, Hash, MessageBody, Params, Topic, TxError, WorkerId, WorkerRecord, sha256,
};

/// The most collateral documents kept on chain.
pub(crate) const MAX_COLLATERALS: usize = 8;

/// A registry call's failure: the call's own ([`TxError`], fee still paid) or the runtime's.
pub(crate) enum Fail {
    Tx(TxError),
    Rt(RuntimeError),
}

impl From<TxError> for Fail {
    fn from(e: TxError) -> Self {
        Fail::Tx(e)
    }
}

impl From<RuntimeError> for Fail {
    fn from(e: RuntimeError) -> Self {
        Fail::Rt(e)
    }
}

type Res<T> = Result<T, Fail>;

/// Splits a registry result into the runtime's two layers.
fn settle(r: Res<()>) -> Result<Result<(), TxError>, RuntimeError> {
    match r {
        Ok(()) => Ok(Ok(())),
        Err(Fail::Tx(e)) => Ok(Err(e)),
        Err(Fail::Rt(e)) => Err(e),
    }
}

fn precondition(reason: impl Into<String>) -> Fail {
    Fail::Tx(TxError::RegistryPrecondition { reason: reason.into() })
}

/// `Ok(())` if the worker is usable at `height`.
fn ensure_active(rec: &WorkerRecord, height: u64) -> Res<()> {
    if let Some(r) = &rec.revoked {
        return Err(TxError::WorkerInactive { reason: format!("revoked: {r}") }.into());
    }
    if height >= rec.expires_at {
        return Err(
            TxError::WorkerInactive { reason: format!("attestation expired at height {}", rec.expires_at) }.into()
        );
    }
    Ok(())
}

/// Inserts into a sorted vector, keeping it sorted and without duplicates.
fn insert_sorted<T: Ord>(v: &mut Vec<T>, x: T) {
    if let Err(i) = v.binary_search(&x) {
        v.insert(i, x);
    }
}

/// The `registry` module (and the message queue's payload handling).
pub(crate) struct Registry;

/// What a registry call sees of its block.
pub(crate) struct Ctx<'a> {
    pub(crate) env: &'a BlockEnv,
    pub(crate) params: &'a Params,
    pub(crate) chain_id: &'a str,
}

impl Ctx<'_> {
    fn max(&self) -> u32 {
        self.params.registry.max_block_messages
    }
}

impl Registry {
    // ---- reads ----

    pub(crate) async fn policy<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Policy, RuntimeError> {
        s.get(&StateKey::RegistryPolicy, "registry policy").await?.ok_or(RuntimeError::Missing("registry policy"))
    }

    pub(crate) async fn worker<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        id: &WorkerId,
    ) -> Result<Option<WorkerRecord>, RuntimeError> {
        s.get(&StateKey::Worker(*id), "registry worker").await
    }

    pub(crate) async fn worker_ids<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Vec<WorkerId>, RuntimeError> {
        Ok(s.get(&StateKey::Workers, "registry workers").await?.unwrap_or_default())
    }

    pub(crate) async fn keys<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<KeysRecord, RuntimeError> {
        Ok(s.get(&StateKey::Keys, "registry keys").await?.unwrap_or_default())
    }

    pub(crate) async fn cluster<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        id: ClusterId,
    ) -> Result<Option<ClusterRecord>, RuntimeError> {
        s.get(&StateKey::Cluster(id), "registry cluster").await
    }

    pub(crate) async fn cluster_ids<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Vec<ClusterId>, RuntimeError> {
        Ok(s.get(&StateKey::Clusters, "registry clusters").await?.unwrap_or_default())
    }

    pub(crate) async fn collaterals<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Vec<Hash>, RuntimeError> {
        Ok(s.get(&StateKey::Collaterals, "registry collaterals").await?.unwrap_or_default())
    }

    pub(crate) async fn sudo<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Option<Address>, RuntimeError> {
        s.get(&StateKey::RegistrySudo, "registry sudo").await
    }

    pub(crate) async fn genesis_hash<S: StateRead>(&self, s: &Overlay<'_, S>) -> Result<Option<Hash>, RuntimeError> {
        s.get(&StateKey::GenesisHash, "genesis hash").await
    }

    async fn record<S: StateRead>(&self, s: &Overlay<'_, S>, id: &WorkerId) -> Res<WorkerRecord> {
        self.worker(s, id).await?.ok_or(Fail::Tx(TxError::UnknownWorker))
    }

    async fn emit<S: StateRead>(&self, cx: &Ctx<'_>, s: &mut Overlay<'_, S>, to: Topic, body: MessageBody) -> Res<()> {
        mq::emit(s, cx.max(), to, body).await??;
        Ok(())
    }

    // ---- registration ----

    /// `Call::RegisterWorker`.
    pub(crate) async fn register_worker<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        operator: &Address,
        identity: &WorkerId,
        x25519: &X25519Public,
        quote: &[u8],
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(self.register(cx, s, operator, identity, x25519, quote).await)
    }

    async fn register<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        operator: &Address,
        identity: &WorkerId,
        x25519: &X25519Public,
        quote: &[u8],
    ) -> Res<()> {
        let p = &cx.params.registry;
        let height = cx.env.height;
        if quote.len() > p.max_quote_bytes as usize {
            return Err(TxError::AttestationRefused {
                reason: format!("a quote of {} bytes exceeds the limit of {}", quote.len(), p.max_quote_bytes),
            }
            .into());
        }
        let genesis_hash =
            self.genesis_hash(s).await?.ok_or_else(|| precondition("the genesis hash is not recorded yet"))?;
        let policy = self.policy(s).await?;
        let (verified, confidence) = self.verify_quote(s, &policy, quote, cx.env.timestamp_ms / 1000).await?;
        if verified.report_data != report_data(identity, x25519, cx.chain_id, &genesis_hash.0, &operator.0) {
            return Err(TxError::ReportDataMismatch.into());
        }
        let expires_at = height.saturating_add(p.attestation_validity_blocks);
        let rec = match self.worker(s, identity).await? {
            Some(mut r) => {
                if r.operator != *operator {
                    return Err(TxError::NotAuthorized {
                        reason: "the worker is registered by another operator".into(),
                    }
                    .into());
                }
                if r.x25519 != *x25519 && (r.gatekeeper || r.cluster.is_some()) {
                    return Err(precondition("a gatekeeper or cluster member cannot change its x25519 key"));
                }
                r.x25519 = *x25519;
                r.tee = verified.kind;
                r.measurement = verified.measurement;
                r.tcb_status = verified.tcb_status;
                r.advisories = verified.advisory_ids;
                r.confidence = confidence;
                r.attested_at = height;
                r.expires_at = expires_at;
                r.revoked = None;
                r
            }
            None => {
                let mut ids = self.worker_ids(s).await?;
                insert_sorted(&mut ids, *identity);
                s.put(&StateKey::Workers, &ids);
                WorkerRecord {
                    id: *identity,
                    x25519: *x25519,
                    operator: *operator,
                    tee: verified.kind,
                    measurement: verified.measurement,
                    tcb_status: verified.tcb_status,
                    advisories: verified.advisory_ids,
                    confidence,
                    registered_at: height,
                    attested_at: height,
                    expires_at,
                    cluster: None,
                    gatekeeper: false,
                    key_epoch: 0,
                    commitment: None,
                    revoked: None,
                }
            }
        };
        s.put(&StateKey::Worker(*identity), &rec);
        tracing::debug!(
            target: "registry.register",
            height,
            worker = %hex_id(identity),
            tee = %rec.tee,
            confidence = rec.confidence.level(),
            expires_at,
            "worker registered"
        );
        let body = MessageBody::Registered { worker: *identity, confidence, expires_at };
        self.emit(cx, s, Topic::Worker(*identity), body).await
    }

    /// Verifies a quote under `policy`: dev quotes alone, DCAP quotes with each stored collateral,
    /// newest first (the newest collateral's refusal is reported when none verifies).
    async fn verify_quote<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        policy: &Policy,
        quote: &[u8],
        now: u64,
    ) -> Res<(VerifiedQuote, Confidence)> {
        let refused = |e: AttestationError| Fail::Tx(TxError::AttestationRefused { reason: e.to_string() });
        let kind = quote_kind(quote).map_err(|e| refused(e.into()))?;
        if kind.is_simulated() {
            return policy.verify(quote, None, now).map_err(refused);
        }
        let mut first_refusal = None;
        for h in self.collaterals(s).await? {
            let Some(bytes) = s.get_raw(&StateKey::Collateral(h).hash()).await? else { continue };
            let Ok(collateral) = Collateral::from_json(&bytes) else { continue };
            match policy.verify(quote, Some(&collateral), now) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    first_refusal.get_or_insert(e);
                }
            }
        }
        match first_refusal {
            Some(e) => Err(refused(e)),
            None => policy.verify(quote, None, now).map_err(refused),
        }
    }

    /// `Call::UpdateCollateral`: stores the JSON bytes under their SHA-256 and lists them first.
    pub(crate) async fn update_collateral<S: StateRead>(
        &self,
        params: &Params,
        s: &mut Overlay<'_, S>,
        collateral: &[u8],
    ) -> Result<Result<(), TxError>, RuntimeError> {
        let max = params.registry.max_collateral_bytes;
        if collateral.len() > max as usize {
            return Ok(Err(TxError::BadCollateral {
                reason: format!("{} bytes exceeds the limit of {max}", collateral.len()),
            }));
        }
        if let Err(e) = Collateral::from_json(collateral) {
            return Ok(Err(TxError::BadCollateral { reason: e.to_string() }));
        }
        let h = sha256(&[collateral]);
        let mut list = self.collaterals(s).await?;
        list.retain(|x| *x != h);
        list.insert(0, h);
        while list.len() > MAX_COLLATERALS {
            if let Some(old) = list.pop() {
                s.put_raw(StateKey::Collateral(old).hash(), None);
            }
        }
        s.put_raw(StateKey::Collateral(h).hash(), Some(collateral.to_vec()));
        s.put(&StateKey::Collaterals, &list);
        tracing::debug!(target: "registry.collateral", hash = %h, kept = list.len(), "collateral stored");
        Ok(Ok(()))
    }

    // ---- administration ----

    /// `Call::Admin`: only the genesis `registry.sudo` account (dev chains); governance enacts the same
    /// calls through [`Registry::enact`].
    pub(crate) async fn admin<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        signer: &Address,
        call: &AdminCall,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(self.admin_inner(cx, s, signer, call).await)
    }

    async fn admin_inner<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        signer: &Address,
        call: &AdminCall,
    ) -> Res<()> {
        match self.sudo(s).await? {
            Some(sudo) if sudo == *signer => {}
            Some(_) => {
                return Err(TxError::NotAuthorized {
                    reason: "only the registry administrator (genesis registry.sudo) may make admin calls".into(),
                }
                .into());
            }
            None => {
                return Err(TxError::NotAuthorized { reason: "this chain has no registry administrator".into() }.into());
            }
        }
        tracing::info!(target: "registry.admin", height = cx.env.height, call = call.kind(), "admin call");
        self.execute_admin(cx, s, call).await
    }

    /// An administrative call enacted by a passed governance proposal (the governance origin: no
    /// signer to check).
    pub(crate) async fn enact<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        call: &AdminCall,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        tracing::info!(target: "registry.admin", height = cx.env.height, call = call.kind(), "governance call");
        settle(self.execute_admin(cx, s, call).await)
    }

    async fn execute_admin<S: StateRead>(&self, cx: &Ctx<'_>, s: &mut Overlay<'_, S>, call: &AdminCall) -> Res<()> {
        match call {
            AdminCall::SetPolicy { policy } => {
                s.put(&StateKey::RegistryPolicy, policy);
                self.revoke_unaccepted(cx, s, policy).await
            }
            AdminCall::AllowMeasurement { measurement } => {
                let mut policy = self.policy(s).await?;
                policy.measurements.insert(*measurement);
                s.put(&StateKey::RegistryPolicy, &policy);
                Ok(())
            }
            AdminCall::WithdrawMeasurement { measurement } => {
                let mut policy = self.policy(s).await?;
                if !policy.measurements.remove(measurement) {
                    return Err(precondition(format!("measurement {measurement} is not on the allow-list")));
                }
                s.put(&StateKey::RegistryPolicy, &policy);
                self.revoke_unaccepted(cx, s, &policy).await
            }
            AdminCall::AppointGatekeeper { worker } => self.appoint(cx, s, worker).await,
            AdminCall::RemoveGatekeeper { worker } => self.remove_gatekeeper(cx, s, worker).await,
            AdminCall::CreateCluster { cluster } => {
                if self.cluster(s, *cluster).await?.is_some() {
                    return Err(precondition(format!("cluster {cluster} already exists")));
                }
                s.put(&StateKey::Cluster(*cluster), &ClusterRecord { id: *cluster, ..ClusterRecord::default() });
                let mut ids = self.cluster_ids(s).await?;
                insert_sorted(&mut ids, *cluster);
                s.put(&StateKey::Clusters, &ids);
                Ok(())
            }
            AdminCall::AssignWorker { worker, cluster } => self.assign(cx, s, worker, *cluster).await,
            AdminCall::StartRotation => self.start_rotation(cx, s).await,
            AdminCall::PauseCluster { cluster, paused } => {
                let Some(mut rec) = self.cluster(s, *cluster).await? else {
                    return Err(precondition(format!("cluster {cluster} does not exist")));
                };
                if rec.paused == *paused {
                    let state = if *paused { "paused" } else { "running" };
                    return Err(precondition(format!("cluster {cluster} is already {state}")));
                }
                rec.paused = *paused;
                s.put(&StateKey::Cluster(*cluster), &rec);
                Ok(())
            }
            AdminCall::SetClusterContracts { cluster, gas_price, max_code_bytes } => {
                if self.cluster(s, *cluster).await?.is_none() {
                    return Err(precondition(format!("cluster {cluster} does not exist")));
                }
                let chain_max = cx.params.contracts.max_code_bytes;
                if max_code_bytes.is_some_and(|m| m == 0 || m > chain_max) {
                    return Err(precondition(format!("a cluster's code limit must be between 1 and {chain_max}")));
                }
                let mut settings: umbra_types::contracts::ClusterContractParams =
                    s.get(&StateKey::ClusterContracts(*cluster), "contracts cluster params").await?.unwrap_or_default();
                settings.gas_price = *gas_price;
                settings.max_code_bytes = *max_code_bytes;
                s.put(&StateKey::ClusterContracts(*cluster), &settings);
                Ok(())
            }
            AdminCall::SetClusterStorageDeposit { cluster, per_byte } => {
                if self.cluster(s, *cluster).await?.is_none() {
                    return Err(precondition(format!("cluster {cluster} does not exist")));
                }
                let mut settings: umbra_types::contracts::ClusterContractParams =
                    s.get(&StateKey::ClusterContracts(*cluster), "contracts cluster params").await?.unwrap_or_default();
                settings.storage_deposit_per_byte = *per_byte;
                s.put(&StateKey::ClusterContracts(*cluster), &settings);
                Ok(())
            }
        }
    }

    /// Revokes every unrevoked worker whose recorded attestation `policy` no longer accepts.
    async fn revoke_unaccepted<S: StateRead>(&self, cx: &Ctx<'_>, s: &mut Overlay<'_, S>, policy: &Policy) -> Res<()> {
        for id in self.worker_ids(s).await? {
            let Some(rec) = self.worker(s, &id).await? else { continue };
            if rec.revoked.is_some() {
                continue;
            }
            let recorded = VerifiedQuote {
                kind: rec.tee,
                measurement: rec.measurement,
                report_data: [0; 64],
                tcb_status: rec.tcb_status,
                advisory_ids: rec.advisories.clone(),
                registers: Registers::Dev { signer: [0; 32] },
            };
            if let Err(e) = policy.check(&recorded) {
                self.revoke(cx, s, rec, e.to_string()).await?;
            }
        }
        // Revoked workers leave a rotation's pending list, which may complete it.
        self.maybe_activate(cx, s).await
    }

    /// Revokes a worker for a reason found outside the registry (economics: proven equivocation).
    pub(crate) async fn revoke_worker<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        id: &WorkerId,
        reason: &str,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(
            async {
                let rec = self.record(s, id).await?;
                self.revoke(cx, s, rec, reason.to_string()).await
            }
            .await,
        )
    }

    async fn revoke<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        mut rec: WorkerRecord,
        reason: String,
    ) -> Res<()> {
        let id = rec.id;
        let mut keys = self.keys(s).await?;
        if rec.gatekeeper {
            rec.gatekeeper = false;
            keys.gatekeepers.retain(|g| g.0 != id);
        }
        if let Some(rot) = keys.rotation.as_mut() {
            rot.pending.retain(|p| p.0 != id);
        }
        s.put(&StateKey::Keys, &keys);
        if let Some(c) = rec.cluster.take()
            && let Some(mut cluster) = self.cluster(s, c).await?
        {
            cluster.members.retain(|m| m.0 != id);
            s.put(&StateKey::Cluster(c), &cluster);
        }
        rec.revoked = Some(reason.clone());
        s.put(&StateKey::Worker(id), &rec);
        tracing::info!(target: "registry.revoke", height = cx.env.height, worker = %hex_id(&id), %reason, "worker revoked");
        self.emit(cx, s, Topic::Worker(id), MessageBody::Revoked { worker: id, reason }).await
    }
}

fn hex_id(id: &[u8; 32]) -> String {
    Hash(*id).to_string()
}

impl Module for Registry {
    const NAME: &'static str = "registry";

    async fn genesis<S: StateRead>(&self, g: &Genesis, s: &mut Overlay<'_, S>) -> Result<(), RuntimeError> {
        let r = &g.registry;
        s.put(&StateKey::RegistryPolicy, &r.policy);
        if r.collateral.len() > MAX_COLLATERALS {
            return Err(RuntimeError::Genesis(format!("at most {MAX_COLLATERALS} registry collateral documents")));
        }
        let mut hashes = Vec::new();
        for (i, c) in r.collateral.iter().enumerate() {
            Collateral::from_json(c.as_bytes())
                .map_err(|e| RuntimeError::Genesis(format!("registry collateral {i}: {e}")))?;
            let h = sha256(&[c.as_bytes()]);
            if !hashes.contains(&h) {
                s.put_raw(StateKey::Collateral(h).hash(), Some(c.as_bytes().to_vec()));
                hashes.push(h);
            }
        }
        s.put(&StateKey::Collaterals, &hashes);
        if let Some(sudo) = &r.sudo {
            s.put(&StateKey::RegistrySudo, sudo);
        }
        Ok(())
    }
}
