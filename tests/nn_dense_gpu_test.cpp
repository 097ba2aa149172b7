// GPU parity of the dense and element-wise layers, batch/layer norm and the
// losses (STYLE T5, T7): each runs through its public API on CUDA tensors and
// is compared with the CPU reference on fresh random inputs (fixed seeds),
// for float and double.
//
// How the comparison works:
// - Two layers are built identically (same constructor seed); parameters and
//   GRADIENTS are set to the same random values (non-zero gradients, so a
//   Backward that overwrote instead of adding would be caught); one layer is
//   moved to the GPU.
// - Outputs on the device are POISONED (every element NaN) before each
//   Forward and Backward, so an element the kernels never wrote shows up.
// - Backward gets the CPU's forward output y on both sides (uploaded), so an
//   element-wise backward compares the same function on the same inputs.
// - Error measure: the symmetric relative error
//     e(a, b) = |a - b| / max(|a|, |b|, RMS of the reference),
//   the RMS floor judging values that cancel to ~0 against the data's scale.
//
// Tolerances, and why: both sides compile without FMA contraction and run
// the same per-element maths (src/nn_dense_ops.h), so ReLU, dropout,
// flatten, the MSE gradient and the accuracy count are compared BITWISE
// (tolerance 0). Everything that reduces differs only by summation order
// (cuBLAS vs Eigen blocking for GEMMs, tree vs sequential sums in double for
// statistics) and, for tanh/exp/log, by the last ulp of the math library.
// Rounding errors of a sum of k terms grow like sqrt(k) ulps for random
// data, and both sides contribute, so reductions use
//     Tol<T>(k) = 16 eps_T sqrt(k)
// with k the longest reduction feeding the compared value (eps_T = 2^-23 for
// float, 2^-52 for double): e.g. float, k = 300: 3.3e-5. Loss values (double
// on both sides, from the same T inputs) use 1e-12 relative.
//
// Exits 77 (skipped) without a device: tests/gpu_main.cpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "catch.h"
#include "layer_checks.h"
#include "manifolds/device.h"
#include "nn/group_conv.h"
#include "nn/layers.h"
#include "nn/loss.h"
#include "nn/normalization.h"
#include "nn/sequential.h"

using namespace symopt;
using namespace symopt::nn;
using symopt::testing::CheckThrowsNaming;
using symopt::testing::RandomTensor;

namespace {

template <typename T>
double Tol(double k) {
  return 16.0 * double(std::numeric_limits<T>::epsilon()) *
         std::sqrt(std::max(k, 1.0));
}

template <typename T>
std::vector<T> Host(TensorView<const T> v) {
  std::vector<T> h(std::size_t(v.size()), std::numeric_limits<T>::quiet_NaN());
  Copy(v, TensorView<T>(h.data(), v.rows, v.cols));
  return h;
}

template <typename T>
std::vector<T> Host(const Tensor<T>& t) {
  return Host(t.FlatView());
}

// A device tensor of `shape` with every element NaN.
template <typename T>
Tensor<T> Poisoned(const Shape& shape) {
  Tensor<T> t(shape, Device::kCuda);
  t.Fill(std::numeric_limits<T>::quiet_NaN());
  return t;
}

template <typename T>
double Rms(const std::vector<T>& v) {
  double s = 0;
  for (const T e : v) s += double(e) * double(e);
  return std::max(std::sqrt(s / double(std::max<std::size_t>(v.size(), 1))),
                  1e-300);
}

template <typename T>
double MaxSymmetricError(const std::vector<T>& gpu, const std::vector<T>& cpu) {
  REQUIRE(gpu.size() == cpu.size());
  const double floor = Rms(cpu);
  double worst = 0;
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    const double a = gpu[i], b = cpu[i];
    if (std::isnan(a) != std::isnan(b) || std::isinf(a) || std::isinf(b)) {
      return std::numeric_limits<double>::infinity();
    }
    if (std::isnan(a)) continue;  // NaN on both sides (not expected here)
    worst = std::max(
        worst, std::abs(a - b) / std::max({std::abs(a), std::abs(b), floor}));
  }
  return worst;
}

