//! `GET /api/live?runs=a,b&names=n1,n2&after=STEP`: the points of those
//! series written after step `after`, pushed to the page as server-sent
//! events while it stays open (issue 21: panels follow a run without
//! fetching their whole series again).
//!
//! The stream remembers the last step it sent of each (run, name), so only
//! the tail after the points the page has travels. It looks again when the
//! store has acknowledged a new batch (a counter read every [`POLL`]), not
//! on a timer of its own queries. Each event's data is
//! `{"series": [{"run_id", "name", "x": [steps], "y": [values]}]}`, values
//! as in the rest of the API (NaN and ±Infinity as strings).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{literal, run_list, runs_clause};
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
    /// The last step the page has of these series; none: from the start.
    after: Option<i64>,
}

/// What one stream follows, and how far it has sent each series.
struct Tail {
    dashboard: Dashboard,
    filter: String,
    sent: HashMap<(String, String), i64>,
    after: i64,
    /// The store's acknowledged-batch count when it last looked.
    seen: Option<u64>,
}

/// The stream of new points of `names` in `runs`.
pub(crate) async fn live(
    State(dashboard): State<Dashboard>,
    Query(params): Query<LiveParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let runs = run_list(&params.runs)?;
    let names: Vec<String> = params
        .names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(literal)
        .collect();
    if names.is_empty() || runs.len() * names.len() > MAX_LIVE_SERIES {
        return Err(ApiError::parameter(
            "names",
            format!("name 1 to {MAX_LIVE_SERIES} series (runs × names)"),
        ));
    }
    let tail = Tail {
        dashboard,
        filter: format!("{} AND name IN ({})", runs_clause(&runs), names.join(", ")),
        sent: HashMap::new(),
        after: params.after.unwrap_or(i64::MIN),
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

impl Tail {
    /// The points not sent yet, as an event's data; `None` when there are none.
    async fn new_points(&mut self) -> Result<Option<Value>, ApiError> {
        let from = self
            .sent
            .values()
            .copied()
            .min()
            .unwrap_or(self.after)
            .max(self.after);
        let sql = format!(
            "SELECT run_id, name, step, value FROM scalars WHERE {} AND step > {from} \
             ORDER BY run_id, name, step LIMIT {MAX_POINTS}",
            self.filter
        );
        let (_, batches) = self.dashboard.engine.sql_collect(&sql).await?;
        let runs = strings(&batches, "run_id")?;
        let names = strings(&batches, "name")?;
        let steps = i64s(&batches, "step")?;
        let values = float_values(&batches, "value")?;
        let mut series: Vec<(String, String, Vec<i64>, Vec<Value>)> = Vec::new();
        for (((run, name), step), value) in runs.into_iter().zip(names).zip(steps).zip(values) {
            let (Some(run), Some(name), Some(step)) = (run, name, step) else {
                continue;
            };
            let last = self.sent.get(&(run.clone(), name.clone())).copied();
            if step <= last.unwrap_or(self.after) {
                continue;
            }
            match series.last_mut() {
                Some((r, n, xs, ys)) if *r == run && *n == name => {
                    xs.push(step);
                    ys.push(value);
                }
                _ => series.push((run, name, vec![step], vec![value])),
            }
        }
        if series.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(series.len());
        for (run, name, xs, ys) in series {
            if let Some(&last) = xs.last() {
                self.sent.insert((run.clone(), name.clone()), last);
            }
            out.push(json!({ "run_id": run, "name": name, "x": xs, "y": ys }));
        }
        Ok(Some(json!({ "series": out })))
    }
}
