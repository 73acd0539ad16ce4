//! JavaScript contracts on QuickJS (`rquickjs`).
//!
//! A contract is one ES module; each exported function is a method. An instance is a runtime, a context with
//! the `umbra` global and the determinism shims, and the evaluated module. Commands always get a fresh instance
//! (QuickJS's interrupt counter and heap accounting are per runtime/context, so a fresh one makes gas and memory
//! limits reproducible); queries reuse warm instances of the same code from a pool.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rquickjs::function::Func;
use rquickjs::module::Declared;
use rquickjs::{
    ArrayBuffer, Context, Ctx, Exception, Function, Module, Object, Persistent, Runtime, TypedArray, Value,
    WriteOptions,
};

use crate::agent::{AGENT_PRELUDE, AgentRequest, MAX_LOG_LINE, MAX_LOG_LINES};

use crate::api::{FetchRequest, Limits, Mode};
use crate::error::EngineError;
use crate::js_alloc::MeteredAllocator;
use crate::session::{Session, hex32, host_gas, parse_hex32};

/// Gas charged each time QuickJS polls the interrupt handler (it does so every 10,000 function calls and loop
/// iterations), so that JavaScript and wasm budgets are of the same order.
pub const JS_GAS_PER_TICK: u64 = 10_000;

/// Gas charged per byte QuickJS allocates while a method runs (see `js_alloc.rs`).
pub const JS_GAS_PER_ALLOC_BYTE: u64 = 1;

/// The module name contracts are compiled under (it appears in stack traces).
const MODULE_NAME: &str = "contract.js";

/// Installs `umbra`, replaces `Math.random` and `Date`, and removes nondeterministic or GC-observing globals.
/// `h` is the object of Rust host functions; it is not reachable afterwards except through these closures.
const PRELUDE: &str = r#"
(function (h) {
  "use strict";
  const freeze = Object.freeze;
  const str = (v) => (typeof v === "string" ? v : String(v));
  const bytesOrJson = (v) =>
    v === undefined ? "" :
    (typeof v === "string" || v instanceof Uint8Array || v instanceof ArrayBuffer) ? v : JSON.stringify(v);
  const utf8 = (b) => h.utf8(b);
  const storage = freeze({
    get: (k) => h.get(k),
    getString: (k) => { const v = h.get(k); return v === null ? null : utf8(v); },
    getJson: (k) => { const v = h.get(k); return v === null ? null : JSON.parse(utf8(v)); },
    set: (k, v) => h.set(k, v),
    setJson: (k, v) => h.set(k, JSON.stringify(v)),
    remove: (k) => h.remove(k),
  });
  const umbra = {
    storage,
    emit: (name, data) => h.emit(str(name), bytesOrJson(data)),
    random: (n) => h.random(n),
    deriveKey: (salt) => h.deriveKey(salt),
    sign: (msg) => h.sign(msg),
    verify: (publicKey, msg, sig) => h.verify(publicKey, msg, sig),
    call: (contract, method, args) => h.call(str(contract), str(method), bytesOrJson(args)),
    callJson: (contract, method, args) => {
      const out = h.call(str(contract), str(method), bytesOrJson(args));
      return out.length === 0 ? undefined : JSON.parse(utf8(out));
    },
    transfer: (to, amount) => h.transfer(str(to), str(amount)),
    fetch: (url, init) => {
      init = init || {};
      const r = h.fetch(str(init.method || "GET"), str(url), JSON.stringify(init.headers || {}),
        init.body === undefined ? "" : init.body);
      return freeze({ status: r.status, body: r.body, text: () => utf8(r.body), json: () => JSON.parse(utf8(r.body)) });
    },
    utf8,
  };
  Object.defineProperty(umbra, "caller", { get: () => h.caller(), enumerable: true });
  Object.defineProperty(umbra, "self", { get: () => h.self(), enumerable: true });
  Object.defineProperty(umbra, "block", { get: () => freeze({ height: h.height(), time: h.time() }), enumerable: true });
  globalThis.umbra = freeze(umbra);

  Math.random = () => h.mathRandom();
  const RealDate = Date;
  const P = RealDate.prototype;
  for (const n of ["FullYear", "Month", "Date", "Day", "Hours", "Minutes", "Seconds", "Milliseconds"]) {
    P["get" + n] = P["getUTC" + n];
    if (n !== "Day") P["set" + n] = P["setUTC" + n];
  }
  P.getTimezoneOffset = () => 0;
  P.toString = P.toUTCString;
  P.toLocaleString = P.toUTCString;
  P.toDateString = function () { return this.toISOString().slice(0, 10); };
  P.toTimeString = function () { return this.toISOString().slice(11); };
  P.toLocaleDateString = P.toDateString;
  P.toLocaleTimeString = P.toTimeString;
  class UmbraDate extends RealDate {
    constructor(...a) {
      if (a.length === 0) super(h.time());
      else if (a.length === 1) super(a[0]);
      else super(RealDate.UTC(...a));
    }
    static now() { return h.time(); }
  }
  globalThis.Date = UmbraDate;
  delete globalThis.WeakRef;
  delete globalThis.FinalizationRegistry;
  delete globalThis.performance;
})(globalThis.__umbra_host);
delete globalThis.__umbra_host;
"#;

