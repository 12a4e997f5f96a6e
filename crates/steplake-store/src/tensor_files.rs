//! Parquet files of the `tensors` table, with tensor values compressed by
//! steplake-codec.
//!
//! Every column except the three value columns is written by parquet's Arrow
//! writer (ZSTD pages, like the scalars files). The value columns (`tensor`
//! FLOAT, `tensor_f64` DOUBLE, `tensor_int` INT64; one tensor per row, as a
//! list) are written by parquet's column writer with compression off and
//! DataPage V2, and `CodecPageWriter` compresses each page's values section
//! with steplake-codec (on the CPU or the GPU, [`Codec`]) before it is written: FLOAT and
//! DOUBLE pages are BYTE_STREAM_SPLIT planes, INT64 pages PLAIN bytes. The
//! column chunk is then declared ZSTD, which is what the frames are: pyarrow,
//! DuckDB and DataFusion read these files with their own zstd.

use crate::files::{ChecksumWriter, Written};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, Float32Builder, Float64Builder, Int64Builder, ListBuilder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field};
use bytes::Bytes;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowRowGroupWriterFactory};
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowSchemaConverter};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriteSpec, PageWriter};
use parquet::column::writer::{get_column_writer, ColumnCloseResult, ColumnWriter};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnDescPtr, ColumnPath};
use steplake_codec::Codec;
use steplake_core::schema::{tensors_schema, TIMESTAMP_TZ};
use steplake_core::{DType, TensorRecord};

use crate::StoreError;

/// File name of the tensors file with this id, written by the store opened
/// as `incarnation` (see [`crate::files::data_file_name`]).
pub fn tensor_file_name(id: u64, incarnation: &str) -> String {
    format!("tensors-{id:010}-{incarnation}.parquet")
}

/// The value columns, by position in [`tensors_schema`].
const VALUE_COLUMNS: [&str; 3] = ["tensor", "tensor_f64", "tensor_int"];

/// Which value column holds tensors of `dtype`.
pub fn value_column(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 | DType::Bf16 | DType::F16 => "tensor",
        DType::F64 => "tensor_f64",
        _ => "tensor_int",
    }
}

fn element_path(column: &str) -> ColumnPath {
    ColumnPath::from(vec![column.to_string(), "list".into(), "element".into()])
}

/// Writer settings for `tensors` files whose value pages are compressed by
/// steplake-codec ([`write_tensors_file`]).
pub fn tensors_writer_properties() -> WriterProperties {
    tensor_properties(Compression::UNCOMPRESSED)
}

/// Writer settings for `tensors` files written from decoded rows by
/// parquet's own Arrow writer (a file rewritten without some of its rows):
/// value pages in the same encodings, compressed by parquet's zstd.
pub fn tensors_rewrite_properties() -> WriterProperties {
    tensor_properties(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
}

/// Writer settings for `tensors` files, with value pages compressed as
/// `values` says.
fn tensor_properties(values: Compression) -> WriterProperties {
    let zstd = ZstdLevel::try_new(1).unwrap_or_default();
    let mut builder = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_2_0)
        .set_compression(Compression::ZSTD(zstd))
        .set_statistics_enabled(EnabledStatistics::Page)
        // One row per page: the page index then lets a reader that wants one
        // tensor (run, name, step) skip every other tensor's values page.
        .set_data_page_row_count_limit(1)
        .set_dictionary_enabled(false)
        .set_column_dictionary_enabled(ColumnPath::from("run_id"), true)
        .set_column_dictionary_enabled(ColumnPath::from("name"), true)
        .set_created_by(format!("steplake {}", env!("CARGO_PKG_VERSION")));
    for column in VALUE_COLUMNS {
        let encoding = if column == "tensor_int" {
            Encoding::PLAIN
        } else {
            Encoding::BYTE_STREAM_SPLIT
        };
        builder = builder
            .set_column_encoding(element_path(column), encoding)
            // UNCOMPRESSED when pages reach CodecPageWriter, which compresses them.
            .set_column_compression(element_path(column), values)
            // Per-value statistics of whole tensors cost more than they save.
            .set_column_statistics_enabled(element_path(column), EnabledStatistics::None);
    }
    builder.build()
}

