//! A compact, exact record of the (step, condition) points of one series, the
//! state behind `first_sustained`.
//!
//! Storage tables hand a series over in step order (Parquet files are sorted by
//! run, name and step, and partitions cover disjoint step ranges), so points
//! arrive as a few sorted *segments*. A segment keeps its steps as arithmetic
//! runs (a series logged every step, or every 500 steps, is one run) and its
//! conditions as one bit per point: 100M points take about 12 MB, not the
//! 900 MB of a `Vec<(i64, bool)>`.
//!
//! When the segments are sorted and disjoint the answer comes from a word-wise
//! scan of the bits. Any other input (steps out of order within a segment past
//! [`MAX_SEGMENTS`], overlapping segments, repeated steps) falls back to
//! sorting every point, so the answer never depends on input order.

use arrow::buffer::BooleanBuffer;
use datafusion::common::{exec_err, Result};

/// Out-of-order points open a new segment up to this many segments per
/// series; beyond it they are kept as loose points.
pub const MAX_SEGMENTS: usize = 64;

/// Steps `start, start + stride, …` (`count` of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StepRun {
    start: i64,
    stride: i64,
    count: u64,
}

impl StepRun {
    fn last(&self) -> i64 {
        // Wrapping only matters for a malformed partial state: every step of a
        // real run was an input step.
        self.start
            .wrapping_add(self.stride.wrapping_mul(self.count as i64 - 1))
    }
}

/// Points with strictly increasing steps.
#[derive(Debug, Default, Clone)]
struct Segment {
    runs: Vec<StepRun>,
    /// The last step (meaningless while `len` is 0).
    last_step: i64,
    /// Bit `i` (word `i / 64`, bit `i % 64`) is the condition of point `i`.
    bits: Vec<u64>,
    len: usize,
}

impl Segment {
    fn first(&self) -> Option<i64> {
        self.runs.first().map(|run| run.start)
    }

    fn last(&self) -> Option<i64> {
        (self.len > 0).then_some(self.last_step)
    }

    /// Appends a point; `step` must be above [`Segment::last`].
    #[inline]
    fn push(&mut self, step: i64, holds: bool) {
        self.push_step(step);
        if self.len.is_multiple_of(64) {
            self.bits.push(0);
        }
        if holds {
            self.bits[self.len / 64] |= 1 << (self.len % 64);
        }
        self.len += 1;
    }

    /// Appends `steps` (strictly increasing, the first above
    /// [`Segment::last`]) with the conditions `holds`, one bit each: what
    /// [`Segment::push`] gives point by point, a word of bits at a time.
    fn extend(&mut self, steps: &[i64], holds: &BooleanBuffer) {
        // Steps that go on with the last run's stride only count.
        let mut continued = 0;
        if let Some(run) = self.runs.last_mut().filter(|run| run.count > 1) {
            let mut previous = self.last_step;
            continued = steps
                .iter()
                .take_while(|&&step| {
                    let next = step.checked_sub(previous) == Some(run.stride);
                    previous = step;
                    next
                })
                .count();
            run.count += continued as u64;
            if let Some(&last) = steps[..continued].last() {
                self.last_step = last;
            }
        }
        for &step in &steps[continued..] {
            self.push_step(step);
        }
        let chunks = holds.bit_chunks();
        for word in chunks.iter() {
            self.append_bits(word, 64);
        }
        if chunks.remainder_len() > 0 {
            self.append_bits(chunks.remainder_bits(), chunks.remainder_len());
        }
    }

    /// Adds `step` to the step runs.
    #[inline]
    fn push_step(&mut self, step: i64) {
        match self.runs.last_mut() {
            Some(run) if run.count > 1 && step.checked_sub(self.last_step) == Some(run.stride) => {
                run.count += 1
            }
            Some(run) if run.count == 1 && step.checked_sub(run.start).is_some() => {
                run.stride = step - run.start;
                run.count = 2;
            }
            _ => self.runs.push(StepRun {
                start: step,
                stride: 0,
                count: 1,
            }),
        }
        self.last_step = step;
    }

    /// Appends the low `count` bits of `word` (1 to 64) as conditions.
    fn append_bits(&mut self, word: u64, count: usize) {
        let word = if count == 64 {
            word
        } else {
            word & ((1 << count) - 1)
        };
        let used = self.len % 64;
        match self.bits.last_mut() {
            Some(last) if used > 0 => {
                *last |= word << used;
                if used + count > 64 {
                    self.bits.push(word >> (64 - used));
                }
            }
            _ => self.bits.push(word),
        }
        self.len += count;
    }

