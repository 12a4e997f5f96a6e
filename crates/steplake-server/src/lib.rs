//! steplake-server: the network edge of steplake.
//!
//! One gRPC port serves two services:
//! - `steplake.v1.Ingest` ([`ingest::IngestService`]): create/resume/finish
//!   runs and the bidirectional write stream, acknowledging each batch once
//!   the store has made it durable; standing conditions evaluated on each
//!   batch before it is logged, and the `Watch` stream of their events
//!   (`watch`, which also feeds `--alert-webhook`);
//! - Arrow Flight SQL ([`flight::FlightSqlServer`]): read-only SQL over the
//!   same DataFusion session ([`steplake_query::QueryEngine`]).
//!
//! A second address serves the web dashboard, its JSON API and `/metrics`
//! (steplake-http) over the same store and session.
//!
//! Every call passes the access check first ([`auth`], over
//! [`steplake_auth::Access`]): tokens unless the server is open. Both ports
//! speak TLS when given a certificate ([`ServerConfig::tls`]).
//!
//! Errors from the layers below become gRPC status codes in exactly one
//! place, [`status`]. [`Server::start`] opens the store, binds the port and
//! returns at once; [`Server::run_until`] serves until a shutdown signal,
//! then flushes the buffer to Parquet and releases the data directory.

mod auth;
pub mod flight;
mod idle;
pub mod ingest;
pub mod status;
mod watch;

#[cfg(test)]
#[global_allocator]
static ALLOCATOR: steplake_fuzz::CappedAllocator = steplake_fuzz::CappedAllocator;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use steplake_auth::{Access, AuthError, TokenRegistry};
pub use steplake_http::TlsIdentity;
use steplake_proto::v1::ingest_server::IngestServer;
pub use steplake_query::QueryOptions;
use steplake_query::{QueryEngine, QueryError};
use steplake_store::{Store, StoreError, StoreOptions};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;
use tonic::service::interceptor::InterceptedService;
pub use watch::{Webhook, WebhookError};

/// Default gRPC address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default largest accepted gRPC message.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Errors while starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be opened or recovered.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The SQL session could not be set up.
    #[error("{0}")]
    Query(#[from] QueryError),
    /// The address could not be bound.
    #[error(
        "cannot listen on {addr}: {source}; is another server using it? pick another with --listen"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The dashboard address could not be bound.
    #[error("cannot listen on {addr} for the dashboard: {source}; is another server using it? pick another with --http")]
    BindHttp {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The token file could not be read.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// A non-loopback address was asked for, no token exists, and the
    /// server was not made open to everyone.
    #[error("listening on {addr} lets anyone on the network in, and no token exists yet")]
    NeedsTokens {
        /// The exposed address.
        addr: SocketAddr,
    },
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
}

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The data directory.
    pub data_dir: PathBuf,
    /// gRPC address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Store tuning.
    pub store: StoreOptions,
    /// Largest accepted gRPC message, in bytes.
    pub max_message_bytes: usize,
    /// Dashboard address (`None`: no dashboard).
    pub http: Option<SocketAddr>,
    /// How queries run: memory, time and concurrency limits.
    pub query: QueryOptions,
    /// Host names the dashboard answers to besides its address and the
    /// loopback names (see [`steplake_http::Guard`]).
    pub http_hosts: Vec<String>,
    /// Admit everyone, on any address, tokens or not.
    pub insecure_no_auth: bool,
    /// Serve both ports over TLS with this certificate.
    pub tls: Option<TlsIdentity>,
    /// Run Flight SQL statements on the Ballista cluster whose scheduler is
    /// at this URL (`df://HOST:PORT`) instead of in this process. They see
    /// what the bucket's manifest lists: flushed points only. The dashboard
    /// still queries this process, buffer included.
    pub query_cluster: Option<String>,
    /// POST each event of a standing condition to this URL.
    pub alert_webhook: Option<Webhook>,
    /// Stop (flushing, as on a shutdown signal) once no client has had a
    /// connection open for this long; `None`: serve until the signal.
    pub exit_when_idle: Option<std::time::Duration>,
}

/// A started server: the store is open and the port bound.
pub struct Server {
    store: Arc<Store>,
    /// This process's engine: the dashboard's, and Flight SQL's unless a
    /// cluster runs those.
    engine: Arc<QueryEngine>,
    /// The engine Flight SQL statements run on.
    flight_engine: Arc<QueryEngine>,
    listener: TcpListener,
    max_message_bytes: usize,
    /// The dashboard's listener, when it has one.
    http: Option<TcpListener>,
    /// Extra host names the dashboard answers to.
    http_hosts: Vec<String>,
    access: Access,
    tls: Option<Tls>,
    alert_webhook: Option<Webhook>,
    exit_when_idle: Option<std::time::Duration>,
}

/// TLS for both ports, checked at start: the identity for gRPC and the
/// dashboard's acceptor built from it.
struct Tls {
    identity: TlsIdentity,
    acceptor: steplake_http::TlsAcceptor,
}

