"""The spool: write requests the server has not acknowledged, on local disk.

Layout (one directory per logger instance)::

    SPOOL_ROOT/RUN_ID/WRITER_ID/
        run.json                 how to create (or resume) the run, and where
        00000000000000000042.req one serialized steplake.v1.WriteRequest,
                                 named by its sequence number
        finish.json              present once the run was finished: its status

Requests keep their writer id and sequence number, so uploading them again
(``steplake sync``, or the logger itself once the server is back) applies
each once. Files are written to a temporary name, fsynced and renamed, so a
crash leaves either the whole request or nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

#: Where spools go unless ``spool_dir=`` or ``STEPLAKE_SPOOL_DIR`` says otherwise.
DEFAULT_SPOOL_ROOT = Path.home() / ".cache" / "steplake" / "spool"


def spool_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The spool root: the argument, else ``STEPLAKE_SPOOL_DIR``, else the default."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("STEPLAKE_SPOOL_DIR")
    return Path(env) if env else DEFAULT_SPOOL_ROOT


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Spool:
    """One writer's spool directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _request_path(self, sequence: int) -> Path:
        return self.directory / f"{sequence:020d}.req"

    def has_run(self) -> bool:
        """Whether run.json was written."""
        return (self.directory / "run.json").exists()

    def write_run(
        self, run: dict[str, Any], writer_id: str, server: str, replace: bool = False
    ) -> None:
        """Records how to create the run (once per spool, unless ``replace``)."""
        path = self.directory / "run.json"
        if path.exists() and not replace:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = {"server": server, "writer_id": writer_id, "run": run}
        _write_atomically(path, json.dumps(meta, indent=2).encode())

    def put(self, sequence: int, payload: bytes) -> None:
        """Stores one serialized request."""
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_atomically(self._request_path(sequence), payload)

    def get(self, sequence: int) -> bytes:
        """Reads one stored request."""
        return self._request_path(sequence).read_bytes()

    def remove(self, sequence: int) -> None:
        """Forgets a request the server acknowledged."""
        try:
            self._request_path(sequence).unlink()
        except FileNotFoundError:
            pass

    def sequences(self) -> list[int]:
        """Sequence numbers of the stored requests, lowest first."""
        if not self.directory.is_dir():
            return []
        return sorted(
            int(p.stem) for p in self.directory.glob("*.req") if p.stem.isdigit()
        )

    def mark_finished(self, status: str) -> None:
        """Records that the run ended, so a later sync finishes it too."""
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.directory / "finish.json", json.dumps({"status": status}).encode())

    def finished_status(self) -> str | None:
        """The recorded final status, if the run was finished."""
        path = self.directory / "finish.json"
        if not path.exists():
            return None
        return str(json.loads(path.read_text()).get("status", "finished"))

    def run_meta(self) -> dict[str, Any]:
        """The contents of run.json."""
        return json.loads((self.directory / "run.json").read_text())

    def remove_all(self) -> None:
        """Deletes the spool once everything in it was delivered."""
        for name in ("run.json", "finish.json"):
            try:
                (self.directory / name).unlink()
            except FileNotFoundError:
                pass
        for leftover in self.directory.glob("*.tmp"):
            leftover.unlink()
        try:
            self.directory.rmdir()
            self.directory.parent.rmdir()  # the run's directory, when empty
        except OSError:
            pass


def find_spools(root: Path) -> Iterator[Spool]:
    """Every writer spool under ``root`` (root itself may be one)."""
    for meta in sorted(root.rglob("run.json")):
        yield Spool(meta.parent)
