// LinearSubspace: any linear subspace E of R^{rows x cols}, given by an
// orthonormal basis B (N x K, N = rows * cols, columns b_1..b_K with
// B^T B = I):
//
//   Pi_E u = B (B^T u)      (orthogonal projector, O(N K) per application)
//   T_x E = E;  R_x(v) = Pi_E(x + v) (= x + v for v in E; the projection only
//   removes rounding);  transport = identity;  <u, v> = sum_i u_i v_i;
//   tangent basis = B, coefficients B^T u;  dim = K.
//
// For constraints that are not ties (non-permutation transformations such as
// down-scaling, DESIGN.md s.4): the constraint engine returns a nullspace
// basis and hands it over here. B is dense, so this is for small weight blocks
// only (N K doubles are stored; every operation costs O(N K)); the engine
// prefers TieSubspace whenever the exact solution is a tie pattern.
//
// The basis is stored in double and products accumulate in double whatever T
// is. FromSpanningSet orthonormalises any spanning set (Eigen's BDCSVD,
// rank-revealing: directions with singular value <= tolerance * s_max are
// dropped, so dependent columns cost nothing).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "manifolds/manifold.h"

namespace symopt {

template <typename T>
class LinearSubspace final : public Manifold<T> {
 public:
  using typename Manifold<T>::View;
  using typename Manifold<T>::ConstView;

  // Largest |B^T B - I| entry accepted by the constructor's check.
  static constexpr double kDefaultTolerance = 1e-6;

  // basis: rows*cols x dim values, row-major (entry (i, k) at i * dim + k).
  // Requires: basis.size() == rows*cols*dim; 0 <= dim <= rows*cols; the
  // columns orthonormal to `tolerance` (else InvalidArgument naming the worst
  // column pair and its inner product).
  LinearSubspace(std::int64_t rows,
                 std::int64_t cols,
                 std::int64_t dim,
                 const std::vector<double>& basis,
                 double tolerance = kDefaultTolerance);

  // An orthonormal basis of the span of the num_vectors columns of
  // `vectors` (rows*cols x num_vectors, row-major). Columns whose singular
  // value is <= rank_tolerance * (largest singular value) are dropped;
  // rank_tolerance < 0 picks max(N, M) * 2^-52.
  // Requires: vectors.size() == rows*cols*num_vectors, entries finite.
  static std::unique_ptr<LinearSubspace> FromSpanningSet(
      std::int64_t rows,
      std::int64_t cols,
      std::int64_t num_vectors,
      const std::vector<double>& vectors,
      double rank_tolerance = -1.0);

  std::int64_t Dim() const override { return dim_; }
  std::string Name() const override { return "linear_subspace"; }

  // B, N x Dim() row-major.
  const std::vector<double>& Basis() const { return basis_; }

 protected:
  void ProjectPointImpl(View x) const override;
  void ProjectImpl(ConstView x, View u) const override;
  RetractReport RetractImpl(View x, ConstView v) const override;
  void InverseRetractImpl(ConstView x, ConstView y, View v) const override;
  void TransportImpl(ConstView x_old, ConstView x_new, View v) const override;
  double DistanceToManifoldImpl(ConstView x) const override;
  void RandomPointImpl(View x, std::uint64_t seed) const override;
  void TangentBasisMultiplyImpl(ConstView x,
                                const T* coeffs,
                                View v) const override;
  void TangentBasisTransposeMultiplyImpl(ConstView x,
                                         ConstView u,
                                         T* coeffs) const override;
  // In coefficients: r = B^T(g + wd x), m = B(r + beta B^T m),
  // x = B(B^T x - lr d).
  RetractReport StepImpl(View x,
                         ConstView g,
                         View m,
                         const StepOptions& options) const override;

 private:
  std::vector<double> Coefficients(const T* u) const;        // B^T u
  void Combine(const std::vector<double>& c, T* out) const;  // out = B c

  std::int64_t dim_;
  std::vector<double> basis_;
};

extern template class LinearSubspace<float>;
extern template class LinearSubspace<double>;

}  // namespace symopt
