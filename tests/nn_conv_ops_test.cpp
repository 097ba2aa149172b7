// The convolution's steps (src/backend/nn_conv_steps.h) and the GPU path of
// the convolution, pooling and group layers, checked on the CPU (every build;
// no device needed). The kernels of cuda/nn_conv.cu are thin loops over the
// per-element bodies of src/nn_conv_ops.h; here the same bodies run in host
// loops (ElementKernels, with a reference GEMM that checks its leading
// dimensions) and are compared with the CPU's kernel set (HostConvKernels,
// src/nn_conv_cpu.h) and the layers' CPU code:
//   - ConvOps::InsideRange equals its definition;
//   - the host im2col, col2im and layout copies equal the GPU's bodies
//     bitwise (chunk layouts of one sample and of the whole batch);
//   - the chunked steps with either kernel set (any chunk size, ragged last
//     chunk) equal ConvForwardCpu / ConvBackwardCpu, parameter gradients
//     starting non-zero, with and without bias and dx;
//   - ConvForwardCpu / ConvBackwardCpu: outputs and input gradients equal
//     bitwise for 1 and 2 threads, and repeated calls reuse their scratch;
//   - the folded dense steps equal FlipInvariantDense's CPU Forward/Backward;
//   - the pooling bodies equal MaxPool2d / AvgPool2d bitwise (ties,
//     overlapping windows);
//   - the member CSR and the class-sum gather equal the scatter they replace;
//   - chunk planning, device checks and the errors of a build without a GPU.
// Scratch and outputs are poisoned with NaN first, so unwritten elements show.
#include "nn_conv_ops.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "backend/nn_conv_dispatch.h"
#include "backend/nn_conv_steps.h"
#include "catch.h"
#include "layer_checks.h"
#include "manifolds/parallel.h"
#include "nn/conv2d.h"
#include "nn/flip_invariant.h"
#include "nn/group_conv.h"
#include "nn/layers.h"
#include "nn/pooling.h"
#include "nn_conv_cpu.h"

using namespace symopt;
using namespace symopt::nn;
using symopt::nn::internal::ClassOps;
using symopt::nn::internal::ConvGeometry;
using symopt::nn::internal::ConvLayoutOps;
using symopt::nn::internal::ConvOps;
using symopt::nn::internal::HostConvKernels;
using symopt::nn::internal::PoolLayoutOps;
using symopt::testing::RandomTensor;

namespace {

template <typename T>
std::vector<T> Random(std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> d(0.0, 1.0);
  std::vector<T> v(static_cast<std::size_t>(n));
  for (T& e : v) e = T(d(rng));
  return v;
}

template <typename T>
std::vector<T> Poisoned(std::int64_t n) {
  return std::vector<T>(std::size_t(n), std::numeric_limits<T>::quiet_NaN());
}

// Bitwise equality (NaN never equals: an unwritten element fails).
template <typename T>
bool SameBits(const T* a, const T* b, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    if (!(a[i] == b[i])) return false;
  }
  return true;
}

// max_i |a - b| / max(|a|, |b|, floor); infinite on NaN.
template <typename T>
double MaxRelError(const T* a, const T* b, std::int64_t n, double floor) {
  double worst = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double x = a[i], y = b[i];
    if (std::isnan(x) || std::isnan(y)) {
      return std::numeric_limits<double>::infinity();
    }
    worst = std::max(
        worst, std::abs(x - y) / std::max({std::abs(x), std::abs(y), floor}));
  }
  return worst;
}

