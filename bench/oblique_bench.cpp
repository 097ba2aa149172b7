// The fused oblique SGD + momentum step (float) next to the unfused
// composition and a memory-bandwidth floor, all measured in this binary
// (issue 2):
//
//   BM_Floor/rows/cols/threads/huge
//       m = beta m + g; x -= lr m (read 3, write 2), compiled for AVX2+FMA
//       where the CPU has it, like the fused step's kernel
//   BM_FloorBaseline/rows/cols/threads/huge
//       the same loop built for baseline x86-64 (the earlier floor)
//   BM_Fused/rows/cols/threads/huge
//       Oblique<float>::Step (one pass over memory per row)
//   BM_Composed/rows/cols/threads/huge
//       Oblique<float>::StepComposed, preallocated scratch (project, axpby,
//       copy, retract, transport: one BLAS-1 pass after another)
//   BM_Paired/rows/cols/threads/huge
//       BM_Fused and BM_Floor timed back to back in every iteration, each a
//       block of steps over the same copies (the iteration's time is the
//       fused step's); counters: the medians of their times per step and
//       of their ratio
//
// Every benchmark moves the same 5 arrays' worth of bytes per step (x, g, m
// read; x, m written) and reports it with SetBytesProcessed, so
// bytes_per_second compare directly. Data are not in cache: each shape gets
// enough independent copies of (x, g, m) that they fill kLlcMultiple times the
// last-level cache (read from sysfs, like lscpu; SYMOPT_BENCH_LLC_BYTES
// overrides), and every iteration steps the next copy. After the timed loop
// every row of every copy is checked to have unit norm.
//
// huge:1 asks for 2 MiB pages for the arrays, huge:0 for 4 KiB pages (see
// AllocateFloats in bench_common.h); the counter huge_pages is the fraction
// of the data the kernel put on 2 MiB pages. Every kind steps the same
// arrays, so all run on the same pages.
//
// At exit a table gives, per shape and thread count, the best real time of
// each kind and the ratios fused/floor (target <= 1.15), fused/floor_base and
// composed/fused (target >= 3); a second table gives the same from the main
// thread's CPU time (meaningful at one thread on a machine shared with other
// work), and a third the medians over repetitions of BM_Paired's counters.
// Use --benchmark_repetitions=N to take the best of N.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "bench_common.h"
#include "manifolds/oblique.h"
#include "manifolds/parallel.h"

namespace {

using symopt::Oblique;
using symopt::StepOptions;
using symopt::TensorView;
using symopt_bench::FloorStep;
using symopt_bench::HasAvx2;
using symopt_bench::LastLevelCacheBytes;

constexpr double kLlcMultiple = 4;
// BM_Paired's iterations per repetition: each iteration is two blocks of at
// least two steps (0.5-2 s per repetition on the development machine), and
// its time is per step, so Google Benchmark's own choice (enough iterations
// for 0.5 s of per-step time) would run 2 x copies times as long.
constexpr benchmark::IterationCount kPairedIterations = 60;
constexpr float kLr =
    symopt_bench::kFloorLr;  // the floor's, so both do one step alike
constexpr float kBeta = symopt_bench::kFloorBeta;

using Buffer = symopt_bench::FloatArray;

struct Copy {
  Buffer x, g, m;
};

// The data of one shape and page size, kept while consecutive benchmarks use
// it.
struct DataSet {
  std::int64_t rows = 0, cols = 0;
  bool huge = false;  // 2 MiB pages asked for
  std::vector<Copy> copies;
  std::vector<Copy> saved;  // BM_Paired: x and m while the floor steps them
  Buffer scratch;  // 2 * rows * cols, shared by the copies (StepComposed)
  double huge_fraction = 0;  // of the copies' mapped bytes, on 2 MiB pages

