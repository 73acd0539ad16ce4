//! The enclave's side of state transfer to a joining member (see [`crate::snapshot`]): the signed request, the
//! checks of a member's snapshot against the chain, its installation, and the view a member serves from.

use super::Enclave;
use crate::snapshot::{
    Proven, SnapshotError, SnapshotReply, SnapshotRequest, SnapshotView, check_member, needed_keys, open_reply,
    request_signing_bytes, verify_contracts,
};
use crate::state::TopicCursor;
use crate::verify::{decode_counter, decode_value, verify_value};
use tracing::info;
use umbra_rpc::{StateValueResponse, SyncResponse};
use umbra_types::registry::{Origin, Topic};
use umbra_types::state_keys::StateKey;
use umbra_types::{Hash, WorkerRecord};

impl Enclave {
    /// A signed request for a snapshot of this worker's cluster, given a `state_getValue(Worker(id))` answer
    /// (the member checks it); `None` when the worker is in no cluster.
    pub fn snapshot_request(&self, record: StateValueResponse) -> Option<SnapshotRequest> {
        let cluster = self.file.state.cluster?;
        let me = self.id();
        let bytes = request_signing_bytes(&self.file.state.chain_id, &me, cluster, &record.header.hash());
        let signature = hex::encode(self.identity.sign(&bytes));
        Some(SnapshotRequest { requester: Hash(me), cluster, record, signature })
    }

    /// The state keys whose proofs [`Enclave::install_snapshot`] needs for `reply` (it is opened to list them).
    pub fn snapshot_keys(&self, reply: &SnapshotReply) -> Result<Vec<StateKey>, SnapshotError> {
        let plain = open_reply(&self.file.state.chain_id, &self.id(), self.x25519.expose(), reply)?;
        let mut keys = needed_keys(&plain, &reply.member);
        keys.push(StateKey::TopicNext(Topic::Cluster(reply.cluster)));
        keys.push(StateKey::EgressNext(Origin::Cluster(reply.cluster)));
        Ok(keys)
    }

