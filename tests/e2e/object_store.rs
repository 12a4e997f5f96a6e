//! Object storage: flushed files and the manifest in an S3 bucket, served by
//! a real S3-compatible server (moto's server mode, tests/python/s3_server.py)
//! on loopback, never a mock inside the process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{parquet_files, repo_file, scalar, sql_csv, steplake_with_env, TestServer};

fn python() -> String {
    std::env::var("STEPLAKE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// An S3 server with one bucket, stopped when dropped.
pub(crate) struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    pub(crate) fn start(bucket: &str) -> S3Server {
        let mut child = Command::new(python())
            .arg(repo_file("tests/python/s3_server.py"))
            .arg(bucket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the S3 server (moto, installed by scripts/test.sh)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("read the S3 server's address");
        let endpoint = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("the S3 server did not start: it printed {line:?}"))
            .trim()
            .to_string();
        S3Server { child, endpoint }
    }

    /// What a steplake process needs to reach it.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "steplake-test"),
            ("AWS_SECRET_ACCESS_KEY", "steplake-test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn serve(dir: &Path, s3: &S3Server, url: &str) -> TestServer {
    TestServer::start_with_env(
        dir,
        "127.0.0.1:0",
        &["--object-store", url, "--flush-secs", "3600"],
        &s3.env(),
    )
}

pub(crate) fn write(server: &TestServer, run: &str, csv: &str) {
    let out = steplake_with_env(
        &["write", "--server", &server.url, "--run", run, "-"],
        Some(csv),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn series_csv(name: &str, steps: std::ops::Range<i64>) -> String {
    let mut csv = String::from("name,step,value\n");
    for step in steps {
        csv.push_str(&format!("{name},{step},{}\n", step as f64 * 0.5));
    }
    csv
}

/// `steplake sql --object-store URL --format csv SQL` with no server.
pub(crate) fn bucket_sql(s3: &S3Server, url: &str, sql: &str) -> String {
    let out = steplake_with_env(
        &["sql", "--object-store", url, "--format", "csv", sql],
        None,
        &s3.env(),
    );
    assert!(
        out.status.success(),
        "sql on the bucket failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

const TOTALS: &str = "SELECT count(*) AS n, sum(value) AS total FROM scalars";

#[test]
fn flushed_files_live_in_the_bucket_and_a_new_data_dir_answers_from_it() {
    let s3 = S3Server::start("steplake-e2e");
    let url = "s3://steplake-e2e/lab/one";
    let first = tempfile::tempdir().unwrap();
    let server = serve(first.path(), &s3, url);
    write(&server, "r1", &series_csv("loss", 0..1000));
    write(&server, "r2", &series_csv("loss", 0..500));
    let before = sql_csv(&server.url, TOTALS);
    assert_eq!(before, "n,total\n1500,312125.0\n");
    server.stop();
    assert!(
        parquet_files(first.path()).is_empty(),
        "an uploaded file keeps no local copy"
    );
    assert!(!first.path().join("manifest").exists());

    // The bucket alone, with no server: the same answer.
    assert_eq!(bucket_sql(&s3, url, TOTALS), before);

    // pyarrow reads the bucket's files through its own S3 client.
    let script = format!(
        "import pyarrow.dataset as ds, pyarrow.fs as fs\n\
         s3 = fs.S3FileSystem(access_key='steplake-test', secret_key='steplake-test', region='us-east-1', \
         endpoint_override='{}', scheme='http')\n\
         t = ds.dataset('steplake-e2e/lab/one/data', filesystem=s3, format='parquet').to_table()\n\
         print(t.num_rows, sum(t.column('value').to_pylist()))\n",
        s3.endpoint.trim_start_matches("http://")
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .expect("run pyarrow");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1500 312125.0");

    // So does DuckDB, through its httpfs extension (from PyPI, loaded from
    // the file the wheel holds).
    let script = format!(
        "import duckdb, duckdb_extension_httpfs, pathlib\n\
         ext = pathlib.Path(duckdb_extension_httpfs.__file__).parent / 'extensions' / ('v' + duckdb.__version__) / 'httpfs.duckdb_extension'\n\
         con = duckdb.connect()\n\
         con.sql(f\"LOAD '{{ext}}'\")\n\
         con.sql(\"CREATE SECRET (TYPE s3, KEY_ID 'steplake-test', SECRET 'steplake-test', REGION 'us-east-1', \
         ENDPOINT '{}', URL_STYLE 'path', USE_SSL false)\")\n\
         n, total = con.sql(\"SELECT count(*), sum(value) FROM read_parquet('s3://steplake-e2e/lab/one/data/*.parquet')\").fetchone()\n\
         print(n, total)\n",
        s3.endpoint.trim_start_matches("http://")
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .expect("run duckdb");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1500 312125.0");

    // A new, empty data directory on the same prefix (the first server
    // stopped cleanly and gave it up) answers from the bucket and goes on.
    let second = tempfile::tempdir().unwrap();
    let server = serve(second.path(), &s3, url);
    assert_eq!(sql_csv(&server.url, TOTALS), before);
    write(&server, "r3", &series_csv("acc", 0..10));
    assert_eq!(
        scalar(&sql_csv(&server.url, "SELECT count(*) FROM scalars")),
        "1510"
    );
    server.stop();
    assert_eq!(
        scalar(&bucket_sql(
            &s3,
            url,
            "SELECT count(DISTINCT run_id) FROM runs"
        )),
        "3"
    );
}

#[test]
fn a_second_server_on_the_same_prefix_is_refused_and_the_owner_restarts() {
    let s3 = S3Server::start("steplake-owner");
    let url = "s3://steplake-owner/shared";
    let owner_dir = tempfile::tempdir().unwrap();
    let owner = serve(owner_dir.path(), &s3, url);
    write(&owner, "r1", &series_csv("loss", 0..100));

    let other_dir = tempfile::tempdir().unwrap();
    let mut other = Command::new(crate::harness::binary())
        .args(["serve", "--data-dir"])
        .arg(other_dir.path())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http",
            "off",
            "--object-store",
            url,
        ])
        .envs(s3.env())
        .env("STEPLAKE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a second server");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = other.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "a second server on the same prefix started"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut other.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("is written by the server of data directory")
            && stderr.contains(&owner_dir.path().display().to_string())
            && stderr.contains("delete s3://steplake-owner/shared/OWNER"),
        "{stderr}"
    );
    assert!(parquet_files(other_dir.path()).is_empty());

    // The owner still works; killed with points only in its WAL, it restarts
    // on its own claim and loses none of them.
    write(&owner, "r2", &series_csv("acc", 0..50));
    owner.kill9();
    let owner = serve(owner_dir.path(), &s3, url);
    assert_eq!(
        scalar(&sql_csv(&owner.url, "SELECT count(*) FROM scalars")),
        "150"
    );
    owner.stop();
    assert_eq!(
        scalar(&bucket_sql(&s3, url, "SELECT count(*) FROM scalars")),
        "150"
    );
}

/// A TCP proxy in front of the S3 server that can be cut off and restored:
/// an outage of the object store as the steplake server sees it (the S3
/// server itself keeps its data, which moto holds in memory). It counts the
/// bytes the S3 server sends.
struct Outage {
    port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    served: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// A reader that adds what it reads to a counter.
struct Counted<R> {
    inner: R,
    count: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(count) = &self.count {
            count.fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(n)
    }
}

impl Outage {
    fn in_front_of(endpoint: &str) -> Outage {
        use std::sync::atomic::Ordering;
        let upstream = endpoint.trim_start_matches("http://").to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (accepting, tracked, counter) = (open.clone(), connections.clone(), served.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !accepting.load(Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut list = tracked.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                for (from, mut to, count) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        None,
                    ),
                    (server, client, Some(counter.clone())),
                ] {
                    std::thread::spawn(move || {
                        let mut from = Counted { inner: from, count };
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Outage {
            port,
            open,
            connections,
            served,
        }
    }

    /// Bytes the S3 server has sent through the proxy so far.
    fn served(&self) -> u64 {
        self.served.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The S3 server's environment, with the proxy as its endpoint.
    fn env(&self, s3: &S3Server) -> Vec<(String, String)> {
        let mut env = s3.env();
        for (key, value) in env.iter_mut() {
            if key == "AWS_ENDPOINT_URL" {
                *value = self.endpoint();
            }
        }
        env
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Cuts every connection and refuses new ones.
    fn begin(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for stream in self.connections.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn end(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn an_object_store_outage_during_a_flush_loses_nothing() {
    let s3 = S3Server::start("steplake-outage");
    let url = "s3://steplake-outage/lab";
    let outage = Outage::in_front_of(&s3.endpoint);
    let env = outage.env(&s3);
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        dir.path(),
        "127.0.0.1:0",
        &[
            "--object-store",
            url,
            "--flush-rows",
            "2000",
            "--flush-secs",
            "3600",
        ],
        &env,
    );
    write(&server, "before", &series_csv("loss", 0..500));
    outage.begin();
    // Past --flush-rows: the flush starts while the bucket is unreachable.
    // Writes are still acknowledged (from the WAL) and readable.
    write(&server, "during", &series_csv("loss", 0..2000));
    assert_eq!(
        scalar(&sql_csv(&server.url, "SELECT count(*) FROM scalars")),
        "2500"
    );
    std::thread::sleep(Duration::from_secs(2));
    // The manifest the server wrote when it opened the prefix lists no file
    // yet: no flushed point can have reached the bucket.
    let flushed_points = || bucket_sql(&s3, url, "SELECT count(*) AS n FROM scalars");
    assert_eq!(
        flushed_points(),
        "n\n0\n",
        "nothing can have reached the bucket"
    );
    outage.end();
    // The flush is retried until it lands.
    let deadline = Instant::now() + Duration::from_secs(90);
    while flushed_points() == "n\n0\n" {
        assert!(
            Instant::now() < deadline,
            "the flush never landed after the outage"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    write(&server, "after", &series_csv("loss", 0..10));
    server.stop();
    assert_eq!(
        bucket_sql(
            &s3,
            url,
            "SELECT run_id, count(*) AS n FROM scalars GROUP BY run_id ORDER BY run_id"
        ),
        "run_id,n\nafter,10\nbefore,500\nduring,2000\n"
    );
}

/// Runs `body` (Python, with `c` a boto3 client of the S3 server) and
/// returns what it printed.
fn boto3(s3: &S3Server, body: &str) -> String {
    let script = format!(
        "import boto3\n\
         c = boto3.client('s3', endpoint_url='{}', aws_access_key_id='steplake-test', \
         aws_secret_access_key='steplake-test', region_name='us-east-1')\n{body}",
        s3.endpoint
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .expect("run boto3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (key, size) of the objects under `prefix` of `bucket`, sorted by key.
fn bucket_objects(s3: &S3Server, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
    boto3(
        s3,
        &format!(
            "for o in sorted(c.list_objects_v2(Bucket='{bucket}', Prefix='{prefix}').get('Contents', []), key=lambda o: o['Key']):\n    print(o['Key'], o['Size'])\n"
        ),
    )
    .lines()
    .filter_map(|line| {
        let (key, size) = line.rsplit_once(' ')?;
        Some((key.to_string(), size.parse().ok()?))
    })
    .collect()
}

/// Size in bytes of the Parquet files under `prefix` of `bucket`.
fn parquet_bytes_in(s3: &S3Server, bucket: &str, prefix: &str) -> u64 {
    bucket_objects(s3, bucket, prefix)
        .iter()
        .filter(|(key, _)| key.ends_with(".parquet"))
        .map(|(_, size)| size)
        .sum()
}

#[test]
fn unlisted_compaction_output_in_the_bucket_is_deleted_at_start() {
    let s3 = S3Server::start("steplake-tidy");
    let url = "s3://steplake-tidy/lab";
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &s3, url);
    write(&server, "r", &series_csv("loss", 0..100));
    server.stop();
    // What a kill -9 can leave: a merged file uploaded before the manifest
    // named it, and a flushed one (its points still in a WAL).
    let compacted = "lab/data/scalars-0000000001-0123456789abcdef-c.parquet";
    let flushed = "lab/data/scalars-0000000002-0123456789abcdef.parquet";
    boto3(
        &s3,
        &format!(
            "c.put_object(Bucket='steplake-tidy', Key='{compacted}', Body=b'PAR1')\n\
             c.put_object(Bucket='steplake-tidy', Key='{flushed}', Body=b'PAR1')\n"
        ),
    );
    let server = serve(dir.path(), &s3, url);
    assert_eq!(
        scalar(&sql_csv(&server.url, "SELECT count(*) FROM scalars")),
        "100"
    );
    server.stop();
    let keys: Vec<String> = bucket_objects(&s3, "steplake-tidy", "lab/data/")
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert!(
        !keys.iter().any(|k| k == compacted),
        "the unlisted merged file is still there: {keys:?}"
    );
    assert!(
        keys.iter().any(|k| k == flushed),
        "an unlisted flushed file is kept (it is not provably garbage): {keys:?}"
    );
}

#[test]
fn a_query_of_one_series_fetches_part_of_a_file_and_its_footer_once() {
    let s3 = S3Server::start("steplake-cache");
    let url = "s3://steplake-cache/lab";
    let first = tempfile::tempdir().unwrap();
    let server = serve(first.path(), &s3, url);
    // 50 series x 10,000 steps in one file, values that do not compress
    // away (a multiplicative hash of the position).
    let mut csv = String::from("name,step,value\n");
    for series in 0..50u64 {
        for step in 0..10_000u64 {
            let hash = (series * 10_000 + step).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
            csv.push_str(&format!(
                "m{series:02},{step},{}\n",
                hash as f64 / (1u64 << 53) as f64
            ));
        }
    }
    write(&server, "r", &csv);
    server.stop();
    let file_bytes = parquet_bytes_in(&s3, "steplake-cache", "lab/data/");
    assert!(file_bytes > 0, "the flush uploaded nothing");

    // A new server with an empty local directory, reading through the proxy.
    let outage = Outage::in_front_of(&s3.endpoint);
    let second = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        second.path(),
        "127.0.0.1:0",
        &["--object-store", url, "--flush-secs", "3600"],
        &outage.env(&s3),
    );
    let one_series = "SELECT count(*) AS n, sum(value) AS total FROM scalars WHERE name = 'm07'";
    let fetched = |sql: &str| {
        let before = outage.served();
        let answer = sql_csv(&server.url, sql);
        (answer, outage.served() - before)
    };
    let (answer, first_query) = fetched(one_series);
    assert!(
        answer
            .lines()
            .nth(1)
            .is_some_and(|row| row.starts_with("10000,")),
        "{answer}"
    );
    let (again, second_query) = fetched(one_series);
    assert_eq!(again, answer);
    // The first query fetches the footer (DataFusion reads the last 512 KiB
    // in one request) and the pages of one series; the second only pages.
    assert!(
        first_query < file_bytes / 2,
        "one series of 50 fetched {first_query} of the file's {file_bytes} bytes"
    );
    assert!(
        second_query < first_query && second_query < file_bytes / 10,
        "the second query fetched {second_query} bytes, the first {first_query}: \
         the footer and page index were not cached"
    );
    server.stop();
}
