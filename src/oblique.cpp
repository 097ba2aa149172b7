// CPU backend of Oblique<T>: row loops driving ObliqueOps (oblique.h), OpenMP
// over rows. Reductions over a row use `omp simd` with double accumulators, so
// they vectorise although each product is formed in double.
#include "manifolds/oblique.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace symopt {
namespace {

// Blocks smaller than this (elements) run on the calling thread: a parallel
// region costs more than the work.
constexpr std::int64_t kParallelMinSize = std::int64_t(1) << 15;
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

// ObliqueOps::AccumulateGram over a whole row, vectorised; m may be null.
template <typename T>
ObliqueGram RowGram(const T* __restrict x,
                    const T* __restrict g,
                    const T* __restrict m,
                    std::int64_t n) {
  double xx = 0, xg = 0, xm = 0, gg = 0, gm = 0, mm = 0;
  if (m == nullptr) {
#pragma omp simd reduction(+ : xx, xg, gg)
    for (std::int64_t i = 0; i < n; ++i) {
      const double xi = x[i], gi = g[i];
      xx += xi * xi;
      xg += xi * gi;
      gg += gi * gi;
    }
  } else {
#pragma omp simd reduction(+ : xx, xg, xm, gg, gm, mm)
    for (std::int64_t i = 0; i < n; ++i) {
      const double xi = x[i], gi = g[i], mi = m[i];
      xx += xi * xi;
      xg += xi * gi;
      xm += xi * mi;
      gg += gi * gi;
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

// Collapsed-row bookkeeping shared by the row loops.
RetractReport MakeReport(std::int64_t collapsed, std::int64_t first) {
  RetractReport report;
  report.collapsed_rows = collapsed;
  report.first_collapsed_row = collapsed > 0 ? first : -1;
  return report;
}

}  // namespace

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

// The fused step, one row at a time (see oblique.h):
//   1. read x, g, m once from memory, accumulating their Gram sums;
//   2. the candidate y = x - lr d and mp = beta m + r as combinations of x, g,
//      m, their norms from the Gram sums (directly if those could cancel);
//   3. a collapsed row is left alone; otherwise write x' and m' while the
//      row is still in cache.
template <typename T>
RetractReport Oblique<T>::StepImpl(View x,
                                   ConstView g,
                                   View m,
                                   const StepOptions& o) const {
  const std::int64_t n = x.cols;
  const bool has_m = o.momentum > 0;
  ObliqueStepParams p;
  p.lr = o.lr;
  p.momentum = o.momentum;
  p.nesterov = o.nesterov;
  p.weight_decay = o.weight_decay;
  const double tol = collapse_tol_;
  std::int64_t collapsed = 0, first = kNoRow;
#pragma omp parallel for schedule(static) reduction(+ : collapsed) \
    reduction(min : first) if (x.size() >= kParallelMinSize)
  for (std::int64_t r = 0; r < x.rows; ++r) {
    T* xr = x.row(r);
    const T* gr = g.row(r);
    T* mr = has_m ? m.row(r) : nullptr;
    const ObliqueGram s = RowGram<T>(xr, gr, mr, n);
    const ObliqueCandidate c = ObliqueOps::StepCandidate(s.xx, s.xg, p);
    double yy = ObliqueOps::GramInner(s, c.y, c.y);
    double ymp = has_m ? ObliqueOps::GramInner(s, c.y, c.mp) : 0.0;
    if (ObliqueOps::NeedsDirect(yy, s.xx)) {
      ObliqueOps::AccumulateDirect<T>(xr, gr, mr, c, 0, n, 1, &yy, &ymp);
    }
    const ObliqueRowUpdate u = ObliqueOps::StepUpdate(c, yy, ymp, tol);
    if (u.collapsed) {
      ++collapsed;
      first = std::min(first, r);
      continue;
    }
    ObliqueOps::ApplyStep<T>(xr, gr, mr, u, 0, n, 1);
  }
  return MakeReport(collapsed, first);
}

template class Oblique<float>;
template class Oblique<double>;

}  // namespace symopt
