//! steplake-query: SQL over a steplake store, with Apache DataFusion.
//!
//! [`QueryEngine`] owns a DataFusion `SessionContext` whose default catalog
//! `steplake` (schema `public`) holds these tables:
//!
//! - `runs`, `events` and `conditions` ([`tables::CatalogTable`]): one row
//!   per run, per firing of a standing condition, and per condition, from
//!   the store's catalog;
//! - `scalars` ([`tables::ScalarsTable`]): the union of the Parquet files
//!   (pruned first by the manifest's per-series step ranges, then by Parquet
//!   statistics and page indexes) and a snapshot of the in-memory buffer, so
//!   a point is queryable the moment it is acknowledged. Where the same
//!   (run, name, step) was written more than once, only the latest write shows;
//! - `tensors` ([`tables::TensorsTable`]): one row per tensor per step, with
//!   its statistics and, when it was sent whole, its values; tensor files
//!   (values pages compressed by steplake-codec) plus buffered tensors.
//!
//! The function library ([`functions`]) is registered on the session:
//! series window functions (`ema`, `smooth`, `rolling_zscore`, `is_spike`)
//! and `first_sustained`.
//!
//! A series' predicted course ([`prediction`]): the loss-curve fit
//! predicted at chosen steps, one statement for prediction conditions and
//! the dashboard.
//!
//! Standing conditions ([`condition`]): a predicate over one series,
//! checked and then evaluated point by point as a run trains, with the same
//! answers as the series functions give in SQL.
//!
//! SQL is read-only: [`QueryEngine::sql`] plans the statement and refuses
//! DDL, DML (`INSERT`, `COPY`), and statements (`SET`, transactions) with
//! [`QueryError::Forbidden`] before anything runs. No table function that
//! reads files is registered, and DataFusion's URL tables are off.
//!
//! A statement cannot take the server down: its size and nesting are
//! limited ([`StatementLimits`]) before it is planned, and it is planned and
//! run on a query runtime of its own (module `executor`) whose threads have
//! large stacks and are not the ones that acknowledge writes. Queries share
//! a memory pool (joins, sorts and aggregations spill or fail with
//! [`QueryError::Overloaded`]), run within a time limit and a limit on how
//! many run at once ([`QueryOptions`]). Dropping a result stream cancels its
//! query; yield points above joins (module `yields`) make that, and the
//! time limit, take effect soon even for a cross join.
//!
//! Two physical rules use the order the store's files are written in,
//! (run_id, name, step): a sort those files already satisfy becomes a
//! run-by-run merge of the sorted files (module `sorted_files`, operator in
//! `run_merge`), and a window function that needs its whole partition is
//! evaluated one completed partition at a time instead of after collecting
//! its whole input (module `streaming_window`). Together they make
//! `f(value) OVER (PARTITION BY run_id, name ORDER BY step)` over every
//! series a streaming pass.
//!
//! A third rule (module `sliding_sums`) evaluates `sum` and `avg` over a
//! ROWS frame (a moving average) from each window's own rows, so that a
//! NaN or an infinity spoils only the windows that hold it, in O(1) a row.
//! A fourth (module `series_ends`) reads only the last (or first) row of
//! each series of each file for `last_value(x ORDER BY step)` or
//! `max(step)` per series, where the manifest's row counts place them.
//! A fifth (module `run_groups`) groups by `run_id`/`name` with one group
//! lookup per run of a series' rows instead of a hash of every row.

