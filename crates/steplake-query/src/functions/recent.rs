//! A series' most recent values, oldest first, always one contiguous slice:
//! the window a rolling statistic sums over (`rolling_zscore`, `is_spike`'s
//! z-score method), kept so that the sum runs over plain memory in four
//! lanes instead of through a ring buffer's two halves.

/// The last values pushed and not yet popped, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recent {
    values: Vec<f64>,
    /// Where the oldest live value is; the ones before it were popped.
    head: usize,
}

impl Recent {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Recent {
            values: Vec::with_capacity(2 * n + 1),
            head: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.values.len() - self.head
    }

    pub(crate) fn push(&mut self, v: f64) {
        self.values.push(v);
    }

    /// Removes and returns the oldest value. The popped ones are dropped
    /// from memory once they outnumber the live ones, so each value is
    /// moved at most once on average.
    pub(crate) fn pop_front(&mut self) -> Option<f64> {
        let oldest = self.values.get(self.head).copied()?;
        self.head += 1;
        if self.head >= 16 && self.head * 2 >= self.values.len() {
            self.values.drain(..self.head);
            self.head = 0;
        }
        Some(oldest)
    }

    /// The live values, oldest first.
    pub(crate) fn as_slice(&self) -> &[f64] {
        &self.values[self.head..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_queue() {
        let mut recent = Recent::with_capacity(3);
        let mut queue = std::collections::VecDeque::new();
        for i in 0..1000 {
            let v = i as f64;
            recent.push(v);
            queue.push_back(v);
            if i % 7 != 3 && queue.len() > 5 {
                assert_eq!(recent.pop_front(), queue.pop_front());
            }
            assert_eq!(recent.len(), queue.len());
            assert!(recent.as_slice().iter().eq(queue.iter()));
        }
        while let Some(v) = queue.pop_front() {
            assert_eq!(recent.pop_front(), Some(v));
        }
        assert_eq!(recent.pop_front(), None);
    }
}
