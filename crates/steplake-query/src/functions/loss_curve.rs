//! Schedule-aware loss prediction: `fit_loss_curve(step, value, lr [, lambda
//! | prior])` and `predict_loss_curve(fit, step [, level])`.
//!
//! The model is the learning-rate annealing law of Tissue et al. (2024,
//! "Scaling Law with Learning Rate Annealing"):
//!
//! L(t) = L₀ + A · S₁(t)^(−α) − C · S₂(t)
//!
//! - S₁(t) = Σ_{τ ≤ t} η_τ, the area under the learning rate ("LR area"):
//!   the loss falls with how far the optimizer has travelled, not with the
//!   step count, so a schedule that decays slows the power law down;
//! - S₂(t) = Σ_{i ≤ t} mᵢ with mᵢ = λ·mᵢ₋₁ + max(0, ηᵢ₋₁ − ηᵢ), the
//!   "annealing area": each decrease of η lowers the loss over the next
//!   ~1/(1 − λ) steps (λ = 0.999 by default). Increases (warmup) add nothing.
//!
//! η is the run's own logged learning rate, linear between logged points
//! and held constant before the first and after the last. Rows whose value
//! is NULL still count for the schedule: pass the planned learning rate of
//! future steps with a NULL loss to predict them.
//!
//! Fitting: points before the learning rate first reaches its maximum
//! (warmup) are left out, as are non-finite values and points with S₁ = 0.
//! For each α the fit is linear least squares in (L₀, A, C) (C is dropped
//! when the fitted points have no annealing, or when it comes out below 0);
//! α ∈ [0.001, 5] is found as `fit_power_law` finds it. At least five points
//! must remain, else the fit is NULL.
//!
//! With a prior (the fit of another run of the same setup, passed as the
//! 4th argument), α, C and λ are the prior's and only (L₀, A) are fitted: a
//! prefix before any decay of η cannot tell C, a finished run can
//! ([`fit_loss_curve_with_prior`]).
//!
//! Uncertainty: the covariance of the parameters is s²·(JᵀJ)⁻¹ (J the
//! Jacobian, s² the residual variance), multiplied by (1 + ρ)/(1 − ρ), where
//! ρ is the lag-1 autocorrelation of the residuals: neighbouring points of a
//! loss curve are not independent, and without it the interval is far too
//! narrow. `predict_loss_curve` returns `{value, lo, hi}`, a prediction
//! interval at `level` (default 0.95): the parameters' uncertainty plus the
//! residual noise.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, StructArray};
use arrow::buffer::OffsetBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type, Int64Type};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, EmitTo, GroupsAccumulator,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::arguments::{self, Kind, Parameters};
use super::points::{answers_array, kept, list_column, single_list};
use super::power_law::best_exponent;

/// The default decay of the annealing momentum.
pub const DEFAULT_LAMBDA: f64 = 0.999;

/// Fewest fitted points for a fit.
const MIN_POINTS: usize = 5;

const FIT_LOSS_CURVE: Parameters = Parameters {
    function: "fit_loss_curve",
    usage: "(step, value, lr [, lambda | prior])",
    list: &[
        ("step", Kind::Step),
        ("value", Kind::Value),
        ("lr", Kind::Value),
        ("lambda", Kind::Number),
    ],
    required: 3,
};

/// One logged learning rate and the areas up to its step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Knot {
    /// The step.
    pub step: i64,
    /// η at that step.
    pub lr: f64,
    /// S₁ through that step.
    pub s1: f64,
    /// The annealing momentum m at that step.
    pub m: f64,
    /// S₂ through that step.
    pub s2: f64,
}

/// A learning-rate schedule with its areas, from logged (step, lr) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Knots in step order, one per distinct step.
    pub knots: Vec<Knot>,
    /// λ.
    pub lambda: f64,
}

impl Schedule {
    /// From (step, lr) points in any order (non-finite lr left out; a step
    /// given twice keeps its last lr); `None` without a point.
    pub fn new(points: &[(i64, f64)], lambda: f64) -> Option<Schedule> {
        let mut sorted: Vec<(i64, f64)> = points
            .iter()
            .copied()
            .filter(|(_, lr)| lr.is_finite())
            .collect();
        sorted.sort_by_key(|&(step, _)| step);
        let mut deduped: Vec<(i64, f64)> = Vec::with_capacity(sorted.len());
        for (step, lr) in sorted {
            match deduped.last_mut() {
                Some(last) if last.0 == step => last.1 = lr,
                _ => deduped.push((step, lr)),
            }
        }
        let &(first_step, first_lr) = deduped.first()?;
        // Constant before the first logged point: steps 1..=first_step.
        let mut knots = vec![Knot {
            step: first_step,
            lr: first_lr,
            s1: first_lr * first_step.max(0) as f64,
            m: 0.0,
            s2: 0.0,
        }];
        for &(step, lr) in &deduped[1..] {
            let previous = *knots.last().expect("one knot at least");
            let (s1, m, s2) = advance(
                &previous,
                lr,
                step - previous.step,
                step - previous.step,
                lambda,
            );
            knots.push(Knot {
                step,
                lr,
                s1,
                m,
                s2,
            });
        }
        Some(Schedule { knots, lambda })
    }

    /// (S₁, S₂) at `step`.
    pub fn areas(&self, step: i64) -> (f64, f64) {
        let index = self.knots.partition_point(|k| k.step <= step);
        if index == 0 {
            // Before the first knot: η constant, no annealing yet.
            let first = self.knots[0];
            return (first.lr * step.max(0) as f64, 0.0);
        }
        let from = self.knots[index - 1];
        if from.step == step {
            return (from.s1, from.s2);
        }
        let (next_lr, span) = match self.knots.get(index) {
            Some(next) => (next.lr, next.step - from.step),
            // After the last knot: η stays at its last value.
            None => (from.lr, i64::MAX),
        };
        let (s1, _, s2) = advance(&from, next_lr, span, step - from.step, self.lambda);
        (s1, s2)
    }

