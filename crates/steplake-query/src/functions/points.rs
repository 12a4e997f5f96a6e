//! Collecting the (step, value) points of one series inside an aggregate,
//! with the partial state (two lists) DataFusion needs to merge partitions:
//! [`SeriesAccumulator`] for one series, [`SeriesGroups`] for every group
//! of a GROUP BY at once (one pass over each batch, no per-group slicing).
//!
//! A point's key is a step (`i64`) for the series functions, or any number
//! (`f64`) for a fit such as `fit_power_law(x, y)`; see [`PointKey`].

use std::sync::Arc;

use arrow::array::PrimitiveArray;
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, ListArray};
use arrow::buffer::OffsetBuffer;
use arrow::compute::cast;
use arrow::datatypes::{ArrowPrimitiveType, DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

/// A value type an aggregate collects per point.
pub trait PointValue: Copy + Default + std::fmt::Debug + Send + Sync + 'static {
    /// Its Arrow type.
    const DATA_TYPE: DataType;
    /// The value at `row`, or `None` to skip the point.
    fn read(array: &dyn Array, row: usize) -> Option<Self>;
    /// An array of values.
    fn to_array(values: &[Self]) -> ArrayRef;
}

impl PointValue for bool {
    const DATA_TYPE: DataType = DataType::Boolean;
    /// A NULL condition counts as false.
    fn read(array: &dyn Array, row: usize) -> Option<Self> {
        Some(array.is_valid(row) && array.as_boolean().value(row))
    }
    fn to_array(values: &[Self]) -> ArrayRef {
        Arc::new(BooleanArray::from(values.to_vec()))
    }
}

impl PointValue for f64 {
    const DATA_TYPE: DataType = DataType::Float64;
    /// A NULL value is skipped.
    fn read(array: &dyn Array, row: usize) -> Option<Self> {
        array
            .is_valid(row)
            .then(|| array.as_primitive::<Float64Type>().value(row))
    }
    fn to_array(values: &[Self]) -> ArrayRef {
        Arc::new(Float64Array::from(values.to_vec()))
    }
}

/// What orders the points of a series: a step, or the `x` of a fit.
pub trait PointKey: Copy + Default + std::fmt::Debug + Send + Sync + 'static {
    /// Its Arrow type.
    type Arrow: ArrowPrimitiveType<Native = Self>;
    /// What the partial state calls the list of keys.
    const STATE_NAME: &'static str;
    /// Orders two keys (a total order).
    fn order(a: &Self, b: &Self) -> std::cmp::Ordering;
}

impl PointKey for i64 {
    type Arrow = Int64Type;
    const STATE_NAME: &'static str = "steps";
    fn order(a: &Self, b: &Self) -> std::cmp::Ordering {
        a.cmp(b)
    }
}

impl PointKey for f64 {
    type Arrow = Float64Type;
    const STATE_NAME: &'static str = "x";
    fn order(a: &Self, b: &Self) -> std::cmp::Ordering {
        a.total_cmp(b)
    }
}

/// Points of one series, in arrival order until [`Points::sort`].
#[derive(Debug, Default)]
pub struct Points<T, K = i64> {
    /// Keys: steps, or a fit's `x`.
    pub steps: Vec<K>,
    /// Values, one per key.
    pub values: Vec<T>,
}

impl<T: PointValue, K: PointKey> Points<T, K> {
    /// Adds the rows of a (key, value) pair of arrays; NULL keys are skipped.
    pub fn add(&mut self, steps: &dyn Array, values: &dyn Array) {
        let steps = steps.as_primitive::<K::Arrow>();
        for row in 0..steps.len() {
            self.add_row(steps, values, row);
        }
    }

    /// Adds the point of `row` (skipped when its key is NULL or its value
    /// says so).
    #[inline]
    fn add_row(&mut self, steps: &PrimitiveArray<K::Arrow>, values: &dyn Array, row: usize) {
        if steps.is_valid(row) {
            if let Some(v) = T::read(values, row) {
                self.steps.push(steps.value(row));
                self.values.push(v);
            }
        }
    }

    /// Heap bytes of the two vectors' capacity.
    fn capacity_bytes(&self) -> usize {
        self.steps.capacity() * std::mem::size_of::<K>()
            + self.values.capacity() * std::mem::size_of::<T>()
    }

