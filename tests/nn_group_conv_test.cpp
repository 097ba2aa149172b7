// P4 group convolution, rotation pooling and P4 batch norm (issue 4).
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "catch.h"
#include "group_test_util.h"
#include "layer_checks.h"
#include "nn/group_conv.h"
#include "nn/layers.h"
#include "nn/pooling.h"
#include "nn/sequential.h"

using namespace symopt;
using namespace symopt::nn;
using namespace symopt::testing;

namespace {

// sigma(i, j) = (j, k-1-i): (R f)[q] = f[sigma(q)] turns a k x k grid 90
// degrees counter-clockwise. Written out here, independently of the library,
// as the oracle's closed form.
void Sigma(std::int64_t k, std::int64_t& i, std::int64_t& j) {
  const std::int64_t a = j, b = k - 1 - i;
  i = a;
  j = b;
}

// The P4 layer straight from its definition (Cohen & Welling):
//   y[n, co, r, u, v] = b[co] + sum_{ci, s, i, j} x[n, ci, s, u-p+i, v-p+j]
//                       * (R^r psi[co, ci, (s - r) mod S])[i][j],
// with psi = theta read as [out, in, S, k, k] and (R^r f)[q] = f[sigma^r q].
template <typename T>
Tensor<T> ReferenceP4Conv(P4Conv<T>& layer, const Tensor<T>& x) {
  const std::int64_t S = layer.input() == P4Input::kZ2 ? 1 : 4;
  const std::int64_t in = layer.in_channels(), out = layer.out_channels();
  const std::int64_t k = layer.kernel(), p = layer.padding();
  const std::int64_t N = x.dim(0), H = x.dim(x.ndim() - 2),
                     W = x.dim(x.ndim() - 1);
  const std::int64_t Ho = H + 2 * p - k + 1, Wo = W + 2 * p - k + 1;
  Tensor<T> y({N, out, 4, Ho, Wo});
  const T* theta = layer.weight().data();
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t co = 0; co < out; ++co)
      for (std::int64_t r = 0; r < 4; ++r)
        for (std::int64_t u = 0; u < Ho; ++u)
          for (std::int64_t v = 0; v < Wo; ++v) {
            double acc = layer.has_bias() ? double(layer.bias()[co]) : 0.0;
            for (std::int64_t ci = 0; ci < in; ++ci)
              for (std::int64_t s = 0; s < S; ++s)
                for (std::int64_t i = 0; i < k; ++i)
                  for (std::int64_t j = 0; j < k; ++j) {
                    const std::int64_t xi = u - p + i, xj = v - p + j;
                    if (xi < 0 || xi >= H || xj < 0 || xj >= W) continue;
                    std::int64_t a = i, b = j;
                    for (std::int64_t t = 0; t < r; ++t) Sigma(k, a, b);
                    const std::int64_t sf = ((s - r) % S + S) % S;
                    const double w =
                        theta[(((co * in + ci) * S + sf) * k + a) * k + b];
                    acc +=
                        w *
                        double(x[(((n * in + ci) * S + s) * H + xi) * W + xj]);
                  }
            y[(((n * out + co) * 4 + r) * Ho + u) * Wo + v] = T(acc);
          }
  return y;
}

template <typename T>
Tensor<T> Run(Layer<T>& layer, const Tensor<T>& x, Mode mode = Mode::kTrain) {
  Tensor<T> y;
  layer.Forward(x, y, mode);
  return y;
}

template <typename T>
void RandomizeBias(P4Conv<T>& layer, std::uint64_t seed) {
  const Tensor<T> b = RandomTensor<T>({layer.out_channels()}, seed, 0.0, 0.5);
  for (std::int64_t i = 0; i < b.size(); ++i) layer.bias()[i] = b[i];
}

}  // namespace

