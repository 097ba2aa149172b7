// Conv2d: values against a direct 7-loop convolution, gradients through the
// generic CheckLayerGradients (stride, padding, several channels), thread
// independence, shape errors.
#include "catch.h"
#include "layer_checks.h"
#include "manifolds/parallel.h"
#include "nn/conv2d.h"

using namespace symopt;
using namespace symopt::nn;
using symopt::testing::CheckLayerGradients;
using symopt::testing::CheckThrowsNaming;
using symopt::testing::RandomTensor;

namespace {

// Direct definition: y[n,o,i,j] = b[o] + sum W[o,c,u,v] x[n,c,i*s-p+u,j*s-p+v].
Tensor<double> DirectConv(Conv2d<double>& conv,
                          const Tensor<double>& x,
                          std::int64_t k,
                          std::int64_t s,
                          std::int64_t p) {
  const Shape ys = conv.OutputShape(x.shape());
  Tensor<double> y(ys);
  const std::int64_t cin = x.dim(1), h = x.dim(2), w = x.dim(3);
  for (std::int64_t n = 0; n < ys[0]; ++n)
    for (std::int64_t o = 0; o < ys[1]; ++o)
      for (std::int64_t i = 0; i < ys[2]; ++i)
        for (std::int64_t j = 0; j < ys[3]; ++j) {
          double acc = conv.bias()[o];
          for (std::int64_t c = 0; c < cin; ++c)
            for (std::int64_t u = 0; u < k; ++u)
              for (std::int64_t v = 0; v < k; ++v) {
                const std::int64_t r = i * s - p + u, q = j * s - p + v;
                if (r < 0 || r >= h || q < 0 || q >= w) continue;
                acc += conv.weight()[((o * cin + c) * k + u) * k + v] *
                       x[((n * cin + c) * h + r) * w + q];
              }
          y[((n * ys[1] + o) * ys[2] + i) * ys[3] + j] = acc;
        }
  return y;
}

}  // namespace

TEST_CASE("Conv2d matches the direct definition", "[nn][conv2d]") {
  struct Case {
    std::int64_t cin, cout, k, s, p, h, w;
  };
  for (const Case& c : {Case{1, 3, 3, 1, 0, 6, 5},
                        Case{2, 4, 3, 2, 1, 7, 7},
                        Case{3, 2, 5, 1, 2, 5, 6},
                        Case{2, 2, 1, 3, 0, 7, 4}}) {
    Conv2d<double> conv(c.cin, c.cout, c.k, c.s, c.p, 17);
    const Tensor<double> x = RandomTensor({3, c.cin, c.h, c.w}, 3);
    Tensor<double> y;
    conv.Forward(x, y, Mode::kTrain);
    const Tensor<double> ref = DirectConv(conv, x, c.k, c.s, c.p);
    REQUIRE(y.shape() == ref.shape());
    for (std::int64_t i = 0; i < y.size(); ++i)
      CHECK(y[i] == Approx(ref[i]).epsilon(1e-12));
  }
}

TEST_CASE("Conv2d gradients", "[nn][conv2d][gradient]") {
  Conv2d<double> plain(2, 3, 3, 1, 0, 5);
  CheckLayerGradients(plain, {2, 2, 5, 6}, 31, 1e-7);
  Conv2d<double> strided(3, 2, 3, 2, 1, 6);
  CheckLayerGradients(strided, {2, 3, 7, 6}, 32, 1e-7);
  Conv2d<double> no_bias(1, 4, 5, 1, 2, 7, /*bias=*/false);
  CheckLayerGradients(no_bias, {3, 1, 6, 6}, 33, 1e-7);
}

TEST_CASE("Conv2d weight is viewed as one row per filter", "[nn][conv2d]") {
  Conv2d<float> conv(3, 8, 5);
  const auto p = conv.Params();
  REQUIRE(p.size() == 2);
  CHECK(p[0].name == "weight");
  CHECK(p[0].value.rows == 8);
  CHECK(p[0].value.cols == 3 * 5 * 5);
  CHECK(conv.Name() == "conv2d(3->8, k5, s1, p0)");
}

TEST_CASE("Conv2d results do not depend on the thread count", "[nn][conv2d]") {
  // Large enough (3.7 MFLOP) for Conv2d to use several threads.
  const Tensor<double> x = RandomTensor({5, 8, 20, 20}, 8);
  const Tensor<double> dy = RandomTensor({5, 16, 20, 20}, 9);
  std::vector<std::vector<double>> grads;
  for (int threads : {1, 2}) {
    SetNumThreads(threads);
    Conv2d<double> conv(8, 16, 3, 1, 1, 4);
    Tensor<double> y, dx;
    conv.Forward(x, y, Mode::kTrain);
    conv.Backward(x, y, dy, dx);
    std::vector<double> all(y.data(), y.data() + y.size());
    all.insert(all.end(), dx.data(), dx.data() + dx.size());
    for (const auto& p : conv.Params())
      all.insert(all.end(), p.grad.data, p.grad.data + p.grad.size());
    grads.push_back(all);
  }
  REQUIRE(grads[0].size() == grads[1].size());
  double worst = 0;
  for (size_t i = 0; i < grads[0].size(); ++i) {
    worst = std::max(
        worst,
        std::abs(grads[0][i] - grads[1][i]) / (1 + std::abs(grads[0][i])));
  }
  CHECK(worst < 1e-12);
}

TEST_CASE("Conv2d rejects bad shapes and arguments", "[nn][conv2d][errors]") {
  Conv2d<float> conv(3, 8, 5);
  Tensor<float> y;
  CheckThrowsNaming(
      [&] {
        conv.Forward(Tensor<float>({2, 1, 28, 28}), y, Mode::kTrain);
      },
      {"conv2d(3->8, k5, s1, p0)", "[2, 1, 28, 28]", "[N, 3, *, *]"});
  REQUIRE_THROWS_AS(conv.Forward(Tensor<float>({2, 3, 4, 4}), y, Mode::kTrain),
                    InvalidArgument);
  REQUIRE_THROWS_AS(Conv2d<float>(3, 8, 3, 0), InvalidArgument);
  REQUIRE_THROWS_AS(Conv2d<float>(3, 8, 3, 1, -1), InvalidArgument);
}
