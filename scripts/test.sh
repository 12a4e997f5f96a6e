#!/usr/bin/env bash
# The whole steplake test suite, on a fresh machine.
#
# 1. Installs the Python packages the end-to-end tests use (pyarrow, DuckDB,
#    numpy, ruptures) into a virtual environment under ~/.cache/steplake
#    (override: STEPLAKE_VENV).
#    The same environment brings NVRTC, put on LD_LIBRARY_PATH so that the
#    GPU kernels are compiled by the real CUDA compiler (no GPU needed).
# 2. Fetches the all-MiniLM-L6-v2 checkpoint the import tests use (once).
# 3. Installs what the dashboard's browser test drives: Debian's Chromium
#    (apt, when missing) and playwright-core (npm ci in tests/browser).
# 4. Checks that the cargo target dir's disk has room (scripts/target-guard.sh
#    removes stale build artifacts when it does not).
# 5. Runs every Rust test of the workspace: unit tests, the end-to-end tests
#    in tests/ (which start the real binary on loopback), and doc tests.
# 6. Installs the Python package from python/ (as a user would, not
#    editable) and runs its pytest suite against the binary cargo just built.
#    Tests that need PyTorch, Lightning or transformers skip without them.
#    Among them, test_wheel.py packages that same debug binary into the wheel
#    (scripts/build-wheel.sh; no second build) and installs it into a fresh
#    virtual environment (its dependencies from PyPI).
#
# A failing test stops nothing: every test binary and the pytest suite run,
# every failure is listed again at the end, and the exit status is non-zero
# if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${STEPLAKE_VENV:-$HOME/.cache/steplake/venv}"
if [ ! -x "$venv/bin/python" ]; then
  echo "creating Python environment for the tests in $venv" >&2
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
export STEPLAKE_PYTHON="$venv/bin/python"
nvrtc_lib="$("$venv/bin/python" -c 'import importlib.util, os; s = importlib.util.find_spec("nvidia"); print(os.path.join(list(s.submodule_search_locations)[0], "cu13", "lib"))')"
export LD_LIBRARY_PATH="$nvrtc_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
STEPLAKE_MINILM="$(./scripts/fetch-minilm.sh)"
export STEPLAKE_MINILM

if [ ! -x /usr/bin/chromium ]; then
  echo "installing Chromium for the dashboard's browser test" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

log_dir="$(mktemp -d)"
trap 'rm -rf "$log_dir"' EXIT
failed_suites=()

./scripts/target-guard.sh
if ! cargo test --workspace --no-fail-fast 2>&1 | tee "$log_dir/cargo.log"; then
  failed_suites+=("cargo test --workspace")
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps ./python
export STEPLAKE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/steplake"
if ! "$venv/bin/python" -m pytest -q -rfEs -p no:cacheprovider python/tests 2>&1 | tee "$log_dir/pytest.log"; then
  failed_suites+=("pytest python/tests")
fi

if [ "${#failed_suites[@]}" -gt 0 ]; then
  echo
  echo "=== failed: ${failed_suites[*]}"
  grep -E '^test .* FAILED$|^error: .*target.* failed|^    `' "$log_dir/cargo.log" || true
  grep -E '^(FAILED|ERROR) ' "$log_dir/pytest.log" || true
  exit 1
fi
