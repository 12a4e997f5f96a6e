//! Wakes the watchers of a run once events of it are durable, and ends
//! every watch at shutdown.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

/// Runs whose events just became durable, announced to every watcher.
#[derive(Clone)]
pub(crate) struct Notifier {
    runs: broadcast::Sender<Arc<str>>,
    stopped: watch::Receiver<bool>,
}

/// Announcements missed before a watcher reads again; a watcher that falls
/// further behind reads the store again, which is all an announcement asks.
const CAPACITY: usize = 1024;

/// What a watcher waits for.
pub(crate) enum Wake {
    /// Events of some run (maybe this one) may be new: read the store.
    Events,
    /// The server is stopping.
    Stop,
}

impl Notifier {
    pub(crate) fn new(stopped: watch::Receiver<bool>) -> Self {
        Notifier {
            runs: broadcast::channel(CAPACITY).0,
            stopped,
        }
    }

    /// Announces durable events of `run_id`.
    pub(crate) fn events_stored(&self, run_id: &str) {
        let _ = self.runs.send(Arc::from(run_id));
    }

    /// A subscription for the events of `run_id` (every run when `None`).
    pub(crate) fn subscribe(&self, run_id: Option<&str>) -> Subscription {
        Subscription {
            run_id: run_id.map(Arc::from),
            runs: self.runs.subscribe(),
            stopped: self.stopped.clone(),
        }
    }
}

/// One watcher's view of the announcements.
pub(crate) struct Subscription {
    run_id: Option<Arc<str>>,
    runs: broadcast::Receiver<Arc<str>>,
    stopped: watch::Receiver<bool>,
}

impl Subscription {
    /// Waits until events of the watched run may be new, or the server stops.
    pub(crate) async fn next(&mut self) -> Wake {
        loop {
            if *self.stopped.borrow() {
                return Wake::Stop;
            }
            tokio::select! {
                announced = self.runs.recv() => match announced {
                    Ok(run) if self.run_id.as_ref().is_none_or(|id| *id == run) => {
                        return Wake::Events
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return Wake::Events,
                    Err(broadcast::error::RecvError::Closed) => return Wake::Stop,
                },
                changed = self.stopped.changed() => {
                    if changed.is_err() {
                        return Wake::Stop;
                    }
                }
            }
        }
    }
}
