// symopt's fused oblique step next to the same step as LibTorch runs it for a
// Python peer, and next to the plain torch SGD step (docs/torch.md, "How
// fast"). Float weights with rows at unit norm, SGD with heavy-ball momentum
// beta = 0.9, lr = 0.01:
//
//   BM_SymoptFused/rows/cols/threads/in_cache
//       Oblique<float>::Step on raw buffers (what the adapter calls)
//   BM_SymoptTorchAdapter/...
//       TorchRiemannianSgd<float>::step() on torch tensors: the same step
//       plus the adapter's per-step work (binding, gradient screen)
//   BM_TorchComposedGeoopt/...
//       geoopt's RiemannianSGD step on its Sphere manifold (rows of the last
//       dimension at unit norm = symopt's Oblique), the same sequence of
//       LibTorch tensor operations geoopt issues, written in C++:
//         grad.add_(x, alpha=wd)                       (in place, even wd = 0)
//         r = proju(x, grad) = grad - (x*grad).sum(-1, keepdim) * x
//         buf.mul_(beta).add_(r, alpha=1 - dampening)  (in place)
//         y = projx(x + (-lr) * buf) = z / ||z||_row   (retr)
//         v = proju(y, buf)                            (transp)
//         buf.set_(v); x.set_(y)                       (copy_or_set_)
//       Same kernels, no Python interpreter, no optimizer bookkeeping: a
//       LOWER bound on geoopt's time for the step.
//   BM_TorchEuclideanSgd/...
//       torch::optim::SGD with momentum on the same tensors: the
//       unconstrained step every torch user already pays (a reference point,
//       not a competitor: it does not keep the rows at unit norm)
//   BM_Floor/...
//       m = beta m + g; x -= lr m (read 3, write 2) compiled for AVX2+FMA,
//       the loop of bench/oblique_bench.cpp: the memory-bandwidth floor
//
// Shapes: 512 x 784, 4096 x 4096 and 678 x 9216 with data out of cache (each
// iteration steps the next of enough copies of (x, g, m) to fill 4x the
// last-level cache, read from sysfs; SYMOPT_BENCH_LLC_BYTES overrides), and a
// conv layer's 64 filters of 3 x 5 x 5 (64 x 75) on one in-cache copy, where
// per-call overhead shows. 1 and 2 threads: symopt::SetNumThreads and
// at::set_num_threads both. Every benchmark reports the 5 arrays' worth of
// bytes of the fused step (SetBytesProcessed), so bytes_per_second compare.
//
// Before any timing, each shape's three Riemannian steps are run 3 steps from
// the same start (momentum zero) and must agree: they compute the same
// thing, with float rounding in a different order (the largest differences
// are reported as counters agree_x and agree_m). After each timed loop every
// row of every copy must have unit norm to 1e-5 (fused, adapter, composed)
// or be finite (floor, torch SGD).
//
// At exit, tables give per shape and thread count the best real time and
// the best main-thread CPU time of each kind, and the ratios composed/fused,
// adapter/fused, torch_sgd/fused and fused/floor. Use
// --benchmark_repetitions=N to take the best of N.
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <omp.h>
#include <torch/optim/sgd.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "adapters/torch.h"
#include "bench_common.h"
#include "manifolds/oblique.h"
#include "manifolds/parallel.h"

