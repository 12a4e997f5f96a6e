//! Recovery: the state rebuilt from the manifest and the WAL at open.

use std::path::{Path, PathBuf};

use steplake_codec::Codec;

use crate::apply::{
    number_events, Change, LoggedEvents, Record, Refusal, WatchCatalog, WriteRules,
};
use crate::buffer::Buffer;
use crate::manifest_log::{self, LogPosition};
use crate::partial_files::load_partials;
use crate::record::{decode_scalar_record, split_events_trailer};
use crate::storage::Storage;
use crate::tensor_parts::validate_part;
use crate::tensor_parts::Assembler;
use crate::tensor_record::decode_tensor_part;
use crate::wal::{self, RecordKind};
use crate::{files, Manifest, StoreError};
use steplake_core::validate_run_id;

/// Refuses a directory whose manifest is gone while data it described is
/// still there: treating it as new would hide (and once deleted every)
/// flushed file. Nothing is changed.
pub(crate) fn check_manifest_present(data_dir: &Path) -> Result<(), StoreError> {
    if Manifest::exists(data_dir) {
        return Ok(());
    }
    refuse_lost_manifest(data_dir, &Storage::Local)
}

/// The error for a store with no manifest whose data directory shows that
/// one existed: local data files, or a WAL whose first records were
/// already flushed (and deleted). Ok when it looks new.
fn refuse_lost_manifest(data_dir: &Path, storage: &Storage) -> Result<(), StoreError> {
    let data_files = match storage {
        Storage::Local => files::parquet_files(&files::data_files_dir(data_dir)),
        Storage::Bucket { .. } => Vec::new(),
    };
    let first_lsn = wal::list_segments(&wal::wal_dir(data_dir))?
        .first()
        .map(|(lsn, _)| *lsn);
    let wal_started_late = first_lsn.is_some_and(|lsn| lsn > 1);
    if data_files.is_empty() && !wal_started_late {
        return Ok(());
    }
    let mut found = Vec::new();
    if !data_files.is_empty() {
        found.push(format!("{} Parquet files in data/", data_files.len()));
    }
    if let Some(lsn) = first_lsn.filter(|_| wal_started_late) {
        found.push(format!(
            "a write-ahead log that starts at LSN {lsn}, after records already flushed"
        ));
    }
    Err(StoreError::ManifestMissing {
        dir: PathBuf::from(storage.root(data_dir)),
        found: found.join(" and "),
    })
}

/// The state rebuilt from the manifest and the WAL.
pub(crate) struct Recovered {
    pub(crate) manifest: Manifest,
    /// Where the manifest log stands.
    pub(crate) log_position: LogPosition,
    /// Runs, writers and partial tensors after the replay.
    pub(crate) rules: WriteRules,
    pub(crate) buffer: Buffer,
    pub(crate) replay: wal::Replay,
    pub(crate) next_lsn: u64,
    /// Runs deleted in the WAL past the manifest: their files still hold
    /// their rows until the next flush drops them.
    pub(crate) deleted_runs: Vec<String>,
}

pub(crate) fn recover(
    data_dir: &Path,
    codec: &Codec,
    storage: &Storage,
) -> Result<Recovered, StoreError> {
    let (mut manifest, log_position) = match manifest_log::load(storage, data_dir)? {
        Some(loaded) => loaded,
        None => {
            refuse_lost_manifest(data_dir, storage)?;
            (Manifest::default(), LogPosition::default())
        }
    };
    // A bucket written from another data directory: its `covered_lsn`
    // counts in that directory's WAL, so none of this one's is covered.
    // The next manifest write records this one as the owner.
    if storage.bucket().is_some() && manifest.wal_owner.as_deref() != storage.wal_owner() {
        manifest.covered_lsn = 0;
        manifest.wal_owner = storage.wal_owner().map(str::to_string);
    }
    // A bucket's files are checked when read: a listing per open would
    // cost O(files) requests.
    let local_files = match storage {
        Storage::Local => manifest.files.as_slice(),
        Storage::Bucket { .. } => &[],
    };
    for file in local_files {
        let path = data_dir.join(&file.path);
        if !path.exists() {
            return Err(StoreError::corrupt(
                &path,
                0,
                "the manifest lists this data file but it is missing; restore it from a backup",
            ));
        }
    }
    let mut rules = WriteRules {
        runs: manifest.runs.clone(),
        writers: manifest.writers.clone().into_iter().collect(),
        assembler: Assembler::new(codec.clone()),
        watch: WatchCatalog::new(manifest.conditions.clone(), manifest.events.clone()),
    };
    // The tensors still being received at `covered_lsn`; the WAL past it
    // continues them.
    for (part, started_us, file) in load_partials(data_dir, &manifest.partial_tensors)? {
        rules.assembler.restore(part, started_us, file);
    }
    let mut buffer = Buffer::default();
    let mut replay = wal::replay(&wal::wal_dir(data_dir), manifest.covered_lsn)?;
    let mut next_lsn = manifest.covered_lsn + 1;
    let mut deleted_runs = Vec::new();
    for record in std::mem::take(&mut replay.records) {
        next_lsn = next_lsn.max(record.lsn + 1);
        if record.lsn <= manifest.covered_lsn {
            continue;
        }
        let lsn = record.lsn;
        let decoded = decode(record).map_err(|problem| {
            StoreError::corrupt(
                &wal::wal_dir(data_dir),
                0,
                format!("WAL record {lsn} {problem}"),
            )
        })?;
        // The rules the live path admitted this record by, applied again.
        match rules.admit(decoded) {
            Ok(change) => {
                if let Change::RunDeleted(run_id) = &change {
                    deleted_runs.push(run_id.clone());
                }
                change.apply_to(&mut buffer)
            }
            Err(Refusal::Repeat) => {}
            Err(Refusal::Refused(error)) => {
                tracing::warn!(lsn, %error, "a logged record is refused on replay and skipped");
            }
        }
    }
    Ok(Recovered {
        manifest,
        log_position,
        rules,
        buffer,
        replay,
        next_lsn,
        deleted_runs,
    })
}

