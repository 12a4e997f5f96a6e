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
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = crate::json::Json(serde_json::json!({ "error": self.to_string() }));
        (self.status(), body).into_response()
    }
}
