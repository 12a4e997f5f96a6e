"""Logging and reading scalars from Python: steplake vs TensorBoard.

The same points (10 metrics x 100,000 steps = 1,000,000 points) are logged
three ways, each timed from the first call until everything is durable:

- ``run.log(dict, step=...)``, once per step (steplake, up to ``finish()``,
  which returns when the server acknowledged every batch);
- ``run.log_many({name: values}, steps)``, the bulk numpy API;
- TensorBoard's ``SummaryWriter.add_scalar`` (the ``tensorboard`` package),
  once per point, up to ``close()``.

Then one metric's full history is read into pandas: steplake's
``connect().sql(...).df()`` vs TensorBoard's ``EventAccumulator`` (size
guidance 0: keep every point). Prints points/s, seconds and the ratios.

Run:  ./scripts/bench-python.sh   (builds the release server, installs the
package and tensorboard, then runs this file; STEPLAKE_BIN names the server)
Targets (issue 6): run.log >= 30x TensorBoard; bulk >= 1M points/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(binary: str, data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [binary, "serve", "--data-dir", str(data_dir), "--listen", address, "--http", "off"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "STEPLAKE_LOG": "warn"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        raise SystemExit(f"steplake serve did not start: {line!r}")
    return process, address


def metric_values(steps: int, metrics: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal((metrics, steps))


def bench_run_log(address: str, values: np.ndarray) -> tuple[float, str]:
    import steplake

    names = [f"metric/{i}" for i in range(values.shape[0])]
    rows = values.T.tolist()  # plain floats, as a training loop has them
    start = time.perf_counter()
    run = steplake.init(project="bench", name="run.log", server=address)
    log = run.log
    for step, row in enumerate(rows):
        log(dict(zip(names, row)), step=step)
    run.finish(timeout=600)
    return time.perf_counter() - start, run.id


def bench_bulk(address: str, values: np.ndarray) -> float:
    import steplake

    steps = np.arange(values.shape[1])
    start = time.perf_counter()
    run = steplake.init(project="bench", name="bulk", server=address)
    run.log_many({f"metric/{i}": values[i] for i in range(values.shape[0])}, steps=steps)
    run.finish(timeout=600)
    return time.perf_counter() - start


def tensorboard_writer(logdir: Path):
    """TensorBoard's own SummaryWriter (tensorboard package, no TensorFlow or PyTorch)."""
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    class SummaryWriter:
        """The add_scalar path of torch.utils.tensorboard.SummaryWriter, on the
        same EventFileWriter (torch's writer is a thin layer over it)."""

        def __init__(self, logdir: str) -> None:
            self._writer = EventFileWriter(logdir)

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])
            self._writer.add_event(Event(summary=summary, wall_time=time.time(), step=step))

        def close(self) -> None:
            self._writer.close()

    return SummaryWriter(str(logdir))


def tensorboard_summary_writer(logdir: Path):
    """The tensorboard package's own writer, ``tensorboard.summary.Writer``."""
    from tensorboard.summary import Writer

    return Writer(str(logdir))


def bench_tb(logdir: Path, values: np.ndarray, make_writer) -> float:
    names = [f"metric/{i}" for i in range(values.shape[0])]
    rows = values.T.tolist()
    start = time.perf_counter()
    writer = make_writer(logdir)
    add = writer.add_scalar
    for step, row in enumerate(rows):
        for name, value in zip(names, row):
            add(name, value, step)
    writer.close()
    return time.perf_counter() - start


def read_steplake(address: str, run_id: str) -> tuple[float, int]:
    import steplake

    start = time.perf_counter()
    frame = steplake.connect(address).sql(
        f"SELECT step, value FROM scalars WHERE run_id = '{run_id}' AND name = 'metric/0' ORDER BY step"
    ).df()
    return time.perf_counter() - start, len(frame)


def read_tensorboard(logdir: Path) -> tuple[float, int]:
    import pandas as pd
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    start = time.perf_counter()
    accumulator = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    accumulator.Reload()
    events = accumulator.Scalars("metric/0")
    frame = pd.DataFrame({"step": [e.step for e in events], "value": [e.value for e in events]})
    return time.perf_counter() - start, len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--metrics", type=int, default=10)
    parser.add_argument("--binary", default=os.environ.get("STEPLAKE_BIN", "target/release/steplake"))
    args = parser.parse_args()
    points = args.steps * args.metrics
    values = metric_values(args.steps, args.metrics)
    work = Path(tempfile.mkdtemp(prefix="steplake-bench-"))
    server, address = start_server(args.binary, work / "data")
    try:
        print(f"{args.metrics} metrics x {args.steps} steps = {points:,} points; server {args.binary}")
        run_log_s, run_id = bench_run_log(address, values)
        bulk_s = bench_bulk(address, values)
        tb_writer_s = bench_tb(work / "tb-writer", values, tensorboard_summary_writer)
        tb_s = bench_tb(work / "tb", values, tensorboard_writer)
        # Compare against the faster of the two TensorBoard writers.
        tb_best_s = min(tb_s, tb_writer_s)
        sl_read_s, sl_rows = read_steplake(address, run_id)
        tb_read_s, tb_rows = read_tensorboard(work / "tb")
        assert sl_rows == tb_rows == args.steps, (sl_rows, tb_rows)
        rate = lambda seconds: points / seconds  # noqa: E731
        print(f"steplake run.log(dict)      {run_log_s:8.2f} s  {rate(run_log_s):>12,.0f} points/s")
        print(f"steplake run.log_many       {bulk_s:8.2f} s  {rate(bulk_s):>12,.0f} points/s")
        print(f"tensorboard SummaryWriter   {tb_s:8.2f} s  {rate(tb_s):>12,.0f} points/s  (add_scalar on EventFileWriter)")
        print(f"tensorboard summary.Writer  {tb_writer_s:8.2f} s  {rate(tb_writer_s):>12,.0f} points/s")
        print(f"ratio run.log / tensorboard  {tb_best_s / run_log_s:7.1f}x   (target >= 30x; faster TensorBoard writer)")
        print(f"ratio bulk / tensorboard     {tb_best_s / bulk_s:7.1f}x   (bulk target >= 1,000,000 points/s)")
        print(f"read one metric ({args.steps:,} points) into pandas:")
        print(f"  steplake sql().df()         {sl_read_s * 1000:8.1f} ms")
        print(f"  tensorboard EventAccumulator {tb_read_s * 1000:7.1f} ms")
        print(f"  ratio                       {tb_read_s / sl_read_s:8.1f}x")
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
