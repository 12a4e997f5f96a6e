//! steplake-core: the vocabulary every other steplake crate shares.
//!
//! It owns no I/O. It defines
//! - [`DType`], the element types of tensors, and the [`safetensors`] header
//!   reader used to import checkpoints;
//! - [`TensorRecord`] and [`TensorStats`], one tensor at one step as stored;
//! - the data model: [`ScalarBatch`] (a columnar batch of scalar points as it
//!   travels from the wire to the write-ahead log and the buffer) and
//!   [`RunInfo`] (one row of the `runs` table);
//! - standing conditions and their events ([`watch`]);
//! - the Arrow schemas of the SQL tables ([`schema`]), so that the Parquet
//!   writer, the in-memory buffer and the query layer agree on one layout;
//! - the validation rules for input from outside ([`ScalarBatch::validate`],
//!   [`validate_run_id`], [`validate_series_name`]) and the error they return
//!   ([`CoreError`]), which names the offending field and the reason.
//!
//! Data flows: wire (steplake-server) → [`ScalarBatch`] → validate →
//! steplake-store (WAL, buffer, Parquet) → steplake-query (SQL).

pub mod dtype;
pub mod json;
pub mod safetensors;
pub mod schema;
pub mod tensor;
pub mod watch;

pub use dtype::DType;
pub use tensor::{TensorRecord, TensorStats};
pub use watch::{ConditionScope, ConditionSpec, Event, Predicted, PredictionSpec};

use serde::{Deserialize, Serialize};

/// Longest accepted run id, in bytes.
pub const MAX_RUN_ID_LEN: usize = 128;
/// Longest accepted series name, in bytes.
pub const MAX_SERIES_NAME_LEN: usize = 1024;

/// Errors raised while validating data that came from outside the process.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoreError {
    /// A field of a request has a value steplake cannot accept.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The offending field, e.g. `scalars.steps[3]`.
        field: String,
        /// Why it was rejected, and what would be accepted.
        reason: String,
    },
}

