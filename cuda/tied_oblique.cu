// CUDA backend of TiedOblique<T>: kernels driving TiedObliqueOps
// (src/backend/tied_oblique_ops.h), the same per-row maths the CPU loops of
// src/tied_oblique.cpp run. One thread per row: a row's classes are summed
// in the CPU's order by that thread, so results are the CPU's bits (FMA
// contraction is off on both sides) and nothing is reduced across threads.
// Rows are independent (every class lies in one row), so there are no races.
// A collapsed row is counted in a device report with integer atomics
// (order-independent: count and minimum row). The zeroed entries are set by
// a second, element-wise launch.
#include <climits>

#include "cuda_backend.h"
#include "launch.cuh"

namespace symopt {
namespace cuda {
namespace {

// Blocks for `units` one-thread units (grid-size checked, STYLE E3).
inline unsigned int GridFor1(std::int64_t units) { return GridFor(units, 1); }

__device__ __forceinline__ void CountCollapse(DeviceRetractReport* report,
                                              long long row) {
  if (report == nullptr) return;
  atomicAdd(&report->collapsed_rows, 1ull);
  atomicMin(&report->first_collapsed_row, row);
}

template <typename T>
__global__ void ProjectPointKernel(TiedObliqueLayout l, T* x, double tol) {
  const std::int64_t r = UnitIndex<1>();
  if (r >= l.rows) return;
  TiedObliqueOps::ProjectPointRow(l, r, x, tol);
}

template <typename T>
__global__ void ProjectKernel(TiedObliqueLayout l, const T* x, T* u) {
  const std::int64_t r = UnitIndex<1>();
  if (r >= l.rows) return;
  TiedObliqueOps::ProjectRow(l, r, x, u);
}

template <typename T>
__global__ void RetractKernel(TiedObliqueLayout l,
                              T* x,
                              const T* v,
                              double tol,
                              DeviceRetractReport* report) {
  const std::int64_t r = UnitIndex<1>();
  if (r >= l.rows) return;
  if (TiedObliqueOps::RetractRow(l, r, x, v, tol)) CountCollapse(report, r);
}

template <typename T>
__global__ void StepKernel(TiedObliqueLayout l,
                           T* x,
                           const T* g,
                           T* m,
                           StepOptions p,
                           double tol,
                           DeviceRetractReport* report) {
  const std::int64_t r = UnitIndex<1>();
  if (r >= l.rows) return;
  if (TiedObliqueOps::StepRow(l, r, x, g, m, p, tol)) CountCollapse(report, r);
}

// a[zeros[i]] = 0 (and b[zeros[i]] = 0 when b is not null).
template <typename T>
__global__ void ZeroKernel(const std::int32_t* zeros,
                           std::int64_t count,
                           T* a,
                           T* b) {
  const std::int64_t i = UnitIndex<1>();
  if (i >= count) return;
  a[zeros[i]] = T(0);
  if (b != nullptr) b[zeros[i]] = T(0);
}

template <typename T>
void Zero(const TiedObliquePlan& plan, T* d_a, T* d_b, cudaStream_t stream) {
  if (plan.num_zeros <= 0) return;
  ZeroKernel<T>
      <<<GridFor1(plan.num_zeros), backend::kBlockThreads, 0, stream>>>(
          plan.d_zeros, plan.num_zeros, d_a, d_b);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
}

template <typename F>
void LaunchRows(const TiedObliquePlan& plan, F&& launch) {
  if (plan.layout.rows <= 0) return;
  launch(GridFor1(plan.layout.rows));
  SYMOPT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

template <typename T>
void TiedObliqueProjectPoint(const TiedObliquePlan& plan,
                             T* d_x,
                             double tol,
                             cudaStream_t stream) {
  LaunchRows(plan, [&](unsigned int grid) {
    ProjectPointKernel<T>
        <<<grid, backend::kBlockThreads, 0, stream>>>(plan.layout, d_x, tol);
  });
  Zero<T>(plan, d_x, nullptr, stream);
}

template <typename T>
void TiedObliqueProject(const TiedObliquePlan& plan,
                        const T* d_x,
                        T* d_u,
                        cudaStream_t stream) {
  LaunchRows(plan, [&](unsigned int grid) {
    ProjectKernel<T>
        <<<grid, backend::kBlockThreads, 0, stream>>>(plan.layout, d_x, d_u);
  });
  Zero<T>(plan, d_u, nullptr, stream);
}

template <typename T>
void TiedObliqueRetract(const TiedObliquePlan& plan,
                        T* d_x,
                        const T* d_v,
                        double tol,
                        DeviceRetractReport* d_report,
                        cudaStream_t stream) {
  LaunchRows(plan, [&](unsigned int grid) {
    RetractKernel<T><<<grid, backend::kBlockThreads, 0, stream>>>(
        plan.layout, d_x, d_v, tol, d_report);
  });
}

template <typename T>
void TiedObliqueStep(const TiedObliquePlan& plan,
                     T* d_x,
                     const T* d_g,
                     T* d_m,
                     const StepOptions& p,
                     double tol,
                     DeviceRetractReport* d_report,
                     cudaStream_t stream) {
  LaunchRows(plan, [&](unsigned int grid) {
    StepKernel<T><<<grid, backend::kBlockThreads, 0, stream>>>(
        plan.layout, d_x, d_g, d_m, p, tol, d_report);
  });
  Zero<T>(plan, d_x, p.momentum > 0.0 ? d_m : nullptr, stream);
}

#define SYMOPT_INSTANTIATE_TIED_OBLIQUE(T)                    \
  template void TiedObliqueProjectPoint<T>(                   \
      const TiedObliquePlan&, T*, double, cudaStream_t);      \
  template void TiedObliqueProject<T>(                        \
      const TiedObliquePlan&, const T*, T*, cudaStream_t);    \
  template void TiedObliqueRetract<T>(const TiedObliquePlan&, \
                                      T*,                     \
                                      const T*,               \
                                      double,                 \
                                      DeviceRetractReport*,   \
                                      cudaStream_t);          \
  template void TiedObliqueStep<T>(const TiedObliquePlan&,    \
                                   T*,                        \
                                   const T*,                  \
                                   T*,                        \
                                   const StepOptions&,        \
                                   double,                    \
                                   DeviceRetractReport*,      \
                                   cudaStream_t);

SYMOPT_INSTANTIATE_TIED_OBLIQUE(float)
SYMOPT_INSTANTIATE_TIED_OBLIQUE(double)
#undef SYMOPT_INSTANTIATE_TIED_OBLIQUE

}  // namespace cuda
}  // namespace symopt
