//! Tensor benchmark (issue "Tensors"): ingest of whole tensors through the
//! server, and reading one tensor back out of many steps.
//!
//! Run: `cargo bench -p steplake-cli --bench tensors`
//! Scale with STEPLAKE_BENCH_TENSOR_STEPS (default 1000) and
//! STEPLAKE_BENCH_TENSOR_KIB (KiB per tensor, default 1024): 1 GiB by default.
//! `STEPLAKE_BENCH_TENSOR_STEPS=1 STEPLAKE_BENCH_TENSOR_KIB=1048576` sends one
//! 1 GiB tensor (128 chunks of 8 MiB).
//!
//! It starts the real release `steplake serve` on loopback (default fsync
//! policy), streams one f32 tensor per step through the Rust client (the
//! server computes statistics; each tensor is WAL-logged and acknowledged),
//! stops the server with SIGTERM (which flushes every tensor to Parquet with
//! steplake-codec), restarts it and times SQL through Flight.

use std::time::Instant;

use steplake_client::v1::CreateRunRequest;
use steplake_client::Client;

#[path = "common/server.rs"]
mod server;
use server::{start_server, stop_server, time_query};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Weight-like f32 values (a smooth function plus deterministic noise).
fn tensor(step: usize, n: usize) -> Vec<u8> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ step as u64;
    (0..n)
        .flat_map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            ((((i as f64) * 0.001).sin() * 0.02 + noise * 0.01) as f32).to_le_bytes()
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let steps = env_usize("STEPLAKE_BENCH_TENSOR_STEPS", 1000);
    let kib = env_usize("STEPLAKE_BENCH_TENSOR_KIB", 1024);
    let n = kib * 1024 / 4;
    let dir = tempfile::tempdir().expect("temp dir");
    eprintln!("generating {steps} tensors of {kib} KiB ...");
    // Up to sixteen distinct tensors reused across steps keep generation out
    // of the timing.
    let pool: Vec<Vec<u8>> = (0..steps.clamp(1, 16)).map(|s| tensor(s, n)).collect();

    let server = start_server(dir.path());
    let client = Client::connect(&server.url).await.expect("connect");
    client
        .create_run(CreateRunRequest {
            run_id: "bench".into(),
            ..Default::default()
        })
        .await
        .expect("create run");
    let shape = [n as i64];
    let started = Instant::now();
    let mut writer = client.writer("bench").await.expect("writer");
    for step in 0..steps {
        writer
            .send_tensor(
                "layer.0.weight",
                step as i64,
                "f32",
                &shape,
                &pool[step % pool.len()],
            )
            .await
            .expect("send");
    }
    let summary = writer.finish().await.expect("acks");
    let ingest = started.elapsed();
    let chunks_per_tensor = (n * 4).div_ceil(steplake_client::TENSOR_CHUNK_BYTES);
    assert_eq!(summary.batches as usize, steps * chunks_per_tensor);
    let stop_started = Instant::now();
    stop_server(server);
    let final_flush = stop_started.elapsed();
    let parquet_bytes: u64 = std::fs::read_dir(dir.path().join("data"))
        .expect("data dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("tensors-"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();

    let server = start_server(dir.path());
    let client = Client::connect(&server.url).await.expect("connect");
    let step = steps / 2;
    let one = format!(
        "SELECT tensor FROM tensors WHERE run_id = 'bench' AND name = 'layer.0.weight' AND step = {step}"
    );
    let (t_one, rows_one) = time_query(&client, &one, 5).await;
    assert_eq!(rows_one, 1);
    let curve = "SELECT step, l2, std FROM tensors WHERE name = 'layer.0.weight' ORDER BY step";
    let (t_curve, rows_curve) = time_query(&client, curve, 5).await;
    stop_server(server);

    let raw = (steps * n * 4) as f64;
    println!(
        "steplake tensor benchmark: {steps} steps x 1 tensor of {kib} KiB (f32, {chunks_per_tensor} chunk(s) each) = {:.2} GB, fsync=batch",
        raw / 1e9
    );
    println!(
        "ingest (Rust client, loopback, until last ack): {:.2} s = {:.3} GB/s of raw tensor data",
        ingest.as_secs_f64(),
        raw / ingest.as_secs_f64() / 1e9
    );
    println!(
        "final flush at shutdown: {:.2} s",
        final_flush.as_secs_f64()
    );
    println!(
        "bytes on disk after flush: {:.3} of raw ({} bytes of Parquet)",
        parquet_bytes as f64 / raw,
        parquet_bytes
    );
    println!(
        "read one tensor at one step out of {steps}: {:.1} ms (median of 5)",
        t_one.as_secs_f64() * 1e3
    );
    println!(
        "statistics of every step ({rows_curve} rows, no values read): {:.1} ms (median of 5)",
        t_curve.as_secs_f64() * 1e3
    );
}
