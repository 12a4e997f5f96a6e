//! `steplake import`: bring data from elsewhere into runs.
//!
//! - `safetensors` (`safetensors.rs`): the tensors of a checkpoint at a step;
//! - `tensorboard` (`tensorboard.rs`): the scalars, histograms and
//!   hyperparameters of TensorBoard event files, one run per directory,
//!   read through TFRecord framing checked record by record
//!   (`tfrecord.rs`, messages in `tensorboard_proto.rs`);
//! - `mlflow` (`mlflow.rs`): the experiments, runs, params, tags and
//!   metrics of an MLflow tracking store, its `mlruns` directory or its
//!   SQLite database;
//! - `neptune` (`neptune.rs`): the Parquet files `neptune-exporter` writes;
//! - `wandb` (`wandb.rs`): W&B run directories, read by W&B's own reader,
//!   and W&B histories exported as Parquet.
//!
//! Histograms from other trackers become tensor statistics the same way
//! (`histograms.rs`).
//!
//! History importers send each source file through one write stream whose
//! writer id comes from the source, so importing twice stores nothing
//! twice, and print a tally at the end (`upload.rs`).

use clap::Subcommand;

use crate::CliError;

mod histograms;
mod mlflow;
mod neptune;
mod parquet_input;
mod safetensors;
mod tensorboard;
mod tensorboard_proto;
mod tfrecord;
mod upload;
mod wandb;

/// Formats `steplake import` reads.
#[derive(Subcommand)]
pub(crate) enum ImportCommand {
    /// Import safetensors checkpoints (Hugging Face, Pythia, …) at one step.
    Safetensors(safetensors::SafetensorsArgs),
    /// Import TensorBoard event files: scalars, histograms and hparams,
    /// one run per directory.
    Tensorboard(tensorboard::TensorboardArgs),
    /// Import an MLflow tracking store (mlruns directory or SQLite
    /// database): experiments as projects, params, tags and metrics.
    Mlflow(mlflow::MlflowArgs),
    /// Import neptune-exporter's Parquet files: runs with their series,
    /// histograms, configuration, tags and fork lineage.
    Neptune(neptune::NeptuneArgs),
    /// Import W&B runs (run directories, offline or synced, read by W&B's
    /// own library; or histories exported as Parquet).
    Wandb(wandb::WandbArgs),
}

/// Runs `steplake import …`.
pub(crate) async fn run(command: ImportCommand) -> Result<(), CliError> {
    match command {
        ImportCommand::Safetensors(args) => safetensors::run(args).await,
        ImportCommand::Tensorboard(args) => tensorboard::run(args).await,
        ImportCommand::Mlflow(args) => mlflow::run(args).await,
        ImportCommand::Neptune(args) => neptune::run(args).await,
        ImportCommand::Wandb(args) => wandb::run(args).await,
    }
}