    /// The first step at which η reaches its maximum: warmup ends there.
    pub fn warmup_end(&self) -> i64 {
        let peak = self.knots.iter().map(|k| k.lr).fold(f64::MIN, f64::max);
        self.knots
            .iter()
            .find(|k| k.lr >= peak)
            .map_or(0, |k| k.step)
    }
}

/// The areas `steps` steps after `from`, on a linear segment reaching `lr`
/// after `span` steps: η at from.step + j is from.lr − δ·j, δ = (from.lr −
/// lr) / span. Closed forms, so a step range of any length costs O(1).
fn advance(from: &Knot, lr: f64, span: i64, steps: i64, lambda: f64) -> (f64, f64, f64) {
    let k = steps as f64;
    let delta = if span == i64::MAX || span == 0 {
        0.0
    } else {
        (from.lr - lr) / span as f64
    };
    // S₁: Σ_{j=1..k} (η₀ − δ·j)
    let s1 = from.s1 + k * from.lr - delta * k * (k + 1.0) / 2.0;
    // m_j = λ·m_{j−1} + δ⁺; S₂ += Σ_{j=1..k} m_j
    let d = delta.max(0.0);
    let (m, sum_m) = if lambda >= 1.0 {
        (from.m + d * k, from.m * k + d * k * (k + 1.0) / 2.0)
    } else {
        let lk = lambda.powf(k);
        let geometric = lambda * (1.0 - lk) / (1.0 - lambda);
        let m = lk * from.m + d * (1.0 - lk) / (1.0 - lambda);
        let sum = from.m * geometric + d / (1.0 - lambda) * (k - geometric);
        (m, sum)
    };
    (s1, m, from.s2 + sum_m)
}

/// A fitted loss curve.
#[derive(Debug, Clone, PartialEq)]
pub struct LossCurve {
    /// L₀, the loss the curve tends to.
    pub l0: f64,
    /// A.
    pub a: f64,
    /// α.
    pub alpha: f64,
    /// C (0 when the fitted points had no annealing).
    pub c: f64,
    /// Covariance of (L₀, A, α, C), row-major 4 × 4, inflated for
    /// autocorrelated residuals.
    pub cov: [f64; 16],
    /// Root-mean-square residual.
    pub rmse: f64,
    /// Residual variance, inflated like `cov`.
    pub noise: f64,
    /// Points fitted.
    pub points: usize,
    /// Points before this step were warmup and left out.
    pub warmup_end: i64,
    /// The schedule, to predict at any step.
    pub schedule: Schedule,
    /// (L₀, A, α, C) of each member of an ensemble: one per run of a prior
    /// from [`loss_curve_prior`](super::loss_prior), each with that run's α
    /// and C and its own (L₀, A). Empty otherwise.
    pub members: Vec<[f64; 4]>,
}

impl LossCurve {
    /// The predicted loss at `step`.
    pub fn predict(&self, step: i64) -> f64 {
        let (s1, s2) = self.schedule.areas(step);
        self.l0 + self.a * s1.powf(-self.alpha) - self.c * s2
    }

    /// The prediction and its standard error (parameters and noise).
    ///
    /// For an ensemble (two members or more), the prediction is the mean of
    /// the members' and the uncertainty of α and C is their spread
    /// (variance × (1 + 1/m), for m members), plus the uncertainty of
    /// (L₀, A) and the noise.
    pub fn predict_with_error(&self, step: i64) -> (f64, f64) {
        let (s1, s2) = self.schedule.areas(step);
        let z = s1.powf(-self.alpha);
        let gradient = [1.0, z, -self.a * s1.ln() * z, -s2];
        let fitted = if self.members.len() >= 2 { 2 } else { 4 };
        let mut variance = self.noise;
        for i in 0..fitted {
            for j in 0..fitted {
                variance += gradient[i] * self.cov[i * 4 + j] * gradient[j];
            }
        }
        if fitted == 4 {
            return (self.predict(step), variance.max(0.0).sqrt());
        }
        let predictions: Vec<f64> = self
            .members
            .iter()
            .map(|[l0, a, alpha, c]| l0 + a * s1.powf(-alpha) - c * s2)
            .collect();
        let m = predictions.len() as f64;
        let mean = predictions.iter().sum::<f64>() / m;
        let spread = predictions.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / (m - 1.0);
        variance += spread * (1.0 + 1.0 / m);
        (mean, variance.max(0.0).sqrt())
    }
}

/// Fits the curve to (step, value) points under `schedule`.
pub fn fit_loss_curve(points: &[(i64, f64)], schedule: Schedule) -> Option<LossCurve> {
    fit_loss_curve_with_prior(points, schedule, None)
}

