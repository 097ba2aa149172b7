// Plain C++ declarations of the CUDA kernels of the convolution, pooling and
// group layers (STYLE M4): no CUDA headers, so the dispatch point
// (src/backend/nn_conv_dispatch.cpp) and the GPU tests can include it. Defined
// in cuda/nn_conv.cu, explicitly instantiated for float and double. Pointers
// named d_* are device memory; every function only enqueues work on `stream`
// (launch checked with cudaGetLastError, STYLE E3). The per-element maths is
// src/nn_conv_ops.h, shared with the CPU loops (STYLE M1). Every kernel writes
// each output element exactly once (gather form: no atomics, deterministic).
// Outputs never alias inputs.
#pragma once

#include <cstdint>

#include "nn_conv_ops.h"

typedef struct CUstream_st* cudaStream_t;

namespace symopt {
namespace cuda {

using nn::internal::ConvGeometry;
using nn::internal::PoolGeometry;

// d_col [g.kk(), m * g.hw()] (row-major) = the columns of the m samples of
// d_x [m, g.channels, g.h, g.w] side by side: ConvOps::Im2ColValue.
template <typename T>
void ConvIm2Col(const ConvGeometry& g,
                std::int64_t m,
                const T* d_x,
                T* d_col,
                cudaStream_t stream);

// d_dx [m, g.channels, g.h, g.w] = the adjoint of ConvIm2Col applied to d_col
// [g.kk(), m * g.hw()] (overwritten, not added): ConvOps::Col2ImGather.
template <typename T>
void ConvCol2Im(const ConvGeometry& g,
                std::int64_t m,
                const T* d_col,
                T* d_dx,
                cudaStream_t stream);

// d_y [m, rows, hw] from d_z [rows, m * hw]: y[b, r, p] = z[r, b*hw + p]
// (+ d_bias[r] when d_bias is not null).
template <typename T>
void ColumnsToChannels(const T* d_z,
                       const T* d_bias,
                       std::int64_t rows,
                       std::int64_t m,
                       std::int64_t hw,
                       T* d_y,
                       cudaStream_t stream);

// The inverse layout change: d_z [rows, m * hw] from d_dy [m, rows, hw].
template <typename T>
void ChannelsToColumns(const T* d_dy,
                       std::int64_t rows,
                       std::int64_t m,
                       std::int64_t hw,
                       T* d_z,
                       cudaStream_t stream);

// d_out [n] = value.
template <typename T>
void FillValue(T* d_out, std::int64_t n, T value, cudaStream_t stream);

// d_out [rows, cols] with out[s, e] = d_in[s * in_cols + d_index[e]]: the
// filter expansion (rows = 1, index = class_of) and the unfold of a folded
// gradient (index = the orbit of each input feature).
template <typename T>
void GatherRows(const T* d_in,
                std::int64_t in_cols,
                const std::int32_t* d_index,
                std::int64_t rows,
                std::int64_t cols,
                T* d_out,
                cudaStream_t stream);

// d_out [rows, classes] with out[s, c] = (accumulate ? out[s, c] : 0) +
// sum of d_in[s * in_cols + e] over the members e of class c (CSR
// d_offsets [classes + 1], d_members), in ascending order: ClassOps::Sum.
// The per-class gradient sum (rows = 1, accumulate) and the fold.
template <typename T>
void ClassSumRows(const T* d_in,
                  std::int64_t in_cols,
                  const std::int32_t* d_offsets,
                  const std::int32_t* d_members,
                  std::int64_t rows,
                  std::int64_t classes,
                  bool accumulate,
                  T* d_out,
                  cudaStream_t stream);

// Pooling (no padding): max writes d_y [g.OutputSize()] and the arg-max
// offsets d_arg (PoolOps::MaxWindow); the backward passes overwrite d_dx
// [g.InputSize()] (gathers; max from the forward's d_arg).
template <typename T>
void MaxPoolForward(const PoolGeometry& g,
                    const T* d_x,
                    T* d_y,
                    std::int32_t* d_arg,
                    cudaStream_t stream);
template <typename T>
void MaxPoolBackward(const PoolGeometry& g,
                     const T* d_dy,
                     const std::int32_t* d_arg,
                     T* d_dx,
                     cudaStream_t stream);
template <typename T>
void AvgPoolForward(const PoolGeometry& g,
                    const T* d_x,
                    T* d_y,
                    cudaStream_t stream);
template <typename T>
void AvgPoolBackward(const PoolGeometry& g,
                     const T* d_dy,
                     T* d_dx,
                     cudaStream_t stream);

// Pooling over rotations: d_x [groups, 4, hw] -> d_y [groups, hw]
// (RotationPoolOps::Max or Mean).
template <typename T>
void RotationPoolForward(const T* d_x,
                         std::int64_t groups,
                         std::int64_t hw,
                         bool is_max,
                         T* d_y,
                         cudaStream_t stream);

// d_dx [groups, 4, hw] (overwritten) from d_dy [groups, hw].
template <typename T>
void RotationPoolBackward(const T* d_x,
                          const T* d_dy,
                          std::int64_t groups,
                          std::int64_t hw,
                          bool is_max,
                          T* d_dx,
                          cudaStream_t stream);

}  // namespace cuda
}  // namespace symopt
