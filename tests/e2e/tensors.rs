//! Tensors end to end: every dtype round-trips bit-exactly through gRPC →
//! WAL → Parquet → SQL, across kill -9 and a graceful restart; bad tensors are
//! refused with the tensor's name and the problem, losing nothing acknowledged.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float32Type, Float64Type, Int64Type};
use steplake_client::{Client, ClientError};

use crate::e2e_test;
use crate::harness::TestServer;

struct Noise(u64);

impl Noise {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}

/// (name, dtype, shape, bytes) of every dtype; random bits include NaN
/// payloads, infinities and subnormals.
fn tensors() -> Vec<(String, &'static str, Vec<i64>, Vec<u8>)> {
    let mut noise = Noise(7);
    let weights: Vec<u8> = (0..750_000u32)
        .flat_map(|i| ((i as f32 * 0.37).sin() * 0.02).to_le_bytes())
        .collect();
    vec![
        ("big.f32".into(), "f32", vec![1000, 750], weights),
        ("t.bf16".into(), "bf16", vec![4, 250], noise.bytes(2000)),
        ("t.f16".into(), "f16", vec![300], noise.bytes(600)),
        ("t.f64".into(), "f64", vec![2, 2, 5], noise.bytes(160)),
        ("t.i8".into(), "i8", vec![77], noise.bytes(77)),
        ("t.i16".into(), "i16", vec![3], noise.bytes(6)),
        ("t.i32".into(), "i32", vec![9], noise.bytes(36)),
        ("t.i64".into(), "i64", vec![4], noise.bytes(32)),
        ("t.u8".into(), "u8", vec![256], (0..=255).collect()),
        ("t.bool".into(), "bool", vec![5], vec![1, 0, 0, 1, 1]),
    ]
}

/// The bytes of a stored tensor, restored to its dtype from the SQL row.
fn restore(batch: &RecordBatch, row: usize) -> Vec<u8> {
    let dtype = batch
        .column_by_name("dtype")
        .unwrap()
        .as_string::<i32>()
        .value(row);
    let list = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_list::<i32>()
            .value(row)
    };
    match dtype {
        "f32" => list("tensor")
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        "bf16" => list("tensor")
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
            .collect(),
        "f16" => list("tensor")
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .flat_map(|v| steplake_core::dtype::narrow_f16(*v).to_le_bytes())
            .collect(),
        "f64" => list("tensor_f64")
            .as_primitive::<Float64Type>()
            .values()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        other => {
            let size = match other {
                "i8" | "u8" | "bool" => 1,
                "i16" => 2,
                "i32" => 4,
                _ => 8,
            };
            list("tensor_int")
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .flat_map(|v| v.to_le_bytes()[..size].to_vec())
                .collect()
        }
    }
}

async fn check_all(url: &str, expected: &[(String, &str, Vec<i64>, Vec<u8>)], when: &str) {
    let client = Client::connect(url).await.unwrap();
    let (schema, batches) = client
        .sql("SELECT name, dtype, shape, numel, tensor, tensor_f64, tensor_int FROM tensors ORDER BY name")
        .await
        .unwrap();
    let batch = arrow::compute::concat_batches(&schema, &batches).unwrap();
    assert_eq!(batch.num_rows(), expected.len(), "{when}: rows");
    let mut sorted: Vec<_> = expected.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (row, (name, dtype, shape, bytes)) in sorted.into_iter().enumerate() {
        assert_eq!(
            batch.column(0).as_string::<i32>().value(row),
            name,
            "{when}"
        );
        assert_eq!(
            batch.column(1).as_string::<i32>().value(row),
            *dtype,
            "{when}"
        );
        let stored_shape = batch.column(2).as_list::<i32>().value(row);
        assert_eq!(
            stored_shape.as_primitive::<Int64Type>().values().to_vec(),
            *shape,
            "{when}: {name} shape"
        );
        let restored = restore(&batch, row);
        if restored != *bytes {
            let first = restored.iter().zip(bytes.iter()).position(|(a, b)| a != b);
            panic!(
                "{when}: {name} differs ({} vs {} bytes), first at {first:?}: {:?} vs {:?}",
                restored.len(),
                bytes.len(),
                first.map(|i| &restored[i & !1..(i & !1) + 2]),
                first.map(|i| &bytes[i & !1..(i & !1) + 2])
            );
        }
    }
}

