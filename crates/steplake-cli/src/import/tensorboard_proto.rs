//! The parts of TensorBoard's protobuf messages an import reads, declared
//! with their field numbers from TensorFlow's and TensorBoard's `.proto`
//! files (`event.proto`, `summary.proto`, `tensor.proto`,
//! `tensor_shape.proto`, `plugins/hparams/plugin_data.proto`). Fields not
//! declared here are skipped when decoding; a `oneof` is declared as its
//! separate optional fields, which is the same on the wire.

use std::collections::HashMap;

/// `tensorflow.Event`: one record of an event file.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// The first record of a file: `brain.Event:2`.
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub graph_def: Option<Vec<u8>>,
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
    #[prost(bytes = "vec", optional, tag = "7")]
    pub session_log: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "8")]
    pub tagged_run_metadata: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "9")]
    pub meta_graph_def: Option<Vec<u8>>,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`: one tagged value.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub obsolete_old_style_histogram: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub image: Option<Vec<u8>>,
    #[prost(message, optional, tag = "5")]
    pub histo: Option<HistogramProto>,
    #[prost(bytes = "vec", optional, tag = "6")]
    pub audio: Option<Vec<u8>>,
    #[prost(message, optional, tag = "8")]
    pub tensor: Option<TensorProto>,
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
}

/// `tensorflow.SummaryMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
    /// 1: scalar, 2: tensor, 3: blob sequence.
    #[prost(int32, tag = "4")]
    pub data_class: i32,
}

/// `tensorflow.SummaryMetadata.PluginData`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PluginData {
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// `tensorflow.HistogramProto`: bucket `i` holds the values up to
/// `bucket_limit[i]` (above the limit before it).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HistogramProto {
    #[prost(double, tag = "1")]
    pub min: f64,
    #[prost(double, tag = "2")]
    pub max: f64,
    #[prost(double, tag = "3")]
    pub num: f64,
    #[prost(double, tag = "4")]
    pub sum: f64,
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    #[prost(double, repeated, tag = "6")]
    pub bucket_limit: Vec<f64>,
    #[prost(double, repeated, tag = "7")]
    pub bucket: Vec<f64>,
}

/// `tensorflow.TensorProto`: a tensor's values, either packed
/// little-endian in `tensor_content` or in the typed list of its dtype.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TensorProto {
    /// `tensorflow.DataType` (see [`DataType`]).
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    #[prost(bytes = "vec", tag = "4")]
    pub tensor_content: Vec<u8>,
    #[prost(float, repeated, tag = "5")]
    pub float_val: Vec<f32>,
    #[prost(double, repeated, tag = "6")]
    pub double_val: Vec<f64>,
    #[prost(int32, repeated, tag = "7")]
    pub int_val: Vec<i32>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
    #[prost(int64, repeated, tag = "10")]
    pub int64_val: Vec<i64>,
    #[prost(bool, repeated, tag = "11")]
    pub bool_val: Vec<bool>,
    /// Half and bfloat16 values, one per int32.
    #[prost(int32, repeated, tag = "13")]
    pub half_val: Vec<i32>,
    #[prost(uint32, repeated, tag = "16")]
    pub uint32_val: Vec<u32>,
    #[prost(uint64, repeated, tag = "17")]
    pub uint64_val: Vec<u64>,
}

/// `tensorflow.TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TensorShapeProto {
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<Dim>,
}

/// `tensorflow.TensorShapeProto.Dim`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Dim {
    #[prost(int64, tag = "1")]
    pub size: i64,
}

/// The `tensorflow.DataType` values an import reads.
pub(crate) mod data_type {
    pub(crate) const FLOAT: i32 = 1;
    pub(crate) const DOUBLE: i32 = 2;
    pub(crate) const INT32: i32 = 3;
    pub(crate) const UINT8: i32 = 4;
    pub(crate) const INT16: i32 = 5;
    pub(crate) const INT8: i32 = 6;
    pub(crate) const STRING: i32 = 7;
    pub(crate) const INT64: i32 = 9;
    pub(crate) const BOOL: i32 = 10;
    pub(crate) const BFLOAT16: i32 = 14;
    pub(crate) const UINT16: i32 = 17;
    pub(crate) const HALF: i32 = 19;
    pub(crate) const UINT32: i32 = 22;
    pub(crate) const UINT64: i32 = 23;
}

/// `tensorboard.hparams.HParamsPluginData`: the content of an `hparams`
/// plugin summary.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HParamsPluginData {
    #[prost(message, optional, tag = "3")]
    pub session_start_info: Option<SessionStartInfo>,
}

/// `tensorboard.hparams.SessionStartInfo`: one session's hyperparameters.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SessionStartInfo {
    #[prost(map = "string, message", tag = "1")]
    pub hparams: HashMap<String, ProtoValue>,
}

/// `google.protobuf.Value`, the kinds hyperparameters take.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoValue {
    #[prost(double, optional, tag = "2")]
    pub number_value: Option<f64>,
    #[prost(string, optional, tag = "3")]
    pub string_value: Option<String>,
    #[prost(bool, optional, tag = "4")]
    pub bool_value: Option<bool>,
}
