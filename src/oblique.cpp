// CPU backend of Oblique<T>: row loops driving ObliqueOps (oblique.h), OpenMP
// over rows. Row reductions accumulate in double with `omp simd` (or AVX2
// intrinsics in the fused step's kernel, described below).
#include "manifolds/oblique.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

// x86-64 with GCC or Clang: the fused step's kernel is also compiled for
// AVX2+FMA and chosen at run time (define SYMOPT_OBLIQUE_NO_DISPATCH to build
// the baseline kernel only).
#if defined(__x86_64__) && defined(__GNUC__) && \
    !defined(SYMOPT_OBLIQUE_NO_DISPATCH)
#define SYMOPT_OBLIQUE_DISPATCH 1
#include <immintrin.h>
#endif

namespace symopt {
namespace {

// Blocks smaller than this (elements) run on the calling thread: a parallel
// region costs more than the work (and milliseconds, not microseconds, when
// the cores are oversubscribed).
constexpr std::int64_t kParallelMinSize = std::int64_t(1) << 18;
constexpr std::int64_t kNoRow = std::numeric_limits<std::int64_t>::max();

// sum a_i b_i in double, vectorised (the order of the partial sums is fixed
// for a given build, so results are reproducible).
template <typename T>
double RowDot(const T* __restrict a, const T* __restrict b, std::int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (std::int64_t i = 0; i < n; ++i) s += double(a[i]) * double(b[i]);
  return s;
}

// ObliqueOps::CandidateNorm2 over a whole row, vectorised.
template <typename T>
double RowCandidateNorm2(const T* __restrict x,
                         const T* __restrict v,
                         std::int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (std::int64_t i = 0; i < n; ++i) {
    const double y = double(x[i]) + double(v[i]);
    s += y * y;
  }
  return s;
}

// Collapsed-row bookkeeping shared by the row loops.
RetractReport MakeReport(std::int64_t collapsed, std::int64_t first) {
  RetractReport report;
  report.collapsed_rows = collapsed;
  report.first_collapsed_row = collapsed > 0 ? first : -1;
  return report;
}

// ---- The fused step's CPU kernel ---------------------------------------
//
// One thread steps rows [r0, r1) as a software pipeline: block by block
// (kBlock entries), it writes row r (in cache since its Gram pass) and then
// accumulates the Gram sums of the same block of row r + 1 (streamed from
// memory), so the arithmetic of one row overlaps the memory traffic of the
// next, and every element of x, g and m crosses the memory bus once each way.
// Each block first prefetches the data kAhead entries further on (running
// into the following row at the end of a row): the hardware prefetcher alone
// does not keep enough lines in flight for a loop this long (measured: the
// step is 1.4-1.6x faster with it on 4096 x 4096 and 678 x 9216). Two short
// loops per block rather than one long one keep their values in registers.
// kMomentum == false: m is never read or written.

#if defined(__GNUC__)
#define SYMOPT_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define SYMOPT_ALWAYS_INLINE inline
#endif

constexpr std::int64_t kBlock = 256;   // elements per simd block
constexpr std::int64_t kAhead = 2048;  // prefetch distance, elements

template <typename T>
SYMOPT_ALWAYS_INLINE void Prefetch(const T* p,
                                   std::int64_t begin,
                                   std::int64_t end) {
#if defined(__GNUC__)
  constexpr std::int64_t kLine = 64 / sizeof(T);
  // The addresses may lie past the end of the array (a prefetch never
  // faults), so they are formed as integers, not as pointer arithmetic.
  const std::uintptr_t base = reinterpret_cast<std::uintptr_t>(p);
  for (std::int64_t i = begin; i < end; i += kLine) {
    __builtin_prefetch(
        reinterpret_cast<const void*>(base + i * sizeof(T)), 0, 2);
  }
#else
  (void)p, (void)begin, (void)end;
#endif
}

// How a block's six Gram sums are accumulated (all in double; the variants
// differ only in the order of the additions):
//   kSplit  two `omp simd` loops of three sums (the block is in L1 for the
//           second). Six sums of two vectors each plus the inputs need ~18
//           vector registers; with 16 one loop spills, and spilled
//           accumulators serialise it.
//   kAvx2   float data: AVX2+FMA intrinsics, 12 accumulators of 4 doubles
//           fed in two half-steps of three inputs, which fit 16 registers
//           (GCC's `omp simd` code spilled even with AVX-512's 32; this loop
//           made the whole step 1.4x faster). The FMA is exact here: a
//           product of two floats is exact in double. Double data use kSplit.
enum class GramLoop { kSplit, kAvx2 };

#if defined(SYMOPT_OBLIQUE_DISPATCH)
// The sum of the 8 lanes of a and b.
__attribute__((target("avx2,fma"), always_inline)) inline double SumLanes(
    __m256d a, __m256d b) {
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(a, b));
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

template <bool kMomentum>
__attribute__((target("avx2,fma"))) ObliqueGram GramBlockAvx2(
    const float* x,
    const float* g,
    const float* m,
    std::int64_t begin,
    std::int64_t end) {
  __m256d xx0 = _mm256_setzero_pd(), xx1 = xx0, xg0 = xx0, xg1 = xx0, gg0 = xx0,
          gg1 = xx0, xm0 = xx0, xm1 = xx0, gm0 = xx0, gm1 = xx0, mm0 = xx0,
          mm1 = xx0;
  std::int64_t i = begin;
  // Two independent sets of six accumulators (a dependent chain of FMAs
  // would wait on its latency); each half-step needs only its three inputs,
  // so 12 accumulators + 3 inputs fit the 16 AVX2 registers.
  for (; i + 8 <= end; i += 8) {
    {
      const __m256d xv = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
      const __m256d gv = _mm256_cvtps_pd(_mm_loadu_ps(g + i));
      xx0 = _mm256_fmadd_pd(xv, xv, xx0);
      xg0 = _mm256_fmadd_pd(xv, gv, xg0);
      gg0 = _mm256_fmadd_pd(gv, gv, gg0);
      if (kMomentum) {
        const __m256d mv = _mm256_cvtps_pd(_mm_loadu_ps(m + i));
        xm0 = _mm256_fmadd_pd(xv, mv, xm0);
        gm0 = _mm256_fmadd_pd(gv, mv, gm0);
        mm0 = _mm256_fmadd_pd(mv, mv, mm0);
      }
    }
    {
      const __m256d xv = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
      const __m256d gv = _mm256_cvtps_pd(_mm_loadu_ps(g + i + 4));
      xx1 = _mm256_fmadd_pd(xv, xv, xx1);
      xg1 = _mm256_fmadd_pd(xv, gv, xg1);
      gg1 = _mm256_fmadd_pd(gv, gv, gg1);
      if (kMomentum) {
        const __m256d mv = _mm256_cvtps_pd(_mm_loadu_ps(m + i + 4));
        xm1 = _mm256_fmadd_pd(xv, mv, xm1);
        gm1 = _mm256_fmadd_pd(gv, mv, gm1);
        mm1 = _mm256_fmadd_pd(mv, mv, mm1);
      }
    }
  }
  ObliqueGram s;
  s.xx = SumLanes(xx0, xx1);
  s.xg = SumLanes(xg0, xg1);
  s.gg = SumLanes(gg0, gg1);
  s.xm = SumLanes(xm0, xm1);
  s.gm = SumLanes(gm0, gm1);
  s.mm = SumLanes(mm0, mm1);
  for (; i < end; ++i) {  // the last < 8 entries
    const double xi = x[i], gi = g[i];
    s.xx += xi * xi;
    s.xg += xi * gi;
    s.gg += gi * gi;
    if (kMomentum) {
      const double mi = m[i];
      s.xm += xi * mi;
      s.gm += gi * mi;
      s.mm += mi * mi;
    }
  }
  return s;
}
#endif

template <typename T, bool kMomentum, GramLoop kLoop>
SYMOPT_ALWAYS_INLINE ObliqueGram GramBlock(const T* __restrict x,
                                           const T* __restrict g,
                                           const T* __restrict m,
                                           std::int64_t begin,
                                           std::int64_t end) {
#if defined(SYMOPT_OBLIQUE_DISPATCH)
  if constexpr (std::is_same_v<T, float> && kLoop == GramLoop::kAvx2) {
    return GramBlockAvx2<kMomentum>(x, g, m, begin, end);
  } else
#endif
  {
    double xx = 0, xg = 0, xm = 0, gg = 0, gm = 0, mm = 0;
#pragma omp simd reduction(+ : xx, xg, gg)
    for (std::int64_t i = begin; i < end; ++i) {
      const double xi = x[i], gi = g[i];
      xx += xi * xi;
      xg += xi * gi;
      gg += gi * gi;
    }
    if (kMomentum) {
#pragma omp simd reduction(+ : xm, gm, mm)
      for (std::int64_t i = begin; i < end; ++i) {
        const double xi = x[i], gi = g[i], mi = m[i];
        xm += xi * mi;
        gm += gi * mi;
        mm += mi * mi;
      }
    }
    ObliqueGram s;
    s.xx = xx;
    s.xg = xg;
    s.xm = xm;
    s.gg = gg;
    s.gm = gm;
    s.mm = mm;
    return s;
  }
}

// The pipeline stage: with kApply, writes row 0 (x0, g0, m0) by the
// increment k; with kGram, returns the Gram sums of row 1 (x1, g1, m1).
template <typename T,
          bool kMomentum,
          bool kApply,
          bool kGram,
          GramLoop kGramLoop>
SYMOPT_ALWAYS_INLINE ObliqueGram Pass(T* __restrict x0,
                                      const T* __restrict g0,
                                      T* __restrict m0,
                                      const ObliqueIncrement<T>& k,
                                      const T* __restrict x1,
                                      const T* __restrict g1,
                                      const T* __restrict m1,
                                      std::int64_t n) {
  ObliqueGram total;
  for (std::int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const std::int64_t end = std::min(n, i0 + kBlock);
    if (kGram) {
      Prefetch(x1, i0 + kAhead, end + kAhead);
      Prefetch(g1, i0 + kAhead, end + kAhead);
      if (kMomentum) Prefetch(m1, i0 + kAhead, end + kAhead);
    }
    if (kApply) {
#pragma omp simd
      for (std::int64_t i = i0; i < end; ++i) {
        if (kMomentum) {
          ObliqueOps::ApplyElement(x0, g0, m0, k, i);
        } else {
          ObliqueOps::ApplyElement(x0, g0, k, i);
        }
      }
    }
    if (!kGram) continue;
    total.Add(GramBlock<T, kMomentum, kGramLoop>(x1, g1, m1, i0, end));
  }
  return total;
}

// The row's update from its Gram sums (ObliqueOps stages 2 and 3). A row for
// which the increment form is not accurate is written here, exactly, and
// *done is set.
template <typename T>
ObliqueRowUpdate SolveRow(T* x,
                          const T* g,
                          T* m,
                          std::int64_t n,
                          const ObliqueGram& s,
                          const ObliqueStepParams& p,
                          double tol,
                          bool* done) {
  const ObliqueCandidate c = ObliqueOps::StepCandidate(s.xx, s.xg, p);
  double yy = ObliqueOps::GramInner(s, c.y, c.y);
  double ymp = m != nullptr ? ObliqueOps::GramInner(s, c.y, c.mp) : 0.0;
  if (ObliqueOps::NeedsDirect(yy, s.xx)) {
    ObliqueOps::AccumulateDirect<T>(x, g, m, c, 0, n, 1, &yy, &ymp);
  }
  const ObliqueRowUpdate u = ObliqueOps::StepUpdate(c, yy, ymp, tol);
  *done = false;
  if (!u.collapsed && !ObliqueOps::IncrementIsAccurate(s, u)) {
    ObliqueOps::ApplyStepExact<T>(x, g, m, u, 0, n, 1);
    *done = true;
  }
  return u;
}

struct RowRange {
  std::int64_t r0 = 0, r1 = 0, n = 0;
  ObliqueStepParams p;
  double tol = 0;
  std::int64_t collapsed = 0;
  std::int64_t first = kNoRow;
};

template <typename T, bool kMomentum, GramLoop kGramLoop>
SYMOPT_ALWAYS_INLINE void StepRows(T* x, const T* g, T* m, RowRange& rr) {
  const std::int64_t n = rr.n;
  if (rr.r0 >= rr.r1) return;
  auto mrow = [&](std::int64_t r) { return kMomentum ? m + r * n : nullptr; };
  const ObliqueIncrement<T> none{};
  auto gram = [&](std::int64_t r) {
    return Pass<T, kMomentum, false, true, kGramLoop>(
        nullptr, nullptr, nullptr, none, x + r * n, g + r * n, mrow(r), n);
  };
  ObliqueGram s = gram(rr.r0);
  for (std::int64_t r = rr.r0; r < rr.r1; ++r) {
    T* xr = x + r * n;
    const T* gr = g + r * n;
    T* mr = mrow(r);
    bool done = false;
    const ObliqueRowUpdate u =
        SolveRow<T>(xr, gr, mr, n, s, rr.p, rr.tol, &done);
    const bool last = r + 1 == rr.r1;
    if (u.collapsed) {
      ++rr.collapsed;
      rr.first = std::min(rr.first, r);
    }
    if (u.collapsed || done) {
      if (!last) s = gram(r + 1);
      continue;
    }
    const ObliqueIncrement<T> k = ObliqueOps::Increment<T>(u);
    if (last) {
      Pass<T, kMomentum, true, false, kGramLoop>(
          xr, gr, mr, k, nullptr, nullptr, nullptr, n);
    } else {
      s = Pass<T, kMomentum, true, true, kGramLoop>(
          xr, gr, mr, k, xr + n, gr + n, mrow(r + 1), n);
    }
  }
}

// One kernel instantiation per instruction set.
template <typename T, GramLoop kGramLoop>
SYMOPT_ALWAYS_INLINE void StepRowsFor(T* x, const T* g, T* m, RowRange& rr) {
  if (m != nullptr) {
    StepRows<T, true, kGramLoop>(x, g, m, rr);
  } else {
    StepRows<T, false, kGramLoop>(x, g, m, rr);
  }
}

template <typename T>
void StepRowsBaseline(T* x, const T* g, T* m, RowRange& rr) {
  StepRowsFor<T, GramLoop::kSplit>(x, g, m, rr);
}

// The library is built for baseline x86-64. Where the CPU has AVX2 and FMA,
// the kernel is also compiled for them and chosen at run time (measured on
// the development machine, data in L2: 2.6x faster than the baseline build;
// an AVX-512 build was no faster).
#if defined(SYMOPT_OBLIQUE_DISPATCH)
template <typename T>
__attribute__((target("avx2,fma"))) void StepRowsAvx2(T* x,
                                                      const T* g,
                                                      T* m,
                                                      RowRange& rr) {
  StepRowsFor<T, GramLoop::kAvx2>(x, g, m, rr);
}
#endif

// 0: baseline, 1: AVX2+FMA.
int BestSimdLevel() {
#if defined(SYMOPT_OBLIQUE_DISPATCH)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
  return 0;
}

std::atomic<int>& SimdLevel() {
  static std::atomic<int> level(BestSimdLevel());
  return level;
}

template <typename T>
void StepRowsCpu(T* x, const T* g, T* m, RowRange& rr) {
#if defined(SYMOPT_OBLIQUE_DISPATCH)
  if (SimdLevel().load(std::memory_order_relaxed) == 1) {
    StepRowsAvx2(x, g, m, rr);
    return;
  }
#endif
  StepRowsBaseline(x, g, m, rr);
}

}  // namespace

namespace internal {
// Test hook: use the kernel of `level` (0 baseline, 1 AVX2+FMA), or the best
// the CPU has when it has less. Returns the level now in use.
int SetObliqueSimdLevel(int level) {
  SimdLevel().store(std::max(0, std::min(level, BestSimdLevel())));
  return SimdLevel().load();
}
}  // namespace internal

template <typename T>
T Oblique<T>::DefaultCollapseTol() {
  return std::sqrt(std::numeric_limits<T>::epsilon());
}

template <typename T>
Oblique<T>::Oblique(std::int64_t rows, std::int64_t cols, T collapse_tol)
    : Manifold<T>(rows, cols), collapse_tol_(collapse_tol) {
  SYMOPT_CHECK(std::isfinite(collapse_tol) && collapse_tol >= T(0),
               "oblique(" << rows << "x" << cols
                          << "): collapse tolerance must be finite and >= 0, "
                             "got "
                          << collapse_tol);
}

template <typename T>
Oblique<T> Oblique<T>::ForConv(std::int64_t out,
                               std::int64_t in,
                               std::int64_t kh,
                               std::int64_t kw,
                               T collapse_tol) {
  SYMOPT_CHECK(out >= 1 && in >= 1 && kh >= 1 && kw >= 1,
               "oblique conv weight [out, in, kh, kw] needs every extent >= 1, "
               "got ["
                   << out << ", " << in << ", " << kh << ", " << kw << "]");
  return Oblique(out, in * kh * kw, collapse_tol);
}

template <typename T>
void Oblique<T>::ProjectPointImpl(View x) const {
  const std::int64_t n = x.cols;
  // Check every row first, so that a bad row leaves x untouched.
  for (std::int64_t r = 0; r < x.rows; ++r) {
    const T* xr = x.row(r);
    for (std::int64_t i = 0; i < n; ++i) {
      SYMOPT_CHECK(std::isfinite(xr[i]),
                   this->Describe()
                       << ": ProjectPoint: row " << r << " has a non-finite "
                       << "entry at column " << i << " (" << xr[i] << ")");
    }
  }
  for (std::int64_t r = 0; r < x.rows; ++r) {
    T* xr = x.row(r);
    // Scale by the largest magnitude first, so tiny rows (whose squares
    // underflow) and huge ones (whose squares overflow) normalise exactly.
    double big = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      big = std::max(big, std::abs(double(xr[i])));
    }
    if (big == 0) {  // the zero row has no direction: it becomes e_0
      xr[0] = T(1);
      std::fill(xr + 1, xr + n, T(0));
      continue;
    }
    double ss = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const double e = double(xr[i]) / big;
      ss += e * e;
    }
    const double inv = 1.0 / std::sqrt(ss);
    for (std::int64_t i = 0; i < n; ++i) xr[i] = T(double(xr[i]) / big * inv);
  }
}

