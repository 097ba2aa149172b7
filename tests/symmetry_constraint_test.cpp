// The constraint engine: worked examples of paper 000 solved by derivation,
// property tests on random small problems, the nullspace path, supports and
// compatibility (paper 004).
#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "catch.h"
#include "manifold_checks.h"
#include "symmetry/constraint.h"
#include "symmetry_checks.h"

using namespace symopt;
using namespace symopt::testing;

namespace {

std::int32_t ClassAt(const Solution& s, std::int64_t j, std::int64_t i) {
  return s.ties.class_of[j * s.cols + i];
}

}  // namespace

// ---- paper 000, section 2.1: cyclic shift invariance -> RNN sharing
// ---------------------

TEST_CASE("cyclic shift invariance shares weights along the whole shifted axis",
          "[symmetry][constraint][paper000]") {
  const Shape in({5, 3});  // t = axis 0 (shifted with wrap), i_2 = axis 1
  const Shape out({2});
  ConstraintProblem p(out, in);
  p.AddInvariance(Transform::Shift(in, 0, 1, /*wrap=*/true));
  const Solution s = Solve(p);
  REQUIRE(s.is_tie);
  CHECK(s.num_zero == 0);
  CHECK(s.dim == 2 * 3);  // one weight per (j, i_2): eq. 14
  for (std::int64_t j = 0; j < 2; ++j) {
    for (std::int64_t t = 0; t < 5; ++t) {
      for (std::int64_t i2 = 0; i2 < 3; ++i2) {
        CHECK(ClassAt(s, j, in.Flatten({t, i2})) ==
              ClassAt(s, j, in.Flatten({0, i2})));
      }
    }
  }
  CheckSolutionProperties(p, s, 1);
}

// ---- paper 000, section 3.1: shift equivariance -> Toeplitz / convolution
// ----------------

TEST_CASE("shift equivariance without wrap gives a triangular Toeplitz matrix",
          "[symmetry][constraint][paper000]") {
  const std::int64_t n = 7;
  const Shape x({n});
  ConstraintProblem p(x, x);
  // T^1 of eq. 17: T_{i', i} = delta_{i', i+1}, i.e. (T x)_{i'} = x_{i'-1}.
  const Transform t1 = Transform::Shift(x, 0, 1, /*wrap=*/false);
  CHECK(t1.Dense()(3, 2) == 1.0);
  p.AddEquivariance(t1);
  const Solution s = Solve(p);
  REQUIRE(s.is_tie);
  CHECK(s.method == SolveMethod::kUnionFind);
  // Exact solution: W_{j,i} depends on j - i only and vanishes for i > j
  // (eq. 22 prints the transpose; see docs/constraint_spec.md).
  CHECK(s.dim == n);
  for (std::int64_t j = 0; j < n; ++j) {
    for (std::int64_t i = 0; i < n; ++i) {
      if (i > j) {
        CHECK(ClassAt(s, j, i) == TiePattern::kZero);
      } else {
        CHECK(ClassAt(s, j, i) == ClassAt(s, j - i, 0));
      }
    }
  }
  CHECK(s.num_zero == n * (n - 1) / 2);
  CheckSolutionProperties(p, s, 2);

  SECTION("adding T^{-omega} (eq. 17) leaves only the diagonal") {
    // The paper reads a band of width omega from the j = 1 row; the boundary
    // equations of both non-wrapping shifts together force more: every
    // off-diagonal entry is 0.
    p.AddEquivariance(Transform::Shift(x, 0, -3, /*wrap=*/false));
    const Solution s2 = Solve(p);
    REQUIRE(s2.is_tie);
    CHECK(s2.dim == 1);
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t i = 0; i < n; ++i) {
        CHECK((ClassAt(s2, j, i) == 0) == (i == j));
      }
    }
    CheckSolutionProperties(p, s2, 3);
  }

  SECTION("a window support gives the 1-D convolution with omega weights") {
    const std::int64_t omega = 3;
    std::vector<std::vector<std::int64_t>> offsets;
    for (std::int64_t d = 0; d < omega; ++d)
      offsets.push_back({-d});  // i - j in (-omega, 0]
    p.SetSupport(Support::Local(x, x, {{0, 0}}, offsets, /*wrap=*/false));
    const Solution s3 = Solve(p);
    REQUIRE(s3.is_tie);
    CHECK(s3.dim == omega);
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t i = 0; i < n; ++i) {
        const std::int64_t d = j - i;
        if (d < 0 || d >= omega) {
          CHECK(ClassAt(s3, j, i) == TiePattern::kZero);
        } else {
          CHECK(ClassAt(s3, j, i) == ClassAt(s3, d, 0));
        }
      }
    }
    const CompatibilityReport c = CheckCompatibility(p);
    CHECK(c.compatible);
    CHECK(c.residual == 0.0);
    CheckSolutionProperties(p, s3, 4);
  }
}

