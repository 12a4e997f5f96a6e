//! steplake's SQL functions where Ballista looks for them: the scheduler's
//! session state and the executors' function registry.

use ballista_core::registry::BallistaFunctionRegistry;
use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

/// `state` with every steplake function registered (DataFusion's own stay),
/// and the physical rule that keeps shipped window stages valid
/// (`shuffle_order.rs`).
pub fn with_steplake_functions(state: SessionState) -> SessionState {
    let state = SessionStateBuilder::new_from_existing(state)
        .with_physical_optimizer_rule(Arc::new(crate::shuffle_order::SortAfterOrderedShuffles))
        .build();
    let ctx = SessionContext::new_with_state(state);
    register(&ctx);
    ctx.state()
}

/// Registers on `ctx` steplake's functions, and the rewrite that keeps
/// `IGNORE NULLS` in window functions across the cluster.
pub fn register(ctx: &SessionContext) {
    steplake_query::functions::register(ctx);
    crate::ignore_nulls::register(ctx);
}

/// A session state for `config` with DataFusion's defaults and steplake's
/// functions.
pub fn session_state(config: SessionConfig) -> SessionState {
    with_steplake_functions(defaults(config).build())
}

/// [`session_state`] on `runtime` (one that reads the bucket): what the
/// scheduler plans each job with.
pub fn session_state_on(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> SessionState {
    with_steplake_functions(defaults(config).with_runtime_env(runtime).build())
}

fn defaults(config: SessionConfig) -> SessionStateBuilder {
    SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
}

/// The functions an executor can decode: DataFusion's and steplake's.
pub fn executor_registry() -> BallistaFunctionRegistry {
    BallistaFunctionRegistry::from(&session_state(SessionConfig::new()))
}
