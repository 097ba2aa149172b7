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
  // range by first member. Three layouts, the first that applies:
  //   row-periodic (row_classes > 0): every class lies in one row and every
  //     row is partitioned like row 0 (mirror pairs, rotation orbits of a
  //     filter bank): offsets/members describe row 0's row_classes classes
  //     (members are columns); position q is class q % row_classes of row
  //     q / row_classes, so the kernels read no per-entry index at all;
  //   contiguous: every class is a run of entries starting at starts[q];
  //   general (CSR): members[offsets[q] .. offsets[q + 1]).
  std::vector<std::int32_t> offsets;   // K + 1 (row_classes + 1 row-periodic)
  std::vector<std::int32_t> members;   // flat indices (columns, row-periodic),
                                       // ascending per class; empty when
                                       // contiguous
  std::vector<std::int32_t> starts;    // K first members (contiguous only)
  std::vector<std::int32_t> zeros;     // zeroed entries, ascending
  std::vector<std::int32_t> class_id;  // K: the pattern's id of position q
  bool contiguous = false;             // every class a run of entries
  std::int64_t row_classes = 0;        // > 0: the row-periodic layout
  std::int64_t cols = 0;
  std::int64_t num_small = 0;
  std::int64_t num_medium = 0;
  std::int64_t num_large = 0;
};

// The size of the class at position q and its j-th member (flat index):
// exactly what cuda/tie.cu computes per class.
inline std::int64_t ClassSize(const TieHostPlan& plan, std::int64_t q) {
  const std::int64_t k = plan.row_classes > 0 ? q % plan.row_classes : q;
  return plan.offsets[k + 1] - plan.offsets[k];
}
inline std::int64_t Member(const TieHostPlan& plan,
                           std::int64_t q,
                           std::int64_t j) {
  if (plan.row_classes > 0) {
    const std::int64_t k = q % plan.row_classes;
    return (q / plan.row_classes) * plan.cols +
           plan.members[plan.offsets[k] + j];
  }
  return plan.contiguous ? plan.starts[q] + j
                         : plan.members[plan.offsets[q] + j];
}

// Requires: pattern.IsValid(nullptr).
TieHostPlan BuildTieHostPlan(const TiePattern& pattern);

}  // namespace backend
}  // namespace symopt