template <typename T>
void Oblique<T>::ProjectImpl(ConstView x, View u) const {
  const std::int64_t n = x.cols;
#pragma omp parallel for schedule(static) if (x.size() >= kParallelMinSize)
  for (std::int64_t r = 0; r < x.rows; ++r) {
    const double d = RowDot(x.row(r), u.row(r), n);
    ObliqueOps::ApplyProject(x.row(r), u.row(r), d, 0, n, 1);
  }
}

template <typename T>
RetractReport Oblique<T>::RetractImpl(View x, ConstView v) const {
  const std::int64_t n = x.cols;
  const double tol = collapse_tol_;
  std::int64_t collapsed = 0, first = kNoRow;
#pragma omp parallel for schedule(static) reduction(+ : collapsed) \
    reduction(min : first) if (x.size() >= kParallelMinSize)
  for (std::int64_t r = 0; r < x.rows; ++r) {
    const double yy = RowCandidateNorm2(x.row(r), v.row(r), n);
    if (!ObliqueOps::Normalisable(yy, tol)) {
      ++collapsed;
      first = std::min(first, r);
      continue;
    }
    ObliqueOps::ApplyRetract(x.row(r), v.row(r), 1.0 / std::sqrt(yy), 0, n, 1);
  }
  return MakeReport(collapsed, first);
}