    fn holds(&self, index: usize) -> bool {
        self.bits[index / 64] >> (index % 64) & 1 == 1
    }

    fn step(&self, mut index: usize) -> i64 {
        for run in &self.runs {
            if (index as u64) < run.count {
                return run.start + run.stride * index as i64;
            }
            index -= run.count as usize;
        }
        unreachable!("point index beyond the segment")
    }

    /// The condition bits of word `word` with the bits past the end cleared,
    /// and the mask of the bits that are points.
    fn word(&self, word: usize) -> (u64, u64) {
        let covered = (self.len - word * 64).min(64);
        let valid = if covered == 64 {
            u64::MAX
        } else {
            (1 << covered) - 1
        };
        (self.bits[word] & valid, valid)
    }

    /// The index of the last point whose condition is false.
    fn last_false(&self) -> Option<usize> {
        (0..self.bits.len()).rev().find_map(|word| {
            let (bits, valid) = self.word(word);
            let falses = !bits & valid;
            (falses != 0).then(|| word * 64 + 63 - falses.leading_zeros() as usize)
        })
    }

    fn points(&self) -> impl Iterator<Item = (i64, bool)> + '_ {
        let steps = self
            .runs
            .iter()
            .flat_map(|run| (0..run.count as i64).map(move |k| run.start + run.stride * k));
        steps.enumerate().map(|(i, step)| (step, self.holds(i)))
    }

    fn heap_bytes(&self) -> usize {
        self.runs.capacity() * std::mem::size_of::<StepRun>() + self.bits.capacity() * 8
    }
}

/// The (step, condition) points of one series.
#[derive(Debug, Default, Clone)]
pub struct ConditionSeries {
    segments: Vec<Segment>,
    /// Out-of-order points once [`MAX_SEGMENTS`] segments exist.
    loose: Vec<(i64, bool)>,
}

impl ConditionSeries {
    /// Adds a point.
    #[inline]
    pub fn push(&mut self, step: i64, holds: bool) {
        if let Some(segment) = self.segments.last_mut() {
            if segment.last().is_some_and(|last| step > last) {
                segment.push(step, holds);
                return;
            }
        }
        if self.segments.len() < MAX_SEGMENTS {
            let mut segment = Segment::default();
            segment.push(step, holds);
            self.segments.push(segment);
        } else {
            self.loose.push((step, holds));
        }
    }

    /// Adds the points `steps[i]` with condition bit `i` of `holds` (one
    /// bit per step): the same series as [`ConditionSeries::push`] of each
    /// in turn gives, faster when the steps go up, as they do from storage.
    pub fn extend(&mut self, steps: &[i64], holds: &BooleanBuffer) {
        let ascending = steps.windows(2).all(|pair| pair[0] < pair[1]);
        let first = steps
            .first()
            .filter(|_| ascending && holds.len() == steps.len());
        let continues = first.is_some_and(|&first| {
            self.segments
                .last()
                .and_then(Segment::last)
                .is_some_and(|last| first > last)
        });
        let starts_segment = first.is_some() && !continues && self.segments.len() < MAX_SEGMENTS;
        if !continues && !starts_segment {
            for (&step, holds) in steps.iter().zip(holds.iter()) {
                self.push(step, holds);
            }
            return;
        }
        if starts_segment {
            self.segments.push(Segment::default());
        }
        if let Some(segment) = self.segments.last_mut() {
            segment.extend(steps, holds);
        }
    }

    /// Adds every point of `other`.
    pub fn merge(&mut self, other: ConditionSeries) {
        for segment in other.segments {
            if self.segments.len() < MAX_SEGMENTS {
                self.segments.push(segment);
            } else {
                self.loose.extend(segment.points());
            }
        }
        self.loose.extend(other.loose);
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.segments.capacity() * std::mem::size_of::<Segment>()
            + self.segments.iter().map(Segment::heap_bytes).sum::<usize>()
            + self.loose.capacity() * std::mem::size_of::<(i64, bool)>()
    }

