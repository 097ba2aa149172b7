#include "manifolds/product.h"

#include "catch.h"
#include "manifold_checks.h"
#include "manifolds/euclidean.h"
#include "manifolds/linear_subspace.h"
#include "manifolds/tie_subspace.h"
#include "manifolds/tied_oblique.h"
#include "tie_patterns.h"

using namespace symopt;
using namespace symopt::testing;

namespace {

template <typename T>
std::vector<std::shared_ptr<const Manifold<T>>> Parts() {
  std::vector<double> span = RandomVector<double>(6 * 3, 7);
  return {std::make_shared<Euclidean<T>>(2, 3),
          std::make_shared<TieSubspace<T>>(MirrorPattern(3, 4, {0, 3}),
                                           TieMetric::kShared),
          std::make_shared<TiedOblique<T>>(MirrorPattern(2, 6)),
          std::shared_ptr<const Manifold<T>>(
              LinearSubspace<T>::FromSpanningSet(2, 3, 3, span).release())};
}

}  // namespace

TEMPLATE_TEST_CASE("Product satisfies the manifold invariants",
                   "[manifold][product]",
                   float,
                   double) {
  const double tol = std::is_same_v<TestType, float> ? 3e-5 : 1e-12;
  const Product<TestType> m(Parts<TestType>());
  CHECK(m.rows() == 1);
  CHECK(m.cols() == 6 + 12 + 12 + 6);
  CHECK(m.Dim() == 6 + 3 + (6 - 2) + 3);  // 3 mirror pairs per TiedOblique row
  std::vector<TestType> x(static_cast<std::size_t>(m.AmbientSize()));
  m.RandomPoint(ViewOf(m, x), 3);
  CheckManifoldInvariants(
      m, x, RandomVector<TestType>(m.AmbientSize(), 4), tol);
  // Each block of the random point is on its part.
  for (std::int64_t i = 0; i < m.NumParts(); ++i) {
    CHECK(m.part(i).DistanceToManifold(m.Block(CViewOf(m, x), i)) <= tol);
  }
}

TEST_CASE("Product layout, accessors and blockwise operations",
          "[manifold][product]") {
  const auto parts = Parts<double>();
  const Product<double> m(parts);
  CHECK(m.NumParts() == 4);
  CHECK(m.Offset(0) == 0);
  CHECK(m.Offset(1) == 6);
  CHECK(m.Offset(2) == 18);
  CHECK(m.Offset(3) == 30);
  CHECK(m.RowOffset(2) == 2 + 3);
  CHECK(m.CoeffOffset(3) == 6 + 3 + 4);
  CHECK(m.PartOfRow(6) == std::make_pair(std::int64_t(2), std::int64_t(1)));
  CHECK(&m.part(2) == parts[2].get());
  // Blockwise: projecting the whole equals projecting each block by its part.
  std::vector<double> x(36), u = RandomVector<double>(36, 5);
  m.RandomPoint(ViewOf(m, x), 6);
  const std::vector<double> pu = Projected(m, x, u);
  for (std::int64_t i = 0; i < m.NumParts(); ++i) {
    const Manifold<double>& p = m.part(i);
    std::vector<double> xi(x.begin() + m.Offset(i),
                           x.begin() + m.Offset(i) + p.AmbientSize());
    std::vector<double> ui(u.begin() + m.Offset(i),
                           u.begin() + m.Offset(i) + p.AmbientSize());
    const std::vector<double> want = Projected(p, xi, ui);
    const std::vector<double> got(pu.begin() + m.Offset(i),
                                  pu.begin() + m.Offset(i) + p.AmbientSize());
    CHECK(got == want);
  }
  // The shared-metric part counts in the product's metric as in its own.
  const std::vector<double> v = Projected(m, x, RandomVector<double>(36, 8));
  double sum = 0.0;
  for (std::int64_t i = 0; i < m.NumParts(); ++i) {
    sum += m.part(i).Inner(m.Block(CViewOf(m, x), i),
                           m.Block(CViewOf(m, pu), i),
                           m.Block(CViewOf(m, v), i));
  }
  CHECK(m.Inner(CViewOf(m, x), CViewOf(m, pu), CViewOf(m, v)) ==
        Approx(sum).epsilon(1e-14));
}

TEST_CASE("Product Riemannian gradient", "[manifold][product]") {
  const Product<double> m(Parts<double>());
  const std::int64_t n = m.AmbientSize();
  const std::vector<double> a = RandomVector<double>(n, 11);
  const std::vector<double> c = RandomVector<double>(n, 12);
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
  m.RandomPoint(ViewOf(m, x), 13);
  CheckRiemannianGradient<double>(m, f, egrad, x, 14);
}

TEST_CASE("Product re-indexes collapsed rows", "[manifold][product]") {
  const Product<double> m(Parts<double>());
  std::vector<double> x(36), v(36, 0.0);
  m.RandomPoint(ViewOf(m, x), 21);
  // Row 1 of the TiedOblique part (part 2) collapses: v = -x there.
  for (std::int64_t j = 0; j < 6; ++j) v[18 + 6 + j] = -x[18 + 6 + j];
  std::vector<double> y = x;
  const RetractReport report = m.Retract(ViewOf(m, y), CViewOf(m, v));
  CHECK(report.collapsed_rows == 1);
  CHECK(report.first_collapsed_row == m.RowOffset(2) + 1);
  CHECK(m.PartOfRow(report.first_collapsed_row) ==
        std::make_pair(std::int64_t(2), std::int64_t(1)));
  // The collapsed row is kept bitwise; the rest moved by v = 0 (up to
  // rounding in the renormalised and re-projected parts).
  for (std::int64_t j = 0; j < 6; ++j) CHECK(y[18 + 6 + j] == x[18 + 6 + j]);
  CHECK(MaxAbsDiff(y, x) <= 1e-15);
}

TEST_CASE("Product rejects bad input", "[manifold][product][errors]") {
  REQUIRE_THROWS_WITH(Product<float>({}), Catch::Contains("at least one part"));
  REQUIRE_THROWS_WITH(
      Product<float>({std::make_shared<Euclidean<float>>(1, 2), nullptr}),
      Catch::Contains("part 1 is null"));
  const Product<float> m(Parts<float>());
  CHECK_THROWS_WITH(m.part(4), Catch::Contains("part 4 out of range [0, 4)"));
  CHECK_THROWS_AS(m.PartOfRow(9), InvalidArgument);
  std::vector<float> x(36);
  REQUIRE_THROWS_WITH(m.ProjectPoint(TensorView<float>(x.data(), 6, 6)),
                      Catch::Contains("has shape 6x6, expected 1x36"));
}
