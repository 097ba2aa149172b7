// GPU parity tests of the CUDA backend (STYLE T5, T7): every operation the
// backend implements, run through the public API on Device::kCuda views
// (so the dispatch point is exercised too), is compared with the CPU
// reference on fresh random inputs with fixed seeds.
//
// Comparisons use the symmetric relative error
//   e(a, b) = |a - b| / max(|a|, |b|, floor),  floor = RMS of the reference
// (the data's scale, so a result that cancels to ~0 is judged against the
// size of its operands), with the tolerance stated in each test. Why the
// tolerances are what they are: both sides compile without FMA contraction
// (-ffp-contract=off, nvcc --fmad=false) and run the same Ops
// (src/backend/step_ops.h, ObliqueOps), so elementwise maths is bitwise
// equal (Euclidean: tolerance 0); only the double-precision row/class sums
// (and cuBLAS's products) are added in another order on the GPU, which
// changes a result by an ulp or two at the data's scale.
//
// Poisoning: every device buffer carries guard zones before and after the
// data, filled with 0xFF bytes (NaN); after each operation the guards must
// still be all 0xFF, so a write out of bounds is caught. The ops are in
// place, so an element the kernel failed to write keeps its (random) input
// value and shows up as a mismatch against the reference; host buffers that
// receive results are filled with NaN before the copy back.
//
// Exits 77 (skipped) without a device: tests/gpu_main.cpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "catch.h"
#include "gpu_checks.h"
#include "manifold_checks.h"
#include "manifolds/device.h"
#include "manifolds/euclidean.h"
#include "manifolds/linear_subspace.h"
#include "manifolds/multi_step.h"
#include "manifolds/oblique.h"
#include "manifolds/tie_subspace.h"
#include "tie_patterns.h"

