//! libzstd decodes every frame steplake-codec writes, back to the same bytes.

use steplake_codec::{compress_planes, encode, join_planes, split_planes, BLOCK_SIZE};

struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A standard normal sample (sum of uniforms; plenty for test data).
    fn normal(&mut self) -> f64 {
        (0..12)
            .map(|_| (self.next() >> 11) as f64 / (1u64 << 53) as f64)
            .sum::<f64>()
            - 6.0
    }
}

/// Decodes with libzstd, both the one-shot and the streaming decoder (the one
/// Parquet readers use).
fn libzstd_decode(frame: &[u8], expected_len: usize) -> Vec<u8> {
    let one_shot =
        zstd::bulk::decompress(frame, expected_len.max(1)).expect("libzstd one-shot decode");
    let streamed = zstd::stream::decode_all(frame).expect("libzstd streaming decode");
    assert_eq!(one_shot, streamed);
    one_shot
}

fn check(values: &[u8], width: usize, what: &str) {
    let frame = encode(values, width);
    let n = values.len() / width;
    assert!(
        frame == compress_planes(&split_planes(values, width), n),
        "{what}: encode and compress_planes disagree"
    );
    let planes = libzstd_decode(&frame, values.len());
    assert_eq!(planes.len(), values.len(), "{what}: length");
    assert!(
        planes == split_planes(values, width),
        "{what}: content differs"
    );
    assert_eq!(join_planes(&planes, width), values, "{what}: join");
}

fn f32_bytes(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(f32::to_le_bytes).collect()
}

#[test]
fn random_bytes_of_every_small_size() {
    let mut noise = Noise(0x1234_5678_9abc_def1);
    for len in (0..300).chain([1023, 1024, 1025, 4095, 4097]) {
        let bytes: Vec<u8> = (0..len).map(|_| noise.next() as u8).collect();
        check(&bytes, 1, &format!("random {len} bytes"));
    }
}

#[test]
fn skewed_bytes_take_the_huffman_path_at_every_size() {
    let mut noise = Noise(0x2545_f491_4f6c_dd1d);
    for len in [
        2,
        3,
        7,
        64,
        500,
        1023,
        1024,
        1500,
        5000,
        70_000,
        BLOCK_SIZE,
        BLOCK_SIZE + 1,
        3 * BLOCK_SIZE + 17,
    ] {
        // Geometric-ish bytes: a few common values, a long tail.
        let bytes: Vec<u8> = (0..len)
            .map(|_| (noise.next() % 64).trailing_zeros() as u8 * 3 + (noise.next() % 2) as u8)
            .collect();
        check(&bytes, 1, &format!("skewed {len} bytes"));
        let frame = encode(&bytes, 1);
        if len >= 1000 {
            assert!(
                frame.len() < len * 3 / 4,
                "skewed {len} bytes compress: {}",
                frame.len()
            );
        }
    }
}

#[test]
fn constant_sparse_and_two_symbol_data() {
    check(&vec![0u8; 3 * BLOCK_SIZE], 4, "zeros");
    check(&vec![7u8; 1000], 1, "constant");
    let mut noise = Noise(77);
    let sparse: Vec<u8> = (0..200_000)
        .map(|_| {
            if noise.next().is_multiple_of(100) {
                noise.next() as u8
            } else {
                0
            }
        })
        .collect();
    check(&sparse, 1, "sparse");
    let two: Vec<u8> = (0..10_000)
        .map(|i| if i % 3 == 0 { 1 } else { 0 })
        .collect();
    check(&two, 1, "two symbols, 0 and 1");
    let two_high: Vec<u8> = (0..10_000)
        .map(|i| if i % 5 == 0 { 254 } else { 255 })
        .collect();
    check(&two_high, 1, "two symbols, 254 and 255");
    let every: Vec<u8> = (0..100_000u32)
        .map(|i| if i % 2 == 0 { (i / 2 % 256) as u8 } else { 0 })
        .collect();
    check(&every, 1, "every byte value present, one dominant");
}

#[test]
fn float_tensors_of_every_width() {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let weights: Vec<f32> = (0..300_001)
        .map(|_| (noise.normal() * 0.02) as f32)
        .collect();
    check(&f32_bytes(weights.iter().copied()), 4, "f32 weights");
    // bf16 widened to f32: the low two planes are zero.
    let widened = f32_bytes(
        weights
            .iter()
            .map(|w| f32::from_bits(w.to_bits() & 0xFFFF_0000)),
    );
    check(&widened, 4, "bf16 widened to f32");
    let big = f32_bytes(weights.iter().cycle().take(3 * BLOCK_SIZE + 5).copied());
    check(&big, 4, "f32, several blocks per plane");
    check(&[], 4, "empty f32");
    check(&[1, 2, 3, 4], 4, "one f32");
    let doubles: Vec<u8> = weights
        .iter()
        .flat_map(|&w| (w as f64).to_le_bytes())
        .collect();
    check(&doubles, 8, "f64");
    let halves: Vec<u8> = weights
        .iter()
        .flat_map(|&w| ((w.to_bits() >> 16) as u16).to_le_bytes())
        .collect();
    check(&halves, 2, "bf16 raw");
    let with_nan = f32_bytes(weights.iter().enumerate().map(|(i, &w)| {
        if i % 97 == 0 {
            f32::NAN
        } else if i % 89 == 0 {
            f32::INFINITY
        } else {
            w
        }
    }));
    check(&with_nan, 4, "NaN-laden");
    let ints: Vec<u8> = (0..100_000i64)
        .flat_map(|i| (i * i % 1000 - 500).to_le_bytes())
        .collect();
    check(&ints, 8, "i64");
}

#[test]
fn compress_planes_keeps_blocks_inside_planes() {
    // Two planes of 200,000 bytes: a zero plane and a random one.
    let mut noise = Noise(5);
    let mut data = vec![0u8; 200_000];
    data.extend((0..200_000).map(|_| noise.next() as u8));
    let frame = compress_planes(&data, 200_000);
    assert_eq!(libzstd_decode(&frame, data.len()), data);
    // The zero plane costs a few bytes (RLE blocks), the random one its size.
    assert!(frame.len() < 200_000 + 100, "{}", frame.len());
}

/// all-MiniLM-L6-v2's fp32 weights (scripts/fetch-minilm.sh; scripts/test.sh
/// runs it and sets STEPLAKE_MINILM).
fn minilm() -> std::path::PathBuf {
    let path = match std::env::var_os("STEPLAKE_MINILM") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/steplake/minilm/model.safetensors"),
    };
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-minilm.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

#[test]
fn real_weights_fp32_and_bf16_decode_with_libzstd() {
    let file = std::fs::read(minilm()).expect("read checkpoint");
    let entries =
        steplake_core::safetensors::parse_header(&file, file.len() as u64).expect("header");
    for entry in entries
        .iter()
        .filter(|e| e.dtype == steplake_core::DType::F32)
    {
        let weights = &file[entry.range.clone()];
        check(weights, 4, &format!("{} (fp32)", entry.name));
        let bf16: Vec<u8> = weights.chunks_exact(4).flat_map(|v| [v[2], v[3]]).collect();
        check(&bf16, 2, &format!("{} (bf16)", entry.name));
    }
}