/// Counts interrupt-handler calls and allocated bytes against the budget; shared with the handler closure.
#[derive(Default)]
struct Meter {
    /// Bytes the runtime's allocator has handed out since it was made.
    allocated: Rc<Cell<u64>>,
    /// `allocated` when the current invocation started.
    alloc_base: Cell<u64>,
    ticks: Cell<u64>,
    extra: Cell<u64>,
    budget: Cell<u64>,
    deadline: Cell<Option<Instant>>,
    exhausted: Cell<bool>,
    /// `console` lines of the current invocation.
    logs: RefCell<Vec<(String, String)>>,
}

impl Meter {
    fn used(&self) -> u64 {
        let allocated = self.allocated.get().saturating_sub(self.alloc_base.get());
        self.ticks
            .get()
            .saturating_mul(JS_GAS_PER_TICK)
            .saturating_add(self.extra.get())
            .saturating_add(allocated.saturating_mul(JS_GAS_PER_ALLOC_BYTE))
    }

    fn reset(&self, budget: u64, deadline: Option<Instant>) {
        self.alloc_base.set(self.allocated.get());
        self.ticks.set(0);
        self.extra.set(0);
        self.budget.set(budget);
        self.deadline.set(deadline);
        self.exhausted.set(false);
        self.logs.borrow_mut().clear();
    }

    fn log(&self, level: String, mut text: String) {
        let mut logs = self.logs.borrow_mut();
        if logs.len() >= MAX_LOG_LINES {
            return;
        }
        if text.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        logs.push((level, text));
    }

    /// The interrupt handler: true stops the script with an uncatchable error.
    fn tick(&self) -> bool {
        self.ticks.set(self.ticks.get().saturating_add(1));
        if self.used() > self.budget.get() || self.deadline.get().is_some_and(|d| Instant::now() >= d) {
            self.exhausted.set(true);
        }
        self.exhausted.get()
    }

    /// Charges host-call gas; false when the budget is gone.
    fn charge(&self, gas: u64) -> bool {
        self.extra.set(self.extra.get().saturating_add(gas));
        if self.used() > self.budget.get() {
            self.exhausted.set(true);
        }
        !self.exhausted.get()
    }
}

type Slot = Rc<RefCell<Option<Session>>>;

/// A runtime and context with the contract module evaluated. Field order is drop order: the module handle
/// must go before the context and runtime it lives in.
pub(crate) struct JsInstance {
    module: Persistent<Object<'static>>,
    /// The agent dispatcher made by [`AGENT_PRELUDE`].
    dispatch: Persistent<Function<'static>>,
    ctx: Context,
    rt: Runtime,
    slot: Slot,
    meter: Rc<Meter>,
    /// Invocations served, for retiring pooled instances.
    pub(crate) uses: u32,
}

