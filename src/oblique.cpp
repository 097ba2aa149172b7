// CPU backend of Oblique<T>: row loops driving ObliqueOps (oblique.h), OpenMP
// over rows. Row reductions accumulate in double with `omp simd` (the fused
// step's AVX2 kernel accumulates short blocks in float, with a proven bound
// and a fallback to double; see GramLoop below).
#include "manifolds/oblique.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "omp_loops.h"

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
// step is 1.4-1.6x faster with it on 4096 x 4096 and 678 x 9216). The Gram
// loop then prefetches each of those lines a second time as it goes (one
// prefetch per 16 entries per array). Measured on the development machine,
// 1 thread, data out of cache (bench/experiments/oblique_variants.cpp and
// its _one_prefetch build): with only the first prefetch the heavy-ball
// kernel below took 1.45-1.73x the bandwidth floor, with both 1.03-1.20x;
// this kernel 1.1-1.4x either way. Without hardware counters we could not
// see why; software prefetches that the processor drops (when its miss
// buffers are full, say) would explain it.
// Two short loops per block rather than one long one keep their values in
// registers.
// kMomentum == false: m is never read or written.

#if defined(__GNUC__)
#define SYMOPT_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define SYMOPT_ALWAYS_INLINE inline
#endif

constexpr std::int64_t kBlock = 256;   // elements per simd block
constexpr std::int64_t kAhead = 2048;  // prefetch distance, elements
// Whether the Gram loops prefetch each line a second time (see above);
// SYMOPT_OBLIQUE_ONE_PREFETCH is for bench/experiments/oblique_variants.cpp's
// comparison only.
#if defined(SYMOPT_OBLIQUE_ONE_PREFETCH)
constexpr bool kSecondPrefetch = false;
#else
constexpr bool kSecondPrefetch = true;
#endif

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
    // NOLINTNEXTLINE(performance-no-int-to-ptr): deliberate, see above
    const void* line = reinterpret_cast<const void*>(base + i * sizeof(T));
    __builtin_prefetch(line, 0, 2);
  }
#else
  (void)p, (void)begin, (void)end;
#endif
}

// How a block's six Gram sums are accumulated:
//   kSplit  all in double: two `omp simd` loops of three sums (the block is
//           in L1 for the second). Six sums of two vectors each plus the
//           inputs need ~18 vector registers; with 16 one loop spills, and
//           spilled accumulators serialise it. Double data always use it.
//   kAvx2   float data, AVX2+FMA intrinsics, blocked: the products are
//           accumulated in float over short sub-blocks and each sub-block's
//           lanes are added into double accumulators. Per 16 entries this is
//           6 float FMAs of 8 lanes, against 12 double FMAs of 4 lanes and 6
//           float->double conversions for an all-double loop (at one thread
//           that arithmetic cost as much as the memory traffic).
//
// Accuracy of kAvx2 (u = 2^-24, the unit roundoff of float; gamma_k =
// k u / (1 - k u)). A sub-block is kSub = 64 entries: two sets of 6 float
// accumulators of 8 lanes take alternate groups of 8 entries, so each lane of
// each set sums 4 products (the first rounded, then 3 FMAs: 4 roundings), and
// the two sets are added in float (1 more): every product passes through at
// most 5 roundings, so a sub-block's lane sum s_hat of products p_i obeys
// |s_hat - s| <= gamma_5 sum |p_i| (Higham, Accuracy and Stability, 3.1;
// gamma_5 < 3.0e-7). The lanes are converted to double exactly and summed in
// double over the row (relative error ~ (n / 64) 2^-53, negligible). So for a
// row, every Gram entry G_ab = <a, b> (a, b in {x, g, m}) obeys
//   |G_hat_ab - G_ab| <= gamma_5 ||a|| ||b|| + n 2^-149,
// the last term for products in float's subnormal range (each rounding there
// is off by at most 2^-150 absolute; at most 2n roundings). A product that
// overflows float gives an Inf sum. Hence xx, gg, mm are accurate to 3e-7
// relative, and a combination's squared norm from the Gram sums,
//   yy_hat = sum_ab c_a c_b G_hat_ab, obeys
//   |yy_hat - yy| <= gamma_5 A^2 + (sum |c_a|)^2 n 2^-149,  A = sum |c_a|
//   ||a||.
// SolveRow checks that bound against yy (BlockedGramIsAccurate: the bound must
// be <= 4 gamma_5 yy, i.e. no more than 2x cancellation in ||y||, so the new
// row's norm is within 2 gamma_5 = 6e-7 of 1 in the worst case and ~1e-9 in
// practice, where the rounding errors are random and average out), and
// recomputes the row's sums in double (kSplit's loop) when it fails: a
// non-finite sum (overflow, or NaN/Inf data), tiny rows, or steps whose
// Gram form cancels (a huge normal gradient component times lr). The
// transported momentum's error from <y, mp> is at most ~2 gamma_5 A_mp,
// A_mp = sum |c_mp_a| ||a||: a few times the rounding of mp = beta m + r to
// float that StepComposed itself performs.
enum class GramLoop { kSplit, kAvx2 };

