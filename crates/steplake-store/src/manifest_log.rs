//! The manifest log: how the manifest is kept durable at a cost of O(change)
//! per write, not O(files), in the data directory or the bucket prefix.
//!
//! ```text
//! manifest/00000000000000000001.checkpoint.json   the whole manifest at version 1
//! manifest/00000000000000000002.json              change 1 → 2
//! manifest/00000000000000000003.json              change 2 → 3
//! manifest/00000000000000000003.checkpoint.json   the whole manifest at version 3
//! manifest/_last_checkpoint                       {"version":3}: where start-up looks first
//! ```
//!
//! Each write of the manifest creates the next version's change entry
//! ([`ManifestChange`], JSON), and only if no entry of that version exists
//! (a hard link locally; `If-None-Match: *` in a bucket). So two writers
//! never both win a version: the loser is fenced off ([`StoreError::Fenced`]).
//! A store's first write, and one of a store still described by the old
//! single `manifest.json`, is a checkpoint instead; it happens when the
//! store opens ([`ManifestLog::start`]), so a store has a manifest before
//! its first flush puts a data file in place.
//!
//! After [`ManifestPolicy::checkpoint_every`] changes, or sooner once the
//! changes since the last checkpoint weigh more than it, the whole manifest
//! is written as a checkpoint of the latest version, `_last_checkpoint`
//! points at it, and the entries it supersedes are deleted: at once on a
//! local disk, after [`ManifestPolicy::bucket_retention`] in a bucket (so a
//! writer stalled for less than that cannot win a version whose entry was
//! already deleted).
//!
//! Start-up reads `_last_checkpoint`, the checkpoint it names (or a later one
//! the listing shows), and the changes after it, which must follow it with
//! no gap. `_last_checkpoint` is only a hint: lost or stale, a full listing
//! finds the newest checkpoint. A kill at any moment leaves either the
//! entry whole or no entry (checkpoints too), so the manifest is always the
//! last version whose entry exists.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::manifest_change::ManifestChange;
use crate::storage::Storage;
use crate::{now_us, Manifest, StoreError};

/// The directory (or bucket prefix) of the log.
pub(crate) const MANIFEST_DIR: &str = "manifest";
/// Where the manifest was kept whole before the log; read when there is no
/// log yet, and deleted by the first checkpoint.
const LEGACY_MANIFEST: &str = "manifest.json";
/// Names the newest checkpoint.
const LAST_CHECKPOINT: &str = "manifest/_last_checkpoint";
/// Format of a change entry.
const CHANGE_FORMAT: u32 = 1;
/// Below this many bytes of changes a checkpoint waits for
/// [`ManifestPolicy::checkpoint_every`], however small the manifest.
const MIN_CHECKPOINT_BYTES: u64 = 64 << 10;
/// Loads that find an entry deleted under them (a checkpoint finished
/// meanwhile) start over this many times.
const LOAD_ATTEMPTS: usize = 4;

/// When the manifest log is folded into a checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct ManifestPolicy {
    /// Write a checkpoint after at most this many changes (at least 1).
    pub checkpoint_every: u64,
    /// In a bucket, entries a checkpoint superseded are deleted only once
    /// they are this old.
    pub bucket_retention: Duration,
}

impl Default for ManifestPolicy {
    fn default() -> Self {
        ManifestPolicy {
            checkpoint_every: 100,
            bucket_retention: Duration::from_secs(3600),
        }
    }
}

/// Where the log stands.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogPosition {
    /// The manifest's version: the last change (or checkpoint) written.
    version: u64,
    /// The version of the newest checkpoint; 0 when there is none.
    checkpoint: u64,
    checkpoint_bytes: u64,
    changes_since_checkpoint: u64,
    bytes_since_checkpoint: u64,
}

/// The manifest log of an open store: written by the flusher thread only.
#[derive(Debug, Default)]
pub(crate) struct ManifestLog {
    position: Mutex<LogPosition>,
    policy: ManifestPolicy,
}

/// One change entry as stored.
#[derive(Serialize, Deserialize)]
struct ChangeEntry {
    format: u32,
    /// The version this change makes.
    version: u64,
    change: ManifestChange,
}

#[derive(Serialize, Deserialize)]
struct LastCheckpoint {
    version: u64,
}

/// What a name in [`MANIFEST_DIR`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Change(u64),
    Checkpoint(u64),
}

