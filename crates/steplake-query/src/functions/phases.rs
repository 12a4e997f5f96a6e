//! `phases(step, value [, method [, penalty [, min_size [, n_changes]]]])`:
//! where a curve changes slope, so that warmup, a plateau, a decay or a
//! grokking rise each come out as one phase.
//!
//! The same aggregate and search as [`super::changepoints`]
//! ([`SegmentModel::Line`](super::changepoints::SegmentModel)), with a line fitted to each
//! segment (least squares of value on step) and its residual Σ (v − a − b·step)²
//! as the segment cost (`ruptures`' `model="linear"` with covariates
//! (1, step)). Returns a list of `{step, slope_before, slope_after, gain}`
//! in step order: `step` starts the new phase, the slopes are per step, and
//! `gain` is how much the split lowers the residual.
//!
//! Defaults: `method` `'auto'`, `penalty` 3·σ̂²·ln n (a line has two
//! parameters), `min_size` 5 points, no `n_changes`. NaN and ±Inf values are
//! left out.
//!
//! ```sql
//! SELECT p['step'], p['slope_before'], p['slope_after']
//! FROM (SELECT unnest(phases(step, value)) AS p FROM scalars
//!       WHERE run_id = 'r' AND name = 'eval/acc');
//! ```

use super::arguments::Parameters;
use super::changepoints::{bounds, finite_points, SearchArguments, SEARCH_PARAMETERS};
use super::segmentation::{Cost, LinearCost};

pub(crate) const PHASES: Parameters = Parameters {
    function: "phases",
    usage: "(step, value [, method [, penalty [, min_size [, n_changes]]]])",
    list: &SEARCH_PARAMETERS,
    required: 2,
};

/// Points a phase holds at least, by default.
pub(crate) const DEFAULT_MIN_SIZE: usize = 5;

/// A change of slope.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseChange {
    /// First step of the new phase.
    pub step: i64,
    /// Least-squares slope (per step) of the phase before.
    pub slope_before: f64,
    /// Least-squares slope (per step) of the phase after.
    pub slope_after: f64,
    /// Reduction of the residual from splitting here.
    pub gain: f64,
}

/// The slope changes of a series given as steps and values sorted by step.
pub(crate) fn detect(steps: &[i64], values: &[f64], search: &SearchArguments) -> Vec<PhaseChange> {
    let (steps, values) = finite_points(steps, values);
    let x: Vec<f64> = steps.iter().map(|&s| s as f64).collect();
    let cost = LinearCost::new(&x, &values);
    let breakpoints = search.breakpoints(&cost, &values);
    bounds(&breakpoints, values.len())
        .windows(3)
        .map(|w| {
            let (before, at, after) = (w[0], w[1], w[2]);
            PhaseChange {
                step: steps[at],
                slope_before: slope(&x[before..at], &values[before..at]),
                slope_after: slope(&x[at..after], &values[at..after]),
                gain: cost.error(before, after) - cost.error(before, at) - cost.error(at, after),
            }
        })
        .collect()
}

/// The least-squares slope of y on x (0 for a single x).
fn slope(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxx += (a - mx) * (a - mx);
        sxy += (a - mx) * (b - my);
    }
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}
