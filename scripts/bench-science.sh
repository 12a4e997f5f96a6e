#!/usr/bin/env bash
# Runs the science evaluations of benches/science/ on the public training
# logs kept there: `spikes` (is_spike against hindsight labels), `loss`
# (final-loss prediction from a 30% prefix), or both (no argument). Builds
# the release binary and installs numpy and scipy into the test environment
# (~/.cache/steplake/venv, override: STEPLAKE_VENV).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${STEPLAKE_VENV:-$HOME/.cache/steplake/venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r benches/requirements-python.txt
cargo build --release --bin steplake
export STEPLAKE_BIN="${STEPLAKE_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/steplake}"
which="${1:-all}"
if [ "$which" = spikes ] || [ "$which" = all ]; then
  "$venv/bin/python" benches/science/spikes.py
fi
if [ "$which" = loss ] || [ "$which" = all ]; then
  "$venv/bin/python" benches/science/loss_prediction.py
fi
