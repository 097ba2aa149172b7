// GPU benchmarks of the CUDA backend (issue 5): the fused manifold steps and
// the tie projection as a fraction of the device-to-device copy bandwidth
// measured in the same binary, and the multi-tensor step against one launch
// per tensor.
//
//   BM_Copy            cudaMemcpyAsync D2D of the same number of bytes the
//                      benchmarked op reads + writes: the bandwidth floor.
//   BM_EuclideanStep   momentum step, reads x, g, m and writes x, m
//                      (5 words/entry).
//   BM_ObliqueStep     the fused oblique momentum step (5 words/entry; the
//                      second read of a row is meant to hit L2), kernel only.
//   BM_ObliqueStepApi  the same through Manifold::Step on kCuda views (adds
//                      the dispatch checks and the collapse-report readback).
//   BM_TieProject      Pi_E in place (2 words/entry, the exact traffic of a
//                      copy) for row-periodic, contiguous and scattered (CSR)
//                      patterns; index traffic is NOT counted as useful.
//   BM_TieStep         the fused tie momentum step (5 words/entry).
//   BM_MultiStep / BM_PerTensorSteps
//                      many small oblique tensors: one launch vs one each.
//
// Counters: GBps = useful bytes / time; frac_copy = GBps / the D2D copy
// bandwidth for the same byte count, measured once per size by this binary.
// Timing: CUDA events around each iteration (UseManualTime, STYLE B1); every
// result is validated after the timed loop (row norms, tied entries, a CPU
// replay of sampled entries), and a failed validation aborts the run.
//
// Without CUDA or without a device the program prints why and exits 0.
// Run (GPU machine):  build/bench/cuda_manifold_bench --benchmark_min_time=0.5
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "manifolds/device.h"
#include "symopt_config.h"

#if SYMOPT_WITH_CUDA
#include "backend/launch.h"
#include "backend/step_ops.h"
#include "backend/tie_plan.h"
#include "cuda_backend.h"
#include "manifolds/oblique.h"
#include "manifolds/tie_subspace.h"
#endif

#if SYMOPT_WITH_CUDA
namespace {

using symopt::DeviceBuffer;
using symopt::DeviceTimer;

constexpr std::int64_t k16M = std::int64_t(1) << 24;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "validation failed: %s\n", what.c_str());
  std::exit(1);
}

std::vector<float> RandomHost(std::int64_t n,
                              std::uint64_t seed,
                              double scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, float(scale));
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& e : v) e = normal(rng);
  return v;
}

DeviceBuffer<float> Upload(const std::vector<float>& host) {
  DeviceBuffer<float> d(std::int64_t(host.size()));
  d.CopyFromHost(host.data());
  return d;
}

std::vector<float> Download(const DeviceBuffer<float>& d) {
  std::vector<float> host(static_cast<std::size_t>(d.size()));
  d.CopyToHost(host.data());
  return host;
}

// D2D copy bandwidth in bytes moved (read + write) per second, for a copy
// that moves `bytes` bytes in all (bytes / 2 read, bytes / 2 written).
double CopyBandwidth(std::int64_t bytes) {
  static std::map<std::int64_t, double> cache;
  auto it = cache.find(bytes);
  if (it != cache.end()) return it->second;
  const std::int64_t half = bytes / 2;
  DeviceBuffer<char> a(half), b(half);
  a.FillBytes(1);
  DeviceTimer timer;
  constexpr int kReps = 20;
  symopt::cuda::CopyDeviceToDevice(b.data(), a.data(), half, nullptr);
  timer.Start();
  for (int i = 0; i < kReps; ++i) {
    symopt::cuda::CopyDeviceToDevice(b.data(), a.data(), half, nullptr);
  }
  timer.Stop();
  const double bw = 2.0 * double(half) * kReps / timer.ElapsedSeconds();
  cache[bytes] = bw;
  return bw;
}

