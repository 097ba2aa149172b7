// What the step benchmarks share (oblique_bench, torch_step_bench): the
// last-level cache size that sizes their out-of-cache working sets, the
// arrays they allocate (and the page size behind them), the memory-bandwidth
// floor they divide by, and a console reporter that keeps each benchmark's
// best time for the ratio table printed at the end.
#pragma once

#include <benchmark/benchmark.h>
#include <omp.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

namespace symopt_bench {

// An array of floats for out-of-cache data, 2 MiB-aligned, in a mapping of
// its own (mmap, so no other allocation shares its pages or its
// madvise flags). With huge, its pages are asked to be 2 MiB
// (madvise(MADV_HUGEPAGE) before the first touch: Linux's transparent huge
// pages grant it in the "madvise" and "always" modes); without, 4 KiB
// (MADV_NOHUGEPAGE, which "always" would otherwise override). The page size
// matters: on the development machine (a virtual machine) one streaming
// loop over 4 KiB pages took up to 15% longer on some arrays than on others
// (3% over 2 MiB pages; the spread changes over the day), so two loops timed on
// different 4 KiB-page arrays are not compared on equal terms
// (bench/experiments/page_placement.cpp; docs/oblique.md, "Benchmarks").
// HugePageBytes() reports what the kernel granted.
class FloatArrayDeleter {
 public:
  FloatArrayDeleter() = default;
  explicit FloatArrayDeleter(std::size_t bytes) : bytes_(bytes) {}
  void operator()(float* p) const {
#if defined(__linux__)
    munmap(p, bytes_);
#else
    std::free(p);
#endif
  }

