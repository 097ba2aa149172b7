// The LibTorch adapter (include/adapters/torch.h): its steps are bitwise
// those of RiemannianSgd over raw buffers; a LibTorch model trains with
// unit-norm conv filters; re-bound gradients keep momentum; parameters
// without a gradient are skipped; NaN gradients and bad input change nothing;
// torch LR schedulers drive the rate; the state round-trips bit-identically.
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "adapters/torch.h"  // first: the header compiles on its own
#include "catch.h"
#include "manifolds/euclidean.h"
#include "manifolds/oblique.h"

namespace symopt {
namespace {

using Catch::Matchers::Contains;

template <typename T>
constexpr torch::ScalarType kDtype = torch::CppTypeToScalarType<T>::value;

template <typename T>
torch::Tensor Randn(torch::IntArrayRef shape, std::uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randn(shape, torch::TensorOptions().dtype(kDtype<T>));
}

template <typename T>
bool BitwiseEqual(const torch::Tensor& a, const T* b) {
  return std::memcmp(a.data_ptr(), b, a.numel() * sizeof(T)) == 0;
}

bool BitwiseEqual(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() &&
         std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()) == 0;
}

// Three leaf tensors as a user's model would hold them: a conv weight and a
// matrix on oblique manifolds, a Euclidean bias in `bias_group`.
template <typename T>
std::vector<TorchParameter<T>> MakeTorchParams(int bias_group) {
  std::vector<TorchParameter<T>> ps;
  ps.push_back(TorchObliqueParameter<T>(
      "conv.weight", Randn<T>({4, 3, 2, 2}, 1).requires_grad_()));
  ps.push_back(TorchEuclideanParameter<T>(
      "fc.bias", Randn<T>({5}, 2).requires_grad_(), bias_group));
  ps.push_back(TorchObliqueParameter<T>("fc.weight",
                                        Randn<T>({3, 6}, 3).requires_grad_()));
  for (const auto& p : ps) ProjectToManifold(p);
  return ps;
}

// The same parameters over plain buffers (copies of the initial values).
template <typename T>
struct RawParams {
  std::vector<std::vector<T>> values, grads;
  std::vector<Parameter<T>> params;

