//! `steplake write` benchmark (issue 23): points/s from CSV and JSONL, from
//! a file and from stdin, into the real server.
//!
//! Run: `cargo bench -p steplake-cli --bench cli_write`
//! Scale with STEPLAKE_BENCH_LINES (default 2,000,000 lines). Target: at
//! least 1.5M points/s for each input.
//!
//! It writes the inputs to a temporary directory (CSV `name,step,value`
//! over 10 series; JSONL long form, one point a line; JSONL wide form, 10
//! metrics a line), starts the release server, and times each
//! `steplake write` from start to exit (everything acknowledged). Then it
//! stops the server with SIGTERM and times `steplake sql --data-dir DIR
//! "SELECT 1"` (median of 5) with the WAL bytes a clean stop left: a covered
//! segment left behind used to be replayed by every embedded query.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

#[path = "common/server.rs"]
#[allow(dead_code)] // its query timer serves the query benchmarks
mod server;
use server::{start_server, stop_server};

const SERIES: usize = 10;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn value(line: usize) -> f64 {
    // A decaying, wiggling loss: realistic digits, not round numbers.
    let step = (line / SERIES) as f64;
    2.0 / (1.0 + step / 1000.0) + 0.01 * ((line as f64) * 0.37).sin()
}

/// Writes the three inputs; returns (path, points) for each.
fn write_inputs(dir: &Path, lines: usize) -> Vec<(&'static str, std::path::PathBuf, usize)> {
    let csv = dir.join("points.csv");
    let mut out = BufWriter::new(File::create(&csv).expect("create csv"));
    writeln!(out, "name,step,value").expect("write");
    for line in 0..lines {
        let name = line % SERIES;
        writeln!(out, "train/metric_{name},{},{}", line / SERIES, value(line)).expect("write");
    }
    out.flush().expect("flush");

    let long = dir.join("long.jsonl");
    let mut out = BufWriter::new(File::create(&long).expect("create jsonl"));
    for line in 0..lines {
        let name = line % SERIES;
        writeln!(
            out,
            "{{\"name\":\"train/metric_{name}\",\"step\":{},\"value\":{}}}",
            line / SERIES,
            value(line)
        )
        .expect("write");
    }
    out.flush().expect("flush");

    let wide = dir.join("wide.jsonl");
    let mut out = BufWriter::new(File::create(&wide).expect("create jsonl"));
    let wide_lines = lines / SERIES;
    for step in 0..wide_lines {
        write!(out, "{{\"step\":{step}").expect("write");
        for name in 0..SERIES {
            write!(
                out,
                ",\"train/metric_{name}\":{}",
                value(step * SERIES + name)
            )
            .expect("write");
        }
        writeln!(out, "}}").expect("write");
    }
    out.flush().expect("flush");
    vec![
        ("CSV", csv, lines),
        ("JSONL long", long, lines),
        ("JSONL wide", wide, wide_lines * SERIES),
    ]
}

/// Runs `steplake write` from the file or from stdin; returns seconds.
fn time_write(url: &str, run: &str, path: &Path, stdin: bool) -> f64 {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steplake"));
    command
        .args(["write", "--server", url, "--run", run])
        .env("STEPLAKE_LOG", "warn")
        .stderr(Stdio::piped());
    if path.extension().is_some_and(|e| e == "jsonl") {
        command.args(["--format", "jsonl"]);
    }
    if stdin {
        command
            .arg("-")
            .stdin(File::open(path).expect("open input"));
    } else {
        command.arg(path);
    }
    let start = Instant::now();
    let output = command.output().expect("run steplake write");
    let seconds = start.elapsed().as_secs_f64();
    assert!(
        output.status.success(),
        "steplake write failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    seconds
}

fn main() {
    let lines = env_usize("STEPLAKE_BENCH_LINES", 2_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = write_inputs(dir.path(), lines);
    let data = dir.path().join("data");
    let server = start_server(&data);
    println!("steplake write, {lines} input lines, into the release server on loopback");
    for (label, path, points) in &inputs {
        for stdin in [false, true] {
            let run = format!(
                "{}-{}",
                label.replace(' ', "-").to_lowercase(),
                if stdin { "stdin" } else { "file" }
            );
            let seconds = time_write(&server.url, &run, path, stdin);
            println!(
                "{label:<11} from {:<5}: {points} points in {seconds:.2} s = {:.2}M points/s",
                if stdin { "stdin" } else { "file" },
                *points as f64 / seconds / 1e6
            );
        }
    }
    stop_server(server);
    let wal_bytes: u64 = std::fs::read_dir(data.join("wal"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            let output = Command::new(env!("CARGO_BIN_EXE_steplake"))
                .args(["sql", "--data-dir"])
                .arg(&data)
                .arg("SELECT 1")
                .output()
                .expect("run steplake sql");
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "after a clean stop: {wal_bytes} WAL bytes left; steplake sql --data-dir DIR \"SELECT 1\": median {:.3} s over 5",
        times[2]
    );
}
