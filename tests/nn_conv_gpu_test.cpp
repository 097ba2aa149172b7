// GPU parity of the convolution, pooling and group layers (STYLE T5, T7):
// Conv2d, MaxPool2d, AvgPool2d, P4Conv (lifting and P4 -> P4), RotationPool
// and FlipInvariantDense, each in float and double, run through the public
// layer API on device tensors (so the dispatch point is exercised) and
// compared with a twin layer (same seed) on the CPU, on fresh random inputs
// with fixed seeds.
//
// Comparison: the symmetric relative error
//   e(a, b) = |a - b| / max(|a|, |b|, floor),  floor = RMS of the reference,
// with the tolerance stated in each test. Why: the convolution and dense
// products are cuBLAS (no TF32) and sum in another order than Eigen, so a
// value with K terms differs by about sqrt(K) ulps at the data's scale;
// pooling, the bank expansion and RotationPool run the same SYMOPT_HD ops as
// the CPU (both compiled without FMA contraction) and must agree bitwise.
//
// Poisoning: outputs y and dx are device tensors filled with NaN before each
// run, so an element a kernel fails to write shows up as NaN (error = inf).
// Parameter gradients start at the same random non-zero values on both sides,
// so a Backward that overwrites instead of adding fails. Every GPU result is
// also computed twice and must repeat bitwise (no atomics).
//
// Exits 77 (skipped) without a device: tests/gpu_main.cpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "catch.h"
#include "data/transforms.h"
#include "layer_checks.h"
#include "manifolds/device.h"
#include "nn/conv2d.h"
#include "nn/flip_invariant.h"
#include "nn/group_conv.h"
#include "nn/pooling.h"

using namespace symopt;
using namespace symopt::nn;
using symopt::testing::RandomTensor;

namespace {

template <typename T>
double Tol(double float_tol, double double_tol) {
  return std::is_same<T, float>::value ? float_tol : double_tol;
}

template <typename T>
std::vector<T> HostCopy(TensorView<const T> v) {
  std::vector<T> host(std::size_t(v.size()),
                      std::numeric_limits<T>::quiet_NaN());
  Copy(v, TensorView<T>(host.data(), v.rows, v.cols));
  return host;
}

template <typename T>
std::vector<T> HostCopy(const Tensor<T>& t) {
  return HostCopy(t.FlatView());
}

template <typename T>
double Rms(const std::vector<T>& v) {
  double s = 0;
  for (const T e : v) s += double(e) * double(e);
  return std::max(std::sqrt(s / double(std::max<std::size_t>(v.size(), 1))),
                  1e-30);
}

// max_i e(a_i, b_i) with floor = RMS(b); infinite on NaN or a size mismatch.
template <typename T>
double MaxError(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  const double floor = Rms(b);
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = a[i], y = b[i];
    if (std::isnan(x) || std::isnan(y)) {
      return std::numeric_limits<double>::infinity();
    }
    worst = std::max(
        worst, std::abs(x - y) / std::max({std::abs(x), std::abs(y), floor}));
  }
  return worst;
}

template <typename T>
bool SameBits(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!(a[i] == b[i])) return false;
  }
  return true;
}

// A device tensor of `shape` filled with NaN.
template <typename T>
Tensor<T> PoisonedDevice(const Shape& shape) {
  Tensor<T> t(shape, Device::kCuda);
  t.Fill(std::numeric_limits<T>::quiet_NaN());
  return t;
}

struct Tolerances {
  double y, dx, grad;  // 0: bitwise
};

template <typename T>
void CheckClose(const std::vector<T>& gpu,
                const std::vector<T>& cpu,
                double tol,
                const char* what) {
  INFO(what);
  if (tol == 0) {
    CHECK(SameBits(gpu, cpu));
  } else {
    CHECK(MaxError(gpu, cpu) <= tol);
  }
}

