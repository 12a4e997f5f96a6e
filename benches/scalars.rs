//! Scalar benchmark (issue "Foundation"): ingest rate, query latency, bytes on disk.
//!
//! Run: `cargo bench -p steplake-cli --bench scalars`
//! Scale with STEPLAKE_BENCH_SERIES (default 1000) and STEPLAKE_BENCH_STEPS
//! (default 100000): 100M points by default. Set STEPLAKE_BENCH_KEEP=DIR to
//! write the data into DIR and keep it afterwards (for profiling queries with
//! `steplake sql --data-dir DIR`).
//!
//! It starts the real `steplake serve` (release build) on a loopback port with
//! the default fsync policy (batch), streams pre-generated batches through the
//! Rust client, stops the server with SIGTERM (which flushes the buffer to
//! Parquet), restarts it, and times queries through Flight SQL. Values are
//! noisy decaying curves rounded to float32 precision, like real losses.

use std::path::Path;
use std::time::Instant;

use steplake_client::v1::ScalarBatch;
use steplake_client::Client;

#[path = "common/server.rs"]
mod server;
use server::{create_bench_run, start_server, stop_server, time_query};

const RUN: &str = "bench";
/// Steps per batch; a batch holds steps × series points.
const STEPS_PER_BATCH: usize = 50;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Cheap deterministic noise in [-1, 1).
fn noise(seed: &mut u64) -> f64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    (*seed >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

fn generate(series: usize, steps: usize) -> Vec<ScalarBatch> {
    let names: Vec<String> = (0..series)
        .map(|i| format!("layer{:02}/metric{:04}", i % 24, i))
        .collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut batches = Vec::new();
    for first in (0..steps).step_by(STEPS_PER_BATCH) {
        let last = (first + STEPS_PER_BATCH).min(steps);
        let n = (last - first) * series;
        let mut b = ScalarBatch {
            names: names.clone(),
            name_index: Vec::with_capacity(n),
            steps: Vec::with_capacity(n),
            values: Vec::with_capacity(n),
            wall_times_us: Vec::new(),
        };
        for step in first..last {
            for s in 0..series {
                let scale = 1.0 + (s % 7) as f64;
                let curve = scale * (-(step as f64) / (20_000.0 + 100.0 * s as f64)).exp() + 0.1;
                let v = curve * (1.0 + 0.05 * noise(&mut seed));
                b.name_index.push(s as u32);
                b.steps.push(step as i64);
                b.values.push(v as f32 as f64);
            }
        }
        batches.push(b);
    }
    batches
}

fn dir_bytes(dir: &Path, extension: &str) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == extension))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let series = env_usize("STEPLAKE_BENCH_SERIES", 1000);
    let steps = env_usize("STEPLAKE_BENCH_STEPS", 100_000);
    let points = (series * steps) as u64;
    let temp = tempfile::tempdir().expect("temp dir");
    let kept = std::env::var_os("STEPLAKE_BENCH_KEEP").map(std::path::PathBuf::from);
    let dir = kept.as_deref().unwrap_or(temp.path());

    eprintln!("generating {series} series × {steps} steps = {points} points ...");
    let batches = generate(series, steps);

    let server = start_server(dir);
    let client = Client::connect(&server.url).await.expect("connect");
    create_bench_run(&client, RUN).await;
    let started = Instant::now();
    let mut writer = client.writer(RUN).await.expect("writer");
    for batch in batches {
        writer.send(batch).await.expect("send");
    }
    let summary = writer.finish().await.expect("acks");
    let ingest = started.elapsed();
    assert_eq!(summary.points, points);
    let stop_started = Instant::now();
    stop_server(server);
    let final_flush = stop_started.elapsed();

    let parquet_bytes = dir_bytes(&dir.join("data"), "parquet");
    let server = start_server(dir);
    let client = Client::connect(&server.url).await.expect("connect");
    let name = format!("layer{:02}/metric{:04}", 42 % 24, 42);
    let one_series = format!(
        "SELECT step, value FROM scalars WHERE run_id = '{RUN}' AND name = '{name}' ORDER BY step"
    );
    let lo = steps / 2;
    let hi = lo + steps / 100 - 1;
    let slice = format!("SELECT name, step, value FROM scalars WHERE step BETWEEN {lo} AND {hi}");
    let (t_series, n_series) = time_query(&client, &one_series, 7).await;
    let (t_slice, n_slice) = time_query(&client, &slice, 3).await;
    let (t_count, _) = time_query(&client, "SELECT count(*) FROM scalars", 3).await;
    let emergence = "SELECT name, first_sustained(step, value < 0.5) FROM scalars GROUP BY name";
    let (t_emergence, n_emergence) = time_query(&client, emergence, 3).await;
    // The cheapest aggregate that reads the same columns and groups the same
    // way: the floor that scan and GROUP BY set for first_sustained.
    let floor = "SELECT name, max(step) FILTER (WHERE NOT value < 0.5) FROM scalars GROUP BY name";
    let (t_floor, _) = time_query(&client, floor, 3).await;
    stop_server(server);

    let mpts = points as f64 / ingest.as_secs_f64() / 1e6;
    println!(
        "steplake scalar benchmark: {series} series x {steps} steps = {points} points, fsync=batch"
    );
    println!(
        "ingest (Rust client, loopback, until last ack): {:.2} s = {mpts:.2} M points/s",
        ingest.as_secs_f64()
    );
    println!(
        "final flush at shutdown: {:.2} s",
        final_flush.as_secs_f64()
    );
    println!(
        "full history of one series ({n_series} points): {:.1} ms (median of 7)",
        t_series.as_secs_f64() * 1e3
    );
    println!(
        "1% step-range slice across all series ({n_slice} points): {:.1} ms (median of 3)",
        t_slice.as_secs_f64() * 1e3
    );
    println!(
        "count(*) over all points: {:.1} ms (median of 3)",
        t_count.as_secs_f64() * 1e3
    );
    println!(
        "first_sustained(step, value < 0.5) over all {points} points, {n_emergence} series: {:.1} ms (median of 3)",
        t_emergence.as_secs_f64() * 1e3
    );
    println!(
        "  same scan and GROUP BY with max(step) FILTER (WHERE NOT value < 0.5): {:.1} ms (median of 3)",
        t_floor.as_secs_f64() * 1e3
    );
    println!(
        "bytes on disk per point after flush: {:.2} ({} bytes of Parquet)",
        parquet_bytes as f64 / points as f64,
        parquet_bytes
    );
}
