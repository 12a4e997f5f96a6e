//! The token file: `<data dir>/auth/tokens.json`.
//!
//! ```text
//! {"tokens": [
//!   {"name": "cluster", "scope": "write:nanogpt",
//!    "sha256": "9f86d08…", "created": "2026-12-02T06:00:00Z"}
//! ]}
//! ```
//!
//! A token is `slk_` and 43 characters of URL-safe base64 (32 random
//! bytes); only its SHA-256 is kept, so the file grants nothing to whoever
//! reads it. (A slow password hash is not needed: the tokens are random,
//! not chosen by people.) Every change rewrites the whole file to a
//! temporary one, fsyncs it and renames it over the old one, under an
//! exclusive lock on `auth/tokens.lock`, so two `steplake token` commands
//! never lose each other's change and a running server never reads half a
//! file. The file is readable by its owner only.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{AuthError, Scope};

/// The prefix of every token, so that secret scanners can find leaked ones.
pub const TOKEN_PREFIX: &str = "slk_";

/// Longest token name.
const MAX_NAME_LEN: usize = 64;

/// One token, as stored: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Unique name, to list and revoke it by.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// SHA-256 of the token, in hex.
    pub sha256: String,
    /// When it was created (RFC 3339, UTC).
    pub created: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    tokens: Vec<TokenRecord>,
}

/// The token file of one data directory.
#[derive(Debug, Clone)]
pub struct TokenRegistry {
    path: PathBuf,
}

/// SHA-256 of `token`, in hex.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl TokenRegistry {
    /// The registry of the data directory `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> TokenRegistry {
        TokenRegistry {
            path: data_dir.join("auth").join("tokens.json"),
        }
    }

    /// The token file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, reason: impl std::fmt::Display) -> AuthError {
        AuthError::File {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// Every token, in the order created (none when the file does not exist).
    pub fn list(&self) -> Result<Vec<TokenRecord>, AuthError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error(e)),
        };
        let file: TokenFile = serde_json::from_str(&text).map_err(|e| {
            self.error(format!(
                "is not a token file ({e}); restore it or delete it and create the tokens again"
            ))
        })?;
        Ok(file.tokens)
    }

    /// Creates a token named `name` with `scope`; returns the token (shown
    /// once, never stored) and its record.
    pub fn create(&self, name: &str, scope: Scope) -> Result<(String, TokenRecord), AuthError> {
        check_name(name)?;
        let token = new_token().map_err(|e| self.error(e))?;
        let record = TokenRecord {
            name: name.to_string(),
            scope,
            sha256: token_hash(&token),
            created: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        };
        self.change(|tokens| {
            if tokens.iter().any(|t| t.name == name) {
                return Err(AuthError::InvalidName {
                    name: name.to_string(),
                    why: "a token of that name exists; revoke it first, or pick another name"
                        .into(),
                });
            }
            tokens.push(record.clone());
            Ok(())
        })?;
        Ok((token, record))
    }

    /// Revokes the token named `name`; returns its record.
    pub fn revoke(&self, name: &str) -> Result<TokenRecord, AuthError> {
        let mut revoked = None;
        self.change(|tokens| {
            let at = tokens.iter().position(|t| t.name == name).ok_or_else(|| {
                AuthError::NoSuchToken {
                    name: name.to_string(),
                }
            })?;
            revoked = Some(tokens.remove(at));
            Ok(())
        })?;
        revoked.ok_or_else(|| AuthError::NoSuchToken {
            name: name.to_string(),
        })
    }

    /// Reads, changes and atomically rewrites the file, under its lock.
    fn change(
        &self,
        edit: impl FnOnce(&mut Vec<TokenRecord>) -> Result<(), AuthError>,
    ) -> Result<(), AuthError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)
            .map_err(|e| self.error(format!("cannot create {}: {e}", dir.display())))?;
        let lock = File::create(dir.join("tokens.lock")).map_err(|e| self.error(e))?;
        lock.lock()
            .map_err(|e| self.error(format!("cannot lock: {e}")))?;
        let mut tokens = self.list()?;
        edit(&mut tokens)?;
        let text =
            serde_json::to_string_pretty(&TokenFile { tokens }).map_err(|e| self.error(e))?;
        let temporary = dir.join("tokens.json.tmp");
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary).map_err(|e| self.error(e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| self.error(e))?;
        fs::rename(&temporary, &self.path).map_err(|e| self.error(e))?;
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), AuthError> {
    let invalid = |why: &str| AuthError::InvalidName {
        name: name.to_string(),
        why: why.to_string(),
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(invalid("use 1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return Err(invalid("use letters, digits and - _ . @"));
    }
    Ok(())
}

fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random numbers from the OS: {e}"))?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_keeps_hashes_and_changes_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let registry = TokenRegistry::in_data_dir(dir.path());
        assert!(registry.list().unwrap().is_empty());
        let (token, record) = registry.create("ci", Scope::Write(None)).unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == 47);
        assert_eq!(record.sha256, token_hash(&token));
        let text = fs::read_to_string(registry.path()).unwrap();
        assert!(!text.contains(&token), "the token itself was stored");
        assert!(
            registry.create("ci", Scope::Read).is_err(),
            "a name is unique"
        );
        assert!(registry.create("a b", Scope::Read).is_err());
        registry.create("notebook", Scope::Read).unwrap();
        assert_eq!(registry.revoke("ci").unwrap().name, "ci");
        let names: Vec<_> = registry
            .list()
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["notebook"]);
        assert!(matches!(
            registry.revoke("ci"),
            Err(AuthError::NoSuchToken { .. })
        ));
    }
}
