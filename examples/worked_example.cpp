// The worked example of symopt's foundation: what `bash scripts/main.sh` runs
// until the comparison study exists. Every number it prints is computed here,
// and every claim it prints is checked: the program exits non-zero when one
// fails.
//
//   1. Unit-norm filters. Minimise f(W) = sum_i w_i^T A_i w_i over the
//      oblique manifold (every row of W unit-norm): each row's minimiser is
//      the eigenvector of A_i's smallest eigenvalue. Riemannian SGD, heavy
//      ball, Nesterov and the bold driver against Eigen's eigensolver.
//   2. Exact weight sharing. The constraint engine derives the subspace of a
//      linear layer invariant to flipping its input image; least squares is
//      then solved inside it by momentum SGD on the TieSubspace manifold and
//      compared with the closed-form solution in compact coordinates.
//   3. Checkpoints. Training stopped, saved, reloaded into a fresh optimizer
//      and continued is bitwise identical to an uninterrupted run.
//   4. Bad input. A NaN in a gradient is reported and nothing moves.
//
// Usage: worked_example [--seed N]
#include <Eigen/Dense>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "manifolds/oblique.h"
#include "manifolds/tie_subspace.h"
#include "optim/bold_driver.h"
#include "optim/checkpoint.h"
#include "optim/eigen.h"
#include "optim/sgd.h"
#include "symmetry/constraint.h"

namespace {

using symopt::BoldDriver;
using symopt::Oblique;
using symopt::Parameter;
using symopt::RiemannianSgd;
using symopt::SgdOptions;
using Matrix =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

int failures = 0;

void Check(bool ok, const char* what) {
  std::printf("  [%s] %s\n", ok ? "ok" : "FAILED", what);
  if (!ok) ++failures;
}

// ---- 1. The eigenvector problem on the oblique manifold --------------------

struct EigenProblem {
  int rows, cols;
  std::vector<Matrix> a;           // symmetric positive definite, cols x cols
  std::vector<double> lambda_min;  // smallest eigenvalue of each A_i
  std::vector<Eigen::VectorXd> v;  // its eigenvector

  EigenProblem(int m, int n, unsigned seed) : rows(m), cols(n) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    for (int i = 0; i < m; ++i) {
      // A_i = Q diag(1, ..., 3) Q^T with a random orthogonal Q: a spectral
      // gap of 2/(n-1) above the smallest eigenvalue.
      Matrix b(n, n);
      for (int r = 0; r < n; ++r)
        for (int c = 0; c < n; ++c) b(r, c) = normal(rng);
      const Matrix q = Eigen::HouseholderQR<Matrix>(b).householderQ();
      Eigen::VectorXd spectrum(n);
      for (int k = 0; k < n; ++k) spectrum(k) = 1.0 + 2.0 * k / (n - 1);
      const Matrix ai = q * spectrum.asDiagonal() * q.transpose();
      Eigen::SelfAdjointEigenSolver<Matrix> es(ai);
      a.push_back(ai);
      lambda_min.push_back(es.eigenvalues()(0));
      v.push_back(es.eigenvectors().col(0));
    }
  }

  // f(W) and its Euclidean gradient 2 A_i w_i per row.
  double Evaluate(const Matrix& w, Matrix* grad) const {
    double f = 0;
    for (int i = 0; i < rows; ++i) {
      const Eigen::VectorXd ai_wi = a[i] * w.row(i).transpose();
      f += w.row(i).dot(ai_wi);
      grad->row(i) = 2 * ai_wi.transpose();
    }
    return f;
  }

  double Optimum() const {
    double s = 0;
    for (double l : lambda_min) s += l;
    return s;
  }

  // Largest angle (radians) between a row and its eigenvector, up to sign.
  double MaxAngle(const Matrix& w) const {
    double worst = 0;
    for (int i = 0; i < rows; ++i) {
      const double c = std::abs(w.row(i).dot(v[i])) / w.row(i).norm();
      worst = std::max(worst, std::acos(std::min(1.0, c)));
    }
    return worst;
  }
};

