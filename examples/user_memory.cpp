// Plugging symopt's optimizers into your own C++ network.
//
// The network below is hand-written and owns all of its memory (plain
// std::vector buffers and Eigen objects); symopt never copies it. To train it
// with Riemannian SGD you describe each weight block to symopt once, as a
// Parameter: a pointer to the values, a pointer to the gradient, a shape and
// the manifold the block lives on. After every backward pass, Step() updates
// the weights in place.
//
// The model: binary logistic regression on top of one hidden ReLU layer,
//   h = relu(gain .* (W1 x) + b1),   p = sigmoid(w2 . h + b2),
// where the rows of W1 (the hidden units' filters) are unit-norm (the Oblique
// manifold, as in Badrinarayanan et al., paper 001) and the per-unit gain,
// b1, w2 and b2 are Euclidean. The data are synthetic: labels from a random
// "teacher" network of the same shape.
//
// Run: ./build/examples/user_memory   (prints the loss per epoch; exits 1 if
// training did not reduce it).
#include <Eigen/Core>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "manifolds/euclidean.h"
#include "manifolds/oblique.h"
#include "optim/bold_driver.h"
#include "optim/eigen.h"
#include "optim/sgd.h"

namespace {

constexpr int kInputs = 10;
constexpr int kHidden = 16;
constexpr int kSamples = 1024;
constexpr int kBatch = 64;

using Matrix = symopt::RowMajorMatrix<float>;
using Vector = Eigen::VectorXf;

// The user's network: its own memory, its own forward and backward passes.
struct Net {
  std::vector<float> w1, w1_grad;  // kHidden x kInputs, row-major, raw buffers
  Vector gain, gain_grad;          // kHidden
  Vector b1, b1_grad;              // kHidden
  Vector w2, w2_grad;              // kHidden
  float b2 = 0.0f, b2_grad = 0.0f;

  Net()
      : w1(kHidden * kInputs),
        w1_grad(kHidden * kInputs),
        gain(Vector::Ones(kHidden)),
        gain_grad(Vector::Zero(kHidden)),
        b1(Vector::Zero(kHidden)),
        b1_grad(Vector::Zero(kHidden)),
        w2(Vector::Zero(kHidden)),
        w2_grad(Vector::Zero(kHidden)) {}

  Eigen::Map<Matrix> W1() {
    return Eigen::Map<Matrix>(w1.data(), kHidden, kInputs);
  }
  Eigen::Map<Matrix> W1Grad() {
    return Eigen::Map<Matrix>(w1_grad.data(), kHidden, kInputs);
  }

  // Mean logistic loss over the batch x (kInputs x n, one sample per column)
  // with labels y in {0, 1}; accumulates the gradients when backward.
  double Loss(const Eigen::MatrixXf& x, const Vector& y, bool backward) {
    const Eigen::MatrixXf pre = W1() * x;  // kHidden x n
    const Eigen::MatrixXf z =
        (pre.array().colwise() * gain.array()).colwise() + b1.array();
    const Eigen::MatrixXf h = z.cwiseMax(0.0f);
    const Eigen::RowVectorXf logits = (w2.transpose() * h).array() + b2;
    double loss = 0.0;
    Eigen::RowVectorXf dlogits(x.cols());
    for (int i = 0; i < x.cols(); ++i) {
      const float s = logits[i];
      // log(1 + e^s) - y s, written stably.
      loss += std::max(s, 0.0f) + std::log1p(std::exp(-std::abs(s))) - y[i] * s;
      dlogits[i] = (1.0f / (1.0f + std::exp(-s)) - y[i]) / float(x.cols());
    }
    loss /= double(x.cols());
    if (!backward) return loss;
    w2_grad += h * dlogits.transpose();
    b2_grad += dlogits.sum();
    const Eigen::MatrixXf dh = w2 * dlogits;
    const Eigen::MatrixXf dz = (z.array() > 0.0f).select(dh, 0.0f);
    b1_grad += dz.rowwise().sum();
    gain_grad += (dz.array() * pre.array()).matrix().rowwise().sum();
    const Eigen::MatrixXf dpre = dz.array().colwise() * gain.array();
    W1Grad() += dpre * x.transpose();
    return loss;
  }
};

}  // namespace

