//! `steplake import wandb PATH…`: W&B runs, from their run directories
//! (`run-<id>.wandb`, offline or synced) or from history exported as
//! Parquet.
//!
//! A `.wandb` file is W&B's transaction log, a format W&B does not
//! document. It is read by W&B's own reader, `wandb leet inspect --json`
//! (from `pip install wandb`), which prints one JSON record per line:
//!
//! ```text
//! {"num":2,"type":"run","run":{"run_id":"y7az8h5f","project":"proj","display_name":"first","config":{"update":{…}},"tags":[…]}}
//! {"num":11,"type":"history","history":{"item":{"_step":0,"_timestamp":1796661680.73,"train/loss":1,…},"step":{"num":0}}}
//! {"num":25,"type":"summary","summary":{"update":{"best":0.5}}}
//! {"num":28,"type":"exit","exit":{"exit_code":0}}
//! ```
//!
//! What becomes what:
//! - a history row → a point per numeric key at `_step`, with `_timestamp`
//!   as the wall time (NaN and ±Infinity kept, booleans as 0 and 1; keys
//!   starting with `_` are W&B's own); a `wandb.Histogram` → a
//!   statistics-only tensor row; text and other media are counted as
//!   skipped;
//! - the run record → the run's id, project, name, tags, configuration and
//!   fork lineage (`fork_from`: `parent_run_id`, `fork_step`); config
//!   records update the configuration;
//! - `define_metric` step metrics → configuration key `wandb.step_metrics`
//!   (`{"val/*": "epoch"}`);
//! - the summary entries history does not already give (set explicitly,
//!   or different from the last value logged) → configuration key
//!   `summary`;
//! - the exit code → finished (0) or failed; a log with no exit record (a
//!   run still going, or killed) leaves the run unfinished.
//!
//! Damage W&B's reader reports (a log cut short, a record whose checksum
//! does not match) is listed with the file and the last record read, and
//! the rest imports. A file it cannot open is refused by name.
//!
//! A history export in Parquet (`run.history()` written by `to_parquet`,
//! or the numbered parts of W&B's history export) has a `_step` column, an
//! optional `_timestamp` (seconds) and a column per metric. Each file is a
//! run named by the file; numbered parts (`0000.parquet`, …) are one run
//! named by their directory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use clap::Args;
use indicatif::ProgressBar;
use serde_json::{Map, Value};
use steplake_client::v1::CreateRunRequest;
use steplake_client::Client;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::histograms::{edges_counts_stats, stats_only_tensor};
use super::parquet_input::{batches, check_columns, read_failed};
use super::upload::{
    config_json, files_under, parts_writer_id, progress_bar, run_failed, run_id_of,
    source_writer_id, Destination, Tally, Upload,
};
use crate::CliError;

/// Project of runs from Parquet histories, which do not name one.
const DEFAULT_PROJECT: &str = "wandb";

