//! `umbra bench`: measured performance of a running (or freshly started) network.
//!
//! `transfers` has two phases. *Latency*: a light, steady load (default 100 transfers/s); each
//! transfer's time from submission to the finalized head that includes it (seen over a WebSocket head
//! subscription) gives p50/p99 finality latency. *Throughput*: many senders submit JSON-RPC batches as
//! fast as the node admits them (backing off while the mempool is full) for `--duration`; the rate is
//! every admitted transfer divided by the time until the last one was finalized, so nothing left
//! queued counts.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::params::BatchRequestBuilder;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use umbra_crypto::{Keypair, sign_with_min_fee};
use umbra_sdk::Client;
use umbra_types::{Address, Call, Hash, SignedTransaction, Transaction, UNIT};

/// `umbra bench ...`
#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    what: BenchCmd,
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// Sustained finalized transfers per second and finality latency.
    Transfers(TransferBench),
    /// Block finality: propose-to-finalize latency p50/p99 and blocks/s under a light load.
    Finality(FinalityBench),
    /// DCAP quote verifications per second per core.
    Attest(crate::attest::AttestBenchArgs),
    /// Worker catch-up: a fresh worker verifies and applies a long chain from genesis (blocks/s).
    Sync(SyncBench),
    /// Agents: cold start p50/p99, warm gateway round trip p50/p99, requests/s of a trivial agent.
    Agents(crate::bench_agents::AgentBench),
    /// Contract commands per second through the chain to execution by a cluster (a counter in JS, or WAT).
    Commands(CommandsBench),
    /// Encrypted contract query round trip p50/p99 against a worker on loopback, and JS cold start.
    Query(QueryBench),
    /// A deterministic multi-year simulation of compute economics on the real state machine.
    Economics(crate::sim::EconSimArgs),
}

