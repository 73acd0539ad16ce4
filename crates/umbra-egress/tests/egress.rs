//! The egress client against real local HTTP and HTTPS servers on 127.0.0.1.

use umbra_egress::testing::{
    PriceServer, Reply, TestCert, TestServer, openai_echo, openai_server, openai_server_https,
};
use umbra_egress::{
    Client, EgressError, Policy, RateCap, Request, SpendCap, request_hash, response_hash, verify_receipt,
};

const AGENT: [u8; 32] = [1; 32];

/// Loopback over http allowed, as tests and local development need.
fn local_policy() -> Policy {
    Policy {
        allow_hosts: vec!["127.0.0.1".into(), "localhost".into()],
        allow_http: true,
        allow_private: true,
        ..Policy::default()
    }
}

fn hello() -> TestServer {
    TestServer::http(|req| match req.path() {
        "/hello" => Reply::Full {
            status: 200,
            headers: vec![("x-test".into(), "yes".into())],
            body: format!("hello {} {}", req.method, String::from_utf8_lossy(&req.body)).into_bytes(),
        },
        "/hop1" => Reply::redirect(302, "/hop2"),
        "/hop2" => Reply::redirect(307, "/hello"),
        "/loop" => Reply::redirect(302, "/loop"),
        "/away" => Reply::redirect(302, "http://forbidden.test/steal"),
        "/huge" => Reply::Stream { status: 200, len: 100 * 1024 * 1024, declare_length: false },
        "/huge-declared" => Reply::Stream { status: 200, len: 100 * 1024 * 1024, declare_length: true },
        "/kib" => Reply::Full { status: 200, headers: vec![], body: vec![b'k'; 3000] },
        "/hang" => Reply::Hang,
        _ => Reply::text(404, "no such page"),
    })
    .expect("server starts")
}

#[test]
fn a_plain_http_fetch_returns_status_headers_body_and_a_matching_receipt() {
    let server = hello();
    let client = Client::new().expect("client");
    let req = Request::post(server.url("/hello"), "text/plain", b"ping".to_vec());
    let (resp, receipt) = client.fetch(AGENT, &local_policy(), req.clone()).expect("fetch");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"hello POST ping");
    assert_eq!(resp.header("X-Test"), Some("yes"));
    assert_eq!(receipt.agent, AGENT);
    assert_eq!(receipt.url, server.url("/hello"));
    assert_eq!(receipt.status, 200);
    assert_eq!(receipt.tls_cert_sha256, None);
    assert_eq!(receipt.request_hash, request_hash("POST", &req.url, &req.headers, &req.body));
    assert_eq!(receipt.response_hash, response_hash(resp.status, &resp.headers, &resp.body));
    assert!(receipt.time_ms > 1_600_000_000_000, "wall-clock milliseconds");
    assert_eq!(client.receipts().pending(&AGENT), &[receipt]);
}

#[test]
fn an_https_fetch_records_the_served_leaf_certificate_fingerprint() {
    let cert = TestCert::generate().expect("certificates");
    let server = TestServer::https(&cert, |_| Reply::text(200, "secure")).expect("server starts");
    let client = Client::with_extra_roots(std::slice::from_ref(&cert.ca_der)).expect("client");
    let policy = Policy { allow_http: false, ..local_policy() };
    let (resp, receipt) = client.fetch(AGENT, &policy, Request::get(server.url("/"))).expect("fetch");
    assert_eq!(resp.body, b"secure");
    assert!(server.url("/").starts_with("https://"));
    assert_eq!(receipt.tls_cert_sha256, Some(cert.leaf_sha256()));

    // Without the test CA the server's certificate is not trusted.
    let stranger = Client::new().expect("client");
    let err = stranger.fetch(AGENT, &policy, Request::get(server.url("/"))).expect_err("untrusted");
    assert!(matches!(err, EgressError::Transport { .. }), "{err}");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
}

