#include "manifolds/oblique.h"

#include <Eigen/Dense>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "catch.h"
#include "manifold_checks.h"

using namespace symopt;
using namespace symopt::testing;

namespace {

template <typename T>
double Tol() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

template <typename T>
double RowNorm(const std::vector<T>& x, std::int64_t cols, std::int64_t r) {
  double s = 0;
  for (std::int64_t i = 0; i < cols; ++i) {
    s += double(x[r * cols + i]) * double(x[r * cols + i]);
  }
  return std::sqrt(s);
}

template <typename T>
bool AllFinite(const std::vector<T>& v) {
  for (T e : v) {
    if (!std::isfinite(e)) return false;
  }
  return true;
}

// Points with the edge rows of the Householder basis: +e_0, -e_0, a row with
// x_0 = 0, and random rows.
template <typename T>
std::vector<T> EdgePoint(const Oblique<T>& m, std::uint64_t seed) {
  std::vector<T> x(m.AmbientSize());
  m.RandomPoint(ViewOf(m, x), seed);
  const std::int64_t n = m.cols();
  if (m.rows() >= 3) {
    std::fill(x.begin(), x.begin() + 3 * n, T(0));
    x[0] = T(1);
    x[n] = T(-1);
    x[2 * n + (n - 1)] = T(n > 1 ? 1 : -1);
  }
  return x;
}

// A random point x and a tangent momentum buffer m at it (entries ~ scale).
template <typename T>
struct StepStart {
  std::vector<T> x, m;
};

template <typename T>
StepStart<T> RandomStart(const Oblique<T>& man,
                         std::uint64_t seed,
                         double scale) {
  StepStart<T> s;
  s.x.resize(man.AmbientSize());
  man.RandomPoint(ViewOf(man, s.x), seed);
  s.m =
      Projected(man, s.x, RandomVector<T>(man.AmbientSize(), seed + 1, scale));
  return s;
}

}  // namespace

TEMPLATE_TEST_CASE("Oblique satisfies the manifold invariants",
                   "[manifold][oblique]",
                   float,
                   double) {
  using T = TestType;
  struct Shape {
    std::int64_t rows, cols;
  };
  // cols == 1 (Dim 0), a single row, small blocks and rows longer than one
  // kernel block (256). The conv weight follows below.
  const Shape shapes[] = {{3, 1}, {1, 5}, {4, 7}, {5, 2}, {16, 784}};
  for (const Shape& shape : shapes) {
    Oblique<T> m(shape.rows, shape.cols);
    REQUIRE(m.Dim() == shape.rows * (shape.cols - 1));
    const std::int64_t n = m.AmbientSize();
    for (std::uint64_t seed = 1; seed <= 2; ++seed) {
      const std::vector<T> x = seed == 1 ? EdgePoint(m, 11) : [&] {
        std::vector<T> r(n);
        m.RandomPoint(ViewOf(m, r), seed);
        return r;
      }();
      // Random, near-zero (1e-8) and zero ambient vectors.
      for (double scale : {1.0, 1e-8, 0.0}) {
        INFO("shape " << shape.rows << "x" << shape.cols << " seed " << seed
                      << " scale " << scale);
        CheckManifoldInvariants(
            m, x, RandomVector<T>(n, 20 + seed, scale), Tol<T>());
      }
    }
  }
  auto conv = Oblique<T>::ForConv(4, 3, 3, 3);
  CHECK(conv.rows() == 4);
  CHECK(conv.cols() == 27);
  CHECK(conv.Dim() == 4 * 26);
  CHECK(conv.Name() == "oblique");
  std::vector<T> x(conv.AmbientSize());
  conv.RandomPoint(ViewOf(conv, x), 5);
  CheckManifoldInvariants(
      conv, x, RandomVector<T>(conv.AmbientSize(), 6), Tol<T>());
}

