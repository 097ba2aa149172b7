#!/usr/bin/env bash
# Runs the CPU benchmarks behind bench/RESULTS.md, one after the other, and
# writes each program's output to OUT_DIR (default bench-results/). Run on a
# quiet machine after `bash scripts/build.sh`:
#
#   bash bench/run_cpu.sh [OUT_DIR]
#
# The PyTorch comparison needs Debian's python3-torch (apt-get install -y
# python3-torch), torch_step_bench a build with LibTorch; each is skipped
# when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-results}
mkdir -p "$out"
b=build/bench
strip() { sed 's/\x1b\[[0-9;]*m//g'; }
{ date -u; uname -srm; lscpu | grep -E 'Model name|^CPU\(s\)|L2|L3'; } > "$out/machine.txt"

# One thread on one core (the main thread's CPU time then measures the whole
# step), then two threads; BM_Paired's table is the measure of record.
pin=""
if [ "$(nproc)" -ge 2 ] && command -v taskset > /dev/null; then pin="taskset -c 1"; fi
$pin $b/oblique_bench --benchmark_filter='threads:1/' --benchmark_repetitions=5 | strip > "$out/oblique_1thread.txt"
$b/oblique_bench --benchmark_filter='threads:2/' --benchmark_repetitions=5 | strip > "$out/oblique_2threads.txt"
$b/tie_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true | strip > "$out/tie.txt"
$b/constraint_bench --benchmark_counters_tabular=true | strip > "$out/constraint.txt"
$b/optim_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true | strip > "$out/optim.txt"
$b/step_call_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true | strip > "$out/step_call.txt"
$b/group_nn_bench --benchmark_counters_tabular=true --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true | strip > "$out/group_nn_2threads.txt"
OMP_NUM_THREADS=1 $b/group_nn_bench --benchmark_filter='Flip|Dense' --benchmark_counters_tabular=true \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true | strip > "$out/group_nn_1thread.txt"
$b/nn_model_io_bench | strip > "$out/model_io.txt"
$b/nn_bench --threads=1 --benchmark_filter='Linear|Conv2d' | strip > "$out/nn_layers.txt"
$b/nn_bench --threads=2 --benchmark_filter='CnnEpoch' | strip > "$out/cnn_epoch.txt"
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  for t in 1 2; do
    /usr/bin/python3 bench/pytorch_mlp_epoch.py --threads $t --bench $b/nn_bench > "$out/mlp_epoch_vs_pytorch_${t}thread.txt"
  done
fi
# Built only where LibTorch is installed (SYMOPT_WITH_TORCH=1 bash scripts/install_deps.sh).
if [ -x $b/torch_step_bench ]; then
  $b/torch_step_bench --benchmark_repetitions=3 | strip > "$out/torch_step.txt"
fi
echo "results in $out/"
