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
        Role::start_reading_line(args, s3).0
    }

    /// Starts a role; returns it and the first line it printed.
    fn start_reading_line(args: &[String], s3: &S3Server) -> (Role, String) {
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
        (Role(child), line)
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

/// A scheduler and two executors on loopback over the bucket `url`, with
/// extra flags for each role; killed when dropped. Each executor serves
/// `/metrics` (which one gets a task is the scheduler's choice).
struct Cluster {
    url: String,
    _scheduler: Role,
    executors: Vec<Role>,
    /// http://HOST:PORT of each executor's metrics.
    metrics: Vec<String>,
    _work: tempfile::TempDir,
}

impl Cluster {
    fn start(
        s3: &S3Server,
        url: &str,
        scheduler_flags: &[&str],
        executor_flags: &[&str],
    ) -> Cluster {
        let port = free_port();
        let cluster = format!("df://127.0.0.1:{port}");
        let mut args: Vec<String> = vec![
            "scheduler".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--object-store".into(),
            url.into(),
        ];
        args.extend(scheduler_flags.iter().map(|f| f.to_string()));
        let scheduler = Role::start(&args, s3);
        let work = tempfile::tempdir().unwrap();
        let mut metrics = Vec::new();
        let executors = (0..2)
            .map(|i| {
                let mut args: Vec<String> = vec![
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
                ];
                args.extend(executor_flags.iter().map(|f| f.to_string()));
                args.extend(["--metrics".to_string(), "127.0.0.1:0".to_string()]);
                let (role, line) = Role::start_reading_line(&args, s3);
                let url = line
                    .split_once("metrics ")
                    .and_then(|(_, rest)| rest.trim().strip_suffix("/metrics"))
                    .unwrap_or_else(|| panic!("no metrics address in {line:?}"));
                metrics.push(url.to_string());
                role
            })
            .collect();
        Cluster {
            url: cluster,
            _scheduler: scheduler,
            executors,
            metrics,
            _work: work,
        }
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

    let running = Cluster::start(&s3, url, &[], &[]);
    let cluster = running.url.clone();

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

    // The executors count the tasks they ran on their /metrics pages.
    let pages: Vec<String> = running
        .metrics
        .iter()
        .map(|base| {
            let (code, page) = crate::dashboard::http(base, "GET", "/metrics", "");
            assert_eq!(code, 200, "{page}");
            page
        })
        .collect();
    let metrics = pages.join("\n");
    // One sample summed over the executors.
    let sample = |line_start: &str| -> u64 {
        pages
            .iter()
            .map(|page| {
                page.lines()
                    .find_map(|l| l.strip_prefix(line_start))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("no {line_start} in {page}"))
            })
            .sum()
    };
    let succeeded = sample("steplake_executor_tasks_total{outcome=\"succeeded\"}");
    // Every task ended one way or another; the spec's failing statements
    // stop their jobs' other tasks, which count as cancelled.
    assert_eq!(
        sample("steplake_executor_tasks_total{outcome=\"started\"}"),
        succeeded
            + sample("steplake_executor_tasks_total{outcome=\"failed\"}")
            + sample("steplake_executor_tasks_total{outcome=\"cancelled\"}"),
        "{metrics}"
    );
    assert!(succeeded > 0, "the executors ran no task: {metrics}");
    // Each stage runs as several tasks (CLUSTER_PARTITIONS), dealt round
    // robin: every executor ran some of them, not only one per query.
    for page in &pages {
        let ran = page
            .lines()
            .find_map(|l| l.strip_prefix("steplake_executor_tasks_total{outcome=\"succeeded\"}"))
            .and_then(|v| v.trim().parse::<u64>().ok());
        assert!(
            ran.is_some_and(|n| n > 0),
            "an executor ran no task:\n{page}"
        );
    }
    assert!(
        sample("steplake_executor_shuffle_rows_total") > 0,
        "{metrics}"
    );

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

/// CPU time (user + system, in clock ticks) a process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

#[test]
fn an_executor_killed_mid_query_is_replaced_and_the_answer_stays_right() {
    let s3 = S3Server::start("steplake-kill");
    let url = "s3://steplake-kill/lab";
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &s3, url);
    write(&server, "r1", "name,step,value\nloss,0,1.5\n");
    server.stop();
    // The timeout is what declares an executor lost. At 6 s, CI's load
    // once delayed the surviving executor's heartbeats past it (debug
    // build, both cores busy), and the scheduler gave the job up with no
    // executor left; 20 s still ends the test well inside its limits.
    let mut running = Cluster::start(
        &s3,
        url,
        &["--executor-timeout-secs", "20"],
        &["--heartbeat-secs", "1"],
    );
    let cluster = running.url.clone();
    let started = Instant::now();
    while cluster_sql(&s3, &cluster, "SELECT 1").is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the cluster never answered"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let pids: Vec<u32> = running.executors.iter().map(|e| e.0.id()).collect();
    let cpu_growth = || {
        let before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
        std::thread::sleep(Duration::from_millis(300));
        pids.iter()
            .zip(&before)
            .map(|(p, b)| cpu_ticks(*p) - b)
            .collect::<Vec<u64>>()
    };
    // Both idle before the query starts, so the busy one below runs it.
    while cpu_growth().iter().any(|ticks| *ticks > 2) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the executors never went idle"
        );
    }
    // One task long enough to be killed in: a sum over a generated series.
    let n: u64 = std::env::var("STEPLAKE_KILL_QUERY_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000_000);
    let sql = format!("SELECT count(*) AS n, sum(v % 7) AS s FROM (SELECT value AS v FROM generate_series(1, {n}))");
    let expected = format!("n,s\n{n},{}\n", (n / 7) * 21 + (1..=n % 7).sum::<u64>());
    let env = s3.env();
    let query_cluster = cluster.clone();
    let (done, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let out = steplake_with_env(
            &["sql", "--cluster", &query_cluster, "--format", "csv", &sql],
            None,
            &env,
        );
        let _ = done.send((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    });
    // Kill the executor that is running it: the one whose CPU time grows.
    let deadline = Instant::now() + Duration::from_secs(60);
    let busy = loop {
        let grew = cpu_growth();
        if let Some(i) = (0..grew.len())
            .max_by_key(|i| grew[*i])
            .filter(|i| grew[*i] >= 10)
        {
            break i;
        }
        assert!(Instant::now() < deadline, "no executor started the query");
    };
    assert!(
        matches!(answer.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty)),
        "the query finished before the kill; raise STEPLAKE_KILL_QUERY_ROWS"
    );
    let killed_at = started.elapsed();
    let mut victim = running.executors.remove(busy);
    victim.0.kill().expect("kill -9 the executor");
    let _ = victim.0.wait();
    let (ok, stdout, stderr) = answer
        .recv_timeout(Duration::from_secs(180))
        .expect("the query neither answered nor failed within 180 s of the kill");
    eprintln!(
        "killed at {killed_at:?}, answered at {:?}",
        started.elapsed()
    );
    // Ballista runs the lost task again on the other executor: the right
    // answer, never a wrong one.
    assert!(ok, "the query failed after the kill: {stderr}");
    assert_eq!(stdout, expected);
}
