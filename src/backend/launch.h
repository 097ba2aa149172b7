// Launch-configuration maths of the CUDA backend, kept in a plain header so
// the CPU tests can check it (tests/cuda_dispatch_test.cpp) without a device.
//
// The kernels cut work into "units" (a row of an oblique block, a class of a
// tie pattern) and give each unit a *group* of kGroup consecutive threads of
// a kBlockThreads-thread block (kGroup = 1, 8, 32 or 256): the group's
// threads share the unit's reductions (warp shuffles, or shared memory when
// the group is the whole block) and then apply the result elementwise on a
// strided range lane, lane + kGroup, ... (STYLE M2: the Ops take the range
// from here, never from threadIdx).
//
// Multi-tensor launches lay the units of several tensors end to end; a unit
// finds its tensor by binary search in the prefix array `first` (FindSegment).
#pragma once

#include <cstdint>

#include "manifolds/check.h"

namespace symopt {
namespace backend {

constexpr int kBlockThreads = 256;

// Threads per oblique row: a short row gets a fraction of a warp, a medium row
// a warp, a long row a whole block (enough loads in flight per row, and no
// more than a few idle lanes).
inline int ObliqueRowGroup(std::int64_t cols) {
  if (cols <= 64) return 8;
  if (cols < 1024) return 32;
  return kBlockThreads;
}

// Threads per tie class of `size` members: small classes (pairs, orbits of a
// rotation group) one thread each, so neighbouring threads read neighbouring
// entries; medium classes a warp; large classes (a whole shared row) a block.
inline int TieClassGroup(std::int64_t size) {
  if (size <= 16) return 1;
  if (size <= 2048) return 32;
  return kBlockThreads;
}

// Blocks needed for `units` units of `group` threads each, kBlockThreads per
// block. Requires: 1 <= group <= kBlockThreads, group divides kBlockThreads.
inline std::int64_t BlocksFor(std::int64_t units, int group) {
  const std::int64_t per_block = kBlockThreads / group;
  return (units + per_block - 1) / per_block;
}

// Elements each block of an elementwise multi-tensor launch handles.
constexpr std::int64_t kChunkElements = 4096;

inline std::int64_t ChunksFor(std::int64_t n) {
  return (n + kChunkElements - 1) / kChunkElements;
}

// The segment s with first[s] <= unit < first[s + 1], for a non-decreasing
// prefix array first[0..count] with first[0] = 0 and unit < first[count]
// (empty segments are skipped: the last s with first[s] <= unit).
SYMOPT_HD int FindSegment(const std::int64_t* first,
                          int count,
                          std::int64_t unit) {
  int lo = 0, hi = count - 1;  // invariant: first[lo] <= unit < first[hi + 1]
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (first[mid] <= unit) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

}  // namespace backend
}  // namespace symopt
