//! The dashboard's JSON API: read-only views over the same DataFusion
//! session the Flight SQL service uses. Every handler builds one SQL
//! statement (values quoted with [`literal`]) and shapes the result for the
//! page; nothing here can change data.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::columns::{float_values, i64s, int_lists, row_count, strings};
use crate::error::ApiError;
use crate::json::Json;
use crate::Dashboard;

/// A SQL string literal of `text`.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Largest chart width the API downsamples to, in buckets.
pub const MAX_WIDTH: usize = 10_000;
/// Default buckets when the page does not say.
pub const DEFAULT_WIDTH: usize = 1_000;
/// Rows the SQL box returns at most.
pub const SQL_ROW_LIMIT: usize = 10_000;

/// `GET /api/runs[?metrics=a,b]`: every run with its last step, point count,
/// configuration (a JSON object), lineage (`parent_run_id`, `fork_step`)
/// and, under `last`, the last value of each of `metrics` it has.
pub async fn runs(
    State(dashboard): State<Dashboard>,
    Query(params): Query<RunsTableParams>,
) -> Result<Json, ApiError> {
    let progress = run_progress(&dashboard).await?;
    let last_values = last_values(&dashboard, params.metrics.as_deref().unwrap_or("")).await?;
    let mut runs: Vec<Value> = dashboard
        .store
        .runs()
        .into_iter()
        .map(|run| {
            let (last_step, points) = progress.get(&run.run_id).cloned().unwrap_or((None, 0));
            // A configuration that is not a JSON object shows as none.
            let config = serde_json::from_str::<Value>(&run.config_json)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            json!({
                "run_id": run.run_id,
                "project": run.project,
                "name": run.name,
                "status": run.status,
                "created_at_ms": run.created_at_us / 1000,
                "ended_at_ms": run.ended_at_us.map(|t| t / 1000),
                "tags": run.tags,
                "last_step": last_step,
                "points": points,
                "config": config,
                "parent_run_id": run.parent_run_id,
                "fork_step": run.fork_step,
                "last": last_values.get(&run.run_id).cloned().unwrap_or_else(|| json!({})),
            })
        })
        .collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r["created_at_ms"].as_i64().unwrap_or(0)));
    Ok(Json(json!({ "runs": runs })))
}

/// Each run's last step and points: from the store's series summary when
/// it is exact (no data file read: with many points this is what kept the
/// runs table and the workspace waiting), else by SQL.
async fn run_progress(
    dashboard: &Dashboard,
) -> Result<BTreeMap<String, (Option<i64>, i64)>, ApiError> {
    let mut progress: BTreeMap<String, (Option<i64>, i64)> = BTreeMap::new();
    if let Some(series) = dashboard.store.scalar_series() {
        for s in series {
            let (last, points) = progress.entry(s.run_id).or_insert((None, 0));
            *last = Some(last.map_or(s.max_step, |l| l.max(s.max_step)));
            *points += i64::try_from(s.rows).unwrap_or(i64::MAX);
        }
        return Ok(progress);
    }
    let (_, batches) = dashboard
        .engine
        .sql_collect("SELECT run_id, max(step) AS last_step, count(*) AS points FROM scalars GROUP BY run_id")
        .await?;
    let ids = strings(&batches, "run_id")?;
    let last = i64s(&batches, "last_step")?;
    let points = i64s(&batches, "points")?;
    for ((id, last), points) in ids.into_iter().zip(last).zip(points) {
        if let Some(id) = id {
            progress.insert(id, (last, points.unwrap_or(0)));
        }
    }
    Ok(progress)
}

/// Most metrics whose last values `/api/runs` reports at once.
pub const MAX_METRIC_COLUMNS: usize = 20;

/// Parameters of `/api/runs`.
#[derive(Debug, Deserialize)]
pub struct RunsTableParams {
    /// Comma-separated series names whose last value each run reports.
    metrics: Option<String>,
}

