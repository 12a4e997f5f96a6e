//! One change of the manifest: what the manifest log records per write
//! instead of the whole manifest (see `manifest_log`).
//!
//! A change is the difference between two manifests, computed by
//! [`ManifestChange::between`] and replayed by [`ManifestChange::apply`], so
//! the flusher, the compactor and deletion keep building whole manifests in
//! memory and only the bytes written shrink to what changed:
//!
//! ```text
//! files      added (whole entries) and removed (by path: paths are unique)
//! runs       set (whole entries) and removed (by id)
//! writers    set and removed (by id)
//! partials   the whole list, when it changed (it is short)
//! garbage    added and removed (by path)
//! conditions set (whole entries) and removed (by id)
//! events     added (whole entries) and removed (by id)
//! always     covered_lsn, next_file_id, wal_owner
//! ```
//!
//! The scalar fields are always written: a change must not depend on the
//! writer's idea of the previous value (after a bucket changes owner, the
//! new owner counts `covered_lsn` from 0 while the log still says more).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use steplake_core::{ConditionSpec, Event, RunInfo};

use crate::manifest::{DataFile, Garbage, Manifest, PartialTensorFile, WriterState};

/// What one manifest write changed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(crate) struct ManifestChange {
    pub(crate) covered_lsn: u64,
    pub(crate) next_file_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) wal_owner: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) files_added: Vec<DataFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) files_removed: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) runs_set: BTreeMap<String, RunInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) runs_removed: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) writers_set: BTreeMap<String, WriterState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) writers_removed: Vec<String>,
    /// `None`: unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) partial_tensors: Option<Vec<PartialTensorFile>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) garbage_added: Vec<Garbage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) garbage_removed: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) conditions_set: BTreeMap<String, ConditionSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) conditions_removed: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) events_added: Vec<Event>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) events_removed: Vec<String>,
}

impl ManifestChange {
    /// The change that turns `before` into `after`.
    pub(crate) fn between(before: &Manifest, after: &Manifest) -> ManifestChange {
        let (files_added, files_removed) =
            added_and_removed(&before.files, &after.files, |f| f.path.as_str());
        let (garbage_added, garbage_removed) =
            added_and_removed(&before.garbage, &after.garbage, |g| g.path.as_str());
        let (runs_set, runs_removed) = set_and_removed(&before.runs, &after.runs);
        let (writers_set, writers_removed) = set_and_removed(&before.writers, &after.writers);
        let (conditions_set, conditions_removed) =
            set_and_removed(&before.conditions, &after.conditions);
        let (events_added, events_removed) =
            added_and_removed(&before.events, &after.events, |e| e.id.as_str());
        ManifestChange {
            covered_lsn: after.covered_lsn,
            next_file_id: after.next_file_id,
            wal_owner: after.wal_owner.clone(),
            files_added,
            files_removed,
            runs_set,
            runs_removed,
            writers_set,
            writers_removed,
            partial_tensors: (before.partial_tensors != after.partial_tensors)
                .then(|| after.partial_tensors.clone()),
            garbage_added,
            garbage_removed,
            conditions_set,
            conditions_removed,
            events_added,
            events_removed,
        }
    }

    /// Applies the change to `manifest`.
    pub(crate) fn apply(self, manifest: &mut Manifest) {
        manifest.covered_lsn = self.covered_lsn;
        manifest.next_file_id = self.next_file_id;
        manifest.wal_owner = self.wal_owner;
        let removed: HashSet<&str> = self.files_removed.iter().map(String::as_str).collect();
        manifest
            .files
            .retain(|f| !removed.contains(f.path.as_str()));
        manifest.files.extend(self.files_added);
        manifest.sort_files();
        for id in &self.runs_removed {
            manifest.runs.remove(id);
        }
        manifest.runs.extend(self.runs_set);
        for id in &self.writers_removed {
            manifest.writers.remove(id);
        }
        manifest.writers.extend(self.writers_set);
        if let Some(partials) = self.partial_tensors {
            manifest.partial_tensors = partials;
        }
        let removed: HashSet<&str> = self.garbage_removed.iter().map(String::as_str).collect();
        manifest
            .garbage
            .retain(|g| !removed.contains(g.path.as_str()));
        manifest.garbage.extend(self.garbage_added);
        for id in &self.conditions_removed {
            manifest.conditions.remove(id);
        }
        manifest.conditions.extend(self.conditions_set);
        let removed: HashSet<&str> = self.events_removed.iter().map(String::as_str).collect();
        manifest.events.retain(|e| !removed.contains(e.id.as_str()));
        manifest.events.extend(self.events_added);
    }
}