#[test]
fn a_huge_https_body_is_cut_off_and_a_complete_one_without_length_is_read_whole() {
    let cert = TestCert::generate().expect("certificates");
    let server = TestServer::https(&cert, |req| {
        let len = if req.path() == "/huge" { 50 * 1024 * 1024 } else { 100_000 };
        Reply::Stream { status: 200, len, declare_length: false }
    })
    .expect("server starts");
    let client = Client::with_extra_roots(std::slice::from_ref(&cert.ca_der)).expect("client");
    let policy = Policy { max_response_bytes: 200_000, ..local_policy() };
    let err = client.fetch(AGENT, &policy, Request::get(server.url("/huge"))).expect_err("too large");
    assert!(matches!(err, EgressError::ResponseTooLarge { limit: 200_000, .. }), "{err}");
    let (resp, receipt) = client.fetch(AGENT, &policy, Request::get(server.url("/fits"))).expect("fetch");
    assert_eq!(resp.body.len(), 100_000);
    assert_eq!(receipt.tls_cert_sha256, Some(cert.leaf_sha256()));
}

#[test]
fn plain_http_is_refused_unless_the_policy_allows_it() {
    let server = hello();
    let client = Client::new().expect("client");
    let policy = Policy { allow_http: false, ..local_policy() };
    let err = client.fetch(AGENT, &policy, Request::get(server.url("/hello"))).expect_err("http refused");
    assert!(matches!(err, EgressError::SchemeNotAllowed { .. }), "{err}");
    assert_eq!(server.connections(), 0);
}

#[test]
fn a_forbidden_domain_is_refused_before_any_connection() {
    let server = hello();
    let client = Client::new().expect("client");
    let policy = Policy { allow_hosts: vec!["*.example.com".into()], ..local_policy() };
    let err = client.fetch(AGENT, &policy, Request::get(server.url("/hello"))).expect_err("refused");
    assert!(matches!(&err, EgressError::HostNotAllowed { host } if host == "127.0.0.1"), "{err}");
    assert!(err.to_string().contains("allow-list"), "{err}");
    let err = client.fetch(AGENT, &policy, Request::get("https://example.com/")).expect_err("apex refused");
    assert!(matches!(err, EgressError::HostNotAllowed { .. }), "{err}");
    assert_eq!(server.connections(), 0);
    assert!(client.receipts().pending(&AGENT).is_empty(), "nothing was sent");
}

#[test]
fn loopback_is_refused_unless_the_policy_allows_private_addresses() {
    let server = hello();
    let client = Client::new().expect("client");
    let policy = Policy { allow_private: false, ..local_policy() };
    let err = client.fetch(AGENT, &policy, Request::get(server.url("/hello"))).expect_err("literal refused");
    assert!(matches!(err, EgressError::PrivateAddress { .. }), "{err}");
    // A name that resolves to loopback is refused by the resolver, before connecting.
    let err = client.fetch(AGENT, &policy, Request::get(server.url_localhost("/hello"))).expect_err("name refused");
    assert!(matches!(&err, EgressError::PrivateAddress { host } if host == "localhost"), "{err}");
    assert_eq!(server.connections(), 0);
    // The same request with private addresses allowed goes through.
    let (resp, _) = client.fetch(AGENT, &local_policy(), Request::get(server.url_localhost("/hello"))).expect("fetch");
    assert_eq!(resp.status, 200);
}

#[test]
fn redirects_inside_the_allow_list_are_followed_with_a_receipt_per_hop() {
    let server = hello();
    let client = Client::new().expect("client");
    let req = Request::post(server.url("/hop1"), "text/plain", b"data".to_vec());
    let (resp, receipt) = client.fetch(AGENT, &local_policy(), req).expect("fetch");
    // 302 after a POST continues as a GET without the body; 307 keeps the method.
    assert_eq!(resp.body, b"hello GET ");
    assert_eq!(resp.url, server.url("/hello"));
    let pending = client.receipts().pending(&AGENT).to_vec();
    let hops: Vec<(&str, u16)> = pending.iter().map(|r| (r.url.as_str(), r.status)).collect();
    let (u1, u2, u3) = (server.url("/hop1"), server.url("/hop2"), server.url("/hello"));
    assert_eq!(hops, vec![(u1.as_str(), 302), (u2.as_str(), 307), (u3.as_str(), 200)]);
    assert_eq!(pending[0].method, "POST");
    assert_eq!(pending[0].request_bytes, 4);
    assert_eq!(pending.last(), Some(&receipt));
}

