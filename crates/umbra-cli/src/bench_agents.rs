//! `umbra bench agents`: the agent runtime's cold start, the gateway's warm round trip and requests/s for a
//! trivial agent.
//!
//! - *Cold start*: an agent never seen before (a distinct code each sample) is compiled, instantiated in a
//!   fresh QuickJS runtime and answers one request, on one engine thread (`Engine::load` + `Engine::handle`).
//! - *Warm round trip*: one client sends plain requests one after another to a real gateway (the worker's
//!   axum server with its agent service, in this process on 127.0.0.1) serving the agent from warm
//!   instances; each sample is connect + request + signed answer.
//! - *Requests/s*: `--clients` clients in parallel for `--duration` seconds against the same gateway.
//!
//! The gateway's view is [`umbra_worker::agents::AgentView::for_benchmark`]: no chain is involved, so the
//! numbers are the worker's own cost, not consensus.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::time::{Duration, Instant};
use umbra_engine::{AgentRequest, Code, Engine, Host, Limits};
use umbra_worker::agents::{AgentService, AgentView};

/// `umbra bench agents`
#[derive(Args, Debug)]
pub(crate) struct AgentBench {
    /// Cold-start samples.
    #[arg(long, default_value_t = 200)]
    cold: usize,
    /// Warm round-trip samples.
    #[arg(long, default_value_t = 1_000)]
    warm: usize,
    /// Parallel clients for the requests/s phase.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Seconds of the requests/s phase.
    #[arg(long, default_value_t = 5)]
    duration: u64,
}

const TRIVIAL: &str = "export default { fetch: (r) => new Response(\"ok\") };\n";

fn pct(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) * p) / 100]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// A host with nothing to read: the trivial agent uses no storage, keys or calls.
struct NoHost;

impl Host for NoHost {
    fn storage_get(&self, _: &[u8; 32], _: &[u8]) -> Result<Option<Vec<u8>>, umbra_engine::HostError> {
        Ok(None)
    }
    fn derive_key(&self, _: &[u8; 32], _: &[u8]) -> Result<[u8; 32], umbra_engine::HostError> {
        Err(umbra_engine::HostError("no keys in the benchmark".into()))
    }
    fn sign(&self, _: &[u8; 32], _: &[u8]) -> Result<[u8; 64], umbra_engine::HostError> {
        Err(umbra_engine::HostError("no keys in the benchmark".into()))
    }
    fn call(&self, inv: &umbra_engine::Invocation) -> Result<umbra_engine::CallOutput, umbra_engine::Failure> {
        Err(umbra_engine::Failure {
            error: umbra_engine::EngineError::Host("no calls".into()),
            gas_used: inv.budget.min(1),
        })
    }
}

fn cold_starts(n: usize) -> Result<Vec<Duration>> {
    let limits = Limits::default();
    let stack = limits.thread_stack_bytes();
    let handle = std::thread::Builder::new().stack_size(stack).spawn(move || -> Result<Vec<Duration>> {
        let engine = Engine::new(limits)?;
        let host: Rc<dyn Host> = Rc::new(NoHost);
        let request = AgentRequest {
            method: "GET".into(),
            url: "http://bench/agents/00/".into(),
            path: "/".into(),
            headers: vec![],
            body: vec![],
        };
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let code = Code::JavaScript(format!("{TRIVIAL}// sample {i}\n").into_bytes());
            let inv = umbra_engine::Invocation {
                contract: [1; 32],
                mode: umbra_engine::Mode::Query,
                method: "fetch".into(),
                args: vec![],
                caller: None,
                height: 0,
                time_ms: 0,
                seed: [0; 32],
                budget: 1_000_000_000,
                depth: 0,
            };
            let t = Instant::now();
            let c = engine.load(&code)?;
            let o = engine
                .handle(&c, &inv, &request, "{}", Instant::now() + Duration::from_secs(2), &host)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            out.push(t.elapsed());
            if o.status != 200 {
                bail!("the trivial agent answered {}", o.status);
            }
        }
        Ok(out)
    })?;
    handle.join().map_err(|_| anyhow::anyhow!("the cold-start thread panicked"))?
}

fn get(port: u16, path: &str) -> Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::with_capacity(512);
    s.read_to_end(&mut buf)?;
    let head = String::from_utf8_lossy(&buf[..buf.len().min(16)]).to_string();
    head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("a malformed answer")
}

/// Runs `umbra bench agents`.
pub(crate) fn run(args: AgentBench) -> Result<()> {
    let mut cold = cold_starts(args.cold.max(1))?;
    cold.sort_unstable();
    println!(
        "cold start (compile + fresh instance + first request), {} samples: p50 {} p99 {}",
        cold.len(),
        ms(pct(&cold, 50)),
        ms(pct(&cold, 99))
    );

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let id = [7u8; 32];
    let agents = AgentService::start(umbra_worker::agents::EgressSettings::default())?;
    agents.update(AgentView::for_benchmark("umbra-bench", id, TRIVIAL.as_bytes().to_vec()));
    let queries = umbra_worker::query::QueryService::start()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let port = listener.local_addr()?.port();
    rt.spawn(umbra_worker::http::serve(listener, queries, agents));
    let path = format!("/agents/{}/", hex::encode(id));
    for _ in 0..20 {
        if get(port, &path)? != 200 {
            bail!("the gateway did not serve the trivial agent");
        }
    }
    let mut warm = Vec::with_capacity(args.warm);
    for _ in 0..args.warm.max(1) {
        let t = Instant::now();
        let status = get(port, &path)?;
        warm.push(t.elapsed());
        if status != 200 {
            bail!("the gateway answered {status}");
        }
    }
    warm.sort_unstable();
    println!(
        "warm gateway round trip (plain, signed answer), {} samples: p50 {} p99 {}",
        warm.len(),
        ms(pct(&warm, 50)),
        ms(pct(&warm, 99))
    );

    let stop = Instant::now() + Duration::from_secs(args.duration.max(1));
    let started = Instant::now();
    let threads: Vec<_> = (0..args.clients.max(1))
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < stop {
                    if matches!(get(port, &path), Ok(200)) {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "throughput, {} clients for {:.1} s: {:.0} requests/s ({total} answered 200)",
        args.clients.max(1),
        secs,
        total as f64 / secs
    );
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