// The GPU's kernel set on the host: the CUDA kernels' per-element bodies in
// loops over every element, and a reference row-major GEMM (double
// accumulation) with cuda::Gemm's contract, which it checks: a wrong leading
// dimension fails the test. Fill is the CPU's.
struct ElementKernels : HostConvKernels {
  template <typename T>
  static void Im2Col(const ConvGeometry& g,
                     std::int64_t m,
                     const T* x,
                     T* col) {
    const std::int64_t ld = m * g.hw();
    for (std::int64_t e = 0; e < g.kk() * ld; ++e) {
      ConvLayoutOps::Im2Col(g, ld, x, col, e);
    }
  }
  template <typename T>
  static void Col2Im(const ConvGeometry& g,
                     std::int64_t m,
                     const T* col,
                     T* dx) {
    for (std::int64_t e = 0; e < m * g.InputSize(); ++e) {
      ConvLayoutOps::Col2Im(g, m * g.hw(), col, dx, e);
    }
  }
  template <typename T>
  static void ColumnsToChannels(const T* z,
                                const T* bias,
                                std::int64_t rows,
                                std::int64_t m,
                                std::int64_t hw,
                                T* y) {
    for (std::int64_t e = 0; e < m * rows * hw; ++e) {
      ConvLayoutOps::ColumnsToChannels(z, bias, rows, m, hw, y, e);
    }
  }
  template <typename T>
  static void ChannelsToColumns(
      const T* dy, std::int64_t rows, std::int64_t m, std::int64_t hw, T* z) {
    for (std::int64_t e = 0; e < m * rows * hw; ++e) {
      ConvLayoutOps::ChannelsToColumns(dy, rows, m, hw, z, e);
    }
  }
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
    REQUIRE(lda >= (trans_a ? m : k));
    REQUIRE(ldb >= (trans_b ? k : n));
    REQUIRE(ldc >= n);
    for (std::int64_t i = 0; i < m; ++i) {
      for (std::int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (std::int64_t l = 0; l < k; ++l) {
          const double av = trans_a ? a[l * lda + i] : a[i * lda + l];
          const double bv = trans_b ? b[j * ldb + l] : b[l * ldb + j];
          acc += av * bv;
        }
        T& out = c[i * ldc + j];
        out = beta == T(0) ? T(double(alpha) * acc)
                           : T(double(alpha) * acc + double(beta) * out);
      }
    }
  }
};

struct ConvCase {
  std::int64_t n, channels, h, w, k, stride, pad, rows;
};

// Stride, padding, odd sizes, a kernel wider than the input (padded), 1x1.
const std::vector<ConvCase> kConvCases = {
    {5, 1, 7, 7, 3, 1, 1, 4},
    {4, 2, 8, 9, 3, 2, 1, 3},
    {3, 3, 5, 6, 5, 1, 2, 2},
    {5, 2, 7, 4, 1, 3, 0, 2},
    {3, 2, 4, 5, 5, 2, 2, 3},
    {4, 2, 9, 7, 4, 3, 1, 5},
};

ConvGeometry Geometry(const ConvCase& c) {
  return {c.n,
          c.channels,
          c.h,
          c.w,
          c.k,
          c.stride,
          c.pad,
          (c.h + 2 * c.pad - c.k) / c.stride + 1,
          (c.w + 2 * c.pad - c.k) / c.stride + 1};
}

}  // namespace

TEST_CASE("InsideRange is the set of outputs that read inside the input",
          "[nn][conv2d][gpu_host]") {
  for (std::int64_t s = 1; s <= 3; ++s) {
    for (std::int64_t p = 0; p <= 3; ++p) {
      for (std::int64_t size = 1; size <= 7; ++size) {
        for (std::int64_t u = 0; u <= 5; ++u) {
          for (std::int64_t outputs = 0; outputs <= 6; ++outputs) {
            std::int64_t lo = -1, hi = -1;
            ConvOps::InsideRange(u, s, p, size, outputs, &lo, &hi);
            CHECK(0 <= lo);
            CHECK(lo <= hi);
            CHECK(hi <= outputs);
            for (std::int64_t out = 0; out < outputs; ++out) {
              const std::int64_t at = ConvOps::InputCoord(out, u, s, p);
              CHECK((at >= 0 && at < size) == (out >= lo && out < hi));
            }
          }
        }
      }
    }
  }
}

