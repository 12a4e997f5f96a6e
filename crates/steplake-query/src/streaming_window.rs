//! Window functions evaluated one completed partition at a time:
//! [`StreamPartitionedWindows`] and [`StreamingWindowExec`].
//!
//! DataFusion runs a window function that needs its whole partition
//! (`ema`, `is_spike`, every function of [`crate::functions::series`]) in
//! `WindowAggExec`, which first collects its entire input: for a window
//! over every series that is every row of the table held at once, and most
//! of such a query's time went to the kernel handing out fresh pages for it.
//! But the input arrives sorted by the `PARTITION BY` keys, so a partition
//! is complete as soon as a row with another key arrives. This operator
//! keeps only the rows of partitions not yet complete, evaluates the window
//! functions over each completed run of partitions exactly as
//! `WindowAggExec` would (the same expressions, one partition per call),
//! and sends the result on:
//!
//! ```text
//! input:   [a a a a][a a b b][b b b c]...
//! held:     a a a a  a a           (b is not complete until c arrives)
//! output:           [a a a a a a][b b b b b]...
//! ```
//!
//! Memory is bounded by the largest partition (one series) instead of the
//! table. Windows with no `PARTITION BY` stay in `WindowAggExec`.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use arrow::array::{make_comparator, ArrayRef};
use arrow::compute::{concat, concat_batches, partition};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::apply_expression_roots;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::windows::{WindowAggExec, WindowExpr};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;

use crate::operators::{batch_stream, key_columns, key_of_row, only_child, same_key, NextBatch};

/// The physical optimizer rule: every `WindowAggExec` whose input is
/// sorted by all its `PARTITION BY` keys becomes a [`StreamingWindowExec`].
#[derive(Debug, Default)]
pub(crate) struct StreamPartitionedWindows;

impl PhysicalOptimizerRule for StreamPartitionedWindows {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(window) = node.downcast_ref::<WindowAggExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some(first) = window.window_expr().first() else {
                return Ok(Transformed::no(node));
            };
            let keys = window.partition_by_sort_keys()?;
            let sorted_by_keys = !keys.is_empty()
                && keys.len() == first.partition_by().len()
                && window
                    .input()
                    .equivalence_properties()
                    .ordering_satisfy(keys.iter().cloned())?;
            if !sorted_by_keys {
                return Ok(Transformed::no(node));
            }
            let streaming = StreamingWindowExec {
                window_expr: window.window_expr().to_vec(),
                input: Arc::clone(window.input()),
                keys,
                properties: Arc::clone(window.properties()),
                required: window.required_input_ordering(),
                metrics: ExecutionPlanMetricsSet::new(),
            };
            Ok(Transformed::yes(
                Arc::new(streaming) as Arc<dyn ExecutionPlan>
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "steplake_stream_partitioned_windows"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `WindowAggExec`'s work, one completed partition at a time (see the
/// module docs). Its input is sorted by `keys`, the `PARTITION BY` keys.
#[derive(Debug)]
pub(crate) struct StreamingWindowExec {
    window_expr: Vec<Arc<dyn WindowExpr>>,
    input: Arc<dyn ExecutionPlan>,
    keys: Vec<PhysicalSortExpr>,
    /// The replaced `WindowAggExec`'s: same output schema, order and
    /// partitioning.
    properties: Arc<PlanProperties>,
    required: Vec<Option<datafusion::physical_expr::OrderingRequirements>>,
    metrics: ExecutionPlanMetricsSet,
}

impl DisplayAs for StreamingWindowExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = self.window_expr.iter().map(|e| e.name()).collect();
        write!(f, "StreamingWindowExec: wdw=[{}]", names.join(", "))
    }
}

impl ExecutionPlan for StreamingWindowExec {
    fn name(&self) -> &'static str {
        "StreamingWindowExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn required_input_ordering(
        &self,
    ) -> Vec<Option<datafusion::physical_expr::OrderingRequirements>> {
        self.required.clone()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let roots = self.window_expr.iter().flat_map(|expr| {
            expr.expressions()
                .into_iter()
                .chain(expr.partition_by().to_vec())
        });
        apply_expression_roots(roots, f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = only_child(self.name(), children)?;
        // Rebuilt through WindowAggExec so that the output's properties
        // follow the new input, then streamed again if it is still sorted.
        let window = WindowAggExec::try_new(self.window_expr.clone(), input, true)?;
        StreamPartitionedWindows.optimize(Arc::new(window), &ConfigOptions::default())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = self.schema();
        let windows = Windows {
            input,
            input_schema: self.input.schema(),
            schema: Arc::clone(&schema),
            window_expr: self.window_expr.clone(),
            keys: self.keys.clone(),
            held: Vec::new(),
            held_last_key: None,
            metrics: BaselineMetrics::new(&self.metrics, partition),
        };
        Ok(batch_stream(schema, windows))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

struct Windows {
    input: SendableRecordBatchStream,
    input_schema: SchemaRef,
    schema: SchemaRef,
    window_expr: Vec<Arc<dyn WindowExpr>>,
    keys: Vec<PhysicalSortExpr>,
    /// Rows of partitions that may not be complete, in input order.
    held: Vec<RecordBatch>,
    /// The partition key of the last row held (one-row columns).
    held_last_key: Option<Vec<ArrayRef>>,
    metrics: BaselineMetrics,
}

impl NextBatch for Windows {
    /// The window results of the next completed partitions; None at the
    /// end of the input.
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        while let Some(batch) = self.input.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let elapsed = self.metrics.elapsed_compute().clone();
            let _timer = elapsed.timer();
            let keys = key_columns(&self.keys, &batch)?;
            // Rows before the batch's last partition complete every
            // partition held; so does a new key at the batch's start.
            let last = last_partition_start(&keys)?;
            let done = if last > 0 {
                Some(last)
            } else if self.continues_held(&keys)? {
                None
            } else {
                Some(0)
            };
            // Whatever is held next ends with this batch's last row.
            self.held_last_key = Some(key_of_row(&keys, batch.num_rows() - 1));
            let Some(done) = done else {
                self.held.push(batch);
                continue;
            };
            let mut completed = std::mem::take(&mut self.held);
            if done > 0 {
                completed.push(batch.slice(0, done));
            }
            self.held.push(batch.slice(done, batch.num_rows() - done));
            if let Some(out) = self.evaluate(&completed)? {
                return Ok(Some(out));
            }
        }
        let held = std::mem::take(&mut self.held);
        self.evaluate(&held)
    }
}

impl Windows {
    /// Whether the first row of a batch with `keys` has the key of the
    /// last row held.
    fn continues_held(&self, keys: &[ArrayRef]) -> Result<bool> {
        match &self.held_last_key {
            Some(last) if !self.held.is_empty() => same_key(last, 0, keys, 0),
            _ => Ok(false),
        }
    }

