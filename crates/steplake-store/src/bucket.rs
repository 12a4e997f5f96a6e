//! A bucket in object storage (S3, GCS, Azure, or `file://` and
//! `memory://` for tests), reached through the `object_store` crate: where
//! flushed Parquet files and the manifest live when the store is opened
//! with one.
//!
//! ```text
//! URL/manifest/        the manifest log (entries created with If-None-Match)
//! URL/data/*.parquet   data files, uploaded by the flusher
//! URL/OWNER            which data directory writes here (claimed with If-None-Match)
//! ```
//!
//! The store's threads are not async, so every call runs on the bucket's own
//! small runtime and the calling thread waits for it. Credentials, endpoint
//! and region come from the environment variables each service uses
//! (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`,
//! `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, …).

use std::path::Path as LocalPath;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion, WriteMultipart,
};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::storage::Listed;
use crate::{now_us, StoreError};

/// Files up to this size are uploaded in one request; larger ones in parts.
const SINGLE_PUT_BYTES: u64 = 16 << 20;
/// Size of one part of a multipart upload, and of one read of the local file.
const PART_BYTES: usize = 16 << 20;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// The object that says which data directory writes to a bucket prefix.
const OWNER: &str = "OWNER";

/// A bucket prefix opened for the store.
pub struct Bucket {
    url: Url,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Bucket {
    /// The store may be dropped inside the server's runtime, where a runtime
    /// cannot wait for its threads: they are left to finish on their own.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("url", &self.url.as_str())
            .finish()
    }
}

/// Opens the object store of `url` with options from the environment.
/// Returns the store (rooted at the bucket) and the prefix within it.
pub fn open_object_store(url: &Url) -> Result<(Arc<dyn ObjectStore>, Path), StoreError> {
    let options = std::env::vars().filter(|(key, _)| {
        ["AWS_", "GOOGLE_", "AZURE_"]
            .iter()
            .any(|service| key.starts_with(service))
    });
    let (store, prefix) = object_store::parse_url_opts(url, options)
        .map_err(|e| StoreError::bucket(url.as_str(), "open", e))?;
    Ok((Arc::from(store), prefix))
}

/// The object-store URL of `url`'s bucket (scheme and host, no path): what
/// a query engine registers the store under.
pub fn bucket_root(url: &Url) -> Url {
    let mut root = url.clone();
    root.set_path("");
    root.set_query(None);
    root.set_fragment(None);
    root
}

/// Who writes to a bucket prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Owner {
    /// The id of the data directory (`DATA_DIR/STORE_ID`) whose server writes here.
    store_id: String,
    /// Host and data directory, for the error a second server gets.
    host: String,
    data_dir: String,
    /// When it was claimed, microseconds since the epoch.
    since_us: i64,
}

impl Bucket {
    /// Opens the bucket prefix `url` (e.g. `s3://bucket/prefix`).
    pub fn open(url: &str) -> Result<Bucket, StoreError> {
        let url = Url::parse(url.trim_end_matches('/')).map_err(|e| {
            StoreError::bucket(
                url,
                "parse",
                format!("{e}; write it as s3://bucket/prefix, gs://bucket/prefix or az://container/prefix"),
            )
        })?;
        let (store, prefix) = open_object_store(&url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("steplake-bucket")
            .enable_all()
            .build()
            .map_err(|e| StoreError::bucket(url.as_str(), "start its I/O runtime", e))?;
        Ok(Bucket {
            url,
            store,
            prefix,
            runtime: Some(runtime),
        })
    }

    /// The prefix's URL, as given (without a trailing slash).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL of the file at `relative` (a manifest path such as `data/…`).
    pub fn file_url(&self, relative: &str) -> String {
        format!("{}/{relative}", self.url.as_str())
    }

    fn location(&self, relative: &str) -> Path {
        relative
            .split('/')
            .fold(self.prefix.clone(), |path, part| path.join(part))
    }

    /// Runs `future` on the bucket's runtime and waits for it. Works from any
    /// thread, including one inside another runtime.
    fn run<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(runtime) = &self.runtime {
            runtime.spawn(async move {
                let _ = tx.send(future.await);
            });
        }
        rx.recv().map_err(|_| {
            StoreError::bucket(self.url.as_str(), "finish a request", "its runtime stopped")
        })
    }