TEST_CASE("Oblique Riemannian gradient of sum_i w_i^T A_i w_i",
          "[manifold][oblique]") {
  const std::int64_t rows = 4, cols = 6;
  Oblique<double> m(rows, cols);
  std::vector<Eigen::MatrixXd> a(rows);
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::vector<double> v = RandomVector<double>(cols * cols, 100 + r);
    Eigen::MatrixXd b = Eigen::Map<const Eigen::MatrixXd>(v.data(), cols, cols);
    a[r] = b + b.transpose();
  }
  auto f = [&](const std::vector<double>& x) {
    double s = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      Eigen::Map<const Eigen::VectorXd> w(x.data() + r * cols, cols);
      s += w.dot(a[r] * w);
    }
    return s;
  };
  auto egrad = [&](const std::vector<double>& x, std::vector<double>& g) {
    for (std::int64_t r = 0; r < rows; ++r) {
      Eigen::Map<const Eigen::VectorXd> w(x.data() + r * cols, cols);
      Eigen::Map<Eigen::VectorXd>(g.data() + r * cols, cols) = 2.0 * a[r] * w;
    }
  };
  std::vector<double> x(rows * cols);
  m.RandomPoint(ViewOf(m, x), 3);
  CheckRiemannianGradient<double>(m, f, egrad, x, 17);

  // Riemannian SGD with Nesterov momentum through the fused step reaches the
  // minimiser: each row becomes a unit eigenvector of A_i's smallest
  // eigenvalue.
  StepOptions o;
  o.lr = 0.02;
  o.momentum = 0.9;
  o.nesterov = true;
  std::vector<double> g(rows * cols), mom(rows * cols, 0.0);
  for (int it = 0; it < 4000; ++it) {
    egrad(x, g);
    REQUIRE(m.Step(ViewOf(m, x), CViewOf(m, g), ViewOf(m, mom), o).ok());
  }
  for (std::int64_t r = 0; r < rows; ++r) {
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(a[r]);
    Eigen::Map<const Eigen::VectorXd> w(x.data() + r * cols, cols);
    INFO("row " << r);
    CHECK(std::abs(w.dot(a[r] * w) - eig.eigenvalues()(0)) < 1e-8);
    CHECK(std::abs(std::abs(w.dot(eig.eigenvectors().col(0))) - 1.0) < 1e-8);
  }
}

