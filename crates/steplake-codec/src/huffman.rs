//! Huffman literals as zstd defines them (RFC 8878 §4.2.1): code lengths
//! capped at [`MAX_CODE_LENGTH`], the tree description (weights, FSE-compressed
//! or direct), canonical codes, and the bitstreams.

use crate::fse;

/// The longest code steplake emits (zstd decoders accept up to 12).
pub const MAX_CODE_LENGTH: u32 = 11;

/// Optimal prefix-code lengths for `histogram`, capped at
/// [`MAX_CODE_LENGTH`] (0 for absent bytes). Needs two or more present bytes.
///
/// Deterministic: ties are broken by byte value. When the optimal code is too
/// deep, counts are halved (keeping every present byte at least 1) and the
/// code rebuilt, which converges to a balanced code of depth ≤ 8.
pub fn code_lengths(histogram: &[u32; 256]) -> [u8; 256] {
    let mut counts: Vec<u64> = histogram.iter().map(|&c| c as u64).collect();
    loop {
        let lengths = unbounded_code_lengths(&counts);
        if lengths.iter().all(|&l| l as u32 <= MAX_CODE_LENGTH) {
            return lengths;
        }
        for c in counts.iter_mut().filter(|c| **c > 0) {
            *c = (*c >> 1).max(1);
        }
    }
}

/// Huffman code lengths without a cap (two-queue construction over leaves
/// sorted by (count, byte)).
fn unbounded_code_lengths(counts: &[u64]) -> [u8; 256] {
    let mut leaves: Vec<(u64, usize)> = counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(s, &c)| (c, s))
        .collect();
    leaves.sort_unstable();
    let n = leaves.len();
    let mut lengths = [0u8; 256];
    if n < 2 {
        if let Some(&(_, s)) = leaves.first() {
            lengths[s] = 1;
        }
        return lengths;
    }
    // Nodes 0..n are leaves; n.. are internal nodes in creation order.
    let mut parent = vec![0usize; 2 * n - 1];
    let mut weight: Vec<u64> = leaves.iter().map(|&(c, _)| c).collect();
    let (mut next_leaf, mut next_internal) = (0, n);
    let take = |weight: &Vec<u64>, next_leaf: &mut usize, next_internal: &mut usize| {
        let internal_ready = *next_internal < weight.len();
        if *next_leaf < n && (!internal_ready || weight[*next_leaf] <= weight[*next_internal]) {
            *next_leaf += 1;
            *next_leaf - 1
        } else {
            *next_internal += 1;
            *next_internal - 1
        }
    };
    for node in n..2 * n - 1 {
        let a = take(&weight, &mut next_leaf, &mut next_internal);
        let b = take(&weight, &mut next_leaf, &mut next_internal);
        weight.push(weight[a] + weight[b]);
        parent[a] = node;
        parent[b] = node;
    }
    // Depths from the root (the last node) down.
    let mut depth = vec![0u8; 2 * n - 1];
    for node in (0..2 * n - 2).rev() {
        depth[node] = depth[parent[node]].saturating_add(1);
    }
    for (leaf, &(_, s)) in leaves.iter().enumerate() {
        lengths[s] = depth[leaf];
    }
    lengths
}

/// The code table of one block: per byte its code and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codes {
    /// Code of each byte (valid where `lengths` is non-zero).
    pub codes: [u16; 256],
    /// Code length of each byte, 0 for absent bytes.
    pub lengths: [u8; 256],
    /// The longest length (zstd's table log).
    pub max_length: u32,
}

impl Codes {
    /// zstd's canonical codes for `lengths`: bytes sorted by weight (longest
    /// code first), then by value, get consecutive codes.
    pub fn canonical(lengths: &[u8; 256]) -> Codes {
        let max_length = lengths.iter().copied().max().unwrap_or(0) as u32;
        let mut order: Vec<usize> = (0..256).filter(|&s| lengths[s] > 0).collect();
        order.sort_by_key(|&s| (std::cmp::Reverse(lengths[s]), s));
        let mut codes = [0u16; 256];
        let mut counter: u32 = 0;
        for s in order {
            let shift = max_length - lengths[s] as u32;
            codes[s] = (counter >> shift) as u16;
            counter += 1 << shift;
        }
        Codes {
            codes,
            lengths: *lengths,
            max_length,
        }
    }

    /// Bits needed to code a block with `histogram`.
    pub fn cost_in_bits(&self, histogram: &[u32; 256]) -> u64 {
        (0..256)
            .map(|s| histogram[s] as u64 * self.lengths[s] as u64)
            .sum()
    }
}