/// For each run, `{metric: last value}` of the comma-separated `metrics`
/// (the value at the series' last step).
async fn last_values(
    dashboard: &Dashboard,
    metrics: &str,
) -> Result<BTreeMap<String, Value>, ApiError> {
    let names: Vec<String> = metrics
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(literal)
        .collect();
    let mut last: BTreeMap<String, Value> = BTreeMap::new();
    if names.is_empty() {
        return Ok(last);
    }
    if names.len() > MAX_METRIC_COLUMNS {
        return Err(ApiError::BadRequest(format!(
            "metrics: at most {MAX_METRIC_COLUMNS} names, got {}",
            names.len()
        )));
    }
    let sql = format!(
        "SELECT run_id, name, last_value(value ORDER BY step) AS value FROM scalars \
         WHERE name IN ({}) GROUP BY run_id, name",
        names.join(", ")
    );
    let (_, batches) = dashboard.engine.sql_collect(&sql).await?;
    let runs = strings(&batches, "run_id")?;
    let series = strings(&batches, "name")?;
    let values = float_values(&batches, "value")?;
    for ((run, name), value) in runs.into_iter().zip(series).zip(values) {
        if let (Some(run), Some(name)) = (run, name) {
            if let Some(of_run) = last.entry(run).or_insert_with(|| json!({})).as_object_mut() {
                of_run.insert(name, value);
            }
        }
    }
    Ok(last)
}

/// Runs named by a comma-separated `runs` parameter.
pub(crate) fn run_list(runs: &str) -> Result<Vec<String>, ApiError> {
    let list: Vec<String> = runs
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    if list.is_empty() {
        return Err(ApiError::parameter("runs", "name at least one run id"));
    }
    Ok(list)
}

pub(crate) fn runs_clause(runs: &[String]) -> String {
    let quoted: Vec<String> = runs.iter().map(|r| literal(r)).collect();
    format!("run_id IN ({})", quoted.join(", "))
}

/// The SQL filter of series `name` of `runs` over steps `[start, end]`
/// (either end open when `None`).
pub(crate) fn one_series_filter(
    runs: &[String],
    name: &str,
    start: Option<i64>,
    end: Option<i64>,
) -> String {
    let mut filter = format!("{} AND name = {}", runs_clause(runs), literal(name));
    if let Some(start) = start {
        filter.push_str(&format!(" AND step >= {start}"));
    }
    if let Some(end) = end {
        filter.push_str(&format!(" AND step <= {end}"));
    }
    filter
}

/// Parameters naming runs.
#[derive(Debug, Deserialize)]
pub struct RunsParams {
    runs: String,
}

/// `GET /api/names?runs=a,b`: the scalar series names of those runs.
pub async fn names(
    State(dashboard): State<Dashboard>,
    Query(params): Query<RunsParams>,
) -> Result<Json, ApiError> {
    let runs = run_list(&params.runs)?;
    // From the store's series summary when it has one: no data file read.
    if let Some(series) = dashboard.store.scalar_series() {
        let names: std::collections::BTreeSet<String> = series
            .into_iter()
            .filter(|s| runs.contains(&s.run_id))
            .map(|s| s.name)
            .collect();
        return Ok(Json(json!({ "names": names })));
    }
    distinct_names(&dashboard, "scalars", &runs_clause(&runs)).await
}

/// `{"names": [...]}`: the distinct names in `table` of rows matching `filter`.
async fn distinct_names(
    dashboard: &Dashboard,
    table: &str,
    filter: &str,
) -> Result<Json, ApiError> {
    let sql = format!("SELECT DISTINCT name FROM {table} WHERE {filter} ORDER BY name");
    let (_, batches) = dashboard.engine.sql_collect(&sql).await?;
    let names: Vec<String> = strings(&batches, "name")?.into_iter().flatten().collect();
    Ok(Json(json!({ "names": names })))
}

/// A point's wall time in milliseconds since the epoch, as SQL.
pub(crate) const WALL_TIME_MS: &str = "CAST(CAST(wall_time AS BIGINT) / 1000 AS BIGINT)";

/// Parameters of `/api/series`.
#[derive(Debug, Deserialize)]
pub struct SeriesParams {
    runs: String,
    name: String,
    /// `step` (default) or `wall_time` (milliseconds since the epoch; each
    /// run then also gives each x's first step, under `step`, so a page
    /// can turn a range of times into the range of steps to ask for).
    x: Option<String>,
    /// First step of the range (inclusive); the whole series when absent.
    start: Option<i64>,
    /// Last step of the range (inclusive).
    end: Option<i64>,
    /// Buckets to downsample to: the chart's width in pixels.
    width: Option<usize>,
}

