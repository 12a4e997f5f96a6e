//! Loss spikes: the rule behind `is_spike` and `spike_ratio` (window
//! functions, dispatched from [`super::series`]) and the `spike_rate`
//! aggregate.
//!
//! A point is judged against the previous `n` finite points, never against
//! itself or the future, so the same answer is available while a run trains.
//!
//! | method | score | a spike upward when |
//! |---|---|---|
//! | `'ratio'` (default) | v / median(previous n) | score ≥ threshold (default 1.2) |
//! | `'mad'` | (v − median) / (1.4826·MAD) | score ≥ threshold (default 10) |
//! | `'zscore'` | (v − mean) / std | score ≥ threshold (default 6) |
//!
//! `direction` is `'up'` (the default: a spike in a loss goes up), `'down'`
//! (for ratio: v ≤ median / threshold; otherwise score ≤ −threshold) or
//! `'both'`. The defaults (ratio, n = 20, 1.2, up) were chosen on public
//! pretraining logs: `benches/science/spikes.py` measures them and
//! `docs/functions.md` has its table.
//!
//! NaN and ±Inf values are always spikes and never enter a history. The
//! score is NULL until two finite points of history exist; the ratio is NULL
//! when the history's median is not positive (use `'mad'` for series that
//! cross zero).
//!
//! ```sql
//! SELECT run_id, spike_rate(value ORDER BY step) AS rate
//! FROM scalars WHERE name = 'train/loss' GROUP BY run_id;
//! ```

use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{AggregateUDF, AggregateUDFImpl, Signature, Volatility};

use super::arguments::{self, Kind, Parameters};
use super::points::{series_accumulators, Finish, PointArguments, Points, SeriesAggregate};
use super::recent::Recent;
use super::sorted_window::SortedWindow;

/// How a point is compared with its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpikeMethod {
    /// The value over the median of the history: scale-free, robust.
    Ratio,
    /// Robust z-score: distance from the median in units of 1.4826·MAD.
    Mad,
    /// Plain z-score against the history's mean and sample deviation.
    Zscore,
}

/// Which way a spike goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Above the history (the default).
    Up,
    /// Below it.
    Down,
    /// Either way.
    Both,
}

/// A complete spike rule: `is_spike`'s arguments after the value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpikeRule {
    /// How many previous points form the history.
    pub n: usize,
    /// The score a spike reaches.
    pub threshold: f64,
    /// How the score is computed.
    pub method: SpikeMethod,
    /// Which way counts.
    pub direction: Direction,
}

/// The default history length.
pub const DEFAULT_N: usize = 20;

impl SpikeMethod {
    fn default_threshold(self) -> f64 {
        match self {
            SpikeMethod::Ratio => 1.2,
            SpikeMethod::Mad => 10.0,
            SpikeMethod::Zscore => 6.0,
        }
    }
}

/// `is_spike` and `spike_rate` take the same arguments.
pub(crate) const IS_SPIKE: Parameters = Parameters {
    function: "is_spike",
    usage: "(value [, n [, threshold [, method [, direction]]]]) OVER (PARTITION BY run_id, name ORDER BY step)",
    list: &RULE_PARAMETERS,
    required: 1,
};

pub(crate) const SPIKE_RATIO: Parameters = Parameters {
    function: "spike_ratio",
    usage: "(value [, n]) OVER (PARTITION BY run_id, name ORDER BY step)",
    list: &[("value", Kind::Value), ("n", Kind::Integer)],
    required: 1,
};

const SPIKE_RATE: Parameters = Parameters {
    function: "spike_rate",
    usage: "(value [, n [, threshold [, method [, direction]]]] ORDER BY step)",
    list: &RULE_PARAMETERS,
    required: 1,
};

const RULE_PARAMETERS: [(&str, Kind); 5] = [
    ("value", Kind::Value),
    ("n", Kind::Integer),
    ("threshold", Kind::Number),
    ("method", Kind::Text),
    ("direction", Kind::Text),
];

impl Default for SpikeRule {
    fn default() -> Self {
        SpikeRule {
            n: DEFAULT_N,
            threshold: SpikeMethod::Ratio.default_threshold(),
            method: SpikeMethod::Ratio,
            direction: Direction::Up,
        }
    }
}

