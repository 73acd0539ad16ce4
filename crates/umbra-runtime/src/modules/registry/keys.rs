//! Gatekeepers, clusters and key epochs: the admin calls that appoint, assign and rotate, and the
//! egress payloads that answer them (flows 1-4 of `docs/worker-protocol.md`), plus rollback
//! commitments (flow 5).

use super::{Ctx, Fail, Registry, Res, ensure_active, hex_id, insert_sorted, precondition, settle};
use crate::{Overlay, RuntimeError, StateRead};
use std::collections::BTreeSet;
use umbra_types::registry::{ClusterKeys, ClusterRecord, KeyShare, Rotation, WorkerIdHex, X25519Public};
use umbra_types::state_keys::StateKey;
use umbra_types::{
    ClusterId, Egress, EgressPayload, KeyEpoch, MessageBody, Origin, Topic, TxError, WorkerId, WorkerRecord,
};

impl Registry {
    /// Active members of a cluster with their X25519 keys.
    pub(super) async fn active_members<S: StateRead>(
        &self,
        s: &Overlay<'_, S>,
        c: &ClusterRecord,
        height: u64,
    ) -> Result<Vec<(WorkerId, X25519Public)>, RuntimeError> {
        let mut out = Vec::new();
        for m in &c.members {
            if let Some(r) = self.worker(s, &m.0).await?
                && r.is_active(height)
            {
                out.push((r.id, r.x25519));
            }
        }
        Ok(out)
    }