/// The Huffman tree description (RFC 8878 §4.2.1.1) for code `lengths` of
/// a complete code: FSE-compressed weights, or the direct 4-bit form when that
/// is shorter or FSE cannot represent them. `None` when neither can (more
/// than 128 weights that FSE cannot compress).
pub fn tree_description(lengths: &[u8; 256], max_length: u32) -> Option<Vec<u8>> {
    let last = (0..256).rev().find(|&s| lengths[s] > 0)?;
    // Weights of every byte before the last present one; the last is implied.
    let weights: Vec<u8> = lengths[..last]
        .iter()
        .map(|&l| {
            if l == 0 {
                0
            } else {
                (max_length + 1 - l as u32) as u8
            }
        })
        .collect();
    let compressed = fse_weights(&weights);
    let direct = (!weights.is_empty() && weights.len() <= 128).then(|| {
        let mut out = vec![(127 + weights.len()) as u8];
        out.extend(
            weights
                .chunks(2)
                .map(|pair| pair[0] << 4 | pair.get(1).copied().unwrap_or(0)),
        );
        out
    });
    match (compressed, direct) {
        (Some(c), Some(d)) => Some(if c.len() <= d.len() { c } else { d }),
        (c, d) => c.or(d),
    }
}

/// Weights compressed with FSE, behind their one-byte size header.
fn fse_weights(weights: &[u8]) -> Option<Vec<u8>> {
    if weights.len() < 2 {
        return None;
    }
    let mut counts = [0u32; 13];
    for &w in weights {
        counts[w as usize] += 1;
    }
    let max_symbol = (0..13).rev().find(|&w| counts[w] > 0)?;
    let log = fse::WEIGHTS_ACCURACY_LOG;
    let norm = fse::normalize(&counts[..=max_symbol], log)?;
    let mut body = fse::write_table_description(&norm, log);
    body.extend(fse::encode_two_states(weights, &norm, log));
    (body.len() < 128).then(|| {
        let mut out = vec![body.len() as u8];
        out.extend(body);
        out
    })
}

/// One Huffman bitstream being written into a pre-sized buffer: a 64-bit
/// container whose whole bytes are stored after every four codes (≤ 44 bits).
struct Lane {
    buffer: Vec<u8>,
    position: usize,
    container: u64,
    filled: u32,
}

impl Lane {
    /// A lane for `len` bytes with codes of at most `max_length` bits.
    fn new(len: usize, max_length: u32) -> Self {
        Lane {
            buffer: vec![0u8; len * max_length as usize / 8 + 16],
            position: 0,
            container: 0,
            filled: 0,
        }
    }

    /// Adds a table entry (`code | length << 16`).
    #[inline(always)]
    fn push(&mut self, entry: u32) {
        self.container |= ((entry & 0xFFFF) as u64) << self.filled;
        self.filled += entry >> 16;
    }

    /// Stores the container's whole bytes.
    #[inline(always)]
    fn flush(&mut self) {
        let at = self.position;
        self.buffer[at..at + 8].copy_from_slice(&self.container.to_le_bytes());
        let whole = self.filled / 8;
        self.position = at + whole as usize;
        self.container = if whole == 8 {
            0
        } else {
            self.container >> (whole * 8)
        };
        self.filled -= whole * 8;
    }

    /// Codes `bytes` last to first (at most four), then flushes.
    #[inline(always)]
    fn push_backwards(&mut self, bytes: &[u8], table: &[u32; 256]) {
        for &b in bytes.iter().rev() {
            self.push(table[b as usize]);
        }
        self.flush();
    }

    /// Codes four bytes last to first, then flushes.
    #[inline(always)]
    fn push_quad(&mut self, quad: &[u8], table: &[u32; 256]) {
        if let [a, b, c, d] = *quad {
            self.push(table[d as usize]);
            self.push(table[c as usize]);
            self.push(table[b as usize]);
            self.push(table[a as usize]);
        }
        self.flush();
    }

    /// Adds the end mark and returns the stream.
    fn finish(mut self) -> Vec<u8> {
        self.push(1 | 1 << 16);
        self.flush();
        let end = self.position + (self.filled > 0) as usize;
        self.buffer.truncate(end);
        self.buffer
    }
}

/// Code and length of each byte in one word: `code | length << 16` (the
/// GPU packing kernel's table too).
pub fn entry_table(codes: &Codes) -> [u32; 256] {
    std::array::from_fn(|s| codes.codes[s] as u32 | (codes.lengths[s] as u32) << 16)
}

