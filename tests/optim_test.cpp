// RiemannianSgd: convergence to known minimizers, groups, weight decay,
// NaN/Inf screening, collapsed rows, construction checks.
#include <Eigen/Dense>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "catch.h"
#include "manifold_checks.h"
#include "manifolds/euclidean.h"
#include "manifolds/oblique.h"
#include "manifolds/parallel.h"
#include "manifolds/tie_subspace.h"
#include "manifolds/tied_oblique.h"
#include "optim/bold_driver.h"
#include "optim/eigen.h"
#include "optim/sgd.h"
#include "optim_test_util.h"
#include "tie_patterns.h"

using namespace symopt;
using namespace symopt::testing;
using Catch::Matchers::Contains;

namespace {

// A Euclidean-like test manifold whose retraction keeps a row whose
// candidate x + v is exactly zero, and reports it: the collapse event of
// oblique-type manifolds, made easy to trigger.
class ZeroRowKeeper final : public Manifold<double> {
 public:
  ZeroRowKeeper(std::int64_t rows, std::int64_t cols) : Manifold(rows, cols) {}
  std::int64_t Dim() const override { return AmbientSize(); }
  std::string Name() const override { return "zero_row_keeper"; }

 protected:
  void ProjectPointImpl(View) const override {}
  void ProjectImpl(ConstView, View) const override {}
  RetractReport RetractImpl(View x, ConstView v) const override {
    RetractReport report;
    for (std::int64_t r = 0; r < rows(); ++r) {
      bool zero = true;
      for (std::int64_t c = 0; c < cols(); ++c) {
        zero = zero && x.row(r)[c] + v.row(r)[c] == 0.0;
      }
      if (zero) {
        if (report.first_collapsed_row < 0) report.first_collapsed_row = r;
        ++report.collapsed_rows;
        continue;
      }
      for (std::int64_t c = 0; c < cols(); ++c) x.row(r)[c] += v.row(r)[c];
    }
    return report;
  }
  void InverseRetractImpl(ConstView x, ConstView y, View v) const override {
    for (std::int64_t i = 0; i < v.size(); ++i)
      v.data[i] = y.data[i] - x.data[i];
  }
  double DistanceToManifoldImpl(ConstView) const override { return 0.0; }
  void TangentBasisMultiplyImpl(ConstView,
                                const double* c,
                                View v) const override {
    for (std::int64_t i = 0; i < v.size(); ++i) v.data[i] = c[i];
  }
  void TangentBasisTransposeMultiplyImpl(ConstView,
                                         ConstView u,
                                         double* c) const override {
    for (std::int64_t i = 0; i < u.size(); ++i) c[i] = u.data[i];
  }
};

template <typename T>
std::shared_ptr<const Manifold<T>> Eucl(std::int64_t r, std::int64_t c) {
  return std::make_shared<Euclidean<T>>(r, c);
}

}  // namespace

TEMPLATE_TEST_CASE(
    "Euclidean least squares reaches the normal-equation solution",
    "[optim]",
    float,
    double) {
  using T = TestType;
  using Mat =
      Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  // min_X 1/2 ||A X - B||_F^2, X 4x3: X* = (A^T A)^{-1} A^T B.
  std::mt19937_64 rng(42);
  std::normal_distribution<double> normal;
  Mat a(12, 4), b(12, 3);
  for (int i = 0; i < a.size(); ++i) a.data()[i] = normal(rng);
  for (int i = 0; i < b.size(); ++i) b.data()[i] = normal(rng);
  const Mat ata = a.transpose() * a;
  const Mat x_star = ata.ldlt().solve(a.transpose() * b);
  const double lambda_max =
      Eigen::SelfAdjointEigenSolver<Mat>(ata).eigenvalues().maxCoeff();

  struct Variant {
    const char* name;
    double momentum;
    bool nesterov;
  };
  for (const Variant& v : {Variant{"plain", 0.0, false},
                           Variant{"momentum", 0.9, false},
                           Variant{"nesterov", 0.9, true}}) {
    INFO(v.name);
    Model<T> model;
    model.Add("x", Eucl<T>(4, 3), 1);
    SgdOptions o;
    o.lr = (v.momentum > 0 ? 0.5 : 1.0) / lambda_max;
    o.momentum = v.momentum;
    o.nesterov = v.nesterov;
    RiemannianSgd<T> opt(model.Params(), o);
    auto& x = model.blocks[0].value;
    auto& g = model.blocks[0].grad;
    for (int it = 0; it < 3000; ++it) {
      Eigen::Map<const Eigen::Matrix<T, 4, 3, Eigen::RowMajor>> xm(x.data());
      const Mat grad = a.transpose() * (a * xm.template cast<double>() - b);
      for (int i = 0; i < 12; ++i) g[i] = T(grad.data()[i]);
      REQUIRE(opt.Step().status == StepStatus::kOk);
    }
    double err = 0;
    for (int i = 0; i < 12; ++i)
      err = std::max(err, std::abs(double(x[i]) - x_star.data()[i]));
    CHECK(err <= (std::is_same_v<T, float> ? 2e-5 : 1e-10));
    CHECK(opt.step_count() == 3000);
  }
}