/// `GET /api/series`: one series of several runs over `[start, end]`.
///
/// When the range holds at most two points per bucket the points come back
/// as they are (`downsampled: false`); otherwise each of `width` buckets of
/// steps gives its first x, its minimum, its maximum and its last value, so
/// no spike is lost at any zoom. Zooming in is asking again with a narrower
/// range: at full resolution once it is narrow enough.
pub async fn series(
    State(dashboard): State<Dashboard>,
    Query(params): Query<SeriesParams>,
) -> Result<Json, ApiError> {
    let runs = run_list(&params.runs)?;
    let width = params.width.unwrap_or(DEFAULT_WIDTH).clamp(1, MAX_WIDTH);
    let x = match params.x.as_deref().unwrap_or("step") {
        "step" => "step",
        "wall_time" => WALL_TIME_MS,
        other => {
            return Err(ApiError::parameter(
                "x",
                format!("{other:?}: use step or wall_time"),
            ))
        }
    };
    let filter = one_series_filter(&runs, &params.name, params.start, params.end);
    let (_, range) = dashboard
        .engine
        .sql_collect(&format!(
            "SELECT min(step) AS lo, max(step) AS hi, count(*) AS n FROM scalars WHERE {filter}"
        ))
        .await?;
    let (lo, hi, count) = match (
        i64s(&range, "lo")?.first().copied().flatten(),
        i64s(&range, "hi")?.first().copied().flatten(),
        i64s(&range, "n")?.first().copied().flatten().unwrap_or(0),
    ) {
        (Some(lo), Some(hi), n) if n > 0 => (lo, hi, n),
        _ => {
            return Ok(Json(json!({
                "downsampled": false, "points": 0, "start": null, "end": null, "runs": []
            })))
        }
    };
    let downsampled = count as usize > 2 * width;
    let sql = if downsampled {
        let span = (hi - lo + 1) as f64;
        format!(
            "SELECT run_id, CAST(floor((CAST(step AS DOUBLE) - {lo}) * {width} / {span}) AS BIGINT) AS bucket, \
             min({x}) AS x, min(value) AS lo, max(value) AS hi, last_value(value ORDER BY step) AS last, \
             min(step) AS first, max(step) AS top FROM scalars WHERE {filter} GROUP BY run_id, bucket ORDER BY run_id, bucket"
        )
    } else {
        format!(
            "SELECT run_id, {x} AS x, value AS lo, value AS hi, value AS last, step AS first, step AS top \
             FROM scalars WHERE {filter} ORDER BY run_id, step"
        )
    };
    let (_, batches) = dashboard.engine.sql_collect(&sql).await?;
    let ids = strings(&batches, "run_id")?;
    let xs = i64s(&batches, "x")?;
    let los = float_values(&batches, "lo")?;
    let his = float_values(&batches, "hi")?;
    let lasts = float_values(&batches, "last")?;
    let firsts = i64s(&batches, "first")?;
    let tops = i64s(&batches, "top")?;
    let mut per_run: Vec<(String, [Vec<Value>; 5], Option<i64>)> = Vec::new();
    for i in 0..ids.len() {
        let id = ids[i].clone().unwrap_or_default();
        if per_run.last().is_none_or(|(last, ..)| *last != id) {
            per_run.push((id, Default::default(), None));
        }
        if let Some((_, [x, lo, hi, last, first], last_step)) = per_run.last_mut() {
            x.push(json!(xs[i]));
            lo.push(json!(los[i]));
            hi.push(json!(his[i]));
            last.push(json!(lasts[i]));
            first.push(json!(firsts[i]));
            *last_step = (*last_step).max(tops[i]);
        }
    }
    // `last_step`: the run's last step in the range (a bucket's x is its
    // first), from which the live stream goes on.
    let by_time = x == WALL_TIME_MS;
    let runs: Vec<Value> = per_run
        .into_iter()
        .map(|(id, [x, lo, hi, last, first], last_step)| {
            let mut run = json!({ "run_id": id, "x": x, "lo": lo, "hi": hi, "last": last, "last_step": last_step });
            if by_time {
                run["step"] = Value::Array(first);
            }
            run
        })
        .collect();
    Ok(Json(json!({
        "downsampled": downsampled,
        "points": count,
        "start": lo,
        "end": hi,
        "runs": runs,
    })))
}