#[test]
fn a_redirect_to_a_forbidden_host_is_refused() {
    let server = hello();
    let client = Client::new().expect("client");
    let err = client.fetch(AGENT, &local_policy(), Request::get(server.url("/away"))).expect_err("refused");
    match &err {
        EgressError::RedirectRefused { to, reason, .. } => {
            assert_eq!(to, "http://forbidden.test/steal");
            assert!(matches!(**reason, EgressError::HostNotAllowed { .. }), "{reason}");
        }
        other => panic!("expected RedirectRefused, got {other}"),
    }
    assert!(err.to_string().contains("forbidden.test"), "{err}");
    // The redirecting exchange did happen and is on record.
    assert_eq!(client.receipts().pending(&AGENT).len(), 1);
}

#[test]
fn credentials_follow_a_redirect_within_the_origin_but_not_to_another_host() {
    let server = TestServer::http(|req| {
        let port = req.header("host").and_then(|h| h.rsplit(':').next()).unwrap_or("0").to_string();
        match req.path() {
            "/same" => Reply::redirect(302, "/auth"),
            "/cross" => Reply::redirect(302, &format!("http://localhost:{port}/auth")),
            "/auth" => Reply::text(200, req.header("authorization").unwrap_or("none")),
            _ => Reply::text(404, ""),
        }
    })
    .expect("server starts");
    let client = Client::new().expect("client");
    let with_key = |path: &str| {
        let mut r = Request::get(server.url(path));
        r.headers.push(("authorization".into(), "Bearer secret".into()));
        r
    };
    let (resp, _) = client.fetch(AGENT, &local_policy(), with_key("/same")).expect("fetch");
    assert_eq!(resp.body, b"Bearer secret");
    let (resp, _) = client.fetch(AGENT, &local_policy(), with_key("/cross")).expect("fetch");
    assert_eq!(resp.url, server.url_localhost("/auth"));
    assert_eq!(resp.body, b"none");
}

#[test]
fn too_many_redirects_is_an_error() {
    let server = hello();
    let client = Client::new().expect("client");
    let policy = Policy { max_redirects: 3, ..local_policy() };
    let err = client.fetch(AGENT, &policy, Request::get(server.url("/loop"))).expect_err("loop");
    assert!(matches!(err, EgressError::TooManyRedirects { limit: 3, .. }), "{err}");
    assert_eq!(client.receipts().pending(&AGENT).len(), 4, "the first request and three redirects");
}

#[test]
fn a_huge_body_is_cut_off_at_the_limit_while_reading() {
    let server = hello();
    let client = Client::new().expect("client");
    let limit = 1024 * 1024;
    let policy = Policy { max_response_bytes: limit, ..local_policy() };
    let err = client.fetch(AGENT, &policy, Request::get(server.url("/huge"))).expect_err("too large");
    assert!(matches!(err, EgressError::ResponseTooLarge { limit: l, .. } if l == limit), "{err}");
    assert!(err.to_string().contains("larger than the egress limit"), "{err}");
    let r = client.receipts().pending(&AGENT).last().cloned().expect("receipt");
    assert_eq!(r.response_bytes, limit, "read exactly up to the limit");
    assert!(r.error.as_deref().is_some_and(|e| e.contains("limit")));

    // A declared length over the limit is refused without reading the body.
    let err = client.fetch(AGENT, &policy, Request::get(server.url("/huge-declared"))).expect_err("too large");
    assert!(matches!(err, EgressError::ResponseTooLarge { .. }), "{err}");
    assert_eq!(client.receipts().pending(&AGENT).last().map(|r| r.response_bytes), Some(0));
}

#[test]
fn a_request_body_over_the_limit_is_refused() {
    let server = hello();
    let client = Client::new().expect("client");
    let policy = Policy { max_request_bytes: 10, ..local_policy() };
    let req = Request::post(server.url("/hello"), "text/plain", vec![0u8; 11]);
    let err = client.fetch(AGENT, &policy, req).expect_err("too large");
    assert!(matches!(err, EgressError::RequestTooLarge { size: 11, limit: 10 }), "{err}");
    assert_eq!(server.connections(), 0);
}

