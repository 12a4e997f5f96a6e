//! `changepoints(step, value [, method [, penalty [, min_size]]])`: where a
//! curve changes regime (a shift in its mean).
//!
//! An aggregate over one series that returns a list of
//! `{step, mean_before, mean_after, gain}`, one per changepoint in step
//! order: `step` is the first step of the new segment, the means are those of
//! the segments on either side, and `gain` is how much splitting there
//! reduces the squared error. Use it with `UNNEST`.
//!
//! - `method`: `'pelt'` (default), the exact optimum of
//!   Σ segment cost + penalty × #changepoints, computed the way the
//!   `ruptures` package's `Pelt(model="l2", jump=1)` does; or `'binseg'`,
//!   greedy binary segmentation (`ruptures.Binseg`), which splits while a
//!   split gains more than the penalty.
//! - segment cost: the l2 cost Σ (v − mean)² of the segment.
//! - `penalty`: by default 2·σ̂²·ln(n), with the noise σ̂ estimated robustly
//!   from first differences (1.4826 · median|Δv| / √2), so mean shifts do not
//!   inflate it.
//! - `min_size`: the fewest points in a segment, default 2.
//!
//! NaN and ±Inf values are left out before the search (a NaN is not a
//! regime); the steps reported are those of the remaining points.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StructArray};
use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

use super::literal_argument;
use super::points::{single_list, Points, SeriesAccumulator};

/// How to search for changepoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Pruned exact linear time.
    Pelt,
    /// Binary segmentation.
    Binseg,
}

/// The l2 segment cost Σ (v − mean)² from prefix sums of centered values.
pub struct L2Cost {
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

impl L2Cost {
    /// Prefix sums of `values` (centered on their mean for accuracy).
    pub fn new(values: &[f64]) -> Self {
        let center = values.iter().sum::<f64>() / values.len().max(1) as f64;
        let mut sum = Vec::with_capacity(values.len() + 1);
        let mut sum_sq = Vec::with_capacity(values.len() + 1);
        let (mut s, mut q) = (0.0, 0.0);
        sum.push(0.0);
        sum_sq.push(0.0);
        for v in values {
            let x = v - center;
            s += x;
            q += x * x;
            sum.push(s);
            sum_sq.push(q);
        }
        L2Cost { sum, sum_sq }
    }

    /// Cost of the segment `start..end`.
    pub fn error(&self, start: usize, end: usize) -> f64 {
        let n = (end - start) as f64;
        if n == 0.0 {
            return 0.0;
        }
        let s = self.sum[end] - self.sum[start];
        let q = self.sum_sq[end] - self.sum_sq[start];
        (q - s * s / n).max(0.0)
    }

