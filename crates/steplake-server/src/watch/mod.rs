//! Standing conditions at ingest, and their events pushed to the trainer
//! (issue 18).
//!
//! One stage per file:
//! - `register`: AddCondition / RemoveCondition / ListConditions: checks a
//!   predicate (steplake_query::condition) and stores the condition;
//! - `evaluate`: the per-run watch state. Each scalar batch is evaluated
//!   on the write stream's task *before* it goes to the WAL, and the events
//!   it fires travel in the batch's own WAL record, so a batch is never
//!   durable without its events. The state is rebuilt from the run's
//!   latest stored points (never from the whole history) when a run is
//!   first written to after a start, when its conditions change, and after
//!   a refused batch;
//! - `predict`: prediction conditions, whose fits run beside ingest every
//!   so many points and log their events on their own;
//! - `notify`: tells the watchers of a run that durable events arrived;
//! - `stream`: the `Watch` RPC: stored events after a cursor, then live;
//! - `webhook`: `--alert-webhook URL`: each event POSTed as JSON, resuming
//!   from a cursor file, with retries.
//!
//! Delivery is at least once with ids: the store is the queue. A watcher
//! or the webhook reads the events after the last seq it delivered, so a
//! restart repeats at most what was in flight, and an event's id names it.

mod evaluate;
mod notify;
mod predict;
mod register;
mod stream;
mod webhook;

use std::sync::Arc;

use steplake_query::QueryEngine;
use steplake_store::Store;

pub(crate) use evaluate::Evaluator;
pub(crate) use notify::Notifier;
pub(crate) use register::{add_condition, list_conditions, remove_condition, requested_scope};
pub(crate) use stream::watch_events;
pub use webhook::{Webhook, WebhookError};

/// What the ingest service needs for conditions and events.
pub(crate) struct Watching {
    pub(crate) evaluator: Evaluator,
    pub(crate) notifier: Notifier,
}

impl Watching {
    /// Conditions of `store`, with recent history read through `engine`;
    /// watch streams end when `stopped` turns true.
    pub(crate) fn new(
        store: Arc<Store>,
        engine: Arc<QueryEngine>,
        stopped: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let notifier = Notifier::new(stopped);
        Watching {
            evaluator: Evaluator::new(store, engine, notifier.clone()),
            notifier,
        }
    }
}