#[test]
fn a_server_that_never_answers_times_out() {
    let server = hello();
    let client = Client::new().expect("client");
    let policy = Policy { timeout_ms: 300, ..local_policy() };
    let err = client.fetch(AGENT, &policy, Request::get(server.url("/hang"))).expect_err("timeout");
    assert!(matches!(err, EgressError::Timeout { timeout_ms: 300, .. }), "{err}");
    let r = client.receipts().pending(&AGENT).last().cloned().expect("receipt");
    assert_eq!(r.status, 0);
}

#[test]
fn the_rate_cap_refuses_the_request_over_the_limit_per_agent() {
    let server = hello();
    let client = Client::new().expect("client");
    let policy = Policy { rate: RateCap { max_requests: 3, window_ms: 60_000 }, ..local_policy() };
    for _ in 0..3 {
        client.fetch(AGENT, &policy, Request::get(server.url("/hello"))).expect("under the cap");
    }
    let err = client.fetch(AGENT, &policy, Request::get(server.url("/hello"))).expect_err("over the cap");
    match err {
        EgressError::RateLimited { max_requests: 3, retry_after_ms, .. } => assert!(retry_after_ms <= 60_000),
        other => panic!("expected RateLimited, got {other}"),
    }
    assert_eq!(server.connections(), 3);
    // Another agent has its own allowance.
    client.fetch([2; 32], &policy, Request::get(server.url("/hello"))).expect("other agent");
}

#[test]
fn the_spend_cap_charges_requests_and_kib_and_refuses_past_the_budget() {
    let server = hello();
    let client = Client::new().expect("client");
    // Each /kib exchange costs 10 + 3 (3000 bytes = 3 started KiB) = 13 units.
    let spend = SpendCap { budget: 30, window_ms: 60_000, cost_per_request: 10, cost_per_kib: 1 };
    let policy = Policy { spend, ..local_policy() };
    client.fetch(AGENT, &policy, Request::get(server.url("/kib"))).expect("13 of 30");
    client.fetch(AGENT, &policy, Request::get(server.url("/kib"))).expect("26 of 30");
    let err = client.fetch(AGENT, &policy, Request::get(server.url("/kib"))).expect_err("over budget");
    assert!(matches!(err, EgressError::SpendCapReached { budget: 30, spent: 26, needed: 10 }), "{err}");
    assert_eq!(server.connections(), 2);
}

#[test]
fn a_response_the_remaining_budget_cannot_pay_for_is_cut_off_with_the_spend_error() {
    let server = hello();
    let client = Client::new().expect("client");
    // 2 units left after the request's fixed cost: 2 KiB of the endless body are read, then it is cut off.
    let spend = SpendCap { budget: 3, window_ms: 60_000, cost_per_request: 1, cost_per_kib: 1 };
    let policy = Policy { spend, ..local_policy() };
    let err = client.fetch(AGENT, &policy, Request::get(server.url("/huge"))).expect_err("over budget");
    assert!(matches!(err, EgressError::SpendCapReached { budget: 3, spent: 1, .. }), "{err}");
    assert_eq!(client.receipts().pending(&AGENT).last().map(|r| r.response_bytes), Some(2048));
}

#[test]
fn concurrent_fetches_share_one_rate_allowance() {
    let server = hello();
    let client = Client::new().expect("client");
    let policy = Policy { rate: RateCap { max_requests: 5, window_ms: 60_000 }, ..local_policy() };
    let results: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12)
            .map(|_| s.spawn(|| client.fetch(AGENT, &policy, Request::get(server.url("/hello"))).is_ok()))
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert_eq!(results.iter().filter(|ok| **ok).count(), 5);
    assert_eq!(server.connections(), 5);
}

