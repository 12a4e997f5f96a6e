//! Queries cannot take the server's memory, time or turns: a query past the
//! memory pool fails with Overloaded (the process lives on), one past its
//! time is stopped, one past the concurrency limit waits and then gives up,
//! and a query dropped by its client gives its turn back at once.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use steplake_core::ScalarBatch;
use steplake_query::{QueryEngine, QueryError, QueryOptions};
use steplake_store::Store;

/// A store with `n` points of 10 series, flushed to Parquet.
async fn store_with(n: i64) -> (tempfile::TempDir, Arc<Store>) {
    let (dir, store) = common::store_with_run().await;
    let batch = ScalarBatch {
        names: (0..10).map(|i| format!("s{i}")).collect(),
        name_index: (0..n).map(|i| (i % 10) as u32).collect(),
        steps: (0..n).map(|i| i / 10).collect(),
        values: (0..n).map(|i| i as f64).collect(),
        wall_times_us: vec![1_000; n as usize],
    };
    store
        .write_scalars("w", 1, "r", batch)
        .await
        .expect("write");
    store.flush().expect("flush");
    (dir, store)
}

fn engine(store: &Arc<Store>, options: QueryOptions) -> QueryEngine {
    QueryEngine::with_options(store.clone(), options).expect("engine")
}

async fn answers(engine: &QueryEngine) {
    let (_, batches) = engine
        .sql_collect("SELECT 1 AS one")
        .await
        .expect("still answers");
    assert_eq!(batches[0].num_rows(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_the_memory_pool_fails_and_the_server_answers_after() {
    let (_dir, store) = store_with(400_000).await;
    let engine = engine(
        &store,
        QueryOptions {
            memory_bytes: 4 << 20,
            ..QueryOptions::default()
        },
    );
    let err = engine
        .sql_collect(
            "SELECT count(*) FROM scalars a JOIN scalars b ON a.step = b.step AND a.name = b.name",
        )
        .await
        .expect_err("a self-join past 4 MiB");
    assert!(matches!(err, QueryError::Overloaded(_)), "{err:?}");
    assert!(err.to_string().contains("more memory"), "{err}");
    answers(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_time_is_stopped() {
    let (_dir, store) = store_with(100_000).await;
    let engine = engine(
        &store,
        QueryOptions {
            timeout: Some(Duration::from_millis(500)),
            ..QueryOptions::default()
        },
    );
    let started = Instant::now();
    let err = engine
        .sql_collect("SELECT sum(a.value * b.value) FROM scalars a, scalars b")
        .await
        .expect_err("a cross join of 10^10 rows");
    assert!(matches!(err, QueryError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    answers(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_past_the_concurrency_limit_wait_and_a_dropped_one_gives_its_turn_back() {
    let (_dir, store) = store_with(100_000).await;
    let engine = engine(
        &store,
        QueryOptions {
            max_concurrent: 1,
            queue_timeout: Duration::from_millis(300),
            ..QueryOptions::default()
        },
    );
    // Started and not read: it holds the only turn.
    let (_, held) = engine
        .sql("SELECT a.step FROM scalars a, scalars b")
        .await
        .expect("first query");
    let err = engine
        .sql_collect("SELECT 1")
        .await
        .expect_err("no turn within the time limit");
    assert!(matches!(err, QueryError::Overloaded(_)), "{err:?}");
    assert!(err.to_string().contains("1 queries are running"), "{err}");
    // The client goes away: the turn comes back at once.
    drop(held);
    answers(&engine).await;
}
