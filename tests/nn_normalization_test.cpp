// BatchNorm (1-d and 2-d; train and eval; running statistics) and LayerNorm:
// statistics, the channel-scaling invariance, gradients through
// CheckLayerGradients, errors.
#include <cmath>

#include "catch.h"
#include "layer_checks.h"
#include "nn/normalization.h"

using namespace symopt;
using namespace symopt::nn;
using symopt::testing::CheckLayerGradients;
using symopt::testing::CheckThrowsNaming;
using symopt::testing::LayerCheckOptions;
using symopt::testing::RandomTensor;

namespace {
template <typename L>
void RandomizeParams(L& layer, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (auto& p : layer.Params())
    for (std::int64_t i = 0; i < p.value.size(); ++i)
      p.value.data[i] = normal(rng);
}
}  // namespace

TEST_CASE("BatchNorm normalises each channel with batch statistics in training",
          "[nn][batchnorm]") {
  for (const Shape& shape : {Shape{16, 5}, Shape{4, 3, 5, 6}}) {
    BatchNorm<double> bn(shape[1]);
    const Tensor<double> x = RandomTensor(shape, 1, 3.0, 2.0);
    Tensor<double> y;
    bn.Forward(x, y, Mode::kTrain);
    const std::int64_t c_count = shape[1],
                       inner = x.size() / (shape[0] * c_count);
    const double m = double(shape[0] * inner);
    for (std::int64_t c = 0; c < c_count; ++c) {
      double sx = 0, sxx = 0, sy = 0, syy = 0;
      for (std::int64_t b = 0; b < shape[0]; ++b)
        for (std::int64_t i = 0; i < inner; ++i) {
          const std::int64_t at = (b * c_count + c) * inner + i;
          sx += x[at];
          sxx += x[at] * x[at];
          sy += y[at];
          syy += y[at] * y[at];
        }
      const double mu = sx / m, var = sxx / m - mu * mu;
      CHECK(std::abs(sy / m) < 1e-12);
      CHECK(syy / m == Approx(var / (var + 1e-5)).epsilon(1e-10));
      // Running statistics after one step from (0, 1) with momentum 0.1.
      CHECK(bn.running_mean()[c] == Approx(0.1 * mu).epsilon(1e-12));
      CHECK(bn.running_var()[c] ==
            Approx(0.9 + 0.1 * var * m / (m - 1)).epsilon(1e-12));
    }
  }
}

TEST_CASE("BatchNorm eval mode uses the running statistics",
          "[nn][batchnorm]") {
  BatchNorm<double> bn(3);
  RandomizeParams(bn, 4);
  for (int c = 0; c < 3; ++c) {
    bn.running_mean()[c] = 0.5 * c - 0.3;
    bn.running_var()[c] = 1.0 + c;
  }
  const Tensor<double> x = RandomTensor({2, 3, 2, 2}, 2);
  Tensor<double> y;
  bn.Forward(x, y, Mode::kEval);
  for (std::int64_t i = 0; i < x.size(); ++i) {
    const int c = int((i / 4) % 3);
    const double expect = bn.scale()[c] * (x[i] - bn.running_mean()[c]) /
                              std::sqrt(bn.running_var()[c] + 1e-5) +
                          bn.shift()[c];
    CHECK(y[i] == Approx(expect).epsilon(1e-13));
  }
  CHECK(bn.running_mean()[2] == 0.7);  // eval leaves the statistics alone
}

TEST_CASE("BatchNorm output is invariant to scaling an input channel",
          "[nn][batchnorm]") {
  BatchNorm<double> bn(4);
  CHECK(bn.NormalizesInputChannels());
  Tensor<double> x = RandomTensor({32, 4}, 3), y0, y1;
  bn.Forward(x, y0, Mode::kTrain);
  for (std::int64_t b = 0; b < 32; ++b) x[b * 4 + 2] *= 7.5;
  bn.Forward(x, y1, Mode::kTrain);
  for (std::int64_t i = 0; i < x.size(); ++i)
    CHECK(y1[i] == Approx(y0[i]).margin(1e-5));
}

TEST_CASE("BatchNorm and LayerNorm gradients",
          "[nn][batchnorm][layernorm][gradient]") {
  BatchNorm<double> bn1(5);
  RandomizeParams(bn1, 5);
  CheckLayerGradients(bn1, {6, 5}, 51, 1e-6);
  BatchNorm<double> bn2(3);
  RandomizeParams(bn2, 6);
  CheckLayerGradients(bn2, {3, 3, 4, 3}, 52, 1e-6);
  LayerCheckOptions eval;
  eval.mode = Mode::kEval;
  CheckLayerGradients(bn2, {3, 3, 4, 3}, 53, 1e-6, eval);
  LayerNorm<double> ln(12);
  RandomizeParams(ln, 7);
  CheckLayerGradients(ln, {4, 12}, 54, 1e-6);
  CheckLayerGradients(ln, {3, 3, 2, 2}, 55, 1e-6);
}

TEST_CASE("LayerNorm normalises each sample", "[nn][layernorm]") {
  LayerNorm<double> ln(10);
  const Tensor<double> x = RandomTensor({3, 10}, 8, -2.0, 5.0);
  Tensor<double> y;
  ln.Forward(x, y, Mode::kEval);
  for (int b = 0; b < 3; ++b) {
    double s = 0, ss = 0;
    for (int i = 0; i < 10; ++i) {
      s += y[b * 10 + i];
      ss += y[b * 10 + i] * y[b * 10 + i];
    }
    CHECK(std::abs(s) < 1e-12);
    CHECK(ss / 10 == Approx(1.0).epsilon(1e-5));
  }
}

TEST_CASE("Normalisation layers reject bad input", "[nn][batchnorm][errors]") {
  BatchNorm<float> bn(8);
  Tensor<float> y;
  CheckThrowsNaming(
      [&] {
        bn.Forward(Tensor<float>({4, 6}), y, Mode::kTrain);
      },
      {"batchnorm(8)", "[4, 6]", "[N, 8]"});
  // One value per channel cannot be normalised in training mode.
  REQUIRE_THROWS_AS(bn.Forward(Tensor<float>({1, 8}), y, Mode::kTrain),
                    InvalidArgument);
  CHECK(bn.running_mean()[0] == 0.0f);
  bn.Forward(Tensor<float>({1, 8}), y, Mode::kEval);  // fine in eval
  // NaN in the input: non-finite output, running statistics untouched.
  Tensor<float> bad({4, 8}, 1.f);
  bad[5] = std::nanf("");
  bn.Forward(bad, y, Mode::kTrain);
  CHECK(std::isnan(y[5]));
  for (int c = 0; c < 8; ++c) {
    CHECK(bn.running_mean()[c] == 0.f);
    CHECK(bn.running_var()[c] == 1.f);
  }
  REQUIRE_THROWS_AS(BatchNorm<float>(4, 1.5), InvalidArgument);
  REQUIRE_THROWS_AS(
      LayerNorm<float>(6).Forward(Tensor<float>({2, 5}), y, Mode::kTrain),
      InvalidArgument);
}
