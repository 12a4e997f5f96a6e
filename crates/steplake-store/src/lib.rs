//! steplake-store: makes acknowledged points durable and keeps them readable.
//!
//! It owns a data directory:
//!
//! ```text
//! DATA_DIR/LOCK              pid of the process holding the directory's lock
//! DATA_DIR/wal/*.wal         write-ahead log segments (see [`wal`])
//! DATA_DIR/data/*.parquet    standard Parquet files (see [`files`])
//! DATA_DIR/partial/*.part    tensors still being received, across flushes
//! DATA_DIR/manifest/         files, runs, writers, WAL coverage (see [`manifest`]):
//!                            checkpoints plus a log of changes (`manifest_log`)
//! ```
//!
//! Opened with a bucket ([`StoreOptions::object_store`]), the data files and
//! the manifest live in the bucket prefix instead, and `data/` only stages a
//! file until it is uploaded (see [`bucket`] and `storage`).
//!
//! Write path: [`Store::write_scalars`] hands a batch to the WAL thread, which
//! groups every waiting request into one append and one fsync (group commit),
//! then applies them to the in-memory [`buffer`] and only then acknowledges,
//! so an acked point is both durable and immediately readable. When the
//! buffer passes a size or age threshold the WAL thread freezes it and the
//! flusher thread writes it as a Parquet file, records it in the manifest,
//! and deletes the WAL segments the manifest now covers.
//!
//! Read path: [`Store::scalars_view`] returns, consistently, the data files
//! that can match a [`SeriesFilter`] plus the matching rows of the frozen and
//! active buffers, each with a version so the query layer can keep the
//! latest write of a repeated (run, name, step).
//!
//! Recovery: [`Store::open`] locks the directory, loads the manifest (a
//! missing one next to existing data is an error), replays WAL records past
//! it (a torn tail is dropped, any other damage is an error), and deletes
//! only temporary files that interrupted writes left.
//!
//! One stage per file:
//! - `apply`: the write rules, shared by replay and live writes (standing
//!   conditions and their events included: an event is logged in the
//!   record of the batch that fired it, see [`record`]);
//! - `request`: what callers ask of the WAL thread and the reply each gets;
//! - `wal_thread`: group commit, log, apply, freeze;
//! - `flusher`: frozen buffers to Parquet files and the manifest;
//! - `compactor`: merging small files after a flush, and deleting the files
//!   they replaced;
//! - `deleter`: dropping deleted runs' rows from the files;
//! - `partial_files`: tensors still being received, kept across flushes;
//! - `recovery`: the state rebuilt at open;
//! - `views`: what one query reads, under one lock;
//! - `manifest_change` and `manifest_log`: the manifest written as changes
//!   and checkpoints, and read back at open;
//! - `storage`: where flushed files and the manifest are kept (the data
//!   directory or a [`bucket`]);
//! - `check`: verifying a directory's files without changing them;
//! - `repair`: rebuilding a lost manifest from the files (`provenance`:
//!   what each file records of the catalog for that);
//! - `shared`: the state those stages share; `lock`, `options`, `error`.

mod apply;
pub mod bucket;
pub mod buffer;
mod check;
mod compactor;
mod deleter;
mod error;
pub mod files;
mod flusher;
mod lock;
pub mod manifest;
mod manifest_change;
mod manifest_log;
mod merge;
mod options;
mod partial_files;
mod provenance;
pub mod record;
mod recovery;
mod repair;
mod request;
mod shared;
mod storage;
pub mod tensor_files;
mod tensor_merge;
pub mod tensor_parts;
pub mod tensor_record;
mod views;
pub mod wal;
mod wal_thread;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use steplake_core::{validate_run_id, ConditionSpec, CoreError, Event, RunInfo, ScalarBatch};
use tokio::sync::oneshot;

