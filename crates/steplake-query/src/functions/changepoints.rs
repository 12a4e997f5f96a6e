//! `changepoints(step, value [, method [, penalty [, min_size [, n_changes]]]])`:
//! where a curve changes regime, as a shift in its mean.
//!
//! An aggregate over one series that returns a list of
//! `{step, mean_before, mean_after, gain}`, one per changepoint in step
//! order: `step` is the first step of the new segment, the means are those of
//! the segments on either side, and `gain` is how much splitting there
//! reduces the squared error. Use it with `UNNEST`. For changes of slope
//! (warmup, decay, a grokking rise) use [`super::phases`].
//!
//! - `method`: `'auto'` (the default: PELT up to 20,000 points, binary
//!   segmentation past them), `'pelt'` (the exact optimum of
//!   Σ segment cost + penalty × #changepoints, as `ruptures.Pelt(model="l2",
//!   jump=1)` computes it) or `'binseg'` (greedy binary segmentation,
//!   `ruptures.Binseg`).
//! - `penalty`: by default 2·σ̂²·ln n, with the noise σ̂ from
//!   [`noise_sigma`](super::segmentation::noise_sigma).
//! - `min_size`: the fewest points in a segment, default 2.
//! - `n_changes`: return exactly this many changepoints (fewer when the
//!   series has fewer places to split), the greedy binary-segmentation
//!   answer `ruptures.Binseg(...).predict(n_bkps=n_changes)`; the penalty is
//!   then not used.
//!
//! A NULL argument takes its default. NaN and ±Inf values are left out
//! before the search (a NaN is not a regime); the steps reported are those
//! of the remaining points.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StructArray};
use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{AggregateUDF, AggregateUDFImpl, Signature, Volatility};

use super::arguments::{self, Kind, Parameters};
use super::points::{series_accumulators, single_list, Finish, Points, SeriesAggregate};
use super::segmentation::{self, search, Cost, L2Cost, Method, Stop};

/// The parameters of `changepoints` and `phases`.
pub(crate) const SEARCH_PARAMETERS: [(&str, Kind); 6] = [
    ("step", Kind::Step),
    ("value", Kind::Value),
    ("method", Kind::Text),
    ("penalty", Kind::Number),
    ("min_size", Kind::Integer),
    ("n_changes", Kind::Integer),
];

const CHANGEPOINTS: Parameters = Parameters {
    function: "changepoints",
    usage: "(step, value [, method [, penalty [, min_size [, n_changes]]]])",
    list: &SEARCH_PARAMETERS,
    required: 2,
};

/// The search settings shared by `changepoints` and `phases`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SearchArguments {
    pub(crate) method: Method,
    pub(crate) penalty: Option<f64>,
    pub(crate) min_size: usize,
    pub(crate) n_changes: Option<usize>,
}

impl SearchArguments {
    /// From the constants (method, penalty, min_size, n_changes), NULL or
    /// missing ones taking their defaults.
    pub(crate) fn parse(
        function: &str,
        constants: &[Option<ScalarValue>],
        default_min_size: usize,
    ) -> Result<SearchArguments> {
        let given = |i: usize| {
            constants
                .get(i)
                .and_then(|v| v.as_ref())
                .filter(|v| !v.is_null())
        };
        let method = match given(0) {
            None => Method::Auto,
            Some(v) => match Method::named(arguments::text(v)) {
                Some(m) => m,
                None => {
                    return plan_err!(
                        "{function}: method must be 'auto', 'pelt' or 'binseg', got {v}"
                    )
                }
            },
        };
        let penalty = match given(1) {
            None => None,
            Some(v) => match arguments::number(v) {
                Some(p) if p >= 0.0 && p.is_finite() => Some(p),
                _ => return plan_err!("{function}: penalty must be a number >= 0, got {v}"),
            },
        };
        let min_size = match given(2) {
            None => default_min_size,
            Some(v) => match arguments::integer(v) {
                Some(m) if m >= 1 => m as usize,
                _ => return plan_err!("{function}: min_size must be an integer >= 1, got {v}"),
            },
        };
        let n_changes = match given(3) {
            None => None,
            Some(v) => match arguments::integer(v) {
                Some(k) if k >= 0 => Some(k as usize),
                _ => return plan_err!("{function}: n_changes must be an integer >= 0, got {v}"),
            },
        };
        if n_changes.is_some() && method == Method::Pelt {
            return plan_err!("{function}: n_changes picks changes by binary segmentation; leave method NULL or write 'binseg'");
        }
        Ok(SearchArguments {
            method,
            penalty,
            min_size,
            n_changes,
        })
    }

