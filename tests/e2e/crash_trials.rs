//! Crash trials: kill -9 the server while three kinds of writers stream into
//! it, start it again, and check that every acknowledged point is there
//! exactly once.
//!
//! Per trial, on one data directory that lives across all trials:
//! - a raw gRPC writer (the Rust client, one writer id for every trial)
//!   streams batches of 500 steps; after the kill it resends from its first
//!   unacknowledged sequence number, as the protocol asks;
//! - the Python logger (`tests/python/crash_logger.py`, a new run each
//!   trial) logs 60,000 steps, prints how far its flushes were
//!   acknowledged, spools while the server is gone and delivers the spool
//!   once it is back;
//! - `steplake write` streams a 100,000-point CSV into a new run and reports
//!   how many points were acknowledged before the server died.
//!
//! The server is killed 0.3–1.5 s into the trial, then started again (it
//! recovers from the WAL), and the next trial begins. At the end every run is
//! counted with SQL: a point acknowledged and missing is lost, a step stored
//! twice is doubled. The test prints trials, points acknowledged, lost and
//! doubled, and fails unless both are 0.
//!
//! `STEPLAKE_CRASH_TRIALS=N` sets the number of trials (default 12, about
//! 30 s on a debug build); without it the run is also cut off after 150 s.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use steplake_client::v1::{CreateRunRequest, ScalarBatch};
use steplake_client::{Client, ClientError};

use crate::e2e_test;
use crate::harness::{binary, repo_file, scalar, sql_csv, TestServer};

/// Steps per gRPC batch.
const GRPC_BATCH: u64 = 500;
/// Steps the Python logger logs per trial.
const PYTHON_STEPS: u64 = 60_000;
/// Points `steplake write` sends per trial.
const CLI_POINTS: u64 = 100_000;

