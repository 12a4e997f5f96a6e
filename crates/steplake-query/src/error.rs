//! The errors of the query layer, and the one place where DataFusion's
//! messages are turned into text a person reads.

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

/// Errors of the query layer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL could not be parsed or planned (syntax, unknown column, ...).
    #[error("{}", describe(.0))]
    Plan(DataFusionError),
    /// The statement is larger or nests deeper than the server accepts.
    #[error("{0}")]
    TooComplex(String),
    /// The statement would change data or read outside the store.
    #[error(
        "statement not allowed: {0}. steplake SQL is read-only: use SELECT, WITH, EXPLAIN or SHOW"
    )]
    Forbidden(String),
    /// Running the query failed.
    #[error("query failed: {}", describe(.0))]
    Execution(DataFusionError),
    /// The query needs more than the server lets queries have: memory past
    /// the pool, or a turn among the queries allowed to run at once.
    #[error("{0}")]
    Overloaded(String),
    /// The query ran past the time a query may take.
    #[error("the query was stopped after {} s, the longest a query may run here; narrow it (a step range, fewer series) or ask for a longer limit", .0.as_secs_f64())]
    Timeout(std::time::Duration),
}

impl QueryError {
    /// The error a running query's stream reported, sorted by cause: memory
    /// past the pool is [`QueryError::Overloaded`], the time limit is
    /// [`QueryError::Timeout`], anything else [`QueryError::Execution`].
    pub fn from_execution(error: DataFusionError) -> QueryError {
        if let Some(limit) = timed_out(&error) {
            return QueryError::Timeout(limit);
        }
        match error.find_root() {
            // A function found its arguments wrong only when it ran: still
            // the statement's fault, not the server's.
            DataFusionError::Plan(_) => QueryError::Plan(error),
            DataFusionError::ResourcesExhausted(message) => QueryError::Overloaded(format!(
                "the query needs more memory than queries may use here ({}); narrow it, or raise the limit",
                one_line(message)
            )),
            _ => QueryError::Execution(error),
        }
    }
}

/// The time limit a stream hit, as `executor` reports it.
#[derive(Debug)]
pub(crate) struct TimedOut(pub(crate) std::time::Duration);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the query ran past its {} s limit", self.0.as_secs_f64())
    }
}

impl std::error::Error for TimedOut {}

fn timed_out(error: &DataFusionError) -> Option<std::time::Duration> {
    if let DataFusionError::External(inner) = error.find_root() {
        if let Some(TimedOut(limit)) = inner.downcast_ref::<TimedOut>() {
            return Some(*limit);
        }
    }
    let mut current: &dyn std::error::Error = error;
    loop {
        if let Some(TimedOut(limit)) = current.downcast_ref::<TimedOut>() {
            return Some(*limit);
        }
        current = current.source()?;
    }
}

/// DataFusion's multi-line message on one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prefixes DataFusion puts before a message that only repeat its kind.
const NOISE_PREFIXES: &[&str] = &[
    "Error during planning: ",
    "Schema error: ",
    "Execution error: ",
    "Optimizer rule",
];

const COERCION_FAILED: &str = "user-defined coercion failed with: ";
const NO_MATCH: &str = ". No function matches the given name";

/// One clean line for a DataFusion error: the innermost cause, without
/// DataFusion's kind prefixes or Rust debug formatting.
pub(crate) fn describe(error: &DataFusionError) -> String {
    match error.find_root() {
        DataFusionError::SQL(parser, _) => match parser.as_ref() {
            ParserError::ParserError(message) | ParserError::TokenizerError(message) => {
                format!("syntax error: {message}")
            }
            ParserError::RecursionLimitExceeded => {
                "the statement nests parentheses or subqueries too deeply; flatten it".to_string()
            }
        },
        DataFusionError::NotImplemented(message) => format!("not supported: {message}"),
        DataFusionError::ResourcesExhausted(message) => {
            format!("the query needs more resources than it may use: {message}")
        }
        root => {
            let mut text = root.to_string();
            // A function's own argument check, wrapped by DataFusion in a
            // list of candidate signatures that only says "UserDefined".
            if let Some((_, inner)) = text.split_once(COERCION_FAILED) {
                let inner = inner.split(NO_MATCH).next().unwrap_or(inner);
                text = inner.trim_end_matches('.').to_string();
            }
            for prefix in NOISE_PREFIXES {
                if let Some(rest) = text.strip_prefix(prefix) {
                    text = rest.to_string();
                }
            }
            text
        }
    }
}

/// The name in DataFusion's "Invalid function 'name'", when `error` is that
/// error.
pub(crate) fn invalid_function(error: &DataFusionError) -> Option<String> {
    let DataFusionError::Plan(message) = error.find_root() else {
        return None;
    };
    let rest = message.strip_prefix("Invalid function '")?;
    Some(rest[..rest.find('\'')?].to_string())
}

/// The name in DataFusion's "table 'catalog.schema.name' not found", when
/// `error` is that error.
pub(crate) fn missing_table(error: &DataFusionError) -> Option<String> {
    let DataFusionError::Plan(message) = error.find_root() else {
        return None;
    };
    let quoted = message
        .strip_prefix("table '")?
        .strip_suffix("' not found")?;
    Some(quoted.rsplit('.').next().unwrap_or(quoted).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_read_as_one_clean_line() {
        let error = DataFusionError::SQL(
            Box::new(ParserError::ParserError(
                "Expected: an SQL statement, found: SELEC".into(),
            )),
            None,
        );
        let text = QueryError::Plan(error).to_string();
        assert_eq!(
            text,
            "syntax error: Expected: an SQL statement, found: SELEC"
        );
    }

    #[test]
    fn planning_prefixes_are_dropped() {
        let error = DataFusionError::Plan("table 'steplake.public.nope' not found".into());
        assert_eq!(missing_table(&error).as_deref(), Some("nope"));
        assert_eq!(
            QueryError::Plan(error).to_string(),
            "table 'steplake.public.nope' not found"
        );
        let wrapped = DataFusionError::Context(
            "while planning".into(),
            Box::new(DataFusionError::Plan("no such thing".into())),
        );
        assert_eq!(describe(&wrapped), "no such thing");
    }

    #[test]
    fn a_functions_argument_error_reads_without_the_candidate_list() {
        let error = DataFusionError::Plan("Function 'first_sustained' user-defined coercion failed with: Error during planning: first_sustained: condition must be a condition such as `value > 0.9`, got a Float64 expression. No function matches the given name and argument types 'first_sustained(Int64, Float64)'. You might need to add explicit type casts.\n\tCandidate functions:\n\tfirst_sustained(UserDefined)".into());
        assert_eq!(
            describe(&error),
            "first_sustained: condition must be a condition such as `value > 0.9`, got a Float64 expression"
        );
    }
}
