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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use datafusion::common::ScalarValue;
use steplake_core::watch::pattern_matches;
use steplake_core::{ConditionSpec, Event, ScalarBatch};

use super::notify::Notifier;
use super::predict::{self, FitRequest, FitState};
use steplake_query::condition::{Condition, ConditionSet, Scratch, SeriesWatch};
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
    /// The compiled sets of conditions, by the conditions they hold:
    /// series watched by the same conditions share one program.
    sets: HashMap<Vec<usize>, Watchers>,
    /// The conditions on one named series, by that name, and those whose
    /// series is a pattern: a new series is matched against the patterns
    /// only, not against every condition of the run.
    by_name: HashMap<String, Vec<usize>>,
    patterned: Vec<usize>,
    /// (condition id, series) of the prediction events stored for the run:
    /// a prediction that fired before this state was built is taken to be
    /// still firing (see [`FitState::new`]).
    fired_predictions: HashSet<(String, String)>,
}

/// Conditions compiled together, with their indexes in the run's list.
#[derive(Clone)]
struct Watchers {
    conditions: Arc<[usize]>,
    set: ConditionSet,
}

/// One series of a run: its last evaluated step and its watch (none when
/// no condition watches it).
struct SeriesState {
    last_step: Option<i64>,
    /// The run's conditions that watch it (by the set's numbering), and
    /// their state.
    watch: Option<(Arc<[usize]>, SeriesWatch)>,
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

