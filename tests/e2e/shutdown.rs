//! Stopping the server: a SIGTERM at any moment after start flushes and
//! exits cleanly, and a clean stop leaves no write-ahead log behind for the
//! next start or an embedded query to replay.

use crate::harness::{parquet_files, scalar, sql_csv, steplake, TestServer};

/// Bytes of WAL segments under a data directory.
fn wal_bytes(data_dir: &std::path::Path) -> u64 {
    std::fs::read_dir(data_dir.join("wal"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Writes `n` points into run `run` and leaves them only in the WAL.
fn points_only_in_the_wal(data_dir: &std::path::Path, run: &str, n: usize) {
    let server = TestServer::start(data_dir, &["--flush-secs", "3600"]);
    let mut csv = String::from("name,step,value\n");
    for step in 0..n {
        csv.push_str(&format!("loss,{step},{}\n", step as f64 / 10.0));
    }
    let out = steplake(
        &["write", "--server", &server.url, "--run", run, "-"],
        Some(&csv),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.kill9();
    assert!(parquet_files(data_dir).is_empty());
}

#[test]
fn sigterm_the_moment_the_listening_line_appears_flushes_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    points_only_in_the_wal(dir.path(), "early", 500);
    // Several times: the window used to be short and easy to miss.
    for _ in 0..5 {
        // stop() sends SIGTERM as soon as start() has read the listening
        // line, and asserts a clean exit (not death by signal 15).
        TestServer::start(dir.path(), &[]).stop();
    }
    assert!(
        !parquet_files(dir.path()).is_empty(),
        "the recovered points were flushed at the stop"
    );
    let server = TestServer::start(dir.path(), &[]);
    assert_eq!(
        scalar(&sql_csv(&server.url, "SELECT count(*) FROM scalars")),
        "500"
    );
}

#[test]
fn a_clean_stop_leaves_no_wal_and_embedded_queries_replay_nothing() {
    let dir = tempfile::tempdir().unwrap();
    points_only_in_the_wal(dir.path(), "r", 2000);
    assert!(wal_bytes(dir.path()) > 0);
    // Start (replays the WAL) and stop cleanly (flushes it all).
    TestServer::start(dir.path(), &[]).stop();
    assert_eq!(
        wal_bytes(dir.path()),
        0,
        "every segment was covered by the flush"
    );
    let data_dir = dir.path().to_str().unwrap();
    let out = steplake(
        &[
            "sql",
            "--data-dir",
            data_dir,
            "--format",
            "csv",
            "SELECT count(*) AS n FROM scalars",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n2000\n");
    // The next server continues where the last one stopped.
    let server = TestServer::start(dir.path(), &[]);
    let out = steplake(
        &["write", "--server", &server.url, "--run", "r", "-"],
        Some("name,step,value\nloss,5000,1\n"),
    );
    assert!(out.status.success());
    assert_eq!(
        scalar(&sql_csv(&server.url, "SELECT count(*) FROM scalars")),
        "2001"
    );
}