TEST_CASE("cyclic shift equivariance with a window is a circular convolution",
          "[symmetry][constraint][paper000]") {
  const Shape x({6, 2});  // a 1-D signal of 6 samples with 2 channels
  ConstraintProblem p(x, x);
  p.AddEquivariance(Transform::Shift(x, 0, 1, /*wrap=*/true));
  p.SetSupport(Support::Local(x, x, {{0, 0}}, {{-1}, {0}, {1}}, /*wrap=*/true));
  const Solution s = Solve(p);
  REQUIRE(s.is_tie);
  CHECK(s.dim == 3 * 2 * 2);  // 3 taps for every (out channel, in channel)
  for (std::int64_t t = 0; t < 6; ++t) {
    for (std::int64_t u = 0; u < 6; ++u) {
      const std::int64_t d = ((u - t) % 6 + 6) % 6;
      for (std::int64_t co = 0; co < 2; ++co) {
        for (std::int64_t ci = 0; ci < 2; ++ci) {
          const std::int32_t c =
              ClassAt(s, x.Flatten({t, co}), x.Flatten({u, ci}));
          if (d == 2 || d == 3 || d == 4) {
            CHECK(c == TiePattern::kZero);
          } else {
            CHECK(c == ClassAt(s, x.Flatten({0, co}), x.Flatten({d, ci})));
          }
        }
      }
    }
  }
  CHECK(CheckCompatibility(p).compatible);
  CheckSolutionProperties(p, s, 5);
}

// ---- paper 000, section 4.1 and 5.3: flip invariance -> mirror pairs (FIAN)
// ----------------

TEST_CASE("flip invariance ties mirror pairs",
          "[symmetry][constraint][paper000]") {
  for (std::int64_t width : {5, 6}) {
    const Shape in(
        {3, width, 2});  // height x width x channels, flipped along width
    const Shape out({4});
    ConstraintProblem p(out, in);
    p.AddInvariance(Transform::Flip(in, 1));
    const Solution s = Solve(p);
    REQUIRE(s.is_tie);
    CHECK(s.method == SolveMethod::kUnionFindFactored);
    const std::int64_t pairs_per_row = 3 * 2 * ((width + 1) / 2);
    CHECK(s.dim == 4 * pairs_per_row);
    for (std::int64_t j = 0; j < 4; ++j) {
      for (std::int64_t h = 0; h < 3; ++h) {
        for (std::int64_t w = 0; w < width; ++w) {
          for (std::int64_t c = 0; c < 2; ++c) {
            CHECK(ClassAt(s, j, in.Flatten({h, w, c})) ==
                  ClassAt(s, j, in.Flatten({h, width - 1 - w, c})));
          }
        }
      }
    }
    for (std::int32_t size : s.class_size)
      CHECK((size == 2 || (width % 2 == 1 && size == 1)));
    // The factored and the full union-find give the identical pattern.
    SolveOptions plain;
    plain.factor_rows = false;
    const Solution full = Solve(p, plain);
    CHECK(full.method == SolveMethod::kUnionFind);
    CHECK(full.ties.class_of == s.ties.class_of);
    CHECK(full.class_size == s.class_size);
    CHECK(full.row_class_of.empty());
    REQUIRE_FALSE(s.row_class_of.empty());  // the per-row projection path
    std::vector<double> w(p.ambient_size()), a(w.size()), b(w.size());
    std::mt19937_64 rng(width);
    std::normal_distribution<double> normal;
    for (double& v : w) v = normal(rng);
    s.ProjectE(w.data(), a.data());
    full.ProjectE(w.data(), b.data());
    CHECK(a == b);
    CheckSolutionProperties(p, s, 6);
  }
}