    /// The events `batch` fires in run `run_id`, advancing the run's state
    /// (none for a batch the store will refuse as invalid). The caller
    /// stores them with the batch.
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
        // Validated here, not before: a run without conditions leaves its
        // batches to the store's one check. An invalid batch is evaluated
        // by nobody; the store refuses it with the reason.
        if run.conditions.is_empty() || batch.validate().is_err() {
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
        let mut run = RunWatch::new(conditions);
        if run.conditions.is_empty() {
            return run;
        }
        run.fired_predictions = self
            .store
            .events(Some(run_id), 0)
            .into_iter()
            .filter(|event| event.predicted.is_some())
            .map(|event| (event.condition_id, event.series))
            .collect();
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
    /// A state of `conditions` that has seen no point (never built).
    fn new(conditions: Vec<Compiled>) -> RunWatch {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut patterned = Vec::new();
        for (i, c) in conditions.iter().enumerate() {
            if c.spec.series.contains('*') {
                patterned.push(i);
            } else {
                by_name.entry(c.spec.series.clone()).or_default().push(i);
            }
        }
        RunWatch {
            generation: 0,
            conditions,
            index: HashMap::new(),
            series: Vec::new(),
            sets: HashMap::new(),
            by_name,
            patterned,
            fired_predictions: HashSet::new(),
        }
    }

    /// The state of series `name`, made on first sight. Every condition
    /// here applies to the run (they were chosen by scope when the state
    /// was built), so only the series pattern decides.
    fn slot(&mut self, name: &str) -> usize {
        if let Some(&slot) = self.index.get(name) {
            return slot;
        }
        let mut watching: Vec<usize> = self.by_name.get(name).cloned().unwrap_or_default();
        watching.extend(
            self.patterned
                .iter()
                .copied()
                .filter(|&i| pattern_matches(&self.conditions[i].spec.series, name)),
        );
        watching.sort_unstable();
        let mut predicates = Vec::new();
        let mut fits = Vec::new();
        for i in watching {
            let c = &self.conditions[i];
            match &c.check {
                Check::Predicate(_) => predicates.push(i),
                Check::Prediction => {
                    let every = c.spec.prediction.as_ref().map_or(1, |p| p.every);
                    let fired = self
                        .fired_predictions
                        .contains(&(c.spec.id.clone(), name.to_string()));
                    fits.push(FitState::new(i, every, fired));
                }
            }
        }
        let watch = (!predicates.is_empty()).then(|| {
            let conditions = &self.conditions;
            let watchers = self.sets.entry(predicates).or_insert_with_key(|chosen| {
                let set =
                    ConditionSet::new(chosen.iter().filter_map(|&i| match &conditions[i].check {
                        Check::Predicate(condition) => Some(condition),
                        Check::Prediction => None,
                    }));
                Watchers {
                    conditions: chosen.as_slice().into(),
                    set,
                }
            });
            (watchers.conditions.clone(), watchers.set.watch())
        });
        self.series.push(SeriesState {
            last_step: None,
            watch,
            fits,
        });
        self.index.insert(name.to_string(), self.series.len() - 1);
        self.series.len() - 1
    }

    /// Feeds stored points (sorted by name, then step) without firing.
    fn warm_up(&mut self, batches: &[RecordBatch]) {
        let mut points = Points::default();
        for batch in batches {
            let names = batch.column(0).as_string::<i32>();
            let steps = batch.column(1).as_primitive::<Int64Type>();
            let values = batch.column(2).as_primitive::<Float64Type>();
            let mut start = 0;
            while start < batch.num_rows() {
                let name = names.value(start);
                let end = (start..batch.num_rows())
                    .find(|&row| names.value(row) != name)
                    .unwrap_or(batch.num_rows());
                let slot = self.slot(name);
                self.series[slot].advance(
                    (start..end).map(|row| (steps.value(row), values.value(row), row)),
                    &mut points,
                    |_, _| {},
                    None::<fn(&FitState, usize)>,
                );
                start = end;
            }
        }
    }

    /// Feeds a batch's points in order, series by series; returns what
    /// fired, and the fits that are due. (Splitting a large batch's series
    /// over threads was tried: on the 2-core bench machine it cost more CPU
    /// a point than it saved, with the client and the WAL on the same
    /// cores; write streams of different runs evaluate in parallel.)
    fn observe(&mut self, run_id: &str, batch: &ScalarBatch) -> (Vec<Event>, Vec<FitRequest>) {
        let slots: Vec<usize> = batch.names.iter().map(|name| self.slot(name)).collect();
        // A name listed twice in a batch is one series: group by its first
        // listing.
        let mut first_listing = HashMap::with_capacity(slots.len());
        let group_of_name: Vec<usize> = slots
            .iter()
            .enumerate()
            .map(|(k, slot)| *first_listing.entry(*slot).or_insert(k))
            .collect();
        let order = by_series(batch, &group_of_name);
        // Each series of the batch: its slot and its run of `order`.
        let mut groups: Vec<(usize, usize, usize)> = Vec::with_capacity(batch.names.len());
        let mut start = 0;
        while start < order.len() {
            let group = group_of_name[batch.name_index[order[start]] as usize];
            let mut end = start + 1;
            while end < order.len() && group_of_name[batch.name_index[order[end]] as usize] == group
            {
                end += 1;
            }
            groups.push((slots[group], start, end));
            start = end;
        }
        groups.sort_unstable_by_key(|&(slot, ..)| slot);
        let detected_at_us = now_us();
        let conditions = &self.conditions;
        let mut work: Vec<(&mut SeriesState, usize, usize)> = Vec::with_capacity(groups.len());
        let mut next = groups.iter().peekable();
        for (slot, state) in self.series.iter_mut().enumerate() {
            let Some(&&(_, start, end)) = next.peek().filter(|(s, ..)| *s == slot) else {
                continue;
            };
            next.next();
            if state.watch.is_some() || !state.fits.is_empty() {
                work.push((state, start, end));
            }
        }
        let context = Context {
            run_id,
            batch,
            order: &order,
            conditions,
            detected_at_us,
        };
        let (mut events, fits) = context.evaluate(&mut work);
        events.sort_by_key(|e| e.step);
        (events, fits)
    }
}

/// What evaluating a batch's series needs besides their states.
struct Context<'a> {
    run_id: &'a str,
    batch: &'a ScalarBatch,
    /// The batch's points grouped by series.
    order: &'a [usize],
    conditions: &'a [Compiled],
    detected_at_us: i64,
}

