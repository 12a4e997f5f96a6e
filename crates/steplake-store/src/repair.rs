//! Rebuilding a lost manifest from the data files themselves.
//!
//! [`repair_manifest`] reads every Parquet file in `data/`: its rows give
//! the file's per-series step ranges, its bytes the size and checksum, and
//! its key-value metadata (see `provenance`) the runs, the writers' last
//! sequences and the WAL coverage as of its flush. Taken in file-id order,
//! they make the manifest; the WAL past the newest file's coverage is then
//! replayed at the next start as usual. A file that cannot be read is left
//! where it is, unlisted, and reported.
//!
//! What no file records is lost, and the report says so: the metadata of a
//! run that never had a point flushed, and the bytes of tensors that were
//! still being received (their headers were in the manifest). The
//! checksums are taken from the files as they are now: damage that still
//! decodes cannot be told from data once the manifest that knew better is
//! gone.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use steplake_core::RunInfo;

use crate::files::{self, checksum, data_files_dir, parquet_files};
use crate::lock::lock_data_dir;
use crate::manifest_log;
use crate::partial_files::partial_dir;
use crate::provenance::Provenance;
use crate::storage::Storage;
use crate::{now_us, DataFile, Manifest, SeriesRange, StoreError, Table, WriterState};

/// What [`repair_manifest`] rebuilt.
#[derive(Debug, Default)]
pub struct RepairReport {
    /// Data files the new manifest lists.
    pub files: Vec<PathBuf>,
    /// Data files left out, with why.
    pub skipped: Vec<(PathBuf, String)>,
    /// Runs in the new manifest.
    pub runs: usize,
    /// Runs whose rows were found but whose metadata (name, config) no file
    /// recorded: listed with their id as name.
    pub runs_without_metadata: Vec<String>,
    /// Writers whose last sequence was recovered.
    pub writers: usize,
    /// The WAL coverage of the new manifest.
    pub covered_lsn: u64,
    /// Tensors that were still being received and are lost.
    pub lost_partial_tensors: usize,
    /// Where an unreadable manifest was moved, if there was one.
    pub damaged_manifest: Option<PathBuf>,
}

/// Rebuilds the manifest of `data_dir` from its data files.
///
/// Refuses when a valid manifest is there (nothing to repair) or another
/// process holds the directory. A manifest that does not load is moved
/// aside to `manifest.damaged-TIME`.
pub fn repair_manifest(data_dir: &Path) -> Result<RepairReport, StoreError> {
    let _lock = lock_data_dir(data_dir)?;
    let mut report = RepairReport::default();
    if Manifest::exists(data_dir) {
        match Manifest::load(data_dir) {
            Ok(_) => {
                return Err(StoreError::Unavailable {
                    reason: format!(
                        "{} has a valid manifest; there is nothing to repair",
                        data_dir.display()
                    ),
                })
            }
            Err(_) => report.damaged_manifest = Some(manifest_log::set_aside(data_dir)?),
        }
    }
    let mut found: Vec<(DataFile, Option<Provenance>, PathBuf)> = Vec::new();
    for path in parquet_files(&data_files_dir(data_dir)) {
        match read_data_file(&path) {
            Ok((file, provenance)) => found.push((file, provenance, path)),
            Err(reason) => report.skipped.push((path, reason)),
        }
    }
    found.sort_by_key(|(file, _, _)| file.id);
    let mut manifest = Manifest::default();
    let mut writers: BTreeMap<String, WriterState> = BTreeMap::new();
    for (file, provenance, path) in found {
        if let Some(p) = provenance {
            manifest.covered_lsn = manifest.covered_lsn.max(p.covered_lsn);
            for run in p.runs {
                manifest.runs.insert(run.run_id.clone(), run);
            }
            for (id, state) in p.writers {
                let entry = writers.entry(id).or_insert(state);
                if state.sequence >= entry.sequence {
                    *entry = state;
                }
            }
        }
        for series in &file.series {
            if !manifest.runs.contains_key(&series.run_id) {
                manifest
                    .runs
                    .insert(series.run_id.clone(), placeholder_run(&series.run_id));
                report.runs_without_metadata.push(series.run_id.clone());
            }
        }
        manifest.next_file_id = manifest.next_file_id.max(file.id + 1);
        manifest.files.push(file);
        report.files.push(path);
    }
    // A run first seen without metadata may have it in a later file.
    report
        .runs_without_metadata
        .retain(|id| manifest.runs.get(id).is_some_and(|r| r.status == UNKNOWN));
    report.runs_without_metadata.dedup();
    manifest.writers = writers;
    report.runs = manifest.runs.len();
    report.writers = manifest.writers.len();
    report.covered_lsn = manifest.covered_lsn;
    report.lost_partial_tensors = std::fs::read_dir(partial_dir(data_dir))
        .map(|d| d.count())
        .unwrap_or(0);
    manifest_log::write_new(&Storage::Local, data_dir, &manifest)?;
    Ok(report)
}

/// Status of a run whose metadata no file recorded.
const UNKNOWN: &str = "unknown";

fn placeholder_run(run_id: &str) -> RunInfo {
    RunInfo {
        run_id: run_id.to_string(),
        project: "default".into(),
        name: run_id.to_string(),
        created_at_us: now_us(),
        ended_at_us: None,
        status: UNKNOWN.into(),
        config_json: "{}".into(),
        tags: Vec::new(),
        parent_run_id: None,
        fork_step: None,
    }
}

/// The manifest entry of one data file, read from the file, and what it
/// recorded of the catalog; the error says why the file cannot be listed.
fn read_data_file(path: &Path) -> Result<(DataFile, Option<Provenance>), String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let table = if name.starts_with("scalars-") {
        Table::Scalars
    } else if name.starts_with("tensors-") {
        Table::Tensors
    } else {
        return Err("not a steplake data file name".into());
    };
    let written = checksum(path).map_err(|e| e.to_string())?;
    let reader = File::open(path).map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(reader).map_err(|e| e.to_string())?;
    let provenance = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| Provenance::from_key_values(kv));
    let id = match &provenance {
        Some(p) => p.file_id,
        None => id_from_name(&name).ok_or("its name holds no file id")?,
    };
    let mut ranges: Vec<SeriesRange> = Vec::new();
    let mut rows = 0u64;
    for batch in builder.build().map_err(|e| e.to_string())? {
        let batch = batch.map_err(|e| e.to_string())?;
        rows += batch.num_rows() as u64;
        files::add_series_ranges(&mut ranges, &batch)?;
    }
    ranges.sort_by(|a, b| (&a.run_id, &a.name).cmp(&(&b.run_id, &b.name)));
    let relative = format!("data/{name}");
    Ok((
        DataFile {
            table,
            id,
            path: relative,
            rows,
            bytes: written.bytes,
            crc32: Some(written.crc32),
            series: ranges,
        },
        provenance,
    ))
}

/// The id in `scalars-<id>[-<r>].parquet` or `tensors-<id>[-<r>].parquet`.
fn id_from_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".parquet")?;
    let rest = stem.split_once('-')?.1;
    rest.split('-').next()?.parse().ok()
}
