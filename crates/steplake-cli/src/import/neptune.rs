//! `steplake import neptune DIR`: the Parquet files `neptune-exporter`
//! writes (`DIR/<project>/<run>_part_<n>.parquet`), one row per attribute
//! value:
//!
//! ```text
//! project_id  run_id  attribute_path  attribute_type  step            timestamp      int_value …
//! string      string  string          string          decimal(18, 6)  timestamp(ms)  (one value column per type)
//! ```
//!
//! What becomes what:
//! - a `float_series` value → a point of series `attribute_path` at its
//!   step, with its timestamp as the wall time (a fractional step, which
//!   steplake's integer steps cannot hold, is counted as skipped);
//! - a `histogram_series` value (`edges`, `values`) → a statistics-only
//!   tensor row, as TensorBoard histograms are;
//! - a value with no step (float, int, string, bool, datetime, string set)
//!   outside `sys/` → the run's configuration; `sys/tags` → its tags,
//!   `sys/name` → its name, `sys/forking/parent` and `sys/forking/step` →
//!   its lineage (`parent_run_id`, `fork_step`);
//! - string series and files → counted as skipped.
//!
//! Every file's footer and columns are checked before anything is sent; a
//! file that is not Parquet, is cut short or lacks a column is refused by
//! name. The parts of one run are read together, one run at a time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type};
use arrow::record_batch::RecordBatch;
use clap::Args;
use steplake_client::v1::{self, CreateRunRequest};
use steplake_client::Client;

use super::histograms::{edges_counts_stats, stats_only_tensor};
use super::parquet_input::{batches, check_columns, read_failed};
use super::upload::{
    config_json, files_under, parts_writer_id, run_failed, run_id_of, Destination, Tally, Upload,
};
use crate::CliError;

/// The columns every exported file has.
const COLUMNS: [&str; 12] = [
    "project_id",
    "run_id",
    "attribute_path",
    "attribute_type",
    "step",
    "timestamp",
    "int_value",
    "float_value",
    "string_value",
    "bool_value",
    "datetime_value",
    "string_set_value",
];

/// Flags of `steplake import neptune`.
#[derive(Args)]
pub(crate) struct NeptuneArgs {
    #[command(flatten)]
    to: Destination,
    /// neptune-exporter's data directory (`--data-path` of its export).
    dir: PathBuf,
}

/// The part files of each run, by (directory, run file prefix), parts in
/// order.
fn run_files(dir: &Path) -> Result<BTreeMap<(PathBuf, String), Vec<PathBuf>>, CliError> {
    let mut runs: BTreeMap<(PathBuf, String), Vec<(u64, PathBuf)>> = BTreeMap::new();
    for path in files_under(dir)? {
        let (Some(name), Some(directory)) =
            (path.file_name().and_then(|n| n.to_str()), path.parent())
        else {
            continue;
        };
        let Some((prefix, part)) = name
            .strip_suffix(".parquet")
            .and_then(|stem| stem.rsplit_once("_part_"))
        else {
            continue;
        };
        let Ok(part) = part.parse::<u64>() else {
            continue;
        };
        runs.entry((directory.to_path_buf(), prefix.to_string()))
            .or_default()
            .push((part, path.clone()));
    }
    if runs.is_empty() {
        return Err(CliError::Input(format!(
            "no neptune-exporter files (<run>_part_<n>.parquet) under {}; give the export's --data-path",
            dir.display()
        )));
    }
    Ok(runs
        .into_iter()
        .map(|(key, mut parts)| {
            parts.sort();
            (key, parts.into_iter().map(|(_, p)| p).collect())
        })
        .collect())
}

/// One run read from its parts.
#[derive(Default)]
struct RunData {
    project: String,
    run_id: String,
    name: Option<String>,
    parent: Option<String>,
    fork_step: Option<i64>,
    tags: Vec<String>,
    config: serde_json::Map<String, serde_json::Value>,
    /// (series, step, value, wall time µs), in file order.
    points: Vec<(String, i64, f64, i64)>,
    /// (series, step, wall time µs, statistics).
    histograms: Vec<(String, i64, i64, v1::TensorStatistics)>,
}

/// A column of `batch` cast to `to` (the exporter's types, read the same
/// way however a writer encoded them).
fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef, CliError> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| CliError::Input(format!("no column {name:?}")))?;
    cast(column, to).map_err(|e| CliError::Input(format!("column {name:?}: {e}")))
}

