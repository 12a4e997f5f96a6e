//! `steplake import mlflow PATH`: the runs of an MLflow tracking store,
//! either its `mlruns/` directory (the file store) or its SQLite database
//! (`mlflow.db`, MLflow 3's default).
//!
//! What becomes what:
//! - an experiment → the project of its runs (the experiment's name);
//! - a run → a run with MLflow's run id, its name (`run_name`), its final
//!   status (FINISHED → `finished`, FAILED → `failed`, KILLED → `killed`;
//!   a RUNNING run stays running), and `mlflow.parentRunId` as its
//!   parent (`parent_run_id`);
//! - params → the run's configuration (strings, as MLflow keeps them);
//! - tags → the run's tags as `key=value`, except MLflow's own `mlflow.*`
//!   tags;
//! - metrics → points of series `key` at their step, with their timestamp
//!   (milliseconds) as the wall time. MLflow stores NaN as a flag and
//!   infinities as ±1.797e308, and so do the points. A step logged twice
//!   keeps the value with the later timestamp (MLflow keeps both).
//!
//! Deleted runs and experiments are skipped. Every metric file of a file
//! store is checked before anything is sent: a malformed line is refused
//! with its file and line number, and nothing is imported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use steplake_client::v1::CreateRunRequest;
use steplake_client::Client;

use super::upload::{
    config_json, files_under, progress_bar, run_failed, source_writer_id, Destination, Tally,
    Upload,
};
use crate::CliError;

/// Flags of `steplake import mlflow`.
#[derive(Args)]
pub(crate) struct MlflowArgs {
    #[command(flatten)]
    to: Destination,
    /// The store: an `mlruns` directory, or an SQLite database file
    /// (`mlflow.db`, or `sqlite:///path/to/mlflow.db`).
    path: String,
}

/// One MLflow run and what goes with it.
#[derive(Debug, Clone, Default)]
struct MlflowRun {
    run_id: String,
    experiment: String,
    name: String,
    /// MLflow's status, upper case (FINISHED, FAILED, KILLED, RUNNING, …).
    status: String,
    params: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    deleted: bool,
    /// Its directory, in a file store.
    dir: PathBuf,
}

/// A metric value as MLflow keeps it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct MetricPoint {
    step: i64,
    value: f64,
    timestamp_ms: i64,
}

/// Where the runs come from.
enum Store {
    Files(PathBuf),
    Sqlite(rusqlite::Connection),
}

impl Store {
    fn open(path: &str) -> Result<Store, CliError> {
        let path = path.strip_prefix("sqlite:///").map_or_else(
            || PathBuf::from(path),
            |rest| PathBuf::from(format!("/{rest}")),
        );
        let metadata = std::fs::metadata(&path)
            .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?;
        if metadata.is_dir() {
            return Ok(Store::Files(path));
        }
        let mut magic = [0u8; 16];
        let is_sqlite = std::fs::File::open(&path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok()
            && &magic == b"SQLite format 3\0";
        if !is_sqlite {
            return Err(CliError::Input(format!(
                "{} is neither an mlruns directory nor an SQLite database; give MLflow's tracking store (an mlruns directory, or mlflow.db)",
                path.display()
            )));
        }
        let connection = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sqlite_error(&path, e))?;
        Ok(Store::Sqlite(connection))
    }

    /// Every run, parents before their children.
    fn runs(&self) -> Result<Vec<MlflowRun>, CliError> {
        let mut runs = match self {
            Store::Files(root) => file_runs(root)?,
            Store::Sqlite(db) => sqlite_runs(db)?,
        };
        runs.sort_by(|a, b| (&a.experiment, &a.run_id).cmp(&(&b.experiment, &b.run_id)));
        let ids: std::collections::HashSet<String> =
            runs.iter().map(|r| r.run_id.clone()).collect();
        let (mut ordered, mut waiting): (Vec<MlflowRun>, Vec<MlflowRun>) =
            runs.into_iter().partition(|r| {
                r.tags
                    .get("mlflow.parentRunId")
                    .is_none_or(|parent| !ids.contains(parent))
            });
        // Children after their parents (nesting is rarely deep).
        while !waiting.is_empty() {
            let placed: std::collections::HashSet<String> =
                ordered.iter().map(|r| r.run_id.clone()).collect();
            let (ready, still): (Vec<MlflowRun>, Vec<MlflowRun>) =
                waiting.into_iter().partition(|r| {
                    r.tags
                        .get("mlflow.parentRunId")
                        .is_some_and(|p| placed.contains(p))
                });
            if ready.is_empty() {
                ordered.extend(still);
                break;
            }
            ordered.extend(ready);
            waiting = still;
        }
        Ok(ordered)
    }