TEST_CASE("Parameter groups have their own learning rate, momentum and decay",
          "[optim]") {
  Model<double> model;
  model.Add("a", Eucl<double>(2, 3), 1, /*group=*/0);
  model.Add("b", Eucl<double>(1, 4), 2, /*group=*/1);
  model.Add("c", Eucl<double>(3, 1), 3, /*group=*/2);
  SgdOptions o;
  o.lr = 0.1;
  o.groups[1].lr = 0.5;
  o.groups[1].momentum = 0.9;
  o.groups[2].weight_decay = 0.25;
  RiemannianSgd<double> opt(model.Params(), o);

  CHECK(opt.GroupLr(0) == 0.1);
  CHECK(opt.GroupLr(1) == 0.5);
  CHECK(opt.GroupLr(2) == 0.1);
  CHECK(opt.MomentumBuffer(0).empty());
  CHECK_FALSE(opt.MomentumBuffer(1).empty());
  CHECK(opt.MomentumBuffer(2).empty());
  CHECK(opt.ParameterStepOptions(2).weight_decay == 0.25);
  CHECK(opt.ParameterStepOptions(0).weight_decay == 0.0);

  for (auto& blk : model.blocks)
    std::fill(blk.grad.begin(), blk.grad.end(), 1.0);
  const auto x0 = model.Values();
  REQUIRE(opt.Step().moved());
  // a: x - 0.1 g; b: m = g, x - 0.5 m; c: x - 0.1 (g + 0.25 x).
  for (std::size_t i = 0; i < x0[0].size(); ++i)
    CHECK(model.blocks[0].value[i] == x0[0][i] - 0.1);
  for (std::size_t i = 0; i < x0[1].size(); ++i)
    CHECK(model.blocks[1].value[i] == x0[1][i] - 0.5);
  for (std::size_t i = 0; i < x0[2].size(); ++i) {
    CHECK(model.blocks[2].value[i] == x0[2][i] - 0.1 * (1.0 + 0.25 * x0[2][i]));
  }

  // Setting one group's rate changes only that group.
  opt.SetGroupLr(0, 0.2);
  const auto x1 = model.Values();
  REQUIRE(opt.Step().moved());
  for (std::size_t i = 0; i < x1[0].size(); ++i)
    CHECK(model.blocks[0].value[i] == x1[0][i] - 0.2);
  // b: m = 0.9 * 1 + 1 = 1.9.
  for (std::size_t i = 0; i < x1[1].size(); ++i) {
    CHECK(model.blocks[1].value[i] == x1[1][i] - 0.5 * 1.9);
  }
  CHECK(opt.GroupLr(2) == 0.1);  // follows the default

  // ScaleLr scales the default and every override.
  opt.ScaleLr(0.5);
  CHECK(opt.lr() == 0.05);
  CHECK(opt.GroupLr(0) == 0.1);
  CHECK(opt.GroupLr(1) == 0.25);
  CHECK(opt.GroupLr(2) == 0.05);
  opt.SetLr(0.3);
  CHECK(opt.GroupLr(2) == 0.3);
  CHECK(opt.GroupLr(1) == 0.25);

  REQUIRE_THROWS_AS(opt.SetGroupLr(7, 0.1), InvalidArgument);
  REQUIRE_THROWS_AS(opt.SetLr(-1.0), InvalidArgument);
  REQUIRE_THROWS_AS(opt.SetLr(std::nan("")), InvalidArgument);
  REQUIRE_THROWS_AS(opt.ScaleLr(0.0), InvalidArgument);
  CHECK(opt.lr() == 0.3);
}

