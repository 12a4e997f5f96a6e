//! Views for queries: what one scan reads, taken under one lock.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::RecordBatch;
use steplake_core::TensorRecord;

use crate::shared::{read_state, State};
use crate::StoreError;
use crate::{Manifest, SeriesFilter, SeriesRange, Store, Table};

/// A source of buffered rows as returned by [`Store::scalars_view`].
#[derive(Debug, Clone)]
pub struct BufferedRows {
    /// Larger versions hold later writes. Frozen buffers carry the id their
    /// file will get; the active buffer `u64::MAX`.
    pub version: u64,
    /// Visible rows, one batch per series, sorted by (run, name, step).
    pub batches: Vec<RecordBatch>,
}

/// A consistent view of the `scalars` table for one query.
#[derive(Debug, Clone)]
pub struct ScalarsView {
    /// What file paths are relative to: the data directory, or the bucket
    /// prefix's URL.
    pub root: String,
    /// Data files that can hold matching rows, oldest first.
    pub files: Vec<FileRef>,
    /// Buffered rows, oldest source first.
    pub buffered: Vec<BufferedRows>,
}

impl ScalarsView {
    /// Where a data file is: a path, or an object-store URL.
    pub fn file_url(&self, file: &FileRef) -> String {
        file_url(&self.root, file)
    }
}

/// `file`'s path under `root`.
fn file_url(root: &str, file: &FileRef) -> String {
    format!("{}/{}", root.trim_end_matches('/'), file.path)
}

/// A consistent view of the `tensors` table for one query.
#[derive(Debug, Clone)]
pub struct TensorsView {
    /// What file paths are relative to (see [`ScalarsView::root`]).
    pub root: String,
    /// Tensor files that can hold matching rows, oldest first.
    pub files: Vec<FileRef>,
    /// Buffered tensors with their runs, oldest first (all newer than the files).
    pub buffered: Vec<(Arc<str>, Arc<TensorRecord>)>,
    /// Whether some (run, name, step) may be held more than once among these
    /// sources (a step written again): the reader must keep the latest.
    pub repeated: bool,
}

impl TensorsView {
    /// Where a tensor file is: a path, or an object-store URL.
    pub fn file_url(&self, file: &FileRef) -> String {
        file_url(&self.root, file)
    }
}

/// A data file as a query needs it: its version, where it is, and what
/// [`Store::verify_files`] checks it against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// The file id, which is also its version: larger ids hold later writes.
    pub id: u64,
    /// Path relative to the data directory.
    pub path: String,
    /// Size in bytes as written.
    pub bytes: u64,
    /// CRC-32 as written, when recorded.
    pub crc32: Option<u32>,
}

impl Store {
    /// Checks, before a query reads them, that `files` are whole and
    /// unchanged since they were written (size and CRC-32), each once per
    /// open: data files never change after they are written. A damaged file
    /// is an error naming it; the caller reads nothing of it. Files in a
    /// bucket are not read whole for this: the object store checks what it
    /// stores, and a Parquet reader fails on a damaged page.
    pub fn verify_files(&self, files: &[FileRef]) -> Result<(), StoreError> {
        for file in self.unverified(files) {
            let path = self.shared.data_dir.join(&file.path);
            crate::files::verify_data_file(&path, file.bytes, file.crc32)?;
            self.shared.mark_verified(file.id);
        }
        Ok(())
    }

    /// Those of `files` [`Store::verify_files`] has not checked since the
    /// open (usually none: a query can skip the check without blocking).
    pub fn unverified(&self, files: &[FileRef]) -> Vec<FileRef> {
        if self.shared.storage.bucket().is_some() {
            return Vec::new();
        }
        files
            .iter()
            .filter(|f| !self.shared.is_verified(f.id))
            .cloned()
            .collect()
    }

    /// The tensor files and buffered tensors that can match `filter`, taken
    /// at one instant (buffered ones with their runs, oldest first).
    pub fn tensors_view(&self, filter: &SeriesFilter) -> TensorsView {
        let state = read_state(&self.shared);
        let files = files_of(&state, Table::Tensors, filter);
        let buffered: Vec<(Arc<str>, Arc<TensorRecord>)> = state
            .frozen
            .iter()
            .map(|f| f.buffer.as_ref())
            .chain(std::iter::once(&state.active))
            .flat_map(|b| b.tensors().iter())
            .filter(|(run, t)| {
                filter.matches_series(run, &t.name) && filter.matches_steps(t.step, t.step)
            })
            .cloned()
            .collect();
        let repeated = tensors_repeat(&state.manifest, filter, &buffered);
        TensorsView {
            root: self.shared.root(),
            files,
            buffered,
            repeated,
        }
    }