    /// The breakpoints over `values` (finite, in step order) for `cost`.
    pub(crate) fn breakpoints<C: Cost>(&self, cost: &C, values: &[f64]) -> Vec<usize> {
        let stop = match self.n_changes {
            Some(k) => Stop::Changes(k),
            None => Stop::Penalty(
                self.penalty
                    .unwrap_or_else(|| segmentation::default_penalty(values, C::PARAMETERS)),
            ),
        };
        search(cost, values.len(), self.method, stop, self.min_size)
    }
}

/// The finite points of a series sorted by step.
pub(crate) fn finite_points(steps: &[i64], values: &[f64]) -> (Vec<i64>, Vec<f64>) {
    steps
        .iter()
        .zip(values)
        .filter(|(_, v)| v.is_finite())
        .map(|(s, v)| (*s, *v))
        .unzip()
}

/// The segment bounds: 0, the breakpoints, n.
pub(crate) fn bounds(breakpoints: &[usize], n: usize) -> Vec<usize> {
    std::iter::once(0)
        .chain(breakpoints.iter().copied())
        .chain(std::iter::once(n))
        .collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// What each segment is fitted with: a mean (`changepoints`) or a line
/// (`phases`). Both aggregates are this one type, with the same search,
/// state and result shape (a list of `{step, <three numbers>}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentModel {
    /// `changepoints`: shifts of the mean.
    Mean,
    /// `phases`: changes of slope.
    Line,
}

impl SegmentModel {
    fn parameters(self) -> &'static Parameters {
        match self {
            SegmentModel::Mean => &CHANGEPOINTS,
            SegmentModel::Line => &super::phases::PHASES,
        }
    }

    fn default_min_size(self) -> usize {
        match self {
            SegmentModel::Mean => 2,
            SegmentModel::Line => super::phases::DEFAULT_MIN_SIZE,
        }
    }

    /// The result's fields after `step`.
    fn value_fields(self) -> [&'static str; 3] {
        match self {
            SegmentModel::Mean => ["mean_before", "mean_after", "gain"],
            SegmentModel::Line => ["slope_before", "slope_after", "gain"],
        }
    }

    /// One (step, values) row per change of a series sorted by step.
    fn rows(self, steps: &[i64], values: &[f64], search: &SearchArguments) -> Vec<(i64, [f64; 3])> {
        match self {
            SegmentModel::Mean => detect(steps, values, search)
                .into_iter()
                .map(|c| (c.step, [c.mean_before, c.mean_after, c.gain]))
                .collect(),
            SegmentModel::Line => super::phases::detect(steps, values, search)
                .into_iter()
                .map(|c| (c.step, [c.slope_before, c.slope_after, c.gain]))
                .collect(),
        }
    }

    fn result_fields(self) -> Fields {
        let mut fields = vec![Field::new("step", DataType::Int64, false)];
        fields.extend(
            self.value_fields()
                .iter()
                .map(|name| Field::new(*name, DataType::Float64, false)),
        );
        Fields::from(fields)
    }

    fn result_type(self) -> DataType {
        DataType::List(Arc::new(Field::new(
            "item",
            DataType::Struct(self.result_fields()),
            true,
        )))
    }

    /// The rows as the aggregate's list-of-struct value.
    fn value(self, rows: &[(i64, [f64; 3])]) -> Result<ScalarValue> {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.0),
        ))];
        for k in 0..3 {
            columns.push(Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.1[k]),
            )));
        }
        let structs = StructArray::try_new(self.result_fields(), columns, None)?;
        Ok(ScalarValue::List(Arc::new(single_list(Arc::new(structs)))))
    }
}

