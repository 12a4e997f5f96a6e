//! The dashboard against the real binary: the JSON API the page uses
//! (downsampling that keeps every extreme, zoom at full resolution, markers,
//! emergence, tensor statistics, read-only SQL), `/metrics`, the page itself,
//! and the page in headless Chromium (tests/browser/dashboard.mjs).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::harness::{steplake, TestServer};

/// One HTTP/1.1 request; returns the status code and the body.
/// A request as the dashboard page sends it: `POST /api/sql` carries
/// `{"sql": body}` as JSON.
pub(crate) fn http(base: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let host = base.trim_start_matches("http://").to_string();
    if method == "POST" && path == "/api/sql" {
        let json = serde_json::json!({ "sql": body }).to_string();
        return raw_http(base, &format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{json}", json.len()));
    }
    let headers = if method == "POST" {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    raw_http(base, &format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len()))
}

/// Sends `request` as it is; returns the whole response, headers included.
pub(crate) fn raw_response(base: &str, request: &str) -> String {
    let host = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).expect("connect to the dashboard");
    stream.write_all(request.as_bytes()).expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    response
}

/// Sends `request` as it is; returns the status and the body.
pub(crate) fn raw_http(base: &str, request: &str) -> (u16, String) {
    let response = raw_response(base, request);
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

pub(crate) fn get_json(base: &str, path: &str) -> Value {
    let (code, body) = http(base, "GET", path, "");
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// The value written at `step` of the test series: a decaying loss with a
/// spike at 31,337 and a dip at 70,001.
fn loss(step: i64) -> f64 {
    match step {
        31_337 => 1000.0,
        70_001 => -500.0,
        s => 1.0 / (1.0 + s as f64 / 1000.0),
    }
}

/// Writes `points` steps of `loss` (and a constant `acc`) to `run`.
pub(crate) fn write_loss(url: &str, run: &str, points: i64) {
    let mut csv = String::from("name,step,value\n");
    for step in 0..points {
        csv.push_str(&format!("loss,{step},{}\n", loss(step)));
    }
    csv.push_str("acc,0,0.5\n");
    let out = steplake(&["write", "--server", url, "--run", run, "-"], Some(&csv));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// When run "wide" logged its step 0, in Unix seconds (2023-11-14).
const WIDE_START: i64 = 1_700_000_000;

/// Writes run `run` with many metrics for the workspace: `train/m00` to
/// `train/m19`, `eval/m00` to `eval/m09` and `lr`, 2,000 steps each, with a
/// spike of 500 in `train/m07` at step 1,234; and `acc` at step 0. Step
/// `s` was logged at wall time [`WIDE_START`] + `s` seconds.
fn write_many_metrics(url: &str, run: &str) {
    let mut csv = String::from("name,step,value,wall_time\n");
    let names = (0..20)
        .map(|i| format!("train/m{i:02}"))
        .chain((0..10).map(|i| format!("eval/m{i:02}")))
        .chain(["lr".to_string()]);
    // `acc` at step 0 beside small's (0.5): the group of both has mean 1.0.
    csv.push_str(&format!("acc,0,1.5,{WIDE_START}\n"));
    for (k, name) in names.enumerate() {
        for step in 0..2_000 {
            let value = if name == "train/m07" && step == 1_234 {
                500.0
            } else {
                (k + 1) as f64 / (1.0 + step as f64 / 100.0)
            };
            csv.push_str(&format!("{name},{step},{value},{}\n", WIDE_START + step));
        }
    }
    let out = steplake(&["write", "--server", url, "--run", run, "-"], Some(&csv));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A safetensors file holding one f32 tensor.
fn write_safetensors(path: &std::path::Path, name: &str, values: &[f32]) {
    let header = format!(
        "{{\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[0,{}]}}}}",
        values.len(),
        values.len() * 4
    );
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).expect("write safetensors");
}

/// Imports tensor `layer.w` of run `run` at each (step, scale): 1000
/// values of a sine times the scale.
fn import_tensor_steps(url: &str, dir: &std::path::Path, run: &str, steps: &[(i64, f32)]) {
    for &(step, scale) in steps {
        let file = dir.join(format!("{run}-w{step}.safetensors"));
        let values: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.01).sin() * scale).collect();
        write_safetensors(&file, "layer.w", &values);
        let out = Command::new(crate::harness::binary())
            .args([
                "import",
                "safetensors",
                "--server",
                url,
                "--run",
                run,
                "--step",
            ])
            .arg(step.to_string())
            .arg(&file)
            .output()
            .expect("import");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn numbers(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_f64().unwrap_or(f64::NAN))
        .collect()
}

#[test]
fn series_are_downsampled_keeping_extremes_and_zoom_is_full_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    write_loss(&server.url, "r1", 100_000);
    let base = server.http_url();

    let all = get_json(&base, "/api/series?runs=r1&name=loss&width=200");
    assert_eq!(all["downsampled"], true);
    assert_eq!(all["points"], 100_000);
    assert_eq!(
        (all["start"].as_i64(), all["end"].as_i64()),
        (Some(0), Some(99_999))
    );
    let run = &all["runs"][0];
    assert_eq!(run["run_id"], "r1");
    let x = numbers(&run["x"]);
    assert!(x.len() <= 200 && x.len() >= 190, "{} buckets", x.len());
    assert!(x.windows(2).all(|w| w[0] < w[1]), "buckets in step order");
    let hi = numbers(&run["hi"]);
    let lo = numbers(&run["lo"]);
    assert_eq!(
        hi.iter().cloned().fold(f64::MIN, f64::max),
        1000.0,
        "the spike survives"
    );
    assert_eq!(
        lo.iter().cloned().fold(f64::MAX, f64::min),
        -500.0,
        "the dip survives"
    );
    // The last bucket's last value is the series' last point.
    assert_eq!(numbers(&run["last"]).last().copied(), Some(loss(99_999)));

    let zoom = get_json(
        &base,
        "/api/series?runs=r1&name=loss&width=200&start=31300&end=31400",
    );
    assert_eq!(zoom["downsampled"], false);
    let run = &zoom["runs"][0];
    let steps: Vec<i64> = numbers(&run["x"]).iter().map(|s| *s as i64).collect();
    assert_eq!(steps, (31_300..=31_400).collect::<Vec<_>>());
    let values = numbers(&run["last"]);
    for (step, value) in steps.iter().zip(&values) {
        // serde_json reads floats to within one ulp.
        let expected = loss(*step);
        assert!(
            (value - expected).abs() <= 1e-15 * expected.abs(),
            "step {step}: {value} vs {expected}"
        );
    }
    server.stop();
}

#[test]
fn runs_names_markers_emergence_and_tensor_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    write_loss(&server.url, "r1", 20_000);
    let base = server.http_url();

    let runs = get_json(&base, "/api/runs");
    let run = &runs["runs"][0];
    assert_eq!(
        (run["run_id"].as_str(), run["status"].as_str()),
        (Some("r1"), Some("finished"))
    );
    assert_eq!(run["last_step"], 19_999);
    assert_eq!(run["points"], 20_001);
    assert_eq!(
        get_json(&base, "/api/names?runs=r1")["names"],
        serde_json::json!(["acc", "loss"])
    );

    // The spike is in the markers only if the series reaches it: write past it.
    write_loss(&server.url, "r2", 40_000);
    let markers = get_json(&base, "/api/markers?run=r2&name=loss");
    let spikes: Vec<i64> = numbers(&markers["spikes"]["step"])
        .iter()
        .map(|s| *s as i64)
        .collect();
    assert!(spikes.contains(&31_337), "{spikes:?}");
    assert!(markers["changepoints"].is_array());

    // loss < 0.05 first holds from step 19,001 (1/(1+19.001) < 0.05).
    let emerged = get_json(
        &base,
        "/api/emergence?run=r2&name=loss&op=%3C&threshold=0.05&hold=10",
    );
    assert_eq!(emerged["step"], 19_001);
    let (code, body) = http(
        &base,
        "GET",
        "/api/emergence?run=r2&name=loss&op=~&threshold=1",
        "",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("use >, >=, < or <="), "{body}");

    // Tensor statistics over steps, histograms included.
    import_tensor_steps(&server.url, dir.path(), "r1", &[(0, 1.0), (10, 2.0)]);
    assert_eq!(
        get_json(&base, "/api/tensor_names?run=r1")["names"],
        serde_json::json!(["layer.w"])
    );
    let stats = get_json(&base, "/api/tensor_stats?run=r1&name=layer.w");
    assert_eq!(stats["step"], serde_json::json!([0, 10]));
    let l2 = numbers(&stats["l2"]);
    assert!((l2[1] / l2[0] - 2.0).abs() < 1e-9, "{l2:?}");
    for histogram in stats["hist"].as_array().expect("histograms") {
        let counts = numbers(histogram);
        assert_eq!(counts.len(), 64);
        assert_eq!(counts.iter().sum::<f64>(), 1000.0);
    }
    server.stop();
}

