#!/usr/bin/env bash
# Runs benches/python_logging.py: logging and reading 1M points from Python,
# steplake vs TensorBoard; or, as `bench-python.sh first-use`,
# benches/python_first_use.py (first query time, trainer memory under
# log_tensor). Builds the release server, and installs the package and
# tensorboard into the test environment (~/.cache/steplake/venv, override:
# STEPLAKE_VENV). Extra arguments go to the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${STEPLAKE_VENV:-$HOME/.cache/steplake/venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt -r benches/requirements-python.txt
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps ./python
cargo build --release --bin steplake
export STEPLAKE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/steplake"
if [ "${1:-}" = "first-use" ]; then
  shift
  exec "$venv/bin/python" benches/python_first_use.py "$@"
fi
"$venv/bin/python" benches/python_logging.py "$@"
