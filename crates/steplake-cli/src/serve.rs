//! `steplake serve`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use steplake_codec::{Codec, GpuMode};
use steplake_http::DEFAULT_HTTP;
use steplake_server::{
    QueryOptions, Server, ServerConfig, ServerError, TlsIdentity, Webhook, DEFAULT_LISTEN,
    DEFAULT_MAX_MESSAGE_BYTES,
};
use steplake_store::{CompactionPolicy, FsyncPolicy, ManifestPolicy, StoreError, StoreOptions};

use crate::CliError;

/// Flags of `steplake serve`.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Where data lives (created if missing).
    #[arg(long, env = "STEPLAKE_DATA_DIR", default_value = "./steplake-data")]
    data_dir: PathBuf,
    /// gRPC address for ingest and Flight SQL (port 0 picks a free port).
    #[arg(long, env = "STEPLAKE_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// When the WAL is fsynced before an ack: always, batch (group commit) or off.
    #[arg(long, env = "STEPLAKE_FSYNC", default_value = "batch")]
    fsync: FsyncPolicy,
    /// Keep flushed Parquet files and the manifest in this bucket prefix
    /// (s3://bucket/prefix, gs://bucket/prefix, az://container/prefix)
    /// instead of the data directory, which keeps the WAL. Credentials,
    /// region and endpoint come from AWS_* (GOOGLE_*, AZURE_*) variables.
    #[arg(long, env = "STEPLAKE_OBJECT_STORE")]
    object_store: Option<String>,
    /// Run Flight SQL queries on a Ballista cluster: the URL (df://HOST:PORT)
    /// of a `steplake scheduler` over the same --object-store. They see the
    /// flushed points only (acknowledged points within --flush-secs); the
    /// dashboard keeps querying this server, buffer included.
    #[arg(long, env = "STEPLAKE_QUERY_CLUSTER", requires = "object_store")]
    query_cluster: Option<String>,
    /// POST every event of a standing condition as JSON to this http(s)
    /// URL, in order, retrying until the receiver takes it; a restart
    /// resumes after the last event delivered.
    #[arg(long, env = "STEPLAKE_ALERT_WEBHOOK", value_parser = parse_webhook)]
    alert_webhook: Option<Webhook>,
    /// Merge small data files once this many in a row are waiting (0: never).
    #[arg(long, env = "STEPLAKE_COMPACT_MIN_FILES", default_value_t = CompactionPolicy::default().min_files)]
    compact_min_files: usize,
    /// Size a merged data file grows to at most, e.g. 256MiB; larger files
    /// are left alone.
    #[arg(long, env = "STEPLAKE_COMPACT_TARGET", default_value = "256MiB", value_parser = parse_size)]
    compact_target: usize,
    /// Write the whole manifest as a checkpoint after at most this many
    /// changes (sooner once they outweigh it); start-up reads the last
    /// checkpoint and the changes after it.
    #[arg(long, env = "STEPLAKE_MANIFEST_CHECKPOINT_EVERY", default_value_t = ManifestPolicy::default().checkpoint_every, value_parser = clap::value_parser!(u64).range(1..))]
    manifest_checkpoint_every: u64,
    /// Flush the in-memory buffer to Parquet once it holds this many points.
    #[arg(long, env = "STEPLAKE_FLUSH_ROWS", default_value_t = StoreOptions::default().flush_rows)]
    flush_rows: usize,
    /// Flush the buffer once its oldest point is this many seconds old.
    #[arg(long, env = "STEPLAKE_FLUSH_SECS", default_value_t = 60)]
    flush_secs: u64,
    /// Bytes of tensors still arriving in chunks the server holds at most,
    /// e.g. 4GiB; a chunk past it is refused (RESOURCE_EXHAUSTED).
    #[arg(long, env = "STEPLAKE_MAX_PARTIAL_TENSOR_BYTES", default_value = "4GiB", value_parser = parse_size)]
    max_partial_tensor_bytes: usize,
    /// Seconds after its first chunk a tensor may stay incomplete before it
    /// is dropped.
    #[arg(long, env = "STEPLAKE_MAX_PARTIAL_TENSOR_SECS", default_value_t = 3600)]
    max_partial_tensor_secs: u64,
    /// Stop, flushing as on SIGTERM, once no client has been connected for
    /// this many seconds (0: never; the local server `steplake.init()`
    /// starts uses it).
    #[arg(long, env = "STEPLAKE_EXIT_WHEN_IDLE", default_value_t = 0)]
    exit_when_idle: u64,
    /// Largest accepted gRPC message in bytes.
    #[arg(long, env = "STEPLAKE_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Dashboard, JSON API and /metrics address; `off` serves none.
    #[arg(long, env = "STEPLAKE_HTTP", default_value = DEFAULT_HTTP, value_parser = parse_http)]
    http: HttpAddress,
    /// Compress tensors on a GPU: auto (when the CUDA driver and a GPU are
    /// found), on (fail at start without one) or off.
    #[arg(long, env = "STEPLAKE_GPU", default_value = "auto")]
    gpu: GpuMode,
    /// Device memory the GPU codec may use, e.g. 4GiB or 512MiB; larger
    /// tensors are coded on the CPU.
    #[arg(long, env = "STEPLAKE_GPU_MEMORY", default_value = "4GiB", value_parser = parse_size)]
    gpu_memory: usize,
    /// Memory all running queries may hold together (joins, sorts,
    /// aggregations), e.g. 8GiB; past it they spill to disk where they can,
    /// or fail with RESOURCE_EXHAUSTED. Default: half of the machine's memory.
    #[arg(long, env = "STEPLAKE_QUERY_MEMORY", value_parser = parse_size)]
    query_memory: Option<usize>,
    /// Seconds a query may run before it is stopped (0: no limit).
    #[arg(long, env = "STEPLAKE_QUERY_TIMEOUT", default_value_t = 300)]
    query_timeout: u64,
    /// Queries running at once; more wait for a turn (until their timeout).
    #[arg(long, env = "STEPLAKE_MAX_CONCURRENT_QUERIES", default_value_t = 16)]
    max_concurrent_queries: usize,
    /// A host name the dashboard answers to besides its address and
    /// localhost (e.g. the name analysts reach this server by); repeatable.
    #[arg(long = "http-host", value_name = "NAME")]
    http_hosts: Vec<String>,
    /// Admit everyone without a token, even on a non-loopback address.
    /// Anyone who can reach the ports can then read and write every run.
    #[arg(long, env = "STEPLAKE_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
    /// PEM certificate chain: serve both ports over TLS (with --tls-key).
    #[arg(long, env = "STEPLAKE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "STEPLAKE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// The certificate and key of `--tls-cert`/`--tls-key`, if given.
