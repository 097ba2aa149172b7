// Transformations and finite groups: index maps, closure and kind checks, the
// twirl Pi_G, and group-convolution filter spaces (C4, D4, P4) whose free
// parameter counts are checked against Burnside's lemma.
#include <limits>
#include <numeric>
#include <random>

#include "catch.h"
#include "symmetry/constraint.h"
#include "symmetry/group.h"
#include "symmetry_checks.h"

using namespace symopt;
using namespace symopt::testing;

TEST_CASE("shapes flatten row-major", "[symmetry][transform]") {
  const Shape s({2, 3, 4});
  CHECK(s.size() == 24);
  CHECK(s.stride(0) == 12);
  CHECK(s.Flatten({1, 2, 3}) == 23);
  CHECK(s.Unflatten(17) == std::vector<std::int64_t>{1, 1, 1});
  CHECK_THROWS_AS(Shape({2, 0}), InvalidArgument);
  CHECK_THROWS_AS(s.Flatten({2, 0, 0}), InvalidArgument);
}

TEST_CASE("named transforms follow their documented index maps",
          "[symmetry][transform]") {
  const Shape s({3, 3});
  std::vector<double> x(9), y(9);
  std::iota(x.begin(), x.end(), 0.0);  // x[p, q] = 3 p + q
  SECTION("rotation: (R x)[p, q] = x[q, 2 - p], R^4 = I") {
    const Transform r = Transform::Rotate90(s, 0, 1);
    r.Apply(x.data(), y.data());
    for (int p = 0; p < 3; ++p) {
      for (int q = 0; q < 3; ++q) CHECK(y[3 * p + q] == x[3 * q + (2 - p)]);
    }
    const Transform r4 = r.Compose(r).Compose(r).Compose(r);
    CHECK(r4.IsIdentity());
    CHECK_FALSE(r.Compose(r).IsIdentity());
    CHECK(r.IsPermutation());
    CHECK(r.Inverse().Compose(r).IsIdentity());
  }
  SECTION("flip and transpose are involutions") {
    CHECK(Transform::Flip(s, 1).Compose(Transform::Flip(s, 1)).IsIdentity());
    const Transform t = Transform::Transpose(s, 0, 1);
    t.Apply(x.data(), y.data());
    CHECK(y[1] == x[3]);
    CHECK(t.Compose(t).IsIdentity());
  }
  SECTION("shift without wrap is a partial permutation") {
    const Transform t = Transform::Shift(s, 0, 1, false);
    t.Apply(x.data(), y.data());
    for (int q = 0; q < 3; ++q) {
      CHECK(y[q] == 0.0);  // nothing shifts into row 0
      CHECK(y[3 + q] == x[q]);
    }
    CHECK(t.HasGather());
    CHECK(t.HasScatter());
    CHECK_FALSE(t.IsPermutation());
    CHECK(t.gather()[0] == -1);
    CHECK(t.scatter()[6] == -1);  // x[2, 0] goes nowhere
  }
  SECTION(
      "P4 filter action = quarter turn and a cyclic shift of the rotation "
      "axis") {
    const Shape f({4, 3, 3});
    const Transform p4 = Transform::P4Filter(f, 0, 1, 2);
    std::vector<double> u(36), v(36);
    std::iota(u.begin(), u.end(), 0.0);
    p4.Apply(u.data(), v.data());
    for (int r = 0; r < 4; ++r) {
      for (int p = 0; p < 3; ++p) {
        for (int q = 0; q < 3; ++q) {
          CHECK(v[f.Flatten({r, p, q})] ==
                u[f.Flatten({(r + 3) % 4, q, 2 - p})]);
        }
      }
    }
  }
  SECTION("malformed transforms name the problem") {
    CHECK_THROWS_AS(Transform::Rotate90(Shape({3, 4}), 0, 1), InvalidArgument);
    CHECK_THROWS_AS(Transform::Flip(s, 2), InvalidArgument);
    CHECK_THROWS_AS(Transform::P4Filter(Shape({3, 3, 3}), 0, 1, 2),
                    InvalidArgument);
    CHECK_THROWS_AS(Transform::DownScale(s, 0, 2, 0.5), InvalidArgument);
    CHECK_THROWS_AS(
        Transform::FromGather(s, std::vector<std::int32_t>(9, 9), "bad"),
        InvalidArgument);
    try {
      Transform::Rotate90(Shape({3, 4}), 0, 1);
    } catch (const InvalidArgument& e) {
      CHECK_THAT(e.what(), Catch::Contains("equal length"));
    }
  }
}

