//! TLS on both ports against the real binary, with certificates the test
//! makes itself (a throwaway CA and a server certificate for 127.0.0.1).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls;

use crate::harness::{steplake, TestServer};

/// PEM files of a test CA and of a certificate it signed for
/// `localhost` and `127.0.0.1`.
pub(crate) struct TestCerts {
    /// The CA's certificate (what clients trust).
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

/// Makes a CA and a server certificate in `dir`.
pub(crate) fn make_certs(dir: &Path) -> TestCerts {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "steplake test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let certs = TestCerts {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&certs.ca, ca.pem()).unwrap();
    std::fs::write(&certs.cert, cert.pem()).unwrap();
    std::fs::write(&certs.key, key.serialize_pem()).unwrap();
    certs
}

/// One HTTPS request trusting only `ca`; returns the whole response.
fn https(base: &str, ca: &Path, request: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = base.trim_start_matches("https://");
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, TcpStream::connect(host).unwrap());
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    // A server that closes without close_notify ends the read with an error
    // after the whole response.
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn the_cli_and_the_dashboard_speak_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let data = dir.path().join("data");
    let cert = certs.cert.to_str().unwrap();
    let key = certs.key.to_str().unwrap();
    let ca = certs.ca.to_str().unwrap();
    let server = TestServer::start(&data, &["--tls-cert", cert, "--tls-key", key]);
    assert!(server.url.starts_with("https://"));
    let http = server.http_url();
    assert!(http.starts_with("https://"), "{}", server.banner());

    // gRPC ingest and Flight SQL over TLS, trusting the test CA.
    let csv = "name,step,value\nloss,0,2.5\nloss,1,1.5\n";
    let out = steplake(
        &[
            "write",
            "--server",
            &server.url,
            "--ca-cert",
            ca,
            "--run",
            "tls",
            "-",
        ],
        Some(csv),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = steplake(
        &[
            "sql",
            "--server",
            &server.url,
            "--ca-cert",
            ca,
            "--format",
            "csv",
            "SELECT sum(value) AS s FROM scalars",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "s\n4.0\n");

    // Not without trusting the CA, and not in plain text.
    let untrusted = steplake(&["sql", "--server", &server.url, "SELECT 1"], None);
    assert!(!untrusted.status.success());
    let plain = server.url.replace("https://", "http://");
    let plain = steplake(&["sql", "--server", &plain, "SELECT 1"], None);
    assert!(!plain.status.success());

    // The dashboard over HTTPS; its login cookie is Secure.
    let host = http.trim_start_matches("https://");
    let response = https(
        &http,
        &certs.ca,
        &format!("GET /api/runs HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"tls\""), "{response}");
    let token = crate::auth::create_token(&data, "reader", "read");
    let login = format!(r#"{{"token": "{token}"}}"#);
    let response = https(
        &http,
        &certs.ca,
        &format!(
            "POST /api/login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{login}",
            login.len()
        ),
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("; Secure"), "{response}");
    // Plain HTTP to the HTTPS port gets no answer.
    let mut raw = TcpStream::connect(host).unwrap();
    raw.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_certificate_that_does_not_fit_its_key_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let other = tempfile::tempdir().unwrap();
    let other = make_certs(other.path());
    let out = steplake(
        &[
            "serve",
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            certs.cert.to_str().unwrap(),
            "--tls-key",
            other.key.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TLS:") && stderr.contains("--tls-key"),
        "{stderr}"
    );
    let out = steplake(
        &[
            "serve",
            "--data-dir",
            "x",
            "--tls-cert",
            certs.cert.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "--tls-cert without --tls-key started"
    );
}
