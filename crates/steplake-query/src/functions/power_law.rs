//! Scaling-law fits: predict the final loss from a prefix of the curve.
//!
//! - `fit_power_law(x, y)`: an aggregate fitting L = E + A·x^(−α) by least
//!   squares; returns `{e, a, alpha, rmse}`, or NULL when fewer than three
//!   usable points (x > 0, y finite) or a single distinct x remain.
//! - `predict_power_law(fit, x)`: E + A·x^(−α) for a fit from `fit_power_law`.
//!
//! The fit is exact in (E, A) for each α (linear least squares on the basis
//! 1, x^(−α)) and searches α ∈ [0.001, 5]: a 61-point logarithmic grid, then
//! 60 golden-section steps around the best grid point (about 120 passes over
//! the points in all). Points with x ≤ 0
//! (e.g. step 0) or a non-finite y are left out.
//!
//! ```sql
//! -- Fit the first 20% of training, predict the loss at the last step
//! WITH fit AS (SELECT fit_power_law(step, value) AS f FROM scalars
//!              WHERE name = 'train/loss' AND step <= 20000)
//! SELECT predict_power_law(f, 100000) FROM fit;
//! ```

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StructArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};

use super::points::{series_accumulators, Finish, Points, SeriesAggregate};

/// A fitted power law L = E + A·x^(−α).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerLaw {
    /// The irreducible loss E.
    pub e: f64,
    /// The scale A.
    pub a: f64,
    /// The exponent α.
    pub alpha: f64,
    /// Root-mean-square error of the fit.
    pub rmse: f64,
}

impl PowerLaw {
    /// The predicted value at `x`.
    pub fn predict(&self, x: f64) -> f64 {
        self.e + self.a * x.powf(-self.alpha)
    }
}

/// (E, A, SSE) of the least-squares fit for a fixed α, given ln x.
fn fit_linear(ln_x: &[f64], y: &[f64], alpha: f64) -> Option<(f64, f64, f64)> {
    let n = ln_x.len() as f64;
    let z: Vec<f64> = ln_x.iter().map(|&l| (-alpha * l).exp()).collect();
    let mean_z = z.iter().sum::<f64>() / n;
    let mean_y = y.iter().sum::<f64>() / n;
    let (mut szz, mut szy) = (0.0, 0.0);
    for (zi, yi) in z.iter().zip(y) {
        szz += (zi - mean_z) * (zi - mean_z);
        szy += (zi - mean_z) * (yi - mean_y);
    }
    if szz <= 0.0 || !szz.is_finite() {
        return None;
    }
    let a = szy / szz;
    let e = mean_y - a * mean_z;
    let sse = z
        .iter()
        .zip(y)
        .map(|(zi, yi)| (yi - e - a * zi).powi(2))
        .sum::<f64>();
    sse.is_finite().then_some((e, a, sse))
}

/// Least-squares fit of L = E + A·x^(−α); `None` when it is not determined.
pub fn fit_power_law(x: &[f64], y: &[f64]) -> Option<PowerLaw> {
    let (ln_x, y): (Vec<f64>, Vec<f64>) = x
        .iter()
        .zip(y)
        .filter(|(xi, yi)| **xi > 0.0 && xi.is_finite() && yi.is_finite())
        .map(|(a, b)| (a.ln(), *b))
        .unzip();
    if ln_x.len() < 3 || ln_x.iter().all(|&l| l == ln_x[0]) {
        return None;
    }
    let sse = |alpha: f64| fit_linear(&ln_x, &y, alpha).map_or(f64::INFINITY, |f| f.2);
    let alpha = best_exponent(sse)?;
    let (e, amplitude, sse) = fit_linear(&ln_x, &y, alpha)?;
    Some(PowerLaw {
        e,
        a: amplitude,
        alpha,
        rmse: (sse / ln_x.len() as f64).sqrt(),
    })
}

/// The exponent α ∈ [0.001, 5] that minimizes `sse`: a 61-point logarithmic
/// grid, then golden-section search between the grid neighbours of the best
/// point (60 steps shrink the bracket by 0.618^60 ≈ 3e-13). `None` when no
/// exponent gives a finite error.
pub(crate) fn best_exponent(sse: impl Fn(f64) -> f64) -> Option<f64> {
    const GRID: usize = 60;
    let (lo, hi) = (0.001f64.ln(), 5.0f64.ln());
    let grid: Vec<f64> = (0..=GRID)
        .map(|i| (lo + (hi - lo) * i as f64 / GRID as f64).exp())
        .collect();
    let errors: Vec<f64> = grid.iter().map(|&alpha| sse(alpha)).collect();
    let best = (0..grid.len()).min_by(|&i, &j| errors[i].total_cmp(&errors[j]))?;
    if !errors[best].is_finite() {
        return None;
    }
    let (mut a, mut b) = (grid[best.saturating_sub(1)], grid[(best + 1).min(GRID)]);
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - ratio * (b - a), a + ratio * (b - a));
    let (mut sse_c, mut sse_d) = (sse(c), sse(d));
    for _ in 0..60 {
        if sse_c < sse_d {
            b = d;
            d = c;
            sse_d = sse_c;
            c = b - ratio * (b - a);
            sse_c = sse(c);
        } else {
            a = c;
            c = d;
            sse_c = sse_d;
            d = a + ratio * (b - a);
            sse_d = sse(d);
        }
    }
    Some((a + b) / 2.0)
}

