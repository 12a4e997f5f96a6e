//! Collecting the (step, value) points of one series inside an aggregate,
//! with the partial state (two lists) DataFusion needs to merge partitions.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, ListArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{exec_err, Result, ScalarValue};

/// A value type an aggregate collects per point.
pub trait PointValue: Copy + std::fmt::Debug + Send + Sync + 'static {
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

/// Points of one series, in arrival order until [`Points::sort`].
#[derive(Debug, Default)]
pub struct Points<T> {
    /// Steps.
    pub steps: Vec<i64>,
    /// Values, one per step.
    pub values: Vec<T>,
}

impl<T: PointValue> Points<T> {
    /// Adds the rows of a (step, value) pair of arrays; NULL steps are skipped.
    pub fn add(&mut self, steps: &dyn Array, values: &dyn Array) {
        let step_values = steps.as_primitive::<Int64Type>();
        for row in 0..steps.len() {
            if steps.is_valid(row) {
                if let Some(v) = T::read(values, row) {
                    self.steps.push(step_values.value(row));
                    self.values.push(v);
                }
            }
        }
    }

    /// `update_batch` of an aggregate whose first two arguments are (step, value).
    pub fn update(&mut self, arguments: &[ArrayRef], function: &str) -> Result<()> {
        match (arguments.first(), arguments.get(1)) {
            (Some(steps), Some(values)) => {
                self.add(steps.as_ref(), values.as_ref());
                Ok(())
            }
            _ => exec_err!("{function}: expected (step, value) arguments"),
        }
    }

    /// Sorts the points by step (stable: equal steps keep arrival order).
    pub fn sort(&mut self) {
        let mut order: Vec<usize> = (0..self.steps.len()).collect();
        order.sort_by_key(|&i| self.steps[i]);
        self.steps = order.iter().map(|&i| self.steps[i]).collect();
        self.values = order.iter().map(|&i| self.values[i]).collect();
    }

    /// Heap bytes held.
    pub fn size(&self) -> usize {
        self.steps.capacity() * 8 + self.values.capacity() * std::mem::size_of::<T>()
    }

    /// The partial state: a list of steps and a list of values.
    pub fn state(&self) -> Vec<ScalarValue> {
        vec![
            ScalarValue::List(Arc::new(single_list(Arc::new(Int64Array::from(
                self.steps.clone(),
            ))))),
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
        vec![list("steps", DataType::Int64), list("values", T::DATA_TYPE)]
    }
}

/// A one-row list array holding `values`.
pub fn single_list(values: ArrayRef) -> ListArray {
    let field = Arc::new(Field::new("item", values.data_type().clone(), true));
    let offsets = OffsetBuffer::from_lengths([values.len()]);
    ListArray::new(field, offsets, values, None)
}

/// What an aggregate computes from its series' points, sorted by step.
pub type Finish<T> = Box<dyn FnMut(&Points<T>) -> Result<ScalarValue> + Send + Sync>;

/// The accumulator of an aggregate over one series: collects (step, value)
/// points, merges partial states, sorts by step, then calls `finish`.
pub struct SeriesAccumulator<T> {
    function: &'static str,
    points: Points<T>,
    finish: Finish<T>,
}

impl<T: PointValue> SeriesAccumulator<T> {
    /// An accumulator for `function` that computes its result with `finish`.
    pub fn new(
        function: &'static str,
        finish: impl FnMut(&Points<T>) -> Result<ScalarValue> + Send + Sync + 'static,
    ) -> Self {
        SeriesAccumulator {
            function,
            points: Points {
                steps: Vec::new(),
                values: Vec::new(),
            },
            finish: Box::new(finish),
        }
    }
}

impl<T> std::fmt::Debug for SeriesAccumulator<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesAccumulator")
            .field("function", &self.function)
            .field("points", &self.points.steps.len())
            .finish()
    }
}

impl<T: PointValue> datafusion::logical_expr::Accumulator for SeriesAccumulator<T> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.points.update(values, self.function)
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
