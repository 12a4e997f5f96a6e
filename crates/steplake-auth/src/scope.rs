//! Scopes, the actions requests need, and which scope allows which action.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::AuthError;

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Scope {
    /// Run queries.
    Read,
    /// Write runs of one project (`Some`), or of every project (`None`, written `write:*`).
    Write(Option<String>),
    /// Everything, and manage tokens.
    Admin,
}

/// What a request is about to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Read data: any query.
    Read,
    /// Create, resume, write or finish a run of `project`.
    Write {
        /// The run's project.
        project: &'a str,
    },
    /// Create, list or revoke tokens.
    Admin,
}

impl Scope {
    /// Whether a token with this scope may do `action`.
    pub fn allows(&self, action: Action<'_>) -> bool {
        match (self, action) {
            (Scope::Admin, _) => true,
            (Scope::Read, Action::Read) => true,
            (Scope::Write(None), Action::Write { .. }) => true,
            (Scope::Write(Some(own)), Action::Write { project }) => own == project,
            _ => false,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Read => f.write_str("read"),
            Scope::Write(None) => f.write_str("write:*"),
            Scope::Write(Some(project)) => write!(f, "write:{project}"),
            Scope::Admin => f.write_str("admin"),
        }
    }
}

impl fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Read => f.write_str("read data"),
            Action::Write { project } => write!(f, "write to project {project:?}"),
            Action::Admin => f.write_str("manage tokens"),
        }
    }
}

impl FromStr for Scope {
    type Err = AuthError;

    fn from_str(text: &str) -> Result<Scope, AuthError> {
        let invalid = |why: &str| AuthError::InvalidScope {
            scope: text.to_string(),
            why: why.to_string(),
        };
        match text {
            "read" => Ok(Scope::Read),
            "admin" => Ok(Scope::Admin),
            "write:*" => Ok(Scope::Write(None)),
            _ => match text.strip_prefix("write:") {
                Some("") => Err(invalid("name the project after write:, or write:* for all")),
                Some(project) if project.chars().any(|c| c.is_control() || c.is_whitespace()) => {
                    Err(invalid(
                        "a project name has no spaces or control characters",
                    ))
                }
                Some(project) => Ok(Scope::Write(Some(project.to_string()))),
                None => Err(invalid("use read, write:PROJECT, write:* or admin")),
            },
        }
    }
}

impl TryFrom<String> for Scope {
    type Error = AuthError;

    fn try_from(text: String) -> Result<Scope, AuthError> {
        text.parse()
    }
}

impl From<Scope> for String {
    fn from(scope: Scope) -> String {
        scope.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print_the_same() {
        for text in ["read", "admin", "write:*", "write:nanogpt"] {
            assert_eq!(text.parse::<Scope>().unwrap().to_string(), text);
        }
        for bad in ["", "write", "write:", "Read", "write:a b", "root"] {
            assert!(bad.parse::<Scope>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn each_scope_allows_exactly_its_actions() {
        let p = Action::Write { project: "p" };
        let q = Action::Write { project: "q" };
        let own = Scope::Write(Some("p".into()));
        assert!(own.allows(p) && !own.allows(q) && !own.allows(Action::Read));
        assert!(!own.allows(Action::Admin));
        let all = Scope::Write(None);
        assert!(all.allows(p) && all.allows(q) && !all.allows(Action::Read));
        assert!(Scope::Read.allows(Action::Read) && !Scope::Read.allows(p));
        assert!(!Scope::Read.allows(Action::Admin));
        for action in [p, q, Action::Read, Action::Admin] {
            assert!(Scope::Admin.allows(action));
        }
    }
}
