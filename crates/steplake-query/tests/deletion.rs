//! Deleting runs and projects: their points and tensors leave the buffer
//! and every file (rewritten or dropped) in one manifest write, other runs
//! answer as before, and the deletion holds after a restart.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use steplake_core::{DType, ScalarBatch};
use steplake_query::QueryEngine;
use steplake_store::{
    CompactionPolicy, CreateRun, RunSelector, Store, StoreError, StoreOptions, TensorPart,
};

fn options() -> StoreOptions {
    StoreOptions {
        compaction: CompactionPolicy {
            min_files: 0,
            ..CompactionPolicy::default()
        },
        ..StoreOptions::default()
    }
}

fn batch(first: i64, steps: i64) -> ScalarBatch {
    let n = steps as usize;
    ScalarBatch {
        names: vec!["loss".into()],
        name_index: vec![0; n],
        steps: (first..first + steps).collect(),
        values: vec![1.0; n],
        wall_times_us: vec![1_700_000_000_000_000; n],
    }
}

fn tensor(run: &str, sequence: u64, step: i64) -> TensorPart {
    let data: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    TensorPart {
        writer_id: format!("t-{run}"),
        sequence,
        run_id: run.into(),
        name: "w0".into(),
        step,
        wall_time_us: 1_700_000_000_000_000,
        dtype: DType::F32,
        shape: vec![2],
        total_len: data.len() as u64,
        offset: 0,
        stats_only: false,
        stats: None,
        data,
    }
}

async fn create(store: &Store, run: &str, project: &str) {
    store
        .create_run(CreateRun {
            run_id: Some(run.into()),
            project: project.into(),
            ..Default::default()
        })
        .await
        .expect("run");
}

async fn flush(store: &Arc<Store>) {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.flush())
        .await
        .unwrap()
        .expect("flush");
}

async fn delete(store: &Arc<Store>, selector: RunSelector) -> Result<Vec<String>, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.delete_runs(selector))
        .await
        .unwrap()
}

