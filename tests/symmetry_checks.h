// Independent checks of a constraint-engine Solution (tests only).
//
//   StackedConstraintMatrix(p)  the dense matrix of every equation of p, built
//                               from the transforms' dense matrices with
//                               Kronecker products (no union-find, no ties):
//                               rows kron(A, I) - kron(I, B^T) per constraint
//                               and one unit row per entry outside the support.
//   DenseNullity(m)             n - rank(m) by a dense JacobiSVD.
//   DenseProjector(s)           Pi_E as a dense matrix (ProjectE on unit
//   vectors). CheckSolutionProperties     Pi_E idempotent and symmetric, rank =
//   dim,
//                               its range satisfies every constraint and the
//                               support, dim E = nullity of the stacked matrix.
#pragma once

#include <Eigen/Core>
#include <Eigen/SVD>
#include <cstdint>
#include <random>
#include <vector>

#include "catch.h"
#include "symmetry/constraint.h"

namespace symopt {
namespace testing {

inline Eigen::MatrixXd Kron(const Eigen::MatrixXd& a,
                            const Eigen::MatrixXd& b) {
  Eigen::MatrixXd k(a.rows() * b.rows(), a.cols() * b.cols());
  for (Eigen::Index r = 0; r < a.rows(); ++r) {
    for (Eigen::Index c = 0; c < a.cols(); ++c) {
      k.block(r * b.rows(), c * b.cols(), b.rows(), b.cols()) = a(r, c) * b;
    }
  }
  return k;
}

inline Eigen::MatrixXd StackedConstraintMatrix(const ConstraintProblem& p) {
  const std::int64_t rows = p.rows(), cols = p.cols(), n = rows * cols;
  std::vector<Eigen::MatrixXd> blocks;
  for (const LayerConstraint& c : p.constraints()) {
    // vec_row(A W) = kron(A, I) vec_row(W); vec_row(W B) = kron(I, B^T)
    // vec_row(W).
    blocks.push_back(
        Kron(c.out.Dense(), Eigen::MatrixXd::Identity(cols, cols)) -
        Kron(Eigen::MatrixXd::Identity(rows, rows), c.in.Dense().transpose()));
  }
  std::vector<std::int64_t> masked;
  for (std::int64_t k = 0; k < n; ++k) {
    if (!p.support().Admissible(k)) masked.push_back(k);
  }
  const auto nb = static_cast<Eigen::Index>(blocks.size());
  const auto nm = static_cast<Eigen::Index>(masked.size());
  Eigen::MatrixXd m = Eigen::MatrixXd::Zero(nb * n + nm, n);
  for (Eigen::Index b = 0; b < nb; ++b)
    m.middleRows(b * n, n) = blocks[std::size_t(b)];
  for (Eigen::Index t = 0; t < nm; ++t)
    m(nb * n + t, masked[std::size_t(t)]) = 1.0;
  return m;
}

inline std::int64_t DenseNullity(const Eigen::MatrixXd& m, double tol = 1e-9) {
  if (m.rows() == 0) return m.cols();
  Eigen::JacobiSVD<Eigen::MatrixXd> svd(m);
  const Eigen::VectorXd& s = svd.singularValues();
  std::int64_t rank = 0;
  for (Eigen::Index t = 0; t < s.size(); ++t) {
    if (s(t) > tol * std::max(1.0, s(0))) ++rank;
  }
  return m.cols() - rank;
}

// The dense matrix of a linear map given by apply(x, y): y = M x.
template <typename F>
Eigen::MatrixXd DenseOperator(std::int64_t n, F apply) {
  Eigen::MatrixXd m(n, n);
  Eigen::VectorXd e = Eigen::VectorXd::Zero(n), col(n);
  for (std::int64_t k = 0; k < n; ++k) {
    e(k) = 1.0;
    apply(e.data(), col.data());
    m.col(k) = col;
    e(k) = 0.0;
  }
  return m;
}

inline Eigen::MatrixXd DenseProjector(const Solution& s) {
  return DenseOperator(s.ambient_size(),
                       [&](const double* x, double* y) { s.ProjectE(x, y); });
}

inline Eigen::MatrixXd DenseTwirl(const FiniteGroup& g) {
  return DenseOperator(g.out_shape().size() * g.in_shape().size(),
                       [&](const double* x, double* y) { g.Twirl(x, y); });
}

// A W - W B for every constraint, max-abs.
inline double ConstraintResidual(const ConstraintProblem& p,
                                 const Eigen::VectorXd& w) {
  const std::int64_t rows = p.rows(), cols = p.cols();
  Eigen::Map<
      const Eigen::
          Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>
      wm(w.data(), rows, cols);
  double worst = 0.0;
  for (const LayerConstraint& c : p.constraints()) {
    const Eigen::MatrixXd r = c.out.Dense() * wm - wm * c.in.Dense();
    worst = std::max(worst, r.cwiseAbs().maxCoeff());
  }
  for (std::int64_t k = 0; k < rows * cols; ++k) {
    if (!p.support().Admissible(k)) worst = std::max(worst, std::abs(w(k)));
  }
  return worst;
}

inline void CheckSolutionProperties(const ConstraintProblem& p,
                                    const Solution& s,
                                    std::uint64_t seed,
                                    double tol = 1e-9) {
  const std::int64_t n = p.ambient_size();
  REQUIRE(s.ambient_size() == n);
  const Eigen::MatrixXd pe = DenseProjector(s);
  CHECK((pe * pe - pe).cwiseAbs().maxCoeff() < tol);         // idempotent
  CHECK((pe - pe.transpose()).cwiseAbs().maxCoeff() < tol);  // symmetric
  CHECK(std::llround(pe.trace()) == s.dim);                  // rank = dim
  // Its range satisfies every constraint.
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  Eigen::VectorXd x(n), y(n);
  for (std::int64_t k = 0; k < n; ++k) x(k) = normal(rng);
  s.ProjectE(x.data(), y.data());
  CHECK(ConstraintResidual(p, y) < tol * (1.0 + y.norm()));
  // Expand lands in E too.
  Eigen::VectorXd theta(s.dim), w(n);
  for (std::int64_t k = 0; k < s.dim; ++k) theta(k) = normal(rng);
  s.Expand(theta.data(), w.data());
  CHECK(ConstraintResidual(p, w) < tol * (1.0 + w.norm()));
  // dim E equals the nullity of the stacked constraint matrix.
  CHECK(s.dim == DenseNullity(StackedConstraintMatrix(p)));
  if (s.is_tie) {
    // Zero entries are 0 and tied entries are equal for every member of E.
    for (std::int64_t k = 0; k < n; ++k) {
      const std::int32_t c = s.ties.class_of[k];
      if (c == TiePattern::kZero) {
        CHECK(w(k) == 0.0);
      } else {
        CHECK(w(k) == theta(c));
      }
    }
  }
}

}  // namespace testing
}  // namespace symopt
