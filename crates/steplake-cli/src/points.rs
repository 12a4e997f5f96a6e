//! Parsing scalar points from CSV and JSONL input, one line at a time, with
//! errors that name the line and the problem.
//!
//! - CSV: a header with `name,step,value` and optionally `wall_time`, in any order.
//! - JSONL, long form: `{"name": "loss", "step": 10, "value": 1.2}`.
//! - JSONL, wide form: `{"step": 10, "loss": 1.2, "acc": 0.5}`.
//!
//! Values may be numbers or the words `nan`, `inf`, `-inf` (any case; as JSON
//! strings in JSONL). Steps are non-negative integers. `wall_time` is Unix
//! seconds (fractions allowed) or RFC 3339.

use std::io::BufRead;

/// One parsed point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: String,
    pub step: i64,
    pub value: f64,
    pub wall_time_us: Option<i64>,
}

/// A line that could not be parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    pub line: u64,
    pub reason: String,
}

/// Input formats of `steplake write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    Csv,
    Jsonl,
}

fn parse_value(text: &str) -> Result<f64, String> {
    let t = text.trim();
    match t.to_ascii_lowercase().as_str() {
        "nan" => return Ok(f64::NAN),
        "inf" | "+inf" | "infinity" => return Ok(f64::INFINITY),
        "-inf" | "-infinity" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
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

fn parse_wall_time(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if let Ok(seconds) = t.parse::<f64>() {
        if seconds.is_finite() {
            return Ok((seconds * 1e6).round() as i64);
        }
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp_micros())
        .map_err(|_| format!("wall_time {t:?} is neither Unix seconds nor an RFC 3339 time"))
}

fn check_name(name: &str) -> Result<(), String> {
    steplake_core::validate_series_name("name", name).map_err(|e| e.to_string())
}

/// Reads points line by line; each item is the points of one input line.
pub struct PointReader {
    format: InputFormat,
    lines: std::io::Lines<Box<dyn BufRead>>,
    line_no: u64,
    csv_columns: Option<CsvColumns>,
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
    pub fn new(format: InputFormat, input: Box<dyn BufRead>) -> Self {
        PointReader {
            format,
            lines: input.lines(),
            line_no: 0,
            csv_columns: None,
        }
    }

    fn csv_header(&mut self, line: &str) -> Result<(), String> {
        let fields = split_csv(line)?;
        let find = |n: &str| fields.iter().position(|f| f.trim() == n);
        let (Some(name), Some(step), Some(value)) = (find("name"), find("step"), find("value"))
        else {
            return Err(format!(
                "the CSV header is {line:?}; it must name the columns name,step,value (and optionally wall_time)"
            ));
        };
        self.csv_columns = Some(CsvColumns {
            name,
            step,
            value,
            wall_time: find("wall_time"),
            count: fields.len(),
        });
        Ok(())
    }

    fn csv_line(&self, columns: CsvColumns, line: &str) -> Result<Vec<Point>, String> {
        let fields = split_csv(line)?;
        if fields.len() != columns.count {
            return Err(format!(
                "has {} fields but the header has {}",
                fields.len(),
                columns.count
            ));
        }
        let name = fields[columns.name].trim().to_string();
        check_name(&name)?;
        Ok(vec![Point {
            step: parse_step(&fields[columns.step])?,
            value: parse_value(&fields[columns.value])?,
            wall_time_us: columns
                .wall_time
                .map(|i| parse_wall_time(&fields[i]))
                .transpose()?,
            name,
        }])
    }

    fn jsonl_line(&self, line: &str) -> Result<Vec<Point>, String> {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).map_err(|e| format!("is not a JSON object: {e}"))?;
        let step = match object.get("step") {
            Some(v) => json_step(v)?,
            None => return Err("has no \"step\"".into()),
        };
        let wall_time_us = object.get("wall_time").map(json_wall_time).transpose()?;
        if let Some(name) = object.get("name") {
            let name = name
                .as_str()
                .ok_or("\"name\" must be a string")?
                .to_string();
            check_name(&name)?;
            let value = object.get("value").ok_or("has \"name\" but no \"value\"")?;
            return Ok(vec![Point {
                name,
                step,
                value: json_value(value)?,
                wall_time_us,
            }]);
        }
        let mut points = Vec::new();
        for (key, value) in &object {
            if key == "step" || key == "wall_time" {
                continue;
            }
            check_name(key)?;
            points.push(Point {
                name: key.clone(),
                step,
                value: json_value(value).map_err(|e| format!("{key}: {e}"))?,
                wall_time_us,
            });
        }
        if points.is_empty() {
            return Err("holds a step but no metric".into());
        }
        Ok(points)
    }
}

fn json_step(v: &serde_json::Value) -> Result<i64, String> {
    match v {
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(s) if s >= 0 => Ok(s),
            Some(s) => Err(format!("step {s} is negative; steps must be >= 0")),
            None => Err(format!("step {n} is not a non-negative integer")),
        },
        serde_json::Value::String(s) => parse_step(s),
        other => Err(format!("step {other} is not a non-negative integer")),
    }
}

