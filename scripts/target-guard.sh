#!/usr/bin/env bash
# Keeps the shared cargo target dir from filling its disk.
#
# The target dir outlives every clone (CI and the README point CARGO_TARGET_DIR
# under ~/.cache), so compiled dependencies are reused. But the artifacts of
# our own crates are hashed by their checkout path: every clone at a new path
# adds a full set of test binaries, and nothing ever removes the old ones.
# Incremental caches grow the same way. Left alone, that filled a 250 GB disk
# and a CI run died in the linker with "No space left on device".
#
# When the target dir's filesystem has less than STEPLAKE_MIN_FREE_GIB free
# (default 30), this removes, in order, until there is enough:
#   1. the incremental caches and every artifact of the workspace's own
#      crates (`cargo clean -p`, all hashes): a few minutes to rebuild;
#   2. the whole debug profile: a cold debug build (about 20 minutes).
# Compiled third-party dependencies survive step 1, which is the point.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"
min_free_gib="${STEPLAKE_MIN_FREE_GIB:-30}"

free_gib() {
  local dir="$target"
  while [ ! -d "$dir" ]; do dir="$(dirname "$dir")"; done
  df -P -k "$dir" | awk 'NR == 2 { printf "%d", $4 / 1048576 }'
}

enough() { [ "$(free_gib)" -ge "$min_free_gib" ]; }

if enough; then
  exit 0
fi
echo "target-guard: $(free_gib) GiB free under $target (want $min_free_gib);" \
  "removing this workspace's stale build artifacts" >&2

rm -rf "$target/debug/incremental"
packages=$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json, sys; print(" ".join(p["name"] for p in json.load(sys.stdin)["packages"]))')
for package in $packages; do
  cargo clean --quiet --profile dev -p "$package"
done
if enough; then
  echo "target-guard: $(free_gib) GiB free now" >&2
  exit 0
fi

echo "target-guard: still $(free_gib) GiB free; removing the whole debug build" \
  "(the next build is a cold one)" >&2
cargo clean --quiet --profile dev
if ! enough; then
  echo "target-guard: only $(free_gib) GiB free after cleaning $target;" \
    "the build may run out of disk. Free space on that filesystem, or point" \
    "CARGO_TARGET_DIR at a larger one." >&2
fi