// Runs `op` once per iteration between CUDA events; sets the counters.
template <typename Op>
void TimeLoop(benchmark::State& state, std::int64_t useful_bytes, Op&& op) {
  DeviceTimer timer;
  op();  // warm-up (and first-touch of lazily built state)
  double total = 0;
  for (auto _ : state) {
    timer.Start();
    op();
    timer.Stop();
    const double seconds = timer.ElapsedSeconds();
    state.SetIterationTime(seconds);
    total += seconds;
  }
  const double gbps = double(useful_bytes) * double(state.iterations()) / total;
  state.counters["GBps"] = gbps / 1e9;
  state.counters["frac_copy"] = gbps / CopyBandwidth(useful_bytes);
  state.SetBytesProcessed(useful_bytes * state.iterations());
}

void BM_Copy(benchmark::State& state) {
  const std::int64_t bytes = state.range(0);
  DeviceBuffer<char> a(bytes / 2), b(bytes / 2);
  a.FillBytes(1);
  TimeLoop(state, bytes, [&] {
    symopt::cuda::CopyDeviceToDevice(b.data(), a.data(), bytes / 2, nullptr);
  });
  std::vector<char> host(static_cast<std::size_t>(bytes / 2));
  b.CopyToHost(host.data());
  for (const char c : host) {
    if (c != 1) Fail("copy");
  }
}

void BM_EuclideanStep(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const std::vector<float> x0 = RandomHost(n, 1, 1.0),
                           g = RandomHost(n, 2, 1.0);
  DeviceBuffer<float> x = Upload(x0), gd = Upload(g),
                      m = Upload(std::vector<float>(std::size_t(n), 0.f));
  symopt::StepOptions p;
  p.lr = 1e-4;
  p.momentum = 0.9;
  std::int64_t steps = 0;
  TimeLoop(state, 5 * n * std::int64_t(sizeof(float)), [&] {
    symopt::cuda::EuclideanStep(x.data(), gd.data(), m.data(), n, p, nullptr);
    ++steps;
  });
  // Replay sampled entries on the CPU with the same Ops: bitwise equal.
  const std::vector<float> xs = Download(x);
  for (std::int64_t i = 0; i < n; i += n / 16 + 1) {
    float xi = x0[i], mi = 0.f;
    for (std::int64_t s = 0; s < steps; ++s) {
      symopt::EuclideanOps::Step(
          &xi, &g[i], &mi, float(p.lr), float(p.momentum), 0.f, true, false, 0);
    }
    if (xs[i] != xi) Fail("euclidean step entry " + std::to_string(i));
  }
}

// Row norms within tol of 1.
void CheckRows(const std::vector<float>& x,
               std::int64_t rows,
               std::int64_t cols,
               const char* what) {
  for (std::int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (std::int64_t j = 0; j < cols; ++j)
      ss += double(x[r * cols + j]) * x[r * cols + j];
    if (!(std::abs(std::sqrt(ss) - 1.0) <= 1e-5)) {
      Fail(std::string(what) + ": row " + std::to_string(r) + " has norm " +
           std::to_string(std::sqrt(ss)));
    }
  }
}

struct ObliqueData {
  std::int64_t rows, cols;
  DeviceBuffer<float> x, g, m;
  ObliqueData(std::int64_t r, std::int64_t c, std::uint64_t seed)
      : rows(r), cols(c) {
    std::vector<float> xh = RandomHost(r * c, seed, 1.0);
    const symopt::Oblique<float> ob(r, c);
    ob.ProjectPoint(symopt::TensorView<float>(xh.data(), r, c));
    x = Upload(xh);
    g = Upload(RandomHost(r * c, seed + 1, 1.0));
    m = Upload(std::vector<float>(std::size_t(r * c), 0.f));
  }
};

symopt::StepOptions ObliqueParams() {
  symopt::StepOptions p;
  p.lr = 0.01;
  p.momentum = 0.9;
  return p;
}

