//! The merge step of compaction for `tensors` files: several files become
//! one by copying their row groups' bytes, so tensor pages are neither
//! decoded nor encoded again.
//!
//! ```text
//!  file 3 (oldest)      file 7            file 9              merged (id 9)
//!  ┌────────────┐   ┌────────────┐   ┌────────────┐      ┌──────────────────┐
//!  │ row group  │   │ row group  │   │ row group  │  ──▶ │ rg of 3 (copied) │
//!  │ a/w0 @0,100│   │ a/w0 @200  │   │ a/w0 @100 ◀┼─┐    │ rg of 7 (copied) │
//!  └────────────┘   └────────────┘   └────────────┘ │    │ rg of 9 (copied) │
//!                                                   │    └──────────────────┘
//!               a/w0 @100 written again: file 3's row group is rewritten
//!               without it (decoded, filtered, written with standard zstd)
//! ```
//!
//! 1. read each input's footer and page indexes, and its key columns (run,
//!    name, step; small beside the values);
//! 2. walking the inputs newest first, mark the rows whose (run, name, step)
//!    a later input holds again: they are superseded (the latest-write rule,
//!    so the merged file holds each tensor once and a query of it needs no
//!    de-duplication);
//! 3. write the merged file: a row group with no superseded row is appended
//!    byte for byte (column chunks, column and offset indexes); one with
//!    some is decoded, filtered and written again; one with only superseded
//!    rows is left out.
//!
//! Row groups keep their input order, so the merged file is sorted per row
//! group, not as a whole: tensors queries never rely on file order (the page
//! index finds a tensor), unlike the scalars table's.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowRowGroupWriterFactory};
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ProjectionMask};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::writer::SerializedFileWriter;
use steplake_core::schema::tensors_schema;

use crate::files::{ChecksumWriter, KeyColumns, Written};
use crate::provenance::Provenance;
use crate::{tensor_files, SeriesRange, StoreError};

/// One input file of a merge, read.
pub(crate) struct TensorInput {
    /// Where it was read from, for errors.
    pub(crate) origin: PathBuf,
    /// All of its bytes.
    pub(crate) bytes: Bytes,
}

/// What [`merge_tensor_files`] wrote.
pub(crate) struct MergedTensors {
    /// Size and checksum of the file.
    pub(crate) written: Written,
    /// Tensors in it.
    pub(crate) rows: u64,
    /// Its per-series step ranges, sorted by (run, name).
    pub(crate) series: Vec<SeriesRange>,
    /// Row groups copied byte for byte, and written again.
    pub(crate) copied_row_groups: usize,
    /// Row groups decoded and written again without superseded rows.
    pub(crate) rewritten_row_groups: usize,
}

/// A parsed input: its footer with page indexes and, per row group, which
/// rows stay.
struct Parsed<'a> {
    input: &'a TensorInput,
    metadata: ParquetMetaData,
    keys: Vec<Key>,
    kept: Vec<bool>,
}

type Key = (String, String, i64);