fn change_path(version: u64) -> String {
    format!("{MANIFEST_DIR}/{version:020}.json")
}

fn checkpoint_path(version: u64) -> String {
    format!("{MANIFEST_DIR}/{version:020}.checkpoint.json")
}

fn parse_entry(path: &str) -> Option<Entry> {
    let name = path.strip_prefix(MANIFEST_DIR)?.strip_prefix('/')?;
    let (digits, kind) = name.split_at_checked(20)?;
    let version = digits.parse().ok()?;
    match kind {
        ".json" => Some(Entry::Change(version)),
        ".checkpoint.json" => Some(Entry::Checkpoint(version)),
        _ => None,
    }
}

/// A name a write cut short left (see `Storage::create`).
fn is_temporary(path: &str) -> bool {
    path.contains(".tmp-")
}

impl Manifest {
    /// Whether `data_dir` holds a manifest (a log, or the single file of
    /// older versions).
    pub fn exists(data_dir: &Path) -> bool {
        exists(&Storage::Local, data_dir).unwrap_or(false)
    }

    /// Loads the manifest of `data_dir`; an empty one when there is none yet.
    pub fn load(data_dir: &Path) -> Result<Self, StoreError> {
        Ok(load(&Storage::Local, data_dir)?
            .map(|(manifest, _)| manifest)
            .unwrap_or_default())
    }
}

/// Whether the storage holds a manifest.
pub(crate) fn exists(storage: &Storage, data_dir: &Path) -> Result<bool, StoreError> {
    let listed = storage.list(data_dir, MANIFEST_DIR, None)?;
    if listed.iter().any(|l| parse_entry(&l.path).is_some()) {
        return Ok(true);
    }
    Ok(storage.read(data_dir, LEGACY_MANIFEST)?.is_some())
}

/// The manifest and where its log stands, or `None` when there is none yet.
pub(crate) fn load(
    storage: &Storage,
    data_dir: &Path,
) -> Result<Option<(Manifest, LogPosition)>, StoreError> {
    let mut use_hint = true;
    for _ in 0..LOAD_ATTEMPTS {
        match load_once(storage, data_dir, use_hint)? {
            Some(loaded) => return Ok(loaded),
            // An entry vanished: a checkpoint deleted it, or the hint named
            // one that is gone. List everything again.
            None => use_hint = false,
        }
    }
    Err(StoreError::Unavailable {
        reason: format!(
            "the manifest log in {} kept changing while it was read; try again",
            storage.root(data_dir)
        ),
    })
}

/// One attempt of [`load`]; `None` when an entry it listed is gone.
#[allow(clippy::type_complexity)]
fn load_once(
    storage: &Storage,
    data_dir: &Path,
    use_hint: bool,
) -> Result<Option<Option<(Manifest, LogPosition)>>, StoreError> {
    let origin = |relative: &str| PathBuf::from(storage.root(data_dir)).join(relative);
    let hint = if use_hint {
        read_hint(storage, data_dir)?
    } else {
        None
    };
    let after = hint.map(checkpoint_path);
    let listed = storage.list(data_dir, MANIFEST_DIR, after.as_deref())?;
    let entries: Vec<Entry> = listed.iter().filter_map(|l| parse_entry(&l.path)).collect();
    let newest_checkpoint = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Checkpoint(v) => Some(*v),
            Entry::Change(_) => None,
        })
        .chain(hint)
        .max();
    let Some(checkpoint) = newest_checkpoint else {
        if let Some(Entry::Change(v)) = entries.first() {
            return Err(StoreError::corrupt(
                &origin(&change_path(*v)),
                0,
                "the manifest log has changes but no checkpoint to apply them to; restore the manifest directory from a backup, or run `steplake repair`",
            ));
        }
        let Some(bytes) = storage.read(data_dir, LEGACY_MANIFEST)? else {
            return Ok(Some(None));
        };
        let manifest = Manifest::from_json(&bytes, &origin(LEGACY_MANIFEST))?;
        return Ok(Some(Some((manifest, LogPosition::default()))));
    };
    let Some(bytes) = storage.read(data_dir, &checkpoint_path(checkpoint))? else {
        return Ok(None);
    };
    let mut manifest = Manifest::from_json(&bytes, &origin(&checkpoint_path(checkpoint)))?;
    let mut position = LogPosition {
        version: checkpoint,
        checkpoint,
        checkpoint_bytes: bytes.len() as u64,
        ..LogPosition::default()
    };
    let mut changes: Vec<u64> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Change(v) if *v > checkpoint => Some(*v),
            _ => None,
        })
        .collect();
    changes.sort_unstable();
    for version in changes {
        let path = change_path(version);
        if version != position.version + 1 {
            return Err(StoreError::corrupt(
                &origin(&path),
                0,
                format!(
                    "the manifest log jumps from version {} to {version}: {} is missing. Restore it from a backup",
                    position.version,
                    change_path(position.version + 1)
                ),
            ));
        }
        let Some(bytes) = storage.read(data_dir, &path)? else {
            return Ok(None);
        };
        let entry: ChangeEntry = serde_json::from_slice(&bytes).map_err(|e| {
            StoreError::corrupt(
                &origin(&path),
                0,
                format!("manifest change is not valid: {e}"),
            )
        })?;
        if entry.format != CHANGE_FORMAT || entry.version != version {
            return Err(StoreError::corrupt(
                &origin(&path),
                0,
                format!(
                    "manifest change of format {} for version {} is not what this steplake reads here (format {CHANGE_FORMAT}, version {version})",
                    entry.format, entry.version
                ),
            ));
        }
        entry.change.apply(&mut manifest);
        position.version = version;
        position.changes_since_checkpoint += 1;
        position.bytes_since_checkpoint += bytes.len() as u64;
    }
    Ok(Some(Some((manifest, position))))
}

