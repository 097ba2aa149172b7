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
#include "optim/sgd.h"
#include "optim_test_util.h"

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