#[derive(Args, Debug)]
struct CommandsBench {
    /// Benchmark the wasm (WAT) counter instead of the JavaScript one.
    #[arg(long)]
    wasm: bool,
    /// Commands to send.
    #[arg(long, default_value_t = 5_000)]
    commands: usize,
    /// Sender accounts (commands are spread over them).
    #[arg(long, default_value_t = 100)]
    senders: usize,
    /// Workers in the cluster that all run every command.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

#[derive(Args, Debug)]
struct QueryBench {
    /// Queries to time (after a warm-up of a tenth of them).
    #[arg(long, default_value_t = 2_000)]
    queries: usize,
    /// Fresh JavaScript instances to time for the cold start.
    #[arg(long, default_value_t = 200)]
    cold: usize,
}

#[derive(Args, Debug)]
struct SyncBench {
    /// Follow this running network (its JSON-RPC URL) instead of starting one.
    #[arg(long, value_name = "URL")]
    network: Option<String>,
    /// Blocks to catch up on (the benchmark network is grown to this height first).
    #[arg(long, default_value_t = 10_000)]
    blocks: u64,
    /// Blocks per `worker_sync` batch.
    #[arg(long, default_value_t = umbra_worker::host::DEFAULT_BATCH_BLOCKS)]
    batch: u32,
}

#[derive(Args, Debug)]
struct FinalityBench {
    /// Benchmark this running network (its JSON-RPC URL) instead of starting one.
    #[arg(long, value_name = "URL")]
    network: Option<String>,
    /// Funding key name when using --network (default: the keystore's default key).
    #[arg(long)]
    from: Option<String>,
    /// Validators of the network the benchmark starts.
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Seconds to measure.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Transfers per second of background load (0: idle chain).
    #[arg(long, default_value_t = 50)]
    rate: u64,
}

#[derive(Args, Debug)]
struct TransferBench {
    /// Benchmark this running network (its JSON-RPC URL) instead of starting one; needs a funded
    /// key (--from).
    #[arg(long, value_name = "URL")]
    network: Option<String>,
    /// Funding key name in the keystore when using --rpc (default: the keystore's default key).
    #[arg(long)]
    from: Option<String>,
    /// Validators of the network the benchmark starts.
    #[arg(long, default_value_t = 1)]
    validators: usize,
    /// Seconds of the throughput phase.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds of the light-load latency phase.
    #[arg(long, default_value_t = 10)]
    latency_duration: u64,
    /// Transfers per second during the latency phase.
    #[arg(long, default_value_t = 100)]
    latency_rate: u64,
    /// Sender accounts.
    #[arg(long, default_value_t = 256)]
    senders: usize,
    /// Transfers per JSON-RPC batch in the throughput phase.
    #[arg(long, default_value_t = 250)]
    batch: usize,
}

pub(crate) fn run(ctx: &crate::Ctx, args: BenchArgs) -> Result<()> {
    if let BenchCmd::Attest(a) = args.what {
        return crate::attest::run_bench(ctx, a);
    }
    if let BenchCmd::Agents(a) = args.what {
        return crate::bench_agents::run(a);
    }
    if let BenchCmd::Economics(a) = args.what {
        return crate::sim::run(ctx, a);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    match args.what {
        BenchCmd::Transfers(t) => rt.block_on(transfers(t, ctx.json, ctx.home.clone())),
        BenchCmd::Finality(f) => rt.block_on(finality(f, ctx.json, ctx.home.clone())),
        BenchCmd::Sync(s) => rt.block_on(sync(s, ctx.json)),
        BenchCmd::Commands(c) => {
            rt.block_on(crate::bench_contracts::commands(c.wasm, c.commands, c.senders, c.workers, ctx.json))
        }
        BenchCmd::Query(q) => rt.block_on(crate::bench_contracts::query(q.queries, q.cold, ctx.json)),
        BenchCmd::Attest(_) | BenchCmd::Agents(_) | BenchCmd::Economics(_) => Ok(()),
    }
}

/// A network the benchmark started; stopped on drop.
pub(crate) struct OwnNet {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for OwnNet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port_block(from: u16, n: u16) -> Result<u16> {
    // Below Linux's ephemeral range (32768..), where outgoing connections take their source ports.
    for base in (from..from.saturating_add(4_000)).step_by(97) {
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return Ok(base);
        }
    }
    bail!("no free ports for the benchmark network")
}

async fn start_network(validators: usize) -> Result<(OwnNet, Vec<String>, Keypair)> {
    start_network_with(validators, &[]).await
}

pub(crate) async fn start_network_with(validators: usize, extra: &[&str]) -> Result<(OwnNet, Vec<String>, Keypair)> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let rpc = free_port_block(24_000, validators as u16)?;
    let p2p = free_port_block(28_000, validators as u16)?;
    let exe = std::env::current_exe().context("cannot find the umbra executable")?;
    let home: PathBuf = dir.path().join("home");
    let child = Command::new(exe)
        .args(["dev", "--quiet", "--validators", &validators.to_string()])
        .args(if extra.contains(&"--workers") { &[][..] } else { &["--workers", "0"][..] })
        .args(extra)
        .arg("--home")
        .arg(dir.path().join("net"))
        .args(["--rpc-port", &rpc.to_string(), "--p2p-port", &p2p.to_string()])
        .env("UMBRA_HOME", &home)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start the benchmark network")?;
    let net = OwnNet { child, _dir: dir };
    let urls: Vec<String> = (0..validators).map(|i| format!("http://127.0.0.1:{}", rpc + i as u16)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    for u in &urls {
        let c = Client::with_timeout(u.clone(), Duration::from_secs(2))?;
        loop {
            if c.health().await.map(|h| h.height >= 1).unwrap_or(false) {
                break;
            }
            if Instant::now() > deadline {
                bail!("the benchmark network did not start within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok((net, urls, crate::dev::dev_account()))
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

struct Chain {
    chain_id: String,
    fees: umbra_types::FeeParams,
}

impl Chain {
    fn transfer(&self, from: &Keypair, nonce: u64, to: Address, amount: u128) -> SignedTransaction {
        let call = Call::Transfer { to, amount };
        let tx = Transaction { signer: from.address(), nonce, chain_id: self.chain_id.clone(), fee: 0, call };
        sign_with_min_fee(from, tx, &self.fees)
    }
}

pub(crate) async fn submit_batch(http: &HttpClient, txs: &[SignedTransaction]) -> Result<Vec<Result<Hash, i32>>> {
    let mut b = BatchRequestBuilder::new();
    for t in txs {
        b.insert(umbra_rpc::methods::TX_SUBMIT, jsonrpsee::rpc_params![hex::encode(t.to_bytes())])?;
    }
    let resp = http.batch_request::<Hash>(b).await?;
    Ok(resp.into_iter().map(|r| r.map_err(|e| e.code())).collect())
}

async fn wait_nonce(client: &Client, who: &Address, nonce: u64, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if client.account(who).await?.nonce >= nonce {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("transactions of {who} were not finalized within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The network to measure: the one at `network`, or a new one with `validators` validators.
async fn network(
    network: &Option<String>,
    from: &Option<String>,
    validators: usize,
    home: Option<PathBuf>,
) -> Result<(Option<OwnNet>, Vec<String>, Keypair)> {
    Ok(match network {
        Some(url) => {
            let store = match home {
                Some(h) => umbra_sdk::Keystore::in_home(&h),
                None => umbra_sdk::Keystore::default_location()?,
            };
            let key = match from {
                Some(n) => store.get(n)?,
                None => store.default_key()?.1,
            };
            (None, vec![url.clone()], key)
        }
        None => {
            eprintln!("starting a {validators}-validator network for the benchmark ...");
            let (n, u, k) = start_network(validators).await?;
            (Some(n), u, k)
        }
    })
}

async fn finality(args: FinalityBench, json: bool, home: Option<PathBuf>) -> Result<()> {
    let (_own, urls, funder) = network(&args.network, &args.from, args.validators, home).await?;
    let client = Client::new(urls[0].clone())?;
    let info = client.chain_info().await?;
    let chain = Chain { chain_id: info.chain_id.clone(), fees: info.fees.clone() };
    let http = HttpClientBuilder::default().request_timeout(Duration::from_secs(30)).build(&urls[0])?;
    let mut heads = client.subscribe_heads().await.context("cannot subscribe to finalized heads")?;
    // Background load: one funded key sending small transfers at `rate`.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, http, client) = (stop.clone(), http.clone(), client.clone());
        let rate = args.rate;
        tokio::spawn(async move {
            if rate == 0 {
                return Ok::<u64, anyhow::Error>(0);
            }
            let mut nonce = client.next_nonce(&funder.address()).await?;
            let sink = Address::module("bench-sink");
            let interval = Duration::from_micros(1_000_000 / rate);
            let mut sent = 0;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let tx = chain.transfer(&funder, nonce, sink, 1);
                if submit_batch(&http, &[tx]).await?.pop().is_some_and(|r| r.is_ok()) {
                    nonce += 1;
                    sent += 1;
                }
                next += interval;
                tokio::time::sleep(next.saturating_duration_since(Instant::now())).await;
            }
            Ok(sent)
        })
    };
    let mut latencies = Vec::new();
    let start = Instant::now();
    let mut first: Option<u64> = None;
    let mut last = 0;
    while start.elapsed() < Duration::from_secs(args.duration) {
        let Ok(Some(head)) = tokio::time::timeout(Duration::from_secs(5), heads.next()).await else {
            bail!("no finalized head for 5 s");
        };
        let header = head?;
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
        // The proposer stamps the header when it proposes; the node notifies once it is finalized
        // and applied. Both clocks are this machine's.
        latencies.push(now_ms.saturating_sub(header.timestamp_ms) as f64);
        first.get_or_insert(header.height);
        last = header.height;
    }
    stop.store(true, Ordering::Relaxed);
    let sent = load.await??;
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let blocks = last.saturating_sub(first.unwrap_or(last));
    let report = serde_json::json!({
        "validators": urls.len(), "seconds": elapsed, "load_transfers_per_s": args.rate, "transfers_sent": sent,
        "blocks": blocks, "blocks_per_s": blocks as f64 / elapsed,
        "finality_ms_p50": percentile(&latencies, 0.5), "finality_ms_p99": percentile(&latencies, 0.99),
    });
    if json {
        println!("{report}");
    } else {
        println!("umbra bench finality ({} validator(s), {} transfers/s background load)", urls.len(), args.rate);
        println!(
            "  propose-to-finalize: p50 {:.1} ms, p99 {:.1} ms over {} blocks ({:.1} blocks/s)",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.len(),
            blocks as f64 / elapsed
        );
    }
    Ok(())
}

async fn transfers(args: TransferBench, json: bool, home: Option<PathBuf>) -> Result<()> {
    let (_own, urls, funder) = network(&args.network, &args.from, args.validators, home).await?;
    let client = Client::new(urls[0].clone())?;
    let info = client.chain_info().await?;
    let chain = Chain { chain_id: info.chain_id.clone(), fees: info.fees.clone() };
    let http = HttpClientBuilder::default()
        .request_timeout(Duration::from_secs(60))
        .max_request_size(64 * 1024 * 1024)
        .build(&urls[0])?;

    // Fund the senders.
    let senders: Vec<Keypair> = (0..args.senders).map(|_| Keypair::generate()).collect();
    let mut nonce = client.next_nonce(&funder.address()).await?;
    let funding: Vec<SignedTransaction> = senders
        .iter()
        .map(|s| {
            let t = chain.transfer(&funder, nonce, s.address(), 10_000 * UNIT);
            nonce += 1;
            t
        })
        .collect();
    for chunk in funding.chunks(args.batch.max(1)) {
        for r in submit_batch(&http, chunk).await? {
            if let Err(code) = r {
                bail!("funding transfer refused with code {code}");
            }
        }
    }
    wait_nonce(&client, &funder.address(), nonce, Duration::from_secs(120)).await?;
    eprintln!("funded {} senders", senders.len());

    // Phase 1: finality latency under light load.
    let mut nonces: Vec<u64> = vec![0; senders.len()];
    let mut heads = umbra_sdk::Client::new(urls[0].clone())?.subscribe_heads().await.ok();
    let mut latencies: Vec<f64> = Vec::new();
    let interval = Duration::from_micros(1_000_000 / args.latency_rate.max(1));
    let mut in_flight: BTreeMap<Hash, Instant> = BTreeMap::new();
    let phase_end = Instant::now() + Duration::from_secs(args.latency_duration);
    let mut next_send = Instant::now();
    let mut i = 0usize;
    let single = |tx: SignedTransaction| {
        let http = http.clone();
        async move { submit_batch(&http, &[tx]).await }
    };
    while Instant::now() < phase_end || !in_flight.is_empty() {
        if Instant::now() >= phase_end + Duration::from_secs(30) {
            bail!("{} transfers were not finalized 30 s after the latency phase", in_flight.len());
        }
        if Instant::now() < phase_end && Instant::now() >= next_send {
            let s = i % senders.len();
            let tx = chain.transfer(&senders[s], nonces[s], senders[(s + 1) % senders.len()].address(), 1);
            nonces[s] += 1;
            i += 1;
            let sent = Instant::now();
            match single(tx).await?.pop() {
                Some(Ok(h)) => {
                    in_flight.insert(h, sent);
                }
                other => bail!("latency-phase transfer refused: {other:?}"),
            }
            next_send += interval;
            continue;
        }
        // Wait for the next finalized head (or the next send), then check what is finalized.
        let wait = next_send.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let got_head = match heads.as_mut() {
            Some(h) => tokio::time::timeout(wait, h.next()).await.ok().flatten().is_some(),
            None => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                true
            }
        };
        if got_head && !in_flight.is_empty() {
            let now = Instant::now();
            let hashes: Vec<Hash> = in_flight.keys().copied().collect();
            for h in hashes {
                if let Ok(r) = client.tx(h).await
                    && r.status == umbra_rpc::TxStatus::Finalized
                    && let Some(sent) = in_flight.remove(&h)
                {
                    latencies.push(now.duration_since(sent).as_secs_f64() * 1000.0);
                }
            }
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));

    // Phase 2: sustained throughput.
    let start_height = client.head().await?.header.height;
    let stop = Arc::new(AtomicBool::new(false));
    let admitted = Arc::new(AtomicU64::new(0));
    let workers = 4usize;
    let per_worker = senders.len().div_ceil(workers);
    let mut tasks = Vec::new();
    let senders = Arc::new(senders);
    let chain = Arc::new(chain);
    let t0 = Instant::now();
    let batch_size = args.batch.max(1);
    for w in 0..workers {
        let (http, stop, admitted, senders, chain) =
            (http.clone(), stop.clone(), admitted.clone(), senders.clone(), chain.clone());
        let mine: Vec<usize> = (w * per_worker..((w + 1) * per_worker).min(senders.len())).collect();
        let mut my_nonces: Vec<u64> = mine.iter().map(|s| nonces[*s]).collect();
        tasks.push(tokio::spawn(async move {
            let mut last: Vec<u64> = my_nonces.clone();
            while !stop.load(Ordering::Relaxed) {
                let mut batch = Vec::with_capacity(mine.len());
                let mut owners = Vec::with_capacity(mine.len());
                'fill: loop {
                    for (k, s) in mine.iter().enumerate() {
                        if batch.len() >= batch_size {
                            break 'fill;
                        }
                        let to = senders[(s + 1) % senders.len()].address();
                        batch.push(chain.transfer(&senders[*s], my_nonces[k], to, 1));
                        owners.push(k);
                        my_nonces[k] += 1;
                    }
                    if mine.is_empty() {
                        break;
                    }
                }
                let Ok(results) = submit_batch(&http, &batch).await else { break };
                let mut full = false;
                for ((r, k), tx) in results.iter().zip(&owners).zip(&batch) {
                    match r {
                        Ok(_) => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                            last[*k] = last[*k].max(tx.tx.nonce + 1);
                        }
                        Err(_) => full = true,
                    }
                }
                // Re-sync nonces with what was admitted: a refused transfer leaves a gap behind it.
                for (k, n) in my_nonces.iter_mut().enumerate() {
                    *n = last[k];
                }
                if full {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            (mine, last)
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    stop.store(true, Ordering::Relaxed);
    let mut finals = Vec::new();
    for t in tasks {
        finals.push(t.await?);
    }
    let submitted_for = t0.elapsed();
    for (mine, last) in &finals {
        for (k, s) in mine.iter().enumerate() {
            wait_nonce(&client, &senders[*s].address(), last[k], Duration::from_secs(300)).await?;
        }
    }
    let total = t0.elapsed();
    let end_height = client.head().await?.header.height;
    let n = admitted.load(Ordering::Relaxed);
    let tps = n as f64 / total.as_secs_f64();
    let blocks = end_height - start_height;
    let report = serde_json::json!({
        "validators": urls.len(),
        "latency_phase": { "rate_per_s": args.latency_rate, "transfers": latencies.len(),
            "finality_ms_p50": percentile(&latencies, 0.5), "finality_ms_p99": percentile(&latencies, 0.99) },
        "throughput_phase": { "seconds_submitting": submitted_for.as_secs_f64(), "seconds_until_all_finalized": total.as_secs_f64(),
            "transfers_finalized": n, "transfers_per_s": tps, "blocks": blocks, "blocks_per_s": blocks as f64 / total.as_secs_f64() },
    });
    if json {
        println!("{report}");
    } else {
        println!("umbra bench transfers ({} validator(s), {} senders)", urls.len(), args.senders);
        println!(
            "  finality latency at {} transfers/s: p50 {:.1} ms, p99 {:.1} ms ({} transfers)",
            args.latency_rate,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.len()
        );
        println!(
            "  sustained: {n} transfers finalized in {:.1} s = {tps:.0} transfers/s ({blocks} blocks, {:.1} blocks/s)",
            total.as_secs_f64(),
            blocks as f64 / total.as_secs_f64()
        );
    }
    Ok(())
}

/// `umbra bench sync`: grows (or uses) a chain of `--blocks` blocks, then times a fresh dev worker catching
/// up from genesis through `worker_sync`, verifying every batch as a worker does.
async fn sync(args: SyncBench, json: bool) -> Result<()> {
    let (_net, url) = match &args.network {
        Some(u) => (None, u.clone()),
        None => {
            let (net, urls, _) = start_network_with(1, &["--empty-block-ms", "0"]).await?;
            (Some(net), urls[0].clone())
        }
    };
    let client = Client::with_timeout(url.clone(), Duration::from_secs(5))?;
    let grow_start = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let h = client.health().await.context("cannot reach the benchmark network")?.height;
        if h >= args.blocks {
            break;
        }
        if args.network.is_some() {
            bail!("the network at {url} is at height {h}, below --blocks {}", args.blocks);
        }
        if !json && last_print.elapsed() > Duration::from_secs(5) {
            eprintln!("growing the chain: height {h} of {} ({:.0} s)", args.blocks, grow_start.elapsed().as_secs_f64());
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let stats = umbra_worker::host::bench_sync(&url, dir.path(), args.batch, args.blocks)
        .await
        .context("the worker could not catch up")?;
    let secs = stats.total_micros as f64 / 1e6;
    let rate = stats.blocks as f64 / secs.max(1e-9);
    if json {
        println!("{}", serde_json::json!({ "stats": stats, "blocks_per_sec": rate }));
    } else {
        println!("worker catch-up: {} blocks in {secs:.2} s = {rate:.0} blocks/s (target >= 2,000)", stats.blocks);
        println!(
            "  {} batches of up to {}; node round trips {:.2} s, enclave verification and sealing {:.2} s",
            stats.batches,
            args.batch,
            stats.fetch_micros as f64 / 1e6,
            stats.enclave_micros as f64 / 1e6
        );
    }
    Ok(())
}
