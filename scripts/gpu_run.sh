#!/usr/bin/env bash
# Runs a bundle made by scripts/gpu_bundle.sh on a GPU machine: every GPU test
# (exit 77 = skipped), then every GPU benchmark, from the repository root (the
# tests that read data look under data/). Writes logs and benchmark JSON into
# OUTDIR and prints a summary; exits non-zero when a test failed.
#   bash .gpu/run.sh OUTDIR [BENCHMARK_ARGS...]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: run.sh OUTDIR [benchmark args]}
shift
mkdir -p "$out"
export LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
{
  echo "commit $(cat "$here/COMMIT" 2>/dev/null)"
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
} | tee "$out/device.txt"

failed=0
for t in "$here"/bin/*_gpu_test; do
  name=$(basename "$t")
  "$t" >"$out/$name.log" 2>&1
  rc=$?
  case $rc in
    0) echo "PASS $name" ;;
    77) echo "SKIP $name" ;;
    *) echo "FAIL $name (exit $rc)"; tail -n 40 "$out/$name.log"; failed=1 ;;
  esac
done | tee "$out/tests.txt"
grep -q '^FAIL' "$out/tests.txt" && failed=1

for b in "$here"/bin/*bench; do
  name=$(basename "$b")
  echo "== $name"
  "$b" --benchmark_counters_tabular=true --benchmark_out="$out/$name.json" \
    --benchmark_out_format=json "$@" 2>&1 | tee "$out/$name.log"
done
exit $failed
