//! `steplake scheduler` and `steplake executor`: the roles of a Ballista
//! cluster that runs steplake's SQL over a bucket (steplake-cluster).

use std::net::SocketAddr;

use clap::Args;
use std::sync::Arc;

use steplake_cluster::executor_metrics::{serve_metrics, ExecutorMetrics};
use steplake_cluster::{ExecutorOptions, SchedulerOptions};

use crate::CliError;

/// Flags of `steplake scheduler`.
#[derive(Args)]
pub(crate) struct SchedulerArgs {
    /// Address clients (`steplake sql --cluster df://ADDR`) and executors
    /// reach the scheduler on.
    #[arg(
        long,
        env = "STEPLAKE_SCHEDULER_LISTEN",
        default_value = "127.0.0.1:50050"
    )]
    listen: SocketAddr,
    /// The bucket prefix a server flushes to, which cluster queries read
    /// (s3://bucket/prefix, gs://…, az://…). Credentials from AWS_*
    /// (GOOGLE_*, AZURE_*).
    #[arg(long, env = "STEPLAKE_OBJECT_STORE")]
    object_store: String,
    /// Seconds without a heartbeat after which an executor counts as lost:
    /// its running tasks are run again on the others. Keep it above the
    /// executors' --heartbeat-secs.
    #[arg(long, default_value_t = SchedulerOptions::DEFAULT_EXECUTOR_TIMEOUT_SECS)]
    executor_timeout_secs: u64,
}

/// Flags of `steplake executor`.
#[derive(Args)]
pub(crate) struct ExecutorArgs {
    /// The scheduler: df://HOST:PORT (or HOST:PORT).
    #[arg(long, env = "STEPLAKE_SCHEDULER")]
    scheduler: String,
    /// The same bucket prefix as the scheduler's.
    #[arg(long, env = "STEPLAKE_OBJECT_STORE")]
    object_store: String,
    /// Host the executor binds and advertises to the scheduler.
    #[arg(long, default_value = "127.0.0.1")]
    bind_host: String,
    /// Its Arrow Flight port, which serves shuffle data to other executors.
    #[arg(long, default_value_t = 50051)]
    flight_port: u16,
    /// Its gRPC port.
    #[arg(long, default_value_t = 50052)]
    grpc_port: u16,
    /// Partitions it runs at once (default: one per core).
    #[arg(long)]
    vcores: Option<usize>,
    /// Where it keeps shuffle files (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<String>,
    /// Seconds between its heartbeats to the scheduler (below the
    /// scheduler's --executor-timeout-secs).
    #[arg(long, default_value_t = ExecutorOptions::DEFAULT_HEARTBEAT_SECS)]
    heartbeat_secs: u64,
    /// Serve Prometheus metrics (tasks run and failed, rows and bytes
    /// written) at http://ADDR/metrics (port 0: a free port, named in the
    /// first line it prints).
    #[arg(long)]
    metrics: Option<SocketAddr>,
}

/// `HOST:PORT` of a scheduler URL such as `df://HOST:PORT`.
fn scheduler_address(url: &str) -> Result<(String, u16), CliError> {
    let address = url
        .trim_start_matches("df://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let (host, port) = address.rsplit_once(':').ok_or_else(|| {
        CliError::Input(format!(
            "--scheduler {url}: write it as df://HOST:PORT (the scheduler's --listen)"
        ))
    })?;
    let port = port.parse().map_err(|_| {
        CliError::Input(format!("--scheduler {url}: `{port}` is not a port number"))
    })?;
    Ok((host.to_string(), port))
}

/// Runs the scheduler until the process ends.
pub(crate) async fn run_scheduler(args: SchedulerArgs) -> Result<(), CliError> {
    println!(
        "steplake scheduler on {} (cluster URL df://{}), reading {}",
        args.listen, args.listen, args.object_store
    );
    steplake_cluster::run_scheduler(SchedulerOptions {
        listen: args.listen,
        object_store: args.object_store,
        executor_timeout_secs: args.executor_timeout_secs.max(1),
    })
    .await
    .map_err(|e| CliError::Failure(format!("scheduler: {e}")))
}

/// Runs the executor until the process ends.
pub(crate) async fn run_executor(args: ExecutorArgs) -> Result<(), CliError> {
    let scheduler = scheduler_address(&args.scheduler)?;
    let vcores = args
        .vcores
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // Bound before the first line, which names the address (port 0 picks
    // a free one).
    let (metrics, metrics_line) = match args.metrics {
        Some(addr) => {
            let metrics = Arc::new(ExecutorMetrics::default());
            let bound = serve_metrics(addr, metrics.clone())
                .await
                .map_err(|e| CliError::Failure(format!("--metrics {addr}: {e}")))?;
            (Some(metrics), format!(", metrics http://{bound}/metrics"))
        }
        None => (None, String::new()),
    };
    println!(
        "steplake executor on {}:{} (grpc {}), scheduler {}:{}, reading {}{metrics_line}",
        args.bind_host,
        args.flight_port,
        args.grpc_port,
        scheduler.0,
        scheduler.1,
        args.object_store
    );
    steplake_cluster::run_executor(ExecutorOptions {
        scheduler,
        bind_host: args.bind_host,
        ports: (args.flight_port, args.grpc_port),
        vcores,
        object_store: args.object_store,
        work_dir: args.work_dir,
        heartbeat_secs: args.heartbeat_secs.max(1),
        metrics,
    })
    .await
    .map_err(|e| CliError::Failure(format!("executor: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_urls() {
        assert_eq!(
            scheduler_address("df://10.0.0.1:50050").ok(),
            Some(("10.0.0.1".to_string(), 50050))
        );
        assert_eq!(
            scheduler_address("localhost:7000").ok(),
            Some(("localhost".to_string(), 7000))
        );
        assert!(scheduler_address("df://nowhere").is_err());
    }
}
