//! Acknowledgement latency under query load (issue 14): queries must not
//! delay the acks of trainers writing at the same time.
//!
//! Run: `cargo bench -p steplake-cli --bench ack_latency`
//! Target: p99 under load ≤ 50 ms on the project's 2-core machine.
//!
//! It starts the release server and loads 2,000,000 points (one long series
//! of 1,000,000 steps and 1,000 series of 1,000 steps). A probe writer then
//! sends one batch of 10 points every 10 ms, each on its own write stream
//! (so a latency is the whole round trip: open, send, durable, acked), for
//! STEPLAKE_BENCH_SECS seconds (default 10): first alone, then while 32
//! clients run heavy queries back to back over Flight SQL (half a moving
//! average over the long series, half a GROUP BY over every point). It
//! prints p50, p99 and the maximum of both phases.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use steplake_client::v1::{CreateRunRequest, ScalarBatch};
use steplake_client::Client;

#[path = "common/server.rs"]
#[allow(dead_code)] // its query timer serves the query benchmarks
mod server;
use server::{start_server, stop_server};

const HEAVY: [&str; 2] = [
    "SELECT max(a) FROM (SELECT avg(value) OVER (ORDER BY step ROWS BETWEEN 100 PRECEDING AND CURRENT ROW) AS a \
     FROM scalars WHERE run_id = 'load' AND name = 'long')",
    "SELECT name, avg(value) AS mean, max(step) AS last FROM scalars GROUP BY name",
];

fn batch(name: &str, steps: std::ops::Range<i64>) -> ScalarBatch {
    let n = (steps.end - steps.start) as usize;
    ScalarBatch {
        names: vec![name.to_string()],
        name_index: vec![0; n],
        values: steps.clone().map(|s| (s as f64 * 0.001).sin()).collect(),
        steps: steps.collect(),
        wall_times_us: Vec::new(),
    }
}

async fn load(client: &Client) {
    let mut writer = client.writer("load").await.expect("writer");
    for start in (0..1_000_000).step_by(10_000) {
        writer
            .send(batch("long", start..start + 10_000))
            .await
            .expect("send");
    }
    for series in 0..1_000 {
        writer
            .send(batch(&format!("s{series}"), 0..1_000))
            .await
            .expect("send");
    }
    writer.finish().await.expect("load acknowledged");
}

/// Probes every 10 ms for `seconds`; returns the ack latencies, sorted.
async fn probe(client: &Client, sequence: &AtomicU64, seconds: u64) -> Vec<Duration> {
    let mut latencies = Vec::new();
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while Instant::now() < until {
        tick.tick().await;
        let seq = sequence.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut writer = client
            .writer_with_id("probe", "probe-writer", seq)
            .await
            .expect("probe stream");
        let step = seq as i64 * 10;
        writer
            .send_with_sequence(seq, batch("probe", step..step + 10))
            .await
            .expect("probe send");
        writer.finish().await.expect("probe ack");
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

fn report(phase: &str, latencies: &[Duration]) {
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "{phase}: {} acks, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = std::env::var("STEPLAKE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start_server(dir.path());
    let client = Client::connect(&server.url).await.expect("connect");
    for run in ["load", "probe"] {
        client
            .create_run(CreateRunRequest {
                run_id: run.into(),
                ..Default::default()
            })
            .await
            .expect("create run");
    }
    load(&client).await;
    let sequence = AtomicU64::new(1);
    let idle = probe(&client, &sequence, seconds).await;

    let stop = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicU64::new(0));
    let mut load_tasks = Vec::new();
    for i in 0..32 {
        let (url, stop, queries) = (server.url.clone(), stop.clone(), queries.clone());
        load_tasks.push(tokio::spawn(async move {
            let client = Client::connect(&url).await.expect("query client");
            while !stop.load(Ordering::Relaxed) {
                client.sql(HEAVY[i % 2]).await.expect("heavy query");
                queries.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Let the queries get going first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded = probe(&client, &sequence, seconds).await;
    stop.store(true, Ordering::Relaxed);
    for task in load_tasks {
        let _ = task.await;
    }
    println!("ack latency of a probe writer (10 points every 10 ms, one write stream each):");
    report("  no query load", &idle);
    report(
        &format!(
            "  32 clients running heavy queries ({} queries finished)",
            queries.load(Ordering::Relaxed)
        ),
        &loaded,
    );
    stop_server(server);
}
