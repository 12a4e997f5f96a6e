//! Read-only SQL: forbidden statements and syntax errors are refused clearly,
//! on a server and on a data directory alike.

use crate::e2e_test;
use crate::harness::{sql_csv, steplake, TestServer};

fn refused(url_or_dir: &[&str], sql: &str, needle: &str) {
    let mut args = vec!["sql"];
    args.extend_from_slice(url_or_dir);
    args.push(sql);
    let out = steplake(&args, None);
    assert_eq!(out.status.code(), Some(2), "{sql:?} must exit 2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(needle),
        "{sql:?}: {stderr:?} should contain {needle:?}"
    );
}

/// The statements of a file in sql/, comment lines removed.
pub(crate) fn sql_file_statements(file: &str) -> Vec<String> {
    let path = crate::harness::repo_file(&format!("sql/{file}"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

const FORBIDDEN: &[&str] = &[
    "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/etc/'",
    "CREATE TABLE t AS SELECT 1",
    "DROP TABLE scalars",
    "INSERT INTO scalars VALUES ('r', 'n', 1, 1.0, now())",
    "COPY (SELECT 1) TO '/tmp/steplake-copy-test.csv'",
    "SET datafusion.execution.batch_size = 1",
];

e2e_test! {
    async fn forbidden_sql_is_refused_over_flight_sql() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        for sql in FORBIDDEN {
            refused(&["--server", &server.url], sql, "not allowed");
        }
        refused(&["--server", &server.url], "SELEC 1", "syntax error");
        refused(&["--server", &server.url], "SELECT nope FROM scalars", "nope");
        assert!(!std::path::Path::new("/tmp/steplake-copy-test.csv").exists());
        // Reading still works after refusals.
        assert_eq!(sql_csv(&server.url, "SELECT 1 AS one"), "one\n1\n");
    }
}

e2e_test! {
    async fn forbidden_sql_is_refused_on_a_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let csv = "name,step,value\nloss,0,1.5\n";
        assert!(steplake(&["write", "--server", &server.url, "--run", "d", "-"], Some(csv)).status.success());
        server.kill9(); // the point is only in the WAL
        let data_dir = dir.path().to_str().unwrap();
        for sql in FORBIDDEN {
            refused(&["--data-dir", data_dir], sql, "not allowed");
        }
        let out = steplake(&["sql", "--data-dir", data_dir, "--format", "json", "SELECT run_id, step, value FROM scalars"], None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rows, serde_json::json!([{"run_id": "d", "step": 0, "value": 1.5}]));
        // Reading a data dir changes nothing: the WAL is still there for the next server.
        let server = TestServer::start(dir.path(), &[]);
        assert_eq!(sql_csv(&server.url, "SELECT count(*) AS n FROM scalars"), "n\n1\n");
    }
}

/// The stderr of a refused statement, asserting exit code 2.
fn refusal(url: &str, sql: &str) -> String {
    let out = steplake(&["sql", "--server", url, "-"], Some(sql));
    assert_eq!(out.status.code(), Some(2), "{sql:.80} must exit 2");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

e2e_test! {
    async fn sql_errors_are_one_clean_line_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let stderr = refusal(&server.url, "SELEC name FROM scalars");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: syntax error: Expected: an SQL statement, found: SELEC"), "{stderr}");
        for noise in ["SQL error: SQL error", "ParserError(", "invalid argument"] {
            assert!(!stderr.contains(noise), "{stderr:?} contains {noise:?}");
        }
        let stderr = refusal(&server.url, "SELECT * FROM nope");
        assert!(stderr.contains("no table \"nope\"") && stderr.contains("runs, scalars, tensors"), "{stderr}");
    }
}

e2e_test! {
    async fn deep_and_huge_statements_are_refused_and_the_server_keeps_answering() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let chain = |terms: usize, op: &str| format!("SELECT {} AS x", vec!["1"; terms].join(op));
        // Each of these used to overflow a worker's stack and abort the server.
        let plus = refusal(&server.url, &chain(2_000, "+"));
        assert!(plus.contains("more than 1000 levels"), "{plus}");
        let or = refusal(&server.url, &format!("SELECT 1 WHERE {}", vec!["1 = 1"; 5_000].join(" OR ")));
        assert!(or.contains("more than 1000 levels"), "{or}");
        let concat = refusal(&server.url, &chain(10_000, "||").replace('1', "'a'"));
        assert!(concat.contains("more than 1000 levels"), "{concat}");
        // Longer than the size limit: refused before it is parsed.
        let huge = refusal(&server.url, &chain(200_000, "+"));
        assert!(huge.contains("bytes; the limit is 262144 bytes"), "{huge}");
        // Within the limits, a deep chain plans and runs.
        assert_eq!(sql_csv(&server.url, &chain(999, "+")), "x\n999\n");
        assert_eq!(sql_csv(&server.url, "SELECT 1 AS one"), "one\n1\n");
    }
}