impl Context<'_> {
    /// Feeds each series its run of points (`order[start..end]`).
    fn evaluate(
        &self,
        work: &mut [(&mut SeriesState, usize, usize)],
    ) -> (Vec<Event>, Vec<FitRequest>) {
        let (batch, conditions) = (self.batch, self.conditions);
        let mut events = Vec::new();
        let mut fits = Vec::new();
        let mut points = Points::default();
        for (state, start, end) in work.iter_mut() {
            let run = &self.order[*start..*end];
            let Some(&first) = run.first() else {
                continue;
            };
            let series = &batch.names[batch.name_index[first] as usize];
            let time_us = |i: usize| {
                batch
                    .wall_times_us
                    .get(i)
                    .copied()
                    .unwrap_or(self.detected_at_us)
            };
            state.advance(
                run.iter().map(|&i| (batch.steps[i], batch.values[i], i)),
                &mut points,
                |condition, i| {
                    let spec = &conditions[condition].spec;
                    let step = batch.steps[i];
                    events.push(Event {
                        id: Event::id_for(self.run_id, &spec.id, series, step),
                        seq: 0,
                        run_id: self.run_id.to_string(),
                        condition_id: spec.id.clone(),
                        label: spec.label.clone(),
                        series: series.clone(),
                        step,
                        value: batch.values[i],
                        time_us: time_us(i),
                        detected_at_us: self.detected_at_us,
                        predicted: None,
                    });
                },
                Some(|fit: &FitState, i| {
                    fits.push(FitRequest {
                        spec: conditions[fit.condition].spec.clone(),
                        series: series.clone(),
                        step: batch.steps[i],
                        value: batch.values[i],
                        time_us: time_us(i),
                        state: fit.shared(),
                    });
                }),
            );
        }
        (events, fits)
    }
}

/// The indexes of `batch`'s points grouped by series (`group_of_name`:
/// the group of each listed name), in batch order within each (a counting
/// sort): a series' windows then stay in the CPU's cache
/// across its points, where a step-major batch would visit every series'
/// state once per step.
fn by_series(batch: &ScalarBatch, group_of_name: &[usize]) -> Vec<usize> {
    let group = |i: usize| group_of_name[batch.name_index[i] as usize];
    let mut next = vec![0usize; batch.names.len() + 1];
    for i in 0..batch.len() {
        next[group(i) + 1] += 1;
    }
    for k in 1..next.len() {
        next[k] += next[k - 1];
    }
    let mut order = vec![0usize; batch.len()];
    for i in 0..batch.len() {
        let k = group(i);
        order[next[k]] = i;
        next[k] += 1;
    }
    order
}

/// A series' points of one batch that are evaluated (those after its last
/// evaluated step), as columns, with working memory for the evaluation;
/// reused from series to series.
#[derive(Default)]
struct Points {
    steps: Vec<i64>,
    values: Vec<f64>,
    /// Where each came from (a batch's point index, a stored row).
    origins: Vec<usize>,
    scratch: Scratch,
}