    /// Sorts the points by key (stable: equal keys keep arrival order), so
    /// that an answer does not depend on the order partitions arrive in.
    pub fn sort(&mut self) {
        // Points mostly arrive in step order (the files are sorted).
        if self.steps.is_sorted_by(|a, b| K::order(a, b).is_le()) {
            return;
        }
        let mut order: Vec<usize> = (0..self.steps.len()).collect();
        order.sort_by(|&i, &j| K::order(&self.steps[i], &self.steps[j]));
        self.steps = order.iter().map(|&i| self.steps[i]).collect();
        self.values = order.iter().map(|&i| self.values[i]).collect();
    }

    /// Heap bytes held.
    pub fn size(&self) -> usize {
        self.capacity_bytes()
    }

    /// The partial state: a list of keys and a list of values.
    pub fn state(&self) -> Vec<ScalarValue> {
        vec![
            ScalarValue::List(Arc::new(single_list(Arc::new(
                PrimitiveArray::<K::Arrow>::from_iter_values(self.steps.iter().copied()),
            )))),
            ScalarValue::List(Arc::new(single_list(T::to_array(&self.values)))),
        ]
    }

    /// Merges partial states produced by [`Points::state`].
    pub fn merge(&mut self, states: &[ArrayRef], function: &str) -> Result<()> {
        let (Some(steps), Some(values)) = (states.first(), states.get(1)) else {
            return exec_err!("{function}: malformed partial state");
        };
        let (steps, values) = (steps.as_list::<i32>(), values.as_list::<i32>());
        for i in 0..steps.len() {
            if steps.is_valid(i) && values.is_valid(i) {
                self.add(steps.value(i).as_ref(), values.value(i).as_ref());
            }
        }
        Ok(())
    }

    /// The fields of the partial state.
    pub fn state_fields(name: &str) -> Vec<FieldRef> {
        let list = |part: &str, item: DataType| -> FieldRef {
            Arc::new(Field::new(
                format!("{name}[{part}]"),
                DataType::List(Arc::new(Field::new("item", item, true))),
                true,
            ))
        };
        vec![
            list(K::STATE_NAME, K::Arrow::DATA_TYPE),
            list("values", T::DATA_TYPE),
        ]
    }
}

/// A one-row list array holding `values`.
pub fn single_list(values: ArrayRef) -> ListArray {
    let field = Arc::new(Field::new("item", values.data_type().clone(), true));
    let offsets = OffsetBuffer::from_lengths([values.len()]);
    ListArray::new(field, offsets, values, None)
}

/// What an aggregate computes from its series' points, sorted by key.
pub type Finish<T, K = i64> = Box<dyn FnMut(&Points<T, K>) -> Result<ScalarValue> + Send + Sync>;

/// Which of an aggregate's `update_batch` arguments hold a point.
#[derive(Debug, Clone, Copy)]
pub struct PointArguments {
    /// The key's (a step of any integer type: an `ORDER BY` key is read as
    /// Int64; or any number for an `f64` key).
    pub step: usize,
    /// The value's.
    pub value: usize,
}

impl PointArguments {
    /// `f(step, value, ...)`.
    pub const STEP_VALUE: PointArguments = PointArguments { step: 0, value: 1 };

    /// The keys (as `K`) and values of `arguments`.
    fn read<'a, K: PointKey>(
        self,
        arguments: &'a [ArrayRef],
        function: &str,
    ) -> Result<(ArrayRef, &'a ArrayRef)> {
        match (arguments.get(self.step), arguments.get(self.value)) {
            (Some(steps), Some(values)) => Ok((cast(steps, &K::Arrow::DATA_TYPE)?, values)),
            _ => exec_err!("{function}: expected ({}, value) arguments", K::STATE_NAME),
        }
    }
}

/// A series aggregate: what it reads of each row and how it answers from a
/// series' sorted points. [`series_accumulators!`] gives its
/// `AggregateUDFImpl` both accumulators from this. `K` is the points' key:
/// a step, or `f64` for a fit over any `x`.
pub trait SeriesAggregate<K: PointKey = i64> {
    /// Its SQL name (for errors).
    fn function(&self) -> &'static str;

    /// Where its points are among the arguments (default `f(step, value, ...)`).
    fn point_arguments(&self, _args: &AccumulatorArgs) -> Result<PointArguments> {
        Ok(PointArguments::STEP_VALUE)
    }

    /// Its answer for one series, given the call's constant arguments.
    fn finish(&self, args: &AccumulatorArgs) -> Result<Finish<f64, K>>;
}

