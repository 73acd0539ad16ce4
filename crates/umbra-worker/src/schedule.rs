//! Stake-to-compute on the worker: weighted fair queuing of contract queries by the contracts' compute
//! stake (`Call::StakeCompute`).
//!
//! # What it applies to
//! Only **queries**. A query reads a snapshot of a contract's state and changes nothing, so the order in
//! which a worker serves queries of different contracts cannot change any state root. **Commands are not
//! reordered**: every member of a cluster executes them in chain order (per contract, by command number),
//! which is what keeps replicated execution deterministic; stake does not buy command priority.
//!
//! # The rule (self-clocked fair queuing)
//! Each contract `c` has a weight `w_c`: its compute stake on the cluster, or
//! `params.economics.free_quota_stake` if it has none (the free quota), never 0. A query of cost `k` (1
//! for one query) arriving for `c` gets
//!
//! `start = max(V, last_finish_c)`, `finish = start + k * 2^64 / w_c` (integer division), `last_finish_c = finish`
//!
//! and the queue serves the waiting query with the smallest `finish` (ties: smaller contract id, then
//! arrival order). `V`, the virtual time, becomes the `finish` of the query served. While several contracts
//! keep queries waiting, each is served in proportion to its weight: a contract with three times the stake
//! gets about three times the throughput. A contract that was idle starts from `V`, so it cannot bank
//! credit while idle. Integer arithmetic only: the same arrivals give the same order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Condvar, Mutex};

/// A contract id.
pub type ContractKey = [u8; 32];

/// The scale of virtual time per unit of cost at weight 1.
const SCALE: u128 = 1 << 64;

/// Weights of contracts: their compute stake, with a floor for the unstaked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Weights {
    stakes: BTreeMap<ContractKey, u128>,
    /// At least 1 (it divides virtual time).
    free_quota: u128,
}

impl Default for Weights {
    /// No stakes yet: every contract has the same weight.
    fn default() -> Self {
        Weights::new([], 1)
    }
}

impl Weights {
    /// Weights from each staked contract's stake and the free quota's weight (at least 1).
    pub fn new(stakes: impl IntoIterator<Item = (ContractKey, u128)>, free_quota: u128) -> Weights {
        Weights { stakes: stakes.into_iter().filter(|(_, s)| *s > 0).collect(), free_quota: free_quota.max(1) }
    }

    /// The weight of `contract`: its stake, or the free quota.
    pub fn of(&self, contract: &ContractKey) -> u128 {
        self.stakes.get(contract).copied().unwrap_or(self.free_quota)
    }
}

/// A weighted fair queue of items (queries) tagged by contract.
#[derive(Debug)]
pub struct FairQueue<T> {
    weights: Weights,
    virtual_time: u128,
    last_finish: BTreeMap<ContractKey, u128>,
    waiting: BTreeMap<ContractKey, VecDeque<(u128, u64, T)>>,
    arrivals: u64,
}

impl<T> FairQueue<T> {
    /// An empty queue.
    pub fn new(weights: Weights) -> FairQueue<T> {
        FairQueue { weights, virtual_time: 0, last_finish: BTreeMap::new(), waiting: BTreeMap::new(), arrivals: 0 }
    }

    /// Replaces the weights (new stakes); queries already waiting keep their tags.
    pub fn set_weights(&mut self, weights: Weights) {
        self.weights = weights;
    }

    /// Adds an item of `cost` (at least 1) for `contract`; returns its finish tag.
    pub fn push(&mut self, contract: ContractKey, cost: u64, item: T) -> u128 {
        let w = self.weights.of(&contract);
        let last = self.last_finish.get(&contract).copied().unwrap_or(0);
        let start = self.virtual_time.max(last);
        let finish = start.saturating_add(u128::from(cost.max(1)).saturating_mul(SCALE) / w);
        self.last_finish.insert(contract, finish);
        let n = self.arrivals;
        self.arrivals = n.wrapping_add(1);
        self.waiting.entry(contract).or_default().push_back((finish, n, item));
        finish
    }