fn fit_fields() -> Fields {
    Fields::from(vec![
        Field::new("e", DataType::Float64, false),
        Field::new("a", DataType::Float64, false),
        Field::new("alpha", DataType::Float64, false),
        Field::new("rmse", DataType::Float64, false),
    ])
}

/// The `fit_power_law` aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FitPowerLaw {
    signature: Signature,
}

impl FitPowerLaw {
    /// The UDAF, ready to register.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::from(FitPowerLaw {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl AggregateUDFImpl for FitPowerLaw {
    fn name(&self) -> &str {
        "fit_power_law"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types.len() {
            2 => Ok(vec![DataType::Float64, DataType::Float64]),
            n => plan_err!("fit_power_law takes (x, y), got {n} arguments"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(fit_fields()))
    }

    series_accumulators!();

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(Points::<f64, f64>::state_fields(args.name))
    }
}

/// The fit collects (x, y) points per group like the series functions do,
/// keyed by `x`: sorted by `x` before fitting, so the sums run in the same
/// order however the points arrived.
impl SeriesAggregate<f64> for FitPowerLaw {
    fn function(&self) -> &'static str {
        "fit_power_law"
    }

    fn finish(&self, _args: &AccumulatorArgs) -> Result<Finish<f64, f64>> {
        Ok(Box::new(|points: &Points<f64, f64>| {
            let Some(fit) = fit_power_law(&points.steps, &points.values) else {
                return ScalarValue::try_from(DataType::Struct(fit_fields()));
            };
            let column = |v: f64| -> ArrayRef { Arc::new(Float64Array::from(vec![v])) };
            let array = StructArray::try_new(
                fit_fields(),
                vec![
                    column(fit.e),
                    column(fit.a),
                    column(fit.alpha),
                    column(fit.rmse),
                ],
                None,
            )?;
            Ok(ScalarValue::Struct(Arc::new(array)))
        }))
    }
}

/// The `predict_power_law(fit, x)` scalar function.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PredictPowerLaw {
    signature: Signature,
}

impl PredictPowerLaw {
    /// The UDF, ready to register.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::from(PredictPowerLaw {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for PredictPowerLaw {
    fn name(&self) -> &str {
        "predict_power_law"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [DataType::Struct(_), _] => Ok(vec![arg_types[0].clone(), DataType::Float64]),
            _ => plan_err!("predict_power_law takes (fit, x) where fit comes from fit_power_law, got {arg_types:?}"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let fit = arrays[0].as_struct();
        let field = |name: &str| -> Result<ArrayRef> {
            match fit.column_by_name(name) {
                Some(column) => Ok(cast(column, &DataType::Float64)?),
                None => exec_err!("predict_power_law: the fit has no field {name}; pass the result of fit_power_law"),
            }
        };
        let (e, a, alpha) = (field("e")?, field("a")?, field("alpha")?);
        let (e, a, alpha) = (
            e.as_primitive::<Float64Type>(),
            a.as_primitive::<Float64Type>(),
            alpha.as_primitive::<Float64Type>(),
        );
        let x = arrays[1].as_primitive::<Float64Type>();
        let out: Float64Array = (0..x.len())
            .map(|i| {
                (fit.is_valid(i) && x.is_valid(i)).then(|| {
                    PowerLaw {
                        e: e.value(i),
                        a: a.value(i),
                        alpha: alpha.value(i),
                        rmse: 0.0,
                    }
                    .predict(x.value(i))
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_an_exact_power_law() {
        let x: Vec<f64> = (1..=200).map(|i| i as f64 * 10.0).collect();
        let y: Vec<f64> = x.iter().map(|&v| 2.0 + 5.0 * v.powf(-0.5)).collect();
        let fit = fit_power_law(&x, &y).unwrap();
        assert!((fit.e - 2.0).abs() < 1e-6, "{fit:?}");
        assert!((fit.a - 5.0).abs() < 1e-4, "{fit:?}");
        assert!((fit.alpha - 0.5).abs() < 1e-6, "{fit:?}");
        assert!(fit.rmse < 1e-8);
    }

    #[test]
    fn predicts_the_end_from_a_noisy_prefix() {
        let law = |v: f64| 1.7 + 8.0 * v.powf(-0.35);
        let mut seed = 3u64;
        let (x, y): (Vec<f64>, Vec<f64>) = (1..=2000)
            .map(|i| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let noise = ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.01;
                (i as f64, law(i as f64) + noise)
            })
            .unzip();
        let fit = fit_power_law(&x, &y).unwrap();
        let predicted = fit.predict(100_000.0);
        assert!(
            (predicted - law(100_000.0)).abs() < 0.02,
            "{fit:?} predicts {predicted}"
        );
    }

    #[test]
    fn too_few_points_or_one_x_give_none() {
        assert!(fit_power_law(&[1.0, 2.0], &[1.0, 2.0]).is_none());
        assert!(fit_power_law(&[3.0, 3.0, 3.0], &[1.0, 2.0, 3.0]).is_none());
        assert!(fit_power_law(&[0.0, -1.0, 2.0, 3.0], &[1.0, 1.0, f64::NAN, 1.0]).is_none());
    }
}
