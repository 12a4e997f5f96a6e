//! Starting and stopping the real `steplake` binary for end-to-end tests.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A file of the repository, by its path from the root. Resolved at run time
/// (cargo sets `CARGO_MANIFEST_DIR` when it runs the tests), so it stays right
/// when one target directory serves checkouts at several paths.
pub(crate) fn repo_file(relative: &str) -> PathBuf {
    let manifest = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    PathBuf::from(manifest).join("../..").join(relative)
}

/// Path of the `steplake` binary under test.
pub(crate) fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_steplake"))
}

/// A `steplake serve` process on a free loopback port.
pub(crate) struct TestServer {
    pub child: Child,
    pub url: String,
    /// The line the server printed when it started listening.
    banner: String,
}

impl TestServer {
    /// The line the server printed when it started listening.
    pub(crate) fn banner(&self) -> &str {
        &self.banner
    }

    /// The dashboard's base URL (`http://host:port`, or `https://` with
    /// TLS), from the banner.
    pub(crate) fn http_url(&self) -> String {
        let start = self
            .banner
            .find("dashboard http")
            .unwrap_or_else(|| panic!("no dashboard in {:?}", self.banner))
            + "dashboard ".len();
        let rest = &self.banner[start..];
        let (scheme, host) = rest.split_once("://").expect("a URL");
        let end = host.find('/').unwrap_or(host.len());
        format!("{scheme}://{}", &host[..end])
    }

    /// Starts a server on `data_dir` with extra flags; waits until it listens.
    pub(crate) fn start(data_dir: &Path, extra: &[&str]) -> TestServer {
        TestServer::start_on(data_dir, "127.0.0.1:0", extra)
    }

    /// Starts a server listening on `listen` (to start it again on the same
    /// port, for clients that reconnect).
    pub(crate) fn start_on(data_dir: &Path, listen: &str, extra: &[&str]) -> TestServer {
        TestServer::start_with_env(data_dir, listen, extra, &[])
    }

    /// Starts a server with extra environment variables (an object store's
    /// credentials and endpoint, say).
    pub(crate) fn start_with_env(
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        env: &[(String, String)],
    ) -> TestServer {
        let mut child = Command::new(binary())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", listen, "--http", "127.0.0.1:0"])
            .args(extra)
            .env("STEPLAKE_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn steplake serve");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .split_whitespace()
            .nth(3)
            .unwrap_or_else(|| panic!("server did not report its address; it printed {line:?}"));
        TestServer {
            child,
            url: if extra.contains(&"--tls-cert") {
                format!("https://{addr}")
            } else {
                format!("http://{addr}")
            },
            banner: line.trim_end().to_string(),
        }
    }

    /// SIGKILL: no flush, no cleanup.
    pub(crate) fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// SIGTERM and wait for a clean exit (flushes to Parquet).
    pub(crate) fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("send SIGTERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "server exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "server did not stop within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `csv` (with its header line) into `run` with `steplake write
/// --keep-running` and checks that everything was acknowledged.
pub(crate) fn write_csv(url: &str, run: &str, csv: &str) {
    let out = steplake(
        &[
            "write",
            "--server",
            url,
            "--run",
            run,
            "--keep-running",
            "-",
        ],
        Some(csv),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `steplake ARGS` with optional stdin and returns its output.
pub(crate) fn steplake(args: &[&str], stdin: Option<&str>) -> Output {
    steplake_with_env(args, stdin, &[])
}

/// [`steplake`] with extra environment variables.
pub(crate) fn steplake_with_env(
    args: &[&str],
    stdin: Option<&str>,
    env: &[(String, String)],
) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .env("STEPLAKE_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn steplake");
    let mut input = child.stdin.take().expect("stdin is piped");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait for steplake")
}

/// `steplake sql --server URL --format csv SQL`, asserting success; returns stdout.
pub(crate) fn sql_csv(url: &str, sql: &str) -> String {
    let out = steplake(&["sql", "--server", url, "--format", "csv", sql], None);
    assert!(
        out.status.success(),
        "sql {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The single value of a one-row, one-column CSV result.
pub(crate) fn scalar(csv: &str) -> String {
    let mut lines = csv.lines();
    lines.next();
    lines.next().unwrap_or_default().trim().to_string()
}

/// Parquet data files under a data directory.
pub(crate) fn parquet_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir.join("data"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "parquet"));
    files.sort();
    files
}