  std::int64_t size() const { return rows * cols; }
};

// A copy of `from`, or (null) fresh arrays, of n entries.
Copy MakeCopy(std::int64_t n, bool huge, const Copy* from) {
  Copy c{symopt_bench::AllocateFloats(n, huge),
         symopt_bench::AllocateFloats(n, huge),
         symopt_bench::AllocateFloats(n, huge)};
  if (from != nullptr) {
    std::copy(from->x.get(), from->x.get() + n, c.x.get());
    std::copy(from->g.get(), from->g.get() + n, c.g.get());
    std::copy(from->m.get(), from->m.get() + n, c.m.get());
  }
  return c;
}

DataSet& Data(std::int64_t rows, std::int64_t cols, bool huge) {
  static DataSet data;
  if (data.rows == rows && data.cols == cols && data.huge == huge &&
      !data.copies.empty()) {
    return data;
  }
  data = DataSet();  // free the previous shape first
  data.rows = rows;
  data.cols = cols;
  data.huge = huge;
  const std::int64_t n = rows * cols;
  const double set_bytes = 3.0 * n * sizeof(float);
  const auto copies = std::max<std::int64_t>(
      1,
      std::int64_t(
          std::ceil(kLlcMultiple * LastLevelCacheBytes() / set_bytes)));
  const double huge_before = symopt_bench::HugePageBytes();
  Oblique<float> man(rows, cols);
  std::mt19937_64 rng(42);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Copy first = MakeCopy(n, huge, nullptr);
  man.RandomPoint(TensorView<float>(first.x.get(), rows, cols), 7);
  for (std::int64_t i = 0; i < n; ++i) first.g[i] = 0.1f * normal(rng);
  for (std::int64_t i = 0; i < n; ++i) first.m[i] = 0.1f * normal(rng);
  man.Project(TensorView<const float>(first.x.get(), rows, cols),
              TensorView<float>(first.m.get(), rows, cols));
  for (std::int64_t c = 1; c < copies; ++c) {
    data.copies.push_back(MakeCopy(n, huge, &first));
  }
  data.copies.push_back(std::move(first));
  data.huge_fraction =
      (symopt_bench::HugePageBytes() - huge_before) /
      (3.0 * double(copies) * double(symopt_bench::FloatArrayBytes(n)));
  data.scratch = symopt_bench::AllocateFloats(2 * n, huge);
  std::fill(data.scratch.get(), data.scratch.get() + 2 * n, 0.0f);
  return data;
}

DataSet& Data(const benchmark::State& state) {
  return Data(state.range(0), state.range(1), state.range(3) != 0);
}

StepOptions Options() {
  StepOptions o;
  o.lr = kLr;
  o.momentum = kBeta;
  return o;
}

// Largest |row norm - 1| over every copy (in double), or a negative value
// when something is not finite.
double WorstRowError(const DataSet& data) {
  double worst = 0;
  for (const Copy& c : data.copies) {
    for (std::int64_t r = 0; r < data.rows; ++r) {
      double s = 0;
      for (std::int64_t i = 0; i < data.cols; ++i) {
        const double e = c.x[r * data.cols + i];
        s += e * e;
      }
      if (!std::isfinite(s)) return -1;
      worst = std::max(worst, std::abs(std::sqrt(s) - 1.0));
    }
  }
  return worst;
}

// Momentum entries in float's subnormal range, over every copy.
double SubnormalMomenta(const DataSet& data) {
  std::int64_t count = 0;
  for (const Copy& c : data.copies) {
    for (std::int64_t i = 0; i < data.size(); ++i) {
      count += std::fpclassify(c.m[i]) == FP_SUBNORMAL;
    }
  }
  return double(count);
}

void Finish(benchmark::State& state, const DataSet& data) {
  state.SetBytesProcessed(state.iterations() * 5 * data.size() *
                          std::int64_t(sizeof(float)));
  state.counters["copies"] = double(data.copies.size());
  state.counters["threads"] = double(symopt::NumThreads());
  state.counters["huge_pages"] = data.huge_fraction;
}

void ValidateUnitRows(benchmark::State& state, const DataSet& data) {
  const double worst = WorstRowError(data);
  state.counters["max_norm_err"] = worst;
  state.counters["subnormal_m"] = SubnormalMomenta(data);
  if (!(worst >= 0 && worst <= 1e-5)) {
    state.SkipWithError("a row left the oblique manifold");
  }
}

void RunFloor(benchmark::State& state, bool avx2) {
  DataSet& data = Data(state);
  symopt::SetNumThreads(int(state.range(2)));
  std::size_t k = 0;
  for (auto _ : state) {
    Copy& c = data.copies[k++ % data.copies.size()];
    FloorStep(avx2, c.x.get(), c.g.get(), c.m.get(), data.size());
    benchmark::ClobberMemory();
  }
  Finish(state, data);
  // The floor's "x" leaves the manifold; only finiteness is meaningful.
  for (const Copy& c : data.copies) {
    for (std::int64_t i = 0; i < data.size(); ++i) {
      if (!std::isfinite(c.x[i]) || !std::isfinite(c.m[i])) {
        state.SkipWithError("floor produced a non-finite value");
        return;
      }
    }
  }
  // Put the copies back on the manifold (and their buffers in the tangent
  // space) for the benchmarks that follow.
  Oblique<float> man(data.rows, data.cols);
  for (Copy& c : data.copies) {
    man.ProjectPoint(TensorView<float>(c.x.get(), data.rows, data.cols));
    man.Project(TensorView<const float>(c.x.get(), data.rows, data.cols),
                TensorView<float>(c.m.get(), data.rows, data.cols));
  }
}

// The floor in the instruction set of the fused step's kernel.
void BM_Floor(benchmark::State& state) { RunFloor(state, HasAvx2()); }

// The floor built for baseline x86-64 (the floor of earlier results).
void BM_FloorBaseline(benchmark::State& state) { RunFloor(state, false); }

// One fused step of copy c; returns the rows that collapsed.
std::int64_t FusedStep(const Oblique<float>& man,
                       const DataSet& data,
                       Copy& c,
                       const StepOptions& o) {
  const std::int64_t collapsed =
      man.Step(TensorView<float>(c.x.get(), data.rows, data.cols),
               TensorView<const float>(c.g.get(), data.rows, data.cols),
               TensorView<float>(c.m.get(), data.rows, data.cols),
               o)
          .collapsed_rows;
  benchmark::ClobberMemory();
  return collapsed;
}

void BM_Fused(benchmark::State& state) {
  DataSet& data = Data(state);
  symopt::SetNumThreads(int(state.range(2)));
  const Oblique<float> man(data.rows, data.cols);
  const StepOptions o = Options();
  std::size_t k = 0;
  std::int64_t collapsed = 0;
  for (auto _ : state) {
    collapsed += FusedStep(man, data, data.copies[k++ % data.copies.size()], o);
  }
  Finish(state, data);
  if (collapsed != 0) state.SkipWithError("rows collapsed");
  ValidateUnitRows(state, data);
}

void BM_Composed(benchmark::State& state) {
  DataSet& data = Data(state);
  symopt::SetNumThreads(int(state.range(2)));
  const Oblique<float> man(data.rows, data.cols);
  const StepOptions o = Options();
  const TensorView<float> scratch(data.scratch.get(), 2 * data.rows, data.cols);
  std::size_t k = 0;
  std::int64_t collapsed = 0;
  for (auto _ : state) {
    Copy& c = data.copies[k++ % data.copies.size()];
    collapsed +=
        man.StepComposed(
               TensorView<float>(c.x.get(), data.rows, data.cols),
               TensorView<const float>(c.g.get(), data.rows, data.cols),
               TensorView<float>(c.m.get(), data.rows, data.cols),
               o,
               scratch)
            .collapsed_rows;
    benchmark::ClobberMemory();
  }
  Finish(state, data);
  if (collapsed != 0) state.SkipWithError("rows collapsed");
  ValidateUnitRows(state, data);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// The fused step and the AVX2 floor timed back to back in every iteration,
// each as a block of consecutive steps over the same out-of-cache copies, in
// alternating order. The floor runs on the very arrays the fused step runs
// on, so both kinds read and write the same pages: with 4 KiB pages the same
// floor's time on 4096 x 4096 differed by up to 15% between arrays on the
// development machine (see AllocateFloats). Its x leaves the manifold, so x
// and m are saved before the floor's block and put back after it (untimed;
// the fused block then follows a copy, as the floor's block follows the
// save). A block is one step per copy, at least two steps: a kernel then
// pays for writing back its own output, in steady state, and not for the
// other kernel's (the last-level cache holds up to 32 MiB of the previous
// block's dirty lines, a whole step of 512 x 784). The iteration's time is
// the fused block's per step (manual time); the counters are the medians
// over the iterations of the floor's and the fused step's time per step and
// of their ratio. Two blocks timed a few milliseconds apart see the same
// neighbours on a shared machine, where best-of-N times of separate
// benchmarks, seconds apart, do not.
void BM_Paired(benchmark::State& state) {
  DataSet& data = Data(state);
  const std::int64_t n = data.size();
  if (data.saved.empty()) {
    for (std::size_t c = 0; c < data.copies.size(); ++c) {
      data.saved.push_back(Copy{symopt_bench::AllocateFloats(n, data.huge),
                                nullptr,
                                symopt_bench::AllocateFloats(n, data.huge)});
    }
  }
  auto save = [&data, n](bool back) {
    for (std::size_t c = 0; c < data.copies.size(); ++c) {
      Copy& live = data.copies[c];
      Copy& kept = data.saved[c];
      if (back) {
        std::copy(kept.x.get(), kept.x.get() + n, live.x.get());
        std::copy(kept.m.get(), kept.m.get() + n, live.m.get());
      } else {
        std::copy(live.x.get(), live.x.get() + n, kept.x.get());
        std::copy(live.m.get(), live.m.get() + n, kept.m.get());
      }
    }
  };
  symopt::SetNumThreads(int(state.range(2)));
  const Oblique<float> man(data.rows, data.cols);
  const StepOptions o = Options();
  const bool avx2 = HasAvx2();
  const std::size_t block = std::max<std::size_t>(2, data.copies.size());
  std::vector<double> fused_s, floor_s, ratio;
  std::int64_t collapsed = 0;
  using Clock = std::chrono::steady_clock;
  auto seconds_per_step = [block](Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count() /
           double(block);
  };
  auto time_floor = [&] {
    save(false);
    const auto t0 = Clock::now();
    for (std::size_t k = 0; k < block; ++k) {
      Copy& f = data.copies[k % data.copies.size()];
      FloorStep(avx2, f.x.get(), f.g.get(), f.m.get(), n);
      benchmark::ClobberMemory();
    }
    const double t = seconds_per_step(t0);
    save(true);
    return t;
  };
  auto time_fused = [&] {
    const auto t0 = Clock::now();
    for (std::size_t k = 0; k < block; ++k) {
      collapsed += FusedStep(man, data, data.copies[k % data.copies.size()], o);
    }
    return seconds_per_step(t0);
  };
  bool floor_first = true;
  for (auto _ : state) {
    double t_floor = 0, t_fused = 0;
    if (floor_first) {
      t_floor = time_floor();
      t_fused = time_fused();
    } else {
      t_fused = time_fused();
      t_floor = time_floor();
    }
    floor_first = !floor_first;
    state.SetIterationTime(t_fused);
    fused_s.push_back(t_fused);
    floor_s.push_back(t_floor);
    ratio.push_back(t_fused / t_floor);
  }
  state.counters["floor_us"] = 1e6 * Median(floor_s);
  state.counters["fused_us"] = 1e6 * Median(fused_s);
  state.counters["fused_over_floor"] = Median(ratio);
  state.counters["copies"] = double(data.copies.size());
  state.counters["huge_pages"] = data.huge_fraction;
  if (collapsed != 0) state.SkipWithError("rows collapsed");
  ValidateUnitRows(state, data);
}

// Shapes in the order they run, so each data set is built once: floor, fused
// and composed of one shape and page size run back to back.
void Register() {
  std::vector<std::vector<std::int64_t>> args;
  for (const auto& [rows, cols] :
       {std::pair<std::int64_t, std::int64_t>{512, 784},
        {4096, 4096},
        {678, 9216}}) {
    for (std::int64_t huge : {1, 0}) {
      for (std::int64_t threads : {1, 2}) {
        args.push_back({rows, cols, threads, huge});
      }
    }
  }
  symopt_bench::RegisterKinds({{"BM_Floor", &BM_Floor},
                               {"BM_FloorBaseline", &BM_FloorBaseline},
                               {"BM_Fused", &BM_Fused},
                               {"BM_Composed", &BM_Composed}},
                              args,
                              {"rows", "cols", "threads", "huge"});
  for (const std::vector<std::int64_t>& a : args) {
    benchmark::RegisterBenchmark("BM_Paired", &BM_Paired)
        ->Args(a)
        ->Iterations(kPairedIterations)
        ->ArgNames({"rows", "cols", "threads", "huge"})
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  Register();
  std::printf("last-level cache: %lld bytes; working set >= %.0fx that\n",
              static_cast<long long>(LastLevelCacheBytes()),
              kLlcMultiple);
  symopt_bench::BestTimeReporter reporter(
      {{"BM_Floor", "floor"},
       {"BM_FloorBaseline", "floor_base"},
       {"BM_Fused", "fused"},
       {"BM_Composed", "composed"}},
      {{"fused/floor", "BM_Fused", "BM_Floor"},
       {"fused/base", "BM_Fused", "BM_FloorBaseline"},
       {"composed/fused", "BM_Composed", "BM_Fused"}},
      {{"BM_Paired", "floor_us", "floor"},
       {"BM_Paired", "fused_us", "fused"},
       {"BM_Paired", "fused_over_floor", "fused/floor"}});
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