TEMPLATE_TEST_CASE("Oblique collapse is a reported event, never a NaN",
                   "[manifold][oblique]",
                   float,
                   double) {
  using T = TestType;
  // Rows of 8 entries are stepped in batches, rows of 200 by the pipeline;
  // float heavy-ball steps take the heavy-ball kernels where the CPU has
  // AVX2 (src/oblique.cpp).
  const std::int64_t rows = 5, cols = GENERATE(8, 200);
  INFO("cols " << cols);
  Oblique<T> m(rows, cols);
  std::vector<T> x(rows * cols);
  m.RandomPoint(ViewOf(m, x), 9);

  SECTION("retraction: xi = -W on rows 1 and 3, NaN on row 4") {
    std::vector<T> v = Projected(m, x, RandomVector<T>(rows * cols, 4, 0.1));
    for (std::int64_t i = 0; i < cols; ++i) {
      v[1 * cols + i] = -x[1 * cols + i];
      v[3 * cols + i] = -x[3 * cols + i];
    }
    v[4 * cols + 2] = std::numeric_limits<T>::quiet_NaN();
    std::vector<T> y = x;
    const RetractReport report = m.Retract(ViewOf(m, y), CViewOf(m, v));
    CHECK(report.collapsed_rows == 3);
    CHECK(report.first_collapsed_row == 1);
    CHECK_FALSE(report.ok());
    CHECK(AllFinite(y));
    for (std::int64_t r = 0; r < rows; ++r) {
      INFO("row " << r);
      const bool kept = r == 1 || r == 3 || r == 4;
      bool same = true;
      for (std::int64_t i = 0; i < cols; ++i) {
        same = same && y[r * cols + i] == x[r * cols + i];
      }
      CHECK(same == kept);
      CHECK(std::abs(RowNorm(y, cols, r) - 1.0) < 1e-6);
    }
  }

  SECTION("fused step: a momentum row that cancels its point") {
    // With g = 0: y = x - lr * beta * m, which is 0 on row 2 when
    // m_2 = x_2 / (lr * beta) (a non-tangent buffer, as a corrupt one would
    // be).
    StepOptions o;
    o.lr = 0.5;
    o.momentum = 0.5;
    std::vector<T> g(rows * cols, T(0));
    std::vector<T> mom = Projected(m, x, RandomVector<T>(rows * cols, 8, 0.1));
    for (std::int64_t i = 0; i < cols; ++i) {
      mom[2 * cols + i] = T(x[2 * cols + i] / (o.lr * o.momentum));
    }
    std::vector<T> x1 = x, m1 = mom;
    const RetractReport report =
        m.Step(ViewOf(m, x1), CViewOf(m, g), ViewOf(m, m1), o);
    CHECK(report.collapsed_rows == 1);
    CHECK(report.first_collapsed_row == 2);
    CHECK(AllFinite(x1));
    CHECK(AllFinite(m1));
    for (std::int64_t i = 0; i < cols; ++i) {
      CHECK(x1[2 * cols + i] == x[2 * cols + i]);
      CHECK(m1[2 * cols + i] == mom[2 * cols + i]);
    }
    // The other rows moved and stay on the manifold.
    CHECK(x1[0] != x[0]);
    for (std::int64_t r = 0; r < rows; ++r) {
      CHECK(std::abs(RowNorm(x1, cols, r) - 1.0) < 1e-6);
    }
  }

  SECTION("fused step: a NaN gradient row is kept, not written") {
    StepOptions o;
    o.lr = 0.1;
    o.momentum = 0.9;
    std::vector<T> g = RandomVector<T>(rows * cols, 12);
    g[3 * cols + 5] = std::numeric_limits<T>::quiet_NaN();
    const std::vector<T> mom =
        Projected(m, x, RandomVector<T>(rows * cols, 13, 0.1));
    std::vector<T> x1 = x, m1 = mom;
    const RetractReport report =
        m.Step(ViewOf(m, x1), CViewOf(m, g), ViewOf(m, m1), o);
    CHECK(report.collapsed_rows == 1);
    CHECK(report.first_collapsed_row == 3);
    CHECK(AllFinite(x1));
    CHECK(AllFinite(m1));
    for (std::int64_t i = 0; i < cols; ++i) {
      CHECK(x1[3 * cols + i] == x[3 * cols + i]);
      CHECK(m1[3 * cols + i] == mom[3 * cols + i]);
    }
  }

  SECTION("a candidate that nearly cancels is normalised exactly") {
    // y = x - (1 - 1e-3) x: ||y|| = 1e-3 > tol. The Gram sums would cancel;
    // the step recomputes the norm directly.
    StepOptions o;
    o.lr = 1.0;
    o.momentum = 0.5;
    std::vector<T> g(rows * cols, T(0));
    std::vector<T> mom(rows * cols, T(0));
    for (std::int64_t i = 0; i < cols; ++i) {
      mom[i] = T(x[i] * (1 - 1e-3) / o.momentum);
    }
    std::vector<T> x1 = x, m1 = mom, x2 = x, m2 = mom;
    std::vector<T> scratch(2 * rows * cols);
    CHECK(m.Step(ViewOf(m, x1), CViewOf(m, g), ViewOf(m, m1), o).ok());
    CHECK(m.StepComposed(ViewOf(m, x2),
                         CViewOf(m, g),
                         ViewOf(m, m2),
                         o,
                         TensorView<T>(scratch.data(), 2 * rows, cols))
              .ok());
    CHECK(std::abs(RowNorm(x1, cols, 0) - 1.0) < Tol<T>());
    CHECK(MaxAbsDiff(x1, x2) < 100 * Tol<T>());
    CHECK(MaxAbsDiff(m1, m2) < 100 * Tol<T>() * (1 + MaxAbs(m2)));
  }
}

