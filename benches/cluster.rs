//! Cluster benchmark (issue "Distributed SQL on Apache Ballista"): the same
//! steplake queries on one process and on a Ballista cluster of one and two
//! executors, all reading one bucket.
//!
//! Run: `STEPLAKE_PYTHON=~/.cache/steplake/venv/bin/python cargo bench -p steplake-cli --bench cluster`
//! (the test environment of `scripts/test.sh` has moto, the S3 server).
//! Scale with STEPLAKE_BENCH_RUNS (default 200), STEPLAKE_BENCH_SERIES
//! (default 50) and STEPLAKE_BENCH_STEPS (default 1000): the issue's
//! 200 × 50 × 100k (1B points) does not fit this machine's disk and time,
//! so the default is 10M points, and the bench prints what it used.
//!
//! It starts moto's S3 server on loopback, loads the runs through a real
//! `steplake serve --object-store` (stopped, so every point is flushed),
//! then times each query (median of 3) on one process reading the bucket
//! (`steplake sql --object-store` as a library) and through a real
//! `steplake scheduler` with one, then two `steplake executor`s. For the
//! cluster it prints the plan's stage count (EXPLAIN) and the tasks each
//! query ran on the executors (their `/metrics`), which shows the work
//! runs there. Every answer is checked against the single-process one.
//! On 2 cores no speed-up is expected: the figures are the cluster's
//! overhead.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::util::pretty::pretty_format_batches;
use steplake_client::v1::ScalarBatch;
use steplake_client::Client;
use steplake_query::{QueryEngine, QueryOptions};
use steplake_store::Store;

#[path = "common/s3.rs"]
mod s3;
#[path = "common/server.rs"]
mod server;
use s3::S3Server;
use server::{create_bench_run, start_server_with, stop_server};

const BUCKET: &str = "steplake-cluster-bench";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn binary() -> std::ffi::OsString {
    std::env::var_os("STEPLAKE_BENCH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_steplake").into())
}

/// The points of run `r`: `loss` (a power law with a 3× spike at a
/// run-specific step), `acc` (emerging past 0.9 at a run-specific step) and
/// `series - 2` other metrics, in batches of 100 steps.
fn run_batches(r: usize, series: usize, steps: usize) -> Vec<ScalarBatch> {
    let mut names = vec!["loss".to_string(), "acc".to_string()];
    names.extend((2..series).map(|i| format!("metric{i:03}")));
    let spike = (r * 37 + steps / 3) % steps;
    let emerge = (r * 13 + steps / 2) % steps;
    let mut batches = Vec::new();
    for first in (0..steps).step_by(100) {
        let mut batch = ScalarBatch {
            names: names.clone(),
            ..Default::default()
        };
        for step in first..(first + 100).min(steps) {
            for i in 0..names.len() {
                let base = 2.0 * ((step + 1) as f64).powf(-0.3);
                let value = match i {
                    0 if step == spike => 3.0 * base,
                    0 => base + 1e-4 * ((step * 7 + r) % 11) as f64,
                    1 if step >= emerge => 0.95,
                    1 => 0.1,
                    _ => base * (1.0 + i as f64 * 1e-3),
                };
                batch.name_index.push(i as u32);
                batch.steps.push(step as i64);
                batch.values.push(value);
            }
        }
        batches.push(batch);
    }
    batches
}

/// A process killed when dropped.
struct Role(Child);

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_role(args: &[String]) -> Role {
    let mut child = Command::new(binary())
        .args(args)
        .env("STEPLAKE_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a cluster role");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("its first line");
    eprintln!("{}", line.trim_end());
    Role(child)
}

fn start_executor(cluster: &str, url: &str, work: &Path, metrics: &str) -> Role {
    start_role(&[
        "executor".into(),
        "--scheduler".into(),
        cluster.into(),
        "--object-store".into(),
        url.into(),
        "--flight-port".into(),
        free_port().to_string(),
        "--grpc-port".into(),
        free_port().to_string(),
        "--work-dir".into(),
        work.display().to_string(),
        "--metrics".into(),
        metrics.into(),
    ])
}

