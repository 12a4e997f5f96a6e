//! `GET /api/live?runs=a,b&names=n1,n2&last=S1,S2,...`: the points of those
//! series written after the last step the page has of each, pushed to the
//! page as server-sent events while it stays open (issue 21: panels follow
//! a run without fetching their whole series again).
//!
//! `last` gives one step per series, runs-major (`a/n1, a/n2, b/n1,
//! b/n2`), an empty entry for a series the page has no point of; `after`
//! is the step for every series `last` leaves out. Each series starts from
//! its own step, and the stream then remembers the last step it sent of
//! each, so only the tail after the points the page has travels, however
//! far apart the followed runs are. It looks again when the store has
//! acknowledged a new batch (a counter read every [`POLL`]), not on a timer
//! of its own queries. Each event's data is `{"series": [{"run_id",
//! "name", "x": [steps], "t": [wall times, ms], "y": [values]}]}`, values
//! as in the rest of the API (NaN and ±Infinity as strings).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{literal, run_list, WALL_TIME_MS};
use crate::columns::{float_values, i64s, strings};
use crate::error::ApiError;
use crate::Dashboard;

/// How often a stream checks whether a batch was acknowledged.
const POLL: Duration = Duration::from_millis(100);
/// Most series one stream follows.
pub(crate) const MAX_LIVE_SERIES: usize = 100;
/// Most points one event carries (a page far behind fetches again instead).
const MAX_POINTS: usize = 100_000;

/// Parameters of `/api/live`.
#[derive(Debug, Deserialize)]
pub(crate) struct LiveParams {
    runs: String,
    names: String,
    /// The last step the page has of each series (see the module's
    /// overview).
    last: Option<String>,
    /// The last step the page has of the series `last` leaves out; none:
    /// from the start.
    after: Option<i64>,
}

/// What one stream follows, and how far it has sent each series (`None`:
/// nothing yet, from the series' start).
struct Tail {
    dashboard: Dashboard,
    sent: Vec<((String, String), Option<i64>)>,
    /// The store's acknowledged-batch count when it last looked.
    seen: Option<u64>,
}

/// The stream of new points of `names` in `runs`.
pub(crate) async fn live(
    State(dashboard): State<Dashboard>,
    Query(params): Query<LiveParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let runs = run_list(&params.runs)?;
    let names: Vec<&str> = params
        .names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() || runs.len() * names.len() > MAX_LIVE_SERIES {
        return Err(ApiError::parameter(
            "names",
            format!("name 1 to {MAX_LIVE_SERIES} series (runs × names)"),
        ));
    }
    let last = last_steps(params.last.as_deref(), runs.len() * names.len())?;
    let series = runs.iter().flat_map(|run| {
        names
            .iter()
            .map(move |name| (run.clone(), name.to_string()))
    });
    let tail = Tail {
        dashboard,
        sent: series
            .zip(last)
            .map(|(series, last)| (series, last.or(params.after)))
            .collect(),
        seen: None,
    };
    let stream = futures::stream::unfold(tail, |mut tail| async move {
        loop {
            let batches = tail
                .dashboard
                .store
                .stats()
                .batches_written
                .load(Ordering::Acquire);
            if tail.seen != Some(batches) {
                tail.seen = Some(batches);
                let event = match tail.new_points().await {
                    Ok(Some(data)) => Some(Event::default().data(data.to_string())),
                    Ok(None) => None,
                    Err(error) => Some(Event::default().event("error").data(error.to_string())),
                };
                if let Some(event) = event {
                    return Some((Ok(event), tail));
                }
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The new points of one series, in step order.
#[derive(Default)]
struct NewPoints {
    run: String,
    name: String,
    steps: Vec<i64>,
    /// Wall times, ms since the epoch.
    times: Vec<Option<i64>>,
    values: Vec<Value>,
}

/// The `last` parameter: `count` entries, each a step or empty (none);
/// all none when absent.
fn last_steps(last: Option<&str>, count: usize) -> Result<Vec<Option<i64>>, ApiError> {
    let Some(last) = last else {
        return Ok(vec![None; count]);
    };
    let entries: Vec<&str> = last.split(',').map(str::trim).collect();
    if entries.len() != count {
        return Err(ApiError::parameter(
            "last",
            format!(
                "{} entries for {count} series: give one step (or nothing) per run and name, runs-major",
                entries.len()
            ),
        ));
    }
    entries
        .into_iter()
        .map(|entry| match entry {
            "" => Ok(None),
            step => step.parse().map(Some).map_err(|_| {
                ApiError::parameter("last", format!("{step:?} is not a step (a whole number)"))
            }),
        })
        .collect()
}

impl Tail {
    /// The points not sent yet, as an event's data; `None` when there are none.
    async fn new_points(&mut self) -> Result<Option<Value>, ApiError> {
        // Each series from its own last step: a run far ahead of another
        // sends only its own tail.
        let filter: Vec<String> = self
            .sent
            .iter()
            .map(|((run, name), last)| {
                let after = last.map(|s| format!(" AND step > {s}")).unwrap_or_default();
                format!(
                    "(run_id = {} AND name = {}{after})",
                    literal(run),
                    literal(name)
                )
            })
            .collect();
        let sql = format!(
            "SELECT run_id, name, step, {WALL_TIME_MS} AS t, value \
             FROM scalars WHERE {} ORDER BY run_id, name, step LIMIT {MAX_POINTS}",
            filter.join(" OR ")
        );
        let (_, batches) = self.dashboard.engine.sql_collect(&sql).await?;
        let runs = strings(&batches, "run_id")?;
        let names = strings(&batches, "name")?;
        let steps = i64s(&batches, "step")?;
        let times = i64s(&batches, "t")?;
        let values = float_values(&batches, "value")?;
        let mut series: Vec<NewPoints> = Vec::new();
        let rows = runs
            .into_iter()
            .zip(names)
            .zip(steps)
            .zip(times)
            .zip(values);
        for ((((run, name), step), time), value) in rows {
            let (Some(run), Some(name), Some(step)) = (run, name, step) else {
                continue;
            };
            match series.last_mut() {
                Some(s) if s.run == run && s.name == name => {}
                _ => series.push(NewPoints {
                    run,
                    name,
                    ..NewPoints::default()
                }),
            }
            if let Some(s) = series.last_mut() {
                s.steps.push(step);
                s.times.push(time);
                s.values.push(value);
            }
        }
        if series.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(series.len());
        for s in series {
            if let Some(sent) = self
                .sent
                .iter_mut()
                .find(|((run, name), _)| *run == s.run && *name == s.name)
            {
                sent.1 = s.steps.last().copied().or(sent.1);
            }
            out.push(json!({ "run_id": s.run, "name": s.name, "x": s.steps, "t": s.times, "y": s.values }));
        }
        Ok(Some(json!({ "series": out })))
    }
}
