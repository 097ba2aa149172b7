// Private: the CPU convolution of Conv2d (src/nn_conv2d.cpp) and the P4 group
// convolution (src/nn_group_conv.cpp, which runs it with its gathered filter
// bank). It is the GPU's convolution: the steps of backend/nn_conv_steps.h
// (chunked im2col, GEMM, layout copies, col2im), run here with a host kernel
// set, HostConvKernels:
//   - Im2Col, Col2Im, ColumnsToChannels, ChannelsToColumns: host loops over
//     the index maths of nn_conv_ops.h (ConvOps::InputCoord, InsideRange),
//     one contiguous run of an output row at a time. Each writes exactly what
//     the GPU's per-element body (ConvLayoutOps) writes, bitwise: Col2Im
//     zeroes its samples and scatter-adds in the gather's order (u, then v,
//     ascending) (tests/nn_conv_ops_test.cpp checks all four);
//   - Gemm: Eigen's GEMM (GEMV when n = 1) through Eigen::Map with the
//     leading dimensions as outer strides.
//
// Threads: the samples are split into one contiguous range per OpenMP thread
// (SetNumThreads; one thread when the work cannot pay for a parallel region,
// ConvThreads). Every thread runs the steps over its own range with its own
// scratch (ConvScratchLayout; grown, never shrunk, so steady-state calls
// allocate nothing) and, backward, its own weight- and bias-gradient partials,
// which are added to dweight / dbias in thread order: results do not depend on
// scheduling, and depend on the thread count only through where the
// per-thread partial sums split the batch. GEMMs run single-threaded inside
// the parallel region (Eigen does not nest its own parallelism).
#pragma once

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend/nn_conv_steps.h"
#include "nn_conv_ops.h"

namespace symopt {
namespace nn {
namespace internal {

// The kernel set of backend/nn_conv_steps.h on the host (its contract is
// stated there). Pointers are host memory.
struct HostConvKernels {
  // col [kk, m*hw]: col[(c*k + u)*k + v][b*hw + i*wo + j] = x[b, c, i*s - p +
  // u, j*s - p + v], 0 in the padding.
  template <typename T>
  static void Im2Col(const ConvGeometry& g,
                     std::int64_t m,
                     const T* x,
                     T* col) {
    const std::int64_t s = g.stride, wo = g.wo;
    ForEachColumnRow(g, m, [&](const ColumnRow& r) {
      T* out = col + r.row;
      std::fill(out, out + r.ilo * wo, T(0));
      for (std::int64_t i = r.ilo; i < r.ihi; ++i) {
        const T* in = x + r.plane + r.InputOffset(g, i);
        T* o = out + i * wo;
        std::fill(o, o + r.jlo, T(0));
        if (s == 1) {
          for (std::int64_t j = 0; j < r.jhi - r.jlo; ++j) o[r.jlo + j] = in[j];
        } else {
          for (std::int64_t j = 0; j < r.jhi - r.jlo; ++j) {
            o[r.jlo + j] = in[j * s];
          }
        }
        std::fill(o + r.jhi, o + wo, T(0));
      }
      std::fill(out + r.ihi * wo, out + g.hw(), T(0));
    });
  }

  // dx [m, channels, h, w] = the adjoint of im2col of col [kk, m*hw]: dx is
  // zeroed, then every (c, u, v) row adds its entries to the inputs they were
  // read from, so each element sums its contributions for u, then v,
  // ascending (ConvOps::Col2ImGather's order).
  template <typename T>
  static void Col2Im(const ConvGeometry& g,
                     std::int64_t m,
                     const T* col,
                     T* dx) {
    const std::int64_t s = g.stride, wo = g.wo;
    std::fill(dx, dx + m * g.InputSize(), T(0));
    ForEachColumnRow(g, m, [&](const ColumnRow& r) {
      for (std::int64_t i = r.ilo; i < r.ihi; ++i) {
        T* out = dx + r.plane + r.InputOffset(g, i);
        const T* in = col + r.row + i * wo + r.jlo;
        if (s == 1) {
          for (std::int64_t j = 0; j < r.jhi - r.jlo; ++j) out[j] += in[j];
        } else {
          for (std::int64_t j = 0; j < r.jhi - r.jlo; ++j) out[j * s] += in[j];
        }
      }
    });
  }

  // y [m, rows, hw] from z [rows, m*hw] (+ bias[r] when bias != nullptr).
  template <typename T>
  static void ColumnsToChannels(const T* z,
                                const T* bias,
                                std::int64_t rows,
                                std::int64_t m,
                                std::int64_t hw,
                                T* y) {
    for (std::int64_t b = 0; b < m; ++b) {
      for (std::int64_t r = 0; r < rows; ++r) {
        const T* in = z + r * (m * hw) + b * hw;
        T* out = y + (b * rows + r) * hw;
        if (bias == nullptr) {
          std::copy(in, in + hw, out);
        } else {
          const T shift = bias[r];
          for (std::int64_t p = 0; p < hw; ++p) out[p] = in[p] + shift;
        }
      }
    }
  }

