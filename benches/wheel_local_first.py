"""The first minutes of a Python user (issue 25): the wheel's size, the time
from ``pip install`` of the local wheel to the first point logged, and the
time of a local-first ``steplake.init()`` (no server running: it starts one).

    ./scripts/build-wheel.sh                       # release wheel in dist/
    python benches/wheel_local_first.py dist/steplake-*.whl

Each figure is measured in a fresh virtual environment and a fresh data
directory; ``pip install`` takes the dependencies (numpy, pyarrow, grpcio,
protobuf) from pip's cache when they are there, as on a second install.
Prints one line per figure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIRST_POINT = """
import json, time
started = time.perf_counter()
import steplake
imported = time.perf_counter()
run = steplake.init(project="bench")
initialised = time.perf_counter()
run.log({"loss": 1.0}, step=0)
assert run.flush(60)
logged = time.perf_counter()
run.finish()
print(json.dumps({"import": imported - started, "init": initialised - imported,
                  "first_point": logged - started, "server": run.server}))
"""


def main(wheel: Path) -> None:
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 2**20:.1f} MiB")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        env = {k: v for k, v in os.environ.items()
               if k not in ("STEPLAKE_SERVER", "STEPLAKE_BIN", "PYTHONPATH")}
        env.update(STEPLAKE_DATA_DIR=str(root / "data"), STEPLAKE_SPOOL_DIR=str(root / "spool"),
                   STEPLAKE_LOCAL_IDLE_SECS="30")
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, env=env)
        python = root / "venv" / "bin" / "python"
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
                       check=True, env=env)
        installed = time.perf_counter() - started
        out = subprocess.run([str(python), "-c", FIRST_POINT], check=True, env=env, capture_output=True, text=True)
        total = time.perf_counter() - started
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"venv + pip install of the wheel: {installed:.1f} s")
        print(f"pip install to the first point acknowledged: {total:.1f} s "
              f"(of which the script: import {figures['import']:.2f} s, init {figures['init']:.2f} s)")
        # A second init while the local server runs: it is found, not started.
        again = subprocess.run([str(python), "-c", FIRST_POINT], check=True, env=env, capture_output=True, text=True)
        found = json.loads(again.stdout.strip().splitlines()[-1])
        print(f"local-first init(): {figures['init'] * 1000:.0f} ms starting the local server, "
              f"{found['init'] * 1000:.0f} ms finding it running")
        pid = json.loads((root / "data" / "local-server.json").read_text())["pid"]
        os.kill(pid, 15)  # it flushes and stops before its directory goes
        while Path(f"/proc/{pid}").exists():
            time.sleep(0.05)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
