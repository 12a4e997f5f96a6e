//! The GPU executor of the codec: the same frames as the CPU path, byte for
//! byte, with the data-parallel work on the device.
//!
//! A batch of tensors (many small ones share every launch; a large one
//! spreads over the grid) goes through:
//! 1. one upload of the values, each tensor 16-byte aligned;
//! 2. `steplake_split` (values → byte planes, when not already split) and
//!    `steplake_histograms`: one exact histogram per Huffman stream segment
//!    of every 128 KiB block ([`crate::frame::stream_ranges`]);
//! 3. on the host, per block: the segment histograms summed, the shared
//!    [`plan_block`] decision, and the frame layout: every header's bytes and
//!    offset, every stream's offset (its size follows from its histogram and
//!    code lengths), every raw block's offset;
//! 4. `steplake_pack` writes each Huffman stream at its final offset and
//!    `steplake_copy` each raw block, into one zeroed output buffer;
//! 5. one download (through pinned, cached host memory), and the host writes
//!    the headers into the gaps.
//!
//! Statistics take two more kernels (`steplake_moments`, then
//! `steplake_second_pass` with each tensor's mean and range) and end in the
//! CPU path's [`stats_from_passes`]: histograms and quantiles are identical,
//! sums differ from the CPU's only by summation order.
//!
//! [`Pipeline`] is generic over [`Device`]; [`CudaDevice`] is the CUDA one.
//! [`GpuCodec`] is what the server holds: a pipeline behind a lock, with a
//! device-memory budget.

pub mod device;

use std::ops::Range;
use std::sync::Mutex;

use steplake_core::DType;
use thiserror::Error;

pub use device::{
    compile_kernels, driver_library_present, nvrtc_library_present, CudaDevice, Device, Kernel,
    KERNEL_SOURCE, THREADS,
};

use crate::frame::{self, SEQUENCES_NONE};
use crate::plan::{plan_block, BlockPlan};
use crate::stats::{histogram_scale, stats_from_passes, Moments, TensorStats, HISTOGRAM_BINS};
use crate::{block_ranges, huffman};

/// Why the GPU path cannot run.
#[derive(Debug, Error)]
pub enum GpuError {
    /// No CUDA driver library on this machine.
    #[error("the CUDA driver library (libcuda) was not found; install the NVIDIA driver")]
    NoDriver,
    /// No NVRTC library to compile the kernels.
    #[error(
        "the NVRTC library (libnvrtc) was not found; install the CUDA runtime compiler (NVRTC 13)"
    )]
    NoNvrtc,
    /// The driver is there but reports no GPU.
    #[error("the CUDA driver found no GPU")]
    NoDevice,
    /// A CUDA call failed.
    #[error("CUDA error: {0}")]
    Driver(String),
    /// NVRTC could not compile the kernels.
    #[error("the GPU kernels did not compile: {0}")]
    Compile(String),
    /// The batch needs more device memory than the budget allows.
    #[error(
        "the batch needs {needed} bytes of GPU memory, over the {budget}-byte device memory budget"
    )]
    OverBudget {
        /// Bytes the batch needs.
        needed: usize,
        /// The budget.
        budget: usize,
    },
}

/// Values per `steplake_split` job.
const SPLIT_JOB_VALUES: usize = 1 << 16;
/// Elements per statistics job.
const STATS_JOB_ELEMENTS: usize = 1 << 16;
/// Alignment of each tensor in the uploaded batch.
const ALIGN: usize = 16;

/// One tensor of a batch, as placed in device memory.
#[derive(Debug, Clone, Copy)]
struct Region {
    /// Byte offset in the batch buffer.
    offset: usize,
    /// Bytes.
    len: usize,
    /// Bytes per plane (0: one plane).
    plane_len: usize,
}

/// Concatenates `items`, each starting at a multiple of 16 bytes: the layout
/// of a batch in device memory (and of buffers for
/// [`Pipeline::encode_resident`]). Returns the bytes and each item's offset.
pub fn stage<'a>(items: impl Iterator<Item = &'a [u8]>) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = Vec::new();
    let mut offsets = Vec::new();
    for item in items {
        bytes.resize(bytes.len().next_multiple_of(ALIGN), 0);
        offsets.push(bytes.len());
        bytes.extend_from_slice(item);
    }
    (bytes, offsets)
}

