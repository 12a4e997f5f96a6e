"""``steplake import wandb`` (and ``python -m steplake import-wandb``): runs
logged by W&B itself in offline mode, read through W&B's own reader
(``wandb leet inspect``), every point compared with what that reader
returns: steps, values (NaN and infinities included) and wall times.
Config, tags, summary, step metrics and exit status arrive; histograms
become tensor statistics; a second import stores nothing; a log cut short
or with a damaged record is reported with its file and record, and the rest
imports; a file that is not a W&B log is refused by name. W&B histories
exported as Parquet import too."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import steplake
from conftest import steplake_binary

wandb = pytest.importorskip("wandb")


@pytest.fixture(scope="module", autouse=True)
def offline_wandb(tmp_path_factory: pytest.TempPathFactory):
    """W&B in offline mode, quiet, with its settings in a scratch home."""
    monkey = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("wandb-home")
    monkey.setenv("WANDB_MODE", "offline")
    monkey.setenv("WANDB_SILENT", "true")
    monkey.setenv("WANDB_CONFIG_DIR", str(home))
    monkey.setenv("WANDB_CACHE_DIR", str(home / "cache"))
    monkey.setenv("WANDB_DATA_DIR", str(home / "data"))
    yield
    monkey.undo()


def wandb_program() -> str:
    return str(Path(sys.executable).parent / "wandb")


def log_runs(root: Path) -> dict[str, Path]:
    """Two runs logged by W&B itself; returns {label: run directory}."""
    runs = {}
    run = wandb.init(project="vision", name="lr-0.1", dir=str(root), tags=["baseline", "sweep"],
                     config={"lr": 0.1, "optimizer": {"name": "adam", "beta1": 0.9}, "layers": 12})
    run.define_metric("epoch")
    run.define_metric("val/*", step_metric="epoch")
    for step in range(300):
        row = {"train/loss": 2.0 / (step + 1), "train/acc": step / 300, "lr": 0.1}
        if step == 7:
            row["train/loss"] = float("nan")
        if step == 8:
            row["grad_norm"] = float("inf")
        if step == 9:
            row["grad_norm"] = float("-inf")
        if step % 100 == 0:
            row["weights"] = wandb.Histogram([0.1 * i for i in range(50)])
            row["note"] = "text is not a series"
        if step % 50 == 49:
            run.log({"val/acc": step / 400, "epoch": step // 50}, commit=False)
        run.log(row)
    run.log({"nested": {"a": 1.5, "b": {"c": True}}}, step=400)
    run.config.update({"batch_size": 64})
    run.summary["best_acc"] = 0.97
    run.finish()
    runs["first"] = Path(run.dir).parent
    (root / "second").mkdir()
    failed = wandb.init(project="text", name="diverged", dir=str(root / "second"))
    for step in range(20):
        failed.log({"loss": 1.0 + step}, step=step * 10)
    failed.finish(exit_code=1)
    runs["failed"] = Path(failed.dir).parent
    return runs


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, offline_wandb) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("wandb-runs")
    return root, log_runs(root)


def wandb_log(run_dir: Path) -> Path:
    (log,) = run_dir.glob("run-*.wandb")
    return log


def reader_records(log: Path) -> list[dict]:
    """Every record of a log, as W&B's own reader returns them."""
    out = subprocess.run([wandb_program(), "leet", "inspect", "--json", str(log)],
                         capture_output=True, text=True, check=True, timeout=120)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def expected_points(log: Path) -> dict[str, list[tuple[int, float, int]]]:
    """{series: [(step, value, wall µs)]} of W&B's reader's history rows."""
    special = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
    points: dict[str, list[tuple[int, float, int]]] = {}
    for record in reader_records(log):
        if record["type"] != "history":
            continue
        item = record["history"]["item"]
        media = {k[: -len("._type")] for k in item if k.endswith("._type")}
        wall = math.floor(item["_timestamp"] * 1e6 + 0.5)
        for key, value in item.items():
            if key.startswith("_") or any(key.startswith(m + ".") for m in media):
                continue
            if isinstance(value, str):
                if value not in special:
                    continue
                value = special[value]
            points.setdefault(key, []).append((item["_step"], float(value), wall))
    return points


