//! Tensors still being received, kept on disk across flushes.
//!
//! A chunked tensor's parts are in the WAL only until a flush deletes the
//! segments that hold them. So each flush also writes what the tensors
//! still being received hold at the LSN it covers:
//!
//! ```text
//! DATA_DIR/partial/<random id>.part   the tensor's bytes so far, appended to
//! manifest "partial_tensors"         per file: path, valid length, header
//! ```
//!
//! The flusher appends only the bytes that came since the previous flush
//! (cutting the file back to its recorded length first, so a retried or
//! interrupted flush never leaves stray bytes in the tensor), fsyncs, and
//! then the manifest names the new length. Recovery starts the assembler
//! from these files and replays the WAL past the manifest. Each byte of a
//! partial tensor is so written at most twice (the WAL, then its file),
//! never again at every flush. Files the manifest does not name (a tensor
//! that completed or was dropped, a flush that never reached its manifest)
//! hold nothing the WAL does not, and are deleted.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::manifest::PartialTensorFile;
use crate::tensor_record::{decode_tensor_part, encode_tensor_part};
use crate::wal::sync_dir;
use crate::{StoreError, TensorPart};

/// What one flush writes of one tensor still being received.
pub(crate) struct PartialSnapshot {
    /// Path relative to the data directory.
    pub(crate) path: String,
    /// Bytes already in the file (written by earlier flushes).
    pub(crate) offset: u64,
    /// The bytes received since then.
    pub(crate) delta: Vec<u8>,
    /// The tensor's header (its data left empty).
    pub(crate) header: TensorPart,
    /// When its first chunk came, µs since the epoch.
    pub(crate) started_us: i64,
}

/// The folder of partial tensor files within a data directory.
pub(crate) fn partial_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("partial")
}

/// A new file name, relative to the data directory.
pub(crate) fn new_partial_path() -> String {
    format!("partial/{}.part", crate::random_id())
}

/// Appends each snapshot's new bytes to its file and makes them durable;
/// returns what the manifest records of them.
pub(crate) fn write_partials(
    data_dir: &Path,
    snapshots: &[PartialSnapshot],
) -> Result<Vec<PartialTensorFile>, StoreError> {
    if snapshots.is_empty() {
        return Ok(Vec::new());
    }
    let dir = partial_dir(data_dir);
    fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
    let mut recorded = Vec::with_capacity(snapshots.len());
    for snapshot in snapshots {
        let path = data_dir.join(&snapshot.path);
        let io = |e| StoreError::io(&path, e);
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        file.set_len(snapshot.offset).map_err(io)?;
        file.seek(SeekFrom::Start(snapshot.offset)).map_err(io)?;
        file.write_all(&snapshot.delta).map_err(io)?;
        file.sync_data().map_err(io)?;
        let mut header = Vec::new();
        encode_tensor_part(&mut header, &snapshot.header, false);
        recorded.push(PartialTensorFile {
            path: snapshot.path.clone(),
            bytes: snapshot.offset + snapshot.delta.len() as u64,
            header: to_hex(&header),
            started_us: snapshot.started_us,
        });
    }
    sync_dir(&dir)?;
    Ok(recorded)
}

/// Deletes the partial tensor files `listed` does not name.
pub(crate) fn remove_unlisted_partials(data_dir: &Path, listed: &[PartialTensorFile]) {
    let Ok(entries) = fs::read_dir(partial_dir(data_dir)) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let relative = format!("partial/{}", entry.file_name().to_string_lossy());
        if !listed.iter().any(|p| p.path == relative) {
            if let Err(e) = fs::remove_file(entry.path()) {
                tracing::warn!(file = %entry.path().display(), error = %e, "cannot delete a partial tensor file no longer needed");
            }
        }
    }
}

/// The tensors `listed` describes, each as one part holding every byte
/// received so far, with when its first chunk came and its file.
pub(crate) fn load_partials(
    data_dir: &Path,
    listed: &[PartialTensorFile],
) -> Result<Vec<(TensorPart, i64, String)>, StoreError> {
    let mut loaded = Vec::with_capacity(listed.len());
    for entry in listed {
        let path = data_dir.join(&entry.path);
        let corrupt = |reason: String| StoreError::corrupt(&path, 0, reason);
        let mut part = from_hex(&entry.header)
            .and_then(|bytes| decode_tensor_part(&bytes))
            .map(|(part, _)| part)
            .ok_or_else(|| {
                corrupt("the manifest's header of this partial tensor does not decode".into())
            })?;
        let mut data = Vec::new();
        fs::File::open(&path)
            .map_err(|e| StoreError::io(&path, e))?
            .take(entry.bytes)
            .read_to_end(&mut data)
            .map_err(|e| StoreError::io(&path, e))?;
        if data.len() as u64 != entry.bytes {
            return Err(corrupt(format!(
                "the partial tensor file holds {} bytes but the manifest records {}; restore it from a backup",
                data.len(),
                entry.bytes
            )));
        }
        part.offset = 0;
        part.data = data;
        loaded.push((part, entry.started_us, entry.path.clone()));
    }
    Ok(loaded)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
