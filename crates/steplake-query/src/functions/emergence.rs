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

use super::literal_argument;
use super::points::{Points, SeriesAccumulator};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

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
        let hold = match literal_argument(args.exprs, 2, "first_sustained", "hold")? {
            None => None,
            Some(ScalarValue::Int64(Some(h))) if h >= 1 => Some(h as usize),
            Some(other) => {
                return plan_err!("first_sustained: hold must be an integer >= 1, got {other}")
            }
        };
        Ok(Box::new(SeriesAccumulator::<bool>::new(
            "first_sustained",
            move |points| {
                let pairs: Vec<(i64, bool)> = points
                    .steps
                    .iter()
                    .copied()
                    .zip(points.values.iter().copied())
                    .collect();
                Ok(ScalarValue::Int64(first_sustained(&pairs, hold)))
            },
        )))
    }

    /// Points are sorted by step inside, so input order never matters.
    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(Points::<bool>::state_fields(args.name))
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
