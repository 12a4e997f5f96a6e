//! SQL side by side with DuckDB on the same Parquet files (issue 24).
//!
//! Run: `cargo bench -p steplake-cli --bench sql_speed`
//! (`./scripts/test.sh` first: its virtual environment has DuckDB's Python
//! package; `STEPLAKE_PYTHON` names another interpreter that has it).
//!
//! Data: one run of 200 series × 100,000 steps (20M points), written
//! through the store and flushed to Parquet in ten flushes. It is built
//! once in `STEPLAKE_BENCH_DATA` (default `~/.cache/steplake/bench-data/
//! sql-20m`) and read from there by later runs; `STEPLAKE_BENCH_STEPS`
//! makes it smaller (in another directory).
//!
//! Each query is timed (median of `STEPLAKE_BENCH_REPEATS`, default 5,
//! results collected in full) on steplake embedded (the query engine over
//! the store, in this process), on steplake over Flight SQL (the real
//! server on the same data directory) and on DuckDB's Python API reading
//! the store's live Parquet files, and printed with the ratios to DuckDB.
//! The series functions, which DuckDB does not have, are printed beside a
//! plain scan of the same columns.
//!
//! Then the same queries (embedded) over a tenth of the points written in
//! one flush and in 32 flushes with compaction off (about 20 files): what
//! files that wait for compaction cost a query.
//!
//! `STEPLAKE_BENCH_PART=files` runs only that last part.
//!
//! `STEPLAKE_BENCH_PROFILE=<text>` times only the queries whose label has
//! that text, embedded (to run under a profiler), and prints the plan of
//! each with its operators' metrics (`EXPLAIN ANALYZE`).
//!
//! Targets: every plain query ≤ 1.0× DuckDB; a window function over every
//! series ≤ 2× a plain scan of the same columns; `first_sustained` over
//! 100M points ≤ 1 s (here over 20M: its time × 5 is the estimate).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use futures::TryStreamExt;
use steplake_client::Client;
use steplake_core::ScalarBatch;
use steplake_query::QueryEngine;
use steplake_store::files::{data_files_dir, parquet_files};
use steplake_store::{CompactionPolicy, CreateRun, Store, StoreOptions};

/// The steplake binary's allocator, so that the embedded figures are those
/// of the server's process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/python.rs"]
mod python;
#[path = "common/server.rs"]
#[allow(dead_code)]
mod server;

const SERIES: usize = 200;
const RUN: &str = "bench";
const FLUSHES: i64 = 10;
/// Files of the many-files comparison (each a flush, none compacted).
const MANY_FILES: i64 = 32;

/// One query: its label, steplake's SQL and DuckDB's (the same text unless
/// the two spell it differently).
struct Query {
    label: &'static str,
    steplake: String,
    duckdb: Option<String>,
}

fn both(label: &'static str, sql: &str) -> Query {
    Query {
        label,
        steplake: sql.to_string(),
        duckdb: Some(sql.to_string()),
    }
}

fn plain_queries() -> Vec<Query> {
    vec![
        both(
            "one series",
            "SELECT step, value FROM scalars WHERE name = 's042' ORDER BY step",
        ),
        both(
            "1 % step slice",
            "SELECT name, step, value FROM scalars WHERE step >= 50000 AND step < 51000",
        ),
        both("count(*)", "SELECT count(*) FROM scalars"),
        both(
            "GROUP BY avg/min/max over all series",
            "SELECT name, avg(value), min(value), max(value) FROM scalars GROUP BY name",
        ),
        Query {
            label: "last value per series",
            steplake: "SELECT name, last_value(value ORDER BY step) FROM scalars GROUP BY name"
                .into(),
            duckdb: Some("SELECT name, arg_max(value, step) FROM scalars GROUP BY name".into()),
        },
        both(
            "100-row window on one series",
            "SELECT step, avg(value) OVER (ORDER BY step ROWS BETWEEN 99 PRECEDING AND CURRENT ROW) AS m FROM scalars WHERE name = 's042'",
        ),
        // Every row of the four columns a window over every series reads
        // (nothing here can be answered from the files' statistics).
        both(
            "plain scan of run_id, name, step, value",
            "SELECT max(length(run_id)), max(length(name)), sum(step), sum(value) FROM scalars",
        ),
    ]
}

