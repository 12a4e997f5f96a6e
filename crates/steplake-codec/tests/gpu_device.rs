//! The GPU pipeline on a real CUDA device: byte equality with the CPU path
//! from 1 element to 1 GiB (odd sizes included), statistics, MiniLM in fp32
//! and bf16, libzstd decoding the GPU's frames. Ignored by default, so a
//! machine without a GPU shows them as `ignored` (not `ok`); run them on a
//! GPU machine with
//! `cargo test --release -p steplake-codec --test gpu_device -- --ignored`,
//! where a missing GPU is a failure.

mod common;

use steplake_codec::gpu::{CudaDevice, Pipeline};
use steplake_core::DType;

fn pipeline() -> Option<Pipeline<CudaDevice>> {
    // Option keeps the call sites short: `let Some(p) = pipeline() else { return };`.
    match CudaDevice::open(0) {
        Ok(device) => {
            eprintln!("GPU: {}", device.description());
            Some(Pipeline::new(device, 32 << 30))
        }
        Err(e) => panic!("these tests need a CUDA GPU, and it could not be opened: {e}"),
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: run with -- --ignored on one (docs/gpu.md)"]
fn frames_and_statistics_equal_the_cpu_path() {
    let Some(pipeline) = pipeline() else { return };
    let cases = common::all_cases(usize::MAX);
    common::check_frames(&pipeline, &cases);
    common::check_stats(&pipeline, &cases);
}

#[test]
#[ignore = "needs an NVIDIA GPU: run with -- --ignored on one (docs/gpu.md)"]
fn minilm_weights_fp32_and_bf16() {
    let Some(pipeline) = pipeline() else { return };
    let cases = common::minilm_cases(usize::MAX);
    common::check_frames(&pipeline, &cases);
    common::check_stats(&pipeline, &cases);
}

#[test]
#[ignore = "needs an NVIDIA GPU: run with -- --ignored on one (docs/gpu.md)"]
fn large_and_odd_sizes_up_to_one_gib() {
    let Some(pipeline) = pipeline() else { return };
    // 64 MiB + 3 elements, then 1 GiB, of random normal floats.
    for n in [(64 << 20) / 4 + 3, (1 << 30) / 4] {
        let mut rng = common::Rng(n as u64 | 1);
        let values: Vec<f32> = (0..n).map(|_| (rng.normal() * 0.02) as f32).collect();
        let cases = vec![
            (format!("{n} f32"), common::f32_bytes(&values), DType::F32),
            (
                format!("{n} bf16"),
                common::bf16_bytes(&values),
                DType::Bf16,
            ),
        ];
        common::check_frames(&pipeline, &cases);
        common::check_stats(&pipeline, &cases);
    }
}
