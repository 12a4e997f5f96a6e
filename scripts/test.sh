#!/usr/bin/env bash
# The whole steplake test suite, on a fresh machine.
#
# 1. Installs the Python packages the end-to-end tests use (pyarrow, DuckDB,
#    numpy, ruptures) into a virtual environment under ~/.cache/steplake
#    (override: STEPLAKE_VENV).
# 2. Fetches the all-MiniLM-L6-v2 checkpoint the import tests use (once).
# 3. Runs every Rust test of the workspace: unit tests, the end-to-end tests
#    in tests/ (which start the real binary on loopback), and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${STEPLAKE_VENV:-$HOME/.cache/steplake/venv}"
if [ ! -x "$venv/bin/python" ]; then
  echo "creating Python environment for the tests in $venv" >&2
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
export STEPLAKE_PYTHON="$venv/bin/python"
STEPLAKE_MINILM="$(./scripts/fetch-minilm.sh)"
export STEPLAKE_MINILM

cargo test --workspace
