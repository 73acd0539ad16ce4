//! The engine through its public API, with an in-memory host: JavaScript and wasm contracts side by side.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use proptest::prelude::*;
use umbra_engine::{
    CallOutput, Code, Contract, Engine, EngineError, Failure, FetchRequest, FetchResponse, Host, HostError, Invocation,
    Limits, Mode, Outcome, contract_signer, derive_contract_key,
};

/// Every contract's storage: (contract, key) to value.
type State = BTreeMap<([u8; 32], Vec<u8>), Vec<u8>>;

/// A host over a BTreeMap: the real component for these tests. It applies outcomes itself (nested calls at
/// once, which is enough here) and knows which code every contract id runs.
struct MemHost {
    engine: Rc<Engine>,
    me: Weak<MemHost>,
    state: RefCell<State>,
    contracts: RefCell<BTreeMap<[u8; 32], Contract>>,
}

impl MemHost {
    fn new(engine: Rc<Engine>) -> Rc<MemHost> {
        Rc::new_cyclic(|me| MemHost {
            engine,
            me: me.clone(),
            state: RefCell::new(BTreeMap::new()),
            contracts: RefCell::new(BTreeMap::new()),
        })
    }

    fn deploy(&self, id: [u8; 32], code: &Code) -> Result<(), EngineError> {
        let contract = self.engine.load(code)?;
        self.contracts.borrow_mut().insert(id, contract);
        Ok(())
    }

    fn apply(&self, contract: [u8; 32], outcome: &Outcome) {
        let mut state = self.state.borrow_mut();
        for (k, v) in &outcome.writes {
            match v {
                Some(v) => state.insert((contract, k.clone()), v.clone()),
                None => state.remove(&(contract, k.clone())),
            };
        }
    }

    /// Runs an outside invocation and applies its outcome.
    fn run(&self, inv: &Invocation) -> Result<Outcome, Failure> {
        let contract = self
            .contracts
            .borrow()
            .get(&inv.contract)
            .cloned()
            .ok_or(Failure { error: EngineError::Host("no such contract".into()), gas_used: 0 })?;
        let host: Rc<dyn Host> = self.me.upgrade().ok_or(Failure { error: EngineError::OutOfGas, gas_used: 0 })?;
        let outcome = self.engine.invoke(&contract, inv, &host)?;
        self.apply(inv.contract, &outcome);
        Ok(outcome)
    }
}

/// Each contract's key, as the worker would hold it.
fn contract_key(id: &[u8; 32]) -> [u8; 32] {
    derive_contract_key(&[7u8; 32], id)
}

impl Host for MemHost {
    fn storage_get(&self, contract: &[u8; 32], key: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self.state.borrow().get(&(*contract, key.to_vec())).cloned())
    }

    fn derive_key(&self, contract: &[u8; 32], salt: &[u8]) -> Result<[u8; 32], HostError> {
        Ok(derive_contract_key(&contract_key(contract), salt))
    }

    fn sign(&self, contract: &[u8; 32], msg: &[u8]) -> Result<[u8; 64], HostError> {
        Ok(contract_signer(&contract_key(contract)).sign(msg))
    }

    fn call(&self, inv: &Invocation) -> Result<CallOutput, Failure> {
        let outcome = self.run(inv)?;
        Ok(CallOutput { output: outcome.output, gas_used: outcome.gas_used })
    }

    fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse, HostError> {
        Ok(FetchResponse { status: 200, body: format!("fetched {}", request.url).into_bytes() })
    }
}

const JS_ID: [u8; 32] = [1; 32];
const WASM_ID: [u8; 32] = [2; 32];

fn inv(contract: [u8; 32], mode: Mode, method: &str, args: &[u8]) -> Invocation {
    Invocation {
        contract,
        mode,
        method: method.to_string(),
        args: args.to_vec(),
        caller: Some([9; 32]),
        height: 42,
        time_ms: 1_700_000_000_123,
        seed: [5; 32],
        budget: 50_000_000,
        depth: 0,
    }
}

