// Softmax cross-entropy and mean squared error: values against the
// definitions, gradients against central differences, numerical stability,
// label errors.
#include <cmath>
#include <random>

#include "catch.h"
#include "layer_checks.h"
#include "nn/loss.h"

using namespace symopt;
using namespace symopt::nn;
using symopt::testing::CheckThrowsNaming;
using symopt::testing::RandomTensor;

namespace {
// Central differences of f at every entry of z.
template <typename F>
std::vector<double> NumericGradient(Tensor<double> z, F f) {
  std::vector<double> g(z.size());
  const double h = 1e-6;
  for (std::int64_t i = 0; i < z.size(); ++i) {
    const double z0 = z[i];
    z[i] = z0 + h;
    const double fp = f(z);
    z[i] = z0 - h;
    const double fm = f(z);
    z[i] = z0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}
}  // namespace

TEST_CASE("Softmax cross-entropy value and gradient", "[nn][loss]") {
  const Tensor<double> z = RandomTensor({5, 4}, 1, 2.0);
  const std::vector<std::int32_t> labels{0, 3, 2, 2, 1};
  Tensor<double> grad;
  const double loss = SoftmaxCrossEntropy(z, labels, &grad);
  double expect = 0;
  for (int n = 0; n < 5; ++n) {
    double s = 0;
    for (int j = 0; j < 4; ++j) s += std::exp(z[n * 4 + j]);
    expect += -std::log(std::exp(z[n * 4 + labels[n]]) / s);
  }
  CHECK(loss == Approx(expect / 5).epsilon(1e-13));
  const std::vector<double> numeric = NumericGradient(
      z,
      [&](const Tensor<double>& t) { return SoftmaxCrossEntropy(t, labels); });
  for (std::int64_t i = 0; i < z.size(); ++i)
    CHECK(grad[i] == Approx(numeric[i]).margin(1e-8));
}

TEST_CASE("Softmax cross-entropy is stable for huge logits", "[nn][loss]") {
  Tensor<float> z({2, 3});
  const float big[6] = {1000.f, 0.f, -1000.f, 500.f, 501.f, 499.f};
  for (int i = 0; i < 6; ++i) z[i] = big[i];
  Tensor<float> grad;
  const double loss = SoftmaxCrossEntropy(z, {0, 2}, &grad);
  REQUIRE(std::isfinite(loss));
  // Row 0: ~0. Row 1: logsumexp(500,501,499) - 499 = 2 + log(1 + e^-1 + e^-2).
  const double row1 = 2.0 + std::log(1.0 + std::exp(-1.0) + std::exp(-2.0));
  CHECK(loss == Approx(row1 / 2).epsilon(1e-6));
  for (int i = 0; i < 6; ++i) CHECK(std::isfinite(grad[i]));
  CHECK(grad[0] == Approx(0.0).margin(1e-7));
}

TEST_CASE("Mean squared error value and gradient", "[nn][loss]") {
  const Tensor<double> p = RandomTensor({3, 4}, 2), q = RandomTensor({3, 4}, 3);
  Tensor<double> grad;
  const double loss = MeanSquaredError(p, q, &grad);
  double expect = 0;
  for (int i = 0; i < 12; ++i) expect += (p[i] - q[i]) * (p[i] - q[i]);
  CHECK(loss == Approx(expect / 12).epsilon(1e-14));
  const std::vector<double> numeric = NumericGradient(
      p, [&](const Tensor<double>& t) { return MeanSquaredError(t, q); });
  for (int i = 0; i < 12; ++i)
    CHECK(grad[i] == Approx(numeric[i]).margin(1e-8));
}

TEST_CASE("Accuracy counts arg-max hits", "[nn][loss]") {
  Tensor<float> z({3, 3});
  const float v[9] = {0, 1, 0, 2, 1, 0, 0, 0, 3};
  for (int i = 0; i < 9; ++i) z[i] = v[i];
  CHECK(CountCorrect(z, {1, 0, 0}) == 2);
}

TEST_CASE("Losses reject bad labels and shapes", "[nn][loss][errors]") {
  Tensor<float> z({2, 10}), g({1}, 7.f);
  CheckThrowsNaming(
      [&] {
        SoftmaxCrossEntropy(z, {3, 10}, &g);
      },
      {"label 10 at index 1"});
  CHECK(g.size() == 1);  // untouched
  CHECK(g[0] == 7.f);
  REQUIRE_THROWS_AS(SoftmaxCrossEntropy(z, {1}, &g), InvalidArgument);
  REQUIRE_THROWS_AS(SoftmaxCrossEntropy(z, {-1, 0}, &g), InvalidArgument);
  REQUIRE_THROWS_AS(MeanSquaredError(z, Tensor<float>({2, 9}), &g),
                    InvalidArgument);
}
