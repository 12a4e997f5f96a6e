"""``steplake import mlflow``: tracking stores written by MLflow itself (its
``mlruns`` file store and its SQLite database), imported by the real
binary, every point compared with MLflow's own ``get_metric_history``:
steps, values (NaN and infinities as MLflow keeps them) and timestamps.
Experiments become projects, params the configuration, tags tags, nested
runs keep their parent; deleted runs are skipped; a second import stores
nothing; a metric file with a bad line is refused with its file and line,
and nothing is imported."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

import steplake
from conftest import steplake_binary

mlflow = pytest.importorskip("mlflow")


def log_runs(tracking_uri: str) -> dict[str, str]:
    """Two experiments, a parent run with a nested child, a deleted run;
    returns {label: run id}."""
    mlflow.set_tracking_uri(tracking_uri)
    ids = {}
    mlflow.set_experiment("vision sweep")
    with mlflow.start_run(run_name="lr-0.1") as parent:
        ids["parent"] = parent.info.run_id
        mlflow.log_params({"lr": 0.1, "optimizer": "adam", "layers": 12})
        mlflow.set_tags({"team": "vision", "stage": "sweep"})
        for step in range(300):
            mlflow.log_metrics({"train/loss": 2.0 / (step + 1), "train/acc": step / 300}, step=step)
        mlflow.log_metric("train/loss", float("nan"), step=300)
        mlflow.log_metric("grad_norm", float("inf"), step=0)
        mlflow.log_metric("grad_norm", float("-inf"), step=1)
        # Logged twice at one step: the later one is kept.
        mlflow.log_metric("eval/acc", 0.5, step=10)
        mlflow.log_metric("eval/acc", 0.75, step=10)
        with mlflow.start_run(run_name="child", nested=True) as child:
            ids["child"] = child.info.run_id
            for step in range(50):
                mlflow.log_metric("val/loss", 1.0 / (step + 2), step=step)
    mlflow.set_experiment("text")
    with mlflow.start_run(run_name="failed-run") as failed:
        ids["failed"] = failed.info.run_id
        mlflow.log_metric("loss", 3.0, step=0)
        mlflow.end_run(status="FAILED")
    with mlflow.start_run(run_name="deleted") as deleted:
        ids["deleted"] = deleted.info.run_id
        mlflow.log_metric("loss", 1.0, step=0)
    mlflow.MlflowClient(tracking_uri).delete_run(ids["deleted"])
    return ids


@pytest.fixture(scope="module", params=["file store", "sqlite"])
def store(request, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("mlflow")
    if request.param == "file store":
        monkey = pytest.MonkeyPatch()
        monkey.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        uri = f"file://{root / 'mlruns'}"
        ids = log_runs(uri)
        monkey.undo()
        return uri, str(root / "mlruns"), ids
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return uri, str(root / "mlflow.db"), log_runs(uri)


def import_mlflow(server, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [steplake_binary(), "import", "mlflow", "--server", f"http://{server.address}", path],
        capture_output=True, text=True, timeout=300,
    )


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_every_metric_equals_mlflows_own_history(server, store) -> None:
    uri, path, ids = store
    done = import_mlflow(server, path)
    assert done.returncode == 0, done.stderr
    assert "3 runs" in done.stderr and "deleted runs" in done.stderr, done.stderr

    connection = steplake.connect(server.address)
    runs = {r["run_id"]: r for r in connection.sql(
        "SELECT run_id, project, name, status, config, tags, parent_run_id FROM runs").arrow().to_pylist()}
    assert set(runs) == {ids["parent"], ids["child"], ids["failed"]}
    parent = runs[ids["parent"]]
    assert (parent["project"], parent["name"], parent["status"]) == ("vision sweep", "lr-0.1", "finished")
    assert json.loads(parent["config"]) == {"lr": "0.1", "optimizer": "adam", "layers": "12"}
    assert sorted(parent["tags"]) == ["stage=sweep", "team=vision"]
    assert runs[ids["child"]]["parent_run_id"] == ids["parent"]
    assert runs[ids["failed"]]["status"] == "failed"
    assert runs[ids["failed"]]["project"] == "text"

    client = mlflow.MlflowClient(uri)
    checked = 0
    for run_id in (ids["parent"], ids["child"], ids["failed"]):
        keys = sorted(client.get_run(run_id).data.metrics)
        names = connection.sql(
            f"SELECT DISTINCT name FROM scalars WHERE run_id = '{run_id}' ORDER BY name").arrow()
        assert names.column("name").to_pylist() == keys
        for key in keys:
            latest: dict[int, tuple[int, float]] = {}
            for m in client.get_metric_history(run_id, key):
                if m.step not in latest or m.timestamp >= latest[m.step][0]:
                    latest[m.step] = (m.timestamp, m.value)
            table = connection.sql(
                f"SELECT step, value, wall_time FROM scalars WHERE run_id = '{run_id}' AND name = '{key}' "
                "ORDER BY step").arrow()
            got = list(zip(table.column("step").to_pylist(), table.column("value").to_pylist(),
                           table.column("wall_time").cast(pa.int64()).to_pylist()))
            assert [g[0] for g in got] == sorted(latest), key
            for step, value, micros in got:
                timestamp, want = latest[step]
                assert micros == timestamp * 1000, (key, step)
                assert same(value, want), (key, step, value, want)
                checked += 1
    assert checked == 301 + 300 + 2 + 1 + 50 + 1

    again = import_mlflow(server, path)
    assert again.returncode == 0, again.stderr
    assert "already stored" in again.stderr, again.stderr
    count = connection.sql("SELECT count(*) AS n FROM scalars").arrow().column("n")[0].as_py()
    assert count == checked


def test_a_metric_file_with_a_bad_line_is_refused_whole(server, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    root = tmp_path / "mlruns"
    ids = log_runs(f"file://{root}")
    loss = next(root.glob(f"*/{ids['parent']}/metrics/train/loss"))
    lines = loss.read_text().splitlines()
    lines[41] = lines[41].replace(" ", " x", 1)
    loss.write_text("\n".join(lines) + "\n")

    done = import_mlflow(server, str(root))
    assert done.returncode == 2, done.stderr
    assert f"{loss} line 42" in done.stderr and "nothing was imported" in done.stderr, done.stderr
    runs = steplake.connect(server.address).sql("SELECT count(*) AS n FROM runs").arrow()
    assert runs.column("n")[0].as_py() == 0


def test_a_path_that_is_not_a_store_is_refused(server, tmp_path: Path) -> None:
    not_a_store = tmp_path / "notes.txt"
    not_a_store.write_text("hello")
    done = import_mlflow(server, str(not_a_store))
    assert done.returncode == 2
    assert "neither an mlruns directory nor an SQLite database" in done.stderr
