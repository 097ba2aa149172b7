// Private: the per-element maths of the convolution, pooling and group layers
// (STYLE M1), written once as SYMOPT_HD functions that both the CPU loops
// (src/nn_conv_cpu.h, src/nn_pooling.cpp, src/nn_group_conv.cpp,
// src/nn_flip_invariant.cpp) and the CUDA kernels (cuda/nn_conv.cu) call. The
// caller supplies the indices (STYLE M2). No Eigen, CUDA or OpenMP headers.
// The convolution's sequence of steps over these (im2col, products, col2im)
// is written once too, for both backends: src/backend/nn_conv_steps.h.
//
// Convolution indexing (stride s, zero padding p, kernel k): output (i, j)
// at kernel offset (u, v) reads input (i*s - p + u, j*s - p + v). The column
// matrix of one sample has a row per (c, u, v), row = (c*k + u)*k + v, and a
// column per output pixel, pixel = i*wo + j; a batch chunk of m samples lays
// their columns side by side (leading dimension ld = m*ho*wo).
//
// Gather forms of the adjoints: the backward passes of im2col and of the
// pooling layers are written per INPUT element (each sums its contributions),
// so the GPU needs no atomics and the result is deterministic. Each gather
// adds the contributions in the same order as the CPU's scatter loop adds
// them to the same element, starting from 0, so given the same inputs it
// returns the CPU's value bitwise (tests/nn_conv_ops_test.cpp checks this).
#pragma once

#include <climits>
#include <cstdint>
#include <vector>

#include "manifolds/check.h"

namespace symopt {
namespace nn {
namespace internal {

// One stride-s cross-correlation over a batch: x [n, channels, h, w] ->
// y [n, rows, ho, wo] with a weight of rows x kk() (row-major).
struct ConvGeometry {
  std::int64_t n, channels, h, w, k, stride, pad, ho, wo;
  SYMOPT_HD std::int64_t kk() const { return channels * k * k; }
  SYMOPT_HD std::int64_t hw() const { return ho * wo; }
  SYMOPT_HD std::int64_t InputSize() const { return channels * h * w; }
};

struct ConvOps {
  // The input coordinate that output coordinate `out` reads at kernel offset
  // `u` (may lie in the padding: < 0 or >= the input size).
  static SYMOPT_HD std::int64_t InputCoord(std::int64_t out,
                                           std::int64_t u,
                                           std::int64_t s,
                                           std::int64_t p) {
    return out * s - p + u;
  }

  // The outputs [*lo, *hi) among 0 .. outputs-1 whose InputCoord(out, u, s,
  // p) lies inside the input [0, size); the others read the padding. Ensures:
  // 0 <= *lo <= *hi <= outputs. Requires: s >= 1, p >= 0, 0 <= u.
  static SYMOPT_HD void InsideRange(std::int64_t u,
                                    std::int64_t s,
                                    std::int64_t p,
                                    std::int64_t size,
                                    std::int64_t outputs,
                                    std::int64_t* lo,
                                    std::int64_t* hi) {
    // out*s - p + u >= 0  <=>  out >= ceil((p - u) / s);
    // out*s - p + u < size  <=>  out <= floor((size - 1 + p - u) / s).
    const std::int64_t first = p - u <= 0 ? 0 : (p - u + s - 1) / s;
    const std::int64_t last = size - 1 + p - u;
    const std::int64_t end = last < 0 ? 0 : last / s + 1;
    *lo = first < outputs ? first : outputs;
    *hi = end < outputs ? end : outputs;
    if (*hi < *lo) *hi = *lo;
  }

  // col[row][pixel] of one sample x [channels, h, w]: the input value the
  // kernel entry `row` = (c, u, v) meets at output `pixel`, 0 in the padding.
  template <typename T>
  static SYMOPT_HD T Im2ColValue(const ConvGeometry& g,
                                 const T* x,
                                 std::int64_t row,
                                 std::int64_t pixel) {
    const std::int64_t v = row % g.k, u = (row / g.k) % g.k,
                       c = row / (g.k * g.k);
    const std::int64_t r = InputCoord(pixel / g.wo, u, g.stride, g.pad);
    const std::int64_t q = InputCoord(pixel % g.wo, v, g.stride, g.pad);
    return (r >= 0 && r < g.h && q >= 0 && q < g.w) ? x[(c * g.h + r) * g.w + q]
                                                    : T(0);
  }