    /// Mean of the segment `start..end` (of the centered values, plus the center).
    fn mean(&self, values: &[f64], start: usize, end: usize) -> f64 {
        values[start..end].iter().sum::<f64>() / (end - start) as f64
    }
}

/// Segment ends (excluding `values.len()`) of the PELT optimum, as
/// `ruptures.Pelt(model="l2", min_size, jump=1).predict(pen)` computes them,
/// including its pruning rule, so that both give the same answer.
pub fn pelt(values: &[f64], penalty: f64, min_size: usize) -> Vec<usize> {
    let n = values.len();
    if n < 2 * min_size {
        return Vec::new();
    }
    let cost = L2Cost::new(values);
    // best[t] = (criterion of the best partition of 0..t, previous breakpoint)
    let mut best: Vec<Option<(f64, usize)>> = vec![None; n + 1];
    best[0] = Some((0.0, 0));
    let mut admissible: Vec<usize> = Vec::new();
    let candidates = (min_size..n).chain(std::iter::once(n));
    for end in candidates {
        admissible.push(end - min_size);
        let subproblems: Vec<(usize, f64)> = admissible
            .iter()
            .filter_map(|&t| best[t].map(|(f, _)| (t, f + (cost.error(t, end) + penalty))))
            .collect();
        let Some(&(argmin, min)) = subproblems
            .iter()
            .reduce(|a, b| if b.1 < a.1 { b } else { a })
        else {
            continue;
        };
        best[end] = Some((min, argmin));
        // ruptures pairs admissible points with subproblems by position
        // (zip), including points that had no subproblem; do the same.
        admissible = admissible
            .iter()
            .zip(&subproblems)
            .filter(|(_, (_, criterion))| *criterion <= min + penalty)
            .map(|(&t, _)| t)
            .collect();
    }
    let mut breakpoints = Vec::new();
    let mut end = n;
    while end > 0 {
        let Some((_, previous)) = best[end] else {
            break;
        };
        if previous > 0 {
            breakpoints.push(previous);
        }
        end = previous;
    }
    breakpoints.reverse();
    breakpoints
}

/// Segment ends (excluding `values.len()`) from greedy binary segmentation,
/// as `ruptures.Binseg(model="l2", min_size, jump=1).predict(pen)` finds them.
pub fn binseg(values: &[f64], penalty: f64, min_size: usize) -> Vec<usize> {
    let n = values.len();
    let cost = L2Cost::new(values);
    let mut breakpoints = vec![n];
    loop {
        let mut best: Option<(usize, f64)> = None;
        let mut start = 0;
        for &end in &breakpoints {
            if let Some((split, gain)) = best_split(&cost, start, end, min_size) {
                if best.is_none_or(|(_, g)| gain > g) {
                    best = Some((split, gain));
                }
            }
            start = end;
        }
        match best {
            Some((split, gain)) if gain > penalty => {
                breakpoints.push(split);
                breakpoints.sort_unstable();
            }
            _ => break,
        }
    }
    breakpoints.pop();
    breakpoints
}

/// The split of `start..end` with the largest gain (ties: the later split).
fn best_split(cost: &L2Cost, start: usize, end: usize, min_size: usize) -> Option<(usize, f64)> {
    let whole = cost.error(start, end);
    (start + min_size..=end.saturating_sub(min_size))
        .map(|split| {
            (
                split,
                whole - cost.error(start, split) - cost.error(split, end),
            )
        })
        .reduce(|a, b| if b.1 >= a.1 { b } else { a })
}

/// The default penalty: 2·σ̂²·ln(n) with σ̂ from first differences.
pub fn default_penalty(values: &[f64]) -> f64 {
    let n = values.len().max(2) as f64;
    let mut diffs: Vec<f64> = values.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    let sigma = if diffs.is_empty() {
        0.0
    } else {
        diffs.sort_by(f64::total_cmp);
        1.4826 * diffs[diffs.len() / 2] / std::f64::consts::SQRT_2
    };
    let variance = if sigma > 0.0 { sigma * sigma } else { 1e-12 };
    2.0 * variance * n.ln()
}

fn result_fields() -> Fields {
    Fields::from(vec![
        Field::new("step", DataType::Int64, false),
        Field::new("mean_before", DataType::Float64, false),
        Field::new("mean_after", DataType::Float64, false),
        Field::new("gain", DataType::Float64, false),
    ])
}

fn result_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(result_fields()),
        true,
    )))
}

/// The `changepoints` aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Changepoints {
    signature: Signature,
}

impl Changepoints {
    /// The UDAF, ready to register.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::from(Changepoints {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl AggregateUDFImpl for Changepoints {
    fn name(&self) -> &str {
        "changepoints"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        use DataType::{Float64, Int64, Utf8};
        let all = [Int64, Float64, Utf8, Float64, Int64];
        match arg_types.len() {
            n @ 2..=5 => Ok(all[..n].to_vec()),
            n => plan_err!("changepoints takes (step, value [, method [, penalty [, min_size]]]), got {n} arguments"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(result_type())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let method = match literal_argument(args.exprs, 2, "changepoints", "method")? {
            None | Some(ScalarValue::Null) => Method::Pelt,
            Some(ScalarValue::Utf8(Some(m))) if m.eq_ignore_ascii_case("pelt") => Method::Pelt,
            Some(ScalarValue::Utf8(Some(m))) if m.eq_ignore_ascii_case("binseg") => Method::Binseg,
            Some(other) => {
                return plan_err!("changepoints: method must be 'pelt' or 'binseg', got {other}")
            }
        };
        let penalty = match literal_argument(args.exprs, 3, "changepoints", "penalty")? {
            None | Some(ScalarValue::Float64(None)) | Some(ScalarValue::Null) => None,
            Some(ScalarValue::Float64(Some(p))) if p >= 0.0 && p.is_finite() => Some(p),
            Some(other) => {
                return plan_err!("changepoints: penalty must be a number >= 0, got {other}")
            }
        };
        let min_size = match literal_argument(args.exprs, 4, "changepoints", "min_size")? {
            None | Some(ScalarValue::Null) => 2,
            Some(ScalarValue::Int64(Some(m))) if m >= 1 => m as usize,
            Some(other) => {
                return plan_err!("changepoints: min_size must be an integer >= 1, got {other}")
            }
        };
        Ok(Box::new(SeriesAccumulator::<f64>::new(
            "changepoints",
            move |points| {
                changepoints_value(&detect(
                    &points.steps,
                    &points.values,
                    method,
                    penalty,
                    min_size,
                ))
            },
        )))
    }

    /// Points are sorted by step inside, so input order never matters.
    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(Points::<f64>::state_fields(args.name))
    }
}

/// A changepoint of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Changepoint {
    /// First step of the new segment.
    pub step: i64,
    /// Mean of the segment before.
    pub mean_before: f64,
    /// Mean of the segment after.
    pub mean_after: f64,
    /// Reduction of the l2 cost from splitting here.
    pub gain: f64,
}