TEST_CASE("CPU im2col, col2im and layout copies equal the GPU bodies bitwise",
          "[nn][conv2d][gpu_host]") {
  for (const ConvCase& c : kConvCases) {
    const ConvGeometry g = Geometry(c);
    const std::int64_t kk = g.kk(), hw = g.hw(), rows = c.rows;
    const std::vector<double> x = Random<double>(g.n * g.InputSize(), 11);
    const std::vector<double> bias = Random<double>(rows, 13);
    // A chunk of one sample (the CPU's) and of the whole batch.
    for (const std::int64_t m : {std::int64_t(1), g.n}) {
      const std::int64_t ld = m * hw;
      std::vector<double> col = Poisoned<double>(kk * ld);
      std::vector<double> ref = Poisoned<double>(kk * ld);
      HostConvKernels::Im2Col(g, m, x.data(), col.data());
      ElementKernels::Im2Col(g, m, x.data(), ref.data());
      CHECK(SameBits(col.data(), ref.data(), kk * ld));
      // The adjoint of random column gradients: the CPU's scatter into
      // poisoned dx against the GPU's gather.
      const std::vector<double> dcol = Random<double>(kk * ld, 12);
      std::vector<double> dx = Poisoned<double>(m * g.InputSize());
      std::vector<double> dx_ref = Poisoned<double>(m * g.InputSize());
      HostConvKernels::Col2Im(g, m, dcol.data(), dx.data());
      ElementKernels::Col2Im(g, m, dcol.data(), dx_ref.data());
      CHECK(SameBits(dx.data(), dx_ref.data(), m * g.InputSize()));
      // Rows to channels (with and without bias) and back.
      const std::vector<double> z = Random<double>(rows * ld, 14);
      for (const double* b :
           {bias.data(), static_cast<const double*>(nullptr)}) {
        std::vector<double> y = Poisoned<double>(rows * ld);
        std::vector<double> y_ref = Poisoned<double>(rows * ld);
        HostConvKernels::ColumnsToChannels(z.data(), b, rows, m, hw, y.data());
        ElementKernels::ColumnsToChannels(
            z.data(), b, rows, m, hw, y_ref.data());
        CHECK(SameBits(y.data(), y_ref.data(), rows * ld));
      }
      std::vector<double> z2 = Poisoned<double>(rows * ld);
      std::vector<double> z2_ref = Poisoned<double>(rows * ld);
      HostConvKernels::ChannelsToColumns(z.data(), rows, m, hw, z2.data());
      ElementKernels::ChannelsToColumns(z.data(), rows, m, hw, z2_ref.data());
      CHECK(SameBits(z2.data(), z2_ref.data(), rows * ld));
    }
    // One sample's bias step in place (the steps' shortcut for m = 1).
    std::vector<double> y = Random<double>(rows * hw, 15);
    std::vector<double> y_ref = Poisoned<double>(rows * hw);
    ElementKernels::ColumnsToChannels(
        y.data(), bias.data(), rows, 1, hw, y_ref.data());
    HostConvKernels::ColumnsToChannels(
        y.data(), bias.data(), rows, 1, hw, y.data());
    CHECK(SameBits(y.data(), y_ref.data(), rows * hw));
  }
}

// ConvForwardCpu (y overwritten), then ConvBackwardCpu (dw, db added to, dx
// overwritten), sharing `scratch`.
template <typename T>
void CpuConvPass(const ConvGeometry& g,
                 std::int64_t rows,
                 const std::vector<T>& x,
                 const std::vector<T>& w,
                 const std::vector<T>& bias,
                 const std::vector<T>& dy,
                 std::vector<T>& y,
                 std::vector<T>& dx,
                 std::vector<T>& dw,
                 std::vector<T>& db,
                 std::vector<std::vector<T>>& scratch) {
  nn::internal::ConvForwardCpu(
      g, x.data(), w.data(), rows, bias.data(), y.data(), scratch);
  nn::internal::ConvBackwardCpu(g,
                                x.data(),
                                w.data(),
                                rows,
                                dy.data(),
                                dw.data(),
                                db.data(),
                                dx.data(),
                                scratch);
}

