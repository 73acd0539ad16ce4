//! Local HTTP and HTTPS servers for tests (feature `test-server`): a programmable server, an
//! OpenAI-compatible chat-completions server and a price API, all real sockets on 127.0.0.1.
//!
//! The server is a small HTTP/1.1 implementation on std threads (one per connection, one request per
//! connection, `Connection: close`) so tests can make it misbehave on purpose (never answer, send an endless
//! body); TLS is rustls with a test CA made by `rcgen`. It is test support, not a production server.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A request as the test server received it.
#[derive(Clone, Debug)]
pub struct TestRequest {
    /// Method.
    pub method: String,
    /// Path and query, e.g. `/price?symbol=BTC`.
    pub target: String,
    /// Headers in order, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl TestRequest {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The value of query parameter `name` (no percent-decoding beyond `+`).
    pub fn query(&self, name: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.replace('+', " "))
    }
}

/// What the test server answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A complete response with `Content-Length`.
    Full {
        /// Status code.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
    },
    /// `len` bytes of `b'x'` streamed in 16 KiB writes, with or without `Content-Length` (without, the body
    /// ends when the connection closes); stops early if the client hangs up.
    Stream {
        /// Status code.
        status: u16,
        /// Body length.
        len: u64,
        /// Whether to send `Content-Length`.
        declare_length: bool,
    },
    /// Read the request and never answer (until the server stops, at most a minute).
    Hang,
}

impl Reply {
    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: &str) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// A redirect to `location`.
    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply::Full { status, headers: vec![("location".into(), location.into())], body: Vec::new() }
    }
}

/// A test CA and a leaf certificate for `localhost` and `127.0.0.1` signed by it.
#[derive(Clone, Debug)]
pub struct TestCert {
    /// The CA certificate (DER): give it to [`Client::with_extra_roots`](crate::Client::with_extra_roots).
    pub ca_der: Vec<u8>,
    /// The leaf certificate the server presents (DER).
    pub leaf_der: Vec<u8>,
    /// The leaf's private key (PKCS#8 DER).
    pub leaf_key_der: Vec<u8>,
}

impl TestCert {
    /// Generates a fresh CA and leaf.
    pub fn generate() -> Result<TestCert, rcgen::Error> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "umbra egress test CA");
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate()?;
        let leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
        Ok(TestCert {
            ca_der: ca_cert.der().to_vec(),
            leaf_der: leaf.der().to_vec(),
            leaf_key_der: leaf_key.serialize_der(),
        })
    }

    /// SHA-256 of the leaf certificate: what a receipt's `tls_cert_sha256` must show.
    pub fn leaf_sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.leaf_der).into()
    }
}

type Handler = dyn Fn(&TestRequest) -> Reply + Send + Sync;

/// A running test server; stops when dropped.
pub struct TestServer {
    addr: SocketAddr,
    scheme: &'static str,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// A plain HTTP server on 127.0.0.1 (port chosen by the kernel and kept bound).
    pub fn http(handler: impl Fn(&TestRequest) -> Reply + Send + Sync + 'static) -> io::Result<TestServer> {
        TestServer::start(Arc::new(handler), None)
    }

