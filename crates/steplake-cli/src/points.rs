//! Parsing scalar points from CSV and JSONL input, streaming in constant
//! memory, with errors that name the line and the problem.
//!
//! - CSV: a header with `name,step,value` and optionally `wall_time`, in any order.
//! - JSONL, long form: `{"name": "loss", "step": 10, "value": 1.2}`.
//! - JSONL, wide form: `{"step": 10, "loss": 1.2, "acc": 0.5}`.
//!
//! Values may be numbers or the words `nan`, `inf`, `-inf` (any case; as JSON
//! strings in JSONL). Steps are non-negative integers. `wall_time` is Unix
//! seconds (fractions allowed) or RFC 3339.
//!
//! The input is read through one CSV reader (or one reused line buffer for
//! JSONL) and each point is handed to a [`PointSink`] as borrowed text: no
//! allocation per line. A line's points reach the sink only once the whole
//! line has parsed, so a bad line never leaves half of itself behind.

use std::borrow::Cow;
use std::io::BufRead;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

/// Where parsed points go.
pub(crate) trait PointSink {
    /// Takes one point.
    fn point(&mut self, name: &str, step: i64, value: f64, wall_time_us: Option<i64>);
}

impl PointSink for steplake_client::BatchBuilder {
    fn point(&mut self, name: &str, step: i64, value: f64, wall_time_us: Option<i64>) {
        self.push(name, step, value, wall_time_us);
    }
}