/// Fits the curve to (step, value) points under `schedule`, with α and C
/// taken from `prior` when given: the fit of another run of the same model
/// and data (a finished one, say), whose exponent and annealing a short
/// prefix cannot tell. Only L₀ and A are then fitted (and C too when the
/// prior has none, C = 0); the prior's uncertainty in α and C is carried
/// into the covariance.
pub fn fit_loss_curve_with_prior(
    points: &[(i64, f64)],
    schedule: Schedule,
    prior: Option<&LossCurve>,
) -> Option<LossCurve> {
    let warmup_end = schedule.warmup_end();
    let mut rows: Vec<Row> = points
        .iter()
        .filter(|(step, v)| *step >= warmup_end && v.is_finite())
        .filter_map(|&(step, v)| {
            let (s1, s2) = schedule.areas(step);
            (s1 > 0.0 && s1.is_finite()).then_some((s1.ln(), s2, v))
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    if rows.len() < MIN_POINTS || rows.iter().all(|r| r.0 == rows[0].0) {
        return None;
    }
    // A prior's C is carried over only when it was fitted (C > 0).
    let prior_c = prior.map(|p| p.c).filter(|c| *c > 0.0 && c.is_finite());
    let alpha = match prior {
        Some(p) if p.alpha.is_finite() && p.alpha > 0.0 => p.alpha,
        Some(_) => return None,
        None => {
            best_exponent(|alpha| linear_fit(&rows, alpha, None).map_or(f64::INFINITY, |f| f.1))?
        }
    };
    let ([l0, a, c], sse) = linear_fit(&rows, alpha, prior_c)?;
    // The parameters fitted here, of (L₀, A, α, C); the rest come from the
    // prior (α, and C when it is carried over) or are 0 (C).
    let mut fitted = vec![0, 1];
    if prior.is_none() {
        fitted.push(2);
    }
    if prior_c.is_none() && c > 0.0 {
        fitted.push(3);
    }
    let jacobian: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| {
            let z = (-alpha * r.0).exp();
            let column = [1.0, z, -a * r.0 * z, -r.1];
            fitted.iter().map(|&k| column[k]).collect()
        })
        .collect();
    let n = rows.len();
    let residuals: Vec<f64> = rows
        .iter()
        .map(|r| r.2 - (l0 + a * (-alpha * r.0).exp() - c * r.1))
        .collect();
    let dof = (n.saturating_sub(fitted.len())).max(1) as f64;
    let inflation = autocorrelation_inflation(&residuals);
    let s2 = sse / dof * inflation;
    let mut cov = [0.0; 16];
    match invert(&gram(&jacobian)) {
        Some(inverse) => {
            for (i, &pi) in fitted.iter().enumerate() {
                for (j, &pj) in fitted.iter().enumerate() {
                    cov[pi * 4 + pj] = inverse[i][j] * s2;
                }
            }
        }
        None => cov = [f64::NAN; 16],
    }
    if let Some(prior) = prior {
        let from_prior: &[usize] = if prior_c.is_some() { &[2, 3] } else { &[2] };
        for &i in from_prior {
            for &j in from_prior {
                cov[i * 4 + j] = prior.cov[i * 4 + j];
            }
        }
    }
    // An ensemble prior: each member's α and C, with (L₀, A) fitted here.
    let mut members = Vec::new();
    for &[_, _, member_alpha, member_c] in prior.map_or(&[][..], |p| &p.members[..]) {
        let ([member_l0, member_a, _], _) = linear_fit(&rows, member_alpha, Some(member_c))?;
        members.push([member_l0, member_a, member_alpha, member_c]);
    }
    Some(LossCurve {
        l0,
        a,
        alpha,
        c,
        cov,
        rmse: (sse / n as f64).sqrt(),
        noise: sse / dof,
        points: n,
        warmup_end,
        schedule,
        members,
    })
}

/// A fitted point: (ln S₁, S₂, value).
type Row = (f64, f64, f64);

/// (L₀, A, C) and the sum of squared residuals of the rows for one α, by
/// linear least squares: C held at `fixed_c` when given, else fitted when
/// the rows anneal, and dropped (0) when it comes out below 0.
fn linear_fit(rows: &[Row], alpha: f64, fixed_c: Option<f64>) -> Option<([f64; 3], f64)> {
    let solve = |with_c: bool, offset_c: f64| -> Option<([f64; 3], f64)> {
        let design: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| {
                let z = (-alpha * r.0).exp();
                if with_c {
                    vec![1.0, z, -r.1]
                } else {
                    vec![1.0, z]
                }
            })
            .collect();
        // A fixed C moves to the left side: y + C·S₂ ≈ L₀ + A·z.
        let y: Vec<f64> = rows.iter().map(|r| r.2 + offset_c * r.1).collect();
        let beta = least_squares(&design, &y)?;
        let sse: f64 = design
            .iter()
            .zip(&y)
            .map(|(x, yi)| (yi - dot(x, &beta)).powi(2))
            .sum();
        let c = if with_c { beta[2] } else { offset_c };
        sse.is_finite().then_some(([beta[0], beta[1], c], sse))
    };
    if let Some(c) = fixed_c {
        return solve(false, c);
    }
    let anneals = rows.iter().any(|r| r.1 > 0.0);
    match anneals.then(|| solve(true, 0.0)).flatten() {
        Some(fit) if fit.0[2] >= 0.0 => Some(fit),
        _ => solve(false, 0.0),
    }
}

