//! steplake-http: the web dashboard, on its own address (`--http`).
//!
//! It owns three things, all read-only:
//! - the page ([`assets`]): plain JavaScript modules and uPlot from `web/`,
//!   bundled by build.rs with npm and embedded in the binary;
//! - the JSON API the page uses ([`api`]): runs, series names, series over a
//!   step range downsampled to the chart's width (min, max and last per
//!   bucket, so no spike is lost), spike and changepoint markers, emergence
//!   steps, a series' predicted course ([`prediction`]), new points as they
//!   arrive (`live`), tensor statistics, and a SQL box. Every request becomes a SQL
//!   statement on the same [`QueryEngine`] as Flight SQL, which refuses
//!   anything that would change data;
//! - `/metrics` in Prometheus text ([`metrics`]).
//!
//! Data flows: browser → [`Guard`] (allowed hosts, same-origin JSON POSTs,
//! security headers) → tokens ([`access`]: read for the API, admin for
//! `/api/tokens`, a login that sets a cookie) → axum handler → SQL → DataFusion (Parquet files and
//! the store's buffer) → JSON. Errors become HTTP status codes in one place,
//! [`error::ApiError`].

pub mod access;
pub mod api;
mod assets;
mod columns;
mod deletion;
pub mod error;
mod export;
mod guard;
mod json;
mod live;
pub mod metrics;
mod prediction;
mod tls;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{FromRef, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use steplake_query::QueryEngine;
use steplake_store::Store;
use tokio::net::TcpListener;
use tower_http::compression::{CompressionLayer, CompressionLevel};

pub use access::DashboardAccess;
pub use guard::Guard;
pub use tls::TlsIdentity;
pub use tokio_rustls::TlsAcceptor;

/// Default dashboard address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";

/// What the handlers share.
#[derive(Clone)]
pub struct Dashboard {
    engine: Arc<QueryEngine>,
    store: Arc<Store>,
    /// The tensor codec in use, for `/metrics`.
    codec: Arc<str>,
    api_requests: Arc<AtomicU64>,
    access: DashboardAccess,
}

impl FromRef<Dashboard> for DashboardAccess {
    fn from_ref(dashboard: &Dashboard) -> DashboardAccess {
        dashboard.access.clone()
    }
}

impl Dashboard {
    /// A dashboard over `engine` and `store`, admitting requests by
    /// `access`; `codec` describes the tensor codec in use.
    pub fn new(
        engine: Arc<QueryEngine>,
        store: Arc<Store>,
        codec: &str,
        access: DashboardAccess,
    ) -> Self {
        Dashboard {
            engine,
            store,
            codec: codec.into(),
            api_requests: Arc::new(AtomicU64::new(0)),
            access,
        }
    }

    /// The routes: the page, `/api/…` and `/metrics`, behind `guard`
    /// (allowed hosts, POST only as same-origin JSON, security headers) and
    /// then tokens ([`access`]).
    pub fn router(self, guard: Guard) -> Router {
        let api = Router::new()
            .route("/runs", get(api::runs))
            .route("/runs/{run}", delete(deletion::delete_run))
            .route("/projects/{project}", delete(deletion::delete_project))
            .route("/names", get(api::names))
            .route("/series", get(api::series))
            .route("/live", get(live::live))
            .route("/export.csv", get(export::export_csv))
            .route("/markers", get(api::markers))
            .route("/events", get(api::events))
            .route("/emergence", get(api::emergence))
            .route("/prediction", get(prediction::prediction))
            .route("/tensor_names", get(api::tensor_names))
            .route("/tensor_stats", get(api::tensor_stats))
            .route("/sql", post(api::sql))
            .route("/login", post(access::login))
            .route("/logout", post(access::logout))
            .route(
                "/tokens",
                get(access::list_tokens).post(access::create_token),
            )
            .route("/tokens/{name}", delete(access::revoke_token))
            .layer(middleware::from_fn_with_state(self.clone(), count_request));
        let tokens = self.access.clone();
        Router::new()
            .route("/", get(assets::index))
            .route("/app.js", get(assets::app_js))
            .route("/app.css", get(assets::app_css))
            .route("/metrics", get(metrics::metrics))
            .nest("/api", api)
            .with_state(self)
            .layer(middleware::from_fn_with_state(
                tokens,
                access::require_token,
            ))
            .layer(middleware::from_fn_with_state(guard, guard::guard))
            // Responses in gzip when the browser takes it (JSON shrinks
            // about fourfold; server-sent events stay as they are, so each
            // arrives at once), at the fastest level: the CPU is shared
            // with ingest.
            .layer(CompressionLayer::new().quality(CompressionLevel::Fastest))
    }
}

async fn count_request(
    State(dashboard): State<Dashboard>,
    request: Request,
    next: Next,
) -> Response {
    dashboard.api_requests.fetch_add(1, Ordering::Relaxed);
    next.run(request).await
}

/// Serves `router` on `listener` until `shutdown` completes, over TLS
/// when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        Some(acceptor) => {
            axum::serve(tls::TlsListener::new(listener, acceptor)?, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}