impl SpikeRule {
    /// The rule from the constant arguments after the value (n, threshold,
    /// method, direction); a missing or NULL one takes its default.
    pub fn from_arguments(function: &str, args: &[Option<ScalarValue>]) -> Result<SpikeRule> {
        let given = |i: usize| {
            args.get(i)
                .and_then(|v| v.as_ref())
                .filter(|v| !v.is_null())
        };
        let n = match given(0) {
            None => DEFAULT_N,
            Some(v) => match arguments::integer(v) {
                Some(n) if n >= 2 => n as usize,
                _ => return plan_err!("{function}: n (the number of previous points) must be an integer >= 2, got {v}"),
            },
        };
        let method = match given(2) {
            None => SpikeMethod::Ratio,
            Some(v) => match arguments::text(v).map(str::to_ascii_lowercase).as_deref() {
                Some("ratio") => SpikeMethod::Ratio,
                Some("mad") => SpikeMethod::Mad,
                Some("zscore") => SpikeMethod::Zscore,
                _ => {
                    return plan_err!(
                        "{function}: method must be 'ratio', 'mad' or 'zscore', got {v}"
                    )
                }
            },
        };
        let direction = match given(3) {
            None => Direction::Up,
            Some(v) => match arguments::text(v).map(str::to_ascii_lowercase).as_deref() {
                Some("up") => Direction::Up,
                Some("down") => Direction::Down,
                Some("both") => Direction::Both,
                _ => {
                    return plan_err!(
                        "{function}: direction must be 'up', 'down' or 'both', got {v}"
                    )
                }
            },
        };
        let threshold = match given(1) {
            None => method.default_threshold(),
            Some(v) => match arguments::number(v) {
                Some(t) if method == SpikeMethod::Ratio && t > 1.0 && t.is_finite() => t,
                Some(t) if method != SpikeMethod::Ratio && t > 0.0 && t.is_finite() => t,
                _ if method == SpikeMethod::Ratio => return plan_err!(
                    "{function}: threshold must be a ratio > 1 (1.2 flags a point 20% above the median of the previous n); for a z-score threshold write method 'mad' or 'zscore', got {v}"
                ),
                _ => return plan_err!("{function}: threshold must be a positive number, got {v}"),
            },
        };
        Ok(SpikeRule {
            n,
            threshold,
            method,
            direction,
        })
    }

    /// Each point's score against its history (`None` while the history has
    /// fewer than two finite points, or for a ratio to a median ≤ 0).
    pub fn scores(&self, values: &[f64]) -> Vec<Option<f64>> {
        let mut tracker = SpikeTracker::new(*self);
        values.iter().map(|&v| tracker.score(v)).collect()
    }

    /// Whether each point is a spike; NaN and ±Inf always are.
    pub fn flags(&self, values: &[f64]) -> Vec<bool> {
        self.scores(values)
            .into_iter()
            .zip(values)
            .map(|(score, &v)| self.is_spike(v, score))
            .collect()
    }

    /// Whether `v`, with `score` against its history, is a spike.
    fn is_spike(&self, v: f64, score: Option<f64>) -> bool {
        !v.is_finite() || score.is_some_and(|s| self.is_spike_score(s))
    }

    fn is_spike_score(&self, score: f64) -> bool {
        let t = self.threshold;
        let (up, down) = match self.method {
            SpikeMethod::Ratio => (score >= t, score <= 1.0 / t),
            SpikeMethod::Mad | SpikeMethod::Zscore => (score >= t, score <= -t),
        };
        match self.direction {
            Direction::Up => up,
            Direction::Down => down,
            Direction::Both => up || down,
        }
    }
}

/// One series' spike rule applied point by point, in step order: what
/// [`SpikeRule::scores`] computes over a whole series, for a caller that
/// sees the points as they arrive (the standing conditions of a live run).
#[derive(Debug, Clone)]
pub struct SpikeTracker {
    rule: SpikeRule,
    /// The last `n` finite values, oldest first.
    history: Recent,
    /// The same values, sorted.
    sorted: SortedWindow,
}

impl SpikeTracker {
    /// How many previous points its score looks at.
    pub fn memory(&self) -> usize {
        self.rule.n
    }

    /// A tracker with no history yet.
    pub fn new(rule: SpikeRule) -> SpikeTracker {
        SpikeTracker {
            rule,
            history: Recent::with_capacity(rule.n),
            sorted: SortedWindow::with_capacity(rule.n),
        }
    }

    /// `v`'s score against the previous points (see [`SpikeRule::scores`]);
    /// then `v` joins the history when it is finite.
    pub fn score(&mut self, v: f64) -> Option<f64> {
        let score = if self.history.len() < 2 {
            None
        } else {
            match self.rule.method {
                SpikeMethod::Ratio => {
                    let median = self.sorted.median();
                    (median > 0.0).then(|| v / median)
                }
                SpikeMethod::Mad => {
                    let (median, spread) = self.sorted.median_mad();
                    Some(standardize(v, median, spread))
                }
                SpikeMethod::Zscore => {
                    let (mean, std) = mean_std(self.history.as_slice());
                    Some(standardize(v, mean, std))
                }
            }
        };
        if v.is_finite() {
            match (self.history.len() >= self.rule.n)
                .then(|| self.history.pop_front())
                .flatten()
            {
                Some(old) => self.sorted.replace(old, v),
                None => self.sorted.insert(v),
            }
            self.history.push(v);
        }
        score
    }

    /// Whether `v` is a spike (see [`SpikeRule::flags`]), with its score.
    pub fn observe(&mut self, v: f64) -> (bool, Option<f64>) {
        let score = self.score(v);
        (self.rule.is_spike(v, score), score)
    }
}

/// (v − center) / spread, with 0 for no spread and no change and ±Inf for
/// no spread and a change; NaN stays NaN.
pub(crate) fn standardize(v: f64, center: f64, spread: f64) -> f64 {
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

/// Mean and sample standard deviation of `xs` (at least two values), in
/// two passes, each summed in four lanes (see [`lane_sum`]).
pub(crate) fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = lane_sum(xs, |x| x) / n;
    let var = lane_sum(xs, |x| (x - mean) * (x - mean)) / (n - 1.0);
    (mean, var.sqrt())
}