/// Changepoints of a series given as steps and values sorted by step.
pub fn detect(
    steps: &[i64],
    values: &[f64],
    method: Method,
    penalty: Option<f64>,
    min_size: usize,
) -> Vec<Changepoint> {
    let (steps, values): (Vec<i64>, Vec<f64>) = steps
        .iter()
        .zip(values)
        .filter(|(_, v)| v.is_finite())
        .map(|(s, v)| (*s, *v))
        .unzip();
    let penalty = penalty.unwrap_or_else(|| default_penalty(&values));
    let breakpoints = match method {
        Method::Pelt => pelt(&values, penalty, min_size),
        Method::Binseg => binseg(&values, penalty, min_size),
    };
    let cost = L2Cost::new(&values);
    let bounds: Vec<usize> = std::iter::once(0)
        .chain(breakpoints.iter().copied())
        .chain(std::iter::once(values.len()))
        .collect();
    bounds
        .windows(3)
        .map(|w| {
            let (before, at, after) = (w[0], w[1], w[2]);
            Changepoint {
                step: steps[at],
                mean_before: cost.mean(&values, before, at),
                mean_after: cost.mean(&values, at, after),
                gain: cost.error(before, after) - cost.error(before, at) - cost.error(at, after),
            }
        })
        .collect()
}

/// The changepoints as the aggregate's list-of-struct value.
fn changepoints_value(found: &[Changepoint]) -> Result<ScalarValue> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(found.iter().map(|c| c.step))),
        Arc::new(Float64Array::from_iter_values(
            found.iter().map(|c| c.mean_before),
        )),
        Arc::new(Float64Array::from_iter_values(
            found.iter().map(|c| c.mean_after),
        )),
        Arc::new(Float64Array::from_iter_values(found.iter().map(|c| c.gain))),
    ];
    let structs = StructArray::try_new(result_fields(), columns, None)?;
    Ok(ScalarValue::List(Arc::new(single_list(Arc::new(structs)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps_series(levels: &[(usize, f64)]) -> Vec<f64> {
        let mut out = Vec::new();
        let mut seed = 7u64;
        for &(len, level) in levels {
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                out.push(level + ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.2);
            }
        }
        out
    }

    #[test]
    fn pelt_and_binseg_find_mean_shifts() {
        let values = steps_series(&[(50, 0.0), (30, 3.0), (40, -1.0)]);
        assert_eq!(pelt(&values, 1.0, 2), vec![50, 80]);
        assert_eq!(binseg(&values, 1.0, 2), vec![50, 80]);
        let found = detect(
            &(0..values.len() as i64).map(|s| s * 10).collect::<Vec<_>>(),
            &values,
            Method::Pelt,
            None,
            2,
        );
        assert_eq!(
            found.iter().map(|c| c.step).collect::<Vec<_>>(),
            vec![500, 800]
        );
        assert!((found[0].mean_after - 3.0).abs() < 0.1);
        assert!(found.iter().all(|c| c.gain > 0.0));
    }

    #[test]
    fn constant_short_and_nan_series() {
        assert!(pelt(&[1.0; 10], 0.5, 2).is_empty());
        assert!(pelt(&[1.0, 2.0, 3.0], 0.5, 2).is_empty());
        assert!(detect(&[], &[], Method::Pelt, None, 2).is_empty());
        let mut values = steps_series(&[(20, 0.0), (20, 5.0)]);
        values[5] = f64::NAN;
        let steps: Vec<i64> = (0..40).collect();
        let found = detect(&steps, &values, Method::Pelt, None, 2);
        assert_eq!(found.iter().map(|c| c.step).collect::<Vec<_>>(), vec![20]);
    }
}