  // The adjoint of im2col at input element (c, r, q) of one sample: the sum
  // of col[row(c, u, v) * ld + pixel(i, j)] over every (u, v, i, j) with
  // InputCoord(i, u) = r and InputCoord(j, v) = q, added for u, then v,
  // ascending (the order of Col2Im's scatter). `col` points at the sample's
  // first column.
  template <typename T>
  static SYMOPT_HD T Col2ImGather(const ConvGeometry& g,
                                  const T* col,
                                  std::int64_t ld,
                                  std::int64_t c,
                                  std::int64_t r,
                                  std::int64_t q) {
    T acc = T(0);
    for (std::int64_t u = 0; u < g.k; ++u) {
      const std::int64_t ti = r + g.pad - u;  // = i * stride
      if (ti < 0 || ti % g.stride != 0 || ti / g.stride >= g.ho) continue;
      const std::int64_t i = ti / g.stride;
      for (std::int64_t v = 0; v < g.k; ++v) {
        const std::int64_t tj = q + g.pad - v;
        if (tj < 0 || tj % g.stride != 0 || tj / g.stride >= g.wo) continue;
        acc += col[((c * g.k + u) * g.k + v) * ld + i * g.wo + tj / g.stride];
      }
    }
    return acc;
  }
};

// The per-element bodies of the GPU convolution's kernels (one call per
// output element e, each writing only element e; the index decomposition of
// e costs integer divisions, which the GPU hides and the CPU would not). The
// CPU's kernel set (HostConvKernels, src/nn_conv_cpu.h) writes the same
// values with loops over contiguous runs of rows, on the same index maths
// (ConvOps); tests/nn_conv_ops_test.cpp runs these bodies in host loops and
// checks the two bitwise. A chunk of m samples has its columns side by side:
// col [kk, ld], ld = m * hw, and the row matrix z [rows, ld] holds
// z[r, b*hw + p] for sample b, row r, pixel p.
struct ConvLayoutOps {
  // e = row * ld + b * hw + pixel: col[e] from the chunk's input x.
  template <typename T>
  static SYMOPT_HD void Im2Col(const ConvGeometry& g,
                               std::int64_t ld,
                               const T* x,
                               T* col,
                               std::int64_t e) {
    const std::int64_t hw = g.hw(), row = e / ld, rest = e % ld;
    col[e] = ConvOps::Im2ColValue(
        g, x + (rest / hw) * g.InputSize(), row, rest % hw);
  }

  // e = b * (channels*h*w) + (c*h + r)*w + q: dx[e] from the chunk's col.
  template <typename T>
  static SYMOPT_HD void Col2Im(const ConvGeometry& g,
                               std::int64_t ld,
                               const T* col,
                               T* dx,
                               std::int64_t e) {
    const std::int64_t size = g.InputSize(), b = e / size, at = e % size;
    const std::int64_t c = at / (g.h * g.w), r = (at / g.w) % g.h, q = at % g.w;
    dx[e] = ConvOps::Col2ImGather(g, col + b * g.hw(), ld, c, r, q);
  }

  // e = (b * rows + r) * hw + p: y[e] = z[r, b*hw + p] (+ bias[r]).
  template <typename T>
  static SYMOPT_HD void ColumnsToChannels(const T* z,
                                          const T* bias,
                                          std::int64_t rows,
                                          std::int64_t m,
                                          std::int64_t hw,
                                          T* y,
                                          std::int64_t e) {
    const std::int64_t b = e / (rows * hw), r = (e / hw) % rows, p = e % hw;
    const T v = z[r * (m * hw) + b * hw + p];
    y[e] = bias != nullptr ? v + bias[r] : v;
  }

