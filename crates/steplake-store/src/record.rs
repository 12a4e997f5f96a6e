//! Binary payloads of WAL records.
//!
//! A scalar record is columnar and compact, because every byte of it is
//! copied, checksummed, written and fsynced before the batch is acknowledged:
//!
//! ```text
//! str writer_id | u64 sequence | str run_id
//! u32 name_count | name_count × str
//! u32 n
//! u8 index_width (1, 2 or 4) | n × name_index (LE, that width)
//! n × step        zigzag varint of the difference to the previous step (first: to 0)
//! n × value       f64 LE, bit-exact
//! u8 wall_mode    0: one i64 for every point | 1: n × zigzag varint deltas
//! ```
//!
//! `str` is a u32 LE byte length followed by UTF-8 bytes. A typical point
//! (step-major batch, one wall time per batch) costs about 10 bytes.
//!
//! A batch whose points fired standing conditions is logged as one
//! `ScalarsWithEvents` record, so the batch and its events are durable (or
//! torn) together:
//!
//! ```text
//! scalar record payload (above)
//! events          JSON array of steplake_core::Event
//! u32 LE          byte length of the JSON
//! ```

use steplake_core::{Event, ScalarBatch};

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

const WALL_ALL_EQUAL: u8 = 0;
const WALL_DELTAS: u8 = 1;

