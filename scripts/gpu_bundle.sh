#!/usr/bin/env bash
# Packs what a GPU machine must run into one compressed file, for a machine
# that has the CUDA runtime but none of symopt's build dependencies (the lent
# H100/H200 machines: a driver, CUDA 13 and cuBLAS, no Eigen, Catch2 or Google
# Benchmark): the GPU tests, the CPU tests whose behaviour changes when a
# device is present, the GPU benchmarks, the non-CUDA shared libraries they
# link and the PyTorch comparison script. scripts/gpu_run.sh, copied in as
# run.sh, unpacks and runs it all there.
#
#   bash scripts/build.sh                      # a build with CUDA (nvcc present)
#   bash scripts/gpu_bundle.sh [BUILD] [DEST]  # default: build .gpu
#   # on the GPU machine, from the repository root:
#   bash .gpu/run.sh OUTDIR [SECONDS]          # results in OUTDIR/results.tgz
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
dest=${2:-.gpu}

shopt -s nullglob
# The CPU tests listed here take the device path when a GPU is present.
device_aware=(cuda_dispatch_test nn_conv_ops_test nn_device_test optim_device_test optim_test)
programs=("$build"/tests/*_gpu_test "$build"/bench/cuda_*_bench "$build"/bench/*_gpu_*bench)
if [ ${#programs[@]} -eq 0 ]; then
  echo "gpu_bundle: no GPU tests or benchmarks in $build (is it a CUDA build?)" >&2
  exit 1
fi
for t in "${device_aware[@]}"; do programs+=("$build/tests/$t"); done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
for p in "${programs[@]}"; do
  strip -o "$stage/bin/$(basename "$p")" "$p"
done
# Every shared library outside the CUDA toolkit and the C/C++ runtime.
for p in "$stage"/bin/*; do
  ldd "$p" | awk '$3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libcuda*|libcublas*|libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libstdc++*|libgcc_s*) ;;
    *) cp -L "$lib" "$stage/lib/" ;;
  esac
done
cp bench/pytorch_gpu_epoch.py "$stage/" 2>/dev/null || true
git rev-parse HEAD >"$stage/COMMIT" 2>/dev/null || true
git status --short --untracked-files=no | grep -q . && echo "(+ uncommitted changes)" >>"$stage/COMMIT"

rm -rf "$dest"
mkdir -p "$dest"
tar -C "$stage" -cf - . | xz -T0 -6 >"$dest/bundle.tar.xz"
cp scripts/gpu_run.sh "$dest/run.sh"
du -sh "$dest"
ls "$stage/bin" "$stage/lib"
