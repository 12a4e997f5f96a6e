//! Compaction: merges runs of small data files into one, so that a long run
//! leaves a few large files instead of one per flush (per table).
//!
//! It runs on the flusher thread after a flush, so it is the only writer of
//! the manifest besides the flush itself and never races it. One pass, for
//! the `scalars` files and then the `tensors` files:
//!
//! 1. pick the oldest run of [`CompactionPolicy::min_files`] consecutive
//!    files of the table (in id order), each smaller than the target, all
//!    of about one size, together at most the target size (size-tiered:
//!    each byte is rewritten about once per tier, not at every merge);
//! 2. merge them, keeping the latest write of each (run, name, step) (the
//!    row of the file with the larger id): scalars files by merging their
//!    sorted rows ([`merge`]), tensors files by copying their row groups'
//!    bytes ([`tensor_merge`]);
//! 3. write one file with the largest id of the run (so it stays older than
//!    every file after the run and newer than every file before it) under a
//!    new name, and publish it (upload it to a bucket);
//! 4. swap it for the run in the manifest, in one manifest write, listing
//!    the replaced files as garbage;
//! 5. delete garbage once no query can still be reading it: a few minutes
//!    after it became garbage, or at the next open.
//!
//! A kill at any moment loses and doubles nothing: before step 4 the new
//! file is unlisted and never read (the old files still are); after it, the
//! old files are garbage the manifest names, deleted later.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use arrow::compute::concat_batches;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use steplake_core::schema::scalars_schema;

use crate::files::Written;
use crate::manifest::Garbage;
use crate::merge;
use crate::provenance::Provenance;
use crate::shared::{read_state, write_state, Shared};
use crate::tensor_merge::{self, TensorInput};
use crate::{files, now_us, DataFile, Manifest, SeriesRange, StoreError, Table};

/// When files are compacted.
#[derive(Debug, Clone, Copy)]
pub struct CompactionPolicy {
    /// Compact once this many consecutive small files are waiting (0: never).
    pub min_files: usize,
    /// Files at least this big are left alone, and a merged file is at most
    /// about this big.
    pub target_bytes: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            min_files: 8,
            target_bytes: 256 << 20,
        }
    }
}

/// Garbage is deleted this long after the manifest stopped naming it: no
/// query reads a file for longer (the default query timeout is 300 s).
const GARBAGE_GRACE_US: i64 = 10 * 60 * 1_000_000;

/// One compaction pass, if one is due; returns whether files were merged.
pub(crate) fn compact_if_due(shared: &Shared) -> Result<bool, StoreError> {
    delete_garbage(shared, now_us() - GARBAGE_GRACE_US)?;
    let mut merged_any = false;
    for table in [Table::Scalars, Table::Tensors] {
        let picked = pick(&read_state(shared).manifest, table, shared.compaction);
        let Some(run) = picked else {
            continue;
        };
        let merged = merge(shared, table, &run)?;
        swap(shared, &run, merged)?;
        merged_any = true;
    }
    Ok(merged_any)
}

/// The oldest run of `min_files` consecutive small files of `table` worth
/// merging: all of about one size (the largest less than `min_files` times
/// the smallest), and together within the target.
///
/// One size per run is what bounds the rewriting: files merge like digits
/// carrying in base `min_files`, so each byte is rewritten about once per
/// size tier (log base `min_files` of the flush count), not at every merge.
/// A large file that could take the small ones after it would be rewritten
/// each time `min_files - 1` new ones arrived.
fn pick(manifest: &Manifest, table: Table, policy: CompactionPolicy) -> Option<Vec<DataFile>> {
    if policy.min_files < 2 {
        return None;
    }
    let mut run: Vec<DataFile> = Vec::new();
    for file in manifest.files.iter().filter(|f| f.table == table) {
        if file.bytes >= policy.target_bytes {
            run.clear();
            continue;
        }
        run.push(file.clone());
        // The oldest files go until the run is of one size and fits.
        while !of_one_size(&run, policy.min_files)
            || run.iter().map(|f| f.bytes).sum::<u64>() > policy.target_bytes
        {
            run.remove(0);
        }
        if run.len() == policy.min_files {
            return Some(run);
        }
    }
    None
}

/// Whether the largest of `files` is less than `factor` times the smallest.
fn of_one_size(files: &[DataFile], factor: usize) -> bool {
    let smallest = files.iter().map(|f| f.bytes.max(1)).min().unwrap_or(1);
    let largest = files.iter().map(|f| f.bytes).max().unwrap_or(0);
    (largest as u128) < smallest as u128 * factor as u128
}