/// Most events `/api/events` returns per run (the latest).
pub const MAX_EVENTS: usize = 1_000;

/// `GET /api/events?runs=a,b`: the events standing conditions fired in
/// those runs, oldest first (at most [`MAX_EVENTS`] per run, the latest).
pub async fn events(
    State(dashboard): State<Dashboard>,
    Query(params): Query<RunsParams>,
) -> Result<Json, ApiError> {
    let mut events = Vec::new();
    for run in run_list(&params.runs)? {
        let mut of_run = dashboard.store.events(Some(&run), 0);
        let skip = of_run.len().saturating_sub(MAX_EVENTS);
        events.extend(of_run.drain(skip..));
    }
    events.sort_by_key(|e| e.seq);
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "run_id": e.run_id,
                "series": e.series,
                "step": e.step,
                "value": steplake_core::json::float_value(e.value),
                "label": e.label,
                "condition_id": e.condition_id,
                "event_id": e.id,
                "time_ms": e.time_us / 1000,
            })
        })
        .collect();
    Ok(Json(json!({ "events": events })))
}

/// Parameters naming one series of one run.
#[derive(Debug, Deserialize)]
pub struct OneSeriesParams {
    run: String,
    name: String,
}

/// Buckets a series is averaged into before its changepoints are found.
pub const CHANGEPOINT_BUCKETS: usize = 1_000;
/// Changepoints marked: those of the largest gain.
pub const MAX_CHANGEPOINTS: usize = 10;

/// `GET /api/markers?run=R&name=N`: spikes (`is_spike(value)` with its
/// defaults, over every point) and changepoints (`changepoints(step, value)` with its defaults over the
/// series averaged into [`CHANGEPOINT_BUCKETS`] buckets; the
/// [`MAX_CHANGEPOINTS`] of largest gain) of one series.
pub async fn markers(
    State(dashboard): State<Dashboard>,
    Query(params): Query<OneSeriesParams>,
) -> Result<Json, ApiError> {
    let filter = format!(
        "run_id = {} AND name = {}",
        literal(&params.run),
        literal(&params.name)
    );
    let (_, spikes) = dashboard
        .engine
        .sql_collect(&format!(
            "SELECT step, value FROM (SELECT step, value, is_spike(value) OVER (ORDER BY step) AS spike \
             FROM scalars WHERE {filter}) WHERE spike ORDER BY step LIMIT 1000"
        ))
        .await?;
    // Changepoints of the series averaged into at most CHANGEPOINT_BUCKETS
    // buckets: bounded work whatever the length (exact PELT is quadratic on
    // long smooth curves), placed to a bucket's first step.
    let (_, changes) = dashboard
        .engine
        .sql_collect(&format!(
            "WITH s AS (SELECT step, value FROM scalars WHERE {filter} AND value = value AND abs(value) < 1e308), \
             r AS (SELECT min(step) AS lo, max(step) AS hi FROM s), \
             b AS (SELECT min(s.step) AS step, avg(s.value) AS value FROM s CROSS JOIN r \
                   GROUP BY CAST(floor((CAST(s.step AS DOUBLE) - r.lo) * {CHANGEPOINT_BUCKETS} / (r.hi - r.lo + 1)) AS BIGINT)), \
             c AS (SELECT cp['step'] AS step, cp['gain'] AS gain FROM (SELECT unnest(cps) AS cp FROM \
                   (SELECT changepoints(step, value) AS cps FROM b)) \
                   ORDER BY gain DESC LIMIT {MAX_CHANGEPOINTS}) \
             SELECT step FROM c ORDER BY step"
        ))
        .await?;
    Ok(Json(json!({
        "spikes": { "step": i64s(&spikes, "step")?, "value": float_values(&spikes, "value")? },
        "changepoints": i64s(&changes, "step")?,
    })))
}

/// Parameters of `/api/emergence`.
#[derive(Debug, Deserialize)]
pub struct EmergenceParams {
    run: String,
    name: String,
    /// `>`, `>=`, `<` or `<=`.
    op: String,
    threshold: f64,
    /// Points the condition must hold (default 1).
    hold: Option<u64>,
}