TEMPLATE_TEST_CASE("Oblique fused step equals the composition",
                   "[manifold][oblique]",
                   float,
                   double) {
  using T = TestType;
  // 300 x 900 runs the OpenMP path; 3 x 9 the serial one. Rows of at most
  // 160 entries are stepped in batches of 8 rows (src/oblique.cpp,
  // StepShortRows): 21 x 75 is two batches and a ragged one, 3000 x 100 the
  // same on each OpenMP thread.
  for (auto shape : {std::pair<std::int64_t, std::int64_t>{300, 900},
                     {3, 9},
                     {21, 75},
                     {3000, 100}}) {
    Oblique<T> man(shape.first, shape.second);
    const std::int64_t n = man.AmbientSize();
    const StepStart<T> start = RandomStart(man, 31, 0.3);
    const std::vector<T>& x0 = start.x;
    const std::vector<T>& m0 = start.m;
    std::vector<std::vector<T>> grads;
    for (int it = 0; it < 4; ++it) grads.push_back(RandomVector<T>(n, 40 + it));
    struct Variant {
      double lr, momentum, wd;
      bool nesterov;
    };
    for (const Variant& var : {Variant{0.3, 0.0, 0.0, false},
                               Variant{0.1, 0.9, 0.0, false},
                               Variant{0.1, 0.9, 0.0, true},
                               Variant{0.1, 0.9, 0.3, false},
                               Variant{0.1, 0.0, 0.2, false},
                               Variant{0.05, 0.8, 0.5, true}}) {
      StepOptions o;
      o.lr = var.lr;
      o.momentum = var.momentum;
      o.nesterov = var.nesterov;
      o.weight_decay = var.wd;
      INFO(man.Describe() << " lr " << o.lr << " momentum " << o.momentum
                          << " nesterov " << o.nesterov << " wd "
                          << o.weight_decay);
      std::vector<T> x1 = x0, x2 = x0, m1 = m0, m2 = m0;
      std::vector<T> scratch(2 * n);
      for (const std::vector<T>& g : grads) {  // a new gradient every step
        CHECK(man.Step(ViewOf(man, x1),
                       CViewOf(man, g),
                       o.momentum > 0 ? ViewOf(man, m1) : TensorView<T>(),
                       o)
                  .ok());
        CHECK(man.StepComposed(
                     ViewOf(man, x2),
                     CViewOf(man, g),
                     ViewOf(man, m2),
                     o,
                     TensorView<T>(scratch.data(), 2 * man.rows(), man.cols()))
                  .ok());
      }
      CHECK(MaxAbsDiff(x1, x2) <= Tol<T>());
      if (o.momentum > 0) {
        CHECK(MaxAbsDiff(m1, m2) <= Tol<T>() * (1 + MaxAbs(m2)));
      } else {
        CHECK(m1 == m0);  // an unused buffer is not touched
      }
      CHECK(man.DistanceToManifold(CViewOf(man, x1)) <= Tol<T>());
    }
  }
}

namespace symopt {
namespace internal {
int SetObliqueSimdLevel(int level);  // src/oblique.cpp, a test hook
// Asks for the highest level; the hook clamps it to the best the CPU has
// (0 baseline, 1 AVX2+FMA).
constexpr int kBestObliqueSimdLevel = std::numeric_limits<int>::max();
}  // namespace internal
}  // namespace symopt

TEMPLATE_TEST_CASE("Oblique kernels for each instruction set agree",
                   "[manifold][oblique]",
                   float,
                   double) {
  using T = TestType;
  // Rows of several kernel blocks plus a ragged tail, short and long (past
  // 4096 entries, the longest rows of the benchmarks' second shape), and
  // rows short enough to be stepped in batches of 8 (at most 160 entries)
  // or just too long for that (161): 19 rows are two batches and a ragged
  // one. Float heavy-ball steps take the heavy-ball kernels at level 1
  // (batched for rows of at most 160 entries).
  // Entries of size 1 make steps large next to the rows (lr ||g|| > 1),
  // which the kernels write in double (ApplyStepExact); entries of size
  // 1 / sqrt(cols) make ordinary steps, written in the cheap increment form.
  for (const std::int64_t cols : {75, 160, 161, 1000, 4200}) {
    for (const bool ordinary : {false, true}) {
      INFO("cols " << cols
                   << (ordinary ? ", ordinary steps" : ", large steps"));
      Oblique<T> man(19, cols);
      const std::int64_t n = man.AmbientSize();
      const double scale = ordinary ? 1 / std::sqrt(double(cols)) : 1.0;
      const StepStart<T> start = RandomStart(man, 81, 0.3 * scale);
      const std::vector<T>& x0 = start.x;
      const std::vector<T>& m0 = start.m;
      const std::vector<T> g = RandomVector<T>(n, 83, scale);
      const int best =
          internal::SetObliqueSimdLevel(internal::kBestObliqueSimdLevel);
      INFO("best kernel on this CPU: " << best);
      for (double momentum : {0.0, 0.9}) {
        for (bool nesterov : {false, true}) {
          if (nesterov && momentum == 0) continue;
          StepOptions o;
          o.lr = 0.1;
          o.momentum = momentum;
          o.nesterov = nesterov;
          REQUIRE(internal::SetObliqueSimdLevel(0) == 0);
          std::vector<T> x_ref = x0, m_ref = m0;
          man.Step(ViewOf(man, x_ref), CViewOf(man, g), ViewOf(man, m_ref), o);
          CHECK(MaxAbsDiff(x_ref, x0) > 1e-3);
          for (int level = 1; level <= best; ++level) {
            INFO("kernel " << level << " momentum " << momentum << " nesterov "
                           << nesterov);
            REQUIRE(internal::SetObliqueSimdLevel(level) == level);
            std::vector<T> x1 = x0, m1 = m0;
            man.Step(ViewOf(man, x1), CViewOf(man, g), ViewOf(man, m1), o);
            CHECK(MaxAbsDiff(x1, x_ref) <= Tol<T>());
            CHECK(MaxAbsDiff(m1, m_ref) <= Tol<T>() * (1 + MaxAbs(m_ref)));
            // Each kernel normalises what it writes: a coefficient that does
            // not match the sums it was solved from shows here first.
            double worst = 0;
            for (std::int64_t r = 0; r < man.rows(); ++r) {
              worst = std::max(worst, std::abs(RowNorm(x1, cols, r) - 1.0));
            }
            CHECK(worst <= (std::is_same_v<T, float> ? 1e-6 : 1e-14));
          }
        }
      }
    }
  }
  internal::SetObliqueSimdLevel(internal::kBestObliqueSimdLevel);
}

