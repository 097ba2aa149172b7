#include "manifolds/tied_oblique.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "backend/tied_oblique_ops.h"
#include "omp_loops.h"

namespace symopt {

namespace {

// Blocks at least this large run their rows on OpenMP threads.
constexpr std::int64_t kParallelMin = std::int64_t(1) << 16;

std::int64_t CheckedRows(const TiePattern& p, double collapse_tolerance) {
  std::string error;
  SYMOPT_CHECK(p.IsValid(&error),
               "tied_oblique: invalid tie pattern: " << error);
  SYMOPT_CHECK(p.rows * p.cols <= std::numeric_limits<std::int32_t>::max(),
               "tied_oblique: pattern " << p.rows << "x" << p.cols
                                        << " has more than 2^31 - 1 entries");
  SYMOPT_CHECK(collapse_tolerance >= 0.0 && std::isfinite(collapse_tolerance),
               "tied_oblique: collapse tolerance must be finite and >= 0, got "
                   << collapse_tolerance);
  return p.rows;
}

// sum_k n_k a_k b_k over one row's classes.
inline double WeightedDot(const double* a,
                          const double* b,
                          const double* n,
                          std::int64_t p) {
  double s = 0.0;
  for (std::int64_t k = 0; k < p; ++k) s += n[k] * a[k] * b[k];
  return s;
}

}  // namespace

template <typename T>
double TiedOblique<T>::DefaultCollapseTolerance() {
  return std::sqrt(double(std::numeric_limits<T>::epsilon()));
}

template <typename T>
TiedOblique<T>::TiedOblique(const TiePattern& p, double collapse_tolerance)
    : Manifold<T>(CheckedRows(p, collapse_tolerance), p.cols),
      collapse_tolerance_(collapse_tolerance),
      num_classes_(p.num_classes) {
  const std::int64_t rows = p.rows, cols = p.cols, n = rows * cols;
  const std::int32_t* id = p.class_of.data();
  std::vector<std::int64_t> row_of(static_cast<std::size_t>(num_classes_), -1);
  std::vector<std::int64_t> nonzero_in_row(static_cast<std::size_t>(rows), 0);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t k = id[i];
    if (k == TiePattern::kZero) continue;
    const std::int64_t r = i / cols;
    ++nonzero_in_row[std::size_t(r)];
    std::int64_t& row = row_of[std::size_t(k)];
    SYMOPT_CHECK(row < 0 || row == r,
                 "tied_oblique: class " << k << " has members in rows " << row
                                        << " and " << r
                                        << "; every class must lie within one "
                                           "row");
    row = r;
  }
  for (std::int64_t r = 0; r < rows; ++r) {
    SYMOPT_CHECK(nonzero_in_row[std::size_t(r)] > 0,
                 "tied_oblique: row " << r
                                      << " is entirely zeroed, so it cannot "
                                         "have unit norm");
  }
  // Class positions: sorted by row, then by id.
  row_start_.assign(static_cast<std::size_t>(rows) + 1, 0);
  for (std::int64_t k = 0; k < num_classes_; ++k)
    ++row_start_[std::size_t(row_of[k]) + 1];
  for (std::int64_t r = 0; r < rows; ++r) {
    max_row_classes_ = std::max(max_row_classes_, row_start_[r + 1]);
    row_start_[r + 1] += row_start_[r];
  }
  std::vector<std::int64_t> next(row_start_.begin(), row_start_.end() - 1);
  std::vector<std::int64_t> pos_of(static_cast<std::size_t>(num_classes_));
  class_ids_.resize(static_cast<std::size_t>(num_classes_));
  for (std::int64_t k = 0; k < num_classes_; ++k) {
    const std::int64_t pos = next[std::size_t(row_of[k])]++;
    pos_of[std::size_t(k)] = pos;
    class_ids_[std::size_t(pos)] = std::int32_t(k);
  }
  member_start_.assign(static_cast<std::size_t>(num_classes_) + 1, 0);
  for (std::int64_t i = 0; i < n; ++i) {
    if (id[i] != TiePattern::kZero)
      ++member_start_[std::size_t(pos_of[id[i]]) + 1];
  }
  for (std::int64_t pos = 0; pos < num_classes_; ++pos) {
    member_start_[pos + 1] += member_start_[pos];
  }
  std::vector<std::int64_t> cursor(member_start_.begin(),
                                   member_start_.end() - 1);
  members_.resize(static_cast<std::size_t>(member_start_.back()));
  for (std::int64_t i = 0; i < n; ++i) {
    if (id[i] == TiePattern::kZero) {
      zero_members_.push_back(std::int32_t(i));
    } else {
      members_[std::size_t(cursor[std::size_t(pos_of[id[i]])]++)] =
          std::int32_t(i);
    }
  }
}

