"""The examples run as the README says: examples/grokking.py prints the
emergence step, and the README's Python snippet runs as written."""

from __future__ import annotations

import os
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


README = Path(__file__).resolve().parents[2] / "README.md"


def run_readme_snippet(heading: str, server) -> subprocess.CompletedProcess[str]:
    """Runs the first Python block after ``heading`` in the README against ``server``."""
    text = README.read_text()
    section = text[text.index(heading):]
    snippet = section[section.index("```python\n") + len("```python\n"):]
    snippet = snippet[: snippet.index("```")]
    done = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "STEPLAKE_SERVER": server.address})
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_readme_python_snippet_runs_as_written(server):
    done = run_readme_snippet("## From Python", server)
    # The last three steps of the loss, as pandas prints them.
    assert "9999" in done.stdout, done.stdout


def test_the_readme_intervene_snippet_stops_at_the_spike(server):
    done = run_readme_snippet("### Intervene: stop when the loss spikes", server)
    assert "loss spike at step 3000" in done.stdout, done.stdout
    stopped = int(re.search(r"stopped at step (\d+)", done.stdout).group(1))
    assert 3000 <= stopped < 8_000, done.stdout
