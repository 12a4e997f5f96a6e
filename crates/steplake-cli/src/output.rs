//! Printing query results as a table, CSV or JSON.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::CliError;

/// Output formats of `steplake sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    Table,
    Csv,
    Json,
}

/// Writes `batches` to stdout in `format`.
pub(crate) fn print(
    format: OutputFormat,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<(), CliError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let failed =
        |e: &dyn std::fmt::Display| CliError::Failure(format!("cannot print the result: {e}"));
    match format {
        OutputFormat::Table => {
            let table = if batches.is_empty() {
                arrow::util::pretty::pretty_format_batches(&[RecordBatch::new_empty(
                    schema.clone(),
                )])
            } else {
                arrow::util::pretty::pretty_format_batches(batches)
            }
            .map_err(|e| failed(&e))?;
            writeln!(out, "{table}").map_err(|e| failed(&e))?;
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            if batches.is_empty() {
                writer
                    .write(&RecordBatch::new_empty(schema.clone()))
                    .map_err(|e| failed(&e))?;
            }
            for b in batches {
                writer.write(b).map_err(|e| failed(&e))?;
            }
        }
        OutputFormat::Json => {
            // NaN and ±Infinity as "NaN", "Infinity", "-Infinity" (null is NULL).
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            let bytes = steplake_core::json::batches_to_json(&refs).map_err(|e| failed(&e))?;
            if bytes.is_empty() {
                write!(out, "[]").map_err(|e| failed(&e))?;
            }
            out.write_all(&bytes).map_err(|e| failed(&e))?;
            writeln!(out).map_err(|e| failed(&e))?;
        }
    }
    Ok(())
}
