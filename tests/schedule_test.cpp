// Bold driver (accept / reject / exact roll-back), plateau decay, stopping
// rules.
#include "optim/schedule.h"

#include <cmath>
#include <limits>
#include <memory>

#include "catch.h"
#include "manifold_checks.h"
#include "manifolds/euclidean.h"
#include "optim/bold_driver.h"
#include "optim_test_util.h"

using namespace symopt;
using namespace symopt::testing;
using Catch::Matchers::Contains;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Fills every gradient with reproducible noise and takes `steps` steps.
template <typename T>
void Train(Model<T>& model,
           RiemannianSgd<T>& opt,
           int steps,
           std::uint64_t seed) {
  for (int s = 0; s < steps; ++s) {
    for (auto& b : model.blocks) {
      const std::vector<T> g = RandomVector<T>(b.grad.size(), seed + 31 * s);
      std::copy(g.begin(), g.end(), b.grad.begin());
    }
    REQUIRE(opt.Step().moved());
  }
}

}  // namespace

TEMPLATE_TEST_CASE("Bold driver accepts, grows, rejects and rolls back exactly",
                   "[optim][bold]",
                   float,
                   double) {
  using T = TestType;
  Model<T> model;
  model.Add("w", std::make_shared<Euclidean<T>>(3, 4), 1);
  model.Add("b", std::make_shared<Euclidean<T>>(1, 4), 2, /*group=*/1);
  SgdOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  o.groups[1].lr = 0.2;
  RiemannianSgd<T> opt(model.Params(), o);
  BoldDriver<T> bold(&opt);  // up 1.05, down 0.5

  // First call: the baseline; accepted, lr unchanged.
  Train(model, opt, 3, 100);
  StepResult r = bold.EndEpoch(2.0);
  CHECK(r.accepted);
  CHECK(r.lr == 0.1);
  CHECK(r.loss == 2.0);
  CHECK(bold.best_loss() == 2.0);

  // A decrease: accepted, every lr grows by 1.05; this is the new snapshot.
  Train(model, opt, 4, 200);
  r = bold.EndEpoch(1.5);
  CHECK(r.accepted);
  CHECK(r.lr == Approx(0.105).epsilon(1e-15));
  CHECK(opt.GroupLr(1) == Approx(0.21).epsilon(1e-15));
  const auto snapshot_values = model.Values();
  const SgdState<T> snapshot_state = opt.State();
  REQUIRE(snapshot_state.step_count == 7);

  // An increase: rejected; values, momentum and step count roll back
  // bitwise; every lr halves.
  Train(model, opt, 5, 300);
  REQUIRE_FALSE(BitwiseEqual(model.Values(), snapshot_values));
  r = bold.EndEpoch(1.7);
  CHECK_FALSE(r.accepted);
  CHECK(r.lr == Approx(0.0525).epsilon(1e-15));
  CHECK(opt.GroupLr(1) == Approx(0.105).epsilon(1e-15));
  CHECK(BitwiseEqual(model.Values(), snapshot_values));
  CHECK(BitwiseEqual(opt.State().momentum, snapshot_state.momentum));
  CHECK(opt.step_count() == 7);
  CHECK(bold.best_loss() == 1.5);

  // NaN and Inf losses are rejections too.
  Train(model, opt, 2, 400);
  r = bold.EndEpoch(kNaN);
  CHECK_FALSE(r.accepted);
  CHECK(BitwiseEqual(model.Values(), snapshot_values));
  Train(model, opt, 2, 500);
  r = bold.EndEpoch(kInf);
  CHECK_FALSE(r.accepted);
  CHECK(BitwiseEqual(model.Values(), snapshot_values));
  CHECK(opt.step_count() == 7);
  CHECK(r.lr == Approx(0.105 / 8).epsilon(1e-14));

  // An equal loss is not an increase: accepted.
  Train(model, opt, 1, 600);
  CHECK(bold.EndEpoch(1.5).accepted);
  CHECK(bold.accepted() == 3);
  CHECK(bold.rejected() == 3);
}

