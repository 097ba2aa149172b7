#include "manifolds/linear_subspace.h"

#include <Eigen/Core>
#include <Eigen/SVD>
#include <cmath>
#include <random>

namespace symopt {

namespace {

using RowMatrix =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstBasisMap = Eigen::Map<const RowMatrix>;

std::int64_t CheckedRows(std::int64_t rows,
                         std::int64_t cols,
                         std::int64_t dim,
                         const std::vector<double>& basis,
                         double tolerance) {
  SYMOPT_CHECK(rows >= 1 && cols >= 1,
               "linear_subspace: shape must be at least 1x1, got "
                   << rows << "x" << cols);
  const std::int64_t n = rows * cols;
  SYMOPT_CHECK(dim >= 0 && dim <= n,
               "linear_subspace: dimension " << dim << " outside [0, " << n
                                             << "] for a " << rows << "x"
                                             << cols << " block");
  SYMOPT_CHECK(std::int64_t(basis.size()) == n * dim,
               "linear_subspace: basis has "
                   << basis.size() << " values, expected rows*cols*dim = " << n
                   << "*" << dim << " = " << n * dim);
  for (std::size_t i = 0; i < basis.size(); ++i) {
    SYMOPT_CHECK(std::isfinite(basis[i]),
                 "linear_subspace: basis entry ("
                     << std::int64_t(i) / dim << ", " << std::int64_t(i) % dim
                     << ") is not finite");
  }
  SYMOPT_CHECK(tolerance > 0.0,
               "linear_subspace: tolerance must be > 0, got " << tolerance);
  // B^T B = I: find the worst entry.
  const ConstBasisMap b(basis.data(), n, dim);
  const Eigen::MatrixXd gram = b.transpose() * b;
  double worst = 0.0;
  std::int64_t wi = 0, wj = 0;
  for (std::int64_t j = 0; j < dim; ++j) {
    for (std::int64_t i = 0; i < dim; ++i) {
      const double e = std::abs(gram(i, j) - (i == j ? 1.0 : 0.0));
      if (e > worst) worst = e, wi = i, wj = j;
    }
  }
  if (wi == wj) {
    SYMOPT_CHECK(worst <= tolerance,
                 "linear_subspace: basis is not orthonormal: column "
                     << wi << " has squared norm " << gram(wi, wi)
                     << " (tolerance " << tolerance << ")");
  } else {
    SYMOPT_CHECK(worst <= tolerance,
                 "linear_subspace: basis is not orthonormal: columns "
                     << std::min(wi, wj) << " and " << std::max(wi, wj)
                     << " have inner product " << gram(wi, wj) << " (tolerance "
                     << tolerance << ")");
  }
  return rows;
}

}  // namespace

template <typename T>
LinearSubspace<T>::LinearSubspace(std::int64_t rows,
                                  std::int64_t cols,
                                  std::int64_t dim,
                                  const std::vector<double>& basis,
                                  double tolerance)
    : Manifold<T>(CheckedRows(rows, cols, dim, basis, tolerance), cols),
      dim_(dim),
      basis_(basis) {}

template <typename T>
std::unique_ptr<LinearSubspace<T>> LinearSubspace<T>::FromSpanningSet(
    std::int64_t rows,
    std::int64_t cols,
    std::int64_t num_vectors,
    const std::vector<double>& vectors,
    double rank_tolerance) {
  SYMOPT_CHECK(rows >= 1 && cols >= 1 && num_vectors >= 0,
               "linear_subspace: bad spanning set shape "
                   << rows << "x" << cols << " with " << num_vectors
                   << " vectors");
  const std::int64_t n = rows * cols;
  SYMOPT_CHECK(std::int64_t(vectors.size()) == n * num_vectors,
               "linear_subspace: spanning set has "
                   << vectors.size() << " values, expected rows*cols*vectors = "
                   << n << "*" << num_vectors << " = " << n * num_vectors);
  for (std::size_t i = 0; i < vectors.size(); ++i) {
    SYMOPT_CHECK(std::isfinite(vectors[i]),
                 "linear_subspace: spanning set entry ("
                     << std::int64_t(i) / num_vectors << ", "
                     << std::int64_t(i) % num_vectors << ") is not finite");
  }
  std::vector<double> basis;
  std::int64_t rank = 0;
  if (num_vectors > 0) {
    const Eigen::MatrixXd a =
        Eigen::Map<const RowMatrix>(vectors.data(), n, num_vectors);
    const Eigen::BDCSVD<Eigen::MatrixXd> svd(a, Eigen::ComputeThinU);
    const Eigen::VectorXd& s = svd.singularValues();
    const double rel =
        rank_tolerance >= 0.0
            ? rank_tolerance
            : double(std::max(n, num_vectors)) * std::ldexp(1.0, -52);
    const double cut = s.size() > 0 ? rel * s(0) : 0.0;
    while (rank < s.size() && s(rank) > cut) ++rank;
    RowMatrix u = svd.matrixU().leftCols(rank);
    basis.assign(u.data(), u.data() + u.size());
  }
  return std::make_unique<LinearSubspace<T>>(rows, cols, rank, basis);
}

template <typename T>
std::vector<double> LinearSubspace<T>::Coefficients(const T* u) const {
  const std::int64_t n = this->AmbientSize();
  const ConstBasisMap b(basis_.data(), n, dim_);
  const Eigen::VectorXd ud =
      Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(u, n)
          .template cast<double>();
  std::vector<double> c(static_cast<std::size_t>(dim_));
  Eigen::Map<Eigen::VectorXd>(c.data(), dim_) = b.transpose() * ud;
  return c;
}

template <typename T>
void LinearSubspace<T>::Combine(const std::vector<double>& c, T* out) const {
  const std::int64_t n = this->AmbientSize();
  const ConstBasisMap b(basis_.data(), n, dim_);
  Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>(out, n) =
      (b * Eigen::Map<const Eigen::VectorXd>(c.data(), dim_))
          .template cast<T>();
}

template <typename T>
void LinearSubspace<T>::ProjectPointImpl(View x) const {
  Combine(Coefficients(x.data), x.data);
}

template <typename T>
void LinearSubspace<T>::ProjectImpl(ConstView /*x*/, View u) const {
  Combine(Coefficients(u.data), u.data);
}

template <typename T>
RetractReport LinearSubspace<T>::RetractImpl(View x, ConstView v) const {
  std::vector<double> c = Coefficients(x.data);
  const std::vector<double> cv = Coefficients(v.data);
  for (std::size_t k = 0; k < c.size(); ++k) c[k] += cv[k];
  Combine(c, x.data);
  return {};
}

template <typename T>
void LinearSubspace<T>::InverseRetractImpl(ConstView x,
                                           ConstView y,
                                           View v) const {
  std::vector<double> c = Coefficients(y.data);
  const std::vector<double> cx = Coefficients(x.data);
  for (std::size_t k = 0; k < c.size(); ++k) c[k] -= cx[k];
  Combine(c, v.data);
}

template <typename T>
void LinearSubspace<T>::TransportImpl(ConstView, ConstView, View) const {}

template <typename T>
double LinearSubspace<T>::DistanceToManifoldImpl(ConstView x) const {
  const std::int64_t n = this->AmbientSize();
  std::vector<T> px(static_cast<std::size_t>(n));
  Combine(Coefficients(x.data), px.data());
  double s = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double d = double(x.data[i]) - double(px[i]);
    s += d * d;
  }
  return std::sqrt(s);
}

