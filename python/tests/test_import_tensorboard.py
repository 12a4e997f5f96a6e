"""``steplake import tensorboard``: event files written by TensorBoard's own
writer, imported by the real binary, every point compared with what
TensorBoard's own reader (``EventAccumulator``) returns: steps, values
(NaN and infinities included) and wall times to the microsecond.
Histograms, hparams, a restarted run (two files), what is skipped, a second
import that stores nothing, and damaged files (a cut file, a flipped
checksum byte) reported with their file and byte offset."""

from __future__ import annotations

import math
import struct
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import steplake
from conftest import steplake_binary

tensorboard = pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.compat.proto import event_pb2, summary_pb2  # noqa: E402
from tensorboard.plugins.histogram import summary_v2 as histogram_summary  # noqa: E402
from tensorboard.plugins.hparams import summary_v2 as hparams_summary  # noqa: E402
from tensorboard.plugins.scalar import metadata as scalar_metadata  # noqa: E402
from tensorboard.plugins.text import metadata as text_metadata  # noqa: E402
from tensorboard.summary.writer.event_file_writer import EventFileWriter  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402

EVERYTHING = {"scalars": 0, "tensors": 0, "histograms": 0}


def wall_time(step: int) -> float:
    return 1_700_000_000.0 + step * 0.1234567


def scalar_event(step: int, values: dict[str, float]) -> event_pb2.Event:
    """What PyTorch's ``add_scalar`` writes: a ``simple_value`` per tag."""
    summary = summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=tag, simple_value=value) for tag, value in values.items()
    ])
    return event_pb2.Event(wall_time=wall_time(step), step=step, summary=summary)


def tensor_scalar_event(tag: str, step: int, value: float, first: bool) -> event_pb2.Event:
    """What TensorFlow 2's ``tf.summary.scalar`` writes: a scalar tensor of
    the scalars plugin, its metadata on the tag's first value only."""
    entry = summary_pb2.Summary.Value(tag=tag, tensor=tensor_util.make_tensor_proto(np.float32(value)))
    if first:
        entry.metadata.CopyFrom(scalar_metadata.create_summary_metadata(display_name=tag, description=""))
    return event_pb2.Event(wall_time=wall_time(step), step=step, summary=summary_pb2.Summary(value=[entry]))


def write_run_a(directory: Path) -> None:
    writer = EventFileWriter(str(directory))
    rng = np.random.default_rng(7)
    for step in range(2000):
        loss = float(3.0 / (1 + step) ** 0.5 + rng.normal(0, 0.01))
        values = {"train/loss": loss, "train/lr": 1e-3 * (1 - step / 2000)}
        if step == 700:
            values["train/loss"] = float("nan")
        if step == 701:
            values["train/loss"] = float("inf")
        writer.add_event(scalar_event(step, values))
        if step % 100 == 0:
            writer.add_event(tensor_scalar_event("eval/acc", step, step / 2000, first=step == 0))
        if step % 500 == 0:
            data = rng.normal(0, 1 + step / 1000, size=1000)
            summary = histogram_summary.histogram_pb("weights/layer0", data, buckets=30)
            writer.add_event(event_pb2.Event(wall_time=wall_time(step), step=step, summary=summary))
    hparams = hparams_summary.hparams_pb({"lr": 0.001, "optimizer": "adam", "layers": 12, "bn": True})
    writer.add_event(event_pb2.Event(wall_time=wall_time(0), step=0, summary=hparams))
    writer.close()


