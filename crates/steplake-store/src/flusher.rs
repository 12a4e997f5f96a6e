//! The flusher thread: writes frozen buffers as Parquet files, records them
//! in the manifest, and deletes the WAL segments the manifest then covers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use steplake_core::schema::scalars_col;
use steplake_core::{RunInfo, TensorRecord};

use crate::apply::WatchCatalog;
use crate::partial_files::{remove_unlisted_partials, write_partials, PartialSnapshot};
use crate::provenance::Filed;
use crate::shared::{read_state, write_state, Shared};
use crate::{compactor, deleter};
use crate::{
    files, now_us, tensor_files, wal, Buffer, DataFile, SeriesFilter, SeriesRange, StoreError,
    Table, WriterState,
};

pub(crate) struct FlushJob {
    pub(crate) file_id: u64,
    pub(crate) buffer: Arc<Buffer>,
    pub(crate) covered_lsn: u64,
    /// What the tensors still being received at `covered_lsn` add to
    /// their partial tensor files.
    pub(crate) partials: Vec<PartialSnapshot>,
    pub(crate) runs: BTreeMap<String, RunInfo>,
    /// The standing conditions and events as of `covered_lsn`.
    pub(crate) watch: WatchCatalog,
    pub(crate) writers: BTreeMap<String, WriterState>,
    /// Runs deleted since the previous flush: their rows leave every listed
    /// file in this flush's manifest write (see `deleter`).
    pub(crate) deleted_runs: Vec<String>,
    /// Callers waiting for this flush.
    pub(crate) replies: Vec<mpsc::Sender<Result<(), String>>>,
    /// Callers waiting for this flush and the compaction passes after it.
    pub(crate) compacted_replies: Vec<mpsc::Sender<Result<(), String>>>,
}

/// Writers idle longer than this are dropped from the manifest.
pub(crate) const WRITER_RETENTION_US: i64 = 30 * 24 * 3600 * 1_000_000;

/// Writes frozen buffers in order. A flush that fails is retried until it
/// succeeds: skipping it would let a later flush advance the WAL coverage past
/// points that are in no file. Only at shutdown does the flusher give up, and
/// then it writes nothing after the failed job, so the WAL still holds all of it.
pub(crate) fn run_flusher(shared: Arc<Shared>, jobs: mpsc::Receiver<FlushJob>) {
    let mut gave_up: Option<String> = None;
    let mut filed = Filed::default();
    for job in jobs {
        let result = match &gave_up {
            Some(reason) => Err(reason.clone()),
            None => flush_with_retries(&shared, &job, &mut filed),
        };
        if let Err(reason) = &result {
            gave_up = Some(reason.clone());
        }
        shared.release_flush_slot();
        for reply in &job.replies {
            let _ = reply.send(result.clone());
        }
        if result.is_ok() {
            compact_while_idle(&shared);
        }
        for reply in &job.compacted_replies {
            let _ = reply.send(result.clone());
        }
    }
}

/// Compaction passes while any is due and no flush waits: a backlog of
/// small files is merged between flushes without delaying one by more
/// than a pass.
fn compact_while_idle(shared: &Shared) {
    while !shared.shutting_down.load(Ordering::SeqCst) && shared.flushes_pending() == 0 {
        match compactor::compact_if_due(shared) {
            Ok(true) => {}
            Ok(false) => break,
            // A failed pass changes nothing listed; the next flush tries again.
            Err(e) => {
                tracing::warn!(error = %e, "compacting data files failed; they stay as they are");
                break;
            }
        }
    }
}

pub(crate) fn flush_with_retries(
    shared: &Shared,
    job: &FlushJob,
    filed: &mut Filed,
) -> Result<(), String> {
    let mut attempt = 0u32;
    loop {
        match flush_one(shared, job, filed) {
            Ok(wrote_files) => {
                if wrote_files {
                    filed.filed(&job.runs, &job.writers);
                }
                return Ok(());
            }
            Err(e) => {
                attempt += 1;
                tracing::error!(error = %e, attempt, "flushing the buffer to Parquet failed; its points stay in the WAL and in memory, retrying");
                if shared.shutting_down.load(Ordering::SeqCst) && attempt >= 3 {
                    return Err(format!(
                        "flush failed at shutdown ({e}); the points stay in the WAL and will be recovered at the next start"
                    ));
                }
                std::thread::sleep(Duration::from_millis(
                    (250 * u64::from(attempt)).min(10_000),
                ));
            }
        }
    }
}

