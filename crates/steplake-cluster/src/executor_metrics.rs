//! What an executor has done, for its `/metrics` page: tasks run, failed,
//! and the rows and bytes they wrote for the next stage.
//!
//! Ballista 55 has no hook for counting tasks other than the execution
//! engine, so [`CountingEngine`] wraps Ballista's default engine and
//! [`CountingStage`] each stage executor it makes, forwarding every method
//! of [`QueryStageExecutor`] as it is in Ballista 55 (a method added later
//! with a default body would not be forwarded: check this file when
//! Ballista is upgraded). The default engine is used without Ballista's
//! pool of shuffle-fetch clients, which is private to its executor
//! process: each fetch opens its own connection.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ballista_core::serde::protobuf::{
    RuntimeStatsReport, ShuffleWritePartition, TaskColumnStats, WindowStateReport,
};
use ballista_core::JobId;
use ballista_executor::execution_engine::{
    DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor,
};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;

/// Counters of one executor process.
#[derive(Debug, Default)]
pub struct ExecutorMetrics {
    tasks_started: AtomicU64,
    tasks_succeeded: AtomicU64,
    tasks_failed: AtomicU64,
    /// Stopped before they ended: their job failed or was cancelled.
    tasks_cancelled: AtomicU64,
    rows_written: AtomicU64,
    bytes_written: AtomicU64,
}

impl ExecutorMetrics {
    /// The counters in Prometheus' text format.
    pub fn render(&self) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for (labels, value) in samples {
                out.push_str(&format!("{name}{labels} {value}\n"));
            }
        };
        counter(
            "steplake_executor_tasks_total",
            "Query stage tasks this executor ran, by outcome (started = succeeded + failed + cancelled + running).",
            &[
                ("{outcome=\"started\"}", get(&self.tasks_started)),
                ("{outcome=\"succeeded\"}", get(&self.tasks_succeeded)),
                ("{outcome=\"failed\"}", get(&self.tasks_failed)),
                ("{outcome=\"cancelled\"}", get(&self.tasks_cancelled)),
            ],
        );
        counter(
            "steplake_executor_shuffle_rows_total",
            "Rows its tasks wrote for the next stage or the client.",
            &[("", get(&self.rows_written))],
        );
        counter(
            "steplake_executor_shuffle_bytes_total",
            "Bytes its tasks wrote for the next stage or the client.",
            &[("", get(&self.bytes_written))],
        );
        out
    }
}

/// Ballista's default engine, counting the tasks it runs.
pub struct CountingEngine {
    inner: DefaultExecutionEngine,
    metrics: Arc<ExecutorMetrics>,
}

impl CountingEngine {
    /// An engine that counts into `metrics`.
    pub fn new(metrics: Arc<ExecutorMetrics>) -> CountingEngine {
        CountingEngine {
            inner: DefaultExecutionEngine::new(),
            metrics,
        }
    }
}

impl ExecutionEngine for CountingEngine {
    fn create_query_stage_exec(
        &self,
        job_id: JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> Result<Arc<dyn QueryStageExecutor>> {
        let inner = self.inner.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )?;
        Ok(Arc::new(CountingStage {
            inner,
            metrics: self.metrics.clone(),
        }))
    }
}

/// A stage executor that counts its tasks.
pub struct CountingStage {
    inner: Arc<dyn QueryStageExecutor>,
    metrics: Arc<ExecutorMetrics>,
}

impl fmt::Debug for CountingStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl fmt::Display for CountingStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait::async_trait]
impl QueryStageExecutor for CountingStage {
    async fn execute_query_stage(
        &self,
        task_id: usize,
        context: Arc<TaskContext>,
    ) -> Result<Vec<ShuffleWritePartition>> {
        self.metrics.tasks_started.fetch_add(1, Ordering::Relaxed);
        let mut unfinished = Unfinished(Some(&self.metrics));
        let result = self.inner.execute_query_stage(task_id, context).await;
        unfinished.0 = None;
        match &result {
            Ok(partitions) => {
                self.metrics.tasks_succeeded.fetch_add(1, Ordering::Relaxed);
                for partition in partitions {
                    self.metrics
                        .rows_written
                        .fetch_add(partition.num_rows, Ordering::Relaxed);
                    self.metrics
                        .bytes_written
                        .fetch_add(partition.num_bytes, Ordering::Relaxed);
                }
            }
            Err(_) => {
                self.metrics.tasks_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    fn collect_plan_metrics(&self) -> Vec<MetricsSet> {
        self.inner.collect_plan_metrics()
    }

    fn collect_runtime_stats_reports(&self) -> Vec<RuntimeStatsReport> {
        self.inner.collect_runtime_stats_reports()
    }

    fn collect_window_state_reports(&self) -> Result<Vec<WindowStateReport>> {
        self.inner.collect_window_state_reports()
    }

    fn collect_column_stats(&self) -> Vec<TaskColumnStats> {
        self.inner.collect_column_stats()
    }
}

/// Counts a task as cancelled when its future is dropped before it ends.
struct Unfinished<'a>(Option<&'a ExecutorMetrics>);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if let Some(metrics) = self.0 {
            metrics.tasks_cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Serves `GET /metrics` with `metrics` on `addr` until the process ends;
/// the bound address comes back once it listens.
pub async fn serve_metrics(
    addr: SocketAddr,
    metrics: Arc<ExecutorMetrics>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::warn!(error = %e, "the executor's /metrics server stopped");
        }
    });
    Ok(bound)
}
