//! Finite State Entropy, the part zstd uses to compress Huffman weights.
//!
//! Only the encoder is here: normalized counts ([`normalize`]), the table
//! description ([`write_table_description`]) and the two-state bitstream
//! ([`encode_two_states`]). The encoder derives its transitions from the
//! decoding table a zstd decoder builds from the same counts, so the two can
//! never disagree.

use crate::bits::BitWriter;

/// The accuracy log used for Huffman weights (zstd allows 5 and 6 there).
pub const WEIGHTS_ACCURACY_LOG: u32 = 6;

/// Scales `counts` so they sum to `1 << accuracy_log`, keeping every present
/// symbol at least 1. Deterministic. `None` when fewer than two symbols are
/// present (FSE cannot end such a stream).
pub fn normalize(counts: &[u32], accuracy_log: u32) -> Option<Vec<u32>> {
    let total: u64 = counts.iter().map(|&c| c as u64).sum();
    let present = counts.iter().filter(|&&c| c > 0).count();
    let size = 1u64 << accuracy_log;
    if present < 2 || present as u64 > size {
        return None;
    }
    let mut norm: Vec<u32> = counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0
            } else {
                ((c as u64 * size / total) as u32).max(1)
            }
        })
        .collect();
    let mut sum: i64 = norm.iter().map(|&n| n as i64).sum();
    // The most frequent symbol (lowest index on ties) absorbs the rounding.
    let largest = (0..counts.len()).max_by_key(|&s| (counts[s], std::cmp::Reverse(s)))?;
    while sum < size as i64 {
        norm[largest] += 1;
        sum += 1;
    }
    while sum > size as i64 {
        // Take from the symbol with the largest share above 1.
        let victim = (0..norm.len())
            .filter(|&s| norm[s] > 1)
            .max_by_key(|&s| (norm[s], std::cmp::Reverse(s)))?;
        norm[victim] -= 1;
        sum -= 1;
    }
    Some(norm)
}

/// Writes the FSE table description (RFC 8878 §4.1.1) of `norm`.
pub fn write_table_description(norm: &[u32], accuracy_log: u32) -> Vec<u8> {
    let mut out = BitWriter::default();
    out.write((accuracy_log - 5) as u64, 4);
    let size = 1i64 << accuracy_log;
    let mut remaining = size + 1;
    let mut threshold = size;
    let mut bits = accuracy_log + 1;
    let mut symbol = 0usize;
    let mut previous_zero = false;
    while symbol < norm.len() && remaining > 1 {
        if previous_zero {
            let mut start = symbol;
            while symbol < norm.len() && norm[symbol] == 0 {
                symbol += 1;
            }
            while symbol >= start + 24 {
                start += 24;
                out.write(0xFFFF, 16);
            }
            while symbol >= start + 3 {
                start += 3;
                out.write(3, 2);
            }
            out.write((symbol - start) as u64, 2);
        }
        let count = norm[symbol] as i64;
        symbol += 1;
        let max = (2 * threshold - 1) - remaining;
        remaining -= count;
        let mut value = count + 1;
        if value >= threshold {
            value += max;
        }
        let width = if value < max { bits - 1 } else { bits };
        out.write(value as u64, width);
        previous_zero = value == 1;
        while remaining < threshold {
            bits -= 1;
            threshold >>= 1;
        }
    }
    out.finish_unmarked()
}

/// One state of the decoding table.
#[derive(Debug, Clone, Copy)]
struct DecodeState {
    symbol: usize,
    bits: u32,
    baseline: u32,
}

/// The decoding table zstd builds for `norm` (RFC 8878 §4.1.1, no
/// "less than one" counts).
fn decoding_table(norm: &[u32], accuracy_log: u32) -> Vec<DecodeState> {
    let size = 1usize << accuracy_log;
    let step = (size >> 1) + (size >> 3) + 3;
    let mut symbols = vec![0usize; size];
    let mut position = 0;
    for (symbol, &count) in norm.iter().enumerate() {
        for _ in 0..count {
            symbols[position] = symbol;
            position = (position + step) & (size - 1);
        }
    }
    let mut next: Vec<u32> = norm.to_vec();
    symbols
        .iter()
        .map(|&symbol| {
            let x = next[symbol];
            next[symbol] += 1;
            let bits = accuracy_log - (31 - x.leading_zeros());
            DecodeState {
                symbol,
                bits,
                baseline: (x << bits) - size as u32,
            }
        })
        .collect()
}

/// Encodes `symbols` (at least two) as zstd's two interleaved FSE states
/// sharing the table of `norm`: even indices on the first state, odd on the
/// second. Returns the bitstream with its end mark.
pub fn encode_two_states(symbols: &[u8], norm: &[u32], accuracy_log: u32) -> Vec<u8> {
    assert!(symbols.len() >= 2, "two FSE states need two symbols");
    let table = decoding_table(norm, accuracy_log);
    let size = table.len();
    // encode[symbol][next state] = the state that decodes `symbol` and then
    // moves to `next state`.
    let mut encode = vec![vec![0u32; size]; norm.len()];
    let mut first_state = vec![None; norm.len()];
    for (u, state) in table.iter().enumerate() {
        first_state[state.symbol].get_or_insert(u as u32);
        let base = state.baseline as usize;
        for slot in &mut encode[state.symbol][base..base + (1 << state.bits)] {
            *slot = u as u32;
        }
    }
    let n = symbols.len();
    let start = |symbol: u8| first_state[symbol as usize].expect("symbol has a normalized count");
    // states[0] decodes even indices, states[1] odd ones.
    let mut states = [0u32; 2];
    states[(n - 1) % 2] = start(symbols[n - 1]);
    states[(n - 2) % 2] = start(symbols[n - 2]);
    let mut out = BitWriter::with_capacity(n);
    for i in (0..n - 2).rev() {
        let next = states[i % 2];
        let u = encode[symbols[i] as usize][next as usize];
        let state = table[u as usize];
        out.write((next - state.baseline) as u64, state.bits);
        states[i % 2] = u;
    }
    out.write(states[1] as u64, accuracy_log);
    out.write(states[0] as u64, accuracy_log);
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_counts_sum_to_the_table_size() {
        let norm = normalize(&[100, 1, 0, 7, 3], 6).expect("two symbols");
        assert_eq!(norm.iter().sum::<u32>(), 64);
        assert!(norm[1] >= 1 && norm[2] == 0);
        assert_eq!(normalize(&[5, 0, 0], 6), None);
    }

    #[test]
    fn every_symbol_state_interval_tiles_the_table() {
        let norm = normalize(&[10, 3, 0, 1, 50], 6).expect("normalizes");
        let table = decoding_table(&norm, 6);
        for (symbol, &count) in norm.iter().enumerate() {
            let mut covered: Vec<u32> = table
                .iter()
                .filter(|s| s.symbol == symbol)
                .flat_map(|s| s.baseline..s.baseline + (1 << s.bits))
                .collect();
            covered.sort();
            let expected: Vec<u32> = if count == 0 {
                vec![]
            } else {
                (0..64).collect()
            };
            assert_eq!(covered, expected, "symbol {symbol}");
        }
    }
}
