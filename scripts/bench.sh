#!/usr/bin/env bash
# Runs every benchmark in bench/ (bench_*.py) against the build in $1; each prints its table.
set -euo pipefail
build_dir=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
export SETDET_OPS_LIB="$root/$build_dir/lib/libsetdet_ops.so"
export SETDET_BIN="$root/$build_dir/bin/setdet"
# One glibc malloc regime for every side of every benchmark: the setdet CLI raises glibc's mmap and
# trim thresholds at start (setdet::keep_freed_memory_for_reuse: freed tensors are reused instead
# of faulted in again), so its Python peers get the same thresholds from the environment (which
# the CLI then leaves as they are). See docs/benchmarks.md#inference-latency.
export MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=17179869184
# The ONNX Runtime column of bench_infer.py needs node + npm (npm's onnxruntime-node); when they are
# missing, try Debian's packages, and otherwise that column is reported as unavailable.
if ! command -v npm >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null 2>&1 ||
    echo "bench: nodejs/npm could not be installed; ONNX Runtime will be reported as unavailable"
fi
echo "setdet benchmarks, $(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for bench in "$root"/bench/bench_*.py; do
  echo
  echo "== $(basename "$bench") =="
  /usr/bin/python3 "$bench"
done