impl SeriesState {
    /// Evaluates the `points` (step, value, origin) that come after the
    /// last evaluated step, in order (a step written again is not
    /// evaluated again); `fired(condition, origin)` is called for each
    /// condition that fires at a point, `due(fit, origin)` for each
    /// prediction whose fit is due. Without `due` (stored points, fed to
    /// warm the windows up) the points are not counted towards fits: they
    /// were counted when they arrived.
    fn advance(
        &mut self,
        points: impl Iterator<Item = (i64, f64, usize)>,
        buffer: &mut Points,
        mut fired: impl FnMut(usize, usize),
        due: Option<impl FnMut(&FitState, usize)>,
    ) {
        let Points {
            steps,
            values,
            origins,
            scratch,
        } = buffer;
        steps.clear();
        values.clear();
        origins.clear();
        for (step, value, origin) in points {
            if self.last_step.is_some_and(|last| step <= last) {
                continue;
            }
            self.last_step = Some(step);
            steps.push(step);
            values.push(value);
            origins.push(origin);
        }
        if let Some((conditions, watch)) = &mut self.watch {
            watch.observe(steps, values, scratch, |k, j| {
                fired(conditions[k], origins[j])
            });
        }
        let Some(mut due) = due else {
            return;
        };
        for &origin in origins.iter() {
            for fit in &mut self.fits {
                if fit.count_point() {
                    due(fit, origin);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use steplake_core::ConditionScope;

    use super::*;

    fn run_watch(predicates: &[&str]) -> RunWatch {
        let everywhere: Vec<(&str, &str)> = predicates.iter().map(|p| ("*", *p)).collect();
        run_watch_on(&everywhere)
    }

    /// Conditions `c0`, `c1`, ... of (series pattern, predicate).
    fn run_watch_on(conditions: &[(&str, &str)]) -> RunWatch {
        let conditions = conditions
            .iter()
            .enumerate()
            .map(|(i, (series, predicate))| Compiled {
                spec: ConditionSpec {
                    id: format!("c{i}"),
                    scope: ConditionScope::Run("r".into()),
                    series: series.to_string(),
                    predicate: predicate.to_string(),
                    hold: 1,
                    label: predicate.to_string(),
                    created_at_us: 0,
                    prediction: None,
                },
                check: Check::Predicate(Condition::parse(predicate, 1).expect(predicate)),
            })
            .collect();
        let mut run = RunWatch::new(conditions);
        run.generation = 1;
        run
    }

    /// `steps` steps of `series` series, step-major; spikes where `spiky`.
    fn batch(
        series: usize,
        steps: std::ops::Range<i64>,
        spiky: impl Fn(usize, i64) -> bool,
    ) -> ScalarBatch {
        let mut batch = ScalarBatch {
            names: (0..series).map(|s| format!("s{s}")).collect(),
            name_index: Vec::new(),
            steps: Vec::new(),
            values: Vec::new(),
            wall_times_us: Vec::new(),
        };
        for step in steps {
            for s in 0..series {
                batch.name_index.push(s as u32);
                batch.steps.push(step);
                let base = 1.0 + 0.01 * ((step + s as i64) % 5) as f64;
                batch
                    .values
                    .push(if spiky(s, step) { base * 10.0 } else { base });
                batch.wall_times_us.push(step);
            }
        }
        batch
    }

    fn fired(events: &[Event]) -> Vec<(String, String, i64)> {
        let mut fired: Vec<_> = events
            .iter()
            .map(|e| (e.condition_id.clone(), e.series.clone(), e.step))
            .collect();
        fired.sort();
        fired
    }

    #[test]
    fn one_large_batch_fires_what_step_by_step_batches_fire() {
        let predicates = [
            "is_spike(value)",
            "rolling_zscore(value, 10) > 4",
            "value > 5",
        ];
        let spiky = |s: usize, step: i64| step == 30 + (s as i64 % 7);
        let big = batch(200, 0..60, spiky);
        let (all_at_once, _) = run_watch(&predicates).observe("r", &big);
        let mut step_by_step = run_watch(&predicates);
        let mut events = Vec::new();
        for step in 0..60 {
            events.extend(
                step_by_step
                    .observe("r", &batch(200, step..step + 1, spiky))
                    .0,
            );
        }
        assert!(!events.is_empty());
        assert_eq!(fired(&all_at_once), fired(&events));
    }

    /// `is_spike(value)` on every series (it keeps 20 points of history),
    /// and `p`, a prediction on `loss` fitted every 5 points.
    fn run_watch_with_prediction() -> RunWatch {
        let mut run = run_watch(&["is_spike(value)"]);
        let mut spec = run.conditions[0].spec.clone();
        spec.id = "p".into();
        spec.series = "loss".into();
        spec.prediction = Some(steplake_core::PredictionSpec {
            final_step: 1000,
            lr_series: String::new(),
            above: Some(1.0),
            baseline_run_id: None,
            every: 5,
            level: 0.95,
        });
        let conditions = vec![
            run.conditions.remove(0),
            Compiled {
                spec,
                check: Check::Prediction,
            },
        ];
        let mut run = RunWatch::new(conditions);
        run.generation = 1;
        run
    }

    fn loss_points(steps: std::ops::Range<i64>) -> ScalarBatch {
        let n = steps.clone().count();
        ScalarBatch {
            names: vec!["loss".into()],
            name_index: vec![0; n],
            steps: steps.collect(),
            values: vec![2.0; n],
            wall_times_us: vec![0; n],
        }
    }

    #[test]
    fn stored_points_warming_the_windows_up_do_not_stop_a_prediction_from_fitting() {
        let mut run = run_watch_with_prediction();
        // What a rebuild reads back: the series' latest stored points, more
        // than a fit's interval of them.
        let stored = RecordBatch::try_from_iter([
            (
                "name",
                Arc::new(arrow::array::StringArray::from(vec!["loss"; 20]))
                    as arrow::array::ArrayRef,
            ),
            (
                "step",
                Arc::new(arrow::array::Int64Array::from_iter_values(0..20)),
            ),
            (
                "value",
                Arc::new(arrow::array::Float64Array::from(vec![2.0; 20])),
            ),
        ])
        .unwrap();
        run.warm_up(&[stored]);
        let (_, fits) = run.observe("r", &loss_points(20..25));
        assert_eq!(
            fits.iter().map(|f| f.step).collect::<Vec<_>>(),
            [24],
            "the fifth live point makes a fit due"
        );
    }

    #[test]
    fn a_prediction_that_fired_before_a_rebuild_is_still_firing_and_fits_at_once() {
        let mut run = run_watch_with_prediction();
        run.fired_predictions
            .insert(("p".to_string(), "loss".to_string()));
        let (_, fits) = run.observe("r", &loss_points(100..101));
        assert_eq!(fits.len(), 1, "the first point after the rebuild fits");
        assert!(
            fits[0].state.firing(),
            "it does not fire again unless it clears"
        );
        // A series without a stored event starts clear, on the usual
        // schedule.
        let mut run = run_watch_with_prediction();
        let (_, fits) = run.observe("r", &loss_points(100..105));
        assert_eq!(fits.len(), 1);
        assert!(!fits[0].state.firing());
    }

    #[test]
    fn a_name_listed_twice_in_a_batch_is_one_series() {
        let mut watch = run_watch(&["is_spike(value)"]);
        let twice = ScalarBatch {
            names: vec!["loss".into(), "acc".into(), "loss".into()],
            name_index: (0..30).map(|i| [0u32, 2][i % 2]).collect(),
            steps: (0..30).collect(),
            values: (0..30).map(|i| if i == 25 { 50.0 } else { 1.0 }).collect(),
            wall_times_us: vec![0; 30],
        };
        let (events, _) = watch.observe("r", &twice);
        assert_eq!(fired(&events), [("c0".to_string(), "loss".to_string(), 25)]);
    }

    #[test]
    fn a_series_is_watched_by_the_conditions_on_its_name_and_the_patterns_it_matches() {
        let mut watch = run_watch_on(&[
            ("loss", "value > 5"),
            ("grad/*", "value > 5"),
            ("*", "value > 5"),
            ("grad/l1", "value > 5"),
            ("acc", "value > 5"),
        ]);
        let batch = ScalarBatch {
            names: vec!["loss".into(), "grad/l1".into(), "grad/l2".into()],
            name_index: vec![0, 1, 2],
            steps: vec![1, 1, 1],
            values: vec![9.0, 9.0, 9.0],
            wall_times_us: vec![0; 3],
        };
        let (events, _) = watch.observe("r", &batch);
        let fired: Vec<(String, String)> = fired(&events)
            .into_iter()
            .map(|(condition, series, _)| (condition, series))
            .collect();
        let expected = [
            ("c0", "loss"),
            ("c1", "grad/l1"),
            ("c1", "grad/l2"),
            ("c2", "grad/l1"),
            ("c2", "grad/l2"),
            ("c2", "loss"),
            ("c3", "grad/l1"),
        ];
        assert_eq!(fired, expected.map(|(c, s)| (c.to_string(), s.to_string())));
    }
}
