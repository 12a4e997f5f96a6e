//! The page: `web/` built by build.rs (npm: uPlot and our modules bundled by
//! esbuild) and embedded in the binary.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!(concat!(env!("OUT_DIR"), "/web/dist/index.html"));
const APP_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/web/dist/app.js"));
const APP_CSS: &str = include_str!(concat!(env!("OUT_DIR"), "/web/dist/app.css"));

/// `GET /`.
pub(crate) async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX)
}

/// `GET /app.js`.
pub(crate) async fn app_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
}

/// `GET /app.css`.
pub(crate) async fn app_css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS)
}
