//! The dashboard's workspace at scale (issue 21): the time to a fully drawn
//! first screen of a workspace of 50 metrics × 10 runs × 100,000 points
//! (only the visible panels fetched), the bytes that took, and the latency
//! from an acknowledged point to its appearance in an open panel.
//!
//! Run: `cargo bench -p steplake-cli --bench dashboard` (release server),
//! after `./scripts/test.sh`, which installs Chromium and the browser test's
//! Node modules. The data (50M points) is written once into
//! `~/.cache/steplake/bench-data/dashboard-50x10x100k` and read from there
//! by later runs; `STEPLAKE_BENCH_STEPS` makes it smaller (another
//! directory). The browser part is `tests/browser/workspace_timing.mjs`,
//! which prints the figures.
//!
//! Targets: first screen ≤ 2 s; live latency ≤ 500 ms.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use steplake_client::v1::ScalarBatch;
use steplake_client::Client;

#[path = "common/server.rs"]
#[allow(dead_code)]
mod server;
use server::{create_bench_run, start_server, stop_server};

const RUNS: usize = 10;
const METRICS: usize = 50;
const STEPS_PER_BATCH: i64 = 1_000;

/// `train/m00`…`train/m29`, `eval/m00`…`eval/m19`.
fn metric_names() -> Vec<String> {
    (0..30)
        .map(|i| format!("train/m{i:02}"))
        .chain((0..METRICS - 30).map(|i| format!("eval/m{i:02}")))
        .collect()
}

/// Writes every run's metrics, `steps` steps each, through the server.
async fn write_data(url: &str, steps: i64) {
    let client = Client::connect(url).await.expect("connect");
    let names = metric_names();
    for run in 0..RUNS {
        let run_id = format!("r{run}");
        create_bench_run(&client, &run_id).await;
        let mut writer = client.writer(&run_id).await.expect("writer");
        let mut start = 0;
        while start < steps {
            let end = (start + STEPS_PER_BATCH).min(steps);
            let mut batch = ScalarBatch {
                names: names.clone(),
                ..Default::default()
            };
            for step in start..end {
                for k in 0..names.len() {
                    batch.name_index.push(k as u32);
                    batch.steps.push(step);
                    let decay = 1.0 / (1.0 + step as f64 / 1_000.0);
                    batch
                        .values
                        .push((k + 1) as f64 * decay + run as f64 * 0.01);
                    batch
                        .wall_times_us
                        .push(1_700_000_000_000_000 + step * 1_000);
                }
            }
            writer.send(batch).await.expect("send");
            start = end;
        }
        writer.finish().await.expect("acknowledged");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let steps: i64 = std::env::var("STEPLAKE_BENCH_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("tests/browser/workspace_timing.mjs");
    let modules = root.join("tests/browser/node_modules/playwright-core");
    let chromium =
        std::env::var("STEPLAKE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !modules.exists() || !PathBuf::from(&chromium).exists() {
        eprintln!("the dashboard bench needs Chromium and tests/browser/node_modules: run ./scripts/test.sh first");
        std::process::exit(2);
    }
    let dir = PathBuf::from(format!(
        "{}/.cache/steplake/bench-data/dashboard-{METRICS}x{RUNS}x{steps}",
        std::env::var("HOME").unwrap_or_default()
    ));
    let complete = dir.with_extension("complete");
    if !complete.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("data dir");
        let server = start_server(&dir);
        let started = Instant::now();
        write_data(&server.url, steps).await;
        eprintln!(
            "wrote {} points in {:.1} s",
            RUNS as i64 * METRICS as i64 * steps,
            started.elapsed().as_secs_f64()
        );
        stop_server(server);
        std::fs::write(&complete, b"").expect("marker");
    }
    let server = start_server(&dir);
    let http = server.http_url().expect("the server serves its dashboard");
    println!(
        "workspace of {METRICS} metrics x {RUNS} runs x {steps} points ({} points), release server, Chromium headless:",
        RUNS as i64 * METRICS as i64 * steps
    );
    let status = Command::new("node")
        .arg(&script)
        .env("STEPLAKE_URL", &http)
        .env("STEPLAKE_GRPC", &server.url)
        .env(
            "STEPLAKE_BIN",
            std::env::var_os("STEPLAKE_BENCH_BIN")
                .unwrap_or_else(|| env!("CARGO_BIN_EXE_steplake").into()),
        )
        .env("STEPLAKE_CHROMIUM", &chromium)
        .env(
            "STEPLAKE_RUNS",
            (0..RUNS)
                .map(|r| format!("r{r}"))
                .collect::<Vec<_>>()
                .join(","),
        )
        .status()
        .expect("run node");
    stop_server(server);
    assert!(status.success(), "the timing script failed");
}
