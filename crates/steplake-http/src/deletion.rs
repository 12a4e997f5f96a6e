//! `DELETE /api/runs/{run}` and `DELETE /api/projects/{project}`: deleting
//! data on a running server, an admin action (see `access`).
//!
//! The answer comes once the deletion is durable and done (see
//! `Store::delete_runs`): `{"deleted": [run ids]}`, or 404 when nothing
//! matched.

use axum::extract::{Path, State};
use serde_json::json;
use steplake_store::RunSelector;

use crate::error::ApiError;
use crate::json::Json;
use crate::Dashboard;

/// `DELETE /api/runs/{run}`: deletes one run with all its data.
pub(crate) async fn delete_run(
    State(dashboard): State<Dashboard>,
    Path(run): Path<String>,
) -> Result<Json, ApiError> {
    delete(dashboard, RunSelector::Run(run)).await
}

/// `DELETE /api/projects/{project}`: deletes every run of a project.
pub(crate) async fn delete_project(
    State(dashboard): State<Dashboard>,
    Path(project): Path<String>,
) -> Result<Json, ApiError> {
    delete(dashboard, RunSelector::Project(project)).await
}

async fn delete(dashboard: Dashboard, selector: RunSelector) -> Result<Json, ApiError> {
    let store = dashboard.store.clone();
    let deleted = tokio::task::spawn_blocking(move || store.delete_runs(selector))
        .await
        .map_err(|e| {
            ApiError::Store(steplake_store::StoreError::Unavailable {
                reason: format!("the deletion stopped: {e}"),
            })
        })?
        .map_err(ApiError::Store)?;
    Ok(Json(json!({ "deleted": deleted })))
}
