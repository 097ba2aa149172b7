// Host-side launch helpers shared by the kernels' launchers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "backend/launch.h"
#include "check.cuh"

namespace symopt {
namespace cuda {

// Calls f(std::integral_constant<int, G>{}) for the group size G = group, so a
// launcher instantiates one kernel per supported group size.
template <typename F>
void WithGroup(int group, F&& f) {
  switch (group) {
    case 1:
      f(std::integral_constant<int, 1>{});
      break;
    case 8:
      f(std::integral_constant<int, 8>{});
      break;
    case 32:
      f(std::integral_constant<int, 32>{});
      break;
    case backend::kBlockThreads:
      f(std::integral_constant<int, backend::kBlockThreads>{});
      break;
    default:
      throw Error("symopt cuda: unsupported thread-group size " +
                  std::to_string(group));
  }
}

// Grid size for `units` units of `group` threads; throws when the grid would
// exceed the device limit (2^31 - 1 blocks).
inline unsigned int GridFor(std::int64_t units, int group) {
  const std::int64_t blocks = backend::BlocksFor(units, group);
  SYMOPT_CHECK(blocks <= 0x7fffffffLL,
               "symopt cuda: " << units << " units need " << blocks
                               << " blocks, more than a grid holds");
  return static_cast<unsigned int>(blocks);
}

// Launches one thread group per unit: launch(group_constant, grid) must
// enqueue the kernel instantiated for decltype(group_constant)::value threads
// per unit on a grid of `grid` blocks of backend::kBlockThreads. Checks the
// launch (STYLE E3). Nothing happens for units <= 0.
template <typename F>
void LaunchGroups(std::int64_t units, int group, F&& launch) {
  if (units <= 0) return;
  WithGroup(group, [&](auto g) {
    launch(g, GridFor(units, decltype(g)::value));
    SYMOPT_CUDA_CHECK(cudaGetLastError());
  });
}

// The unit (row, class, ...) of this thread and its lane within the group.
template <int kGroup>
__device__ __forceinline__ std::int64_t UnitIndex() {
  return (std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kGroup;
}

template <int kGroup>
__device__ __forceinline__ int LaneIndex() {
  return int(threadIdx.x % kGroup);
}

}  // namespace cuda
}  // namespace symopt
