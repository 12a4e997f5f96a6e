"""A steplake server for the science evaluations, driven through the CLI.

The evaluations write public training logs into a fresh data directory with
`steplake write` and ask their questions with `steplake sql`, so the numbers
they print are those of the SQL functions a user calls.
"""

from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import tempfile
from pathlib import Path


def binary() -> str:
    """The steplake binary: $STEPLAKE_BIN, or the release build."""
    if "STEPLAKE_BIN" in os.environ:
        return os.environ["STEPLAKE_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(Path(__file__).parents[2] / "target"))
    return str(Path(target) / "release" / "steplake")


class Server:
    """`steplake serve` on a free port over a temporary data directory."""

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="steplake-science-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [binary(), "serve", "--data-dir", self.dir.name, "--listen", f"127.0.0.1:{port}", "--http", "off"],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "STEPLAKE_LOG": "warn"},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on" not in line:
            raise SystemExit(f"steplake serve did not start: {line!r}")

    def write(self, run: str, csv_text: str, project: str = "science") -> None:
        """Writes `name,step,value` CSV rows into `run`."""
        out = subprocess.run(
            [binary(), "write", "--server", self.url, "--run", run, "--project", project, "-"],
            input=csv_text, text=True, capture_output=True,
        )
        if out.returncode != 0:
            raise SystemExit(f"steplake write failed: {out.stderr}")

    def sql(self, statement: str) -> list[dict[str, str]]:
        """The rows of a query, as strings by column name."""
        out = subprocess.run(
            [binary(), "sql", "--server", self.url, "--format", "csv", statement],
            text=True, capture_output=True,
        )
        if out.returncode != 0:
            raise SystemExit(f"query failed: {out.stderr}\n{statement}")
        return list(csv.DictReader(io.StringIO(out.stdout)))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.dir.cleanup()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
