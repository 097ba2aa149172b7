// Private: the column buffer of a 2-d cross-correlation and its adjoint,
// shared by Conv2d (src/nn_conv2d.cpp) and the P4 group convolution
// (src/nn_group_conv.cpp), which both run one GEMM per sample on it.
#pragma once

#include <cstdint>

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
          const std::int64_t r = i * s - p + u;
          T* out = row + i * wo;
          if (r < 0 || r >= h) {
            for (std::int64_t j = 0; j < wo; ++j) out[j] = T(0);
            continue;
          }
          const T* in = x + (c * h + r) * w;
          for (std::int64_t j = 0; j < wo; ++j) {
            const std::int64_t q = j * s - p + v;
            out[j] = (q >= 0 && q < w) ? in[q] : T(0);
          }
        }
      }
    }
  }
}

// The adjoint of Im2Col: dx[c, r, q] += col[...] for every (u, v, i, j) that
// read x[c, r, q]. dx must be zeroed by the caller.
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
          const std::int64_t r = i * s - p + u;
          if (r < 0 || r >= h) continue;
          const T* in = row + i * wo;
          T* out = dx + (c * h + r) * w;
          for (std::int64_t j = 0; j < wo; ++j) {
            const std::int64_t q = j * s - p + v;
            if (q >= 0 && q < w) out[q] += in[j];
          }
        }
      }
    }
  }
}

}  // namespace internal
}  // namespace nn
}  // namespace symopt