TEST_CASE("P4 filter pattern is the orbit structure of C4 on the bank",
          "[nn][p4]") {
  for (P4Input input : {P4Input::kZ2, P4Input::kP4}) {
    for (std::int64_t k : {1, 2, 3, 4}) {
      const std::int64_t in = 2, out = 3, S = input == P4Input::kZ2 ? 1 : 4;
      const TiePattern pat = P4FilterPattern(input, in, out, k);
      INFO("S=" << S << " k=" << k);
      const std::int64_t cols = in * S * k * k;
      REQUIRE(pat.rows == out * 4);
      REQUIRE(pat.cols == cols);
      REQUIRE(pat.num_classes == out * cols);
      REQUIRE(std::int64_t(pat.class_of.size()) == pat.rows * pat.cols);
      // Every class has exactly 4 members, one in each output rotation, and
      // every bank row (co, r) is a permutation of theta row co.
      std::vector<int> count(pat.num_classes, 0);
      for (std::int64_t row = 0; row < pat.rows; ++row) {
        std::vector<int> seen(cols, 0);
        for (std::int64_t c = 0; c < cols; ++c) {
          const std::int32_t id = pat.class_of[row * cols + c];
          REQUIRE(id / cols == row / 4);
          ++seen[id % cols];
          ++count[id];
        }
        for (int v : seen) CHECK(v == 1);
      }
      for (int v : count) CHECK(v == 4);
      // The closed form B[r, s][q] = theta[(s - r) mod S][sigma^r q].
      bool closed_form = true;
      for (std::int64_t co = 0; co < out; ++co)
        for (std::int64_t r = 0; r < 4; ++r)
          for (std::int64_t ci = 0; ci < in; ++ci)
            for (std::int64_t s = 0; s < S; ++s)
              for (std::int64_t i = 0; i < k; ++i)
                for (std::int64_t j = 0; j < k; ++j) {
                  std::int64_t a = i, b = j;
                  for (std::int64_t t = 0; t < r; ++t) Sigma(k, a, b);
                  const std::int64_t sf = ((s - r) % S + S) % S;
                  const std::int64_t expect =
                      co * cols + ((ci * S + sf) * k + a) * k + b;
                  const std::int64_t e =
                      (co * 4 + r) * cols + ((ci * S + s) * k + i) * k + j;
                  closed_form = closed_form && pat.class_of[e] == expect;
                }
      CHECK(closed_form);
    }
  }
}

TEST_CASE("ActP4 is the C4 action on P4 feature maps", "[nn][p4]") {
  const Tensor<double> x = RandomTensor<double>({2, 3, 4, 5, 5}, 1);
  const Tensor<double> gx = ActP4(x);
  // (g f)[n, c, r][i][j] = f[n, c, r-1][j][4-i].
  for (std::int64_t nc = 0; nc < 6; ++nc)
    for (std::int64_t r = 0; r < 4; ++r)
      for (std::int64_t i = 0; i < 5; ++i)
        for (std::int64_t j = 0; j < 5; ++j)
          REQUIRE(gx[((nc * 4 + r) * 5 + i) * 5 + j] ==
                  x[((nc * 4 + (r + 3) % 4) * 5 + j) * 5 + (4 - i)]);
  CHECK(MaxAbsDiff(ActP4(gx, 3), x) == 0.0);
  CHECK(MaxAbsDiff(ActP4(x, -1), ActP4(x, 3)) == 0.0);
  CHECK(MaxAbsDiff(ActP4(x, 2), ActP4(gx)) == 0.0);
  CHECK(MaxAbsDiff(ActP4(x, 4), x) == 0.0);
  REQUIRE_THROWS_AS(ActP4(Tensor<double>({1, 1, 4, 3, 4})), InvalidArgument);
}

