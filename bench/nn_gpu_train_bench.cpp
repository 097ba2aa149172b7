// One training epoch of the papers' models on the GPU against the CPU, in the
// same binary (issue 5: "a training epoch of the papers' models on GPU
// against CPU"):
//
//   BM_TrainEpoch/model:0  the MLP with batch norm (papers/001's archBN,
//                          784-256-10), oblique weights before batch norm
//   BM_TrainEpoch/model:1  the small CNN (nn::BuildSmallCnn)
//   BM_TrainEpoch/model:2  a P4 CNN (papers/002): p4_lift(1->8, k3),
//                          p4_batchnorm, relu, p4_conv(8->8, k3),
//                          p4_batchnorm, relu, rotation max-pool,
//                          maxpool(2), linear(8*12*12 -> 10)
//
// Every iteration trains one epoch (batches of 128, SGD with momentum 0.9 on
// oblique + Euclidean parameters) of an identical model on each device: the
// CPU epoch by wall time, the GPU epoch by wall time after a device
// synchronisation (the loop reads every batch's loss on the host, so it is
// synchronous anyway). The reported time is the GPU's (UseManualTime); the
// counters give gpu_items_per_s, cpu_items_per_s and speedup = CPU time /
// GPU time. Data: the first `images` of Fashion-MNIST when Debian's
// dataset-fashion-mnist is installed, else a fixed synthetic set of the
// same shape. After the timed loop both models' last epoch losses must be
// finite and within 5% of each other (the same run on two devices).
//
// Without CUDA or without a device the program says so and exits 0.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "manifolds/device.h"
#include "nn/group_conv.h"
#include "nn/layers.h"
#include "nn/normalization.h"
#include "nn/pooling.h"
#include "nn/train.h"

namespace {

using namespace symopt;
using nn::Sequential;

// n synthetic 28x28 images: a random prototype per class plus noise.
data::Dataset Synthetic(std::int64_t n) {
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> proto(10 * 784);
  for (float& p : proto) p = u(rng);
  data::Dataset d;
  d.images = nn::Tensor<float>({n, 1, 28, 28});
  d.labels.resize(std::size_t(n));
  for (std::int64_t i = 0; i < n; ++i) {
    d.labels[std::size_t(i)] = int(i % 10);
    for (std::int64_t j = 0; j < 784; ++j) {
      d.images[i * 784 + j] =
          0.5f * proto[std::size_t((i % 10) * 784 + j)] + 0.5f * u(rng);
    }
  }
  return d;
}

const data::Dataset& Images(std::int64_t n) {
  static const data::Dataset all = [] {
    if (data::IdxTrainTestAvailable(data::FashionMnistDir())) {
      return data::LoadFashionMnist().train;
    }
    std::printf("Fashion-MNIST not found in %s: synthetic images\n",
                data::FashionMnistDir().c_str());
    return Synthetic(60000);
  }();
  static std::map<std::int64_t, data::Dataset> heads;  // stable references
  auto it = heads.find(n);
  if (it == heads.end()) it = heads.emplace(n, data::Head(all, n)).first;
  return it->second;
}

void Build(Sequential<float>& model, int kind) {
  switch (kind) {
    case 0:
      nn::BuildMlpBn(model, 784, 256, 10, 1);
      break;
    case 1:
      nn::BuildSmallCnn(model, 10, 1);
      break;
    default:
      model.Emplace<nn::P4Conv<float>>(nn::P4Input::kZ2, 1, 8, 3, 0, 1);
      model.Emplace<nn::P4BatchNorm<float>>(8);
      model.Emplace<nn::ReLU<float>>();
      model.Emplace<nn::P4Conv<float>>(nn::P4Input::kP4, 8, 8, 3, 0, 2);
      model.Emplace<nn::P4BatchNorm<float>>(8);
      model.Emplace<nn::ReLU<float>>();
      model.Emplace<nn::RotationPool<float>>();
      model.Emplace<nn::MaxPool2d<float>>(2);
      model.Emplace<nn::Flatten<float>>();
      model.Emplace<nn::Linear<float>>(8 * 12 * 12, 10, 3);
      break;
  }
  nn::UseObliqueBeforeNormalization(model);
}

void BM_TrainEpoch(benchmark::State& state) {
  const int kind = int(state.range(0));
  const data::Dataset& train = Images(state.range(1));
  Sequential<float> cpu, gpu;
  Build(cpu, kind);
  Build(gpu, kind);
  gpu.To(Device::kCuda);
  SgdOptions o;
  o.lr = 0.02;
  o.momentum = 0.9;
  RiemannianSgd<float> cpu_opt(cpu.Params(), o);
  RiemannianSgd<float> gpu_opt(gpu.Params(), o);
  nn::TrainOptions t;
  t.batch_size = 128;
  t.seed = 1;
  using Clock = std::chrono::steady_clock;
  double cpu_seconds = 0, gpu_seconds = 0;
  nn::EpochReport cpu_report, gpu_report;
  int epoch = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    cpu_report = nn::TrainEpoch(cpu, cpu_opt, train, t, epoch);
    const auto t1 = Clock::now();
    DeviceSynchronize();
    const auto t2 = Clock::now();
    gpu_report = nn::TrainEpoch(gpu, gpu_opt, train, t, epoch);
    DeviceSynchronize();
    const auto t3 = Clock::now();
    ++epoch;
    const double g = std::chrono::duration<double>(t3 - t2).count();
    cpu_seconds += std::chrono::duration<double>(t1 - t0).count();
    gpu_seconds += g;
    state.SetIterationTime(g);
  }
  const double items = double(train.size()) * double(state.iterations());
  state.counters["gpu_items_per_s"] = items / gpu_seconds;
  state.counters["cpu_items_per_s"] = items / cpu_seconds;
  state.counters["speedup"] = cpu_seconds / gpu_seconds;
  state.counters["gpu_loss"] = gpu_report.train_loss;
  state.counters["cpu_loss"] = cpu_report.train_loss;
  const double a = cpu_report.train_loss, b = gpu_report.train_loss;
  if (!std::isfinite(a) || !std::isfinite(b) ||
      std::abs(a - b) > 0.05 * std::max(1.0, a)) {
    state.SkipWithError("CPU and GPU epoch losses disagree");
  }
}
BENCHMARK(BM_TrainEpoch)
    ->ArgNames({"model", "images"})
    ->Args({0, 60000})
    ->Args({1, 10000})
    ->Args({2, 10000})
    ->Iterations(2)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  if (!symopt::CudaCompiled()) {
    std::printf(
        "nn_gpu_train_bench: this build has no CUDA backend; nothing to run\n");
    return 0;
  }
  if (symopt::CudaDeviceCount() == 0) {
    std::printf("nn_gpu_train_bench: no CUDA device present; nothing to run\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
