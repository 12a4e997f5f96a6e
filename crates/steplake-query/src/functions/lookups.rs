//! Reading one series at a step: `value_at(step, value, at)`, the value as of
//! a step, and `crossing(step, value, threshold [, direction])`, the step at
//! which a threshold is reached.
//!
//! Both are aggregates over one series (group by run and name), and input
//! order does not matter.
//!
//! - `value_at` returns the value at the latest step at or before `at` (an
//!   as-of lookup), or NULL when the series starts after `at`. `at` may be a
//!   column, e.g. an emergence step joined in, but must be the same on every
//!   row of a group. NULL values are skipped; a NaN is a logged value and is
//!   returned as such.
//! - `crossing` returns the step, linearly interpolated between the two
//!   points around it, at which the series first reaches `threshold` coming
//!   from the other side: from below for `'up'`, from above for `'down'`,
//!   either for `'either'` (the default). A series that starts at or past the
//!   threshold has not crossed it there. The result is a DOUBLE (a crossing
//!   falls between logged steps); NULL when there is none. NULL, NaN and ±Inf
//!   values are skipped.
//!
//! ```sql
//! SELECT run_id, value_at(step, value, 10000) AS acc_at_10k,
//!        crossing(step, value, 0.9, 'up') AS reached_90
//! FROM scalars WHERE name = 'eval/acc' GROUP BY run_id;
//! ```

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

use super::arguments::{self, Kind, Parameters};
use super::points::{series_accumulators, Finish, Points, SeriesAggregate};

const VALUE_AT: Parameters = Parameters {
    function: "value_at",
    usage: "(step, value, at)",
    list: &[
        ("step", Kind::Step),
        ("value", Kind::Value),
        ("at", Kind::Step),
    ],
    required: 3,
};

const CROSSING: Parameters = Parameters {
    function: "crossing",
    usage: "(step, value, threshold [, direction])",
    list: &[
        ("step", Kind::Step),
        ("value", Kind::Value),
        ("threshold", Kind::Number),
        ("direction", Kind::Text),
    ],
    required: 3,
};

/// The `value_at` aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValueAt {
    signature: Signature,
}

impl ValueAt {
    /// The UDAF, ready to register.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::from(ValueAt {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl AggregateUDFImpl for ValueAt {
    fn name(&self) -> &str {
        VALUE_AT.function
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        VALUE_AT.coerce(arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(AsOf::default()))
    }

    /// Only the best point so far is kept, whatever the order.
    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let field = |part: &str, t: DataType| -> FieldRef {
            Arc::new(Field::new(format!("{}[{part}]", args.name), t, true))
        };
        Ok(vec![
            field("at", DataType::Int64),
            field("step", DataType::Int64),
            field("value", DataType::Float64),
        ])
    }
}

/// The state of `value_at`: the step asked for, and the latest point at or
/// before it seen so far.
#[derive(Debug, Default)]
struct AsOf {
    at: Option<i64>,
    best: Option<(i64, f64)>,
}

impl AsOf {
    /// Adds the rows of (step, value, at) arrays; a row whose `at` is NULL
    /// is skipped (an outer join that found no step to ask for).
    fn add(&mut self, columns: [&dyn Array; 3]) -> Result<()> {
        let [steps, values, ats] = columns;
        let (steps, values, ats) = (
            steps.as_primitive::<Int64Type>(),
            values.as_primitive::<Float64Type>(),
            ats.as_primitive::<Int64Type>(),
        );
        for row in 0..steps.len() {
            if !ats.is_valid(row) {
                continue;
            }
            let at = self.set_at(ats.value(row))?;
            if steps.is_valid(row) && values.is_valid(row) && steps.value(row) <= at {
                self.offer(steps.value(row), values.value(row));
            }
        }
        Ok(())
    }

    /// Records the step asked for; it is the same for the whole group.
    fn set_at(&mut self, at: i64) -> Result<i64> {
        match self.at {
            Some(known) if known != at => plan_err!(
                "value_at: at must be the same on every row of a group, got {known} and {at}; \
                 group by what at depends on"
            ),
            _ => {
                self.at = Some(at);
                Ok(at)
            }
        }
    }

    /// Keeps (step, value), a point at or before `at`, when it is the latest
    /// so far (a step seen twice keeps the value seen last).
    fn offer(&mut self, step: i64, value: f64) {
        if self.best.is_none_or(|(best, _)| step >= best) {
            self.best = Some((step, value));
        }
    }
}

impl Accumulator for AsOf {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [steps, values, ats] = values else {
            return exec_err!("value_at: expected (step, value, at) arguments");
        };
        self.add([steps.as_ref(), values.as_ref(), ats.as_ref()])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(self.best.map(|(_, value)| value)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Int64(self.at),
            ScalarValue::Int64(self.best.map(|(step, _)| step)),
            ScalarValue::Float64(self.best.map(|(_, value)| value)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [ats, steps, values] = states else {
            return exec_err!("value_at: malformed partial state");
        };
        self.add([steps.as_ref(), values.as_ref(), ats.as_ref()])
    }
}

/// Which way `crossing` looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From below to at or above the threshold.
    Up,
    /// From above to at or below it.
    Down,
    /// Whichever comes first.
    Either,
}