    /// The window columns of `batches` (whole partitions), appended to
    /// their rows: each partition evaluated on its own.
    fn evaluate(&mut self, batches: &[RecordBatch]) -> Result<Option<RecordBatch>> {
        let batch = concat_batches(&self.input_schema, batches)?;
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let keys: Vec<ArrayRef> = key_columns(&self.keys, &batch)?;
        let ranges = partition(&keys)?.ranges();
        let mut results: Vec<Vec<ArrayRef>> =
            vec![Vec::with_capacity(ranges.len()); self.window_expr.len()];
        for range in ranges {
            let rows = batch.slice(range.start, range.end - range.start);
            for (expr, out) in self.window_expr.iter().zip(&mut results) {
                out.push(expr.evaluate(&rows)?);
            }
        }
        let mut columns = batch.columns().to_vec();
        for parts in results {
            let parts: Vec<&dyn arrow::array::Array> = parts.iter().map(|a| a.as_ref()).collect();
            columns.push(concat(&parts)?);
        }
        let out = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        self.metrics.record_output(out.num_rows());
        Ok(Some(out))
    }
}

/// The first row of the last partition of a batch whose partition `keys`
/// are sorted: a binary search for where the last row's key begins.
fn last_partition_start(keys: &[ArrayRef]) -> Result<usize> {
    let rows = keys.first().map_or(0, |k| k.len());
    if rows == 0 {
        return Ok(0);
    }
    let comparators = keys
        .iter()
        .map(|k| make_comparator(k, k, Default::default()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let last = rows - 1;
    let same = |row: usize| comparators.iter().all(|c| c(row, last) == Ordering::Equal);
    // Rows in [start, rows) have the last key; rows before `below` do not.
    let (mut below, mut start) = (0, last);
    if same(0) {
        return Ok(0);
    }
    while below + 1 < start {
        let middle = below + (start - below) / 2;
        if same(middle) {
            start = middle;
        } else {
            below = middle;
        }
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// A session with tiny batches (so partitions cross batch boundaries),
    /// with or without the rule, over a table of unsorted rows of 5 names.
    async fn session(streaming: bool) -> SessionContext {
        let mut rules = PhysicalOptimizer::new().rules;
        if streaming {
            rules.push(Arc::new(StreamPartitionedWindows));
        }
        let config = SessionConfig::new()
            .with_batch_size(7)
            .with_target_partitions(2);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_physical_optimizer_rules(rules)
            .build();
        let ctx = SessionContext::new_with_state(state);
        crate::functions::register(&ctx);
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("step", DataType::Int64, false),
            Field::new("value", DataType::Float64, false),
        ]));
        let mut next = crate::operators::test_random(11);
        let partitions = (0..3)
            .map(|p| {
                let rows = 40 + p * 13;
                let names: StringArray = (0..rows).map(|_| Some(format!("n{}", next(5)))).collect();
                let steps: Int64Array = (0..rows).map(|i| (i * 3 + p) as i64).collect();
                let values: Float64Array = (0..rows).map(|_| next(1000) as f64 / 10.0).collect();
                vec![RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(names), Arc::new(steps), Arc::new(values)],
                )
                .expect("batch")]
            })
            .collect();
        let table = MemTable::try_new(schema, partitions).expect("table");
        ctx.register_table("t", Arc::new(table)).expect("register");
        ctx
    }

    #[tokio::test]
    async fn gives_what_the_whole_input_window_gives_across_batches() {
        let sql = "SELECT name, step, \
                     ema(value, 0.3) OVER (PARTITION BY name ORDER BY step) AS e, \
                     is_spike(value, 3) OVER (PARTITION BY name ORDER BY step) AS s \
                   FROM t ORDER BY name, step";
        let mut answers = Vec::new();
        for streaming in [true, false] {
            let ctx = session(streaming).await;
            let frame = ctx.sql(sql).await.expect("plan");
            let plan = frame
                .clone()
                .create_physical_plan()
                .await
                .expect("physical");
            let shown = datafusion::physical_plan::displayable(plan.as_ref())
                .indent(false)
                .to_string();
            assert_eq!(shown.contains("StreamingWindowExec"), streaming, "{shown}");
            assert_eq!(shown.contains("WindowAggExec"), !streaming, "{shown}");
            let batches = frame.collect().await.expect("run");
            answers.push(
                arrow::util::pretty::pretty_format_batches(&batches)
                    .expect("print")
                    .to_string(),
            );
        }
        assert_eq!(answers[0], answers[1]);
        assert!(answers[0].lines().count() > 150, "{}", answers[0]);
    }
}
