//! Invocations per second for JavaScript (fresh runtime per command, warm instance per query) and wasm.
//!
//! `cargo bench -p umbra-engine` (timing loops; criterion is not in the workspace). Measured on the shared
//! 2-core machine, release, while other builds ran:
//!
//! ```text
//! js command increment (fresh runtime)      ~2,600 ops/s  (390 us: new runtime, context, prelude, module)
//! js query increment (warm instance)       ~54,000 ops/s  (18 us, including a GC pass)
//! wasm command increment                  ~250,000 ops/s  (4 us: new store and instance)
//! js command fib(100000)                       ~36 ops/s  (28 ms)
//! wasm command fib(100000)                    ~460 ops/s  (2.2 ms, portable dispatch)
//! load cached code                      ~2,400,000 ops/s  (hash + cache hit)
//! ```

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use umbra_engine::{
    CallOutput, Code, Engine, Failure, Host, HostError, Invocation, Limits, Mode, contract_signer, derive_contract_key,
};

/// A host with fixed storage and no calls: the bench measures the engine, not the host.
struct BenchHost(BTreeMap<Vec<u8>, Vec<u8>>);

impl Host for BenchHost {
    fn storage_get(&self, _contract: &[u8; 32], key: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self.0.get(key).cloned())
    }

    fn derive_key(&self, contract: &[u8; 32], salt: &[u8]) -> Result<[u8; 32], HostError> {
        Ok(derive_contract_key(contract, salt))
    }

    fn sign(&self, contract: &[u8; 32], msg: &[u8]) -> Result<[u8; 64], HostError> {
        Ok(contract_signer(contract).sign(msg))
    }

    fn call(&self, _invocation: &Invocation) -> Result<CallOutput, Failure> {
        Err(Failure { error: umbra_engine::EngineError::Host("no calls in benches".into()), gas_used: 0 })
    }
}

const JS: &str = r#"
export function increment() {
  const n = (umbra.storage.getJson("count") || 0) + 1;
  umbra.storage.setJson("count", n);
  return n;
}
export function fib(n) { let a = 0, b = 1; for (let i = 0; i < n; i++) { [a, b] = [b, (a + b) % 1000000007]; } return a; }
"#;

const WAT: &str = r#"
(module
  (import "env" "storage_get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "env" "storage_set" (func $set (param i32 i32 i32 i32)))
  (import "env" "output" (func $output (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "count")
  (func (export "increment")
    (if (i32.eq (call $get (i32.const 0) (i32.const 5) (i32.const 16) (i32.const 8)) (i32.const -1))
      (then (i64.store (i32.const 16) (i64.const 0))))
    (i64.store (i32.const 16) (i64.add (i64.load (i32.const 16)) (i64.const 1)))
    (call $set (i32.const 0) (i32.const 5) (i32.const 16) (i32.const 8))
    (call $output (i32.const 16) (i32.const 8)))
  (func (export "fib") (local $i i32) (local $a i64) (local $b i64) (local $t i64)
    (local.set $b (i64.const 1))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.const 100000)))
      (local.set $t (i64.rem_u (i64.add (local.get $a) (local.get $b)) (i64.const 1000000007)))
      (local.set $a (local.get $b)) (local.set $b (local.get $t))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i64.store (i32.const 16) (local.get $a))
    (call $output (i32.const 16) (i32.const 8))))
"#;

fn invocation(mode: Mode, method: &str, args: &[u8]) -> Invocation {
    Invocation {
        contract: [1; 32],
        mode,
        method: method.into(),
        args: args.to_vec(),
        caller: None,
        height: 1,
        time_ms: 1_700_000_000_000,
        seed: [3; 32],
        budget: 10_000_000_000,
        depth: 0,
    }
}

fn bench(name: &str, mut f: impl FnMut()) {
    for _ in 0..20 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        f();
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{name:<44} {:>10.0} ops/s  ({:.1} us/op)", n as f64 / secs, secs * 1e6 / n as f64);
}

fn main() {
    let engine = Engine::new(Limits::default()).expect("engine");
    let host: Rc<dyn Host> = Rc::new(BenchHost(BTreeMap::from([(b"count".to_vec(), b"41".to_vec())])));
    let js = engine.load(&Code::JavaScript(JS.as_bytes().to_vec())).expect("js");
    let wasm = engine.load(&Code::Wasm(wat::parse_str(WAT).expect("wat"))).expect("wasm");

    let cmd = invocation(Mode::Command, "increment", b"");
    let query = invocation(Mode::Query, "increment", b"");
    let fib = invocation(Mode::Command, "fib", b"100000");
    bench("js command increment (fresh runtime)", || {
        engine.invoke(&js, &cmd, &host).expect("js");
    });
    bench("js query increment (warm instance)", || {
        engine.invoke(&js, &query, &host).expect("js");
    });
    bench("wasm command increment", || {
        engine.invoke(&wasm, &cmd, &host).expect("wasm");
    });
    bench("js command fib(100000) (compute)", || {
        engine.invoke(&js, &fib, &host).expect("js");
    });
    bench("wasm command fib(100000) (compute)", || {
        engine.invoke(&wasm, &fib, &host).expect("wasm");
    });
    bench("load cached code (hash + cache hit)", || {
        engine.load(&Code::JavaScript(JS.as_bytes().to_vec())).expect("load");
    });
    let out = engine.invoke(&js, &fib, &host).expect("js");
    let wout = engine.invoke(&wasm, &fib, &host).expect("wasm");
    println!("gas for fib(100000): js {} wasm {}", out.gas_used, wout.gas_used);
}
