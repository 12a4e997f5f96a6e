//! Deleting runs from the files: the part of a deletion the flusher does.
//!
//! A deletion is a run record with status `deleted`, logged like any other:
//! once durable, the write rules forget the run (later writes to it are
//! refused, live and on replay alike) and its points leave the buffer. The
//! next flush then drops its rows from every listed file, in the same
//! manifest write as that flush's own file:
//!
//! ```text
//! a file with only deleted runs      unlisted, and garbage
//! a file with other runs too         rewritten without the deleted rows
//!                                    (same id, a `-c.parquet` name), the
//!                                    old one garbage
//! ```
//!
//! So a kill -9 at any moment leaves the run either whole (the manifest
//! write did not happen: the deletion record is still in the WAL past it,
//! and recovery hands it to the first flush again) or gone; a rewritten file
//! no manifest lists is deleted at the next open, as compaction's are.

use std::collections::BTreeSet;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;

use crate::compactor::read_file;
use crate::provenance::Provenance;
use crate::shared::Shared;
use crate::{files, now_us, tensor_files, DataFile, Garbage, Manifest, StoreError, Table};

/// Drops the rows of `runs` from the files `manifest` lists, changing it to
/// list what replaces them. Returns the paths of the files written (to drop
/// their local copies once a bucket's manifest names them) and the ids of
/// the files replaced.
pub(crate) fn drop_runs(
    shared: &Shared,
    manifest: &mut Manifest,
    runs: &BTreeSet<String>,
) -> Result<(Vec<String>, Vec<u64>), StoreError> {
    let now = now_us();
    let mut written = Vec::new();
    let mut replaced = Vec::new();
    let mut kept = Vec::with_capacity(manifest.files.len());
    for file in std::mem::take(&mut manifest.files) {
        if !file.series.iter().any(|s| runs.contains(&s.run_id)) {
            kept.push(file);
            continue;
        }
        manifest.garbage.push(Garbage {
            path: file.path.clone(),
            since_us: now,
        });
        replaced.push(file.id);
        if file.series.iter().all(|s| runs.contains(&s.run_id)) {
            continue;
        }
        let rewritten = rewrite_without(shared, &file, runs)?;
        written.push(rewritten.path.clone());
        kept.push(rewritten);
    }
    manifest.files = kept;
    Ok((written, replaced))
}

/// `file` written again without the rows of `runs`, published but not yet
/// listed.
fn rewrite_without(
    shared: &Shared,
    file: &DataFile,
    runs: &BTreeSet<String>,
) -> Result<DataFile, StoreError> {
    let origin = std::path::PathBuf::from(shared.root()).join(&file.path);
    let bytes = read_file(shared, &file.path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| StoreError::parquet(&origin, e))?;
    let key_values = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| without_runs(kv, runs))
        .unwrap_or_default();
    let mut batches = Vec::new();
    for batch in builder
        .build()
        .map_err(|e| StoreError::parquet(&origin, e))?
    {
        let batch = batch.map_err(|e| StoreError::corrupt(&origin, 0, e.to_string()))?;
        let kept = keep_other_runs(&batch, runs)
            .map_err(|e| StoreError::corrupt(&origin, 0, format!("deleting runs: {e}")))?;
        if kept.num_rows() > 0 {
            batches.push(kept);
        }
    }
    let relative = format!("data/{}", files::compacted_file_name(file.table, file.id));
    let properties = match file.table {
        Table::Scalars => files::scalars_writer_properties(),
        Table::Tensors => tensor_files::tensors_rewrite_properties(),
    };
    let written = files::write_batches_file(
        &shared.data_dir.join(&relative),
        &batches,
        properties,
        &key_values,
    )?;
    shared.storage.publish(&shared.data_dir, &relative)?;
    Ok(DataFile {
        table: file.table,
        id: file.id,
        path: relative,
        rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
        bytes: written.bytes,
        crc32: Some(written.crc32),
        series: file
            .series
            .iter()
            .filter(|s| !runs.contains(&s.run_id))
            .cloned()
            .collect(),
    })
}

/// The rows of `batch` whose run is not one of `runs` (both tables have a
/// `run_id` column).
fn keep_other_runs(
    batch: &RecordBatch,
    runs: &BTreeSet<String>,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let column = batch.column_by_name("run_id").ok_or_else(|| {
        arrow::error::ArrowError::SchemaError("the file has no run_id column".into())
    })?;
    let column = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8)?;
    let keep: BooleanArray = column
        .as_string::<i32>()
        .iter()
        .map(|run| Some(run.is_none_or(|r| !runs.contains(r))))
        .collect();
    arrow::compute::filter_record_batch(batch, &keep)
}

/// A file's provenance (see `provenance`) without what it says of `runs`,
/// so a repair does not bring their metadata back.
fn without_runs(key_values: &[KeyValue], runs: &BTreeSet<String>) -> Vec<KeyValue> {
    match Provenance::from_key_values(key_values) {
        Some(mut provenance) => {
            provenance.runs.retain(|r| !runs.contains(&r.run_id));
            provenance.key_values()
        }
        None => Vec::new(),
    }
}