/// Compiles `source` to QuickJS bytecode (syntax errors become [`EngineError::InvalidModule`]).
pub(crate) fn compile(source: &[u8], limits: &Limits) -> Result<Vec<u8>, EngineError> {
    if source.len() > limits.max_code_len {
        return Err(EngineError::InvalidModule(format!("code of {} bytes is too large", source.len())));
    }
    let rt = Runtime::new_with_alloc(MeteredAllocator::new(Rc::default()))
        .map_err(|e| EngineError::InvalidModule(e.to_string()))?;
    rt.set_memory_limit(limits.js_heap_bytes);
    rt.set_max_stack_size(limits.js_stack_bytes);
    let ctx = Context::full(&rt).map_err(|e| EngineError::InvalidModule(e.to_string()))?;
    ctx.with(|ctx| {
        let module = Module::declare(ctx.clone(), MODULE_NAME, source.to_vec())
            .map_err(|e| EngineError::InvalidModule(describe(&ctx, e)))?;
        module.write(WriteOptions::default()).map_err(|e| EngineError::InvalidModule(describe(&ctx, e)))
    })
}

/// Compiles a prelude (engine code, not a contract's) to module bytecode.
fn compile_prelude(name: &str, source: &str) -> Result<Vec<u8>, String> {
    let rt = Runtime::new().map_err(|e| e.to_string())?;
    let ctx = Context::full(&rt).map_err(|e| e.to_string())?;
    ctx.with(|ctx| {
        let module = Module::declare(ctx.clone(), name, source).map_err(|e| describe(&ctx, e))?;
        module.write(WriteOptions::default()).map_err(|e| describe(&ctx, e))
    })
}

/// The `umbra` and agent preludes' bytecode.
type Preludes = (Vec<u8>, Vec<u8>);

/// The preludes as bytecode: [`PRELUDE`] (a module with the same statements) and [`AGENT_PRELUDE`] (a module
/// exporting the expression as `default`). Compiled once per process: parsing them in every fresh instance
/// took about a third of a command's cold start.
fn prelude_bytecode() -> Result<&'static Preludes, EngineError> {
    static BYTECODE: std::sync::OnceLock<Result<Preludes, String>> = std::sync::OnceLock::new();
    BYTECODE
        .get_or_init(|| {
            let umbra = compile_prelude("umbra:prelude", PRELUDE)?;
            let agent = compile_prelude("umbra:agent-prelude", &format!("export default {};", AGENT_PRELUDE.trim()))?;
            Ok((umbra, agent))
        })
        .as_ref()
        .map_err(|e| EngineError::Host(format!("the JavaScript preludes do not compile: {e}")))
}

/// Evaluates a module from `bytecode` and returns its namespace.
fn eval_bytecode<'js>(ctx: &Ctx<'js>, bytecode: &[u8]) -> rquickjs::Result<Object<'js>> {
    let (module, promise) = load_module(ctx.clone(), bytecode)?.eval()?;
    promise.finish::<()>()?;
    module.namespace()
}

/// Loads bytecode made by [`compile`] or [`prelude_bytecode`].
#[allow(unsafe_code)]
fn load_module<'js>(ctx: Ctx<'js>, bytecode: &[u8]) -> rquickjs::Result<Module<'js, Declared>> {
    // SAFETY: QuickJS trusts bytecode. Ours only ever comes from `compile` above, run by this same QuickJS build
    // in this process, and is kept immutable in the engine's cache; bytecode from outside is never loaded.
    unsafe { Module::load(ctx, bytecode) }
}

/// Copies the bytes of a typed array or array buffer.
#[allow(unsafe_code)]
fn copy_bytes(v: &Value<'_>) -> Option<Vec<u8>> {
    if let Ok(ta) = TypedArray::<u8>::from_value(v.clone()) {
        // SAFETY: the slice is copied at once; no JavaScript runs while it is borrowed.
        return unsafe { ta.as_bytes() }.map(<[u8]>::to_vec);
    }
    let ab = ArrayBuffer::from_value(v.clone())?;
    // SAFETY: as above.
    unsafe { ab.as_bytes() }.map(<[u8]>::to_vec)
}

/// Bytes from a string (UTF-8), a `Uint8Array` or an `ArrayBuffer`.
fn bytes_arg(ctx: &Ctx<'_>, v: &Value<'_>) -> rquickjs::Result<Vec<u8>> {
    if let Some(s) = v.as_string() {
        return Ok(s.to_string()?.into_bytes());
    }
    copy_bytes(v).ok_or_else(|| Exception::throw_type(ctx, "expected a string, Uint8Array or ArrayBuffer"))
}