// Found under UBSan with crafted input (docs/testing.md): each of these
// overflowed a signed integer or shifted by 64 or more before it was checked.
TEST_CASE("extreme shapes, shift amounts and group sizes never overflow",
          "[symmetry][transform][group][errors]") {
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  SECTION("a shape's size is checked before it can overflow") {
    for (const std::vector<std::int64_t>& dims :
         std::vector<std::vector<std::int64_t>>{{std::int64_t{1} << 62, 4},
                                                {kMax, 2},
                                                {kMax, kMax},
                                                {3, 1 << 30, 2}}) {
      CHECK_THROWS_WITH(Shape(dims),
                        Catch::Contains("has 2^31 or more entries"));
    }
    CHECK(Shape({1 << 15, 1 << 15, 1}).size() == std::int64_t{1} << 30);
  }
  SECTION("a shift by any amount is the shift by that amount mod the length") {
    const Shape s({5, 2});
    for (std::int64_t amount : {kMin, kMin + 1, kMax, kMax - 1}) {
      INFO("amount " << amount);
      const std::int64_t reduced = ((amount % 5) + 5) % 5;
      CHECK(Transform::Shift(s, 0, amount, true).gather() ==
            Transform::Shift(s, 0, reduced, true).gather());
      // Without wrap everything shifts out.
      CHECK(Transform::Shift(s, 0, amount, false).gather() ==
            std::vector<std::int32_t>(10, -1));
    }
    CHECK(Transform::Shift(s, 0, -5, false).gather() ==
          std::vector<std::int32_t>(10, -1));
    CHECK(Transform::Shift(s, 0, -4, false).gather()[0] == 8);
  }
  SECTION("a declared order too large to compute is refused") {
    const Shape img({4, 4});
    const Shape out({1});
    for (std::int64_t n : {std::int64_t{1} << 62, kMax, std::int64_t{-1}}) {
      INFO("n = " << n);
      CHECK_THROWS_WITH(
          FiniteGroup::Generate(InvarianceAction(out, D4Group(img, 0, 1)),
                                GroupKind::Dihedral(n)),
          Catch::Contains("outside [0, 2^31]"));
    }
  }
  SECTION("a flip group of more axes than a shape can flip is refused") {
    std::vector<int> axes(64);
    std::iota(axes.begin(), axes.end(), 0);
    const Shape ones(std::vector<std::int64_t>(64, 1));
    CHECK_THROWS_WITH(FlipGroup(ones, axes), Catch::Contains("64 axes"));
    axes.resize(31);
    CHECK_THROWS_WITH(FlipGroup(ones, axes), Catch::Contains("31 axes"));
    axes.resize(3);
    CHECK(FlipGroup(Shape({2, 2, 2}), axes).kind.n == 8);
  }
}