/// Writes `rows` (run id, tensor), sorted by (run, name, step), as the file
/// `final_path`: temporary file, fsync, rename, directory fsync. Returns the
/// file's size in bytes.
pub fn write_tensors_file(
    final_path: &Path,
    rows: &[(String, TensorRecord)],
    codec: &Codec,
    key_values: &[KeyValue],
) -> Result<Written, StoreError> {
    crate::files::write_atomically(final_path, |file| {
        write_tensors(file, rows, codec, key_values)
    })
}

/// Writes the Parquet bytes of `rows` to `file`, one row group.
fn write_tensors(
    file: ChecksumWriter,
    rows: &[(String, TensorRecord)],
    codec: &Codec,
    key_values: &[KeyValue],
) -> Result<ChecksumWriter, ParquetError> {
    let schema = tensors_schema();
    let parquet_schema = ArrowSchemaConverter::new().convert(&schema)?;
    let mut props = tensors_writer_properties();
    add_encoded_arrow_schema_to_metadata(&schema, &mut props);
    let props = Arc::new(props);
    let mut writer =
        SerializedFileWriter::new(file, parquet_schema.root_schema_ptr(), Arc::clone(&props))?;
    let arrow_writers =
        ArrowRowGroupWriterFactory::new(&writer, Arc::clone(&schema)).create_column_writers(0)?;
    let refs: Vec<(&str, &TensorRecord)> = rows.iter().map(|(r, t)| (r.as_str(), t)).collect();
    let batch = header_batch(&refs)?;
    let mut row_group = writer.next_row_group()?;
    // One leaf per field: every list column has a single leaf.
    for ((field, mut arrow_writer), descr) in schema
        .fields()
        .iter()
        .zip(arrow_writers)
        .zip(parquet_schema.columns())
    {
        if VALUE_COLUMNS.contains(&field.name().as_str()) {
            let (bytes, close) =
                write_value_column(descr.clone(), &props, field.name(), rows, codec)?;
            row_group.append_column(&bytes, close)?;
        } else {
            let column = batch
                .column_by_name(field.name())
                .ok_or_else(|| ParquetError::General(format!("missing column {}", field.name())))?;
            for leaf in compute_leaves(field, column)? {
                arrow_writer.write(&leaf)?;
            }
            arrow_writer.close()?.append_to_row_group(&mut row_group)?;
        }
    }
    row_group.close()?;
    for kv in key_values {
        writer.append_key_value_metadata(kv.clone());
    }
    writer.into_inner()
}

/// Every column of [`tensors_schema`], values included, as one batch: how
/// buffered tensors are queried.
pub fn tensors_batch(rows: &[(&str, &TensorRecord)]) -> Result<RecordBatch, ParquetError> {
    let header = header_batch(rows)?;
    let mut floats = list_builder(Float32Builder::new(), DataType::Float32);
    let mut doubles = list_builder(Float64Builder::new(), DataType::Float64);
    let mut ints = list_builder(Int64Builder::new(), DataType::Int64);
    for (_, record) in rows {
        let column = value_column(record.dtype);
        let size = record.dtype.size();
        let values = record.values.as_deref();
        match (column, values) {
            ("tensor", Some(v)) => {
                floats.values().extend(
                    v.chunks_exact(size)
                        .map(|e| Some(element_as_f32(record.dtype, e))),
                );
                floats.append(true);
            }
            ("tensor_f64", Some(v)) => {
                doubles.values().extend(
                    v.chunks_exact(8)
                        .map(|e| Some(f64::from_le_bytes(e.try_into().unwrap_or([0; 8])))),
                );
                doubles.append(true);
            }
            (_, Some(v)) => {
                ints.values().extend(
                    v.chunks_exact(size)
                        .map(|e| Some(element_as_i64(record.dtype, e))),
                );
                ints.append(true);
            }
            (_, None) => {}
        }
        for (name, builder_column) in [("tensor", 0), ("tensor_f64", 1), ("tensor_int", 2)] {
            if values.is_none() || name != column {
                match builder_column {
                    0 => floats.append(false),
                    1 => doubles.append(false),
                    _ => ints.append(false),
                }
            }
        }
    }
    let mut columns = header.columns().to_vec();
    columns.push(Arc::new(floats.finish()));
    columns.push(Arc::new(doubles.finish()));
    columns.push(Arc::new(ints.finish()));
    RecordBatch::try_new(tensors_schema(), columns)
        .map_err(|e| ParquetError::General(e.to_string()))
}

