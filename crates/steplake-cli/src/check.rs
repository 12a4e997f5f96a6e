//! `steplake check --data-dir DIR`: verifies every file of a data directory
//! (sizes, checksums, every Parquet page, the write-ahead log) and reports
//! what it found. It changes nothing and can run beside a server.

use std::path::PathBuf;

use clap::Args;
use steplake_store::check_data_dir;

use crate::CliError;

/// Arguments of `steplake check`.
#[derive(Args)]
pub(crate) struct CheckArgs {
    /// The data directory to check.
    #[arg(long)]
    data_dir: PathBuf,
}

/// Runs `steplake check`; exits 1 when a file is damaged.
pub(crate) fn run(args: CheckArgs) -> Result<(), CliError> {
    let report = check_data_dir(&args.data_dir).map_err(|e| CliError::Failure(e.to_string()))?;
    for file in &report.files {
        match &file.damage {
            None => println!("ok       {} ({})", file.path.display(), file.what),
            Some(damage) => println!("DAMAGED  {} ({}): {damage}", file.path.display(), file.what),
        }
    }
    for note in &report.notes {
        println!("note     {note}");
    }
    let damaged = report.damaged().count();
    let checked = steplake_core::counted(report.files.len() as u64, "file", "files");
    if damaged == 0 {
        println!("checked {checked}: all intact");
        return Ok(());
    }
    Err(CliError::Failure(format!(
        "checked {checked}: {damaged} damaged. Queries that read a damaged file fail with its name; restore it from a backup"
    )))
}