    /// The files and buffered rows that can match `filter`, taken at one instant.
    pub fn scalars_view(&self, filter: &SeriesFilter, projection: Option<&[usize]>) -> ScalarsView {
        let state = read_state(&self.shared);
        scalars_view_of(&state, &self.shared.root(), filter, projection)
    }

    /// What one scan of `scalars` reads, all taken under one lock: the
    /// rewritten series, the sources of every other series (projected), and
    /// the sources of the rewritten ones (whole rows, with versions, for
    /// latest-write resolution). A write or flush between separate calls
    /// could otherwise let a series be read as not rewritten from sources
    /// that already hold it twice.
    pub fn scalars_snapshot(
        &self,
        filter: &SeriesFilter,
        projection: Option<&[usize]>,
    ) -> ScalarsSnapshot {
        let state = read_state(&self.shared);
        let root = &self.shared.root();
        let rewritten = rewritten_series_of(&state, filter);
        let others = SeriesFilter {
            exclude: rewritten.iter().cloned().collect(),
            ..filter.clone()
        };
        let streaming = scalars_view_of(&state, root, &others, projection);
        let latest = (!rewritten.is_empty()).then(|| {
            let only_rewritten = SeriesFilter {
                run_ids: Some(rewritten.iter().map(|(r, _)| r.clone()).collect()),
                names: Some(rewritten.iter().map(|(_, n)| n.clone()).collect()),
                ..filter.clone()
            };
            scalars_view_of(&state, root, &only_rewritten, None)
        });
        ScalarsSnapshot {
            rewritten,
            streaming,
            latest,
        }
    }

    /// Every scalar series held, from the manifest and the buffer without
    /// reading a data file: its run, name, smallest and largest step, and
    /// its points. None when that cannot be exact: a listed file does not
    /// record its series (an older manifest), or some series is held by
    /// two sources with overlapping steps (a step written again, which a
    /// query counts once); then ask SQL.
    pub fn scalar_series(&self) -> Option<Vec<SeriesRange>> {
        let state = read_state(&self.shared);
        let unrecorded = state
            .manifest
            .files
            .iter()
            .filter(|f| f.table == Table::Scalars)
            .any(|f| f.series.iter().map(|s| s.rows).sum::<u64>() != f.rows);
        if unrecorded {
            return None;
        }
        let buffered = buffered_ranges(&state);
        let mut series = Vec::new();
        for ((run_id, name), spans) in by_series(file_ranges(&state).chain(&buffered)) {
            if overlapping(&spans) {
                return None;
            }
            series.push(SeriesRange {
                run_id: run_id.to_string(),
                name: name.to_string(),
                min_step: spans.iter().map(|r| r.min_step).min()?,
                max_step: spans.iter().map(|r| r.max_step).max()?,
                rows: spans.iter().map(|r| r.rows).sum(),
            });
        }
        series.sort_by(|a, b| (&a.run_id, &a.name).cmp(&(&b.run_id, &b.name)));
        Some(series)
    }

    /// The series of the listed `scalars` data file whose name (last path
    /// component) is `file_name`, in the file's row order: the file's rows
    /// are sorted by (run, name, step), so a series' rows follow those of
    /// the series listed before it, and its last row holds its largest
    /// step. None if no such file is listed, or if its series do not
    /// account for every row of it.
    pub fn scalars_file_series(&self, file_name: &str) -> Option<Vec<SeriesRange>> {
        let state = read_state(&self.shared);
        let file =
            state.manifest.files.iter().find(|f| {
                f.table == Table::Scalars && f.path.rsplit('/').next() == Some(file_name)
            })?;
        let rows: u64 = file.series.iter().map(|s| s.rows).sum();
        (rows == file.rows).then(|| file.series.clone())
    }
}

