//! The blocking egress client: policy checks, caps, size limits, manual redirects and receipts around reqwest.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, Url};
use sha2::{Digest, Sha256};

use crate::policy::{Policy, is_public_ip};
use crate::receipt::{Receipt, ReceiptBatch, ReceiptLog, request_hash, response_hash};

/// Why a fetch failed. Every variant names what was refused and why, for the agent's error message.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The policy itself is malformed.
    #[error("invalid egress policy: {0}")]
    InvalidPolicy(String),
    /// The request is malformed (method, URL, header).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The URL's scheme is not allowed.
    #[error("scheme {scheme:?} is not allowed by the agent's egress policy (https{})", if *.http_allowed { " or http" } else { " only" })]
    SchemeNotAllowed {
        /// The refused scheme.
        scheme: String,
        /// Whether http would have been allowed.
        http_allowed: bool,
    },
    /// The host is not on the allow-list.
    #[error("host {host:?} is not on the agent's egress allow-list")]
    HostNotAllowed {
        /// The refused host.
        host: String,
    },
    /// The host is, or resolves only to, a loopback/private/link-local address and the policy does not allow it.
    #[error(
        "host {host:?} is a private, loopback or link-local address, which the agent's egress policy does not allow"
    )]
    PrivateAddress {
        /// The refused host.
        host: String,
    },
    /// The request body is over the policy's limit.
    #[error("request body of {size} bytes is over the egress limit of {limit} bytes")]
    RequestTooLarge {
        /// Body size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The response body is over the policy's limit; reading stopped at the limit.
    #[error("response from {url} is larger than the egress limit of {limit} bytes (cut off)")]
    ResponseTooLarge {
        /// The URL that answered.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// A redirect pointed somewhere the policy refuses.
    #[error("redirect from {from} to {to} refused: {reason}")]
    RedirectRefused {
        /// The URL that redirected.
        from: String,
        /// Where it pointed.
        to: String,
        /// Why the target was refused.
        reason: Box<EgressError>,
    },
    /// More redirects than the policy allows.
    #[error("more than {limit} redirects, last to {url}")]
    TooManyRedirects {
        /// The limit.
        limit: u32,
        /// The redirect target that was not followed.
        url: String,
    },
    /// The exchange did not finish within the policy's timeout.
    #[error("request to {url} timed out after {timeout_ms} ms")]
    Timeout {
        /// The URL.
        url: String,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The rate cap is reached.
    #[error("egress rate cap reached: {max_requests} requests per {window_ms} ms; retry in {retry_after_ms} ms")]
    RateLimited {
        /// The cap.
        max_requests: u32,
        /// Its window.
        window_ms: u64,
        /// When a request would be admitted again.
        retry_after_ms: u64,
    },
    /// The spending cap is reached.
    #[error("egress spending cap reached: {spent} of {budget} units spent in this window, {needed} more needed")]
    SpendCapReached {
        /// Units per window.
        budget: u64,
        /// Units spent in the current window.
        spent: u64,
        /// Units the refused request (or the rest of its response) needed.
        needed: u64,
    },
    /// Connecting, TLS or the HTTP exchange failed.
    #[error("request to {url} failed: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// The underlying error, with its causes.
        reason: String,
    },
    /// The client could not be built (TLS roots, resolver).
    #[error("egress client setup failed: {0}")]
    Setup(String),
}

/// An outbound request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// Request headers in order.
    pub headers: Vec<(String, String)>,
    /// Body, empty for none.
    pub body: Vec<u8>,
}

impl Request {
    /// A `GET` without headers.
    pub fn get(url: impl Into<String>) -> Request {
        Request { method: "GET".into(), url: url.into(), headers: Vec::new(), body: Vec::new() }
    }

