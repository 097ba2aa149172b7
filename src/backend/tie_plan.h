// The host-side layout of a tie pattern for the CUDA kernels (see
// cuda::TiePlan in cuda/cuda_backend.h), computed from the class ids alone.
// Kept apart from the device upload so the CPU tests can check it.
#pragma once

#include <cstdint>
#include <vector>

#include "manifolds/tie_subspace.h"

namespace symopt {
namespace backend {

struct TieHostPlan {
  // Classes renumbered by position q: first the classes whose size gets one
  // thread (TieClassGroup == 1), then a warp, then a block; within each
  // range by first member.
  std::vector<std::int32_t> offsets;  // K + 1: members of q are [offsets[q],
                                      // offsets[q + 1]) of the member list
  std::vector<std::int32_t> members;  // flat indices, ascending per class;
                                      // empty when contiguous
  std::vector<std::int32_t> starts;   // K first members (contiguous only)
  std::vector<std::int32_t> zeros;    // zeroed entries, ascending
  std::vector<std::int32_t> class_id; // K: the pattern's id of position q
  bool contiguous = false;            // every class a run of entries
  std::int64_t num_small = 0;
  std::int64_t num_medium = 0;
  std::int64_t num_large = 0;
};

// Requires: pattern.IsValid(nullptr).
TieHostPlan BuildTieHostPlan(const TiePattern& pattern);

}  // namespace backend
}  // namespace symopt