TEST_CASE("Oblique float kernels agree on adversarial magnitudes",
          "[manifold][oblique]") {
  // The AVX2 kernel accumulates the Gram sums in float over short blocks
  // (src/oblique.cpp, GramLoop) and falls back to double where that is not
  // accurate enough for a row. Rows here defeat float accumulation: products
  // that overflow float, a step whose Gram form cancels (m ~ -r / beta with
  // lr ||g|| >> 1), products in float's subnormal range, and a unit row
  // whose entries span 30 orders of magnitude. The kernel must agree with the
  // all-double baseline kernel on every row.
  const std::int64_t rows = 4, cols = 1000, n = rows * cols;
  Oblique<float> man(rows, cols, 0.0f);  // tolerance 0: tiny rows normalise
  std::vector<float> x0(n), m0(n, 0.0f), g(n);
  man.RandomPoint(ViewOf(man, x0), 91);
  const std::vector<float> noise = RandomVector<float>(n, 92);
  const double beta = 0.9;
  // Row 0: gradient entries ~1e20, whose squares overflow float.
  for (std::int64_t i = 0; i < cols; ++i) g[i] = 1e20f * noise[i];
  // Row 1: tangent gradient t of norm ~3e4 and momentum -t / beta (1 - 1e-3):
  // the step direction nearly cancels.
  {
    const std::int64_t o = cols;
    double xt = 0;
    for (std::int64_t i = 0; i < cols; ++i)
      xt += double(x0[o + i]) * 1e3 * noise[o + i];
    for (std::int64_t i = 0; i < cols; ++i) {
      const double t = 1e3 * noise[o + i] - xt * x0[o + i];
      g[o + i] = float(t);
      m0[o + i] = float(-t / beta * (1 - 1e-3));
    }
  }
  // Row 2: x and g of size ~1e-25 (products below float's normal range).
  for (std::int64_t i = 2 * cols; i < 3 * cols; ++i) {
    x0[i] *= 1e-25f;
    g[i] = 1e-25f * noise[i];
  }
  // Row 3 (unit): 64 entries ~0.1 and the rest ~1e-31 (their squares
  // underflow float).
  {
    double norm2 = 0;
    for (std::int64_t i = 3 * cols; i < 4 * cols; ++i) {
      x0[i] = (i < 3 * cols + 64 ? 1.0f : 1e-30f) * noise[i];
      norm2 += double(x0[i]) * double(x0[i]);
      g[i] = noise[(i * 7) % n];
    }
    for (std::int64_t i = 3 * cols; i < 4 * cols; ++i) {
      x0[i] = float(x0[i] / std::sqrt(norm2));
    }
  }
  // The largest difference in row r relative to 1 + the row's largest entry
  // of b and of the inputs g, m0 (the transported momentum is a difference
  // of terms that large, so even the reference is only that accurate).
  auto row_diff = [&](const std::vector<float>& a,
                      const std::vector<float>& b,
                      std::int64_t r) {
    double d = 0, scale = 0;
    for (std::int64_t i = r * cols; i < (r + 1) * cols; ++i) {
      d = std::max(d, std::abs(double(a[i]) - double(b[i])));
      scale = std::max({scale,
                        std::abs(double(b[i])),
                        std::abs(double(g[i])),
                        std::abs(double(m0[i]))});
    }
    return d / (1 + scale);
  };
  const int best =
      internal::SetObliqueSimdLevel(internal::kBestObliqueSimdLevel);
  for (bool nesterov : {false, true}) {
    StepOptions o;
    o.lr = 0.1;
    o.momentum = beta;
    o.nesterov = nesterov;
    REQUIRE(internal::SetObliqueSimdLevel(0) == 0);
    std::vector<float> x_ref = x0, m_ref = m0;
    const RetractReport ref =
        man.Step(ViewOf(man, x_ref), CViewOf(man, g), ViewOf(man, m_ref), o);
    CHECK(ref.ok());
    for (std::int64_t r = 0; r < rows; ++r) {
      CHECK(std::abs(RowNorm(x_ref, cols, r) - 1.0) <= 1e-6);
    }
    for (int level = 1; level <= best; ++level) {
      REQUIRE(internal::SetObliqueSimdLevel(level) == level);
      std::vector<float> x1 = x0, m1 = m0;
      const RetractReport rep =
          man.Step(ViewOf(man, x1), CViewOf(man, g), ViewOf(man, m1), o);
      CHECK(rep.ok());
      CHECK(AllFinite(x1));
      CHECK(AllFinite(m1));
      for (std::int64_t r = 0; r < rows; ++r) {
        INFO("kernel " << level << " nesterov " << nesterov << " row " << r);
        CHECK(std::abs(RowNorm(x1, cols, r) - 1.0) <= 1e-6);
        CHECK(row_diff(x1, x_ref, r) <= Tol<float>());
        CHECK(row_diff(m1, m_ref, r) <= Tol<float>());
      }
    }
  }
  internal::SetObliqueSimdLevel(internal::kBestObliqueSimdLevel);
}