  explicit RawParams(const std::vector<TorchParameter<T>>& ps) {
    values.resize(ps.size());
    grads.resize(ps.size());
    for (std::size_t i = 0; i < ps.size(); ++i) {
      const T* v = ps[i].tensor.template data_ptr<T>();
      values[i].assign(v, v + ps[i].tensor.numel());
      grads[i].assign(values[i].size(), T(0));
      params.push_back(MakeParameter<T>(ps[i].name,
                                        values[i].data(),
                                        grads[i].data(),
                                        ps[i].manifold->rows(),
                                        ps[i].manifold->cols(),
                                        ps[i].manifold,
                                        ps[i].group));
    }
  }
};

// Sets parameter i's gradient (torch and raw) to a reproducible random
// tensor: a freshly allocated grad on even steps (the adapter must re-bind),
// in place on odd steps.
template <typename T>
void SetGradient(const TorchParameter<T>& p,
                 std::vector<T>* raw,
                 int step,
                 std::uint64_t seed) {
  const torch::Tensor g = Randn<T>(p.tensor.sizes(), seed * 1000 + step);
  if (step % 2 == 0 || !p.tensor.grad().defined()) {
    p.tensor.mutable_grad() = g.clone();
  } else {
    p.tensor.mutable_grad().copy_(g);
  }
  std::memcpy(raw->data(), g.data_ptr(), g.nbytes());
}

template <typename T>
void RequireSameState(const SgdState<T>& a, const SgdState<T>& b) {
  REQUIRE(a.step_count == b.step_count);
  REQUIRE(a.momentum == b.momentum);  // exact: bitwise for finite values
}

template <typename T>
void RequireMatchesReference(SgdOptions options, int bias_group) {
  auto ps = MakeTorchParams<T>(bias_group);
  RawParams<T> raw(ps);
  TorchRiemannianSgd<T> opt(ps, options);
  RiemannianSgd<T> ref(raw.params, options);
  for (int step = 0; step < 6; ++step) {
    for (std::size_t i = 0; i < ps.size(); ++i) {
      SetGradient(ps[i], &raw.grads[i], step, i + 1);
    }
    opt.step();
    REQUIRE(ref.Step().moved());
    for (std::size_t i = 0; i < ps.size(); ++i) {
      INFO("step " << step << ", parameter " << ps[i].name);
      REQUIRE(BitwiseEqual(ps[i].tensor, raw.values[i].data()));
    }
    RequireSameState(opt.State(), ref.State());
  }
  REQUIRE(opt.step_count() == 6);
}

TEMPLATE_TEST_CASE("torch adapter steps equal RiemannianSgd bitwise",
                   "[torch][optim]",
                   float,
                   double) {
  torch::set_num_threads(1);
  SgdOptions o;
  o.lr = 0.05;
  SECTION("plain") { RequireMatchesReference<TestType>(o, 0); }
  SECTION("momentum") {
    o.momentum = 0.9;
    RequireMatchesReference<TestType>(o, 0);
  }
  SECTION("nesterov") {
    o.momentum = 0.8;
    o.nesterov = true;
    RequireMatchesReference<TestType>(o, 0);
  }
  SECTION("weight decay") {
    o.momentum = 0.5;
    o.weight_decay = 0.1;
    RequireMatchesReference<TestType>(o, 0);
  }
  SECTION("two groups with different lr and momentum") {
    o.momentum = 0.9;
    o.groups[1].lr = 0.2;
    o.groups[1].momentum = 0.0;
    RequireMatchesReference<TestType>(o, 1);
  }
}

TEST_CASE("torch adapter maps symopt groups to torch param groups",
          "[torch][optim]") {
  SgdOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  o.groups[3].lr = 0.01;
  o.groups[3].weight_decay = 0.5;
  TorchRiemannianSgd<double> opt(MakeTorchParams<double>(3), o);
  REQUIRE(opt.param_groups().size() == 2);
  REQUIRE(opt.GroupId(0) == 0);
  REQUIRE(opt.GroupId(1) == 3);
  REQUIRE(opt.GroupIndex(3) == 1);
  REQUIRE(opt.param_groups()[0].params().size() == 2);
  REQUIRE(opt.param_groups()[1].params().size() == 1);
  const auto& g1 =
      static_cast<const TorchSgdGroupOptions&>(opt.param_groups()[1].options());
  REQUIRE(g1.lr() == 0.01);
  REQUIRE(g1.momentum() == 0.9);
  REQUIRE(g1.weight_decay() == 0.5);
  REQUIRE_THROWS_AS(opt.GroupIndex(7), InvalidArgument);
}

// ---- a small LibTorch model -------------------------------------------------

torch::nn::Sequential MakeNet(std::uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::Sequential(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3).bias(false)),
      torch::nn::BatchNorm2d(4),
      torch::nn::ReLU(),
      torch::nn::Flatten(),
      torch::nn::Linear(4 * 6 * 6, 2));
}

// The conv filters on the oblique manifold (projected there), everything
// else Euclidean in group 1.
std::vector<TorchParameter<float>> NetParams(torch::nn::Sequential& net) {
  std::vector<TorchParameter<float>> ps;
  for (const auto& item : net->named_parameters()) {
    if (item.key() == "0.weight") {
      ps.push_back(TorchObliqueParameter<float>(item.key(), item.value()));
      ProjectToManifold(ps.back());
    } else {
      ps.push_back(TorchEuclideanParameter<float>(item.key(), item.value(), 1));
    }
  }
  return ps;
}

struct Data {
  torch::Tensor x, y;
};