namespace symopt {
namespace {

using testing::Guarded;
using testing::MaxSymmetricError;
using testing::RandomVector;
using testing::Rms;

template <typename T>
double Tol(double float_tol, double double_tol) {
  return std::is_same_v<T, float> ? float_tol : double_tol;
}

StepOptions Variant(int variant) {
  StepOptions o;
  o.lr = 0.07;
  o.momentum = variant >= 1 ? 0.9 : 0.0;
  o.nesterov = variant == 2;
  o.weight_decay = variant == 3 ? 0.01 : 0.0;
  return o;
}

// Every step variant on the CPU and on the GPU from the same x, g, m: the
// results agree to `tol` (symmetric relative error at the data's scale; 0:
// bitwise) and the collapse reports are equal. extra(x', m', options) may
// check more on the GPU results.
template <typename T, typename Extra>
void CheckStepVariants(const Manifold<T>& manifold,
                       const std::vector<T>& x,
                       const std::vector<T>& g,
                       const std::vector<T>& m,
                       double tol,
                       Extra&& extra) {
  const std::int64_t rows = manifold.rows(), cols = manifold.cols();
  for (int variant = 0; variant < 4; ++variant) {
    INFO("variant " << variant);
    const StepOptions o = Variant(variant);
    std::vector<T> xc = x, mc = m;
    const RetractReport rc =
        manifold.Step(TensorView<T>(xc.data(), rows, cols),
                      TensorView<const T>(g.data(), rows, cols),
                      TensorView<T>(mc.data(), rows, cols),
                      o);
    Guarded<T> xd(x, rows, cols), gd(g, rows, cols), md(m, rows, cols);
    const RetractReport rd = manifold.Step(xd.view(), gd.cview(), md.view(), o);
    CHECK(rd.collapsed_rows == rc.collapsed_rows);
    CHECK(rd.first_collapsed_row == rc.first_collapsed_row);
    const std::vector<T> xs = xd.Host(), ms = md.Host();
    if (tol == 0) {
      CHECK(xs == xc);
      CHECK(ms == mc);
    } else {
      CHECK(MaxSymmetricError(xs, xc, Rms(xc)) <= tol);
      CHECK(MaxSymmetricError(ms, mc, Rms(mc)) <= tol);
    }
    extra(xs, ms, o);
  }
}

template <typename T>
void CheckStepVariants(const Manifold<T>& manifold,
                       const std::vector<T>& x,
                       const std::vector<T>& g,
                       const std::vector<T>& m,
                       double tol) {
  CheckStepVariants(manifold, x, g, m, tol, [](auto&&...) {});
}

// ---- Euclidean
// ------------------------------------------------------------------

TEMPLATE_TEST_CASE("GPU Euclidean step and retraction equal the CPU bitwise",
                   "[gpu][euclidean]",
                   float,
                   double) {
  using T = TestType;
  for (const std::int64_t n :
       {std::int64_t(1), std::int64_t(1000), (std::int64_t(1) << 20) + 3}) {
    const Euclidean<T> eu(1, n);
    const std::vector<T> x = RandomVector<T>(n, 1), g = RandomVector<T>(n, 2),
                         m = RandomVector<T>(n, 3);
    // Tolerance 0: the same Ops without FMA and without sums.
    CheckStepVariants(eu, x, g, m, 0.0);
    std::vector<T> xc = x;
    eu.Retract(TensorView<T>(xc.data(), 1, n),
               TensorView<const T>(g.data(), 1, n));
    Guarded<T> xd(x, 1, n), gd(g, 1, n);
    eu.Retract(xd.view(), gd.cview());
    CHECK(xd.Host() == xc);
  }
}

// ---- Oblique
// ---------------------------------------------------------------------

struct Shape {
  std::int64_t rows, cols;
};
// Every thread-group size (8, 32, 256 lanes per row) and ragged row ends.
const Shape kObliqueShapes[] = {{7, 1},
                                {33, 9},
                                {5, 64},
                                {65, 65},
                                {10, 1000},
                                {3, 1024},
                                {4, 5001},
                                {300, 37}};

TEMPLATE_TEST_CASE("GPU Oblique operations equal the CPU",
                   "[gpu][oblique]",
                   float,
                   double) {
  using T = TestType;
  // float: an ulp or two from the reordered double row sums, relative to the
  // data's scale; double: the same at 1e-16.
  const double tol = Tol<T>(1e-5, 1e-12);
  std::uint64_t seed = 100;
  for (const Shape s : kObliqueShapes) {
    INFO("shape " << s.rows << "x" << s.cols);
    const Oblique<T> ob(s.rows, s.cols);
    const std::int64_t n = s.rows * s.cols;
    std::vector<T> x = RandomVector<T>(n, ++seed);
    ob.ProjectPoint(TensorView<T>(x.data(), s.rows, s.cols));
    const std::vector<T> g = RandomVector<T>(n, ++seed);
    std::vector<T> m = RandomVector<T>(n, ++seed, 0.3);
    ob.Project(TensorView<const T>(x.data(), s.rows, s.cols),
               TensorView<T>(m.data(), s.rows, s.cols));
    auto host = [&](std::vector<T>& v) {
      return TensorView<T>(v.data(), s.rows, s.cols);
    };

    // Plain blocks, not SECTIONs: a SECTION inside the loop over shapes would
    // run for the first shape only.
    CheckStepVariants(ob, x, g, m, tol);
    {
      INFO("project, egrad to rgrad, transport");
      std::vector<T> uc = g;
      ob.Project(TensorView<const T>(x.data(), s.rows, s.cols), host(uc));
      Guarded<T> xd(x, s.rows, s.cols), ud(g, s.rows, s.cols),
          rd(g, s.rows, s.cols);
      ob.Project(xd.cview(), ud.view());
      CHECK(MaxSymmetricError(ud.Host(), uc, Rms(uc)) <= tol);
      ob.EgradToRgrad(xd.cview(), rd.view());
      CHECK(MaxSymmetricError(rd.Host(), uc, Rms(uc)) <= tol);
      Guarded<T> vd(g, s.rows, s.cols);
      ob.Transport(xd.cview(), xd.cview(), vd.view());
      CHECK(MaxSymmetricError(vd.Host(), uc, Rms(uc)) <= tol);
    }
    {
      INFO("retract, with collapsing rows reported");
      std::vector<T> v = g;
      ob.Project(TensorView<const T>(x.data(), s.rows, s.cols), host(v));
      // Rows 1 and the last get v = -x: the candidate is 0 and collapses
      // (kept unchanged, counted, first = 1).
      if (s.rows >= 3) {
        for (const std::int64_t r : {std::int64_t(1), s.rows - 1}) {
          for (std::int64_t j = 0; j < s.cols; ++j)
            v[r * s.cols + j] = -x[r * s.cols + j];
        }
      }
      std::vector<T> xc = x;
      const RetractReport rc =
          ob.Retract(host(xc), TensorView<const T>(v.data(), s.rows, s.cols));
      Guarded<T> xd(x, s.rows, s.cols), vd(v, s.rows, s.cols);
      const RetractReport rd = ob.Retract(xd.view(), vd.cview());
      CHECK(rd.collapsed_rows == rc.collapsed_rows);
      CHECK(rd.first_collapsed_row == rc.first_collapsed_row);
      if (s.rows >= 3) CHECK(rd.first_collapsed_row == 1);
      CHECK(MaxSymmetricError(xd.Host(), xc, Rms(xc)) <= tol);
    }
    {
      INFO("project point: scaled rows, tiny and huge rows, zero rows");
      std::vector<T> y = RandomVector<T>(n, ++seed, 3.0);
      for (std::int64_t j = 0; j < s.cols; ++j) {
        y[j] = T(0);  // row 0 is zero: becomes e_0
        if (s.rows > 1) y[s.cols + j] *= T(1e-30);
        if (s.rows > 2)
          y[2 * s.cols + j] *= T(std::is_same_v<T, float> ? 1e30 : 1e300);
      }
      std::vector<T> yc = y;
      ob.ProjectPoint(host(yc));
      Guarded<T> yd(y, s.rows, s.cols);
      ob.ProjectPoint(yd.view());
      CHECK(MaxSymmetricError(yd.Host(), yc, Rms(yc)) <= tol);
    }
    {
      INFO("project point refuses a non-finite row and writes nothing");
      std::vector<T> y = x;
      const std::int64_t bad = n / 2;
      y[bad] = std::numeric_limits<T>::quiet_NaN();
      y[0] *= T(2);  // not on the manifold: a write would show
      Guarded<T> yd(y, s.rows, s.cols);
      try {
        ob.ProjectPoint(yd.view());
        FAIL("NaN accepted");
      } catch (const InvalidArgument& e) {
        const std::string row = "row " + std::to_string(bad / s.cols);
        CHECK(std::string(e.what()).find(row) != std::string::npos);
      }
      const std::vector<T> after = yd.Host();
      CHECK(std::isnan(after[bad]));
      std::vector<T> a = after, b = y;
      a[bad] = b[bad] = 0;
      CHECK(a == b);
    }
  }
}

// ---- TieSubspace
// -------------------------------------------------------------------

std::vector<TiePattern> GpuTiePatterns() {
  using namespace symopt::testing;
  TiePattern big;  // classes of every group size, some a whole row
  big.rows = 4;
  big.cols = 3000;
  for (std::int64_t r = 0; r < big.rows; ++r) {
    for (std::int64_t j = 0; j < big.cols; ++j) {
      big.class_of.push_back(
          r == 0 ? 0 : std::int32_t(j % (r == 1 ? 2 : 100) + 1 + 100 * r));
    }
  }
  return {MirrorPattern(64, 27, {13}),  // pairs + zeroed centre column
          ShiftPairPattern(33, 40),     // shifted pairs
          RunPattern(50, 64, 3, 4),     // contiguous runs with zeros
          PermuteIds(RandomPattern(20, 300, 150, 0.05, 8), 2),  // ~40/class
          Canonical(big)};
}

// Every class's entries bitwise equal and zeroed entries exactly 0.
template <typename T>
bool TiedEntriesEqual(const TiePattern& p, const std::vector<T>& v) {
  std::vector<T> value(std::size_t(p.num_classes));
  std::vector<bool> seen(std::size_t(p.num_classes), false);
  for (std::size_t i = 0; i < v.size(); ++i) {
    const std::int32_t c = p.class_of[i];
    if (c == TiePattern::kZero) {
      if (!(v[i] == T(0))) return false;
      continue;
    }
    if (!seen[c]) {
      seen[c] = true;
      value[c] = v[i];
      // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): by design
    } else if (std::memcmp(&value[c], &v[i], sizeof(T)) != 0) {
      return false;
    }
  }
  return true;
}

TEMPLATE_TEST_CASE("GPU TieSubspace operations equal the CPU",
                   "[gpu][tie]",
                   float,
                   double) {
  using T = TestType;
  // One value per class from double sums; classes of more than 16 members
  // are summed by a warp or block in another order: an ulp or two in float.
  const double tol = Tol<T>(2e-6, 1e-14);
  std::uint64_t seed = 200;
  for (const TiePattern& pattern : GpuTiePatterns()) {
    const std::int64_t rows = pattern.rows, cols = pattern.cols,
                       n = rows * cols;
    for (const TieMetric metric : {TieMetric::kEmbedded, TieMetric::kShared}) {
      INFO(rows << "x" << cols << " pattern, metric " << int(metric));
      const TieSubspace<T> tie(pattern, metric);
      std::vector<T> x(n), m(n);
      tie.RandomPoint(TensorView<T>(x.data(), rows, cols), ++seed);
      tie.RandomPoint(TensorView<T>(m.data(), rows, cols), ++seed);
      const std::vector<T> g = RandomVector<T>(n, ++seed);
      auto host = [&](std::vector<T>& v) {
        return TensorView<T>(v.data(), rows, cols);
      };
      auto chost = [&](const std::vector<T>& v) {
        return TensorView<const T>(v.data(), rows, cols);
      };
      // Projection (the segmented mean), also as ProjectPoint and rgrad.
      {
        std::vector<T> uc = g, rc = g;
        tie.Project(chost(x), host(uc));
        tie.EgradToRgrad(chost(x), host(rc));
        Guarded<T> xd(x, rows, cols), ud(g, rows, cols), pd(g, rows, cols),
            rd(g, rows, cols);
        tie.Project(xd.cview(), ud.view());
        tie.ProjectPoint(pd.view());
        tie.EgradToRgrad(xd.cview(), rd.view());
        const std::vector<T> u = ud.Host(), pp = pd.Host(), r = rd.Host();
        CHECK(MaxSymmetricError(u, uc, Rms(uc)) <= tol);
        CHECK(pp == u);
        CHECK(MaxSymmetricError(r, rc, Rms(rc)) <= tol);
        CHECK(TiedEntriesEqual(pattern, u));
        CHECK(TiedEntriesEqual(pattern, r));
      }
      // Retraction x + v in E; transport is the identity.
      {
        std::vector<T> v = g;
        tie.Project(chost(x), host(v));
        std::vector<T> xc = x;
        tie.Retract(host(xc), chost(v));
        Guarded<T> xd(x, rows, cols), vd(v, rows, cols);
        tie.Retract(xd.view(), vd.cview());
        const std::vector<T> xr = xd.Host();
        CHECK(MaxSymmetricError(xr, xc, Rms(xc)) <= tol);
        CHECK(TiedEntriesEqual(pattern, xr));
        tie.Transport(xd.cview(), xd.cview(), vd.view());
        CHECK(vd.Host() == v);
      }
      // The fused step, all variants.
      CheckStepVariants(tie,
                        x,
                        g,
                        m,
                        tol,
                        [&](const std::vector<T>& xs,
                            const std::vector<T>& ms,
                            const StepOptions& o) {
                          CHECK(TiedEntriesEqual(pattern, xs));
                          if (o.momentum > 0)
                            CHECK(TiedEntriesEqual(pattern, ms));
                        });
    }
  }
}

// ---- LinearSubspace
// ---------------------------------------------------------------

TEMPLATE_TEST_CASE("GPU LinearSubspace operations equal the CPU",
                   "[gpu][linear]",
                   float,
                   double) {
  using T = TestType;
  // cuBLAS and Eigen add the N or K products of each coefficient and entry
  // in another order (in double): float results differ by an ulp or two.
  const double tol = Tol<T>(1e-5, 1e-12);
  const struct {
    std::int64_t rows, cols, vectors;
  } cases[] = {{6, 10, 7}, {32, 50, 40}, {3, 4, 0}};
  std::uint64_t seed = 1000;
  for (const auto& c : cases) {
    INFO(c.rows << "x" << c.cols << " with " << c.vectors << " vectors");
    const std::int64_t n = c.rows * c.cols;
    const auto linear = LinearSubspace<T>::FromSpanningSet(
        c.rows, c.cols, c.vectors, RandomVector<double>(n * c.vectors, ++seed));
    std::vector<T> x(n), m(n);
    linear->RandomPoint(TensorView<T>(x.data(), c.rows, c.cols), ++seed);
    linear->RandomPoint(TensorView<T>(m.data(), c.rows, c.cols), ++seed);
    const std::vector<T> g = RandomVector<T>(n, ++seed);
    auto host = [&](std::vector<T>& v) {
      return TensorView<T>(v.data(), c.rows, c.cols);
    };
    auto chost = [&](const std::vector<T>& v) {
      return TensorView<const T>(v.data(), c.rows, c.cols);
    };
    {
      std::vector<T> uc = g;
      linear->Project(chost(x), host(uc));
      Guarded<T> xd(x, c.rows, c.cols), ud(g, c.rows, c.cols),
          rd(g, c.rows, c.cols);
      linear->Project(xd.cview(), ud.view());
      linear->EgradToRgrad(xd.cview(), rd.view());
      CHECK(MaxSymmetricError(ud.Host(), uc, Rms(uc)) <= tol);
      CHECK(MaxSymmetricError(rd.Host(), uc, Rms(uc)) <= tol);
      std::vector<T> xc = x;
      linear->Retract(host(xc), chost(uc));
      Guarded<T> vd(uc, c.rows, c.cols);
      linear->Retract(xd.view(), vd.cview());
      CHECK(MaxSymmetricError(xd.Host(), xc, Rms(xc)) <= tol);
    }
    CheckStepVariants(*linear, x, g, m, tol);
  }
}

// ---- multi-tensor step
// ---------------------------------------------------------------

TEMPLATE_TEST_CASE("GPU multi-tensor step equals one step per tensor",
                   "[gpu][multi]",
                   float,
                   double) {
  using T = TestType;
  const double tol = Tol<T>(1e-5, 1e-12);
  SECTION("oblique tensors of different widths") {
    const Shape shapes[] = {{16, 9}, {8, 300}, {3, 2000}, {1, 1}, {40, 65}};
    std::vector<std::unique_ptr<Oblique<T>>> ms;
    std::vector<std::vector<T>> x, g, m;
    std::vector<std::unique_ptr<Guarded<T>>> xd, gd, md;
    std::vector<StepTensor<T>> tensors;
    std::uint64_t seed = 300;
    for (const Shape s : shapes) {
      ms.push_back(std::make_unique<Oblique<T>>(s.rows, s.cols));
      const std::int64_t n = s.rows * s.cols;
      x.push_back(RandomVector<T>(n, ++seed));
      ms.back()->ProjectPoint(TensorView<T>(x.back().data(), s.rows, s.cols));
      g.push_back(RandomVector<T>(n, ++seed));
      m.push_back(std::vector<T>(n, T(0)));
      xd.push_back(std::make_unique<Guarded<T>>(x.back(), s.rows, s.cols));
      gd.push_back(std::make_unique<Guarded<T>>(g.back(), s.rows, s.cols));
      md.push_back(std::make_unique<Guarded<T>>(m.back(), s.rows, s.cols));
      tensors.push_back({ms.back().get(),
                         xd.back()->view(),
                         gd.back()->cview(),
                         md.back()->view()});
    }
    MultiStep<T> multi(tensors, true);
    CHECK(multi.device() == Device::kCuda);
    for (int step = 0; step < 5; ++step) {
      const StepOptions o = Variant(1 + step % 2);
      const std::vector<RetractReport> reports = multi.Step(o);
      for (std::size_t i = 0; i < tensors.size(); ++i) {
        const Shape s = shapes[i];
        const RetractReport rc =
            ms[i]->Step(TensorView<T>(x[i].data(), s.rows, s.cols),
                        TensorView<const T>(g[i].data(), s.rows, s.cols),
                        TensorView<T>(m[i].data(), s.rows, s.cols),
                        o);
        CHECK(reports[i].collapsed_rows == rc.collapsed_rows);
      }
    }
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      CHECK(MaxSymmetricError(xd[i]->Host(), x[i], Rms(x[i])) <= 10 * tol);
      CHECK(MaxSymmetricError(md[i]->Host(), m[i], Rms(m[i])) <= 10 * tol);
    }
  }
  SECTION("Euclidean tensors, bitwise") {
    const std::int64_t sizes[] = {1, 4095, 4096, 4097, 100000};
    std::vector<std::unique_ptr<Euclidean<T>>> ms;
    std::vector<std::vector<T>> x, g, m;
    std::vector<std::unique_ptr<Guarded<T>>> xd, gd, md;
    std::vector<StepTensor<T>> tensors;
    std::uint64_t seed = 400;
    for (const std::int64_t n : sizes) {
      ms.push_back(std::make_unique<Euclidean<T>>(1, n));
      x.push_back(RandomVector<T>(n, ++seed));
      g.push_back(RandomVector<T>(n, ++seed));
      m.push_back(RandomVector<T>(n, ++seed));
      xd.push_back(std::make_unique<Guarded<T>>(x.back(), 1, n));
      gd.push_back(std::make_unique<Guarded<T>>(g.back(), 1, n));
      md.push_back(std::make_unique<Guarded<T>>(m.back(), 1, n));
      tensors.push_back({ms.back().get(),
                         xd.back()->view(),
                         gd.back()->cview(),
                         md.back()->view()});
    }
    MultiStep<T> multi(tensors, true);
    for (int variant = 0; variant < 4; ++variant) {
      const StepOptions o = Variant(variant);
      multi.Step(o);
      for (std::size_t i = 0; i < tensors.size(); ++i) {
        ms[i]->Step(TensorView<T>(x[i].data(), 1, sizes[i]),
                    TensorView<const T>(g[i].data(), 1, sizes[i]),
                    TensorView<T>(m[i].data(), 1, sizes[i]),
                    o);
      }
    }
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      CHECK(xd[i]->Host() == x[i]);
      CHECK(md[i]->Host() == m[i]);
    }
  }
}

