//! Import throughput of `steplake import tensorboard`, `steplake import
//! mlflow` and `steplake import wandb` beside each tracker's own reader on
//! the same files (issue 19).
//!
//! Run: `cargo bench -p steplake-cli --bench import`
//! (`./scripts/test.sh` first: its virtual environment has the
//! `tensorboard`, `mlflow-skinny` and `wandb` packages; `STEPLAKE_PYTHON` names
//! another interpreter).
//!
//! Data: 1M scalar points each (10 series × 100,000 steps;
//! `STEPLAKE_BENCH_POINTS` changes the count), written once by the tracker's
//! own writer under `~/.cache/steplake/bench-data/`:
//! - TensorBoard: event files from `EventFileWriter`, one value per event
//!   as PyTorch's `SummaryWriter.add_scalar` writes them;
//! - MLflow: one run in an SQLite tracking store (MLflow 3's default),
//!   logged with `log_batch`;
//! - W&B: one offline run (`wandb.init(mode="offline")`), 10 metrics per
//!   `run.log` row.
//!
//! Timed, medians of `STEPLAKE_BENCH_REPEATS` (default 3):
//! - the tracker's reader: TensorBoard's `EventAccumulator` with size
//!   guidance 0 (`Reload()` and every tag's `Scalars()`); MLflow's
//!   `MlflowClient.get_metric_history` for every metric; W&B's reader of
//!   its run logs, `wandb leet inspect --json`, with its records parsed
//!   (steplake's importer reads through the same program, so it cannot be
//!   faster than it);
//! - `steplake import … --dry-run`: read, check and convert every point,
//!   send nothing;
//! - `steplake import …` into a running server (a fresh data directory
//!   each time), every point acknowledged as durable.
//!
//! Target: ≥ 50× TensorBoard's reader.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[path = "common/python.rs"]
mod python;
#[path = "common/server.rs"]
#[allow(dead_code)]
mod server;

fn binary() -> std::ffi::OsString {
    std::env::var_os("STEPLAKE_BENCH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_steplake").into())
}

fn helper() -> PathBuf {
    PathBuf::from(python::manifest_dir()).join("../../benches/import_peers.py")
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// A tracker's data, written once by `write-<kind>` into `name`.
fn data_set(kind: &str, name: &str, points: u64) -> PathBuf {
    let path = PathBuf::from(format!(
        "{}/.cache/steplake/bench-data/{name}",
        std::env::var("HOME").unwrap_or_default()
    ));
    let complete = path.with_extension("complete");
    if !complete.exists() {
        let _ = std::fs::remove_dir_all(&path);
        let _ = std::fs::remove_file(&path);
        eprintln!(
            "writing {points} points with {kind}'s own writer into {}",
            path.display()
        );
        let status = Command::new(python::python())
            .arg(helper())
            .arg(format!("write-{kind}"))
            .arg(&path)
            .arg(points.to_string())
            .status()
            .expect("run the Python helper");
        assert!(status.success(), "the helper could not write the {kind} data (is the package installed? ./scripts/test.sh installs it)");
        std::fs::write(&complete, b"").expect("mark complete");
    }
    path
}

/// Seconds the tracker's own reader takes over `path` (checks it read `points`).
fn time_peer(kind: &str, path: &Path, points: u64) -> f64 {
    let output = Command::new(python::python())
        .arg(helper())
        .arg(format!("read-{kind}"))
        .arg(path)
        .output()
        .expect("run the Python helper");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let result: serde_json::Value = serde_json::from_str(line.trim()).expect("JSON line");
    assert_eq!(result["points"].as_u64(), Some(points), "{line}");
    result["seconds"].as_f64().expect("seconds")
}

/// Seconds `steplake import KIND ARGS PATH` takes; checks it read `points`.
fn time_import(kind: &str, path: &Path, args: &[&str], points: u64) -> f64 {
    let started = Instant::now();
    let output = Command::new(binary())
        .args(["import", kind])
        .args(import_flags(kind))
        .args(args)
        .arg(path)
        .output()
        .expect("run steplake import");
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{points} points")), "{stderr}");
    seconds
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let points: u64 = std::env::var("STEPLAKE_BENCH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let repeats: usize = std::env::var("STEPLAKE_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let tensorboard = data_set("tensorboard", &format!("tensorboard-{points}"), points);
    compare(
        "tensorboard",
        "TensorBoard EventAccumulator (size guidance 0)",
        &tensorboard.join("run"),
        &tensorboard,
        points,
        repeats,
    );
    let mlflow = data_set("mlflow", &format!("mlflow-{points}.db"), points);
    compare(
        "mlflow",
        "MLflow get_metric_history (SQLite store)",
        &mlflow,
        &mlflow,
        points,
        repeats,
    );
    let wandb = data_set("wandb", &format!("wandb-{points}"), points);
    compare(
        "wandb",
        "W&B's reader (wandb leet inspect --json, parsed)",
        &wandb,
        &wandb,
        points,
        repeats,
    );
}

/// Flags `steplake import KIND` needs besides the path.
fn import_flags(kind: &str) -> Vec<String> {
    match kind {
        "wandb" => {
            let python = PathBuf::from(python::python());
            let program = python.parent().map(|d| d.join("wandb")).unwrap_or_default();
            vec!["--wandb".into(), program.display().to_string()]
        }
        _ => Vec::new(),
    }
}

/// Bytes of the files under `path` (symbolic links not followed).
fn bytes_under(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return if meta.is_file() { meta.len() } else { 0 };
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| bytes_under(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// Times the peer's reader over `peer_path` and steplake's import of
/// `path`, and prints them side by side.
fn compare(kind: &str, peer: &str, peer_path: &Path, path: &Path, points: u64, repeats: usize) {
    let bytes = bytes_under(path);
    let theirs = median(
        (0..repeats)
            .map(|_| time_peer(kind, peer_path, points))
            .collect(),
    );
    let dry = median(
        (0..repeats)
            .map(|_| time_import(kind, path, &["--dry-run"], points))
            .collect(),
    );
    let mut imported = Vec::new();
    for _ in 0..repeats {
        let data = tempfile::tempdir().expect("temp dir");
        let server = server::start_server(data.path());
        imported.push(time_import(kind, path, &["--server", &server.url], points));
        server::stop_server(server);
    }
    let full = median(imported);
    let rate = |s: f64| points as f64 / s;
    println!(
        "{kind} import, {points} scalar points in {:.1} MiB; median of {repeats}",
        bytes as f64 / (1 << 20) as f64
    );
    println!(
        "{:<52} {:>10} {:>14} {:>12}",
        "reader", "seconds", "points/s", "vs peer"
    );
    println!(
        "{peer:<52} {theirs:>10.3} {:>14.0} {:>11.2}x",
        rate(theirs),
        1.0
    );
    let dry_label = format!("steplake import {kind} --dry-run (read only)");
    println!(
        "{dry_label:<52} {dry:>10.3} {:>14.0} {:>11.1}x",
        rate(dry),
        theirs / dry
    );
    let full_label = format!("steplake import {kind} into a server");
    println!(
        "{full_label:<52} {full:>10.3} {:>14.0} {:>11.1}x",
        rate(full),
        theirs / full
    );
}
