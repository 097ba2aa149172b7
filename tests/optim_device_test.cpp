// The optimizers' device plumbing, on the CPU (runs in every build): a GPU
// parameter is refused cleanly when this build or machine cannot hold it; the
// state-placement pieces (StateBuffer, the gradient screen, snapshots, the
// bold driver's device-resident snapshot) equal the existing CPU path.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "backend/screen_ops.h"
#include "blas1.h"
#include "catch.h"
#include "manifolds/device.h"
#include "manifolds/euclidean.h"
#include "manifolds/oblique.h"
#include "optim/bold_driver.h"
#include "optim/sgd.h"
#include "optim/state_buffer.h"
#include "optim_state.h"
#include "optim_test_util.h"

namespace symopt {
namespace {

using Catch::Matchers::Contains;
using testing::BitwiseEqual;
using testing::Model;

// A small model: two oblique blocks (groups 0, 1) and a Euclidean bias.
template <typename T>
Model<T> SmallModel() {
  Model<T> model;
  model.Add("w1", std::make_shared<Oblique<T>>(6, 9), 11, 0);
  model.Add("b1", std::make_shared<Euclidean<T>>(1, 6), 12, 0);
  model.Add("w2", std::make_shared<Oblique<T>>(3, 6), 13, 1);
  return model;
}

template <typename T>
void FillGradients(Model<T>* model, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (auto& b : model->blocks) {
    for (T& g : b.grad) g = T(normal(rng));
  }
}

SgdOptions MomentumOptions() {
  SgdOptions o;
  o.lr = 0.05;
  o.momentum = 0.9;
  o.nesterov = true;
  o.weight_decay = 1e-3;
  o.groups[1].lr = 0.02;
  o.groups[1].momentum = 0.0;
  return o;
}

TEST_CASE("a GPU parameter is refused cleanly without a usable device",
          "[optim][gpu]") {
  if (CudaDeviceCount() > 0) {
    SUCCEED("a device is present; tests/nn_train_gpu_test.cpp covers it");
    return;
  }
  Model<float> model = SmallModel<float>();
  const std::vector<std::vector<float>> before = model.Values();
  std::vector<Parameter<float>> params = model.Params();
  params[2].value.device = Device::kCuda;
  params[2].grad.device = Device::kCuda;
  bool threw = false;
  try {
    RiemannianSgd<float> opt(params, MomentumOptions());
  } catch (const NotCompiledError& e) {
    threw = true;
    CHECK(!CudaCompiled());
    CHECK_THAT(e.what(), Contains("'w2'"));
  } catch (const Error& e) {
    threw = true;
    CHECK(CudaCompiled());
    CHECK_THAT(e.what(), Contains("'w2'"));
    CHECK_THAT(e.what(), Contains("GPU"));
  }
  CHECK(threw);
  CHECK(BitwiseEqual(model.Values(), before));
  // Value and gradient on different devices: InvalidArgument naming it.
  params = model.Params();
  params[1].grad.device = Device::kCuda;
  REQUIRE_THROWS_AS(RiemannianSgd<float>(params), InvalidArgument);
  REQUIRE_THROWS_WITH(RiemannianSgd<float>(params), Contains("'b1'"));
  CHECK(BitwiseEqual(model.Values(), before));
  // A GPU state buffer cannot be made either.
  REQUIRE_THROWS_AS(StateBuffer<float>(4, Device::kCuda), Error);
}

TEST_CASE("StateBuffer holds, copies and views host state", "[optim]") {
  StateBuffer<double> b(6, Device::kCpu);
  CHECK(b.size() == 6);
  CHECK(b.device() == Device::kCpu);
  CHECK(b.ToHost() == std::vector<double>(6, 0.0));
  const std::vector<double> v{1, 2, 3, 4, 5, 6};
  b.FromHost(v);
  CHECK(b.ToHost() == v);
  std::vector<double> out(6, -1.0);
  b.CopyTo(TensorView<double>(out.data(), 2, 3));
  CHECK(out == v);
  CHECK(b.View(3, 2).data[4] == 5.0);
  REQUIRE_THROWS_AS(b.View(4, 2), InvalidArgument);
  REQUIRE_THROWS_AS(b.FromHost(std::vector<double>(5)), InvalidArgument);
  REQUIRE_THROWS_AS(b.CopyTo(TensorView<double>(out.data(), 1, 5)),
                    InvalidArgument);
  CHECK(b.ToHost() == v);
  StateBuffer<double> empty(0, Device::kCpu);
  CHECK(empty.ToHost().empty());
}

TEMPLATE_TEST_CASE("the host screen finds every bad entry at every position",
                   "[optim]",
                   float,
                   double) {
  using T = TestType;
  const T bad[] = {std::numeric_limits<T>::quiet_NaN(),
                   std::numeric_limits<T>::infinity(),
                   -std::numeric_limits<T>::infinity()};
  // Lengths around the 16-entry blocks of the unrolled loop.
  for (const std::int64_t n : {0, 1, 15, 16, 17, 31, 32, 33, 70}) {
    std::vector<T> x(static_cast<std::size_t>(n), T(1));
    // Finite extremes are not flagged.
    if (n > 2) {
      x[0] = std::numeric_limits<T>::max();
      x[1] = -std::numeric_limits<T>::denorm_min();
    }
    CHECK(cpu::FirstNonFinite(x.data(), n) == -1);
    for (std::int64_t i = 0; i < n; ++i) {
      for (const T b : bad) {
        std::vector<T> y = x;
        y[std::size_t(i)] = b;
        if (i + 2 < n) y[std::size_t(i + 2)] = bad[0];  // a later one too
        CHECK(cpu::FirstNonFinite(y.data(), n) == i);
      }
    }
  }
}

TEST_CASE("the fused device screen's chunks cover every entry exactly once",
          "[optim]") {
  // The kernel's index maths (cuda/optim.cu), run on the host: every chunk
  // finds its tensor and range; together they visit each entry once, and
  // each entry's global index decodes back to (tensor, index).
  const std::int64_t k = backend::kChunkElements;
  const std::vector<std::int64_t> sizes{k, 1, k + 1, 3 * k - 1, 7, 2 * k, 1};
  const internal::ScreenLayout l = internal::BuildScreenLayout(sizes);
  REQUIRE(l.first_chunk.size() == sizes.size() + 1);
  const int count = int(sizes.size());
  std::vector<std::vector<int>> visits;
  for (const std::int64_t n : sizes) visits.emplace_back(std::size_t(n), 0);
  for (std::int64_t chunk = 0; chunk < l.first_chunk.back(); ++chunk) {
    const int t = backend::FindSegment(l.first_chunk.data(), count, chunk);
    std::int64_t begin = 0, end = 0;
    backend::ScreenOps::ChunkRange(chunk,
                                   l.first_chunk[std::size_t(t)],
                                   sizes[std::size_t(t)],
                                   &begin,
                                   &end);
    REQUIRE(begin >= 0);
    REQUIRE(end <= sizes[std::size_t(t)]);
    REQUIRE(begin < end);
    for (std::int64_t i = begin; i < end; ++i) {
      ++visits[std::size_t(t)][std::size_t(i)];
      const std::int64_t global = l.offset[std::size_t(t)] + i;
      const internal::ScreenHit back = internal::LocateGlobal(l, global);
      REQUIRE(back.tensor == t);
      REQUIRE(back.index == i);
    }
  }
  for (const auto& v : visits) {
    CHECK(std::count(v.begin(), v.end(), 1) == std::int64_t(v.size()));
  }
  REQUIRE_THROWS_AS(internal::LocateGlobal(l, -1), InvalidArgument);
}

TEST_CASE("the gradient screen finds the first bad entry in list order",
          "[optim]") {
  std::vector<float> a(5000, 1.0f), b(10, 2.0f), c(7000, 3.0f);
  const std::vector<TensorView<const float>> views{
      TensorView<const float>(a.data(), 50, 100),
      TensorView<const float>(b.data(), 2, 5),
      TensorView<const float>(c.data(), 70, 100)};
  internal::GradientScreen<float> screen(views, {"a", "b", "c"});
  CHECK(screen.num_device_tensors() == 0);
  CHECK(screen.First().tensor == -1);
  c[6999] = std::numeric_limits<float>::infinity();
  CHECK(screen.First().tensor == 2);
  CHECK(screen.First().index == 6999);
  c[12] = std::nanf("");
  CHECK(screen.First().index == 12);
  b[3] = -std::numeric_limits<float>::infinity();
  CHECK(screen.First().tensor == 1);
  CHECK(screen.First().index == 3);
  // Agrees with the per-view screen everywhere.
  a[4321] = std::nanf("");
  const internal::ScreenHit hit = screen.First();
  CHECK(hit.tensor == 0);
  CHECK(hit.index == FirstNonFinite(views[0]));
  REQUIRE_THROWS_AS(internal::GradientScreen<float>(views, {"a"}),
                    InvalidArgument);
}

TEMPLATE_TEST_CASE(
    "snapshots restore values, momentum and step count "
    "bitwise",
    "[optim]",
    float,
    double) {
  using T = TestType;
  Model<T> model = SmallModel<T>();
  RiemannianSgd<T> opt(model.Params(), MomentumOptions());
  for (int s = 0; s < 3; ++s) {
    FillGradients(&model, 100 + s);
    REQUIRE(opt.Step().moved());
  }
  SgdSnapshot<T> snap;
  opt.TakeSnapshot(&snap);
  const auto values = opt.CopyValues();
  const SgdState<T> state = opt.State();
  // The snapshot holds exactly what State()/CopyValues() report.
  REQUIRE(snap.values.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(BitwiseEqual(snap.values[i].ToHost(), values[i]));
    CHECK(BitwiseEqual(snap.momentum[i].ToHost(), state.momentum[i]));
    CHECK(snap.values[i].device() == Device::kCpu);
  }
  CHECK(snap.momentum[2].empty());  // group 1 has no momentum
  for (int s = 0; s < 4; ++s) {
    FillGradients(&model, 200 + s);
    REQUIRE(opt.Step().moved());
  }
  opt.RestoreSnapshot(snap);
  CHECK(BitwiseEqual(opt.CopyValues(), values));
  CHECK(testing::SameState(opt.State(), state));
  // Reuse: a second snapshot into the same object allocates nothing new
  // and still equals the state.
  const T* first_buffer = snap.values[0].data();
  opt.TakeSnapshot(&snap);
  CHECK(snap.values[0].data() == first_buffer);
  // A snapshot of another shape is refused, changing nothing.
  Model<T> other;
  other.Add("w", std::make_shared<Oblique<T>>(2, 3), 5);
  RiemannianSgd<T> other_opt(other.Params());
  SgdSnapshot<T> wrong;
  other_opt.TakeSnapshot(&wrong);
  REQUIRE_THROWS_AS(opt.RestoreSnapshot(wrong), InvalidArgument);
  CHECK(BitwiseEqual(opt.CopyValues(), values));
}

TEST_CASE("the step plan steps host tensors one by one, as Manifold::Step",
          "[optim]") {
  Model<float> model = SmallModel<float>();
  model.Add("w3", std::make_shared<Oblique<float>>(4, 5), 14, 0);
  FillGradients(&model, 5);
  std::vector<StepTensor<float>> tensors;
  std::vector<int> groups;
  std::vector<std::vector<float>> want;
  StepOptions o;
  o.lr = 0.07;
  for (auto& b : model.blocks) {
    const auto& m = *b.manifold;
    tensors.push_back(
        {b.manifold.get(),
         TensorView<float>(b.value.data(), m.rows(), m.cols()),
         TensorView<const float>(b.grad.data(), m.rows(), m.cols()),
         TensorView<float>()});
    groups.push_back(b.group);
    std::vector<float> x = b.value;
    m.Step(TensorView<float>(x.data(), m.rows(), m.cols()),
           TensorView<const float>(b.grad.data(), m.rows(), m.cols()),
           TensorView<float>(),
           o);
    want.push_back(x);
  }
  internal::StepPlan<float> plan(tensors, groups);
  CHECK(plan.num_batches() == 4);  // host tensors are never batched
  const std::vector<RetractReport> reports =
      plan.Run([&](std::size_t) { return o; });
  CHECK(reports.size() == 4);
  CHECK(BitwiseEqual(model.Values(), want));
  REQUIRE_THROWS_AS(internal::StepPlan<float>(tensors, {0}), InvalidArgument);
}

TEST_CASE("the bold driver's state round-trips through its device snapshot",
          "[optim]") {
  Model<double> model = SmallModel<double>();
  RiemannianSgd<double> opt(model.Params(), MomentumOptions());
  BoldDriver<double> bold(&opt);
  CHECK(bold.EndEpoch(1.0).accepted);
  FillGradients(&model, 7);
  REQUIRE(opt.Step().moved());
  CHECK(bold.EndEpoch(0.5).accepted);
  const BoldDriverState<double> s = bold.State();
  CHECK(BitwiseEqual(s.values, opt.CopyValues()));
  CHECK(BitwiseEqual(s.momentum, opt.State().momentum));
  CHECK(s.step_count == 1);
  // A rejected epoch restores exactly that point.
  FillGradients(&model, 8);
  REQUIRE(opt.Step().moved());
  CHECK_FALSE(bold.EndEpoch(2.0).accepted);
  CHECK(BitwiseEqual(opt.CopyValues(), s.values));
  CHECK(BitwiseEqual(opt.State().momentum, s.momentum));
  CHECK(opt.step_count() == 1);
  // SetState into a second driver gives the same State().
  BoldDriver<double> other(&opt);
  other.SetState(s);
  const BoldDriverState<double> t = other.State();
  CHECK(BitwiseEqual(t.values, s.values));
  CHECK(BitwiseEqual(t.momentum, s.momentum));
  CHECK(t.best_loss == s.best_loss);
  CHECK(t.accepted == s.accepted);
}

}  // namespace
}  // namespace symopt