TEMPLATE_TEST_CASE("Oblique weight decay has no effect",
                   "[manifold][oblique]",
                   float,
                   double) {
  using T = TestType;
  Oblique<T> man(6, 50);
  const std::int64_t n = man.AmbientSize();
  const StepStart<T> start = RandomStart(man, 61, 1.0);
  const std::vector<T>& x0 = start.x;
  const std::vector<T>& m0 = start.m;
  std::vector<T> x1 = x0, x2 = x0, m1 = m0, m2 = m0;
  StepOptions plain;
  plain.lr = 0.1;
  plain.momentum = 0.9;
  StepOptions decayed = plain;
  decayed.weight_decay = 0.5;
  for (int it = 0; it < 20; ++it) {
    const std::vector<T> g = RandomVector<T>(n, 70 + it);
    man.Step(ViewOf(man, x1), CViewOf(man, g), ViewOf(man, m1), plain);
    man.Step(ViewOf(man, x2), CViewOf(man, g), ViewOf(man, m2), decayed);
  }
  // x moved (so the comparison means something) but decay changed nothing.
  CHECK(MaxAbsDiff(x1, x0) > 0.1);
  CHECK(MaxAbsDiff(x1, x2) <= Tol<T>());
  CHECK(MaxAbsDiff(m1, m2) <= Tol<T>() * (1 + MaxAbs(m1)));
}

TEST_CASE("Oblique float rows stay unit-norm over 100,000 momentum steps",
          "[manifold][oblique]") {
  // 64: rows stepped in batches; 200: by the pipeline (the heavy-ball
  // kernels where the CPU has AVX2).
  const std::int64_t rows = 8, cols = GENERATE(64, 200), n = rows * cols;
  INFO("cols " << cols);
  Oblique<float> man(rows, cols);
  std::vector<float> x(n), mom(n, 0.0f), g(n);
  man.RandomPoint(ViewOf(man, x), 123);
  const std::vector<float> target = RandomVector<float>(n, 124);
  StepOptions o;
  o.lr = 0.01;
  o.momentum = 0.9;
  std::uint32_t state = 0x12345678u;
  double worst = 0;
  std::int64_t collapsed = 0;
  for (int it = 0; it < 100000; ++it) {
    // Gradient of 0.5 ||x - target||^2 plus deterministic noise in [-1, 1).
    for (std::int64_t i = 0; i < n; ++i) {
      state = state * 1664525u + 1013904223u;
      g[i] = (x[i] - target[i]) + (float(state >> 8) * 0x1p-23f - 1.0f);
    }
    collapsed += man.Step(ViewOf(man, x), CViewOf(man, g), ViewOf(man, mom), o)
                     .collapsed_rows;
    if (it % 1000 == 999) {
      for (std::int64_t r = 0; r < rows; ++r) {
        worst = std::max(worst, std::abs(RowNorm(x, cols, r) - 1.0));
      }
    }
  }
  INFO("worst |row norm - 1| seen: " << worst);
  CHECK(collapsed == 0);
  CHECK(AllFinite(x));
  CHECK(AllFinite(mom));
  for (std::int64_t r = 0; r < rows; ++r) {
    INFO("row " << r);
    CHECK(std::abs(RowNorm(x, cols, r) - 1.0) <= 1e-6);
  }
  CHECK(worst <= 1e-6);
  // The buffer is still tangent.
  const std::vector<float> pm = Projected(man, x, mom);
  CHECK(MaxAbsDiff(pm, mom) <= 1e-5 * (1 + MaxAbs(mom)));
}

