//! The `steplake` command: `serve`, `write`, `sql`, `import`, `sync`,
//! `check`, `repair`, `delete-run`, `delete-project`, `token`, `ui`,
//! `scheduler`, `executor`.
//!
//! Exit codes: 0 success; 1 failure (server unreachable, I/O, internal);
//! 2 bad input (malformed file line, SQL error, statement not allowed, bad flag).

mod check;
mod cluster;
mod connect;
mod delete;
mod import;
mod output;
mod points;
mod repair;
mod serve;
mod sql;
mod sync;
mod token;
mod ui;
mod write;

use std::process::ExitCode;

#[cfg(test)]
#[global_allocator]
static ALLOCATOR: steplake_fuzz::CappedAllocator = steplake_fuzz::CappedAllocator;

/// mimalloc keeps freed memory for reuse, where glibc returns every large
/// buffer a query frees to the system and faults it in again for the next
/// (a quarter of a window query's time went to clearing fresh pages).
#[cfg(not(test))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

/// steplake: a columnar database for training telemetry.
#[derive(Parser)]
#[command(name = "steplake", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: gRPC ingest and Flight SQL on one port.
    Serve(Box<serve::ServeArgs>),
    /// Write scalar points from a CSV or JSONL file (or stdin) into a run.
    Write(write::WriteArgs),
    /// Run a read-only SQL query against a server or a data directory.
    Sql(sql::SqlArgs),
    /// Import checkpoints (safetensors) or another tracker's history (TensorBoard).
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Upload what Python runs spooled to disk while the server was unreachable.
    Sync(sync::SyncArgs),
    /// Check every file of a data directory for damage, changing nothing.
    Check(check::CheckArgs),
    /// Rebuild a lost manifest of a data directory from its files: repair.
    Repair(repair::RepairArgs),
    /// Delete a run with all its data (the server must be stopped).
    DeleteRun(delete::DeleteRunArgs),
    /// Delete every run of a project with all its data (the server must be stopped).
    DeleteProject(delete::DeleteProjectArgs),
    /// Create, list or revoke the access tokens of a data directory: token.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Open the dashboard of the local data directory (the one
    /// `steplake.init()` uses with no server) in the browser.
    Ui(ui::UiArgs),
    /// Run a Ballista scheduler for SQL over a bucket on a cluster.
    Scheduler(cluster::SchedulerArgs),
    /// Run a Ballista executor of a `steplake scheduler`'s cluster.
    Executor(cluster::ExecutorArgs),
}

/// A failure that ends the command, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The user's input was wrong (exit 2).
    #[error("{0}")]
    Input(String),
    /// Something else failed (exit 1).
    #[error("{0}")]
    Failure(String),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Input(_) => 2,
            CliError::Failure(_) => 1,
        }
    }
}

impl From<steplake_client::ClientError> for CliError {
    fn from(e: steplake_client::ClientError) -> Self {
        use tonic_codes::is_input_error;
        if e.code().is_some_and(is_input_error) {
            CliError::Input(e.to_string())
        } else {
            CliError::Failure(e.to_string())
        }
    }
}

mod tonic_codes {
    /// Codes that mean "the request was wrong" rather than "the system failed".
    pub(crate) fn is_input_error(code: tonic::Code) -> bool {
        matches!(
            code,
            tonic::Code::InvalidArgument
                | tonic::Code::NotFound
                | tonic::Code::PermissionDenied
                | tonic::Code::Unauthenticated
                | tonic::Code::OutOfRange
                | tonic::Code::ResourceExhausted
        )
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Ui(args) => ui::run(args).await,
            Command::Write(args) => write::run(args).await,
            Command::Sql(args) => sql::run(args).await,
            Command::Scheduler(args) => cluster::run_scheduler(args).await,
            Command::Executor(args) => cluster::run_executor(args).await,
            Command::Import(command) => import::run(command).await,
            Command::Sync(args) => sync::run(args).await,
            Command::Check(args) => check::run(args),
            Command::Repair(args) => repair::run(args),
            Command::DeleteRun(args) => delete::run_delete_run(args),
            Command::DeleteProject(args) => delete::run_delete_project(args),
            Command::Token(command) => token::run(command),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STEPLAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_help_summary_names_every_command() {
        let command = super::Cli::command();
        let about = command
            .get_about()
            .map(|a| a.to_string())
            .unwrap_or_default();
        for sub in command.get_subcommands() {
            let name = sub.get_name();
            if name != "help" {
                assert!(about.contains(name), "{about:?} does not name {name:?}");
            }
        }
    }
}
