//! zstd frames (RFC 8878 §3.1.1) made of raw, RLE and literal-only
//! compressed blocks, written from [`BlockPlan`]s.

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

fn write_block_header(out: &mut Vec<u8>, last: bool, block_type: u32, size: usize) {
    debug_assert!(size <= BLOCK_SIZE);
    let header = last as u32 | block_type << 1 | (size as u32) << 3;
    out.extend_from_slice(&header.to_le_bytes()[..3]);
}

/// Writes one block of `data` (≤ 128 KiB) as `plan` decided.
pub fn write_block(out: &mut Vec<u8>, data: &[u8], plan: &BlockPlan, last: bool) {
    match plan {
        BlockPlan::Raw => {
            write_block_header(out, last, 0, data.len());
            out.extend_from_slice(data);
        }
        BlockPlan::Rle(byte) => {
            write_block_header(out, last, 1, data.len());
            out.push(*byte);
        }
        BlockPlan::Huffman(huffman) => {
            let header_at = out.len();
            out.extend_from_slice(&[0; 3]);
            let literals = write_huffman_literals(out, data, huffman);
            let block = literals + 1;
            let header = last as u32 | 2 << 1 | (block as u32) << 3;
            out[header_at..header_at + 3].copy_from_slice(&header.to_le_bytes()[..3]);
            // Sequences section: zero sequences, the block is all literals.
            out.push(0);
        }
    }
}

/// Appends the literals section of a compressed block (header, tree
/// description, jump table, one or four Huffman streams); returns its size.
fn write_huffman_literals(out: &mut Vec<u8>, data: &[u8], plan: &HuffmanPlan) -> usize {
    let start = out.len();
    let header_size = literals_header_size(data.len());
    out.resize(start + header_size, 0);
    out.extend_from_slice(&plan.description);
    let four_streams = data.len() > SINGLE_STREAM_LIMIT;
    let streams = if four_streams {
        let segment = data.len().div_ceil(4);
        let (first, rest) = data.split_at(segment);
        let (second, rest) = rest.split_at(segment);
        let (third, fourth) = rest.split_at(segment);
        huffman::encode_four_streams([first, second, third, fourth], &plan.codes)
    } else {
        vec![huffman::encode_stream(data, &plan.codes)]
    };
    if four_streams {
        for stream in &streams[..3] {
            out.extend_from_slice(&(stream.len() as u16).to_le_bytes());
        }
    }
    for stream in &streams {
        out.extend_from_slice(stream);
    }
    let regenerated = data.len() as u64;
    let compressed = (out.len() - start - header_size) as u64;
    // Literals_Block_Type 2 (compressed); Size_Format 0: one stream, 10-bit
    // sizes; 1: four streams, 10-bit; 2: 14-bit; 3: 18-bit.
    let (size_format, size_bits) = match (four_streams, header_size) {
        (false, _) => (0u64, 10),
        (true, 3) => (1, 10),
        (true, 4) => (2, 14),
        (true, _) => (3, 18),
    };
    let header = 2 | size_format << 2 | regenerated << 4 | compressed << (4 + size_bits);
    out[start..start + header_size].copy_from_slice(&header.to_le_bytes()[..header_size]);
    out.len() - start
}