#[test]
fn an_agent_cannot_set_the_host_or_framing_headers() {
    let server = hello();
    let client = Client::new().expect("client");
    for name in ["Host", "content-length", "Transfer-Encoding"] {
        let mut req = Request::get(server.url("/hello"));
        req.headers.push((name.into(), "x".into()));
        let err = client.fetch(AGENT, &local_policy(), req).expect_err("reserved header");
        assert!(matches!(err, EgressError::InvalidRequest(_)), "{err}");
    }
    assert_eq!(server.connections(), 0);
}

#[test]
fn receipts_batch_under_a_root_that_proves_each_one_and_rejects_a_tampered_one() {
    let server = hello();
    let client = Client::new().expect("client");
    for path in ["/hello", "/hop1", "/nothing"] {
        client.fetch(AGENT, &local_policy(), Request::get(server.url(path))).expect("fetch");
    }
    let batch = client.batch(&AGENT).expect("pending receipts");
    assert_eq!((batch.seq, batch.receipts.len()), (0, 5));
    for (i, r) in batch.receipts.iter().enumerate() {
        let proof = batch.proof(i).expect("in range");
        assert!(verify_receipt(&batch.root, r, &proof), "receipt {i}");
        let mut forged = r.clone();
        forged.url = "http://elsewhere.test/".into();
        assert!(!verify_receipt(&batch.root, &forged, &proof), "tampered receipt {i}");
    }
    assert!(client.batch(&AGENT).is_none(), "drained");
    client.fetch(AGENT, &local_policy(), Request::get(server.url("/hello"))).expect("fetch");
    assert_eq!(client.batch(&AGENT).expect("pending").seq, 1);
}

#[test]
fn the_openai_compatible_server_answers_with_the_key_and_refuses_without() {
    let server = openai_server("sk-test").expect("server starts");
    let client = Client::new().expect("client");
    let body = serde_json::json!({
        "model": "test-model",
        "messages": [{ "role": "system", "content": "be brief" }, { "role": "user", "content": "hi there" }],
    });
    let mut req = Request::post(server.url("/v1/chat/completions"), "application/json", body.to_string());
    req.headers.push(("authorization".into(), "Bearer sk-test".into()));
    let (resp, _) = client.fetch(AGENT, &local_policy(), req.clone()).expect("fetch");
    assert_eq!(resp.status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&resp.body).expect("json");
    assert_eq!(answer["choices"][0]["message"]["content"], openai_echo("test-model", Some("be brief"), "hi there"));
    assert_eq!(answer["usage"]["prompt_tokens"], 4);

    req.headers[1].1 = "Bearer wrong".into();
    let (resp, _) = client.fetch(AGENT, &local_policy(), req).expect("fetch");
    assert_eq!(resp.status, 401);
}

#[test]
fn the_openai_compatible_server_also_serves_https() {
    let cert = TestCert::generate().expect("certificates");
    let server = openai_server_https("k", &cert).expect("server starts");
    let client = Client::with_extra_roots(std::slice::from_ref(&cert.ca_der)).expect("client");
    let mut req = Request::get(server.url("/v1/models"));
    req.headers.push(("authorization".into(), "Bearer k".into()));
    let (resp, receipt) = client.fetch(AGENT, &local_policy(), req).expect("fetch");
    assert_eq!(resp.status, 200);
    assert_eq!(receipt.tls_cert_sha256, Some(cert.leaf_sha256()));
}

#[test]
fn the_price_server_answers_prices_and_refuses_bad_symbols() {
    let prices = PriceServer::start().expect("server starts");
    let client = Client::new().expect("client");
    let get = |url: String| client.fetch(AGENT, &local_policy(), Request::get(url)).expect("fetch").0;
    let btc: serde_json::Value = serde_json::from_slice(&get(prices.url("btc")).body).expect("json");
    assert_eq!(btc, serde_json::json!({ "symbol": "BTC", "price": "65000.00", "price_cents": 6_500_000 }));
    prices.set("BTC", 6_612_345);
    let btc: serde_json::Value = serde_json::from_slice(&get(prices.url("BTC")).body).expect("json");
    assert_eq!(btc["price"], "66123.45");
    assert_eq!(get(prices.url("no%20pe")).status, 400);
    assert_eq!(get(prices.server.url("/other")).status, 404);
}