/// Writes the points of `csv` (`name,step,value` rows, no header) to `run`.
fn write_csv(url: &str, run: &str, csv: &str) {
    let csv = format!("name,step,value\n{csv}");
    let out = steplake(&["write", "--server", url, "--run", run, "-"], Some(&csv));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_series_is_predicted_to_its_final_step_with_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    // The loss law at a constant rate 0.01: 1 + 2·(0.01·step)^(−0.5), which
    // is 1.2 at step 10,000 (as in sql/slt/power_law.slt).
    let mut csv = String::new();
    for step in (10..=1000).step_by(10) {
        let loss = 1.0 + 2.0 * (0.01 * step as f64).powf(-0.5);
        csv.push_str(&format!("loss,{step},{loss}\nlr,{step},0.01\n"));
    }
    write_csv(&server.url, "law", &csv);
    let base = server.http_url();
    for lr in ["&lr=lr", ""] {
        let p = get_json(
            &base,
            &format!("/api/prediction?run=law&name=loss&final=10000&points=10{lr}"),
        );
        assert_eq!(
            (p["fitted"].as_bool(), p["last_step"].as_i64()),
            (Some(true), Some(1000)),
            "{p}"
        );
        let steps: Vec<i64> = numbers(&p["step"]).iter().map(|s| *s as i64).collect();
        assert_eq!(
            (steps.len(), steps[0], steps[9]),
            (10, 1000, 10_000),
            "{steps:?}"
        );
        let (value, lo, hi) = (numbers(&p["value"]), numbers(&p["lo"]), numbers(&p["hi"]));
        // Where it starts: the last logged value; where it ends: the law's.
        assert!(
            (value[0] - 1.2).abs() > 0.01
                && (value[0] - (1.0 + 2.0 / 10.0_f64.sqrt())).abs() < 1e-6,
            "{value:?}"
        );
        assert!((value[9] - 1.2).abs() < 1e-6, "{lr}: {value:?}");
        assert!((0..10).all(|i| lo[i] <= value[i] + 1e-9 && value[i] <= hi[i] + 1e-9));
    }
    // Too few points to fit: said, not an error.
    write_csv(&server.url, "short", "loss,1,2.0\nloss,2,1.9\n");
    let p = get_json(&base, "/api/prediction?run=short&name=loss&final=100");
    assert_eq!(
        (p["fitted"].as_bool(), p["step"].as_array().map(Vec::len)),
        (Some(false), Some(0)),
        "{p}"
    );
    for (query, says) in [
        ("run=law&name=loss&final=500", "logged up to step 1000"),
        ("run=law&name=loss", "the step to predict to"),
        ("run=law&name=loss&final=5000&level=2", "between 0 and 1"),
        ("run=law&name=nothing&final=5000", "has no series"),
    ] {
        let (code, body) = http(&base, "GET", &format!("/api/prediction?{query}"), "");
        assert_eq!(code, 400, "{query}: {body}");
        assert!(body.contains(says), "{query}: {body}");
    }
    // Over wall time, each x comes with its first step.
    let by_time = get_json(&base, "/api/series?runs=law&name=loss&x=wall_time");
    let run = &by_time["runs"][0];
    assert_eq!(numbers(&run["step"])[..3], [10.0, 20.0, 30.0], "{run}");
    assert_eq!(run["x"].as_array().map(Vec::len), Some(100));
    assert!(get_json(&base, "/api/series?runs=law&name=loss")["runs"][0]
        .get("step")
        .is_none());
    server.stop();
}

