//! Agents' `fetch` and the JavaScript LLM helper running in QuickJS through `umbra_engine`, `fetch` served by
//! the egress client against local servers (the OpenAI-compatible one among them).

use std::rc::Rc;

use umbra_egress::testing::{Reply, TestServer, openai_echo, openai_server};
use umbra_egress::{Client, LLM_JS, Policy, Request};
use umbra_engine::{
    CallOutput, Code, Engine, EngineError, Failure, FetchRequest, FetchResponse, Host, HostError, Invocation, Limits,
    Mode,
};

const AGENT: [u8; 32] = [5; 32];

/// A host whose only service is `fetch` through the egress client under `policy`; storage is empty and the
/// key services refuse (the helper needs none of them).
struct EgressHost {
    client: Client,
    policy: Policy,
}

impl Host for EgressHost {
    fn storage_get(&self, _: &[u8; 32], _: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        Ok(None)
    }

    fn derive_key(&self, _: &[u8; 32], _: &[u8]) -> Result<[u8; 32], HostError> {
        Err(HostError("no keys in this test host".into()))
    }

    fn sign(&self, _: &[u8; 32], _: &[u8]) -> Result<[u8; 64], HostError> {
        Err(HostError("no keys in this test host".into()))
    }

    fn call(&self, _: &Invocation) -> Result<CallOutput, Failure> {
        Err(Failure { error: EngineError::Host("no calls in this test host".into()), gas_used: 0 })
    }

    fn fetch(&self, r: &FetchRequest) -> Result<FetchResponse, HostError> {
        let req =
            Request { method: r.method.clone(), url: r.url.clone(), headers: r.headers.clone(), body: r.body.clone() };
        let (resp, _receipt) = self.client.fetch(AGENT, &self.policy, req).map_err(|e| HostError(e.to_string()))?;
        Ok(FetchResponse { status: resp.status, body: resp.body })
    }
}

const AGENT_JS: &str = r#"
export async function ask(args) {
  const r = await llm.chat({
    baseUrl: args.baseUrl,
    apiKey: args.apiKey,
    model: "test-model",
    messages: [{ role: "system", content: "You are terse." }, { role: "user", content: args.question }],
    temperature: 0,
    maxTokens: 32,
  });
  return { content: r.content, usage: r.usage, id: r.raw.id };
}

export async function askStreaming(args) {
  const r = await llm.chat({
    baseUrl: args.baseUrl, apiKey: args.apiKey, model: "test-model", stream: true,
    messages: [{ role: "user", content: args.question }],
  });
  return { content: r.content, usage: r.usage, chunks: r.raw.length };
}

export function fetchSize(args) {
  return umbra.fetch(args.url).body.length;
}

export async function askCatching(args) {
  try {
    await llm.chat({ baseUrl: args.baseUrl, apiKey: args.apiKey, model: "test-model", messages: args.messages });
    return { ok: true };
  } catch (e) {
    return { name: e.name, status: e.status, message: e.message };
  }
}
"#;

fn run(host: EgressHost, method: &str, args: serde_json::Value) -> Result<serde_json::Value, Failure> {
    let engine = Engine::new(Limits::default()).expect("engine");
    let contract = engine.load(&Code::JavaScript(format!("{LLM_JS}\n{AGENT_JS}").into_bytes())).expect("module loads");
    let inv = Invocation {
        contract: AGENT,
        mode: Mode::Query,
        method: method.into(),
        args: args.to_string().into_bytes(),
        caller: None,
        height: 1,
        time_ms: 0,
        seed: [0; 32],
        budget: 1_000_000_000,
        depth: 0,
    };
    let host: Rc<dyn Host> = Rc::new(host);
    let out = engine.invoke(&contract, &inv, &host)?;
    Ok(serde_json::from_slice(&out.output).expect("json output"))
}

fn host(allow: &str) -> EgressHost {
    let policy = Policy { allow_hosts: vec![allow.into()], allow_http: true, allow_private: true, ..Policy::default() };
    EgressHost { client: Client::new().expect("client"), policy }
}

