//! Long-run benchmark (issue "Beyond one disk"): what thousands of small
//! flushes cost before and after compaction.
//!
//! Run: `cargo bench -p steplake-cli --bench long_run`. Scale with
//! STEPLAKE_BENCH_FLUSHES (default 5000) and STEPLAKE_BENCH_POINTS (points
//! per flush, default 20000); STEPLAKE_BENCH_DIR picks where the data goes
//! (default: a temporary directory).
//!
//! On the embedded store (no server, so the figures are the storage
//! engine's): 20 series, each flush adding the next steps of every one.
//! 1. A store with compaction off takes every flush as its own file: the
//!    file count, the average manifest write of the last tenth of the
//!    flushes, start-up time, and one series' query time (median of 5).
//! 2. The same store reopened with compaction on (the defaults: runs of 8,
//!    256 MiB) merges the backlog; then the same figures again, and the
//!    average manifest write of 100 more flushes.
//! 3. A store holding the same points in one flush: the one-series query
//!    to compare with.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use steplake_core::ScalarBatch;
use steplake_query::QueryEngine;
use steplake_store::{CompactionPolicy, CreateRun, Store, StoreOptions};

const RUN: &str = "long";
const SERIES: usize = 20;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The points of flush `index`: the next `steps` steps of every series.
fn flush_batch(index: usize, steps: usize) -> ScalarBatch {
    let names = (0..SERIES).map(|i| format!("metric{i:02}")).collect();
    let n = steps * SERIES;
    let mut batch = ScalarBatch {
        names,
        name_index: Vec::with_capacity(n),
        steps: Vec::with_capacity(n),
        values: Vec::with_capacity(n),
        wall_times_us: Vec::with_capacity(n),
    };
    let first = index * steps;
    for step in first..first + steps {
        for series in 0..SERIES {
            batch.name_index.push(series as u32);
            batch.steps.push(step as i64);
            batch
                .values
                .push(2.0 * ((step + 1) as f64).powf(-0.3) + series as f64 * 1e-3);
            batch
                .wall_times_us
                .push(1_700_000_000_000_000 + step as i64);
        }
    }
    batch
}

fn options(min_files: usize, flush_rows: usize) -> StoreOptions {
    StoreOptions {
        flush_rows,
        flush_interval: Duration::from_secs(24 * 3600),
        compaction: CompactionPolicy {
            min_files,
            ..CompactionPolicy::default()
        },
        ..StoreOptions::default()
    }
}

/// Time to open the store, in seconds.
fn timed_open(dir: &Path, options: StoreOptions) -> (Arc<Store>, f64) {
    let started = Instant::now();
    let store = Store::open(dir, options).expect("open store");
    (Arc::new(store), started.elapsed().as_secs_f64())
}

fn shut(store: Arc<Store>) {
    store.shutdown().expect("shutdown");
}

/// Writes `flushes` flushes from `first` on, flushing after each; returns
/// the average manifest write (ms) over the last `measure_last` of them.
fn ingest(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    first: usize,
    flushes: usize,
    steps: usize,
    measure_last: usize,
) -> f64 {
    let stats = store.stats();
    let mut mark = None;
    for index in first..first + flushes {
        if index + measure_last == first + flushes {
            mark = Some((
                stats
                    .manifest_writes
                    .load(std::sync::atomic::Ordering::Relaxed),
                stats
                    .manifest_write_micros
                    .load(std::sync::atomic::Ordering::Relaxed),
            ));
        }
        rt.block_on(store.write_scalars("w", index as u64 + 1, RUN, flush_batch(index, steps)))
            .expect("write");
        store.flush().expect("flush");
    }
    let (writes, micros) = mark.unwrap_or((0, 0));
    let writes = stats
        .manifest_writes
        .load(std::sync::atomic::Ordering::Relaxed)
        - writes;
    let micros = stats
        .manifest_write_micros
        .load(std::sync::atomic::Ordering::Relaxed)
        - micros;
    micros as f64 / writes.max(1) as f64 / 1000.0
}

/// Median time (ms) of one series' query, and its answer (the sum rounded,
/// since stores with other file layouts add in another order).
fn one_series(rt: &tokio::runtime::Runtime, store: &Arc<Store>) -> (f64, String) {
    let engine = QueryEngine::new(store.clone()).expect("engine");
    let sql = format!(
        "SELECT count(*) AS n, round(sum(value), 6) AS total, max(step) AS last FROM scalars \
         WHERE run_id = '{RUN}' AND name = 'metric07'"
    );
    let mut times = Vec::new();
    let mut answer = String::new();
    for _ in 0..5 {
        let started = Instant::now();
        let (_, batches) = rt.block_on(engine.sql_collect(&sql)).expect("query");
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        answer = arrow::util::pretty::pretty_format_batches(&batches)
            .expect("format")
            .to_string();
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], answer)
}