/// A connection on which `GET path` was sent with `headers` (each ending
/// in CRLF), its reads timing out after a minute.
fn send_get(base: &str, path: &str, headers: &str) -> TcpStream {
    let host = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).expect("connect to the dashboard");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n"
    )
    .unwrap();
    stream
}

/// The response head (status line and headers, lower-cased) of a GET of
/// `path` sent with `accept_encoding`.
fn response_head(base: &str, path: &str, accept_encoding: &str) -> String {
    let mut stream = send_get(
        base,
        path,
        &format!("Accept-Encoding: {accept_encoding}\r\n"),
    );
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).expect("read the head"),
            1,
            "the head ended early"
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_lowercase()
}

#[test]
fn responses_are_gzipped_for_browsers_that_take_it_but_live_events_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    write_loss(&server.url, "r1", 2_000);
    let base = server.http_url();
    for path in [
        "/api/series?runs=r1&name=loss",
        "/app.js",
        "/api/export.csv?runs=r1&name=loss",
    ] {
        let head = response_head(&base, path, "gzip");
        assert!(
            head.starts_with("http/1.1 200") && head.contains("content-encoding: gzip"),
            "{path}: {head}"
        );
        let plain = response_head(&base, path, "identity");
        assert!(!plain.contains("content-encoding"), "{path}: {plain}");
    }
    // Each live event must reach the page as it is written.
    let live = response_head(&base, "/api/live?runs=r1&names=loss", "gzip");
    assert!(
        live.contains("text/event-stream") && !live.contains("content-encoding"),
        "{live}"
    );
    server.stop();
}

