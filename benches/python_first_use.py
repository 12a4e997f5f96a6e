"""What a newcomer's first minutes cost in Python: the first query, and a
trainer's memory while it logs tensors.

1. ``import steplake`` plus a first ``connect().sql(...).arrow()``, in a
   fresh interpreter each time (median of 7), with the server already up.
   Target (issue 23): <= 300 ms.
2. The peak RSS of a trainer that logs 200 tensors of 4 MiB as fast as it
   can, then finishes: with the default tensor byte budget (64 MiB queued),
   and with the budget lifted (every tensor queued at once, as before the
   budget existed). Prints both and their ratio.

Run:  STEPLAKE_BIN=target/release/steplake python benches/python_first_use.py
(``./scripts/bench-python.sh first-use`` builds the server and runs it).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from python_logging import start_server  # noqa: E402

FIRST_QUERY = """
import time
start = time.perf_counter()
import steplake
table = steplake.connect({address!r}).sql("SELECT 1 AS one").arrow()
assert table.num_rows == 1
print(time.perf_counter() - start)
"""

TENSOR_TRAINER = """
import resource
import numpy as np
import steplake
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tensor = np.random.default_rng(0).standard_normal(1 << 20).astype(np.float32)  # 4 MiB
with steplake.init(name="rss", server={address!r}, max_queued_tensor_bytes={budget}) as run:
    for step in range(200):
        run.log_tensor("w", tensor, step=step)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before / 1024, after / 1024)
"""


def python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def main() -> None:
    binary = os.environ.get("STEPLAKE_BIN")
    if not binary:
        raise SystemExit("set STEPLAKE_BIN to the steplake binary")
    data_dir = Path(tempfile.mkdtemp(prefix="steplake-first-use-"))
    server, address = start_server(binary, data_dir)
    try:
        python(FIRST_QUERY.format(address=address))  # warm the page cache
        times = [float(python(FIRST_QUERY.format(address=address))) for _ in range(7)]
        print(f"import steplake + first query: median {1000 * statistics.median(times):.0f} ms "
              f"(min {1000 * min(times):.0f}, max {1000 * max(times):.0f}) over {len(times)} fresh processes")
        rss = {}
        for label, budget in (("default 64 MiB budget", 64 << 20), ("no budget", 1 << 62)):
            before, after = map(float, python(TENSOR_TRAINER.format(address=address, budget=budget)).split())
            rss[label] = after
            print(f"trainer peak RSS logging 200 x 4 MiB tensors, {label}: {before:.0f} MiB -> {after:.0f} MiB")
        print(f"peak RSS ratio, default / no budget: {rss['default 64 MiB budget'] / rss['no budget']:.2f}")
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
