//! steplake-codec: how tensor values are compressed, on the CPU (here) and
//! on the GPU (same decisions, same bytes).
//!
//! One algorithm, standard output:
//! 1. [`split_planes`]: the values' bytes are split into byte planes (byte 0
//!    of every value, then byte 1, …): Parquet's BYTE_STREAM_SPLIT layout.
//!    Exponent bytes of floats land together and compress well; bf16 widened
//!    to f32 gives two all-zero planes.
//! 2. [`block_ranges`]: each plane is cut into blocks of at most 128 KiB.
//! 3. [`histogram`]: an exact 256-bin byte histogram per block.
//! 4. [`plan::plan_block`]: one deterministic function decides each block from
//!    its histogram alone: RLE, raw, or Huffman literals with code lengths
//!    ≤ 11 and an FSE-compressed weight header.
//! 5. [`frame`]: the blocks are written as a standard zstd frame of
//!    literal-only blocks, which any libzstd decodes.
//!
//! [`compress_planes`] runs steps 2–5; [`encode`] runs 1–5. [`stats`]
//! computes the statistics kept for every tensor.
//!
//! Data flows: tensor bytes (steplake-store) → planes → blocks → plans →
//! zstd frame → a Parquet page's compressed bytes.

pub mod bits;
pub mod frame;
pub mod fse;
pub mod huffman;
pub mod plan;
pub mod stats;

use std::ops::Range;

pub use plan::{plan_block, BlockPlan, BLOCK_SIZE};

/// Splits little-endian values of `width` bytes into `width` byte planes,
/// concatenated. `values.len()` must be a multiple of `width`.
pub fn split_planes(values: &[u8], width: usize) -> Vec<u8> {
    assert!(
        width > 0 && values.len().is_multiple_of(width),
        "whole values only"
    );
    let n = values.len() / width;
    let mut planes = vec![0u8; values.len()];
    match width {
        1 => planes.copy_from_slice(values),
        2 => split_const::<2>(values, &mut planes, n),
        4 => split_const::<4>(values, &mut planes, n),
        8 => split_const::<8>(values, &mut planes, n),
        _ => {
            for (i, value) in values.chunks_exact(width).enumerate() {
                for (b, &byte) in value.iter().enumerate() {
                    planes[b * n + i] = byte;
                }
            }
        }
    }
    planes
}

fn split_const<const W: usize>(values: &[u8], planes: &mut [u8], n: usize) {
    let mut outputs: Vec<&mut [u8]> = planes.chunks_exact_mut(n).collect();
    for (i, value) in values.chunks_exact(W).enumerate() {
        for b in 0..W {
            outputs[b][i] = value[b];
        }
    }
}

/// The inverse of [`split_planes`].
pub fn join_planes(planes: &[u8], width: usize) -> Vec<u8> {
    assert!(
        width > 0 && planes.len().is_multiple_of(width),
        "whole values only"
    );
    let n = planes.len() / width;
    let mut values = vec![0u8; planes.len()];
    for (b, plane) in planes.chunks_exact(n.max(1)).enumerate().take(width) {
        for (i, &byte) in plane.iter().enumerate() {
            values[i * width + b] = byte;
        }
    }
    values
}

/// The blocks of `len` bytes made of planes of `plane_len` bytes: each plane
/// cut into pieces of at most [`BLOCK_SIZE`], so no block mixes two planes.
/// The GPU path uses the same ranges.
pub fn block_ranges(len: usize, plane_len: usize) -> Vec<Range<usize>> {
    let plane_len = if plane_len == 0 { len } else { plane_len };
    let mut ranges = Vec::with_capacity(len / BLOCK_SIZE + 1);
    let mut plane_start = 0;
    while plane_start < len {
        let plane_end = (plane_start + plane_len).min(len);
        let mut start = plane_start;
        while start < plane_end {
            let end = (start + BLOCK_SIZE).min(plane_end);
            ranges.push(start..end);
            start = end;
        }
        plane_start = plane_end;
    }
    ranges
}

/// The exact byte histogram of `block`.
pub fn histogram(block: &[u8]) -> [u32; 256] {
    // Four tables break the dependency between neighbouring equal bytes.
    let mut tables = [[0u32; 256]; 4];
    let mut quads = block.chunks_exact(4);
    for quad in &mut quads {
        tables[0][quad[0] as usize] += 1;
        tables[1][quad[1] as usize] += 1;
        tables[2][quad[2] as usize] += 1;
        tables[3][quad[3] as usize] += 1;
    }
    for &byte in quads.remainder() {
        tables[0][byte as usize] += 1;
    }
    let mut total = [0u32; 256];
    for (s, slot) in total.iter_mut().enumerate() {
        *slot = tables[0][s] + tables[1][s] + tables[2][s] + tables[3][s];
    }
    total
}

/// Compresses `data`, made of planes of `plane_len` bytes (0: one plane), into
/// one zstd frame whose content is `data`.
pub fn compress_planes(data: &[u8], plane_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    frame::write_header(&mut out, data.len() as u64);
    let ranges = block_ranges(data.len(), plane_len);
    if ranges.is_empty() {
        frame::write_block(&mut out, &[], &BlockPlan::Raw, true);
    }
    for (i, range) in ranges.iter().enumerate() {
        let block = &data[range.clone()];
        let plan = plan_block(&histogram(block));
        frame::write_block(&mut out, block, &plan, i + 1 == ranges.len());
    }
    out
}

/// Splits little-endian values of `width` bytes into planes and compresses
/// them: the bytes of a Parquet BYTE_STREAM_SPLIT page, as one zstd frame.
pub fn encode(values: &[u8], width: usize) -> Vec<u8> {
    let planes = split_planes(values, width);
    compress_planes(&planes, values.len() / width)
}
