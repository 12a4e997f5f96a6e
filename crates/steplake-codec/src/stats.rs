//! Statistics kept for every tensor, computed at ingest.
//!
//! NaN and ±Inf are counted, and left out of every other statistic, so one
//! NaN never hides the mean or the norm of the rest. Statistics of a tensor
//! with no finite element are `None` (NULL in SQL), except the counts.
//!
//! The histogram has [`HISTOGRAM_BINS`] equal bins over `[min, max]` of the
//! finite elements; [`QUANTILE_LEVELS`] are estimated from it by linear
//! interpolation inside a bin (exact at 0 and 1).

use steplake_core::DType;

pub use steplake_core::tensor::{TensorStats, HISTOGRAM_BINS, QUANTILE_LEVELS};

/// Elements summed per partial sum (pairwise-style accuracy for big tensors).
const CHUNK: usize = 4096;

/// Statistics of `bytes`, little-endian elements of `dtype`.
/// `bytes.len()` must be a multiple of the element size.
pub fn tensor_stats(bytes: &[u8], dtype: DType) -> TensorStats {
    let values = Elements { bytes, dtype };
    stats_from_passes(&values.first_pass(), |mean, lo, hi| {
        values.second_pass(mean, lo, hi)
    })
}

/// Assembles [`TensorStats`] from a tensor's [`Moments`] and, when it has a
/// finite element, its second pass: `second_pass(mean, min, max)` returns
/// Σ(x − mean)² and the [`HISTOGRAM_BINS`]-bin histogram over `[min, max]`
/// (bin `⌊(x − min) · bins / (max − min)⌋`, the last bin closed) of the
/// finite elements. The CPU and the GPU path both end here.
pub fn stats_from_passes(
    first: &Moments,
    second_pass: impl FnOnce(f64, f64, f64) -> (f64, Vec<u64>),
) -> TensorStats {
    let finite = first.count - first.nan - first.inf;
    let numel = first.count;
    let mut stats = TensorStats {
        numel,
        mean: None,
        std: None,
        min: None,
        max: None,
        l2: first.sum_squares.sqrt(),
        abs_max: None,
        nan_count: first.nan,
        inf_count: first.inf,
        zero_frac: (numel > 0).then(|| first.zeros as f64 / numel as f64),
        histogram: vec![0; HISTOGRAM_BINS],
        quantiles: None,
    };
    if finite == 0 {
        return stats;
    }
    let mean = first.sum / finite as f64;
    let (deviations, histogram) = second_pass(mean, first.min, first.max);
    stats.mean = Some(mean);
    stats.std = Some((deviations / finite as f64).sqrt());
    stats.min = Some(first.min);
    stats.max = Some(first.max);
    stats.abs_max = Some(first.min.abs().max(first.max.abs()));
    stats.quantiles = Some(
        QUANTILE_LEVELS
            .iter()
            .map(|&q| quantile_from_histogram(&histogram, first.min, first.max, q))
            .collect(),
    );
    stats.histogram = histogram;
    stats
}

/// The scale that maps `[lo, hi]` onto the histogram's bins (0 when the
/// range is one point: every element lands in bin 0).
pub fn histogram_scale(lo: f64, hi: f64) -> f64 {
    if hi > lo {
        HISTOGRAM_BINS as f64 / (hi - lo)
    } else {
        0.0
    }
}

/// The `q` quantile estimated from `histogram` over `[lo, hi]`.
pub fn quantile_from_histogram(histogram: &[u64], lo: f64, hi: f64, q: f64) -> f64 {
    let total: u64 = histogram.iter().sum();
    if total == 0 || hi <= lo {
        return lo;
    }
    let width = (hi - lo) / histogram.len() as f64;
    let target = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0.0;
    for (bin, &count) in histogram.iter().enumerate() {
        let count = count as f64;
        if count > 0.0 && below + count >= target {
            let inside = ((target - below) / count).clamp(0.0, 1.0);
            return (lo + (bin as f64 + inside) * width).clamp(lo, hi);
        }
        below += count;
    }
    hi
}

/// The first pass over a tensor: counts, and sums and extremes of its finite
/// elements. Partial moments of pieces of a tensor [`merge`](Moments::merge)
/// into the tensor's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    /// Elements.
    pub count: u64,
    /// NaN elements.
    pub nan: u64,
    /// ±Inf elements.
    pub inf: u64,
    /// Elements equal to zero.
    pub zeros: u64,
    /// Σx over finite elements.
    pub sum: f64,
    /// Σx² over finite elements.
    pub sum_squares: f64,
    /// Smallest finite element (+∞ when none).
    pub min: f64,
    /// Largest finite element (−∞ when none).
    pub max: f64,
}