fn json_value(v: &serde_json::Value) -> Result<f64, String> {
    match v {
        serde_json::Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("value {n} is not a number")),
        serde_json::Value::String(s) => parse_value(s),
        other => Err(format!(
            "value {other} is not a number (use a number, \"nan\", \"inf\" or \"-inf\")"
        )),
    }
}

fn json_wall_time(v: &serde_json::Value) -> Result<i64, String> {
    match v {
        serde_json::Value::Number(n) => n
            .as_f64()
            .map(|s| (s * 1e6).round() as i64)
            .ok_or_else(|| format!("wall_time {n} is not a number")),
        serde_json::Value::String(s) => parse_wall_time(s),
        other => Err(format!(
            "wall_time {other} is neither Unix seconds nor an RFC 3339 time"
        )),
    }
}

/// Splits one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line.as_bytes());
    match reader.records().next() {
        Some(Ok(record)) => Ok(record.iter().map(str::to_string).collect()),
        Some(Err(e)) => Err(format!("is not valid CSV: {e}")),
        None => Ok(Vec::new()),
    }
}

impl Iterator for PointReader {
    type Item = Result<Vec<Point>, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = match self.lines.next()? {
                Ok(line) => line,
                Err(e) => {
                    return Some(Err(LineError {
                        line: self.line_no + 1,
                        reason: format!("cannot be read: {e}"),
                    }))
                }
            };
            self.line_no += 1;
            if line.trim().is_empty() {
                continue;
            }
            let parsed = match (self.format, self.csv_columns) {
                (InputFormat::Csv, None) => match self.csv_header(&line) {
                    Ok(()) => continue,
                    Err(reason) => Err(reason),
                },
                (InputFormat::Csv, Some(columns)) => self.csv_line(columns, &line),
                (InputFormat::Jsonl, _) => self.jsonl_line(&line),
            };
            return Some(parsed.map_err(|reason| LineError {
                line: self.line_no,
                reason,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(format: InputFormat, text: &str) -> Vec<Result<Vec<Point>, LineError>> {
        PointReader::new(format, Box::new(std::io::Cursor::new(text.to_string()))).collect()
    }

    #[test]
    fn csv_with_special_values() {
        let out = read(
            InputFormat::Csv,
            "name,step,value\nloss,1,nan\nloss,2,-inf\n\"a,b\",3,1.5\n",
        );
        let points: Vec<Point> = out.into_iter().flat_map(Result::unwrap).collect();
        assert!(points[0].value.is_nan());
        assert_eq!(points[1].value, f64::NEG_INFINITY);
        assert_eq!(points[2].name, "a,b");
    }

    #[test]
    fn csv_errors_name_the_line() {
        let out = read(
            InputFormat::Csv,
            "name,step,value\nloss,1,0.5\nloss,-3,0.5\n",
        );
        let err = out[1].clone().unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.reason.contains("negative"), "{}", err.reason);
        let out = read(InputFormat::Csv, "name,step,value\nloss,1.5,0.5\n");
        assert!(out[0].clone().unwrap_err().reason.contains("integer"));
    }

    #[test]
    fn jsonl_long_and_wide() {
        let out = read(
            InputFormat::Jsonl,
            "{\"name\":\"loss\",\"step\":1,\"value\":2.5}\n{\"step\":2,\"loss\":1.0,\"acc\":\"nan\"}\n",
        );
        assert_eq!(out[0].as_ref().unwrap().len(), 1);
        let wide = out[1].as_ref().unwrap();
        assert_eq!(wide.len(), 2);
        assert!(wide.iter().any(|p| p.name == "acc" && p.value.is_nan()));
    }

    #[test]
    fn jsonl_rejects_missing_step() {
        let out = read(InputFormat::Jsonl, "{\"loss\": 1}\n");
        assert!(out[0].clone().unwrap_err().reason.contains("step"));
    }
}
