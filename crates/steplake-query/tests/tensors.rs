//! The `tensors` table: buffered and flushed tensors, statistics and values,
//! through SQL.

mod common;

use common::store_with_run;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float32Type, Float64Type, Int64Type};
use steplake_core::DType;
use steplake_query::QueryEngine;
use steplake_store::TensorPart;

fn part(sequence: u64, name: &str, step: i64, dtype: DType, data: Vec<u8>) -> TensorPart {
    TensorPart {
        writer_id: "w".into(),
        sequence,
        run_id: "r".into(),
        name: name.into(),
        step,
        wall_time_us: 1_700_000_000_000_000,
        dtype,
        shape: vec![(data.len() / dtype.size()) as u64],
        total_len: data.len() as u64,
        offset: 0,
        stats_only: false,
        stats: None,
        data,
    }
}

fn f32s(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[tokio::test]
async fn tensors_are_queryable_before_and_after_a_flush() {
    let (_dir, store) = store_with_run().await;
    store
        .write_tensor(part(1, "w0", 0, DType::F32, f32s(&[3.0, 4.0])))
        .await
        .expect("tensor");
    store
        .write_tensor(part(
            2,
            "w0",
            1,
            DType::F64,
            [1.0f64, f64::NAN]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ))
        .await
        .expect("tensor");
    store
        .write_tensor(part(
            3,
            "ids",
            0,
            DType::I16,
            [-5i16, 7].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ))
        .await
        .expect("tensor");
    let engine = QueryEngine::new(store.clone()).expect("engine");
    let query =
        "SELECT name, step, dtype, numel, mean, l2, nan_count, tensor, tensor_f64, tensor_int \
                 FROM tensors ORDER BY name, step";
    for phase in ["buffered", "flushed"] {
        let (schema, batches) = engine.sql_collect(query).await.expect("query");
        let batch = arrow::compute::concat_batches(&schema, &batches).expect("concat");
        assert_eq!(batch.num_rows(), 3, "{phase}");
        let names = batch.column(0).as_string::<i32>();
        assert_eq!(
            (names.value(0), names.value(1), names.value(2)),
            ("ids", "w0", "w0")
        );
        let l2 = batch.column(5).as_primitive::<Float64Type>();
        assert_eq!(l2.value(1), 5.0, "{phase}: l2 of [3, 4]");
        let nan_count = batch.column(6).as_primitive::<Int64Type>();
        assert_eq!(nan_count.value(2), 1, "{phase}");
        let values = batch.column(7).as_list::<i32>();
        assert_eq!(
            values
                .value(1)
                .as_primitive::<Float32Type>()
                .values()
                .to_vec(),
            vec![3.0, 4.0]
        );
        assert!(values.is_null(0) && values.is_null(2));
        let ints = batch.column(9).as_list::<i32>();
        assert_eq!(
            ints.value(0).as_primitive::<Int64Type>().values().to_vec(),
            vec![-5, 7]
        );
        let doubles = batch.column(8).as_list::<i32>();
        assert!(doubles
            .value(2)
            .as_primitive::<Float64Type>()
            .value(1)
            .is_nan());
        store.flush().expect("flush");
    }
}

#[tokio::test]
async fn signaling_nan_bits_survive_sql() {
    let (_dir, store) = store_with_run().await;
    store
        .write_tensor(part(1, "h", 0, DType::F16, vec![0x40, 0x7C, 0x00, 0x3C]))
        .await
        .expect("tensor");
    let engine = QueryEngine::new(store.clone()).expect("engine");
    for query in [
        "SELECT tensor FROM tensors",
        "SELECT name, tensor FROM tensors ORDER BY name",
    ] {
        let (_, batches) = engine.sql_collect(query).await.expect("query");
        let column = batches[0]
            .column(batches[0].num_columns() - 1)
            .as_list::<i32>();
        let bits: Vec<u32> = column
            .value(0)
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(bits, vec![0x7F88_0000, 0x3F80_0000], "{query}");
    }
}

#[tokio::test]
async fn a_step_written_again_shows_its_latest_write() {
    let (_dir, store) = store_with_run().await;
    let engine = QueryEngine::new(store.clone()).expect("engine");
    let latest = || async {
        let (schema, batches) = engine
            .sql_collect("SELECT step, l2 FROM tensors WHERE name = 'w' ORDER BY step")
            .await
            .expect("query");
        let batch = arrow::compute::concat_batches(&schema, &batches).expect("concat");
        let steps = batch.column(0).as_primitive::<Int64Type>();
        let l2 = batch.column(1).as_primitive::<Float64Type>();
        (0..batch.num_rows())
            .map(|i| (steps.value(i), l2.value(i)))
            .collect::<Vec<_>>()
    };
    store
        .write_tensor(part(1, "w", 5, DType::F32, f32s(&[3.0, 4.0])))
        .await
        .expect("write");
    store
        .write_tensor(part(2, "w", 6, DType::F32, f32s(&[1.0])))
        .await
        .expect("write");
    store.flush().expect("flush");
    // Step 5 again (a resumed run), twice in the buffer; step 6 again after it.
    store
        .write_tensor(part(3, "w", 5, DType::F32, f32s(&[6.0, 8.0])))
        .await
        .expect("write");
    store
        .write_tensor(part(4, "w", 5, DType::F32, f32s(&[0.0, 2.0])))
        .await
        .expect("write");
    assert_eq!(latest().await, vec![(5, 2.0), (6, 1.0)], "file + buffer");
    store.flush().expect("flush");
    assert_eq!(latest().await, vec![(5, 2.0), (6, 1.0)], "two files");
}
