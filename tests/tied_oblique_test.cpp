#include "manifolds/tied_oblique.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "catch.h"
#include "manifold_checks.h"
#include "tie_patterns.h"

using namespace symopt;
using namespace symopt::testing;

namespace {

// Random class ids drawn within each row (so every class lies in one row),
// with zeros; every row keeps at least one nonzero entry.
TiePattern RowLocalPattern(std::int64_t rows,
                           std::int64_t cols,
                           std::int32_t classes_per_row,
                           double zero_fraction,
                           std::uint64_t seed) {
  TiePattern p =
      RandomPattern(rows, cols, classes_per_row, zero_fraction, seed);
  for (std::int64_t r = 0; r < rows; ++r) {
    p.class_of[std::size_t(r * cols)] = 0;  // never an all-zero row
    for (std::int64_t j = 0; j < cols; ++j) {
      auto& k = p.class_of[std::size_t(r * cols + j)];
      if (k != TiePattern::kZero) k += std::int32_t(r * classes_per_row);
    }
  }
  return Canonical(p);
}

std::vector<std::pair<std::string, TiePattern>> Cases() {
  return {{"mirror pairs", MirrorPattern(4, 7)},
          {"mirror pairs with zero columns", MirrorPattern(3, 10, {0, 9, 4})},
          {"row-local random", RowLocalPattern(5, 8, 4, 0.2, 81)},
          {"one class per row", RunPattern(3, 6, 6)},
          {"singletons (plain oblique)", RunPattern(3, 5, 1)},
          {"a single-class row among others", [] {
             TiePattern p = MirrorPattern(3, 6);
             for (std::int64_t j = 0; j < 6; ++j)
               p.class_of[std::size_t(6 + j)] = 100;
             return Canonical(p);
           }()}};
}

template <typename T>
double MaxRowNormError(const std::vector<T>& x,
                       std::int64_t rows,
                       std::int64_t cols) {
  double worst = 0.0;
  for (std::int64_t r = 0; r < rows; ++r) {
    double s = 0.0;
    for (std::int64_t j = 0; j < cols; ++j)
      s += double(x[r * cols + j]) * x[r * cols + j];
    worst = std::max(worst, std::abs(std::sqrt(s) - 1.0));
  }
  return worst;
}

}  // namespace

TEMPLATE_TEST_CASE("TiedOblique satisfies the manifold invariants",
                   "[manifold][tied_oblique]",
                   float,
                   double) {
  const double tol = std::is_same_v<TestType, float> ? 3e-5 : 1e-12;
  for (const auto& [name, pattern] : Cases()) {
    INFO(name);
    const TiedOblique<TestType> m(pattern);
    const std::int64_t n = m.AmbientSize();
    CHECK(m.Dim() == pattern.num_classes - pattern.rows);
    CHECK(m.Pattern().class_of == pattern.class_of);
    std::vector<TestType> x(static_cast<std::size_t>(n));
    m.RandomPoint(ViewOf(m, x), 5);
    CHECK(TiedBitwiseEqual(pattern, x));
    CHECK(MaxRowNormError(x, m.rows(), m.cols()) <= tol);
    CheckManifoldInvariants(m, x, RandomVector<TestType>(n, 6), tol);
  }
}

TEST_CASE(
    "TiedOblique tangent basis is orthonormal and spans the tangent space",
    "[manifold][tied_oblique]") {
  const TiePattern p = RowLocalPattern(3, 7, 4, 0.1, 91);
  const TiedOblique<double> m(p);
  const std::int64_t k = m.Dim(), n = m.AmbientSize();
  std::vector<double> x(static_cast<std::size_t>(n));
  m.RandomPoint(ViewOf(m, x), 92);
  std::vector<std::vector<double>> basis;
  for (std::int64_t i = 0; i < k; ++i) {
    std::vector<double> c(static_cast<std::size_t>(k), 0.0),
        b(static_cast<std::size_t>(n));
    c[std::size_t(i)] = 1.0;
    m.TangentBasisMultiply(CViewOf(m, x), c.data(), ViewOf(m, b));
    basis.push_back(b);
  }
  for (std::int64_t i = 0; i < k; ++i) {
    for (std::int64_t j = 0; j < k; ++j) {
      CHECK(std::abs(FrobeniusDot(basis[i], basis[j]) - (i == j ? 1.0 : 0.0)) <=
            1e-13);
    }
  }
  // B B^T u = P_x u for a random u.
  const std::vector<double> u = RandomVector<double>(n, 93);
  std::vector<double> c(static_cast<std::size_t>(k)),
      bbu(static_cast<std::size_t>(n));
  m.TangentBasisTransposeMultiply(CViewOf(m, x), CViewOf(m, u), c.data());
  m.TangentBasisMultiply(CViewOf(m, x), c.data(), ViewOf(m, bbu));
  CHECK(MaxAbsDiff(bbu, Projected(m, x, u)) <= 1e-13);
}