/// The first event of the server-sent stream at `path`, as JSON, once
/// `after_open` (run when the stream is open) has made one.
fn first_live_event(base: &str, path: &str, after_open: impl FnOnce()) -> Value {
    let mut stream = send_get(base, path, "");
    let mut seen = String::new();
    let mut buffer = [0u8; 65536];
    let mut after_open = Some(after_open);
    loop {
        let n = stream.read(&mut buffer).expect("read the stream");
        assert!(n > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
        if let Some(open) = after_open.take_if(|_| seen.contains("\r\n\r\n")) {
            assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
            open();
        }
        if let Some(data) = seen.split("data: ").nth(1) {
            if let Some((line, _)) = data.split_once('\n') {
                return serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            }
        }
    }
}

#[test]
fn the_live_stream_sends_each_series_only_its_own_tail() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    let points =
        |from: i64, to: i64| -> String { (from..to).map(|s| format!("loss,{s},{s}\n")).collect() };
    write_csv(&server.url, "ahead", &points(0, 1000));
    write_csv(&server.url, "behind", &points(0, 10));
    let base = server.http_url();
    // The page has every point of both: the next point of "behind" is all
    // that travels, not the 990 steps "ahead" is ahead of it.
    let event = first_live_event(
        &base,
        "/api/live?runs=ahead,behind&names=loss&last=999,9",
        || write_csv(&server.url, "behind", "loss,10,10\n"),
    );
    let series = event["series"].as_array().expect("series");
    assert_eq!(series.len(), 1, "{event}");
    assert_eq!(
        (series[0]["run_id"].as_str(), &series[0]["x"]),
        (Some("behind"), &serde_json::json!([10]))
    );
    assert_eq!(series[0]["t"].as_array().map(Vec::len), Some(1), "{event}");
    // A series the page has nothing of comes from its start.
    let event = first_live_event(&base, "/api/live?runs=behind&names=loss&last=", || {});
    assert_eq!(numbers(&event["series"][0]["x"]).len(), 11, "{event}");
    let (code, body) = http(
        &base,
        "GET",
        "/api/live?runs=ahead,behind&names=loss&last=5",
        "",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("1 entries for 2 series"), "{body}");
    server.stop();
}

