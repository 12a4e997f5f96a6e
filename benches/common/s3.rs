//! moto's S3 server (`tests/python/s3_server.py`, from the environment of
//! `scripts/test.sh`: set STEPLAKE_PYTHON) on loopback, for benchmarks that
//! read a bucket; stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running S3 server holding one bucket.
pub(crate) struct S3Server {
    child: Child,
    /// The `AWS_*` variables that reach it: credentials, region, endpoint.
    pub env: Vec<(String, String)>,
}

impl S3Server {
    /// Starts the server with `bucket` created; waits until it listens.
    pub(crate) fn start(bucket: &str) -> S3Server {
        let python = std::env::var("STEPLAKE_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/s3_server.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(bucket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the S3 server (moto: use the venv of scripts/test.sh)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("S3 server address");
        let endpoint = line
            .strip_prefix("listening ")
            .expect("the S3 server started")
            .trim()
            .to_string();
        let env = [
            ("AWS_ACCESS_KEY_ID", "bench"),
            ("AWS_SECRET_ACCESS_KEY", "bench"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        S3Server { child, env }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
