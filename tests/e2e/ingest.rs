//! Write path: queryable at once, durable across kill -9, retries applied once,
//! one server per data directory, bad input rejected without losing data.

use std::time::Duration;

use steplake_client::v1::{CreateRunRequest, ScalarBatch};
use steplake_client::{Client, ClientError};
use tonic::Code;

use crate::e2e_test;
use crate::harness::{parquet_files, scalar, sql_csv, steplake, TestServer};

fn batch(name: &str, steps: std::ops::Range<i64>) -> ScalarBatch {
    let n = steps.end - steps.start;
    ScalarBatch {
        names: vec![name.to_string()],
        name_index: vec![0; n as usize],
        values: steps.clone().map(|s| (s as f64).sin()).collect(),
        steps: steps.collect(),
        wall_times_us: vec![],
    }
}

async fn create_run(client: &Client, run_id: &str) {
    client
        .create_run(CreateRunRequest {
            run_id: run_id.into(),
            project: "e2e".into(),
            ..Default::default()
        })
        .await
        .expect("create run");
}

e2e_test! {
    async fn points_are_queryable_before_any_flush() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &["--flush-secs", "3600"]);
        let csv = "name,step,value\nloss,0,2.5\nloss,1,nan\nloss,2,inf\nacc,0,0.1\n";
        let out = steplake(&["write", "--server", &server.url, "--run", "r1", "-"], Some(csv));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(parquet_files(dir.path()).is_empty(), "nothing may be flushed yet");
        let rows = sql_csv(&server.url, "SELECT name, step, value FROM scalars ORDER BY name, step");
        assert_eq!(rows, "name,step,value\nacc,0,0.1\nloss,0,2.5\nloss,1,NaN\nloss,2,inf\n");
        let runs = sql_csv(&server.url, "SELECT run_id, project, status FROM runs");
        assert_eq!(runs, "run_id,project,status\nr1,default,finished\n");
    }
}

e2e_test! {
    async fn kill9_mid_stream_keeps_every_acknowledged_point_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        // Small flush threshold: some points reach Parquet, the rest only the WAL.
        let server = TestServer::start(dir.path(), &["--flush-rows", "20000"]);
        let client = Client::connect(&server.url).await.unwrap();
        create_run(&client, "crash").await;
        let mut writer = client.writer_with_id("crash", "w-crash", 1).await.unwrap();
        let per_batch = 1000;
        for seq in 0..60i64 {
            writer.send(batch("loss", seq * per_batch..(seq + 1) * per_batch)).await.unwrap();
        }
        // Wait for those to be acknowledged by closing the stream.
        let summary = writer.finish().await.unwrap();
        assert_eq!(summary.batches, 60);
        // Keep writing on a new stream and kill the server while it is in flight.
        let mut writer = client.writer_with_id("crash", "w-crash", 61).await.unwrap();
        let sender = tokio::spawn(async move {
            // Until the server dies: the kill must land mid-stream.
            for seq in 60..2_000_000i64 {
                if writer.send(batch("loss", seq * per_batch..(seq + 1) * per_batch)).await.is_err() {
                    break;
                }
            }
            writer.finish().await
        });
        // Kill once the second stream is visibly being applied (no fixed sleep:
        // CI machines are slow and noisy).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let applied: u64 = scalar(&sql_csv(&server.url, "SELECT count(*) FROM scalars")).parse().unwrap();
            if applied >= 65 * per_batch as u64 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the second stream made no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.kill9();
        let acked_in_flight = match sender.await.unwrap() {
            Err(ClientError::Stream { acked_points, .. }) => acked_points,
            other => panic!("the stream must break when the server dies, got {other:?}"),
        };
        let acked = 60 * per_batch as u64 + acked_in_flight;

        let server = TestServer::start(dir.path(), &[]);
        let total: u64 = scalar(&sql_csv(&server.url, "SELECT count(*) FROM scalars")).parse().unwrap();
        let distinct: u64 = scalar(&sql_csv(&server.url, "SELECT count(DISTINCT step) FROM scalars")).parse().unwrap();
        assert_eq!(total, distinct, "no point may appear twice");
        assert!(total >= acked, "lost acknowledged points: {total} < {acked}");
        assert_eq!(total % per_batch as u64, 0, "batches are applied whole");
        // Acknowledged steps are a prefix: all of 0..acked are present.
        let max_step: u64 = scalar(&sql_csv(&server.url, "SELECT max(step) FROM scalars")).parse().unwrap();
        assert_eq!(max_step + 1, total, "steps 0..{total} are contiguous");
    }
}

