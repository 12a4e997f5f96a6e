//! Flight SQL as JDBC, ADBC and DBeaver use it, against the real binary:
//! every metadata command answers with the exact column names, types and
//! nullability of `FlightSql.proto` (written out here from the spec, not
//! taken from arrow-rs), and prepared statements carry their schemas and
//! bound parameters.

use std::sync::Arc;

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, UnionMode};
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetTables, CommandGetXdbcTypeInfo, SqlInfo,
};
use arrow_flight::FlightInfo;
use futures::TryStreamExt;
use tonic::transport::Channel;

use crate::e2e_test;
use crate::harness::{steplake, TestServer};

type Client = FlightSqlServiceClient<Channel>;

async fn client(url: &str) -> Client {
    let channel = Channel::from_shared(url.to_string())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    FlightSqlServiceClient::new(channel)
}

/// Runs the one endpoint of `info` and returns its batches.
async fn fetch(client: &mut Client, info: &FlightInfo) -> Vec<RecordBatch> {
    assert_eq!(info.endpoint.len(), 1, "one endpoint");
    let endpoint = &info.endpoint[0];
    assert!(
        endpoint.location.is_empty(),
        "the endpoint means this same connection"
    );
    let ticket = endpoint.ticket.clone().expect("ticket");
    client
        .do_get(ticket)
        .await
        .expect("do_get")
        .try_collect()
        .await
        .expect("batches")
}

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

/// Checks the schema announced by GetFlightInfo and the schema of the data
/// DoGet sends, column by column, against the spec's.
async fn check_command(
    client: &mut Client,
    command: &str,
    info: FlightInfo,
    spec: &[Field],
) -> Vec<RecordBatch> {
    let announced = info
        .clone()
        .try_decode_schema()
        .expect("schema in FlightInfo");
    let batches = fetch(client, &info).await;
    for (origin, schema) in std::iter::once(("GetFlightInfo", announced)).chain(
        batches
            .iter()
            .map(|b| ("DoGet", b.schema().as_ref().clone())),
    ) {
        assert_eq!(
            schema.fields().len(),
            spec.len(),
            "{command} ({origin}): column count of {schema:?}"
        );
        for (field, expected) in schema.fields().iter().zip(spec) {
            assert_eq!(
                field.name(),
                expected.name(),
                "{command} ({origin}): column name"
            );
            assert_eq!(
                field.data_type(),
                expected.data_type(),
                "{command} ({origin}): type of {}",
                field.name()
            );
            assert_eq!(
                field.is_nullable(),
                expected.is_nullable(),
                "{command} ({origin}): nullability of {}",
                field.name()
            );
        }
    }
    batches
}