/// Appends the payload of a scalar record to `out`.
pub fn encode_scalar_record(
    out: &mut Vec<u8>,
    writer_id: &str,
    sequence: u64,
    run_id: &str,
    batch: &ScalarBatch,
) {
    let n = batch.len();
    out.reserve(64 + n * 12 + batch.names.iter().map(|s| s.len() + 4).sum::<usize>());
    put_str(out, writer_id);
    out.extend_from_slice(&sequence.to_le_bytes());
    put_str(out, run_id);
    out.extend_from_slice(&(batch.names.len() as u32).to_le_bytes());
    for name in &batch.names {
        put_str(out, name);
    }
    out.extend_from_slice(&(n as u32).to_le_bytes());
    match batch.names.len() {
        0..=0x100 => {
            out.push(1);
            out.extend(batch.name_index.iter().map(|&i| i as u8));
        }
        0x101..=0x1_0000 => {
            out.push(2);
            for &i in &batch.name_index {
                out.extend_from_slice(&(i as u16).to_le_bytes());
            }
        }
        _ => {
            out.push(4);
            for &i in &batch.name_index {
                out.extend_from_slice(&i.to_le_bytes());
            }
        }
    }
    put_deltas(out, &batch.steps);
    for v in &batch.values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    match batch.wall_times_us.first() {
        Some(&first) if batch.wall_times_us.iter().all(|&t| t == first) => {
            out.push(WALL_ALL_EQUAL);
            out.extend_from_slice(&first.to_le_bytes());
        }
        _ => {
            out.push(WALL_DELTAS);
            put_deltas(out, &batch.wall_times_us);
        }
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
    let name_index = match r.u8()? {
        1 => r.take(n)?.iter().map(|&b| u32::from(b)).collect(),
        2 => r
            .array(n, u16::from_le_bytes)?
            .into_iter()
            .map(u32::from)
            .collect(),
        4 => r.array(n, u32::from_le_bytes)?,
        _ => return None,
    };
    let steps = r.deltas(n)?;
    let values = r.array(n, f64::from_le_bytes)?;
    let wall_times_us = match r.u8()? {
        WALL_ALL_EQUAL if n == 0 => {
            r.u64()?;
            Vec::new()
        }
        WALL_ALL_EQUAL => vec![r.u64()? as i64; n],
        WALL_DELTAS => r.deltas(n)?,
        _ => return None,
    };
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

/// Appends the events trailer of a `ScalarsWithEvents` record to `out`,
/// which holds the scalar record payload.
pub fn encode_events_trailer(out: &mut Vec<u8>, events: &[Event]) {
    let start = out.len();
    // Serializing plain structs of strings and numbers cannot fail.
    let _ = serde_json::to_writer(&mut *out, events);
    let len = (out.len() - start) as u32;
    out.extend_from_slice(&len.to_le_bytes());
}

/// Splits a `ScalarsWithEvents` payload into the scalar record payload and
/// its events; `None` when it is malformed.
pub fn split_events_trailer(bytes: &[u8]) -> Option<(&[u8], Vec<Event>)> {
    let len_at = bytes.len().checked_sub(4)?;
    let len = u32::from_le_bytes(bytes[len_at..].try_into().ok()?) as usize;
    let json_at = len_at.checked_sub(len)?;
    let events = serde_json::from_slice(&bytes[json_at..len_at]).ok()?;
    Some((&bytes[..json_at], events))
}

/// Appends a `str`: u32 LE byte length, then the UTF-8 bytes.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Zigzag varints of successive differences (wrapping, so any i64 round-trips).
fn put_deltas(out: &mut Vec<u8>, values: &[i64]) {
    let mut previous = 0i64;
    for &v in values {
        let delta = v.wrapping_sub(previous);
        previous = v;
        let mut zz = ((delta << 1) ^ (delta >> 63)) as u64;
        while zz >= 0x80 {
            out.push((zz as u8) | 0x80);
            zz >>= 7;
        }
        out.push(zz as u8);
    }
}

/// Bounds-checked little-endian reads from a record payload.
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(len)?;
        let slice = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    pub(crate) fn string(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    pub(crate) fn array<T, const N: usize>(
        &mut self,
        n: usize,
        from: fn([u8; N]) -> T,
    ) -> Option<Vec<T>> {
        let bytes = self.take(n.checked_mul(N)?)?;
        Some(
            bytes
                .chunks_exact(N)
                .map(|c| from(c.try_into().unwrap_or([0; N])))
                .collect(),
        )
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }

    fn deltas(&mut self, n: usize) -> Option<Vec<i64>> {
        let mut out = Vec::with_capacity(n.min(self.bytes.len()));
        let mut previous = 0i64;
        for _ in 0..n {
            let zz = self.varint()?;
            let delta = ((zz >> 1) as i64) ^ -((zz & 1) as i64);
            previous = previous.wrapping_add(delta);
            out.push(previous);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(batch: &ScalarBatch) -> ScalarRecord {
        let mut buf = Vec::new();
        encode_scalar_record(&mut buf, "w1", 7, "run-a", batch);
        let rec = decode_scalar_record(&buf).expect("decodes");
        assert!(decode_scalar_record(&buf[..buf.len() - 1]).is_none());
        rec
    }

    #[test]
    fn scalar_record_round_trips_bit_exactly() {
        let batch = ScalarBatch {
            names: vec!["loss".into(), "acc/top1".into()],
            name_index: vec![0, 1, 0],
            steps: vec![1, 1, i64::MAX],
            values: vec![f64::NAN, f64::NEG_INFINITY, -0.0],
            wall_times_us: vec![10, 11, i64::MIN],
        };
        let rec = round_trip(&batch);
        assert_eq!(
            (rec.writer_id.as_str(), rec.sequence, rec.run_id.as_str()),
            ("w1", 7, "run-a")
        );
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&rec.batch.values), bits(&batch.values));
        assert_eq!(rec.batch.steps, batch.steps);
        assert_eq!(rec.batch.wall_times_us, batch.wall_times_us);
        assert_eq!(rec.batch.name_index, batch.name_index);
    }

    #[test]
    fn wide_name_sets_and_shared_wall_times_round_trip() {
        for names in [300usize, 70_000] {
            let n = 1000;
            let batch = ScalarBatch {
                names: (0..names).map(|i| format!("s{i}")).collect(),
                name_index: (0..n).map(|i| ((i * 7919) % names) as u32).collect(),
                steps: (0..n as i64).map(|i| i / 3).collect(),
                values: (0..n).map(|i| i as f64 * 0.5).collect(),
                wall_times_us: vec![1_700_000_000_000_000; n],
            };
            assert_eq!(round_trip(&batch).batch, batch);
        }
    }

    #[test]
    fn empty_batch_round_trips() {
        assert_eq!(
            round_trip(&ScalarBatch::default()).batch,
            ScalarBatch::default()
        );
    }
}