/// Whether a (run, name, step) matching `filter` may be held twice: by two
/// tensor files with overlapping step ranges of a series, by a file and the
/// buffer, or twice in the buffer.
pub(crate) fn tensors_repeat(
    manifest: &Manifest,
    filter: &SeriesFilter,
    buffered: &[(Arc<str>, Arc<TensorRecord>)],
) -> bool {
    let mut spans: HashMap<(&str, &str), Vec<(i64, i64)>> = HashMap::new();
    let ranges = manifest
        .files
        .iter()
        .filter(|f| f.table == Table::Tensors)
        .flat_map(|f| f.series.iter())
        .filter(|r| filter.matches_range(r));
    for r in ranges {
        spans
            .entry((r.run_id.as_str(), r.name.as_str()))
            .or_default()
            .push((r.min_step, r.max_step));
    }
    let mut seen = std::collections::HashSet::new();
    for (run, t) in buffered {
        if !seen.insert((run.as_ref(), t.name.as_str(), t.step)) {
            return true;
        }
        spans
            .entry((run.as_ref(), t.name.as_str()))
            .or_default()
            .push((t.step, t.step));
    }
    spans.into_values().any(|mut s| {
        s.sort_unstable();
        s.windows(2).any(|w| w[1].0 <= w[0].1)
    })
}

/// One scan's sources of `scalars`, taken at one instant
/// ([`Store::scalars_snapshot`]).
#[derive(Debug, Clone)]
pub struct ScalarsSnapshot {
    /// Series held twice with overlapping steps (need latest-write resolution).
    pub rewritten: BTreeSet<(String, String)>,
    /// Every other matching series, projected.
    pub streaming: ScalarsView,
    /// The rewritten series, whole rows with source versions (none when
    /// nothing is rewritten).
    pub latest: Option<ScalarsView>,
}

/// The files and buffered rows of `state` that can match `filter`.
fn scalars_view_of(
    state: &State,
    root: &str,
    filter: &SeriesFilter,
    projection: Option<&[usize]>,
) -> ScalarsView {
    let files = files_of(state, Table::Scalars, filter);
    let mut buffered: Vec<BufferedRows> = state
        .frozen
        .iter()
        .map(|f| BufferedRows {
            version: f.file_id,
            batches: f.buffer.read(filter, projection),
        })
        .collect();
    buffered.push(BufferedRows {
        version: u64::MAX,
        batches: state.active.read(filter, projection),
    });
    buffered.retain(|b| !b.batches.is_empty());
    ScalarsView {
        root: root.to_string(),
        files,
        buffered,
    }
}

/// Series matching `filter` that more than one source (file or buffer)
/// holds with overlapping step ranges: only they can have a repeated
/// (run, name, step), so only they need latest-write resolution.
fn rewritten_series_of(state: &State, filter: &SeriesFilter) -> BTreeSet<(String, String)> {
    let buffered = buffered_ranges(state);
    let matching = file_ranges(state)
        .chain(&buffered)
        .filter(|r| filter.matches_range(r));
    by_series(matching)
        .into_iter()
        .filter(|(_, spans)| overlapping(spans))
        .map(|((run, name), _)| (run.to_string(), name.to_string()))
        .collect()
}

/// The series ranges of every scalars data file the manifest lists.
fn file_ranges(state: &State) -> impl Iterator<Item = &SeriesRange> {
    state
        .manifest
        .files
        .iter()
        .filter(|f| f.table == Table::Scalars)
        .flat_map(|f| f.series.iter())
}

/// The series ranges of the buffers, frozen ones first.
fn buffered_ranges(state: &State) -> Vec<SeriesRange> {
    state
        .frozen
        .iter()
        .flat_map(|f| f.buffer.series_ranges())
        .chain(state.active.series_ranges())
        .collect()
}

/// `ranges` grouped by (run, name), each group sorted by step.
fn by_series<'a>(
    ranges: impl Iterator<Item = &'a SeriesRange>,
) -> HashMap<(&'a str, &'a str), Vec<&'a SeriesRange>> {
    let mut groups: HashMap<(&str, &str), Vec<&SeriesRange>> = HashMap::new();
    for r in ranges {
        groups.entry((&r.run_id, &r.name)).or_default().push(r);
    }
    for spans in groups.values_mut() {
        spans.sort_unstable_by_key(|r| (r.min_step, r.max_step));
    }
    groups
}

/// Whether two of a series' sources (sorted by step) hold a step in common.
fn overlapping(spans: &[&SeriesRange]) -> bool {
    spans.windows(2).any(|w| w[1].min_step <= w[0].max_step)
}

/// The data files of `table` with a series range that can match `filter`,
/// oldest first.
fn files_of(state: &State, table: Table, filter: &SeriesFilter) -> Vec<FileRef> {
    state
        .manifest
        .files
        .iter()
        .filter(|f| f.table == table)
        .filter(|f| f.series.iter().any(|r| filter.matches_range(r)))
        .map(|f| FileRef {
            id: f.id,
            path: f.path.clone(),
            bytes: f.bytes,
            crc32: f.crc32,
        })
        .collect()
}
