//! The one function that decides how a block is coded.
//!
//! [`plan_block`] sees only a block's exact byte histogram, never the bytes or
//! how the histogram was computed, so the CPU path and the GPU path (which
//! counts on the device) reach the same decision and write the same bytes.

use crate::huffman::{self, Codes};

/// Largest block: zstd's maximum block size.
pub const BLOCK_SIZE: usize = 128 * 1024;

/// Literal counts up to this use one Huffman stream, above it four.
pub const SINGLE_STREAM_LIMIT: usize = 1023;

/// How one block is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockPlan {
    /// Stored as is.
    Raw,
    /// Every byte is this one.
    Rle(u8),
    /// Huffman-coded literals.
    Huffman(Box<HuffmanPlan>),
}

/// Codes and tree description of a Huffman block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HuffmanPlan {
    /// The code of each byte.
    pub codes: Codes,
    /// The Huffman tree description written before the streams.
    pub description: Vec<u8>,
}

/// Bytes a compressed literals header takes for `literals` bytes in
/// `streams` streams (the compressed size is bounded by the regenerated one).
pub fn literals_header_size(literals: usize) -> usize {
    match literals {
        0..=SINGLE_STREAM_LIMIT => 3,
        1024..=16383 => 4,
        _ => 5,
    }
}

/// Decides how to write a block with this byte `histogram`.
///
/// RLE when one byte value makes up the block; Huffman when its exact coded
/// size (tree description, jump table, streams, headers) is smaller than the
/// raw bytes; raw otherwise. Deterministic.
pub fn plan_block(histogram: &[u32; 256]) -> BlockPlan {
    let len: usize = histogram.iter().map(|&c| c as usize).sum();
    let mut present = (0..256).filter(|&s| histogram[s] > 0);
    let (Some(first), second) = (present.next(), present.next()) else {
        return BlockPlan::Raw;
    };
    if second.is_none() {
        return BlockPlan::Rle(first as u8);
    }
    let lengths = huffman::code_lengths(histogram);
    let codes = Codes::canonical(&lengths);
    let Some(description) = huffman::tree_description(&lengths, codes.max_length) else {
        return BlockPlan::Raw;
    };
    let streams = if len <= SINGLE_STREAM_LIMIT { 1 } else { 4 };
    // Each stream rounds up to a byte after its end mark: at most `streams`
    // bytes above bits / 8.
    let stream_bytes = codes.cost_in_bits(histogram) as usize / 8 + streams;
    let jump_table = if streams == 4 { 6 } else { 0 };
    let coded = literals_header_size(len) + description.len() + jump_table + stream_bytes + 1;
    if coded < len {
        BlockPlan::Huffman(Box::new(HuffmanPlan { codes, description }))
    } else {
        BlockPlan::Raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_and_empty_blocks() {
        let mut histogram = [0u32; 256];
        assert_eq!(plan_block(&histogram), BlockPlan::Raw);
        histogram[7] = 1000;
        assert_eq!(plan_block(&histogram), BlockPlan::Rle(7));
    }

    #[test]
    fn uniform_bytes_stay_raw_and_skewed_ones_are_coded() {
        let uniform = [512u32; 256];
        assert_eq!(plan_block(&uniform), BlockPlan::Raw);
        let mut skewed = [0u32; 256];
        skewed[0] = 100_000;
        skewed[1] = 20_000;
        skewed[200] = 11_072;
        assert!(matches!(plan_block(&skewed), BlockPlan::Huffman(_)));
    }
}