TEST_CASE("TiedOblique Riemannian gradient and a known minimiser",
          "[manifold][tied_oblique]") {
  const TiePattern p = MirrorPattern(3, 9, {4});
  const TiedOblique<double> m(p);
  const std::int64_t n = m.AmbientSize();
  const std::vector<double> a = RandomVector<double>(n, 101);
  const std::vector<double> c = RandomVector<double>(n, 102);
  auto f = [&](const std::vector<double>& x) {
    double s = 0.0;
    for (std::int64_t i = 0; i < n; ++i)
      s += 0.5 * a[i] * x[i] * x[i] + c[i] * x[i];
    return s;
  };
  auto egrad = [&](const std::vector<double>& x, std::vector<double>& g) {
    for (std::int64_t i = 0; i < n; ++i) g[i] = a[i] * x[i] + c[i];
  };
  std::vector<double> x(static_cast<std::size_t>(n));
  m.RandomPoint(ViewOf(m, x), 103);
  CheckRiemannianGradient<double>(m, f, egrad, x, 104);

  // A linear cost <c, x> is minimised by x_r = -Pi_E c_r / |Pi_E c_r|.
  const TieSubspace<double> e(p);
  std::vector<double> want = c, g(static_cast<std::size_t>(n)),
                      mom(static_cast<std::size_t>(n), 0.0);
  e.ProjectInPlace(ViewOf(e, want));
  for (std::int64_t r = 0; r < 3; ++r) {
    double s = 0.0;
    for (std::int64_t j = 0; j < 9; ++j) s += want[r * 9 + j] * want[r * 9 + j];
    for (std::int64_t j = 0; j < 9; ++j) want[r * 9 + j] /= -std::sqrt(s);
  }
  StepOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  for (int it = 0; it < 500; ++it) {
    m.Step(ViewOf(m, x), CViewOf(m, c), ViewOf(m, mom), o);
  }
  CHECK(MaxAbsDiff(x, want) <= 1e-8);
}

TEST_CASE("TiedOblique long float runs stay tied and unit-norm",
          "[manifold][tied_oblique]") {
  const TiePattern p = RowLocalPattern(4, 12, 5, 0.15, 111);
  const TiedOblique<float> m(p);
  const std::int64_t n = m.AmbientSize();
  std::vector<float> x(static_cast<std::size_t>(n)),
      mom(static_cast<std::size_t>(n), 0.0f), g(static_cast<std::size_t>(n));
  m.RandomPoint(ViewOf(m, x), 112);
  const std::vector<float> a = RandomVector<float>(n, 113);
  const std::vector<float> c = RandomVector<float>(n, 114);
  StepOptions o;
  o.lr = 0.01;
  o.momentum = 0.9;
  o.nesterov = true;
  o.weight_decay = 1e-3;
  double worst = 0.0;
  for (int step = 0; step < 100000; ++step) {
    // A quadratic with an untied gradient; its minimiser keeps moving the
    // iterate around while momentum builds up.
    for (std::int64_t i = 0; i < n; ++i) g[i] = a[i] * x[i] + c[i];
    const RetractReport report =
        m.Step(ViewOf(m, x), CViewOf(m, g), ViewOf(m, mom), o);
    REQUIRE(report.ok());
    if (step % 1000 == 999) worst = std::max(worst, MaxRowNormError(x, 4, 12));
  }
  CHECK(TiedBitwiseEqual(p, x));
  CHECK(TiedBitwiseEqual(p, mom));
  CHECK(worst <= 1e-6);
  CHECK(MaxRowNormError(x, 4, 12) <= 1e-6);
}

