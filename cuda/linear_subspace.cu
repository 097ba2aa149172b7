// CUDA backend of LinearSubspace<T>: Pi_E = B B^T with the orthonormal basis B
// (N x K, row-major, double) in device memory, applied with two cuBLAS DGEMV
// calls in double (as the CPU's Eigen products, src/linear_subspace.cpp). The
// fused step works in coefficients exactly as the CPU does:
//   cr = B^T T(wd x + g),  cx = B^T x,  cm = B^T m
//   cm = cr + beta cm,  cd = nesterov ? cr + beta cm : cm  (cd = cr without
//   momentum),  cx = cx - lr cd,  m = B cm,  x = B cx.
// Row-major B (N x K) is the column-major K x N matrix A = B^T with lda = K,
// so B^T u = A u (CUBLAS_OP_N) and B c = A^T c (CUBLAS_OP_T).
#include <cublas_v2.h>

#include <climits>
#include <cstdio>
#include <string>

#include "cublas_check.cuh"
#include "cuda_backend.h"
#include "launch.cuh"

namespace symopt {
namespace cuda {
namespace {

constexpr int kThreads = backend::kBlockThreads;

unsigned int Blocks(std::int64_t n) {
  return static_cast<unsigned int>((n + kThreads - 1) / kThreads);
}

// out_i = double(in_i), or double(T(wd x_i + in_i)) with decay (the CPU's
// decayed gradient, formed in T).
template <typename T>
__global__ void ToDoubleKernel(
    const T* in, const T* x, T wd, double* out, std::int64_t n) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  out[i] = x != nullptr ? double(T(wd * x[i] + in[i])) : double(in[i]);
}

template <typename T>
__global__ void FromDoubleKernel(const double* in, T* out, std::int64_t n) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  out[i] = T(in[i]);
}

// The coefficient update of the fused step (K entries). cm may be null (no
// momentum).
__global__ void StepCoefficientsKernel(const double* cr,
                                       double* cx,
                                       double* cm,
                                       std::int64_t k,
                                       double lr,
                                       double beta,
                                       bool nesterov) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= k) return;
  double cd = cr[i];
  if (cm != nullptr) {
    cm[i] = cr[i] + beta * cm[i];
    cd = nesterov ? cr[i] + beta * cm[i] : cm[i];
  }
  cx[i] -= lr * cd;
}

__global__ void AddKernel(double* y, const double* x, std::int64_t n) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  y[i] += x[i];
}

// The plan's handle, bound to `stream`.
cublasHandle_t Handle(const LinearPlan& plan, cudaStream_t stream) {
  cublasHandle_t handle = static_cast<cublasHandle_t>(plan.cublas);
  SYMOPT_CUBLAS_CHECK(cublasSetStream(handle, stream));
  return handle;
}

// c (K) = B^T u (u: N doubles on the device).
void Coefficients(const LinearPlan& plan,
                  const double* d_u,
                  double* d_c,
                  cudaStream_t stream) {
  const double one = 1.0, zero = 0.0;
  SYMOPT_CUBLAS_CHECK(cublasDgemv(Handle(plan, stream),
                                  CUBLAS_OP_N,
                                  int(plan.k),
                                  int(plan.n),
                                  &one,
                                  plan.d_basis,
                                  int(plan.k),
                                  d_u,
                                  1,
                                  &zero,
                                  d_c,
                                  1));
}

// out (N, in T) = B c; d_work holds N doubles. With K == 0 the result is 0.
template <typename T>
void Combine(const LinearPlan& plan,
             const double* d_c,
             double* d_work,
             T* d_out,
             cudaStream_t stream) {
  if (plan.k == 0) {
    Memset(d_out, 0, std::size_t(plan.n) * sizeof(T), stream);
    return;
  }
  const double one = 1.0, zero = 0.0;
  SYMOPT_CUBLAS_CHECK(cublasDgemv(Handle(plan, stream),
                                  CUBLAS_OP_T,
                                  int(plan.k),
                                  int(plan.n),
                                  &one,
                                  plan.d_basis,
                                  int(plan.k),
                                  d_c,
                                  1,
                                  &zero,
                                  d_work,
                                  1));
  FromDoubleKernel<T>
      <<<Blocks(plan.n), kThreads, 0, stream>>>(d_work, d_out, plan.n);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
}

