//! The SQL of a series' predicted course: the schedule-aware loss-curve fit
//! of one run's series (`fit_loss_curve`, issue 12), predicted at chosen
//! steps with its interval (`predict_loss_curve`).
//!
//! Two callers ask the same question, so they share this statement: a
//! prediction condition (the server's watch) compares the prediction at
//! the run's final step with a threshold, and the dashboard draws the
//! prediction from the last logged step to the final one.
//!
//! [`prediction_query`] gives the statement and its parameters: `$1` the
//! run id, `$2` the series name and, when the fit follows a learning-rate
//! series, `$3` its name. Every logged step of the
//! rate is fitted, the series NULL where it is not logged yet, so a planned
//! schedule logged ahead shapes the prediction. Without a rate series the
//! rate is taken to be constant.
//!
//! Columns: `step`, `value`, `lo`, `hi`, one row per step asked for, in
//! step order; the last three NULL while the series is too short to fit.

use datafusion::common::ScalarValue;

/// The statement predicting series `series` of run `run_id` (fitted against
/// learning-rate series `lr_series`, if any) at `steps` with intervals of
/// `level` (0.95: 95 %), and its parameters.
pub fn prediction_query(
    run_id: &str,
    series: &str,
    lr_series: Option<&str>,
    steps: &[i64],
    level: f64,
) -> (String, Vec<ScalarValue>) {
    let text = |s: &str| ScalarValue::Utf8(Some(s.to_string()));
    let mut parameters = vec![text(run_id), text(series)];
    parameters.extend(lr_series.map(text));
    (
        prediction_statement(lr_series.is_some(), steps, level),
        parameters,
    )
}

fn prediction_statement(with_lr_series: bool, steps: &[i64], level: f64) -> String {
    let fitted = if with_lr_series {
        "SELECT fit_loss_curve(r.step, s.value, r.value) AS f FROM scalars r \
         LEFT JOIN scalars s ON s.run_id = r.run_id AND s.step = r.step AND s.name = $2 \
         WHERE r.run_id = $1 AND r.name = $3"
    } else {
        "SELECT fit_loss_curve(step, value, 1.0) AS f FROM scalars WHERE run_id = $1 AND name = $2"
    };
    let steps: Vec<String> = steps.iter().map(i64::to_string).collect();
    format!(
        "SELECT step, p['value'] AS value, p['lo'] AS lo, p['hi'] AS hi FROM \
         (SELECT t.step, predict_loss_curve(f, t.step, {level:?}) AS p \
          FROM ({fitted}) CROSS JOIN (SELECT unnest([{steps}]) AS step) t) ORDER BY step",
        steps = steps.join(", "),
    )
}