    /// An HTTPS server on 127.0.0.1 presenting `cert`'s leaf.
    pub fn https(
        cert: &TestCert,
        handler: impl Fn(&TestRequest) -> Reply + Send + Sync + 'static,
    ) -> io::Result<TestServer> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.leaf_key_der.clone().into());
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.leaf_der.clone().into()], key)
            .map_err(io::Error::other)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TestServer::start(Arc::new(handler), Some(Arc::new(config)))
    }

    fn start(handler: Arc<Handler>, tls: Option<Arc<rustls::ServerConfig>>) -> io::Result<TestServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
        let thread = std::thread::Builder::new().name(format!("test-server-{}", addr.port())).spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                accepted2.fetch_add(1, Ordering::SeqCst);
                let (handler, tls, stop) = (handler.clone(), tls.clone(), stop2.clone());
                let _ = std::thread::Builder::new().name("test-server-conn".into()).spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                    let _ = match tls {
                        Some(config) => match rustls::ServerConnection::new(config) {
                            Ok(c) => {
                                let mut tls = rustls::StreamOwned::new(c, conn);
                                let served = serve(&mut tls, &*handler, &stop);
                                // A body delimited by the connection's end needs a clean TLS close.
                                tls.conn.send_close_notify();
                                let _ = tls.flush();
                                served
                            }
                            Err(e) => Err(io::Error::other(e)),
                        },
                        None => serve(&mut { conn }, &*handler, &stop),
                    };
                });
            }
        })?;
        Ok(TestServer { addr, scheme, stop, accepted, thread: Some(thread) })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `scheme://127.0.0.1:port` followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{}", self.scheme, self.addr.port(), path)
    }

    /// Like [`TestServer::url`] with host `localhost` (for allow-lists by name).
    pub fn url_localhost(&self, path: &str) -> String {
        format!("{}://localhost:{}{}", self.scheme, self.addr.port(), path)
    }

    /// Connections accepted so far (to show that a refused request never connected).
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_request<S: Read>(s: &mut S) -> io::Result<TestRequest> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
        if buf.len() > 64 * 1024 {
            return Err(io::Error::other("request head too large"));
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(TestRequest { method, target, headers, body })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

fn serve<S: Read + Write>(s: &mut S, handler: &Handler, stop: &AtomicBool) -> io::Result<()> {
    let req = read_request(s)?;
    match handler(&req) {
        Reply::Full { status, headers, body } => {
            let mut head = format!(
                "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\nconnection: close\r\n",
                reason(status),
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            s.write_all(head.as_bytes())?;
            s.write_all(&body)?;
        }
        Reply::Stream { status, len, declare_length } => {
            let mut head = format!("HTTP/1.1 {status} {}\r\nconnection: close\r\n", reason(status));
            if declare_length {
                head.push_str(&format!("content-length: {len}\r\n"));
            }
            head.push_str("\r\n");
            s.write_all(head.as_bytes())?;
            let chunk = [b'x'; 16 * 1024];
            let mut left = len;
            while left > 0 && !stop.load(Ordering::SeqCst) {
                let n = left.min(chunk.len() as u64) as usize;
                s.write_all(&chunk[..n])?;
                left -= n as u64;
            }
        }
        Reply::Hang => {
            let until = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            return Ok(());
        }
    }
    s.flush()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The content the OpenAI-compatible server answers: `[model=M system=H] echo: U`, where `H` is the first 8
/// bytes (hex) of SHA-256 of the system prompt (`none` without one) and `U` the last user message.
pub fn openai_echo(model: &str, system: Option<&str>, last_user: &str) -> String {
    let system = system.map(|s| hex(&Sha256::digest(s.as_bytes())[..8])).unwrap_or_else(|| "none".into());
    format!("[model={model} system={system}] echo: {last_user}")
}

fn openai_error(status: u16, message: &str, kind: &str) -> Reply {
    Reply::json(status, &serde_json::json!({ "error": { "message": message, "type": kind, "code": null } }))
}

/// An OpenAI-compatible chat-completions server: `POST /v1/chat/completions` with `Authorization: Bearer
/// <api_key>` answers [`openai_echo`] in the non-streaming OpenAI shape, with usage counted in words;
/// with `"stream": true` the same content arrives as server-sent events (see `sse_reply`); `GET /v1/models` lists
/// one model, `test-model`. Wrong keys get 401, malformed bodies 400, both with the
/// OpenAI error shape. Plain HTTP; see [`openai_server_https`].
pub fn openai_server(api_key: &str) -> io::Result<TestServer> {
    TestServer::http(openai_handler(api_key.to_string()))
}

/// [`openai_server`] over HTTPS with `cert`.
pub fn openai_server_https(api_key: &str, cert: &TestCert) -> io::Result<TestServer> {
    TestServer::https(cert, openai_handler(api_key.to_string()))
}

fn openai_handler(api_key: String) -> impl Fn(&TestRequest) -> Reply + Send + Sync + 'static {
    let counter = AtomicU64::new(0);
    move |req: &TestRequest| {
        if req.header("authorization") != Some(&format!("Bearer {api_key}")) {
            return openai_error(401, "Incorrect API key provided", "invalid_request_error");
        }
        match (req.method.as_str(), req.path()) {
            ("GET", "/v1/models") => Reply::json(
                200,
                &serde_json::json!({ "object": "list", "data": [{ "id": "test-model", "object": "model", "owned_by": "umbra" }] }),
            ),
            ("POST", "/v1/chat/completions") => {
                let Ok(body) = serde_json::from_slice::<serde_json::Value>(&req.body) else {
                    return openai_error(400, "the body is not JSON", "invalid_request_error");
                };
                let model = body["model"].as_str().unwrap_or("");
                let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
                    return openai_error(400, "messages: a non-empty array is required", "invalid_request_error");
                };
                if model.is_empty() {
                    return openai_error(400, "model is required", "invalid_request_error");
                }
                let text = |m: &serde_json::Value| m["content"].as_str().unwrap_or("").to_string();
                let system = messages.iter().find(|m| m["role"] == "system").map(text);
                let last_user = messages.iter().rev().find(|m| m["role"] == "user").map(text).unwrap_or_default();
                let content = openai_echo(model, system.as_deref(), &last_user);
                let words = |s: &str| s.split_whitespace().count() as u64;
                let prompt: u64 = messages.iter().map(|m| words(&text(m))).sum();
                let completion = words(&content);
                let n = counter.fetch_add(1, Ordering::SeqCst);
                if body["stream"] == true {
                    return sse_reply(n, model, &content, prompt, completion);
                }
                Reply::json(
                    200,
                    &serde_json::json!({
                        "id": format!("chatcmpl-test-{n}"),
                        "object": "chat.completion",
                        "created": 0,
                        "model": model,
                        "choices": [{ "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": "stop" }],
                        "usage": { "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion },
                    }),
                )
            }
            _ => openai_error(404, "unknown endpoint", "invalid_request_error"),
        }
    }
}

/// The streamed form of an answer: `chat.completion.chunk` events (the role, then one per word of `content`,
/// then `finish_reason` with usage), then `data: [DONE]`.
fn sse_reply(n: u64, model: &str, content: &str, prompt: u64, completion: u64) -> Reply {
    let id = format!("chatcmpl-test-{n}");
    let chunk = |delta: serde_json::Value, finish: serde_json::Value, usage: serde_json::Value| {
        let c = serde_json::json!({
            "id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }], "usage": usage,
        });
        format!("data: {c}\n\n")
    };
    let null = serde_json::Value::Null;
    let mut out = chunk(serde_json::json!({ "role": "assistant", "content": "" }), null.clone(), null.clone());
    for (i, word) in content.split(' ').enumerate() {
        let piece = if i == 0 { word.to_string() } else { format!(" {word}") };
        out.push_str(&chunk(serde_json::json!({ "content": piece }), null.clone(), null.clone()));
    }
    let usage = serde_json::json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion });
    out.push_str(&chunk(serde_json::json!({}), serde_json::json!("stop"), usage));
    out.push_str("data: [DONE]\n\n");
    Reply::Full {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into()), ("cache-control".into(), "no-cache".into())],
        body: out.into_bytes(),
    }
}

