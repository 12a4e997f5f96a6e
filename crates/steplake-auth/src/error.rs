//! Why a request is not allowed, or the token file cannot be used.

use std::path::PathBuf;

/// An access-control failure.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The request carries no token, and this server requires one.
    #[error("this server requires a token: send `authorization: Bearer <token>` (the Python package and the CLI read STEPLAKE_TOKEN)")]
    Missing,
    /// The `authorization` header is not `Bearer …` or `Basic …`.
    #[error("the authorization header is not `Bearer <token>` or `Basic <base64 of user:token>`")]
    Malformed,
    /// No token with this value exists (never created, or revoked).
    #[error("the token is not valid: it was revoked or never created; ask the server's operator for a token")]
    Unknown,
    /// The token is valid, but its scope does not allow the action.
    #[error("token {name:?} (scope {scope}) may not {action}")]
    Denied {
        /// The token's name.
        name: String,
        /// Its scope.
        scope: String,
        /// What was refused.
        action: String,
    },
    /// A scope that does not parse.
    #[error("invalid scope {scope:?}: {why}")]
    InvalidScope {
        /// The text given.
        scope: String,
        /// What is wrong.
        why: String,
    },
    /// A token name that is empty, too long or already taken.
    #[error("invalid token name {name:?}: {why}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// No token of that name exists (to revoke).
    #[error("no token is named {name:?}; `steplake token list` shows them")]
    NoSuchToken {
        /// The name given.
        name: String,
    },
    /// The token file could not be read or written.
    #[error("token file {}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

impl AuthError {
    /// Whether the caller is unknown (UNAUTHENTICATED, 401) rather than
    /// known and not allowed (PERMISSION_DENIED, 403) or a server fault.
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            AuthError::Missing | AuthError::Malformed | AuthError::Unknown
        )
    }
}
