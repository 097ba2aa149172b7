// Plain C++ declarations of the CUDA backend's entry points (STYLE M4): no
// CUDA headers here, so host code can include it. Defined in cuda/*.cu and
// explicitly instantiated for float and double. Pointers named d_* are device
// memory; every entry point only enqueues work on `stream` unless it says it
// synchronises. Errors: symopt::Error carrying cudaGetErrorString (STYLE E3).
// Only src/backend/ (the dispatch point) and the GPU tests include this.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "backend/step_ops.h"
#include "backend/tied_oblique_ops.h"
#include "manifolds/oblique.h"

// The runtime's own declaration (driver_types.h), repeated so this header
// needs no CUDA include; an identical typedef may be declared twice.
typedef struct CUstream_st* cudaStream_t;

namespace symopt {
namespace cuda {

// ---- devices, memory, streams, events (cuda/device.cu) ----------------------

// Number of usable CUDA devices; 0 when there is none or no driver (never
// throws, so test mains can skip cleanly).
int DeviceCount();
// Why DeviceCount() returned 0 ("no CUDA-capable device is detected", ...).
std::string DeviceCountError();
// The device's name, e.g. "NVIDIA H100 80GB HBM3".
std::string DeviceName(int device);
// True if p points into device (or managed) memory of the current context.
// Never throws; clears the error a host pointer leaves behind.
bool IsDevicePointer(const void* p);

void* Malloc(std::size_t bytes);
void Free(void* d_p) noexcept;  // logs, never throws (destructors)
void CopyHostToDevice(void* d_dst,
                      const void* src,
                      std::size_t bytes,
                      cudaStream_t stream);
void CopyDeviceToHost(void* dst,
                      const void* d_src,
                      std::size_t bytes,
                      cudaStream_t stream);
void CopyDeviceToDevice(void* d_dst,
                        const void* d_src,
                        std::size_t bytes,
                        cudaStream_t stream);
void Memset(void* d_dst, int byte, std::size_t bytes, cudaStream_t stream);
cudaStream_t StreamCreate();
void StreamDestroy(cudaStream_t stream) noexcept;
void StreamSynchronize(cudaStream_t stream);
void DeviceSynchronize();
// Events for timing (opaque cudaEvent_t).
void* EventCreate();
void EventDestroy(void* event) noexcept;
void EventRecord(void* event, cudaStream_t stream);
// Milliseconds between two recorded events; waits for `stop`.
float EventElapsedMs(void* start, void* stop);
// Makes the current device's default memory pool (cudaMallocAsync) keep the
// memory freed into it instead of handing it back to the driver at every
// synchronisation (the pool's default release threshold is 0, and every
// training step synchronises several times: loss, screen, reports), so
// stream-ordered scratch is cheap after its first use. Call before
// cudaMallocAsync; once per device and thread, then a cudaGetDevice only.
void RetainPoolMemory();

// ---- collapse reports -------------------------------------------------------

// A RetractReport in device memory, updated with atomics by the kernels.
struct DeviceRetractReport {
  unsigned long long collapsed_rows;
  long long first_collapsed_row;  // INT64_MAX while none collapsed
};
// Sets count = 0, first = INT64_MAX for `count` reports.
void ResetReports(DeviceRetractReport* d_reports,
                  int count,
                  cudaStream_t stream);

// A device report for the duration of one call: taken from the stream-ordered
// pool, reset, handed to `launch` (which enqueues kernels on `stream`), read
// back and freed. Waits for the stream. first_collapsed_row is -1 when no row
// collapsed.
struct HostRetractReport {
  long long collapsed_rows = 0;
  long long first_collapsed_row = -1;
};
HostRetractReport RunWithReport(
    cudaStream_t stream,
    const std::function<void(DeviceRetractReport*)>& launch);

// ---- Euclidean (cuda/euclidean.cu)
// -------------------------------------------

// The fused Euclidean step (EuclideanOps) over n entries. d_m may be null iff
// p.momentum == 0. Requires: d_x, d_g, d_m do not overlap.
template <typename T>
void EuclideanStep(T* d_x,
                   const T* d_g,
                   T* d_m,
                   std::int64_t n,
                   const StepOptions& p,
                   cudaStream_t stream);

// d_y <- d_y + d_x over n entries (the Euclidean retraction).
template <typename T>
void AddInPlace(T* d_y, const T* d_x, std::int64_t n, cudaStream_t stream);

// One tensor of a multi-tensor Euclidean step.
template <typename T>
struct EuclideanTensor {
  T* x;
  const T* g;
  T* m;  // null iff the step has no momentum
  std::int64_t n;
};

// Steps `count` tensors in one launch. d_tensors[count] and d_first_chunk
// [count + 1] (the prefix sums of ceil(n / backend::kChunkElements)) are in
// device memory. Requires: no two tensors overlap.
template <typename T>
void EuclideanMultiStep(const EuclideanTensor<T>* d_tensors,
                        const std::int64_t* d_first_chunk,
                        int count,
                        std::int64_t total_chunks,
                        const StepOptions& p,
                        cudaStream_t stream);

// ---- Oblique (cuda/oblique.cu)
// -----------------------------------------------

// The fused oblique step (ObliqueOps) of a rows x cols block, one thread
// group per row (backend::ObliqueRowGroup(cols) threads). d_m may be null iff
// p.momentum == 0. Collapsed rows are left unchanged and, when d_report is
// not null, counted there (ResetReports first).
template <typename T>
void ObliqueStep(T* d_x,
                 const T* d_g,
                 T* d_m,
                 std::int64_t rows,
                 std::int64_t cols,
                 const StepOptions& p,
                 double collapse_tol,
                 DeviceRetractReport* d_report,
                 cudaStream_t stream);

// d_u <- P_x(d_u), row by row. d_x and d_u must not overlap.
template <typename T>
void ObliqueProject(const T* d_x,
                    T* d_u,
                    std::int64_t rows,
                    std::int64_t cols,
                    cudaStream_t stream);

// d_x <- rownormalize(d_x + d_v); collapsed rows kept and counted.
template <typename T>
void ObliqueRetract(T* d_x,
                    const T* d_v,
                    std::int64_t rows,
                    std::int64_t cols,
                    double collapse_tol,
                    DeviceRetractReport* d_report,
                    cudaStream_t stream);

// d_x <- rownormalize(d_x) (scaled by the row's largest magnitude first; a
// zero row becomes e_0). Requires: d_x finite (checked by the caller).
template <typename T>
void ObliqueProjectPoint(T* d_x,
                         std::int64_t rows,
                         std::int64_t cols,
                         cudaStream_t stream);

// One tensor of a multi-tensor oblique step.
template <typename T>
struct ObliqueTensor {
  T* x;
  const T* g;
  T* m;  // null iff the step has no momentum
  std::int64_t cols;
  double collapse_tol;
  DeviceRetractReport* report;  // may be null
};

// Steps `count` oblique tensors in one launch: d_first_row[count + 1] holds
// the prefix sums of their row counts; every row gets `group` threads
// (backend::ObliqueRowGroup of the widest tensor). Device arrays.
template <typename T>
void ObliqueMultiStep(const ObliqueTensor<T>* d_tensors,
                      const std::int64_t* d_first_row,
                      int count,
                      std::int64_t total_rows,
                      int group,
                      const StepOptions& p,
                      cudaStream_t stream);

// ---- TieSubspace (cuda/tie.cu)
// -------------------------------------------------

// A tie pattern in device memory (built by src/backend/dispatch.cpp from
// TieSubspace::Pattern(); backend::TieHostPlan documents the layout), its
// classes renumbered by position: the num_small classes of
// backend::TieClassGroup 1 first (one thread each), then the num_medium of
// group 32 (a warp each), then the num_large of group 256 (a block each),
// each range ordered by first member so that neighbouring threads touch
// neighbouring entries. Members of position q (backend::Member):
//   row_classes > 0 (row-periodic): (q / row_classes) * cols +
//       d_members[d_offsets[c] .. d_offsets[c + 1]), c = q % row_classes;
//   d_members null (contiguous): d_starts[q] + 0, 1, ..., with the size
//       d_offsets[q + 1] - d_offsets[q];
//   otherwise (CSR): d_members[d_offsets[q] .. d_offsets[q + 1]).
// Zeroed entries are d_zeros[0 .. num_zeros).
struct TiePlan {
  const std::int32_t* d_offsets = nullptr;
  const std::int32_t* d_members = nullptr;
  const std::int32_t* d_starts = nullptr;
  const std::int32_t* d_zeros = nullptr;
  std::int64_t row_classes = 0;
  std::int64_t cols = 0;
  std::int64_t num_small = 0;
  std::int64_t num_medium = 0;
  std::int64_t num_large = 0;
  std::int64_t num_zeros = 0;
};

// One per-class pass of `mode` (TieOps): kMean/kSum on d_a; kRetract with
// d_a = x, d_b = v; kStep with d_a = x, d_b = g, d_c = m (null without
// momentum). Zeroed entries of d_a (and of d_c for kStep) are set to 0.
template <typename T>
void TiePass(const TiePlan& plan,
             TieMode mode,
             T* d_a,
             const T* d_b,
             T* d_c,
             const TieStepScalars& s,
             cudaStream_t stream);

// ---- TiedOblique (cuda/tied_oblique.cu) ------------------------------------

// A TiedOblique's CSR layout in device memory (TiedObliqueLayout's pointers
// are device pointers here), plus the flat indices of its zeroed entries.
// Built once per manifold by src/backend/dispatch.cpp.
struct TiedObliquePlan {
  TiedObliqueLayout layout;
  const std::int32_t* d_zeros = nullptr;
  std::int64_t num_zeros = 0;
};

// One thread per row (TiedObliqueOps). d_x, d_u / d_v / d_g / d_m must not
// overlap. tol: the manifold's collapse tolerance.
// d_x <- ProjectPoint(d_x); requires finite d_x (the dispatcher checks).
template <typename T>
void TiedObliqueProjectPoint(const TiedObliquePlan& plan,
                             T* d_x,
                             double tol,
                             cudaStream_t stream);
// d_u <- P_x(d_u) (also EgradToRgrad and, with the new point, Transport).
template <typename T>
void TiedObliqueProject(const TiedObliquePlan& plan,
                        const T* d_x,
                        T* d_u,
                        cudaStream_t stream);
// d_x <- R_x(d_v); collapsed rows counted in d_report when not null.
template <typename T>
void TiedObliqueRetract(const TiedObliquePlan& plan,
                        T* d_x,
                        const T* d_v,
                        double tol,
                        DeviceRetractReport* d_report,
                        cudaStream_t stream);
// The fused step; d_m may be null iff p.momentum == 0.
template <typename T>
void TiedObliqueStep(const TiedObliquePlan& plan,
                     T* d_x,
                     const T* d_g,
                     T* d_m,
                     const StepOptions& p,
                     double tol,
                     DeviceRetractReport* d_report,
                     cudaStream_t stream);

// ---- LinearSubspace (cuda/linear_subspace.cu) -----------------------------

// A cuBLAS handle (opaque cublasHandle_t). Not for concurrent use.
void* CublasCreate();
void CublasDestroy(void* handle) noexcept;

// An orthonormal basis B (N x K row-major doubles, B^T B = I) in device
// memory, the cuBLAS handle the calls use, and scratch of N + 3K doubles.
// Calls sharing a plan must be ordered (one stream, or the caller's lock).
struct LinearPlan {
  const double* d_basis = nullptr;
  double* d_scratch = nullptr;
  void* cublas = nullptr;
  std::int64_t n = 0;
  std::int64_t k = 0;
};

// d_u <- B B^T d_u (in double, rounded once to T).
template <typename T>
void LinearProject(const LinearPlan& plan, T* d_u, cudaStream_t stream);

// d_x <- B (B^T d_x + B^T d_v).
template <typename T>
void LinearRetract(const LinearPlan& plan,
                   T* d_x,
                   const T* d_v,
                   cudaStream_t stream);

// The fused step in coefficients (src/linear_subspace.cpp). d_m may be null
// iff p.momentum == 0.
template <typename T>
void LinearStep(const LinearPlan& plan,
                T* d_x,
                const T* d_g,
                T* d_m,
                const StepOptions& p,
                cudaStream_t stream);

// ---- screens (cuda/finite.cu)
// ------------------------------------------------------

// Index of the first NaN/Inf of d_x[0, n), or -1 (a CUB reduction; waits for
// the result).
template <typename T>
std::int64_t FirstNonFinite(const T* d_x, std::int64_t n, cudaStream_t stream);

// ---- dense matrix products (cuda/gemm.cu)
// ------------------------------------

// Row-major GEMM on the device, through cuBLAS:
//   C (m x n) = alpha * op(A) * op(B) + beta * C,
// op(A) = A (m x k, leading dimension lda >= k) or, with trans_a, A^T where
// A is k x m (lda >= m); likewise op(B) is k x n (B is k x n, ldb >= n, or
// n x k with trans_b, ldb >= k); ldc >= n. beta == 0 ignores C's old values
// (NaN included). Uses the calling thread's cuBLAS handle for the current
// device (created on first use), set to `stream`, with the default (not
// TF32) math mode, so float products are IEEE float products.
// Requires: m, n, k and the leading dimensions fit in int.
template <typename T>
void Gemm(bool trans_a,
          bool trans_b,
          std::int64_t m,
          std::int64_t n,
          std::int64_t k,
          T alpha,
          const T* d_a,
          std::int64_t lda,
          const T* d_b,
          std::int64_t ldb,
          T beta,
          T* d_c,
          std::int64_t ldc,
          cudaStream_t stream);

}  // namespace cuda
}  // namespace symopt
