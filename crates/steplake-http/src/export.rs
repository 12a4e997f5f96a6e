//! `GET /api/export.csv?runs=a,b&name=N[&start=S&end=E]`: the points of one
//! series of some runs over a step range, at full resolution, as CSV
//! (`run_id,step,wall_time,value`; wall time in microseconds since the
//! epoch; NaN and ±Infinity as `NaN`, `inf`, `-inf`): what a workspace
//! panel shows, downloaded.

use std::fmt::Write;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::api::{one_series_filter, run_list};
use crate::columns::{i64s, strings};
use crate::error::ApiError;
use crate::Dashboard;

/// Most rows one export gives; a wider range is refused with this number.
pub(crate) const MAX_EXPORT_ROWS: usize = 5_000_000;

/// Parameters of `/api/export.csv`.
#[derive(Debug, Deserialize)]
pub(crate) struct ExportParams {
    runs: String,
    name: String,
    start: Option<i64>,
    end: Option<i64>,
}

/// The CSV of the points asked for.
pub(crate) async fn export_csv(
    State(dashboard): State<Dashboard>,
    Query(params): Query<ExportParams>,
) -> Result<Response, ApiError> {
    let runs = run_list(&params.runs)?;
    let filter = one_series_filter(&runs, &params.name, params.start, params.end);
    let sql = format!(
        "SELECT run_id, step, CAST(wall_time AS BIGINT) AS wall_time, value \
         FROM scalars WHERE {filter} ORDER BY run_id, step LIMIT {}",
        MAX_EXPORT_ROWS + 1
    );
    let (_, batches) = dashboard.engine.sql_collect(&sql).await?;
    let ids = strings(&batches, "run_id")?;
    if ids.len() > MAX_EXPORT_ROWS {
        return Err(ApiError::BadRequest(format!(
            "more than {MAX_EXPORT_ROWS} points: export a narrower step range (start, end)"
        )));
    }
    let steps = i64s(&batches, "step")?;
    let times = i64s(&batches, "wall_time")?;
    let values = crate::columns::f64s(&batches, "value")?;
    let mut csv = String::with_capacity(32 * ids.len() + 32);
    csv.push_str("run_id,step,wall_time,value\n");
    for (((id, step), time), value) in ids.iter().zip(&steps).zip(&times).zip(&values) {
        let cell = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        let value = value.map(|v| v.to_string()).unwrap_or_default();
        let _ = writeln!(
            csv,
            "{},{},{},{value}",
            quoted(id.as_deref().unwrap_or("")),
            cell(*step),
            cell(*time)
        );
    }
    let file = format!(
        "attachment; filename=\"{}.csv\"",
        params.name.replace(
            |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '.',
            "_"
        )
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, file),
        ],
        csv,
    )
        .into_response())
}

/// A CSV field, quoted when it must be.
fn quoted(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}