fn words(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn read_words(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect()
}

/// Bytes of device memory a frame of `len` input bytes may take: every block
/// raw, plus headers.
fn frame_bound(len: usize) -> usize {
    len + 3 * (len / crate::BLOCK_SIZE + 1) + 32
}

/// Device memory a batch of `len` staged bytes needs to be framed: `copies`
/// copies of the input (values, and planes when split on the device), the
/// output, and the segment histograms (1 KiB per 32 KiB segment, rounded up
/// generously to 1 KiB per 8 KiB).
fn frames_budget(len: usize, copies: usize) -> usize {
    copies * len + frame_bound(len) + 1024 * len / 8192
}

/// Where the host writes what the kernels do not: headers and RLE bytes.
struct Piece {
    offset: usize,
    bytes: Vec<u8>,
}

/// The frames' layout in the output buffer and the kernels' work.
#[derive(Default)]
struct Layout {
    /// (start, len) of each item's frame.
    frames: Vec<(usize, usize)>,
    pieces: Vec<Piece>,
    /// Pack jobs: segment address, length, output offset, table index.
    pack: Vec<u64>,
    /// Copy jobs: source address, length, output offset.
    copy: Vec<u64>,
    /// Code tables, 256 entries `code | length << 16` each.
    tables: Vec<u32>,
    len: usize,
}

impl Layout {
    fn piece(&mut self, bytes: Vec<u8>) {
        let offset = self.len;
        self.len += bytes.len();
        self.pieces.push(Piece { offset, bytes });
    }
}

/// Frames packed in device memory, waiting for
/// [`Pipeline::download_frames`].
pub struct PackedFrames<D: Device> {
    output: D::Buffer,
    layout: Layout,
}

impl<D: Device> PackedFrames<D> {
    /// Bytes of all the frames together.
    pub fn len(&self) -> usize {
        self.layout.len
    }

    /// Whether there are no bytes (never: a frame has a header).
    pub fn is_empty(&self) -> bool {
        self.layout.len == 0
    }
}

/// The codec pipeline on a [`Device`].
pub struct Pipeline<D: Device> {
    device: D,
    memory_budget: usize,
}

impl<D: Device> Pipeline<D> {
    /// A pipeline that keeps each batch within `memory_budget` bytes of
    /// device memory.
    pub fn new(device: D, memory_budget: usize) -> Self {
        Pipeline {
            device,
            memory_budget,
        }
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    fn check_budget(&self, needed: usize) -> Result<(), GpuError> {
        if needed > self.memory_budget {
            return Err(GpuError::OverBudget {
                needed,
                budget: self.memory_budget,
            });
        }
        Ok(())
    }

    /// [`crate::compress_planes`] of each `(data, plane_len)`, in one batch.
    pub fn compress_planes(&self, items: &[(&[u8], usize)]) -> Result<Vec<Vec<u8>>, GpuError> {
        let (staged, offsets) = stage(items.iter().map(|(data, _)| *data));
        self.check_budget(frames_budget(staged.len(), 1))?;
        let data = self.device.upload(&staged)?;
        let regions: Vec<Region> = items
            .iter()
            .zip(&offsets)
            .map(|((bytes, plane_len), &offset)| Region {
                offset,
                len: bytes.len(),
                plane_len: *plane_len,
            })
            .collect();
        self.frames(&data, &regions)
    }

    /// [`crate::encode`] of each `(values, width)`, in one batch: the values
    /// are split into planes on the device.
    pub fn encode(&self, items: &[(&[u8], usize)]) -> Result<Vec<Vec<u8>>, GpuError> {
        let (staged, offsets) = stage(items.iter().map(|(values, _)| *values));
        self.check_budget(frames_budget(staged.len(), 2))?;
        let values = self.device.upload(&staged)?;
        let (planes, regions) = self.split(&values, items, &offsets)?;
        self.frames(&planes, &regions)
    }

    /// Frames and statistics of each `(values, dtype)`, from one upload.
    pub fn encode_tensors(
        &self,
        items: &[(&[u8], DType)],
    ) -> Result<Vec<(Vec<u8>, TensorStats)>, GpuError> {
        let (staged, offsets) = stage(items.iter().map(|(values, _)| *values));
        self.check_budget(frames_budget(staged.len(), 2))?;
        let values = self.device.upload(&staged)?;
        let stats = self.stats_on_device(&values, items, &offsets)?;
        let widths: Vec<(&[u8], usize)> = items.iter().map(|(v, d)| (*v, d.size())).collect();
        let (planes, regions) = self.split(&values, &widths, &offsets)?;
        let frames = self.frames(&planes, &regions)?;
        Ok(frames.into_iter().zip(stats).collect())
    }

    /// [`crate::stats::tensor_stats`] of each `(values, dtype)`, in one batch.
    pub fn tensor_stats(&self, items: &[(&[u8], DType)]) -> Result<Vec<TensorStats>, GpuError> {
        let (staged, offsets) = stage(items.iter().map(|(values, _)| *values));
        self.check_budget(staged.len() + 64 * items.len() * 8 + staged.len() / 1024)?;
        let values = self.device.upload(&staged)?;
        self.stats_on_device(&values, items, &offsets)
    }

    /// Splits each item's values into planes, at the same offsets in a new
    /// buffer.
    fn split(
        &self,
        values: &D::Buffer,
        items: &[(&[u8], usize)],
        offsets: &[usize],
    ) -> Result<(D::Buffer, Vec<Region>), GpuError> {
        let placed: Vec<(usize, usize, usize)> = items
            .iter()
            .zip(offsets)
            .map(|((bytes, width), &offset)| (offset, bytes.len(), *width))
            .collect();
        self.split_regions(values, &placed)
    }

    /// Splits `(offset, len, width)` items of `values` into planes, at the
    /// same offsets in a new buffer.
    fn split_regions(
        &self,
        values: &D::Buffer,
        items: &[(usize, usize, usize)],
    ) -> Result<(D::Buffer, Vec<Region>), GpuError> {
        let total = items.iter().map(|&(o, len, _)| o + len).max().unwrap_or(0);
        let planes = self.device.zeroed(total)?;
        let (from, to) = (self.device.address(values), self.device.address(&planes));
        let mut jobs = Vec::new();
        let mut regions = Vec::with_capacity(items.len());
        for &(offset, len, width) in items {
            if width == 0 || !len.is_multiple_of(width) || !offset.is_multiple_of(ALIGN) {
                return Err(GpuError::Driver(format!(
                    "tensor at offset {offset} of {len} bytes is not whole {width}-byte values at a {ALIGN}-byte boundary"
                )));
            }
            let n = len / width;
            for first in (0..n).step_by(SPLIT_JOB_VALUES) {
                let count = SPLIT_JOB_VALUES.min(n - first);
                jobs.extend([
                    from + offset as u64,
                    to + offset as u64,
                    n as u64,
                    first as u64,
                    count as u64,
                    width as u64,
                ]);
            }
            regions.push(Region {
                offset,
                len,
                plane_len: n,
            });
        }
        let job_buffer = self.device.upload(&words(&jobs))?;
        self.device.launch(
            Kernel::Split,
            grid(jobs.len() / 6)?,
            &[self.device.address(&job_buffer)],
        )?;
        // Dropping the job table here is safe: device buffers are freed in
        // stream order, after the kernel that reads them.
        Ok((planes, regions))
    }

    /// The zstd frames of `regions` of `data` (device memory).
    fn frames(&self, data: &D::Buffer, regions: &[Region]) -> Result<Vec<Vec<u8>>, GpuError> {
        let packed = self.pack(data, regions)?;
        self.download_frames(packed)
    }

    /// Encodes tensors already in device memory: `(offset, len, width)` of
    /// each in `values` (offsets multiples of 16). The frames stay on the
    /// device until [`download_frames`](Pipeline::download_frames).
    pub fn encode_resident(
        &self,
        values: &D::Buffer,
        items: &[(usize, usize, usize)],
    ) -> Result<PackedFrames<D>, GpuError> {
        let (planes, regions) = self.split_regions(values, items)?;
        self.pack(&planes, &regions)
    }

    /// Copies packed frames to the host and writes their headers.
    pub fn download_frames(&self, packed: PackedFrames<D>) -> Result<Vec<Vec<u8>>, GpuError> {
        let PackedFrames { output, layout } = packed;
        let mut bytes = vec![0u8; layout.len];
        self.device.download(&output, &mut bytes)?;
        for piece in &layout.pieces {
            bytes[piece.offset..piece.offset + piece.bytes.len()].copy_from_slice(&piece.bytes);
        }
        Ok(layout
            .frames
            .iter()
            .map(|&(start, len)| bytes[start..start + len].to_vec())
            .collect())
    }

    /// Plans the frames of `regions` of `data` and packs them on the device.
    fn pack(&self, data: &D::Buffer, regions: &[Region]) -> Result<PackedFrames<D>, GpuError> {
        let base = self.device.address(data);
        let blocks = Blocks::of(regions, base);
        let segment_histograms = self.segment_histograms(&blocks.segments)?;
        let plans = plan_all(&blocks.histograms(&segment_histograms))?;
        let layout = lay_out(regions, &blocks, &segment_histograms, plans, base)?;

        // Whole 32-bit words for the packing kernel, one spare.
        let output = self.device.zeroed(layout.len.next_multiple_of(4) + 4)?;
        let out_address = self.device.address(&output);
        let pack_jobs = self.device.upload(&words(&layout.pack))?;
        let tables: Vec<u8> = layout.tables.iter().flat_map(|e| e.to_le_bytes()).collect();
        let tables = self.device.upload(&tables)?;
        self.device.launch(
            Kernel::Pack,
            grid(layout.pack.len() / 4)?,
            &[
                self.device.address(&pack_jobs),
                self.device.address(&tables),
                out_address,
            ],
        )?;
        let copy_jobs = self.device.upload(&words(&layout.copy))?;
        self.device.launch(
            Kernel::Copy,
            grid(layout.copy.len() / 3)?,
            &[self.device.address(&copy_jobs), out_address],
        )?;
        Ok(PackedFrames { output, layout })
    }

    /// One 256-bin histogram per segment (`address, len` pairs), counted on
    /// the device: 256 counts per segment, in order.
    fn segment_histograms(&self, segments: &[u64]) -> Result<Vec<u32>, GpuError> {
        let count = segments.len() / 2;
        if count == 0 {
            return Ok(Vec::new());
        }
        let jobs = self.device.upload(&words(segments))?;
        let counts = self.device.zeroed(count * 1024)?;
        self.device.launch(
            Kernel::Histograms,
            grid(count)?,
            &[self.device.address(&jobs), self.device.address(&counts)],
        )?;
        let mut bytes = vec![0u8; count * 1024];
        self.device.download(&counts, &mut bytes)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Statistics of each item of `values` (device memory at `offsets`).
    fn stats_on_device(
        &self,
        values: &D::Buffer,
        items: &[(&[u8], DType)],
        offsets: &[usize],
    ) -> Result<Vec<TensorStats>, GpuError> {
        let base = self.device.address(values);
        // Jobs: (item, first, count) chunks of every tensor.
        let mut chunks: Vec<(usize, usize, usize)> = Vec::new();
        for (item, (bytes, dtype)) in items.iter().enumerate() {
            let n = bytes.len() / dtype.size();
            for first in (0..n).step_by(STATS_JOB_ELEMENTS) {
                chunks.push((item, first, STATS_JOB_ELEMENTS.min(n - first)));
            }
        }
        let job = |&(item, first, count): &(usize, usize, usize)| {
            [
                base + offsets[item] as u64,
                first as u64,
                count as u64,
                dtype_code(items[item].1),
            ]
        };
        let jobs: Vec<u64> = chunks.iter().flat_map(job).collect();
        let mut moments = vec![Moments::default(); items.len()];
        if !chunks.is_empty() {
            let job_buffer = self.device.upload(&words(&jobs))?;
            let out = self.device.zeroed(chunks.len() * 64)?;
            self.device.launch(
                Kernel::Moments,
                grid(chunks.len())?,
                &[self.device.address(&job_buffer), self.device.address(&out)],
            )?;
            let mut bytes = vec![0u8; chunks.len() * 64];
            self.device.download(&out, &mut bytes)?;
            for (chunk, w) in chunks.iter().zip(read_words(&bytes).chunks_exact(8)) {
                moments[chunk.0].merge(&Moments {
                    count: w[0],
                    nan: w[1],
                    inf: w[2],
                    zeros: w[3],
                    sum: f64::from_bits(w[4]),
                    sum_squares: f64::from_bits(w[5]),
                    min: f64::from_bits(w[6]),
                    max: f64::from_bits(w[7]),
                });
            }
        }

        // Second pass over the tensors that have a finite element.
        let has_finite = |m: &Moments| m.count > m.nan + m.inf;
        let mut parameters = Vec::with_capacity(3 * items.len());
        for m in &moments {
            let mean = if has_finite(m) {
                m.sum / (m.count - m.nan - m.inf) as f64
            } else {
                0.0
            };
            parameters.extend([
                mean.to_bits(),
                m.min.to_bits(),
                histogram_scale(m.min, m.max).to_bits(),
            ]);
        }
        let second: Vec<&(usize, usize, usize)> = chunks
            .iter()
            .filter(|c| has_finite(&moments[c.0]))
            .collect();
        let mut deviations = vec![0.0f64; items.len()];
        let mut histograms = vec![0u64; items.len() * HISTOGRAM_BINS];
        if !second.is_empty() {
            let jobs: Vec<u64> = second
                .iter()
                .flat_map(|c| {
                    let [a, b, n, d] = job(c);
                    [a, b, n, d, c.0 as u64]
                })
                .collect();
            let job_buffer = self.device.upload(&words(&jobs))?;
            let parameter_buffer = self.device.upload(&words(&parameters))?;
            let deviation_buffer = self.device.zeroed(second.len() * 8)?;
            let histogram_buffer = self.device.zeroed(histograms.len() * 8)?;
            self.device.launch(
                Kernel::SecondPass,
                grid(second.len())?,
                &[
                    self.device.address(&job_buffer),
                    self.device.address(&parameter_buffer),
                    self.device.address(&deviation_buffer),
                    self.device.address(&histogram_buffer),
                ],
            )?;
            let mut bytes = vec![0u8; second.len() * 8];
            self.device.download(&deviation_buffer, &mut bytes)?;
            for (chunk, d) in second.iter().zip(read_words(&bytes)) {
                deviations[chunk.0] += f64::from_bits(d);
            }
            let mut bytes = vec![0u8; histograms.len() * 8];
            self.device.download(&histogram_buffer, &mut bytes)?;
            histograms = read_words(&bytes);
        }
        Ok(moments
            .iter()
            .enumerate()
            .map(|(item, m)| {
                stats_from_passes(m, |_, _, _| {
                    (
                        deviations[item],
                        histograms[item * HISTOGRAM_BINS..(item + 1) * HISTOGRAM_BINS].to_vec(),
                    )
                })
            })
            .collect())
    }
}

/// The codec blocks of a batch and their Huffman stream segments.
struct Blocks {
    /// Per region, its blocks: (index of the first segment, byte range in
    /// the region).
    per_region: Vec<Vec<(usize, Range<usize>)>>,
    /// Segments as `device address, length` pairs, in frame order.
    segments: Vec<u64>,
}

impl Blocks {
    /// The blocks of `regions` of a buffer at device address `base`.
    fn of(regions: &[Region], base: u64) -> Blocks {
        let mut segments = Vec::new();
        let per_region = regions
            .iter()
            .map(|region| {
                block_ranges(region.len, region.plane_len)
                    .into_iter()
                    .map(|range| {
                        let first_segment = segments.len() / 2;
                        for stream in frame::stream_ranges(range.len()) {
                            segments
                                .push(base + (region.offset + range.start + stream.start) as u64);
                            segments.push(stream.len() as u64);
                        }
                        (first_segment, range)
                    })
                    .collect()
            })
            .collect();
        Blocks {
            per_region,
            segments,
        }
    }

    /// Each block's histogram: the sum of its segments'.
    fn histograms(&self, segment_histograms: &[u32]) -> Vec<[u32; 256]> {
        self.per_region
            .iter()
            .flatten()
            .map(|(first_segment, range)| {
                let mut histogram = [0u32; 256];
                for s in 0..frame::stream_ranges(range.len()).len() {
                    let counts = segment_histogram(segment_histograms, first_segment + s);
                    for (total, count) in histogram.iter_mut().zip(counts) {
                        *total += count;
                    }
                }
                histogram
            })
            .collect()
    }
}

/// The 256 counts of segment `s`.
fn segment_histogram(histograms: &[u32], s: usize) -> &[u32; 256] {
    histograms[s * 256..s * 256 + 256]
        .try_into()
        .unwrap_or(&[0; 256])
}

/// The frames' layout: where every header, stream and raw block goes in the
/// output, and the packing and copy jobs, from each block's `plans` (in
/// block order).
fn lay_out(
    regions: &[Region],
    blocks: &Blocks,
    segment_histograms: &[u32],
    plans: Vec<BlockPlan>,
    base: u64,
) -> Result<Layout, GpuError> {
    let mut plans = plans.into_iter();
    let mut layout = Layout::default();
    for (region, region_blocks) in regions.iter().zip(&blocks.per_region) {
        let start = layout.len;
        let mut header = Vec::new();
        frame::write_header(&mut header, region.len as u64);
        layout.piece(header);
        if region_blocks.is_empty() {
            let mut empty = Vec::new();
            frame::write_block(&mut empty, &[], &BlockPlan::Raw, true);
            layout.piece(empty);
        }
        for (i, (first_segment, range)) in region_blocks.iter().enumerate() {
            let last = i + 1 == region_blocks.len();
            let address = base + (region.offset + range.start) as u64;
            let plan = plans
                .next()
                .ok_or_else(|| GpuError::Driver("a block has no plan".into()))?;
            match plan {
                BlockPlan::Raw => {
                    let mut block_header = Vec::new();
                    frame::write_block_header(
                        &mut block_header,
                        last,
                        frame::RAW_BLOCK,
                        range.len(),
                    );
                    layout.piece(block_header);
                    layout
                        .copy
                        .extend([address, range.len() as u64, layout.len as u64]);
                    layout.len += range.len();
                }
                BlockPlan::Rle(byte) => {
                    let mut block = Vec::new();
                    frame::write_block_header(&mut block, last, frame::RLE_BLOCK, range.len());
                    block.push(byte);
                    layout.piece(block);
                }
                BlockPlan::Huffman(plan) => {
                    let streams = frame::stream_ranges(range.len());
                    let sizes: Vec<usize> = (0..streams.len())
                        .map(|s| {
                            let counts = segment_histogram(segment_histograms, first_segment + s);
                            huffman::stream_size(plan.codes.cost_in_bits(counts))
                        })
                        .collect();
                    layout.piece(frame::huffman_block_prefix(
                        last,
                        range.len(),
                        &plan,
                        &sizes,
                    ));
                    let table = (layout.tables.len() / 256) as u64;
                    layout.tables.extend(huffman::entry_table(&plan.codes));
                    for (stream, size) in streams.iter().zip(&sizes) {
                        layout.pack.extend([
                            address + stream.start as u64,
                            stream.len() as u64,
                            layout.len as u64,
                            table,
                        ]);
                        layout.len += size;
                    }
                    layout.piece(vec![SEQUENCES_NONE]);
                }
            }
        }
        layout.frames.push((start, layout.len - start));
    }
    Ok(layout)
}

/// [`plan_block`] of each histogram, in order, spread over the host's cores
/// (planning is the serial part of the GPU path: about 5.7 GB/s per core).
pub fn plan_all(histograms: &[[u32; 256]]) -> Result<Vec<BlockPlan>, GpuError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || histograms.len() < 64 {
        return Ok(histograms.iter().map(plan_block).collect());
    }
    let chunk = histograms.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = histograms
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(plan_block).collect::<Vec<_>>()))
            .collect();
        let mut plans = Vec::with_capacity(histograms.len());
        for worker in workers {
            let part = worker
                .join()
                .map_err(|_| GpuError::Driver("a planning thread panicked".into()))?;
            plans.extend(part);
        }
        Ok(plans)
    })
}

