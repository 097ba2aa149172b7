// CUDA backend of Euclidean<T>: the fused step (EuclideanOps, one thread per
// element: the bandwidth floor every other step is compared with), the
// retraction x + v, and the multi-tensor step.
#include "cuda_backend.h"
#include "launch.cuh"

namespace symopt {
namespace cuda {
namespace {

// Grid-stride loop over [0, n) so any n fits in one launch.
template <typename T>
__global__ void StepKernel(T* __restrict__ x,
                           const T* __restrict__ g,
                           T* __restrict__ m,
                           std::int64_t n,
                           T lr,
                           T beta,
                           T wd,
                           bool momentum,
                           bool nesterov) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
       i < n;
       i += stride) {
    EuclideanOps::Step(x, g, m, lr, beta, wd, momentum, nesterov, i);
  }
}

template <typename T>
__global__ void AddKernel(T* __restrict__ y,
                          const T* __restrict__ x,
                          std::int64_t n) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
       i < n;
       i += stride) {
    y[i] = T(1) * x[i] + T(1) * y[i];  // as cpu::Axpby(1, v, 1, x)
  }
}

// Block b steps chunk b - first_chunk[t] of tensor t (kChunkElements
// entries), t found by binary search.
template <typename T>
__global__ void MultiStepKernel(const EuclideanTensor<T>* tensors,
                                const std::int64_t* first_chunk,
                                int count,
                                T lr,
                                T beta,
                                T wd,
                                bool momentum,
                                bool nesterov) {
  const std::int64_t chunk = blockIdx.x;
  const int k = backend::FindSegment(first_chunk, count, chunk);
  const EuclideanTensor<T> t = tensors[k];
  const std::int64_t begin = (chunk - first_chunk[k]) * backend::kChunkElements;
  const std::int64_t end = min(begin + backend::kChunkElements, t.n);
  for (std::int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    EuclideanOps::Step(t.x, t.g, t.m, lr, beta, wd, momentum, nesterov, i);
  }
}

// Enough blocks to fill any current GPU several times over; the grid-stride
// loops cover the rest.
unsigned int ElementwiseGrid(std::int64_t n) {
  const std::int64_t blocks =
      (n + backend::kBlockThreads - 1) / backend::kBlockThreads;
  return static_cast<unsigned int>(blocks < 65536 ? blocks : 65536);
}

}  // namespace

template <typename T>
void EuclideanStep(T* d_x,
                   const T* d_g,
                   T* d_m,
                   std::int64_t n,
                   const StepOptions& p,
                   cudaStream_t stream) {
  if (n <= 0) return;
  StepKernel<T><<<ElementwiseGrid(n), backend::kBlockThreads, 0, stream>>>(
      d_x,
      d_g,
      d_m,
      n,
      T(p.lr),
      T(p.momentum),
      T(p.weight_decay),
      p.momentum > 0,
      p.nesterov);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void AddInPlace(T* d_y, const T* d_x, std::int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  AddKernel<T>
      <<<ElementwiseGrid(n), backend::kBlockThreads, 0, stream>>>(d_y, d_x, n);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void EuclideanMultiStep(const EuclideanTensor<T>* d_tensors,
                        const std::int64_t* d_first_chunk,
                        int count,
                        std::int64_t total_chunks,
                        const StepOptions& p,
                        cudaStream_t stream) {
  if (count <= 0 || total_chunks <= 0) return;
  SYMOPT_CHECK(total_chunks <= 0x7fffffffLL,
               "symopt cuda: " << total_chunks << " chunks exceed a grid");
  MultiStepKernel<T><<<static_cast<unsigned int>(total_chunks),
                       backend::kBlockThreads,
                       0,
                       stream>>>(d_tensors,
                                 d_first_chunk,
                                 count,
                                 T(p.lr),
                                 T(p.momentum),
                                 T(p.weight_decay),
                                 p.momentum > 0,
                                 p.nesterov);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
}

#define SYMOPT_INSTANTIATE_EUCLIDEAN(T)                                  \
  template void EuclideanStep<T>(                                        \
      T*, const T*, T*, std::int64_t, const StepOptions&, cudaStream_t); \
  template void AddInPlace<T>(T*, const T*, std::int64_t, cudaStream_t); \
  template void EuclideanMultiStep<T>(const EuclideanTensor<T>*,         \
                                      const std::int64_t*,               \
                                      int,                               \
                                      std::int64_t,                      \
                                      const StepOptions&,                \
                                      cudaStream_t);

SYMOPT_INSTANTIATE_EUCLIDEAN(float)
SYMOPT_INSTANTIATE_EUCLIDEAN(double)
#undef SYMOPT_INSTANTIATE_EUCLIDEAN

}  // namespace cuda
}  // namespace symopt
