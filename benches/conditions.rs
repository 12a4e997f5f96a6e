//! Standing conditions at ingest (issue 18): how soon an event reaches the
//! trainer, and what evaluating conditions costs ingest.
//!
//! Run: `cargo bench -p steplake-cli --bench conditions`
//! Targets: p99 ack → event ≤ 20 ms over loopback; ingest with 10,000
//! conditions ≥ 70 % of ingest with none.
//!
//! Latency: a run watches `probe` with `value > 100`; every 10 ms a batch
//! of two points (a low one, then a high one, so each batch fires) is sent
//! on its own write stream, and a Watch stream (opened once) receives the
//! events. For each batch it records send → ack and ack → event (0 when
//! the event came first: the server announces it as it acknowledges).
//!
//! Ingest: four runs of 1,000 series each, written one after the other by
//! one pipelined write stream in batches of 10 steps × 1,000 series, with
//! 0, 100 (on 100 of the series) and 10,000 (10 per series) standing
//! conditions: a mix of windowed functions (is_spike, rolling_zscore,
//! spike_ratio) and point tests, and 10,000 of point tests and EMAs only.
//! The four are measured in turn, STEPLAKE_BENCH_ROUNDS times (default 3),
//! and the best rate of each is printed with its ratio to the rate with
//! none. The client runs on the same machine as the server.
//!
//! Evaluation alone: the same two mixes on 1,000 series fed the same
//! points in-process (no server), in nanoseconds per point: what a
//! condition costs apart from the rest of ingest.
//! `STEPLAKE_BENCH_EVAL_ONLY=1` prints only that part.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use steplake_client::v1::{AddConditionRequest, CreateRunRequest, ScalarBatch};
use steplake_client::Client;

#[path = "common/server.rs"]
#[allow(dead_code)]
mod server;
use server::{start_server, stop_server};

const SERIES: usize = 1_000;
const STEPS_PER_BATCH: i64 = 10;
const BATCHES: i64 = 100;

/// Ten predicates a lab might keep on every series, half of them over
/// windows of 10 to 50 points.
const WINDOWED: [&str; 10] = [
    "is_spike(value)",
    "is_spike(value, 50, 6, 'mad', 'both')",
    "rolling_zscore(value, 50) > 6",
    "NOT isfinite(value)",
    "ema(value, 0.05) > 1000",
    "spike_ratio(value, 10) > 3",
    "value > 1e6",
    "abs(value) < 1e-12",
    "value < -1e6 OR isnan(value)",
    "ema(value, 0.2) - value > 100",
];

/// Ten predicates that look at the current point (and an EMA) only.
const POINTWISE: [&str; 10] = [
    "NOT isfinite(value)",
    "value > 1e6",
    "value < -1e6",
    "abs(value) < 1e-12",
    "isnan(value)",
    "ema(value, 0.05) > 1000",
    "ema(value, 0.2) - value > 100",
    "value > 1e9 OR value < -1e9",
    "isinf(value)",
    "step > 1000000000",
];

fn probe_batch(step: i64) -> ScalarBatch {
    ScalarBatch {
        names: vec!["probe".into()],
        name_index: vec![0, 0],
        steps: vec![step, step + 1],
        values: vec![1.0, 1_000.0],
        wall_times_us: Vec::new(),
    }
}

async fn create(client: &Client, run_id: &str) {
    client
        .create_run(CreateRunRequest {
            run_id: run_id.into(),
            ..Default::default()
        })
        .await
        .expect("create run");
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3
}