// tol == 0: bitwise equal (and no NaN: poison left behind fails).
template <typename T>
void CheckClose(const std::string& what,
                const std::vector<T>& gpu,
                const std::vector<T>& cpu,
                double tol) {
  INFO(what);
  REQUIRE(gpu.size() == cpu.size());
  for (const T v : gpu) {
    if (std::isnan(v)) {
      FAIL_CHECK(what << ": NaN on the GPU (an element left unwritten?)");
      return;
    }
  }
  if (tol == 0) {
    CHECK(gpu == cpu);
  } else {
    const double e = MaxSymmetricError(gpu, cpu);
    INFO("max symmetric relative error " << e << ", tolerance " << tol);
    CHECK(e <= tol);
  }
}

// The same random parameter values and gradients on both layers (host).
template <typename T>
void RandomizeState(Layer<T>& a, Layer<T>& b, std::uint64_t seed) {
  std::vector<Parameter<T>> pa = a.Params(), pb = b.Params();
  REQUIRE(pa.size() == pb.size());
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (std::size_t k = 0; k < pa.size(); ++k) {
    REQUIRE(pa[k].value.device == Device::kCpu);
    for (std::int64_t i = 0; i < pa[k].value.size(); ++i) {
      const T v = T(normal(rng)), g = T(normal(rng));
      pa[k].value.data[i] = pb[k].value.data[i] = v;
      pa[k].grad.data[i] = pb[k].grad.data[i] = g;
    }
  }
}

struct Tolerances {
  double y = 0, dx = 0, grads = 0, buffers = 0;
};

// Forward (in `mode`) and Backward on the CPU layer and on the GPU layer,
// compared as described at the top. Requires: both layers in the same state;
// `gpu` is moved to the device here (no-op when already there).
template <typename T>
void CheckParity(Layer<T>& cpu,
                 Layer<T>& gpu,
                 const Shape& in_shape,
                 Mode mode,
                 const Tolerances& tol,
                 std::uint64_t seed) {
  INFO(cpu.Name() << " on " << ShapeString(in_shape)
                  << (mode == Mode::kTrain ? ", train" : ", eval"));
  gpu.To(Device::kCuda);
  REQUIRE(gpu.device() == Device::kCuda);
  const Tensor<T> x = RandomTensor<T>(in_shape, seed, 0.5, 2.0);
  const Tensor<T> xd = x.To(Device::kCuda);

  Tensor<T> y;
  cpu.Forward(x, y, mode);
  Tensor<T> yd = Poisoned<T>(y.shape());
  gpu.Forward(xd, yd, mode);
  REQUIRE(yd.is_cuda());
  REQUIRE(yd.shape() == y.shape());
  CheckClose("output", Host(yd), Host(y), tol.y);
  const std::vector<Tensor<T>*> bc = cpu.Buffers(), bg = gpu.Buffers();
  REQUIRE(bc.size() == bg.size());
  for (std::size_t k = 0; k < bc.size(); ++k) {
    CHECK(bg[k]->is_cuda());
    CheckClose("buffer " + std::to_string(k) + " after Forward",
               Host(*bg[k]),
               Host(*bc[k]),
               tol.buffers);
  }

  const Tensor<T> dy = RandomTensor<T>(y.shape(), seed + 1);
  Tensor<T> dx;
  cpu.Backward(x, y, dy, dx);
  Tensor<T> dxd = Poisoned<T>(x.shape());
  gpu.Backward(xd, y.To(Device::kCuda), dy.To(Device::kCuda), dxd);
  REQUIRE(dxd.is_cuda());
  REQUIRE(dxd.shape() == dx.shape());
  if (dx.size() > 0) CheckClose("input gradient", Host(dxd), Host(dx), tol.dx);

  const std::vector<Parameter<T>> pc = cpu.Params(), pg = gpu.Params();
  REQUIRE(pc.size() == pg.size());
  for (std::size_t k = 0; k < pc.size(); ++k) {
    REQUIRE(pg[k].grad.device == Device::kCuda);
    const TensorView<const T> gc = pc[k].grad, gg = pg[k].grad;
    CheckClose("gradient of " + pc[k].name,
               Host(gg),
               std::vector<T>(gc.data, gc.data + gc.size()),
               tol.grads);
    const TensorView<const T> vc = pc[k].value, vg = pg[k].value;
    CheckClose("value of " + pc[k].name + " (unchanged)",
               Host(vg),
               std::vector<T>(vc.data, vc.data + vc.size()),
               0.0);
  }
}

