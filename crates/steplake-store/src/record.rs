//! Binary payloads of WAL records.
//!
//! A scalar record is columnar, so encoding is a few `memcpy`s:
//!
//! ```text
//! str writer_id | u64 sequence | str run_id
//! u32 name_count | name_count × str
//! u32 n | n × u32 name_index | n × i64 step | n × f64 value | n × i64 wall_time_us
//! ```
//!
//! `str` is a u32 LE byte length followed by UTF-8 bytes; all numbers are LE.

use steplake_core::ScalarBatch;

/// A decoded scalar record.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarRecord {
    /// Writer that sent the batch.
    pub writer_id: String,
    /// The writer's sequence number for the batch.
    pub sequence: u64,
    /// Run the points belong to.
    pub run_id: String,
    /// The points.
    pub batch: ScalarBatch,
}

/// Appends the payload of a scalar record to `out`.
pub fn encode_scalar_record(
    out: &mut Vec<u8>,
    writer_id: &str,
    sequence: u64,
    run_id: &str,
    batch: &ScalarBatch,
) {
    let n = batch.len();
    out.reserve(64 + n * 28 + batch.names.iter().map(|s| s.len() + 4).sum::<usize>());
    put_str(out, writer_id);
    out.extend_from_slice(&sequence.to_le_bytes());
    put_str(out, run_id);
    out.extend_from_slice(&(batch.names.len() as u32).to_le_bytes());
    for name in &batch.names {
        put_str(out, name);
    }
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for v in &batch.name_index {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in &batch.steps {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in &batch.values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in &batch.wall_times_us {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Decodes a scalar record payload; `None` when it is malformed.
pub fn decode_scalar_record(bytes: &[u8]) -> Option<ScalarRecord> {
    let mut r = Reader { bytes, pos: 0 };
    let writer_id = r.string()?;
    let sequence = r.u64()?;
    let run_id = r.string()?;
    let name_count = r.u32()? as usize;
    let mut names = Vec::with_capacity(name_count.min(1 << 16));
    for _ in 0..name_count {
        names.push(r.string()?);
    }
    let n = r.u32()? as usize;
    let name_index = r.array(n, u32::from_le_bytes)?;
    let steps = r.array(n, i64::from_le_bytes)?;
    let values = r.array(n, f64::from_le_bytes)?;
    let wall_times_us = r.array(n, i64::from_le_bytes)?;
    (r.pos == bytes.len()).then_some(ScalarRecord {
        writer_id,
        sequence,
        run_id,
        batch: ScalarBatch {
            names,
            name_index,
            steps,
            values,
            wall_times_us,
        },
    })
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(len)?;
        let slice = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    fn array<T, const N: usize>(&mut self, n: usize, from: fn([u8; N]) -> T) -> Option<Vec<T>> {
        let bytes = self.take(n.checked_mul(N)?)?;
        Some(
            bytes
                .chunks_exact(N)
                .map(|c| from(c.try_into().unwrap_or([0; N])))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_record_round_trips_bit_exactly() {
        let batch = ScalarBatch {
            names: vec!["loss".into(), "acc/top1".into()],
            name_index: vec![0, 1, 0],
            steps: vec![1, 1, 2],
            values: vec![f64::NAN, f64::NEG_INFINITY, -0.0],
            wall_times_us: vec![10, 11, 12],
        };
        let mut buf = Vec::new();
        encode_scalar_record(&mut buf, "w1", 7, "run-a", &batch);
        let rec = decode_scalar_record(&buf).unwrap();
        assert_eq!(rec.writer_id, "w1");
        assert_eq!(rec.sequence, 7);
        assert_eq!(rec.run_id, "run-a");
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&rec.batch.values), bits(&batch.values));
        assert_eq!(rec.batch.steps, batch.steps);
        assert!(decode_scalar_record(&buf[..buf.len() - 1]).is_none());
    }
}
