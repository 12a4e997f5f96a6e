//! Tensor functions: norms, distances, histograms, quantiles, slices and the
//! spectrum of 2-D tensors, over the list columns of the `tensors` table.
//!
//! Every tensor argument accepts a list of numbers (`tensor`, `tensor_f64`,
//! `tensor_int`, or any list expression); it is read as f64. Shapes are
//! lists of integers (the `shape` column). Functions of 2-D tensors read the
//! tensor row-major as `shape[0] × shape[1]`.
//!
//! | function | formula |
//! |---|---|
//! | `l2_norm(t)` | √Σ tᵢ² |
//! | `linf_norm(t)` | max \|tᵢ\| |
//! | `rms(t)` | √(Σ tᵢ² / n) |
//! | `t_mean(t)` | Σ tᵢ / n |
//! | `t_std(t)` | √(Σ (tᵢ − mean)² / n) (population, like numpy) |
//! | `cosine_sim(a, b)` | a·b / (‖a‖ ‖b‖) |
//! | `l2_dist(a, b)` | ‖a − b‖ |
//! | `rel_change(a, b)` | ‖a − b‖ / ‖b‖: with `LAG`, the update-to-weight ratio |
//! | `histogram(t, bins, lo, hi)` | counts in `bins` equal bins over [lo, hi] (last bin closed), like `numpy.histogram` |
//! | `quantiles(t, [q, …])` | linear interpolation between order statistics, like `numpy.quantile` |
//! | `tensor_slice(t, shape, axis, index)` | the sub-tensor at `index` along `axis`, flattened row-major |
//! | `spectral_norm(t, shape)` | σ₁, the largest singular value |
//! | `stable_rank(t, shape)` | ‖A‖_F² / σ₁² |
//! | `effective_rank(t, shape)` | exp(−Σ pᵢ ln pᵢ) with pᵢ = σᵢ / Σσ (Roy & Vetterli) |
//! | `linear_cka(x, x_shape, y, y_shape)` | ‖Yᵀ X‖_F² / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F), columns centred; rows are examples |
//!
//! NaN and ±Inf follow IEEE arithmetic, as in numpy: one NaN element makes a
//! norm NaN. (The statistics columns of `tensors` leave them out instead.)
//! `histogram` does not count NaN or values outside [lo, hi]. A NULL tensor
//! gives NULL; tensors of different lengths, or a shape that does not match
//! the tensor, are errors naming the function.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Float64Builder, Int64Builder, ListArray, ListBuilder,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// One of the tensor functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorFunction {
    /// `l2_norm(t)`
    L2Norm,
    /// `linf_norm(t)`
    LinfNorm,
    /// `rms(t)`
    Rms,
    /// `t_mean(t)`
    Mean,
    /// `t_std(t)`
    Std,
    /// `cosine_sim(a, b)`
    CosineSim,
    /// `l2_dist(a, b)`
    L2Dist,
    /// `rel_change(a, b)`
    RelChange,
    /// `histogram(t, bins, lo, hi)`
    Histogram,
    /// `quantiles(t, qs)`
    Quantiles,
    /// `tensor_slice(t, shape, axis, index)`
    Slice,
    /// `spectral_norm(t, shape)`
    SpectralNorm,
    /// `stable_rank(t, shape)`
    StableRank,
    /// `effective_rank(t, shape)`
    EffectiveRank,
    /// `linear_cka(x, x_shape, y, y_shape)`
    LinearCka,
}

/// The kind of each argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    Tensor,
    Shape,
    Int,
    Float,
    Floats,
}

impl TensorFunction {
    /// Every tensor function.
    pub const ALL: [TensorFunction; 15] = [
        TensorFunction::L2Norm,
        TensorFunction::LinfNorm,
        TensorFunction::Rms,
        TensorFunction::Mean,
        TensorFunction::Std,
        TensorFunction::CosineSim,
        TensorFunction::L2Dist,
        TensorFunction::RelChange,
        TensorFunction::Histogram,
        TensorFunction::Quantiles,
        TensorFunction::Slice,
        TensorFunction::SpectralNorm,
        TensorFunction::StableRank,
        TensorFunction::EffectiveRank,
        TensorFunction::LinearCka,
    ];

