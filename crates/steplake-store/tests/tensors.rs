//! Tensors through the store: chunked parts reassembled, never visible while
//! partial, durable across a crash (including a flush between two chunks,
//! which deletes the WAL segments of the first), flushed to Parquet.

mod common;
use common::block_on;

use steplake_core::DType;
use steplake_store::{CreateRun, SeriesFilter, Store, StoreOptions, Table, TensorPart};

fn open(dir: &std::path::Path) -> Store {
    Store::open(
        dir,
        StoreOptions {
            // Small segments, so a flush really deletes the first chunk's segment.
            wal_segment_bytes: 4096,
            ..StoreOptions::default()
        },
    )
    .expect("open store")
}

fn create(store: &Store) {
    block_on(store.create_run(CreateRun {
        run_id: Some("r".into()),
        ..Default::default()
    }))
    .expect("create run");
}

fn tensor_bytes(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (i as f32 * 0.5 - 3.0).to_le_bytes())
        .collect()
}

fn part(sequence: u64, step: i64, all: &[u8], range: std::ops::Range<usize>) -> TensorPart {
    TensorPart {
        writer_id: "w".into(),
        sequence,
        run_id: "r".into(),
        name: "layer.0.weight".into(),
        step,
        wall_time_us: 1_700_000_000_000_000,
        dtype: DType::F32,
        shape: vec![(all.len() / 4) as u64],
        total_len: all.len() as u64,
        offset: range.start as u64,
        stats_only: false,
        stats: None,
        data: all[range].to_vec(),
    }
}

fn visible(store: &Store) -> Vec<(i64, Option<Vec<u8>>)> {
    let view = store.tensors_view(&SeriesFilter::default());
    view.buffered
        .iter()
        .map(|(_, t)| (t.step, t.values.clone()))
        .collect()
}

#[test]
fn chunks_become_one_tensor_only_when_complete_and_survive_a_crash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let all = tensor_bytes(10_000);
    {
        let store = open(dir.path());
        create(&store);
        let ack = block_on(store.write_tensor(part(1, 5, &all, 0..16_000))).expect("chunk 1");
        assert!(!ack.duplicate);
        assert!(
            visible(&store).is_empty(),
            "a partial tensor is never visible"
        );
        // A flush between the chunks deletes the WAL segment of chunk 1.
        store.flush().expect("flush");
        // Crash: dropped without shutdown.
    }
    {
        let store = open(dir.path());
        assert!(visible(&store).is_empty());
        let retry = block_on(store.write_tensor(part(1, 5, &all, 0..16_000))).expect("retry");
        assert!(retry.duplicate, "a retried chunk is applied once");
        let gap = block_on(store.write_tensor(part(2, 5, &all, 20_000..40_000)));
        assert!(gap.unwrap_err().to_string().contains("gap"));
        // A refused chunk takes no sequence number: the next is 2 again.
        block_on(store.write_tensor(part(2, 5, &all, 16_000..40_000))).expect("chunk 2");
        let seen = visible(&store);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1.as_deref(), Some(&all[..]));
        // Crash again before any flush: replayed from the WAL.
    }
    let store = open(dir.path());
    assert_eq!(visible(&store), vec![(5, Some(all.clone()))]);
    store.flush().expect("flush to Parquet");
    let view = store.tensors_view(&SeriesFilter::default());
    assert!(view.buffered.is_empty());
    assert_eq!(view.files.len(), 1);
    let manifest = steplake_store::Manifest::load(dir.path()).expect("manifest");
    assert!(manifest.files.iter().any(|f| f.table == Table::Tensors));
}

#[test]
fn stats_only_and_bad_tensors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    create(&store);
    let all = tensor_bytes(8);
    let mut bad = part(1, 0, &all, 0..32);
    bad.shape = vec![3];
    let err = block_on(store.write_tensor(bad)).unwrap_err().to_string();
    assert!(err.contains("needs 12 bytes"), "{err}");
    let mut stats_only = part(1, 1, &all, 0..0);
    stats_only.stats_only = true;
    stats_only.total_len = 0;
    stats_only.stats = Some(steplake_codec::stats::tensor_stats(&all, DType::F32));
    block_on(store.write_tensor(stats_only)).expect("stats only");
    let seen = visible(&store);
    assert_eq!(seen, vec![(1, None)]);
    let mut unknown_run = part(2, 0, &all, 0..32);
    unknown_run.run_id = "nope".into();
    assert!(block_on(store.write_tensor(unknown_run)).is_err());
}

#[test]
fn incomplete_tensors_are_capped_in_memory_and_dropped_when_stale() {
    let dir = tempfile::tempdir().expect("temp dir");
    let all = tensor_bytes(1000); // 4,000 bytes
    let store = Store::open(
        dir.path(),
        StoreOptions {
            max_partial_tensor_bytes: 3000,
            max_partial_tensor_age: std::time::Duration::ZERO,
            ..StoreOptions::default()
        },
    )
    .expect("open store");
    create(&store);
    // Two tensors half sent: 2,000 bytes held, then 4,000 would pass 3,000.
    block_on(store.write_tensor(part(1, 1, &all, 0..2000))).expect("first half");
    let refused =
        block_on(store.write_tensor(part(2, 2, &all, 0..2000))).expect_err("over the cap");
    assert!(
        matches!(refused, steplake_store::StoreError::Overloaded { .. }),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("limit of 3000 bytes"),
        "{refused}"
    );
    // Completing a started tensor frees its bytes and is never refused.
    block_on(store.write_tensor(part(2, 1, &all, 2000..4000))).expect("second half");
    assert_eq!(visible(&store).len(), 1);
    block_on(store.write_tensor(part(3, 2, &all, 0..2000))).expect("room again");
    // Older than the age limit at the next freeze: dropped, so the rest of
    // it is refused as a chunk without a beginning.
    store.flush().expect("flush");
    let late = block_on(store.write_tensor(part(4, 2, &all, 2000..4000))).expect_err("dropped");
    assert!(late.to_string().contains("no earlier chunk"), "{late}");
}

/// A tensor still being received is written to disk once, not logged again
/// at every flush, and survives restarts until its last chunk comes.
#[test]
fn an_incomplete_tensor_is_not_logged_again_at_every_flush() {
    let appended = |store: &Store| {
        store
            .stats()
            .wal_bytes_appended
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let all = tensor_bytes(100_000); // 400,000 bytes
    {
        let store = open(dir.path());
        create(&store);
        block_on(store.write_tensor(part(1, 7, &all, 0..200_000))).expect("first half");
        let before = appended(&store);
        for _ in 0..3 {
            store.flush().expect("flush");
        }
        assert_eq!(
            appended(&store),
            before,
            "the flushes logged the partial tensor again"
        );
        // Crash: dropped without shutdown.
    }
    {
        let store = open(dir.path());
        store.flush().expect("flush after the restart");
        assert_eq!(appended(&store), 0);
        assert!(store.wal_bytes() < 100_000, "{}", store.wal_bytes());
        block_on(store.write_tensor(part(2, 7, &all, 200_000..300_000))).expect("third quarter");
        store.flush().expect("flush");
    }
    let store = open(dir.path());
    assert!(visible(&store).is_empty(), "still incomplete");
    block_on(store.write_tensor(part(3, 7, &all, 300_000..400_000))).expect("last quarter");
    assert_eq!(visible(&store), vec![(7, Some(all.clone()))]);
    store.flush().expect("flush");
    let leftovers = std::fs::read_dir(dir.path().join("partial"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "a completed tensor leaves no partial file");
}