int main() {
  using namespace symopt;
  std::mt19937_64 rng(2024);
  std::normal_distribution<float> normal;

  // Synthetic data labelled by a random teacher network.
  Eigen::MatrixXf x(kInputs, kSamples);
  for (int i = 0; i < x.size(); ++i) x.data()[i] = normal(rng);
  Matrix teacher_w1(kHidden, kInputs);
  Vector teacher_w2(kHidden);
  for (int i = 0; i < teacher_w1.size(); ++i)
    teacher_w1.data()[i] = normal(rng);
  for (int i = 0; i < kHidden; ++i) teacher_w2[i] = normal(rng);
  const Eigen::MatrixXf teacher_h = (teacher_w1 * x).cwiseMax(0.0f);
  const Eigen::RowVectorXf teacher_out = teacher_w2.transpose() * teacher_h;
  const float threshold = teacher_out.mean();
  Vector y(kSamples);
  for (int i = 0; i < kSamples; ++i)
    y[i] = teacher_out[i] > threshold ? 1.0f : 0.0f;

  // The user's network; W1 starts at a random point of the oblique manifold.
  Net net;
  auto oblique = std::make_shared<Oblique<float>>(kHidden, kInputs);
  oblique->RandomPoint(TensorView<float>(net.w1.data(), kHidden, kInputs), 7);
  for (int i = 0; i < kHidden; ++i) net.w2[i] = 0.1f * normal(rng);

  // Describe the weights to symopt: views of the net's own memory, no copy.
  // Raw pointer + shape for the std::vector buffer, Eigen objects directly.
  std::vector<Parameter<float>> params;
  params.push_back(MakeParameter<float>(
      "w1", net.w1.data(), net.w1_grad.data(), kHidden, kInputs, oblique));
  params.push_back(
      MakeParameter("gain",
                    net.gain,
                    net.gain_grad,
                    std::make_shared<Euclidean<float>>(kHidden, 1)));
  params.push_back(
      MakeParameter("b1",
                    net.b1,
                    net.b1_grad,
                    std::make_shared<Euclidean<float>>(kHidden, 1)));
  params.push_back(MakeParameter("w2",
                                 net.w2,
                                 net.w2_grad,
                                 std::make_shared<Euclidean<float>>(kHidden, 1),
                                 1));
  params.push_back(
      MakeParameter<float>("b2",
                           &net.b2,
                           &net.b2_grad,
                           1,
                           1,
                           std::make_shared<Euclidean<float>>(1, 1),
                           1));

  SgdOptions options;
  options.lr = 0.2;
  options.momentum = 0.9;
  options.groups[1].lr = 0.1;  // the output layer learns more slowly
  RiemannianSgd<float> optimizer(params, options);
  BoldDriver<float> bold(
      &optimizer);  // lr x1.05 on a decrease, x0.5 and undo on an increase

  const double initial = net.Loss(x, y, false);
  std::printf("epoch  loss      lr        bold driver\n");
  std::printf("%5d  %.6f  %.6f  baseline\n", 0, initial, optimizer.lr());
  for (int epoch = 1; epoch <= 30; ++epoch) {
    for (int start = 0; start < kSamples; start += kBatch) {
      optimizer.ZeroGrad();
      net.Loss(x.middleCols(start, kBatch), y.segment(start, kBatch), true);
      const StepSummary s = optimizer.Step();
      if (!s.moved()) {
        std::printf("step skipped: %s\n", s.message.c_str());
      }
    }
    const double loss = net.Loss(x, y, false);
    const StepResult r = bold.EndEpoch(loss);
    std::printf("%5d  %.6f  %.6f  %s\n",
                epoch,
                loss,
                r.lr,
                r.accepted ? "accepted" : "rejected (rolled back)");
  }
  const double final_loss = bold.best_loss();
  int correct = 0;
  {
    const Eigen::MatrixXf pre = net.W1() * x;
    const Eigen::MatrixXf h =
        ((pre.array().colwise() * net.gain.array()).colwise() + net.b1.array())
            .cwiseMax(0.0f);
    const Eigen::RowVectorXf logits = (net.w2.transpose() * h).array() + net.b2;
    for (int i = 0; i < kSamples; ++i)
      correct += (logits[i] > 0) == (y[i] > 0.5f);
  }
  const double worst_row =
      (net.W1().rowwise().norm().array() - 1.0f).abs().maxCoeff();
  std::printf(
      "loss %.4f -> %.4f, training accuracy %.1f%%, max | ||w1 row|| - 1 | = "
      "%.1e\n",
      initial,
      final_loss,
      100.0 * correct / kSamples,
      worst_row);
  return final_loss < 0.5 * initial && worst_row < 1e-5 ? 0 : 1;
}