async fn event_latency(client: &Client, seconds: u64) {
    create(client, "latency").await;
    client
        .add_condition(AddConditionRequest {
            run_id: "latency".into(),
            series: "probe".into(),
            predicate: "value > 100".into(),
            ..Default::default()
        })
        .await
        .expect("condition");
    let arrivals: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let mut events = client.watch("latency", 0).await.expect("watch");
    let seen = arrivals.clone();
    let watcher = tokio::spawn(async move {
        while let Ok(Some(event)) = events.message().await {
            if let Ok(mut seen) = seen.lock() {
                seen.insert(event.step, Instant::now());
            }
        }
    });
    let (mut acks, mut to_event, mut sent_to_event) = (Vec::new(), Vec::new(), Vec::new());
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut sequence = 1u64;
    while Instant::now() < until {
        tick.tick().await;
        let step = sequence as i64 * 2;
        let sent = Instant::now();
        let mut writer = client
            .writer_with_id("latency", "probe-writer", sequence)
            .await
            .expect("probe stream");
        writer
            .send_with_sequence(sequence, probe_batch(step))
            .await
            .expect("send");
        writer.finish().await.expect("ack");
        let acked = Instant::now();
        sequence += 1;
        let arrived = loop {
            if let Some(at) = arrivals
                .lock()
                .ok()
                .and_then(|a| a.get(&(step + 1)).copied())
            {
                break at;
            }
            assert!(
                acked.elapsed() < Duration::from_secs(5),
                "no event for step {}",
                step + 1
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        acks.push(acked - sent);
        to_event.push(arrived.saturating_duration_since(acked));
        sent_to_event.push(arrived - sent);
    }
    watcher.abort();
    acks.sort();
    to_event.sort();
    sent_to_event.sort();
    println!(
        "event latency over loopback ({} batches, each firing once):",
        acks.len()
    );
    println!(
        "  send -> ack    p50 {:.2} ms, p99 {:.2} ms",
        quantile(&acks, 0.5),
        quantile(&acks, 0.99)
    );
    println!(
        "  ack -> event   p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        quantile(&to_event, 0.5),
        quantile(&to_event, 0.99),
        quantile(&to_event, 1.0)
    );
    println!(
        "  send -> event  p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        quantile(&sent_to_event, 0.5),
        quantile(&sent_to_event, 0.99),
        quantile(&sent_to_event, 1.0)
    );
}

/// Registers `count` conditions on run `run_id`: on series s0, s1, ...
/// (wrapping), cycling through `predicates`.
async fn add_conditions(client: &Client, run_id: &str, count: usize, predicates: &[&str]) {
    let requests: Vec<AddConditionRequest> = (0..count)
        .map(|i| AddConditionRequest {
            run_id: run_id.into(),
            series: format!("s{}", i % SERIES),
            predicate: predicates[(i / SERIES) % predicates.len()].into(),
            ..Default::default()
        })
        .collect();
    for chunk in requests.chunks(500) {
        for added in join_all(chunk.iter().map(|r| client.add_condition(r.clone()))).await {
            added.expect("condition");
        }
    }
}

fn training_batch(names: &[String], first_step: i64) -> ScalarBatch {
    let mut batch = ScalarBatch {
        names: names.to_vec(),
        ..Default::default()
    };
    for step in first_step..first_step + STEPS_PER_BATCH {
        for series in 0..names.len() {
            batch.name_index.push(series as u32);
            batch.steps.push(step);
            let wiggle = ((step * 7919 + series as i64 * 104_729) % 1000) as f64 / 1e4;
            batch.values.push(2.0 / (1.0 + step as f64 * 1e-3) + wiggle);
        }
    }
    batch
}

/// Points per second written into `run_id`, from step `start`, and the
/// server's CPU time per million points (seconds).
async fn ingest(
    client: &Client,
    server: &server::Server,
    run_id: &str,
    names: &[String],
    start: i64,
) -> (f64, f64) {
    let batches: Vec<ScalarBatch> = (0..BATCHES)
        .map(|b| training_batch(names, start + b * STEPS_PER_BATCH))
        .collect();
    let points: usize = batches.iter().map(|b| b.values.len()).sum();
    let cpu = server.cpu_seconds();
    let started = Instant::now();
    let mut writer = client.writer(run_id).await.expect("writer");
    for batch in batches {
        writer.send(batch).await.expect("send");
    }
    writer.finish().await.expect("acknowledged");
    let rate = points as f64 / started.elapsed().as_secs_f64();
    (rate, (server.cpu_seconds() - cpu) * 1e6 / points as f64)
}

/// Nanoseconds per point of evaluating `predicates` (one set per series,
/// as the server compiles them) over the bench's batches, fed as the
/// server feeds them: each series' points of a batch together; the best
/// of `rounds`.
fn evaluation_cost(predicates: &[&str], rounds: i64) -> f64 {
    use steplake_query::condition::{Condition, ConditionSet, Scratch};
    let conditions: Vec<Condition> = predicates
        .iter()
        .map(|p| Condition::parse(p, 1).expect(p))
        .collect();
    let set = ConditionSet::new(&conditions);
    let mut watches: Vec<_> = (0..SERIES).map(|_| set.watch()).collect();
    let names: Vec<String> = (0..SERIES).map(|i| format!("s{i}")).collect();
    let mut fired = 0usize;
    let mut best = f64::MAX;
    for round in 0..rounds.max(1) {
        let batches: Vec<ScalarBatch> = (0..BATCHES)
            .map(|b| training_batch(&names, (round * BATCHES + b) * STEPS_PER_BATCH))
            .collect();
        let mut scratch = Scratch::default();
        let (mut steps, mut values) = (Vec::new(), Vec::new());
        let started = Instant::now();
        for batch in &batches {
            let points = batch.values.len();
            for (series, watch) in watches.iter_mut().enumerate() {
                steps.clear();
                values.clear();
                for i in (series..points).step_by(SERIES) {
                    steps.push(batch.steps[i]);
                    values.push(batch.values[i]);
                }
                watch.observe(&steps, &values, &mut scratch, |_, _| fired += 1);
            }
        }
        let points = BATCHES as usize * STEPS_PER_BATCH as usize * SERIES;
        best = best.min(started.elapsed().as_secs_f64() * 1e9 / points as f64);
    }
    std::hint::black_box(fired);
    best
}

fn print_evaluation_cost(rounds: i64) {
    println!("evaluation alone, in-process, {SERIES} series x 10 conditions, best of {rounds}:");
    for (mix, predicates) in [("windowed mix", &WINDOWED), ("pointwise mix", &POINTWISE)] {
        let ns = evaluation_cost(predicates, rounds);
        println!(
            "  {mix:<14} {ns:>7.1} ns per point ({:.1} ns per condition)",
            ns / predicates.len() as f64
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = std::env::var("STEPLAKE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let rounds: i64 = std::env::var("STEPLAKE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    print_evaluation_cost(rounds);
    if std::env::var_os("STEPLAKE_BENCH_EVAL_ONLY").is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start_server(dir.path());
    let client = Client::connect(&server.url).await.expect("connect");
    event_latency(&client, seconds).await;

    let names: Vec<String> = (0..SERIES).map(|i| format!("s{i}")).collect();
    let configs: [(&str, usize, &str, &[&str]); 4] = [
        ("c0", 0, "", &WINDOWED),
        ("c100", 100, "windowed mix", &WINDOWED),
        ("c10000", 10_000, "windowed mix", &WINDOWED),
        ("c10000p", 10_000, "pointwise mix", &POINTWISE),
    ];
    for (run, count, _, predicates) in configs {
        create(&client, run).await;
        add_conditions(&client, run, count, predicates).await;
    }
    let mut best = [0f64; 4];
    let mut cpu = [f64::MAX; 4];
    // `STEPLAKE_BENCH_ONLY=c10000p` (a run name) measures that one alone,
    // for a profiler.
    let only = std::env::var("STEPLAKE_BENCH_ONLY").ok();
    for round in 0..rounds {
        for (i, (run, ..)) in configs.iter().enumerate() {
            if only.as_deref().is_some_and(|only| only != *run) {
                continue;
            }
            let (rate, cpu_per_million) = ingest(
                &client,
                &server,
                run,
                &names,
                round * BATCHES * STEPS_PER_BATCH,
            )
            .await;
            best[i] = best[i].max(rate);
            cpu[i] = cpu[i].min(cpu_per_million);
        }
    }
    println!(
        "ingest, {SERIES} series, batches of {STEPS_PER_BATCH} steps x {SERIES} series, one write stream, best of {rounds}:"
    );
    for (i, (_, count, mix, _)) in configs.iter().enumerate() {
        if best[i] == 0.0 {
            continue;
        }
        println!(
            "  {count:>6} conditions {mix:<14} {:>10.0} points/s ({:.2}x of none), server CPU {:.2} s per 1M points",
            best[i],
            best[i] / best[0],
            cpu[i]
        );
    }
    stop_server(server);
}