    /// The first step at which the condition becomes true and stays true for
    /// `hold` consecutive points (`None`: to the end of the series).
    pub fn first_sustained(&mut self, hold: Option<usize>) -> Option<i64> {
        if let Some(points) = self.sorted_points_unless_disjoint() {
            return first_sustained(&points, hold);
        }
        match hold {
            None => sustained_to_the_end(&self.segments),
            Some(hold) => sustained_for(&self.segments, hold),
        }
    }

    /// Serializes the points (the partial state of an aggregate).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.segments.len() as u64).to_le_bytes());
        for segment in &self.segments {
            out.extend_from_slice(&(segment.runs.len() as u64).to_le_bytes());
            for run in &segment.runs {
                out.extend_from_slice(&run.start.to_le_bytes());
                out.extend_from_slice(&run.stride.to_le_bytes());
                out.extend_from_slice(&run.count.to_le_bytes());
            }
            out.extend_from_slice(&(segment.len as u64).to_le_bytes());
            for word in &segment.bits {
                out.extend_from_slice(&word.to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.loose.len() as u64).to_le_bytes());
        for &(step, holds) in &self.loose {
            out.extend_from_slice(&step.to_le_bytes());
            out.push(holds as u8);
        }
    }

    /// Reads what [`ConditionSeries::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<ConditionSeries> {
        let mut reader = Reader { bytes };
        let mut series = ConditionSeries::default();
        for _ in 0..reader.u64()? {
            let mut segment = Segment::default();
            let mut points = 0u64;
            for _ in 0..reader.u64()? {
                let run = StepRun {
                    start: reader.u64()? as i64,
                    stride: reader.u64()? as i64,
                    count: reader.u64()?,
                };
                if run.count == 0 {
                    return exec_err!("first_sustained: malformed partial state (empty run)");
                }
                points = points.saturating_add(run.count);
                segment.runs.push(run);
            }
            segment.len = reader.u64()? as usize;
            segment.last_step = segment.runs.last().map_or(0, StepRun::last);
            if points != segment.len as u64 || segment.len == 0 {
                return exec_err!("first_sustained: malformed partial state (segment length)");
            }
            for _ in 0..segment.len.div_ceil(64) {
                segment.bits.push(reader.u64()?);
            }
            series.segments.push(segment);
        }
        for _ in 0..reader.u64()? {
            let step = reader.u64()? as i64;
            let holds = reader.take(1)?[0] != 0;
            series.loose.push((step, holds));
        }
        Ok(series)
    }
}

/// Little-endian reads from a partial state.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.bytes.len() < n {
            return exec_err!("first_sustained: malformed partial state (truncated)");
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(word))
    }
}

impl ConditionSeries {
    /// The first step `s` at which the condition becomes true and stays true
    /// for at least `hold` steps: every point from `s` to one at step
    /// ≥ `s + hold` holds it.
    pub fn first_sustained_for_steps(&mut self, hold: i64) -> Option<i64> {
        if let Some(points) = self.sorted_points_unless_disjoint() {
            return sustained_for_steps(points.into_iter(), hold);
        }
        sustained_for_steps(self.segments.iter().flat_map(Segment::points), hold)
    }

    /// Sorts the segments; when they overlap or loose points exist, every
    /// point sorted by step (the fast paths need sorted disjoint segments).
    fn sorted_points_unless_disjoint(&mut self) -> Option<Vec<(i64, bool)>> {
        self.segments.sort_by_key(|segment| segment.first());
        let disjoint = self
            .segments
            .windows(2)
            .all(|pair| pair[0].last() < pair[1].first());
        if disjoint && self.loose.is_empty() {
            return None;
        }
        let mut points: Vec<(i64, bool)> = self.segments.iter().flat_map(Segment::points).collect();
        points.extend(self.loose.iter().copied());
        points.sort_by_key(|&(step, _)| step);
        Some(points)
    }
}

/// For `hold` steps, over points in step order.
pub fn sustained_for_steps(points: impl Iterator<Item = (i64, bool)>, hold: i64) -> Option<i64> {
    let mut start: Option<i64> = None;
    for (step, holds) in points {
        if !holds {
            start = None;
            continue;
        }
        let from = *start.get_or_insert(step);
        if step.saturating_sub(from) >= hold {
            return Some(from);
        }
    }
    None
}

