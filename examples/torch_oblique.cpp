// Training a LibTorch network with unit-norm conv filters (symopt's LibTorch
// adapter, docs/torch.md).
//
// The network is plain LibTorch: two Conv2d + BatchNorm2d + ReLU blocks, max
// pooling and a Linear classifier. Batch norm makes the loss invariant to the
// scale of each conv filter (Badrinarayanan et al., paper 001), so the
// filters are trained on the oblique manifold: every filter (a slice along
// dim 0 of the [out, in, kh, kw] weight) keeps unit 2-norm, and Riemannian
// SGD with momentum steps the tensors' own storage. Everything else (batch
// norm scale and shift, the classifier) is Euclidean, in a second parameter
// group with its own learning rate. A torch StepLR scheduler (step_size 4)
// halves both rates through the torch param groups.
//
// The data are synthetic 12 x 12 images of a horizontal or a vertical bar at
// a random position, with noise; the label is the bar's orientation.
//
// Run: ./build/examples/torch_oblique   (prints loss, training accuracy and
// the worst | ||filter|| - 1 | per epoch; exits 1 unless the loss fell to
// under half and every filter stayed unit-norm to 1e-6).
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "adapters/torch.h"

namespace {

constexpr int kSize = 12;
constexpr int kSamples = 512;
constexpr int kBatch = 64;
constexpr int kEpochs = 12;

struct Data {
  torch::Tensor x;  // [kSamples, 1, kSize, kSize]
  torch::Tensor y;  // [kSamples], 0 = horizontal, 1 = vertical
};

Data MakeBars(std::uint64_t seed) {
  torch::manual_seed(seed);
  Data d;
  d.x = 0.3 * torch::randn({kSamples, 1, kSize, kSize});
  d.y = torch::randint(0, 2, {kSamples}, torch::kLong);
  const torch::Tensor where =
      torch::randint(1, kSize - 1, {kSamples}, torch::kLong);
  auto x = d.x.accessor<float, 4>();
  for (int i = 0; i < kSamples; ++i) {
    const auto at = where[i].item<std::int64_t>();
    const bool vertical = d.y[i].item<std::int64_t>() == 1;
    for (int k = 0; k < kSize; ++k) {
      x[i][0][vertical ? k : at][vertical ? at : k] += 1.0f;
    }
  }
  return d;
}

// The worst deviation of a filter's 2-norm from 1 (in double).
double WorstFilterNormError(const torch::Tensor& w) {
  const torch::Tensor rows =
      w.detach().reshape({w.size(0), -1}).to(torch::kDouble);
  return (rows.norm(2, 1) - 1.0).abs().max().item<double>();
}

int Run() {
  using namespace symopt;
  torch::manual_seed(1);
  torch::nn::Sequential net(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 8, 3).bias(false)),
      torch::nn::BatchNorm2d(8),
      torch::nn::ReLU(),
      torch::nn::MaxPool2d(2),
      torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 16, 3).bias(false)),
      torch::nn::BatchNorm2d(16),
      torch::nn::ReLU(),
      torch::nn::Flatten(),
      torch::nn::Linear(16 * 3 * 3, 2));

  // Conv weights on Oblique over dim 0 (projected onto it first: each filter
  // divided by its norm); everything else Euclidean, group 1.
  std::vector<TorchParameter<float>> params;
  std::vector<torch::Tensor> filters;
  for (const auto& item : net->named_parameters()) {
    const torch::Tensor& t = item.value();
    if (t.dim() == 4) {
      params.push_back(TorchObliqueParameter<float>(item.key(), t));
      ProjectToManifold(params.back());
      filters.push_back(t);
    } else {
      params.push_back(TorchEuclideanParameter<float>(item.key(), t, 1));
    }
  }
  SgdOptions options;
  options.lr = 0.1;  // the oblique filters
  options.momentum = 0.9;
  options.nesterov = true;
  options.groups[1].lr = 0.02;  // batch norm and the classifier
  TorchRiemannianSgd<float> optimizer(params, options);
  torch::optim::StepLR scheduler(optimizer, /*step_size=*/4, /*gamma=*/0.5);

  const Data train = MakeBars(2);
  auto evaluate = [&](double* accuracy) {
    torch::NoGradGuard no_grad;
    net->eval();
    const torch::Tensor logits = net->forward(train.x);
    net->train();
    *accuracy =
        logits.argmax(1).eq(train.y).to(torch::kDouble).mean().item<double>();
    return torch::nn::functional::cross_entropy(logits, train.y).item<double>();
  };

  double accuracy = 0.0;
  const double initial = evaluate(&accuracy);
  double worst = 0.0;
  std::printf(
      "epoch  loss      accuracy  lr (filters)  max | ||filter|| - 1 |\n");
  std::printf("%5d  %.6f  %7.1f%%\n", 0, initial, 100 * accuracy);
  double loss = initial;
  for (int epoch = 1; epoch <= kEpochs; ++epoch) {
    const torch::Tensor order = torch::randperm(kSamples);
    for (int start = 0; start < kSamples; start += kBatch) {
      const torch::Tensor idx = order.narrow(0, start, kBatch);
      const torch::Tensor x = train.x.index_select(0, idx);
      const torch::Tensor y = train.y.index_select(0, idx);
      optimizer.step([&] {
        optimizer.zero_grad();
        torch::Tensor l =
            torch::nn::functional::cross_entropy(net->forward(x), y);
        l.backward();
        return l;
      });
      for (const auto& w : filters) {
        worst = std::max(worst, WorstFilterNormError(w));
      }
    }
    const double lr = optimizer.param_groups()[0].options().get_lr();
    scheduler.step();
    loss = evaluate(&accuracy);
    std::printf("%5d  %.6f  %7.1f%%  %.4f        %.1e\n",
                epoch,
                loss,
                100 * accuracy,
                lr,
                worst);
  }
  std::printf(
      "loss %.4f -> %.4f after %lld steps; worst filter norm error %.1e\n",
      initial,
      loss,
      static_cast<long long>(optimizer.step_count()),
      worst);
  return loss < 0.5 * initial && worst < 1e-6 ? 0 : 1;
}

}  // namespace

int main() {
  try {
    return Run();
  } catch (
      const std::exception& e) {  // symopt and torch errors name the problem
    std::fprintf(stderr, "torch_oblique: %s\n", e.what());
    return 1;
  }
}
