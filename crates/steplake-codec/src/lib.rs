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
//! computes the statistics kept for every tensor. [`temporal`] codes a
//! snapshot against the previous one of the same tensor (the XOR of their
//! bits, through [`encode`]).
//!
//! Two executors run the same algorithm: this crate's CPU functions, and
//! [`gpu`] (cudarc; NVRTC kernels for the histograms, statistics and the
//! Huffman bit-packing, the decisions still made by [`plan_block`]), whose
//! frames are byte-identical. [`Codec`] is the one chosen at start
//! (`--gpu auto|on|off`); nothing needs CUDA to build or to run on the CPU.
//!
//! Data flows: tensor bytes (steplake-store) → planes → blocks → plans →
//! zstd frame → a Parquet page's compressed bytes.

pub mod bits;
pub mod executor;
pub mod frame;
pub mod fse;
pub mod gpu;
pub mod huffman;
pub mod plan;
pub mod stats;
pub mod temporal;

use std::ops::Range;

pub use executor::{Codec, GpuMode, DEFAULT_GPU_MEMORY};
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
    if n == 0 {
        return planes;
    }
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
    split_into::<W>(values, &mut outputs);
}

/// Transposes tiles of 8 values at a time into `outputs[b]` (plane `b`):
/// whole 8-byte writes per plane, and constant indices the compiler unrolls.
fn split_into<const W: usize>(values: &[u8], outputs: &mut [&mut [u8]]) {
    let tiles = values.chunks_exact(8 * W);
    let tail_start = tiles.len() * 8;
    for (t, tile) in tiles.enumerate() {
        for (b, output) in outputs.iter_mut().enumerate() {
            let mut bytes = [0u8; 8];
            for (k, byte) in bytes.iter_mut().enumerate() {
                *byte = tile[k * W + b];
            }
            output[t * 8..t * 8 + 8].copy_from_slice(&bytes);
        }
    }
    for (i, value) in values[tail_start * W..].chunks_exact(W).enumerate() {
        for (b, output) in outputs.iter_mut().enumerate() {
            output[tail_start + i] = value[b];
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
    let ranges = block_ranges(data.len(), plane_len);
    let histograms: Vec<[u32; 256]> = ranges.iter().map(|r| histogram(&data[r.clone()])).collect();
    write_frame(data, &ranges, &histograms)
}

/// Writes the frame of `data` cut into `ranges`, planning each block from its
/// histogram.
fn write_frame(data: &[u8], ranges: &[Range<usize>], histograms: &[[u32; 256]]) -> Vec<u8> {
    // Raw blocks bound the size: no reallocation while writing.
    let mut out = Vec::with_capacity(data.len() + 3 * ranges.len() + 32);
    frame::write_header(&mut out, data.len() as u64);
    if ranges.is_empty() {
        frame::write_block(&mut out, &[], &BlockPlan::Raw, true);
    }
    for (i, (range, histogram)) in ranges.iter().zip(histograms).enumerate() {
        let plan = plan_block(histogram);
        frame::write_block(&mut out, &data[range.clone()], &plan, i + 1 == ranges.len());
    }
    out
}

/// Splits little-endian values of `width` bytes into planes and compresses
/// them: the bytes of a Parquet BYTE_STREAM_SPLIT page, as one zstd frame.
/// The same bytes as `compress_planes(&split_planes(values, width), n)`, with
/// the histograms counted during the split.
pub fn encode(values: &[u8], width: usize) -> Vec<u8> {
    assert!(
        width > 0 && values.len().is_multiple_of(width),
        "whole values only"
    );
    let n = values.len() / width;
    let mut planes = vec![0u8; values.len()];
    let mut histograms = vec![[0u32; 256]; width * n.div_ceil(BLOCK_SIZE)];
    // Chunk c of BLOCK_SIZE values fills block c of every plane.
    let blocks_per_plane = n.div_ceil(BLOCK_SIZE);
    for (c, chunk) in values.chunks(BLOCK_SIZE * width).enumerate() {
        let first = c * BLOCK_SIZE;
        let count = chunk.len() / width;
        let mut outputs: Vec<&mut [u8]> = planes
            .chunks_exact_mut(n)
            .map(|plane| &mut plane[first..first + count])
            .collect();
        split_const_dyn(chunk, &mut outputs, width);
        for (b, output) in outputs.iter().enumerate() {
            histograms[b * blocks_per_plane + c] = histogram(output);
        }
    }
    let ranges = block_ranges(planes.len(), n);
    write_frame(&planes, &ranges, &histograms)
}

/// [`split_const`] for a width known at run time.
fn split_const_dyn(values: &[u8], outputs: &mut [&mut [u8]], width: usize) {
    match width {
        1 => outputs[0].copy_from_slice(values),
        2 => split_into::<2>(values, outputs),
        4 => split_into::<4>(values, outputs),
        8 => split_into::<8>(values, outputs),
        _ => {
            for (i, value) in values.chunks_exact(width).enumerate() {
                for (b, output) in outputs.iter_mut().enumerate() {
                    output[i] = value[b];
                }
            }
        }
    }
}
