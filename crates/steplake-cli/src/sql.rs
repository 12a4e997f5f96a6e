//! `steplake sql`: read-only SQL against a server (Flight SQL), a data
//! directory, a bucket prefix, or a Ballista cluster.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use steplake_client::DEFAULT_SERVER;
use steplake_query::{QueryEngine, QueryError, QueryOptions};
use steplake_store::{Store, StoreError};

use crate::connect::ConnectArgs;
use crate::output::{print, OutputFormat};
use crate::CliError;

/// Flags of `steplake sql`.
#[derive(Args)]
pub(crate) struct SqlArgs {
    /// Server URL (Flight SQL): http://HOST:PORT, or https:// with TLS.
    #[arg(long, env = "STEPLAKE_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Query a data directory directly instead of a server (no server may hold it).
    #[arg(long, conflicts_with_all = ["server", "object_store"])]
    data_dir: Option<PathBuf>,
    /// Query a bucket prefix a server flushes to (s3://bucket/prefix, gs://…,
    /// az://…) directly, with no server: what its manifest lists, without the
    /// server's unflushed points. Credentials from AWS_* (GOOGLE_*, AZURE_*).
    #[arg(long, conflicts_with = "server")]
    object_store: Option<String>,
    /// Run the query on a Ballista cluster: the URL (df://HOST:PORT) of a
    /// `steplake scheduler`. It reads what the scheduler's bucket manifest
    /// lists, without any server's unflushed points.
    #[arg(long, conflicts_with_all = ["server", "data_dir", "object_store"])]
    cluster: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: OutputFormat,
    /// The SQL statement; read from stdin when absent or `-`.
    sql: Option<String>,
}

fn read_sql(arg: Option<String>) -> Result<String, CliError> {
    let sql = match arg {
        Some(s) if s != "-" => s,
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| CliError::Input(format!("cannot read SQL from stdin: {e}")))?;
            s
        }
    };
    if sql.trim().is_empty() {
        return Err(CliError::Input(
            "no SQL given: pass it as an argument or on stdin".into(),
        ));
    }
    Ok(sql)
}

/// Runs the query and prints the result.
pub(crate) async fn run(args: SqlArgs) -> Result<(), CliError> {
    let sql = read_sql(args.sql)?;
    let (schema, batches) = match (&args.cluster, &args.data_dir, &args.object_store) {
        (Some(url), _, _) => query_cluster(url, &sql).await?,
        (None, Some(dir), _) => {
            let dir = dir.clone();
            query_store(move || Store::open_read_only(dir), &sql).await?
        }
        (None, None, Some(url)) => {
            let url = url.clone();
            query_store(move || Store::open_bucket_read_only(&url), &sql).await?
        }
        (None, None, None) => args.connect.connect(&args.server).await?.sql(&sql).await?,
    };
    print(args.format, &schema, &batches)
}

/// Runs `sql` on the store `open` opens read-only.
async fn query_store(
    open: impl FnOnce() -> Result<Store, StoreError> + Send + 'static,
    sql: &str,
) -> Result<(arrow::datatypes::SchemaRef, Vec<arrow::array::RecordBatch>), CliError> {
    let store = tokio::task::spawn_blocking(open)
        .await
        .map_err(|e| CliError::Failure(e.to_string()))?
        .map_err(|e| match e {
            StoreError::Locked { .. } => CliError::Failure(format!(
                "{e}\nA server holds this directory: query it with --server instead"
            )),
            other @ StoreError::Io { .. } => {
                CliError::Failure(format!("{other}; check --data-dir"))
            }
            other => CliError::Failure(other.to_string()),
        })?;
    let engine = QueryEngine::new(Arc::new(store)).map_err(|e| CliError::Failure(e.to_string()))?;
    engine.sql_collect(sql).await.map_err(query_error)
}

/// Runs `sql` on the Ballista cluster whose scheduler is at `url`.
async fn query_cluster(
    url: &str,
    sql: &str,
) -> Result<(arrow::datatypes::SchemaRef, Vec<arrow::array::RecordBatch>), CliError> {
    let ctx = steplake_cluster::cluster_context(url)
        .await
        .map_err(|e| CliError::Failure(format!("cannot reach the cluster at {url}: {e}")))?;
    let engine = steplake_cluster::cluster_engine(ctx, QueryOptions::default())
        .map_err(|e| CliError::Failure(e.to_string()))?;
    engine.sql_collect(sql).await.map_err(query_error)
}

/// A statement's error as the exit code the README gives: 2 for the
/// statement itself, 1 for a failure while running it.
fn query_error(e: QueryError) -> CliError {
    match e {
        QueryError::Plan(_) | QueryError::TooComplex(_) | QueryError::Forbidden(_) => {
            CliError::Input(e.to_string())
        }
        QueryError::Execution(_) | QueryError::Overloaded(_) | QueryError::Timeout(_) => {
            CliError::Failure(e.to_string())
        }
    }
}
