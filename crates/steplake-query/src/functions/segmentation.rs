//! The search behind `changepoints` (mean shifts) and `phases` (slope
//! changes): segment costs, PELT and binary segmentation, and the default
//! penalty.
//!
//! - [`L2Cost`]: Σ (v − mean)² of a segment, `ruptures`' `model="l2"`.
//! - [`LinearCost`]: the residual Σ (v − a − b·step)² of a segment's
//!   least-squares line, `ruptures`' `model="linear"` with covariates
//!   (1, step).
//! - [`pelt`]: the exact optimum of Σ cost + penalty × #changes, with
//!   `ruptures.Pelt`'s pruning so both give the same breakpoints.
//! - [`binseg`]: greedy binary segmentation (`ruptures.Binseg`), to a
//!   penalty or to a number of changes.
//! - [`Method::Auto`], the default: PELT up to [`PELT_MAX_POINTS`] points and
//!   binary segmentation past them, since PELT is O(n²) on a long series
//!   with few changes and binary segmentation is O(n · changes).
//!
//! The default penalty is (p + 1)·σ̂²·ln n (BIC, p parameters per segment):
//! 2σ̂² ln n for mean shifts, 3σ̂² ln n for lines. σ̂ is the noise estimated
//! from second differences, which a trend does not move, a shift moves at
//! only two points, and repeated values (plateaus) do not set to zero; see
//! [`noise_sigma`].

/// Past this many points the default method is binary segmentation.
pub const PELT_MAX_POINTS: usize = 20_000;

/// How to search for changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// PELT up to [`PELT_MAX_POINTS`], binary segmentation past them.
    Auto,
    /// Pruned exact linear time.
    Pelt,
    /// Binary segmentation.
    Binseg,
}

impl Method {
    /// The method from its SQL name (NULL: `Auto`).
    pub fn named(name: Option<&str>) -> Option<Method> {
        match name.map(str::to_ascii_lowercase).as_deref() {
            None | Some("auto") => Some(Method::Auto),
            Some("pelt") => Some(Method::Pelt),
            Some("binseg") => Some(Method::Binseg),
            _ => None,
        }
    }
}

/// A segment cost: how badly one model fits the points `start..end`.
pub trait Cost {
    /// Parameters of the model fitted to each segment.
    const PARAMETERS: f64;
    /// The cost of `start..end`.
    fn error(&self, start: usize, end: usize) -> f64;
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
}

impl Cost for L2Cost {
    const PARAMETERS: f64 = 1.0;

    fn error(&self, start: usize, end: usize) -> f64 {
        let n = (end - start) as f64;
        if n == 0.0 {
            return 0.0;
        }
        let s = self.sum[end] - self.sum[start];
        let q = self.sum_sq[end] - self.sum_sq[start];
        (q - s * s / n).max(0.0)
    }
}

/// The residual cost of a least-squares line per segment, from prefix sums
/// of x, y, x², xy, y² (x and y centered and x scaled, for accuracy).
pub struct LinearCost {
    /// Prefix sums: [x, y, xx, xy, yy].
    sums: Vec<[f64; 5]>,
}

impl LinearCost {
    /// Prefix sums for the points (`x[i]`, `y[i]`).
    pub fn new(x: &[f64], y: &[f64]) -> Self {
        let n = x.len().max(1) as f64;
        let (cx, cy) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
        let scale = x
            .iter()
            .map(|v| (v - cx).abs())
            .fold(0.0, f64::max)
            .max(1e-300);
        let mut sums = Vec::with_capacity(x.len() + 1);
        let mut acc = [0.0; 5];
        sums.push(acc);
        for (&xi, &yi) in x.iter().zip(y) {
            let (a, b) = ((xi - cx) / scale, yi - cy);
            acc[0] += a;
            acc[1] += b;
            acc[2] += a * a;
            acc[3] += a * b;
            acc[4] += b * b;
            sums.push(acc);
        }
        LinearCost { sums }
    }

