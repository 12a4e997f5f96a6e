//! `steplake serve`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use steplake_server::{Server, ServerConfig, DEFAULT_LISTEN, DEFAULT_MAX_MESSAGE_BYTES};
use steplake_store::{FsyncPolicy, StoreOptions};

use crate::CliError;

/// Flags of `steplake serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Where data lives (created if missing).
    #[arg(long, env = "STEPLAKE_DATA_DIR", default_value = "./steplake-data")]
    data_dir: PathBuf,
    /// gRPC address for ingest and Flight SQL (port 0 picks a free port).
    #[arg(long, env = "STEPLAKE_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// When the WAL is fsynced before an ack: always, batch (group commit) or off.
    #[arg(long, env = "STEPLAKE_FSYNC", default_value = "batch")]
    fsync: FsyncPolicy,
    /// Flush the in-memory buffer to Parquet once it holds this many points.
    #[arg(long, env = "STEPLAKE_FLUSH_ROWS", default_value_t = StoreOptions::default().flush_rows)]
    flush_rows: usize,
    /// Flush the buffer once its oldest point is this many seconds old.
    #[arg(long, env = "STEPLAKE_FLUSH_SECS", default_value_t = 60)]
    flush_secs: u64,
    /// Largest accepted gRPC message in bytes.
    #[arg(long, env = "STEPLAKE_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
}

/// Starts the server and serves until SIGINT or SIGTERM, then flushes and exits.
pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    let config = ServerConfig {
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        store: StoreOptions {
            fsync: args.fsync,
            flush_rows: args.flush_rows.max(1),
            flush_interval: Duration::from_secs(args.flush_secs.max(1)),
            ..StoreOptions::default()
        },
        max_message_bytes: args.max_message_bytes,
    };
    let server = Server::start(config)
        .await
        .map_err(|e| CliError::Failure(e.to_string()))?;
    let addr = server
        .local_addr()
        .map_err(|e| CliError::Failure(format!("cannot read the bound address: {e}")))?;
    println!(
        "steplake listening on {addr} (data dir {})",
        args.data_dir.display()
    );
    let _ = std::io::stdout().flush();
    server
        .run_until(shutdown_signal())
        .await
        .map_err(|e| CliError::Failure(e.to_string()))?;
    tracing::info!("flushed and stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: flushing the buffer to Parquet");
}