// Forward and Backward of `cpu` on host tensors and of its twin `gpu` (same
// construction) moved to the device, on the same random x and dy. Parameter
// gradients start at the same random values. Returns the GPU output (host
// copy) for further checks.
template <typename T>
std::vector<T> CheckLayerParity(Layer<T>& cpu,
                                Layer<T>& gpu,
                                const Shape& in_shape,
                                std::uint64_t seed,
                                const Tolerances& tol) {
  std::vector<Parameter<T>> pc = cpu.Params(), pg = gpu.Params();
  REQUIRE(pc.size() == pg.size());
  for (std::size_t i = 0; i < pc.size(); ++i) {
    std::mt19937_64 rng(seed + 100 + i);
    std::normal_distribution<double> d(0.0, 1.0);
    for (std::int64_t e = 0; e < pc[i].grad.size(); ++e) {
      pc[i].grad.data[e] = pg[i].grad.data[e] = T(d(rng));
    }
  }
  gpu.To(Device::kCuda);
  gpu.set_input_grad_required(cpu.input_grad_required());
  const Tensor<T> x = RandomTensor<T>(in_shape, seed);
  const Tensor<T> xd = x.To(Device::kCuda);
  Tensor<T> y, dx;
  cpu.Forward(x, y, Mode::kTrain);
  Tensor<T> yd = PoisonedDevice<T>(y.shape());
  gpu.Forward(xd, yd, Mode::kTrain);
  REQUIRE(yd.is_cuda());
  REQUIRE(yd.shape() == y.shape());
  std::vector<T> y_gpu = HostCopy(yd);  // returned: moves
  CheckClose(y_gpu, std::vector<T>(y.data(), y.data() + y.size()), tol.y, "y");

  const Tensor<T> dy = RandomTensor<T>(y.shape(), seed + 1);
  const Tensor<T> dyd = dy.To(Device::kCuda);
  cpu.Backward(x, y, dy, dx);
  Tensor<T> dxd = PoisonedDevice<T>(x.shape());
  gpu.Backward(xd, yd, dyd, dxd);
  REQUIRE(dxd.shape() == dx.shape());
  const std::vector<T> dx_gpu = HostCopy(dxd);
  CheckClose(
      dx_gpu, std::vector<T>(dx.data(), dx.data() + dx.size()), tol.dx, "dx");
  pg = gpu.Params();
  for (std::size_t i = 0; i < pc.size(); ++i) {
    INFO("parameter " << pc[i].name);
    REQUIRE(pg[i].grad.device == Device::kCuda);
    CheckClose(
        HostCopy(TensorView<const T>(pg[i].grad)),
        std::vector<T>(pc[i].grad.data, pc[i].grad.data + pc[i].grad.size()),
        tol.grad,
        "parameter gradient");
  }

  // Deterministic: the same run again repeats bitwise.
  Tensor<T> yd2 = PoisonedDevice<T>(y.shape());
  gpu.Forward(xd, yd2, Mode::kTrain);
  CHECK(SameBits(HostCopy(yd2), y_gpu));
  Tensor<T> dxd2 = PoisonedDevice<T>(x.shape());
  gpu.Backward(xd, yd2, dyd, dxd2);
  CHECK(SameBits(HostCopy(dxd2), dx_gpu));
  return y_gpu;
}

struct ConvCase {
  std::int64_t n, cin, cout, h, w, k, s, p;
};

// Stride, padding, odd sizes, 1x1, a kernel wider than the input.
const std::vector<ConvCase> kConvCases = {
    {3, 1, 4, 7, 7, 3, 1, 1},
    {5, 2, 3, 9, 8, 3, 2, 1},
    {4, 3, 5, 6, 5, 5, 1, 2},
    {6, 2, 2, 7, 4, 1, 3, 0},
    {3, 2, 3, 4, 5, 5, 2, 2},
    {7, 3, 6, 11, 9, 4, 3, 1},
};

}  // namespace

TEMPLATE_TEST_CASE("Conv2d on the GPU equals the CPU",
                   "[gpu][nn][conv2d]",
                   float,
                   double) {
  using T = TestType;
  // Sums of up to C_in*k^2 (y, dx) and N*Ho*Wo (dW, db) products in cuBLAS's
  // order: a few ulps at the data's scale.
  const Tolerances tol{
      Tol<T>(2e-5, 1e-12), Tol<T>(2e-5, 1e-12), Tol<T>(1e-4, 1e-11)};
  for (const ConvCase& c : kConvCases) {
    for (const bool small_chunks : {false, true}) {
      INFO("case n=" << c.n << " " << c.cin << "->" << c.cout << " " << c.h
                     << "x" << c.w << " k" << c.k << " s" << c.s << " p" << c.p
                     << (small_chunks ? " chunks of 2" : ""));
      Conv2d<T> cpu(c.cin, c.cout, c.k, c.s, c.p, 7);
      Conv2d<T> gpu(c.cin, c.cout, c.k, c.s, c.p, 7);
      if (small_chunks) {
        // Two samples per chunk: the batch is larger than the chunk and the
        // last chunk is ragged for odd n.
        const std::int64_t ho = (c.h + 2 * c.p - c.k) / c.s + 1,
                           wo = (c.w + 2 * c.p - c.k) / c.s + 1;
        gpu.set_column_budget(2 * std::max(c.cin * c.k * c.k, c.cout) * ho *
                              wo);
      }
      CheckLayerParity<T>(cpu, gpu, {c.n, c.cin, c.h, c.w}, 11, tol);
    }
  }
  // Without a bias, and as a first layer (no dx).
  Conv2d<T> cpu(2, 3, 3, 1, 1, 9, false), gpu(2, 3, 3, 1, 1, 9, false);
  cpu.set_input_grad_required(false);
  CheckLayerParity<T>(cpu, gpu, {4, 2, 6, 6}, 12, tol);
}

