//! Window functions over one series, used as
//! `f(value, ...) OVER (PARTITION BY run_id, name ORDER BY step)`.
//!
//! | function | result |
//! |---|---|
//! | `ema(value, alpha)` | exponential moving average: e₀ = v₀, eₜ = α·vₜ + (1−α)·eₜ₋₁, α ∈ (0, 1] |
//! | `smooth(value, weight)` | TensorBoard's debiased smoothing slider, weight ∈ [0, 1) |
//! | `rolling_zscore(value, n [, robust])` | (vₜ − mean)/std of the previous `n` points, the current one excluded; `robust`: median and 1.4826·MAD |
//! | `is_spike(value, n, k)` | `|rolling_zscore(value, n)| > k`, or the value is NaN or ±Inf |
//!
//! Non-finite values (NaN, ±Inf) are data, and each function says what it
//! does with them:
//! - `ema` and `smooth` return a non-finite value as it is at its row and do
//!   not let it into the average (so a NaN loss stays visible and does not
//!   erase the curve after it), exactly like TensorBoard;
//! - `rolling_zscore` ignores non-finite values in the history; a non-finite
//!   current value gives NaN (for NaN) or ±Inf;
//! - `is_spike` is always true at a NaN or ±Inf value: a NaN loss is exactly
//!   what people look for.
//!
//! `rolling_zscore` is NULL until two finite points of history exist; when the
//! history has no spread (std or MAD is 0) it is 0 for the same value and ±Inf
//! for a different one.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array};
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl,
};

/// Which series window function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeriesFunction {
    /// `ema(value, alpha)`
    Ema,
    /// `smooth(value, weight)`
    Smooth,
    /// `rolling_zscore(value, n [, robust])`
    RollingZscore,
    /// `is_spike(value, n, k)`
    IsSpike,
}

impl SeriesFunction {
    /// All of them.
    pub const ALL: [SeriesFunction; 4] = [
        SeriesFunction::Ema,
        SeriesFunction::Smooth,
        SeriesFunction::RollingZscore,
        SeriesFunction::IsSpike,
    ];

    fn name(self) -> &'static str {
        match self {
            SeriesFunction::Ema => "ema",
            SeriesFunction::Smooth => "smooth",
            SeriesFunction::RollingZscore => "rolling_zscore",
            SeriesFunction::IsSpike => "is_spike",
        }
    }

    /// Types the arguments are coerced to, or a usage error.
    fn parameter_types(self, count: usize) -> Result<Vec<DataType>> {
        use DataType::{Boolean, Float64, Int64};
        match (self, count) {
            (SeriesFunction::Ema | SeriesFunction::Smooth, 2) => Ok(vec![Float64, Float64]),
            (SeriesFunction::RollingZscore, 2) => Ok(vec![Float64, Int64]),
            (SeriesFunction::RollingZscore, 3) => Ok(vec![Float64, Int64, Boolean]),
            (SeriesFunction::IsSpike, 3) => Ok(vec![Float64, Int64, Float64]),
            _ => plan_err!(
                "{} takes {}, got {count} arguments",
                self.name(),
                self.usage()
            ),
        }
    }

    fn usage(self) -> &'static str {
        match self {
            SeriesFunction::Ema => "(value, alpha)",
            SeriesFunction::Smooth => "(value, weight)",
            SeriesFunction::RollingZscore => "(value, n [, robust])",
            SeriesFunction::IsSpike => "(value, n, k)",
        }
    }
}

/// The window UDF for one [`SeriesFunction`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesWindow {
    function: SeriesFunction,
    signature: Signature,
}

