//! What each data file records of the store's catalog, so that a lost
//! manifest can be rebuilt from the files themselves (see `repair`).
//!
//! Every Parquet file a flush writes carries, in its key-value metadata:
//!
//! ```text
//! steplake.file_id       the file's id (its version)
//! steplake.covered_lsn   the last WAL record the flush covered
//! steplake.runs          JSON array: the runs with rows in the file, and
//!                        every run created or changed since the last file
//! steplake.writers       JSON object: writer id → last sequence, for every
//!                        writer that moved since the last file
//! ```
//!
//! Taken in file-id order, later files overriding earlier ones, the files
//! together hold every run with data and every writer's last sequence as of
//! the newest file.

use std::collections::{BTreeMap, BTreeSet};

use parquet::file::metadata::KeyValue;
use steplake_core::RunInfo;

use crate::WriterState;

const FILE_ID: &str = "steplake.file_id";
const COVERED_LSN: &str = "steplake.covered_lsn";
const RUNS: &str = "steplake.runs";
const WRITERS: &str = "steplake.writers";

/// The catalog as of the last data file written, kept by the flusher to
/// record only what changed since.
#[derive(Default)]
pub(crate) struct Filed {
    runs: BTreeMap<String, RunInfo>,
    writers: BTreeMap<String, WriterState>,
}

/// What one data file records.
#[derive(Debug, Default)]
pub(crate) struct Provenance {
    pub(crate) file_id: u64,
    pub(crate) covered_lsn: u64,
    pub(crate) runs: Vec<RunInfo>,
    pub(crate) writers: BTreeMap<String, WriterState>,
}

impl Filed {
    /// What a file written now records: the runs with rows in it
    /// (`run_ids`) and every run and writer changed since the last file.
    pub(crate) fn provenance(
        &self,
        file_id: u64,
        covered_lsn: u64,
        runs: &BTreeMap<String, RunInfo>,
        writers: &BTreeMap<String, WriterState>,
        run_ids: &BTreeSet<&str>,
    ) -> Provenance {
        Provenance {
            file_id,
            covered_lsn,
            runs: runs
                .values()
                .filter(|run| {
                    run_ids.contains(run.run_id.as_str()) || self.runs.get(&run.run_id) != Some(run)
                })
                .cloned()
                .collect(),
            writers: writers
                .iter()
                .filter(|(id, w)| self.writers.get(*id).map(|f| f.sequence) != Some(w.sequence))
                .map(|(id, w)| (id.clone(), *w))
                .collect(),
        }
    }

    /// Files with this catalog were written.
    pub(crate) fn filed(
        &mut self,
        runs: &BTreeMap<String, RunInfo>,
        writers: &BTreeMap<String, WriterState>,
    ) {
        self.runs = runs.clone();
        self.writers = writers.clone();
    }
}

impl Provenance {
    /// As Parquet key-value metadata.
    pub(crate) fn key_values(&self) -> Vec<KeyValue> {
        vec![
            KeyValue::new(FILE_ID.into(), self.file_id.to_string()),
            KeyValue::new(COVERED_LSN.into(), self.covered_lsn.to_string()),
            KeyValue::new(
                RUNS.into(),
                serde_json::to_string(&self.runs).unwrap_or_default(),
            ),
            KeyValue::new(
                WRITERS.into(),
                serde_json::to_string(&self.writers).unwrap_or_default(),
            ),
        ]
    }

    /// What one file records for two files merged by compaction: `self`
    /// (the older) followed by `later`, whose runs and writers override.
    pub(crate) fn followed_by(self, later: Provenance) -> Provenance {
        let mut runs: BTreeMap<String, RunInfo> = self
            .runs
            .into_iter()
            .map(|run| (run.run_id.clone(), run))
            .collect();
        runs.extend(later.runs.into_iter().map(|run| (run.run_id.clone(), run)));
        let mut writers = self.writers;
        writers.extend(later.writers);
        Provenance {
            file_id: self.file_id.max(later.file_id),
            covered_lsn: self.covered_lsn.max(later.covered_lsn),
            runs: runs.into_values().collect(),
            writers,
        }
    }

    /// The key-value metadata of one file merged from files with
    /// `key_values` (oldest first; `None` for a file without metadata).
    pub(crate) fn merged_key_values<'a>(
        key_values: impl IntoIterator<Item = Option<&'a [KeyValue]>>,
    ) -> Vec<KeyValue> {
        key_values
            .into_iter()
            .filter_map(|kv| kv.and_then(Provenance::from_key_values))
            .reduce(Provenance::followed_by)
            .map(|p| p.key_values())
            .unwrap_or_default()
    }

    /// Read back from a file's key-value metadata; `None` when the file
    /// records none (written before provenance was recorded) or it does not
    /// parse.
    pub(crate) fn from_key_values(key_values: &[KeyValue]) -> Option<Provenance> {
        let get = |key: &str| {
            key_values
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| kv.value.as_deref())
        };
        Some(Provenance {
            file_id: get(FILE_ID)?.parse().ok()?,
            covered_lsn: get(COVERED_LSN)?.parse().ok()?,
            runs: serde_json::from_str(get(RUNS)?).ok()?,
            writers: serde_json::from_str(get(WRITERS)?).ok()?,
        })
    }
}
