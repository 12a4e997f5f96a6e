//! `first_sustained(step, condition [, hold [, unit]])`: the canonical "when
//! did it emerge?" answer.
//!
//! An aggregate over one series (group by run and name): the first step at
//! which `condition` becomes true and stays true
//! - for `hold` consecutive points (by step order), when `hold` is given;
//! - for at least `hold` steps when `unit` is `'steps'`: every point from the
//!   answer `s` to one at step ≥ `s + hold` holds it (runs logged at
//!   different intervals then mean the same thing);
//! - to the end of the series, when `hold` is not given.
//!
//! Returns NULL when the condition never holds that long. A NULL condition
//! counts as false; rows with a NULL step are ignored; input order does not
//! matter (points are sorted by step). A step logged twice (possible only in
//! a subquery; the `scalars` table shows each step once) is checked in arrival
//! order.
//!
//! The state of a series is a [`ConditionSeries`]: about one bit per point,
//! with a word-wise scan when the points arrive in step order, as they do
//! from storage.
//!
//! NaN: the condition is plain SQL, and SQL orders NaN above every number (as
//! PostgreSQL does), so `value > 0.9` is TRUE for a NaN value. Write
//! `value > 0.9 AND NOT isnan(value)` when a NaN must not count as emerged.
//!
//! ```sql
//! SELECT run_id, first_sustained(step, value > 0.9, 5) AS emerged_at
//! FROM scalars WHERE name = 'eval/acc' GROUP BY run_id;
//! ```

use std::sync::Arc;

use super::arguments::{self, literal_argument, Kind, Parameters};
use super::condition_series::ConditionSeries;
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, LargeBinaryArray};
use arrow::buffer::BooleanBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// The `first_sustained` aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FirstSustained {
    signature: Signature,
}

impl FirstSustained {
    /// The UDAF, ready to register.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::from(FirstSustained {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

const FIRST_SUSTAINED: Parameters = Parameters {
    function: "first_sustained",
    usage: "(step, condition [, hold [, unit]])",
    list: &[
        ("step", Kind::Step),
        ("condition", Kind::Condition),
        ("hold", Kind::Integer),
        ("unit", Kind::Text),
    ],
    required: 2,
};

/// How long the condition must hold.
#[derive(Debug, Clone, Copy)]
enum Hold {
    /// To the end of the series.
    ToTheEnd,
    /// For this many consecutive points.
    Points(usize),
    /// Over at least this many steps.
    Steps(i64),
}

impl Hold {
    fn first_sustained(self, series: &mut ConditionSeries) -> Option<i64> {
        match self {
            Hold::ToTheEnd => series.first_sustained(None),
            Hold::Points(n) => series.first_sustained(Some(n)),
            Hold::Steps(n) => series.first_sustained_for_steps(n),
        }
    }
}

/// The `hold` and `unit` arguments.
fn hold_argument(args: &AccumulatorArgs) -> Result<Hold> {
    let unit = literal_argument(args.exprs, 3, "first_sustained", "unit")?;
    let in_steps = match unit.as_ref().filter(|u| !u.is_null()) {
        None => false,
        Some(u) => match arguments::text(u).map(str::to_ascii_lowercase).as_deref() {
            Some("points") => false,
            Some("steps") => true,
            _ => return plan_err!("first_sustained: unit must be 'points' or 'steps', got {u}"),
        },
    };
    match literal_argument(args.exprs, 2, "first_sustained", "hold")? {
        None => Ok(Hold::ToTheEnd),
        Some(v) if v.is_null() => Ok(Hold::ToTheEnd),
        Some(v) => match arguments::integer(&v) {
            Some(h) if in_steps && h >= 0 => Ok(Hold::Steps(h)),
            Some(h) if !in_steps && h >= 1 => Ok(Hold::Points(h as usize)),
            _ if in_steps => {
                plan_err!("first_sustained: hold must be an integer >= 0 of steps, got {v}")
            }
            _ => plan_err!("first_sustained: hold must be an integer >= 1, got {v}"),
        },
    }
}

impl AggregateUDFImpl for FirstSustained {
    fn name(&self) -> &str {
        "first_sustained"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        FIRST_SUSTAINED.coerce(arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SustainedAccumulator {
            hold: hold_argument(&args)?,
            series: ConditionSeries::default(),
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(SustainedGroups {
            hold: hold_argument(&args)?,
            groups: Vec::new(),
            sizes: Vec::new(),
            heap_bytes: 0,
        }))
    }

    /// Points are ordered by step inside, so input order never matters.
    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[points]", args.name),
            DataType::LargeBinary,
            true,
        ))])
    }
}

/// Calls `add(row, step, holds)` for each row of (step, condition) arrays;
/// rows with a NULL step, or that `filter` does not keep, are skipped.
fn add_rows(
    arguments: &[ArrayRef],
    filter: Option<&BooleanArray>,
    mut add: impl FnMut(usize, i64, bool),
) -> Result<()> {
    let (Some(steps), Some(conditions)) = (arguments.first(), arguments.get(1)) else {
        return exec_err!("first_sustained: expected (step, condition) arguments");
    };
    let (steps, conditions) = (steps.as_primitive::<Int64Type>(), conditions.as_boolean());
    if filter.is_none() && steps.null_count() == 0 && conditions.null_count() == 0 {
        // The common case, without per-row validity checks.
        let points = steps.values().iter().zip(conditions.values().iter());
        for (row, (&step, holds)) in points.enumerate() {
            add(row, step, holds);
        }
        return Ok(());
    }
    for row in 0..steps.len() {
        let kept = filter.is_none_or(|f| f.is_valid(row) && f.value(row));
        if kept && steps.is_valid(row) {
            // A NULL condition counts as false.
            let holds = conditions.is_valid(row) && conditions.value(row);
            add(row, steps.value(row), holds);
        }
    }
    Ok(())
}

