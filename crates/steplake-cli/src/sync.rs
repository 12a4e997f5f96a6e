//! `steplake sync DIR`: uploads the spools the Python package left behind.
//!
//! A spool is a directory (see `python/steplake/_spool.py`) holding
//! `run.json` (the server, the writer id and how to create the run), one
//! serialized `WriteRequest` per file `SEQUENCE.req`, and `finish.json` once
//! the run was finished. Every request is sent again with its own writer id
//! and sequence number, in sequence order, so anything the server already
//! has is acknowledged as a duplicate and not applied twice. Files are
//! deleted only after every request of the spool was acknowledged.

use std::path::{Path, PathBuf};

use clap::Args;
use prost::Message;
use serde_json::Value;
use steplake_client::v1::{CreateRunRequest, WriteRequest};
use steplake_client::{Client, ClientError};
use tonic::Code;

use crate::CliError;

/// Arguments of `steplake sync`.
#[derive(Args)]
pub(crate) struct SyncArgs {
    /// A spool directory as a run printed it, or a parent of several.
    directory: PathBuf,
    /// Server URL; default: the one each run was logging to.
    #[arg(long)]
    server: Option<String>,
    #[command(flatten)]
    connect: crate::connect::ConnectArgs,
}

/// One writer's spool on disk.
struct Spool {
    directory: PathBuf,
    meta: Value,
}

impl Spool {
    fn open(directory: PathBuf) -> Result<Spool, CliError> {
        let path = directory.join("run.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CliError::Failure(format!("cannot read {}: {e}", path.display())))?;
        let meta = serde_json::from_str(&text).map_err(|e| {
            CliError::Input(format!("{} is not a spool's run.json: {e}", path.display()))
        })?;
        Ok(Spool { directory, meta })
    }

    fn text(&self, pointer: &str) -> String {
        self.meta
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    fn create_run_request(&self) -> CreateRunRequest {
        let tags = self
            .meta
            .pointer("/run/tags")
            .and_then(Value::as_array)
            .map(|tags| {
                tags.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        CreateRunRequest {
            project: self.text("/run/project"),
            name: self.text("/run/name"),
            config_json: self.text("/run/config_json"),
            tags,
            run_id: self.text("/run/run_id"),
            parent_run_id: self.text("/run/parent_run_id"),
            fork_step: self.meta.pointer("/run/fork_step").and_then(Value::as_i64),
        }
    }

    /// The request files, lowest sequence first.
    fn requests(&self) -> Result<Vec<(u64, PathBuf)>, CliError> {
        let entries = std::fs::read_dir(&self.directory).map_err(|e| {
            CliError::Failure(format!("cannot list {}: {e}", self.directory.display()))
        })?;
        let mut requests: Vec<(u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "req"))
            .filter_map(|path| {
                let sequence = path.file_stem()?.to_str()?.parse().ok()?;
                Some((sequence, path))
            })
            .collect();
        requests.sort();
        Ok(requests)
    }

    fn finished_status(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.directory.join("finish.json")).ok()?;
        let value: Value = serde_json::from_str(&text).ok()?;
        Some(
            value
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("finished")
                .to_string(),
        )
    }

    /// Deletes the delivered spool, and its run's directory once empty.
    fn remove(&self, requests: &[(u64, PathBuf)]) -> Result<(), CliError> {
        let delete = |path: &Path| match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CliError::Failure(format!(
                "cannot delete {}: {e}",
                path.display()
            ))),
            _ => Ok(()),
        };
        for (_, path) in requests {
            delete(path)?;
        }
        delete(&self.directory.join("finish.json"))?;
        delete(&self.directory.join("run.json"))?;
        let _ = std::fs::remove_dir(&self.directory);
        if let Some(run_directory) = self.directory.parent() {
            let _ = std::fs::remove_dir(run_directory);
        }
        Ok(())
    }
}

/// Every directory under `root` (root included) that holds a `run.json`.
fn find_spools(root: &Path, found: &mut Vec<PathBuf>) -> Result<(), CliError> {
    if root.join("run.json").is_file() {
        found.push(root.to_path_buf());
    }
    let entries = std::fs::read_dir(root)
        .map_err(|e| CliError::Failure(format!("cannot list {}: {e}", root.display())))?;
    for entry in entries.filter_map(Result::ok) {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            find_spools(&entry.path(), found)?;
        }
    }
    Ok(())
}