TEST_CASE("Bold driver clamps the learning rate and validates",
          "[optim][bold]") {
  Model<double> model;
  model.Add("w", std::make_shared<Euclidean<double>>(2, 2), 1);
  SgdOptions o;
  o.lr = 1.0;
  RiemannianSgd<double> opt(model.Params(), o);
  BoldDriverOptions bo;
  bo.up = 2.0;
  bo.down = 0.25;
  bo.min_lr = 0.1;
  bo.max_lr = 3.0;
  BoldDriver<double> bold(&opt, bo);
  bold.EndEpoch(10.0);
  CHECK(bold.EndEpoch(9.0).lr == 2.0);
  CHECK(bold.EndEpoch(8.0).lr == 3.0);  // clamped
  CHECK(bold.EndEpoch(9.0).lr == 0.75);
  CHECK(bold.EndEpoch(9.0).lr == 0.1875);
  CHECK(bold.EndEpoch(9.0).lr == 0.1);  // clamped

  // A non-finite first loss rolls back to the construction point.
  Model<double> m2;
  m2.Add("w", std::make_shared<Euclidean<double>>(2, 2), 1);
  RiemannianSgd<double> opt2(m2.Params(), o);
  BoldDriver<double> bold2(&opt2);
  const auto start = m2.Values();
  Train(m2, opt2, 2, 7);
  CHECK_FALSE(bold2.EndEpoch(kNaN).accepted);
  CHECK_FALSE(bold2.has_baseline());
  CHECK(BitwiseEqual(m2.Values(), start));
  CHECK(opt2.step_count() == 0);

  for (BoldDriverOptions bad : {BoldDriverOptions{0.9, 0.5, 0, kInf},
                                BoldDriverOptions{1.05, 1.0, 0, kInf},
                                BoldDriverOptions{1.05, 0.0, 0, kInf},
                                BoldDriverOptions{1.05, 0.5, 2.0, 1.0},
                                BoldDriverOptions{kNaN, 0.5, 0, kInf}}) {
    std::string error;
    CHECK_FALSE(bad.IsValid(&error));
    CHECK_THAT(error, Contains("bold driver"));
    REQUIRE_THROWS_AS(BoldDriver<double>(&opt, bad), InvalidArgument);
  }
  REQUIRE_THROWS_AS(BoldDriver<double>(nullptr), InvalidArgument);
  opt.SetLr(0.0);
  REQUIRE_THROWS_WITH(BoldDriver<double>(&opt), Contains("> 0"));
}

TEST_CASE("Bold driver SetState validates the snapshot", "[optim][bold]") {
  Model<double> model;
  model.Add("w", std::make_shared<Euclidean<double>>(2, 2), 1);
  RiemannianSgd<double> opt(model.Params());
  BoldDriver<double> bold(&opt);
  BoldDriverState<double> s = bold.State();
  s.values[0].pop_back();
  REQUIRE_THROWS_WITH(bold.SetState(s), Contains("'w'"));
  s = bold.State();
  s.momentum[0].resize(4);  // no momentum in this optimizer
  REQUIRE_THROWS_AS(bold.SetState(s), InvalidArgument);
  s = bold.State();
  s.has_baseline = true;
  s.best_loss = 3.0;
  bold.SetState(s);
  CHECK(bold.best_loss() == 3.0);
  CHECK_FALSE(bold.EndEpoch(3.5).accepted);
}

TEST_CASE(
    "Plateau decay divides the learning rate after `patience` flat epochs",
    "[optim][schedule]") {
  Model<double> model;
  model.Add("w", std::make_shared<Euclidean<double>>(1, 1), 1);
  SgdOptions o;
  o.lr = 0.01;
  RiemannianSgd<double> opt(model.Params(), o);
  PlateauOptions po;
  po.patience = 2;
  po.min_delta = 0.01;
  po.max_decays = 2;
  PlateauDecay plateau(po);
  using A = PlateauAction;
  CHECK(plateau.EndEpoch(1.0, &opt) == A::kNone);
  CHECK(plateau.EndEpoch(0.8, &opt) == A::kNone);    // improved
  CHECK(plateau.EndEpoch(0.795, &opt) == A::kNone);  // < min_delta: flat 1
  CHECK(plateau.EndEpoch(kNaN, &opt) == A::kDecay);  // NaN: flat 2
  CHECK(plateau.State().decays == 1);
  CHECK(plateau.State().best == 0.8);
  CHECK(opt.lr() == Approx(0.001).epsilon(1e-15));
  CHECK(plateau.EndEpoch(0.5, &opt) == A::kNone);
  CHECK(plateau.EndEpoch(0.5, &opt) == A::kNone);
  CHECK(plateau.EndEpoch(0.5, &opt) == A::kDecay);
  CHECK(opt.lr() == Approx(0.0001).epsilon(1e-15));
  CHECK(plateau.EndEpoch(0.5, &opt) == A::kNone);
  CHECK(plateau.EndEpoch(0.5, &opt) == A::kExhausted);
  CHECK(opt.lr() == Approx(0.0001).epsilon(1e-15));
  CHECK(plateau.State().best == 0.5);

  std::string error;
  CHECK_FALSE(PlateauOptions{1.0, 2, 0, -1}.IsValid(&error));
  CHECK_FALSE(PlateauOptions{0.1, 0, 0, -1}.IsValid(&error));
  CHECK_FALSE(PlateauOptions{0.1, 2, -1, -1}.IsValid(&error));
  CHECK_FALSE(PlateauOptions{0.1, 2, 0, -2}.IsValid(&error));
  REQUIRE_THROWS_AS(PlateauDecay(PlateauOptions{0.1, 0, 0, -1}),
                    InvalidArgument);
}

