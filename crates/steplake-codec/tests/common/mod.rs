//! Checks of the GPU pipeline shared by the emulated device
//! (tests/gpu_emulated.rs) and a real GPU (tests/gpu_device.rs): the same
//! inputs, the same expectations.

#![allow(dead_code)]

use steplake_codec::gpu::{Device, Pipeline};
use steplake_codec::stats::{tensor_stats, TensorStats};
use steplake_core::DType;

/// A small deterministic generator (xorshift), so failures reproduce.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An approximately normal value.
    pub(crate) fn normal(&mut self) -> f64 {
        (0..4).map(|_| self.unit()).sum::<f64>() - 2.0
    }
}

/// Named f32 inputs of every kind the issue asks for, `n` elements each.
pub(crate) fn f32_cases(n: usize, seed: u64) -> Vec<(String, Vec<f32>)> {
    let mut rng = Rng(seed | 1);
    let random: Vec<f32> = (0..n).map(|_| (rng.normal() * 0.02) as f32).collect();
    let random_bits: Vec<f32> = (0..n).map(|_| f32::from_bits(rng.next() as u32)).collect();
    let constant = vec![0.125f32; n];
    let sparse: Vec<f32> = (0..n)
        .map(|_| {
            if rng.unit() < 0.02 {
                rng.normal() as f32
            } else {
                0.0
            }
        })
        .collect();
    let nan_laden: Vec<f32> = (0..n)
        .map(|i| match i % 7 {
            0 => f32::NAN,
            3 => f32::INFINITY,
            5 => f32::NEG_INFINITY,
            _ => rng.normal() as f32,
        })
        .collect();
    vec![
        ("random normal".into(), random),
        ("random bits".into(), random_bits),
        ("constant".into(), constant),
        ("sparse".into(), sparse),
        ("NaN-laden".into(), nan_laden),
    ]
}

pub(crate) fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub(crate) fn bf16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
        .collect()
}

pub(crate) fn f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect()
}

/// Checks that the pipeline's frames equal the CPU's, byte for byte, for
/// each `(label, values, dtype)`, all in one batch; and that libzstd
/// decodes them to the planes.
pub(crate) fn check_frames<D: Device>(pipeline: &Pipeline<D>, cases: &[(String, Vec<u8>, DType)]) {
    let items: Vec<(&[u8], usize)> = cases
        .iter()
        .map(|(_, bytes, dtype)| (bytes.as_slice(), dtype.size()))
        .collect();
    let frames = pipeline.encode(&items).expect("GPU encode");
    for ((label, bytes, dtype), frame) in cases.iter().zip(&frames) {
        let cpu = steplake_codec::encode(bytes, dtype.size());
        assert!(
            frame == &cpu,
            "{label} ({dtype}, {} bytes): GPU frame of {} bytes differs from the CPU's {} bytes{}",
            bytes.len(),
            frame.len(),
            cpu.len(),
            first_difference(frame, &cpu)
        );
        let planes = steplake_codec::split_planes(bytes, dtype.size());
        assert_eq!(
            zstd::decode_all(frame.as_slice()).expect("libzstd decodes the GPU frame"),
            planes,
            "{label}"
        );
    }
    // Already-split planes (what Parquet pages hold) take the same path.
    let planes: Vec<(Vec<u8>, usize)> = cases
        .iter()
        .map(|(_, bytes, dtype)| {
            (
                steplake_codec::split_planes(bytes, dtype.size()),
                bytes.len() / dtype.size(),
            )
        })
        .collect();
    let items: Vec<(&[u8], usize)> = planes.iter().map(|(p, n)| (p.as_slice(), *n)).collect();
    let frames = pipeline
        .compress_planes(&items)
        .expect("GPU compress_planes");
    for ((label, _, _), ((planes, n), frame)) in cases.iter().zip(planes.iter().zip(&frames)) {
        assert!(
            frame == &steplake_codec::compress_planes(planes, *n),
            "{label}: compress_planes differs"
        );
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!("; first difference at byte {i}"),
        None => "; one is a prefix of the other".into(),
    }
}

/// Checks the pipeline's statistics against the CPU's: counts, extremes,
/// histogram and quantiles exactly; sums to 1e-12 relative.
pub(crate) fn check_stats<D: Device>(pipeline: &Pipeline<D>, cases: &[(String, Vec<u8>, DType)]) {
    let items: Vec<(&[u8], DType)> = cases
        .iter()
        .map(|(_, bytes, dtype)| (bytes.as_slice(), *dtype))
        .collect();
    let gpu = pipeline.tensor_stats(&items).expect("GPU statistics");
    for ((label, bytes, dtype), gpu) in cases.iter().zip(&gpu) {
        let cpu = tensor_stats(bytes, *dtype);
        assert_stats_match(&format!("{label} ({dtype})"), gpu, &cpu);
    }
}

