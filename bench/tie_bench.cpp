// The tie projection Pi_E (every entry := mean of its class, in place, float)
// at 16M entries (2^24), with the classes laid out three ways:
//
//   contiguous  classes are runs of consecutive entries (pairs here);
//   orbit       mirror pairs (j, W-1-j) in every row of 4096 entries: the
//               flip-invariant pattern, stored row-periodically; and the FIAN
//               layer itself (4068 x 9216, 37.5M entries) with its floor,
//               both as whole-row mirror pairs and as the constraint engine
//               derives it (input [256, 6, 6] flipped along the width: mirror
//               pairs (w, 5-w) inside every 6-wide segment of a row);
//   scattered   random pairs (a random permutation cut into pairs), and
//               random classes of 1..8 members.
//
// Each is measured next to its own memory floor in the same binary: a loop
// that reads every value and a 32-bit class id per entry and writes the
// values back (the traffic of the simplest id-driven projection). The
// scattered cases are also measured against a plain CSR gather (offsets +
// member indices, class by class, as a textbook implementation stores it).
// The argument is the thread count (1 or 2). The result of every timed loop
// is validated after it (STYLE B1). Also measured: the fused SGD + momentum
// step on a tie subspace (against the unfused composition and the step's own
// floor, read x, g, m and write x, m) and the construction of the manifold
// from the class ids.
//
// Run:  build/bench/tie_bench --benchmark_min_time=1
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "manifolds/tie_subspace.h"

namespace {

using symopt::TiePattern;
using symopt::TieSubspace;
using View = symopt::TensorView<float>;

constexpr std::int64_t kRows16M = 4096, kCols16M = 4096;  // 2^24 entries

TiePattern ContiguousPairs(std::int64_t rows, std::int64_t cols) {
  TiePattern p{rows, cols, std::int32_t(rows * cols / 2), {}};
  p.class_of.resize(static_cast<std::size_t>(rows * cols));
  for (std::int64_t i = 0; i < rows * cols; ++i)
    p.class_of[i] = std::int32_t(i / 2);
  return p;
}

// Flip invariance along the columns: (r, j) ~ (r, cols - 1 - j).
TiePattern MirrorPairs(std::int64_t rows, std::int64_t cols) {
  const std::int64_t half = (cols + 1) / 2;
  TiePattern p{rows, cols, std::int32_t(rows * half), {}};
  p.class_of.resize(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t j = 0; j < cols; ++j) {
      p.class_of[r * cols + j] =
          std::int32_t(r * half + std::min(j, cols - 1 - j));
    }
  }
  return p;
}

// Flip invariance inside every seg-wide segment of a row: (r, s*seg + w) ~
// (r, s*seg + seg-1-w), ids by first appearance (as the engine numbers them).
TiePattern MirrorSegments(std::int64_t rows,
                          std::int64_t cols,
                          std::int64_t seg) {
  const std::int64_t half = seg / 2;  // seg even
  const std::int64_t per_row = cols / seg * half;
  TiePattern p{rows, cols, std::int32_t(rows * per_row), {}};
  p.class_of.resize(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t j = 0; j < cols; ++j) {
      const std::int64_t s = j / seg, w = j % seg;
      p.class_of[r * cols + j] =
          std::int32_t(r * per_row + s * half + std::min(w, seg - 1 - w));
    }
  }
  return p;
}

