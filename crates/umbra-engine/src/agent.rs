//! Agents: a contract that also exports an HTTP handler, run on the same QuickJS instances as queries.
//!
//! # The handler shape (Cloudflare-Workers-like, chosen because it is the most widespread Web-standard shape
//! for a single-file HTTP handler and needs no server object)
//!
//! ```js
//! export default {
//!   async fetch(request, env) {
//!     const body = await request.json();
//!     return Response.json({ hello: body.name, key: env.OPENAI_API_KEY ? "set" : "unset" });
//!   },
//! };
//! ```
//!
//! - `request`: `method`, `url` (`http://HOST/agents/ID/PATH?QUERY`), `path` (below the agent, without the
//!   query), `query` (an object of the query string's parameters), `headers` (a `Headers`: `get`, `has`,
//!   `set`, `append`, `delete`, `entries`, `forEach`, iterable), `body` (a string, `Uint8Array` or `null`),
//!   `text()`, `json()`, `arrayBuffer()` (all async, as on the Web).
//! - the handler returns a `Response` (`new Response(body, { status, headers })`, `Response.json(value,
//!   init)`), possibly through a promise: the engine drains the QuickJS job queue until it settles, within
//!   the request's gas, wall-clock deadline and heap limit. A promise that can never settle (nothing left to
//!   run) is [`EngineError::NeverSettled`]; anything but a `Response` is [`EngineError::NotAResponse`].
//! - `env`: the agent's secrets by name (strings), and `env.agents.call(id, request)`: another agent of the
//!   same cluster, through [`Host::call`] with the method [`AGENT_CALL_METHOD`] (so the call depth limit
//!   applies; an agent calling itself ends at that limit). Its result is a `Response`.
//! - `env.wallet` (the agent's Umbra account: `address`, `transfer(to, amount)`), `env.eth` (its Ethereum
//!   account: `address`, `signMessage`, `signTransaction`) and `env.attest(output)`: see the `wallet` module;
//!   they go through [`Host::wallet`](crate::Host::wallet).
//! - `console.log/info/warn/error` lines are collected per request ([`AgentOutcome::logs`]).
//! - Everything of the `umbra` global works as in a query (storage reads; writes are discarded).
//!
//! [`Host::call`]: crate::Host::call

use crate::error::{EngineError, Failure};

/// The method name a nested agent call carries in its [`Invocation`](crate::Invocation): the arguments are
/// the JSON `{ method, path, headers: [[name, value]...], body }` and the output the JSON `{ status, headers,
/// body }` (bodies as UTF-8 text).
pub const AGENT_CALL_METHOD: &str = "\u{0}agent";

/// Most `console` lines kept per request, and the longest line.
pub(crate) const MAX_LOG_LINES: usize = 64;
pub(crate) const MAX_LOG_LINE: usize = 2_048;

/// An HTTP request for an agent's handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The full URL shown as `request.url`.
    pub url: String,
    /// The path below the agent with the query string (`/` at least).
    pub path: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// What a handler answered, and what it logged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentOutcome {
    /// The status code (100 to 599).
    pub status: u16,
    /// Response headers in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// `console` lines as `(level, text)`.
    pub logs: Vec<(String, String)>,
    /// Gas used.
    pub gas_used: u64,
}

/// A failed request: the engine failure and the lines logged before it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{failure}")]
pub struct AgentFailure {
    /// What went wrong.
    pub failure: Failure,
    /// `console` lines as `(level, text)`.
    pub logs: Vec<(String, String)>,
}

impl AgentFailure {
    pub(crate) fn new(error: EngineError, gas_used: u64, logs: Vec<(String, String)>) -> AgentFailure {
        AgentFailure { failure: Failure { error, gas_used }, logs }
    }
}

