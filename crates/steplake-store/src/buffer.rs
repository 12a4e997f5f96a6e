//! The in-memory buffer: acknowledged points not yet in a Parquet file.
//!
//! Points are kept per series (run, name) in plain column vectors, in the
//! order they were written. Reads return each series sorted by step with the
//! latest write of a repeated step, the same view the Parquet files give, and
//! take a [`SeriesFilter`] so that a query for one series copies only it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
    TimestampMicrosecondArray,
};
use arrow::buffer::{Buffer as ArrowBuffer, OffsetBuffer};
use arrow::datatypes::SchemaRef;
use steplake_core::schema::{scalars_col, scalars_schema, TIMESTAMP_TZ};
use steplake_core::{ScalarBatch, TensorRecord};

use crate::SeriesRange;

/// Which series and steps a read wants; `None` means "all".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesFilter {
    /// Only these runs.
    pub run_ids: Option<Vec<String>>,
    /// Only these series names.
    pub names: Option<Vec<String>>,
    /// Only steps >= this.
    pub min_step: Option<i64>,
    /// Only steps <= this.
    pub max_step: Option<i64>,
    /// Never these (run, name) series.
    pub exclude: Vec<(String, String)>,
}

impl SeriesFilter {
    /// Whether a series with this key can match.
    pub fn matches_series(&self, run_id: &str, name: &str) -> bool {
        self.run_ids
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|r| r == run_id))
            && self
                .names
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n == name))
            && !self.exclude.iter().any(|(r, n)| r == run_id && n == name)
    }

    /// Whether a step range `[lo, hi]` can hold a matching step.
    pub fn matches_steps(&self, lo: i64, hi: i64) -> bool {
        self.min_step.is_none_or(|m| hi >= m) && self.max_step.is_none_or(|m| lo <= m)
    }

    /// Whether a series with this key and step range can match.
    pub fn matches_range(&self, range: &SeriesRange) -> bool {
        self.matches_series(&range.run_id, &range.name)
            && self.matches_steps(range.min_step, range.max_step)
    }
}

#[derive(Debug)]
struct SeriesBuf {
    run_id: Arc<str>,
    name: Arc<str>,
    steps: Vec<i64>,
    values: Vec<f64>,
    wall_times_us: Vec<i64>,
    /// True while every step is greater than the one before: then the
    /// vectors are already sorted and free of repeats.
    increasing: bool,
    min_step: i64,
    max_step: i64,
}

impl SeriesBuf {
    /// Appends the rows `rows` (in order) of `batch`, all of this series.
    fn extend_rows(&mut self, rows: &[u32], batch: &ScalarBatch) {
        self.steps.reserve(rows.len());
        self.values.reserve(rows.len());
        self.wall_times_us.reserve(rows.len());
        let mut last = self.steps.last().copied();
        for &row in rows {
            let step = batch.steps[row as usize];
            if let Some(previous) = last {
                self.increasing &= step > previous;
            }
            last = Some(step);
            self.min_step = self.min_step.min(step);
            self.max_step = self.max_step.max(step);
            self.steps.push(step);
        }
        self.values
            .extend(rows.iter().map(|&r| batch.values[r as usize]));
        self.wall_times_us
            .extend(rows.iter().map(|&r| batch.wall_times_us[r as usize]));
    }

    /// Row positions of the series' visible rows within `[min, max]`, in step
    /// order, latest write of each step only.
    fn visible_rows(&self, min: i64, max: i64) -> Visible {
        if self.increasing {
            let lo = self.steps.partition_point(|&s| s < min);
            let hi = self.steps.partition_point(|&s| s <= max);
            return Visible::Range(lo, hi.max(lo));
        }
        let mut order: Vec<u32> = (0..self.steps.len() as u32)
            .filter(|&i| (min..=max).contains(&self.steps[i as usize]))
            .collect();
        // Stable sort keeps write order among equal steps; keep the last one.
        order.sort_by_key(|&i| self.steps[i as usize]);
        let mut latest: Vec<u32> = Vec::with_capacity(order.len());
        for i in order {
            match latest.last_mut() {
                Some(prev) if self.steps[*prev as usize] == self.steps[i as usize] => *prev = i,
                _ => latest.push(i),
            }
        }
        Visible::Rows(latest)
    }

    fn range(&self) -> SeriesRange {
        SeriesRange {
            run_id: self.run_id.to_string(),
            name: self.name.to_string(),
            min_step: self.min_step,
            max_step: self.max_step,
            rows: self.steps.len() as u64,
        }
    }
}

enum Visible {
    Range(usize, usize),
    Rows(Vec<u32>),
}

impl Visible {
    fn len(&self) -> usize {
        match self {
            Visible::Range(lo, hi) => hi - lo,
            Visible::Rows(rows) => rows.len(),
        }
    }