/// A price API for oracle examples: `GET /price?symbol=X` answers
/// `{"symbol": "X", "price": "65000.00", "price_cents": 6500000}`. Prices start from a fixed table (BTC 65000.00,
/// ETH 3200.50, USDC 1.00) and otherwise derive from SHA-256 of the symbol; [`PriceServer::set`] changes one.
/// An unknown path is 404, a missing or non-alphanumeric symbol 400.
pub struct PriceServer {
    /// The running server.
    pub server: TestServer,
    prices: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl PriceServer {
    /// Starts the price server on plain HTTP.
    pub fn start() -> io::Result<PriceServer> {
        let prices: Arc<Mutex<BTreeMap<String, u64>>> = Arc::new(Mutex::new(
            [("BTC", 6_500_000u64), ("ETH", 320_050), ("USDC", 100)]
                .into_iter()
                .map(|(s, p)| (s.to_string(), p))
                .collect(),
        ));
        let p = prices.clone();
        let server = TestServer::http(move |req| {
            if req.method != "GET" || req.path() != "/price" {
                return Reply::json(404, &serde_json::json!({ "error": "not found" }));
            }
            let symbol = req.query("symbol").unwrap_or_default().to_ascii_uppercase();
            if symbol.is_empty() || symbol.len() > 16 || !symbol.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Reply::json(400, &serde_json::json!({ "error": "symbol: 1-16 letters or digits" }));
            }
            let cents = p.lock().map(|m| m.get(&symbol).copied()).unwrap_or(None).unwrap_or_else(|| {
                let h = Sha256::digest(symbol.as_bytes());
                100 + u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % 10_000_000)
            });
            Reply::json(
                200,
                &serde_json::json!({ "symbol": symbol, "price": format!("{}.{:02}", cents / 100, cents % 100), "price_cents": cents }),
            )
        })?;
        Ok(PriceServer { server, prices })
    }

    /// Sets `symbol`'s price in cents.
    pub fn set(&self, symbol: &str, cents: u64) {
        if let Ok(mut m) = self.prices.lock() {
            m.insert(symbol.to_ascii_uppercase(), cents);
        }
    }

    /// The URL of `symbol`'s price.
    pub fn url(&self, symbol: &str) -> String {
        self.server.url(&format!("/price?symbol={symbol}"))
    }
}
