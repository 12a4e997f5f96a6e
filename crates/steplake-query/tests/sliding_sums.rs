//! `sum` and `avg` over a ROWS frame (a moving average) give each window's
//! own sum: a NaN, an infinity or a huge value spoils only the windows that
//! hold it, not every window after it (issue 24).
//!
//! DataFusion's sliding accumulators add the row entering a window and
//! subtract the row leaving it. `NaN - NaN`, `inf - inf` and
//! `(1e300 + 1) - 1e300` do not give back what was added, so a loss that
//! went NaN once made the moving average NaN for the rest of the series.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use steplake_core::ScalarBatch;
use steplake_query::QueryEngine;

mod common;

/// Writes `values` as series `name` of run `r`, at steps 0, 1, 2, …
async fn write_series(store: &steplake_store::Store, sequence: u64, name: &str, values: &[f64]) {
    let batch = ScalarBatch {
        names: vec![name.to_string()],
        name_index: vec![0; values.len()],
        steps: (0..values.len() as i64).collect(),
        values: values.to_vec(),
        wall_times_us: vec![1_000; values.len()],
    };
    store
        .write_scalars("w", sequence, "r", batch)
        .await
        .expect("write");
}

/// (name, step) → the query's second column (NULL as None).
async fn answers(engine: &QueryEngine, sql: &str) -> BTreeMap<(String, i64), Option<f64>> {
    let (_, batches) = engine.sql_collect(sql).await.expect("query");
    let mut out = BTreeMap::new();
    for batch in &batches {
        let names = batch.column(0).as_string::<i32>();
        let steps = batch.column(1).as_primitive::<Int64Type>();
        let values = batch.column(2).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            let value = (!values.is_null(i)).then(|| values.value(i));
            out.insert((names.value(i).to_string(), steps.value(i)), value);
        }
    }
    out
}

/// The physical plan of `sql`.
async fn physical_plan(engine: &QueryEngine, sql: &str) -> String {
    let (_, batches) = engine
        .sql_collect(&format!("EXPLAIN {sql}"))
        .await
        .expect("explain");
    let mut plan = String::new();
    for batch in &batches {
        let kinds = batch.column(0).as_string::<i32>();
        let plans = batch.column(1).as_string::<i32>();
        for i in 0..batch.num_rows() {
            if kinds.value(i) == "physical_plan" {
                plan.push_str(plans.value(i));
            }
        }
    }
    plan
}

/// The window of row `i` of `len` for `ROWS BETWEEN preceding PRECEDING
/// AND following FOLLOWING` (negative: the other side of the row).
fn frame(i: usize, len: usize, preceding: i64, following: i64) -> std::ops::Range<usize> {
    let start = (i as i64 - preceding).clamp(0, len as i64) as usize;
    let end = (i as i64 + following + 1).clamp(0, len as i64) as usize;
    start..end.max(start)
}

/// `sum` or `avg` of the non-NULL values of `window`, added in order.
fn expected(window: &[Option<f64>], average: bool) -> Option<f64> {
    let present: Vec<f64> = window.iter().flatten().copied().collect();
    if present.is_empty() {
        return None;
    }
    let sum = present.iter().fold(0.0, |s, v| s + v);
    Some(if average {
        sum / present.len() as f64
    } else {
        sum
    })
}

fn same(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b || (a.is_nan() && b.is_nan()),
        (None, None) => true,
        _ => false,
    }
}

#[tokio::test]
async fn a_moving_average_recovers_once_a_nan_an_infinity_or_a_huge_value_leaves_its_window() {
    let (_dir, store) = common::store_with_run().await;
    let values = [
        1.0,
        1e300,
        1.0,
        1.0,
        f64::INFINITY,
        3.0,
        3.0,
        f64::NAN,
        2.0,
        2.0,
        f64::NEG_INFINITY,
        4.0,
        4.0,
    ];
    write_series(&store, 1, "loss", &values).await;
    let engine = QueryEngine::new(store.clone()).expect("engine");
    for (function, average) in [("avg", true), ("sum", false)] {
        for partitioned in [false, true] {
            let over = if partitioned {
                "PARTITION BY run_id, name ORDER BY step"
            } else {
                "ORDER BY step"
            };
            let sql = format!(
                "SELECT name, step, {function}(value) OVER ({over} \
                   ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM scalars"
            );
            let plan = physical_plan(&engine, &sql).await;
            assert!(
                plan.contains("SlidingSumExec") && !plan.contains("BoundedWindowAggExec"),
                "{plan}"
            );
            let got = answers(&engine, &sql).await;
            let got: Vec<Option<f64>> = got.values().copied().collect();
            let want: Vec<Option<f64>> = (0..values.len())
                .map(|i| {
                    let window: Vec<Option<f64>> = values[frame(i, values.len(), 1, 0)]
                        .iter()
                        .map(|v| Some(*v))
                        .collect();
                    expected(&window, average)
                })
                .collect();
            assert!(
                got.iter().zip(&want).all(|(g, w)| same(*g, *w)) && got.len() == want.len(),
                "{sql}:\n got {got:?}\nwant {want:?}"
            );
            // The first window after each spoiled one is a plain number again.
            for (step, mean) in [(3, 1.0), (6, 3.0), (9, 2.0), (12, 4.0)] {
                let want = if average { mean } else { 2.0 * mean };
                assert_eq!(got[step], Some(want), "{sql} at step {step}: {got:?}");
            }
        }
    }
}

