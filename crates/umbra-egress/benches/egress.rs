//! Egress costs: building a client, a local HTTP and HTTPS fetch (policy checks, caps, receipt), and receipt
//! batches with proofs.
//!
//! `cargo bench -p umbra-egress --profile dev` (timing loops; dependencies are optimized in the dev profile).
//! Measured on the shared 2-core machine while other builds ran (workspace crates unoptimized in this profile):
//!
//! ```text
//! Client::new (bundled roots, two clients)   ~1.5 ms
//! fetch http 127.0.0.1 (new connection each) ~630 us
//! fetch https 127.0.0.1 (full TLS handshake) ~1.0 ms
//! batch of 1000 receipts (leaves + root)     ~8.3 ms
//! proof + verify of one receipt in 1000      ~5 ms (a proof re-hashes every leaf of the batch)
//! ```

use std::time::Instant;

use umbra_egress::testing::{Reply, TestCert, TestServer};
use umbra_egress::{Client, Policy, RateCap, Receipt, ReceiptLog, Request, SpendCap, verify_receipt};

fn per_op(name: &str, n: u32, f: impl FnMut()) {
    let mut f = f;
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    let each = start.elapsed() / n;
    println!("{name:<44} {:>10.1} us/op  ({n} ops)", each.as_secs_f64() * 1e6);
}

fn main() {
    let policy = Policy {
        allow_hosts: vec!["127.0.0.1".into()],
        allow_http: true,
        allow_private: true,
        rate: RateCap { max_requests: u32::MAX, window_ms: 1 },
        spend: SpendCap { budget: u64::MAX, window_ms: 1, cost_per_request: 0, cost_per_kib: 0 },
        ..Policy::default()
    };
    per_op("Client::new (bundled roots, two clients)", 20, || drop(Client::new().expect("client")));

    let http = TestServer::http(|_| Reply::text(200, "ok")).expect("server");
    let client = Client::new().expect("client");
    per_op("fetch http 127.0.0.1 (new connection each)", 300, || {
        client.fetch([1; 32], &policy, Request::get(http.url("/"))).expect("fetch");
    });

    let cert = TestCert::generate().expect("cert");
    let https = TestServer::https(&cert, |_| Reply::text(200, "ok")).expect("server");
    let client = Client::with_extra_roots(std::slice::from_ref(&cert.ca_der)).expect("client");
    per_op("fetch https 127.0.0.1 (full TLS handshake)", 100, || {
        client.fetch([1; 32], &policy, Request::get(https.url("/"))).expect("fetch");
    });

    let (_, sample) = client.fetch([1; 32], &policy, Request::get(https.url("/"))).expect("fetch");
    let receipts: Vec<Receipt> = (0..1000u64).map(|i| Receipt { time_ms: i, ..sample.clone() }).collect();
    per_op("batch of 1000 receipts (leaves + root)", 20, || {
        let mut log = ReceiptLog::new();
        for r in &receipts {
            log.push(r.clone());
        }
        log.batch(&[1; 32]).expect("batch");
    });
    let mut log = ReceiptLog::new();
    for r in &receipts {
        log.push(r.clone());
    }
    let batch = log.batch(&[1; 32]).expect("batch");
    per_op("proof + verify of one receipt in 1000", 100, || {
        let p = batch.proof(500).expect("proof");
        assert!(verify_receipt(&batch.root, &batch.receipts[500], &p));
    });
}
