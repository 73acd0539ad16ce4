//! The one entry point over both engines: load code once (validated, compiled, cached by hash), invoke it many
//! times.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use sha2::{Digest, Sha256};

use std::time::Instant;

use crate::agent::{AgentFailure, AgentOutcome, AgentRequest};
use crate::api::{Host, Invocation, Limits, Mode, Outcome};
use crate::error::{EngineError, Failure};
use crate::js::{self, JsInstance};
use crate::session::Session;
use crate::wasm::WasmRuntime;

/// Warm JavaScript instances kept per code hash for queries.
const POOL_PER_CODE: usize = 4;
/// Distinct codes with warm instances.
const POOL_CODES: usize = 32;
/// A warm instance is retired after this many queries, bounding what garbage and module state can accumulate.
const POOL_MAX_USES: u32 = 1_000;
/// Compiled contracts kept in the cache.
const CACHE_ENTRIES: usize = 256;

/// Contract code as uploaded. JavaScript is accepted as source only: QuickJS trusts bytecode, so the engine
/// only runs bytecode it compiled itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    /// An ES module (UTF-8 source).
    JavaScript(Vec<u8>),
    /// A WebAssembly binary module.
    Wasm(Vec<u8>),
}

impl Code {
    /// SHA-256 over a kind tag and the bytes: the cache key, and the code hash contract ids are built from.
    pub fn hash(&self) -> [u8; 32] {
        let (tag, bytes): (&[u8], &[u8]) = match self {
            Code::JavaScript(b) => (b"umbra/js\0", b),
            Code::Wasm(b) => (b"umbra/wasm\0", b),
        };
        let mut h = Sha256::new();
        h.update(tag);
        h.update(bytes);
        h.finalize().into()
    }
}

#[derive(Clone)]
enum Compiled {
    Js(Rc<[u8]>),
    Wasm(wasmi::Module),
}

/// Loaded code: validated and compiled, ready to invoke. Cheap to clone.
#[derive(Clone)]
pub struct Contract {
    hash: [u8; 32],
    compiled: Compiled,
}

impl Contract {
    /// The hash of the code this was loaded from ([`Code::hash`]).
    pub fn code_hash(&self) -> [u8; 32] {
        self.hash
    }

    /// True for JavaScript, false for wasm.
    pub fn is_javascript(&self) -> bool {
        matches!(self.compiled, Compiled::Js(_))
    }
}

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_javascript() { "javascript" } else { "wasm" };
        f.debug_struct("Contract").field("kind", &kind).field("hash", &crate::session::hex32(&self.hash)).finish()
    }
}

/// Counters for tests and monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Codes compiled (cache misses).
    pub compiles: u64,
    /// Loads answered from the compiled-code cache.
    pub cache_hits: u64,
    /// Queries served by a warm JavaScript instance.
    pub pool_hits: u64,
}

/// Runs JavaScript and wasm contracts behind one API. Not `Send`: use one per thread. Methods take `&self` so
/// that a host may invoke the same engine again for a nested call.
pub struct Engine {
    limits: Limits,
    wasm: WasmRuntime,
    cache: RefCell<BTreeMap<[u8; 32], Contract>>,
    pool: RefCell<BTreeMap<[u8; 32], Vec<JsInstance>>>,
    compiles: Cell<u64>,
    cache_hits: Cell<u64>,
    pool_hits: Cell<u64>,
}

impl Engine {
    /// An engine enforcing `limits` on every invocation (refused with [`EngineError::LimitExceeded`] if
    /// [`Limits::validate`] fails).
    pub fn new(limits: Limits) -> Result<Engine, EngineError> {
        limits.validate().map_err(EngineError::LimitExceeded)?;
        Ok(Engine {
            limits,
            wasm: WasmRuntime::new()?,
            cache: RefCell::new(BTreeMap::new()),
            pool: RefCell::new(BTreeMap::new()),
            compiles: Cell::new(0),
            cache_hits: Cell::new(0),
            pool_hits: Cell::new(0),
        })
    }

