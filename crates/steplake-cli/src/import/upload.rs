//! What every history importer shares: points and tensors of one source
//! file sent through one write stream whose writer id is derived from the
//! source, and the tally printed at the end.
//!
//! Idempotence: a source file's writer id is a hash of the run it goes to,
//! the file's name and its length, and its batches are numbered 1, 2, …
//! in the order the file is read, in batches of a fixed number of points.
//! Importing the same file again sends the same batches under the same
//! writer id and sequences, which the server acknowledges as duplicates
//! without storing them again. A file that grew since (a run still
//! training) gets a new writer id; its points are sent again, and the
//! `scalars` table still shows each (run, series, step) once, the latest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use steplake_client::{v1, BatchBuilder, Client, ScalarWriter, WriteSummary, DEFAULT_SERVER};

use crate::CliError;

/// Points per write request.
const BATCH_POINTS: usize = 20_000;

/// Where a history importer sends what it reads: the flags every one of
/// them takes.
#[derive(Args)]
pub(crate) struct Destination {
    /// Server URL: http://HOST:PORT, or https:// with TLS.
    #[arg(long, env = "STEPLAKE_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    #[command(flatten)]
    connect: crate::connect::ConnectArgs,
    /// Read and check everything, print what would be imported, send
    /// nothing (no server needed).
    #[arg(long)]
    pub(crate) dry_run: bool,
}

impl Destination {
    /// A client of the server; None for a dry run.
    pub(crate) async fn client(&self) -> Result<Option<Client>, CliError> {
        if self.dry_run {
            return Ok(None);
        }
        Ok(Some(self.connect.connect(&self.server).await?))
    }
}

/// A progress bar of `len` units drawn with `template`, in the importers'
/// style.
pub(crate) fn progress_bar(len: u64, template: &str) -> ProgressBar {
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    )
}