TEST_CASE("named groups close to the declared kind", "[symmetry][group]") {
  const Shape img({4, 4});
  const Shape out({1});
  const FiniteGroup c4 = FiniteGroup::Generate(
      InvarianceAction(out, C4Group(img, 0, 1)), GroupKind::Cyclic(4));
  CHECK(c4.order() == 4);
  CHECK(c4.IsAbelian());
  const FiniteGroup d4 = FiniteGroup::Generate(
      InvarianceAction(out, D4Group(img, 0, 1)), GroupKind::Dihedral(4));
  CHECK(d4.order() == 8);
  CHECK_FALSE(d4.IsAbelian());
  const FiniteGroup shifts = FiniteGroup::Generate(
      EquivarianceAction(CyclicShiftGroup(Shape({7, 2}), 0)),
      GroupKind::Cyclic(7));
  CHECK(shifts.order() == 7);
  const FiniteGroup klein = FiniteGroup::Generate(
      InvarianceAction(out, FlipGroup(img, {0, 1})), GroupKind::Dihedral(2));
  CHECK(klein.order() == 4);
  for (std::int64_t e = 1; e < 4; ++e) CHECK(klein.ElementOrder(e) == 2);
  CHECK(c4.ElementOrder(0) == 1);

  SECTION("wrong declarations and non-groups are refused") {
    // C4 declared as cyclic of order 3, and as dihedral.
    CHECK_THROWS_AS(
        FiniteGroup::Generate(InvarianceAction(out, C4Group(img, 0, 1)),
                              GroupKind::Cyclic(3)),
        InvalidArgument);
    CHECK_THROWS_AS(
        FiniteGroup::Generate(InvarianceAction(out, C4Group(img, 0, 1)),
                              GroupKind::Dihedral(2)),
        InvalidArgument);
    // The Klein group has order 4 but is not cyclic.
    CHECK_THROWS_AS(
        FiniteGroup::Generate(InvarianceAction(out, FlipGroup(img, {0, 1})),
                              GroupKind::Cyclic(4)),
        InvalidArgument);
    // C8 has order 8 but is not dihedral.
    CHECK_THROWS_AS(FiniteGroup::Generate(
                        InvarianceAction(out, CyclicShiftGroup(Shape({8}), 0)),
                        GroupKind::Dihedral(4)),
                    InvalidArgument);
    // A shift without wrap does not generate a group.
    GeneratorSet partial{{Transform::Shift(img, 0, 1, false)},
                         GroupKind::Any()};
    CHECK_THROWS_AS(
        FiniteGroup::Generate(InvarianceAction(out, partial), GroupKind::Any()),
        InvalidArgument);
    // The size limit.
    CHECK_THROWS_AS(FiniteGroup::Generate(
                        InvarianceAction(out, CyclicShiftGroup(Shape({50}), 0)),
                        GroupKind::Any(),
                        10),
                    InvalidArgument);
  }
}

namespace {

// Burnside: the number of orbits of G on the entries (j, i) of W is the mean
// over the elements of the number of fixed entries, fix_out(g) * fix_in(g).
std::int64_t BurnsideCount(const FiniteGroup& g) {
  std::int64_t total = 0;
  for (std::int64_t e = 0; e < g.order(); ++e) {
    std::int64_t fo = 0, fi = 0;
    const std::int32_t* sigma = g.OutPermutation(e);
    const std::int32_t* tau = g.InPermutation(e);
    const std::int64_t n_out = g.out_shape().size();
    for (std::int64_t j = 0; j < n_out; ++j) fo += sigma[j] == j;
    for (std::int64_t i = 0; i < g.in_shape().size(); ++i)
      fi += tau[i] == n_out + i;
    total += fo * fi;
  }
  REQUIRE(total % g.order() == 0);
  return total / g.order();
}

}  // namespace

TEST_CASE(
    "C4 and D4 filter spaces: free parameters match Burnside and closed forms",
    "[symmetry][group][gconv]") {
  const Shape out({1});
  // k = 1 is left out: a quarter turn of a 1 x 1 filter is the identity, so
  // the action is not faithful and the generated group has order 1.
  for (std::int64_t k = 2; k <= 7; ++k) {
    const Shape filter({k, k});
    const FiniteGroup c4 = FiniteGroup::Generate(
        InvarianceAction(out, C4Group(filter, 0, 1)), GroupKind::Cyclic(4));
    const FiniteGroup d4 = FiniteGroup::Generate(
        InvarianceAction(out, D4Group(filter, 0, 1)), GroupKind::Dihedral(4));
    for (const FiniteGroup* g : {&c4, &d4}) {
      ConstraintProblem p(out, filter);
      p.AddGroup(*g);
      const Solution s = Solve(p);
      REQUIRE(s.is_tie);
      INFO("k = " << k << ", |G| = " << g->order());
      CHECK(s.dim == BurnsideCount(*g));
      // Closed forms from the fixed points of each element.
      const std::int64_t odd = k % 2;
      if (g == &c4) {
        CHECK(s.dim == (k * k + 3 * odd) / 4);
      } else {
        CHECK(s.dim == (k * k + 3 * odd + 2 * k + 2 * k * odd) / 8);
      }
      // The twirl (a literal group average) equals the scatter-mean Pi_E.
      CHECK((DenseTwirl(*g) - DenseProjector(s)).norm() < 1e-12);
    }
  }
}