void BM_ObliqueStep(benchmark::State& state) {
  ObliqueData d(state.range(0), state.range(1), 10);
  const double tol = symopt::Oblique<float>::DefaultCollapseTol();
  const symopt::StepOptions p = ObliqueParams();
  TimeLoop(state, 5 * d.rows * d.cols * std::int64_t(sizeof(float)), [&] {
    symopt::cuda::ObliqueStep(d.x.data(),
                              d.g.data(),
                              d.m.data(),
                              d.rows,
                              d.cols,
                              p,
                              tol,
                              nullptr,
                              nullptr);
  });
  CheckRows(Download(d.x), d.rows, d.cols, "oblique step");
}

void BM_ObliqueStepApi(benchmark::State& state) {
  ObliqueData d(state.range(0), state.range(1), 20);
  const symopt::Oblique<float> ob(d.rows, d.cols);
  symopt::StepOptions o;
  o.lr = 0.01;
  o.momentum = 0.9;
  std::int64_t collapsed = 0;
  TimeLoop(state, 5 * d.rows * d.cols * std::int64_t(sizeof(float)), [&] {
    collapsed += ob.Step(d.x.View(d.rows, d.cols),
                         d.g.View(d.rows, d.cols),
                         d.m.View(d.rows, d.cols),
                         o)
                     .collapsed_rows;
  });
  if (collapsed != 0) Fail("oblique API step collapsed rows");
  CheckRows(Download(d.x), d.rows, d.cols, "oblique API step");
}

// ---- tie patterns at 16M entries and more
// --------------------------------------

symopt::TiePattern TiePatternFor(int which) {
  symopt::TiePattern p;
  switch (which) {
    case 0:    // mirror pairs in rows of 4096 (flip invariance): row-periodic
    case 1: {  // the FIAN layer 4068 x 9216 (37.5M entries)
      p.rows = which == 0 ? 4096 : 4068;
      p.cols = which == 0 ? 4096 : 9216;
      const std::int64_t half = (p.cols + 1) / 2;
      for (std::int64_t r = 0; r < p.rows; ++r) {
        for (std::int64_t j = 0; j < p.cols; ++j) {
          p.class_of.push_back(
              std::int32_t(r * half + std::min(j, p.cols - 1 - j)));
        }
      }
      p.num_classes = std::int32_t(p.rows * half);
      break;
    }
    case 2: {  // consecutive pairs in one row of 16M: the contiguous layout
      p.rows = 1;
      p.cols = k16M;
      for (std::int64_t i = 0; i < k16M; ++i)
        p.class_of.push_back(std::int32_t(i / 2));
      p.num_classes = std::int32_t(k16M / 2);
      break;
    }
    default: {  // random pairs (a random permutation cut into pairs): CSR
      p.rows = 4096;
      p.cols = 4096;
      std::vector<std::int32_t> perm(static_cast<std::size_t>(k16M));
      for (std::int64_t i = 0; i < k16M; ++i) perm[i] = std::int32_t(i);
      std::mt19937_64 rng(5);
      std::shuffle(perm.begin(), perm.end(), rng);
      p.class_of.assign(static_cast<std::size_t>(k16M), 0);
      for (std::int64_t i = 0; i < k16M; ++i)
        p.class_of[perm[i]] = std::int32_t(i / 2);
      p.num_classes = std::int32_t(k16M / 2);
      break;
    }
  }
  return p;
}

const char* kTieNames[] = {
    "mirror_rows4096", "fian_4068x9216", "contiguous_pairs", "scattered_pairs"};

