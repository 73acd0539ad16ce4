//! Confidential queries: a client seals a [`QueryPlain`] to this worker's attested X25519 key; the worker
//! runs the method on a snapshot of the contract's state (never changing it) within a gas, time and memory
//! budget, seals the [`QueryAnswer`] to the client's ephemeral key and signs the reply with its identity key.
//!
//! The view is a copy of the enclave's contracts and keys taken after every applied batch, so queries never
//! wait for (or block) the chain-following loop. Queries run on their own engine thread.

use crate::contracts::{ContractState, EngineThread, run_query};
use crate::state::HeldKey;
use rand::SeedableRng as _;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use umbra_crypto::{Keypair, open_envelope, seal_envelope};
use umbra_types::contracts::{
    ContractId, LABEL_QUERY, LABEL_QUERY_ANSWER, QueryAnswer, QueryPlain, QueryReply, query_caller_bytes,
    query_reply_bytes,
};
use umbra_types::registry::{ClusterId, KeyEpoch};
use umbra_types::{Hash, decode, encode, sha256};
use zeroize::Zeroizing;

/// Largest query envelope accepted.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

/// Engine threads answering queries at the same time (each query runs on one, on a snapshot of state).
pub const QUERY_ENGINES: usize = 2;
/// Gas of one query.
pub const QUERY_GAS: u64 = 1_000_000_000;
/// The reserved query method that returns the events and return values of the signed caller's own commands
/// (the chain has only the events' hash): a JSON array of `{"seq", "events": [{"name", "data"}], "output"}`
/// with `data` and `output` in hex, oldest first, from the command number given as `{"from": N}` (default 0).
/// The caller checks each event list against the `events_hash` the chain recorded for the command.
pub const EVENTS_METHOD: &str = "umbra.events";

/// Why a query was refused (the HTTP layer answers 400 with this text).
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The envelope is too large.
    #[error("a query of {0} bytes exceeds the limit of {MAX_QUERY_BYTES}")]
    TooLarge(usize),
    /// The envelope does not open with this worker's key (tampered, or sealed to another worker or chain).
    #[error("the query envelope does not open with this worker's key: {0}")]
    Envelope(String),
    /// The plaintext is not a query.
    #[error("the query's plaintext does not decode: {0}")]
    Malformed(String),
    /// The caller's signature does not verify.
    #[error("the caller's signature does not verify")]
    BadCaller,
    /// This worker does not run the contract.
    #[error("this worker does not run contract {0}")]
    UnknownContract(Hash),
    /// The worker holds no key of the contract's cluster, or stopped running it.
    #[error("this worker cannot run contract {0} now: {1}")]
    Unavailable(Hash, String),
    /// The worker is not ready yet.
    #[error("the worker has not caught up with the chain yet")]
    NotReady,
    /// Events are read only by their command's sender, so the query must be signed.
    #[error("events are read by the sender of their command: sign the query")]
    EventsNeedCaller,
}

/// What queries run against: a copy of the enclave's contracts, cluster keys and identity.
pub struct QueryView {
    pub(crate) chain_id: String,
    pub(crate) identity: Keypair,
    pub(crate) x25519: Zeroizing<[u8; 32]>,
    pub(crate) height: u64,
    pub(crate) key_epoch: KeyEpoch,
    pub(crate) contracts: Arc<BTreeMap<ContractId, ContractState>>,
    pub(crate) clusters: BTreeMap<(KeyEpoch, ClusterId), HeldKey>,
}

impl std::fmt::Debug for QueryView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryView").field("height", &self.height).finish_non_exhaustive()
    }
}

/// Serves queries from the latest [`QueryView`]; cheap to clone and share with the HTTP server.
#[derive(Clone, Debug)]
pub struct QueryService {
    view: Arc<RwLock<Option<Arc<QueryView>>>>,
    /// Engine threads queries run on in parallel (the gate admits at most one query per engine).
    engines: Arc<Vec<std::sync::Mutex<EngineThread>>>,
    /// Stake-to-compute: queries take turns on the engine in weighted fair order ([`crate::schedule`]).
    gate: Arc<crate::schedule::FairGate>,
}

