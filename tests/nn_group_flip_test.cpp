// The flip-invariant dense layer of FIAN (issue 4).
#include <cmath>
#include <string>
#include <vector>

#include "catch.h"
#include "group_test_util.h"
#include "layer_checks.h"
#include "nn/flip_invariant.h"

using namespace symopt;
using namespace symopt::nn;
using namespace symopt::testing;

namespace {

template <typename T>
void RandomizeBias(FlipInvariantDense<T>& layer, std::uint64_t seed) {
  const Tensor<T> b = RandomTensor<T>({layer.out_features()}, seed, 0.0, 0.5);
  for (std::int64_t i = 0; i < b.size(); ++i) layer.bias()[i] = b[i];
}

}  // namespace

TEST_CASE("Flip pattern: mirror pairs and the middle column", "[nn][flip]") {
  for (std::int64_t W : {1, 2, 5, 6}) {
    const std::int64_t C = 3, H = 2;
    const TiePattern pat = FlipPattern(C, H, W);
    INFO("W=" << W);
    REQUIRE(pat.rows == 1);
    REQUIRE(pat.cols == C * H * W);
    CHECK(pat.num_classes == C * H * ((W + 1) / 2));
    std::vector<int> size(pat.num_classes, 0);
    for (std::int64_t row = 0; row < C * H; ++row) {
      for (std::int64_t w = 0; w < W; ++w) {
        const std::int32_t id = pat.class_of[row * W + w];
        CHECK(id == pat.class_of[row * W + (W - 1 - w)]);
        // First-appearance numbering: orbit (c, h, w) for w < ceil(W/2).
        CHECK(id == row * ((W + 1) / 2) + std::min(w, W - 1 - w));
        ++size[id];
      }
    }
    for (std::int32_t k = 0; k < pat.num_classes; ++k) {
      const std::int64_t w = k % ((W + 1) / 2);
      CHECK(size[k] == (2 * w + 1 == W ? 1 : 2));
    }
  }
}

TEST_CASE("Flip-invariant layer stores each free weight once", "[nn][flip]") {
  // FIAN: conv5 output [256, 6, 6] (papers/000_* section 5.3), 64 outputs.
  FlipInvariantDense<float> fian(256, 6, 6, 64);
  CHECK(fian.NumOrbits() == 256 * 6 * 3);
  CHECK(fian.weight().shape() == Shape{64, 256 * 6 * 3});
  const std::vector<Parameter<float>> p = fian.Params();
  REQUIRE(p.size() == 2);
  CHECK(p[0].value.rows == 64);
  CHECK(p[0].value.cols == fian.NumOrbits());
  CHECK(p[0].name == "weight");
  CHECK(p[0].manifold->Dim() == fian.weight().size());
  CHECK(2 * p[0].value.size() == fian.in_features() * fian.out_features());
  CHECK(p[1].value.size() == 64);
  FlipInvariantDense<float> odd(2, 3, 5, 7, 0, /*bias=*/false);
  CHECK(odd.Params().size() == 1);
  CHECK(odd.weight().size() == 7 * 2 * 3 * 3);
}

TEMPLATE_TEST_CASE("Folded layer equals the dense layer with tied weights",
                   "[nn][flip]",
                   float,
                   double) {
  using T = TestType;
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  for (std::int64_t W : {4, 5}) {
    const std::int64_t N = 3, C = 2, H = 3, F = 6, D = C * H * W;
    FlipInvariantDense<T> layer(C, H, W, F, 61 + W);
    RandomizeBias(layer, 62);
    const Tensor<T> x = RandomTensor<T>({N, C, H, W}, 63);
    const Tensor<T> dy = RandomTensor<T>({N, F}, 64);
    std::vector<T> dense(F * D);
    layer.ExpandWeights(dense.data());
    // The expanded weights are flip invariant: W = W T.
    for (std::int64_t f = 0; f < F; ++f)
      for (std::int64_t i = 0; i < D; ++i)
        REQUIRE(dense[f * D + i] ==
                dense[f * D + (i / W) * W + (W - 1 - i % W)]);
    // Dense layer: y = x W^T + b; dW = dy^T x; dx = dy W; db = sum dy.
    Tensor<T> y_ref({N, F}), dx_ref({N, C, H, W});
    std::vector<double> dw_ref(F * D, 0.0), db_ref(F, 0.0);
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t f = 0; f < F; ++f) {
        double acc = layer.bias()[f];
        for (std::int64_t i = 0; i < D; ++i) {
          acc += double(dense[f * D + i]) * double(x[n * D + i]);
          dw_ref[f * D + i] += double(dy[n * F + f]) * double(x[n * D + i]);
        }
        y_ref[n * F + f] = T(acc);
        db_ref[f] += dy[n * F + f];
      }
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t i = 0; i < D; ++i) {
        double acc = 0.0;
        for (std::int64_t f = 0; f < F; ++f) {
          acc += double(dy[n * F + f]) * double(dense[f * D + i]);
        }
        dx_ref[n * D + i] = T(acc);
      }
    Tensor<T> y, dx;
    layer.ZeroGrad();
    layer.Forward(x, y, Mode::kTrain);
    layer.Backward(x, y, dy, dx);
    INFO(layer.Name());
    CHECK(MaxAbsDiff(y, y_ref) <= tol * MaxAbs(y_ref));
    CHECK(MaxAbsDiff(dx, dx_ref) <= tol * MaxAbs(dx_ref));
    // The gradient of a free weight is the sum of the dense gradient over its
    // orbit (shared metric).
    const TiePattern& pat = layer.pattern();
    const std::vector<Parameter<T>> params = layer.Params();
    std::vector<double> dtheta_ref(F * pat.num_classes, 0.0);
    for (std::int64_t f = 0; f < F; ++f)
      for (std::int64_t i = 0; i < D; ++i)
        dtheta_ref[f * pat.num_classes + pat.class_of[i]] += dw_ref[f * D + i];
    double err = 0.0, scale = 0.0;
    for (std::size_t j = 0; j < dtheta_ref.size(); ++j) {
      err = std::max(err,
                     std::abs(dtheta_ref[j] - double(params[0].grad.data[j])));
      scale = std::max(scale, std::abs(dtheta_ref[j]));
    }
    CHECK(err <= tol * scale);
    for (std::int64_t f = 0; f < F; ++f) {
      CHECK(std::abs(double(params[1].grad.data[f]) - db_ref[f]) <=
            tol * std::max(1.0, std::abs(db_ref[f])));
    }
  }
}

