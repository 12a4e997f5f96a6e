//! The store as a whole: recovery, flush, WAL coverage, idempotent retries,
//! and the on-disk record format pinned byte for byte.

mod common;
use common::block_on;

use steplake_core::ScalarBatch;
use steplake_store::record::encode_scalar_record;
use steplake_store::wal::{frame_record, list_segments, wal_dir, RecordKind};
use steplake_store::{CreateRun, SeriesFilter, Store, StoreOptions};

fn batch(steps: std::ops::Range<i64>) -> ScalarBatch {
    let n = (steps.end - steps.start) as usize;
    ScalarBatch {
        names: vec!["loss".into()],
        name_index: vec![0; n],
        values: steps.clone().map(|s| s as f64 / 2.0).collect(),
        steps: steps.collect(),
        wall_times_us: vec![1_000; n],
    }
}

fn rows(store: &Store) -> usize {
    store
        .scalars_view(&SeriesFilter::default(), None)
        .buffered
        .iter()
        .flat_map(|b| &b.batches)
        .map(|b| b.num_rows())
        .sum()
}

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, StoreOptions::default()).expect("open store")
}

fn create(store: &Store) {
    block_on(store.create_run(CreateRun {
        run_id: Some("r".into()),
        ..Default::default()
    }))
    .expect("create run");
}

#[test]
fn unflushed_points_are_replayed_from_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        create(&store);
        block_on(store.write_scalars("w", 1, "r", batch(0..100))).unwrap();
        assert_eq!(rows(&store), 100);
        // Dropped without shutdown: as after a crash, nothing was flushed.
    }
    let store = open(dir.path());
    assert_eq!(rows(&store), 100);
    assert!(store.run_exists("r"));
    let ack = block_on(store.write_scalars("w", 1, "r", batch(0..100))).unwrap();
    assert!(ack.duplicate, "the writer's sequence survives a restart");
}

#[test]
fn a_flush_moves_points_to_parquet_and_deletes_covered_wal_segments() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        wal_segment_bytes: 4096,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options).unwrap();
    create(&store);
    for seq in 1..=20u64 {
        let first = (seq as i64 - 1) * 100;
        block_on(store.write_scalars("w", seq, "r", batch(first..first + 100))).unwrap();
    }
    assert!(list_segments(&wal_dir(dir.path())).unwrap().len() > 2);
    store.flush().unwrap();
    assert_eq!(rows(&store), 0, "nothing is left in memory");
    let view = store.scalars_view(&SeriesFilter::default(), None);
    assert_eq!(view.files.len(), 1);
    assert_eq!(
        list_segments(&wal_dir(dir.path())).unwrap().len(),
        1,
        "covered segments are gone"
    );
    store.shutdown().unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(rows(&store), 0, "flushed points are not replayed again");
    assert_eq!(
        store
            .scalars_view(&SeriesFilter::default(), None)
            .files
            .len(),
        1
    );
}

/// A data directory where run `r` got `points` points and the store
/// stopped cleanly (everything flushed).
fn flushed_directory(points: i64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store);
    block_on(store.write_scalars("w", 1, "r", batch(0..points))).unwrap();
    store.shutdown().unwrap();
    drop(store);
    dir
}

#[test]
fn a_graceful_shutdown_leaves_no_wal_to_replay() {
    let dir = flushed_directory(1000);
    assert!(
        list_segments(&wal_dir(dir.path())).unwrap().is_empty(),
        "every segment was covered by the final flush"
    );
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(rows(&reader), 0, "nothing is replayed");
    assert_eq!(
        reader
            .scalars_view(&SeriesFilter::default(), None)
            .files
            .len(),
        1
    );
    drop(reader);
    // The next writer continues the LSNs and the writer's sequence.
    let store = open(dir.path());
    let ack = block_on(store.write_scalars("w", 1, "r", batch(0..1000))).unwrap();
    assert!(
        ack.duplicate,
        "the writer's sequence survives in the manifest"
    );
    block_on(store.write_scalars("w", 2, "r", batch(1000..1010))).unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        rows(&store),
        10,
        "the new records replay after the old ones"
    );
}

#[test]
fn writes_to_unknown_runs_and_bad_batches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let err = block_on(store.write_scalars("w", 1, "nope", batch(0..1))).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    create(&store);
    let mut bad = batch(0..3);
    bad.steps[2] = -1;
    let err = block_on(store.write_scalars("w", 1, "r", bad)).unwrap_err();
    assert!(err.to_string().contains("scalars.steps[2]"), "{err}");
    assert_eq!(rows(&store), 0);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let err = Store::open(dir.path(), StoreOptions::default())
        .err()
        .expect("locked");
    assert!(
        err.to_string()
            .contains("in use by another steplake process"),
        "{err}"
    );
}