Data MakeData() {
  torch::manual_seed(77);
  Data d;
  d.x = torch::randn({64, 1, 8, 8});
  // Label: is the centre brighter than the border?
  const torch::Tensor centre = d.x.index({torch::indexing::Slice(),
                                          0,
                                          torch::indexing::Slice(2, 6),
                                          torch::indexing::Slice(2, 6)})
                                   .mean({1, 2});
  d.y = (centre > d.x.mean({1, 2, 3})).to(torch::kLong);
  return d;
}

SgdOptions NetOptions() {
  SgdOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  o.nesterov = true;
  o.groups[1].lr = 0.05;
  return o;
}

double WorstFilterNormError(const torch::Tensor& w) {
  const torch::Tensor norms =
      w.detach().reshape({w.size(0), -1}).to(torch::kDouble).norm(2, 1);
  return (norms - 1.0).abs().max().item<double>();
}

TEST_CASE("torch adapter trains a LibTorch CNN with unit-norm filters",
          "[torch][optim]") {
  torch::set_num_threads(1);
  torch::nn::Sequential net = MakeNet(5);
  const Data d = MakeData();
  TorchRiemannianSgd<float> opt(NetParams(net), NetOptions());
  const torch::Tensor conv = net->named_parameters()["0.weight"];
  auto closure = [&] {
    opt.zero_grad();
    torch::Tensor loss =
        torch::nn::functional::cross_entropy(net->forward(d.x), d.y);
    loss.backward();
    return loss;
  };
  const double initial = closure().item<double>();
  double last = initial;
  for (int step = 0; step < 40; ++step) {
    const torch::Tensor loss = opt.step(closure);
    REQUIRE(loss.defined());
    REQUIRE(loss.requires_grad());  // the closure ran with grad mode on
    last = loss.item<double>();
    REQUIRE(WorstFilterNormError(conv) < 1e-6);
  }
  INFO("loss " << initial << " -> " << last);
  REQUIRE(last < 0.6 * initial);
  REQUIRE(opt.step_count() == 40);
  REQUIRE(opt.last_summary().status == StepStatus::kOk);
}

// Trains `steps` full-batch steps; set_to_none zeroes the grads the way
// Module::zero_grad(true) does, keeping the old grad tensors alive so the
// new ones must land at new addresses.
void TrainNet(torch::nn::Sequential& net,
              TorchRiemannianSgd<float>& opt,
              const Data& d,
              int steps,
              bool set_to_none) {
  std::vector<torch::Tensor> old_grads;
  for (int step = 0; step < steps; ++step) {
    if (set_to_none) {
      for (const auto& p : net->parameters()) {
        if (p.grad().defined()) old_grads.push_back(p.grad());
      }
      net->zero_grad(/*set_to_none=*/true);
      for (const auto& p : net->parameters()) REQUIRE(!p.grad().defined());
    } else {
      opt.zero_grad();
    }
    torch::nn::functional::cross_entropy(net->forward(d.x), d.y).backward();
    opt.step();
  }
}

std::vector<torch::Tensor> Values(torch::nn::Sequential& net) {
  std::vector<torch::Tensor> v;
  for (const auto& p : net->parameters()) v.push_back(p.detach().clone());
  return v;
}

void RequireSameValues(torch::nn::Sequential& net,
                       const std::vector<torch::Tensor>& want) {
  const std::vector<torch::Tensor> got = Values(net);
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("parameter " << i);
    REQUIRE(BitwiseEqual(got[i], want[i]));
  }
}

TEST_CASE("torch adapter re-binds re-allocated gradients and keeps momentum",
          "[torch][optim]") {
  torch::set_num_threads(1);
  const Data d = MakeData();
  torch::nn::Sequential a = MakeNet(9), b = MakeNet(9);
  TorchRiemannianSgd<float> opt_a(NetParams(a), NetOptions());
  TorchRiemannianSgd<float> opt_b(NetParams(b), NetOptions());
  TrainNet(a, opt_a, d, 8, false);
  TrainNet(b, opt_b, d, 8, true);
  RequireSameValues(b, Values(a));
  RequireSameState(opt_b.State(), opt_a.State());
  // A value whose storage moved (set_data) is re-bound too.
  for (const auto& p : b->parameters()) p.set_data(p.detach().clone());
  TrainNet(a, opt_a, d, 3, false);
  TrainNet(b, opt_b, d, 3, false);
  RequireSameValues(b, Values(a));
}

