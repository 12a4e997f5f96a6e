//! Reading query results column by column, whatever Arrow type the SQL
//! produced (each column is cast to the type asked for).

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};

use serde_json::Value;
use steplake_core::json::float_value;

use crate::error::ApiError;

fn column_as(
    batches: &[RecordBatch],
    name: &str,
    to: &DataType,
) -> Result<Vec<arrow::array::ArrayRef>, ApiError> {
    batches
        .iter()
        .map(|batch| {
            let column = batch.column_by_name(name).ok_or_else(|| {
                ApiError::BadRequest(format!("the result has no column {name:?}"))
            })?;
            cast(column, to).map_err(|e| ApiError::BadRequest(format!("column {name:?}: {e}")))
        })
        .collect()
}

/// Column `name` as JSON numbers: NULL as `null`, NaN and ±Infinity as the
/// strings `"NaN"`, `"Infinity"`, `"-Infinity"` (see `steplake_core::json`).
pub(crate) fn float_values(batches: &[RecordBatch], name: &str) -> Result<Vec<Value>, ApiError> {
    Ok(column_as(batches, name, &DataType::Float64)?
        .iter()
        .flat_map(|a| a.as_primitive::<Float64Type>().iter().collect::<Vec<_>>())
        .map(|v| v.map_or(Value::Null, float_value))
        .collect())
}

/// Column `name` as f64.
pub(crate) fn f64s(batches: &[RecordBatch], name: &str) -> Result<Vec<Option<f64>>, ApiError> {
    Ok(column_as(batches, name, &DataType::Float64)?
        .iter()
        .flat_map(|a| a.as_primitive::<Float64Type>().iter().collect::<Vec<_>>())
        .collect())
}

/// Column `name` as i64.
pub(crate) fn i64s(batches: &[RecordBatch], name: &str) -> Result<Vec<Option<i64>>, ApiError> {
    Ok(column_as(batches, name, &DataType::Int64)?
        .iter()
        .flat_map(|a| a.as_primitive::<Int64Type>().iter().collect::<Vec<_>>())
        .collect())
}

/// Column `name` as strings.
pub(crate) fn strings(
    batches: &[RecordBatch],
    name: &str,
) -> Result<Vec<Option<String>>, ApiError> {
    Ok(column_as(batches, name, &DataType::Utf8)?
        .iter()
        .flat_map(|a| {
            a.as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect())
}

/// Column `name`, a list of integers per row, as `Vec<i64>` per row.
pub(crate) fn int_lists(batches: &[RecordBatch], name: &str) -> Result<Vec<Vec<i64>>, ApiError> {
    let mut rows = Vec::new();
    for batch in batches {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| ApiError::BadRequest(format!("the result has no column {name:?}")))?;
        let lists = column
            .as_list_opt::<i32>()
            .ok_or_else(|| ApiError::BadRequest(format!("column {name:?} is not a list")))?;
        for i in 0..lists.len() {
            if lists.is_null(i) {
                rows.push(Vec::new());
                continue;
            }
            let values = cast(&lists.value(i), &DataType::Int64)
                .map_err(|e| ApiError::BadRequest(format!("column {name:?}: {e}")))?;
            rows.push(
                values
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|v| v.unwrap_or(0))
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// The number of rows.
pub(crate) fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}