template <typename T>
void Oblique<T>::InverseRetractImpl(ConstView x, ConstView y, View v) const {
  const std::int64_t n = x.cols;
  std::vector<double> dots(x.rows);
  for (std::int64_t r = 0; r < x.rows; ++r) {
    dots[r] = RowDot(x.row(r), y.row(r), n);
    SYMOPT_CHECK(dots[r] > 0,
                 this->Describe()
                     << ": InverseRetract: row " << r
                     << " of y is not in the image of the retraction at x "
                     << "(<x_r, y_r> = " << dots[r] << " <= 0)");
  }
  for (std::int64_t r = 0; r < x.rows; ++r) {
    const T* xr = x.row(r);
    const T* yr = y.row(r);
    T* vr = v.row(r);
    const double inv = 1.0 / dots[r];
    for (std::int64_t i = 0; i < n; ++i) {
      vr[i] = T(double(yr[i]) * inv - double(xr[i]));
    }
  }
}

template <typename T>
double Oblique<T>::DistanceToManifoldImpl(ConstView x) const {
  double sum = 0;
  for (std::int64_t r = 0; r < x.rows; ++r) {
    const double e = std::sqrt(RowDot(x.row(r), x.row(r), x.cols)) - 1.0;
    sum += e * e;
  }
  return std::sqrt(sum);
}

