//! What steplake's own physical operators ([`crate::run_merge`],
//! [`crate::streaming_window`]) share: their one input, and a stream of
//! batches made from a state that computes the next one.

use std::future::Future;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
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
