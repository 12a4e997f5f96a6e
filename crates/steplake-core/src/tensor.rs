//! Tensors as steplake keeps them: a header (name, step, dtype, shape), the
//! statistics kept for every tensor, and optionally the whole tensor.

use crate::{validate_series_name, CoreError, DType};

/// Bins of the value histogram kept for every tensor.
pub const HISTOGRAM_BINS: usize = 64;

/// The quantile levels kept for every tensor, estimated from the histogram.
pub const QUANTILE_LEVELS: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];

/// Statistics of one tensor. NaN and ±Inf are counted and left out of every
/// other statistic; statistics of a tensor with no finite element are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorStats {
    /// Number of elements.
    pub numel: u64,
    /// Mean of the finite elements.
    pub mean: Option<f64>,
    /// Population standard deviation of the finite elements.
    pub std: Option<f64>,
    /// Smallest finite element.
    pub min: Option<f64>,
    /// Largest finite element.
    pub max: Option<f64>,
    /// Euclidean norm of the finite elements (0 when there are none).
    pub l2: f64,
    /// Largest absolute finite element.
    pub abs_max: Option<f64>,
    /// NaN elements.
    pub nan_count: u64,
    /// ±Inf elements.
    pub inf_count: u64,
    /// Fraction of elements equal to zero (`None` for an empty tensor).
    pub zero_frac: Option<f64>,
    /// Counts of finite elements in [`HISTOGRAM_BINS`] equal bins over
    /// `[min, max]` (all zero when there is no finite element).
    pub histogram: Vec<u64>,
    /// Estimates at [`QUANTILE_LEVELS`].
    pub quantiles: Option<Vec<f64>>,
}

/// One tensor at one step, as it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRecord {
    /// Tensor name, e.g. `layers.0.attn.q_proj.weight`.
    pub name: String,
    /// Training step.
    pub step: i64,
    /// Wall-clock time in microseconds since the Unix epoch.
    pub wall_time_us: i64,
    /// Element type.
    pub dtype: DType,
    /// Dimensions.
    pub shape: Vec<u64>,
    /// Statistics (computed at ingest, or sent by the trainer).
    pub stats: TensorStats,
    /// The elements, little-endian, when the whole tensor was sent.
    pub values: Option<Vec<u8>>,
}

/// The number of elements of `shape`, or an error naming `field` when it
/// overflows.
pub fn numel(shape: &[u64], field: &str) -> Result<u64, CoreError> {
    shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| CoreError::invalid(field, format!("shape {shape:?} has too many elements")))
}

impl TensorRecord {
    /// Checks the header and, when present, that the values have exactly
    /// shape × dtype-size bytes and the statistics count that many elements.
    pub fn validate(&self) -> Result<(), CoreError> {
        let field = format!("tensor {:?} at step {}", self.name, self.step);
        validate_series_name(&format!("{field}: name"), &self.name)?;
        if self.step < 0 {
            return Err(CoreError::invalid(
                &field,
                format!("step {} is negative", self.step),
            ));
        }
        let numel = numel(&self.shape, &field)?;
        if self.stats.numel != numel {
            return Err(CoreError::invalid(
                &field,
                format!(
                    "statistics count {} elements but shape {:?} has {numel}",
                    self.stats.numel, self.shape
                ),
            ));
        }
        if self.stats.histogram.len() != HISTOGRAM_BINS {
            return Err(CoreError::invalid(
                &field,
                format!(
                    "histogram has {} bins, expected {HISTOGRAM_BINS}",
                    self.stats.histogram.len()
                ),
            ));
        }
        if let Some(values) = &self.values {
            let expected = numel.checked_mul(self.dtype.size() as u64);
            if expected != Some(values.len() as u64) {
                return Err(CoreError::invalid(
                    &field,
                    format!(
                        "shape {:?} of {} needs {} bytes, got {}",
                        self.shape,
                        self.dtype,
                        expected.map_or("too many".to_string(), |e| e.to_string()),
                        values.len()
                    ),
                ));
            }
        }
        Ok(())
    }
}
