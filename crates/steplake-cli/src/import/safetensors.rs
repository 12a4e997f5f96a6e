//! `steplake import safetensors`: load every tensor of a checkpoint at a step.
//!
//! Each FILE (one checkpoint, possibly sharded) is read tensor by tensor, at
//! its offsets, never whole: a multi-GB checkpoint needs memory for one
//! tensor at a time. Tensors go through the normal write stream (chunked,
//! acknowledged, idempotent), so importing the same files at several steps
//! makes a trajectory SQL can walk with `LAG`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use clap::Args;
use steplake_client::DEFAULT_SERVER;
use steplake_core::safetensors::{parse_header, SafetensorsEntry, MAX_HEADER_LEN};

use super::upload::progress_bar;
use crate::CliError;

/// Flags of `steplake import safetensors`.
#[derive(Args)]
pub(crate) struct SafetensorsArgs {
    /// Server URL: http://HOST:PORT, or https:// with TLS.
    #[arg(long, env = "STEPLAKE_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    #[command(flatten)]
    connect: crate::connect::ConnectArgs,
    /// Run id to import into; created when it does not exist.
    #[arg(long)]
    run: String,
    /// Project of a newly created run.
    #[arg(long, default_value = "default")]
    project: String,
    /// Training step the checkpoint was saved at.
    #[arg(long)]
    step: i64,
    /// Prefix put before every tensor name (e.g. `model.`).
    #[arg(long, default_value = "")]
    prefix: String,
    /// Checkpoint files (shards of one checkpoint).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// The tensors of one file, checked before anything is sent.
fn read_entries(path: &Path) -> Result<(File, Vec<SafetensorsEntry>), CliError> {
    let cannot =
        |e: std::io::Error| CliError::Input(format!("cannot read {}: {e}", path.display()));
    let mut file = File::open(path).map_err(cannot)?;
    let file_len = file.metadata().map_err(cannot)?.len();
    let mut length = [0u8; 8];
    let mut prefix = Vec::new();
    if file.read_exact(&mut length).is_ok() {
        let header_len = u64::from_le_bytes(length).min(MAX_HEADER_LEN).min(file_len);
        prefix.extend_from_slice(&length);
        let mut header = vec![0u8; header_len as usize];
        let got = file.read(&mut header).map_err(cannot)?;
        header.truncate(got);
        prefix.extend_from_slice(&header);
    }
    let entries = parse_header(&prefix, file_len)
        .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
    Ok((file, entries))
}

/// Runs `steplake import safetensors`.
pub(crate) async fn run(args: SafetensorsArgs) -> Result<(), CliError> {
    if args.step < 0 {
        return Err(CliError::Input(format!("--step {} is negative", args.step)));
    }
    // Check every file first: a malformed shard, or a tensor name the
    // server would refuse, stops the import before any tensor is sent.
    let mut files = Vec::new();
    for path in &args.files {
        let (file, entries) = read_entries(path)?;
        for entry in &entries {
            let name = format!("{}{}", args.prefix, entry.name);
            let field = format!("{}: tensor {name:?}", path.display());
            steplake_core::validate_series_name(&field, &name)
                .map_err(|e| CliError::Input(e.to_string()))?;
        }
        files.push((path.clone(), file, entries));
    }
    let total: u64 = files
        .iter()
        .flat_map(|(_, _, entries)| entries.iter().map(|e| e.range.len() as u64))
        .sum();
    let client = args.connect.connect(&args.server).await?;
    client.ensure_run(&args.run, &args.project).await?;
    let progress = progress_bar(
        total,
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    );
    progress.set_message(format!("step {}", args.step));
    let mut writer = client.writer(&args.run).await?;
    let mut tensors = 0usize;
    let mut failure = None;
    'files: for (path, mut file, entries) in files {
        for entry in entries {
            let mut data = vec![0u8; entry.range.len()];
            let read = file
                .seek(SeekFrom::Start(entry.range.start as u64))
                .and_then(|_| file.read_exact(&mut data));
            if let Err(e) = read {
                failure = Some(CliError::Input(format!(
                    "{}: tensor {:?} cannot be read ({e}); the file is truncated or damaged",
                    path.display(),
                    entry.name
                )));
                break 'files;
            }
            let shape: Vec<i64> = entry.shape.iter().map(|&d| d as i64).collect();
            let name = format!("{}{}", args.prefix, entry.name);
            if writer
                .send_tensor(&name, args.step, entry.dtype.name(), &shape, &data)
                .await
                .is_err()
            {
                // The stream ended; finish() below says why.
                break 'files;
            }
            tensors += 1;
            progress.inc(data.len() as u64);
        }
    }
    let summary = writer.finish().await;
    progress.finish_and_clear();
    let summary = summary?;
    if let Some(e) = failure {
        return Err(e);
    }
    eprintln!(
        "imported {tensors} tensors ({:.1} MB, {} acknowledged messages) into run {} at step {}",
        total as f64 / 1e6,
        summary.batches,
        args.run,
        args.step
    );
    Ok(())
}
