// Convolution layers on the GPU against the CPU path, in one binary (issue 5,
// part 3), through the public layer API (Layer::To(Device::kCuda) and device
// tensors), so dispatch and scratch management are included.
//
//   BM_Conv2d/<device>/batch/c_in/c_out/size
//       Conv2d k5 p2 Forward + Backward (weight, bias and input gradients) at
//       the small CNN's shapes: batch 128, 1 -> 16 at 28x28 and 16 -> 32 at
//       14x14.
//   BM_P4Conv/<device>/batch/channels/size
//       p4_conv(10->10, k3, p0) Forward + Backward at the P4CNN's shape:
//       [64, 10, 4, 26, 26] (filter expansion, convolution, dtheta sums).
//   device: 0 = CPU (Eigen, OpenMP threads), 1 = GPU (CUDA + cuBLAS).
//
// Counters: GFLOPs = 6 * N * rows * kk * Ho*Wo / time (forward, dW and dx
// products: 2 flops per multiply-add each). Timing: CUDA events around each
// iteration on the GPU, wall clock on the CPU (UseManualTime, STYLE B1).
// Validation after the timed loop: the GPU output equals a CPU twin's to a
// relative 1e-4 (at the output's RMS); a CPU output equals the direct
// definition at sampled outputs (Conv2d) or is P4-equivariant (P4Conv). A
// failed validation aborts the run.
//
// Without CUDA or without a device the program prints why and exits 0.
// Run (GPU machine):
//   build/bench/nn_gpu_layers_bench --benchmark_min_time=0.5 \
//       --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "manifolds/device.h"
#include "nn/conv2d.h"
#include "nn/group_conv.h"