    /// The metrics of `run`, by series, each sorted by (step, timestamp).
    fn metrics(&self, run: &MlflowRun) -> Result<BTreeMap<String, Vec<MetricPoint>>, CliError> {
        let mut metrics = match self {
            Store::Files(_) => file_metrics(&run.dir)?,
            Store::Sqlite(db) => sqlite_metrics(db, &run.run_id)?,
        };
        for points in metrics.values_mut() {
            points.sort_by_key(|p| (p.step, p.timestamp_ms));
        }
        Ok(metrics)
    }
}

fn sqlite_error(path: &Path, e: rusqlite::Error) -> CliError {
    CliError::Input(format!(
        "{}: {e}; is it MLflow's tracking database?",
        path.display()
    ))
}

/// The top-level `key: value` lines of a `meta.yaml` (MLflow writes flat
/// YAML; quotes around a value are removed).
fn meta_yaml(path: &Path) -> Result<BTreeMap<String, String>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?;
    Ok(text
        .lines()
        .filter(|line| !line.starts_with(' ') && !line.starts_with('-'))
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| {
            let value = value.trim();
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(value);
            (key.trim().to_string(), value.to_string())
        })
        .collect())
}

/// The files under `dir` (recursively), by their path relative to it with
/// `/` between components: MLflow stores a key `a/b` as file `b` in
/// directory `a`.
fn keyed_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>, CliError> {
    Ok(files_under(dir)?
        .into_iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(dir).ok()?;
            let key = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            Some((key, path))
        })
        .collect())
}

fn read_values(dir: &Path) -> Result<BTreeMap<String, String>, CliError> {
    keyed_files(dir)?
        .into_iter()
        .map(|(key, path)| {
            let value = std::fs::read_to_string(&path)
                .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?;
            Ok((key, value))
        })
        .collect()
}

/// MLflow's numeric run statuses in `meta.yaml`.
fn status_name(code: &str) -> String {
    match code {
        "1" => "RUNNING",
        "2" => "SCHEDULED",
        "3" => "FINISHED",
        "4" => "FAILED",
        "5" => "KILLED",
        other => other,
    }
    .to_string()
}

/// The runs of a file store: `<root>/<experiment id>/meta.yaml` and
/// `<root>/<experiment id>/<run id>/{meta.yaml, params/, tags/}`.
fn file_runs(root: &Path) -> Result<Vec<MlflowRun>, CliError> {
    let mut runs = Vec::new();
    let experiments = std::fs::read_dir(root)
        .map_err(|e| CliError::Input(format!("cannot read {}: {e}", root.display())))?;
    let mut experiment_dirs: Vec<PathBuf> = experiments
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.join("meta.yaml").is_file())
        .collect();
    experiment_dirs.sort();
    if experiment_dirs.is_empty() {
        return Err(CliError::Input(format!(
            "{} holds no MLflow experiment (no <id>/meta.yaml); give the mlruns directory",
            root.display()
        )));
    }
    for experiment_dir in experiment_dirs {
        let meta = meta_yaml(&experiment_dir.join("meta.yaml"))?;
        let experiment = meta.get("name").cloned().unwrap_or_default();
        let experiment_deleted = meta.get("lifecycle_stage").is_some_and(|s| s == "deleted");
        let mut run_dirs: Vec<PathBuf> = std::fs::read_dir(&experiment_dir)
            .map_err(|e| CliError::Input(format!("cannot read {}: {e}", experiment_dir.display())))?
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.join("meta.yaml").is_file())
            .collect();
        run_dirs.sort();
        for run_dir in run_dirs {
            let meta = meta_yaml(&run_dir.join("meta.yaml"))?;
            runs.push(MlflowRun {
                run_id: meta
                    .get("run_id")
                    .or_else(|| meta.get("run_uuid"))
                    .cloned()
                    .unwrap_or_default(),
                experiment: experiment.clone(),
                name: meta.get("run_name").cloned().unwrap_or_default(),
                status: status_name(meta.get("status").map_or("", String::as_str)),
                params: read_values(&run_dir.join("params"))?,
                tags: read_values(&run_dir.join("tags"))?,
                deleted: experiment_deleted
                    || meta.get("lifecycle_stage").is_some_and(|s| s == "deleted"),
                dir: run_dir.clone(),
            });
        }
    }
    Ok(runs)
}

