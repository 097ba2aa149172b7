// GPU parity of TiedOblique (STYLE T5, T7): ProjectPoint, Project,
// EgradToRgrad, Retract, Transport and the fused Step on Device::kCuda views,
// through the public API (so the dispatch point is exercised), against the
// CPU on fresh random inputs with fixed seeds.
//
// Tolerance: both sides run TiedObliqueOps (src/backend/tied_oblique_ops.h)
// with one thread summing a row in the CPU's order and FMA contraction off
// (-ffp-contract=off, nvcc --fmad=false), so the results are expected to be
// the CPU's bits; the tests allow a symmetric relative error of 1e-6 (float)
// and 1e-13 (double) at the data's scale (floor = RMS of the reference, see
// tests/gpu_checks.h) and require tied entries to be bitwise equal and
// zeroed entries 0 on the GPU whatever the CPU does.
//
// Poisoning: device buffers sit between guard zones of 0xFF bytes (NaN) that
// must survive every operation; the inputs hold random values at the zeroed
// entries (off E), so an entry the kernels fail to write is a mismatch; host
// buffers receiving results are NaN first.
//
// Exits 77 (skipped) without a device: tests/gpu_main.cpp.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "catch.h"
#include "gpu_checks.h"
#include "manifold_checks.h"
#include "manifolds/device.h"
#include "manifolds/tied_oblique.h"
#include "optim/sgd.h"
#include "tie_patterns.h"

