#include "manifolds/tie_subspace.h"

#include <cstring>
#include <limits>
#include <map>
#include <string>

#include "catch.h"
#include "manifold_checks.h"
#include "tie_patterns.h"

using namespace symopt;
using namespace symopt::testing;

namespace {

struct NamedPattern {
  std::string name;
  TiePattern pattern;
  TieLayout layout;  // the layout the constructor must derive
};

// Every case the invariants run on: each layout, with and without zeros, and
// the edge cases (one class, all singletons, a zeroed row).
std::vector<NamedPattern> Cases() {
  std::vector<NamedPattern> cases;
  cases.push_back({"runs of 3", RunPattern(4, 6, 3), TieLayout::kContiguous});
  cases.push_back(
      {"runs of 4 with zeros", RunPattern(5, 8, 4, 2), TieLayout::kContiguous});
  cases.push_back({"one class", RunPattern(3, 5, 15), TieLayout::kContiguous});
  cases.push_back(
      {"all zeros (E = {0})",
       TiePattern{2, 3, 0, std::vector<std::int32_t>(6, TiePattern::kZero)},
       TieLayout::kContiguous});
  cases.push_back(
      {"all singletons", RunPattern(3, 4, 1), TieLayout::kContiguous});
  cases.push_back(
      {"mirror pairs", MirrorPattern(4, 7), TieLayout::kRowPeriodic});
  cases.push_back({"mirror pairs with zero columns",
                   MirrorPattern(5, 10, {0, 9, 4}),
                   TieLayout::kRowPeriodic});
  cases.push_back({"mirror pairs, permuted ids",
                   PermuteIds(MirrorPattern(6, 9), 11),
                   TieLayout::kRowPeriodic});
  cases.push_back({"mirror pair runs",
                   MirrorPattern(3, 40, {5, 34}),
                   TieLayout::kRowPeriodic});
  cases.push_back(
      {"shifted pair runs", ShiftPairPattern(3, 40), TieLayout::kRowPeriodic});
  cases.push_back(
      {"mirror pair runs, one row", MirrorPattern(1, 41), TieLayout::kGeneral});
  // Short mirror segments: the pair-block loops.
  cases.push_back({"mirror segments of 6",
                   MirrorSegmentPattern(4, 36, 6),
                   TieLayout::kRowPeriodic});
  cases.push_back({"mirror segments of 7 with a zero column, permuted ids",
                   PermuteIds(MirrorSegmentPattern(5, 35, 7, {1}), 12),
                   TieLayout::kRowPeriodic});
  cases.push_back({"mirror segments of 6 and a tail pair",
                   MirrorSegmentPattern(3, 28, 6),
                   TieLayout::kRowPeriodic});
  cases.push_back({"random, no zeros",
                   RandomPattern(6, 7, 15, 0.0, 21),
                   TieLayout::kGeneral});
  cases.push_back({"random with zeros",
                   RandomPattern(5, 9, 12, 0.2, 22),
                   TieLayout::kGeneral});
  {
    TiePattern p = RandomPattern(4, 6, 9, 0.1, 23);
    for (std::int64_t j = 0; j < 6; ++j)
      p.class_of[std::size_t(6 + j)] = TiePattern::kZero;
    cases.push_back(
        {"random with a zeroed row", Canonical(p), TieLayout::kGeneral});
  }
  return cases;
}

// Dense reference: Pi_E as an N x N matrix, sum_k 1_k 1_k^T / n_k.
std::vector<double> DenseProjector(const TiePattern& p) {
  const std::size_t n = p.class_of.size();
  std::map<std::int32_t, double> size;
  for (auto k : p.class_of) size[k] += 1.0;
  std::vector<double> P(n * n, 0.0);
  for (std::size_t a = 0; a < n; ++a) {
    for (std::size_t b = 0; b < n; ++b) {
      const std::int32_t k = p.class_of[a];
      if (k != TiePattern::kZero && k == p.class_of[b])
        P[a * n + b] = 1.0 / size[k];
    }
  }
  return P;
}

}  // namespace