TEMPLATE_TEST_CASE("Weight decay on a Euclidean block is plain L2",
                   "[optim]",
                   float,
                   double) {
  using T = TestType;
  Model<T> model;
  model.Add("w", Eucl<T>(3, 4), 5);
  SgdOptions o;
  o.lr = 0.5;
  o.weight_decay = 0.1;
  RiemannianSgd<T> opt(model.Params(), o);
  const auto x0 = model.blocks[0].value;
  REQUIRE(opt.Step().moved());  // gradient zero: pure decay
  for (std::size_t i = 0; i < x0.size(); ++i) {
    CHECK(model.blocks[0].value[i] == x0[i] - T(0.5) * (T(0) + T(0.1) * x0[i]));
  }
}

TEMPLATE_TEST_CASE("A NaN or Inf gradient is reported and changes nothing",
                   "[optim]",
                   float,
                   double) {
  using T = TestType;
  Model<T> model;
  model.Add("first", Eucl<T>(2, 3), 1);
  model.Add("second", Eucl<T>(3, 4), 2);
  SgdOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  o.restabilize_every = 2;
  RiemannianSgd<T> opt(model.Params(), o);
  for (int it = 0; it < 3; ++it) {
    for (auto& blk : model.blocks) {
      const std::vector<T> g = RandomVector<T>(blk.grad.size(), 10 + it);
      std::copy(g.begin(), g.end(), blk.grad.begin());  // keep the buffer
    }
    REQUIRE(opt.Step().status == StepStatus::kOk);
  }
  const T bad_values[] = {std::numeric_limits<T>::quiet_NaN(),
                          std::numeric_limits<T>::infinity(),
                          -std::numeric_limits<T>::infinity()};
  for (T bad : bad_values) {
    const auto values = model.Values();
    const SgdState<T> state = opt.State();
    model.blocks[1].grad[7] = bad;  // row 1, col 3 of a 3x4 block
    const StepSummary s = opt.Step();
    CHECK(s.status == StepStatus::kNonFiniteGradient);
    CHECK_FALSE(s.moved());
    CHECK_THAT(s.message,
               Contains("'second'") && Contains("flat index 7") &&
                   Contains("row 1, col 3"));
    CHECK(BitwiseEqual(model.Values(), values));
    CHECK(SameState(opt.State(), state));
    CHECK(opt.step_count() == 3);
    model.blocks[1].grad[7] = T(0);
  }
  REQUIRE(opt.Step().status == StepStatus::kOk);
  CHECK(opt.step_count() == 4);
}

TEST_CASE("The screen finds the first NaN/Inf of a large gradient", "[optim]") {
  // 600 x 512 = 307200 entries: past 2^18, where the screen splits the
  // gradient into chunks across threads (src/optim_state.cpp).
  Model<float> model;
  model.Add("big", Eucl<float>(600, 512), 1);
  RiemannianSgd<float> opt(model.Params(), SgdOptions{});
  std::vector<float>& g = model.blocks[0].grad;
  const auto values = model.Values();
  const int threads = NumThreads();
  for (const int t : {1, 2}) {
    SetNumThreads(t);
    INFO("threads " << t);
    g[300000] = std::numeric_limits<float>::infinity();
    g[250001] = std::numeric_limits<float>::quiet_NaN();
    StepSummary s = opt.Step();
    CHECK(s.status == StepStatus::kNonFiniteGradient);
    CHECK_THAT(s.message, Contains("flat index 250001"));
    g[250001] = 0;
    s = opt.Step();
    CHECK_THAT(s.message, Contains("flat index 300000"));
    g[300000] = 0;
    g[307199] = -std::numeric_limits<float>::infinity();  // the last entry
    s = opt.Step();
    CHECK_THAT(s.message, Contains("flat index 307199"));
    g[307199] = 0;
    CHECK(BitwiseEqual(model.Values(), values));
    CHECK(opt.step_count() == 0);
  }
  SetNumThreads(threads);
  CHECK(opt.Step().status == StepStatus::kOk);
}

