//! The host's side of state transfer to a joining member (see [`crate::snapshot`]): ask the peers for a
//! sealed snapshot, fetch the proofs and later messages it needs, hand them to the enclave, and tell the
//! follow loop whether to wait or fall back to replaying the history.

use super::Host;
use std::time::{Duration, Instant};
use tracing::{info, warn};
use umbra_types::registry::Topic;
use umbra_types::state_keys::StateKey;

/// Least time between two rounds of snapshot requests to the peers.
const SNAPSHOT_RETRY: Duration = Duration::from_secs(2);
/// Rounds of snapshot requests (every peer once, at most every [`SNAPSHOT_RETRY`]) before falling back to
/// replaying the history while some peer answers but no answer verifies yet (last command not reported yet,
/// snapshot ahead of this worker).
const SNAPSHOT_ROUNDS: u32 = 30;

/// What one snapshot attempt came to.
enum Attempt {
    /// Installed: the cluster is caught up.
    Installed,
    /// Kept for the next round (it cannot be checked yet).
    Wait,
    /// Refused: ask the next peer.
    Refused,
}

impl Host {
    /// Catches a joined cluster up from a member's snapshot (see [`crate::snapshot`]), asking each of
    /// `--snapshot-peer` in turn. `Ok(true)` once installed; `Ok(false)` to try again later (the chain is
    /// followed meanwhile); `Err` to fall back to replaying the history (no peers, or none verified after
    /// [`SNAPSHOT_ROUNDS`] rounds).
    pub(super) async fn catch_up(&mut self, topic: Topic) -> Result<bool, String> {
        if self.config.snapshot_peers.is_empty() {
            return Err("no --snapshot-peer given".into());
        }
        if self.last_snapshot_try.is_some_and(|t| t.elapsed() < SNAPSHOT_RETRY) {
            return Ok(false);
        }
        if self.snapshot_rounds >= SNAPSHOT_ROUNDS {
            return Err(format!("no member gave a snapshot that verifies in {SNAPSHOT_ROUNDS} rounds"));
        }
        self.last_snapshot_try = Some(Instant::now());
        self.snapshot_rounds += 1;
        let client = match &self.peer_client {
            Some(c) => c.clone(),
            None => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let c = reqwest::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client for snapshots: {e}"))?;
                self.peer_client = Some(c.clone());
                c
            }
        };
        let record = match self.rpc.value(&StateKey::Worker(self.enclave.id())).await {
            Ok(r) => r,
            Err(e) => {
                warn!(target: "worker.host", "reading this worker's record for a snapshot request: {e}");
                return Ok(false);
            }
        };
        let Some(request) = self.enclave.snapshot_request(record) else { return Ok(false) };
        info!(target: "worker.host", ?topic, round = self.snapshot_rounds, "asking members for a sealed contract snapshot");
        let mut answered = false;
        // A snapshot kept from the last round (ahead of this worker, or its last command not reported yet).
        if let Some((url, reply)) = self.pending_snapshot.take() {
            answered = true;
            match self.try_snapshot(topic, &url, reply).await {
                Attempt::Installed => return Ok(true),
                Attempt::Wait => return Ok(false),
                Attempt::Refused => {}
            }
        }
        for url in self.config.snapshot_peers.clone() {
            let reply = match crate::snapshot::fetch(&client, &url, &request).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(target: "worker.host", "no snapshot from {e}");
                    continue;
                }
            };
            answered = true;
            match self.try_snapshot(topic, &url, reply).await {
                Attempt::Installed => return Ok(true),
                Attempt::Wait => return Ok(false),
                Attempt::Refused => {}
            }
        }
        if !answered {
            // No peer is a caught-up member of the cluster (a new cluster, or peers that are not members):
            // the history is all there is.
            return Err("no peer is a caught-up member of this cluster".into());
        }
        Ok(false)
    }

    /// Fetches the proofs and later messages `reply` needs and hands them to the enclave. A reply that cannot
    /// be checked yet (ahead of this worker, its last command not reported on chain yet, the node unreachable)
    /// is kept for the next round.
    async fn try_snapshot(&mut self, topic: Topic, url: &str, reply: crate::snapshot::SnapshotReply) -> Attempt {
        use crate::snapshot::SnapshotError;
        if reply.height > self.enclave.height() {
            info!(target: "worker.host", %url, snapshot = reply.height, ours = self.enclave.height(), "the member's snapshot is ahead; following the chain to it first");
            self.pending_snapshot = Some((url.to_string(), reply));
            return Attempt::Wait;
        }
        let keys = match self.enclave.snapshot_keys(&reply) {
            Ok(k) => k,
            Err(e) => {
                warn!(target: "worker.host", %url, "snapshot refused: {e}; trying another member");
                return Attempt::Refused;
            }
        };
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            match self.rpc.value(&key).await {
                Ok(v) => values.push((key, v)),
                Err(e) => {
                    warn!(target: "worker.host", "reading the chain's records for a snapshot: {e}");
                    self.pending_snapshot = Some((url.to_string(), reply));
                    return Attempt::Wait;
                }
            }
        }
        let batches = match self.fetch_topic(topic, reply.height + 1, self.enclave.height()).await {
            Ok(b) => b,
            Err(e) => {
                warn!(target: "worker.host", "fetching the messages after a snapshot: {e}");
                self.pending_snapshot = Some((url.to_string(), reply));
                return Attempt::Wait;
            }
        };
        match self.enclave.install_snapshot(&reply, &values, &batches) {
            Ok(n) => {
                info!(target: "worker.host", %url, contracts = n, height = reply.height, "caught up from a member's snapshot");
                self.publish_views();
                Attempt::Installed
            }
            Err(e @ SnapshotError::NotReported { .. }) => {
                info!(target: "worker.host", %url, "snapshot not verifiable yet: {e}");
                self.pending_snapshot = Some((url.to_string(), reply));
                Attempt::Wait
            }
            Err(e) => {
                warn!(target: "worker.host", %url, "snapshot refused: {e}; trying another member");
                Attempt::Refused
            }
        }
    }
}
