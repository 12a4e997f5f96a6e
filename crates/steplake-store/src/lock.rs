//! The data directory's lock.

use std::fs::{self, File};
use std::path::Path;

use crate::StoreError;

/// An exclusive lock on a data directory, held while open.
///
/// The lock is on the directory itself, not on a file inside it, so
/// deleting `LOCK` cannot let a second process in. `LOCK` only holds the
/// owner's pid, for the message a second process prints.
pub(crate) struct DirLock {
    _dir: File,
}

pub(crate) fn lock_data_dir(dir: &Path) -> Result<DirLock, StoreError> {
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
