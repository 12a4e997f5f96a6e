//! steplake-auth: who may do what on a steplake server.
//!
//! A server shared by a lab is reached by trainers (which write), analysts
//! (which read) and the operator (who manages access). Each holds a
//! **token** with one [`Scope`]:
//!
//! | scope           | may                                              |
//! |-----------------|--------------------------------------------------|
//! | `read`          | query (Flight SQL, the dashboard and its API)    |
//! | `write:PROJECT` | create, resume, write and finish runs of PROJECT |
//! | `write:*`       | the same for every project                       |
//! | `admin`         | all of the above, and manage tokens              |
//!
//! Write scopes do not read: a trainer's token leaked from a cluster job
//! cannot read the lab's data.
//!
//! The stages, one per file:
//! - [`scope`]: scopes, the [`Action`]s a request needs, and the rule
//!   between them;
//! - [`registry`]: the token file in the data directory,
//!   `auth/tokens.json`, which holds each token's name, scope and SHA-256
//!   hash, never the token itself; `steplake token create` writes it while a
//!   server runs, and the server sees the change at its next request;
//! - [`credentials`]: reading a token out of an `authorization` header
//!   (`Bearer …`, or `Basic …` with the token as password, as JDBC and ADBC
//!   drivers send in the Flight SQL handshake);
//! - [`access`]: [`Access`], the server's decision for each request: open
//!   (loopback and no tokens yet, or `insecure` by choice) or which token
//!   it carries and whether its scope allows the action.
//!
//! Errors are [`AuthError`]; the network crates map them to UNAUTHENTICATED
//! / 401 and PERMISSION_DENIED / 403.

pub mod access;
pub mod credentials;
mod error;
pub mod registry;
pub mod scope;

pub use access::{Access, Principal};
pub use error::AuthError;
pub use registry::{TokenRecord, TokenRegistry};
pub use scope::{Action, Scope};
