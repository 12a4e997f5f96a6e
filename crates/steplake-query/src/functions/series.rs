//! Window functions over one series, used as
//! `f(value, ...) OVER (PARTITION BY run_id, name ORDER BY step)`.
//!
//! | function | result |
//! |---|---|
//! | `ema(value, alpha)` | exponential moving average: e₀ = v₀, eₜ = α·vₜ + (1−α)·eₜ₋₁, α ∈ (0, 1] |
//! | `smooth(value, weight)` | TensorBoard's debiased smoothing slider, weight ∈ [0, 1) |
//! | `rolling_zscore(value, n [, robust])` | (vₜ − mean)/std of the previous `n` points, the current one excluded; `robust`: median and 1.4826·MAD |
//! | `is_spike(value [, n [, threshold [, method [, direction]]]])` | a spike against the previous `n` points ([`super::spikes`]), or a NaN or ±Inf value |
//! | `spike_ratio(value [, n])` | v / median of the previous `n` points: the size of a spike |
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
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl,
};

use super::arguments::{self, Kind, Parameters};
use super::recent::Recent;
use super::sorted_window::SortedWindow;
use super::spikes::{self, mean_std, standardize, SpikeRule};

/// Which series window function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeriesFunction {
    /// `ema(value, alpha)`
    Ema,
    /// `smooth(value, weight)`
    Smooth,
    /// `rolling_zscore(value, n [, robust])`
    RollingZscore,
    /// `is_spike(value [, n [, threshold [, method [, direction]]]])`
    IsSpike,
    /// `spike_ratio(value [, n])`
    SpikeRatio,
}

const EMA: Parameters = Parameters {
    function: "ema",
    usage: "(value, alpha) OVER (PARTITION BY run_id, name ORDER BY step)",
    list: &[("value", Kind::Value), ("alpha", Kind::Number)],
    required: 2,
};

const SMOOTH: Parameters = Parameters {
    function: "smooth",
    usage: "(value, weight) OVER (PARTITION BY run_id, name ORDER BY step)",
    list: &[("value", Kind::Value), ("weight", Kind::Number)],
    required: 2,
};

const ROLLING_ZSCORE: Parameters = Parameters {
    function: "rolling_zscore",
    usage: "(value, n [, robust]) OVER (PARTITION BY run_id, name ORDER BY step)",
    list: &[
        ("value", Kind::Value),
        ("n", Kind::Integer),
        ("robust", Kind::Flag),
    ],
    required: 2,
};

impl SeriesFunction {
    /// All of them.
    pub const ALL: [SeriesFunction; 5] = [
        SeriesFunction::Ema,
        SeriesFunction::Smooth,
        SeriesFunction::RollingZscore,
        SeriesFunction::IsSpike,
        SeriesFunction::SpikeRatio,
    ];

