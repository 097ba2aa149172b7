// Forward + backward of the group layers at the sizes of their papers, next
// to the plain layers they replace (float, CPU, symopt's OpenMP threads).
//
//   P4 layers, P4CNN on rotated MNIST (papers/002_*; Cohen & Welling 2016):
//   10 P4 channels, 3x3 filters, no padding, batch 64:
//     BM_P4Lift        p4_lift(1->10, k3):  [64, 1, 28, 28] -> [64, 10, 4, 26,
//     26] BM_P4Conv        p4_conv(10->10, k3): [64, 10, 4, 26, 26] -> [64, 10,
//     4, 24, 24] BM_Conv2dSameWork conv2d(40->40, k3) on [64, 40, 26, 26]: the
//     same GEMMs
//                      with a stored (not gathered) bank, to show what the
//                      gather/scatter of the P4 layer costs.
//   Flip-invariant layer at the FIAN size (papers/000_* section 5.3): conv5
//   output [256, 6, 6] = 9216 features -> 4096, batch 64:
//     BM_FlipInvariant flip_invariant_dense([256, 6, 6]->4096)
//     BM_Dense         linear(9216->4096), the layer it replaces
//   Target: the flip-invariant layer at most 0.6x the dense time and 0.5x its
//   weight memory (counter weight_bytes: parameter values, bias included).
//
// Each benchmark validates its result after the timed loop (finite outputs and
// gradients; the P4 layers' equivariance and the flip layer's exact
// invariance on the benchmarked batch).
//
// Run: build/bench/group_nn_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

#include "data/transforms.h"
#include "manifolds/parallel.h"
#include "nn/conv2d.h"
#include "nn/flip_invariant.h"
#include "nn/group_conv.h"
#include "nn/layers.h"

using namespace symopt;
using namespace symopt::nn;

namespace {

constexpr std::int64_t kBatch = 64;

Tensor<float> RandomTensor(const Shape& shape, std::uint64_t seed) {
  Tensor<float> t(shape);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (std::int64_t i = 0; i < t.size(); ++i) t[i] = normal(rng);
  return t;
}

void RequireFinite(const Tensor<float>& t, const char* what) {
  for (std::int64_t i = 0; i < t.size(); ++i) {
    if (!std::isfinite(t[i])) throw std::runtime_error(what);
  }
}

double MaxAbsDiff(const Tensor<float>& a, const Tensor<float>& b) {
  double d = 0.0, scale = 0.0;
  for (std::int64_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return d / std::max(scale, 1e-30);
}

std::int64_t WeightBytes(Layer<float>& layer) {
  std::int64_t n = 0;
  for (const Parameter<float>& p : layer.Params()) n += p.value.size();
  return n * std::int64_t(sizeof(float));
}

// One forward + backward per iteration; the layer's gradients accumulate.
void TimeForwardBackward(benchmark::State& state,
                         Layer<float>& layer,
                         const Tensor<float>& x,
                         Tensor<float>& y,
                         Tensor<float>& dx) {
  const Tensor<float> dy = RandomTensor(layer.OutputShape(x.shape()), 2);
  for (auto _ : state) {
    layer.Forward(x, y, Mode::kTrain);
    layer.Backward(x, y, dy, dx);
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  RequireFinite(y, "non-finite output");
  RequireFinite(dx, "non-finite input gradient");
  state.counters["weight_bytes"] = double(WeightBytes(layer));
  state.counters["threads"] = NumThreads();
}

void BM_P4Lift(benchmark::State& state) {
  P4Conv<float> layer(P4Input::kZ2, 1, 10, 3, 0, 1);
  const Tensor<float> x = RandomTensor({kBatch, 1, 28, 28}, 1);
  Tensor<float> y, dx;
  TimeForwardBackward(state, layer, x, y, dx);
  Tensor<float> y_rot;
  layer.Forward(data::ApplySymmetry(data::GridSymmetry::Rotation(1), x),
                y_rot,
                Mode::kEval);
  if (MaxAbsDiff(y_rot, ActP4(y)) > 1e-5)
    throw std::runtime_error("not equivariant");
}
BENCHMARK(BM_P4Lift)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_P4Conv(benchmark::State& state) {
  P4Conv<float> layer(P4Input::kP4, 10, 10, 3, 0, 1);
  const Tensor<float> x = RandomTensor({kBatch, 10, 4, 26, 26}, 1);
  Tensor<float> y, dx;
  TimeForwardBackward(state, layer, x, y, dx);
  Tensor<float> y_rot;
  layer.Forward(ActP4(x), y_rot, Mode::kEval);
  if (MaxAbsDiff(y_rot, ActP4(y)) > 1e-5)
    throw std::runtime_error("not equivariant");
}
BENCHMARK(BM_P4Conv)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Conv2dSameWork(benchmark::State& state) {
  Conv2d<float> layer(40, 40, 3, 1, 0, 1);
  const Tensor<float> x = RandomTensor({kBatch, 40, 26, 26}, 1);
  Tensor<float> y, dx;
  TimeForwardBackward(state, layer, x, y, dx);
}
BENCHMARK(BM_Conv2dSameWork)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_FlipInvariant(benchmark::State& state) {
  FlipInvariantDense<float> layer(256, 6, 6, 4096, 1);
  const Tensor<float> x = RandomTensor({kBatch, 256, 6, 6}, 1);
  Tensor<float> y, dx;
  TimeForwardBackward(state, layer, x, y, dx);
  Tensor<float> y_flip;
  layer.Forward(data::ApplySymmetry(data::GridSymmetry::FlipHorizontal(), x),
                y_flip,
                Mode::kEval);
  if (MaxAbsDiff(y_flip, y) != 0.0) throw std::runtime_error("not invariant");
}
BENCHMARK(BM_FlipInvariant)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Dense(benchmark::State& state) {
  Linear<float> layer(256 * 6 * 6, 4096, 1);
  const Tensor<float> x = RandomTensor({kBatch, 256 * 6 * 6}, 1);
  Tensor<float> y, dx;
  TimeForwardBackward(state, layer, x, y, dx);
}
BENCHMARK(BM_Dense)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
