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
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use steplake_core::schema::scalars_schema;

use crate::wal::sync_dir;
use crate::StoreError;

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

/// Writes `batches` (already sorted by run, name, step) as the file `final_path`.
///
/// Returns the file's size in bytes.
pub fn write_scalars_file(final_path: &Path, batches: &[RecordBatch]) -> Result<u64, StoreError> {
    write_atomically(final_path, |file| {
        let mut writer =
            ArrowWriter::try_new(file, scalars_schema(), Some(scalars_writer_properties()))?;
        for batch in batches {
            writer.write(batch)?;
        }
        writer.into_inner()
    })
}

/// Writes a data file so that it is either whole or absent: `write` fills a
/// temporary file, which is fsynced, renamed to `final_path`, and its
/// directory fsynced. Returns the file's size in bytes.
pub fn write_atomically(
    final_path: &Path,
    write: impl FnOnce(File) -> Result<File, parquet::errors::ParquetError>,
) -> Result<u64, StoreError> {
    let dir = final_path
        .parent()
        .ok_or_else(|| StoreError::io(final_path, std::io::Error::other("no parent directory")))?;
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let tmp_path = final_path.with_extension("parquet.tmp");
    let file = File::create(&tmp_path).map_err(|e| StoreError::io(&tmp_path, e))?;
    let file = write(file).map_err(|e| StoreError::parquet(&tmp_path, e))?;
    file.sync_all().map_err(|e| StoreError::io(&tmp_path, e))?;
    let bytes = file
        .metadata()
        .map_err(|e| StoreError::io(&tmp_path, e))?
        .len();
    drop(file);
    fs::rename(&tmp_path, final_path).map_err(|e| StoreError::io(final_path, e))?;
    sync_dir(dir)?;
    Ok(bytes)
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
