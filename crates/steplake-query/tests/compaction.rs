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
    // Once the passes after a flush are done, runs of 4 files are merged.
    let compacting = store.clone();
    tokio::task::spawn_blocking(move || compacting.flush_and_compact())
        .await
        .unwrap()
        .expect("flush and compact");
    let manifest = Manifest::load(dir.path()).expect("manifest");
    let scalars = file_counts(&manifest)["scalars"];
    assert!(
        scalars <= 3,
        "{scalars} files after 10 flushes and the compaction after them"
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

/// A 64-element f32 tensor of run `r` whose values all derive from `seed`.
fn tensor(sequence: u64, name: &str, step: i64, seed: f32) -> steplake_store::TensorPart {
    let data: Vec<u8> = (0..64)
        .flat_map(|i| (seed + i as f32 * 0.25).to_le_bytes())
        .collect();
    steplake_store::TensorPart {
        writer_id: "t".into(),
        sequence,
        run_id: "r".into(),
        name: name.into(),
        step,
        wall_time_us: 1_700_000_000_000_000,
        dtype: steplake_core::DType::F32,
        shape: vec![64],
        total_len: data.len() as u64,
        offset: 0,
        stats_only: false,
        stats: None,
        data,
    }
}

/// (name, step, first element) of every tensor, in that order.
async fn tensor_rows(store: &Arc<Store>) -> Vec<(String, i64, f64)> {
    let engine = QueryEngine::new(store.clone()).expect("engine");
    let (_, batches) = engine
        .sql_collect(
            "SELECT name, step, CAST(tensor[1] AS DOUBLE) AS first FROM tensors ORDER BY name, step",
        )
        .await
        .expect("query");
    let mut rows = Vec::new();
    for b in &batches {
        let names = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        for i in 0..b.num_rows() {
            rows.push((
                names.as_string::<i32>().value(i).to_string(),
                b.column(1).as_primitive::<Int64Type>().value(i),
                b.column(2).as_primitive::<Float64Type>().value(i),
            ));
        }
    }
    rows
}

/// The bytes of every column chunk of the Parquet file at `path`.
fn column_chunks(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    use datafusion::parquet::file::metadata::ParquetMetaDataReader;
    let bytes = std::fs::read(path).expect("read file");
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&std::fs::File::open(path).expect("open file"))
        .expect("footer");
    let mut chunks = Vec::new();
    for row_group in metadata.row_groups() {
        for column in row_group.columns() {
            let (start, len) = column.byte_range();
            chunks.push((
                column.column_path().string(),
                bytes[start as usize..(start + len) as usize].to_vec(),
            ));
        }
    }
    chunks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tensor_files_merge_by_copying_their_bytes_and_keep_the_latest_write() {
    let options = StoreOptions {
        compaction: CompactionPolicy {
            min_files: 4,
            target_bytes: 1 << 30,
        },
        ..StoreOptions::default()
    };
    let (dir, store) = store_with_run_and(options.clone()).await;
    // Four flushes. The third writes w0 @100 again (its first file keeps
    // w0 @0 and w1 @0, so that row group is rewritten without it); the
    // fourth writes w0 @200 again (its whole second file is superseded).
    let flushes: [&[(&str, i64, f32)]; 4] = [
        &[("w0", 0, 0.0), ("w0", 100, 1.0), ("w1", 0, 2.0)],
        &[("w0", 200, 3.0)],
        &[("w0", 100, 10.0)],
        &[("w0", 200, 20.0), ("w0", 300, 30.0)],
    ];
    let mut sequence = 0;
    for tensors in flushes {
        for &(name, step, seed) in tensors {
            sequence += 1;
            store
                .write_tensor(tensor(sequence, name, step, seed))
                .await
                .expect("write tensor");
        }
        let flushing = store.clone();
        tokio::task::spawn_blocking(move || flushing.flush())
            .await
            .unwrap()
            .expect("flush");
    }
    let expected = vec![
        ("w0".to_string(), 0, 0.0),
        ("w0".to_string(), 100, 10.0),
        ("w0".to_string(), 200, 20.0),
        ("w0".to_string(), 300, 30.0),
        ("w1".to_string(), 0, 2.0),
    ];
    assert_eq!(tensor_rows(&store).await, expected);

    let manifest = Manifest::load(dir.path()).expect("manifest");
    let tensor_files: Vec<_> = manifest
        .files
        .iter()
        .filter(|f| f.table == steplake_store::Table::Tensors)
        .collect();
    assert_eq!(tensor_files.len(), 1, "four tensor files became one");
    let merged = tensor_files[0];
    assert_eq!(merged.rows, 5, "each tensor once: {:?}", merged.series);
    let w0 = merged.series.iter().find(|s| s.name == "w0").expect("w0");
    assert_eq!((w0.min_step, w0.max_step, w0.rows), (0, 300, 4));
    // The third and fourth files were copied: each of their column chunks
    // (tensor values as steplake-codec wrote them) is in the merged file
    // byte for byte.
    let merged_chunks = column_chunks(&dir.path().join(&merged.path));
    let mut copied = 0;
    for garbage in &manifest.garbage {
        let id: u64 = garbage.path["data/tensors-".len()..]
            .split('-')
            .next()
            .and_then(|id| id.parse().ok())
            .expect("file id");
        if id < 3 {
            continue;
        }
        for chunk in column_chunks(&dir.path().join(&garbage.path)) {
            assert!(
                merged_chunks.contains(&chunk),
                "column {} of {} was not copied as it was",
                chunk.0,
                garbage.path
            );
            copied += 1;
        }
    }
    assert!(
        copied > 0,
        "no copied file found among {:?}",
        manifest.garbage
    );

    store.shutdown().expect("shutdown");
    drop(store);
    let store = Arc::new(Store::open(dir.path(), options).expect("reopen"));
    assert_eq!(tensor_rows(&store).await, expected);
}
