//! A data file damaged on disk: a query that reads it fails with an error
//! naming the file, never with wrong values, and queries that do not touch
//! it keep working.

use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, Int64Type};
use steplake_core::ScalarBatch;
use steplake_query::QueryEngine;
use steplake_store::{CreateRun, SeriesFilter, Store, StoreOptions};

fn points(n: i64) -> ScalarBatch {
    ScalarBatch {
        names: vec!["loss".into()],
        name_index: vec![0; n as usize],
        steps: (0..n).collect(),
        values: (0..n).map(|s| s as f64).collect(),
        wall_times_us: vec![1_000; n as usize],
    }
}

/// A store holding runs `a` and `b`, each flushed to its own file; returns
/// the data directory and the two files' paths.
async fn two_files() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let mut paths = Vec::new();
    for (sequence, run) in [(1, "a"), (2, "b")] {
        store
            .create_run(CreateRun {
                run_id: Some(run.into()),
                ..Default::default()
            })
            .await
            .expect("run");
        store
            .write_scalars("w", sequence, run, points(20_000))
            .await
            .expect("write");
        store.flush().expect("flush");
        let filter = SeriesFilter {
            run_ids: Some(vec![run.to_string()]),
            ..SeriesFilter::default()
        };
        let view = store.scalars_view(&filter, None);
        assert_eq!(view.files.len(), 1);
        paths.push(dir.path().join(&view.files[0].path));
    }
    store.shutdown().expect("shutdown");
    let b = paths.pop().expect("b");
    let a = paths.pop().expect("a");
    (dir, a, b)
}

async fn sum(engine: &QueryEngine, run: &str) -> Result<f64, String> {
    let (_, batches) = engine
        .sql_collect(&format!(
            "SELECT sum(value) AS s, count(*) AS n FROM scalars WHERE run_id = '{run}'"
        ))
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(
        batches[0].column(1).as_primitive::<Int64Type>().value(0),
        20_000
    );
    Ok(batches[0].column(0).as_primitive::<Float64Type>().value(0))
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .expect("name")
        .to_string_lossy()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bytes_give_an_error_naming_the_file_not_wrong_values() {
    let (dir, a, _) = two_files().await;
    let len = std::fs::metadata(&a).expect("metadata").len();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&a)
        .expect("open");
    file.seek(SeekFrom::Start(len / 3)).expect("seek");
    file.write_all(&[0x5a; 8]).expect("flip");
    drop(file);

    let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).expect("reopen"));
    let engine = QueryEngine::new(store).expect("engine");
    let err = sum(&engine, "a").await.expect_err("damaged");
    assert!(err.contains(&file_name(&a)), "{err}");
    assert_eq!(sum(&engine, "b").await, Ok(199_990_000.0));
    let err = engine
        .sql_collect("SELECT count(*) FROM scalars")
        .await
        .expect_err("reads the damaged file")
        .to_string();
    assert!(err.contains(&file_name(&a)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_file_breaks_only_the_queries_that_read_it() {
    let (dir, _, b) = two_files().await;
    let len = std::fs::metadata(&b).expect("metadata").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&b)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");

    let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).expect("start-up"));
    let engine = QueryEngine::new(store).expect("engine");
    assert_eq!(sum(&engine, "a").await, Ok(199_990_000.0));
    let err = sum(&engine, "b").await.expect_err("truncated");
    assert!(err.contains(&file_name(&b)), "{err}");
}