/// The `changepoints` and `phases` aggregates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Segments {
    model: SegmentModel,
    signature: Signature,
}

impl Segments {
    /// The UDAF of `model`, ready to register.
    pub fn udaf(model: SegmentModel) -> AggregateUDF {
        AggregateUDF::from(Segments {
            model,
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl SeriesAggregate for Segments {
    fn function(&self) -> &'static str {
        self.model.parameters().function
    }

    /// The segmentation of a series' points, as the aggregate's value.
    fn finish(&self, args: &AccumulatorArgs) -> Result<Finish<f64>> {
        let (model, parameters) = (self.model, self.model.parameters());
        let constants = arguments::literal_arguments(args.exprs, 2, parameters)?;
        let search =
            SearchArguments::parse(parameters.function, &constants, model.default_min_size())?;
        Ok(Box::new(move |points: &Points<f64>| {
            model.value(&model.rows(&points.steps, &points.values, &search))
        }))
    }
}

impl AggregateUDFImpl for Segments {
    fn name(&self) -> &str {
        self.model.parameters().function
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.model.parameters().coerce(arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.model.result_type())
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

/// A changepoint of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Changepoint {
    /// First step of the new segment.
    pub step: i64,
    /// Mean of the segment before.
    pub mean_before: f64,
    /// Mean of the segment after.
    pub mean_after: f64,
    /// Reduction of the l2 cost from splitting here.
    pub gain: f64,
}

/// Changepoints of a series given as steps and values sorted by step.
pub(crate) fn detect(steps: &[i64], values: &[f64], search: &SearchArguments) -> Vec<Changepoint> {
    let (steps, values) = finite_points(steps, values);
    let cost = L2Cost::new(&values);
    let breakpoints = search.breakpoints(&cost, &values);
    bounds(&breakpoints, values.len())
        .windows(3)
        .map(|w| {
            let (before, at, after) = (w[0], w[1], w[2]);
            Changepoint {
                step: steps[at],
                mean_before: mean(&values[before..at]),
                mean_after: mean(&values[at..after]),
                gain: cost.error(before, after) - cost.error(before, at) - cost.error(at, after),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(method: Method, penalty: Option<f64>, n_changes: Option<usize>) -> SearchArguments {
        SearchArguments {
            method,
            penalty,
            min_size: 2,
            n_changes,
        }
    }

    #[test]
    fn changepoints_report_steps_means_and_gains() {
        let values: Vec<f64> = (0..120)
            .map(|i| match i {
                0..50 => 0.0,
                50..80 => 3.0,
                _ => -1.0,
            } + 0.01 * (i % 3) as f64)
            .collect();
        let steps: Vec<i64> = (0..values.len() as i64).map(|s| s * 10).collect();
        let found = detect(&steps, &values, &search(Method::Auto, None, None));
        assert_eq!(
            found.iter().map(|c| c.step).collect::<Vec<_>>(),
            vec![500, 800]
        );
        assert!((found[0].mean_after - 3.01).abs() < 0.01);
        assert!(found.iter().all(|c| c.gain > 0.0));
        let top = detect(&steps, &values, &search(Method::Auto, None, Some(1)));
        assert_eq!(top.iter().map(|c| c.step).collect::<Vec<_>>(), vec![800]);
    }

    #[test]
    fn constant_short_and_nan_series() {
        let flat = search(Method::Pelt, Some(0.5), None);
        assert!(detect(&[0, 1, 2], &[1.0, 2.0, 3.0], &flat).is_empty());
        assert!(detect(&[], &[], &search(Method::Auto, None, None)).is_empty());
        let mut values: Vec<f64> = (0..40).map(|i| if i < 20 { 0.0 } else { 5.0 }).collect();
        values[5] = f64::NAN;
        let steps: Vec<i64> = (0..40).collect();
        let found = detect(&steps, &values, &search(Method::Auto, None, None));
        assert_eq!(found.iter().map(|c| c.step).collect::<Vec<_>>(), vec![20]);
    }
}
