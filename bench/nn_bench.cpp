// Network-module benchmarks (STYLE B1): forward + backward of Linear and
// Conv2d at the sizes the papers use, and one training epoch of the MLP with
// batch norm on Fashion-MNIST (the figure bench/pytorch_mlp_epoch.py compares
// with PyTorch).
//
//   Linear  {batch, in, out}:  {128, 784, 256}, {128, 256, 10}: the MLP
//           784-256-BN-ReLU-10 trained below; {100, 784, 64}, {100, 64, 64}:
//           the first and a hidden layer of papers/001's archBN on 28x28 MNIST
//           (64 features per layer as we read the arXiv paper; the stored
//           text has its numbers stripped), batches of 100.
//   Conv2d  {batch, in, out, size}: 3x3 filters, stride 1, no padding, as in
//           the Z2CNN of papers/002 (Cohen & Welling 2016: 7 layers of 3x3
//           convolutions with 20 channels on 28x28 rotated MNIST):
//           {64, 1, 20, 28} the first layer, {64, 20, 20, 26} the second.
//   MLP epoch: 60,000 Fashion-MNIST training images, batches of 128, plain
//           Riemannian SGD (lr 0.1) on Euclidean parameters; fwd, loss, bwd,
//           step and batch assembly. Needs dataset-fashion-mnist.
//   CNN epoch: the small CNN (nn::BuildSmallCnn) on the first 2,000
//           Fashion-MNIST training images, batches of 128, SGD (lr 0.05):
//           the CPU convolution inside a whole training step.
//
// Threads: --threads=N (default: OpenMP's default) sets SetNumThreads(N).
// Each benchmark validates its result after the timed loop (finite outputs
// matching a reference value; the epoch must reach a sane test accuracy).
//
//   build/bench/nn_bench --threads=2
//   build/bench/nn_bench --threads=2 --benchmark_filter=MlpEpoch
//   build/bench/nn_bench --threads=2 --benchmark_filter=CnnEpoch
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "manifolds/parallel.h"
#include "nn/conv2d.h"
#include "nn/layers.h"
#include "nn/train.h"
#include "optim/sgd.h"

using namespace symopt;

