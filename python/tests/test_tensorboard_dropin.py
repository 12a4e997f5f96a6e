"""``from steplake.tensorboard import SummaryWriter``: one training script
run twice, with a real ``SummaryWriter`` (tensorboardX, the library
PyTorch's ``torch.utils.tensorboard`` writer comes from, with the same
signatures; PyTorch itself is not in the test environment) writing event
files that ``steplake import tensorboard`` then imports, and with the
drop-in logging straight to the server. What each stores is compared."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import steplake
from conftest import steplake_binary

tensorboardX = pytest.importorskip("tensorboardX")


def training(SummaryWriter, log_dir: str, **options) -> None:
    """The script: what a training loop logs through SummaryWriter."""
    writer = SummaryWriter(log_dir, **options)
    for step in range(200):
        wall = 1_700_000_000.0 + step * 0.25
        writer.add_scalar("train/loss", 2.0 / (step + 1), step, walltime=wall)
        writer.add_scalars("lr", {"group0": 0.1 * (1 - step / 200), "group1": 0.01}, step, walltime=wall)
        if step % 50 == 0:
            writer.add_histogram("weights", np.linspace(-1, 1, 101) * (1 + step / 100), step)
    writer.add_hparams({"lr": 0.1, "batch_size": 32}, {"hparam/accuracy": 0.9})
    writer.add_text("notes", "baseline run", 0)
    writer.flush()
    writer.close()


def series(connection, run_id: str, name: str) -> list[tuple[int, float, int]]:
    table = connection.sql(
        f"SELECT step, value, wall_time FROM scalars WHERE run_id = '{run_id}' AND name = '{name}' "
        "ORDER BY step").arrow()
    return list(zip(table.column("step").to_pylist(), table.column("value").to_pylist(),
                    table.column("wall_time").cast(pa.int64()).to_pylist()))


def test_the_drop_in_stores_what_the_real_writer_stores(server, tmp_path: Path) -> None:
    from steplake.tensorboard import SummaryWriter as DropIn
    from tensorboardX import SummaryWriter as Real

    training(Real, str(tmp_path / "logs" / "real"))
    done = subprocess.run(
        [steplake_binary(), "import", "tensorboard", "--server", f"http://{server.address}",
         "--project", "real", str(tmp_path / "logs")],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    training(DropIn, "drop-in", server=server.address, run_id="dropin", project="dropin")

    connection = steplake.connect(server.address)
    runs = {r["run_id"]: r for r in connection.sql("SELECT run_id, name, status, config FROM runs").arrow().to_pylist()}
    assert runs["dropin"]["name"] == "drop-in" and runs["dropin"]["status"] == "finished"

    # Scalars: the same steps and wall times; TensorBoard keeps float32.
    real = series(connection, "real", "train/loss")
    mine = series(connection, "dropin", "train/loss")
    assert len(real) == len(mine) == 200
    for (step, value, wall), (my_step, my_value, my_wall) in zip(real, mine):
        assert (step, wall) == (my_step, my_wall)
        assert value == float(np.float32(my_value))

    # add_scalars: the real writer's own run per tag (log_dir/lr/group0,
    # series "lr"); the drop-in's series lr/group0 in the same run.
    for group in ("group0", "group1"):
        real_run = f"real-lr-{group}"
        assert real_run in runs, sorted(runs)
        real = series(connection, real_run, "lr")
        mine = series(connection, "dropin", f"lr/{group}")
        assert [(s, w) for s, _, w in real] == [(s, w) for s, _, w in mine]
        assert [v for _, v, _ in real] == [float(np.float32(v)) for _, v, _ in mine]

    # Histograms: the same counts and ranges at the same steps.
    def histograms(run_id: str) -> list[tuple[int, int, float, float]]:
        return [tuple(r.values()) for r in connection.sql(
            f"SELECT step, numel, min, max FROM tensors WHERE run_id = '{run_id}' AND name = 'weights' "
            "ORDER BY step").arrow().to_pylist()]
    assert histograms("real") == histograms("dropin")
    assert [h[0] for h in histograms("dropin")] == [0, 50, 100, 150]

    # hparams: TensorBoard's own run (a directory under log_dir) holds them
    # and the metric; the drop-in puts both in its run.
    hparams_runs = [r for r in runs.values()
                    if r["run_id"].startswith("real-") and json.loads(r["config"] or "{}")]
    assert len(hparams_runs) == 1, runs
    assert json.loads(hparams_runs[0]["config"]) == {"lr": 0.1, "batch_size": 32}
    config = json.loads(runs["dropin"]["config"])
    assert {k: config[k] for k in ("lr", "batch_size")} == {"lr": 0.1, "batch_size": 32}
    assert config["text/notes"] == "baseline run"
    assert series(connection, "dropin", "hparam/accuracy")[0][:2] == (0, 0.9)
    real_metric = series(connection, hparams_runs[0]["run_id"], "hparam/accuracy")
    assert [p[:2] for p in real_metric] == [(0, float(np.float32(0.9)))]
