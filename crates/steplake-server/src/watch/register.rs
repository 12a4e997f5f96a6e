//! AddCondition, RemoveCondition and ListConditions: a predicate is
//! checked here, where it will be evaluated, before the store keeps it.

use steplake_core::{ConditionScope, ConditionSpec};
use steplake_proto::v1::{AddConditionRequest, Condition as WireCondition};
use steplake_query::condition::Condition;
use steplake_store::{now_us, random_id, Store};
use tonic::Status;

use super::Evaluator;
use crate::status::store_status;

/// Which runs a request's conditions are about: its run, else its project.
pub(crate) fn requested_scope(run_id: &str, project: &str) -> Result<ConditionScope, Status> {
    match (run_id.is_empty(), project.is_empty()) {
        (false, true) => Ok(ConditionScope::Run(run_id.to_string())),
        (true, false) => Ok(ConditionScope::Project(project.to_string())),
        (false, false) => Err(Status::invalid_argument(
            "invalid condition: name either a run_id (one run) or a project (every run of it), not both",
        )),
        (true, true) => Err(Status::invalid_argument(
            "invalid condition: name the run_id it watches, or a project whose every run it watches",
        )),
    }
}

/// Checks and stores a condition; returns its id.
pub(crate) async fn add_condition(
    store: &Store,
    evaluator: &Evaluator,
    request: AddConditionRequest,
) -> Result<String, Status> {
    let scope = requested_scope(&request.run_id, &request.project)?;
    let hold = request.hold.max(1);
    Condition::parse(
        &request.predicate,
        usize::try_from(hold).unwrap_or(usize::MAX),
    )
    .map_err(|e| Status::invalid_argument(format!("invalid condition: {e}")))?;
    let spec = ConditionSpec {
        id: format!("c{}", random_id()),
        scope,
        series: request.series,
        label: if request.label.is_empty() {
            request.predicate.clone()
        } else {
            request.label
        },
        predicate: request.predicate,
        hold,
        created_at_us: now_us(),
    };
    let id = spec.id.clone();
    store.set_condition(spec).await.map_err(store_status)?;
    evaluator.conditions_changed();
    Ok(id)
}

/// Removes a condition.
pub(crate) async fn remove_condition(
    store: &Store,
    evaluator: &Evaluator,
    condition_id: &str,
) -> Result<(), Status> {
    store
        .remove_condition(condition_id)
        .await
        .map_err(store_status)?;
    evaluator.conditions_changed();
    Ok(())
}

/// The conditions watching run `run_id` (its own and its project's), or
/// the defaults of `project`.
pub(crate) fn list_conditions(
    store: &Store,
    scope: &ConditionScope,
) -> Result<Vec<WireCondition>, Status> {
    let run_project = match scope {
        ConditionScope::Run(run_id) => Some((
            run_id.as_str(),
            store.run_project(run_id).ok_or_else(|| {
                Status::not_found(format!("run {run_id:?} does not exist; create it first"))
            })?,
        )),
        ConditionScope::Project(_) => None,
    };
    Ok(store
        .conditions()
        .into_iter()
        .filter(|spec| match &run_project {
            Some((run_id, project)) => spec.applies_to(run_id, project),
            None => &spec.scope == scope,
        })
        .map(|spec| {
            let (run_id, project) = match spec.scope {
                ConditionScope::Run(id) => (id, String::new()),
                ConditionScope::Project(p) => (String::new(), p),
            };
            WireCondition {
                condition_id: spec.id,
                run_id,
                project,
                series: spec.series,
                predicate: spec.predicate,
                hold: spec.hold,
                label: spec.label,
                created_at_us: spec.created_at_us,
            }
        })
        .collect())
}