  // e = (b * rows + r) * hw + p: z[r, b*hw + p] = dy[e].
  template <typename T>
  static SYMOPT_HD void ChannelsToColumns(const T* dy,
                                          std::int64_t rows,
                                          std::int64_t m,
                                          std::int64_t hw,
                                          T* z,
                                          std::int64_t e) {
    const std::int64_t b = e / (rows * hw), r = (e / hw) % rows, p = e % hw;
    z[r * (m * hw) + b * hw + p] = dy[e];
  }
};

// Pooling windows over planes h x w (no padding): output (i, j) covers rows
// i*s .. i*s + k - 1 and columns j*s .. j*s + k - 1.
struct PoolOps {
  // Offset in the plane of the first maximum of window (i, j), in row-major
  // window order (strict >, so ties keep the earliest).
  template <typename T>
  static SYMOPT_HD std::int64_t MaxWindow(const T* plane,
                                          std::int64_t w,
                                          std::int64_t k,
                                          std::int64_t s,
                                          std::int64_t i,
                                          std::int64_t j) {
    std::int64_t best = i * s * w + j * s;
    for (std::int64_t u = 0; u < k; ++u) {
      for (std::int64_t v = 0; v < k; ++v) {
        const std::int64_t at = (i * s + u) * w + j * s + v;
        if (plane[at] > plane[best]) best = at;
      }
    }
    return best;
  }

  // (sum of window (i, j), row-major order) * scale.
  template <typename T>
  static SYMOPT_HD T AvgWindow(const T* plane,
                               std::int64_t w,
                               std::int64_t k,
                               std::int64_t s,
                               std::int64_t i,
                               std::int64_t j,
                               T scale) {
    T acc = T(0);
    for (std::int64_t u = 0; u < k; ++u) {
      for (std::int64_t v = 0; v < k; ++v) {
        acc += plane[(i * s + u) * w + j * s + v];
      }
    }
    return acc * scale;
  }

  // The outputs lo .. hi (inclusive; empty when lo > hi) along one axis of
  // `out` outputs whose windows contain input coordinate r >= 0:
  // i*s <= r < i*s + k.
  static SYMOPT_HD void Covering(std::int64_t r,
                                 std::int64_t k,
                                 std::int64_t s,
                                 std::int64_t out,
                                 std::int64_t* lo,
                                 std::int64_t* hi) {
    *lo = r < k ? 0 : (r - k) / s + 1;
    *hi = r / s < out - 1 ? r / s : out - 1;
  }

  // Max-pool backward at input (r, q) of a plane: the sum of dy over the
  // covering outputs whose arg-max is this element, in row-major output
  // order (the order of the CPU's scatter d[arg[o]] += dy[o]).
  template <typename T>
  static SYMOPT_HD T MaxBackwardGather(const T* dy,
                                       const std::int32_t* arg,
                                       std::int64_t w,
                                       std::int64_t k,
                                       std::int64_t s,
                                       std::int64_t ho,
                                       std::int64_t wo,
                                       std::int64_t r,
                                       std::int64_t q) {
    std::int64_t ilo, ihi, jlo, jhi;
    Covering(r, k, s, ho, &ilo, &ihi);
    Covering(q, k, s, wo, &jlo, &jhi);
    const std::int64_t self = r * w + q;
    T acc = T(0);
    for (std::int64_t i = ilo; i <= ihi; ++i) {
      for (std::int64_t j = jlo; j <= jhi; ++j) {
        if (arg[i * wo + j] == self) acc += dy[i * wo + j];
      }
    }
    return acc;
  }

