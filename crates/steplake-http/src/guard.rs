//! What every dashboard request must pass, and the headers every answer
//! carries.
//!
//! - **Host allowlist** (against DNS rebinding, where a page on a hostile
//!   name resolves that name to this server): the `Host` must be the
//!   address the dashboard is bound to, `localhost`, `127.0.0.1` or `[::1]`
//!   with its port, or a name added with [`Guard::allow_host`]. Anything
//!   else gets 421 and the reason.
//! - **POST only as JSON from this origin** (against cross-site requests):
//!   a `POST` must say `Content-Type: application/json`, which a page on
//!   another origin cannot send without a CORS preflight that this server
//!   never answers, and an `Origin` header, when present, must name an
//!   allowed host. There are no CORS headers at all.
//! - **Security headers**: a Content-Security-Policy that allows only this
//!   origin's script and styles and no framing, `X-Content-Type-Options:
//!   nosniff`, `X-Frame-Options: DENY` and `Referrer-Policy: no-referrer`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The hosts a dashboard answers to.
#[derive(Debug, Clone)]
pub struct Guard {
    allowed: Arc<Vec<String>>,
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

impl Guard {
    /// Answers to `addr` (the bound address) and to the loopback names with
    /// its port.
    pub fn for_address(addr: SocketAddr) -> Guard {
        let port = addr.port();
        let mut allowed = vec![
            addr.to_string(),
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ];
        if port == 80 {
            allowed.extend(["localhost".into(), "127.0.0.1".into(), "[::1]".into()]);
        }
        Guard {
            allowed: Arc::new(allowed),
        }
    }

    /// Also answers to `host` (a name, or `name:port`), e.g. the name
    /// analysts reach the server by.
    pub fn allow_host(mut self, host: &str) -> Guard {
        Arc::make_mut(&mut self.allowed).push(host.to_ascii_lowercase());
        self
    }

    fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.allowed.contains(&host)
    }

    /// Why `request` is refused, if it is.
    fn refusal(&self, request: &Request) -> Option<(StatusCode, String)> {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| request.uri().authority().map(|a| a.to_string()));
        match host {
            Some(host) if self.allows(&host) => {}
            Some(host) => {
                return Some((
                    StatusCode::MISDIRECTED_REQUEST,
                    format!("this server does not answer to the host {host:?}; reach it by its address, or start it with --http-host {host}"),
                ))
            }
            None => {
                return Some((
                    StatusCode::BAD_REQUEST,
                    "the request names no host".into(),
                ))
            }
        }
        if request.method() != Method::POST {
            return None;
        }
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if !json {
            return Some((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send POST requests as Content-Type: application/json".into(),
            ));
        }
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        if let Some(origin) = origin {
            let host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .unwrap_or(origin);
            if !self.allows(host) {
                return Some((
                    StatusCode::FORBIDDEN,
                    format!("requests from the page at {origin} are not accepted; use the dashboard this server serves"),
                ));
            }
        }
        None
    }
}

/// The middleware: refuses what the guard refuses, and adds the security
/// headers to every answer.
pub(crate) async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let mut response = match guard.refusal(&request) {
        Some((status, reason)) => {
            let body = crate::json::Json(serde_json::json!({ "error": reason }));
            (status, body).into_response()
        }
        None => next.run(request).await,
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
