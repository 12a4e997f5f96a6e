//! Tensor files round-trip every dtype bit-exactly through Parquet, with
//! values pages compressed by steplake-codec and read back by parquet's own
//! (libzstd) reader.

use std::fs::File;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float32Type, Float64Type, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use steplake_codec::stats::tensor_stats;
use steplake_codec::Codec;
use steplake_core::{DType, TensorRecord};
use steplake_store::tensor_files::write_tensors_file;

struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn record(
    name: &str,
    step: i64,
    dtype: DType,
    shape: Vec<u64>,
    values: Option<Vec<u8>>,
) -> TensorRecord {
    let stats = match &values {
        Some(v) => tensor_stats(v, dtype),
        None => tensor_stats(
            &vec![0u8; shape.iter().product::<u64>() as usize * dtype.size()],
            dtype,
        ),
    };
    TensorRecord {
        name: name.into(),
        step,
        wall_time_us: 1_700_000_000_000_000 + step,
        dtype,
        shape,
        stats,
        values,
    }
}

/// Tensors of every dtype, plus a stats-only one and an empty one.
fn sample() -> Vec<(String, TensorRecord)> {
    let mut noise = Noise(42);
    let mut bytes = |n: usize| -> Vec<u8> { (0..n).map(|_| noise.next() as u8).collect() };
    let weights: Vec<u8> = (0..300_000u32)
        .flat_map(|i| (((i % 1000) as f32 - 500.0) * 1e-3).to_le_bytes())
        .collect();
    let mut rows = vec![
        record("w.f32", 0, DType::F32, vec![600, 500], Some(weights)),
        // Random bits include NaN payloads and infinities: must survive exactly.
        record("w.bf16", 0, DType::Bf16, vec![1000], Some(bytes(2000))),
        record("w.f16", 0, DType::F16, vec![10, 10], Some(bytes(200))),
        record("w.f64", 0, DType::F64, vec![3, 7], Some(bytes(168))),
        record("w.i8", 0, DType::I8, vec![99], Some(bytes(99))),
        record("w.i16", 0, DType::I16, vec![5], Some(bytes(10))),
        record("w.i32", 0, DType::I32, vec![5], Some(bytes(20))),
        record("w.i64", 0, DType::I64, vec![2, 2], Some(bytes(32))),
        record("w.u8", 0, DType::U8, vec![300], Some(bytes(300))),
        record("w.bool", 0, DType::Bool, vec![4], Some(vec![0, 1, 1, 0])),
        record("w.empty", 0, DType::F32, vec![0, 3], Some(vec![])),
        record("w.stats_only", 0, DType::F32, vec![1 << 20], None),
    ];
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows.into_iter().map(|r| ("run-1".to_string(), r)).collect()
}

/// The bytes of a stored row restored to the tensor's dtype.
fn restore(dtype: DType, column: &dyn Array) -> Vec<u8> {
    match dtype {
        DType::F32 => column
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::Bf16 => column
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
            .collect(),
        DType::F16 => column
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .flat_map(|v| steplake_core::dtype::narrow_f16(*v).to_le_bytes())
            .collect(),
        DType::F64 => column
            .as_primitive::<Float64Type>()
            .values()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        _ => {
            let ints = column.as_primitive::<Int64Type>().values();
            ints.iter()
                .flat_map(|&v| v.to_le_bytes()[..dtype.size()].to_vec())
                .collect()
        }
    }
}

#[test]
fn every_dtype_round_trips_bit_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tensors-0000000001.parquet");
    let rows = sample();
    write_tensors_file(&path, &rows, &Codec::cpu(), &[]).expect("write");

    let builder =
        ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("open")).expect("reader");
    let metadata = builder.metadata().clone();
    let batches: Vec<_> = builder
        .build()
        .expect("build")
        .collect::<Result<_, _>>()
        .expect("read");
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat");
    assert_eq!(batch.num_rows(), rows.len());
    assert_eq!(batch.schema(), steplake_core::schema::tensors_schema());

    // The value columns are declared ZSTD (their frames come from steplake-codec).
    let row_group = metadata.row_group(0);
    for column in row_group.columns() {
        if column.column_path().string().starts_with("tensor") {
            assert!(
                matches!(column.compression(), Compression::ZSTD(_)),
                "{}",
                column.column_path()
            );
        }
    }

    for (i, (_, record)) in rows.iter().enumerate() {
        let column = steplake_store::tensor_files::value_column(record.dtype);
        for other in ["tensor", "tensor_f64", "tensor_int"] {
            let list = batch
                .column_by_name(other)
                .expect("column")
                .as_list::<i32>();
            if other != column || record.values.is_none() {
                assert!(list.is_null(i), "{} in {other}", record.name);
                continue;
            }
            let restored = restore(record.dtype, list.value(i).as_ref());
            assert!(
                &restored == record.values.as_ref().expect("tensor"),
                "{} differs",
                record.name
            );
        }
        let dtype = batch
            .column_by_name("dtype")
            .expect("dtype")
            .as_string::<i32>()
            .value(i);
        assert_eq!(dtype, record.dtype.name());
        let shape = batch
            .column_by_name("shape")
            .expect("shape")
            .as_list::<i32>()
            .value(i);
        let shape: Vec<u64> = shape
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .map(|&d| d as u64)
            .collect();
        assert_eq!(shape, record.shape);
        let numel = batch
            .column_by_name("numel")
            .expect("numel")
            .as_primitive::<Int64Type>()
            .value(i);
        assert_eq!(numel as u64, record.stats.numel);
    }
}