e2e_test! {
    async fn every_dtype_round_trips_through_kill9_and_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let client = Client::connect(&server.url).await.unwrap();
        client.ensure_run("t", "default").await.unwrap();
        let expected = tensors();
        let mut writer = client.writer_with_id("t", "w-tensors", 1).await.unwrap();
        for (name, dtype, shape, bytes) in &expected {
            // 1 MB chunks: the 3 MB tensor goes in three parts.
            writer.send_tensor_chunked(name, 100, dtype, shape, bytes, 1 << 20).await.unwrap();
        }
        let summary = writer.finish().await.unwrap();
        assert_eq!(summary.batches, 12, "ten tensors, the big one in three chunks");
        check_all(&server.url, &expected, "buffered").await;
        server.kill9();
        let server = TestServer::start(dir.path(), &[]);
        check_all(&server.url, &expected, "after kill -9 (WAL replay)").await;
        server.stop();
        let server = TestServer::start(dir.path(), &[]);
        check_all(&server.url, &expected, "after a graceful restart (Parquet)").await;
        let files: Vec<_> = std::fs::read_dir(dir.path().join("data"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("tensors-"))
            .collect();
        assert_eq!(files.len(), 1, "the flush wrote a tensors file");
    }
}

e2e_test! {
    async fn bad_tensors_are_refused_by_name_and_nothing_acknowledged_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let client = Client::connect(&server.url).await.unwrap();
        client.ensure_run("t", "default").await.unwrap();
        // (name, dtype, shape, bytes, expected reason)
        type Case = (&'static str, &'static str, Vec<i64>, Vec<u8>, &'static str);
        let cases: Vec<Case> = vec![
            ("short", "f32", vec![4], vec![0; 12], "needs 16 bytes"),
            ("weird", "complex64", vec![1], vec![0; 8], "unknown dtype"),
            ("negative", "f32", vec![-1, 4], vec![0; 16], "negative dimension"),
        ];
        for (i, (name, dtype, shape, bytes, reason)) in cases.into_iter().enumerate() {
            let mut writer = client.writer_with_id("t", &format!("w{i}"), 1).await.unwrap();
            writer.send_tensor("good", i as i64, "f32", &[1], &1.5f32.to_le_bytes()).await.unwrap();
            let _ = writer.send_tensor(name, 0, dtype, &shape, &bytes).await;
            match writer.finish().await {
                Err(ClientError::Stream { status, acked_batches, .. }) => {
                    let message = status.to_string();
                    assert!(message.contains(name) || dtype == "complex64", "{message}");
                    assert!(message.contains(reason), "{message}");
                    assert_eq!(acked_batches, 1, "the good tensor before it was acknowledged");
                }
                other => panic!("{name}: expected a refused stream, got {other:?}"),
            }
        }
        // A chunk with a gap.
        let mut writer = client.writer_with_id("t", "w-gap", 1).await.unwrap();
        let chunk = |offset: u64| steplake_client::v1::Tensor {
            name: "gappy".into(),
            step: 0,
            dtype: "f32".into(),
            shape: vec![1000],
            total_bytes: 4000,
            offset,
            data: vec![0u8; 1000],
            ..Default::default()
        };
        writer.send_tensor_message(chunk(0)).await.unwrap();
        writer.send_tensor_message(chunk(2000)).await.ok();
        let result = writer.finish().await;
        let message = format!("{result:?}");
        assert!(message.contains("gappy") && message.contains("received so far"), "{message}");
        let (_, batches) = client.sql("SELECT count(*) AS n FROM tensors").await.unwrap();
        let n = batches[0].column(0).as_primitive::<Int64Type>().value(0);
        assert_eq!(n, 3, "the three good tensors, and no partial one");
    }
}
