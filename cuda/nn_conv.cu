// CUDA kernels of the convolution, pooling and group layers (declared in
// cuda/nn_conv_backend.h). Every kernel is one grid-stride loop over its
// OUTPUT elements that calls the SYMOPT_HD maths of src/nn_conv_ops.h (STYLE
// M1, M2: the index comes from the loop here, the maths from the Ops). Each
// output element is written by exactly one thread, so there are no atomics
// and results are deterministic; the backward passes of im2col and pooling
// are gathers (each input element sums its own contributions, in the CPU
// scatter's order). Matrix products are cuBLAS (cuda::Gemm), called by the
// dispatch point.
//
// Indexing: all indices are int64, and the grid is capped at kMaxBlocks
// blocks (far below the 2^31 - 1 grid limit), so any element count fits.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "check.cuh"
#include "nn_conv_backend.h"

namespace symopt {
namespace cuda {
namespace {

using nn::internal::ClassOps;
using nn::internal::ConvLayoutOps;
using nn::internal::PoolLayoutOps;
using nn::internal::RotationPoolOps;

constexpr int kThreads = 256;
constexpr std::int64_t kMaxBlocks = std::int64_t(1) << 20;

// f(e) for e = 0 .. n-1, each by one thread. The loop condition is the bounds
// guard (STYLE E5).
template <typename F>
__global__ void ForEachKernel(std::int64_t n, F f) {
  const std::int64_t step = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
       e < n;
       e += step) {
    f(e);
  }
}

template <typename F>
void ForEach(std::int64_t n, const F& f, cudaStream_t stream) {
  if (n <= 0) return;
  const std::int64_t blocks =
      std::min<std::int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks);
  ForEachKernel<<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(n,
                                                                            f);
  SYMOPT_CUDA_CHECK(cudaGetLastError());
}

// ---- convolution
// -------------------------------------------------------------

template <typename T>
struct Im2ColFn {
  ConvGeometry g;
  std::int64_t ld;
  const T* x;
  T* col;
  __device__ void operator()(std::int64_t e) const {
    ConvLayoutOps::Im2Col(g, ld, x, col, e);
  }
};

template <typename T>
struct Col2ImFn {
  ConvGeometry g;
  std::int64_t ld;
  const T* col;
  T* dx;
  __device__ void operator()(std::int64_t e) const {
    ConvLayoutOps::Col2Im(g, ld, col, dx, e);
  }
};

template <typename T>
struct ColumnsToChannelsFn {
  const T* z;
  const T* bias;
  std::int64_t rows, m, hw;
  T* y;
  __device__ void operator()(std::int64_t e) const {
    ConvLayoutOps::ColumnsToChannels(z, bias, rows, m, hw, y, e);
  }
};

template <typename T>
struct ChannelsToColumnsFn {
  const T* dy;
  std::int64_t rows, m, hw;
  T* z;
  __device__ void operator()(std::int64_t e) const {
    ConvLayoutOps::ChannelsToColumns(dy, rows, m, hw, z, e);
  }
};

template <typename T>
struct FillFn {
  T* out;
  T value;
  __device__ void operator()(std::int64_t e) const { out[e] = value; }
};

// ---- tie patterns: expansion, class sums, fold/unfold
// --------------------------

template <typename T>
struct GatherRowsFn {
  const T* in;
  std::int64_t in_cols;
  const std::int32_t* index;
  std::int64_t cols;
  T* out;
  __device__ void operator()(std::int64_t e) const {
    ClassOps::GatherRowsAt(in, in_cols, index, cols, out, e);
  }
};

template <typename T>
struct ClassSumRowsFn {
  const T* in;
  std::int64_t in_cols;
  const std::int32_t* offsets;
  const std::int32_t* members;
  std::int64_t classes;
  bool accumulate;
  T* out;
  __device__ void operator()(std::int64_t e) const {
    ClassOps::SumRowsAt(
        in, in_cols, offsets, members, classes, accumulate, out, e);
  }
};

// ---- pooling
// -------------------------------------------------------------------

template <typename T>
struct MaxPoolForwardFn {
  PoolGeometry g;
  const T* x;
  T* y;
  std::int32_t* arg;
  __device__ void operator()(std::int64_t e) const {
    PoolLayoutOps::MaxForward(g, x, y, arg, e);
  }
};

template <typename T>
struct MaxPoolBackwardFn {
  PoolGeometry g;
  const T* dy;
  const std::int32_t* arg;
  T* dx;
  __device__ void operator()(std::int64_t e) const {
    PoolLayoutOps::MaxBackward(g, dy, arg, dx, e);
  }
};

template <typename T>
struct AvgPoolForwardFn {
  PoolGeometry g;
  const T* x;
  T scale;
  T* y;
  __device__ void operator()(std::int64_t e) const {
    PoolLayoutOps::AvgForward(g, x, scale, y, e);
  }
};

template <typename T>
struct AvgPoolBackwardFn {
  PoolGeometry g;
  const T* dy;
  T scale;
  T* dx;
  __device__ void operator()(std::int64_t e) const {
    PoolLayoutOps::AvgBackward(g, dy, scale, dx, e);
  }
};

// e = group * hw + p.
template <typename T>
struct RotationPoolForwardFn {
  const T* x;
  std::int64_t hw;
  bool is_max;
  T* y;
  __device__ void operator()(std::int64_t e) const {
    const T* xg = x + (e / hw) * RotationPoolOps::kOrder * hw;
    y[e] = is_max ? RotationPoolOps::Max(xg, hw, e % hw)
                  : RotationPoolOps::Mean(xg, hw, e % hw);
  }
};

// e = group * hw + p; writes the 4 rotations of pixel p.
template <typename T>
struct RotationPoolBackwardFn {
  const T* x;
  const T* dy;
  std::int64_t hw;
  bool is_max;
  T* dx;
  __device__ void operator()(std::int64_t e) const {
    const std::int64_t at = (e / hw) * RotationPoolOps::kOrder * hw;
    RotationPoolOps::Backward(x + at, dy[e], hw, e % hw, is_max, dx + at);
  }
};

}  // namespace

