//! GPU codec benchmark (issue "GPU codec"): device encode throughput of
//! steplake-codec's GPU path, beside the CPU path on the same bytes.
//!
//! Run on a machine with an NVIDIA GPU:
//! `cargo bench -p steplake-codec --bench gpu`
//! Without a CUDA driver or GPU it prints why and measures nothing.
//!
//! Figures (GB/s of input; median of several runs after a warm-up):
//! - device encode of one fp32 / bf16 tensor of 1 MiB, 64 MiB and 1 GiB that
//!   is already in device memory: split, histograms, host planning, packing,
//!   the frames left in device memory; then the same with the copy of the
//!   frames back to the host;
//! - a batch of 1,024 tensors of 64 KiB in one call;
//! - statistics (both passes) of the same tensors, from host memory;
//! - the host's share: planning every block (`plan_all`, all cores), which
//!   the device encode includes;
//! - the CPU path (`steplake_codec::encode`, one core) on the same bytes.
//!
//! End to end through the server: `STEPLAKE_GPU=on` and `STEPLAKE_GPU=off`
//! before `cargo bench -p steplake-cli --bench tensors`.

use std::time::Instant;

use steplake_codec::gpu::{CudaDevice, Device, Pipeline};
use steplake_core::DType;

/// Weight-like values: small, roughly normal.
fn weights(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            let mut sum = 0.0f64;
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                sum += (state >> 11) as f64 / (1u64 << 53) as f64;
            }
            ((sum - 2.0) * 0.02) as f32
        })
        .collect()
}

fn bytes_of(values: &[f32], dtype: DType) -> Vec<u8> {
    match dtype {
        DType::Bf16 => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// Median seconds of `runs` runs of `work`, after one warm-up run.
fn median_secs(runs: usize, mut work: impl FnMut()) -> f64 {
    work();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn gbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

/// Block histograms of `bytes` split into planes, as the device computes them.
fn block_histograms(bytes: &[u8], width: usize) -> Vec<[u32; 256]> {
    let planes = steplake_codec::split_planes(bytes, width);
    steplake_codec::block_ranges(planes.len(), planes.len() / width)
        .into_iter()
        .map(|r| steplake_codec::histogram(&planes[r]))
        .collect()
}

/// The host's part of the GPU path, measurable without a GPU: planning the
/// blocks of a 1 GiB tensor on all cores caps the device encode.
fn print_host_planning() {
    for dtype in [DType::F32, DType::Bf16] {
        let bytes = bytes_of(&weights((1 << 30) / dtype.size(), 11), dtype);
        let histograms = block_histograms(&bytes, dtype.size());
        let planning = median_secs(3, || {
            steplake_codec::gpu::plan_all(&histograms).expect("plan");
        });
        println!(
            "host planning of a 1 GiB {dtype} tensor ({} blocks, {} threads): {:.1} ms, caps the GPU path at {:.1} GB/s on this host",
            histograms.len(),
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            planning * 1e3,
            gbps(bytes.len(), planning)
        );
    }
}

fn main() {
    print_host_planning();
    let device = match CudaDevice::open(0) {
        Ok(device) => device,
        Err(e) => {
            println!("gpu codec: not measured: {e}");
            return;
        }
    };
    println!("device: {}", device.description());
    let pipeline = Pipeline::new(device, 64 << 30);
    println!(
        "| input | size | device encode (GB/s) | + copy back (GB/s) | host planning in it (ms) | CPU encode, 1 core (GB/s) | GPU/CPU |"
    );
    println!("|---|---|---|---|---|---|---|");
    for dtype in [DType::F32, DType::Bf16] {
        for (label, bytes_len, runs) in [
            ("1 MiB", 1usize << 20, 50),
            ("64 MiB", 64 << 20, 10),
            ("1 GiB", 1 << 30, 5),
        ] {
            let n = bytes_len / dtype.size();
            let bytes = bytes_of(&weights(n, bytes_len as u64), dtype);
            let values = pipeline.device().upload(&bytes).expect("upload");
            let items = [(0usize, bytes.len(), dtype.size())];
            let on_device = median_secs(runs, || {
                let packed = pipeline.encode_resident(&values, &items).expect("encode");
                pipeline.device().synchronize().expect("sync");
                drop(packed);
            });
            let with_copy = median_secs(runs, || {
                let packed = pipeline.encode_resident(&values, &items).expect("encode");
                pipeline.download_frames(packed).expect("download");
            });
            let frames = pipeline
                .download_frames(pipeline.encode_resident(&values, &items).expect("encode"))
                .expect("download");
            let histograms = block_histograms(&bytes, dtype.size());
            let planning = median_secs(runs, || {
                steplake_codec::gpu::plan_all(&histograms).expect("plan");
            });
            let cpu_runs = if bytes_len >= 1 << 30 { 1 } else { 3 };
            let mut cpu_frame = Vec::new();
            let cpu = median_secs(cpu_runs, || {
                cpu_frame = steplake_codec::encode(&bytes, dtype.size())
            });
            assert!(
                frames[0] == cpu_frame,
                "GPU and CPU frames differ for {dtype} {label}"
            );
            println!(
                "| {dtype} | {label} | {:.1} | {:.1} | {:.2} | {:.3} | {:.0}× |",
                gbps(bytes.len(), on_device),
                gbps(bytes.len(), with_copy),
                planning * 1e3,
                gbps(bytes.len(), cpu),
                cpu / on_device
            );
        }
    }

    // Many small tensors in one call.
    let small: Vec<Vec<u8>> = (0..1024)
        .map(|i| bytes_of(&weights(16 * 1024, i), DType::F32))
        .collect();
    let items: Vec<(&[u8], usize)> = small.iter().map(|b| (b.as_slice(), 4)).collect();
    let total: usize = small.iter().map(Vec::len).sum();
    let batch = median_secs(10, || {
        pipeline.encode(&items).expect("batch");
    });
    println!(
        "batch of 1,024 × 64 KiB fp32 from host memory (upload, encode, copy back): {:.1} GB/s",
        gbps(total, batch)
    );

    // Statistics from host memory.
    let bytes = bytes_of(&weights((256 << 20) / 4, 7), DType::F32);
    let stats = median_secs(5, || {
        pipeline
            .tensor_stats(&[(&bytes, DType::F32)])
            .expect("stats");
    });
    let cpu_stats = median_secs(1, || {
        steplake_codec::stats::tensor_stats(&bytes, DType::F32);
    });
    println!(
        "statistics of 256 MiB fp32 from host memory: GPU {:.1} GB/s, CPU (1 core) {:.3} GB/s",
        gbps(bytes.len(), stats),
        gbps(bytes.len(), cpu_stats)
    );
}
