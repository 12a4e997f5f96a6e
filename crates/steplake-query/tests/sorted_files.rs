//! A window over every series reads the sorted files merged run by run,
//! with no sort of the whole table, and evaluates each series as it
//! completes (issue 24); it gives the same answers as before, from files
//! of several flushes, buffered rows and a series written twice.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type, UInt64Type};
use steplake_core::ScalarBatch;
use steplake_query::{QueryEngine, QueryOptions};

mod common;

const NAMES: [&str; 3] = ["a", "b", "c"];

/// (run, name) → step → value, the latest write of each step.
type Expected = BTreeMap<(String, String), BTreeMap<i64, f64>>;

/// (run, name, step) → (row_number, lag(step), ema) as the query gave them.
type Answers = BTreeMap<(String, String, i64), (u64, Option<i64>, f64)>;

fn value(run: usize, name: usize, step: i64, version: u32) -> f64 {
    ((step * 7 + name as i64 * 3 + run as i64) % 11) as f64 + f64::from(version) * 100.0
}

/// Writes `steps` of every series of `run` (`version` changes the values).
async fn write(
    store: &steplake_store::Store,
    sequence: &mut u64,
    run: (usize, &str),
    names: &[&str],
    steps: std::ops::Range<i64>,
    version: u32,
    expected: &mut Expected,
) {
    let mut batch = ScalarBatch {
        names: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    };
    for step in steps {
        for (i, name) in names.iter().enumerate() {
            let index = NAMES.iter().position(|n| n == name).expect("name");
            let v = value(run.0, index, step, version);
            batch.name_index.push(i as u32);
            batch.steps.push(step);
            batch.values.push(v);
            batch.wall_times_us.push(1_000);
            expected
                .entry((run.1.to_string(), name.to_string()))
                .or_default()
                .insert(step, v);
        }
    }
    *sequence += 1;
    store
        .write_scalars("w", *sequence, run.1, batch)
        .await
        .expect("write");
}

fn engine(store: &std::sync::Arc<steplake_store::Store>) -> QueryEngine {
    engine_with_threads(store, 2)
}

fn engine_with_threads(
    store: &std::sync::Arc<steplake_store::Store>,
    threads: usize,
) -> QueryEngine {
    let options = QueryOptions {
        threads,
        ..Default::default()
    };
    QueryEngine::with_options(store.clone(), options).expect("engine")
}

const WINDOWS: &str = "SELECT run_id, name, step, \
       row_number() OVER (PARTITION BY run_id, name ORDER BY step) AS n, \
       lag(step) OVER (PARTITION BY run_id, name ORDER BY step) AS previous, \
       ema(value, 0.5) OVER (PARTITION BY run_id, name ORDER BY step) AS e \
     FROM scalars";

/// Checks every row of [`WINDOWS`] against the series written.
async fn check_windows(engine: &QueryEngine, expected: &Expected) {
    let (_, batches) = engine.sql_collect(WINDOWS).await.expect("query");
    let mut seen = 0;
    let mut rows = Answers::new();
    for batch in &batches {
        let runs = batch.column(0).as_string::<i32>();
        let names = batch.column(1).as_string::<i32>();
        let steps = batch.column(2).as_primitive::<Int64Type>();
        let numbers = batch.column(3).as_primitive::<UInt64Type>();
        let previous = batch.column(4).as_primitive::<Int64Type>();
        let emas = batch.column(5).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            let before = (!previous.is_null(i)).then(|| previous.value(i));
            rows.insert(
                (runs.value(i).into(), names.value(i).into(), steps.value(i)),
                (numbers.value(i), before, emas.value(i)),
            );
            seen += 1;
        }
    }
    let points: usize = expected.values().map(BTreeMap::len).sum();
    assert_eq!(seen, points, "one row per point");
    for ((run, name), series) in expected {
        let mut ema: Option<f64> = None;
        let mut before: Option<i64> = None;
        for (i, (&step, &v)) in series.iter().enumerate() {
            let e = ema.map_or(v, |e| 0.5 * v + 0.5 * e);
            let got = rows[&(run.clone(), name.clone(), step)];
            assert_eq!(got.0, i as u64 + 1, "row_number of {run}/{name} at {step}");
            assert_eq!(got.1, before, "lag(step) of {run}/{name} at {step}");
            assert!(
                (got.2 - e).abs() < 1e-9,
                "ema of {run}/{name} at {step}: {got:?} vs {e}"
            );
            ema = Some(e);
            before = Some(step);
        }
    }
}