namespace {

using symopt::Oblique;
using symopt::TensorView;
using symopt_bench::FloorStep;
using symopt_bench::HasAvx2;
using symopt_bench::LastLevelCacheBytes;

constexpr double kLlcMultiple = 4;
constexpr float kLr =
    symopt_bench::kFloorLr;  // the floor's, so all do one step alike
constexpr float kBeta = symopt_bench::kFloorBeta;
constexpr int kAgreeSteps = 3;
// Largest difference accepted between the three Riemannian steps after
// kAgreeSteps steps (entries of x are <= 1, of m about 1).
constexpr double kAgreeTolerance = 1e-5;
constexpr double kNormTolerance = 1e-5;

void SetThreads(int n) {
  at::set_num_threads(n);
  symopt::SetNumThreads(n);
}

TensorView<float> View(const torch::Tensor& t) {
  return TensorView<float>(t.data_ptr<float>(), t.size(0), t.size(1));
}

TensorView<const float> ConstView(const torch::Tensor& t) {
  return TensorView<const float>(t.data_ptr<float>(), t.size(0), t.size(1));
}

// One copy of a parameter: x a leaf requiring grad with x.grad() == g, and a
// momentum buffer m in the tangent space at x. Each tensor owns its storage
// (torch's allocator: 64-byte aligned).
struct Copy {
  torch::Tensor x, g, m;
};

// The data of one shape, kept while consecutive benchmarks use it.
struct DataSet {
  std::int64_t rows = 0, cols = 0;
  bool in_cache = false;
  std::vector<Copy> copies;
  // Largest |difference| between the Riemannian steps (agreement check).
  double agree_x = -1, agree_m = -1;
  bool agree = false;

