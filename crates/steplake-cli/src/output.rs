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
                let empty = nested_as_text(&RecordBatch::new_empty(schema.clone()))
                    .map_err(|e| failed(&e))?;
                writer.write(&empty).map_err(|e| failed(&e))?;
            }
            for b in batches {
                let flat = nested_as_text(b).map_err(|e| failed(&e))?;
                writer.write(&flat).map_err(|e| failed(&e))?;
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

/// `batch` with its list, struct and map columns written out as text, as
/// DuckDB writes them to CSV: `[1, 2]`, `{step: 10, gain: 0.5}`. CSV has no
/// nested values, and the result of `changepoints` or `SELECT * FROM runs`
/// must still print.
fn nested_as_text(batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    use arrow::array::{Array, ArrayRef, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    use std::sync::Arc;

    let nested = |t: &DataType| t.is_nested();
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| nested(f.data_type()))
    {
        return Ok(batch.clone());
    }
    let options = FormatOptions::default().with_null("");
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !nested(field.data_type()) {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
        let text: StringArray = (0..column.len())
            .map(|row| {
                column
                    .is_valid(row)
                    .then(|| formatter.value(row).to_string())
            })
            .collect();
        fields.push(Field::new(field.name(), DataType::Utf8, true));
        columns.push(Arc::new(text));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, ListArray};
    use arrow::datatypes::Int64Type;
    use std::sync::Arc;

    #[test]
    fn lists_print_as_text_in_csv() {
        let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
        ]);
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(vec![7, 8])) as ArrayRef),
            ("steps", Arc::new(list) as ArrayRef),
        ])
        .unwrap();
        let flat = nested_as_text(&batch).unwrap();
        let mut out = Vec::new();
        arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out)
            .write(&flat)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "id,steps\n7,\"[1, 2]\"\n8,\n"
        );
    }
}