/// The step of `row`: None when absent, Err(()) when fractional.
fn step_at(steps: &dyn Array, row: usize) -> Option<Result<i64, ()>> {
    if steps.is_null(row) {
        return None;
    }
    if let Some(decimals) = steps.as_primitive_opt::<Decimal128Type>() {
        let DataType::Decimal128(_, scale) = decimals.data_type() else {
            return Some(Err(()));
        };
        let unit = 10i128
            .checked_pow(u32::try_from(*scale).unwrap_or(0))
            .unwrap_or(1);
        let raw = decimals.value(row);
        return Some(if raw % unit == 0 {
            i64::try_from(raw / unit).map_err(|_| ())
        } else {
            Err(())
        });
    }
    let value = steps.as_primitive::<Float64Type>().value(row);
    Some(if value.fract() == 0.0 && value.abs() < 9e15 {
        Ok(value as i64)
    } else {
        Err(())
    })
}

fn read_run(parts: &[PathBuf], tally: &mut Tally) -> Result<RunData, CliError> {
    let mut run = RunData::default();
    for path in parts {
        for batch in batches(path)? {
            read_batch(&batch?, &mut run, tally).map_err(|e| read_failed(path, &e))?;
        }
    }
    Ok(run)
}

fn read_batch(batch: &RecordBatch, run: &mut RunData, tally: &mut Tally) -> Result<(), CliError> {
    let text = |name| column(batch, name, &DataType::Utf8);
    let (projects, runs, paths, types) = (
        text("project_id")?,
        text("run_id")?,
        text("attribute_path")?,
        text("attribute_type")?,
    );
    let (projects, runs, paths, types) = (
        projects.as_string::<i32>(),
        runs.as_string::<i32>(),
        paths.as_string::<i32>(),
        types.as_string::<i32>(),
    );
    let steps_raw = batch
        .column_by_name("step")
        .ok_or_else(|| CliError::Input("no column \"step\"".into()))?;
    let steps = if matches!(steps_raw.data_type(), DataType::Decimal128(..)) {
        steps_raw.clone()
    } else {
        column(batch, "step", &DataType::Float64)?
    };
    let timestamps = column(batch, "timestamp", &DataType::Int64)?;
    let timestamps = timestamps.as_primitive::<Int64Type>();
    let floats = column(batch, "float_value", &DataType::Float64)?;
    let floats = floats.as_primitive::<Float64Type>();
    let ints = column(batch, "int_value", &DataType::Int64)?;
    let ints = ints.as_primitive::<Int64Type>();
    let strings = text("string_value")?;
    let strings = strings.as_string::<i32>();
    let bools = column(batch, "bool_value", &DataType::Boolean)?;
    let bools = bools.as_boolean();
    let datetimes = column(batch, "datetime_value", &DataType::Int64)?;
    let datetimes = datetimes.as_primitive::<Int64Type>();
    let sets = batch
        .column_by_name("string_set_value")
        .ok_or_else(|| CliError::Input("no column \"string_set_value\"".into()))?;
    let histograms = batch.column_by_name("histogram_value");
    for row in 0..batch.num_rows() {
        if run.run_id.is_empty() {
            run.project = projects.value(row).to_string();
            run.run_id = runs.value(row).to_string();
        }
        let path = paths.value(row);
        let wall_us = timestamps
            .is_valid(row)
            .then(|| timestamps.value(row).saturating_mul(1000));
        match types.value(row) {
            "float_series" => match step_at(steps.as_ref(), row) {
                Some(Ok(step)) if step >= 0 => {
                    let value = if floats.is_valid(row) {
                        floats.value(row)
                    } else {
                        f64::NAN
                    };
                    run.points
                        .push((path.to_string(), step, value, wall_us.unwrap_or(0)));
                }
                Some(Ok(_)) => tally.skip("series values at a negative step"),
                Some(Err(())) => {
                    tally.skip("series values at a fractional step (steplake steps are integers)")
                }
                None => tally.skip("series values with no step"),
            },
            "histogram_series" => {
                let Some(Ok(step)) = step_at(steps.as_ref(), row) else {
                    tally.skip("histogram values with no whole step");
                    continue;
                };
                match histograms.and_then(|h| histogram_at(h.as_ref(), row)) {
                    Some(stats) => {
                        run.histograms
                            .push((path.to_string(), step, wall_us.unwrap_or(0), stats))
                    }
                    None => tally.skip("histograms with no values"),
                }
            }
            "string_series" => tally.skip("string series (not imported)"),
            "file" | "file_series" | "file_set" | "artifact" => tally.skip("files (not imported)"),
            kind => {
                let value = match kind {
                    "float" if floats.is_valid(row) => {
                        serde_json::Number::from_f64(floats.value(row))
                            .map(serde_json::Value::Number)
                    }
                    "int" if ints.is_valid(row) => Some(ints.value(row).into()),
                    "string" if strings.is_valid(row) => Some(strings.value(row).into()),
                    "bool" if bools.is_valid(row) => Some(bools.value(row).into()),
                    "datetime" if datetimes.is_valid(row) => {
                        chrono::DateTime::from_timestamp_millis(datetimes.value(row))
                            .map(|t| t.to_rfc3339().into())
                    }
                    "string_set" => Some(string_set(sets.as_ref(), row).into()),
                    _ => {
                        tally.skip("attributes of other types (not imported)");
                        continue;
                    }
                };
                attribute(run, path, value);
            }
        }
    }
    Ok(())
}