double MaxRowNormError(const Matrix& w) {
  double worst = 0;
  for (int i = 0; i < w.rows(); ++i)
    worst = std::max(worst, std::abs(w.row(i).norm() - 1));
  return worst;
}

struct RunResult {
  double gap;    // f(W) - optimum
  double angle;  // max angle to the eigenvectors
  double norm_error;
  long steps;
  long rejected;
};

// Runs `epochs` epochs of `steps_per_epoch` steps from the same random start.
RunResult RunOblique(const EigenProblem& p,
                     SgdOptions options,
                     bool bold_driver,
                     int epochs,
                     int steps_per_epoch,
                     unsigned seed) {
  auto manifold = std::make_shared<Oblique<double>>(p.rows, p.cols);
  Matrix w(p.rows, p.cols), g(p.rows, p.cols);
  manifold->RandomPoint(symopt::TensorView<double>(w.data(), p.rows, p.cols),
                        seed);
  // The user's own Eigen buffers are the parameter: no copy.
  std::vector<Parameter<double>> params = {
      symopt::MakeParameter("W", w, g, manifold)};
  RiemannianSgd<double> opt(params, std::move(options));
  std::unique_ptr<BoldDriver<double>> driver;
  if (bold_driver) driver = std::make_unique<BoldDriver<double>>(&opt);
  for (int e = 0; e < epochs; ++e) {
    for (int s = 0; s < steps_per_epoch; ++s) {
      p.Evaluate(w, &g);
      opt.Step();
    }
    if (driver) driver->EndEpoch(p.Evaluate(w, &g));
  }
  Matrix scratch(p.rows, p.cols);
  return {p.Evaluate(w, &scratch) - p.Optimum(),
          p.MaxAngle(w),
          MaxRowNormError(w),
          long(opt.step_count()),
          driver ? long(driver->rejected()) : 0L};
}

void PartOblique(unsigned seed) {
  std::printf("\n1. Unit-norm rows: min sum_i w_i^T A_i w_i over OB(8, 16)\n");
  std::printf(
      "   (each row's minimiser: the eigenvector of A_i's smallest "
      "eigenvalue)\n\n");
  const EigenProblem p(8, 16, seed);
  struct Variant {
    const char* name;
    double lr, momentum;
    bool nesterov, bold;
  };
  const Variant variants[] = {
      {"Riemannian SGD", 0.2, 0.0, false, false},
      {"heavy ball (0.9)", 0.05, 0.9, false, false},
      {"Nesterov (0.9)", 0.05, 0.9, true, false},
      {"bold driver + heavy ball", 0.2, 0.5, false, true}};
  std::printf("   %-26s %8s %14s %14s %14s %9s\n",
              "optimizer",
              "steps",
              "f - f*",
              "max angle",
              "max |norm-1|",
              "rejected");
  for (const Variant& v : variants) {
    SgdOptions o;
    o.lr = v.lr;
    o.momentum = v.momentum;
    o.nesterov = v.nesterov;
    const RunResult r = RunOblique(p, o, v.bold, 40, 50, seed + 1);
    std::printf("   %-26s %8ld %14.3e %14.3e %14.3e %9ld\n",
                v.name,
                r.steps,
                r.gap,
                r.angle,
                r.norm_error,
                r.rejected);
    char what[160];
    std::snprintf(what,
                  sizeof what,
                  "%s reaches the eigenvectors (angle < 1e-6, gap < 1e-10)",
                  v.name);
    Check(r.angle < 1e-6 && r.gap < 1e-10 && r.gap > -1e-12, what);
    Check(r.norm_error < 1e-12,
          "every row stays unit-norm (to 1e-12 in double)");
  }
}

// ---- 2. A flip-invariant linear layer --------------------------------------