TEST_CASE("torch adapter: autograd sees the in-place update",
          "[torch][optim]") {
  auto ps = MakeTorchParams<float>(0);
  TorchRiemannianSgd<float> opt(ps);
  const torch::Tensor& w = ps[2].tensor;
  (w * w).sum().backward();
  // A graph that saved w before the step must not backpropagate through the
  // changed value: the step bumps w's version counter, as torch's in-place
  // optimizers do.
  const torch::Tensor stale = (w * w).sum();
  const auto version = w._version();
  opt.step();
  REQUIRE(w._version() > version);
  REQUIRE_THROWS_AS(stale.backward(), c10::Error);
}

TEST_CASE("torch adapter skips parameters without a gradient",
          "[torch][optim]") {
  SgdOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  auto ps = MakeTorchParams<double>(0);
  TorchRiemannianSgd<double> opt(ps, o);
  // References: each parameter alone, stepped only when it has a gradient
  // (parameters step independently, so this is what skipping means).
  std::vector<RawParams<double>> raw;
  std::vector<std::unique_ptr<RiemannianSgd<double>>> ref;
  for (const auto& p : ps) {
    raw.emplace_back(std::vector<TorchParameter<double>>{p});
  }
  for (auto& r : raw) {
    ref.push_back(std::make_unique<RiemannianSgd<double>>(r.params, o));
  }
  // Parameter 1 has no gradient in steps 1 and 2; none has one in step 3.
  for (int step = 0; step < 5; ++step) {
    for (std::size_t i = 0; i < ps.size(); ++i) {
      const bool has = step != 3 && !(i == 1 && (step == 1 || step == 2));
      if (has) {
        SetGradient(ps[i], &raw[i].grads[0], step, i + 1);
        REQUIRE(ref[i]->Step().moved());
      } else {
        ps[i].tensor.mutable_grad().reset();
      }
    }
    const torch::Tensor before = ps[1].tensor.detach().clone();
    opt.step();
    for (std::size_t i = 0; i < ps.size(); ++i) {
      INFO("step " << step << ", parameter " << i);
      REQUIRE(BitwiseEqual(ps[i].tensor, raw[i].values[0].data()));
      REQUIRE(opt.State().momentum[i] == ref[i]->State().momentum[0]);
    }
    if (step == 1 || step == 2) REQUIRE(BitwiseEqual(ps[1].tensor, before));
  }
  REQUIRE(opt.step_count() == 4);  // step 3 moved nothing
}

// Three parameters after one momentum step, with a record of their values
// and the optimizer's state to check that a failed step changed nothing.
struct SteppedParams {
  std::vector<TorchParameter<float>> ps = MakeTorchParams<float>(0);
  RawParams<float> raw{ps};
  TorchRiemannianSgd<float> opt{ps, Options()};
  std::vector<torch::Tensor> before;
  SgdState<float> state;

  static SgdOptions Options() {
    SgdOptions o;
    o.lr = 0.1;
    o.momentum = 0.9;
    return o;
  }
  SteppedParams() {
    for (std::size_t i = 0; i < ps.size(); ++i) {
      SetGradient(ps[i], &raw.grads[i], 0, i + 1);
    }
    opt.step();
    for (const auto& p : ps) before.push_back(p.tensor.detach().clone());
    state = opt.State();
  }
  void RequireUntouched() const {
    for (std::size_t i = 0; i < ps.size(); ++i) {
      REQUIRE(BitwiseEqual(ps[i].tensor, before[i]));
    }
    RequireSameState(opt.State(), state);
  }
};