#if defined(SYMOPT_OBLIQUE_DISPATCH)
// The sum of the 8 float lanes of a, in double (exact conversion), as 4
// double lanes.
__attribute__((target("avx2,fma"), always_inline)) inline __m256d WidenSum(
    __m256 a) {
  return _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a)),
                       _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));
}

__attribute__((target("avx2,fma"), always_inline)) inline double SumLanes(
    __m256d a) {
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, a);
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

constexpr std::int64_t kSub = 64;  // entries per float sub-block (see above)

template <bool kMomentum, bool kPrefetch>
__attribute__((target("avx2,fma"))) ObliqueGram GramBlockAvx2(
    const float* x,
    const float* g,
    const float* m,
    std::int64_t begin,
    std::int64_t end) {
  __m256d dxx = _mm256_setzero_pd(), dxg = dxx, dgg = dxx, dxm = dxx, dgm = dxx,
          dmm = dxx;
  std::int64_t i = begin;
  while (i + 16 <= end) {
    // One sub-block: up to kSub / 16 steps of 16 entries. Two independent
    // sets of six float accumulators (a dependent chain of FMAs would wait
    // on its latency): 12 accumulators + 3 inputs fit the 16 registers.
    const std::int64_t stop = std::min(end, i + kSub);
    __m256 xx0 = _mm256_setzero_ps(), xx1 = xx0, xg0 = xx0, xg1 = xx0,
           gg0 = xx0, gg1 = xx0, xm0 = xx0, xm1 = xx0, gm0 = xx0, gm1 = xx0,
           mm0 = xx0, mm1 = xx0;
    for (; i + 16 <= stop; i += 16) {
      if (kPrefetch && kSecondPrefetch) {  // each line again (see Pass)
        Prefetch(x, i + kAhead, i + kAhead + 1);
        Prefetch(g, i + kAhead, i + kAhead + 1);
        if (kMomentum) Prefetch(m, i + kAhead, i + kAhead + 1);
      }
      {
        const __m256 xv = _mm256_loadu_ps(x + i);
        const __m256 gv = _mm256_loadu_ps(g + i);
        xx0 = _mm256_fmadd_ps(xv, xv, xx0);
        xg0 = _mm256_fmadd_ps(xv, gv, xg0);
        gg0 = _mm256_fmadd_ps(gv, gv, gg0);
        if (kMomentum) {
          const __m256 mv = _mm256_loadu_ps(m + i);
          xm0 = _mm256_fmadd_ps(xv, mv, xm0);
          gm0 = _mm256_fmadd_ps(gv, mv, gm0);
          mm0 = _mm256_fmadd_ps(mv, mv, mm0);
        }
      }
      {
        const __m256 xv = _mm256_loadu_ps(x + i + 8);
        const __m256 gv = _mm256_loadu_ps(g + i + 8);
        xx1 = _mm256_fmadd_ps(xv, xv, xx1);
        xg1 = _mm256_fmadd_ps(xv, gv, xg1);
        gg1 = _mm256_fmadd_ps(gv, gv, gg1);
        if (kMomentum) {
          const __m256 mv = _mm256_loadu_ps(m + i + 8);
          xm1 = _mm256_fmadd_ps(xv, mv, xm1);
          gm1 = _mm256_fmadd_ps(gv, mv, gm1);
          mm1 = _mm256_fmadd_ps(mv, mv, mm1);
        }
      }
    }
    dxx = _mm256_add_pd(dxx, WidenSum(_mm256_add_ps(xx0, xx1)));
    dxg = _mm256_add_pd(dxg, WidenSum(_mm256_add_ps(xg0, xg1)));
    dgg = _mm256_add_pd(dgg, WidenSum(_mm256_add_ps(gg0, gg1)));
    if (kMomentum) {
      dxm = _mm256_add_pd(dxm, WidenSum(_mm256_add_ps(xm0, xm1)));
      dgm = _mm256_add_pd(dgm, WidenSum(_mm256_add_ps(gm0, gm1)));
      dmm = _mm256_add_pd(dmm, WidenSum(_mm256_add_ps(mm0, mm1)));
    }
  }
  ObliqueGram s;
  s.xx = SumLanes(dxx);
  s.xg = SumLanes(dxg);
  s.gg = SumLanes(dgg);
  s.xm = SumLanes(dxm);
  s.gm = SumLanes(dgm);
  s.mm = SumLanes(dmm);
  for (; i < end; ++i) {  // the last < 16 entries, in double
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

// kPrefetch: the AVX2 loop also prefetches kAhead entries on, once per line
// (the pipeline's Gram pass; see Pass).
template <typename T, bool kMomentum, GramLoop kLoop, bool kPrefetch = false>
SYMOPT_ALWAYS_INLINE ObliqueGram GramBlock(const T* __restrict x,
                                           const T* __restrict g,
                                           const T* __restrict m,
                                           std::int64_t begin,
                                           std::int64_t end) {
#if defined(SYMOPT_OBLIQUE_DISPATCH)
  if constexpr (std::is_same_v<T, float> && kLoop == GramLoop::kAvx2) {
    return GramBlockAvx2<kMomentum, kPrefetch>(x, g, m, begin, end);
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
    total.Add(GramBlock<T, kMomentum, kGramLoop, true>(x1, g1, m1, i0, end));
  }
  return total;
}

// Whether Gram sums from GramBlockAvx2 (bounds in the comment above
// GramLoop) are accurate enough for the candidate y of the row: the bound on
// the error of yy_hat, gamma_5 A^2 + (sum |c_a|)^2 n 2^-149, must be at most
// 4 gamma_5 yy_hat (with yy_hat finite). ||a|| is taken as sqrt(G_hat_aa (1 +
// 2^-20)), which covers the relative error of G_hat_aa itself.
inline bool BlockedGramIsAccurate(const ObliqueGram& s,
                                  const ObliqueCombination& y,
                                  double yy,
                                  std::int64_t n) {
  constexpr double kGamma5 = 3.0e-7;  // > 5 u / (1 - 5 u), u = 2^-24
  constexpr double kInflate = 1 + 0x1p-20;
  const double a = std::abs(y.cx) * std::sqrt(s.xx * kInflate) +
                   std::abs(y.cg) * std::sqrt(s.gg * kInflate) +
                   std::abs(y.cm) * std::sqrt(s.mm * kInflate);
  const double c = std::abs(y.cx) + std::abs(y.cg) + std::abs(y.cm);
  const double bound = kGamma5 * a * a + c * c * double(n) * 0x1p-149;
  return yy <= std::numeric_limits<double>::max() && bound <= 4 * kGamma5 * yy;
}

// The row's update from its Gram sums (ObliqueOps stages 2 and 3). A row for
// which the increment form is not accurate is written here, exactly, and
// *done is set. With kGramLoop == kAvx2 the sums are the blocked float ones;
// where they are not accurate enough for this row they are recomputed in
// double first.
template <typename T, bool kMomentum, GramLoop kGramLoop>
ObliqueRowUpdate SolveRow(T* x,
                          const T* g,
                          T* m,
                          std::int64_t n,
                          ObliqueGram s,
                          const StepOptions& p,
                          double tol,
                          bool* done) {
  ObliqueCandidate c = ObliqueOps::StepCandidate(s.xx, s.xg, p);
  double yy = ObliqueOps::GramInner(s, c.y, c.y);
  if (kGramLoop == GramLoop::kAvx2 && std::is_same_v<T, float> &&
      !BlockedGramIsAccurate(s, c.y, yy, n)) {
    s = GramBlock<T, kMomentum, GramLoop::kSplit>(x, g, m, 0, n);
    c = ObliqueOps::StepCandidate(s.xx, s.xg, p);
    yy = ObliqueOps::GramInner(s, c.y, c.y);
  }
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
  StepOptions p;
  double tol = 0;
  std::int64_t collapsed = 0;
  std::int64_t first = kNoRow;
};

// Rows of at most kShortRow entries are stepped kShortBatch at a time: the
// Gram sums of the batch, then the solves (independent dependency chains of
// scalar arithmetic that the processor overlaps, where one row at a time
// waits on each), then the updates, with the batch in L1 in between and no
// software prefetch (the hardware prefetcher keeps up with rows this short).
// Each row's sums, solve and update are those of the pipeline below (a row
// that short is one block), so the result is the same bitwise. Measured on
// the development machine, 1 thread (bench/experiments/oblique_variants.cpp
// and torch_step_bench): in cache, 64 x 75 and 128 x 144 take 17-27% less
// time than in the pipeline; out of cache, 200000 x 75 24% less, 80000 x
// 144 5% less, and 60000 x 192 6% more, hence the bound.
constexpr std::int64_t kShortRow = 160;
constexpr std::int64_t kShortBatch = 8;

template <typename T, bool kMomentum, GramLoop kGramLoop>
SYMOPT_ALWAYS_INLINE void StepShortRows(T* x, const T* g, T* m, RowRange& rr) {
  const std::int64_t n = rr.n;
  for (std::int64_t r0 = rr.r0; r0 < rr.r1; r0 += kShortBatch) {
    const std::int64_t count = std::min(kShortBatch, rr.r1 - r0);
    T* xb = x + r0 * n;
    const T* gb = g + r0 * n;
    T* mb = kMomentum ? m + r0 * n : nullptr;
    ObliqueGram sums[kShortBatch];
    for (std::int64_t i = 0; i < count; ++i) {
      sums[i] = GramBlock<T, kMomentum, kGramLoop>(
          xb + i * n, gb + i * n, kMomentum ? mb + i * n : nullptr, 0, n);
    }
    ObliqueRowUpdate updates[kShortBatch];
    bool done[kShortBatch];
    for (std::int64_t i = 0; i < count; ++i) {
      updates[i] =
          SolveRow<T, kMomentum, kGramLoop>(xb + i * n,
                                            gb + i * n,
                                            kMomentum ? mb + i * n : nullptr,
                                            n,
                                            sums[i],
                                            rr.p,
                                            rr.tol,
                                            &done[i]);
    }
    for (std::int64_t i = 0; i < count; ++i) {
      const ObliqueRowUpdate& u = updates[i];
      if (u.collapsed) {
        ++rr.collapsed;
        rr.first = std::min(rr.first, r0 + i);
      }
      if (u.collapsed || done[i]) continue;
      const ObliqueIncrement<T> k = ObliqueOps::Increment<T>(u);
      T* xr = xb + i * n;
      const T* gr = gb + i * n;
      T* mr = kMomentum ? mb + i * n : nullptr;
#pragma omp simd
      for (std::int64_t j = 0; j < n; ++j) {
        if (kMomentum) {
          ObliqueOps::ApplyElement(xr, gr, mr, k, j);
        } else {
          ObliqueOps::ApplyElement(xr, gr, k, j);
        }
      }
    }
  }
}

template <typename T, bool kMomentum, GramLoop kGramLoop>
SYMOPT_ALWAYS_INLINE void StepRows(T* x, const T* g, T* m, RowRange& rr) {
  const std::int64_t n = rr.n;
  if (rr.r0 >= rr.r1) return;
  if (n <= kShortRow) {
    StepShortRows<T, kMomentum, kGramLoop>(x, g, m, rr);
    return;
  }
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
    const ObliqueRowUpdate u = SolveRow<T, kMomentum, kGramLoop>(
        xr, gr, mr, n, s, rr.p, rr.tol, &done);
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

// ---- The heavy-ball kernel (float, AVX2+FMA) --------------------------------
//
// With heavy-ball momentum (momentum > 0, not Nesterov) a row's candidate and
// new momentum are combinations of x and u = beta m + g alone:
//   mp = rx x + u,   y = x - lr mp = (1 - lr rx) x - lr u,
// with rx = wd - xg - wd xx as in StepCandidate. So a row needs four sums,
// xx, xg (for rx), xu and uu, instead of the six of (x, g, m), and its update
// is
//   x' = x + (ax1 x + au u),   m' = bx x + bu u,   u = fma(beta, m, g),
// u rounded to float once and the same way in both passes, so the sums are
// exactly those of the vectors the update combines. That is 10 multiplies
// per 8 entries over the two passes instead of 12 (and 3 additions instead
// of 6). It is ObliqueOps' own maths in the basis (x, u): StepCandidate with
// momentum 0 gives mp and y in that basis, and the Gram matrix of (x, u) in
// the slots of (x, g) gives yy, <y, mp>, the error bound of the blocked sums
// (BlockedGramIsAccurate: the products are of the float vectors x and u) and
// IncrementIsAccurate. A row where either test fails, or where yy may have
// cancelled, is stepped by the general path (its sums recomputed in double);
// so is a row with a non-finite entry, which that path reports as collapsed.
// The result equals the general kernels' to rounding, not bitwise.
//
// The rows are pipelined as in StepRows: block by block (kBlock entries),
// prefetch kAhead on, update row r's block, then add row r + 1's block to the
// four sums (kept in double lanes over the row), each line prefetched twice
// as in Pass. Measured on the development machine, 1 thread, against
// StepRowsAvx2 with the same momentum (bench/experiments/oblique_variants.cpp,
// kinds C and H; docs/oblique.md): data out of cache, 1.08-1.21x the
// bandwidth floor instead of 1.14-1.60x for rows of 192 to 9216 entries;
// data in cache, 14-29% less time. A one-loop variant (the update of row r
// and the sums of row r + 1 in the same iteration, kind U there) was faster
// still in cache but slower out of cache.

#if defined(SYMOPT_OBLIQUE_DISPATCH)
struct HeavyBallSums {
  double xx = 0, xg = 0, xu = 0, uu = 0;

  // One entry's products, in double (u: fma(beta, m, g) rounded to float).
  void Add(double x, double g, double u) {
    xx += x * x;
    xg += x * g;
    xu += x * u;
    uu += u * u;
  }
};

struct HeavyBallIncrement {
  float ax1 = 0, au = 0, bx = 0, bu = 0;

  // One entry updated: x += ax1 x + au u, m = bx x + bu u.
  void Apply(float* x, float* m, float u) const {
    const float xi = *x;
    *x = xi + (ax1 * xi + au * u);
    *m = bx * xi + bu * u;
  }
};

// The four sums from double lanes d[4] (xx, xg, xu, uu).
__attribute__((target("avx2,fma"), always_inline)) inline HeavyBallSums
HeavyBallLaneSums(const __m256d* d) {
  HeavyBallSums sums;
  sums.xx = SumLanes(d[0]);
  sums.xg = SumLanes(d[1]);
  sums.xu = SumLanes(d[2]);
  sums.uu = SumLanes(d[3]);
  return sums;
}

// Entries [t, t + 8) of a row written from their x and u: x += ax1 x + au u,
// m = bx x + bu u (the vectors hold the coefficients; HeavyBallIncrement::
// Apply's roundings).
__attribute__((target("avx2,fma"), always_inline)) inline void HeavyBallWrite8(
    float* __restrict x,
    float* __restrict m,
    __m256 xv,
    __m256 uv,
    __m256 ax,
    __m256 au,
    __m256 bx,
    __m256 bu,
    std::int64_t t) {
  const __m256 dx = _mm256_add_ps(_mm256_mul_ps(ax, xv), _mm256_mul_ps(au, uv));
  _mm256_storeu_ps(x + t, _mm256_add_ps(xv, dx));
  _mm256_storeu_ps(m + t,
                   _mm256_add_ps(_mm256_mul_ps(bx, xv), _mm256_mul_ps(bu, uv)));
}

// Entries [t, t + 8) of a row updated: u = fma(beta, m, g), x += ax1 x +
// au u, m = bx x + bu u (the vectors hold beta and the coefficients).
__attribute__((target("avx2,fma"), always_inline)) inline void HeavyBallUpdate8(
    float* __restrict x,
    const float* __restrict g,
    float* __restrict m,
    __m256 vb,
    __m256 ax,
    __m256 au,
    __m256 bx,
    __m256 bu,
    std::int64_t t) {
  const __m256 xv = _mm256_loadu_ps(x + t), gv = _mm256_loadu_ps(g + t),
               mv = _mm256_loadu_ps(m + t);
  HeavyBallWrite8(
      x, m, xv, _mm256_fmadd_ps(vb, mv, gv), ax, au, bx, bu, t);
}

// The products of entries [j, j + 8) of a row added to the accumulators of
// xx, xg, xu, uu.
__attribute__((target("avx2,fma"), always_inline)) inline void
HeavyBallAccumulate8(const float* __restrict x,
                     const float* __restrict g,
                     const float* __restrict m,
                     __m256 vb,
                     std::int64_t j,
                     __m256* a) {
  const __m256 xv = _mm256_loadu_ps(x + j), gv = _mm256_loadu_ps(g + j),
               mv = _mm256_loadu_ps(m + j);
  const __m256 uv = _mm256_fmadd_ps(vb, mv, gv);
  a[0] = _mm256_fmadd_ps(xv, xv, a[0]);
  a[1] = _mm256_fmadd_ps(xv, gv, a[1]);
  a[2] = _mm256_fmadd_ps(xv, uv, a[2]);
  a[3] = _mm256_fmadd_ps(uv, uv, a[3]);
}

// Entries [t0, t1) (a multiple of 16 long) of a row updated by k.
__attribute__((target("avx2,fma"), always_inline)) inline void HeavyBallApply(
    float* __restrict x,
    const float* __restrict g,
    float* __restrict m,
    const HeavyBallIncrement& k,
    float beta,
    std::int64_t t0,
    std::int64_t t1) {
  const __m256 vb = _mm256_set1_ps(beta), ax = _mm256_set1_ps(k.ax1),
               au = _mm256_set1_ps(k.au), bx = _mm256_set1_ps(k.bx),
               bu = _mm256_set1_ps(k.bu);
  for (std::int64_t t = t0; t < t1; t += 16) {
    HeavyBallUpdate8(x, g, m, vb, ax, au, bx, bu, t);
    HeavyBallUpdate8(x, g, m, vb, ax, au, bx, bu, t + 8);
  }
}

// The four sums of entries [t0, t1) (a multiple of 16 long) of a row added
// to d[4], in float sub-blocks of kSub entries (GramLoop's error bound: two
// sets of accumulators, 4 products per lane per set, then 1 addition).
__attribute__((target("avx2,fma"), always_inline)) inline void HeavyBallGram(
    const float* __restrict x,
    const float* __restrict g,
    const float* __restrict m,
    float beta,
    std::int64_t t0,
    std::int64_t t1,
    __m256d* d) {
  const __m256 vb = _mm256_set1_ps(beta);
  for (std::int64_t t = t0; t < t1;) {
    const std::int64_t stop = std::min(t1, t + kSub);
    __m256 acc[2][4];
    for (auto& set : acc) {
      for (auto& a : set) a = _mm256_setzero_ps();
    }
    for (; t < stop; t += 16) {
      if (kSecondPrefetch) {  // each line a second time (see Pass)
        Prefetch(x, t + kAhead, t + kAhead + 1);
        Prefetch(g, t + kAhead, t + kAhead + 1);
        Prefetch(m, t + kAhead, t + kAhead + 1);
      }
      HeavyBallAccumulate8(x, g, m, vb, t, acc[0]);
      HeavyBallAccumulate8(x, g, m, vb, t + 8, acc[1]);
    }
    for (int q = 0; q < 4; ++q) {
      d[q] = _mm256_add_pd(d[q], WidenSum(_mm256_add_ps(acc[0][q], acc[1][q])));
    }
  }
}

// The pipeline stage: with kApply, updates row 0 (x0, g0, m0) by k; with
// kGram, returns the four sums of row 1 (x1, g1, m1). The last n % 16
// entries are done one by one with the same roundings (their sums in
// double).
struct BlockedHeavyBallPass {
  template <bool kApply, bool kGram>
  __attribute__((target("avx2,fma"), always_inline)) static HeavyBallSums Run(
      float* __restrict x0,
      const float* __restrict g0,
      float* __restrict m0,
      const HeavyBallIncrement& k,
      const float* __restrict x1,
      const float* __restrict g1,
      const float* __restrict m1,
      float beta,
      std::int64_t n) {
    const std::int64_t n16 = n & ~std::int64_t(15);
    __m256d d[4];
    for (auto& v : d) v = _mm256_setzero_pd();
    for (std::int64_t i0 = 0; i0 < n16; i0 += kBlock) {
      const std::int64_t end = std::min(n16, i0 + kBlock);
      if (kGram) {
        Prefetch(x1, i0 + kAhead, end + kAhead);
        Prefetch(g1, i0 + kAhead, end + kAhead);
        Prefetch(m1, i0 + kAhead, end + kAhead);
      }
      if (kApply) HeavyBallApply(x0, g0, m0, k, beta, i0, end);
      if (kGram) HeavyBallGram(x1, g1, m1, beta, i0, end, d);
    }
    if (kApply) {
      for (std::int64_t i = n16; i < n; ++i) {
        k.Apply(x0 + i, m0 + i, std::fma(beta, m0[i], g0[i]));
      }
    }
    HeavyBallSums sums;
    if (kGram) {
      sums = HeavyBallLaneSums(d);
      for (std::int64_t i = n16; i < n; ++i) {
        sums.Add(x1[i], g1[i], std::fma(beta, m1[i], g1[i]));
      }
    }
    return sums;
  }
};

// The increment of a row from its four sums (see above). False where this
// form is not accurate enough for the row; then nothing is set.
inline bool HeavyBallSolve(const HeavyBallSums& sums,
                           std::int64_t n,
                           const StepOptions& p,
                           double tol,
                           HeavyBallIncrement* k,
                           bool* collapsed) {
  StepOptions in_u = p;
  in_u.momentum = 0;  // the candidate in the basis (x, u): mp = rx x + u
  const ObliqueCandidate c = ObliqueOps::StepCandidate(sums.xx, sums.xg, in_u);
  ObliqueGram s;  // the Gram matrix of (x, u), u in g's slot
  s.xx = sums.xx;
  s.xg = sums.xu;
  s.gg = sums.uu;
  const double yy = ObliqueOps::GramInner(s, c.y, c.y);
  if (!BlockedGramIsAccurate(s, c.y, yy, n) ||
      ObliqueOps::NeedsDirect(yy, s.xx)) {
    return false;
  }
  const ObliqueRowUpdate u =
      ObliqueOps::StepUpdate(c, yy, ObliqueOps::GramInner(s, c.y, c.mp), tol);
  if (!u.collapsed && !ObliqueOps::IncrementIsAccurate(s, u)) return false;
  *collapsed = u.collapsed;
  k->ax1 = float(u.x_new.cx - 1);
  k->au = float(u.x_new.cg);
  k->bx = float(u.m_new.cx);
  k->bu = float(u.m_new.cg);
  return true;
}

// Row r's update from its four sums: true, with *k set, where the row is to
// be written by the heavy-ball pass. Otherwise the row is done here: stepped
// by the general path (its sums recomputed in double), or counted as
// collapsed and left unchanged.
inline bool HeavyBallRow(float* xr,
                         const float* gr,
                         float* mr,
                         const HeavyBallSums& sums,
                         std::int64_t r,
                         RowRange& rr,
                         HeavyBallIncrement* k) {
  const std::int64_t n = rr.n;
  bool collapsed = false;
  const bool fast = HeavyBallSolve(sums, n, rr.p, rr.tol, k, &collapsed);
  if (!fast) {
    bool done = false;
    const ObliqueRowUpdate u = SolveRow<float, true, GramLoop::kSplit>(
        xr,
        gr,
        mr,
        n,
        GramBlock<float, true, GramLoop::kSplit>(xr, gr, mr, 0, n),
        rr.p,
        rr.tol,
        &done);
    collapsed = u.collapsed;
    if (!collapsed && !done) ObliqueOps::ApplyStep(xr, gr, mr, u, 0, n, 1);
  }
  if (collapsed) {
    ++rr.collapsed;
    rr.first = std::min(rr.first, r);
  }
  return fast && !collapsed;
}

// Rows [r0, r1) of a heavy-ball step, pipelined as StepRows over a pass
// Pass::Run<kApply, kGram> with BlockedHeavyBallPass's contract
// (bench/experiments runs a variant through it).
template <typename Pass>
__attribute__((target("avx2,fma"))) void HeavyBallRows(float* x,
                                                       const float* g,
                                                       float* m,
                                                       RowRange& rr) {
  const std::int64_t n = rr.n;
  const float beta = float(rr.p.momentum);
  const HeavyBallIncrement none;
  auto at = [n](auto* p, std::int64_t r) { return p + r * n; };
  HeavyBallSums sums = Pass::template Run<false, true>(nullptr,
                                                       nullptr,
                                                       nullptr,
                                                       none,
                                                       at(x, rr.r0),
                                                       at(g, rr.r0),
                                                       at(m, rr.r0),
                                                       beta,
                                                       n);
  for (std::int64_t r = rr.r0; r < rr.r1; ++r) {
    float* xr = at(x, r);
    const float* gr = at(g, r);
    float* mr = at(m, r);
    HeavyBallIncrement k;
    const bool apply = HeavyBallRow(xr, gr, mr, sums, r, rr, &k);
    const bool last = r + 1 == rr.r1;
    if (apply && last) {
      Pass::template Run<true, false>(
          xr, gr, mr, k, nullptr, nullptr, nullptr, beta, n);
    } else if (apply) {
      sums = Pass::template Run<true, true>(
          xr, gr, mr, k, xr + n, gr + n, mr + n, beta, n);
    } else if (!last) {
      sums = Pass::template Run<false, true>(
          nullptr, nullptr, nullptr, none, xr + n, gr + n, mr + n, beta, n);
    }
  }
}

__attribute__((target("avx2,fma"))) void StepRowsHeavyBall(float* x,
                                                           const float* g,
                                                           float* m,
                                                           RowRange& rr) {
  HeavyBallRows<BlockedHeavyBallPass>(x, g, m, rr);
}

// Rows of at most kShortRow entries, kShortBatch at a time as in
// StepShortRows: the four sums of the batch, then its solves (independent
// chains the processor overlaps), then its updates. Unlike StepShortRows it
// keeps the pipeline pass's software prefetch; the measured gain (see
// docs/oblique.md) is with it.
__attribute__((target("avx2,fma"))) void StepShortRowsHeavyBall(float* x,
                                                                const float* g,
                                                                float* m,
                                                                RowRange& rr) {
  const std::int64_t n = rr.n;
  const float beta = float(rr.p.momentum);
  const HeavyBallIncrement none;
  for (std::int64_t r0 = rr.r0; r0 < rr.r1; r0 += kShortBatch) {
    const std::int64_t count = std::min(kShortBatch, rr.r1 - r0);
    HeavyBallSums sums[kShortBatch];
    for (std::int64_t i = 0; i < count; ++i) {
      const std::int64_t o = (r0 + i) * n;
      sums[i] = BlockedHeavyBallPass::Run<false, true>(
          nullptr, nullptr, nullptr, none, x + o, g + o, m + o, beta, n);
    }
    HeavyBallIncrement k[kShortBatch];
    bool apply[kShortBatch];
    for (std::int64_t i = 0; i < count; ++i) {
      const std::int64_t o = (r0 + i) * n;
      apply[i] = HeavyBallRow(x + o, g + o, m + o, sums[i], r0 + i, rr, &k[i]);
    }
    for (std::int64_t i = 0; i < count; ++i) {
      const std::int64_t o = (r0 + i) * n;
      if (apply[i]) {
        BlockedHeavyBallPass::Run<true, false>(
            x + o, g + o, m + o, k[i], nullptr, nullptr, nullptr, beta, n);
      }
    }
  }
}

// Whether a float step takes the heavy-ball kernels: heavy-ball momentum.
inline bool UsesHeavyBallKernel(const RowRange& rr, bool has_momentum) {
  return has_momentum && rr.p.momentum > 0 && !rr.p.nesterov;
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
    if constexpr (std::is_same_v<T, float>) {
      if (UsesHeavyBallKernel(rr, m != nullptr)) {
        if (rr.n <= kShortRow) {
          StepShortRowsHeavyBall(x, g, m, rr);
        } else {
          StepRowsHeavyBall(x, g, m, rr);
        }
        return;
      }
    }
    StepRowsAvx2(x, g, m, rr);
    return;
  }
#endif
  StepRowsBaseline(x, g, m, rr);
}

}  // namespace

namespace internal {
// Test hook: use the kernels of `level` (0 baseline, 1 AVX2+FMA), or the
// best the CPU has when it has less. Returns the level now in use.
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
  internal::ForLoop(x.rows, x.size() >= kParallelMinSize, [&](std::int64_t r) {
    const double d = RowDot(x.row(r), u.row(r), n);
    ObliqueOps::ApplyProject(x.row(r), u.row(r), d, 0, n, 1);
  });
}

template <typename T>
RetractReport Oblique<T>::RetractImpl(View x, ConstView v) const {
  const std::int64_t n = x.cols;
  const double tol = collapse_tol_;
  std::int64_t collapsed = 0, first = kNoRow;
  // Row r, counting a collapse into *count and *least.
  auto row = [&](std::int64_t r, std::int64_t* count, std::int64_t* least) {
    const double yy = RowCandidateNorm2(x.row(r), v.row(r), n);
    if (!ObliqueOps::Normalisable(yy, tol)) {
      ++*count;
      *least = std::min(*least, r);
      return;
    }
    ObliqueOps::ApplyRetract(x.row(r), v.row(r), 1.0 / std::sqrt(yy), 0, n, 1);
  };
  if (!internal::UseParallelRegion(x.size() >= kParallelMinSize)) {
    for (std::int64_t r = 0; r < x.rows; ++r) row(r, &collapsed, &first);
  } else {
#pragma omp parallel for schedule(static) reduction(+ : collapsed) \
    reduction(min : first)
    for (std::int64_t r = 0; r < x.rows; ++r) row(r, &collapsed, &first);
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
  if (!internal::UseParallelRegion(x.size() >= kParallelMinSize)) {
    RowRange rr = all;
    rr.r1 = rows;
    StepRowsCpu(x.data, g.data, m_data, rr);
    return MakeReport(rr.collapsed, rr.first);
  }
  std::int64_t collapsed = 0, first = kNoRow;
#pragma omp parallel reduction(+ : collapsed) reduction(min : first)
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
