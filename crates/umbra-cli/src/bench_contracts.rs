//! `umbra bench commands` and `umbra bench query`: contracts on a local network the benchmark starts (`umbra
//! dev` with a cluster of workers).
//!
//! *commands*: many senders each send sealed `increment` commands to one counter (JavaScript, or the WAT
//! counter with `--wasm`); the rate is the number of commands divided by the time from the first submission
//! until the chain recorded the cluster's report of the last one, so it covers ordering, execution by every
//! member and the report landing.
//!
//! *query*: sealed queries to one worker over loopback HTTP, each timed from sealing to the opened, signature
//! checked answer (the worker's attested key is checked on chain once, before timing). The JavaScript cold
//! start is timed in-process: a fresh QuickJS instance for every invocation (module evaluation included),
//! as every command gets.

use crate::bench::{OwnNet, free_port_block, percentile, start_network_with, submit_batch};
use anyhow::{Context, Result, bail};
use jsonrpsee::http_client::HttpClientBuilder;
use rand::SeedableRng as _;
use std::io::{Read as _, Write as _};
use std::rc::Rc;
use std::time::{Duration, Instant};
use umbra_crypto::{Keypair, open_envelope, seal_envelope, sign_with_min_fee, x25519_public};
use umbra_sdk::Client;
use umbra_types::contracts::{
    CodeKind, ContractId, LABEL_QUERY, LABEL_QUERY_ANSWER, QueryAnswer, QueryPlain, QueryReply, code_hash, contract_id,
    query_reply_bytes,
};
use umbra_types::{Address, Call, SignedTransaction, Transaction, UNIT, decode, encode, sha256};

const COUNTER_JS: &str = include_str!("../../../examples/contracts/counter.js");
const COUNTER_WAT: &str = include_str!("../../../examples/contracts/counter.wat");
/// The dev network's cluster.
const CLUSTER: u32 = 1;

struct Net {
    _own: OwnNet,
    client: Client,
    url: String,
    chain_id: String,
    fees: umbra_types::FeeParams,
    funder: Keypair,
}

impl Net {
    async fn start(workers: usize, query_port: Option<u16>) -> Result<Net> {
        let workers_arg = workers.to_string();
        let port_arg = query_port.map(|p| p.to_string());
        let mut extra = vec!["--workers", workers_arg.as_str()];
        if let Some(p) = &port_arg {
            extra.extend(["--query-port", p.as_str()]);
        }
        eprintln!("starting a network with a {workers}-worker cluster for the benchmark ...");
        let (own, urls, funder) = start_network_with(1, &extra).await?;
        let client = Client::with_timeout(urls[0].clone(), Duration::from_secs(30))?;
        let info = client.chain_info().await?;
        Ok(Net { _own: own, client, url: urls[0].clone(), chain_id: info.chain_id, fees: info.fees, funder })
    }

    fn sign(&self, from: &Keypair, nonce: u64, call: Call) -> SignedTransaction {
        let tx = Transaction { signer: from.address(), nonce, chain_id: self.chain_id.clone(), fee: 0, call };
        sign_with_min_fee(from, tx, &self.fees)
    }

    /// Sends `call` from the funder and waits for it to succeed.
    async fn send(&self, call: Call) -> Result<()> {
        let nonce = self.client.next_nonce(&self.funder.address()).await?;
        let what = call.kind();
        let hash = self.client.submit(&self.sign(&self.funder, nonce, call)).await?;
        let r = self.client.wait_for_tx(hash, Duration::from_secs(60)).await?;
        if let Some(e) = r.receipt.and_then(|r| r.error) {
            bail!("{what} failed: {e}");
        }
        Ok(())
    }

