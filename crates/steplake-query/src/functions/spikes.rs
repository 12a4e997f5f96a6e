//! `spike_rate(value, n, k ORDER BY step)`: the fraction of a series' points
//! that [`is_spike`](super::series::is_spike) flags, as an aggregate.
//!
//! The `ORDER BY` inside the call says which order "previous points" means;
//! it is required. NaN and ±Inf values always count as spikes. An empty
//! series gives NULL.
//!
//! ```sql
//! SELECT run_id, spike_rate(value, 100, 6 ORDER BY step) AS rate
//! FROM scalars WHERE name = 'train/loss' GROUP BY run_id;
//! ```

use arrow::array::ArrayRef;
use arrow::compute::cast;
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

use super::literal_argument;
use super::points::Points;
use super::series::is_spike;

/// The `spike_rate` aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpikeRate {
    signature: Signature,
}

impl SpikeRate {
    /// The UDAF, ready to register.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::from(SpikeRate {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl AggregateUDFImpl for SpikeRate {
    fn name(&self) -> &str {
        "spike_rate"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types.len() {
            3 => Ok(vec![DataType::Float64, DataType::Int64, DataType::Float64]),
            n => plan_err!("spike_rate takes (value, n, k ORDER BY step), got {n} arguments"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if args.order_bys.len() != 1 {
            return plan_err!("spike_rate needs the order of the points: write spike_rate(value, n, k ORDER BY step)");
        }
        let n = match literal_argument(args.exprs, 1, "spike_rate", "n")? {
            Some(ScalarValue::Int64(Some(n))) if n >= 2 => n as usize,
            other => return plan_err!("spike_rate: n must be an integer >= 2, got {other:?}"),
        };
        let k = match literal_argument(args.exprs, 2, "spike_rate", "k")? {
            Some(ScalarValue::Float64(Some(k))) if k > 0.0 && k.is_finite() => k,
            other => return plan_err!("spike_rate: k must be a positive number, got {other:?}"),
        };
        Ok(Box::new(SpikeRateAccumulator {
            n,
            k,
            points: Points::default(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(Points::<f64>::state_fields(args.name))
    }
}

#[derive(Debug)]
struct SpikeRateAccumulator {
    n: usize,
    k: f64,
    /// (ordering key, value) pairs.
    points: Points<f64>,
}

impl Accumulator for SpikeRateAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        // [value, n, k, ORDER BY key]
        let (Some(value), Some(key)) = (values.first(), values.get(3)) else {
            return exec_err!("spike_rate: expected (value, n, k ORDER BY step)");
        };
        let key = cast(key, &DataType::Int64)?;
        self.points.add(key.as_ref(), value.as_ref());
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.points.values.is_empty() {
            return Ok(ScalarValue::Float64(None));
        }
        self.points.sort();
        let spikes = is_spike(&self.points.values, self.n, self.k);
        let rate = spikes.iter().filter(|&&s| s).count() as f64 / spikes.len() as f64;
        Ok(ScalarValue::Float64(Some(rate)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.points.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(self.points.state())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.points.merge(states, "spike_rate")
    }
}
