//! The merge step of compaction: several `scalars` files, each sorted by
//! (run, name, step), become one sorted file that keeps of each
//! (run, name, step) only its latest write.
//!
//! Every data file is written sorted, so merging needs no sort of the rows:
//!
//! 1. cut each input into its series, the stretches of rows of one
//!    (run, name), checking on the way that the input really is sorted;
//! 2. visit the series of all inputs in (run, name) order;
//! 3. of one series, its stretches usually cover disjoint step ranges (a
//!    later flush holds later steps): they are laid end to end in step
//!    order, row for row. Only where stretches overlap are their steps
//!    merged, keeping of a repeated step the row of the latest input;
//! 4. the chosen rows are gathered ([`interleave_record_batch`]) into
//!    output batches of [`OUTPUT_BATCH_ROWS`].
//!
//! So the cost is one pass over the rows plus a comparison per series, not
//! a sort of strings. An input that is not sorted (which no steplake
//! writer produces, but a file is outside data) falls back to sorting all
//! rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array, UInt64Array};
use arrow::compute::{
    concat_batches, interleave_record_batch, lexsort_to_indices, take_record_batch, SortColumn,
};
use arrow::datatypes::{DataType, Int64Type};
use arrow::error::ArrowError;
use steplake_core::schema::{scalars_col, scalars_schema};

/// Rows per output batch (and so per write to the Parquet writer).
pub(crate) const OUTPUT_BATCH_ROWS: usize = 64 * 1024;

/// `inputs`, oldest first, merged into batches sorted by (run, name, step)
/// that keep of each (run, name, step) the row of the latest input.
pub(crate) fn merge_latest_writes(inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>, ArrowError> {
    let mut stretches: Vec<Vec<Stretch<'_>>> = Vec::with_capacity(inputs.len());
    for input in inputs {
        match series_stretches(input)? {
            Some(found) => stretches.push(found),
            None => return sort_all(inputs),
        }
    }
    // Series of all inputs in (run, name) order; each holds its stretches
    // in input order (oldest first).
    let mut series: BTreeMap<(&str, &str), Vec<(usize, &Stretch<'_>)>> = BTreeMap::new();
    for (input, found) in stretches.iter().enumerate() {
        for stretch in found {
            series
                .entry((stretch.run, stretch.name))
                .or_default()
                .push((input, stretch));
        }
    }
    let steps: Vec<&[i64]> = inputs
        .iter()
        .map(|b| {
            b.column(scalars_col::STEP)
                .as_primitive::<Int64Type>()
                .values()
                .as_ref()
        })
        .collect();
    let mut rows: Vec<(usize, usize)> = Vec::new();
    for parts in series.values_mut() {
        choose_rows(parts, &steps, &mut rows);
    }
    let sources: Vec<&RecordBatch> = inputs.iter().collect();
    rows.chunks(OUTPUT_BATCH_ROWS)
        .map(|chunk| interleave_record_batch(&sources, chunk))
        .collect()
}

/// The rows of one (run, name) in one input: `start..start + len`, steps
/// rising from `first_step` to `last_step`.
struct Stretch<'a> {
    run: &'a str,
    name: &'a str,
    start: usize,
    len: usize,
    first_step: i64,
    last_step: i64,
}

/// The series stretches of `batch` in row order, or `None` when its rows are
/// not sorted by (run, name, step) with each step once per series.
fn series_stretches(batch: &RecordBatch) -> Result<Option<Vec<Stretch<'_>>>, ArrowError> {
    let (Some(runs), Some(names), Some(steps)) = (
        batch.column(scalars_col::RUN_ID).as_string_opt::<i32>(),
        batch.column(scalars_col::NAME).as_string_opt::<i32>(),
        batch
            .column(scalars_col::STEP)
            .as_primitive_opt::<Int64Type>(),
    ) else {
        return Err(ArrowError::SchemaError(format!(
            "a scalars file has columns {:?}, not (Utf8, Utf8, Int64, ..)",
            batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect::<Vec<DataType>>()
        )));
    };
    if runs.null_count() + names.null_count() + steps.null_count() > 0 {
        return Ok(None);
    }
    let steps = steps.values();
    let mut found: Vec<Stretch<'_>> = Vec::new();
    for row in 0..batch.num_rows() {
        let (run, name, step) = (runs.value(row), names.value(row), steps[row]);
        match found.last_mut() {
            Some(s) if s.run == run && s.name == name => {
                if step <= s.last_step {
                    return Ok(None);
                }
                s.last_step = step;
                s.len += 1;
            }
            last => {
                if last.is_some_and(|s| (s.run, s.name) > (run, name)) {
                    return Ok(None);
                }
                found.push(Stretch {
                    run,
                    name,
                    start: row,
                    len: 1,
                    first_step: step,
                    last_step: step,
                });
            }
        }
    }
    Ok(Some(found))
}

