//! The sqllogictest runner of `sql/slt/`, over any [`QueryEngine`]: one
//! process over a store (this crate's `slt` test), or a Ballista cluster
//! (steplake-cluster's standalone test and the end-to-end cluster test,
//! which include this file by path). The same files pass on each, so each
//! answers as the spec says.
//!
//! Values print as: NULL; integers as is; floats rounded to 9 decimals, with
//! NaN, inf and -inf spelled out; booleans true/false; everything else as
//! Arrow displays it.

use std::future::Future;
use std::path::PathBuf;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};
use steplake_query::{QueryEngine, QueryError};

/// An engine the runner sends statements to, with whatever must live as
/// long as it (a temporary data directory, a cluster).
pub(crate) struct SltDb {
    engine: QueryEngine,
    _keep: Box<dyn std::any::Any + Send>,
}

impl SltDb {
    /// Statements go to `engine`; `keep` is dropped with it.
    pub(crate) fn new(engine: QueryEngine, keep: impl std::any::Any + Send) -> SltDb {
        SltDb {
            engine,
            _keep: Box::new(keep),
        }
    }

    /// The engine statements go to.
    #[allow(dead_code)] // not every includer asks
    pub(crate) fn engine(&self) -> &QueryEngine {
        &self.engine
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
impl AsyncDB for SltDb {
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

/// The spec files, sorted; only those whose name contains `STEPLAKE_SLT`
/// when it is set (to rerun one file).
pub(crate) fn slt_files() -> Vec<PathBuf> {
    let only = std::env::var("STEPLAKE_SLT").ok();
    // Cargo sets CARGO_MANIFEST_DIR when it runs the target, so the path
    // stays right when one target directory serves checkouts at several
    // paths (the compile-time value is only the fallback). Every crate
    // that includes this file is at crates/NAME.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let dir = PathBuf::from(manifest_dir).join("../../sql/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("sql/slt exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| {
            only.as_ref()
                .is_none_or(|o| p.to_string_lossy().contains(o.as_str()))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

/// Runs every spec file, each on a fresh engine from `make`, and prints one
/// line per file and the `N passed, N failed` summary; returns the failures
/// (file and what differed). `labels` name the engine for the files'
/// `skipif` / `onlyif` lines (`cluster` for a Ballista cluster, which skips
/// what it refuses and checks the refusal instead).
pub(crate) async fn run_all<F, Fut>(make: F, labels: &[&str]) -> Vec<String>
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<SltDb, QueryError>> + Send + 'static,
{
    let files = slt_files();
    let mut failures = Vec::new();
    for file in &files {
        let make = make.clone();
        let mut runner = Runner::new(make);
        for label in labels {
            runner.add_label(label);
        }
        match runner.run_file_async(file).await {
            Ok(()) => println!("test {} ... ok", file.display()),
            Err(e) => {
                println!("test {} ... FAILED\n{e}", file.display());
                failures.push(format!("{}: {e}", file.display()));
            }
        }
    }
    println!(
        "\n{} passed, {} failed",
        files.len() - failures.len(),
        failures.len()
    );
    failures
}
