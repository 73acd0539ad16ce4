//! Egress receipts: one per outbound HTTP exchange, batched per agent under a Merkle root that the worker
//! commits on chain, with inclusion proofs so an owner can audit what the agent sent where.

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use umbra_crypto::{MerkleProof, merkle_proof, merkle_root, verify_merkle_proof};
use umbra_types::{Hash, sha256};

/// The record of one outbound HTTP exchange (a redirect hop is its own exchange).
///
/// Hashes let an owner who holds the request or response check it against the receipt without the receipt
/// revealing it: see [`request_hash`] and [`response_hash`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Receipt {
    /// The agent (contract id) that made the request.
    pub agent: [u8; 32],
    /// HTTP method.
    pub method: String,
    /// The URL the request was sent to.
    pub url: String,
    /// [`request_hash`] of what was sent.
    pub request_hash: [u8; 32],
    /// [`response_hash`] of what was received (for a response cut off at a limit: of the part read).
    pub response_hash: [u8; 32],
    /// HTTP status, 0 if no response arrived.
    pub status: u16,
    /// Request body bytes sent.
    pub request_bytes: u64,
    /// Response body bytes read.
    pub response_bytes: u64,
    /// Wall-clock time the exchange started, in milliseconds since the Unix epoch (receipts are off-chain
    /// facts, not consensus data).
    pub time_ms: u64,
    /// SHA-256 of the server's leaf certificate (DER), for https.
    pub tls_cert_sha256: Option<[u8; 32]>,
    /// Why the exchange failed, if it did (timeout, size limit, ...); the request may still have been sent.
    pub error: Option<String>,
}

impl Receipt {
    /// The Merkle leaf of this receipt: SHA-256 of its borsh encoding.
    pub fn leaf(&self) -> Hash {
        sha256(&[&borsh::to_vec(self).unwrap_or_default()])
    }
}

/// `sha256(borsh((method, url, headers, body)))` with the headers the agent set, in its order (the client adds
/// only `host`, `content-length` and `accept`-style defaults of reqwest, which agents may not set themselves).
pub fn request_hash(method: &str, url: &str, headers: &[(String, String)], body: &[u8]) -> [u8; 32] {
    let bytes = borsh::to_vec(&(method, url, headers, body)).unwrap_or_default();
    sha256(&[&bytes]).0
}

/// `sha256(borsh((status, headers, body)))`, headers in the order received.
pub fn response_hash(status: u16, headers: &[(String, String)], body: &[u8]) -> [u8; 32] {
    let bytes = borsh::to_vec(&(status, headers, body)).unwrap_or_default();
    sha256(&[&bytes]).0
}

/// Receipts of one agent drained from a [`ReceiptLog`]: the worker commits `(agent, seq, root)` on chain and
/// keeps (or hands the owner) the receipts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct ReceiptBatch {
    /// The agent.
    pub agent: [u8; 32],
    /// Per-agent batch number: 0, 1, 2, ... with no gaps, so a withheld batch is visible on chain.
    pub seq: u64,
    /// Merkle root (umbra-crypto's RFC 6962 tree) of the receipts' [`Receipt::leaf`]s, in order.
    pub root: Hash,
    /// The receipts, oldest first.
    pub receipts: Vec<Receipt>,
}

impl ReceiptBatch {
    /// The inclusion proof of `receipts[index]`, or `None` if out of range.
    pub fn proof(&self, index: usize) -> Option<MerkleProof> {
        let leaves: Vec<Hash> = self.receipts.iter().map(Receipt::leaf).collect();
        merkle_proof(&leaves, index)
    }
}

/// Whether `receipt` is in the batch whose committed root is `root`, by `proof`.
pub fn verify_receipt(root: &Hash, receipt: &Receipt, proof: &MerkleProof) -> bool {
    verify_merkle_proof(root, &receipt.leaf(), proof)
}

#[derive(Clone, Debug, Default, BorshSerialize, BorshDeserialize)]
struct AgentReceipts {
    pending: Vec<Receipt>,
    next_seq: u64,
}

