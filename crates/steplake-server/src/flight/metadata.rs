//! Flight SQL metadata: catalogs, schemas, tables, table types, SQL info,
//! type info and keys, each as the one record batch the Flight SQL spec
//! describes (column names, types and nullability exactly as in
//! `FlightSql.proto`).
//!
//! steplake has one catalog, `steplake`, with one schema, `public` (tables
//! `runs`, `scalars`, `tensors`). It has no
//! primary or foreign keys, so the key commands answer with an empty batch of
//! the spec's schema.

use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Command, Nullable, Searchable, SqlInfo, SqlSupportedTransaction, XdbcDataType,
    XdbcDatetimeSubcode,
};
use steplake_query::{QueryEngine, CATALOG};
use tonic::Status;

use super::wire_schema;
use crate::status::query_status;

/// The table types steplake lists, in the order GetTableTypes returns them.
const TABLE_TYPES: [&str; 1] = ["TABLE"];

/// The answer to a metadata command; `Unimplemented` when `command` is not one.
pub async fn metadata_batch(engine: &QueryEngine, command: Command) -> Result<RecordBatch, Status> {
    let batch = match command {
        Command::CommandGetCatalogs(query) => {
            let mut builder = query.into_builder();
            builder.append(CATALOG);
            builder.build()
        }
        Command::CommandGetDbSchemas(query) => {
            let tables = engine.tables().await.map_err(query_status)?;
            let mut builder = query.into_builder();
            let mut seen = std::collections::BTreeSet::new();
            for table in &tables {
                if seen.insert((&table.catalog, &table.schema)) {
                    builder.append(&table.catalog, &table.schema);
                }
            }
            builder.build()
        }
        Command::CommandGetTables(query) => {
            let tables = engine.tables().await.map_err(query_status)?;
            let mut builder = query.into_builder();
            for table in &tables {
                let columns = wire_schema(&table.columns);
                builder
                    .append(
                        &table.catalog,
                        &table.schema,
                        &table.name,
                        table.kind,
                        &columns,
                    )
                    .map_err(internal)?;
            }
            builder.build()
        }
        Command::CommandGetTableTypes(query) => {
            let mut builder = query.into_builder();
            for table_type in TABLE_TYPES {
                builder.append(table_type);
            }
            builder.build()
        }
        Command::CommandGetSqlInfo(query) => query.into_builder(&SQL_INFO).build(),
        Command::CommandGetXdbcTypeInfo(query) => query.into_builder(&XDBC_TYPES).build(),
        Command::CommandGetPrimaryKeys(_) => Ok(RecordBatch::new_empty(primary_keys_schema())),
        Command::CommandGetExportedKeys(_)
        | Command::CommandGetImportedKeys(_)
        | Command::CommandGetCrossReference(_) => Ok(RecordBatch::new_empty(foreign_keys_schema())),
        other => {
            return Err(Status::unimplemented(format!(
                "{} is not supported",
                other.type_url()
            )))
        }
    };
    batch.map_err(internal)
}

fn internal(error: impl std::fmt::Display) -> Status {
    Status::internal(format!("cannot build the metadata answer: {error}"))
}

/// GetPrimaryKeys' schema (FlightSql.proto, `CommandGetPrimaryKeys`).
fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// The schema of GetExportedKeys, GetImportedKeys and GetCrossReference.
fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// What GetSqlInfo reports: who we are and that SQL here is read-only.
static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut builder = SqlInfoDataBuilder::new();
    builder.append(SqlInfo::FlightSqlServerName, "steplake");
    builder.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    // The Arrow columnar format version (Schema.fbs), not the arrow-rs version.
    builder.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    builder.append(SqlInfo::FlightSqlServerReadOnly, true);
    builder.append(SqlInfo::FlightSqlServerSql, true);
    builder.append(SqlInfo::FlightSqlServerSubstrait, false);
    builder.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    builder.append(SqlInfo::FlightSqlServerCancel, false);
    builder.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    builder.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    builder.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    builder.append(SqlInfo::SqlDdlCatalog, false);
    builder.append(SqlInfo::SqlDdlSchema, false);
    builder.append(SqlInfo::SqlDdlTable, false);
    builder.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    builder.append(SqlInfo::SqlTransactionsSupported, false);
    builder
        .build()
        .expect("the fixed SQL info of steplake is well-formed")
});

/// One XDBC type row for a type steplake's tables use.
fn xdbc_type(
    type_name: &str,
    data_type: XdbcDataType,
    column_size: Option<i32>,
    num_prec_radix: Option<i32>,
) -> XdbcTypeInfo {
    let numeric = num_prec_radix.is_some();
    let datetime = data_type == XdbcDataType::XdbcTimestamp;
    XdbcTypeInfo {
        type_name: type_name.into(),
        data_type,
        column_size,
        literal_prefix: (!numeric).then(|| "'".into()),
        literal_suffix: (!numeric).then(|| "'".into()),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: data_type == XdbcDataType::XdbcVarchar,
        searchable: Searchable::Full,
        unsigned_attribute: numeric.then_some(false),
        fixed_prec_scale: false,
        auto_increment: numeric.then_some(false),
        local_type_name: Some(type_name.into()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: if datetime {
            XdbcDataType::XdbcDatetime
        } else {
            data_type
        },
        datetime_subcode: datetime.then_some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
        num_prec_radix,
        interval_precision: None,
    }
}

/// The SQL types that appear in steplake's tables.
static XDBC_TYPES: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    let mut builder = XdbcTypeInfoDataBuilder::new();
    builder.append(xdbc_type(
        "BIGINT",
        XdbcDataType::XdbcBigint,
        Some(64),
        Some(2),
    ));
    builder.append(xdbc_type(
        "INTEGER",
        XdbcDataType::XdbcInteger,
        Some(32),
        Some(2),
    ));
    builder.append(xdbc_type("REAL", XdbcDataType::XdbcReal, Some(24), Some(2)));
    builder.append(xdbc_type(
        "DOUBLE",
        XdbcDataType::XdbcDouble,
        Some(53),
        Some(2),
    ));
    builder.append(xdbc_type("BOOLEAN", XdbcDataType::XdbcBit, Some(1), None));
    builder.append(xdbc_type("VARCHAR", XdbcDataType::XdbcVarchar, None, None));
    builder.append(xdbc_type(
        "TIMESTAMP",
        XdbcDataType::XdbcTimestamp,
        None,
        None,
    ));
    builder
        .build()
        .expect("the fixed type info of steplake is well-formed")
});