TEST_CASE("TiePattern validation names the problem",
          "[manifold][tie][errors]") {
  TiePattern p = RunPattern(2, 3, 2);
  std::string error;
  REQUIRE(p.IsValid(&error));
  CHECK(error.empty());

  TiePattern short_ids = p;
  short_ids.class_of.pop_back();
  CHECK_FALSE(short_ids.IsValid(&error));
  CHECK_THAT(error, Catch::Contains("5 entries, expected rows*cols"));
  REQUIRE_THROWS_AS(TieSubspace<float>(short_ids), InvalidArgument);

  TiePattern out_of_range = p;
  out_of_range.class_of[4] = 7;
  CHECK_FALSE(out_of_range.IsValid(&error));
  CHECK_THAT(error, Catch::Contains("entry (1, 1) (flat 4) has class id 7"));
  REQUIRE_THROWS_WITH(TieSubspace<double>(out_of_range),
                      Catch::Contains("class id 7"));

  TiePattern negative = p;
  negative.class_of[0] = -2;
  CHECK_FALSE(negative.IsValid(&error));
  CHECK_THAT(error, Catch::Contains("class id -2"));

  TiePattern unused = p;
  unused.num_classes = 4;
  CHECK_FALSE(unused.IsValid(&error));
  CHECK_THAT(error, Catch::Contains("class 3 of 4 has no member"));
  REQUIRE_THROWS_WITH(TieSubspace<float>(unused), Catch::Contains("no member"));

  TiePattern empty;
  CHECK_FALSE(empty.IsValid(&error));
  CHECK_THAT(error, Catch::Contains("at least 1x1"));
  REQUIRE_THROWS_AS(TieSubspace<float>(empty), InvalidArgument);
}

TEST_CASE("TieSubspace derives its layout from the class ids",
          "[manifold][tie]") {
  for (const NamedPattern& c : Cases()) {
    INFO(c.name);
    const TieSubspace<float> m(c.pattern);
    CHECK(m.layout() == c.layout);
    CHECK(m.Dim() == c.pattern.num_classes);
    CHECK(m.NumZeros() == std::count(c.pattern.class_of.begin(),
                                     c.pattern.class_of.end(),
                                     TiePattern::kZero));
    const TiePattern back = m.Pattern();
    CHECK(back.rows == c.pattern.rows);
    CHECK(back.cols == c.pattern.cols);
    CHECK(back.num_classes == c.pattern.num_classes);
    CHECK(back.class_of == c.pattern.class_of);
  }
  // Row-periodic storage holds one row's lists, not one per row.
  const TieSubspace<float> mirror(MirrorPattern(64, 100));
  CHECK(mirror.layout() == TieLayout::kRowPeriodic);
  CHECK(mirror.ClassesPerRow() == 50);
  CHECK(mirror.IndexBytes() < 4 * 3 * 100 + 1024);
  // Short mirror segments repeat a block of pairs along the row.
  CHECK(TieSubspace<float>(MirrorSegmentPattern(3, 36, 6)).PairBlockPairs() ==
        3);
  CHECK(TieSubspace<float>(MirrorSegmentPattern(3, 35, 7, {1}))
            .PairBlockPairs() == 2);
  CHECK(TieSubspace<float>(PermuteIds(MirrorSegmentPattern(3, 36, 6), 5))
            .PairBlockPairs() == 3);
  CHECK(TieSubspace<float>(MirrorSegmentPattern(3, 28, 6)).PairBlockPairs() ==
        0);                             // the tail pair breaks the repetition
  CHECK(mirror.PairBlockPairs() == 0);  // long pair runs instead
  // A class that crosses rows breaks periodicity.
  TiePattern crossing = MirrorPattern(3, 4);
  crossing.class_of[4] = crossing.class_of[0];  // (1, 0) joins class of (0, 0)
  crossing = Canonical(crossing);
  CHECK(TieSubspace<float>(crossing).layout() == TieLayout::kGeneral);
  // Different zeros in row 1 break periodicity too.
  TiePattern zeros_differ = MirrorPattern(3, 6, {0});
  zeros_differ.class_of[6 + 1] = TiePattern::kZero;
  zeros_differ = Canonical(zeros_differ);
  CHECK(TieSubspace<float>(zeros_differ).layout() == TieLayout::kGeneral);
  // One row is never row periodic.
  CHECK(TieSubspace<float>(MirrorPattern(1, 6)).layout() ==
        TieLayout::kGeneral);
}

