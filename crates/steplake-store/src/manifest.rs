//! The manifest: the durable list of what the Parquet files hold.
//!
//! It names every data file with the step range of each series in it (so a
//! query opens only files that can match), the LSN up to which the
//! write-ahead log is covered by those files, the runs, and each writer's
//! highest applied sequence number (so retries stay idempotent across
//! restarts). This module is its contents; `manifest_log` keeps it durable
//! as checkpoints of it plus a log of changes (`manifest_change`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use steplake_core::{ConditionSpec, Event, RunInfo};

use crate::StoreError;

/// Format version written into the manifest (and each checkpoint of it).
pub const MANIFEST_VERSION: u32 = 1;

/// Step range of one series within one file (or buffer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesRange {
    /// Run of the series.
    pub run_id: String,
    /// Name of the series.
    pub name: String,
    /// Smallest step.
    pub min_step: i64,
    /// Largest step.
    pub max_step: i64,
    /// Rows of this series.
    pub rows: u64,
}

/// The table a data file belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    /// `scalars`.
    #[default]
    Scalars,
    /// `tensors`.
    Tensors,
}

/// One Parquet data file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    /// The table it belongs to (`scalars` in manifests written before tensors).
    #[serde(default)]
    pub table: Table,
    /// Increasing id: a file with a larger id holds later writes.
    pub id: u64,
    /// Path relative to the data directory.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// CRC-32 of the whole file as written (absent in manifests written
    /// before checksums were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<u32>,
    /// Per-series step ranges, sorted by (run, name).
    pub series: Vec<SeriesRange>,
}

/// Highest applied sequence number of one writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterState {
    /// Highest sequence number applied.
    pub sequence: u64,
    /// When the writer was last seen, microseconds since the epoch.
    pub last_seen_us: i64,
}

/// A tensor whose chunks were still arriving when the manifest was written:
/// its bytes so far are in `path`, so the WAL segments that held them could
/// be deleted (see `partial_files`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialTensorFile {
    /// Path relative to the data directory (`partial/…`).
    pub path: String,
    /// How many leading bytes of the file are the tensor's (a flush cut
    /// short may have left more).
    pub bytes: u64,
    /// The tensor's header as its latest chunk left it: a WAL tensor
    /// payload without data, in hex.
    pub header: String,
    /// When its first chunk came, microseconds since the epoch.
    pub started_us: i64,
}

/// A file the manifest no longer lists, to delete (see `compactor`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Garbage {
    /// Path relative to the data directory or bucket prefix.
    pub path: String,
    /// When it stopped being listed, microseconds since the epoch.
    pub since_us: i64,
}

/// The manifest's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Every WAL record with LSN <= this is reflected in `files` and `runs`.
    pub covered_lsn: u64,
    /// Id the next data file gets.
    pub next_file_id: u64,
    /// Data files, oldest first.
    pub files: Vec<DataFile>,
    /// Runs by id.
    pub runs: BTreeMap<String, RunInfo>,
    /// Writers by id.
    pub writers: BTreeMap<String, WriterState>,
    /// Tensors still being received at `covered_lsn`.
    #[serde(default)]
    pub partial_tensors: Vec<PartialTensorFile>,
    /// Files compaction replaced, deleted once no query can still read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub garbage: Vec<Garbage>,
    /// In a bucket: the id of the data directory whose WAL `covered_lsn`
    /// counts in (absent in a data directory's own manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_owner: Option<String>,
    /// Standing conditions by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub conditions: BTreeMap<String, ConditionSpec>,
    /// Events the conditions fired, in seq order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            version: MANIFEST_VERSION,
            covered_lsn: 0,
            next_file_id: 1,
            files: Vec::new(),
            runs: BTreeMap::new(),
            writers: BTreeMap::new(),
            partial_tensors: Vec::new(),
            garbage: Vec::new(),
            wal_owner: None,
            conditions: BTreeMap::new(),
            events: Vec::new(),
        }
    }
}

impl Manifest {
    /// Parses a manifest read from `origin` (named in errors).
    pub fn from_json(bytes: &[u8], origin: &Path) -> Result<Self, StoreError> {
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| StoreError::corrupt(origin, 0, format!("manifest is not valid: {e}")))?;
        if manifest.version != MANIFEST_VERSION {
            return Err(StoreError::corrupt(
                origin,
                0,
                format!(
                    "manifest version {} is not supported by this steplake (expects {MANIFEST_VERSION})",
                    manifest.version
                ),
            ));
        }
        Ok(manifest)
    }

    /// The manifest as written, for `destination` (named in errors).
    pub fn to_json(&self, destination: &Path) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(self).map_err(|e| StoreError::io(destination, std::io::Error::other(e)))
    }

    /// Sorts the files into their one order: by id (later writes last),
    /// a flush's scalars file before its tensors file.
    pub(crate) fn sort_files(&mut self) {
        self.files
            .sort_by_key(|f| (f.id, f.table == Table::Tensors));
    }
}