fn read_hint(storage: &Storage, data_dir: &Path) -> Result<Option<u64>, StoreError> {
    Ok(storage
        .read(data_dir, LAST_CHECKPOINT)?
        .and_then(|bytes| serde_json::from_slice::<LastCheckpoint>(&bytes).ok())
        .map(|last| last.version))
}

/// Starts the log of a store with no manifest (or one set aside) with
/// `manifest` as its first checkpoint.
pub(crate) fn write_new(
    storage: &Storage,
    data_dir: &Path,
    manifest: &Manifest,
) -> Result<(), StoreError> {
    ManifestLog::default()
        .append(storage, data_dir, ManifestChange::default(), manifest)
        .map(|_| ())
}

/// Moves a manifest that does not load out of the way, to
/// `manifest.damaged-TIME/` in `data_dir`; returns where.
pub(crate) fn set_aside(data_dir: &Path) -> Result<PathBuf, StoreError> {
    let to = data_dir.join(format!("manifest.damaged-{}", now_us()));
    std::fs::create_dir_all(&to).map_err(|e| StoreError::io(&to, e))?;
    for name in [MANIFEST_DIR, LEGACY_MANIFEST] {
        let from = data_dir.join(name);
        if from.exists() {
            std::fs::rename(&from, to.join(name)).map_err(|e| StoreError::io(&from, e))?;
        }
    }
    Ok(to)
}

impl ManifestLog {
    /// The log of a store whose manifest was loaded at `position`.
    pub(crate) fn new(position: LogPosition, policy: ManifestPolicy) -> ManifestLog {
        ManifestLog {
            position: Mutex::new(position),
            policy,
        }
    }

    /// Writes `manifest` as the first checkpoint when the log has none (a
    /// new store, or one still described by the old single file), so that
    /// a store has a manifest from its open on, before its first flush.
    /// Data files with no manifest beside them then always mean a lost
    /// manifest, never a first flush that a crash cut short between its
    /// file and its manifest write.
    pub(crate) fn start(
        &self,
        storage: &Storage,
        data_dir: &Path,
        manifest: &Manifest,
    ) -> Result<(), StoreError> {
        let has_checkpoint = self
            .position
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .checkpoint
            > 0;
        if !has_checkpoint {
            self.append(storage, data_dir, ManifestChange::default(), manifest)?;
        }
        Ok(())
    }

