//! WAL payload of a tensor part: one chunk of a tensor (or the whole tensor,
//! or a stats-only tensor), with its header.
//!
//! ```text
//! u8 version (1)
//! str writer_id | u64 sequence | str run_id | str name
//! i64 step | i64 wall_time_us | u8 dtype (index in DType::ALL)
//! u32 ndims | ndims × u64 shape
//! u64 total_len (bytes of the whole tensor; 0 for stats only)
//! u64 offset (of this chunk's bytes)
//! u8 flags: 1 carried over (re-logged partial, applied regardless of
//!           sequence), 2 statistics present, 4 values absent (stats only)
//! [statistics, when flag 2]
//! u64 len | len bytes of data
//! ```
//!
//! Statistics: u64 numel | 7 × (u8 present, f64) for mean, std, min, max,
//! abs_max, zero_frac, l2 (l2 always present) | u64 nan | u64 inf |
//! u32 bins × u64 | u8 present, u32 n × f64 quantiles.

use steplake_core::{DType, TensorStats};

use crate::record::{put_str, Reader};

/// Applied regardless of sequence: a partial tensor re-logged at a flush.
const FLAG_CARRIED_OVER: u8 = 1;
/// Statistics sent by the trainer follow the header.
const FLAG_STATS: u8 = 2;
/// No values: the trainer sent statistics only.
const FLAG_STATS_ONLY: u8 = 4;

/// One decoded tensor part.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorPart {
    /// Writer that sent it.
    pub writer_id: String,
    /// The writer's sequence number for it.
    pub sequence: u64,
    /// Run.
    pub run_id: String,
    /// Tensor name.
    pub name: String,
    /// Step.
    pub step: i64,
    /// Wall-clock time, µs since the epoch.
    pub wall_time_us: i64,
    /// Element type.
    pub dtype: DType,
    /// Dimensions.
    pub shape: Vec<u64>,
    /// Bytes of the whole tensor (0 when stats only).
    pub total_len: u64,
    /// Offset of `data` in the tensor.
    pub offset: u64,
    /// The trainer sent statistics only, no values.
    pub stats_only: bool,
    /// Statistics computed by the trainer, when sent.
    pub stats: Option<TensorStats>,
    /// This chunk's bytes.
    pub data: Vec<u8>,
}

impl TensorPart {
    /// A copy of everything but the data (left empty).
    pub(crate) fn clone_header(&self) -> TensorPart {
        TensorPart {
            writer_id: self.writer_id.clone(),
            sequence: self.sequence,
            run_id: self.run_id.clone(),
            name: self.name.clone(),
            step: self.step,
            wall_time_us: self.wall_time_us,
            dtype: self.dtype,
            shape: self.shape.clone(),
            total_len: self.total_len,
            offset: self.offset,
            stats_only: self.stats_only,
            stats: self.stats.clone(),
            data: Vec::new(),
        }
    }
}

fn put_f64_option(out: &mut Vec<u8>, value: Option<f64>) {
    out.push(value.is_some() as u8);
    out.extend_from_slice(&value.unwrap_or(0.0).to_le_bytes());
}