    fn gather<T: Copy>(&self, column: &[T]) -> Vec<T> {
        match self {
            Visible::Range(lo, hi) => column[*lo..*hi].to_vec(),
            Visible::Rows(rows) => rows.iter().map(|&i| column[i as usize]).collect(),
        }
    }
}

/// What a buffered tensor counts toward the flush threshold: its value
/// bytes plus its header.
fn tensor_cost(record: &TensorRecord) -> usize {
    record.values.as_ref().map_or(0, Vec::len) + 1024
}

/// Points of many series, and whole tensors, as written.
#[derive(Debug, Default)]
pub struct Buffer {
    by_run: HashMap<Arc<str>, HashMap<Arc<str>, usize>>,
    series: Vec<SeriesBuf>,
    rows: usize,
    /// Complete tensors with their run, in arrival order.
    tensors: Vec<(Arc<str>, Arc<TensorRecord>)>,
    tensor_bytes: usize,
}

impl Buffer {
    /// Points held (including overwritten repeats).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// True when no point and no tensor is held.
    pub fn is_empty(&self) -> bool {
        self.rows == 0 && self.tensors.is_empty()
    }

    /// Adds a complete, validated tensor of `run_id`.
    pub fn apply_tensor(&mut self, run_id: &str, record: TensorRecord) {
        self.tensor_bytes += tensor_cost(&record);
        self.tensors.push((Arc::from(run_id), Arc::new(record)));
    }

    /// Tensors held, with their runs, in arrival order.
    pub fn tensors(&self) -> &[(Arc<str>, Arc<TensorRecord>)] {
        &self.tensors
    }

    /// Approximate bytes of tensor data held.
    pub fn tensor_bytes(&self) -> usize {
        self.tensor_bytes
    }

    /// Approximate heap bytes held by point data.
    pub fn approx_bytes(&self) -> usize {
        self.rows * 24
    }

    /// Adds a validated batch of points for `run_id`.
    pub fn apply(&mut self, run_id: &str, batch: &ScalarBatch) {
        let run_key: Arc<str> = match self.by_run.get_key_value(run_id) {
            Some((k, _)) => k.clone(),
            None => Arc::from(run_id),
        };
        let slots: Vec<usize> = batch
            .names
            .iter()
            .map(|name| self.series_slot(&run_key, name))
            .collect();
        // Group the batch by series (a counting sort of row numbers, small
        // enough to stay in cache), then append each series' rows in one run.
        // Trainers send step-major batches, where consecutive points belong to
        // different series; pushing them one by one would touch a different
        // set of large vectors for every point.
        let mut starts = vec![0usize; slots.len() + 1];
        for &i in &batch.name_index {
            starts[i as usize + 1] += 1;
        }
        for k in 1..starts.len() {
            starts[k] += starts[k - 1];
        }
        let mut cursor = starts.clone();
        let mut order = vec![0u32; batch.len()];
        for (row, &i) in batch.name_index.iter().enumerate() {
            order[cursor[i as usize]] = row as u32;
            cursor[i as usize] += 1;
        }
        for (k, &slot) in slots.iter().enumerate() {
            let rows = &order[starts[k]..starts[k + 1]];
            if !rows.is_empty() {
                self.series[slot].extend_rows(rows, batch);
            }
        }
        self.rows += batch.len();
    }

    fn series_slot(&mut self, run_id: &Arc<str>, name: &str) -> usize {
        let names = self.by_run.entry(run_id.clone()).or_default();
        if let Some(&slot) = names.get(name) {
            return slot;
        }
        let slot = self.series.len();
        let name: Arc<str> = Arc::from(name);
        names.insert(name.clone(), slot);
        self.series.push(SeriesBuf {
            run_id: run_id.clone(),
            name,
            steps: Vec::new(),
            values: Vec::new(),
            wall_times_us: Vec::new(),
            increasing: true,
            min_step: i64::MAX,
            max_step: i64::MIN,
        });
        slot
    }

    /// Drops every point and tensor of `run_id` (a deleted run).
    pub fn remove_run(&mut self, run_id: &str) {
        if self.by_run.remove(run_id).is_none()
            && !self.tensors.iter().any(|(run, _)| &**run == run_id)
        {
            return;
        }
        self.series.retain(|s| &*s.run_id != run_id);
        self.by_run.clear();
        for (slot, series) in self.series.iter().enumerate() {
            self.by_run
                .entry(series.run_id.clone())
                .or_default()
                .insert(series.name.clone(), slot);
        }
        self.rows = self.series.iter().map(|s| s.steps.len()).sum();
        self.tensors.retain(|(run, _)| &**run != run_id);
        self.tensor_bytes = self.tensors.iter().map(|(_, t)| tensor_cost(t)).sum();
    }

    /// Step ranges of every series held, sorted by (run, name).
    pub fn series_ranges(&self) -> Vec<SeriesRange> {
        let mut ranges: Vec<SeriesRange> = self.series.iter().map(SeriesBuf::range).collect();
        ranges.sort_by(|a, b| (&a.run_id, &a.name).cmp(&(&b.run_id, &b.name)));
        ranges
    }

