//! The statistics that prune data files are read once per file, not once
//! per query (issue 24: many small files before compaction): the engine's
//! runtime keeps them for every later query.

use steplake_core::ScalarBatch;
use steplake_query::QueryEngine;
use steplake_store::{CompactionPolicy, StoreOptions};

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_files_statistics_are_kept_for_later_queries() {
    let options = StoreOptions {
        compaction: CompactionPolicy {
            min_files: 0,
            ..Default::default()
        },
        ..StoreOptions::default()
    };
    let (_dir, store) = common::store_with_run_and(options).await;
    for flush in 0..3i64 {
        let batch = ScalarBatch {
            names: vec!["loss".into()],
            name_index: vec![0; 10],
            steps: (flush * 10..flush * 10 + 10).collect(),
            values: vec![1.0; 10],
            wall_times_us: vec![0; 10],
        };
        store
            .write_scalars("w", flush as u64 + 1, "r", batch)
            .await
            .expect("write");
        store.flush().expect("flush");
    }
    let engine = QueryEngine::new(store).expect("engine");
    let cache = engine
        .context()
        .runtime_env()
        .cache_manager
        .get_file_statistic_cache()
        .expect("the runtime has a statistics cache");
    assert_eq!(cache.len(), 0);
    let sql = "SELECT count(*) FROM scalars WHERE name = 'loss' AND step >= 5";
    for _ in 0..2 {
        let (_, batches) = engine.sql_collect(sql).await.expect(sql);
        let count = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>();
        assert_eq!(count.map(|c| c.value(0)), Some(25));
    }
    assert_eq!(
        cache.len(),
        3,
        "one entry per data file, kept between queries"
    );
}
