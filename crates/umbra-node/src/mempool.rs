//! The mempool: admitted transactions waiting for a block, ordered per account by nonce.
//!
//! Admission runs every check that can be made before execution (see `Node::submit`); the pool itself
//! only keeps per-account nonce sequences without gaps, picks block candidates by fee, and evicts the
//! lowest fee when full. It is local, non-consensus state, so ordinary collections are fine here, but
//! it still iterates `BTreeMap`s so block proposals are reproducible in tests.

use std::collections::{BTreeMap, BTreeSet};
use umbra_types::{Address, Amount, Call, Hash, Origin, SignedTransaction};

/// Why the pool refused a transaction that passed the stateless and state checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PoolError {
    /// Already pending.
    AlreadyKnown,
    /// A different pending transaction has this nonce.
    NonceUsed { expected: u64 },
    /// The nonce skips past the next pending one.
    NonceGap { expected: u64 },
    /// Full of higher-fee transactions.
    Full,
    /// The account's pending fees would exceed its balance.
    CannotPayFees { pending: Amount },
    /// Another pending transaction already carries the egress message with this origin and sequence.
    DuplicateEgress { origin: Origin, seq: u64 },
}

/// The `(origin, seq)` of the egress message a transaction carries, if it carries one.
fn egress_key(stx: &SignedTransaction) -> Option<(Origin, u64)> {
    match &stx.tx.call {
        Call::Egress { message } => Some((message.egress.origin, message.egress.seq)),
        _ => None,
    }
}

#[derive(Default)]
pub(crate) struct Mempool {
    max: usize,
    by_account: BTreeMap<Address, BTreeMap<u64, SignedTransaction>>,
    by_hash: BTreeMap<Hash, (Address, u64)>,
    by_fee: BTreeSet<(Amount, Hash)>,
    /// Pending egress messages by `(origin, seq)`: only one carrier of each may wait, so identical
    /// messages from redundant workers do not all reach a block.
    by_egress: BTreeMap<(Origin, u64), Hash>,
}

