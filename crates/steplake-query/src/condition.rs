//! Standing conditions: a SQL predicate over one series, evaluated point by
//! point while a run trains (issue 18, the evaluation half).
//!
//! A condition is written as the `WHERE` clause a scientist would put on a
//! window query over one series, without the window:
//!
//! ```sql
//! is_spike(value)                          -- the default robust, upward rule
//! rolling_zscore(value, 50) > 6 OR isnan(value)
//! ema(value, 0.1) >= 0.9                   -- with hold = 3: three points in a row
//! ```
//!
//! What a predicate may use:
//! - `value` and `step` of the current point; numbers, `TRUE`/`FALSE`, and
//!   strings as function arguments;
//! - `+ - * /`, comparisons, `AND`, `OR`, `NOT`, parentheses;
//! - the series functions, with the arguments and defaults they take in SQL:
//!   `is_spike(x [, n [, threshold [, method [, direction]]]])`,
//!   `spike_ratio(x [, n])`, `rolling_zscore(x, n [, robust])`,
//!   `ema(x, alpha)`;
//! - `isnan(x)`, `isinf(x)`, `isfinite(x)`, `abs(x)`.
//!
//! Anything else (another column, a table, a subquery, `OVER`, an aggregate,
//! a statement) is refused with a [`ConditionError`] that says what is
//! allowed.
//!
//! **Same answers as the SQL.** Each series function keeps its state in the
//! tracker its window function is built on ([`crate::functions::spikes::SpikeTracker`],
//! [`crate::functions::series::ZscoreTracker`], [`crate::functions::series::EmaTracker`]),
//! so a condition fed a series point by point is true exactly where the
//! same predicate over `f(...) OVER (PARTITION BY run_id, name ORDER BY
//! step)` is. A NULL (a z-score with too little history) is not true.
//!
//! **Firing.** [`SeriesWatch::observe`] says when a predicate has held on
//! `hold` points in a row; it fires once per such episode, and again only
//! after a point where the predicate did not hold.
//!
//! **Evaluation.** The conditions that watch one series are compiled
//! together into one flat program ([`ConditionSet`], `program.rs`); a
//! series keeps only its functions' state.

use std::fmt;

use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, UnaryOperator,
    Value,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::functions::arguments;
use crate::functions::series::{ema_alpha, window_length, EmaTracker, ZscoreTracker};
use crate::functions::spikes::{SpikeRule, SpikeTracker};

mod program;

pub use program::{ConditionSet, Scratch, SeriesWatch};

/// Longest predicate accepted, in bytes.
pub const MAX_PREDICATE_BYTES: usize = 4096;
/// Deepest nesting of a predicate's expression.
const MAX_DEPTH: usize = 64;
/// Longest `hold`: a condition must be able to fire within a run.
pub const MAX_HOLD: usize = 1_000_000;

const ALLOWED: &str = "a condition is a predicate over the current point of one series: `value`, `step`, numbers, + - * /, comparisons, AND/OR/NOT, and the functions is_spike, spike_ratio, rolling_zscore, ema, isnan, isinf, isfinite, abs (for example `is_spike(value)` or `rolling_zscore(value, 50) > 6`)";

/// Why a condition is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    /// What is wrong, and what is allowed instead.
    pub message: String,
}

impl fmt::Display for ConditionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConditionError {}

fn refuse<T>(what: impl fmt::Display) -> Result<T, ConditionError> {
    Err(ConditionError {
        message: format!("{what}; {ALLOWED}"),
    })
}

/// A checked predicate with its `hold`: the template every watched series
/// gets its own [`SeriesWatch`] from.
#[derive(Debug, Clone)]
pub struct Condition {
    predicate: String,
    hold: usize,
    root: Node,
}