impl QueryService {
    /// A service with [`QUERY_ENGINES`] engine threads and no view yet.
    pub fn start() -> std::io::Result<QueryService> {
        let engines = (0..QUERY_ENGINES)
            .map(|i| {
                EngineThread::start(&format!("umbra-queries-{i}"), umbra_engine::Limits::default())
                    .map(std::sync::Mutex::new)
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let gate = crate::schedule::FairGate::with_capacity(crate::schedule::Weights::default(), engines.len());
        Ok(QueryService { view: Arc::new(RwLock::new(None)), engines: Arc::new(engines), gate: Arc::new(gate) })
    }

    /// A free engine: the gate admits at most as many queries as there are engines, so one is free but
    /// for a moment's race, when this waits for the first.
    fn engine(&self) -> Result<std::sync::MutexGuard<'_, EngineThread>, QueryError> {
        for e in self.engines.iter() {
            if let Ok(g) = e.try_lock() {
                return Ok(g);
            }
        }
        self.engines.first().ok_or(QueryError::NotReady)?.lock().map_err(|_| QueryError::NotReady)
    }

    /// Sets the weights queries of each contract take turns by (their compute stakes).
    pub fn set_weights(&self, weights: crate::schedule::Weights) {
        self.gate.set_weights(weights);
    }

    /// Replaces the view queries run against.
    pub fn update(&self, view: QueryView) {
        if let Ok(mut v) = self.view.write() {
            *v = Some(Arc::new(view));
        }
    }

    /// The worker's id and X25519 key, once a view exists.
    pub fn identity(&self) -> Option<(Hash, Hash, String)> {
        let view = self.view.read().ok()?.clone()?;
        let x = umbra_crypto::x25519_public(&view.x25519);
        Some((Hash(view.identity.address().0), Hash(x), view.chain_id.clone()))
    }

    /// Answers one sealed query: the encoded [`QueryReply`].
    pub fn answer(&self, envelope: &[u8]) -> Result<Vec<u8>, QueryError> {
        if envelope.len() > MAX_QUERY_BYTES {
            return Err(QueryError::TooLarge(envelope.len()));
        }
        let view = self.view.read().ok().and_then(|v| v.clone()).ok_or(QueryError::NotReady)?;
        let plain = open_envelope(&view.x25519, LABEL_QUERY, view.chain_id.as_bytes(), envelope)
            .map_err(|e| QueryError::Envelope(e.to_string()))?;
        let q: QueryPlain = decode(&plain, MAX_QUERY_BYTES).map_err(|e| QueryError::Malformed(e.to_string()))?;
        let caller = match &q.caller {
            Some(c) => {
                umbra_crypto::verify(&c.address, &query_caller_bytes(&view.chain_id, &q), &c.signature)
                    .map_err(|_| QueryError::BadCaller)?;
                Some(c.address)
            }
            None => None,
        };
        let id = Hash(q.contract);
        let contract = view.contracts.get(&q.contract).ok_or(QueryError::UnknownContract(id))?;
        if let Some(why) = &contract.stalled {
            return Err(QueryError::Unavailable(id, why.clone()));
        }
        let key = view
            .clusters
            .get(&(view.key_epoch, contract.cluster))
            .ok_or_else(|| QueryError::Unavailable(id, "no key of its cluster is held".into()))?;
        let result = if q.method == EVENTS_METHOD {
            let caller = caller.ok_or(QueryError::EventsNeedCaller)?;
            Ok(umbra_engine::Outcome { output: events_of(contract, &caller, &q.args), ..Default::default() })
        } else {
            let _turn = self.gate.enter(q.contract);
            let engine = self.engine()?;
            let (cluster, args) = (contract.cluster, &q.args);
            let contracts = &view.contracts;
            run_query(&engine, contracts, cluster, &key.0, &q.contract, &q.method, args, caller, view.height, QUERY_GAS)
        };
        let answer = match result {
            Ok(o) => QueryAnswer {
                result: Ok(o.output),
                gas_used: o.gas_used,
                height: view.height,
                state_root: contract.root(),
            },
            Err(f) => QueryAnswer {
                result: Err(f.error.to_string()),
                gas_used: f.gas_used,
                height: view.height,
                state_root: contract.root(),
            },
        };
        let request_hash = sha256(&[envelope]);
        let mut rng = rand_chacha::ChaCha20Rng::from_seed(rand::random());
        let sealed = seal_envelope(&q.reply_to, LABEL_QUERY_ANSWER, &request_hash.0, &encode(&answer), &mut rng)
            .map_err(|e| QueryError::Malformed(format!("cannot seal to the reply key: {e}")))?;
        let signature = view.identity.sign(&query_reply_bytes(&request_hash, &sealed));
        tracing::debug!(target: "worker.query", contract = %id, height = view.height, "query answered");
        Ok(encode(&QueryReply { worker: view.identity.address().0, sealed, signature }))
    }
}

/// The JSON answer of [`EVENTS_METHOD`]: the events of `caller`'s commands from `{"from": N}` on.
fn events_of(contract: &ContractState, caller: &umbra_types::Address, args: &[u8]) -> Vec<u8> {
    let from = serde_json::from_slice::<serde_json::Value>(args)
        .ok()
        .and_then(|v| v.get("from").and_then(serde_json::Value::as_u64))
        .unwrap_or(0);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let list: Vec<serde_json::Value> = contract
        .events
        .range(from..)
        .filter(|(_, c)| c.sender == *caller)
        .map(|(seq, c)| {
            let events: Vec<_> =
                c.events.iter().map(|e| serde_json::json!({ "name": e.name, "data": hex(&e.data) })).collect();
            serde_json::json!({ "seq": seq, "events": events, "output": hex(&c.output) })
        })
        .collect();
    serde_json::to_vec(&list).unwrap_or_default()
}