template <typename T>
void Oblique<T>::TangentBasisMultiplyImpl(ConstView x,
                                          const T* coeffs,
                                          View v) const {
  const std::int64_t n = x.cols;
  for (std::int64_t r = 0; r < x.rows; ++r) {
    ObliqueOps::BasisMultiply(x.row(r), coeffs + r * (n - 1), v.row(r), n);
  }
}

template <typename T>
void Oblique<T>::TangentBasisTransposeMultiplyImpl(ConstView x,
                                                   ConstView u,
                                                   T* coeffs) const {
  const std::int64_t n = x.cols;
  for (std::int64_t r = 0; r < x.rows; ++r) {
    ObliqueOps::BasisTransposeMultiply(
        x.row(r), u.row(r), coeffs + r * (n - 1), n);
  }
}

// The fused step (see oblique.h): each thread takes a contiguous block of
// rows (a static schedule) and runs the pipelined kernel over it.
template <typename T>
RetractReport Oblique<T>::StepImpl(View x,
                                   ConstView g,
                                   View m,
                                   const StepOptions& o) const {
  RowRange all;
  all.n = x.cols;
  all.p.lr = o.lr;
  all.p.momentum = o.momentum;
  all.p.nesterov = o.nesterov;
  all.p.weight_decay = o.weight_decay;
  all.tol = collapse_tol_;
  T* m_data = o.momentum > 0 ? m.data : nullptr;
  const std::int64_t rows = x.rows;
  std::int64_t collapsed = 0, first = kNoRow;
#pragma omp parallel reduction(+ : collapsed) reduction(min : first) if ( \
        x.size() >= kParallelMinSize)
  {
    const std::int64_t threads = omp_get_num_threads();
    const std::int64_t t = omp_get_thread_num();
    RowRange rr = all;
    rr.r0 = rows * t / threads;
    rr.r1 = rows * (t + 1) / threads;
    StepRowsCpu(x.data, g.data, m_data, rr);
    collapsed += rr.collapsed;
    first = std::min(first, rr.first);
  }
  return MakeReport(collapsed, first);
}

template class Oblique<float>;
template class Oblique<double>;

}  // namespace symopt