/// Merges `inputs` (oldest first) into the file `final_path`, keeping of each
/// (run, name, step) the tensor of the latest input, and the provenance of
/// all inputs in its metadata.
pub(crate) fn merge_tensor_files(
    final_path: &Path,
    inputs: &[TensorInput],
) -> Result<MergedTensors, StoreError> {
    let mut parsed = Vec::with_capacity(inputs.len());
    for input in inputs {
        parsed.push(parse(input)?);
    }
    if let Some(first) = parsed.first() {
        let expected = first.metadata.file_metadata().schema_descr();
        for other in &parsed[1..] {
            if other.metadata.file_metadata().schema_descr().root_schema() != expected.root_schema()
            {
                return Err(StoreError::corrupt(
                    &other.input.origin,
                    0,
                    format!(
                        "its columns differ from those of {}, so the two cannot be merged; \
                         run `steplake check` on the data directory",
                        first.input.origin.display()
                    ),
                ));
            }
        }
    }
    mark_superseded(&mut parsed);
    let key_values = Provenance::merged_key_values(parsed.iter().map(|p| {
        p.metadata
            .file_metadata()
            .key_value_metadata()
            .map(Vec::as_slice)
    }));
    let mut copied_row_groups = 0;
    let mut rewritten_row_groups = 0;
    let written = crate::files::write_atomically(final_path, |file| {
        let (out, copied, rewritten) = write_merged(file, &parsed, &key_values)?;
        copied_row_groups = copied;
        rewritten_row_groups = rewritten;
        Ok(out)
    })?;
    let mut ranges: BTreeMap<(&str, &str), SeriesRange> = BTreeMap::new();
    let mut rows = 0;
    for input in &parsed {
        for ((run, name, step), _) in input.keys.iter().zip(&input.kept).filter(|(_, k)| **k) {
            rows += 1;
            let range = ranges.entry((run, name)).or_insert_with(|| SeriesRange {
                run_id: run.clone(),
                name: name.clone(),
                min_step: *step,
                max_step: *step,
                rows: 0,
            });
            range.min_step = range.min_step.min(*step);
            range.max_step = range.max_step.max(*step);
            range.rows += 1;
        }
    }
    Ok(MergedTensors {
        written,
        rows,
        series: ranges.into_values().collect(),
        copied_row_groups,
        rewritten_row_groups,
    })
}

/// The footer, page indexes and key columns of `input`.
fn parse(input: &TensorInput) -> Result<Parsed<'_>, StoreError> {
    let metadata = ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Optional)
        .parse_and_finish(&input.bytes)
        .map_err(|e| StoreError::parquet(&input.origin, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(input.bytes.clone())
        .map_err(|e| StoreError::parquet(&input.origin, e))?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), ["run_id", "name", "step"]);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| StoreError::parquet(&input.origin, e))?;
    let mut keys = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| StoreError::corrupt(&input.origin, 0, e.to_string()))?;
        append_keys(&batch, &mut keys)
            .map_err(|e| StoreError::corrupt(&input.origin, 0, format!("compaction: {e}")))?;
    }
    let kept = vec![true; keys.len()];
    Ok(Parsed {
        input,
        metadata,
        keys,
        kept,
    })
}

/// Appends the (run, name, step) of every row of `batch` to `keys`.
fn append_keys(batch: &RecordBatch, keys: &mut Vec<Key>) -> Result<(), String> {
    let columns = KeyColumns::of(batch)?;
    for row in 0..batch.num_rows() {
        let (run, name, step) = columns.get(row);
        keys.push((run.to_string(), name.to_string(), step));
    }
    Ok(())
}

