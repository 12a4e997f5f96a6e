//! The server's decision for each request.
//!
//! Tokens are required unless the server is open, which it is only when
//! - it was started `insecure` (the operator chose so, and was warned), or
//! - it listens on loopback addresses only and no token exists yet: one
//!   person's machine, as before tokens existed.
//!
//! So creating the first token closes a loopback server too, and a server
//! on any other address with no tokens admits nobody (it refuses to start
//! that way; revoking the last token later has the same effect).
//!
//! The token file is looked at (one `stat`) on every check and read again
//! when it changed, so `steplake token create` and `revoke` take effect on
//! a running server at once, on open write streams too, which check at
//! every batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::credentials::token_from_header;
use crate::registry::token_hash;
use crate::{Action, AuthError, Scope, TokenRegistry};

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Nobody in particular: the server is open.
    Open,
    /// The holder of a token.
    Token {
        /// The token's name.
        name: String,
        /// Its scope.
        scope: Scope,
        /// SHA-256 of the token (to notice that it was revoked).
        sha256: String,
    },
}

/// Access control for one server.
#[derive(Debug, Clone)]
pub struct Access {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: TokenRegistry,
    /// Listens on some address other than loopback.
    exposed: bool,
    /// Open to everyone, by the operator's choice.
    insecure: bool,
    tokens: Mutex<Loaded>,
}

/// The token file as last read.
#[derive(Debug, Default)]
struct Loaded {
    /// What identifies the file's version; `None` when it did not exist.
    stamp: Option<FileStamp>,
    /// Tokens by hash.
    by_hash: HashMap<String, (String, Scope)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

impl Access {
    /// Access control over `registry`'s tokens, for a server that listens
    /// on a non-loopback address (`exposed`) or not, and that is open to
    /// everyone (`insecure`) or not.
    pub fn new(
        registry: TokenRegistry,
        exposed: bool,
        insecure: bool,
    ) -> Result<Access, AuthError> {
        let access = Access {
            inner: Arc::new(Inner {
                registry,
                exposed,
                insecure,
                tokens: Mutex::new(Loaded::default()),
            }),
        };
        drop(access.current()?);
        Ok(access)
    }

    /// The token file this server checks against.
    pub fn registry(&self) -> &TokenRegistry {
        &self.inner.registry
    }

    /// Whether requests need a token now.
    pub fn required(&self) -> Result<bool, AuthError> {
        let loaded = self.current()?;
        Ok(self.required_with(&loaded))
    }

    /// How many tokens exist.
    pub fn token_count(&self) -> Result<usize, AuthError> {
        Ok(self.current()?.by_hash.len())
    }

    /// Who sent a request with this `authorization` header value; refused
    /// when a token is required and missing or unknown.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let loaded = self.current()?;
        self.authenticate_with(&loaded, authorization)
    }

    /// Whether `principal` may do `action` now (its token may have been
    /// revoked since it was authenticated).
    pub fn authorize(&self, principal: &Principal, action: Action<'_>) -> Result<(), AuthError> {
        let loaded = self.current()?;
        self.authorize_with(&loaded, principal, action)
    }

    /// [`Access::authenticate`], then [`Access::authorize`], against one
    /// reading of the token file.
    pub fn check(
        &self,
        authorization: Option<&str>,
        action: Action<'_>,
    ) -> Result<Principal, AuthError> {
        let loaded = self.current()?;
        let principal = self.authenticate_with(&loaded, authorization)?;
        self.authorize_with(&loaded, &principal, action)?;
        Ok(principal)
    }

    fn required_with(&self, loaded: &Loaded) -> bool {
        !self.inner.insecure && (self.inner.exposed || !loaded.by_hash.is_empty())
    }

    fn authenticate_with(
        &self,
        loaded: &Loaded,
        authorization: Option<&str>,
    ) -> Result<Principal, AuthError> {
        if !self.required_with(loaded) {
            return Ok(Principal::Open);
        }
        let token = token_from_header(authorization)?.ok_or(AuthError::Missing)?;
        let sha256 = token_hash(&token);
        let (name, scope) = loaded.by_hash.get(&sha256).ok_or(AuthError::Unknown)?;
        Ok(Principal::Token {
            name: name.clone(),
            scope: scope.clone(),
            sha256,
        })
    }

    fn authorize_with(
        &self,
        loaded: &Loaded,
        principal: &Principal,
        action: Action<'_>,
    ) -> Result<(), AuthError> {
        let Principal::Token { sha256, .. } = principal else {
            return if self.required_with(loaded) {
                Err(AuthError::Missing)
            } else {
                Ok(())
            };
        };
        let (name, scope) = loaded.by_hash.get(sha256).ok_or(AuthError::Unknown)?;
        if scope.allows(action) {
            Ok(())
        } else {
            Err(AuthError::Denied {
                name: name.clone(),
                scope: scope.to_string(),
                action: action.to_string(),
            })
        }
    }

    /// The tokens as the file holds them now: one `stat`, and a new read
    /// when the file changed. On a failed read the old tokens are dropped,
    /// so nobody gets in until the file is readable again.
    fn current(&self) -> Result<MutexGuard<'_, Loaded>, AuthError> {
        let path = self.inner.registry.path();
        let stamp = match std::fs::metadata(path) {
            Ok(meta) => Some(FileStamp {
                modified: meta.modified().ok(),
                len: meta.len(),
                #[cfg(unix)]
                inode: std::os::unix::fs::MetadataExt::ino(&meta),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(AuthError::File {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })
            }
        };
        let mut loaded = self
            .inner
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if loaded.stamp != stamp {
            loaded.by_hash.clear();
            loaded.stamp = None;
            loaded.by_hash = self
                .inner
                .registry
                .list()?
                .into_iter()
                .map(|r| (r.sha256, (r.name, r.scope)))
                .collect();
            loaded.stamp = stamp;
        }
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    #[test]
    fn a_loopback_server_is_open_until_the_first_token() {
        let dir = tempfile::tempdir().unwrap();
        let registry = TokenRegistry::in_data_dir(dir.path());
        let access = Access::new(registry.clone(), false, false).unwrap();
        assert_eq!(access.check(None, Action::Read).unwrap(), Principal::Open);
        let (token, _) = registry.create("reader", Scope::Read).unwrap();
        assert!(matches!(
            access.check(None, Action::Read),
            Err(AuthError::Missing)
        ));
        access.check(Some(&bearer(&token)), Action::Read).unwrap();
        let refused = access.check(Some(&bearer(&token)), Action::Write { project: "p" });
        assert!(
            matches!(refused, Err(AuthError::Denied { .. })),
            "{refused:?}"
        );
        let principal = access.authenticate(Some(&bearer(&token))).unwrap();
        registry.revoke("reader").unwrap();
        assert!(matches!(
            access.authorize(&principal, Action::Read),
            Err(AuthError::Missing | AuthError::Unknown)
        ));
    }

    #[test]
    fn an_exposed_server_needs_a_token_unless_insecure() {
        let dir = tempfile::tempdir().unwrap();
        let registry = TokenRegistry::in_data_dir(dir.path());
        let exposed = Access::new(registry.clone(), true, false).unwrap();
        assert!(matches!(
            exposed.check(None, Action::Read),
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            exposed.check(Some("Bearer slk_guess"), Action::Read),
            Err(AuthError::Unknown)
        ));
        let insecure = Access::new(registry, true, true).unwrap();
        insecure.check(None, Action::Admin).unwrap();
    }
}