TEST_CASE("P4 layers store each free weight once", "[nn][p4]") {
  // P4CNN on rotated MNIST (papers/002_*): 10 P4 channels, 3x3 filters.
  P4Conv<float> lift(P4Input::kZ2, 1, 10, 3);
  P4Conv<float> conv(P4Input::kP4, 10, 10, 3);
  CHECK(lift.weight().shape() == Shape{10, 1, 3, 3});
  CHECK(conv.weight().shape() == Shape{10, 10, 4, 3, 3});
  for (P4Conv<float>* layer : {&lift, &conv}) {
    const std::vector<Parameter<float>> p = layer->Params();
    REQUIRE(p.size() == 2);
    CHECK(p[0].name == "weight");
    CHECK(p[0].value.size() == layer->pattern().num_classes);
    CHECK(p[0].value.rows == layer->out_channels());
    CHECK(p[0].manifold->Dim() == layer->pattern().num_classes);
    CHECK(p[1].name == "bias");
    CHECK(p[1].value.size() == layer->out_channels());
    // The bank it stands for is 4x larger than what is stored.
    CHECK(std::int64_t(layer->pattern().class_of.size()) ==
          4 * layer->weight().size());
  }
  CHECK(lift.weight().size() == 10 * 9);
  CHECK(conv.weight().size() == 10 * 10 * 4 * 9);
  P4Conv<float> no_bias(P4Input::kP4, 2, 3, 3, 0, 0, /*bias=*/false);
  CHECK(no_bias.Params().size() == 1);
  CHECK(no_bias.Name() == "p4_conv(2->3, k3, p0, no bias)");
}

TEST_CASE("P4 layers compute the group correlation of their definition",
          "[nn][p4]") {
  struct Case {
    P4Input input;
    std::int64_t in, out, k, pad, h, w;
  };
  const std::vector<Case> cases = {{P4Input::kZ2, 2, 3, 3, 0, 7, 6},
                                   {P4Input::kZ2, 1, 2, 3, 1, 5, 5},
                                   {P4Input::kP4, 2, 3, 3, 1, 6, 5},
                                   {P4Input::kP4, 3, 2, 2, 0, 5, 5}};
  std::uint64_t seed = 10;
  for (const Case& c : cases) {
    P4Conv<double> layer(c.input, c.in, c.out, c.k, c.pad, seed++);
    RandomizeBias(layer, seed++);
    const Shape xs = c.input == P4Input::kZ2 ? Shape{2, c.in, c.h, c.w}
                                             : Shape{2, c.in, 4, c.h, c.w};
    const Tensor<double> x = RandomTensor<double>(xs, seed++);
    const Tensor<double> y = Run(layer, x);
    const Tensor<double> ref = ReferenceP4Conv(layer, x);
    INFO(layer.Name());
    CHECK(MaxAbsDiff(y, ref) <= 1e-12 * std::max(1.0, MaxAbs(ref)));
    // ExpandFilters gives the bank; its rotation-0 rows are theta itself.
    std::vector<double> bank(4 * layer.weight().size());
    layer.ExpandFilters(bank.data());
    const std::int64_t cols = layer.weight().size() / c.out;
    for (std::int64_t co = 0; co < c.out; ++co)
      for (std::int64_t j = 0; j < cols; ++j)
        REQUIRE(bank[co * 4 * cols + j] == layer.weight()[co * cols + j]);
  }
}

