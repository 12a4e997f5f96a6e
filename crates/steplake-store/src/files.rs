//! Parquet data files: how a frozen buffer becomes a durable, standard file.
//!
//! Layout (docs/architecture.md, "On disk"): rows sorted by (run_id, name, step);
//! run_id and name dictionary-encoded; step and wall_time DELTA_BINARY_PACKED;
//! value BYTE_STREAM_SPLIT; ZSTD pages; page-level statistics with column and
//! offset indexes, so readers (DataFusion, DuckDB, pyarrow) skip pages by
//! series and step. Files are written to a temporary name, fsynced, renamed
//! into place and the directory fsynced, so a file is either whole or absent.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use steplake_core::schema::scalars_schema;

use crate::wal::sync_dir;
use crate::{SeriesRange, StoreError};

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 1 << 20;
/// Rows per data page at most: small enough that a step-range query skips most pages.
pub const PAGE_ROWS: usize = 8192;

/// The folder of data files within a data directory.
pub fn data_files_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("data")
}

/// File name of the data file with this id, written by the store opened as
/// `incarnation` (random per open, so two processes never share a name).
pub fn data_file_name(id: u64, incarnation: &str) -> String {
    format!("scalars-{id:010}-{incarnation}.parquet")
}

/// How the names of files rewritten from listed ones end (by compaction,
/// or deletion of runs): one unlisted after a crash holds nothing the
/// listed files lack, and is deleted at open.
pub const COMPACTED_SUFFIX: &str = "-c.parquet";

/// File name of a file of `table` rewritten from listed ones, with this id:
/// random, so it never replaces the file of that id it was made from.
pub fn compacted_file_name(table: crate::Table, id: u64) -> String {
    let prefix = match table {
        crate::Table::Scalars => "scalars",
        crate::Table::Tensors => "tensors",
    };
    format!("{prefix}-{id:010}-{}{COMPACTED_SUFFIX}", crate::random_id())
}

/// The `.parquet` files in `dir` (none when it does not exist).
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
}

