// CPU-side tests of the CUDA backend, run in every build (with or without
// CUDA, with or without a device): the launch-configuration maths, the
// host-side tie layout the kernels read, the Ops driven the way the kernels
// drive them (strided lanes, group reductions), the dispatch errors for GPU
// views, FirstNonFinite on host views and MultiStep on the CPU. The kernels
// themselves are compared with the CPU in tests/cuda_manifold_gpu_test.cpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend/launch.h"
#include "backend/step_ops.h"
#include "backend/tie_plan.h"
#include "catch.h"
#include "manifold_checks.h"
#include "manifolds/device.h"
#include "manifolds/euclidean.h"
#include "manifolds/linear_subspace.h"
#include "manifolds/multi_step.h"
#include "manifolds/oblique.h"
#include "manifolds/product.h"
#include "manifolds/tie_subspace.h"
#include "manifolds/tied_oblique.h"
#include "tie_patterns.h"

namespace symopt {
namespace {

using testing::RandomVector;

// ---- launch maths
// ----------------------------------------------------------------

TEST_CASE("Launch maths: groups divide the block and cover every unit",
          "[backend]") {
  for (std::int64_t cols : {1, 2, 9, 64, 65, 1000, 1023, 1024, 4096, 100000}) {
    const int g = backend::ObliqueRowGroup(cols);
    CHECK(backend::kBlockThreads % g == 0);
    CHECK(g >= 8);
    // A group never has more than 4x as many lanes as the row has entries,
    // except for rows shorter than the smallest group.
    if (cols >= 8) CHECK(g <= 4 * cols);
  }
  for (std::int64_t size : {1, 2, 16, 17, 2048, 2049, 1 << 20}) {
    const int g = backend::TieClassGroup(size);
    CHECK(backend::kBlockThreads % g == 0);
    CHECK((g == 1 || g == 32 || g == backend::kBlockThreads));
  }
  for (int group : {1, 8, 32, 256}) {
    for (std::int64_t units : {0, 1, 7, 8, 31, 32, 33, 1000, 123457}) {
      const std::int64_t blocks = backend::BlocksFor(units, group);
      const std::int64_t per_block = backend::kBlockThreads / group;
      CHECK(blocks * per_block >= units);  // every unit has a group
      CHECK((blocks - 1) * per_block < std::max<std::int64_t>(units, 1));
    }
  }
  CHECK(backend::ChunksFor(0) == 0);
  CHECK(backend::ChunksFor(1) == 1);
  CHECK(backend::ChunksFor(backend::kChunkElements) == 1);
  CHECK(backend::ChunksFor(backend::kChunkElements + 1) == 2);
}

TEST_CASE("FindSegment maps every unit to its tensor, skipping empty ones",
          "[backend]") {
  std::mt19937_64 rng(17);
  std::uniform_int_distribution<int> size(0, 5);
  for (int trial = 0; trial < 50; ++trial) {
    const int count = 1 + trial % 9;
    std::vector<std::int64_t> first(std::size_t(count) + 1, 0);
    for (int s = 0; s < count; ++s) first[s + 1] = first[s] + size(rng);
    for (std::int64_t unit = 0; unit < first.back(); ++unit) {
      int expected = -1;
      for (int s = 0; s < count; ++s) {
        if (first[s] <= unit && unit < first[s + 1]) expected = s;
      }
      REQUIRE(backend::FindSegment(first.data(), count, unit) == expected);
    }
  }
}

// ---- tie layout
// ------------------------------------------------------------------

int Category(std::int64_t size) {
  const int g = backend::TieClassGroup(size);
  return g == 1 ? 0 : (g == 32 ? 1 : 2);
}

// Checks the kernel layout of p against the pattern; returns the plan.
backend::TieHostPlan CheckPlan(const TiePattern& p) {
  backend::TieHostPlan plan = backend::BuildTieHostPlan(p);  // returned: moves
  const std::int64_t k = p.num_classes, n = p.rows * p.cols;
  REQUIRE(std::int64_t(plan.class_id.size()) == k);
  REQUIRE(plan.num_small + plan.num_medium + plan.num_large == k);
  // class_id is a permutation.
  std::vector<std::int32_t> sorted = plan.class_id;
  std::sort(sorted.begin(), sorted.end());
  for (std::int64_t q = 0; q < k; ++q) REQUIRE(sorted[q] == q);
  // The pattern's classes, members ascending.
  std::vector<std::vector<std::int32_t>> truth(static_cast<std::size_t>(k));
  std::vector<std::int32_t> zeros;
  bool contiguous = true;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t c = p.class_of[i];
    if (c == TiePattern::kZero) {
      zeros.push_back(std::int32_t(i));
      continue;
    }
    if (!truth[c].empty() && truth[c].back() != i - 1) contiguous = false;
    truth[c].push_back(std::int32_t(i));
  }
  if (plan.row_classes == 0) CHECK(plan.contiguous == contiguous);
  CHECK(plan.zeros == zeros);
  int last_category = 0;
  std::int64_t last_first = -1;
  int largest_category = 0;
  for (std::int64_t q = 0; q < k; ++q) {
    const std::int32_t c = plan.class_id[q];
    const std::int64_t size = backend::ClassSize(plan, q);
    REQUIRE(size == std::int64_t(truth[c].size()));
    for (std::int64_t j = 0; j < size; ++j) {
      REQUIRE(backend::Member(plan, q, j) == truth[c][j]);
    }
    largest_category = std::max(largest_category, Category(size));
    if (plan.row_classes > 0) continue;
    // Ordered by group size, then by first member; the ranges match.
    const int category = Category(size);
    const std::int64_t range_begin =
        category == 0 ? 0
                      : (category == 1 ? plan.num_small
                                       : plan.num_small + plan.num_medium);
    const std::int64_t range_size =
        category == 0 ? plan.num_small
                      : (category == 1 ? plan.num_medium : plan.num_large);
    REQUIRE(q >= range_begin);
    REQUIRE(q < range_begin + range_size);
    REQUIRE(category >= last_category);
    if (category == last_category) REQUIRE(truth[c][0] > last_first);
    last_category = category;
    last_first = truth[c][0];
  }
  if (plan.row_classes > 0) {
    // One launch with the group of the largest class, classes by first member.
    const std::int64_t in_largest =
        largest_category == 0
            ? plan.num_small
            : (largest_category == 1 ? plan.num_medium : plan.num_large);
    CHECK(in_largest == k);
    for (std::int64_t q = 1; q < k; ++q) {
      CHECK(truth[plan.class_id[q]][0] > truth[plan.class_id[q - 1]][0]);
    }
  }
  return plan;
}

TEST_CASE("Tie layout for the kernels reproduces every class", "[backend]") {
  using namespace symopt::testing;
  SECTION("mirror pairs with zeroed columns: row-periodic") {
    const backend::TieHostPlan plan = CheckPlan(MirrorPattern(7, 9, {0, 4}));
    // pairs (1,7), (2,6), (3,5) and the single 8 (its mirror 0 is zeroed)
    CHECK(plan.row_classes == 4);
    CHECK(plan.members.size() == 7);
  }
  SECTION("shifted pairs: row-periodic") {
    CHECK(CheckPlan(ShiftPairPattern(5, 8)).row_classes == 4);
  }
  SECTION("runs across rows (contiguous), with zeros") {
    const backend::TieHostPlan plan = CheckPlan(RunPattern(6, 10, 3, 2));
    CHECK(plan.row_classes == 0);
    CHECK(plan.contiguous);
    CHECK(plan.members.empty());
  }
  SECTION("runs of all three group sizes in one row") {
    // classes of 4, 40 and 3000 entries, each a run
    TiePattern p;
    p.rows = 1;
    p.cols = 4 + 40 + 3000 + 4;
    for (int i = 0; i < 4; ++i) p.class_of.push_back(0);
    for (int i = 0; i < 40; ++i) p.class_of.push_back(1);
    for (int i = 0; i < 3000; ++i) p.class_of.push_back(2);
    for (int i = 0; i < 4; ++i) p.class_of.push_back(3);
    p.num_classes = 4;
    const backend::TieHostPlan plan = CheckPlan(p);
    CHECK(plan.num_small == 2);
    CHECK(plan.num_medium == 1);
    CHECK(plan.num_large == 1);
    CHECK(plan.contiguous);
  }
  SECTION("random ids, permuted, with zeros: CSR") {
    const backend::TieHostPlan plan =
        CheckPlan(PermuteIds(RandomPattern(9, 31, 40, 0.1, 5), 3));
    CHECK(plan.row_classes == 0);
    CHECK(!plan.contiguous);
    CheckPlan(RandomPattern(3, 2000, 3, 0.0, 6));  // large random classes
  }
  SECTION("the same partition per row but a class spanning two rows") {
    TiePattern p = MirrorPattern(2, 4);
    p.class_of[4] = p.class_of[0];  // (1, 0) joins the class of (0, 0)
    p = Canonical(p);
    CHECK(CheckPlan(p).row_classes == 0);
  }
}

// ---- the Ops as the kernels drive them
// -------------------------------------------

// Sums partial values of `lanes` lanes the way cuda/group_reduce.cuh does
// for groups <= 32 (xor butterfly); every lane ends with the same value.
double ButterflySum(std::vector<double> lane_values) {
  const std::size_t g = lane_values.size();
  for (std::size_t offset = g / 2; offset > 0; offset /= 2) {
    std::vector<double> next(g);
    for (std::size_t l = 0; l < g; ++l) {
      next[l] = lane_values[l] + lane_values[l ^ offset];
    }
    lane_values = next;
  }
  for (std::size_t l = 1; l < g; ++l) REQUIRE(lane_values[l] == lane_values[0]);
  return lane_values[0];
}

// One row of the fused oblique step exactly as cuda/oblique.cu's StepRow
// sequences it, with `group` lanes.
template <typename T>
bool EmulateObliqueRow(T* x,
                       const T* g,
                       T* m,
                       std::int64_t cols,
                       int group,
                       const StepOptions& p,
                       double tol) {
  std::vector<ObliqueGram> lanes(group);
  for (int l = 0; l < group; ++l) {
    lanes[l] = ObliqueOps::AccumulateGram<T>(x, g, m, l, cols, group);
  }
  auto reduce = [&](double ObliqueGram::*field) {
    std::vector<double> v(group);
    for (int l = 0; l < group; ++l) v[l] = lanes[l].*field;
    return ButterflySum(v);
  };
  ObliqueGram s;
  s.xx = reduce(&ObliqueGram::xx);
  s.xg = reduce(&ObliqueGram::xg);
  s.xm = reduce(&ObliqueGram::xm);
  s.gg = reduce(&ObliqueGram::gg);
  s.gm = reduce(&ObliqueGram::gm);
  s.mm = reduce(&ObliqueGram::mm);
  const ObliqueCandidate c = ObliqueOps::StepCandidate(s.xx, s.xg, p);
  double yy = ObliqueOps::GramInner(s, c.y, c.y);
  double ymp = m != nullptr ? ObliqueOps::GramInner(s, c.y, c.mp) : 0.0;
  if (ObliqueOps::NeedsDirect(yy, s.xx)) {
    std::vector<double> a(group), b(group);
    for (int l = 0; l < group; ++l) {
      ObliqueOps::AccumulateDirect<T>(x, g, m, c, l, cols, group, &a[l], &b[l]);
    }
    yy = ButterflySum(a);
    ymp = ButterflySum(b);
  }
  const ObliqueRowUpdate u = ObliqueOps::StepUpdate(c, yy, ymp, tol);
  if (u.collapsed) return false;
  const bool increment = ObliqueOps::IncrementIsAccurate(s, u);
  for (int l = 0; l < group; ++l) {
    if (increment) {
      ObliqueOps::ApplyStep<T>(x, g, m, u, l, cols, group);
    } else {
      ObliqueOps::ApplyStepExact<T>(x, g, m, u, l, cols, group);
    }
  }
  return true;
}

TEMPLATE_TEST_CASE("The oblique kernel's lane schedule equals the CPU step",
                   "[backend][oblique]",
                   float,
                   double) {
  using T = TestType;
  const double tol_rel = std::is_same_v<T, float> ? 2e-6 : 1e-14;
  for (std::int64_t cols : {1, 3, 9, 64, 100, 1500}) {
    const std::int64_t rows = 5;
    const Oblique<T> ob(rows, cols);
    std::vector<T> x = RandomVector<T>(rows * cols, 1 + cols);
    ob.ProjectPoint(TensorView<T>(x.data(), rows, cols));
    std::vector<T> g = RandomVector<T>(rows * cols, 2 + cols);
    std::vector<T> m = RandomVector<T>(rows * cols, 3 + cols, 0.1);
    ob.Project(TensorView<const T>(x.data(), rows, cols),
               TensorView<T>(m.data(), rows, cols));
    // lr 0.3: the increment form; lr 50: rows where it is not accurate and
    // the exact form is used (IncrementIsAccurate).
    for (const double lr : {0.3, 50.0}) {
      for (const bool nesterov : {false, true}) {
        StepOptions o;
        o.lr = lr;
        o.momentum = 0.9;
        o.nesterov = nesterov;
        std::vector<T> x_cpu = x, m_cpu = m, x_emu = x, m_emu = m;
        ob.Step(TensorView<T>(x_cpu.data(), rows, cols),
                TensorView<const T>(g.data(), rows, cols),
                TensorView<T>(m_cpu.data(), rows, cols),
                o);
        StepOptions p;
        p.lr = o.lr;
        p.momentum = o.momentum;
        p.nesterov = o.nesterov;
        const int group = backend::ObliqueRowGroup(cols);
        for (std::int64_t r = 0; r < rows; ++r) {
          REQUIRE(EmulateObliqueRow<T>(x_emu.data() + r * cols,
                                       g.data() + r * cols,
                                       m_emu.data() + r * cols,
                                       cols,
                                       group,
                                       p,
                                       ob.collapse_tol()));
        }
        CHECK(testing::MaxAbsDiff(x_cpu, x_emu) <= tol_rel);
        CHECK(testing::MaxAbsDiff(m_cpu, m_emu) <=
              tol_rel * std::max(1.0, testing::MaxAbs(m_cpu)));
      }
    }
  }
}

// The members of plan position q, as a TieOps member set (cuda/tie.cu's
// PlanMembers).
struct HostPlanMembers {
  const backend::TieHostPlan* plan;
  std::int64_t q;
  std::int64_t size() const { return backend::ClassSize(*plan, q); }
  std::int64_t operator[](std::int64_t j) const {
    return backend::Member(*plan, q, j);
  }
};

// A tie pass as cuda/tie.cu runs it, sequentially: the plan's classes, one
// thread's classes through TieOps::Class (pairs in the pair form), a group's
// through Accumulate and Values (sums in member order), zeros cleared.
template <TieMode kMode, typename T>
void EmulateTiePassOf(const backend::TieHostPlan& plan,
                      T* a,
                      const T* b,
                      T* c,
                      const TieStepScalars& s) {
  const TieFlags f = TieFlags::Of(s);
  const std::int64_t k = std::int64_t(plan.class_id.size());
  for (std::int64_t q = 0; q < k; ++q) {
    const HostPlanMembers mem{&plan, q};
    const std::int64_t size = mem.size();
    if (backend::TieClassGroup(size) == 1) {
      if (size == 2) {
        TieOps::Class<kMode>(
            tie_internal::PairMembers{mem[0], mem[1]}, a, b, c, s, f);
      } else {
        TieOps::Class<kMode>(mem, a, b, c, s, f);
      }
      continue;
    }
    double sa = 0, sb = 0, sc = 0;
    for (std::int64_t j = 0; j < size; ++j) {
      TieOps::Accumulate<kMode, T>(a, b, c, s, f, mem[j], &sa, &sb, &sc);
    }
    const TieClassValues<T> v =
        TieOps::Values<kMode, T>(s, f, sa, sb, sc, size);
    for (std::int64_t j = 0; j < size; ++j) {
      a[mem[j]] = v.first;
      if (kMode == TieMode::kStep && f.momentum) c[mem[j]] = v.second;
    }
  }
  for (const std::int32_t z : plan.zeros) {
    a[z] = T(0);
    if (kMode == TieMode::kStep && c != nullptr) c[z] = T(0);
  }
}

template <typename T>
void EmulateTiePass(const backend::TieHostPlan& plan,
                    TieMode mode,
                    T* a,
                    const T* b,
                    T* c,
                    const TieStepScalars& s) {
  switch (mode) {
    case TieMode::kMean:
      return EmulateTiePassOf<TieMode::kMean>(plan, a, b, c, s);
    case TieMode::kSum:
      return EmulateTiePassOf<TieMode::kSum>(plan, a, b, c, s);
    case TieMode::kRetract:
      return EmulateTiePassOf<TieMode::kRetract>(plan, a, b, c, s);
    case TieMode::kStep:
      return EmulateTiePassOf<TieMode::kStep>(plan, a, b, c, s);
  }
}

TEMPLATE_TEST_CASE("TieOps over the kernel layout equal the CPU TieSubspace",
                   "[backend][tie]",
                   float,
                   double) {
  using T = TestType;
  using namespace symopt::testing;
  const TiePattern patterns[] = {
      MirrorPattern(6, 11, {5}),
      RunPattern(4, 12, 4, 3),
      PermuteIds(RandomPattern(5, 40, 30, 0.1, 9), 4)};
  // Ordinary values, and subnormal ones, where only the pair form of a mean
  // (TieOps::PairMean) gives the CPU's bits.
  const T scales[] = {T(1), std::numeric_limits<T>::denorm_min() * T(64)};
  for (const TiePattern& pattern : patterns) {
    for (const TieMetric metric : {TieMetric::kEmbedded, TieMetric::kShared}) {
      for (const T scale : scales) {
        INFO("scale " << scale);
        const TieSubspace<T> tie(pattern, metric);
        const backend::TieHostPlan plan = backend::BuildTieHostPlan(pattern);
        const std::int64_t rows = pattern.rows, cols = pattern.cols,
                           n = rows * cols;
        std::vector<T> x(n), m(n);
        tie.RandomPoint(TensorView<T>(x.data(), rows, cols), 11);
        tie.RandomPoint(TensorView<T>(m.data(), rows, cols), 12);
        std::vector<T> g = RandomVector<T>(n, 13);
        for (std::int64_t i = 0; i < n; ++i) {
          x[i] *= scale;
          m[i] *= scale;
          g[i] *= scale;
        }
        // Project (and ProjectPoint) is the class mean.
        {
          std::vector<T> u_cpu = g, u_emu = g;
          tie.Project(TensorView<const T>(x.data(), rows, cols),
                      TensorView<T>(u_cpu.data(), rows, cols));
          EmulateTiePass<T>(
              plan, TieMode::kMean, u_emu.data(), nullptr, nullptr, {});
          CHECK(u_cpu == u_emu);
        }
        // EgradToRgrad: mean or sum by metric.
        {
          std::vector<T> u_cpu = g, u_emu = g;
          tie.EgradToRgrad(TensorView<const T>(x.data(), rows, cols),
                           TensorView<T>(u_cpu.data(), rows, cols));
          EmulateTiePass<T>(
              plan,
              metric == TieMetric::kShared ? TieMode::kSum : TieMode::kMean,
              u_emu.data(),
              nullptr,
              nullptr,
              {});
          CHECK(u_cpu == u_emu);
        }
        // Retract.
        {
          std::vector<T> v = g;
          tie.Project(TensorView<const T>(x.data(), rows, cols),
                      TensorView<T>(v.data(), rows, cols));
          std::vector<T> x_cpu = x, x_emu = x;
          tie.Retract(TensorView<T>(x_cpu.data(), rows, cols),
                      TensorView<const T>(v.data(), rows, cols));
          EmulateTiePass<T>(
              plan, TieMode::kRetract, x_emu.data(), v.data(), nullptr, {});
          CHECK(x_cpu == x_emu);
        }
        // The fused step, all variants.
        for (int variant = 0; variant < 4; ++variant) {
          StepOptions o;
          o.lr = 0.05;
          o.momentum = variant >= 1 ? 0.9 : 0.0;
          o.nesterov = variant == 2;
          o.weight_decay = variant == 3 ? 0.01 : 0.0;
          std::vector<T> x_cpu = x, m_cpu = m, x_emu = x, m_emu = m;
          tie.Step(TensorView<T>(x_cpu.data(), rows, cols),
                   TensorView<const T>(g.data(), rows, cols),
                   TensorView<T>(m_cpu.data(), rows, cols),
                   o);
          const TieStepScalars s =
              TieStepScalars::Of(o, metric == TieMetric::kShared);
          EmulateTiePass<T>(plan,
                            TieMode::kStep,
                            x_emu.data(),
                            g.data(),
                            o.momentum > 0 ? m_emu.data() : nullptr,
                            s);
          // Same sums in the same (ascending) member order: bitwise equal.
          CHECK(x_cpu == x_emu);
          CHECK(m_cpu == m_emu);
        }
      }
    }
  }
}

// ---- dispatch errors
// ------------------------------------------------------------

// A manifold the GPU backend does not know.
class Sphere1 final : public Manifold<double> {
 public:
  Sphere1() : Manifold<double>(1, 2) {}
  std::int64_t Dim() const override { return 1; }
  std::string Name() const override { return "test_circle"; }