/// (1 + ρ)/(1 − ρ) for the lag-1 autocorrelation ρ of `residuals` (ρ ≥ 0,
/// capped at 0.99): how many times fewer independent points there are.
fn autocorrelation_inflation(residuals: &[f64]) -> f64 {
    let mean = residuals.iter().sum::<f64>() / residuals.len() as f64;
    let centered: Vec<f64> = residuals.iter().map(|r| r - mean).collect();
    let variance: f64 = centered.iter().map(|r| r * r).sum();
    if variance <= 0.0 {
        return 1.0;
    }
    let lagged: f64 = centered.windows(2).map(|w| w[0] * w[1]).sum();
    let rho = (lagged / variance).clamp(0.0, 0.99);
    (1.0 + rho) / (1.0 - rho)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// XᵀX.
fn gram(x: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let p = x[0].len();
    let mut g = vec![vec![0.0; p]; p];
    for row in x {
        for i in 0..p {
            for j in 0..p {
                g[i][j] += row[i] * row[j];
            }
        }
    }
    g
}

/// The least-squares β of y ≈ Xβ, by the normal equations; `None` when X
/// is rank deficient.
fn least_squares(x: &[Vec<f64>], y: &[f64]) -> Option<Vec<f64>> {
    let p = x[0].len();
    let mut xty = vec![0.0; p];
    for (row, yi) in x.iter().zip(y) {
        for i in 0..p {
            xty[i] += row[i] * yi;
        }
    }
    let inverse = invert(&gram(x))?;
    Some((0..p).map(|i| dot(&inverse[i], &xty)).collect())
}

/// The inverse of a small square matrix by Gauss-Jordan elimination with
/// partial pivoting; `None` when it is singular (relative to its scale).
fn invert(m: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = m.len();
    let scale = m.iter().flatten().fold(0.0f64, |s, v| s.max(v.abs()));
    if scale == 0.0 || !scale.is_finite() {
        return None;
    }
    let mut a: Vec<Vec<f64>> = m.to_vec();
    let mut inv: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() <= 1e-13 * scale {
            return None;
        }
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let d = a[col][col];
        for j in 0..n {
            a[col][j] /= d;
            inv[col][j] /= d;
        }
        for i in 0..n {
            if i != col {
                let f = a[i][col];
                if f != 0.0 {
                    for j in 0..n {
                        a[i][j] -= f * a[col][j];
                        inv[i][j] -= f * inv[col][j];
                    }
                }
            }
        }
    }
    Some(inv)
}

/// The standard normal quantile (Acklam's rational approximation, relative
/// error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

fn knot_fields() -> Fields {
    Fields::from(vec![
        Field::new("step", DataType::Int64, false),
        Field::new("lr", DataType::Float64, false),
        Field::new("s1", DataType::Float64, false),
        Field::new("m", DataType::Float64, false),
        Field::new("s2", DataType::Float64, false),
    ])
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// The names of the parameters, in `cov`'s order.
const PARAMETER_NAMES: [&str; 4] = ["l0", "a", "alpha", "c"];

pub(super) fn fit_fields() -> Fields {
    let mut fields: Vec<Field> = PARAMETER_NAMES
        .iter()
        .map(|n| Field::new(*n, DataType::Float64, false))
        .collect();
    fields.extend(
        PARAMETER_NAMES
            .iter()
            .map(|n| Field::new(format!("{n}_se"), DataType::Float64, false)),
    );
    fields.extend([
        Field::new("rmse", DataType::Float64, false),
        Field::new("noise", DataType::Float64, false),
        Field::new("points", DataType::Int64, false),
        Field::new("warmup_end", DataType::Int64, false),
        Field::new("lambda", DataType::Float64, false),
        Field::new("cov", list_of(DataType::Float64), false),
        Field::new("schedule", list_of(DataType::Struct(knot_fields())), false),
        Field::new("members", list_of(DataType::Struct(member_fields())), false),
    ]);
    Fields::from(fields)
}

/// (L₀, A, α, C) of one member of an ensemble fit.
fn member_fields() -> Fields {
    PARAMETER_NAMES
        .iter()
        .map(|n| Field::new(*n, DataType::Float64, false))
        .collect()
}

pub(super) fn fit_value(fit: &LossCurve) -> Result<ScalarValue> {
    let f = |v: f64| -> ArrayRef { Arc::new(Float64Array::from(vec![v])) };
    let i = |v: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![v])) };
    let knots = &fit.schedule.knots;
    let knot_columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(knots.iter().map(|k| k.step))),
        Arc::new(Float64Array::from_iter_values(knots.iter().map(|k| k.lr))),
        Arc::new(Float64Array::from_iter_values(knots.iter().map(|k| k.s1))),
        Arc::new(Float64Array::from_iter_values(knots.iter().map(|k| k.m))),
        Arc::new(Float64Array::from_iter_values(knots.iter().map(|k| k.s2))),
    ];
    let knots = StructArray::try_new(knot_fields(), knot_columns, None)?;
    let member_columns: Vec<ArrayRef> = (0..4)
        .map(|k| {
            Arc::new(Float64Array::from_iter_values(
                fit.members.iter().map(|member| member[k]),
            )) as ArrayRef
        })
        .collect();
    let members = StructArray::try_new(member_fields(), member_columns, None)?;
    let mut columns = vec![f(fit.l0), f(fit.a), f(fit.alpha), f(fit.c)];
    columns.extend((0..4).map(|k| f(fit.cov[k * 5].max(0.0).sqrt())));
    columns.extend([
        f(fit.rmse),
        f(fit.noise),
        i(fit.points as i64),
        i(fit.warmup_end),
        f(fit.schedule.lambda),
        Arc::new(single_list(Arc::new(Float64Array::from(fit.cov.to_vec())))) as ArrayRef,
        Arc::new(single_list(Arc::new(knots))) as ArrayRef,
        Arc::new(single_list(Arc::new(members))) as ArrayRef,
    ]);
    Ok(ScalarValue::Struct(Arc::new(StructArray::try_new(
        fit_fields(),
        columns,
        None,
    )?)))
}

/// The `fit_loss_curve` aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FitLossCurve {
    signature: Signature,
}

