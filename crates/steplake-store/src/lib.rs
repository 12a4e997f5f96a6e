//! steplake-store: makes acknowledged points durable and keeps them readable.
//!
//! It owns a data directory:
//!
//! ```text
//! DATA_DIR/LOCK              held while a process uses the directory
//! DATA_DIR/wal/*.wal         write-ahead log segments (see [`wal`])
//! DATA_DIR/data/*.parquet    standard Parquet files (see [`files`])
//! DATA_DIR/manifest.json     files, runs, writers, WAL coverage (see [`manifest`])
//! ```
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
//! Recovery: [`Store::open`] loads the manifest, replays WAL records past it
//! (a torn tail is dropped, mid-log corruption is an error), and removes
//! files a crash left behind before they reached the manifest.

pub mod buffer;
pub mod files;
pub mod manifest;
pub mod record;
pub mod tensor_files;
pub mod tensor_parts;
pub mod tensor_record;
pub mod wal;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use steplake_core::schema::scalars_col;
use steplake_core::{
    validate_run_id, CoreError, RunInfo, ScalarBatch, TensorRecord, RUN_STATUS_RUNNING,
};
use tokio::sync::oneshot;

pub use buffer::{Buffer, SeriesFilter};
pub use manifest::{DataFile, Manifest, SeriesRange, Table, WriterState};
pub use tensor_record::{TensorPart, FLAG_STATS_ONLY};
pub use wal::FsyncPolicy;

use record::{decode_scalar_record, encode_scalar_record};
use steplake_codec::Codec;
use tensor_parts::{validate_part, Assembler};
use tensor_record::{decode_tensor_part, encode_tensor_part, FLAG_CARRIED_OVER};
use wal::{frame_record, frame_record_with_crc, RecordKind, WalWriter};

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An operating-system I/O call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing or reading a Parquet file failed.
    #[error("Parquet error on {path}: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The Parquet error.
        source: parquet::errors::ParquetError,
    },
    /// Stored data is damaged; start-up cannot continue safely.
    #[error("corrupt data in {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Another process holds the data directory.
    #[error("data directory {dir} is in use by another steplake process{holder}; stop it, or use another --data-dir")]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// " (pid N)" when known.
        holder: String,
    },
    /// `manifest.json` is missing but the directory holds data it described.
    #[error("{dir} has no manifest.json, but it holds {found}: the manifest was lost or deleted, and starting as if the directory were new would hide every flushed point. Nothing was changed; restore manifest.json from a backup")]
    ManifestMissing {
        /// The data directory.
        dir: PathBuf,
        /// What was found instead.
        found: String,
    },
    /// The input was rejected by validation.
    #[error(transparent)]
    Invalid(#[from] CoreError),
    /// A write or finish named a run that does not exist.
    #[error("run {run_id:?} does not exist; create it first (CreateRun)")]
    RunNotFound {
        /// The unknown run id.
        run_id: String,
    },
    /// The store is shutting down or stopped after a failure.
    #[error("the store is not accepting writes: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
}

impl StoreError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A Parquet error on `path`.
    pub fn parquet(path: &Path, source: parquet::errors::ParquetError) -> Self {
        StoreError::Parquet {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Damage in `path` at `offset`.
    pub fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }

    fn closed() -> Self {
        StoreError::Unavailable {
            reason: "the server is shutting down".into(),
        }
    }
}

/// Tuning of a writable store. The defaults suit a workstation.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// When appends are fsynced.
    pub fsync: FsyncPolicy,
    /// Freeze and flush the buffer once it holds this many points.
    pub flush_rows: usize,
    /// Freeze and flush the buffer once it holds this many bytes of tensors.
    pub flush_tensor_bytes: usize,
    /// Freeze and flush the buffer once its oldest point is this old.
    pub flush_interval: Duration,
    /// Start a new WAL segment past this size.
    pub wal_segment_bytes: u64,
    /// Compresses tensors and computes their statistics: the CPU, or a GPU
    /// chosen with [`Codec::select`].
    pub codec: Codec,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            fsync: FsyncPolicy::Batch,
            flush_rows: 8 << 20,
            flush_tensor_bytes: 256 << 20,
            flush_interval: Duration::from_secs(60),
            wal_segment_bytes: 64 << 20,
            codec: Codec::cpu(),
        }
    }
}

/// Acknowledgement of one durable batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteAck {
    /// The writer's sequence number.
    pub sequence: u64,
    /// Points in the batch.
    pub points: u64,
    /// The batch had been applied before; it was not applied again.
    pub duplicate: bool,
}

/// What a caller asks for when creating or resuming a run.
#[derive(Debug, Clone, Default)]
pub struct CreateRun {
    /// Client-chosen id; resumes the run when it exists. Generated when `None`.
    pub run_id: Option<String>,
    /// Project; "default" when empty.
    pub project: String,
    /// Name; the run id when empty.
    pub name: String,
    /// Configuration JSON; `{}` when empty. Must be valid JSON.
    pub config_json: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Forked from this run.
    pub parent_run_id: Option<String>,
    /// At this step of the parent.
    pub fork_step: Option<i64>,
}

/// Counters for monitoring.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Points acknowledged since start.
    pub points_written: AtomicU64,
    /// Batches acknowledged since start (duplicates included).
    pub batches_written: AtomicU64,
    /// Parquet files written since start.
    pub files_flushed: AtomicU64,
    /// Total milliseconds spent writing Parquet files since start.
    pub flush_millis: AtomicU64,
}

/// An acknowledgement that arrives once a submitted batch is durable.
pub struct PendingAck {
    ack: oneshot::Receiver<Result<WriteAck, StoreError>>,
}

impl std::future::Future for PendingAck {
    type Output = Result<WriteAck, StoreError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.ack)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(StoreError::closed())))
    }
}