fn fixed_arg<const N: usize>(ctx: &Ctx<'_>, v: &Value<'_>, what: &str) -> rquickjs::Result<[u8; N]> {
    let b = bytes_arg(ctx, v)?;
    b.try_into().map_err(|_| Exception::throw_type(ctx, &format!("{what} must be {N} bytes")))
}

fn u8_array<'js>(ctx: &Ctx<'js>, bytes: Vec<u8>) -> rquickjs::Result<Value<'js>> {
    Ok(TypedArray::<u8>::new(ctx.clone(), bytes)?.into_value())
}

/// Turns an rquickjs error (with the pending exception, if any) into a message.
fn describe(ctx: &Ctx<'_>, e: rquickjs::Error) -> String {
    if !matches!(e, rquickjs::Error::Exception) {
        return e.to_string();
    }
    let v = ctx.catch();
    if let Some(ex) = v.as_exception() {
        let msg = ex.message().unwrap_or_default();
        return match ex.stack() {
            Some(stack) if !stack.is_empty() => format!("{msg}\n{stack}"),
            _ => msg,
        };
    }
    v.as_string().and_then(|s| s.to_string().ok()).unwrap_or_else(|| format!("{v:?}"))
}

impl JsInstance {
    /// Builds an instance for `bytecode` and evaluates the module with `session` active (top-level code may use
    /// `umbra`). The session stays in the instance; take it back with [`JsInstance::finish`].
    /// On failure, returns the error with the gas used.
    pub(crate) fn new(bytecode: &[u8], limits: &Limits, session: Session) -> Result<JsInstance, (EngineError, u64)> {
        let internal = |e: rquickjs::Error| (EngineError::Host(format!("javascript runtime: {e}")), 0);
        let meter = Rc::new(Meter::default());
        let rt = Runtime::new_with_alloc(MeteredAllocator::new(meter.allocated.clone())).map_err(internal)?;
        rt.set_memory_limit(limits.js_heap_bytes);
        rt.set_max_stack_size(limits.js_stack_bytes);
        meter.reset(session.inv.budget, deadline(&session, limits));
        let m = meter.clone();
        rt.set_interrupt_handler(Some(Box::new(move || m.tick())));
        let ctx = Context::full(&rt).map_err(internal)?;
        let slot: Slot = Rc::new(RefCell::new(Some(session)));
        type Made = (Persistent<Object<'static>>, Persistent<Function<'static>>);
        let (module, dispatch) = ctx.with(|ctx| -> Result<Made, (EngineError, u64)> {
            let setup = |e| (EngineError::Host(describe(&ctx, e)), 0);
            let (umbra_prelude, agent_prelude) = prelude_bytecode().map_err(|e| (e, 0))?;
            install_host(&ctx, &slot, &meter).map_err(setup)?;
            eval_bytecode(&ctx, umbra_prelude).map_err(setup)?;
            let factory: Function =
                eval_bytecode(&ctx, agent_prelude).and_then(|ns| ns.get("default")).map_err(setup)?;
            let m = meter.clone();
            let log = Func::from(move |level: String, text: String| m.log(level, text));
            let wallet_factory: Function = ctx.eval(crate::wallet::WALLET_FACTORY).map_err(setup)?;
            let wallet: Object =
                wallet_factory.call((wallet_host(&ctx, &slot, &meter).map_err(setup)?,)).map_err(setup)?;
            let dispatch: Function = factory.call((log, wallet)).map_err(setup)?;
            let dispatch = Persistent::save(&ctx, dispatch);
            // Setting up the context is the engine's cost, not the contract's.
            let (budget, deadline) = (meter.budget.get(), meter.deadline.get());
            meter.reset(budget, deadline);
            match eval_bytecode(&ctx, bytecode) {
                Ok(ns) => Ok((Persistent::save(&ctx, ns), dispatch)),
                Err(e) => Err((classify(&ctx, e, &slot, &meter), meter.used())),
            }
        })?;
        Ok(JsInstance { module, dispatch, ctx, rt, slot, meter, uses: 0 })
    }

