//! A full disk: writes are refused while it is full, resume by themselves
//! once space is back, and nothing acknowledged is lost or doubled.
//!
//! The test mounts a small tmpfs (root only, as CI runs); where mounting is
//! not allowed it says so and does nothing.

mod common;
use common::block_on;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use steplake_core::ScalarBatch;
use steplake_store::{CreateRun, SeriesFilter, Store, StoreError, StoreOptions};

/// A tmpfs of a few MiB, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        if !mounted {
            eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the file system holding `dir` until a write fails; returns the file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    // Small writes until not even a byte fits.
    while file.write_all(&block[..1]).is_ok() {}
    let _ = file.sync_all();
    path
}

fn batch(steps: std::ops::Range<i64>) -> ScalarBatch {
    let n = (steps.end - steps.start) as usize;
    ScalarBatch {
        names: vec!["loss".into()],
        name_index: vec![0; n],
        values: steps.clone().map(|s| s as f64).collect(),
        steps: steps.collect(),
        wall_times_us: vec![1_000; n],
    }
}

fn step_column(batch: &arrow::array::RecordBatch) -> Vec<i64> {
    batch
        .column_by_name("step")
        .expect("step column")
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .expect("i64")
        .values()
        .to_vec()
}

/// Distinct steps of `loss` and how many rows hold them.
fn steps(store: &Store) -> (usize, usize) {
    let view = store.scalars_view(&SeriesFilter::default(), None);
    let mut all: Vec<i64> = Vec::new();
    for file in &view.files {
        let file = std::fs::File::open(store.data_dir().join(&file.path)).expect("data file");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024)
            .expect("parquet");
        for batch in reader {
            all.extend(step_column(&batch.expect("batch")));
        }
    }
    for buffered in &view.buffered {
        for batch in &buffered.batches {
            all.extend(step_column(batch));
        }
    }
    let rows = all.len();
    all.sort();
    all.dedup();
    (all.len(), rows)
}

#[test]
fn writes_resume_by_themselves_once_the_disk_has_room_again() {
    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let data_dir = fs.path().join("data");
    let store = Store::open(&data_dir, StoreOptions::default()).expect("open");
    block_on(store.create_run(CreateRun {
        run_id: Some("r".into()),
        ..Default::default()
    }))
    .expect("create run");
    let mut sequence = 1;
    let mut acked = 0i64;
    block_on(store.write_scalars("w", sequence, "r", batch(0..1000))).expect("first batch");
    acked += 1000;
    sequence += 1;

    let filler = fill(fs.path());
    let mut refused = 0;
    for attempt in 0..20 {
        let start = acked + attempt * 1000;
        match block_on(store.write_scalars("w", sequence, "r", batch(start..start + 1000))) {
            Ok(_) => panic!("a write on a full disk was acknowledged"),
            Err(StoreError::Unavailable { reason }) => {
                assert!(reason.contains("resume by themselves"), "{reason}");
                refused += 1;
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(refused, 20);

    std::fs::remove_file(&filler).expect("free space");
    for _ in 0..5 {
        let ack = block_on(store.write_scalars("w", sequence, "r", batch(acked..acked + 1000)))
            .expect("writes resume without a restart");
        assert!(!ack.duplicate);
        acked += 1000;
        sequence += 1;
    }
    assert_eq!(steps(&store), (acked as usize, acked as usize));

    // Full again at shutdown: the flush cannot be written, the points stay
    // in the write-ahead log, and the next start has them all.
    let filler = fill(fs.path());
    let err = store.shutdown().expect_err("no room for the Parquet file");
    assert!(err.to_string().contains("stay in the WAL"), "{err}");
    drop(store);
    std::fs::remove_file(&filler).expect("free space");
    let store = Store::open(&data_dir, StoreOptions::default()).expect("reopen");
    assert_eq!(steps(&store), (acked as usize, acked as usize));
    // Once there is room a shutdown flushes everything.
    store.shutdown().expect("flush with room");
    drop(store);
    let store = Store::open_read_only(&data_dir).expect("reopen read-only");
    let view = store.scalars_view(&SeriesFilter::default(), None);
    assert!(view.buffered.iter().all(|b| b.batches.is_empty()));
    assert_eq!(steps(&store), (acked as usize, acked as usize));
}
