//! The `Watch` RPC: a run's stored events after a cursor, then each new
//! one once the batch that fired it is durable.

use std::sync::Arc;

use steplake_core::Event;
use steplake_proto::v1::Event as WireEvent;
use steplake_store::Store;
use tokio::sync::mpsc;
use tonic::Status;

use super::notify::{Subscription, Wake};

/// Events sent ahead of a slow client before the task waits for it.
const STREAM_BUFFER: usize = 256;

/// Streams the events of `run_id` with a seq above `after_seq` into the
/// returned receiver until the client goes away or the server stops.
pub(crate) fn watch_events(
    store: Arc<Store>,
    run_id: String,
    after_seq: u64,
    mut subscription: Subscription,
) -> mpsc::Receiver<Result<WireEvent, Status>> {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let mut after = after_seq;
        loop {
            for event in store.events(Some(&run_id), after) {
                after = event.seq;
                if tx.send(Ok(wire_event(event))).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                wake = subscription.next() => match wake {
                    Wake::Events => {}
                    Wake::Stop => return,
                },
                () = tx.closed() => return,
            }
        }
    });
    rx
}

/// An event as the wire carries it.
pub(crate) fn wire_event(event: Event) -> WireEvent {
    let predicted = event.predicted.as_ref();
    WireEvent {
        predicted: predicted.map(|p| p.value),
        predicted_lo: predicted.map(|p| p.lo),
        predicted_hi: predicted.map(|p| p.hi),
        threshold: predicted.map(|p| p.threshold),
        final_step: predicted.map(|p| p.final_step),
        event_id: event.id,
        seq: event.seq,
        run_id: event.run_id,
        condition_id: event.condition_id,
        label: event.label,
        series: event.series,
        step: event.step,
        value: event.value,
        time_us: event.time_us,
        detected_at_us: event.detected_at_us,
    }
}
