"""Helper of benches/import.rs: the peers' own writers and readers.

  python import_peers.py write-tensorboard DIR POINTS  event files in DIR/run, as PyTorch writes them
  python import_peers.py read-tensorboard DIR          EventAccumulator, size guidance 0
  python import_peers.py write-mlflow DB POINTS        one run in an MLflow SQLite store
  python import_peers.py read-mlflow DB                MlflowClient.get_metric_history
  python import_peers.py write-wandb DIR POINTS        one offline W&B run in DIR/wandb/offline-run-*
  python import_peers.py read-wandb DIR                W&B's reader (wandb leet inspect --json), rows parsed

``read-*`` prints one JSON line: points read and seconds taken.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

TAGS = ["train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "eval/loss",
        "eval/acc", "layer0/weight_norm", "layer1/weight_norm", "layer2/weight_norm", "layer3/weight_norm"]


def write(directory: Path, points: int) -> None:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    directory = directory / "run"  # one run directory
    directory.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(directory), max_queue_size=100_000)
    rng = np.random.default_rng(1)
    values = rng.normal(size=points)
    steps = points // len(TAGS)
    for step in range(steps):
        for i, tag in enumerate(TAGS):
            # One value per event, as torch.utils.tensorboard's add_scalar writes.
            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(
                tag=tag, simple_value=float(values[step * len(TAGS) + i]))])
            writer.add_event(event_pb2.Event(wall_time=1.7e9 + step * 0.01, step=step, summary=summary))
    writer.close()


def write_mlflow(database: Path, points: int) -> None:
    import mlflow
    from mlflow.entities import Metric

    database.parent.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{database}"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("bench")
    run = client.create_run(experiment, run_name="bench")
    rng = np.random.default_rng(1)
    values = rng.normal(size=points)
    steps = points // len(TAGS)
    batch = []
    for step in range(steps):
        for i, tag in enumerate(TAGS):
            batch.append(Metric(tag, float(values[step * len(TAGS) + i]), 1_700_000_000_000 + step, step))
            if len(batch) == 1000:  # MLflow's limit per log_batch
                client.log_batch(run.info.run_id, metrics=batch)
                batch = []
    if batch:
        client.log_batch(run.info.run_id, metrics=batch)
    client.set_terminated(run.info.run_id)


def read_mlflow(database: Path) -> None:
    import mlflow

    started = time.perf_counter()
    client = mlflow.MlflowClient(f"sqlite:///{database}")
    points = 0
    for run in client.search_runs([e.experiment_id for e in client.search_experiments()]):
        for key in run.data.metrics:
            points += len(client.get_metric_history(run.info.run_id, key))
    print(json.dumps({"points": points, "seconds": time.perf_counter() - started}))


def write_wandb(directory: Path, points: int) -> None:
    import os

    import wandb

    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true")
    directory.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project="bench", name="bench", dir=str(directory))
    rng = np.random.default_rng(1)
    values = rng.normal(size=points)
    for step in range(points // len(TAGS)):
        run.log({tag: float(values[step * len(TAGS) + i]) for i, tag in enumerate(TAGS)}, step=step)
    run.finish()


def read_wandb(directory: Path) -> None:
    """W&B's own reader of its run logs, its JSON records parsed and every
    history point counted (W&B's Python library has no other offline
    reader; its public API reads from W&B's servers)."""
    import subprocess

    (log,) = directory.glob("wandb/offline-run-*/run-*.wandb")
    started = time.perf_counter()
    reader = subprocess.Popen([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(log)],
                              stdout=subprocess.PIPE, text=True)
    points = 0
    assert reader.stdout is not None
    for line in reader.stdout:
        record = json.loads(line)
        if record.get("type") == "history":
            points += sum(1 for key in record["history"]["item"] if not key.startswith("_"))
    reader.wait()
    print(json.dumps({"points": points, "seconds": time.perf_counter() - started}))


def read(directory: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    started = time.perf_counter()
    accumulator = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    accumulator.Reload()
    points = sum(len(accumulator.Scalars(tag)) for tag in accumulator.Tags()["scalars"])
    print(json.dumps({"points": points, "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    command, path = sys.argv[1], Path(sys.argv[2])
    if command == "write-tensorboard":
        write(path, int(sys.argv[3]))
    elif command == "read-tensorboard":
        read(path)
    elif command == "write-mlflow":
        write_mlflow(path, int(sys.argv[3]))
    elif command == "read-mlflow":
        read_mlflow(path)
    elif command == "write-wandb":
        write_wandb(path, int(sys.argv[3]))
    elif command == "read-wandb":
        read_wandb(path)
    else:
        raise SystemExit(f"unknown command {command}")
