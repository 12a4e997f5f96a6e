//! The cluster roles: Ballista's own scheduler and executor processes, with
//! steplake's codec, functions and bucket installed.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::error::BallistaError;
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{SchedulerConfig, TaskDistributionPolicy};
use ballista_scheduler::scheduler_process::start_server;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::SessionConfig;

use ballista_executor::execution_engine::ExecutionEngine;

use crate::codec::TableCodec;
use crate::executor_metrics::{CountingEngine, ExecutorMetrics};
use crate::functions;

/// How a scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Where clients and executors reach it.
    pub listen: SocketAddr,
    /// The bucket prefix its queries read (`s3://bucket/prefix`).
    pub object_store: String,
    /// Seconds without a heartbeat after which an executor is lost and its
    /// running tasks are run again elsewhere.
    pub executor_timeout_secs: u64,
}

impl SchedulerOptions {
    /// Ballista waits 180 s; a query should not stall that long when an
    /// executor dies.
    pub const DEFAULT_EXECUTOR_TIMEOUT_SECS: u64 = 30;
}

/// How an executor runs.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's host and port.
    pub scheduler: (String, u16),
    /// Host the executor binds and advertises.
    pub bind_host: String,
    /// Its Arrow Flight port (shuffle data), and its gRPC port.
    pub ports: (u16, u16),
    /// Partitions it runs at once.
    pub vcores: usize,
    /// The bucket prefix the plans it runs read.
    pub object_store: String,
    /// Where it keeps shuffle files (default: a temporary directory).
    pub work_dir: Option<String>,
    /// Seconds between its heartbeats to the scheduler.
    pub heartbeat_secs: u64,
    /// Count its tasks into these (served on `/metrics` with
    /// [`crate::executor_metrics::serve_metrics`]).
    pub metrics: Option<Arc<ExecutorMetrics>>,
}

impl ExecutorOptions {
    /// Well below [`SchedulerOptions::DEFAULT_EXECUTOR_TIMEOUT_SECS`]
    /// (Ballista's default is 60 s).
    pub const DEFAULT_HEARTBEAT_SECS: u64 = 5;
}

/// A runtime that reads the bucket of `url` with the same client the
/// single-process engine uses. Each role opens it once, at start (so an
/// unusable bucket fails the start, not the first query), and every
/// session it runs shares it.
fn runtime_with_bucket(url: &str) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let parsed = url::Url::parse(url.trim_end_matches('/'))
        .map_err(|e| DataFusionError::Configuration(format!("bucket prefix {url}: {e}")))?;
    let (bucket, _) = steplake_store::bucket::open_object_store(&parsed)
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let runtime = RuntimeEnvBuilder::new().build_arc()?;
    runtime.register_object_store(&steplake_store::bucket::bucket_root(&parsed), bucket);
    Ok(runtime)
}

/// Runs a Ballista scheduler whose queries read `options.object_store`,
/// until the process ends.
pub async fn run_scheduler(options: SchedulerOptions) -> Result<(), BallistaError> {
    let runtime = runtime_with_bucket(&options.object_store)?;
    let session_builder = Arc::new(move |config: SessionConfig| {
        Ok(functions::session_state_on(config, runtime.clone()))
    });
    let config = SchedulerConfig {
        bind_host: options.listen.ip().to_string(),
        bind_port: options.listen.port(),
        override_session_builder: Some(session_builder),
        override_logical_codec: Some(Arc::new(TableCodec::scheduler(&options.object_store))),
        // Ballista's default (Bias) fills one executor's slots before the
        // next; with one scheduler Ballista recommends round robin.
        task_distribution: TaskDistributionPolicy::RoundRobin,
        executor_timeout_seconds: options.executor_timeout_secs,
        no_executors_grace_period_seconds: options.executor_timeout_secs,
        expire_dead_executor_interval_seconds: (options.executor_timeout_secs / 4).clamp(1, 15),
        ..Default::default()
    };
    let cluster = BallistaCluster::new_from_config(&config).await?;
    start_server(cluster, options.listen, Arc::new(config)).await
}

/// Runs a Ballista executor for the scheduler of `options`, until the
/// process ends.
pub async fn run_executor(options: ExecutorOptions) -> Result<(), BallistaError> {
    let runtime = runtime_with_bucket(&options.object_store)?;
    // Counting tasks needs Ballista's engine wrapped (see executor_metrics);
    // without a /metrics address the executor runs Ballista's own.
    let engine = options
        .metrics
        .map(|metrics| Arc::new(CountingEngine::new(metrics)) as Arc<dyn ExecutionEngine>);
    let config = ExecutorProcessConfig {
        scheduler_host: options.scheduler.0,
        scheduler_port: options.scheduler.1,
        bind_host: options.bind_host.clone(),
        external_host: Some(options.bind_host),
        port: options.ports.0,
        grpc_port: options.ports.1,
        vcores: options.vcores.max(1),
        work_dir: options.work_dir,
        executor_heartbeat_interval_seconds: options.heartbeat_secs,
        override_execution_engine: engine,
        override_function_registry: Some(Arc::new(functions::executor_registry())),
        override_logical_codec: Some(Arc::new(TableCodec::client())),
        override_runtime_producer: Some(Arc::new(move |_: &SessionConfig| Ok(runtime.clone()))),
        ..Default::default()
    };
    start_executor_process(Arc::new(config)).await
}
