//! `steplake delete-run RUN` and `steplake delete-project PROJECT`: delete
//! data from a data directory no server holds (it takes the directory's
//! lock). On a running server the same is `DELETE /api/runs/RUN` or
//! `DELETE /api/projects/PROJECT` with an admin token.

use std::path::PathBuf;

use clap::Args;
use steplake_store::{RunSelector, Store, StoreError, StoreOptions};

use crate::CliError;

/// Where the data to delete is.
#[derive(Args)]
pub(crate) struct StoreArgs {
    /// The data directory (the server on it must be stopped).
    #[arg(long, env = "STEPLAKE_DATA_DIR", default_value = "./steplake-data")]
    data_dir: PathBuf,
    /// The bucket prefix its files live in, when the server runs with one.
    #[arg(long, env = "STEPLAKE_OBJECT_STORE")]
    object_store: Option<String>,
}

/// Arguments of `steplake delete-run`.
#[derive(Args)]
pub(crate) struct DeleteRunArgs {
    /// The run's id.
    run: String,
    #[command(flatten)]
    store: StoreArgs,
}

/// Arguments of `steplake delete-project`.
#[derive(Args)]
pub(crate) struct DeleteProjectArgs {
    /// The project whose runs are all deleted.
    project: String,
    #[command(flatten)]
    store: StoreArgs,
}

/// Runs `steplake delete-run`.
pub(crate) fn run_delete_run(args: DeleteRunArgs) -> Result<(), CliError> {
    delete(&args.store, RunSelector::Run(args.run))
}

/// Runs `steplake delete-project`.
pub(crate) fn run_delete_project(args: DeleteProjectArgs) -> Result<(), CliError> {
    delete(&args.store, RunSelector::Project(args.project))
}

fn delete(args: &StoreArgs, selector: RunSelector) -> Result<(), CliError> {
    let holds_data = steplake_store::Manifest::exists(&args.data_dir)
        || steplake_store::wal::wal_dir(&args.data_dir).exists();
    if !holds_data {
        return Err(CliError::Input(format!(
            "{} holds no steplake data; name the data directory with --data-dir",
            args.data_dir.display()
        )));
    }
    let options = StoreOptions {
        object_store: args.object_store.clone(),
        ..StoreOptions::default()
    };
    let store = Store::open(&args.data_dir, options).map_err(|e| match e {
        StoreError::Locked { .. } => CliError::Failure(format!(
            "{e}. To delete on the running server, send DELETE /api/runs/RUN (or /api/projects/PROJECT) to its HTTP port with an admin token"
        )),
        e => CliError::Failure(e.to_string()),
    })?;
    let deleted = store.delete_runs(selector);
    let stopped = store.shutdown();
    let deleted = deleted.map_err(|e| match e {
        StoreError::NothingToDelete { .. } => CliError::Input(e.to_string()),
        e => CliError::Failure(e.to_string()),
    })?;
    stopped.map_err(|e| CliError::Failure(e.to_string()))?;
    for run in &deleted {
        println!("deleted run {run}");
    }
    Ok(())
}