TEST_CASE("Collapsed rows are reported in the step summary", "[optim]") {
  auto keeper = std::make_shared<ZeroRowKeeper>(3, 2);
  Model<double> model;
  model.Add("ok", Eucl<double>(1, 2), 1);
  auto& blk = model.Add("k", keeper, 2);
  blk.value = {1, 2, 3, 4, 5, 6};
  // lr 1: row 1 would become exactly zero; rows 0 and 2 move.
  blk.grad = {1, 1, 3, 4, 1, 1};
  SgdOptions o;
  o.lr = 1.0;
  RiemannianSgd<double> opt(model.Params(), o);
  const StepSummary s = opt.Step();
  CHECK(s.status == StepStatus::kCollapsedRows);
  CHECK(s.moved());
  CHECK(s.collapsed_parameter == "k");
  CHECK(s.retract.collapsed_rows == 1);
  CHECK(s.retract.first_collapsed_row == 1);
  CHECK_THAT(s.message, Contains("'k'") && Contains("row 1"));
  CHECK(model.blocks[1].value == std::vector<double>{0, 1, 3, 4, 4, 5});
  CHECK(opt.step_count() == 1);
}

TEST_CASE("GradientNorm is the Riemannian norm of the decayed gradient",
          "[optim]") {
  Model<double> model;
  model.Add("a", Eucl<double>(2, 2), 1);
  model.Add("b", Eucl<double>(1, 3), 2, 1);
  SgdOptions o;
  o.groups[1].weight_decay = 0.5;
  RiemannianSgd<double> opt(model.Params(), o);
  model.blocks[0].grad = {1, 2, 3, 4};
  model.blocks[1].grad = {1, 0, -1};
  double expected = 1 + 4 + 9 + 16;
  for (int i = 0; i < 3; ++i) {
    const double r = model.blocks[1].grad[i] + 0.5 * model.blocks[1].value[i];
    expected += r * r;
  }
  CHECK(opt.GradientNorm() == Approx(std::sqrt(expected)).epsilon(1e-14));
  opt.ZeroGrad();
  for (const auto& b : model.blocks) {
    for (double g : b.grad) CHECK(g == 0.0);
  }
}

TEST_CASE("The constructor rejects bad parameters, naming them",
          "[optim][errors]") {
  Model<double> model;
  model.Add("w1", Eucl<double>(2, 3), 1);
  model.Add("w2", Eucl<double>(3, 2), 2, 1);

  SECTION("value shape differs from the manifold") {
    auto params = model.Params();
    params[1].value.rows = 2;
    params[1].value.cols = 3;
    REQUIRE_THROWS_WITH(RiemannianSgd<double>(params),
                        Contains("'w2'") && Contains("euclidean(3x2)"));
  }
  SECTION("gradient shape differs") {
    auto params = model.Params();
    params[0].grad.rows = 3;
    params[0].grad.cols = 2;
    REQUIRE_THROWS_WITH(RiemannianSgd<double>(params),
                        Contains("'w1'") && Contains("gradient"));
  }
  SECTION("null views and missing manifold") {
    auto params = model.Params();
    params[1].grad.data = nullptr;
    REQUIRE_THROWS_WITH(RiemannianSgd<double>(params), Contains("'w2'"));
    params = model.Params();
    params[0].manifold = nullptr;
    REQUIRE_THROWS_WITH(RiemannianSgd<double>(params), Contains("'w1'"));
  }
  SECTION("devices differ") {
    auto params = model.Params();
    params[0].grad.device = Device::kCuda;
    REQUIRE_THROWS_WITH(RiemannianSgd<double>(params),
                        Contains("'w1'") && Contains("cuda"));
  }
  SECTION("duplicate names") {
    auto params = model.Params();
    params[1].name = "w1";
    REQUIRE_THROWS_WITH(RiemannianSgd<double>(params),
                        Contains("duplicate") && Contains("'w1'"));
  }
  SECTION("non-finite value") {
    model.blocks[1].value[4] = std::nan("");
    REQUIRE_THROWS_WITH(RiemannianSgd<double>(model.Params()),
                        Contains("'w2'") && Contains("flat index 4"));
  }
  SECTION("options") {
    SgdOptions o;
    o.momentum = 1.0;
    REQUIRE_THROWS_AS(RiemannianSgd<double>(model.Params(), o),
                      InvalidArgument);
    o = SgdOptions();
    o.nesterov = true;
    REQUIRE_THROWS_WITH(RiemannianSgd<double>(model.Params(), o),
                        Contains("Nesterov"));
    o.groups[1].momentum = 0.9;  // Nesterov for the group with momentum: fine
    CHECK_NOTHROW(RiemannianSgd<double>(model.Params(), o));
    o = SgdOptions();
    o.groups[5].lr = 0.1;
    REQUIRE_THROWS_WITH(RiemannianSgd<double>(model.Params(), o),
                        Contains("group 5"));
    o = SgdOptions();
    o.groups[1].weight_decay = -1;
    REQUIRE_THROWS_WITH(RiemannianSgd<double>(model.Params(), o),
                        Contains("group 1"));
    o = SgdOptions();
    o.point_tolerance = std::nan("");
    REQUIRE_THROWS_WITH(RiemannianSgd<double>(model.Params(), o),
                        Contains("point tolerance is NaN"));
    o.point_tolerance = -std::numeric_limits<double>::infinity();
    CHECK_NOTHROW(RiemannianSgd<double>(model.Params(), o));
    REQUIRE_THROWS_AS(RiemannianSgd<double>({}), InvalidArgument);
  }
}

