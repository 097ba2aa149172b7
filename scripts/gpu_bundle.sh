#!/usr/bin/env bash
# Packs the GPU tests and GPU benchmarks of a CUDA build, with the non-CUDA
# shared libraries they link, into one folder that runs on a GPU machine
# which has the CUDA runtime but none of symopt's build dependencies (the
# lent H100/H200 machines: nvcc, cuBLAS and a driver, no Eigen, Catch2 or
# Google Benchmark). Then scripts/gpu_run.sh, copied in as run.sh, runs it all
# there.
#
#   bash scripts/build.sh                    # a build with CUDA (nvcc present)
#   bash scripts/gpu_bundle.sh [BUILD] [DEST] # default: build .gpu
#   # on the GPU machine, from the repository root:
#   bash .gpu/run.sh OUTDIR                   # logs and JSON results in OUTDIR
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
dest=${2:-.gpu}

shopt -s nullglob
programs=("$build"/tests/*_gpu_test "$build"/bench/cuda_*_bench "$build"/bench/*_gpu_*bench)
if [ ${#programs[@]} -eq 0 ]; then
  echo "gpu_bundle: no GPU tests or benchmarks in $build (is it a CUDA build?)" >&2
  exit 1
fi

rm -rf "$dest"
mkdir -p "$dest/bin" "$dest/lib"
for p in "${programs[@]}"; do
  strip -o "$dest/bin/$(basename "$p")" "$p"
done
# Every shared library outside the CUDA toolkit and the C/C++ runtime.
for p in "$dest"/bin/*; do
  ldd "$p" | awk '$3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libcuda*|libcublas*|libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libstdc++*|libgcc_s*) ;;
    *) cp -L "$lib" "$dest/lib/" ;;
  esac
done
cp scripts/gpu_run.sh "$dest/run.sh"
git rev-parse HEAD >"$dest/COMMIT" 2>/dev/null || true
du -sh "$dest"
ls "$dest/bin" "$dest/lib"