TEMPLATE_TEST_CASE("TieSubspace satisfies the manifold invariants",
                   "[manifold][tie]",
                   float,
                   double) {
  const double tol = std::is_same_v<TestType, float> ? 2e-5 : 1e-12;
  for (const TieMetric metric : {TieMetric::kEmbedded, TieMetric::kShared}) {
    for (const NamedPattern& c : Cases()) {
      INFO(c.name << (metric == TieMetric::kShared ? " (shared)"
                                                   : " (embedded)"));
      const TieSubspace<TestType> m(c.pattern, metric);
      const std::int64_t n = m.AmbientSize();
      std::vector<TestType> x(static_cast<std::size_t>(n));
      m.RandomPoint(ViewOf(m, x), 3);
      CHECK(TiedBitwiseEqual(c.pattern, x));
      CheckManifoldInvariants(m, x, RandomVector<TestType>(n, 4), tol);
    }
  }
}

TEST_CASE("TieSubspace projection equals the dense projector",
          "[manifold][tie]") {
  for (const NamedPattern& c : Cases()) {
    INFO(c.name);
    const TieSubspace<double> m(c.pattern);
    const std::int64_t n = m.AmbientSize();
    const std::vector<double> P = DenseProjector(c.pattern);
    const std::vector<double> u = RandomVector<double>(n, 5);
    std::vector<double> pu = u;
    m.ProjectInPlace(ViewOf(m, pu));
    std::vector<double> ref(static_cast<std::size_t>(n), 0.0);
    for (std::int64_t a = 0; a < n; ++a) {
      for (std::int64_t b = 0; b < n; ++b) ref[a] += P[a * n + b] * u[b];
    }
    CHECK(MaxAbsDiff(pu, ref) <= 1e-14);
    // Idempotent and symmetric: <P u, w> = <u, P w>.
    std::vector<double> ppu = pu;
    m.ProjectInPlace(ViewOf(m, ppu));
    CHECK(MaxAbsDiff(ppu, pu) <= 1e-15);
    const std::vector<double> w = RandomVector<double>(n, 6);
    std::vector<double> pw = w;
    m.ProjectInPlace(ViewOf(m, pw));
    CHECK(std::abs(FrobeniusDot(pu, w) - FrobeniusDot(u, pw)) <= 1e-12);
    // Distance to E is |u - P u|.
    std::vector<double> r(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) r[i] = u[i] - pu[i];
    CHECK(std::abs(m.DistanceToManifold(CViewOf(m, u)) -
                   std::sqrt(FrobeniusDot(r, r))) <= 1e-12);
  }
}

TEST_CASE("TieSubspace tangent basis is orthonormal in the metric in use",
          "[manifold][tie]") {
  const TiePattern p = RandomPattern(4, 5, 8, 0.15, 31);
  for (const TieMetric metric : {TieMetric::kEmbedded, TieMetric::kShared}) {
    const TieSubspace<double> m(p, metric);
    const std::int64_t k = m.Dim(), n = m.AmbientSize();
    std::vector<double> x(static_cast<std::size_t>(n)),
        bi(static_cast<std::size_t>(n)), bj(static_cast<std::size_t>(n));
    m.RandomPoint(ViewOf(m, x), 1);
    for (std::int64_t i = 0; i < k; ++i) {
      std::vector<double> ci(static_cast<std::size_t>(k), 0.0);
      ci[std::size_t(i)] = 1.0;
      m.TangentBasisMultiply(CViewOf(m, x), ci.data(), ViewOf(m, bi));
      for (std::int64_t j = 0; j < k; ++j) {
        std::vector<double> cj(static_cast<std::size_t>(k), 0.0);
        cj[std::size_t(j)] = 1.0;
        m.TangentBasisMultiply(CViewOf(m, x), cj.data(), ViewOf(m, bj));
        const double g = m.Inner(CViewOf(m, x), CViewOf(m, bi), CViewOf(m, bj));
        CHECK(std::abs(g - (i == j ? 1.0 : 0.0)) <= 1e-14);
      }
    }
  }
}

