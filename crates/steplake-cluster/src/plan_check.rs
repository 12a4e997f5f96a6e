//! Statements a cluster would answer wrongly, refused before they are
//! shipped.
//!
//! Ballista ships each stage's physical plan to the executors through
//! DataFusion's plan codec, and DataFusion 55's codec drops `IGNORE NULLS`
//! from window functions such as `last_value`, `first_value`, `nth_value`,
//! `lag` and `lead` (it keeps it for aggregates used as windows). An
//! executor would then answer as if `RESPECT NULLS` had been written: a
//! wrong answer, not an error. Such statements are refused with a message
//! that says how to run them.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::expr::{NullTreatment, WindowFunction};
use datafusion::logical_expr::{Expr, LogicalPlan, WindowFunctionDefinition};

/// `Err` with the reason and what to do when `plan` holds something the
/// cluster cannot run as one process would; for
/// [`steplake_query::QueryEngine::with_plan_check`].
pub fn refuse_what_a_cluster_runs_wrong(plan: &LogicalPlan) -> Result<(), String> {
    let mut refused = None;
    let _ = plan.apply_with_subqueries(|node| {
        for expr in node.expressions() {
            let _ = expr.apply(|e| {
                if let Expr::WindowFunction(window) = e {
                    if let Some(name) = ignore_nulls_window_function(window) {
                        refused = Some(name);
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(if refused.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    match refused {
        None => Ok(()),
        Some(name) => Err(format!(
            "{name}(...) IGNORE NULLS cannot run on a cluster: the plan Ballista ships to its executors loses IGNORE NULLS, which would change the answer. Run this statement on one process (steplake sql --server or --object-store), or drop the NULL rows in a subquery first"
        )),
    }
}

/// The window function's name when it is one whose `IGNORE NULLS` the
/// plan codec drops.
fn ignore_nulls_window_function(window: &WindowFunction) -> Option<String> {
    let ignores = window.params.null_treatment == Some(NullTreatment::IgnoreNulls);
    match &window.fun {
        WindowFunctionDefinition::WindowUDF(udwf) if ignores => Some(udwf.name().to_string()),
        _ => None,
    }
}
