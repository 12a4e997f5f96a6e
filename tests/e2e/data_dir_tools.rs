//! `steplake check` and `steplake repair` on a data directory the server
//! left: damage is found and named, and a lost manifest is rebuilt from the
//! data files with every point and run back.

use std::io::{Seek, SeekFrom, Write};

use crate::harness::{parquet_files, scalar, sql_csv, steplake, write_csv, TestServer};

fn write_points(url: &str, run: &str, n: usize) {
    let mut csv = String::from("name,step,value\n");
    for step in 0..n {
        csv.push_str(&format!("loss,{step},{}\n", step as f64 / 10.0));
    }
    write_csv(url, run, &csv);
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn check_names_the_damaged_file_and_passes_intact_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    for run in ["a", "b"] {
        let server = TestServer::start(dir.path(), &[]);
        write_points(&server.url, run, 5000);
        server.stop();
    }
    let out = steplake(&["check", "--data-dir", data_dir], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("all intact"), "{}", text(&out));

    let files = parquet_files(dir.path());
    assert_eq!(files.len(), 2);
    let damaged = &files[0];
    let len = std::fs::metadata(damaged).unwrap().len();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(damaged)
        .unwrap();
    file.seek(SeekFrom::Start(len / 3)).unwrap();
    file.write_all(&[0xa5; 8]).unwrap();
    drop(file);

    let out = steplake(&["check", "--data-dir", data_dir], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = text(&out);
    let name = damaged.file_name().unwrap().to_string_lossy().to_string();
    let damaged_line = report
        .lines()
        .find(|l| l.starts_with("DAMAGED"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(damaged_line.contains(&name), "{report}");
    assert!(damaged_line.contains("checksum"), "{report}");
    assert_eq!(
        report.lines().filter(|l| l.starts_with("ok")).count(),
        2,
        "{report}"
    );
}

#[test]
fn repair_rebuilds_a_lost_manifest_from_the_files_and_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    write_points(&server.url, "flushed", 3000);
    server.stop();
    // More points, left only in the WAL (which now starts past LSN 1).
    let server = TestServer::start(dir.path(), &["--flush-secs", "3600"]);
    write_points(&server.url, "in-the-wal", 700);
    server.kill9();
    std::fs::remove_dir_all(dir.path().join("manifest")).unwrap();

    let out = steplake(
        &["serve", "--data-dir", data_dir, "--listen", "127.0.0.1:0"],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("steplake repair --data-dir"),
        "{}",
        text(&out)
    );
    assert_eq!(
        parquet_files(dir.path()).len(),
        1,
        "start-up deleted nothing"
    );

    let out = steplake(&["repair", "--data-dir", data_dir], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("from 1 data file"), "{}", text(&out));

    let server = TestServer::start(dir.path(), &[]);
    assert_eq!(
        scalar(&sql_csv(&server.url, "SELECT count(*) FROM scalars")),
        "3700"
    );
    assert_eq!(
        sql_csv(
            &server.url,
            "SELECT run_id, status FROM runs ORDER BY run_id"
        ),
        "run_id,status\nflushed,running\nin-the-wal,running\n"
    );
    server.stop();
    let out = steplake(&["repair", "--data-dir", data_dir], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("nothing to repair"), "{}", text(&out));
}
