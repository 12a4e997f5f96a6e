//! `loss_curve_prior(fit)`: the `fit_loss_curve` fits of several finished
//! runs of one setup, combined into one prior for `fit_loss_curve(step,
//! value, lr, prior)`.
//!
//! One finished run lends its α and C, but not how much they vary from run
//! to run, so an interval built on one prior is too narrow. A combined prior
//! keeps every run's (L₀, A, α, C) as a member of an ensemble: the fit of a
//! new run then fits (L₀, A) once per member, with that member's α and C,
//! and `predict_loss_curve` returns the mean of the members' predictions,
//! with their spread in the interval (see [`LossCurve::predict_with_error`]).
//!
//! Which fits count: non-NULL ones whose C is above 0 (a run that never
//! annealed says nothing of annealing) and whose α is finite. All must share
//! one λ. The prior's own parameters are the members' means, and its
//! covariance of (α, C) is theirs across members. With no fit left the
//! prior is NULL; with one, it is that fit.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

use super::loss_curve::{fit_fields, fit_value, read_fit, LossCurve};
use super::points::single_list;

const NAME: &str = "loss_curve_prior";

/// The `loss_curve_prior` aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LossCurvePrior {
    signature: Signature,
}

impl LossCurvePrior {
    /// The UDAF, ready to register.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::from(LossCurvePrior {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl AggregateUDFImpl for LossCurvePrior {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [fit @ DataType::Struct(fields)]
                if fit_fields()
                    .iter()
                    .all(|f| fields.iter().any(|g| g.name() == f.name())) =>
            {
                Ok(vec![fit.clone()])
            }
            _ => plan_err!(
                "{NAME} takes (fit), the result of fit_loss_curve on each finished run, got {arg_types:?}"
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(fit_fields()))
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(PriorAccumulator { fits: Vec::new() }))
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[fits]", args.name),
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(fit_fields()),
                true,
            ))),
            true,
        ))])
    }
}

/// The fits that count, in arrival order.
#[derive(Debug)]
struct PriorAccumulator {
    fits: Vec<LossCurve>,
}

impl PriorAccumulator {
    fn add(&mut self, fits: &dyn Array) -> Result<()> {
        let Some(fits) = fits.as_struct_opt() else {
            return exec_err!("{NAME}: expected the result of fit_loss_curve");
        };
        for row in 0..fits.len() {
            if fits.is_null(row) {
                continue;
            }
            let fit = read_fit(fits, row, NAME)?;
            if fit.c > 0.0 && fit.c.is_finite() && fit.alpha.is_finite() {
                self.fits.push(fit);
            }
        }
        Ok(())
    }
}

impl Accumulator for PriorAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values.first() {
            Some(fits) => self.add(fits.as_ref()),
            None => exec_err!("{NAME}: expected (fit)"),
        }
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        match combine(&self.fits)? {
            Some(prior) => fit_value(&prior),
            None => ScalarValue::try_from(DataType::Struct(fit_fields())),
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .fits
                .iter()
                .map(|f| std::mem::size_of_val(f) + f.schedule.knots.len() * 40)
                .sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values = self
            .fits
            .iter()
            .map(fit_value)
            .collect::<Result<Vec<_>>>()?;
        let array = if values.is_empty() {
            arrow::array::new_empty_array(&DataType::Struct(fit_fields()))
        } else {
            ScalarValue::iter_to_array(values)?
        };
        Ok(vec![ScalarValue::List(Arc::new(single_list(array)))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(lists) = states.first() else {
            return exec_err!("{NAME}: malformed partial state");
        };
        let lists = lists.as_list::<i32>();
        for i in 0..lists.len() {
            if lists.is_valid(i) {
                self.add(lists.value(i).as_ref())?;
            }
        }
        Ok(())
    }
}

/// `fits` as one prior (see the module doc); `None` when there is none.
fn combine(fits: &[LossCurve]) -> Result<Option<LossCurve>> {
    let Some(first) = fits.first() else {
        return Ok(None);
    };
    if fits.len() == 1 {
        return Ok(Some(first.clone()));
    }
    let lambda = first.schedule.lambda;
    if let Some(other) = fits.iter().find(|f| f.schedule.lambda != lambda) {
        return exec_err!(
            "{NAME}: the fits use different lambdas ({lambda} and {}); fit every run with the same lambda",
            other.schedule.lambda
        );
    }
    let m = fits.len() as f64;
    let mean = |get: fn(&LossCurve) -> f64| fits.iter().map(get).sum::<f64>() / m;
    let (alpha, c) = (mean(|f| f.alpha), mean(|f| f.c));
    // The (α, C) block: their covariance across the members.
    let mut cov = [0.0; 16];
    for fit in fits {
        let deviation = [fit.alpha - alpha, fit.c - c];
        for (i, di) in deviation.iter().enumerate() {
            for (j, dj) in deviation.iter().enumerate() {
                cov[(i + 2) * 4 + j + 2] += di * dj / (m - 1.0);
            }
        }
    }
    Ok(Some(LossCurve {
        l0: mean(|f| f.l0),
        a: mean(|f| f.a),
        alpha,
        c,
        cov,
        rmse: mean(|f| f.rmse),
        noise: mean(|f| f.noise),
        points: fits.iter().map(|f| f.points).sum(),
        warmup_end: first.warmup_end,
        schedule: first.schedule.clone(),
        members: fits.iter().map(|f| [f.l0, f.a, f.alpha, f.c]).collect(),
    }))
}
