// Private: the CPU cross-correlation shared by Conv2d (src/nn_conv2d.cpp) and
// the P4 group convolution (src/nn_group_conv.cpp, which runs it with its
// gathered filter bank): per sample, im2col (col [C*k*k, Ho*Wo]) and one Eigen
// GEMM  Y_b = W col + bias;  backward  dW += dY_b col^T,  db += rowsum(dY_b),
// dcol = W^T dY_b scattered back by col2im. Samples run in parallel over
// OpenMP threads; per-thread weight-gradient partials are summed in thread
// order, so results do not depend on scheduling. The GPU path
// (backend/nn_conv_dispatch.h) uses the same index maths (nn_conv_ops.h) and
// is checked against these functions (tests/nn_conv_ops_test.cpp).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "nn_common.h"
#include "nn_conv_ops.h"

namespace symopt {
namespace nn {
namespace internal {

// col[(c*k + u)*k + v][i*wo + j] = x[c, i*s - p + u, j*s - p + v] (0 outside).
template <typename T>
void Im2Col(const T* x,
            std::int64_t channels,
            std::int64_t h,
            std::int64_t w,
            std::int64_t k,
            std::int64_t s,
            std::int64_t p,
            std::int64_t ho,
            std::int64_t wo,
            T* col) {
  for (std::int64_t c = 0; c < channels; ++c) {
    for (std::int64_t u = 0; u < k; ++u) {
      for (std::int64_t v = 0; v < k; ++v) {
        T* row = col + ((c * k + u) * k + v) * ho * wo;
        for (std::int64_t i = 0; i < ho; ++i) {
          const std::int64_t r = ConvOps::InputCoord(i, u, s, p);
          T* out = row + i * wo;
          if (r < 0 || r >= h) {
            for (std::int64_t j = 0; j < wo; ++j) out[j] = T(0);
            continue;
          }
          const T* in = x + (c * h + r) * w;
          for (std::int64_t j = 0; j < wo; ++j) {
            const std::int64_t q = ConvOps::InputCoord(j, v, s, p);
            out[j] = (q >= 0 && q < w) ? in[q] : T(0);
          }
        }
      }
    }
  }
}

// The adjoint of Im2Col: dx[c, r, q] += col[...] for every (u, v, i, j) that
// read x[c, r, q]. dx must be zeroed by the caller. Per element it adds in the
// order of ConvOps::Col2ImGather (u, then v, ascending), the GPU's gather.
template <typename T>
void Col2Im(const T* col,
            std::int64_t channels,
            std::int64_t h,
            std::int64_t w,
            std::int64_t k,
            std::int64_t s,
            std::int64_t p,
            std::int64_t ho,
            std::int64_t wo,
            T* dx) {
  for (std::int64_t c = 0; c < channels; ++c) {
    for (std::int64_t u = 0; u < k; ++u) {
      for (std::int64_t v = 0; v < k; ++v) {
        const T* row = col + ((c * k + u) * k + v) * ho * wo;
        for (std::int64_t i = 0; i < ho; ++i) {
          const std::int64_t r = ConvOps::InputCoord(i, u, s, p);
          if (r < 0 || r >= h) continue;
          const T* in = row + i * wo;
          T* out = dx + (c * h + r) * w;
          for (std::int64_t j = 0; j < wo; ++j) {
            const std::int64_t q = ConvOps::InputCoord(j, v, s, p);
            if (q >= 0 && q < w) out[q] += in[j];
          }
        }
      }
    }
  }
}

// Threads for a weight of `rows` rows: one when the work (2 flops per
// multiply-add) cannot pay for a parallel region.
inline int ConvThreads(const ConvGeometry& g, std::int64_t rows) {
  return 2.0 * double(g.n) * double(rows) * double(g.kk()) * double(g.hw()) <
                 2e6
             ? 1
             : int(std::min<std::int64_t>(omp_get_max_threads(), g.n));
}

// y[b] = W col(x[b]) (+ bias[row] on every row when bias != nullptr).
// scratch: per-thread buffers, resized here. x, y distinct.
template <typename T>
void ConvForwardCpu(const ConvGeometry& g,
                    const T* x,
                    const T* weight,
                    std::int64_t rows,
                    const T* bias,
                    T* y,
                    std::vector<std::vector<T>>& scratch) {
  const std::int64_t kk = g.kk(), hw = g.hw();
  const int threads = ConvThreads(g, rows);
  scratch.resize(threads);
  const ConstMatrixMap<T> W(weight, rows, kk);
#pragma omp parallel num_threads(threads)
  {
    std::vector<T>& col = scratch[omp_get_thread_num()];
    col.resize(kk * hw);
#pragma omp for schedule(static)
    for (std::int64_t b = 0; b < g.n; ++b) {
      Im2Col(x + b * g.channels * g.h * g.w,
             g.channels,
             g.h,
             g.w,
             g.k,
             g.stride,
             g.pad,
             g.ho,
             g.wo,
             col.data());
      MatrixMap<T> Y(y + b * rows * hw, rows, hw);
      Y.noalias() = W * ConstMatrixMap<T>(col.data(), kk, hw);
      if (bias != nullptr) Y.colwise() += ConstVectorMap<T>(bias, rows);
    }
  }
}

// Adds sum_b dY_b col(x[b])^T to dweight (rows x kk) and, when dbias !=
// nullptr, the row sums of dY_b to dbias (rows); when dx != nullptr writes
// dx[b] = col2im(W^T dY_b) (dx: n * channels * h * w values, overwritten).
template <typename T>
void ConvBackwardCpu(const ConvGeometry& g,
                     const T* x,
                     const T* weight,
                     std::int64_t rows,
                     const T* dy,
                     T* dweight,
                     T* dbias,
                     T* dx,
                     std::vector<std::vector<T>>& scratch) {
  const std::int64_t kk = g.kk(), hw = g.hw();
  if (dx != nullptr) std::fill(dx, dx + g.n * g.channels * g.h * g.w, T(0));
  const int threads = ConvThreads(g, rows);
  scratch.resize(threads);
  // Per-thread buffer: col (kk*hw) | dcol (kk*hw) | dW partial (rows*kk) |
  // db partial (rows).
  const ConstMatrixMap<T> W(weight, rows, kk);
#pragma omp parallel num_threads(threads)
  {
    std::vector<T>& buf = scratch[omp_get_thread_num()];
    buf.assign(2 * kk * hw + rows * kk + rows, T(0));
    MatrixMap<T> col(buf.data(), kk, hw);
    MatrixMap<T> dcol(buf.data() + kk * hw, kk, hw);
    MatrixMap<T> dW(buf.data() + 2 * kk * hw, rows, kk);
    VectorMap<T> db(buf.data() + 2 * kk * hw + rows * kk, rows);
#pragma omp for schedule(static)
    for (std::int64_t b = 0; b < g.n; ++b) {
      Im2Col(x + b * g.channels * g.h * g.w,
             g.channels,
             g.h,
             g.w,
             g.k,
             g.stride,
             g.pad,
             g.ho,
             g.wo,
             col.data());
      const ConstMatrixMap<T> dY(dy + b * rows * hw, rows, hw);
      dW.noalias() += dY * col.transpose();
      if (dbias != nullptr) db.noalias() += dY.rowwise().sum();
      if (dx != nullptr) {
        dcol.noalias() = W.transpose() * dY;
        Col2Im(dcol.data(),
               g.channels,
               g.h,
               g.w,
               g.k,
               g.stride,
               g.pad,
               g.ho,
               g.wo,
               dx + b * g.channels * g.h * g.w);
      }
    }
  }
  // Sum the partials in thread order (deterministic).
  MatrixMap<T> dW(dweight, rows, kk);
  for (int t = 0; t < threads; ++t) {
    const T* p = scratch[t].data() + 2 * kk * hw;
    dW += ConstMatrixMap<T>(p, rows, kk);
    if (dbias != nullptr) {
      VectorMap<T>(dbias, rows) += ConstVectorMap<T>(p + rows * kk, rows);
    }
  }
}

}  // namespace internal
}  // namespace nn
}  // namespace symopt
