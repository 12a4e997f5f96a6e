"""Local-first mode: with no server configured and none on the default
address, ``steplake.init()`` and ``steplake.connect()`` use a local server,
started as a child process on first need and shared by every process of the
user on the machine.

- Its data directory is ``STEPLAKE_DATA_DIR``, else
  ``~/.local/share/steplake``.
- It listens on a free loopback port, with no dashboard (``steplake ui``
  opens one), and stops, flushing as a server does on SIGTERM, once no
  client has been connected for ``STEPLAKE_LOCAL_IDLE_SECS`` (300 s).
- ``local-server.json`` in the data directory says where it listens; a
  second process finds it there instead of starting another. A file lock
  (``local-server.lock``) makes the check-and-start atomic between
  processes.
- A logger that loses the server (it stopped, or was killed) asks again:
  the server is started anew, on the same port when it is free, and the
  logger sends what it spooled meanwhile.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

#: Seconds with no client connected after which the local server stops.
DEFAULT_IDLE_SECS = 300
_LISTENING = re.compile(r"steplake listening on (\S+) ")


class LocalServerError(RuntimeError):
    """The local server could not be started; the message says why."""


def data_dir() -> Path:
    """The local server's data directory."""
    configured = os.environ.get("STEPLAKE_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "steplake"


def program(name: str, environment: str) -> str | None:
    """A program: ``environment``'s value, else ``name`` beside this Python
    (where the wheel installs ``steplake``, and pip ``wandb``), else on PATH."""
    configured = os.environ.get(environment)
    if configured:
        return configured
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


def binary() -> str | None:
    """The ``steplake`` program: ``STEPLAKE_BIN``, else the one beside this
    Python (installed by the wheel), else on PATH."""
    return program("steplake", "STEPLAKE_BIN")


def accepting(address: str, timeout: float = 0.25) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with open(directory / "local-server.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _recorded(directory: Path) -> dict:
    try:
        return json.loads((directory / "local-server.json").read_text())
    except (OSError, ValueError):
        return {}


def wanted(server: str | None) -> bool:
    """Whether to use the local server: no ``server`` given, no
    ``STEPLAKE_SERVER``, and nothing listening on the default address."""
    from steplake._address import DEFAULT_SERVER

    return not server and not os.environ.get("STEPLAKE_SERVER") and not accepting(DEFAULT_SERVER)


def running() -> str | None:
    """The address of the local server when one runs, else None."""
    address = _recorded(data_dir()).get("address")
    return address if address and accepting(address) else None


def ensure(start_timeout: float = 60.0) -> str:
    """The address of the local server, started if none runs."""
    directory = data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        recorded = _recorded(directory)
        address = recorded.get("address")
        if address and accepting(address):
            return address
        return _start(directory, recorded.get("port"), start_timeout)


def _start(directory: Path, port: int | None, start_timeout: float) -> str:
    program = binary()
    if program is None:
        raise LocalServerError(
            "no steplake server is configured or running, and the steplake program was not "
            "found to start one: install the steplake wheel (it brings the program), put "
            "`steplake` on PATH or set STEPLAKE_BIN; or pass server= / set STEPLAKE_SERVER")
    idle = os.environ.get("STEPLAKE_LOCAL_IDLE_SECS") or str(DEFAULT_IDLE_SECS)
    log_path = directory / "local-server.log"
    deadline = time.monotonic() + start_timeout
    attempt = 0
    # The recorded port first (a logger that lost the server still dials
    # it), then any free one. A server that is still stopping holds the
    # data directory for a moment: such a start fails and is tried again.
    while time.monotonic() < deadline:
        listen_port = port if port and attempt % 2 == 0 else 0
        attempt += 1
        start = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:
            child = subprocess.Popen(
                [program, "serve", "--data-dir", str(directory), "--listen", f"127.0.0.1:{listen_port}",
                 "--http", "off", "--exit-when-idle", idle],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        while time.monotonic() < deadline:
            with open(log_path, "rb") as log:
                log.seek(start)
                found = _LISTENING.search(log.read().decode("utf-8", "replace"))
            if found:
                address = found.group(1)
                (directory / "local-server.json").write_text(json.dumps(
                    {"address": address, "port": int(address.rpartition(":")[2]), "pid": child.pid}))
                return address
            if child.poll() is not None:
                time.sleep(0.2)
                break
            time.sleep(0.02)
        else:
            child.kill()
            raise LocalServerError(f"the local steplake server did not start within {start_timeout:g} s; "
                                   f"see {log_path}")
    tail = log_path.read_text(errors="replace").splitlines()[-5:]
    raise LocalServerError("the local steplake server could not start: " + " / ".join(tail)
                           + f" (the whole log is {log_path})")