def run_import(server, *paths: Path, python: bool = False) -> subprocess.CompletedProcess[str]:
    if python:
        command = [sys.executable, "-m", "steplake", "import-wandb", "--server", server.address]
        env = {**os.environ, "STEPLAKE_BIN": steplake_binary()}
    else:
        command = [steplake_binary(), "import", "wandb", "--wandb", wandb_program(),
                   "--server", f"http://{server.address}"]
        env = None
    return subprocess.run(command + [str(p) for p in paths], capture_output=True, text=True,
                          timeout=300, env=env)


def stored_points(connection, run_id: str) -> dict[str, list[tuple[int, float, int]]]:
    table = connection.sql(
        f"SELECT name, step, value, wall_time FROM scalars WHERE run_id = '{run_id}' ORDER BY name, step"
    ).arrow()
    points: dict[str, list[tuple[int, float, int]]] = {}
    for name, step, value, wall in zip(table.column("name").to_pylist(), table.column("step").to_pylist(),
                                       table.column("value").to_pylist(),
                                       table.column("wall_time").cast(pa.int64()).to_pylist()):
        points.setdefault(name, []).append((step, value, wall))
    return points


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_every_point_config_and_status_arrive(server, logged) -> None:
    root, runs = logged
    done = run_import(server, root, python=True)
    assert done.returncode == 0, done.stderr
    assert "imported: 2 runs" in done.stderr, done.stderr
    assert "history values that are text" in done.stderr, done.stderr

    connection = steplake.connect(server.address)
    for label in ("first", "failed"):
        log = wandb_log(runs[label])
        run_id = log.name[len("run-"):-len(".wandb")]
        expected = expected_points(log)
        stored = stored_points(connection, run_id)
        assert sorted(stored) == sorted(expected)
        for name, points in expected.items():
            assert len(stored[name]) == len(points), name
            for (step, value, wall), (s_step, s_value, s_wall) in zip(points, stored[name]):
                assert (step, wall) == (s_step, s_wall), name
                assert same(value, s_value), (name, step, value, s_value)

    first_id = wandb_log(runs["first"]).name[4:-6]
    stored = stored_points(connection, first_id)
    assert math.isnan(dict((s, v) for s, v, _ in stored["train/loss"])[7])
    assert [v for _, v, _ in stored["grad_norm"]] == [math.inf, -math.inf]
    assert [(s, v) for s, v, _ in stored["nested.b.c"]] == [(400, 1.0)]
    assert [s for s, _, _ in stored["val/acc"]] == [49, 99, 149, 199, 249, 299]

    rows = {r["run_id"]: r for r in connection.sql(
        "SELECT run_id, project, name, status, tags, config FROM runs").arrow().to_pylist()}
    first = rows[first_id]
    assert (first["project"], first["name"], first["status"]) == ("vision", "lr-0.1", "finished")
    assert sorted(first["tags"]) == ["baseline", "sweep"]
    config = json.loads(first["config"])
    assert config["lr"] == 0.1 and config["optimizer"] == {"name": "adam", "beta1": 0.9}
    assert config["batch_size"] == 64
    assert config["wandb.step_metrics"] == {"val/*": "epoch"}
    # The summary keeps what history does not say: the value set on it.
    assert config["summary"] == {"best_acc": 0.97}
    failed_id = wandb_log(runs["failed"]).name[4:-6]
    assert (rows[failed_id]["project"], rows[failed_id]["status"]) == ("text", "failed")

    histograms = connection.sql(
        f"SELECT step, numel, min, max FROM tensors WHERE run_id = '{first_id}' AND name = 'weights' "
        "ORDER BY step").arrow().to_pylist()
    assert [h["step"] for h in histograms] == [0, 100, 200]
    assert all(h["numel"] == 50 for h in histograms)
    assert histograms[0]["min"] == pytest.approx(0.0) and histograms[0]["max"] == pytest.approx(4.9)

    # Importing again stores nothing new.
    count = connection.sql("SELECT count(*) AS n FROM scalars").arrow().column("n")[0].as_py()
    again = run_import(server, root)
    assert again.returncode == 0, again.stderr
    assert "were already stored" in again.stderr, again.stderr
    assert connection.sql("SELECT count(*) AS n FROM scalars").arrow().column("n")[0].as_py() == count


