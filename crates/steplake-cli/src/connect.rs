//! How client commands reach a server: its URL, a token and the CA to
//! trust (flags shared by `write`, `sql`, `import` and `sync`).

use std::path::PathBuf;

use clap::Args;
use steplake_client::{Client, ConnectOptions};

use crate::CliError;

/// Token and TLS flags of every command that talks to a server.
#[derive(Args, Clone)]
pub(crate) struct ConnectArgs {
    /// Token to send (`steplake token create` makes one); needed by servers
    /// that require tokens.
    #[arg(long, env = "STEPLAKE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM certificate of the CA that signed the server's certificate, for
    /// https:// URLs (default: the public web CAs).
    #[arg(long, env = "STEPLAKE_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

impl ConnectArgs {
    /// Connects to `url` with these flags.
    pub(crate) async fn connect(&self, url: &str) -> Result<Client, CliError> {
        let ca_cert_pem = match &self.ca_cert {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| CliError::Input(format!("--ca-cert {}: {e}", path.display())))?,
            ),
            None => None,
        };
        let options = ConnectOptions {
            token: self.token.clone().filter(|t| !t.trim().is_empty()),
            ca_cert_pem,
        };
        Ok(Client::connect_with(url, &options).await?)
    }
}