    /// Catches a just-joined cluster up from a member's snapshot instead of replaying its history: checks the
    /// member (an active member of this worker's cluster, by its proven record), opens the snapshot, checks every
    /// contract against the chain's records (`values`: `state_getValue` answers for [`Enclave::snapshot_keys`],
    /// each verified here), then applies the cluster topic's messages after the snapshot's block (`batches`:
    /// that topic from the snapshot's height + 1 to the applied height, verified like a replay) and follows
    /// the topic. Refused whole on any failure; nothing changes then.
    pub fn install_snapshot(
        &mut self,
        reply: &SnapshotReply,
        values: &[(StateKey, StateValueResponse)],
        batches: &[SyncResponse],
    ) -> Result<usize, SnapshotError> {
        let st = &self.file.state;
        let me = self.id();
        let cluster = st.cluster.ok_or_else(|| SnapshotError::NotReady("this worker is in no cluster".into()))?;
        let topic = Topic::Cluster(cluster);
        if st.topics.get(&topic) != Some(&TopicCursor::Replay) {
            return Err(SnapshotError::NotReady(format!("cluster {cluster} is not waiting to be caught up")));
        }
        if reply.cluster != cluster {
            return Err(SnapshotError::NotAMember {
                worker: Hash(reply.member),
                cluster,
                reason: format!("the snapshot is of cluster {}", reply.cluster),
            });
        }
        if reply.member == me {
            return Err(SnapshotError::Malformed("a snapshot made by this worker itself".into()));
        }
        let plain = open_reply(&st.chain_id, &me, self.x25519.expose(), reply)?;
        if plain.height > st.height {
            return Err(SnapshotError::Ahead { snapshot: plain.height, ours: st.height });
        }
        let mut proven = Proven::new();
        let mut member_at = 0;
        let mut topic_next = None;
        let mut egress_next = 0;
        for (key, resp) in values {
            let (at, value) = verify_value(&self.probe.0, key, resp)?;
            if *key == StateKey::Worker(reply.member) {
                member_at = at;
            }
            if *key == StateKey::TopicNext(topic) {
                topic_next = Some((at, decode_counter(value.as_deref())?));
            }
            if *key == StateKey::EgressNext(Origin::Cluster(cluster)) {
                egress_next = decode_counter(value.as_deref())?;
            }
            proven.insert(key.clone(), value);
        }
        let member = proven
            .get(&StateKey::Worker(reply.member))
            .cloned()
            .flatten()
            .map(|b| decode_value::<WorkerRecord>(&b, "worker record"))
            .transpose()?;
        check_member(member.as_ref(), &reply.member, cluster, member_at)?;
        let (contracts, agents) = verify_contracts(&plain, &proven)?;
        // The snapshot's block must be on this worker's chain.
        if plain.height == st.height {
            if plain.last_hash != st.last_hash {
                return Err(SnapshotError::OtherChain(format!("block {} is {} here", plain.height, st.last_hash)));
            }
        } else if let Some(first) = batches.iter().flat_map(|b| b.blocks.iter()).next()
            && first.header.parent != plain.last_hash
        {
            return Err(SnapshotError::OtherChain(format!(
                "block {} is {} here, the snapshot names {}",
                plain.height, first.header.parent, plain.last_hash
            )));
        }
        let messages = self.verify_history(topic, plain.height.saturating_add(1), plain.topic_next, batches)?;
        let next = plain.topic_next.saturating_add(messages.len() as u64);
        let (at, chain_next) = topic_next.ok_or_else(|| {
            SnapshotError::OtherChain(format!(
                "no proof of the cluster topic's counter (TopicNext({topic:?})) was supplied"
            ))
        })?;
        if chain_next < next || (at == st.height && chain_next != next) {
            return Err(SnapshotError::OtherChain(format!(
                "the cluster topic would continue at message {next}, the chain counts {chain_next} at height {at}"
            )));
        }
        let mut file = self.file.clone();
        let fs = &mut file.state;
        fs.contracts.contracts.retain(|_, c| c.cluster != cluster);
        let count = contracts.len();
        fs.contracts.contracts.extend(contracts);
        // The cluster's egress numbering: the member's, or the chain's if the chain has consumed more.
        fs.contracts.cluster_seq.insert(cluster, plain.cluster_seq.max(egress_next));
        fs.agents.extend(agents);
        let mut discarded = Vec::new();
        for (h, m) in &messages {
            self.handle(&mut file.state, *h, m, &mut discarded);
        }
        file.outbox.extend(discarded.into_iter().filter(|e| e.egress.origin == Origin::Worker(me)));
        file.state.topics.insert(topic, TopicCursor::Next(next));
        self.save(&file).map_err(|e| SnapshotError::Persist(e.to_string()))?;
        self.file = file;
        info!(target: "worker.snapshot", cluster, member = %Hash(reply.member), contracts = count, snapshot_height = plain.height, later_messages = messages.len(), "installed a contract snapshot verified against the chain's state roots");
        Ok(count)
    }

    /// A copy of the cluster's contracts and the chain view for [`crate::snapshot::SnapshotService`].
    pub fn snapshot_view(&self) -> SnapshotView {
        self.snapshot_view_with(self.shared_contracts())
    }

    /// [`Enclave::snapshot_view`] over an already taken copy of the contracts.
    pub(crate) fn snapshot_view_with(&self, contracts: crate::contracts::SharedContracts) -> SnapshotView {
        let s = &self.file.state;
        let topic_next = s.cluster.and_then(|c| match s.topics.get(&Topic::Cluster(c)) {
            Some(TopicCursor::Next(n)) => Some(*n),
            _ => None,
        });
        SnapshotView {
            chain_id: s.chain_id.clone(),
            identity: self.identity.clone(),
            height: s.height,
            last_hash: s.last_hash,
            cluster: s.cluster,
            topic_next,
            cluster_seq: s.cluster.and_then(|c| s.contracts.cluster_seq.get(&c).copied()).unwrap_or(0),
            contracts,
            light: self.light.clone(),
        }
    }
}
