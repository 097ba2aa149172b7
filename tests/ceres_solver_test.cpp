// Ceres's GradientProblemSolver running on symopt manifolds through
// symopt::ceres::ManifoldAdapter and FirstOrderLoss, checked against closed
// forms computed independently of the solver:
//   - oblique: min sum_i w_i^T A_i w_i over unit rows = sum_i lambda_min(A_i),
//     rows = +-eigenvectors (Eigen::SelfAdjointEigenSolver), as in
//     examples/ceres_oblique.cpp, over several shapes (one with 1-dimensional
//     rows: the DoF == 1 case) and line-search directions;
//   - tied oblique: the same over unit rows that are also tied: the minimum
//     of the Rayleigh quotient reduced to each row's class indicators;
//   - euclidean: a convex quadratic, minimiser H^{-1} b;
//   - tie subspace (both metrics): a weighted least-squares fit, minimiser the
//     per-class weighted mean of the targets (zeroed entries stay 0);
//   - product: the three above as blocks of one flat vector;
//   - ModelParameters: a "model" whose weights live in its own buffers,
//     polished in place, every buffer ending at its block's closed form;
//   - ceres::Problem (least squares, Levenberg-Marquardt through PlusJacobian):
//     the unit rows nearest to targets t are t_r / |t_r|;
//   - a loss that fails at the start leaves the parameters untouched.
#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <stdexcept>
#include <utility>
#include <vector>

#include "Eigen/Dense"
#include "adapters/ceres_manifold.h"
#include "catch.h"
#include "ceres/cost_function.h"
#include "ceres/gradient_problem.h"
#include "ceres/gradient_problem_solver.h"
#include "ceres/problem.h"
#include "ceres/solver.h"
#include "manifolds/euclidean.h"
#include "manifolds/oblique.h"
#include "manifolds/product.h"
#include "manifolds/tie_subspace.h"
#include "manifolds/tied_oblique.h"
#include "optim/parameter.h"
#include "tie_patterns.h"

namespace {

using RowMatrix =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ManifoldPtr = std::shared_ptr<const symopt::Manifold<double>>;

// Solves min f over `manifold` from x (updated in place) with tight
// tolerances; returns Ceres's summary.
ceres::GradientProblemSolver::Summary Minimise(
    const ManifoldPtr& manifold,
    const symopt::ceres::FirstOrderLoss::Callback& f,
    double* x,
    ceres::LineSearchDirectionType direction = ceres::LBFGS) {
  ceres::GradientProblem problem(
      new symopt::ceres::FirstOrderLoss(int(manifold->AmbientSize()), f),
      new symopt::ceres::ManifoldAdapter(manifold));
  CHECK(problem.NumTangentParameters() == manifold->Dim());
  ceres::GradientProblemSolver::Options options;
  options.line_search_direction_type = direction;
  options.max_num_iterations = 2000;
  options.function_tolerance = 0.0;  // stop on the gradient or the step
  options.gradient_tolerance = 1e-12;
  options.parameter_tolerance = 1e-15;
  options.logging_type = ceres::SILENT;
  ceres::GradientProblemSolver::Summary summary;
  ceres::Solve(options, problem, x, &summary);
  return summary;
}

// Symmetric with eigenvalues 1 + k + U(0, 0.5), k = 0..n-1: gaps >= 0.5.
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

// min f(W) = sum_r w_r^T A_r w_r over a block whose rows are unit vectors in
// the column spaces of the orthonormal bases s[r] (cols x p_r): identity for
// Oblique, normalised class indicators for TiedOblique. With w_r = s_r a,
// |a| = 1, the minimum is lambda_min(s_r^T A_r s_r), at a = its eigenvector.
struct RowRayleigh {
  int rows, cols;
  std::vector<Eigen::MatrixXd> s, a;