// A random permutation of the entries cut into classes of random size in
// [min_size, max_size].
TiePattern Scattered(std::int64_t rows,
                     std::int64_t cols,
                     int min_size,
                     int max_size,
                     std::uint64_t seed) {
  const std::int64_t n = rows * cols;
  std::vector<std::int32_t> perm(static_cast<std::size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::uniform_int_distribution<int> size(min_size, max_size);
  TiePattern p{
      rows, cols, 0, std::vector<std::int32_t>(static_cast<std::size_t>(n))};
  std::int64_t i = 0;
  while (i < n) {
    const std::int64_t s = std::min<std::int64_t>(size(rng), n - i);
    for (std::int64_t j = 0; j < s; ++j)
      p.class_of[perm[i + j]] = p.num_classes;
    ++p.num_classes;
    i += s;
  }
  return p;
}

// Patterns are built once (the scattered ones take a second).
const TiePattern& GetPattern(int which) {
  static std::vector<std::unique_ptr<TiePattern>> cache(6);
  if (!cache[which]) {
    switch (which) {
      case 0:
        cache[which] =
            std::make_unique<TiePattern>(ContiguousPairs(kRows16M, kCols16M));
        break;
      case 1:
        cache[which] =
            std::make_unique<TiePattern>(MirrorPairs(kRows16M, kCols16M));
        break;
      case 2:
        cache[which] = std::make_unique<TiePattern>(MirrorPairs(4068, 9216));
        break;
      case 3:
        cache[which] = std::make_unique<TiePattern>(
            Scattered(kRows16M, kCols16M, 2, 2, 7));
        break;
      case 4:
        cache[which] = std::make_unique<TiePattern>(
            Scattered(kRows16M, kCols16M, 1, 8, 8));
        break;
      default:
        cache[which] =
            std::make_unique<TiePattern>(MirrorSegments(4068, 9216, 6));
        break;
    }
  }
  return *cache[which];
}

const char* kPatternNames[] = {"contiguous_pairs",
                               "mirror_rows4096",
                               "fian_4068x9216",
                               "scattered_pairs",
                               "scattered_1to8",
                               "fian_seg6_4068x9216"};

std::vector<float> RandomValues(std::int64_t n) {
  std::vector<float> x(static_cast<std::size_t>(n));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& e : x) e = u(rng);
  return x;
}

void Fail(benchmark::State& state, const std::string& what) {
  state.SkipWithError(what.c_str());
}

// Class means of x (double), from the pattern: the validation reference.
std::vector<double> ClassMeans(const TiePattern& p,
                               const std::vector<float>& x) {
  std::vector<double> sum(static_cast<std::size_t>(p.num_classes), 0.0),
      count(sum.size(), 0.0);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::int32_t k = p.class_of[i];
    if (k == TiePattern::kZero) continue;
    sum[std::size_t(k)] += x[i];
    count[std::size_t(k)] += 1;
  }
  for (std::size_t k = 0; k < sum.size(); ++k) sum[k] /= count[k];
  return sum;
}

// After the timed loop x must equal Pi_E(x0) (Pi_E is idempotent).
bool IsProjectionOf(const TiePattern& p,
                    const std::vector<double>& means0,
                    const std::vector<float>& x) {
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::int32_t k = p.class_of[i];
    const double want = k == TiePattern::kZero ? 0.0 : means0[std::size_t(k)];
    if (std::abs(x[i] - want) > 1e-6 * (1.0 + std::abs(want))) return false;
  }
  return true;
}

void BM_TieProject(benchmark::State& state, int which) {
  omp_set_num_threads(int(state.range(0)));
  const TiePattern& p = GetPattern(which);
  const TieSubspace<float> m(p);
  std::vector<float> x = RandomValues(p.rows * p.cols);
  const std::vector<double> means0 = ClassMeans(p, x);
  const View xv(x.data(), p.rows, p.cols);
  for (auto _ : state) {
    m.ProjectInPlace(xv);
    benchmark::ClobberMemory();
  }
  if (!IsProjectionOf(p, means0, x)) Fail(state, "result is not Pi_E(x0)");
  state.SetItemsProcessed(state.iterations() * p.rows * p.cols);
  state.SetLabel(std::string(kPatternNames[which]) + " " +
                 symopt::TieLayoutName(m.layout()));
}

// The floor: read every value and a 32-bit class id, write the value.
// x_i := x_i * a + id_i * b with a = 1, b = 0 at run time, so the compiler can
// neither skip the id stream nor the store.
void BM_Floor(benchmark::State& state, int which) {
  omp_set_num_threads(int(state.range(0)));
  const TiePattern& p = GetPattern(which);
  const std::int64_t n = p.rows * p.cols;
  std::vector<float> x = RandomValues(n);
  const std::vector<float> x0 = x;
  const std::int32_t* ids = p.class_of.data();
  volatile float va = 1.0f, vb = 0.0f;
  const float a = va, b = vb;
  float* xs = x.data();
  for (auto _ : state) {
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) xs[i] = xs[i] * a + float(ids[i]) * b;
    benchmark::ClobberMemory();
  }
  if (x != x0) Fail(state, "floor loop changed the values");
  state.SetItemsProcessed(state.iterations() * n);
  state.SetLabel(kPatternNames[which]);
}

