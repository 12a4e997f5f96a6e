//! GROUP BY a series, one group lookup per run of rows: [`GroupByRuns`].
//!
//! `SELECT name, first_sustained(step, value < 1.0) FROM scalars GROUP BY
//! name` hashes every row's name to find its group. A profile over 100M
//! points had a quarter of the query's time in that lookup (hashing string
//! views and probing the map), more than the aggregate itself. But the
//! store's files are sorted by (run_id, name, step), so a batch read from a
//! file holds a few long runs of one series:
//!
//! ```text
//! batch rows: | r/a  r/a  r/a … r/a | r/b  r/b … r/b |
//! runs:         one lookup: group 0    one lookup: group 1
//! group ids:    0    0    0   …  0     1    1   …  1
//! ```
//!
//! [`RunGroupedAggregateExec`] finds the runs of equal keys with a
//! vectorised comparison of neighbouring rows, looks up each run's key once,
//! fills the run's group ids, and hands the batch to the same
//! `GroupsAccumulator`s DataFusion would have used: the answers are the
//! same, only the way to the group ids changes. Batches whose runs are
//! short (the in-memory buffer holds rows in write order, one point of
//! each series after another) look up every row, through the same map.
//!
//! The rule applies to an `AggregateExec` over raw rows (partial or
//! single), grouped by `run_id` and/or `name` only (no grouping sets),
//! whose aggregates all have groups accumulators, with no `DISTINCT`, no
//! `FILTER` and no group limit, whose input is not declared sorted (then
//! DataFusion streams groups out in order, and that stays its job).
//!
//! A partial aggregate that outgrows its memory share sends its groups on
//! early and starts again (the final aggregate merges them), as
//! DataFusion's does; a single one fails with the pool's error.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::{partition, take};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{aggregate_expressions, AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::apply_expression_roots;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputDistributionRequirements, InputOrderMode,
    PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;

use crate::operators::{batch_stream, only_child, NextBatch};

/// The columns that name a series: in the store's files, the rows of one
/// value of these come in long runs.
const SERIES_COLUMNS: [&str; 2] = ["run_id", "name"];

/// A batch whose runs average fewer rows than this looks up every row.
const SHORT_RUN: usize = 16;

/// The physical optimizer rule (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct GroupByRuns;