impl Direction {
    fn parse(value: Option<&ScalarValue>) -> Result<Self> {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(Direction::Either);
        };
        match arguments::text(value)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("up") => Ok(Direction::Up),
            Some("down") => Ok(Direction::Down),
            Some("either") => Ok(Direction::Either),
            _ => plan_err!("crossing: direction must be 'up', 'down' or 'either', got {value}"),
        }
    }
}

/// The interpolated step at which `values` (by `steps`, sorted) first
/// reaches `threshold` from the other side, in `direction`. Non-finite
/// values are skipped.
pub fn crossing(
    steps: &[i64],
    values: &[f64],
    threshold: f64,
    direction: Direction,
) -> Option<f64> {
    let mut points = steps
        .iter()
        .zip(values)
        .filter(|(_, v)| v.is_finite())
        .map(|(&s, &v)| (s as f64, v));
    let mut previous = points.next()?;
    for (step, value) in points {
        let (s0, v0) = previous;
        let up = v0 < threshold && value >= threshold;
        let down = v0 > threshold && value <= threshold;
        let crossed = match direction {
            Direction::Up => up,
            Direction::Down => down,
            Direction::Either => up || down,
        };
        if crossed {
            return Some(s0 + (threshold - v0) / (value - v0) * (step - s0));
        }
        previous = (step, value);
    }
    None
}

/// The `crossing` aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Crossing {
    signature: Signature,
}

impl Crossing {
    /// The UDAF, ready to register.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::from(Crossing {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl SeriesAggregate for Crossing {
    fn function(&self) -> &'static str {
        CROSSING.function
    }

    /// The first crossing of a series' points, as the aggregate's value.
    fn finish(&self, args: &AccumulatorArgs) -> Result<Finish<f64>> {
        let constants = arguments::literal_arguments(args.exprs, 2, &CROSSING)?;
        let threshold = match constants.first().and_then(|c| c.as_ref()) {
            Some(t) => match arguments::number(t) {
                Some(t) if t.is_finite() => t,
                _ => return plan_err!("crossing: threshold must be a finite number, got {t}"),
            },
            None => return plan_err!("crossing: threshold is required"),
        };
        let direction = Direction::parse(constants.get(1).and_then(|c| c.as_ref()))?;
        Ok(Box::new(move |points: &Points<f64>| {
            Ok(ScalarValue::Float64(crossing(
                &points.steps,
                &points.values,
                threshold,
                direction,
            )))
        }))
    }
}

impl AggregateUDFImpl for Crossing {
    fn name(&self) -> &str {
        CROSSING.function
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        CROSSING.coerce(arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    series_accumulators!();

    /// Points are sorted by step inside, so input order never matters.
    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(Points::<f64>::state_fields(args.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crossing_is_interpolated_between_the_points_around_it() {
        let steps = [0, 10, 20, 30, 40];
        let acc = [0.1, 0.5, 0.8, 1.0, 0.8];
        assert_eq!(crossing(&steps, &acc, 0.9, Direction::Up), Some(25.0));
        assert_eq!(crossing(&steps, &acc, 0.9, Direction::Down), Some(35.0));
        assert_eq!(crossing(&steps, &acc, 0.9, Direction::Either), Some(25.0));
        // Reaching the threshold exactly is a crossing at that step.
        assert_eq!(crossing(&steps, &acc, 0.8, Direction::Up), Some(20.0));
        // A series that starts past the threshold has not crossed it.
        assert_eq!(crossing(&steps, &acc, 0.05, Direction::Either), None);
        assert_eq!(crossing(&steps, &acc, 2.0, Direction::Either), None);
        let with_nan = [0.1, f64::NAN, 0.8, 1.0, 0.7];
        let step = crossing(&steps, &with_nan, 0.45, Direction::Up).unwrap();
        assert!((step - 10.0).abs() < 1e-9, "{step}");
    }

    #[test]
    fn value_at_keeps_the_latest_point_at_or_before_the_step_asked_for() {
        use arrow::array::{Float64Array, Int64Array};
        let steps = Int64Array::from(vec![30, 10, 20, 0, 15]);
        let values = Float64Array::from(vec![3.0, 1.0, 2.0, 0.0, 1.5]);
        let ats = Int64Array::from(vec![Some(25), Some(25), Some(25), Some(25), None]);
        let mut state = AsOf::default();
        state.add([&steps, &values, &ats]).unwrap();
        assert_eq!(state.evaluate().unwrap(), ScalarValue::Float64(Some(2.0)));
        let error = state.set_at(26).unwrap_err().to_string();
        assert!(error.contains("got 25 and 26"), "{error}");
    }
}
