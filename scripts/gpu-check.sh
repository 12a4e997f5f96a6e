#!/usr/bin/env bash
# The GPU codec's check on a real GPU (docs/gpu.md): byte equality with the
# CPU path, device throughput, and server ingest with --gpu on against off.
#
# Two halves, because the GPU machine this project is lent (the `device`
# tool) cannot reach crates.io and so cannot build:
#
#   scripts/gpu-check.sh stage
#       Here: builds the release binaries (steplake, the gpu_device test, the
#       gpu and tensors benches), and packs them with a MiniLM subset into
#       .gpu-check/bundle.tar.xz (git-ignored; about 20 MB).
#   scripts/gpu-check.sh run OUTDIR
#       On the GPU machine, from the repository root: unpacks the bundle,
#       finds libcuda and NVRTC, runs everything with a time limit per step,
#       and writes every figure and log into OUTDIR (at most 7 files).
#
# With the device tool: run(command="bash scripts/gpu-check.sh run $OUT",
# carry=[".gpu-check"], timeout_s=540). GPU_CHECK_SECONDS (default 480) bounds
# the whole run: steps past it are skipped and say so.
#
# On a GPU machine that can build, `stage` then `run` on the same machine
# does the same.
set -uo pipefail
cd "$(dirname "$0")/.."
stage_dir=.gpu-check

stage() {
  set -e
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/steplake/target-release}"
  mkdir -p "$stage_dir"
  grep -qx "/$stage_dir/" .git/info/exclude 2>/dev/null || echo "/$stage_dir/" >> .git/info/exclude
  local pack
  pack="$(mktemp -d)"
  trap 'rm -rf "$pack"' RETURN
  # One cargo invocation, so that every target shares one feature set.
  cargo build --release --workspace --bin steplake --test gpu_device --bench gpu --bench tensors \
    --message-format=json-render-diagnostics > "$pack/cargo.json"
  python3 - "$pack" <<'PY'
import json, shutil, sys
pack = sys.argv[1]
wanted = {("bin", "steplake"): "steplake", ("test", "gpu_device"): "gpu_device",
          ("bench", "gpu"): "gpu_bench", ("bench", "tensors"): "tensors_bench"}
found = {}
for line in open(f"{pack}/cargo.json"):
    msg = json.loads(line)
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    for kind in msg["target"]["kind"]:
        name = wanted.get((kind, msg["target"]["name"]))
        if name:
            found[name] = msg["executable"]
missing = set(wanted.values()) - set(found)
if missing:
    sys.exit(f"cargo built no {sorted(missing)}")
for name, path in found.items():
    shutil.copy(path, f"{pack}/{name}")
PY
  strip "$pack"/steplake "$pack"/gpu_device "$pack"/gpu_bench "$pack"/tensors_bench
  # MiniLM's layers 0 and 5 and its small embeddings: every kind of weight
  # it has, in ~15 MB (all 90 MB would not fit the device's 64 MiB carry).
  local minilm
  minilm="$(./scripts/fetch-minilm.sh)"
  python3 - "$minilm" "$pack/minilm-subset.safetensors" <<'PY'
import json, struct, sys
src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
(n,) = struct.unpack("<Q", data[:8])
header = json.loads(data[8:8 + n])
body = data[8 + n:]
keep = {k: v for k, v in header.items() if k != "__metadata__"
        and "word_embeddings" not in k
        and ("layer." not in k or ".layer.0." in k or ".layer.5." in k)}
out_header, chunks, offset = {}, [], 0
for name, entry in sorted(keep.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    start, end = entry["data_offsets"]
    chunks.append(body[start:end])
    out_header[name] = {**entry, "data_offsets": [offset, offset + end - start]}
    offset += end - start
encoded = json.dumps(out_header).encode()
encoded += b" " * (-len(encoded) % 8)
with open(dst, "wb") as f:
    f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks))
