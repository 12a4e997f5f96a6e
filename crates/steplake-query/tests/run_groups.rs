//! GROUP BY run_id / name finds each row's group once per run of a
//! series' rows (`RunGroupedAggregateExec`), with the answers DataFusion's
//! own hash aggregate gives: across flushes, a compacted file, buffered
//! rows (in write order, so runs of one row), two runs, a rewritten series,
//! NaN values, and a memory share too small to hold every group (issue 24).

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use steplake_core::ScalarBatch;
use steplake_query::{QueryEngine, QueryOptions};
use steplake_store::{CompactionPolicy, StoreOptions};

mod common;

/// Writes `steps` of series `names` of `run`, every series at a step before
/// the next step (the order trainers write in). Every 17th point is NaN.
async fn write(
    store: &steplake_store::Store,
    sequence: u64,
    run: &str,
    names: &[String],
    steps: std::ops::Range<i64>,
    version: f64,
) {
    let mut batch = ScalarBatch {
        names: names.to_vec(),
        ..Default::default()
    };
    for step in steps {
        for i in 0..names.len() {
            let point = step * 7 + i as i64;
            let value = if point % 17 == 0 {
                f64::NAN
            } else {
                (point % 23) as f64 + version
            };
            batch.name_index.push(i as u32);
            batch.steps.push(step);
            batch.values.push(value);
            batch.wall_times_us.push(1_000);
        }
    }
    store
        .write_scalars("w", sequence, run, batch)
        .await
        .expect("write");
}

/// Rows of `sql` as text, sorted; floats rounded to 9 digits (the order in
/// which partitions' partial sums merge is not fixed).
async fn rows(engine: &QueryEngine, sql: &str) -> Vec<String> {
    let (_, batches) = engine.sql_collect(sql).await.expect(sql);
    let mut out = Vec::new();
    for batch in &batches {
        for i in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .map(|c| {
                    if c.is_null(i) {
                        "NULL".to_string()
                    } else if let Some(v) = c.as_primitive_opt::<Float64Type>() {
                        format!("{:.9e}", v.value(i))
                    } else if let Some(v) = c.as_primitive_opt::<Int64Type>() {
                        v.value(i).to_string()
                    } else {
                        arrow::util::display::array_value_to_string(c, i).expect("text")
                    }
                })
                .collect();
            out.push(cells.join(","));
        }
    }
    out.sort();
    out
}

async fn plan(engine: &QueryEngine, sql: &str) -> String {
    let (_, batches) = engine
        .sql_collect(&format!("EXPLAIN {sql}"))
        .await
        .expect("explain");
    let mut text = String::new();
    for batch in &batches {
        let plans = batch.column(1).as_string::<i32>();
        for i in 0..batch.num_rows() {
            text.push_str(plans.value(i));
            text.push('\n');
        }
    }
    text
}

