"""Helper of benches/import_tensorboard.rs: TensorBoard's own writer and reader.

  python import_tensorboard.py write DIR POINTS   event files as PyTorch writes them
  python import_tensorboard.py read DIR           EventAccumulator, size guidance 0

``read`` prints one JSON line: points read and seconds taken.
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


def read(directory: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    started = time.perf_counter()
    accumulator = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    accumulator.Reload()
    points = sum(len(accumulator.Scalars(tag)) for tag in accumulator.Tags()["scalars"])
    print(json.dumps({"points": points, "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        read(Path(sys.argv[2]))
