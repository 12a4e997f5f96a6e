//! The finite values of a sliding window kept in sorted order, so that the
//! window's median and median absolute deviation cost a few moves per point
//! instead of a sort (`is_spike`'s ratio and MAD methods and
//! `rolling_zscore`'s robust mode, in SQL and in standing conditions alike).
//!
//! The answers are bit for bit those of sorting the window: the median is
//! the middle value (the mean of the middle two for an even count), and the
//! MAD is the median of `(x - median).abs()` over the same values, found by
//! merging the two runs of deviations either side of the median.

/// A multiset of finite values, sorted by `f64::total_cmp`.
#[derive(Debug, Clone, Default)]
pub(crate) struct SortedWindow {
    sorted: Vec<f64>,
}

impl SortedWindow {
    pub(crate) fn with_capacity(n: usize) -> Self {
        SortedWindow {
            sorted: Vec::with_capacity(n + 1),
        }
    }

    pub(crate) fn insert(&mut self, v: f64) {
        let at = self.sorted.partition_point(|x| x.total_cmp(&v).is_lt());
        self.sorted.insert(at, v);
    }

    /// Removes one copy of `v` (which must have been inserted).
    pub(crate) fn remove(&mut self, v: f64) {
        if let Ok(at) = self.sorted.binary_search_by(|x| x.total_cmp(&v)) {
            self.sorted.remove(at);
        }
    }

    /// The median (the mean of the middle two for an even count); 0 when empty.
    pub(crate) fn median(&self) -> f64 {
        middle(self.sorted.len(), |i| self.sorted[i])
    }

    /// Median and 1.4826 × median absolute deviation (consistent with σ
    /// for normal data).
    pub(crate) fn median_mad(&self) -> (f64, f64) {
        let median = self.median();
        let n = self.sorted.len();
        if n == 0 {
            return (median, 0.0);
        }
        // Deviations grow leftwards from `split` and rightwards from it:
        // merge the two ascending runs up to the middle.
        let split = self.sorted.partition_point(|&x| x < median);
        let deviation = |x: f64| (x - median).abs();
        let (mut left, mut right) = (split, split);
        let mut next = || {
            let take_left = match (left > 0, right < n) {
                (true, true) => deviation(self.sorted[left - 1]) <= deviation(self.sorted[right]),
                (true, false) => true,
                _ => false,
            };
            if take_left {
                left -= 1;
                deviation(self.sorted[left])
            } else {
                right += 1;
                deviation(self.sorted[right - 1])
            }
        };
        let mid = n / 2;
        let mut previous = 0.0;
        for _ in 0..mid {
            previous = next();
        }
        let at_mid = next();
        let mad = if n % 2 == 1 {
            at_mid
        } else {
            (previous + at_mid) / 2.0
        };
        (median, 1.4826 * mad)
    }
}

/// The middle of `n` sorted values read through `at`.
fn middle(n: usize, at: impl Fn(usize) -> f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let mid = n / 2;
    if n % 2 == 1 {
        at(mid)
    } else {
        (at(mid - 1) + at(mid)) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definitions, by sorting.
    fn sorted_median(xs: &mut [f64]) -> f64 {
        xs.sort_by(f64::total_cmp);
        middle(xs.len(), |i| xs[i])
    }

    fn sorted_median_mad(xs: &mut [f64]) -> (f64, f64) {
        let median = sorted_median(xs);
        for x in xs.iter_mut() {
            *x = (*x - median).abs();
        }
        (median, 1.4826 * sorted_median(xs))
    }

    #[test]
    fn median_and_mad_equal_sorting_the_window_bit_for_bit() {
        let mut seed = 17u64;
        let mut random = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Few distinct values, so ties and equal deviations are common.
            ((seed % 23) as f64 - 11.0) * 0.37
        };
        for n in [1usize, 2, 3, 4, 7, 20, 50] {
            let mut window = SortedWindow::with_capacity(n);
            let mut history = std::collections::VecDeque::new();
            for _ in 0..500 {
                let v = random();
                window.insert(v);
                history.push_back(v);
                if history.len() > n {
                    let old = history.pop_front().unwrap();
                    window.remove(old);
                }
                let mut copy: Vec<f64> = history.iter().copied().collect();
                let expected = sorted_median_mad(&mut copy);
                let got = window.median_mad();
                assert_eq!(
                    (got.0.to_bits(), got.1.to_bits()),
                    (expected.0.to_bits(), expected.1.to_bits()),
                    "n {n}, window {history:?}"
                );
                let mut copy: Vec<f64> = history.iter().copied().collect();
                assert_eq!(
                    window.median().to_bits(),
                    sorted_median(&mut copy).to_bits()
                );
            }
        }
    }
}