e2e_test! {
    async fn sql_reads_from_stdin_and_prints_tables() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let out = steplake(&["sql", "--server", &server.url], Some("SELECT 41 + 1 AS answer"));
        assert!(out.status.success());
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains("| answer |") && table.contains("| 42     |"), "{table}");
    }
}

e2e_test! {
    async fn every_example_query_runs() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let csv = "name,step,value\ntrain/loss,0,2.3\ntrain/loss,1,nan\ntrain/loss,1500,inf\neval/acc,0,0.1\n";
        let out = steplake(&["write", "--server", &server.url, "--run", "first-run", "-"], Some(csv));
        assert!(out.status.success());
        let statements = sql_file_statements("basics.sql");
        assert!(statements.len() >= 5);
        for sql in &statements {
            sql_csv(&server.url, sql);
        }
        let bad = sql_csv(&server.url, "SELECT count(*) FROM scalars WHERE isnan(value) OR value IN ('inf'::double, '-inf'::double)");
        assert_eq!(bad.lines().nth(1), Some("2"));
    }
}

e2e_test! {
    async fn training_dynamics_functions_run_on_a_server_and_on_a_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let mut csv = String::from("name,step,value\n");
        for step in 0..200 {
            let acc = if step < 120 { 0.1 } else { 0.95 };
            csv.push_str(&format!("eval/acc,{step},{acc}\n"));
            let loss = if step == 150 { 50.0 } else { 1.0 + 0.01 * ((step * 7) % 5) as f64 };
            csv.push_str(&format!("train/loss,{step},{loss}\n"));
        }
        assert!(steplake(&["write", "--server", &server.url, "--run", "grok", "-"], Some(&csv)).status.success());
        let emerged = "SELECT first_sustained(step, value > 0.9, 20) AS emerged FROM scalars WHERE name = 'eval/acc'";
        let spikes = "SELECT step FROM (SELECT step, is_spike(value) OVER (PARTITION BY run_id, name ORDER BY step) AS spike \
                      FROM scalars WHERE name = 'train/loss') WHERE spike ORDER BY step";
        assert_eq!(sql_csv(&server.url, emerged), "emerged\n120\n");
        assert_eq!(sql_csv(&server.url, spikes), "step\n150\n");
        server.stop();
        let data_dir = dir.path().to_str().unwrap();
        for sql in [emerged, spikes] {
            let out = steplake(&["sql", "--data-dir", data_dir, "--format", "csv", sql], None);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let out = steplake(&["sql", "--data-dir", data_dir, "--format", "csv", emerged], None);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "emerged\n120\n");
    }
}

/// The run the cookbook's queries are checked on (`steplake write` CSV):
/// a power-law loss with a spike at 1500 that a grad-norm spike at 1497
/// leads, and an accuracy that emerges at 1200.
pub(crate) fn cookbook_seed_csv() -> String {
    let mut csv = String::from("name,step,value\n");
    let mut seed = 11u64;
    let mut noise = |scale: f64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * scale
    };
    for step in 0..2000i64 {
        let loss = if step == 1500 {
            10.0
        } else {
            0.5 + 2.0 * ((step + 1) as f64).powf(-0.3) + noise(0.002)
        };
        let grad = if step == 1497 {
            50.0
        } else {
            1.0 + noise(0.02)
        };
        csv.push_str(&format!(
            "train/loss,{step},{loss:?}\ngrad_norm,{step},{grad:?}\n"
        ));
        if step % 100 == 0 {
            let acc = if step >= 1200 { 0.95 } else { 0.1 };
            csv.push_str(&format!("eval/acc,{step},{acc}\n"));
            csv.push_str(&format!(
                "update_norm/layer0,{step},0.01\nweight_norm/layer0,{step},10.0\n"
            ));
        }
    }
    csv
}