/// A line that could not be parsed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LineError {
    /// 1-based line number in the input.
    pub line: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Input formats of `steplake write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum InputFormat {
    Csv,
    Jsonl,
}

fn parse_value(text: &str) -> Result<f64, String> {
    let t = text.trim();
    // Rust's parser also takes nan, inf and infinity, signed, in any case.
    t.parse::<f64>()
        .map_err(|_| format!("value {t:?} is not a number (use digits, nan, inf or -inf)"))
}

fn parse_step(text: &str) -> Result<i64, String> {
    let t = text.trim();
    match t.parse::<i64>() {
        Ok(s) if s >= 0 => Ok(s),
        Ok(s) => Err(format!("step {s} is negative; steps must be >= 0")),
        Err(_) => Err(format!("step {t:?} is not a non-negative integer")),
    }
}

fn seconds_to_us(seconds: f64) -> Result<i64, String> {
    let us = (seconds * 1e6).round();
    if us.is_finite() && us >= i64::MIN as f64 && us <= i64::MAX as f64 {
        Ok(us as i64)
    } else {
        Err(format!("wall_time {seconds} is out of range"))
    }
}

fn parse_wall_time(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if let Ok(seconds) = t.parse::<f64>() {
        if seconds.is_finite() {
            return seconds_to_us(seconds);
        }
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp_micros())
        .map_err(|_| format!("wall_time {t:?} is neither Unix seconds nor an RFC 3339 time"))
}

fn check_name(name: &str) -> Result<(), String> {
    steplake_core::validate_series_name("name", name).map_err(|e| e.to_string())
}

/// Streams points out of CSV or JSONL input.
pub(crate) struct PointReader {
    source: Source,
}

enum Source {
    Csv {
        reader: csv::Reader<Box<dyn BufRead>>,
        record: csv::ByteRecord,
        columns: Option<CsvColumns>,
    },
    Jsonl {
        input: Box<dyn BufRead>,
        line: String,
        line_no: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct CsvColumns {
    name: usize,
    step: usize,
    value: usize,
    wall_time: Option<usize>,
    count: usize,
}

impl PointReader {
    /// A reader of `input` in `format`.
    pub(crate) fn new(format: InputFormat, input: Box<dyn BufRead>) -> Self {
        let source = match format {
            InputFormat::Csv => Source::Csv {
                reader: csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(input),
                record: csv::ByteRecord::new(),
                columns: None,
            },
            InputFormat::Jsonl => Source::Jsonl {
                input,
                line: String::new(),
                line_no: 0,
            },
        };
        PointReader { source }
    }

    /// Parses whole lines into `sink` until at least `max_points` points
    /// were added or the input ends. Returns the number of points added: 0
    /// means the input is exhausted. On a bad line, the points of the lines
    /// before it are in `sink` and the error names the line.
    pub(crate) fn read_into(
        &mut self,
        sink: &mut impl PointSink,
        max_points: usize,
    ) -> Result<usize, LineError> {
        match &mut self.source {
            Source::Csv {
                reader,
                record,
                columns,
            } => read_csv(reader, record, columns, sink, max_points),
            Source::Jsonl {
                input,
                line,
                line_no,
            } => read_jsonl(input.as_mut(), line, line_no, sink, max_points),
        }
    }
}

fn read_csv(
    reader: &mut csv::Reader<Box<dyn BufRead>>,
    record: &mut csv::ByteRecord,
    columns: &mut Option<CsvColumns>,
    sink: &mut impl PointSink,
    max_points: usize,
) -> Result<usize, LineError> {
    let mut added = 0;
    while added < max_points {
        let more = reader.read_byte_record(record).map_err(|e| LineError {
            line: e.position().map_or(0, |p| p.line()),
            reason: format!("is not valid CSV: {e}"),
        })?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        let blank = record.len() == 1 && record[0].iter().all(u8::is_ascii_whitespace);
        if blank {
            continue;
        }
        let at_line = |reason: String| LineError { line, reason };
        match columns {
            None => *columns = Some(csv_header(record).map_err(at_line)?),
            Some(columns) => {
                csv_point(*columns, record, sink).map_err(at_line)?;
                added += 1;
            }
        }
    }
    Ok(added)
}

fn csv_field(record: &csv::ByteRecord, index: usize) -> Result<&str, String> {
    std::str::from_utf8(&record[index]).map_err(|_| format!("field {} is not UTF-8", index + 1))
}

fn csv_header(record: &csv::ByteRecord) -> Result<CsvColumns, String> {
    let fields: Vec<String> = record
        .iter()
        .map(|f| String::from_utf8_lossy(f).trim().to_string())
        .collect();
    let find = |n: &str| fields.iter().position(|f| f == n);
    let (Some(name), Some(step), Some(value)) = (find("name"), find("step"), find("value")) else {
        return Err(format!(
            "the CSV header is {:?}; it must name the columns name,step,value (and optionally wall_time)",
            fields.join(",")
        ));
    };
    Ok(CsvColumns {
        name,
        step,
        value,
        wall_time: find("wall_time"),
        count: fields.len(),
    })
}

fn csv_point(
    columns: CsvColumns,
    record: &csv::ByteRecord,
    sink: &mut impl PointSink,
) -> Result<(), String> {
    if record.len() != columns.count {
        return Err(format!(
            "has {} fields but the header has {}",
            record.len(),
            columns.count
        ));
    }
    let name = csv_field(record, columns.name)?.trim();
    check_name(name)?;
    let step = parse_step(csv_field(record, columns.step)?)?;
    let value = parse_value(csv_field(record, columns.value)?)?;
    let wall_time_us = match columns.wall_time {
        Some(i) => Some(parse_wall_time(csv_field(record, i)?)?),
        None => None,
    };
    sink.point(name, step, value, wall_time_us);
    Ok(())
}

fn read_jsonl(
    input: &mut dyn BufRead,
    line: &mut String,
    line_no: &mut u64,
    sink: &mut impl PointSink,
    max_points: usize,
) -> Result<usize, LineError> {
    let mut added = 0;
    while added < max_points {
        line.clear();
        let read = input.read_line(line).map_err(|e| LineError {
            line: *line_no + 1,
            reason: format!("cannot be read: {e}"),
        })?;
        if read == 0 {
            break;
        }
        *line_no += 1;
        if line.trim().is_empty() {
            continue;
        }
        added += jsonl_points(line, sink).map_err(|reason| LineError {
            line: *line_no,
            reason,
        })?;
    }
    Ok(added)
}

/// Parses one JSONL line and hands its points to `sink`; returns how many.
fn jsonl_points(line: &str, sink: &mut impl PointSink) -> Result<usize, String> {
    let object: JsonLine<'_> =
        serde_json::from_str(line).map_err(|e| format!("is not a JSON object: {e}"))?;
    let step = match &object.step {
        Some(v) => json_step(v)?,
        None => return Err("has no \"step\"".into()),
    };
    let wall_time_us = object.wall_time.as_ref().map(json_wall_time).transpose()?;
    if let Some(name) = &object.name {
        let JsonScalar::Str(name) = name else {
            return Err("\"name\" must be a string".into());
        };
        check_name(name)?;
        let value = object
            .value
            .as_ref()
            .ok_or("has \"name\" but no \"value\"")?;
        sink.point(name, step, json_value(value)?, wall_time_us);
        return Ok(1);
    }
    if object.metrics.is_empty() {
        return Err("holds a step but no metric".into());
    }
    // The whole line is parsed before any of it reaches the sink.
    let mut values = Vec::with_capacity(object.metrics.len());
    for (key, value) in &object.metrics {
        check_name(key)?;
        values.push(json_value(value).map_err(|e| format!("{key}: {e}"))?);
    }
    for ((key, _), value) in object.metrics.iter().zip(values) {
        sink.point(key, step, value, wall_time_us);
    }
    Ok(object.metrics.len())
}

/// One JSONL line: the reserved keys, and every other key as a metric.
#[derive(Default)]
struct JsonLine<'a> {
    step: Option<JsonScalar<'a>>,
    wall_time: Option<JsonScalar<'a>>,
    name: Option<JsonScalar<'a>>,
    value: Option<JsonScalar<'a>>,
    metrics: Vec<(Cow<'a, str>, JsonScalar<'a>)>,
}

/// A JSON value as far as points care: a number, a string, or something else.
enum JsonScalar<'a> {
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(Cow<'a, str>),
    /// Anything else, described for the error message.
    Other(&'static str),
}

impl std::fmt::Display for JsonScalar<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonScalar::Int(v) => write!(f, "{v}"),
            JsonScalar::Uint(v) => write!(f, "{v}"),
            JsonScalar::Float(v) => write!(f, "{v}"),
            JsonScalar::Str(s) => write!(f, "{s:?}"),
            JsonScalar::Other(what) => f.write_str(what),
        }
    }
}

/// A JSON string key, borrowed from the line when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for JsonScalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = JsonScalar<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(JsonScalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(JsonScalar::Uint(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(JsonScalar::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonScalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonScalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(JsonScalar::Other(if v { "true" } else { "false" }))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(JsonScalar::Other("null"))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(JsonScalar::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(JsonScalar::Other("an object"))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

impl<'de> Deserialize<'de> for JsonLine<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LineVisitor;
        impl<'de> Visitor<'de> for LineVisitor {
            type Value = JsonLine<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut line = JsonLine::default();
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    let value = map.next_value::<JsonScalar<'de>>()?;
                    let slot = match key.as_ref() {
                        "step" => &mut line.step,
                        "wall_time" => &mut line.wall_time,
                        "name" => &mut line.name,
                        "value" => &mut line.value,
                        _ => {
                            // A repeated key: the last one wins, as in JSON objects.
                            line.metrics.retain(|(k, _)| *k != key);
                            line.metrics.push((key, value));
                            continue;
                        }
                    };
                    *slot = Some(value);
                }
                Ok(line)
            }
        }
        deserializer.deserialize_map(LineVisitor)
    }
}

fn json_step(v: &JsonScalar<'_>) -> Result<i64, String> {
    match v {
        JsonScalar::Int(s) if *s >= 0 => Ok(*s),
        JsonScalar::Int(s) => Err(format!("step {s} is negative; steps must be >= 0")),
        JsonScalar::Uint(s) => {
            i64::try_from(*s).map_err(|_| format!("step {s} is larger than the largest step"))
        }
        JsonScalar::Str(s) => parse_step(s),
        other => Err(format!("step {other} is not a non-negative integer")),
    }
}

fn json_value(v: &JsonScalar<'_>) -> Result<f64, String> {
    match v {
        JsonScalar::Int(n) => Ok(*n as f64),
        JsonScalar::Uint(n) => Ok(*n as f64),
        JsonScalar::Float(n) => Ok(*n),
        JsonScalar::Str(s) => parse_value(s),
        JsonScalar::Other(what) => Err(format!(
            "value {what} is not a number (use a number, \"nan\", \"inf\" or \"-inf\")"
        )),
    }
}

fn json_wall_time(v: &JsonScalar<'_>) -> Result<i64, String> {
    match v {
        JsonScalar::Int(n) => seconds_to_us(*n as f64),
        JsonScalar::Uint(n) => seconds_to_us(*n as f64),
        JsonScalar::Float(n) => seconds_to_us(*n),
        JsonScalar::Str(s) => parse_wall_time(s),
        JsonScalar::Other(what) => Err(format!(
            "wall_time {what} is neither Unix seconds nor an RFC 3339 time"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parsed point, owned, for assertions.
    #[derive(Debug, Clone, PartialEq)]
    struct Point {
        name: String,
        step: i64,
        value: f64,
        wall_time_us: Option<i64>,
    }

    impl PointSink for Vec<Point> {
        fn point(&mut self, name: &str, step: i64, value: f64, wall_time_us: Option<i64>) {
            self.push(Point {
                name: name.to_string(),
                step,
                value,
                wall_time_us,
            });
        }
    }

    /// Every point up to the first error, and that error.
    fn read(format: InputFormat, text: &str) -> (Vec<Point>, Option<LineError>) {
        let mut reader = PointReader::new(format, Box::new(std::io::Cursor::new(text.to_string())));
        let mut points = Vec::new();
        loop {
            match reader.read_into(&mut points, 2) {
                Ok(0) => return (points, None),
                Ok(_) => {}
                Err(e) => return (points, Some(e)),
            }
        }
    }

    #[test]
    fn csv_with_special_values() {
        let (points, error) = read(
            InputFormat::Csv,
            "name,step,value\nloss,1,nan\nloss,2,-inf\n\"a,b\",3,1.5\n\n  \nacc, 4 ,Infinity\n",
        );
        assert_eq!(error, None);
        assert!(points[0].value.is_nan());
        assert_eq!(points[1].value, f64::NEG_INFINITY);
        assert_eq!(points[2].name, "a,b");
        assert_eq!(points[3].step, 4);
        assert_eq!(points[3].value, f64::INFINITY);
        assert_eq!(points.len(), 4);
    }

    #[test]
    fn csv_columns_in_any_order_with_wall_time() {
        let (points, error) = read(
            InputFormat::Csv,
            "value,wall_time,step,name\n0.5,1.5,3,loss\n0.25,2024-01-01T00:00:00Z,4,loss\n",
        );
        assert_eq!(error, None);
        assert_eq!(points[0].wall_time_us, Some(1_500_000));
        assert_eq!(points[1].wall_time_us, Some(1_704_067_200_000_000));
        assert_eq!(points[1].step, 4);
    }

    #[test]
    fn csv_errors_name_the_line_and_keep_the_lines_before() {
        let (points, error) = read(
            InputFormat::Csv,
            "name,step,value\nloss,1,0.5\nloss,-3,0.5\n",
        );
        let error = error.expect("a negative step is an error");
        assert_eq!(error.line, 3);
        assert!(error.reason.contains("negative"), "{}", error.reason);
        assert_eq!(points.len(), 1);
        let (_, error) = read(InputFormat::Csv, "name,step,value\nloss,1.5,0.5\n");
        assert!(error.expect("error").reason.contains("integer"));
        let (_, error) = read(InputFormat::Csv, "name,step,value\nloss,1\n");
        let error = error.expect("short line");
        assert_eq!(error.line, 2);
        assert!(error.reason.contains("2 fields but the header has 3"));
        let (_, error) = read(InputFormat::Csv, "a,b\n");
        assert!(error
            .expect("bad header")
            .reason
            .contains("name,step,value"));
    }

    #[test]
    fn jsonl_long_and_wide() {
        let (points, error) = read(
            InputFormat::Jsonl,
            "{\"name\":\"loss\",\"step\":1,\"value\":2.5}\n\n{\"step\":2,\"loss\":1.0,\"acc\":\"nan\",\"wall_time\":3}\n{\"step\":\"3\",\"a\\u0062\":7}\n",
        );
        assert_eq!(error, None);
        assert_eq!(points.len(), 4);
        assert_eq!(points[0].name, "loss");
        assert!(points
            .iter()
            .any(|p| p.name == "acc" && p.value.is_nan() && p.wall_time_us == Some(3_000_000)));
        assert_eq!(points[3].name, "ab");
        assert_eq!(points[3].step, 3);
    }

    #[test]
    fn jsonl_errors_name_the_line_and_drop_no_half_lines() {
        let (points, error) = read(InputFormat::Jsonl, "{\"loss\": 1}\n");
        assert!(error.expect("no step").reason.contains("step"));
        assert!(points.is_empty());
        let (points, error) = read(
            InputFormat::Jsonl,
            "{\"step\":1,\"a\":1}\n{\"step\":2,\"a\":1,\"b\":true}\n",
        );
        let error = error.expect("a bool is not a value");
        assert_eq!(error.line, 2);
        assert!(error.reason.contains("b: value true"), "{}", error.reason);
        assert_eq!(points.len(), 1, "no point of the bad line is kept");
        let (_, error) = read(InputFormat::Jsonl, "[1, 2]\n");
        assert!(error.expect("array").reason.contains("JSON object"));
        let (_, error) = read(InputFormat::Jsonl, "{\"step\": -1, \"a\": 1}\n");
        assert!(error.expect("negative").reason.contains("negative"));
        let (_, error) = read(InputFormat::Jsonl, "{\"step\": 1.5, \"a\": 1}\n");
        assert!(error.expect("fraction").reason.contains("integer"));
    }

    /// CSV and JSONL lines (steplake-fuzz): points or a line error for any
    /// bytes, never a panic, a hang or a huge allocation.
    #[test]
    fn fuzz_csv_and_jsonl_lines() {
        let csv = vec![
            b"name,step,value,wall_time\nloss,1,0.5,2024-01-01T00:00:00Z\nacc,2,nan,1700000000\n"
                .to_vec(),
            b"step,value,name\n3,-inf,\"a,b\"\n".to_vec(),
        ];
        let jsonl = vec![
            br#"{"name":"loss","step":1,"value":0.5,"wall_time":"2024-01-01T00:00:00Z"}
{"name":"acc","step":2,"value":"NaN"}
"#
            .to_vec(),
            br#"{"name":"x","step":9223372036854775807,"value":1e308,"wall_time":1700000000.5}"#
                .to_vec(),
        ];
        let dictionary: &[&[u8]] = &[
            b",",
            b"\"",
            b"\n",
            b"\r\n",
            b"{",
            b"}",
            b":",
            b"null",
            b"-1",
            b"1e999",
            b"9223372036854775808",
            b"\"step\"",
            b"\"value\"",
            b"\"name\"",
            b"\"wall_time\"",
        ];
        for (format, seeds) in [(InputFormat::Csv, &csv), (InputFormat::Jsonl, &jsonl)] {
            steplake_fuzz::fuzz("point lines", seeds, dictionary, 3_000, |input| {
                let mut reader =
                    PointReader::new(format, Box::new(std::io::Cursor::new(input.to_vec())));
                let mut points = Vec::new();
                while let Ok(added) = reader.read_into(&mut points, 100) {
                    if added == 0 {
                        break;
                    }
                }
            });
        }
    }
}