def test_damaged_logs_are_reported_and_the_rest_imports(server, logged, tmp_path: Path) -> None:
    _, runs = logged
    log = wandb_log(runs["first"])
    data = log.read_bytes()
    cut = tmp_path / "cut" / "run-cutshort.wandb"
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) // 2])
    flipped = tmp_path / "flipped" / "run-flipped.wandb"
    flipped.parent.mkdir()
    damaged = bytearray(data)
    damaged[len(data) // 3] ^= 0xFF
    flipped.write_bytes(bytes(damaged))

    done = run_import(server, cut, flipped)
    assert done.returncode != 0
    assert "2 damaged places" in done.stderr, done.stderr
    assert f"{cut}: after record" in done.stderr and "incomplete" in done.stderr, done.stderr
    assert f"{flipped}: after record" in done.stderr and "checksum" in done.stderr, done.stderr
    # Both copies are the same W&B run (its id is in the log): the points
    # before the damage arrive, each once.
    run_id = log.name[len("run-"):-len(".wandb")]
    imported = int(done.stderr.split("imported: 2 runs, ")[1].split(" points")[0])
    assert imported > 400, done.stderr
    stored = steplake.connect(server.address).sql(
        f"SELECT count(*) AS n FROM scalars WHERE run_id = '{run_id}'").arrow().column("n")[0].as_py()
    assert 300 < stored <= imported


def test_what_is_not_a_wandb_log_is_refused_by_name(server, tmp_path: Path) -> None:
    garbage = tmp_path / "run-garbage.wandb"
    garbage.write_bytes(b"not a transaction log at all")
    done = run_import(server, garbage)
    assert done.returncode != 0
    assert f"{garbage}: W&B's reader could not read it" in done.stderr, done.stderr

    missing = subprocess.run(
        [steplake_binary(), "import", "wandb", "--wandb", str(tmp_path / "no-wandb"),
         "--server", f"http://{server.address}", str(garbage)],
        capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0
    assert "pip install wandb" in missing.stderr, missing.stderr

    empty = subprocess.run([steplake_binary(), "import", "wandb", "--dry-run", str(tmp_path / "nothing")],
                           capture_output=True, text=True, timeout=60)
    assert empty.returncode != 0 and "no such file or directory" in empty.stderr, empty.stderr


def test_a_history_exported_as_parquet(server, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    nan = float("nan")
    # Written with pyarrow, so that NaN stays NaN and a missing value is a
    # null (pandas 3 writes a float NaN as null).
    table = pa.table({
        "_step": pa.array([0, 1, 2, 3], pa.int64()),
        "_timestamp": [1_700_000_000.5, 1_700_000_001.25, 1_700_000_002.0, 1_700_000_003.75],
        "_runtime": [0.1, 1.1, 2.1, 3.1],
        "loss": [2.0, 1.5, nan, 1.0],
        "eval/acc": pa.array([None, 0.5, None, 0.75], pa.float64()),
        "caption": ["a", "b", "c", "d"],
    })
    pq.write_table(table, tmp_path / "sweep-7.parquet")
    parts = tmp_path / "run-abc-history"
    parts.mkdir()
    pq.write_table(table.slice(0, 2), parts / "0000.parquet")
    pq.write_table(table.slice(2), parts / "0001.parquet")

    done = run_import(server, tmp_path / "sweep-7.parquet", parts)
    assert done.returncode == 0, done.stderr
    assert "imported: 2 runs, 12 points" in done.stderr, done.stderr
    assert "history columns that are not numbers" in done.stderr, done.stderr
    connection = steplake.connect(server.address)
    for run_id in ("sweep-7", "run-abc-history"):
        stored = stored_points(connection, run_id)
        assert [(s, w) for s, _, w in stored["loss"]] == [
            (0, 1_700_000_000_500_000), (1, 1_700_000_001_250_000),
            (2, 1_700_000_002_000_000), (3, 1_700_000_003_750_000)]
        assert [v for _, v, _ in stored["loss"]][:2] == [2.0, 1.5]
        assert math.isnan(stored["loss"][2][1])
        assert [(s, v) for s, v, _ in stored["eval/acc"]] == [(1, 0.5), (3, 0.75)]

    (tmp_path / "bad").mkdir()
    pq.write_table(pa.table({"loss": [1.0]}), tmp_path / "bad" / "x.parquet")
    refused = run_import(server, tmp_path / "bad")
    assert refused.returncode != 0 and 'no column "_step"' in refused.stderr, refused.stderr