    /// The visible rows of matching series as batches of the `scalars` schema,
    /// one batch per series, sorted by (run, name, step).
    ///
    /// `projection` selects columns of [`scalars_schema`] (all when `None`).
    pub fn read(&self, filter: &SeriesFilter, projection: Option<&[usize]>) -> Vec<RecordBatch> {
        let mut matching: Vec<&SeriesBuf> = self
            .series
            .iter()
            .filter(|s| {
                filter.matches_series(&s.run_id, &s.name)
                    && filter.matches_steps(s.min_step, s.max_step)
            })
            .collect();
        matching.sort_by(|a, b| (&a.run_id, &a.name).cmp(&(&b.run_id, &b.name)));
        let (min, max) = (
            filter.min_step.unwrap_or(i64::MIN),
            filter.max_step.unwrap_or(i64::MAX),
        );
        matching
            .into_iter()
            .filter_map(|s| {
                let visible = s.visible_rows(min, max);
                (visible.len() > 0).then(|| series_batch(s, &visible, projection))
            })
            .collect()
    }
}

fn series_batch(s: &SeriesBuf, visible: &Visible, projection: Option<&[usize]>) -> RecordBatch {
    let full = scalars_schema();
    let all: Vec<usize> = (0..full.fields().len()).collect();
    let projection = projection.unwrap_or(&all);
    let n = visible.len();
    let columns: Vec<ArrayRef> = projection
        .iter()
        .map(|&col| -> ArrayRef {
            match col {
                scalars_col::RUN_ID => Arc::new(repeated_string(&s.run_id, n)),
                scalars_col::NAME => Arc::new(repeated_string(&s.name, n)),
                scalars_col::STEP => Arc::new(Int64Array::from(visible.gather(&s.steps))),
                scalars_col::VALUE => Arc::new(Float64Array::from(visible.gather(&s.values))),
                _ => Arc::new(
                    TimestampMicrosecondArray::from(visible.gather(&s.wall_times_us))
                        .with_timezone(TIMESTAMP_TZ),
                ),
            }
        })
        .collect();
    let schema: SchemaRef = Arc::new(full.project(projection).unwrap_or_else(|_| (*full).clone()));
    let options = RecordBatchOptions::new().with_row_count(Some(n));
    RecordBatch::try_new_with_options(schema, columns, &options)
        .expect("buffer columns match the scalars schema by construction")
}

/// A string column holding `value` `n` times, built with two allocations.
fn repeated_string(value: &str, n: usize) -> StringArray {
    let len = value.len();
    let offsets: Vec<i32> = (0..=n).map(|i| (i * len) as i32).collect();
    let bytes = value.as_bytes().repeat(n);
    StringArray::new(
        OffsetBuffer::new(offsets.into()),
        ArrowBuffer::from_vec(bytes),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{Float64Type, Int64Type};

    fn batch(steps: &[i64], values: &[f64]) -> ScalarBatch {
        ScalarBatch {
            names: vec!["loss".into()],
            name_index: vec![0; steps.len()],
            steps: steps.to_vec(),
            values: values.to_vec(),
            wall_times_us: vec![0; steps.len()],
        }
    }

    #[test]
    fn repeated_steps_show_the_latest_write_in_step_order() {
        let mut buf = Buffer::default();
        buf.apply("r", &batch(&[1, 2, 3], &[1.0, 2.0, 3.0]));
        buf.apply("r", &batch(&[2, 0], &[20.0, 0.5]));
        let out = buf.read(&SeriesFilter::default(), None);
        assert_eq!(out.len(), 1);
        let steps: Vec<i64> = out[0]
            .column(2)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        let values: Vec<f64> = out[0]
            .column(3)
            .as_primitive::<Float64Type>()
            .values()
            .to_vec();
        assert_eq!(steps, vec![0, 1, 2, 3]);
        assert_eq!(values, vec![0.5, 1.0, 20.0, 3.0]);
    }

    #[test]
    fn filters_select_series_and_steps() {
        let mut buf = Buffer::default();
        buf.apply("r", &batch(&[1, 2, 3, 4], &[1.0, 2.0, 3.0, 4.0]));
        buf.apply("other", &batch(&[1], &[1.0]));
        let filter = SeriesFilter {
            run_ids: Some(vec!["r".into()]),
            min_step: Some(2),
            max_step: Some(3),
            ..Default::default()
        };
        let out = buf.read(&filter, Some(&[scalars_col::STEP]));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].num_columns(), 1);
        assert_eq!(out[0].num_rows(), 2);
        let out = buf.read(&filter, Some(&[]));
        assert_eq!(
            out[0].num_rows(),
            2,
            "an empty projection still counts rows"
        );
    }
}
