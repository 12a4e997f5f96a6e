//! Compaction: many small flushes become a few files, queries answer the
//! same before and after (latest write kept), and what it replaced is
//! deleted by the next open.

mod common;

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, Int64Type};
use common::store_with_run_and;
use steplake_core::ScalarBatch;
use steplake_query::QueryEngine;
use steplake_store::{file_counts, CompactionPolicy, Manifest, Store, StoreOptions};

fn batch(first: i64, steps: i64, value: f64) -> ScalarBatch {
    let n = steps as usize;
    ScalarBatch {
        names: vec!["loss".into(), "acc".into()],
        name_index: (0..2 * n).map(|i| (i % 2) as u32).collect(),
        steps: (0..2 * n).map(|i| first + (i / 2) as i64).collect(),
        values: vec![value; 2 * n],
        wall_times_us: vec![1_700_000_000_000_000; 2 * n],
    }
}

async fn totals(store: &Arc<Store>) -> (i64, f64, f64) {
    let engine = QueryEngine::new(store.clone()).expect("engine");
    let (_, batches) = engine
        .sql_collect(
            "SELECT count(*) AS n, sum(value) AS total, \
             max(CASE WHEN step = 5 AND name = 'loss' THEN value END) AS rewritten FROM scalars",
        )
        .await
        .expect("query");
    let b = &batches[0];
    (
        b.column(0).as_primitive::<Int64Type>().value(0),
        b.column(1).as_primitive::<Float64Type>().value(0),
        b.column(2).as_primitive::<Float64Type>().value(0),
    )
}

fn parquet_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("data"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_flushes_merge_into_one_file_and_answers_stay_the_same() {
    let options = StoreOptions {
        compaction: CompactionPolicy {
            min_files: 4,
            target_bytes: 1 << 30,
        },
        ..StoreOptions::default()
    };
    let (dir, store) = store_with_run_and(options.clone()).await;
    // Ten flushes of 100 steps each; the second one writes steps 0..100
    // again, so the later value (2.0) must win for them.
    for round in 0..10u64 {
        let (first, value) = match round {
            1 => (0, 2.0),
            r => (r as i64 * 100, 1.0),
        };
        store
            .write_scalars("w", round + 1, "r", batch(first, 100, value))
            .await
            .expect("write");
        let flushing = store.clone();
        tokio::task::spawn_blocking(move || flushing.flush())
            .await
            .unwrap()
            .expect("flush");
    }
    // 9 distinct ranges of 100 steps x 2 series; steps 0..100 hold 2.0.
    let expected = (1800, 200.0 * 2.0 + 1600.0, 2.0);
    assert_eq!(totals(&store).await, expected);
    let manifest = Manifest::load(dir.path()).expect("manifest");
    let scalars = file_counts(&manifest)["scalars"];
    assert!(
        scalars < 10,
        "{scalars} files after 10 flushes: nothing was compacted"
    );
    assert!(
        !manifest.garbage.is_empty(),
        "the merged files wait as garbage"
    );
    assert!(
        store
            .stats()
            .compactions
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );

    store.shutdown().expect("shutdown");
    drop(store);
    let store = Arc::new(Store::open(dir.path(), options).expect("reopen"));
    assert_eq!(totals(&store).await, expected);
    let manifest = Manifest::load(dir.path()).expect("manifest");
    assert!(manifest.garbage.is_empty(), "garbage is deleted at open");
    assert_eq!(parquet_files(dir.path()), manifest.files.len());
}