    /// Makes `after` the durable manifest; `change` is what it changes of
    /// the one before (the previous call's `after`, or the one loaded).
    /// Returns whether a checkpoint was written too.
    pub(crate) fn append(
        &self,
        storage: &Storage,
        data_dir: &Path,
        change: ManifestChange,
        after: &Manifest,
    ) -> Result<bool, StoreError> {
        let mut position = self.position.lock().unwrap_or_else(|p| p.into_inner());
        let version = position.version + 1;
        if position.checkpoint == 0 {
            // A new store, or one described by the old single file.
            self.checkpoint(storage, data_dir, &mut position, version, after)?;
            return Ok(true);
        }
        let path = change_path(version);
        let entry = ChangeEntry {
            format: CHANGE_FORMAT,
            version,
            change,
        };
        let bytes = serde_json::to_vec(&entry)
            .map_err(|e| StoreError::io(Path::new(&path), std::io::Error::other(e)))?;
        let written = bytes.len() as u64;
        create_once(storage, data_dir, &path, bytes)?;
        position.version = version;
        position.changes_since_checkpoint += 1;
        position.bytes_since_checkpoint += written;
        let due = position.changes_since_checkpoint >= self.policy.checkpoint_every.max(1)
            || position.bytes_since_checkpoint
                >= position.checkpoint_bytes.max(MIN_CHECKPOINT_BYTES);
        if !due {
            return Ok(false);
        }
        // The change is durable already: a failed checkpoint is tried again
        // at the next write.
        match self.checkpoint(storage, data_dir, &mut position, version, after) {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::warn!(error = %e, "could not write a manifest checkpoint; the log keeps growing until one succeeds");
                Ok(false)
            }
        }
    }

    /// Writes `manifest` whole as the checkpoint of `version`, points
    /// `_last_checkpoint` at it, and deletes what it supersedes.
    fn checkpoint(
        &self,
        storage: &Storage,
        data_dir: &Path,
        position: &mut LogPosition,
        version: u64,
        manifest: &Manifest,
    ) -> Result<(), StoreError> {
        let path = checkpoint_path(version);
        let bytes = manifest.to_json(Path::new(&path))?;
        let written = bytes.len() as u64;
        create_once(storage, data_dir, &path, bytes)?;
        *position = LogPosition {
            version,
            checkpoint: version,
            checkpoint_bytes: written,
            changes_since_checkpoint: 0,
            bytes_since_checkpoint: 0,
        };
        let hint = serde_json::to_vec(&LastCheckpoint { version })
            .map_err(|e| StoreError::io(Path::new(LAST_CHECKPOINT), std::io::Error::other(e)))?;
        storage.overwrite(data_dir, LAST_CHECKPOINT, hint)?;
        self.remove_superseded(storage, data_dir, version)
    }

    /// Deletes the entries the checkpoint of `version` supersedes (old
    /// enough in a bucket), what writes cut short left, and the old single
    /// manifest file.
    fn remove_superseded(
        &self,
        storage: &Storage,
        data_dir: &Path,
        version: u64,
    ) -> Result<(), StoreError> {
        let retention = match storage.bucket() {
            None => Duration::ZERO,
            Some(_) => self.policy.bucket_retention,
        };
        let cutoff = now_us().saturating_sub(retention.as_micros() as i64);
        for listed in storage.list(data_dir, MANIFEST_DIR, None)? {
            let superseded = match parse_entry(&listed.path) {
                Some(Entry::Change(v)) => v <= version,
                Some(Entry::Checkpoint(v)) => v < version,
                None => is_temporary(&listed.path),
            };
            if superseded && listed.modified_us <= cutoff {
                storage.delete(data_dir, &listed.path)?;
            }
        }
        storage.delete(data_dir, LEGACY_MANIFEST)
    }
}

