// The backend dispatch point of the convolution, pooling and group layers
// (STYLE M4), private to the library. The layers (src/nn_conv2d.cpp,
// src/nn_pooling.cpp, src/nn_group_conv.cpp, src/nn_flip_invariant.cpp) check
// shapes and devices, then hand device tensors to these functions, which call
// the CUDA entry points (cuda/nn_conv_backend.h, cuda::Gemm). Without CUDA
// every function that touches a device throws NotCompiledError; the host
// helpers (CheckDevice, ConvChunkSamples) work in every build.
//
// Pointers named d_* are device memory. Everything runs on the legacy default
// stream, in order with the tensors' copies, and returns once enqueued.
//
// Convolution on the GPU (Conv2d and both P4 layers share it): the steps of
// backend/nn_conv_steps.h, the same code the CPU runs (src/nn_conv_cpu.h),
// with the CUDA kernels and cuBLAS as the kernel set, over the whole batch in
// chunks of ConvChunkSamples samples so the scratch stays bounded. No
// atomics: every sum is a cuBLAS product or a per-element gather, so results
// are deterministic.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/nn_conv_steps.h"
#include "manifolds/device.h"
#include "manifolds/tensor_view.h"
#include "nn/layer.h"
#include "nn_conv_ops.h"

namespace symopt {
namespace nn {
namespace backend {

// Default bound of the convolution scratch, in elements of each of the column
// buffer [kk, m*hw] and the row buffer [rows, m*hw]: 2^24 (64 MiB in float).
constexpr std::int64_t kDefaultColumnBudget = std::int64_t(1) << 24;

// Samples per chunk: the largest m <= g.n with max(kk, rows) * m * hw <=
// budget, at least 1 (a single sample larger than the budget is processed
// alone), and m * hw within cuBLAS's int.
// Requires: budget >= 1; g.n, kk, rows, hw >= 1; kk, rows, hw fit in int.
std::int64_t ConvChunkSamples(const ConvGeometry& g,
                              std::int64_t rows,
                              std::int64_t budget);

// Device scratch of one convolution layer, allocated on first use on the
// current device and grown when a larger input needs it.
template <typename T>
struct ConvDeviceScratch {
  DeviceBuffer<T> col;   // [kk, m*hw]: columns, then their gradient
  DeviceBuffer<T> mat;   // [rows, m*hw]: W col, or dy in column layout
  DeviceBuffer<T> ones;  // [m*hw] of 1: the bias gradient's row sums
};

// y [g.n, rows, g.ho, g.wo] = conv(x [g.n, g.channels, g.h, g.w]) with
// d_weight [rows, kk] and d_bias [rows] (may be null). Outputs fully
// written. Requires: distinct buffers, all on the device.
template <typename T>
void ConvForwardGpu(const ConvGeometry& g,
                    const T* d_x,
                    const T* d_weight,
                    std::int64_t rows,
                    const T* d_bias,
                    T* d_y,
                    ConvDeviceScratch<T>& scratch,
                    std::int64_t budget);

// d_dweight [rows, kk] += the weight gradient, d_dbias [rows] += the bias
// gradient (when not null), and d_dx (when not null) = the input gradient
// (overwritten). Requires: distinct buffers, all on the device.
template <typename T>
void ConvBackwardGpu(const ConvGeometry& g,
                     const T* d_x,
                     const T* d_weight,
                     std::int64_t rows,
                     const T* d_dy,
                     T* d_dweight,
                     T* d_dbias,
                     T* d_dx,
                     ConvDeviceScratch<T>& scratch,
                     std::int64_t budget);

// A tie pattern's index tables on the device: class_of (one entry per
// expanded element) for gathers, and the members of every class as CSR
// (BuildMemberCsr) for per-class sums.
struct DeviceTieTables {
  DeviceBuffer<std::int32_t> class_of, offsets, members;
  std::int64_t size = 0;     // entries of class_of
  std::int64_t classes = 0;  // classes
};

// Uploads class_of and its CSR (synchronous).
// Requires: every class in [0, num_classes); sizes < 2^31.
DeviceTieTables UploadTieTables(const std::vector<std::int32_t>& class_of,
                                std::int64_t num_classes);

// The device state of a P4 layer (nn/group_conv.h): the bank's tables
// (class_of: bank entry -> free weight; CSR: the members of every free
// weight), the bias tables (bank row -> group channel, row / 4), the
// convolution scratch and the expanded bank, its gradient, the bank rows'
// biases and their gradient.
template <typename T>
struct P4DeviceState {
  DeviceTieTables bank_tables, bias_tables;
  ConvDeviceScratch<T> conv;
  DeviceBuffer<T> bank, dbank, bias_rows, dbias_rows;
};

// The device state of a FlipInvariantDense layer: the orbit tables (class_of:
// input feature -> orbit; CSR: the members of every orbit), the folded input
// [n, K] and its gradient. The dense product in between is Linear's
// (backend/nn_dense_dispatch.h).
template <typename T>
struct FlipDeviceState {
  DeviceTieTables tables;
  DeviceBuffer<T> folded, dfolded;
};

// d_out [rows, t.size] with out[s, e] = d_in[s * in_cols + class_of[e]]: the
// filter/weight expansion (rows = 1 for a P4 bank) and the unfold.
template <typename T>
void ExpandGpu(const DeviceTieTables& t,
               std::int64_t rows,
               const T* d_in,
               std::int64_t in_cols,
               T* d_out);

// d_out [rows, t.classes] with out[s, c] = (accumulate ? out[s, c] : 0) + sum
// of d_in[s * in_cols + e] over the members e of class c, ascending: the
// per-class gradient sum and the fold.
template <typename T>
void ClassSumGpu(const DeviceTieTables& t,
                 std::int64_t rows,
                 const T* d_in,
                 std::int64_t in_cols,
                 bool accumulate,
                 T* d_out);

// Pooling (cuda/nn_conv_backend.h): d_y [g.OutputSize()], the arg-max
// offsets d_arg [g.OutputSize()], d_dx [g.InputSize()] (overwritten).
template <typename T>
void MaxPoolForwardGpu(const internal::PoolGeometry& g,
                       const T* d_x,
                       T* d_y,
                       std::int32_t* d_arg);
template <typename T>
void MaxPoolBackwardGpu(const internal::PoolGeometry& g,
                        const T* d_dy,
                        const std::int32_t* d_arg,
                        T* d_dx);
template <typename T>
void AvgPoolForwardGpu(const internal::PoolGeometry& g, const T* d_x, T* d_y);
template <typename T>
void AvgPoolBackwardGpu(const internal::PoolGeometry& g,
                        const T* d_dy,
                        T* d_dx);
template <typename T>
void RotationPoolForwardGpu(
    const T* d_x, std::int64_t groups, std::int64_t hw, bool is_max, T* d_y);
template <typename T>
void RotationPoolBackwardGpu(const T* d_x,
                             const T* d_dy,
                             std::int64_t groups,
                             std::int64_t hw,
                             bool is_max,
                             T* d_dx);

// Grows `buffer` to at least n elements (contents unspecified after a grow)
// and returns its data.
template <typename U>
U* Reserve(DeviceBuffer<U>& buffer, std::int64_t n) {
  if (buffer.size() < n) {
    buffer = DeviceBuffer<U>();  // free first: peak memory is the new size
    buffer = DeviceBuffer<U>(n);
  }
  return buffer.data();
}

}  // namespace backend
}  // namespace nn
}  // namespace symopt
