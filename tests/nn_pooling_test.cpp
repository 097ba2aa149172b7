// MaxPool2d and AvgPool2d: values against direct window loops, gradients
// through CheckLayerGradients (including rank-5 P4-style maps), errors.
#include <algorithm>

#include "catch.h"
#include "layer_checks.h"
#include "nn/pooling.h"

using namespace symopt;
using namespace symopt::nn;
using symopt::testing::CheckLayerGradients;
using symopt::testing::CheckThrowsNaming;
using symopt::testing::RandomTensor;

TEST_CASE("Pooling matches direct window loops", "[nn][pooling]") {
  for (auto [k, s] : {std::pair<int, int>{2, 2}, {3, 2}, {3, 1}, {2, 3}}) {
    const Tensor<double> x = RandomTensor({2, 3, 7, 8}, 1);
    MaxPool2d<double> maxpool(k, s);
    AvgPool2d<double> avgpool(k, s);
    Tensor<double> ym, ya;
    maxpool.Forward(x, ym, Mode::kTrain);
    avgpool.Forward(x, ya, Mode::kTrain);
    const std::int64_t ho = (7 - k) / s + 1, wo = (8 - k) / s + 1;
    REQUIRE(ym.shape() == Shape{2, 3, ho, wo});
    REQUIRE(ya.shape() == ym.shape());
    for (std::int64_t p = 0; p < 6; ++p)
      for (std::int64_t i = 0; i < ho; ++i)
        for (std::int64_t j = 0; j < wo; ++j) {
          double mx = -1e300, sum = 0;
          for (int u = 0; u < k; ++u)
            for (int v = 0; v < k; ++v) {
              const double e = x[p * 56 + (i * s + u) * 8 + j * s + v];
              mx = std::max(mx, e);
              sum += e;
            }
          CHECK(ym[(p * ho + i) * wo + j] == mx);
          CHECK(ya[(p * ho + i) * wo + j] ==
                Approx(sum / (k * k)).epsilon(1e-14));
        }
  }
}

TEST_CASE("Pooling gradients", "[nn][pooling][gradient]") {
  MaxPool2d<double> max2(2);
  CheckLayerGradients(max2, {2, 3, 6, 6}, 41, 1e-7);
  MaxPool2d<double> max_overlap(3, 2);
  CheckLayerGradients(max_overlap, {2, 2, 7, 7}, 42, 1e-7);
  AvgPool2d<double> avg2(2);
  CheckLayerGradients(avg2, {2, 3, 6, 5}, 43, 1e-7);
  AvgPool2d<double> avg_overlap(3, 1);
  CheckLayerGradients(avg_overlap, {1, 2, 5, 5}, 44, 1e-7);
  // P4 feature maps [N, C, 4, H, W]: pooling acts on the last two axes.
  CheckLayerGradients(max2, {2, 2, 4, 4, 4}, 45, 1e-7);
  CheckLayerGradients(avg2, {2, 2, 4, 4, 4}, 46, 1e-7);
}

TEST_CASE("Max pooling sends the gradient to the first maximum on ties",
          "[nn][pooling]") {
  MaxPool2d<double> pool(2);
  Tensor<double> x({1, 1, 2, 2}, 1.0), y, dx;
  pool.Forward(x, y, Mode::kTrain);
  pool.Backward(x, y, Tensor<double>({1, 1, 1, 1}, 5.0), dx);
  CHECK(dx[0] == 5.0);
  CHECK(dx[1] == 0.0);
  CHECK(dx[2] == 0.0);
  CHECK(dx[3] == 0.0);
}

TEST_CASE("Pooling rejects bad shapes", "[nn][pooling][errors]") {
  MaxPool2d<float> pool(3);
  Tensor<float> y;
  REQUIRE_THROWS_AS(pool.Forward(Tensor<float>({2, 2, 2, 5}), y, Mode::kTrain),
                    InvalidArgument);
  REQUIRE_THROWS_AS(pool.Forward(Tensor<float>({2, 9}), y, Mode::kTrain),
                    InvalidArgument);
  REQUIRE_THROWS_AS(AvgPool2d<float>(0), InvalidArgument);
  CheckThrowsNaming(
      [&] {
        AvgPool2d<float>(2).Forward(Tensor<float>({4, 1}), y, Mode::kTrain);
      },
      {"avgpool(k2, s2)", "[4, 1]"});
}