// The chunked steps with kernel set K against ConvForwardCpu /
// ConvBackwardCpu, for every chunk size from one sample to the whole batch
// (ragged last chunks included), with and without bias and dx.
template <typename K, typename T>
void CheckStepsAgainstCpu(double tol) {
  for (const ConvCase& c : kConvCases) {
    const ConvGeometry g = Geometry(c);
    const std::int64_t kk = g.kk(), hw = g.hw(), rows = c.rows;
    const std::vector<T> x = Random<T>(g.n * g.InputSize(), 21);
    const std::vector<T> w = Random<T>(rows * kk, 22);
    const std::vector<T> bias = Random<T>(rows, 23);
    const std::vector<T> dy = Random<T>(g.n * rows * hw, 24);
    const std::vector<T> dw0 = Random<T>(rows * kk, 25);
    const std::vector<T> db0 = Random<T>(rows, 26);
    std::vector<std::vector<T>> cpu_scratch;
    std::vector<T> y_ref = Poisoned<T>(g.n * rows * hw);
    std::vector<T> dw_ref = dw0, db_ref = db0;
    std::vector<T> dx_ref = Poisoned<T>(g.n * g.InputSize());
    CpuConvPass(
        g, rows, x, w, bias, dy, y_ref, dx_ref, dw_ref, db_ref, cpu_scratch);
    for (std::int64_t chunk = 1; chunk <= g.n; ++chunk) {
      std::vector<T> col = Poisoned<T>(kk * chunk * hw);
      std::vector<T> z = Poisoned<T>(rows * chunk * hw);
      std::vector<T> ones = Poisoned<T>(chunk * hw);
      std::vector<T> y = Poisoned<T>(g.n * rows * hw);
      nn::backend::ConvForwardSteps<K>(g,
                                       x.data(),
                                       w.data(),
                                       rows,
                                       bias.data(),
                                       y.data(),
                                       chunk,
                                       col.data(),
                                       z.data());
      CHECK(MaxRelError(y.data(), y_ref.data(), g.n * rows * hw, 1.0) <= tol);
      std::vector<T> dw = dw0, db = db0;
      std::vector<T> dx = Poisoned<T>(g.n * g.InputSize());
      nn::backend::ConvBackwardSteps<K>(g,
                                        x.data(),
                                        w.data(),
                                        rows,
                                        dy.data(),
                                        dw.data(),
                                        db.data(),
                                        dx.data(),
                                        chunk,
                                        col.data(),
                                        z.data(),
                                        ones.data());
      CHECK(MaxRelError(dw.data(), dw_ref.data(), rows * kk, 1.0) <= tol);
      CHECK(MaxRelError(db.data(), db_ref.data(), rows, 1.0) <= tol);
      CHECK(MaxRelError(dx.data(), dx_ref.data(), g.n * g.InputSize(), 1.0) <=
            tol);
      // No bias, no dx: the weight gradient is the same, nothing else is
      // touched.
      std::vector<T> dw2 = dw0;
      nn::backend::ConvBackwardSteps<K>(g,
                                        x.data(),
                                        w.data(),
                                        rows,
                                        dy.data(),
                                        dw2.data(),
                                        static_cast<T*>(nullptr),
                                        static_cast<T*>(nullptr),
                                        chunk,
                                        col.data(),
                                        z.data(),
                                        static_cast<T*>(nullptr));
      CHECK(SameBits(dw2.data(), dw.data(), rows * kk));
      std::vector<T> y_nobias = Poisoned<T>(g.n * rows * hw);
      nn::backend::ConvForwardSteps<K>(g,
                                       x.data(),
                                       w.data(),
                                       rows,
                                       static_cast<const T*>(nullptr),
                                       y_nobias.data(),
                                       chunk,
                                       col.data(),
                                       z.data());
      double worst = 0;
      for (std::int64_t e = 0; e < g.n * rows * hw; ++e) {
        const T b = bias[std::size_t((e / hw) % rows)];
        worst = std::max(worst,
                         std::abs(double(y_nobias[std::size_t(e)]) + double(b) -
                                  double(y[std::size_t(e)])));
      }
      CHECK(worst <= 10 * tol);
    }
  }
}

TEMPLATE_TEST_CASE("Chunked convolution steps equal the CPU convolution",
                   "[nn][conv2d][gpu_host]",
                   float,
                   double) {
  using T = TestType;
  // The reference GEMM accumulates in double, Eigen in T.
  const double tol = std::is_same<T, float>::value ? 2e-5 : 1e-12;
  SECTION("the GPU's kernel bodies") {
    CheckStepsAgainstCpu<ElementKernels, T>(tol);
  }
  SECTION("the CPU's kernel set") {
    CheckStepsAgainstCpu<HostConvKernels, T>(tol);
  }
}