pub(crate) fn assert_stats_match(label: &str, gpu: &TensorStats, cpu: &TensorStats) {
    assert_eq!(gpu.numel, cpu.numel, "{label}: numel");
    assert_eq!(
        (gpu.nan_count, gpu.inf_count),
        (cpu.nan_count, cpu.inf_count),
        "{label}: NaN/Inf counts"
    );
    assert_eq!(gpu.zero_frac, cpu.zero_frac, "{label}: zero_frac");
    assert_eq!(
        (gpu.min, gpu.max, gpu.abs_max),
        (cpu.min, cpu.max, cpu.abs_max),
        "{label}: extremes"
    );
    assert_eq!(gpu.histogram, cpu.histogram, "{label}: histogram");
    assert_eq!(gpu.quantiles, cpu.quantiles, "{label}: quantiles");
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(b.abs()) + 1e-300;
    assert!(
        close(gpu.l2, cpu.l2),
        "{label}: l2 {} vs {}",
        gpu.l2,
        cpu.l2
    );
    match (gpu.mean.zip(gpu.std), cpu.mean.zip(cpu.std)) {
        (Some((gm, gs)), Some((cm, cs))) => {
            // The mean of values that cancel is relative to their scale.
            let scale = cpu.abs_max.unwrap_or(0.0);
            assert!(
                (gm - cm).abs() <= 1e-12 * scale,
                "{label}: mean {gm} vs {cm}"
            );
            assert!(
                close(gs, cs) || (gs - cs).abs() <= 1e-12 * scale,
                "{label}: std {gs} vs {cs}"
            );
        }
        (g, c) => assert_eq!(g, c, "{label}: mean and std"),
    }
}

/// The sizes the equality checks use, in elements: tiny, odd, around the
/// stream and block boundaries.
pub(crate) const SIZES: [usize; 10] = [1, 2, 3, 255, 1023, 1024, 4097, 32_768, 131_071, 131_073];

/// Every case of [`f32_cases`] at [`SIZES`] (up to `max` elements), as f32,
/// bf16 and f16 bytes, plus integer and f64 tensors.
pub(crate) fn all_cases(max: usize) -> Vec<(String, Vec<u8>, DType)> {
    let mut cases = Vec::new();
    for (i, &n) in SIZES.iter().filter(|&&n| n <= max).enumerate() {
        for (label, values) in f32_cases(n, 0x5EED + i as u64) {
            let label = format!("{label}, {n} elements");
            cases.push((label.clone(), f32_bytes(&values), DType::F32));
            cases.push((label.clone(), bf16_bytes(&values), DType::Bf16));
            cases.push((label, f16_bytes(&values), DType::F16));
        }
        let mut rng = Rng(0xD1CE + n as u64);
        let f64s: Vec<u8> = (0..n)
            .flat_map(|_| (rng.normal() * 1e3).to_le_bytes())
            .collect();
        cases.push((format!("f64, {n} elements"), f64s, DType::F64));
        let i32s: Vec<u8> = (0..n)
            .flat_map(|_| ((rng.next() % 2001) as i32 - 1000).to_le_bytes())
            .collect();
        cases.push((format!("i32, {n} elements"), i32s, DType::I32));
        let bools: Vec<u8> = (0..n).map(|_| rng.next().is_multiple_of(3) as u8).collect();
        cases.push((format!("bool, {n} elements"), bools, DType::Bool));
    }
    cases.push(("empty".into(), Vec::new(), DType::F32));
    cases
}

/// MiniLM's tensors (STEPLAKE_MINILM), as fp32 and bf16 cases, those of at
/// most `max_bytes`; empty when the checkpoint is not there.
pub(crate) fn minilm_cases(max_bytes: usize) -> Vec<(String, Vec<u8>, DType)> {
    let Some(path) = std::env::var_os("STEPLAKE_MINILM") else {
        eprintln!("STEPLAKE_MINILM is not set: MiniLM cases skipped");
        return Vec::new();
    };
    let file = std::fs::read(&path).expect("read MiniLM");
    let entries =
        steplake_core::safetensors::parse_header(&file, file.len() as u64).expect("MiniLM header");
    let mut cases = Vec::new();
    for entry in entries {
        let bytes = &file[entry.range.clone()];
        if entry.dtype != DType::F32 || bytes.len() > max_bytes {
            continue;
        }
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        cases.push((
            format!("MiniLM {} fp32", entry.name),
            bytes.to_vec(),
            DType::F32,
        ));
        cases.push((
            format!("MiniLM {} bf16", entry.name),
            bf16_bytes(&values),
            DType::Bf16,
        ));
    }
    cases
}

/// The cases laid out as one device buffer would hold them (the pipeline's
/// own staging). Returns the bytes and `(offset, len, width)` of each.
pub(crate) fn stage_on_device(
    cases: &[(String, Vec<u8>, DType)],
) -> (Vec<u8>, Vec<(usize, usize, usize)>) {
    let (staged, offsets) =
        steplake_codec::gpu::stage(cases.iter().map(|(_, bytes, _)| bytes.as_slice()));
    let placed = cases
        .iter()
        .zip(offsets)
        .map(|((_, bytes, dtype), offset)| (offset, bytes.len(), dtype.size()))
        .collect();
    (staged, placed)
}
