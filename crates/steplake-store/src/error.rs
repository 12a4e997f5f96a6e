//! The storage layer's one error type.

use std::path::{Path, PathBuf};

use steplake_core::CoreError;

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
    #[error("data directory {dir} is in use by another steplake process{holder}")]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// " (pid N)" when known.
        holder: String,
    },
    /// The manifest is missing but the directory holds data it described.
    #[error("{dir} has no manifest (manifest/), but it holds {found}: the manifest was lost or deleted, and starting as if the directory were new would hide every flushed point. Nothing was changed; restore manifest/ from a backup")]
    ManifestMissing {
        /// The data directory.
        dir: PathBuf,
        /// What was found instead.
        found: String,
    },
    /// The store cannot take more of this now (a resource limit); retrying
    /// later may succeed.
    #[error("{reason}")]
    Overloaded {
        /// Which limit, and how to stay under it.
        reason: String,
    },
    /// The input was rejected by validation.
    #[error(transparent)]
    Invalid(#[from] CoreError),
    /// A writer's batch does not follow its last stored one: an earlier
    /// batch was refused or never arrived. Nothing past it is stored.
    #[error("writer {writer_id:?} sent sequence {sequence}, but its next is expected sequence {expected}: a writer's sequences follow each other from 1, and nothing after a missing or refused batch is stored. Send batch {expected} again (an empty batch skips it)")]
    SequenceGap {
        /// The writer.
        writer_id: String,
        /// The sequence number it sent.
        sequence: u64,
        /// The one that would have been stored.
        expected: u64,
    },
    /// A write or finish named a run that does not exist.
    #[error("run {run_id:?} does not exist; create it first")]
    RunNotFound {
        /// The unknown run id.
        run_id: String,
    },
    /// A removal named a standing condition that does not exist.
    #[error("there is no standing condition {id:?} (removed already?); ListConditions shows those there are")]
    ConditionNotFound {
        /// The unknown condition id.
        id: String,
    },
    /// A deletion named no run that exists.
    #[error("there is nothing to delete: {what} does not exist (deleted already?). `SELECT run_id, project FROM runs` lists what does")]
    NothingToDelete {
        /// The run or project named.
        what: String,
    },
    /// A request to object storage failed.
    #[error("object storage: could not {action} {url}: {reason}")]
    Bucket {
        /// The object or bucket prefix.
        url: String,
        /// What was being done.
        action: String,
        /// The service's or the client's error.
        reason: String,
    },
    /// Another server's data directory writes to this bucket prefix.
    #[error("{url} is written by {owner}. Two servers on one prefix would lose each other's files, so this one does not start: give it another prefix, or stop that server. If that server and its data directory are gone for good, delete {owner_file}")]
    BucketOwned {
        /// The bucket prefix.
        url: String,
        /// Who owns it.
        owner: String,
        /// The object naming the owner.
        owner_file: String,
    },
    /// The manifest in the bucket was changed by someone else since this
    /// server last wrote it.
    #[error("the manifest at {url} was changed by another writer since this server wrote it ({reason}). This server stops publishing files there so as not to overwrite it; its acknowledged points stay in its write-ahead log. Stop the other writer, then restart this server")]
    Fenced {
        /// The manifest's URL.
        url: String,
        /// The failed condition.
        reason: String,
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

    /// A failed object-storage request: `action` on `url`.
    pub fn bucket(url: &str, action: &str, reason: impl std::fmt::Display) -> Self {
        StoreError::Bucket {
            url: url.to_string(),
            action: action.to_string(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn closed() -> Self {
        StoreError::Unavailable {
            reason: "the server is shutting down".into(),
        }
    }
}
