"""``steplake import neptune``: Parquet files in neptune-exporter's schema
(Neptune's hosted service is gone, so the files are written here with
pyarrow, in the exporter's layout ``<project>/<run>_part_<n>.parquet``),
imported by the real binary; every float-series value compared with the
files, with the run's configuration, tags, fork lineage and histograms."""

from __future__ import annotations

import json
import math
import subprocess
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import steplake
from conftest import steplake_binary

# neptune-exporter's schema (src/neptune_exporter/exporters/…: SCHEMA).
SCHEMA = pa.schema([
    ("project_id", pa.string()),
    ("run_id", pa.string()),
    ("attribute_path", pa.string()),
    ("attribute_type", pa.string()),
    ("step", pa.decimal128(18, 6)),
    ("timestamp", pa.timestamp("ms", tz="UTC")),
    ("int_value", pa.int64()),
    ("float_value", pa.float64()),
    ("string_value", pa.string()),
    ("bool_value", pa.bool_()),
    ("datetime_value", pa.timestamp("ms", tz="UTC")),
    ("string_set_value", pa.list_(pa.string())),
    ("file_value", pa.struct([("path", pa.string())])),
    ("histogram_value", pa.struct([
        ("type", pa.string()), ("edges", pa.list_(pa.float64())), ("values", pa.list_(pa.float64()))])),
])


def row(run: str, path: str, kind: str, **values):
    base = {name: None for name in SCHEMA.names}
    base.update(project_id="acme/vision", run_id=run, attribute_path=path, attribute_type=kind)
    base.update(values)
    return base


def write_run(directory: Path, run: str, rows: list[dict], parts: int = 2) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    size = math.ceil(len(rows) / parts)
    for part in range(parts):
        chunk = rows[part * size:(part + 1) * size]
        pq.write_table(pa.Table.from_pylist(chunk, schema=SCHEMA),
                       directory / f"{run}_part_{part}.parquet", compression="snappy")


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


@pytest.fixture
def export(tmp_path: Path) -> Path:
    data = tmp_path / "exports" / "data"
    project = data / "acme_vision"
    base = [
        row("VIS-1", "sys/name", "string", string_value="baseline"),
        row("VIS-1", "sys/tags", "string_set", string_set_value=["resnet", "sweep"]),
        row("VIS-1", "parameters/lr", "float", float_value=0.1),
        row("VIS-1", "parameters/layers", "int", int_value=50),
        row("VIS-1", "parameters/optimizer", "string", string_value="sgd"),
        row("VIS-1", "parameters/nesterov", "bool", bool_value=True),
    ]
    for step in range(500):
        value = float("nan") if step == 250 else 2.0 / (step + 1)
        base.append(row("VIS-1", "train/loss", "float_series", step=Decimal(step),
                        timestamp=at(1_700_000_000_000 + step * 10), float_value=value))
    base.append(row("VIS-1", "train/loss", "float_series", step=Decimal("500.5"),
                    timestamp=at(1_700_000_005_000), float_value=0.1))
    for step in (0, 100):
        base.append(row("VIS-1", "weights", "histogram_series", step=Decimal(step),
                        timestamp=at(1_700_000_000_000 + step),
                        histogram_value={"type": "COUNTING", "edges": [0.0, 1.0, 2.0, 4.0],
                                         "values": [5.0, 10.0, 5.0]}))
    base.append(row("VIS-1", "logs/stdout", "string_series", step=Decimal(0),
                    timestamp=at(1_700_000_000_000), string_value="hello"))
    write_run(project, "VIS-1", base)

    fork = [
        row("VIS-2", "sys/forking/parent", "string", string_value="VIS-1"),
        row("VIS-2", "sys/forking/step", "float", float_value=300.0),
        row("VIS-2", "parameters/lr", "float", float_value=0.01),
    ]
    for step in range(300, 400):
        fork.append(row("VIS-2", "train/loss", "float_series", step=Decimal(step),
                        timestamp=at(1_800_000_000_000 + step), float_value=1.0 / step))
    write_run(project, "VIS-2", fork, parts=1)
    return data


def import_neptune(server, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [steplake_binary(), "import", "neptune", "--server", f"http://{server.address}", str(path)],
        capture_output=True, text=True, timeout=120)


def test_runs_series_config_and_lineage_arrive(server, export: Path) -> None:
    done = import_neptune(server, export)
    assert done.returncode == 0, done.stderr
    assert "2 runs" in done.stderr and "fractional step" in done.stderr, done.stderr
    assert "string series (not imported)" in done.stderr

    connection = steplake.connect(server.address)
    runs = {r["run_id"]: r for r in connection.sql(
        "SELECT run_id, project, name, config, tags, parent_run_id, fork_step FROM runs").arrow().to_pylist()}
    assert set(runs) == {"VIS-1", "VIS-2"}
    base = runs["VIS-1"]
    assert (base["project"], base["name"], sorted(base["tags"])) == ("acme/vision", "baseline", ["resnet", "sweep"])
    assert json.loads(base["config"]) == {
        "parameters/lr": 0.1, "parameters/layers": 50, "parameters/optimizer": "sgd", "parameters/nesterov": True}
    assert (runs["VIS-2"]["parent_run_id"], runs["VIS-2"]["fork_step"]) == ("VIS-1", 300)

    # Every float-series value of the files, compared one by one.
    files = pa.concat_tables([pq.read_table(p) for p in sorted(export.rglob("*.parquet"))])
    for run_id in ("VIS-1", "VIS-2"):
        expected = [r for r in files.to_pylist()
                    if r["run_id"] == run_id and r["attribute_type"] == "float_series"
                    and r["step"] == r["step"].to_integral_value()]
        got = connection.sql(
            f"SELECT step, value, wall_time FROM scalars WHERE run_id = '{run_id}' AND name = 'train/loss' "
            "ORDER BY step").arrow()
        got = list(zip(got.column("step").to_pylist(), got.column("value").to_pylist(),
                       got.column("wall_time").cast(pa.int64()).to_pylist()))
        assert len(got) == len(expected) == (500 if run_id == "VIS-1" else 100)
        for (step, value, micros), want in zip(got, sorted(expected, key=lambda r: r["step"])):
            assert step == int(want["step"])
            assert micros == int(want["timestamp"].timestamp() * 1000) * 1000
            assert (math.isnan(value) and math.isnan(want["float_value"])) or value == want["float_value"]

    hist = connection.sql("SELECT step, numel, min, max FROM tensors WHERE run_id = 'VIS-1' AND name = 'weights' "
                          "ORDER BY step").arrow().to_pylist()
    assert [(h["step"], h["numel"], h["min"], h["max"]) for h in hist] == [(0, 20, 0.0, 4.0), (100, 20, 0.0, 4.0)]

    again = import_neptune(server, export)
    assert again.returncode == 0 and "already stored" in again.stderr, again.stderr


def test_a_cut_file_is_refused_before_anything_is_sent(server, export: Path) -> None:
    part = export / "acme_vision" / "VIS-2_part_0.parquet"
    part.write_bytes(part.read_bytes()[:-100])
    done = import_neptune(server, export)
    assert done.returncode == 2, done.stderr
    assert f"{part}: not a readable Parquet file" in done.stderr, done.stderr
    count = steplake.connect(server.address).sql("SELECT count(*) AS n FROM runs").arrow()
    assert count.column("n")[0].as_py() == 0
