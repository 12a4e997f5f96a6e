//! AddCondition, RemoveCondition and ListConditions: a predicate is
//! checked here, where it will be evaluated, before the store keeps it.

use steplake_core::{validate_run_id, ConditionScope, ConditionSpec, PredictionSpec};
use steplake_proto::v1::{
    AddConditionRequest, Condition as WireCondition, Prediction as WirePrediction,
};
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
    mut request: AddConditionRequest,
) -> Result<String, Status> {
    let scope = requested_scope(&request.run_id, &request.project)?;
    let hold = request.hold.max(1);
    let prediction = match request.predict.take() {
        Some(wire) => {
            let prediction = checked_prediction(wire, &request.predicate)?;
            request.predicate = describe(&prediction);
            Some(prediction)
        }
        None => {
            Condition::parse(
                &request.predicate,
                usize::try_from(hold).unwrap_or(usize::MAX),
            )
            .map_err(|e| Status::invalid_argument(format!("invalid condition: {e}")))?;
            None
        }
    };
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
        prediction,
    };
    let id = spec.id.clone();
    store.set_condition(spec).await.map_err(store_status)?;
    evaluator.conditions_changed();
    Ok(id)
}

/// Points between two fits when the request leaves it to us.
const DEFAULT_FIT_EVERY: u64 = 500;
/// The prediction interval's level when the request leaves it to us.
const DEFAULT_LEVEL: f64 = 0.95;

/// Checks a prediction condition's request.
fn checked_prediction(wire: WirePrediction, predicate: &str) -> Result<PredictionSpec, Status> {
    let invalid = |reason: &str| {
        Err(Status::invalid_argument(format!(
            "invalid prediction condition: {reason}"
        )))
    };
    if !predicate.is_empty() {
        return invalid("give a predicate or a prediction, not both");
    }
    if wire.final_step <= 0 {
        return invalid("final_step must be the run's last step (> 0)");
    }
    let level = if wire.level == 0.0 {
        DEFAULT_LEVEL
    } else {
        wire.level
    };
    if !(level > 0.0 && level < 1.0) {
        return invalid("level must be between 0 and 1 (0.95 for a 95 % interval)");
    }
    let baseline_run_id = (!wire.baseline_run_id.is_empty()).then_some(wire.baseline_run_id);
    if let Some(baseline) = &baseline_run_id {
        validate_run_id(baseline).map_err(|e| {
            Status::invalid_argument(format!(
                "invalid prediction condition: baseline_run_id: {e}"
            ))
        })?;
    } else if !wire.above.is_finite() {
        return invalid("above must be a number");
    }
    Ok(PredictionSpec {
        final_step: wire.final_step,
        lr_series: wire.lr_series,
        above: baseline_run_id.is_none().then_some(wire.above),
        baseline_run_id,
        every: if wire.every == 0 {
            DEFAULT_FIT_EVERY
        } else {
            wire.every
        },
        level,
    })
}

/// How a prediction condition reads in the `conditions` table.
fn describe(prediction: &PredictionSpec) -> String {
    let threshold = match (&prediction.baseline_run_id, prediction.above) {
        (Some(run), _) => format!("the final value of run {run}"),
        (None, Some(above)) => above.to_string(),
        (None, None) => "nothing".to_string(),
    };
    let lr = if prediction.lr_series.is_empty() {
        "a constant learning rate".to_string()
    } else {
        format!("learning rate {}", prediction.lr_series)
    };
    format!(
        "predicted value at step {} (fit_loss_curve with {lr}, every {} points) > {threshold}",
        prediction.final_step, prediction.every
    )
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
