//! Moving sums and means that add up each window's own rows:
//! [`ExactSlidingSums`] and [`SlidingSumExec`].
//!
//! `sum(x)` and `avg(x)` over a ROWS frame such as `ROWS BETWEEN 99
//! PRECEDING AND CURRENT ROW` (a moving average, the most common way to
//! smooth a training curve) are evaluated by DataFusion with one running
//! sum: add the row that enters the window, subtract the row that leaves.
//! That has two costs:
//!
//! - it is wrong after a non-finite or huge value: `NaN - NaN` is NaN and
//!   `inf - inf` is NaN, so one NaN loss made every later window NaN, and
//!   `(1e300 + 1) - 1e300` is 0, so the windows after a spike lost their
//!   small values;
//! - it costs a dynamic call, two array slices and a `ScalarValue` per row
//!   (about 280 ns a row, nearly the whole time of a moving average over
//!   one series).
//!
//! [`SlidingSumExec`] adds up each window from its own rows instead, in
//! O(1) per row: the rows are cut into blocks as long as the frame, and
//! within each block a running sum is kept from the block's start
//! (`prefix`) and from its end (`suffix`). A full-length window that is not
//! a block spans two blocks, and is the suffix of its first row plus the
//! prefix of its last row:
//!
//! ```text
//! rows:     | b0 b1 b2 b3 | b4 b5 b6 b7 | ...     (frame of 4 rows)
//! window:          [b2 b3   b4 b5]
//! sum:         suffix(b2) + prefix(b5)
//! ```
//!
//! Every term added is one of the window's own values, so a NaN or an
//! infinity spoils exactly the windows that hold it, and no large value is
//! subtracted back out. Windows cut short at a partition's ends start at
//! its first row or end at its last, which are a block's start and (for
//! the last block) its end, so they are a single prefix or suffix.
//!
//! The operator streams as `BoundedWindowAggExec` does: its input is sorted
//! by the `PARTITION BY` keys, it keeps of the current partition only the
//! argument values later windows still need and the rows still waiting for
//! `FOLLOWING` rows, and it sends each row on once its windows are
//! complete. The rule replaces a `BoundedWindowAggExec` all of whose
//! expressions are `sum` or `avg` of a `DOUBLE` argument over a ROWS frame
//! with two bounded ends, without `DISTINCT` or `FILTER`; any other keeps
//! DataFusion's evaluation.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch};
use arrow::buffer::NullBuffer;
use arrow::compute::{concat, concat_batches};
use arrow::datatypes::{DataType, Float64Type, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{exec_datafusion_err, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{WindowFrame, WindowFrameBound, WindowFrameUnits};
use datafusion::physical_expr::window::{SlidingAggregateWindowExpr, WindowExpr};
use datafusion::physical_expr::{OrderingRequirements, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::windows::BoundedWindowAggExec;
use datafusion::physical_plan::{
    replace_children_if_necessary, DisplayAs, DisplayFormatType, ExecutionPlan,
    InputDistributionRequirements, InputOrderMode, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;

use crate::operators::{batch_stream, key_columns, only_child, KeyRuns, NextBatch};

/// The physical optimizer rule: a `BoundedWindowAggExec` whose input is
/// sorted by its `PARTITION BY` keys and whose every expression is a
/// [`SlidingSum`] becomes a [`SlidingSumExec`].
#[derive(Debug, Default)]
pub(crate) struct ExactSlidingSums;

impl PhysicalOptimizerRule for ExactSlidingSums {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(window) = node.downcast_ref::<BoundedWindowAggExec>() else {
                return Ok(Transformed::no(node));
            };
            if window.input_order_mode != InputOrderMode::Sorted {
                return Ok(Transformed::no(node));
            }
            let input_schema = window.input().schema();
            let sums: Option<Vec<SlidingSum>> = window
                .window_expr()
                .iter()
                .map(|expr| SlidingSum::of(expr, &input_schema))
                .collect();
            let Some(sums) = sums.filter(|s| !s.is_empty()) else {
                return Ok(Transformed::no(node));
            };
            let exec = SlidingSumExec {
                sums: sums.into(),
                keys: window.partition_by_sort_keys()?,
                input: Arc::clone(window.input()),
                window: Arc::clone(&node),
                metrics: ExecutionPlanMetricsSet::new(),
            };
            Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "steplake_exact_sliding_sums"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A ROWS frame as offsets from the current row, both ends inclusive and
/// negative before the row: `3 PRECEDING AND 2 FOLLOWING` is (-3, 2).
#[derive(Debug, Clone, Copy)]
struct RowsFrame {
    first: i64,
    last: i64,
}

impl RowsFrame {
    /// The frame of `frame`, if it is ROWS with two bounded ends.
    fn of(frame: &WindowFrame) -> Option<Self> {
        if frame.units != WindowFrameUnits::Rows {
            return None;
        }
        let offset = |bound: &WindowFrameBound| match bound {
            WindowFrameBound::CurrentRow => Some(0),
            WindowFrameBound::Preceding(ScalarValue::UInt64(Some(n))) => {
                i64::try_from(*n).ok().map(|n| -n)
            }
            WindowFrameBound::Following(ScalarValue::UInt64(Some(n))) => i64::try_from(*n).ok(),
            _ => None,
        };
        Some(RowsFrame {
            first: offset(&frame.start_bound)?,
            last: offset(&frame.end_bound)?,
        })
    }

    /// How many rows a window not cut short holds (at least 1).
    fn width(self) -> usize {
        usize::try_from(self.last.saturating_sub(self.first).saturating_add(1))
            .unwrap_or(1)
            .max(1)
    }

    /// The rows of `row`'s window among `len` rows, as DataFusion
    /// computes them: both ends clamped to the rows there are.
    fn rows(self, row: usize, len: usize) -> Range<usize> {
        let clamp = |at: i64| at.clamp(0, len as i64) as usize;
        let row = row as i64;
        let start = clamp(row.saturating_add(self.first));
        let end = clamp(row.saturating_add(self.last).saturating_add(1));
        start..end.max(start)
    }
}

/// One `sum(x)` or `avg(x)` over a ROWS frame.
#[derive(Debug)]
pub(crate) struct SlidingSum {
    name: String,
    argument: Arc<dyn PhysicalExpr>,
    frame: RowsFrame,
    mean: bool,
}

impl SlidingSum {
    /// `expr` (over rows of `input`) if it is DataFusion's sliding `sum`
    /// or `avg` of one `DOUBLE` argument over a ROWS frame with two bounded
    /// ends, with no `DISTINCT` and no `FILTER`.
    fn of(expr: &Arc<dyn WindowExpr>, input: &Schema) -> Option<Self> {
        let sliding = expr.as_any().downcast_ref::<SlidingAggregateWindowExpr>()?;
        let aggregate = sliding.get_aggregate_expr();
        let mean = match aggregate.fun().name() {
            "avg" => true,
            "sum" => false,
            _ => return None,
        };
        // The filter has no accessor; its Debug field is the only witness.
        let unfiltered = format!("{sliding:?}").ends_with("filter: None }");
        let arguments = expr.expressions();
        let [argument] = arguments.as_slice() else {
            return None;
        };
        let doubles = argument.data_type(input).ok()? == DataType::Float64
            && *aggregate.field().data_type() == DataType::Float64;
        if aggregate.is_distinct() || !unfiltered || !doubles {
            return None;
        }
        Some(SlidingSum {
            name: expr.name().to_string(),
            argument: Arc::clone(argument),
            frame: RowsFrame::of(expr.get_window_frame())?,
            mean,
        })
    }
}

/// `sum` and `avg` over ROWS frames, each window added up from its own
/// rows (see the module docs). It takes the place of a
/// `BoundedWindowAggExec`, whose output, order and partitioning it keeps.
#[derive(Debug)]
pub(crate) struct SlidingSumExec {
    sums: Arc<[SlidingSum]>,
    /// The `PARTITION BY` keys, which the input is sorted by.
    keys: Vec<PhysicalSortExpr>,
    input: Arc<dyn ExecutionPlan>,
    /// The operator replaced: it answers for the output's properties and
    /// the input's requirements.
    window: Arc<dyn ExecutionPlan>,
    metrics: ExecutionPlanMetricsSet,
}

impl DisplayAs for SlidingSumExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = self.sums.iter().map(|s| s.name.as_str()).collect();
        write!(f, "SlidingSumExec: wdw=[{}]", names.join(", "))
    }
}

impl ExecutionPlan for SlidingSumExec {
    fn name(&self) -> &'static str {
        "SlidingSumExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.window.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        self.window.required_input_ordering()
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.window.input_distribution_requirements()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.window.apply_expressions(f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = only_child(self.name(), children)?;
        // Rebuilt through the window operator, so that the properties
        // follow the new input, then replaced again if it still may be.
        let window = replace_children_if_necessary(Arc::clone(&self.window), vec![input])?;
        ExactSlidingSums.optimize(window, &ConfigOptions::default())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = self.schema();
        let sums = Sums {
            input,
            schema: Arc::clone(&schema),
            sums: Arc::clone(&self.sums),
            keys: self.keys.clone(),
            following: self
                .sums
                .iter()
                .map(|s| usize::try_from(s.frame.last).unwrap_or(0))
                .max()
                .unwrap_or(0),
            partition: Partition::new(self.sums.len()),
            runs: KeyRuns::default(),
            metrics: BaselineMetrics::new(&self.metrics, partition),
        };
        Ok(batch_stream(schema, sums))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// What is kept of the partition being read. Rows are numbered from the
/// partition's first.
struct Partition {
    /// Rows read.
    read: usize,
    /// The next row to send on; rows from here on wait in `waiting`.
    next: usize,
    waiting: Vec<RecordBatch>,
    /// Per sum, its argument's values from row `first_kept` on, in pieces.
    kept: Vec<Vec<ArrayRef>>,
    first_kept: usize,
}

impl Partition {
    fn new(sums: usize) -> Self {
        Partition {
            read: 0,
            next: 0,
            waiting: Vec::new(),
            kept: vec![Vec::new(); sums],
            first_kept: 0,
        }
    }
}

struct Sums {
    input: SendableRecordBatchStream,
    schema: SchemaRef,
    sums: Arc<[SlidingSum]>,
    keys: Vec<PhysicalSortExpr>,
    /// How many rows after its own a row's windows reach, at most.
    following: usize,
    partition: Partition,
    /// The runs of one partition key read, across batches.
    runs: KeyRuns,
    metrics: BaselineMetrics,
}

impl NextBatch for Sums {
    /// The rows whose windows the next input batch completed, with their
    /// sums; at the end of the input, the rest.
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        while let Some(batch) = self.input.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let elapsed = self.metrics.elapsed_compute().clone();
            let _timer = elapsed.timer();
            let mut out = Vec::new();
            self.read(&batch, &mut out)?;
            if let Some(out) = self.output(out)? {
                return Ok(Some(out));
            }
        }
        let mut out = Vec::new();
        self.send(true, &mut out)?;
        self.output(out)
    }
}

impl Sums {
    /// Reads `batch`: each run of one partition key in turn, sending on
    /// what becomes complete into `out`.
    fn read(&mut self, batch: &RecordBatch, out: &mut Vec<RecordBatch>) -> Result<()> {
        let arguments = self
            .sums
            .iter()
            .map(|s| s.argument.evaluate(batch)?.into_array(batch.num_rows()))
            .collect::<Result<Vec<_>>>()?;
        let keys = key_columns(&self.keys, batch)?;
        for (run, continues) in self.runs.next(&keys, batch.num_rows())? {
            if !continues {
                self.send(true, out)?;
                self.partition = Partition::new(self.sums.len());
            }
            let rows = run.end - run.start;
            self.partition.waiting.push(batch.slice(run.start, rows));
            for (kept, argument) in self.partition.kept.iter_mut().zip(&arguments) {
                kept.push(argument.slice(run.start, rows));
            }
            self.partition.read += rows;
            self.send(false, out)?;
        }
        Ok(())
    }

    /// Sends the waiting rows whose windows are complete (all of them at
    /// the partition's `end`) into `out`, and drops the values no later
    /// window needs.
    fn send(&mut self, end: bool, out: &mut Vec<RecordBatch>) -> Result<()> {
        let part = &mut self.partition;
        let stop = if end {
            part.read
        } else {
            part.read.saturating_sub(self.following)
        };
        if stop <= part.next {
            return Ok(());
        }
        let rows = stop - part.next;
        let kept_len = part.read - part.first_kept;
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        let waiting = std::mem::take(&mut part.waiting);
        let (done, rest) = split_rows(waiting, rows);
        part.waiting = rest;
        columns.extend(
            concat_batches(&done[0].schema(), &done)?
                .columns()
                .iter()
                .cloned(),
        );
        let mut first_needed = stop;
        for (sum, kept) in self.sums.iter().zip(&mut part.kept) {
            let pieces: Vec<&dyn Array> = kept.iter().map(|a| a.as_ref()).collect();
            let values = concat(&pieces)?;
            let values = values
                .as_primitive_opt::<Float64Type>()
                .ok_or_else(|| exec_datafusion_err!("{}: expected DOUBLE values", sum.name))?;
            let windows: Vec<Range<usize>> = (part.next..stop)
                .map(|row| sum.frame.rows(row - part.first_kept, kept_len))
                .collect();
            columns.push(Arc::new(window_totals(
                values,
                &windows,
                sum.frame.width(),
                sum.mean,
            )));
            *kept = vec![Arc::new(values.clone()) as ArrayRef];
            let next_start = (stop as i64).saturating_add(sum.frame.first).max(0) as usize;
            first_needed = first_needed.min(next_start);
        }
        // Later windows start at or after `first_needed`.
        let drop = first_needed.saturating_sub(part.first_kept).min(kept_len);
        for kept in &mut part.kept {
            if let Some(values) = kept.first_mut() {
                *values = values.slice(drop, values.len() - drop);
            }
        }
        part.first_kept += drop;
        part.next = stop;
        let sent = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        self.metrics.record_output(sent.num_rows());
        out.push(sent);
        Ok(())
    }

    fn output(&self, out: Vec<RecordBatch>) -> Result<Option<RecordBatch>> {
        match out.len() {
            0 => Ok(None),
            1 => Ok(out.into_iter().next()),
            _ => Ok(Some(concat_batches(&self.schema, &out)?)),
        }
    }
}

/// The first `rows` rows of `batches`, and the rest.
fn split_rows(batches: Vec<RecordBatch>, mut rows: usize) -> (Vec<RecordBatch>, Vec<RecordBatch>) {
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    for batch in batches {
        if rows == 0 {
            rest.push(batch);
        } else if batch.num_rows() <= rows {
            rows -= batch.num_rows();
            first.push(batch);
        } else {
            first.push(batch.slice(0, rows));
            rest.push(batch.slice(rows, batch.num_rows() - rows));
            rows = 0;
        }
    }
    (first, rest)
}

/// The sum (or, with `mean`, the mean) of the non-NULL `values` in each of
/// `windows`; NULL where a window holds none. Every window is `width` rows
/// long, or starts at row 0, or ends at the last row (as ROWS frames are).
fn window_totals(
    values: &Float64Array,
    windows: &[Range<usize>],
    width: usize,
    mean: bool,
) -> Float64Array {
    let len = values.len();
    let data: Cow<[f64]> = match values.nulls() {
        None => Cow::Borrowed(values.values()),
        Some(nulls) => Cow::Owned(
            values
                .values()
                .iter()
                .zip(nulls.iter())
                .map(|(v, valid)| if valid { *v } else { 0.0 })
                .collect(),
        ),
    };
    // Non-NULL values before each row, where there are NULLs.
    let counted: Option<Vec<usize>> = values.nulls().map(|nulls| {
        let mut before = Vec::with_capacity(len + 1);
        before.push(0);
        let mut count = 0;
        for valid in nulls.iter() {
            count += usize::from(valid);
            before.push(count);
        }
        before
    });
    let low = windows.iter().map(|w| w.start).min().unwrap_or(0);
    let high = windows.iter().map(|w| w.end).max().unwrap_or(0);
    let blocks = Blocks::new(&data, low..high, width);
    let mut totals = Vec::with_capacity(windows.len());
    let mut present = Vec::with_capacity(windows.len());
    for window in windows {
        let count = match &counted {
            Some(before) => before[window.end] - before[window.start],
            None => window.len(),
        };
        if count == 0 {
            totals.push(0.0);
            present.push(false);
            continue;
        }
        let sum = blocks.sum(&data, window.clone());
        totals.push(if mean { sum / count as f64 } else { sum });
        present.push(true);
    }
    let nulls = NullBuffer::from(present);
    let nulls = (nulls.null_count() > 0).then_some(nulls);
    Float64Array::new(totals.into(), nulls)
}

/// Running sums within blocks of `width` rows (aligned at row 0) over the
/// rows a set of windows touches.
struct Blocks {
    width: usize,
    /// The first row summed (a block's start).
    base: usize,
    /// One past the last row summed: a block's end, or the last row.
    end: usize,
    /// `prefix[i - base]`: rows from `i`'s block start through `i`.
    prefix: Vec<f64>,
    /// `suffix[i - base]`: rows from `i` through its block's end.
    suffix: Vec<f64>,
}

impl Blocks {
    fn new(data: &[f64], rows: Range<usize>, width: usize) -> Self {
        let base = rows.start / width * width;
        let end = data
            .len()
            .min(rows.end.div_ceil(width).saturating_mul(width));
        let span = end.saturating_sub(base);
        let (mut prefix, mut suffix) = (vec![0.0; span], vec![0.0; span]);
        let mut start = base;
        while start < end {
            let stop = (start + width).min(end);
            let mut sum = 0.0;
            for i in start..stop {
                sum += data[i];
                prefix[i - base] = sum;
            }
            let mut sum = 0.0;
            for i in (start..stop).rev() {
                sum += data[i];
                suffix[i - base] = sum;
            }
            start = stop;
        }
        Blocks {
            width,
            base,
            end,
            prefix,
            suffix,
        }
    }

    /// The sum of `data` over `window` (not empty, within the rows summed).
    fn sum(&self, data: &[f64], window: Range<usize>) -> f64 {
        let (first, last) = (window.start, window.end - 1);
        let block_end = ((first / self.width + 1) * self.width).min(self.end);
        if first / self.width != last / self.width {
            self.suffix[first - self.base] + self.prefix[last - self.base]
        } else if first % self.width == 0 {
            self.prefix[last - self.base]
        } else if last + 1 == block_end {
            self.suffix[first - self.base]
        } else {
            // Not a shape a ROWS frame gives; added up directly.
            data[window].iter().fold(0.0, |sum, v| sum + v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(data: &[Option<f64>], window: Range<usize>, mean: bool) -> Option<f64> {
        let present: Vec<f64> = data[window].iter().flatten().copied().collect();
        let sum = present.iter().fold(0.0, |s, v| s + v);
        (!present.is_empty()).then(|| {
            if mean {
                sum / present.len() as f64
            } else {
                sum
            }
        })
    }

    #[test]
    fn every_frame_shape_matches_adding_up_the_window() {
        let mut next = crate::operators::test_random(5);
        for len in [1usize, 2, 7, 64, 301] {
            let data: Vec<Option<f64>> = (0..len)
                .map(|_| (next(9) != 0).then(|| next(200) as f64 - 100.0))
                .collect();
            let values = Float64Array::from(data.clone());
            for (first, last) in [
                (-3, 0),
                (-3, 2),
                (0, 5),
                (-5, -2),
                (2, 4),
                (0, 0),
                (-400, 10),
            ] {
                let frame = RowsFrame { first, last };
                for start_row in [0, len / 3] {
                    let windows: Vec<Range<usize>> =
                        (start_row..len).map(|row| frame.rows(row, len)).collect();
                    for mean in [false, true] {
                        let got = window_totals(&values, &windows, frame.width(), mean);
                        for (i, window) in windows.iter().enumerate() {
                            let want = naive(&data, window.clone(), mean);
                            let got = (!got.is_null(i)).then(|| got.value(i));
                            assert_eq!(got, want, "len {len} frame {frame:?} window {window:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_non_finite_value_spoils_only_its_own_windows() {
        let values = Float64Array::from(vec![
            1.0,
            f64::NAN,
            2.0,
            2.0,
            f64::INFINITY,
            1e300,
            3.0,
            3.0,
        ]);
        let frame = RowsFrame { first: -1, last: 0 };
        let windows: Vec<Range<usize>> = (0..8).map(|row| frame.rows(row, 8)).collect();
        let got = window_totals(&values, &windows, frame.width(), false);
        let got: Vec<f64> = got.values().to_vec();
        assert_eq!(got[0], 1.0);
        assert!(got[1].is_nan() && got[2].is_nan());
        assert_eq!(got[3], 4.0);
        assert!(got[4].is_infinite() && got[5].is_infinite());
        assert_eq!(got[6], 1e300);
        assert_eq!(got[7], 6.0);
    }
}
