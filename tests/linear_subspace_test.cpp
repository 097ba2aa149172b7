#include "manifolds/linear_subspace.h"

#include <Eigen/Dense>

#include "catch.h"
#include "manifold_checks.h"
#include "manifolds/tie_subspace.h"
#include "tie_patterns.h"

using namespace symopt;
using namespace symopt::testing;

namespace {

using RowMatrix =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// num_independent random vectors plus num_dependent random combinations of
// them, as the columns of an n x (num_independent + num_dependent) matrix.
RowMatrix SpanningSet(std::int64_t n,
                      std::int64_t num_independent,
                      std::int64_t num_dependent,
                      std::uint64_t seed) {
  const std::vector<double> a = RandomVector<double>(n * num_independent, seed);
  const std::vector<double> mix =
      RandomVector<double>(num_independent * num_dependent, seed + 1);
  RowMatrix s(n, num_independent + num_dependent);
  s.leftCols(num_independent) =
      Eigen::Map<const RowMatrix>(a.data(), n, num_independent);
  s.rightCols(num_dependent) =
      s.leftCols(num_independent) *
      Eigen::Map<const RowMatrix>(mix.data(), num_independent, num_dependent);
  return s;
}

std::vector<double> ToVector(const RowMatrix& m) {
  return std::vector<double>(m.data(), m.data() + m.size());
}

}  // namespace

TEST_CASE("LinearSubspace from a spanning set drops dependent columns",
          "[manifold][linear_subspace]") {
  const RowMatrix a = SpanningSet(12, 5, 3, 1);
  const auto m = LinearSubspace<double>::FromSpanningSet(3, 4, 8, ToVector(a));
  CHECK(m->Dim() == 5);
  // Pi_E equals the dense reference A A^+.
  const Eigen::MatrixXd reference =
      a * a.completeOrthogonalDecomposition().pseudoInverse();
  const std::vector<double> u = RandomVector<double>(12, 2);
  std::vector<double> pu = u;
  m->ProjectPoint(TensorView<double>(pu.data(), 3, 4));
  const Eigen::VectorXd want =
      reference * Eigen::Map<const Eigen::VectorXd>(u.data(), 12);
  for (int i = 0; i < 12; ++i) CHECK(pu[i] == Approx(want(i)).margin(1e-12));
  // Every spanning vector is in E.
  for (int j = 0; j < 8; ++j) {
    std::vector<double> aj(12);
    for (int i = 0; i < 12; ++i) aj[i] = a(i, j);
    CHECK(m->DistanceToManifold(TensorView<const double>(aj.data(), 3, 4)) <=
          1e-12);
  }
  // Degenerate spans.
  CHECK(LinearSubspace<double>::FromSpanningSet(
            2, 2, 2, std::vector<double>(8, 0.0))
            ->Dim() == 0);
  CHECK(LinearSubspace<float>::FromSpanningSet(2, 2, 0, {})->Dim() == 0);
  const RowMatrix full = SpanningSet(6, 6, 2, 3);
  CHECK(
      LinearSubspace<double>::FromSpanningSet(2, 3, 8, ToVector(full))->Dim() ==
      6);
}

TEMPLATE_TEST_CASE("LinearSubspace satisfies the manifold invariants",
                   "[manifold][linear_subspace]",
                   float,
                   double) {
  const double tol = std::is_same_v<TestType, float> ? 2e-5 : 1e-12;
  for (const std::int64_t k : {1, 4, 11}) {
    INFO("dim " << k);
    const auto m = LinearSubspace<TestType>::FromSpanningSet(
        3, 5, k, ToVector(SpanningSet(15, k, 0, 10 + k)));
    REQUIRE(m->Dim() == k);
    std::vector<TestType> x(15);
    m->RandomPoint(ViewOf(*m, x), 4);
    CheckManifoldInvariants(*m, x, RandomVector<TestType>(15, 5), tol);
  }
}