// ---- drift and bad input
// -----------------------------------------------------------------

TEST_CASE("GPU drift: 100,000 float oblique steps keep unit rows",
          "[gpu][oblique][drift]") {
  const std::int64_t rows = 64, cols = 300, n = rows * cols;
  const Oblique<float> ob(rows, cols);
  std::vector<float> x = RandomVector<float>(n, 500);
  ob.ProjectPoint(TensorView<float>(x.data(), rows, cols));
  Guarded<float> xd(x, rows, cols), md(std::vector<float>(n, 0.f), rows, cols);
  // A few gradients cycled (uploading 100,000 would dominate the run time).
  std::vector<std::unique_ptr<Guarded<float>>> gs;
  for (int k = 0; k < 7; ++k) {
    gs.push_back(std::make_unique<Guarded<float>>(
        RandomVector<float>(n, 600 + k), rows, cols));
  }
  StepOptions o;
  o.momentum = 0.9;
  o.nesterov = true;
  std::int64_t collapsed = 0;
  for (int step = 0; step < 100000; ++step) {
    o.lr = 0.001 + 0.05 * double(step % 11) / 10.0;
    collapsed +=
        ob.Step(xd.view(), gs[step % 7]->cview(), md.view(), o).collapsed_rows;
  }
  CHECK(collapsed == 0);
  const std::vector<float> xs = xd.Host();
  double worst = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (std::int64_t j = 0; j < cols; ++j)
      ss += double(xs[r * cols + j]) * xs[r * cols + j];
    worst = std::max(worst, std::abs(std::sqrt(ss) - 1.0));
  }
  INFO("worst |norm - 1| = " << worst);
  CHECK(worst <= 1e-6);
}