TEST_CASE("torch adapter: a NaN gradient throws and changes nothing",
          "[torch][optim]") {
  SteppedParams s;
  s.ps[2].tensor.mutable_grad().view(-1)[7].fill_(std::nan(""));
  REQUIRE_THROWS_AS(s.opt.step(), NumericalError);
  REQUIRE_THROWS_WITH(s.opt.step(), Contains("fc.weight") && Contains("nan"));
  REQUIRE(s.opt.last_summary().status == StepStatus::kNonFiniteGradient);
  s.RequireUntouched();
  s.ps[2].tensor.mutable_grad().view(-1)[7].fill_(0.0);
  s.opt.step();
  REQUIRE(s.opt.step_count() == 2);
}

// ---- bad input
// ----------------------------------------------------------------

template <typename Fn>
void RequireInvalid(Fn&& fn, const std::string& needle) {
  REQUIRE_THROWS_AS(fn(), InvalidArgument);
  REQUIRE_THROWS_WITH(fn(), Contains(needle));
}

TorchParameter<float> Leaf(std::string name, torch::Tensor t) {
  return TorchEuclideanParameter<float>(std::move(name), std::move(t));
}

TEST_CASE("torch adapter rejects bad parameters at construction",
          "[torch][optim]") {
  auto good = TorchObliqueParameter<float>(
      "good", Randn<float>({3, 4}, 4).requires_grad_());
  ProjectToManifold(good);
  auto make = [&](TorchParameter<float> bad) {
    return [good, bad] { TorchRiemannianSgd<float>({good, bad}); };
  };
  // A device other than the CPU (this LibTorch has no CUDA: the meta device
  // takes the same path as a CUDA tensor).
  RequireInvalid(make(Leaf("dev", torch::empty({3}, torch::kMeta))),
                 "parameter 'dev' (index 1): value is on meta");
  RequireInvalid(make(Leaf("sparse", torch::eye(3).to_sparse())),
                 "parameter 'sparse' (index 1): value has layout Sparse");
  RequireInvalid(
      make(Leaf("strided", Randn<float>({4, 3}, 5).t().requires_grad_())),
      "parameter 'strided' (index 1): value is not contiguous");
  RequireInvalid(make(Leaf("int", torch::zeros({3}, torch::kLong))),
                 "parameter 'int' (index 1): value has dtype Long");
  RequireInvalid(
      make(Leaf("double", torch::zeros({3}, torch::kDouble).requires_grad_())),
      "parameter 'double' (index 1): value has dtype Double but this "
      "optimizer is float32");
  {
    TorchParameter<float> p{"shape",
                            torch::zeros({3, 5}).requires_grad_(),
                            std::make_shared<Oblique<float>>(3, 4)};
    RequireInvalid(make(p),
                   "parameter 'shape' (index 1): value has 15 entries");
  }
  {
    auto p = TorchObliqueParameter<float>(
        "off", Randn<float>({3, 4}, 6).requires_grad_());
    RequireInvalid(make(p), "parameter 'off' (index 1) is not on its manifold");
  }
  {
    const torch::Tensor leaf = torch::ones({3}).requires_grad_();
    RequireInvalid(make(Leaf("computed", leaf * 2)),
                   "parameter 'computed' (index 1) is not a leaf");
    RequireInvalid(make(Leaf("frozen", torch::ones({3}))),
                   "parameter 'frozen' (index 1) does not require grad");
  }
  {
    // Another handle to the good tensor, and a view into its storage.
    RequireInvalid(make(Leaf("alias", good.tensor)), "share storage");
    auto view = Leaf("view", good.tensor.detach().view(-1).narrow(0, 2, 3));
    view.tensor.requires_grad_();
    RequireInvalid(make(view), "share storage");
  }
  RequireInvalid(make(Leaf("good", torch::ones({3}).requires_grad_())),
                 "duplicate parameter name 'good'");
  RequireInvalid([] { TorchRiemannianSgd<float>({}); }, "needs a parameter");
  RequireInvalid(
      [&] {
        SgdOptions o;
        o.groups[4].lr = 0.1;
        TorchRiemannianSgd<float>({good}, o);
      },
      "group 4");
  RequireInvalid([] { TorchObliqueParameter<float>("vec", torch::ones({5})); },
                 ">= 2 dims");
}

