//! `--alert-webhook URL`: every event POSTed as JSON, in seq order.
//!
//! The queue is the store itself: the worker reads the events after the
//! last seq it delivered (kept in `DATA_DIR/alerts/webhook.cursor`, so a
//! restart resumes where it stopped), at most [`BATCH`] at a time in memory.
//! A delivery that fails for a reason that may pass (no connection, a
//! timeout, 408, 429, 5xx) is retried with a growing pause, for as long as
//! it takes: the events wait, durable, and nothing piles up in memory. A
//! receiver that refuses an event (another 4xx) gets it [`MAX_REFUSALS`]
//! times, then it is skipped with an error in the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use steplake_core::Event;
use steplake_store::Store;

use super::notify::{Subscription, Wake};

/// Events read from the store at a time.
const BATCH: usize = 256;
/// Times an event the receiver refuses (4xx) is sent before it is skipped.
const MAX_REFUSALS: u32 = 3;
/// Longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long one POST may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A webhook URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Not an http(s) URL.
    #[error("--alert-webhook {url:?} is not an http:// or https:// URL ({reason})")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Where events are POSTed.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: reqwest::Url,
}

impl Webhook {
    /// Checks `url`: it must be http:// or https://.
    pub fn parse(url: &str) -> Result<Webhook, WebhookError> {
        let bad = |reason: String| WebhookError::BadUrl {
            url: url.to_string(),
            reason,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad(format!("the scheme is {:?}", parsed.scheme())));
        }
        Ok(Webhook { url: parsed })
    }

    /// Delivers every event stored from now on (or after the saved cursor)
    /// until the server stops.
    pub(crate) async fn deliver(self, store: Arc<Store>, mut subscription: Subscription) {
        let cursor = Cursor::in_data_dir(store.data_dir());
        let mut after = cursor.load().unwrap_or_else(|| store.last_event_seq());
        let client = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "the alert webhook cannot start; events are not POSTed");
                return;
            }
        };
        loop {
            let events = store.events_page(None, after, BATCH + 1);
            let more = events.len() > BATCH;
            for event in events.into_iter().take(BATCH) {
                if !self.post(&client, &event, &mut subscription).await {
                    return;
                }
                after = event.seq;
                cursor.save(after);
            }
            if !more {
                if let Wake::Stop = subscription.next().await {
                    return;
                }
            }
        }
    }

    /// POSTs one event until it is delivered or refused for good; `false`
    /// when the server stops first.
    async fn post(
        &self,
        client: &reqwest::Client,
        event: &Event,
        subscription: &mut Subscription,
    ) -> bool {
        let body = payload(event);
        let mut pause = Duration::from_millis(100);
        let mut refusals = 0;
        loop {
            let sent = client
                .post(self.url.clone())
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let retry = match sent {
                Ok(response) if response.status().is_success() => return true,
                Ok(response) => {
                    let status = response.status();
                    let passing = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
                    if !passing {
                        refusals += 1;
                        if refusals >= MAX_REFUSALS {
                            tracing::error!(event = %event.id, %status, "the alert webhook refused an event {MAX_REFUSALS} times; it is skipped (it stays in the events table)");
                            return true;
                        }
                    }
                    format!("HTTP {status}")
                }
                Err(error) => error.to_string(),
            };
            tracing::warn!(event = %event.id, reason = %retry, pause_ms = pause.as_millis() as u64, "the alert webhook did not take an event; retrying");
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                wake = subscription.next() => if let Wake::Stop = wake {
                    return false;
                },
            }
            pause = (pause * 2).min(MAX_BACKOFF);
        }
    }
}

/// The JSON body for `event`: its fields, and a `text` line for chat
/// webhooks that show only that.
fn payload(event: &Event) -> Vec<u8> {
    let mut json = match serde_json::to_value(event) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    json.insert(
        "text".into(),
        serde_json::Value::String(format!(
            "steplake: {} fired on {} at step {} (value {}) in run {}",
            event.label, event.series, event.step, event.value, event.run_id
        )),
    );
    serde_json::to_vec(&json).unwrap_or_default()
}

/// The seq of the last event the webhook delivered, in a file.
struct Cursor {
    path: PathBuf,
}

impl Cursor {
    fn in_data_dir(data_dir: &Path) -> Cursor {
        Cursor {
            path: data_dir.join("alerts").join("webhook.cursor"),
        }
    }

    fn load(&self) -> Option<u64> {
        std::fs::read_to_string(&self.path)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Saves `seq` (write, then rename: a crash leaves the old or the new).
    fn save(&self, seq: u64) {
        let saved = (|| {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let temporary = self.path.with_extension("tmp");
            std::fs::write(&temporary, seq.to_string())?;
            std::fs::rename(&temporary, &self.path)
        })();
        if let Err(error) = saved {
            tracing::warn!(path = %self.path.display(), %error, "saving the alert webhook's cursor failed; a restart may POST some events again");
        }
    }
}