std::vector<std::int32_t> RandomLabels(std::int64_t n,
                                       std::int64_t k,
                                       std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int32_t> u(0, std::int32_t(k - 1));
  std::vector<std::int32_t> labels(static_cast<std::size_t>(n));
  for (auto& l : labels) l = u(rng);
  return labels;
}

}  // namespace

// ---- Linear -----------------------------------------------------------------

TEMPLATE_TEST_CASE("GPU Linear equals the CPU (cuBLAS products, bias sums)",
                   "[gpu][nn][linear]",
                   float,
                   double) {
  using T = TestType;
  struct Case {
    std::int64_t n, in, out;
    bool bias, need_dx;
  };
  // Batch 1, batches that are not multiples of the 8 row lanes of the bias
  // reduction, more than 32 outputs (several channel tiles, a partial one).
  for (const Case c : {Case{1, 7, 3, true, true},
                       Case{37, 300, 10, true, true},
                       Case{64, 33, 70, false, true},
                       Case{200, 20, 45, true, false}}) {
    Linear<T> cpu(c.in, c.out, 11, c.bias), gpu(c.in, c.out, 11, c.bias);
    RandomizeState<T>(cpu, gpu, 12);
    cpu.set_input_grad_required(c.need_dx);
    gpu.set_input_grad_required(c.need_dx);
    Tolerances tol;
    tol.y = Tol<T>(c.in);     // y: dot products of length in
    tol.dx = Tol<T>(c.out);   // dx: length out
    tol.grads = Tol<T>(c.n);  // dW, db: sums over the batch
    CheckParity<T>(cpu, gpu, {c.n, c.in}, Mode::kTrain, tol, 13);
  }
}

// ---- element-wise -----------------------------------------------------------

TEMPLATE_TEST_CASE("GPU ReLU, Tanh, Flatten and Dropout equal the CPU",
                   "[gpu][nn][elementwise]",
                   float,
                   double) {
  using T = TestType;
  {
    // More than one grid-stride sweep (65536 blocks x 256 threads = 2^24
    // elements per sweep; the launchers share ElementwiseGrid).
    ReLU<T> cpu, gpu;
    CheckParity<T>(cpu,
                   gpu,
                   {2, (std::int64_t(1) << 23) + 9},
                   Mode::kTrain,
                   Tolerances{},
                   20);
  }
  // 1 element and a ragged size.
  for (const Shape& shape : {Shape{1, 1}, Shape{3, 5, 7, 11}}) {
    {
      ReLU<T> cpu, gpu;
      CheckParity<T>(cpu, gpu, shape, Mode::kTrain, Tolerances{}, 21);
    }
    {
      Flatten<T> cpu, gpu;
      if (shape.size() >= 2) {
        CheckParity<T>(cpu, gpu, shape, Mode::kTrain, Tolerances{}, 22);
      }
    }
    {
      // tanh: libdevice and glibc may each be 2 ulps off (no sum): 8 eps;
      // the backward is then the same arithmetic on the same y: bitwise.
      Tanh<T> cpu, gpu;
      Tolerances tol;
      tol.y = 8 * std::numeric_limits<T>::epsilon();
      CheckParity<T>(cpu, gpu, shape, Mode::kTrain, tol, 23);
    }
    for (const Mode mode : {Mode::kTrain, Mode::kEval}) {
      // The mask is drawn on the host by the same generator: bitwise.
      Dropout<T> cpu(0.3, 24), gpu(0.3, 24);
      CheckParity<T>(cpu, gpu, shape, mode, Tolerances{}, 25);
      // A second Forward draws the next mask on both sides.
      CheckParity<T>(cpu, gpu, shape, mode, Tolerances{}, 26);
    }
  }
}

// ---- normalisation ----------------------------------------------------------

