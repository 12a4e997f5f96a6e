//! How a store is tuned, and the counters it keeps.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use steplake_codec::Codec;

use crate::wal::FsyncPolicy;
use crate::{CompactionPolicy, ManifestPolicy};

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
    /// Bytes of tensors still being received (sent in chunks, not complete
    /// yet) kept at most; a chunk past this is refused as overload.
    pub max_partial_tensor_bytes: u64,
    /// A tensor still incomplete this long after its first chunk is
    /// dropped (with a warning) at the next freeze of the buffer.
    pub max_partial_tensor_age: Duration,
    /// Keep flushed files and the manifest in this bucket prefix
    /// (`s3://bucket/prefix`, `gs://…`, `az://…`) instead of the data
    /// directory; the WAL stays in the data directory.
    pub object_store: Option<String>,
    /// When small data files are merged.
    pub compaction: CompactionPolicy,
    /// When the manifest log is folded into a checkpoint.
    pub manifest: ManifestPolicy,
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
            max_partial_tensor_bytes: 4 << 30,
            max_partial_tensor_age: Duration::from_secs(3600),
            object_store: None,
            compaction: CompactionPolicy::default(),
            manifest: ManifestPolicy::default(),
        }
    }
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
    /// Bytes appended to the write-ahead log since start.
    pub wal_bytes_appended: AtomicU64,
    /// Compaction passes since start.
    pub compactions: AtomicU64,
    /// Data files merged away by compaction since start.
    pub files_compacted: AtomicU64,
    /// Bytes of the files merged by compaction since start.
    pub bytes_compacted: AtomicU64,
    /// Manifest writes (flushes, compactions, deletions) since start.
    pub manifest_writes: AtomicU64,
    /// Total microseconds spent in manifest writes since start.
    pub manifest_write_micros: AtomicU64,
    /// Manifest writes that also wrote a checkpoint, since start.
    pub manifest_checkpoints: AtomicU64,
}