    /// Its SQL name.
    pub fn name(self) -> &'static str {
        match self {
            TensorFunction::L2Norm => "l2_norm",
            TensorFunction::LinfNorm => "linf_norm",
            TensorFunction::Rms => "rms",
            TensorFunction::Mean => "t_mean",
            TensorFunction::Std => "t_std",
            TensorFunction::CosineSim => "cosine_sim",
            TensorFunction::L2Dist => "l2_dist",
            TensorFunction::RelChange => "rel_change",
            TensorFunction::Histogram => "histogram",
            TensorFunction::Quantiles => "quantiles",
            TensorFunction::Slice => "tensor_slice",
            TensorFunction::SpectralNorm => "spectral_norm",
            TensorFunction::StableRank => "stable_rank",
            TensorFunction::EffectiveRank => "effective_rank",
            TensorFunction::LinearCka => "linear_cka",
        }
    }

    fn args(self) -> &'static [Arg] {
        use Arg::*;
        match self {
            TensorFunction::L2Norm
            | TensorFunction::LinfNorm
            | TensorFunction::Rms
            | TensorFunction::Mean
            | TensorFunction::Std => &[Tensor],
            TensorFunction::CosineSim | TensorFunction::L2Dist | TensorFunction::RelChange => {
                &[Tensor, Tensor]
            }
            TensorFunction::Histogram => &[Tensor, Int, Float, Float],
            TensorFunction::Quantiles => &[Tensor, Floats],
            TensorFunction::Slice => &[Tensor, Shape, Int, Int],
            TensorFunction::SpectralNorm
            | TensorFunction::StableRank
            | TensorFunction::EffectiveRank => &[Tensor, Shape],
            TensorFunction::LinearCka => &[Tensor, Shape, Tensor, Shape],
        }
    }

    fn usage(self) -> &'static str {
        match self {
            TensorFunction::CosineSim | TensorFunction::L2Dist | TensorFunction::RelChange => {
                "(a, b)"
            }
            TensorFunction::Histogram => "(tensor, bins, lo, hi)",
            TensorFunction::Quantiles => "(tensor, [q, ...])",
            TensorFunction::Slice => "(tensor, shape, axis, index)",
            TensorFunction::SpectralNorm
            | TensorFunction::StableRank
            | TensorFunction::EffectiveRank => "(tensor, shape)",
            TensorFunction::LinearCka => "(x, x_shape, y, y_shape)",
            _ => "(tensor)",
        }
    }

    /// The UDF, ready to register.
    pub fn udf(self) -> ScalarUDF {
        ScalarUDF::from(TensorUdf {
            function: self,
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

/// The DataFusion UDF of a [`TensorFunction`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorUdf {
    function: TensorFunction,
    signature: Signature,
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

fn is_numeric_list(t: &DataType) -> bool {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            f.data_type().is_numeric() || f.data_type() == &DataType::Null
        }
        _ => false,
    }
}

impl ScalarUDFImpl for TensorUdf {
    fn name(&self) -> &str {
        self.function.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let f = self.function;
        let expected = f.args();
        if arg_types.len() != expected.len() {
            return plan_err!(
                "{} takes {}, got {} arguments",
                f.name(),
                f.usage(),
                arg_types.len()
            );
        }
        arg_types
            .iter()
            .zip(expected)
            .enumerate()
            .map(|(i, (t, kind))| {
                let ok = match kind {
                    Arg::Tensor | Arg::Shape | Arg::Floats => {
                        is_numeric_list(t) || t == &DataType::Null
                    }
                    Arg::Int | Arg::Float => t.is_numeric() || t == &DataType::Null,
                };
                if !ok {
                    return plan_err!(
                        "{} takes {}; argument {} is {t}, expected {}",
                        f.name(),
                        f.usage(),
                        i + 1,
                        match kind {
                            Arg::Tensor => "a list of numbers (a tensor column)",
                            Arg::Shape => "a list of integers (the shape column)",
                            Arg::Floats => "a list of numbers",
                            Arg::Int => "an integer",
                            Arg::Float => "a number",
                        }
                    );
                }
                Ok(match kind {
                    Arg::Tensor | Arg::Floats => list_of(DataType::Float64),
                    Arg::Shape => list_of(DataType::Int64),
                    Arg::Int => DataType::Int64,
                    Arg::Float => DataType::Float64,
                })
            })
            .collect()
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.function {
            TensorFunction::Histogram => list_of(DataType::Int64),
            TensorFunction::Quantiles | TensorFunction::Slice => list_of(DataType::Float64),
            _ => DataType::Float64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let rows = arrays.first().map_or(0, |a| a.len());
        let f = self.function;
        let out: ArrayRef = match f {
            TensorFunction::Histogram => {
                let mut builder = ListBuilder::new(Int64Builder::new());
                for row in 0..rows {
                    match (
                        floats(&arrays[0], row),
                        int(&arrays[1], row),
                        float(&arrays[2], row),
                        float(&arrays[3], row),
                    ) {
                        (Some(t), Some(bins), Some(lo), Some(hi)) => {
                            let counts = histogram(&t, bins, lo, hi, f)?;
                            builder.values().append_slice(&counts);
                            builder.append(true);
                        }
                        _ => builder.append(false),
                    }
                }
                Arc::new(builder.finish())
            }
            TensorFunction::Quantiles | TensorFunction::Slice => {
                let mut builder = ListBuilder::new(Float64Builder::new());
                for row in 0..rows {
                    let result = match f {
                        TensorFunction::Quantiles => {
                            match (floats(&arrays[0], row), floats(&arrays[1], row)) {
                                (Some(t), Some(qs)) => Some(quantiles(t, &qs, f)?),
                                _ => None,
                            }
                        }
                        _ => match (
                            floats(&arrays[0], row),
                            ints(&arrays[1], row),
                            int(&arrays[2], row),
                            int(&arrays[3], row),
                        ) {
                            (Some(t), Some(shape), Some(axis), Some(index)) => {
                                Some(slice(&t, &shape, axis, index, f)?)
                            }
                            _ => None,
                        },
                    };
                    match result {
                        Some(values) => {
                            builder.values().append_slice(&values);
                            builder.append(true);
                        }
                        None => builder.append(false),
                    }
                }
                Arc::new(builder.finish())
            }
            _ => {
                let mut out = Vec::with_capacity(rows);
                for row in 0..rows {
                    out.push(scalar(f, &arrays, row)?);
                }
                Arc::new(Float64Array::from(out))
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// The elements of row `row` of a list of f64 (None when NULL).
fn floats(array: &ArrayRef, row: usize) -> Option<Vec<f64>> {
    let list: &ListArray = array.as_list_opt()?;
    if list.is_null(row) {
        return None;
    }
    let values = list.value(row);
    let values = values.as_primitive_opt::<Float64Type>()?;
    Some(values.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

fn ints(array: &ArrayRef, row: usize) -> Option<Vec<i64>> {
    let list: &ListArray = array.as_list_opt()?;
    if list.is_null(row) {
        return None;
    }
    let values = list.value(row);
    Some(
        values
            .as_primitive_opt::<Int64Type>()?
            .iter()
            .map(|v| v.unwrap_or(0))
            .collect(),
    )
}

fn int(array: &ArrayRef, row: usize) -> Option<i64> {
    let a = array.as_primitive_opt::<Int64Type>()?;
    a.is_valid(row).then(|| a.value(row))
}

fn float(array: &ArrayRef, row: usize) -> Option<f64> {
    let a = array.as_primitive_opt::<Float64Type>()?;
    a.is_valid(row).then(|| a.value(row))
}

fn same_length(a: &[f64], b: &[f64], f: TensorFunction) -> Result<()> {
    if a.len() != b.len() {
        return exec_err!(
            "{}: the tensors have {} and {} elements; they must have the same number",
            f.name(),
            a.len(),
            b.len()
        );
    }
    Ok(())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn mean(t: &[f64]) -> f64 {
    t.iter().sum::<f64>() / t.len() as f64
}

/// A 2-D matrix view checked against its shape.
fn matrix(t: Vec<f64>, shape: &[i64], f: TensorFunction) -> Result<(Vec<f64>, usize, usize)> {
    match shape {
        [r, c] if *r >= 0 && *c >= 0 && (*r as usize).checked_mul(*c as usize) == Some(t.len()) => {
            Ok((t, *r as usize, *c as usize))
        }
        _ => exec_err!(
            "{}: needs a 2-D tensor whose shape matches its {} elements, got shape {shape:?}",
            f.name(),
            t.len()
        ),
    }
}

fn scalar(f: TensorFunction, arrays: &[ArrayRef], row: usize) -> Result<Option<f64>> {
    let Some(a) = floats(&arrays[0], row) else {
        return Ok(None);
    };
    Ok(Some(match f {
        TensorFunction::L2Norm => norm(&a),
        TensorFunction::LinfNorm => a.iter().fold(0.0f64, |m, x| {
            if x.is_nan() || m.is_nan() {
                f64::NAN
            } else {
                m.max(x.abs())
            }
        }),
        TensorFunction::Rms => (dot(&a, &a) / a.len() as f64).sqrt(),
        TensorFunction::Mean => mean(&a),
        TensorFunction::Std => {
            let m = mean(&a);
            (a.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / a.len() as f64).sqrt()
        }
        TensorFunction::CosineSim | TensorFunction::L2Dist | TensorFunction::RelChange => {
            let Some(b) = floats(&arrays[1], row) else {
                return Ok(None);
            };
            same_length(&a, &b, f)?;
            match f {
                TensorFunction::CosineSim => dot(&a, &b) / (norm(&a) * norm(&b)),
                _ => {
                    let diff: f64 = a
                        .iter()
                        .zip(&b)
                        .map(|(x, y)| (x - y) * (x - y))
                        .sum::<f64>()
                        .sqrt();
                    if f == TensorFunction::L2Dist {
                        diff
                    } else {
                        diff / norm(&b)
                    }
                }
            }
        }
        TensorFunction::SpectralNorm
        | TensorFunction::StableRank
        | TensorFunction::EffectiveRank => {
            let Some(shape) = ints(&arrays[1], row) else {
                return Ok(None);
            };
            let (m, rows, cols) = matrix(a, &shape, f)?;
            let singular = singular_values(&m, rows, cols);
            let top = singular.first().copied().unwrap_or(0.0);
            match f {
                TensorFunction::SpectralNorm => top,
                TensorFunction::StableRank => dot(&m, &m) / (top * top),
                _ => {
                    let total: f64 = singular.iter().sum();
                    let entropy: f64 = singular
                        .iter()
                        .map(|s| s / total)
                        .filter(|&p| p > 0.0)
                        .map(|p| -p * p.ln())
                        .sum();
                    entropy.exp()
                }
            }
        }
        TensorFunction::LinearCka => {
            let (Some(xs), Some(y), Some(ys)) = (
                ints(&arrays[1], row),
                floats(&arrays[2], row),
                ints(&arrays[3], row),
            ) else {
                return Ok(None);
            };
            let (x, n, dx) = matrix(a, &xs, f)?;
            let (y, ny, dy) = matrix(y, &ys, f)?;
            if n != ny {
                return exec_err!(
                    "linear_cka: x has {n} rows (examples) and y {ny}; they must match"
                );
            }
            linear_cka(&center(x, n, dx), n, dx, &center(y, n, dy), dy)
        }
        _ => return exec_err!("{} is not a scalar tensor function", f.name()),
    }))
}

fn histogram(t: &[f64], bins: i64, lo: f64, hi: f64, f: TensorFunction) -> Result<Vec<i64>> {
    if !(1..=1 << 20).contains(&bins) || lo.is_nan() || hi.is_nan() || hi <= lo {
        return exec_err!(
            "{}: needs 1 <= bins <= 1048576 and lo < hi, got bins {bins}, lo {lo}, hi {hi}",
            f.name()
        );
    }
    let mut counts = vec![0i64; bins as usize];
    let width = (hi - lo) / bins as f64;
    for &x in t {
        if x >= lo && x <= hi {
            let bin = (((x - lo) / width) as usize).min(bins as usize - 1);
            counts[bin] += 1;
        }
    }
    Ok(counts)
}

fn quantiles(mut t: Vec<f64>, qs: &[f64], f: TensorFunction) -> Result<Vec<f64>> {
    if let Some(q) = qs.iter().find(|q| !(0.0..=1.0).contains(*q)) {
        return exec_err!("{}: quantile levels must be in [0, 1], got {q}", f.name());
    }
    if t.is_empty() || t.iter().any(|x| x.is_nan()) {
        return Ok(vec![f64::NAN; qs.len()]);
    }
    t.sort_by(|a, b| a.total_cmp(b));
    let n = t.len();
    Ok(qs
        .iter()
        .map(|&q| {
            let position = q * (n - 1) as f64;
            let below = position.floor() as usize;
            let above = (below + 1).min(n - 1);
            let frac = position - below as f64;
            t[below] + (t[above] - t[below]) * frac
        })
        .collect())
}

fn slice(t: &[f64], shape: &[i64], axis: i64, index: i64, f: TensorFunction) -> Result<Vec<f64>> {
    let numel = shape.iter().try_fold(1usize, |n, &d| {
        usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
    });
    if numel != Some(t.len()) {
        return exec_err!(
            "{}: shape {shape:?} does not match the tensor's {} elements",
            f.name(),
            t.len()
        );
    }
    let dims = shape.len() as i64;
    if axis < 0 || axis >= dims {
        return exec_err!(
            "{}: axis {axis} is outside the tensor's {dims} dimensions",
            f.name()
        );
    }
    let extent = shape[axis as usize];
    if index < 0 || index >= extent {
        return exec_err!(
            "{}: index {index} is outside 0..{extent} along axis {axis}",
            f.name()
        );
    }
    let inner: usize = shape[axis as usize + 1..]
        .iter()
        .map(|&d| d as usize)
        .product();
    let outer: usize = shape[..axis as usize].iter().map(|&d| d as usize).product();
    let extent = extent as usize;
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        let start = (o * extent + index as usize) * inner;
        out.extend_from_slice(&t[start..start + inner]);
    }
    Ok(out)
}

/// Singular values of the row-major `rows × cols` matrix, largest first:
/// square roots of the eigenvalues of the smaller Gram matrix, found by cyclic
/// Jacobi rotations.
pub fn singular_values(m: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let (n, gram) = if cols <= rows {
        // AᵀA (cols × cols)
        let mut g = vec![0.0; cols * cols];
        for r in 0..rows {
            let row = &m[r * cols..(r + 1) * cols];
            for i in 0..cols {
                let x = row[i];
                for j in i..cols {
                    g[i * cols + j] += x * row[j];
                }
            }
        }
        (cols, g)
    } else {
        // AAᵀ (rows × rows)
        let mut g = vec![0.0; rows * rows];
        for i in 0..rows {
            for j in i..rows {
                g[i * rows + j] = dot(&m[i * cols..(i + 1) * cols], &m[j * cols..(j + 1) * cols]);
            }
        }
        (rows, g)
    };
    let mut a = gram;
    for i in 0..n {
        for j in 0..i {
            a[i * n + j] = a[j * n + i];
        }
    }
    jacobi_eigenvalues(&mut a, n);
    let mut singular: Vec<f64> = (0..n).map(|i| a[i * n + i].max(0.0).sqrt()).collect();
    singular.sort_by(|x, y| y.total_cmp(x));
    singular
}

/// Diagonalizes the symmetric `n × n` matrix `a` in place (its diagonal ends
/// as the eigenvalues).
fn jacobi_eigenvalues(a: &mut [f64], n: usize) {
    for _sweep in 0..60 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        let diagonal: f64 = (0..n).map(|i| a[i * n + i] * a[i * n + i]).sum();
        if off <= 1e-30 * diagonal.max(f64::MIN_POSITIVE) {
            return;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let (app, aqq) = (a[p * n + p], a[q * n + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
        }
    }
}

/// Subtracts each column's mean.
fn center(mut m: Vec<f64>, rows: usize, cols: usize) -> Vec<f64> {
    for c in 0..cols {
        let mean = (0..rows).map(|r| m[r * cols + c]).sum::<f64>() / rows as f64;
        for r in 0..rows {
            m[r * cols + c] -= mean;
        }
    }
    m
}

/// ‖Aᵀ B‖_F² for row-major `n × da` and `n × db` matrices.
fn cross_frobenius_squared(a: &[f64], da: usize, b: &[f64], db: usize, n: usize) -> f64 {
    let mut product = vec![0.0; da * db];
    for r in 0..n {
        let (ra, rb) = (&a[r * da..(r + 1) * da], &b[r * db..(r + 1) * db]);
        for (i, &x) in ra.iter().enumerate() {
            for (j, &y) in rb.iter().enumerate() {
                product[i * db + j] += x * y;
            }
        }
    }
    dot(&product, &product)
}

fn linear_cka(x: &[f64], n: usize, dx: usize, y: &[f64], dy: usize) -> f64 {
    let xy = cross_frobenius_squared(x, dx, y, dy, n);
    let xx = cross_frobenius_squared(x, dx, x, dx, n).sqrt();
    let yy = cross_frobenius_squared(y, dy, y, dy, n).sqrt();
    xy / (xx * yy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singular_values_of_a_known_matrix() {
        // [[3, 0], [4, 5]] has singular values √45 and √5.
        let s = singular_values(&[3.0, 0.0, 4.0, 5.0], 2, 2);
        assert!(
            (s[0] - 45f64.sqrt()).abs() < 1e-12 && (s[1] - 5f64.sqrt()).abs() < 1e-12,
            "{s:?}"
        );
        let wide = singular_values(&[1.0, 0.0, 0.0, 0.0, 2.0, 0.0], 2, 3);
        assert!(
            (wide[0] - 2.0).abs() < 1e-12 && (wide[1] - 1.0).abs() < 1e-12,
            "{wide:?}"
        );
    }

    #[test]
    fn slices_quantiles_and_histograms() {
        let t: Vec<f64> = (0..24).map(f64::from).collect();
        let f = TensorFunction::Slice;
        assert_eq!(
            slice(&t, &[2, 3, 4], 1, 2, f).unwrap(),
            vec![8.0, 9.0, 10.0, 11.0, 20.0, 21.0, 22.0, 23.0]
        );
        assert_eq!(
            slice(&t, &[2, 3, 4], 2, 0, f).unwrap(),
            vec![0.0, 4.0, 8.0, 12.0, 16.0, 20.0]
        );
        assert!(slice(&t, &[2, 3, 4], 3, 0, f).is_err());
        let q = quantiles(
            vec![1.0, 2.0, 3.0, 4.0],
            &[0.0, 0.5, 1.0, 0.25],
            TensorFunction::Quantiles,
        )
        .unwrap();
        assert_eq!(q, vec![1.0, 2.5, 4.0, 1.75]);
        let h = histogram(
            &[0.0, 0.5, 1.0, 2.0, f64::NAN],
            2,
            0.0,
            1.0,
            TensorFunction::Histogram,
        )
        .unwrap();
        assert_eq!(h, vec![1, 2]);
    }

    #[test]
    fn cka_of_a_matrix_with_itself_is_one() {
        let x = center(vec![1.0, 2.0, 3.0, 5.0, 4.0, 0.5], 3, 2);
        assert!((linear_cka(&x, 3, 2, &x, 2) - 1.0).abs() < 1e-12);
    }
}