/// The merged file of `run` (files of `table`), written and published but
/// not yet listed.
fn merge(shared: &Shared, table: Table, run: &[DataFile]) -> Result<DataFile, StoreError> {
    let id = run.last().map_or(0, |f| f.id);
    let relative = format!("data/{}", files::compacted_file_name(table, id));
    let path = shared.data_dir.join(&relative);
    let (written, rows, series) = match table {
        Table::Scalars => merge_scalars(shared, run, &path)?,
        Table::Tensors => {
            let mut inputs = Vec::with_capacity(run.len());
            for file in run {
                inputs.push(TensorInput {
                    origin: std::path::PathBuf::from(shared.root()).join(&file.path),
                    bytes: read_file(shared, &file.path)?,
                });
            }
            let merged = tensor_merge::merge_tensor_files(&path, &inputs)?;
            tracing::debug!(
                copied = merged.copied_row_groups,
                rewritten = merged.rewritten_row_groups,
                "merged tensor files"
            );
            (merged.written, merged.rows, merged.series)
        }
    };
    shared.storage.publish(&shared.data_dir, &relative)?;
    Ok(DataFile {
        table,
        id,
        path: relative,
        rows,
        bytes: written.bytes,
        crc32: Some(written.crc32),
        series,
    })
}

/// Merges the scalars files of `run` into the file `path`; returns what was
/// written, its rows and its series.
fn merge_scalars(
    shared: &Shared,
    run: &[DataFile],
    path: &std::path::Path,
) -> Result<(Written, u64, Vec<SeriesRange>), StoreError> {
    let mut inputs = Vec::with_capacity(run.len());
    let mut key_values = Vec::with_capacity(run.len());
    for file in run {
        let bytes = read_file(shared, &file.path)?;
        let origin = std::path::PathBuf::from(shared.root()).join(&file.path);
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| StoreError::parquet(&origin, e))?
            .with_batch_size(merge::OUTPUT_BATCH_ROWS);
        key_values.push(
            builder
                .metadata()
                .file_metadata()
                .key_value_metadata()
                .cloned(),
        );
        let batches = builder
            .build()
            .map_err(|e| StoreError::parquet(&origin, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::corrupt(&origin, 0, e.to_string()))?;
        inputs.push(
            concat_batches(&scalars_schema(), &batches)
                .map_err(|e| StoreError::corrupt(&origin, 0, e.to_string()))?,
        );
    }
    let merged = merge::merge_latest_writes(&inputs)
        .map_err(|e| StoreError::corrupt(&shared.data_dir, 0, format!("compaction: {e}")))?;
    drop(inputs);
    let key_values = Provenance::merged_key_values(key_values.iter().map(|kv| kv.as_deref()));
    let written = files::write_scalars_file(path, &merged, &key_values)?;
    let mut series = Vec::new();
    for batch in &merged {
        files::add_series_ranges(&mut series, batch)
            .map_err(|e| StoreError::corrupt(&shared.data_dir, 0, format!("compaction: {e}")))?;
    }
    let rows = merged.iter().map(|b| b.num_rows() as u64).sum();
    Ok((written, rows, series))
}

/// The bytes of a listed data file, from the data directory or the bucket.
pub(crate) fn read_file(shared: &Shared, relative: &str) -> Result<Bytes, StoreError> {
    match shared.storage.bucket() {
        None => {
            let path = shared.data_dir.join(relative);
            std::fs::read(&path)
                .map(Bytes::from)
                .map_err(|e| StoreError::io(&path, e))
        }
        Some(bucket) => bucket
            .get(relative)?
            .map(|(bytes, _)| bytes)
            .ok_or_else(|| {
                StoreError::bucket(
                    &bucket.file_url(relative),
                    "read",
                    "the manifest lists it but it is gone",
                )
            }),
    }
}

/// Lists `merged` in place of `run`, in one manifest write; the files of
/// `run` become garbage.
fn swap(shared: &Shared, run: &[DataFile], merged: DataFile) -> Result<(), StoreError> {
    let mut manifest = read_state(shared).manifest.clone();
    let replaced: Vec<&str> = run.iter().map(|f| f.path.as_str()).collect();
    let Some(position) = manifest
        .files
        .iter()
        .position(|f| f.path == run[run.len() - 1].path)
    else {
        return Ok(());
    };
    let merged_path = merged.path.clone();
    let (rows, bytes): (u64, u64) = run
        .iter()
        .fold((0, 0), |(r, b), f| (r + f.rows, b + f.bytes));
    manifest.files[position] = merged;
    manifest
        .files
        .retain(|f| f.path == merged_path || !replaced.contains(&f.path.as_str()));
    manifest.sort_files();
    let now = now_us();
    manifest.garbage.extend(replaced.iter().map(|path| Garbage {
        path: path.to_string(),
        since_us: now,
    }));
    shared.store_manifest(&manifest)?;
    shared
        .storage
        .drop_local_copies(&shared.data_dir, std::slice::from_ref(&merged_path));
    let id = run[run.len() - 1].id;
    write_state(shared).manifest = manifest;
    shared.forget_verified(id);
    shared.stats.compactions.fetch_add(1, Ordering::Relaxed);
    shared
        .stats
        .files_compacted
        .fetch_add(run.len() as u64, Ordering::Relaxed);
    shared
        .stats
        .bytes_compacted
        .fetch_add(bytes, Ordering::Relaxed);
    tracing::debug!(files = run.len(), rows, bytes, "compacted data files");
    Ok(())
}