/// Bytes of a stream of `bits` code bits: the end mark, then padding to a
/// byte.
pub fn stream_size(bits: u64) -> usize {
    (bits / 8) as usize + 1
}

/// Codes `segment` as one Huffman bitstream with its end mark. zstd decoders
/// read a stream backwards, so the bytes are coded last to first.
pub fn encode_stream(segment: &[u8], codes: &Codes) -> Vec<u8> {
    let table = entry_table(codes);
    let mut lane = Lane::new(segment.len(), codes.max_length);
    let quads = segment.rchunks_exact(4);
    let head = quads.remainder();
    for quad in quads {
        lane.push_quad(quad, &table);
    }
    lane.push_backwards(head, &table);
    lane.finish()
}

/// Codes the four segments of a block (zstd's split: three of
/// `ceil(len / 4)` bytes, then the rest) as four streams. The four lanes are
/// advanced together: independent dependency chains the CPU overlaps.
pub fn encode_four_streams(segments: [&[u8]; 4], codes: &Codes) -> Vec<Vec<u8>> {
    let table = entry_table(codes);
    let [s0, s1, s2, s3] = segments;
    let common = s3.len();
    debug_assert!([s0, s1, s2]
        .iter()
        .all(|s| s.len() >= common && s.len() <= common + 3));
    let lane = |s: &[u8]| Lane::new(s.len(), codes.max_length);
    let (mut l0, mut l1, mut l2, mut l3) = (lane(s0), lane(s1), lane(s2), lane(s3));
    // Bytes past the last segment's length come last in their segments, so
    // they are coded first.
    l0.push_backwards(&s0[common..], &table);
    l1.push_backwards(&s1[common..], &table);
    l2.push_backwards(&s2[common..], &table);
    let mut i = common;
    while i >= 4 {
        l0.push_quad(&s0[i - 4..i], &table);
        l1.push_quad(&s1[i - 4..i], &table);
        l2.push_quad(&s2[i - 4..i], &table);
        l3.push_quad(&s3[i - 4..i], &table);
        i -= 4;
    }
    l0.push_backwards(&s0[..i], &table);
    l1.push_backwards(&s1[..i], &table);
    l2.push_backwards(&s2[..i], &table);
    l3.push_backwards(&s3[..i], &table);
    vec![l0.finish(), l1.finish(), l2.finish(), l3.finish()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bits::BitWriter;

    #[test]
    fn fast_stream_matches_the_bit_writer() {
        let mut histogram = [0u32; 256];
        let data: Vec<u8> = (0..5000u32).map(|i| (i * i % 251 % 37) as u8).collect();
        for &b in &data {
            histogram[b as usize] += 1;
        }
        let codes = Codes::canonical(&code_lengths(&histogram));
        for len in [0, 1, 2, 3, 4, 5, 7, 8, 9, 100, 4999, 5000] {
            let mut reference = BitWriter::default();
            for &b in data[..len].iter().rev() {
                reference.write(
                    codes.codes[b as usize] as u64,
                    codes.lengths[b as usize] as u32,
                );
            }
            assert_eq!(
                encode_stream(&data[..len], &codes),
                reference.finish(),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn canonical_codes_match_the_rfc_example() {
        // RFC 8878 §4.2.1.3: weights 4 3 2 0 1 1 → lengths 1 2 3 0 4 4.
        let mut lengths = [0u8; 256];
        lengths[..6].copy_from_slice(&[1, 2, 3, 0, 4, 4]);
        let codes = Codes::canonical(&lengths);
        assert_eq!(&codes.codes[..6], &[0b1, 0b01, 0b001, 0, 0b0000, 0b0001]);
        assert_eq!(codes.max_length, 4);
    }

    #[test]
    fn lengths_are_capped_and_complete() {
        // Fibonacci counts make the deepest possible optimal tree.
        let mut histogram = [0u32; 256];
        let (mut a, mut b) = (1u32, 1u32);
        for slot in histogram.iter_mut().take(30) {
            *slot = a;
            (a, b) = (b, a.saturating_add(b));
        }
        let lengths = code_lengths(&histogram);
        assert!(lengths.iter().all(|&l| l as u32 <= MAX_CODE_LENGTH));
        let kraft: u64 = lengths
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 1u64 << (MAX_CODE_LENGTH - l as u32))
            .sum();
        assert_eq!(kraft, 1 << MAX_CODE_LENGTH);
    }
}
