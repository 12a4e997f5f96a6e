//! Limits on a statement's size and nesting, checked before it is planned.
//!
//! A chain like `1+1+…+1` parses without recursion into a tree as deep as
//! the chain is long, and planning, optimising and running it recurse over
//! that tree. The limits keep every statement the server accepts shallow
//! enough to plan on the query threads' stacks ([`crate::executor`]); a
//! statement past them gets a clear error instead of a stack overflow.
//! The defaults follow ClickHouse's `max_query_size` and `max_ast_depth`.

use std::ops::ControlFlow;

use datafusion::sql::parser::{CopyToSource, Statement};
use datafusion::sql::sqlparser::ast::{Expr, Visit, Visitor};

use crate::QueryError;

/// How large and how deeply nested a statement may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatementLimits {
    /// Longest statement, in bytes of SQL text.
    pub max_bytes: usize,
    /// Deepest nesting of expressions inside one another (each operand of
    /// `a + b` is one level below the sum).
    pub max_depth: usize,
}

impl Default for StatementLimits {
    fn default() -> Self {
        StatementLimits {
            max_bytes: 256 << 10,
            max_depth: 1000,
        }
    }
}

impl StatementLimits {
    /// Refuses SQL text longer than [`StatementLimits::max_bytes`].
    pub(crate) fn check_size(&self, sql: &str) -> Result<(), QueryError> {
        if sql.len() > self.max_bytes {
            return Err(QueryError::TooComplex(format!(
                "the statement is {} bytes; the limit is {} bytes. Split it, or pass long lists as a table or parameters",
                sql.len(),
                self.max_bytes
            )));
        }
        Ok(())
    }

    /// Refuses a parsed statement whose expressions nest deeper than
    /// [`StatementLimits::max_depth`]. The walk stops at the limit, so it
    /// never recurses deeper than that itself.
    pub(crate) fn check_depth(&self, statement: &Statement) -> Result<(), QueryError> {
        let mut depth = DepthLimit {
            depth: 0,
            limit: self.max_depth,
        };
        let walked = match statement {
            Statement::Statement(inner) => inner.visit(&mut depth),
            Statement::Explain(explain) => return self.check_depth(&explain.statement),
            Statement::CopyTo(copy) => match &copy.source {
                CopyToSource::Query(query) => query.visit(&mut depth),
                CopyToSource::Relation(_) => ControlFlow::Continue(()),
            },
            Statement::CreateExternalTable(_) | Statement::Reset(_) => ControlFlow::Continue(()),
        };
        match walked {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(()) => Err(QueryError::TooComplex(format!(
                "the statement nests expressions more than {} levels deep (a chain like a+b+c+… counts one level per operator); \
                 use fewer terms, e.g. IN (…) instead of a chain of OR, or a function over a list",
                self.max_depth
            ))),
        }
    }
}

/// Counts the expressions open around the current one.
struct DepthLimit {
    depth: usize,
    limit: usize,
}

impl Visitor for DepthLimit {
    type Break = ();

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > self.limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn parse(sql: &str) -> Statement {
        DFParser::parse_sql(sql)
            .expect("parses")
            .pop_front()
            .expect("one statement")
    }

    fn chain(terms: usize, op: &str) -> String {
        format!("SELECT {}", vec!["1"; terms].join(op))
    }

    #[test]
    fn chains_up_to_the_limit_pass_and_longer_ones_are_refused() {
        let limits = StatementLimits {
            max_bytes: 1 << 20,
            max_depth: 100,
        };
        // n terms: n - 1 operators nested, plus the leaf.
        assert!(limits.check_depth(&parse(&chain(100, "+"))).is_ok());
        let error = limits
            .check_depth(&parse(&chain(101, "+")))
            .expect_err("too deep");
        assert!(
            error.to_string().contains("more than 100 levels"),
            "{error}"
        );
        let error = limits
            .check_depth(&parse(&format!("EXPLAIN {}", chain(500, " OR "))))
            .expect_err("EXPLAIN is checked too");
        assert!(matches!(error, QueryError::TooComplex(_)));
    }

    #[test]
    fn long_flat_lists_are_not_deep() {
        let list: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
        let sql = format!("SELECT 1 WHERE 3 IN ({})", list.join(","));
        assert!(StatementLimits::default().check_depth(&parse(&sql)).is_ok());
    }

    #[test]
    fn size_is_checked_in_bytes() {
        let limits = StatementLimits {
            max_bytes: 10,
            max_depth: 10,
        };
        assert!(limits.check_size("SELECT 1").is_ok());
        let error = limits.check_size("SELECT 1 + 2").expect_err("too long");
        assert!(error.to_string().contains("12 bytes; the limit is 10"));
    }
}
