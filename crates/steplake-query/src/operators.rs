//! What steplake's own physical operators ([`crate::run_merge`],
//! [`crate::key_split`], [`crate::streaming_window`],
//! [`crate::sliding_sums`]) share: their one
//! input, comparing partition keys across batches, and a stream of batches
//! made from a state that computes the next one.

use std::cmp::Ordering;
use std::future::Future;
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
pub(crate) fn same_key(
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

/// The one-row key columns of row `row` of `keys`.
pub(crate) fn key_of_row(keys: &[ArrayRef], row: usize) -> Vec<ArrayRef> {
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
