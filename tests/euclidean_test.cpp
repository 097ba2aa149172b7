#include "manifolds/euclidean.h"

#include "catch.h"
#include "manifold_checks.h"

using namespace symopt;
using namespace symopt::testing;

TEMPLATE_TEST_CASE("Euclidean satisfies the manifold invariants",
                   "[manifold][euclidean]",
                   float,
                   double) {
  const double tol = std::is_same_v<TestType, float> ? 1e-5 : 1e-12;
  Euclidean<TestType> m(3, 5);
  CHECK(m.Dim() == 15);
  std::vector<TestType> x(15);
  m.RandomPoint(ViewOf(m, x), 1);
  CheckManifoldInvariants(m, x, RandomVector<TestType>(15, 2), tol);
}

TEST_CASE("Euclidean gradient of a quadratic", "[manifold][euclidean]") {
  Euclidean<double> m(2, 3);
  const std::vector<double> a = RandomVector<double>(6, 5);
  auto f = [&](const std::vector<double>& x) {
    double s = 0;
    for (int i = 0; i < 6; ++i)
      s += 0.5 * (x[i] - a[i]) * (x[i] - a[i]) * (i + 1);
    return s;
  };
  auto egrad = [&](const std::vector<double>& x, std::vector<double>& g) {
    for (int i = 0; i < 6; ++i) g[i] = (x[i] - a[i]) * (i + 1);
  };
  CheckRiemannianGradient<double>(m, f, egrad, RandomVector<double>(6, 6), 7);
}

TEST_CASE("Manifold rejects views of the wrong shape", "[manifold][errors]") {
  Euclidean<float> m(3, 4);
  std::vector<float> x(12), g(11);
  REQUIRE_THROWS_AS(m.Project(TensorView<const float>(x.data(), 3, 4),
                              TensorView<float>(g.data(), 1, 11)),
                    InvalidArgument);
  StepOptions bad;
  bad.momentum = 1.5;
  REQUIRE_THROWS_AS(m.Step(TensorView<float>(x.data(), 3, 4),
                           TensorView<const float>(x.data(), 3, 4),
                           {},
                           bad),
                    InvalidArgument);
}
