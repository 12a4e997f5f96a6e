//! Step-to-step (temporal) coding of tensor snapshots (issue 20, part 3).
//!
//! One snapshot of a tensor compresses to near its entropy on its own
//! (about 1.2× for fp32 weights), but successive snapshots of a training
//! run differ little: the sign, the exponent and the high mantissa bits
//! of most values stay put between nearby steps. So a snapshot can be
//! coded as the XOR of its bit pattern with the previous one's, in byte
//! planes, through the same codec ([`encode`]): the planes of unchanged
//! bits become runs of zeros that the Huffman literals take for almost
//! nothing.
//!
//! ```text
//!   previous  0x3c23d70a  0x3c8f5c29  …      current  0x3c23d6f1  0x3c8f5c3e  …
//!   XOR       0x000001fb  0x00000017  …
//!   planes    [fb 17 …] [01 00 …] [00 00 …] [00 00 …]   → one zstd frame
//! ```
//!
//! Decoding is the same XOR: any zstd reader gives the planes back, joined
//! they are the XOR's values, and XOR with the previous snapshot gives the
//! snapshot. With numpy, for fp32 (`width` 4):
//!
//! ```text
//! planes = np.frombuffer(zstandard.decompress(frame), np.uint8)
//! xor = planes.reshape(4, -1).T.copy().view(np.uint32).ravel()
//! snapshot = (previous.view(np.uint32) ^ xor).view(np.float32)
//! ```
//!
//! A chain of deltas starts at a keyframe (a snapshot coded on its own);
//! how often a keyframe comes is the store's choice.

use crate::{encode, join_planes};

/// The XOR of two snapshots' bit patterns, byte by byte (its own inverse:
/// `xor(previous, xor(previous, current)) == current`).
pub fn xor(previous: &[u8], current: &[u8]) -> Vec<u8> {
    assert_eq!(
        previous.len(),
        current.len(),
        "snapshots of one tensor have one size"
    );
    // Eight bytes at a time: the compiler vectorises this loop.
    let mut out = vec![0u8; current.len()];
    let whole = current.len() / 8 * 8;
    for ((o, p), c) in out[..whole]
        .chunks_exact_mut(8)
        .zip(previous[..whole].chunks_exact(8))
        .zip(current[..whole].chunks_exact(8))
    {
        let word = u64::from_le_bytes(p.try_into().unwrap_or_default())
            ^ u64::from_le_bytes(c.try_into().unwrap_or_default());
        o.copy_from_slice(&word.to_le_bytes());
    }
    for i in whole..current.len() {
        out[i] = previous[i] ^ current[i];
    }
    out
}

/// `current` coded against `previous` (both little-endian values of
/// `width` bytes): one zstd frame of the XOR's byte planes.
pub fn encode_delta(previous: &[u8], current: &[u8], width: usize) -> Vec<u8> {
    encode(&xor(previous, current), width)
}

/// The snapshot back from `previous` and the decompressed content of its
/// delta frame (the XOR's byte planes).
pub fn apply_delta(previous: &[u8], planes: &[u8], width: usize) -> Vec<u8> {
    xor(previous, &join_planes(planes, width))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(values: impl Iterator<Item = f32>) -> Vec<u8> {
        values.flat_map(f32::to_le_bytes).collect()
    }

    #[test]
    fn a_delta_decodes_with_plain_zstd_to_the_exact_snapshot() {
        let previous = floats((0..100_003).map(|i| (i as f32 * 0.37).sin() * 0.05));
        // A small step of training: every value moved a little, a few a lot,
        // one to NaN and one to -0.0.
        let mut current: Vec<f32> = previous
            .chunks_exact(4)
            .enumerate()
            .map(|(i, b)| {
                let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                v - 1e-5 * (i as f32 * 0.11).cos() + if i % 997 == 0 { 1.0 } else { 0.0 }
            })
            .collect();
        current[17] = f32::NAN;
        current[18] = -0.0;
        let current = floats(current.into_iter());
        let frame = encode_delta(&previous, &current, 4);
        let planes = zstd::decode_all(frame.as_slice()).expect("a standard zstd frame");
        assert_eq!(apply_delta(&previous, &planes, 4), current);
        // Smaller than the snapshot coded on its own.
        let alone = encode(&current, 4).len();
        assert!(frame.len() < alone, "{} against {alone}", frame.len());
    }

    #[test]
    fn xor_is_its_own_inverse_at_every_length() {
        for len in [0, 1, 7, 8, 9, 64, 67] {
            let a: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let b: Vec<u8> = (0..len).map(|i| (i * 17 + 3) as u8).collect();
            assert_eq!(xor(&a, &xor(&a, &b)), b, "{len}");
        }
    }
}
