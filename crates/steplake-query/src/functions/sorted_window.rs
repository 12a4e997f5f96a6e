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
///
/// Each value is kept as its total-order key (see [`key`]), an integer that
/// sorts as `total_cmp` sorts the values: finding a place compares integers,
/// and in a window of up to [`COUNT_BELOW`] values it counts the keys
/// below, with no branch to mispredict, instead of a binary search.
#[derive(Debug, Clone, Default)]
pub(crate) struct SortedWindow {
    keys: Vec<i64>,
}

/// Windows up to this many values find a place by counting.
const COUNT_BELOW: usize = 128;

/// `v`'s bits as an integer that orders as `f64::total_cmp` orders values
/// (the transform `total_cmp` itself applies).
fn key(v: f64) -> i64 {
    let bits = v.to_bits() as i64;
    bits ^ (((bits >> 63) as u64) >> 1) as i64
}

/// The value of a [`key`] (the transform is its own inverse).
fn value(key: i64) -> f64 {
    f64::from_bits((key ^ (((key >> 63) as u64) >> 1) as i64) as u64)
}

impl SortedWindow {
    pub(crate) fn with_capacity(n: usize) -> Self {
        SortedWindow {
            keys: Vec::with_capacity(n + 1),
        }
    }

    /// Where `k` goes: the number of keys below it.
    fn place(&self, k: i64) -> usize {
        if self.keys.len() <= COUNT_BELOW {
            self.keys.iter().map(|&x| usize::from(x < k)).sum()
        } else {
            self.keys.partition_point(|&x| x < k)
        }
    }

    pub(crate) fn insert(&mut self, v: f64) {
        let k = key(v);
        let at = self.place(k);
        self.keys.insert(at, k);
    }

    /// Removes one copy of `old` (which must have been inserted) and
    /// inserts `new`, moving only the values between their two places.
    pub(crate) fn replace(&mut self, old: f64, new: f64) {
        let (old, new) = (key(old), key(new));
        let from = self.place(old);
        if self.keys.get(from) != Some(&old) {
            self.keys.insert(self.place(new), new);
            return;
        }
        // Keys below `new`, `old` among them when it is below.
        let to = self.place(new);
        if to > from {
            self.keys.copy_within(from + 1..to, from);
            self.keys[to - 1] = new;
        } else {
            self.keys.copy_within(to..from, to + 1);
            self.keys[to] = new;
        }
    }

    /// Removes one copy of `v` (which must have been inserted).
    pub(crate) fn remove(&mut self, v: f64) {
        let k = key(v);
        let at = self.place(k);
        if self.keys.get(at) == Some(&k) {
            self.keys.remove(at);
        }
    }

    /// The `i`-th smallest value.
    fn at(&self, i: usize) -> f64 {
        value(self.keys[i])
    }

    /// The median (the mean of the middle two for an even count); 0 when empty.
    pub(crate) fn median(&self) -> f64 {
        middle(self.keys.len(), |i| self.at(i))
    }

    /// Median and 1.4826 × median absolute deviation (consistent with σ
    /// for normal data).
    pub(crate) fn median_mad(&self) -> (f64, f64) {
        let median = self.median();
        let n = self.keys.len();
        if n == 0 {
            return (median, 0.0);
        }
        // Deviations grow leftwards from `split` and rightwards from it:
        // two ascending runs, whose union's middle is the MAD.
        let split = self.keys.partition_point(|&k| value(k) < median);
        let deviation = |x: f64| (x - median).abs();
        let runs = Runs {
            left: |i: usize| deviation(self.at(split - 1 - i)),
            left_len: split,
            right: |j: usize| deviation(self.at(split + j)),
            right_len: n - split,
        };
        let mid = n / 2;
        let (before_mid, at_mid) = runs.kth_pair(mid);
        let mad = if n % 2 == 1 {
            at_mid
        } else {
            (before_mid + at_mid) / 2.0
        };
        (median, 1.4826 * mad)
    }
}

/// Two ascending runs of values, read through functions.
struct Runs<L, R> {
    left: L,
    left_len: usize,
    right: R,
    right_len: usize,
}

impl<L: Fn(usize) -> f64, R: Fn(usize) -> f64> Runs<L, R> {
    /// The `k-1`-th and `k`-th smallest (from 0; the first is NaN for
    /// `k = 0`) of the two runs together, in O(log n): the split taking
    /// `i` values from the left run and `k + 1 - i` from the right such
    /// that neither run's next value is smaller than the other's last
    /// taken one. The `k`-th is the larger of the two last taken, the
    /// `k-1`-th the larger of the other one and the value before the
    /// `k`-th in its run: the values a merge reaches at `k - 1` and `k`.
    fn kth_pair(&self, k: usize) -> (f64, f64) {
        let taken = k + 1;
        let (mut lo, mut hi) = (
            taken.saturating_sub(self.right_len),
            taken.min(self.left_len),
        );
        // The first `i` at which the left's next value is not below the
        // right's last taken one: more from the left would be too many.
        while lo < hi {
            let i = lo + (hi - lo) / 2;
            let j = taken - i;
            if (self.left)(i) < (self.right)(j - 1) {
                lo = i + 1;
            } else {
                hi = i;
            }
        }
        let (i, j) = (lo, taken - lo);
        let left = |count: usize| match count {
            0 => f64::NEG_INFINITY,
            c => (self.left)(c - 1),
        };
        let right = |count: usize| match count {
            0 => f64::NEG_INFINITY,
            c => (self.right)(c - 1),
        };
        let (last_left, last_right) = (left(i), right(j));
        let (before, kth) = if j == 0 || (i > 0 && last_left >= last_right) {
            (left(i - 1).max(last_right), last_left)
        } else {
            (last_left.max(right(j - 1)), last_right)
        };
        let before = if k == 0 { f64::NAN } else { before };
        (before, kth)
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
    fn keys_order_as_total_cmp_and_give_the_value_back() {
        let values = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -f64::MIN_POSITIVE,
            -0.0,
            0.0,
            5e-324,
            1.0,
            1.0 + f64::EPSILON,
            1e300,
            f64::INFINITY,
        ];
        for a in values {
            assert_eq!(value(key(a)).to_bits(), a.to_bits());
            for b in values {
                assert_eq!(key(a).cmp(&key(b)), a.total_cmp(&b), "{a} vs {b}");
            }
        }
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
        for n in [1usize, 2, 3, 4, 7, 20, 50, 200] {
            let mut window = SortedWindow::with_capacity(n);
            let mut history = std::collections::VecDeque::new();
            for _ in 0..500 {
                let v = random();
                history.push_back(v);
                if history.len() > n {
                    let old = history.pop_front().unwrap();
                    // Now one move, now a removal and an insertion.
                    if v.to_bits() % 3 == 0 {
                        window.replace(old, v);
                    } else {
                        window.remove(old);
                        window.insert(v);
                    }
                } else {
                    window.insert(v);
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