impl FitLossCurve {
    /// The UDAF, ready to register.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::from(FitLossCurve {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl AggregateUDFImpl for FitLossCurve {
    fn name(&self) -> &str {
        "fit_loss_curve"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [_, _, _, prior @ DataType::Struct(fields)] => {
                let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
                if !fit_fields()
                    .iter()
                    .all(|f| names.contains(&f.name().as_str()))
                {
                    return plan_err!(
                        "fit_loss_curve: a struct as the 4th argument is a prior and must be \
                         the result of fit_loss_curve (on another run), got {prior}"
                    );
                }
                let mut types = FIT_LOSS_CURVE.coerce(&arg_types[..3])?;
                types.push(prior.clone());
                Ok(types)
            }
            _ => FIT_LOSS_CURVE.coerce(arg_types),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(fit_fields()))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(LossCurveAccumulator {
            call: LossCurveCall::of(&args)?,
            series: LossCurveSeries::default(),
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(LossCurveGroups {
            call: LossCurveCall::of(&args)?,
            groups: Vec::new(),
            heap_bytes: 0,
        }))
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let mut fields: Vec<FieldRef> = ["step", "value", "lr"]
            .iter()
            .zip([DataType::Int64, DataType::Float64, DataType::Float64])
            .map(|(name, t)| {
                Arc::new(Field::new(
                    format!("{}[{name}]", args.name),
                    list_of(t),
                    true,
                ))
            })
            .collect();
        fields.push(Arc::new(Field::new(
            format!("{}[prior]", args.name),
            DataType::Struct(fit_fields()),
            true,
        )));
        Ok(fields)
    }
}

/// What a call of `fit_loss_curve` fixes for every series it fits: its
/// `lambda`, or that its 4th argument is a prior (whose lambda it uses).
#[derive(Debug, Clone, Copy)]
struct LossCurveCall {
    lambda: f64,
    takes_prior: bool,
}

impl LossCurveCall {
    fn of(args: &AccumulatorArgs) -> Result<LossCurveCall> {
        let takes_prior = args
            .expr_fields
            .get(3)
            .is_some_and(|f| matches!(f.data_type(), DataType::Struct(_)));
        if takes_prior {
            return Ok(LossCurveCall {
                lambda: DEFAULT_LAMBDA,
                takes_prior,
            });
        }
        let lambda = match arguments::literal_argument(args.exprs, 3, "fit_loss_curve", "lambda")? {
            None => DEFAULT_LAMBDA,
            Some(v) if v.is_null() => DEFAULT_LAMBDA,
            Some(v) => match arguments::number(&v) {
                Some(l) if (0.0..=1.0).contains(&l) => l,
                _ => return plan_err!("fit_loss_curve: lambda must be in [0, 1], got {v}"),
            },
        };
        Ok(LossCurveCall {
            lambda,
            takes_prior,
        })
    }

    /// The (step, value, lr) arrays of a call's arguments, and its prior.
    fn arguments<'a>(
        &self,
        values: &'a [ArrayRef],
    ) -> Result<(
        &'a ArrayRef,
        &'a ArrayRef,
        &'a ArrayRef,
        Option<&'a ArrayRef>,
    )> {
        let (Some(steps), Some(v), Some(lr)) = (values.first(), values.get(1), values.get(2))
        else {
            return exec_err!("fit_loss_curve: expected (step, value, lr)");
        };
        Ok((steps, v, lr, values.get(3).filter(|_| self.takes_prior)))
    }

    /// The fit of one series' points.
    fn fit(&self, series: &LossCurveSeries) -> Result<ScalarValue> {
        if self.takes_prior && series.prior.is_none() {
            // No prior (a NULL one, or none joined in): no fit.
            return ScalarValue::try_from(DataType::Struct(fit_fields()));
        }
        let schedule_points: Vec<(i64, f64)> = series
            .steps
            .iter()
            .copied()
            .zip(series.lrs.iter().copied())
            .collect();
        let loss_points: Vec<(i64, f64)> = series
            .steps
            .iter()
            .copied()
            .zip(series.values.iter().copied())
            .collect();
        let lambda = series
            .prior
            .as_ref()
            .map_or(self.lambda, |p| p.schedule.lambda);
        let fit = Schedule::new(&schedule_points, lambda).and_then(|schedule| {
            fit_loss_curve_with_prior(&loss_points, schedule, series.prior.as_ref())
        });
        match fit {
            Some(fit) => fit_value(&fit),
            None => ScalarValue::try_from(DataType::Struct(fit_fields())),
        }
    }
}

/// One series' rows: every (step, value, lr), NaN standing for NULL in
/// values and lrs; with a prior, the first one given (it is the same on
/// every row).
#[derive(Debug, Default)]
struct LossCurveSeries {
    prior: Option<LossCurve>,
    steps: Vec<i64>,
    values: Vec<f64>,
    lrs: Vec<f64>,
}

impl LossCurveSeries {
    /// Keeps the first non-NULL fit of `priors` (at `rows`) as the prior.
    fn take_prior(
        &mut self,
        priors: &dyn Array,
        mut rows: impl Iterator<Item = usize>,
    ) -> Result<()> {
        if self.prior.is_some() {
            return Ok(());
        }
        let Some(priors) = priors.as_struct_opt() else {
            return exec_err!("fit_loss_curve: the prior must be the result of fit_loss_curve");
        };
        if let Some(row) = rows.find(|&row| priors.is_valid(row)) {
            self.prior = Some(read_fit(priors, row, "fit_loss_curve")?);
        }
        Ok(())
    }

    /// Adds every row of the (step, value, lr) arrays.
    fn add(&mut self, steps: &dyn Array, values: &dyn Array, lrs: &dyn Array) {
        let columns = Columns::of(steps, values, lrs);
        for row in 0..steps.len() {
            self.add_row(&columns, row);
        }
    }

    /// Adds `row` (skipped when its step is NULL).
    #[inline]
    fn add_row(&mut self, columns: &Columns, row: usize) {
        if columns.steps.is_null(row) {
            return;
        }
        let number = |a: &arrow::array::Float64Array| {
            if a.is_valid(row) {
                a.value(row)
            } else {
                f64::NAN
            }
        };
        self.steps.push(columns.steps.value(row));
        self.values.push(number(columns.values));
        self.lrs.push(number(columns.lrs));
    }