TEST_CASE("TieSubspace metrics: mean versus sum, and Riemannian gradients",
          "[manifold][tie]") {
  const TiePattern p = RandomPattern(5, 6, 10, 0.2, 41);
  const std::int64_t n = 30;
  const std::vector<double> a = RandomVector<double>(n, 42);
  const std::vector<double> b = RandomVector<double>(n, 43);
  // f(x) = sum_i (1 + a_i^2) (x_i - b_i)^2 / 2 + sum_i x_i^3 / 3: a gradient
  // that is not tied, so the metrics give different directions.
  auto f = [&](const std::vector<double>& x) {
    double s = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      s += 0.5 * (1 + a[i] * a[i]) * (x[i] - b[i]) * (x[i] - b[i]) +
           x[i] * x[i] * x[i] / 3;
    }
    return s;
  };
  auto egrad = [&](const std::vector<double>& x, std::vector<double>& g) {
    for (std::int64_t i = 0; i < n; ++i)
      g[i] = (1 + a[i] * a[i]) * (x[i] - b[i]) + x[i] * x[i];
  };
  const TieSubspace<double> embedded(p, TieMetric::kEmbedded);
  const TieSubspace<double> shared(p, TieMetric::kShared);
  std::vector<double> x(static_cast<std::size_t>(n));
  embedded.RandomPoint(ViewOf(embedded, x), 44);
  CheckRiemannianGradient<double>(embedded, f, egrad, x, 45);
  CheckRiemannianGradient<double>(shared, f, egrad, x, 46);

  std::vector<double> g(static_cast<std::size_t>(n)), ge, gs,
      theta_sum(static_cast<std::size_t>(p.num_classes));
  egrad(x, g);
  ge = g;
  gs = g;
  embedded.EgradToRgrad(CViewOf(embedded, x), ViewOf(embedded, ge));
  shared.EgradToRgrad(CViewOf(shared, x), ViewOf(shared, gs));
  shared.FoldSum(CViewOf(shared, g), theta_sum.data());
  std::vector<double> count(static_cast<std::size_t>(p.num_classes), 0.0);
  for (auto k : p.class_of) {
    if (k != TiePattern::kZero) count[std::size_t(k)] += 1;
  }
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t k = p.class_of[std::size_t(i)];
    if (k == TiePattern::kZero) {
      CHECK(ge[i] == 0.0);
      CHECK(gs[i] == 0.0);
      continue;
    }
    CHECK(gs[i] == Approx(theta_sum[std::size_t(k)]).epsilon(1e-14));
    CHECK(gs[i] == Approx(ge[i] * count[std::size_t(k)]).epsilon(1e-12));
  }
  // FoldSum is the gradient w.r.t. theta of f(Expand(theta)).
  std::vector<double> theta(static_cast<std::size_t>(p.num_classes));
  shared.Fold(CViewOf(shared, x), theta.data());
  for (std::int32_t k = 0; k < p.num_classes; ++k) {
    const double h = 1e-6;
    std::vector<double> tp = theta, tm = theta, xp(static_cast<std::size_t>(n)),
                        xm(static_cast<std::size_t>(n));
    tp[std::size_t(k)] += h;
    tm[std::size_t(k)] -= h;
    shared.Expand(tp.data(), ViewOf(shared, xp));
    shared.Expand(tm.data(), ViewOf(shared, xm));
    CHECK((f(xp) - f(xm)) / (2 * h) ==
          Approx(theta_sum[std::size_t(k)]).epsilon(1e-7));
  }
}

TEST_CASE("TieSubspace Expand and Fold round trip", "[manifold][tie]") {
  for (const NamedPattern& c : Cases()) {
    INFO(c.name);
    const TieSubspace<float> m(c.pattern);
    const std::int64_t n = m.AmbientSize(), k = m.Dim();
    const std::vector<float> theta = RandomVector<float>(k, 51);
    std::vector<float> x(static_cast<std::size_t>(n), 7.0f),
        back(static_cast<std::size_t>(k));
    m.Expand(theta.data(), ViewOf(m, x));
    CHECK(TiedBitwiseEqual(c.pattern, x));
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int32_t id = c.pattern.class_of[std::size_t(i)];
      CHECK(x[i] == (id == TiePattern::kZero ? 0.0f : theta[std::size_t(id)]));
    }
    m.Fold(CViewOf(m, x), back.data());
    CHECK(back == theta);  // exact: the mean of equal floats is the float
    // Expand(Fold(u)) = Pi_E u.
    const std::vector<float> u = RandomVector<float>(n, 52);
    std::vector<float> pu = u, eu(static_cast<std::size_t>(n));
    m.ProjectInPlace(ViewOf(m, pu));
    m.Fold(CViewOf(m, u), back.data());
    m.Expand(back.data(), ViewOf(m, eu));
    CHECK(eu == pu);
  }
  const TieSubspace<float> m(RunPattern(2, 2, 2));
  std::vector<float> x(5), theta(2);
  REQUIRE_THROWS_WITH(m.Expand(theta.data(), TensorView<float>(x.data(), 1, 5)),
                      Catch::Contains("has shape 1x5, expected 2x2"));
  REQUIRE_THROWS_WITH(m.Fold(TensorView<const float>(x.data(), 2, 2), nullptr),
                      Catch::Contains("theta is null"));
}