  RowRayleigh(std::vector<Eigen::MatrixXd> bases,
              int num_cols,
              std::uint64_t seed)
      : rows(int(bases.size())), cols(num_cols), s(std::move(bases)) {
    std::mt19937_64 rng(seed);
    for (int r = 0; r < rows; ++r) a.push_back(RandomSymmetric(cols, rng));
  }
  static std::vector<Eigen::MatrixXd> Identity(int rows, int cols) {
    return std::vector<Eigen::MatrixXd>(rows,
                                        Eigen::MatrixXd::Identity(cols, cols));
  }
  // Row r's subspace in a tied block: one column 1_{class k} / sqrt(n_k) per
  // class in the row, derived from the class ids alone.
  static std::vector<Eigen::MatrixXd> TiedBases(const symopt::TiePattern& p) {
    const int rows = int(p.rows), cols = int(p.cols);
    std::vector<Eigen::MatrixXd> bases(rows);
    for (int r = 0; r < rows; ++r) {
      std::vector<int> ids;
      for (int j = 0; j < cols; ++j) {
        const int k = p.class_of[std::size_t(r) * cols + j];
        if (k != symopt::TiePattern::kZero &&
            std::find(ids.begin(), ids.end(), k) == ids.end()) {
          ids.push_back(k);
        }
      }
      bases[r] = Eigen::MatrixXd::Zero(cols, Eigen::Index(ids.size()));
      for (std::size_t c = 0; c < ids.size(); ++c) {
        for (int j = 0; j < cols; ++j) {
          if (p.class_of[std::size_t(r) * cols + j] == ids[c]) {
            bases[r](j, Eigen::Index(c)) = 1.0;
          }
        }
        bases[r].col(Eigen::Index(c)).normalize();
      }
    }
    return bases;
  }

  double Evaluate(const double* w, double* egrad) const {
    double value = 0.0;
    for (int r = 0; r < rows; ++r) {
      const Eigen::Map<const Eigen::VectorXd> w_r(w + r * cols, cols);
      const Eigen::VectorXd a_w = a[r] * w_r;
      value += w_r.dot(a_w);
      if (egrad) Eigen::Map<Eigen::VectorXd>(egrad + r * cols, cols) = 2 * a_w;
    }
    return value;
  }
  // Checks the rows of w against the closed form; returns the minimum.
  double CheckMinimiser(const double* w) const {
    double f_star = 0.0;
    for (int r = 0; r < rows; ++r) {
      const Eigen::MatrixXd reduced = s[r].transpose() * a[r] * s[r];
      const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(reduced);
      f_star += eig.eigenvalues()[0];  // ascending
      const Eigen::VectorXd w_star = s[r] * eig.eigenvectors().col(0);
      const Eigen::Map<const Eigen::VectorXd> w_r(w + r * cols, cols);
      CAPTURE(r);
      CHECK(std::abs(w_r.norm() - 1.0) <= 1e-12);
      CHECK(std::abs(w_r.dot(w_star)) >= 1.0 - 1e-8);
    }
    CHECK(std::abs(Evaluate(w, nullptr) - f_star) <= 1e-9 * std::abs(f_star));
    return f_star;
  }
};

// f(x) = 0.5 sum_i c_i (x_i - t_i)^2 over a tie subspace: class k's common
// value is the weighted mean sum c_i t_i / sum c_i over its members; zeroed
// entries stay 0.
struct WeightedTieFit {
  symopt::TiePattern pattern;
  std::vector<double> t, c;