TEST_CASE("LinearSubspace Riemannian gradient", "[manifold][linear_subspace]") {
  const auto m = LinearSubspace<double>::FromSpanningSet(
      2, 5, 6, ToVector(SpanningSet(10, 4, 2, 20)));
  const std::vector<double> a = RandomVector<double>(10, 21);
  auto f = [&](const std::vector<double>& x) {
    double s = 0.0;
    for (int i = 0; i < 10; ++i) s += std::sin(a[i] * x[i]) + 0.5 * x[i] * x[i];
    return s;
  };
  auto egrad = [&](const std::vector<double>& x, std::vector<double>& g) {
    for (int i = 0; i < 10; ++i) g[i] = a[i] * std::cos(a[i] * x[i]) + x[i];
  };
  std::vector<double> x(10);
  m->RandomPoint(ViewOf(*m, x), 22);
  CheckRiemannianGradient<double>(*m, f, egrad, x, 23);
}

TEST_CASE("LinearSubspace of a tie pattern matches TieSubspace",
          "[manifold][linear_subspace]") {
  // The embedded tangent basis of a tie subspace is an orthonormal basis of
  // E; as a LinearSubspace it must give the same projector.
  const TiePattern p = RandomPattern(3, 6, 7, 0.2, 31);
  const TieSubspace<double> tie(p);
  const std::int64_t n = 18, k = tie.Dim();
  std::vector<double> basis(static_cast<std::size_t>(n * k)),
      col(static_cast<std::size_t>(n)), x(static_cast<std::size_t>(n), 0.0);
  for (std::int64_t j = 0; j < k; ++j) {
    std::vector<double> c(static_cast<std::size_t>(k), 0.0);
    c[std::size_t(j)] = 1.0;
    tie.TangentBasisMultiply(CViewOf(tie, x), c.data(), ViewOf(tie, col));
    for (std::int64_t i = 0; i < n; ++i)
      basis[std::size_t(i * k + j)] = col[std::size_t(i)];
  }
  const LinearSubspace<double> lin(3, 6, k, basis);
  const std::vector<double> u = RandomVector<double>(n, 32);
  CHECK(MaxAbsDiff(Projected(lin, x, u), Projected(tie, x, u)) <= 1e-14);
}

TEST_CASE("LinearSubspace rejects bad bases",
          "[manifold][linear_subspace][errors]") {
  // Columns 0 and 2 of an orthonormal basis mixed: inner product 0.3.
  RowMatrix q = Eigen::HouseholderQR<Eigen::MatrixXd>(SpanningSet(8, 3, 0, 41))
                    .householderQ() *
                Eigen::MatrixXd::Identity(8, 3);
  q.col(2) = 0.3 * q.col(0) + std::sqrt(1 - 0.09) * q.col(2);
  REQUIRE_THROWS_WITH(
      LinearSubspace<double>(2, 4, 3, ToVector(q)),
      Catch::Contains("columns 0 and 2 have inner product 0.3"));
  RowMatrix scaled =
      Eigen::HouseholderQR<Eigen::MatrixXd>(SpanningSet(8, 3, 0, 42))
          .householderQ() *
      Eigen::MatrixXd::Identity(8, 3);
  scaled.col(1) *= 2.0;
  REQUIRE_THROWS_WITH(LinearSubspace<float>(2, 4, 3, ToVector(scaled)),
                      Catch::Contains("column 1 has squared norm 4"));
  REQUIRE_THROWS_WITH(
      LinearSubspace<double>(2, 4, 3, std::vector<double>(23)),
      Catch::Contains("basis has 23 values, expected rows*cols*dim = 8*3"));
  REQUIRE_THROWS_WITH(LinearSubspace<double>(2, 4, 9, std::vector<double>(72)),
                      Catch::Contains("dimension 9 outside [0, 8]"));
  std::vector<double> with_nan = ToVector(SpanningSet(8, 2, 0, 43));
  with_nan[5] = std::nan("");
  REQUIRE_THROWS_WITH(
      LinearSubspace<double>::FromSpanningSet(2, 4, 2, with_nan),
      Catch::Contains("entry (2, 1) is not finite"));
  REQUIRE_THROWS_AS(
      LinearSubspace<double>::FromSpanningSet(2, 4, 2, std::vector<double>(15)),
      InvalidArgument);
  const auto m = LinearSubspace<float>::FromSpanningSet(
      2, 4, 2, ToVector(SpanningSet(8, 2, 0, 44)));
  std::vector<float> x(8);
  REQUIRE_THROWS_WITH(m->RandomPoint(TensorView<float>(x.data(), 8, 1), 1),
                      Catch::Contains("has shape 8x1, expected 2x4"));
}
