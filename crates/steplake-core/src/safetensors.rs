//! Reading the header of a safetensors file (the format of released
//! checkpoints such as Pythia's): an 8-byte little-endian header length, a
//! JSON object naming each tensor's dtype, shape and byte range, then the
//! data.
//!
//! Everything from the file is checked before use: header bounds, dtype,
//! shape × dtype size against the byte range, ranges inside the data.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{CoreError, DType};

/// Largest header accepted (the format's own limit is 100 MB).
pub const MAX_HEADER_LEN: u64 = 100 * 1024 * 1024;

/// One tensor of a safetensors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetensorsEntry {
    /// Its name, e.g. `encoder.layer.0.attention.self.query.weight`.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Dimensions.
    pub shape: Vec<u64>,
    /// Byte range in the whole file (not only in the data section).
    pub range: std::ops::Range<usize>,
}

#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<i64>,
    data_offsets: [u64; 2],
}

/// Parses the header of a safetensors file of `file_len` bytes whose first
/// bytes are `prefix` (at least the 8-byte length and the header). Entries
/// come back in file order. Errors name the file's tensor and the problem.
pub fn parse_header(prefix: &[u8], file_len: u64) -> Result<Vec<SafetensorsEntry>, CoreError> {
    let bad = |reason: String| CoreError::invalid("safetensors", reason);
    let Some(len_bytes) = prefix.get(..8) else {
        return Err(bad(format!(
            "file is {file_len} bytes, shorter than the 8-byte header length"
        )));
    };
    let mut word = [0u8; 8];
    word.copy_from_slice(len_bytes);
    let header_len = u64::from_le_bytes(word);
    if header_len > MAX_HEADER_LEN || 8 + header_len > file_len {
        return Err(bad(format!(
            "header length {header_len} does not fit the {file_len}-byte file (truncated or not safetensors)"
        )));
    }
    let Some(header) = prefix.get(8..8 + header_len as usize) else {
        return Err(bad("header is not in the bytes given".into()));
    };
    let raw: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|e| bad(format!("header is not a JSON object: {e}")))?;
    let data_start = 8 + header_len;
    let data_len = file_len - data_start;
    let mut entries = Vec::new();
    for (name, value) in raw {
        if name == "__metadata__" {
            continue;
        }
        let field = format!("safetensors tensor {name:?}");
        let entry: RawEntry = serde_json::from_value(value)
            .map_err(|e| CoreError::invalid(&field, format!("malformed entry: {e}")))?;
        let dtype: DType = entry
            .dtype
            .parse()
            .map_err(|e: CoreError| CoreError::invalid(&field, e.to_string()))?;
        if let Some(d) = entry.shape.iter().find(|&&d| d < 0) {
            return Err(CoreError::invalid(
                &field,
                format!("negative dimension {d}"),
            ));
        }
        let shape: Vec<u64> = entry.shape.iter().map(|&d| d as u64).collect();
        let numel = shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .ok_or_else(|| CoreError::invalid(&field, "shape overflows"))?;
        let [begin, end] = entry.data_offsets;
        let expected = numel.checked_mul(dtype.size() as u64);
        if end < begin || expected != Some(end - begin) {
            return Err(CoreError::invalid(
                &field,
                format!(
                    "shape {:?} of {dtype} needs {} bytes but data_offsets [{begin}, {end}] hold {}",
                    shape,
                    expected.map_or("too many".into(), |e| e.to_string()),
                    end.saturating_sub(begin)
                ),
            ));
        }
        if end > data_len {
            return Err(CoreError::invalid(
                &field,
                format!(
                    "data_offsets end {end} is past the {data_len} data bytes (file truncated?)"
                ),
            ));
        }
        entries.push(SafetensorsEntry {
            name,
            dtype,
            shape,
            range: (data_start + begin) as usize..(data_start + end) as usize,
        });
    }
    entries.sort_by_key(|e| e.range.start);
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: usize) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend(std::iter::repeat_n(0u8, data));
        bytes
    }

    #[test]
    fn reads_entries_in_file_order() {
        let f = file(
            r#"{"b":{"dtype":"BF16","shape":[2,3],"data_offsets":[8,20]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"format":"pt"}}"#,
            20,
        );
        let entries = parse_header(&f, f.len() as u64).expect("parses");
        assert_eq!(entries.len(), 2);
        assert_eq!(
            (entries[0].name.as_str(), entries[0].dtype),
            ("a", DType::F32)
        );
        assert_eq!(entries[1].shape, vec![2, 3]);
        assert_eq!(entries[1].range.len(), 12);
    }

    #[test]
    fn bad_files_name_the_tensor_and_the_problem() {
        let cases = [
            (
                r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                8,
                "needs 12 bytes",
            ),
            (
                r#"{"w":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#,
                8,
                "unknown dtype",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
                4,
                "negative dimension",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
                8,
                "past the 8 data bytes",
            ),
            (r#"{"w": 3}"#, 0, "malformed entry"),
            (r#"not json"#, 0, "not a JSON object"),
        ];
        for (header, data, expected) in cases {
            let f = file(header, data);
            let err = parse_header(&f, f.len() as u64).unwrap_err().to_string();
            assert!(err.contains(expected), "{header}: {err}");
        }
        let err = parse_header(&[1, 2], 2).unwrap_err().to_string();
        assert!(err.contains("shorter"), "{err}");
        let truncated = file(
            r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            4,
        );
        let err = parse_header(&truncated[..20], 20).unwrap_err().to_string();
        assert!(err.contains("does not fit"), "{err}");
    }
}