impl Condition {
    /// Parses and checks `predicate`; `hold` is how many points in a row it
    /// must hold before the condition fires (at least 1).
    pub fn parse(predicate: &str, hold: usize) -> Result<Condition, ConditionError> {
        if predicate.len() > MAX_PREDICATE_BYTES {
            return refuse(format!(
                "the predicate is {} bytes, more than the {MAX_PREDICATE_BYTES} allowed",
                predicate.len()
            ));
        }
        if !(1..=MAX_HOLD).contains(&hold) {
            return refuse(format!(
                "hold must be between 1 and {MAX_HOLD} points, got {hold}"
            ));
        }
        let mut parser = Parser::new(&GenericDialect {})
            .with_recursion_limit(MAX_DEPTH)
            .try_with_sql(predicate)
            .map_err(|e| ConditionError {
                message: format!("cannot read the predicate: {e}; {ALLOWED}"),
            })?;
        let expr = parser.parse_expr().map_err(|e| ConditionError {
            message: format!("`{predicate}` is not a predicate: {e}; {ALLOWED}"),
        })?;
        if parser.peek_token().token != datafusion::sql::sqlparser::tokenizer::Token::EOF {
            return refuse(format!(
                "`{predicate}` is not a predicate (it goes on after `{expr}`)"
            ));
        }
        let root = Node::compile(&expr, 0)?;
        if root.kind() != Kind::Bool {
            return refuse(format!(
                "`{predicate}` is a number, not a predicate (compare it: `{expr} > 1`)"
            ));
        }
        Ok(Condition {
            predicate: predicate.to_string(),
            hold,
            root,
        })
    }

    /// The predicate as written.
    pub fn predicate(&self) -> &str {
        &self.predicate
    }

    /// Points in a row the predicate must hold on.
    pub fn hold(&self) -> usize {
        self.hold
    }

    /// How many of a series' latest points a fresh watch must be fed to
    /// reach the state of one that saw the whole series: the longest
    /// function window, and `hold`. (An `ema` remembers its whole past; it
    /// counts the points after which the rest weighs under 1e-9.)
    pub fn memory(&self) -> usize {
        self.root.memory().max(self.hold)
    }

