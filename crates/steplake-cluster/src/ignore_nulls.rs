//! `IGNORE NULLS` on window functions, carried in the function's name so that
//! it survives the trip to the executors.
//!
//! Ballista ships each stage's physical plan to the executors through
//! DataFusion's plan codec, and DataFusion 55's codec drops `IGNORE NULLS`
//! from window functions such as `last_value`, `first_value`, `nth_value`,
//! `lag` and `lead` (it keeps it on aggregates used as windows and in logical
//! plans). Left alone, an executor would answer as if `RESPECT NULLS` had been
//! written: a wrong answer, not an error.
//!
//! So before a plan leaves the process that planned it, [`IgnoreNullsByName`]
//! rewrites `f(x) IGNORE NULLS OVER (...)` into `"f ignore nulls"(x) OVER
//! (...)`: a window function ([`IgnoringNulls`]) that runs `f` as if
//! `IGNORE NULLS` had been given, and that the codec ships by name like any
//! other function. [`register`] puts the rule and one such function per
//! window function into a session; clients, schedulers and executors all
//! have them, so every one of them decodes what another encoded. Column
//! names stay those of the statement as written.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Result;
use datafusion::logical_expr::expr::{NullTreatment, WindowFunction};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::function::{
    ExpressionArgs, PartitionEvaluatorArgs, WindowUDFFieldArgs,
};
use datafusion::logical_expr::{
    Documentation, Expr, LimitEffect, LogicalPlan, PartitionEvaluator, ReversedUDWF, Signature,
    WindowFunctionDefinition, WindowUDF, WindowUDFImpl,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

/// Adds to `ctx` the rewrite ([`IgnoreNullsByName`]) and, for every window
/// function `ctx` knows, the function the rewrite calls in its place.
pub(crate) fn register(ctx: &SessionContext) {
    let by_name: BTreeMap<String, Arc<WindowUDF>> = ctx
        .state()
        .window_functions()
        .values()
        .map(|udwf| (udwf.name().to_string(), Arc::clone(udwf)))
        .collect();
    for udwf in by_name.into_values() {
        ctx.register_udwf(ignoring_nulls(udwf));
    }
    ctx.add_analyzer_rule(Arc::new(IgnoreNullsByName));
}

/// The name of the window function that runs `inner` with `IGNORE NULLS`.
fn ignoring_nulls_name(inner: &str) -> String {
    format!("{inner} ignore nulls")
}

fn ignoring_nulls(inner: Arc<WindowUDF>) -> WindowUDF {
    WindowUDF::new_from_impl(IgnoringNulls {
        name: ignoring_nulls_name(inner.name()),
        inner,
    })
}

/// Rewrites each window function call with `IGNORE NULLS` into a call of
/// its [`IgnoringNulls`] twin, keeping the column's name.
#[derive(Debug)]
pub(crate) struct IgnoreNullsByName;

impl AnalyzerRule for IgnoreNullsByName {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            if !matches!(node, LogicalPlan::Window(_)) {
                return Ok(Transformed::no(node));
            }
            let names = NamePreserver::new(&node);
            node.map_expressions(|expr| {
                let saved = names.save(&expr);
                let rewritten = expr.transform_up(rewrite_call)?;
                Ok(if rewritten.transformed {
                    rewritten.update_data(|expr| saved.restore(expr))
                } else {
                    rewritten
                })
            })
        })
        .map(|rewritten| rewritten.data)
    }

    fn name(&self) -> &str {
        "steplake_ignore_nulls_by_name"
    }
}

fn rewrite_call(expr: Expr) -> Result<Transformed<Expr>> {
    let Expr::WindowFunction(window) = expr else {
        return Ok(Transformed::no(expr));
    };
    let WindowFunction { fun, params } = *window;
    match fun {
        WindowFunctionDefinition::WindowUDF(udwf)
            if params.null_treatment == Some(NullTreatment::IgnoreNulls) =>
        {
            let mut params = params;
            params.null_treatment = None;
            let fun = WindowFunctionDefinition::WindowUDF(Arc::new(ignoring_nulls(udwf)));
            Ok(Transformed::yes(Expr::WindowFunction(Box::new(
                WindowFunction { fun, params },
            ))))
        }
        fun => Ok(Transformed::no(Expr::WindowFunction(Box::new(
            WindowFunction { fun, params },
        )))),
    }
}

/// A window function that runs `inner` as if the call said `IGNORE NULLS`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct IgnoringNulls {
    name: String,
    inner: Arc<WindowUDF>,
}

impl WindowUDFImpl for IgnoringNulls {
    fn name(&self) -> &str {
        &self.name
    }

    // No aliases: registering this must not take over the inner function's.
    fn aliases(&self) -> &[String] {
        &[]
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn expressions(&self, expr_args: ExpressionArgs) -> Vec<Arc<dyn PhysicalExpr>> {
        self.inner.inner().expressions(expr_args)
    }

    fn partition_evaluator(
        &self,
        args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        self.inner
            .partition_evaluator_factory(PartitionEvaluatorArgs::new(
                args.input_exprs(),
                args.input_fields(),
                args.is_reversed(),
                true,
            ))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        self.inner.inner().field(field_args)
    }

    fn sort_options(&self) -> Option<SortOptions> {
        self.inner.sort_options()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn reverse_expr(&self) -> ReversedUDWF {
        match self.inner.reverse_expr() {
            ReversedUDWF::Reversed(reversed) => {
                ReversedUDWF::Reversed(Arc::new(ignoring_nulls(reversed)))
            }
            same_or_unsupported => same_or_unsupported,
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn limit_effect(&self, args: &[Arc<dyn PhysicalExpr>]) -> LimitEffect {
        self.inner.inner().limit_effect(args)
    }
}