// ---- paper 000, section 4.2 / 4.3: down-scale invariance (non-permutation
// maps) ------------

TEST_CASE("down-scale invariance is solved exactly by the nullspace path",
          "[symmetry][constraint][paper000]") {
  const Shape in({8});
  const Shape out({2});
  const std::int64_t factor = 2;

  SECTION("the averaging map of eq. 27 admits only W = 0") {
    // w_i = (1/S) w_{floor(i/S)}: at i = 0 this reads w_0 = w_0 / S, so w_0 = 0
    // and every weight follows. The paper's blocks (eq. 30) do not satisfy
    // w = w T; they are the layers that factor through T (w = u T).
    const Transform t = Transform::DownScale(in, 0, factor, 1.0 / factor);
    CHECK_FALSE(t.HasGather());
    CHECK_FALSE(t.HasScatter());
    ConstraintProblem p(out, in);
    p.AddInvariance(t);
    const Solution s = Solve(p);
    CHECK(s.method == SolveMethod::kNullspace);
    CHECK(s.is_tie);
    CHECK(s.dim == 0);
    CHECK(s.num_zero == 16);
    CheckSolutionProperties(p, s, 7);
    // The paper's block pattern is the row space of T, and it is not invariant.
    Eigen::RowVectorXd u(8);
    u << 1, 2, 3, 4, 0, 0, 0, 0;  // rows >= m / S of T are zero
    const Eigen::RowVectorXd blocks = u * t.Dense();
    for (int b = 0; b < 4; ++b) CHECK(blocks(2 * b) == blocks(2 * b + 1));
    CHECK((blocks * t.Dense() - blocks).norm() > 0.1);
  }

  SECTION("the summing map (scale 1) ties everything and needs no nullspace") {
    const Transform t = Transform::DownScale(in, 0, factor, 1.0);
    CHECK(t.HasScatter());
    ConstraintProblem p(out, in);
    p.AddInvariance(t);
    const Solution s = Solve(p);
    CHECK(s.method == SolveMethod::kUnionFindFactored);
    CHECK(s.dim == 2);  // w_i = w_{floor(i/S)} chains every index to 0
    CheckSolutionProperties(p, s, 8);
  }

  SECTION("down-then-up scaling (block average) gives the paper's blocks") {
    const Transform t = Transform::BlockAverage(in, 0, factor);
    ConstraintProblem p(out, in);
    p.AddInvariance(t);
    const Solution s = Solve(p);
    CHECK(s.method == SolveMethod::kNullspace);
    REQUIRE(s.is_tie);  // found by the tie check on the numerical basis
    CHECK(s.dim == 2 * 4);
    for (std::int64_t j = 0; j < 2; ++j) {
      for (std::int64_t i = 0; i < 8; ++i) {
        CHECK(ClassAt(s, j, i) == ClassAt(s, j, factor * (i / factor)));
        if (i % factor == 0 && i > 0)
          CHECK(ClassAt(s, j, i) != ClassAt(s, j, i - 1));
      }
    }
    CheckSolutionProperties(p, s, 9);
  }

  SECTION("translation + down scale (section 4.3)") {
    const Shape in2({3, 8});  // t (cyclic) x i (scaled)
    ConstraintProblem p(out, in2);
    p.AddInvariance(Transform::Shift(in2, 0, 1, true));
    p.AddInvariance(Transform::BlockAverage(in2, 1, factor));
    const Solution s = Solve(p);
    REQUIRE(s.is_tie);
    CHECK(s.dim == 2 * 4);  // eq. 32: constant in t, blocks of S in i
    for (std::int64_t t = 0; t < 3; ++t) {
      for (std::int64_t i = 0; i < 8; ++i) {
        CHECK(ClassAt(s, 1, in2.Flatten({t, i})) ==
              ClassAt(s, 1, in2.Flatten({0, factor * (i / factor)})));
      }
    }
    CheckSolutionProperties(p, s, 10);
    // With the literal averaging map of eq. 27 the combination is {0}.
    ConstraintProblem q(out, in2);
    q.AddInvariance(Transform::Shift(in2, 0, 1, true));
    q.AddInvariance(Transform::DownScale(in2, 1, factor, 1.0 / factor));
    CHECK(Solve(q).dim == 0);
  }
}

