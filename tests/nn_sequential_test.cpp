// Sequential: whole-model gradients through CheckLayerGradients (MLP with
// batch norm, a small CNN, nesting), the parameter registry and its manifold
// assignment, shape errors naming the layer.
#include "catch.h"
#include "layer_checks.h"
#include "manifolds/euclidean.h"
#include "nn/conv2d.h"
#include "nn/layers.h"
#include "nn/loss.h"
#include "nn/normalization.h"
#include "nn/pooling.h"
#include "nn/sequential.h"

using namespace symopt;
using namespace symopt::nn;
using symopt::testing::CheckLayerGradients;
using symopt::testing::CheckThrowsNaming;
using symopt::testing::LayerCheckOptions;

namespace {

template <typename T>
void BuildMlp(Sequential<T>& model) {
  model.template Emplace<Linear<T>>(6, 5, 1);
  model.template Emplace<BatchNorm<T>>(5);
  model.template Emplace<ReLU<T>>();
  model.template Emplace<Linear<T>>(5, 3, 2);
}

void BuildCnn(Sequential<double>& model) {
  model.Emplace<Conv2d<double>>(2, 3, 3, 1, 1, 3);
  model.Emplace<BatchNorm<double>>(3);
  model.Emplace<ReLU<double>>();
  model.Emplace<MaxPool2d<double>>(2);
  model.Emplace<Conv2d<double>>(3, 2, 3, 1, 0, 4);
  model.Emplace<Tanh<double>>();
  model.Emplace<Flatten<double>>();
  model.Emplace<Linear<double>>(2, 4, 5);
}

}  // namespace

TEST_CASE("Sequential gradients (MLP with batch norm, CNN, nested)",
          "[nn][sequential][gradient]") {
  Sequential<double> mlp;
  BuildMlp(mlp);
  CheckLayerGradients(mlp, {7, 6}, 61, 1e-6);
  LayerCheckOptions eval;
  eval.mode = Mode::kEval;
  CheckLayerGradients(mlp, {7, 6}, 62, 1e-6, eval);

  Sequential<double> cnn;
  BuildCnn(cnn);
  CHECK(cnn.OutputShape({3, 2, 6, 6}) == Shape{3, 4});
  CheckLayerGradients(cnn, {3, 2, 6, 6}, 63, 1e-6);

  Sequential<double> outer;
  outer.Emplace<Linear<double>>(4, 6, 6);
  auto& inner = outer.Emplace<Sequential<double>>();
  BuildMlp(inner);
  CheckLayerGradients(outer, {5, 4}, 64, 1e-6);
  CHECK(outer.Params()[2].name == "1.sequential.0.linear.weight");
}

TEST_CASE("Sequential backward matches the loss gradient end to end",
          "[nn][sequential]") {
  // d loss / d w from Backward(dloss/dy) vs central differences of the loss.
  Sequential<double> model;
  BuildMlp(model);
  Tensor<double> x({8, 6});
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal;
  for (std::int64_t i = 0; i < x.size(); ++i) x[i] = normal(rng);
  const std::vector<std::int32_t> labels{0, 1, 2, 0, 1, 2, 2, 1};
  auto loss = [&] {
    return SoftmaxCrossEntropy(model.Forward(x, Mode::kTrain), labels);
  };
  model.ZeroGrad();
  Tensor<double> dlogits;
  SoftmaxCrossEntropy(model.Forward(x, Mode::kTrain), labels, &dlogits);
  model.Backward(dlogits);
  for (Parameter<double>& p : model.Params()) {
    for (std::int64_t i = 0; i < p.value.size(); i += 3) {
      const double w0 = p.value.data[i], h = 1e-6;
      p.value.data[i] = w0 + h;
      const double fp = loss();
      p.value.data[i] = w0 - h;
      const double fm = loss();
      p.value.data[i] = w0;
      INFO(p.name << "[" << i << "]");
      CHECK(p.grad.data[i] == Approx((fp - fm) / (2 * h)).margin(1e-8));
    }
  }
}

