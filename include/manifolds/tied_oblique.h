// TiedOblique: unit-norm rows inside a tie subspace (a filter that is both
// tied, e.g. flip-invariant, and unit-norm).
//
//   M = { x in E : ||x_r||_2 = 1 for every row r },
//   E = { x : x_a = x_b when class(a) = class(b), x_z = 0 for zeros }
//
// (TieSubspace, include/manifolds/tie_subspace.h). Every class must lie within
// one row, so E splits row by row and M is a product of spheres, one per row,
// each inside that row's part of E. In compact coordinates theta (one value
// per class) row r's squared norm is sum_{k in row r} n_k theta_k^2 (n_k the
// class size): with a_k = sqrt(n_k) theta_k ("scaled coordinates") each row is
// the ordinary unit sphere in R^{p_r}, p_r the number of classes in row r.
//
//   tangent space   T_x M = { u in E : <x_r, u_r> = 0 for every row }
//   projection      P_x(u) = Pi_E u, then u_r -= <x_r, u_r> x_r per row
//   gradient        P_x(g) (embedded metric: <u, v> = sum_i u_i v_i)
//   retraction      R_x(v) = row-normalise(x + v): stays in E
//   transport       T_{x->y}(v) = P_y(v)
//   inverse retr.   v_r = y_r / <x_r, y_r> - x_r  (requires <x_r, y_r> > 0)
//   tangent basis   per row, columns 2..p_r of the Householder reflection H_r
//                   that maps the scaled coordinates of x_r to a multiple of
//                   e_1: an orthonormal basis of x_r's complement in R^{p_r};
//                   coefficients are ordered row by row, p_r - 1 per row
//   dim             K - rows (K classes)
//
// Collapse (the Oblique convention, manifold.h, oblique.h): a row whose
// candidate x + v has norm <= collapse_tolerance() (default sqrt(eps of T)) or
// is not finite is left unchanged (in a fused step its momentum row too) and
// counted in the RetractReport, never divided by ~0. ProjectPoint maps a row
// whose projection onto E has norm <= collapse_tolerance() to the constant
// unit row in E (every class value 1/sqrt(row's nonzero entries); Oblique's
// e_0 is not in E in general); a non-finite entry there is an
// InvalidArgument naming it, and x is left untouched.
//
// Weight decay has no effect (as on Oblique): x is in E and normal to the
// sphere, so the wd x added to the gradient is projected away.
//
// Tied entries are written one value per class, so they stay bitwise equal
// through any number of steps; rows are renormalised from scratch (in double)
// at every retraction, so float rows keep |norm - 1| ~ 1e-7.
//
// Layout: classes sorted by row, each with its member list (CSR). Rows run on
// OpenMP threads for large blocks. The per-row maths of ProjectPoint,
// Project (= EgradToRgrad, Transport), Retract and the fused Step is shared
// with the GPU (src/backend/tied_oblique_ops.h), which runs those operations
// on Device::kCuda views with the CPU's bits (docs/cuda.md); the other
// operations are CPU only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "manifolds/manifold.h"
#include "manifolds/tie_subspace.h"

namespace symopt {

struct TiedObliqueLayout;  // src/backend/tied_oblique_ops.h

template <typename T>
class TiedOblique final : public Manifold<T> {
 public:
  using typename Manifold<T>::View;
  using typename Manifold<T>::ConstView;

  // sqrt(machine epsilon of T), as Oblique: 3.5e-4 for float, 1.5e-8 for
  // double.
  static double DefaultCollapseTolerance();

  // Requires: pattern.IsValid(); every class within one row (else
  // InvalidArgument naming the class and two of its rows); every row has a
  // nonzero entry (else InvalidArgument naming the row);
  // collapse_tolerance >= 0.
  explicit TiedOblique(const TiePattern& pattern,
                       double collapse_tolerance = DefaultCollapseTolerance());

  std::int64_t Dim() const override { return num_classes_ - this->rows(); }
  std::string Name() const override { return "tied_oblique"; }

  std::int64_t NumClasses() const { return num_classes_; }
  double collapse_tolerance() const { return collapse_tolerance_; }
  // The class ids again.
  TiePattern Pattern() const;

  // The CSR layout the per-row Ops read (src/backend/tied_oblique_ops.h;
  // the GPU backend uploads it once): classes sorted by row, row_start
  // (rows + 1 class positions), member_start (classes + 1 offsets), members
  // (flat indices by class) and the flat indices of the zeroed entries.
  const std::vector<std::int64_t>& RowStart() const { return row_start_; }
  const std::vector<std::int64_t>& MemberStart() const { return member_start_; }
  const std::vector<std::int32_t>& Members() const { return members_; }
  const std::vector<std::int32_t>& ZeroMembers() const { return zero_members_; }

 protected:
  void ProjectPointImpl(View x) const override;
  void ProjectImpl(ConstView x, View u) const override;
  RetractReport RetractImpl(View x, ConstView v) const override;
  void InverseRetractImpl(ConstView x, ConstView y, View v) const override;
  double DistanceToManifoldImpl(ConstView x) const override;
  void RandomPointImpl(View x, std::uint64_t seed) const override;
  void TangentBasisMultiplyImpl(ConstView x,
                                const T* coeffs,
                                View v) const override;
  void TangentBasisTransposeMultiplyImpl(ConstView x,
                                         ConstView u,
                                         T* coeffs) const override;
  // One pass per row, in compact coordinates: r = P_x(mean of g + wd x per
  // class), m = beta m + r, x' = normalise(x - lr d), m = P_x'(m).
  RetractReport StepImpl(View x,
                         ConstView g,
                         View m,
                         const StepOptions& options) const override;

 private:
  // Runs f(r, first_class, end_class, scratch) for every row, scratch
  // holding 4 * max_row_classes_ doubles private to the thread; f returns
  // true when the row collapsed. Returns the collapse report.
  template <typename F>
  RetractReport ForEachRow(F&& f) const;
  double MeanOf(const T* a, std::int64_t pos) const;
  double SumOf(const T* a, std::int64_t pos) const;
  void Write(T value, T* a, std::int64_t pos) const;
  void ZeroZeros(T* a) const;
  TiedObliqueLayout Layout() const;
  std::int64_t Size(std::int64_t pos) const {
    return member_start_[pos + 1] - member_start_[pos];
  }
  // Coefficient offset of row r in the tangent coordinates.
  std::int64_t CoeffStart(std::int64_t r) const { return row_start_[r] - r; }

  double collapse_tolerance_;
  std::int64_t num_classes_ = 0;
  std::int64_t max_row_classes_ = 0;
  std::vector<std::int64_t> row_start_;     // rows + 1 class positions
  std::vector<std::int64_t> member_start_;  // K + 1 offsets into members_
  std::vector<std::int32_t> members_;       // flat indices, by class
  std::vector<std::int32_t> class_ids_;     // id at each class position
  std::vector<std::int32_t> zero_members_;  // flat indices of zeros
};

extern template class TiedOblique<float>;
extern template class TiedOblique<double>;

}  // namespace symopt