/// `GET /api/emergence`: the first step from which `value op threshold`
/// holds for `hold` points (`first_sustained`).
pub async fn emergence(
    State(dashboard): State<Dashboard>,
    Query(params): Query<EmergenceParams>,
) -> Result<Json, ApiError> {
    let op = match params.op.as_str() {
        op @ (">" | ">=" | "<" | "<=") => op,
        other => {
            return Err(ApiError::parameter(
                "op",
                format!("{other:?}: use >, >=, < or <="),
            ))
        }
    };
    if !params.threshold.is_finite() {
        return Err(ApiError::parameter("threshold", "must be a finite number"));
    }
    let sql = format!(
        "SELECT first_sustained(step, value {op} {} AND NOT isnan(value), {}) AS step \
         FROM scalars WHERE run_id = {} AND name = {}",
        params.threshold,
        params.hold.unwrap_or(1).max(1),
        literal(&params.run),
        literal(&params.name)
    );
    let (_, batches) = dashboard.engine.sql_collect(&sql).await?;
    Ok(Json(
        json!({ "step": i64s(&batches, "step")?.first().copied().flatten() }),
    ))
}

/// Parameters naming one run.
#[derive(Debug, Deserialize)]
pub struct RunParams {
    run: String,
}

/// `GET /api/tensor_names?run=R`: the tensor names of a run.
pub async fn tensor_names(
    State(dashboard): State<Dashboard>,
    Query(params): Query<RunParams>,
) -> Result<Json, ApiError> {
    let filter = format!("run_id = {}", literal(&params.run));
    distinct_names(&dashboard, "tensors", &filter).await
}

/// `GET /api/tensor_stats?run=R&name=N`: a tensor's statistics over steps,
/// with its 64-bin histogram per step (each over that step's [min, max]).
pub async fn tensor_stats(
    State(dashboard): State<Dashboard>,
    Query(params): Query<OneSeriesParams>,
) -> Result<Json, ApiError> {
    let sql = format!(
        "SELECT step, l2, mean, std, min, max, hist FROM tensors WHERE run_id = {} AND name = {} ORDER BY step",
        literal(&params.run),
        literal(&params.name)
    );
    let (_, batches) = dashboard.engine.sql_collect(&sql).await?;
    Ok(Json(json!({
        "step": i64s(&batches, "step")?,
        "l2": float_values(&batches, "l2")?,
        "mean": float_values(&batches, "mean")?,
        "std": float_values(&batches, "std")?,
        "min": float_values(&batches, "min")?,
        "max": float_values(&batches, "max")?,
        "hist": int_lists(&batches, "hist")?,
    })))
}

/// `POST /api/sql` with `{"sql": STATEMENT}` (Content-Type
/// application/json): read-only SQL, at most [`SQL_ROW_LIMIT`] rows back as
/// `{columns, rows, truncated}`.
pub async fn sql(State(dashboard): State<Dashboard>, body: String) -> Result<Json, ApiError> {
    let body = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("sql").and_then(Value::as_str).map(str::to_string))
        .ok_or_else(|| {
            ApiError::BadRequest(r#"send the statement as JSON: {"sql": "SELECT ..."}"#.into())
        })?;
    if body.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "send one SQL statement as the request body".into(),
        ));
    }
    let (schema, batches) = dashboard.engine.sql_collect(&body).await?;
    let total = row_count(&batches);
    let mut kept = Vec::new();
    let mut remaining = SQL_ROW_LIMIT;
    for batch in &batches {
        if remaining == 0 {
            break;
        }
        let take = batch.num_rows().min(remaining);
        kept.push(batch.slice(0, take));
        remaining -= take;
    }
    let refs: Vec<&arrow::array::RecordBatch> = kept.iter().collect();
    let bytes = steplake_core::json::batches_to_json(&refs)
        .map_err(|e| ApiError::BadRequest(format!("result cannot be shown as JSON: {e}")))?;
    let rows: Value = if bytes.is_empty() {
        json!([])
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!([]))
    };
    let columns: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| json!({ "name": f.name(), "type": f.data_type().to_string() }))
        .collect();
    Ok(Json(json!({
        "columns": columns,
        "rows": rows,
        "row_count": total,
        "truncated": total > SQL_ROW_LIMIT,
    })))
}
