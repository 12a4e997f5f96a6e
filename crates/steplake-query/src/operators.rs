//! What steplake's own physical operators ([`crate::run_merge`],
//! [`crate::key_split`], [`crate::streaming_window`],
//! [`crate::sliding_sums`]) share: their one
//! input, comparing partition keys across batches, and a stream of batches
//! made from a state that computes the next one.

use std::cmp::Ordering;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{make_comparator, ArrayRef};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::PhysicalSortExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};

/// The one input of an operator `name` that takes one, from `children`.
pub(crate) fn only_child(
    name: &str,
    mut children: Vec<Arc<dyn ExecutionPlan>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    if children.len() != 1 {
        return Err(DataFusionError::Internal(format!(
            "{name} takes one input, got {}",
            children.len()
        )));
    }
    Ok(children.swap_remove(0))
}

/// Whether row `left_row` of the `left` key columns equals row `right_row`
/// of the `right` ones (NULL equals NULL, as grouping treats it).
fn same_key(
    left: &[ArrayRef],
    left_row: usize,
    right: &[ArrayRef],
    right_row: usize,
) -> Result<bool> {
    for (l, r) in left.iter().zip(right) {
        if make_comparator(l, r, Default::default())?(left_row, right_row) != Ordering::Equal {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The values of the sort `keys` (partition keys) over `batch`'s rows.
pub(crate) fn key_columns(keys: &[PhysicalSortExpr], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    keys.iter()
        .map(|key| key.expr.evaluate(batch)?.into_array(batch.num_rows()))
        .collect()
}

/// The runs of equal keys of `keys`, whose rows are sorted (each key's
/// rows contiguous), in order. Each run's end is found by galloping from
/// its first row and then bisecting: O(log n) comparisons a run, not one a
/// row, since a series runs for thousands of rows.
fn key_runs(keys: &[ArrayRef]) -> Result<Vec<Range<usize>>> {
    let rows = keys.first().map_or(0, |k| k.len());
    let comparators = keys
        .iter()
        .map(|k| make_comparator(k, k, Default::default()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let same = |a: usize, b: usize| comparators.iter().all(|c| c(a, b) == Ordering::Equal);
    let mut runs = Vec::new();
    let mut start = 0;
    while start < rows {
        // Rows through `within` have the start's key; `beyond` does not (or
        // is the end).
        let (mut within, mut stride) = (start, 1);
        while within + stride < rows && same(start, within + stride) {
            within += stride;
            stride *= 2;
        }
        let mut beyond = (within + stride).min(rows);
        while within + 1 < beyond {
            let middle = within + (beyond - within) / 2;
            if same(start, middle) {
                within = middle;
            } else {
                beyond = middle;
            }
        }
        runs.push(start..beyond);
        start = beyond;
    }
    Ok(runs)
}

/// Follows a partition key along a stream of batches sorted by it.
#[derive(Default)]
pub(crate) struct KeyRuns {
    /// The key of the last row of the batch before (no columns when the
    /// stream has no key); None before the first batch.
    last: Option<Vec<ArrayRef>>,
}

impl KeyRuns {
    /// The runs of one key among the next batch's `rows` rows, whose key
    /// columns are `keys` (with none, the batch is one run), each with
    /// whether it continues the key the batch before ended with.
    pub(crate) fn next(
        &mut self,
        keys: &[ArrayRef],
        rows: usize,
    ) -> Result<Vec<(Range<usize>, bool)>> {
        if rows == 0 {
            return Ok(Vec::new());
        }
        let runs = if keys.is_empty() {
            std::iter::once(0..rows).collect()
        } else {
            key_runs(keys)?
        };
        let first_continues = match &self.last {
            Some(last) => keys.is_empty() || same_key(last, 0, keys, 0)?,
            None => false,
        };
        self.last = Some(key_of_row(keys, rows - 1));
        Ok(runs
            .into_iter()
            .enumerate()
            .map(|(i, run)| (run, i == 0 && first_continues))
            .collect())
    }
}

/// The one-row key columns of row `row` of `keys`.
fn key_of_row(keys: &[ArrayRef], row: usize) -> Vec<ArrayRef> {
    keys.iter().map(|k| k.slice(row, 1)).collect()
}

/// A state that computes an operator's output one batch at a time.
pub(crate) trait NextBatch: Send + 'static {
    /// The next batch; None at the end.
    fn next_batch(&mut self) -> impl Future<Output = Result<Option<RecordBatch>>> + Send;
}

/// The batches `state` computes, as a stream of `schema`.
pub(crate) fn batch_stream(schema: SchemaRef, state: impl NextBatch) -> SendableRecordBatchStream {
    let batches = futures::stream::try_unfold(state, |mut state| async move {
        let batch = state.next_batch().await?;
        Ok(batch.map(|batch| (batch, state)))
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
}

/// A small deterministic random source for tests: `next(n)` is in `0..n`.
#[cfg(test)]
pub(crate) fn test_random(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    #[test]
    fn key_runs_are_the_runs_of_equal_keys() {
        let mut next = test_random(3);
        for rows in [0usize, 1, 2, 5, 64, 1000] {
            let mut names: Vec<String> = (0..rows).map(|_| format!("n{}", next(4))).collect();
            let mut parts: Vec<i64> = (0..rows).map(|_| next(3) as i64).collect();
            let mut pairs: Vec<(i64, String)> = parts.drain(..).zip(names.drain(..)).collect();
            pairs.sort();
            let keys: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(pairs.iter().map(|p| p.0))),
                Arc::new(StringArray::from_iter_values(
                    pairs.iter().map(|p| p.1.clone()),
                )),
            ];
            let want = arrow::compute::partition(&keys)
                .expect("partition")
                .ranges();
            assert_eq!(key_runs(&keys).expect("runs"), want, "{rows} rows");
        }
    }
}