/// `host:port` (as the Python package records it) or a URL, as a URL.
fn server_url(server: &str) -> String {
    if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    }
}

/// Uploads one spool; returns (batches, duplicates).
async fn sync_one(
    spool: &Spool,
    server: Option<&str>,
    connect: &crate::connect::ConnectArgs,
) -> Result<(u64, u64), CliError> {
    let recorded = spool.text("/server");
    let server = server.unwrap_or(&recorded);
    if server.is_empty() {
        return Err(CliError::Input(format!(
            "{} names no server; pass --server",
            spool.directory.display()
        )));
    }
    let client = connect.connect(&server_url(server)).await?;
    let run = spool.create_run_request();
    client.create_run(run.clone()).await?;
    let files = spool.requests()?;
    let mut requests = Vec::with_capacity(files.len());
    for (_, path) in &files {
        let bytes = std::fs::read(path)
            .map_err(|e| CliError::Failure(format!("cannot read {}: {e}", path.display())))?;
        let request = WriteRequest::decode(bytes.as_slice()).map_err(|e| {
            CliError::Input(format!(
                "{} is not a spooled write request: {e}",
                path.display()
            ))
        })?;
        requests.push(request);
    }
    let (batches, duplicates) =
        upload(&client, &run.run_id, &spool.text("/writer_id"), requests).await?;
    if let Some(status) = spool.finished_status() {
        client.finish_run(&run.run_id, &status).await?;
    }
    spool.remove(&files)?;
    Ok((batches, duplicates))
}

/// Sends a writer's requests in sequence order until every one is
/// acknowledged. A request the server refuses for what it holds (bad data)
/// is sent again as an empty batch with its sequence number, as the write
/// protocol asks, so the requests after it are stored; any other error ends
/// the upload, and the spool stays.
async fn upload(
    client: &Client,
    run_id: &str,
    writer_id: &str,
    mut requests: Vec<WriteRequest>,
) -> Result<(u64, u64), CliError> {
    let (mut batches, mut duplicates) = (0, 0);
    let mut first = 0;
    while first < requests.len() {
        let mut writer = client.writer_with_id(run_id, writer_id, 1).await?;
        for request in &requests[first..] {
            if writer.send_recorded(request.clone()).await.is_err() {
                break; // the stream ended: `finish` says why
            }
        }
        match writer.finish().await {
            Ok(summary) => {
                batches += summary.batches;
                duplicates += summary.duplicates;
                break;
            }
            Err(ClientError::Stream {
                status,
                acked_batches,
                ..
            }) => {
                batches += acked_batches;
                let refused = first + acked_batches as usize;
                let skippable =
                    matches!(&*status, ClientError::Status(s) if s.code() == Code::InvalidArgument);
                let Some(request) = requests.get_mut(refused).filter(|_| skippable) else {
                    return Err((*status).into());
                };
                eprintln!(
                    "steplake: the server refused spooled batch {} and it is skipped: {status}",
                    request.sequence
                );
                request.scalars = Some(Default::default());
                request.tensor = None;
                first = refused;
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok((batches, duplicates))
}

/// Runs `steplake sync`.
pub(crate) async fn run(args: SyncArgs) -> Result<(), CliError> {
    if !args.directory.is_dir() {
        return Err(CliError::Input(format!(
            "{} is not a directory; pass the spool directory a run printed",
            args.directory.display()
        )));
    }
    let mut directories = Vec::new();
    find_spools(&args.directory, &mut directories)?;
    let (mut batches, mut duplicates) = (0, 0);
    for directory in &directories {
        let spool = Spool::open(directory.clone())?;
        let (sent, already) = sync_one(&spool, args.server.as_deref(), &args.connect).await?;
        batches += sent;
        duplicates += already;
    }
    println!(
        "uploaded {} of {} ({duplicates} the server already had)",
        steplake_core::counted(batches, "batch", "batches"),
        steplake_core::counted(directories.len() as u64, "run", "runs")
    );
    Ok(())
}
