// The NaN/Inf screen of the CUDA backend: the index of the first non-finite
// entry as one CUB min-reduction over i -> (finite(x_i) ? n : i), so the
// optimizers can refuse a bad gradient (and name the entry) before any
// weight moves.
#include <thrust/iterator/counting_iterator.h>

#include <cub/device/device_reduce.cuh>

#include "cuda_backend.h"
#include "launch.cuh"

namespace symopt {
namespace cuda {
namespace {

template <typename T>
struct NonFiniteIndex {
  const T* x;
  long long n;
  __host__ __device__ long long operator()(long long i) const {
    return isfinite(x[i]) ? n : i;
  }
};

struct MinIndex {
  __host__ __device__ long long operator()(long long a, long long b) const {
    return b < a ? b : a;
  }
};

}  // namespace

template <typename T>
std::int64_t FirstNonFinite(const T* d_x, std::int64_t n, cudaStream_t stream) {
  if (n <= 0) return -1;
  const thrust::counting_iterator<long long> first(0);
  const NonFiniteIndex<T> transform{d_x, static_cast<long long>(n)};
  std::size_t temp_bytes = 0;
  SYMOPT_CUDA_CHECK(
      cub::DeviceReduce::TransformReduce(nullptr,
                                         temp_bytes,
                                         first,
                                         static_cast<long long*>(nullptr),
                                         n,
                                         MinIndex{},
                                         transform,
                                         static_cast<long long>(n),
                                         stream));
  // One allocation holds the result and CUB's temporary storage; the
  // stream-ordered pool allocator makes it cheap on every step.
  const std::size_t head = 256;
  void* d_buffer = nullptr;
  RetainPoolMemory();
  SYMOPT_CUDA_CHECK(cudaMallocAsync(&d_buffer, head + temp_bytes, stream));
  long long result = n;
  const cudaError_t status = [&] {
    long long* d_result = static_cast<long long*>(d_buffer);
    cudaError_t e =
        cub::DeviceReduce::TransformReduce(static_cast<char*>(d_buffer) + head,
                                           temp_bytes,
                                           first,
                                           d_result,
                                           n,
                                           MinIndex{},
                                           transform,
                                           static_cast<long long>(n),
                                           stream);
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e == cudaSuccess) {
      e = cudaMemcpyAsync(
          &result, d_result, sizeof(result), cudaMemcpyDeviceToHost, stream);
    }
    return e;
  }();
  SYMOPT_CUDA_CHECK_NOTHROW(cudaFreeAsync(d_buffer, stream));
  SYMOPT_CUDA_CHECK(status);
  SYMOPT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return result >= n ? -1 : std::int64_t(result);
}

template std::int64_t FirstNonFinite<float>(const float*,
                                            std::int64_t,
                                            cudaStream_t);
template std::int64_t FirstNonFinite<double>(const double*,
                                             std::int64_t,
                                             cudaStream_t);

}  // namespace cuda
}  // namespace symopt