  // Average-pool backward at input (r, q): the sum of dy * scale over the
  // covering outputs, in row-major output order (the CPU scatter's order).
  template <typename T>
  static SYMOPT_HD T AvgBackwardGather(const T* dy,
                                       std::int64_t k,
                                       std::int64_t s,
                                       std::int64_t ho,
                                       std::int64_t wo,
                                       std::int64_t r,
                                       std::int64_t q,
                                       T scale) {
    std::int64_t ilo, ihi, jlo, jhi;
    Covering(r, k, s, ho, &ilo, &ihi);
    Covering(q, k, s, wo, &jlo, &jhi);
    T acc = T(0);
    for (std::int64_t i = ilo; i <= ihi; ++i) {
      for (std::int64_t j = jlo; j <= jhi; ++j) acc += dy[i * wo + j] * scale;
    }
    return acc;
  }
};

// Pooling over `planes` planes h x w -> ho x wo, kernel k, stride s.
struct PoolGeometry {
  std::int64_t planes, h, w, k, s, ho, wo;
  SYMOPT_HD std::int64_t InputSize() const { return planes * h * w; }
  SYMOPT_HD std::int64_t OutputSize() const { return planes * ho * wo; }
};

// The per-element bodies of the pooling kernels (cuda/nn_conv.cu; host loops
// in tests/nn_conv_ops_test.cpp). Forward: e = plane * (ho*wo) + i*wo + j,
// e < g.OutputSize(); backward: e = plane * (h*w) + r*w + q, e <
// g.InputSize(). Each call writes only element e (and arg[e]).
struct PoolLayoutOps {
  template <typename T>
  static SYMOPT_HD void MaxForward(const PoolGeometry& g,
                                   const T* x,
                                   T* y,
                                   std::int32_t* arg,
                                   std::int64_t e) {
    const std::int64_t howo = g.ho * g.wo, o = e % howo;
    const T* plane = x + (e / howo) * g.h * g.w;
    const std::int64_t best =
        PoolOps::MaxWindow(plane, g.w, g.k, g.s, o / g.wo, o % g.wo);
    y[e] = plane[best];
    arg[e] = static_cast<std::int32_t>(best);
  }

  template <typename T>
  static SYMOPT_HD void MaxBackward(const PoolGeometry& g,
                                    const T* dy,
                                    const std::int32_t* arg,
                                    T* dx,
                                    std::int64_t e) {
    const std::int64_t plane = e / (g.h * g.w), at = e % (g.h * g.w);
    const std::int64_t out = plane * g.ho * g.wo;
    dx[e] = PoolOps::MaxBackwardGather(
        dy + out, arg + out, g.w, g.k, g.s, g.ho, g.wo, at / g.w, at % g.w);
  }

  template <typename T>
  static SYMOPT_HD void AvgForward(
      const PoolGeometry& g, const T* x, T scale, T* y, std::int64_t e) {
    const std::int64_t howo = g.ho * g.wo, o = e % howo;
    y[e] = PoolOps::AvgWindow(
        x + (e / howo) * g.h * g.w, g.w, g.k, g.s, o / g.wo, o % g.wo, scale);
  }

  template <typename T>
  static SYMOPT_HD void AvgBackward(
      const PoolGeometry& g, const T* dy, T scale, T* dx, std::int64_t e) {
    const std::int64_t plane = e / (g.h * g.w), at = e % (g.h * g.w);
    dx[e] = PoolOps::AvgBackwardGather(dy + plane * g.ho * g.wo,
                                       g.k,
                                       g.s,
                                       g.ho,
                                       g.wo,
                                       at / g.w,
                                       at % g.w,
                                       scale);
  }
};

// Pooling over the 4 rotations of a P4 map: x points at one group channel's
// [4, hw] block, p is the pixel.
struct RotationPoolOps {
  static constexpr std::int64_t kOrder = 4;

  template <typename T>
  static SYMOPT_HD T Max(const T* x, std::int64_t hw, std::int64_t p) {
    T acc = x[p];
    for (std::int64_t r = 1; r < kOrder; ++r) {
      const T v = x[r * hw + p];
      acc = v > acc ? v : acc;
    }
    return acc;
  }

  template <typename T>
  static SYMOPT_HD T Mean(const T* x, std::int64_t hw, std::int64_t p) {
    T acc = x[p];
    for (std::int64_t r = 1; r < kOrder; ++r) acc = acc + x[r * hw + p];
    return acc / T(kOrder);
  }