#[test]
fn deleting_the_lock_file_does_not_let_a_second_process_in() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    std::fs::remove_file(dir.path().join("LOCK")).expect("LOCK exists");
    let err = Store::open(dir.path(), StoreOptions::default())
        .err()
        .expect("still locked");
    assert!(
        matches!(err, steplake_store::StoreError::Locked { .. }),
        "{err}"
    );
}

#[test]
fn data_files_of_two_opens_never_share_a_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for seq in 1..=2u64 {
        let store = open(dir.path());
        if seq == 1 {
            create(&store);
        }
        let first = (seq as i64) * 100;
        block_on(store.write_scalars("w", seq, "r", batch(first..first + 10))).unwrap();
        store.shutdown().unwrap();
        drop(store);
        names = steplake_store::files::parquet_files(&dir.path().join("data"));
    }
    assert_eq!(names.len(), 2);
    let stem = |p: &std::path::PathBuf| p.file_name().unwrap().to_string_lossy().to_string();
    assert_ne!(
        stem(&names[0]).split('-').nth(2),
        stem(&names[1]).split('-').nth(2)
    );
}

#[test]
fn a_lost_manifest_stops_start_up_and_deletes_nothing() {
    let dir = flushed_directory(100);
    let files = steplake_store::files::parquet_files(&dir.path().join("data"));
    assert_eq!(files.len(), 1);
    std::fs::remove_dir_all(dir.path().join("manifest")).unwrap();
    let err = Store::open(dir.path(), StoreOptions::default())
        .err()
        .expect("refused");
    let message = err.to_string();
    assert!(
        message.contains("no manifest") && message.contains("1 Parquet files"),
        "{message}"
    );
    assert!(
        Store::open_read_only(dir.path()).is_err(),
        "an embedded reader refuses too"
    );
    assert_eq!(
        steplake_store::files::parquet_files(&dir.path().join("data")),
        files,
        "nothing was deleted"
    );
}

#[test]
fn a_crash_during_the_first_flush_of_a_new_directory_restarts_from_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        create(&store);
        block_on(store.write_scalars("w", 1, "r", batch(0..100))).unwrap();
        // Dropped without shutdown: as after a kill -9.
    }
    // The first flush had put its file in place and was killed before it
    // wrote the manifest: a data file, but no manifest naming it.
    let other = flushed_directory(10);
    let flushed = steplake_store::files::parquet_files(&other.path().join("data"));
    std::fs::copy(
        &flushed[0],
        dir.path()
            .join("data/scalars-0000000001-feedfacefeedface.parquet"),
    )
    .unwrap();
    let store = Store::open(dir.path(), StoreOptions::default())
        .expect("a first flush cut short is not a lost manifest");
    assert_eq!(rows(&store), 100, "every point comes back from the WAL");
    assert!(store
        .scalars_view(&SeriesFilter::default(), None)
        .files
        .is_empty());
}

#[test]
fn a_data_file_the_manifest_does_not_list_is_kept_and_not_read() {
    let dir = flushed_directory(100);
    // As if a flush had put a file in place and crashed before the manifest.
    let stray = dir
        .path()
        .join("data/scalars-0000000099-feedfacefeedface.parquet");
    let listed = steplake_store::files::parquet_files(&dir.path().join("data"));
    std::fs::copy(&listed[0], &stray).unwrap();
    let store = open(dir.path());
    assert!(
        stray.exists(),
        "only temporary files are deleted at start-up"
    );
    let view = store.scalars_view(&SeriesFilter::default(), None);
    assert_eq!(view.files.len(), 1, "the stray file is not read");
}

/// The WAL format is an on-disk contract: a change here must be deliberate
/// (and come with a format version and a way to read old segments).
#[test]
fn wal_record_bytes_are_pinned() {
    let batch = ScalarBatch {
        names: vec!["loss".into()],
        name_index: vec![0, 0],
        steps: vec![5, 6],
        values: vec![1.5, f64::NAN],
        wall_times_us: vec![7, 7],
    };
    let mut payload = Vec::new();
    encode_scalar_record(&mut payload, "w", 3, "r", &batch);
    let mut framed = Vec::new();
    frame_record(&mut framed, 42, RecordKind::Scalars, &payload);
    let hex: String = framed.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        concat!(
            "49000000",
            "51950630",
            "2a00000000000000",
            "02",
            "0100000077",
            "0300000000000000",
            "0100000072",
            "01000000",
            "040000006c6f7373",
            "02000000",
            "01",
            "0000",
            "0a02",
            "000000000000f83f",
            "000000000000f87f",
            "00",
            "0700000000000000",
        )
    );
}