template <typename T>
void LinearSubspace<T>::RandomPointImpl(View x, std::uint64_t seed) const {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> c(static_cast<std::size_t>(dim_));
  for (double& e : c) e = normal(rng);
  Combine(c, x.data);
}

template <typename T>
void LinearSubspace<T>::TangentBasisMultiplyImpl(ConstView /*x*/,
                                                 const T* coeffs,
                                                 View v) const {
  std::vector<double> c(coeffs, coeffs + dim_);
  Combine(c, v.data);
}

template <typename T>
void LinearSubspace<T>::TangentBasisTransposeMultiplyImpl(ConstView /*x*/,
                                                          ConstView u,
                                                          T* coeffs) const {
  const std::vector<double> c = Coefficients(u.data);
  for (std::int64_t k = 0; k < dim_; ++k) coeffs[k] = T(c[std::size_t(k)]);
}

template <typename T>
RetractReport LinearSubspace<T>::StepImpl(View x,
                                          ConstView g,
                                          View m,
                                          const StepOptions& o) const {
  const std::int64_t n = this->AmbientSize();
  std::vector<T> grad(g.data, g.data + n);
  if (o.weight_decay != 0.0) {
    const T wd = T(o.weight_decay);
    for (std::int64_t i = 0; i < n; ++i) grad[i] = T(wd * x.data[i] + grad[i]);
  }
  const std::vector<double> cr = Coefficients(grad.data());
  std::vector<double> cx = Coefficients(x.data);
  std::vector<double> cd = cr;
  if (o.momentum > 0.0) {
    std::vector<double> cm = Coefficients(m.data);
    for (std::size_t k = 0; k < cm.size(); ++k) {
      cm[k] = cr[k] + o.momentum * cm[k];
      cd[k] = o.nesterov ? cr[k] + o.momentum * cm[k] : cm[k];
    }
    Combine(cm, m.data);
  }
  for (std::size_t k = 0; k < cx.size(); ++k) cx[k] -= o.lr * cd[k];
  Combine(cx, x.data);
  return {};
}

template class LinearSubspace<float>;
template class LinearSubspace<double>;

}  // namespace symopt