/// The metric files of a file-store run: lines of `timestamp value step`
/// (older MLflow wrote `timestamp value`, step 0). A malformed line is
/// refused with its file and line number.
fn file_metrics(run_dir: &Path) -> Result<BTreeMap<String, Vec<MetricPoint>>, CliError> {
    let mut metrics = BTreeMap::new();
    for (key, path) in keyed_files(&run_dir.join("metrics"))? {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?;
        let mut points = Vec::new();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |why: &str| {
                CliError::Input(format!(
                    "{} line {}: {why} in {line:?}; expected \"timestamp value step\"; nothing was imported",
                    path.display(),
                    number + 1
                ))
            };
            let mut fields = line.split_whitespace();
            let timestamp_ms = fields
                .next()
                .and_then(|f| f.parse::<i64>().ok())
                .ok_or_else(|| bad("no timestamp (milliseconds)"))?;
            let value = fields
                .next()
                .and_then(|f| f.parse::<f64>().ok())
                .ok_or_else(|| bad("no number as the value"))?;
            let step = match fields.next() {
                None => 0,
                Some(f) => f
                    .parse::<i64>()
                    .map_err(|_| bad("the step is not an integer"))?,
            };
            if fields.next().is_some() {
                return Err(bad("more than three fields"));
            }
            points.push(MetricPoint {
                step,
                value,
                timestamp_ms,
            });
        }
        metrics.insert(key, points);
    }
    Ok(metrics)
}

fn sqlite_runs(db: &rusqlite::Connection) -> Result<Vec<MlflowRun>, CliError> {
    let failed = |e: rusqlite::Error| {
        CliError::Input(format!(
            "reading the MLflow database: {e}; is it MLflow's tracking database?"
        ))
    };
    let mut statement = db
        .prepare(
            "SELECT r.run_uuid, e.name, r.name, r.status, r.lifecycle_stage, e.lifecycle_stage \
             FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id",
        )
        .map_err(failed)?;
    let mut runs: Vec<MlflowRun> = statement
        .query_map([], |row| {
            let run_stage: Option<String> = row.get(4)?;
            let experiment_stage: Option<String> = row.get(5)?;
            Ok(MlflowRun {
                run_id: row.get(0)?,
                experiment: row.get(1)?,
                name: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
                status: row.get::<_, Option<String>>(3)?.unwrap_or_default(),
                deleted: run_stage.as_deref() == Some("deleted")
                    || experiment_stage.as_deref() == Some("deleted"),
                ..Default::default()
            })
        })
        .map_err(failed)?
        .collect::<Result<_, _>>()
        .map_err(failed)?;
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (i, run) in runs.iter().enumerate() {
        index.insert(run.run_id.clone(), i);
    }
    for (table, is_params) in [("params", true), ("tags", false)] {
        let mut statement = db
            .prepare(&format!("SELECT run_uuid, key, value FROM {table}"))
            .map_err(failed)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?.unwrap_or_default(),
                ))
            })
            .map_err(failed)?;
        for row in rows {
            let (run_id, key, value) = row.map_err(failed)?;
            if let Some(&i) = index.get(&run_id) {
                let map = if is_params {
                    &mut runs[i].params
                } else {
                    &mut runs[i].tags
                };
                map.insert(key, value);
            }
        }
    }
    Ok(runs)
}

fn sqlite_metrics(
    db: &rusqlite::Connection,
    run_id: &str,
) -> Result<BTreeMap<String, Vec<MetricPoint>>, CliError> {
    let failed =
        |e: rusqlite::Error| CliError::Input(format!("reading the metrics of run {run_id}: {e}"));
    let mut statement = db
        .prepare_cached(
            "SELECT key, step, value, is_nan, timestamp FROM metrics WHERE run_uuid = ?1",
        )
        .map_err(failed)?;
    let rows = statement
        .query_map([run_id], |row| {
            let is_nan: bool = row.get::<_, Option<bool>>(3)?.unwrap_or(false);
            Ok((
                row.get::<_, String>(0)?,
                MetricPoint {
                    step: row.get::<_, Option<i64>>(1)?.unwrap_or(0),
                    value: if is_nan { f64::NAN } else { row.get(2)? },
                    timestamp_ms: row.get(4)?,
                },
            ))
        })
        .map_err(failed)?;
    let mut metrics: BTreeMap<String, Vec<MetricPoint>> = BTreeMap::new();
    for row in rows {
        let (key, point) = row.map_err(failed)?;
        metrics.entry(key).or_default().push(point);
    }
    Ok(metrics)
}

