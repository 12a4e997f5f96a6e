//! The real `steplake serve` for benchmarks: started on a free loopback port,
//! stopped with SIGTERM (which flushes the buffer to Parquet), and timed
//! queries against it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use steplake_client::Client;

/// A running server and its URL.
pub(crate) struct Server {
    child: Child,
    /// `http://ADDR` of its gRPC port.
    pub url: String,
    /// The line it printed when it started listening.
    banner: String,
}

/// Starts the release `steplake serve` on `data_dir`; waits until it listens.
#[allow(
    dead_code,
    reason = "each bench compiles these helpers; not all use every one"
)]
pub(crate) fn start_server(data_dir: &Path) -> Server {
    start_server_with(data_dir, &[], &[])
}

/// [`start_server`] with extra flags and environment variables.
#[allow(
    dead_code,
    reason = "each bench compiles these helpers; not all use every one"
)]
pub(crate) fn start_server_with(
    data_dir: &Path,
    extra: &[&str],
    env: &[(String, String)],
) -> Server {
    // STEPLAKE_BENCH_BIN runs a binary staged elsewhere (scripts/gpu-check.sh on a
    // machine that did not build it); cargo's own build is the default.
    let binary = std::env::var_os("STEPLAKE_BENCH_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_steplake").into());
    let mut child = Command::new(binary)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("STEPLAKE_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start steplake serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    eprintln!("{}", line.trim_end());
    let addr = line.split_whitespace().nth(3).expect("address").to_string();
    Server {
        child,
        url: format!("http://{addr}"),
        banner: line,
    }
}

impl Server {
    /// `http://ADDR` of its dashboard, from its banner (`None` without one).
    #[allow(
        dead_code,
        reason = "each bench compiles these helpers; not all use every one"
    )]
    pub(crate) fn http_url(&self) -> Option<String> {
        let start = self.banner.find("dashboard http://")? + "dashboard ".len();
        let url = &self.banner[start..];
        let end = url["http://".len()..].find('/')? + "http://".len();
        Some(url[..end].to_string())
    }

    /// CPU seconds (user + system) the server process has used so far,
    /// from `/proc` (Linux); 0 where it cannot be read.
    #[allow(
        dead_code,
        reason = "each bench compiles these helpers; not all use every one"
    )]
    pub(crate) fn cpu_seconds(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())) else {
            return 0.0;
        };
        // Fields after the command name (which may hold spaces): utime is
        // the 14th field of the line, stime the 15th, in clock ticks.
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            return 0.0;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // rest starts at field 3 (state): utime is index 11, stime 12.
        (ticks(11) + ticks(12)) / 100.0
    }
}

/// Stops the server with SIGTERM and checks that it exited cleanly.
pub(crate) fn stop_server(mut server: Server) {
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("SIGTERM");
    let status = server.child.wait().expect("wait for server");
    assert!(status.success(), "server exited with {status}");
}

/// Runs `sql` `repeats` times through Flight SQL; returns the median time and
/// the row count.
#[allow(
    dead_code,
    reason = "each bench compiles these helpers; not all use every one"
)]
pub(crate) async fn time_query(client: &Client, sql: &str, repeats: usize) -> (Duration, usize) {
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..repeats {
        let started = Instant::now();
        let (_, batches) = client.sql(sql).await.expect("query");
        times.push(started.elapsed());
        rows = batches.iter().map(|b| b.num_rows()).sum();
    }
    times.sort();
    (times[times.len() / 2], rows)
}

/// Creates the run `run_id` in project `bench`.
#[allow(
    dead_code,
    reason = "each bench compiles these helpers; not all use every one"
)]
pub(crate) async fn create_bench_run(client: &Client, run_id: &str) {
    client
        .create_run(steplake_client::v1::CreateRunRequest {
            run_id: run_id.into(),
            project: "bench".into(),
            ..Default::default()
        })
        .await
        .expect("create run");
}