fn foreign_key_spec() -> Vec<Field> {
    vec![
        utf8("pk_catalog_name", true),
        utf8("pk_db_schema_name", true),
        utf8("pk_table_name", false),
        utf8("pk_column_name", false),
        utf8("fk_catalog_name", true),
        utf8("fk_db_schema_name", true),
        utf8("fk_table_name", false),
        utf8("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        utf8("fk_key_name", true),
        utf8("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let array = b
                .column_by_name(column)
                .unwrap_or_else(|| panic!("no column {column}"))
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("Utf8")
                .clone();
            (0..array.len())
                .map(|i| array.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn server_with_data(dir: &std::path::Path) -> TestServer {
    let server = TestServer::start(dir, &[]);
    let csv = "name,step,value\nloss,0,2.5\nloss,1,1.5\nloss,2,0.5\nacc,2,0.75\n";
    let out = steplake(
        &["write", "--server", &server.url, "--run", "meta", "-"],
        Some(csv),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server
}

e2e_test! {
    async fn every_metadata_command_has_the_spec_schema() {
        let dir = tempfile::tempdir().unwrap();
        let server = server_with_data(dir.path()).await;
        let mut client = client(&server.url).await;
        // Handshake without credentials is accepted.
        client.handshake("", "").await.expect("handshake");

        let info = client.get_catalogs().await.expect("GetCatalogs");
        let batches = check_command(&mut client, "GetCatalogs", info, &[utf8("catalog_name", false)]).await;
        assert_eq!(strings(&batches, "catalog_name"), ["steplake"]);

        let info = client
            .get_db_schemas(CommandGetDbSchemas { catalog: None, db_schema_filter_pattern: None })
            .await
            .expect("GetDbSchemas");
        let batches = check_command(
            &mut client,
            "GetDbSchemas",
            info,
            &[utf8("catalog_name", true), utf8("db_schema_name", false)],
        )
        .await;
        let schemas = strings(&batches, "db_schema_name");
        assert!(schemas.contains(&"public".to_string()), "{schemas:?}");

        let tables_spec = [
            utf8("catalog_name", true),
            utf8("db_schema_name", true),
            utf8("table_name", false),
            utf8("table_type", false),
        ];
        let info = client
            .get_tables(CommandGetTables {
                catalog: None,
                db_schema_filter_pattern: Some("public".into()),
                table_name_filter_pattern: None,
                table_types: vec![],
                include_schema: false,
            })
            .await
            .expect("GetTables");
        let batches = check_command(&mut client, "GetTables", info, &tables_spec).await;
        assert_eq!(
            strings(&batches, "table_name"),
            ["conditions", "events", "runs", "scalars", "tensors"]
        );
        assert_eq!(strings(&batches, "table_type"), ["TABLE"; 5]);

        let mut with_schema = tables_spec.to_vec();
        with_schema.push(Field::new("table_schema", DataType::Binary, false));
        let info = client
            .get_tables(CommandGetTables {
                catalog: Some("steplake".into()),
                db_schema_filter_pattern: Some("public".into()),
                table_name_filter_pattern: Some("scal%".into()),
                table_types: vec!["TABLE".into()],
                include_schema: true,
            })
            .await
            .expect("GetTables with schemas");
        let batches = check_command(&mut client, "GetTables (include_schema)", info, &with_schema).await;
        assert_eq!(strings(&batches, "table_name"), ["scalars"]);
        let encoded = batches[0]
            .column_by_name("table_schema")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::BinaryArray>()
            .expect("binary")
            .value(0)
            .to_vec();
        let table_schema = arrow::ipc::convert::try_schema_from_ipc_buffer(&encoded)
            .expect("the table schema is an IPC schema");
        let columns: Vec<(String, DataType)> = table_schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        assert_eq!(columns[0], ("run_id".to_string(), DataType::Utf8));
        assert_eq!(columns[1], ("name".to_string(), DataType::Utf8));
        assert_eq!(columns[2], ("step".to_string(), DataType::Int64));
        assert_eq!(columns[3], ("value".to_string(), DataType::Float64));

        let info = client.get_table_types().await.expect("GetTableTypes");
        let batches = check_command(&mut client, "GetTableTypes", info, &[utf8("table_type", false)]).await;
        assert_eq!(strings(&batches, "table_type"), ["TABLE"]);

        let info = client
            .get_sql_info(vec![SqlInfo::FlightSqlServerName, SqlInfo::FlightSqlServerReadOnly])
            .await
            .expect("GetSqlInfo");
        // The spec leaves the nullability of the union's scalar members
        // unsaid; the reference implementations declare them not null.
        let info_value = DataType::Union(
            [
                (0, Arc::new(utf8("string_value", false))),
                (1, Arc::new(Field::new("bool_value", DataType::Boolean, false))),
                (2, Arc::new(Field::new("bigint_value", DataType::Int64, false))),
                (3, Arc::new(Field::new("int32_bitmask", DataType::Int32, false))),
                (
                    4,
                    Arc::new(Field::new(
                        "string_list",
                        DataType::List(Arc::new(utf8("item", true))),
                        true,
                    )),
                ),
                (
                    5,
                    Arc::new(Field::new(
                        "int32_to_int32_list_map",
                        DataType::Map(
                            Arc::new(Field::new(
                                "entries",
                                DataType::Struct(
                                    vec![
                                        Field::new("keys", DataType::Int32, false),
                                        Field::new(
                                            "values",
                                            DataType::List(Arc::new(Field::new(
                                                "item",
                                                DataType::Int32,
                                                true,
                                            ))),
                                            true,
                                        ),
                                    ]
                                    .into(),
                                ),
                                false,
                            )),
                            false,
                        ),
                        true,
                    )),
                ),
            ]
            .into_iter()
            .collect(),
            UnionMode::Dense,
        );
        let batches = check_command(
            &mut client,
            "GetSqlInfo",
            info,
            &[
                Field::new("info_name", DataType::UInt32, false),
                Field::new("value", info_value, false),
            ],
        )
        .await;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 2, "one row per requested info");

        let info = client
            .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
            .await
            .expect("GetXdbcTypeInfo");
        let int32 = |name: &str, nullable: bool| Field::new(name, DataType::Int32, nullable);
        let boolean = |name: &str, nullable: bool| Field::new(name, DataType::Boolean, nullable);
        let batches = check_command(
            &mut client,
            "GetXdbcTypeInfo",
            info,
            &[
                utf8("type_name", false),
                int32("data_type", false),
                int32("column_size", true),
                utf8("literal_prefix", true),
                utf8("literal_suffix", true),
                Field::new(
                    "create_params",
                    DataType::List(Arc::new(utf8("item", false))),
                    true,
                ),
                int32("nullable", false),
                boolean("case_sensitive", false),
                int32("searchable", false),
                boolean("unsigned_attribute", true),
                boolean("fixed_prec_scale", false),
                boolean("auto_increment", true),
                utf8("local_type_name", true),
                int32("minimum_scale", true),
                int32("maximum_scale", true),
                int32("sql_data_type", false),
                int32("datetime_subcode", true),
                int32("num_prec_radix", true),
                int32("interval_precision", true),
            ],
        )
        .await;
        let type_names = strings(&batches, "type_name");
        for name in ["BIGINT", "DOUBLE", "VARCHAR", "TIMESTAMP"] {
            assert!(type_names.contains(&name.to_string()), "{type_names:?}");
        }

        let info = client
            .get_primary_keys(CommandGetPrimaryKeys {
                catalog: None,
                db_schema: None,
                table: "scalars".into(),
            })
            .await
            .expect("GetPrimaryKeys");
        check_command(
            &mut client,
            "GetPrimaryKeys",
            info,
            &[
                utf8("catalog_name", true),
                utf8("db_schema_name", true),
                utf8("table_name", false),
                utf8("column_name", false),
                utf8("key_name", true),
                Field::new("key_sequence", DataType::Int32, false),
            ],
        )
        .await;

        let info = client
            .get_exported_keys(CommandGetExportedKeys { catalog: None, db_schema: None, table: "runs".into() })
            .await
            .expect("GetExportedKeys");
        check_command(&mut client, "GetExportedKeys", info, &foreign_key_spec()).await;
        let info = client
            .get_imported_keys(CommandGetImportedKeys { catalog: None, db_schema: None, table: "scalars".into() })
            .await
            .expect("GetImportedKeys");
        check_command(&mut client, "GetImportedKeys", info, &foreign_key_spec()).await;
        let info = client
            .get_cross_reference(CommandGetCrossReference {
                pk_catalog: None,
                pk_db_schema: None,
                pk_table: "runs".into(),
                fk_catalog: None,
                fk_db_schema: None,
                fk_table: "scalars".into(),
            })
            .await
            .expect("GetCrossReference");
        check_command(&mut client, "GetCrossReference", info, &foreign_key_spec()).await;
    }
}

e2e_test! {
    async fn prepared_statements_carry_schemas_and_bound_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let server = server_with_data(dir.path()).await;
        let mut client = client(&server.url).await;

        let mut statement = client
            .prepare(
                "SELECT name, step, value FROM scalars WHERE name = $1 AND step >= $2 ORDER BY step".into(),
                None,
            )
            .await
            .expect("prepare");
        let dataset: Vec<(String, DataType)> = statement
            .dataset_schema()
            .unwrap()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        assert_eq!(
            dataset,
            [
                ("name".to_string(), DataType::Utf8),
                ("step".to_string(), DataType::Int64),
                ("value".to_string(), DataType::Float64),
            ],
            "the dataset schema is filled in, strings as Utf8"
        );
        let parameters: Vec<String> = statement
            .parameter_schema()
            .unwrap()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(parameters, ["$1", "$2"]);

        let row = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("$1", DataType::Utf8, true),
                Field::new("$2", DataType::Int64, true),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["loss"])),
                Arc::new(Int64Array::from(vec![1])),
            ],
        )
        .unwrap();
        statement.set_parameters(row).unwrap();
        let info = statement.execute().await.expect("execute with parameters");
        let batches = fetch(&mut client, &info).await;
        let steps: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column_by_name("step")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(steps, [1, 2]);
        statement.close().await.expect("close");

        // Writes are refused when preparing, with the reason.
        let error = client
            .prepare("DELETE FROM scalars".into(), None)
            .await
            .expect_err("read-only");
        assert!(error.to_string().contains("read-only"), "{error}");
    }
}
