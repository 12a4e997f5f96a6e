//! Object storage benchmark (issue "Beyond one disk"): the same queries on a
//! data directory and on a bucket, side by side.
//!
//! Run: `STEPLAKE_PYTHON=~/.cache/steplake/venv/bin/python cargo bench -p steplake-cli --bench object_store`
//! (the test environment of `scripts/test.sh` has moto, the S3 server).
//! Scale with STEPLAKE_BENCH_SERIES (default 200) and STEPLAKE_BENCH_STEPS
//! (default 20000).
//!
//! It starts an S3-compatible server (moto's server mode,
//! `tests/python/s3_server.py`) on loopback, writes the same points into one
//! `steplake serve` on a plain data directory and one with
//! `--object-store s3://…`, stops both (which flushes), restarts them, and
//! times through Flight SQL: one series, and a 1% step-range slice of every
//! series. Both servers answer the same; loopback S3 costs the HTTP round
//! trips of the footers and pages each query reads.

use std::path::Path;
use std::time::Instant;

use steplake_client::v1::ScalarBatch;
use steplake_client::Client;

#[path = "common/s3.rs"]
mod s3;
#[path = "common/server.rs"]
mod server;
use s3::S3Server;
use server::{create_bench_run, start_server_with, stop_server, time_query};

const RUN: &str = "bench";
const BUCKET: &str = "steplake-bench";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn generate(series: usize, steps: usize) -> Vec<ScalarBatch> {
    let names: Vec<String> = (0..series).map(|i| format!("metric{i:04}")).collect();
    let mut batches = Vec::new();
    for first in (0..steps).step_by(100) {
        let last = (first + 100).min(steps);
        let mut batch = ScalarBatch {
            names: names.clone(),
            ..Default::default()
        };
        for step in first..last {
            for i in 0..series {
                batch.name_index.push(i as u32);
                batch.steps.push(step as i64);
                batch
                    .values
                    .push(2.0 * ((step + 1) as f64).powf(-0.3) + (i as f64) * 1e-3);
            }
        }
        batches.push(batch);
    }
    batches
}

async fn load(dir: &Path, extra: &[&str], env: &[(String, String)], batches: &[ScalarBatch]) {
    let server = start_server_with(dir, extra, env);
    let client = Client::connect(&server.url).await.expect("connect");
    create_bench_run(&client, RUN).await;
    let mut writer = client.writer(RUN).await.expect("writer");
    for batch in batches {
        writer.send(batch.clone()).await.expect("send");
    }
    writer.finish().await.expect("acks");
    stop_server(server);
}

#[tokio::main]
async fn main() {
    let series = env_usize("STEPLAKE_BENCH_SERIES", 200);
    let steps = env_usize("STEPLAKE_BENCH_STEPS", 20_000);
    let s3 = S3Server::start(BUCKET);
    let env = s3.env.clone();
    let url = format!("s3://{BUCKET}/bench");
    let bucket_flags = ["--object-store", url.as_str()];

    let batches = generate(series, steps);
    let points = series * steps;
    eprintln!("{points} points ({series} series x {steps} steps)");
    let local = tempfile::tempdir().expect("tempdir");
    let remote = tempfile::tempdir().expect("tempdir");
    for (dir, extra) in [(local.path(), &[][..]), (remote.path(), &bucket_flags[..])] {
        let started = Instant::now();
        load(dir, extra, &env, &batches).await;
        eprintln!(
            "loaded and flushed in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }

    let one_series = "SELECT step, value FROM scalars WHERE name = 'metric0042' ORDER BY step";
    let lo = steps / 2;
    let slice = format!(
        "SELECT name, avg(value) FROM scalars WHERE step >= {lo} AND step < {} GROUP BY name",
        lo + steps / 100
    );
    println!("| query | local data dir | S3 on loopback | bucket / local |");
    println!("|---|---|---|---|");
    let mut results = Vec::new();
    for (dir, extra) in [(local.path(), &[][..]), (remote.path(), &bucket_flags[..])] {
        let server = start_server_with(dir, extra, &env);
        let client = Client::connect(&server.url).await.expect("connect");
        let (t_series, n_series) = time_query(&client, one_series, 7).await;
        let (t_slice, n_slice) = time_query(&client, &slice, 5).await;
        results.push([(t_series, n_series), (t_slice, n_slice)]);
        stop_server(server);
    }
    for (i, label) in ["one series", "1% step slice, every series"]
        .iter()
        .enumerate()
    {
        let (local, remote) = (results[0][i], results[1][i]);
        assert_eq!(local.1, remote.1, "both answer the same rows");
        println!(
            "| {label} ({} rows) | {:.1} ms | {:.1} ms | {:.2}x |",
            local.1,
            local.0.as_secs_f64() * 1e3,
            remote.0.as_secs_f64() * 1e3,
            remote.0.as_secs_f64() / local.0.as_secs_f64()
        );
    }
    drop(s3);
}