const AGGREGATES: &str = "count(*), count(value), sum(value), avg(value), min(step), \
                          max(value), stddev(value), first_sustained(step, value >= 3.0, 2), \
                          last_value(value ORDER BY step), bool_and(value < 30)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouping_by_runs_gives_the_hash_aggregates_answers() {
    let (_dir, store) = common::store_with_run_and(StoreOptions {
        compaction: CompactionPolicy {
            min_files: 3,
            ..CompactionPolicy::default()
        },
        ..StoreOptions::default()
    })
    .await;
    common::add_run(&store, "q").await;
    let names: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
    let mut sequence = 0;
    let mut next = || {
        sequence += 1;
        sequence
    };
    // Three flushes (compacted into one file), two more files, a series
    // written again (served from memory), and rows left in the buffer.
    for steps in [0..300, 300..700, 700..900, 900..1000, 1000..1100] {
        write(&store, next(), "r", &names, steps.clone(), 0.0).await;
        write(&store, next(), "q", &names[..3], steps, 0.5).await;
        store.flush_and_compact().expect("flush");
    }
    write(&store, next(), "q", &names[1..2], 100..120, 0.25).await;
    write(&store, next(), "r", &names, 1100..1150, 0.0).await;

    let engine = QueryEngine::with_options(
        store.clone(),
        QueryOptions {
            threads: 3,
            ..QueryOptions::default()
        },
    )
    .expect("engine");
    for (by, by_hash) in [
        ("name", "lower(name)"),
        ("run_id", "lower(run_id)"),
        ("run_id, name", "lower(run_id), lower(name)"),
    ] {
        let runs = format!("SELECT {by}, {AGGREGATES} FROM scalars GROUP BY {by}");
        let hashed = format!("SELECT {by_hash}, {AGGREGATES} FROM scalars GROUP BY {by_hash}");
        let runs_plan = plan(&engine, &runs).await;
        assert!(runs_plan.contains("RunGroupedAggregateExec"), "{runs_plan}");
        assert!(
            !runs_plan
                .lines()
                .any(|l| l.trim_start().starts_with("AggregateExec: mode=Partial")),
            "{runs_plan}"
        );
        let hashed_plan = plan(&engine, &hashed).await;
        assert!(
            !hashed_plan.contains("RunGroupedAggregateExec"),
            "{hashed_plan}"
        );
        let got = rows(&engine, &runs).await;
        assert!(got.len() >= 2, "{got:?}");
        assert_eq!(got, rows(&engine, &hashed).await, "GROUP BY {by}");
    }

    // A filter, a WHERE on the series, and DISTINCT (left to DataFusion).
    for (runs, hashed) in [
        (
            "SELECT name, count(*) FILTER (WHERE value > 3), sum(value) FROM scalars \
             WHERE run_id = 'q' GROUP BY name",
            "SELECT lower(name), count(*) FILTER (WHERE value > 3), sum(value) FROM scalars \
             WHERE run_id = 'q' GROUP BY lower(name)",
        ),
        (
            "SELECT name, count(DISTINCT value) FROM scalars GROUP BY name",
            "SELECT lower(name), count(DISTINCT value) FROM scalars GROUP BY lower(name)",
        ),
    ] {
        assert_eq!(rows(&engine, runs).await, rows(&engine, hashed).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_groups_go_on_early_when_memory_is_short() {
    let (_dir, store) = common::store_with_run().await;
    // 4,000 series, first flushed, then again in the buffer.
    let names: Vec<String> = (0..4000).map(|i| format!("series/{i:05}")).collect();
    write(&store, 1, "r", &names, 0..6, 0.0).await;
    store.flush().expect("flush");
    write(&store, 2, "r", &names, 6..9, 0.0).await;
    let roomy = QueryEngine::new(store.clone()).expect("engine");
    let sql = "SELECT name, count(*), sum(value), max(step) FROM scalars GROUP BY name";
    let want = rows(&roomy, sql).await;
    assert_eq!(want.len(), 4000);
    let tight = QueryEngine::with_options(
        store.clone(),
        QueryOptions {
            memory_bytes: 1 << 20,
            threads: 2,
            ..QueryOptions::default()
        },
    )
    .expect("engine");
    let analyzed = plan(&tight, &format!("ANALYZE {sql}")).await;
    let early_emits: usize = analyzed
        .lines()
        .filter(|l| l.contains("RunGroupedAggregateExec"))
        .filter_map(|l| l.split("early_emits=").nth(1))
        .filter_map(|rest| rest.split([',', ']']).next()?.trim().parse::<usize>().ok())
        .sum();
    assert!(early_emits > 0, "{analyzed}");
    assert_eq!(rows(&tight, sql).await, want);

    let by_name: BTreeMap<String, usize> = want
        .iter()
        .map(|row| {
            let mut cells = row.split(',');
            let name = cells.next().expect("name").to_string();
            let count = cells.next().expect("count").parse().expect("count");
            (name, count)
        })
        .collect();
    assert!(by_name.values().all(|&count| count == 9), "{by_name:?}");
}