    /// Heap bytes of the three vectors' capacity.
    fn capacity_bytes(&self) -> usize {
        (self.steps.capacity() + self.values.capacity() + self.lrs.capacity()) * 8
    }
}

/// The (step, value, lr) arguments, typed.
struct Columns<'a> {
    steps: &'a Int64Array,
    values: &'a Float64Array,
    lrs: &'a Float64Array,
}

impl<'a> Columns<'a> {
    fn of(steps: &'a dyn Array, values: &'a dyn Array, lrs: &'a dyn Array) -> Self {
        Columns {
            steps: steps.as_primitive::<Int64Type>(),
            values: values.as_primitive::<Float64Type>(),
            lrs: lrs.as_primitive::<Float64Type>(),
        }
    }
}

/// The partial states of `series`: three list columns (steps, values,
/// lrs) and the prior, one row per series.
fn states_of(series: &[LossCurveSeries]) -> Result<Vec<ArrayRef>> {
    let offsets = OffsetBuffer::from_lengths(series.iter().map(|s| s.steps.len()));
    let list = |items: ArrayRef| list_column(&offsets, items);
    let flat = |f: fn(&LossCurveSeries) -> &Vec<f64>| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            series.iter().flat_map(|s| f(s).iter().copied()),
        ))
    };
    let steps = Int64Array::from_iter_values(series.iter().flat_map(|s| s.steps.iter().copied()));
    let priors = series
        .iter()
        .map(|s| match &s.prior {
            Some(prior) => fit_value(prior),
            None => ScalarValue::try_from(DataType::Struct(fit_fields())),
        })
        .collect::<Result<Vec<_>>>()?;
    let priors = answers_array(priors, &DataType::Struct(fit_fields()))?;
    Ok(vec![
        list(Arc::new(steps))?,
        list(flat(|s| &s.values))?,
        list(flat(|s| &s.lrs))?,
        priors,
    ])
}

/// `fit_loss_curve` over one series.
#[derive(Debug)]
struct LossCurveAccumulator {
    call: LossCurveCall,
    series: LossCurveSeries,
}

impl Accumulator for LossCurveAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (steps, v, lr, prior) = self.call.arguments(values)?;
        self.series.add(steps.as_ref(), v.as_ref(), lr.as_ref());
        if let Some(prior) = prior {
            self.series.take_prior(prior.as_ref(), 0..prior.len())?;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.call.fit(&self.series)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.series.capacity_bytes()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        states_of(std::slice::from_ref(&self.series))?
            .iter()
            .map(|column| ScalarValue::try_from_array(column, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let states = PartialStates::of(states)?;
        for row in 0..states.steps.len() {
            states.merge_row(&mut self.series, row)?;
        }
        Ok(())
    }
}

/// The columns of partial states (rows of [`states_of`]'s columns).
struct PartialStates<'a> {
    steps: &'a arrow::array::ListArray,
    values: &'a arrow::array::ListArray,
    lrs: &'a arrow::array::ListArray,
    priors: Option<&'a ArrayRef>,
}

impl<'a> PartialStates<'a> {
    fn of(states: &'a [ArrayRef]) -> Result<Self> {
        let (Some(s), Some(v), Some(l)) = (states.first(), states.get(1), states.get(2)) else {
            return exec_err!("fit_loss_curve: malformed partial state");
        };
        Ok(PartialStates {
            steps: s.as_list::<i32>(),
            values: v.as_list::<i32>(),
            lrs: l.as_list::<i32>(),
            priors: states.get(3),
        })
    }

    /// Adds partial state `row` to `series`.
    fn merge_row(&self, series: &mut LossCurveSeries, row: usize) -> Result<()> {
        let (s, v, l) = (self.steps, self.values, self.lrs);
        if s.is_valid(row) && v.is_valid(row) && l.is_valid(row) {
            series.add(
                s.value(row).as_ref(),
                v.value(row).as_ref(),
                l.value(row).as_ref(),
            );
        }
        if let Some(prior) = self.priors {
            series.take_prior(prior.as_ref(), std::iter::once(row))?;
        }
        Ok(())
    }
}

/// `fit_loss_curve` over every group of a GROUP BY (one pass over each
/// batch, no per-group slicing); each group is fitted as one series is.
#[derive(Debug)]
struct LossCurveGroups {
    call: LossCurveCall,
    groups: Vec<LossCurveSeries>,
    /// Heap bytes of every group's points.
    heap_bytes: usize,
}

impl LossCurveGroups {
    /// The groups `emit_to` names, taken out.
    fn take(&mut self, emit_to: EmitTo) -> Vec<LossCurveSeries> {
        let taken = emit_to.take_needed(&mut self.groups);
        self.heap_bytes -= taken
            .iter()
            .map(LossCurveSeries::capacity_bytes)
            .sum::<usize>();
        taken
    }
}