/// Every kind of ROWS frame, with NULLs, over series long enough that the
/// window operator gets them in many batches: each answer is its window's
/// own sum or mean, bit for bit (the values are small integers, so any
/// order of adding gives the same sum).
#[tokio::test]
async fn every_rows_frame_gives_each_windows_own_sum_across_batches() {
    let (_dir, store) = common::store_with_run().await;
    let lengths = [("a", 20_000usize), ("b", 3), ("c", 1), ("d", 9_000)];
    let mut series = BTreeMap::new();
    let mut state = 7u64;
    for (sequence, (name, len)) in lengths.iter().enumerate() {
        let values: Vec<f64> = (0..*len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 33) % 1000) as f64 - 500.0
            })
            .collect();
        write_series(&store, sequence as u64 + 1, name, &values).await;
        series.insert(name.to_string(), values);
    }
    store.flush().expect("flush");
    let engine = QueryEngine::new(store.clone()).expect("engine");
    // (frame SQL, preceding, following) as `frame` takes them.
    let frames = [
        ("99 PRECEDING AND CURRENT ROW", 99, 0),
        ("3 PRECEDING AND 2 FOLLOWING", 3, 2),
        ("CURRENT ROW AND 5 FOLLOWING", 0, 5),
        ("5 PRECEDING AND 2 PRECEDING", 5, -2),
        ("2 FOLLOWING AND 4 FOLLOWING", -2, 4),
        ("CURRENT ROW AND CURRENT ROW", 0, 0),
        ("4000 PRECEDING AND 10 FOLLOWING", 4000, 10),
    ];
    // Every seventh step is NULL.
    let argument = "CASE WHEN step % 7 = 3 THEN NULL ELSE value END";
    for (sql_frame, preceding, following) in frames {
        for (function, average) in [("avg", true), ("sum", false)] {
            for partitioned in [false, true] {
                let (over, filter) = if partitioned {
                    ("PARTITION BY run_id, name ORDER BY step", "")
                } else {
                    ("ORDER BY step", " WHERE name = 'a'")
                };
                let sql = format!(
                    "SELECT name, step, {function}({argument}) OVER ({over} \
                       ROWS BETWEEN {sql_frame}) FROM scalars{filter}"
                );
                let got = answers(&engine, &sql).await;
                let mut checked = 0;
                for (name, values) in &series {
                    if !partitioned && name != "a" {
                        continue;
                    }
                    let with_nulls: Vec<Option<f64>> = values
                        .iter()
                        .enumerate()
                        .map(|(step, v)| (step % 7 != 3).then_some(*v))
                        .collect();
                    for i in 0..values.len() {
                        let window = &with_nulls[frame(i, values.len(), preceding, following)];
                        let want = expected(window, average);
                        let answer = got[&(name.clone(), i as i64)];
                        assert!(
                            same(answer, want),
                            "{sql}: {name} step {i}: got {answer:?}, want {want:?}"
                        );
                        checked += 1;
                    }
                }
                assert_eq!(checked, got.len(), "{sql}: one answer per row");
            }
        }
    }
}

/// A `FILTER` sums only the rows it keeps (such frames keep DataFusion's
/// own evaluation: the rule cannot see the filter).
#[tokio::test]
async fn a_filtered_moving_sum_adds_only_the_rows_kept() {
    let (_dir, store) = common::store_with_run().await;
    write_series(&store, 1, "x", &[1.0, 3.0, 1.0, 5.0, 0.5, 2.0, 7.0]).await;
    let engine = QueryEngine::new(store.clone()).expect("engine");
    let sql = "SELECT name, step, sum(value) FILTER (WHERE value > 1) \
           OVER (ORDER BY step ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM scalars";
    let plan = physical_plan(&engine, sql).await;
    assert!(
        plan.contains("BoundedWindowAggExec") && !plan.contains("SlidingSumExec"),
        "{plan}"
    );
    let got = answers(&engine, sql).await;
    let got: Vec<Option<f64>> = got.values().copied().collect();
    let want = [
        None,
        Some(3.0),
        Some(3.0),
        Some(5.0),
        Some(5.0),
        Some(2.0),
        Some(9.0),
    ];
    assert_eq!(got.len(), want.len());
    assert!(
        got.iter().zip(&want).all(|(g, w)| same(*g, *w)),
        "got {got:?}, want {want:?}"
    );
}