/// A source of buffered rows as returned by [`Store::scalars_view`].
#[derive(Debug, Clone)]
pub struct BufferedRows {
    /// Larger versions hold later writes. Frozen buffers carry the id their
    /// file will get; the active buffer `u64::MAX`.
    pub version: u64,
    /// Visible rows, one batch per series, sorted by (run, name, step).
    pub batches: Vec<RecordBatch>,
}

/// A consistent view of the `scalars` table for one query.
#[derive(Debug, Clone)]
pub struct ScalarsView {
    /// The data directory (file paths are relative to it).
    pub data_dir: PathBuf,
    /// Data files that can hold matching rows, oldest first.
    pub files: Vec<FileRef>,
    /// Buffered rows, oldest source first.
    pub buffered: Vec<BufferedRows>,
}

impl ScalarsView {
    /// Absolute path of a data file.
    pub fn file_path(&self, file: &FileRef) -> PathBuf {
        self.data_dir.join(&file.path)
    }
}

/// A consistent view of the `tensors` table for one query.
#[derive(Debug, Clone)]
pub struct TensorsView {
    /// The data directory (file paths are relative to it).
    pub data_dir: PathBuf,
    /// Tensor files that can hold matching rows, oldest first.
    pub files: Vec<FileRef>,
    /// Buffered tensors with their runs, oldest first (all newer than the files).
    pub buffered: Vec<(Arc<str>, Arc<TensorRecord>)>,
    /// Whether some (run, name, step) may be held more than once among these
    /// sources (a step written again): the reader must keep the latest.
    pub repeated: bool,
}

/// A data file as a query needs it: its version and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// The file id, which is also its version: larger ids hold later writes.
    pub id: u64,
    /// Path relative to the data directory.
    pub path: String,
}

struct Frozen {
    file_id: u64,
    buffer: Arc<Buffer>,
}

/// What readers see; changed by the WAL thread (apply, freeze) and the flusher (publish).
#[derive(Default)]
struct State {
    manifest: Manifest,
    runs: BTreeMap<String, RunInfo>,
    active: Buffer,
    frozen: Vec<Frozen>,
    failure: Option<String>,
}

enum Command {
    Scalars {
        writer_id: String,
        sequence: u64,
        run_id: String,
        batch: ScalarBatch,
        /// The encoded WAL payload and its CRC, prepared by the submitter.
        payload: Vec<u8>,
        payload_crc: crc32fast::Hasher,
        reply: oneshot::Sender<Result<WriteAck, StoreError>>,
    },
    Tensor {
        part: TensorPart,
        /// The encoded WAL payload and its CRC, prepared by the submitter.
        payload: Vec<u8>,
        payload_crc: crc32fast::Hasher,
        reply: oneshot::Sender<Result<WriteAck, StoreError>>,
    },
    CreateRun {
        request: CreateRun,
        reply: oneshot::Sender<Result<(RunInfo, bool), StoreError>>,
    },
    FinishRun {
        run_id: String,
        status: String,
        reply: oneshot::Sender<Result<RunInfo, StoreError>>,
    },
    Flush {
        reply: mpsc::Sender<Result<(), String>>,
    },
}

struct FlushJob {
    file_id: u64,
    buffer: Arc<Buffer>,
    covered_lsn: u64,
    runs: BTreeMap<String, RunInfo>,
    writers: BTreeMap<String, WriterState>,
    /// Callers waiting for this flush.
    replies: Vec<mpsc::Sender<Result<(), String>>>,
}

struct Shared {
    data_dir: PathBuf,
    state: RwLock<State>,
    stats: StoreStats,
    /// Flush jobs handed to the flusher and not yet finished.
    pending_flushes: Mutex<usize>,
    flush_finished: Condvar,
    /// Set by [`Store::shutdown`]: the flusher stops retrying a failing flush.
    shutting_down: AtomicBool,
    /// Compresses tensors and computes their statistics (CPU or GPU).
    codec: Codec,
    /// Random per open, part of every data file name: files written by two
    /// processes (should the lock ever be defeated) never share a name.
    incarnation: String,
}