TEST_CASE("a generic linear invariance is not a tie pattern",
          "[symmetry][constraint]") {
  // T = I + u v^T with v^T u = 0: w = w T  <=>  (w . u) v^T = 0  <=>  w . u =
  // 0.
  const Shape in({5});
  Eigen::VectorXd u(5), v(5);
  u << 1.0, 2.0, -0.5, 0.25, 3.0;
  v << 2.0, -1.0, 0.0, 0.0, 0.0;  // v . u = 0
  const Eigen::MatrixXd t = Eigen::MatrixXd::Identity(5, 5) + u * v.transpose();
  ConstraintProblem p(Shape({3}), in);
  p.AddInvariance(Transform::FromDense(in, t, "rank-one update"));
  const Solution s = Solve(p);
  CHECK(s.method == SolveMethod::kNullspace);
  CHECK_FALSE(s.is_tie);
  CHECK(s.dim == 3 * 4);
  CHECK((s.basis.transpose() * s.basis - Eigen::MatrixXd::Identity(12, 12))
            .norm() < 1e-10);
  CheckSolutionProperties(p, s, 11);
}

TEST_CASE("TiePatternFromBasis recognises ties and rejects other subspaces",
          "[symmetry][constraint]") {
  // A tie basis hidden by a random rotation of its columns.
  Eigen::MatrixXd b = Eigen::MatrixXd::Zero(6, 2);
  b(0, 0) = b(3, 0) = b(4, 0) = 1.0 / std::sqrt(3.0);
  b(1, 1) = b(5, 1) = 1.0 / std::sqrt(2.0);
  const double a = 0.7;
  Eigen::Matrix2d rot;
  rot << std::cos(a), -std::sin(a), std::sin(a), std::cos(a);
  TiePattern pattern;
  REQUIRE(TiePatternFromBasis(b * rot, 2, 3, 1e-9, &pattern));
  CHECK(pattern.num_classes == 2);
  CHECK(pattern.class_of ==
        std::vector<std::int32_t>{0, 1, TiePattern::kZero, 0, 0, 1});
  // Unequal entries on a support: not ties.
  Eigen::MatrixXd c = Eigen::MatrixXd::Zero(6, 1);
  c(0, 0) = 0.6;
  c(1, 0) = 0.8;
  CHECK_FALSE(TiePatternFromBasis(c, 2, 3, 1e-9, &pattern));
  // Three distinct rows for a 2-dimensional space: not ties.
  Eigen::MatrixXd e(4, 2);
  e.col(0) = (Eigen::Vector4d() << 1, 1, 0, 0).finished().normalized();
  e.col(1) = (Eigen::Vector4d() << 1, -1, 1, 0).finished().normalized();
  CHECK_FALSE(TiePatternFromBasis(e, 1, 4, 1e-9, &pattern));
}

