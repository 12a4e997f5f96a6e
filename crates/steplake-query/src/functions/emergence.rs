//! `first_sustained(step, condition [, hold])`: the canonical "when did it
//! emerge?" answer.
//!
//! An aggregate over one series (group by run and name): the first step at
//! which `condition` becomes true and stays true
//! - for `hold` consecutive points (by step order), when `hold` is given;
//! - to the end of the series, when it is not.
//!
//! Returns NULL when the condition never holds that long. A NULL condition
//! counts as false; rows with a NULL step are ignored; input order does not
//! matter (points are sorted by step).
//!
//! NaN: the condition is plain SQL, and SQL orders NaN above every number (as
//! PostgreSQL does), so `value > 0.9` is TRUE for a NaN value. Write
//! `value > 0.9 AND NOT isnan(value)` when a NaN must not count as emerged.
//!
//! ```sql
//! SELECT run_id, first_sustained(step, value > 0.9, 5) AS emerged_at
//! FROM scalars WHERE name = 'eval/acc' GROUP BY run_id;
//! ```

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;

/// The `first_sustained` aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FirstSustained {
    signature: Signature,
}

impl FirstSustained {
    /// The UDAF, ready to register.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::from(FirstSustained {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl AggregateUDFImpl for FirstSustained {
    fn name(&self) -> &str {
        "first_sustained"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types.len() {
            2 => Ok(vec![DataType::Int64, DataType::Boolean]),
            3 => Ok(vec![DataType::Int64, DataType::Boolean, DataType::Int64]),
            n => plan_err!("first_sustained takes (step, condition [, hold]), got {n} arguments"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let hold = match args.exprs.get(2) {
            None => None,
            Some(expr) => match expr.downcast_ref::<Literal>().map(Literal::value) {
                Some(ScalarValue::Int64(Some(h))) if *h >= 1 => Some(*h as usize),
                Some(other) => {
                    return plan_err!("first_sustained: hold must be an integer >= 1, got {other}")
                }
                None => return plan_err!("first_sustained: hold must be a constant"),
            },
        };
        Ok(Box::new(FirstSustainedAccumulator {
            hold,
            points: Vec::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = |name: &str, item: DataType| -> FieldRef {
            Arc::new(Field::new(
                format!("{}[{name}]", args.name),
                DataType::List(Arc::new(Field::new("item", item, true))),
                true,
            ))
        };
        Ok(vec![
            list("steps", DataType::Int64),
            list("conditions", DataType::Boolean),
        ])
    }
}

#[derive(Debug)]
struct FirstSustainedAccumulator {
    hold: Option<usize>,
    /// (step, condition) of every point seen.
    points: Vec<(i64, bool)>,
}

impl FirstSustainedAccumulator {
    fn add(&mut self, steps: &Int64Array, conditions: &BooleanArray) {
        self.points.reserve(steps.len());
        for i in 0..steps.len() {
            if steps.is_valid(i) {
                let holds = conditions.is_valid(i) && conditions.value(i);
                self.points.push((steps.value(i), holds));
            }
        }
    }
}

/// The answer for points sorted by step.
pub fn first_sustained(points: &[(i64, bool)], hold: Option<usize>) -> Option<i64> {
    match hold {
        Some(hold) => {
            let mut run = 0;
            for (i, &(_, holds)) in points.iter().enumerate() {
                run = if holds { run + 1 } else { 0 };
                if run == hold {
                    return Some(points[i + 1 - hold].0);
                }
            }
            None
        }
        None => {
            let tail = points.iter().rev().take_while(|(_, holds)| *holds).count();
            (tail > 0).then(|| points[points.len() - tail].0)
        }
    }
}

impl Accumulator for FirstSustainedAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (Some(steps), Some(conditions)) = (values.first(), values.get(1)) else {
            return exec_err!("first_sustained: expected (step, condition)");
        };
        self.add(steps.as_primitive::<Int64Type>(), conditions.as_boolean());
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.points.sort_by_key(|&(step, _)| step);
        Ok(ScalarValue::Int64(first_sustained(&self.points, self.hold)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.points.capacity() * std::mem::size_of::<(i64, bool)>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let steps = Int64Array::from_iter_values(self.points.iter().map(|p| p.0));
        let conditions = BooleanArray::from_iter(self.points.iter().map(|p| Some(p.1)));
        Ok(vec![
            ScalarValue::List(Arc::new(single_list(Arc::new(steps)))),
            ScalarValue::List(Arc::new(single_list(Arc::new(conditions)))),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (Some(steps), Some(conditions)) = (states.first(), states.get(1)) else {
            return exec_err!("first_sustained: malformed partial state");
        };
        let steps = steps.as_list::<i32>();
        let conditions = conditions.as_list::<i32>();
        for i in 0..steps.len() {
            if steps.is_valid(i) && conditions.is_valid(i) {
                let s = steps.value(i);
                let c = conditions.value(i);
                self.add(s.as_primitive::<Int64Type>(), c.as_boolean());
            }
        }
        Ok(())
    }
}

/// A one-row list array holding `values`.
fn single_list(values: ArrayRef) -> ListArray {
    let field = Arc::new(Field::new("item", values.data_type().clone(), true));
    let offsets = arrow::buffer::OffsetBuffer::from_lengths([values.len()]);
    ListArray::new(field, offsets, values, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(conds: &[bool]) -> Vec<(i64, bool)> {
        conds
            .iter()
            .enumerate()
            .map(|(i, &c)| (i as i64 * 10, c))
            .collect()
    }

    #[test]
    fn to_the_end_of_the_series() {
        assert_eq!(
            first_sustained(&points(&[false, true, false, true, true]), None),
            Some(30)
        );
        assert_eq!(first_sustained(&points(&[true, true, false]), None), None);
        assert_eq!(first_sustained(&points(&[]), None), None);
    }

    #[test]
    fn for_hold_points() {
        let p = points(&[true, false, true, true, false, true, true, true]);
        assert_eq!(first_sustained(&p, Some(2)), Some(20));
        assert_eq!(first_sustained(&p, Some(3)), Some(50));
        assert_eq!(first_sustained(&p, Some(4)), None);
        assert_eq!(first_sustained(&p, Some(1)), Some(0));
    }
}