def write_run_b(directory: Path) -> None:
    """A run restarted once: two event files; also an image and a text
    summary, which are not imported."""
    for steps in (range(0, 500), range(500, 1000)):
        writer = EventFileWriter(str(directory), filename_suffix=f".part{steps.start}")
        for step in steps:
            writer.add_event(scalar_event(step, {"loss": 1.0 / (step + 1)}))
        image = summary_pb2.Summary.Image(height=1, width=1, colorspace=1, encoded_image_string=b"\x89PNG")
        writer.add_event(event_pb2.Event(step=steps.start, wall_time=wall_time(steps.start), summary=summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag="samples", image=image)])))
        text = summary_pb2.Summary.Value(
            tag="notes", tensor=tensor_util.make_tensor_proto("hello"),
            metadata=text_metadata.create_summary_metadata(display_name="notes", description=""))
        writer.add_event(event_pb2.Event(step=steps.start, wall_time=wall_time(steps.start),
                                         summary=summary_pb2.Summary(value=[text])))
        writer.close()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tb") / "logs"
    (root / "exp" / "run_a").mkdir(parents=True)
    (root / "exp" / "run_b").mkdir(parents=True)
    write_run_a(root / "exp" / "run_a")
    write_run_b(root / "exp" / "run_b")
    return root


def import_tensorboard(server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [steplake_binary(), "import", "tensorboard", "--server", f"http://{server.address}", *args],
        capture_output=True, text=True, timeout=300,
    )


def micros(seconds: float) -> int:
    """Seconds to microseconds, rounded half away from zero."""
    return int(math.floor(seconds * 1e6 + 0.5))


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def stored(connection, run_id: str, name: str) -> list[tuple[int, float, int]]:
    table = connection.sql(
        f"SELECT step, value, wall_time FROM scalars WHERE run_id = '{run_id}' AND name = '{name}' "
        "ORDER BY step").arrow()
    times = table.column("wall_time").cast(pa.int64()).to_pylist()
    return list(zip(table.column("step").to_pylist(), table.column("value").to_pylist(), times))


def reference_points(directory: Path) -> dict[str, list[tuple[int, float, int]]]:
    """Every scalar of a run directory as TensorBoard's reader returns it."""
    accumulator = EventAccumulator(str(directory), size_guidance=EVERYTHING)
    accumulator.Reload()
    points: dict[str, list[tuple[int, float, int]]] = {}
    for tag in accumulator.Tags()["scalars"]:
        points[tag] = [(e.step, e.value, micros(e.wall_time)) for e in accumulator.Scalars(tag)]
    for tag in accumulator.Tags()["tensors"]:
        events = accumulator.Tensors(tag)
        if tag.startswith("_hparams_") or events[0].tensor_proto.dtype == 7:  # DT_STRING: text
            continue
        if events[0].tensor_proto.tensor_shape.dim:  # histograms
            continue
        points[tag] = [
            (e.step, float(tensor_util.make_ndarray(e.tensor_proto).item()), micros(e.wall_time))
            for e in events
        ]
    return points


def test_every_point_equals_tensorboards_own_reader(server, logs: Path) -> None:
    done = import_tensorboard(server, "--project", "tb", str(logs))
    assert done.returncode == 0, done.stderr
    assert "2 runs" in done.stderr, done.stderr
    assert "images (not imported)" in done.stderr and "text summaries (not imported)" in done.stderr

    connection = steplake.connect(server.address)
    runs = connection.sql("SELECT run_id, name, project, status, config FROM runs ORDER BY run_id").arrow().to_pylist()
    assert [r["run_id"] for r in runs] == ["exp-run_a", "exp-run_b"]
    assert [r["name"] for r in runs] == ["exp/run_a", "exp/run_b"]
    assert all(r["project"] == "tb" and r["status"] == "finished" for r in runs)
    import json
    assert json.loads(runs[0]["config"]) == {"lr": 0.001, "optimizer": "adam", "layers": 12, "bn": True}

    checked = 0
    for run_id, directory in (("exp-run_a", logs / "exp" / "run_a"), ("exp-run_b", logs / "exp" / "run_b")):
        reference = reference_points(directory)
        names = connection.sql(
            f"SELECT DISTINCT name FROM scalars WHERE run_id = '{run_id}' ORDER BY name").arrow()
        assert sorted(reference) == names.column("name").to_pylist()
        for tag, expected in reference.items():
            got = stored(connection, run_id, tag)
            assert len(got) == len(expected), tag
            for (step, value, micro), (want_step, want_value, want_micro) in zip(got, sorted(expected)):
                assert (step, micro) == (want_step, want_micro), tag
                assert same(value, want_value), (tag, step, value, want_value)
                checked += 1
    assert checked == 2000 * 2 + 20 + 1000

    # Histograms: one statistics row per histogram, its count, range and buckets.
    accumulator = EventAccumulator(str(logs / "exp" / "run_a"), size_guidance=EVERYTHING)
    accumulator.Reload()
    histograms = connection.sql(
        "SELECT step, numel, min, max, hist FROM tensors WHERE run_id = 'exp-run_a' "
        "AND name = 'weights/layer0' ORDER BY step").arrow().to_pylist()
    expected = accumulator.Tensors("weights/layer0")
    assert [h["step"] for h in histograms] == [e.step for e in expected] == [0, 500, 1000, 1500]
    for row, event in zip(histograms, expected):
        buckets = tensor_util.make_ndarray(event.tensor_proto)
        assert row["numel"] == int(buckets[:, 2].sum()) == 1000
        assert row["min"] == buckets[0, 0] and row["max"] == buckets[-1, 1]
        assert sum(row["hist"]) == 1000