TEST_CASE("GPU drift: 100,000 float tie steps keep tied entries bitwise equal",
          "[gpu][tie][drift]") {
  const TiePattern pattern = testing::Canonical(GpuTiePatterns()[4]);
  const std::int64_t rows = pattern.rows, cols = pattern.cols, n = rows * cols;
  for (const TieMetric metric : {TieMetric::kEmbedded, TieMetric::kShared}) {
    const TieSubspace<float> tie(pattern, metric);
    std::vector<float> x(n);
    tie.RandomPoint(TensorView<float>(x.data(), rows, cols), 700);
    Guarded<float> xd(x, rows, cols),
        md(std::vector<float>(n, 0.f), rows, cols);
    // Gradients that are NOT in E, so every step must re-tie.
    Guarded<float> g0(RandomVector<float>(n, 701), rows, cols),
        g1(RandomVector<float>(n, 702), rows, cols);
    StepOptions o;
    o.lr = metric == TieMetric::kShared ? 1e-6 : 1e-4;
    o.momentum = 0.9;
    o.weight_decay = 1e-3;
    for (int step = 0; step < 50000; ++step) {
      tie.Step(xd.view(), g0.cview(), md.view(), o);
      tie.Step(xd.view(), g1.cview(), md.view(), o);
    }
    const std::vector<float> xs = xd.Host(), ms = md.Host();
    CHECK(TiedEntriesEqual(pattern, xs));
    CHECK(TiedEntriesEqual(pattern, ms));
    CHECK(FirstNonFinite(TensorView<const float>(xs.data(), rows, cols)) == -1);
  }
}