/// Every column but the values, as Arrow arrays.
fn header_batch(rows: &[(&str, &TensorRecord)]) -> Result<RecordBatch, ParquetError> {
    let mut run_id = StringBuilder::new();
    let mut name = StringBuilder::new();
    let mut step = Int64Builder::new();
    let mut wall_time = TimestampMicrosecondBuilder::new().with_timezone(TIMESTAMP_TZ);
    let mut dtype = StringBuilder::new();
    let mut shape = list_builder(Int64Builder::new(), DataType::Int64);
    let mut numel = Int64Builder::new();
    let mut floats: [Float64Builder; 7] = std::array::from_fn(|_| Float64Builder::new());
    let mut counts: [Int64Builder; 2] = std::array::from_fn(|_| Int64Builder::new());
    let mut hist = list_builder(Int64Builder::new(), DataType::Int64);
    let mut quantiles = list_builder(Float64Builder::new(), DataType::Float64);
    for (run, record) in rows {
        let stats = &record.stats;
        run_id.append_value(run);
        name.append_value(&record.name);
        step.append_value(record.step);
        wall_time.append_value(record.wall_time_us);
        dtype.append_value(record.dtype.name());
        shape
            .values()
            .append_slice(&record.shape.iter().map(|&d| d as i64).collect::<Vec<_>>());
        shape.append(true);
        numel.append_value(stats.numel as i64);
        let optional = [
            stats.mean,
            stats.std,
            stats.min,
            stats.max,
            Some(stats.l2),
            stats.abs_max,
            stats.zero_frac,
        ];
        for (builder, value) in floats.iter_mut().zip(optional) {
            builder.append_option(value);
        }
        counts[0].append_value(stats.nan_count as i64);
        counts[1].append_value(stats.inf_count as i64);
        hist.values().append_slice(
            &stats
                .histogram
                .iter()
                .map(|&c| c as i64)
                .collect::<Vec<_>>(),
        );
        hist.append(true);
        match &stats.quantiles {
            Some(q) => {
                quantiles.values().append_slice(q);
                quantiles.append(true);
            }
            None => quantiles.append(false),
        }
    }
    let [mean, std, min, max, l2, abs_max, zero_frac] =
        floats.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let [nan_count, inf_count] = counts.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let schema = tensors_schema();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("run_id", Arc::new(run_id.finish())),
        ("name", Arc::new(name.finish())),
        ("step", Arc::new(step.finish())),
        ("wall_time", Arc::new(wall_time.finish())),
        ("dtype", Arc::new(dtype.finish())),
        ("shape", Arc::new(shape.finish())),
        ("numel", Arc::new(numel.finish())),
        ("mean", mean),
        ("std", std),
        ("min", min),
        ("max", max),
        ("l2", l2),
        ("abs_max", abs_max),
        ("nan_count", nan_count),
        ("inf_count", inf_count),
        ("zero_frac", zero_frac),
        ("hist", Arc::new(hist.finish())),
        ("quantiles", Arc::new(quantiles.finish())),
    ];
    let fields: Vec<_> = columns
        .iter()
        .map(|(n, _)| schema.field_with_name(n).cloned())
        .collect::<Result<_, _>>()
        .map_err(|e| ParquetError::General(e.to_string()))?;
    RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .map_err(|e| ParquetError::General(e.to_string()))
}