fn series_queries() -> Vec<Query> {
    let steplake_only = |label: &'static str, sql: &str| Query {
        label,
        steplake: sql.to_string(),
        duckdb: None,
    };
    vec![
        steplake_only(
            "ema over every series (window)",
            "SELECT max(x) FROM (SELECT ema(value, 0.1) OVER (PARTITION BY run_id, name ORDER BY step) AS x FROM scalars)",
        ),
        steplake_only(
            "is_spike over every series (window)",
            "SELECT count(*) FROM (SELECT is_spike(value) OVER (PARTITION BY run_id, name ORDER BY step) AS s FROM scalars) WHERE s",
        ),
        steplake_only(
            "first_sustained per series",
            "SELECT name, first_sustained(step, value < 1.0) FROM scalars GROUP BY name",
        ),
        steplake_only(
            "spike_rate per series",
            "SELECT name, spike_rate(value ORDER BY step) FROM scalars GROUP BY name",
        ),
        steplake_only(
            "downsample per series (500 buckets)",
            "SELECT name, downsample(step, value, 500) FROM scalars GROUP BY name",
        ),
        steplake_only(
            "changepoints per series (20 series)",
            "SELECT name, changepoints(step, value) FROM scalars WHERE name < 's020' GROUP BY name",
        ),
    ]
}

fn noise(seed: &mut u64) -> f64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    (*seed >> 11) as f64 / (1u64 << 52) as f64 - 0.5
}

/// The data directory, built unless a complete one is there.
async fn data_set(steps: i64) -> PathBuf {
    let default = format!(
        "{}/.cache/steplake/bench-data/sql-{}",
        std::env::var("HOME").unwrap_or_default(),
        SERIES as i64 * steps
    );
    let dir = PathBuf::from(std::env::var("STEPLAKE_BENCH_DATA").unwrap_or(default));
    write_data_set(dir, steps, FLUSHES, StoreOptions::default()).await
}