  WeightedTieFit(symopt::TiePattern p, std::uint64_t seed)
      : pattern(std::move(p)) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_real_distribution<double> weight(0.5, 2.0);
    for (std::size_t i = 0; i < pattern.class_of.size(); ++i) {
      t.push_back(normal(rng));
      c.push_back(weight(rng));
    }
  }
  double Evaluate(const double* x, double* egrad) const {
    double value = 0.0;
    for (std::size_t i = 0; i < t.size(); ++i) {
      value += 0.5 * c[i] * (x[i] - t[i]) * (x[i] - t[i]);
      if (egrad) egrad[i] = c[i] * (x[i] - t[i]);
    }
    return value;
  }
  void CheckMinimiser(const double* x) const {
    std::vector<double> num(pattern.num_classes, 0.0),
        den(pattern.num_classes, 0.0);
    for (std::size_t i = 0; i < t.size(); ++i) {
      const int k = pattern.class_of[i];
      if (k == symopt::TiePattern::kZero) continue;
      num[k] += c[i] * t[i];
      den[k] += c[i];
    }
    for (std::size_t i = 0; i < t.size(); ++i) {
      CAPTURE(i);
      const int k = pattern.class_of[i];
      if (k == symopt::TiePattern::kZero) {
        CHECK(x[i] == 0.0);
      } else {
        // A line search on the cost resolves x to ~sqrt(eps * f / curvature)
        // (~1e-7 here): below that, f no longer changes in double.
        CHECK(std::abs(x[i] - num[k] / den[k]) <= 1e-6);
      }
    }
  }
};

// Minimises a RowRayleigh on `manifold` from a random point and checks it.
void SolveRowRayleigh(const ManifoldPtr& manifold,
                      const RowRayleigh& problem,
                      ceres::LineSearchDirectionType direction,
                      std::uint64_t seed) {
  CAPTURE(manifold->Describe(), int(direction), seed);
  RowMatrix w(manifold->rows(), manifold->cols());
  // (Not A's seed: with the same stream the start would be the first column
  // of A's eigenbasis, i.e. already optimal for 1 row.)
  manifold->RandomPoint(
      symopt::TensorView<double>(w.data(), w.rows(), w.cols()), seed + 1000);
  const double f_start = problem.Evaluate(w.data(), nullptr);
  const auto summary = Minimise(
      manifold,
      [&](const double* x, double* g) { return problem.Evaluate(x, g); },
      w.data(),
      direction);
  INFO(summary.BriefReport());
  REQUIRE(summary.IsSolutionUsable());
  const double f_star = problem.CheckMinimiser(w.data());
  CHECK(f_star < f_start);
  CHECK(std::abs(summary.final_cost - f_star) <= 1e-9 * std::abs(f_star));
}

}  // namespace

TEST_CASE(
    "GradientProblemSolver finds the smallest eigenvectors on the oblique "
    "manifold",
    "[ceres][oblique]") {
  struct Case {
    int rows, cols;
    ceres::LineSearchDirectionType direction;
  };
  const Case cases[] = {{8, 10, ceres::LBFGS},
                        {5, 2, ceres::LBFGS},
                        {3, 6, ceres::BFGS},
                        {1, 25, ceres::LBFGS}};
  std::uint64_t seed = 100;
  for (const Case& c : cases) {
    ++seed;
    SolveRowRayleigh(
        std::make_shared<symopt::Oblique<double>>(c.rows, c.cols),
        RowRayleigh(RowRayleigh::Identity(c.rows, c.cols), c.cols, seed),
        c.direction,
        seed);
  }
}

TEST_CASE(
    "GradientProblemSolver finds the smallest tied eigenvectors on the tied "
    "oblique manifold",
    "[ceres][tied_oblique]") {
  using namespace symopt::testing;  // NOLINT(build/namespaces)
  std::uint64_t seed = 200;
  for (const symopt::TiePattern& pattern :
       {MirrorPattern(4, 9, {4}), PermuteIds(RunPattern(3, 8, 2, 3), 7)}) {
    ++seed;
    SolveRowRayleigh(
        std::make_shared<symopt::TiedOblique<double>>(pattern),
        RowRayleigh(RowRayleigh::TiedBases(pattern), int(pattern.cols), seed),
        ceres::LBFGS,
        seed);
  }
}