/// A list builder whose items match [`steplake_core::schema::list_of`].
fn list_builder<T: ArrayBuilder>(values: T, item: DataType) -> ListBuilder<T> {
    ListBuilder::new(values).with_field(Arc::new(Field::new("element", item, false)))
}

/// Writes one value column (`column`) of `rows` into a buffer: the tensors
/// of that column's dtypes as lists, every other row NULL. Returns the bytes
/// and the close result to splice into the row group.
fn write_value_column(
    descr: ColumnDescPtr,
    props: &Arc<WriterProperties>,
    column: &str,
    rows: &[(String, TensorRecord)],
    codec: &Codec,
) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
    let mut sink = TrackedWrite::new(Vec::new());
    let close = {
        let page_writer = CodecPageWriter {
            codec,
            inner: SerializedPageWriter::new(&mut sink),
            width: match column {
                "tensor" => 4,
                _ => 8,
            },
            split: column != "tensor_int",
        };
        let mut writer = get_column_writer(descr, Arc::clone(props), Box::new(page_writer));
        for (_, record) in rows {
            let values = record
                .values
                .as_deref()
                .filter(|_| value_column(record.dtype) == column);
            write_row(&mut writer, record.dtype, values)?;
        }
        writer.close()?
    };
    let bytes = Bytes::from(sink.into_inner()?);
    // The pages hold zstd frames (or, where a frame would not be smaller, the
    // raw values with is_compressed = false): declare the chunk ZSTD.
    let mut close = close;
    close.metadata = close
        .metadata
        .into_builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build()?;
    Ok((bytes, close))
}

/// Writes one row of a value column: the tensor's elements as one list, or
/// NULL when `values` is `None`. One row is one record, so a tensor is one
/// DataPage V2 of its own (pages end at record boundaries).
fn write_row(
    writer: &mut ColumnWriter<'_>,
    dtype: DType,
    values: Option<&[u8]>,
) -> Result<(), ParquetError> {
    let n = values.map_or(0, |v| v.len() / dtype.size());
    // Definition levels: 0 NULL list, 1 empty list, 2 an element.
    let (def, rep): (Vec<i16>, Vec<i16>) = match values {
        None => (vec![0], vec![0]),
        Some(_) if n == 0 => (vec![1], vec![0]),
        Some(_) => (
            vec![2; n],
            std::iter::once(0)
                .chain(std::iter::repeat_n(1, n - 1))
                .collect(),
        ),
    };
    let bytes = values.unwrap_or(&[]);
    let size = dtype.size();
    let elements = bytes.chunks_exact(size);
    match writer {
        ColumnWriter::FloatColumnWriter(w) => {
            let floats: Vec<f32> = elements.map(|e| element_as_f32(dtype, e)).collect();
            w.write_batch(&floats, Some(&def), Some(&rep))?;
        }
        ColumnWriter::DoubleColumnWriter(w) => {
            let doubles: Vec<f64> = elements
                .map(|e| f64::from_le_bytes(e.try_into().unwrap_or([0; 8])))
                .collect();
            w.write_batch(&doubles, Some(&def), Some(&rep))?;
        }
        ColumnWriter::Int64ColumnWriter(w) => {
            let ints: Vec<i64> = elements.map(|e| element_as_i64(dtype, e)).collect();
            w.write_batch(&ints, Some(&def), Some(&rep))?;
        }
        _ => return Err(ParquetError::General("unexpected value column type".into())),
    }
    Ok(())
}