void PartTies(unsigned seed) {
  std::printf(
      "\n2. Exact weight sharing: a linear layer R^{2x6} -> R^3 invariant to\n"
      "   flipping its input along the width (w = w T), then least squares in "
      "E\n\n");
  const symopt::Shape out({3}), in({2, 6});
  symopt::ConstraintProblem problem(out, in);
  problem.AddInvariance(symopt::Transform::Flip(in, 1));
  const symopt::Solution sol = symopt::Solve(problem);
  std::printf(
      "   ambient size %lld, dim E %lld, tie pattern %s, zeroed %lld, solver "
      "%s\n",
      (long long)sol.ambient_size(),
      (long long)sol.dim,
      sol.is_tie ? "yes" : "no",
      (long long)sol.num_zero,
      symopt::SolveMethodName(sol.method));
  std::printf("   classes of row 0:");
  for (int i = 0; i < 12; ++i) std::printf(" %d", sol.ties.class_of[i]);
  std::printf("\n");
  Check(sol.is_tie && sol.dim == 18,
        "E is a tie pattern of 3 x 6 mirror pairs (dim 18)");

  const std::unique_ptr<symopt::Manifold<double>> manifold =
      symopt::MakeManifold<double>(sol);
  auto tie = std::make_shared<symopt::TieSubspace<double>>(sol.ties);

  // Data: y = W* x + noise with an arbitrary (not invariant) W*.
  const int n = 200;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  Matrix x(n, 12), w_true(3, 12), y(n, 3);
  for (int i = 0; i < x.size(); ++i) x.data()[i] = normal(rng);
  for (int i = 0; i < w_true.size(); ++i) w_true.data()[i] = normal(rng);
  y = x * w_true.transpose();
  for (int i = 0; i < y.size(); ++i) y.data()[i] += 0.1 * normal(rng);

  // Closed form in compact coordinates: W = expand(theta) is linear in theta
  // with columns P e_k; solve the normal equations of ||X W^T - Y||^2.
  const int k = int(sol.dim);
  Matrix design(n * 3, k), target(n * 3, 1);
  for (int c = 0; c < k; ++c) {
    std::vector<double> theta(k, 0.0);
    theta[c] = 1;
    Matrix wc(3, 12);
    tie->Expand(theta.data(), symopt::TensorView<double>(wc.data(), 3, 12));
    const Matrix pred = x * wc.transpose();
    for (int i = 0; i < n * 3; ++i) design(i, c) = pred.data()[i];
  }
  for (int i = 0; i < n * 3; ++i) target(i, 0) = y.data()[i];
  const Eigen::VectorXd theta_star = design.colPivHouseholderQr().solve(target);
  Matrix w_star(3, 12);
  tie->Expand(theta_star.data(),
              symopt::TensorView<double>(w_star.data(), 3, 12));

  // Momentum SGD on the tie subspace, from 0.
  Matrix w = Matrix::Zero(3, 12), g(3, 12);
  SgdOptions o;
  o.lr = 0.02;
  o.momentum = 0.9;
  RiemannianSgd<double> opt({symopt::MakeParameter("W", w, g, tie)}, o);
  for (int it = 0; it < 2000; ++it) {
    g = (x * w.transpose() - y).transpose() * x /
        n;  // gradient of the mean squared error / 2
    opt.Step();
  }
  const double err = (w - w_star).cwiseAbs().maxCoeff();
  bool ties_exact = true;
  // NOLINTBEGIN(bugprone-suspicious-memory-comparison): ties are bitwise
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 2; ++c)
      for (int j = 0; j < 6; ++j)
        ties_exact &=
            std::memcmp(
                &w(r, c * 6 + j), &w(r, c * 6 + 5 - j), sizeof(double)) == 0;
  // NOLINTEND(bugprone-suspicious-memory-comparison)
  std::printf("   max |W_sgd - W_closed_form| = %.3e after %lld steps\n",
              err,
              (long long)opt.step_count());
  Check(err < 1e-8,
        "SGD in E reaches the closed-form constrained least-squares solution");
  Check(ties_exact, "mirror-pair weights are bitwise equal after training");
  Check(manifold->Dim() == sol.dim,
        "MakeManifold hands E to the optimizers with dim E");
}