impl Default for Moments {
    fn default() -> Self {
        Moments {
            count: 0,
            nan: 0,
            inf: 0,
            zeros: 0,
            sum: 0.0,
            sum_squares: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Moments {
    /// Adds the moments of another piece of the same tensor.
    pub fn merge(&mut self, other: &Moments) {
        self.count += other.count;
        self.nan += other.nan;
        self.inf += other.inf;
        self.zeros += other.zeros;
        self.sum += other.sum;
        self.sum_squares += other.sum_squares;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// Sums, extremes and zero count of finite values.
struct Lanes {
    sum: f64,
    squares: f64,
    min: f64,
    max: f64,
    zeros: u64,
}

/// [`Lanes`] of `chunk`, every element finite, in four independent lanes.
fn finite_lanes(chunk: &[f64]) -> Lanes {
    let mut sum = [0.0f64; 4];
    let mut squares = [0.0f64; 4];
    let mut min = [f64::INFINITY; 4];
    let mut max = [f64::NEG_INFINITY; 4];
    let mut zeros = [0u64; 4];
    let quads = chunk.chunks_exact(4);
    let tail = quads.remainder();
    for quad in quads {
        for lane in 0..4 {
            let x = quad[lane];
            sum[lane] += x;
            squares[lane] += x * x;
            min[lane] = if x < min[lane] { x } else { min[lane] };
            max[lane] = if x > max[lane] { x } else { max[lane] };
            zeros[lane] += (x == 0.0) as u64;
        }
    }
    for (lane, &x) in tail.iter().enumerate() {
        sum[lane] += x;
        squares[lane] += x * x;
        min[lane] = if x < min[lane] { x } else { min[lane] };
        max[lane] = if x > max[lane] { x } else { max[lane] };
        zeros[lane] += (x == 0.0) as u64;
    }
    Lanes {
        sum: (sum[0] + sum[1]) + (sum[2] + sum[3]),
        squares: (squares[0] + squares[1]) + (squares[2] + squares[3]),
        min: min.iter().fold(f64::INFINITY, |m, &x| m.min(x)),
        max: max.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x)),
        zeros: zeros.iter().sum(),
    }
}

/// Elements of a tensor, read as f64.
struct Elements<'a> {
    bytes: &'a [u8],
    dtype: DType,
}

impl Elements<'_> {
    /// Calls `visit` with chunks of at most [`CHUNK`] elements as f64.
    fn for_each_chunk(&self, mut visit: impl FnMut(&[f64])) {
        let size = self.dtype.size();
        let mut buffer = Vec::with_capacity(CHUNK);
        for chunk in self.bytes.chunks(CHUNK * size) {
            buffer.clear();
            let elements = chunk.chunks_exact(size);
            match self.dtype {
                DType::F32 => buffer
                    .extend(elements.map(|e| f32::from_le_bytes([e[0], e[1], e[2], e[3]]) as f64)),
                DType::Bf16 => buffer
                    .extend(elements.map(|e| half::bf16::from_le_bytes([e[0], e[1]]).to_f64())),
                DType::F16 => {
                    buffer.extend(elements.map(|e| half::f16::from_le_bytes([e[0], e[1]]).to_f64()))
                }
                DType::F64 => buffer
                    .extend(elements.map(|e| f64::from_le_bytes(e.try_into().unwrap_or([0; 8])))),
                DType::I8 => buffer.extend(elements.map(|e| e[0] as i8 as f64)),
                DType::I16 => {
                    buffer.extend(elements.map(|e| i16::from_le_bytes([e[0], e[1]]) as f64))
                }
                DType::I32 => buffer
                    .extend(elements.map(|e| i32::from_le_bytes([e[0], e[1], e[2], e[3]]) as f64)),
                DType::I64 => buffer.extend(
                    elements.map(|e| i64::from_le_bytes(e.try_into().unwrap_or([0; 8])) as f64),
                ),
                DType::U8 | DType::Bool => buffer.extend(elements.map(|e| e[0] as f64)),
            }
            visit(&buffer);
        }
    }

    fn first_pass(&self) -> Moments {
        let mut pass = Moments::default();
        self.for_each_chunk(|chunk| {
            pass.count += chunk.len() as u64;
            if chunk.iter().all(|x| x.is_finite()) {
                // The common case: four independent lanes the compiler can
                // keep in vector registers, no per-element branch.
                let lanes = finite_lanes(chunk);
                pass.sum += lanes.sum;
                pass.sum_squares += lanes.squares;
                pass.min = pass.min.min(lanes.min);
                pass.max = pass.max.max(lanes.max);
                pass.zeros += lanes.zeros;
                return;
            }
            let (mut sum, mut squares) = (0.0, 0.0);
            for &x in chunk {
                if x.is_finite() {
                    sum += x;
                    squares += x * x;
                    pass.min = pass.min.min(x);
                    pass.max = pass.max.max(x);
                    pass.zeros += (x == 0.0) as u64;
                } else if x.is_nan() {
                    pass.nan += 1;
                } else {
                    pass.inf += 1;
                }
            }
            pass.sum += sum;
            pass.sum_squares += squares;
        });
        pass
    }

    /// Σ(x − mean)² and the histogram over `[lo, hi]`, finite elements only.
    fn second_pass(&self, mean: f64, lo: f64, hi: f64) -> (f64, Vec<u64>) {
        let mut histogram = vec![0u64; HISTOGRAM_BINS];
        let scale = histogram_scale(lo, hi);
        let mut deviations = 0.0;
        self.for_each_chunk(|chunk| {
            let mut partial = 0.0;
            for &x in chunk.iter().filter(|x| x.is_finite()) {
                partial += (x - mean) * (x - mean);
                let bin = ((x - lo) * scale) as usize;
                histogram[bin.min(HISTOGRAM_BINS - 1)] += 1;
            }
            deviations += partial;
        });
        (deviations, histogram)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn nan_and_inf_are_counted_not_mixed_in() {
        let stats = tensor_stats(
            &f32_bytes(&[1.0, f32::NAN, -3.0, f32::INFINITY, 0.0, f32::NEG_INFINITY]),
            DType::F32,
        );
        assert_eq!(stats.numel, 6);
        assert_eq!((stats.nan_count, stats.inf_count), (1, 2));
        assert_eq!(stats.mean, Some(-2.0 / 3.0));
        assert_eq!(
            (stats.min, stats.max, stats.abs_max),
            (Some(-3.0), Some(1.0), Some(3.0))
        );
        assert_eq!(stats.l2, 10f64.sqrt());
        assert_eq!(stats.zero_frac, Some(1.0 / 6.0));
        assert_eq!(stats.histogram.iter().sum::<u64>(), 3);
        let expected_std =
            ((1.0f64 + 2.0 / 3.0).powi(2) + (-3.0f64 + 2.0 / 3.0).powi(2) + (2.0f64 / 3.0).powi(2))
                / 3.0;
        assert!((stats.std.unwrap_or(0.0) - expected_std.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn no_finite_element_and_empty_tensor() {
        let stats = tensor_stats(&f32_bytes(&[f32::NAN, f32::NAN]), DType::F32);
        assert_eq!((stats.mean, stats.min, stats.quantiles), (None, None, None));
        assert_eq!(stats.l2, 0.0);
        assert_eq!(stats.zero_frac, Some(0.0));
        let empty = tensor_stats(&[], DType::Bf16);
        assert_eq!((empty.numel, empty.zero_frac), (0, None));
    }

    #[test]
    fn every_dtype_reads_its_elements() {
        let cases: Vec<(DType, Vec<u8>)> = vec![
            (
                DType::F64,
                [-2.5f64, 4.0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
            (
                DType::Bf16,
                [-2.5f32, 4.0]
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
            (
                DType::F16,
                [-2.5f32, 4.0]
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
            (DType::I8, vec![(-2i8) as u8, 4]),
            (
                DType::I16,
                [-2i16, 4].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            (
                DType::I32,
                [-2i32, 4].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            (
                DType::I64,
                [-2i64, 4].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
        ];
        for (dtype, bytes) in cases {
            let stats = tensor_stats(&bytes, dtype);
            assert_eq!(stats.max, Some(4.0), "{dtype}");
            assert!(stats.min.is_some_and(|m| m == -2.0 || m == -2.5), "{dtype}");
        }
        let flags = tensor_stats(&[1, 0, 1, 1], DType::Bool);
        assert_eq!((stats_mean(&flags), flags.zero_frac), (0.75, Some(0.25)));
    }

    fn stats_mean(stats: &TensorStats) -> f64 {
        stats.mean.unwrap_or(f64::NAN)
    }

    #[test]
    fn quantiles_of_a_uniform_ramp() {
        let ramp: Vec<f32> = (0..=10_000).map(|i| i as f32 / 10_000.0).collect();
        let stats = tensor_stats(&f32_bytes(&ramp), DType::F32);
        let quantiles = stats.quantiles.unwrap_or_default();
        for (q, estimate) in QUANTILE_LEVELS.iter().zip(&quantiles) {
            assert!((q - estimate).abs() < 0.02, "q{q}: {estimate}");
        }
        assert_eq!(
            quantile_from_histogram(&stats.histogram, 0.0, 1.0, 0.0),
            0.0
        );
        assert_eq!(
            quantile_from_histogram(&stats.histogram, 0.0, 1.0, 1.0),
            1.0
        );
    }
}