e2e_test! {
    async fn a_retried_batch_is_applied_once() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let client = Client::connect(&server.url).await.unwrap();
        create_run(&client, "retry").await;
        let mut first = client.writer_with_id("retry", "w-retry", 1).await.unwrap();
        first.send(batch("loss", 0..100)).await.unwrap();
        let s1 = first.finish().await.unwrap();
        assert_eq!((s1.points, s1.duplicates), (100, 0));
        // The same (writer, sequence) again, as after a lost ack and a reconnect.
        let mut second = client.writer_with_id("retry", "w-retry", 1).await.unwrap();
        second.send(batch("loss", 0..100)).await.unwrap();
        second.send(batch("loss", 100..150)).await.unwrap();
        let s2 = second.finish().await.unwrap();
        assert_eq!((s2.points, s2.duplicates), (50, 1));
        assert_eq!(scalar(&sql_csv(&server.url, "SELECT count(*) FROM scalars")), "150");
        // Still applied once after a restart replays the WAL.
        server.kill9();
        let server = TestServer::start(dir.path(), &[]);
        let client = Client::connect(&server.url).await.unwrap();
        let mut third = client.writer_with_id("retry", "w-retry", 2).await.unwrap();
        third.send(batch("loss", 100..150)).await.unwrap();
        assert_eq!(third.finish().await.unwrap().duplicates, 1);
        assert_eq!(scalar(&sql_csv(&server.url, "SELECT count(*) FROM scalars")), "150");
    }
}

e2e_test! {
    async fn a_second_server_on_the_same_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _server = TestServer::start(dir.path(), &[]);
        let out = steplake(
            &["serve", "--data-dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0", "--http", "off"],
            None,
        );
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("in use by another steplake process"), "{stderr}");
        // The direct SQL mode is refused too, and says what to do instead.
        let out = steplake(&["sql", "--data-dir", dir.path().to_str().unwrap(), "SELECT 1"], None);
        assert!(String::from_utf8_lossy(&out.stderr).contains("--server"));
    }
}

e2e_test! {
    async fn bad_input_gets_a_clear_status_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &["--max-message-bytes", "200000"]);
        let client = Client::connect(&server.url).await.unwrap();
        create_run(&client, "good").await;
        let mut w = client.writer("good").await.unwrap();
        w.send(batch("loss", 0..10)).await.unwrap();
        assert_eq!(w.finish().await.unwrap().points, 10);

        let expect = |result: Result<steplake_client::WriteSummary, ClientError>, code: Code, needle: &str| {
            let err = result.expect_err("must fail");
            assert_eq!(err.code(), Some(code), "{err}");
            assert!(err.to_string().contains(needle), "{err} should mention {needle}");
        };

        let mut w = client.writer("no-such-run").await.unwrap();
        let _ = w.send(batch("loss", 0..1)).await;
        expect(w.finish().await, Code::NotFound, "no-such-run");

        let mut w = client.writer("good").await.unwrap();
        let mut b = batch("loss", 20..30);
        b.steps[3] = -1;
        let _ = w.send(b).await;
        expect(w.finish().await, Code::InvalidArgument, "scalars.steps[3]");

        let mut w = client.writer("good").await.unwrap();
        let mut b = batch("loss", 20..30);
        b.values.pop();
        let _ = w.send(b).await;
        expect(w.finish().await, Code::InvalidArgument, "scalars.values");

        let mut w = client.writer("good").await.unwrap();
        let _ = w.send(batch("", 20..30)).await;
        expect(w.finish().await, Code::InvalidArgument, "empty");

        // A wall time no reader can convert (it used to be stored, and break reads later).
        let mut w = client.writer("good").await.unwrap();
        let mut b = batch("loss", 20..30);
        b.wall_times_us = vec![1_700_000_000_000_000; 10];
        b.wall_times_us[4] = i64::MIN;
        let _ = w.send(b).await;
        expect(w.finish().await, Code::InvalidArgument, "scalars.wall_times_us[4]");

        let mut w = client.writer("good").await.unwrap();
        let _ = w.send(batch("loss", 0..100_000)).await;
        let err = w.finish().await.expect_err("too large");
        assert!(matches!(err.code(), Some(Code::OutOfRange | Code::ResourceExhausted)), "{err}");

        // An error after acknowledged batches reports how many were acknowledged.
        let mut w = client.writer("good").await.unwrap();
        w.send(batch("acc", 0..5)).await.unwrap();
        let mut bad = batch("acc", 5..10);
        bad.name_index[0] = 9;
        let _ = w.send(bad).await;
        match w.finish().await {
            Err(ClientError::Stream { acked_points, .. }) => assert_eq!(acked_points, 5),
            other => panic!("expected a stream error, got {other:?}"),
        }

        let counts = sql_csv(&server.url, "SELECT name, count(*) AS n FROM scalars GROUP BY name ORDER BY name");
        assert_eq!(counts, "name,n\nacc,5\nloss,10\n");
    }
}