/// The steps and condition bits of a batch with no filter and no NULLs
/// (the common case), to add as blocks; None otherwise.
fn plain_points<'a>(
    arguments: &'a [ArrayRef],
    filter: Option<&BooleanArray>,
) -> Option<(&'a [i64], &'a BooleanBuffer)> {
    let steps = arguments.first()?.as_primitive_opt::<Int64Type>()?;
    let conditions = arguments.get(1)?.as_boolean_opt()?;
    let plain = filter.is_none() && steps.null_count() == 0 && conditions.null_count() == 0;
    plain.then(|| (steps.values().as_ref(), conditions.values()))
}

/// The partial states in `states`, one per row (NULL: no points).
fn decode_states(
    states: &[ArrayRef],
) -> Result<impl Iterator<Item = Result<Option<ConditionSeries>>> + '_> {
    let Some(states) = states.first() else {
        return exec_err!("first_sustained: malformed partial state");
    };
    let states = states.as_binary::<i64>();
    Ok((0..states.len()).map(|row| {
        states
            .is_valid(row)
            .then(|| ConditionSeries::decode(states.value(row)))
            .transpose()
    }))
}

fn encode_state(series: &ConditionSeries) -> Vec<u8> {
    let mut bytes = Vec::new();
    series.encode(&mut bytes);
    bytes
}

/// `first_sustained` without GROUP BY (or where DataFusion asks for one
/// accumulator per group).
#[derive(Debug)]
struct SustainedAccumulator {
    hold: Hold,
    series: ConditionSeries,
}

impl Accumulator for SustainedAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if let Some((steps, holds)) = plain_points(values, None) {
            self.series.extend(steps, holds);
            return Ok(());
        }
        let series = &mut self.series;
        add_rows(values, None, |_, step, holds| series.push(step, holds))
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(
            self.hold.first_sustained(&mut self.series),
        ))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.series.heap_bytes()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::LargeBinary(Some(encode_state(
            &self.series,
        )))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for state in decode_states(states)? {
            if let Some(other) = state? {
                self.series.merge(other);
            }
        }
        Ok(())
    }
}

/// `first_sustained` for every group of a GROUP BY at once.
#[derive(Debug)]
struct SustainedGroups {
    hold: Hold,
    groups: Vec<ConditionSeries>,
    /// Heap bytes of each group when last counted.
    sizes: Vec<usize>,
    /// The sum of `sizes`.
    heap_bytes: usize,
}

impl SustainedGroups {
    /// Updates `heap_bytes` for the groups a batch touched.
    fn recount(&mut self, touched: &[usize]) {
        self.sizes.resize(self.groups.len(), 0);
        let mut previous = None;
        for &group in touched {
            if previous != Some(group) {
                let now = self.groups[group].heap_bytes();
                self.heap_bytes = self.heap_bytes + now - self.sizes[group];
                self.sizes[group] = now;
                previous = Some(group);
            }
        }
    }

    fn take(&mut self, emit_to: EmitTo) -> Vec<ConditionSeries> {
        let taken = emit_to.take_needed(&mut self.groups);
        emit_to.take_needed(&mut self.sizes);
        self.heap_bytes = self.sizes.iter().sum();
        taken
    }
}

impl GroupsAccumulator for SustainedGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Default::default);
        if let Some((steps, holds)) = plain_points(values, opt_filter) {
            // Rows of one group come in runs (storage is sorted by series):
            // each run goes in as a block.
            let mut touched = Vec::new();
            let mut start = 0;
            while let Some(&group) = group_indices.get(start) {
                let end = group_indices[start..]
                    .iter()
                    .position(|&g| g != group)
                    .map_or(group_indices.len(), |n| start + n);
                self.groups[group].extend(&steps[start..end], &holds.slice(start, end - start));
                touched.push(group);
                start = end;
            }
            self.recount(&touched);
            return Ok(());
        }
        let groups = &mut self.groups;
        add_rows(values, opt_filter, |row, step, holds| {
            groups[group_indices[row]].push(step, holds)
        })?;
        self.recount(group_indices);
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let hold = self.hold;
        let answers: Int64Array = self
            .take(emit_to)
            .iter_mut()
            .map(|series| hold.first_sustained(series))
            .collect();
        Ok(Arc::new(answers))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let states: LargeBinaryArray = self
            .take(emit_to)
            .iter()
            .map(|series| Some(encode_state(series)))
            .collect();
        Ok(vec![Arc::new(states)])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Default::default);
        for (state, &group) in decode_states(values)?.zip(group_indices) {
            if let Some(other) = state? {
                self.groups[group].merge(other);
            }
        }
        self.recount(group_indices);
        Ok(())
    }

    /// Each row becomes the state of a one-point series (NULL when skipped).
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let rows = values.first().map_or(0, |steps| steps.len());
        let mut states: Vec<Option<Vec<u8>>> = vec![None; rows];
        add_rows(values, opt_filter, |row, step, holds| {
            let mut series = ConditionSeries::default();
            series.push(step, holds);
            states[row] = Some(encode_state(&series));
        })?;
        Ok(vec![Arc::new(
            states.into_iter().collect::<LargeBinaryArray>(),
        )])
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.groups.capacity() * std::mem::size_of::<ConditionSeries>()
            + self.sizes.capacity() * std::mem::size_of::<usize>()
            + self.heap_bytes
    }
}