TEMPLATE_TEST_CASE("P4 layers commute with 90-degree rotations",
                   "[nn][p4][symmetry]",
                   float,
                   double) {
  using T = TestType;
  // Float rounding: the rotated input sums the same products in another order.
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
  SECTION("lifting layer: lift(R x) = g lift(x)") {
    for (std::int64_t pad : {0, 1}) {
      for (std::int64_t k : {2, 3}) {
        P4Conv<T> lift(P4Input::kZ2, 3, 4, k, pad, 3 + k);
        RandomizeBias(lift, 4);
        const Tensor<T> x = RandomTensor<T>({2, 3, 9, 9}, 5);
        const Tensor<T> y = Run(lift, x);
        const Tensor<T> gy = ActP4(y);
        const Tensor<T> y_rx = Run(lift, Rotate(x));
        INFO(lift.Name());
        CHECK(MaxAbsDiff(y_rx, gy) <= tol * MaxAbs(gy));
        // Not trivially true: the output does change under the rotation.
        CHECK(MaxAbsDiff(y_rx, y) > 0.1 * MaxAbs(y));
      }
    }
  }
  SECTION("group layer: conv(g x) = g conv(x), g of order 4") {
    for (std::int64_t pad : {0, 1}) {
      for (std::int64_t k : {2, 3}) {
        P4Conv<T> conv(P4Input::kP4, 3, 2, k, pad, 7 + k);
        RandomizeBias(conv, 8);
        Tensor<T> x = RandomTensor<T>({2, 3, 4, 8, 8}, 9);
        Tensor<T> y = Run(conv, x);
        for (int power = 1; power <= 4; ++power) {
          x = ActP4(x);
          y = ActP4(y);
          INFO(conv.Name() << " g^" << power);
          CHECK(MaxAbsDiff(Run(conv, x), y) <= tol * MaxAbs(y));
        }
      }
    }
  }
  SECTION("P4 batch norm: bn(g x) = g bn(x)") {
    P4BatchNorm<T> bn(3);
    const Tensor<T> g = RandomTensor<T>({3}, 11);
    for (int c = 0; c < 3; ++c) {
      bn.batch_norm().scale()[c] = g[c];
      bn.batch_norm().shift()[c] = T(0.1 * c);
    }
    const Tensor<T> x = RandomTensor<T>({2, 3, 4, 6, 6}, 12, 0.0, 2.0);
    const Tensor<T> gy = ActP4(Run(bn, x));
    CHECK(MaxAbsDiff(Run(bn, ActP4(x)), gy) <= tol * MaxAbs(gy));
  }
}

TEMPLATE_TEST_CASE("Rotation pooling makes a small P4 network invariant",
                   "[nn][p4][symmetry]",
                   float,
                   double) {
  using T = TestType;
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  for (RotationPoolKind kind :
       {RotationPoolKind::kMax, RotationPoolKind::kMean}) {
    // lift -> P4 batch norm -> ReLU -> P4 conv -> rotation pool -> global
    // average -> flatten -> linear.
    Sequential<T> net;
    auto& lift = net.template Emplace<P4Conv<T>>(P4Input::kZ2, 1, 4, 3, 1, 21);
    net.template Emplace<P4BatchNorm<T>>(4);
    net.template Emplace<ReLU<T>>();
    auto& conv = net.template Emplace<P4Conv<T>>(P4Input::kP4, 4, 5, 3, 0, 22);
    net.template Emplace<RotationPool<T>>(kind);
    net.template Emplace<AvgPool2d<T>>(9);
    net.template Emplace<Flatten<T>>();
    net.template Emplace<Linear<T>>(5, 3, 23);
    RandomizeBias(lift, 24);
    RandomizeBias(conv, 25);
    Tensor<T> x = RandomTensor<T>({3, 1, 11, 11}, 26);
    const Tensor<T> out = net.Forward(x, Mode::kTrain);
    REQUIRE(out.shape() == Shape{3, 3});
    const Tensor<T> p4_map =
        Run(conv, Run(net.layer(2), Run(net.layer(1), Run(lift, x))));
    INFO(net.layer(4).Name());
    for (int power = 1; power <= 3; ++power) {
      x = Rotate(x);
      CHECK(MaxAbsDiff(net.Forward(x, Mode::kTrain), out) <= tol * MaxAbs(out));
      // Before pooling over rotations the map is equivariant, not invariant.
      const Tensor<T> rotated_map =
          Run(conv, Run(net.layer(2), Run(net.layer(1), Run(lift, x))));
      CHECK(MaxAbsDiff(rotated_map, p4_map) > 0.1 * MaxAbs(p4_map));
    }
  }
}

