//! Agents' HTTP handlers through the engine's public API, with an in-memory host that routes agent calls.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use umbra_engine::{
    AGENT_CALL_METHOD, AgentCallJson, AgentFailure, AgentOutcome, AgentReplyJson, AgentRequest, CallOutput, Code,
    Contract, Engine, EngineError, Failure, Host, HostError, Invocation, Limits, Mode, contract_signer,
};

struct AgentHost {
    engine: Rc<Engine>,
    me: Weak<AgentHost>,
    agents: RefCell<BTreeMap<[u8; 32], Contract>>,
}

impl AgentHost {
    fn new(engine: Rc<Engine>) -> Rc<AgentHost> {
        Rc::new_cyclic(|me| AgentHost { engine, me: me.clone(), agents: RefCell::new(BTreeMap::new()) })
    }

    fn deploy(&self, id: [u8; 32], src: &str) {
        let c = self.engine.load(&Code::JavaScript(src.as_bytes().to_vec())).expect("loads");
        self.agents.borrow_mut().insert(id, c);
    }

    fn request(&self, id: [u8; 32], inv: &Invocation, req: &AgentRequest) -> Result<AgentOutcome, AgentFailure> {
        let c = self.agents.borrow().get(&id).cloned().expect("deployed");
        let host: Rc<dyn Host> = self.me.upgrade().expect("alive");
        let env = r#"{"SECRET":"marker-123"}"#;
        self.engine.handle(&c, inv, req, env, Instant::now() + Duration::from_millis(500), &host)
    }
}

impl Host for AgentHost {
    fn storage_get(&self, _: &[u8; 32], _: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        Ok(None)
    }
    fn derive_key(&self, _: &[u8; 32], _: &[u8]) -> Result<[u8; 32], HostError> {
        Ok([0; 32])
    }
    fn sign(&self, _: &[u8; 32], msg: &[u8]) -> Result<[u8; 64], HostError> {
        Ok(contract_signer(&[1; 32]).sign(msg))
    }
    fn call(&self, inv: &Invocation) -> Result<CallOutput, Failure> {
        assert_eq!(inv.method, AGENT_CALL_METHOD);
        let call: AgentCallJson = serde_json::from_slice(&inv.args).expect("agent call json");
        let req = AgentRequest {
            method: call.method,
            url: format!("http://x/agents/{}{}", hex(&inv.contract), call.path),
            path: call.path,
            headers: call.headers,
            body: call.body.into_bytes(),
        };
        let out = self.request(inv.contract, inv, &req).map_err(|f| f.failure)?;
        let reply = AgentReplyJson {
            status: out.status,
            headers: out.headers,
            body: String::from_utf8_lossy(&out.body).into_owned(),
        };
        Ok(CallOutput { output: serde_json::to_vec(&reply).expect("json"), gas_used: out.gas_used })
    }
}

