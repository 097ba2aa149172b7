// Plain C++ declarations of the optimizers' own CUDA entry points (STYLE
// M4): no CUDA headers here. Defined in cuda/optim.cu, explicitly
// instantiated for float and double. Pointers named d_* are device memory.
// Only src/optim_state.cpp (the optimizers' one device decision point) and
// the GPU tests include this.
#pragma once

#include <cstdint>

// The runtime's own declaration (driver_types.h), repeated so this header
// needs no CUDA include; an identical typedef may be declared twice.
typedef struct CUstream_st* cudaStream_t;

namespace symopt {
namespace cuda {

// One tensor of the fused NaN/Inf screen: n entries at d_data; offset is the
// sum of the sizes of the tensors before it (its first entry's global index).
template <typename T>
struct ScreenTensor {
  const T* d_data;
  std::int64_t n;
  std::int64_t offset;
};

// The smallest global index (offset + flat index) of a NaN/Inf over every
// tensor, or -1 when all are finite: ONE kernel launch over all tensors and
// one 8-byte copy back (waits for it). d_tensors[count] and d_first_chunk
// [count + 1] (prefix sums of backend::ChunksFor(n), src/backend/launch.h: one
// block per chunk of backend::kChunkElements entries) are device arrays;
// d_result is one device word of scratch.
template <typename T>
std::int64_t ScreenNonFinite(const ScreenTensor<T>* d_tensors,
                             const std::int64_t* d_first_chunk,
                             int count,
                             std::int64_t total_chunks,
                             unsigned long long* d_result,
                             cudaStream_t stream);

}  // namespace cuda
}  // namespace symopt