impl Mempool {
    pub(crate) fn new(max: usize) -> Self {
        Mempool { max: max.max(1), ..Default::default() }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether the transaction is pending here (so its signature was verified at admission).
    pub(crate) fn contains(&self, hash: &Hash) -> bool {
        self.by_hash.contains_key(hash)
    }

    pub(crate) fn get(&self, hash: &Hash) -> Option<SignedTransaction> {
        let (a, n) = self.by_hash.get(hash)?;
        self.by_account.get(a)?.get(n).cloned()
    }

    /// The nonce the account's next transaction should carry, given its state nonce.
    pub(crate) fn next_nonce(&self, account: &Address, state_nonce: u64) -> u64 {
        let mut n = state_nonce;
        if let Some(seq) = self.by_account.get(account) {
            while seq.contains_key(&n) {
                n += 1;
            }
        }
        n
    }

    /// Adds a transaction whose signer has `state_nonce` and `balance` in the committed state.
    pub(crate) fn insert(
        &mut self,
        stx: SignedTransaction,
        state_nonce: u64,
        balance: Amount,
    ) -> Result<Hash, PoolError> {
        let hash = stx.hash();
        if self.by_hash.contains_key(&hash) {
            return Err(PoolError::AlreadyKnown);
        }
        if let Some((origin, seq)) = egress_key(&stx)
            && self.by_egress.contains_key(&(origin, seq))
        {
            return Err(PoolError::DuplicateEgress { origin, seq });
        }
        let signer = stx.tx.signer;
        let expected = self.next_nonce(&signer, state_nonce);
        if stx.tx.nonce < expected {
            return Err(PoolError::NonceUsed { expected });
        }
        if stx.tx.nonce > expected {
            return Err(PoolError::NonceGap { expected });
        }
        let pending: Amount = self.by_account.get(&signer).map(|s| s.values().map(|t| t.tx.fee).sum()).unwrap_or(0);
        if pending.saturating_add(stx.tx.fee) > balance {
            return Err(PoolError::CannotPayFees { pending });
        }
        if self.by_hash.len() >= self.max {
            // Evict the cheapest transaction if the newcomer pays more; drop that account's later
            // nonces with it so no gap remains.
            let Some(&(low_fee, low_hash)) = self.by_fee.iter().next() else { return Err(PoolError::Full) };
            if low_fee >= stx.tx.fee {
                return Err(PoolError::Full);
            }
            if let Some(&(acct, nonce)) = self.by_hash.get(&low_hash) {
                self.remove_from(&acct, nonce);
            }
        }
        self.by_fee.insert((stx.tx.fee, hash));
        self.by_hash.insert(hash, (signer, stx.tx.nonce));
        if let Some(k) = egress_key(&stx) {
            self.by_egress.insert(k, hash);
        }
        self.by_account.entry(signer).or_default().insert(stx.tx.nonce, stx);
        Ok(hash)
    }

    /// Removes the account's transactions from `nonce` upward.
    fn remove_from(&mut self, account: &Address, nonce: u64) {
        if let Some(seq) = self.by_account.get_mut(account) {
            let tail = seq.split_off(&nonce);
            for t in tail.values() {
                let h = t.hash();
                self.by_hash.remove(&h);
                self.by_fee.remove(&(t.tx.fee, h));
                if let Some(k) = egress_key(t) {
                    self.by_egress.remove(&k);
                }
            }
            if seq.is_empty() {
                self.by_account.remove(account);
            }
        }
    }

    /// Drops the account's transactions below its new state nonce (they were included or are void).
    pub(crate) fn prune_account(&mut self, account: &Address, state_nonce: u64) {
        if let Some(seq) = self.by_account.get_mut(account) {
            let keep = seq.split_off(&state_nonce);
            for t in seq.values() {
                let h = t.hash();
                self.by_hash.remove(&h);
                self.by_fee.remove(&(t.tx.fee, h));
                if let Some(k) = egress_key(t) {
                    self.by_egress.remove(&k);
                }
            }
            *seq = keep;
            if seq.is_empty() {
                self.by_account.remove(account);
            }
        }
    }

    /// The pending egress messages' `(origin, seq)` keys of one origin below `next` (stale now that the
    /// chain accepted `next - 1`), with the hashes of the transactions carrying them.
    pub(crate) fn stale_egress(&self, origin: &Origin, next: u64) -> Vec<Hash> {
        self.by_egress.range((*origin, 0)..(*origin, next)).map(|(_, h)| *h).collect()
    }

    /// Whether a pending transaction carries the egress message `seq` of `origin`.
    pub(crate) fn carries_egress(&self, origin: &Origin, seq: u64) -> bool {
        self.by_egress.contains_key(&(*origin, seq))
    }

    /// How many consecutive sequence numbers of `origin`, from `next` on, are pending.
    pub(crate) fn egress_in_flight(&self, origin: &Origin, next: u64) -> u64 {
        let mut n = next;
        while self.by_egress.contains_key(&(*origin, n)) {
            n += 1;
        }
        n - next
    }

    /// The distinct origins of pending egress messages.
    pub(crate) fn egress_origins(&self) -> Vec<Origin> {
        let mut out: Vec<Origin> = self.by_egress.keys().map(|(o, _)| *o).collect();
        out.dedup();
        out
    }

    /// Removes one transaction and every later one of its signer (so no nonce gap remains). Only for
    /// transactions that can never be included: ones merely left out of a block built on an unfinalized
    /// parent may still be (their successors certainly are), so they stay until finalization prunes them.
    pub(crate) fn remove(&mut self, hash: &Hash) {
        if let Some(&(acct, nonce)) = self.by_hash.get(hash) {
            self.remove_from(&acct, nonce);
        }
    }

    /// Up to `max` candidates for a block: each account's sequence in nonce order, accounts with the
    /// highest-paying first transaction first.
    pub(crate) fn candidates(&self, max: usize) -> Vec<SignedTransaction> {
        let mut accounts: Vec<(&Address, &BTreeMap<u64, SignedTransaction>)> = self.by_account.iter().collect();
        accounts.sort_by(|a, b| {
            let fa = a.1.values().next().map(|t| t.tx.fee).unwrap_or(0);
            let fb = b.1.values().next().map(|t| t.tx.fee).unwrap_or(0);
            fb.cmp(&fa).then(a.0.cmp(b.0))
        });
        accounts.into_iter().flat_map(|(_, seq)| seq.values().cloned()).take(max).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use umbra_types::{Call, Transaction};

    fn tx(signer: u8, nonce: u64, fee: Amount) -> SignedTransaction {
        SignedTransaction {
            tx: Transaction {
                signer: Address([signer; 32]),
                nonce,
                chain_id: "t".into(),
                fee,
                call: Call::Transfer { to: Address([0; 32]), amount: 1 },
            },
            signature: [0; 64],
        }
    }

    #[test]
    fn nonces_must_follow_on_without_gaps_or_reuse() {
        let mut m = Mempool::new(10);
        assert!(m.insert(tx(1, 0, 5), 0, 100).is_ok());
        assert_eq!(m.insert(tx(1, 0, 6), 0, 100), Err(PoolError::NonceUsed { expected: 1 }));
        assert_eq!(m.insert(tx(1, 3, 5), 0, 100), Err(PoolError::NonceGap { expected: 1 }));
        assert!(m.insert(tx(1, 1, 5), 0, 100).is_ok());
        assert_eq!(m.next_nonce(&Address([1; 32]), 0), 2);
        assert_eq!(m.insert(tx(1, 1, 5), 0, 100), Err(PoolError::AlreadyKnown));
    }

    #[test]
    fn pending_fees_cannot_exceed_the_balance() {
        let mut m = Mempool::new(10);
        assert!(m.insert(tx(1, 0, 60), 0, 100).is_ok());
        assert_eq!(m.insert(tx(1, 1, 60), 0, 100), Err(PoolError::CannotPayFees { pending: 60 }));
    }

    #[test]
    fn a_full_pool_evicts_the_lowest_fee_for_a_better_one_and_refuses_worse() {
        let mut m = Mempool::new(2);
        m.insert(tx(1, 0, 5), 0, 100).expect("fits");
        m.insert(tx(2, 0, 7), 0, 100).expect("fits");
        assert_eq!(m.insert(tx(3, 0, 4), 0, 100), Err(PoolError::Full));
        m.insert(tx(3, 0, 9), 0, 100).expect("evicts the fee-5 one");
        assert_eq!(m.len(), 2);
        assert!(m.get(&tx(1, 0, 5).hash()).is_none());
    }

    #[test]
    fn candidates_keep_nonce_order_and_prefer_higher_fees() {
        let mut m = Mempool::new(10);
        m.insert(tx(1, 0, 5), 0, 100).expect("fits");
        m.insert(tx(1, 1, 50), 0, 100).expect("fits");
        m.insert(tx(2, 0, 9), 0, 100).expect("fits");
        let c: Vec<(u8, u64)> = m.candidates(10).iter().map(|t| (t.tx.signer.0[0], t.tx.nonce)).collect();
        assert_eq!(c, vec![(2, 0), (1, 0), (1, 1)]);
    }

    fn egress_tx(signer: u8, seq: u64) -> SignedTransaction {
        let mut t = tx(signer, 0, 5);
        t.tx.call = Call::Egress {
            message: umbra_types::SignedEgress {
                egress: umbra_types::Egress {
                    origin: Origin::Gatekeeper,
                    seq,
                    payload: umbra_types::EgressPayload::KeyAck { key_epoch: 1 },
                },
                signature: [0; 64],
            },
        };
        t
    }

    #[test]
    fn a_second_carrier_of_the_same_egress_message_is_refused_until_the_first_leaves() {
        let mut m = Mempool::new(10);
        m.insert(egress_tx(1, 0), 0, 100).expect("first carrier");
        assert_eq!(
            m.insert(egress_tx(2, 0), 0, 100),
            Err(PoolError::DuplicateEgress { origin: Origin::Gatekeeper, seq: 0 })
        );
        m.insert(egress_tx(2, 1), 0, 100).expect("the next sequence is another message");
        assert_eq!(m.stale_egress(&Origin::Gatekeeper, 1), vec![egress_tx(1, 0).hash()]);
        m.prune_account(&Address([1; 32]), 1);
        assert!(m.stale_egress(&Origin::Gatekeeper, 1).is_empty());
        m.insert(egress_tx(3, 0), 0, 100).expect("the first carrier left");
        assert_eq!(m.egress_origins(), vec![Origin::Gatekeeper]);
    }

    #[test]
    fn pruning_drops_included_nonces() {
        let mut m = Mempool::new(10);
        m.insert(tx(1, 0, 5), 0, 100).expect("fits");
        m.insert(tx(1, 1, 5), 0, 100).expect("fits");
        m.prune_account(&Address([1; 32]), 1);
        assert_eq!(m.len(), 1);
        assert_eq!(m.next_nonce(&Address([1; 32]), 1), 2);
    }
}