TEST_CASE("SetState and SetValues validate before changing anything",
          "[optim][errors]") {
  Model<float> model;
  model.Add("a", Eucl<float>(2, 2), 1);
  model.Add("b", Eucl<float>(2, 3), 2, 1);
  SgdOptions o;
  o.groups[1].momentum = 0.5;
  RiemannianSgd<float> opt(model.Params(), o);
  const SgdState<float> before = opt.State();
  SgdState<float> bad = before;
  bad.step_count = 9;
  bad.momentum[0].resize(4);  // "a" has no momentum
  REQUIRE_THROWS_WITH(opt.SetState(bad), Contains("'a'"));
  bad = before;
  bad.step_count = 9;
  bad.group_lr[3] = 0.1;
  REQUIRE_THROWS_WITH(opt.SetState(bad), Contains("group 3"));
  CHECK(SameState(opt.State(), before));

  auto values = opt.CopyValues();
  const auto original = values;
  values[0][0] = 42.0f;
  values[1].pop_back();
  REQUIRE_THROWS_WITH(opt.SetValues(values), Contains("'b'"));
  CHECK(BitwiseEqual(model.Values(), original));
}

namespace {

// min sum_i w_i^T A_i w_i over unit rows w_i (Oblique m x n): the minimiser
// is each row's eigenvector of A_i with the smallest eigenvalue (up to sign).
struct EigenProblem {
  using Mat = Eigen::MatrixXd;
  std::vector<Mat> a;
  std::vector<Eigen::VectorXd> v_min;
  double f_min = 0.0;

  EigenProblem(int m, int n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    for (int i = 0; i < m; ++i) {
      Mat q(n, n);
      for (int k = 0; k < q.size(); ++k) q.data()[k] = normal(rng);
      q = Eigen::HouseholderQR<Mat>(q).householderQ();
      Eigen::VectorXd lambda(n);
      for (int k = 0; k < n; ++k) lambda[k] = 1.0 + 0.8 * k + 0.1 * i;
      a.push_back(q * lambda.asDiagonal() * q.transpose());
      // The oracle: Eigen's own eigensolver, not the construction above.
      Eigen::SelfAdjointEigenSolver<Mat> es(a.back());
      v_min.push_back(es.eigenvectors().col(0));
      f_min += es.eigenvalues()[0];
    }
  }
  template <typename T>
  double Value(const std::vector<T>& w) const {
    const int n = int(a[0].rows());
    double f = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      const Eigen::VectorXd wi =
          Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(
              w.data() + i * n, n)
              .template cast<double>();
      f += wi.dot(a[i] * wi);
    }
    return f;
  }
  template <typename T>
  void Gradient(const std::vector<T>& w, std::vector<T>& g) const {
    const int n = int(a[0].rows());
    for (std::size_t i = 0; i < a.size(); ++i) {
      const Eigen::VectorXd wi =
          Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(
              w.data() + i * n, n)
              .template cast<double>();
      const Eigen::VectorXd gi = 2.0 * a[i] * wi;
      for (int k = 0; k < n; ++k) g[i * n + k] = T(gi[k]);
    }
  }
  // max over rows of min(||w_i - v_i||, ||w_i + v_i||).
  template <typename T>
  double Error(const std::vector<T>& w) const {
    const int n = int(a[0].rows());
    double err = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      const Eigen::VectorXd wi =
          Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(
              w.data() + i * n, n)
              .template cast<double>();
      err = std::max(err,
                     std::min((wi - v_min[i]).norm(), (wi + v_min[i]).norm()));
    }
    return err;
  }
};

}  // namespace