TEST_CASE(
    "GradientProblemSolver minimises a quadratic on the Euclidean manifold",
    "[ceres][euclidean]") {
  // f(x) = 0.5 x^T H x - b^T x with H SPD: the minimiser solves H x = b.
  constexpr int kRows = 3, kCols = 4, kN = kRows * kCols;
  std::mt19937_64 rng(5);
  const Eigen::MatrixXd h = RandomSymmetric(kN, rng);  // eigenvalues >= 1
  std::normal_distribution<double> normal(0.0, 1.0);
  Eigen::VectorXd b(kN);
  for (int i = 0; i < kN; ++i) b[i] = normal(rng);
  auto f = [&](const double* x, double* egrad) {
    const Eigen::Map<const Eigen::VectorXd> xv(x, kN);
    const Eigen::VectorXd hx = h * xv;
    if (egrad) Eigen::Map<Eigen::VectorXd>(egrad, kN) = hx - b;
    return 0.5 * xv.dot(hx) - b.dot(xv);
  };
  Eigen::VectorXd x = Eigen::VectorXd::Zero(kN);
  const auto summary = Minimise(
      std::make_shared<symopt::Euclidean<double>>(kRows, kCols), f, x.data());
  INFO(summary.BriefReport());
  REQUIRE(summary.IsSolutionUsable());
  const Eigen::VectorXd x_star = h.ldlt().solve(b);
  CHECK((x - x_star).norm() <= 1e-8 * x_star.norm());
}

TEST_CASE("GradientProblemSolver fits tied weights on a tie subspace",
          "[ceres][tie_subspace]") {
  const WeightedTieFit fit(symopt::testing::RandomPattern(6, 5, 8, 0.15, 31),
                           32);
  for (auto metric :
       {symopt::TieMetric::kEmbedded, symopt::TieMetric::kShared}) {
    CAPTURE(int(metric));
    auto tie =
        std::make_shared<symopt::TieSubspace<double>>(fit.pattern, metric);
    std::vector<double> x(fit.t.size());
    tie->RandomPoint(
        symopt::TensorView<double>(x.data(), tie->rows(), tie->cols()), 33);
    const auto summary = Minimise(
        tie,
        [&](const double* p, double* g) { return fit.Evaluate(p, g); },
        x.data());
    INFO(summary.BriefReport());
    REQUIRE(summary.IsSolutionUsable());
    fit.CheckMinimiser(x.data());
  }
}

TEST_CASE("GradientProblemSolver on a Product reaches every block's minimiser",
          "[ceres][product]") {
  // A model's parameter set as one flat vector: unit rows, tied weights
  // (shared metric) and tied unit rows, each with its own separable loss, so
  // the minimiser is every block's own closed form.
  using namespace symopt::testing;  // NOLINT(build/namespaces)
  const symopt::TiePattern tied_rows = MirrorPattern(3, 7, {3});
  const RowRayleigh oblique_term(RowRayleigh::Identity(4, 6), 6, 301);
  const WeightedTieFit tie_term(RandomPattern(3, 5, 6, 0.1, 302), 303);
  const RowRayleigh tied_term(RowRayleigh::TiedBases(tied_rows), 7, 304);
  auto product = std::make_shared<symopt::Product<double>>(
      std::vector<symopt::Product<double>::Part>{
          std::make_shared<symopt::Oblique<double>>(4, 6),
          std::make_shared<symopt::TieSubspace<double>>(
              tie_term.pattern, symopt::TieMetric::kShared),
          std::make_shared<symopt::TiedOblique<double>>(tied_rows)});
  const std::int64_t o1 = product->Offset(1), o2 = product->Offset(2);
  auto f = [&](const double* x, double* g) {
    return oblique_term.Evaluate(x, g) +
           tie_term.Evaluate(x + o1, g ? g + o1 : nullptr) +
           tied_term.Evaluate(x + o2, g ? g + o2 : nullptr);
  };
  std::vector<double> x(product->AmbientSize());
  product->RandomPoint(
      symopt::TensorView<double>(x.data(), 1, product->AmbientSize()), 305);
  const auto summary = Minimise(product, f, x.data());
  INFO(summary.BriefReport());
  REQUIRE(summary.IsSolutionUsable());
  oblique_term.CheckMinimiser(x.data());
  tie_term.CheckMinimiser(x.data() + o1);
  tied_term.CheckMinimiser(x.data() + o2);
}

