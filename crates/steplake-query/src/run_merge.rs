//! Partitions that are each sorted, merged into one sorted stream a run of
//! rows at a time: [`RunMergeExec`].
//!
//! DataFusion's `SortPreservingMergeExec` converts every row to its row
//! format and compares it with the other inputs' heads. steplake's sorted
//! inputs are pieces of Parquet files sorted by (run_id, name, step), and a
//! series' rows in two files almost never interleave: one file holds its
//! first 80,000 steps, the next the 10,000 after. So here the input whose
//! head row is smallest gives up, as one slice, every row up to the next
//! smallest head (found by a galloping search in its batch):
//!
//! ```text
//! input 0: [s000 0..8191][s000 8192..16383] ... [s001 0..] ...
//! input 1: [s000 80000..89999][s001 80000..] ...
//! output:  s000 0..8191 | s000 8192..16383 | ... | s000 80000..89999 | s001 0..
//! ```
//!
//! A merge then costs a few comparisons per run instead of several per row.
//! Inputs whose rows do interleave are merged just as correctly, in
//! shorter runs. Each input is read ahead on its own task, so the pieces
//! are decoded in parallel while the merge runs. Under a window over every
//! series the merged stream is dealt to several outputs a key at a time
//! ([`KeySplit`]) instead of being hash-repartitioned.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use arrow::array::{make_comparator, ArrayRef, DynComparator};
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, LexOrdering, PhysicalExpr};
use datafusion::physical_plan::common::spawn_buffered;
use datafusion::physical_plan::execution_plan::apply_expression_roots;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;

use crate::key_split::KeySplit;
use crate::operators::{batch_stream, only_child, NextBatch};