    pub(super) async fn appoint<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        worker: &WorkerId,
    ) -> Res<()> {
        let mut keys = self.keys(s).await?;
        if keys.rotation.is_some() {
            return Err(TxError::RotationInProgress.into());
        }
        let mut rec = self.record(s, worker).await?;
        ensure_active(&rec, cx.env.height)?;
        if rec.gatekeeper {
            return Err(precondition("the worker is already a gatekeeper"));
        }
        rec.gatekeeper = true;
        keys.gatekeepers.push(WorkerIdHex(*worker));
        s.put(&StateKey::Worker(*worker), &rec);
        s.put(&StateKey::Keys, &keys);
        // Before the first master key every gatekeeper is asked to generate one; the first to land
        // wins and the others get it shared (see `first_master_key`).
        let generate = keys.key_epoch == 0;
        let body = MessageBody::GatekeeperAppointed { worker: *worker, generate };
        self.emit(cx, s, Topic::Worker(*worker), body).await?;
        if !generate {
            let body = MessageBody::ShareMaster { worker: *worker, x25519: rec.x25519, key_epoch: keys.key_epoch };
            self.emit(cx, s, Topic::Gatekeepers, body).await?;
        }
        Ok(())
    }

    pub(super) async fn remove_gatekeeper<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        worker: &WorkerId,
    ) -> Res<()> {
        let mut keys = self.keys(s).await?;
        if keys.rotation.is_some() {
            return Err(TxError::RotationInProgress.into());
        }
        let mut rec = self.record(s, worker).await?;
        if !rec.gatekeeper {
            return Err(precondition("the worker is not a gatekeeper"));
        }
        if keys.gatekeepers.len() <= 1 {
            return Err(precondition("the last gatekeeper cannot be removed"));
        }
        rec.gatekeeper = false;
        keys.gatekeepers.retain(|g| g.0 != *worker);
        s.put(&StateKey::Worker(*worker), &rec);
        s.put(&StateKey::Keys, &keys);
        self.emit(cx, s, Topic::Worker(*worker), MessageBody::GatekeeperRemoved { worker: *worker }).await
    }

    pub(super) async fn assign<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        worker: &WorkerId,
        cluster: ClusterId,
    ) -> Res<()> {
        let keys = self.keys(s).await?;
        if keys.rotation.is_some() {
            return Err(TxError::RotationInProgress.into());
        }
        let mut c = self.cluster(s, cluster).await?.ok_or_else(|| precondition(format!("no cluster {cluster}")))?;
        let mut rec = self.record(s, worker).await?;
        ensure_active(&rec, cx.env.height)?;
        if let Some(other) = rec.cluster {
            return Err(precondition(format!("the worker is already a member of cluster {other}")));
        }
        rec.cluster = Some(cluster);
        insert_sorted(&mut c.members, WorkerIdHex(*worker));
        s.put(&StateKey::Worker(*worker), &rec);
        s.put(&StateKey::Cluster(cluster), &c);
        self.emit(cx, s, Topic::Worker(*worker), MessageBody::AssignedToCluster { worker: *worker, cluster }).await?;
        if keys.key_epoch > 0 {
            let body = MessageBody::ClusterKeyRequest {
                cluster,
                key_epoch: keys.key_epoch,
                members: vec![(*worker, rec.x25519)],
            };
            self.emit(cx, s, Topic::Gatekeepers, body).await?;
        }
        Ok(())
    }

    pub(super) async fn start_rotation<S: StateRead>(&self, cx: &Ctx<'_>, s: &mut Overlay<'_, S>) -> Res<()> {
        let height = cx.env.height;
        let mut keys = self.keys(s).await?;
        if keys.rotation.is_some() {
            return Err(TxError::RotationInProgress.into());
        }
        if keys.key_epoch == 0 {
            return Err(precondition("there is no master key to rotate"));
        }
        let mut leader = None;
        let mut gatekeepers = Vec::new();
        let mut pending = BTreeSet::new();
        for g in &keys.gatekeepers {
            let Some(r) = self.worker(s, &g.0).await? else { continue };
            if !r.is_active(height) {
                continue;
            }
            if leader.is_none() && r.key_epoch >= keys.key_epoch {
                leader = Some(r.id);
            }
            gatekeepers.push((r.id, r.x25519));
            pending.insert(WorkerIdHex(r.id));
        }
        let leader = leader.ok_or_else(|| precondition("no active gatekeeper holds the current master key"))?;
        let mut clusters = Vec::new();
        for id in self.cluster_ids(s).await? {
            let Some(c) = self.cluster(s, id).await? else { continue };
            let members = self.active_members(s, &c, height).await?;
            pending.extend(members.iter().map(|(m, _)| WorkerIdHex(*m)));
            clusters.push((id, members));
        }
        let new_epoch = keys.key_epoch.saturating_add(1);
        keys.rotation = Some(Rotation {
            new_epoch,
            leader: WorkerIdHex(leader),
            started_at: height,
            master_public: None,
            gatekeeper_key: None,
            pending: pending.into_iter().collect(),
        });
        s.put(&StateKey::Keys, &keys);
        let body = MessageBody::RotationStarted { new_epoch, leader, gatekeepers, clusters };
        self.emit(cx, s, Topic::Gatekeepers, body).await
    }

    // ---- egress payloads ----

    /// Runs an admitted egress message's payload (its sequence number is already consumed).
    pub(crate) async fn egress<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        egress: &Egress,
    ) -> Result<Result<(), TxError>, RuntimeError> {
        settle(self.egress_inner(cx, s, egress).await)
    }

    pub(super) async fn egress_inner<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        egress: &Egress,
    ) -> Res<()> {
        let height = cx.env.height;
        tracing::debug!(
            target: "registry.egress",
            height,
            origin = ?egress.origin,
            seq = egress.seq,
            payload = egress.payload.kind(),
            "egress"
        );
        match (&egress.origin, &egress.payload) {
            (Origin::Worker(id), payload) => {
                let mut rec = self.record(s, id).await?;
                ensure_active(&rec, height)?;
                match payload {
                    EgressPayload::StateCommitment { height: at, state_hash } => {
                        if *at > height {
                            return Err(precondition("a commitment cannot be for a future height"));
                        }
                        if let Some((prev, _)) = rec.commitment
                            && *at <= prev
                        {
                            return Err(precondition(format!(
                                "commitment at height {at} is not above the recorded one at {prev}"
                            )));
                        }
                        rec.commitment = Some((*at, *state_hash));
                        s.put(&StateKey::Worker(*id), &rec);
                        Ok(())
                    }
                    EgressPayload::MasterKey { key_epoch, master_public, gatekeeper_key, shares, .. } => {
                        self.first_master_key(cx, s, rec, *key_epoch, master_public, gatekeeper_key, shares).await
                    }
                    EgressPayload::KeyAck { key_epoch } => self.key_ack(cx, s, rec, *key_epoch).await,
                    other => Err(precondition(format!("{} is not accepted from a worker", other.kind()))),
                }
            }
            (
                Origin::Gatekeeper,
                EgressPayload::MasterKey { key_epoch, master_public, gatekeeper_key, shares, clusters },
            ) => self.rotation_master_key(cx, s, *key_epoch, master_public, gatekeeper_key, shares, clusters).await,
            (Origin::Gatekeeper, EgressPayload::MasterShare { key_epoch, share }) => {
                let keys = self.keys(s).await?;
                if *key_epoch == 0 || *key_epoch != keys.key_epoch {
                    return Err(precondition(format!(
                        "the share is for key epoch {key_epoch}, the current one is {}",
                        keys.key_epoch
                    )));
                }
                let (Some(master_public), Some(gatekeeper_key)) = (keys.master_public, keys.gatekeeper_key) else {
                    return Err(precondition("the current key epoch has no public keys"));
                };
                let to = self.record(s, &share.to).await?;
                ensure_active(&to, height)?;
                if !to.gatekeeper {
                    return Err(precondition("the share's recipient is not a gatekeeper"));
                }
                let body = MessageBody::MasterKeyShare {
                    key_epoch: *key_epoch,
                    master_public: master_public.0,
                    gatekeeper_key: gatekeeper_key.0,
                    share: share.clone(),
                };
                self.emit(cx, s, Topic::Worker(share.to), body).await
            }
            (Origin::Gatekeeper, EgressPayload::ClusterKeys { key_epoch, keys: ck }) => {
                let current = self.keys(s).await?.key_epoch;
                if *key_epoch == 0 || *key_epoch != current {
                    return Err(precondition(format!(
                        "the cluster keys are for key epoch {key_epoch}, the current one is {current}"
                    )));
                }
                self.cluster_keys(cx, s, *key_epoch, ck).await
            }
            (origin, payload) => {
                Err(precondition(format!("{} is not accepted from origin {origin:?}", payload.kind())))
            }
        }
    }

    /// Flow 1: the first master key, from a gatekeeper, while there is none.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn first_master_key<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        mut rec: WorkerRecord,
        key_epoch: KeyEpoch,
        master_public: &X25519Public,
        gatekeeper_key: &[u8; 32],
        shares: &[KeyShare],
    ) -> Res<()> {
        let height = cx.env.height;
        let mut keys = self.keys(s).await?;
        if keys.key_epoch != 0 {
            return Err(precondition("a master key exists: only a rotation (origin gatekeeper) makes a new one"));
        }
        if !rec.gatekeeper {
            return Err(precondition("only a gatekeeper may create the first master key"));
        }
        if key_epoch != 1 {
            return Err(precondition("the first master key is of key epoch 1"));
        }
        keys.key_epoch = 1;
        keys.master_public = Some(WorkerIdHex(*master_public));
        keys.gatekeeper_key = Some(WorkerIdHex(*gatekeeper_key));
        rec.key_epoch = 1;
        s.put(&StateKey::Keys, &keys);
        s.put(&StateKey::Worker(rec.id), &rec);
        tracing::info!(target: "registry.keys", height, creator = %hex_id(&rec.id), "key epoch 1 created");
        self.emit(cx, s, Topic::Broadcast, MessageBody::KeyEpochActivated { key_epoch: 1, retired: None }).await?;
        // Other gatekeepers appointed before the key existed get it: from the shares if any, otherwise
        // through the gatekeepers.
        let mut served = BTreeSet::from([rec.id]);
        for share in shares {
            if served.contains(&share.to) {
                continue;
            }
            let Some(to) = self.worker(s, &share.to).await? else { continue };
            if to.gatekeeper && to.is_active(height) {
                served.insert(to.id);
                let body = MessageBody::MasterKeyShare {
                    key_epoch: 1,
                    master_public: *master_public,
                    gatekeeper_key: *gatekeeper_key,
                    share: share.clone(),
                };
                self.emit(cx, s, Topic::Worker(to.id), body).await?;
            }
        }
        for g in &keys.gatekeepers {
            if served.contains(&g.0) {
                continue;
            }
            let Some(r) = self.worker(s, &g.0).await? else { continue };
            if r.is_active(height) {
                let body = MessageBody::ShareMaster { worker: r.id, x25519: r.x25519, key_epoch: 1 };
                self.emit(cx, s, Topic::Gatekeepers, body).await?;
            }
        }
        for id in self.cluster_ids(s).await? {
            let Some(c) = self.cluster(s, id).await? else { continue };
            let members = self.active_members(s, &c, height).await?;
            if !members.is_empty() {
                let body = MessageBody::ClusterKeyRequest { cluster: id, key_epoch: 1, members };
                self.emit(cx, s, Topic::Gatekeepers, body).await?;
            }
        }
        Ok(())
    }

    /// Flow 4: the rotation leader's new master key (signed with the old gatekeeper key).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn rotation_master_key<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        key_epoch: KeyEpoch,
        master_public: &X25519Public,
        gatekeeper_key: &[u8; 32],
        shares: &[KeyShare],
        clusters: &[ClusterKeys],
    ) -> Res<()> {
        let height = cx.env.height;
        let mut keys = self.keys(s).await?;
        let Some(rot) = keys.rotation.as_mut() else {
            return Err(precondition("no key rotation is in progress"));
        };
        if key_epoch != rot.new_epoch {
            return Err(precondition(format!("the rotation creates key epoch {}, not {key_epoch}", rot.new_epoch)));
        }
        if rot.master_public.is_some() {
            return Err(precondition("the rotation's master key was already published"));
        }
        rot.master_public = Some(WorkerIdHex(*master_public));
        rot.gatekeeper_key = Some(WorkerIdHex(*gatekeeper_key));
        s.put(&StateKey::Keys, &keys);
        tracing::info!(target: "registry.keys", height, key_epoch, "rotation key published");
        for share in shares {
            let Some(to) = self.worker(s, &share.to).await? else { continue };
            if to.gatekeeper && to.is_active(height) {
                let body = MessageBody::MasterKeyShare {
                    key_epoch,
                    master_public: *master_public,
                    gatekeeper_key: *gatekeeper_key,
                    share: share.clone(),
                };
                self.emit(cx, s, Topic::Worker(to.id), body).await?;
            }
        }
        for ck in clusters {
            self.cluster_keys(cx, s, key_epoch, ck).await?;
        }
        Ok(())
    }

    /// Flow 3: records a cluster's public halves for `key_epoch` (the first time; later they must
    /// match) and forwards each share to its member.
    pub(super) async fn cluster_keys<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        key_epoch: KeyEpoch,
        ck: &ClusterKeys,
    ) -> Res<()> {
        let height = cx.env.height;
        let id = ck.cluster;
        let mut c = self.cluster(s, id).await?.ok_or_else(|| precondition(format!("no cluster {id}")))?;
        match c.keys.iter().find(|(e, _)| *e == key_epoch) {
            Some((_, public)) if *public != ck.public => {
                return Err(precondition(format!(
                    "cluster {id}'s public key for key epoch {key_epoch} differs from the recorded one"
                )));
            }
            Some(_) => {}
            None => {
                c.keys.push((key_epoch, ck.public));
                s.put(&StateKey::Cluster(id), &c);
            }
        }
        for share in &ck.shares {
            if c.members.binary_search(&WorkerIdHex(share.to)).is_err() {
                continue;
            }
            let Some(to) = self.worker(s, &share.to).await? else { continue };
            if to.is_active(height) {
                let body = MessageBody::ClusterKey { cluster: id, key_epoch, public: ck.public, share: share.clone() };
                self.emit(cx, s, Topic::Worker(to.id), body).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn key_ack<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
        mut rec: WorkerRecord,
        key_epoch: KeyEpoch,
    ) -> Res<()> {
        let mut keys = self.keys(s).await?;
        let current = keys.key_epoch;
        match keys.rotation.as_mut() {
            Some(rot) if rot.new_epoch == key_epoch => {
                if rot.master_public.is_none() {
                    return Err(precondition("the new key epoch's master key is not published yet"));
                }
                rot.pending.retain(|p| p.0 != rec.id);
                s.put(&StateKey::Keys, &keys);
            }
            _ if key_epoch == current && current > 0 => {}
            _ => {
                return Err(precondition(format!(
                    "key epoch {key_epoch} is neither the current one ({current}) nor one being created"
                )));
            }
        }
        rec.key_epoch = rec.key_epoch.max(key_epoch);
        s.put(&StateKey::Worker(rec.id), &rec);
        self.maybe_activate(cx, s).await
    }

    /// Completes a rotation whose key is published once nobody is pending, or once only cluster
    /// members are after the timeout.
    pub(super) async fn maybe_activate<S: StateRead>(&self, cx: &Ctx<'_>, s: &mut Overlay<'_, S>) -> Res<()> {
        let mut keys = self.keys(s).await?;
        let Some(rot) = keys.rotation.clone() else { return Ok(()) };
        let (Some(master_public), Some(gatekeeper_key)) = (rot.master_public, rot.gatekeeper_key) else {
            return Ok(());
        };
        let done = if rot.pending.is_empty() {
            true
        } else if cx.env.height >= rot.started_at.saturating_add(cx.params.registry.rotation_timeout_blocks) {
            let mut gatekeeper_pending = false;
            for p in &rot.pending {
                if self.worker(s, &p.0).await?.is_some_and(|r| r.gatekeeper) {
                    gatekeeper_pending = true;
                    break;
                }
            }
            !gatekeeper_pending
        } else {
            false
        };
        if !done {
            return Ok(());
        }
        let retired = keys.key_epoch;
        keys.key_epoch = rot.new_epoch;
        keys.master_public = Some(master_public);
        keys.gatekeeper_key = Some(gatekeeper_key);
        keys.rotation = None;
        s.put(&StateKey::Keys, &keys);
        for id in self.cluster_ids(s).await? {
            if let Some(mut c) = self.cluster(s, id).await? {
                c.keys.retain(|(e, _)| *e == rot.new_epoch);
                s.put(&StateKey::Cluster(id), &c);
            }
        }
        tracing::info!(target: "registry.keys", height = cx.env.height, key_epoch = rot.new_epoch, retired, "key epoch activated");
        let body = MessageBody::KeyEpochActivated { key_epoch: rot.new_epoch, retired: Some(retired) };
        self.emit(cx, s, Topic::Broadcast, body).await
    }

    /// End of block: a rotation past its timeout with only cluster members pending completes, and a
    /// scheduled rotation starts (every `rotation_interval_blocks`). Skipped (retried next block) when the
    /// block has no room left for the messages.
    pub(crate) async fn end_block_with<S: StateRead>(
        &self,
        cx: &Ctx<'_>,
        s: &mut Overlay<'_, S>,
    ) -> Result<(), RuntimeError> {
        if s.messages().len() >= cx.max() as usize {
            return Ok(());
        }
        s.checkpoint();
        match self.maybe_activate(cx, s).await {
            Ok(()) => s.commit_checkpoint(),
            Err(Fail::Tx(_)) => s.revert(),
            Err(Fail::Rt(e)) => return Err(e),
        }
        let interval = cx.params.registry.rotation_interval_blocks;
        if interval > 0 && cx.env.height.is_multiple_of(interval) && s.messages().len() < cx.max() as usize {
            let keys = self.keys(s).await?;
            if keys.key_epoch > 0 && keys.rotation.is_none() {
                s.checkpoint();
                match self.start_rotation(cx, s).await {
                    Ok(()) => {
                        tracing::info!(target: "registry.keys", height = cx.env.height, "scheduled key rotation started");
                        s.commit_checkpoint()
                    }
                    // No active gatekeeper holds the key: nothing to rotate with; try at the next multiple.
                    Err(Fail::Tx(_)) => s.revert(),
                    Err(Fail::Rt(e)) => return Err(e),
                }
            }
        }
        Ok(())
    }
}