def test_a_second_import_stores_nothing_again(server, logs: Path) -> None:
    first = import_tensorboard(server, str(logs))
    assert first.returncode == 0, first.stderr
    connection = steplake.connect(server.address)
    count = connection.sql("SELECT count(*) AS n FROM scalars").arrow().column("n")[0].as_py()
    again = import_tensorboard(server, str(logs))
    assert again.returncode == 0, again.stderr
    assert "already stored" in again.stderr, again.stderr
    assert connection.sql("SELECT count(*) AS n FROM scalars").arrow().column("n")[0].as_py() == count
    tensors = connection.sql("SELECT count(*) AS n FROM tensors").arrow().column("n")[0].as_py()
    assert tensors == 4


def record_offsets(data: bytes) -> list[int]:
    """The start of every TFRecord in an intact file."""
    offsets, at = [], 0
    while at < len(data):
        offsets.append(at)
        (length,) = struct.unpack_from("<Q", data, at)
        at += 12 + length + 4
    return offsets


def test_damaged_files_are_reported_and_the_rest_imports(server, logs: Path, tmp_path: Path) -> None:
    source = next((logs / "exp" / "run_b").glob("*.part0"))
    data = source.read_bytes()
    offsets = record_offsets(data)
    # A flipped byte inside the 11th record's data, and a file cut inside
    # its last record.
    flipped = tmp_path / "flipped"
    flipped.mkdir()
    damaged = bytearray(data)
    damaged[offsets[10] + 14] ^= 0x20
    (flipped / source.name).write_bytes(bytes(damaged))
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / source.name).write_bytes(data[: len(data) - 5])

    done = import_tensorboard(server, "--run-name", "{dir}", str(flipped), str(cut))
    assert done.returncode == 2, done.stderr
    assert f"{flipped / source.name} at byte {offsets[10]}: the checksum" in done.stderr, done.stderr
    assert f"{cut / source.name} at byte {offsets[-1]}: the file ends" in done.stderr, done.stderr
    assert "the rest of each file was imported" in done.stderr

    connection = steplake.connect(server.address)
    rows = connection.sql("SELECT run_id, count(*) AS n FROM scalars GROUP BY run_id").arrow().to_pylist()
    counts = {row["run_id"]: row["n"] for row in rows}
    # Record 0 is the file version; records 1..500 are steps 0..499; then
    # the image and the text. The flipped record (step 9) is missing; the
    # cut file loses its last record, the text summary, which is not a point.
    assert counts == {"flipped": 499, "cut": 500}


def test_a_directory_without_event_files_is_refused(server, tmp_path: Path) -> None:
    done = import_tensorboard(server, str(tmp_path))
    assert done.returncode == 2
    assert "no TensorBoard event files" in done.stderr


def test_a_dry_run_needs_no_server(logs: Path) -> None:
    done = subprocess.run(
        [steplake_binary(), "import", "tensorboard", "--dry-run", "--server", "http://127.0.0.1:9", str(logs)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "dry run" in done.stderr and "5020 points" in done.stderr, done.stderr