// A plain CSR gather: offsets (K + 1) and member indices in class order.
struct Csr {
  std::vector<std::int64_t> offsets;
  std::vector<std::int32_t> members;
};

Csr BuildCsr(const TiePattern& p) {
  Csr c;
  c.offsets.assign(static_cast<std::size_t>(p.num_classes) + 1, 0);
  for (auto k : p.class_of) {
    if (k != TiePattern::kZero) ++c.offsets[std::size_t(k) + 1];
  }
  for (std::size_t k = 0; k < std::size_t(p.num_classes); ++k)
    c.offsets[k + 1] += c.offsets[k];
  c.members.resize(static_cast<std::size_t>(c.offsets.back()));
  std::vector<std::int64_t> cursor(c.offsets.begin(), c.offsets.end() - 1);
  for (std::size_t i = 0; i < p.class_of.size(); ++i) {
    const std::int32_t k = p.class_of[i];
    if (k != TiePattern::kZero)
      c.members[std::size_t(cursor[std::size_t(k)]++)] = std::int32_t(i);
  }
  return c;
}

void BM_CsrGather(benchmark::State& state, int which) {
  omp_set_num_threads(int(state.range(0)));
  const TiePattern& p = GetPattern(which);
  const Csr c = BuildCsr(p);
  std::vector<float> x = RandomValues(p.rows * p.cols);
  const std::vector<double> means0 = ClassMeans(p, x);
  const std::int64_t k_classes = p.num_classes;
  const std::int64_t* off = c.offsets.data();
  const std::int32_t* mem = c.members.data();
  float* xs = x.data();
  for (auto _ : state) {
#pragma omp parallel for schedule(static)
    for (std::int64_t k = 0; k < k_classes; ++k) {
      double s = 0.0;
      for (std::int64_t j = off[k]; j < off[k + 1]; ++j) s += xs[mem[j]];
      const float mean = float(s / double(off[k + 1] - off[k]));
      for (std::int64_t j = off[k]; j < off[k + 1]; ++j) xs[mem[j]] = mean;
    }
    benchmark::ClobberMemory();
  }
  if (!IsProjectionOf(p, means0, x)) Fail(state, "result is not Pi_E(x0)");
  state.SetItemsProcessed(state.iterations() * p.rows * p.cols);
  state.SetLabel(kPatternNames[which]);
}

// The fused optimizer step (SGD + momentum 0.9) on a tie subspace, next to
// the composition of the individual operations and to the step's own floor:
// a loop that reads three arrays (x, g, m) and writes two (x, m) in place.
void BM_TieStep(benchmark::State& state, int which, bool fused) {
  omp_set_num_threads(int(state.range(0)));
  const TiePattern& p = GetPattern(which);
  const TieSubspace<float> m(p);
  const std::int64_t n = p.rows * p.cols;
  std::vector<float> x = RandomValues(n), g = RandomValues(n),
                     mom(static_cast<std::size_t>(n), 0.0f);
  std::vector<float> scratch(fused ? 0 : std::size_t(2 * n));
  m.ProjectInPlace(View(x.data(), p.rows, p.cols));
  symopt::StepOptions o;
  o.lr = 1e-4;
  o.momentum = 0.9;
  const View xv(x.data(), p.rows, p.cols), mv(mom.data(), p.rows, p.cols);
  const symopt::TensorView<const float> gv(g.data(), p.rows, p.cols);
  for (auto _ : state) {
    if (fused) {
      m.Step(xv, gv, mv, o);
    } else {
      m.StepComposed(xv, gv, mv, o, View(scratch.data(), 2 * p.rows, p.cols));
    }
    benchmark::ClobberMemory();
  }
  if (!(m.DistanceToManifold(xv) == 0.0) ||
      !(m.DistanceToManifold(mv) == 0.0)) {
    Fail(state, "x or m left the tie subspace");
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.SetLabel(std::string(kPatternNames[which]) + " " +
                 symopt::TieLayoutName(m.layout()));
}

void BM_StepFloor(benchmark::State& state, int which) {
  omp_set_num_threads(int(state.range(0)));
  const TiePattern& p = GetPattern(which);
  const std::int64_t n = p.rows * p.cols;
  std::vector<float> x = RandomValues(n), g = RandomValues(n),
                     mom(static_cast<std::size_t>(n), 0.0f);
  const std::vector<float> x0 = x;
  volatile float va = 1.0f, vb = 0.0f;
  const float a = va, b = vb;
  float* xs = x.data();
  float* ms = mom.data();
  const float* gs = g.data();
  for (auto _ : state) {
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) {
      const float gi = gs[i];
      ms[i] = ms[i] * a + gi * b;
      xs[i] = xs[i] * a + gi * b;
    }
    benchmark::ClobberMemory();
  }
  if (x != x0) Fail(state, "floor loop changed the values");
  state.SetItemsProcessed(state.iterations() * n);
  state.SetLabel(kPatternNames[which]);
}

