// Constraint engine benchmarks (STYLE B1): the FIAN layer of paper 000
// (4068 outputs x 9216 inputs = 256 channels x 6 x 6 flipped along the width,
// 37.5M weights) solved exactly, and the tie projection over its result.
//
//   BM_FianFlipSolve/factored    the default: union-find over the 9216 inputs,
//                                pattern repeated per row
//   BM_FianFlipSolve/full        SolveOptions::factor_rows = false: union-find
//                                over all 37.5M entries (the general path)
//   BM_FianTieProjection         Solution::ProjectE (the engine's own
//                                scatter-mean, double) over the result, in
//                                place
//   BM_FianTieSubspaceProject    the hand-over: TieSubspace<float> built from
//                                the result (MakeManifold), ProjectInPlace on
//                                one thread -- to compare with tie_bench's
//                                BM_TieProject/fian_4068x9216/1 (float, whole-
//                                row mirror pairs there, width-6 mirrors here)
//   BM_NullspaceBlockAverage/n   the dense path (down-up scaling on n inputs)
//
// Memory: every operator new/delete of the process is counted (a size header
// before each block), so a benchmark reports the peak heap bytes a Solve call
// holds beyond what was live before it, per weight, in 32-bit integers
// ("int32_per_weight": the solution's own class ids count as 1; the target is
// at most 2). Results are validated after the timed loop.
//
// Run: build/bench/constraint_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

#include "manifolds/parallel.h"
#include "symmetry/constraint.h"

namespace {

std::atomic<std::int64_t> g_live{0};
std::atomic<std::int64_t> g_peak{0};
constexpr std::size_t kHeader = 16;  // keeps the default 16-byte alignment

void* CountedAlloc(std::size_t n) {
  void* raw = std::malloc(n + kHeader);
  if (raw == nullptr) throw std::bad_alloc();
  *static_cast<std::size_t*>(raw) = n;
  const std::int64_t live = g_live.fetch_add(static_cast<std::int64_t>(n)) +
                            static_cast<std::int64_t>(n);
  std::int64_t peak = g_peak.load();
  while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
  }
  return static_cast<char*>(raw) + kHeader;
}

void CountedFree(void* p) {
  if (p == nullptr) return;
  void* raw = static_cast<char*>(p) - kHeader;
  g_live.fetch_sub(static_cast<std::int64_t>(*static_cast<std::size_t*>(raw)));
  std::free(raw);
}

// Peak heap growth of f() over the bytes live before it.
template <typename F>
std::int64_t PeakExtraBytes(F f) {
  const std::int64_t before = g_live.load();
  g_peak.store(before);
  f();
  return g_peak.load() - before;
}

}  // namespace

void* operator new(std::size_t n) { return CountedAlloc(n); }
void* operator new[](std::size_t n) { return CountedAlloc(n); }
void operator delete(void* p) noexcept { CountedFree(p); }
void operator delete[](void* p) noexcept { CountedFree(p); }
void operator delete(void* p, std::size_t) noexcept { CountedFree(p); }
void operator delete[](void* p, std::size_t) noexcept { CountedFree(p); }

namespace {

using namespace symopt;

const Shape& FianInput() {
  static const Shape in({256, 6, 6});
  return in;
}
const Shape& FianOutput() {
  static const Shape out({4068});
  return out;
}

ConstraintProblem FianProblem() {
  ConstraintProblem p(FianOutput(), FianInput());
  p.AddInvariance(Transform::Flip(FianInput(), 2));
  return p;
}

// Every entry's mirror partner shares its class; classes are pairs; numbering
// is by first occurrence.
bool ValidFian(const Solution& s) {
  const Shape& in = FianInput();
  const std::int64_t cols = in.size();
  if (!s.is_tie || s.rows != 4068 || s.cols != cols || s.num_zero != 0)
    return false;
  if (s.dim != s.rows * cols / 2) return false;
  std::vector<std::int64_t> mirror(cols);
  for (std::int64_t i = 0; i < cols; ++i) {
    std::vector<std::int64_t> idx = in.Unflatten(i);
    idx[2] = 5 - idx[2];
    mirror[i] = in.Flatten(idx);
  }
  std::int32_t next = 0;
  for (std::int64_t j = 0; j < s.rows; ++j) {
    const std::int32_t* row = s.ties.class_of.data() + j * cols;
    for (std::int64_t i = 0; i < cols; ++i) {
      if (row[i] != row[mirror[i]]) return false;
      if (row[i] == next) {
        ++next;
      } else if (row[i] > next) {
        return false;
      }
    }
  }
  return next == s.dim && std::all_of(s.class_size.begin(),
                                      s.class_size.end(),
                                      [](std::int32_t c) { return c == 2; });
}

void BM_FianFlipSolve(benchmark::State& state) {
  const ConstraintProblem problem = FianProblem();
  SolveOptions options;
  options.factor_rows = state.range(0) != 0;
  const double n = static_cast<double>(problem.ambient_size());
  std::int64_t peak = 0;
  Solution last;
  for (auto _ : state) {
    last = Solution();  // release the previous result outside the measurement
    peak = std::max(peak, PeakExtraBytes([&] {
                      Solution s = Solve(problem, options);
                      benchmark::DoNotOptimize(s.ties.class_of.data());
                      last = std::move(s);
                    }));
  }
  if (!ValidFian(last)) state.SkipWithError("FIAN solution is wrong");
  state.counters["weights"] = n;
  state.counters["dim"] = static_cast<double>(last.dim);
  state.counters["peak_MB"] = static_cast<double>(peak) / 1e6;
  state.counters["int32_per_weight"] = static_cast<double>(peak) / (4.0 * n);
  state.SetLabel(SolveMethodName(last.method));
}
BENCHMARK(BM_FianFlipSolve)
    ->ArgName("factored")
    ->Arg(1)
    ->Arg(0)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);