TEMPLATE_TEST_CASE(
    "GPU BatchNorm equals the CPU in train and eval, running statistics too",
    "[gpu][nn][batchnorm]",
    float,
    double) {
  using T = TestType;
  // 1-d [N, F] (channel tiles; F not a multiple of 32; 300 rows: 3 row
  // chunks), 2-d with inner < 256 (256 % inner != 0 exercises the index
  // carry) and inner > 256 (9600 values per channel: 3 chunks).
  for (const Shape& shape : {Shape{300, 37},
                             Shape{5, 3},
                             Shape{5, 7, 9, 11},
                             Shape{24, 4, 20, 20}}) {
    const std::int64_t c = shape[1];
    const double m = double(NumElements(shape)) / double(c);  // exact
    BatchNorm<T> cpu(c, 0.2), gpu(c, 0.2);
    RandomizeState<T>(cpu, gpu, 31);
    // Non-trivial running statistics, equal on both.
    std::mt19937_64 rng(32);
    std::uniform_real_distribution<double> u(0.5, 2.0);
    for (std::int64_t i = 0; i < c; ++i) {
      cpu.running_mean()[i] = gpu.running_mean()[i] = T(u(rng) - 1.2);
      cpu.running_var()[i] = gpu.running_var()[i] = T(u(rng));
    }
    Tolerances tol;
    tol.y = tol.dx = tol.grads = tol.buffers = Tol<T>(m);
    CheckParity<T>(cpu, gpu, shape, Mode::kTrain, tol, 33);
    CheckParity<T>(cpu, gpu, shape, Mode::kEval, tol, 34);
    // Train again after eval: Backward follows the mode of its Forward.
    CheckParity<T>(cpu, gpu, shape, Mode::kTrain, tol, 35);
  }
}

TEMPLATE_TEST_CASE("GPU BatchNorm leaves running statistics alone on NaN input",
                   "[gpu][nn][batchnorm]",
                   float,
                   double) {
  using T = TestType;
  BatchNorm<T> bn(4);
  bn.To(Device::kCuda);
  const std::vector<T> mean_before = Host(bn.running_mean()),
                       var_before = Host(bn.running_var());
  Tensor<T> x = RandomTensor<T>({8, 4}, 36);
  x[5] = std::numeric_limits<T>::quiet_NaN();
  Tensor<T> y = Poisoned<T>({8, 4});
  bn.Forward(x.To(Device::kCuda), y, Mode::kTrain);
  CHECK(Host(bn.running_mean()) == mean_before);
  CHECK(Host(bn.running_var()) == var_before);
}

TEMPLATE_TEST_CASE(
    "GPU P4BatchNorm (BatchNorm on [N, C, 4, H, W]) equals the CPU",
    "[gpu][nn][batchnorm]",
    float,
    double) {
  using T = TestType;
  const Shape shape{3, 5, 4, 6, 6};
  P4BatchNorm<T> cpu(5), gpu(5);
  RandomizeState<T>(cpu, gpu, 41);
  Tolerances tol;
  tol.y = tol.dx = tol.grads = tol.buffers = Tol<T>(3 * 4 * 6 * 6);
  CheckParity<T>(cpu, gpu, shape, Mode::kTrain, tol, 42);
  CheckParity<T>(cpu, gpu, shape, Mode::kEval, tol, 43);
}

TEMPLATE_TEST_CASE("GPU LayerNorm equals the CPU",
                   "[gpu][nn][layernorm]",
                   float,
                   double) {
  using T = TestType;
  // Rows shorter than a block, and longer (strided lanes); [N, C, H, W] input.
  for (const Shape& shape : {Shape{13, 5}, Shape{9, 1000}, Shape{4, 3, 5, 7}}) {
    const std::int64_t f = NumElements(shape) / shape[0];
    LayerNorm<T> cpu(f), gpu(f);
    RandomizeState<T>(cpu, gpu, 51);
    Tolerances tol;
    tol.y = tol.dx = tol.grads = Tol<T>(double(std::max(f, shape[0])));
    CheckParity<T>(cpu, gpu, shape, Mode::kTrain, tol, 52);
  }
}

// ---- losses -----------------------------------------------------------------