namespace symopt {
namespace {

using Catch::Matchers::Contains;
using testing::CViewOf;
using testing::Guarded;
using testing::MaxSymmetricError;
using testing::RandomVector;
using testing::Rms;
using testing::ViewOf;

// Random class ids within each row (every class in one row), with zeros;
// every row keeps a nonzero entry.
TiePattern RowLocal(std::int64_t rows,
                    std::int64_t cols,
                    std::int32_t per_row,
                    double zeros,
                    std::uint64_t seed) {
  TiePattern p = testing::RandomPattern(rows, cols, per_row, zeros, seed);
  for (std::int64_t r = 0; r < rows; ++r) {
    p.class_of[std::size_t(r * cols)] = 0;
    for (std::int64_t j = 0; j < cols; ++j) {
      auto& k = p.class_of[std::size_t(r * cols + j)];
      if (k != TiePattern::kZero) k += std::int32_t(r * per_row);
    }
  }
  return testing::Canonical(p);
}

// Mirror pairs, random row-local classes (with zeros), one class per row,
// and a conv-sized bank (300 rows, past one block of 256 threads).
std::vector<std::pair<std::string, TiePattern>> Cases() {
  return {{"mirror pairs", testing::MirrorPattern(4, 7)},
          {"mirror pairs, zero columns", testing::MirrorPattern(3, 10, {0, 9})},
          {"row-local random", RowLocal(5, 8, 4, 0.2, 81)},
          {"one class per row", testing::RunPattern(3, 6, 6)},
          {"conv bank 300x75", RowLocal(300, 75, 20, 0.1, 82)}};
}

template <typename T>
double Tol() {
  return sizeof(T) == 4 ? 1e-6 : 1e-13;
}

// Checks the GPU result against the CPU one and the tie structure.
template <typename T>
void ExpectParity(const TiePattern& p,
                  const std::vector<T>& gpu,
                  const std::vector<T>& cpu,
                  bool tied = true) {
  CHECK(MaxSymmetricError(gpu, cpu, Rms(cpu)) <= Tol<T>());
  if (tied) CHECK(testing::TiedBitwiseEqual(p, gpu));
}

TEMPLATE_TEST_CASE("TiedOblique GPU operations equal the CPU",
                   "[gpu][tied_oblique]",
                   float,
                   double) {
  using T = TestType;
  for (const auto& [name, pattern] : Cases()) {
    INFO(name);
    const TiedOblique<T> m(pattern);
    const std::int64_t rows = m.rows(), cols = m.cols(), n = m.AmbientSize();
    std::vector<T> x(static_cast<std::size_t>(n), T(0));
    m.RandomPoint(ViewOf(m, x), 7);
    const std::vector<T> ambient = RandomVector<T>(n, 8);
    const std::vector<T> g = RandomVector<T>(n, 9);

    {  // ProjectPoint
      std::vector<T> cpu = ambient;
      m.ProjectPoint(ViewOf(m, cpu));
      Guarded<T> d(ambient, rows, cols);
      m.ProjectPoint(d.view());
      ExpectParity(pattern, d.Host(), cpu);
    }
    {  // Project, EgradToRgrad, Transport
      std::vector<T> cpu = g;
      m.Project(CViewOf(m, x), ViewOf(m, cpu));
      Guarded<T> dx(x, rows, cols), du(g, rows, cols), dg(g, rows, cols);
      m.Project(dx.cview(), du.view());
      ExpectParity(pattern, du.Host(), cpu);
      m.EgradToRgrad(dx.cview(), dg.view());
      ExpectParity(pattern, dg.Host(), cpu);
      // Transport to a new point: the projection there.
      std::vector<T> y(static_cast<std::size_t>(n));
      m.RandomPoint(ViewOf(m, y), 10);
      std::vector<T> moved = cpu;
      m.Transport(CViewOf(m, x), CViewOf(m, y), ViewOf(m, moved));
      Guarded<T> dy(y, rows, cols), dv(cpu, rows, cols);
      m.Transport(dx.cview(), dy.cview(), dv.view());
      ExpectParity(pattern, dv.Host(), moved);
      CHECK(dx.Host() == x);
    }
    {  // Retract, with a collapsed row reported alike
      std::vector<T> v = g;
      m.Project(CViewOf(m, x), ViewOf(m, v));
      for (T& e : v) e = T(0.3) * e;
      // Row 1 (or 0) collapses: v = -x there.
      const std::int64_t bad_row = rows > 1 ? 1 : 0;
      for (std::int64_t j = 0; j < cols; ++j) {
        v[std::size_t(bad_row * cols + j)] =
            -x[std::size_t(bad_row * cols + j)];
      }
      std::vector<T> cpu = x;
      const RetractReport cr = m.Retract(ViewOf(m, cpu), CViewOf(m, v));
      Guarded<T> dx(x, rows, cols), dv(v, rows, cols);
      const RetractReport gr = m.Retract(dx.view(), dv.cview());
      CHECK(cr.collapsed_rows == 1);
      CHECK(gr.collapsed_rows == cr.collapsed_rows);
      CHECK(gr.first_collapsed_row == cr.first_collapsed_row);
      ExpectParity(pattern, dx.Host(), cpu);
    }
    {  // fused Step: plain, momentum, Nesterov with decay
      for (int variant = 0; variant < 3; ++variant) {
        INFO("variant " << variant);
        StepOptions o;
        o.lr = 0.05;
        o.momentum = variant == 0 ? 0.0 : 0.9;
        o.nesterov = variant == 2;
        o.weight_decay = variant == 2 ? 1e-2 : 0.0;
        // A momentum buffer in T_x M (projected random).
        std::vector<T> mom = RandomVector<T>(n, 11);
        m.Project(CViewOf(m, x), ViewOf(m, mom));
        std::vector<T> cx = x, cm = mom;
        Guarded<T> dx(x, rows, cols), dg(g, rows, cols), dm(mom, rows, cols);
        for (int s = 0; s < 3; ++s) {
          const RetractReport a =
              m.Step(ViewOf(m, cx),
                     CViewOf(m, g),
                     variant ? ViewOf(m, cm) : TensorView<T>(),
                     o);
          const RetractReport b = m.Step(
              dx.view(), dg.cview(), variant ? dm.view() : TensorView<T>(), o);
          CHECK(a.collapsed_rows == b.collapsed_rows);
        }
        ExpectParity(pattern, dx.Host(), cx);
        if (variant) {
          ExpectParity(pattern, dm.Host(), cm);
        } else {
          CHECK(dm.Host() == mom);  // untouched without momentum
        }
        CHECK(dg.Host() == g);
      }
    }
  }
}

TEST_CASE("TiedOblique GPU ProjectPoint refuses a non-finite entry",
          "[gpu][tied_oblique]") {
  const TiePattern p = testing::MirrorPattern(3, 6);
  const TiedOblique<float> m(p);
  std::vector<float> x = RandomVector<float>(18, 3);
  x[9] = std::numeric_limits<float>::infinity();
  Guarded<float> d(x, 3, 6);
  REQUIRE_THROWS_AS(m.ProjectPoint(d.view()), InvalidArgument);
  REQUIRE_THROWS_WITH(m.ProjectPoint(d.view()), Contains("(1, 3)"));
  const std::vector<float> after = d.Host();
  CHECK(std::memcmp(after.data(), x.data(), x.size() * sizeof(float)) == 0);
}

TEST_CASE("GPU drift: 100,000 float TiedOblique steps keep unit rows and ties",
          "[gpu][tied_oblique]") {
  const TiePattern p = RowLocal(16, 75, 12, 0.1, 111);
  const TiedOblique<float> m(p);
  const std::int64_t rows = m.rows(), cols = m.cols(), n = m.AmbientSize();
  std::vector<float> x(static_cast<std::size_t>(n));
  m.RandomPoint(ViewOf(m, x), 112);
  // A fixed gradient keeps pushing every row off the sphere; Nesterov
  // momentum and decay exercise every branch of the step.
  const std::vector<float> g = RandomVector<float>(n, 113);
  Guarded<float> dx(x, rows, cols), dg(g, rows, cols),
      dm(std::vector<float>(std::size_t(n), 0.0f), rows, cols);
  StepOptions o;
  o.lr = 0.01;
  o.momentum = 0.9;
  o.nesterov = true;
  o.weight_decay = 1e-3;
  std::int64_t collapsed = 0;
  for (int step = 0; step < 100000; ++step) {
    collapsed += m.Step(dx.view(), dg.cview(), dm.view(), o).collapsed_rows;
  }
  CHECK(collapsed == 0);
  const std::vector<float> y = dx.Host();
  double worst = 0.0;
  for (std::int64_t r = 0; r < rows; ++r) {
    double s = 0.0;
    for (std::int64_t j = 0; j < cols; ++j) {
      s += double(y[std::size_t(r * cols + j)]) * y[std::size_t(r * cols + j)];
    }
    worst = std::max(worst, std::abs(std::sqrt(s) - 1.0));
  }
  CHECK(worst <= 1e-6);
  CHECK(testing::TiedBitwiseEqual(p, y));
  CHECK(testing::TiedBitwiseEqual(p, dm.Host()));
}

TEST_CASE("an optimizer steps a GPU TiedOblique parameter like the CPU one",
          "[gpu][tied_oblique][optim]") {
  const TiePattern p = testing::MirrorPattern(8, 25);
  auto m = std::make_shared<TiedOblique<float>>(p);
  const std::int64_t n = m->AmbientSize();
  std::vector<float> x(static_cast<std::size_t>(n));
  m->RandomPoint(ViewOf(*m, x), 5);
  std::vector<float> hx = x;
  std::vector<float> hg(static_cast<std::size_t>(n), 0.0f);
  Guarded<float> dx(x, 8, 25), dg(hg, 8, 25);
  SgdOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  RiemannianSgd<float> cpu(
      {MakeParameter<float>("w", hx.data(), hg.data(), 8, 25, m)}, o);
  Parameter<float> dp;
  dp.name = "w";
  dp.value = dx.view();
  dp.grad = dg.view();
  dp.manifold = m;
  RiemannianSgd<float> gpu({dp}, o);
  for (int s = 0; s < 20; ++s) {
    hg = RandomVector<float>(n, 100 + s);
    Copy(TensorView<const float>(hg.data(), 8, 25), dg.view());
    REQUIRE(cpu.Step().moved());
    REQUIRE(gpu.Step().moved());
  }
  ExpectParity(p, dx.Host(), hx);
  ExpectParity(p, gpu.State().momentum[0], cpu.State().momentum[0]);
}

}  // namespace
}  // namespace symopt
