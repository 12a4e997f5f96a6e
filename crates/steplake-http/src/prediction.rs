//! `GET /api/prediction?run=R&name=N&final=STEP[&lr=NAME&level=0.95&points=64]`:
//! where series `N` of run `R` is heading. The schedule-aware loss-curve
//! fit of the series so far (issue 12; against learning-rate series `lr`
//! when named, else a constant rate), predicted with its interval at
//! `points` steps from the series' last logged step to `final`. A
//! workspace panel draws it as a dashed extension of the curve.
//!
//! The answer: `{"run_id", "name", "last_step", "final_step", "level",
//! "fitted", "step": [...], "value": [...], "lo": [...], "hi": [...]}`;
//! `fitted` is false, and the lists empty, while the series is too short
//! to fit.

use axum::extract::{Query, State};
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::json;
use steplake_query::prediction::prediction_query;
use steplake_query::QueryError;

use crate::api::literal;
use crate::columns::{float_values, i64s};
use crate::error::ApiError;
use crate::json::Json;
use crate::Dashboard;

/// Steps predicted when the page does not say.
const DEFAULT_POINTS: usize = 64;
/// Most steps one answer predicts.
pub(crate) const MAX_POINTS: usize = 1_000;
/// The interval's level when the page does not say.
const DEFAULT_LEVEL: f64 = 0.95;

/// Parameters of `/api/prediction`.
#[derive(Debug, Deserialize)]
pub(crate) struct PredictionParams {
    run: String,
    name: String,
    /// The step to predict to: the run's planned last step.
    #[serde(rename = "final")]
    final_step: Option<i64>,
    /// The run's learning-rate series; none: a constant rate.
    lr: Option<String>,
    /// The interval's level, in (0, 1).
    level: Option<f64>,
    /// Steps to predict at, from the last logged one to `final`.
    points: Option<usize>,
}

/// The prediction of one series of one run.
pub(crate) async fn prediction(
    State(dashboard): State<Dashboard>,
    Query(params): Query<PredictionParams>,
) -> Result<Json, ApiError> {
    let level = params.level.unwrap_or(DEFAULT_LEVEL);
    if !(level > 0.0 && level < 1.0) {
        return Err(ApiError::parameter(
            "level",
            format!("{level}: give the interval's level between 0 and 1, such as 0.95"),
        ));
    }
    let Some(final_step) = params.final_step else {
        return Err(ApiError::parameter(
            "final",
            "missing: give the step to predict to (the run's planned last step)",
        ));
    };
    let lr = params
        .lr
        .as_deref()
        .map(str::trim)
        .filter(|lr| !lr.is_empty());
    let (_, last) = dashboard
        .engine
        .sql_collect(&format!(
            "SELECT max(step) AS last FROM scalars WHERE run_id = {} AND name = {}",
            literal(&params.run),
            literal(&params.name)
        ))
        .await?;
    let Some(last_step) = i64s(&last, "last")?.first().copied().flatten() else {
        return Err(ApiError::BadRequest(format!(
            "run {:?} has no series {:?}: pick a series the run has logged",
            params.run, params.name
        )));
    };
    if final_step <= last_step {
        return Err(ApiError::parameter(
            "final",
            format!("{final_step}: the series is logged up to step {last_step}; predict to a later step"),
        ));
    }
    let steps = spaced_steps(
        last_step,
        final_step,
        params.points.unwrap_or(DEFAULT_POINTS).clamp(2, MAX_POINTS),
    );
    let (sql, parameters) = prediction_query(&params.run, &params.name, lr, &steps, level);
    let (_, stream) = dashboard
        .engine
        .sql_with_parameters(&sql, parameters)
        .await?;
    let batches: Vec<_> = stream
        .try_collect()
        .await
        .map_err(QueryError::from_execution)?;
    let values = float_values(&batches, "value")?;
    let fitted = values.first().is_some_and(|v| !v.is_null());
    let column = |name: &str| -> Result<Vec<serde_json::Value>, ApiError> {
        Ok(if fitted {
            float_values(&batches, name)?
        } else {
            Vec::new()
        })
    };
    Ok(Json(json!({
        "run_id": params.run,
        "name": params.name,
        "last_step": last_step,
        "final_step": final_step,
        "level": level,
        "fitted": fitted,
        "step": if fitted { i64s(&batches, "step")? } else { Vec::new() },
        "value": column("value")?,
        "lo": column("lo")?,
        "hi": column("hi")?,
    })))
}

/// `points` steps from `first` to `last` (both included), evenly spaced,
/// fewer when the range has fewer steps.
fn spaced_steps(first: i64, last: i64, points: usize) -> Vec<i64> {
    let span = (last - first) as f64;
    let n = (points as i64).min(last - first + 1).max(2) as usize;
    let mut steps: Vec<i64> = (0..n)
        .map(|i| first + (span * i as f64 / (n - 1) as f64).round() as i64)
        .collect();
    steps.dedup();
    steps
}

#[cfg(test)]
mod tests {
    use super::spaced_steps;

    #[test]
    fn spaced_steps_include_both_ends_and_never_repeat() {
        assert_eq!(spaced_steps(100, 200, 5), vec![100, 125, 150, 175, 200]);
        assert_eq!(spaced_steps(10, 12, 64), vec![10, 11, 12]);
        assert_eq!(spaced_steps(0, 1, 2), vec![0, 1]);
        let many = spaced_steps(1999, 10_000, 64);
        assert_eq!((many[0], many[63], many.len()), (1999, 10_000, 64));
        assert!(many.windows(2).all(|w| w[0] < w[1]));
    }
}