TEST_CASE("Conv2d on the GPU at the small CNN's shapes", "[gpu][nn][conv2d]") {
  // Batch 128, 1 -> 16 at 28x28 and 16 -> 32 at 14x14, k5 p2, float, with
  // the default budget and with chunks of 48 samples (ragged: 128 = 2*48 +
  // 32).
  const Tolerances tol{2e-5, 2e-5, 2e-4};
  for (const bool chunks : {false, true}) {
    Conv2d<float> c1(1, 16, 5, 1, 2, 1), g1(1, 16, 5, 1, 2, 1);
    Conv2d<float> c2(16, 32, 5, 1, 2, 2), g2(16, 32, 5, 1, 2, 2);
    if (chunks) {
      g1.set_column_budget(48 * 25 * 784);
      g2.set_column_budget(48 * 400 * 196);
    }
    CheckLayerParity<float>(c1, g1, {128, 1, 28, 28}, 21, tol);
    CheckLayerParity<float>(c2, g2, {128, 16, 14, 14}, 22, tol);
  }
}

TEMPLATE_TEST_CASE("Pooling on the GPU equals the CPU bitwise",
                   "[gpu][nn][pool]",
                   float,
                   double) {
  using T = TestType;
  struct Case {
    Shape shape;
    std::int64_t k, s;
  };
  for (const Case& c : {Case{{2, 3, 7, 7}, 3, 2},
                        Case{{4, 5, 8, 6}, 2, 2},
                        Case{{2, 2, 4, 5, 5}, 2, 1},
                        Case{{3, 1, 9, 4}, 3, 3},
                        Case{{64, 16, 28, 28}, 2, 2}}) {
    INFO("shape " << ShapeString(c.shape) << " k" << c.k << " s" << c.s);
    MaxPool2d<T> cmax(c.k, c.s), gmax(c.k, c.s);
    AvgPool2d<T> cavg(c.k, c.s), gavg(c.k, c.s);
    CheckLayerParity<T>(cmax, gmax, c.shape, 31, {0, 0, 0});
    CheckLayerParity<T>(cavg, gavg, c.shape, 32, {0, 0, 0});
  }
  // Ties: the gradient goes to the first maximum, as on the CPU.
  MaxPool2d<T> cpu(3, 1), gpu(3, 1);
  gpu.To(Device::kCuda);
  Tensor<T> x({2, 2, 6, 6});
  for (std::int64_t i = 0; i < x.size(); ++i) x[i] = T((i * 7) % 3);
  const Tensor<T> dy = RandomTensor<T>({2, 2, 4, 4}, 33);
  Tensor<T> y, dx;
  cpu.Forward(x, y, Mode::kTrain);
  cpu.Backward(x, y, dy, dx);
  const Tensor<T> xd = x.To(Device::kCuda), dyd = dy.To(Device::kCuda);
  Tensor<T> yd = PoisonedDevice<T>(y.shape()),
            dxd = PoisonedDevice<T>(x.shape());
  gpu.Forward(xd, yd, Mode::kTrain);
  gpu.Backward(xd, yd, dyd, dxd);
  CHECK(SameBits(HostCopy(dxd),
                 std::vector<T>(dx.data(), dx.data() + dx.size())));
}

