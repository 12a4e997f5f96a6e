//! Queries cannot take the server down or hold it: against the real binary,
//! a self-join past `--query-memory` fails with a reason and the server
//! answers after it, and a query whose client goes away (Flight SQL or
//! HTTP) is cancelled: with `--max-concurrent-queries 1`, the next query
//! gets the only turn instead of waiting behind it.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{binary, sql_csv, steplake, write_csv, TestServer};

/// 400,000 points of 10 series, flushed to Parquet.
fn server_with_points(extra: &[&str]) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let flags: Vec<&str> = ["--flush-rows", "100000"]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    let server = TestServer::start(dir.path(), &flags);
    let mut csv = String::from("name,step,value\n");
    for i in 0..400_000 {
        csv.push_str(&format!("s{},{},{i}\n", i % 10, i / 10));
    }
    write_csv(&server.url, "r", &csv);
    (dir, server)
}

/// A query that runs for minutes: every pair of 400,000 points.
const ENDLESS: &str = "SELECT sum(a.value * b.value) FROM scalars a, scalars b";

#[test]
fn a_self_join_past_the_memory_limit_fails_and_the_server_answers_after() {
    let (_dir, server) = server_with_points(&["--query-memory", "4MiB"]);
    let out = steplake(
        &[
            "sql",
            "--server",
            &server.url,
            "SELECT count(*) FROM scalars a JOIN scalars b ON a.step = b.step AND a.name = b.name",
        ],
        None,
    );
    // RESOURCE_EXHAUSTED: the statement asked too much (exit 2, as for bad input).
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("more memory than queries may use"),
        "{stderr}"
    );
    assert_eq!(sql_csv(&server.url, "SELECT 1 AS one"), "one\n1\n");
}

#[test]
fn a_flight_query_whose_client_went_away_gives_its_turn_back() {
    let (_dir, server) = server_with_points(&["--max-concurrent-queries", "1"]);
    let mut client = Command::new(binary())
        .args(["sql", "--server", &server.url, ENDLESS])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start steplake sql");
    std::thread::sleep(Duration::from_millis(1500));
    client.kill().expect("the client goes away");
    client.wait().expect("reap");
    // Were the abandoned query still running, this one would wait for the
    // only turn and give up after 30 s with "queries are running".
    assert_eq!(sql_csv(&server.url, "SELECT 1 AS one"), "one\n1\n");
}

#[test]
fn an_http_query_whose_client_went_away_gives_its_turn_back() {
    let (_dir, server) = server_with_points(&["--max-concurrent-queries", "1"]);
    let base = server.http_url();
    let host = base.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&host).expect("connect to the dashboard");
    let body = serde_json::json!({ "sql": ENDLESS }).to_string();
    write!(
        stream,
        "POST /api/sql HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send request");
    std::thread::sleep(Duration::from_millis(1500));
    drop(stream);
    assert_eq!(sql_csv(&server.url, "SELECT 1 AS one"), "one\n1\n");
}
