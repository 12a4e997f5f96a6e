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
            let literals = huffman_literals(data, huffman);
            write_block_header(out, last, 2, literals.len() + 1);
            out.extend_from_slice(&literals);
            // Sequences section: zero sequences, the block is all literals.
            out.push(0);
        }
    }
}

/// The literals section of a compressed block: header, tree description,
/// jump table and one or four Huffman streams.
fn huffman_literals(data: &[u8], plan: &HuffmanPlan) -> Vec<u8> {
    let mut payload = plan.description.clone();
    let four_streams = data.len() > SINGLE_STREAM_LIMIT;
    if four_streams {
        let segment = data.len().div_ceil(4);
        let streams: Vec<Vec<u8>> = data
            .chunks(segment)
            .map(|chunk| huffman::encode_stream(chunk, &plan.codes))
            .collect();
        for stream in &streams[..3] {
            payload.extend_from_slice(&(stream.len() as u16).to_le_bytes());
        }
        for stream in &streams {
            payload.extend_from_slice(stream);
        }
    } else {
        payload.extend(huffman::encode_stream(data, &plan.codes));
    }
    let (regenerated, compressed) = (data.len() as u64, payload.len() as u64);
    let header_size = literals_header_size(data.len());
    // Literals_Block_Type 2 (compressed); Size_Format 0: one stream, 10-bit
    // sizes; 1: four streams, 10-bit; 2: 14-bit; 3: 18-bit.
    let (size_format, size_bits) = match (four_streams, header_size) {
        (false, _) => (0u64, 10),
        (true, 3) => (1, 10),
        (true, 4) => (2, 14),
        (true, _) => (3, 18),
    };
    let header = 2 | size_format << 2 | regenerated << 4 | compressed << (4 + size_bits);
    let mut out = header.to_le_bytes()[..header_size].to_vec();
    out.extend(payload);
    out
}