TEMPLATE_TEST_CASE("P4 layers on the GPU equal the CPU",
                   "[gpu][nn][p4]",
                   float,
                   double) {
  using T = TestType;
  const Tolerances tol{
      Tol<T>(2e-5, 1e-12), Tol<T>(2e-5, 1e-12), Tol<T>(1e-4, 1e-11)};
  struct Case {
    P4Input input;
    std::int64_t n, cin, cout, hw, k, p;
    bool small_chunks;
  };
  for (const Case& c : {Case{P4Input::kZ2, 3, 1, 4, 9, 3, 1, false},
                        Case{P4Input::kZ2, 5, 2, 3, 7, 5, 2, true},
                        Case{P4Input::kP4, 3, 2, 3, 7, 3, 1, false},
                        Case{P4Input::kP4, 5, 3, 2, 6, 3, 0, true},
                        Case{P4Input::kP4, 4, 2, 2, 5, 1, 0, false}}) {
    INFO("case " << (c.input == P4Input::kZ2 ? "lift" : "p4") << " n=" << c.n
                 << " " << c.cin << "->" << c.cout << " " << c.hw << " k" << c.k
                 << " p" << c.p);
    P4Conv<T> cpu(c.input, c.cin, c.cout, c.k, c.p, 41);
    P4Conv<T> gpu(c.input, c.cin, c.cout, c.k, c.p, 41);
    if (c.small_chunks) gpu.set_column_budget(1);  // one sample per chunk
    const Shape in_shape = c.input == P4Input::kZ2
                               ? Shape{c.n, c.cin, c.hw, c.hw}
                               : Shape{c.n, c.cin, 4, c.hw, c.hw};
    CheckLayerParity<T>(cpu, gpu, in_shape, 42, tol);
    // The bank expanded on the device equals the CPU's bitwise (gpu's theta
    // equals cpu's: parameters are only read by Forward/Backward).
    const std::int64_t bank_size = std::int64_t(cpu.pattern().class_of.size());
    std::vector<T> bank(static_cast<std::size_t>(bank_size));
    cpu.ExpandFilters(bank.data());
    DeviceBuffer<T> bank_d(bank_size);
    bank_d.FillBytes(0xFF);
    gpu.ExpandFilters(bank_d.data());
    CHECK(SameBits(HostCopy(TensorView<const T>(bank_d.View(1, bank_size))),
                   bank));
  }
}

TEMPLATE_TEST_CASE("P4 layers are equivariant on the GPU",
                   "[gpu][nn][p4][symmetry]",
                   float,
                   double) {
  using T = TestType;
  // layer(g x) = g layer(x): the same products in another order, so equal to
  // rounding (as on the CPU).
  const double tol = Tol<T>(2e-5, 1e-12);
  P4Conv<T> lift(P4Input::kZ2, 2, 3, 3, 1, 51);
  P4Conv<T> conv(P4Input::kP4, 3, 2, 3, 1, 52);
  lift.To(Device::kCuda);
  conv.To(Device::kCuda);
  const Tensor<T> x = RandomTensor<T>({3, 2, 9, 9}, 53);
  for (int t = 1; t < 4; ++t) {
    INFO("rotation " << t);
    const Tensor<T> gx =
        data::ApplySymmetry(data::GridSymmetry::Rotation(t), x);
    Tensor<T> h = PoisonedDevice<T>({3, 3, 4, 9, 9}),
              gh = PoisonedDevice<T>({3, 3, 4, 9, 9});
    lift.Forward(x.To(Device::kCuda), h, Mode::kEval);
    lift.Forward(gx.To(Device::kCuda), gh, Mode::kEval);
    const Tensor<T> h_host = h.To(Device::kCpu);
    const Tensor<T> expected = ActP4(h_host, t);
    const Tensor<T> got = gh.To(Device::kCpu);
    CHECK(MaxError(std::vector<T>(got.data(), got.data() + got.size()),
                   std::vector<T>(expected.data(),
                                  expected.data() + expected.size())) <= tol);
    // P4 -> P4 on the lifted maps.
    Tensor<T> y = PoisonedDevice<T>({3, 2, 4, 9, 9}),
              gy = PoisonedDevice<T>({3, 2, 4, 9, 9});
    conv.Forward(h, y, Mode::kEval);
    conv.Forward(ActP4(h_host, t).To(Device::kCuda), gy, Mode::kEval);
    const Tensor<T> y_expected = ActP4(y.To(Device::kCpu), t);
    const Tensor<T> gy_host = gy.To(Device::kCpu);
    CHECK(MaxError(
              std::vector<T>(gy_host.data(), gy_host.data() + gy_host.size()),
              std::vector<T>(y_expected.data(),
                             y_expected.data() + y_expected.size())) <= tol);
  }
}

TEMPLATE_TEST_CASE("RotationPool on the GPU equals the CPU bitwise",
                   "[gpu][nn][p4]",
                   float,
                   double) {
  using T = TestType;
  for (const RotationPoolKind kind :
       {RotationPoolKind::kMax, RotationPoolKind::kMean}) {
    RotationPool<T> cpu(kind), gpu(kind);
    CheckLayerParity<T>(cpu, gpu, {3, 5, 4, 7, 6}, 61, {0, 0, 0});
  }
}