TEST_CASE("torch adapter rejects bad gradients and changes at step time",
          "[torch][optim]") {
  SteppedParams s;
  auto& ps = s.ps;
  auto& opt = s.opt;
  const torch::Tensor good_grad = ps[1].tensor.grad();
  auto require_untouched = [&] { s.RequireUntouched(); };
  auto step = [&] { opt.step(); };
  const std::string who = "parameter 'fc.bias' (index 1)";

  ps[1].tensor.mutable_grad() = good_grad.to_sparse();
  RequireInvalid(step, who + ": gradient has layout Sparse");
  ps[1].tensor.mutable_grad() = good_grad.to(torch::kDouble);
  RequireInvalid(step, who + ": gradient has dtype Double");
  ps[1].tensor.mutable_grad() = torch::zeros({6});
  RequireInvalid(step, who + ": gradient has 6 entries");
  ps[1].tensor.mutable_grad() = good_grad.reshape({5, 1});
  RequireInvalid(step, who + ": gradient has shape [5, 1]");
  ps[1].tensor.mutable_grad() = good_grad;
  require_untouched();

  // A value replaced by one of another size, or moved off its manifold.
  {
    const torch::Tensor keep = ps[1].tensor.detach().clone();
    ps[1].tensor.set_data(torch::zeros({7}));
    RequireInvalid(step, who + ": value has 7 entries");
    ps[1].tensor.set_data(keep);
    const torch::Tensor w = ps[0].tensor.detach().clone();
    ps[0].tensor.set_data(w * 2);
    RequireInvalid(step, "parameter 'conv.weight' (index 0) is not on its");
    ps[0].tensor.set_data(w);
  }
  // Learning rates from the torch options are validated.
  opt.param_groups()[0].options().set_lr(-1.0);
  RequireInvalid(step, "learning rate must be finite and >= 0, got -1");
  opt.param_groups()[0].options().set_lr(0.1);
  require_untouched();
  // The param groups are fixed at construction.
  opt.add_param_group(
      torch::optim::OptimizerParamGroup({torch::ones({2}).requires_grad_()}));
  RequireInvalid(step, "param groups are fixed at construction");
}

TEST_CASE("torch adapter follows torch LR schedulers", "[torch][optim]") {
  SgdOptions o;
  o.lr = 0.2;
  o.momentum = 0.9;
  auto ps = MakeTorchParams<double>(0);
  RawParams<double> raw(ps);
  TorchRiemannianSgd<double> opt(ps, o);
  RiemannianSgd<double> ref(raw.params, o);
  torch::optim::StepLR scheduler(opt, /*step_size=*/1, /*gamma=*/0.5);
  for (int step = 0; step < 4; ++step) {
    for (std::size_t i = 0; i < ps.size(); ++i) {
      SetGradient(ps[i], &raw.grads[i], step, i + 1);
    }
    opt.step();
    REQUIRE(ref.Step().moved());
    // StepLR's first step() keeps the rate (its step count is 0), every
    // later one halves it.
    scheduler.step();
    if (step >= 1) ref.ScaleLr(0.5);
    for (std::size_t i = 0; i < ps.size(); ++i) {
      REQUIRE(BitwiseEqual(ps[i].tensor, raw.values[i].data()));
    }
  }
  REQUIRE(opt.param_groups()[0].options().get_lr() == 0.2 / 8);
  REQUIRE(opt.State().group_lr.at(0) == ref.GroupLr(0));
}

// ---- save / load
// ----------------------------------------------------------------

std::string TempPath(const std::string& stem) {
  return "/tmp/symopt_torch_" + std::to_string(::getpid()) + "_" + stem;
}