    /// A fresh watch of one series by this condition alone (see
    /// [`ConditionSet`] for several).
    pub fn watch(&self) -> SeriesWatch {
        ConditionSet::new([self]).watch()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Bool,
}

#[derive(Debug, Clone, Copy)]
enum Arithmetic {
    Add,
    Subtract,
    Multiply,
    Divide,
}

#[derive(Debug, Clone, Copy)]
enum Comparison {
    Gt,
    GtEq,
    Lt,
    LtEq,
    Eq,
    NotEq,
}

#[derive(Debug, Clone, Copy)]
enum Test {
    Nan,
    Infinite,
    Finite,
}

/// A compiled predicate. Every node is evaluated at every point, even where
/// `AND`/`OR` already know the answer, so that each function's history sees
/// the whole series, as its window function does.
#[derive(Debug, Clone)]
enum Node {
    Value,
    Step,
    Number(f64),
    Bool(bool),
    Negate(Box<Node>),
    Not(Box<Node>),
    Arithmetic(Arithmetic, Box<Node>, Box<Node>),
    Compare(Comparison, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Test(Test, Box<Node>),
    Abs(Box<Node>),
    IsSpike(Box<Node>, SpikeTracker),
    SpikeRatio(Box<Node>, SpikeTracker),
    RollingZscore(Box<Node>, ZscoreTracker),
    Ema(Box<Node>, EmaTracker),
}

impl Node {
    fn memory(&self) -> usize {
        match self {
            Node::Value | Node::Step | Node::Number(_) | Node::Bool(_) => 0,
            Node::Negate(a) | Node::Not(a) | Node::Test(_, a) | Node::Abs(a) => a.memory(),
            Node::Arithmetic(_, a, b)
            | Node::Compare(_, a, b)
            | Node::And(a, b)
            | Node::Or(a, b) => a.memory().max(b.memory()),
            Node::IsSpike(a, t) | Node::SpikeRatio(a, t) => a.memory() + t.memory() + 1,
            Node::RollingZscore(a, t) => a.memory() + t.memory() + 1,
            Node::Ema(a, t) => a.memory() + t.memory(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Node::Bool(_)
            | Node::Not(_)
            | Node::Compare(..)
            | Node::And(..)
            | Node::Or(..)
            | Node::Test(..)
            | Node::IsSpike(..) => Kind::Bool,
            _ => Kind::Number,
        }
    }

    fn compile(expr: &Expr, depth: usize) -> Result<Node, ConditionError> {
        if depth > MAX_DEPTH {
            return refuse(format!(
                "the predicate nests deeper than {MAX_DEPTH} levels"
            ));
        }
        let sub = |e: &Expr| Node::compile(e, depth + 1);
        let typed = |e: &Expr, kind: Kind| -> Result<Node, ConditionError> {
            let node = Node::compile(e, depth + 1)?;
            if node.kind() == kind {
                Ok(node)
            } else {
                let want = match kind {
                    Kind::Number => "a number",
                    Kind::Bool => "a predicate",
                };
                refuse(format!("`{e}` is used where {want} is needed"))
            }
        };
        Ok(match expr {
            Expr::Nested(inner) => sub(inner)?,
            Expr::Identifier(ident) => match ident.value.to_ascii_lowercase().as_str() {
                "value" => Node::Value,
                "step" => Node::Step,
                other => {
                    return refuse(format!(
                        "`{other}` is not a column of a condition: only `value` and `step` of the current point are"
                    ))
                }
            },
            Expr::CompoundIdentifier(parts) => {
                return refuse(format!(
                    "`{}` names a table's column; a condition sees one series, as `value` and `step`",
                    parts
                        .iter()
                        .map(|part| part.value.as_str())
                        .collect::<Vec<_>>()
                        .join(".")
                ))
            }
            Expr::Value(v) => match &v.value {
                Value::Number(text, _) => match text.to_string().parse::<f64>() {
                    Ok(n) => Node::Number(n),
                    Err(_) => return refuse(format!("`{text}` is not a number")),
                },
                Value::Boolean(b) => Node::Bool(*b),
                other => {
                    return refuse(format!(
                        "{other} can only be a function argument (such as is_spike's method)"
                    ))
                }
            },
            Expr::UnaryOp { op, expr } => match op {
                UnaryOperator::Not => Node::Not(Box::new(typed(expr, Kind::Bool)?)),
                UnaryOperator::Minus => Node::Negate(Box::new(typed(expr, Kind::Number)?)),
                UnaryOperator::Plus => typed(expr, Kind::Number)?,
                other => return refuse(format!("the operator `{other}` is not supported")),
            },
            Expr::BinaryOp { left, op, right } => {
                let arithmetic = |a: Arithmetic| -> Result<Node, ConditionError> {
                    Ok(Node::Arithmetic(
                        a,
                        Box::new(typed(left, Kind::Number)?),
                        Box::new(typed(right, Kind::Number)?),
                    ))
                };
                let compare = |c: Comparison| -> Result<Node, ConditionError> {
                    Ok(Node::Compare(
                        c,
                        Box::new(typed(left, Kind::Number)?),
                        Box::new(typed(right, Kind::Number)?),
                    ))
                };
                match op {
                    BinaryOperator::Plus => arithmetic(Arithmetic::Add)?,
                    BinaryOperator::Minus => arithmetic(Arithmetic::Subtract)?,
                    BinaryOperator::Multiply => arithmetic(Arithmetic::Multiply)?,
                    BinaryOperator::Divide => arithmetic(Arithmetic::Divide)?,
                    BinaryOperator::Gt => compare(Comparison::Gt)?,
                    BinaryOperator::GtEq => compare(Comparison::GtEq)?,
                    BinaryOperator::Lt => compare(Comparison::Lt)?,
                    BinaryOperator::LtEq => compare(Comparison::LtEq)?,
                    BinaryOperator::Eq => compare(Comparison::Eq)?,
                    BinaryOperator::NotEq => compare(Comparison::NotEq)?,
                    BinaryOperator::And => Node::And(
                        Box::new(typed(left, Kind::Bool)?),
                        Box::new(typed(right, Kind::Bool)?),
                    ),
                    BinaryOperator::Or => Node::Or(
                        Box::new(typed(left, Kind::Bool)?),
                        Box::new(typed(right, Kind::Bool)?),
                    ),
                    other => return refuse(format!("the operator `{other}` is not supported")),
                }
            }
            Expr::Function(function) => Node::function(function, depth)?,
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                return refuse("a condition cannot read a table or a subquery")
            }
            other => return refuse(format!("`{other}` is not supported in a condition")),
        })
    }