TEST_CASE("The parameter registry names every parameter and its manifold",
          "[nn][sequential]") {
  Sequential<float> model;
  BuildMlp(model);
  const std::vector<Parameter<float>> p = model.Params();
  std::vector<std::string> names;
  for (const auto& q : p) names.push_back(q.name);
  CHECK(names == std::vector<std::string>{"0.linear.weight",
                                          "0.linear.bias",
                                          "1.batchnorm.scale",
                                          "1.batchnorm.shift",
                                          "3.linear.weight",
                                          "3.linear.bias"});
  for (const auto& q : p) CHECK(q.manifold->Name() == "euclidean");
  CHECK(model.NumParameters() == 6 * 5 + 5 + 5 + 5 + 5 * 3 + 3);

  // The weights feeding a batch norm are found and reassigned.
  std::vector<std::pair<std::int64_t, std::int64_t>> made;
  const auto assigned = model.AssignManifoldsBeforeNormalization(
      [&](std::int64_t rows,
          std::int64_t cols) -> std::shared_ptr<const Manifold<float>> {
        made.emplace_back(rows, cols);
        return std::make_shared<Euclidean<float>>(rows, cols);
      });
  CHECK(assigned == std::vector<std::string>{"0.linear.weight"});
  REQUIRE(made.size() == 1);
  CHECK(made[0] == std::make_pair<std::int64_t, std::int64_t>(5, 6));

  auto custom = std::make_shared<Euclidean<float>>(3, 5);
  model.SetManifold("3.linear.weight", custom);
  CHECK(model.Params()[4].manifold == custom);
  REQUIRE_THROWS_AS(model.SetManifold("3.linear.bias", custom),
                    InvalidArgument);
  REQUIRE_THROWS_AS(model.SetManifold("9.linear.weight", custom),
                    InvalidArgument);
}

TEST_CASE("Weights feeding batch norm go on the oblique manifold",
          "[nn][sequential]") {
  Sequential<double> model;
  model.Emplace<Conv2d<double>>(1, 4, 3, 1, 1, 1);
  model.Emplace<BatchNorm<double>>(4);
  model.Emplace<ReLU<double>>();
  model.Emplace<Flatten<double>>();
  model.Emplace<Linear<double>>(4 * 5 * 5, 6, 2);
  model.Emplace<BatchNorm<double>>(6);
  model.Emplace<Linear<double>>(6, 3, 3);
  const auto names = UseObliqueBeforeNormalization(model);
  CHECK(names ==
        std::vector<std::string>{"0.conv2d.weight", "4.linear.weight"});
  for (const Parameter<double>& p : model.Params()) {
    const bool oblique =
        p.name == "0.conv2d.weight" || p.name == "4.linear.weight";
    INFO(p.name);
    CHECK(p.manifold->Name() == (oblique ? "oblique" : "euclidean"));
    if (!oblique) continue;
    CHECK(p.manifold->DistanceToManifold(p.value) < 1e-14);
    for (std::int64_t r = 0; r < p.value.rows; ++r) {
      double s = 0;
      for (std::int64_t c = 0; c < p.value.cols; ++c)
        s += p.value.data[r * p.value.cols + c] *
             p.value.data[r * p.value.cols + c];
      CHECK(s == Approx(1.0).epsilon(1e-14));
    }
  }
  // Calling it again finds nothing left to assign.
  CHECK(UseObliqueBeforeNormalization(model).empty());
  // The model still differentiates correctly with unit-norm filters.
  CheckLayerGradients(model, {3, 1, 5, 5}, 65, 1e-6);
}

TEST_CASE("Sequential skips the input gradient of its first layer",
          "[nn][sequential]") {
  Sequential<float> model;
  BuildMlp(model);
  Tensor<float> x({4, 6}, 0.5f);
  x[3] = -1.f;
  x[9] = 2.f;
  const Tensor<float>& y = model.Forward(x, Mode::kTrain);
  Tensor<float> dy(y.shape(), 1.f), dx;
  dy[0] = -2.f;
  model.Backward(dy);
  const std::vector<float> g1(model.Params()[0].grad.data,
                              model.Params()[0].grad.data + 30);
  model.ZeroGrad();
  model.Forward(x, Mode::kTrain);
  model.Backward(dy, &dx);
  CHECK(dx.shape() == x.shape());
  for (int i = 0; i < 30; ++i) CHECK(model.Params()[0].grad.data[i] == g1[i]);
}

TEST_CASE("A shape error names the layer's index, name and both shapes",
          "[nn][sequential][errors]") {
  Sequential<float> model;
  model.Emplace<Linear<float>>(784, 256);
  model.Emplace<BatchNorm<float>>(256);
  model.Emplace<ReLU<float>>();
  model.Emplace<Linear<float>>(128, 10);
  CheckThrowsNaming(
      [&] {
        model.Forward(Tensor<float>({2, 784}), Mode::kTrain);
      },
      {"layer 3", "linear(128->10)", "[2, 256]", "[N, 128]"});
  // Nothing ran: the batch norm statistics are untouched.
  auto& bn = dynamic_cast<BatchNorm<float>&>(model.layer(1));
  CHECK(bn.running_mean()[0] == 0.f);
  REQUIRE_THROWS_AS(model.Backward(Tensor<float>({2, 10})), InvalidArgument);
}