template <typename T>
void ConvIm2Col(const ConvGeometry& g,
                std::int64_t m,
                const T* d_x,
                T* d_col,
                cudaStream_t stream) {
  const std::int64_t ld = m * g.hw();
  ForEach(g.kk() * ld, Im2ColFn<T>{g, ld, d_x, d_col}, stream);
}

template <typename T>
void ConvCol2Im(const ConvGeometry& g,
                std::int64_t m,
                const T* d_col,
                T* d_dx,
                cudaStream_t stream) {
  ForEach(m * g.InputSize(), Col2ImFn<T>{g, m * g.hw(), d_col, d_dx}, stream);
}

template <typename T>
void ColumnsToChannels(const T* d_z,
                       const T* d_bias,
                       std::int64_t rows,
                       std::int64_t m,
                       std::int64_t hw,
                       T* d_y,
                       cudaStream_t stream) {
  ForEach(m * rows * hw,
          ColumnsToChannelsFn<T>{d_z, d_bias, rows, m, hw, d_y},
          stream);
}

template <typename T>
void ChannelsToColumns(const T* d_dy,
                       std::int64_t rows,
                       std::int64_t m,
                       std::int64_t hw,
                       T* d_z,
                       cudaStream_t stream) {
  ForEach(
      m * rows * hw, ChannelsToColumnsFn<T>{d_dy, rows, m, hw, d_z}, stream);
}

template <typename T>
void FillValue(T* d_out, std::int64_t n, T value, cudaStream_t stream) {
  ForEach(n, FillFn<T>{d_out, value}, stream);
}

template <typename T>
void GatherRows(const T* d_in,
                std::int64_t in_cols,
                const std::int32_t* d_index,
                std::int64_t rows,
                std::int64_t cols,
                T* d_out,
                cudaStream_t stream) {
  ForEach(rows * cols,
          GatherRowsFn<T>{d_in, in_cols, d_index, cols, d_out},
          stream);
}

template <typename T>
void ClassSumRows(const T* d_in,
                  std::int64_t in_cols,
                  const std::int32_t* d_offsets,
                  const std::int32_t* d_members,
                  std::int64_t rows,
                  std::int64_t classes,
                  bool accumulate,
                  T* d_out,
                  cudaStream_t stream) {
  ForEach(rows * classes,
          ClassSumRowsFn<T>{
              d_in, in_cols, d_offsets, d_members, classes, accumulate, d_out},
          stream);
}

template <typename T>
void MaxPoolForward(const PoolGeometry& g,
                    const T* d_x,
                    T* d_y,
                    std::int32_t* d_arg,
                    cudaStream_t stream) {
  ForEach(g.OutputSize(), MaxPoolForwardFn<T>{g, d_x, d_y, d_arg}, stream);
}

