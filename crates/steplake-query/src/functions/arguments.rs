//! Argument helpers shared by every steplake function: the types arguments
//! are coerced to, and the constants read back from them.
//!
//! Constant arguments (a window length, a threshold, a method name) keep the
//! type they were written with: `is_spike(value, 50, 6)` and
//! `is_spike(value, 50, 6.0)` must stay two different expressions. Casting
//! both to one type made them identical after planning had told them apart,
//! and DataFusion 55 then failed with "Physical plan does not support logical
//! expression". The value is converted when it is read ([`number`],
//! [`integer`], [`text`]).
//!
//! Errors about arguments are planning errors: they are the statement's
//! fault, and callers report them as bad input (exit 2, `InvalidArgument`).

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::PhysicalExpr;

/// What a parameter accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A column of numbers, read as `Float64`.
    Value,
    /// A column of steps, read as `Int64`.
    Step,
    /// A column of booleans: a condition such as `value > 0.9`.
    Condition,
    /// A constant integer.
    Integer,
    /// A constant number (integer or float).
    Number,
    /// A constant string.
    Text,
    /// A constant boolean.
    Flag,
}

/// The parameters of one function, for coercion and usage errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parameters {
    /// The SQL name.
    pub(crate) function: &'static str,
    /// The call as the docs write it, e.g. `(value [, n [, threshold]])`.
    pub(crate) usage: &'static str,
    /// Each parameter's name and kind, in order.
    pub(crate) list: &'static [(&'static str, Kind)],
    /// How many of them are required.
    pub(crate) required: usize,
}

impl Parameters {
    /// The types `arg_types` are coerced to, or an error that shows the usage.
    pub(crate) fn coerce(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let count = arg_types.len();
        if count < self.required || count > self.list.len() {
            return plan_err!(
                "{} takes {}, got {count} argument{}",
                self.function,
                self.usage,
                if count == 1 { "" } else { "s" }
            );
        }
        arg_types
            .iter()
            .zip(self.list)
            .map(|(t, &(what, kind))| coerce_one(self.function, what, kind, t))
            .collect()
    }
}

fn coerce_one(function: &str, what: &str, kind: Kind, t: &DataType) -> Result<DataType> {
    let numeric = t.is_numeric() || t.is_null();
    let textual = matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    match kind {
        Kind::Value if numeric => Ok(DataType::Float64),
        Kind::Step if numeric || matches!(t, DataType::Timestamp(..)) => Ok(DataType::Int64),
        Kind::Condition if matches!(t, DataType::Boolean | DataType::Null) => Ok(DataType::Boolean),
        Kind::Condition => plan_err!(
            "{function}: {what} must be a condition such as `value > 0.9`, got a {t} expression"
        ),
        Kind::Integer if t.is_integer() || t.is_null() => Ok(t.clone()),
        Kind::Number if numeric => Ok(t.clone()),
        Kind::Text if textual || t.is_null() => Ok(t.clone()),
        Kind::Flag if matches!(t, DataType::Boolean | DataType::Null) => Ok(t.clone()),
        _ => plan_err!("{function}: {what} must be {}, got {t}", kind_name(kind)),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Value => "a number",
        Kind::Step => "an integer step",
        Kind::Condition => "a condition",
        Kind::Integer => "an integer",
        Kind::Number => "a number",
        Kind::Text => "a string",
        Kind::Flag => "true or false",
    }
}

/// A constant as a number; `None` for NULL.
pub(crate) fn number(value: &ScalarValue) -> Option<f64> {
    match value.cast_to(&DataType::Float64) {
        Ok(ScalarValue::Float64(v)) => v,
        _ => None,
    }
}

/// A constant integer; `None` for NULL or anything but an integer.
pub(crate) fn integer(value: &ScalarValue) -> Option<i64> {
    if !value.data_type().is_integer() {
        return None;
    }
    match value.cast_to(&DataType::Int64) {
        Ok(ScalarValue::Int64(v)) => v,
        _ => None,
    }
}

/// A constant string; `None` for NULL.
pub(crate) fn text(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => s.as_deref(),
        _ => None,
    }
}

/// The value of an aggregate's constant argument `index` (`None` when the
/// call has fewer arguments); an error names `what` when it is not a constant.
pub fn literal_argument(
    exprs: &[Arc<dyn PhysicalExpr>],
    index: usize,
    function: &str,
    what: &str,
) -> Result<Option<ScalarValue>> {
    match exprs.get(index) {
        None => Ok(None),
        Some(expr) => match expr.downcast_ref::<Literal>() {
            Some(literal) => Ok(Some(literal.value().clone())),
            None => plan_err!("{function}: {what} must be a constant"),
        },
    }
}

/// The constant arguments of an aggregate from `from` on, `None` where the
/// call stops early.
pub(crate) fn literal_arguments(
    exprs: &[Arc<dyn PhysicalExpr>],
    from: usize,
    parameters: &Parameters,
) -> Result<Vec<Option<ScalarValue>>> {
    (from..parameters.list.len())
        .map(|i| literal_argument(exprs, i, parameters.function, parameters.list[i].0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Parameters = Parameters {
        function: "f",
        usage: "(value, n [, k])",
        list: &[
            ("value", Kind::Value),
            ("n", Kind::Integer),
            ("k", Kind::Number),
        ],
        required: 2,
    };

    #[test]
    fn constants_keep_the_type_they_were_written_with() {
        use DataType::{Float64, Int32, Int64};
        assert_eq!(
            P.coerce(&[Int32, Int64, Int64]).unwrap(),
            vec![Float64, Int64, Int64]
        );
        assert_eq!(
            P.coerce(&[Int32, Int64, Float64]).unwrap(),
            vec![Float64, Int64, Float64]
        );
        let error = P.coerce(&[Float64]).unwrap_err().to_string();
        assert!(
            error.contains("f takes (value, n [, k]), got 1 argument"),
            "{error}"
        );
        let error = P.coerce(&[Float64, Float64]).unwrap_err().to_string();
        assert!(error.contains("n must be an integer"), "{error}");
        assert_eq!(number(&ScalarValue::Int64(Some(6))), Some(6.0));
        assert_eq!(integer(&ScalarValue::Float64(Some(6.0))), None);
        assert_eq!(integer(&ScalarValue::Int32(Some(6))), Some(6));
    }
}
