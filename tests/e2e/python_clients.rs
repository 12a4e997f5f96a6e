//! Independent readers and clients, driven from Python: pyarrow and DuckDB read
//! our Parquet files and get the same rows as `steplake sql`; pyarrow's Flight
//! client (Arrow C++) queries the server. Without steplake code on their side.

use std::process::Command;

use crate::e2e_test;
use crate::harness::{parquet_files, sql_csv, steplake, TestServer};

/// The Python interpreter with pyarrow and duckdb (scripts/test.sh sets it).
fn python() -> String {
    std::env::var("STEPLAKE_PYTHON").unwrap_or_else(|_| "python3".into())
}

e2e_test! {
    async fn pyarrow_and_duckdb_read_the_same_rows_as_steplake_sql() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &["--flush-rows", "500"]);
        let mut csv = String::from("name,step,value,wall_time\n");
        for step in 0..1000 {
            let t = 1_700_000_000.0 + step as f64 * 0.25;
            csv.push_str(&format!("loss,{step},{},{t}\n", 1.0 / (1.0 + step as f64)));
            if step % 10 == 0 {
                csv.push_str(&format!("eval/acc,{step},{},{t}\n", (step as f64 / 1000.0).sqrt()));
            }
        }
        csv.push_str("loss,1000,nan,1700000300\nloss,1001,-inf,1700000301\n");
        // Two writes, each past --flush-rows: at least two files, however
        // fast the batches of one write arrive (they may form one group).
        let lines: Vec<&str> = csv.lines().collect();
        let (header, rows) = (lines[0], &lines[1..]);
        for half in rows.chunks(rows.len() / 2 + 1) {
            let input = format!("{header}\n{}\n", half.join("\n"));
            let out = steplake(&["write", "--server", &server.url, "--run", "pq", "--batch-size", "300", "--keep-running", "-"], Some(&input));
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        server.stop();
        let files = parquet_files(dir.path());
        assert!(files.len() >= 2, "expected several flushed files, got {files:?}");

        let data_dir = dir.path().to_str().unwrap();
        let out = steplake(
            &["sql", "--data-dir", data_dir, "--format", "csv",
              "SELECT run_id, name, step, value, wall_time FROM scalars ORDER BY run_id, name, step"],
            None,
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let ours = String::from_utf8(out.stdout).unwrap();

        let script = crate::harness::repo_file("tests/python/read_parquet.py");
        let out = Command::new(python())
            .arg(script)
            .args(&files)
            .output()
            .expect("run python3 (run scripts/test.sh, which installs pyarrow and duckdb)");
        assert!(
            out.status.success(),
            "tests/python/read_parquet.py failed (scripts/test.sh installs its packages):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ours_rows = csv_rows(&ours);
        assert_eq!(ours_rows.len(), 1102);
        for reader in ["pyarrow", "duckdb"] {
            let theirs = &report[reader];
            assert_eq!(theirs.as_array().unwrap().len(), ours_rows.len(), "{reader} row count");
            for (i, (ours, theirs)) in ours_rows.iter().zip(theirs.as_array().unwrap()).enumerate() {
                let theirs = theirs.as_array().unwrap();
                assert_eq!(ours.0, theirs[0].as_str().unwrap(), "{reader} row {i} run_id");
                assert_eq!(ours.1, theirs[1].as_str().unwrap(), "{reader} row {i} name");
                assert_eq!(ours.2, theirs[2].as_i64().unwrap(), "{reader} row {i} step");
                assert_eq!(ours.3, theirs[3].as_str().unwrap(), "{reader} row {i} value");
                assert_eq!(ours.4, theirs[4].as_i64().unwrap(), "{reader} row {i} wall_time");
            }
        }
        // The layout docs/architecture.md describes, as a standard reader sees it.
        let layout = &report["layout"];
        assert!(layout["value_encodings"].as_str().unwrap().contains("BYTE_STREAM_SPLIT"), "{layout}");
        assert!(layout["step_encodings"].as_str().unwrap().contains("DELTA_BINARY_PACKED"), "{layout}");
        assert_eq!(layout["compression"], "ZSTD", "{layout}");
        assert_eq!(layout["has_page_index"], true, "{layout}");
    }
}

/// (run_id, name, step, value as printed by Python's repr, wall_time µs).
fn csv_rows(csv: &str) -> Vec<(String, String, i64, String, i64)> {
    csv.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let value: f64 = match f[3] {
                "NaN" => f64::NAN,
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap(),
            };
            let wall = chrono::DateTime::parse_from_rfc3339(f[4])
                .unwrap()
                .timestamp_micros();
            (
                f[0].to_string(),
                f[1].to_string(),
                f[2].parse().unwrap(),
                python_repr(value),
                wall,
            )
        })
        .collect()
}

/// Python's `repr(float)`: shortest round-trip digits, like Rust's `{:?}`.
fn python_repr(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        format!("{v:?}")
    }
}

e2e_test! {
    async fn an_independent_flight_client_queries_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let csv = "name,step,value\nloss,0,2.5\nloss,1,1.5\nacc,0,0.25\n";
        assert!(steplake(&["write", "--server", &server.url, "--run", "fl", "-"], Some(csv)).status.success());
        let script = crate::harness::repo_file("tests/python/flight_query.py");
        let address = server.url.trim_start_matches("http://");
        let out = Command::new(python())
            .arg(script)
            .args([address, "SELECT name, step, value FROM scalars WHERE name = 'loss' ORDER BY step"])
            .output()
            .expect("run python3 (scripts/test.sh installs pyarrow)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            result,
            serde_json::json!({
                "schema": ["name", "step", "value"],
                "rows": [
                    {"name": "loss", "step": 0, "value": 2.5},
                    {"name": "loss", "step": 1, "value": 1.5}
                ]
            })
        );
    }
}

e2e_test! {
    async fn changepoints_and_phases_match_ruptures() {
        let script = crate::harness::repo_file("tests/python/ruptures_reference.py");
        let out = Command::new(python()).arg(script).output().expect("run python3 (scripts/test.sh installs ruptures)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let cases: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let cases = cases.as_array().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let mut csv = String::from("name,step,value\n");
        for case in cases {
            let name = case["name"].as_str().unwrap();
            for (step, v) in case["values"].as_array().unwrap().iter().enumerate() {
                let v: f64 = v.as_str().unwrap().parse().unwrap();
                csv.push_str(&format!("{name},{step},{v:?}\n"));
            }
        }
        let written = steplake(&["write", "--server", &server.url, "--run", "cp", "-"], Some(&csv));
        assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));

        for case in cases {
            let name = case["name"].as_str().unwrap();
            let call = case["call"].as_str().unwrap();
            let sql = format!(
                "SELECT c['step'] AS step FROM (SELECT unnest(cps) AS c FROM \
                 (SELECT {call} AS cps FROM scalars WHERE name = '{name}')) ORDER BY step"
            );
            let ours: Vec<i64> = sql_csv(&server.url, &sql).lines().skip(1).map(|l| l.parse().unwrap()).collect();
            let theirs: Vec<i64> = case["breakpoints"].as_array().unwrap().iter().map(|b| b.as_i64().unwrap()).collect();
            assert_eq!(ours, theirs, "series {name}: {call}");
        }
    }
}
