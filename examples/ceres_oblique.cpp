// Ceres's GradientProblemSolver (L-BFGS) on symopt's oblique manifold.
//
// Problem: minimise f(W) = sum_i w_i^T A_i w_i over W in OB(m, n), i.e. every
// row w_i of the m x n matrix W has unit norm, for symmetric A_i. The rows do
// not interact, and min_{|w| = 1} w^T A w is the smallest eigenvalue of A,
// attained at its eigenvector (Rayleigh quotient). So the closed form is
//   f* = sum_i lambda_min(A_i),   w_i* = +-v_min(A_i),
// computed here with Eigen::SelfAdjointEigenSolver, independently of the
// solver. The Euclidean gradient is row i = 2 A_i w_i; Ceres maps it to the
// tangent coordinates B(W)^T egrad with symopt::ceres::ManifoldAdapter.
//
// Prints the solver's report and the comparison; exits 1 on a mismatch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "Eigen/Dense"
#include "adapters/ceres_manifold.h"
#include "ceres/gradient_problem.h"
#include "ceres/gradient_problem_solver.h"
#include "manifolds/oblique.h"

namespace {

using RowMatrix =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A random symmetric n x n matrix Q diag(lambda) Q^T with eigenvalues at
// least 0.5 apart (so the minimiser is well separated), Q from the QR
// factorisation of a Gaussian matrix.
Eigen::MatrixXd RandomSymmetric(int n, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> jitter(0.0, 0.5);
  Eigen::MatrixXd g(n, n);
  for (int i = 0; i < n * n; ++i) g.data()[i] = normal(rng);
  const Eigen::MatrixXd q =
      Eigen::HouseholderQR<Eigen::MatrixXd>(g).householderQ();
  Eigen::VectorXd lambda(n);
  for (int k = 0; k < n; ++k) lambda[k] = 1.0 + k + jitter(rng);
  return q * lambda.asDiagonal() * q.transpose();
}

}  // namespace

int main() {
  constexpr int kRows = 8, kCols = 10;
  std::mt19937_64 rng(20240601);
  std::vector<Eigen::MatrixXd> a;
  a.reserve(kRows);
  for (int i = 0; i < kRows; ++i) a.push_back(RandomSymmetric(kCols, rng));

  // f(W) and its Euclidean gradient over the flattened row-major W.
  auto loss = [&](const double* w, double* egrad) {
    double f = 0.0;
    for (int i = 0; i < kRows; ++i) {
      const Eigen::Map<const Eigen::VectorXd> w_i(w + i * kCols, kCols);
      const Eigen::VectorXd a_w = a[i] * w_i;
      f += w_i.dot(a_w);
      if (egrad != nullptr) {
        Eigen::Map<Eigen::VectorXd>(egrad + i * kCols, kCols) = 2.0 * a_w;
      }
    }
    return f;
  };

  auto oblique = std::make_shared<symopt::Oblique<double>>(kRows, kCols);
  RowMatrix w(kRows, kCols);
  oblique->RandomPoint(symopt::TensorView<double>(w.data(), kRows, kCols), 7);

  // GradientProblem takes ownership of both adapters.
  ceres::GradientProblem problem(
      new symopt::ceres::FirstOrderLoss(kRows * kCols, loss),
      new symopt::ceres::ManifoldAdapter(oblique));
  ceres::GradientProblemSolver::Options options;
  options.line_search_direction_type = ceres::LBFGS;
  options.max_num_iterations = 1000;
  options.function_tolerance = 1e-15;
  options.gradient_tolerance = 1e-12;
  options.parameter_tolerance = 1e-15;
  options.logging_type = ceres::SILENT;
  ceres::GradientProblemSolver::Summary summary;
  ceres::Solve(options, problem, w.data(), &summary);
  std::printf("%s\n", summary.BriefReport().c_str());

  // The closed form, row by row.
  double f_star = 0.0, worst_alignment = 1.0, worst_norm = 0.0;
  for (int i = 0; i < kRows; ++i) {
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(a[i]);
    f_star += eig.eigenvalues()[0];  // ascending order
    const double alignment = std::abs(w.row(i).dot(eig.eigenvectors().col(0)));
    worst_alignment = std::min(worst_alignment, alignment);
    worst_norm = std::max(worst_norm, std::abs(w.row(i).norm() - 1.0));
  }
  const double f_final = loss(w.data(), nullptr);

  std::printf("rows x cols            %d x %d\n", kRows, kCols);
  std::printf("f(W) found by Ceres    %.12f\n", f_final);
  std::printf("sum of lambda_min      %.12f\n", f_star);
  std::printf("|f - f*| / |f*|        %.3e\n",
              std::abs(f_final - f_star) / std::abs(f_star));
  std::printf("min_i |<w_i, v_min>|   %.12f\n", worst_alignment);
  std::printf("max_i | |w_i| - 1 |    %.3e\n", worst_norm);

  const bool ok = summary.IsSolutionUsable() &&
                  std::abs(f_final - f_star) <= 1e-9 * std::abs(f_star) &&
                  worst_alignment >= 1.0 - 1e-8 && worst_norm <= 1e-12;
  std::printf("%s\n",
              ok ? "PASS: matches the closed form"
                 : "FAIL: does not match the closed form");
  return ok ? 0 : 1;
}