// ---- property tests on random small problems
// -------------------------------------------

namespace {

Transform RandomTransform(const Shape& shape,
                          std::mt19937_64& rng,
                          bool allow_general) {
  const std::int64_t n = shape.size();
  std::uniform_int_distribution<int> pick(0, allow_general ? 7 : 5);
  std::uniform_int_distribution<int> axis(0, shape.rank() - 1);
  switch (pick(rng)) {
    case 0:
      return Transform::Shift(
          shape, axis(rng), 1 + static_cast<int>(rng() % 2), true);
    case 1:
      return Transform::Shift(shape, axis(rng), (rng() % 2) ? 1 : -1, false);
    case 2:
      return Transform::Flip(shape, axis(rng));
    case 3: {  // a random permutation
      std::vector<std::int32_t> g(n);
      std::iota(g.begin(), g.end(), 0);
      std::shuffle(g.begin(), g.end(), rng);
      return Transform::FromGather(shape, g, "random permutation");
    }
    case 4: {  // a random partial permutation
      std::vector<std::int32_t> g(n);
      std::iota(g.begin(), g.end(), 0);
      std::shuffle(g.begin(), g.end(), rng);
      for (auto& v : g) {
        if (rng() % 4 == 0) v = -1;
      }
      return Transform::FromGather(shape, g, "random partial permutation");
    }
    case 5: {  // rotation if the first two axes are square, else a
               // transpose-free flip
      if (shape.rank() >= 2 && shape.dim(0) == shape.dim(1))
        return Transform::Rotate90(shape, 0, 1);
      return Transform::Flip(shape, 0);
    }
    case 6: {  // a sparse matrix with small integer entries
      Eigen::MatrixXd m = Eigen::MatrixXd::Zero(n, n);
      for (std::int64_t k = 0; k < 2 * n; ++k) {
        const auto r = static_cast<Eigen::Index>(rng() % n);
        const auto c = static_cast<Eigen::Index>(rng() % n);
        m(r, c) = static_cast<double>(static_cast<int>(rng() % 5) - 2);
      }
      return Transform::FromDense(shape, m, "random sparse");
    }
    default: {  // a block average along an axis of even length, else a flip
      for (int a = 0; a < shape.rank(); ++a) {
        if (shape.dim(a) % 2 == 0) return Transform::BlockAverage(shape, a, 2);
      }
      return Transform::Flip(shape, 0);
    }
  }
}

}  // namespace

