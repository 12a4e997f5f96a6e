//! JSON responses. (axum's own `Json` would turn on serde_json's
//! `raw_value` feature, and with it a rebuild of every crate that uses
//! serde_json, DataFusion included.)

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// A JSON response body.
pub struct Json(pub Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        (
            [(header::CONTENT_TYPE, "application/json")],
            self.0.to_string(),
        )
            .into_response()
    }
}