pub mod condition;
mod error;
mod executor;
pub mod filters;
pub mod functions;
mod key_split;
mod limits;
mod operators;
pub mod prediction;
mod run_groups;
mod run_merge;
mod series_ends;
mod sliding_sums;
mod sorted_files;
mod streaming_window;
pub mod tables;
mod yields;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{Column, ScalarValue};
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{cast, Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use futures::TryStreamExt;
use std::num::NonZeroUsize;
use steplake_store::Store;

pub use error::QueryError;
pub use executor::QUERY_STACK_BYTES;
pub use limits::StatementLimits;

/// The catalog name SQL sees.
pub const CATALOG: &str = "steplake";
/// The schema name SQL sees.
pub const SCHEMA: &str = "public";

/// How a [`QueryEngine`] runs statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryOptions {
    /// Size and nesting limits of one statement.
    pub limits: StatementLimits,
    /// Threads of the query runtime (default: one per core).
    pub threads: usize,
    /// Memory the running queries may hold together in joins, sorts and
    /// aggregations (default: half of the machine's memory, see
    /// [`default_query_memory`]). Past it, an operator that can spill to
    /// disk does; any other fails its query with [`QueryError::Overloaded`],
    /// and the process never runs out. Each spilling operator of a running
    /// query gets an equal share.
    pub memory_bytes: usize,
    /// Longest a statement may take, from its turn to its last batch
    /// (default 300 s; `None`: no limit).
    pub timeout: Option<std::time::Duration>,
    /// Statements running at once (default 16); more wait for a turn.
    pub max_concurrent: usize,
    /// Longest a statement waits for a turn (default 30 s), then it fails
    /// with [`QueryError::Overloaded`]. Its time limit starts with its turn.
    pub queue_timeout: std::time::Duration,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            limits: StatementLimits::default(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            memory_bytes: default_query_memory(),
            timeout: Some(std::time::Duration::from_secs(300)),
            max_concurrent: 16,
            queue_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// Half of the machine's physical memory (`MemTotal` of `/proc/meminfo`),
/// at least 1 GiB; 4 GiB where it cannot be read.
pub fn default_query_memory() -> usize {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
        });
    match total_kib {
        Some(kib) => (kib.saturating_mul(1024) / 2).max(1 << 30),
        None => 4 << 30,
    }
}

/// A DataFusion session over one store, with steplake's tables registered.
///
/// Every statement is parsed, planned and run on the engine's own query
/// runtime (module `executor`), never on the caller's threads.
pub struct QueryEngine {
    ctx: SessionContext,
    limits: StatementLimits,
    runtime: executor::QueryRuntime,
    /// Statements planned since start (every client: Flight SQL, HTTP, CLI).
    queries: Arc<std::sync::atomic::AtomicU64>,
    /// Turns of the statements allowed to run at once.
    turns: Arc<tokio::sync::Semaphore>,
    max_concurrent: usize,
    timeout: Option<std::time::Duration>,
    queue_timeout: std::time::Duration,
}

/// The session settings of every steplake query, here or on a cluster:
/// catalog `steplake.public`, `threads` partitions, strings as Utf8 (the
/// type Flight SQL clients expect), Parquet filters pushed into the scan.
pub fn session_config(threads: usize) -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, SCHEMA)
        .with_information_schema(true)
        .with_target_partitions(threads.max(1));
    let session = config.options_mut();
    session.execution.parquet.schema_force_view_types = false;
    session.execution.parquet.pushdown_filters = true;
    session.execution.parquet.reorder_filters = true;
    session.sql_parser.map_string_types_to_utf8view = false;
    config
}

impl QueryEngine {
    /// Creates a session over `store` with the default [`QueryOptions`].
    pub fn new(store: Arc<Store>) -> Result<Self, QueryError> {
        Self::with_options(store, QueryOptions::default())
    }

