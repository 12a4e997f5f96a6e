//! The state the WAL thread, the flusher and readers share: what readers
//! see ([`State`]) behind one lock, and the flush backpressure.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use steplake_codec::Codec;
use steplake_core::RunInfo;

use crate::apply::WatchCatalog;
use crate::manifest_change::ManifestChange;
use crate::manifest_log::ManifestLog;
use crate::storage::Storage;
use crate::CompactionPolicy;
use crate::{random_id, Buffer, Manifest, StoreError, StoreStats};

pub(crate) struct Frozen {
    pub(crate) file_id: u64,
    pub(crate) buffer: Arc<Buffer>,
}

/// What readers see; changed by the WAL thread (apply, freeze) and the flusher (publish).
#[derive(Default)]
pub(crate) struct State {
    pub(crate) manifest: Manifest,
    pub(crate) runs: BTreeMap<String, RunInfo>,
    pub(crate) active: Buffer,
    pub(crate) frozen: Vec<Frozen>,
    pub(crate) failure: Option<String>,
    /// Standing conditions and their events, as applied.
    pub(crate) watch: WatchCatalog,
}

pub(crate) struct Shared {
    pub(crate) data_dir: PathBuf,
    pub(crate) state: RwLock<State>,
    pub(crate) stats: StoreStats,
    /// Flush jobs handed to the flusher and not yet finished.
    pub(crate) pending_flushes: Mutex<usize>,
    pub(crate) flush_finished: Condvar,
    /// Set by [`Store::shutdown`]: the flusher stops retrying a failing flush.
    pub(crate) shutting_down: AtomicBool,
    /// Compresses tensors and computes their statistics (CPU or GPU).
    pub(crate) codec: Codec,
    /// Random per open, part of every data file name: files written by two
    /// processes (should the lock ever be defeated) never share a name.
    pub(crate) incarnation: String,
    /// Where flushed files and the manifest live.
    pub(crate) storage: Storage,
    /// How the manifest is written there.
    pub(crate) manifest_log: ManifestLog,
    /// When the flusher merges small files.
    pub(crate) compaction: CompactionPolicy,
    /// Ids of the data files checked whole since the open.
    verified: Mutex<HashSet<u64>>,
}

impl Shared {
    pub(crate) fn new(data_dir: PathBuf, state: State, codec: Codec, storage: Storage) -> Self {
        Shared {
            data_dir,
            storage,
            manifest_log: ManifestLog::default(),
            compaction: CompactionPolicy::default(),
            codec,
            incarnation: random_id(),
            verified: Mutex::new(HashSet::new()),
            state: RwLock::new(state),
            stats: StoreStats::default(),
            pending_flushes: Mutex::new(0),
            flush_finished: Condvar::new(),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// What the manifest's file paths are relative to (a path or a URL).
    pub(crate) fn root(&self) -> String {
        self.storage.root(&self.data_dir)
    }

    pub(crate) fn is_verified(&self, file_id: u64) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&file_id)
    }

    /// Makes `next` the durable manifest, writing only what it changes of
    /// the one readers see now. Called on the flusher thread only (the one
    /// thread that changes the manifest), which then publishes `next`.
    pub(crate) fn store_manifest(&self, next: &Manifest) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let change = ManifestChange::between(&read_state(self).manifest, next);
        let checkpointed = self
            .manifest_log
            .append(&self.storage, &self.data_dir, change, next)?;
        let stats = &self.stats;
        stats.manifest_writes.fetch_add(1, Ordering::Relaxed);
        stats
            .manifest_write_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if checkpointed {
            stats.manifest_checkpoints.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// A file with this id replaced the one checked (compaction).
    pub(crate) fn forget_verified(&self, file_id: u64) {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&file_id);
    }

    pub(crate) fn mark_verified(&self, file_id: u64) {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(file_id);
    }

    /// Waits until fewer than [`MAX_PENDING_FLUSHES`] flushes are pending, then
    /// counts one more. This is the write path's backpressure: when flushing
    /// falls behind, acknowledgements slow down instead of memory growing.
    pub(crate) fn reserve_flush_slot(&self) {
        let mut pending = self
            .pending_flushes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *pending >= MAX_PENDING_FLUSHES {
            tracing::debug!("flushing is behind ingest; waiting before freezing another buffer");
        }
        while *pending >= MAX_PENDING_FLUSHES {
            pending = self
                .flush_finished
                .wait(pending)
                .unwrap_or_else(|p| p.into_inner());
        }
        *pending += 1;
    }

    /// Flush jobs waiting for the flusher.
    pub(crate) fn flushes_pending(&self) -> usize {
        *self
            .pending_flushes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn release_flush_slot(&self) {
        let mut pending = self
            .pending_flushes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *pending = pending.saturating_sub(1);
        self.flush_finished.notify_all();
    }
}

/// Frozen buffers that may wait for the flusher at once.
pub(crate) const MAX_PENDING_FLUSHES: usize = 2;

pub(crate) fn read_state(shared: &Shared) -> std::sync::RwLockReadGuard<'_, State> {
    shared
        .state
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn write_state(shared: &Shared) -> std::sync::RwLockWriteGuard<'_, State> {
    shared
        .state
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