/// Runs `steplake import mlflow`.
pub(crate) async fn run(args: MlflowArgs) -> Result<(), CliError> {
    let store = Store::open(&args.path)?;
    let runs = store.runs()?;
    // Every run's metrics are read (and a file store's lines checked)
    // before anything is sent.
    let mut points_of_run = Vec::with_capacity(runs.len());
    for run in &runs {
        let count: usize = if run.deleted {
            0
        } else {
            store.metrics(run)?.values().map(Vec::len).sum()
        };
        points_of_run.push(count as u64);
    }
    let client = args.to.client().await?;
    let progress = progress_bar(
        points_of_run.iter().sum(),
        "{msg} [{bar:30}] {pos}/{len} points {per_sec} eta {eta}",
    );
    let started = Instant::now();
    let mut tally = Tally::default();
    for (run, &points) in runs.iter().zip(&points_of_run) {
        if run.deleted {
            tally.skip("deleted runs (or runs of deleted experiments)");
            continue;
        }
        progress.set_message(format!("{} / {}", run.experiment, run.name));
        if let Err(e) = import_run(client.as_ref(), &store, run, points, &mut tally).await {
            progress.finish_and_clear();
            return Err(run_failed(&run.run_id, e, &tally, args.to.dry_run));
        }
        progress.inc(points);
    }
    progress.finish_and_clear();
    tally.conclude(args.to.dry_run, started)
}

async fn import_run(
    client: Option<&Client>,
    store: &Store,
    run: &MlflowRun,
    points: u64,
    tally: &mut Tally,
) -> Result<(), CliError> {
    steplake_core::validate_run_id(&run.run_id).map_err(|e| CliError::Input(e.to_string()))?;
    let config: serde_json::Map<String, serde_json::Value> = run
        .params
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let tags: Vec<String> = run
        .tags
        .iter()
        .filter(|(k, _)| !k.starts_with("mlflow."))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let parent = run
        .tags
        .get("mlflow.parentRunId")
        .filter(|p| steplake_core::validate_run_id(p).is_ok())
        .cloned()
        .unwrap_or_default();
    if let Some(client) = client {
        client
            .create_run(CreateRunRequest {
                run_id: run.run_id.clone(),
                project: run.experiment.clone(),
                name: if run.name.is_empty() {
                    run.run_id.clone()
                } else {
                    run.name.clone()
                },
                config_json: config_json(&config),
                tags,
                parent_run_id: parent,
                ..Default::default()
            })
            .await?;
    }
    let writer_id = source_writer_id("mlflow", &run.run_id, "metrics", points);
    let mut upload = Upload::open(client, &run.run_id, &writer_id).await?;
    for (key, series) in store.metrics(run)? {
        if steplake_core::validate_series_name("metric", &key).is_err() {
            tally.skip("metrics whose key is not a valid series name");
            continue;
        }
        for point in series {
            if point.step < 0 {
                tally.skip("metric values at a negative step");
                continue;
            }
            upload
                .point(
                    &key,
                    point.step,
                    point.value,
                    point.timestamp_ms.saturating_mul(1000),
                )
                .await?;
        }
    }
    upload.finish_into(tally).await?;
    tally.runs += 1;
    if !config.is_empty() {
        tally.configs += 1;
    }
    let status = match run.status.as_str() {
        "FINISHED" => Some("finished"),
        "FAILED" => Some("failed"),
        "KILLED" => Some("killed"),
        _ => None,
    };
    if let (Some(client), Some(status)) = (client, status) {
        client.finish_run(&run.run_id, status).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines_with_and_without_steps_and_a_bad_line() {
        let dir = tempfile::tempdir().expect("dir");
        let metrics = dir.path().join("metrics").join("train");
        std::fs::create_dir_all(&metrics).expect("mkdir");
        std::fs::write(metrics.join("loss"), "1000 0.5 0\n1001 nan 1\n1002 inf 2\n")
            .expect("write");
        std::fs::write(dir.path().join("metrics").join("old"), "5 1.25\n").expect("write");
        let read = file_metrics(dir.path()).expect("metrics");
        let loss = &read["train/loss"];
        assert_eq!(loss.len(), 3);
        assert!(loss[1].value.is_nan());
        assert_eq!(loss[2].value, f64::INFINITY);
        assert_eq!(
            read["old"],
            vec![MetricPoint {
                step: 0,
                value: 1.25,
                timestamp_ms: 5
            }]
        );
        std::fs::write(metrics.join("loss"), "1000 0.5 0\n1001 oops 1\n").expect("write");
        let Err(CliError::Input(message)) = file_metrics(dir.path()) else {
            panic!("a bad line is refused");
        };
        assert!(message.contains("loss line 2"), "{message}");
    }

    #[test]
    fn meta_yaml_reads_flat_keys() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("meta.yaml");
        std::fs::write(&path, "name: exp one\nexperiment_id: '12'\ntags: []\n").expect("write");
        let meta = meta_yaml(&path).expect("meta");
        assert_eq!(meta["name"], "exp one");
        assert_eq!(meta["experiment_id"], "12");
    }
}
