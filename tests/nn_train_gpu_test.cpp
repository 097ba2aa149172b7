// Optimizers and training on the GPU (STYLE T5, T7): the same runs on the
// CPU and the GPU, compared.
//
//   * training: the MLP with batch norm and the small CNN, plain SGD and
//     momentum on oblique + Euclidean weights, a few dozen steps on a fixed
//     synthetic dataset: the per-step loss curves agree within a stated
//     tolerance (float, cuBLAS sums in another order, so they drift apart
//     slowly: 2e-3 relative), and Train with a bold driver takes the same
//     accept/reject decisions;
//   * the optimizer alone: N steps on device vs host parameters (momentum,
//     Nesterov, weight decay, groups, Euclidean + oblique + tied-oblique)
//     within float rounding;
//   * a NaN gradient on the device is refused with weights and momentum
//     bitwise unchanged; the fused screen names the first bad entry;
//   * bold-driver rollback on the device is bitwise;
//   * a checkpoint saved from the device loads into a host and a device
//     optimizer, and the device continuation is bit-identical.
//
// Device buffers for raw parameters sit between poisoned guard zones
// (tests/gpu_checks.h); host buffers receiving results are NaN first.
//
// Exits 77 (skipped) without a device: tests/gpu_main.cpp.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "catch.h"
#include "gpu_checks.h"
#include "manifold_checks.h"
#include "manifolds/euclidean.h"
#include "manifolds/oblique.h"
#include "manifolds/parallel.h"
#include "manifolds/tied_oblique.h"
#include "nn/loss.h"
#include "nn/train.h"
#include "optim/checkpoint.h"
#include "optim_state.h"
#include "optim_test_util.h"
#include "tie_patterns.h"