fn setup() -> (Rc<Engine>, Rc<MemHost>) {
    let engine = Rc::new(Engine::new(Limits::default()).expect("engine"));
    let host = MemHost::new(engine.clone());
    (engine, host)
}

fn js(src: &str) -> Code {
    Code::JavaScript(src.as_bytes().to_vec())
}

fn wasm(wat_text: &str) -> Code {
    Code::Wasm(wat::parse_str(wat_text).expect("valid WAT"))
}

fn err(r: Result<Outcome, Failure>) -> EngineError {
    match r {
        Ok(o) => panic!("expected a failure, got {o:?}"),
        Err(f) => f.error,
    }
}

const JS_COUNTER: &str = r#"
export function increment(args) {
  const by = (args && args.by) || 1;
  const n = (umbra.storage.getJson("count") || 0) + by;
  umbra.storage.setJson("count", n);
  umbra.emit("incremented", { n });
  return n;
}
export function get() { return umbra.storage.getJson("count") || 0; }
"#;

const WAT_COUNTER: &str = r#"
(module
  (import "env" "storage_get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "env" "storage_set" (func $set (param i32 i32 i32 i32)))
  (import "env" "output" (func $output (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "count")
  (func $load
    (if (i32.eq (call $get (i32.const 0) (i32.const 5) (i32.const 16) (i32.const 8)) (i32.const -1))
      (then (i64.store (i32.const 16) (i64.const 0)))))
  (func (export "increment")
    (call $load)
    (i64.store (i32.const 16) (i64.add (i64.load (i32.const 16)) (i64.const 1)))
    (call $set (i32.const 0) (i32.const 5) (i32.const 16) (i32.const 8))
    (call $output (i32.const 16) (i32.const 8)))
  (func (export "get")
    (call $load)
    (call $output (i32.const 16) (i32.const 8))))
"#;

#[test]
fn a_javascript_counter_keeps_its_count_in_host_storage() {
    let (_engine, host) = setup();
    host.deploy(JS_ID, &js(JS_COUNTER)).expect("deploy");
    assert_eq!(host.run(&inv(JS_ID, Mode::Command, "increment", b"")).expect("run").output, b"1");
    let out = host.run(&inv(JS_ID, Mode::Command, "increment", br#"{"by":5}"#)).expect("run");
    assert_eq!(out.output, b"6");
    assert_eq!(out.writes.get(b"count".as_slice()), Some(&Some(b"6".to_vec())));
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].name, "incremented");
    assert_eq!(out.events[0].data, br#"{"n":6}"#);
    assert!(out.gas_used > 0);
    assert_eq!(host.run(&inv(JS_ID, Mode::Query, "get", b"")).expect("query").output, b"6");
}

#[test]
fn a_wasm_counter_keeps_its_count_in_host_storage() {
    let (_engine, host) = setup();
    host.deploy(WASM_ID, &wasm(WAT_COUNTER)).expect("deploy");
    host.run(&inv(WASM_ID, Mode::Command, "increment", b"")).expect("run");
    let out = host.run(&inv(WASM_ID, Mode::Command, "increment", b"")).expect("run");
    assert_eq!(out.output, 2u64.to_le_bytes());
    assert_eq!(out.writes.get(b"count".as_slice()), Some(&Some(2u64.to_le_bytes().to_vec())));
    assert!(out.gas_used > 0);
    assert_eq!(host.run(&inv(WASM_ID, Mode::Query, "get", b"")).expect("query").output, 2u64.to_le_bytes());
}

const JS_ENTROPY: &str = r#"
export function roll() {
  const r = [Math.random(), Math.random()];
  const d = new Date();
  const bytes = Array.from(umbra.random(16));
  const key = Array.from(umbra.deriveKey("k"));
  const sig = umbra.sign("hello");
  umbra.emit("roll", { r, bytes });
  umbra.transfer("0202020202020202020202020202020202020202020202020202020202020202", 10n ** 20n);
  umbra.storage.set("sig", sig);
  return { r, now: Date.now(), iso: d.toISOString(), hours: d.getHours(), str: String(d), bytes, key,
           caller: umbra.caller, block: umbra.block };
}
"#;

const WAT_ENTROPY: &str = r#"
(module
  (import "env" "random" (func $random (param i32 i32)))
  (import "env" "block_time" (func $time (result i64)))
  (import "env" "sign" (func $sign (param i32 i32 i32)))
  (import "env" "output" (func $output (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "roll")
    (call $random (i32.const 0) (i32.const 32))
    (i64.store (i32.const 32) (call $time))
    (call $sign (i32.const 0) (i32.const 40) (i32.const 64))
    (call $output (i32.const 0) (i32.const 128))))
"#;

#[test]
fn the_same_command_on_two_fresh_engines_gives_byte_identical_outcomes() {
    let run = || {
        let (_engine, host) = setup();
        host.deploy(JS_ID, &js(JS_ENTROPY)).expect("deploy");
        host.deploy(WASM_ID, &wasm(WAT_ENTROPY)).expect("deploy");
        let a = host.run(&inv(JS_ID, Mode::Command, "roll", b"")).expect("js");
        let b = host.run(&inv(WASM_ID, Mode::Command, "roll", b"")).expect("wasm");
        (a, b)
    };
    let (js1, wasm1) = run();
    let (js2, wasm2) = run();
    assert_eq!(js1.to_bytes(), js2.to_bytes());
    assert_eq!(wasm1.to_bytes(), wasm2.to_bytes());
    let out = String::from_utf8(js1.output.clone()).expect("utf8");
    assert!(out.contains(r#""now":1700000000123"#), "{out}");
    assert!(out.contains(r#""iso":"2023-11-14T22:13:20.123Z""#), "{out}");
    assert!(out.contains(r#""hours":22"#), "{out}");
    assert!(out.contains(r#""block":{"height":42,"time":1700000000123}"#), "{out}");
    assert_eq!(js1.transfers[0].amount, 10u128.pow(20));

    // A different seed changes the randomness, not the time.
    let (_engine, host) = setup();
    host.deploy(JS_ID, &js(JS_ENTROPY)).expect("deploy");
    let mut other = inv(JS_ID, Mode::Command, "roll", b"");
    other.seed = [6; 32];
    let js3 = host.run(&other).expect("js");
    assert_ne!(js3.output, js1.output);
}

#[test]
fn signatures_verify_against_the_contract_key() {
    let (_engine, host) = setup();
    let src = r#"
      export function check(a) {
        const sig = umbra.sign("msg");
        return [umbra.verify(hex(a.pk), "msg", sig), umbra.verify(hex(a.pk), "other", sig)];
      }
      function hex(s) { const b = new Uint8Array(s.length / 2); for (let i = 0; i < b.length; i++) b[i] = parseInt(s.substr(2 * i, 2), 16); return b; }
    "#;
    host.deploy(JS_ID, &js(src)).expect("deploy");
    let pk = contract_signer(&contract_key(&JS_ID)).address().0;
    let pk_hex: String = pk.iter().map(|b| format!("{b:02x}")).collect();
    let args = format!(r#"{{"pk":"{pk_hex}"}}"#);
    assert_eq!(host.run(&inv(JS_ID, Mode::Command, "check", args.as_bytes())).expect("run").output, b"[true,false]");
}

#[test]
fn a_wasm_contract_uses_the_whole_host_abi() {
    let (_engine, host) = setup();
    host.deploy(JS_ID, &js(JS_COUNTER)).expect("deploy");
    let wat = format!(
        r#"(module
      (import "env" "input_len" (func $input_len (result i32)))
      (import "env" "input_read" (func $input_read (param i32)))
      (import "env" "emit" (func $emit (param i32 i32 i32 i32)))
      (import "env" "caller" (func $caller (param i32) (result i32)))
      (import "env" "transfer" (func $transfer (param i32 i32)))
      (import "env" "derive_key" (func $derive (param i32 i32 i32)))
      (import "env" "sign" (func $sign (param i32 i32 i32)))
      (import "env" "verify" (func $verify (param i32 i32 i32 i32) (result i32)))
      (import "env" "storage_set" (func $set (param i32 i32 i32 i32)))
      (import "env" "storage_remove" (func $remove (param i32 i32)))
      (import "env" "block_height" (func $height (result i64)))
      (import "env" "call" (func $call (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
      (import "env" "output" (func $output (param i32 i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "ping")
      (data (i32.const 16) "{js_id}")
      (data (i32.const 48) "get")
      (data (i32.const 64) "\e8\03")
      (func (export "run") (local $n i32)
        (call $input_read (i32.const 256))
        (call $emit (i32.const 0) (i32.const 4) (i32.const 256) (call $input_len))
        (if (call $caller (i32.const 96)) (then (call $transfer (i32.const 96) (i32.const 64))))
        (call $derive (i32.const 0) (i32.const 4) (i32.const 128))
        (call $set (i32.const 0) (i32.const 4) (i32.const 128) (i32.const 32))
        (call $set (i32.const 48) (i32.const 3) (i32.const 0) (i32.const 4))
        (call $remove (i32.const 48) (i32.const 3))
        (call $sign (i32.const 0) (i32.const 4) (i32.const 512))
        (i32.store8 (i32.const 1022) (call $verify (i32.const 256) (i32.const 0) (i32.const 4) (i32.const 512)))
        (i32.store8 (i32.const 1023) (i32.wrap_i64 (call $height)))
        (local.set $n (call $call (i32.const 16) (i32.const 48) (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1024) (i32.const 64)))
        (call $output (i32.const 1022) (i32.add (local.get $n) (i32.const 2)))))"#,
        js_id = "\\01".repeat(32)
    );
    host.deploy(WASM_ID, &wasm(&wat)).expect("deploy");
    let pk = contract_signer(&contract_key(&WASM_ID)).address().0;
    let out = host.run(&inv(WASM_ID, Mode::Command, "run", &pk)).expect("run");
    assert_eq!(out.output, [&[1u8, 42][..], b"0"].concat());
    assert_eq!(out.events.len(), 1);
    assert_eq!((out.events[0].name.as_str(), out.events[0].data.as_slice()), ("ping", pk.as_slice()));
    assert_eq!(out.transfers.len(), 1);
    assert_eq!((out.transfers[0].to, out.transfers[0].amount), ([9; 32], 1000));
    let derived = derive_contract_key(&contract_key(&WASM_ID), b"ping");
    assert_eq!(out.writes.get(b"ping".as_slice()), Some(&Some(derived.to_vec())));
    assert_eq!(out.writes.get(b"get".as_slice()), Some(&None));
}

#[test]
fn an_infinite_loop_in_javascript_runs_out_of_gas_and_the_engine_stays_usable() {
    let (_engine, host) = setup();
    let src = format!(
        "{JS_COUNTER}\nexport function spin() {{ for (;;) {{}} }}\nexport function spinCatch() {{ for (;;) {{ try {{ for (;;) {{}} }} catch (e) {{}} }} }}"
    );
    host.deploy(JS_ID, &js(&src)).expect("deploy");
    let mut i = inv(JS_ID, Mode::Command, "spin", b"");
    i.budget = 5_000_000;
    match host.run(&i) {
        Err(f) => assert_eq!((f.error, f.gas_used), (EngineError::OutOfGas, 5_000_000)),
        Ok(o) => panic!("{o:?}"),
    }
    i.method = "spinCatch".into();
    assert_eq!(err(host.run(&i)), EngineError::OutOfGas);
    let mut q = inv(JS_ID, Mode::Query, "spin", b"");
    q.budget = u64::MAX;
    let limited = Engine::new(Limits { query_deadline_ms: Some(50), ..Limits::default() }).expect("engine");
    let contract = limited.load(&js(&src)).expect("load");
    let h: Rc<dyn Host> = host.clone();
    assert_eq!(limited.invoke(&contract, &q, &h).map_err(|f| f.error).expect_err("deadline"), EngineError::OutOfGas);
    assert_eq!(host.run(&inv(JS_ID, Mode::Command, "increment", b"")).expect("next").output, b"1");
}

#[test]
fn an_infinite_loop_in_wasm_runs_out_of_gas_and_the_engine_stays_usable() {
    let (_engine, host) = setup();
    host.deploy(WASM_ID, &wasm(r#"(module (func (export "spin") (loop $l (br $l))))"#)).expect("deploy");
    let mut i = inv(WASM_ID, Mode::Command, "spin", b"");
    i.budget = 1_000_000;
    match host.run(&i) {
        Err(f) => assert_eq!((f.error, f.gas_used), (EngineError::OutOfGas, 1_000_000)),
        Ok(o) => panic!("{o:?}"),
    }
    host.deploy(WASM_ID, &wasm(WAT_COUNTER)).expect("deploy");
    assert_eq!(host.run(&inv(WASM_ID, Mode::Command, "increment", b"")).expect("next").output, 1u64.to_le_bytes());
}

#[test]
fn builtins_that_allocate_pay_gas_for_what_they_allocate() {
    let (_engine, host) = setup();
    // Few loop iterations (well under one interrupt tick), each allocating 1 MiB.
    let src =
        "export function big() { let n = 0; for (let i = 0; i < 8; i++) n += 'x'.repeat(1 << 20).length; return n; }";
    host.deploy(JS_ID, &js(src)).expect("deploy");
    let mut i = inv(JS_ID, Mode::Command, "big", b"");
    let used = host.run(&i).expect("run").gas_used;
    assert!(used >= 8 << 20, "gas {used}");
    i.budget = 4 << 20;
    assert_eq!(err(host.run(&i)), EngineError::OutOfGas);
}

#[test]
fn a_javascript_memory_bomb_stops_with_out_of_memory() {
    let (_engine, host) = setup();
    let src = format!(
        "{JS_COUNTER}\nexport function bomb() {{ const a = []; for (;;) a.push(new Array(100000).fill(1)); }}\nexport function string() {{ return 'x'.repeat(1 << 26).length; }}"
    );
    host.deploy(JS_ID, &js(&src)).expect("deploy");
    let mut i = inv(JS_ID, Mode::Command, "bomb", b"");
    i.budget = u64::MAX / 2;
    assert_eq!(err(host.run(&i)), EngineError::OutOfMemory);
    i.method = "string".into();
    assert_eq!(err(host.run(&i)), EngineError::OutOfMemory);
    assert_eq!(host.run(&inv(JS_ID, Mode::Command, "increment", b"")).expect("next").output, b"1");
}

#[test]
fn a_wasm_memory_bomb_stops_with_out_of_memory() {
    let (_engine, host) = setup();
    let bomb = r#"(module (memory (export "memory") 1)
      (func (export "bomb") (loop $l (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable)) (br $l))))"#;
    host.deploy(WASM_ID, &wasm(bomb)).expect("deploy");
    assert_eq!(err(host.run(&inv(WASM_ID, Mode::Command, "bomb", b""))), EngineError::OutOfMemory);
    let big = r#"(module (memory (export "memory") 1000) (func (export "run")))"#;
    host.deploy(WASM_ID, &wasm(big)).expect("deploy");
    assert_eq!(err(host.run(&inv(WASM_ID, Mode::Command, "run", b""))), EngineError::OutOfMemory);
    host.deploy(WASM_ID, &wasm(WAT_COUNTER)).expect("deploy");
    assert_eq!(host.run(&inv(WASM_ID, Mode::Command, "increment", b"")).expect("next").output, 1u64.to_le_bytes());
}

#[test]
fn weakref_finalization_registry_and_performance_are_undefined() {
    let (_engine, host) = setup();
    let src = "export function probe() { return [typeof WeakRef, typeof FinalizationRegistry, typeof performance, typeof __umbra_host]; }";
    host.deploy(JS_ID, &js(src)).expect("deploy");
    for mode in [Mode::Command, Mode::Query] {
        let out = host.run(&inv(JS_ID, mode, "probe", b"")).expect("run").output;
        assert_eq!(out, br#"["undefined","undefined","undefined","undefined"]"#);
    }
}

#[test]
fn fetch_is_refused_in_commands_and_allowed_in_queries() {
    let (_engine, host) = setup();
    let src = r#"export function get() { try { return umbra.fetch("https://example.com/x").text(); } catch (e) { return "caught"; } }"#;
    host.deploy(JS_ID, &js(src)).expect("deploy");
    // Catching the error does not help: the command still fails.
    assert_eq!(err(host.run(&inv(JS_ID, Mode::Command, "get", b""))), EngineError::NotAllowedInCommand("fetch"));
    assert_eq!(
        host.run(&inv(JS_ID, Mode::Query, "get", b"")).expect("query").output,
        br#""fetched https://example.com/x""#
    );

    let wat = r#"(module
      (import "env" "fetch" (func $fetch (param i32 i32 i32 i32 i32 i32) (result i32)))
      (import "env" "output" (func $output (param i32 i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "https://e/")
      (func (export "get") (call $output (i32.const 100) (call $fetch (i32.const 0) (i32.const 10) (i32.const 0) (i32.const 0) (i32.const 100) (i32.const 200)))))"#;
    host.deploy(WASM_ID, &wasm(wat)).expect("deploy");
    assert_eq!(err(host.run(&inv(WASM_ID, Mode::Command, "get", b""))), EngineError::NotAllowedInCommand("fetch"));
    let out = host.run(&inv(WASM_ID, Mode::Query, "get", b"")).expect("query").output;
    assert_eq!(&out[..2], &200u16.to_le_bytes());
    assert_eq!(&out[2..], b"fetched https://e/");
}

#[test]
fn nested_calls_work_and_stop_at_the_depth_limit() {
    let (engine, host) = setup();
    let src = r#"
      export function recurse(n) { return n === 0 ? 0 : 1 + umbra.callJson(umbra.self, "recurse", n - 1); }
      export function whoCalls() { return umbra.caller; }
      export function askWasm() { return Array.from(umbra.call("0202020202020202020202020202020202020202020202020202020202020202", "increment")); }
    "#;
    host.deploy(JS_ID, &js(src)).expect("deploy");
    host.deploy(WASM_ID, &wasm(WAT_COUNTER)).expect("deploy");
    let max = engine.limits().max_call_depth as u64;
    let ok = host.run(&inv(JS_ID, Mode::Command, "recurse", max.to_string().as_bytes())).expect("within the limit");
    assert_eq!(ok.output, max.to_string().as_bytes());
    let deep = (max + 1).to_string();
    let failure = host.run(&inv(JS_ID, Mode::Command, "recurse", deep.as_bytes())).expect_err("too deep");
    assert_eq!(failure.error, EngineError::DepthExceeded(engine.limits().max_call_depth));
    assert!(failure.gas_used > 0);
    // A call from JavaScript into wasm; the callee sees the caller contract.
    assert_eq!(host.run(&inv(JS_ID, Mode::Command, "askWasm", b"")).expect("call").output, b"[1,0,0,0,0,0,0,0]");
    let mut direct = inv(JS_ID, Mode::Command, "whoCalls", b"");
    direct.caller = None;
    assert_eq!(host.run(&direct).expect("run").output, b"null");
}

#[test]
fn limits_that_would_disable_a_limit_are_refused() {
    for bad in [
        Limits { js_heap_bytes: 0, ..Limits::default() },
        Limits { wasm_max_pages: 70_000, ..Limits::default() },
        Limits { query_deadline_ms: Some(0), ..Limits::default() },
    ] {
        assert!(matches!(Engine::new(bad), Err(EngineError::LimitExceeded(_))));
    }
}

#[test]
fn invalid_wasm_is_refused() {
    let (engine, _host) = setup();
    assert!(matches!(engine.load(&Code::Wasm(b"\0asm\x01\0\0\0garbage".to_vec())), Err(EngineError::InvalidModule(_))));
    assert!(matches!(engine.load(&Code::Wasm(b"not wasm".to_vec())), Err(EngineError::InvalidModule(_))));
    let unknown_import = wasm(r#"(module (import "env" "exec" (func)) (func (export "run")))"#);
    assert!(matches!(engine.load(&unknown_import), Err(EngineError::InvalidModule(m)) if m.contains("env.exec")));
    let wrong_module = wasm(r#"(module (import "wasi" "random" (func)))"#);
    assert!(matches!(engine.load(&wrong_module), Err(EngineError::InvalidModule(_))));
}

#[test]
fn a_wasm_import_with_the_wrong_signature_is_an_invalid_module() {
    let (_engine, host) = setup();
    host.deploy(WASM_ID, &wasm(r#"(module (import "env" "output" (func (param i64))) (func (export "run")))"#))
        .expect("load");
    assert!(matches!(err(host.run(&inv(WASM_ID, Mode::Command, "run", b""))), EngineError::InvalidModule(_)));
}

#[test]
fn loading_the_same_code_twice_hits_the_cache_and_gives_the_same_result() {
    let (engine, host) = setup();
    host.deploy(JS_ID, &js(JS_ENTROPY)).expect("deploy");
    let first = host.run(&inv(JS_ID, Mode::Command, "roll", b"")).expect("run");
    let before = engine.stats();
    host.deploy(JS_ID, &js(JS_ENTROPY)).expect("deploy again");
    let after = engine.stats();
    assert_eq!((after.compiles, after.cache_hits), (before.compiles, before.cache_hits + 1));
    let second = host.run(&inv(JS_ID, Mode::Command, "roll", b"")).expect("run");
    assert_eq!(first.to_bytes(), second.to_bytes());
}

#[test]
fn queries_reuse_warm_instances_and_commands_do_not() {
    let (engine, host) = setup();
    host.deploy(JS_ID, &js(JS_COUNTER)).expect("deploy");
    host.run(&inv(JS_ID, Mode::Command, "increment", b"")).expect("run");
    host.run(&inv(JS_ID, Mode::Command, "increment", b"")).expect("run");
    assert_eq!(engine.stats().pool_hits, 0);
    for _ in 0..3 {
        assert_eq!(host.run(&inv(JS_ID, Mode::Query, "get", b"")).expect("query").output, b"2");
    }
    assert_eq!(engine.stats().pool_hits, 2);
}

#[test]
fn errors_name_what_went_wrong() {
    let (_engine, host) = setup();
    let src = r#"
      export function boom() { throw new Error("no way"); }
      export function swallow() { try { umbra.storage.set("k".repeat(1000), "v"); } catch (e) {} return 1; }
      export const notAFunction = 1;
    "#;
    host.deploy(JS_ID, &js(src)).expect("deploy");
    assert!(
        matches!(err(host.run(&inv(JS_ID, Mode::Command, "boom", b""))), EngineError::Trap(m) if m.contains("no way"))
    );
    assert!(matches!(err(host.run(&inv(JS_ID, Mode::Command, "swallow", b""))), EngineError::LimitExceeded(_)));
    assert_eq!(err(host.run(&inv(JS_ID, Mode::Command, "missing", b""))), EngineError::UnknownMethod("missing".into()));
    assert_eq!(
        err(host.run(&inv(JS_ID, Mode::Command, "notAFunction", b""))),
        EngineError::UnknownMethod("notAFunction".into())
    );
    host.deploy(WASM_ID, &wasm(WAT_COUNTER)).expect("deploy");
    assert_eq!(
        err(host.run(&inv(WASM_ID, Mode::Command, "missing", b""))),
        EngineError::UnknownMethod("missing".into())
    );
    host.deploy(WASM_ID, &wasm(r#"(module (func (export "run") unreachable))"#)).expect("deploy");
    assert!(matches!(err(host.run(&inv(WASM_ID, Mode::Command, "run", b""))), EngineError::Trap(_)));
}

#[test]
fn a_failed_invocation_writes_nothing() {
    let (_engine, host) = setup();
    let src = r#"export function half() { umbra.storage.set("a", "1"); throw new Error("after the write"); }
                 export function read() { return umbra.storage.getString("a"); }"#;
    host.deploy(JS_ID, &js(src)).expect("deploy");
    assert!(host.run(&inv(JS_ID, Mode::Command, "half", b"")).is_err());
    assert_eq!(host.run(&inv(JS_ID, Mode::Command, "read", b"")).expect("read").output, b"null");
}

#[test]
fn deep_recursion_traps_without_crashing_the_process() {
    let (_engine, host) = setup();
    let src =
        format!("{JS_COUNTER}\nexport function deep() {{ function f(n) {{ return f(n + 1) + 1; }} return f(0); }}");
    host.deploy(JS_ID, &js(&src)).expect("deploy");
    let e = err(host.run(&inv(JS_ID, Mode::Command, "deep", b"")));
    assert!(matches!(&e, EngineError::Trap(m) if m.contains("stack")), "{e:?}");
    assert_eq!(host.run(&inv(JS_ID, Mode::Command, "increment", b"")).expect("next").output, b"1");

    host.deploy(WASM_ID, &wasm(r#"(module (func $f (export "deep") (call $f)))"#)).expect("deploy");
    assert!(matches!(err(host.run(&inv(WASM_ID, Mode::Command, "deep", b""))), EngineError::Trap(_)));
}

#[test]
fn recursing_to_the_stack_limit_at_every_call_depth_fits_in_the_documented_thread_stack() {
    let stack = Limits::default().thread_stack_bytes();
    let worker = std::thread::Builder::new().stack_size(stack).spawn(|| {
        let (engine, host) = setup();
        // Recurse until QuickJS refuses, then, from the bottom, call the next level, which does the same.
        let src = r#"export function dive(n) {
            function down() { try { return down(); } catch (e) { return n === 0 ? 0 : 1 + umbra.callJson(umbra.self, "dive", n - 1); } }
            return down();
        }"#;
        host.deploy(JS_ID, &js(src)).expect("deploy");
        let depth = engine.limits().max_call_depth.to_string();
        host.run(&inv(JS_ID, Mode::Command, "dive", depth.as_bytes())).map(|o| o.output)
    });
    let out = worker.expect("spawn").join().expect("the worker thread survives");
    assert_eq!(out.expect("run"), Limits::default().max_call_depth.to_string().as_bytes());
}

#[test]
fn the_global_object_holds_only_deterministic_builtins() {
    let (_engine, host) = setup();
    host.deploy(JS_ID, &js("export function names() { return Object.getOwnPropertyNames(globalThis).sort(); }"))
        .expect("deploy");
    let out = host.run(&inv(JS_ID, Mode::Command, "names", b"")).expect("run").output;
    let names = String::from_utf8(out).expect("utf8");
    for banned in ["WeakRef", "FinalizationRegistry", "performance", "gc", "__umbra_host", "os", "std"] {
        assert!(!names.contains(&format!("\"{banned}\"")), "{banned} in {names}");
    }
    assert!(names.contains("\"umbra\""), "{names}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_the_wasm_loader(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let engine = Engine::new(Limits::default()).expect("engine");
        let _ = engine.load(&Code::Wasm(bytes.clone()));
        let mut with_header = b"\0asm\x01\0\0\0".to_vec();
        with_header.extend_from_slice(&bytes);
        let _ = engine.load(&Code::Wasm(with_header));
    }

    #[test]
    fn arbitrary_source_never_panics_the_javascript_compiler(src in "[ -~\n]{0,200}") {
        let engine = Engine::new(Limits::default()).expect("engine");
        let _ = engine.load(&Code::JavaScript(src.into_bytes()));
    }
}