TEMPLATE_TEST_CASE("CPU convolution: thread count and repeated calls",
                   "[nn][conv2d][gpu_host]",
                   float,
                   double) {
  using T = TestType;
  // Large enough (2.7 MFLOP) for two threads.
  const ConvGeometry g{6, 8, 14, 14, 3, 1, 1, 14, 14};
  const std::int64_t rows = 16, kk = g.kk(), hw = g.hw();
  REQUIRE(2.0 * g.n * rows * kk * hw >= 2e6);
  const std::vector<T> x = Random<T>(g.n * g.InputSize(), 71);
  const std::vector<T> w = Random<T>(rows * kk, 72);
  const std::vector<T> bias = Random<T>(rows, 73);
  const std::vector<T> dy = Random<T>(g.n * rows * hw, 74);
  const double tol = std::is_same<T, float>::value ? 1e-5 : 1e-13;
  const int saved = NumThreads();
  std::vector<std::vector<T>> ys, dxs, dws, dbs;
  for (const int threads : {1, 2}) {
    SetNumThreads(threads);
    REQUIRE(nn::internal::ConvThreads(g, rows) == threads);
    std::vector<std::vector<T>> scratch;
    std::vector<T> y = Poisoned<T>(g.n * rows * hw);
    std::vector<T> dx = Poisoned<T>(g.n * g.InputSize());
    std::vector<T> dw(std::size_t(rows * kk), T(0)),
        db(std::size_t(rows), T(0));
    CpuConvPass(g, rows, x, w, bias, dy, y, dx, dw, db, scratch);
    // A second pass reuses every thread's buffer and adds the same
    // gradients again.
    std::vector<const T*> buffers;
    for (const std::vector<T>& b : scratch) buffers.push_back(b.data());
    std::vector<T> dw_twice = dw, db_twice = db;
    const std::vector<T> y_first = y, dx_first = dx;
    CpuConvPass(g, rows, x, w, bias, dy, y, dx, dw_twice, db_twice, scratch);
    for (std::size_t t = 0; t < buffers.size(); ++t) {
      CHECK(scratch[t].data() == buffers[t]);
    }
    CHECK(SameBits(y.data(), y_first.data(), g.n * rows * hw));
    CHECK(SameBits(dx.data(), dx_first.data(), g.n * g.InputSize()));
    for (std::int64_t e = 0; e < rows * kk; ++e) {
      CHECK(std::abs(double(dw_twice[std::size_t(e)]) -
                     2 * double(dw[std::size_t(e)])) <=
            tol * (1 + std::abs(double(dw[std::size_t(e)]))));
    }
    ys.push_back(y);
    dxs.push_back(dx);
    dws.push_back(dw);
    dbs.push_back(db);
  }
  SetNumThreads(saved);
  // Every sample's output and input gradient is computed by one thread from
  // that sample alone: bitwise the same for any thread count. The parameter
  // gradients differ only in where the thread partials split the sum.
  CHECK(SameBits(ys[1].data(), ys[0].data(), g.n * rows * hw));
  CHECK(SameBits(dxs[1].data(), dxs[0].data(), g.n * g.InputSize()));
  CHECK(MaxRelError(dws[1].data(), dws[0].data(), rows * kk, 1.0) <= tol);
  CHECK(MaxRelError(dbs[1].data(), dbs[0].data(), rows, 1.0) <= tol);
}

TEMPLATE_TEST_CASE("Fold, Linear, unfold equal FlipInvariantDense on the CPU",
                   "[nn][flip][gpu_host]",
                   float,
                   double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 2e-5 : 1e-12;
  for (std::int64_t W : {4, 5}) {
    FlipInvariantDense<T> layer(3, 2, W, 6, 31);
    const std::int64_t n = 7, d = layer.in_features(), K = layer.NumOrbits(),
                       F = 6;
    const Tensor<T> x = RandomTensor<T>({n, 3, 2, W}, 32);
    const Tensor<T> dy = RandomTensor<T>({n, F}, 33);
    for (Parameter<T>& p : layer.Params()) {
      const std::vector<T> g0 = Random<T>(p.grad.size(), 34);
      std::copy(g0.begin(), g0.end(), p.grad.data);
    }
    const std::vector<T> dw0(layer.Params()[0].grad.data,
                             layer.Params()[0].grad.data + F * K);
    const std::vector<T> db0(layer.Params()[1].grad.data,
                             layer.Params()[1].grad.data + F);
    Tensor<T> y_ref, dx_ref;
    layer.Forward(x, y_ref, Mode::kTrain);
    layer.Backward(x, y_ref, dy, dx_ref);

    // The fold: the class-sum kernel body over the orbit CSR.
    const nn::internal::MemberCsr csr = nn::internal::BuildMemberCsr(
        layer.pattern().class_of, layer.pattern().num_classes);
    std::vector<T> xf = Poisoned<T>(n * K);
    for (std::int64_t e = 0; e < n * K; ++e) {
      ClassOps::SumRowsAt(x.data(),
                          d,
                          csr.offsets.data(),
                          csr.members.data(),
                          K,
                          false,
                          xf.data(),
                          e);
    }
    // The dense product in between is Linear's (the GPU path runs Linear's
    // device entry points, checked against the CPU by nn_dense_gpu_test).
    Linear<T> linear(K, F);
    std::copy(layer.weight().data(),
              layer.weight().data() + F * K,
              linear.weight().data());
    std::copy(
        layer.bias().data(), layer.bias().data() + F, linear.bias().data());
    std::copy(dw0.begin(), dw0.end(), linear.Params()[0].grad.data);
    std::copy(db0.begin(), db0.end(), linear.Params()[1].grad.data);
    Tensor<T> xf_t({n, K}), y, dxf;
    std::copy(xf.begin(), xf.end(), xf_t.data());
    linear.Forward(xf_t, y, Mode::kTrain);
    CHECK(MaxRelError(y.data(), y_ref.data(), n * F, 1.0) <= tol);
    linear.Backward(xf_t, y, dy, dxf);
    const T* dw = linear.Params()[0].grad.data;
    const T* db = linear.Params()[1].grad.data;
    std::copy(dxf.data(), dxf.data() + n * K, xf.begin());
    CHECK(MaxRelError(dw, layer.Params()[0].grad.data, F * K, 1.0) <= tol);
    CHECK(MaxRelError(db, layer.Params()[1].grad.data, F, 1.0) <= tol);
    // The unfold: the gather body by class_of.
    std::vector<T> dx = Poisoned<T>(n * d);
    for (std::int64_t e = 0; e < n * d; ++e) {
      ClassOps::GatherRowsAt(static_cast<const T*>(xf.data()),
                             K,
                             layer.pattern().class_of.data(),
                             d,
                             dx.data(),
                             e);
    }
    CHECK(MaxRelError(dx.data(), dx_ref.data(), n * d, 1.0) <= tol);
    // The expansion of theta (rows = F) equals ExpandWeights bitwise.
    std::vector<T> dense = Poisoned<T>(F * d), dense_ref(std::size_t(F * d));
    for (std::int64_t e = 0; e < F * d; ++e) {
      ClassOps::GatherRowsAt(static_cast<const T*>(layer.weight().data()),
                             K,
                             layer.pattern().class_of.data(),
                             d,
                             dense.data(),
                             e);
    }
    layer.ExpandWeights(dense_ref.data());
    CHECK(SameBits(dense.data(), dense_ref.data(), F * d));
  }
}

