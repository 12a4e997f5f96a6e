//! steplake-cluster: steplake's SQL on an Apache DataFusion Ballista cluster,
//! for queries too large for one process.
//!
//! steplake does not grow a distributed engine of its own: this crate plugs
//! its tables and functions into Ballista's scheduler and executors.
//!
//! - **What a cluster query sees**: the files the bucket's manifest lists
//!   when the query is planned, nothing of a server's buffer. A point a
//!   server acknowledged shows once that server has flushed it (within its
//!   `--flush-secs`). Latest-write semantics are those of one process: the
//!   scheduler plans each query with the same `scalars` provider.
//! - **Planning** ([`codec::TableCodec`]): a client plans a statement against
//!   stand-in tables ([`client::ClusterTable`]) that carry only their schema;
//!   the codec ships a steplake table by name, and the scheduler's codec
//!   turns the name back into the real provider over a read-only view of the
//!   bucket, opened for that query. Physical plans hold only DataFusion's own
//!   operators (Parquet scans of bucket files, memory scans, unions), which
//!   Ballista's codec ships as they are.
//! - **Functions** ([`functions`]): every steplake SQL function is registered
//!   on the scheduler's sessions and in each executor's function registry, so
//!   plans that call them decode on both.
//! - **`IGNORE NULLS`** (`ignore_nulls.rs`): DataFusion's physical plan codec
//!   drops it from window functions, so a rewrite carries it in the name of
//!   the function the executors run instead.
//! - **Order after a shuffle** (`shuffle_order.rs`): each stage runs as
//!   several tasks; a physical rule sorts a partition again where a plan
//!   relied on order that Ballista's shuffle does not keep.
//! - **Executor metrics** ([`executor_metrics`]): tasks run and failed, rows
//!   and bytes written, on an executor's `/metrics` when it is given an
//!   address for it.
//! - **Roles** ([`roles`]): `run_scheduler` and `run_executor` start
//!   Ballista's own scheduler and executor processes with those hooks.

pub mod client;
pub mod codec;
pub mod executor_metrics;
pub mod functions;
mod ignore_nulls;
pub mod roles;
mod series_table;
mod shuffle_order;

pub use client::{cluster_context, cluster_engine};
pub use codec::TableCodec;
pub use roles::{run_executor, run_scheduler, ExecutorOptions, SchedulerOptions};