TEST_CASE("Oblique float rows of 9216 entries stay unit-norm to 1e-7",
          "[manifold][oblique]") {
  // The longest rows of the benchmarks (a 1024 x 3 x 3 conv filter): the
  // sums are accumulated in double, so length does not erode the norm.
  const std::int64_t rows = 4, cols = 9216, n = rows * cols;
  Oblique<float> man(rows, cols);
  std::vector<float> x(n), mom(n, 0.0f);
  man.RandomPoint(ViewOf(man, x), 7);
  StepOptions o;
  o.lr = 0.05;
  o.momentum = 0.9;
  o.nesterov = true;
  double worst = 0;
  for (int it = 0; it < 200; ++it) {
    const std::vector<float> g = RandomVector<float>(n, 1000 + it % 7);
    REQUIRE(
        man.Step(ViewOf(man, x), CViewOf(man, g), ViewOf(man, mom), o).ok());
    for (std::int64_t r = 0; r < rows; ++r) {
      worst = std::max(worst, std::abs(RowNorm(x, cols, r) - 1.0));
    }
  }
  INFO("worst |row norm - 1|: " << worst);
  CHECK(worst <= 1e-7);
}

TEST_CASE("ObliqueOps stages compose over strided partial sums",
          "[manifold][oblique]") {
  // What a CUDA block does: each of kThreads "threads" accumulates its own
  // stride of the row, the caller adds the partial sums, then every thread
  // applies the update to its own stride. It must equal the CPU step.
  const std::int64_t rows = 3, cols = 37, kThreads = 4;
  Oblique<double> man(rows, cols);
  const std::int64_t n = man.AmbientSize();
  std::vector<double> x(n);
  man.RandomPoint(ViewOf(man, x), 5);
  const std::vector<double> g = RandomVector<double>(n, 6);
  const std::vector<double> m0 = Projected(man, x, RandomVector<double>(n, 7));
  StepOptions o;
  o.lr = 0.1;
  o.momentum = 0.7;
  o.nesterov = true;
  StepOptions p;
  p.lr = o.lr;
  p.momentum = o.momentum;
  p.nesterov = o.nesterov;
  std::vector<double> x1 = x, m1 = m0, x2 = x, m2 = m0;
  for (std::int64_t r = 0; r < rows; ++r) {
    double* xr = x1.data() + r * cols;
    const double* gr = g.data() + r * cols;
    double* mr = m1.data() + r * cols;
    ObliqueGram s;
    for (std::int64_t t = 0; t < kThreads; ++t) {
      s.Add(ObliqueOps::AccumulateGram(xr, gr, mr, t, cols, kThreads));
    }
    const ObliqueCandidate c = ObliqueOps::StepCandidate(s.xx, s.xg, p);
    double yy = 0, ymp = 0;
    for (std::int64_t t = 0; t < kThreads; ++t) {
      double a, b;
      ObliqueOps::AccumulateDirect(xr, gr, mr, c, t, cols, kThreads, &a, &b);
      yy += a;
      ymp += b;
    }
    CHECK(std::abs(yy - ObliqueOps::GramInner(s, c.y, c.y)) < 1e-12);
    CHECK(std::abs(ymp - ObliqueOps::GramInner(s, c.y, c.mp)) < 1e-12);
    const ObliqueRowUpdate u = ObliqueOps::StepUpdate(c, yy, ymp, 1e-8);
    REQUIRE_FALSE(u.collapsed);
    for (std::int64_t t = 0; t < kThreads; ++t) {
      ObliqueOps::ApplyStep(xr, gr, mr, u, t, cols, kThreads);
    }
  }
  man.Step(ViewOf(man, x2), CViewOf(man, g), ViewOf(man, m2), o);
  CHECK(MaxAbsDiff(x1, x2) < 1e-13);
  CHECK(MaxAbsDiff(m1, m2) < 1e-13);
}

