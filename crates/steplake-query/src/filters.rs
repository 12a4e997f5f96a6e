//! Turns SQL predicates into a [`SeriesFilter`], the store's unit of pruning.
//!
//! Understood (on the `scalars` columns, each conjunct on its own):
//! `run_id = 'r'`, `run_id IN (...)`, the same for `name`, and
//! `step {=,<,<=,>,>=} n`, `step BETWEEN a AND b`. Anything else is left to
//! DataFusion; the filter only ever narrows what is read, never the answer.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use steplake_store::SeriesFilter;

/// The [`SeriesFilter`] implied by a conjunction of predicates.
pub fn series_filter(filters: &[Expr]) -> SeriesFilter {
    let mut out = SeriesFilter::default();
    for expr in filters {
        for conjunct in split_conjunction(expr) {
            narrow(&mut out, conjunct);
        }
    }
    out
}

fn split_conjunction(expr: &Expr) -> Vec<&Expr> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            let mut parts = split_conjunction(left);
            parts.extend(split_conjunction(right));
            parts
        }
        other => vec![other],
    }
}

fn column_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(c) => column_name(&c.expr),
        _ => None,
    }
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(v, _) => Some(v),
        Expr::Cast(c) => literal(&c.expr),
        _ => None,
    }
}

fn as_string(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

fn as_i64(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int64(Some(x)) => Some(*x),
        ScalarValue::Int32(Some(x)) => Some(i64::from(*x)),
        ScalarValue::Int16(Some(x)) => Some(i64::from(*x)),
        ScalarValue::Int8(Some(x)) => Some(i64::from(*x)),
        ScalarValue::UInt32(Some(x)) => Some(i64::from(*x)),
        ScalarValue::UInt64(Some(x)) => i64::try_from(*x).ok(),
        _ => None,
    }
}

/// Intersects `current` with `values` (a `None` current means "any").
fn intersect(current: &mut Option<Vec<String>>, values: Vec<String>) {
    *current = Some(match current.take() {
        None => values,
        Some(existing) => existing
            .into_iter()
            .filter(|v| values.contains(v))
            .collect(),
    });
}

fn narrow(out: &mut SeriesFilter, expr: &Expr) {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (column, value, op) = match (
                column_name(left),
                literal(right),
                column_name(right),
                literal(left),
            ) {
                (Some(c), Some(v), _, _) => (c, v, *op),
                (_, _, Some(c), Some(v)) => match op.swap() {
                    Some(swapped) => (c, v, swapped),
                    None => return,
                },
                _ => return,
            };
            narrow_comparison(out, column, op, value);
        }
        Expr::InList(list) if !list.negated => {
            let Some(column) = column_name(&list.expr) else {
                return;
            };
            let values: Option<Vec<String>> = list
                .list
                .iter()
                .map(|e| literal(e).and_then(as_string))
                .collect();
            match (column, values) {
                ("run_id", Some(values)) => intersect(&mut out.run_ids, values),
                ("name", Some(values)) => intersect(&mut out.names, values),
                _ => {}
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if column_name(expr) == Some("step") => {
            if let Some(lo) = literal(low).and_then(as_i64) {
                narrow_comparison(out, "step", Operator::GtEq, &ScalarValue::Int64(Some(lo)));
            }
            if let Some(hi) = literal(high).and_then(as_i64) {
                narrow_comparison(out, "step", Operator::LtEq, &ScalarValue::Int64(Some(hi)));
            }
        }
        _ => {}
    }
}

fn narrow_comparison(out: &mut SeriesFilter, column: &str, op: Operator, value: &ScalarValue) {
    match (column, op) {
        ("run_id", Operator::Eq) => {
            if let Some(s) = as_string(value) {
                intersect(&mut out.run_ids, vec![s]);
            }
        }
        ("name", Operator::Eq) => {
            if let Some(s) = as_string(value) {
                intersect(&mut out.names, vec![s]);
            }
        }
        ("step", op) => {
            let Some(v) = as_i64(value) else { return };
            let raise_min = |out: &mut SeriesFilter, m: i64| {
                out.min_step = Some(out.min_step.map_or(m, |c| c.max(m)))
            };
            let lower_max = |out: &mut SeriesFilter, m: i64| {
                out.max_step = Some(out.max_step.map_or(m, |c| c.min(m)))
            };
            match op {
                Operator::Eq => {
                    raise_min(out, v);
                    lower_max(out, v);
                }
                Operator::Gt => raise_min(out, v.saturating_add(1)),
                Operator::GtEq => raise_min(out, v),
                Operator::Lt => lower_max(out, v.saturating_sub(1)),
                Operator::LtEq => lower_max(out, v),
                _ => {}
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    #[test]
    fn equality_in_and_ranges_narrow_the_filter() {
        let f = series_filter(&[
            col("run_id").eq(lit("r1")),
            col("name").in_list(vec![lit("loss"), lit("acc")], false),
            col("step")
                .gt_eq(lit(10i64))
                .and(col("step").lt(lit(20i64))),
        ]);
        assert_eq!(f.run_ids, Some(vec!["r1".to_string()]));
        assert_eq!(f.names, Some(vec!["loss".to_string(), "acc".to_string()]));
        assert_eq!((f.min_step, f.max_step), (Some(10), Some(19)));
    }

    #[test]
    fn unknown_predicates_do_not_narrow() {
        let f = series_filter(&[
            col("value").gt(lit(1.0)),
            col("name").eq(lit("a")).or(col("name").eq(lit("b"))),
        ]);
        assert_eq!(f, SeriesFilter::default());
    }

    #[test]
    fn contradictory_names_match_nothing() {
        let f = series_filter(&[col("name").eq(lit("a")), col("name").eq(lit("b"))]);
        assert_eq!(f.names, Some(vec![]));
    }
}
