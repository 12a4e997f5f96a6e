//! Orders a stage's input again after a shuffle, where DataFusion counted on
//! the order surviving the repartition.
//!
//! steplake's Parquet files are sorted by (run_id, name, step) and say so,
//! so DataFusion plans `is_spike(value) OVER (PARTITION BY run_id, name
//! ORDER BY step)` with no sort at all: a hash repartition of one sorted
//! partition keeps each output partition sorted, and the window runs over
//! that order. Ballista turns each hash repartition into a shuffle between
//! stages, and its shuffle reader declares no order, so an executor that
//! rebuilds the window's stage finds an input with no ordering and
//! DataFusion refuses the plan ("All partition by columns should have an
//! ordering"). Even where a plan would still build, rows from several map
//! tasks arrive in no particular order.
//!
//! [`SortAfterOrderedShuffles`] runs after DataFusion's own physical rules
//! and puts a per-partition sort by the repartition's ordering (with the
//! partition keys a filter made constant named first) right above each hash
//! repartition that claims one. The sort lands in the stage that
//! reads the shuffle, and gives it the order it relies on.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Result;
use datafusion::physical_expr::{LexOrdering, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};

/// Sorts each partition again after every ordered hash repartition (see
/// the module docs).
#[derive(Debug)]
pub(crate) struct SortAfterOrderedShuffles;

impl PhysicalOptimizerRule for SortAfterOrderedShuffles {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(repartition) = node.downcast_ref::<RepartitionExec>() else {
                return Ok(Transformed::no(node));
            };
            let Partitioning::Hash(keys, _) = repartition.partitioning() else {
                return Ok(Transformed::no(node));
            };
            let Some(ordering) = node.output_ordering() else {
                return Ok(Transformed::no(node));
            };
            let ordering = with_constant_keys(keys, ordering, node.as_ref());
            let sorted = SortExec::new(ordering, node).with_preserve_partitioning(true);
            Ok(Transformed::yes(Arc::new(sorted) as Arc<dyn ExecutionPlan>))
        })
        .map(|rewritten| rewritten.data)
    }

    fn name(&self) -> &str {
        "steplake_sort_after_ordered_shuffles"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `ordering` led by the hash keys it leaves out because they are constant
/// (a filter such as `name = 'loss'` fixed them): DataFusion drops constant
/// columns from an ordering, and the executor, which does not see the
/// filter, needs them named to know every partition key is ordered. A
/// constant leading the order changes nothing about it.
fn with_constant_keys(
    keys: &[Arc<dyn PhysicalExpr>],
    ordering: &LexOrdering,
    node: &dyn ExecutionPlan,
) -> LexOrdering {
    let properties = node.equivalence_properties();
    let constant_keys = keys
        .iter()
        .filter(|key| !ordering.iter().any(|s| s.expr.eq(*key)))
        .filter(|key| properties.is_expr_constant(key).is_some())
        .map(|key| PhysicalSortExpr::new_default(Arc::clone(key)));
    LexOrdering::new(constant_keys.chain(ordering.iter().cloned()))
        .unwrap_or_else(|| ordering.clone())
}