TEST_CASE("torch adapter state round-trips bit-identically", "[torch][optim]") {
  torch::set_num_threads(1);
  const Data d = MakeData();
  torch::nn::Sequential a = MakeNet(11);
  TorchRiemannianSgd<float> opt_a(NetParams(a), NetOptions());
  TrainNet(a, opt_a, d, 5, false);
  opt_a.param_groups()[1].options().set_lr(0.03);  // saved with the state
  std::stringstream model_bytes, opt_bytes;
  torch::save(a, model_bytes);
  torch::save(opt_a, opt_bytes);
  const std::string path = TempPath("opt.pt");
  opt_a.SaveToFile(path);
  TrainNet(a, opt_a, d, 5, false);
  const std::vector<torch::Tensor> want = Values(a);

  for (const bool from_file : {false, true}) {
    INFO((from_file ? "SaveToFile/LoadFromFile" : "torch::save/torch::load"));
    torch::nn::Sequential b = MakeNet(12);  // other weights
    TorchRiemannianSgd<float> opt_b(NetParams(b), NetOptions());
    model_bytes.seekg(0);
    opt_bytes.seekg(0);
    torch::load(b, model_bytes);  // set_: the storage moves
    if (from_file) {
      opt_b.LoadFromFile(path);
    } else {
      torch::load(opt_b, opt_bytes);
    }
    REQUIRE(opt_b.step_count() == 5);
    REQUIRE(opt_b.param_groups()[1].options().get_lr() == 0.03);
    TrainNet(b, opt_b, d, 5, false);
    RequireSameValues(b, want);
    RequireSameState(opt_b.State(), opt_a.State());
  }
  std::remove(path.c_str());
}

TEST_CASE("torch adapter refuses a state that does not fit", "[torch][optim]") {
  SgdOptions o;
  o.momentum = 0.9;
  TorchRiemannianSgd<float> opt(MakeTorchParams<float>(0), o);
  const SgdState<float> state = opt.State();
  auto save = [](const torch::optim::Optimizer& from) {
    auto bytes = std::make_shared<std::stringstream>();
    torch::save(from, *bytes);
    return bytes;
  };
  auto load = [&](const std::shared_ptr<std::stringstream>& bytes) {
    return [&opt, bytes] {
      bytes->seekg(0);
      torch::load(opt, *bytes);
    };
  };
  {
    TorchRiemannianSgd<double> other(MakeTorchParams<double>(0), o);
    RequireInvalid(load(save(other)), "holds float64 state");
  }
  {
    auto ps = MakeTorchParams<float>(0);
    ps[2].name = "renamed";
    TorchRiemannianSgd<float> other(ps, o);
    RequireInvalid(load(save(other)), "parameter 2 is 'renamed'");
  }
  {
    TorchRiemannianSgd<float> other(MakeTorchParams<float>(0), SgdOptions{});
    RequireInvalid(load(save(other)), "has no momentum buffer");
  }
  {
    SgdOptions two = o;
    two.groups[1].lr = 0.5;
    TorchRiemannianSgd<float> other(MakeTorchParams<float>(1), two);
    RequireInvalid(load(save(other)), "2 param groups");
  }
  {
    // A torch optimizer's archive is not this format.
    auto w = torch::ones({2}).requires_grad_();
    torch::optim::SGD sgd({w}, torch::optim::SGDOptions(0.1));
    REQUIRE_THROWS_AS(load(save(sgd))(), FileError);
  }
  RequireSameState(opt.State(), state);
  const std::string missing = TempPath("missing.pt");
  REQUIRE_THROWS_AS(opt.LoadFromFile(missing), FileError);
  REQUIRE_THROWS_WITH(opt.LoadFromFile(missing), Contains(missing));
  // SaveToFile into a directory that does not exist fails cleanly.
  REQUIRE_THROWS_AS(opt.SaveToFile(TempPath("no_dir/opt.pt")), FileError);
}

}  // namespace
}  // namespace symopt