    /// The least-squares slope and intercept of `start..end` in the scaled
    /// coordinates, and the residual sum of squares.
    fn fit(&self, start: usize, end: usize) -> (f64, f64) {
        let n = (end - start) as f64;
        let d: Vec<f64> = (0..5)
            .map(|k| self.sums[end][k] - self.sums[start][k])
            .collect();
        let (sx, sy, sxx, sxy, syy) = (d[0], d[1], d[2], d[3], d[4]);
        let vxx = sxx - sx * sx / n;
        let vxy = sxy - sx * sy / n;
        let vyy = syy - sy * sy / n;
        if vxx <= 1e-300 * n {
            return (0.0, vyy.max(0.0));
        }
        (vxy / vxx, (vyy - vxy * vxy / vxx).max(0.0))
    }
}

impl Cost for LinearCost {
    const PARAMETERS: f64 = 2.0;

    fn error(&self, start: usize, end: usize) -> f64 {
        if end - start < 2 {
            return 0.0;
        }
        self.fit(start, end).1
    }
}

/// Segment ends (excluding `n`) of the PELT optimum, as
/// `ruptures.Pelt(model, min_size, jump=1).predict(pen)` computes them,
/// including its pruning rule, so that both give the same answer.
pub fn pelt(cost: &impl Cost, n: usize, penalty: f64, min_size: usize) -> Vec<usize> {
    if n < 2 * min_size {
        return Vec::new();
    }
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

/// When binary segmentation stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// When no split gains more than this penalty.
    Penalty(f64),
    /// After this many splits (or when no split gains anything).
    Changes(usize),
}

