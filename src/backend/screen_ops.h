// Index maths of the optimizers' fused NaN/Inf screen (cuda/optim.cu),
// written once for the kernel and the host side that builds its
// descriptors and decodes its result (src/optim_state.cpp), so the CPU tests
// check exactly what the kernel computes (STYLE M1/M2: no thread indices
// here; the kernel passes the chunk).
//
// The device tensors' entries are laid end to end in chunks of
// backend::kChunkElements: tensor t owns chunks first_chunk[t] ..
// first_chunk[t + 1] - 1 (first_chunk: prefix sums of ChunksFor(n_t)) and
// global indices offset[t] .. offset[t] + n_t - 1 (offset: prefix sums of
// n_t). A hit is reported as one global index; the smallest one wins. A
// chunk's tensor, and a global index's, is backend::FindSegment of the
// respective prefix array (src/backend/launch.h).
#pragma once

#include <cstdint>

#include "backend/launch.h"
#include "manifolds/check.h"

namespace symopt {
namespace backend {

struct ScreenOps {
  // The entries [*begin, *end) of its tensor that chunk `chunk` covers, for
  // a tensor of n entries whose first chunk is `first`.
  static SYMOPT_HD void ChunkRange(std::int64_t chunk,
                                   std::int64_t first,
                                   std::int64_t n,
                                   std::int64_t* begin,
                                   std::int64_t* end) {
    *begin = (chunk - first) * kChunkElements;
    *end = *begin + kChunkElements < n ? *begin + kChunkElements : n;
  }
};

}  // namespace backend
}  // namespace symopt