impl SeriesWindow {
    /// The UDF, ready to register.
    pub fn udwf(function: SeriesFunction) -> WindowUDF {
        WindowUDF::from(SeriesWindow {
            function,
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl WindowUDFImpl for SeriesWindow {
    fn name(&self) -> &str {
        self.function.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.function.parameter_types(arg_types.len())
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(SeriesEvaluator {
            function: self.function,
        }))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let data_type = match self.function {
            SeriesFunction::IsSpike => DataType::Boolean,
            _ => DataType::Float64,
        };
        Ok(Arc::new(Field::new(field_args.name(), data_type, true)))
    }
}

#[derive(Debug)]
struct SeriesEvaluator {
    function: SeriesFunction,
}

/// The value of a constant argument (every row holds the same value).
fn constant(values: &[ArrayRef], index: usize, function: &str, what: &str) -> Result<ScalarValue> {
    let Some(array) = values.get(index) else {
        return exec_err!("{function}: missing argument {what}");
    };
    if array.is_empty() {
        return Ok(ScalarValue::Null);
    }
    let first = ScalarValue::try_from_array(array, 0)?;
    let last = ScalarValue::try_from_array(array, array.len() - 1)?;
    if first.is_null() || first != last {
        return exec_err!("{function}: {what} must be a constant, not NULL or a column");
    }
    Ok(first)
}

fn constant_f64(values: &[ArrayRef], index: usize, function: &str, what: &str) -> Result<f64> {
    match constant(values, index, function, what)? {
        ScalarValue::Float64(Some(v)) => Ok(v),
        ScalarValue::Null => Ok(f64::NAN),
        other => exec_err!("{function}: {what} must be a number, got {other}"),
    }
}

fn constant_window(values: &[ArrayRef], function: &str) -> Result<usize> {
    match constant(values, 1, function, "n")? {
        ScalarValue::Int64(Some(n)) if n >= 2 => Ok(n as usize),
        ScalarValue::Null => Ok(2),
        other => exec_err!(
            "{function}: n (the number of previous points) must be an integer >= 2, got {other}"
        ),
    }
}

impl PartitionEvaluator for SeriesEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let name = self.function.name();
        let series = values[0].as_primitive::<Float64Type>();
        // NULL values are treated as missing: NaN in, NULL out below.
        let data: Vec<f64> = series.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
        debug_assert_eq!(data.len(), num_rows);
        let out: ArrayRef = match self.function {
            SeriesFunction::Ema => {
                let alpha = constant_f64(values, 1, name, "alpha")?;
                if !(alpha > 0.0 && alpha <= 1.0) {
                    return exec_err!("ema: alpha must be in (0, 1], got {alpha}");
                }
                Arc::new(Float64Array::from(ema(&data, alpha)))
            }
            SeriesFunction::Smooth => {
                let weight = constant_f64(values, 1, name, "weight")?;
                if !(0.0..1.0).contains(&weight) {
                    return exec_err!("smooth: weight must be in [0, 1), got {weight}");
                }
                Arc::new(Float64Array::from(tensorboard_smooth(&data, weight)))
            }
            SeriesFunction::RollingZscore => {
                let n = constant_window(values, name)?;
                let robust = match values.get(2) {
                    Some(_) => match constant(values, 2, name, "robust")? {
                        ScalarValue::Boolean(Some(b)) => b,
                        _ => false,
                    },
                    None => false,
                };
                Arc::new(Float64Array::from(rolling_zscore(&data, n, robust)))
            }
            SeriesFunction::IsSpike => {
                let n = constant_window(values, name)?;
                let k = constant_f64(values, 2, name, "k")?;
                if !(k > 0.0 && k.is_finite()) {
                    return exec_err!(
                        "is_spike: k (the z-score threshold) must be a positive number, got {k}"
                    );
                }
                Arc::new(BooleanArray::from(is_spike(&data, n, k)))
            }
        };
        // Rows whose input value was NULL stay NULL.
        match series.nulls() {
            Some(nulls) if series.null_count() > 0 => {
                let data = out
                    .to_data()
                    .into_builder()
                    .nulls(Some(nulls.clone()))
                    .build()?;
                Ok(arrow::array::make_array(data))
            }
            _ => Ok(out),
        }
    }
}

/// Plain EMA; non-finite values pass through and do not update the average.
pub fn ema(values: &[f64], alpha: f64) -> Vec<f64> {
    let mut average: Option<f64> = None;
    values
        .iter()
        .map(|&v| {
            if !v.is_finite() {
                return v;
            }
            let next = match average {
                None => v,
                Some(a) => alpha * v + (1.0 - alpha) * a,
            };
            average = Some(next);
            next
        })
        .collect()
}

/// TensorBoard's smoothing (`vz_line_chart2`): a debiased EMA with the
/// slider's `weight`; non-finite values and constant series pass through.
pub fn tensorboard_smooth(values: &[f64], weight: f64) -> Vec<f64> {
    let is_constant = values.iter().all(|&v| v == values[0]);
    let mut last = 0.0;
    let mut count = 0i32;
    values
        .iter()
        .map(|&v| {
            if is_constant || !v.is_finite() {
                return v;
            }
            last = last * weight + (1.0 - weight) * v;
            count += 1;
            let debias = if weight == 1.0 {
                1.0
            } else {
                1.0 - weight.powi(count)
            };
            last / debias
        })
        .collect()
}

/// z-scores against the previous `n` points (finite ones only), the current
/// point excluded; `None` until two finite points of history exist.
pub fn rolling_zscore(values: &[f64], n: usize, robust: bool) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(values.len());
    let mut window: Vec<f64> = Vec::with_capacity(n);
    for (i, &v) in values.iter().enumerate() {
        window.clear();
        window.extend(
            values[i.saturating_sub(n)..i]
                .iter()
                .copied()
                .filter(|x| x.is_finite()),
        );
        if window.len() < 2 {
            out.push(None);
            continue;
        }
        let (center, spread) = if robust {
            median_mad(&mut window)
        } else {
            mean_std(&window)
        };
        out.push(Some(standardize(v, center, spread)));
    }
    out
}