/// Marks, newest input first, the rows whose key a later input holds too
/// (or, within one input, a later row: no steplake writer produces that).
fn mark_superseded(parsed: &mut [Parsed<'_>]) {
    let mut seen: HashSet<Key> = HashSet::new();
    for input in parsed.iter_mut().rev() {
        for (key, kept) in input.keys.iter().zip(input.kept.iter_mut()).rev() {
            *kept = seen.insert(key.clone());
        }
    }
}

/// Writes the row groups of `parsed` to `file`; returns the writer and how
/// many row groups were copied and rewritten.
fn write_merged(
    file: ChecksumWriter,
    parsed: &[Parsed<'_>],
    key_values: &[KeyValue],
) -> Result<(ChecksumWriter, usize, usize), ParquetError> {
    let schema = tensors_schema();
    let root = match parsed.first() {
        Some(first) => first
            .metadata
            .file_metadata()
            .schema_descr()
            .root_schema_ptr(),
        None => parquet::arrow::ArrowSchemaConverter::new()
            .convert(&schema)?
            .root_schema_ptr(),
    };
    let mut props = tensor_files::tensors_rewrite_properties();
    add_encoded_arrow_schema_to_metadata(&schema, &mut props);
    let mut writer = SerializedFileWriter::new(file, root, Arc::new(props))?;
    let (mut copied, mut rewritten) = (0, 0);
    let mut row_groups_written = 0;
    for input in parsed {
        let mut first_row = 0;
        for (index, row_group) in input.metadata.row_groups().iter().enumerate() {
            let rows = usize::try_from(row_group.num_rows()).unwrap_or(0);
            let kept = input
                .kept
                .get(first_row..first_row + rows)
                .ok_or_else(|| ParquetError::General("row counts disagree".into()))?;
            first_row += rows;
            if kept.iter().all(|k| *k) {
                copy_row_group(&mut writer, input, index)?;
                copied += 1;
            } else if kept.iter().any(|k| *k) {
                rewrite_row_group(&mut writer, input, index, kept, row_groups_written)?;
                rewritten += 1;
            } else {
                continue;
            }
            row_groups_written += 1;
        }
    }
    for kv in key_values {
        writer.append_key_value_metadata(kv.clone());
    }
    Ok((writer.into_inner()?, copied, rewritten))
}

/// Appends row group `index` of `input` to `writer` as it is: its column
/// chunks' bytes, statistics and page indexes.
fn copy_row_group(
    writer: &mut SerializedFileWriter<ChecksumWriter>,
    input: &Parsed<'_>,
    index: usize,
) -> Result<(), ParquetError> {
    let row_group = input.metadata.row_group(index);
    let column_indexes = input.metadata.column_index().and_then(|c| c.get(index));
    let offset_indexes = input.metadata.offset_index().and_then(|o| o.get(index));
    let mut out = writer.next_row_group()?;
    for (column, chunk) in row_group.columns().iter().enumerate() {
        let close = ColumnCloseResult {
            bytes_written: u64::try_from(chunk.compressed_size()).unwrap_or(0),
            rows_written: u64::try_from(row_group.num_rows()).unwrap_or(0),
            metadata: chunk.clone(),
            bloom_filter: None,
            column_index: column_indexes.and_then(|c| c.get(column)).cloned(),
            offset_index: offset_indexes.and_then(|o| o.get(column)).cloned(),
        };
        out.append_column(&input.input.bytes, close)?;
    }
    out.close()?;
    Ok(())
}

/// Appends the `kept` rows of row group `index` of `input` to `writer`,
/// decoded and written again, as its row group `output_index`.
fn rewrite_row_group(
    writer: &mut SerializedFileWriter<ChecksumWriter>,
    input: &Parsed<'_>,
    index: usize,
    kept: &[bool],
    output_index: usize,
) -> Result<(), ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(input.input.bytes.clone())?
        .with_row_groups(vec![index])
        .with_batch_size(kept.len().max(1))
        .build()?;
    let mut batches = Vec::new();
    let mut offset = 0;
    for batch in reader {
        let batch = batch?;
        let mask = BooleanArray::from(kept[offset..offset + batch.num_rows()].to_vec());
        offset += batch.num_rows();
        batches.push(arrow::compute::filter_record_batch(&batch, &mask)?);
    }
    let schema = tensors_schema();
    let batch = arrow::compute::concat_batches(&schema, &batches)?;
    write_arrow_row_group(writer, &batch, output_index)
}

/// Appends `batch` to `writer` as one row group (its `index`-th), through
/// parquet's Arrow column writers and the writer's properties.
pub(crate) fn write_arrow_row_group<W: std::io::Write + Send>(
    writer: &mut SerializedFileWriter<W>,
    batch: &RecordBatch,
    index: usize,
) -> Result<(), ParquetError> {
    let schema = batch.schema();
    let column_writers = ArrowRowGroupWriterFactory::new(writer, Arc::clone(&schema))
        .create_column_writers(index)?;
    let mut row_group = writer.next_row_group()?;
    for ((field, column), mut column_writer) in schema
        .fields()
        .iter()
        .zip(batch.columns())
        .zip(column_writers)
    {
        for leaf in compute_leaves(field, column)? {
            column_writer.write(&leaf)?;
        }
        column_writer.close()?.append_to_row_group(&mut row_group)?;
    }
    row_group.close()?;
    Ok(())
}