/// An f32, bf16 or f16 element widened (exactly, NaN payloads included) to f32.
fn element_as_f32(dtype: DType, e: &[u8]) -> f32 {
    match (dtype, e) {
        (DType::F32, [a, b, c, d]) => f32::from_le_bytes([*a, *b, *c, *d]),
        (DType::Bf16, [a, b]) => f32::from_bits((u16::from_le_bytes([*a, *b]) as u32) << 16),
        (DType::F16, [a, b]) => steplake_core::dtype::widen_f16(u16::from_le_bytes([*a, *b])),
        _ => f32::NAN,
    }
}

/// An integer or bool element widened to i64.
fn element_as_i64(dtype: DType, e: &[u8]) -> i64 {
    match (dtype, e) {
        (DType::I8, [a]) => *a as i8 as i64,
        (DType::U8 | DType::Bool, [a]) => *a as i64,
        (DType::I16, [a, b]) => i16::from_le_bytes([*a, *b]) as i64,
        (DType::I32, [a, b, c, d]) => i32::from_le_bytes([*a, *b, *c, *d]) as i64,
        (DType::I64, e) => i64::from_le_bytes(e.try_into().unwrap_or([0; 8])),
        _ => 0,
    }
}

/// Compresses the values section of each DataPage V2 with steplake-codec,
/// then hands the page to parquet's page writer.
struct CodecPageWriter<'a> {
    inner: SerializedPageWriter<'a, Vec<u8>>,
    /// The executor (CPU or GPU); the frames are the same.
    codec: &'a Codec,
    /// Bytes per value in the page (the number of byte planes when split).
    width: usize,
    /// Whether the page's values are BYTE_STREAM_SPLIT planes.
    split: bool,
}

impl PageWriter for CodecPageWriter<'_> {
    fn write_page(&mut self, page: CompressedPage) -> Result<PageWriteSpec, ParquetError> {
        let uncompressed_size = page.uncompressed_size();
        let page = match page.compressed_page() {
            Page::DataPageV2 {
                buf,
                num_values,
                encoding,
                num_nulls,
                num_rows,
                def_levels_byte_len,
                rep_levels_byte_len,
                is_compressed: false,
                statistics,
            } => {
                let levels = (*def_levels_byte_len + *rep_levels_byte_len) as usize;
                let values = &buf[levels..];
                let plane_len = if self.split {
                    values.len() / self.width
                } else {
                    0
                };
                let frame = self.codec.compress_planes(values, plane_len);
                if frame.len() < values.len() {
                    let mut body = Vec::with_capacity(levels + frame.len());
                    body.extend_from_slice(&buf[..levels]);
                    body.extend_from_slice(&frame);
                    CompressedPage::new(
                        Page::DataPageV2 {
                            buf: Bytes::from(body),
                            num_values: *num_values,
                            encoding: *encoding,
                            num_nulls: *num_nulls,
                            num_rows: *num_rows,
                            def_levels_byte_len: *def_levels_byte_len,
                            rep_levels_byte_len: *rep_levels_byte_len,
                            is_compressed: true,
                            statistics: statistics.clone(),
                        },
                        uncompressed_size,
                    )
                } else {
                    page
                }
            }
            _ => page,
        };
        self.inner.write_page(page)
    }

    fn close(&mut self) -> Result<(), ParquetError> {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::Float32Type;

    #[test]
    fn signaling_nan_payloads_survive_widening() {
        let stats = steplake_codec::stats::tensor_stats(&[0x40, 0x7C], DType::F16);
        let record = TensorRecord {
            name: "n".into(),
            step: 0,
            wall_time_us: 0,
            dtype: DType::F16,
            shape: vec![1],
            stats,
            values: Some(vec![0x40, 0x7C]),
        };
        let batch = tensors_batch(&[("r", &record)]).expect("batch");
        let list = batch
            .column_by_name("tensor")
            .expect("tensor")
            .as_list::<i32>();
        let bits = list
            .value(0)
            .as_primitive::<Float32Type>()
            .value(0)
            .to_bits();
        assert_eq!(bits, 0x7F88_0000);
    }
}