namespace symopt {
namespace {

using Catch::Matchers::Contains;
using nn::Sequential;
using nn::Tensor;
using testing::Guarded;
using testing::MaxSymmetricError;
using testing::RandomVector;
using testing::Rms;

// n 28x28 grey images in 10 classes: a fixed random prototype per class plus
// uniform noise (fixed seed), label i % 10.
data::Dataset Synthetic(std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> proto(10 * 784);
  for (float& p : proto) p = u(rng);
  data::Dataset d;
  d.images = Tensor<float>({n, 1, 28, 28});
  d.labels.resize(std::size_t(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const int label = int(i % 10);
    d.labels[std::size_t(i)] = label;
    for (std::int64_t j = 0; j < 784; ++j) {
      d.images[i * 784 + j] =
          0.5f * proto[std::size_t(label * 784 + j)] + 0.5f * u(rng);
    }
  }
  return d;
}

void Build(Sequential<float>& model, bool cnn) {
  if (cnn) {
    nn::BuildSmallCnn(model, 10, 4);
  } else {
    nn::BuildMlpBn(model, 784, 64, 10, 4);
  }
  nn::UseObliqueBeforeNormalization(model);
}

// Per-step training losses of `steps` batches of 32 (in dataset order).
std::vector<double> LossCurve(Sequential<float>& model,
                              RiemannianSgd<float>& optimizer,
                              const data::Dataset& d,
                              int steps) {
  std::vector<double> curve;
  Tensor<float> x(nn::Shape{0}, model.device()), dz;
  const std::int64_t b = 32;
  for (int s = 0; s < steps; ++s) {
    const std::int64_t first = (s * b) % d.size();
    Tensor<float> host({b, 1, 28, 28});
    std::memcpy(host.data(),
                d.images.data() + first * 784,
                sizeof(float) * std::size_t(b * 784));
    std::vector<int> labels(d.labels.begin() + first,
                            d.labels.begin() + first + b);
    x.CopyFrom(host);
    model.ZeroGrad();
    const Tensor<float>& z = model.Forward(x, nn::Mode::kTrain);
    curve.push_back(nn::SoftmaxCrossEntropy(z, labels, &dz));
    model.Backward(dz);
    REQUIRE(optimizer.Step().moved());
  }
  return curve;
}

TEST_CASE("training on the GPU follows the CPU's loss curve", "[gpu][train]") {
  SetNumThreads(1);
  const data::Dataset d = Synthetic(640, 1);
  for (const bool cnn : {false, true}) {
    for (const double momentum : {0.0, 0.9}) {
      INFO((cnn ? "small CNN" : "MLP-BN") << ", momentum " << momentum);
      Sequential<float> cpu, gpu;
      Build(cpu, cnn);
      Build(gpu, cnn);
      gpu.To(Device::kCuda);
      SgdOptions o;
      o.lr = momentum > 0 ? 0.02 : 0.1;
      o.momentum = momentum;
      RiemannianSgd<float> cpu_opt(cpu.Params(), o);
      RiemannianSgd<float> gpu_opt(gpu.Params(), o);
      const int steps = 40;
      const std::vector<double> a = LossCurve(cpu, cpu_opt, d, steps);
      const std::vector<double> b = LossCurve(gpu, gpu_opt, d, steps);
      for (int s = 0; s < steps; ++s) {
        INFO("step " << s << ": cpu " << a[s] << ", gpu " << b[s]);
        CHECK(std::abs(a[s] - b[s]) <= 2e-3 * std::max(1.0, a[s]));
      }
      CHECK(b.back() < b.front());  // it learns
      // The trained weights stay close too (oblique rows unit-norm).
      const std::vector<std::vector<float>> wc = cpu_opt.CopyValues();
      const std::vector<std::vector<float>> wg = gpu_opt.CopyValues();
      for (std::size_t i = 0; i < wc.size(); ++i) {
        INFO(cpu_opt.params()[i].name);
        CHECK(MaxSymmetricError(wg[i], wc[i], Rms(wc[i])) <= 2e-2);
      }
    }
  }
}

TEST_CASE("Train with a bold driver on the GPU decides as on the CPU",
          "[gpu][train]") {
  SetNumThreads(1);
  const data::Dataset train = Synthetic(320, 2);
  const data::Dataset validation = Synthetic(160, 3);
  std::vector<std::vector<nn::EpochReport>> reports;
  std::vector<std::vector<float>> running;
  for (const Device device : {Device::kCpu, Device::kCuda}) {
    Sequential<float> model;
    Build(model, false);
    model.To(device);
    SgdOptions o;
    o.lr = 0.5;  // large: some epochs are rejected and rolled back
    o.momentum = 0.9;
    RiemannianSgd<float> opt(model.Params(), o);
    BoldDriver<float> bold(&opt);
    nn::TrainOptions t;
    t.epochs = 4;
    t.batch_size = 32;
    t.seed = 9;
    reports.push_back(
        nn::Train(model, opt, train, &validation, nullptr, t, &bold));
    // The batch-norm running statistics after the last epoch (restored on
    // rejection), on the host.
    std::vector<float> stats;
    for (Tensor<float>* b : model.Buffers()) {
      const Tensor<float> h = b->To(Device::kCpu);
      stats.insert(stats.end(), h.data(), h.data() + h.size());
    }
    running.push_back(stats);
  }
  REQUIRE(reports[0].size() == reports[1].size());
  for (std::size_t e = 0; e < reports[0].size(); ++e) {
    INFO("epoch " << e);
    CHECK(reports[0][e].accepted == reports[1][e].accepted);
    CHECK(std::abs(reports[0][e].validation.loss -
                   reports[1][e].validation.loss) <=
          5e-3 * std::max(1.0, reports[0][e].validation.loss));
    CHECK(reports[0][e].lr == reports[1][e].lr);
  }
  CHECK(MaxSymmetricError(running[1], running[0], Rms(running[0])) <= 1e-2);
}

// Raw parameters of several kinds on the host and (guarded) on the device.
struct Params {
  std::vector<std::shared_ptr<const Manifold<float>>> manifolds;
  std::vector<std::vector<float>> host_x, host_g;
  std::vector<std::unique_ptr<Guarded<float>>> dev_x, dev_g;
  std::vector<int> groups;

  void Add(std::shared_ptr<const Manifold<float>> m, int group, int seed) {
    std::vector<float> x(static_cast<std::size_t>(m->AmbientSize()));
    m->RandomPoint(TensorView<float>(x.data(), m->rows(), m->cols()), seed);
    host_x.push_back(x);
    host_g.push_back(std::vector<float>(x.size(), 0.0f));
    dev_x.push_back(std::make_unique<Guarded<float>>(x, m->rows(), m->cols()));
    dev_g.push_back(
        std::make_unique<Guarded<float>>(host_g.back(), m->rows(), m->cols()));
    manifolds.push_back(std::move(m));
    groups.push_back(group);
  }
  static Params Mixed() {
    Params p;
    p.Add(std::make_shared<Oblique<float>>(64, 300), 0, 1);
    p.Add(std::make_shared<Euclidean<float>>(1, 64), 1, 2);
    p.Add(std::make_shared<TiedOblique<float>>(testing::MirrorPattern(16, 25)),
          0,
          3);
    p.Add(std::make_shared<Euclidean<float>>(10, 64), 2, 4);
    // Partners for MultiStep: a second oblique tensor in group 0 and a
    // second Euclidean one in group 1.
    p.Add(std::make_shared<Oblique<float>>(32, 75), 0, 5);
    p.Add(std::make_shared<Euclidean<float>>(1, 32), 1, 6);
    return p;
  }
  std::vector<Parameter<float>> Host() {
    std::vector<Parameter<float>> out;
    for (std::size_t i = 0; i < manifolds.size(); ++i) {
      const Manifold<float>& m = *manifolds[i];
      out.push_back(MakeParameter<float>("p" + std::to_string(i),
                                         host_x[i].data(),
                                         host_g[i].data(),
                                         m.rows(),
                                         m.cols(),
                                         manifolds[i],
                                         groups[i]));
    }
    return out;
  }
  std::vector<Parameter<float>> OnDevice() {
    std::vector<Parameter<float>> out;
    for (std::size_t i = 0; i < manifolds.size(); ++i) {
      Parameter<float> p;
      p.name = "p" + std::to_string(i);
      p.value = dev_x[i]->view();
      p.grad = dev_g[i]->view();
      p.manifold = manifolds[i];
      p.group = groups[i];
      out.push_back(p);
    }
    return out;
  }
  // The same fresh random gradient on both sides.
  void Gradients(std::uint64_t seed) {
    for (std::size_t i = 0; i < manifolds.size(); ++i) {
      host_g[i] =
          RandomVector<float>(std::int64_t(host_g[i].size()), seed * 16 + i);
      Copy(TensorView<const float>(
               host_g[i].data(), 1, std::int64_t(host_g[i].size())),
           TensorView<float>(dev_g[i]->view().data,
                             1,
                             std::int64_t(host_g[i].size()),
                             Device::kCuda));
    }
  }
};

SgdOptions Grouped() {
  SgdOptions o;
  o.lr = 0.05;
  o.momentum = 0.9;
  o.nesterov = true;
  o.weight_decay = 1e-3;
  o.groups[1].lr = 0.01;
  o.groups[1].weight_decay = 0.0;
  o.groups[2].momentum = 0.0;
  return o;
}

TEST_CASE("the optimizer on device parameters equals the host optimizer",
          "[gpu][optim]") {
  Params p = Params::Mixed();
  RiemannianSgd<float> host(p.Host(), Grouped());
  RiemannianSgd<float> dev(p.OnDevice(), Grouped());
  for (int s = 0; s < 25; ++s) {
    p.Gradients(100 + s);
    REQUIRE(host.Step().moved());
    REQUIRE(dev.Step().moved());
  }
  // Symmetric relative error at the data's scale: float rounding (the
  // oblique row sums are added in another order on the GPU).
  const auto hv = host.CopyValues(), dv = dev.CopyValues();
  const auto hm = host.State().momentum, dm = dev.State().momentum;
  for (std::size_t i = 0; i < hv.size(); ++i) {
    INFO("parameter " << i);
    CHECK(MaxSymmetricError(dv[i], hv[i], Rms(hv[i])) <= 2e-5);
    CHECK(MaxSymmetricError(dm[i], hm[i], Rms(hm[i]) + 1e-30) <= 2e-5);
    CHECK(p.dev_x[i]->Host().size() == hv[i].size());  // guards intact
  }
  CHECK(dm[3].empty());  // group 2: no momentum buffer
  CHECK(dev.MomentumBuffer(0).device == Device::kCuda);
  CHECK(std::abs(dev.GradientNorm() - host.GradientNorm()) <=
        1e-4 * host.GradientNorm());
}

TEST_CASE("the step plan batches a group's GPU tensors into MultiStep launches",
          "[gpu][optim]") {
  Params p = Params::Mixed();
  std::vector<StepTensor<float>> tensors;
  for (std::size_t i = 0; i < p.manifolds.size(); ++i) {
    tensors.push_back({p.manifolds[i].get(),
                       p.dev_x[i]->view(),
                       p.dev_g[i]->cview(),
                       TensorView<float>()});
  }
  // {0, 4} oblique in group 0, {1, 5} Euclidean in group 1, 2 and 3 alone.
  internal::StepPlan<float> plan(tensors, p.groups);
  CHECK(plan.num_batches() == 4);
  p.Gradients(3);
  std::vector<std::vector<float>> want;
  for (std::size_t i = 0; i < p.manifolds.size(); ++i) {
    std::vector<float> x = p.host_x[i];
    const Manifold<float>& m = *p.manifolds[i];
    StepOptions o;
    o.lr = 0.1 * double(1 + p.groups[i]);
    m.Step(TensorView<float>(x.data(), m.rows(), m.cols()),
           TensorView<const float>(p.host_g[i].data(), m.rows(), m.cols()),
           TensorView<float>(),
           o);
    want.push_back(x);
  }
  plan.Run([&](std::size_t i) {
    StepOptions o;
    o.lr = 0.1 * double(1 + p.groups[i]);
    return o;
  });
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("tensor " << i);
    CHECK(MaxSymmetricError(p.dev_x[i]->Host(), want[i], Rms(want[i])) <= 2e-6);
  }
}

TEST_CASE("a NaN gradient on the device changes nothing, bitwise",
          "[gpu][optim]") {
  Params p = Params::Mixed();
  RiemannianSgd<float> dev(p.OnDevice(), Grouped());
  p.Gradients(1);
  REQUIRE(dev.Step().moved());
  p.Gradients(2);
  // A NaN in parameter 2 at flat index 123 and an Inf later in parameter 3.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  Copy(TensorView<const float>(&nan, 1, 1),
       TensorView<float>(p.dev_g[2]->view().data + 123, 1, 1, Device::kCuda));
  Copy(TensorView<const float>(&inf, 1, 1),
       TensorView<float>(p.dev_g[3]->view().data + 7, 1, 1, Device::kCuda));
  const auto values = dev.CopyValues();
  const SgdState<float> state = dev.State();
  const StepSummary r = dev.Step();
  CHECK(r.status == StepStatus::kNonFiniteGradient);
  CHECK_THAT(r.message, Contains("'p2'"));
  CHECK_THAT(r.message, Contains("flat index 123"));
  CHECK(testing::BitwiseEqual(dev.CopyValues(), values));
  CHECK(testing::BitwiseEqual(dev.State().momentum, state.momentum));
  CHECK(dev.step_count() == 1);
  // The fused screen alone: one launch over all device gradients.
  std::vector<TensorView<const float>> grads;
  for (auto& g : p.dev_g) grads.push_back(g->cview());
  internal::GradientScreen<float> screen(grads, {"a", "b", "c", "d", "e", "f"});
  CHECK(screen.num_device_tensors() == 6);
  CHECK(screen.First().tensor == 2);
  CHECK(screen.First().index == 123);
}

TEST_CASE("bold-driver rollback on the device is bitwise", "[gpu][optim]") {
  Params p = Params::Mixed();
  RiemannianSgd<float> dev(p.OnDevice(), Grouped());
  BoldDriver<float> bold(&dev);
  p.Gradients(1);
  REQUIRE(dev.Step().moved());
  REQUIRE(bold.EndEpoch(1.0).accepted);
  const auto values = dev.CopyValues();
  const auto momentum = dev.State().momentum;
  for (int s = 0; s < 3; ++s) {
    p.Gradients(10 + s);
    REQUIRE(dev.Step().moved());
  }
  CHECK_FALSE(testing::BitwiseEqual(dev.CopyValues(), values));
  REQUIRE_FALSE(bold.EndEpoch(2.0).accepted);
  CHECK(testing::BitwiseEqual(dev.CopyValues(), values));
  CHECK(testing::BitwiseEqual(dev.State().momentum, momentum));
  CHECK(dev.step_count() == 1);
  CHECK(testing::BitwiseEqual(bold.State().values, values));
}

TEST_CASE("a checkpoint saved from the device continues bit-identically",
          "[gpu][optim]") {
  const std::string path =
      (std::filesystem::temp_directory_path() / "symopt_gpu_ckpt.bin").string();
  Params p = Params::Mixed();
  RiemannianSgd<float> dev(p.OnDevice(), Grouped());
  for (int s = 0; s < 5; ++s) {
    p.Gradients(20 + s);
    REQUIRE(dev.Step().moved());
  }
  SaveCheckpoint(path, dev);
  const auto saved_values = dev.CopyValues();
  const auto saved_momentum = dev.State().momentum;
  // Continue the original 5 more steps.
  for (int s = 0; s < 5; ++s) {
    p.Gradients(40 + s);
    REQUIRE(dev.Step().moved());
  }
  const auto continued = dev.CopyValues();
  const auto continued_m = dev.State().momentum;
  // A second device optimizer (fresh point) loads the checkpoint and takes
  // the same 5 steps: bit-identical.
  Params q = Params::Mixed();
  RiemannianSgd<float> dev2(q.OnDevice(), Grouped());
  LoadCheckpoint(path, &dev2);
  CHECK(testing::BitwiseEqual(dev2.CopyValues(), saved_values));
  CHECK(testing::BitwiseEqual(dev2.State().momentum, saved_momentum));
  for (int s = 0; s < 5; ++s) {
    q.Gradients(40 + s);
    REQUIRE(dev2.Step().moved());
  }
  CHECK(testing::BitwiseEqual(dev2.CopyValues(), continued));
  CHECK(testing::BitwiseEqual(dev2.State().momentum, continued_m));
  // A host optimizer loads it exactly, and continues within rounding.
  Params h = Params::Mixed();
  RiemannianSgd<float> host(h.Host(), Grouped());
  LoadCheckpoint(path, &host);
  CHECK(testing::BitwiseEqual(host.CopyValues(), saved_values));
  CHECK(host.step_count() == 5);
  for (int s = 0; s < 5; ++s) {
    h.Gradients(40 + s);
    REQUIRE(host.Step().moved());
  }
  const auto hv = host.CopyValues();
  for (std::size_t i = 0; i < hv.size(); ++i) {
    CHECK(MaxSymmetricError(continued[i], hv[i], Rms(hv[i])) <= 2e-5);
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace symopt