TEST_CASE("TiedOblique collapse and repair are defined events",
          "[manifold][tied_oblique][errors]") {
  const TiePattern p = MirrorPattern(3, 6);
  const TiedOblique<double> m(p);
  std::vector<double> x(18);
  m.RandomPoint(ViewOf(m, x), 121);
  // v = -x on row 1 only: the candidate row is 0.
  std::vector<double> v(18, 0.0);
  for (int j = 0; j < 6; ++j) v[6 + j] = -x[6 + j];
  std::vector<double> y = x;
  const RetractReport report = m.Retract(ViewOf(m, y), CViewOf(m, v));
  CHECK(report.collapsed_rows == 1);
  CHECK(report.first_collapsed_row == 1);
  CHECK(y == x);  // rows 0 and 2 moved by 0, row 1 kept
  // A non-finite candidate row collapses too.
  std::vector<double> w(18, 0.0);
  w[2 * 6 + 1] = std::numeric_limits<double>::infinity();
  y = x;
  const RetractReport inf_report = m.Retract(ViewOf(m, y), CViewOf(m, w));
  CHECK(inf_report.collapsed_rows == 1);
  CHECK(inf_report.first_collapsed_row == 2);
  for (int j = 0; j < 6; ++j) CHECK(y[12 + j] == x[12 + j]);
  // ProjectPoint rejects a non-finite entry and leaves x as it was.
  std::vector<double> bad = x;
  bad[7] = std::nan("");
  const std::vector<double> bad_copy = bad;
  REQUIRE_THROWS_WITH(m.ProjectPoint(ViewOf(m, bad)),
                      Catch::Contains("entry (1, 1) is not finite"));
  // Bitwise (NaN != NaN): the entries are untouched.
  // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): see above
  CHECK(std::memcmp(bad.data(), bad_copy.data(), sizeof(double) * 18) == 0);
  CHECK(m.collapse_tolerance() == Approx(std::sqrt(2.220446049250313e-16)));
  // ProjectPoint of a row whose projection onto E is 0: mirror pairs (1, -1).
  std::vector<double> z(18);
  for (int i = 0; i < 18; ++i) z[i] = (i % 6) < 3 ? 1.0 : -1.0;
  m.ProjectPoint(ViewOf(m, z));
  for (double e : z) CHECK(e == Approx(1.0 / std::sqrt(6.0)));
}

TEST_CASE("TiedOblique rejects patterns it cannot hold",
          "[manifold][tied_oblique][errors]") {
  TiePattern crossing = MirrorPattern(3, 4);
  crossing.class_of[9] = crossing.class_of[1];  // (2, 1) joins a class of row 0
  crossing = Canonical(crossing);
  REQUIRE_THROWS_WITH(TiedOblique<float>(crossing),
                      Catch::Contains("has members in rows 0 and 2"));
  TiePattern zero_row = MirrorPattern(3, 4);
  for (int j = 0; j < 4; ++j) zero_row.class_of[4 + j] = TiePattern::kZero;
  zero_row = Canonical(zero_row);
  REQUIRE_THROWS_WITH(TiedOblique<double>(zero_row),
                      Catch::Contains("row 1 is entirely zeroed"));
  TiePattern bad = MirrorPattern(2, 4);
  bad.class_of[0] = 99;
  REQUIRE_THROWS_WITH(TiedOblique<double>(bad), Catch::Contains("class id 99"));
  REQUIRE_THROWS_AS(TiedOblique<double>(MirrorPattern(2, 4), -1.0),
                    InvalidArgument);
  const TiedOblique<float> m(MirrorPattern(2, 4));
  std::vector<float> x(8);
  REQUIRE_THROWS_WITH(m.ProjectPoint(TensorView<float>(x.data(), 4, 2)),
                      Catch::Contains("has shape 4x2, expected 2x4"));
}

TEST_CASE("TiedOblique: weight decay is projected away",
          "[manifold][tied_oblique]") {
  const TiePattern p = MirrorPattern(3, 8, {0, 7});
  const TiedOblique<double> m(p);
  std::vector<double> x1(24), m1(24, 0.0);
  m.RandomPoint(ViewOf(m, x1), 141);
  std::vector<double> x2 = x1, m2 = m1;
  const std::vector<double> g = RandomVector<double>(24, 142);
  StepOptions plain, decayed;
  plain.lr = decayed.lr = 0.05;
  plain.momentum = decayed.momentum = 0.5;
  decayed.weight_decay = 0.3;
  for (int it = 0; it < 10; ++it) {
    m.Step(ViewOf(m, x1), CViewOf(m, g), ViewOf(m, m1), plain);
    m.Step(ViewOf(m, x2), CViewOf(m, g), ViewOf(m, m2), decayed);
  }
  CHECK(MaxAbsDiff(x1, x2) <= 1e-14);
  CHECK(MaxAbsDiff(m1, m2) <= 1e-14);
}
