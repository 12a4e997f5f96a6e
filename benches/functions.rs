//! SQL function benchmark (issue "When did this emerge?").
//!
//! Run: `cargo bench -p steplake-cli --bench functions`
//! (`./scripts/test.sh` first: it installs ruptures for the comparison).
//!
//! In process, over a real store flushed to Parquet: one series of 1M points
//! and 1,000 series of 10k points. Prints each function's time on the 1M-point
//! series and on all 1,000 series in one query (median of 3); `changepoints`
//! on the first 10k and 100k points (exact PELT is O(n²) when a long series
//! has few changes); and `changepoints` beside
//! `ruptures.Pelt(model="l2", jump=1)` on the same 5,000 points.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use steplake_core::ScalarBatch;
use steplake_query::QueryEngine;
use steplake_store::{CreateRun, Store, StoreOptions};

#[path = "common/python.rs"]
mod python;

fn noise(seed: &mut u64) -> f64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    (*seed >> 11) as f64 / (1u64 << 52) as f64 - 0.5
}

/// A loss-like curve with regime changes and a few spikes.
fn curve(n: usize, seed: &mut u64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let t = i as f64 / n as f64;
            let level = if t < 0.3 {
                2.0
            } else if t < 0.7 {
                1.2
            } else {
                0.8
            };
            let spike = if i % 99_991 == 5_000 { 5.0 } else { 0.0 };
            level + 0.5 * (1.0 + i as f64).powf(-0.3) + 0.02 * noise(seed) + spike
        })
        .collect()
}

async fn write_series(store: &Store, writer: &str, name: &str, values: &[f64]) {
    for (chunk_index, chunk) in values.chunks(50_000).enumerate() {
        let sequence = chunk_index as u64 + 1;
        let first = (chunk_index * 50_000) as i64;
        let batch = ScalarBatch {
            names: vec![name.to_string()],
            name_index: vec![0; chunk.len()],
            steps: (first..first + chunk.len() as i64).collect(),
            values: chunk.to_vec(),
            wall_times_us: vec![0; chunk.len()],
        };
        store
            .write_scalars(writer, sequence, "bench", batch)
            .await
            .expect("write");
    }
}

async fn time(engine: &QueryEngine, sql: &str) -> Duration {
    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let (_, stream) = engine
            .sql(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _: Vec<_> = stream.try_collect().await.expect("run");
        times.push(started.elapsed());
    }
    times.sort();
    times[1]
}

/// Builds a benchmark query for a `WHERE` filter selecting the series.
type QueryFor = Box<dyn Fn(&str) -> String>;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).expect("store"));
    store
        .create_run(CreateRun {
            run_id: Some("bench".into()),
            ..Default::default()
        })
        .await
        .expect("run");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    eprintln!("writing 1 series x 1M points and 1,000 series x 10k points ...");
    write_series(&store, "big", "big", &curve(1_000_000, &mut seed)).await;
    for s in 0..1000 {
        write_series(
            &store,
            &format!("w{s}"),
            &format!("many/{s:04}"),
            &curve(10_000, &mut seed),
        )
        .await;
    }
    let flusher = store.clone();
    tokio::task::spawn_blocking(move || flusher.flush())
        .await
        .expect("join")
        .expect("flush");
    let engine = QueryEngine::new(store.clone()).expect("engine");

    let window = |f: &str, filter: &str| {
        format!("SELECT max(x) FROM (SELECT {f} OVER (PARTITION BY run_id, name ORDER BY step) AS x FROM scalars WHERE {filter})")
    };
    let aggregate = |f: &str, filter: &str| {
        format!("SELECT name, {f} FROM scalars WHERE {filter} GROUP BY name")
    };
    let cases: Vec<(&str, QueryFor)> = vec![
        (
            "ema(value, 0.1)",
            Box::new(move |w| window("ema(value, 0.1)", w)),
        ),
        (
            "smooth(value, 0.6)",
            Box::new(move |w| window("smooth(value, 0.6)", w)),
        ),
        (
            "rolling_zscore(value, 50)",
            Box::new(move |w| window("rolling_zscore(value, 50)", w)),
        ),
        (
            "rolling_zscore(value, 50, true)",
            Box::new(move |w| window("rolling_zscore(value, 50, true)", w)),
        ),
        (
            "is_spike(value, 50, 6)",
            Box::new(move |w| {
                format!("SELECT count(*) FROM (SELECT is_spike(value, 50, 6) OVER (PARTITION BY run_id, name ORDER BY step) AS s FROM scalars WHERE {w}) WHERE s")
            }),
        ),
        (
            "spike_rate(value, 50, 6 ORDER BY step)",
            Box::new(move |w| aggregate("spike_rate(value, 50, 6 ORDER BY step)", w)),
        ),
        (
            "first_sustained(step, value < 1.0)",
            Box::new(move |w| aggregate("first_sustained(step, value < 1.0)", w)),
        ),
        (
            "downsample(step, value, 1000)",
            Box::new(move |w| aggregate("downsample(step, value, 1000)", w)),
        ),
        (
            "fit_power_law(step, value)",
            Box::new(move |w| aggregate("fit_power_law(step, value)", w)),
        ),
    ];
    println!("steplake SQL function benchmark (median of 3, in process, data in Parquet)");
    println!(
        "{:<42} {:>16} {:>22}",
        "function", "1 x 1M points", "1,000 x 10k points"
    );
    for (label, sql) in &cases {
        let one = time(&engine, &sql("name = 'big'")).await;
        let many = time(&engine, &sql("name LIKE 'many/%'")).await;
        println!("{label:<42} {:>16} {:>22}", ms(one), ms(many));
    }

    // changepoints: PELT is exact and O(n²) in the worst case (few changes in a
    // long series, as here), so it is timed on prefixes of the 1M-point series.
    for n in [10_000, 100_000] {
        for method in ["pelt", "binseg"] {
            let sql = format!(
                "SELECT changepoints(step, value, '{method}') FROM scalars WHERE name = 'big' AND step < {n}"
            );
            println!(
                "{:<42} {:>16}   (first {n} points of the 1M series)",
                format!("changepoints(step, value, '{method}')"),
                ms(time(&engine, &sql).await)
            );
        }
    }

    // changepoints beside ruptures on the same 5,000 points.
    let n = 5_000;
    let values = curve(n, &mut seed);
    let penalty = 0.05;
    write_series(&store, "cmp", "compare", &values).await;
    let sql = format!("SELECT changepoints(step, value, 'pelt', {penalty:?}, 2) FROM scalars WHERE name = 'compare'");
    let ours = time(&engine, &sql).await;
    let input = dir.path().join("compare.txt");
    std::fs::write(
        &input,
        values
            .iter()
            .map(|v| format!("{v:?}\n"))
            .collect::<String>(),
    )
    .expect("write input");
    let python = python::python();
    let script = format!("{}/../../benches/ruptures_time.py", python::manifest_dir());
    let out = Command::new(&python)
        .args([
            script.as_str(),
            input.to_str().expect("utf-8 path"),
            &penalty.to_string(),
        ])
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let theirs: f64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("seconds");
            println!(
                "changepoints pelt on {n} points: steplake {} vs ruptures {:.1} ms = {:.0}x faster",
                ms(ours),
                theirs * 1e3,
                theirs / ours.as_secs_f64()
            );
        }
        Ok(out) => println!(
            "ruptures comparison skipped: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => println!("ruptures comparison skipped: cannot run {python}: {e}"),
    }
}
