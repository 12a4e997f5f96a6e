//! `downsample(step, value, buckets)`: a series reduced for a plot `buckets`
//! pixels wide, keeping what a plot must never hide.
//!
//! The step range [first step, last step] is cut into `buckets` equal-width
//! buckets; for each non-empty one the aggregate returns
//! `{step, last_step, min, max, last, count, nan_count}`: its first and last
//! step, the smallest and largest value (±Inf included, NaN left out: NaN
//! if the bucket holds only NaN), the value at its last step, how many points
//! it holds and how many of them are NaN. A spike therefore always survives
//! as some bucket's `max` (or `min`), and a NaN as a `nan_count`.
//!
//! ```sql
//! SELECT d['step'], d['min'], d['max'], d['last']
//! FROM (SELECT unnest(downsample(step, value, 1000)) AS d
//!       FROM scalars WHERE run_id = 'r' AND name = 'train/loss');
//! ```

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StructArray};
use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{AggregateUDF, AggregateUDFImpl, Signature, Volatility};

use super::literal_argument;
use super::points::{series_accumulators, single_list, Finish, Points, SeriesAggregate};

/// One bucket of a downsampled series.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// First step in the bucket.
    pub step: i64,
    /// Last step in the bucket.
    pub last_step: i64,
    /// Smallest non-NaN value (NaN when there is none).
    pub min: f64,
    /// Largest non-NaN value (NaN when there is none).
    pub max: f64,
    /// Value at the last step.
    pub last: f64,
    /// Points in the bucket.
    pub count: i64,
    /// NaN points in the bucket.
    pub nan_count: i64,
}

/// Buckets of points sorted by step.
pub fn downsample(steps: &[i64], values: &[f64], buckets: usize) -> Vec<Bucket> {
    let (Some(&first), Some(&last)) = (steps.first(), steps.last()) else {
        return Vec::new();
    };
    let span = (last as i128 - first as i128 + 1) as u128;
    let width = span.div_ceil(buckets.max(1) as u128).max(1);
    let mut out: Vec<Bucket> = Vec::new();
    let mut current: Option<u128> = None;
    for (&step, &value) in steps.iter().zip(values) {
        let index = (step as i128 - first as i128) as u128 / width;
        if current != Some(index) {
            current = Some(index);
            out.push(Bucket {
                step,
                last_step: step,
                min: f64::NAN,
                max: f64::NAN,
                last: value,
                count: 0,
                nan_count: 0,
            });
        }
        let Some(bucket) = out.last_mut() else {
            continue;
        };
        bucket.last_step = step;
        bucket.last = value;
        bucket.count += 1;
        if value.is_nan() {
            bucket.nan_count += 1;
        } else {
            // f64::min/max ignore a NaN operand, so the NaN start is replaced.
            bucket.min = bucket.min.min(value);
            bucket.max = bucket.max.max(value);
        }
    }
    out
}

fn bucket_fields() -> Fields {
    Fields::from(vec![
        Field::new("step", DataType::Int64, false),
        Field::new("last_step", DataType::Int64, false),
        Field::new("min", DataType::Float64, false),
        Field::new("max", DataType::Float64, false),
        Field::new("last", DataType::Float64, false),
        Field::new("count", DataType::Int64, false),
        Field::new("nan_count", DataType::Int64, false),
    ])
}

/// The `downsample` aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Downsample {
    signature: Signature,
}

impl Downsample {
    /// The UDAF, ready to register.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::from(Downsample {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl AggregateUDFImpl for Downsample {
    fn name(&self) -> &str {
        "downsample"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types.len() {
            3 => Ok(vec![DataType::Int64, DataType::Float64, DataType::Int64]),
            n => plan_err!("downsample takes (step, value, buckets), got {n} arguments"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new(
            "item",
            DataType::Struct(bucket_fields()),
            true,
        ))))
    }

    series_accumulators!();

    /// Points are sorted by step inside, so input order never matters.
    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(Points::<f64>::state_fields(args.name))
    }
}

impl SeriesAggregate for Downsample {
    fn function(&self) -> &'static str {
        "downsample"
    }

    /// The buckets of a series' points, as the aggregate's value.
    fn finish(&self, args: &AccumulatorArgs) -> Result<Finish<f64>> {
        let buckets = match literal_argument(args.exprs, 2, "downsample", "buckets")? {
            Some(ScalarValue::Int64(Some(b))) if (1..=10_000_000).contains(&b) => b as usize,
            other => {
                return plan_err!(
                    "downsample: buckets must be an integer from 1 to 10,000,000, got {other:?}"
                )
            }
        };
        Ok(Box::new(move |points: &Points<f64>| {
            buckets_value(&downsample(&points.steps, &points.values, buckets))
        }))
    }
}

/// The buckets as the aggregate's list-of-struct value.
fn buckets_value(b: &[Bucket]) -> Result<ScalarValue> {
    let ints = |f: fn(&Bucket) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(b.iter().map(f)))
    };
    let floats = |f: fn(&Bucket) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(b.iter().map(f)))
    };
    let columns = vec![
        ints(|x| x.step),
        ints(|x| x.last_step),
        floats(|x| x.min),
        floats(|x| x.max),
        floats(|x| x.last),
        ints(|x| x.count),
        ints(|x| x.nan_count),
    ];
    let structs = StructArray::try_new(bucket_fields(), columns, None)?;
    Ok(ScalarValue::List(Arc::new(single_list(Arc::new(structs)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_survives_any_bucket_width() {
        let steps: Vec<i64> = (0..100_000).collect();
        let mut values: Vec<f64> = steps.iter().map(|&s| 1.0 / (1.0 + s as f64)).collect();
        values[77_777] = 1e6;
        values[12_345] = f64::NAN;
        for buckets in [1, 7, 500, 1000, 100_000, 1_000_000] {
            let b = downsample(&steps, &values, buckets);
            assert!(b.len() <= buckets, "{buckets}");
            assert_eq!(b.iter().map(|x| x.count).sum::<i64>(), 100_000);
            assert!(
                b.iter().any(|x| x.max == 1e6),
                "spike lost at {buckets} buckets"
            );
            assert_eq!(b.iter().map(|x| x.nan_count).sum::<i64>(), 1);
        }
    }

    #[test]
    fn buckets_cover_equal_step_ranges() {
        let b = downsample(
            &[0, 1, 2, 3, 10, 11],
            &[1.0, 5.0, 2.0, 3.0, 4.0, f64::NAN],
            2,
        );
        assert_eq!(b.len(), 2);
        assert_eq!(
            (b[0].step, b[0].last_step, b[0].min, b[0].max, b[0].last),
            (0, 3, 1.0, 5.0, 3.0)
        );
        assert_eq!(
            (b[1].step, b[1].count, b[1].nan_count, b[1].max),
            (10, 2, 1, 4.0)
        );
        assert!(b[1].last.is_nan());
        assert!(downsample(&[], &[], 10).is_empty());
    }
}