  // z [rows, m*hw] from dy [m, rows, hw].
  template <typename T>
  static void ChannelsToColumns(
      const T* dy, std::int64_t rows, std::int64_t m, std::int64_t hw, T* z) {
    for (std::int64_t b = 0; b < m; ++b) {
      for (std::int64_t r = 0; r < rows; ++r) {
        const T* in = dy + (b * rows + r) * hw;
        std::copy(in, in + hw, z + r * (m * hw) + b * hw);
      }
    }
  }

  template <typename T>
  static void Fill(T* out, std::int64_t n, T value) {
    std::fill(out, out + n, value);
  }

  // C [m, n] = alpha op(A) op(B) + beta C; row-major with leading dimensions
  // lda, ldb, ldc (cuda::Gemm's contract). C must not overlap A or B.
  template <typename T>
  static void Gemm(bool trans_a,
                   bool trans_b,
                   std::int64_t m,
                   std::int64_t n,
                   std::int64_t k,
                   T alpha,
                   const T* a,
                   std::int64_t lda,
                   const T* b,
                   std::int64_t ldb,
                   T beta,
                   T* c,
                   std::int64_t ldc) {
    const ConstStridedMap<T> A(
        a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
    const ConstStridedMap<T> B(
        b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
    StridedMap<T> C(c, m, n, Eigen::OuterStride<>(ldc));
    if (trans_a) {
      if (trans_b) {
        Accumulate(alpha, A.transpose(), B.transpose(), beta, C);
      } else {
        Accumulate(alpha, A.transpose(), B, beta, C);
      }
    } else if (trans_b) {
      Accumulate(alpha, A, B.transpose(), beta, C);
    } else {
      Accumulate(alpha, A, B, beta, C);
    }
  }

 private:
  // Row (c, u, v) of sample b's column matrix: `plane` = b*channels*h*w +
  // c*h*w is the offset of the input plane it reads, `row` = ((c*k + u)*k +
  // v)*ld + b*hw the offset of its hw entries in col; the outputs (i, j) in
  // [ilo, ihi) x [jlo, jhi) read inside the plane (ConvOps::InsideRange), the
  // others read the padding.
  struct ColumnRow {
    std::int64_t plane, row, u, v, ilo, ihi, jlo, jhi;

    // The offset in the plane of the input that output (i, jlo) reads;
    // output (i, jlo + t) reads t * stride further.
    std::int64_t InputOffset(const ConvGeometry& g, std::int64_t i) const {
      return ConvOps::InputCoord(i, u, g.stride, g.pad) * g.w +
             ConvOps::InputCoord(jlo, v, g.stride, g.pad);
    }
  };

  // fn(row) for every sample b < m and row (c, u, v), b outermost.
  template <typename Fn>
  static void ForEachColumnRow(const ConvGeometry& g, std::int64_t m, Fn fn) {
    const std::int64_t ld = m * g.hw();
    ColumnRow r;
    for (std::int64_t b = 0; b < m; ++b) {
      for (std::int64_t c = 0; c < g.channels; ++c) {
        r.plane = b * g.InputSize() + c * g.h * g.w;
        for (r.u = 0; r.u < g.k; ++r.u) {
          ConvOps::InsideRange(r.u, g.stride, g.pad, g.h, g.ho, &r.ilo, &r.ihi);
          for (r.v = 0; r.v < g.k; ++r.v) {
            ConvOps::InsideRange(
                r.v, g.stride, g.pad, g.w, g.wo, &r.jlo, &r.jhi);
            r.row = ((c * g.k + r.u) * g.k + r.v) * ld + b * g.hw();
            fn(static_cast<const ColumnRow&>(r));
          }
        }
      }
    }
  }

  template <typename T>
  using RowMajor =
      Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  template <typename T>
  using StridedMap =
      Eigen::Map<RowMajor<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
  template <typename T>
  using ConstStridedMap =
      Eigen::Map<const RowMajor<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

  // C = alpha A B + beta C as one Eigen product (beta = 0: C is not read).
  template <typename T, typename A, typename B>
  static void Accumulate(
      T alpha, const A& a, const B& b, T beta, StridedMap<T>& c) {
    if (beta == T(0)) {
      c.noalias() = alpha * a * b;
      return;
    }
    if (beta != T(1)) c *= beta;
    c.noalias() += alpha * a * b;
  }
};

// Threads for a weight of `rows` rows: one when the work (2 flops per
// multiply-add) cannot pay for a parallel region.
inline int ConvThreads(const ConvGeometry& g, std::int64_t rows) {
  return 2.0 * double(g.n) * double(rows) * double(g.kk()) * double(g.hw()) <
                 2e6
             ? 1
             : int(std::min<std::int64_t>(omp_get_max_threads(), g.n));
}

// Samples per chunk on the CPU: one. Then the steps need no row matrix z (a
// sample's rows are already y's and dy's layout), and the products are one
// sample's, which Eigen runs as fast as larger ones: chunks of 2 to 64
// samples measured no faster on the benchmarks' convolutions.
constexpr std::int64_t kCpuChunkSamples = 1;

// One thread's scratch (its std::vector<T> in the per-thread buffers, grown
// on demand): backward, the weight- and bias-gradient partials [rows, kk] and
// [rows] and the ones vector [hw]; then the columns col [kk, hw]. Offsets are
// rounded to 16 elements.
struct ConvScratchLayout {
  std::int64_t dweight, dbias, ones, col, size;

  ConvScratchLayout(const ConvGeometry& g, std::int64_t rows, bool backward) {
    const std::int64_t cols = kCpuChunkSamples * g.hw();
    dweight = 0;
    dbias = Round(backward ? rows * g.kk() : 0);
    ones = dbias + Round(backward ? rows : 0);
    col = ones + Round(backward ? cols : 0);
    size = col + Round(g.kk() * cols);
  }

 private:
  static std::int64_t Round(std::int64_t n) { return (n + 15) / 16 * 16; }
};
static_assert(kCpuChunkSamples == 1,
              "ConvScratchLayout has no row matrix z, which chunks of "
              "several samples need");

// The samples [*begin, *end) of thread t of `threads` (contiguous ranges, the
// first n % threads of them one longer).
inline void ThreadSamples(std::int64_t n,
                          int t,
                          int threads,
                          std::int64_t* begin,
                          std::int64_t* end) {
  const std::int64_t base = n / threads, extra = n % threads;
  *begin = t * base + std::min<std::int64_t>(t, extra);
  *end = *begin + base + (t < extra ? 1 : 0);
}

// y [g.n, rows, ho, wo] = W col(x[b]) (+ bias[row] on every row when bias !=
// nullptr) for x [g.n, channels, h, w] and weight [rows, kk] (row-major).
// scratch: per-thread buffers, grown here. Requires: x, y distinct.
template <typename T>
void ConvForwardCpu(const ConvGeometry& g,
                    const T* x,
                    const T* weight,
                    std::int64_t rows,
                    const T* bias,
                    T* y,
                    std::vector<std::vector<T>>& scratch) {
  const int threads = ConvThreads(g, rows);
  const ConvScratchLayout at(g, rows, false);
  scratch.resize(std::max<std::size_t>(scratch.size(), threads));
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    std::int64_t begin, end;
    ThreadSamples(g.n, t, omp_get_num_threads(), &begin, &end);
    std::vector<T>& buf = scratch[std::size_t(t)];
    if (std::int64_t(buf.size()) < at.size) buf.resize(std::size_t(at.size));
    ConvGeometry part = g;
    part.n = end - begin;
    backend::ConvForwardSteps<HostConvKernels>(part,
                                               x + begin * g.InputSize(),
                                               weight,
                                               rows,
                                               bias,
                                               y + begin * rows * g.hw(),
                                               kCpuChunkSamples,
                                               buf.data() + at.col,
                                               static_cast<T*>(nullptr));
  }
}

// Adds sum_b dY_b col(x[b])^T to dweight (rows x kk) and, when dbias !=
// nullptr, the row sums of dY_b to dbias (rows); when dx != nullptr writes
// dx[b] = col2im(W^T dY_b) (dx: n * channels * h * w values, overwritten).
// Each thread sums its samples into its own partials (from 0); the partials
// are then added to dweight / dbias in thread order.
// Requires: x, dy, dweight, dbias, dx distinct.
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
  const std::int64_t kk = g.kk();
  const int threads = ConvThreads(g, rows);
  const ConvScratchLayout at(g, rows, true);
  scratch.resize(std::max<std::size_t>(scratch.size(), threads));
  int team = 1;
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    if (t == 0) team = omp_get_num_threads();
    std::int64_t begin, end;
    ThreadSamples(g.n, t, omp_get_num_threads(), &begin, &end);
    std::vector<T>& buf = scratch[std::size_t(t)];
    if (std::int64_t(buf.size()) < at.size) buf.resize(std::size_t(at.size));
    T* dw = buf.data() + at.dweight;
    T* db = buf.data() + at.dbias;
    std::fill(dw, dw + rows * kk, T(0));
    std::fill(db, db + rows, T(0));
    ConvGeometry part = g;
    part.n = end - begin;
    backend::ConvBackwardSteps<HostConvKernels>(
        part,
        x + begin * g.InputSize(),
        weight,
        rows,
        dy + begin * rows * g.hw(),
        dw,
        dbias != nullptr ? db : nullptr,
        dx != nullptr ? dx + begin * g.InputSize() : nullptr,
        kCpuChunkSamples,
        buf.data() + at.col,
        static_cast<T*>(nullptr),
        buf.data() + at.ones);
  }
  // Add the partials in thread order (deterministic).
  for (int t = 0; t < team; ++t) {
    const T* p = scratch[std::size_t(t)].data();
    for (std::int64_t e = 0; e < rows * kk; ++e)
      dweight[e] += p[at.dweight + e];
    if (dbias != nullptr) {
      for (std::int64_t r = 0; r < rows; ++r) dbias[r] += p[at.dbias + r];
    }
  }
}

}  // namespace internal
}  // namespace nn
}  // namespace symopt