/// Creates `path` with `bytes`; an entry already there is fine only when it
/// holds the same bytes (a retried request whose first reply was lost).
fn create_once(
    storage: &Storage,
    data_dir: &Path,
    path: &str,
    bytes: Vec<u8>,
) -> Result<(), StoreError> {
    if storage.create(data_dir, path, bytes.clone())? {
        return Ok(());
    }
    if storage.read(data_dir, path)?.as_deref() == Some(bytes.as_slice()) {
        return Ok(());
    }
    Err(StoreError::Fenced {
        url: format!("{}/{path}", storage.root(data_dir)),
        reason: "another server wrote this version of the manifest first".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{DataFile, SeriesRange, Table};

    fn with_file(manifest: &Manifest, id: u64) -> Manifest {
        let mut next = manifest.clone();
        next.files.push(DataFile {
            table: Table::Scalars,
            id,
            path: format!("data/{id}.parquet"),
            rows: 1,
            bytes: 1,
            crc32: None,
            series: vec![SeriesRange {
                run_id: "r".into(),
                name: "loss".into(),
                min_step: id as i64,
                max_step: id as i64,
                rows: 1,
            }],
        });
        next.next_file_id = id + 1;
        next.covered_lsn = id;
        next
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join(MANIFEST_DIR))
            .expect("manifest dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn write(log: &ManifestLog, dir: &Path, before: &Manifest, after: &Manifest) {
        log.append(
            &Storage::Local,
            dir,
            ManifestChange::between(before, after),
            after,
        )
        .expect("append");
    }

    #[test]
    fn changes_replay_onto_the_last_checkpoint_and_checkpoints_remove_what_they_supersede() {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = ManifestPolicy {
            checkpoint_every: 3,
            ..ManifestPolicy::default()
        };
        let log = ManifestLog::new(LogPosition::default(), policy);
        let mut manifest = Manifest::default();
        for id in 1..=5 {
            let next = with_file(&manifest, id);
            write(&log, dir.path(), &manifest, &next);
            manifest = next;
        }
        // 1 is a checkpoint (the first write), 2..=4 changes, 4 a checkpoint
        // that removed 1..=4, 5 a change.
        assert_eq!(
            names(dir.path()),
            vec![
                "00000000000000000004.checkpoint.json".to_string(),
                "00000000000000000005.json".to_string(),
                "_last_checkpoint".to_string(),
            ]
        );
        let (loaded, position) = load(&Storage::Local, dir.path())
            .expect("load")
            .expect("a manifest");
        assert_eq!(loaded, manifest);
        assert_eq!((position.version, position.checkpoint), (5, 4));

        // A lost hint: the listing finds the checkpoint.
        std::fs::remove_file(dir.path().join(LAST_CHECKPOINT)).expect("remove hint");
        assert_eq!(Manifest::load(dir.path()).expect("load"), manifest);

        // A reopened log continues at the next version.
        let log = ManifestLog::new(position, policy);
        let next = with_file(&manifest, 6);
        write(&log, dir.path(), &manifest, &next);
        assert_eq!(Manifest::load(dir.path()).expect("load"), next);
    }

    #[test]
    fn a_second_writer_of_one_version_is_fenced_and_a_gap_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = ManifestLog::new(LogPosition::default(), ManifestPolicy::default());
        let first = with_file(&Manifest::default(), 1);
        write(&log, dir.path(), &Manifest::default(), &first);
        let (_, position) = load(&Storage::Local, dir.path())
            .expect("load")
            .expect("some");
        let stale = ManifestLog::new(position.clone(), ManifestPolicy::default());
        write(&log, dir.path(), &first, &with_file(&first, 2));
        let fenced = stale
            .append(
                &Storage::Local,
                dir.path(),
                ManifestChange::between(&first, &with_file(&first, 3)),
                &with_file(&first, 3),
            )
            .expect_err("version 2 is taken");
        assert!(matches!(fenced, StoreError::Fenced { .. }), "{fenced}");

        // Versions 3 and 4, then 3 lost: start-up says which is missing.
        let two = with_file(&first, 2);
        let three = with_file(&two, 3);
        write(&log, dir.path(), &two, &three);
        write(&log, dir.path(), &three, &with_file(&three, 4));
        std::fs::remove_file(dir.path().join(change_path(3))).expect("remove");
        let error = load(&Storage::Local, dir.path()).expect_err("a gap");
        assert!(
            error
                .to_string()
                .contains("00000000000000000003.json is missing"),
            "{error}"
        );
    }

    #[test]
    fn a_manifest_kept_whole_by_an_older_version_becomes_the_first_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = with_file(&Manifest::default(), 1);
        std::fs::write(
            dir.path().join(LEGACY_MANIFEST),
            old.to_json(Path::new("x")).expect("json"),
        )
        .expect("write");
        assert!(Manifest::exists(dir.path()));
        let (loaded, position) = load(&Storage::Local, dir.path())
            .expect("load")
            .expect("some");
        assert_eq!(loaded, old);
        let log = ManifestLog::new(position, ManifestPolicy::default());
        let next = with_file(&old, 2);
        write(&log, dir.path(), &old, &next);
        assert!(!dir.path().join(LEGACY_MANIFEST).exists());
        assert_eq!(Manifest::load(dir.path()).expect("load"), next);
    }
}