/// Flags of `steplake import wandb`.
#[derive(Args)]
pub(crate) struct WandbArgs {
    #[command(flatten)]
    to: Destination,
    /// Project of every run imported (default: each run's W&B project;
    /// "wandb" for Parquet histories).
    #[arg(long)]
    project: Option<String>,
    /// W&B's command-line program, whose `wandb leet inspect` reads
    /// `.wandb` files (`pip install wandb`).
    #[arg(long, env = "STEPLAKE_WANDB", default_value = "wandb")]
    wandb: PathBuf,
    /// W&B directories (`./wandb`), run directories, `.wandb` files or
    /// Parquet history files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// One run to import.
enum Source {
    /// A run's transaction log (`run-<id>.wandb`).
    Log(PathBuf),
    /// The Parquet history parts of one run.
    History { run: String, parts: Vec<PathBuf> },
}

impl Source {
    fn label(&self) -> String {
        match self {
            Source::Log(path) => path.display().to_string(),
            Source::History { run, .. } => run.clone(),
        }
    }
}

/// The runs under `paths`: transaction logs first, then histories.
fn sources(paths: &[PathBuf]) -> Result<Vec<Source>, CliError> {
    let mut logs = Vec::new();
    let mut histories: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for path in paths {
        let files = if path.is_dir() {
            files_under(path)?
        } else if path.exists() {
            vec![path.clone()]
        } else {
            return Err(CliError::Input(format!(
                "{}: no such file or directory",
                path.display()
            )));
        };
        for file in files {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.ends_with(".wandb") {
                // `latest-run` links to a run directory already listed.
                let real = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
                logs.push(real);
            } else if let Some(stem) = name.strip_suffix(".parquet") {
                let numbered = !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit());
                let run = match file.parent().and_then(|d| d.file_name()) {
                    Some(dir) if numbered => dir.to_string_lossy().into_owned(),
                    _ => stem.to_string(),
                };
                histories.entry(run).or_default().push(file);
            }
        }
    }
    logs.sort();
    logs.dedup();
    if logs.is_empty() && histories.is_empty() {
        return Err(CliError::Input(format!(
            "no W&B runs (run-<id>.wandb) or Parquet histories under {}; give a `wandb` directory, a run directory or the files",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(logs
        .into_iter()
        .map(Source::Log)
        .chain(
            histories
                .into_iter()
                .map(|(run, parts)| Source::History { run, parts }),
        )
        .collect())
}

/// Runs `steplake import wandb`.
pub(crate) async fn run(args: WandbArgs) -> Result<(), CliError> {
    let sources = sources(&args.paths)?;
    for source in &sources {
        if let Source::History { parts, .. } = source {
            for part in parts {
                check_columns(part, &["_step"], "a W&B history export")?;
            }
        }
    }
    let client = args.to.client().await?;
    let started = Instant::now();
    let mut tally = Tally::default();
    let progress = progress_bar(
        sources.len() as u64,
        "{msg} [{bar:30}] {pos}/{len} runs, {elapsed}",
    );
    for source in &sources {
        progress.set_message(source.label());
        let imported = match source {
            Source::Log(path) => {
                import_log(client.as_ref(), &args, path, &mut tally, &progress).await
            }
            Source::History { run, parts } => {
                import_history(client.as_ref(), &args, run, parts, &mut tally).await
            }
        };
        if let Err(e) = imported {
            progress.finish_and_clear();
            return Err(run_failed(&source.label(), e, &tally, args.to.dry_run));
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    tally.conclude(args.to.dry_run, started)
}

// ---- transaction logs -------------------------------------------------------

/// A run as its transaction log describes it, record by record.
#[derive(Default)]
struct LogRun {
    run_id: String,
    project: Option<String>,
    name: Option<String>,
    tags: Vec<String>,
    config: Map<String, Value>,
    parent: Option<String>,
    fork_step: Option<i64>,
    /// `define_metric` step metrics, by metric name or pattern.
    step_metrics: Map<String, Value>,
    summary: Map<String, Value>,
    /// The last value logged of each history key (numbers or not).
    last: HashMap<String, Value>,
    /// History keys that are not valid series names.
    invalid_keys: HashSet<String>,
    exit_code: Option<i64>,
}

impl LogRun {
    /// The `run` record: who the run is.
    fn describe(&mut self, run: &Value) {
        if let Some(id) = run["run_id"].as_str().filter(|id| !id.is_empty()) {
            self.run_id = run_id_of(id);
        }
        self.project = run["project"].as_str().map(str::to_string);
        self.name = run["display_name"].as_str().map(str::to_string);
        if let Some(tags) = run["tags"].as_array() {
            self.tags = tags
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect();
        }
        self.configure(&run["config"]);
        let branch = &run["branch_point"];
        if let Some(parent) = branch["run"].as_str().filter(|p| !p.is_empty()) {
            self.parent = Some(run_id_of(parent));
            if branch["metric"].as_str().unwrap_or("_step") == "_step" {
                self.fork_step = branch["value"].as_f64().map(|s| s.floor() as i64);
            }
        }
    }

    /// A config record (or the run record's): keys updated and removed.
    fn configure(&mut self, config: &Value) {
        if let Some(update) = config["update"].as_object() {
            for (key, value) in update {
                if key != "_wandb" {
                    self.config.insert(key.clone(), value.clone());
                }
            }
        }
        for key in removed_keys(&config["remove"]) {
            self.config.remove(&key);
        }
    }

    /// A summary record.
    fn summarize(&mut self, summary: &Value) {
        if let Some(update) = summary["update"].as_object() {
            for (key, value) in update {
                self.summary.insert(key.clone(), value.clone());
            }
        }
        for key in removed_keys(&summary["remove"]) {
            self.summary.remove(&key);
        }
    }

    /// The configuration to store: W&B's config, with the step metrics and
    /// the summary entries history does not give.
    fn stored_config(&self) -> Map<String, Value> {
        let mut config = self.config.clone();
        if !self.step_metrics.is_empty() {
            config.insert(
                "wandb.step_metrics".into(),
                Value::Object(self.step_metrics.clone()),
            );
        }
        let summary = summary_beyond_history(&self.summary, &self.last);
        if !summary.is_empty() {
            config.insert("summary".into(), Value::Object(summary));
        }
        config
    }

    fn create_request(&self, project: Option<&str>, config: bool) -> CreateRunRequest {
        CreateRunRequest {
            run_id: self.run_id.clone(),
            project: project
                .map(str::to_string)
                .or_else(|| self.project.clone())
                .unwrap_or_default(),
            name: self.name.clone().unwrap_or_else(|| self.run_id.clone()),
            config_json: if config {
                config_json(&self.stored_config())
            } else {
                String::new()
            },
            tags: self.tags.clone(),
            parent_run_id: self.parent.clone().unwrap_or_default(),
            fork_step: self.fork_step,
        }
    }
}

/// The keys of a record's `remove` list (`[{"key": "a"}]`, or
/// `[{"nested_key": ["a", "b"]}]` for `a.b`).
fn removed_keys(remove: &Value) -> Vec<String> {
    let Some(items) = remove.as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            Value::String(key) => Some(key.clone()),
            _ => item["key"].as_str().map(str::to_string).or_else(|| {
                let parts: Vec<&str> = item["nested_key"]
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                (!parts.is_empty()).then(|| parts.join("."))
            }),
        })
        .collect()
}

/// The entries of W&B's summary that are not the last value history
/// logged: values set with `run.summary[...] = …`, and keys history never
/// had. W&B's own keys (`_step`, `_runtime`, …) and media are left out.
pub(crate) fn summary_beyond_history(
    summary: &Map<String, Value>,
    last: &HashMap<String, Value>,
) -> Map<String, Value> {
    let media: Vec<&str> = summary
        .keys()
        .filter_map(|k| k.strip_suffix("._type"))
        .collect();
    summary
        .iter()
        .filter(|(key, _)| !key.starts_with('_'))
        .filter(|(key, _)| {
            !media
                .iter()
                .any(|m| key.strip_prefix(m).is_some_and(|r| r.starts_with('.')))
        })
        .filter(|(key, value)| last.get(key.as_str()) != Some(value))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A history value as a point's value: numbers, NaN and ±Infinity (which
/// W&B writes as strings), booleans as 0 and 1.
fn point_value(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// One history row's points and histograms.
async fn history_row(
    item: &Map<String, Value>,
    upload: &mut Upload,
    run: &mut LogRun,
    tally: &mut Tally,
) -> Result<(), CliError> {
    let Some(step) = item
        .get("_step")
        .and_then(Value::as_i64)
        .filter(|s| *s >= 0)
    else {
        tally.skip("history rows with no _step");
        return Ok(());
    };
    let wall_us = item
        .get("_timestamp")
        .and_then(Value::as_f64)
        .map(|t| (t * 1e6).round() as i64)
        .unwrap_or(0);
    // Media are flattened: `h._type`, `h.bins`, `h.values`.
    let media: Vec<(&str, &str)> = item
        .iter()
        .filter_map(|(k, v)| Some((k.strip_suffix("._type")?, v.as_str().unwrap_or_default())))
        .collect();
    for (name, kind) in &media {
        let floats = |field: &str| -> Option<Vec<f64>> {
            item.get(&format!("{name}.{field}"))?
                .as_array()?
                .iter()
                .map(Value::as_f64)
                .collect()
        };
        let stats = match *kind {
            "histogram" => floats("bins")
                .zip(floats("values"))
                .and_then(|(edges, counts)| edges_counts_stats(&edges, &counts)),
            _ => {
                tally.skip("history media other than histograms (images, tables, …)");
                continue;
            }
        };
        match stats {
            Some(stats) => {
                upload
                    .tensor(stats_only_tensor(name.to_string(), step, wall_us, stats))
                    .await?
            }
            None => tally.skip("histograms with no values"),
        }
    }
    for (key, value) in item {
        let in_media = media
            .iter()
            .any(|(m, _)| key.strip_prefix(m).is_some_and(|r| r.starts_with('.')));
        if key.starts_with('_') || in_media {
            continue;
        }
        // A key is checked once, when first seen, not at every point.
        match run.last.get_mut(key) {
            Some(last) => *last = value.clone(),
            None => {
                run.last.insert(key.clone(), value.clone());
                if steplake_core::validate_series_name("history key", key).is_err() {
                    run.invalid_keys.insert(key.clone());
                }
            }
        }
        let Some(number) = point_value(value) else {
            tally.skip("history values that are text, lists or objects");
            continue;
        };
        if run.invalid_keys.contains(key) {
            tally.skip("history keys that are not valid series names");
            continue;
        }
        upload.point(key, step, number, wall_us).await?;
    }
    Ok(())
}

/// Starts W&B's reader on `path`; its standard output is one JSON record
/// per line.
fn start_reader(wandb: &Path, path: &Path) -> Result<tokio::process::Child, CliError> {
    tokio::process::Command::new(wandb)
        .args(["leet", "inspect", "--json"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CliError::Input(format!(
                "W&B's reader of .wandb files, `{} leet inspect`, was not found: install W&B's library (pip install wandb) and pass its program with --wandb PATH, or run `python -m steplake import-wandb`, which finds it",
                wandb.display()
            )),
            _ => CliError::Input(format!("cannot start {}: {e}", wandb.display())),
        })
}

async fn import_log(
    client: Option<&Client>,
    args: &WandbArgs,
    path: &Path,
    tally: &mut Tally,
    progress: &ProgressBar,
) -> Result<(), CliError> {
    let failed = |what: String| CliError::Input(format!("{}: {what}", path.display()));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The run's directory names the attempt: a resumed run's logs have
    // the same file name in different directories.
    let source_name = match path.parent().and_then(|d| d.file_name()) {
        Some(dir) => format!("{}/{file_name}", dir.to_string_lossy()),
        None => file_name.clone(),
    };
    let len = std::fs::metadata(path)
        .map_err(|e| failed(format!("cannot read it: {e}")))?
        .len();
    let mut run = LogRun {
        run_id: run_id_of(
            file_name
                .trim_start_matches("run-")
                .trim_end_matches(".wandb"),
        ),
        ..LogRun::default()
    };
    let mut reader = start_reader(&args.wandb, path)?;
    let stdout = reader
        .stdout
        .take()
        .ok_or_else(|| failed("W&B's reader gave no output".into()))?;
    let mut stderr = reader
        .stderr
        .take()
        .ok_or_else(|| failed("W&B's reader gave no error stream".into()))?;
    let complaints = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(stdout).lines();
    let mut upload: Option<Upload> = None;
    let mut last_record = 0u64;
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| failed(format!("reading W&B's reader: {e}")))?
    {
        let record: Value = serde_json::from_str(&line).map_err(|e| {
            failed(format!(
                "W&B's reader printed a line that is not JSON after record {last_record} ({e}); is `{}` W&B's program?",
                args.wandb.display()
            ))
        })?;
        last_record = record["num"].as_u64().unwrap_or(last_record);
        match record["type"].as_str().unwrap_or_default() {
            "run" => run.describe(&record["run"]),
            "config" => run.configure(&record["config"]),
            "summary" => run.summarize(&record["summary"]),
            "exit" => run.exit_code = record["exit"]["exit_code"].as_i64(),
            "metric" => {
                let metric = &record["metric"];
                let name = metric["name"].as_str().or(metric["glob_name"].as_str());
                if let (Some(name), Some(step)) = (name, metric["step_metric"].as_str()) {
                    run.step_metrics.insert(name.into(), step.into());
                }
            }
            "alert" => tally.skip("alerts (W&B notifications)"),
            "history" => {
                let Some(item) = record["history"]["item"].as_object() else {
                    continue;
                };
                if upload.is_none() {
                    upload = Some(start_run(client, args, &run, &source_name, len).await?);
                }
                if let Some(upload) = upload.as_mut() {
                    history_row(item, upload, &mut run, tally).await?;
                }
            }
            _ => {}
        }
    }
    let status = reader
        .wait()
        .await
        .map_err(|e| failed(format!("W&B's reader: {e}")))?;
    let complaints = complaints.await.unwrap_or_default();
    if !status.success() {
        return Err(failed(format!(
            "W&B's reader could not read it ({}): {}",
            status,
            complaints.trim()
        )));
    }
    for complaint in complaints.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let complaint = complaint
            .strip_prefix("wandb leet inspect: ")
            .unwrap_or(complaint);
        tally.damaged.push(format!(
            "{}: after record {last_record}: {complaint}",
            path.display()
        ));
    }
    let upload = match upload {
        Some(upload) => upload,
        None => start_run(client, args, &run, &source_name, len).await?,
    };
    progress.set_message(format!("{} ({} points)", path.display(), upload.points));
    upload.finish_into(tally).await?;
    tally.runs += 1;
    let request = run.create_request(args.project.as_deref(), true);
    if !request.config_json.is_empty() {
        tally.configs += 1;
    }
    if let Some(client) = client {
        client.create_run(request).await?;
        match run.exit_code {
            Some(0) => client.finish_run(&run.run_id, "finished").await?,
            Some(_) => client.finish_run(&run.run_id, "failed").await?,
            None => {}
        }
    }
    Ok(())
}

/// Creates the run (configuration follows at the end) and opens its
/// upload.
async fn start_run(
    client: Option<&Client>,
    args: &WandbArgs,
    run: &LogRun,
    source_name: &str,
    len: u64,
) -> Result<Upload, CliError> {
    if let Some(client) = client {
        client
            .create_run(run.create_request(args.project.as_deref(), false))
            .await?;
    }
    let writer_id = source_writer_id("wandb", &run.run_id, source_name, len);
    Upload::open(client, &run.run_id, &writer_id).await
}

// ---- Parquet histories ------------------------------------------------------

async fn import_history(
    client: Option<&Client>,
    args: &WandbArgs,
    run: &str,
    parts: &[PathBuf],
    tally: &mut Tally,
) -> Result<(), CliError> {
    let run_id = run_id_of(run);
    if let Some(client) = client {
        client
            .create_run(CreateRunRequest {
                run_id: run_id.clone(),
                project: args
                    .project
                    .clone()
                    .unwrap_or_else(|| DEFAULT_PROJECT.into()),
                name: run.to_string(),
                ..Default::default()
            })
            .await?;
    }
    let writer_id = parts_writer_id("wandb", &run_id, "history", parts);
    let mut upload = Upload::open(client, &run_id, &writer_id).await?;
    for part in parts {
        history_part(part, &mut upload, tally).await?;
    }
    upload.finish_into(tally).await?;
    tally.runs += 1;
    if let Some(client) = client {
        client.finish_run(&run_id, "finished").await?;
    }
    Ok(())
}

/// The points of one history part, column by column within each batch.
async fn history_part(path: &Path, upload: &mut Upload, tally: &mut Tally) -> Result<(), CliError> {
    let failed = |e: &dyn std::fmt::Display| read_failed(path, e);
    for batch in batches(path)? {
        let batch = batch?;
        let as_f64 = |name: &str| -> Result<Option<arrow::array::ArrayRef>, CliError> {
            batch
                .column_by_name(name)
                .map(|c| cast(c, &DataType::Float64).map_err(|e| failed(&e)))
                .transpose()
        };
        let steps = as_f64("_step")?.ok_or_else(|| failed(&"no `_step` column"))?;
        let steps = steps.as_primitive::<Float64Type>();
        let times = as_f64("_timestamp")?;
        let times = times.as_ref().map(|t| t.as_primitive::<Float64Type>());
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            let name = field.name();
            if name.starts_with('_') {
                continue;
            }
            let numeric =
                column.data_type().is_numeric() || *column.data_type() == DataType::Boolean;
            if !numeric {
                tally.skip("history columns that are not numbers (media, text)");
                continue;
            }
            if steplake_core::validate_series_name("column", name).is_err() {
                tally.skip("history columns that are not valid series names");
                continue;
            }
            let values = cast(column, &DataType::Float64).map_err(|e| failed(&e))?;
            let values = values.as_primitive::<Float64Type>();
            for row in 0..batch.num_rows() {
                if values.is_null(row) {
                    continue;
                }
                let step = steps.is_valid(row).then(|| steps.value(row));
                let Some(step) = step.filter(|s| s.fract() == 0.0 && *s >= 0.0 && *s < 9e15) else {
                    tally.skip("history rows with no whole _step");
                    continue;
                };
                let wall_us = times
                    .filter(|t| t.is_valid(row))
                    .map(|t| (t.value(row) * 1e6).round() as i64)
                    .unwrap_or(0);
                upload
                    .point(name, step as i64, values.value(row), wall_us)
                    .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn history_values_nan_and_infinities_are_points_and_text_is_not() {
        assert_eq!(point_value(&json!(0.5)), Some(0.5));
        assert_eq!(point_value(&json!(true)), Some(1.0));
        assert!(point_value(&json!("NaN")).is_some_and(f64::is_nan));
        assert_eq!(point_value(&json!("-Infinity")), Some(f64::NEG_INFINITY));
        assert_eq!(point_value(&json!("text")), None);
        assert_eq!(point_value(&json!([1, 2])), None);
    }

    #[test]
    fn numbers_read_from_the_reader_are_the_exact_doubles_it_printed() {
        // serde_json's default float parsing can be one ulp off; wall
        // times (seconds with microseconds) and values must not be.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let x = 1.7e9 + (state >> 11) as f64 / (1u64 << 53) as f64 * 1e8;
            let text = format!("{{\"_timestamp\":{x}}}");
            let parsed: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(parsed["_timestamp"].as_f64(), Some(x), "{text}");
        }
    }

    #[test]
    fn the_summary_keeps_what_history_does_not_say() {
        let summary = json!({
            "_step": 4, "_runtime": 1.5, "loss": 0.2, "acc": 0.9, "best": 0.5,
            "h._type": "histogram", "h.bins": [0, 1], "h.values": [3]
        });
        let last: HashMap<String, Value> = [
            ("loss".to_string(), json!(0.2)),
            ("acc".to_string(), json!(0.7)),
        ]
        .into();
        let kept = summary_beyond_history(summary.as_object().expect("map"), &last);
        assert_eq!(Value::Object(kept), json!({"acc": 0.9, "best": 0.5}));
    }

    #[test]
    fn removed_keys_in_either_form() {
        let remove = json!([{"key": "a"}, {"nested_key": ["b", "c"]}, "d"]);
        assert_eq!(removed_keys(&remove), ["a", "b.c", "d"]);
    }
}