// Building the manifold from the class ids (layout detection and index
// lists); serial.
void BM_TieBuild(benchmark::State& state, int which) {
  const TiePattern& p = GetPattern(which);
  std::int64_t index_bytes = 0;
  for (auto _ : state) {
    const TieSubspace<float> m(p);
    index_bytes = m.IndexBytes();
    benchmark::DoNotOptimize(index_bytes);
  }
  const TieSubspace<float> m(p);
  if (m.Pattern().class_of != p.class_of)
    Fail(state, "pattern did not round-trip");
  state.counters["index_bytes"] = double(index_bytes);
  state.SetItemsProcessed(state.iterations() * p.rows * p.cols);
  state.SetLabel(std::string(kPatternNames[which]) + " " +
                 symopt::TieLayoutName(m.layout()));
}

void Threads(benchmark::internal::Benchmark* b) {
  b->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK_CAPTURE(BM_Floor, contiguous_pairs, 0)->Apply(Threads);
BENCHMARK_CAPTURE(BM_TieProject, contiguous_pairs, 0)->Apply(Threads);
BENCHMARK_CAPTURE(BM_Floor, mirror_rows4096, 1)->Apply(Threads);
BENCHMARK_CAPTURE(BM_TieProject, mirror_rows4096, 1)->Apply(Threads);
BENCHMARK_CAPTURE(BM_Floor, fian_4068x9216, 2)->Apply(Threads);
BENCHMARK_CAPTURE(BM_TieProject, fian_4068x9216, 2)->Apply(Threads);
BENCHMARK_CAPTURE(BM_Floor, fian_seg6_4068x9216, 5)->Apply(Threads);
BENCHMARK_CAPTURE(BM_TieProject, fian_seg6_4068x9216, 5)->Apply(Threads);
BENCHMARK_CAPTURE(BM_Floor, scattered_pairs, 3)->Apply(Threads);
BENCHMARK_CAPTURE(BM_CsrGather, scattered_pairs, 3)->Apply(Threads);
BENCHMARK_CAPTURE(BM_TieProject, scattered_pairs, 3)->Apply(Threads);
BENCHMARK_CAPTURE(BM_Floor, scattered_1to8, 4)->Apply(Threads);
BENCHMARK_CAPTURE(BM_CsrGather, scattered_1to8, 4)->Apply(Threads);
BENCHMARK_CAPTURE(BM_TieProject, scattered_1to8, 4)->Apply(Threads);

BENCHMARK_CAPTURE(BM_StepFloor, mirror_rows4096, 1)->Apply(Threads);
BENCHMARK_CAPTURE(BM_TieStep, fused_mirror_rows4096, 1, true)->Apply(Threads);
BENCHMARK_CAPTURE(BM_TieStep, composed_mirror_rows4096, 1, false)
    ->Apply(Threads);
BENCHMARK_CAPTURE(BM_StepFloor, fian_seg6_4068x9216, 5)->Apply(Threads);
BENCHMARK_CAPTURE(BM_TieStep, fused_fian_seg6_4068x9216, 5, true)
    ->Apply(Threads);
BENCHMARK_CAPTURE(BM_TieStep, composed_fian_seg6_4068x9216, 5, false)
    ->Apply(Threads);
BENCHMARK_CAPTURE(BM_TieStep, fused_scattered_pairs, 3, true)->Apply(Threads);
BENCHMARK_CAPTURE(BM_TieStep, composed_scattered_pairs, 3, false)
    ->Apply(Threads);
BENCHMARK_CAPTURE(BM_TieBuild, fian_4068x9216, 2)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TieBuild, scattered_pairs, 3)
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