impl GroupsAccumulator for LossCurveGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups
            .resize_with(total_num_groups, LossCurveSeries::default);
        let (steps, v, lr, prior) = self.call.arguments(values)?;
        let columns = Columns::of(steps.as_ref(), v.as_ref(), lr.as_ref());
        for (row, &group) in group_indices.iter().enumerate() {
            if !kept(opt_filter, row) {
                continue;
            }
            let series = &mut self.groups[group];
            let before = series.capacity_bytes();
            series.add_row(&columns, row);
            if let Some(prior) = prior {
                series.take_prior(prior.as_ref(), std::iter::once(row))?;
            }
            self.heap_bytes = self.heap_bytes + series.capacity_bytes() - before;
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let answers = self
            .take(emit_to)
            .iter()
            .map(|series| self.call.fit(series))
            .collect::<Result<Vec<_>>>()?;
        answers_array(answers, &DataType::Struct(fit_fields()))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        states_of(&self.take(emit_to))
    }

    /// Each row becomes the state of a one-point series (no points when
    /// skipped).
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let (steps, v, lr, prior) = self.call.arguments(values)?;
        let columns = Columns::of(steps.as_ref(), v.as_ref(), lr.as_ref());
        let rows = (0..steps.len())
            .map(|row| {
                let mut series = LossCurveSeries::default();
                if kept(opt_filter, row) {
                    series.add_row(&columns, row);
                    if let Some(prior) = prior {
                        series.take_prior(prior.as_ref(), std::iter::once(row))?;
                    }
                }
                Ok(series)
            })
            .collect::<Result<Vec<_>>>()?;
        states_of(&rows)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups
            .resize_with(total_num_groups, LossCurveSeries::default);
        let states = PartialStates::of(values)?;
        for (row, &group) in group_indices.iter().enumerate() {
            let series = &mut self.groups[group];
            let before = series.capacity_bytes();
            states.merge_row(series, row)?;
            self.heap_bytes = self.heap_bytes + series.capacity_bytes() - before;
        }
        Ok(())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.groups.capacity() * std::mem::size_of::<LossCurveSeries>()
            + self.heap_bytes
    }
}

/// The `predict_loss_curve(fit, step [, level])` scalar function.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PredictLossCurve {
    signature: Signature,
}

