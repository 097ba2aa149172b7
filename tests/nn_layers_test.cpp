// Linear, ReLU, Tanh, Flatten, Dropout: values against direct formulas,
// gradients through the generic CheckLayerGradients, shape errors.
#include <cmath>

#include "catch.h"
#include "layer_checks.h"
#include "nn/layers.h"

using namespace symopt;
using namespace symopt::nn;
using symopt::testing::CheckLayerGradients;
using symopt::testing::CheckThrowsNaming;
using symopt::testing::RandomTensor;

namespace {

// Dropout that redraws the same mask at each Forward, so f(x) is a fixed
// function for the finite-difference check.
class ReseededDropout final : public Layer<double> {
 public:
  ReseededDropout(double p, std::uint64_t seed)
      : inner_(p, seed), seed_(seed) {}
  std::string Name() const override { return inner_.Name(); }
  Shape OutputShape(const Shape& s) const override {
    return inner_.OutputShape(s);
  }
  void Forward(const Tensor<double>& x, Tensor<double>& y, Mode mode) override {
    inner_.Reseed(seed_);
    inner_.Forward(x, y, mode);
  }
  void Backward(const Tensor<double>& x,
                const Tensor<double>& y,
                const Tensor<double>& dy,
                Tensor<double>& dx) override {
    inner_.Backward(x, y, dy, dx);
  }

 private:
  Dropout<double> inner_;
  std::uint64_t seed_;
};

}  // namespace

TEST_CASE("CheckedEntries spreads max_entries indices over 0 .. n-1",
          "[nn][gradient]") {
  using symopt::testing::internal::CheckedEntries;
  using V = std::vector<std::int64_t>;
  CHECK(CheckedEntries(4, 0) == V{0, 1, 2, 3});
  CHECK(CheckedEntries(3, 5) == V{0, 1, 2});
  CHECK(CheckedEntries(10, 3) == V{0, 4, 9});
  CHECK(CheckedEntries(10, 2) == V{0, 9});
  CHECK(CheckedEntries(10, 1) == V{0});  // divided by zero before
}

TEST_CASE("Linear computes x W^T + b", "[nn][linear]") {
  Linear<double> layer(3, 2, 7);
  const Tensor<double> x = RandomTensor<double>({4, 3}, 1);
  Tensor<double> y;
  layer.Forward(x, y, Mode::kEval);
  REQUIRE(y.shape() == Shape{4, 2});
  for (int n = 0; n < 4; ++n) {
    for (int o = 0; o < 2; ++o) {
      double s = layer.bias()[o];
      for (int i = 0; i < 3; ++i) s += x[n * 3 + i] * layer.weight()[o * 3 + i];
      CHECK(y[n * 2 + o] == Approx(s).epsilon(1e-14));
    }
  }
  // PyTorch-style init bound 1/sqrt(in).
  for (std::int64_t i = 0; i < layer.weight().size(); ++i) {
    CHECK(std::abs(layer.weight()[i]) <= 1.0 / std::sqrt(3.0));
  }
}

TEST_CASE("Linear gradients", "[nn][linear][gradient]") {
  Linear<double> layer(5, 4, 3);
  CheckLayerGradients(layer, {3, 5}, 11, 1e-7);
  Linear<double> no_bias(6, 2, 4, /*bias=*/false);
  REQUIRE(no_bias.Params().size() == 1);
  CheckLayerGradients(no_bias, {2, 6}, 12, 1e-7);
}

TEST_CASE("Linear parameters are named, shaped and Euclidean", "[nn][linear]") {
  Linear<float> layer(784, 256);
  const std::vector<Parameter<float>> p = layer.Params();
  REQUIRE(p.size() == 2);
  CHECK(p[0].name == "weight");
  CHECK(p[0].value.rows == 256);
  CHECK(p[0].value.cols == 784);
  CHECK(p[0].manifold->Name() == "euclidean");
  CHECK(p[1].name == "bias");
  CHECK(p[1].value.size() == 256);
}

