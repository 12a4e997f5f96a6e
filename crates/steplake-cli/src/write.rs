//! `steplake write`: stream points from a file into a run.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use clap::Args;
use steplake_client::{BatchBuilder, ClientError, DEFAULT_SERVER};

use crate::points::{InputFormat, PointReader};
use crate::CliError;
use steplake_core::counted as count;

/// Flags of `steplake write`.
#[derive(Args)]
pub(crate) struct WriteArgs {
    /// Server URL: http://HOST:PORT, or https:// with TLS.
    #[arg(long, env = "STEPLAKE_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    #[command(flatten)]
    connect: crate::connect::ConnectArgs,
    /// Run id to write into; created when it does not exist.
    #[arg(long)]
    run: String,
    /// Project of a newly created run.
    #[arg(long, default_value = "default")]
    project: String,
    /// Configuration of the run (hyperparameters) as a JSON object, e.g.
    /// '{"lr": 3e-4, "batch": 512}'; on an existing run its keys replace or
    /// join those already there.
    #[arg(long, value_name = "JSON")]
    config: Option<String>,
    /// A tag of the run (repeat for more), e.g. --tag baseline --tag lr-sweep.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Input format; guessed from the file extension (.jsonl/.json → jsonl), else csv.
    #[arg(long, value_enum)]
    format: Option<InputFormat>,
    /// Points per batch sent to the server.
    #[arg(long, default_value_t = 10_000)]
    batch_size: usize,
    /// Leave the run `running` at the end (more writers will follow);
    /// otherwise a complete input marks it `finished`.
    #[arg(long)]
    keep_running: bool,
    /// Input file; `-` or absent reads stdin.
    file: Option<PathBuf>,
}

fn open_input(file: &Option<PathBuf>) -> Result<Box<dyn BufRead>, CliError> {
    match file {
        None => Ok(Box::new(BufReader::new(std::io::stdin()))),
        Some(p) if p.as_os_str() == "-" => Ok(Box::new(BufReader::new(std::io::stdin()))),
        Some(p) => File::open(p)
            .map(|f| Box::new(BufReader::with_capacity(1 << 20, f)) as Box<dyn BufRead>)
            .map_err(|e| CliError::Failure(format!("cannot open {}: {e}", p.display()))),
    }
}

fn guess_format(file: &Option<PathBuf>) -> InputFormat {
    match file
        .as_ref()
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
    {
        Some("jsonl" | "json" | "ndjson") => InputFormat::Jsonl,
        _ => InputFormat::Csv,
    }
}

/// Parses the input and streams it; a malformed line stops the command after
/// the points before it are acknowledged. A complete input finishes the run
/// unless `--keep-running` is given.
pub(crate) async fn run(args: WriteArgs) -> Result<(), CliError> {
    let format = args.format.unwrap_or_else(|| guess_format(&args.file));
    let input = open_input(&args.file)?;
    let config_json = match &args.config {
        None => String::new(),
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(_)) => text.clone(),
            Ok(_) => {
                return Err(CliError::Input(
                    "--config must be a JSON object, e.g. '{\"lr\": 3e-4}'".into(),
                ))
            }
            Err(e) => {
                return Err(CliError::Input(format!(
                    "--config is not valid JSON ({e}); write an object, e.g. '{{\"lr\": 3e-4}}'"
                )))
            }
        },
    };
    let client = args.connect.connect(&args.server).await?;
    client
        .create_run(steplake_client::v1::CreateRunRequest {
            run_id: args.run.clone(),
            project: args.project.clone(),
            name: args.run.clone(),
            config_json,
            tags: args.tags.clone(),
            ..Default::default()
        })
        .await?;
    let mut writer = client.writer(&args.run).await?;
    let mut builder = BatchBuilder::default();
    let mut reader = PointReader::new(format, input);
    let batch_size = args.batch_size.max(1);
    let bad_line = loop {
        match reader.read_into(&mut builder, batch_size) {
            Ok(0) => break None,
            Ok(_) => {
                if send(&mut writer, &mut builder).await.is_err() {
                    // The stream has ended: finish() below reports why.
                    break None;
                }
            }
            Err(e) => break Some(e),
        }
    };
    if !builder.is_empty() {
        // The points of the lines before a bad one; an error here ended the
        // stream, and finish() below reports it.
        let _ = send(&mut writer, &mut builder).await;
    }
    let summary = writer.finish().await?;
    if let Some(e) = bad_line {
        return Err(CliError::Input(format!(
            "line {}: {}\n{} acknowledged before that line; fix the line and run the command again (rewritten points replace the earlier ones, nothing is duplicated)",
            e.line,
            e.reason,
            count(summary.points, "point", "points")
        )));
    }
    if !args.keep_running {
        client.finish_run(&args.run, "finished").await?;
    }
    eprintln!(
        "wrote {} to run {}{}",
        count(summary.points, "point", "points"),
        args.run,
        if args.keep_running { "" } else { " (finished)" }
    );
    Ok(())
}

async fn send(
    writer: &mut steplake_client::ScalarWriter,
    builder: &mut BatchBuilder,
) -> Result<(), ClientError> {
    let batch = builder.take();
    if !batch.wall_times_us.is_empty() && batch.wall_times_us.len() != batch.steps.len() {
        // Mixed lines with and without wall_time: let the server stamp them all.
        let mut batch = batch;
        batch.wall_times_us.clear();
        return writer.send(batch).await.map(|_| ());
    }
    writer.send(batch).await.map(|_| ())
}