print(f"MiniLM subset: {len(out_header)} tensors, {offset / 1e6:.1f} MB", file=sys.stderr)
PY
  tar -C "$pack" -cJf "$stage_dir/bundle.tar.xz" steplake gpu_device gpu_bench tensors_bench minilm-subset.safetensors
  git rev-parse HEAD > "$stage_dir/commit"
  git status --porcelain >> "$stage_dir/commit"
  ls -l "$stage_dir"
}

# Runs "$@" under a time limit (at most what is left of the whole check's
# GPU_CHECK_SECONDS), output appended to the log $1.
step() {
  local log="$1" limit="$2"
  shift 2
  local left=$((deadline - $(date +%s)))
  if [ "$left" -lt 10 ]; then
    echo "=== skipped (out of time): $*" >> "$log"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "=== $(date -u +%H:%M:%S) $*" >> "$log"
  timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
  local rc=$?
  echo "=== exit $rc" >> "$log"
  return 0
}

run() {
  local out="${1:?usage: scripts/gpu-check.sh run OUTDIR}"
  deadline=$(($(date +%s) + ${GPU_CHECK_SECONDS:-480}))
  mkdir -p "$out"
  local bin=/tmp/gpu-check
  mkdir -p "$bin"
  python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" \
    "$stage_dir/bundle.tar.xz" "$bin" || { echo "cannot unpack $stage_dir/bundle.tar.xz: run stage first" >&2; exit 1; }
  # libcuda from the driver, NVRTC from the CUDA toolkit or its wheel.
  local dirs=""
  for lib in libcuda.so.1 libnvrtc.so.13 libnvrtc-builtins.so.13.0; do
    local found
    found="$(find /usr/local/nvidia /usr/local/cuda* /usr/lib/x86_64-linux-gnu /opt -name "$lib*" 2>/dev/null | head -1)"
    [ -n "$found" ] && dirs="$dirs:$(dirname "$found")"
  done
  export LD_LIBRARY_PATH="${dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export STEPLAKE_MINILM="$bin/minilm-subset.safetensors"
  export STEPLAKE_BENCH_BIN="$bin/steplake"

  local env_log="$out/environment.txt"
  {
    date -u
    cat "$stage_dir/commit" 2>/dev/null
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    nvidia-smi | head -15
    nvcc --version 2>/dev/null | tail -2
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    nproc
    uname -r
  } > "$env_log" 2>&1

  step "$out/tests.log" 180 "$bin/gpu_device" --ignored --test-threads=1 --nocapture
  step "$out/bench.log" 150 "$bin/gpu_bench"
  # Server ingest of 1 GiB, as 1,024 tensors of 1 MiB and as 16 of 64 MiB.
  for gpu in on off; do
    STEPLAKE_GPU=$gpu step "$out/ingest.log" 60 "$bin/tensors_bench"
    STEPLAKE_GPU=$gpu STEPLAKE_BENCH_TENSOR_STEPS=16 STEPLAKE_BENCH_TENSOR_KIB=65536 \
      step "$out/ingest.log" 60 "$bin/tensors_bench"
  done
  # Memory errors and races the equality checks cannot see; small cases only.
  if command -v compute-sanitizer > /dev/null; then
    step "$out/sanitizer.log" 90 compute-sanitizer --tool memcheck --print-limit 20 \
      "$bin/gpu_device" --ignored --test-threads=1 frames_and_statistics_equal_the_cpu_path
  fi
  grep -hE "^(test |GPU|device|\||batch|statistics|host planning|ingest|final flush|bytes on disk|steplake tensor|=== exit|.*ERROR SUMMARY)" \
    "$out"/*.log > "$out/summary.txt" 2>/dev/null
  cat "$out/summary.txt"
}

case "${1:-}" in
  stage) stage ;;
  run) shift; run "$@" ;;
  *) echo "usage: scripts/gpu-check.sh stage | run OUTDIR" >&2; exit 2 ;;
esac