/// Merges every partition of its input, each sorted by `ordering`, into one
/// stream sorted by `ordering`: one partition, or several that each hold
/// every row of some keys ([`KeySplit`]).
#[derive(Debug)]
pub(crate) struct RunMergeExec {
    input: Arc<dyn ExecutionPlan>,
    ordering: LexOrdering,
    split: Option<KeySplit>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl RunMergeExec {
    /// A merge of `input`'s partitions into one; each must be sorted by
    /// `ordering`.
    pub(crate) fn new(input: Arc<dyn ExecutionPlan>, ordering: LexOrdering) -> Self {
        Self::with_split(input, ordering, None)
    }

    /// A merge dealt to `outputs` partitions a run of equal `keys` at a
    /// time; `keys` must be the leading expressions of `ordering`.
    pub(crate) fn split_by_keys(
        input: Arc<dyn ExecutionPlan>,
        ordering: LexOrdering,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        outputs: usize,
    ) -> Self {
        Self::with_split(input, ordering, Some(KeySplit::new(keys, outputs)))
    }

    fn with_split(
        input: Arc<dyn ExecutionPlan>,
        ordering: LexOrdering,
        split: Option<KeySplit>,
    ) -> Self {
        // Only the merged order is claimed: other orders each partition
        // may have do not survive the merge.
        let equivalence =
            EquivalenceProperties::new_with_orderings(input.schema(), [ordering.clone()]);
        // Split outputs hold whole keys, but not by any hash or range
        // DataFusion knows: nothing above may rely on more.
        let outputs = split.as_ref().map_or(1, KeySplit::outputs);
        let properties = PlanProperties::new(
            equivalence,
            Partitioning::UnknownPartitioning(outputs),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        RunMergeExec {
            input,
            ordering,
            split,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The whole merged stream.
    fn merged(&self, context: &Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let inputs = (0..self.input.output_partitioning().partition_count())
            .map(|i| {
                Ok(Input {
                    stream: spawn_buffered(self.input.execute(i, Arc::clone(context))?, 2),
                    head: None,
                    done: false,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let schema = self.schema();
        let merger = Merger {
            inputs,
            ordering: self.ordering.clone(),
            batch_size: context.session_config().batch_size().max(1),
            schema: Arc::clone(&schema),
            pending: Vec::new(),
            pending_rows: 0,
            metrics: BaselineMetrics::new(&self.metrics, 0),
        };
        Ok(batch_stream(schema, merger))
    }
}

impl DisplayAs for RunMergeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "RunMergeExec: [{}]", self.ordering)?;
        if let Some(split) = &self.split {
            let keys: Vec<String> = split.keys().iter().map(|k| k.to_string()).collect();
            write!(f, ", dealt by [{}] to {}", keys.join(", "), split.outputs())?;
        }
        Ok(())
    }
}

impl ExecutionPlan for RunMergeExec {
    fn name(&self) -> &'static str {
        "RunMergeExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let keys = self.split.iter().flat_map(|split| split.keys());
        apply_expression_roots(self.ordering.iter().map(|sort| &sort.expr).chain(keys), f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = only_child(self.name(), children)?;
        let split = self
            .split
            .as_ref()
            .map(|split| KeySplit::new(split.keys().to_vec(), split.outputs()));
        Ok(Arc::new(RunMergeExec::with_split(
            input,
            self.ordering.clone(),
            split,
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        match &self.split {
            None if partition == 0 => self.merged(&context),
            None => Err(DataFusionError::Internal(format!(
                "RunMergeExec has one partition, asked for {partition}"
            ))),
            Some(split) => {
                let batch_size = context.session_config().batch_size();
                split.output(partition, self.schema(), batch_size, || {
                    self.merged(&context)
                })
            }
        }
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// One sorted input: its stream and the batch being taken from.
struct Input {
    stream: SendableRecordBatchStream,
    head: Option<Head>,
    done: bool,
}

/// A batch with rows left, its sort keys, and the first row not yet taken.
struct Head {
    batch: RecordBatch,
    keys: Vec<ArrayRef>,
    offset: usize,
}

struct Merger {
    inputs: Vec<Input>,
    ordering: LexOrdering,
    batch_size: usize,
    schema: SchemaRef,
    /// Slices taken but not yet sent, fewer than `batch_size` rows in all.
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    metrics: BaselineMetrics,
}

impl NextBatch for Merger {
    /// The next merged batch; None when every input is done.
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let batch = self.merge_until_batch().await?;
        if let Some(batch) = &batch {
            self.metrics.record_output(batch.num_rows());
        }
        Ok(batch)
    }
}

impl Merger {
    async fn merge_until_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            self.refill().await?;
            let elapsed = self.metrics.elapsed_compute().clone();
            let _timer = elapsed.timer();
            let Some((winner, runner)) = self.two_smallest()? else {
                return self.flush();
            };
            let end = self.run_end(winner, runner)?;
            let input = &mut self.inputs[winner];
            let Some(head) = input.head.as_mut() else {
                return Err(DataFusionError::Internal("merge input without rows".into()));
            };
            let run = head.batch.slice(head.offset, end - head.offset);
            head.offset = end;
            if end == head.batch.num_rows() {
                input.head = None;
            }
            if let Some(batch) = self.take(run)? {
                return Ok(Some(batch));
            }
        }
    }

    /// Gives every input that is not done a batch with rows left.
    async fn refill(&mut self) -> Result<()> {
        for input in &mut self.inputs {
            while input.head.is_none() && !input.done {
                match input.stream.next().await {
                    Some(batch) => {
                        let batch = batch?;
                        if batch.num_rows() == 0 {
                            continue;
                        }
                        let keys = self
                            .ordering
                            .iter()
                            .map(|sort| sort.expr.evaluate(&batch)?.into_array(batch.num_rows()))
                            .collect::<Result<Vec<_>>>()?;
                        input.head = Some(Head {
                            batch,
                            keys,
                            offset: 0,
                        });
                    }
                    None => input.done = true,
                }
            }
        }
        Ok(())
    }

    /// The input with the smallest head row and the one with the next
    /// smallest (None when it is the only one left); None when all are done.
    fn two_smallest(&self) -> Result<Option<(usize, Option<usize>)>> {
        let mut best: Option<usize> = None;
        let mut second: Option<usize> = None;
        for (i, input) in self.inputs.iter().enumerate() {
            let Some(head) = &input.head else { continue };
            match best {
                None => best = Some(i),
                Some(b) if self.compare_heads(head, b)? == Ordering::Less => {
                    second = best;
                    best = Some(i);
                }
                Some(_) => match second {
                    Some(s) if self.compare_heads(head, s)? != Ordering::Less => {}
                    _ => second = Some(i),
                },
            }
        }
        Ok(best.map(|b| (b, second)))
    }

    fn compare_heads(&self, head: &Head, other: usize) -> Result<Ordering> {
        let Some(other) = &self.inputs[other].head else {
            return Err(DataFusionError::Internal("merge input without rows".into()));
        };
        let comparators = self.comparators(head, other)?;
        Ok(compare(&comparators, head.offset, other.offset))
    }

    /// Where the winner's run ends in its batch: after its last row that
    /// sorts no later than the runner-up's head row.
    fn run_end(&self, winner: usize, runner: Option<usize>) -> Result<usize> {
        let Some(head) = &self.inputs[winner].head else {
            return Err(DataFusionError::Internal("merge input without rows".into()));
        };
        let rows = head.batch.num_rows();
        let Some(other) = runner.and_then(|r| self.inputs[r].head.as_ref()) else {
            return Ok(rows);
        };
        let comparators = self.comparators(head, other)?;
        let in_run = |row: usize| compare(&comparators, row, other.offset) != Ordering::Greater;
        // Gallop from the head (which is in the run), then bisect.
        let (mut inside, mut step) = (head.offset, 1);
        let mut outside = loop {
            let probe = inside + step;
            if probe >= rows {
                break rows;
            }
            if !in_run(probe) {
                break probe;
            }
            inside = probe;
            step *= 2;
        };
        while inside + 1 < outside {
            let middle = inside + (outside - inside) / 2;
            if in_run(middle) {
                inside = middle;
            } else {
                outside = middle;
            }
        }
        Ok(outside)
    }

    /// Comparators of `left`'s sort keys against `right`'s.
    fn comparators(&self, left: &Head, right: &Head) -> Result<Vec<DynComparator>> {
        self.ordering
            .iter()
            .zip(left.keys.iter().zip(&right.keys))
            .map(|(sort, (l, r))| Ok(make_comparator(l, r, sort.options)?))
            .collect()
    }

    /// Holds `run` until a batch's worth is pending, then sends them as one.
    fn take(&mut self, run: RecordBatch) -> Result<Option<RecordBatch>> {
        if self.pending.is_empty() && run.num_rows() >= self.batch_size {
            return Ok(Some(run));
        }
        self.pending_rows += run.num_rows();
        self.pending.push(run);
        if self.pending_rows >= self.batch_size {
            return self.flush();
        }
        Ok(None)
    }

    /// The pending slices as one batch (None when there are none).
    fn flush(&mut self) -> Result<Option<RecordBatch>> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let batch = concat_batches(&self.schema, &self.pending)?;
        self.pending.clear();
        self.pending_rows = 0;
        Ok(Some(batch))
    }
}

/// `left_row` of the left keys against `right_row` of the right ones.
fn compare(comparators: &[DynComparator], left_row: usize, right_row: usize) -> Ordering {
    comparators
        .iter()
        .map(|c| c(left_row, right_row))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array, StringViewArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::physical_expr::expressions::col;
    use datafusion::physical_expr::PhysicalSortExpr;
    use datafusion::physical_plan::collect_partitioned;
    use datafusion::prelude::SessionContext;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8View, false),
            Field::new("step", DataType::Int64, false),
            Field::new("source", DataType::Int64, false),
        ]))
    }

    /// Sorted (name, step) rows of input `source`, cut into batches of
    /// `batch` rows.
    fn partition(rows: &mut [(String, i64)], source: i64, batch: usize) -> Vec<RecordBatch> {
        rows.sort();
        rows.chunks(batch.max(1))
            .map(|chunk| {
                let names: StringViewArray = chunk.iter().map(|r| Some(r.0.as_str())).collect();
                let steps: Int64Array = chunk.iter().map(|r| r.1).collect();
                let sources = Int64Array::from(vec![source; chunk.len()]);
                RecordBatch::try_new(
                    schema(),
                    vec![Arc::new(names), Arc::new(steps), Arc::new(sources)],
                )
                .expect("batch")
            })
            .collect()
    }

    /// The merge of `partitions` into one, or dealt by name to `split`
    /// outputs: the rows of each output.
    async fn merge(
        partitions: Vec<Vec<RecordBatch>>,
        batch_size: usize,
        split: usize,
    ) -> Vec<Vec<(String, i64)>> {
        let schema = schema();
        let name = col("name", &schema).expect("name");
        let ordering = LexOrdering::new(vec![
            PhysicalSortExpr::new_default(Arc::clone(&name)),
            PhysicalSortExpr::new_default(col("step", &schema).expect("step")),
        ])
        .expect("ordering");
        let input = MemorySourceConfig::try_new_exec(&partitions, schema, None).expect("input");
        let merge = Arc::new(if split > 1 {
            RunMergeExec::split_by_keys(input, ordering, vec![name], split)
        } else {
            RunMergeExec::new(input, ordering)
        });
        let config = datafusion::prelude::SessionConfig::new().with_batch_size(batch_size);
        let ctx = SessionContext::new_with_config(config);
        let outputs = collect_partitioned(merge, ctx.task_ctx())
            .await
            .expect("merge");
        outputs
            .into_iter()
            .map(|batches| {
                let mut out = Vec::new();
                for batch in batches {
                    assert!(batch.num_rows() > 0);
                    let names = batch.column(0).as_string_view();
                    let steps = batch.column(1).as_primitive::<Int64Type>();
                    for i in 0..batch.num_rows() {
                        out.push((names.value(i).to_string(), steps.value(i)));
                    }
                }
                out
            })
            .collect()
    }

    #[tokio::test]
    async fn merges_step_ranges_interleaved_rows_and_ties_in_order_into_one_or_several_outputs() {
        let mut next = crate::operators::test_random(7);
        for case in 0..40 {
            let inputs = 1 + next(5) as usize;
            let mut all = Vec::new();
            let mut partitions = Vec::new();
            for source in 0..inputs {
                let rows = next(300) as usize;
                let mut part: Vec<(String, i64)> = (0..rows)
                    .map(|_| {
                        let name = format!("s{:02}", next(6));
                        // Even cases: disjoint step ranges per input, as
                        // the store's files; odd ones: anything, ties too.
                        let step = if case % 2 == 0 {
                            source as i64 * 1000 + next(1000) as i64
                        } else {
                            next(50) as i64
                        };
                        (name, step)
                    })
                    .collect();
                all.extend(part.iter().cloned());
                partitions.push(partition(&mut part, source as i64, 1 + next(64) as usize));
            }
            all.sort();
            let split = 1 + next(3) as usize;
            let outputs = merge(partitions, 1 + next(100) as usize, split).await;
            assert_eq!(outputs.len(), split);
            // Each output sorted, each name in one output only, all rows.
            let mut owner = std::collections::BTreeMap::new();
            for (i, rows) in outputs.iter().enumerate() {
                assert!(rows.is_sorted(), "case {case}: output {i} out of order");
                for (name, _) in rows {
                    assert_eq!(
                        *owner.entry(name.clone()).or_insert(i),
                        i,
                        "case {case}: {name}"
                    );
                }
            }
            let mut merged: Vec<_> = outputs.into_iter().flatten().collect();
            if split == 1 {
                assert_eq!(merged, all, "case {case}");
            }
            merged.sort();
            assert_eq!(merged, all, "case {case}");
        }
    }
}

#[cfg(test)]
mod dropped_outputs {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::physical_expr::expressions::col;
    use datafusion::physical_expr::PhysicalSortExpr;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn reading_one_output_only_neither_blocks_nor_leaks_the_dealer() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        // 200 keys of 50 rows, in batches of 50: far more than the
        // dealer queues for an output nobody reads.
        let batches: Vec<RecordBatch> = (0..200)
            .map(|k| {
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(Int64Array::from(vec![k; 50]))],
                )
                .expect("batch")
            })
            .collect();
        let key = col("k", &schema).expect("k");
        let ordering =
            LexOrdering::new(vec![PhysicalSortExpr::new_default(Arc::clone(&key))]).expect("order");
        let input = MemorySourceConfig::try_new_exec(&[batches], schema, None).expect("input");
        let merge = RunMergeExec::split_by_keys(input, ordering, vec![key], 2);
        let config = datafusion::prelude::SessionConfig::new().with_batch_size(10);
        let ctx = SessionContext::new_with_config(config);
        let first = merge.execute(0, ctx.task_ctx()).expect("output 0");
        let second = merge.execute(1, ctx.task_ctx()).expect("output 1");
        // Output 1 is never read: output 0 still gets all its keys.
        let rows: usize = first
            .map(|b| b.expect("batch").num_rows())
            .fold(0, |a, n| async move { a + n })
            .await;
        assert_eq!(rows, 100 * 50);
        drop(second);
    }
}