    /// A `POST` of `body` with a `content-type` header.
    pub fn post(url: impl Into<String>, content_type: &str, body: impl Into<Vec<u8>>) -> Request {
        Request {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }
}

/// A complete response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Response headers in the order received (names in lower case).
    pub headers: Vec<(String, String)>,
    /// The body, at most the policy's `max_response_bytes`.
    pub body: Vec<u8>,
    /// The URL that answered (after redirects).
    pub url: String,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Headers the client sets itself: an agent-chosen `Host` could reach another virtual host than the allow-listed
/// name, and framing headers could desynchronise the exchange.
const RESERVED_HEADERS: [&str; 5] = ["host", "content-length", "transfer-encoding", "connection", "upgrade"];

/// The error a resolver returns when every address of a name is non-public; found again in the error chain.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves only to private, loopback or link-local addresses")]
struct PrivateOnly(String);

/// Resolves with the system resolver and, unless `allow_private`, keeps only public addresses.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = addrs.into_iter().filter(|a| allow_private || is_public_ip(&a.ip())).collect();
            if kept.is_empty() {
                return Err(Box::new(PrivateOnly(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// Per-agent usage against the rate and spend caps.
#[derive(Default)]
struct Usage {
    /// Start times (ms since the client started) of requests in the rate window.
    recent: VecDeque<u64>,
    /// Start of the current spend window and units spent in it.
    spend_window: Option<u64>,
    spent: u64,
}

/// The blocking egress client. One per worker; thread-safe (`&self` everywhere).
///
/// Uses reqwest's blocking client, which runs its own runtime thread: call `fetch` from plain threads (such as
/// the engine's agent threads or tokio's `spawn_blocking`), not from an async task. Building and dropping it
/// is safe anywhere (both happen on a short-lived helper thread). TLS is rustls with the ring provider, roots
/// bundled from `webpki-root-certs` (plus any extra roots given); http/1.1 only, no proxies, no automatic
/// decompression (a compressed body could expand past the size limit), redirects followed by hand.
pub struct Client {
    /// The reqwest clients; `None` only while dropping.
    http: Option<Http>,
    usage: Mutex<BTreeMap<[u8; 32], Usage>>,
    log: Mutex<ReceiptLog>,
    started: Instant,
}

/// The two reqwest clients.
struct Http {
    /// Resolves only to public addresses.
    public: reqwest::blocking::Client,
    /// For policies with `allow_private`.
    open: reqwest::blocking::Client,
}

impl Drop for Client {
    /// reqwest's blocking client shuts its runtime down when dropped, which tokio refuses inside an async context;
    /// a helper thread does it instead.
    fn drop(&mut self) {
        if let Some(http) = self.http.take() {
            let _ = std::thread::spawn(move || drop(http)).join();
        }
    }
}

/// Locks a mutex, recovering from poisoning (the data is counters and receipts, valid after any panic).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Installs rustls's ring provider as the process default once (reqwest needs a default provider).
fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn find_private_only(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(p) = c.downcast_ref::<PrivateOnly>() {
            return Some(p.0.clone());
        }
        cur = c.source();
    }
    None
}

/// What one exchange produced, whether it ended well or not.
struct Exchange {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    cert: Option<[u8; 32]>,
    result: Result<(), EgressError>,
}

impl Client {
    /// A client trusting the bundled web roots.
    pub fn new() -> Result<Client, EgressError> {
        Client::with_extra_roots(&[])
    }

    /// A client trusting the bundled web roots plus `extra_roots` (DER certificates; tests, private CAs).
    pub fn with_extra_roots(extra_roots: &[Vec<u8>]) -> Result<Client, EgressError> {
        install_ring();
        let mut roots = rustls::RootCertStore::empty();
        let (_, _ignored) = roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
        for der in extra_roots {
            roots
                .add(rustls::pki_types::CertificateDer::from(der.clone()))
                .map_err(|e| EgressError::Setup(format!("extra root certificate: {e}")))?;
        }
        let build = |allow_private: bool| {
            let mut tls = rustls::ClientConfig::builder().with_root_certificates(roots.clone()).with_no_client_auth();
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            reqwest::blocking::Client::builder()
                .tls_backend_preconfigured(tls)
                .tls_info(true)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .http1_only()
                .connect_timeout(Duration::from_secs(30))
                .dns_resolver(Arc::new(GuardedResolver { allow_private }))
                .build()
                .map_err(|e| EgressError::Setup(chain(&e)))
        };
        // reqwest's blocking builder starts (and on failure drops) a runtime: keep that off any async context.
        let http = std::thread::scope(|s| {
            s.spawn(|| Ok::<_, EgressError>(Http { public: build(false)?, open: build(true)? }))
                .join()
                .unwrap_or_else(|_| Err(EgressError::Setup("the client builder panicked".into())))
        })?;
        Ok(Client {
            http: Some(http),
            usage: Mutex::new(BTreeMap::new()),
            log: Mutex::new(ReceiptLog::new()),
            started: Instant::now(),
        })
    }

    /// Performs `req` for `agent` under `policy`: checks the URL and every redirect target against the policy,
    /// enforces the caps and size limits, and records a receipt for every exchange (kept in the client's log,
    /// see [`Client::batch`]). Returns the final response and its receipt.
    ///
    /// Redirects (301, 302, 303, 307, 308 with a `Location`) are followed up to `policy.max_redirects`; 303, and
    /// 301/302 after a POST, continue as a bodyless GET, as browsers do. `Authorization` and `Cookie` headers are
    /// dropped when a redirect changes the origin (scheme, host or port).
    pub fn fetch(&self, agent: [u8; 32], policy: &Policy, req: Request) -> Result<(Response, Receipt), EgressError> {
        policy.validate().map_err(EgressError::InvalidPolicy)?;
        let size = req.body.len() as u64;
        if size > policy.max_request_bytes {
            return Err(EgressError::RequestTooLarge { size, limit: policy.max_request_bytes });
        }
        let mut method = Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| EgressError::InvalidRequest(format!("method {:?}", req.method)))?;
        let mut url =
            Url::parse(&req.url).map_err(|e| EgressError::InvalidRequest(format!("URL {:?}: {e}", req.url)))?;
        // The host only: paths and queries may carry secrets.
        let _span =
            tracing::debug_span!("egress.fetch", host = url.host_str().unwrap_or(""), method = %method).entered();
        check_url(policy, &url)?;
        if let Some((name, _)) =
            req.headers.iter().find(|(k, _)| RESERVED_HEADERS.iter().any(|r| k.eq_ignore_ascii_case(r)))
        {
            return Err(EgressError::InvalidRequest(format!("header {name:?} is set by the client, not the agent")));
        }
        let (mut headers, mut body) = (req.headers, req.body);
        let mut redirects = 0u32;
        loop {
            self.admit(agent, policy, body.len() as u64)?;
            let time_ms = now_ms();
            let ex = self.exchange(agent, policy, &method, &url, &headers, &body);
            let receipt = Receipt {
                agent,
                method: method.to_string(),
                url: url.to_string(),
                request_hash: request_hash(method.as_str(), url.as_str(), &headers, &body),
                response_hash: response_hash(ex.status, &ex.headers, &ex.body),
                status: ex.status,
                request_bytes: body.len() as u64,
                response_bytes: ex.body.len() as u64,
                time_ms,
                tls_cert_sha256: ex.cert,
                error: ex.result.as_ref().err().map(|e| e.to_string()),
            };
            lock(&self.log).push(receipt.clone());
            ex.result?;
            let location = ex.headers.iter().find(|(k, _)| k == "location").map(|(_, v)| v.clone());
            let location = match (ex.status, location) {
                (301 | 302 | 303 | 307 | 308, Some(l)) => l,
                _ => {
                    let response =
                        Response { status: ex.status, headers: ex.headers, body: ex.body, url: url.to_string() };
                    return Ok((response, receipt));
                }
            };
            let next = url.join(&location).map_err(|e| EgressError::RedirectRefused {
                from: url.to_string(),
                to: location.clone(),
                reason: Box::new(EgressError::InvalidRequest(format!("bad Location: {e}"))),
            })?;
            if redirects >= policy.max_redirects {
                return Err(EgressError::TooManyRedirects { limit: policy.max_redirects, url: next.to_string() });
            }
            check_url(policy, &next).map_err(|reason| EgressError::RedirectRefused {
                from: url.to_string(),
                to: next.to_string(),
                reason: Box::new(reason),
            })?;
            redirects += 1;
            if ex.status == 303 || (matches!(ex.status, 301 | 302) && method == Method::POST) {
                method = Method::GET;
                body.clear();
                headers.retain(|(k, _)| {
                    !k.eq_ignore_ascii_case("content-type") && !k.eq_ignore_ascii_case("content-length")
                });
            }
            if next.origin() != url.origin() {
                headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization") && !k.eq_ignore_ascii_case("cookie"));
            }
            url = next;
        }
    }

    /// Drains `agent`'s pending receipts into its next batch (see [`ReceiptLog::batch`]).
    pub fn batch(&self, agent: &[u8; 32]) -> Option<ReceiptBatch> {
        lock(&self.log).batch(agent)
    }

    /// The client's receipt log (to list pending receipts, batch every agent, or set sequence numbers).
    pub fn receipts(&self) -> MutexGuard<'_, ReceiptLog> {
        lock(&self.log)
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Checks the rate and spend caps for a request with `request_bytes` of body and charges its fixed part.
    fn admit(&self, agent: [u8; 32], policy: &Policy, request_bytes: u64) -> Result<(), EgressError> {
        let now = self.elapsed_ms();
        let mut usage = lock(&self.usage);
        let u = usage.entry(agent).or_default();
        let rate = &policy.rate;
        while u.recent.front().is_some_and(|t| now.saturating_sub(*t) >= rate.window_ms) {
            u.recent.pop_front();
        }
        if u.recent.len() >= rate.max_requests as usize {
            let oldest = u.recent.front().copied().unwrap_or(now);
            return Err(EgressError::RateLimited {
                max_requests: rate.max_requests,
                window_ms: rate.window_ms,
                retry_after_ms: (oldest + rate.window_ms).saturating_sub(now),
            });
        }
        let spend = &policy.spend;
        if u.spend_window.is_none_or(|start| now.saturating_sub(start) >= spend.window_ms) {
            u.spend_window = Some(now);
            u.spent = 0;
        }
        let needed = spend.cost_per_request.saturating_add(spend.bytes_cost(request_bytes));
        if u.spent.saturating_add(needed) > spend.budget {
            return Err(EgressError::SpendCapReached { budget: spend.budget, spent: u.spent, needed });
        }
        u.spent += needed;
        u.recent.push_back(now);
        Ok(())
    }

    /// The response bytes the agent can still pay for in this window, and the units spent so far.
    fn affordable_bytes(&self, agent: [u8; 32], policy: &Policy) -> (u64, u64) {
        let spend = &policy.spend;
        let spent = lock(&self.usage).get(&agent).map(|u| u.spent).unwrap_or(0);
        if spend.cost_per_kib == 0 {
            return (u64::MAX, spent);
        }
        ((spend.budget.saturating_sub(spent) / spend.cost_per_kib).saturating_mul(1024), spent)
    }

    fn charge_response(&self, agent: [u8; 32], policy: &Policy, bytes: u64) {
        let mut usage = lock(&self.usage);
        if let Some(u) = usage.get_mut(&agent) {
            u.spent = u.spent.saturating_add(policy.spend.bytes_cost(bytes));
        }
    }

    /// One HTTP exchange, with the response read under the size and spend limits.
    fn exchange(
        &self,
        agent: [u8; 32],
        policy: &Policy,
        method: &Method,
        url: &Url,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Exchange {
        let mut ex = Exchange { status: 0, headers: Vec::new(), body: Vec::new(), cert: None, result: Ok(()) };
        let Some(http) = &self.http else {
            ex.result = Err(EgressError::Setup("the client is shutting down".into()));
            return ex;
        };
        let client = if policy.allow_private { &http.open } else { &http.public };
        let timeout_ms = policy.timeout_ms;
        let mut rb = client.request(method.clone(), url.clone()).timeout(Duration::from_millis(timeout_ms));
        for (k, v) in headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        if !body.is_empty() {
            rb = rb.body(body.to_vec());
        }
        let transport = |e: &reqwest::Error| {
            if let Some(host) = find_private_only(e) {
                EgressError::PrivateAddress { host }
            } else if e.is_timeout() {
                EgressError::Timeout { url: url.to_string(), timeout_ms }
            } else if e.is_builder() {
                EgressError::InvalidRequest(chain(e))
            } else {
                EgressError::Transport { url: url.to_string(), reason: chain(e) }
            }
        };
        let mut resp = match rb.send() {
            Ok(r) => r,
            Err(e) => {
                ex.result = Err(transport(&e));
                return ex;
            }
        };
        ex.status = resp.status().as_u16();
        ex.headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        ex.cert = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|t| t.peer_certificate())
            .map(|der| Sha256::digest(der).into());
        let (affordable, spent) = self.affordable_bytes(agent, policy);
        let limit = policy.max_response_bytes.min(affordable);
        let too_large = |read: u64| {
            if limit < policy.max_response_bytes {
                EgressError::SpendCapReached {
                    budget: policy.spend.budget,
                    spent,
                    needed: policy.spend.bytes_cost(read),
                }
            } else {
                EgressError::ResponseTooLarge { url: url.to_string(), limit: policy.max_response_bytes }
            }
        };
        if let Some(len) = resp.content_length().filter(|len| *len > limit) {
            ex.result = Err(too_large(len));
            return ex;
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            match resp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let room = (limit - ex.body.len() as u64) as usize;
                    ex.body.extend_from_slice(&buf[..n.min(room)]);
                    if n > room {
                        ex.result = Err(too_large(ex.body.len() as u64 + (n - room) as u64));
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let timed_out = e.kind() == std::io::ErrorKind::TimedOut
                        || e.get_ref()
                            .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
                            .is_some_and(|r| r.is_timeout());
                    ex.result = Err(if timed_out {
                        EgressError::Timeout { url: url.to_string(), timeout_ms }
                    } else {
                        EgressError::Transport {
                            url: url.to_string(),
                            reason: format!("reading the body: {}", chain(&e)),
                        }
                    });
                    break;
                }
            }
        }
        self.charge_response(agent, policy, ex.body.len() as u64);
        ex
    }
}

/// Checks scheme, allow-list and (for IP literals) private addresses, before any connection.
fn check_url(policy: &Policy, url: &Url) -> Result<(), EgressError> {
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        other => return Err(EgressError::SchemeNotAllowed { scheme: other.into(), http_allowed: policy.allow_http }),
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(EgressError::InvalidRequest(format!("URL {url} has no host"))),
    };
    if !policy.host_allowed(&host) {
        return Err(EgressError::HostNotAllowed { host });
    }
    let ip: Option<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(ip.into()),
        Some(url::Host::Ipv6(ip)) => Some(ip.into()),
        _ => None,
    };
    if let Some(ip) = ip
        && !policy.allow_private
        && !is_public_ip(&ip)
    {
        return Err(EgressError::PrivateAddress { host });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_schemes_hosts_and_private_literals_are_refused_before_connecting() {
        let p = Policy { allow_hosts: vec!["api.example.com".into(), "10.0.0.1".into()], ..Policy::default() };
        let u = |s: &str| Url::parse(s).expect("url");
        assert!(check_url(&p, &u("https://api.example.com/x")).is_ok());
        assert!(matches!(check_url(&p, &u("http://api.example.com/")), Err(EgressError::SchemeNotAllowed { .. })));
        assert!(matches!(check_url(&p, &u("ftp://api.example.com/")), Err(EgressError::SchemeNotAllowed { .. })));
        assert!(matches!(check_url(&p, &u("https://evil.example.com/")), Err(EgressError::HostNotAllowed { .. })));
        assert!(matches!(check_url(&p, &u("https://10.0.0.1/")), Err(EgressError::PrivateAddress { .. })));
        let v6 = Policy { allow_hosts: vec!["[::1]".into()], ..Policy::default() };
        assert!(matches!(check_url(&v6, &u("https://[::1]:8443/")), Err(EgressError::PrivateAddress { .. })));
        let v6 = Policy { allow_private: true, ..v6 };
        assert!(check_url(&v6, &u("https://[::1]:8443/")).is_ok());
        assert!(matches!(check_url(&v6, &u("https://[::2]/")), Err(EgressError::HostNotAllowed { .. })));
    }
}