#[test]
fn an_agent_asks_the_local_openai_server_through_the_helper_and_gets_the_echo() {
    let server = openai_server("sk-agent").expect("server starts");
    let args = serde_json::json!({ "baseUrl": server.url("/v1/"), "apiKey": "sk-agent", "question": "what is 2+2?" });
    let out = run(host("127.0.0.1"), "ask", args).expect("query succeeds");
    assert_eq!(out["content"], openai_echo("test-model", Some("You are terse."), "what is 2+2?"));
    assert_eq!(out["usage"]["prompt_tokens"], 6, "3 words of system prompt and 3 of question");
    assert_eq!(out["id"], "chatcmpl-test-0");
}

#[test]
fn a_wrong_key_gives_the_agent_an_llm_error_with_the_status_and_the_server_message() {
    let server = openai_server("sk-agent").expect("server starts");
    let args = serde_json::json!({
        "baseUrl": server.url("/v1"),
        "apiKey": "sk-wrong",
        "messages": [{ "role": "user", "content": "hi" }],
    });
    let out = run(host("127.0.0.1"), "askCatching", args).expect("query succeeds");
    assert_eq!(out["name"], "LlmError");
    assert_eq!(out["status"], 401);
    let msg = out["message"].as_str().unwrap_or_default();
    assert!(msg.contains("HTTP 401") && msg.contains("Incorrect API key"), "{msg}");
}

#[test]
fn malformed_messages_are_refused_by_the_helper_before_any_request() {
    let server = openai_server("k").expect("server starts");
    let args = serde_json::json!({ "baseUrl": server.url("/v1"), "apiKey": "k", "messages": [] });
    let out = run(host("127.0.0.1"), "askCatching", args).expect("query succeeds");
    assert!(out["message"].as_str().unwrap_or_default().contains("non-empty array"), "{out}");
    assert_eq!(server.connections(), 0);
}

#[test]
fn an_agent_calling_a_host_off_its_allow_list_fails_with_a_clear_error() {
    let server = openai_server("k").expect("server starts");
    let args = serde_json::json!({ "baseUrl": server.url("/v1"), "apiKey": "k", "question": "hi" });
    let failure = run(host("api.openai.com"), "ask", args).expect_err("refused");
    match failure.error {
        EngineError::Host(msg) => assert!(msg.contains("127.0.0.1") && msg.contains("allow-list"), "{msg}"),
        other => panic!("expected a host error, got {other}"),
    }
    assert_eq!(server.connections(), 0);
}

#[test]
fn a_streamed_answer_is_joined_from_its_server_sent_events() {
    let server = openai_server("k").expect("server starts");
    let args = serde_json::json!({ "baseUrl": server.url("/v1"), "apiKey": "k", "question": "stream this please" });
    let out = run(host("127.0.0.1"), "askStreaming", args).expect("query succeeds");
    let expected = openai_echo("test-model", None, "stream this please");
    assert_eq!(out["content"], expected);
    assert_eq!(out["usage"]["completion_tokens"], expected.split_whitespace().count());
    // The role chunk, one per word, the finish chunk.
    assert_eq!(out["chunks"], expected.split(' ').count() + 2);
}

#[test]
fn an_agent_fetching_a_huge_body_gets_a_clear_error_and_small_ones_still_work() {
    let server = TestServer::http(|req| match req.path() {
        "/huge" => Reply::Stream { status: 200, len: 64 * 1024 * 1024, declare_length: false },
        _ => Reply::text(200, "small"),
    })
    .expect("server starts");
    let mut h = host("127.0.0.1");
    h.policy.max_response_bytes = 256 * 1024;
    let failure = run(h, "fetchSize", serde_json::json!({ "url": server.url("/huge") })).expect_err("too large");
    match failure.error {
        EngineError::Host(msg) => assert!(msg.contains("larger than the egress limit of 262144 bytes"), "{msg}"),
        other => panic!("expected a host error, got {other}"),
    }
    let out = run(host("127.0.0.1"), "fetchSize", serde_json::json!({ "url": server.url("/small") })).expect("fetch");
    assert_eq!(out, 5);
}
