//! The series aggregates answer a GROUP BY through one accumulator for all
//! groups (`SeriesGroups`); each group's answer must be exactly the answer
//! of the same aggregate over that series alone (one `SeriesAccumulator`),
//! with points spread over files and the buffer, out of order, and merged
//! across partitions.

use arrow::util::display::{ArrayFormatter, FormatOptions};
use steplake_core::ScalarBatch;
use steplake_query::{QueryEngine, QueryOptions};

mod common;

const SERIES: [&str; 3] = ["loss", "grad_norm", "lr"];

/// Steps `steps` of every series, in a shuffled order, with a spike every
/// 37 steps and a level shift at step 150.
fn points(steps: std::ops::Range<i64>) -> ScalarBatch {
    let mut batch = ScalarBatch {
        names: SERIES.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let mut order: Vec<i64> = steps.collect();
    order.sort_by_key(|s| (s * 7919) % 101);
    for step in order {
        for (i, _) in SERIES.iter().enumerate() {
            let level = if step < 150 { 1.0 } else { 0.2 } * (i + 1) as f64;
            let spike = if step % 37 == 0 { 5.0 } else { 0.0 };
            let wiggle = ((step * 31 + i as i64) % 17) as f64 * 0.01;
            batch.name_index.push(i as u32);
            batch.steps.push(step);
            batch.values.push(level + spike + wiggle);
            batch.wall_times_us.push(1_000 + step);
        }
    }
    batch
}

/// Each cell of the query's second column, as text.
async fn answers(engine: &QueryEngine, sql: &str) -> Vec<String> {
    let (_, batches) = engine.sql_collect(sql).await.expect(sql);
    let mut cells = Vec::new();
    for batch in batches {
        let column = batch.columns().last().expect("a column");
        let format =
            ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default()).expect("formatter");
        for row in 0..batch.num_rows() {
            cells.push(format.value(row).to_string());
        }
    }
    cells
}

/// An engine over `store` that splits scans into 4 partitions, so partial
/// states are merged.
fn four_partitions(store: std::sync::Arc<steplake_store::Store>) -> QueryEngine {
    QueryEngine::with_options(
        store,
        QueryOptions {
            threads: 4,
            ..QueryOptions::default()
        },
    )
    .expect("engine")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_answers_equal_each_series_alone() {
    let (_dir, store) = common::store_with_run().await;
    for (writer_seq, steps) in [(1, 0..120), (2, 120..260)] {
        store
            .write_scalars("w", writer_seq, "r", points(steps))
            .await
            .expect("write");
        store.flush().expect("flush");
    }
    // These stay in the buffer.
    store
        .write_scalars("w", 3, "r", points(260..300))
        .await
        .expect("write");
    let engine = four_partitions(store);
    for aggregate in [
        "downsample(step, value, 7)",
        "changepoints(step, value)",
        "crossing(step, value, 1.5)",
        "crossing(step, value, 1.5, 'down')",
        "spike_rate(value ORDER BY step)",
        "spike_rate(value, 20, 1.5 ORDER BY step)",
        "fit_power_law(step + 1, value)",
        "fit_loss_curve(step, value, 0.01)",
        "fit_loss_curve(step, value, 0.01, 0.5)",
    ] {
        let grouped = answers(
            &engine,
            &format!("SELECT name, {aggregate} FROM scalars GROUP BY name ORDER BY name"),
        )
        .await;
        let mut names: Vec<&str> = SERIES.to_vec();
        names.sort();
        let mut alone = Vec::new();
        for name in names {
            alone.extend(
                answers(
                    &engine,
                    &format!("SELECT {aggregate} FROM scalars WHERE name = '{name}'"),
                )
                .await,
            );
        }
        assert_eq!(grouped, alone, "{aggregate}");
        assert!(
            grouped.iter().all(|a| !a.is_empty()),
            "{aggregate}: {grouped:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fit_with_a_prior_per_group_equals_each_series_alone() {
    let (_dir, store) = common::store_with_run().await;
    store
        .write_scalars("w", 1, "r", points(0..200))
        .await
        .expect("write");
    store.flush().expect("flush");
    store
        .write_scalars("w", 2, "r", points(200..300))
        .await
        .expect("write");
    let engine = four_partitions(store);
    // Each series' prior is the fit of its first 150 steps.
    let fitted = |filter: &str| {
        format!(
            "SELECT s.name, fit_loss_curve(s.step, s.value, 0.01, p.f) FROM scalars s \
             JOIN (SELECT name, fit_loss_curve(step, value, 0.01) AS f FROM scalars \
                   WHERE step < 150 GROUP BY name) p ON s.name = p.name \
             {filter} GROUP BY s.name ORDER BY s.name"
        )
    };
    let grouped = answers(&engine, &fitted("")).await;
    let mut names: Vec<&str> = SERIES.to_vec();
    names.sort();
    let mut alone = Vec::new();
    for name in names {
        alone.extend(answers(&engine, &fitted(&format!("WHERE s.name = '{name}'"))).await);
    }
    assert_eq!(grouped, alone);
    assert!(grouped.iter().all(|a| !a.is_empty()), "{grouped:?}");
}
