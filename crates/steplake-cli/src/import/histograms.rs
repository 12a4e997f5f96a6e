//! Histograms from other trackers as steplake's tensor statistics: a
//! count, extremes and moments, and bucket counts spread over steplake's
//! [`HISTOGRAM_BINS`] equal bins (shared by the TensorBoard and Neptune
//! importers).

use steplake_client::v1;
use steplake_codec::stats::quantile_from_histogram;
use steplake_core::tensor::{HISTOGRAM_BINS, QUANTILE_LEVELS};

/// A statistics-only tensor row of series `name` at `step`.
pub(crate) fn stats_only_tensor(
    name: String,
    step: i64,
    wall_time_us: i64,
    stats: v1::TensorStatistics,
) -> v1::Tensor {
    let numel = stats.numel;
    v1::Tensor {
        name,
        step,
        dtype: "f32".into(),
        shape: vec![numel as i64],
        wall_time_us,
        stats: Some(stats),
        stats_only: true,
        ..Default::default()
    }
}

/// Buckets as (left edge, right edge, count).
pub(crate) type Bucket = (f64, f64, f64);

/// Statistics of a histogram given as k + 1 bin edges and k counts
/// (Neptune's and W&B's form); None when the lengths disagree or it
/// counts nothing.
pub(crate) fn edges_counts_stats(edges: &[f64], counts: &[f64]) -> Option<v1::TensorStatistics> {
    if edges.len() != counts.len() + 1 {
        return None;
    }
    let triples: Vec<f64> = counts
        .iter()
        .enumerate()
        .flat_map(|(i, &count)| [edges[i], edges[i + 1], count])
        .collect();
    bucket_triples_stats(&triples)
}

/// Statistics of the `histograms` plugin's `[k, 3]` tensor of (left, right,
/// count): it carries no sums, so mean, std and L2 come from the bucket
/// centres.
pub(crate) fn bucket_triples_stats(triples: &[f64]) -> Option<v1::TensorStatistics> {
    let buckets: Vec<Bucket> = triples
        .chunks_exact(3)
        .map(|t| (t[0], t[1], t[2]))
        .filter(|b| b.2 > 0.0 && b.0.is_finite() && b.1.is_finite())
        .collect();
    let num: f64 = buckets.iter().map(|b| b.2).sum();
    if num.is_nan() || num <= 0.0 {
        return None;
    }
    let min = buckets.iter().map(|b| b.0).fold(f64::INFINITY, f64::min);
    let max = buckets
        .iter()
        .map(|b| b.1)
        .fold(f64::NEG_INFINITY, f64::max);
    let centre = |b: &Bucket| (b.0 + b.1) / 2.0;
    let sum: f64 = buckets.iter().map(|b| centre(b) * b.2).sum();
    let squares: f64 = buckets.iter().map(|b| centre(b) * centre(b) * b.2).sum();
    let mean = sum / num;
    let variance = (squares / num - mean * mean).max(0.0);
    Some(stats_of(
        &buckets,
        num,
        min,
        max,
        mean,
        variance.sqrt(),
        squares.sqrt(),
    ))
}

pub(crate) fn stats_of(
    buckets: &[Bucket],
    num: f64,
    min: f64,
    max: f64,
    mean: f64,
    std: f64,
    l2: f64,
) -> v1::TensorStatistics {
    let histogram = rebin(buckets, min, max);
    let quantiles = QUANTILE_LEVELS
        .iter()
        .map(|&q| quantile_from_histogram(&histogram, min, max, q))
        .collect();
    v1::TensorStatistics {
        numel: num.round() as u64,
        mean: Some(mean),
        std: Some(std),
        min: Some(min),
        max: Some(max),
        l2,
        abs_max: Some(min.abs().max(max.abs())),
        nan_count: 0,
        inf_count: 0,
        zero_frac: None,
        histogram,
        quantiles,
    }
}

/// `buckets` spread over [`HISTOGRAM_BINS`] equal bins over `[min, max]`:
/// each bucket's count (rounded) shared among the bins it overlaps in
/// proportion to the overlap (all of it to one bin when it is a point),
/// in whole values, largest remainders first, so that every bucket's
/// values stay within its own range.
fn rebin(buckets: &[Bucket], min: f64, max: f64) -> Vec<u64> {
    let bins = HISTOGRAM_BINS;
    let mut counts = vec![0u64; bins];
    let width = (max - min) / bins as f64;
    let bin_of = |x: f64| -> usize {
        if width > 0.0 {
            (((x - min) / width).floor().max(0.0) as usize).min(bins - 1)
        } else {
            0
        }
    };
    for &(left, right, count) in buckets {
        let whole = count.round().max(0.0) as u64;
        let (left, right) = (left.clamp(min, max), right.clamp(min, max));
        if right <= left || width <= 0.0 {
            counts[bin_of(left)] += whole;
            continue;
        }
        let (first, last) = (bin_of(left), bin_of(right));
        let shares: Vec<(usize, f64)> = (first..=last)
            .map(|bin| {
                let lo = (min + bin as f64 * width).max(left);
                let hi = (min + (bin + 1) as f64 * width).min(right);
                (bin, whole as f64 * (hi - lo).max(0.0) / (right - left))
            })
            .collect();
        let mut given = 0;
        for &(bin, share) in &shares {
            counts[bin] += share.floor() as u64;
            given += share.floor() as u64;
        }
        let mut by_remainder = shares.clone();
        by_remainder.sort_by(|a, b| (b.1 - b.1.floor()).total_cmp(&(a.1 - a.1.floor())));
        for &(bin, _) in by_remainder
            .iter()
            .take(whole.saturating_sub(given) as usize)
        {
            counts[bin] += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebinned_counts_add_up_and_stay_in_place() {
        // Two buckets: 10 values in [0, 1], 30 in [3, 4], over [0, 4].
        let counts = rebin(&[(0.0, 1.0, 10.0), (3.0, 4.0, 30.0)], 0.0, 4.0);
        assert_eq!(counts.len(), HISTOGRAM_BINS);
        assert_eq!(counts.iter().sum::<u64>(), 40);
        assert_eq!(counts[..16].iter().sum::<u64>(), 10);
        assert_eq!(counts[16..48].iter().sum::<u64>(), 0);
        assert_eq!(counts[48..].iter().sum::<u64>(), 30);
        // One point: everything in one bin.
        let counts = rebin(&[(2.0, 2.0, 5.0)], 2.0, 2.0);
        assert_eq!(counts[0], 5);
    }
}
