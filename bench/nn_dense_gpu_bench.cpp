// The dense layers and losses on the GPU against the CPU (STYLE B1): the same
// benchmark and the same Args on both devices (template argument), through
// the public API (layers, Sequential, losses), so dispatch and copies count.
//
//   BM_MlpStep<dev>/batch     one training step of the MLP
//                             784-256-BN-ReLU-10 (bench/nn_bench.cpp's model):
//                             forward (train), softmax cross-entropy with its
//                             gradient, backward, plain SGD step on every
//                             parameter. The loss comes back to the host each
//                             step, so the GPU is synchronised in the loop.
//   BM_BatchNorm2d<dev>/N/C/HW   forward (train) + backward of BatchNorm on
//                             [N, C, HW, HW] (papers/002's Z2CNN layer and a
//                             wider one); the GPU variant synchronises at the
//                             end of each iteration.
//
// Validation after the timed loop: the device's result equals a CPU run on
// the same data (fresh MLPs: the losses of three steps within 1e-4 relative;
// batch norm: the last output within 1e-4 of a fresh CPU layer's, outputs
// having unit scale). Without a device the GPU variants report "no CUDA
// device".
//
//   build/bench/nn_dense_gpu_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "manifolds/device.h"
#include "nn/layers.h"
#include "nn/loss.h"
#include "nn/normalization.h"
#include "nn/sequential.h"

using namespace symopt;

namespace {

nn::Tensor<float> RandomTensor(const nn::Shape& shape, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  nn::Tensor<float> t(shape);
  for (std::int64_t i = 0; i < t.size(); ++i) t[i] = normal(rng);
  return t;
}

std::unique_ptr<nn::Sequential<float>> Mlp() {
  auto model = std::make_unique<nn::Sequential<float>>();
  model->Emplace<nn::Linear<float>>(784, 256, 1);
  model->Emplace<nn::BatchNorm<float>>(256);
  model->Emplace<nn::ReLU<float>>();
  model->Emplace<nn::Linear<float>>(256, 10, 2);
  return model;
}

double TrainStep(nn::Sequential<float>& model,
                 const nn::Tensor<float>& x,
                 const std::vector<std::int32_t>& labels,
                 nn::Tensor<float>& grad) {
  StepOptions options;
  options.lr = 0.05;
  model.ZeroGrad();
  const nn::Tensor<float>& logits = model.Forward(x, nn::Mode::kTrain);
  const double loss = nn::SoftmaxCrossEntropy(logits, labels, &grad);
  model.Backward(grad);
  for (Parameter<float>& p : model.Params()) {
    p.manifold->Step(p.value,
                     p.grad,
                     TensorView<float>(nullptr, 0, 0, p.value.device),
                     options);
  }
  return loss;
}

bool DeviceUsable(benchmark::State& state, Device device) {
  if (device == Device::kCuda && CudaDeviceCount() == 0) {
    state.SkipWithError("no CUDA device");
    return false;
  }
  return true;
}

template <Device kDevice>
void BM_MlpStep(benchmark::State& state) {
  if (!DeviceUsable(state, kDevice)) return;
  const std::int64_t batch = state.range(0);
  const nn::Tensor<float> x_host = RandomTensor({batch, 784}, 3);
  std::vector<std::int32_t> labels(static_cast<std::size_t>(batch));
  for (std::int64_t i = 0; i < batch; ++i)
    labels[std::size_t(i)] = std::int32_t(i % 10);
  auto model = Mlp();
  model->To(kDevice);
  const nn::Tensor<float> x = x_host.To(kDevice);
  nn::Tensor<float> grad;
  for (auto _ : state) {
    benchmark::DoNotOptimize(TrainStep(*model, x, labels, grad));
  }
  state.SetItemsProcessed(state.iterations() * batch);
  // Validation: fresh models on this device and on the CPU take the same
  // three steps and reach the same losses.
  auto fresh = Mlp(), reference = Mlp();
  fresh->To(kDevice);
  nn::Tensor<float> grad_ref;
  for (int s = 0; s < 3; ++s) {
    const double loss = TrainStep(*fresh, x, labels, grad);
    const double loss_ref = TrainStep(*reference, x_host, labels, grad_ref);
    if (!std::isfinite(loss) ||
        std::abs(loss - loss_ref) > 1e-4 * std::abs(loss_ref)) {
      state.SkipWithError(("loss " + std::to_string(loss) + " at step " +
                           std::to_string(s) + ", CPU reference " +
                           std::to_string(loss_ref))
                              .c_str());
      return;
    }
  }
}

template <Device kDevice>
void BM_BatchNorm2d(benchmark::State& state) {
  if (!DeviceUsable(state, kDevice)) return;
  const nn::Shape shape{
      state.range(0), state.range(1), state.range(2), state.range(2)};
  const nn::Tensor<float> x_host = RandomTensor(shape, 4);
  const nn::Tensor<float> dy_host = RandomTensor(shape, 5);
  nn::BatchNorm<float> bn(shape[1]);
  bn.To(kDevice);
  const nn::Tensor<float> x = x_host.To(kDevice), dy = dy_host.To(kDevice);
  nn::Tensor<float> y, dx;
  for (auto _ : state) {
    bn.Forward(x, y, nn::Mode::kTrain);
    bn.Backward(x, y, dy, dx);
    if (kDevice == Device::kCuda) DeviceSynchronize();
  }
  // Bytes the two passes must move at least: forward reads x twice (mean,
  // variance) and once more to write y; backward reads x and dy twice.
  state.SetBytesProcessed(state.iterations() * x.size() *
                          std::int64_t(sizeof(float)) * 8);
  // Validation: one forward against a fresh CPU layer.
  nn::BatchNorm<float> reference(shape[1]);
  nn::Tensor<float> y_ref;
  reference.Forward(x_host, y_ref, nn::Mode::kTrain);
  const nn::Tensor<float> y_back = y.To(Device::kCpu);
  double worst = 0;
  for (std::int64_t i = 0; i < y_ref.size(); ++i) {
    worst = std::max(worst, double(std::abs(y_back[i] - y_ref[i])));
  }
  if (!(worst <= 1e-4)) {  // outputs have unit scale
    state.SkipWithError(
        ("batch-norm output differs from the CPU by " + std::to_string(worst))
            .c_str());
  }
}

}  // namespace

BENCHMARK_TEMPLATE(BM_MlpStep, Device::kCpu)
    ->Arg(128)
    ->Arg(1024)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_MlpStep, Device::kCuda)
    ->Arg(128)
    ->Arg(1024)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_BatchNorm2d, Device::kCpu)
    ->Args({64, 20, 26})
    ->Args({256, 64, 28})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_BatchNorm2d, Device::kCuda)
    ->Args({64, 20, 26})
    ->Args({256, 64, 28})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

BENCHMARK_MAIN();
