//! Where flushed files and the manifest are kept: the data directory, or a
//! bucket in object storage. The WAL and tensors still being received stay
//! in the data directory either way.
//!
//! With a bucket, a flush writes each file locally (as without one), uploads
//! it, then appends to the manifest log in the bucket, and only then deletes
//! the local copies and the WAL segments the manifest covers. Log entries
//! are created only if absent (If-None-Match; a hard link on a local disk),
//! so a server whose next version someone else wrote is fenced off
//! ([`StoreError::Fenced`]) instead of overwriting it (see `manifest_log`).

use std::io::Write;
use std::path::Path;

use object_store::PutMode;

use crate::bucket::Bucket;
use crate::wal::sync_dir;
use crate::{files, random_id, Manifest, StoreError};

/// The file in a data directory that names it, for bucket ownership.
const STORE_ID_FILE: &str = "STORE_ID";

/// Where persisted files and the manifest live.
#[derive(Debug)]
pub(crate) enum Storage {
    /// In the data directory.
    Local,
    /// In a bucket prefix.
    Bucket {
        bucket: Box<Bucket>,
        /// The data directory's id: the owner of the prefix, and of the WAL
        /// the manifest's `covered_lsn` counts in (empty when only reading).
        store_id: String,
    },
}

impl Storage {
    /// A bucket-backed storage for the data directory `data_dir`, claimed
    /// for it (see [`Bucket::claim`]).
    pub(crate) fn claim_bucket(url: &str, data_dir: &Path) -> Result<Storage, StoreError> {
        if Manifest::exists(data_dir) {
            return Err(StoreError::bucket(
                url,
                "use",
                format!(
                    "{} already holds a store on the local disk (a manifest); a data directory keeps its files either locally or in a bucket. Start with a new data directory for the bucket",
                    data_dir.display()
                ),
            ));
        }
        let bucket = Bucket::open(url)?;
        let store_id = store_id(data_dir)?;
        bucket.claim(&store_id, data_dir)?;
        Ok(Storage::Bucket {
            bucket: Box::new(bucket),
            store_id,
        })
    }

    /// A bucket-backed storage for reading only: nothing is claimed.
    pub(crate) fn read_bucket(url: &str) -> Result<Storage, StoreError> {
        Ok(Storage::Bucket {
            bucket: Box::new(Bucket::open(url)?),
            store_id: String::new(),
        })
    }

    /// The bucket, when there is one.
    pub(crate) fn bucket(&self) -> Option<&Bucket> {
        match self {
            Storage::Local => None,
            Storage::Bucket { bucket, .. } => Some(bucket),
        }
    }

    /// What file paths of the manifest are relative to: the data directory,
    /// or the bucket prefix's URL.
    pub(crate) fn root(&self, data_dir: &Path) -> String {
        match self {
            Storage::Local => data_dir.display().to_string(),
            Storage::Bucket { bucket, .. } => bucket.url().to_string(),
        }
    }

    /// The id whose WAL a manifest written here counts `covered_lsn` in:
    /// `None` on a local disk (its own WAL) and when only reading.
    pub(crate) fn wal_owner(&self) -> Option<&str> {
        match self {
            Storage::Bucket { store_id, .. } if !store_id.is_empty() => Some(store_id),
            _ => None,
        }
    }