 protected:
  void ProjectPointImpl(View) const override {}
  void ProjectImpl(ConstView, View) const override {}
  RetractReport RetractImpl(View, ConstView) const override { return {}; }
  void InverseRetractImpl(ConstView, ConstView, View) const override {}
  double DistanceToManifoldImpl(ConstView) const override { return 0; }
  void TangentBasisMultiplyImpl(ConstView, const double*, View) const override {
  }
  void TangentBasisTransposeMultiplyImpl(ConstView,
                                         ConstView,
                                         double*) const override {}
};

bool MessageHas(const std::exception& e, const std::string& part) {
  return std::string(e.what()).find(part) != std::string::npos;
}

// Runs f, which must throw the error a GPU view gets in this build for an
// operation the backend implements: NotCompiledError without CUDA, Error
// naming the missing device with CUDA but no device. With a device present
// (a GPU machine) the host memory behind the view is refused instead.
template <typename F>
void ExpectNoGpuError(F&& f, const std::string& op) {
  try {
    f();
    FAIL("no exception for " << op);
  } catch (const NotCompiledError& e) {
    CHECK(!CudaCompiled());
    CHECK(MessageHas(e, op));
    CHECK(MessageHas(e, "no CUDA backend"));
  } catch (const InvalidArgument& e) {
    CHECK(CudaDeviceCount() > 0);
    CHECK(MessageHas(e, "does not point to device memory"));
  } catch (const Error& e) {
    CHECK(CudaCompiled());
    CHECK(CudaDeviceCount() == 0);
    CHECK(MessageHas(e, op));
    CHECK(MessageHas(e, "no CUDA device"));
  }
}

TEST_CASE("GPU views give clear errors, never a crash, without a usable GPU",
          "[backend]") {
  const Oblique<double> ob(3, 4);
  std::vector<double> host(12, 0.5), host2(12, 0.25), host3(12, 0.0);
  // Views that claim to be on the GPU but point to host memory: nothing may
  // dereference them.
  TensorView<double> x(host.data(), 3, 4, Device::kCuda);
  TensorView<double> g(host2.data(), 3, 4, Device::kCuda);
  TensorView<double> m(host3.data(), 3, 4, Device::kCuda);
  StepOptions o;
  o.momentum = 0.5;
  ExpectNoGpuError([&] { ob.Step(x, g, m, o); }, "Step");
  ExpectNoGpuError([&] { ob.Project(x, g); }, "Project");
  ExpectNoGpuError([&] { ob.EgradToRgrad(x, g); }, "EgradToRgrad");
  ExpectNoGpuError([&] { ob.Retract(x, g); }, "Retract");
  ExpectNoGpuError([&] { ob.Transport(x, x, g); }, "Transport");
  ExpectNoGpuError([&] { ob.ProjectPoint(x); }, "ProjectPoint");
  const Euclidean<double> eu(3, 4);
  ExpectNoGpuError([&] { eu.Step(x, g, m, o); }, "Step");
  const TieSubspace<double> tie(testing::MirrorPattern(3, 4));
  ExpectNoGpuError([&] { tie.Step(x, g, m, o); }, "Step");
  ExpectNoGpuError([&] { tie.Retract(x, g); }, "Retract");
  const auto linear = LinearSubspace<double>::FromSpanningSet(
      3, 4, 2, RandomVector<double>(24, 5));
  ExpectNoGpuError([&] { linear->Step(x, g, m, o); }, "Step");
  ExpectNoGpuError([&] { linear->Project(x, g); }, "Project");
  // Nothing was written through the views.
  CHECK(host == std::vector<double>(12, 0.5));
  CHECK(host2 == std::vector<double>(12, 0.25));
  CHECK(host3 == std::vector<double>(12, 0.0));

  SECTION("operations without a GPU path name the manifold and operation") {
    auto expect_not_compiled = [](auto&& f, const std::string& what) {
      try {
        f();
        FAIL("no exception for " << what);
      } catch (const NotCompiledError& e) {
        CHECK(MessageHas(e, what));
      }
    };
    expect_not_compiled([&] { ob.Inner(x, g, g); }, "oblique(3x4): Inner");
    expect_not_compiled([&] { ob.DistanceToManifold(x); },
                        "oblique(3x4): DistanceToManifold");
    expect_not_compiled([&] { ob.RandomPoint(x, 1); }, "RandomPoint");
    expect_not_compiled([&] { ob.InverseRetract(x, x, g); }, "InverseRetract");
    std::vector<double> coeffs(9);
    expect_not_compiled([&] { ob.TangentBasisMultiply(x, coeffs.data(), g); },
                        "TangentBasisMultiply");
    expect_not_compiled(
        [&] { ob.TangentBasisTransposeMultiply(x, g, coeffs.data()); },
        "TangentBasisTransposeMultiply");
    std::vector<double> scratch(24);
    expect_not_compiled(
        [&] {
          ob.StepComposed(
              x,
              g,
              m,
              o,
              TensorView<double>(scratch.data(), 6, 4, Device::kCuda));
        },
        "StepComposed");
    const Sphere1 circle;
    std::vector<double> c(2, 0.5), d(2, 0.5);
    expect_not_compiled(
        [&] {
          circle.Project(
              TensorView<const double>(c.data(), 1, 2, Device::kCuda),
              TensorView<double>(d.data(), 1, 2, Device::kCuda));
        },
        "test_circle(1x2): Project");
  }
  SECTION("a product dispatches part by part") {
    using Part = Product<double>::Part;
    const Product<double> prod({std::make_shared<Oblique<double>>(2, 3),
                                std::make_shared<Euclidean<double>>(1, 6)});
    TensorView<double> px(host.data(), 1, 12, Device::kCuda);
    TensorView<double> pg(host2.data(), 1, 12, Device::kCuda);
    TensorView<double> pm(host3.data(), 1, 12, Device::kCuda);
    ExpectNoGpuError([&] { prod.Step(px, pg, pm, o); }, "Step");
    ExpectNoGpuError([&] { prod.Retract(px, pg); }, "Retract");
    // A part without a GPU path is named.
    const Product<double> with_circle(
        {Part(std::make_shared<Sphere1>()),
         Part(std::make_shared<Euclidean<double>>(1, 4))});
    std::vector<double> big(6, 0.5), big2(6, 0.1);
    try {
      with_circle.Project(
          TensorView<const double>(big.data(), 1, 6, Device::kCuda),
          TensorView<double>(big2.data(), 1, 6, Device::kCuda));
      FAIL("accepted");
    } catch (const NotCompiledError& e) {
      CHECK(MessageHas(e, "test_circle"));
    }
    CHECK(big2 == std::vector<double>(6, 0.1));
    // TiedOblique has a GPU path: no device here is an Error, not a
    // missing implementation, and nothing is written.
    const Product<double> with_tied(
        {Part(std::make_shared<TiedOblique<double>>(
             testing::MirrorPattern(2, 6))),
         Part(std::make_shared<Euclidean<double>>(1, 4))});
    std::vector<double> tied(16, 0.5), tied2(16, 0.1);
    ExpectNoGpuError(
        [&] {
          with_tied.Project(
              TensorView<const double>(tied.data(), 1, 16, Device::kCuda),
              TensorView<double>(tied2.data(), 1, 16, Device::kCuda));
        },
        "Project");
    CHECK(tied2 == std::vector<double>(16, 0.1));
  }
  SECTION("views on different devices are refused") {
    TensorView<double> g_host(host2.data(), 3, 4, Device::kCpu);
    REQUIRE_THROWS_AS(ob.Project(x, g_host), InvalidArgument);
    REQUIRE_THROWS_AS(ob.Step(x, g_host, m, o), InvalidArgument);
    try {
      ob.Retract(x, g_host);
    } catch (const InvalidArgument& e) {
      CHECK(MessageHas(e, "different devices (cuda and cpu)"));
    }
  }
}

TEST_CASE("Device memory needs CUDA and a device", "[backend]") {
  if (CudaDeviceCount() > 0) {
    DeviceBuffer<float> b(10);
    CHECK(b.size() == 10);
    return;
  }
  if (CudaCompiled()) {
    REQUIRE_THROWS_AS(DeviceBuffer<float>(10), Error);
    REQUIRE_THROWS_AS(Stream(), Error);
    REQUIRE_THROWS_AS(DeviceTimer(), Error);
  } else {
    REQUIRE_THROWS_AS(DeviceBuffer<float>(10), NotCompiledError);
    REQUIRE_THROWS_AS(Stream(), NotCompiledError);
    REQUIRE_THROWS_AS(RequireCudaDevice("test"), NotCompiledError);
  }
  // Host-to-host copies work in every build.
  std::vector<float> a = {1, 2, 3, 4, 5, 6}, b(6, 0);
  Copy(TensorView<const float>(a.data(), 2, 3),
       TensorView<float>(b.data(), 2, 3));
  CHECK(a == b);
  REQUIRE_THROWS_AS(Copy(TensorView<const float>(a.data(), 2, 3),
                         TensorView<float>(b.data(), 3, 2)),
                    InvalidArgument);
}

TEMPLATE_TEST_CASE("FirstNonFinite finds the first NaN or Inf of a host view",
                   "[backend]",
                   float,
                   double) {
  using T = TestType;
  std::vector<T> v = RandomVector<T>(1000, 3);
  CHECK(FirstNonFinite(TensorView<const T>(v.data(), 10, 100)) == -1);
  v[731] = std::numeric_limits<T>::infinity();
  CHECK(FirstNonFinite(TensorView<T>(v.data(), 10, 100)) == 731);
  v[402] = std::numeric_limits<T>::quiet_NaN();
  CHECK(FirstNonFinite(TensorView<T>(v.data(), 10, 100)) == 402);
  v[0] = -std::numeric_limits<T>::infinity();
  CHECK(FirstNonFinite(TensorView<T>(v.data(), 10, 100)) == 0);
  CHECK(FirstNonFinite(TensorView<const T>()) == -1);
}

// ---- MultiStep on the CPU
// ----------------------------------------------------------

TEMPLATE_TEST_CASE("MultiStep on the CPU equals one Step per tensor",
                   "[backend]",
                   float,
                   double) {
  using T = TestType;
  const Oblique<T> a(4, 9), b(3, 100);
  const Euclidean<T> c(2, 5);
  const TieSubspace<T> d(testing::MirrorPattern(3, 6));
  const Manifold<T>* ms[] = {&a, &b, &c, &d};
  std::vector<std::vector<T>> xs, gs, mms;
  for (int i = 0; i < 4; ++i) {
    const std::int64_t n = ms[i]->AmbientSize();
    xs.push_back(std::vector<T>(n));
    ms[i]->RandomPoint(
        TensorView<T>(xs[i].data(), ms[i]->rows(), ms[i]->cols()), 20 + i);
    gs.push_back(RandomVector<T>(n, 30 + i));
    mms.push_back(std::vector<T>(n, T(0)));
  }
  auto xs_ref = xs, mms_ref = mms;
  std::vector<StepTensor<T>> tensors;
  for (int i = 0; i < 4; ++i) {
    const std::int64_t r = ms[i]->rows(), k = ms[i]->cols();
    tensors.push_back({ms[i],
                       TensorView<T>(xs[i].data(), r, k),
                       TensorView<const T>(gs[i].data(), r, k),
                       TensorView<T>(mms[i].data(), r, k)});
  }
  MultiStep<T> multi(tensors, true);
  CHECK(multi.size() == 4);
  CHECK(multi.device() == Device::kCpu);
  StepOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  for (int step = 0; step < 3; ++step) {
    const std::vector<RetractReport> reports = multi.Step(o);
    REQUIRE(reports.size() == 4);
    for (int i = 0; i < 4; ++i) {
      const std::int64_t r = ms[i]->rows(), k = ms[i]->cols();
      const RetractReport ref =
          ms[i]->Step(TensorView<T>(xs_ref[i].data(), r, k),
                      TensorView<const T>(gs[i].data(), r, k),
                      TensorView<T>(mms_ref[i].data(), r, k),
                      o);
      CHECK(reports[i].collapsed_rows == ref.collapsed_rows);
      CHECK(xs[i] == xs_ref[i]);
      CHECK(mms[i] == mms_ref[i]);
    }
  }
}

TEST_CASE("MultiStep refuses bad tensors by position", "[backend]") {
  const Oblique<float> a(4, 9);
  std::vector<float> x(36, 0.f), g(36, 0.f), m(36, 0.f), y(72, 0.f);
  auto view = [](std::vector<float>& v, std::int64_t off = 0) {
    return TensorView<float>(v.data() + off, 4, 9);
  };
  auto cview = [](std::vector<float>& v) {
    return TensorView<const float>(v.data(), 4, 9);
  };
  REQUIRE_THROWS_AS(MultiStep<float>({}, false), InvalidArgument);
  REQUIRE_THROWS_AS(
      MultiStep<float>({{nullptr, view(x), cview(g), view(m)}}, false),
      InvalidArgument);
  // Wrong shape.
  REQUIRE_THROWS_AS(
      MultiStep<float>(
          {{&a, TensorView<float>(x.data(), 9, 4), cview(g), view(m)}}, false),
      InvalidArgument);
  // Momentum requested but no buffer.
  REQUIRE_THROWS_AS(MultiStep<float>({{&a, view(x), cview(g), {}}}, true),
                    InvalidArgument);
  // Overlapping points.
  try {
    // NOLINTNEXTLINE(bugprone-unused-raii): constructed only to throw
    MultiStep<float>({{&a, view(y), cview(g), view(m)},
                      {&a, view(y, 20), cview(g), view(m)}},
                     false);
    FAIL("overlap accepted");
  } catch (const InvalidArgument& e) {
    CHECK(MessageHas(e, "overlap"));
  }
  // Mixed devices.
  REQUIRE_THROWS_AS(
      MultiStep<float>({{&a,
                         view(x),
                         TensorView<const float>(g.data(), 4, 9, Device::kCuda),
                         view(m)}},
                       false),
      InvalidArgument);
  // Momentum in the options without buffers.
  MultiStep<float> plain({{&a, view(x), cview(g), {}}}, false);
  StepOptions o;
  o.momentum = 0.5;
  REQUIRE_THROWS_AS(plain.Step(o), InvalidArgument);
}

TEST_CASE("MultiStep on GPU views needs CUDA, a device and one supported kind",
          "[backend]") {
  const Oblique<double> a(2, 3);
  const TieSubspace<double> t(testing::MirrorPattern(2, 3));
  std::vector<double> x(6), g(6);
  TensorView<double> xv(x.data(), 2, 3, Device::kCuda);
  TensorView<const double> gv(g.data(), 2, 3, Device::kCuda);
  REQUIRE_THROWS_AS(MultiStep<double>({{&t, xv, gv, {}}}, false),
                    NotCompiledError);
  try {
    // NOLINTNEXTLINE(bugprone-unused-raii): constructed only to throw
    MultiStep<double>({{&a, xv, gv, {}}}, false);
    FAIL("accepted");
  } catch (const NotCompiledError& e) {
    CHECK(!CudaCompiled());
  } catch (const InvalidArgument& e) {
    CHECK(CudaDeviceCount() > 0);  // host memory behind a kCuda view
  } catch (const Error& e) {
    CHECK(CudaDeviceCount() == 0);
    CHECK(MessageHas(e, "no CUDA device"));
  }
}

}  // namespace
}  // namespace symopt
