#!/usr/bin/env bash
# Builds the steplake wheel: the Python package with the `steplake` program
# inside, so that `pip install` of it brings the server, the dashboard
# (embedded in the program) and the command line, with no Rust toolchain
# or Node.js.
#
#   ./scripts/build-wheel.sh                 # release build, wheel in dist/
#   ./scripts/build-wheel.sh BINARY [OUTDIR] # package a program cargo already built
#
# With no BINARY it builds `cargo build --release --bin steplake` (under
# CARGO_TARGET_DIR when set). The program's version must be the package's
# (python/pyproject.toml); it is stripped of debug symbols in the wheel.
# The wheel is tagged for this machine's glibc and CPU
# (manylinux_<glibc>_<arch>): pip installs it there and on newer systems.
set -euo pipefail
cd "$(dirname "$0")/.."

binary="${1:-}"
out="${2:-dist}"
if [ -z "$binary" ]; then
  cargo build --release --bin steplake
  binary="${CARGO_TARGET_DIR:-$PWD/target}/release/steplake"
fi
python="${STEPLAKE_PYTHON:-python3}"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The pure-Python wheel first (setuptools writes the metadata), then the
# program is added to it.
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$work" ./python
cp "$binary" "$work/steplake"
if command -v strip >/dev/null; then
  strip --strip-debug "$work/steplake"
fi
"$python" scripts/wheel_with_binary.py "$work"/steplake-*-py3-none-any.whl "$work/steplake" "$out"
