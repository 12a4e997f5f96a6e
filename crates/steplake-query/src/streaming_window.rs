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

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::new_null_array;
use arrow::array::ArrayRef;
use arrow::compute::concat;
use arrow::datatypes::SchemaRef;
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::window::StandardWindowExpr;
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

use crate::operators::{batch_stream, key_columns, only_child, KeyRuns, NextBatch};

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
            read: ReadColumns::of(&self.window_expr, &self.input.schema()),
            schema: Arc::clone(&schema),
            window_expr: self.window_expr.clone(),
            keys: self.keys.clone(),
            held: Vec::new(),
            runs: KeyRuns::default(),
            ready: VecDeque::new(),
            metrics: BaselineMetrics::new(&self.metrics, partition),
        };
        Ok(batch_stream(schema, windows))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// The input columns the window functions read: only those are gathered
/// into one batch per evaluation. The others (the partition keys among
/// them, often strings) are stood in for by all-NULL columns, built once
/// and sliced, in a schema that lets them be NULL.
struct ReadColumns {
    schema: SchemaRef,
    /// Per input column: read (true), or stood in for.
    read: Vec<bool>,
    stand_ins: Vec<Option<ArrayRef>>,
}

impl ReadColumns {
    /// The columns `exprs` read of rows of `input`. Only standard window
    /// functions (not aggregates, whose `FILTER` is not visible here) are
    /// known to read nothing but their arguments and `ORDER BY`: for any
    /// other, every column is read.
    fn of(exprs: &[Arc<dyn WindowExpr>], input: &SchemaRef) -> Self {
        let all = exprs.iter().any(|e| !e.as_any().is::<StandardWindowExpr>());
        let mut read = vec![all; input.fields().len()];
        for expr in exprs {
            let order_by = expr.order_by().iter().map(|o| Arc::clone(&o.expr));
            for used in expr.expressions().into_iter().chain(order_by) {
                for column in collect_columns(&used) {
                    if let Some(r) = read.get_mut(column.index()) {
                        *r = true;
                    }
                }
            }
        }
        let fields: Vec<Field> = input
            .fields()
            .iter()
            .zip(&read)
            .map(|(f, r)| f.as_ref().clone().with_nullable(f.is_nullable() || !r))
            .collect();
        ReadColumns {
            schema: Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())),
            stand_ins: vec![None; read.len()],
            read,
        }
    }

    /// One batch of `pieces`' rows with the columns read.
    fn gather(&mut self, pieces: &[&RecordBatch]) -> Result<RecordBatch> {
        let rows: usize = pieces.iter().map(|p| p.num_rows()).sum();
        let mut columns = Vec::with_capacity(self.read.len());
        for (index, read) in self.read.iter().enumerate() {
            if *read {
                let parts: Vec<&dyn arrow::array::Array> =
                    pieces.iter().map(|p| p.column(index).as_ref()).collect();
                columns.push(concat(&parts)?);
                continue;
            }
            let stand_in = &mut self.stand_ins[index];
            if stand_in.as_ref().is_none_or(|s| s.len() < rows) {
                let data_type = self.schema.field(index).data_type();
                let length = rows.max(stand_in.as_ref().map_or(0, |s| 2 * s.len()));
                *stand_in = Some(new_null_array(data_type, length));
            }
            if let Some(stand_in) = stand_in {
                columns.push(stand_in.slice(0, rows));
            }
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

struct Windows {
    input: SendableRecordBatchStream,
    read: ReadColumns,
    schema: SchemaRef,
    window_expr: Vec<Arc<dyn WindowExpr>>,
    keys: Vec<PhysicalSortExpr>,
    /// Rows of partitions that may not be complete, in input order.
    held: Vec<RecordBatch>,
    /// The runs of one partition key read, across batches.
    runs: KeyRuns,
    /// Evaluated rows not yet sent on.
    ready: VecDeque<RecordBatch>,
    metrics: BaselineMetrics,
}

impl NextBatch for Windows {
    /// The window results of the next completed partitions; None at the
    /// end of the input.
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if let Some(ready) = self.ready.pop_front() {
            return Ok(Some(ready));
        }
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
            let done = match self.runs.next(&keys, batch.num_rows())?.as_slice() {
                [.., (last, _)] if last.start > 0 => Some(last.start),
                [(_, true)] => None,
                _ => Some(0),
            };
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
    /// The window columns of `batches` (whole partitions), appended to
    /// their rows: each partition evaluated on its own. The rows go on as
    /// the batches they came in, each with its slice of the window columns;
    /// the first is returned, the rest wait in `ready`.
    fn evaluate(&mut self, batches: &[RecordBatch]) -> Result<Option<RecordBatch>> {
        let pieces: Vec<&RecordBatch> = batches.iter().filter(|b| b.num_rows() > 0).collect();
        if pieces.is_empty() {
            return Ok(None);
        }
        let ranges = self.partitions(&pieces)?;
        let batch = match pieces.as_slice() {
            [one] => (*one).clone(),
            _ => self.read.gather(&pieces)?,
        };
        let mut results: Vec<Vec<ArrayRef>> =
            vec![Vec::with_capacity(ranges.len()); self.window_expr.len()];
        for range in ranges {
            let rows = batch.slice(range.start, range.end - range.start);
            for (expr, out) in self.window_expr.iter().zip(&mut results) {
                out.push(expr.evaluate(&rows)?);
            }
        }
        let results = results
            .iter()
            .map(|parts| {
                let parts: Vec<&dyn arrow::array::Array> =
                    parts.iter().map(|a| a.as_ref()).collect();
                concat(&parts)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut offset = 0;
        for piece in pieces {
            let rows = piece.num_rows();
            let mut columns = piece.columns().to_vec();
            columns.extend(results.iter().map(|r| r.slice(offset, rows)));
            self.ready
                .push_back(RecordBatch::try_new(Arc::clone(&self.schema), columns)?);
            self.metrics.record_output(rows);
            offset += rows;
        }
        Ok(self.ready.pop_front())
    }

    /// The row ranges of the partitions of `pieces` (sorted by the keys),
    /// counted across them; the keys are compared piece by piece, never
    /// gathered.
    fn partitions(&self, pieces: &[&RecordBatch]) -> Result<Vec<Range<usize>>> {
        let mut ranges: Vec<Range<usize>> = Vec::new();
        let mut runs = KeyRuns::default();
        let mut offset = 0;
        for piece in pieces {
            let keys = key_columns(&self.keys, piece)?;
            for (run, continues) in runs.next(&keys, piece.num_rows())? {
                match ranges.last_mut() {
                    Some(range) if continues => range.end = offset + run.end,
                    _ => ranges.push(offset + run.start..offset + run.end),
                }
            }
            offset += piece.num_rows();
        }
        Ok(ranges)
    }
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
                     is_spike(value, 3) OVER (PARTITION BY name ORDER BY step) AS s, \
                     count(value) FILTER (WHERE step > 50) OVER (PARTITION BY name) AS late \
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
