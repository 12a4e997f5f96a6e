//! Parquet files an importer reads (neptune-exporter's files, W&B history
//! exports): every file checked before anything is sent, then read batch
//! by batch, each error naming the file.

use std::fs::File;
use std::path::Path;

use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::CliError;

/// Checks that `path` is a readable Parquet file with every column of
/// `columns`; `kind` says what such a file is, for the message.
pub(crate) fn check_columns(path: &Path, columns: &[&str], kind: &str) -> Result<(), CliError> {
    let file = File::open(path)
        .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
        CliError::Input(format!(
            "{}: not a readable Parquet file ({e}); it may be cut short; nothing was imported",
            path.display()
        ))
    })?;
    let schema = builder.schema();
    if let Some(missing) = columns.iter().find(|c| schema.field_with_name(c).is_err()) {
        return Err(CliError::Input(format!(
            "{}: no column {missing:?}; is it {kind}? nothing was imported",
            path.display()
        )));
    }
    Ok(())
}

/// An error met while importing `path`, after what came before it.
pub(crate) fn read_failed(path: &Path, error: &dyn std::fmt::Display) -> CliError {
    CliError::Input(format!(
        "{}: {error}; nothing more was imported",
        path.display()
    ))
}

/// The record batches of `path`, in order.
pub(crate) fn batches(
    path: &Path,
) -> Result<impl Iterator<Item = Result<RecordBatch, CliError>> + '_, CliError> {
    let file = File::open(path).map_err(|e| read_failed(path, &e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| read_failed(path, &e))?;
    Ok(reader.map(move |batch| batch.map_err(|e| read_failed(path, &e))))
}