    /// Waits until the dev cluster has `workers` members holding the current key epoch.
    async fn wait_cluster(&self, workers: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let s = self.client.registry_status().await?;
            let members = s.clusters.iter().find(|c| c.id == CLUSTER).map(|c| c.members.clone()).unwrap_or_default();
            let keyed = members
                .iter()
                .filter(|m| {
                    s.workers.iter().any(|w| w.id == m.0 && s.keys.key_epoch > 0 && w.key_epoch >= s.keys.key_epoch)
                })
                .count();
            if keyed >= workers {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the cluster did not get {workers} keyed members within 180 s ({keyed} so far)");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Uploads and instantiates a counter; waits for its keys.
    async fn deploy(&self, wasm: bool) -> Result<ContractId> {
        let (kind, code) = if wasm {
            (CodeKind::Wasm, wat::parse_str(COUNTER_WAT).context("the WAT counter does not assemble")?)
        } else {
            (CodeKind::JavaScript, COUNTER_JS.as_bytes().to_vec())
        };
        let hash = code_hash(kind, &code);
        self.send(Call::UploadCode { kind, code }).await?;
        let salt: [u8; 8] = rand::random();
        self.send(Call::Instantiate { code_hash: hash, cluster: CLUSTER, salt: salt.to_vec(), args: vec![] }).await?;
        let id = contract_id(&self.funder.address(), &hash, &salt, CLUSTER);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.client.contract(&id).await?.is_none_or(|r| r.keys.is_empty()) {
            if Instant::now() > deadline {
                bail!("the cluster did not publish the contract's keys within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(id)
    }

    /// Waits until `n` commands of `id` are reported; returns when that was seen, and when the chain had
    /// ordered all `n` (recorded them and sent them to the cluster).
    async fn wait_reported(&self, id: &ContractId, n: u64, timeout: Duration) -> Result<(Instant, Instant)> {
        let deadline = Instant::now() + timeout;
        let mut ordered = None;
        loop {
            let rec = self.client.contract(id).await?.context("the contract disappeared")?;
            if rec.commands >= n && ordered.is_none() {
                ordered = Some(Instant::now());
            }
            if rec.reported >= n {
                let now = Instant::now();
                return Ok((now, ordered.unwrap_or(now)));
            }
            if Instant::now() > deadline {
                bail!("only {} of {n} commands were reported within {timeout:?}", rec.reported);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `umbra bench commands`.
pub(crate) async fn commands(wasm: bool, count: usize, senders: usize, workers: usize, json: bool) -> Result<()> {
    if workers == 0 || senders == 0 || count == 0 {
        bail!("--workers, --senders and --commands must be positive");
    }
    let net = Net::start(workers, None).await?;
    net.wait_cluster(workers).await?;
    let id = net.deploy(wasm).await?;
    let http = HttpClientBuilder::default()
        .request_timeout(Duration::from_secs(60))
        .max_request_size(64 * 1024 * 1024)
        .build(&net.url)?;

    // Fund the senders.
    let keys: Vec<Keypair> = (0..senders).map(|_| Keypair::generate()).collect();
    let mut nonce = net.client.next_nonce(&net.funder.address()).await?;
    let funding: Vec<SignedTransaction> = keys
        .iter()
        .map(|k| {
            let t = net.sign(&net.funder, nonce, Call::Transfer { to: k.address(), amount: 10_000 * UNIT });
            nonce += 1;
            t
        })
        .collect();
    for chunk in funding.chunks(250) {
        for r in submit_batch(&http, chunk).await? {
            if let Err(code) = r {
                bail!("a funding transfer was refused with code {code}");
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while net.client.next_nonce(&net.funder.address()).await? < nonce {
        if Instant::now() > deadline {
            bail!("the funding transfers were not finalized within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Seal and sign every command up front (round r holds every sender's command of nonce r).
    let record = net.client.contract(&id).await?.context("the contract")?;
    let gas = if wasm { 2_000_000 } else { 20_000_000 };
    let rounds = count.div_ceil(senders);
    let mut planned: Vec<Vec<SignedTransaction>> = Vec::with_capacity(rounds);
    let mut made = 0usize;
    for r in 0..rounds {
        let mut round = Vec::new();
        for k in &keys {
            if made == count {
                break;
            }
            let (sealed, key_epoch) =
                umbra_sdk::seal_command(&net.chain_id, &record, &k.address(), "increment", b"{}")?;
            let call = Call::ContractCommand { contract: id, key_epoch, gas_limit: gas, sealed };
            round.push(net.sign(k, r as u64, call));
            made += 1;
        }
        planned.push(round);
    }
    eprintln!("sending {count} sealed commands from {senders} senders ...");
    let t0 = Instant::now();
    for round in planned {
        let mut pending = round;
        while !pending.is_empty() {
            let results = submit_batch(&http, &pending).await?;
            let refused: Vec<SignedTransaction> =
                results.into_iter().zip(pending).filter_map(|(r, tx)| r.is_err().then_some(tx)).collect();
            if !refused.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            pending = refused;
        }
    }
    let submitted = t0.elapsed();
    let (done, ordered) = net.wait_reported(&id, count as u64, Duration::from_secs(600)).await?;
    let total = done.duration_since(t0).as_secs_f64();
    let ordered = ordered.duration_since(t0).as_secs_f64();
    let rate = count as f64 / total.max(1e-9);
    let rec = net.client.contract(&id).await?.context("the contract")?;
    let last = net.client.contract_command(&id, count as u64 - 1).await?.and_then(|c| c.result);
    let ok = last.as_ref().is_some_and(|r| r.status == umbra_types::contracts::CommandStatus::Ok);
    if !ok {
        bail!("the last command did not succeed: {last:?}");
    }
    let lang = if wasm { "wasm (WAT)" } else { "JavaScript" };
    let target = if wasm { 2_000 } else { 1_000 };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "engine": if wasm { "wasm" } else { "js" },
                "commands": count,
                "senders": senders,
                "workers": workers,
                "seconds": total,
                "submit_seconds": submitted.as_secs_f64(),
                "ordered_seconds": ordered,
                "commands_per_sec": rate,
                "incidents": rec.incidents,
            })
        );
    } else {
        println!(
            "contract commands ({lang} counter, {workers}-worker cluster): {count} in {total:.2} s = {rate:.0} commands/s \
             (target >= {target})"
        );
        println!(
            "  submitted in {:.2} s, all ordered on chain after {ordered:.2} s; every command run by each member and \
             its report landed; {} incidents",
            submitted.as_secs_f64(),
            rec.incidents
        );
    }
    Ok(())
}

/// One sealed query over a fresh loopback connection: sealed to `worker_x25519`, answered sealed to an
/// ephemeral key and signed by `worker_id`. Returns the answer.
fn query_once(addr: &str, chain_id: &str, worker: (&[u8; 32], &[u8; 32]), id: &ContractId) -> Result<QueryAnswer> {
    let (worker_id, worker_x25519) = worker;
    let reply_secret: [u8; 32] = rand::random();
    let q = QueryPlain {
        contract: *id,
        method: "get".into(),
        args: vec![],
        reply_to: x25519_public(&reply_secret),
        nonce: rand::random(),
        caller: None,
    };
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(rand::random());
    let envelope = seal_envelope(worker_x25519, LABEL_QUERY, chain_id.as_bytes(), &encode(&q), &mut rng)?;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let head = format!(
        "POST /query HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        envelope.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(&envelope)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("a malformed HTTP answer")?;
    if !raw.starts_with(b"HTTP/1.1 200") {
        bail!("the worker refused the query: {}", String::from_utf8_lossy(&raw));
    }
    let reply: QueryReply = decode(&raw[split + 4..], 1 << 24)?;
    let request_hash = sha256(&[&envelope]);
    umbra_crypto::verify(&Address(*worker_id), &query_reply_bytes(&request_hash, &reply.sealed), &reply.signature)
        .context("the answer's signature does not verify")?;
    let plain = open_envelope(&reply_secret, LABEL_QUERY_ANSWER, &request_hash.0, &reply.sealed)?;
    Ok(decode(&plain, 1 << 24)?)
}

/// `umbra bench query`.
pub(crate) async fn query(queries: usize, cold: usize, json: bool) -> Result<()> {
    let cold_ms = js_cold_start(cold.max(1))?;
    let port = free_port_block(20_000, 2)?;
    let net = Net::start(1, Some(port)).await?;
    net.wait_cluster(1).await?;
    let id = net.deploy(false).await?;
    let record = net.client.contract(&id).await?.context("the contract")?;
    let (sealed, key_epoch) =
        umbra_sdk::seal_command(&net.chain_id, &record, &net.funder.address(), "increment", b"{}")?;
    net.send(Call::ContractCommand { contract: id, key_epoch, gas_limit: 20_000_000, sealed }).await?;
    net.wait_reported(&id, 1, Duration::from_secs(60)).await?;
    // Worker 1 is the cluster member (worker 0 the gatekeeper). Check it on chain once, as the SDK does.
    let url = format!("http://127.0.0.1:{}", port + 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let last = match umbra_sdk::query(&net.client, &url, &id, "get", b"", None).await {
            Ok(q) if q.result == Ok(b"1".to_vec()) => break q,
            Ok(q) => format!("it answered {:?}", q.result.map(|o| String::from_utf8_lossy(&o).into_owned())),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!("the worker at {url} did not answer the benchmark contract's query within 60 s: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (worker, _) = net.client.worker(&first.worker).await?;
    let worker = worker.context("the worker's record")?;
    let addr = format!("127.0.0.1:{}", port + 1);
    let (chain_id, wid, wx) = (net.chain_id.clone(), worker.id, worker.x25519);
    let times = tokio::task::spawn_blocking(move || -> Result<Vec<f64>> {
        for _ in 0..queries / 10 {
            query_once(&addr, &chain_id, (&wid, &wx), &id)?;
        }
        let mut times = Vec::with_capacity(queries);
        for _ in 0..queries {
            let t = Instant::now();
            let a = query_once(&addr, &chain_id, (&wid, &wx), &id)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if a.result != Ok(b"1".to_vec()) {
                bail!("a query answered {:?}", a.result);
            }
        }
        Ok(times)
    })
    .await??;
    let mut sorted = times;
    sorted.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99) = (percentile(&sorted, 0.5), percentile(&sorted, 0.99));
    if json {
        println!(
            "{}",
            serde_json::json!({
                "queries": sorted.len(),
                "p50_ms": p50,
                "p99_ms": p99,
                "js_cold_start_p50_ms": cold_ms.0,
                "js_cold_start_p99_ms": cold_ms.1,
            })
        );
    } else {
        println!(
            "encrypted query round trip (loopback, new connection each): p50 {p50:.3} ms, p99 {p99:.3} ms over {} \
             queries (targets p50 <= 1 ms, p99 <= 5 ms)",
            sorted.len()
        );
        println!(
            "JavaScript cold start (fresh instance, module evaluated, method run): p50 {:.3} ms, p99 {:.3} ms over \
             {cold} (target p50 <= 2 ms)",
            cold_ms.0, cold_ms.1
        );
    }
    Ok(())
}

/// A host for the cold-start measurement: empty storage, fixed keys.
struct ColdHost;

impl umbra_engine::Host for ColdHost {
    fn storage_get(&self, _: &[u8; 32], _: &[u8]) -> Result<Option<Vec<u8>>, umbra_engine::HostError> {
        Ok(None)
    }
    fn derive_key(&self, _: &[u8; 32], salt: &[u8]) -> Result<[u8; 32], umbra_engine::HostError> {
        Ok(umbra_engine::derive_contract_key(&[1; 32], salt))
    }
    fn sign(&self, _: &[u8; 32], msg: &[u8]) -> Result<[u8; 64], umbra_engine::HostError> {
        Ok(umbra_engine::contract_signer(&[1; 32]).sign(msg))
    }
    fn call(&self, i: &umbra_engine::Invocation) -> Result<umbra_engine::CallOutput, umbra_engine::Failure> {
        Err(umbra_engine::Failure {
            error: umbra_engine::EngineError::Host("no calls here".into()),
            gas_used: i.depth.into(),
        })
    }
}

/// p50 and p99 in ms of running the JS counter's `increment` on a fresh QuickJS instance each time (what every
/// command gets; the code is compiled once, as the worker's cache does).
fn js_cold_start(n: usize) -> Result<(f64, f64)> {
    let limits = umbra_engine::Limits::default();
    let stack = limits.thread_stack_bytes();
    let handle = std::thread::Builder::new().stack_size(stack).spawn(move || -> Result<Vec<f64>> {
        let engine = umbra_engine::Engine::new(limits)?;
        let contract = engine.load(&umbra_engine::Code::JavaScript(COUNTER_JS.as_bytes().to_vec()))?;
        let host: Rc<dyn umbra_engine::Host> = Rc::new(ColdHost);
        let mut times = Vec::with_capacity(n);
        for i in 0..n + n / 10 {
            let inv = umbra_engine::Invocation {
                contract: [7; 32],
                mode: umbra_engine::Mode::Command,
                method: "increment".into(),
                args: vec![],
                caller: Some([2; 32]),
                height: 1,
                time_ms: 0,
                seed: [i as u8; 32],
                budget: 100_000_000,
                depth: 0,
            };
            let t = Instant::now();
            engine.invoke(&contract, &inv, &host).map_err(|f| anyhow::anyhow!("{f}"))?;
            if i >= n / 10 {
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        Ok(times)
    })?;
    let mut times = handle.join().map_err(|_| anyhow::anyhow!("the cold-start thread panicked"))??;
    times.sort_by(|a, b| a.total_cmp(b));
    Ok((percentile(&times, 0.5), percentile(&times, 0.99)))
}
