// The optimizers' fused NaN/Inf screen: every gradient of a step checked by
// ONE launch before any weight moves. Chunks of backend::kChunkElements
// entries of all tensors are laid end to end; a block takes a chunk, finds
// its tensor by binary search in the chunk prefix array (as the multi-tensor
// steps do), tests its entries with coalesced strided loads, and a thread
// that finds a bad entry lowers one device word with an integer atomicMin.
// Integer min is order-independent, so the result (the first bad entry in
// parameter order) is deterministic; no float atomics are involved.
#include "backend/screen_ops.h"
#include "launch.cuh"
#include "optim_backend.h"

namespace symopt {
namespace cuda {
namespace {

template <typename T>
__global__ void ScreenKernel(const ScreenTensor<T>* tensors,
                             const std::int64_t* first_chunk,
                             int count,
                             std::int64_t total_chunks,
                             unsigned long long* result) {
  // Stage 1: a grid-stride loop over chunks (the grid is capped, so any
  // number of chunks works).
  for (std::int64_t chunk = blockIdx.x; chunk < total_chunks;
       chunk += gridDim.x) {
    const int t = backend::FindSegment(first_chunk, count, chunk);
    const ScreenTensor<T> d = tensors[t];
    std::int64_t begin, end;
    backend::ScreenOps::ChunkRange(chunk, first_chunk[t], d.n, &begin, &end);
    // Stage 2: strided loads; the first bad entry of this thread's share.
    for (std::int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      if (!isfinite(d.d_data[i])) {
        // Stage 3: lower the global minimum (entries are visited in
        // increasing order per thread, so the first hit is this thread's
        // smallest).
        atomicMin(result, static_cast<unsigned long long>(d.offset + i));
        break;
      }
    }
  }
}

}  // namespace

template <typename T>
std::int64_t ScreenNonFinite(const ScreenTensor<T>* d_tensors,
                             const std::int64_t* d_first_chunk,
                             int count,
                             std::int64_t total_chunks,
                             unsigned long long* d_result,
                             cudaStream_t stream) {
  if (count <= 0 || total_chunks <= 0) return -1;
  // 0xFF bytes: ~0ull, larger than any index ("none found").
  SYMOPT_CUDA_CHECK(
      cudaMemsetAsync(d_result, 0xFF, sizeof(unsigned long long), stream));
  const std::int64_t kMaxGrid = std::int64_t(1) << 20;
  const unsigned int grid = static_cast<unsigned int>(
      total_chunks < kMaxGrid ? total_chunks : kMaxGrid);
  ScreenKernel<T><<<grid, backend::kBlockThreads, 0, stream>>>(
      d_tensors, d_first_chunk, count, total_chunks, d_result);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
  unsigned long long host = 0;
  SYMOPT_CUDA_CHECK(cudaMemcpyAsync(
      &host, d_result, sizeof(host), cudaMemcpyDeviceToHost, stream));
  SYMOPT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return host == ~0ull ? -1 : static_cast<std::int64_t>(host);
}

#define SYMOPT_INSTANTIATE_SCREEN(T)                               \
  template std::int64_t ScreenNonFinite<T>(const ScreenTensor<T>*, \
                                           const std::int64_t*,    \
                                           int,                    \
                                           std::int64_t,           \
                                           unsigned long long*,    \
                                           cudaStream_t);

SYMOPT_INSTANTIATE_SCREEN(float)
SYMOPT_INSTANTIATE_SCREEN(double)
#undef SYMOPT_INSTANTIATE_SCREEN

}  // namespace cuda
}  // namespace symopt