TEST_CASE("TieSubspace threaded loops match a serial reference",
          "[manifold][tie]") {
  // Blocks of 64K entries or more run on OpenMP threads.
  const std::vector<TiePattern> patterns = {
      MirrorPattern(64, 1030, {3, 1026}),
      MirrorSegmentPattern(40, 1800, 6),
      PermuteIds(MirrorSegmentPattern(32, 2100, 7, {2}), 63),
      MirrorPattern(1, 70000, {7, 69992}),
      ShiftPairPattern(100, 1000),
      RandomPattern(70, 1000, 30000, 0.05, 61),
      RunPattern(300, 300, 5, 3)};
  for (const TiePattern& p : patterns) {
    const TieSubspace<float> m(p);
    INFO(TieLayoutName(m.layout()));
    const std::int64_t n = m.AmbientSize();
    const std::vector<float> u = RandomVector<float>(n, 62);
    std::vector<double> sum(static_cast<std::size_t>(p.num_classes), 0.0),
        count(sum.size(), 0.0);
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int32_t k = p.class_of[std::size_t(i)];
      if (k == TiePattern::kZero) continue;
      sum[std::size_t(k)] += u[i];
      count[std::size_t(k)] += 1;
    }
    std::vector<float> pu = u;
    m.ProjectInPlace(ViewOf(m, pu));
    std::int64_t bad = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int32_t k = p.class_of[std::size_t(i)];
      const float want =
          k == TiePattern::kZero
              ? 0.0f
              : float(sum[std::size_t(k)] / count[std::size_t(k)]);
      bad += pu[i] != want;
    }
    CHECK(bad == 0);
    CHECK(m.Pattern().class_of == p.class_of);
    // Threaded reductions: distance to E and the shared metric.
    double dist2 = 0.0, shared = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
      const double d = double(u[i]) - double(pu[i]);
      dist2 += d * d;
    }
    for (std::size_t k = 0; k < sum.size(); ++k) {
      shared += (sum[k] / count[k]) * (sum[k] / count[k]);
    }
    CHECK(m.DistanceToManifold(CViewOf(m, u)) ==
          Approx(std::sqrt(dist2)).epsilon(1e-6));
    const TieSubspace<float> ms(p, TieMetric::kShared);
    CHECK(ms.Inner(CViewOf(ms, pu), CViewOf(ms, u), CViewOf(ms, u)) ==
          Approx(shared).epsilon(1e-9));
    // Threaded fused step against the composition, both metrics.
    for (const TieSubspace<float>* man : {&m, &ms}) {
      std::vector<float> x1 = pu, x2 = pu,
                         m1(static_cast<std::size_t>(n), 0.0f);
      std::vector<float> m2 = m1, scratch(static_cast<std::size_t>(2 * n));
      StepOptions o;
      o.lr = 0.01;
      o.momentum = 0.9;
      o.nesterov = true;
      o.weight_decay = 0.001;
      for (int step = 0; step < 2; ++step) {
        man->Step(ViewOf(*man, x1), CViewOf(*man, u), ViewOf(*man, m1), o);
        man->StepComposed(
            ViewOf(*man, x2),
            CViewOf(*man, u),
            ViewOf(*man, m2),
            o,
            TensorView<float>(scratch.data(), 2 * man->rows(), man->cols()));
      }
      CHECK(std::memcmp(x1.data(), x2.data(), sizeof(float) * x1.size()) == 0);
      CHECK(std::memcmp(m1.data(), m2.data(), sizeof(float) * m1.size()) == 0);
      CHECK(TiedBitwiseEqual(p, x1));
    }
  }
}