e2e_test! {
    async fn a_malformed_line_stops_write_and_a_corrected_rerun_adds_no_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let bad = "{\"step\":0,\"loss\":1.0,\"acc\":0.1}\n{\"step\":1,\"loss\":0.9}\n{\"step\":\"two\",\"loss\":0.8}\n";
        let out = steplake(&["write", "--server", &server.url, "--run", "j", "--format", "jsonl", "-"], Some(bad));
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("line 3") && stderr.contains("3 points"), "{stderr}");
        let good = bad.replace("\"two\"", "2");
        let out = steplake(&["write", "--server", &server.url, "--run", "j", "--format", "jsonl", "-"], Some(&good));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(scalar(&sql_csv(&server.url, "SELECT count(*) FROM scalars")), "4");
    }
}

e2e_test! {
    async fn write_finishes_the_run_unless_it_is_told_to_keep_it_running() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let one = "name,step,value\nloss,0,1\n";
        let out = steplake(&["write", "--server", &server.url, "--run", "kept", "--keep-running", "-"], Some(one));
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("wrote 1 point to run kept"), "{}", String::from_utf8_lossy(&out.stderr));
        let out = steplake(&["write", "--server", &server.url, "--run", "done", "-"], Some(one));
        assert!(out.status.success());
        let runs = sql_csv(&server.url, "SELECT run_id, status FROM runs ORDER BY run_id");
        assert_eq!(runs, "run_id,status\ndone,finished\nkept,running\n");
        // A bad line leaves the run running: the input is not complete.
        let out = steplake(&["write", "--server", &server.url, "--run", "broken", "-"], Some("name,step,value\nloss,x,1\n"));
        assert_eq!(out.status.code(), Some(2));
        let status = sql_csv(&server.url, "SELECT status FROM runs WHERE run_id = 'broken'");
        assert_eq!(status, "status\nrunning\n");
        // A missing input file is an I/O failure: exit 1, as the README says.
        let out = steplake(&["write", "--server", &server.url, "--run", "x", "/nonexistent/points.csv"], None);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open /nonexistent/points.csv"));
    }
}

e2e_test! {
    async fn rewritten_steps_show_the_latest_write_across_files_and_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let url = server.url.clone();
        let csv = "name,step,value\nloss,0,1\nloss,1,1\nloss,2,1\nacc,0,10\nacc,1,20\nacc,2,30\n";
        assert!(steplake(&["write", "--server", &url, "--run", "r", "-"], Some(csv)).status.success());
        server.stop(); // flushes to Parquet
        assert_eq!(parquet_files(dir.path()).len(), 1);
        let server = TestServer::start(dir.path(), &[]);
        let url = server.url.clone();
        // A resumed run sends steps 1.. of `loss` again; `acc` is untouched.
        let csv = "name,step,value\nloss,1,2\nloss,2,2\nloss,3,2\n";
        assert!(steplake(&["write", "--server", &url, "--run", "r", "-"], Some(csv)).status.success());
        let check = |url: &str| {
            let expected = "step,value\n0,1.0\n1,2.0\n2,2.0\n3,2.0\n";
            assert_eq!(sql_csv(url, "SELECT step, value FROM scalars WHERE name = 'loss' ORDER BY step"), expected);
            // Projections without run_id/name, over both the rewritten and the untouched series.
            assert_eq!(scalar(&sql_csv(url, "SELECT count(*) FROM scalars")), "7");
            assert_eq!(scalar(&sql_csv(url, "SELECT sum(value) FROM scalars")), "67.0");
            assert_eq!(sql_csv(url, "SELECT value FROM scalars WHERE step = 1 ORDER BY value"), "value\n2.0\n20.0\n");
            assert_eq!(
                sql_csv(url, "SELECT name, count(*) AS n FROM scalars GROUP BY name ORDER BY name"),
                "name,n\nacc,3\nloss,4\n"
            );
        };
        check(&url);
        server.stop();
        let server = TestServer::start(dir.path(), &[]);
        check(&server.url);
    }
}

