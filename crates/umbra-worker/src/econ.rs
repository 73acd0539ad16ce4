//! Compute economics on the worker side: the benchmark the chain weighs a worker's rewards by, and the
//! answers to heartbeat challenges.
//!
//! # The benchmark workload (`umbra/bench/v1`)
//! A fixed 1 MiB buffer (byte `i` is `(i * 31 + 7) % 251`) is hashed [`BENCH_ROUNDS`] times with
//! SHA-256, each round over the previous round's digest followed by the whole buffer, so the rounds
//! can neither be skipped nor run in parallel. The score is the number of MiB hashed per second,
//! `BENCH_ROUNDS * 1_000_000 / elapsed_microseconds`, rounded down and at least 1 (the chain refuses 0
//! and anything above `params.economics.max_score`).
//!
//! It runs inside the enclave once, on the first start in a data directory, and the score is sealed
//! (`worker-bench.sealed`, label [`BENCH_LABEL`]) so that later starts, and replays of a batch after a
//! crash, report the same number: the handling of chain messages stays deterministic. A new machine
//! (or a deleted file) measures again.
//!
//! # What the worker sends
//! - When it becomes registered (a `Registered` message while it was not registered): an
//!   `EgressPayload::Benchmark { score }`. The chain records it while the worker has no session and
//!   refuses it during one; no chain message asks for a new benchmark, so this is the only report.
//! - On a `MessageBody::HeartbeatChallenge` addressed to it: `EgressPayload::Heartbeat { challenge,
//!   score }` with its latest **instant score**.
//!
//! # The instant score
//! The host asks the enclave to re-run a short version of the same workload ([`INSTANT_ROUNDS`] rounds)
//! whenever it is caught up with the chain, at most every 10 seconds ([`crate::Enclave::measure_instant`]);
//! the instant score is `min(measured, benchmark)` (at least 1), so an honest worker never reports more
//! than its recorded benchmark and the chain's cap (`heartbeat_cap_bps` of it, at least 100%) never
//! refuses it, while a slowed-down machine reports less. Until the first measurement it is the benchmark.
//!
//! Handling chain messages stays deterministic for a given instant score, and a heartbeat's bytes are
//! sealed in the outbox with the batch before they are sent: a restart re-sends the same signed bytes for
//! the same sequence number instead of measuring again, so the worker never signs two different
//! heartbeats with one sequence number (which would be slashable equivocation).

use crate::enclave::{Enclave, EnclaveError, Platform};
use borsh::{BorshDeserialize, BorshSerialize};
use std::path::Path;
use tracing::info;
use umbra_types::registry::EgressPayload;
use umbra_types::{Hash, decode, encode, sha256};

/// Rounds of the benchmark workload (1 MiB each).
pub const BENCH_ROUNDS: u64 = 64;
/// Rounds of the short workload behind the instant score.
pub const INSTANT_ROUNDS: u64 = 8;
/// Bytes of the benchmark buffer.
pub const BENCH_BUFFER_BYTES: usize = 1 << 20;
/// Sealing label of the benchmark file.
pub const BENCH_LABEL: &str = "umbra-worker/bench/v1";
/// File name of the sealed benchmark in the data directory.
pub const BENCH_FILE: &str = "worker-bench.sealed";

/// What the benchmark file holds.
#[derive(BorshSerialize, BorshDeserialize)]
struct SealedBench {
    /// Layout version (1).
    version: u8,
    /// The measured score.
    score: u64,
}

/// The fixed 1 MiB input of the workload.
fn bench_buffer() -> Vec<u8> {
    (0..BENCH_BUFFER_BYTES).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

/// Runs the workload `rounds` times; returns the final digest (so the work cannot be optimized away).
pub fn run_workload(rounds: u64) -> Hash {
    let buffer = bench_buffer();
    let mut digest = Hash::ZERO;
    for _ in 0..rounds {
        digest = sha256(&[&digest.0, &buffer]);
    }
    digest
}

/// The score of `rounds` MiB hashed in `elapsed_micros`: MiB per second, rounded down, at least 1.
pub fn score_of(rounds: u64, elapsed_micros: u128) -> u64 {
    let per_second = u128::from(rounds).saturating_mul(1_000_000) / elapsed_micros.max(1);
    u64::try_from(per_second).unwrap_or(u64::MAX).max(1)
}

/// Measures the workload now.
pub fn measure() -> u64 {
    let start = std::time::Instant::now();
    let digest = run_workload(BENCH_ROUNDS);
    let score = score_of(BENCH_ROUNDS, start.elapsed().as_micros());
    info!(target: "worker.econ", score, rounds = BENCH_ROUNDS, %digest, "benchmark measured");
    score
}

/// Measures the short workload now: the instant score, `min(measured, benchmark)`, at least 1.
pub fn measure_instant(benchmark: u64) -> u64 {
    let start = std::time::Instant::now();
    let digest = run_workload(INSTANT_ROUNDS);
    let measured = score_of(INSTANT_ROUNDS, start.elapsed().as_micros());
    tracing::debug!(target: "worker.econ", measured, benchmark, %digest, "instant score measured");
    measured.min(benchmark).max(1)
}

/// The sealed score in `dir`, or a fresh measurement sealed there.
pub(crate) fn load_or_measure(platform: &dyn Platform, dir: &Path) -> Result<u64, EnclaveError> {
    let path = dir.join(BENCH_FILE);
    let io = |source| EnclaveError::Io { path: path.clone(), source };
    if path.exists() {
        let sealed = std::fs::read(&path).map_err(io)?;
        let foreign = |reason: String| EnclaveError::Foreign { path: path.clone(), reason };
        let plain = platform.unseal(BENCH_LABEL, &sealed).map_err(|e| foreign(e.to_string()))?;
        let bench = decode::<SealedBench>(&plain, 64).map_err(|e| foreign(e.to_string()))?;
        return Ok(bench.score);
    }
    let score = measure();
    let sealed = platform
        .seal(BENCH_LABEL, &encode(&SealedBench { version: 1, score }))
        .map_err(|e| EnclaveError::Platform(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &sealed).map_err(|source| EnclaveError::Io { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(score)
}

/// The benchmark report.
pub(crate) fn benchmark(score: u64) -> EgressPayload {
    EgressPayload::Benchmark { score }
}

/// The answer to `challenge`.
pub(crate) fn heartbeat(score: u64, challenge: Hash) -> EgressPayload {
    EgressPayload::Heartbeat { challenge, score }
}

impl Enclave {
    /// The benchmark score this worker reports (measured on its first start, then sealed).
    pub fn benchmark_score(&self) -> u64 {
        self.benchmark
    }

    /// The instant score heartbeats carry (the benchmark until first measured).
    pub fn instant_score(&self) -> u64 {
        self.instant
    }

    /// Re-runs the short workload and keeps the result as the instant score (see the module notes).
    pub fn measure_instant(&mut self) -> u64 {
        self.instant = measure_instant(self.benchmark);
        self.instant
    }
}
