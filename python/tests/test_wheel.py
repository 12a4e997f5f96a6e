"""The wheel (``scripts/build-wheel.sh``, packaging the program cargo built
for the tests) installed into a fresh virtual environment, and local-first
mode: ``steplake.init()`` with no server configured starts one, shared by
every process, which stops when idle with its data in Parquet; a kill -9 of
it during a run loses nothing acknowledged."""

from __future__ import annotations

import json
import os
import signal
import socket
import urllib.request
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import steplake_binary

ROOT = Path(__file__).resolve().parents[2]

TRAINER = """
import sys, time
import steplake
run_id, points, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
run = steplake.init(project="local", run_id=run_id)
print("server", run.server, flush=True)
for step in range(points):
    run.log({"loss": 1.0 / (step + 1)}, step=step)
    if pause:
        time.sleep(pause)
run.finish(timeout=60)
print("finished", flush=True)
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed."""
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [str(ROOT / "scripts" / "build-wheel.sh"), steplake_binary(), str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "STEPLAKE_PYTHON": sys.executable})
    assert built.returncode == 0, built.stderr
    (wheel,) = out.glob("steplake-*.whl")
    environment = out / "venv"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    subprocess.run([sys.executable, "-m", "venv", str(environment)], check=True, timeout=120, env=clean)
    installed = subprocess.run(
        [str(environment / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         str(wheel)], capture_output=True, text=True, timeout=600, env=clean)
    assert installed.returncode == 0, installed.stderr
    return environment


@pytest.fixture
def local_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user with no server configured: the local data
    directory in tmp_path, a short idle time, no STEPLAKE_BIN (the wheel's
    program is used)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("STEPLAKE_SERVER", "STEPLAKE_BIN", "STEPLAKE_SPOOL_DIR", "PYTHONPATH")}
    env.update(STEPLAKE_DATA_DIR=str(tmp_path / "data"), STEPLAKE_LOCAL_IDLE_SECS="3",
               STEPLAKE_SPOOL_DIR=str(tmp_path / "spool"))
    return env


def recorded(env: dict[str, str]) -> dict:
    return json.loads((Path(env["STEPLAKE_DATA_DIR"]) / "local-server.json").read_text())


def query(venv: Path, env: dict[str, str], sql: str) -> list[dict]:
    script = f"import json, steplake; print(json.dumps(steplake.connect().sql({sql!r}).arrow().to_pylist()))"
    out = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def trainer(venv: Path, env: dict[str, str], tmp_path: Path, run_id: str, points: int,
            pause: float = 0.0) -> subprocess.Popen[str]:
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    return subprocess.Popen([str(venv / "bin" / "python"), str(script), run_id, str(points), str(pause)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def stopped(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_the_wheel_brings_the_program_at_the_packages_version(venv: Path) -> None:
    program = subprocess.run([str(venv / "bin" / "steplake"), "--version"], capture_output=True,
                             text=True, check=True).stdout.split()
    package = subprocess.run([str(venv / "bin" / "python"), "-c", "import steplake; print(steplake.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert program == ["steplake", package]


def test_two_trainers_share_one_local_server_that_stops_when_idle(venv: Path, local_env, tmp_path: Path) -> None:
    first = trainer(venv, local_env, tmp_path, "first", 2000)
    second = trainer(venv, local_env, tmp_path, "second", 3000)
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    for process, (out, err) in zip((first, second), outputs):
        assert process.returncode == 0, err
    servers = {line.split()[1] for out, _ in outputs for line in out.splitlines() if line.startswith("server")}
    assert len(servers) == 1, servers
    log = (Path(local_env["STEPLAKE_DATA_DIR"]) / "local-server.log").read_text()
    assert log.count("steplake listening on") == 1, log

    # connect() without arguments reaches the same server.
    counts = query(venv, local_env, "SELECT run_id, count(*) AS n, sum(value) AS total FROM scalars "
                                    "GROUP BY run_id ORDER BY run_id")
    assert [(c["run_id"], c["n"]) for c in counts] == [("first", 2000), ("second", 3000)]
    assert counts[0]["total"] == pytest.approx(sum(1.0 / (i + 1) for i in range(2000)))

    # With no client left it stops after its idle time, and the points are
    # in Parquet files pyarrow reads.
    assert stopped(recorded(local_env)["pid"], within=60), "the local server did not stop when idle"
    files = list((Path(local_env["STEPLAKE_DATA_DIR"]) / "data").rglob("*.parquet"))
    assert files
    assert sum(pq.read_metadata(f).num_rows for f in files if f.name.startswith("scalars")) == 5000


def test_a_killed_local_server_loses_nothing_acknowledged(venv: Path, local_env, tmp_path: Path) -> None:
    run = trainer(venv, local_env, tmp_path, "survivor", 400, pause=0.01)
    assert run.stdout is not None
    assert run.stdout.readline().startswith("server")
    time.sleep(1.5)
    os.kill(recorded(local_env)["pid"], signal.SIGKILL)
    out, err = run.communicate(timeout=180)
    assert run.returncode == 0, err
    assert "finished" in out
    rows = query(venv, local_env, "SELECT count(*) AS n, count(DISTINCT step) AS steps, max(step) AS last "
                                  "FROM scalars WHERE run_id = 'survivor'")
    assert rows == [{"n": 400, "steps": 400, "last": 399}]
    log = (Path(local_env["STEPLAKE_DATA_DIR"]) / "local-server.log").read_text()
    assert log.count("steplake listening on") == 2, log


def test_ui_serves_the_dashboard_of_the_local_data_and_trainers_keep_finding_it(
        venv: Path, local_env, tmp_path: Path) -> None:
    first = trainer(venv, local_env, tmp_path, "before-ui", 100)
    assert first.communicate(timeout=120)[0].count("finished") == 1
    grpc_port = recorded(local_env)["port"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        http_port = probe.getsockname()[1]
    ui = subprocess.Popen([str(venv / "bin" / "python"), "-m", "steplake", "ui", "--no-browser",
                           "--http", f"127.0.0.1:{http_port}"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=local_env)
    try:
        assert ui.stdout is not None
        line = ui.stdout.readline()
        assert f"http://127.0.0.1:{http_port}/" in line, (line, ui.stderr.read() if ui.poll() is not None else "")
        record = recorded(local_env)
        assert record["port"] == grpc_port and record["dashboard"] == f"http://127.0.0.1:{http_port}/"
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/", timeout=30) as page:
            assert page.status == 200
        # A trainer started now logs to the server the dashboard shows.
        second = trainer(venv, local_env, tmp_path, "with-ui", 100)
        out, err = second.communicate(timeout=120)
        assert f"server 127.0.0.1:{grpc_port}" in out, err
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/runs", timeout=30) as page:
            runs = page.read().decode()
        assert "before-ui" in runs and "with-ui" in runs, runs
    finally:
        ui.send_signal(signal.SIGINT)
        ui.communicate(timeout=60)
    assert stopped(recorded(local_env)["pid"], within=30)