TEMPLATE_TEST_CASE("GPU softmax cross-entropy equals the CPU",
                   "[gpu][nn][loss]",
                   float,
                   double) {
  using T = TestType;
  struct Case {
    std::int64_t n, k;
    double scale;
  };
  // Ragged row blocks (8 rows per block), rows longer than a warp, and large
  // logits (the stable logsumexp must not overflow).
  for (const Case c : {Case{1, 1, 1.0},
                       Case{9, 33, 3.0},
                       Case{1000, 10, 3.0},
                       Case{3, 1000, 1.0},
                       Case{17, 10, 1000.0}}) {
    INFO("n = " << c.n << ", k = " << c.k << ", scale " << c.scale);
    const Tensor<T> z = RandomTensor<T>({c.n, c.k}, 61, 0.0, c.scale);
    const std::vector<std::int32_t> labels = RandomLabels(c.n, c.k, 62);
    Tensor<T> g;
    const double loss = SoftmaxCrossEntropy(z, labels, &g);
    const Tensor<T> zd = z.To(Device::kCuda);
    Tensor<T> gd = Poisoned<T>({c.n, c.k});
    const double loss_d = SoftmaxCrossEntropy(zd, labels, &gd);
    REQUIRE(std::isfinite(loss));
    CHECK(std::abs(loss_d - loss) <= 1e-12 * std::max(1.0, std::abs(loss)));
    CHECK(gd.is_cuda());
    CheckClose("gradient", Host(gd), Host(g), Tol<T>(c.k));
    // Deterministic: the value again, bitwise, without a gradient.
    CHECK(SoftmaxCrossEntropy(zd, labels) == loss_d);
  }
}

TEMPLATE_TEST_CASE("GPU mean squared error equals the CPU",
                   "[gpu][nn][loss]",
                   float,
                   double) {
  using T = TestType;
  for (const Shape& shape :
       {Shape{1}, Shape{10, 100}, Shape{(std::int64_t(1) << 20) + 5}}) {
    const Tensor<T> p = RandomTensor<T>(shape, 71),
                    q = RandomTensor<T>(shape, 72);
    Tensor<T> g;
    const double loss = MeanSquaredError(p, q, &g);
    const Tensor<T> pd = p.To(Device::kCuda), qd = q.To(Device::kCuda);
    Tensor<T> gd = Poisoned<T>(shape);
    const double loss_d = MeanSquaredError(pd, qd, &gd);
    CHECK(std::abs(loss_d - loss) <= 1e-12 * loss);
    CheckClose("gradient", Host(gd), Host(g), 0.0);  // same formula: bitwise
    CHECK(MeanSquaredError(pd, qd) == loss_d);       // deterministic
  }
}

TEMPLATE_TEST_CASE("GPU CountCorrect equals the CPU, ties included",
                   "[gpu][nn][loss]",
                   float,
                   double) {
  using T = TestType;
  for (const std::int64_t k :
       {std::int64_t(1), std::int64_t(3), std::int64_t(10)}) {
    const std::int64_t n = 1000;
    // Logits in {0, 1, 2}: many ties, where the first maximum decides.
    Tensor<T> z({n, k});
    std::mt19937_64 rng(81);
    std::uniform_int_distribution<int> u(0, 2);
    for (std::int64_t i = 0; i < z.size(); ++i) z[i] = T(u(rng));
    const std::vector<std::int32_t> labels = RandomLabels(n, k, 82);
    const std::int64_t expected = CountCorrect(z, labels);
    CHECK(CountCorrect(z.To(Device::kCuda), labels) == expected);
  }
}

// ---- devices ----------------------------------------------------------------

TEST_CASE("GPU layers refuse inputs on another device, naming both",
          "[gpu][nn][device]") {
  Linear<float> linear(5, 3, 1);
  linear.To(Device::kCuda);
  const Tensor<float> x_host = RandomTensor<float>({2, 5}, 91);
  Tensor<float> y = Poisoned<float>({2, 3});
  CheckThrowsNaming([&] { linear.Forward(x_host, y, Mode::kTrain); },
                    {linear.Name(), "cpu", "cuda"});
  CHECK(y.is_cuda());  // untouched
  // A CPU layer given a CUDA tensor.
  BatchNorm<float> bn(5);
  Tensor<float> y2;
  CheckThrowsNaming(
      [&] { bn.Forward(x_host.To(Device::kCuda), y2, Mode::kTrain); },
      {bn.Name(), "cpu", "cuda"});
  ReLU<float> relu;
  CheckThrowsNaming(
      [&] { relu.Forward(x_host.To(Device::kCuda), y2, Mode::kTrain); },
      {"relu", "cpu", "cuda"});
  // Backward with the output gradient on the host.
  const Tensor<float> xd = x_host.To(Device::kCuda);
  Tensor<float> yd;
  linear.Forward(xd, yd, Mode::kTrain);
  Tensor<float> dx;
  CheckThrowsNaming(
      [&] {
        linear.Backward(xd, yd, RandomTensor<float>({2, 3}, 92), dx);
      },
      {linear.Name(), "output gradient", "cpu", "cuda"});
  // MSE with the prediction and the target on different devices.
  CHECK_THROWS_AS(MeanSquaredError(xd, x_host), InvalidArgument);
}