/// Segment ends (excluding `n`) from greedy binary segmentation, as
/// `ruptures.Binseg(model, min_size, jump=1).predict(pen=… | n_bkps=…)`
/// finds them.
pub fn binseg(cost: &impl Cost, n: usize, stop: Stop, min_size: usize) -> Vec<usize> {
    let mut breakpoints = vec![n];
    loop {
        if let Stop::Changes(k) = stop {
            if breakpoints.len() > k {
                break;
            }
        }
        let mut best: Option<(usize, f64)> = None;
        let mut start = 0;
        for &end in &breakpoints {
            if let Some((split, gain)) = best_split(cost, start, end, min_size) {
                if best.is_none_or(|(_, g)| gain > g) {
                    best = Some((split, gain));
                }
            }
            start = end;
        }
        let threshold = match stop {
            Stop::Penalty(p) => p,
            Stop::Changes(_) => 0.0,
        };
        match best {
            Some((split, gain)) if gain > threshold => {
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
fn best_split(cost: &impl Cost, start: usize, end: usize, min_size: usize) -> Option<(usize, f64)> {
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

/// Breakpoints of `n` points by `method`, stopping at `stop`.
pub fn search(
    cost: &impl Cost,
    n: usize,
    method: Method,
    stop: Stop,
    min_size: usize,
) -> Vec<usize> {
    match (method, stop) {
        (_, Stop::Changes(_)) | (Method::Binseg, _) => binseg(cost, n, stop, min_size),
        (Method::Auto, Stop::Penalty(_)) if n > PELT_MAX_POINTS => binseg(cost, n, stop, min_size),
        (Method::Auto | Method::Pelt, Stop::Penalty(p)) => pelt(cost, n, p, min_size),
    }
}

/// The noise σ̂ of a series, for the default penalty.
///
/// From second differences dᵢ = vᵢ₊₁ − 2vᵢ + vᵢ₋₁ (Var d = 6σ² for white
/// noise; a linear trend adds nothing and a mean shift changes two of them):
/// σ̂ = 1.4826 · median|d| / √6. When more than half the dᵢ are exactly 0
/// (plateaus of repeated values, as accuracy curves have), that median is 0,
/// and the median of the nonzero |dᵢ| is used: the noise where there is
/// some. σ̂ is never
/// below 1% of the spread of the values (the 5th to 95th percentile), so a
/// curve smooth to the last digit is not cut into pieces the size of its
/// rounding.
pub fn noise_sigma(values: &[f64]) -> f64 {
    let mut d: Vec<f64> = values
        .windows(3)
        .map(|w| (w[2] - 2.0 * w[1] + w[0]).abs())
        .collect();
    let mut sigma = 1.4826 * median(&mut d) / 6f64.sqrt();
    if sigma == 0.0 {
        // Plateaus: the exact repeats say nothing about the noise where
        // there is some.
        d.retain(|&x| x > 0.0);
        sigma = 1.4826 * median(&mut d) / 6f64.sqrt();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    let spread = if sorted.is_empty() {
        0.0
    } else {
        at(0.95) - at(0.05)
    };
    sigma.max(0.01 * spread)
}

/// The median (0 for none); reorders `xs`.
fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mid = xs.len() / 2;
    *xs.select_nth_unstable_by(mid, f64::total_cmp).1
}

/// The default penalty for a cost with `parameters` per segment:
/// (parameters + 1) · σ̂² · ln n.
pub fn default_penalty(values: &[f64], parameters: f64) -> f64 {
    let n = values.len().max(2) as f64;
    let sigma = noise_sigma(values);
    let variance = if sigma > 0.0 { sigma * sigma } else { 1e-12 };
    (parameters + 1.0) * variance * n.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy(levels: &[(usize, f64)]) -> Vec<f64> {
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
        let values = noisy(&[(50, 0.0), (30, 3.0), (40, -1.0)]);
        let cost = L2Cost::new(&values);
        assert_eq!(pelt(&cost, values.len(), 1.0, 2), vec![50, 80]);
        assert_eq!(
            binseg(&cost, values.len(), Stop::Penalty(1.0), 2),
            vec![50, 80]
        );
        // The larger shift (3 to −1) first.
        assert_eq!(binseg(&cost, values.len(), Stop::Changes(1), 2), vec![80]);
    }

    #[test]
    fn the_noise_estimate_survives_plateaus_and_trends() {
        // An accuracy curve: noisy near chance, then exactly 1.0 for longer.
        let mut acc: Vec<f64> = noisy(&[(60, 0.05)]);
        acc.extend(std::iter::repeat_n(1.0, 120));
        let sigma = noise_sigma(&acc);
        assert!(sigma > 0.01, "{sigma}");
        let cost = L2Cost::new(&acc);
        let found = pelt(&cost, acc.len(), default_penalty(&acc, 1.0), 2);
        assert_eq!(found, vec![60]);
        // A straight line with noise: the trend does not inflate σ̂.
        let line: Vec<f64> = noisy(&[(200, 0.0)])
            .iter()
            .enumerate()
            .map(|(i, v)| v + 0.5 * i as f64)
            .collect();
        let sigma = noise_sigma(&line);
        // σ of uniform(−0.1, 0.1) noise is 0.058; the floor is 1% of ~90.
        assert!(sigma < 1.0, "{sigma}");
    }

    #[test]
    fn a_line_per_segment_finds_slope_changes() {
        // Warmup rise, flat, then a decay: two changes of slope, no jump.
        let y: Vec<f64> = (0..300)
            .map(|i| match i {
                0..100 => i as f64 * 0.01,
                100..200 => 1.0,
                _ => 1.0 - (i - 200) as f64 * 0.005,
            })
            .collect();
        let x: Vec<f64> = (0..300).map(|i| i as f64 * 10.0).collect();
        let cost = LinearCost::new(&x, &y);
        let found = pelt(&cost, y.len(), default_penalty(&y, 2.0), 5);
        // Point 100 (value 1.0) lies on both lines: either side is right.
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].abs_diff(100) <= 1 && found[1] == 200, "{found:?}");
        // The mean-shift cost cuts the same curve into a staircase.
        let l2 = L2Cost::new(&y);
        assert!(pelt(&l2, y.len(), default_penalty(&y, 1.0), 5).len() > 2);
    }
}
