//! Deleting runs end to end: over HTTP on a running server (admin action),
//! with a kill -9 at several moments of it, and with `steplake delete-run`
//! and `delete-project` on a stopped one.

use std::time::Duration;

use crate::dashboard::{http, write_loss};
use crate::harness::{scalar, sql_csv, steplake, TestServer};

fn count(url: &str, sql_from: &str) -> u64 {
    scalar(&sql_csv(url, &format!("SELECT count(*) FROM {sql_from}")))
        .parse()
        .unwrap()
}

#[test]
fn a_run_deleted_over_http_is_whole_or_gone_after_a_kill_and_gone_for_good_after() {
    for (trial, delay_ms) in [0u64, 15, 60, 400].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &["--flush-rows", "2000"]);
        // 5,001 points of "gone" (two files and a buffer), 1,001 of "kept"
        // (sharing a file with "gone").
        write_loss(&server.url, "gone", 3000);
        write_loss(&server.url, "kept", 1000);
        write_loss(&server.url, "gone2", 2000);
        let before = count(&server.url, "scalars WHERE run_id = 'gone'");
        assert_eq!(before, 3001);
        let base = server.http_url();
        let request = std::thread::spawn(move || http(&base, "DELETE", "/api/runs/gone", ""));
        std::thread::sleep(Duration::from_millis(delay_ms));
        server.kill9();
        let _ = request.join();

        let server = TestServer::start(dir.path(), &[]);
        let left = count(&server.url, "scalars WHERE run_id = 'gone'");
        let listed = count(&server.url, "runs WHERE run_id = 'gone'");
        assert!(
            (left == before && listed == 1) || (left == 0 && listed == 0),
            "trial {trial}: a run is deleted whole or not at all: {left} points, listed {listed}"
        );
        assert_eq!(count(&server.url, "scalars WHERE run_id = 'kept'"), 1001);
        assert_eq!(count(&server.url, "scalars WHERE run_id = 'gone2'"), 2001);

        // Deleting (again) on the restarted server: done, and it holds.
        let (code, body) = http(&server.http_url(), "DELETE", "/api/runs/gone", "");
        if left == 0 {
            assert_eq!(code, 404, "{body}");
        } else {
            assert_eq!(code, 200, "{body}");
            assert!(body.contains("\"gone\""), "{body}");
        }
        assert_eq!(count(&server.url, "scalars WHERE run_id = 'gone'"), 0);
        server.kill9();
        let server = TestServer::start(dir.path(), &[]);
        assert_eq!(count(&server.url, "scalars WHERE run_id = 'gone'"), 0);
        assert_eq!(count(&server.url, "runs"), 2);
        assert_eq!(count(&server.url, "scalars WHERE run_id = 'kept'"), 1001);
        server.stop();
    }
}

#[test]
fn delete_run_and_delete_project_on_a_stopped_server() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    write_loss(&server.url, "a", 100);
    write_loss(&server.url, "b", 100);
    // While the server runs, the CLI says how to delete on it.
    let out = steplake(&["delete-run", "a", "--data-dir", data_dir], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DELETE /api/runs/RUN"), "{stderr}");
    server.stop();

    let out = steplake(&["delete-run", "a", "--data-dir", data_dir], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("deleted run a"));
    let out = steplake(&["delete-run", "a", "--data-dir", data_dir], None);
    assert_eq!(out.status.code(), Some(2), "nothing left to delete");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to delete"));
    let out = steplake(&["delete-project", "default", "--data-dir", data_dir], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("deleted run b"));

    let server = TestServer::start(dir.path(), &[]);
    assert_eq!(count(&server.url, "scalars"), 0);
    assert_eq!(count(&server.url, "runs"), 0);
    server.stop();
}