impl PredictLossCurve {
    /// The UDF, ready to register.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::from(PredictLossCurve {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

fn prediction_fields() -> Fields {
    Fields::from(vec![
        Field::new("value", DataType::Float64, true),
        Field::new("lo", DataType::Float64, true),
        Field::new("hi", DataType::Float64, true),
    ])
}

/// The fit in row `row` of a `fit_loss_curve` struct column, read for
/// `function` (named in errors).
pub(super) fn read_fit(fit: &StructArray, row: usize, function: &str) -> Result<LossCurve> {
    let column = |name: &str| -> Result<&ArrayRef> {
        match fit.column_by_name(name) {
            Some(c) => Ok(c),
            None => exec_err!(
                "{function}: the fit has no field {name}; pass the result of fit_loss_curve"
            ),
        }
    };
    let float = |name: &str| -> Result<f64> {
        Ok(cast(column(name)?, &DataType::Float64)?
            .as_primitive::<Float64Type>()
            .value(row))
    };
    let cov_list = column("cov")?.as_list::<i32>().value(row);
    let cov_values = cast(&cov_list, &DataType::Float64)?;
    let cov_values = cov_values.as_primitive::<Float64Type>();
    let mut cov = [0.0; 16];
    if cov_values.len() != 16 {
        return exec_err!("{function}: malformed fit (cov)");
    }
    for (k, c) in cov.iter_mut().enumerate() {
        *c = cov_values.value(k);
    }
    let knots = column("schedule")?.as_list::<i32>().value(row);
    let knots = knots.as_struct();
    let knot_column = |name: &str| -> Result<ArrayRef> {
        match knots.column_by_name(name) {
            Some(c) => Ok(cast(c, &DataType::Float64)?),
            None => exec_err!("{function}: malformed fit (schedule)"),
        }
    };
    let steps = cast(
        knots.column_by_name("step").ok_or_else(|| {
            datafusion::error::DataFusionError::Execution(format!(
                "{function}: malformed fit (schedule)"
            ))
        })?,
        &DataType::Int64,
    )?;
    let steps = steps.as_primitive::<Int64Type>();
    let (lr, s1, m, s2) = (
        knot_column("lr")?,
        knot_column("s1")?,
        knot_column("m")?,
        knot_column("s2")?,
    );
    let value = |a: &ArrayRef, k: usize| a.as_primitive::<Float64Type>().value(k);
    let knots: Vec<Knot> = (0..steps.len())
        .map(|k| Knot {
            step: steps.value(k),
            lr: value(&lr, k),
            s1: value(&s1, k),
            m: value(&m, k),
            s2: value(&s2, k),
        })
        .collect();
    if knots.is_empty() {
        return exec_err!("{function}: malformed fit (empty schedule)");
    }
    let mut members = Vec::new();
    if let Some(list) = fit.column_by_name("members") {
        let list = list.as_list::<i32>().value(row);
        let list = list.as_struct();
        let columns = PARAMETER_NAMES
            .iter()
            .map(|name| match list.column_by_name(name) {
                Some(c) => Ok(cast(c, &DataType::Float64)?),
                None => exec_err!("{function}: malformed fit (members)"),
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        for k in 0..list.len() {
            members.push([0, 1, 2, 3].map(|p| value(&columns[p], k)));
        }
    }
    Ok(LossCurve {
        l0: float("l0")?,
        a: float("a")?,
        alpha: float("alpha")?,
        c: float("c")?,
        cov,
        rmse: float("rmse")?,
        noise: float("noise")?,
        points: 0,
        warmup_end: 0,
        schedule: Schedule {
            knots,
            lambda: float("lambda")?,
        },
        members,
    })
}

impl ScalarUDFImpl for PredictLossCurve {
    fn name(&self) -> &str {
        "predict_loss_curve"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [DataType::Struct(_), step] if step.is_numeric() || step.is_null() => {
                Ok(vec![arg_types[0].clone(), DataType::Int64])
            }
            [DataType::Struct(_), step, level]
                if (step.is_numeric() || step.is_null()) && (level.is_numeric() || level.is_null()) =>
            {
                Ok(vec![arg_types[0].clone(), DataType::Int64, DataType::Float64])
            }
            _ => plan_err!("predict_loss_curve takes (fit, step [, level]) where fit comes from fit_loss_curve, got {arg_types:?}"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(prediction_fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let fit = arrays[0].as_struct();
        let steps = arrays[1].as_primitive::<Int64Type>();
        let levels = arrays.get(2).map(|a| a.as_primitive::<Float64Type>());
        let rows = steps.len();
        let (mut value, mut lo, mut hi) = (
            Vec::with_capacity(rows),
            Vec::with_capacity(rows),
            Vec::with_capacity(rows),
        );
        // A fit given once for every row (a scalar, as from a one-row CTE
        // joined in) is read once; a column of fits is read row by row.
        let constant = match args.args.first() {
            Some(ColumnarValue::Scalar(_)) if rows > 0 && fit.is_valid(0) => {
                Some(read_fit(fit, 0, "predict_loss_curve")?)
            }
            _ => None,
        };
        for row in 0..rows {
            if fit.is_null(row) || steps.is_null(row) {
                value.push(None);
                lo.push(None);
                hi.push(None);
                continue;
            }
            let level = match levels {
                Some(l) if l.is_valid(row) => l.value(row),
                _ => 0.95,
            };
            if !(level > 0.0 && level < 1.0) {
                return plan_err!("predict_loss_curve: level must be in (0, 1), got {level}");
            }
            let read;
            let curve = match &constant {
                Some(curve) => curve,
                None => {
                    read = read_fit(fit, row, "predict_loss_curve")?;
                    &read
                }
            };
            let (v, se) = curve.predict_with_error(steps.value(row));
            let z = normal_quantile(0.5 + level / 2.0);
            value.push(Some(v));
            lo.push(Some(v - z * se));
            hi.push(Some(v + z * se));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Float64Array::from(value)),
            Arc::new(Float64Array::from(lo)),
            Arc::new(Float64Array::from(hi)),
        ];
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
            prediction_fields(),
            columns,
            None,
        )?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(step: i64, warmup: i64, total: i64) -> f64 {
        let (peak, end) = (3e-4, 3e-5);
        if step < warmup {
            return peak * step as f64 / warmup as f64;
        }
        let t = (step - warmup) as f64 / (total - warmup) as f64;
        end + 0.5 * (peak - end) * (1.0 + (std::f64::consts::PI * t).cos())
    }

    #[test]
    fn the_areas_sum_the_learning_rate_step_by_step() {
        // Logged every 10 steps; linear between.
        let points: Vec<(i64, f64)> = (0..=100)
            .step_by(10)
            .map(|s| (s, 1.0 - s as f64 / 200.0))
            .collect();
        let schedule = Schedule::new(&points, 0.9).unwrap();
        let per_step: Vec<f64> = (0..=100).map(|s| 1.0 - s as f64 / 200.0).collect();
        let (mut s1, mut m, mut s2) = (0.0, 0.0, 0.0);
        for t in 1..=100 {
            s1 += per_step[t];
            m = 0.9 * m + (per_step[t - 1] - per_step[t]).max(0.0);
            s2 += m;
            let (a1, a2) = schedule.areas(t as i64);
            assert!((a1 - s1).abs() < 1e-9, "S1 at {t}: {a1} vs {s1}");
            assert!((a2 - s2).abs() < 1e-9, "S2 at {t}: {a2} vs {s2}");
        }
        // After the last point η stays constant and m decays.
        let (a1, _) = schedule.areas(110);
        assert!((a1 - (s1 + 10.0 * 0.5)).abs() < 1e-9);
    }

    #[test]
    fn recovers_the_law_and_predicts_through_a_decay() {
        let (warmup, total) = (200, 10_000);
        let lrs: Vec<(i64, f64)> = (0..=total)
            .step_by(10)
            .map(|s| (s, cosine(s, warmup, total)))
            .collect();
        let schedule = Schedule::new(&lrs, DEFAULT_LAMBDA).unwrap();
        let law = |s: i64| {
            let (s1, s2) = schedule.areas(s);
            2.0 + 0.8 * s1.powf(-0.5) - 40.0 * s2
        };
        let loss: Vec<(i64, f64)> = (10..=total).step_by(10).map(|s| (s, law(s))).collect();
        let fit = fit_loss_curve(&loss, schedule.clone()).unwrap();
        assert_eq!(fit.warmup_end, warmup);
        assert!((fit.alpha - 0.5).abs() < 1e-3, "{fit:?}");
        assert!((fit.c - 40.0).abs() < 0.5, "{}", fit.c);
        // From the first 30%: still within 1% at the end.
        let prefix: Vec<(i64, f64)> = loss.iter().copied().filter(|(s, _)| *s <= 3_000).collect();
        let fit = fit_loss_curve(&prefix, schedule.clone()).unwrap();
        let (predicted, se) = fit.predict_with_error(total);
        assert!(
            (predicted - law(total)).abs() / law(total) < 0.01,
            "{predicted} vs {}",
            law(total)
        );
        assert!(se.is_finite());
    }

    #[test]
    fn too_few_points_or_no_schedule_give_none() {
        assert!(Schedule::new(&[(0, f64::NAN)], DEFAULT_LAMBDA).is_none());
        let schedule = Schedule::new(&[(0, 1e-3)], DEFAULT_LAMBDA).unwrap();
        assert!(fit_loss_curve(&[(1, 3.0), (2, 2.9), (3, 2.8)], schedule).is_none());
    }

    #[test]
    fn the_normal_quantile() {
        assert!((normal_quantile(0.975) - 1.959963985).abs() < 1e-8);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
        assert!((normal_quantile(0.001) + 3.090232306).abs() < 1e-8);
    }
}