TEMPLATE_TEST_CASE("Oblique SGD finds each row's smallest eigenvector",
                   "[optim][oblique]",
                   float,
                   double) {
  using T = TestType;
  const EigenProblem problem(4, 6, 2024);
  const double tol = std::is_same_v<T, float> ? 2e-4 : 1e-9;
  struct Variant {
    const char* name;
    double lr, momentum;
    bool nesterov, bold;
  };
  for (const Variant& v : {Variant{"plain", 0.1, 0.0, false, false},
                           Variant{"momentum", 0.03, 0.8, false, false},
                           Variant{"nesterov", 0.03, 0.8, true, false},
                           Variant{"bold driver", 0.6, 0.5, false, true}}) {
    INFO(v.name);
    Model<T> model;
    auto& blk = model.Add("w", std::make_shared<Oblique<T>>(4, 6), 7);
    auto& w = blk.value;
    auto& g = blk.grad;
    SgdOptions o;
    o.lr = v.lr;
    o.momentum = v.momentum;
    o.nesterov = v.nesterov;
    RiemannianSgd<T> opt(model.Params(), o);
    if (!v.bold) {
      for (int it = 0; it < 600; ++it) {
        problem.Gradient(w, g);
        REQUIRE(opt.Step().status == StepStatus::kOk);
      }
    } else {
      // lr 0.6 is too large for these curvatures (2 * lr * lambda_max > 2):
      // the driver must reject and shrink before it converges.
      BoldDriver<T> bold(&opt);
      bold.EndEpoch(problem.Value(w));
      // Counted until the error first reaches tol: from then on the loss is
      // f_min to the last bit or two and each epoch's verdict is rounding
      // noise, which differs between builds (-O1 and -O2 round differently).
      std::int64_t accepted = -1, rejected = -1;
      for (int epoch = 0; epoch < 150; ++epoch) {
        for (int it = 0; it < 10; ++it) {
          problem.Gradient(w, g);
          REQUIRE(opt.Step().status == StepStatus::kOk);
        }
        bold.EndEpoch(problem.Value(w));
        if (accepted < 0 && problem.Error(w) <= tol) {
          accepted = bold.accepted();
          rejected = bold.rejected();
        }
      }
      REQUIRE(accepted >= 0);  // converged within the 150 epochs
      CHECK(rejected > 0);
      CHECK(accepted > rejected);
    }
    CHECK(problem.Error(w) <= tol);
    CHECK(
        problem.Value(w) ==
        Approx(problem.f_min).epsilon(std::is_same_v<T, float> ? 1e-6 : 1e-12));
    problem.Gradient(w, g);
    CHECK(opt.GradientNorm() <= (std::is_same_v<T, float> ? 1e-4 : 1e-8));
  }
}