    /// Creates a session over `store`.
    pub fn with_options(store: Arc<Store>, options: QueryOptions) -> Result<Self, QueryError> {
        let config = session_config(options.threads);
        let pool = TrackConsumersPool::new(
            FairSpillPool::new(options.memory_bytes),
            NonZeroUsize::MIN.saturating_add(2),
        );
        let runtime_env = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .build_arc()
            .map_err(QueryError::Execution)?;
        if let Some(url) = store.bucket_url() {
            // Queries read the bucket's files with their own client, on
            // the query runtime.
            let (bucket, _) = steplake_store::bucket::open_object_store(url).map_err(|e| {
                QueryError::Execution(datafusion::error::DataFusionError::External(Box::new(e)))
            })?;
            runtime_env.register_object_store(&steplake_store::bucket::bucket_root(url), bucket);
        }
        let mut rules = datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules;
        rules.push(Arc::new(sliding_sums::ExactSlidingSums));
        rules.push(Arc::new(series_ends::ReadSeriesEnds::new(store.clone())));
        rules.push(Arc::new(run_groups::GroupByRuns));
        rules.push(Arc::new(sorted_files::MergeSortedFiles));
        rules.push(Arc::new(streaming_window::StreamPartitionedWindows));
        rules.push(Arc::new(yields::YieldAfterJoins));
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime_env)
            .with_default_features()
            .with_physical_optimizer_rules(rules)
            .build();
        let ctx = SessionContext::new_with_state(state);
        functions::register(&ctx);
        for (name, catalog) in [
            ("runs", tables::Catalog::Runs),
            ("events", tables::Catalog::Events),
            ("conditions", tables::Catalog::Conditions),
        ] {
            ctx.register_table(
                name,
                Arc::new(tables::CatalogTable::new(store.clone(), catalog)),
            )
            .map_err(QueryError::Execution)?;
        }
        ctx.register_table(
            "scalars",
            Arc::new(tables::ScalarsTable::new(store.clone())),
        )
        .map_err(QueryError::Execution)?;
        ctx.register_table("tensors", Arc::new(tables::TensorsTable::new(store)))
            .map_err(QueryError::Execution)?;
        Self::over_context(ctx, options)
    }

    /// An engine over a session made elsewhere, such as a Ballista
    /// cluster's (steplake-cluster): statements get the same checks,
    /// limits, time limit and runtime as over a store.
    pub fn over_context(ctx: SessionContext, options: QueryOptions) -> Result<Self, QueryError> {
        Ok(QueryEngine {
            ctx,
            limits: options.limits,
            runtime: executor::QueryRuntime::new(options.threads)?,
            queries: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            turns: Arc::new(tokio::sync::Semaphore::new(options.max_concurrent.max(1))),
            max_concurrent: options.max_concurrent.max(1),
            timeout: options.timeout,
            queue_timeout: options.queue_timeout,
        })
    }

    /// Waits for a turn among the statements allowed to run at once; the
    /// ticket holds it and the statement's deadline.
    async fn ticket(&self) -> Result<executor::Ticket, QueryError> {
        let turn = tokio::time::timeout(self.queue_timeout, self.turns.clone().acquire_owned())
            .await
            .map_err(|_| {
                QueryError::Overloaded(format!(
                    "{} queries are running, the most allowed at once, and none finished within {} s; retry later",
                    self.max_concurrent,
                    self.queue_timeout.as_secs_f64()
                ))
            })?
            .map_err(|_| QueryError::Overloaded("the query engine is shutting down".into()))?;
        let now = tokio::time::Instant::now();
        Ok(executor::Ticket {
            turn: Some(turn),
            deadline: self.timeout.map(|limit| (now + limit, limit)),
        })
    }

    /// Statements planned since start, refused ones included.
    pub fn queries_planned(&self) -> u64 {
        self.queries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The DataFusion session (for registering functions and tables).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// What a query task needs to parse and plan a statement.
    fn planner(&self) -> Planner {
        Planner {
            ctx: self.ctx.clone(),
            limits: self.limits,
            queries: self.queries.clone(),
        }
    }

    /// Prepares a read-only statement: the schema of its result and the
    /// schema of its parameters (one field per placeholder, `$1` first; type
    /// `Null` where SQL leaves it open).
    pub async fn prepare(&self, sql: &str) -> Result<Prepared, QueryError> {
        let planner = self.planner();
        let sql = sql.to_string();
        self.runtime
            .run(async move { prepared(&planner.checked_plan(&sql).await?) })
            .await
    }

    /// Every table SQL can name, with its schema, in catalog order.
    pub async fn tables(&self) -> Result<Vec<TableEntry>, QueryError> {
        let Some(catalog) = self.ctx.catalog(CATALOG) else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        let mut schema_names = catalog.schema_names();
        schema_names.sort();
        for schema_name in schema_names {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let mut table_names = schema.table_names();
            table_names.sort();
            for table_name in table_names {
                let Some(table) = schema
                    .table(&table_name)
                    .await
                    .map_err(QueryError::Execution)?
                else {
                    continue;
                };
                entries.push(TableEntry {
                    catalog: CATALOG.to_string(),
                    schema: schema_name.clone(),
                    kind: "TABLE",
                    name: table_name,
                    columns: public_schema(&table.schema()),
                });
            }
        }
        Ok(entries)
    }

    /// The result schema a read-only SQL statement would produce.
    pub async fn schema_of(&self, sql: &str) -> Result<SchemaRef, QueryError> {
        self.schema_with_parameters(sql, Vec::new()).await
    }

    /// The result schema of a read-only statement with its placeholders
    /// `$1`, `$2`, ... bound to `parameters`.
    pub async fn schema_with_parameters(
        &self,
        sql: &str,
        parameters: Vec<ScalarValue>,
    ) -> Result<SchemaRef, QueryError> {
        let planner = self.planner();
        let sql = sql.to_string();
        self.runtime
            .run(async move {
                let frame = planner.frame(&sql, parameters).await?;
                Ok(Arc::new(frame.schema().as_arrow().clone()) as SchemaRef)
            })
            .await
    }

    /// Plans a read-only SQL statement and starts it; returns the result schema
    /// and a stream of batches. Dropping the stream cancels the query.
    pub async fn sql(
        &self,
        sql: &str,
    ) -> Result<(SchemaRef, SendableRecordBatchStream), QueryError> {
        self.sql_with_parameters(sql, Vec::new()).await
    }

    /// [`QueryEngine::sql`] with values for the placeholders `$1`, `$2`, ...
    pub async fn sql_with_parameters(
        &self,
        sql: &str,
        parameters: Vec<ScalarValue>,
    ) -> Result<(SchemaRef, SendableRecordBatchStream), QueryError> {
        let ticket = self.ticket().await?;
        let planner = self.planner();
        let sql = sql.to_string();
        let (schema, stream) = ticket
            .within(self.runtime.run(async move {
                let frame = planner.frame(&sql, parameters).await?;
                let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
                let stream = frame
                    .execute_stream()
                    .await
                    .map_err(QueryError::from_execution)?;
                Ok((schema, stream))
            }))
            .await?;
        Ok((schema, self.runtime.stream(stream, ticket)))
    }

    /// Runs a read-only SQL statement and collects every batch.
    pub async fn sql_collect(
        &self,
        sql: &str,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        let (schema, stream) = self.sql(sql).await?;
        let batches = stream
            .try_collect()
            .await
            .map_err(QueryError::from_execution)?;
        Ok((schema, batches))
    }
}