pub use buffer::{Buffer, SeriesFilter};
pub use check::{check_data_dir, CheckReport, FileCheck};
pub use compactor::{file_counts, CompactionPolicy};
pub use error::StoreError;
pub use manifest::{
    DataFile, Garbage, Manifest, PartialTensorFile, SeriesRange, Table, WriterState,
};
pub use manifest_log::ManifestPolicy;
pub use options::{StoreOptions, StoreStats};
pub use repair::{repair_manifest, RepairReport};
pub use request::{CreateRun, PendingAck, RunSelector, WriteAck};
pub use tensor_record::TensorPart;
pub use views::{BufferedRows, FileRef, ScalarsSnapshot, ScalarsView, TensorsView};
pub use wal::FsyncPolicy;

use flusher::run_flusher;
use lock::{lock_data_dir, DirLock};
use manifest_log::ManifestLog;
use recovery::{recover, tidy_unlisted_files};
use request::Command;
use shared::{read_state, Shared, State};
use storage::Storage;
use wal_thread::WalThread;

use apply::ConditionChange;
use record::{encode_events_trailer, encode_scalar_record};
use steplake_codec::Codec;
use tensor_parts::validate_part;
use tensor_record::encode_tensor_part;
use wal::WalWriter;

/// A steplake data directory opened by this process.
pub struct Store {
    shared: Arc<Shared>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// None for a bucket read with no data directory.
    _lock: Option<DirLock>,
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) a data directory for reading and writing.
    ///
    /// Fails with [`StoreError::Locked`] when another process holds it, and
    /// with [`StoreError::Corrupt`] when recovery finds damage it must not skip.
    pub fn open(data_dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store, StoreError> {
        let data_dir = data_dir.as_ref().to_path_buf();
        let lock = lock_data_dir(&data_dir)?;
        let storage = match &options.object_store {
            None => Storage::Local,
            Some(url) => Storage::claim_bucket(url, &data_dir)?,
        };
        let data_files = files::data_files_dir(&data_dir);
        fs::create_dir_all(&data_files).map_err(|e| StoreError::io(&data_files, e))?;
        files::remove_temporary_files(&data_files)?;
        storage.clear_staging(&data_dir)?;
        let recovered = recover(&data_dir, &options.codec, &storage)?;
        tidy_unlisted_files(&data_dir, &storage, &recovered.manifest)?;
        // Their bytes are in the WAL past the manifest, or in no tensor.
        partial_files::remove_unlisted_partials(&data_dir, &recovered.manifest.partial_tensors);
        let wal = WalWriter::open(
            &wal::wal_dir(&data_dir),
            &recovered.replay,
            recovered.next_lsn,
            options.wal_segment_bytes,
            options.fsync,
        )?;
        let replayed = recovered.buffer.rows() + recovered.buffer.tensors().len();
        if replayed > 0 {
            tracing::info!(
                points = replayed,
                "recovered points from the write-ahead log"
            );
        }
        let next_file_id = recovered.manifest.next_file_id;
        let manifest_log = ManifestLog::new(recovered.log_position.clone(), options.manifest);
        manifest_log.start(&storage, &data_dir, &recovered.manifest)?;
        let mut shared = Shared::new(
            data_dir.clone(),
            State {
                manifest: recovered.manifest,
                runs: recovered.rules.runs.clone(),
                active: recovered.buffer,
                frozen: Vec::new(),
                failure: None,
                watch: recovered.rules.watch.clone(),
            },
            options.codec.clone(),
            storage,
        );
        shared.compaction = options.compaction;
        shared.manifest_log = manifest_log;
        // No query runs yet: what compaction replaced can go now.
        compactor::delete_garbage(&shared, i64::MAX)?;
        let shared = Arc::new(shared);
        let (command_tx, command_rx) = mpsc::channel();
        let (flush_tx, flush_rx) = mpsc::channel();
        let writer = WalThread {
            shared: shared.clone(),
            wal,
            rules: recovered.rules,
            next_file_id,
            buffer_started: (replayed > 0).then(Instant::now),
            options,
            flush_tx,
            deleted_runs: recovered.deleted_runs.clone(),
            deletion_replies: Vec::new(),
        };
        let flusher_shared = shared.clone();
        let threads = vec![
            std::thread::Builder::new()
                .name("steplake-wal".into())
                .spawn(move || writer.run(command_rx))
                .map_err(|e| StoreError::io(&data_dir, e))?,
            std::thread::Builder::new()
                .name("steplake-flush".into())
                .spawn(move || run_flusher(flusher_shared, flush_rx))
                .map_err(|e| StoreError::io(&data_dir, e))?,
        ];
        let store = Store {
            shared,
            commands: Mutex::new(Some(command_tx)),
            threads: Mutex::new(threads),
            _lock: Some(lock),
        };
        if !recovered.deleted_runs.is_empty() {
            // A deletion the WAL holds but no manifest yet: finished before
            // anyone reads, so no query sees the run half deleted.
            store.flush()?;
        }
        Ok(store)
    }

    /// Opens a data directory for reading only: nothing on disk is changed and
    /// writes are refused. Still takes the lock, so it fails while a server runs.
    pub fn open_read_only(data_dir: impl AsRef<Path>) -> Result<Store, StoreError> {
        let data_dir = data_dir.as_ref().to_path_buf();
        if !Manifest::exists(&data_dir) && !wal::wal_dir(&data_dir).exists() {
            return Err(StoreError::io(
                &data_dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no steplake data here (no manifest or wal/)",
                ),
            ));
        }
        let lock = lock_data_dir(&data_dir)?;
        Store::read_only(data_dir, Storage::Local, Some(lock))
    }

    /// Opens a bucket prefix for reading only, with no data directory and no
    /// server: what its manifest lists is what queries see. Nothing is
    /// written, and nothing is locked: a server may be writing there.
    pub fn open_bucket_read_only(url: &str) -> Result<Store, StoreError> {
        let storage = Storage::read_bucket(url)?;
        if !manifest_log::exists(&storage, Path::new(""))? {
            return Err(StoreError::bucket(
                url,
                "read",
                "there is no steplake data here (no manifest/)",
            ));
        }
        Store::read_only(PathBuf::new(), storage, None)
    }

    fn read_only(
        data_dir: PathBuf,
        storage: Storage,
        lock: Option<DirLock>,
    ) -> Result<Store, StoreError> {
        let recovered = recover(&data_dir, &Codec::cpu(), &storage)?;
        Ok(Store {
            shared: Arc::new(Shared::new(
                data_dir,
                State {
                    manifest: recovered.manifest,
                    runs: recovered.rules.runs,
                    active: recovered.buffer,
                    frozen: Vec::new(),
                    failure: None,
                    watch: recovered.rules.watch,
                },
                Codec::cpu(),
                storage,
            )),
            commands: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            _lock: lock,
        })
    }

    /// The bucket prefix flushed files live in, when there is one.
    pub fn bucket_url(&self) -> Option<&url::Url> {
        self.shared.storage.bucket().map(|b| b.url())
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.shared.data_dir
    }

    /// Monitoring counters.
    pub fn stats(&self) -> &StoreStats {
        &self.shared.stats
    }

    /// How many data files the manifest lists, by table (`scalars`, `tensors`).
    pub fn data_file_counts(&self) -> std::collections::BTreeMap<&'static str, usize> {
        file_counts(&read_state(&self.shared).manifest)
    }

    /// Points waiting in memory for a flush.
    pub fn buffered_rows(&self) -> usize {
        let state = read_state(&self.shared);
        state.active.rows() + state.frozen.iter().map(|f| f.buffer.rows()).sum::<usize>()
    }

    /// Bytes of WAL segments on disk.
    pub fn wal_bytes(&self) -> u64 {
        wal::total_bytes(&wal::wal_dir(&self.shared.data_dir))
    }

    fn send(&self, command: Command) -> Result<(), StoreError> {
        let guard = self.commands.lock().map_err(|_| StoreError::closed())?;
        let sender = guard.as_ref().ok_or_else(|| StoreError::Unavailable {
            reason: "the data directory was opened read-only".into(),
        })?;
        sender.send(command).map_err(|_| StoreError::closed())
    }

    /// Makes a batch durable, applies it, and acknowledges it.
    ///
    /// The batch is validated first; a batch whose (writer, sequence) was
    /// already applied is acknowledged with `duplicate: true` and not applied again.
    pub async fn write_scalars(
        &self,
        writer_id: &str,
        sequence: u64,
        run_id: &str,
        batch: ScalarBatch,
    ) -> Result<WriteAck, StoreError> {
        self.submit_scalars(writer_id, sequence, run_id, batch)?
            .await
    }

    /// Validates a batch and queues it for the WAL without waiting; the
    /// returned [`PendingAck`] resolves once it is durable and applied.
    ///
    /// Batches submitted from one thread reach the WAL in submission order,
    /// which is what keeps a writer's increasing sequence numbers meaningful
    /// while several of its batches are in flight.
    pub fn submit_scalars(
        &self,
        writer_id: &str,
        sequence: u64,
        run_id: &str,
        batch: ScalarBatch,
    ) -> Result<PendingAck, StoreError> {
        self.submit_scalars_with_events(writer_id, sequence, run_id, batch, Vec::new())
    }

    /// [`Store::submit_scalars`] for a batch whose points fired `events`:
    /// the batch and its events go into one WAL record, so they are durable
    /// together, and the events are applied (readable in [`Store::events`])
    /// when the batch is. An event whose id is stored already is dropped,
    /// and so are the events of a batch stored before (a retry).
    pub fn submit_scalars_with_events(
        &self,
        writer_id: &str,
        sequence: u64,
        run_id: &str,
        batch: ScalarBatch,
        events: Vec<Event>,
    ) -> Result<PendingAck, StoreError> {
        if writer_id.is_empty() {
            return Err(CoreError::invalid("writer_id", "must not be empty").into());
        }
        if sequence == 0 {
            return Err(CoreError::invalid("sequence", "must be >= 1").into());
        }
        validate_run_id(run_id)?;
        batch.validate()?;
        // Encode and checksum here, in parallel with the WAL thread.
        let mut payload = Vec::new();
        encode_scalar_record(&mut payload, writer_id, sequence, run_id, &batch);
        if !events.is_empty() {
            encode_events_trailer(&mut payload, &events);
        }
        let mut payload_crc = crc32fast::Hasher::new();
        payload_crc.update(&payload);
        let (reply, ack) = oneshot::channel();
        self.send(Command::Scalars {
            writer_id: writer_id.to_string(),
            sequence,
            run_id: run_id.to_string(),
            batch,
            events,
            payload,
            payload_crc,
            reply,
        })?;
        Ok(PendingAck { ack })
    }

    /// Makes a tensor part durable and acknowledges it; the tensor becomes
    /// readable when its last part is applied. See [`Store::submit_tensor`].
    pub async fn write_tensor(&self, part: TensorPart) -> Result<WriteAck, StoreError> {
        self.submit_tensor(part)?.await
    }

    /// Validates a tensor part (a whole tensor, one chunk of it, or
    /// statistics only) and queues it for the WAL without waiting.
    ///
    /// A whole tensor sent without statistics gets them computed here, on
    /// the caller's thread, so the WAL record carries them. Gaps, overlaps
    /// and headers that differ between chunks are rejected by the WAL
    /// thread, which knows what was received.
    pub fn submit_tensor(&self, mut part: TensorPart) -> Result<PendingAck, StoreError> {
        if part.writer_id.is_empty() {
            return Err(CoreError::invalid("writer_id", "must not be empty").into());
        }
        if part.sequence == 0 {
            return Err(CoreError::invalid("sequence", "must be >= 1").into());
        }
        validate_part(&part)?;
        if part.stats.is_none() && part.offset == 0 && part.data.len() as u64 == part.total_len {
            part.stats = Some(self.shared.codec.tensor_stats(&part.data, part.dtype));
        }
        let mut payload = Vec::new();
        encode_tensor_part(&mut payload, &part, false);
        let mut payload_crc = crc32fast::Hasher::new();
        payload_crc.update(&payload);
        let (reply, ack) = oneshot::channel();
        self.send(Command::Tensor {
            part,
            payload,
            payload_crc,
            reply,
        })?;
        Ok(PendingAck { ack })
    }

    /// Creates a run, or resumes it when `request.run_id` names an existing one.
    /// Returns the run and whether it was resumed.
    pub async fn create_run(&self, request: CreateRun) -> Result<(RunInfo, bool), StoreError> {
        if let Some(id) = &request.run_id {
            validate_run_id(id)?;
        }
        if let Some(parent) = &request.parent_run_id {
            validate_run_id(parent)
                .map_err(|_| CoreError::invalid("parent_run_id", "is not a valid run id"))?;
        }
        if !request.config_json.is_empty() {
            serde_json::from_str::<serde_json::Value>(&request.config_json).map_err(|e| {
                CoreError::invalid("config_json", format!("is not valid JSON: {e}"))
            })?;
        }
        let (reply, done) = oneshot::channel();
        self.send(Command::CreateRun { request, reply })?;
        done.await.map_err(|_| StoreError::closed())?
    }

    /// Marks a run finished with `status` ("finished" when empty).
    pub async fn finish_run(&self, run_id: &str, status: &str) -> Result<RunInfo, StoreError> {
        validate_run_id(run_id)?;
        let (reply, done) = oneshot::channel();
        self.send(Command::FinishRun {
            run_id: run_id.to_string(),
            status: if status.is_empty() {
                "finished"
            } else {
                status
            }
            .to_string(),
            reply,
        })?;
        done.await.map_err(|_| StoreError::closed())?
    }

    /// Registers a standing condition (or replaces the one with its id),
    /// durably. A condition on one run fails with
    /// [`StoreError::RunNotFound`] when the run does not exist. The
    /// predicate is not checked here: the layer that evaluates it does.
    pub async fn set_condition(&self, spec: ConditionSpec) -> Result<(), StoreError> {
        spec.validate_fields()?;
        if let Some(run_id) = spec.run_id() {
            validate_run_id(run_id)?;
        }
        self.change_condition(ConditionChange::Set(Box::new(spec)))
            .await
    }

    /// Removes the standing condition `id`, durably; its events stay.
    /// Fails with [`StoreError::ConditionNotFound`] when there is none.
    pub async fn remove_condition(&self, id: &str) -> Result<(), StoreError> {
        if !read_state(&self.shared).watch.conditions.contains_key(id) {
            return Err(StoreError::ConditionNotFound { id: id.to_string() });
        }
        self.change_condition(ConditionChange::Removed(id.to_string()))
            .await
    }

    async fn change_condition(&self, change: ConditionChange) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        self.send(Command::Condition { change, reply })?;
        done.await.map_err(|_| StoreError::closed())?
    }

    /// Makes events of run `run_id` fired apart from any batch (by a fit)
    /// durable, and readable in [`Store::events`]; an event whose id is
    /// stored already is dropped.
    pub async fn append_events(&self, run_id: &str, events: Vec<Event>) -> Result<(), StoreError> {
        validate_run_id(run_id)?;
        let (reply, done) = oneshot::channel();
        self.send(Command::Events {
            logged: apply::LoggedEvents {
                run_id: run_id.to_string(),
                events,
            },
            reply,
        })?;
        done.await.map_err(|_| StoreError::closed())?
    }

    /// The standing conditions, by id.
    pub fn conditions(&self) -> Vec<ConditionSpec> {
        read_state(&self.shared)
            .watch
            .conditions
            .values()
            .cloned()
            .collect()
    }

    /// The standing condition `id`, if there is one.
    pub fn condition(&self, id: &str) -> Option<ConditionSpec> {
        read_state(&self.shared).watch.conditions.get(id).cloned()
    }

    /// The events of `run_id` (of every run when `None`) with a seq above
    /// `after_seq`, in seq order.
    pub fn events(&self, run_id: Option<&str>, after_seq: u64) -> Vec<Event> {
        self.events_page(run_id, after_seq, usize::MAX)
    }

    /// [`Store::events`], at most the first `limit` of them.
    pub fn events_page(&self, run_id: Option<&str>, after_seq: u64, limit: usize) -> Vec<Event> {
        let state = read_state(&self.shared);
        let events = &state.watch.events;
        let start = events.partition_point(|e| e.seq <= after_seq);
        events[start..]
            .iter()
            .filter(|e| run_id.is_none_or(|id| e.run_id == id))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The seq of the latest event stored (0 when there is none).
    pub fn last_event_seq(&self) -> u64 {
        read_state(&self.shared)
            .watch
            .events
            .last()
            .map_or(0, |e| e.seq)
    }

    /// Writes everything buffered to Parquet and waits until it is in the
    /// manifest. Blocks the calling thread.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.flush_then(false)
    }

    /// Flushes, then waits for the compaction passes that follow a flush:
    /// until no merge is due, or another flush waits. Blocks the calling
    /// thread.
    pub fn flush_and_compact(&self) -> Result<(), StoreError> {
        self.flush_then(true)
    }

    fn flush_then(&self, then_compact: bool) -> Result<(), StoreError> {
        let (reply, done) = mpsc::channel();
        self.send(Command::Flush {
            reply,
            then_compact,
        })?;
        done.recv()
            .map_err(|_| StoreError::closed())?
            .map_err(|reason| StoreError::Unavailable { reason })
    }

    /// Deletes the runs `selector` names, with every point and tensor of
    /// them, and returns their ids. Once it returns the deletion is durable
    /// and done: the run is gone from `runs`, the buffer and every file
    /// (rewritten or dropped; the files replaced are deleted after the
    /// garbage grace period). Later writes to the run are refused until it
    /// is created again. Blocks the calling thread.
    pub fn delete_runs(&self, selector: RunSelector) -> Result<Vec<String>, StoreError> {
        let (reply, started) = mpsc::channel();
        self.send(Command::DeleteRuns { selector, reply })?;
        let started = started.recv().map_err(|_| StoreError::closed())??;
        started
            .flushed
            .recv()
            .map_err(|_| StoreError::closed())?
            .map_err(|reason| StoreError::Unavailable { reason })?;
        Ok(started.runs)
    }

    /// Flushes, stops the background threads and releases the directory.
    /// Blocks the calling thread.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        let flushed = if self.is_writable() {
            self.flush()
        } else {
            Ok(())
        };
        if let Ok(mut commands) = self.commands.lock() {
            commands.take();
        }
        if let Ok(mut threads) = self.threads.lock() {
            for t in threads.drain(..) {
                let _ = t.join();
            }
        }
        flushed?;
        // Everything is in the bucket: another data directory may take it.
        self.shared.storage.release()
    }

    fn is_writable(&self) -> bool {
        self.commands.lock().map(|c| c.is_some()).unwrap_or(false)
    }

    /// All runs, sorted by id.
    pub fn runs(&self) -> Vec<RunInfo> {
        read_state(&self.shared).runs.values().cloned().collect()
    }

    /// The project of run `run_id`, if the run exists.
    pub fn run_project(&self, run_id: &str) -> Option<String> {
        read_state(&self.shared)
            .runs
            .get(run_id)
            .map(|run| run.project.clone())
    }

    /// Whether a run exists.
    pub fn run_exists(&self, run_id: &str) -> bool {
        read_state(&self.shared).runs.contains_key(run_id)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Ok(mut commands) = self.commands.lock() {
            commands.take();
        }
        if let Ok(mut threads) = self.threads.lock() {
            for t in threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

/// A random id of 16 hex digits.
pub fn random_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = now_us().to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