/// The physical plan of `sql`, one operator per line.
async fn physical_plan(engine: &QueryEngine, sql: &str) -> Vec<String> {
    let (_, batches) = engine
        .sql_collect(&format!("EXPLAIN {sql}"))
        .await
        .expect("explain");
    for batch in &batches {
        let kinds = batch.column(0).as_string::<i32>();
        let plans = batch.column(1).as_string::<i32>();
        for i in 0..batch.num_rows() {
            if kinds.value(i) == "physical_plan" {
                return plans.value(i).lines().map(str::to_string).collect();
            }
        }
    }
    panic!("no physical plan for {sql}");
}

fn position(plan: &[String], operator: &str) -> Option<usize> {
    plan.iter()
        .position(|line| line.trim_start().starts_with(operator))
}

#[tokio::test]
async fn a_window_over_every_series_merges_the_sorted_files_instead_of_sorting() {
    let (_dir, store) = common::store_with_run().await;
    common::add_run(&store, "q").await;
    let (mut sequence, mut expected) = (0, Expected::new());
    // Three flushes, each a later range of steps of every series.
    for steps in [0..40, 40..50, 50..60] {
        for run in [(0, "r"), (1, "q")] {
            write(
                &store,
                &mut sequence,
                run,
                &NAMES,
                steps.clone(),
                0,
                &mut expected,
            )
            .await;
        }
        store.flush().expect("flush");
    }
    let engine = engine(&store);
    let plan = physical_plan(&engine, WINDOWS).await;
    let text = plan.join("\n");
    assert_eq!(position(&plan, "SortExec"), None, "no sort left:\n{text}");
    // The merged series are dealt to the two partitions whole, with no
    // hash repartition.
    let merge = position(&plan, "RunMergeExec").unwrap_or_else(|| panic!("no merge:\n{text}"));
    assert!(plan[merge].contains("dealt by"), "{text}");
    assert_eq!(position(&plan, "RepartitionExec"), None, "{text}");
    // ema needs its whole series: evaluated as each one completes, not
    // after collecting every row.
    assert!(position(&plan, "StreamingWindowExec").is_some(), "{text}");
    assert_eq!(position(&plan, "WindowAggExec"), None, "{text}");
    check_windows(&engine, &expected).await;

    // On one thread the sort that merges partitions itself goes the same way.
    let single = engine_with_threads(&store, 1);
    let plan = physical_plan(&single, WINDOWS).await;
    let text = plan.join("\n");
    assert_eq!(position(&plan, "SortExec"), None, "no sort left:\n{text}");
    assert!(position(&plan, "RunMergeExec").is_some(), "{text}");
    check_windows(&single, &expected).await;

    // Under a join, which may count on the hash of a repartition, the
    // merge is hash-repartitioned, still with no sort.
    let joined = format!(
        "SELECT count(*) AS n, sum(w.n) AS numbers FROM ({WINDOWS}) w \
         JOIN (SELECT DISTINCT run_id, name FROM scalars) s \
         ON w.run_id = s.run_id AND w.name = s.name"
    );
    let plan = physical_plan(&engine, &joined).await;
    let text = plan.join("\n");
    let merge = position(&plan, "RunMergeExec").unwrap_or_else(|| panic!("no merge:\n{text}"));
    assert!(!plan[merge].contains("dealt by"), "{text}");
    assert!(
        plan[merge - 1].contains("RepartitionExec: partitioning=Hash"),
        "{text}"
    );
    let (_, batches) = engine.sql_collect(&joined).await.expect("join");
    let counts = batches[0].column(0).as_primitive::<Int64Type>().value(0);
    let numbers = batches[0].column(1).as_primitive::<UInt64Type>().value(0);
    let series_rows: Vec<u64> = expected.values().map(|s| s.len() as u64).collect();
    assert_eq!(counts as u64, series_rows.iter().sum::<u64>());
    assert_eq!(
        numbers,
        series_rows.iter().map(|n| n * (n + 1) / 2).sum::<u64>()
    );

    // Rows still in the buffer are sorted on their own, under the merge.
    for run in [(0, "r"), (1, "q")] {
        write(&store, &mut sequence, run, &NAMES, 60..65, 0, &mut expected).await;
    }
    let plan = physical_plan(&engine, WINDOWS).await;
    let text = plan.join("\n");
    let merge = position(&plan, "RunMergeExec").unwrap_or_else(|| panic!("no merge:\n{text}"));
    let sort = position(&plan, "SortExec").unwrap_or_else(|| panic!("no sort:\n{text}"));
    assert!(
        merge < sort,
        "only the buffer is sorted, under the merge:\n{text}"
    );
    check_windows(&engine, &expected).await;

    // A series written again over steps it has (the latest write wins) is
    // read apart from the others; the answers stay right.
    write(
        &store,
        &mut sequence,
        (0, "r"),
        &["b"],
        10..20,
        1,
        &mut expected,
    )
    .await;
    check_windows(&engine, &expected).await;
    store.flush().expect("flush");
    check_windows(&engine, &expected).await;
}