TEMPLATE_TEST_CASE("Pooling kernel bodies equal the CPU layers bitwise",
                   "[nn][pool][gpu_host]",
                   float,
                   double) {
  using T = TestType;
  struct Case {
    Shape shape;
    std::int64_t k, s;
  };
  for (const Case& c : {Case{{2, 3, 7, 7}, 3, 2},
                        Case{{2, 2, 8, 6}, 2, 2},
                        Case{{1, 2, 4, 5, 5}, 2, 1},
                        Case{{3, 1, 9, 4}, 3, 3},
                        Case{{2, 2, 5, 7}, 3, 1}}) {
    // Values on a coarse grid, so windows have ties.
    Tensor<T> x = RandomTensor<T>(c.shape, 41);
    for (std::int64_t i = 0; i < x.size(); ++i) x[i] = std::round(x[i] * 2);
    const int r = int(c.shape.size());
    const std::int64_t h = c.shape[r - 2], w = c.shape[r - 1];
    const std::int64_t ho = (h - c.k) / c.s + 1, wo = (w - c.k) / c.s + 1;
    const std::int64_t planes = x.size() / (h * w);
    MaxPool2d<T> maxpool(c.k, c.s);
    AvgPool2d<T> avgpool(c.k, c.s);
    Tensor<T> y_max, y_avg, dx_max, dx_avg;
    maxpool.Forward(x, y_max, Mode::kTrain);
    avgpool.Forward(x, y_avg, Mode::kTrain);
    const Tensor<T> dy = RandomTensor<T>(y_max.shape(), 42);
    maxpool.Backward(x, y_max, dy, dx_max);
    avgpool.Backward(x, y_avg, dy, dx_avg);

    const nn::internal::PoolGeometry g{planes, h, w, c.k, c.s, ho, wo};
    const std::int64_t n_out = g.OutputSize(), n_in = g.InputSize();
    std::vector<T> y = Poisoned<T>(n_out), dx = Poisoned<T>(n_in);
    std::vector<std::int32_t> arg(std::size_t(n_out), -1);
    for (std::int64_t e = 0; e < n_out; ++e) {
      PoolLayoutOps::MaxForward(g, x.data(), y.data(), arg.data(), e);
    }
    CHECK(SameBits(y.data(), y_max.data(), n_out));
    for (std::int64_t e = 0; e < n_in; ++e) {
      PoolLayoutOps::MaxBackward(g,
                                 dy.data(),
                                 static_cast<const std::int32_t*>(arg.data()),
                                 dx.data(),
                                 e);
    }
    CHECK(SameBits(dx.data(), dx_max.data(), n_in));
    const T scale = T(1) / T(c.k * c.k);
    y = Poisoned<T>(n_out);
    dx = Poisoned<T>(n_in);
    for (std::int64_t e = 0; e < n_out; ++e) {
      PoolLayoutOps::AvgForward(g, x.data(), scale, y.data(), e);
    }
    CHECK(SameBits(y.data(), y_avg.data(), n_out));
    for (std::int64_t e = 0; e < n_in; ++e) {
      PoolLayoutOps::AvgBackward(g, dy.data(), scale, dx.data(), e);
    }
    CHECK(SameBits(dx.data(), dx_avg.data(), n_in));
  }
}