TEST_CASE("ModelParameters polishes a model's own buffers in place",
          "[ceres][product]") {
  // A "model" with three parameters in its own memory: unit-norm filters W
  // (Rayleigh loss), a bias b (0.5 |b - c|^2) and tied weights T (weighted
  // fit, shared metric). forward_backward reads the buffers and writes the
  // gradient buffers, as a layer would.
  using symopt::MakeParameter;
  const RowRayleigh w_term(RowRayleigh::Identity(3, 5), 5, 501);
  const WeightedTieFit t_term(symopt::testing::MirrorPattern(2, 4), 502);
  const std::vector<double> c = {0.5, -1.25, 2.0};
  std::vector<double> w(15), w_grad(15), b(3, 0.0), b_grad(3), t(8, 0.0),
      t_grad(8);
  auto oblique = std::make_shared<symopt::Oblique<double>>(3, 5);
  oblique->RandomPoint(symopt::TensorView<double>(w.data(), 3, 5), 503);
  const symopt::ceres::ModelParameters model(
      {MakeParameter<double>("w", w.data(), w_grad.data(), 3, 5, oblique),
       MakeParameter<double>("b",
                             b.data(),
                             b_grad.data(),
                             1,
                             3,
                             std::make_shared<symopt::Euclidean<double>>(1, 3)),
       MakeParameter<double>("t",
                             t.data(),
                             t_grad.data(),
                             2,
                             4,
                             std::make_shared<symopt::TieSubspace<double>>(
                                 t_term.pattern, symopt::TieMetric::kShared))});
  REQUIRE(model.Size() == 15 + 3 + 8);
  int gradient_calls = 0;
  auto forward_backward = [&](bool need_gradient) {
    gradient_calls += need_gradient;
    double value =
        w_term.Evaluate(w.data(), need_gradient ? w_grad.data() : nullptr) +
        t_term.Evaluate(t.data(), need_gradient ? t_grad.data() : nullptr);
    for (int i = 0; i < 3; ++i) {
      value += 0.5 * (b[i] - c[i]) * (b[i] - c[i]);
      if (need_gradient) b_grad[i] = b[i] - c[i];
    }
    return value;
  };
  std::vector<double> x(model.Size());
  model.Gather(x.data());
  CHECK(std::equal(w.begin(), w.end(), x.begin()));
  const auto summary =
      Minimise(model.manifold(), model.Loss(forward_backward), x.data());
  INFO(summary.BriefReport());
  REQUIRE(summary.IsSolutionUsable());
  CHECK(gradient_calls > 0);
  model.Scatter(x.data());
  w_term.CheckMinimiser(w.data());
  t_term.CheckMinimiser(t.data());
  for (int i = 0; i < 3; ++i) CHECK(std::abs(b[i] - c[i]) <= 1e-6);
}

TEST_CASE("ModelParameters rejects parameters it cannot flatten",
          "[ceres][errors]") {
  std::vector<double> v(6), g(6);
  auto m = std::make_shared<symopt::Euclidean<double>>(2, 3);
  CHECK_THROWS_AS(symopt::ceres::ModelParameters({}), symopt::InvalidArgument);
  symopt::Parameter<double> p = symopt::MakeParameter<double>(
      "layer1.weight", v.data(), g.data(), 2, 3, m);
  p.grad = symopt::TensorView<double>(g.data(), 3, 2);
  CHECK_THROWS_WITH(symopt::ceres::ModelParameters({p}),
                    Catch::Contains("'layer1.weight' gradient has shape 3x2"));
  p.grad = symopt::TensorView<double>(nullptr, 2, 3);
  CHECK_THROWS_WITH(symopt::ceres::ModelParameters({p}),
                    Catch::Contains("'layer1.weight' gradient is null"));
}