// The device plan of a pattern, as src/backend/dispatch.cpp builds it.
struct TieData {
  symopt::TiePattern pattern;
  DeviceBuffer<std::int32_t> offsets, members, starts, zeros;
  symopt::cuda::TiePlan plan;
  explicit TieData(int which) : pattern(TiePatternFor(which)) {
    const symopt::backend::TieHostPlan h =
        symopt::backend::BuildTieHostPlan(pattern);
    auto up = [](const std::vector<std::int32_t>& v) {
      DeviceBuffer<std::int32_t> b(std::int64_t(v.size()));
      if (!v.empty()) b.CopyFromHost(v.data());
      return b;
    };
    offsets = up(h.offsets);
    members = up(h.members);
    starts = up(h.starts);
    zeros = up(h.zeros);
    plan.d_offsets = offsets.data();
    plan.d_members = h.contiguous ? nullptr : members.data();
    plan.d_starts = h.contiguous ? starts.data() : nullptr;
    plan.d_zeros = zeros.data();
    plan.row_classes = h.row_classes;
    plan.cols = h.cols;
    plan.num_small = h.num_small;
    plan.num_medium = h.num_medium;
    plan.num_large = h.num_large;
    plan.num_zeros = std::int64_t(h.zeros.size());
  }
  std::int64_t size() const { return pattern.rows * pattern.cols; }
  void CheckTied(const std::vector<float>& v, const char* what) const {
    std::vector<float> value(static_cast<std::size_t>(pattern.num_classes),
                             NAN);
    for (std::int64_t i = 0; i < size(); ++i) {
      const std::int32_t c = pattern.class_of[i];
      if (std::isnan(value[c])) {
        value[c] = v[i];
      } else if (value[c] != v[i] || !std::isfinite(v[i])) {
        Fail(std::string(what) + ": entry " + std::to_string(i) + " untied");
      }
    }
  }
};

void BM_TieProject(benchmark::State& state) {
  const int which = int(state.range(0));
  state.SetLabel(kTieNames[which]);
  TieData t(which);
  DeviceBuffer<float> u = Upload(RandomHost(t.size(), 30, 1.0));
  TimeLoop(state, 2 * t.size() * std::int64_t(sizeof(float)), [&] {
    symopt::cuda::TiePass<float>(t.plan,
                                 symopt::TieMode::kMean,
                                 u.data(),
                                 nullptr,
                                 nullptr,
                                 {},
                                 nullptr);
  });
  t.CheckTied(Download(u), "tie projection");
}

void BM_TieStep(benchmark::State& state) {
  const int which = int(state.range(0));
  state.SetLabel(kTieNames[which]);
  TieData t(which);
  DeviceBuffer<float> x = Upload(RandomHost(t.size(), 40, 1.0)),
                      g = Upload(RandomHost(t.size(), 41, 1.0)),
                      m = Upload(
                          std::vector<float>(std::size_t(t.size()), 0.f));
  symopt::TieStepScalars s;
  s.lr = 1e-4;
  s.momentum = 0.9;
  TimeLoop(state, 5 * t.size() * std::int64_t(sizeof(float)), [&] {
    symopt::cuda::TiePass<float>(t.plan,
                                 symopt::TieMode::kStep,
                                 x.data(),
                                 g.data(),
                                 m.data(),
                                 s,
                                 nullptr);
  });
  t.CheckTied(Download(x), "tie step x");
  t.CheckTied(Download(m), "tie step m");
}

// ---- multi-tensor step
// ------------------------------------------------------------