    /// Makes `session` the active one (for a pooled instance) and resets the meter.
    pub(crate) fn begin(&mut self, session: Session, limits: &Limits) {
        self.meter.reset(session.inv.budget, deadline(&session, limits));
        *self.slot.borrow_mut() = Some(session);
    }

    /// Runs `method` with the active session's arguments; returns the raw output.
    pub(crate) fn run(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, EngineError> {
        self.uses = self.uses.saturating_add(1);
        let (slot, meter) = (&self.slot, &self.meter);
        let module = self.module.clone();
        self.ctx.with(|ctx| {
            let ns = module.restore(&ctx).map_err(|e| EngineError::Host(e.to_string()))?;
            let f: Value = ns.get(method).map_err(|e| classify(&ctx, e, slot, meter))?;
            let Some(f) = f.as_function().cloned() else {
                return Err(EngineError::UnknownMethod(method.to_string()));
            };
            let call = || -> rquickjs::Result<Vec<u8>> {
                let parsed = match std::str::from_utf8(args) {
                    Ok(s) if !s.is_empty() => match ctx.json_parse(s) {
                        Ok(v) => v,
                        Err(_) => {
                            let _ = ctx.catch();
                            Value::new_undefined(ctx.clone())
                        }
                    },
                    _ => Value::new_undefined(ctx.clone()),
                };
                let raw = u8_array(&ctx, args.to_vec())?;
                let ret: Value = f.call((parsed, raw))?;
                let ret = match ret.as_promise() {
                    Some(p) => p.finish::<Value>()?,
                    None => ret,
                };
                if ret.is_undefined() {
                    return Ok(Vec::new());
                }
                if let Some(b) = copy_bytes(&ret) {
                    return Ok(b);
                }
                Ok(ctx.json_stringify(ret)?.map(|s| s.to_string()).transpose()?.unwrap_or_default().into_bytes())
            };
            let output = call().map_err(|e| classify(&ctx, e, slot, meter))?;
            // Allocation gas is checked at interrupt polls; a method that ends between two polls is checked here.
            if meter.used() > meter.budget.get() {
                return Err(EngineError::OutOfGas);
            }
            Ok(output)
        })
    }

    /// Runs the module's `default.fetch(request, env)` (see `agent.rs`) with wall-clock `deadline`; the output
    /// is the borsh encoding of `(status, headers, body)`.
    pub(crate) fn run_agent(
        &mut self,
        request: &AgentRequest,
        env_json: &str,
        deadline: Instant,
    ) -> Result<Vec<u8>, EngineError> {
        self.uses = self.uses.saturating_add(1);
        let earlier = self.meter.deadline.get().map_or(deadline, |d| d.min(deadline));
        self.meter.deadline.set(Some(earlier));
        let (slot, meter) = (&self.slot, &self.meter);
        let (module, dispatch) = (self.module.clone(), self.dispatch.clone());
        self.ctx.with(|ctx| {
            let ns = module.restore(&ctx).map_err(|e| EngineError::Host(e.to_string()))?;
            let dispatch = dispatch.restore(&ctx).map_err(|e| EngineError::Host(e.to_string()))?;
            let headers = serde_json::to_string(&request.headers).unwrap_or_else(|_| "[]".into());
            let call = || -> rquickjs::Result<Object<'_>> {
                let body = u8_array(&ctx, request.body.clone())?;
                let ret: Value =
                    dispatch.call((ns, request.method.as_str(), request.url.as_str(), headers, body, env_json))?;
                match ret.as_promise() {
                    Some(p) => p.finish::<Object>(),
                    None => Object::from_value(ret),
                }
            };
            let out = match call() {
                Ok(o) => o,
                Err(rquickjs::Error::WouldBlock) if !meter.exhausted.get() => return Err(EngineError::NeverSettled),
                Err(e) => return Err(classify(&ctx, e, slot, meter)),
            };
            let read = || -> rquickjs::Result<Result<Vec<u8>, EngineError>> {
                if out.contains_key("missing")? {
                    return Ok(Err(EngineError::UnknownMethod("default.fetch".into())));
                }
                if let Some(what) = out.get::<_, Option<String>>("notResponse")? {
                    return Ok(Err(EngineError::NotAResponse(what)));
                }
                let status: i32 = out.get("status")?;
                let headers: String = out.get("headers")?;
                let headers: Vec<(String, String)> = serde_json::from_str(&headers).unwrap_or_default();
                let body = bytes_arg(&ctx, &out.get::<_, Value>("body")?)?;
                let status = u16::try_from(status).unwrap_or(500);
                Ok(Ok(borsh::to_vec(&(status, headers, body)).unwrap_or_default()))
            };
            let output = read().map_err(|e| classify(&ctx, e, slot, meter))??;
            if meter.used() > meter.budget.get() {
                return Err(EngineError::OutOfGas);
            }
            Ok(output)
        })
    }

