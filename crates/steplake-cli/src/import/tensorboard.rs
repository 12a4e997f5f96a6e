//! `steplake import tensorboard DIR…`: every event file under the
//! directories, one run per directory that holds event files.
//!
//! What becomes what:
//! - scalars: a `simple_value` (what PyTorch's `SummaryWriter.add_scalar`
//!   writes), or a scalar tensor of the `scalars` plugin (TensorFlow 2's
//!   `tf.summary.scalar`) → a point of series `tag` at the event's step and
//!   wall time (seconds → microseconds, rounded);
//! - histograms: a `HistogramProto` (`add_histogram`), or a `[k, 3]` tensor
//!   of the `histograms` plugin → a statistics-only tensor row of `tag`:
//!   count, min, max, mean, std and L2 from the histogram's sums (from the
//!   bucket centres for the plugin's tensors, which have no sums), and its
//!   bucket counts spread over steplake's 64 equal bins;
//! - hparams (`add_hparams`, the `hparams` plugin's session start) → the
//!   run's configuration;
//! - anything else (images, audio, text, graphs, other plugins' tensors)
//!   is counted as skipped, by kind.
//!
//! Event files of a directory are read in name order (their names start
//! with the time they were opened); each is one write stream (see
//! `upload.rs` for why importing twice stores nothing twice). Framing and
//! checksums are checked record by record (`tfrecord.rs`); a damaged record
//! is reported with its file and offset, and the rest is imported.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::ProgressBar;
use prost::Message;
use steplake_client::v1::{self, CreateRunRequest};
use steplake_client::Client;

use super::histograms::{bucket_triples_stats, stats_of, stats_only_tensor};
use super::tensorboard_proto::{
    data_type, Event, HParamsPluginData, HistogramProto, SummaryValue, TensorProto,
};
use super::tfrecord::{Item, Records};
use super::upload::{
    config_json, files_under, progress_bar, run_failed, run_id_of, source_writer_id, Destination,
    Tally, Upload,
};
use crate::CliError;

/// Flags of `steplake import tensorboard`.
#[derive(Args)]
pub(crate) struct TensorboardArgs {
    #[command(flatten)]
    to: Destination,
    /// Project of the runs.
    #[arg(long, default_value = "default")]
    project: String,
    /// Name of each run: `{path}` is its directory relative to the DIR
    /// given (DIR's own name when the events are directly in it), `{dir}`
    /// the DIR given, `{name}` the run directory's last component. The run
    /// id is the name with characters other than letters, digits, `-`, `_`
    /// and `.` replaced by `-`.
    #[arg(long, default_value = "{path}")]
    run_name: String,
    /// Directories searched recursively for `events.out.tfevents.*` files
    /// (or event files themselves).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
}

/// Whether `path` names a TensorBoard event file.
fn is_event_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("events.out.tfevents."))
}

/// One run to import: its id, name and event files in order.
#[derive(Debug, Clone)]
struct RunSource {
    run_id: String,
    name: String,
    directory: PathBuf,
    files: Vec<PathBuf>,
}

/// The event files under `root`, grouped by directory (sorted).
fn event_directories(root: &Path) -> Result<BTreeMap<PathBuf, Vec<PathBuf>>, CliError> {
    let cannot = |path: &Path, e: std::io::Error| {
        CliError::Input(format!("cannot read {}: {e}", path.display()))
    };
    let mut found: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    let metadata = std::fs::metadata(root).map_err(|e| cannot(root, e))?;
    if metadata.is_file() {
        if !is_event_file(root) {
            return Err(CliError::Input(format!(
                "{} is not a TensorBoard event file (events.out.tfevents.*); give the directory that holds them",
                root.display()
            )));
        }
        let parent = root.parent().unwrap_or(Path::new(".")).to_path_buf();
        found.entry(parent).or_default().push(root.to_path_buf());
        return Ok(found);
    }
    for path in files_under(root)? {
        if let (true, Some(directory)) = (is_event_file(&path), path.parent()) {
            found.entry(directory.to_path_buf()).or_default().push(path);
        }
    }
    Ok(found)
}