template <typename T>
double TiedOblique<T>::MeanOf(const T* a, std::int64_t pos) const {
  return SumOf(a, pos) / double(Size(pos));
}

template <typename T>
double TiedOblique<T>::SumOf(const T* a, std::int64_t pos) const {
  double s = 0.0;
  for (std::int64_t j = member_start_[pos]; j < member_start_[pos + 1]; ++j) {
    s += double(a[members_[j]]);
  }
  return s;
}

template <typename T>
void TiedOblique<T>::Write(T value, T* a, std::int64_t pos) const {
  for (std::int64_t j = member_start_[pos]; j < member_start_[pos + 1]; ++j) {
    a[members_[j]] = value;
  }
}

template <typename T>
TiedObliqueLayout TiedOblique<T>::Layout() const {
  TiedObliqueLayout l;
  l.row_start = row_start_.data();
  l.member_start = member_start_.data();
  l.members = members_.data();
  l.rows = this->rows();
  return l;
}

template <typename T>
void TiedOblique<T>::ZeroZeros(T* a) const {
  for (const std::int32_t i : zero_members_) a[i] = T(0);
}

template <typename T>
template <typename F>
RetractReport TiedOblique<T>::ForEachRow(F&& f) const {
  const std::int64_t rows = this->rows();
  std::int64_t collapsed = 0;
  std::int64_t first = std::numeric_limits<std::int64_t>::max();
  // Rows [r0, r1), counting the rows f reports collapsed into *count and the
  // first of them into *least.
  auto run = [&](std::int64_t r0,
                 std::int64_t r1,
                 std::int64_t* count,
                 std::int64_t* least) {
    std::vector<double> scratch(
        static_cast<std::size_t>(5 * max_row_classes_ + 1));
    for (std::int64_t r = r0; r < r1; ++r) {
      if (f(r, row_start_[r], row_start_[r + 1], scratch.data())) {
        ++*count;
        *least = std::min(*least, r);
      }
    }
  };
  if (!internal::UseParallelRegion(this->AmbientSize() >= kParallelMin)) {
    run(0, rows, &collapsed, &first);
  } else {
#pragma omp parallel reduction(+ : collapsed) reduction(min : first)
    {
      const std::int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
      run(rows * t / nt, rows * (t + 1) / nt, &collapsed, &first);
    }
  }
  RetractReport report;
  report.collapsed_rows = collapsed;
  report.first_collapsed_row = collapsed > 0 ? first : -1;
  return report;
}

template <typename T>
TiePattern TiedOblique<T>::Pattern() const {
  TiePattern p;
  p.rows = this->rows();
  p.cols = this->cols();
  p.num_classes = std::int32_t(num_classes_);
  p.class_of.assign(static_cast<std::size_t>(this->AmbientSize()),
                    TiePattern::kZero);
  for (std::int64_t pos = 0; pos < num_classes_; ++pos) {
    for (std::int64_t j = member_start_[pos]; j < member_start_[pos + 1]; ++j) {
      p.class_of[std::size_t(members_[j])] = class_ids_[std::size_t(pos)];
    }
  }
  return p;
}