#[test]
fn the_api_is_read_only_and_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    write_loss(&server.url, "r1", 100);
    let base = server.http_url();
    for statement in [
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO scalars VALUES ('r', 'n', 1, 1.0, NULL)",
        "DROP TABLE scalars",
    ] {
        let (code, body) = http(&base, "POST", "/api/sql", statement);
        assert!(code == 403 || code == 400, "{statement}: {code} {body}");
        assert!(body.contains("error"), "{body}");
    }
    // A statement that used to overflow a stack is a 400 with a reason.
    let deep = format!("SELECT {}", vec!["1"; 2_000].join("+"));
    let (code, body) = http(&base, "POST", "/api/sql", &deep);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("more than 1000 levels"), "{body}");
    let (code, body) = http(
        &base,
        "POST",
        "/api/sql",
        "SELECT count(*) AS n FROM scalars",
    );
    assert_eq!(code, 200, "{body}");
    let result: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(result["rows"][0]["n"], 101);
    // Only the SQL box takes POST; nothing takes PUT or DELETE.
    assert_eq!(http(&base, "POST", "/api/runs", "").0, 405);
    assert_eq!(
        http(&base, "DELETE", "/api/series?runs=r1&name=loss", "").0,
        405
    );
    let (code, body) = http(&base, "GET", "/api/series?name=loss", "");
    assert_eq!(code, 400, "{body}");
    let (code, body) = http(&base, "GET", "/api/series?runs=r1&name=loss&x=epoch", "");
    assert_eq!(code, 400);
    assert!(body.contains("use step or wall_time"), "{body}");
    let many: Vec<String> = (0..21).map(|i| format!("m{i}")).collect();
    let (code, body) = http(
        &base,
        "GET",
        &format!("/api/runs?metrics={}", many.join(",")),
        "",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("at most 20"), "{body}");
    assert_eq!(scalar_count(&server.url), "101", "nothing changed");
    server.stop();
}

fn scalar_count(url: &str) -> String {
    crate::harness::scalar(&crate::harness::sql_csv(
        url,
        "SELECT count(*) FROM scalars",
    ))
}

#[test]
fn metrics_and_the_page_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    write_loss(&server.url, "r1", 1000);
    let base = server.http_url();
    let (code, metrics) = http(&base, "GET", "/metrics", "");
    assert_eq!(code, 200);
    for line in [
        "steplake_points_written_total 1001",
        "# TYPE steplake_points_written_total counter",
        "steplake_buffered_rows 1001",
        "# TYPE steplake_wal_bytes gauge",
        "steplake_files_flushed_total 0",
        "steplake_data_files{table=\"scalars\"} 0",
        "steplake_compactions_total 0",
        "steplake_bytes_compacted_total 0",
        "steplake_manifest_writes_total 0",
        "# TYPE steplake_manifest_checkpoints_total counter",
        "steplake_flush_seconds_total",
        "steplake_queries_total",
        "steplake_http_requests_total",
        "steplake_tensor_codec_info{path=\"cpu",
    ] {
        assert!(metrics.contains(line), "{line:?} missing from:\n{metrics}");
    }
    let (code, page) = http(&base, "GET", "/", "");
    assert_eq!(code, 200);
    assert!(page.contains("<title>steplake</title>"), "{page}");
    let (code, script) = http(&base, "GET", "/app.js", "");
    assert_eq!(code, 200);
    assert!(
        script.len() > 20_000,
        "the bundle (uPlot and our modules) is {} bytes",
        script.len()
    );
    server.stop();
}

/// Where the browser test's screenshot goes.
fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir
}