/// Parses and plans statements on a query thread.
struct Planner {
    ctx: SessionContext,
    limits: StatementLimits,
    queries: Arc<std::sync::atomic::AtomicU64>,
}

impl Planner {
    /// Plans a read-only statement whose placeholders `$1`, `$2`, ... take
    /// `parameters` in order (none: the statement has no placeholders).
    async fn frame(
        &self,
        sql: &str,
        parameters: Vec<ScalarValue>,
    ) -> Result<DataFrame, QueryError> {
        let mut plan = self.checked_plan(sql).await?;
        if !parameters.is_empty() {
            plan = plan
                .with_param_values(parameters)
                .map_err(QueryError::Plan)?;
        }
        self.ctx
            .execute_logical_plan(plan)
            .await
            .map_err(QueryError::Plan)
    }

    /// Parses and plans `sql` within the limits, refusing anything but reads.
    async fn checked_plan(&self, sql: &str) -> Result<LogicalPlan, QueryError> {
        self.queries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.limits.check_size(sql)?;
        let state = self.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state
            .sql_to_statement(sql, &dialect)
            .map_err(QueryError::Plan)?;
        self.limits.check_depth(&statement)?;
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(|e| self.explain_plan_error(e))?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| QueryError::Forbidden(forbidden_reason(&e)))?;
        strings_as_utf8(plan).map_err(QueryError::Plan)
    }

    /// A planning error, told with what would have been right where the
    /// session knows it (the tables there are, for a missing one).
    fn explain_plan_error(&self, error: datafusion::error::DataFusionError) -> QueryError {
        if let Some(name) = error::invalid_function(&error) {
            if let Some(usage) = window_function_usage(&self.ctx, &name) {
                return QueryError::Plan(datafusion::error::DataFusionError::Plan(format!(
                    "{name} is a window function and needs OVER: write {usage}"
                )));
            }
        }
        let Some(missing) = error::missing_table(&error) else {
            return QueryError::Plan(error);
        };
        let mut names: Vec<String> = self
            .ctx
            .catalog(CATALOG)
            .and_then(|c| c.schema(SCHEMA))
            .map(|s| s.table_names())
            .unwrap_or_default();
        names.sort();
        QueryError::Plan(datafusion::error::DataFusionError::Plan(format!(
            "there is no table {missing:?}; the tables are {} (and information_schema.tables)",
            names.join(", ")
        )))
    }
}