/// To the end: the point right after the last false one.
fn sustained_to_the_end(segments: &[Segment]) -> Option<i64> {
    for (k, segment) in segments.iter().enumerate().rev() {
        if let Some(index) = segment.last_false() {
            return if index + 1 < segment.len {
                Some(segment.step(index + 1))
            } else {
                segments.get(k + 1).and_then(Segment::first)
            };
        }
    }
    segments.first().and_then(Segment::first)
}

/// For `hold` points: the start of the first run of `hold` true points.
fn sustained_for(segments: &[Segment], hold: usize) -> Option<i64> {
    let mut run = 0usize;
    let mut start = (0usize, 0usize);
    for (k, segment) in segments.iter().enumerate() {
        for word in 0..segment.bits.len() {
            let (bits, valid) = segment.word(word);
            let covered = valid.count_ones() as usize;
            if bits == 0 {
                run = 0;
                continue;
            }
            if bits == valid {
                if run == 0 {
                    start = (k, word * 64);
                }
                run += covered;
                if run >= hold {
                    return Some(segments[start.0].step(start.1));
                }
                continue;
            }
            for bit in 0..covered {
                if bits >> bit & 1 == 1 {
                    if run == 0 {
                        start = (k, word * 64 + bit);
                    }
                    run += 1;
                    if run >= hold {
                        return Some(segments[start.0].step(start.1));
                    }
                } else {
                    run = 0;
                }
            }
        }
    }
    None
}

