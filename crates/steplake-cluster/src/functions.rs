//! steplake's SQL functions where Ballista looks for them: the scheduler's
//! session state and the executors' function registry.

use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::execution::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};

/// `state` with every steplake function registered (DataFusion's own stay).
pub fn with_steplake_functions(state: SessionState) -> SessionState {
    let ctx = SessionContext::new_with_state(state);
    steplake_query::functions::register(&ctx);
    ctx.state()
}

/// A session state for `config` with DataFusion's defaults and steplake's
/// functions: what the scheduler plans each job with.
pub fn session_state(config: SessionConfig) -> SessionState {
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    with_steplake_functions(state)
}

/// The functions an executor can decode: DataFusion's and steplake's.
pub fn executor_registry() -> BallistaFunctionRegistry {
    BallistaFunctionRegistry::from(&session_state(SessionConfig::new()))
}