impl PhysicalOptimizerRule for GroupByRuns {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            if !groups_by_runs(aggregate) {
                return Ok(Transformed::no(node));
            }
            let exec = RunGroupedAggregateExec::new(aggregate)?;
            Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "steplake_group_by_runs"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether `aggregate` is one [`RunGroupedAggregateExec`] can run.
fn groups_by_runs(aggregate: &AggregateExec) -> bool {
    let raw_input = matches!(
        aggregate.mode(),
        AggregateMode::Partial | AggregateMode::Single | AggregateMode::SinglePartitioned
    );
    let groups = aggregate.group_expr();
    let by_series = groups.is_single()
        && !groups.expr().is_empty()
        && groups.expr().iter().all(|(expr, _)| {
            expr.downcast_ref::<Column>()
                .is_some_and(|c| SERIES_COLUMNS.contains(&c.name()))
        });
    raw_input
        && by_series
        && aggregate.filter_expr().iter().all(Option::is_none)
        && aggregate.limit_options().is_none()
        && *aggregate.input_order_mode() == InputOrderMode::Linear
        && aggregate
            .aggr_expr()
            .iter()
            .all(|f| f.groups_accumulator_supported() && !f.is_distinct())
}

/// An `AggregateExec`'s work with group ids found run by run (see the
/// module docs): same input, output schema and partitioning.
#[derive(Debug)]
pub(crate) struct RunGroupedAggregateExec {
    input: Arc<dyn ExecutionPlan>,
    mode: AggregateMode,
    /// The group columns, in output order.
    group_by: Vec<Arc<dyn PhysicalExpr>>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Each aggregate's argument expressions (its ordering columns last).
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    /// The replaced aggregate's, without an output ordering.
    properties: Arc<PlanProperties>,
    required_distribution: InputDistributionRequirements,
    metrics: ExecutionPlanMetricsSet,
}

impl RunGroupedAggregateExec {
    fn new(aggregate: &AggregateExec) -> Result<Self> {
        let properties = aggregate.properties();
        let unordered = PlanProperties::new(
            datafusion::physical_expr::EquivalenceProperties::new(aggregate.schema()),
            properties.partitioning.clone(),
            properties.emission_type,
            properties.boundedness,
        );
        Ok(RunGroupedAggregateExec {
            input: Arc::clone(aggregate.input()),
            mode: *aggregate.mode(),
            group_by: aggregate
                .group_expr()
                .expr()
                .iter()
                .map(|(e, _)| Arc::clone(e))
                .collect(),
            aggregates: aggregate.aggr_expr().to_vec(),
            arguments: aggregate_expressions(aggregate.aggr_expr(), aggregate.mode(), 0)?,
            properties: Arc::new(unordered),
            required_distribution: aggregate.input_distribution_requirements(),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// Whether the output is each group's partial state (else its answer).
    fn emits_state(&self) -> bool {
        self.mode == AggregateMode::Partial
    }
}

impl DisplayAs for RunGroupedAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let groups: Vec<String> = self.group_by.iter().map(|g| g.to_string()).collect();
        let aggregates: Vec<&str> = self.aggregates.iter().map(|a| a.name()).collect();
        write!(
            f,
            "RunGroupedAggregateExec: mode={:?}, gby=[{}], aggr=[{}]",
            self.mode,
            groups.join(", "),
            aggregates.join(", ")
        )
    }
}

impl ExecutionPlan for RunGroupedAggregateExec {
    fn name(&self) -> &'static str {
        "RunGroupedAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.required_distribution.clone()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let roots = self
            .group_by
            .iter()
            .cloned()
            .chain(self.arguments.iter().flatten().cloned());
        apply_expression_roots(roots, f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = only_child(self.name(), children)?;
        Ok(Arc::new(RunGroupedAggregateExec {
            input,
            mode: self.mode,
            group_by: self.group_by.clone(),
            aggregates: self.aggregates.clone(),
            arguments: self.arguments.clone(),
            properties: Arc::clone(&self.properties),
            required_distribution: self.required_distribution.clone(),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let input_schema = self.input.schema();
        let key_fields = self
            .group_by
            .iter()
            .map(|g| Ok(SortField::new(g.data_type(&input_schema)?)))
            .collect::<Result<Vec<_>>>()?;
        let reservation = MemoryConsumer::new(format!("RunGroupedAggregate[{partition}]"))
            .with_can_spill(self.emits_state())
            .register(context.memory_pool());
        let groups = Groups {
            input: Some(input),
            schema: self.schema(),
            group_by: self.group_by.clone(),
            arguments: self.arguments.clone(),
            aggregates: self.aggregates.clone(),
            emits_state: self.emits_state(),
            table: GroupTable::new(key_fields)?,
            accumulators: self.new_accumulators()?,
            batch_size: context.session_config().batch_size().max(1),
            ready: Vec::new(),
            reservation,
            early_emits: MetricBuilder::new(&self.metrics).counter("early_emits", partition),
            metrics: BaselineMetrics::new(&self.metrics, partition),
        };
        Ok(batch_stream(self.schema(), groups))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

impl RunGroupedAggregateExec {
    fn new_accumulators(&self) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
        self.aggregates
            .iter()
            .map(|a| a.create_groups_accumulator())
            .collect()
    }
}

/// The groups seen so far: each key's group id, and the keys in id order.
struct GroupTable {
    converter: RowConverter,
    /// Group id by key (in the converter's row format).
    ids: HashMap<Box<[u8]>, usize>,
    /// The keys, in group id order.
    keys: Rows,
}

impl GroupTable {
    fn new(fields: Vec<SortField>) -> Result<Self> {
        let converter = RowConverter::new(fields)?;
        let keys = converter.empty_rows(0, 0);
        Ok(GroupTable {
            converter,
            ids: HashMap::new(),
            keys,
        })
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    /// The group ids of a batch's rows, given its key columns: a lookup per
    /// run of equal keys, or per row where the runs are short.
    fn group_ids(&mut self, keys: &[ArrayRef], rows: usize) -> Result<Vec<usize>> {
        let runs = partition(keys)?.ranges();
        let mut ids = Vec::with_capacity(rows);
        if runs.len() * SHORT_RUN > rows {
            let converted = self.converter.convert_columns(keys)?;
            for row in converted.iter() {
                ids.push(self.id(row));
            }
            return Ok(ids);
        }
        let starts = UInt32Array::from_iter_values(runs.iter().map(|r| r.start as u32));
        let run_keys = keys
            .iter()
            .map(|k| Ok(take(k.as_ref(), &starts, None)?))
            .collect::<Result<Vec<_>>>()?;
        let converted = self.converter.convert_columns(&run_keys)?;
        for (run, key) in runs.iter().zip(converted.iter()) {
            let id = self.id(key);
            ids.resize(run.end, id);
        }
        Ok(ids)
    }

    /// The group id of `key`, a new one if it is new.
    fn id(&mut self, key: arrow::row::Row<'_>) -> usize {
        if let Some(&id) = self.ids.get(key.as_ref()) {
            return id;
        }
        let id = self.ids.len();
        self.ids.insert(key.as_ref().into(), id);
        self.keys.push(key);
        id
    }

    /// Heap bytes held (approximately: the map's keys twice).
    fn size(&self) -> usize {
        self.keys.size() * 2 + self.ids.capacity() * std::mem::size_of::<(Box<[u8]>, usize)>()
    }

    /// The key columns of every group, in id order, and a fresh table.
    fn take_keys(&mut self) -> Result<Vec<ArrayRef>> {
        let keys = std::mem::replace(&mut self.keys, self.converter.empty_rows(0, 0));
        self.ids.clear();
        Ok(self.converter.convert_rows(keys.iter())?)
    }
}

/// One partition's aggregation, read to its end, then emitted in batches.
struct Groups {
    input: Option<SendableRecordBatchStream>,
    schema: SchemaRef,
    group_by: Vec<Arc<dyn PhysicalExpr>>,
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    emits_state: bool,
    table: GroupTable,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    batch_size: usize,
    /// Output rows not yet sent on, last first.
    ready: Vec<RecordBatch>,
    reservation: MemoryReservation,
    /// How often the groups went on before the input's end.
    early_emits: Count,
    metrics: BaselineMetrics,
}

impl NextBatch for Groups {
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if let Some(batch) = self.ready.pop() {
                self.metrics.record_output(batch.num_rows());
                return Ok(Some(batch));
            }
            let Some(input) = self.input.as_mut() else {
                self.metrics.done();
                return Ok(None);
            };
            match input.next().await {
                Some(batch) => {
                    let batch = batch?;
                    let elapsed = self.metrics.elapsed_compute().clone();
                    let _timer = elapsed.timer();
                    self.update(&batch)?;
                    if self.reservation.try_resize(self.size()).is_err() {
                        if !self.emits_state {
                            // The pool's own error, with its consumers.
                            self.reservation.try_resize(self.size())?;
                        }
                        // Partial state can go on early: the final
                        // aggregate merges groups seen twice.
                        self.early_emits.add(1);
                        self.emit()?;
                    }
                }
                None => {
                    self.input = None;
                    let elapsed = self.metrics.elapsed_compute().clone();
                    let _timer = elapsed.timer();
                    self.emit()?;
                }
            }
        }
    }
}

impl Groups {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let keys = self
            .group_by
            .iter()
            .map(|g| g.evaluate(batch)?.into_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let ids = self.table.group_ids(&keys, rows)?;
        let groups = self.table.len();
        for (accumulator, arguments) in self.accumulators.iter_mut().zip(&self.arguments) {
            let values = arguments
                .iter()
                .map(|a| a.evaluate(batch)?.into_array(rows))
                .collect::<Result<Vec<_>>>()?;
            accumulator.update_batch(&values, &ids, None, groups)?;
        }
        Ok(())
    }

    fn size(&self) -> usize {
        self.table.size() + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }

    /// Every group's keys and state (or answer) into `ready`, and the
    /// groups emptied.
    fn emit(&mut self) -> Result<()> {
        if self.table.len() == 0 {
            return Ok(());
        }
        let mut columns = self.table.take_keys()?;
        for (accumulator, aggregate) in self.accumulators.iter_mut().zip(&self.aggregates) {
            if self.emits_state {
                columns.extend(accumulator.state(EmitTo::All)?);
            } else {
                columns.push(accumulator.evaluate(EmitTo::All)?);
            }
            // A fresh one: some accumulators keep state past EmitTo::All.
            *accumulator = aggregate.create_groups_accumulator()?;
        }
        let all = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        self.reservation.try_resize(self.size())?;
        let mut start = all.num_rows();
        while start > 0 {
            let begin = start.saturating_sub(self.batch_size);
            self.ready.push(all.slice(begin, start - begin));
            start = begin;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::test_random;
    use arrow::array::{Int64Array, StringViewArray};
    use arrow::datatypes::DataType;

    /// Group ids numbered by first appearance, row by row: the definition.
    fn first_seen(keys: &[(i64, String)], seen: &mut Vec<(i64, String)>) -> Vec<usize> {
        keys.iter()
            .map(|key| match seen.iter().position(|k| k == key) {
                Some(id) => id,
                None => {
                    seen.push(key.clone());
                    seen.len() - 1
                }
            })
            .collect()
    }

    #[test]
    fn group_ids_by_runs_and_by_rows_number_groups_as_first_seen() {
        let mut next = test_random(11);
        let mut table = GroupTable::new(vec![
            SortField::new(DataType::Int64),
            SortField::new(DataType::Utf8View),
        ])
        .expect("table");
        let mut seen = Vec::new();
        // Long runs (one lookup a run), then alternating keys (a lookup a
        // row), then long runs of keys seen before, across batches.
        for (batch, run_length) in [(0, 300), (1, 1), (2, 1000), (3, 2), (4, 40)] {
            let rows = 1 + next(2000) as usize;
            let mut keys = Vec::with_capacity(rows);
            while keys.len() < rows {
                let key = (
                    next(2) as i64,
                    format!("a long series name {}", next(6) + batch),
                );
                for _ in 0..(1 + next(run_length)).min((rows - keys.len()) as u64) {
                    keys.push(key.clone());
                }
            }
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(keys.iter().map(|k| k.0))),
                Arc::new(StringViewArray::from_iter_values(
                    keys.iter().map(|k| k.1.as_str()),
                )),
            ];
            let ids = table.group_ids(&columns, rows).expect("ids");
            assert_eq!(ids, first_seen(&keys, &mut seen), "batch {batch}");
            assert_eq!(table.len(), seen.len());
        }
        let keys = table.take_keys().expect("keys");
        assert_eq!(keys[0].len(), seen.len());
        let names = keys[1]
            .as_any()
            .downcast_ref::<StringViewArray>()
            .expect("names");
        for (id, (_, name)) in seen.iter().enumerate() {
            assert_eq!(names.value(id), name);
        }
        assert_eq!(table.len(), 0, "taking the keys starts a fresh table");
    }
}
