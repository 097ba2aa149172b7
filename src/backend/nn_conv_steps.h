// Private: the convolution of Conv2d and both P4 layers, written once (STYLE
// M1) as a sequence of steps over a kernel set K, for the CPU and the GPU:
//   - the CPU (src/nn_conv_cpu.h) runs it with HostConvKernels (host loops
//     over the index maths of nn_conv_ops.h and Eigen GEMMs), on every
//     OpenMP thread over that thread's samples;
//   - the GPU (src/backend/nn_conv_dispatch.cpp) runs it with the CUDA
//     kernels of cuda/nn_conv.cu and cuBLAS, over the whole batch;
//   - tests/nn_conv_ops_test.cpp runs it with the GPU's per-element kernel
//     bodies in host loops and a reference GEMM that checks every product's
//     leading dimensions, and compares all three.
//
// A batch of n samples x [n, channels, h, w] is processed in chunks of m
// samples (the last chunk may be smaller), so the scratch stays bounded. The
// m samples' column matrices lie side by side, col [kk, m*hw] (ld = m*hw),
// and the products run on the row matrix z [rows, m*hw]. Per chunk:
//   forward   col = im2col(x_chunk)                   K::Im2Col
//             Z = W col  [rows, m*hw]                 K::Gemm
//             y[b, r, p] = Z[r, b*hw + p] + bias[r]   K::ColumnsToChannels
//   backward  col = im2col(x_chunk)                   K::Im2Col
//             dZ[r, b*hw + p] = dy[b, r, p]           K::ChannelsToColumns
//             dW += dZ col^T  (beta = 1)              K::Gemm
//             db += dZ 1  (beta = 1, ones vector)     K::Gemm
//             col = W^T dZ                            K::Gemm
//             dx_chunk = col2im(col)                  K::Col2Im
// A chunk of one sample skips the reordering: its rows [rows, hw] are already
// y's and dy's layout, so Z is y itself (the bias is added in place, or
// nothing is done without bias) and dZ is dy.
// Every sum is a product or a per-element gather, in a fixed order: for a
// given kernel set and chunk size the results do not depend on scheduling.
//
// The kernel set K (static function templates on T; every pointer on K's
// device; work runs in call order; unless stated, outputs are overwritten
// and inputs and outputs are distinct buffers):
//   K::Im2Col(g, m, x, col)        col [kk, m*hw] from x [m, channels, h, w]
//                                  (ConvLayoutOps::Im2Col, 0 in the padding)
//   K::Col2Im(g, m, col, dx)       dx [m, channels, h, w] = the adjoint of
//                                  im2col of col [kk, m*hw], each element's
//                                  contributions added for u, then v,
//                                  ascending, from 0 (ConvLayoutOps::Col2Im)
//   K::ColumnsToChannels(z, bias, rows, m, hw, y)
//                                  y [m, rows, hw] from z [rows, m*hw] (+
//                                  bias[r] when bias is not null); z == y
//                                  is legal when m = 1 (in place)
//   K::ChannelsToColumns(dy, rows, m, hw, z)
//                                  z [rows, m*hw] from dy [m, rows, hw]
//   K::Fill(out, n, value)         out[0 .. n) = value
//   K::Gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
//                                  C = alpha op(A) op(B) + beta C, row-major
//                                  with leading dimensions (cuda::Gemm's
//                                  contract; beta = 0 ignores C's contents)
#pragma once

#include <algorithm>
#include <cstdint>

#include "nn_conv_ops.h"

namespace symopt {
namespace nn {
namespace backend {

using internal::ConvGeometry;

// y [g.n, rows, g.ho, g.wo] = conv(x [g.n, g.channels, g.h, g.w]) with
// weight [rows, kk] and bias [rows] (may be null), over chunks of `chunk`
// samples. Scratch: col [kk * chunk * hw], z [rows * chunk * hw] (unused,
// may be null, when chunk = 1). Requires: chunk >= 1; buffers distinct.
template <typename K, typename T>
void ConvForwardSteps(const ConvGeometry& g,
                      const T* x,
                      const T* weight,
                      std::int64_t rows,
                      const T* bias,
                      T* y,
                      std::int64_t chunk,
                      T* col,
                      T* z) {
  const std::int64_t kk = g.kk(), hw = g.hw();
  for (std::int64_t b0 = 0; b0 < g.n; b0 += chunk) {
    const std::int64_t m = std::min(chunk, g.n - b0), ld = m * hw;
    T* y_chunk = y + b0 * rows * hw;
    // One sample's rows [rows, hw] are already y's layout: the product goes
    // straight to y, and the layout step only adds the bias, in place.
    T* out = m == 1 ? y_chunk : z;
    K::Im2Col(g, m, x + b0 * g.InputSize(), col);
    K::Gemm(
        false, false, rows, ld, kk, T(1), weight, kk, col, ld, T(0), out, ld);
    if (m > 1 || bias != nullptr) {
      K::ColumnsToChannels(out, bias, rows, m, hw, y_chunk);
    }
  }
}

// Backward over chunks: dweight [rows, kk] += dZ col^T, dbias [rows] += dZ 1
// (when not null; `ones` [chunk * hw] is filled here), dx [g.n, channels, h,
// w] = col2im(W^T dZ) (when not null; overwritten). Scratch: col [kk * chunk
// * hw] (columns, then their gradient), dz [rows * chunk * hw] (unused, may
// be null, when chunk = 1). Requires: chunk >= 1; buffers distinct.
template <typename K, typename T>
void ConvBackwardSteps(const ConvGeometry& g,
                       const T* x,
                       const T* weight,
                       std::int64_t rows,
                       const T* dy,
                       T* dweight,
                       T* dbias,
                       T* dx,
                       std::int64_t chunk,
                       T* col,
                       T* dz,
                       T* ones) {
  const std::int64_t kk = g.kk(), hw = g.hw();
  if (dbias != nullptr) K::Fill(ones, chunk * hw, T(1));
  for (std::int64_t b0 = 0; b0 < g.n; b0 += chunk) {
    const std::int64_t m = std::min(chunk, g.n - b0), ld = m * hw;
    K::Im2Col(g, m, x + b0 * g.InputSize(), col);
    // One sample's dy [rows, hw] is already in column layout.
    const T* dz_chunk = m == 1 ? dy + b0 * rows * hw : dz;
    if (m > 1) K::ChannelsToColumns(dy + b0 * rows * hw, rows, m, hw, dz);
    // dW += dZ col^T (rows x kk, inner dimension m*hw).
    K::Gemm(false,
            true,
            rows,
            kk,
            ld,
            T(1),
            dz_chunk,
            ld,
            col,
            ld,
            T(1),
            dweight,
            kk);
    // db += dZ 1: the row sums as a product (deterministic, no atomics).
    if (dbias != nullptr) {
      K::Gemm(false,
              false,
              rows,
              1,
              ld,
              T(1),
              dz_chunk,
              ld,
              ones,
              1,
              T(1),
              dbias,
              1);
    }
    if (dx != nullptr) {
      // dcol = W^T dZ into the column buffer (the products above that read it
      // run first), then the gather col2im.
      K::Gemm(true,
              false,
              kk,
              ld,
              rows,
              T(1),
              weight,
              kk,
              dz_chunk,
              ld,
              T(0),
              col,
              ld);
      K::Col2Im(g, m, col, dx + b0 * g.InputSize());
    }
  }
}

}  // namespace backend
}  // namespace nn
}  // namespace symopt
