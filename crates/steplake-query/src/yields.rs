//! Yield points above joins, so that a time limit or a client that went
//! away can stop any query soon.
//!
//! A running query can only be stopped where its stream returns to the
//! runtime. DataFusion's leaves (file and memory scans) spend tokio's
//! cooperative budget per batch, which makes most plans return regularly;
//! but a join can emit batch after batch from what it already holds without
//! polling a leaf (a cross join, an exploding equi-join), and an aggregate
//! above it then drains it in one poll for minutes. [`YieldAfterJoins`]
//! wraps every join in a [`CooperativeExec`], which spends budget for each
//! batch the join emits, so such a plan returns to the runtime every few
//! hundred batches.
//!
//! What remains uninterruptible is the work of one batch of one operator
//! (for a nested-loop join with a filter that rejects everything, one probe
//! batch against the whole build side).

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::ExecutionPlan;

/// The physical optimizer rule; runs after DataFusion's own.
#[derive(Debug, Default)]
pub(crate) struct YieldAfterJoins;

impl PhysicalOptimizerRule for YieldAfterJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if node.children().len() >= 2 && node.name().contains("Join") {
                let wrapped: Arc<dyn ExecutionPlan> = Arc::new(CooperativeExec::new(node));
                return Ok(Transformed::yes(wrapped));
            }
            Ok(Transformed::no(node))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "YieldAfterJoins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