/// The type a client sees for a column of type `t`: string views (how
/// `scalars` reads its names) leave the engine as plain strings, the type
/// every Flight SQL client knows.
fn public_type(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Utf8View => Some(DataType::Utf8),
        DataType::BinaryView => Some(DataType::Binary),
        _ => None,
    }
}

/// `schema` with the types clients see ([`public_type`]).
fn public_schema(schema: &Schema) -> SchemaRef {
    Arc::new(retyped(schema, public_type))
}

/// `schema` with each field whose type `to` maps given the new type.
pub(crate) fn retyped(schema: &Schema, to: impl Fn(&DataType) -> Option<DataType>) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match to(f.data_type()) {
            Some(t) => f.as_ref().clone().with_data_type(t),
            None => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// `plan` with a final projection that casts its view columns to the types
/// clients see ([`public_type`]); `plan` itself when it has none.
fn strings_as_utf8(plan: LogicalPlan) -> datafusion::error::Result<LogicalPlan> {
    let schema = plan.schema().clone();
    if !schema
        .fields()
        .iter()
        .any(|f| public_type(f.data_type()).is_some())
    {
        return Ok(plan);
    }
    let columns = schema.iter().map(|(qualifier, field)| {
        let column = Expr::Column(Column::from((qualifier, field)));
        match public_type(field.data_type()) {
            Some(t) => cast(column, t).alias_qualified(qualifier.cloned(), field.name()),
            None => column,
        }
    });
    LogicalPlanBuilder::from(plan).project(columns)?.build()
}

/// How to call the window function `name`, when the session has one: the
/// usage of a steplake series function, or a generic `OVER` clause.
fn window_function_usage(ctx: &SessionContext, name: &str) -> Option<String> {
    use datafusion::execution::FunctionRegistry;
    if let Some(function) = functions::series::SeriesFunction::named(name) {
        return Some(function.usage());
    }
    ctx.udwf(&name.to_ascii_lowercase())
        .ok()
        .map(|_| format!("{name}(...) OVER (PARTITION BY run_id, name ORDER BY step)"))
}

/// The result and parameter schemas of a planned statement.
fn prepared(plan: &LogicalPlan) -> Result<Prepared, QueryError> {
    let mut parameters: Vec<(usize, String, DataType)> = plan
        .get_parameter_types()
        .map_err(QueryError::Plan)?
        .into_iter()
        .map(|(id, data_type)| {
            let position = id
                .trim_start_matches('$')
                .parse::<usize>()
                .unwrap_or(usize::MAX);
            (position, id, data_type.unwrap_or(DataType::Null))
        })
        .collect();
    parameters.sort();
    let parameters = Schema::new(
        parameters
            .into_iter()
            .map(|(_, id, data_type)| Field::new(id, data_type, true))
            .collect::<Vec<_>>(),
    );
    Ok(Prepared {
        result: Arc::new(plan.schema().as_arrow().clone()),
        parameters: Arc::new(parameters),
    })
}

/// What [`QueryEngine::prepare`] learns about a statement before it runs.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The schema of the result.
    pub result: SchemaRef,
    /// One nullable field per placeholder, named `$1`, `$2`, ... in order.
    pub parameters: SchemaRef,
}

/// One table of the catalog, as [`QueryEngine::tables`] lists it.
#[derive(Debug, Clone)]
pub struct TableEntry {
    /// The catalog (always [`CATALOG`]).
    pub catalog: String,
    /// The schema ([`SCHEMA`]).
    pub schema: String,
    /// The table name.
    pub name: String,
    /// The table type Flight SQL reports (`TABLE`).
    pub kind: &'static str,
    /// Its columns.
    pub columns: SchemaRef,
}

/// DataFusion's message for a refused plan, without its "Error during planning" prefix.
fn forbidden_reason(error: &datafusion::error::DataFusionError) -> String {
    let message = error.to_string();
    message
        .strip_prefix("Error during planning: ")
        .unwrap_or(&message)
        .to_string()
}