    /// The object at `relative`, or `None` when absent.
    pub(crate) fn read(
        &self,
        data_dir: &Path,
        relative: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Storage::Local => {
                let path = data_dir.join(relative);
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(StoreError::io(&path, e)),
                }
            }
            Storage::Bucket { bucket, .. } => Ok(bucket.get(relative)?.map(|(b, _)| b.to_vec())),
        }
    }

    /// Writes `bytes` to `relative` only if nothing is there yet, durably
    /// and whole or not at all; `false` when something already was.
    pub(crate) fn create(
        &self,
        data_dir: &Path,
        relative: &str,
        bytes: Vec<u8>,
    ) -> Result<bool, StoreError> {
        match self {
            Storage::Local => {
                let path = data_dir.join(relative);
                let tmp = write_temporary(&path, &bytes)?;
                // A hard link, unlike a rename, fails when the name is taken.
                let linked = std::fs::hard_link(&tmp, &path);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
                    Err(e) => return Err(StoreError::io(&path, e)),
                }
                sync_parent(&path)?;
                Ok(true)
            }
            Storage::Bucket { bucket, .. } => {
                Ok(bucket.put(relative, bytes, PutMode::Create)?.is_ok())
            }
        }
    }

    /// Replaces whatever is at `relative` with `bytes`, atomically.
    pub(crate) fn overwrite(
        &self,
        data_dir: &Path,
        relative: &str,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        match self {
            Storage::Local => {
                let path = data_dir.join(relative);
                let tmp = write_temporary(&path, &bytes)?;
                std::fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))?;
                sync_parent(&path)
            }
            Storage::Bucket { bucket, .. } => {
                match bucket.put(relative, bytes, PutMode::Overwrite)? {
                    Ok(_) => Ok(()),
                    Err(e) => Err(StoreError::bucket(&bucket.file_url(relative), "write", e)),
                }
            }
        }
    }

    /// The objects under the directory `dir` whose paths sort after
    /// `after` (when given), as paths relative to the root.
    pub(crate) fn list(
        &self,
        data_dir: &Path,
        dir: &str,
        after: Option<&str>,
    ) -> Result<Vec<Listed>, StoreError> {
        let mut listed = match self {
            Storage::Local => {
                let path = data_dir.join(dir);
                let entries = match std::fs::read_dir(&path) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(StoreError::io(&path, e)),
                };
                let mut listed = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(|e| StoreError::io(&path, e))?;
                    let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                        continue;
                    };
                    let modified_us = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_micros() as i64);
                    listed.push(Listed {
                        path: format!("{dir}/{name}"),
                        modified_us,
                    });
                }
                listed
            }
            Storage::Bucket { bucket, .. } => bucket.list(dir, after)?,
        };
        if let Some(after) = after {
            listed.retain(|l| l.path.as_str() > after);
        }
        listed.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(listed)
    }

    /// Makes the file just written at `relative` durable where it belongs:
    /// nothing more to do locally; uploaded to a bucket.
    pub(crate) fn publish(&self, data_dir: &Path, relative: &str) -> Result<(), StoreError> {
        match self {
            Storage::Local => Ok(()),
            Storage::Bucket { bucket, .. } => bucket.upload(&data_dir.join(relative), relative),
        }
    }

    /// After the manifest names them: removes the local copies of files
    /// published to a bucket. A copy that cannot be removed is only a
    /// warning: it is removed at the next open.
    pub(crate) fn drop_local_copies(&self, data_dir: &Path, relative: &[String]) {
        if let Storage::Bucket { .. } = self {
            for path in relative {
                let local = data_dir.join(path);
                if let Err(e) = std::fs::remove_file(&local) {
                    tracing::warn!(file = %local.display(), error = %e, "could not remove the local copy of an uploaded file");
                }
            }
        }
    }

    /// Deletes the file at `relative` (absent already is fine).
    pub(crate) fn delete(&self, data_dir: &Path, relative: &str) -> Result<(), StoreError> {
        match self {
            Storage::Local => {
                let path = data_dir.join(relative);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(StoreError::io(&path, e)),
                }
            }
            Storage::Bucket { bucket, .. } => bucket.delete(relative),
        }
    }

    /// At open: removes local copies a crash left. Each one was either
    /// uploaded and named by the manifest, or is named by no manifest and
    /// its points are still in the WAL.
    pub(crate) fn clear_staging(&self, data_dir: &Path) -> Result<(), StoreError> {
        if let Storage::Bucket { .. } = self {
            for path in files::parquet_files(&files::data_files_dir(data_dir)) {
                std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
            }
        }
        Ok(())
    }

    /// At a clean shutdown: gives the bucket prefix up, so another data
    /// directory may write to it.
    pub(crate) fn release(&self) -> Result<(), StoreError> {
        match self {
            Storage::Bucket {
                bucket, store_id, ..
            } if !store_id.is_empty() => bucket.release(store_id),
            _ => Ok(()),
        }
    }
}

/// An object found by [`Storage::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    /// Relative to the root.
    pub(crate) path: String,
    /// When it was last written, microseconds since the epoch.
    pub(crate) modified_us: i64,
}

/// Writes `bytes` next to `path` under a name no other writer uses, fsynced;
/// returns that name.
fn write_temporary(path: &Path, bytes: &[u8]) -> Result<std::path::PathBuf, StoreError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
    }
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp-{}", random_id()));
    let tmp = std::path::PathBuf::from(name);
    let mut f = std::fs::File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| StoreError::io(&tmp, e))?;
    f.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
    Ok(tmp)
}

fn sync_parent(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// The id of `data_dir`, created on first use.
fn store_id(data_dir: &Path) -> Result<String, StoreError> {
    let path = data_dir.join(STORE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(&path, e)),
    }
    let id = random_id();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &id).map_err(|e| StoreError::io(&tmp, e))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))?;
    crate::wal::sync_dir(data_dir)?;
    Ok(id)
}