TEST_CASE("P4 layer gradients match finite differences", "[nn][p4][gradient]") {
  const double tol = 1e-6;
  SECTION("lifting layer") {
    P4Conv<double> lift(P4Input::kZ2, 2, 2, 3, 1, 31);
    RandomizeBias(lift, 32);
    CheckLayerGradients(lift, {2, 2, 5, 4}, 33, tol);
  }
  SECTION("group layer, k3 p0") {
    P4Conv<double> conv(P4Input::kP4, 2, 2, 3, 0, 35);
    CheckLayerGradients(conv, {2, 2, 4, 4, 5}, 36, tol);
  }
  SECTION("group layer, k2 p1, no bias") {
    P4Conv<double> conv(P4Input::kP4, 1, 2, 2, 1, 38, false);
    CheckLayerGradients(conv, {2, 1, 4, 3, 3}, 39, tol);
  }
  SECTION("rotation pooling, max and mean") {
    RotationPool<double> max_pool(RotationPoolKind::kMax);
    CheckLayerGradients(max_pool, {2, 3, 4, 3, 3}, 41, tol);
    RotationPool<double> mean_pool(RotationPoolKind::kMean);
    CheckLayerGradients(mean_pool, {2, 3, 4, 3, 3}, 42, tol);
  }
  SECTION("P4 batch norm, train and eval") {
    for (Mode mode : {Mode::kTrain, Mode::kEval}) {
      P4BatchNorm<double> bn(2);
      bn.batch_norm().scale()[0] = 1.5;
      bn.batch_norm().scale()[1] = -0.7;
      bn.batch_norm().shift()[1] = 0.3;
      Tensor<double> y;  // running statistics away from 0 / 1
      bn.Forward(
          RandomTensor<double>({2, 2, 4, 3, 3}, 43, 0.0, 2.0), y, Mode::kTrain);
      LayerCheckOptions options;
      options.mode = mode;
      CheckLayerGradients(bn, {2, 2, 4, 3, 3}, 44, tol, options);
    }
  }
  SECTION("a small P4 network end to end") {
    Sequential<double> net;
    net.Emplace<P4Conv<double>>(P4Input::kZ2, 1, 2, 3, 1, 45);
    net.Emplace<P4BatchNorm<double>>(2);
    net.Emplace<ReLU<double>>();
    net.Emplace<P4Conv<double>>(P4Input::kP4, 2, 2, 2, 0, 46);
    net.Emplace<RotationPool<double>>();
    CheckLayerGradients(net, {2, 1, 4, 4}, 47, tol);
  }
}

TEST_CASE("P4 batch norm shares one statistic per group channel", "[nn][p4]") {
  P4BatchNorm<double> bn(2, /*momentum=*/0.5);
  CHECK(bn.NormalizesInputChannels());
  Tensor<double> x = RandomTensor<double>({3, 2, 4, 2, 2}, 51);
  // Channel 1, rotation 2 gets a large offset: it moves the channel's shared
  // mean, so every rotation of channel 1 is shifted, not just rotation 2.
  for (std::int64_t n = 0; n < 3; ++n)
    for (std::int64_t i = 0; i < 4; ++i)
      x[((n * 2 + 1) * 4 + 2) * 4 + i] += 8.0;
  const Tensor<double> y = Run(bn, x);
  for (std::int64_t c = 0; c < 2; ++c) {
    double sum = 0.0, sq = 0.0, xsum = 0.0;
    for (std::int64_t n = 0; n < 3; ++n)
      for (std::int64_t i = 0; i < 16; ++i) {
        const std::int64_t e = (n * 2 + c) * 16 + i;
        sum += y[e];
        sq += y[e] * y[e];
        xsum += x[e];
      }
    CHECK(std::abs(sum / 48) < 1e-12);
    CHECK(std::abs(sq / 48 - 1.0) < 1e-3);  // eps = 1e-5
    CHECK(std::abs(bn.batch_norm().running_mean()[c] - 0.5 * xsum / 48) <
          1e-12);
  }
  // Rotation 0 of channel 1 sits below the shared mean.
  double r0 = 0.0;
  for (std::int64_t n = 0; n < 3; ++n)
    for (std::int64_t i = 0; i < 4; ++i) r0 += y[((n * 2 + 1) * 4 + 0) * 4 + i];
  CHECK(r0 / 12 < -0.4);
}