/// Writer settings for `scalars` files.
pub fn scalars_writer_properties() -> WriterProperties {
    let zstd = ZstdLevel::try_new(1).unwrap_or_default();
    let col = |name: &str| ColumnPath::from(name);
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_dictionary_enabled(false)
        .set_column_dictionary_enabled(col("run_id"), true)
        .set_column_dictionary_enabled(col("name"), true)
        .set_column_encoding(col("step"), Encoding::DELTA_BINARY_PACKED)
        .set_column_encoding(col("wall_time"), Encoding::DELTA_BINARY_PACKED)
        .set_column_encoding(col("value"), Encoding::BYTE_STREAM_SPLIT)
        .set_sorting_columns(Some(
            (0..3)
                .map(|i| SortingColumn {
                    column_idx: i,
                    descending: false,
                    nulls_first: false,
                })
                .collect(),
        ))
        .set_created_by(format!("steplake {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Size and CRC-32 of a data file as it was written: what the manifest
/// records, and [`verify_data_file`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Size in bytes.
    pub bytes: u64,
    /// CRC-32 (IEEE) of the whole file.
    pub crc32: u32,
}

/// A file being written, checksummed on the way.
pub struct ChecksumWriter {
    file: File,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl std::io::Write for ChecksumWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Checks that the data file at `path` is whole and unchanged since it was
/// written: its size, then the CRC-32 of every byte. A file written before
/// checksums were recorded (`crc32` is `None`) is checked for size only.
pub fn verify_data_file(path: &Path, bytes: u64, crc32: Option<u32>) -> Result<(), StoreError> {
    let actual = fs::metadata(path)
        .map_err(|e| StoreError::io(path, e))?
        .len();
    if actual != bytes {
        return Err(StoreError::corrupt(
            path,
            actual.min(bytes),
            format!("the file is {actual} bytes but {bytes} were written: it was truncated or replaced; restore it from a backup"),
        ));
    }
    let Some(expected) = crc32 else {
        return Ok(());
    };
    let actual = checksum(path)?.crc32;
    if actual != expected {
        return Err(StoreError::corrupt(
            path,
            0,
            format!("the file fails its checksum (CRC-32 {actual:08x}, written as {expected:08x}): its bytes changed since it was written; restore it from a backup"),
        ));
    }
    Ok(())
}

/// Size and CRC-32 of the file at `path` as it is now, read in 1 MiB pieces.
pub fn checksum(path: &Path) -> Result<Written, StoreError> {
    let mut file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut crc = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = std::io::Read::read(&mut file, &mut buffer).map_err(|e| StoreError::io(path, e))?;
        if n == 0 {
            break;
        }
        crc.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok(Written {
        bytes,
        crc32: crc.finalize(),
    })
}

/// Writes `batches` (already sorted by run, name, step) as the file
/// `final_path`, with `key_values` in its metadata.
pub fn write_scalars_file(
    final_path: &Path,
    batches: &[RecordBatch],
    key_values: &[KeyValue],
) -> Result<Written, StoreError> {
    write_batches_file(final_path, batches, scalars_writer_properties(), key_values)
}

/// Writes `batches` as the file `final_path` with the writer settings
/// `properties`, and `key_values` in its metadata.
pub(crate) fn write_batches_file(
    final_path: &Path,
    batches: &[RecordBatch],
    properties: parquet::file::properties::WriterProperties,
    key_values: &[KeyValue],
) -> Result<Written, StoreError> {
    let schema = batches.first().map_or_else(scalars_schema, |b| b.schema());
    write_atomically(final_path, |file| {
        let mut writer = ArrowWriter::try_new(file, schema, Some(properties))?;
        for batch in batches {
            writer.write(batch)?;
        }
        for kv in key_values {
            writer.append_key_value_metadata(kv.clone());
        }
        writer.into_inner()
    })
}

/// Writes a data file so that it is either whole or absent: `write` fills a
/// temporary file, which is fsynced, renamed to `final_path`, and its
/// directory fsynced. Returns the file's size and checksum.
pub fn write_atomically(
    final_path: &Path,
    write: impl FnOnce(ChecksumWriter) -> Result<ChecksumWriter, parquet::errors::ParquetError>,
) -> Result<Written, StoreError> {
    let dir = final_path
        .parent()
        .ok_or_else(|| StoreError::io(final_path, std::io::Error::other("no parent directory")))?;
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let tmp_path = final_path.with_extension("parquet.tmp");
    let file = File::create(&tmp_path).map_err(|e| StoreError::io(&tmp_path, e))?;
    let writer = ChecksumWriter {
        file,
        crc: crc32fast::Hasher::new(),
        bytes: 0,
    };
    let writer = write(writer).map_err(|e| StoreError::parquet(&tmp_path, e))?;
    writer
        .file
        .sync_all()
        .map_err(|e| StoreError::io(&tmp_path, e))?;
    let written = Written {
        bytes: writer.bytes,
        crc32: writer.crc.finalize(),
    };
    drop(writer.file);
    fs::rename(&tmp_path, final_path).map_err(|e| StoreError::io(final_path, e))?;
    sync_dir(dir)?;
    Ok(written)
}

/// Removes leftovers of interrupted writes (`*.tmp`) from the data folder.
pub fn remove_temporary_files(dir: &Path) -> Result<(), StoreError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().ends_with(".tmp") {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
        }
    }
    Ok(())
}

/// The (run_id, name, step) columns of a batch read from a data file (of
/// either table), run and name as plain strings whatever their encoding.
pub(crate) struct KeyColumns {
    runs: arrow::array::StringArray,
    names: arrow::array::StringArray,
    steps: arrow::array::Int64Array,
}

impl KeyColumns {
    /// The key columns of `batch`, or what is wrong with them.
    pub(crate) fn of(batch: &RecordBatch) -> Result<KeyColumns, String> {
        use arrow::array::AsArray;
        use arrow::datatypes::{DataType, Int64Type};
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("it has no {name} column"))
        };
        let text = |name: &str| {
            arrow::compute::cast(column(name)?, &DataType::Utf8)
                .map(|c| c.as_string::<i32>().clone())
                .map_err(|e| e.to_string())
        };
        Ok(KeyColumns {
            runs: text("run_id")?,
            names: text("name")?,
            steps: column("step")?
                .as_primitive_opt::<Int64Type>()
                .ok_or("its step column is not 64-bit integers")?
                .clone(),
        })
    }

    /// (run, name, step) of `row`.
    pub(crate) fn get(&self, row: usize) -> (&str, &str, i64) {
        (
            self.runs.value(row),
            self.names.value(row),
            self.steps.value(row),
        )
    }
}

/// Extends `ranges` with the per-series step ranges of `batch`, whose rows
/// (run_id, name, step) come sorted by series: a series continuing from the
/// previous batch extends its range.
pub(crate) fn add_series_ranges(
    ranges: &mut Vec<SeriesRange>,
    batch: &RecordBatch,
) -> Result<(), String> {
    let keys = KeyColumns::of(batch)?;
    for row in 0..batch.num_rows() {
        let (run, series, step) = keys.get(row);
        match ranges.last_mut() {
            Some(r) if r.run_id == run && r.name == series => {
                r.min_step = r.min_step.min(step);
                r.max_step = r.max_step.max(step);
                r.rows += 1;
            }
            _ => ranges.push(SeriesRange {
                run_id: run.to_string(),
                name: series.to_string(),
                min_step: step,
                max_step: step,
                rows: 1,
            }),
        }
    }
    Ok(())
}
