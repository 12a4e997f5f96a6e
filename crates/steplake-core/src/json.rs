//! JSON for query results, with NaN and ±Infinity kept.
//!
//! JSON has no number for NaN or the infinities, and Arrow's JSON writer
//! turns them into `null`, which reads as SQL NULL: a loss that diverged
//! would look like a missing point. steplake writes them as the strings
//! `"NaN"`, `"Infinity"` and `"-Infinity"` (as JavaScript's `Number()` and
//! Python's `float()` read them); `null` is only ever SQL NULL. Every finite
//! float is a JSON number, with the fewest digits that read back exactly.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrowPrimitiveType, AsArray, PrimitiveArray, RecordBatch};
use arrow::datatypes::{DataType, FieldRef, Float32Type, Float64Type};
use arrow::error::ArrowError;
use arrow::json::writer::{JsonArray, NullableEncoder, WriterBuilder};
use arrow::json::{Encoder, EncoderFactory, EncoderOptions};

/// The JSON text of a non-finite float, or `None` for a finite one.
pub fn non_finite_text(value: f64) -> Option<&'static str> {
    if value.is_nan() {
        Some("NaN")
    } else if value == f64::INFINITY {
        Some("Infinity")
    } else if value == f64::NEG_INFINITY {
        Some("-Infinity")
    } else {
        None
    }
}

/// A float as a JSON value, by the rule above.
pub fn float_value(value: f64) -> serde_json::Value {
    match non_finite_text(value) {
        Some(text) => serde_json::Value::String(text.to_string()),
        None => serde_json::Value::from(value),
    }
}

/// Serde for an `f64` field by the rule above (`#[serde(with =
/// "steplake_core::json::float")]`), so that NaN and the infinities survive
/// a JSON round trip instead of failing to read back.
pub mod float {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes a finite float as a number, a non-finite one as its text.
    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        match super::non_finite_text(*value) {
            Some(text) => serializer.serialize_str(text),
            None => serializer.serialize_f64(*value),
        }
    }

    /// Reads a number, or one of `"NaN"`, `"Infinity"`, `"-Infinity"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Float<'a> {
            Number(f64),
            Text(&'a str),
        }
        match Float::deserialize(deserializer)? {
            Float::Number(n) => Ok(n),
            Float::Text("NaN") => Ok(f64::NAN),
            Float::Text("Infinity") => Ok(f64::INFINITY),
            Float::Text("-Infinity") => Ok(f64::NEG_INFINITY),
            Float::Text(other) => Err(serde::de::Error::custom(format!(
                "`{other}` is not a number"
            ))),
        }
    }
}

/// `batches` as one JSON array of row objects, by the rule above.
pub fn batches_to_json(batches: &[&RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    let mut writer = WriterBuilder::new()
        .with_encoder_factory(Arc::new(NonFiniteAsStrings))
        .build::<_, JsonArray>(Vec::new());
    writer.write_batches(batches)?;
    writer.finish()?;
    Ok(writer.into_inner())
}

/// Arrow JSON encoders for Float32 and Float64 arrays (nested ones too).
#[derive(Debug)]
struct NonFiniteAsStrings;

impl EncoderFactory for NonFiniteAsStrings {
    fn make_default_encoder<'a>(
        &self,
        _field: &'a FieldRef,
        array: &'a dyn Array,
        _options: &'a EncoderOptions,
    ) -> Result<Option<NullableEncoder<'a>>, ArrowError> {
        let encoder: Box<dyn Encoder + 'a> = match array.data_type() {
            DataType::Float64 => Box::new(Floats(array.as_primitive::<Float64Type>())),
            // Shortest digits of the f32 itself, not of its f64 widening.
            DataType::Float32 => Box::new(Floats(array.as_primitive::<Float32Type>())),
            _ => return Ok(None),
        };
        Ok(Some(NullableEncoder::new(encoder, array.nulls().cloned())))
    }
}

/// Non-finite values as strings, finite ones as JSON numbers.
struct Floats<'a, T: ArrowPrimitiveType>(&'a PrimitiveArray<T>);

impl<T> Encoder for Floats<'_, T>
where
    T: ArrowPrimitiveType,
    T::Native: Into<f64> + serde::Serialize,
{
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let value = self.0.value(idx);
        match non_finite_text(value.into()) {
            Some(text) => {
                let _ = write!(out, "\"{text}\"");
            }
            None => {
                let _ = serde_json::to_writer(out, &value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float32Array, Float64Array};
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn non_finite_floats_are_strings_and_null_stays_null() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("d", DataType::Float64, true),
            Field::new("f", DataType::Float32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(vec![
                    Some(f64::NAN),
                    Some(f64::INFINITY),
                    Some(f64::NEG_INFINITY),
                    None,
                    Some(0.1),
                ])),
                Arc::new(Float32Array::from(vec![
                    Some(f32::NAN),
                    Some(0.1),
                    Some(f32::NEG_INFINITY),
                    Some(1.5),
                    None,
                ])),
            ],
        )
        .unwrap();
        let text = String::from_utf8(batches_to_json(&[&batch]).unwrap()).unwrap();
        assert_eq!(
            text,
            r#"[{"d":"NaN","f":"NaN"},{"d":"Infinity","f":0.1},{"d":"-Infinity","f":"-Infinity"},{"f":1.5},{"d":0.1}]"#
        );
        assert_eq!(float_value(f64::NAN), serde_json::json!("NaN"));
        assert_eq!(float_value(2.5), serde_json::json!(2.5));
    }
}
