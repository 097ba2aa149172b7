// CUDA backend of Oblique<T>: kernels driving ObliqueOps (manifolds/oblique.h)
// with one thread group per row (src/backend/launch.h). Each kernel narrates
// the stages of ObliqueOps: accumulate partial sums on the lane's strided
// range, reduce them over the group (cuda/group_reduce.cuh), take the per-row
// scalar decisions (identical bits on every lane), then apply elementwise.
// The CPU loops of src/oblique.cpp are the reference the GPU tests compare
// against.
#include <climits>

#include "cuda_backend.h"
#include "group_reduce.cuh"
#include "launch.cuh"

namespace symopt {
namespace cuda {
namespace {

// Counts a collapsed row (lane 0 of its group only).
__device__ __forceinline__ void ReportCollapse(DeviceRetractReport* report,
                                               long long row) {
  if (report == nullptr) return;
  atomicAdd(&report->collapsed_rows, 1ull);
  atomicMin(&report->first_collapsed_row, row);
}

// The fused step of one row of `cols` entries (x, g, m point at the row).
// Inactive threads (beyond the last row) join the reductions with empty
// ranges and write nothing.
template <typename T, int kGroup>
__device__ __forceinline__ void StepRow(T* x,
                                        const T* g,
                                        T* m,
                                        std::int64_t cols,
                                        bool active,
                                        int lane,
                                        const StepOptions& p,
                                        double tol,
                                        DeviceRetractReport* report,
                                        long long report_row) {
  // Stage 1: the Gram sums of x, g, m on this lane's range, then the group's.
  ObliqueGram s =
      ObliqueOps::AccumulateGram<T>(x, g, m, lane, active ? cols : 0, kGroup);
  double v[6] = {s.xx, s.xg, s.xm, s.gg, s.gm, s.mm};
  GroupReduce<kGroup, 6>(v);
  s.xx = v[0];
  s.xg = v[1];
  s.xm = v[2];
  s.gg = v[3];
  s.gm = v[4];
  s.mm = v[5];
  // Stage 2: the candidate y = x - lr d and mp as combinations of x, g, m and
  // their norms from the Gram sums.
  const ObliqueCandidate c = ObliqueOps::StepCandidate(s.xx, s.xg, p);
  double yy = ObliqueOps::GramInner(s, c.y, c.y);
  double ymp = m != nullptr ? ObliqueOps::GramInner(s, c.y, c.mp) : 0.0;
  // Where ||y||^2 may have cancelled, sum it directly (oblique.h,
  // kDirectFraction). Every lane reduces, with an empty range where the
  // group does not need it, so the shuffles stay warp-uniform.
  const bool direct = active && ObliqueOps::NeedsDirect(yy, s.xx);
  double d[2] = {0.0, 0.0};
  ObliqueOps::AccumulateDirect<T>(
      x, g, m, c, lane, direct ? cols : 0, kGroup, &d[0], &d[1]);
  GroupReduce<kGroup, 2>(d);
  if (direct) {
    yy = d[0];
    ymp = d[1];
  }
  if (!active) return;
  // Stage 3: normalise and transport, or keep a collapsed row unchanged.
  const ObliqueRowUpdate u = ObliqueOps::StepUpdate(c, yy, ymp, tol);
  if (u.collapsed) {
    if (lane == 0) ReportCollapse(report, report_row);
    return;
  }
  // Stage 4: the cheap increment form in T where it is accurate (oblique.h,
  // IncrementIsAccurate), else the exact double form. The test reads only
  // the group's reduced sums, so every lane takes the same branch.
  if (ObliqueOps::IncrementIsAccurate(s, u)) {
    ObliqueOps::ApplyStep<T>(x, g, m, u, lane, cols, kGroup);
  } else {
    ObliqueOps::ApplyStepExact<T>(x, g, m, u, lane, cols, kGroup);
  }
}

template <typename T, int kGroup>
__global__ void StepKernel(T* x,
                           const T* g,
                           T* m,
                           std::int64_t rows,
                           std::int64_t cols,
                           StepOptions p,
                           double tol,
                           DeviceRetractReport* report) {
  const std::int64_t row = UnitIndex<kGroup>();
  const bool active = row < rows;
  const std::int64_t offset = active ? row * cols : 0;
  StepRow<T, kGroup>(x + offset,
                     g + offset,
                     m != nullptr ? m + offset : nullptr,
                     cols,
                     active,
                     LaneIndex<kGroup>(),
                     p,
                     tol,
                     report,
                     row);
}

// Rows of several tensors laid end to end; d_first_row[t] is tensor t's first
// global row.
template <typename T, int kGroup>
__global__ void MultiStepKernel(const ObliqueTensor<T>* tensors,
                                const std::int64_t* first_row,
                                int count,
                                std::int64_t total_rows,
                                StepOptions p) {
  const std::int64_t unit = UnitIndex<kGroup>();
  const bool active = unit < total_rows;
  ObliqueTensor<T> t = tensors[0];
  std::int64_t row = 0;
  if (active) {
    const int k = backend::FindSegment(first_row, count, unit);
    t = tensors[k];
    row = unit - first_row[k];
  }
  const std::int64_t offset = row * t.cols;
  // Without momentum the buffer is neither read nor written (as in Step).
  T* m = p.momentum > 0 && t.m != nullptr ? t.m + offset : nullptr;
  StepRow<T, kGroup>(t.x + offset,
                     t.g + offset,
                     m,
                     t.cols,
                     active,
                     LaneIndex<kGroup>(),
                     p,
                     t.collapse_tol,
                     t.report,
                     row);
}

// u <- u - <x, u> x per row.
template <typename T, int kGroup>
__global__ void ProjectKernel(const T* x,
                              T* u,
                              std::int64_t rows,
                              std::int64_t cols) {
  const std::int64_t row = UnitIndex<kGroup>();
  const int lane = LaneIndex<kGroup>();
  const bool active = row < rows;
  const std::int64_t offset = active ? row * cols : 0;
  double d[1] = {
      ObliqueOps::Dot(x + offset, u + offset, lane, active ? cols : 0, kGroup)};
  GroupReduce<kGroup, 1>(d);
  if (!active) return;
  ObliqueOps::ApplyProject(x + offset, u + offset, d[0], lane, cols, kGroup);
}

// x <- (x + v) / ||x + v|| per row; collapsed rows kept and counted.
template <typename T, int kGroup>
__global__ void RetractKernel(T* x,
                              const T* v,
                              std::int64_t rows,
                              std::int64_t cols,
                              double tol,
                              DeviceRetractReport* report) {
  const std::int64_t row = UnitIndex<kGroup>();
  const int lane = LaneIndex<kGroup>();
  const bool active = row < rows;
  const std::int64_t offset = active ? row * cols : 0;
  double yy[1] = {ObliqueOps::CandidateNorm2(
      x + offset, v + offset, lane, active ? cols : 0, kGroup)};
  GroupReduce<kGroup, 1>(yy);
  if (!active) return;
  if (!ObliqueOps::Normalisable(yy[0], tol)) {
    if (lane == 0) ReportCollapse(report, row);
    return;
  }
  ObliqueOps::ApplyRetract(
      x + offset, v + offset, 1.0 / sqrt(yy[0]), lane, cols, kGroup);
}

// x <- x / ||x|| per row as in Oblique::ProjectPointImpl: scaled by the row's
// largest magnitude first (tiny rows whose squares underflow and huge ones
// whose squares overflow normalise exactly); a zero row becomes e_0.
template <typename T, int kGroup>
__global__ void ProjectPointKernel(T* x, std::int64_t rows, std::int64_t cols) {
  const std::int64_t row = UnitIndex<kGroup>();
  const int lane = LaneIndex<kGroup>();
  const bool active = row < rows;
  T* xr = x + (active ? row * cols : 0);
  const std::int64_t end = active ? cols : 0;
  double big[1] = {0.0};
  for (std::int64_t i = lane; i < end; i += kGroup) {
    big[0] = fmax(big[0], fabs(double(xr[i])));
  }
  GroupReduce<kGroup, 1, ReduceOp::kMax>(big);
  double ss[1] = {0.0};
  const std::int64_t scaled_end = big[0] > 0 ? end : 0;
  for (std::int64_t i = lane; i < scaled_end; i += kGroup) {
    const double e = double(xr[i]) / big[0];
    ss[0] += e * e;
  }
  GroupReduce<kGroup, 1>(ss);
  if (!active) return;
  if (big[0] == 0) {
    for (std::int64_t i = lane; i < cols; i += kGroup) {
      xr[i] = T(i == 0 ? 1 : 0);
    }
    return;
  }
  const double inv = 1.0 / sqrt(ss[0]);
  for (std::int64_t i = lane; i < cols; i += kGroup) {
    xr[i] = T(double(xr[i]) / big[0] * inv);
  }
}

constexpr int kThreads = backend::kBlockThreads;

}  // namespace

template <typename T>
void ObliqueStep(T* d_x,
                 const T* d_g,
                 T* d_m,
                 std::int64_t rows,
                 std::int64_t cols,
                 const StepOptions& p,
                 double collapse_tol,
                 DeviceRetractReport* d_report,
                 cudaStream_t stream) {
  if (cols <= 0) return;
  LaunchGroups(
      rows, backend::ObliqueRowGroup(cols), [&](auto g, unsigned grid) {
        StepKernel<T, decltype(g)::value><<<grid, kThreads, 0, stream>>>(
            d_x, d_g, d_m, rows, cols, p, collapse_tol, d_report);
      });
}

template <typename T>
void ObliqueMultiStep(const ObliqueTensor<T>* d_tensors,
                      const std::int64_t* d_first_row,
                      int count,
                      std::int64_t total_rows,
                      int group,
                      const StepOptions& p,
                      cudaStream_t stream) {
  if (count <= 0) return;
  LaunchGroups(total_rows, group, [&](auto g, unsigned grid) {
    MultiStepKernel<T, decltype(g)::value><<<grid, kThreads, 0, stream>>>(
        d_tensors, d_first_row, count, total_rows, p);
  });
}

template <typename T>
void ObliqueProject(const T* d_x,
                    T* d_u,
                    std::int64_t rows,
                    std::int64_t cols,
                    cudaStream_t stream) {
  if (cols <= 0) return;
  LaunchGroups(
      rows, backend::ObliqueRowGroup(cols), [&](auto g, unsigned grid) {
        ProjectKernel<T, decltype(g)::value>
            <<<grid, kThreads, 0, stream>>>(d_x, d_u, rows, cols);
      });
}

template <typename T>
void ObliqueRetract(T* d_x,
                    const T* d_v,
                    std::int64_t rows,
                    std::int64_t cols,
                    double collapse_tol,
                    DeviceRetractReport* d_report,
                    cudaStream_t stream) {
  if (cols <= 0) return;
  LaunchGroups(
      rows, backend::ObliqueRowGroup(cols), [&](auto g, unsigned grid) {
        RetractKernel<T, decltype(g)::value><<<grid, kThreads, 0, stream>>>(
            d_x, d_v, rows, cols, collapse_tol, d_report);
      });
}

template <typename T>
void ObliqueProjectPoint(T* d_x,
                         std::int64_t rows,
                         std::int64_t cols,
                         cudaStream_t stream) {
  if (cols <= 0) return;
  LaunchGroups(
      rows, backend::ObliqueRowGroup(cols), [&](auto g, unsigned grid) {
        ProjectPointKernel<T, decltype(g)::value>
            <<<grid, kThreads, 0, stream>>>(d_x, rows, cols);
      });
}

#define SYMOPT_INSTANTIATE_OBLIQUE(T)                          \
  template void ObliqueStep<T>(T*,                             \
                               const T*,                       \
                               T*,                             \
                               std::int64_t,                   \
                               std::int64_t,                   \
                               const StepOptions&,             \
                               double,                         \
                               DeviceRetractReport*,           \
                               cudaStream_t);                  \
  template void ObliqueMultiStep<T>(const ObliqueTensor<T>*,   \
                                    const std::int64_t*,       \
                                    int,                       \
                                    std::int64_t,              \
                                    int,                       \
                                    const StepOptions&,        \
                                    cudaStream_t);             \
  template void ObliqueProject<T>(                             \
      const T*, T*, std::int64_t, std::int64_t, cudaStream_t); \
  template void ObliqueRetract<T>(T*,                          \
                                  const T*,                    \
                                  std::int64_t,                \
                                  std::int64_t,                \
                                  double,                      \
                                  DeviceRetractReport*,        \
                                  cudaStream_t);               \
  template void ObliqueProjectPoint<T>(                        \
      T*, std::int64_t, std::int64_t, cudaStream_t);

SYMOPT_INSTANTIATE_OBLIQUE(float)
SYMOPT_INSTANTIATE_OBLIQUE(double)
#undef SYMOPT_INSTANTIATE_OBLIQUE

}  // namespace cuda
}  // namespace symopt