    /// The next item to serve: the smallest finish tag (then contract id, then arrival).
    pub fn pop(&mut self) -> Option<(ContractKey, T)> {
        let (contract, _) = self
            .waiting
            .iter()
            .filter_map(|(c, q)| q.front().map(|(f, n, _)| (*c, (*f, *n))))
            .min_by_key(|(c, (f, n))| (*f, *c, *n))?;
        let q = self.waiting.get_mut(&contract)?;
        let (finish, _, item) = q.pop_front()?;
        if q.is_empty() {
            self.waiting.remove(&contract);
        }
        self.virtual_time = self.virtual_time.max(finish);
        Some((contract, item))
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// Admission to a fixed number of servers (the query engines) in fair-queue order: callers on several
/// threads [`FairGate::enter`] with their contract and run while holding the returned [`Turn`]; when every
/// server is busy they wait, and the next to go is the waiting caller with the smallest finish tag.
#[derive(Debug)]
pub struct FairGate {
    inner: Mutex<GateState>,
    cv: Condvar,
}

#[derive(Debug)]
struct GateState {
    queue: FairQueue<u64>,
    /// Turns held now, at most `capacity`.
    running: usize,
    capacity: usize,
    /// The ticket allowed to run next (popped from the queue while the server was free).
    next: Option<u64>,
    tickets: u64,
}

/// The right to use the server; dropping it lets the next caller in.
#[derive(Debug)]
pub struct Turn<'a> {
    gate: &'a FairGate,
}

impl FairGate {
    /// A free gate with `weights` for one server.
    pub fn new(weights: Weights) -> FairGate {
        FairGate::with_capacity(weights, 1)
    }

    /// A free gate with `weights` for `capacity` servers (at least one) running at the same time.
    pub fn with_capacity(weights: Weights, capacity: usize) -> FairGate {
        let queue = FairQueue::new(weights);
        let state = GateState { queue, running: 0, capacity: capacity.max(1), next: None, tickets: 0 };
        FairGate { inner: Mutex::new(state), cv: Condvar::new() }
    }

    /// Replaces the weights.
    pub fn set_weights(&self, weights: Weights) {
        if let Ok(mut g) = self.inner.lock() {
            g.queue.set_weights(weights);
        }
    }