TEST_CASE("Stopping rules report their reason", "[optim][schedule]") {
  using R = StopReason;
  SECTION("max epochs") {
    StoppingRule rule(StoppingOptions{3, 0, 0, -kInf, 0, 0});
    CHECK(rule.EndEpoch({1.0, {}, {}}) == R::kContinue);
    CHECK(rule.EndEpoch({1.0, {}, {}}) == R::kContinue);
    CHECK(rule.EndEpoch({1.0, {}, {}}) == R::kMaxEpochs);
  }
  SECTION("gradient tolerance, gated by min_epochs") {
    StoppingOptions so;
    so.gradient_tolerance = 1e-3;
    so.min_epochs = 2;
    StoppingRule rule(so);
    CHECK(rule.EndEpoch({1.0, {}, 1e-4}) == R::kContinue);  // epoch 1 < 2
    CHECK(rule.EndEpoch({1.0, {}, 1e-2}) == R::kContinue);
    CHECK(rule.EndEpoch({1.0, {}, {}}) == R::kContinue);  // not measured
    CHECK(rule.EndEpoch({1.0, {}, 1e-3}) == R::kGradientTolerance);
  }
  SECTION("training loss target") {
    StoppingOptions so;
    so.loss_target = 0.01;
    StoppingRule rule(so);
    CHECK(rule.EndEpoch({0.5, {}, {}}) == R::kContinue);
    CHECK(rule.EndEpoch({0.009, {}, {}}) == R::kLossTarget);
  }
  SECTION("validation patience") {
    StoppingOptions so;
    so.patience = 2;
    so.min_delta = 0.05;
    StoppingRule rule(so);
    CHECK(rule.EndEpoch({1.0, 1.0, {}}) == R::kContinue);
    CHECK(rule.EndEpoch({1.0, 0.9, {}}) == R::kContinue);   // best, epoch 2
    CHECK(rule.EndEpoch({1.0, 0.88, {}}) == R::kContinue);  // < min_delta
    CHECK(rule.EndEpoch({1.0, 0.7, {}}) == R::kContinue);   // best, epoch 4
    CHECK(rule.EndEpoch({1.0, 0.71, {}}) == R::kContinue);
    CHECK(rule.EndEpoch({1.0, 0.75, {}}) == R::kValidationPatience);
    CHECK(rule.State().best_epoch == 4);
    CHECK(rule.State().best_validation == 0.7);
  }
  SECTION("non-finite losses stop at once") {
    StoppingOptions so;
    so.min_epochs = 10;
    StoppingRule rule(so);
    CHECK(rule.EndEpoch({kNaN, {}, {}}) == R::kNonFiniteLoss);
    StoppingRule rule2(so);
    CHECK(rule2.EndEpoch({1.0, kInf, {}}) == R::kNonFiniteLoss);
  }
  SECTION("order: gradient before patience before max epochs") {
    StoppingOptions so;
    so.max_epochs = 2;
    so.patience = 1;
    so.gradient_tolerance = 0.1;
    StoppingRule rule(so);
    CHECK(rule.EndEpoch({1.0, 1.0, 1.0}) == R::kContinue);
    CHECK(rule.EndEpoch({1.0, 2.0, 0.01}) == R::kGradientTolerance);
    CHECK(std::string(StopReasonName(R::kGradientTolerance)).find("gradient") !=
          std::string::npos);
  }
  SECTION("options are validated") {
    std::string error;
    CHECK_FALSE(StoppingOptions{0, 0, 0, -kInf, 0, 0}.IsValid(&error));
    CHECK_FALSE(StoppingOptions{5, 6, 0, -kInf, 0, 0}.IsValid(&error));
    CHECK_FALSE(StoppingOptions{5, 0, -1, -kInf, 0, 0}.IsValid(&error));
    CHECK_FALSE(StoppingOptions{5, 0, 0, kNaN, 0, 0}.IsValid(&error));
    CHECK_FALSE(StoppingOptions{5, 0, 0, -kInf, -1, 0}.IsValid(&error));
    REQUIRE_THROWS_AS(StoppingRule(StoppingOptions{0, 0, 0, -kInf, 0, 0}),
                      InvalidArgument);
  }
}