/// Writes one frozen buffer's files and the manifest that lists them;
/// returns whether any data file was written.
pub(crate) fn flush_one(
    shared: &Shared,
    job: &FlushJob,
    filed: &Filed,
) -> Result<bool, StoreError> {
    let started = Instant::now();
    let batches = job.buffer.read(&SeriesFilter::default(), None);
    let mut manifest = read_state(shared).manifest.clone();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let tensors = sorted_tensors(job.buffer.tensors());
    let series: Vec<SeriesRange> = batches.iter().filter_map(series_range_of).collect();
    let run_ids: BTreeSet<&str> = series
        .iter()
        .map(|s| s.run_id.as_str())
        .chain(tensors.iter().map(|(run, _)| run.as_str()))
        .collect();
    let key_values = filed
        .provenance(
            job.file_id,
            job.covered_lsn,
            &job.runs,
            &job.writers,
            &run_ids,
        )
        .key_values();
    // Paths of the files written, to publish and then drop locally.
    let mut written_paths = Vec::new();
    if rows > 0 {
        let relative = format!(
            "data/{}",
            files::data_file_name(job.file_id, &shared.incarnation)
        );
        let written =
            files::write_scalars_file(&shared.data_dir.join(&relative), &batches, &key_values)?;
        shared.storage.publish(&shared.data_dir, &relative)?;
        written_paths.push(relative.clone());
        manifest.files.push(DataFile {
            table: Table::Scalars,
            id: job.file_id,
            path: relative,
            rows: rows as u64,
            bytes: written.bytes,
            crc32: Some(written.crc32),
            series,
        });
        shared.stats.files_flushed.fetch_add(1, Ordering::Relaxed);
    }
    if !tensors.is_empty() {
        let relative = format!(
            "data/{}",
            tensor_files::tensor_file_name(job.file_id, &shared.incarnation)
        );
        let written = tensor_files::write_tensors_file(
            &shared.data_dir.join(&relative),
            &tensors,
            &shared.codec,
            &key_values,
        )?;
        shared.storage.publish(&shared.data_dir, &relative)?;
        written_paths.push(relative.clone());
        manifest.files.push(DataFile {
            table: Table::Tensors,
            id: job.file_id,
            path: relative,
            rows: tensors.len() as u64,
            bytes: written.bytes,
            crc32: Some(written.crc32),
            series: tensor_ranges(&tensors),
        });
        shared.stats.files_flushed.fetch_add(1, Ordering::Relaxed);
    }
    let mut replaced_ids = Vec::new();
    if !job.deleted_runs.is_empty() {
        let runs: BTreeSet<String> = job.deleted_runs.iter().cloned().collect();
        let (rewritten, replaced) = deleter::drop_runs(shared, &mut manifest, &runs)?;
        written_paths.extend(rewritten);
        replaced_ids = replaced;
    }
    let cutoff = now_us() - WRITER_RETENTION_US;
    manifest.partial_tensors = write_partials(&shared.data_dir, &job.partials)?;
    manifest.covered_lsn = manifest.covered_lsn.max(job.covered_lsn);
    manifest.next_file_id = manifest.next_file_id.max(job.file_id + 1);
    manifest.runs = job.runs.clone();
    manifest.conditions = job.watch.conditions.clone();
    manifest.events = job.watch.events.clone();
    manifest.writers = job
        .writers
        .iter()
        .filter(|(_, w)| w.last_seen_us >= cutoff)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    shared.store_manifest(&manifest)?;
    shared
        .storage
        .drop_local_copies(&shared.data_dir, &written_paths);
    remove_unlisted_partials(&shared.data_dir, &manifest.partial_tensors);
    {
        let mut state = write_state(shared);
        state.manifest = manifest;
        state.frozen.retain(|f| f.file_id != job.file_id);
    }
    for id in replaced_ids {
        shared.forget_verified(id);
    }
    shared
        .stats
        .flush_millis
        .fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    let deleted = wal::delete_covered_segments(&wal::wal_dir(&shared.data_dir), job.covered_lsn)?;
    tracing::debug!(
        file_id = job.file_id,
        rows,
        deleted_segments = deleted,
        "flushed buffer"
    );
    Ok(rows > 0 || !tensors.is_empty())
}

/// Tensors sorted by (run, name, step); of a step written more than once
/// only the latest write is kept.
pub(crate) fn sorted_tensors(
    tensors: &[(Arc<str>, Arc<TensorRecord>)],
) -> Vec<(String, TensorRecord)> {
    let mut rows: Vec<(String, TensorRecord)> = tensors
        .iter()
        .map(|(run, t)| (run.to_string(), TensorRecord::clone(t)))
        .collect();
    // Stable: equal keys stay in arrival order, so the last of a run is the latest.
    rows.sort_by(|a, b| (&a.0, &a.1.name, a.1.step).cmp(&(&b.0, &b.1.name, b.1.step)));
    let mut latest: Vec<(String, TensorRecord)> = Vec::with_capacity(rows.len());
    for row in rows {
        match latest.last_mut() {
            Some(last)
                if (&last.0, &last.1.name, last.1.step) == (&row.0, &row.1.name, row.1.step) =>
            {
                *last = row
            }
            _ => latest.push(row),
        }
    }
    latest
}

/// Per (run, name) step ranges of sorted tensors.
pub(crate) fn tensor_ranges(rows: &[(String, TensorRecord)]) -> Vec<SeriesRange> {
    let mut ranges: Vec<SeriesRange> = Vec::new();
    for (run, t) in rows {
        match ranges.last_mut() {
            Some(r) if r.run_id == *run && r.name == t.name => {
                r.max_step = r.max_step.max(t.step);
                r.rows += 1;
            }
            _ => ranges.push(SeriesRange {
                run_id: run.clone(),
                name: t.name.clone(),
                min_step: t.step,
                max_step: t.step,
                rows: 1,
            }),
        }
    }
    ranges
}

/// The step range of a one-series batch from [`Buffer::read`].
pub(crate) fn series_range_of(batch: &RecordBatch) -> Option<SeriesRange> {
    let steps = batch.column(scalars_col::STEP).as_primitive::<Int64Type>();
    let run_id = batch.column(scalars_col::RUN_ID).as_string::<i32>();
    let name = batch.column(scalars_col::NAME).as_string::<i32>();
    if batch.num_rows() == 0 {
        return None;
    }
    Some(SeriesRange {
        run_id: run_id.value(0).to_string(),
        name: name.value(0).to_string(),
        min_step: steps.value(0),
        max_step: steps.value(batch.num_rows() - 1),
        rows: batch.num_rows() as u64,
    })
}