TEST_CASE("the twirl is the orthogonal projector onto Fix(G)",
          "[symmetry][group]") {
  // D4 acting on both sides of a 3x3 -> 3x3 layer (same-equivariance).
  const Shape img({3, 3});
  const FiniteGroup d4 = FiniteGroup::Generate(
      EquivarianceAction(D4Group(img, 0, 1)), GroupKind::Dihedral(4));
  const Eigen::MatrixXd pg = DenseTwirl(d4);
  CHECK((pg * pg - pg).norm() < 1e-12);
  CHECK((pg - pg.transpose()).norm() < 1e-12);
  ConstraintProblem p(img, img);
  p.AddGroup(d4);
  const Solution s = Solve(p);
  CHECK((pg - DenseProjector(s)).norm() < 1e-12);
  CHECK(s.dim == BurnsideCount(d4));
  // Independent dense definition: (1/|G|) sum_g kron(rho_out(g)^T,
  // rho_in(g)^T).
  Eigen::MatrixXd sum = Eigen::MatrixXd::Zero(81, 81);
  for (std::int64_t e = 0; e < d4.order(); ++e) {
    Eigen::MatrixXd ro = Eigen::MatrixXd::Zero(9, 9),
                    ri = Eigen::MatrixXd::Zero(9, 9);
    for (int k = 0; k < 9; ++k) {
      ro(k, d4.OutPermutation(e)[k]) = 1;
      ri(k, d4.InPermutation(e)[k] - 9) = 1;
    }
    // vec_row(ro^T W ri) = kron(ro^T, ri^T) vec_row(W).
    sum += Kron(ro.transpose(), ri.transpose());
  }
  CHECK((sum / 8.0 - pg).norm() < 1e-12);
  CheckSolutionProperties(p, s, 41);
}

TEST_CASE("P4 filter spaces: lifting and group convolution",
          "[symmetry][group][gconv]") {
  for (std::int64_t k : {1, 2, 3, 5}) {
    INFO("k = " << k);
    const Shape orient({4});
    {  // lifting layer Z2 -> P4: one k x k filter, rotated per orientation
      const Shape patch({k, k});
      const FiniteGroup g = FiniteGroup::Generate(
          RepresentationAction(CyclicShiftGroup(orient, 0),
                               C4Group(patch, 0, 1)),
          GroupKind::Cyclic(4));
      ConstraintProblem p(orient, patch);
      p.AddGroup(g);
      const Solution s = Solve(p);
      REQUIRE(s.is_tie);
      CHECK(s.dim == k * k);
      CHECK(s.dim == BurnsideCount(g));
      CheckSolutionProperties(p, s, 50 + k);
    }
    {  // P4 -> P4: the filter bank psi_s(r, u) = psi(r - s, R^{-s} u)
      const Shape filter({4, k, k});
      const FiniteGroup g = FiniteGroup::Generate(
          RepresentationAction(CyclicShiftGroup(orient, 0),
                               P4FilterGroup(filter, 0, 1, 2)),
          GroupKind::Cyclic(4));
      ConstraintProblem p(orient, filter);
      p.AddGroup(g);
      const Solution s = Solve(p);
      REQUIRE(s.is_tie);
      CHECK(s.dim == 4 * k * k);  // the free P4 filter: 4 orientations x k x k
      CHECK(s.dim == BurnsideCount(g));
      CHECK(s.num_zero == 0);
      // Every output orientation s is a transformed copy of orientation 0,
      // where the transform is the s-th power of the P4 filter action.
      Transform power = Transform::Identity(filter);
      const Transform step = Transform::P4Filter(filter, 0, 1, 2);
      for (std::int64_t o = 0; o < 4; ++o) {
        // Entry (o, i) of rho_out W = W rho_in reads W_{o-1, i} = W_{o, s(i)}
        // (s the scatter of T), i.e. W_{o, i} = W_{o-1, g(i)} with g the
        // gather of T, hence W_{o, i} = W_{0, gather of T^o at i}.
        const std::vector<std::int32_t>& gath = power.gather();
        for (std::int64_t i = 0; i < filter.size(); ++i) {
          CHECK(s.ties.class_of[o * filter.size() + i] ==
                s.ties.class_of[gath[i]]);
        }
        power = step.Compose(power);
      }
      CheckSolutionProperties(p, s, 60 + k);
    }
  }
}