/// The answer for points sorted by step (the reference the fast paths match).
pub fn first_sustained(points: &[(i64, bool)], hold: Option<usize>) -> Option<i64> {
    match hold {
        Some(hold) => {
            let mut run = 0;
            for (i, &(_, holds)) in points.iter().enumerate() {
                run = if holds { run + 1 } else { 0 };
                if run == hold {
                    return Some(points[i + 1 - hold].0);
                }
            }
            None
        }
        None => {
            let tail = points.iter().rev().take_while(|(_, holds)| *holds).count();
            (tail > 0).then(|| points[points.len() - tail].0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extending_by_blocks_keeps_what_pushing_point_by_point_keeps() {
        let mut next = crate::operators::test_random(3);
        for case in 0..300 {
            let (mut pushed, mut extended) =
                (ConditionSeries::default(), ConditionSeries::default());
            let mut step = next(100) as i64;
            for _ in 0..1 + next(90) {
                let len = next(150) as usize;
                let stride = 1 + next(3) as i64;
                let mut steps = Vec::with_capacity(len);
                for _ in 0..len {
                    // Mostly a steady stride, sometimes a jump, and
                    // sometimes a step back (a new segment or loose points).
                    step += match next(20) {
                        0 => 7,
                        1 => -40,
                        2 if case % 3 == 0 => 0,
                        _ => stride,
                    };
                    steps.push(step);
                }
                let holds: BooleanBuffer = (0..len).map(|_| next(4) > 0).collect();
                // An offset into a longer buffer, as a slice of a batch is.
                let padded: BooleanBuffer = std::iter::once(true)
                    .chain(holds.iter())
                    .collect::<BooleanBuffer>();
                let sliced = padded.slice(1, len);
                for (&s, h) in steps.iter().zip(holds.iter()) {
                    pushed.push(s, h);
                }
                extended.extend(&steps, &sliced);
            }
            let (mut a, mut b) = (Vec::new(), Vec::new());
            pushed.encode(&mut a);
            extended.encode(&mut b);
            assert!(a == b, "case {case}: the states differ");
            for hold in [None, Some(1), Some(5)] {
                assert_eq!(
                    pushed.first_sustained(hold),
                    extended.first_sustained(hold),
                    "case {case}"
                );
            }
        }
    }

    fn points(conds: &[bool]) -> Vec<(i64, bool)> {
        conds
            .iter()
            .enumerate()
            .map(|(i, &c)| (i as i64 * 10, c))
            .collect()
    }

    #[test]
    fn to_the_end_of_the_series() {
        assert_eq!(
            first_sustained(&points(&[false, true, false, true, true]), None),
            Some(30)
        );
        assert_eq!(first_sustained(&points(&[true, true, false]), None), None);
        assert_eq!(first_sustained(&points(&[]), None), None);
    }

    #[test]
    fn for_hold_steps() {
        // Points every 10 steps: true at 10..=30 and from 60 on.
        let p = points(&[
            false, true, true, true, false, false, true, true, true, true,
        ]);
        assert_eq!(sustained_for_steps(p.iter().copied(), 20), Some(10));
        assert_eq!(sustained_for_steps(p.iter().copied(), 21), Some(60));
        assert_eq!(sustained_for_steps(p.iter().copied(), 30), Some(60));
        assert_eq!(sustained_for_steps(p.iter().copied(), 31), None);
        assert_eq!(sustained_for_steps(p.iter().copied(), 0), Some(10));
    }

    #[test]
    fn for_hold_points() {
        let p = points(&[true, false, true, true, false, true, true, true]);
        assert_eq!(first_sustained(&p, Some(2)), Some(20));
        assert_eq!(first_sustained(&p, Some(3)), Some(50));
        assert_eq!(first_sustained(&p, Some(4)), None);
        assert_eq!(first_sustained(&p, Some(1)), Some(0));
    }

    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// A series of `n` points with irregular strides and a condition that
    /// flips rarely (`flip_every` on average), in step order.
    fn series(noise: &mut Noise, n: usize, flip_every: u64) -> Vec<(i64, bool)> {
        let mut step = noise.next() as i64 % 1000 - 500;
        let mut holds = noise.next().is_multiple_of(2);
        (0..n)
            .map(|_| {
                step += [1, 1, 1, 5, 500][noise.next() as usize % 5];
                if noise.next().is_multiple_of(flip_every) {
                    holds = !holds;
                }
                (step, holds)
            })
            .collect()
    }

    /// Holds that cross word boundaries (64), and "to the end".
    const HOLDS: [Option<usize>; 7] = [
        None,
        Some(1),
        Some(2),
        Some(7),
        Some(64),
        Some(65),
        Some(300),
    ];

    fn answers(series: &ConditionSeries) -> Vec<Option<i64>> {
        HOLDS
            .into_iter()
            .map(|hold| series.clone().first_sustained(hold))
            .collect()
    }

    fn reference(points: &[(i64, bool)]) -> Vec<Option<i64>> {
        let mut sorted = points.to_vec();
        sorted.sort_by_key(|&(step, _)| step);
        HOLDS
            .into_iter()
            .map(|hold| first_sustained(&sorted, hold))
            .collect()
    }

    #[test]
    fn sorted_input_matches_the_reference() {
        let mut noise = Noise(0x2545_f491_4f6c_dd1d);
        for case in 0..300 {
            let n = [0, 1, 2, 63, 64, 65, 200, 1000][case % 8];
            let points = series(&mut noise, n, [2, 10, 400][case % 3]);
            let mut series = ConditionSeries::default();
            for &(step, holds) in &points {
                series.push(step, holds);
            }
            assert!(series.segments.len() <= 1);
            assert_eq!(answers(&series), reference(&points), "case {case}");
        }
    }

    #[test]
    fn any_order_and_partial_states_match_the_reference() {
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        for case in 0..300 {
            let n = [1, 5, 64, 130, 700][case % 5];
            let mut points = series(&mut noise, n, [3, 40][case % 2]);
            // Shuffle blocks (files read in another order), sometimes points.
            let block = 1 + noise.next() as usize % n;
            let mut blocks: Vec<Vec<(i64, bool)>> =
                points.chunks(block).map(<[_]>::to_vec).collect();
            blocks.reverse();
            points = blocks.concat();
            if case % 4 == 0 {
                for i in (1..points.len()).rev() {
                    points.swap(i, noise.next() as usize % (i + 1));
                }
            }
            // Two partial states, encoded and decoded, merged.
            let split = noise.next() as usize % (points.len() + 1);
            let mut left = ConditionSeries::default();
            let mut right = ConditionSeries::default();
            points[..split].iter().for_each(|&(s, c)| left.push(s, c));
            points[split..].iter().for_each(|&(s, c)| right.push(s, c));
            let mut bytes = Vec::new();
            right.encode(&mut bytes);
            left.merge(ConditionSeries::decode(&bytes).expect("decodes"));
            assert_eq!(answers(&left), reference(&points), "case {case}");
        }
    }

    #[test]
    fn malformed_state_is_an_error() {
        let mut series = ConditionSeries::default();
        (0..100).for_each(|s| series.push(s, s % 3 == 0));
        let mut bytes = Vec::new();
        series.encode(&mut bytes);
        for cut in [0, 7, 8, 20, bytes.len() - 1] {
            assert!(
                ConditionSeries::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }
}
