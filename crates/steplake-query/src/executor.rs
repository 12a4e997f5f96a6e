//! The query runtime: where every statement is parsed, planned and run.
//!
//! Queries get a tokio runtime of their own, apart from the one that
//! serves the network and acknowledges writes:
//! - its threads have large stacks ([`QUERY_STACK_BYTES`]), so a statement
//!   within [`crate::limits`] plans and runs without overflowing, whatever
//!   DataFusion recurses over;
//! - heavy queries keep its threads busy, not the ones acknowledging writes;
//! - a result stream is driven here and handed over through a small
//!   channel. When the caller drops it (the client went away), the query
//!   task sees the closed channel and drops the plan, which cancels it;
//! - a stream holds its [`Ticket`] (its turn among the queries allowed to
//!   run at once, and its deadline) until it ends, and is stopped with an
//!   error when the deadline passes.

use std::future::Future;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

use crate::error::TimedOut;
use crate::QueryError;

/// What a running query holds: its turn among the queries allowed at once
/// (released when the query ends or is dropped) and when it must stop.
pub(crate) struct Ticket {
    pub(crate) turn: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The deadline and the limit it was computed from.
    pub(crate) deadline: Option<(tokio::time::Instant, std::time::Duration)>,
}

impl Ticket {
    /// Runs `work` until the deadline; past it, the query's timeout error.
    pub(crate) async fn within<T>(
        &self,
        work: impl Future<Output = Result<T, QueryError>>,
    ) -> Result<T, QueryError> {
        match self.deadline {
            None => work.await,
            Some((deadline, limit)) => tokio::time::timeout_at(deadline, work)
                .await
                .unwrap_or(Err(QueryError::Timeout(limit))),
        }
    }
}

/// Stack of each query thread. Only the pages a query touches are
/// committed; the rest is address space.
pub const QUERY_STACK_BYTES: usize = 256 << 20;

/// Batches a result stream computes ahead of its reader.
const STREAM_AHEAD: usize = 2;

/// A tokio runtime for queries only; shut down (without blocking) on drop.
pub(crate) struct QueryRuntime {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl QueryRuntime {
    /// Starts `threads` query threads.
    pub(crate) fn new(threads: usize) -> Result<Self, QueryError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("steplake-query")
            .thread_stack_size(QUERY_STACK_BYTES)
            .enable_all()
            .build()
            .map_err(|e| {
                QueryError::Execution(DataFusionError::External(
                    format!("cannot start the query threads: {e}").into(),
                ))
            })?;
        let handle = runtime.handle().clone();
        Ok(QueryRuntime {
            runtime: Some(runtime),
            handle,
        })
    }

    /// Runs `work` on a query thread; dropping the returned future (the
    /// caller gave up) cancels it.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, QueryError>> + Send + 'static,
    ) -> Result<T, QueryError> {
        let task = AbortOnDrop(self.handle.spawn(work));
        task.join().await
    }

    /// A stream that yields what `stream` yields, computed on the query
    /// threads, holding `ticket` until it ends. Dropping it cancels the
    /// query; past the ticket's deadline it ends with the timeout error.
    pub(crate) fn stream(
        &self,
        stream: SendableRecordBatchStream,
        ticket: Ticket,
    ) -> SendableRecordBatchStream {
        let schema: SchemaRef = stream.schema();
        let (sender, receiver) = tokio::sync::mpsc::channel(STREAM_AHEAD);
        let driver = self.handle.spawn(async move {
            let mut stream = stream;
            let turn = ticket.turn;
            let deadline = async {
                match ticket.deadline {
                    Some((at, limit)) => {
                        tokio::time::sleep_until(at).await;
                        limit
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(deadline);
            let limit = loop {
                let item = tokio::select! {
                    // The reader went away: stop computing.
                    () = sender.closed() => return,
                    limit = &mut deadline => break limit,
                    item = stream.next() => item,
                };
                let Some(item) = item else { return };
                tokio::select! {
                    sent = sender.send(item) => if sent.is_err() { return },
                    limit = &mut deadline => break limit,
                }
            };
            // Past the deadline: stop computing and give the turn back
            // first; the error then waits for the reader.
            drop(stream);
            drop(turn);
            let error = DataFusionError::External(Box::new(TimedOut(limit)));
            let _ = sender.send(Err(error)).await;
        });
        let guard = Arc::new(AbortOnDrop(driver));
        let batches = tokio_stream::wrappers::ReceiverStream::new(receiver).map(move |item| {
            // The guard lives as long as the stream does.
            let _ = &guard;
            item
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, batches))
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime blocks, which tokio forbids inside async code.
            runtime.shutdown_background();
        }
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> AbortOnDrop<Result<T, QueryError>> {
    async fn join(mut self) -> Result<T, QueryError> {
        match (&mut self.0).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err(QueryError::Execution(DataFusionError::External(
                format!("the query failed inside steplake ({e}); please report this statement")
                    .into(),
            ))),
            Err(e) => Err(QueryError::Execution(DataFusionError::External(
                format!("the query was stopped: {e}").into(),
            ))),
        }
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