TEMPLATE_TEST_CASE("Flip-invariant layer ignores horizontal flips",
                   "[nn][flip][symmetry]",
                   float,
                   double) {
  using T = TestType;
  for (std::int64_t W : {6, 7}) {
    FlipInvariantDense<T> layer(4, 3, W, 9, 71);
    RandomizeBias(layer, 72);
    const Tensor<T> x = RandomTensor<T>({5, 4, 3, W}, 73);
    const Tensor<T> xt = Flip(x);
    REQUIRE(MaxAbsDiff(x, xt) > 0.5);
    Tensor<T> y, yt;
    layer.Forward(x, y, Mode::kEval);
    layer.Forward(xt, yt, Mode::kEval);
    // Folding computes x[w] + x[W-1-w] and x[W-1-w] + x[w]: IEEE addition is
    // commutative, so the outputs agree bit for bit, not just to rounding.
    CHECK(MaxAbsDiff(y, yt) == 0.0);
    CHECK(MaxAbs(y) > 0.1);
  }
}

TEST_CASE("Flip-invariant layer gradients match finite differences",
          "[nn][flip][gradient]") {
  for (std::int64_t W : {4, 3}) {
    FlipInvariantDense<double> layer(2, 2, W, 3, 81);
    RandomizeBias(layer, 82);
    CheckLayerGradients(layer, {2, 2, 2, W}, 83, 1e-6);
  }
  // As the first layer of a model nobody needs dx: it is skipped, the
  // parameter gradients are the same.
  FlipInvariantDense<double> layer(2, 2, 4, 3, 84);
  const Tensor<double> x = RandomTensor<double>({2, 2, 2, 4}, 85);
  const Tensor<double> dy = RandomTensor<double>({2, 3}, 86);
  Tensor<double> y, dx;
  layer.Forward(x, y, Mode::kTrain);
  layer.Backward(x, y, dy, dx);
  const std::vector<double> full(layer.Params()[0].grad.data,
                                 layer.Params()[0].grad.data + 24);
  layer.ZeroGrad();
  layer.set_input_grad_required(false);
  layer.Backward(x, y, dy, dx);
  CHECK(dx.size() == 0);
  for (int i = 0; i < 24; ++i) CHECK(layer.Params()[0].grad.data[i] == full[i]);
}

TEST_CASE("Flip-invariant layer rejects bad shapes with a clear message",
          "[nn][flip][errors]") {
  FlipInvariantDense<float> layer(2, 3, 4, 5);
  Tensor<float> y, dx;
  CheckThrowsNaming(
      [&] {
        layer.Forward(Tensor<float>({2, 2, 3, 5}), y, Mode::kTrain);
      },
      {"flip_invariant_dense([2, 3, 4]->5)", "[2, 2, 3, 5]", "[N, 2, 3, 4]"});
  const Tensor<float> x({2, 2, 3, 4});
  layer.Forward(x, y, Mode::kTrain);
  layer.ZeroGrad();
  CheckThrowsNaming(
      [&] {
        layer.Backward(x, y, Tensor<float>({2, 4}), dx);
      },
      {"flip_invariant_dense", "output gradient", "[2, 4]", "[2, 5]"});
  for (const Parameter<float>& p : layer.Params()) {
    for (std::int64_t i = 0; i < p.grad.size(); ++i)
      REQUIRE(p.grad.data[i] == 0.0f);
  }
  REQUIRE_THROWS_AS(FlipInvariantDense<float>(2, 0, 4, 5), InvalidArgument);
}