/// `duplicate: true` means "this exact batch is stored": a batch after one
/// that was refused is not applied (so a retry of the refused one is not
/// answered as a duplicate of it), and a writer's sequences are contiguous.
#[test]
fn a_refused_batch_is_never_acknowledged_as_a_duplicate_later() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store);
    block_on(store.write_scalars("w", 1, "r", batch(0..10))).unwrap();
    // Pipelined: batch 2 names an unknown run, batch 3 follows before the
    // refusal is known.
    let second = store.submit_scalars("w", 2, "new", batch(10..20)).unwrap();
    let third = store.submit_scalars("w", 3, "r", batch(20..30)).unwrap();
    let err = block_on(second).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    let err = block_on(third).unwrap_err();
    assert!(
        err.to_string().contains("expected sequence 2"),
        "a batch past a refused one is refused: {err}"
    );
    block_on(store.create_run(CreateRun {
        run_id: Some("new".into()),
        ..Default::default()
    }))
    .unwrap();
    let ack = block_on(store.write_scalars("w", 2, "new", batch(10..20))).unwrap();
    assert!(!ack.duplicate, "batch 2 was never stored");
    let ack = block_on(store.write_scalars("w", 3, "r", batch(20..30))).unwrap();
    assert!(!ack.duplicate, "nor was batch 3");
    assert_eq!(rows(&store), 30);
}

#[test]
fn sequences_must_follow_each_other_and_start_at_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store);
    let err = block_on(store.write_scalars("w", 5, "r", batch(0..10))).unwrap_err();
    assert!(err.to_string().contains("expected sequence 1"), "{err}");
    let err = block_on(store.write_scalars("w", 3, "r", batch(0..10))).unwrap_err();
    assert!(err.to_string().contains("expected sequence 1"), "{err}");
    assert_eq!(rows(&store), 0);
    block_on(store.write_scalars("w", 1, "r", batch(0..10))).unwrap();
    // An empty batch takes a sequence number without adding points: how a
    // writer skips a batch the server refused.
    let ack = block_on(store.write_scalars("w", 2, "r", batch(0..0))).unwrap();
    assert_eq!((ack.points, ack.duplicate), (0, false));
    let ack = block_on(store.write_scalars("w", 1, "r", batch(0..10))).unwrap();
    assert!(ack.duplicate);
    assert_eq!(rows(&store), 10);
}

/// Size of each manifest change entry (`manifest/NNN.json`) on disk.
fn change_entry_sizes(dir: &std::path::Path) -> Vec<u64> {
    let mut entries: Vec<(String, u64)> = std::fs::read_dir(dir.join("manifest"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, e.metadata().unwrap().len())
        })
        .filter(|(name, _)| name.len() == 25 && name.ends_with(".json"))
        .collect();
    entries.sort();
    entries.into_iter().map(|(_, len)| len).collect()
}

#[test]
fn a_flush_writes_what_it_changed_of_the_manifest_not_all_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        compaction: steplake_store::CompactionPolicy {
            min_files: 0,
            ..Default::default()
        },
        manifest: steplake_store::ManifestPolicy {
            checkpoint_every: 1000,
            ..Default::default()
        },
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options.clone()).unwrap();
    create(&store);
    for seq in 1..=40u64 {
        let first = (seq as i64 - 1) * 10;
        block_on(store.write_scalars("w", seq, "r", batch(first..first + 10))).unwrap();
        store.flush().unwrap();
    }
    let sizes = change_entry_sizes(dir.path());
    assert_eq!(
        sizes.len(),
        40,
        "the open writes the first checkpoint, each flush a change"
    );
    // The 40th flush's change names one file, like the 1st flush's, while
    // the manifest lists 40 files.
    let (second, last) = (sizes[0], sizes[sizes.len() - 1]);
    assert!(
        last <= second + 16,
        "a change grew with the file count: {second} then {last} bytes"
    );
    drop(store);
    let store = Store::open(dir.path(), options).unwrap();
    let counts = store.data_file_counts();
    assert_eq!(
        counts.get("scalars"),
        Some(&40),
        "start-up replays every change"
    );
}

#[test]
fn the_series_summary_counts_files_and_buffer_and_declines_rewritten_steps() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store);
    block_on(store.write_scalars("w", 1, "r", batch(0..100))).unwrap();
    store.flush().unwrap();
    block_on(store.write_scalars("w", 2, "r", batch(100..150))).unwrap();
    let series = store
        .scalar_series()
        .expect("every file records its series");
    assert_eq!(series.len(), 1);
    let loss = &series[0];
    assert_eq!((loss.run_id.as_str(), loss.name.as_str()), ("r", "loss"));
    assert_eq!((loss.min_step, loss.max_step, loss.rows), (0, 149, 150));
    // Steps written again (a resumed run) are counted once by a query, not
    // once per source: the summary declines rather than count them twice.
    block_on(store.write_scalars("w", 3, "r", batch(50..60))).unwrap();
    assert!(store.scalar_series().is_none());
}