/// Deletes the garbage the manifest names that became garbage before
/// `before_us`, then drops it from the manifest.
pub(crate) fn delete_garbage(shared: &Shared, before_us: i64) -> Result<(), StoreError> {
    // The usual case, checked without copying the manifest at every flush.
    let due = read_state(shared)
        .manifest
        .garbage
        .iter()
        .any(|g| g.since_us < before_us);
    if !due {
        return Ok(());
    }
    let mut manifest = read_state(shared).manifest.clone();
    let (old, young): (Vec<Garbage>, Vec<Garbage>) = manifest
        .garbage
        .drain(..)
        .partition(|g| g.since_us < before_us);
    if old.is_empty() {
        return Ok(());
    }
    for garbage in &old {
        shared.storage.delete(&shared.data_dir, &garbage.path)?;
    }
    manifest.garbage = young;
    shared.store_manifest(&manifest)?;
    write_state(shared).manifest = manifest;
    Ok(())
}

/// Counts of the files a manifest lists, by table.
pub fn file_counts(manifest: &Manifest) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::from([("scalars", 0), ("tensors", 0)]);
    for file in &manifest.files {
        let table = match file.table {
            Table::Scalars => "scalars",
            Table::Tensors => "tensors",
        };
        *counts.entry(table).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(sizes: &[u64]) -> Manifest {
        Manifest {
            files: sizes
                .iter()
                .enumerate()
                .map(|(i, &bytes)| DataFile {
                    table: Table::Scalars,
                    id: i as u64 + 1,
                    path: format!("data/{i}"),
                    rows: 1,
                    bytes,
                    crc32: None,
                    series: Vec::new(),
                })
                .collect(),
            ..Manifest::default()
        }
    }

    fn picked(sizes: &[u64]) -> Option<Vec<u64>> {
        let policy = CompactionPolicy {
            min_files: 4,
            target_bytes: 1 << 20,
        };
        pick(&files(sizes), Table::Scalars, policy).map(|run| run.iter().map(|f| f.bytes).collect())
    }

    #[test]
    fn merges_runs_of_files_of_about_one_size() {
        assert_eq!(picked(&[100, 100, 100]), None);
        assert_eq!(picked(&[100, 100, 100, 100, 100]), Some(vec![100; 4]));
        // Files of about one size merge; a file `min_files` times larger
        // is not rewritten with small ones, on either side of them.
        assert_eq!(
            picked(&[300, 100, 100, 100]),
            Some(vec![300, 100, 100, 100])
        );
        assert_eq!(picked(&[400, 100, 100, 100]), None);
        assert_eq!(picked(&[100, 100, 400, 100, 100]), None);
        assert_eq!(picked(&[400, 100, 100, 100, 100]), Some(vec![100; 4]));
        // Files at the target are left alone, and a run stays under it.
        assert_eq!(picked(&[1 << 20, 100, 100, 100]), None);
        assert_eq!(picked(&[300_000, 300_000, 300_000, 300_000]), None);
    }

    /// Bytes written by compaction over `flushes` flushes of `size` bytes,
    /// each followed by every pass that is due (a merged file's size is the
    /// sum of its inputs'), and the files left.
    fn simulate(flushes: usize, size: u64, policy: CompactionPolicy) -> (u64, usize) {
        let mut manifest = Manifest::default();
        let mut written = 0;
        for id in 1..=flushes as u64 {
            manifest.files.push(DataFile {
                table: Table::Scalars,
                id,
                path: format!("data/{id}"),
                rows: 1,
                bytes: size,
                crc32: None,
                series: Vec::new(),
            });
            while let Some(run) = pick(&manifest, Table::Scalars, policy) {
                let bytes: u64 = run.iter().map(|f| f.bytes).sum();
                written += bytes;
                let last = run[run.len() - 1].clone();
                manifest
                    .files
                    .retain(|f| !run.iter().any(|r| r.path == f.path));
                manifest.files.push(DataFile { bytes, ..last });
                manifest.sort_files();
            }
        }
        (written, manifest.files.len())
    }

    #[test]
    fn each_byte_is_rewritten_about_once_per_size_tier() {
        // 4,096 flushes with 8 files per merge: four tiers (8^4 = 4,096), so
        // each byte is rewritten about four times. Letting a large file take
        // the small ones after it rewrote it at every merge instead: 293×.
        let policy = CompactionPolicy {
            min_files: 8,
            target_bytes: 1 << 40,
        };
        let (flushes, size) = (4096, 100_000);
        let (written, left) = simulate(flushes, size, policy);
        let rewrites = written as f64 / (flushes as u64 * size) as f64;
        assert!(
            rewrites <= 5.0,
            "each byte was rewritten {rewrites:.1} times"
        );
        assert!(left <= 8, "{left} files left");
    }
}
