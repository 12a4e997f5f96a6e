//! zstd frames (RFC 8878 §3.1.1) made of raw, RLE and literal-only
//! compressed blocks, written from [`BlockPlan`]s.

use std::ops::Range;

use crate::huffman;
use crate::plan::{literals_header_size, BlockPlan, HuffmanPlan, BLOCK_SIZE, SINGLE_STREAM_LIMIT};

const MAGIC: u32 = 0xFD2F_B528;
/// Window_Descriptor for a 128 KiB window (exponent 7, mantissa 0): enough
/// for 128 KiB blocks, and no block refers back (there are no matches).
const WINDOW_128_KIB: u8 = 7 << 3;

/// Writes a frame header announcing `content_size` bytes.
pub fn write_header(out: &mut Vec<u8>, content_size: u64) {
    out.extend_from_slice(&MAGIC.to_le_bytes());
    // Frame_Content_Size_flag: 1 → 2 bytes (minus 256), 2 → 4, 3 → 8.
    let (flag, field): (u8, Vec<u8>) = match content_size {
        256..=65791 => (1, ((content_size - 256) as u16).to_le_bytes().to_vec()),
        0..=0xFFFF_FFFF => (2, (content_size as u32).to_le_bytes().to_vec()),
        _ => (3, content_size.to_le_bytes().to_vec()),
    };
    out.push(flag << 6);
    out.push(WINDOW_128_KIB);
    out.extend_from_slice(&field);
}

/// Appends a 3-byte block header.
pub fn write_block_header(out: &mut Vec<u8>, last: bool, block_type: u32, size: usize) {
    debug_assert!(size <= BLOCK_SIZE);
    let header = last as u32 | block_type << 1 | (size as u32) << 3;
    out.extend_from_slice(&header.to_le_bytes()[..3]);
}

/// Block type of raw blocks.
pub const RAW_BLOCK: u32 = 0;
/// Block type of RLE blocks.
pub const RLE_BLOCK: u32 = 1;

/// Writes one block of `data` (≤ 128 KiB) as `plan` decided.
pub fn write_block(out: &mut Vec<u8>, data: &[u8], plan: &BlockPlan, last: bool) {
    match plan {
        BlockPlan::Raw => {
            write_block_header(out, last, RAW_BLOCK, data.len());
            out.extend_from_slice(data);
        }
        BlockPlan::Rle(byte) => {
            write_block_header(out, last, RLE_BLOCK, data.len());
            out.push(*byte);
        }
        BlockPlan::Huffman(huffman) => {
            let streams = if data.len() > SINGLE_STREAM_LIMIT {
                let [first, second, third, fourth] = segment_ranges(data.len()).map(|r| &data[r]);
                huffman::encode_four_streams([first, second, third, fourth], &huffman.codes)
            } else {
                vec![huffman::encode_stream(data, &huffman.codes)]
            };
            let sizes: Vec<usize> = streams.iter().map(Vec::len).collect();
            out.extend(huffman_block_prefix(last, data.len(), huffman, &sizes));
            for stream in &streams {
                out.extend_from_slice(stream);
            }
            out.push(SEQUENCES_NONE);
        }
    }
}

/// The Sequences section of a literal-only block: zero sequences. It ends
/// every Huffman block.
pub const SEQUENCES_NONE: u8 = 0;

/// The ranges of a block's Huffman streams: one stream up to
/// [`SINGLE_STREAM_LIMIT`] bytes, else zstd's split in four (three of
/// `ceil(len / 4)` bytes, then the rest). The GPU path cuts streams the same
/// way.
pub fn stream_ranges(len: usize) -> Vec<Range<usize>> {
    if len > SINGLE_STREAM_LIMIT {
        segment_ranges(len).to_vec()
    } else {
        std::iter::once(0..len).collect()
    }
}

fn segment_ranges(len: usize) -> [Range<usize>; 4] {
    let segment = len.div_ceil(4);
    [
        0..segment,
        segment..2 * segment,
        2 * segment..3 * segment,
        3 * segment..len,
    ]
}

/// Everything of a Huffman block that precedes its streams, given the streams'
/// sizes: block header, literals header, tree description and (four streams)
/// the jump table. The streams and [`SEQUENCES_NONE`] follow it.
pub fn huffman_block_prefix(
    last: bool,
    regenerated: usize,
    plan: &HuffmanPlan,
    stream_sizes: &[usize],
) -> Vec<u8> {
    let four_streams = stream_sizes.len() == 4;
    let header_size = literals_header_size(regenerated);
    let jump_table = if four_streams { 6 } else { 0 };
    let compressed = plan.description.len() + jump_table + stream_sizes.iter().sum::<usize>();
    let block_size = header_size + compressed + 1;
    let mut out = Vec::with_capacity(3 + header_size + plan.description.len() + jump_table);
    write_block_header(&mut out, last, 2, block_size);
    // Literals_Block_Type 2 (compressed); Size_Format 0: one stream, 10-bit
    // sizes; 1: four streams, 10-bit; 2: 14-bit; 3: 18-bit.
    let (size_format, size_bits) = match (four_streams, header_size) {
        (false, _) => (0u64, 10),
        (true, 3) => (1, 10),
        (true, 4) => (2, 14),
        (true, _) => (3, 18),
    };
    let header =
        2 | size_format << 2 | (regenerated as u64) << 4 | (compressed as u64) << (4 + size_bits);
    out.extend_from_slice(&header.to_le_bytes()[..header_size]);
    out.extend_from_slice(&plan.description);
    if four_streams {
        for size in &stream_sizes[..3] {
            out.extend_from_slice(&(*size as u16).to_le_bytes());
        }
    }
    out
}