/// The accumulator of a [`SeriesAggregate`] over one series.
pub fn series_accumulator<K: PointKey>(
    aggregate: &impl SeriesAggregate<K>,
    args: &AccumulatorArgs,
) -> Result<Box<dyn datafusion::logical_expr::Accumulator>> {
    Ok(Box::new(SeriesAccumulator::new(
        aggregate.function(),
        aggregate.point_arguments(args)?,
        aggregate.finish(args)?,
    )))
}

/// The accumulator of a [`SeriesAggregate`] over every group of a GROUP BY.
pub fn series_groups<K: PointKey>(
    aggregate: &impl SeriesAggregate<K>,
    args: &AccumulatorArgs,
) -> Result<Box<dyn GroupsAccumulator>> {
    Ok(Box::new(SeriesGroups::new(
        aggregate.function(),
        aggregate.point_arguments(args)?,
        args.return_type(),
        aggregate.finish(args)?,
    )))
}

/// `accumulator`, `groups_accumulator_supported` and
/// `create_groups_accumulator` of an `AggregateUDFImpl` that is a
/// [`SeriesAggregate`].
macro_rules! series_accumulators {
    () => {
        fn accumulator(
            &self,
            args: datafusion::logical_expr::function::AccumulatorArgs,
        ) -> datafusion::common::Result<Box<dyn datafusion::logical_expr::Accumulator>> {
            $crate::functions::points::series_accumulator(self, &args)
        }

        fn groups_accumulator_supported(
            &self,
            _args: datafusion::logical_expr::function::AccumulatorArgs,
        ) -> bool {
            true
        }

        fn create_groups_accumulator(
            &self,
            args: datafusion::logical_expr::function::AccumulatorArgs,
        ) -> datafusion::common::Result<Box<dyn datafusion::logical_expr::GroupsAccumulator>> {
            $crate::functions::points::series_groups(self, &args)
        }
    };
}
pub(crate) use series_accumulators;

/// The accumulator of an aggregate over one series: collects (step, value)
/// points, merges partial states, sorts by step, then calls `finish`.
pub struct SeriesAccumulator<T, K = i64> {
    function: &'static str,
    arguments: PointArguments,
    points: Points<T, K>,
    finish: Finish<T, K>,
}

impl<T: PointValue, K: PointKey> SeriesAccumulator<T, K> {
    /// An accumulator for `function` that reads its points from
    /// `arguments` and computes its result with `finish`.
    pub fn new(function: &'static str, arguments: PointArguments, finish: Finish<T, K>) -> Self {
        SeriesAccumulator {
            function,
            arguments,
            points: Points::default(),
            finish,
        }
    }
}

impl<T, K> std::fmt::Debug for SeriesAccumulator<T, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesAccumulator")
            .field("function", &self.function)
            .field("points", &self.points.steps.len())
            .finish()
    }
}

impl<T: PointValue, K: PointKey> datafusion::logical_expr::Accumulator for SeriesAccumulator<T, K> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (steps, values) = self.arguments.read::<K>(values, self.function)?;
        self.points.add(steps.as_ref(), values.as_ref());
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.points.sort();
        (self.finish)(&self.points)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.points.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(self.points.state())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.points.merge(states, self.function)
    }
}

/// The accumulator of an aggregate over the series of every group of a
/// GROUP BY: each group collects its points as [`SeriesAccumulator`] does
/// (same partial state), and `finish` computes each group's answer.
pub struct SeriesGroups<T, K = i64> {
    function: &'static str,
    arguments: PointArguments,
    groups: Vec<Points<T, K>>,
    /// Heap bytes of every group's points (their vectors' capacity).
    heap_bytes: usize,
    finish: Finish<T, K>,
    /// The type of an answer (for the array of none).
    answer_type: DataType,
}

impl<T: PointValue, K: PointKey> SeriesGroups<T, K> {
    /// Groups for `function`, reading points from `arguments`, answering
    /// values of `answer_type` with `finish`.
    pub fn new(
        function: &'static str,
        arguments: PointArguments,
        answer_type: &DataType,
        finish: Finish<T, K>,
    ) -> Self {
        SeriesGroups {
            function,
            arguments,
            groups: Vec::new(),
            heap_bytes: 0,
            finish,
            answer_type: answer_type.clone(),
        }
    }

    /// Adds the points of the rows that `keep` keeps to their groups.
    fn add(
        &mut self,
        steps: &PrimitiveArray<K::Arrow>,
        values: &dyn Array,
        group_indices: &[usize],
        keep: Option<&BooleanArray>,
    ) {
        for (row, &group) in group_indices.iter().enumerate() {
            if !kept(keep, row) {
                continue;
            }
            self.grow(group, |points| points.add_row(steps, values, row));
        }
    }