// Pi_E, then each row scaled to unit norm (a ~0 row becomes the constant row).
template <typename T>
void TiedOblique<T>::ProjectPointImpl(View x) const {
  T* xs = x.data;
  for (std::int64_t i = 0; i < x.size(); ++i) {
    SYMOPT_CHECK(std::isfinite(xs[i]),
                 this->Describe() << ": ProjectPoint: entry (" << i / x.cols
                                  << ", " << i % x.cols << ") is not finite");
  }
  const TiedObliqueLayout l = Layout();
  const double tol = collapse_tolerance_;
  ForEachRow([&](std::int64_t r, std::int64_t, std::int64_t, double*) {
    TiedObliqueOps::ProjectPointRow(l, r, xs, tol);
    return false;
  });
  ZeroZeros(xs);
}

template <typename T>
void TiedOblique<T>::ProjectImpl(ConstView x, View u) const {
  const TiedObliqueLayout l = Layout();
  ForEachRow([&](std::int64_t r, std::int64_t, std::int64_t, double*) {
    TiedObliqueOps::ProjectRow(l, r, x.data, u.data);
    return false;
  });
  ZeroZeros(u.data);
}

template <typename T>
RetractReport TiedOblique<T>::RetractImpl(View x, ConstView v) const {
  const TiedObliqueLayout l = Layout();
  const double tol = collapse_tolerance_;
  return ForEachRow([&](std::int64_t r, std::int64_t, std::int64_t, double*) {
    return TiedObliqueOps::RetractRow(l, r, x.data, v.data, tol);
  });
}

// y = (x + v) / |x + v| with v _|_ x gives <x, y> = 1 / |x + v|, so
// v = y / <x, y> - x.
template <typename T>
void TiedOblique<T>::InverseRetractImpl(ConstView x,
                                        ConstView y,
                                        View v) const {
  const T* xs = x.data;
  const T* ys = y.data;
  T* vs = v.data;
  ForEachRow([&](std::int64_t, std::int64_t b, std::int64_t e, double* s) {
    const std::int64_t p = e - b;
    double *xt = s, *yt = s + p, *n = s + 2 * p;
    for (std::int64_t k = 0; k < p; ++k) {
      n[k] = double(Size(b + k));
      xt[k] = MeanOf(xs, b + k);
      yt[k] = MeanOf(ys, b + k);
    }
    const double dot = WeightedDot(xt, yt, n, p);
    for (std::int64_t k = 0; k < p; ++k)
      Write(T(yt[k] / dot - xt[k]), vs, b + k);
    return false;
  });
  ZeroZeros(vs);
}

// The nearest point is Pi_E x with rows normalised: the distance squares add
// the part of x off E and, per row, (|Pi_E x_r| - 1)^2.
template <typename T>
double TiedOblique<T>::DistanceToManifoldImpl(ConstView x) const {
  const T* xs = x.data;
  const std::int64_t rows = this->rows();
  double total = internal::SumLoop(
      rows,
      this->AmbientSize() >= kParallelMin,
      [&](std::int64_t r, double& acc) {
        double norm2 = 0.0;
        for (std::int64_t pos = row_start_[r]; pos < row_start_[r + 1]; ++pos) {
          const double mean = MeanOf(xs, pos);
          norm2 += double(Size(pos)) * mean * mean;
          for (std::int64_t j = member_start_[pos]; j < member_start_[pos + 1];
               ++j) {
            const double d = double(xs[members_[j]]) - mean;
            acc += d * d;
          }
        }
        const double d = std::sqrt(norm2) - 1.0;
        acc += d * d;
      });
  for (const std::int32_t i : zero_members_)
    total += double(xs[i]) * double(xs[i]);
  return std::sqrt(total);
}

template <typename T>
void TiedOblique<T>::RandomPointImpl(View x, std::uint64_t seed) const {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (std::int64_t pos = 0; pos < num_classes_; ++pos)
    Write(T(normal(rng)), x.data, pos);
  ZeroZeros(x.data);
  ProjectPointImpl(x);
}