#[tokio::test]
async fn a_window_over_one_series_by_step_keeps_its_sort() {
    // The files are sorted by (run_id, name, step): one name of possibly
    // several runs is not in step order, so this sort must stay.
    let (_dir, store) = common::store_with_run().await;
    let (mut sequence, mut expected) = (0, Expected::new());
    for steps in [0..10, 10..20] {
        write(
            &store,
            &mut sequence,
            (0, "r"),
            &NAMES,
            steps,
            0,
            &mut expected,
        )
        .await;
        store.flush().expect("flush");
    }
    let engine = engine(&store);
    let sql = "SELECT step, avg(value) OVER (ORDER BY step ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM scalars WHERE name = 'a'";
    let plan = physical_plan(&engine, sql).await;
    assert!(position(&plan, "SortExec").is_some(), "{}", plan.join("\n"));
    let (_, batches) = engine.sql_collect(sql).await.expect("query");
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 20);
}

#[tokio::test]
async fn one_file_read_in_byte_ranges_is_merged_not_sorted() {
    // One file cut into ranges gives partitions that are each sorted: the
    // sort under the window is just as needless as over several files.
    let (_dir, store) = common::store_with_run().await;
    let (mut sequence, mut expected) = (0, Expected::new());
    // Enough rows for several row groups, so that both ranges have some.
    for steps in [0..100_000, 100_000..200_000, 200_000..300_000] {
        write(
            &store,
            &mut sequence,
            (0, "r"),
            &NAMES,
            steps,
            0,
            &mut expected,
        )
        .await;
    }
    store.flush().expect("flush");
    let engine = engine(&store);
    {
        let state = engine.context().state_ref();
        let mut state = state.write();
        state
            .config_mut()
            .options_mut()
            .optimizer
            .repartition_file_min_size = 1;
    }
    let plan = physical_plan(&engine, WINDOWS).await;
    let text = plan.join("\n");
    assert!(
        text.contains("DataSourceExec: file_groups={2 groups"),
        "{text}"
    );
    assert_eq!(position(&plan, "SortExec"), None, "no sort left:\n{text}");
    assert!(position(&plan, "RunMergeExec").is_some(), "{text}");
    check_windows(&engine, &expected).await;
}
