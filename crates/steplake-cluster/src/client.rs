//! A client's session on a cluster: steplake's SQL planned here, run there.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::config::BALLISTA_ADAPTIVE_PLANNER_ENABLED;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use steplake_query::{QueryEngine, QueryError, QueryOptions};

use crate::codec::{SteplakeTable, TableCodec};
use crate::functions;

/// A steplake table as a client sees it: its schema, and a name the codec
/// ships. Only the scheduler reads it.
#[derive(Debug)]
pub struct ClusterTable {
    table: SteplakeTable,
}

impl ClusterTable {
    /// The stand-in for `table`.
    pub fn new(table: SteplakeTable) -> ClusterTable {
        ClusterTable { table }
    }

    /// The table it stands in for.
    pub fn table(&self) -> SteplakeTable {
        self.table
    }
}

#[async_trait]
impl TableProvider for ClusterTable {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Every filter reaches the scheduler's provider, which prunes with
        // what it can; the filter itself stays in the plan above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Plan(format!(
            "the `{}` table is read on the cluster, not in this client's session",
            self.table.name()
        )))
    }
}

/// A session whose statements run on the Ballista scheduler at `url`
/// (`df://HOST:PORT`), with steplake's tables and functions and the same
/// settings as one process.
pub async fn cluster_context(url: &str) -> Result<SessionContext> {
    let state = functions::session_state(cluster_config());
    let ctx = SessionContext::remote_with_state(url, state).await?;
    register_steplake(&ctx)?;
    Ok(ctx)
}

/// A query engine over `ctx`, a cluster's session: steplake's checks,
/// limits and time limit.
pub fn cluster_engine(
    ctx: SessionContext,
    options: QueryOptions,
) -> std::result::Result<QueryEngine, QueryError> {
    QueryEngine::over_context(ctx, options)
}

/// Registers steplake's functions and a [`ClusterTable`] for each steplake
/// table on `ctx`, a session Ballista made (which replaces the functions of
/// the state it was given with DataFusion's own).
pub fn register_steplake(ctx: &SessionContext) -> Result<()> {
    functions::register(ctx);
    for table in SteplakeTable::ALL {
        ctx.register_table(table.name(), Arc::new(ClusterTable::new(table)))?;
    }
    Ok(())
}

/// Partitions of each stage of a cluster query: the task slots of the
/// README's one-machine example (two executors of two).
pub const CLUSTER_PARTITIONS: usize = 4;

/// steplake's session settings with Ballista's hooks and the client codec.
///
/// Each stage runs as [`CLUSTER_PARTITIONS`] tasks, spread over the
/// executors. Jobs are planned by Ballista's static planner, not its
/// adaptive one (on by default in Ballista 55): the adaptive planner plans
/// with its own list of physical rules, which leaves out the session's, and
/// the cluster needs one of its own (`shuffle_order.rs`: a window over a
/// shuffle failed on the executors with DataFusion's "All partition by
/// columns should have an ordering", which is why clusters ran one task per
/// stage before).
///
/// Sorts are not split across the branches of a union
/// (`datafusion.optimizer.repartition_sorts` off): Ballista 55 plans such a
/// sort as one sort per branch and an order-preserving merge of the union's
/// shuffle output, and that merge never finishes, so `ORDER BY step, k`
/// over a `UNION ALL` whose branches each hold one `k` hung until the
/// query's time limit (the as-of join of `sql/slt/as_of.slt`). One sort
/// over the union gives the same rows.
pub fn cluster_config() -> SessionConfig {
    let mut config = steplake_query::session_config(CLUSTER_PARTITIONS);
    config.options_mut().optimizer.repartition_sorts = false;
    config
        .upgrade_for_ballista()
        .set_bool(BALLISTA_ADAPTIVE_PLANNER_ENABLED, false)
        .with_ballista_logical_extension_codec(Arc::new(TableCodec::client()))
}