/// `SELECT count(*)` of `sql_from`, e.g. `scalars WHERE run_id = 'a'`.
async fn count(store: &Arc<Store>, sql_from: &str) -> i64 {
    let engine = QueryEngine::new(store.clone()).expect("engine");
    let (_, batches) = engine
        .sql_collect(&format!("SELECT count(*) FROM {sql_from}"))
        .await
        .expect("query");
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

/// Every listed tensors file stores its tensor values compressed, as a
/// flush wrote them, including one rewritten without a deleted run's rows.
fn assert_tensor_values_compressed(dir: &std::path::Path) {
    use datafusion::parquet::basic::Compression;
    use datafusion::parquet::file::metadata::ParquetMetaDataReader;
    let manifest = steplake_store::Manifest::load(dir).expect("manifest");
    for file in &manifest.files {
        if file.table != steplake_store::Table::Tensors {
            continue;
        }
        let path = dir.join(&file.path);
        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(&std::fs::File::open(&path).expect("open"))
            .expect("footer");
        for column in metadata.row_groups().iter().flat_map(|rg| rg.columns()) {
            if column.column_path().string().starts_with("tensor") {
                assert!(
                    !matches!(column.compression(), Compression::UNCOMPRESSED),
                    "{}: column {} is stored uncompressed",
                    file.path,
                    column.column_path().string()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_run_leaves_buffer_and_files_and_stays_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open(dir.path(), options()).expect("open"));
    create(&store, "a", "p").await;
    create(&store, "b", "q").await;
    create(&store, "c", "p").await;
    // A file with a and b (and a tensor of each), a file with a only, and
    // buffered points of a and b.
    store
        .write_scalars("wa", 1, "a", batch(0, 100))
        .await
        .unwrap();
    store
        .write_scalars("wb", 1, "b", batch(0, 50))
        .await
        .unwrap();
    store.write_tensor(tensor("a", 1, 0)).await.unwrap();
    store.write_tensor(tensor("b", 1, 0)).await.unwrap();
    flush(&store).await;
    store
        .write_scalars("wa", 2, "a", batch(100, 100))
        .await
        .unwrap();
    flush(&store).await;
    store
        .write_scalars("wa", 3, "a", batch(200, 10))
        .await
        .unwrap();
    store
        .write_scalars("wb", 2, "b", batch(50, 5))
        .await
        .unwrap();
    store
        .write_scalars("wc", 1, "c", batch(0, 7))
        .await
        .unwrap();
    assert_eq!(count(&store, "scalars WHERE run_id = 'a'").await, 210);

    let deleted = delete(&store, RunSelector::Run("a".into()))
        .await
        .expect("delete");
    assert_eq!(deleted, vec!["a".to_string()]);
    assert_eq!(count(&store, "scalars WHERE run_id = 'a'").await, 0);
    assert_eq!(count(&store, "tensors WHERE run_id = 'a'").await, 0);
    assert_eq!(count(&store, "runs WHERE run_id = 'a'").await, 0);
    assert_eq!(count(&store, "scalars WHERE run_id = 'b'").await, 55);
    assert_eq!(count(&store, "tensors WHERE run_id = 'b'").await, 1);
    // The file with only a's rows is gone; the shared ones were rewritten.
    let counts = store.data_file_counts();
    assert_eq!(counts.get("scalars"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("tensors"), Some(&1), "{counts:?}");
    assert_tensor_values_compressed(dir.path());
    let refused = store.write_scalars("wa", 4, "a", batch(300, 1)).await;
    assert!(
        matches!(refused, Err(StoreError::RunNotFound { .. })),
        "{refused:?}"
    );
    let again = delete(&store, RunSelector::Run("a".into())).await;
    assert!(
        matches!(again, Err(StoreError::NothingToDelete { .. })),
        "{again:?}"
    );

    // A project: c goes, b (another project) stays.
    let deleted = delete(&store, RunSelector::Project("p".into()))
        .await
        .expect("delete");
    assert_eq!(deleted, vec!["c".to_string()]);
    assert_eq!(count(&store, "scalars WHERE run_id = 'c'").await, 0);
    let store = Arc::into_inner(store).expect("one owner");
    store.shutdown().expect("shutdown");
    drop(store);

    // After a restart (the WAL replayed, the old files' garbage deleted).
    let store = Arc::new(Store::open(dir.path(), options()).expect("reopen"));
    assert_eq!(count(&store, "scalars WHERE run_id IN ('a', 'c')").await, 0);
    assert_eq!(count(&store, "runs").await, 1);
    assert_eq!(count(&store, "scalars WHERE run_id = 'b'").await, 55);
    assert_eq!(count(&store, "tensors").await, 1);
    let parquet_files = std::fs::read_dir(dir.path().join("data")).unwrap().count();
    assert_eq!(parquet_files, 3, "replaced files are deleted at open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_in_the_wal_past_the_manifest_is_finished_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = Arc::new(Store::open(dir.path(), options()).expect("open"));
        create(&store, "a", "p").await;
        create(&store, "b", "p").await;
        store
            .write_scalars("wa", 1, "a", batch(0, 100))
            .await
            .unwrap();
        store
            .write_scalars("wb", 1, "b", batch(0, 100))
            .await
            .unwrap();
        flush(&store).await;
        // The file must not be rewritten: `data/` turned into a file makes
        // every flush fail, so the deletion is logged and applied, but no
        // manifest write follows it; then the process "dies".
        let data = dir.path().join("data");
        std::fs::rename(&data, dir.path().join("data.moved")).unwrap();
        std::fs::write(&data, b"not a directory").unwrap();
        let deleting = store.clone();
        std::thread::spawn(move || deleting.delete_runs(RunSelector::Run("a".into())));
        for _ in 0..200 {
            if count(&store, "runs WHERE run_id = 'a'").await == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            count(&store, "runs WHERE run_id = 'a'").await,
            0,
            "the deletion applied"
        );
        // The store (and its retrying flusher) is left behind, as after a
        // kill; the directory is copied as it stands.
        std::fs::remove_file(&data).unwrap();
        let copy = dir.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        for entry in walk(dir.path()) {
            let relative = entry.strip_prefix(dir.path()).unwrap();
            if relative.starts_with("copy") || relative.ends_with("LOCK") {
                continue;
            }
            let relative = relative.to_string_lossy().replacen("data.moved", "data", 1);
            let target = copy.join(relative);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(&entry, &target).unwrap();
        }
        std::mem::forget(store);
    }
    let copy = dir.path().join("copy");
    let store = Arc::new(Store::open(&copy, options()).expect("reopen"));
    // The first flush after the open finishes the deletion.
    flush(&store).await;
    assert_eq!(count(&store, "scalars WHERE run_id = 'a'").await, 0);
    assert_eq!(count(&store, "scalars WHERE run_id = 'b'").await, 100);
    assert_eq!(count(&store, "runs").await, 1);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
