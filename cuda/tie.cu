// CUDA backend of TieSubspace<T>: the segmented per-class passes (TieOps in
// src/backend/step_ops.h) over a TiePlan in device memory. A class is one
// unit of a thread group (src/backend/launch.h): small classes (pairs,
// rotation orbits) one thread each, so that neighbouring threads touch
// neighbouring entries; medium classes a warp; large classes a block. The
// group accumulates the class sums in double on strided member ranges,
// reduces them (cuda/group_reduce.cuh), computes ONE value per written array
// (TieOps::Values) and stores it in every member: tied entries are bitwise
// equal by construction. A class of one thread runs TieOps::Class, exactly as
// the CPU loops do (pairs in the pair form). Zeroed entries are a separate
// elementwise pass.
#include "cuda_backend.h"
#include "group_reduce.cuh"
#include "launch.cuh"

namespace symopt {
namespace cuda {
namespace {

// The members of one class of the plan (backend::Member), as a TieOps member
// set: members[begin + j] shifted by base, or the run start + j (contiguous).
struct PlanMembers {
  const std::int32_t* members;  // null: contiguous
  std::int64_t base;
  std::int32_t begin;
  std::int32_t end;
  std::int32_t start;
  __device__ std::int64_t size() const { return end - begin; }
  __device__ std::int64_t operator[](std::int64_t j) const {
    return members != nullptr ? base + members[begin + j]
                              : std::int64_t(start) + j;
  }
};

// The mode is a template parameter so each pass compiles to its own loop.
template <typename T, int kGroup, TieMode kMode>
__global__ void ClassKernel(TiePlan plan,
                            std::int64_t first_class,
                            std::int64_t count,
                            T* a,
                            const T* b,
                            T* c,
                            TieStepScalars s) {
  const std::int64_t unit = UnitIndex<kGroup>();
  const int lane = LaneIndex<kGroup>();
  const bool active = unit < count;
  const TieFlags f = TieFlags::Of(s);
  // The class's member range in the index arrays.
  PlanMembers mem{plan.d_members, 0, 0, 0, 0};
  if (active) {
    std::int64_t k = first_class + unit;
    if (plan.row_classes > 0) {
      mem.base = (k / plan.row_classes) * plan.cols;
      k %= plan.row_classes;
    }
    mem.begin = plan.d_offsets[k];
    mem.end = plan.d_offsets[k + 1];
    if (plan.d_members == nullptr) mem.start = plan.d_starts[k];
  }
  if constexpr (kGroup == 1) {
    // One thread per class: the CPU loops' TieOps::Class, pairs included.
    if (!active) return;
    if (mem.size() == 2) {
      TieOps::Class<kMode>(
          tie_internal::PairMembers{mem[0], mem[1]}, a, b, c, s, f);
    } else {
      TieOps::Class<kMode>(mem, a, b, c, s, f);
    }
  } else {
    // Stage 1: the class sums on this lane's members, then the group's.
    double sums[3] = {0.0, 0.0, 0.0};
    for (std::int64_t j = lane; j < mem.size(); j += kGroup) {
      TieOps::Accumulate<kMode, T>(
          a, b, c, s, f, mem[j], &sums[0], &sums[1], &sums[2]);
    }
    GroupReduce<kGroup, 3>(sums);
    if (!active) return;
    // Stage 2: one value per array, written to every member.
    const TieClassValues<T> v =
        TieOps::Values<kMode, T>(s, f, sums[0], sums[1], sums[2], mem.size());
    const bool write_c = kMode == TieMode::kStep && f.momentum;
    for (std::int64_t j = lane; j < mem.size(); j += kGroup) {
      const std::int64_t i = mem[j];
      a[i] = v.first;
      if (write_c) c[i] = v.second;
    }
  }
}

template <typename T>
__global__ void ZeroKernel(const std::int32_t* zeros,
                           std::int64_t count,
                           T* a,
                           T* c) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  a[zeros[i]] = T(0);
  if (c != nullptr) c[zeros[i]] = T(0);
}

template <typename T, int kGroup>
void LaunchClasses(const TiePlan& plan,
                   std::int64_t first_class,
                   std::int64_t count,
                   TieMode mode,
                   T* a,
                   const T* b,
                   T* c,
                   const TieStepScalars& s,
                   cudaStream_t stream) {
  LaunchGroups(count, kGroup, [&](auto, unsigned grid) {
    const int threads = backend::kBlockThreads;
    auto args = [&](auto kernel) {
      kernel<<<grid, threads, 0, stream>>>(
          plan, first_class, count, a, b, c, s);
    };
    switch (mode) {
      case TieMode::kMean:
        args(ClassKernel<T, kGroup, TieMode::kMean>);
        break;
      case TieMode::kSum:
        args(ClassKernel<T, kGroup, TieMode::kSum>);
        break;
      case TieMode::kRetract:
        args(ClassKernel<T, kGroup, TieMode::kRetract>);
        break;
      case TieMode::kStep:
        args(ClassKernel<T, kGroup, TieMode::kStep>);
        break;
    }
  });
}

}  // namespace

template <typename T>
void TiePass(const TiePlan& plan,
             TieMode mode,
             T* d_a,
             const T* d_b,
             T* d_c,
             const TieStepScalars& s,
             cudaStream_t stream) {
  T* c = mode == TieMode::kStep ? d_c : nullptr;
  // The three size classes touch disjoint entries, so they may run in any
  // order (one stream: one after the other).
  const std::int64_t medium = plan.num_small;
  const std::int64_t large = plan.num_small + plan.num_medium;
  LaunchClasses<T, 1>(plan, 0, plan.num_small, mode, d_a, d_b, c, s, stream);
  LaunchClasses<T, 32>(
      plan, medium, plan.num_medium, mode, d_a, d_b, c, s, stream);
  LaunchClasses<T, backend::kBlockThreads>(
      plan, large, plan.num_large, mode, d_a, d_b, c, s, stream);
  if (plan.num_zeros > 0) {
    const std::int64_t blocks =
        (plan.num_zeros + backend::kBlockThreads - 1) / backend::kBlockThreads;
    ZeroKernel<T><<<static_cast<unsigned int>(blocks),
                    backend::kBlockThreads,
                    0,
                    stream>>>(plan.d_zeros, plan.num_zeros, d_a, c);
    SYMOPT_CUDA_CHECK(cudaGetLastError());
  }
}

#define SYMOPT_INSTANTIATE_TIE(T)                 \
  template void TiePass<T>(const TiePlan&,        \
                           TieMode,               \
                           T*,                    \
                           const T*,              \
                           T*,                    \
                           const TieStepScalars&, \
                           cudaStream_t);

SYMOPT_INSTANTIATE_TIE(float)
SYMOPT_INSTANTIATE_TIE(double)
#undef SYMOPT_INSTANTIATE_TIE

}  // namespace cuda
}  // namespace symopt
