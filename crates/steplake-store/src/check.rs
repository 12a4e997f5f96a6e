//! Checking a data directory without changing it.
//!
//! [`check_data_dir`] reads what the manifest lists and reports, per file,
//! whether it is whole: every data file's size and CRC-32 against the
//! manifest, then every page decoded (which also catches damage in files
//! written before checksums were recorded); every partial tensor file; and
//! the write-ahead log past the manifest, record by record. It takes no
//! lock and writes nothing, so it can run beside a server.

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::files::{data_files_dir, parquet_files, verify_data_file};
use crate::partial_files::load_partials;
use crate::recovery::check_manifest_present;
use crate::{wal, DataFile, Manifest, StoreError};

/// What [`check_data_dir`] found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// One per file checked, in the order checked.
    pub files: Vec<FileCheck>,
    /// Remarks that are no damage (a torn WAL tail, an unlisted file).
    pub notes: Vec<String>,
}

/// The verdict on one file.
#[derive(Debug)]
pub struct FileCheck {
    /// The file.
    pub path: PathBuf,
    /// What it holds, e.g. "scalars, 20000 rows".
    pub what: String,
    /// `None` when it is whole; otherwise what is wrong.
    pub damage: Option<String>,
}

impl CheckReport {
    /// The files found damaged.
    pub fn damaged(&self) -> impl Iterator<Item = &FileCheck> {
        self.files.iter().filter(|f| f.damage.is_some())
    }
}

/// Checks every file of `data_dir` the manifest lists, and the WAL.
///
/// An error means the directory could not be checked at all (no manifest
/// where data exists, an unreadable manifest); damage to single files is
/// in the report.
pub fn check_data_dir(data_dir: &Path) -> Result<CheckReport, StoreError> {
    check_manifest_present(data_dir)?;
    let manifest = Manifest::load(data_dir)?;
    let mut report = CheckReport::default();
    for file in &manifest.files {
        let path = data_dir.join(&file.path);
        let damage = check_data_file(&path, file).err().map(|e| e.to_string());
        report.files.push(FileCheck {
            path,
            what: format!("{:?} data, {} rows", file.table, file.rows).to_lowercase(),
            damage,
        });
    }
    for entry in &manifest.partial_tensors {
        let damage = load_partials(data_dir, std::slice::from_ref(entry))
            .err()
            .map(|e| e.to_string());
        report.files.push(FileCheck {
            path: data_dir.join(&entry.path),
            what: format!("a tensor still being received, {} bytes", entry.bytes),
            damage,
        });
    }
    let wal_dir = wal::wal_dir(data_dir);
    match wal::replay(&wal_dir, manifest.covered_lsn) {
        Ok(replay) => {
            report.files.push(FileCheck {
                path: wal_dir,
                what: format!(
                    "write-ahead log, {} records past the manifest",
                    replay.records.len()
                ),
                damage: None,
            });
            if let Some((segment, valid)) = replay.torn_tail {
                report.notes.push(format!(
                    "{} ends in a record cut short by a crash after byte {valid}; the next start drops it",
                    segment.display()
                ));
            }
        }
        Err(error) => report.files.push(FileCheck {
            path: wal_dir,
            what: "write-ahead log".into(),
            damage: Some(error.to_string()),
        }),
    }
    for path in parquet_files(&data_files_dir(data_dir)) {
        let listed = manifest
            .files
            .iter()
            .any(|f| data_dir.join(&f.path) == path);
        let garbage = manifest
            .garbage
            .iter()
            .any(|g| data_dir.join(&g.path) == path);
        if garbage {
            report.notes.push(format!(
                "{} was merged by compaction into a listed file; it is deleted at the next start",
                path.display()
            ));
        } else if !listed {
            report.notes.push(format!(
                "{} is not in the manifest (left by a flush a crash interrupted); it is never read",
                path.display()
            ));
        }
    }
    Ok(report)
}

/// Size and checksum, then every page decoded and the rows counted.
fn check_data_file(path: &Path, file: &DataFile) -> Result<(), StoreError> {
    verify_data_file(path, file.bytes, file.crc32)?;
    let reader = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let batches = ParquetRecordBatchReaderBuilder::try_new(reader)
        .and_then(|b| b.build())
        .map_err(|e| StoreError::parquet(path, e))?;
    let mut rows = 0u64;
    for batch in batches {
        let batch = batch.map_err(|e| StoreError::parquet(path, e.into()))?;
        rows += batch.num_rows() as u64;
    }
    if rows != file.rows {
        return Err(StoreError::corrupt(
            path,
            0,
            format!(
                "the file holds {rows} rows but the manifest records {}",
                file.rows
            ),
        ));
    }
    Ok(())
}
