//! Prediction conditions: the predicted final value of a series, from the
//! schedule-aware loss-curve fit (`fit_loss_curve` / `predict_loss_curve`),
//! compared with a threshold or with a baseline run's final value.
//!
//! A fit reads the series so far (and the learning rate), so it runs on its
//! own task every `every` points, at most one at a time per condition and
//! series; its event is logged on its own ([`Store::append_events`]) and
//! carries the prediction and its interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use datafusion::common::ScalarValue;
use futures::TryStreamExt;
use steplake_core::{ConditionSpec, Event, Predicted};
use steplake_query::{QueryEngine, QueryError};
use steplake_store::{now_us, Store};

use super::notify::Notifier;

/// One prediction condition on one series: points since its last fit.
pub(crate) struct FitState {
    pub(crate) condition: usize,
    since_fit: u64,
    every: u64,
    shared: Arc<FitShared>,
}

/// What a fit task and the series share.
#[derive(Default)]
pub(crate) struct FitShared {
    /// A fit is running: the next one waits for it.
    running: AtomicBool,
    /// The last fit found the prediction worse than the threshold: the
    /// condition fires again only after one that does not.
    firing: AtomicBool,
}

impl FitState {
    /// Condition `condition` of the run, fitted every `every` points.
    ///
    /// `firing`: the condition's last stored event on this series may
    /// still stand (the state is rebuilt after a restart or a condition
    /// change, and the in-memory state went with the old one). It is then
    /// taken to be firing, so the same prediction does not fire again, and
    /// the series' next point fits at once to confirm or clear that.
    pub(crate) fn new(condition: usize, every: u64, firing: bool) -> Self {
        let every = every.max(1);
        FitState {
            condition,
            since_fit: if firing { every - 1 } else { 0 },
            every,
            shared: Arc::new(FitShared {
                running: AtomicBool::new(false),
                firing: AtomicBool::new(firing),
            }),
        }
    }

    /// Counts a point; `true` when a fit is due now (and none runs).
    pub(crate) fn count_point(&mut self) -> bool {
        self.since_fit += 1;
        if self.since_fit < self.every || self.shared.running.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.since_fit = 0;
        true
    }

    pub(crate) fn shared(&self) -> Arc<FitShared> {
        self.shared.clone()
    }
}

impl FitShared {
    /// Whether the condition is taken to be firing on this series.
    #[cfg(test)]
    pub(crate) fn firing(&self) -> bool {
        self.firing.load(Ordering::SeqCst)
    }
}

/// A fit that is due, with the point that made it due.
pub(crate) struct FitRequest {
    pub(crate) spec: ConditionSpec,
    pub(crate) series: String,
    pub(crate) step: i64,
    pub(crate) value: f64,
    pub(crate) time_us: i64,
    pub(crate) state: Arc<FitShared>,
}

/// Fits, compares, and logs and announces an event when the prediction
/// has just become worse than the threshold.
pub(crate) async fn fit(
    store: Arc<Store>,
    engine: Arc<QueryEngine>,
    notifier: Notifier,
    run_id: String,
    request: FitRequest,
) {
    let outcome = evaluate(&engine, &run_id, &request).await;
    let state = &request.state;
    match outcome {
        Ok(Some(predicted)) => {
            let worse = predicted.value > predicted.threshold;
            if !worse {
                state.firing.store(false, Ordering::SeqCst);
            } else if !state.firing.swap(true, Ordering::SeqCst) {
                let spec = &request.spec;
                let event = Event {
                    id: Event::id_for(&run_id, &spec.id, &request.series, request.step),
                    seq: 0,
                    run_id: run_id.clone(),
                    condition_id: spec.id.clone(),
                    label: spec.label.clone(),
                    series: request.series.clone(),
                    step: request.step,
                    value: request.value,
                    time_us: request.time_us,
                    detected_at_us: now_us(),
                    predicted: Some(predicted),
                };
                match store.append_events(&run_id, vec![event]).await {
                    Ok(()) => notifier.events_stored(&run_id),
                    Err(error) => {
                        // Fire again at the next fit.
                        state.firing.store(false, Ordering::SeqCst);
                        tracing::warn!(run = %run_id, %error, "storing a prediction event failed");
                    }
                }
            }
        }
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(run = %run_id, condition = %request.spec.id, %error, "a prediction condition's fit failed");
        }
    }
    state.running.store(false, Ordering::SeqCst);
}

/// The prediction and the threshold it is compared with; `None` while the
/// series is too short to fit or the baseline run has no value.
async fn evaluate(
    engine: &QueryEngine,
    run_id: &str,
    request: &FitRequest,
) -> Result<Option<Predicted>, QueryError> {
    let Some(prediction) = &request.spec.prediction else {
        return Ok(None);
    };
    let threshold = match (&prediction.baseline_run_id, prediction.above) {
        (Some(baseline), _) => {
            let last = rows(
                engine,
                "SELECT value FROM scalars WHERE run_id = $1 AND name = $2 ORDER BY step DESC LIMIT 1",
                vec![text(baseline), text(&request.series)],
            )
            .await?;
            match first_f64(&last, 0) {
                Some(value) => value,
                None => return Ok(None),
            }
        }
        (None, Some(above)) => above,
        (None, None) => return Ok(None),
    };
    // The fit of the run's series (against its learning rate, when named),
    // predicted at the final step.
    let lr_series = Some(prediction.lr_series.as_str()).filter(|lr| !lr.is_empty());
    let (sql, parameters) = steplake_query::prediction::prediction_query(
        run_id,
        &request.series,
        lr_series,
        &[prediction.final_step],
        prediction.level,
    );
    let fitted = rows(engine, &sql, parameters).await?;
    let (Some(value), Some(lo), Some(hi)) = (
        first_f64(&fitted, 1),
        first_f64(&fitted, 2),
        first_f64(&fitted, 3),
    ) else {
        return Ok(None);
    };
    Ok(Some(Predicted {
        final_step: prediction.final_step,
        value,
        lo,
        hi,
        threshold,
    }))
}

fn text(s: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(s.to_string()))
}

async fn rows(
    engine: &QueryEngine,
    sql: &str,
    parameters: Vec<ScalarValue>,
) -> Result<Vec<RecordBatch>, QueryError> {
    let (_, stream) = engine.sql_with_parameters(sql, parameters).await?;
    stream
        .try_collect()
        .await
        .map_err(QueryError::from_execution)
}

/// The first row's value of column `column`, when it is a number.
fn first_f64(batches: &[RecordBatch], column: usize) -> Option<f64> {
    let batch = batches.iter().find(|b| b.num_rows() > 0)?;
    let array = batch.column(column).as_primitive_opt::<Float64Type>()?;
    (!array.is_null(0))
        .then(|| array.value(0))
        .filter(|v| v.is_finite())
}
