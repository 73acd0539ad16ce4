//! Run confidential contracts, JavaScript on QuickJS and WebAssembly on wasmi, behind one host API and one
//! invocation/outcome shape.
//!
//! # Why it is shaped this way
//!
//! - **Pure core, effects out.** An [`Invocation`] goes in, an [`Outcome`] (storage writes, events, transfers,
//!   return value, gas) comes out; the engine applies nothing. The [`Host`] the worker implements is a
//!   read-only view of committed state plus key services, so every host method takes `&self` and the same
//!   outcome can be checked, replicated or discarded (queries) by the caller.
//! - **One host API, two bindings.** The host functions are implemented once (`session.rs`); the JavaScript
//!   and wasm bindings only convert arguments, so the engines cannot drift apart in what a contract may do.
//! - **Determinism by construction in commands.** Time is the block time, randomness is ChaCha20 from a
//!   per-invocation seed ([`invocation_seed`]), `fetch` is refused, gas is counted deterministically (wasm fuel
//!   with eager compilation; QuickJS interrupt-handler calls on a fresh runtime per command), and memory is
//!   capped. A host failure is fatal for the invocation even if JavaScript catches the exception.
//! - **Queries are fast, commands are exact.** Commands always get a fresh QuickJS runtime (its interrupt
//!   counter and heap accounting are per runtime), queries reuse warm instances; both share the compiled-code
//!   cache keyed by code hash.
//!
//! # JavaScript ABI
//!
//! A contract is one ES module; every exported function is a method. A method is called as
//! `f(args, raw)`: `args` is `JSON.parse` of the argument bytes (or `undefined` if they are empty or not JSON),
//! `raw` the bytes as a `Uint8Array`. The return value becomes the output: a `Uint8Array`/`ArrayBuffer` as is,
//! `undefined` as empty, anything else as `JSON.stringify` in UTF-8. Async methods are awaited (the job queue
//! is drained; there is no timer). The `umbra` global:
//!
//! - `umbra.storage.get(key) -> Uint8Array | null`, `getString`, `getJson`, `set(key, value)`, `setJson`,
//!   `remove(key)`; keys and values are strings (UTF-8) or bytes.
//! - `umbra.caller` (hex string or `null`), `umbra.self` (hex), `umbra.block` (`{ height, time }`, time in ms).
//! - `umbra.emit(name, data)` (bytes, string, or JSON-encoded value), `umbra.random(n) -> Uint8Array`.
//! - `umbra.deriveKey(salt) -> Uint8Array(32)`, `umbra.sign(msg) -> Uint8Array(64)`,
//!   `umbra.verify(publicKey, msg, sig) -> boolean`.
//! - `umbra.call(contractHex, method, args) -> Uint8Array`, `umbra.callJson(...)` -> parsed value.
//! - `umbra.transfer(toHex, amount)` (amount: decimal string or BigInt), `umbra.fetch(url, { method, headers,
//!   body }) -> { status, body, text(), json() }` (queries only, synchronous).
//! - `Math.random` and `Date` are seeded/fixed (`Date.now()` is the block time, local time is UTC);
//!   `WeakRef`, `FinalizationRegistry` and `performance` do not exist.
//!
//! # Wasm ABI
//!
//! The module exports `memory` and, per method, a function `() -> ()` of that name. Imports are from `env`;
//! pointers and lengths are `i32` offsets into the exported memory. Variable-length results are written to a
//! guest buffer `(out, cap)`: the call returns the full length and writes only if it fits (so the guest can
//! retry with a larger buffer); `-1` means absent.
//!
//! | import | signature | meaning |
//! |---|---|---|
//! | `input_len` | `() -> i32` | length of the argument bytes |
//! | `input_read` | `(out)` | copy the arguments to `out` |
//! | `output` | `(ptr, len)` | set the return value (last call wins) |
//! | `storage_get` | `(key, key_len, out, cap) -> i32` | value length, or -1 if absent |
//! | `storage_set` | `(key, key_len, val, val_len)` | write |
//! | `storage_remove` | `(key, key_len)` | delete |
//! | `emit` | `(name, name_len, data, data_len)` | event (name in UTF-8) |
//! | `caller` | `(out32) -> i32` | 1 and the caller id, or 0 if anonymous |
//! | `self_id` | `(out32)` | this contract's id |
//! | `block_height` / `block_time` | `() -> i64` | height; time in ms |
//! | `random` | `(out, len)` | deterministic random bytes |
//! | `derive_key` | `(salt, salt_len, out32)` | derived key |
//! | `sign` | `(msg, msg_len, out64)` | ed25519 signature by the contract key |
//! | `verify` | `(pk32, msg, msg_len, sig64) -> i32` | 1 if valid |
//! | `call` | `(id32, method, method_len, args, args_len, out, cap) -> i32` | callee's output length |
//! | `transfer` | `(to32, amount16)` | amount is a little-endian u128 |
//! | `fetch` | `(url, url_len, body, body_len, out, cap) -> i32` | GET (POST if a body); out = status u16 LE then body |
//!
//! Gas: wasm fuel is gas; QuickJS charges [`JS_GAS_PER_TICK`] per interrupt poll (every 10,000 calls, loop
//! iterations or regex steps) plus [`JS_GAS_PER_ALLOC_BYTE`] per byte allocated (so heavy builtins are paid
//! for; the engine's own allocator also makes the heap limit independent of the libc); host calls cost 1,000 gas plus 1 per byte moved in both engines, and a nested call's gas is
//! charged to its caller.

//! # Caveats
//!
//! - `Engine` is not `Send` (QuickJS runtimes are single-threaded): keep one per worker thread, and give that
//!   thread [`Limits::thread_stack_bytes`] of stack (each nested call level may use [`Limits::js_stack_bytes`]
//!   below where it started; about 4 MiB with the defaults).
//! - Warm query instances keep module-level state between queries of the same code; contracts should keep state
//!   in storage. Commands never share an instance.
//! - Local-time parsing (`Date.parse` / `new Date(string)` without a zone) still uses the process time zone:
//!   run workers with `TZ=UTC`. Everything else about `Date` is UTC and block time.
//! - Wasm queries have no wall-clock deadline (wasmi has no epoch interruption); their fuel bounds them.
//! - A re-entrant call (A calls B calls A) runs the inner A against the host's state, not the outer A's
//!   uncommitted writes; the host decides whether to allow it.
//! - `fetch` is synchronous: the engine thread waits for the host.

mod agent;
mod api;
mod engine;
mod error;
mod js;
mod js_alloc;
mod session;
mod wallet;
mod wasm;

pub use agent::{AGENT_CALL_METHOD, AgentCallJson, AgentFailure, AgentOutcome, AgentReplyJson, AgentRequest, env_json};
pub use api::{
    CallOutput, Event, FetchRequest, FetchResponse, Host, HostError, Invocation, Limits, Mode, Outcome, Transfer,
    contract_signer, derive_contract_key, invocation_seed,
};
pub use engine::{Code, Contract, Engine, EngineStats};
pub use error::{EngineError, Failure};
pub use js::{JS_GAS_PER_ALLOC_BYTE, JS_GAS_PER_TICK};
pub use wallet::WalletRequest;