/// A stable 64-bit FNV-1a hash (the same in every build, unlike std's).
pub(crate) fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in part.iter().chain(&[0xffu8]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// The writer id of source file `file_name` of length `len` imported into
/// `run_id` by importer `kind`.
pub(crate) fn source_writer_id(kind: &str, run_id: &str, file_name: &str, len: u64) -> String {
    let hash = stable_hash(&[
        kind.as_bytes(),
        run_id.as_bytes(),
        file_name.as_bytes(),
        &len.to_le_bytes(),
    ]);
    format!("import-{kind}-{hash:016x}")
}

/// The writer id of a run whose data is spread over the files `parts`
/// (named `label` together): their total length stands for their content.
pub(crate) fn parts_writer_id(kind: &str, run_id: &str, label: &str, parts: &[PathBuf]) -> String {
    let bytes: u64 = parts
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    source_writer_id(kind, run_id, label, bytes)
}

/// `name` as a run id: other characters than letters, digits, `-`, `_` and
/// `.` become `-`; a name over 128 bytes is cut and given a hash suffix.
pub(crate) fn run_id_of(name: &str) -> String {
    let id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let id = id.trim_matches('-').to_string();
    let id = if id.is_empty() { "run".to_string() } else { id };
    if id.len() <= 128 {
        return id;
    }
    let hash = stable_hash(&[name.as_bytes()]);
    format!("{}-{hash:016x}", &id[..111])
}

/// Every file under `dir`, recursively, sorted; symbolic links to
/// directories are not followed (no cycles). A missing directory has none.
pub(crate) fn files_under(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let cannot = |path: &Path, e: std::io::Error| {
        CliError::Input(format!("cannot read {}: {e}", path.display()))
    };
    let mut files = Vec::new();
    if !dir.is_dir() {
        return Ok(files);
    }
    let mut pending = vec![dir.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory).map_err(|e| cannot(&directory, e))? {
            let entry = entry.map_err(|e| cannot(&directory, e))?;
            let path = entry.path();
            if entry.file_type().map_err(|e| cannot(&path, e))?.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Where one source file's data goes: a write stream, or nowhere (a dry
/// run counts only).
pub(crate) struct Upload {
    writer: Option<ScalarWriter>,
    batch: BatchBuilder,
    /// Points and tensors read from the source.
    pub(crate) points: u64,
    pub(crate) tensors: u64,
}

impl Upload {
    /// A stream of `source`'s data into `run_id`, or a count only when
    /// `client` is None.
    pub(crate) async fn open(
        client: Option<&Client>,
        run_id: &str,
        writer_id: &str,
    ) -> Result<Upload, CliError> {
        let writer = match client {
            Some(client) => Some(client.writer_with_id(run_id, writer_id, 1).await?),
            None => None,
        };
        Ok(Upload {
            writer,
            batch: BatchBuilder::default(),
            points: 0,
            tensors: 0,
        })
    }

    /// Adds a point.
    pub(crate) async fn point(
        &mut self,
        name: &str,
        step: i64,
        value: f64,
        wall_time_us: i64,
    ) -> Result<(), CliError> {
        self.points += 1;
        if self.writer.is_none() {
            return Ok(());
        }
        self.batch.push(name, step, value, Some(wall_time_us));
        if self.batch.len() >= BATCH_POINTS {
            self.send_points().await?;
        }
        Ok(())
    }

    /// Adds a tensor message (sent after the points before it).
    pub(crate) async fn tensor(&mut self, tensor: v1::Tensor) -> Result<(), CliError> {
        self.tensors += 1;
        if self.writer.is_none() {
            return Ok(());
        }
        self.send_points().await?;
        if let Some(writer) = self.writer.as_mut() {
            // A closed stream says why in `finish`.
            let _ = writer.send_tensor_message(tensor).await;
        }
        Ok(())
    }

    async fn send_points(&mut self) -> Result<(), CliError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = self.batch.take();
        if let Some(writer) = self.writer.as_mut() {
            // A closed stream says why in `finish`.
            let _ = writer.send(batch).await;
        }
        Ok(())
    }

    /// Sends what is left and waits for every acknowledgement.
    pub(crate) async fn finish(mut self) -> Result<Option<WriteSummary>, CliError> {
        self.send_points().await?;
        match self.writer {
            Some(writer) => Ok(Some(writer.finish().await?)),
            None => Ok(None),
        }
    }
}

impl Upload {
    /// [`Upload::finish`], with what it read and sent added to `tally`.
    pub(crate) async fn finish_into(self, tally: &mut Tally) -> Result<(), CliError> {
        let (points, tensors) = (self.points, self.tensors);
        let sent = self.finish().await?;
        tally.add(points, tensors, sent.as_ref());
        Ok(())
    }
}

/// A run's configuration as `CreateRunRequest::config_json`: empty for
/// none.
pub(crate) fn config_json(config: &serde_json::Map<String, serde_json::Value>) -> String {
    if config.is_empty() {
        String::new()
    } else {
        serde_json::Value::Object(config.clone()).to_string()
    }
}

/// The error that stopped importing run `run`, after printing what the
/// import had done by then.
pub(crate) fn run_failed(run: &str, error: CliError, tally: &Tally, dry_run: bool) -> CliError {
    eprintln!("{}", tally.report(dry_run, 0.0));
    match error {
        CliError::Input(m) => CliError::Input(format!("run {run}: {m}")),
        CliError::Failure(m) => CliError::Failure(format!(
            "run {run}: {m}; the runs before it were imported completely, and importing again sends only what is missing"
        )),
    }
}

/// What an import did, printed at its end.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) runs: u64,
    pub(crate) points: u64,
    pub(crate) tensors: u64,
    /// Requests acknowledged, for the ratio of duplicates.
    pub(crate) requests: u64,
    pub(crate) duplicate_requests: u64,
    /// Runs whose configuration came from the source.
    pub(crate) configs: u64,
    /// What was left out, by reason, with counts.
    pub(crate) skipped: BTreeMap<String, u64>,
    /// Damage, one line each (file and offset).
    pub(crate) damaged: Vec<String>,
}

impl Tally {
    /// Counts one thing left out for `reason`.
    pub(crate) fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_string()).or_default() += 1;
    }

    /// Adds what one source's upload did.
    pub(crate) fn add(&mut self, upload_points: u64, tensors: u64, sent: Option<&WriteSummary>) {
        self.points += upload_points;
        self.tensors += tensors;
        if let Some(sent) = sent {
            self.requests += sent.batches;
            self.duplicate_requests += sent.duplicates;
        }
    }

    /// Prints the summary; an error when damage was listed (the rest was
    /// imported), so that the exit status says so.
    pub(crate) fn conclude(
        &self,
        dry_run: bool,
        started: std::time::Instant,
    ) -> Result<(), CliError> {
        eprintln!("{}", self.report(dry_run, started.elapsed().as_secs_f64()));
        if self.damaged.is_empty() {
            return Ok(());
        }
        Err(CliError::Input(format!(
            "{} listed above; everything else was imported",
            steplake_core::counted(self.damaged.len() as u64, "damaged place", "damaged places")
        )))
    }

    /// The summary, several lines.
    pub(crate) fn report(&self, dry_run: bool, seconds: f64) -> String {
        use steplake_core::counted;
        let verb = if dry_run {
            "read (dry run, nothing sent)"
        } else {
            "imported"
        };
        let mut out = format!(
            "{verb}: {}, {}, {}, {} with configuration",
            counted(self.runs, "run", "runs"),
            counted(self.points, "point", "points"),
            counted(self.tensors, "histogram", "histograms"),
            counted(self.configs, "run", "runs"),
        );
        if seconds > 0.0 {
            out.push_str(&format!(
                " in {seconds:.2} s ({:.0} points/s)",
                self.points as f64 / seconds
            ));
        }
        if self.duplicate_requests > 0 {
            out.push_str(&format!(
                "\n{} of {} were already stored (imported before) and were not stored again",
                counted(self.duplicate_requests, "write request", "write requests"),
                self.requests
            ));
        }
        let skipped: u64 = self.skipped.values().sum();
        if skipped > 0 {
            out.push_str(&format!(
                "\nskipped {}:",
                counted(skipped, "record", "records")
            ));
            for (reason, count) in &self.skipped {
                out.push_str(&format!("\n  {count} x {reason}"));
            }
        }
        if !self.damaged.is_empty() {
            out.push_str(&format!(
                "\n{} (the rest of each file was imported):",
                counted(self.damaged.len() as u64, "damaged place", "damaged places")
            ));
            for line in &self.damaged {
                out.push_str(&format!("\n  {line}"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_ids_follow_the_source_and_nothing_else() {
        let a = source_writer_id("tensorboard", "run", "events.out.tfevents.1", 100);
        assert_eq!(
            a,
            source_writer_id("tensorboard", "run", "events.out.tfevents.1", 100)
        );
        assert_ne!(
            a,
            source_writer_id("tensorboard", "run", "events.out.tfevents.1", 101)
        );
        assert_ne!(
            a,
            source_writer_id("tensorboard", "run2", "events.out.tfevents.1", 100)
        );
        // Parts are separated: ("ab", "c") is not ("a", "bc").
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        assert_eq!(stable_hash(&[]), 0xcbf2_9ce4_8422_2325);
    }
}