namespace {

// The Householder vector of row r: w = s + sign(s_0) e_0 for the scaled unit
// coordinates s_k = sqrt(n_k) theta_k / |x_r|; returns w.w. H = I - 2ww^T/w.w
// maps s to -sign(s_0) e_0, so H's columns 1..p-1 span s's complement.
inline double HouseholderVector(const double* xt,
                                const double* n,
                                std::int64_t p,
                                double* w) {
  const double norm = std::sqrt(WeightedDot(xt, xt, n, p));
  for (std::int64_t k = 0; k < p; ++k) w[k] = std::sqrt(n[k]) * xt[k] / norm;
  w[0] += w[0] >= 0.0 ? 1.0 : -1.0;
  double ww = 0.0;
  for (std::int64_t k = 0; k < p; ++k) ww += w[k] * w[k];
  return ww;
}

// z <- H z = z - 2 w (w.z) / w.w
inline void ApplyHouseholder(const double* w,
                             double ww,
                             std::int64_t p,
                             double* z) {
  double wz = 0.0;
  for (std::int64_t k = 0; k < p; ++k) wz += w[k] * z[k];
  const double f = 2.0 * wz / ww;
  for (std::int64_t k = 0; k < p; ++k) z[k] -= f * w[k];
}

}  // namespace

template <typename T>
void TiedOblique<T>::TangentBasisMultiplyImpl(ConstView x,
                                              const T* coeffs,
                                              View v) const {
  const T* xs = x.data;
  T* vs = v.data;
  ForEachRow([&](std::int64_t r, std::int64_t b, std::int64_t e, double* s) {
    const std::int64_t p = e - b;
    double *xt = s, *n = s + p, *w = s + 2 * p, *z = s + 3 * p;
    for (std::int64_t k = 0; k < p; ++k) {
      n[k] = double(Size(b + k));
      xt[k] = MeanOf(xs, b + k);
    }
    const double ww = HouseholderVector(xt, n, p, w);
    const T* c = coeffs + CoeffStart(r);
    z[0] = 0.0;
    for (std::int64_t k = 1; k < p; ++k) z[k] = double(c[k - 1]);
    ApplyHouseholder(w, ww, p, z);
    for (std::int64_t k = 0; k < p; ++k)
      Write(T(z[k] / std::sqrt(n[k])), vs, b + k);
    return false;
  });
  ZeroZeros(vs);
}

template <typename T>
void TiedOblique<T>::TangentBasisTransposeMultiplyImpl(ConstView x,
                                                       ConstView u,
                                                       T* coeffs) const {
  const T* xs = x.data;
  const T* us = u.data;
  ForEachRow([&](std::int64_t r, std::int64_t b, std::int64_t e, double* s) {
    const std::int64_t p = e - b;
    double *xt = s, *n = s + p, *w = s + 2 * p, *z = s + 3 * p;
    for (std::int64_t k = 0; k < p; ++k) {
      n[k] = double(Size(b + k));
      xt[k] = MeanOf(xs, b + k);
      z[k] = SumOf(us, b + k) / std::sqrt(n[k]);  // <b_k-direction, u>
    }
    const double ww = HouseholderVector(xt, n, p, w);
    ApplyHouseholder(w, ww, p, z);
    T* c = coeffs + CoeffStart(r);
    for (std::int64_t k = 1; k < p; ++k) c[k - 1] = T(z[k]);
    return false;
  });
}

// The composition, row by row in compact coordinates, rounding to T wherever
// StepComposed stores a T (TiedObliqueOps::StepRow).
template <typename T>
RetractReport TiedOblique<T>::StepImpl(View x,
                                       ConstView g,
                                       View m,
                                       const StepOptions& o) const {
  const bool momentum = o.momentum > 0.0;
  StepOptions p;
  p.lr = o.lr;
  p.momentum = o.momentum;
  p.nesterov = o.nesterov;
  p.weight_decay = o.weight_decay;
  const TiedObliqueLayout l = Layout();
  const double tol = collapse_tolerance_;
  T* ms = momentum ? m.data : nullptr;
  const RetractReport report =
      ForEachRow([&](std::int64_t r, std::int64_t, std::int64_t, double*) {
        return TiedObliqueOps::StepRow(l, r, x.data, g.data, ms, p, tol);
      });
  ZeroZeros(x.data);
  if (momentum) ZeroZeros(ms);
  return report;
}

template class TiedOblique<float>;
template class TiedOblique<double>;

}  // namespace symopt