#[test]
fn the_dashboard_in_headless_chromium() {
    let root = crate::harness::repo_file("");
    let script = root.join("tests/browser/dashboard.mjs");
    let modules = root.join("tests/browser/node_modules/playwright-core");
    let chromium =
        std::env::var("STEPLAKE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !modules.exists() || !PathBuf::from(&chromium).exists() {
        eprintln!(
            "skipped: the browser test needs Chromium ({chromium}) and tests/browser/node_modules; ./scripts/test.sh installs both"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    // A standing condition that the spike fires, for the chart's event
    // marker and the event list.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let client = steplake_client::Client::connect(&server.url).await.unwrap();
            // Named apart from its id: charts and lists show the name. Its
            // configuration and "small"'s (forked from it) are columns of
            // the runs table.
            client
                .create_run(steplake_client::v1::CreateRunRequest {
                    run_id: "big".into(),
                    project: "default".into(),
                    name: "baseline run".into(),
                    config_json: r#"{"lr": 0.001, "model": {"width": 256}}"#.into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            client
                .create_run(steplake_client::v1::CreateRunRequest {
                    run_id: "small".into(),
                    project: "default".into(),
                    name: "small".into(),
                    config_json: r#"{"lr": 0.01}"#.into(),
                    parent_run_id: "big".into(),
                    fork_step: Some(500),
                    ..Default::default()
                })
                .await
                .unwrap();
            client
                .create_run(steplake_client::v1::CreateRunRequest {
                    run_id: "wide".into(),
                    project: "default".into(),
                    name: "wide".into(),
                    config_json: r#"{"lr": 0.01}"#.into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            client
                .add_condition(steplake_client::v1::AddConditionRequest {
                    run_id: "big".into(),
                    series: "loss".into(),
                    predicate: "value >= 1000".into(),
                    label: "loss at 1000".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
        });
    // One run of 1M points with a spike, beside a small one.
    write_loss(&server.url, "big", 1_000_000);
    write_loss(&server.url, "small", 5_000);
    write_many_metrics(&server.url, "wide");
    // A tensor at steps far apart, for the tensors page's step axis.
    import_tensor_steps(
        &server.url,
        dir.path(),
        "small",
        &[(0, 1.0), (1000, 2.0), (2000, 3.0)],
    );
    // From here the server requires tokens: the page must sign in.
    let token = crate::auth::create_token(dir.path(), "browser", "read");
    let writer = crate::auth::create_token(dir.path(), "live-writer", "write:*");
    let out = Command::new("node")
        .arg(&script)
        .env("STEPLAKE_URL", server.http_url())
        .env("STEPLAKE_TOKEN", &token)
        .env("STEPLAKE_CHROMIUM", &chromium)
        .env("STEPLAKE_ARTIFACTS", artifacts())
        // For the live test: the binary writes a point over gRPC.
        .env("STEPLAKE_BIN", crate::harness::binary())
        .env("STEPLAKE_GRPC", &server.url)
        .env("STEPLAKE_WRITE_TOKEN", &writer)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("chart of 1000000 points drawn in"),
        "{stdout}"
    );
    server.stop();
}

#[test]
fn foreign_hosts_cross_origin_posts_and_plain_text_posts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &["--http-host", "steplake.lab.example"]);
    let base = server.http_url();
    let port = base.rsplit(':').next().unwrap().to_string();
    let get = |host: &str| {
        raw_http(
            &base,
            &format!("GET /api/runs HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
    };
    // DNS rebinding: a page on another name that resolves to this server.
    let (code, body) = get(&format!("attacker.example:{port}"));
    assert_eq!(code, 421, "{body}");
    assert!(body.contains("--http-host"), "{body}");
    assert_eq!(get(&format!("localhost:{port}")).0, 200);
    assert_eq!(
        get("steplake.lab.example").0,
        200,
        "a name allowed with --http-host"
    );
    let host = base.trim_start_matches("http://");
    let sql = r#"{"sql":"SELECT 1 AS one"}"#;
    let post = |extra: &str, content_type: &str| {
        raw_http(&base, &format!("POST /api/sql HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Type: {content_type}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{sql}", sql.len()))
    };
    // A form or fetch from another origin can send text/plain without a preflight.
    assert_eq!(post("", "text/plain").0, 415);
    let (code, body) = post("Origin: http://attacker.example\r\n", "application/json");
    assert_eq!(code, 403, "{body}");
    let (code, body) = post(&format!("Origin: http://{host}\r\n"), "application/json");
    assert_eq!(code, 200, "{body}");
    // Security headers on every answer, no CORS.
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let head = response
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'self'"),
        "{head}"
    );
    assert!(head.contains("frame-ancestors 'none'"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    server.stop();
}
