//! Standing conditions and the events they raise: what a trainer registers
//! and what the server tells it back (issue 18).
//!
//! A [`ConditionSpec`] is stored as written; the server checks its predicate
//! when it is registered and evaluates it over the matching series of each
//! batch. An [`Event`] is one firing: durable in the same WAL record as the
//! batch that caused it, and a row of the `events` table.

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// Longest accepted series pattern, in bytes.
pub const MAX_SERIES_PATTERN_LEN: usize = 1024;
/// Longest accepted condition label, in bytes.
pub const MAX_LABEL_LEN: usize = 256;

/// One standing condition: a predicate over one series (or every series a
/// pattern matches) of one run, or of every run of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionSpec {
    /// Unique id, given by the server.
    pub id: String,
    /// What it watches.
    pub scope: ConditionScope,
    /// The series name, or a pattern where `*` matches any characters
    /// (`train/*`, `*grad_norm`).
    pub series: String,
    /// The predicate (see `steplake_query::condition`).
    pub predicate: String,
    /// Points in a row the predicate must hold before the condition fires.
    pub hold: u64,
    /// A name for people; the predicate when none was given.
    pub label: String,
    /// When it was registered, microseconds since the Unix epoch.
    pub created_at_us: i64,
    /// A condition on the predicted final value instead of a predicate
    /// over each point (`predicate` then describes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<PredictionSpec>,
}

/// A standing condition on the predicted final value of a series: the
/// schedule-aware loss-curve fit (`fit_loss_curve`) of the series so far,
/// refitted every `every` points, at `final_step`. It fires when the
/// prediction is above `above`, or above the last value of the same series
/// in `baseline_run_id`; again only after a fit that was not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionSpec {
    /// The step whose value is predicted (the run's last).
    pub final_step: i64,
    /// The run's learning-rate series; empty for a constant rate.
    #[serde(default)]
    pub lr_series: String,
    /// The threshold, when there is no baseline run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// The run whose final value of the same series is the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_run_id: Option<String>,
    /// Points of the series between two fits.
    pub every: u64,
    /// The level of the prediction interval (0.95: 95 %).
    pub level: f64,
}

/// What a prediction condition's event carries: the prediction, its
/// interval, and what it was compared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predicted {
    /// The step predicted.
    pub final_step: i64,
    /// The predicted value, and its interval.
    pub value: f64,
    /// Lower end of the interval.
    pub lo: f64,
    /// Upper end of the interval.
    pub hi: f64,
    /// The threshold it exceeded (the baseline run's final value, if one).
    pub threshold: f64,
}

/// Which runs a condition watches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionScope {
    /// One run.
    Run(String),
    /// Every run of a project: a default for the runs it has and will have.
    Project(String),
}

impl ConditionSpec {
    /// Whether this condition watches series `name` of a run with id
    /// `run_id` in `project`.
    pub fn watches(&self, run_id: &str, project: &str, name: &str) -> bool {
        self.applies_to(run_id, project) && pattern_matches(&self.series, name)
    }

    /// Whether this condition watches the run `run_id` of `project`.
    pub fn applies_to(&self, run_id: &str, project: &str) -> bool {
        match &self.scope {
            ConditionScope::Run(id) => id == run_id,
            ConditionScope::Project(p) => p == project,
        }
    }

    /// The run it watches, when it watches one run.
    pub fn run_id(&self) -> Option<&str> {
        match &self.scope {
            ConditionScope::Run(id) => Some(id),
            ConditionScope::Project(_) => None,
        }
    }