TEMPLATE_TEST_CASE("P4 bank expansion and dtheta gathers equal the scatter",
                   "[nn][group][gpu_host]",
                   float,
                   double) {
  using T = TestType;
  for (const P4Input input : {P4Input::kZ2, P4Input::kP4}) {
    P4Conv<T> layer(input, 2, 3, 3, 1, 51);
    const TiePattern& p = layer.pattern();
    const std::int64_t size = std::int64_t(p.class_of.size());
    const nn::internal::MemberCsr csr =
        nn::internal::BuildMemberCsr(p.class_of, p.num_classes);
    // Every entry is a member of its own class exactly once, ascending.
    REQUIRE(csr.offsets.size() == std::size_t(p.num_classes + 1));
    REQUIRE(csr.offsets.back() == size);
    std::vector<int> seen(std::size_t(size), 0);
    for (std::int64_t c = 0; c < p.num_classes; ++c) {
      CHECK(csr.offsets[std::size_t(c) + 1] - csr.offsets[std::size_t(c)] == 4);
      for (std::int32_t m = csr.offsets[std::size_t(c)];
           m < csr.offsets[std::size_t(c) + 1];
           ++m) {
        const std::int32_t e = csr.members[std::size_t(m)];
        CHECK(p.class_of[std::size_t(e)] == c);
        if (m > csr.offsets[std::size_t(c)]) {
          CHECK(csr.members[std::size_t(m) - 1] < e);
        }
        ++seen[std::size_t(e)];
      }
    }
    CHECK(std::count(seen.begin(), seen.end(), 1) == size);
    // The expansion kernel body equals ExpandFilters bitwise.
    std::vector<T> bank = Poisoned<T>(size),
                   bank_ref(static_cast<std::size_t>(size));
    for (std::int64_t e = 0; e < size; ++e) {
      ClassOps::GatherRowsAt(static_cast<const T*>(layer.weight().data()),
                             0,
                             p.class_of.data(),
                             size,
                             bank.data(),
                             e);
    }
    layer.ExpandFilters(bank_ref.data());
    CHECK(SameBits(bank.data(), bank_ref.data(), size));
    // dtheta += per-class sums: the gather over the CSR equals the scatter
    // dtheta[class_of[e]] += dbank[e] bitwise.
    const std::vector<T> dbank = Random<T>(size, 52);
    const std::vector<T> dtheta0 = Random<T>(p.num_classes, 53);
    std::vector<T> scatter = dtheta0, gather = dtheta0;
    for (std::int64_t e = 0; e < size; ++e) {
      scatter[std::size_t(p.class_of[std::size_t(e)])] += dbank[std::size_t(e)];
    }
    for (std::int64_t e = 0; e < p.num_classes; ++e) {
      ClassOps::SumRowsAt(dbank.data(),
                          0,
                          csr.offsets.data(),
                          csr.members.data(),
                          p.num_classes,
                          true,
                          gather.data(),
                          e);
    }
    CHECK(SameBits(gather.data(), scatter.data(), p.num_classes));
  }
}

TEST_CASE("Member CSR skips zeroed entries and refuses bad classes",
          "[nn][gpu_host]") {
  const nn::internal::MemberCsr csr =
      nn::internal::BuildMemberCsr({1, -1, 0, 1, -1, 2, 0}, 3);
  CHECK(csr.offsets == std::vector<std::int32_t>{0, 2, 4, 5});
  CHECK(csr.members == std::vector<std::int32_t>{2, 6, 0, 3, 5});
  CHECK_THROWS_AS(nn::internal::BuildMemberCsr({0, 3}, 3), InvalidArgument);
}

