//! Runs every sqllogictest file in `sql/slt/` against a steplake query
//! engine (over an empty store: the files bring their data as VALUES).
//!
//! Values print as: NULL; integers as is; floats rounded to 9 decimals, with
//! NaN, inf and -inf spelled out; booleans true/false; everything else as
//! Arrow displays it.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};
use steplake_query::{QueryEngine, QueryError};
use steplake_store::{Store, StoreOptions};

struct Steplake {
    engine: QueryEngine,
    _dir: tempfile::TempDir,
}

impl Steplake {
    fn new() -> Result<Self, QueryError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), StoreOptions::default()).expect("open store");
        Ok(Steplake {
            engine: QueryEngine::new(Arc::new(store))?,
            _dir: dir,
        })
    }
}

fn float_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        let rounded = (v * 1e9).round() / 1e9;
        format!("{}", if rounded == 0.0 { 0.0 } else { rounded })
    }
}

fn column_type(data_type: &DataType) -> DefaultColumnType {
    match data_type {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            DefaultColumnType::Integer
        }
        DataType::Float32 | DataType::Float64 => DefaultColumnType::FloatingPoint,
        _ => DefaultColumnType::Text,
    }
}

#[async_trait::async_trait]
impl AsyncDB for Steplake {
    type Error = QueryError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, QueryError> {
        let (schema, batches) = self.engine.sql_collect(sql).await?;
        let types = schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in &batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()
                .expect("every column can be displayed");
            for row in 0..batch.num_rows() {
                rows.push(
                    batch
                        .columns()
                        .iter()
                        .zip(&formatters)
                        .map(|(column, formatter)| match column.data_type() {
                            DataType::Float64 if column.is_valid(row) => {
                                float_text(column.as_primitive::<Float64Type>().value(row))
                            }
                            _ => formatter.value(row).to_string(),
                        })
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "steplake"
    }
}

fn main() {
    let dir = PathBuf::from(manifest_dir()).join("../../sql/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("sql/slt exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut failed = 0;
    for file in &files {
        let mut runner = Runner::new(|| async { Steplake::new() });
        match runtime.block_on(runner.run_file_async(file)) {
            Ok(()) => println!("test {} ... ok", file.display()),
            Err(e) => {
                failed += 1;
                println!("test {} ... FAILED\n{e}", file.display());
            }
        }
    }
    println!("\n{} passed, {failed} failed", files.len() - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

/// This package's directory. Cargo sets it when it runs the target, so it
/// stays right when one target directory serves checkouts at several paths
/// (the compile-time value is only the fallback).
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())
}