// ---- 3. Checkpoints ---------------------------------------------------------

void PartCheckpoint(unsigned seed) {
  std::printf(
      "\n3. Checkpoint: stop after 300 steps, save, reload into a fresh "
      "optimizer,\n"
      "   continue 300 steps; compare with 600 uninterrupted steps\n\n");
  const EigenProblem p(8, 16, seed);
  auto manifold = std::make_shared<Oblique<float>>(p.rows, p.cols);
  SgdOptions o;
  o.lr = 0.02;
  o.momentum = 0.9;
  o.nesterov = true;
  using MatrixF =
      Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  auto run = [&](MatrixF& w, RiemannianSgd<float>& opt, MatrixF& g, int steps) {
    Matrix gd(p.rows, p.cols);
    for (int s = 0; s < steps; ++s) {
      p.Evaluate(w.cast<double>(), &gd);
      g = gd.cast<float>();
      opt.Step();
    }
  };
  MatrixF w1(p.rows, p.cols), g1(p.rows, p.cols);
  manifold->RandomPoint(symopt::TensorView<float>(w1.data(), p.rows, p.cols),
                        seed + 2);
  MatrixF g2(p.rows, p.cols);
  RiemannianSgd<float> a({symopt::MakeParameter("W", w1, g1, manifold)}, o);
  run(w1, a, g1, 300);
  const std::string path = "worked_example.ckpt";
  symopt::SaveCheckpoint(path, a);
  run(w1, a, g1, 300);

  MatrixF w_fresh = MatrixF::Zero(p.rows, p.cols);
  w_fresh.col(0).setOnes();  // any point on the manifold: the load replaces it
  RiemannianSgd<float> b({symopt::MakeParameter("W", w_fresh, g2, manifold)},
                         o);
  symopt::LoadCheckpoint(path, &b);
  run(w_fresh, b, g2, 300);
  std::remove(path.c_str());
  const bool identical =
      std::memcmp(w1.data(), w_fresh.data(), sizeof(float) * w1.size()) == 0;
  std::printf("   max |difference| = %.1e\n",
              double((w1 - w_fresh).cwiseAbs().maxCoeff()));
  Check(
      identical,
      "the continued run is bitwise identical (values, momentum, step count)");
}

// ---- 4. Bad input -----------------------------------------------------------

void PartBadInput() {
  std::printf("\n4. Bad input: a NaN in the gradient\n\n");
  auto manifold = std::make_shared<Oblique<float>>(4, 8);
  std::vector<float> w(32), g(32, 0.5f);
  manifold->RandomPoint(symopt::TensorView<float>(w.data(), 4, 8), 3);
  const std::vector<float> before = w;
  SgdOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  RiemannianSgd<float> opt(
      {symopt::MakeParameter<float>(
          "conv1.weight", w.data(), g.data(), 4, 8, manifold)},
      o);
  g[13] = std::numeric_limits<float>::quiet_NaN();
  const symopt::StepSummary s = opt.Step();
  std::printf("   status %s: %s\n",
              symopt::StepStatusName(s.status),
              s.message.c_str());
  Check(s.status == symopt::StepStatus::kNonFiniteGradient,
        "the NaN is reported as a value");
  Check(w == before && opt.step_count() == 0,
        "weights and optimizer state are unchanged");
}

}  // namespace

int main(int argc, char** argv) {
  unsigned seed = 7;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
      seed = unsigned(std::strtoul(argv[++i], nullptr, 10));
    } else {
      std::fprintf(stderr, "usage: %s [--seed N]\n", argv[0]);
      return 2;
    }
  }
  std::printf("symopt worked example (seed %u)\n", seed);
  PartOblique(seed);
  PartTies(seed);
  PartCheckpoint(seed);
  PartBadInput();
  std::printf("\n%s: %d check(s) failed\n",
              failures ? "FAILED" : "all checks passed",
              failures);
  return failures ? 1 : 0;
}