// c = B^T u for u in T.
template <typename T>
void CoefficientsOf(const LinearPlan& plan,
                    const T* d_u,
                    double* d_work,
                    double* d_c,
                    cudaStream_t stream) {
  if (plan.k == 0) return;
  ToDoubleKernel<T><<<Blocks(plan.n), kThreads, 0, stream>>>(
      d_u, nullptr, T(0), d_work, plan.n);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
  Coefficients(plan, d_work, d_c, stream);
}

void CheckSizes(const LinearPlan& plan) {
  SYMOPT_CHECK(plan.n <= INT_MAX && plan.k <= INT_MAX,
               "linear_subspace: " << plan.n << " x " << plan.k
                                   << " basis exceeds cuBLAS's int sizes");
}

}  // namespace

void* CublasCreate() {
  cublasHandle_t handle = nullptr;
  SYMOPT_CUBLAS_CHECK(cublasCreate(&handle));
  return handle;
}

void CublasDestroy(void* handle) noexcept {
  if (handle == nullptr) return;
  const cublasStatus_t status =
      cublasDestroy(static_cast<cublasHandle_t>(handle));
  if (status != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr,
                 "symopt: cublasDestroy failed: %s\n",
                 cublasGetStatusString(status));
  }
}

template <typename T>
void LinearProject(const LinearPlan& plan, T* d_u, cudaStream_t stream) {
  CheckSizes(plan);
  double* work = plan.d_scratch;
  double* c = plan.d_scratch + plan.n;
  CoefficientsOf(plan, d_u, work, c, stream);
  Combine(plan, c, work, d_u, stream);
}

template <typename T>
void LinearRetract(const LinearPlan& plan,
                   T* d_x,
                   const T* d_v,
                   cudaStream_t stream) {
  CheckSizes(plan);
  double* work = plan.d_scratch;
  double* cx = plan.d_scratch + plan.n;
  double* cv = cx + plan.k;
  CoefficientsOf(plan, d_x, work, cx, stream);
  CoefficientsOf(plan, d_v, work, cv, stream);
  if (plan.k > 0) {
    AddKernel<<<Blocks(plan.k), kThreads, 0, stream>>>(cx, cv, plan.k);
    SYMOPT_CUDA_CHECK(cudaGetLastError());
  }
  Combine(plan, cx, work, d_x, stream);
}

template <typename T>
void LinearStep(const LinearPlan& plan,
                T* d_x,
                const T* d_g,
                T* d_m,
                const StepOptions& p,
                cudaStream_t stream) {
  CheckSizes(plan);
  double* work = plan.d_scratch;
  double* cr = plan.d_scratch + plan.n;
  double* cx = cr + plan.k;
  double* cm = d_m != nullptr ? cx + plan.k : nullptr;
  if (plan.k > 0) {
    // cr = B^T T(wd x + g)
    ToDoubleKernel<T><<<Blocks(plan.n), kThreads, 0, stream>>>(
        d_g,
        p.weight_decay != 0 ? d_x : nullptr,
        T(p.weight_decay),
        work,
        plan.n);
    SYMOPT_CUDA_CHECK(cudaGetLastError());
    Coefficients(plan, work, cr, stream);
    CoefficientsOf(plan, d_x, work, cx, stream);
    if (cm != nullptr) CoefficientsOf(plan, d_m, work, cm, stream);
    StepCoefficientsKernel<<<Blocks(plan.k), kThreads, 0, stream>>>(
        cr, cx, cm, plan.k, p.lr, p.momentum, p.nesterov);
    SYMOPT_CUDA_CHECK(cudaGetLastError());
  }
  if (cm != nullptr) Combine(plan, cm, work, d_m, stream);
  Combine(plan, cx, work, d_x, stream);
}

#define SYMOPT_INSTANTIATE_LINEAR(T)                                   \
  template void LinearProject<T>(const LinearPlan&, T*, cudaStream_t); \
  template void LinearRetract<T>(                                      \
      const LinearPlan&, T*, const T*, cudaStream_t);                  \
  template void LinearStep<T>(                                         \
      const LinearPlan&, T*, const T*, T*, const StepOptions&, cudaStream_t);

SYMOPT_INSTANTIATE_LINEAR(float)
SYMOPT_INSTANTIATE_LINEAR(double)
#undef SYMOPT_INSTANTIATE_LINEAR

}  // namespace cuda
}  // namespace symopt