impl Server {
    /// Opens the store (running recovery) and binds the address.
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        let store_options = config.store.clone();
        let data_dir = config.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(data_dir, store_options))
            .await
            .map_err(|e| StoreError::Unavailable {
                reason: format!("recovery task failed: {e}"),
            })??;
        let store = Arc::new(store);
        let exposed = [Some(config.listen), config.http]
            .into_iter()
            .flatten()
            .find(|addr| !addr.ip().is_loopback());
        let access = Access::new(
            TokenRegistry::in_data_dir(&config.data_dir),
            exposed.is_some(),
            config.insecure_no_auth,
        )?;
        if let Some(addr) = exposed {
            if !config.insecure_no_auth && access.token_count()? == 0 {
                return Err(ServerError::NeedsTokens { addr });
            }
        }
        // Both ports check the pair now, not at the first connection.
        let tls = match config.tls {
            Some(identity) => Some(Tls {
                acceptor: identity.acceptor().map_err(ServerError::Tls)?,
                identity,
            }),
            None => None,
        };
        let engine = Arc::new(QueryEngine::with_options(store.clone(), config.query)?);
        let flight_engine = match &config.query_cluster {
            None => engine.clone(),
            Some(url) => {
                let ctx = steplake_cluster::cluster_context(url)
                    .await
                    .map_err(QueryError::Execution)?;
                Arc::new(steplake_cluster::cluster_engine(ctx, config.query)?)
            }
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let http = match config.http {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::BindHttp { addr, source })?,
            ),
            None => None,
        };
        Ok(Server {
            store,
            engine,
            flight_engine,
            listener,
            max_message_bytes: config.max_message_bytes,
            http,
            http_hosts: config.http_hosts,
            access,
            tls,
            alert_webhook: config.alert_webhook,
            exit_when_idle: config.exit_when_idle,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The dashboard's bound address, when it has one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Whether clients connect with TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The store this server writes to.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Serves until `shutdown` completes, then flushes and closes the store.
    /// `codec` describes the tensor codec for the dashboard's `/metrics`.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send,
        codec: &str,
    ) -> Result<(), ServerError> {
        // One shutdown signal for both servers.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let hosts = self.http_hosts.clone();
        let dashboard = self.http.map(|listener| {
            let mut guard = match listener.local_addr() {
                Ok(addr) => steplake_http::Guard::for_address(addr),
                Err(_) => steplake_http::Guard::for_address(SocketAddr::from(([127, 0, 0, 1], 0))),
            };
            for host in &hosts {
                guard = guard.allow_host(host);
            }
            let access = steplake_http::DashboardAccess {
                access: self.access.clone(),
                tls: self.tls.is_some(),
            };
            let router = steplake_http::Dashboard::new(
                self.engine.clone(),
                self.store.clone(),
                codec,
                access,
            )
            .router(guard);
            let acceptor = self.tls.as_ref().map(|tls| tls.acceptor.clone());
            let mut stopped = stopped.clone();
            tokio::spawn(steplake_http::serve(
                listener,
                router,
                acceptor,
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            ))
        });
        let activity = idle::Activity::new();
        let idle_limit = self.exit_when_idle;
        let idle = {
            let activity = activity.clone();
            async move {
                match idle_limit {
                    Some(limit) => activity.idle(limit).await,
                    None => std::future::pending().await,
                }
            }
        };
        let shutdown = async move {
            tokio::select! {
                _ = shutdown => {}
                _ = idle => {}
            }
            let _ = stop.send(true);
        };
        let watching = Arc::new(watch::Watching::new(
            self.store.clone(),
            self.engine.clone(),
            stopped.clone(),
        ));
        let webhook = self.alert_webhook.map(|webhook| {
            let subscription = watching.notifier.subscribe(None);
            tokio::spawn(webhook.deliver(self.store.clone(), subscription))
        });
        let limit = self.max_message_bytes;
        let ingest = IngestServer::new(ingest::IngestService::new(
            self.store.clone(),
            self.access.clone(),
            watching,
        ))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
        let ingest = InterceptedService::new(ingest, auth::IngestGate(self.access.clone()));
        let flight =
            FlightServiceServer::new(flight::FlightSqlServer::new(self.flight_engine.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(usize::MAX);
        let flight = InterceptedService::new(flight, auth::ReadGate(self.access.clone()));
        let mut builder = tonic::transport::Server::builder();
        if let Some(Tls { identity, .. }) = &self.tls {
            let identity =
                tonic::transport::Identity::from_pem(&identity.cert_pem, &identity.key_pem);
            builder = builder
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .map_err(|e| ServerError::Tls(e.to_string()))?;
        }
        // Small request/response RPCs (Flight SQL) would otherwise wait on
        // Nagle's algorithm and delayed ACKs for tens of milliseconds.
        let incoming = TcpListenerStream::new(self.listener).map(move |stream| {
            stream.map(|s| {
                let _ = s.set_nodelay(true);
                activity.track(s)
            })
        });
        let served = builder
            .add_service(ingest)
            .add_service(flight)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        if let Some(webhook) = webhook {
            // It stops at the shutdown signal, between two deliveries.
            let _ = webhook.await;
        }
        let store = self.store.clone();
        let closed = tokio::task::spawn_blocking(move || store.shutdown())
            .await
            .map_err(|e| StoreError::Unavailable {
                reason: format!("shutdown task failed: {e}"),
            })?;
        if let Some(dashboard) = dashboard {
            match dashboard.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "dashboard server failed"),
                Err(e) => tracing::warn!(error = %e, "dashboard task failed"),
            }
        }
        served?;
        closed?;
        Ok(())
    }
}