/// The sum of `f(x)` over `xs`, the `i`-th term added to lane `i % 4` and
/// the lanes added pairwise at the end: a fixed order (the same answer for
/// the same values, in SQL and in standing conditions), with four
/// additions in flight instead of one chain, which is what a rolling
/// z-score over 50 points spent most of its time waiting on.
fn lane_sum(xs: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0.0f64; 4];
    let mut chunks = xs.chunks_exact(4);
    for chunk in &mut chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += f(x);
        }
    }
    for (lane, &x) in lanes.iter_mut().zip(chunks.remainder()) {
        *lane += f(x);
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
}

/// The `spike_rate` aggregate: the fraction of a series' points `is_spike`
/// flags with the same arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpikeRate {
    signature: Signature,
}

impl SpikeRate {
    /// The UDAF, ready to register.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::from(SpikeRate {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl AggregateUDFImpl for SpikeRate {
    fn name(&self) -> &str {
        "spike_rate"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        SPIKE_RATE.coerce(arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    series_accumulators!();

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(Points::<f64>::state_fields(args.name))
    }
}

impl SeriesAggregate for SpikeRate {
    fn function(&self) -> &'static str {
        "spike_rate"
    }

    /// Where `spike_rate(value, constants... ORDER BY step)` finds a point:
    /// the value first, the ORDER BY key after the call's arguments.
    fn point_arguments(&self, args: &AccumulatorArgs) -> Result<PointArguments> {
        if args.order_bys.len() != 1 {
            return plan_err!(
                "spike_rate needs the order of the points: write spike_rate(value ORDER BY step)"
            );
        }
        Ok(PointArguments {
            step: args.exprs.len(),
            value: 0,
        })
    }

    /// The share of a series' points that are spikes.
    fn finish(&self, args: &AccumulatorArgs) -> Result<Finish<f64>> {
        let constants = arguments::literal_arguments(args.exprs, 1, &SPIKE_RATE)?;
        let rule = SpikeRule::from_arguments("spike_rate", &constants)?;
        Ok(Box::new(move |points: &Points<f64>| {
            if points.values.is_empty() {
                return Ok(ScalarValue::Float64(None));
            }
            let spikes = rule.flags(&points.values);
            let rate = spikes.iter().filter(|&&s| s).count() as f64 / spikes.len() as f64;
            Ok(ScalarValue::Float64(Some(rate)))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(flags: &[bool]) -> Vec<usize> {
        flags
            .iter()
            .enumerate()
            .filter(|(_, &s)| s)
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn the_default_flags_points_20_percent_above_the_recent_median() {
        let mut loss: Vec<f64> = (0..60).map(|i| 3.0 + 0.01 * (i % 3) as f64).collect();
        loss[30] = 3.7; // +23 %
        loss[40] = 3.3; // +10 %: noise-sized bumps are not spikes
        loss[50] = 2.0; // a drop is not a spike upward
        let rule = SpikeRule::default();
        assert_eq!(at(&rule.flags(&loss)), vec![30]);
        let both = SpikeRule {
            direction: Direction::Both,
            ..rule
        };
        assert_eq!(at(&both.flags(&loss)), vec![30, 50]);
    }

    #[test]
    fn an_early_high_loss_in_the_history_does_not_hide_a_spike() {
        // A window still holding the first steps' loss of 10 inflates a
        // z-score's deviation; the median ignores it.
        let mut loss = vec![10.0, 9.0];
        loss.extend((0..40).map(|i| 3.0 + 0.01 * (i % 2) as f64));
        loss.push(4.0);
        let ratio = SpikeRule {
            n: 50,
            ..SpikeRule::default()
        };
        assert_eq!(at(&ratio.flags(&loss)), vec![42]);
        let zscore = SpikeRule {
            n: 50,
            threshold: 6.0,
            method: SpikeMethod::Zscore,
            direction: Direction::Up,
        };
        assert!(!zscore.flags(&loss)[42]);
    }

    #[test]
    fn non_finite_values_are_spikes_and_stay_out_of_the_history() {
        let mut loss = vec![1.0; 10];
        loss[3] = f64::NAN;
        loss[5] = f64::INFINITY;
        assert_eq!(at(&SpikeRule::default().flags(&loss)), vec![3, 5]);
        let scores = SpikeRule::default().scores(&loss);
        assert_eq!(scores[0], None);
        assert_eq!(scores[1], None);
        assert_eq!(scores[6], Some(1.0));
    }

    #[test]
    fn the_history_is_the_previous_n_finite_points() {
        let values: Vec<f64> = (1..=300).map(f64::from).collect();
        let rule = SpikeRule {
            n: 3,
            ..SpikeRule::default()
        };
        let scores = rule.scores(&values);
        // At value 300 the history is 297, 298, 299: median 298.
        assert_eq!(scores[299], Some(300.0 / 298.0));
        assert_eq!(scores[2], Some(3.0 / 1.5));
    }
}