impl CoreError {
    /// Shorthand for [`CoreError::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CoreError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// `n` followed by `one` when it is 1, else by `many`: "1 batch", "2 batches".
pub fn counted(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Checks a run id: 1..=128 bytes of ASCII letters, digits, `-`, `_`, `.`.
///
/// Run ids appear in file names and URLs, so they are kept to a portable alphabet.
pub fn validate_run_id(run_id: &str) -> Result<(), CoreError> {
    if run_id.is_empty() {
        return Err(CoreError::invalid("run_id", "must not be empty"));
    }
    if run_id.len() > MAX_RUN_ID_LEN {
        return Err(CoreError::invalid(
            "run_id",
            format!("is {} bytes; the limit is {MAX_RUN_ID_LEN}", run_id.len()),
        ));
    }
    if let Some(bad) = run_id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(CoreError::invalid(
            "run_id",
            format!("contains {bad:?}; use letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

/// Earliest accepted wall time: 0001-01-01T00:00:00Z, in µs since the epoch.
pub const MIN_WALL_TIME_US: i64 = -62_135_596_800_000_000;
/// Latest accepted wall time: 9999-12-31T23:59:59.999999Z, in µs since the epoch.
pub const MAX_WALL_TIME_US: i64 = 253_402_300_799_999_999;

/// Checks a wall time: within years 1 to 9999, the range every reader of
/// the `wall_time` column (Arrow, Parquet, SQL, JSON) can print and convert.
pub fn validate_wall_time(field: &str, wall_time_us: i64) -> Result<(), CoreError> {
    check_wall_time(wall_time_us, || field.to_string())
}

/// [`validate_wall_time`], naming the field only when there is something
/// wrong: a batch checks a wall time per point, and formatting each one's
/// field name cost more than the check.
fn check_wall_time(wall_time_us: i64, field: impl FnOnce() -> String) -> Result<(), CoreError> {
    if (MIN_WALL_TIME_US..=MAX_WALL_TIME_US).contains(&wall_time_us) {
        return Ok(());
    }
    Err(CoreError::invalid(
        field(),
        format!(
            "is {wall_time_us} µs since the Unix epoch, outside the years 1 to 9999; send microseconds (not nanoseconds), or leave it out for the server's clock"
        ),
    ))
}

/// Checks a series name: non-empty, at most 1024 bytes, no control characters.
pub fn validate_series_name(field: &str, name: &str) -> Result<(), CoreError> {
    check_series_name(name, || field.to_string())
}

/// [`validate_series_name`], naming the field only when there is
/// something wrong.
fn check_series_name(name: &str, field: impl FnOnce() -> String) -> Result<(), CoreError> {
    let reason = if name.is_empty() {
        "series name must not be empty".to_string()
    } else if name.len() > MAX_SERIES_NAME_LEN {
        format!(
            "series name is {} bytes; the limit is {MAX_SERIES_NAME_LEN}",
            name.len()
        )
    } else if name.chars().any(char::is_control) {
        "series name contains a control character".to_string()
    } else {
        return Ok(());
    };
    Err(CoreError::invalid(field(), reason))
}

/// A columnar batch of scalar points for one run.
///
/// Point `i` is `(names[name_index[i]], steps[i], values[i], wall_times_us[i])`.
/// NaN and ±Inf values are data and are kept as such.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScalarBatch {
    /// Distinct series names used by the batch.
    pub names: Vec<String>,
    /// Per point: index into `names`.
    pub name_index: Vec<u32>,
    /// Per point: training step, `>= 0`.
    pub steps: Vec<i64>,
    /// Per point: value.
    pub values: Vec<f64>,
    /// Per point: wall-clock time in microseconds since the Unix epoch.
    pub wall_times_us: Vec<i64>,
}

impl ScalarBatch {
    /// Number of points in the batch.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True when the batch holds no point.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Checks the batch's shape and contents; the error names the first offending field.
    ///
    /// `wall_times_us` must hold one entry per point (the server fills it in
    /// before validation when the client sent none).
    pub fn validate(&self) -> Result<(), CoreError> {
        let n = self.steps.len();
        for (field, len) in [
            ("scalars.name_index", self.name_index.len()),
            ("scalars.values", self.values.len()),
            ("scalars.wall_times_us", self.wall_times_us.len()),
        ] {
            if len != n {
                return Err(CoreError::invalid(
                    field,
                    format!("has {len} entries but scalars.steps has {n}; every column needs one entry per point"),
                ));
            }
        }
        for (i, name) in self.names.iter().enumerate() {
            check_series_name(name, || format!("scalars.names[{i}]"))?;
        }
        let name_count = self.names.len() as u64;
        if let Some(i) = self
            .name_index
            .iter()
            .position(|&idx| u64::from(idx) >= name_count)
        {
            return Err(CoreError::invalid(
                format!("scalars.name_index[{i}]"),
                format!(
                    "is {} but the batch names only {name_count} series",
                    self.name_index[i]
                ),
            ));
        }
        if let Some(i) = self.steps.iter().position(|&s| s < 0) {
            return Err(CoreError::invalid(
                format!("scalars.steps[{i}]"),
                format!("is {}; steps must be >= 0", self.steps[i]),
            ));
        }
        for (i, &t) in self.wall_times_us.iter().enumerate() {
            check_wall_time(t, || format!("scalars.wall_times_us[{i}]"))?;
        }
        Ok(())
    }
}

/// Lifecycle state of a run as shown in the `runs` table.
pub const RUN_STATUS_RUNNING: &str = "running";

/// Status of a run record that deletes the run: it is logged like any run
/// record, and applying it forgets the run and its points.
pub const RUN_STATUS_DELETED: &str = "deleted";

/// One run: a row of the `runs` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Unique id (see [`validate_run_id`]).
    pub run_id: String,
    /// Project the run belongs to.
    pub project: String,
    /// Human-readable name.
    pub name: String,
    /// Creation time, microseconds since the Unix epoch.
    pub created_at_us: i64,
    /// When the run was finished, if it was.
    pub ended_at_us: Option<i64>,
    /// `running`, `finished`, `failed`, ...
    pub status: String,
    /// Configuration as a JSON document (`{}` when none was given).
    pub config_json: String,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// The run this one was forked from.
    pub parent_run_id: Option<String>,
    /// The step of the parent at which this run was forked.
    pub fork_step: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> ScalarBatch {
        ScalarBatch {
            names: vec!["loss".into()],
            name_index: vec![0, 0],
            steps: vec![0, 1],
            values: vec![1.0, f64::NAN],
            wall_times_us: vec![1, 2],
        }
    }

    #[test]
    fn valid_batch_passes_and_nan_is_data() {
        assert_eq!(batch().validate(), Ok(()));
    }

    #[test]
    fn ragged_columns_name_the_field() {
        let mut b = batch();
        b.values.pop();
        let err = b.validate().unwrap_err().to_string();
        assert!(err.contains("scalars.values"), "{err}");
    }

    #[test]
    fn wall_times_outside_years_1_to_9999_name_the_index() {
        for bad in [
            i64::MIN,
            MIN_WALL_TIME_US - 1,
            MAX_WALL_TIME_US + 1,
            i64::MAX,
        ] {
            let mut b = batch();
            b.wall_times_us[1] = bad;
            let err = b.validate().unwrap_err().to_string();
            assert!(
                err.contains("scalars.wall_times_us[1]") && err.contains("years 1 to 9999"),
                "{err}"
            );
        }
        let mut b = batch();
        b.wall_times_us = vec![MIN_WALL_TIME_US, MAX_WALL_TIME_US];
        assert_eq!(b.validate(), Ok(()));
    }

    #[test]
    fn negative_step_names_the_index() {
        let mut b = batch();
        b.steps[1] = -5;
        let err = b.validate().unwrap_err().to_string();
        assert!(
            err.contains("scalars.steps[1]") && err.contains("-5"),
            "{err}"
        );
    }

    #[test]
    fn empty_name_and_bad_index_are_rejected() {
        let mut b = batch();
        b.names[0].clear();
        assert!(b.validate().unwrap_err().to_string().contains("empty"));
        let mut b = batch();
        b.name_index[0] = 7;
        assert!(b
            .validate()
            .unwrap_err()
            .to_string()
            .contains("scalars.name_index[0]"));
    }

    #[test]
    fn run_ids_are_portable() {
        assert!(validate_run_id("run-1_a.b").is_ok());
        assert!(validate_run_id("").is_err());
        assert!(validate_run_id("a/b").is_err());
        assert!(validate_run_id(&"x".repeat(200)).is_err());
    }
}