TEST_CASE("Oblique point repair and distance", "[manifold][oblique]") {
  Oblique<double> man(3, 4);
  std::vector<double> x = {3,
                           0,
                           4,
                           0,  //
                           0,
                           0,
                           0,
                           0,  //
                           1e-300,
                           -1e-300,
                           0,
                           0};
  // Row norms 5, 0, ~1.4e-300: distance sqrt(16 + 1 + 1).
  CHECK(std::abs(man.DistanceToManifold(CViewOf(man, x)) - std::sqrt(18.0)) <
        1e-12);
  man.ProjectPoint(ViewOf(man, x));
  const std::vector<double> expected = {0.6,
                                        0,
                                        0.8,
                                        0,  //
                                        1,
                                        0,
                                        0,
                                        0,  // the zero row is e_0
                                        std::sqrt(0.5),
                                        -std::sqrt(0.5),
                                        0,
                                        0};
  CHECK(MaxAbsDiff(x, expected) < 1e-15);
  CHECK(man.DistanceToManifold(CViewOf(man, x)) < 1e-15);
}

TEST_CASE("Oblique rejects bad input and leaves state untouched",
          "[manifold][oblique][errors]") {
  REQUIRE_THROWS_AS(Oblique<float>(0, 3), InvalidArgument);
  REQUIRE_THROWS_AS(Oblique<float>(3, 0), InvalidArgument);
  REQUIRE_THROWS_AS(Oblique<float>(3, 3, -1.0f), InvalidArgument);
  REQUIRE_THROWS_AS(
      Oblique<float>(3, 3, std::numeric_limits<float>::infinity()),
      InvalidArgument);
  REQUIRE_THROWS_AS(Oblique<float>::ForConv(4, 0, 3, 3), InvalidArgument);

  Oblique<float> man(3, 4);
  std::vector<float> x(12), g(12), mom(12, 0.0f), small(8);
  man.RandomPoint(ViewOf(man, x), 1);
  const std::vector<float> x_before = x;
  StepOptions o;
  o.momentum = 0.9;
  // Gradient and momentum of the wrong shape.
  REQUIRE_THROWS_AS(man.Step(ViewOf(man, x),
                             TensorView<const float>(small.data(), 2, 4),
                             ViewOf(man, mom),
                             o),
                    InvalidArgument);
  REQUIRE_THROWS_AS(man.Step(ViewOf(man, x),
                             CViewOf(man, g),
                             TensorView<float>(mom.data(), 4, 3),
                             o),
                    InvalidArgument);
  REQUIRE_THROWS_AS(man.Step(ViewOf(man, x), CViewOf(man, g), {}, o),
                    InvalidArgument);
  REQUIRE_THROWS_AS(
      man.Project(CViewOf(man, x), TensorView<float>(small.data(), 3, 3)),
      InvalidArgument);
  REQUIRE_THROWS_AS(
      man.Retract(TensorView<float>(x.data(), 4, 3), CViewOf(man, g)),
      InvalidArgument);
  CHECK(x == x_before);

  // InverseRetract of an antipodal row names it and writes nothing.
  std::vector<float> y = x, v(12, 7.0f);
  for (int i = 0; i < 4; ++i) y[8 + i] = -y[8 + i];
  try {
    man.InverseRetract(CViewOf(man, x), CViewOf(man, y), ViewOf(man, v));
    FAIL("InverseRetract accepted an antipodal row");
  } catch (const InvalidArgument& e) {
    CHECK_THAT(e.what(), Catch::Contains("row 2"));
  }
  CHECK(v == std::vector<float>(12, 7.0f));

  // ProjectPoint of a non-finite row names it and changes nothing.
  std::vector<float> bad = {1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4};
  bad[5] = std::numeric_limits<float>::infinity();
  const std::vector<float> bad_before = bad;
  try {
    man.ProjectPoint(ViewOf(man, bad));
    FAIL("ProjectPoint accepted an infinite entry");
  } catch (const InvalidArgument& e) {
    CHECK_THAT(e.what(), Catch::Contains("row 1"));
  }
  CHECK(bad == bad_before);
}