    /// Checks the parts a predicate parser does not: the series pattern
    /// and the label.
    pub fn validate_fields(&self) -> Result<(), CoreError> {
        if self.series.is_empty() {
            return Err(CoreError::invalid(
                "series",
                "must name a series, or be a pattern such as `train/*`",
            ));
        }
        if self.series.len() > MAX_SERIES_PATTERN_LEN {
            return Err(CoreError::invalid(
                "series",
                format!("is longer than {MAX_SERIES_PATTERN_LEN} bytes"),
            ));
        }
        if self.label.len() > MAX_LABEL_LEN {
            return Err(CoreError::invalid(
                "label",
                format!("is longer than {MAX_LABEL_LEN} bytes"),
            ));
        }
        Ok(())
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of
/// characters (none included) and every other character itself.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == name;
    };
    let Some(mut remaining) = name.strip_prefix(first) else {
        return false;
    };
    let mut pieces: Vec<&str> = rest.split('*').collect();
    let last = pieces.pop().unwrap_or("");
    for piece in pieces {
        match remaining.find(piece) {
            Some(at) => remaining = &remaining[at + piece.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

/// One firing of a condition: a row of the `events` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Names the firing: the same condition, series and step always give
    /// the same id, so a client that sees an id twice has seen one event.
    #[serde(rename = "event_id")]
    pub id: String,
    /// Order of the event in the store: increasing in the order events
    /// became durable. [`Event::seq`] of the last event seen is where a
    /// watch resumes. Set by the store.
    #[serde(default)]
    pub seq: u64,
    /// The run.
    pub run_id: String,
    /// The condition that fired.
    pub condition_id: String,
    /// Its label.
    pub label: String,
    /// The series it fired on.
    pub series: String,
    /// The step of the point it fired at.
    pub step: i64,
    /// The value of that point (NaN and the infinities kept).
    #[serde(with = "crate::json::float")]
    pub value: f64,
    /// The wall time of that point, microseconds since the Unix epoch.
    pub time_us: i64,
    /// When the server saw it fire, microseconds since the Unix epoch.
    pub detected_at_us: i64,
    /// For a prediction condition: what was predicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted: Option<Predicted>,
}

impl Event {
    /// The id of the firing of `condition_id` on `series` of `run_id` at `step`.
    pub fn id_for(run_id: &str, condition_id: &str, series: &str, step: i64) -> String {
        // FNV-1a over the parts, separated so that no two tuples collide by
        // concatenation; 64 bits are ample within one run's events.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [
            run_id.as_bytes(),
            condition_id.as_bytes(),
            series.as_bytes(),
        ] {
            for &b in part.iter().chain(std::iter::once(&0xff)) {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{condition_id}-{hash:016x}-{step}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_with_stars() {
        assert!(pattern_matches("train/loss", "train/loss"));
        assert!(!pattern_matches("train/loss", "train/loss2"));
        assert!(pattern_matches("train/*", "train/loss"));
        assert!(pattern_matches("train/*", "train/"));
        assert!(!pattern_matches("train/*", "eval/loss"));
        assert!(pattern_matches("*grad_norm", "layer.3/grad_norm"));
        assert!(pattern_matches("*", ""));
        assert!(pattern_matches("a*b*c", "abc"));
        assert!(pattern_matches("a*b*c", "a_b_b_c"));
        assert!(!pattern_matches("a*b*c", "a_c_b"));
        assert!(!pattern_matches("ab*ba", "aba"));
    }

    #[test]
    fn events_keep_non_finite_values_through_json() {
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.5] {
            let event = Event {
                id: "i".into(),
                seq: 3,
                run_id: "r".into(),
                condition_id: "c".into(),
                label: "l".into(),
                series: "loss".into(),
                step: 4,
                value,
                time_us: 5,
                detected_at_us: 6,
                predicted: None,
            };
            let back: Event = serde_json::from_slice(&serde_json::to_vec(&event).unwrap()).unwrap();
            assert_eq!(back.value.to_bits(), value.to_bits());
        }
    }

    #[test]
    fn event_ids_name_the_firing() {
        let a = Event::id_for("r", "c1", "loss", 10);
        assert_eq!(a, Event::id_for("r", "c1", "loss", 10));
        assert_ne!(a, Event::id_for("r", "c1", "loss", 11));
        assert_ne!(a, Event::id_for("r", "c1", "loss2", 10));
        assert_ne!(
            Event::id_for("ab", "c", "d", 1),
            Event::id_for("a", "c", "bd", 1)
        );
    }
}