TEMPLATE_TEST_CASE(
    "Weight decay: no effect on Oblique, plain L2 in a tie subspace",
    "[optim][oblique][tie]",
    float,
    double) {
  using T = TestType;
  const double eps = std::is_same_v<T, float> ? 1e-6 : 1e-14;
  SECTION("oblique and tied oblique: the decay term is projected away") {
    const std::shared_ptr<const Manifold<T>> manifolds[] = {
        std::make_shared<Oblique<T>>(3, 6),
        std::make_shared<TiedOblique<T>>(MirrorPattern(3, 6))};
    for (const auto& manifold : manifolds) {
      INFO(manifold->Describe());
      Model<T> with, without;
      for (Model<T>* m : {&with, &without}) {
        auto& b = m->Add("w", manifold, 11);
        const std::vector<T> g = RandomVector<T>(18, 12);
        std::copy(g.begin(), g.end(), b.grad.begin());
      }
      const std::vector<T> start = with.blocks[0].value;
      SgdOptions o;
      o.lr = 0.1;
      o.momentum = 0.9;
      RiemannianSgd<T> plain(without.Params(), o);
      o.weight_decay = 0.5;
      RiemannianSgd<T> decayed(with.Params(), o);
      for (int it = 0; it < 5; ++it) {
        plain.Step();
        decayed.Step();
      }
      CHECK(MaxAbsDiff(with.blocks[0].value, start) > 0.01);
      CHECK(MaxAbsDiff(with.blocks[0].value, without.blocks[0].value) <=
            10 * eps);
    }
  }
  SECTION("tie subspace, embedded metric: every member decays like plain L2") {
    auto tie = std::make_shared<TieSubspace<T>>(MirrorPattern(3, 6, {0, 5}));
    Model<T> model;
    model.Add("t", tie, 13);
    SgdOptions o;
    o.lr = 0.5;
    o.weight_decay = 0.1;
    RiemannianSgd<T> opt(model.Params(), o);
    const std::vector<T> x0 = model.blocks[0].value;
    opt.Step();  // zero gradient: pure decay
    const auto& x = model.blocks[0].value;
    for (std::size_t i = 0; i < x.size(); ++i) {
      CHECK(std::abs(double(x[i]) - 0.95 * double(x0[i])) <=
            eps * (1 + std::abs(double(x0[i]))));
    }
    // Tied entries stay bitwise equal; zeroed entries stay zero.
    for (int r = 0; r < 3; ++r) {
      CHECK(x[r * 6 + 0] == T(0));
      CHECK(x[r * 6 + 5] == T(0));
      for (int j = 1; j < 3; ++j) CHECK(x[r * 6 + j] == x[r * 6 + 5 - j]);
    }
  }
  SECTION("tie subspace, shared metric: a class of k members decays k times") {
    // Mirror pairs (k = 2) and the unpaired middle column of a 7-wide row
    // (k = 1).
    auto tie = std::make_shared<TieSubspace<T>>(MirrorPattern(2, 7),
                                                TieMetric::kShared);
    Model<T> model;
    model.Add("t", tie, 14);
    SgdOptions o;
    o.lr = 0.5;
    o.weight_decay = 0.1;
    RiemannianSgd<T> opt(model.Params(), o);
    const std::vector<T> x0 = model.blocks[0].value;
    opt.Step();
    const auto& x = model.blocks[0].value;
    for (int r = 0; r < 2; ++r) {
      for (int j = 0; j < 7; ++j) {
        const double k = j == 3 ? 1.0 : 2.0;
        const double want = (1.0 - 0.05 * k) * double(x0[r * 7 + j]);
        CHECK(std::abs(double(x[r * 7 + j]) - want) <=
              eps * (1 + std::abs(want)));
      }
    }
  }
}

TEST_CASE("Restabilization re-projects points and momentum every N steps",
          "[optim][oblique]") {
  using T = float;
  const EigenProblem problem(3, 7, 5);
  auto ob = std::make_shared<Oblique<T>>(3, 7);
  Model<T> model;
  model.Add("w", ob, 3);
  std::vector<T> x_ref = model.blocks[0].value, m_ref(21, T(0)), g(21);
  SgdOptions o;
  o.lr = 0.05;
  o.momentum = 0.9;
  o.restabilize_every = 4;
  RiemannianSgd<T> opt(model.Params(), o);
  StepOptions so;
  so.lr = 0.05;
  so.momentum = 0.9;
  const TensorView<T> xv(x_ref.data(), 3, 7), mv(m_ref.data(), 3, 7);
  for (int it = 1; it <= 12; ++it) {
    problem.Gradient(model.blocks[0].value, model.blocks[0].grad);
    problem.Gradient(x_ref, g);
    opt.Step();
    ob->Step(xv, TensorView<const T>(g.data(), 3, 7), mv, so);
    if (it % 4 == 0) {
      ob->ProjectPoint(xv);
      ob->Project(xv, mv);
    }
    INFO("step " << it);
    CHECK(BitwiseEqual(model.blocks[0].value, x_ref));
    CHECK(BitwiseEqual(opt.State().momentum[0], m_ref));
  }
}

