//! Tokens against the real binary: each scope allows and refuses what it
//! should on gRPC ingest, Flight SQL and the dashboard; an exposed address
//! needs tokens (or an explicit, warned-about opt-out).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::dashboard::{raw_http, raw_response};
use crate::harness::{binary, steplake, TestServer};

/// `steplake token create` in `dir`; returns the token it printed.
pub(crate) fn create_token(dir: &Path, name: &str, scope: &str) -> String {
    let dir = dir.to_str().unwrap();
    let out = steplake(
        &[
            "token",
            "create",
            "--data-dir",
            dir,
            "--name",
            name,
            "--scope",
            scope,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `steplake write` of one point into `run` of `project` with `token`;
/// returns (exit code, stderr).
fn write(url: &str, token: Option<&str>, run: &str, project: &str) -> (i32, String) {
    let mut args = vec!["write", "--server", url, "--run", run, "--project", project];
    if let Some(token) = token {
        args.extend(["--token", token]);
    }
    args.push("-");
    let out = steplake(&args, Some("name,step,value\nloss,0,1.5\n"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `steplake sql` with `token`; returns (exit code, stdout + stderr).
fn sql(url: &str, token: Option<&str>, statement: &str) -> (i32, String) {
    let mut args = vec!["sql", "--server", url, "--format", "csv"];
    if let Some(token) = token {
        args.extend(["--token", token]);
    }
    args.push(statement);
    let out = steplake(&args, None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// An HTTP request with extra header lines; returns (status, headers, body).
fn request(base: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    let content = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/json\r\n".to_string()
    };
    raw_http(
        base,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{content}{headers}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

#[test]
fn each_scope_allows_and_refuses_on_grpc_flight_sql_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    let url = server.url.clone();
    let http = server.http_url();

    // Loopback and no token yet: open, as for one person's machine.
    assert_eq!(write(&url, None, "open", "p").0, 0);
    assert_eq!(sql(&url, None, "SELECT 1 AS one").0, 0);

    // The first token closes it, on every port, without a restart.
    let admin = create_token(dir.path(), "operator", "admin");
    let reader = create_token(dir.path(), "notebook", "read");
    let writer_p = create_token(dir.path(), "cluster-p", "write:p");
    let writer_all = create_token(dir.path(), "cluster", "write:*");

    let (code, err) = write(&url, None, "r1", "p");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("requires a token"), "{err}");
    let (code, err) = write(&url, Some("slk_not-a-token"), "r1", "p");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not valid"), "{err}");

    // gRPC ingest: a project's write token writes there and nowhere else.
    let (code, err) = write(&url, Some(&writer_p), "r1", "p");
    assert_eq!(code, 0, "{err}");
    let (code, err) = write(&url, Some(&writer_p), "r2", "q");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("may not write to project \"q\""), "{err}");
    // Nor into another project's existing run, whatever the request claims.
    assert_eq!(write(&url, Some(&writer_all), "in-q", "q").0, 0);
    let (code, err) = write(&url, Some(&writer_p), "in-q", "p");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("may not write to project \"q\""), "{err}");
    let (code, err) = write(&url, Some(&reader), "r3", "p");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("(scope read) may not write"), "{err}");
    assert_eq!(write(&url, Some(&admin), "r4", "z").0, 0);

    // Flight SQL: read and admin query; write tokens and no token do not.
    let count = "SELECT count(*) AS n FROM scalars";
    let (code, out) = sql(&url, Some(&reader), count);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\n4"), "{out}");
    assert_eq!(sql(&url, Some(&admin), count).0, 0);
    let (code, out) = sql(&url, Some(&writer_all), count);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("may not read data"), "{out}");
    assert_eq!(sql(&url, None, count).0, 2);

    // HTTP: the page is open, the API and /metrics need a read token.
    assert_eq!(request(&http, "GET", "/", "", "").0, 200);
    let (status, body) = request(&http, "GET", "/api/runs", "", "");
    assert_eq!(status, 401, "{body}");
    assert_eq!(request(&http, "GET", "/metrics", "", "").0, 401);
    assert_eq!(
        request(&http, "GET", "/api/runs", &bearer(&reader), "").0,
        200
    );
    assert_eq!(
        request(&http, "GET", "/metrics", &bearer(&reader), "").0,
        200
    );
    assert_eq!(
        request(&http, "GET", "/api/runs", &bearer(&writer_p), "").0,
        403
    );
    // Only admin manages tokens.
    assert_eq!(
        request(&http, "GET", "/api/tokens", &bearer(&reader), "").0,
        403
    );
    let (status, body) = request(&http, "GET", "/api/tokens", &bearer(&admin), "");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"cluster-p\"") && !body.contains(&writer_p),
        "{body}"
    );
    let (status, body) = request(
        &http,
        "POST",
        "/api/tokens",
        &bearer(&admin),
        r#"{"name": "made-remotely", "scope": "read"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let made: serde_json::Value = serde_json::from_str(&body).unwrap();
    let made = made["token"].as_str().unwrap().to_string();
    assert_eq!(sql(&url, Some(&made), count).0, 0);
    let (status, _) = request(
        &http,
        "DELETE",
        "/api/tokens/made-remotely",
        &bearer(&reader),
        "",
    );
    assert_eq!(status, 403);
    let (status, body) = request(
        &http,
        "DELETE",
        "/api/tokens/made-remotely",
        &bearer(&admin),
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        sql(&url, Some(&made), count).0,
        2,
        "a revoked token still reads"
    );

    // The login page's POST sets an HttpOnly cookie that then admits.
    let login = format!(r#"{{"token": "{reader}"}}"#);
    let response = raw_response(&http, &format!(
        "POST /api/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{login}",
        http.trim_start_matches("http://"),
        login.len()
    ));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let cookie = response
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("no cookie in {response}"));
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let (status, _) = request(
        &http,
        "GET",
        "/api/runs",
        &format!("Cookie: {pair}\r\n"),
        "",
    );
    assert_eq!(status, 200);
    let wrong = r#"{"token": "slk_wrong"}"#;
    assert_eq!(request(&http, "POST", "/api/login", "", wrong).0, 401);

    // Revoked with the CLI: refused at the next request.
    let out = steplake(
        &[
            "token",
            "revoke",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--name",
            "notebook",
        ],
        None,
    );
    assert!(out.status.success());
    assert_eq!(sql(&url, Some(&reader), count).0, 2);
    let listed = steplake(
        &["token", "list", "--data-dir", dir.path().to_str().unwrap()],
        None,
    );
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listed.contains("cluster-p\twrite:p") && !listed.contains("notebook"),
        "{listed}"
    );
}

/// Starts `steplake serve ARGS`; returns its first stdout line (or "" if it
/// exited) and its stderr after it is stopped.
fn serve_once(data_dir: &Path, args: &[&str]) -> (String, String, Option<i32>) {
    let mut child = Command::new(binary())
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("STEPLAKE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let code = if line.is_empty() {
        child.wait().unwrap().code()
    } else {
        let _ = child.kill();
        let _ = child.wait();
        None
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (line, stderr, code)
}

#[test]
fn an_exposed_address_needs_tokens_or_an_explicit_insecure_flag() {
    let dir = tempfile::tempdir().unwrap();
    let exposed = ["--listen", "0.0.0.0:0", "--http", "off"];
    let (line, stderr, code) = serve_once(dir.path(), &exposed);
    assert_eq!(line, "", "it started: {line}");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("steplake token create") && stderr.contains("--insecure-no-auth"),
        "{stderr}"
    );
    // So does an exposed dashboard with a loopback gRPC port.
    let (line, _, code) = serve_once(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"],
    );
    assert_eq!((line.as_str(), code), ("", Some(2)));

    let mut insecure = exposed.to_vec();
    insecure.push("--insecure-no-auth");
    let (line, stderr, _) = serve_once(dir.path(), &insecure);
    assert!(line.contains("listening on"), "{line}{stderr}");
    assert!(stderr.contains("warning: --insecure-no-auth"), "{stderr}");

    // With a token it starts, and wants it.
    let token = create_token(dir.path(), "operator", "admin");
    let server = TestServer::start_on(dir.path(), "0.0.0.0:0", &[]);
    let url = server.url.replace("0.0.0.0", "127.0.0.1");
    assert_eq!(sql(&url, None, "SELECT 1").0, 2);
    assert_eq!(sql(&url, Some(&token), "SELECT 1").0, 0);
}

crate::e2e_test! {
    async fn revoking_a_token_stops_its_open_write_stream_at_the_next_batch() {
        use steplake_client::v1::{CreateRunRequest, ScalarBatch};
        use steplake_client::{Client, ConnectOptions};

        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let token = create_token(dir.path(), "trainer", "write:p");
        let options = ConnectOptions { token: Some(token), ca_cert_pem: None };
        let client = Client::connect_with(&server.url, &options).await.unwrap();
        client
            .create_run(CreateRunRequest { run_id: "r".into(), project: "p".into(), ..Default::default() })
            .await
            .unwrap();
        let batch = |step: i64| ScalarBatch {
            names: vec!["loss".into()],
            name_index: vec![0],
            steps: vec![step],
            values: vec![1.0],
            wall_times_us: vec![],
        };
        let mut writer = client.writer("r").await.unwrap();
        writer.send(batch(0)).await.unwrap();
        writer.send(batch(1)).await.unwrap();
        // Both acknowledged before the revocation: wait for them.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let admin = create_token(dir.path(), "operator", "admin");
        let reader = Client::connect_with(
            &server.url,
            &ConnectOptions { token: Some(admin), ca_cert_pem: None },
        )
        .await
        .unwrap();
        loop {
            let (_, batches) = reader.sql("SELECT count(*) AS n FROM scalars").await.unwrap();
            let n = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(batches[0].column(0)).value(0);
            if n == 2 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the first batches were not stored");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let out = steplake(
            &["token", "revoke", "--data-dir", dir.path().to_str().unwrap(), "--name", "trainer"],
            None,
        );
        assert!(out.status.success());
        let _ = writer.send(batch(2)).await;
        let error = writer.finish().await.expect_err("the stream goes on after the revocation");
        assert_eq!(error.code(), Some(tonic::Code::Unauthenticated), "{error}");
        let (_, batches) = reader.sql("SELECT count(*) AS n FROM scalars").await.unwrap();
        let n = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(batches[0].column(0)).value(0);
        assert_eq!(n, 2, "a batch after the revocation was stored");
    }
}
