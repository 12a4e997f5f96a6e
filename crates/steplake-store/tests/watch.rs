//! Standing conditions and their events in the store: durable through the
//! WAL and through flushes, one copy per event id, gone with their run.

mod common;
use common::block_on;

use steplake_core::{ConditionScope, ConditionSpec, Event, ScalarBatch};
use steplake_store::{CreateRun, RunSelector, Store, StoreError, StoreOptions};

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, StoreOptions::default()).expect("open store")
}

fn create(store: &Store, run_id: &str) {
    block_on(store.create_run(CreateRun {
        run_id: Some(run_id.into()),
        ..Default::default()
    }))
    .expect("create run");
}

fn batch(step: i64, value: f64) -> ScalarBatch {
    ScalarBatch {
        names: vec!["loss".into()],
        name_index: vec![0],
        steps: vec![step],
        values: vec![value],
        wall_times_us: vec![1_000],
    }
}

fn condition(id: &str, run_id: &str) -> ConditionSpec {
    ConditionSpec {
        id: id.into(),
        scope: ConditionScope::Run(run_id.into()),
        series: "loss".into(),
        predicate: "is_spike(value)".into(),
        hold: 1,
        label: "spike".into(),
        created_at_us: 5,
        prediction: None,
    }
}

fn event(run_id: &str, step: i64, value: f64) -> Event {
    Event {
        id: Event::id_for(run_id, "c1", "loss", step),
        seq: 0,
        run_id: run_id.into(),
        condition_id: "c1".into(),
        label: "spike".into(),
        series: "loss".into(),
        step,
        value,
        time_us: 1_000,
        detected_at_us: 2_000,
        predicted: None,
    }
}

fn write(store: &Store, sequence: u64, run_id: &str, step: i64, events: Vec<Event>) {
    let pending = store
        .submit_scalars_with_events("w", sequence, run_id, batch(step, 9.0), events)
        .expect("submit");
    block_on(pending).expect("ack");
}

fn steps(events: &[Event]) -> Vec<i64> {
    events.iter().map(|e| e.step).collect()
}

#[test]
fn conditions_and_events_survive_a_crash_and_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        create(&store, "r");
        block_on(store.set_condition(condition("c1", "r"))).unwrap();
        write(&store, 1, "r", 1, vec![event("r", 1, 9.0)]);
        write(&store, 2, "r", 2, Vec::new());
        write(&store, 3, "r", 3, vec![event("r", 3, f64::NAN)]);
        let events = store.events(Some("r"), 0);
        assert_eq!(steps(&events), [1, 3]);
        assert!(events[0].seq < events[1].seq, "seqs follow the log");
        // Dropped without a shutdown: everything comes back from the WAL.
    }
    let before;
    {
        let store = open(dir.path());
        assert_eq!(store.conditions(), [condition("c1", "r")]);
        let events = store.events(Some("r"), 0);
        assert_eq!(steps(&events), [1, 3]);
        assert!(events[1].value.is_nan(), "NaN survives the log");
        before = events.clone();
        assert_eq!(steps(&store.events(None, events[0].seq)), [3]);
        store.flush().unwrap();
        store.shutdown().unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.conditions(), [condition("c1", "r")]);
    let after = store.events(Some("r"), 0);
    assert_eq!(steps(&after), [1, 3]);
    assert_eq!(
        after.iter().map(|e| e.seq).collect::<Vec<_>>(),
        before.iter().map(|e| e.seq).collect::<Vec<_>>(),
        "the manifest keeps the seqs the log gave"
    );
}

#[test]
fn an_event_is_stored_once_and_a_retried_batch_adds_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "r");
    write(&store, 1, "r", 1, vec![event("r", 1, 9.0)]);
    // The same firing again, in a new batch: one copy.
    write(&store, 2, "r", 2, vec![event("r", 1, 9.0)]);
    // A retry of batch 2 with another event: the batch is stored, the event is not.
    write(&store, 2, "r", 2, vec![event("r", 2, 9.0)]);
    assert_eq!(steps(&store.events(None, 0)), [1]);
}

#[test]
fn a_condition_needs_its_run_and_goes_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let missing = block_on(store.set_condition(condition("c1", "nope"))).unwrap_err();
    assert!(
        matches!(missing, StoreError::RunNotFound { .. }),
        "{missing}"
    );
    assert!(store.conditions().is_empty());
    create(&store, "r");
    create(&store, "s");
    block_on(store.set_condition(condition("c1", "r"))).unwrap();
    block_on(store.set_condition(condition("c2", "s"))).unwrap();
    write(&store, 1, "r", 1, vec![event("r", 1, 9.0)]);
    store
        .delete_runs(RunSelector::Run("r".into()))
        .expect("delete");
    assert_eq!(store.conditions(), [condition("c2", "s")]);
    assert!(store.events(None, 0).is_empty());
    block_on(store.remove_condition("c2")).unwrap();
    assert!(store.conditions().is_empty());
    let gone = block_on(store.remove_condition("c2")).unwrap_err();
    assert!(
        matches!(gone, StoreError::ConditionNotFound { .. }),
        "{gone}"
    );
    store.shutdown().unwrap();
    drop(store);
    let store = open(dir.path());
    assert!(store.conditions().is_empty() && store.events(None, 0).is_empty());
}

#[test]
fn events_fired_apart_from_a_batch_are_durable_too() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        create(&store, "r");
        write(&store, 1, "r", 1, vec![event("r", 1, 9.0)]);
        block_on(store.append_events("r", vec![event("r", 2, 3.0), event("r", 1, 9.0)])).unwrap();
        let refused = block_on(store.append_events("nope", vec![event("nope", 1, 1.0)]));
        assert!(matches!(refused, Err(StoreError::RunNotFound { .. })));
        let mixed = block_on(store.append_events("r", vec![event("other", 5, 1.0)]));
        assert!(mixed.is_err(), "an event of another run is refused");
        assert_eq!(steps(&store.events(Some("r"), 0)), [1, 2]);
    }
    let store = open(dir.path());
    let events = store.events(Some("r"), 0);
    assert_eq!(steps(&events), [1, 2], "replayed from the log, once each");
    assert!(events[0].seq < events[1].seq);
}