TEST_CASE(
    "random problems: Pi_E is the orthogonal projector onto the exact solution",
    "[symmetry][constraint][property]") {
  std::mt19937_64 rng(20261121);
  const std::vector<std::vector<std::int64_t>> shapes = {
      {4}, {3, 3}, {2, 3}, {6}, {2, 2, 2}};
  int non_tie = 0, numerical = 0, compatible = 0, incompatible = 0;
  for (int trial = 0; trial < 60; ++trial) {
    const Shape in(shapes[rng() % shapes.size()]);
    const int kind = static_cast<int>(
        rng() % 3);  // invariance, equivariance, representation
    const Shape out = kind == 0
                          ? Shape({static_cast<std::int64_t>(1 + rng() % 3)})
                      : kind == 1 ? in
                                  : Shape(shapes[rng() % shapes.size()]);
    ConstraintProblem p(out, in);
    const int count = 1 + static_cast<int>(rng() % 2);
    const bool general = trial % 3 == 0;
    for (int c = 0; c < count; ++c) {
      if (kind == 0) {
        p.AddInvariance(RandomTransform(in, rng, general));
      } else if (kind == 1) {
        p.AddEquivariance(RandomTransform(in, rng, general));
      } else {
        p.AddRepresentation(RandomTransform(out, rng, general),
                            RandomTransform(in, rng, general));
      }
    }
    if (rng() % 2) {
      std::vector<std::uint8_t> mask(p.ambient_size());
      for (auto& m : mask) m = rng() % 5 != 0;
      p.SetSupport(Support::FromMask(out, in, mask));
    }
    INFO("trial " << trial << ": " << out.ToString() << " <- " << in.ToString()
                  << ", kind " << kind);
    const Solution s = Solve(p);
    CheckSolutionProperties(p, s, 100 + trial);
    if (!general) CHECK(s.method != SolveMethod::kNullspace);
    non_tie += !s.is_tie;
    numerical += s.method == SolveMethod::kNullspace;
    if (!p.support().IsFull()) {
      // The compatibility residual against a dense commutator of Pi_L and
      // Pi_F, F solved without the support; Lemma 3.3 when compatible.
      ConstraintProblem free = p;
      free.ClearSupport();
      const Eigen::MatrixXd pf = DenseProjector(Solve(free));
      Eigen::VectorXd l(p.ambient_size());
      for (Eigen::Index k = 0; k < l.size(); ++k)
        l(k) = p.support().Admissible(k);
      const Eigen::MatrixXd comm = l.asDiagonal() * pf - pf * l.asDiagonal();
      const CompatibilityReport rep = CheckCompatibility(p);
      CHECK(rep.residual ==
            Approx(Eigen::JacobiSVD<Eigen::MatrixXd>(comm).singularValues()(0))
                .margin(1e-9));
      CHECK(rep.dim_e == s.dim);
      if (rep.compatible) {
        CHECK((Eigen::MatrixXd(l.asDiagonal()) * pf - DenseProjector(s))
                  .cwiseAbs()
                  .maxCoeff() < 1e-9);
        ++compatible;
      } else {
        ++incompatible;
      }
    }
  }
  // The random cases reach every branch.
  CHECK(non_tie > 0);
  CHECK(numerical > non_tie);  // some numerical bases were ties after all
  CHECK(compatible > 0);
  CHECK(incompatible > 0);
}

// ---- supports and compatibility (paper 004)
// ----------------------------------------------

TEST_CASE("cross support is compatible with C4, the skew support is not",
          "[symmetry][constraint][paper004]") {
  const Shape filter({3, 3});
  const Shape out({1});
  const FiniteGroup c4 = FiniteGroup::Generate(
      InvarianceAction(out, C4Group(filter, 0, 1)), GroupKind::Cyclic(4));
  const Eigen::Index n = 9;

  const Eigen::MatrixXd pg = DenseTwirl(c4);

  for (bool cross : {true, false}) {
    const auto mask =
        StencilMask(3, cross ? CrossStencil3x3() : SkewStencil3x3());
    ConstraintProblem p(out, filter);
    p.AddGroup(c4);
    p.SetSupport(Support::FromInputMask(out, filter, mask));
    const CompatibilityReport rep = CheckCompatibility(p);
    Eigen::VectorXd l(n);
    for (Eigen::Index k = 0; k < n; ++k) l(k) = mask[k];
    const Eigen::MatrixXd pl = l.asDiagonal();
    const Eigen::MatrixXd comm = pl * pg - pg * pl;
    const double measured =
        Eigen::JacobiSVD<Eigen::MatrixXd>(comm).singularValues()(0);
    CHECK(rep.residual == Approx(measured).margin(1e-12));
    CHECK(rep.dim_fix == 3);  // centre, edge orbit, corner orbit
    const Solution s = Solve(p);
    CheckSolutionProperties(p, s, cross ? 21 : 22);
    const Eigen::MatrixXd pe = DenseProjector(s);
    if (cross) {
      CHECK(rep.compatible);
      CHECK(s.dim == 2);                     // centre and the 4 edges
      CHECK((pl * pg - pe).norm() < 1e-12);  // Lemma 3.3: Pi_E = Pi_L Pi_G
    } else {
      CHECK_FALSE(rep.compatible);
      CHECK(rep.residual ==
            Approx(0.5));  // orbit of 4 with 2 inside: sqrt(2*2)/4
      CHECK(s.dim == 1);   // only the centre survives L cap Fix(G)
      CHECK((pl * pg - pe).norm() > 0.1);  // Pi_L Pi_G is not Pi_E ...
      // ... but alternating projections converge to it (von Neumann).
      Eigen::MatrixXd pow = Eigen::MatrixXd::Identity(n, n);
      for (int t = 0; t < 200; ++t) pow = pl * pg * pow;
      CHECK((pow - pe).norm() < 1e-9);
    }
  }
}

