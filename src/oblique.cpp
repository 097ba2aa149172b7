// CPU backend of Oblique<T>: row loops driving ObliqueOps (oblique.h), OpenMP
// over rows. Reductions over a row use `omp simd` with double accumulators, so
// they vectorise although each product is formed in double.
#include "manifolds/oblique.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

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
// One thread steps rows [r0, r1) as a software pipeline: the loop that writes
// row r (still in cache from its Gram pass) also accumulates the Gram sums of
// row r + 1 (streamed from memory), so the arithmetic of one row overlaps the
// memory traffic of the next and every element of x, g and m crosses the
// memory bus once each way. Rows are walked in blocks of kBlock elements; each
// block first prefetches the data kAhead elements further on (running into
// the following row at the end of a row), because the hardware prefetcher
// alone does not keep enough lines in flight for a loop this long (measured:
// 1.3x faster on 678 x 9216). kMomentum == false: m is never read or written.

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
  for (std::int64_t i = begin; i < end; i += kLine) {
    __builtin_prefetch(p + i, 0, 2);  // past the end is harmless: no fault
  }
#else
  (void)p, (void)begin, (void)end;
#endif
}

// c + a * b. With kFma as one fused instruction: for float data the product
// is exact in double, so both forms give the same bits.
template <bool kFma>
SYMOPT_ALWAYS_INLINE double MulAdd(double a, double b, double c) {
#if defined(__GNUC__)
  if (kFma) return __builtin_fma(a, b, c);
#endif
  return c + a * b;
}

// The pipeline stage: with kApply, writes row 0 (x0, g0, m0) by the
// increment k; with kGram, returns the Gram sums of row 1 (x1, g1, m1).
template <typename T, bool kMomentum, bool kApply, bool kGram, bool kFma>
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
    // Two short loops per block rather than one long one: each keeps its
    // values in registers (one loop would need ~27 vector registers).
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
    // The six sums in two loops of three (the block is in L1 for the
    // second): six double accumulators of two vectors each would not fit
    // the 16 AVX2 registers, and spilled accumulators serialise the loop.
    double xx = 0, xg = 0, xm = 0, gg = 0, gm = 0, mm = 0;
#pragma omp simd reduction(+ : xx, xg, gg)
    for (std::int64_t i = i0; i < end; ++i) {
      const double xi = x1[i], gi = g1[i];
      xx = MulAdd<kFma>(xi, xi, xx);
      xg = MulAdd<kFma>(xi, gi, xg);
      gg = MulAdd<kFma>(gi, gi, gg);
    }
    if (kMomentum) {
#pragma omp simd reduction(+ : xm, gm, mm)
      for (std::int64_t i = i0; i < end; ++i) {
        const double xi = x1[i], gi = g1[i], mi = m1[i];
        xm = MulAdd<kFma>(xi, mi, xm);
        gm = MulAdd<kFma>(gi, mi, gm);
        mm = MulAdd<kFma>(mi, mi, mm);
      }
    }
    ObliqueGram block;
    block.xx = xx;
    block.xg = xg;
    block.xm = xm;
    block.gg = gg;
    block.gm = gm;
    block.mm = mm;
    total.Add(block);
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

template <typename T, bool kMomentum, bool kFma>
SYMOPT_ALWAYS_INLINE void StepRows(T* x, const T* g, T* m, RowRange& rr) {
  const std::int64_t n = rr.n;
  if (rr.r0 >= rr.r1) return;
  auto mrow = [&](std::int64_t r) { return kMomentum ? m + r * n : nullptr; };
  const ObliqueIncrement<T> none{};
  auto gram = [&](std::int64_t r) {
    return Pass<T, kMomentum, false, true, kFma>(
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
      Pass<T, kMomentum, true, false, kFma>(
          xr, gr, mr, k, nullptr, nullptr, nullptr, n);
    } else {
      s = Pass<T, kMomentum, true, true, kFma>(
          xr, gr, mr, k, xr + n, gr + n, mrow(r + 1), n);
    }
  }
}

template <typename T>
void StepRowsBaseline(T* x, const T* g, T* m, RowRange& rr) {
  if (m != nullptr) {
    StepRows<T, true, false>(x, g, m, rr);
  } else {
    StepRows<T, false, false>(x, g, m, rr);
  }
}

// The library is built for baseline x86-64; where the CPU has AVX2 and FMA
// the kernel is also compiled for them and chosen at run time (2x the SIMD
// width; measured 1.3-2x faster in cache). FMA is used only for float data,
// where it changes no bits.
#if defined(__x86_64__) && defined(__GNUC__)
#define SYMOPT_OBLIQUE_AVX2 1
template <typename T>
__attribute__((target("avx2,fma"))) void StepRowsAvx2(T* x,
                                                      const T* g,
                                                      T* m,
                                                      RowRange& rr) {
  constexpr bool kFma = std::is_same_v<T, float>;
  if (m != nullptr) {
    StepRows<T, true, kFma>(x, g, m, rr);
  } else {
    StepRows<T, false, kFma>(x, g, m, rr);
  }
}

bool CpuHasAvx2Fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

std::atomic<bool>& UseWideSimd() {
#if defined(SYMOPT_OBLIQUE_AVX2)
  static std::atomic<bool> use(CpuHasAvx2Fma());
#else
  static std::atomic<bool> use(false);
#endif
  return use;
}

template <typename T>
void StepRowsCpu(T* x, const T* g, T* m, RowRange& rr) {
#if defined(SYMOPT_OBLIQUE_AVX2)
  if (UseWideSimd().load(std::memory_order_relaxed)) {
    StepRowsAvx2(x, g, m, rr);
    return;
  }
#endif
  StepRowsBaseline(x, g, m, rr);
}

}  // namespace

namespace internal {
// Test hook: false forces the baseline kernel; true restores the wide one
// where the CPU has it. Returns whether the wide kernel is now in use.
bool SetObliqueWideSimd(bool enabled) {
#if defined(SYMOPT_OBLIQUE_AVX2)
  UseWideSimd().store(enabled && CpuHasAvx2Fma());
#else
  (void)enabled;
#endif
  return UseWideSimd().load();
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