/// The strings of row `row` of a list column.
fn string_set(sets: &dyn Array, row: usize) -> Vec<serde_json::Value> {
    let Some(lists) = sets.as_list_opt::<i32>() else {
        return Vec::new();
    };
    if lists.is_null(row) {
        return Vec::new();
    }
    let Ok(items) = cast(&lists.value(row), &DataType::Utf8) else {
        return Vec::new();
    };
    let items = items.as_string::<i32>();
    (0..items.len())
        .filter(|&i| items.is_valid(i))
        .map(|i| items.value(i).into())
        .collect()
}

/// A value with no step: the run's name, lineage and tags under `sys/`,
/// else its configuration.
fn attribute(run: &mut RunData, path: &str, value: Option<serde_json::Value>) {
    let Some(value) = value else {
        return;
    };
    match path {
        "sys/name" => run.name = value.as_str().map(str::to_string),
        "sys/forking/parent" => run.parent = value.as_str().map(run_id_of),
        "sys/forking/step" => run.fork_step = value.as_f64().map(|s| s.floor() as i64),
        "sys/tags" => {
            run.tags = value
                .as_array()
                .map(|tags| {
                    tags.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        }
        "sys/experiment/name" => {
            run.config.insert("neptune/experiment".into(), value);
        }
        _ if path.starts_with("sys/") => {}
        _ => {
            run.config.insert(path.to_string(), value);
        }
    }
}

/// The statistics of the histogram in row `row` of the `histogram_value`
/// struct column (`edges`: k + 1 bounds, `values`: k counts).
fn histogram_at(column: &dyn Array, row: usize) -> Option<v1::TensorStatistics> {
    let histograms = column.as_struct_opt()?;
    if histograms.is_null(row) {
        return None;
    }
    let floats = |name: &str| -> Option<Vec<f64>> {
        let lists = histograms.column_by_name(name)?.as_list_opt::<i32>()?;
        if lists.is_null(row) {
            return None;
        }
        let values = cast(&lists.value(row), &DataType::Float64).ok()?;
        let values = values.as_primitive::<Float64Type>();
        Some((0..values.len()).map(|i| values.value(i)).collect())
    };
    edges_counts_stats(&floats("edges")?, &floats("values")?)
}

/// Runs `steplake import neptune`.
pub(crate) async fn run(args: NeptuneArgs) -> Result<(), CliError> {
    let runs = run_files(&args.dir)?;
    for parts in runs.values() {
        for part in parts {
            check_columns(part, &COLUMNS, "a neptune-exporter file")?;
        }
    }
    let client = args.to.client().await?;
    let started = Instant::now();
    let mut tally = Tally::default();
    for ((_, prefix), parts) in &runs {
        let data = read_run(parts, &mut tally)?;
        if let Err(e) = import_run(client.as_ref(), data, parts, &mut tally).await {
            return Err(run_failed(prefix, e, &tally, args.to.dry_run));
        }
    }
    tally.conclude(args.to.dry_run, started)
}

async fn import_run(
    client: Option<&Client>,
    data: RunData,
    parts: &[PathBuf],
    tally: &mut Tally,
) -> Result<(), CliError> {
    if data.run_id.is_empty() {
        return Ok(());
    }
    let run_id = run_id_of(&data.run_id);
    if let Some(client) = client {
        client
            .create_run(CreateRunRequest {
                run_id: run_id.clone(),
                project: data.project.clone(),
                name: data.name.clone().unwrap_or_else(|| data.run_id.clone()),
                config_json: config_json(&data.config),
                tags: data.tags.clone(),
                parent_run_id: data.parent.clone().unwrap_or_default(),
                fork_step: data.fork_step,
            })
            .await?;
    }
    let writer_id = parts_writer_id("neptune", &run_id, "parts", parts);
    let mut upload = Upload::open(client, &run_id, &writer_id).await?;
    for (name, step, value, wall_us) in &data.points {
        if steplake_core::validate_series_name("attribute", name).is_err() {
            tally.skip("series whose path is not a valid series name");
            continue;
        }
        upload.point(name, *step, *value, *wall_us).await?;
    }
    for (name, step, wall_us, stats) in data.histograms {
        upload
            .tensor(stats_only_tensor(name, step, wall_us, stats))
            .await?;
    }
    upload.finish_into(tally).await?;
    tally.runs += 1;
    if !data.config.is_empty() {
        tally.configs += 1;
    }
    if let Some(client) = client {
        client.finish_run(&run_id, "finished").await?;
    }
    Ok(())
}
