//! Where flushed files and the manifest are kept: the data directory, or a
//! bucket in object storage. The WAL and tensors still being received stay
//! in the data directory either way.
//!
//! With a bucket, a flush writes each file locally (as without one), uploads
//! it, then writes the manifest to the bucket conditionally (If-Match the
//! version this server wrote last, If-None-Match for the first), and only
//! then deletes the local copies and the WAL segments the manifest covers.
//! A manifest changed by anyone else fails the condition: this server is
//! fenced off ([`StoreError::Fenced`]) instead of overwriting it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use object_store::{PutMode, UpdateVersion};

use crate::bucket::Bucket;
use crate::manifest::MANIFEST_FILE;
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
        /// the manifest's `covered_lsn` counts in.
        store_id: String,
        /// The manifest's version as this server last read or wrote it.
        manifest_version: Mutex<Option<UpdateVersion>>,
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
                    "{} already holds a store on the local disk (manifest.json); a data directory keeps its files either locally or in a bucket. Start with a new data directory for the bucket",
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
            manifest_version: Mutex::new(None),
        })
    }

    /// A bucket-backed storage for reading only: nothing is claimed.
    pub(crate) fn read_bucket(url: &str) -> Result<Storage, StoreError> {
        Ok(Storage::Bucket {
            bucket: Box::new(Bucket::open(url)?),
            store_id: String::new(),
            manifest_version: Mutex::new(None),
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

    /// Whether the manifest exists.
    pub(crate) fn has_manifest(&self, data_dir: &Path) -> Result<bool, StoreError> {
        match self {
            Storage::Local => Ok(Manifest::exists(data_dir)),
            Storage::Bucket { bucket, .. } => bucket.exists(MANIFEST_FILE),
        }
    }

    /// The manifest, or `None` when there is none yet. From a bucket, a
    /// manifest whose `covered_lsn` counts in another data directory's WAL
    /// covers nothing of this one's (`covered_lsn` 0).
    pub(crate) fn load_manifest(&self, data_dir: &Path) -> Result<Option<Manifest>, StoreError> {
        match self {
            Storage::Local => {
                if !Manifest::exists(data_dir) {
                    return Ok(None);
                }
                Manifest::load(data_dir).map(Some)
            }
            Storage::Bucket {
                bucket,
                store_id,
                manifest_version,
            } => {
                let Some((bytes, version)) = bucket.get(MANIFEST_FILE)? else {
                    return Ok(None);
                };
                let mut manifest =
                    Manifest::from_json(&bytes, &PathBuf::from(bucket.file_url(MANIFEST_FILE)))?;
                if manifest.wal_owner.as_deref() != Some(store_id.as_str()) {
                    manifest.covered_lsn = 0;
                }
                *manifest_version.lock().unwrap_or_else(|p| p.into_inner()) = Some(version);
                Ok(Some(manifest))
            }
        }
    }

    /// Makes `manifest` the durable one.
    pub(crate) fn store_manifest(
        &self,
        data_dir: &Path,
        manifest: &Manifest,
    ) -> Result<(), StoreError> {
        let Storage::Bucket {
            bucket,
            store_id,
            manifest_version,
        } = self
        else {
            return manifest.store(data_dir);
        };
        let mut manifest = manifest.clone();
        manifest.wal_owner = Some(store_id.clone());
        let url = bucket.file_url(MANIFEST_FILE);
        let bytes = manifest.to_json(&PathBuf::from(&url))?;
        let mut version = manifest_version.lock().unwrap_or_else(|p| p.into_inner());
        let mode = match version.clone() {
            Some(v) => PutMode::Update(v),
            None => PutMode::Create,
        };
        match bucket.put(MANIFEST_FILE, bytes.clone(), mode)? {
            Ok(new_version) => {
                *version = Some(new_version);
                Ok(())
            }
            Err(failed) => match bucket.get(MANIFEST_FILE)? {
                // Our own write, whose reply was lost before a retry.
                Some((current, current_version)) if current == bytes => {
                    *version = Some(current_version);
                    Ok(())
                }
                _ => Err(StoreError::Fenced {
                    url,
                    reason: failed.to_string(),
                }),
            },
        }
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
