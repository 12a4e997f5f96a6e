//! `lag_corr(step, a, b, max_lag)`: which of two series leads the other, and
//! by how much. "Do grad-norm spikes come before loss spikes?"
//!
//! An aggregate over two series of one run (rows that pair them by step, as
//! a join on step gives). The points of `a` and of `b` are each sorted by
//! step, and paired where their steps are equal. For every lag k in
//! [-max_lag, max_lag] it computes the Pearson correlation of `a[i]` with
//! `b[i + k]` over the paired points, and returns the lag whose correlation
//! is largest in absolute value, as `{lag, steps, corr, pairs}`:
//!
//! - `lag`: k, in points. Positive: `a` leads `b` (`a` moves, `b` follows k
//!   points later); negative: `b` leads `a`.
//! - `steps`: the same lag in steps, the median of `step[i + k] − step[i]`.
//! - `corr`: the correlation at that lag, with its sign.
//! - `pairs`: how many pairs it was computed from.
//!
//! Ties go to the smaller |k|, then to the negative one. A lag needs at least
//! three pairs and a nonzero variance on both sides; NULL when no lag has
//! them. NULL, NaN and ±Inf values drop the pairs they are in, without
//! shifting the others. Correlating raw values measures trends as much as
//! events: pass `spike_ratio` or another detrended form to ask about spikes.
//!
//! ```sql
//! SELECT g.run_id, lag_corr(g.step, g.value, l.value, 20) AS lead
//! FROM scalars g JOIN scalars l ON l.run_id = g.run_id AND l.step = g.step
//! WHERE g.name = 'grad_norm' AND l.name = 'train/loss'
//! GROUP BY g.run_id;
//! ```

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StructArray};
use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

use super::arguments::{self, Kind, Parameters};
use super::points::Points;

const LAG_CORR: Parameters = Parameters {
    function: "lag_corr",
    usage: "(step, a, b, max_lag)",
    list: &[
        ("step", Kind::Step),
        ("a", Kind::Value),
        ("b", Kind::Value),
        ("max_lag", Kind::Integer),
    ],
    required: 4,
};

/// The best lag between two series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lead {
    /// The lag in points; positive when `a` leads.
    pub lag: i64,
    /// The lag in steps (median step difference of its pairs).
    pub steps: i64,
    /// The correlation at that lag.
    pub corr: f64,
    /// How many pairs the correlation was computed from.
    pub pairs: usize,
}

/// The points of `a` and `b` paired by equal step, both sorted by step.
/// A step present in only one of them is left out.
pub fn pair_by_step(a: &Points<f64>, b: &Points<f64>) -> (Vec<i64>, Vec<f64>, Vec<f64>) {
    let (mut steps, mut xs, mut ys) = (Vec::new(), Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < a.steps.len() && j < b.steps.len() {
        match a.steps[i].cmp(&b.steps[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                steps.push(a.steps[i]);
                xs.push(a.values[i]);
                ys.push(b.values[j]);
                i += 1;
                j += 1;
            }
        }
    }
    (steps, xs, ys)
}

/// The pairs (i, i + lag) of `x` and `y` where both are finite.
fn finite_pairs<'a>(
    x: &'a [f64],
    y: &'a [f64],
    lag: i64,
) -> impl Iterator<Item = (usize, f64, f64)> + 'a {
    let n = x.len() as i64;
    (0.max(-lag)..n.min(n - lag))
        .map(move |i| (i as usize, x[i as usize], y[(i + lag) as usize]))
        .filter(|(_, xi, yi)| xi.is_finite() && yi.is_finite())
}

/// Pearson correlation of `x[i]` with `y[i + lag]` over the pairs where both
/// are finite, with the pair count; `steps` is filled in for the best lag only.
fn correlation_at(x: &[f64], y: &[f64], lag: i64) -> Option<Lead> {
    let (mut sx, mut sy, mut count) = (0.0, 0.0, 0usize);
    for (_, xi, yi) in finite_pairs(x, y, lag) {
        sx += xi;
        sy += yi;
        count += 1;
    }
    if count < 3 {
        return None;
    }
    let (mx, my) = (sx / count as f64, sy / count as f64);
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for (_, xi, yi) in finite_pairs(x, y, lag) {
        sxx += (xi - mx) * (xi - mx);
        syy += (yi - my) * (yi - my);
        sxy += (xi - mx) * (yi - my);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some(Lead {
        lag,
        steps: 0,
        corr: (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0),
        pairs: count,
    })
}

/// The median of `step[i + lag] − step[i]` over the pairs of a lag.
fn median_step_gap(steps: &[i64], x: &[f64], y: &[f64], lag: i64) -> i64 {
    let mut gaps: Vec<i64> = finite_pairs(x, y, lag)
        .map(|(i, _, _)| steps[(i as i64 + lag) as usize] - steps[i])
        .collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied().unwrap_or(0)
}

/// The lag in [-max_lag, max_lag] with the largest |correlation| of `x`
/// against `y` shifted by it (see the module docs).
pub fn best_lag(steps: &[i64], x: &[f64], y: &[f64], max_lag: usize) -> Option<Lead> {
    let max_lag = max_lag.min(x.len()) as i64;
    // 0, -1, 1, -2, 2, ...: the first of equal |corr| wins.
    let lags = std::iter::once(0).chain((1..=max_lag).flat_map(|k| [-k, k]));
    let mut best: Option<Lead> = None;
    for lag in lags {
        if let Some(lead) = correlation_at(x, y, lag) {
            if best.is_none_or(|b| lead.corr.abs() > b.corr.abs()) {
                best = Some(lead);
            }
        }
    }
    best.map(|lead| Lead {
        steps: median_step_gap(steps, x, y, lead.lag),
        ..lead
    })
}

fn lead_fields() -> Fields {
    Fields::from(vec![
        Field::new("lag", DataType::Int64, false),
        Field::new("steps", DataType::Int64, false),
        Field::new("corr", DataType::Float64, false),
        Field::new("pairs", DataType::Int64, false),
    ])
}

fn lead_value(lead: Option<Lead>) -> Result<ScalarValue> {
    let Some(lead) = lead else {
        return ScalarValue::try_from(DataType::Struct(lead_fields()));
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![lead.lag])),
        Arc::new(Int64Array::from(vec![lead.steps])),
        Arc::new(Float64Array::from(vec![lead.corr])),
        Arc::new(Int64Array::from(vec![lead.pairs as i64])),
    ];
    Ok(ScalarValue::Struct(Arc::new(StructArray::try_new(
        lead_fields(),
        columns,
        None,
    )?)))
}