/// The runs the `dirs` hold, named by `template`; refused when two
/// directories would be one run.
fn plan_runs(dirs: &[PathBuf], template: &str) -> Result<Vec<RunSource>, CliError> {
    let mut runs: Vec<RunSource> = Vec::new();
    let mut by_id: HashMap<String, PathBuf> = HashMap::new();
    for root in dirs {
        let root_name = std::fs::canonicalize(root)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| root.display().to_string());
        for (directory, files) in event_directories(root)? {
            let relative = directory
                .strip_prefix(root)
                .ok()
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| root_name.clone());
            let last = directory
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| root_name.clone());
            let name = template
                .replace("{path}", &relative)
                .replace("{dir}", &root_name)
                .replace("{name}", &last);
            let run_id = run_id_of(&name);
            if let Some(other) = by_id.insert(run_id.clone(), directory.clone()) {
                return Err(CliError::Input(format!(
                    "{} and {} would both be run {run_id:?}; name the runs apart with --run-name (for example '{{dir}}/{{path}}')",
                    other.display(),
                    directory.display()
                )));
            }
            runs.push(RunSource {
                run_id,
                name,
                directory,
                files,
            });
        }
    }
    if runs.is_empty() {
        let listed: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(CliError::Input(format!(
            "no TensorBoard event files (events.out.tfevents.*) under {}",
            listed.join(", ")
        )));
    }
    Ok(runs)
}

/// Runs `steplake import tensorboard`.
pub(crate) async fn run(args: TensorboardArgs) -> Result<(), CliError> {
    let runs = plan_runs(&args.dirs, &args.run_name)?;
    let total_bytes: u64 = runs
        .iter()
        .flat_map(|r| &r.files)
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let client = args.to.client().await?;
    let progress = progress_bar(
        total_bytes,
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    );
    let started = Instant::now();
    let mut tally = Tally::default();
    for run in &runs {
        progress.set_message(run.name.clone());
        if let Err(e) = import_run(client.as_ref(), &args.project, run, &progress, &mut tally).await
        {
            progress.finish_and_clear();
            let which = format!("{} ({})", run.run_id, run.directory.display());
            return Err(run_failed(&which, e, &tally, args.to.dry_run));
        }
    }
    progress.finish_and_clear();
    tally.conclude(args.to.dry_run, started)
}

async fn import_run(
    client: Option<&Client>,
    project: &str,
    run: &RunSource,
    progress: &ProgressBar,
    tally: &mut Tally,
) -> Result<(), CliError> {
    let create = |config_json: String| CreateRunRequest {
        run_id: run.run_id.clone(),
        project: project.to_string(),
        name: run.name.clone(),
        config_json,
        ..Default::default()
    };
    if let Some(client) = client {
        client.create_run(create(String::new())).await?;
    }
    let mut reader = EventReader::default();
    for file in &run.files {
        let len = std::fs::metadata(file)
            .map_err(|e| CliError::Input(format!("cannot read {}: {e}", file.display())))?
            .len();
        let file_name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let writer_id = source_writer_id("tensorboard", &run.run_id, &file_name, len);
        let mut upload = Upload::open(client, &run.run_id, &writer_id).await?;
        reader
            .read_file(file, len, &mut upload, tally, progress)
            .await?;
        upload.finish_into(tally).await?;
    }
    tally.runs += 1;
    if !reader.config.is_empty() {
        tally.configs += 1;
        if let Some(client) = client {
            client
                .create_run(create(config_json(&reader.config)))
                .await?;
        }
    }
    if let Some(client) = client {
        client.finish_run(&run.run_id, "finished").await?;
    }
    Ok(())
}

/// What the events of one run carry across its files: each tag's plugin
/// (TensorFlow writes a tag's metadata with its first value only), and the
/// hyperparameters found.
#[derive(Default)]
struct EventReader {
    plugins: HashMap<String, String>,
    config: serde_json::Map<String, serde_json::Value>,
}