e2e_test! {
    async fn every_cookbook_query_runs() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let csv = cookbook_seed_csv();
        let out = steplake(&["write", "--server", &server.url, "--run", "seed", "-"], Some(&csv));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let statements = sql_file_statements("cookbook.sql");
        assert!(statements.len() >= 8);
        let answers: Vec<String> = statements.iter().map(|sql| sql_csv(&server.url, sql)).collect();
        assert_eq!(answers[0], "run_id,emerged_at\nseed,1200\n");
        // The grad-norm spike leads the loss spike by 3 steps.
        assert!(answers[4].starts_with("run_id,lead_points,lead_steps,corr\nseed,3,3,0.99"), "{}", answers[4]);
        assert_eq!(answers[5], "run_id,loss_spike,grad_spike,lead\nseed,1500,1497,3\n");
        assert!(answers[6].lines().nth(1).is_some_and(|l| l.ends_with(",0.001")), "{}", answers[6]);
        // Accuracy at 10k steps (the last eval, 0.95) and its 0.9 crossing,
        // interpolated between the evals at 1100 (0.1) and 1200 (0.95).
        let last = answers.last().unwrap();
        assert!(last.starts_with("run_id,acc_at_10k,reached_90,loss_then\nseed,0.95,1194.11764"), "{last}");
    }
}

e2e_test! {
    async fn nan_and_infinities_round_trip_through_every_json_output() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let csv = "name,step,value\nloss,0,nan\nloss,1,inf\nloss,2,-inf\nloss,3,0.5\n";
        let out = steplake(&["write", "--server", &server.url, "--run", "r", "-"], Some(csv));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let sql = "SELECT step, value, CAST(NULL AS DOUBLE) AS missing FROM scalars ORDER BY step";
        let out = steplake(&["sql", "--server", &server.url, "--format", "json", sql], None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let cli: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
        let values: Vec<serde_json::Value> = cli.as_array().unwrap().iter().map(|r| r["value"].clone()).collect();
        assert_eq!(values, vec![serde_json::json!("NaN"), serde_json::json!("Infinity"), serde_json::json!("-Infinity"), serde_json::json!(0.5)]);
        assert!(cli[0].get("missing").is_none(), "NULL stays absent, not a string: {cli}");

        let (code, body) = crate::dashboard::http(&server.http_url(), "POST", "/api/sql", sql);
        assert_eq!(code, 200, "{body}");
        let api: serde_json::Value = serde_json::from_str(&body).unwrap();
        let values: Vec<serde_json::Value> = api["rows"].as_array().unwrap().iter().map(|r| r["value"].clone()).collect();
        assert_eq!(values, vec![serde_json::json!("NaN"), serde_json::json!("Infinity"), serde_json::json!("-Infinity"), serde_json::json!(0.5)]);

        let (code, body) = crate::dashboard::http(&server.http_url(), "GET", "/api/series?runs=r&name=loss", "");
        assert_eq!(code, 200, "{body}");
        let series: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(series["runs"][0]["last"], serde_json::json!(["NaN", "Infinity", "-Infinity", 0.5]), "{series}");
    }
}

e2e_test! {
    async fn function_argument_errors_exit_2_and_nested_results_print_as_csv() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let csv = "name,step,value\ntrain/loss,0,1.0\ntrain/loss,1,1.0\ntrain/loss,2,5.0\ntrain/loss,3,5.0\n";
        let out = steplake(
            &["write", "--server", &server.url, "--run", "lr-3e-4", "--config", r#"{"lr": 0.0003, "batch": 512}"#,
              "--tag", "baseline", "--tag", "sweep", "-"],
            Some(csv),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // Errors found by steplake's own functions are the statement's fault.
        for (sql, needle) in [
            ("SELECT ema(value, 2.0) OVER (ORDER BY step) FROM scalars", "ema: alpha must be in (0, 1]"),
            ("SELECT first_sustained(step, value) FROM scalars", "condition must be a condition such as `value > 0.9`"),
            ("SELECT is_spike(value) FROM scalars", "is_spike is a window function and needs OVER"),
        ] {
            refused(&["--server", &server.url], sql, needle);
        }
        // Lists and structs print as text in CSV, as DuckDB writes them.
        let changes = sql_csv(&server.url, "SELECT changepoints(step, value, 'pelt', 1.0) AS c FROM scalars");
        assert_eq!(changes, "c\n\"[{step: 2, mean_before: 1.0, mean_after: 5.0, gain: 16.0}]\"\n");
        let runs = sql_csv(&server.url, "SELECT tags, config FROM runs");
        assert!(runs.contains("\"[baseline, sweep]\""), "{runs}");
        assert!(runs.contains("\"batch\""), "{runs}");
        let bad = steplake(&["write", "--server", &server.url, "--run", "x", "--config", "[1]", "-"], Some(csv));
        assert_eq!(bad.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&bad.stderr).contains("--config must be a JSON object"));
        server.stop();
    }
}