    /// The limits this engine enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counters since the engine was made.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            compiles: self.compiles.get(),
            cache_hits: self.cache_hits.get(),
            pool_hits: self.pool_hits.get(),
        }
    }

    /// Validates and compiles `code`, or returns the cached result for the same code hash.
    pub fn load(&self, code: &Code) -> Result<Contract, EngineError> {
        let hash = code.hash();
        if let Some(c) = self.cache.borrow().get(&hash) {
            self.cache_hits.set(self.cache_hits.get() + 1);
            return Ok(c.clone());
        }
        let compiled = match code {
            Code::JavaScript(src) => Compiled::Js(js::compile(src, &self.limits)?.into()),
            Code::Wasm(bytes) => Compiled::Wasm(self.wasm.compile(bytes, &self.limits)?),
        };
        self.compiles.set(self.compiles.get() + 1);
        tracing::debug!(hash = %crate::session::hex32(&hash), javascript = matches!(code, Code::JavaScript(_)), "engine.load compiled");
        let contract = Contract { hash, compiled };
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= CACHE_ENTRIES {
            cache.pop_first();
        }
        cache.insert(hash, contract.clone());
        Ok(contract)
    }

    /// Runs `invocation` on `contract`. On success the [`Outcome`] holds every effect; on failure nothing of the
    /// invocation may be applied, only its gas charged.
    pub fn invoke(
        &self,
        contract: &Contract,
        invocation: &Invocation,
        host: &Rc<dyn Host>,
    ) -> Result<Outcome, Failure> {
        let _span =
            tracing::debug_span!("engine.invoke", method = %invocation.method, depth = invocation.depth).entered();
        let session = Session::new(invocation.clone(), host.clone(), self.limits.clone());
        let budget = invocation.budget;
        let (result, session, used) = match &contract.compiled {
            Compiled::Wasm(module) => self.wasm.run(module, session, &self.limits),
            Compiled::Js(bytecode) => match self.run_js(contract.hash, bytecode, session, |i, m, a| i.run(m, a)) {
                Ok(done) => done,
                Err((error, used)) => return Err(failure(error, used, budget)),
            },
        };
        let used = used.min(budget);
        let outcome = result.and_then(|output| session.into_outcome(output, used));
        if let Err(e) = &outcome {
            tracing::debug!(error = %e, gas_used = used, "invocation failed");
        }
        outcome.map_err(|error| failure(error, used, budget))
    }

    /// Runs an agent's HTTP handler (`export default { fetch(request, env) }`, see the `agent` module) on
    /// `contract` with `env_json` as its env (the secrets; `agents.call` is added), within `invocation.budget`
    /// gas and the wall-clock `deadline`. Warm instances are reused as for queries; writes are returned in
    /// nothing (an agent request changes no state).
    pub fn handle(
        &self,
        contract: &Contract,
        invocation: &Invocation,
        request: &AgentRequest,
        env_json: &str,
        deadline: Instant,
        host: &Rc<dyn Host>,
    ) -> Result<AgentOutcome, AgentFailure> {
        let _span = tracing::debug_span!("engine.handle", depth = invocation.depth).entered();
        let Compiled::Js(bytecode) = &contract.compiled else {
            return Err(AgentFailure::new(EngineError::UnknownMethod("default.fetch (wasm agents)".into()), 0, vec![]));
        };
        let mut inv = invocation.clone();
        inv.mode = Mode::Query;
        let session = Session::new(inv, host.clone(), self.limits.clone());
        let budget = invocation.budget;
        let logs = RefCell::new(Vec::new());
        let run = |i: &mut JsInstance, _: &str, _: &[u8]| {
            let r = i.run_agent(request, env_json, deadline);
            *logs.borrow_mut() = i.take_logs();
            r
        };
        let (result, session, used) = match self.run_js(contract.hash, bytecode, session, run) {
            Ok(done) => done,
            Err((error, used)) => {
                let f = failure(error, used, budget);
                return Err(AgentFailure::new(f.error, f.gas_used, logs.into_inner()));
            }
        };
        let used = used.min(budget);
        let logs = logs.into_inner();
        let output = match result.and_then(|output| session.into_outcome(output, used)) {
            Ok(o) => o.output,
            Err(error) => {
                let f = failure(error, used, budget);
                return Err(AgentFailure::new(f.error, f.gas_used, logs));
            }
        };
        let (status, headers, body): (u16, Vec<(String, String)>, Vec<u8>) = borsh::from_slice(&output)
            .map_err(|e| AgentFailure::new(EngineError::Host(e.to_string()), used, logs.clone()))?;
        if !(100..=599).contains(&status) {
            return Err(AgentFailure::new(EngineError::NotAResponse(format!("status {status}")), used, logs));
        }
        Ok(AgentOutcome { status, headers, body, logs, gas_used: used })
    }

    #[allow(clippy::type_complexity)]
    fn run_js(
        &self,
        hash: [u8; 32],
        bytecode: &[u8],
        session: Session,
        run: impl FnOnce(&mut JsInstance, &str, &[u8]) -> Result<Vec<u8>, EngineError>,
    ) -> Result<(Result<Vec<u8>, EngineError>, Session, u64), (EngineError, u64)> {
        let method = session.inv.method.clone();
        let args = session.inv.args.clone();
        let query = session.inv.mode == Mode::Query;
        let pooled = if query { self.pool.borrow_mut().get_mut(&hash).and_then(Vec::pop) } else { None };
        let mut instance = match pooled {
            Some(mut inst) => {
                self.pool_hits.set(self.pool_hits.get() + 1);
                inst.begin(session, &self.limits);
                inst
            }
            None => JsInstance::new(bytecode, &self.limits, session)?,
        };
        let result = run(&mut instance, &method, &args);
        let (session, used) =
            instance.finish().ok_or_else(|| (EngineError::Host("the invocation lost its session".into()), 0))?;
        if query && result.is_ok() && instance.uses < POOL_MAX_USES {
            instance.collect();
            let mut pool = self.pool.borrow_mut();
            if !pool.contains_key(&hash) && pool.len() >= POOL_CODES {
                pool.pop_first();
            }
            let warm = pool.entry(hash).or_default();
            if warm.len() < POOL_PER_CODE {
                warm.push(instance);
            }
        }
        Ok((result, session, used))
    }
}

/// Running out of gas uses the whole budget (wasm stops with a little fuel left when the next instruction
/// costs more than remains; JavaScript notices only at its next poll).
fn failure(error: EngineError, used: u64, budget: u64) -> Failure {
    let gas_used = if error == EngineError::OutOfGas { budget } else { used.min(budget) };
    Failure { error, gas_used }
}