TEST_CASE(
    "TieSubspace keeps tied entries bitwise equal over 100,000 float steps",
    "[manifold][tie]") {
  const std::vector<TiePattern> patterns = {MirrorPattern(3, 7, {2}),
                                            MirrorSegmentPattern(3, 24, 6),
                                            RandomPattern(4, 6, 8, 0.15, 71)};
  for (const TiePattern& p : patterns) {
    for (const TieMetric metric : {TieMetric::kEmbedded, TieMetric::kShared}) {
      const TieSubspace<float> m(p, metric);
      const std::int64_t n = m.AmbientSize();
      std::vector<float> x(static_cast<std::size_t>(n)),
          mom(static_cast<std::size_t>(n), 0.0f),
          g(static_cast<std::size_t>(n));
      m.RandomPoint(ViewOf(m, x), 72);
      const std::vector<float> target = RandomVector<float>(n, 73);
      const std::vector<float> weight = RandomVector<float>(n, 74);
      StepOptions o;
      o.lr = metric == TieMetric::kShared ? 0.005 : 0.02;
      o.momentum = 0.9;
      o.nesterov = true;
      o.weight_decay = 1e-4;
      for (int step = 0; step < 100000; ++step) {
        // An untied gradient: every entry pulled to its own target.
        for (std::int64_t i = 0; i < n; ++i) {
          g[i] = (1.0f + weight[i] * weight[i]) * (x[i] - target[i]);
        }
        m.Step(ViewOf(m, x), CViewOf(m, g), ViewOf(m, mom), o);
      }
      CHECK(TiedBitwiseEqual(p, x));
      CHECK(TiedBitwiseEqual(p, mom));
      // And it converged to the constrained minimiser: the class's weighted
      // mean of the targets.
      std::vector<double> num(static_cast<std::size_t>(p.num_classes), 0.0),
          den(num.size(), 0.0);
      for (std::int64_t i = 0; i < n; ++i) {
        const std::int32_t k = p.class_of[std::size_t(i)];
        if (k == TiePattern::kZero) continue;
        const double w = 1.0 + double(weight[i]) * weight[i];
        num[std::size_t(k)] += w * target[i];
        den[std::size_t(k)] += w;
      }
      for (std::int64_t i = 0; i < n; ++i) {
        const std::int32_t k = p.class_of[std::size_t(i)];
        if (k == TiePattern::kZero) continue;
        CHECK(x[i] ==
              Approx(num[std::size_t(k)] / den[std::size_t(k)]).margin(1e-3));
      }
    }
  }
}

TEST_CASE("TieSubspace rejects views of the wrong shape",
          "[manifold][tie][errors]") {
  const TieSubspace<double> m(MirrorPattern(3, 4));
  std::vector<double> x(12), u(12);
  REQUIRE_THROWS_WITH(m.Project(TensorView<const double>(x.data(), 3, 4),
                                TensorView<double>(u.data(), 4, 3)),
                      Catch::Contains("u has shape 4x3, expected 3x4"));
  REQUIRE_THROWS_AS(m.ProjectInPlace(TensorView<double>(u.data(), 2, 6)),
                    InvalidArgument);
  REQUIRE_THROWS_AS(m.Step(TensorView<double>(x.data(), 3, 4),
                           TensorView<const double>(u.data(), 12, 1),
                           {},
                           StepOptions{}),
                    InvalidArgument);
}

TEST_CASE("TieSubspace fused step equals the composition bitwise in float",
          "[manifold][tie]") {
  for (const TieMetric metric : {TieMetric::kEmbedded, TieMetric::kShared}) {
    for (const NamedPattern& c : Cases()) {
      INFO(c.name);
      const TieSubspace<float> m(c.pattern, metric);
      const std::int64_t n = m.AmbientSize();
      std::vector<float> x1(static_cast<std::size_t>(n)),
          m1(static_cast<std::size_t>(n), 0.0f);
      std::vector<float> scratch(static_cast<std::size_t>(2 * n));
      m.RandomPoint(ViewOf(m, x1), 131);
      std::vector<float> x2 = x1, m2 = m1;
      StepOptions o;
      o.lr = 0.03;
      o.momentum = 0.8;
      o.nesterov = true;
      o.weight_decay = 0.01;
      for (int step = 0; step < 5; ++step) {
        const std::vector<float> g = RandomVector<float>(n, 132 + step);
        m.Step(ViewOf(m, x1), CViewOf(m, g), ViewOf(m, m1), o);
        m.StepComposed(
            ViewOf(m, x2),
            CViewOf(m, g),
            ViewOf(m, m2),
            o,
            TensorView<float>(scratch.data(), 2 * m.rows(), m.cols()));
      }
      CHECK(std::memcmp(x1.data(), x2.data(), sizeof(float) * x1.size()) == 0);
      CHECK(std::memcmp(m1.data(), m2.data(), sizeof(float) * m1.size()) == 0);
    }
  }
}

