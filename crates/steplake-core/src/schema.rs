//! Arrow schemas of the SQL tables, shared by the Parquet writer, the buffer
//! and the query layer.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Time zone of every timestamp column.
pub const TIMESTAMP_TZ: &str = "UTC";

/// The type of timestamp columns: microseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(TIMESTAMP_TZ.into()))
}

/// `scalars(run_id, name, step, value, wall_time)`: one row per point.
pub fn scalars_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("run_id", DataType::Utf8, false),
                Field::new("name", DataType::Utf8, false),
                Field::new("step", DataType::Int64, false),
                Field::new("value", DataType::Float64, false),
                Field::new("wall_time", timestamp_type(), false),
            ]))
        })
        .clone()
}

/// `runs(run_id, project, name, created_at, ended_at, status, config, tags,
/// parent_run_id, fork_step)`: one row per run.
pub fn runs_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("run_id", DataType::Utf8, false),
                Field::new("project", DataType::Utf8, false),
                Field::new("name", DataType::Utf8, false),
                Field::new("created_at", timestamp_type(), false),
                Field::new("ended_at", timestamp_type(), true),
                Field::new("status", DataType::Utf8, false),
                Field::new("config", DataType::Utf8, false),
                Field::new(
                    "tags",
                    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                    false,
                ),
                Field::new("parent_run_id", DataType::Utf8, true),
                Field::new("fork_step", DataType::Int64, true),
            ]))
        })
        .clone()
}

/// `events(event_id, seq, run_id, condition_id, label, series, step, value,
/// time, detected_at, predicted, predicted_lo, predicted_hi)`: one row per
/// firing of a standing condition (the last three for a prediction
/// condition: the predicted final value and its interval).
pub fn events_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("event_id", DataType::Utf8, false),
                Field::new("seq", DataType::UInt64, false),
                Field::new("run_id", DataType::Utf8, false),
                Field::new("condition_id", DataType::Utf8, false),
                Field::new("label", DataType::Utf8, false),
                Field::new("series", DataType::Utf8, false),
                Field::new("step", DataType::Int64, false),
                Field::new("value", DataType::Float64, false),
                Field::new("time", timestamp_type(), false),
                Field::new("detected_at", timestamp_type(), false),
                Field::new("predicted", DataType::Float64, true),
                Field::new("predicted_lo", DataType::Float64, true),
                Field::new("predicted_hi", DataType::Float64, true),
            ]))
        })
        .clone()
}

/// `conditions(condition_id, run_id, project, series, predicate, hold,
/// label, created_at)`: the standing conditions; `run_id` is set for a
/// condition on one run, `project` for a project's default.
pub fn conditions_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("condition_id", DataType::Utf8, false),
                Field::new("run_id", DataType::Utf8, true),
                Field::new("project", DataType::Utf8, true),
                Field::new("series", DataType::Utf8, false),
                Field::new("predicate", DataType::Utf8, false),
                Field::new("hold", DataType::UInt64, false),
                Field::new("label", DataType::Utf8, false),
                Field::new("created_at", timestamp_type(), false),
            ]))
        })
        .clone()
}

/// Column positions in [`scalars_schema`].
pub mod scalars_col {
    /// `run_id`
    pub const RUN_ID: usize = 0;
    /// `name`
    pub const NAME: usize = 1;
    /// `step`
    pub const STEP: usize = 2;
    /// `value`
    pub const VALUE: usize = 3;
    /// `wall_time`
    pub const WALL_TIME: usize = 4;
}

/// The type of a list column of `item` elements (non-null elements).
pub fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("element", item, false)))
}

/// `tensors(run_id, name, step, wall_time, dtype, shape, numel, mean, std,
/// min, max, l2, abs_max, nan_count, inf_count, zero_frac, hist, quantiles,
/// tensor, tensor_f64, tensor_int)`: one row per tensor per step.
///
/// The whole tensor, when it was sent, is in one of three columns by dtype,
/// so a standard Parquet reader sees plain numbers: `tensor` (FLOAT) for f32,
/// bf16 and f16 (both widen exactly), `tensor_f64` (DOUBLE) for f64,
/// `tensor_int` (INT64) for integer and bool tensors.
pub fn tensors_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("run_id", DataType::Utf8, false),
                Field::new("name", DataType::Utf8, false),
                Field::new("step", DataType::Int64, false),
                Field::new("wall_time", timestamp_type(), false),
                Field::new("dtype", DataType::Utf8, false),
                Field::new("shape", list_of(DataType::Int64), false),
                Field::new("numel", DataType::Int64, false),
                Field::new("mean", DataType::Float64, true),
                Field::new("std", DataType::Float64, true),
                Field::new("min", DataType::Float64, true),
                Field::new("max", DataType::Float64, true),
                Field::new("l2", DataType::Float64, false),
                Field::new("abs_max", DataType::Float64, true),
                Field::new("nan_count", DataType::Int64, false),
                Field::new("inf_count", DataType::Int64, false),
                Field::new("zero_frac", DataType::Float64, true),
                Field::new("hist", list_of(DataType::Int64), false),
                Field::new("quantiles", list_of(DataType::Float64), true),
                Field::new("tensor", list_of(DataType::Float32), true),
                Field::new("tensor_f64", list_of(DataType::Float64), true),
                Field::new("tensor_int", list_of(DataType::Int64), true),
            ]))
        })
        .clone()
}