void BM_FianTieProjection(benchmark::State& state) {
  const Solution s = Solve(FianProblem());
  const std::int64_t n = s.ambient_size();
  std::vector<double> w(n);
  for (std::int64_t k = 0; k < n; ++k)
    w[k] = static_cast<double>(k % 1009) - 500.0;
  for (auto _ : state) {
    s.ProjectE(w.data(), w.data());  // in place
    benchmark::ClobberMemory();
  }
  // Validate: the result is in E (mirror entries equal) and Pi_E is idempotent.
  std::vector<double> again(w);
  s.ProjectE(again.data(), again.data());
  bool ok = again == w;
  for (std::int64_t k = 0; k < n && ok; k += 4099) {
    const std::int64_t j = k / s.cols, i = k % s.cols;
    const std::int64_t mi = i - (i % 6) + (5 - i % 6);
    ok = w[k] == w[j * s.cols + mi];
  }
  if (!ok) state.SkipWithError("projection result is not in E");
  state.SetBytesProcessed(
      state.iterations() * n *
      std::int64_t(2 * sizeof(double) + sizeof(std::int32_t)));
  state.counters["weights"] = static_cast<double>(n);
}
BENCHMARK(BM_FianTieProjection)->Unit(benchmark::kMillisecond)->MinTime(1.0);

void BM_FianTieSubspaceProject(benchmark::State& state) {
  SetNumThreads(static_cast<int>(state.range(0)));
  const Solution s = Solve(FianProblem());
  const std::unique_ptr<Manifold<float>> m = MakeManifold<float>(s);
  const auto* tie = dynamic_cast<const TieSubspace<float>*>(m.get());
  if (tie == nullptr) {
    state.SkipWithError("FIAN solution did not become a TieSubspace");
    return;
  }
  const std::int64_t n = s.ambient_size();
  std::vector<float> w(n);
  for (std::int64_t k = 0; k < n; ++k)
    w[k] = static_cast<float>(k % 1009) - 500.0f;
  const TensorView<float> view(w.data(), s.rows, s.cols);
  for (auto _ : state) {
    tie->ProjectInPlace(view);
    benchmark::ClobberMemory();
  }
  // Validate against the engine's own projection (double).
  std::vector<double> wd(w.begin(), w.end()), pd(n);
  s.ProjectE(wd.data(), pd.data());
  double worst = 0.0;
  for (std::int64_t k = 0; k < n; ++k)
    worst = std::max(worst, std::abs(pd[k] - wd[k]));
  if (worst > 1e-3)
    state.SkipWithError("TieSubspace projection is not idempotent on E");
  state.SetLabel(TieLayoutName(tie->layout()));
  state.SetBytesProcessed(state.iterations() * n * 2 *
                          static_cast<std::int64_t>(sizeof(float)));
  state.counters["weights"] = static_cast<double>(n);
}
BENCHMARK(BM_FianTieSubspaceProject)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);

void BM_NullspaceBlockAverage(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const Shape in({n});
  ConstraintProblem p(Shape({1}), in);
  p.AddInvariance(Transform::BlockAverage(in, 0, 4));
  Solution s;
  for (auto _ : state) {
    s = Solve(p);
    benchmark::DoNotOptimize(s.dim);
  }
  if (!s.is_tie || s.dim != n / 4)
    state.SkipWithError("block average solution is wrong");
  state.SetLabel(SolveMethodName(s.method));
}
BENCHMARK(BM_NullspaceBlockAverage)
    ->Arg(64)
    ->Arg(256)
    ->Arg(512)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