TEMPLATE_TEST_CASE("GPU NaN/Inf screen finds the first bad entry",
                   "[gpu][finite]",
                   float,
                   double) {
  using T = TestType;
  const std::int64_t n = (std::int64_t(1) << 22) + 5;
  std::vector<T> v = RandomVector<T>(n, 800);
  Guarded<T> d(v, 1, n);
  CHECK(FirstNonFinite(d.cview()) == -1);
  const T inf = std::numeric_limits<T>::infinity();
  const T nan = std::numeric_limits<T>::quiet_NaN();
  for (const std::int64_t at :
       {n - 1, n / 2, std::int64_t(3), std::int64_t(0)}) {
    v[at] = (at % 2 == 0) ? nan : inf;
    Guarded<T> bad(v, 1, n);
    CHECK(FirstNonFinite(bad.cview()) == at);  // the earliest one so far
  }
  v[7] = -inf;
  Guarded<T> bad(v, 1, n);
  CHECK(FirstNonFinite(bad.cview()) == 0);
}

TEST_CASE("GPU views of host memory are refused, not dereferenced", "[gpu]") {
  const Oblique<float> ob(2, 3);
  std::vector<float> x(6, 0.5f), g(6, 0.1f);
  TensorView<float> xv(x.data(), 2, 3, Device::kCuda);
  TensorView<const float> gv(g.data(), 2, 3, Device::kCuda);
  StepOptions o;
  REQUIRE_THROWS_AS(ob.Step(xv, gv, {}, o), InvalidArgument);
  REQUIRE_THROWS_AS(FirstNonFinite(gv), InvalidArgument);
  CHECK(x == std::vector<float>(6, 0.5f));
  // The context is still usable.
  DeviceBuffer<float> b(6);
  b.CopyFromHost(x.data());
  std::vector<float> back(6, 0.f);
  b.CopyToHost(back.data());
  CHECK(back == x);
}

TEST_CASE("Copies between host and device views, on a stream", "[gpu]") {
  std::vector<double> a = RandomVector<double>(1000, 900);
  DeviceBuffer<double> d1(1000), d2(1000);
  Stream stream;
  Copy(TensorView<const double>(a.data(), 10, 100), d1.View(10, 100), &stream);
  Copy(d1.View(10, 100), d2.View(10, 100), &stream);
  std::vector<double> back(1000, std::numeric_limits<double>::quiet_NaN());
  Copy(d2.View(10, 100), TensorView<double>(back.data(), 10, 100), &stream);
  CHECK(back == a);  // the copy to the host waited for its data
  REQUIRE_THROWS_AS(d1.View(11, 100), InvalidArgument);
  DeviceTimer timer;
  timer.Start(&stream);
  Copy(d1.View(10, 100), d2.View(10, 100), &stream);
  timer.Stop(&stream);
  CHECK(timer.ElapsedSeconds() >= 0.0);
}

}  // namespace
}  // namespace symopt