TEST_CASE("Tensors and models round-trip cpu -> cuda -> cpu bitwise",
          "[gpu][nn][device]") {
  // (nn_device_test checks the same where a device is present; repeated
  // here so that the GPU bundle, which runs *_gpu_test, covers it.)
  const Tensor<double> a = RandomTensor<double>({3, 5, 7}, 95);
  const Tensor<double> copy = a.To(Device::kCuda);  // and a device copy of it
  const Tensor<double> again = Tensor<double>(copy);
  CHECK(again.is_cuda());
  CHECK(Host(again.To(Device::kCpu)) == Host(a));
  Sequential<float> model;
  model.Emplace<Linear<float>>(6, 4, 96);
  model.Emplace<BatchNorm<float>>(4);
  model.Emplace<LayerNorm<float>>(4);
  std::vector<std::vector<float>> before;
  for (const Parameter<float>& p : model.Params())
    before.push_back(Host<float>(p.value));
  for (Tensor<float>* b : model.Buffers()) before.push_back(Host(*b));
  model.To(Device::kCuda);
  for (const Parameter<float>& p : model.Params()) {
    CHECK(p.value.device == Device::kCuda);
  }
  model.To(Device::kCpu);
  std::vector<std::vector<float>> after;
  for (const Parameter<float>& p : model.Params())
    after.push_back(Host<float>(p.value));
  for (Tensor<float>* b : model.Buffers()) after.push_back(Host(*b));
  CHECK(after == before);
}

// ---- a short training run
// ----------------------------------------------------

TEST_CASE("A short training run gives the same loss curve on GPU and CPU",
          "[gpu][nn][train]") {
  auto build = [] {
    auto model = std::make_unique<Sequential<float>>();
    model->Emplace<Linear<float>>(20, 32, 1);
    model->Emplace<BatchNorm<float>>(32);
    model->Emplace<ReLU<float>>();
    model->Emplace<Dropout<float>>(0.2, 2);
    model->Emplace<Linear<float>>(32, 16, 3);
    model->Emplace<LayerNorm<float>>(16);
    model->Emplace<Tanh<float>>();
    model->Emplace<Linear<float>>(16, 5, 4);
    return model;
  };
  auto cpu = build(), gpu = build();
  gpu->To(Device::kCuda);
  const Tensor<float> x = RandomTensor<float>({64, 20}, 101);
  const Tensor<float> xd = x.To(Device::kCuda);
  const std::vector<std::int32_t> labels = RandomLabels(64, 5, 102);
  StepOptions options;
  options.lr = 0.05;
  for (int step = 0; step < 20; ++step) {
    INFO("step " << step);
    double losses[2];
    Sequential<float>* models[2] = {cpu.get(), gpu.get()};
    for (int d = 0; d < 2; ++d) {
      Sequential<float>& model = *models[d];
      model.ZeroGrad();
      const Tensor<float>& out = model.Forward(d == 0 ? x : xd, Mode::kTrain);
      Tensor<float> grad;
      losses[d] = SoftmaxCrossEntropy(out, labels, &grad);
      model.Backward(grad);
      for (Parameter<float>& p : model.Params()) {
        p.manifold->Step(p.value,
                         p.grad,
                         TensorView<float>(nullptr, 0, 0, p.value.device),
                         options);
      }
    }
    // float training: rounding differences grow slowly over the steps.
    CHECK(std::abs(losses[1] - losses[0]) <= 1e-4 * std::abs(losses[0]));
  }
}
