//! The per-run watch state: which conditions watch which series, and each
//! watched series' function windows, fed point by point as batches arrive.
//!
//! A run's state is built when it is first needed and rebuilt when it may
//! be stale: after a start, after any condition changed, after one of its
//! batches was refused (its points were evaluated but not stored). Building
//! reads only the run's latest points, as many per series as the longest
//! condition window needs ([`Condition::memory`]), and feeds them without
//! firing: what fired on them is stored already, in their batches' records.
//!
//! A prediction condition is not evaluated point by point: every `every`
//! points of a series it asks for a fit (`predict`), which runs on its own
//! task so that no batch waits for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use datafusion::common::ScalarValue;
use steplake_core::watch::pattern_matches;
use steplake_core::{ConditionSpec, Event, ScalarBatch};

use super::notify::Notifier;
use super::predict::{self, FitRequest, FitState};
use steplake_query::condition::{Condition, SeriesWatch};
use steplake_query::QueryEngine;
use steplake_store::{now_us, Store};

/// The latest points of every series of a run, `$2` per series.
const RECENT_POINTS: &str = "SELECT name, step, value FROM (\
    SELECT name, step, value, row_number() OVER (PARTITION BY name ORDER BY step DESC) AS recent \
    FROM scalars WHERE run_id = $1) WHERE recent <= $2 ORDER BY name, step";

/// Evaluates the standing conditions of every run written to.
pub(crate) struct Evaluator {
    store: Arc<Store>,
    engine: Arc<QueryEngine>,
    notifier: Notifier,
    runs: Mutex<HashMap<String, Arc<tokio::sync::Mutex<RunWatch>>>>,
    /// Bumped by every condition change: a run state built under an older
    /// one is rebuilt.
    generation: AtomicU64,
}

/// One condition, checked.
struct Compiled {
    spec: ConditionSpec,
    check: Check,
}

/// How a condition is evaluated.
enum Check {
    /// Point by point.
    Predicate(Condition),
    /// By a fit every so many points.
    Prediction,
}

/// The watch state of one run.
#[derive(Default)]
struct RunWatch {
    /// The [`Evaluator::generation`] it was built at; 0: never built.
    generation: u64,
    conditions: Vec<Compiled>,
    /// Series by name, as indexes into `series`.
    index: HashMap<String, usize>,
    series: Vec<SeriesState>,
}

/// One series of a run: its last evaluated step and its watches (none
/// when no condition watches it).
struct SeriesState {
    last_step: Option<i64>,
    watches: Vec<(usize, SeriesWatch)>,
    fits: Vec<FitState>,
}

impl Evaluator {
    pub(crate) fn new(store: Arc<Store>, engine: Arc<QueryEngine>, notifier: Notifier) -> Self {
        Evaluator {
            store,
            engine,
            notifier,
            runs: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(1),
        }
    }

    /// Every run's state is rebuilt at its next batch.
    pub(crate) fn conditions_changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// `run_id`'s state is rebuilt from the stored points at its next batch
    /// (one of its batches was evaluated and then refused), or the run
    /// finished and its state can go.
    pub(crate) fn forget(&self, run_id: &str) {
        if let Ok(mut runs) = self.runs.lock() {
            runs.remove(run_id);
        }
    }

    /// The events `batch` fires in run `run_id`, advancing the run's state.
    /// The caller stores them with the batch.
    pub(crate) async fn evaluate(&self, run_id: &str, batch: &ScalarBatch) -> Vec<Event> {
        let run = {
            let Ok(mut runs) = self.runs.lock() else {
                return Vec::new();
            };
            match runs.get(run_id) {
                Some(run) => run.clone(),
                None => runs.entry(run_id.to_string()).or_default().clone(),
            }
        };
        let mut run = run.lock().await;
        let generation = self.generation.load(Ordering::SeqCst);
        if run.generation != generation {
            let specs = self.applicable(run_id);
            let unchanged = run.generation != 0
                && specs
                    .iter()
                    .map(|s| &s.id)
                    .eq(run.conditions.iter().map(|c| &c.spec.id));
            if !unchanged {
                *run = self.build(run_id, specs).await;
            }
            run.generation = generation;
        }
        if run.conditions.is_empty() {
            return Vec::new();
        }
        let (events, fits) = run.observe(run_id, batch);
        for fit in fits {
            tokio::spawn(predict::fit(
                self.store.clone(),
                self.engine.clone(),
                self.notifier.clone(),
                run_id.to_string(),
                fit,
            ));
        }
        events
    }

    /// The conditions that watch run `run_id`, by id.
    fn applicable(&self, run_id: &str) -> Vec<ConditionSpec> {
        let Some(project) = self.store.run_project(run_id) else {
            return Vec::new();
        };
        self.store
            .conditions()
            .into_iter()
            .filter(|spec| spec.applies_to(run_id, &project))
            .collect()
    }

    /// The state of `run_id` from its conditions and its latest points.
    async fn build(&self, run_id: &str, specs: Vec<ConditionSpec>) -> RunWatch {
        let conditions: Vec<Compiled> = specs
            .into_iter()
            .filter_map(|spec| {
                if spec.prediction.is_some() {
                    return Some(Compiled {
                        spec,
                        check: Check::Prediction,
                    });
                }
                let hold = usize::try_from(spec.hold).unwrap_or(usize::MAX);
                match Condition::parse(&spec.predicate, hold) {
                    Ok(condition) => Some(Compiled {
                        spec,
                        check: Check::Predicate(condition),
                    }),
                    Err(error) => {
                        tracing::warn!(condition = %spec.id, %error, "a stored condition no longer parses; it is not evaluated");
                        None
                    }
                }
            })
            .collect();
        let mut run = RunWatch {
            generation: 0,
            conditions,
            index: HashMap::new(),
            series: Vec::new(),
        };
        if run.conditions.is_empty() {
            return run;
        }
        let memory = run
            .conditions
            .iter()
            .map(|c| match &c.check {
                Check::Predicate(condition) => condition.memory(),
                Check::Prediction => 0,
            })
            .max()
            .unwrap_or(0);
        if memory > 0 {
            match self.recent_points(run_id, memory).await {
                Ok(batches) => run.warm_up(&batches),
                Err(error) => {
                    tracing::warn!(run = run_id, %error, "reading a run's latest points for its conditions failed; they start without history");
                }
            }
        }
        run
    }