impl Shared {
    fn new(data_dir: PathBuf, state: State, codec: Codec) -> Self {
        Shared {
            data_dir,
            codec,
            incarnation: random_id(),
            state: RwLock::new(state),
            stats: StoreStats::default(),
            pending_flushes: Mutex::new(0),
            flush_finished: Condvar::new(),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Waits until fewer than [`MAX_PENDING_FLUSHES`] flushes are pending, then
    /// counts one more. This is the write path's backpressure: when flushing
    /// falls behind, acknowledgements slow down instead of memory growing.
    fn reserve_flush_slot(&self) {
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

    fn release_flush_slot(&self) {
        let mut pending = self
            .pending_flushes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *pending = pending.saturating_sub(1);
        self.flush_finished.notify_all();
    }
}

/// Frozen buffers that may wait for the flusher at once.
const MAX_PENDING_FLUSHES: usize = 2;

/// A steplake data directory opened by this process.
pub struct Store {
    shared: Arc<Shared>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    _lock: DirLock,
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// An exclusive lock on a data directory, held while open.
///
/// The lock is on the directory itself, not on a file inside it, so
/// deleting `LOCK` cannot let a second process in. `LOCK` only holds the
/// owner's pid, for the message a second process prints.
struct DirLock {
    _dir: File,
}

fn lock_data_dir(dir: &Path) -> Result<DirLock, StoreError> {
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let directory = File::open(dir).map_err(|e| StoreError::io(dir, e))?;
    let pid_path = dir.join("LOCK");
    match directory.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&pid_path)
                .ok()
                .map(|pid| pid.trim().to_string())
                .filter(|pid| !pid.is_empty())
                .map(|pid| format!(" (pid {pid})"))
                .unwrap_or_default();
            return Err(StoreError::Locked {
                dir: dir.to_path_buf(),
                holder,
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(StoreError::io(dir, e)),
    }
    // Best effort: the pid is for messages only, and a read-only directory
    // (an embedded reader of a backup) has no use for it.
    let _ = fs::write(&pid_path, std::process::id().to_string());
    Ok(DirLock { _dir: directory })
}

/// Refuses a directory whose manifest is gone while data it described is
/// still there: treating it as new would hide (and once deleted every)
/// flushed file. Nothing is changed.
fn check_manifest_present(data_dir: &Path) -> Result<(), StoreError> {
    if Manifest::exists(data_dir) {
        return Ok(());
    }
    let data_files = files::parquet_files(&files::data_files_dir(data_dir));
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
        dir: data_dir.to_path_buf(),
        found: found.join(" and "),
    })
}

/// The state rebuilt from the manifest and the WAL.
struct Recovered {
    manifest: Manifest,
    runs: BTreeMap<String, RunInfo>,
    writers: BTreeMap<String, WriterState>,
    buffer: Buffer,
    assembler: Assembler,
    replay: wal::Replay,
    next_lsn: u64,
}

fn recover(data_dir: &Path, codec: &Codec) -> Result<Recovered, StoreError> {
    check_manifest_present(data_dir)?;
    let manifest = Manifest::load(data_dir)?;
    for file in &manifest.files {
        let path = data_dir.join(&file.path);
        if !path.exists() {
            return Err(StoreError::corrupt(
                &path,
                0,
                "the manifest lists this data file but it is missing; restore it from a backup",
            ));
        }
    }
    let mut runs = manifest.runs.clone();
    let mut writers = manifest.writers.clone();
    let mut buffer = Buffer::default();
    let mut assembler = Assembler::new(codec.clone());
    let mut replay = wal::replay(&wal::wal_dir(data_dir), manifest.covered_lsn)?;
    let mut next_lsn = manifest.covered_lsn + 1;
    for record in std::mem::take(&mut replay.records) {
        next_lsn = next_lsn.max(record.lsn + 1);
        if record.lsn <= manifest.covered_lsn {
            continue;
        }
        let bad = |what: &str| {
            StoreError::corrupt(
                &wal::wal_dir(data_dir),
                0,
                format!("WAL record {} holds an undecodable {what}", record.lsn),
            )
        };
        match record.kind {
            RecordKind::Run => {
                let run: RunInfo =
                    serde_json::from_slice(&record.payload).map_err(|_| bad("run"))?;
                runs.insert(run.run_id.clone(), run);
            }
            RecordKind::Scalars => {
                let rec =
                    decode_scalar_record(&record.payload).ok_or_else(|| bad("scalar batch"))?;
                let seen = writers.get(&rec.writer_id).map_or(0, |w| w.sequence);
                if rec.sequence > seen {
                    writers.insert(
                        rec.writer_id.clone(),
                        WriterState {
                            sequence: rec.sequence,
                            last_seen_us: now_us(),
                        },
                    );
                    buffer.apply(&rec.run_id, &rec.batch);
                }
            }
            RecordKind::Tensor => {
                let part = decode_tensor_part(&record.payload).ok_or_else(|| bad("tensor"))?;
                let seen = writers.get(&part.writer_id).map_or(0, |w| w.sequence);
                let carried_over = part.flags & FLAG_CARRIED_OVER != 0;
                if part.sequence > seen || carried_over {
                    if !carried_over {
                        writers.insert(
                            part.writer_id.clone(),
                            WriterState {
                                sequence: part.sequence,
                                last_seen_us: now_us(),
                            },
                        );
                    }
                    let run_id = part.run_id.clone();
                    if let Some(tensor) = assembler.apply(part) {
                        buffer.apply_tensor(&run_id, tensor);
                    }
                }
            }
        }
    }
    Ok(Recovered {
        manifest,
        runs,
        writers,
        buffer,
        assembler,
        replay,
        next_lsn,
    })
}

impl Store {
    /// Opens (creating if needed) a data directory for reading and writing.
    ///
    /// Fails with [`StoreError::Locked`] when another process holds it, and
    /// with [`StoreError::Corrupt`] when recovery finds damage it must not skip.
    pub fn open(data_dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store, StoreError> {
        let data_dir = data_dir.as_ref().to_path_buf();
        let lock = lock_data_dir(&data_dir)?;
        let data_files = files::data_files_dir(&data_dir);
        fs::create_dir_all(&data_files).map_err(|e| StoreError::io(&data_files, e))?;
        files::remove_temporary_files(&data_files)?;
        let recovered = recover(&data_dir, &options.codec)?;
        warn_about_unlisted_files(&data_dir, &recovered.manifest);
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
        let shared = Arc::new(Shared::new(
            data_dir.clone(),
            State {
                manifest: recovered.manifest,
                runs: recovered.runs.clone(),
                active: recovered.buffer,
                frozen: Vec::new(),
                failure: None,
            },
            options.codec.clone(),
        ));
        let (command_tx, command_rx) = mpsc::channel();
        let (flush_tx, flush_rx) = mpsc::channel();
        let writer = WalThread {
            shared: shared.clone(),
            wal,
            runs: recovered.runs,
            writers: recovered.writers.into_iter().collect(),
            assembler: recovered.assembler,
            next_file_id,
            buffer_started: (replayed > 0).then(Instant::now),
            options,
            flush_tx,
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
        Ok(Store {
            shared,
            commands: Mutex::new(Some(command_tx)),
            threads: Mutex::new(threads),
            _lock: lock,
        })
    }

    /// Opens a data directory for reading only: nothing on disk is changed and
    /// writes are refused. Still takes the lock, so it fails while a server runs.
    pub fn open_read_only(data_dir: impl AsRef<Path>) -> Result<Store, StoreError> {
        let data_dir = data_dir.as_ref().to_path_buf();
        if !data_dir.join("manifest.json").exists() && !wal::wal_dir(&data_dir).exists() {
            return Err(StoreError::io(
                &data_dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no steplake data here (no manifest.json or wal/); check --data-dir",
                ),
            ));
        }
        let lock = lock_data_dir(&data_dir)?;
        let recovered = recover(&data_dir, &Codec::cpu())?;
        Ok(Store {
            shared: Arc::new(Shared::new(
                data_dir,
                State {
                    manifest: recovered.manifest,
                    runs: recovered.runs,
                    active: recovered.buffer,
                    frozen: Vec::new(),
                    failure: None,
                },
                Codec::cpu(),
            )),
            commands: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            _lock: lock,
        })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.shared.data_dir
    }

    /// Monitoring counters.
    pub fn stats(&self) -> &StoreStats {
        &self.shared.stats
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
        let mut payload_crc = crc32fast::Hasher::new();
        payload_crc.update(&payload);
        let (reply, ack) = oneshot::channel();
        self.send(Command::Scalars {
            writer_id: writer_id.to_string(),
            sequence,
            run_id: run_id.to_string(),
            batch,
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
        encode_tensor_part(&mut payload, &part);
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

    /// The tensor files and buffered tensors that can match `filter`, taken
    /// at one instant (buffered ones with their runs, oldest first).
    pub fn tensors_view(&self, filter: &SeriesFilter) -> TensorsView {
        let state = read_state(&self.shared);
        let files = state
            .manifest
            .files
            .iter()
            .filter(|f| f.table == Table::Tensors)
            .filter(|f| f.series.iter().any(|r| filter.matches_range(r)))
            .map(|f| FileRef {
                id: f.id,
                path: f.path.clone(),
            })
            .collect();
        let buffered: Vec<(Arc<str>, Arc<TensorRecord>)> = state
            .frozen
            .iter()
            .map(|f| f.buffer.as_ref())
            .chain(std::iter::once(&state.active))
            .flat_map(|b| b.tensors().iter())
            .filter(|(run, t)| {
                filter.matches_series(run, &t.name) && filter.matches_steps(t.step, t.step)
            })
            .cloned()
            .collect();
        let repeated = tensors_repeat(&state.manifest, filter, &buffered);
        TensorsView {
            data_dir: self.shared.data_dir.clone(),
            files,
            buffered,
            repeated,
        }
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

    /// Writes everything buffered to Parquet and waits until it is in the
    /// manifest. Blocks the calling thread.
    pub fn flush(&self) -> Result<(), StoreError> {
        let (reply, done) = mpsc::channel();
        self.send(Command::Flush { reply })?;
        done.recv()
            .map_err(|_| StoreError::closed())?
            .map_err(|reason| StoreError::Unavailable { reason })
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
        flushed
    }

    fn is_writable(&self) -> bool {
        self.commands.lock().map(|c| c.is_some()).unwrap_or(false)
    }

    /// All runs, sorted by id.
    pub fn runs(&self) -> Vec<RunInfo> {
        read_state(&self.shared).runs.values().cloned().collect()
    }

    /// Whether a run exists.
    pub fn run_exists(&self, run_id: &str) -> bool {
        read_state(&self.shared).runs.contains_key(run_id)
    }

    /// The files and buffered rows that can match `filter`, taken at one instant.
    pub fn scalars_view(&self, filter: &SeriesFilter, projection: Option<&[usize]>) -> ScalarsView {
        let state = read_state(&self.shared);
        let files = state
            .manifest
            .files
            .iter()
            .filter(|f| f.table == Table::Scalars)
            .filter(|f| f.series.iter().any(|r| filter.matches_range(r)))
            .map(|f| FileRef {
                id: f.id,
                path: f.path.clone(),
            })
            .collect();
        let mut buffered: Vec<BufferedRows> = state
            .frozen
            .iter()
            .map(|f| BufferedRows {
                version: f.file_id,
                batches: f.buffer.read(filter, projection),
            })
            .collect();
        buffered.push(BufferedRows {
            version: u64::MAX,
            batches: state.active.read(filter, projection),
        });
        buffered.retain(|b| !b.batches.is_empty());
        ScalarsView {
            data_dir: self.shared.data_dir.clone(),
            files,
            buffered,
        }
    }

    /// Series matching `filter` that more than one source (file or buffer)
    /// holds with overlapping step ranges: only they can have a repeated
    /// (run, name, step), so only they need latest-write resolution.
    pub fn rewritten_series(&self, filter: &SeriesFilter) -> BTreeSet<(String, String)> {
        let state = read_state(&self.shared);
        let buffered: Vec<SeriesRange> = state
            .frozen
            .iter()
            .flat_map(|f| f.buffer.series_ranges())
            .chain(state.active.series_ranges())
            .collect();
        let mut ranges: HashMap<(&str, &str), Vec<(i64, i64)>> = HashMap::new();
        let files = state
            .manifest
            .files
            .iter()
            .filter(|f| f.table == Table::Scalars)
            .flat_map(|f| f.series.iter());
        for r in files.chain(buffered.iter()) {
            if filter.matches_range(r) {
                ranges
                    .entry((&r.run_id, &r.name))
                    .or_default()
                    .push((r.min_step, r.max_step));
            }
        }
        ranges
            .into_iter()
            .filter_map(|((run, name), mut spans)| {
                spans.sort_unstable();
                let overlaps = spans.windows(2).any(|w| w[1].0 <= w[0].1);
                overlaps.then(|| (run.to_string(), name.to_string()))
            })
            .collect()
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

fn read_state(shared: &Shared) -> std::sync::RwLockReadGuard<'_, State> {
    shared
        .state
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_state(shared: &Shared) -> std::sync::RwLockWriteGuard<'_, State> {
    shared
        .state
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Deletes data files that a crash left on disk before they reached the manifest
/// (their points are still in the WAL and will be flushed again).
/// Warns about data files the manifest does not list. Such a file was left
/// by a flush that a crash interrupted after the file was in place and
/// before the manifest named it; its points are still in the WAL and are
/// replayed, so it is never read. It is kept, not deleted: only temporary
/// files are provably garbage.
fn warn_about_unlisted_files(data_dir: &Path, manifest: &Manifest) {
    for path in files::parquet_files(&files::data_files_dir(data_dir)) {
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().to_string()) else {
            continue;
        };
        let relative = format!("data/{name}");
        if !manifest.files.iter().any(|f| f.path == relative) {
            tracing::warn!(file = %name, "a data file is not in the manifest (a flush interrupted by a crash); it is not read, and its points come from the write-ahead log");
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

/// What the WAL thread does with a request once its record is durable.
enum Effect {
    Scalars {
        run_id: String,
        batch: ScalarBatch,
        reply: oneshot::Sender<Result<WriteAck, StoreError>>,
        ack: WriteAck,
    },
    Tensor {
        run_id: String,
        /// The tensor, when this part completed it.
        complete: Option<TensorRecord>,
        reply: oneshot::Sender<Result<WriteAck, StoreError>>,
        ack: WriteAck,
    },
    Duplicate {
        reply: oneshot::Sender<Result<WriteAck, StoreError>>,
        ack: WriteAck,
    },
    Run {
        run: RunInfo,
        resumed: bool,
        reply: RunReply,
    },
}

enum RunReply {
    Created(oneshot::Sender<Result<(RunInfo, bool), StoreError>>),
    Finished(oneshot::Sender<Result<RunInfo, StoreError>>),
}

impl Effect {
    fn fail(self, error: &str) {
        let err = || StoreError::Unavailable {
            reason: error.to_string(),
        };
        match self {
            Effect::Scalars { reply, .. }
            | Effect::Tensor { reply, .. }
            | Effect::Duplicate { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
            Effect::Run { reply, .. } => match reply {
                RunReply::Created(r) => {
                    let _ = r.send(Err(err()));
                }
                RunReply::Finished(r) => {
                    let _ = r.send(Err(err()));
                }
            },
        }
    }
}

/// Owns the WAL writer; serializes every change to the store.
struct WalThread {
    shared: Arc<Shared>,
    wal: WalWriter,
    runs: BTreeMap<String, RunInfo>,
    writers: HashMap<String, WriterState>,
    assembler: Assembler,
    next_file_id: u64,
    buffer_started: Option<Instant>,
    options: StoreOptions,
    flush_tx: mpsc::Sender<FlushJob>,
}

/// Most requests grouped into one append.
const MAX_GROUP: usize = 4096;

impl WalThread {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        let tick = Duration::from_millis(250);
        loop {
            let first = match commands.recv_timeout(tick) {
                Ok(command) => command,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.freeze_if_due(None);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match commands.try_recv() {
                    Ok(command) => group.push(command),
                    Err(_) => break,
                }
            }
            self.process(group);
        }
        // A clean stop flushed everything first: then no segment is left for
        // the next start (or an embedded reader) to replay.
        let covered_lsn = read_state(&self.shared).manifest.covered_lsn;
        if let Err(e) = self.wal.close(covered_lsn) {
            tracing::warn!(error = %e, "closing the write-ahead log failed; the next start replays it");
        }
    }

    fn process(&mut self, group: Vec<Command>) {
        let mut framed = Vec::new();
        let first_lsn = self.wal.next_lsn();
        let mut effects = Vec::with_capacity(group.len());
        let mut flushes = Vec::new();
        let failure = read_state(&self.shared).failure.clone();
        for command in group {
            if let Some(reason) = &failure {
                reject(command, reason);
                continue;
            }
            match command {
                Command::Flush { reply } => flushes.push(reply),
                other => {
                    if let Some(effect) = self.log(other, &mut framed) {
                        effects.push(effect);
                    }
                }
            }
            if self.wal.policy() == FsyncPolicy::Always && !framed.is_empty() {
                let lsn = self.wal.next_lsn() - 1;
                if let Err(e) = self.wal.append(&framed, lsn) {
                    return self.fail_all(effects, flushes, e);
                }
                framed.clear();
            }
        }
        if !framed.is_empty() {
            if let Err(e) = self.wal.append(&framed, first_lsn) {
                return self.fail_all(effects, flushes, e);
            }
        }
        self.apply(effects);
        let forced = (!flushes.is_empty()).then_some(flushes);
        self.freeze_if_due(forced);
    }

    /// Frames the record for a command and returns what to do once it is durable.
    fn log(&mut self, command: Command, framed: &mut Vec<u8>) -> Option<Effect> {
        match command {
            Command::Scalars {
                writer_id,
                sequence,
                run_id,
                batch,
                payload,
                payload_crc,
                reply,
            } => {
                let ack = WriteAck {
                    sequence,
                    points: batch.len() as u64,
                    duplicate: false,
                };
                let seen = self.writers.get(&writer_id).map_or(0, |w| w.sequence);
                if sequence <= seen {
                    return Some(Effect::Duplicate {
                        reply,
                        ack: WriteAck {
                            duplicate: true,
                            ..ack
                        },
                    });
                }
                if !self.runs.contains_key(&run_id) {
                    let _ = reply.send(Err(StoreError::RunNotFound { run_id }));
                    return None;
                }
                let lsn = self.wal.assign_lsn();
                frame_record_with_crc(framed, lsn, RecordKind::Scalars, &payload, &payload_crc);
                self.writers.insert(
                    writer_id,
                    WriterState {
                        sequence,
                        last_seen_us: now_us(),
                    },
                );
                Some(Effect::Scalars {
                    run_id,
                    batch,
                    reply,
                    ack,
                })
            }
            Command::Tensor {
                part,
                payload,
                payload_crc,
                reply,
            } => {
                let ack = WriteAck {
                    sequence: part.sequence,
                    points: 1,
                    duplicate: false,
                };
                let seen = self.writers.get(&part.writer_id).map_or(0, |w| w.sequence);
                if part.sequence <= seen {
                    return Some(Effect::Duplicate {
                        reply,
                        ack: WriteAck {
                            duplicate: true,
                            ..ack
                        },
                    });
                }
                if !self.runs.contains_key(&part.run_id) {
                    let _ = reply.send(Err(StoreError::RunNotFound {
                        run_id: part.run_id,
                    }));
                    return None;
                }
                if let Err(e) = self.assembler.check(&part) {
                    let _ = reply.send(Err(e.into()));
                    return None;
                }
                let lsn = self.wal.assign_lsn();
                frame_record_with_crc(framed, lsn, RecordKind::Tensor, &payload, &payload_crc);
                self.writers.insert(
                    part.writer_id.clone(),
                    WriterState {
                        sequence: part.sequence,
                        last_seen_us: now_us(),
                    },
                );
                let run_id = part.run_id.clone();
                let complete = self.assembler.apply(part);
                Some(Effect::Tensor {
                    run_id,
                    complete,
                    reply,
                    ack,
                })
            }
            Command::CreateRun { request, reply } => {
                let (run, resumed) = self.create_or_resume(request);
                self.log_run(&run, framed);
                Some(Effect::Run {
                    run,
                    resumed,
                    reply: RunReply::Created(reply),
                })
            }
            Command::FinishRun {
                run_id,
                status,
                reply,
            } => {
                let Some(existing) = self.runs.get(&run_id) else {
                    let _ = reply.send(Err(StoreError::RunNotFound { run_id }));
                    return None;
                };
                let run = RunInfo {
                    status,
                    ended_at_us: Some(now_us()),
                    ..existing.clone()
                };
                self.log_run(&run, framed);
                Some(Effect::Run {
                    run,
                    resumed: false,
                    reply: RunReply::Finished(reply),
                })
            }
            Command::Flush { .. } => None,
        }
    }

    fn log_run(&mut self, run: &RunInfo, framed: &mut Vec<u8>) {
        let payload = serde_json::to_vec(run).unwrap_or_default();
        let lsn = self.wal.assign_lsn();
        frame_record(framed, lsn, RecordKind::Run, &payload);
        self.runs.insert(run.run_id.clone(), run.clone());
    }

    fn create_or_resume(&self, request: CreateRun) -> (RunInfo, bool) {
        if let Some(existing) = request.run_id.as_ref().and_then(|id| self.runs.get(id)) {
            let mut run = existing.clone();
            run.status = RUN_STATUS_RUNNING.into();
            run.ended_at_us = None;
            run.config_json = merged_config(&run.config_json, &request.config_json);
            return (run, true);
        }
        let run_id = request.run_id.unwrap_or_else(random_id);
        let run = RunInfo {
            project: non_empty_or(request.project, "default"),
            name: non_empty_or(request.name, &run_id),
            created_at_us: now_us(),
            ended_at_us: None,
            status: RUN_STATUS_RUNNING.into(),
            config_json: non_empty_or(request.config_json, "{}"),
            tags: request.tags,
            parent_run_id: request.parent_run_id,
            fork_step: request.fork_step,
            run_id,
        };
        (run, false)
    }

    /// Applies durable effects to the readable state, then acknowledges them.
    fn apply(&mut self, effects: Vec<Effect>) {
        if effects.is_empty() {
            return;
        }
        let mut replies = Vec::with_capacity(effects.len());
        {
            let mut state = write_state(&self.shared);
            for effect in effects {
                match effect {
                    Effect::Scalars {
                        run_id,
                        batch,
                        reply,
                        ack,
                    } => {
                        state.active.apply(&run_id, &batch);
                        if self.buffer_started.is_none() {
                            self.buffer_started = Some(Instant::now());
                        }
                        self.shared
                            .stats
                            .points_written
                            .fetch_add(ack.points, Ordering::Relaxed);
                        replies.push(Effect::Duplicate { reply, ack });
                    }
                    Effect::Tensor {
                        run_id,
                        complete,
                        reply,
                        ack,
                    } => {
                        if let Some(tensor) = complete {
                            state.active.apply_tensor(&run_id, tensor);
                            if self.buffer_started.is_none() {
                                self.buffer_started = Some(Instant::now());
                            }
                        }
                        replies.push(Effect::Duplicate { reply, ack });
                    }
                    Effect::Run {
                        run,
                        resumed,
                        reply,
                    } => {
                        state.runs.insert(run.run_id.clone(), run.clone());
                        replies.push(Effect::Run {
                            run,
                            resumed,
                            reply,
                        });
                    }
                    duplicate @ Effect::Duplicate { .. } => replies.push(duplicate),
                }
            }
        }
        for effect in replies {
            match effect {
                Effect::Duplicate { reply, ack }
                | Effect::Scalars { reply, ack, .. }
                | Effect::Tensor { reply, ack, .. } => {
                    self.shared
                        .stats
                        .batches_written
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = reply.send(Ok(ack));
                }
                Effect::Run {
                    run,
                    resumed,
                    reply,
                } => match reply {
                    RunReply::Created(r) => {
                        let _ = r.send(Ok((run, resumed)));
                    }
                    RunReply::Finished(r) => {
                        let _ = r.send(Ok(run));
                    }
                },
            }
        }
    }

    fn fail_all(
        &mut self,
        effects: Vec<Effect>,
        flushes: Vec<mpsc::Sender<Result<(), String>>>,
        error: StoreError,
    ) {
        let reason = format!("writing the write-ahead log failed ({error}); restart the server once the disk is healthy");
        tracing::error!("{reason}");
        write_state(&self.shared).failure = Some(reason.clone());
        for effect in effects {
            effect.fail(&reason);
        }
        for f in flushes {
            let _ = f.send(Err(reason.clone()));
        }
    }

    /// Freezes the active buffer and hands it to the flusher when it is big or
    /// old enough, or when `forced` callers wait for a flush.
    fn freeze_if_due(&mut self, forced: Option<Vec<mpsc::Sender<Result<(), String>>>>) {
        let (rows, tensor_bytes, empty) = {
            let state = read_state(&self.shared);
            (
                state.active.rows(),
                state.active.tensor_bytes(),
                state.active.is_empty(),
            )
        };
        let old = self
            .buffer_started
            .is_some_and(|t| t.elapsed() >= self.options.flush_interval);
        let due = rows >= self.options.flush_rows
            || tensor_bytes >= self.options.flush_tensor_bytes
            || (!empty && old);
        if !due && forced.is_none() {
            return;
        }
        self.shared.reserve_flush_slot();
        let file_id = self.next_file_id;
        self.next_file_id += 1;
        let buffer = {
            let mut state = write_state(&self.shared);
            let buffer = Arc::new(std::mem::take(&mut state.active));
            state.frozen.push(Frozen {
                file_id,
                buffer: buffer.clone(),
            });
            buffer
        };
        self.buffer_started = None;
        let covered_lsn = self.wal.next_lsn() - 1;
        self.carry_over_partial_tensors();
        let job = FlushJob {
            file_id,
            buffer,
            covered_lsn,
            runs: self.runs.clone(),
            writers: self.writers.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            replies: forced.unwrap_or_default(),
        };
        if let Err(mpsc::SendError(job)) = self.flush_tx.send(job) {
            self.shared.release_flush_slot();
            for reply in job.replies {
                let _ = reply.send(Err("the flusher has stopped".into()));
            }
        }
    }
}

impl WalThread {
    /// Logs every tensor still being received again, past the LSN the next
    /// flush covers: the WAL segments holding their earlier parts may then be
    /// deleted without losing acknowledged bytes. On failure the store stops
    /// accepting writes, as for any WAL failure.
    fn carry_over_partial_tensors(&mut self) {
        let parts = self.assembler.carry_over();
        if parts.is_empty() {
            return;
        }
        let first_lsn = self.wal.next_lsn();
        let mut framed = Vec::new();
        for part in &parts {
            let mut payload = Vec::new();
            encode_tensor_part(&mut payload, part);
            let lsn = self.wal.assign_lsn();
            frame_record(&mut framed, lsn, RecordKind::Tensor, &payload);
        }
        if let Err(e) = self.wal.append(&framed, first_lsn) {
            self.fail_all(Vec::new(), Vec::new(), e);
        }
    }
}

fn reject(command: Command, reason: &str) {
    let err = || StoreError::Unavailable {
        reason: reason.to_string(),
    };
    match command {
        Command::Scalars { reply, .. } | Command::Tensor { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        Command::CreateRun { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        Command::FinishRun { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        Command::Flush { reply } => {
            let _ = reply.send(Err(reason.to_string()));
        }
    }
}

/// The configuration of a resumed run: the keys of `update` (a JSON object,
/// validated before it got here) replace or join those of `existing`. An
/// empty update, or one that is not an object, leaves `existing` as it is.
fn merged_config(existing: &str, update: &str) -> String {
    let Ok(serde_json::Value::Object(update)) = serde_json::from_str(update) else {
        return existing.to_string();
    };
    if update.is_empty() {
        return existing.to_string();
    }
    let mut merged = match serde_json::from_str(existing) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    merged.extend(update);
    serde_json::Value::Object(merged).to_string()
}

fn non_empty_or(value: String, default: &str) -> String {
    if value.is_empty() {
        default.to_string()
    } else {
        value
    }
}

/// Writers idle longer than this are dropped from the manifest.
const WRITER_RETENTION_US: i64 = 30 * 24 * 3600 * 1_000_000;

/// Writes frozen buffers in order. A flush that fails is retried until it
/// succeeds: skipping it would let a later flush advance the WAL coverage past
/// points that are in no file. Only at shutdown does the flusher give up, and
/// then it writes nothing after the failed job, so the WAL still holds all of it.
fn run_flusher(shared: Arc<Shared>, jobs: mpsc::Receiver<FlushJob>) {
    let mut gave_up: Option<String> = None;
    for job in jobs {
        let result = match &gave_up {
            Some(reason) => Err(reason.clone()),
            None => flush_with_retries(&shared, &job),
        };
        if let Err(reason) = &result {
            gave_up = Some(reason.clone());
        }
        shared.release_flush_slot();
        for reply in &job.replies {
            let _ = reply.send(result.clone());
        }
    }
}

fn flush_with_retries(shared: &Shared, job: &FlushJob) -> Result<(), String> {
    let mut attempt = 0u32;
    loop {
        match flush_one(shared, job) {
            Ok(()) => return Ok(()),
            Err(e) => {
                attempt += 1;
                tracing::error!(error = %e, attempt, "flushing the buffer to Parquet failed; its points stay in the WAL and in memory, retrying");
                if shared.shutting_down.load(Ordering::SeqCst) && attempt >= 3 {
                    return Err(format!(
                        "flush failed at shutdown ({e}); the points stay in the WAL and will be recovered at the next start"
                    ));
                }
                std::thread::sleep(Duration::from_millis(
                    (250 * u64::from(attempt)).min(10_000),
                ));
            }
        }
    }
}

fn flush_one(shared: &Shared, job: &FlushJob) -> Result<(), StoreError> {
    let started = Instant::now();
    let batches = job.buffer.read(&SeriesFilter::default(), None);
    let mut manifest = read_state(shared).manifest.clone();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows > 0 {
        let relative = format!(
            "data/{}",
            files::data_file_name(job.file_id, &shared.incarnation)
        );
        let bytes = files::write_scalars_file(&shared.data_dir.join(&relative), &batches)?;
        manifest.files.push(DataFile {
            table: Table::Scalars,
            id: job.file_id,
            path: relative,
            rows: rows as u64,
            bytes,
            series: batches.iter().filter_map(series_range_of).collect(),
        });
        shared.stats.files_flushed.fetch_add(1, Ordering::Relaxed);
    }
    let tensors = sorted_tensors(job.buffer.tensors());
    if !tensors.is_empty() {
        let relative = format!(
            "data/{}",
            tensor_files::tensor_file_name(job.file_id, &shared.incarnation)
        );
        let bytes = tensor_files::write_tensors_file(
            &shared.data_dir.join(&relative),
            &tensors,
            &shared.codec,
        )?;
        manifest.files.push(DataFile {
            table: Table::Tensors,
            id: job.file_id,
            path: relative,
            rows: tensors.len() as u64,
            bytes,
            series: tensor_ranges(&tensors),
        });
        shared.stats.files_flushed.fetch_add(1, Ordering::Relaxed);
    }
    let cutoff = now_us() - WRITER_RETENTION_US;
    manifest.covered_lsn = manifest.covered_lsn.max(job.covered_lsn);
    manifest.next_file_id = manifest.next_file_id.max(job.file_id + 1);
    manifest.runs = job.runs.clone();
    manifest.writers = job
        .writers
        .iter()
        .filter(|(_, w)| w.last_seen_us >= cutoff)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    manifest.store(&shared.data_dir)?;
    {
        let mut state = write_state(shared);
        state.manifest = manifest;
        state.frozen.retain(|f| f.file_id != job.file_id);
    }
    shared
        .stats
        .flush_millis
        .fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    let deleted = wal::delete_covered_segments(&wal::wal_dir(&shared.data_dir), job.covered_lsn)?;
    tracing::debug!(
        file_id = job.file_id,
        rows,
        deleted_segments = deleted,
        "flushed buffer"
    );
    Ok(())
}

/// Tensors sorted by (run, name, step); of a step written more than once
/// only the latest write is kept.
fn sorted_tensors(tensors: &[(Arc<str>, Arc<TensorRecord>)]) -> Vec<(String, TensorRecord)> {
    let mut rows: Vec<(String, TensorRecord)> = tensors
        .iter()
        .map(|(run, t)| (run.to_string(), TensorRecord::clone(t)))
        .collect();
    // Stable: equal keys stay in arrival order, so the last of a run is the latest.
    rows.sort_by(|a, b| (&a.0, &a.1.name, a.1.step).cmp(&(&b.0, &b.1.name, b.1.step)));
    let mut latest: Vec<(String, TensorRecord)> = Vec::with_capacity(rows.len());
    for row in rows {
        match latest.last_mut() {
            Some(last)
                if (&last.0, &last.1.name, last.1.step) == (&row.0, &row.1.name, row.1.step) =>
            {
                *last = row
            }
            _ => latest.push(row),
        }
    }
    latest
}

/// Whether a (run, name, step) matching `filter` may be held twice: by two
/// tensor files with overlapping step ranges of a series, by a file and the
/// buffer, or twice in the buffer.
fn tensors_repeat(
    manifest: &Manifest,
    filter: &SeriesFilter,
    buffered: &[(Arc<str>, Arc<TensorRecord>)],
) -> bool {
    let mut spans: HashMap<(&str, &str), Vec<(i64, i64)>> = HashMap::new();
    let ranges = manifest
        .files
        .iter()
        .filter(|f| f.table == Table::Tensors)
        .flat_map(|f| f.series.iter())
        .filter(|r| filter.matches_range(r));
    for r in ranges {
        spans
            .entry((r.run_id.as_str(), r.name.as_str()))
            .or_default()
            .push((r.min_step, r.max_step));
    }
    let mut seen = std::collections::HashSet::new();
    for (run, t) in buffered {
        if !seen.insert((run.as_ref(), t.name.as_str(), t.step)) {
            return true;
        }
        spans
            .entry((run.as_ref(), t.name.as_str()))
            .or_default()
            .push((t.step, t.step));
    }
    spans.into_values().any(|mut s| {
        s.sort_unstable();
        s.windows(2).any(|w| w[1].0 <= w[0].1)
    })
}

/// Per (run, name) step ranges of sorted tensors.
fn tensor_ranges(rows: &[(String, TensorRecord)]) -> Vec<SeriesRange> {
    let mut ranges: Vec<SeriesRange> = Vec::new();
    for (run, t) in rows {
        match ranges.last_mut() {
            Some(r) if r.run_id == *run && r.name == t.name => {
                r.max_step = r.max_step.max(t.step);
                r.rows += 1;
            }
            _ => ranges.push(SeriesRange {
                run_id: run.clone(),
                name: t.name.clone(),
                min_step: t.step,
                max_step: t.step,
                rows: 1,
            }),
        }
    }
    ranges
}

/// The step range of a one-series batch from [`Buffer::read`].
fn series_range_of(batch: &RecordBatch) -> Option<SeriesRange> {
    let steps = batch.column(scalars_col::STEP).as_primitive::<Int64Type>();
    let run_id = batch.column(scalars_col::RUN_ID).as_string::<i32>();
    let name = batch.column(scalars_col::NAME).as_string::<i32>();
    if batch.num_rows() == 0 {
        return None;
    }
    Some(SeriesRange {
        run_id: run_id.value(0).to_string(),
        name: name.value(0).to_string(),
        min_step: steps.value(0),
        max_step: steps.value(batch.num_rows() - 1),
        rows: batch.num_rows() as u64,
    })
}

#[cfg(test)]
mod config_tests {
    use super::merged_config;

    #[test]
    fn a_resumed_run_merges_new_config_keys() {
        assert_eq!(
            merged_config(r#"{"lr":0.1,"layers":2}"#, r#"{"lr":0.05,"seed":7}"#),
            r#"{"layers":2,"lr":0.05,"seed":7}"#
        );
        assert_eq!(merged_config(r#"{"lr":0.1}"#, ""), r#"{"lr":0.1}"#);
        assert_eq!(merged_config(r#"{"lr":0.1}"#, "{}"), r#"{"lr":0.1}"#);
        assert_eq!(merged_config(r#"{"lr":0.1}"#, "[1]"), r#"{"lr":0.1}"#);
    }
}
