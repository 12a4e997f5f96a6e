//! One snapshot per query: while a writer rewrites the same steps and the
//! buffer is flushed under it, no query sees a (run, name, step) twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use steplake_core::ScalarBatch;
use steplake_query::QueryEngine;
use steplake_store::StoreOptions;

mod common;

fn steps(round: u64) -> ScalarBatch {
    ScalarBatch {
        names: vec!["loss".into()],
        name_index: vec![0; 100],
        steps: (0..100).collect(),
        values: vec![round as f64; 100],
        wall_times_us: vec![1_000; 100],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_and_flushes_during_queries_never_show_a_step_twice() {
    let (_dir, store) = common::store_with_run_and(StoreOptions {
        flush_rows: 250,
        ..StoreOptions::default()
    })
    .await;
    let engine = QueryEngine::new(store.clone()).expect("engine");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            // Bounded: at most 2,000 rewrites of the same 100 steps.
            for round in 1..=2_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                runtime
                    .block_on(store.write_scalars("w", round, "r", steps(round)))
                    .expect("write");
                if round % 7 == 0 {
                    store.flush().expect("flush");
                }
            }
        })
    };
    // Bounded in count and time: at least 10 queries, at most 60 or ~20 s.
    let started = std::time::Instant::now();
    for query in 0..60 {
        if query >= 10 && started.elapsed() > std::time::Duration::from_secs(20) {
            break;
        }
        let (_, batches) = engine
            .sql_collect("SELECT count(*) AS n, count(DISTINCT step) AS d FROM scalars")
            .await
            .expect("query");
        let n = batches[0].column(0).as_primitive::<Int64Type>().value(0);
        let d = batches[0].column(1).as_primitive::<Int64Type>().value(0);
        assert_eq!(n, d, "a step appeared twice in one query");
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
}
