//! Import throughput of `steplake import tensorboard` beside TensorBoard's
//! own reader on the same event files (issue 19).
//!
//! Run: `cargo bench -p steplake-cli --bench import_tensorboard`
//! (`./scripts/test.sh` first: its virtual environment has the
//! `tensorboard` package; `STEPLAKE_PYTHON` names another interpreter).
//!
//! Data: 1M scalar points (10 tags × 100,000 steps, one value per event, as
//! PyTorch's `SummaryWriter.add_scalar` writes them) written once by
//! TensorBoard's `EventFileWriter` into `~/.cache/steplake/bench-data/
//! tensorboard-<points>` (`STEPLAKE_BENCH_POINTS` changes the count).
//!
//! Timed, medians of `STEPLAKE_BENCH_REPEATS` (default 3):
//! - TensorBoard's `EventAccumulator` with size guidance 0 (every point
//!   kept), `Reload()` and every tag's `Scalars()`;
//! - `steplake import tensorboard --dry-run`: read, check and convert
//!   every record, send nothing;
//! - `steplake import tensorboard` into a running server (a fresh data
//!   directory each time), every point acknowledged as durable.
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
    PathBuf::from(python::manifest_dir()).join("../../benches/import_tensorboard.py")
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The event files, written once.
fn data_set(points: u64) -> PathBuf {
    let dir = PathBuf::from(format!(
        "{}/.cache/steplake/bench-data/tensorboard-{points}",
        std::env::var("HOME").unwrap_or_default()
    ));
    let complete = dir.with_extension("complete");
    if !complete.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!(
            "writing {points} points with TensorBoard's EventFileWriter into {}",
            dir.display()
        );
        let status = Command::new(python::python())
            .arg(helper())
            .args(["write"])
            .arg(dir.join("run"))
            .arg(points.to_string())
            .status()
            .expect("run the Python helper");
        assert!(status.success(), "the helper could not write the event files (is the tensorboard package installed? ./scripts/test.sh installs it)");
        std::fs::write(&complete, b"").expect("mark complete");
    }
    dir
}

/// Seconds `steplake import tensorboard ARGS DIR` takes; checks it read `points`.
fn time_import(dir: &Path, args: &[&str], points: u64) -> f64 {
    let started = Instant::now();
    let output = Command::new(binary())
        .args(["import", "tensorboard"])
        .args(args)
        .arg(dir)
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
    let dir = data_set(points);
    let bytes: u64 = std::fs::read_dir(dir.join("run"))
        .expect("event files")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();

    let mut tensorboard = Vec::new();
    for _ in 0..repeats {
        let output = Command::new(python::python())
            .arg(helper())
            .arg("read")
            .arg(dir.join("run"))
            .output()
            .expect("run the Python helper");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let line = String::from_utf8_lossy(&output.stdout);
        let result: serde_json::Value = serde_json::from_str(line.trim()).expect("JSON line");
        assert_eq!(result["points"].as_u64(), Some(points), "{line}");
        tensorboard.push(result["seconds"].as_f64().expect("seconds"));
    }
    let dry: Vec<f64> = (0..repeats)
        .map(|_| time_import(&dir, &["--dry-run"], points))
        .collect();
    let mut imported = Vec::new();
    for _ in 0..repeats {
        let data = tempfile::tempdir().expect("temp dir");
        let server = server::start_server(data.path());
        imported.push(time_import(&dir, &["--server", &server.url], points));
        server::stop_server(server);
    }
    let (tb, dry, full) = (median(tensorboard), median(dry), median(imported));
    let rate = |s: f64| points as f64 / s;
    println!(
        "TensorBoard import, {points} scalar points in {:.1} MiB of event files; median of {repeats}",
        bytes as f64 / (1 << 20) as f64
    );
    println!(
        "{:<52} {:>10} {:>14} {:>12}",
        "reader", "seconds", "points/s", "vs TensorBoard"
    );
    println!(
        "{:<52} {:>10.3} {:>14.0} {:>11.2}x",
        "TensorBoard EventAccumulator (size guidance 0)",
        tb,
        rate(tb),
        1.0
    );
    println!(
        "{:<52} {:>10.3} {:>14.0} {:>11.1}x",
        "steplake import tensorboard --dry-run (read only)",
        dry,
        rate(dry),
        tb / dry
    );
    println!(
        "{:<52} {:>10.3} {:>14.0} {:>11.1}x",
        "steplake import tensorboard into a server",
        full,
        rate(full),
        tb / full
    );
}