namespace {

// The per-class arithmetic docs/tie_subspace.md promises, written plainly over
// the class lists of the pattern (an oracle independent of the layouts and of
// TieOps): a class mean or sum is rounded once to T; a pair (a, b) takes
// a/2 + b/2 (mean) and a + b (sum) in T, any other class a double sum in
// ascending member order. The step is
//   gd = T(wd x + g),  r = sum or mean of gd,  mk = T(r + beta mean(m)),
//   d = nesterov ? T(beta mk + r) : mk,  x = T(mean(x) + T(d * T(-lr))).
template <typename T>
class ReferenceTie {
 public:
  explicit ReferenceTie(const TiePattern& p) : members_(p.num_classes) {
    for (std::size_t i = 0; i < p.class_of.size(); ++i) {
      const std::int32_t k = p.class_of[i];
      if (k == TiePattern::kZero) {
        zeros_.push_back(std::int64_t(i));
      } else {
        members_[std::size_t(k)].push_back(std::int64_t(i));
      }
    }
  }

  template <typename Value>
  static T Mean(const std::vector<std::int64_t>& c, Value value) {
    if (c.size() == 2) return T(value(c[0]) * T(0.5) + value(c[1]) * T(0.5));
    double s = 0.0;
    for (const std::int64_t i : c) s += double(value(i));
    return T(s / double(c.size()));
  }
  template <typename Value>
  static T Sum(const std::vector<std::int64_t>& c, Value value) {
    if (c.size() == 2) return T(value(c[0]) + value(c[1]));
    double s = 0.0;
    for (const std::int64_t i : c) s += double(value(i));
    return T(s);
  }
  static T MeanOf(const std::vector<std::int64_t>& c, const T* a) {
    return Mean(c, [a](std::int64_t i) { return a[i]; });
  }
  static T SumOf(const std::vector<std::int64_t>& c, const T* a) {
    return Sum(c, [a](std::int64_t i) { return a[i]; });
  }

  // u <- mean (or sum) per class, zeros 0.
  void Project(T* u, bool sum) const {
    for (const auto& c : members_) {
      const T v = sum ? SumOf(c, u) : MeanOf(c, u);
      for (const std::int64_t i : c) u[i] = v;
    }
    for (const std::int64_t z : zeros_) u[z] = T(0);
  }
  void Retract(T* x, const T* v) const {
    for (const auto& c : members_) {
      const T value = T(MeanOf(c, x) + MeanOf(c, v));
      for (const std::int64_t i : c) x[i] = value;
    }
    for (const std::int64_t z : zeros_) x[z] = T(0);
  }
  void Fold(const T* x, T* theta, bool sum) const {
    for (std::size_t k = 0; k < members_.size(); ++k) {
      theta[k] = sum ? SumOf(members_[k], x) : MeanOf(members_[k], x);
    }
  }
  void Step(T* x, const T* g, T* m, const StepOptions& o, bool shared) const {
    const T wd = T(o.weight_decay), beta = T(o.momentum), neg_lr = T(-o.lr);
    for (const auto& c : members_) {
      auto gd = [&](std::int64_t i) {
        return o.weight_decay != 0 ? T(wd * x[i] + g[i]) : g[i];
      };
      const T r = shared ? Sum(c, gd) : Mean(c, gd);
      T d = r;
      if (o.momentum > 0) {
        const T mk = T(r + beta * MeanOf(c, m));
        d = o.nesterov ? T(beta * mk + r) : mk;
        for (const std::int64_t i : c) m[i] = mk;
      }
      const T value = T(MeanOf(c, x) + T(d * neg_lr));
      for (const std::int64_t i : c) x[i] = value;
    }
    for (const std::int64_t z : zeros_) {
      x[z] = T(0);
      if (o.momentum > 0) m[z] = T(0);
    }
  }

