#!/usr/bin/env bash
# Runs a bundle made by scripts/gpu_bundle.sh on a GPU machine, from the
# repository root (the Catch2 tests read fixtures under tests/): every test
# (exit 77 = skipped), every GPU benchmark, the PyTorch comparison where
# python3 has torch, then compute-sanitizer's memcheck over the GPU tests while
# time is left. Stops starting new work SECONDS (default 480) after it began,
# prints a summary and packs every log and JSON file into OUTDIR/results.tgz
# (one file: the device tool brings back at most 8). Exits non-zero when a
# test failed.
#   bash .gpu/run.sh OUTDIR [SECONDS]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(pwd)
out=${1:?usage: run.sh OUTDIR [SECONDS]}
budget=${2:-480}
start=$SECONDS
left() { echo $((budget - (SECONDS - start))); }
mkdir -p "$out"
logs=$(mktemp -d)
pack() { tar -C "$logs" -czf "$out/results.tgz" . ; }
trap pack EXIT

b=$(mktemp -d)
xz -dc "$here/bundle.tar.xz" | tar -C "$b" -xf -
export LD_LIBRARY_PATH="$b/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
{
  echo "commit $(cat "$b/COMMIT" 2>/dev/null)"
  date -u
  uname -srm
  ldd --version | head -1
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
  nproc
  command -v compute-sanitizer || echo "no compute-sanitizer"
} 2>&1 | tee "$logs/device.txt"

failed=0
for t in "$b"/bin/*_test; do
  name=$(basename "$t")
  if [ "$(left)" -lt 60 ]; then echo "NOT RUN $name (time)"; continue; fi
  t0=$SECONDS
  (cd "$root/tests" && SYMOPT_SOURCE_DIR="$root" timeout 300 "$t" --durations yes) \
    >"$logs/$name.log" 2>&1
  rc=$?
  case $rc in
    0) echo "PASS $name ($((SECONDS - t0)) s)" ;;
    77) echo "SKIP $name" ;;
    *) echo "FAIL $name (exit $rc, $((SECONDS - t0)) s)"; grep -B2 -A12 -E "FAILED|REQUIRE|CHECK|error" "$logs/$name.log" | head -n 60; failed=1 ;;
  esac
done 2>&1 | tee "$logs/tests.txt"
grep -q '^FAIL' "$logs/tests.txt" && failed=1

for p in "$b"/bin/*bench; do
  name=$(basename "$p")
  if [ "$(left)" -lt 60 ]; then echo "NOT RUN $name (time)"; continue; fi
  echo "== $name"
  timeout 200 "$p" --benchmark_counters_tabular=true --benchmark_out="$logs/$name.json" \
    --benchmark_out_format=json 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | tee "$logs/$name.log"
done

if [ -f "$b/pytorch_gpu_epoch.py" ] && [ "$(left)" -gt 60 ] && python3 -c 'import torch' 2>/dev/null; then
  echo "== pytorch_gpu_epoch.py"
  timeout 150 python3 "$b/pytorch_gpu_epoch.py" 2>&1 | tee "$logs/pytorch_gpu_epoch.log"
fi

if command -v compute-sanitizer >/dev/null; then
  for t in "$b"/bin/*_gpu_test; do
    name=$(basename "$t")
    l=$(left)
    if [ "$l" -lt 30 ]; then echo "memcheck NOT RUN $name (time)"; continue; fi
    (cd "$root/tests" && timeout "$((l - 10))" compute-sanitizer --tool memcheck \
      --error-exitcode 9 "$t") >"$logs/memcheck_$name.log" 2>&1
    echo "memcheck $name: exit $? ($(grep -c '=========  ' "$logs/memcheck_$name.log") sanitizer lines)"
    grep -m 8 -A6 "Invalid\|ERROR SUMMARY" "$logs/memcheck_$name.log"
  done 2>&1 | tee "$logs/memcheck.txt"
fi
echo "done after $((SECONDS - start)) s"
exit $failed