    /// Adds to `group`'s points with `add`, keeping `heap_bytes` current.
    #[inline]
    fn grow(&mut self, group: usize, add: impl FnOnce(&mut Points<T, K>)) {
        let points = &mut self.groups[group];
        let before = points.capacity_bytes();
        add(points);
        self.heap_bytes = self.heap_bytes + points.capacity_bytes() - before;
    }

    /// The groups `emit_to` names, taken out.
    fn take(&mut self, emit_to: EmitTo) -> Vec<Points<T, K>> {
        let taken = emit_to.take_needed(&mut self.groups);
        self.heap_bytes -= taken.iter().map(Points::capacity_bytes).sum::<usize>();
        taken
    }
}

/// The answers of a group accumulator's groups as one array (an empty one
/// of `answer_type` for no groups).
pub(crate) fn answers_array(answers: Vec<ScalarValue>, answer_type: &DataType) -> Result<ArrayRef> {
    if answers.is_empty() {
        return Ok(arrow::array::new_empty_array(answer_type));
    }
    ScalarValue::iter_to_array(answers)
}

/// A list column of `items`, cut into rows by `offsets`.
pub(crate) fn list_column(offsets: &OffsetBuffer<i32>, items: ArrayRef) -> Result<ArrayRef> {
    let field = Arc::new(Field::new("item", items.data_type().clone(), true));
    Ok(Arc::new(ListArray::try_new(
        field,
        offsets.clone(),
        items,
        None,
    )?))
}

/// Whether a group accumulator's `filter` keeps `row`.
#[inline]
pub(crate) fn kept(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_none_or(|k| k.is_valid(row) && k.value(row))
}

/// The partial states of `groups`: two list columns, one row per group,
/// its keys and its values (the state [`Points::state`] gives one series).
fn states_of<T: PointValue, K: PointKey>(groups: &[Points<T, K>]) -> Result<Vec<ArrayRef>> {
    let offsets = OffsetBuffer::from_lengths(groups.iter().map(|g| g.steps.len()));
    let steps = PrimitiveArray::<K::Arrow>::from_iter_values(
        groups.iter().flat_map(|g| g.steps.iter().copied()),
    );
    let values: Vec<T> = groups
        .iter()
        .flat_map(|g| g.values.iter().copied())
        .collect();
    Ok(vec![
        list_column(&offsets, Arc::new(steps))?,
        list_column(&offsets, T::to_array(&values))?,
    ])
}

impl<T, K> std::fmt::Debug for SeriesGroups<T, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesGroups")
            .field("function", &self.function)
            .field("groups", &self.groups.len())
            .finish()
    }
}

impl<T: PointValue, K: PointKey> GroupsAccumulator for SeriesGroups<T, K> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Points::default);
        let (steps, values) = self.arguments.read::<K>(values, self.function)?;
        self.add(
            steps.as_primitive::<K::Arrow>(),
            values.as_ref(),
            group_indices,
            opt_filter,
        );
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let mut answers = Vec::new();
        for mut points in self.take(emit_to) {
            points.sort();
            answers.push((self.finish)(&points)?);
        }
        answers_array(answers, &self.answer_type)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        states_of(&self.take(emit_to))
    }

    /// Each row becomes the state of a one-point series (no points when
    /// skipped).
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let (steps, values) = self.arguments.read::<K>(values, self.function)?;
        let steps = steps.as_primitive::<K::Arrow>();
        let rows: Vec<Points<T, K>> = (0..steps.len())
            .map(|row| {
                let mut points = Points::default();
                if kept(opt_filter, row) {
                    points.add_row(steps, values.as_ref(), row);
                }
                points
            })
            .collect();
        states_of(&rows)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Points::default);
        let (Some(steps), Some(values)) = (values.first(), values.get(1)) else {
            return exec_err!("{}: malformed partial state", self.function);
        };
        let (steps, values) = (steps.as_list::<i32>(), values.as_list::<i32>());
        for (row, &group) in group_indices.iter().enumerate() {
            if steps.is_valid(row) && values.is_valid(row) {
                let (steps, values) = (steps.value(row), values.value(row));
                self.grow(group, |points| points.add(steps.as_ref(), values.as_ref()));
            }
        }
        Ok(())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.groups.capacity() * std::mem::size_of::<Points<T, K>>()
            + self.heap_bytes
    }
}