/// The `lag_corr` aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LagCorr {
    signature: Signature,
}

impl LagCorr {
    /// The UDAF, ready to register.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::from(LagCorr {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl AggregateUDFImpl for LagCorr {
    fn name(&self) -> &str {
        LAG_CORR.function
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        LAG_CORR.coerce(arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(lead_fields()))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let constants = arguments::literal_arguments(args.exprs, 3, &LAG_CORR)?;
        let max_lag = match constants.first().and_then(|c| c.as_ref()) {
            Some(v) => match arguments::integer(v) {
                Some(k) if k >= 0 => k as usize,
                _ => return plan_err!("lag_corr: max_lag must be an integer >= 0, got {v}"),
            },
            None => return plan_err!("lag_corr: max_lag is required"),
        };
        Ok(Box::new(LagCorrAccumulator {
            max_lag,
            a: Points::default(),
            b: Points::default(),
        }))
    }

    /// Points are sorted by step inside, so input order never matters.
    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let mut fields = Points::<f64>::state_fields(&format!("{}.a", args.name));
        fields.extend(Points::<f64>::state_fields(&format!("{}.b", args.name)));
        Ok(fields)
    }
}

#[derive(Debug)]
struct LagCorrAccumulator {
    max_lag: usize,
    a: Points<f64>,
    b: Points<f64>,
}

impl Accumulator for LagCorrAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (Some(steps), Some(a), Some(b)) = (values.first(), values.get(1), values.get(2)) else {
            return exec_err!("lag_corr: expected (step, a, b) arguments");
        };
        self.a.add(steps.as_ref(), a.as_ref());
        self.b.add(steps.as_ref(), b.as_ref());
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.a.sort();
        self.b.sort();
        let (steps, x, y) = pair_by_step(&self.a, &self.b);
        lead_value(best_lag(&steps, &x, &y, self.max_lag))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.a.size() + self.b.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut state = self.a.state();
        state.extend(self.b.state());
        Ok(state)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        if states.len() != 4 {
            return exec_err!("lag_corr: malformed partial state");
        }
        self.a.merge(&states[..2], "lag_corr")?;
        self.b.merge(&states[2..], "lag_corr")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_that_moves_first_leads_by_its_delay() {
        let n = 200;
        let steps: Vec<i64> = (0..n).map(|i| 10 * i).collect();
        // Pseudo-random spikes in a, echoed three points later in b.
        let a: Vec<f64> = (0..n)
            .map(|i| {
                if (i * 37) % 23 == 0 {
                    5.0
                } else {
                    1.0 + 0.01 * (i % 7) as f64
                }
            })
            .collect();
        let mut b = vec![2.0; n as usize];
        for i in 3..n as usize {
            b[i] = 2.0 + 0.5 * a[i - 3];
        }
        let lead = best_lag(&steps, &a, &b, 10).unwrap();
        assert_eq!((lead.lag, lead.steps), (3, 30));
        assert!(lead.corr > 0.99, "{lead:?}");
        let back = best_lag(&steps, &b, &a, 10).unwrap();
        assert_eq!(back.lag, -3);
        // A NaN drops its pairs without shifting the others.
        let mut with_nan = a.clone();
        with_nan[50] = f64::NAN;
        assert_eq!(best_lag(&steps, &with_nan, &b, 10).unwrap().lag, 3);
        // A constant series correlates with nothing.
        assert_eq!(best_lag(&steps, &vec![1.0; n as usize], &b, 10), None);
    }

    #[test]
    fn points_pair_by_equal_step() {
        let a = Points {
            steps: vec![0, 10, 20, 30],
            values: vec![1.0, 2.0, 3.0, 4.0],
        };
        let b = Points {
            steps: vec![10, 20, 25, 30],
            values: vec![20.0, 30.0, 35.0, 40.0],
        };
        let (steps, x, y) = pair_by_step(&a, &b);
        assert_eq!(steps, vec![10, 20, 30]);
        assert_eq!(x, vec![2.0, 3.0, 4.0]);
        assert_eq!(y, vec![20.0, 30.0, 40.0]);
    }
}