/// Tasks an executor has started, from its `/metrics`.
fn tasks_started(metrics: &str) -> u64 {
    let mut stream = std::net::TcpStream::connect(metrics).expect("executor metrics");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
        .lines()
        .find_map(|l| l.strip_prefix("steplake_executor_tasks_total{outcome=\"started\"} "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a task count")
}

/// Median time of 3 runs and the answer, pretty-printed.
async fn time_query(engine: &QueryEngine, sql: &str) -> (Duration, String) {
    let mut times = Vec::new();
    let mut answer = String::new();
    for _ in 0..3 {
        let started = Instant::now();
        let (_, batches) = engine
            .sql_collect(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        times.push(started.elapsed());
        answer = pretty_format_batches(&batches).expect("format").to_string();
    }
    times.sort();
    (times[1], answer)
}

/// Stages of the cluster's plan for `sql`.
async fn stages(engine: &QueryEngine, sql: &str) -> usize {
    let (_, batches) = engine
        .sql_collect(&format!("EXPLAIN {sql}"))
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"));
    pretty_format_batches(&batches)
        .expect("format")
        .to_string()
        .matches("Stage[stage_id=")
        .count()
}

fn main() {
    let runs = env_usize("STEPLAKE_BENCH_RUNS", 200);
    let series = env_usize("STEPLAKE_BENCH_SERIES", 50).max(2);
    let steps = env_usize("STEPLAKE_BENCH_STEPS", 1000).max(100);
    let s3 = S3Server::start(BUCKET);
    // Before any thread starts: the store, the roles and the servers read
    // the bucket's credentials and endpoint from the environment.
    for (key, value) in &s3.env {
        std::env::set_var(key, value);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench(runs, series, steps));
    drop(s3);
}

async fn bench(runs: usize, series: usize, steps: usize) {
    let url = format!("s3://{BUCKET}/lab");
    let points = runs * series * steps;
    println!("data: {runs} runs x {series} series x {steps} steps = {points} points, in {url} (moto on loopback)");
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let server = start_server_with(dir.path(), &["--object-store", &url], &[]);
    let client = Client::connect(&server.url).await.expect("connect");
    for r in 0..runs {
        let run_id = format!("run{r:04}");
        create_bench_run(&client, &run_id).await;
        let mut writer = client.writer(&run_id).await.expect("writer");
        for batch in run_batches(r, series, steps) {
            writer.send(batch).await.expect("send");
        }
        writer.finish().await.expect("acks");
    }
    stop_server(server);
    println!(
        "loaded and flushed in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let store = tokio::task::spawn_blocking({
        let url = url.clone();
        move || Store::open_bucket_read_only(&url)
    })
    .await
    .expect("open task")
    .expect("open the bucket");
    let one_process = QueryEngine::new(Arc::new(store)).expect("engine");

    let queries: [(&str, String); 4] = [
        (
            "per-run spike detection",
            "SELECT run_id, count(*) AS spikes, min(step) AS first FROM (SELECT run_id, step, is_spike(value) OVER (PARTITION BY run_id ORDER BY step) AS spike FROM scalars WHERE name = 'loss') WHERE spike GROUP BY run_id ORDER BY run_id".into(),
        ),
        (
            "per-run emergence (first_sustained)",
            "SELECT run_id, first_sustained(step, value > 0.9, 5) AS emerged FROM scalars WHERE name = 'acc' GROUP BY run_id ORDER BY run_id".into(),
        ),
        (
            "GROUP BY over all runs",
            "SELECT name, count(*) AS n, round(avg(value), 9) AS mean FROM scalars GROUP BY name ORDER BY name".into(),
        ),
        ("small query (overhead)", "SELECT count(*) AS runs FROM runs".into()),
    ];
    let mut single = Vec::new();
    for (_, sql) in &queries {
        single.push(time_query(&one_process, sql).await);
    }

    let port = free_port();
    let cluster = format!("df://127.0.0.1:{port}");
    let _scheduler = start_role(&[
        "scheduler".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--object-store".into(),
        url.clone(),
    ]);
    let work = tempfile::tempdir().expect("tempdir");
    let metrics = [
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    ];
    let mut executors = vec![start_executor(
        &cluster,
        &url,
        &work.path().join("e0"),
        &metrics[0],
    )];
    let ctx = steplake_cluster::cluster_context(&cluster)
        .await
        .expect("cluster session");
    let engine = steplake_cluster::cluster_engine(ctx, QueryOptions::default()).expect("engine");
    let ready = Instant::now();
    while engine.sql_collect("SELECT 1").await.is_err() {
        assert!(
            ready.elapsed() < Duration::from_secs(60),
            "the cluster never answered"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut on_cluster: Vec<Vec<(Duration, usize, u64)>> = Vec::new();
    for executor_count in 1..=2 {
        if executor_count == 2 {
            executors.push(start_executor(
                &cluster,
                &url,
                &work.path().join("e1"),
                &metrics[1],
            ));
            // Registered once its first heartbeat reaches the scheduler.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let mut row = Vec::new();
        for ((name, sql), (_, expected)) in queries.iter().zip(&single) {
            let tasks_before: u64 = metrics[..executor_count]
                .iter()
                .map(|m| tasks_started(m))
                .sum();
            let (time, answer) = time_query(&engine, sql).await;
            let tasks: u64 = metrics[..executor_count]
                .iter()
                .map(|m| tasks_started(m))
                .sum::<u64>()
                - tasks_before;
            assert_eq!(
                &answer, expected,
                "{name}: the cluster answered differently"
            );
            row.push((time, stages(&engine, sql).await, tasks / 3));
        }
        on_cluster.push(row);
    }
    drop(executors);

    println!();
    println!("| query | one process | cluster, 1 executor | cluster, 2 executors | stages | tasks per run (1 / 2 executors) |");
    println!("|---|---|---|---|---|---|");
    for (i, (name, _)) in queries.iter().enumerate() {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let (one, two) = (on_cluster[0][i], on_cluster[1][i]);
        println!(
            "| {name} | {:.1} ms | {:.1} ms ({:.2}x) | {:.1} ms ({:.2}x) | {} | {} / {} |",
            ms(single[i].0),
            ms(one.0),
            one.0.as_secs_f64() / single[i].0.as_secs_f64(),
            ms(two.0),
            two.0.as_secs_f64() / single[i].0.as_secs_f64(),
            one.1,
            one.2,
            two.2
        );
    }
}