/// The content of a WAL record, checked as the live path checked it before
/// logging it (so a record no live write could have logged, such as a
/// name index past its names, is corruption, not something to apply); the
/// error says what is wrong.
fn decode(record: wal::Record) -> Result<Record, String> {
    const UNDECODABLE: &str = "cannot be decoded";
    Ok(match record.kind {
        RecordKind::Run => Record::Run(
            serde_json::from_slice(&record.payload).map_err(|_| UNDECODABLE.to_string())?,
        ),
        RecordKind::Scalars | RecordKind::ScalarsWithEvents => {
            let (payload, mut events) = match record.kind {
                RecordKind::ScalarsWithEvents => {
                    split_events_trailer(&record.payload).ok_or(UNDECODABLE)?
                }
                _ => (record.payload.as_slice(), Vec::new()),
            };
            let rec = decode_scalar_record(payload).ok_or(UNDECODABLE)?;
            validate_run_id(&rec.run_id).map_err(|e| format!("is invalid: {e}"))?;
            rec.batch
                .validate()
                .map_err(|e| format!("is invalid: {e}"))?;
            number_events(&mut events, record.lsn);
            Record::Scalars {
                writer_id: rec.writer_id,
                sequence: rec.sequence,
                run_id: rec.run_id,
                batch: rec.batch,
                events,
            }
        }
        RecordKind::Events => {
            let mut logged: LoggedEvents =
                serde_json::from_slice(&record.payload).map_err(|_| UNDECODABLE.to_string())?;
            number_events(&mut logged.events, record.lsn);
            Record::Events(logged)
        }
        RecordKind::Condition => Record::Condition(
            serde_json::from_slice(&record.payload).map_err(|_| UNDECODABLE.to_string())?,
        ),
        RecordKind::Tensor => {
            let (part, carried_over) = decode_tensor_part(&record.payload).ok_or(UNDECODABLE)?;
            validate_part(&part).map_err(|e| format!("is invalid: {e}"))?;
            Record::Tensor { part, carried_over }
        }
    })
}

/// Deals with data files the manifest does not list, in the data directory
/// or the bucket. A file compaction or a deletion wrote (its name ends in
/// `-c.parquet`) and a crash kept out of the manifest is deleted: every row
/// of it is in the files it was made from, which are still listed. Any
/// other such file was left by a flush that a crash interrupted after the
/// file was in place and before the manifest named it; its points are still
/// in the WAL and are replayed, so it is never read. It is kept, with a
/// warning: only temporary files and compaction output are provably
/// garbage.
pub(crate) fn tidy_unlisted_files(
    data_dir: &Path,
    storage: &Storage,
    manifest: &Manifest,
) -> Result<(), StoreError> {
    for object in storage.list(data_dir, "data", None)? {
        let relative = object.path;
        if !relative.ends_with(".parquet") {
            continue;
        }
        let listed = manifest.files.iter().any(|f| f.path == relative)
            || manifest.garbage.iter().any(|g| g.path == relative);
        if listed {
            continue;
        }
        if relative.ends_with(files::COMPACTED_SUFFIX) {
            storage.delete(data_dir, &relative)?;
        } else {
            tracing::warn!(file = %relative, "a data file is not in the manifest (a flush interrupted by a crash); it is not read, and its points come from the write-ahead log");
        }
    }
    Ok(())
}