    /// Waits for this caller's turn (in fair-queue order among waiting callers).
    pub fn enter(&self, contract: ContractKey) -> Turn<'_> {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let ticket = g.tickets;
        g.tickets = ticket.wrapping_add(1);
        g.queue.push(contract, 1, ticket);
        loop {
            let free = g.running < g.capacity;
            if free && g.next.is_none() {
                g.next = g.queue.pop().map(|(_, t)| t);
            }
            if free && g.next == Some(ticket) {
                g.next = None;
                g.running += 1;
                drop(g);
                // Another server may still be free: let the next waiter pick itself.
                self.cv.notify_all();
                return Turn { gate: self };
            }
            g = match self.cv.wait(g) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut g = match self.gate.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.running = g.running.saturating_sub(1);
        drop(g);
        self.gate.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ContractKey = [1; 32];
    const B: ContractKey = [2; 32];
    const FREE: ContractKey = [3; 32];

    /// A simulated clock: each tick, every contract in `arrivals` submits its queries, and the server
    /// answers `rate` queries. Returns how many each contract got answered.
    fn simulate(
        weights: Weights,
        arrivals: &[(ContractKey, u64)],
        rate: u64,
        ticks: u64,
    ) -> BTreeMap<ContractKey, u64> {
        let mut q = FairQueue::new(weights);
        let mut served = BTreeMap::new();
        for _ in 0..ticks {
            for (c, n) in arrivals {
                for _ in 0..*n {
                    q.push(*c, 1, ());
                }
            }
            for _ in 0..rate {
                if let Some((c, ())) = q.pop() {
                    *served.entry(c).or_insert(0) += 1;
                }
            }
        }
        served
    }

    #[test]
    fn under_contention_three_times_the_stake_gets_about_three_times_the_throughput() {
        // Both contracts ask for 10 queries a tick; the worker answers 8: it is saturated.
        let w = Weights::new([(A, 300), (B, 100)], 1);
        let served = simulate(w, &[(A, 10), (B, 10)], 8, 1_000);
        let (a, b) = (served[&A], served[&B]);
        assert_eq!(a + b, 8_000);
        assert!((5_990..=6_010).contains(&a), "A gets three quarters: {a}");
        assert!((1_990..=2_010).contains(&b), "B gets one quarter: {b}");
    }

    #[test]
    fn without_contention_every_query_is_served_whatever_the_stake() {
        let w = Weights::new([(A, 300), (B, 100)], 1);
        let served = simulate(w, &[(A, 2), (B, 2)], 8, 100);
        assert_eq!((served[&A], served[&B]), (200, 200));
    }

    #[test]
    fn an_unstaked_contract_gets_the_small_free_quota_and_is_never_starved() {
        let w = Weights::new([(A, 1_000), (B, 0)], 10);
        let served = simulate(w, &[(A, 10), (FREE, 10)], 10, 1_000);
        assert_eq!(w_of(&[(A, 1_000)], 10, &FREE), 10, "no stake: the free quota's weight");
        let free = served[&FREE];
        assert!((95..=105).contains(&free), "about 1% of 10,000: {free}");
        assert_eq!(served[&A] + free, 10_000);
    }

    fn w_of(stakes: &[(ContractKey, u128)], free: u128, c: &ContractKey) -> u128 {
        Weights::new(stakes.iter().copied(), free).of(c)
    }

    #[test]
    fn an_idle_contract_banks_no_credit() {
        let mut q = FairQueue::new(Weights::new([(A, 1), (B, 1)], 1));
        for _ in 0..100 {
            q.push(A, 1, ());
            q.pop();
        }
        // B arrives late with a burst: it alternates with A instead of taking 100 turns in a row.
        for _ in 0..10 {
            q.push(A, 1, ());
            q.push(B, 1, ());
        }
        let order: Vec<ContractKey> = (0..6).filter_map(|_| q.pop().map(|(c, ())| c)).collect();
        assert_eq!(order.iter().filter(|c| **c == B).count(), 3, "{order:?}");
    }

    #[test]
    fn the_gate_admits_waiting_callers_in_fair_order() {
        use std::sync::Arc;
        let gate = Arc::new(FairGate::new(Weights::new([(A, 3), (B, 1)], 1)));
        let log = Arc::new(Mutex::new(Vec::new()));
        // Hold the server while 8 callers of each contract line up, then let them through one by one.
        let first = gate.enter(A);
        let mut handles = Vec::new();
        for i in 0..16 {
            let (gate, log) = (gate.clone(), log.clone());
            let c = if i % 2 == 0 { A } else { B };
            handles.push(std::thread::spawn(move || {
                let _turn = gate.enter(c);
                log.lock().expect("log").push(c);
            }));
        }
        while gate.inner.lock().expect("gate").queue.len() < 16 {
            std::thread::yield_now();
        }
        drop(first);
        for h in handles {
            h.join().expect("joins");
        }
        let log = log.lock().expect("log");
        assert_eq!(log.len(), 16);
        let a_first_eight = log[..8].iter().filter(|c| **c == A).count();
        assert!(a_first_eight >= 5, "A (3x the stake) goes about three times as often while both wait: {log:?}");
    }

    #[test]
    fn the_default_weights_give_every_contract_weight_one_so_the_first_query_before_any_stake_is_read_is_served() {
        let mut q = FairQueue::new(Weights::default());
        q.push([1; 32], 1, ());
        assert_eq!(q.pop().map(|(c, _)| c), Some([1; 32]));
    }

    #[test]
    fn a_gate_for_two_servers_admits_two_callers_at_once() {
        let gate = FairGate::with_capacity(Weights::default(), 2);
        // With one server the second `enter` on this thread would wait forever.
        let first = gate.enter([1; 32]);
        let second = gate.enter([2; 32]);
        drop(first);
        let third = gate.enter([1; 32]);
        drop((second, third));
        assert_eq!(gate.inner.lock().expect("gate").running, 0);
    }
}