TEST_CASE("compatibility residual of a non-tie fixed space is measured densely",
          "[symmetry][constraint][paper004]") {
  const Shape in({4});
  Eigen::VectorXd u(4), v(4);
  u << 1, 2, 3, 4;
  v << 0, 0, 4, -3;  // v . u = 0
  const Eigen::MatrixXd t2 =
      Eigen::MatrixXd::Identity(4, 4) + u * v.transpose();
  ConstraintProblem p(Shape({1}), in);
  p.AddInvariance(Transform::FromDense(in, t2, "rank one"));
  p.SetSupport(Support::FromInputMask(Shape({1}), in, {1, 1, 0, 1}));
  const CompatibilityReport rep = CheckCompatibility(p);
  CHECK_FALSE(rep.compatible);
  CHECK(rep.dim_fix == 3);
  CHECK(rep.dim_e == 2);
  // Independent: F = u^perp, Pi_F = I - u u^T / |u|^2.
  const Eigen::MatrixXd pf =
      Eigen::MatrixXd::Identity(4, 4) - u * u.transpose() / u.squaredNorm();
  const Eigen::MatrixXd pl = Eigen::Vector4d(1, 1, 0, 1).asDiagonal();
  const Eigen::MatrixXd comm = pl * pf - pf * pl;
  CHECK(rep.residual ==
        Approx(Eigen::JacobiSVD<Eigen::MatrixXd>(comm).singularValues()(0)));
  CheckSolutionProperties(p, Solve(p), 31);
}

TEST_CASE("bad problems are refused with a clear error",
          "[symmetry][constraint]") {
  const Shape a({3}), b({4});
  ConstraintProblem p(a, b);
  CHECK_THROWS_AS(p.AddInvariance(Transform::Flip(a, 0)), InvalidArgument);
  CHECK_THROWS_AS(p.AddEquivariance(Transform::Flip(b, 0)), InvalidArgument);
  CHECK_THROWS_AS(p.SetSupport(Support(b, a)), InvalidArgument);
  CHECK_THROWS_AS(Support::FromMask(a, b, std::vector<std::uint8_t>(5, 1)),
                  InvalidArgument);
  CHECK_THROWS_AS(StencilMask(3, {{2, 0}}), InvalidArgument);
  // The nullspace path refuses problems beyond its limits.
  ConstraintProblem big(Shape({1}), Shape({64}));
  big.AddInvariance(Transform::BlockAverage(Shape({64}), 0, 2));
  SolveOptions small;
  small.max_dense_unknowns = 10;
  CHECK_THROWS_AS(Solve(big, small), InvalidArgument);
  CHECK(p.constraints().empty());  // nothing was added by the failed calls
}

// ---- hand-over to the manifolds
// ----------------------------------------------------------