namespace {

using namespace symopt;
using namespace symopt::nn;

template <typename T>
Tensor<T> Random(const Shape& shape, std::uint64_t seed) {
  Tensor<T> t(shape);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> d(0.0, 1.0);
  for (std::int64_t i = 0; i < t.size(); ++i) t[i] = T(d(rng));
  return t;
}

[[noreturn]] void Fail(const char* what, double value) {
  std::fprintf(
      stderr, "nn_gpu_layers_bench: validation failed: %s (%g)\n", what, value);
  std::abort();
}

// max |a - b| / RMS(b) over host tensors of the same size.
double RelativeError(const Tensor<float>& a, const Tensor<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double s = 0, worst = 0;
  for (std::int64_t i = 0; i < b.size(); ++i) s += double(b[i]) * b[i];
  const double rms = std::sqrt(s / double(std::max<std::int64_t>(b.size(), 1)));
  for (std::int64_t i = 0; i < b.size(); ++i) {
    const double e = std::abs(double(a[i]) - double(b[i]));
    if (std::isnan(e)) return INFINITY;
    worst = std::max(worst, e);
  }
  return worst / std::max(rms, 1e-30);
}

// Runs Forward + Backward once per iteration on `device`, timing each, then
// returns the output of the last iteration on the host.
Tensor<float> TimeLayer(benchmark::State& state,
                        Layer<float>& layer,
                        const Tensor<float>& x_host,
                        Device device) {
  layer.To(device);
  const Tensor<float> x = x_host.To(device);
  Tensor<float> y, dx;
  layer.Forward(x, y, Mode::kTrain);
  const Tensor<float> dy = Random<float>(y.shape(), 2).To(device);
  if (device == Device::kCuda) {
    DeviceTimer timer;
    for (auto _ : state) {
      timer.Start();
      layer.Forward(x, y, Mode::kTrain);
      layer.Backward(x, y, dy, dx);
      timer.Stop();
      state.SetIterationTime(timer.ElapsedSeconds());
    }
  } else {
    for (auto _ : state) {
      const auto t0 = std::chrono::steady_clock::now();
      layer.Forward(x, y, Mode::kTrain);
      layer.Backward(x, y, dy, dx);
      state.SetIterationTime(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
              .count());
    }
  }
  return y.To(Device::kCpu);
}

void SetFlops(benchmark::State& state, double flops_per_iteration) {
  state.counters["GFLOPs"] =
      benchmark::Counter(flops_per_iteration * 1e-9,
                         benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Conv2d(benchmark::State& state) {
  const bool gpu = state.range(0) == 1;
  const std::int64_t n = state.range(1), cin = state.range(2),
                     cout = state.range(3), hw = state.range(4), k = 5, p = 2;
  Conv2d<float> layer(cin, cout, k, 1, p, 1);
  const Tensor<float> x = Random<float>({n, cin, hw, hw}, 1);
  const Tensor<float> y =
      TimeLayer(state, layer, x, gpu ? Device::kCuda : Device::kCpu);
  SetFlops(state, 6.0 * double(n * cout * cin * k * k * hw * hw));
  // Validation: the GPU against a CPU twin; the CPU at sampled outputs
  // against the definition.
  if (gpu) {
    Conv2d<float> twin(cin, cout, k, 1, p, 1);
    Tensor<float> ref;
    twin.Forward(x, ref, Mode::kTrain);
    const double e = RelativeError(y, ref);
    if (!(e <= 1e-4)) Fail("Conv2d GPU vs CPU", e);
    return;
  }
  layer.To(Device::kCpu);
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 64; ++trial) {
    const std::int64_t b = std::int64_t(rng() % n),
                       o = std::int64_t(rng() % cout),
                       i = std::int64_t(rng() % hw),
                       j = std::int64_t(rng() % hw);
    double acc = layer.bias()[o];
    for (std::int64_t c = 0; c < cin; ++c)
      for (std::int64_t u = 0; u < k; ++u)
        for (std::int64_t v = 0; v < k; ++v) {
          const std::int64_t r = i - p + u, q = j - p + v;
          if (r < 0 || r >= hw || q < 0 || q >= hw) continue;
          acc += double(layer.weight()[((o * cin + c) * k + u) * k + v]) *
                 x[((b * cin + c) * hw + r) * hw + q];
        }
    const double e = std::abs(acc - y[((b * cout + o) * hw + i) * hw + j]);
    if (!(e <= 1e-4 * (1 + std::abs(acc)))) Fail("Conv2d CPU vs definition", e);
  }
}
BENCHMARK(BM_Conv2d)
    ->ArgNames({"gpu", "batch", "cin", "cout", "size"})
    ->Args({0, 128, 1, 16, 28})
    ->Args({1, 128, 1, 16, 28})
    ->Args({0, 128, 16, 32, 14})
    ->Args({1, 128, 16, 32, 14})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

void BM_P4Conv(benchmark::State& state) {
  const bool gpu = state.range(0) == 1;
  const std::int64_t n = state.range(1), c = state.range(2),
                     hw = state.range(3), k = 3;
  P4Conv<float> layer(P4Input::kP4, c, c, k, 0, 1);
  const Tensor<float> x = Random<float>({n, c, kP4Order, hw, hw}, 1);
  const Tensor<float> y =
      TimeLayer(state, layer, x, gpu ? Device::kCuda : Device::kCpu);
  const std::int64_t ho = hw - k + 1;
  SetFlops(state,
           6.0 * double(n * c * kP4Order * c * kP4Order * k * k * ho * ho));
  if (gpu) {
    P4Conv<float> twin(P4Input::kP4, c, c, k, 0, 1);
    Tensor<float> ref;
    twin.Forward(x, ref, Mode::kTrain);
    const double e = RelativeError(y, ref);
    if (!(e <= 1e-4)) Fail("P4Conv GPU vs CPU", e);
    return;
  }
  layer.To(Device::kCpu);
  Tensor<float> gy;
  layer.Forward(ActP4(x), gy, Mode::kTrain);
  const double e = RelativeError(gy, ActP4(y));
  if (!(e <= 1e-4)) Fail("P4Conv CPU equivariance", e);
}
BENCHMARK(BM_P4Conv)
    ->ArgNames({"gpu", "batch", "channels", "size"})
    ->Args({0, 64, 10, 26})
    ->Args({1, 64, 10, 26})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  if (!CudaCompiled()) {
    std::printf(
        "nn_gpu_layers_bench: this build has no CUDA backend; nothing to "
        "run\n");
    return 0;
  }
  if (CudaDeviceCount() == 0) {
    std::printf(
        "nn_gpu_layers_bench: no CUDA device present; nothing to run\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
