//! Reassembling tensors sent in parts.
//!
//! A tensor larger than one gRPC message arrives as parts with increasing
//! byte offsets. Each part is logged to the WAL and acknowledged on its own;
//! the [`Assembler`] keeps the bytes received so far (never visible to
//! queries) and yields the [`TensorRecord`] once the last byte arrives.
//! Parts must follow each other exactly: a gap, an overlap or a header that
//! differs from the first part's is rejected, naming the tensor.

use std::collections::HashMap;
use std::time::Duration;

use steplake_codec::Codec;
use steplake_core::tensor::numel;
use steplake_core::{validate_run_id, CoreError, TensorRecord};

use crate::now_us;
use crate::partial_files::{new_partial_path, PartialSnapshot};
use crate::tensor_record::TensorPart;

/// Identifies a tensor being assembled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PartialKey {
    run_id: String,
    writer_id: String,
    name: String,
    step: i64,
}

impl PartialKey {
    fn of(part: &TensorPart) -> Self {
        PartialKey {
            run_id: part.run_id.clone(),
            writer_id: part.writer_id.clone(),
            name: part.name.clone(),
            step: part.step,
        }
    }
}

/// Checks what can be checked of a part on its own: ids, shape × dtype size
/// against the total length, the part inside the tensor, statistics-only
/// parts carrying statistics for the right number of elements.
pub fn validate_part(part: &TensorPart) -> Result<(), CoreError> {
    validate_run_id(&part.run_id)?;
    let field = format!("tensor {:?} at step {}", part.name, part.step);
    steplake_core::validate_series_name(&format!("{field}: name"), &part.name)?;
    steplake_core::validate_wall_time(&format!("{field}: wall_time_us"), part.wall_time_us)?;
    if part.step < 0 {
        return Err(CoreError::invalid(
            &field,
            format!("step {} is negative", part.step),
        ));
    }
    let numel = numel(&part.shape, &field)?;
    if part.stats_only {
        let Some(stats) = &part.stats else {
            return Err(CoreError::invalid(
                &field,
                "a statistics-only tensor needs its statistics",
            ));
        };
        if stats.numel != numel {
            return Err(CoreError::invalid(
                &field,
                format!(
                    "statistics count {} elements but shape {:?} has {numel}",
                    stats.numel, part.shape
                ),
            ));
        }
        return if part.data.is_empty() && part.offset == 0 {
            Ok(())
        } else {
            Err(CoreError::invalid(
                &field,
                "a statistics-only tensor carries no values",
            ))
        };
    }
    let expected = numel.checked_mul(part.dtype.size() as u64);
    if expected != Some(part.total_len) {
        return Err(CoreError::invalid(
            &field,
            format!(
                "shape {:?} of {} needs {} bytes but the tensor is declared {} bytes long",
                part.shape,
                part.dtype,
                expected.map_or("too many".to_string(), |e| e.to_string()),
                part.total_len
            ),
        ));
    }
    let end = part.offset.checked_add(part.data.len() as u64);
    if end.is_none_or(|end| end > part.total_len) {
        return Err(CoreError::invalid(
            &field,
            format!(
                "chunk at offset {} with {} bytes runs past the tensor's {} bytes",
                part.offset,
                part.data.len(),
                part.total_len
            ),
        ));
    }
    if part.data.is_empty() && part.total_len > 0 {
        return Err(CoreError::invalid(&field, "empty chunk"));
    }
    if let Some(stats) = &part.stats {
        if stats.numel != numel {
            return Err(CoreError::invalid(
                &field,
                format!(
                    "statistics count {} elements but shape {:?} has {numel}",
                    stats.numel, part.shape
                ),
            ));
        }
    }
    Ok(())
}

/// Tensors whose parts have started to arrive.
#[derive(Debug, Default)]
pub struct Assembler {
    partials: HashMap<PartialKey, Partial>,
    /// Bytes held by `partials`.
    bytes: u64,
    /// Computes the statistics of completed tensors that came without them.
    codec: Codec,
}

/// A tensor being received: its bytes so far, when its first chunk came,
/// and how much of it a flush wrote to its partial tensor file.
#[derive(Debug)]
struct Partial {
    part: TensorPart,
    /// µs since the epoch (wall clock, so the age limit holds across restarts).
    started_us: i64,
    /// Its file under `partial/`, once a flush wrote one.
    file: Option<String>,
    /// Leading bytes of `part.data` already in that file.
    persisted: u64,
}