fn hex(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn inv(id: [u8; 32]) -> Invocation {
    Invocation {
        contract: id,
        mode: Mode::Query,
        method: "fetch".into(),
        args: vec![],
        caller: None,
        height: 1,
        time_ms: 0,
        seed: [3; 32],
        budget: 500_000_000,
        depth: 0,
    }
}

fn get(path: &str) -> AgentRequest {
    AgentRequest {
        method: "POST".into(),
        url: format!("http://localhost/agents/01{path}"),
        path: path.into(),
        headers: vec![("content-type".into(), "application/json".into()), ("x-name".into(), "ada".into())],
        body: br#"{"n":41}"#.to_vec(),
    }
}

const ECHO: &str = r#"
export default {
  async fetch(request, env) {
    const body = await request.json();
    console.log("got", request.method, request.path, body.n);
    if (request.path === "/secret") return new Response(env.SECRET);
    if (request.path === "/throw") throw new Error("boom");
    if (request.path === "/never") return new Promise(() => {});
    if (request.path === "/loop") { for (;;) {} }
    if (request.path === "/memory") { const a = []; for (;;) a.push(new Array(100000).fill(1)); }
    if (request.path === "/object") return { status: 200 };
    if (request.path === "/self") return await env.agents.call(umbra.self, { method: "POST", path: "/self", body: "{}" });
    if (request.path === "/other") {
      const r = await env.agents.call("02".repeat(32), { method: "POST", path: "/hi", body: "{\"n\":1}" });
      return Response.json({ via: await r.json(), status: r.status });
    }
    await null;
    return Response.json({ n: body.n + 1, name: request.headers.get("X-Name"), q: request.query }, { status: 201, headers: { "x-a": "b" } });
  },
};
"#;

const HI: &str = r#"
export default { fetch: (r) => Response.json({ hi: r.path }, { status: 202 }) };
"#;

fn setup() -> Rc<AgentHost> {
    let engine = Rc::new(Engine::new(Limits::default()).expect("engine"));
    let host = AgentHost::new(engine);
    host.deploy([1; 32], ECHO);
    host.deploy([2; 32], HI);
    host
}

fn fail(host: &AgentHost, path: &str) -> EngineError {
    match host.request([1; 32], &inv([1; 32]), &get(path)) {
        Ok(o) => panic!("{path}: expected a failure, got {o:?}"),
        Err(f) => f.failure.error,
    }
}

#[test]
fn an_async_handler_answers_a_web_shaped_response_and_its_console_lines_are_kept() {
    let host = setup();
    let out = host.request([1; 32], &inv([1; 32]), &get("/x?a=1&b=two")).expect("answers");
    assert_eq!(out.status, 201);
    let v: serde_json::Value = serde_json::from_slice(&out.body).expect("json");
    assert_eq!(v["n"], 42);
    assert_eq!(v["name"], "ada");
    assert_eq!(v["q"]["b"], "two");
    assert!(out.headers.contains(&("x-a".into(), "b".into())), "{:?}", out.headers);
    assert!(out.headers.contains(&("content-type".into(), "application/json".into())));
    assert_eq!(out.logs, vec![("log".to_string(), "got POST /x 41".to_string())]);
    // Warm again: the same instance serves a second request.
    assert_eq!(host.request([1; 32], &inv([1; 32]), &get("/y")).expect("answers").status, 201);
    assert_eq!(&host.request([1; 32], &inv([1; 32]), &get("/secret")).expect("answers").body, b"marker-123");
}

#[test]
fn bad_handlers_fail_with_clear_errors_and_the_engine_keeps_serving() {
    let host = setup();
    assert!(matches!(fail(&host, "/throw"), EngineError::Trap(m) if m.contains("boom")));
    assert_eq!(fail(&host, "/never"), EngineError::NeverSettled);
    assert_eq!(fail(&host, "/loop"), EngineError::OutOfGas);
    assert_eq!(fail(&host, "/memory"), EngineError::OutOfMemory);
    assert!(matches!(fail(&host, "/object"), EngineError::NotAResponse(m) if m.contains("object")));
    assert!(matches!(fail(&host, "/self"), EngineError::DepthExceeded(_)));
    assert_eq!(host.request([1; 32], &inv([1; 32]), &get("/ok")).expect("still serves").status, 201);
}

#[test]
fn an_agent_calls_another_agent_and_gets_its_response() {
    let host = setup();
    let out = host.request([1; 32], &inv([1; 32]), &get("/other")).expect("answers");
    let v: serde_json::Value = serde_json::from_slice(&out.body).expect("json");
    assert_eq!((v["status"].as_u64(), v["via"]["hi"].as_str()), (Some(202), Some("/hi")), "{v}");
}

#[test]
fn a_module_without_a_fetch_handler_is_an_unknown_method() {
    let host = setup();
    host.deploy([3; 32], "export function f() {}");
    let e = host.request([3; 32], &inv([3; 32]), &get("/")).expect_err("no handler");
    assert!(matches!(e.failure.error, EngineError::UnknownMethod(m) if m == "default.fetch"));
}
