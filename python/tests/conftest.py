"""Fixtures: the real ``steplake`` binary on a free loopback port.

``STEPLAKE_BIN`` names the binary (``scripts/test.sh`` sets it to the one
cargo just built); tests fail with that hint when it is missing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest


def steplake_binary() -> str:
    path = os.environ.get("STEPLAKE_BIN")
    if not path or not Path(path).is_file():
        pytest.fail(
            "set STEPLAKE_BIN to the steplake binary (scripts/test.sh does: "
            "cargo builds it, then this suite runs against it)"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A ``steplake serve`` process that can be killed and started again."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> "Server":
        deadline = time.monotonic() + 30
        while True:
            self.process = subprocess.Popen(
                [steplake_binary(), "serve", "--data-dir", str(self.data_dir),
                 "--listen", self.address, "--http", "off"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={**os.environ, "STEPLAKE_LOG": "warn"},
            )
            assert self.process.stdout is not None
            line = self.process.stdout.readline()
            if "listening on" in line:
                return self
            # The port may still be held by the process we just killed.
            self.process.wait()
            if time.monotonic() > deadline:
                raise RuntimeError(f"steplake serve did not start: {line!r} {self.process.stderr.read() if self.process.stderr else ''}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        """SIGTERM and a clean exit."""
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
            self.process = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "data").start()
    yield s
    s.kill()


@pytest.fixture(autouse=True)
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test spools into its own directory."""
    directory = tmp_path / "spool"
    monkeypatch.setenv("STEPLAKE_SPOOL_DIR", str(directory))
    return directory