impl Assembler {
    /// An assembler that computes missing statistics with `codec`.
    pub fn new(codec: Codec) -> Self {
        Assembler {
            partials: HashMap::new(),
            bytes: 0,
            codec,
        }
    }

    /// Bytes of tensors still being received.
    pub fn partial_bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes `part` would add to what is held, if it does not complete its
    /// tensor (0 when it does).
    pub fn bytes_added_by(&self, part: &TensorPart) -> u64 {
        if part.stats_only {
            return 0;
        }
        let received = if part.offset == 0 {
            0
        } else {
            self.partials
                .get(&PartialKey::of(part))
                .map_or(0, |p| p.part.data.len() as u64)
        };
        let after = received + part.data.len() as u64;
        if after >= part.total_len {
            0
        } else {
            part.data.len() as u64
        }
    }

    /// Drops tensors whose first chunk came more than `max_age` ago;
    /// returns (run, name, step) of each dropped one.
    pub fn drop_older_than(&mut self, max_age: Duration) -> Vec<(String, String, i64)> {
        let cutoff = now_us().saturating_sub(max_age.as_micros().min(i64::MAX as u128) as i64);
        let stale: Vec<PartialKey> = self
            .partials
            .iter()
            .filter(|(_, p)| p.started_us < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        stale
            .into_iter()
            .filter_map(|key| self.remove(&key))
            .map(|p| (p.run_id, p.name, p.step))
            .collect()
    }

    /// Drops the tensors of `run_id` still being received (a deleted run).
    pub(crate) fn drop_run(&mut self, run_id: &str) {
        let keys: Vec<PartialKey> = self
            .partials
            .iter()
            .filter(|(_, p)| p.part.run_id == run_id)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.remove(&key);
        }
    }

    fn remove(&mut self, key: &PartialKey) -> Option<TensorPart> {
        let partial = self.partials.remove(key)?;
        self.bytes -= partial.part.data.len() as u64;
        Some(partial.part)
    }

    /// Holds `part` as the tensor received so far; `keep_start` keeps the
    /// time of the first chunk (a carried-over part is no new tensor).
    fn insert(&mut self, key: PartialKey, part: TensorPart, keep_start: bool) {
        let started_us = match self.partials.get(&key) {
            Some(p) if keep_start => p.started_us,
            _ => now_us(),
        };
        self.remove(&key);
        self.bytes += part.data.len() as u64;
        self.partials.insert(
            key,
            Partial {
                part,
                started_us,
                file: None,
                persisted: 0,
            },
        );
    }

    /// Takes back a tensor recovery found in its partial tensor file: `part`
    /// holds every byte of `file` received so far.
    pub(crate) fn restore(&mut self, part: TensorPart, started_us: i64, file: String) {
        let key = PartialKey::of(&part);
        self.remove(&key);
        self.bytes += part.data.len() as u64;
        let persisted = part.data.len() as u64;
        self.partials.insert(
            key,
            Partial {
                part,
                started_us,
                file: Some(file),
                persisted,
            },
        );
    }

    /// What the next flush writes of every tensor still being received: the
    /// bytes that came since the previous one, to each tensor's file (named
    /// here the first time). Counts them as written: the flusher retries
    /// until they are.
    pub(crate) fn snapshot(&mut self) -> Vec<PartialSnapshot> {
        self.partials
            .values_mut()
            .map(|partial| {
                let path = partial.file.get_or_insert_with(new_partial_path).clone();
                let offset = partial.persisted;
                let delta = partial.part.data[offset as usize..].to_vec();
                partial.persisted = partial.part.data.len() as u64;
                PartialSnapshot {
                    path,
                    offset,
                    delta,
                    header: TensorPart {
                        data: Vec::new(),
                        offset: 0,
                        ..partial.part.clone_header()
                    },
                    started_us: partial.started_us,
                }
            })
            .collect()
    }

    /// Checks that `part` continues what was received (or starts a tensor).
    pub fn check(&self, part: &TensorPart) -> Result<(), CoreError> {
        if part.offset == 0 {
            return Ok(());
        }
        let field = format!("tensor {:?} at step {}", part.name, part.step);
        let Some(partial) = self.partials.get(&PartialKey::of(part)).map(|p| &p.part) else {
            return Err(CoreError::invalid(
                &field,
                format!("chunk at offset {} but no earlier chunk of this tensor was received; send offset 0 first", part.offset),
            ));
        };
        let received = partial.data.len() as u64;
        if part.offset != received {
            let what = if part.offset > received {
                "gap"
            } else {
                "overlap"
            };
            return Err(CoreError::invalid(
                &field,
                format!(
                    "chunk at offset {} but {received} bytes were received so far ({what})",
                    part.offset
                ),
            ));
        }
        if (partial.dtype, &partial.shape, partial.total_len)
            != (part.dtype, &part.shape, part.total_len)
        {
            return Err(CoreError::invalid(
                &field,
                "dtype, shape or length differ from the tensor's first chunk",
            ));
        }
        Ok(())
    }