/// Appends to `rows` the (input, row) of each surviving point of one series,
/// in step order, given its stretches in input order.
fn choose_rows(
    parts: &mut [(usize, &Stretch<'_>)],
    steps: &[&[i64]],
    rows: &mut Vec<(usize, usize)>,
) {
    // Stable: of stretches starting at one step, the older stays first.
    parts.sort_by_key(|(_, s)| s.first_step);
    let disjoint = parts
        .windows(2)
        .all(|pair| pair[0].1.last_step < pair[1].1.first_step);
    if disjoint {
        for (input, s) in parts.iter() {
            rows.extend((s.start..s.start + s.len).map(|row| (*input, row)));
        }
        return;
    }
    let mut points: Vec<(i64, usize, usize)> = parts
        .iter()
        .flat_map(|(input, s)| {
            (s.start..s.start + s.len).map(move |row| (steps[*input][row], *input, row))
        })
        .collect();
    points.sort_unstable();
    for (i, &(step, input, row)) in points.iter().enumerate() {
        // Of a repeated step, the last sorted comes from the latest input.
        if points.get(i + 1).is_none_or(|next| next.0 != step) {
            rows.push((input, row));
        }
    }
}

/// The slow path for inputs that are not sorted: all rows sorted by (run,
/// name, step, input, row), then the last row of each (run, name, step)
/// kept.
fn sort_all(inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>, ArrowError> {
    let all = concat_batches(&scalars_schema(), inputs)?;
    let versions: Vec<ArrayRef> = inputs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let first = (i as u64) << 32;
            Arc::new(UInt64Array::from_iter_values(
                (0..b.num_rows() as u64).map(|row| first | row),
            )) as ArrayRef
        })
        .collect();
    let version = arrow::compute::concat(&versions.iter().map(|v| v.as_ref()).collect::<Vec<_>>())?;
    let key = |column: usize| SortColumn {
        values: all.column(column).clone(),
        options: None,
    };
    let order = lexsort_to_indices(
        &[
            key(scalars_col::RUN_ID),
            key(scalars_col::NAME),
            key(scalars_col::STEP),
            SortColumn {
                values: version,
                options: None,
            },
        ],
        None,
    )?;
    let sorted = take_record_batch(&all, &order)?;
    let (runs, names, steps) = (
        sorted.column(scalars_col::RUN_ID).as_string::<i32>(),
        sorted.column(scalars_col::NAME).as_string::<i32>(),
        sorted.column(scalars_col::STEP).as_primitive::<Int64Type>(),
    );
    let same = |a: usize, b: usize| {
        runs.value(a) == runs.value(b)
            && names.value(a) == names.value(b)
            && steps.value(a) == steps.value(b)
    };
    let keep: Vec<u32> = (0..sorted.num_rows())
        .filter(|&i| i + 1 == sorted.num_rows() || !same(i, i + 1))
        .map(|i| i as u32)
        .collect();
    let kept = take_record_batch(&sorted, &UInt32Array::from(keep))?;
    Ok((0..kept.num_rows())
        .step_by(OUTPUT_BATCH_ROWS)
        .map(|offset| kept.slice(offset, OUTPUT_BATCH_ROWS.min(kept.num_rows() - offset)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};

    /// A scalars batch of (run, name, step, value) rows, in the given order.
    fn batch(rows: &[(&str, &str, i64, f64)]) -> RecordBatch {
        RecordBatch::try_new(
            scalars_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(arrow::array::Int64Array::from_iter_values(
                    rows.iter().map(|r| r.2),
                )),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.2))
                        .with_timezone("UTC"),
                ),
            ],
        )
        .expect("batch")
    }

    fn rows(batches: &[RecordBatch]) -> Vec<(String, String, i64, f64)> {
        let mut out = Vec::new();
        for b in batches {
            let (runs, names) = (
                b.column(0).as_string::<i32>(),
                b.column(1).as_string::<i32>(),
            );
            let steps = b.column(2).as_primitive::<Int64Type>();
            let values = b.column(3).as_primitive::<arrow::datatypes::Float64Type>();
            for i in 0..b.num_rows() {
                out.push((
                    runs.value(i).to_string(),
                    names.value(i).to_string(),
                    steps.value(i),
                    values.value(i),
                ));
            }
        }
        out
    }

    fn owned(rows: &[(&str, &str, i64, f64)]) -> Vec<(String, String, i64, f64)> {
        rows.iter()
            .map(|r| (r.0.to_string(), r.1.to_string(), r.2, r.3))
            .collect()
    }

    #[test]
    fn lays_disjoint_stretches_end_to_end_in_series_order() {
        let older = batch(&[
            ("a", "loss", 0, 1.0),
            ("a", "loss", 1, 2.0),
            ("b", "x", 5, 3.0),
        ]);
        let newer = batch(&[
            ("a", "acc", 0, 4.0),
            ("a", "loss", 2, 5.0),
            ("a", "loss", 3, 6.0),
        ]);
        let merged = merge_latest_writes(&[older, newer]).expect("merge");
        assert_eq!(
            rows(&merged),
            owned(&[
                ("a", "acc", 0, 4.0),
                ("a", "loss", 0, 1.0),
                ("a", "loss", 1, 2.0),
                ("a", "loss", 2, 5.0),
                ("a", "loss", 3, 6.0),
                ("b", "x", 5, 3.0),
            ])
        );
    }

    #[test]
    fn keeps_the_latest_write_where_stretches_overlap() {
        let first = batch(&[
            ("a", "loss", 0, 1.0),
            ("a", "loss", 2, 2.0),
            ("a", "loss", 4, 3.0),
        ]);
        let second = batch(&[("a", "loss", 1, 10.0), ("a", "loss", 2, 20.0)]);
        let third = batch(&[("a", "loss", 2, 200.0), ("a", "loss", 5, 50.0)]);
        // A stretch older than a later one but starting at the same step.
        let fourth = batch(&[("a", "loss", 0, 0.5)]);
        let merged = merge_latest_writes(&[first, second, third, fourth]).expect("merge");
        assert_eq!(
            rows(&merged),
            owned(&[
                ("a", "loss", 0, 0.5),
                ("a", "loss", 1, 10.0),
                ("a", "loss", 2, 200.0),
                ("a", "loss", 4, 3.0),
                ("a", "loss", 5, 50.0),
            ])
        );
    }

    #[test]
    fn sorts_inputs_that_are_not_sorted() {
        let unsorted = batch(&[("b", "x", 1, 1.0), ("a", "x", 3, 2.0), ("a", "x", 1, 3.0)]);
        let repeated = batch(&[("a", "x", 1, 4.0), ("a", "x", 1, 5.0)]);
        let merged = merge_latest_writes(&[unsorted, repeated]).expect("merge");
        assert_eq!(
            rows(&merged),
            owned(&[("a", "x", 1, 5.0), ("a", "x", 3, 2.0), ("b", "x", 1, 1.0)])
        );
    }

    #[test]
    fn cuts_the_output_into_batches() {
        let many: Vec<(&str, &str, i64, f64)> = (0..OUTPUT_BATCH_ROWS as i64 + 10)
            .map(|step| ("a", "x", step, step as f64))
            .collect();
        let merged = merge_latest_writes(&[batch(&many)]).expect("merge");
        assert_eq!(
            merged.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            vec![OUTPUT_BATCH_ROWS, 10]
        );
    }
}
