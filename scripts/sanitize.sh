#!/usr/bin/env bash
# Runs symopt's CPU test suite, the examples and the symopt tool under
# AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer
# (docs/testing.md). For developers: CI does not call it (on 2 cores the
# sanitized build takes about 15 minutes, the run about 2).
#
#   scripts/sanitize.sh               configure + build <build dir>, run all
#   scripts/sanitize.sh -R oblique    extra arguments go to ctest; the
#                                     examples and the tool then do not run
#
# Environment: SANITIZE_BUILD_DIR (default build-asan), JOBS (build and ctest
# parallelism, default 2), SANITIZE_NO_BUILD=1 (reuse the build as it is),
# SYMOPT_MNIST_DIR / SYMOPT_FASHION_MNIST_DIR (data, as for the tests).
#
# Exit status: 0 when every test and program passed and no sanitizer reported
# anything; 1 otherwise. Program outputs are kept in <build dir>/sanitizer-logs/,
# test outputs in <build dir>/Testing/Temporary/LastTest.log.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${SANITIZE_BUILD_DIR:-build-asan}
case $build in /*) ;; *) build=$root/$build ;; esac
jobs=${JOBS:-2}

sanitizers=address,undefined,float-cast-overflow
if [ "${SANITIZE_NO_BUILD:-0}" != 1 ]; then
  launcher=()
  command -v ccache >/dev/null &&
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  # -O1 -g1: ASan's advice (fast enough, exact line numbers), and no NDEBUG,
  # so SYMOPT_DCHECK and Eigen's assertions run too.
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" \
    -DSYMOPT_WITH_CUDA=OFF -DSYMOPT_WITH_CERES=AUTO \
    -DSYMOPT_BUILD_BENCHMARKS=OFF "${launcher[@]}" \
    "-DCMAKE_CXX_FLAGS=-fsanitize=$sanitizers -fno-omit-frame-pointer -fno-sanitize-recover=all -D_GLIBCXX_ASSERTIONS" \
    "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=$sanitizers" \
    "-DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=$sanitizers" >/dev/null || exit 1
  cmake --build "$build" -j "$jobs" || exit 1
fi

# Reports go to stderr; -fno-sanitize-recover=all, halt_on_error and
# abort_on_error make any report fail its process. Reports are also searched
# for in every output afterwards (a child process's report may not fail its
# parent), so no finding goes unseen.
logs=$build/sanitizer-logs
rm -rf "$logs"
mkdir -p "$logs"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

failed=0
start=$(date +%s)
(cd "$build" && ctest -j "$jobs" --output-on-failure --timeout 1800 "$@") ||
  failed=1

# run NAME EXPECTED_STATUS COMMAND...: one program, its output in the logs.
run() {
  local name=$1 expected=$2
  shift 2
  "$@" >"$logs/$name.out" 2>&1
  local status=$?
  if [ "$status" -ne "$expected" ]; then
    echo "FAILED: $name exited with $status (expected $expected): $*"
    tail -n 20 "$logs/$name.out"
    failed=1
  else
    echo "ok: $name"
  fi
}

if [ $# -eq 0 ]; then
  ex=$build/examples
  run user_memory 0 "$ex/user_memory"
  [ -x "$ex/ceres_oblique" ] && run ceres_oblique 0 "$ex/ceres_oblique"
  for spec in examples/specs/*.json; do
    name=solve_$(basename "$spec" .json)
    run "$name" 0 "$build/apps/symopt" solve "$spec" --classes
    run "${name}_json" 0 "$build/apps/symopt" solve "$spec" --json
  done
  run solve_missing_file 2 "$build/apps/symopt" solve "$logs/no_such_spec.json"
  fashion=${SYMOPT_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
  if [ -r "$fashion/train-images-idx3-ubyte.gz" ]; then
    train=$ex/train_fashion_mnist
    model=$logs/mlp.model
    run train_mlp_sgd 0 "$train" --model mlp --manifold oblique --epochs 1 \
      --train-subset 2000 --threads 2 --save "$model"
    run train_mlp_load 0 "$train" --model mlp --manifold oblique --epochs 0 \
      --load "$model" --threads 2
    run train_cnn_nesterov 0 "$train" --model cnn --optimizer nesterov \
      --epochs 1 --train-subset 500 --threads 2
    run train_mlp_bold 0 "$train" --model mlp --optimizer bold --epochs 2 \
      --train-subset 1500 --validation 500 --threads 2
  else
    echo "skipped: train_fashion_mnist (no Fashion-MNIST in $fashion;" \
      "run scripts/setup_data.sh or set SYMOPT_FASHION_MNIST_DIR)"
  fi
fi

# Sanitizer reports and failed libstdc++ assertions (_GLIBCXX_ASSERTIONS) in
# any test's output (ctest keeps all of it in LastTest.log) or program's.
pattern='runtime error:|ERROR: (Address|Leak)Sanitizer|Sanitizer:DEADLYSIGNAL|Assertion .* failed'
if grep -E -l "$pattern" "$build/Testing/Temporary/LastTest.log" \
  "$logs"/*.out 2>/dev/null; then
  echo "=== sanitizer reports (first lines; full output in the files above) ==="
  grep -E -h -A3 "$pattern" "$build/Testing/Temporary/LastTest.log" \
    "$logs"/*.out 2>/dev/null | head -n 200
  failed=1
fi
echo "sanitize: $(($(date +%s) - start)) s of tests and programs;" \
  "$([ $failed -eq 0 ] && echo 'no findings' || echo 'FAILED')"
exit $failed