// `count` oblique tensors of rows x cols each (a stack of conv layers).
struct ObliqueSet {
  std::vector<std::unique_ptr<ObliqueData>> tensors;
  DeviceBuffer<symopt::cuda::ObliqueTensor<float>> descriptors;
  DeviceBuffer<std::int64_t> first_row;
  std::int64_t total_rows = 0;
  int group = 8;
  ObliqueSet(int count, std::int64_t rows, std::int64_t cols) {
    std::vector<symopt::cuda::ObliqueTensor<float>> host;
    std::vector<std::int64_t> first = {0};
    for (int i = 0; i < count; ++i) {
      tensors.push_back(std::make_unique<ObliqueData>(rows, cols, 100 + 2 * i));
      ObliqueData& d = *tensors.back();
      host.push_back({d.x.data(),
                      d.g.data(),
                      d.m.data(),
                      cols,
                      double(symopt::Oblique<float>::DefaultCollapseTol()),
                      nullptr});
      first.push_back(first.back() + rows);
    }
    total_rows = first.back();
    group = symopt::backend::ObliqueRowGroup(cols);
    descriptors = DeviceBuffer<symopt::cuda::ObliqueTensor<float>>(count);
    descriptors.CopyFromHost(host.data());
    first_row = DeviceBuffer<std::int64_t>(count + 1);
    first_row.CopyFromHost(first.data());
  }
  std::int64_t Bytes() const {
    return 5 * total_rows * tensors[0]->cols * std::int64_t(sizeof(float));
  }
  void Check(const char* what) const {
    for (const auto& t : tensors)
      CheckRows(Download(t->x), t->rows, t->cols, what);
  }
};

void BM_MultiStep(benchmark::State& state) {
  ObliqueSet set(int(state.range(0)), state.range(1), state.range(2));
  const symopt::StepOptions p = ObliqueParams();
  TimeLoop(state, set.Bytes(), [&] {
    symopt::cuda::ObliqueMultiStep(set.descriptors.data(),
                                   set.first_row.data(),
                                   int(set.tensors.size()),
                                   set.total_rows,
                                   set.group,
                                   p,
                                   nullptr);
  });
  set.Check("multi-tensor step");
}

void BM_PerTensorSteps(benchmark::State& state) {
  ObliqueSet set(int(state.range(0)), state.range(1), state.range(2));
  const symopt::StepOptions p = ObliqueParams();
  const double tol = symopt::Oblique<float>::DefaultCollapseTol();
  TimeLoop(state, set.Bytes(), [&] {
    for (const auto& t : set.tensors) {
      symopt::cuda::ObliqueStep(t->x.data(),
                                t->g.data(),
                                t->m.data(),
                                t->rows,
                                t->cols,
                                p,
                                tol,
                                nullptr,
                                nullptr);
    }
  });
  set.Check("per-tensor steps");
}

void TieArgs(benchmark::internal::Benchmark* b) {
  for (int which = 0; which < 4; ++which) b->Arg(which);
}

}  // namespace

BENCHMARK(BM_Copy)
    ->Arg(2 * 4 * k16M)
    ->Arg(5 * 4 * k16M)
    ->Arg(2 * 4 * 4068LL * 9216)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_EuclideanStep)
    ->Arg(k16M)
    ->Arg(4 * k16M)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ObliqueStep)
    ->Args({4096, 4096})   // 16M, a block per row
    ->Args({16384, 1024})  // 16M, a block per row
    ->Args({65536, 256})   // 16M, a warp per row
    ->Args({29127, 576})   // ~16M conv filters 64 x 3 x 3
    ->Args({1 << 20, 16})  // 16M, 8 lanes per row
    ->Args({8192, 8192})   // 64M
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ObliqueStepApi)
    ->Args({4096, 4096})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TieProject)
    ->Apply(TieArgs)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TieStep)
    ->Apply(TieArgs)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
// {tensors, rows, cols}: many small conv layers, then fewer larger ones.
BENCHMARK(BM_MultiStep)
    ->Args({200, 16, 144})
    ->Args({100, 64, 576})
    ->Args({20, 256, 2304})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PerTensorSteps)
    ->Args({200, 16, 144})
    ->Args({100, 64, 576})
    ->Args({20, 256, 2304})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
#endif  // SYMOPT_WITH_CUDA

int main(int argc, char** argv) {
  if (!symopt::CudaCompiled()) {
    std::printf(
        "cuda_manifold_bench: this build has no CUDA backend; nothing to "
        "run\n");
    return 0;
  }
  if (symopt::CudaDeviceCount() == 0) {
    std::printf(
        "cuda_manifold_bench: no CUDA device present; nothing to run\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
