//! WebAssembly contracts on `wasmi`: validated, eagerly compiled modules, metered by fuel, with the host API as
//! `env` imports. The ABI is described in the crate documentation.

use wasmi::{Caller, CompilationMode, Config, Extern, Linker, Memory, ResourceLimiter, Store};

use crate::api::{FetchRequest, Limits};
use crate::error::EngineError;
use crate::session::{Session, host_gas};

const PAGE: usize = 64 * 1024;

/// What a store carries: the session, the memory limiter and the return value.
pub(crate) struct StoreData {
    session: Session,
    limiter: PageLimiter,
    output: Vec<u8>,
}

/// Refuses memory beyond the limit (`memory.grow` then returns -1, as the wasm spec allows) and remembers that it
/// did, so a failure that follows reads as out of memory.
struct PageLimiter {
    max_bytes: usize,
    refused: bool,
}

impl ResourceLimiter for PageLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, wasmi_core::LimiterError> {
        if desired > self.max_bytes {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, wasmi_core::LimiterError> {
        if desired > 100_000 {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }

    fn memories(&self) -> usize {
        1
    }
}

/// The wasm side of an [`Engine`](crate::Engine): the wasmi engine and the linker holding the `env` imports.
pub(crate) struct WasmRuntime {
    engine: wasmi::Engine,
    linker: Linker<StoreData>,
}

impl WasmRuntime {
    pub(crate) fn new() -> Result<WasmRuntime, EngineError> {
        let mut config = Config::default();
        config.consume_fuel(true);
        // Lazy compilation charges fuel for translating a function on its first call, so fuel would depend
        // on history; eager compilation makes it depend on the invocation alone.
        config.compilation_mode(CompilationMode::Eager);
        let engine = wasmi::Engine::new(&config);
        let mut linker = Linker::new(&engine);
        define_imports(&mut linker).map_err(|e| EngineError::Host(format!("wasm linker: {e}")))?;
        Ok(WasmRuntime { engine, linker })
    }

    /// Validates and compiles a module.
    pub(crate) fn compile(&self, bytes: &[u8], limits: &Limits) -> Result<wasmi::Module, EngineError> {
        if bytes.len() > limits.max_code_len {
            return Err(EngineError::InvalidModule(format!("code of {} bytes is too large", bytes.len())));
        }
        let module = wasmi::Module::new(&self.engine, bytes).map_err(|e| EngineError::InvalidModule(e.to_string()))?;
        // Unknown imports are refused here rather than at the first invocation; wrong signatures are refused
        // when instantiating.
        if let Some(bad) = module.imports().find(|i| i.module() != "env" || !IMPORTS.contains(&i.name())) {
            return Err(EngineError::InvalidModule(format!("unknown import {}.{}", bad.module(), bad.name())));
        }
        Ok(module)
    }

    /// Instantiates `module` and runs `method` in a fresh store.
    pub(crate) fn run(
        &self,
        module: &wasmi::Module,
        session: Session,
        limits: &Limits,
    ) -> (Result<Vec<u8>, EngineError>, Session, u64) {
        let budget = session.inv.budget;
        let method = session.inv.method.clone();
        let data = StoreData {
            session,
            limiter: PageLimiter { max_bytes: (limits.wasm_max_pages as usize).saturating_mul(PAGE), refused: false },
            output: Vec::new(),
        };
        let mut store = Store::new(&self.engine, data);
        store.limiter(|d| &mut d.limiter);
        let result = (|| -> Result<(), RunError> {
            store.set_fuel(budget).map_err(|e| EngineError::Host(e.to_string()))?;
            let instance = self.linker.instantiate_and_start(&mut store, module)?;
            let func = instance
                .get_typed_func::<(), ()>(&store, &method)
                .map_err(|_| EngineError::UnknownMethod(method.clone()))?;
            func.call(&mut store, ())?;
            Ok(())
        })();
        let used = budget.saturating_sub(store.get_fuel().unwrap_or(0));
        let data = store.into_data();
        let result = match result {
            Ok(()) => Ok(data.output),
            Err(e) => Err(classify(e, &data)),
        };
        (result, data.session, used)
    }
}

/// A failed instantiation or call, before classification.
enum RunError {
    Engine(EngineError),
    Wasm(wasmi::Error),
}

impl From<wasmi::Error> for RunError {
    fn from(e: wasmi::Error) -> Self {
        RunError::Wasm(e)
    }
}

impl From<EngineError> for RunError {
    fn from(e: EngineError) -> Self {
        RunError::Engine(e)
    }
}

fn classify(e: RunError, data: &StoreData) -> EngineError {
    if let Some(fatal) = &data.session.fatal {
        return fatal.clone();
    }
    let e = match e {
        RunError::Engine(e) => return e,
        RunError::Wasm(e) => e,
    };
    if data.limiter.refused {
        return EngineError::OutOfMemory;
    }
    if e.as_trap_code() == Some(wasmi::TrapCode::OutOfFuel) {
        return EngineError::OutOfGas;
    }
    match e.kind() {
        wasmi::errors::ErrorKind::Linker(_) | wasmi::errors::ErrorKind::Instantiation(_) => {
            EngineError::InvalidModule(e.to_string())
        }
        _ => EngineError::Trap(e.to_string()),
    }
}

/// The names of the `env` imports, in the order the crate documentation lists them.
const IMPORTS: &[&str] = &[
    "input_len",
    "input_read",
    "output",
    "storage_get",
    "storage_set",
    "storage_remove",
    "emit",
    "caller",
    "self_id",
    "block_height",
    "block_time",
    "random",
    "derive_key",
    "sign",
    "verify",
    "call",
    "transfer",
    "fetch",
];

type Cx<'a> = Caller<'a, StoreData>;

fn memory(caller: &Cx<'_>) -> Result<Memory, wasmi::Error> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(wasmi::Error::new("the module must export its memory as \"memory\"")),
    }
}

fn len(v: i32) -> Result<usize, wasmi::Error> {
    usize::try_from(v).map_err(|_| wasmi::Error::new("negative length"))
}

fn read(caller: &Cx<'_>, ptr: i32, n: i32) -> Result<Vec<u8>, wasmi::Error> {
    let (ptr, n) = (len(ptr)?, len(n)?);
    let mem = memory(caller)?;
    let data = mem.data(caller);
    let end = ptr.checked_add(n).filter(|e| *e <= data.len()).ok_or_else(|| wasmi::Error::new("out of bounds"))?;
    Ok(data[ptr..end].to_vec())
}

fn read_fixed<const N: usize>(caller: &Cx<'_>, ptr: i32) -> Result<[u8; N], wasmi::Error> {
    let v = read(caller, ptr, N as i32)?;
    v.try_into().map_err(|_| wasmi::Error::new("out of bounds"))
}

fn write(caller: &mut Cx<'_>, ptr: i32, bytes: &[u8]) -> Result<(), wasmi::Error> {
    let ptr = len(ptr)?;
    let mem = memory(caller)?;
    mem.write(caller, ptr, bytes).map_err(|_| wasmi::Error::new("out of bounds"))
}

/// Writes `bytes` at `out` if they fit in `cap`; returns their length either way (so the guest can retry).
fn write_capped(caller: &mut Cx<'_>, out: i32, cap: i32, bytes: &[u8]) -> Result<i32, wasmi::Error> {
    let n = i32::try_from(bytes.len()).map_err(|_| wasmi::Error::new("result too large"))?;
    if bytes.len() <= len(cap)? {
        write(caller, out, bytes)?;
    }
    Ok(n)
}

/// Charges host-call gas against the store's fuel.
fn charge(caller: &mut Cx<'_>, gas: u64) -> Result<(), wasmi::Error> {
    let fuel = caller.get_fuel()?;
    if fuel < gas {
        caller.set_fuel(0)?;
        caller.data_mut().session.fail(EngineError::OutOfGas);
        return Err(wasmi::Error::new("out of gas"));
    }
    caller.set_fuel(fuel - gas)
}

/// Runs a session method; a failure (already recorded as fatal by the session) traps.
fn host<T>(caller: &mut Cx<'_>, f: impl FnOnce(&mut Session) -> Result<T, EngineError>) -> Result<T, wasmi::Error> {
    f(&mut caller.data_mut().session).map_err(|e| wasmi::Error::new(e.to_string()))
}

fn define_imports(l: &mut Linker<StoreData>) -> Result<(), wasmi::errors::LinkerError> {
    l.func_wrap("env", "input_len", |mut c: Cx<'_>| -> Result<i32, wasmi::Error> {
        charge(&mut c, host_gas(0))?;
        i32::try_from(c.data().session.inv.args.len()).map_err(|_| wasmi::Error::new("input too large"))
    })?;
    l.func_wrap("env", "input_read", |mut c: Cx<'_>, out: i32| -> Result<(), wasmi::Error> {
        let args = c.data().session.inv.args.clone();
        charge(&mut c, host_gas(args.len()))?;
        write(&mut c, out, &args)
    })?;
    l.func_wrap("env", "output", |mut c: Cx<'_>, ptr: i32, n: i32| -> Result<(), wasmi::Error> {
        charge(&mut c, host_gas(len(n)?))?;
        let bytes = read(&c, ptr, n)?;
        c.data_mut().output = bytes;
        Ok(())
    })?;
    l.func_wrap(
        "env",
        "storage_get",
        |mut c: Cx<'_>, kp: i32, kl: i32, out: i32, cap: i32| -> Result<i32, wasmi::Error> {
            charge(&mut c, host_gas(len(kl)?))?;
            let key = read(&c, kp, kl)?;
            match host(&mut c, |s| s.storage_get(&key))? {
                Some(v) => {
                    charge(&mut c, v.len() as u64)?;
                    write_capped(&mut c, out, cap, &v)
                }
                None => Ok(-1),
            }
        },
    )?;
    l.func_wrap(
        "env",
        "storage_set",
        |mut c: Cx<'_>, kp: i32, kl: i32, vp: i32, vl: i32| -> Result<(), wasmi::Error> {
            charge(&mut c, host_gas(len(kl)?.saturating_add(len(vl)?)))?;
            let (key, value) = (read(&c, kp, kl)?, read(&c, vp, vl)?);
            host(&mut c, |s| s.storage_set(key, value))
        },
    )?;
    l.func_wrap("env", "storage_remove", |mut c: Cx<'_>, kp: i32, kl: i32| -> Result<(), wasmi::Error> {
        charge(&mut c, host_gas(len(kl)?))?;
        let key = read(&c, kp, kl)?;
        host(&mut c, |s| s.storage_remove(key))
    })?;
    l.func_wrap("env", "emit", |mut c: Cx<'_>, np: i32, nl: i32, dp: i32, dl: i32| -> Result<(), wasmi::Error> {
        charge(&mut c, host_gas(len(nl)?.saturating_add(len(dl)?)))?;
        let name = String::from_utf8(read(&c, np, nl)?).map_err(|_| wasmi::Error::new("event name: UTF-8"))?;
        let data = read(&c, dp, dl)?;
        host(&mut c, |s| s.emit(name, data))
    })?;
    l.func_wrap("env", "caller", |mut c: Cx<'_>, out: i32| -> Result<i32, wasmi::Error> {
        charge(&mut c, host_gas(32))?;
        match c.data().session.inv.caller {
            Some(id) => write(&mut c, out, &id).map(|()| 1),
            None => Ok(0),
        }
    })?;
    l.func_wrap("env", "self_id", |mut c: Cx<'_>, out: i32| -> Result<(), wasmi::Error> {
        charge(&mut c, host_gas(32))?;
        let id = c.data().session.inv.contract;
        write(&mut c, out, &id)
    })?;
    l.func_wrap("env", "block_height", |mut c: Cx<'_>| -> Result<i64, wasmi::Error> {
        charge(&mut c, host_gas(0))?;
        Ok(c.data().session.inv.height as i64)
    })?;
    l.func_wrap("env", "block_time", |mut c: Cx<'_>| -> Result<i64, wasmi::Error> {
        charge(&mut c, host_gas(0))?;
        Ok(c.data().session.inv.time_ms as i64)
    })?;
    l.func_wrap("env", "random", |mut c: Cx<'_>, out: i32, n: i32| -> Result<(), wasmi::Error> {
        charge(&mut c, host_gas(len(n)?))?;
        let n = len(n)?;
        let bytes = host(&mut c, |s| s.random(n))?;
        write(&mut c, out, &bytes)
    })?;
    l.func_wrap("env", "derive_key", |mut c: Cx<'_>, sp: i32, sl: i32, out: i32| -> Result<(), wasmi::Error> {
        charge(&mut c, host_gas(len(sl)?.saturating_add(32)))?;
        let salt = read(&c, sp, sl)?;
        let key = host(&mut c, |s| s.derive_key(&salt))?;
        write(&mut c, out, &key)
    })?;
    l.func_wrap("env", "sign", |mut c: Cx<'_>, mp: i32, ml: i32, out: i32| -> Result<(), wasmi::Error> {
        charge(&mut c, host_gas(len(ml)?.saturating_add(64)) + 50_000)?;
        let msg = read(&c, mp, ml)?;
        let sig = host(&mut c, |s| s.sign(&msg))?;
        write(&mut c, out, &sig)
    })?;
    l.func_wrap("env", "verify", |mut c: Cx<'_>, pk: i32, mp: i32, ml: i32, sp: i32| -> Result<i32, wasmi::Error> {
        charge(&mut c, host_gas(len(ml)?.saturating_add(96)) + 100_000)?;
        let pk: [u8; 32] = read_fixed(&c, pk)?;
        let sig: [u8; 64] = read_fixed(&c, sp)?;
        let msg = read(&c, mp, ml)?;
        Ok(i32::from(Session::verify(&pk, &msg, &sig)))
    })?;
    l.func_wrap(
        "env",
        "call",
        |mut c: Cx<'_>,
         idp: i32,
         mp: i32,
         ml: i32,
         ap: i32,
         al: i32,
         out: i32,
         cap: i32|
         -> Result<i32, wasmi::Error> {
            charge(&mut c, host_gas(len(ml)?.saturating_add(len(al)?).saturating_add(32)))?;
            let id: [u8; 32] = read_fixed(&c, idp)?;
            let method = String::from_utf8(read(&c, mp, ml)?).map_err(|_| wasmi::Error::new("method: UTF-8"))?;
            let args = read(&c, ap, al)?;
            let remaining = c.get_fuel()?;
            let (output, used) = match c.data_mut().session.call(id, method, args, remaining) {
                Ok(done) => done,
                Err((e, used)) => {
                    let fuel = c.get_fuel()?;
                    c.set_fuel(fuel.saturating_sub(used))?;
                    return Err(wasmi::Error::new(e.to_string()));
                }
            };
            charge(&mut c, used.saturating_add(output.len() as u64))?;
            write_capped(&mut c, out, cap, &output)
        },
    )?;
    l.func_wrap("env", "transfer", |mut c: Cx<'_>, to: i32, amount: i32| -> Result<(), wasmi::Error> {
        charge(&mut c, host_gas(48))?;
        let to: [u8; 32] = read_fixed(&c, to)?;
        let amount = u128::from_le_bytes(read_fixed(&c, amount)?);
        host(&mut c, |s| s.transfer(to, amount))
    })?;
    l.func_wrap(
        "env",
        "fetch",
        |mut c: Cx<'_>, up: i32, ul: i32, bp: i32, bl: i32, out: i32, cap: i32| -> Result<i32, wasmi::Error> {
            charge(&mut c, host_gas(len(ul)?.saturating_add(len(bl)?)))?;
            let url = String::from_utf8(read(&c, up, ul)?).map_err(|_| wasmi::Error::new("url: UTF-8"))?;
            let body = read(&c, bp, bl)?;
            let method = if body.is_empty() { "GET" } else { "POST" }.to_string();
            let req = FetchRequest { method, url, headers: Vec::new(), body };
            let resp = host(&mut c, |s| s.fetch(req))?;
            charge(&mut c, resp.body.len() as u64)?;
            let mut bytes = resp.status.to_le_bytes().to_vec();
            bytes.extend_from_slice(&resp.body);
            write_capped(&mut c, out, cap, &bytes)
        },
    )?;
    Ok(())
}