    /// The object at `relative` and its version, or `None` when absent.
    pub(crate) fn get(&self, relative: &str) -> Result<Option<(Bytes, UpdateVersion)>, StoreError> {
        let (store, location) = (self.store.clone(), self.location(relative));
        let result = self.run(async move {
            let got = store.get(&location).await?;
            let version = UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            Ok::<_, object_store::Error>((got.bytes().await?, version))
        })?;
        match result {
            Ok(found) => Ok(Some(found)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(StoreError::bucket(&self.file_url(relative), "read", e)),
        }
    }

    /// Writes `bytes` to `relative` with `mode`; returns the new version.
    /// A failed condition is `Ok(Err(..))`, for the caller to explain.
    pub(crate) fn put(
        &self,
        relative: &str,
        bytes: Vec<u8>,
        mode: PutMode,
    ) -> Result<Result<UpdateVersion, object_store::Error>, StoreError> {
        let (store, location) = (self.store.clone(), self.location(relative));
        let result = self.run(async move {
            let options = PutOptions {
                mode,
                ..PutOptions::default()
            };
            store
                .put_opts(&location, PutPayload::from(bytes), options)
                .await
        })?;
        match result {
            Ok(put) => Ok(Ok(UpdateVersion::from(put))),
            Err(e @ object_store::Error::AlreadyExists { .. })
            | Err(e @ object_store::Error::Precondition { .. }) => Ok(Err(e)),
            Err(e) => Err(StoreError::bucket(&self.file_url(relative), "write", e)),
        }
    }

    /// Uploads the local file `local` as `relative`: whole when small, in
    /// parts otherwise, reading the file a part at a time.
    pub(crate) fn upload(&self, local: &LocalPath, relative: &str) -> Result<(), StoreError> {
        let size = std::fs::metadata(local)
            .map_err(|e| StoreError::io(local, e))?
            .len();
        if size <= SINGLE_PUT_BYTES {
            let bytes = std::fs::read(local).map_err(|e| StoreError::io(local, e))?;
            return match self.put(relative, bytes, PutMode::Overwrite)? {
                Ok(_) => Ok(()),
                Err(e) => Err(StoreError::bucket(&self.file_url(relative), "upload", e)),
            };
        }
        let (store, location, local) = (
            self.store.clone(),
            self.location(relative),
            local.to_path_buf(),
        );
        let uploaded = self.run(async move {
            use std::io::Read;
            let mut file = std::fs::File::open(&local).map_err(|e| StoreError::io(&local, e))?;
            let upload = store
                .put_multipart(&location)
                .await
                .map_err(|e| StoreError::bucket(location.as_ref(), "start an upload", e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            let mut buffer = vec![0u8; PART_BYTES];
            loop {
                let n = file
                    .read(&mut buffer)
                    .map_err(|e| StoreError::io(&local, e))?;
                if n == 0 {
                    break;
                }
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| StoreError::bucket(location.as_ref(), "upload a part", e))?;
                writer.write(&buffer[..n]);
            }
            writer
                .finish()
                .await
                .map_err(|e| StoreError::bucket(location.as_ref(), "finish an upload", e))?;
            Ok::<(), StoreError>(())
        })?;
        uploaded
    }

    /// The objects under the directory `dir` whose paths sort after `after`
    /// (S3 and GCS skip the rest on the server), relative to the prefix.
    pub(crate) fn list(&self, dir: &str, after: Option<&str>) -> Result<Vec<Listed>, StoreError> {
        use futures::TryStreamExt;
        let (store, location) = (self.store.clone(), self.location(dir));
        let offset = after.map(|a| self.location(a));
        let prefix = self.prefix.clone();
        let listed = self.run(async move {
            let stream = match &offset {
                Some(offset) => store.list_with_offset(Some(&location), offset),
                None => store.list(Some(&location)),
            };
            stream.try_collect::<Vec<_>>().await
        })?;
        let listed = listed.map_err(|e| StoreError::bucket(&self.file_url(dir), "list", e))?;
        Ok(listed
            .into_iter()
            .filter_map(|meta| {
                let path = meta
                    .location
                    .prefix_match(&prefix)?
                    .map(|part| part.as_ref().to_string());
                Some(Listed {
                    path: path.collect::<Vec<_>>().join("/"),
                    modified_us: meta.last_modified.timestamp_micros(),
                })
            })
            .collect())
    }

    /// Deletes `relative` (absent already is fine).
    pub(crate) fn delete(&self, relative: &str) -> Result<(), StoreError> {
        let (store, location) = (self.store.clone(), self.location(relative));
        match self.run(async move { store.delete(&location).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StoreError::bucket(&self.file_url(relative), "delete", e)),
        }
    }

    /// Claims the prefix for the data directory `data_dir` whose id is
    /// `store_id`: creates `OWNER` if absent (If-None-Match), or finds it
    /// already ours (a restart). Another owner is refused: two servers
    /// writing one manifest would lose each other's files.
    pub(crate) fn claim(&self, store_id: &str, data_dir: &LocalPath) -> Result<(), StoreError> {
        let owner = Owner {
            store_id: store_id.to_string(),
            host: host_name(),
            data_dir: data_dir.display().to_string(),
            since_us: now_us(),
        };
        let bytes = serde_json::to_vec_pretty(&owner)
            .map_err(|e| StoreError::bucket(self.url.as_str(), "claim", e))?;
        // Twice at most: the owner may release between our two requests.
        for _ in 0..2 {
            if self.put(OWNER, bytes.clone(), PutMode::Create)?.is_ok() {
                return Ok(());
            }
            let Some((found, _)) = self.get(OWNER)? else {
                continue;
            };
            let found: Owner = serde_json::from_slice(&found).map_err(|e| {
                StoreError::bucket(
                    &self.file_url(OWNER),
                    "read",
                    format!("it is not valid: {e}"),
                )
            })?;
            if found.store_id == store_id {
                return Ok(());
            }
            return Err(StoreError::BucketOwned {
                url: self.url.to_string(),
                owner: format!(
                    "the server of data directory {} on {} (store id {}), since {} µs after the epoch",
                    found.data_dir, found.host, found.store_id, found.since_us
                ),
                owner_file: self.file_url(OWNER),
            });
        }
        Err(StoreError::bucket(
            &self.file_url(OWNER),
            "claim",
            "another server is claiming and releasing this prefix at the same time; stop it and start again",
        ))
    }

    /// Releases the claim of `store_id`, if it still holds it.
    pub(crate) fn release(&self, store_id: &str) -> Result<(), StoreError> {
        if let Some((found, _)) = self.get(OWNER)? {
            if serde_json::from_slice::<Owner>(&found).is_ok_and(|o| o.store_id == store_id) {
                self.delete(OWNER)?;
            }
        }
        Ok(())
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "an unknown host".into())
}