    fn parameters(self) -> &'static Parameters {
        match self {
            SeriesFunction::Ema => &EMA,
            SeriesFunction::Smooth => &SMOOTH,
            SeriesFunction::RollingZscore => &ROLLING_ZSCORE,
            SeriesFunction::IsSpike => &spikes::IS_SPIKE,
            SeriesFunction::SpikeRatio => &spikes::SPIKE_RATIO,
        }
    }

    fn name(self) -> &'static str {
        self.parameters().function
    }

    /// How to call it, for an error about a call without `OVER`.
    pub fn usage(self) -> String {
        format!("{}{}", self.name(), self.parameters().usage)
    }

    /// The function of that SQL name.
    pub fn named(name: &str) -> Option<SeriesFunction> {
        SeriesFunction::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
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
        self.function.parameters().coerce(arg_types)
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

/// The value of constant argument `index` (every row holds the same value);
/// `None` when the call has fewer arguments.
fn constant(
    values: &[ArrayRef],
    index: usize,
    function: &str,
    what: &str,
) -> Result<Option<ScalarValue>> {
    let Some(array) = values.get(index) else {
        return Ok(None);
    };
    if array.is_empty() {
        return Ok(Some(ScalarValue::Null));
    }
    let first = ScalarValue::try_from_array(array, 0)?;
    let last = ScalarValue::try_from_array(array, array.len() - 1)?;
    if first != last {
        return plan_err!("{function}: {what} must be a constant, not a column");
    }
    Ok(Some(first))
}

/// Every constant argument after the value.
fn constants(values: &[ArrayRef], parameters: &Parameters) -> Result<Vec<Option<ScalarValue>>> {
    (1..parameters.list.len())
        .map(|i| constant(values, i, parameters.function, parameters.list[i].0))
        .collect()
}

fn constant_f64(values: &[ArrayRef], index: usize, function: &str, what: &str) -> Result<f64> {
    Ok(constant(values, index, function, what)?
        .as_ref()
        .and_then(arguments::number)
        .unwrap_or(f64::NAN))
}

fn constant_window(values: &[ArrayRef], function: &str) -> Result<usize> {
    window_length(function, constant(values, 1, function, "n")?.as_ref())
}

/// The `n` of `rolling_zscore` (previous points in the window), checked;
/// also what a standing condition's call is checked with. A missing or
/// NULL `n` is 2.
pub(crate) fn window_length(function: &str, n: Option<&ScalarValue>) -> Result<usize> {
    match n {
        None | Some(ScalarValue::Null) => Ok(2),
        Some(v) => match arguments::integer(v) {
            Some(n) if n >= 2 => Ok(n as usize),
            _ => plan_err!(
                "{function}: n (the number of previous points) must be an integer >= 2, got {v}"
            ),
        },
    }
}

/// `ema`'s `alpha`, checked (NaN when it was not a number).
pub(crate) fn ema_alpha(alpha: f64) -> Result<f64> {
    if alpha > 0.0 && alpha <= 1.0 {
        Ok(alpha)
    } else {
        plan_err!("ema: alpha must be in (0, 1], got {alpha}")
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
                let alpha = ema_alpha(constant_f64(values, 1, name, "alpha")?)?;
                Arc::new(Float64Array::from(ema(&data, alpha)))
            }
            SeriesFunction::Smooth => {
                let weight = constant_f64(values, 1, name, "weight")?;
                if !(0.0..1.0).contains(&weight) {
                    return plan_err!("smooth: weight must be in [0, 1), got {weight}");
                }
                Arc::new(Float64Array::from(tensorboard_smooth(&data, weight)))
            }
            SeriesFunction::RollingZscore => {
                let n = constant_window(values, name)?;
                let robust = matches!(
                    constant(values, 2, name, "robust")?,
                    Some(ScalarValue::Boolean(Some(true)))
                );
                Arc::new(Float64Array::from(rolling_zscore(&data, n, robust)))
            }
            SeriesFunction::IsSpike => {
                let rule = SpikeRule::from_arguments(name, &constants(values, &spikes::IS_SPIKE)?)?;
                Arc::new(BooleanArray::from(rule.flags(&data)))
            }
            SeriesFunction::SpikeRatio => {
                let rule =
                    SpikeRule::from_arguments(name, &constants(values, &spikes::SPIKE_RATIO)?)?;
                Arc::new(Float64Array::from(rule.scores(&data)))
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
    let mut tracker = EmaTracker::new(alpha);
    values.iter().map(|&v| tracker.next(v)).collect()
}

/// Most points [`EmaTracker::memory`] asks for (an EMA with a tiny alpha
/// remembers for ever; past this its start is forgotten approximately).
pub const MAX_EMA_MEMORY: usize = 100_000;

/// [`ema`] point by point, in step order.
#[derive(Debug, Clone)]
pub struct EmaTracker {
    alpha: f64,
    average: Option<f64>,
}

impl EmaTracker {
    /// How many previous points its average still depends on, to within
    /// a relative 1e-9 (capped at [`MAX_EMA_MEMORY`]): the points after
    /// which a fresh tracker agrees with one that saw the whole series.
    pub fn memory(&self) -> usize {
        let decay = (1.0 - self.alpha).abs();
        if decay <= 0.0 {
            return 1;
        }
        let points = (1e-9f64.ln() / decay.ln()).ceil();
        if points.is_finite() {
            (points as usize).clamp(1, MAX_EMA_MEMORY)
        } else {
            MAX_EMA_MEMORY
        }
    }

    /// A tracker that has seen no finite value yet.
    pub fn new(alpha: f64) -> EmaTracker {
        EmaTracker {
            alpha,
            average: None,
        }
    }

    /// The average after `v` (a non-finite `v` is returned as it is and
    /// leaves the average alone).
    pub fn next(&mut self, v: f64) -> f64 {
        if !v.is_finite() {
            return v;
        }
        let next = match self.average {
            None => v,
            Some(a) => self.alpha * v + (1.0 - self.alpha) * a,
        };
        self.average = Some(next);
        next
    }
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
    let mut tracker = ZscoreTracker::new(n, robust);
    values.iter().map(|&v| tracker.next(v)).collect()
}

/// [`rolling_zscore`] point by point, in step order.
#[derive(Debug, Clone)]
pub struct ZscoreTracker {
    n: usize,
    robust: bool,
    /// Whether each of the previous `n` points is finite (a non-finite one
    /// counts as a point of the window but never enters the statistics).
    previous: std::collections::VecDeque<bool>,
    /// The finite ones among them, oldest first.
    finite: Recent,
    /// The same, sorted (robust mode only).
    sorted: SortedWindow,
}

impl ZscoreTracker {
    /// How many previous points its score looks at.
    pub fn memory(&self) -> usize {
        self.n
    }

    /// A tracker over windows of the previous `n` points.
    pub fn new(n: usize, robust: bool) -> ZscoreTracker {
        ZscoreTracker {
            n,
            robust,
            previous: std::collections::VecDeque::with_capacity(n + 1),
            finite: Recent::with_capacity(n),
            sorted: SortedWindow::with_capacity(if robust { n } else { 0 }),
        }
    }

    /// `v`'s z-score against the previous `n` points; then `v` joins them.
    pub fn next(&mut self, v: f64) -> Option<f64> {
        let score = (self.finite.len() >= 2).then(|| {
            let (center, spread) = if self.robust {
                self.sorted.median_mad()
            } else {
                mean_std(self.finite.as_slice())
            };
            standardize(v, center, spread)
        });
        self.admit(v);
        score
    }

    fn admit(&mut self, v: f64) {
        let finite = v.is_finite();
        self.previous.push_back(finite);
        // The oldest point leaves the window; when it was finite, its
        // value is the oldest finite one.
        let leaving = (self.previous.len() > self.n && self.previous.pop_front() == Some(true))
            .then(|| self.finite.pop_front())
            .flatten();
        if finite {
            self.finite.push(v);
        }
        if self.robust {
            match (leaving, finite) {
                (Some(old), true) => self.sorted.replace(old, v),
                (Some(old), false) => self.sorted.remove(old),
                (None, true) => self.sorted.insert(v),
                (None, false) => {}
            }
        }
    }
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
    fn rolling_zscore_windows_hold_the_previous_n_points_finite_ones_counted() {
        let values: Vec<f64> = (0..600)
            .map(|i| match i % 37 {
                5 => f64::NAN,
                11 if i % 3 == 0 => f64::INFINITY,
                _ => ((i * 7919) % 101) as f64 * 0.25 - 12.0,
            })
            .collect();
        for n in [2usize, 3, 10, 50] {
            for robust in [false, true] {
                let got = rolling_zscore(&values, n, robust);
                for (i, &v) in values.iter().enumerate() {
                    let mut window: Vec<f64> = values[i.saturating_sub(n)..i]
                        .iter()
                        .copied()
                        .filter(|x| x.is_finite())
                        .collect();
                    let expected = (window.len() >= 2).then(|| {
                        let (center, spread) = if robust {
                            window.sort_by(f64::total_cmp);
                            let median = |xs: &[f64]| {
                                let m = xs.len() / 2;
                                if xs.len() % 2 == 1 {
                                    xs[m]
                                } else {
                                    (xs[m - 1] + xs[m]) / 2.0
                                }
                            };
                            let center = median(&window);
                            let mut deviations: Vec<f64> =
                                window.iter().map(|x| (x - center).abs()).collect();
                            deviations.sort_by(f64::total_cmp);
                            (center, 1.4826 * median(&deviations))
                        } else {
                            mean_std(&window)
                        };
                        standardize(v, center, spread)
                    });
                    assert_eq!(
                        got[i].map(f64::to_bits),
                        expected.map(f64::to_bits),
                        "n {n}, robust {robust}, point {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn robust_zscore_uses_median_and_mad() {
        // history 1, 2, 100: median 2, MAD = median(|−1|, 0, 98) = 1
        let z = rolling_zscore(&[1.0, 2.0, 100.0, 5.0], 3, true);
        assert!((z[3].unwrap() - 3.0 / 1.4826).abs() < 1e-12);
    }
}