TEST_CASE("Long float runs stay exact: unit rows and bitwise-equal ties",
          "[optim][oblique][tie]") {
  using T = float;
  const EigenProblem problem(4, 8, 77);
  auto tie = std::make_shared<TieSubspace<T>>(MirrorPattern(2, 8));
  Model<T> model;
  model.Add("w", std::make_shared<Oblique<T>>(4, 8), 1);
  model.Add("t", tie, 2);
  SgdOptions o;
  o.lr = 0.01;
  o.momentum = 0.9;
  o.nesterov = true;
  RiemannianSgd<T> opt(model.Params(), o);
  std::mt19937_64 rng(9);
  std::normal_distribution<float> noise(0.0f, 0.1f);
  auto& w = model.blocks[0];
  auto& t = model.blocks[1];
  for (int it = 0; it < 100000; ++it) {
    problem.Gradient(w.value, w.grad);
    for (auto& e : w.grad) e += noise(rng);
    for (std::size_t i = 0; i < t.grad.size(); ++i)
      t.grad[i] = t.value[i] - T(i % 3) + noise(rng);
    REQUIRE(opt.Step().status == StepStatus::kOk);
  }
  double worst = 0;
  for (int r = 0; r < 4; ++r) {
    double s = 0;
    for (int k = 0; k < 8; ++k)
      s += double(w.value[r * 8 + k]) * double(w.value[r * 8 + k]);
    worst = std::max(worst, std::abs(std::sqrt(s) - 1.0));
  }
  CHECK(worst <= 1e-6);
  for (int r = 0; r < 2; ++r) {
    for (int j = 0; j < 4; ++j)
      CHECK(t.value[r * 8 + j] == t.value[r * 8 + 7 - j]);
  }
  CHECK(opt.step_count() == 100000);
}

TEST_CASE("A point off its manifold is rejected at construction",
          "[optim][oblique][errors]") {
  Model<double> model;
  model.Add("fc1", std::make_shared<Oblique<double>>(3, 4), 1);
  model.blocks[0].value[5] *= 1.01;  // row 1 no longer unit
  REQUIRE_THROWS_WITH(
      RiemannianSgd<double>(model.Params()),
      Contains("'fc1'") && Contains("oblique(3x4)") && Contains("distance"));
  SgdOptions o;
  o.point_tolerance = 0.1;  // a looser tolerance accepts it
  CHECK_NOTHROW(RiemannianSgd<double>(model.Params(), o));
}

TEST_CASE("Parameters over Eigen memory are used in place", "[optim][eigen]") {
  // The user's own buffers: a row-major matrix and a vector.
  RowMajorMatrix<double> w(3, 4), gw(3, 4);
  std::vector<double> bias_buffer(3, 0.0), gb_buffer(3, 0.0);
  Eigen::Map<Eigen::VectorXd> bias(bias_buffer.data(), 3),
      gb(gb_buffer.data(), 3);
  auto ob = std::make_shared<Oblique<double>>(3, 4);
  ob->RandomPoint(TensorView<double>(w.data(), 3, 4), 1);
  gw.setOnes();
  gb.setConstant(2.0);

  std::vector<Parameter<double>> params;
  params.push_back(MakeParameter("w", w, gw, ob));
  params.push_back(
      MakeParameter("b", bias, gb, std::make_shared<Euclidean<double>>(3, 1)));
  CHECK(params[0].value.data == w.data());  // no copy
  CHECK(params[1].value.data == bias_buffer.data());
  SgdOptions o;
  o.lr = 0.1;
  RiemannianSgd<double> opt(params, o);
  const RowMajorMatrix<double> w0 = w;
  REQUIRE(opt.Step().status == StepStatus::kOk);
  CHECK(bias_buffer == std::vector<double>(3, -0.2));
  CHECK((w - w0).norm() > 1e-3);
  CHECK((w.rowwise().norm().array() - 1.0).abs().maxCoeff() <= 1e-14);
  // AsEigen views the same memory.
  Eigen::Map<RowMajorMatrix<double>> view = AsEigen(opt.params()[0].value);
  CHECK(view.data() == w.data());
  CHECK(AsEigen(opt.MomentumBuffer(0)).size() == 0);

  // Shapes must agree with the manifold; strided storage is refused.
  RowMajorMatrix<double> big(4, 8), gbig(4, 8);
  REQUIRE_THROWS_WITH(MakeParameter("w2", big, gbig, ob), Contains("'w2'"));
  auto block = big.block(0, 0, 3, 4);
  auto gblock = gbig.block(0, 0, 3, 4);
  REQUIRE_THROWS_WITH(MakeParameter("w3", block, gblock, ob),
                      Contains("contiguous"));
}
