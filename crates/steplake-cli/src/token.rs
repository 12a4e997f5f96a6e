//! `steplake token create|list|revoke`: the tokens of a data directory.
//!
//! Works on the data directory's token file directly, so it needs access
//! to that directory (which is what makes its user the operator), and a
//! running server sees each change at its next request. Remotely, an
//! admin token does the same through the dashboard's `/api/tokens`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use steplake_auth::{Scope, TokenRegistry};

use crate::CliError;

/// `steplake token …`.
#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token and print it (once: only its hash is kept).
    Create(CreateArgs),
    /// List the tokens: name, scope, creation time (never the tokens).
    List(DirArgs),
    /// Revoke a token by name; requests with it are refused from then on.
    Revoke(RevokeArgs),
}

/// The data directory whose tokens to manage.
#[derive(Args)]
pub(crate) struct DirArgs {
    /// The server's data directory.
    #[arg(long, env = "STEPLAKE_DATA_DIR", default_value = "./steplake-data")]
    data_dir: PathBuf,
}

/// Flags of `steplake token create`.
#[derive(Args)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// A name to list and revoke it by (letters, digits, - _ . @).
    #[arg(long)]
    name: String,
    /// What it may do: read, write:PROJECT, write:* or admin.
    #[arg(long)]
    scope: String,
}

/// Flags of `steplake token revoke`.
#[derive(Args)]
pub(crate) struct RevokeArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// The token's name.
    #[arg(long)]
    name: String,
}

fn input(e: steplake_auth::AuthError) -> CliError {
    match e {
        steplake_auth::AuthError::File { .. } => CliError::Failure(e.to_string()),
        other => CliError::Input(other.to_string()),
    }
}

/// Runs a token command.
pub(crate) fn run(command: TokenCommand) -> Result<(), CliError> {
    match command {
        TokenCommand::Create(args) => {
            let scope: Scope = args.scope.parse().map_err(input)?;
            let registry = TokenRegistry::in_data_dir(&args.dir.data_dir);
            let (token, record) = registry.create(&args.name, scope).map_err(input)?;
            eprintln!(
                "created token {:?} (scope {}); it is shown once, keep it secret:",
                record.name, record.scope
            );
            println!("{token}");
        }
        TokenCommand::List(args) => {
            let tokens = TokenRegistry::in_data_dir(&args.data_dir)
                .list()
                .map_err(input)?;
            if tokens.is_empty() {
                eprintln!(
                    "no tokens: create one with `steplake token create --name NAME --scope SCOPE`"
                );
            }
            for t in tokens {
                println!("{}\t{}\t{}", t.name, t.scope, t.created);
            }
        }
        TokenCommand::Revoke(args) => {
            let record = TokenRegistry::in_data_dir(&args.dir.data_dir)
                .revoke(&args.name)
                .map_err(input)?;
            eprintln!("revoked token {:?} (scope {})", record.name, record.scope);
        }
    }
    Ok(())
}
