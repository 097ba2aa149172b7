// An experiment, not a benchmark of the library: does the time of one
// streaming loop depend on which memory it runs on? For the record in
// docs/oblique.md ("Benchmarks"), which explains why oblique_bench's
// BM_Paired times its floor on the fused step's own arrays. Not built by
// default:
//
//   cmake --build build --target page_placement
//   taskset -c 1 ./build/bench/page_placement [SETS] [ROUNDS] [ROWS COLS]
//
// SETS (default 6) sets of three float arrays (x, g, m) of ROWS x COLS
// entries (default 4096 x 4096) are allocated and filled one after the
// other; then every round times the bandwidth floor of bench_common.h
// (m = beta m + g; x -= lr m, AVX2+FMA where the CPU has it) twice on each
// set in turn, by the thread's CPU time. The table gives each set's best
// and median time per step over ROUNDS (default 15) rounds. A loop that did
// not care where its data lie would give the same time for every set.
// Environment:
//   HUGE=1    ask for 2 MiB pages (madvise(MADV_HUGEPAGE)); default 4 KiB
//             pages (MADV_NOHUGEPAGE)
//   MALLOC=1  allocate with std::aligned_alloc (2 MiB-aligned) as
//             oblique_bench did before 2026-11-21, instead of a mapping of
//             each array's own (AllocateFloats); HUGE=1 then madvises it
//   REVERSE=1 visit the sets in reverse order within each round
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

#include "bench_common.h"

namespace {

double ThreadSeconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// One array, from AllocateFloats or (MALLOC=1) from std::aligned_alloc.
class Array {
 public:
  Array(std::int64_t n, bool huge, bool use_malloc) {
    if (!use_malloc) {
      mapped_ = symopt_bench::AllocateFloats(n, huge);
      data_ = mapped_.get();
      return;
    }
    const std::size_t bytes = symopt_bench::FloatArrayBytes(n);
    malloced_.reset(static_cast<float*>(
        std::aligned_alloc(symopt_bench::kFloatArrayAlign, bytes)));
    if (!malloced_) throw std::bad_alloc();
    madvise(malloced_.get(), bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    data_ = malloced_.get();
  }
  float* data() const { return data_; }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  symopt_bench::FloatArray mapped_;
  std::unique_ptr<float[], Free> malloced_;
  float* data_ = nullptr;
};

struct Set {
  Array x, g, m;
};

}  // namespace

int main(int argc, char** argv) {
  const int sets = argc > 1 ? std::atoi(argv[1]) : 6;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 15;
  const std::int64_t rows = argc > 4 ? std::atoll(argv[3]) : 4096;
  const std::int64_t cols = argc > 4 ? std::atoll(argv[4]) : 4096;
  if (sets < 1 || rounds < 1 || rows < 1 || cols < 1) {
    std::fprintf(stderr,
                 "usage: page_placement [SETS >= 1] [ROUNDS >= 1] "
                 "[ROWS COLS >= 1]\n");
    return 2;
  }
  const bool huge = std::getenv("HUGE") != nullptr;
  const bool use_malloc = std::getenv("MALLOC") != nullptr;
  const bool reverse = std::getenv("REVERSE") != nullptr;
  const bool avx2 = symopt_bench::HasAvx2();
  const std::int64_t n = rows * cols;
  const double huge_before = symopt_bench::HugePageBytes();
  std::vector<Set> data;
  for (int s = 0; s < sets; ++s) {
    data.push_back(Set{Array(n, huge, use_malloc),
                       Array(n, huge, use_malloc),
                       Array(n, huge, use_malloc)});
    std::fill(data.back().x.data(), data.back().x.data() + n, 1.0f);
    std::fill(data.back().g.data(), data.back().g.data() + n, 1e-3f);
    std::fill(data.back().m.data(), data.back().m.data() + n, 0.0f);
  }
  const double huge_fraction =
      (symopt_bench::HugePageBytes() - huge_before) /
      (3.0 * sets * double(symopt_bench::FloatArrayBytes(n)));
  std::vector<std::vector<double>> ms(static_cast<std::size_t>(sets));
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < sets; ++k) {
      const int s = reverse ? sets - 1 - k : k;
      Set& d = data[std::size_t(s)];
      const double t0 = ThreadSeconds();
      for (int step = 0; step < 2; ++step) {
        symopt_bench::FloorStep(avx2, d.x.data(), d.g.data(), d.m.data(), n);
      }
      ms[std::size_t(s)].push_back((ThreadSeconds() - t0) / 2 * 1e3);
    }
  }
  std::printf(
      "%lld x %lld, %d sets (%s, %s pages asked; %.2f of them on 2 MiB "
      "pages), %d rounds%s\n",
      static_cast<long long>(rows),
      static_cast<long long>(cols),
      sets,
      use_malloc ? "aligned_alloc" : "mmap",
      huge ? "2 MiB" : "4 KiB",
      huge_fraction,
      rounds,
      reverse ? ", sets visited in reverse" : "");
  for (int s = 0; s < sets; ++s) {
    std::vector<double>& v = ms[std::size_t(s)];
    std::sort(v.begin(), v.end());
    std::printf("  set %d (allocated %s): best %.2f ms  median %.2f ms\n",
                s,
                s == 0 ? "first" : s == sets - 1 ? "last" : "     ",
                v.front(),
                v[v.size() / 2]);
  }
  return 0;
}
