"""When the server is away: the spool, automatic upload, and sync."""

from __future__ import annotations

import subprocess
import sys
import time

import steplake
from steplake.sync import sync

import pytest
from conftest import Server, free_port, steplake_binary


def count(address: str, run_id: str) -> int:
    result = steplake.connect(address).sql(f"SELECT count(*) AS n FROM scalars WHERE run_id = '{run_id}'")
    return result.arrow().to_pylist()[0]["n"]


SYNC_COMMANDS = {
    "python -m steplake sync": lambda: [sys.executable, "-m", "steplake", "sync"],
    "steplake sync": lambda: [steplake_binary(), "sync"],
}


@pytest.mark.parametrize("uploader", sorted(SYNC_COMMANDS))
def test_unreachable_server_spools_and_sync_uploads(tmp_path, spool_dir, capfd, uploader):
    address = f"127.0.0.1:{free_port()}"  # nobody listens here yet
    run = steplake.init(project="offline", name="spooled", server=address)
    for step in range(5000):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    run.log_tensor("w", [[1.0, 2.0], [3.0, 4.0]], step=1)
    run.finish(timeout=1.0)
    err = capfd.readouterr().err
    assert err.count("cannot reach the steplake server") == 1, err
    assert "steplake sync" in err
    writer_dirs = list((spool_dir / run.id).iterdir())
    assert len(writer_dirs) == 1
    assert (writer_dirs[0] / "finish.json").exists()

    server = Server(tmp_path / "data", port=int(address.rsplit(":", 1)[1])).start()
    try:
        done = subprocess.run(SYNC_COMMANDS[uploader]() + [str(spool_dir)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "uploaded" in done.stdout
        assert count(server.address, run.id) == 5000
        meta = steplake.connect(server.address).sql(
            "SELECT project, name, status FROM runs").arrow().to_pylist()
        assert meta == [{"project": "offline", "name": "spooled", "status": "finished"}]
        tensors = steplake.connect(server.address).sql("SELECT dtype, shape, tensor, tensor_f64 FROM tensors").tensors()
        assert tensors[0].tolist() == [[1.0, 2.0], [3.0, 4.0]]
        assert not (spool_dir / run.id).exists(), "an uploaded spool is deleted"
        # A second sync finds nothing left to do.
        assert sync(spool_dir).batches == 0
    finally:
        server.kill()


def test_sync_twice_applies_once(tmp_path, spool_dir):
    address = f"127.0.0.1:{free_port()}"
    run = steplake.init(server=address)
    for step in range(100):
        run.log({"x": float(step)}, step=step)
    run.finish(timeout=0.5)
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(spool_dir), str(copy)], check=True)
    server = Server(tmp_path / "data", port=int(address.rsplit(":", 1)[1])).start()
    try:
        assert sync(spool_dir).duplicates == 0
        report = sync(copy)
        assert report.batches >= 1 and report.duplicates == report.batches
        assert count(server.address, run.id) == 100
    finally:
        server.kill()


def test_a_server_that_comes_up_later_gets_everything_without_sync(tmp_path, spool_dir, capfd):
    port = free_port()
    run = steplake.init(server=f"127.0.0.1:{port}")
    for step in range(300):
        run.log({"x": float(step)}, step=step)
    time.sleep(1.0)
    server = Server(tmp_path / "data", port=port).start()
    try:
        for step in range(300, 600):
            run.log({"x": float(step)}, step=step)
        run.finish(timeout=60)
        assert count(server.address, run.id) == 600
        assert not (spool_dir / run.id).exists()
        assert "reconnected" in capfd.readouterr().err
    finally:
        server.kill()


@pytest.mark.parametrize("uploader", sorted(SYNC_COMMANDS))
def test_sync_of_a_missing_directory_says_so(tmp_path, uploader):
    done = subprocess.run(SYNC_COMMANDS[uploader]() + [str(tmp_path / "nope")],
                          capture_output=True, text=True)
    assert done.returncode in (1, 2)
    assert "not a directory" in done.stderr or "does not exist" in done.stderr


def test_a_server_that_lost_the_run_gets_it_created_again(tmp_path):
    port = free_port()
    first = Server(tmp_path / "first", port=port).start()
    run = steplake.init(name="moved", server=f"127.0.0.1:{port}")
    for step in range(100):
        run.log({"x": float(step)}, step=step)
    assert run.flush()
    first.kill()
    second = Server(tmp_path / "second", port=port).start()  # a fresh data directory
    try:
        for step in range(100, 200):
            run.log({"x": float(step)}, step=step)
        run.finish(timeout=60)
        assert count(second.address, run.id) == 100
        names = steplake.connect(second.address).sql("SELECT name, status FROM runs").arrow().to_pylist()
        assert names == [{"name": "moved", "status": "finished"}]
    finally:
        second.kill()