fn standardize(v: f64, center: f64, spread: f64) -> f64 {
    if v.is_nan() {
        return f64::NAN;
    }
    let deviation = v - center;
    if spread > 0.0 {
        deviation / spread
    } else if deviation == 0.0 {
        0.0
    } else {
        deviation.signum() * f64::INFINITY
    }
}

/// Mean and sample standard deviation (n − 1), two-pass for accuracy.
fn mean_std(xs: &[f64]) -> (f64, f64) {
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (xs.len() - 1) as f64;
    (mean, var.sqrt())
}

/// Median and 1.4826 × median absolute deviation (consistent with σ for normal data).
fn median_mad(xs: &mut [f64]) -> (f64, f64) {
    let median = median(xs);
    for x in xs.iter_mut() {
        *x = (*x - median).abs();
    }
    (median, 1.4826 * self::median(xs))
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[mid]
    } else {
        (xs[mid - 1] + xs[mid]) / 2.0
    }
}

/// True where |z| > k against the previous `n` points, or where the value is non-finite.
pub fn is_spike(values: &[f64], n: usize, k: f64) -> Vec<bool> {
    rolling_zscore(values, n, false)
        .into_iter()
        .zip(values)
        .map(|(z, v)| !v.is_finite() || z.is_some_and(|z| z.abs() > k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_matches_tensorboards_formula() {
        // last = last·w + (1−w)·v; smoothed = last / (1 − w^count)
        let out = tensorboard_smooth(&[1.0, 2.0, 3.0], 0.5);
        let expected = [1.0, 1.25 / 0.75, 2.125 / 0.875];
        for (a, b) in out.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{out:?}");
        }
        let out = tensorboard_smooth(&[1.0, f64::NAN, 3.0], 0.5);
        assert!(out[1].is_nan());
        assert!(
            (out[2] - (0.5 * 0.5 + 1.5) / 0.75).abs() < 1e-12,
            "NaN does not enter the average"
        );
        assert_eq!(tensorboard_smooth(&[4.0, 4.0, 4.0], 0.9), vec![4.0; 3]);
        assert_eq!(tensorboard_smooth(&[1.0, 5.0], 0.0), vec![1.0, 5.0]);
    }

    #[test]
    fn ema_starts_at_the_first_value_and_skips_non_finite() {
        assert_eq!(ema(&[2.0, 4.0, 4.0], 0.5), vec![2.0, 3.0, 3.5]);
        let out = ema(&[f64::INFINITY, 2.0, f64::NAN, 4.0], 0.5);
        assert_eq!(out[0], f64::INFINITY);
        assert_eq!(out[1], 2.0);
        assert!(out[2].is_nan());
        assert_eq!(out[3], 3.0);
    }

    #[test]
    fn rolling_zscore_excludes_the_current_point() {
        let z = rolling_zscore(&[1.0, 2.0, 3.0, 10.0], 3, false);
        assert_eq!(z[0], None);
        assert_eq!(z[1], None);
        assert_eq!(z[2], Some((3.0 - 1.5) / (0.5f64).sqrt()));
        assert_eq!(z[3], Some((10.0 - 2.0) / 1.0));
        let flat = rolling_zscore(&[1.0, 1.0, 1.0, 2.0], 3, false);
        assert_eq!(flat[2], Some(0.0));
        assert_eq!(flat[3], Some(f64::INFINITY));
    }

    #[test]
    fn robust_zscore_uses_median_and_mad() {
        // history 1, 2, 100: median 2, MAD = median(|−1|, 0, 98) = 1
        let z = rolling_zscore(&[1.0, 2.0, 100.0, 5.0], 3, true);
        assert!((z[3].unwrap() - 3.0 / 1.4826).abs() < 1e-12);
    }

    #[test]
    fn spikes_include_every_non_finite_value() {
        let mut series: Vec<f64> = (0..20).map(|i| 1.0 + 0.01 * (i % 3) as f64).collect();
        series[10] = 5.0;
        series[15] = f64::NAN;
        series[1] = f64::NEG_INFINITY;
        let spikes = is_spike(&series, 5, 4.0);
        let at: Vec<usize> = spikes
            .iter()
            .enumerate()
            .filter(|(_, &s)| s)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(at, vec![1, 10, 15]);
    }
}