fn python() -> String {
    std::env::var("STEPLAKE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A small deterministic generator: trials differ, runs repeat.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn grpc_batch(sequence: u64) -> ScalarBatch {
    let first = (sequence - 1) * GRPC_BATCH;
    let steps: Vec<i64> = (first..first + GRPC_BATCH).map(|s| s as i64).collect();
    ScalarBatch {
        names: vec!["x".into()],
        name_index: vec![0; steps.len()],
        values: steps.iter().map(|&s| s as f64).collect(),
        steps,
        wall_times_us: Vec::new(),
    }
}

/// Streams gRPC batches from sequence `first` until the server dies (or
/// `limit` passes); returns the last sequence acknowledged.
async fn grpc_session(url: String, first: u64, limit: Instant) -> u64 {
    let Ok(client) = Client::connect(&url).await else {
        return first - 1;
    };
    let Ok(mut writer) = client.writer_with_id("grpc", "crash-grpc", first).await else {
        return first - 1;
    };
    let mut sequence = first;
    while Instant::now() < limit {
        if writer
            .send_with_sequence(sequence, grpc_batch(sequence))
            .await
            .is_err()
        {
            break;
        }
        sequence += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let acked = match writer.finish().await {
        Ok(summary) => summary.batches,
        Err(ClientError::Stream { acked_batches, .. }) => acked_batches,
        Err(_) => 0,
    };
    first + acked - 1
}

/// Points `steplake write` reported acknowledged, from its stderr.
fn cli_acked(stderr: &str) -> u64 {
    let number_before = |marker: &str| {
        stderr.find(marker).and_then(|end| {
            stderr[..end]
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
    };
    if stderr.contains("wrote ") {
        return CLI_POINTS;
    }
    number_before(" points in")
        .or_else(|| number_before(" point in"))
        .unwrap_or(0)
}

/// Distinct steps below `acked` and rows of a run's series `x`.
fn counts(url: &str, run: &str, acked: u64) -> (u64, u64, u64) {
    let csv = sql_csv(
        url,
        &format!(
            "SELECT count(DISTINCT CASE WHEN step < {acked} THEN step END) AS kept, \
             count(*) AS row_count, count(DISTINCT step) AS distinct_steps \
             FROM scalars WHERE run_id = '{run}' AND name = 'x'"
        ),
    );
    let values: Vec<u64> = csv
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split(',')
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    (values[0], values[1], values[2])
}

e2e_test! {
    async fn acknowledged_points_survive_kill_9_exactly_once() {
        let trials: u64 = std::env::var("STEPLAKE_CRASH_TRIALS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(12);
        let suite_limit = std::env::var("STEPLAKE_CRASH_TRIALS").is_err().then(|| Instant::now() + Duration::from_secs(150));
        let dir = tempfile::tempdir().unwrap();
        let spool = tempfile::tempdir().unwrap();
        let csv_path = dir.path().join("points.csv");
        let mut csv = String::from("name,step,value\n");
        for step in 0..CLI_POINTS {
            csv.push_str(&format!("x,{step},{step}\n"));
        }
        std::fs::write(&csv_path, csv).unwrap();
        let data_dir = dir.path().join("data");
        let flags = ["--flush-rows", "40000"];
        // One port for every start: the Python logger reconnects to it.
        let listen = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe a free port");
            probe.local_addr().expect("address").to_string()
        };
        let mut server = TestServer::start_on(&data_dir, &listen, &flags);
        Client::connect(&server.url)
            .await
            .expect("connect")
            .create_run(CreateRunRequest {
                run_id: "grpc".into(),
                ..Default::default()
            })
            .await
            .expect("create the gRPC writer's run");
        let mut random = Lcg(0x5eed);
        let mut grpc_acked = 0u64;
        let mut python_runs: Vec<(String, u64)> = Vec::new();
        let mut cli_runs: Vec<(String, u64)> = Vec::new();
        let mut done = 0;
        for trial in 0..trials {
            if suite_limit.is_some_and(|limit| Instant::now() > limit) {
                break;
            }
            let py_run = format!("py-{trial}");
            let mut py = Command::new(python())
                .arg(repo_file("tests/python/crash_logger.py"))
                .args([&server.url.replace("http://", ""), &py_run, &PYTHON_STEPS.to_string()])
                .arg(spool.path())
                .env("PYTHONPATH", repo_file("python"))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start tests/python/crash_logger.py (scripts/test.sh installs its packages)");
            let cli_run = format!("cli-{trial}");
            let cli = Command::new(binary())
                .args(["write", "--server", &server.url, "--run", &cli_run, "--keep-running", "--batch-size", "2000"])
                .arg(&csv_path)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start steplake write");
            let grpc = tokio::spawn(grpc_session(
                server.url.clone(),
                grpc_acked + 1,
                Instant::now() + Duration::from_secs(10),
            ));

            tokio::time::sleep(Duration::from_millis(300 + random.below(1200))).await;
            server.kill9();

            grpc_acked = grpc.await.expect("gRPC writer");
            let cli_out = cli.wait_with_output().expect("steplake write");
            cli_runs.push((cli_run, cli_acked(&String::from_utf8_lossy(&cli_out.stderr))));
            server = TestServer::start_on(&data_dir, &listen, &flags);
            // The Python logger reconnects, delivers its spool and finishes.
            let stdout = py.stdout.take().expect("piped");
            let mut py_acked = 0;
            let mut finished = false;
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap_or_default();
                if let Some(n) = line.strip_prefix("acked ") {
                    py_acked = n.parse().unwrap_or(py_acked);
                } else if line == "finished" {
                    finished = true;
                }
            }
            py.wait().expect("python");
            assert!(finished, "the Python logger of trial {trial} did not finish");
            python_runs.push((py_run, py_acked));
            done += 1;
        }

        let url = server.url.clone();
        let (mut lost, mut doubled) = (0u64, 0u64);
        let mut tally = |runs: &[(String, u64)]| {
            let mut acknowledged = 0;
            for (run, acked_steps) in runs {
                let (kept, rows, distinct) = counts(&url, run, *acked_steps);
                acknowledged += acked_steps;
                lost += acked_steps - kept;
                doubled += rows - distinct;
            }
            acknowledged
        };
        let by_grpc = tally(&[("grpc".to_string(), grpc_acked * GRPC_BATCH)]);
        let by_python = tally(&python_runs);
        let by_cli = tally(&cli_runs);
        let acknowledged = by_grpc + by_python + by_cli;
        // Every Python run finished, so all it logged was delivered.
        for (run, _) in &python_runs {
            let csv = sql_csv(&url, &format!("SELECT count(DISTINCT step) FROM scalars WHERE run_id = '{run}'"));
            assert_eq!(scalar(&csv), PYTHON_STEPS.to_string(), "run {run} is incomplete");
        }
        println!(
            "crash trials: {done} trials, {acknowledged} points acknowledged \
             (gRPC {by_grpc}, Python logger {by_python}, steplake write {by_cli}), {lost} lost, {doubled} doubled"
        );
        assert!(done >= 1);
        assert_eq!((lost, doubled), (0, 0));
        server.stop();
    }
}
