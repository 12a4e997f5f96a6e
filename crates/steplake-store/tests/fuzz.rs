//! Fuzz targets for what the store reads back from disk (steplake-fuzz):
//! WAL segments (framing, torn tails, corruption), scalar and tensor record
//! payloads, and whole recoveries from CRC-valid logs of mutated records.
//! Each input must give a value or an error: no panic, hang or huge
//! allocation. `STEPLAKE_FUZZ_ITERS` runs longer.

mod common;
use common::block_on;

use std::path::Path;

use steplake_core::{DType, ScalarBatch};
use steplake_fuzz::fuzz;
use steplake_store::record::decode_scalar_record;
use steplake_store::tensor_record::decode_tensor_part;
use steplake_store::wal::{frame_record, replay, wal_dir, Record, RecordKind};
use steplake_store::{CreateRun, Store, StoreOptions, TensorPart};

#[global_allocator]
static ALLOCATOR: steplake_fuzz::CappedAllocator = steplake_fuzz::CappedAllocator;

/// A data directory whose WAL holds a run, two scalar batches and a tensor
/// (the store is dropped without a flush); returns its records.
fn logged_records(dir: &Path) -> Vec<Record> {
    let store = Store::open(dir, StoreOptions::default()).expect("open");
    block_on(store.create_run(CreateRun {
        run_id: Some("r".into()),
        project: "p".into(),
        ..Default::default()
    }))
    .expect("create run");
    for (sequence, names) in [(1u64, vec!["loss"]), (2, vec!["loss", "acc"])] {
        let n = 5;
        let batch = ScalarBatch {
            names: names.iter().map(|s| s.to_string()).collect(),
            name_index: (0..n).map(|i| (i % names.len()) as u32).collect(),
            steps: (0..n as i64).collect(),
            values: (0..n).map(|i| i as f64 * 0.5).collect(),
            wall_times_us: (0..n as i64).map(|i| 1_000 + i).collect(),
        };
        block_on(store.write_scalars("w", sequence, "r", batch)).expect("write");
    }
    let data: Vec<u8> = (0..16u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    block_on(store.write_tensor(TensorPart {
        writer_id: "w".into(),
        sequence: 3,
        run_id: "r".into(),
        name: "w.0".into(),
        step: 1,
        wall_time_us: 5,
        dtype: DType::F32,
        shape: vec![4, 4],
        total_len: data.len() as u64,
        offset: 0,
        stats_only: false,
        stats: None,
        data,
    }))
    .expect("tensor");
    drop(store);
    replay(&wal_dir(dir), 0).expect("replay").records
}

fn payloads(records: &[Record], kind: RecordKind) -> Vec<Vec<u8>> {
    records
        .iter()
        .filter(|r| r.kind == kind)
        .map(|r| r.payload.clone())
        .collect()
}

#[test]
fn fuzz_scalar_and_tensor_record_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let records = logged_records(dir.path());
    let scalars = payloads(&records, RecordKind::Scalars);
    let tensors = payloads(&records, RecordKind::Tensor);
    assert!(!scalars.is_empty() && !tensors.is_empty());
    fuzz("scalar record", &scalars, &[], 5_000, |input| {
        if let Some(record) = decode_scalar_record(input) {
            // What decodes is self-consistent enough to index.
            let _ = record.batch.validate();
        }
    });
    fuzz("tensor record", &tensors, &[], 5_000, |input| {
        let _ = decode_tensor_part(input);
    });
}

#[test]
fn fuzz_wal_segments_on_replay() {
    let dir = tempfile::tempdir().unwrap();
    let _ = logged_records(dir.path());
    let segments: Vec<Vec<u8>> = std::fs::read_dir(wal_dir(dir.path()))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let scratch = tempfile::tempdir().unwrap();
    let segment = scratch.path().join("00000000000000000001.wal");
    fuzz("wal segment", &segments, &[], 1_000, |input| {
        std::fs::write(&segment, input).unwrap();
        let _ = replay(scratch.path(), 0);
    });
}

/// Records of `records` with one payload mutated, framed with valid CRCs:
/// what recovery applies must be checked as strictly as a live write.
#[test]
fn fuzz_recovery_from_crc_valid_logs_of_mutated_records() {
    let dir = tempfile::tempdir().unwrap();
    let records = logged_records(dir.path());
    let seeds: Vec<Vec<u8>> = records.iter().map(|r| r.payload.clone()).collect();
    let scratch = tempfile::tempdir().unwrap();
    let mut round = 0usize;
    fuzz(
        "recovered record",
        &seeds,
        &[b"{}", b"\"", b"null"],
        150,
        |input| {
            round += 1;
            let data_dir = scratch.path().join(round.to_string());
            let wal = wal_dir(&data_dir);
            std::fs::create_dir_all(&wal).unwrap();
            let target = round % records.len();
            let mut segment = Vec::new();
            for (i, record) in records.iter().enumerate() {
                let payload = if i == target {
                    input
                } else {
                    &record.payload[..]
                };
                frame_record(&mut segment, record.lsn, record.kind, payload);
            }
            let first = records.first().map(|r| r.lsn).unwrap_or(1);
            std::fs::write(wal.join(format!("{first:020}.wal")), &segment).unwrap();
            if let Ok(store) = Store::open(&data_dir, StoreOptions::default()) {
                let _ = store.shutdown();
            }
            let _ = std::fs::remove_dir_all(&data_dir);
        },
    );
}

/// Found by `fuzz_recovery_from_crc_valid_logs_of_mutated_records`: a
/// CRC-valid scalar record whose name index points past its names made
/// recovery panic (index out of bounds in the buffer). Replay now checks a
/// record as the live path did before logging it, and this is corruption.
#[test]
fn a_logged_batch_naming_a_series_it_lacks_is_corruption_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let records = logged_records(dir.path());
    let mut payload = payloads(&records, RecordKind::Scalars).remove(1);
    // Names "loss", "acc"; then the point count, the index width (1 byte)
    // and the first index: make it 255.
    let names_end = payload.windows(3).position(|w| w == b"acc").unwrap() + 3;
    payload[names_end + 4 + 1] = 255;
    let mut segment = Vec::new();
    let mut scalars_seen = 0;
    for record in &records {
        let body = if record.kind == RecordKind::Scalars {
            scalars_seen += 1;
            if scalars_seen == 2 {
                &payload[..]
            } else {
                &record.payload[..]
            }
        } else {
            &record.payload[..]
        };
        frame_record(&mut segment, record.lsn, record.kind, body);
    }
    let data_dir = dir.path().join("copy");
    std::fs::create_dir_all(wal_dir(&data_dir)).unwrap();
    std::fs::write(
        wal_dir(&data_dir).join(format!("{:020}.wal", records[0].lsn)),
        &segment,
    )
    .unwrap();
    let error = Store::open(&data_dir, StoreOptions::default())
        .err()
        .expect("recovery refuses the record");
    let message = error.to_string();
    assert!(message.contains("name_index"), "{message}");
}
