//! Tokens on the dashboard: who may see the API, and how a browser logs in.
//!
//! - The page itself (`/`, `/app.js`, `/app.css`) holds no data and is
//!   served to anyone, so that it can show the login form.
//! - `/api/…` and `/metrics` need a token that may read, sent as
//!   `Authorization: Bearer <token>` (scripts, Prometheus) or as the
//!   `steplake_token` cookie that `POST /api/login {"token": …}` sets
//!   (HttpOnly, so page scripts never see it; SameSite=Strict, so other
//!   sites' pages cannot send it; Secure over TLS).
//! - `/api/tokens` (list, create, revoke) needs an admin token.
//!
//! A 401 answer carries `WWW-Authenticate: Bearer`; the page answers it
//! with its login form.

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use steplake_auth::{Access, Action, AuthError, Scope};

use crate::error::ApiError;
use crate::json::Json;

/// The cookie that carries a browser's token.
const COOKIE: &str = "steplake_token";

/// What the dashboard's handlers need to check tokens.
#[derive(Debug, Clone)]
pub struct DashboardAccess {
    /// The server's access control.
    pub access: Access,
    /// Whether the dashboard is served over TLS (cookies are then `Secure`).
    pub tls: bool,
}

/// What a request to `path` with `method` needs, if anything.
fn needed(method: &Method, path: &str) -> Option<Action<'static>> {
    match path {
        "/" | "/app.js" | "/app.css" | "/api/login" | "/api/logout" => None,
        _ if path == "/api/tokens" || path.starts_with("/api/tokens/") => Some(Action::Admin),
        // Deleting data.
        _ if method == Method::DELETE => Some(Action::Admin),
        _ if path.starts_with("/api/") || path == "/metrics" => Some(Action::Read),
        // Unknown paths answer 404 either way.
        _ if method == Method::GET => None,
        _ => Some(Action::Read),
    }
}

/// The token a request carries: its `Authorization` header, else its cookie.
fn authorization(request: &Request) -> Option<String> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        return Some(value.to_str().unwrap_or("").to_string());
    }
    cookie_token(request).map(|token| format!("Bearer {token}"))
}

fn cookie_token(request: &Request) -> Option<String> {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// The middleware: refuses a request without the token it needs.
pub(crate) async fn require_token(
    State(access): State<DashboardAccess>,
    request: Request,
    next: Next,
) -> Response {
    let Some(action) = needed(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    match access
        .access
        .check(authorization(&request).as_deref(), action)
    {
        Ok(_) => next.run(request).await,
        Err(error) => ApiError::Auth(error).into_response(),
    }
}

fn cookie(value: &str, max_age: Option<u64>, tls: bool) -> Result<HeaderValue, ApiError> {
    let mut text = format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/");
    if let Some(seconds) = max_age {
        text.push_str(&format!("; Max-Age={seconds}"));
    }
    if tls {
        text.push_str("; Secure");
    }
    HeaderValue::from_str(&text).map_err(|_| ApiError::Auth(AuthError::Malformed))
}

fn field<'a>(body: &'a Value, name: &str, example: &str) -> Result<&'a str, ApiError> {
    body.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest(format!("send JSON with {name:?}: {example}")))
}

/// `POST /api/login` with `{"token": …}`: checks that the token may read,
/// then sets the cookie.
pub(crate) async fn login(
    State(access): State<DashboardAccess>,
    body: String,
) -> Result<Response, ApiError> {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let token = field(&body, "token", r#"{"token": "slk_..."}"#)?;
    // A value that is not a plain token could smuggle cookie attributes.
    if !token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ApiError::Auth(AuthError::Unknown));
    }
    let principal = access
        .access
        .check(Some(&format!("Bearer {token}")), Action::Read)
        .map_err(ApiError::Auth)?;
    let name = match principal {
        steplake_auth::Principal::Token { name, .. } => Value::String(name),
        steplake_auth::Principal::Open => Value::Null,
    };
    let mut response = Json(json!({ "token": name })).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(token, None, access.tls)?);
    Ok(response)
}

/// `POST /api/logout`: clears the cookie.
pub(crate) async fn logout(State(access): State<DashboardAccess>) -> Result<Response, ApiError> {
    let mut response = Json(json!({})).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie("", Some(0), access.tls)?);
    Ok(response)
}

/// `GET /api/tokens`: every token's name, scope and creation time.
pub(crate) async fn list_tokens(State(access): State<DashboardAccess>) -> Result<Json, ApiError> {
    let tokens = access.access.registry().list().map_err(ApiError::Auth)?;
    let rows: Vec<Value> = tokens
        .into_iter()
        .map(|t| json!({ "name": t.name, "scope": t.scope.to_string(), "created": t.created }))
        .collect();
    Ok(Json(json!({ "tokens": rows })))
}

/// `POST /api/tokens` with `{"name": …, "scope": …}`: creates a token and
/// answers it, once.
pub(crate) async fn create_token(
    State(access): State<DashboardAccess>,
    body: String,
) -> Result<(StatusCode, Json), ApiError> {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let example = r#"{"name": "cluster", "scope": "write:PROJECT"}"#;
    let name = field(&body, "name", example)?;
    let scope: Scope = field(&body, "scope", example)?
        .parse()
        .map_err(ApiError::Auth)?;
    let (token, record) = access
        .access
        .registry()
        .create(name, scope)
        .map_err(ApiError::Auth)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": record.name, "scope": record.scope.to_string(), "token": token })),
    ))
}

/// `DELETE /api/tokens/{name}`: revokes a token.
pub(crate) async fn revoke_token(
    State(access): State<DashboardAccess>,
    Path(name): Path<String>,
) -> Result<Json, ApiError> {
    let record = access
        .access
        .registry()
        .revoke(&name)
        .map_err(ApiError::Auth)?;
    Ok(Json(json!({ "revoked": record.name })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_page_and_login_are_open() {
        assert_eq!(needed(&Method::GET, "/"), None);
        assert_eq!(needed(&Method::POST, "/api/login"), None);
        assert_eq!(needed(&Method::GET, "/api/runs"), Some(Action::Read));
        assert_eq!(needed(&Method::POST, "/api/sql"), Some(Action::Read));
        assert_eq!(needed(&Method::GET, "/metrics"), Some(Action::Read));
        assert_eq!(
            needed(&Method::DELETE, "/api/tokens/x"),
            Some(Action::Admin)
        );
        assert_eq!(needed(&Method::GET, "/api/tokens"), Some(Action::Admin));
        assert_eq!(needed(&Method::GET, "/api/runs"), Some(Action::Read));
        assert_eq!(needed(&Method::DELETE, "/api/runs/r"), Some(Action::Admin));
        assert_eq!(
            needed(&Method::DELETE, "/api/projects/p"),
            Some(Action::Admin)
        );
    }
}