fn tls_identity(args: &ServeArgs) -> Result<Option<TlsIdentity>, CliError> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let read = |flag: &str, path: &PathBuf| {
        std::fs::read(path).map_err(|e| CliError::Input(format!("{flag} {}: {e}", path.display())))
    };
    Ok(Some(TlsIdentity {
        cert_pem: read("--tls-cert", cert)?,
        key_pem: read("--tls-key", key)?,
    }))
}

/// `--http`: an address, or `off`.
#[derive(Debug, Clone, Copy)]
struct HttpAddress(Option<SocketAddr>);

fn parse_http(text: &str) -> Result<HttpAddress, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(HttpAddress(None));
    }
    text.parse()
        .map(|addr| HttpAddress(Some(addr)))
        .map_err(|e| format!("{text:?} is not an address like 127.0.0.1:8080 (or off): {e}"))
}

/// Parses a byte size: a number with an optional K/M/G (powers of 1000) or
/// KiB/MiB/GiB (powers of 1024) suffix.
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: usize = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size: write e.g. 4GiB, 512MiB or 1000000"))?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?}: use KiB, MiB or GiB")),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

fn parse_webhook(text: &str) -> Result<Webhook, String> {
    Webhook::parse(text).map_err(|e| e.to_string())
}

/// Starts the server and serves until SIGINT or SIGTERM, then flushes and exits.
pub(crate) async fn run(args: ServeArgs) -> Result<(), CliError> {
    // Before any port opens: a SIGTERM that arrives the moment the listening
    // line is out must reach our handler (and flush), not kill the process.
    let shutdown = ShutdownSignal::install()
        .map_err(|e| CliError::Failure(format!("cannot install the signal handlers: {e}")))?;
    let codec = Codec::select(args.gpu, args.gpu_memory).map_err(|e| {
        CliError::Failure(format!(
            "--gpu {}: {e}; start with --gpu off (or auto) to code tensors on the CPU",
            args.gpu
        ))
    })?;
    let codec_description = codec.describe();
    let config = ServerConfig {
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        store: StoreOptions {
            fsync: args.fsync,
            flush_rows: args.flush_rows.max(1),
            flush_interval: Duration::from_secs(args.flush_secs.max(1)),
            codec,
            max_partial_tensor_bytes: args.max_partial_tensor_bytes as u64,
            max_partial_tensor_age: Duration::from_secs(args.max_partial_tensor_secs),
            object_store: args.object_store.clone(),
            compaction: CompactionPolicy {
                min_files: args.compact_min_files,
                target_bytes: args.compact_target as u64,
            },
            manifest: ManifestPolicy {
                checkpoint_every: args.manifest_checkpoint_every,
                ..ManifestPolicy::default()
            },
            ..StoreOptions::default()
        },
        max_message_bytes: args.max_message_bytes,
        http: args.http.0,
        query: QueryOptions {
            memory_bytes: args
                .query_memory
                .unwrap_or(QueryOptions::default().memory_bytes),
            timeout: (args.query_timeout > 0).then(|| Duration::from_secs(args.query_timeout)),
            max_concurrent: args.max_concurrent_queries.max(1),
            ..QueryOptions::default()
        },
        http_hosts: args.http_hosts.clone(),
        insecure_no_auth: args.insecure_no_auth,
        tls: tls_identity(&args)?,
        query_cluster: args.query_cluster.clone(),
        alert_webhook: args.alert_webhook.clone(),
        exit_when_idle: (args.exit_when_idle > 0).then(|| Duration::from_secs(args.exit_when_idle)),
    };
    let server = Server::start(config).await.map_err(|e| match e {
        ServerError::Store(StoreError::Locked { .. }) => {
            CliError::Failure(format!("{e}; stop it, or use another --data-dir"))
        }
        ServerError::Store(StoreError::ManifestMissing { ref dir, .. }) => {
            CliError::Failure(format!(
                "{e}, or rebuild it from the data files with `steplake repair --data-dir {}`",
                dir.display()
            ))
        }
        ServerError::Store(StoreError::Corrupt { .. }) => CliError::Failure(format!(
            "{e}. `steplake check --data-dir {}` lists every damaged file",
            args.data_dir.display()
        )),
        ServerError::NeedsTokens { .. } => CliError::Input(format!(
            "{e}: create one first with `steplake token create --data-dir {} --name admin --scope admin`, \
             listen on 127.0.0.1, or (on a network you trust) pass --insecure-no-auth",
            args.data_dir.display()
        )),
        ServerError::Tls(_) => CliError::Input(format!("{e} (--tls-cert, --tls-key)")),
        other => CliError::Failure(other.to_string()),
    })?;
    let addr = server
        .local_addr()
        .map_err(|e| CliError::Failure(format!("cannot read the bound address: {e}")))?;
    let scheme = if server.uses_tls() { "https" } else { "http" };
    let dashboard = match server.http_addr() {
        Some(http) => format!("dashboard {scheme}://{http}/"),
        None => "no dashboard".to_string(),
    };
    if args.insecure_no_auth {
        eprintln!(
            "warning: --insecure-no-auth: no token is checked; anyone who can reach {addr}{} can read and write every run",
            server.http_addr().map(|h| format!(" or {h}")).unwrap_or_default()
        );
    }
    let files_in = args
        .object_store
        .as_ref()
        .map(|url| format!(", files in {url}"))
        .unwrap_or_default();
    let files_in = match &args.query_cluster {
        Some(cluster) => format!("{files_in}, Flight SQL on the cluster at {cluster}"),
        None => files_in,
    };
    println!(
        "steplake listening on {addr} (data dir {}{files_in}, {dashboard}, tensor codec: {codec_description})",
        args.data_dir.display()
    );
    let _ = std::io::stdout().flush();
    server
        .run_until(shutdown.received(), &codec_description)
        .await
        .map_err(|e| CliError::Failure(e.to_string()))?;
    tracing::info!("flushed and stopped");
    Ok(())
}

/// SIGINT and SIGTERM, registered with the OS when installed (tokio's
/// `ctrl_c()` would register only at its first poll, too late for a signal
/// sent right after start).
struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(ShutdownSignal {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignal {})
    }

    /// Completes at the first SIGINT or SIGTERM.
    async fn received(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: flushing the buffer to Parquet");
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_and_without_units() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1000000"), Ok(1_000_000));
        assert_eq!(parse_size("2G"), Ok(2_000_000_000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err_and(|e| e.contains("unknown size unit")));
    }
}