TEST_CASE("MakeManifold hands E to TieSubspace or LinearSubspace",
          "[symmetry][constraint]") {
  const Shape img({3, 3});
  // Ties: D4-invariant 3x3 filters for 2 outputs, with a cross support.
  ConstraintProblem ties(Shape({2}), img);
  ties.AddGroup(
      FiniteGroup::Generate(InvarianceAction(Shape({2}), D4Group(img, 0, 1)),
                            GroupKind::Dihedral(4)));
  ties.SetSupport(Support::FromInputMask(
      Shape({2}), img, StencilMask(3, CrossStencil3x3())));
  // Not ties: a generic rank-one invariance.
  Eigen::VectorXd u(9), v = Eigen::VectorXd::Zero(9);
  u << 1, 2, 3, 4, 5, 6, 7, 8, 9;
  v(0) = 2;
  v(1) = -1;  // v . u = 0
  ConstraintProblem general(Shape({2}), img);
  general.AddInvariance(Transform::FromDense(
      img, Eigen::MatrixXd::Identity(9, 9) + u * v.transpose(), "rank one"));
  for (const ConstraintProblem* p : {&ties, &general}) {
    const Solution s = Solve(*p);
    CHECK(s.is_tie == (p == &ties));
    const std::unique_ptr<Manifold<double>> m = MakeManifold<double>(s);
    CHECK(m->Dim() == s.dim);
    CHECK(m->Name() == (s.is_tie ? "tie_subspace" : "linear_subspace"));
    std::vector<double> x = RandomVector<double>(18, 5), y(18);
    s.ProjectE(x.data(), y.data());
    m->ProjectPoint(TensorView<double>(x.data(), 2, 9));
    CHECK(MaxAbsDiff(x, y) < 1e-12);
    CheckManifoldInvariants(*m, x, RandomVector<double>(18, 6), 1e-10);
  }
}

TEST_CASE("ProjectE and Expand of ties are TieSubspace's, per row or whole",
          "[symmetry][constraint]") {
  // Flip invariance (solved row-factored) and shift equivariance without wrap
  // (a whole pattern with zeros).
  const Shape in({3, 6, 2});
  ConstraintProblem flip(Shape({4}), in);
  flip.AddInvariance(Transform::Flip(in, 1));
  const Shape line({7});
  ConstraintProblem toeplitz(line, line);
  toeplitz.AddEquivariance(Transform::Shift(line, 0, 1, /*wrap=*/false));
  for (const ConstraintProblem* p : {&flip, &toeplitz}) {
    const Solution s = Solve(*p);
    REQUIRE(s.is_tie);
    CHECK(s.row_class_of.empty() == (p == &toeplitz));
    const TieSubspace<double> tie(s.ties);
    const std::int64_t n = s.ambient_size();
    const std::vector<double> w = RandomVector<double>(n, 41);
    // Out of place, in place and TieSubspace agree bit for bit.
    std::vector<double> out(std::size_t(n), -1.0), in_place = w, want = w;
    s.ProjectE(w.data(), out.data());
    s.ProjectE(in_place.data(), in_place.data());
    tie.ProjectInPlace(TensorView<double>(want.data(), s.rows, s.cols));
    CHECK(out == want);
    CHECK(in_place == want);
    const std::vector<double> theta = RandomVector<double>(s.dim, 42);
    std::vector<double> expanded(std::size_t(n), -1.0), expected(expanded);
    s.Expand(theta.data(), expanded.data());
    tie.Expand(theta.data(),
               TensorView<double>(expected.data(), s.rows, s.cols));
    CHECK(expanded == expected);
  }
  // A hand-made solution whose pattern is not valid is refused, naming the
  // entry, and leaves the output untouched.
  Solution bad;
  bad.rows = 1;
  bad.cols = 3;
  bad.dim = 1;
  bad.is_tie = true;
  bad.ties = TiePattern{1, 3, 1, {0, 0, 5}};
  const std::vector<double> w = {1.0, 2.0, 3.0};
  std::vector<double> out(3, -1.0);
  REQUIRE_THROWS_WITH(
      bad.ProjectE(w.data(), out.data()),
      Catch::Contains("(0, 2)") && Catch::Contains("class id 5"));
  CHECK(out == std::vector<double>(3, -1.0));
}