// Residuals w - t over one block of n values (Jacobian: the identity).
class DifferenceCost final : public ceres::CostFunction {
 public:
  explicit DifferenceCost(std::vector<double> t) : t_(std::move(t)) {
    set_num_residuals(int(t_.size()));
    mutable_parameter_block_sizes()->push_back(int(t_.size()));
  }
  bool Evaluate(double const* const* parameters,
                double* residuals,
                double** jacobians) const override {
    const int n = int(t_.size());
    for (int i = 0; i < n; ++i) residuals[i] = parameters[0][i] - t_[i];
    if (jacobians != nullptr && jacobians[0] != nullptr) {
      for (int i = 0; i < n * n; ++i) jacobians[0][i] = 0.0;
      for (int i = 0; i < n; ++i) jacobians[0][i * n + i] = 1.0;
    }
    return true;
  }

 private:
  std::vector<double> t_;
};

TEST_CASE("ceres::Problem with the adapter finds the nearest unit rows",
          "[ceres][oblique]") {
  // min |W - T|_F^2 over unit rows: w_r = t_r / |t_r|. Levenberg-Marquardt
  // uses PlusJacobian (the N x d basis) rather than RightMultiply.
  constexpr int kRows = 4, kCols = 5;
  std::mt19937_64 rng(41);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> t(kRows * kCols);
  for (double& v : t) v = normal(rng);
  auto oblique = std::make_shared<symopt::Oblique<double>>(kRows, kCols);
  RowMatrix w(kRows, kCols);
  oblique->RandomPoint(symopt::TensorView<double>(w.data(), kRows, kCols), 42);
  // Start in the hemisphere of the answer (the problem's basin there).
  for (int r = 0; r < kRows; ++r) {
    const Eigen::Map<const Eigen::VectorXd> t_r(t.data() + r * kCols, kCols);
    if (w.row(r).dot(t_r) < 0) w.row(r) *= -1.0;
  }
  ceres::Problem problem;
  problem.AddResidualBlock(new DifferenceCost(t), nullptr, w.data());
  problem.SetManifold(w.data(), new symopt::ceres::ManifoldAdapter(oblique));
  ceres::Solver::Options options;
  options.function_tolerance = 1e-15;
  options.gradient_tolerance = 1e-15;
  options.parameter_tolerance = 1e-15;
  ceres::Solver::Summary summary;
  ceres::Solve(options, &problem, &summary);
  INFO(summary.BriefReport());
  REQUIRE(summary.IsSolutionUsable());
  for (int r = 0; r < kRows; ++r) {
    const Eigen::Map<const Eigen::VectorXd> t_r(t.data() + r * kCols, kCols);
    CAPTURE(r);
    // (Gauss-Newton converges linearly here, the residual at the answer is
    // not zero, and stops when the cost stops changing: ~sqrt(eps) in w.)
    CHECK((w.row(r).transpose() - t_r.normalized()).norm() <= 1e-6);
  }
}

TEST_CASE("A loss that fails at the start leaves the parameters untouched",
          "[ceres][errors]") {
  auto oblique = std::make_shared<symopt::Oblique<double>>(2, 3);
  RowMatrix w(2, 3);
  oblique->RandomPoint(symopt::TensorView<double>(w.data(), 2, 3), 3);
  const RowMatrix w0 = w;
  auto f = [](const double*, double*) -> double {
    throw std::runtime_error("the model produced NaN activations");
  };
  const auto summary = Minimise(oblique, f, w.data());
  CHECK_FALSE(summary.IsSolutionUsable());
  CHECK(summary.termination_type == ceres::FAILURE);
  CHECK(w == w0);
}