TEST_CASE("Linear skips the input gradient when not required", "[nn][linear]") {
  Linear<float> layer(4, 3, 1);
  const Tensor<float> x = RandomTensor<float>({2, 4}, 2);
  Tensor<float> y, dx;
  layer.Forward(x, y, Mode::kTrain);
  const Tensor<float> dy = RandomTensor<float>({2, 3}, 3);
  layer.set_input_grad_required(false);
  layer.Backward(x, y, dy, dx);
  CHECK(dx.size() == 0);
  double norm = 0;
  for (const auto& p : layer.Params()) {
    for (std::int64_t i = 0; i < p.grad.size(); ++i)
      norm += std::abs(p.grad.data[i]);
  }
  CHECK(norm > 0);
}

TEST_CASE("Element-wise layers: values and gradients",
          "[nn][activation][gradient]") {
  ReLU<double> relu;
  const Tensor<double> x = RandomTensor<double>({2, 3, 4}, 5);
  Tensor<double> y;
  relu.Forward(x, y, Mode::kTrain);
  for (std::int64_t i = 0; i < x.size(); ++i)
    CHECK(y[i] == std::max(x[i], 0.0));
  CheckLayerGradients(relu, {3, 2, 4}, 21, 1e-7);

  Tanh<double> tanh_layer;
  tanh_layer.Forward(x, y, Mode::kTrain);
  for (std::int64_t i = 0; i < x.size(); ++i) CHECK(y[i] == std::tanh(x[i]));
  CheckLayerGradients(tanh_layer, {3, 7}, 22, 1e-7);

  Flatten<double> flatten;
  flatten.Forward(x, y, Mode::kTrain);
  CHECK(y.shape() == Shape{2, 12});
  CheckLayerGradients(flatten, {2, 3, 2, 2}, 23, 1e-7);
}

TEST_CASE("Dropout: seeded inverted mask in training, identity in eval",
          "[nn][dropout]") {
  const double p = 0.3;
  Dropout<double> a(p, 42), b(p, 42);
  const Tensor<double> x = RandomTensor<double>({50, 40}, 6);
  Tensor<double> ya, yb;
  a.Forward(x, ya, Mode::kTrain);
  b.Forward(x, yb, Mode::kTrain);
  std::int64_t dropped = 0;
  for (std::int64_t i = 0; i < x.size(); ++i) {
    CHECK(ya[i] == yb[i]);  // same seed, same mask
    if (ya[i] == 0.0) {
      ++dropped;
    } else {
      CHECK(ya[i] == Approx(x[i] / (1 - p)).epsilon(1e-14));
    }
  }
  // 2000 Bernoulli(0.3) draws: mean 600, sd ~20.5.
  CHECK(dropped > 500);
  CHECK(dropped < 700);
  // A second Forward draws a new mask.
  a.Forward(x, ya, Mode::kTrain);
  std::int64_t differ = 0;
  for (std::int64_t i = 0; i < x.size(); ++i)
    differ += (ya[i] == 0.0) != (yb[i] == 0.0);
  CHECK(differ > 0);
  a.Forward(x, ya, Mode::kEval);
  for (std::int64_t i = 0; i < x.size(); ++i) CHECK(ya[i] == x[i]);

  ReseededDropout checked(0.4, 9);
  CheckLayerGradients(checked, {4, 6}, 24, 1e-7);
  CheckLayerGradients(checked, {4, 6}, 25, 1e-7, {Mode::kEval});
  REQUIRE_THROWS_AS(Dropout<float>(1.0), InvalidArgument);
}

TEST_CASE("A layer fed the wrong shape names the layer and both shapes",
          "[nn][errors]") {
  Linear<float> layer(784, 256);
  Tensor<float> x({64, 100}), y;
  CheckThrowsNaming([&] { layer.Forward(x, y, Mode::kTrain); },
                    {"linear(784->256)", "[64, 100]", "[N, 784]"});
  Flatten<float> flatten;
  REQUIRE_THROWS_AS(flatten.Forward(Tensor<float>({5}), y, Mode::kTrain),
                    InvalidArgument);
  REQUIRE_THROWS_AS(Linear<float>(0, 3), InvalidArgument);
}