/// Appends the payload of `part` to `out`; `carried_over` marks a partial
/// tensor logged again (the store's own record, applied regardless of the
/// writer's sequence).
pub fn encode_tensor_part(out: &mut Vec<u8>, part: &TensorPart, carried_over: bool) {
    out.reserve(128 + part.data.len());
    out.push(1);
    put_str(out, &part.writer_id);
    out.extend_from_slice(&part.sequence.to_le_bytes());
    put_str(out, &part.run_id);
    put_str(out, &part.name);
    out.extend_from_slice(&part.step.to_le_bytes());
    out.extend_from_slice(&part.wall_time_us.to_le_bytes());
    let dtype_index = DType::ALL
        .iter()
        .position(|&d| d == part.dtype)
        .unwrap_or(0);
    out.push(dtype_index as u8);
    out.extend_from_slice(&(part.shape.len() as u32).to_le_bytes());
    for d in &part.shape {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&part.total_len.to_le_bytes());
    out.extend_from_slice(&part.offset.to_le_bytes());
    let flags = if carried_over { FLAG_CARRIED_OVER } else { 0 }
        | if part.stats.is_some() { FLAG_STATS } else { 0 }
        | if part.stats_only { FLAG_STATS_ONLY } else { 0 };
    out.push(flags);
    if let Some(stats) = &part.stats {
        out.extend_from_slice(&stats.numel.to_le_bytes());
        for value in [
            stats.mean,
            stats.std,
            stats.min,
            stats.max,
            stats.abs_max,
            stats.zero_frac,
            Some(stats.l2),
        ] {
            put_f64_option(out, value);
        }
        out.extend_from_slice(&stats.nan_count.to_le_bytes());
        out.extend_from_slice(&stats.inf_count.to_le_bytes());
        out.extend_from_slice(&(stats.histogram.len() as u32).to_le_bytes());
        for c in &stats.histogram {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.push(stats.quantiles.is_some() as u8);
        let quantiles = stats.quantiles.as_deref().unwrap_or(&[]);
        out.extend_from_slice(&(quantiles.len() as u32).to_le_bytes());
        for q in quantiles {
            out.extend_from_slice(&q.to_le_bytes());
        }
    }
    out.extend_from_slice(&(part.data.len() as u64).to_le_bytes());
    out.extend_from_slice(&part.data);
}

fn f64_option(r: &mut Reader<'_>) -> Option<Option<f64>> {
    let present = r.u8()? != 0;
    let value = f64::from_bits(r.u64()?);
    Some(present.then_some(value))
}

/// Decodes a payload written by [`encode_tensor_part`]: the part and
/// whether it was carried over; `None` when malformed.
pub fn decode_tensor_part(bytes: &[u8]) -> Option<(TensorPart, bool)> {
    let mut r = Reader { bytes, pos: 0 };
    if r.u8()? != 1 {
        return None;
    }
    let writer_id = r.string()?;
    let sequence = r.u64()?;
    let run_id = r.string()?;
    let name = r.string()?;
    let step = r.u64()? as i64;
    let wall_time_us = r.u64()? as i64;
    let dtype = *DType::ALL.get(r.u8()? as usize)?;
    let ndims = r.u32()? as usize;
    let shape = r.array(ndims, u64::from_le_bytes)?;
    let total_len = r.u64()?;
    let offset = r.u64()?;
    let flags = r.u8()?;
    let stats = if flags & FLAG_STATS != 0 {
        let numel = r.u64()?;
        let mut values = [None; 7];
        for v in &mut values {
            *v = f64_option(&mut r)?;
        }
        let [mean, std, min, max, abs_max, zero_frac, l2] = values;
        let nan_count = r.u64()?;
        let inf_count = r.u64()?;
        let bins = r.u32()? as usize;
        let histogram = r.array(bins, u64::from_le_bytes)?;
        let has_quantiles = r.u8()? != 0;
        let n = r.u32()? as usize;
        let quantiles = r.array(n, f64::from_le_bytes)?;
        Some(TensorStats {
            numel,
            mean,
            std,
            min,
            max,
            l2: l2.unwrap_or(0.0),
            abs_max,
            nan_count,
            inf_count,
            zero_frac,
            histogram,
            quantiles: has_quantiles.then_some(quantiles),
        })
    } else {
        None
    };
    let len = r.u64()? as usize;
    let data = r.take(len)?.to_vec();
    let part = TensorPart {
        writer_id,
        sequence,
        run_id,
        name,
        step,
        wall_time_us,
        dtype,
        shape,
        total_len,
        offset,
        stats_only: flags & FLAG_STATS_ONLY != 0,
        stats,
        data,
    };
    (r.pos == bytes.len()).then_some((part, flags & FLAG_CARRIED_OVER != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(stats: Option<TensorStats>) -> TensorPart {
        TensorPart {
            writer_id: "w".into(),
            sequence: 7,
            run_id: "run".into(),
            name: "layer.0.weight".into(),
            step: 1000,
            wall_time_us: 1_700_000_000_000_000,
            dtype: DType::Bf16,
            shape: vec![2, 3],
            total_len: 12,
            offset: 4,
            stats_only: false,
            stats,
            data: vec![1, 2, 3, 4, 5, 6, 7, 8],
        }
    }

    #[test]
    fn parts_round_trip() {
        let stats = TensorStats {
            numel: 6,
            mean: Some(0.5),
            std: None,
            min: Some(-1.0),
            max: Some(f64::INFINITY),
            l2: 3.0,
            abs_max: Some(2.0),
            nan_count: 1,
            inf_count: 0,
            zero_frac: Some(0.25),
            histogram: vec![1; 64],
            quantiles: Some(vec![0.1; 7]),
        };
        for p in [part(None), part(Some(stats))] {
            let mut bytes = Vec::new();
            for carried in [false, true] {
                bytes.clear();
                encode_tensor_part(&mut bytes, &p, carried);
                let decoded = decode_tensor_part(&bytes).expect("decodes");
                assert_eq!(decoded, (p.clone(), carried));
            }
            assert!(decode_tensor_part(&bytes[..bytes.len() - 1]).is_none());
        }
    }
}