fn files(store: &Store) -> usize {
    store.data_file_counts().values().sum()
}

fn main() {
    let flushes = env_usize("STEPLAKE_BENCH_FLUSHES", 5000);
    let points = env_usize("STEPLAKE_BENCH_POINTS", 20_000);
    let steps = (points / SERIES).max(1);
    let base = tempfile::tempdir().expect("tempdir");
    let root = std::env::var("STEPLAKE_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| base.path().to_path_buf());
    let (many, single) = (root.join("many"), root.join("single"));
    let _ = std::fs::remove_dir_all(&many);
    let _ = std::fs::remove_dir_all(&single);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let create = |store: &Store| {
        rt.block_on(store.create_run(CreateRun {
            run_id: Some(RUN.into()),
            ..Default::default()
        }))
        .expect("create run");
    };
    println!(
        "long run: {flushes} flushes of {} points ({SERIES} series × {steps} steps each)",
        steps * SERIES
    );

    // 1. Every flush its own file.
    let (store, _) = timed_open(&many, options(0, usize::MAX));
    create(&store);
    let started = Instant::now();
    let manifest_before = ingest(&rt, &store, 0, flushes, steps, (flushes / 10).max(1));
    let ingest_secs = started.elapsed().as_secs_f64();
    let files_before = files(&store);
    shut(store);
    let (store, startup_before) = timed_open(&many, options(0, usize::MAX));
    let (query_before, answer_before) = one_series(&rt, &store);
    shut(store);
    println!(
        "  ingest: {ingest_secs:.1} s ({:.2} M points/s, flushing after each batch)",
        (flushes * steps * SERIES) as f64 / ingest_secs / 1e6
    );

    // 2. Compaction merges the backlog: a flush with nothing to write,
    // waiting for the compaction passes after it (until nothing is due).
    let (store, _) = timed_open(
        &many,
        options(CompactionPolicy::default().min_files, usize::MAX),
    );
    let started = Instant::now();
    store.flush_and_compact().expect("flush and compact");
    let compact_secs = started.elapsed().as_secs_f64();
    let files_after = files(&store);
    println!(
        "  compaction of the backlog: {compact_secs:.1} s, {files_before} files to {files_after}"
    );
    shut(store);
    let (store, startup_after) = timed_open(
        &many,
        options(CompactionPolicy::default().min_files, usize::MAX),
    );
    let (query_after, answer_after) = one_series(&rt, &store);
    assert_eq!(answer_before, answer_after, "compaction changed the answer");
    let manifest_after = ingest(&rt, &store, flushes, 100, steps, 100);
    shut(store);

    // 3. The same points in one flush.
    let (store, _) = timed_open(&single, options(0, usize::MAX));
    create(&store);
    for index in 0..flushes {
        rt.block_on(store.write_scalars("w", index as u64 + 1, RUN, flush_batch(index, steps)))
            .expect("write");
    }
    store.flush().expect("flush");
    let single_files = files(&store);
    shut(store);
    let (store, _) = timed_open(&single, options(0, usize::MAX));
    let (query_single, answer_single) = one_series(&rt, &store);
    assert_eq!(
        answer_before, answer_single,
        "the single-file store answers differently"
    );
    shut(store);

    println!("| figure | before compaction | after compaction | target |");
    println!("|---|---|---|---|");
    println!(
        "| data files | {files_before} | {files_after} ({:.2}% of flushes) | ≤ 1% of flushes |",
        files_after as f64 * 100.0 / flushes as f64
    );
    println!(
        "| one-series query (median of 5) | {query_before:.1} ms ({:.2}× single file) | {query_after:.1} ms ({:.2}× single file) | ≤ 2× single file |",
        query_before / query_single,
        query_after / query_single
    );
    println!("| start-up (open) | {startup_before:.3} s | {startup_after:.3} s | |");
    println!(
        "| one manifest write (average) | {manifest_before:.2} ms | {manifest_after:.2} ms | ≤ 5 ms |"
    );
    println!("  single-file store ({single_files} file): one-series query {query_single:.1} ms");
    print!("  answer: {answer_after}");
    println!();
}
