//! API errors and the one place they become HTTP status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use steplake_query::QueryError;

/// Why an API request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter is missing or malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The query layer refused or failed.
    #[error("{0}")]
    Query(#[from] QueryError),
    /// No token, an unknown one, or one whose scope does not allow this.
    #[error("{0}")]
    Auth(steplake_auth::AuthError),
    /// The store refused or failed (deletions).
    #[error("{0}")]
    Store(steplake_store::StoreError),
}

impl ApiError {
    /// A bad-request error for parameter `name`.
    pub fn parameter(name: &str, problem: impl std::fmt::Display) -> ApiError {
        ApiError::BadRequest(format!("parameter {name:?}: {problem}"))
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Query(QueryError::Plan(_) | QueryError::TooComplex(_)) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Query(QueryError::Forbidden(_)) => StatusCode::FORBIDDEN,
            ApiError::Query(QueryError::Overloaded(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Query(QueryError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Query(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Auth(e) if e.is_unauthenticated() => StatusCode::UNAUTHORIZED,
            ApiError::Auth(
                steplake_auth::AuthError::Denied { .. }
                | steplake_auth::AuthError::NoSuchToken { .. },
            ) => StatusCode::FORBIDDEN,
            ApiError::Auth(
                steplake_auth::AuthError::InvalidName { .. }
                | steplake_auth::AuthError::InvalidScope { .. },
            ) => StatusCode::BAD_REQUEST,
            ApiError::Auth(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Store(steplake_store::StoreError::NothingToDelete { .. }) => {
                StatusCode::NOT_FOUND
            }
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = crate::json::Json(serde_json::json!({ "error": self.to_string() }));
        let mut response = (status, body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