/// The newest WAL segment holding records.
fn newest_wal_segment(data_dir: &std::path::Path) -> std::path::PathBuf {
    let mut segments: Vec<_> = std::fs::read_dir(data_dir.join("wal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        .collect();
    segments.sort();
    segments.pop().expect("a WAL segment with records")
}

e2e_test! {
    async fn a_torn_wal_tail_is_dropped_and_mid_log_corruption_stops_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let client = Client::connect(&server.url).await.unwrap();
        create_run(&client, "wal").await;
        let mut w = client.writer("wal").await.unwrap();
        for i in 0..3 {
            w.send(batch("loss", i * 10..(i + 1) * 10)).await.unwrap();
        }
        w.finish().await.unwrap();
        server.kill9();

        // A crash in the middle of the last append: cut the segment short.
        let segment = newest_wal_segment(dir.path());
        let len = std::fs::metadata(&segment).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(len - 5).unwrap();
        let server = TestServer::start(dir.path(), &[]);
        assert_eq!(scalar(&sql_csv(&server.url, "SELECT count(*) FROM scalars")), "20");
        server.kill9();

        // Damage in the middle of the log is not silently skipped.
        let segment = newest_wal_segment(dir.path());
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes[40] ^= 0xff;
        std::fs::write(&segment, bytes).unwrap();
        let out = steplake(&["serve", "--data-dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0", "--http", "off"], None);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("corrupt data in") && stderr.contains("offset"), "{stderr}");
    }
}

e2e_test! {
    /// Many small flushes keep the compactor busy merging files and the
    /// manifest log folding into a checkpoint at every other write; a kill
    /// -9 at several moments of it loses and doubles nothing, and at the
    /// end far fewer files are listed than there were flushes, and the log
    /// holds only the last checkpoint and what followed it.
    async fn kill9_during_compaction_and_manifest_checkpoints_keeps_every_point_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let flags = ["--flush-rows", "2000", "--compact-min-files", "3", "--manifest-checkpoint-every", "2"];
        let per_batch = 500i64;
        let mut next_seq = 0i64;
        let mut acked = 0u64;
        for (trial, wait) in [150u64, 400, 900].into_iter().enumerate() {
            let server = TestServer::start(dir.path(), &flags);
            let client = Client::connect(&server.url).await.unwrap();
            if trial == 0 {
                create_run(&client, "compact").await;
            }
            let mut writer = client.writer_with_id("compact", "w-compact", next_seq as u64 + 1).await.unwrap();
            let first = next_seq;
            let sender = tokio::spawn(async move {
                for seq in first..first + 1_000_000 {
                    if writer.send(batch("loss", seq * per_batch..(seq + 1) * per_batch)).await.is_err() {
                        break;
                    }
                }
                writer.finish().await
            });
            tokio::time::sleep(Duration::from_millis(wait)).await;
            server.kill9();
            let acked_now = match sender.await.unwrap() {
                Err(ClientError::Stream { acked_points, .. }) => acked_points,
                other => panic!("the stream must break when the server dies, got {other:?}"),
            };
            acked += acked_now;
            // The next trial continues after what is stored (acked or not).
            let server = TestServer::start(dir.path(), &flags);
            let total: u64 = scalar(&sql_csv(&server.url, "SELECT count(*) FROM scalars")).parse().unwrap();
            let distinct: u64 = scalar(&sql_csv(&server.url, "SELECT count(DISTINCT step) FROM scalars")).parse().unwrap();
            assert_eq!(total, distinct, "trial {trial}: no point may appear twice");
            assert!(total >= acked, "trial {trial}: lost acknowledged points: {total} < {acked}");
            assert_eq!(total % per_batch as u64, 0, "batches are applied whole");
            let max_step: i64 = scalar(&sql_csv(&server.url, "SELECT max(step) FROM scalars")).parse().unwrap();
            assert_eq!(max_step + 1, total as i64, "trial {trial}: the stored steps are a prefix");
            next_seq = total as i64 / per_batch;
            acked = total;
            server.kill9();
        }
        // Ten more flushes' worth, then a clean stop: the files stay few.
        let server = TestServer::start(dir.path(), &flags);
        let client = Client::connect(&server.url).await.unwrap();
        let mut writer = client.writer_with_id("compact", "w-compact", next_seq as u64 + 1).await.unwrap();
        for seq in next_seq..next_seq + 40 {
            writer.send(batch("loss", seq * per_batch..(seq + 1) * per_batch)).await.unwrap();
        }
        writer.finish().await.unwrap();
        let total: u64 = scalar(&sql_csv(&server.url, "SELECT count(*) FROM scalars")).parse().unwrap();
        assert_eq!(total, acked + 40 * per_batch as u64);
        server.stop();
        // Each flush wrote a file of about 2,000 points; compaction merged
        // them as they came (except for flushes at shutdown, which skip
        // it, so how many remain depends on timing, not how few).
        let flushes = (total / 2000) as usize;
        let listed = steplake_store::Manifest::load(dir.path()).unwrap().files.len();
        assert!(listed * 2 < flushes, "{listed} files listed after {flushes} flushes: compaction did not run");
        let entries: Vec<String> = std::fs::read_dir(dir.path().join("manifest"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        // One checkpoint, at most one change after it, and the pointer.
        assert!(entries.len() <= 3, "superseded manifest entries were kept: {entries:?}");
    }
}