/// The kernels' number for `dtype`: its position in [`DType::ALL`].
fn dtype_code(dtype: DType) -> u64 {
    DType::ALL.iter().position(|&d| d == dtype).unwrap_or(0) as u64
}

fn grid(jobs: usize) -> Result<u32, GpuError> {
    u32::try_from(jobs).map_err(|_| GpuError::Driver(format!("{jobs} blocks exceed one launch")))
}

/// The GPU path as the server holds it: a CUDA pipeline behind a lock, so
/// flushes and ingest threads share one device stream.
pub struct GpuCodec {
    pipeline: Mutex<Pipeline<CudaDevice>>,
    description: String,
}

impl GpuCodec {
    /// Opens GPU 0 with a budget of `memory_budget` bytes of device memory.
    pub fn open(memory_budget: usize) -> Result<GpuCodec, GpuError> {
        let device = CudaDevice::open(0)?;
        let description = format!(
            "{}, budget {} MiB, low-priority stream",
            device.description(),
            memory_budget >> 20
        );
        Ok(GpuCodec {
            pipeline: Mutex::new(Pipeline::new(device, memory_budget)),
            description,
        })
    }

    /// The device and budget, for logs.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Runs `work` on the pipeline.
    pub fn with<T>(
        &self,
        work: impl FnOnce(&Pipeline<CudaDevice>) -> Result<T, GpuError>,
    ) -> Result<T, GpuError> {
        let pipeline = self
            .pipeline
            .lock()
            .map_err(|_| GpuError::Driver("GPU pipeline poisoned by a panic".into()))?;
        work(&pipeline)
    }
}
