"""examples/grokking.py runs as the README says and prints the emergence step."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "grokking.py"


def test_grokking_example_prints_when_test_accuracy_emerged(server):
    done = subprocess.run([sys.executable, str(EXAMPLE), "--server", server.address],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    emerged = dict(re.findall(r"(train/acc|test/acc)\s+emerged at step (\d+)", done.stdout))
    assert set(emerged) == {"train/acc", "test/acc"}, done.stdout
    # Grokking: memorised early, generalised much later.
    assert int(emerged["train/acc"]) < 300
    assert int(emerged["test/acc"]) > int(emerged["train/acc"]) + 500
    assert "grokking" in done.stdout