    /// The `console` lines of the last invocation.
    pub(crate) fn take_logs(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.meter.logs.borrow_mut())
    }

    /// Takes the session back with the gas used.
    pub(crate) fn finish(&mut self) -> Option<(Session, u64)> {
        let session = self.slot.borrow_mut().take()?;
        Some((session, self.meter.used()))
    }

    /// Frees garbage between pooled queries.
    pub(crate) fn collect(&self) {
        self.rt.run_gc();
    }
}

fn deadline(session: &Session, limits: &Limits) -> Option<Instant> {
    match session.inv.mode {
        Mode::Command => None,
        Mode::Query => limits.query_deadline_ms.map(|ms| Instant::now() + Duration::from_millis(ms)),
    }
}

/// Maps a failed run to the engine error: a recorded fatal host error first, then gas, memory, then a trap.
fn classify(ctx: &Ctx<'_>, e: rquickjs::Error, slot: &Slot, meter: &Meter) -> EngineError {
    let message = describe(ctx, e);
    if let Some(fatal) = slot.borrow().as_ref().and_then(|s| s.fatal.clone()) {
        return fatal;
    }
    if meter.exhausted.get() {
        return EngineError::OutOfGas;
    }
    if message.starts_with("out of memory") || message.contains("Allocation failed") {
        return EngineError::OutOfMemory;
    }
    EngineError::Trap(message)
}

/// Runs `f` on the active session, charging `gas` first; host failures become thrown JavaScript errors (the
/// session remembers them, so catching them does not help the contract).
fn with_session<'js, T>(
    ctx: &Ctx<'js>,
    slot: &Slot,
    meter: &Meter,
    gas: u64,
    f: impl FnOnce(&mut Session) -> Result<T, EngineError>,
) -> rquickjs::Result<T> {
    let mut guard = slot.borrow_mut();
    let Some(session) = guard.as_mut() else {
        return Err(Exception::throw_internal(ctx, "no active invocation"));
    };
    if !meter.charge(gas) {
        let e = session.fail(EngineError::OutOfGas);
        return Err(Exception::throw_internal(ctx, &e.to_string()));
    }
    f(session).map_err(|e| Exception::throw_internal(ctx, &e.to_string()))
}

/// Gas of one wallet request on top of its bytes (a signature or two).
const WALLET_GAS: u64 = 100_000;

/// The Rust side of `env.wallet`, `env.eth` and `env.attest`: `(op, json, bytes) -> json`. Bad shapes throw a
/// `TypeError`; a refusal by the host throws an `Error`; both can be caught.
fn wallet_host<'js>(ctx: &Ctx<'js>, slot: &Slot, meter: &Rc<Meter>) -> rquickjs::Result<Function<'js>> {
    let (s, m) = (slot.clone(), meter.clone());
    Function::new(ctx.clone(), move |c: Ctx<'js>, op: String, json: String, bytes: Value<'js>| {
        let bytes = bytes_arg(&c, &bytes)?;
        let gas = host_gas(json.len() + bytes.len()) + WALLET_GAS;
        let request = crate::wallet::parse(&op, &json, bytes).map_err(|e| Exception::throw_type(&c, &e))?;
        match with_session(&c, &s, &m, gas, |x| Ok(x.wallet(&request)))? {
            Ok(reply) => Ok(reply.to_string()),
            Err(EngineError::Host(why)) => Err(Exception::throw_message(&c, &why)),
            Err(e) => Err(Exception::throw_internal(&c, &e.to_string())),
        }
    })
}

