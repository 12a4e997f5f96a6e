//! Fuzz target for safetensors headers (steplake-fuzz): whatever a
//! checkpoint file holds, `parse_header` answers entries or an error, never
//! a panic, a hang or a huge allocation. `STEPLAKE_FUZZ_ITERS` runs longer.

use steplake_core::safetensors::parse_header;
use steplake_fuzz::fuzz;

#[global_allocator]
static ALLOCATOR: steplake_fuzz::CappedAllocator = steplake_fuzz::CappedAllocator;

fn file(header: &str, data_len: usize) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + data_len, 0);
    bytes
}

#[test]
fn fuzz_safetensors_headers() {
    let seeds = vec![
        file(
            r#"{"a.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]}}"#,
            32,
        ),
        file(
            r#"{"__metadata__":{"format":"pt"},"x":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}"#,
            8,
        ),
        file(
            r#"{"e":{"dtype":"F16","shape":[0],"data_offsets":[0,0]}}"#,
            0,
        ),
    ];
    let dictionary: &[&[u8]] = &[
        b"\"dtype\"",
        b"\"shape\"",
        b"\"data_offsets\"",
        b"\"F64\"",
        b"\"U8\"",
        b"\"BOOL\"",
        b"[",
        b"]",
        b"{",
        b"}",
        b",",
        b":",
        b"-1",
        b"18446744073709551615",
        b"4294967296",
        b"1e308",
        b"\"__metadata__\"",
    ];
    fuzz("safetensors header", &seeds, dictionary, 5_000, |input| {
        let _ = parse_header(input, input.len() as u64);
        // A file that claims more bytes than were read.
        let _ = parse_header(input, u64::MAX);
    });
}
