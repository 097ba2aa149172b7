// Reductions within a thread group of kGroup consecutive threads (see
// src/backend/launch.h): kGroup = 1 (nothing to do), 8 or 32 (warp
// shuffles), or the whole block (kGroup == blockDim.x, a multiple of 32:
// shuffles, then one partial per warp in shared memory).
//
// Contract for callers: every thread of the block calls these functions the
// same number of times (no early return before the last reduction, and no
// reduction inside a branch that differs between groups of one warp), since
// the shuffles use the full warp mask and the block variant synchronises.
// Threads outside any unit take part with zero (or -inf) contributions.
//
// Every thread of a group receives the same bits: the xor butterfly adds the
// same two partial sums on both partners (addition is commutative), and the
// block variant has every thread add the warp partials in the same order. So
// decisions taken on the result (a collapsed row, a direct recomputation) are
// uniform within the group.
#pragma once

#include <cuda_runtime.h>

namespace symopt {
namespace cuda {

enum class ReduceOp { kSum, kMax };

template <ReduceOp kOp>
__device__ __forceinline__ double Combine(double a, double b) {
  if constexpr (kOp == ReduceOp::kSum) {
    return a + b;
  } else {
    return a > b ? a : b;
  }
}

// Reduces the K values v[0..K) over the group; every thread of the group gets
// the results in v.
template <int kGroup, int K, ReduceOp kOp = ReduceOp::kSum>
__device__ __forceinline__ void GroupReduce(double (&v)[K]) {
  static_assert(kGroup == 1 || kGroup == 8 || kGroup == 32 ||
                    (kGroup % 32 == 0 && kGroup <= 1024),
                "unsupported group size");
  if constexpr (kGroup == 1) {
    return;
  } else {
    constexpr int kWarpWidth = kGroup < 32 ? kGroup : 32;
#pragma unroll
    for (int k = 0; k < K; ++k) {
#pragma unroll
      for (int offset = kWarpWidth / 2; offset > 0; offset /= 2) {
        v[k] = Combine<kOp>(v[k], __shfl_xor_sync(0xffffffffu, v[k], offset));
      }
    }
    if constexpr (kGroup > 32) {
      constexpr int kWarps = kGroup / 32;
      __shared__ double partial[K][kWarps];
      const int warp = threadIdx.x / 32;
      const int lane = threadIdx.x % 32;
      __syncthreads();  // a previous call's readers are done with `partial`
      if (lane == 0) {
#pragma unroll
        for (int k = 0; k < K; ++k) partial[k][warp] = v[k];
      }
      __syncthreads();
#pragma unroll
      for (int k = 0; k < K; ++k) {
        double s = partial[k][0];
        for (int w = 1; w < kWarps; ++w) s = Combine<kOp>(s, partial[k][w]);
        v[k] = s;
      }
    }
  }
}

}  // namespace cuda
}  // namespace symopt