/// Defines `globalThis.__umbra_host`, the Rust side of `umbra` (the prelude wraps and then hides it).
fn install_host<'js>(ctx: &Ctx<'js>, slot: &Slot, meter: &Rc<Meter>) -> rquickjs::Result<()> {
    let h = Object::new(ctx.clone())?;
    macro_rules! def {
        ($name:literal, |$c:ident, $s:ident, $m:ident $(, $a:ident)*| $body:expr) => {{
            let $s = slot.clone();
            let $m = meter.clone();
            h.set($name, Func::from(move |$c: Ctx<'js> $(, $a: Value<'js>)*| -> rquickjs::Result<Value<'js>> { $body }))?;
        }};
    }
    def!("get", |c, s, m, k| {
        let key = bytes_arg(&c, &k)?;
        match with_session(&c, &s, &m, host_gas(key.len()), |x| x.storage_get(&key))? {
            Some(v) => {
                m.charge(v.len() as u64);
                u8_array(&c, v)
            }
            None => Ok(Value::new_null(c)),
        }
    });
    def!("set", |c, s, m, k, v| {
        let (key, value) = (bytes_arg(&c, &k)?, bytes_arg(&c, &v)?);
        with_session(&c, &s, &m, host_gas(key.len() + value.len()), |x| x.storage_set(key, value))?;
        Ok(Value::new_undefined(c))
    });
    def!("remove", |c, s, m, k| {
        let key = bytes_arg(&c, &k)?;
        with_session(&c, &s, &m, host_gas(key.len()), |x| x.storage_remove(key))?;
        Ok(Value::new_undefined(c))
    });
    def!("emit", |c, s, m, n, d| {
        let name = n.as_string().map(|x| x.to_string()).transpose()?.unwrap_or_default();
        let data = bytes_arg(&c, &d)?;
        with_session(&c, &s, &m, host_gas(name.len() + data.len()), |x| x.emit(name, data))?;
        Ok(Value::new_undefined(c))
    });
    def!("random", |c, s, m, n| {
        let n = n.as_int().filter(|n| *n >= 0).ok_or_else(|| Exception::throw_type(&c, "random(n): n >= 0"))?;
        let bytes = with_session(&c, &s, &m, host_gas(n as usize), |x| x.random(n as usize))?;
        u8_array(&c, bytes)
    });
    def!("mathRandom", |c, s, m| {
        let bits = with_session(&c, &s, &m, 0, |x| Ok(x.math_random_bits()))?;
        // bits < 2^53, so both the conversion and the division by a power of two are exact.
        Ok(Value::new_float(c, bits as f64 / (1u64 << 53) as f64))
    });
    def!("deriveKey", |c, s, m, salt| {
        let salt = bytes_arg(&c, &salt)?;
        let key = with_session(&c, &s, &m, host_gas(salt.len() + 32), |x| x.derive_key(&salt))?;
        u8_array(&c, key.to_vec())
    });
    def!("sign", |c, s, m, msg| {
        let msg = bytes_arg(&c, &msg)?;
        let sig = with_session(&c, &s, &m, host_gas(msg.len() + 64) + 50_000, |x| x.sign(&msg))?;
        u8_array(&c, sig.to_vec())
    });
    def!("verify", |c, s, m, pk, msg, sig| {
        let pk: [u8; 32] = fixed_arg(&c, &pk, "public key")?;
        let sig: [u8; 64] = fixed_arg(&c, &sig, "signature")?;
        let msg = bytes_arg(&c, &msg)?;
        let ok =
            with_session(&c, &s, &m, host_gas(msg.len() + 96) + 100_000, |_| Ok(Session::verify(&pk, &msg, &sig)))?;
        Ok(Value::new_bool(c, ok))
    });
    def!("call", |c, s, m, id, method, args| {
        let id = id.as_string().map(|x| x.to_string()).transpose()?.unwrap_or_default();
        let contract = parse_hex32(&id).ok_or_else(|| Exception::throw_type(&c, "contract id: 64 hex digits"))?;
        let method = method.as_string().map(|x| x.to_string()).transpose()?.unwrap_or_default();
        let args = bytes_arg(&c, &args)?;
        let gas = host_gas(method.len() + args.len());
        let remaining = m.budget.get().saturating_sub(m.used().saturating_add(gas));
        match with_session(&c, &s, &m, gas, |x| Ok(x.call(contract, method, args, remaining)))? {
            Ok((out, used)) => {
                with_session(&c, &s, &m, used.saturating_add(out.len() as u64), |_| Ok(()))?;
                u8_array(&c, out)
            }
            Err((e, used)) => {
                m.charge(used);
                Err(Exception::throw_internal(&c, &e.to_string()))
            }
        }
    });
    def!("transfer", |c, s, m, to, amount| {
        let to = to.as_string().map(|x| x.to_string()).transpose()?.unwrap_or_default();
        let to = parse_hex32(&to).ok_or_else(|| Exception::throw_type(&c, "recipient: 64 hex digits"))?;
        let amount = amount.as_string().map(|x| x.to_string()).transpose()?.unwrap_or_default();
        let amount: u128 = amount
            .parse()
            .map_err(|_| Exception::throw_type(&c, "amount: a non-negative integer (string or BigInt)"))?;
        with_session(&c, &s, &m, host_gas(48), |x| x.transfer(to, amount))?;
        Ok(Value::new_undefined(c))
    });
    def!("fetch", |c, s, m, method, url, headers, body| {
        let text = |v: &Value<'js>| v.as_string().map(|x| x.to_string()).transpose().map(Option::unwrap_or_default);
        let (method, url, headers_json) = (text(&method)?, text(&url)?, text(&headers)?);
        let body = bytes_arg(&c, &body)?;
        let headers_obj: Object = c.json_parse(headers_json)?.into_object().unwrap_or(Object::new(c.clone())?);
        let mut headers = Vec::new();
        for entry in headers_obj.props::<String, String>() {
            headers.push(entry?);
        }
        let req = FetchRequest { method, url, headers, body };
        let gas = host_gas(req.url.len() + req.body.len());
        let resp = with_session(&c, &s, &m, gas, |x| x.fetch(req))?;
        m.charge(resp.body.len() as u64);
        let out = Object::new(c.clone())?;
        out.set("status", resp.status as i32)?;
        out.set("body", u8_array(&c, resp.body)?)?;
        Ok(out.into_value())
    });
    def!("caller", |c, s, m| {
        match with_session(&c, &s, &m, 0, |x| Ok(x.inv.caller))? {
            Some(id) => Ok(rquickjs::String::from_str(c, &hex32(&id))?.into_value()),
            None => Ok(Value::new_null(c)),
        }
    });
    def!("self", |c, s, m| {
        let id = with_session(&c, &s, &m, 0, |x| Ok(x.inv.contract))?;
        Ok(rquickjs::String::from_str(c, &hex32(&id))?.into_value())
    });
    def!("height", |c, s, m| {
        let h = with_session(&c, &s, &m, 0, |x| Ok(x.inv.height))?;
        Ok(Value::new_number(c, h as f64))
    });
    def!("time", |c, s, m| {
        let t = with_session(&c, &s, &m, 0, |x| Ok(x.inv.time_ms))?;
        Ok(Value::new_number(c, t as f64))
    });
    def!("utf8", |c, _s, _m, b| {
        let bytes = bytes_arg(&c, &b)?;
        Ok(rquickjs::String::from_str(c, &String::from_utf8_lossy(&bytes))?.into_value())
    });
    ctx.globals().set("__umbra_host", h)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_is_an_invalid_module() {
        let err = compile(b"export function ( {", &Limits::default()).expect_err("a syntax error");
        assert!(matches!(err, EngineError::InvalidModule(_)), "{err:?}");
    }

    #[test]
    fn oversized_code_is_refused_before_parsing() {
        let limits = Limits { max_code_len: 4, ..Limits::default() };
        assert!(matches!(compile(b"export const a = 1;", &limits), Err(EngineError::InvalidModule(_))));
    }
}