template <typename T>
void MaxPoolBackward(const PoolGeometry& g,
                     const T* d_dy,
                     const std::int32_t* d_arg,
                     T* d_dx,
                     cudaStream_t stream) {
  ForEach(g.InputSize(), MaxPoolBackwardFn<T>{g, d_dy, d_arg, d_dx}, stream);
}

template <typename T>
void AvgPoolForward(const PoolGeometry& g,
                    const T* d_x,
                    T* d_y,
                    cudaStream_t stream) {
  const T scale = T(1) / T(g.k * g.k);  // as the CPU's AvgPool2d
  ForEach(g.OutputSize(), AvgPoolForwardFn<T>{g, d_x, scale, d_y}, stream);
}

template <typename T>
void AvgPoolBackward(const PoolGeometry& g,
                     const T* d_dy,
                     T* d_dx,
                     cudaStream_t stream) {
  const T scale = T(1) / T(g.k * g.k);
  ForEach(g.InputSize(), AvgPoolBackwardFn<T>{g, d_dy, scale, d_dx}, stream);
}

template <typename T>
void RotationPoolForward(const T* d_x,
                         std::int64_t groups,
                         std::int64_t hw,
                         bool is_max,
                         T* d_y,
                         cudaStream_t stream) {
  ForEach(groups * hw, RotationPoolForwardFn<T>{d_x, hw, is_max, d_y}, stream);
}

template <typename T>
void RotationPoolBackward(const T* d_x,
                          const T* d_dy,
                          std::int64_t groups,
                          std::int64_t hw,
                          bool is_max,
                          T* d_dx,
                          cudaStream_t stream) {
  ForEach(groups * hw,
          RotationPoolBackwardFn<T>{d_x, d_dy, hw, is_max, d_dx},
          stream);
}

#define SYMOPT_INSTANTIATE_NN_CONV(T)                                        \
  template void ConvIm2Col<T>(                                               \
      const ConvGeometry&, std::int64_t, const T*, T*, cudaStream_t);        \
  template void ConvCol2Im<T>(                                               \
      const ConvGeometry&, std::int64_t, const T*, T*, cudaStream_t);        \
  template void ColumnsToChannels<T>(const T*,                               \
                                     const T*,                               \
                                     std::int64_t,                           \
                                     std::int64_t,                           \
                                     std::int64_t,                           \
                                     T*,                                     \
                                     cudaStream_t);                          \
  template void ChannelsToColumns<T>(                                        \
      const T*, std::int64_t, std::int64_t, std::int64_t, T*, cudaStream_t); \
  template void FillValue<T>(T*, std::int64_t, T, cudaStream_t);             \
  template void GatherRows<T>(const T*,                                      \
                              std::int64_t,                                  \
                              const std::int32_t*,                           \
                              std::int64_t,                                  \
                              std::int64_t,                                  \
                              T*,                                            \
                              cudaStream_t);                                 \
  template void ClassSumRows<T>(const T*,                                    \
                                std::int64_t,                                \
                                const std::int32_t*,                         \
                                const std::int32_t*,                         \
                                std::int64_t,                                \
                                std::int64_t,                                \
                                bool,                                        \
                                T*,                                          \
                                cudaStream_t);                               \
  template void MaxPoolForward<T>(                                           \
      const PoolGeometry&, const T*, T*, std::int32_t*, cudaStream_t);       \
  template void MaxPoolBackward<T>(                                          \
      const PoolGeometry&, const T*, const std::int32_t*, T*, cudaStream_t); \
  template void AvgPoolForward<T>(                                           \
      const PoolGeometry&, const T*, T*, cudaStream_t);                      \
  template void AvgPoolBackward<T>(                                          \
      const PoolGeometry&, const T*, T*, cudaStream_t);                      \
  template void RotationPoolForward<T>(                                      \
      const T*, std::int64_t, std::int64_t, bool, T*, cudaStream_t);         \
  template void RotationPoolBackward<T>(                                     \
      const T*, const T*, std::int64_t, std::int64_t, bool, T*, cudaStream_t);
SYMOPT_INSTANTIATE_NN_CONV(float)
SYMOPT_INSTANTIATE_NN_CONV(double)
#undef SYMOPT_INSTANTIATE_NN_CONV

}  // namespace cuda
}  // namespace symopt