    /// Applies a checked part; returns the tensor when it is complete.
    /// A part at offset 0 starts the tensor afresh; a `carried_over` part
    /// (one that steplake versions before partial tensor files logged again
    /// at a flush, still found in their logs) replaces what was received.
    pub fn apply(&mut self, part: TensorPart, carried_over: bool) -> Option<TensorRecord> {
        let key = PartialKey::of(&part);
        let complete = if part.stats_only {
            self.remove(&key);
            part
        } else if part.offset == 0 || carried_over {
            if part.data.len() as u64 == part.total_len {
                self.remove(&key);
                part
            } else {
                self.insert(key, part, carried_over);
                return None;
            }
        } else {
            let partial = self.partials.get_mut(&key)?;
            partial.part.data.extend_from_slice(&part.data);
            partial.part.sequence = part.sequence;
            partial.part.stats = part.stats.or(partial.part.stats.take());
            self.bytes += part.data.len() as u64;
            if (partial.part.data.len() as u64) < partial.part.total_len {
                return None;
            }
            self.remove(&key)?
        };
        Some(into_record(complete, &self.codec))
    }

    /// Tensors being received.
    pub fn open(&self) -> usize {
        self.partials.len()
    }
}

/// The record of a complete part, computing statistics when the trainer did
/// not send them.
fn into_record(part: TensorPart, codec: &Codec) -> TensorRecord {
    let stats_only = part.stats_only;
    let stats = match part.stats {
        Some(stats) => stats,
        None => codec.tensor_stats(&part.data, part.dtype),
    };
    TensorRecord {
        name: part.name,
        step: part.step,
        wall_time_us: part.wall_time_us,
        dtype: part.dtype,
        shape: part.shape,
        stats,
        values: (!stats_only).then_some(part.data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steplake_core::DType;

    fn part(offset: u64, data: &[u8]) -> TensorPart {
        TensorPart {
            writer_id: "w".into(),
            sequence: 1 + offset,
            run_id: "run".into(),
            name: "w0".into(),
            step: 3,
            wall_time_us: 0,
            dtype: DType::F32,
            shape: vec![4],
            total_len: 16,
            offset,
            stats_only: false,
            stats: None,
            data: data.to_vec(),
        }
    }

    #[test]
    fn chunks_assemble_in_order_only() {
        let mut assembler = Assembler::default();
        let bytes: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let first = part(0, &bytes[..6]);
        validate_part(&first).expect("valid");
        assert!(assembler.check(&first).is_ok());
        assert!(assembler.apply(first, false).is_none());
        let gap = part(8, &bytes[8..]);
        assert!(assembler
            .check(&gap)
            .unwrap_err()
            .to_string()
            .contains("gap"));
        let overlap = part(4, &bytes[4..]);
        assert!(assembler
            .check(&overlap)
            .unwrap_err()
            .to_string()
            .contains("overlap"));
        assert_eq!(assembler.open(), 1);
        let rest = part(6, &bytes[6..]);
        assembler.check(&rest).expect("continues");
        let record = assembler.apply(rest, false).expect("complete");
        assert_eq!(record.values.as_deref(), Some(&bytes[..]));
        assert_eq!(record.stats.mean, Some(2.5));
        assert_eq!(assembler.open(), 0);
    }

    #[test]
    fn bad_headers_are_rejected() {
        let mut wrong_len = part(0, &[0; 8]);
        wrong_len.total_len = 8;
        assert!(validate_part(&wrong_len)
            .unwrap_err()
            .to_string()
            .contains("needs 16 bytes"));
        let past_end = part(12, &[0; 8]);
        assert!(validate_part(&past_end)
            .unwrap_err()
            .to_string()
            .contains("runs past"));
        let orphan = part(8, &[0; 8]);
        assert!(Assembler::default()
            .check(&orphan)
            .unwrap_err()
            .to_string()
            .contains("offset 0 first"));
    }
}
