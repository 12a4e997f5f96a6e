//! Standing conditions through the real server: project defaults and
//! series patterns, a Watch stream that resumes from a seq, and 10,000
//! conditions on 10,000 series.

use std::time::Duration;

use futures::future::join_all;
use steplake_client::v1::{AddConditionRequest, CreateRunRequest, ScalarBatch};
use steplake_client::Client;
use tonic::Code;

use crate::e2e_test;
use crate::harness::{scalar, sql_csv, TestServer};

/// One point per series at `step`; `value(series)` gives each value.
fn step_batch(names: &[String], step: i64, value: impl Fn(usize) -> f64) -> ScalarBatch {
    ScalarBatch {
        names: names.to_vec(),
        name_index: (0..names.len() as u32).collect(),
        steps: vec![step; names.len()],
        values: (0..names.len()).map(value).collect(),
        wall_times_us: vec![],
    }
}

async fn create(client: &Client, run_id: &str, project: &str) {
    client
        .create_run(CreateRunRequest {
            run_id: run_id.into(),
            project: project.into(),
            ..Default::default()
        })
        .await
        .expect("create run");
}

e2e_test! {
    async fn a_project_default_watches_its_runs_on_the_series_its_pattern_names() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let client = Client::connect(&server.url).await.unwrap();
        let id = client
            .add_condition(AddConditionRequest {
                project: "lab".into(),
                series: "*/grad_norm".into(),
                predicate: "value > 10".into(),
                hold: 2,
                ..Default::default()
            })
            .await
            .expect("a project default");
        create(&client, "r1", "lab").await;
        create(&client, "other", "elsewhere").await;
        let names: Vec<String> = ["layer.0/grad_norm", "layer.1/grad_norm", "loss"]
            .map(String::from)
            .to_vec();
        for run in ["r1", "other"] {
            let mut writer = client.writer(run).await.unwrap();
            for step in 0..10 {
                // layer.1 and loss exceed 10 from step 5; hold 2 fires at step 6.
                writer
                    .send(step_batch(&names, step, |i| if i > 0 && step >= 5 { 50.0 } else { 1.0 }))
                    .await
                    .unwrap();
            }
            writer.finish().await.unwrap();
        }
        let mut events = client.watch("r1", 0).await.expect("watch");
        let event = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("an event in time")
            .expect("stream")
            .expect("an event");
        assert_eq!(
            (event.series.as_str(), event.step, event.condition_id.as_str(), event.label.as_str()),
            ("layer.1/grad_norm", 6, id.as_str(), "value > 10")
        );
        let all = sql_csv(&server.url, "SELECT run_id, series, step FROM events ORDER BY seq");
        assert_eq!(all, "run_id,series,step\nr1,layer.1/grad_norm,6\n", "only the project's run, only the pattern's series");
        // The dashboard lists it, for its chart markers and its event list.
        let listed = crate::dashboard::get_json(&server.http_url(), "/api/events?runs=r1,other");
        assert_eq!(listed["events"].as_array().map(Vec::len), Some(1), "{listed}");
        assert_eq!(listed["events"][0]["series"], "layer.1/grad_norm");
        assert_eq!(listed["events"][0]["step"], 6);
        // Resuming after that event's seq delivers nothing old.
        let mut resumed = client.watch("r1", event.seq).await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(300), resumed.message()).await.is_err(),
            "nothing after the last seq"
        );
        let Err(unknown) = client.watch("nope", 0).await else {
            panic!("watching a run that does not exist must fail");
        };
        assert_eq!(unknown.code(), Some(Code::NotFound));
    }
}

e2e_test! {
    async fn ten_thousand_series_with_a_condition_each_fire_exactly_their_events() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let client = Client::connect(&server.url).await.unwrap();
        create(&client, "big", "scale").await;
        let series = 10_000usize;
        let names: Vec<String> = (0..series).map(|i| format!("layer.{i}/grad_norm")).collect();
        for chunk in names.chunks(500) {
            let added = join_all(chunk.iter().map(|name| {
                client.add_condition(AddConditionRequest {
                    run_id: "big".into(),
                    series: name.clone(),
                    predicate: "is_spike(value) OR NOT isfinite(value)".into(),
                    ..Default::default()
                })
            }))
            .await;
            assert!(added.iter().all(Result::is_ok), "{:?}", added.iter().find(|r| r.is_err()));
        }
        let steps = 40;
        let mut writer = client.writer("big").await.unwrap();
        for step in 0..steps {
            writer
                .send(step_batch(&names, step, |i| match (i % 1000, step) {
                    (0, 30) => 100.0,
                    (1, 31) => f64::NAN,
                    _ => 1.0 + 0.01 * ((i as i64 + step) % 7) as f64,
                }))
                .await
                .unwrap();
        }
        writer.finish().await.unwrap();
        let points = sql_csv(&server.url, "SELECT count(*) FROM scalars WHERE run_id = 'big'");
        assert_eq!(scalar(&points), (series as i64 * steps).to_string());
        let fired = sql_csv(
            &server.url,
            "SELECT step, count(*) AS n, min(series) AS first FROM events GROUP BY step ORDER BY step",
        );
        assert_eq!(fired, "step,n,first\n30,10,layer.0/grad_norm\n31,10,layer.1/grad_norm\n");
        let conditions = sql_csv(&server.url, "SELECT count(*) FROM conditions");
        assert_eq!(scalar(&conditions), series.to_string());
    }
}