/// Pending receipts per agent and each agent's next batch number. Plain data: the worker keeps one (the
/// `Client` keeps one itself) and may persist it with borsh.
#[derive(Clone, Debug, Default, BorshSerialize, BorshDeserialize)]
pub struct ReceiptLog {
    agents: BTreeMap<[u8; 32], AgentReceipts>,
}

impl ReceiptLog {
    /// An empty log.
    pub fn new() -> ReceiptLog {
        ReceiptLog::default()
    }

    /// Appends a receipt to its agent's pending list.
    pub fn push(&mut self, receipt: Receipt) {
        self.agents.entry(receipt.agent).or_default().pending.push(receipt);
    }

    /// The agent's pending receipts, oldest first.
    pub fn pending(&self, agent: &[u8; 32]) -> &[Receipt] {
        self.agents.get(agent).map(|a| a.pending.as_slice()).unwrap_or(&[])
    }

    /// Agents that have pending receipts, in id order.
    pub fn agents_with_pending(&self) -> Vec<[u8; 32]> {
        self.agents.iter().filter(|(_, a)| !a.pending.is_empty()).map(|(id, _)| *id).collect()
    }

    /// The number the agent's next batch will carry.
    pub fn next_seq(&self, agent: &[u8; 32]) -> u64 {
        self.agents.get(agent).map(|a| a.next_seq).unwrap_or(0)
    }

    /// Sets the agent's next batch number (after a restart, from what the chain has committed).
    pub fn set_next_seq(&mut self, agent: [u8; 32], seq: u64) {
        self.agents.entry(agent).or_default().next_seq = seq;
    }

    /// Drains the agent's pending receipts into the next batch; `None` if there are none.
    pub fn batch(&mut self, agent: &[u8; 32]) -> Option<ReceiptBatch> {
        let a = self.agents.get_mut(agent)?;
        if a.pending.is_empty() {
            return None;
        }
        let receipts = std::mem::take(&mut a.pending);
        let leaves: Vec<Hash> = receipts.iter().map(Receipt::leaf).collect();
        let seq = a.next_seq;
        a.next_seq += 1;
        Some(ReceiptBatch { agent: *agent, seq, root: merkle_root(&leaves), receipts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(agent: u8, i: u64) -> Receipt {
        Receipt {
            agent: [agent; 32],
            method: "GET".into(),
            url: format!("https://api.example.com/{i}"),
            request_hash: request_hash("GET", "https://api.example.com/", &[], b""),
            response_hash: response_hash(200, &[], format!("body {i}").as_bytes()),
            status: 200,
            request_bytes: 0,
            response_bytes: 6,
            time_ms: 1_700_000_000_000 + i,
            tls_cert_sha256: Some([i as u8; 32]),
            error: None,
        }
    }

    #[test]
    fn batches_are_numbered_per_agent_and_drain_only_that_agent() {
        let mut log = ReceiptLog::new();
        for i in 0..3 {
            log.push(receipt(1, i));
        }
        log.push(receipt(2, 9));
        assert_eq!(log.agents_with_pending(), vec![[1; 32], [2; 32]]);
        let b = log.batch(&[1; 32]).expect("pending");
        assert_eq!((b.seq, b.receipts.len()), (0, 3));
        assert!(log.batch(&[1; 32]).is_none());
        assert_eq!(log.pending(&[2; 32]).len(), 1);
        log.push(receipt(1, 5));
        assert_eq!(log.batch(&[1; 32]).expect("pending").seq, 1);
        assert_eq!(log.batch(&[2; 32]).expect("pending").seq, 0);
    }

    #[test]
    fn every_receipt_proves_against_the_root_and_a_tampered_one_does_not() {
        let mut log = ReceiptLog::new();
        for i in 0..5 {
            log.push(receipt(1, i));
        }
        let b = log.batch(&[1; 32]).expect("pending");
        for (i, r) in b.receipts.iter().enumerate() {
            let p = b.proof(i).expect("in range");
            assert!(verify_receipt(&b.root, r, &p));
            let mut forged = r.clone();
            forged.url = "https://evil.example.net/".into();
            assert!(!verify_receipt(&b.root, &forged, &p));
            let mut forged = r.clone();
            forged.response_hash[0] ^= 1;
            assert!(!verify_receipt(&b.root, &forged, &p));
        }
    }
}