/// The Web classes and the dispatcher, evaluated after the `umbra` prelude in every JavaScript instance.
/// The expression's value (the dispatcher) is kept by the engine and removed from the globals.
pub(crate) const AGENT_PRELUDE: &str = r#"
(function (log, w) {
  "use strict";
  const utf8 = umbra.utf8;
  const lower = (s) => String(s).toLowerCase();
  class Headers {
    constructor(init) {
      this._h = [];
      if (init instanceof Headers) init = init._h;
      if (Array.isArray(init)) { for (const [k, v] of init) this.append(k, v); }
      else if (init && typeof init === "object") { for (const k of Object.keys(init)) this.append(k, init[k]); }
    }
    append(k, v) { this._h.push([lower(k), String(v)]); }
    set(k, v) { this.delete(k); this.append(k, v); }
    get(k) { const n = lower(k); const all = this._h.filter((e) => e[0] === n).map((e) => e[1]); return all.length ? all.join(", ") : null; }
    has(k) { const n = lower(k); return this._h.some((e) => e[0] === n); }
    delete(k) { const n = lower(k); this._h = this._h.filter((e) => e[0] !== n); }
    entries() { return this._h.map((e) => [e[0], e[1]])[Symbol.iterator](); }
    keys() { return this._h.map((e) => e[0])[Symbol.iterator](); }
    values() { return this._h.map((e) => e[1])[Symbol.iterator](); }
    forEach(f) { for (const [k, v] of this._h) f(v, k, this); }
    [Symbol.iterator]() { return this.entries(); }
  }
  const textOf = (b) => (b === null || b === undefined) ? "" : (typeof b === "string" ? b : utf8(b));
  const bodyOf = (b) => {
    if (b === null || b === undefined) return null;
    if (typeof b === "string" || b instanceof Uint8Array) return b;
    if (b instanceof ArrayBuffer) return new Uint8Array(b);
    return String(b);
  };
  class Body {
    get body() { return this._body; }
    async text() { return textOf(this._body); }
    async json() { return JSON.parse(textOf(this._body)); }
    async arrayBuffer() {
      const b = this._body;
      if (b instanceof Uint8Array) return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
      return __bytes(textOf(b)).buffer;
    }
  }
  const __bytes = (s) => { const out = []; for (const ch of unescape(encodeURIComponent(s))) out.push(ch.charCodeAt(0)); return new Uint8Array(out); };
  class Request extends Body {
    constructor(input, init) {
      super();
      init = init || {};
      if (input instanceof Request) { init = Object.assign({ method: input.method, headers: input.headers, body: input._body }, init); input = input.url; }
      this.url = String(input);
      this.method = String(init.method || "GET").toUpperCase();
      this.headers = new Headers(init.headers);
      this._body = bodyOf(init.body);
      const m = /^[a-z]+:\/\/[^/]*\/agents\/[0-9a-fA-Fx]+(\/[^?#]*)?(\?[^#]*)?/.exec(this.url) || /^(\/[^?#]*)?(\?[^#]*)?/.exec(this.url);
      this.path = (m && m[1]) || "/";
      const q = {};
      for (const part of ((m && m[2]) || "").replace(/^\?/, "").split("&")) {
        if (!part) continue;
        const i = part.indexOf("=");
        const dec = (x) => decodeURIComponent(x.replace(/\+/g, " "));
        if (i < 0) q[dec(part)] = ""; else q[dec(part.slice(0, i))] = dec(part.slice(i + 1));
      }
      this.query = q;
    }
  }
  class Response extends Body {
    constructor(body, init) {
      super();
      init = init || {};
      this.status = init.status === undefined ? 200 : Number(init.status);
      if (!Number.isInteger(this.status) || this.status < 100 || this.status > 599) throw new RangeError("Response status must be an integer from 100 to 599");
      this.statusText = String(init.statusText || "");
      this.headers = new Headers(init.headers);
      this._body = bodyOf(body);
      if (typeof this._body === "string" && !this.headers.has("content-type")) this.headers.set("content-type", "text/plain;charset=UTF-8");
    }
    get ok() { return this.status >= 200 && this.status < 300; }
    static json(value, init) {
      const r = new Response(JSON.stringify(value), init);
      r.headers.set("content-type", "application/json");
      return r;
    }
  }
  const fmt = (a) => a.map((x) => typeof x === "string" ? x : (() => { try { return JSON.stringify(x); } catch (_) { return String(x); } })()).join(" ");
  globalThis.console = Object.freeze({
    log: (...a) => log("log", fmt(a)), info: (...a) => log("info", fmt(a)),
    warn: (...a) => log("warn", fmt(a)), error: (...a) => log("error", fmt(a)), debug: (...a) => log("debug", fmt(a)),
  });
  globalThis.Headers = Headers;
  globalThis.Request = Request;
  globalThis.Response = Response;
  const agents = Object.freeze({
    call: async (id, req) => {
      if (!(req instanceof Request)) req = new Request((req && req.path) || "/", req || {});
      const json = JSON.stringify({ method: req.method, path: req.path + (Object.keys(req.query).length ? "?" + Object.entries(req.query).map(([k, v]) => encodeURIComponent(k) + "=" + encodeURIComponent(v)).join("&") : ""), headers: req.headers._h, body: textOf(req._body) });
      const o = JSON.parse(utf8(umbra.call(String(id), "\u0000agent", json)));
      return new Response(o.body, { status: o.status, headers: o.headers });
    },
  });
  const describe = (v) => v === null ? "null" : v === undefined ? "undefined" : (typeof v === "object" ? "an object (" + ((v.constructor && v.constructor.name) || "Object") + ")" : "a " + typeof v);
  return async function dispatch(ns, method, url, headersJson, body, envJson) {
    const d = ns.default;
    if (!d || typeof d.fetch !== "function") return { missing: true };
    const env = Object.assign(Object.create(null), JSON.parse(envJson));
    env.agents = agents;
    env.wallet = w.wallet;
    env.eth = w.eth;
    env.attest = w.attest;
    const req = new Request(url, { method, headers: JSON.parse(headersJson), body: body.length ? body : null });
    const res = await d.fetch(req, Object.freeze(env));
    if (!(res instanceof Response)) return { notResponse: describe(res) };
    return { status: res.status, headers: JSON.stringify(res.headers._h), body: res._body === null ? "" : res._body };
  };
})
"#;

/// The JSON of an env object: the secrets by name (what [`Engine::handle`](crate::Engine::handle) takes).
pub fn env_json(secrets: &[(String, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> =
        secrets.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    serde_json::Value::Object(map).to_string()
}

/// The JSON a nested agent call carries ([`AGENT_CALL_METHOD`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentCallJson {
    /// The method.
    pub method: String,
    /// The path with the query string.
    pub path: String,
    /// Headers as pairs.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body as text.
    #[serde(default)]
    pub body: String,
}

/// The JSON a nested agent call returns.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentReplyJson {
    /// The status.
    pub status: u16,
    /// Headers as pairs.
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy UTF-8).
    pub body: String,
}