/// The store's options with compaction off: every flush stays a file.
fn uncompacted() -> StoreOptions {
    StoreOptions {
        compaction: CompactionPolicy {
            min_files: 0,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `steps` of every series written through a store opened with `options`
/// into `dir` in `flushes` flushes, unless a complete one is there.
async fn write_data_set(dir: PathBuf, steps: i64, flushes: i64, options: StoreOptions) -> PathBuf {
    // Beside the directory, not in it: the store owns what is inside.
    let complete = dir.with_extension("complete");
    if complete.exists() {
        eprintln!("reading the data set in {}", dir.display());
        return dir;
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("remove a partial data set");
    }
    // A partial one is rebuilt: the mark is written last.
    std::fs::create_dir_all(&dir).expect("data dir");
    eprintln!(
        "building {SERIES} series x {steps} steps in {} ...",
        dir.display()
    );
    let store = Arc::new(Store::open(&dir, options).expect("store"));
    store
        .create_run(CreateRun {
            run_id: Some(RUN.into()),
            ..Default::default()
        })
        .await
        .expect("run");
    let names: Vec<String> = (0..SERIES).map(|s| format!("s{s:03}")).collect();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let per_batch = 500i64;
    let per_flush = ((steps + flushes - 1) / flushes).max(1);
    let mut sequence = 0u64;
    let mut first = 0i64;
    while first < steps {
        let last = (first + per_batch).min(steps);
        let mut batch = ScalarBatch {
            names: names.clone(),
            ..Default::default()
        };
        for step in first..last {
            for s in 0..SERIES {
                batch.name_index.push(s as u32);
                batch.steps.push(step);
                let decay = 2.5 / (1.0 + step as f64 * (1.0 + s as f64 / 100.0) * 1e-3).powf(0.3);
                batch.values.push(decay + 0.02 * noise(&mut seed));
                batch
                    .wall_times_us
                    .push(1_700_000_000_000_000 + step * 1000);
            }
        }
        sequence += 1;
        store
            .write_scalars("bench-writer", sequence, RUN, batch)
            .await
            .expect("write");
        if last / per_flush != first / per_flush || last == steps {
            let flusher = store.clone();
            tokio::task::spawn_blocking(move || flusher.flush())
                .await
                .expect("join")
                .expect("flush");
        }
        first = last;
    }
    drop(store);
    std::fs::write(&complete, b"").expect("mark complete");
    dir
}

async fn time_embedded(engine: &QueryEngine, sql: &str, repeats: usize) -> Duration {
    let mut times = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        let (_, stream) = engine
            .sql(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _: Vec<_> = stream
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        times.push(started.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

/// `EXPLAIN ANALYZE` of `sql`: each operator with its rows and time.
async fn print_analyzed_plan(engine: &QueryEngine, sql: &str) {
    let (_, batches) = engine
        .sql_collect(&format!("EXPLAIN ANALYZE {sql}"))
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN ANALYZE {sql}: {e}"));
    for batch in &batches {
        let plans = batch.column(1).as_string::<i32>();
        for i in 0..batch.num_rows() {
            println!("{}", plans.value(i));
        }
    }
}

/// DuckDB's median times (seconds) for `queries` over `files`, from its
/// Python API; `None` (with the reason printed) where it cannot run.
fn time_duckdb(files: &[PathBuf], queries: &[&str], repeats: usize) -> Option<Vec<f64>> {
    let script = format!(
        "{}/../../benches/sql_speed_duckdb.py",
        python::manifest_dir()
    );
    let input = serde_json::json!({
        "files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "queries": queries,
        "repeats": repeats,
    });
    let python = python::python();
    let mut child = match Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            println!("DuckDB skipped: cannot run {python}: {e}");
            return None;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(input.to_string().as_bytes())
            .expect("write the queries");
    }
    let out = child.wait_with_output().expect("DuckDB script");
    if !out.status.success() {
        println!(
            "DuckDB skipped: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let steps: i64 = std::env::var("STEPLAKE_BENCH_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let repeats: usize = std::env::var("STEPLAKE_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    if std::env::var("STEPLAKE_BENCH_PART").as_deref() == Ok("files") {
        // Only the files waiting for compaction (quick: a tenth of the points).
        many_files(steps / 10, repeats).await;
        return;
    }
    let dir = data_set(steps).await;
    let points = SERIES as i64 * steps;

    // Embedded: the store opened on the data directory (which also deletes
    // files a compaction left for later), then its live files for DuckDB.
    let store = Arc::new(Store::open(&dir, StoreOptions::default()).expect("open"));
    let files: Vec<PathBuf> = parquet_files(&data_files_dir(&dir))
        .into_iter()
        .filter(|f| is_scalars_file(f))
        .collect();
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "steplake vs DuckDB, {points} points ({SERIES} series x {steps} steps) in {} Parquet files, {:.0} MiB; median of {repeats}",
        files.len(),
        bytes as f64 / (1 << 20) as f64
    );
    let engine = QueryEngine::new(store.clone()).expect("engine");
    let plain = plain_queries();
    let functions = series_queries();
    if let Ok(label) = std::env::var("STEPLAKE_BENCH_PROFILE") {
        // For a profiler: the queries whose label has this text, embedded only.
        for q in plain.iter().chain(&functions) {
            if q.label.contains(label.as_str()) {
                let t = time_embedded(&engine, &q.steplake, repeats).await;
                println!("{:<42} {:>9.1} ms", q.label, ms(t));
                print_analyzed_plan(&engine, &q.steplake).await;
            }
        }
        return;
    }
    let mut embedded = Vec::new();
    for q in plain.iter().chain(&functions) {
        embedded.push(time_embedded(&engine, &q.steplake, repeats).await);
    }
    drop(engine);
    drop(store);

    // Over Flight SQL: the real server on the same directory.
    let server = server::start_server(&dir);
    let client = Client::connect(&server.url).await.expect("connect");
    let mut flight = Vec::new();
    for q in &plain {
        flight.push(server::time_query(&client, &q.steplake, repeats).await.0);
    }
    server::stop_server(server);

    let duckdb_sql: Vec<&str> = plain.iter().filter_map(|q| q.duckdb.as_deref()).collect();
    let duckdb = time_duckdb(&files, &duckdb_sql, repeats);

    println!(
        "{:<42} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "query", "embedded", "Flight SQL", "DuckDB", "emb/duck", "flight/duck"
    );
    for (i, q) in plain.iter().enumerate() {
        let (e, f) = (ms(embedded[i]), ms(flight[i]));
        match duckdb.as_ref().map(|d| d[i] * 1e3) {
            Some(d) => println!(
                "{:<42} {:>9.1} ms {:>9.1} ms {:>9.1} ms {:>9.2}x {:>9.2}x",
                q.label,
                e,
                f,
                d,
                e / d,
                f / d
            ),
            None => println!("{:<42} {:>9.1} ms {:>9.1} ms", q.label, e, f),
        }
    }
    let scan = ms(embedded[plain.len() - 1]);
    println!("series functions, embedded, beside the plain scan ({scan:.1} ms):");
    for (q, t) in functions.iter().zip(&embedded[plain.len()..]) {
        let t = ms(*t);
        println!(
            "{:<42} {:>9.1} ms {:>9.2}x of the scan, {:.1} ns a point",
            q.label,
            t,
            t / scan,
            t * 1e6 / points as f64
        );
    }
    many_files(steps / 10, repeats).await;
}

/// The same points in one file and in [`MANY_FILES`] flushes (compaction
/// off; the store may write fewer files when a flush is small), each query
/// timed embedded on both: what files waiting for compaction cost.
async fn many_files(steps: i64, repeats: usize) {
    let base = format!(
        "{}/.cache/steplake/bench-data",
        std::env::var("HOME").unwrap_or_default()
    );
    let points = SERIES as i64 * steps;
    let one = write_data_set(
        PathBuf::from(format!("{base}/sql-{points}-1-file")),
        steps,
        1,
        uncompacted(),
    )
    .await;
    let many = write_data_set(
        PathBuf::from(format!("{base}/sql-{points}-{MANY_FILES}-files")),
        steps,
        MANY_FILES,
        uncompacted(),
    )
    .await;
    let files = parquet_files(&data_files_dir(&many)).len();
    let mut times = Vec::new();
    for dir in [&one, &many] {
        let store = Arc::new(Store::open(dir, uncompacted()).expect("open"));
        let engine = QueryEngine::new(store).expect("engine");
        let mut these = Vec::new();
        for q in plain_queries().iter().chain(&series_queries()[..1]) {
            these.push(time_embedded(&engine, &q.steplake, repeats).await);
        }
        times.push(these);
    }
    println!(
        "{points} points in 1 file and in {files} files ({MANY_FILES} flushes, compaction off), embedded:"
    );
    println!(
        "{:<42} {:>12} {:>12} {:>10}",
        "query", "1 file", "many files", "many/1"
    );
    let labels = plain_queries()
        .into_iter()
        .chain(series_queries().into_iter().take(1))
        .map(|q| q.label);
    for (i, label) in labels.enumerate() {
        let (a, b) = (ms(times[0][i]), ms(times[1][i]));
        println!("{label:<42} {a:>9.1} ms {b:>9.1} ms {:>9.2}x", b / a);
    }
}

/// A scalars data file (not a tensors one).
fn is_scalars_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("scalars-"))
}