 private:
  std::vector<std::vector<std::int64_t>> members_;
  std::vector<std::int64_t> zeros_;
};

template <typename T>
bool BitwiseEqual(const std::vector<T>& a, const std::vector<T>& b) {
  // memcmp's pointers must not be null, even for 0 bytes: an empty vector's
  // data() may be.
  return a.size() == b.size() &&
         (a.empty() ||
          std::memcmp(a.data(), b.data(), sizeof(T) * a.size()) == 0);
}

// Values of three kinds: ordinary, subnormal (where a/2 + b/2 differs from
// the rounded double mean), and so large that a + b overflows in T (pairs
// must not overflow in a mean).
template <typename T>
std::vector<T> ScaledVector(std::int64_t n, std::uint64_t seed, int kind) {
  std::vector<T> v = RandomVector<T>(n, seed);
  const T scale = kind == 1   ? std::numeric_limits<T>::denorm_min() * T(64)
                  : kind == 2 ? std::numeric_limits<T>::max() / T(2)
                              : T(1);
  for (T& x : v) x *= scale;
  return v;
}

// Value kinds 0 .. last_kind of ScaledVector (subnormal arithmetic is slow:
// the large patterns take ordinary values only).
template <typename T>
void CheckAgainstReference(const TiePattern& p, int last_kind) {
  const ReferenceTie<T> ref(p);
  for (const TieMetric metric : {TieMetric::kEmbedded, TieMetric::kShared}) {
    const TieSubspace<T> m(p, metric);
    INFO(TieLayoutName(m.layout())
         << ", pair blocks of " << m.PairBlockPairs() << ", metric "
         << (metric == TieMetric::kShared ? "shared" : "embedded"));
    const bool shared = metric == TieMetric::kShared;
    const std::int64_t n = m.AmbientSize();
    for (int kind = 0; kind <= last_kind; ++kind) {
      INFO("value kind " << kind);
      const std::vector<T> x = ScaledVector<T>(n, 301, kind),
                           g = ScaledVector<T>(n, 302, kind);
      {
        std::vector<T> got = g, want = g;
        m.ProjectInPlace(ViewOf(m, got));
        ref.Project(want.data(), false);
        CHECK(BitwiseEqual(got, want));
        got = g;
        want = g;
        m.EgradToRgrad(CViewOf(m, x), ViewOf(m, got));
        ref.Project(want.data(), shared);
        CHECK(BitwiseEqual(got, want));
        got = x;
        want = x;
        m.Retract(ViewOf(m, got), CViewOf(m, g));
        ref.Retract(want.data(), g.data());
        CHECK(BitwiseEqual(got, want));
      }
      {
        std::vector<T> got(std::size_t(m.NumClasses())), want(got.size());
        m.Fold(CViewOf(m, x), got.data());
        ref.Fold(x.data(), want.data(), false);
        CHECK(BitwiseEqual(got, want));
        m.FoldSum(CViewOf(m, g), got.data());
        ref.Fold(g.data(), want.data(), true);
        CHECK(BitwiseEqual(got, want));
      }
      if (kind == 2) continue;  // a step on values near overflow is inf
      const std::vector<T> mom = ScaledVector<T>(n, 303, kind);
      for (int variant = 0; variant < 5; ++variant) {
        StepOptions o;
        o.lr = 0.05;
        o.momentum = variant == 1 || variant == 2 || variant == 4 ? 0.9 : 0.0;
        o.nesterov = variant == 2 || variant == 4;
        o.weight_decay = variant >= 3 ? 0.01 : 0.0;
        INFO("step variant " << variant);
        std::vector<T> x_got = x, m_got = mom, x_want = x, m_want = mom;
        m.Step(ViewOf(m, x_got), CViewOf(m, g), ViewOf(m, m_got), o);
        ref.Step(x_want.data(), g.data(), m_want.data(), o, shared);
        CHECK(BitwiseEqual(x_got, x_want));
        CHECK(BitwiseEqual(m_got, m_want));
      }
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE(
    "TieSubspace equals the documented per-class arithmetic bitwise on every "
    "layout",
    "[manifold][tie]",
    float,
    double) {
  for (const NamedPattern& c : Cases()) {
    INFO(c.name);
    CheckAgainstReference<TestType>(c.pattern, 2);
  }
}

TEST_CASE(
    "TieSubspace threaded loops equal the documented per-class arithmetic "
    "bitwise",
    "[manifold][tie]") {
  // Blocks of 64K entries or more run on OpenMP threads: every layout's
  // threaded loop (row-periodic pair runs and pair blocks, general pair runs
  // and lists, contiguous blocks).
  for (const TiePattern& p : {MirrorPattern(64, 1030, {3}),
                              MirrorSegmentPattern(40, 1800, 6),
                              MirrorPattern(1, 70000, {7}),
                              RandomPattern(70, 1000, 30000, 0.05, 61),
                              RunPattern(300, 300, 2, 3)}) {
    CheckAgainstReference<float>(p, 0);
  }
}