  std::int64_t size() const { return rows * cols; }
};

// geoopt's Sphere: proju(x, u) = u - <x, u>_row x, out of place.
torch::Tensor SphereProju(const torch::Tensor& x, const torch::Tensor& u) {
  return u - (x * u).sum(at::IntArrayRef{-1}, /*keepdim=*/true) * x;
}

// geoopt's Sphere: projx(x) = x / ||x||_row, out of place. Python's
// x.norm(dim=-1, keepdim=True) is linalg.vector_norm(x, 2, [-1], True) in
// torch 1.13 (torch/functional.py).
torch::Tensor SphereProjx(const torch::Tensor& x) {
  return x / at::linalg_vector_norm(x, 2, at::IntArrayRef{-1}, true);
}

// geoopt's copy_or_set_(dest, source): copy_ when the strides differ, else
// set_ (dest takes source's storage).
void CopyOrSet(torch::Tensor& dest, const torch::Tensor& source) {
  if (dest.strides() != source.strides()) {
    dest.copy_(source);
  } else {
    dest.set_(source);
  }
}

// One step of geoopt's RiemannianSGD (momentum > 0, no Nesterov, dampening
// 0) on a Sphere ManifoldParameter `point` whose momentum buffer is `buffer`,
// the torch operations in geoopt's order, in place where geoopt is.
// Steady state: geoopt creates the buffer on the first step
// (grad.clone()); here it exists already.
void GeooptSphereStep(torch::Tensor& point, torch::Tensor& buffer) {
  const double weight_decay = 0, dampening = 0;
  torch::NoGradGuard no_grad;
  torch::Tensor grad = point.grad();
  grad.add_(point, weight_decay);
  grad = SphereProju(point, grad);  // egrad2rgrad = proju
  buffer.mul_(double(kBeta)).add_(grad, 1 - dampening);
  // retr_transp(point, -lr * buffer, buffer): retr = projx(x + u), then
  // transp(x, y, v) = proju(y, v).
  const torch::Tensor u = buffer * -double(kLr);
  const torch::Tensor new_point = SphereProjx(point + u);
  const torch::Tensor new_buffer = SphereProju(new_point, buffer);
  buffer.set_(new_buffer);
  CopyOrSet(point, new_point);
}

symopt::SgdOptions AdapterOptions() {
  symopt::SgdOptions o;
  o.lr = kLr;
  o.momentum = kBeta;
  return o;
}

std::unique_ptr<symopt::TorchRiemannianSgd<float>> MakeAdapter(
    const torch::Tensor& x) {
  std::vector<symopt::TorchParameter<float>> params;
  params.push_back(symopt::TorchObliqueParameter<float>("w", x));
  return std::make_unique<symopt::TorchRiemannianSgd<float>>(params,
                                                             AdapterOptions());
}

symopt::StepOptions FusedOptions() {
  symopt::StepOptions o;
  o.lr = kLr;
  o.momentum = kBeta;
  return o;
}

torch::Tensor Leaf(const torch::Tensor& value, const torch::Tensor& grad) {
  torch::Tensor x = value.clone().requires_grad_(true);
  x.mutable_grad() = grad.clone();
  return x;
}

// Runs kAgreeSteps steps of fused, adapter and composed from the same x, g
// and zero momentum (the adapter's starting state) and records the largest
// differences of x and m from the fused step's.
void CheckAgreement(DataSet& data, const Copy& start) {
  const Oblique<float> man(data.rows, data.cols);
  const torch::Tensor zero = torch::zeros_like(start.m);

  torch::Tensor fused_x = start.x.detach().clone(), fused_m = zero.clone();
  for (int k = 0; k < kAgreeSteps; ++k) {
    man.Step(View(fused_x), ConstView(start.g), View(fused_m), FusedOptions());
  }

  torch::Tensor adapter_x = Leaf(start.x.detach(), start.g);
  auto adapter = MakeAdapter(adapter_x);
  for (int k = 0; k < kAgreeSteps; ++k) adapter->step();
  const std::vector<float> adapter_m = adapter->State().momentum.at(0);

  torch::Tensor composed_x = Leaf(start.x.detach(), start.g);
  torch::Tensor composed_m = zero.clone();
  for (int k = 0; k < kAgreeSteps; ++k) {
    GeooptSphereStep(composed_x, composed_m);
  }

  const torch::NoGradGuard no_grad;
  const torch::Tensor adapter_m_t =
      torch::tensor(adapter_m).view({data.rows, data.cols});
  auto diff = [](const torch::Tensor& a, const torch::Tensor& b) {
    return (a - b).abs().max().item<double>();
  };
  data.agree_x = std::max(diff(fused_x, adapter_x), diff(fused_x, composed_x));
  data.agree_m =
      std::max(diff(fused_m, adapter_m_t), diff(fused_m, composed_m));
  data.agree = std::isfinite(data.agree_x) && std::isfinite(data.agree_m) &&
               data.agree_x <= kAgreeTolerance &&
               data.agree_m <= kAgreeTolerance;
  std::printf(
      "agreement %lld x %lld after %d steps: max |fused - adapter| x %.3g m "
      "%.3g; max |fused - composed| x %.3g m %.3g%s\n",
      static_cast<long long>(data.rows),
      static_cast<long long>(data.cols),
      kAgreeSteps,
      diff(fused_x, adapter_x),
      diff(fused_m, adapter_m_t),
      diff(fused_x, composed_x),
      diff(fused_m, composed_m),
      data.agree ? "" : "  DISAGREE");
}

DataSet& Data(std::int64_t rows, std::int64_t cols, bool in_cache) {
  static DataSet data;
  if (data.rows == rows && data.cols == cols && data.in_cache == in_cache) {
    return data;
  }
  data = DataSet();  // free the previous shape first
  data.rows = rows;
  data.cols = cols;
  data.in_cache = in_cache;
  const std::int64_t n = rows * cols;
  const double set_bytes = 3.0 * n * sizeof(float);
  const auto copies =
      in_cache ? std::int64_t(1)
               : std::max<std::int64_t>(
                     1,
                     std::int64_t(std::ceil(
                         kLlcMultiple * LastLevelCacheBytes() / set_bytes)));
  const Oblique<float> man(rows, cols);
  std::mt19937_64 rng(42);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto options = torch::TensorOptions().dtype(torch::kFloat32);
  Copy first{torch::empty({rows, cols}, options),
             torch::empty({rows, cols}, options),
             torch::empty({rows, cols}, options)};
  man.RandomPoint(View(first.x), 7);
  float* g = first.g.data_ptr<float>();
  float* m = first.m.data_ptr<float>();
  for (std::int64_t i = 0; i < n; ++i) g[i] = 0.1f * normal(rng);
  for (std::int64_t i = 0; i < n; ++i) m[i] = 0.1f * normal(rng);
  man.Project(ConstView(first.x), View(first.m));
  CheckAgreement(data, first);
  for (std::int64_t c = 0; c < copies; ++c) {
    const torch::Tensor x = Leaf(first.x, first.g);
    data.copies.push_back(Copy{x, x.grad(), first.m.clone()});
  }
  return data;
}

// Largest |row norm - 1| over every copy (in double), or a negative value
// when something is not finite.
double WorstRowError(const DataSet& data) {
  double worst = 0;
  for (const Copy& c : data.copies) {
    const float* x = c.x.data_ptr<float>();
    for (std::int64_t r = 0; r < data.rows; ++r) {
      double s = 0;
      for (std::int64_t i = 0; i < data.cols; ++i) {
        const double e = x[r * data.cols + i];
        s += e * e;
      }
      if (!std::isfinite(s)) return -1;
      worst = std::max(worst, std::abs(std::sqrt(s) - 1.0));
    }
  }
  return worst;
}

bool AllFinite(const DataSet& data) {
  const torch::NoGradGuard no_grad;
  for (const Copy& c : data.copies) {
    if (!torch::isfinite(c.x).all().item<bool>() ||
        !torch::isfinite(c.m).all().item<bool>()) {
      return false;
    }
  }
  return true;
}

// Puts every copy back on the manifold (and its buffer in the tangent space)
// after a benchmark that leaves it (floor, torch SGD).
void RestoreManifold(const DataSet& data) {
  const Oblique<float> man(data.rows, data.cols);
  for (const Copy& c : data.copies) {
    man.ProjectPoint(View(c.x));
    man.Project(ConstView(c.x), View(c.m));
  }
}

// Common set-up; false (and the benchmark skipped) when the shape's steps
// disagreed.
DataSet* Prepare(benchmark::State& state) {
  DataSet& data = Data(state.range(0), state.range(1), state.range(3) != 0);
  SetThreads(int(state.range(2)));
  state.counters["copies"] = double(data.copies.size());
  state.counters["threads"] = double(symopt::NumThreads());
  state.counters["agree_x"] = data.agree_x;
  state.counters["agree_m"] = data.agree_m;
  if (!data.agree) {
    state.SkipWithError("the Riemannian steps disagree (see 'agreement')");
    return nullptr;
  }
  return &data;
}

void Finish(benchmark::State& state, const DataSet& data) {
  state.SetBytesProcessed(state.iterations() * 5 * data.size() *
                          std::int64_t(sizeof(float)));
}

void ValidateUnitRows(benchmark::State& state, const DataSet& data) {
  const double worst = WorstRowError(data);
  state.counters["max_norm_err"] = worst;
  if (!(worst >= 0 && worst <= kNormTolerance)) {
    state.SkipWithError("a row left the oblique manifold");
  }
}

void BM_Floor(benchmark::State& state) {
  DataSet* data = Prepare(state);
  if (data == nullptr) return;
  const bool avx2 = HasAvx2();
  std::size_t k = 0;
  for (auto _ : state) {
    Copy& c = data->copies[k++ % data->copies.size()];
    FloorStep(avx2,
              c.x.data_ptr<float>(),
              c.g.data_ptr<float>(),
              c.m.data_ptr<float>(),
              data->size());
    benchmark::ClobberMemory();
  }
  Finish(state, *data);
  if (!AllFinite(*data)) state.SkipWithError("non-finite value");
  RestoreManifold(*data);
}

void BM_SymoptFused(benchmark::State& state) {
  DataSet* data = Prepare(state);
  if (data == nullptr) return;
  const Oblique<float> man(data->rows, data->cols);
  const symopt::StepOptions o = FusedOptions();
  std::size_t k = 0;
  std::int64_t collapsed = 0;
  for (auto _ : state) {
    Copy& c = data->copies[k++ % data->copies.size()];
    collapsed +=
        man.Step(View(c.x), ConstView(c.g), View(c.m), o).collapsed_rows;
    benchmark::ClobberMemory();
  }
  Finish(state, *data);
  if (collapsed != 0) state.SkipWithError("rows collapsed");
  ValidateUnitRows(state, *data);
}

void BM_SymoptTorchAdapter(benchmark::State& state) {
  DataSet* data = Prepare(state);
  if (data == nullptr) return;
  // One optimizer per copy (each holds its momentum buffer), bound by one
  // untimed step each.
  std::vector<std::unique_ptr<symopt::TorchRiemannianSgd<float>>> opts;
  for (const Copy& c : data->copies) {
    opts.push_back(MakeAdapter(c.x));
    opts.back()->step();
  }
  std::size_t k = 0;
  std::int64_t collapsed = 0;
  for (auto _ : state) {
    symopt::TorchRiemannianSgd<float>& opt = *opts[k++ % opts.size()];
    opt.step();
    collapsed += opt.last_summary().retract.collapsed_rows;
    benchmark::ClobberMemory();
  }
  Finish(state, *data);
  if (collapsed != 0) state.SkipWithError("rows collapsed");
  ValidateUnitRows(state, *data);
}

void BM_TorchComposedGeoopt(benchmark::State& state) {
  DataSet* data = Prepare(state);
  if (data == nullptr) return;
  std::size_t k = 0;
  for (auto _ : state) {
    Copy& c = data->copies[k++ % data->copies.size()];
    GeooptSphereStep(c.x, c.m);
    benchmark::ClobberMemory();
  }
  Finish(state, *data);
  ValidateUnitRows(state, *data);
}

void BM_TorchEuclideanSgd(benchmark::State& state) {
  DataSet* data = Prepare(state);
  if (data == nullptr) return;
  // One optimizer per copy; one untimed step each creates its buffer.
  std::vector<std::unique_ptr<torch::optim::SGD>> opts;
  for (const Copy& c : data->copies) {
    opts.push_back(std::make_unique<torch::optim::SGD>(
        std::vector<torch::Tensor>{c.x},
        torch::optim::SGDOptions(kLr).momentum(kBeta)));
    opts.back()->step();
  }
  std::size_t k = 0;
  for (auto _ : state) {
    opts[k++ % opts.size()]->step();
    benchmark::ClobberMemory();
  }
  Finish(state, *data);
  if (!AllFinite(*data)) state.SkipWithError("non-finite value");
  RestoreManifold(*data);
}

// Shapes in the order they run, so each data set is built once: every kind
// of one shape runs back to back. The last shape (a 64 x 3 x 5 x 5 conv
// layer) stays in cache.
void Register() {
  std::vector<std::vector<std::int64_t>> args;
  for (const auto& s : {std::vector<std::int64_t>{512, 784, 0},
                        {4096, 4096, 0},
                        {678, 9216, 0},
                        {64, 3 * 5 * 5, 1}}) {
    for (std::int64_t threads : {1, 2})
      args.push_back({s[0], s[1], threads, s[2]});
  }
  symopt_bench::RegisterKinds(
      {{"BM_Floor", &BM_Floor},
       {"BM_SymoptFused", &BM_SymoptFused},
       {"BM_SymoptTorchAdapter", &BM_SymoptTorchAdapter},
       {"BM_TorchComposedGeoopt", &BM_TorchComposedGeoopt},
       {"BM_TorchEuclideanSgd", &BM_TorchEuclideanSgd}},
      args,
      {"rows", "cols", "threads", "in_cache"});
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  Register();
  std::printf(
      "last-level cache: %lld bytes; working set >= %.0fx that (in_cache:0)\n",
      static_cast<long long>(LastLevelCacheBytes()),
      kLlcMultiple);
  symopt_bench::BestTimeReporter reporter(
      {{"BM_Floor", "floor"},
       {"BM_SymoptFused", "fused"},
       {"BM_SymoptTorchAdapter", "adapter"},
       {"BM_TorchComposedGeoopt", "composed"},
       {"BM_TorchEuclideanSgd", "torch_sgd"}},
      {{"comp/fus", "BM_TorchComposedGeoopt", "BM_SymoptFused"},
       {"adap/fus", "BM_SymoptTorchAdapter", "BM_SymoptFused"},
       {"sgd/fus", "BM_TorchEuclideanSgd", "BM_SymoptFused"},
       {"fus/floor", "BM_SymoptFused", "BM_Floor"}});
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