  // dx[r * hw + p] for r = 0..3: dy to the first maximal rotation (is_max),
  // or dy / 4 to every rotation.
  template <typename T>
  static SYMOPT_HD void Backward(
      const T* x, T dy, std::int64_t hw, std::int64_t p, bool is_max, T* dx) {
    if (!is_max) {
      for (std::int64_t r = 0; r < kOrder; ++r) dx[r * hw + p] = dy / T(kOrder);
      return;
    }
    std::int64_t best = 0;
    for (std::int64_t r = 1; r < kOrder; ++r) {
      if (x[r * hw + p] > x[best * hw + p]) best = r;
    }
    for (std::int64_t r = 0; r < kOrder; ++r) {
      dx[r * hw + p] = r == best ? dy : T(0);
    }
  }
};

// Sums over the members of a class (a tie pattern's class, a flip orbit)
// listed in CSR form: members[begin .. end), ascending.
struct ClassOps {
  // acc + in[members[begin]] + ... + in[members[end - 1]], left to right.
  template <typename T>
  static SYMOPT_HD T Sum(const T* in,
                         const std::int32_t* members,
                         std::int32_t begin,
                         std::int32_t end,
                         T acc) {
    for (std::int32_t m = begin; m < end; ++m) acc += in[members[m]];
    return acc;
  }

  // Kernel bodies (one call per output element e). Expansion / unfold:
  // out[s, i] = in[s * in_cols + index[i]], e = s * cols + i.
  template <typename T>
  static SYMOPT_HD void GatherRowsAt(const T* in,
                                     std::int64_t in_cols,
                                     const std::int32_t* index,
                                     std::int64_t cols,
                                     T* out,
                                     std::int64_t e) {
    out[e] = in[(e / cols) * in_cols + index[e % cols]];
  }

  // Class sums / fold: out[s, c] = (accumulate ? out[s, c] : 0) + Sum over
  // the members of class c of in[s * in_cols + .], e = s * classes + c.
  template <typename T>
  static SYMOPT_HD void SumRowsAt(const T* in,
                                  std::int64_t in_cols,
                                  const std::int32_t* offsets,
                                  const std::int32_t* members,
                                  std::int64_t classes,
                                  bool accumulate,
                                  T* out,
                                  std::int64_t e) {
    const std::int64_t s = e / classes, c = e % classes;
    out[e] = Sum(in + s * in_cols,
                 members,
                 offsets[c],
                 offsets[c + 1],
                 accumulate ? out[e] : T(0));
  }
};

// Host side: the members of every class of a pattern as CSR lists, each in
// ascending order: class c owns members[offsets[c] .. offsets[c + 1]).
// Entries with a negative class (zeroed entries) belong to none.
struct MemberCsr {
  std::vector<std::int32_t> offsets, members;
};

// Requires: class_of.size() < 2^31, classes in [0, num_classes) or < 0.
inline MemberCsr BuildMemberCsr(const std::vector<std::int32_t>& class_of,
                                std::int64_t num_classes) {
  SYMOPT_CHECK(std::int64_t(class_of.size()) <= INT_MAX && num_classes >= 0 &&
                   num_classes < INT_MAX,
               "BuildMemberCsr: " << class_of.size() << " entries in "
                                  << num_classes
                                  << " classes exceed 32-bit indices");
  MemberCsr csr;
  csr.offsets.assign(std::size_t(num_classes) + 1, 0);
  for (std::size_t e = 0; e < class_of.size(); ++e) {
    const std::int32_t c = class_of[e];
    SYMOPT_CHECK(c < num_classes,
                 "BuildMemberCsr: entry " << e << " has class " << c
                                          << ", only " << num_classes
                                          << " classes");
    if (c >= 0) ++csr.offsets[std::size_t(c) + 1];
  }
  for (std::int64_t c = 0; c < num_classes; ++c) {
    csr.offsets[std::size_t(c) + 1] += csr.offsets[std::size_t(c)];
  }
  csr.members.resize(std::size_t(csr.offsets.back()));
  std::vector<std::int32_t> next(csr.offsets.begin(), csr.offsets.end() - 1);
  for (std::size_t e = 0; e < class_of.size(); ++e) {
    const std::int32_t c = class_of[e];
    if (c >= 0)
      csr.members[std::size_t(next[std::size_t(c)]++)] = std::int32_t(e);
  }
  return csr;
}

}  // namespace internal
}  // namespace nn
}  // namespace symopt