TEMPLATE_TEST_CASE("FlipInvariantDense on the GPU equals the CPU",
                   "[gpu][nn][flip]",
                   float,
                   double) {
  using T = TestType;
  // Products of K ~ C*H*W/2 terms (y), F terms (dx) and N terms (dtheta).
  const Tolerances tol{
      Tol<T>(2e-5, 1e-12), Tol<T>(2e-5, 1e-12), Tol<T>(5e-5, 1e-12)};
  for (const std::int64_t W : {6, 7}) {
    FlipInvariantDense<T> cpu(4, 3, W, 9, 71), gpu(4, 3, W, 9, 71);
    CheckLayerParity<T>(cpu, gpu, {5, 4, 3, W}, 72, tol);
    // The expanded weight on the device equals the CPU's bitwise.
    const std::int64_t size = 9 * cpu.in_features();
    std::vector<T> dense(static_cast<std::size_t>(size));
    cpu.ExpandWeights(dense.data());
    DeviceBuffer<T> dense_d(size);
    dense_d.FillBytes(0xFF);
    gpu.ExpandWeights(dense_d.data());
    CHECK(
        SameBits(HostCopy(TensorView<const T>(dense_d.View(1, size))), dense));
  }
  // No bias, no dx.
  FlipInvariantDense<T> cpu(2, 2, 5, 3, 73, false), gpu(2, 2, 5, 3, 73, false);
  cpu.set_input_grad_required(false);
  CheckLayerParity<T>(cpu, gpu, {4, 2, 2, 5}, 74, tol);
}

TEMPLATE_TEST_CASE("FlipInvariantDense is flip invariant on the GPU",
                   "[gpu][nn][flip][symmetry]",
                   float,
                   double) {
  using T = TestType;
  FlipInvariantDense<T> layer(4, 3, 7, 9, 81);
  layer.To(Device::kCuda);
  const Tensor<T> x = RandomTensor<T>({5, 4, 3, 7}, 82);
  const Tensor<T> fx =
      data::ApplySymmetry(data::GridSymmetry::FlipHorizontal(), x);
  Tensor<T> y = PoisonedDevice<T>({5, 9}), fy = PoisonedDevice<T>({5, 9});
  layer.Forward(x.To(Device::kCuda), y, Mode::kEval);
  layer.Forward(fx.To(Device::kCuda), fy, Mode::kEval);
  // The fold adds x[w] + x[W-1-w] or x[W-1-w] + x[w]: IEEE addition is
  // commutative, so the outputs agree bitwise.
  const std::vector<T> a = HostCopy(y), b = HostCopy(fy);
  CHECK(SameBits(a, b));
  CHECK(Rms(a) > 0.1);
}

TEST_CASE("GPU layers refuse tensors on the other device",
          "[gpu][nn][errors]") {
  Conv2d<float> conv(1, 2, 3);
  conv.To(Device::kCuda);
  const Tensor<float> x = RandomTensor<float>({2, 1, 5, 5}, 91);
  Tensor<float> y;
  symopt::testing::CheckThrowsNaming(
      [&] { conv.Forward(x, y, Mode::kTrain); },
      {"conv2d(1->2, k3, s1, p0)", "input is on cpu", "layer is on cuda"});
  CHECK(y.size() == 0);
  // A CPU layer refuses device input; gradients stay untouched.
  P4Conv<float> lift(P4Input::kZ2, 1, 2, 3);
  const Tensor<float> xd = x.To(Device::kCuda);
  symopt::testing::CheckThrowsNaming(
      [&] { lift.Forward(xd, y, Mode::kTrain); },
      {"p4_lift(1->2, k3, p0)", "input is on cuda", "layer is on cpu"});
  Tensor<float> yd(Shape{2, 2, 4, 3, 3}, Device::kCuda), dx;
  lift.ZeroGrad();
  CHECK_THROWS_AS(lift.Backward(xd, yd, yd, dx), InvalidArgument);
  for (const Parameter<float>& p : lift.Params()) {
    for (std::int64_t i = 0; i < p.grad.size(); ++i) CHECK(p.grad.data[i] == 0);
  }
  // Max pooling: Backward on the GPU needs a GPU Forward.
  MaxPool2d<float> pool(2);
  pool.To(Device::kCuda);
  Tensor<float> py, pdx;
  pool.Forward(xd, py, Mode::kTrain);
  pool.To(Device::kCpu);
  pool.To(Device::kCuda);
  CHECK_THROWS_AS(pool.Backward(xd, py, py, pdx), InvalidArgument);
  // Moving back to the CPU works and gives the CPU's results.
  conv.To(Device::kCpu);
  conv.Forward(x, y, Mode::kTrain);
  CHECK_FALSE(y.is_cuda());
}