#[test]
fn weights_compress() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tensors-0000000002.parquet");
    let rows: Vec<_> = sample()
        .into_iter()
        .filter(|(_, r)| r.name == "w.f32")
        .collect();
    let size = write_tensors_file(&path, &rows, &Codec::cpu(), &[])
        .expect("write")
        .bytes;
    // 1.2 MB of f32 whose sign and exponent planes are skewed: the codec's
    // Huffman blocks bring the file well below the raw size.
    assert!(size < 1_000_000, "{size} bytes");
}

fn python() -> String {
    std::env::var("STEPLAKE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The stored numbers of a tensor as pyarrow's buffer would hold them.
fn stored_bits(record: &TensorRecord) -> Vec<u8> {
    let values = record.values.as_deref().unwrap_or(&[]);
    let size = record.dtype.size();
    match record.dtype {
        DType::F32 => values.to_vec(),
        DType::Bf16 => values
            .chunks_exact(2)
            .flat_map(|e| {
                f32::from_bits((u16::from_le_bytes([e[0], e[1]]) as u32) << 16).to_le_bytes()
            })
            .collect(),
        DType::F16 => values
            .chunks_exact(2)
            .flat_map(|e| {
                half::f16::from_le_bytes([e[0], e[1]])
                    .to_f32()
                    .to_le_bytes()
            })
            .collect(),
        DType::F64 => values.to_vec(),
        _ => values
            .chunks_exact(size)
            .flat_map(|e| {
                let mut wide =
                    if matches!(record.dtype, DType::U8 | DType::Bool) || e[size - 1] < 0x80 {
                        [0u8; 8]
                    } else {
                        [0xFF; 8]
                    };
                wide[..size].copy_from_slice(e);
                wide
            })
            .collect(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn pyarrow_and_duckdb_read_the_same_numbers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tensors-0000000003.parquet");
    let rows = sample();
    write_tensors_file(&path, &rows, &Codec::cpu(), &[]).expect("write");
    let script = format!("{}/../../tests/python/read_tensors.py", manifest_dir());
    let out = std::process::Command::new(python())
        .arg(script)
        .arg(&path)
        .output()
        .expect("run python3 (run scripts/test.sh, which installs pyarrow, duckdb and numpy)");
    assert!(
        out.status.success(),
        "tests/python/read_tensors.py failed (scripts/test.sh installs its packages):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for (_, record) in &rows {
        let theirs = &report["pyarrow"][&record.name];
        assert_eq!(theirs["dtype"], record.dtype.name(), "{}", record.name);
        let shape: Vec<u64> = serde_json::from_value(theirs["shape"].clone()).expect("shape");
        assert_eq!(shape, record.shape, "{}", record.name);
        if record.values.is_none() {
            assert!(theirs["column"].is_null(), "{} has no values", record.name);
            assert!(report["duckdb"][&record.name]["column"].is_null());
            continue;
        }
        let column = steplake_store::tensor_files::value_column(record.dtype);
        assert_eq!(theirs["column"], column, "{}", record.name);
        assert_eq!(
            theirs["bits"],
            hex(&stored_bits(record)),
            "pyarrow: {} differs",
            record.name
        );
        // DuckDB: the same numbers (NaN compares equal to NaN).
        let duck = report["duckdb"][&record.name]["tensor"]
            .as_array()
            .expect("duckdb values");
        let bits = stored_bits(record);
        let expected: Vec<f64> = match column {
            "tensor" => bits
                .chunks_exact(4)
                .map(|e| f32::from_le_bytes([e[0], e[1], e[2], e[3]]) as f64)
                .collect(),
            "tensor_f64" => bits
                .chunks_exact(8)
                .map(|e| f64::from_le_bytes(e.try_into().unwrap_or([0; 8])))
                .collect(),
            _ => bits
                .chunks_exact(8)
                .map(|e| i64::from_le_bytes(e.try_into().unwrap_or([0; 8])) as f64)
                .collect(),
        };
        assert_eq!(duck.len(), expected.len(), "duckdb: {} length", record.name);
        for (i, (d, e)) in duck.iter().zip(&expected).enumerate() {
            let d: f64 = d.as_str().and_then(|s| s.parse().ok()).expect("a number");
            assert!(
                d == *e || (d.is_nan() && e.is_nan()),
                "duckdb: {}[{i}]: {d} vs {e}",
                record.name
            );
        }
    }
}

/// This package's directory. Cargo sets it when it runs the target, so it
/// stays right when one target directory serves checkouts at several paths
/// (the compile-time value is only the fallback).
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())
}
