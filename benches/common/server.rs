//! The real `steplake serve` for benchmarks: started on a free loopback port,
//! stopped with SIGTERM (which flushes the buffer to Parquet).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running server and its URL.
pub struct Server {
    child: Child,
    /// `http://ADDR` of its gRPC port.
    pub url: String,
}

/// Starts the release `steplake serve` on `data_dir`; waits until it listens.
pub fn start_server(data_dir: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_steplake"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("STEPLAKE_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start steplake serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let addr = line.split_whitespace().nth(3).expect("address").to_string();
    Server {
        child,
        url: format!("http://{addr}"),
    }
}

/// Stops the server with SIGTERM and checks that it exited cleanly.
pub fn stop_server(mut server: Server) {
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("SIGTERM");
    let status = server.child.wait().expect("wait for server");
    assert!(status.success(), "server exited with {status}");
}