namespace {

nn::Tensor<float> RandomTensor(const nn::Shape& shape, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  nn::Tensor<float> t(shape);
  for (std::int64_t i = 0; i < t.size(); ++i) t[i] = normal(rng);
  return t;
}

// Runs forward + backward (input gradient included) of `layer` on x and
// checks afterwards that one output and one weight-gradient entry equal
// their definitions computed in double.
void RunLayer(benchmark::State& state,
              nn::Layer<float>& layer,
              const nn::Tensor<float>& x,
              double flops_per_pass) {
  nn::Tensor<float> y, dx;
  layer.Forward(x, y, nn::Mode::kTrain);
  const nn::Tensor<float> dy = RandomTensor(y.shape(), 99);
  for (auto _ : state) {
    layer.Forward(x, y, nn::Mode::kTrain);
    layer.Backward(x, y, dy, dx);
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  double sum = 0;
  for (std::int64_t i = 0; i < y.size(); ++i) sum += y[i];
  for (std::int64_t i = 0; i < dx.size(); ++i) sum += dx[i];
  if (!std::isfinite(sum) || dx.shape() != x.shape()) {
    state.SkipWithError("non-finite or misshapen result");
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_pass * double(state.iterations()) * 1e-9,
                         benchmark::Counter::kIsRate);
}

void BM_LinearForwardBackward(benchmark::State& state) {
  const std::int64_t batch = state.range(0), in = state.range(1),
                     out = state.range(2);
  nn::Linear<float> layer(in, out, 1);
  const nn::Tensor<float> x = RandomTensor({batch, in}, 2);
  RunLayer(state, layer, x, 3 * 2.0 * double(batch * in * out));
  // y[0, 0] against its definition.
  nn::Tensor<float> y;
  layer.Forward(x, y, nn::Mode::kEval);
  double ref = layer.bias()[0];
  for (std::int64_t i = 0; i < in; ++i) ref += double(x[i]) * layer.weight()[i];
  if (std::abs(ref - y[0]) > 1e-4 * (1 + std::abs(ref)))
    state.SkipWithError("wrong output");
}
BENCHMARK(BM_LinearForwardBackward)
    ->ArgNames({"batch", "in", "out"})
    ->Args({128, 784, 256})
    ->Args({128, 256, 10})
    ->Args({100, 784, 64})
    ->Args({100, 64, 64})
    ->Unit(benchmark::kMicrosecond);

void BM_Conv2dForwardBackward(benchmark::State& state) {
  const std::int64_t batch = state.range(0), in = state.range(1),
                     out = state.range(2), size = state.range(3), k = 3;
  nn::Conv2d<float> layer(in, out, k, 1, 0, 1);
  const nn::Tensor<float> x = RandomTensor({batch, in, size, size}, 3);
  const std::int64_t o = size - k + 1;
  RunLayer(state, layer, x, 3 * 2.0 * double(batch * out * o * o * in * k * k));
  nn::Tensor<float> y;
  layer.Forward(x, y, nn::Mode::kEval);
  double ref = layer.bias()[0];
  for (std::int64_t c = 0; c < in; ++c)
    for (std::int64_t u = 0; u < k; ++u)
      for (std::int64_t v = 0; v < k; ++v)
        ref += double(layer.weight()[(c * k + u) * k + v]) *
               x[(c * size + u) * size + v];
  if (std::abs(ref - y[0]) > 1e-4 * (1 + std::abs(ref)))
    state.SkipWithError("wrong output");
}
BENCHMARK(BM_Conv2dForwardBackward)
    ->ArgNames({"batch", "in", "out", "size"})
    ->Args({64, 1, 20, 28})
    ->Args({64, 20, 20, 26})
    ->Unit(benchmark::kMillisecond);

// Fashion-MNIST, loaded once per process; null (the benchmark skipped, naming
// the package) when it is not installed.
const data::TrainTest* FashionMnistOrSkip(benchmark::State& state) {
  if (!data::IdxTrainTestAvailable(data::FashionMnistDir())) {
    state.SkipWithError(("Fashion-MNIST not found in " +
                         data::FashionMnistDir() +
                         " (apt-get install dataset-fashion-mnist)")
                            .c_str());
    return nullptr;
  }
  static const data::TrainTest fashion = data::LoadFashionMnist();
  return &fashion;
}

// One nn::TrainEpoch of `model` on `train` per iteration (batches of 128,
// seed 1, plain Riemannian SGD with learning rate lr), then the test
// accuracy on `test` and images/s as counters; an error unless the test loss
// is finite and the accuracy above min_accuracy.
void TimeEpochs(benchmark::State& state,
                nn::Sequential<float>& model,
                const data::Dataset& train,
                const data::Dataset& test,
                double lr,
                double min_accuracy) {
  SgdOptions options;
  options.lr = lr;
  RiemannianSgd<float> optimizer(model.Params(), options);
  nn::TrainOptions train_options;
  train_options.batch_size = 128;
  train_options.seed = 1;
  int epoch = 0;
  for (auto _ : state) {
    nn::TrainEpoch(model, optimizer, train, train_options, epoch++);
  }
  const nn::EvalResult result = nn::Evaluate(model, test);
  state.counters["test_acc"] = result.accuracy;
  state.counters["images/s"] =
      benchmark::Counter(double(train.size()) * double(state.iterations()),
                         benchmark::Counter::kIsRate);
  if (!(std::isfinite(result.loss) && result.accuracy > min_accuracy)) {
    state.SkipWithError(("test accuracy " + std::to_string(result.accuracy) +
                         " not above " + std::to_string(min_accuracy) +
                         " after training")
                            .c_str());
  }
}

void BM_MlpEpochFashionMnist(benchmark::State& state) {
  const data::TrainTest* fashion = FashionMnistOrSkip(state);
  if (fashion == nullptr) return;
  nn::Sequential<float> model;
  nn::BuildMlpBn(model, 28 * 28, 256, 10, 1);
  // One epoch of this model reaches ~84% test accuracy; far below means broken.
  TimeEpochs(state, model, fashion->train, fashion->test, 0.1, 0.75);
}
BENCHMARK(BM_MlpEpochFashionMnist)
    ->Iterations(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// One epoch of the small CNN (nn::BuildSmallCnn: conv 1->16 k5, conv 16->32
// k5, batch norm, max pooling, linear) on the first 2,000 Fashion-MNIST
// training images, batches of 128, plain Riemannian SGD (lr 0.05): the CPU
// convolution's forward and backward dominate (about 90% of the flops).
void BM_CnnEpochFashionMnist(benchmark::State& state) {
  const data::TrainTest* fashion = FashionMnistOrSkip(state);
  if (fashion == nullptr) return;
  static const data::Dataset train = data::Head(fashion->train, 2000);
  static const data::Dataset test = data::Head(fashion->test, 1000);
  nn::Sequential<float> model;
  nn::BuildSmallCnn(model, 10, 1);
  // Two epochs on 2,000 images reach about 67% (chance is 10%); near chance
  // means the convolution is broken.
  TimeEpochs(state, model, train, test, 0.05, 0.5);
}
BENCHMARK(BM_CnnEpochFashionMnist)
    ->Iterations(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  // --threads=N is ours; the rest goes to Google Benchmark.
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      SetNumThreads(std::atoi(argv[i] + 10));
    } else {
      args.push_back(argv[i]);
    }
  }
  int n = int(args.size());
  benchmark::AddCustomContext("threads", std::to_string(NumThreads()));
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
