//! `scalars` reads its names as string views, for speed; clients still get
//! plain `Utf8` strings, in the schema they are told and in the batches
//! they receive, from files and from the buffer alike.

use arrow::datatypes::DataType;
use steplake_core::ScalarBatch;
use steplake_query::QueryEngine;

mod common;

fn points(first: i64) -> ScalarBatch {
    ScalarBatch {
        names: vec!["loss".into(), "grad_norm".into()],
        name_index: vec![0, 1, 0, 1],
        steps: vec![first, first, first + 1, first + 1],
        values: vec![1.0, 2.0, 3.0, 4.0],
        wall_times_us: vec![1_000; 4],
    }
}

#[tokio::test]
async fn names_leave_the_engine_as_utf8_from_files_and_buffer() {
    let (_dir, store) = common::store_with_run().await;
    store
        .write_scalars("w", 1, "r", points(0))
        .await
        .expect("write");
    store.flush().expect("flush");
    // These stay in the buffer.
    store
        .write_scalars("w", 2, "r", points(10))
        .await
        .expect("write");
    let engine = QueryEngine::new(store.clone()).expect("engine");
    for sql in [
        "SELECT run_id, name, step FROM scalars ORDER BY name, step",
        "SELECT name, count(*) AS n FROM scalars GROUP BY name ORDER BY name",
        "SELECT upper(name) AS shout, name || '!' AS said FROM scalars",
        "SELECT * FROM scalars WHERE name = 'loss'",
    ] {
        let told = engine.schema_of(sql).await.expect("schema");
        let (schema, batches) = engine.sql_collect(sql).await.expect("query");
        assert_eq!(told, schema, "{sql}");
        for field in schema.fields() {
            assert!(
                !matches!(field.data_type(), DataType::Utf8View | DataType::BinaryView),
                "{sql}: column {} is {}",
                field.name(),
                field.data_type()
            );
        }
        assert!(!batches.is_empty(), "{sql}");
        for batch in &batches {
            assert_eq!(batch.schema(), schema, "{sql}");
        }
    }
    let (_, batches) = engine
        .sql_collect("SELECT name, count(*) FROM scalars GROUP BY name ORDER BY name")
        .await
        .expect("query");
    let names = arrow::util::pretty::pretty_format_batches(&batches)
        .expect("print")
        .to_string();
    assert!(names.contains("| grad_norm | 4 "), "{names}");
    assert!(names.contains("| loss      | 4 "), "{names}");
    // What the catalog tells clients about the table's columns.
    let tables = engine.tables().await.expect("tables");
    let scalars = tables
        .iter()
        .find(|t| t.name == "scalars")
        .expect("scalars");
    assert_eq!(
        scalars
            .columns
            .field_with_name("name")
            .expect("name")
            .data_type(),
        &DataType::Utf8
    );
}
