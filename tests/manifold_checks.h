// Reusable numerical checks for every Manifold<T> (STYLE T2, T4).
//
//   CheckManifoldInvariants(m, x, v, tol)
//     x on M; R_x(0) = x; R_x(P_x v) on M; P_x idempotent, symmetric and
//     orthogonal; EgradToRgrad lands in T_x M; T_{x->y} lands in T_y M;
//     Inner symmetric and positive; InverseRetract inverts Retract; the
//     tangent basis is orthonormal (in the metric Inner), spans T_x M and has
//     Dim() columns; the fused Step equals StepComposed (plain, momentum,
//     Nesterov, decay).
//
//   CheckRiemannianGradient(m, f, egrad, x, seed)
//     the Riemannian gradient of f agrees with central differences of
//     f(R_x(t xi)) along random tangents, and the Taylor remainder
//     |f(R_x(t xi)) - f(x) - t <grad, xi>| decays with slope 2 in log-log.
//
// x and v are host views; everything is compared in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "catch.h"
#include "manifolds/manifold.h"

namespace symopt {
namespace testing {

template <typename T>
std::vector<T> RandomVector(std::int64_t n,
                            std::uint64_t seed,
                            double scale = 1.0) {
  std::mt19937_64 rng(seed);
  // scale * N(0, 1): a normal_distribution needs a stddev > 0, and the
  // tests ask for zero vectors too (scale 0).
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<T> v(n);
  for (auto& e : v) e = T(scale * normal(rng));
  return v;
}

template <typename T>
double MaxAbsDiff(const std::vector<T>& a, const std::vector<T>& b) {
  double d = 0.0;
  for (size_t i = 0; i < a.size(); ++i)
    d = std::max(d, std::abs(double(a[i]) - double(b[i])));
  return d;
}

template <typename T>
double MaxAbs(const std::vector<T>& a) {
  double d = 0.0;
  for (auto e : a) d = std::max(d, std::abs(double(e)));
  return d;
}

template <typename T>
double FrobeniusDot(const std::vector<T>& a, const std::vector<T>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * double(b[i]);
  return s;
}

template <typename T>
TensorView<T> ViewOf(const Manifold<T>& m, std::vector<T>& v) {
  return TensorView<T>(v.data(), m.rows(), m.cols());
}
template <typename T>
TensorView<const T> CViewOf(const Manifold<T>& m, const std::vector<T>& v) {
  return TensorView<const T>(v.data(), m.rows(), m.cols());
}

// P_x(u) as a new vector.
template <typename T>
std::vector<T> Projected(const Manifold<T>& m,
                         const std::vector<T>& x,
                         std::vector<T> u) {
  m.Project(CViewOf(m, x), ViewOf(m, u));
  return u;
}

template <typename T>
void CheckManifoldInvariants(const Manifold<T>& m,
                             const std::vector<T>& x,
                             const std::vector<T>& v_ambient,
                             double tol) {
  INFO(m.Describe());
  const std::int64_t n = m.AmbientSize();
  REQUIRE(std::int64_t(x.size()) == n);
  REQUIRE(std::int64_t(v_ambient.size()) == n);
  const auto cx = CViewOf(m, x);

  // x is on the manifold.
  CHECK(m.DistanceToManifold(cx) <= tol);

  // Retract(x, 0) = x.
  {
    std::vector<T> y = x, zero(n, T(0));
    m.Retract(ViewOf(m, y), CViewOf(m, zero));
    CHECK(MaxAbsDiff(y, x) <= tol);
  }

  // Projection: idempotent, orthogonal (u - Pu _|_ Pw for all w), symmetric.
  const std::vector<T> u = Projected(m, x, v_ambient);
  {
    const std::vector<T> uu = Projected(m, x, u);
    CHECK(MaxAbsDiff(uu, u) <= tol * (1.0 + MaxAbs(u)));
    const std::vector<T> w = RandomVector<T>(n, 1234);
    const std::vector<T> pw = Projected(m, x, w);
    std::vector<T> residual(n);
    for (std::int64_t i = 0; i < n; ++i) residual[i] = v_ambient[i] - u[i];
    const double scale =
        std::sqrt(FrobeniusDot(v_ambient, v_ambient) * FrobeniusDot(w, w)) +
        1.0;
    CHECK(std::abs(FrobeniusDot(residual, pw)) <= tol * scale);
    CHECK(std::abs(FrobeniusDot(pw, v_ambient) - FrobeniusDot(u, w)) <=
          tol * scale);
  }

  // EgradToRgrad lands in the tangent space.
  {
    std::vector<T> g = v_ambient;
    m.EgradToRgrad(cx, ViewOf(m, g));
    const std::vector<T> pg = Projected(m, x, g);
    CHECK(MaxAbsDiff(pg, g) <= tol * (1.0 + MaxAbs(g)));
  }

  // Inner: symmetric, positive on tangent vectors.
  const std::vector<T> u2 = Projected(m, x, RandomVector<T>(n, 99));
  {
    const double a = m.Inner(cx, CViewOf(m, u), CViewOf(m, u2));
    const double b = m.Inner(cx, CViewOf(m, u2), CViewOf(m, u));
    CHECK(std::abs(a - b) <= tol * (1.0 + std::abs(a)));
    CHECK(m.Inner(cx, CViewOf(m, u), CViewOf(m, u)) >= -tol);
  }

  // Retraction stays on the manifold; transport lands in the new tangent
  // space; InverseRetract inverts Retract.
  {
    std::vector<T> small = u;
    const double s = 0.1 / (1.0 + std::sqrt(FrobeniusDot(u, u)));
    for (auto& e : small) e = T(e * s);
    std::vector<T> y = x;
    const RetractReport report = m.Retract(ViewOf(m, y), CViewOf(m, small));
    CHECK(report.ok());
    CHECK(m.DistanceToManifold(CViewOf(m, y)) <= tol);

    std::vector<T> moved = u2;
    m.Transport(cx, CViewOf(m, y), ViewOf(m, moved));
    const std::vector<T> pm = Projected(m, y, moved);
    CHECK(MaxAbsDiff(pm, moved) <= tol * (1.0 + MaxAbs(moved)));

    std::vector<T> back(n);
    m.InverseRetract(cx, CViewOf(m, y), ViewOf(m, back));
    CHECK(MaxAbsDiff(back, small) <= 10 * tol * (1.0 + MaxAbs(small)));
    std::vector<T> y2 = x;
    m.Retract(ViewOf(m, y2), CViewOf(m, back));
    CHECK(MaxAbsDiff(y2, y) <= 10 * tol);
  }

  // Tangent basis: B^T B = I (sampled columns), B B^T u = P u, B c tangent.
  {
    const std::int64_t dim = m.Dim();
    REQUIRE(dim >= 0);
    REQUIRE(dim <= n);
    std::vector<T> c(dim), bc(n), c2(dim);
    const std::int64_t samples = std::min<std::int64_t>(dim, 16);
    for (std::int64_t k = 0; k < samples; ++k) {
      const std::int64_t j = (k * 7919) % dim;
      std::fill(c.begin(), c.end(), T(0));
      c[j] = T(1);
      m.TangentBasisMultiply(cx, c.data(), ViewOf(m, bc));
      // Orthonormal in the manifold's own metric (Frobenius for most).
      CHECK(std::abs(m.Inner(cx, CViewOf(m, bc), CViewOf(m, bc)) - 1.0) <= tol);
      m.TangentBasisTransposeMultiply(cx, CViewOf(m, bc), c2.data());
      CHECK(MaxAbsDiff(c2, c) <= tol);
      const std::vector<T> pbc = Projected(m, x, bc);
      CHECK(MaxAbsDiff(pbc, bc) <= tol);
    }
    m.TangentBasisTransposeMultiply(cx, CViewOf(m, v_ambient), c.data());
    m.TangentBasisMultiply(cx, c.data(), ViewOf(m, bc));
    CHECK(MaxAbsDiff(bc, u) <= tol * (1.0 + MaxAbs(u)));
  }

  // The fused step equals the composition, for every variant.
  {
    struct Variant {
      double lr, momentum, wd;
      bool nesterov;
    };
    const Variant variants[] = {{0.1, 0.0, 0.0, false},
                                {0.05, 0.9, 0.0, false},
                                {0.05, 0.9, 0.01, true},
                                {0.2, 0.5, 0.1, false}};
    const std::vector<T> g = RandomVector<T>(n, 777);
    for (const Variant& var : variants) {
      StepOptions o;
      o.lr = var.lr;
      o.momentum = var.momentum;
      o.weight_decay = var.wd;
      o.nesterov = var.nesterov;
      std::vector<T> x1 = x, x2 = x;
      std::vector<T> m1 = u2, m2 = u2;
      std::vector<T> scratch(2 * n);
      for (int it = 0; it < 3; ++it) {
        m.Step(ViewOf(m, x1), CViewOf(m, g), ViewOf(m, m1), o);
        m.StepComposed(ViewOf(m, x2),
                       CViewOf(m, g),
                       ViewOf(m, m2),
                       o,
                       TensorView<T>(scratch.data(), 2 * m.rows(), m.cols()));
      }
      INFO("lr " << o.lr << " momentum " << o.momentum << " nesterov "
                 << o.nesterov << " wd " << o.weight_decay);
      CHECK(MaxAbsDiff(x1, x2) <= tol);
      CHECK(MaxAbsDiff(m1, m2) <= tol * (1.0 + MaxAbs(m2)));
      CHECK(m.DistanceToManifold(CViewOf(m, x1)) <= tol);
      if (o.momentum > 0) {
        const std::vector<T> pm1 = Projected(m, x1, m1);
        CHECK(MaxAbsDiff(pm1, m1) <= tol * (1.0 + MaxAbs(m1)));
      } else {
        CHECK(m1 == u2);  // without momentum the buffer is not touched
      }
    }
  }
}

// f: value at a point; egrad: Euclidean gradient at a point (written to g).
template <typename T>
void CheckRiemannianGradient(
    const Manifold<T>& m,
    const std::function<double(const std::vector<T>&)>& f,
    const std::function<void(const std::vector<T>&, std::vector<T>&)>& egrad,
    const std::vector<T>& x,
    std::uint64_t seed) {
  INFO(m.Describe());
  const std::int64_t n = m.AmbientSize();
  std::vector<T> g(n);
  egrad(x, g);
  m.EgradToRgrad(CViewOf(m, x), ViewOf(m, g));
  for (int trial = 0; trial < 3; ++trial) {
    std::vector<T> xi = Projected(m, x, RandomVector<T>(n, seed + trial));
    const double norm =
        std::sqrt(m.Inner(CViewOf(m, x), CViewOf(m, xi), CViewOf(m, xi)));
    REQUIRE(norm > 0);
    for (auto& e : xi) e = T(e / norm);
    const double slope = m.Inner(CViewOf(m, x), CViewOf(m, g), CViewOf(m, xi));
    auto f_along = [&](double t) {
      std::vector<T> y = x, step = xi;
      for (auto& e : step) e = T(e * t);
      m.Retract(ViewOf(m, y), CViewOf(m, step));
      return f(y);
    };
    // Central differences.
    const double h = 1e-5;
    const double fd = (f_along(h) - f_along(-h)) / (2 * h);
    CHECK(std::abs(fd - slope) <= 1e-5 * (1.0 + std::abs(slope)));
    // Taylor remainder slope 2.
    const double f0 = f(x);
    std::vector<double> log_t, log_e;
    // Halving is exact in binary, so the loop always runs 7 times.
    // NOLINTNEXTLINE(clang-analyzer-security.FloatLoopCounter)
    for (double t = 1e-1; t >= 1e-3; t /= 2) {
      const double e = std::abs(f_along(t) - f0 - t * slope);
      if (e < 1e-13) continue;  // exact to rounding: nothing to fit
      log_t.push_back(std::log(t));
      log_e.push_back(std::log(e));
    }
    if (log_t.size() >= 3) {
      double mt = 0, me = 0;
      for (size_t i = 0; i < log_t.size(); ++i) mt += log_t[i], me += log_e[i];
      mt /= log_t.size();
      me /= log_t.size();
      double num = 0, den = 0;
      for (size_t i = 0; i < log_t.size(); ++i) {
        num += (log_t[i] - mt) * (log_e[i] - me);
        den += (log_t[i] - mt) * (log_t[i] - mt);
      }
      INFO("Taylor remainder slope " << num / den);
      CHECK(num / den >= 1.8);
    }
  }
}

}  // namespace testing
}  // namespace symopt
