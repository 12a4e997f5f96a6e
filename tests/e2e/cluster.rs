//! Distributed SQL on Ballista: a real `steplake scheduler` and two
//! `steplake executor`s on loopback, over the bucket of a real S3 server,
//! answer as one process reading the same bucket: four queries over two
//! runs, every query of `sql/cookbook.sql`, and the whole `sql/slt` spec.
//! A cluster query sees what the bucket's manifest lists: flushed points
//! only, never a server's buffer.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use steplake_query::{QueryError, QueryOptions};

use crate::harness::{binary, sql_csv, steplake_with_env, TestServer};
use crate::object_store::{bucket_sql, serve, write, S3Server};

/// A free loopback port (free when asked; the role binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A cluster role, killed when dropped.
struct Role(Child);

impl Role {
    fn start(args: &[String], s3: &S3Server) -> Role {
        let mut child = Command::new(binary())
            .args(args)
            .envs(s3.env())
            .env("STEPLAKE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a cluster role");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("its first line");
        assert!(line.starts_with("steplake "), "it printed {line:?}");
        Role(child)
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cluster_sql(s3: &S3Server, cluster: &str, sql: &str) -> Result<String, String> {
    let out = steplake_with_env(
        &["sql", "--cluster", cluster, "--format", "csv", sql],
        None,
        &s3.env(),
    );
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("utf-8"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

const QUERIES: [&str; 4] = [
    "SELECT run_id, name, count(*) AS n, sum(value) AS total FROM scalars GROUP BY run_id, name ORDER BY run_id, name",
    "SELECT run_id, step FROM (SELECT run_id, step, is_spike(value) OVER (PARTITION BY run_id, name ORDER BY step) AS spike FROM scalars WHERE name = 'loss') WHERE spike ORDER BY run_id, step",
    "SELECT run_id, first_sustained(step, value > 200, 3) AS emerged FROM scalars WHERE name = 'acc' GROUP BY run_id ORDER BY run_id",
    "SELECT r.run_id, count(*) AS n FROM runs r JOIN scalars s ON r.run_id = s.run_id WHERE s.step >= 100 GROUP BY r.run_id ORDER BY r.run_id",
];

#[test]
fn a_scheduler_and_two_executors_answer_as_one_process_over_flushed_files() {
    let s3 = S3Server::start("steplake-cluster");
    let url = "s3://steplake-cluster/lab";
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &s3, url);
    let mut csv = String::from("name,step,value\n");
    for step in 0..1000 {
        let spike = if step == 600 { 40.0 } else { 1.0 };
        csv.push_str(&format!(
            "loss,{step},{}\n",
            spike * (3.0 - step as f64 * 0.001)
        ));
        csv.push_str(&format!("acc,{step},{}\n", step as f64 * 0.5));
    }
    write(&server, "r1", &csv);
    write(&server, "r2", &csv);
    write(&server, "seed", &crate::sql::cookbook_seed_csv());
    server.stop();

    let port = free_port();
    let cluster = format!("df://127.0.0.1:{port}");
    let _scheduler = Role::start(
        &[
            "scheduler".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--object-store".into(),
            url.into(),
        ],
        &s3,
    );
    let work = tempfile::tempdir().unwrap();
    let _executors: Vec<Role> = (0..2)
        .map(|i| {
            Role::start(
                &[
                    "executor".into(),
                    "--scheduler".into(),
                    cluster.clone(),
                    "--object-store".into(),
                    url.into(),
                    "--flight-port".into(),
                    free_port().to_string(),
                    "--grpc-port".into(),
                    free_port().to_string(),
                    "--vcores".into(),
                    "2".into(),
                    "--work-dir".into(),
                    work.path().join(format!("e{i}")).display().to_string(),
                ],
                &s3,
            )
        })
        .collect();

    for sql in QUERIES {
        let expected = bucket_sql(&s3, url, sql);
        assert!(expected.lines().count() > 1, "{sql} answered nothing");
        // The executors register with the scheduler within a few seconds.
        let started = Instant::now();
        let answer = loop {
            match cluster_sql(&s3, &cluster, sql) {
                Ok(answer) => break answer,
                Err(e) if started.elapsed() < Duration::from_secs(30) => {
                    eprintln!("cluster not ready yet: {e}");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("{sql} failed on the cluster: {e}"),
            }
        };
        assert_eq!(answer, expected, "{sql}");
    }

    // Every cookbook query answers as one process reading the bucket.
    for sql in crate::sql::sql_file_statements("cookbook.sql") {
        let expected = bucket_sql(&s3, url, &sql);
        let answer = cluster_sql(&s3, &cluster, &sql)
            .unwrap_or_else(|e| panic!("{sql} failed on the cluster: {e}"));
        assert_eq!(answer, expected, "{sql}");
    }

    // The whole SQL spec, through this client's session on the cluster
    // (the files bring their data as VALUES; `cluster` is their label).
    let spec_failures = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(crate::slt_support::run_all(
            {
                let cluster = cluster.clone();
                move || {
                    let cluster = cluster.clone();
                    async move {
                        let ctx = steplake_cluster::cluster_context(&cluster)
                            .await
                            .map_err(QueryError::Execution)?;
                        let options = QueryOptions {
                            timeout: Some(Duration::from_secs(60)),
                            ..QueryOptions::default()
                        };
                        let engine = steplake_cluster::cluster_engine(ctx, options)?;
                        Ok(crate::slt_support::SltDb::new(engine, ()))
                    }
                }
            },
            &["cluster"],
        ));
    assert!(spec_failures.is_empty(), "{}", spec_failures.join("\n\n"));

    // What a cluster query sees: the files the bucket's manifest lists.
    // Points a server acknowledged but has not flushed are not among them;
    // they show once it flushes (here, at its stop). A server started with
    // --query-cluster sends its Flight SQL statements there, so they see
    // the same; its dashboard still queries the server, buffer included.
    let server = TestServer::start_with_env(
        dir.path(),
        "127.0.0.1:0",
        &[
            "--object-store",
            url,
            "--flush-secs",
            "3600",
            "--query-cluster",
            &cluster,
        ],
        &s3.env(),
    );
    assert!(
        server.banner().contains("Flight SQL on the cluster"),
        "{}",
        server.banner()
    );
    write(&server, "r3", "name,step,value\nloss,0,1.5\nloss,1,1.25\n");
    let count = "SELECT count(*) AS n FROM scalars WHERE run_id = 'r3'";
    assert_eq!(
        sql_csv(&server.url, count),
        "n\n0\n",
        "Flight SQL runs on the cluster"
    );
    assert_eq!(
        sql_csv(&server.url, QUERIES[0]),
        bucket_sql(&s3, url, QUERIES[0]),
        "the cluster answers the server's clients as one process over the bucket"
    );
    let (code, body) = crate::dashboard::http(&server.http_url(), "POST", "/api/sql", count);
    assert_eq!(code, 200, "{body}");
    let api: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        api["rows"][0]["n"],
        serde_json::json!(2),
        "the dashboard sees the buffer: {body}"
    );
    assert_eq!(cluster_sql(&s3, &cluster, count).as_deref(), Ok("n\n0\n"));
    server.stop();
    assert_eq!(cluster_sql(&s3, &cluster, count).as_deref(), Ok("n\n2\n"));
}