/// Entries of `after` not in `before` (whole), and keys of `before` not in
/// `after`. Entries with one key never change (files are immutable).
fn added_and_removed<T: Clone>(
    before: &[T],
    after: &[T],
    key: impl Fn(&T) -> &str,
) -> (Vec<T>, Vec<String>) {
    let before_keys: HashSet<&str> = before.iter().map(&key).collect();
    let after_keys: HashSet<&str> = after.iter().map(&key).collect();
    let added = after
        .iter()
        .filter(|t| !before_keys.contains(key(t)))
        .cloned()
        .collect();
    let removed = before
        .iter()
        .map(&key)
        .filter(|k| !after_keys.contains(k))
        .map(str::to_string)
        .collect();
    (added, removed)
}

/// Entries of `after` that are new or differ from `before`, and keys of
/// `before` not in `after`.
fn set_and_removed<V: Clone + PartialEq>(
    before: &BTreeMap<String, V>,
    after: &BTreeMap<String, V>,
) -> (BTreeMap<String, V>, Vec<String>) {
    let set = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let removed = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .cloned()
        .collect();
    (set, removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{SeriesRange, Table};

    fn file(id: u64, table: Table, path: &str) -> DataFile {
        DataFile {
            table,
            id,
            path: path.into(),
            rows: 10,
            bytes: 100,
            crc32: Some(7),
            series: vec![SeriesRange {
                run_id: "r".into(),
                name: "loss".into(),
                min_step: 0,
                max_step: 9,
                rows: 10,
            }],
        }
    }

    fn run(id: &str, status: &str) -> RunInfo {
        serde_json::from_value(serde_json::json!({
            "run_id": id, "project": "p", "name": id, "status": status,
            "created_at_us": 1, "config_json": "{}", "tags": []
        }))
        .expect("a run")
    }

    fn replayed(before: &Manifest, after: &Manifest) -> Manifest {
        let change = ManifestChange::between(before, after);
        let json = serde_json::to_vec(&change).expect("serializes");
        let change: ManifestChange = serde_json::from_slice(&json).expect("parses");
        let mut manifest = before.clone();
        change.apply(&mut manifest);
        manifest
    }

    #[test]
    fn a_flush_a_compaction_and_a_deletion_replay_to_the_same_manifest() {
        let mut before = Manifest {
            files: vec![
                file(1, Table::Scalars, "data/1.parquet"),
                file(2, Table::Scalars, "data/2.parquet"),
                file(2, Table::Tensors, "data/2-t.parquet"),
            ],
            ..Manifest::default()
        };
        before.runs.insert("a".into(), run("a", "running"));
        before.writers.insert(
            "w".into(),
            WriterState {
                sequence: 1,
                last_seen_us: 5,
            },
        );

        // A flush: a new file, a run's status, a writer's sequence, a new writer.
        let mut flushed = before.clone();
        flushed
            .files
            .push(file(3, Table::Scalars, "data/3.parquet"));
        flushed
            .files
            .push(file(3, Table::Tensors, "data/3-t.parquet"));
        flushed.runs.insert("a".into(), run("a", "finished"));
        flushed.runs.insert("b".into(), run("b", "running"));
        flushed.writers.get_mut("w").expect("writer").sequence = 9;
        flushed.writers.insert(
            "v".into(),
            WriterState {
                sequence: 1,
                last_seen_us: 6,
            },
        );
        flushed.covered_lsn = 40;
        flushed.next_file_id = 4;
        let change = ManifestChange::between(&before, &flushed);
        assert_eq!(change.files_added.len(), 2);
        assert_eq!(change.runs_set.len(), 2);
        assert_eq!(change.writers_set.len(), 2);
        assert!(change.files_removed.is_empty() && change.partial_tensors.is_none());
        assert_eq!(replayed(&before, &flushed), flushed);

        // A compaction: scalars 1..=3 become one file with id 3, sorted
        // before the tensors file with the same id; they become garbage.
        let mut compacted = flushed.clone();
        compacted.files.retain(|f| f.table == Table::Tensors);
        compacted
            .files
            .push(file(3, Table::Scalars, "data/3-c.parquet"));
        compacted.sort_files();
        compacted.garbage = ["data/1.parquet", "data/2.parquet", "data/3.parquet"]
            .iter()
            .map(|p| Garbage {
                path: p.to_string(),
                since_us: 1,
            })
            .collect();
        assert_eq!(replayed(&flushed, &compacted), compacted);

        // A deletion of run b and of the garbage, and an expired writer.
        let mut deleted = compacted.clone();
        deleted.runs.remove("b");
        deleted.writers.remove("v");
        deleted.garbage.clear();
        deleted.wal_owner = Some("store".into());
        let change = ManifestChange::between(&compacted, &deleted);
        assert_eq!(change.runs_removed, vec!["b".to_string()]);
        assert_eq!(change.garbage_removed.len(), 3);
        assert_eq!(replayed(&compacted, &deleted), deleted);
    }
}
