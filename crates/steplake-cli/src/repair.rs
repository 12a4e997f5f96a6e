//! `steplake repair --data-dir DIR`: rebuilds a lost manifest (`manifest/`) from
//! the data files' own Parquet metadata; the write-ahead log past them is
//! replayed at the next start as usual. Run it with the server stopped.

use std::path::PathBuf;

use clap::Args;
use steplake_store::repair_manifest;

use crate::CliError;

/// Arguments of `steplake repair`.
#[derive(Args)]
pub(crate) struct RepairArgs {
    /// The data directory whose manifest was lost.
    #[arg(long)]
    data_dir: PathBuf,
}

/// Runs `steplake repair`.
pub(crate) fn run(args: RepairArgs) -> Result<(), CliError> {
    let report = repair_manifest(&args.data_dir).map_err(|e| CliError::Failure(e.to_string()))?;
    if let Some(moved) = &report.damaged_manifest {
        println!(
            "the manifest did not load; it is kept as {}",
            moved.display()
        );
    }
    for (path, reason) in &report.skipped {
        println!("left out {}: {reason}", path.display());
    }
    for run in &report.runs_without_metadata {
        println!("run {run:?}: its rows are back, but no file recorded its name or configuration");
    }
    if report.lost_partial_tensors > 0 {
        println!(
            "{} still being received could not be restored; their writers must send them again",
            steplake_core::counted(report.lost_partial_tensors as u64, "tensor", "tensors")
        );
    }
    println!(
        "rebuilt {} from {} ({}, {}); the write-ahead log past LSN {} is replayed at the next start",
        args.data_dir.join("manifest").display(),
        steplake_core::counted(report.files.len() as u64, "data file", "data files"),
        steplake_core::counted(report.runs as u64, "run", "runs"),
        steplake_core::counted(report.writers as u64, "writer", "writers"),
        report.covered_lsn
    );
    Ok(())
}