impl EventReader {
    async fn read_file(
        &mut self,
        path: &Path,
        len: u64,
        upload: &mut Upload,
        tally: &mut Tally,
        progress: &ProgressBar,
    ) -> Result<(), CliError> {
        let io =
            |e: std::io::Error| CliError::Input(format!("cannot read {}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(io)?;
        let mut records = Records::new(file, len);
        let mut read_before = 0;
        loop {
            let (offset, event) = match records.next_item().map_err(io)? {
                None => break,
                Some(Item::Damaged(damage)) => {
                    tally.skip("damaged records (listed below)");
                    tally.damaged.push(format!(
                        "{} at byte {}: {}",
                        path.display(),
                        damage.offset,
                        damage.reason
                    ));
                    continue;
                }
                Some(Item::Record { offset, data }) => (offset, Event::decode(data)),
            };
            if offset - read_before > 1 << 20 {
                progress.inc(offset - read_before);
                read_before = offset;
            }
            match event {
                Ok(event) => self.event(event, upload, tally).await?,
                Err(e) => {
                    tally.skip("records that are not TensorBoard events (listed below)");
                    tally.damaged.push(format!(
                        "{} at byte {offset}: the record is not an Event message ({e})",
                        path.display()
                    ));
                }
            }
        }
        progress.inc(len.saturating_sub(read_before));
        Ok(())
    }

    async fn event(
        &mut self,
        event: Event,
        upload: &mut Upload,
        tally: &mut Tally,
    ) -> Result<(), CliError> {
        if event.file_version.is_some() {
            return Ok(());
        }
        if event.graph_def.is_some() || event.meta_graph_def.is_some() {
            tally.skip("graphs (not imported)");
            return Ok(());
        }
        if event.tagged_run_metadata.is_some() {
            tally.skip("run metadata (not imported)");
            return Ok(());
        }
        if event.session_log.is_some() {
            tally.skip("session logs (not imported)");
            return Ok(());
        }
        let Some(summary) = event.summary else {
            return Ok(());
        };
        let wall_time_us = (event.wall_time * 1e6).round();
        let wall_time_us = if wall_time_us.is_finite()
            && (steplake_core::MIN_WALL_TIME_US as f64..=steplake_core::MAX_WALL_TIME_US as f64)
                .contains(&wall_time_us)
        {
            wall_time_us as i64
        } else {
            tally.skip("events with a wall time outside the years 1 to 9999");
            return Ok(());
        };
        for value in summary.value {
            self.value(value, event.step, wall_time_us, upload, tally)
                .await?;
        }
        Ok(())
    }

    async fn value(
        &mut self,
        value: SummaryValue,
        step: i64,
        wall_time_us: i64,
        upload: &mut Upload,
        tally: &mut Tally,
    ) -> Result<(), CliError> {
        let plugin = match value.metadata.as_ref().and_then(|m| m.plugin_data.as_ref()) {
            Some(data) => {
                if data.plugin_name == "hparams" {
                    self.hparams(&data.content);
                    return Ok(());
                }
                self.plugins
                    .insert(value.tag.clone(), data.plugin_name.clone());
                data.plugin_name.clone()
            }
            None => self.plugins.get(&value.tag).cloned().unwrap_or_default(),
        };
        let what = if let Some(v) = value.simple_value {
            Found::Point(f64::from(v))
        } else if let Some(histogram) = value.histo.as_ref() {
            Found::Histogram(histogram_stats(histogram))
        } else if let Some(tensor) = value.tensor.as_ref() {
            match plugin.as_str() {
                "scalars" => match tensor_values(tensor).as_deref() {
                    Some([v]) => Found::Point(*v),
                    _ => Found::Skip("scalar summaries whose tensor is not one number"),
                },
                "histograms" => match tensor_values(tensor) {
                    Some(triples) if triples.len() % 3 == 0 => {
                        Found::Histogram(bucket_triples_stats(&triples))
                    }
                    _ => Found::Skip("histogram summaries whose tensor is not [k, 3] numbers"),
                },
                "text" => Found::Skip("text summaries (not imported)"),
                "" => Found::Skip("tensor summaries of no plugin (not imported)"),
                _ => Found::Skip("tensor summaries of other plugins (not imported)"),
            }
        } else if value.image.is_some() {
            Found::Skip("images (not imported)")
        } else if value.audio.is_some() {
            Found::Skip("audio (not imported)")
        } else if value.obsolete_old_style_histogram.is_some() {
            Found::Skip("old-style histograms (not imported)")
        } else {
            Found::Skip("summary values with no value")
        };
        if matches!(what, Found::Point(_) | Found::Histogram(_)) {
            if step < 0 {
                tally.skip("values at a negative step");
                return Ok(());
            }
            if steplake_core::validate_series_name("tag", &value.tag).is_err() {
                tally.skip("values whose tag is not a valid series name (empty, over 1024 bytes, or with control characters)");
                return Ok(());
            }
        }
        match what {
            Found::Point(v) => upload.point(&value.tag, step, v, wall_time_us).await,
            Found::Histogram(None) => {
                tally.skip("histograms with no values");
                Ok(())
            }
            Found::Histogram(Some(stats)) => {
                upload
                    .tensor(stats_only_tensor(value.tag, step, wall_time_us, stats))
                    .await
            }
            Found::Skip(reason) => {
                tally.skip(reason);
                Ok(())
            }
        }
    }

    /// Keeps the hyperparameters of an `hparams` session start.
    fn hparams(&mut self, content: &[u8]) {
        let Ok(data) = HParamsPluginData::decode(content) else {
            return;
        };
        let Some(start) = data.session_start_info else {
            return;
        };
        for (key, value) in start.hparams {
            let json = if let Some(n) = value.number_value {
                serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, Into::into)
            } else if let Some(s) = value.string_value {
                serde_json::Value::String(s)
            } else if let Some(b) = value.bool_value {
                serde_json::Value::Bool(b)
            } else {
                serde_json::Value::Null
            };
            self.config.insert(key, json);
        }
    }
}

/// What one summary value becomes.
enum Found {
    Point(f64),
    Histogram(Option<v1::TensorStatistics>),
    Skip(&'static str),
}

/// The values of a numeric tensor, in order, as f64; None for strings and
/// types an import does not read.
fn tensor_values(tensor: &TensorProto) -> Option<Vec<f64>> {
    let content = &tensor.tensor_content;
    if !content.is_empty() {
        let le = |width: usize, read: &dyn Fn(&[u8]) -> f64| -> Option<Vec<f64>> {
            content
                .len()
                .is_multiple_of(width)
                .then(|| content.chunks_exact(width).map(read).collect())
        };
        let array = |b: &[u8]| -> [u8; 8] {
            let mut out = [0u8; 8];
            out[..b.len()].copy_from_slice(b);
            out
        };
        return match tensor.dtype {
            data_type::FLOAT => le(4, &|b| {
                f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }),
            data_type::DOUBLE => le(8, &|b| f64::from_le_bytes(array(b))),
            data_type::INT32 => le(4, &|b| {
                f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }),
            data_type::INT64 => le(8, &|b| i64::from_le_bytes(array(b)) as f64),
            data_type::UINT8 => le(1, &|b| f64::from(b[0])),
            data_type::INT8 => le(1, &|b| f64::from(b[0] as i8)),
            data_type::INT16 => le(2, &|b| f64::from(i16::from_le_bytes([b[0], b[1]]))),
            data_type::UINT16 => le(2, &|b| f64::from(u16::from_le_bytes([b[0], b[1]]))),
            data_type::UINT32 => le(4, &|b| {
                f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }),
            data_type::UINT64 => le(8, &|b| u64::from_le_bytes(array(b)) as f64),
            data_type::BOOL => le(1, &|b| f64::from(u8::from(b[0] != 0))),
            data_type::HALF => le(2, &|b| half::f16::from_le_bytes([b[0], b[1]]).to_f64()),
            data_type::BFLOAT16 => le(2, &|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f64()),
            _ => None,
        };
    }
    let values: Vec<f64> = match tensor.dtype {
        data_type::FLOAT => tensor.float_val.iter().map(|&v| f64::from(v)).collect(),
        data_type::DOUBLE => tensor.double_val.clone(),
        data_type::INT32
        | data_type::INT16
        | data_type::INT8
        | data_type::UINT8
        | data_type::UINT16 => tensor.int_val.iter().map(|&v| f64::from(v)).collect(),
        data_type::INT64 => tensor.int64_val.iter().map(|&v| v as f64).collect(),
        data_type::UINT32 => tensor.uint32_val.iter().map(|&v| f64::from(v)).collect(),
        data_type::UINT64 => tensor.uint64_val.iter().map(|&v| v as f64).collect(),
        data_type::BOOL => tensor
            .bool_val
            .iter()
            .map(|&v| f64::from(u8::from(v)))
            .collect(),
        data_type::HALF => tensor
            .half_val
            .iter()
            .map(|&v| half::f16::from_bits(v as u16).to_f64())
            .collect(),
        data_type::BFLOAT16 => tensor
            .half_val
            .iter()
            .map(|&v| half::bf16::from_bits(v as u16).to_f64())
            .collect(),
        data_type::STRING => return None,
        _ => return None,
    };
    Some(values)
}

/// Statistics of a `HistogramProto`: count, extremes and moments from its
/// own fields; bucket `i` spans from the limit before it (or `min`) to
/// `bucket_limit[i]`. None when it counts no value.
fn histogram_stats(h: &HistogramProto) -> Option<v1::TensorStatistics> {
    if h.num.is_nan() || h.num <= 0.0 || !h.min.is_finite() || !h.max.is_finite() {
        return None;
    }
    let mut buckets = Vec::with_capacity(h.bucket.len());
    let mut left = h.min;
    for (&limit, &count) in h.bucket_limit.iter().zip(&h.bucket) {
        let right = limit.min(h.max);
        if count > 0.0 {
            buckets.push((left.max(h.min), right.max(left.max(h.min)), count));
        }
        left = limit;
    }
    let mean = h.sum / h.num;
    let variance = (h.sum_squares / h.num - mean * mean).max(0.0);
    Some(stats_of(
        &buckets,
        h.num,
        h.min,
        h.max,
        mean,
        variance.sqrt(),
        h.sum_squares.sqrt(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_keep_a_portable_alphabet() {
        assert_eq!(run_id_of("exp1/run_a"), "exp1-run_a");
        assert_eq!(run_id_of("lr=0.1 bs=32"), "lr-0.1-bs-32");
        assert_eq!(run_id_of("///"), "run");
        let long = "x".repeat(300);
        let id = run_id_of(&long);
        assert_eq!(id.len(), 128);
        assert!(steplake_core::validate_run_id(&id).is_ok());
        assert_ne!(id, run_id_of(&"x".repeat(301)));
    }

    #[test]
    fn a_histogram_protos_statistics_come_from_its_sums() {
        // PyTorch's add_histogram of [1, 2, 2, 3].
        let h = HistogramProto {
            min: 1.0,
            max: 3.0,
            num: 4.0,
            sum: 8.0,
            sum_squares: 18.0,
            bucket_limit: vec![1.5, 2.5, 3.5],
            bucket: vec![1.0, 2.0, 1.0],
        };
        let stats = histogram_stats(&h).expect("stats");
        assert_eq!(stats.numel, 4);
        assert_eq!(stats.mean, Some(2.0));
        assert_eq!(stats.std, Some((18.0f64 / 4.0 - 4.0).sqrt()));
        assert_eq!(stats.l2, 18.0f64.sqrt());
        assert_eq!(stats.histogram.iter().sum::<u64>(), 4);
        assert_eq!(stats.histogram.len(), steplake_core::tensor::HISTOGRAM_BINS);
        assert_eq!((stats.min, stats.max), (Some(1.0), Some(3.0)));
        assert!(histogram_stats(&HistogramProto::default()).is_none());
    }

    #[test]
    fn tensor_values_read_content_and_typed_lists() {
        let content = TensorProto {
            dtype: data_type::FLOAT,
            tensor_content: 1.5f32.to_le_bytes().to_vec(),
            ..Default::default()
        };
        assert_eq!(tensor_values(&content), Some(vec![1.5]));
        let listed = TensorProto {
            dtype: data_type::DOUBLE,
            double_val: vec![0.25, f64::NAN],
            ..Default::default()
        };
        let values = tensor_values(&listed).expect("values");
        assert_eq!(values[0], 0.25);
        assert!(values[1].is_nan());
        let half = TensorProto {
            dtype: data_type::HALF,
            half_val: vec![i32::from(half::f16::from_f64(0.5).to_bits())],
            ..Default::default()
        };
        assert_eq!(tensor_values(&half), Some(vec![0.5]));
        let text = TensorProto {
            dtype: data_type::STRING,
            string_val: vec![b"hi".to_vec()],
            ..Default::default()
        };
        assert_eq!(tensor_values(&text), None);
    }
}