TEST_CASE("Oblique P4 filters are unit-norm expanded filters", "[nn][p4]") {
  // A P4 conv followed by P4 batch norm: Sequential puts theta on the oblique
  // manifold, and every row of the expanded bank (a permutation of a theta
  // row) then has unit norm too.
  Sequential<double> net;
  auto& lift = net.Emplace<P4Conv<double>>(P4Input::kZ2, 2, 3, 3, 0, 61);
  net.Emplace<P4BatchNorm<double>>(3);
  auto& conv = net.Emplace<P4Conv<double>>(P4Input::kP4, 3, 2, 3, 0, 62);
  net.Emplace<RotationPool<double>>();
  const std::vector<std::string> assigned = UseObliqueBeforeNormalization(net);
  REQUIRE(assigned == std::vector<std::string>{"0.p4_lift.weight"});
  std::vector<double> bank(4 * lift.weight().size());
  lift.ExpandFilters(bank.data());
  const std::int64_t cols = lift.weight().size() / 3;
  for (std::int64_t row = 0; row < 12; ++row) {
    double sq = 0.0;
    for (std::int64_t j = 0; j < cols; ++j)
      sq += bank[row * cols + j] * bank[row * cols + j];
    CHECK(std::abs(sq - 1.0) < 1e-12);
  }
  // The conv not followed by batch norm keeps its Euclidean weights.
  for (const Parameter<double>& p : net.Params()) {
    if (p.name == "2.p4_conv.weight") CHECK(p.manifold->Name() == "euclidean");
  }
  CHECK(conv.weight().size() == 2 * 3 * 4 * 9);
}

TEST_CASE("Group layers reject bad shapes with a clear message",
          "[nn][p4][errors]") {
  P4Conv<float> lift(P4Input::kZ2, 2, 3, 3);
  P4Conv<float> conv(P4Input::kP4, 3, 3, 3);
  Tensor<float> y, dx;
  CheckThrowsNaming(
      [&] {
        lift.Forward(Tensor<float>({2, 3, 8, 8}), y, Mode::kTrain);
      },
      {"p4_lift(2->3, k3, p0)", "[2, 3, 8, 8]", "[N, 2, *, *]"});
  CheckThrowsNaming(
      [&] {
        conv.Forward(Tensor<float>({2, 3, 8, 8}), y, Mode::kTrain);
      },
      {"p4_conv(3->3, k3, p0)", "[2, 3, 8, 8]", "[N, 3, 4, *, *]"});
  CheckThrowsNaming(
      [&] {
        lift.Forward(Tensor<float>({1, 2, 2, 2}), y, Mode::kTrain);
      },
      {"p4_lift", "smaller than the kernel"});
  // Backward checks the output gradient's shape and leaves the gradients alone.
  const Tensor<float> x({1, 3, 4, 5, 5});
  conv.Forward(x, y, Mode::kTrain);
  conv.ZeroGrad();
  CheckThrowsNaming(
      [&] {
        conv.Backward(x, y, Tensor<float>({1, 3, 4, 2, 2}), dx);
      },
      {"p4_conv", "output gradient", "[1, 3, 4, 2, 2]", "[1, 3, 4, 3, 3]"});
  for (const Parameter<float>& p : conv.Params()) {
    for (std::int64_t i = 0; i < p.grad.size(); ++i)
      REQUIRE(p.grad.data[i] == 0.0f);
  }
  RotationPool<float> pool;
  CheckThrowsNaming(
      [&] {
        pool.Forward(Tensor<float>({1, 3, 5, 5}), y, Mode::kTrain);
      },
      {"rotation_pool(max)", "[1, 3, 5, 5]", "[N, *, 4, *, *]"});
  P4BatchNorm<float> bn(3);
  CheckThrowsNaming(
      [&] {
        bn.Forward(Tensor<float>({1, 2, 4, 5, 5}), y, Mode::kTrain);
      },
      {"p4_batchnorm(3)", "[1, 2, 4, 5, 5]", "[N, 3, 4, *, *]"});
  REQUIRE_THROWS_AS(bn.Forward(Tensor<float>({1, 3, 5, 5}), y, Mode::kTrain),
                    InvalidArgument);
  REQUIRE_THROWS_AS(P4Conv<float>(P4Input::kP4, 0, 3, 3), InvalidArgument);
  REQUIRE_THROWS_AS(P4Conv<float>(P4Input::kP4, 1, 3, 3, -1), InvalidArgument);
}