    fn function(function: &ast::Function, depth: usize) -> Result<Node, ConditionError> {
        let name = function.name.to_string().to_ascii_lowercase();
        if function.over.is_some() {
            return refuse(format!(
                "`{name}(...) OVER (...)`: a condition has no OVER, it runs over its series in step order already"
            ));
        }
        if function.filter.is_some() || !function.within_group.is_empty() {
            return refuse(format!("`{name}` takes no FILTER or WITHIN GROUP here"));
        }
        let args: Vec<&Expr> = match &function.args {
            FunctionArguments::None => Vec::new(),
            FunctionArguments::Subquery(_) => {
                return refuse("a condition cannot read a table or a subquery")
            }
            FunctionArguments::List(list) => {
                if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                    return refuse(format!("`{name}` takes plain arguments here"));
                }
                list.args
                    .iter()
                    .map(|arg| match arg {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                        other => refuse(format!("`{other}`: arguments are plain expressions")),
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        let series = |usage: &str| -> Result<Box<Node>, ConditionError> {
            let Some(first) = args.first() else {
                return refuse(format!("{name} needs arguments: {name}{usage}"));
            };
            let node = Node::compile(first, depth + 1)?;
            if node.kind() != Kind::Number {
                return refuse(format!(
                    "{name}'s first argument must be a number, such as `value`"
                ));
            }
            Ok(Box::new(node))
        };
        let constants =
            |usage: &str, most: usize| -> Result<Vec<Option<ScalarValue>>, ConditionError> {
                if args.len() > most + 1 {
                    return refuse(format!(
                        "{name} takes at most {} arguments: {name}{usage}",
                        most + 1
                    ));
                }
                args.iter().skip(1).map(|e| constant(e, &name)).collect()
            };
        let one = |usage: &str| -> Result<Box<Node>, ConditionError> {
            if args.len() != 1 {
                return refuse(format!("{name} takes one argument: {name}{usage}"));
            }
            series(usage)
        };
        let planned = |e: datafusion::error::DataFusionError| ConditionError {
            message: format!(
                "{}; {ALLOWED}",
                e.strip_backtrace()
                    .trim_start_matches("Error during planning: ")
            ),
        };
        Ok(match name.as_str() {
            "is_spike" => {
                let usage = "(value [, n [, threshold [, method [, direction]]]])";
                let arg = series(usage)?;
                let rule =
                    SpikeRule::from_arguments(&name, &constants(usage, 4)?).map_err(planned)?;
                Node::IsSpike(arg, SpikeTracker::new(rule))
            }
            "spike_ratio" => {
                let usage = "(value [, n])";
                let arg = series(usage)?;
                let rule =
                    SpikeRule::from_arguments(&name, &constants(usage, 1)?).map_err(planned)?;
                Node::SpikeRatio(arg, SpikeTracker::new(rule))
            }
            "rolling_zscore" => {
                let usage = "(value, n [, robust])";
                let arg = series(usage)?;
                let given = constants(usage, 2)?;
                let Some(n) = given.first().and_then(Option::as_ref) else {
                    return refuse(format!("rolling_zscore: n (the number of previous points) must be an integer >= 2: rolling_zscore{usage}"));
                };
                let n = window_length(&name, Some(n)).map_err(planned)?;
                let robust = match given.get(1) {
                    None => false,
                    Some(Some(ScalarValue::Boolean(Some(b)))) => *b,
                    Some(_) => return refuse("rolling_zscore: robust must be TRUE or FALSE"),
                };
                Node::RollingZscore(arg, ZscoreTracker::new(n, robust))
            }
            "ema" => {
                let usage = "(value, alpha)";
                let arg = series(usage)?;
                let given = constants(usage, 1)?;
                let alpha = given
                    .first()
                    .and_then(Option::as_ref)
                    .and_then(arguments::number)
                    .unwrap_or(f64::NAN);
                Node::Ema(arg, EmaTracker::new(ema_alpha(alpha).map_err(planned)?))
            }
            "isnan" => Node::Test(Test::Nan, one("(value)")?),
            "isinf" => Node::Test(Test::Infinite, one("(value)")?),
            "isfinite" => Node::Test(Test::Finite, one("(value)")?),
            "abs" => Node::Abs(one("(value)")?),
            _ => return refuse(format!("`{name}` is not a function a condition can use")),
        })
    }
}

/// A function argument after the series: a number, a string or a boolean.
fn constant(expr: &Expr, function: &str) -> Result<Option<ScalarValue>, ConditionError> {
    let (negative, expr) = match expr {
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => (true, expr.as_ref()),
        other => (false, other),
    };
    let Expr::Value(v) = expr else {
        return refuse(format!(
            "{function}: arguments after the first must be constants, not `{expr}`"
        ));
    };
    let sign = if negative { -1.0 } else { 1.0 };
    Ok(Some(match &v.value {
        Value::Number(text, _) => {
            let text = text.to_string();
            match text.parse::<i64>() {
                Ok(n) if !negative => ScalarValue::Int64(Some(n)),
                Ok(n) => ScalarValue::Int64(Some(-n)),
                Err(_) => match text.parse::<f64>() {
                    Ok(x) => ScalarValue::Float64(Some(sign * x)),
                    Err(_) => return refuse(format!("{function}: `{text}` is not a number")),
                },
            }
        }
        Value::SingleQuotedString(s) if !negative => ScalarValue::Utf8(Some(s.clone())),
        Value::Boolean(b) if !negative => ScalarValue::Boolean(Some(*b)),
        Value::Null => return Ok(None),
        other => return refuse(format!("{function}: `{other}` is not an argument it takes")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::series::{ema, rolling_zscore};

    fn loss_with_spikes() -> Vec<f64> {
        (0..400)
            .map(|i| {
                let base = 3.0 / (1.0 + i as f64 * 0.02) + 0.01 * ((i * 7919 % 13) as f64);
                match i {
                    120 | 121 => base * 1.6,
                    250 => f64::NAN,
                    300 => base * 2.5,
                    _ => base,
                }
            })
            .collect()
    }

    /// Whether `predicate` is true at each point of `values` (steps 0, 1,
    /// ...), without firing: what the same predicate over window functions
    /// says.
    fn truths(predicate: &str, values: &[f64]) -> Vec<bool> {
        let mut watch = Condition::parse(predicate, 1).expect(predicate).watch();
        values
            .iter()
            .enumerate()
            .map(|(step, &v)| {
                watch.observe(&[step as i64], &[v], &mut Scratch::default(), |_, _| {});
                watch.holding(0)
            })
            .collect()
    }

    /// Whether the single condition of `watch` fires at the point.
    fn fires(watch: &mut SeriesWatch, step: i64, value: f64) -> bool {
        let mut fired = false;
        watch.observe(&[step], &[value], &mut Scratch::default(), |_, _| {
            fired = true
        });
        fired
    }

    #[test]
    fn a_watch_fed_its_memory_agrees_with_one_that_saw_everything() {
        let values: Vec<f64> = loss_with_spikes()
            .into_iter()
            .map(|v| if v.is_nan() { 1.0 } else { v })
            .collect();
        for predicate in [
            "is_spike(value)",
            "rolling_zscore(value, 30) > 2 AND ema(value, 0.2) < 2",
            "spike_ratio(value, 7) > 1.1",
        ] {
            let condition = Condition::parse(predicate, 2).expect(predicate);
            let memory = condition.memory();
            let cut = 200;
            let mut whole = condition.watch();
            let mut fresh = condition.watch();
            for (step, &v) in values[..cut].iter().enumerate() {
                fires(&mut whole, step as i64, v);
            }
            for (step, &v) in values.iter().enumerate().take(cut).skip(cut - memory) {
                fires(&mut fresh, step as i64, v);
            }
            for (step, &v) in values.iter().enumerate().skip(cut) {
                assert_eq!(
                    fires(&mut whole, step as i64, v),
                    fires(&mut fresh, step as i64, v),
                    "{predicate} at step {step} (memory {memory})"
                );
            }
        }
    }

    #[test]
    fn is_spike_holds_where_the_window_function_flags() {
        let values = loss_with_spikes();
        for (predicate, rule) in [
            ("is_spike(value)", SpikeRule::default()),
            (
                "is_spike(value, 30, 8, 'mad', 'both')",
                SpikeRule::from_arguments(
                    "is_spike",
                    &[
                        Some(ScalarValue::Int64(Some(30))),
                        Some(ScalarValue::Int64(Some(8))),
                        Some(ScalarValue::Utf8(Some("mad".into()))),
                        Some(ScalarValue::Utf8(Some("both".into()))),
                    ],
                )
                .expect("rule"),
            ),
        ] {
            assert_eq!(
                truths(predicate, &values),
                rule.flags(&values),
                "{predicate}"
            );
        }
        let flagged: Vec<usize> = truths("is_spike(value)", &values)
            .iter()
            .enumerate()
            .filter_map(|(i, &f)| f.then_some(i))
            .collect();
        assert!(flagged.contains(&120) && flagged.contains(&250) && flagged.contains(&300));
    }

    #[test]
    fn rolling_zscore_and_ema_match_their_window_functions() {
        let values = loss_with_spikes();
        let z = rolling_zscore(&values, 50, true);
        let expected: Vec<bool> = z.iter().map(|s| s.is_some_and(|s| s > 6.0)).collect();
        assert_eq!(
            truths("rolling_zscore(value, 50, true) > 6", &values),
            expected
        );
        let e = ema(&values, 0.1);
        let expected: Vec<bool> = e.iter().map(|&a| a < 0.5).collect();
        assert_eq!(truths("ema(value, 0.1) < 0.5", &values), expected);
    }

    #[test]
    fn every_function_sees_every_point_even_behind_and_or() {
        // The spike function sits behind an OR whose left side is true for
        // the first 200 steps; it must still see those points as history.
        let values = loss_with_spikes();
        let alone = truths("is_spike(value)", &values);
        let behind = truths("step < 200 OR is_spike(value)", &values);
        for step in 200..values.len() {
            assert_eq!(alone[step], behind[step], "step {step}");
        }
    }

    #[test]
    fn a_set_fires_what_each_of_its_conditions_fires_alone() {
        let values = loss_with_spikes();
        let conditions: Vec<Condition> = [
            ("is_spike(value)", 1),
            ("rolling_zscore(value, 30) > 2 AND ema(value, 0.2) < 2", 2),
            ("spike_ratio(value, 7) > 1.1 OR isnan(value)", 1),
            ("value > 1", 3),
            (
                "NOT (is_spike(value, 20, 4, 'mad', 'both') OR step < 10)",
                2,
            ),
        ]
        .iter()
        .map(|(predicate, hold)| Condition::parse(predicate, *hold).expect(predicate))
        .collect();
        // Alone, point by point: (step, condition) of each firing.
        let mut expected = Vec::new();
        for (k, condition) in conditions.iter().enumerate() {
            let mut watch = condition.watch();
            for (step, &v) in values.iter().enumerate() {
                if fires(&mut watch, step as i64, v) {
                    expected.push((step, k));
                }
            }
        }
        expected.sort();
        // Together, fed in chunks of several sizes.
        let steps: Vec<i64> = (0..values.len() as i64).collect();
        let mut scratch = Scratch::default();
        for chunk in [1, 3, 10, 64, values.len()] {
            let mut together = ConditionSet::new(&conditions).watch();
            let mut fired = Vec::new();
            for (at, (steps, values)) in steps.chunks(chunk).zip(values.chunks(chunk)).enumerate() {
                together.observe(steps, values, &mut scratch, |k, i| {
                    fired.push((at * chunk + i, k))
                });
            }
            fired.sort();
            assert_eq!(fired, expected, "chunks of {chunk}");
        }
        assert!(!expected.is_empty());
    }

    #[test]
    fn fires_once_per_episode_after_hold_points() {
        let condition = Condition::parse("value > 1", 3).expect("parse");
        let mut watch = condition.watch();
        let values = [0.0, 2.0, 2.0, 2.0, 2.0, 0.0, 2.0, 2.0, 2.0];
        let fired: Vec<i64> = values
            .iter()
            .enumerate()
            .filter_map(|(i, &v)| fires(&mut watch, i as i64, v).then_some(i as i64))
            .collect();
        assert_eq!(fired, vec![3, 8]);
    }

    #[test]
    fn nan_tests_and_arithmetic() {
        let values = [1.0, f64::NAN, f64::INFINITY, -4.0];
        assert_eq!(truths("isnan(value)", &values), [false, true, false, false]);
        assert_eq!(
            truths("isinf(value) OR abs(value) > 3", &values),
            [false, false, true, true]
        );
        assert_eq!(
            truths("NOT isfinite(value * 2 - 1)", &values),
            [false, true, true, false]
        );
    }

    #[test]
    fn bad_conditions_are_refused_with_what_is_allowed() {
        for (predicate, needle) in [
            ("frobnicate(value) > 1", "`frobnicate` is not a function"),
            (
                "(SELECT max(value) FROM scalars) > 1",
                "cannot read a table",
            ),
            ("value > (SELECT 1)", "cannot read a table"),
            ("scalars.value > 1", "names a table's column"),
            ("loss > 1", "`loss` is not a column"),
            ("SELECT 1", "not a predicate"),
            ("value > 1; DROP TABLE runs", "not a predicate"),
            ("value + 1", "is a number, not a predicate"),
            ("is_spike(value) OVER (ORDER BY step)", "no OVER"),
            (
                "rolling_zscore(value) > 1",
                "n (the number of previous points)",
            ),
            ("ema(value, 2) > 1", "alpha must be in (0, 1]"),
            ("is_spike(value, 20, 0.5)", "threshold must be a ratio > 1"),
            ("is_spike(value, step)", "must be constants"),
            ("value AND TRUE", "is used where a predicate is needed"),
        ] {
            let error = Condition::parse(predicate, 1).expect_err(predicate);
            assert!(
                error.message.contains(needle) && error.message.contains("is_spike(value)"),
                "{predicate}: {error}"
            );
        }
        let long = format!("value > {}", "1".repeat(MAX_PREDICATE_BYTES));
        assert!(Condition::parse(&long, 1).is_err());
        assert!(Condition::parse("value > 1", 0).is_err());
        let deep = format!("{}value > 1{}", "(".repeat(200), ")".repeat(200));
        assert!(Condition::parse(&deep, 1).is_err());
    }
}