TEST_CASE("Convolution chunks bound the scratch and cover the batch",
          "[nn][conv2d][gpu_host]") {
  for (const std::int64_t n : {1, 7, 128}) {
    for (const std::int64_t channels : {1, 16}) {
      for (const std::int64_t rows : {4, 32, 200}) {
        for (const std::int64_t budget : {1, 1000, 100000, 1 << 24}) {
          const ConvGeometry g{n, channels, 14, 14, 5, 1, 2, 14, 14};
          const std::int64_t m = nn::backend::ConvChunkSamples(g, rows, budget);
          const std::int64_t per = std::max(g.kk(), rows) * g.hw();
          CHECK(m >= 1);
          CHECK(m <= n);
          if (m > 1) CHECK(per * m <= budget);
          // The largest such chunk.
          CHECK((m == n || per * (m + 1) > budget));
        }
      }
    }
  }
  // A sample of 2^31 pixels cannot go to cuBLAS.
  const ConvGeometry huge{2, 1, 1 << 16, 1 << 15, 1, 1, 0, 1 << 16, 1 << 15};
  CHECK_THROWS_AS(nn::backend::ConvChunkSamples(huge, 1, 1 << 24),
                  InvalidArgument);
  const ConvGeometry g{4, 1, 8, 8, 3, 1, 1, 8, 8};
  CHECK_THROWS_AS(nn::backend::ConvChunkSamples(g, 1, 0), InvalidArgument);
  // Many pixels per sample: m * hw stays within int.
  const ConvGeometry wide{
      100000, 1, 1 << 14, 1 << 14, 1, 1, 0, 1 << 14, 1 << 14};
  const std::int64_t m =
      nn::backend::ConvChunkSamples(wide, 1, std::int64_t(1) << 40);
  CHECK(m * wide.hw() <= std::int64_t(INT_MAX));
  CHECK(m >= 1);
}

TEST_CASE("Layers refuse bad column budgets", "[nn][gpu_host][errors]") {
  Conv2d<float> conv(1, 2, 3);
  CHECK_THROWS_AS(conv.set_column_budget(0), InvalidArgument);
  P4Conv<float> lift(P4Input::kZ2, 1, 2, 3);
  CHECK_THROWS_AS(lift.set_column_budget(-5), InvalidArgument);
  lift.set_column_budget(7);
  CHECK(lift.column_budget() == 7);
  if (CudaDeviceCount() > 0) return;  // the rest needs a machine without one
  // Without a device (or without CUDA) To(kCuda) is refused, and the layer
  // stays usable on the CPU.
  MaxPool2d<double> pool(2);
  FlipInvariantDense<double> flip(1, 2, 4, 3);
  CHECK_THROWS_AS(conv.To(Device::kCuda), Error);
  CHECK_THROWS_AS(lift.To(Device::kCuda), Error);
  CHECK_THROWS_AS(pool.To(Device::kCuda), Error);
  CHECK_THROWS_AS(flip.To(Device::kCuda), Error);
  CHECK(conv.device() == Device::kCpu);
  const Tensor<float> x = RandomTensor<float>({2, 1, 5, 5}, 61);
  Tensor<float> y;
  conv.Forward(x, y, Mode::kTrain);
  CHECK(y.shape() == Shape{2, 2, 3, 3});
  CHECK_FALSE(y.is_cuda());
}

TEST_CASE("Without CUDA the GPU entry points say so",
          "[nn][gpu_host][errors]") {
  if (CudaCompiled()) return;  // they would run kernels on these pointers
  const ConvGeometry g{1, 1, 4, 4, 3, 1, 1, 4, 4};
  nn::backend::ConvDeviceScratch<float> scratch;
  float* p = nullptr;
  const nn::internal::PoolGeometry pg{1, 4, 4, 2, 2, 2, 2};
  CHECK_THROWS_AS(
      nn::backend::ConvForwardGpu<float>(g, p, p, 2, p, p, scratch, 100),
      NotCompiledError);
  CHECK_THROWS_AS(
      nn::backend::ConvBackwardGpu<float>(g, p, p, 2, p, p, p, p, scratch, 100),
      NotCompiledError);
  CHECK_THROWS_AS(nn::backend::MaxPoolForwardGpu<float>(pg, p, p, nullptr),
                  NotCompiledError);
  CHECK_THROWS_AS(nn::backend::AvgPoolBackwardGpu<float>(pg, p, p),
                  NotCompiledError);
  CHECK_THROWS_AS(nn::backend::UploadTieTables({0, 1, 0}, 2), NotCompiledError);
}