    async fn recent_points(
        &self,
        run_id: &str,
        per_series: usize,
    ) -> Result<Vec<RecordBatch>, steplake_query::QueryError> {
        use futures::TryStreamExt;
        let (_, stream) = self
            .engine
            .sql_with_parameters(
                RECENT_POINTS,
                vec![
                    ScalarValue::Utf8(Some(run_id.to_string())),
                    ScalarValue::Int64(Some(per_series as i64)),
                ],
            )
            .await?;
        stream
            .try_collect()
            .await
            .map_err(steplake_query::QueryError::from_execution)
    }
}

impl RunWatch {
    /// The state of series `name`, made on first sight. Every condition
    /// here applies to the run (they were chosen by scope when the state
    /// was built), so only the series pattern decides.
    fn slot(&mut self, name: &str) -> usize {
        if let Some(&slot) = self.index.get(name) {
            return slot;
        }
        let mut watches = Vec::new();
        let mut fits = Vec::new();
        for (i, c) in self.conditions.iter().enumerate() {
            if !pattern_matches(&c.spec.series, name) {
                continue;
            }
            match &c.check {
                Check::Predicate(condition) => watches.push((i, condition.watch())),
                Check::Prediction => {
                    let every = c.spec.prediction.as_ref().map_or(1, |p| p.every);
                    fits.push(FitState::new(i, every));
                }
            }
        }
        self.series.push(SeriesState {
            last_step: None,
            watches,
            fits,
        });
        self.index.insert(name.to_string(), self.series.len() - 1);
        self.series.len() - 1
    }

    /// Feeds stored points (sorted by name, then step) without firing.
    fn warm_up(&mut self, batches: &[RecordBatch]) {
        for batch in batches {
            let names = batch.column(0).as_string::<i32>();
            let steps = batch.column(1).as_primitive::<Int64Type>();
            let values = batch.column(2).as_primitive::<Float64Type>();
            for row in 0..batch.num_rows() {
                let slot = self.slot(names.value(row));
                self.series[slot].advance(steps.value(row), values.value(row), |_| {}, |_| {});
            }
        }
    }

    /// Feeds a batch's points in order; returns what fired, and the fits
    /// that are due.
    fn observe(&mut self, run_id: &str, batch: &ScalarBatch) -> (Vec<Event>, Vec<FitRequest>) {
        let slots: Vec<usize> = batch.names.iter().map(|name| self.slot(name)).collect();
        let mut events = Vec::new();
        let mut fits = Vec::new();
        let detected_at_us = now_us();
        for i in by_series(batch) {
            let name_index = batch.name_index[i] as usize;
            let (step, value) = (batch.steps[i], batch.values[i]);
            let time_us = batch
                .wall_times_us
                .get(i)
                .copied()
                .unwrap_or(detected_at_us);
            let conditions = &self.conditions;
            let series = &batch.names[name_index];
            let due = |fit: &FitState| {
                fits.push(FitRequest {
                    spec: conditions[fit.condition].spec.clone(),
                    series: series.clone(),
                    step,
                    value,
                    time_us,
                    state: fit.shared(),
                });
            };
            self.series[slots[name_index]].advance(
                step,
                value,
                |condition| {
                    let spec = &conditions[condition].spec;
                    events.push(Event {
                        id: Event::id_for(run_id, &spec.id, series, step),
                        seq: 0,
                        run_id: run_id.to_string(),
                        condition_id: spec.id.clone(),
                        label: spec.label.clone(),
                        series: series.clone(),
                        step,
                        value,
                        time_us,
                        detected_at_us,
                        predicted: None,
                    });
                },
                due,
            );
        }
        events.sort_by_key(|e| e.step);
        (events, fits)
    }
}

/// The indexes of `batch`'s points grouped by series, in batch order within
/// each (a counting sort): a series' windows then stay in the CPU's cache
/// across its points, where a step-major batch would visit every series'
/// state once per step.
fn by_series(batch: &ScalarBatch) -> Vec<usize> {
    let mut next = vec![0usize; batch.names.len() + 1];
    for &k in &batch.name_index {
        next[k as usize + 1] += 1;
    }
    for k in 1..next.len() {
        next[k] += next[k - 1];
    }
    let mut order = vec![0usize; batch.len()];
    for (i, &k) in batch.name_index.iter().enumerate() {
        order[next[k as usize]] = i;
        next[k as usize] += 1;
    }
    order
}

impl SeriesState {
    /// Evaluates the point at `step` if it comes after the last one;
    /// `fired` gets the index of each condition that fires at it, `due`
    /// each prediction whose fit is due.
    fn advance(
        &mut self,
        step: i64,
        value: f64,
        mut fired: impl FnMut(usize),
        mut due: impl FnMut(&FitState),
    ) {
        if (self.watches.is_empty() && self.fits.is_empty())
            || self.last_step.is_some_and(|last| step <= last)
        {
            return;
        }
        self.last_step = Some(step);
        for (condition, watch) in &mut self.watches {
            if watch.observe(step, value) {
                fired(*condition);
            }
        }
        for fit in &mut self.fits {
            if fit.count_point() {
                due(fit);
            }
        }
    }
}