 private:
  std::size_t bytes_ = 0;
};
using FloatArray = std::unique_ptr<float[], FloatArrayDeleter>;

constexpr std::size_t kFloatArrayAlign = std::size_t(2) << 20;

// The bytes AllocateFloats(n, ...) maps: n floats rounded up to 2 MiB.
inline std::size_t FloatArrayBytes(std::int64_t n) {
  return (std::size_t(n) * sizeof(float) + kFloatArrayAlign - 1) /
         kFloatArrayAlign * kFloatArrayAlign;
}

inline FloatArray AllocateFloats(std::int64_t n, bool huge) {
  constexpr std::size_t kAlign = kFloatArrayAlign;
  const std::size_t bytes = FloatArrayBytes(n);
#if defined(__linux__)
  // Map kAlign more than needed, then unmap the unaligned head and the tail.
  void* raw = mmap(nullptr,
                   bytes + kAlign,
                   PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS,
                   -1,
                   0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  char* const base = static_cast<char*>(raw);
  char* const start = base + (kAlign - reinterpret_cast<std::uintptr_t>(raw) %
                                           kAlign) % kAlign;
  if (start > base) munmap(base, std::size_t(start - base));
  char* const end = base + bytes + kAlign;
  if (end > start + bytes) munmap(start + bytes, std::size_t(end - start - bytes));
  madvise(start, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  return FloatArray(reinterpret_cast<float*>(start), FloatArrayDeleter(bytes));
#else
  (void)huge;
  FloatArray a(static_cast<float*>(std::aligned_alloc(kAlign, bytes)));
  if (!a) throw std::bad_alloc();
  return a;
#endif
}

// Bytes of this process's anonymous memory backed by transparent huge pages
// (AnonHugePages in /proc/self/smaps_rollup; 0 where unavailable).
inline double HugePageBytes() {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string key;
  double kib = 0;
  while (in >> key) {
    if (key == "AnonHugePages:") {
      in >> kib;
      return kib * 1024;
    }
    in.ignore(1 << 12, '\n');
  }
  return 0;
}

// The floor's step: m = kFloorBeta m + g; x -= kFloorLr m.
constexpr float kFloorLr = 0.01f;
constexpr float kFloorBeta = 0.9f;

// Last-level cache size in bytes, as lscpu reports it (sysfs);
// SYMOPT_BENCH_LLC_BYTES overrides it.
inline std::int64_t LastLevelCacheBytes() {
  if (const char* env = std::getenv("SYMOPT_BENCH_LLC_BYTES")) {
    return std::atoll(env);
  }
  std::int64_t best = 0;
  for (int index = 0; index < 8; ++index) {
    std::ifstream in("/sys/devices/system/cpu/cpu0/cache/index" +
                     std::to_string(index) + "/size");
    std::string text;
    if (!(in >> text)) continue;
    std::int64_t value = std::atoll(text.c_str());
    if (text.back() == 'K') value <<= 10;
    if (text.back() == 'M') value <<= 20;
    best = std::max(best, value);
  }
  return best > 0 ? best : std::int64_t(32) << 20;
}

// The floor: the traffic of a fused optimizer step (read x, g, m; write x,
// m in place) with the least arithmetic, vectorised.
inline void FloorChunk(float* __restrict x,
                       const float* __restrict g,
                       float* __restrict m,
                       std::int64_t begin,
                       std::int64_t end) {
  for (std::int64_t i = begin; i < end; ++i) {
    const float mi = kFloorBeta * m[i] + g[i];
    m[i] = mi;
    x[i] -= kFloorLr * mi;
  }
}

// The benchmarks are built for baseline x86-64; the fused oblique step runs
// an AVX2+FMA kernel where the CPU has it, and so does FloorChunkAvx2 (3-8%
// faster than the baseline build on the development machine).
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) inline void FloorChunkAvx2(
    float* x, const float* g, float* m, std::int64_t begin, std::int64_t end) {
  FloorChunk(x, g, m, begin, end);
}

inline bool HasAvx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
inline void FloorChunkAvx2(
    float* x, const float* g, float* m, std::int64_t begin, std::int64_t end) {
  FloorChunk(x, g, m, begin, end);
}

inline bool HasAvx2() { return false; }
#endif

// One floor step over n entries, each OpenMP thread on a contiguous part (as
// the fused step splits its rows); one thread below 2^18 entries.
inline void FloorStep(
    bool avx2, float* x, const float* g, float* m, std::int64_t n) {
#pragma omp parallel if (n >= (1 << 18))
  {
    const std::int64_t threads = omp_get_num_threads();
    const std::int64_t t = omp_get_thread_num();
    const std::int64_t begin = n * t / threads, end = n * (t + 1) / threads;
    if (avx2) {
      FloorChunkAvx2(x, g, m, begin, end);
    } else {
      FloorChunk(x, g, m, begin, end);
    }
  }
}

// One benchmark function per kind, registered for every argument list in
// `args` (in that order, so consecutive kinds share one data set), real time,
// microseconds.
using BenchmarkFn = void (*)(benchmark::State&);
inline void RegisterKinds(
    const std::vector<std::pair<const char*, BenchmarkFn>>& kinds,
    const std::vector<std::vector<std::int64_t>>& args,
    const std::vector<std::string>& arg_names) {
  for (const std::vector<std::int64_t>& a : args) {
    for (const auto& [name, fn] : kinds) {
      benchmark::RegisterBenchmark(name, fn)
          ->Args(a)
          ->ArgNames(arg_names)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

// A ratio column of the tables: label = time(numerator) / time(denominator).
struct RatioColumn {
  const char* label;
  const char* numerator;
  const char* denominator;
};

// A column of the counters table: the median, over repetitions, of the
// counter `counter` of benchmark `kind`.
struct CounterColumn {
  const char* kind;
  const char* counter;
  const char* label;
};

// Console output, and at the end two tables, one row per argument list
// ("/args...", the name after the benchmark's own): the best real time and
// the best CPU time of the main thread of each kind in `kinds` (benchmark
// names, microseconds; 0 where it did not run), then the ratios; and, with
// `counters`, a third table of their medians over repetitions.
class BestTimeReporter : public benchmark::ConsoleReporter {
 public:
  BestTimeReporter(std::vector<std::pair<const char*, const char*>> kinds,
                   std::vector<RatioColumn> ratios,
                   std::vector<CounterColumn> counters = {})
      : kinds_(std::move(kinds)),
        ratios_(std::move(ratios)),
        counters_(std::move(counters)) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred || run.run_type != Run::RT_Iteration) continue;
      const std::string name = run.benchmark_name();
      const std::string kind = name.substr(0, name.find('/'));
      const std::string key = name.substr(name.find('/'));
      for (const auto& k : kinds_) {
        if (kind != k.first) continue;
        Keep(best_real_[key][kind], run.GetAdjustedRealTime());
        Keep(best_cpu_[key][kind], run.GetAdjustedCPUTime());
      }
      for (const CounterColumn& c : counters_) {
        const auto it = run.counters.find(c.counter);
        if (kind == c.kind && it != run.counters.end()) {
          counter_values_[key][c.label].push_back(it->second.value);
        }
      }
    }
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    PrintTable("best real time, us", best_real_);
    // The main thread's CPU time leaves out the time the benchmark was not
    // running on a shared machine; it measures the whole step only at one
    // thread.
    PrintTable("best CPU time, us", best_cpu_);
    if (!counters_.empty()) PrintCounters();
  }

 private:
  using Table = std::map<std::string, std::map<std::string, double>>;

  void PrintCounters() {
    std::printf("\n%-58s", "shape/threads (median over repetitions)");
    for (const CounterColumn& c : counters_) std::printf(" %11s", c.label);
    std::printf("\n");
    for (auto& [key, columns] : counter_values_) {
      std::printf("%-58s", key.c_str());
      for (const CounterColumn& c : counters_) {
        std::vector<double>& v = columns[c.label];
        double median = 0;
        if (!v.empty()) {
          std::sort(v.begin(), v.end());
          median = v[v.size() / 2];
        }
        std::printf(" %11.3f", median);
      }
      std::printf("\n");
    }
  }

  static void Keep(double& best, double t) {
    best = best == 0 ? t : std::min(best, t);
  }

  void PrintTable(const char* what, Table& table) const {
    std::printf("\n%-58s",
                ("shape/threads (" + std::string(what) + ")").c_str());
    for (const auto& kind : kinds_) std::printf(" %10s", kind.second);
    for (const RatioColumn& r : ratios_) std::printf(" %11s", r.label);
    std::printf("\n");
    for (auto& [key, times] : table) {
      std::printf("%-58s", key.c_str());
      for (const auto& kind : kinds_) std::printf(" %10.1f", times[kind.first]);
      for (const RatioColumn& r : ratios_) {
        const double a = times[r.numerator], b = times[r.denominator];
        std::printf(" %11.3f", b > 0 ? a / b : 0.0);
      }
      std::printf("\n");
    }
  }

  std::vector<std::pair<const char*, const char*>> kinds_;  // name, header
  std::vector<RatioColumn> ratios_;
  std::vector<CounterColumn> counters_;
  Table best_real_, best_cpu_;
  std::map<std::string, std::map<std::string, std::vector<double>>>
      counter_values_;
};

}  // namespace symopt_bench
