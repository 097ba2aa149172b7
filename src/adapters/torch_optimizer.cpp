// The LibTorch adapter (include/adapters/torch.h): validation of torch
// tensors, the binding of their storage to a RiemannianSgd, the step, and
// the optimizer archive.
#include <ATen/core/ivalue.h>
#include <c10/core/TensorImpl.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>
#include <utility>

#include "adapters/torch.h"
#include "file_io.h"
#include "manifolds/euclidean.h"
#include "manifolds/oblique.h"

namespace symopt {
namespace {

constexpr std::int64_t kArchiveFormat = 1;

std::string Who(const std::string& name, std::size_t i) {
  return "parameter '" + name + "' (index " + std::to_string(i) + ")";
}

template <typename T>
const char* DtypeName() {
  return sizeof(T) == 4 ? "float32" : "float64";
}

// Throws InvalidArgument naming `who` unless t is a defined, CPU, dense,
// contiguous tensor of dtype T with `numel` entries.
template <typename T>
void CheckTensor(const torch::Tensor& t,
                 const std::string& who,
                 const char* what,
                 std::int64_t numel) {
  SYMOPT_CHECK(t.defined(), who << ": " << what << " is an undefined tensor");
  SYMOPT_CHECK(t.layout() == torch::kStrided,
               who << ": " << what << " has layout " << t.layout()
                   << "; the adapter takes dense (strided) tensors only");
  SYMOPT_CHECK(t.device().is_cpu(),
               who << ": " << what << " is on " << t.device().str()
                   << "; this adapter takes CPU tensors only");
  const auto want = torch::CppTypeToScalarType<T>::value;
  SYMOPT_CHECK(t.scalar_type() == want,
               who << ": " << what << " has dtype " << t.scalar_type()
                   << " but this optimizer is " << DtypeName<T>()
                   << " (one floating dtype per optimizer: "
                      "TorchRiemannianSgd<float> for float32, <double> for "
                      "float64)");
  SYMOPT_CHECK(t.is_contiguous(),
               who << ": " << what << " is not contiguous (strides "
                   << t.strides() << "); call .contiguous() on it first");
  SYMOPT_CHECK(t.numel() == numel,
               who << ": " << what << " has " << t.numel() << " entries (shape "
                   << t.sizes() << ") but " << numel << " are expected");
}

// Throws InvalidArgument naming both parameters unless the byte ranges of
// the tensors (value pointer, numel) are pairwise disjoint.
template <typename T>
void CheckDisjoint(const std::vector<TorchParameter<T>>& params,
                   const std::vector<std::size_t>& which) {
  std::vector<std::pair<const T*, std::size_t>> ranges;
  ranges.reserve(which.size());
  for (std::size_t i : which) {
    ranges.emplace_back(params[i].tensor.template data_ptr<T>(), i);
  }
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t k = 1; k < ranges.size(); ++k) {
    const std::size_t a = ranges[k - 1].second, b = ranges[k].second;
    SYMOPT_CHECK(
        ranges[k - 1].first + params[a].tensor.numel() <= ranges[k].first,
        Who(params[a].name, a)
            << " and " << Who(params[b].name, b)
            << " share storage; every parameter needs its own memory");
  }
}

template <typename T>
void CheckManifold(const TorchParameter<T>& p, const std::string& who) {
  SYMOPT_CHECK(p.manifold != nullptr, who << " has no manifold");
}

// Parameter checks made once, at construction (the value must also be on its
// manifold, within the tolerance RiemannianSgd uses).
template <typename T>
void CheckNewParameter(const TorchParameter<T>& p,
                       std::size_t i,
                       const SgdOptions& options) {
  const std::string who = Who(p.name, i);
  SYMOPT_CHECK(!p.name.empty(), "parameter " << i << " has no name");
  CheckManifold(p, who);
  CheckTensor<T>(p.tensor, who, "value", p.manifold->AmbientSize());
  SYMOPT_CHECK(p.tensor.is_leaf(),
               who << " is not a leaf tensor (it was computed by autograd); "
                      "optimize the tensor it came from");
  SYMOPT_CHECK(p.tensor.requires_grad(),
               who << " does not require grad (requires_grad_() it, or leave "
                      "it out of the optimizer)");
  const TensorView<const T> view(
      p.tensor.template data_ptr<T>(), p.manifold->rows(), p.manifold->cols());
  for (std::int64_t k = 0; k < view.size(); ++k) {
    SYMOPT_CHECK(std::isfinite(double(view.data[k])),
                 who << ": value has a non-finite entry at flat index " << k);
  }
  const double distance = p.manifold->DistanceToManifold(view);
  const double tol = options.point_tolerance > 0.0
                         ? options.point_tolerance
                         : DefaultPointTolerance<T>(p.manifold->rows());
  SYMOPT_CHECK(distance <= tol,
               who << " is not on its manifold " << p.manifold->Describe()
                   << ": distance " << distance << " > tolerance " << tol
                   << " (use ProjectToManifold to initialise it)");
}

// Validates everything and returns the torch param groups: one per group
// id, in increasing id order, parameters in the order given.
template <typename T>
std::vector<torch::optim::OptimizerParamGroup> MakeGroups(
    const std::vector<TorchParameter<T>>& params, const SgdOptions& options) {
  std::string error;
  SYMOPT_CHECK(options.IsValid(&error),
               "TorchRiemannianSgd options: " << error);
  SYMOPT_CHECK(!params.empty(), "TorchRiemannianSgd needs a parameter");
  std::set<std::string> names;
  std::map<int, std::vector<torch::Tensor>> by_group;
  std::vector<std::size_t> all;
  for (std::size_t i = 0; i < params.size(); ++i) {
    CheckNewParameter(params[i], i, options);
    SYMOPT_CHECK(names.insert(params[i].name).second,
                 "duplicate parameter name '" << params[i].name << "' (index "
                                              << i << ")");
    by_group[params[i].group].push_back(params[i].tensor);
    all.push_back(i);
  }
  CheckDisjoint(params, all);
  for (const auto& [id, g] : options.groups) {
    SYMOPT_CHECK(
        by_group.count(id) != 0,
        "options for parameter group " << id << " but no parameter is in it");
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (auto& [id, tensors] : by_group) {
    const auto it = options.groups.find(id);
    const GroupOptions g =
        it == options.groups.end() ? GroupOptions{} : it->second;
    groups.emplace_back(std::move(tensors),
                        std::make_unique<TorchSgdGroupOptions>(
                            g.lr.value_or(options.lr),
                            g.momentum.value_or(options.momentum),
                            g.weight_decay.value_or(options.weight_decay)));
  }
  return groups;
}

template <typename T>
std::int64_t RowsOf(const torch::Tensor& t) {
  return t.dim() == 0 ? 1 : t.size(0);
}

}  // namespace

template <typename T>
TorchParameter<T> TorchEuclideanParameter(std::string name,
                                          torch::Tensor tensor,
                                          int group) {
  SYMOPT_CHECK(tensor.defined() && tensor.numel() >= 1,
               "parameter '" << name << "': an empty or undefined tensor");
  const std::int64_t rows = RowsOf<T>(tensor);
  auto m = std::make_shared<Euclidean<T>>(rows, tensor.numel() / rows);
  return {std::move(name), std::move(tensor), std::move(m), group};
}

template <typename T>
TorchParameter<T> TorchObliqueParameter(std::string name,
                                        torch::Tensor tensor,
                                        int group) {
  SYMOPT_CHECK(tensor.defined() && tensor.numel() >= 1,
               "parameter '" << name << "': an empty or undefined tensor");
  SYMOPT_CHECK(tensor.dim() >= 2,
               "parameter '" << name << "' has shape " << tensor.sizes()
                             << ": an oblique manifold over dim 0 needs a "
                                "weight with >= 2 dims (Linear [out, in], "
                                "Conv [out, in, kh, kw]); for one unit vector "
                                "give Oblique(1, n) explicitly");
  const std::int64_t rows = tensor.size(0);
  auto m = std::make_shared<Oblique<T>>(rows, tensor.numel() / rows);
  return {std::move(name), std::move(tensor), std::move(m), group};
}

template <typename T>
void ProjectToManifold(const TorchParameter<T>& p) {
  const std::string who = "parameter '" + p.name + "'";
  CheckManifold(p, who);
  CheckTensor<T>(p.tensor, who, "value", p.manifold->AmbientSize());
  p.manifold->ProjectPoint(TensorView<T>(
      p.tensor.template data_ptr<T>(), p.manifold->rows(), p.manifold->cols()));
  p.tensor.unsafeGetTensorImpl()->bump_version();
}

// The pointers one step works on: the parameters with a gradient, in order,
// and (value, gradient) data pointers of each.
template <typename T>
struct TorchRiemannianSgd<T>::Binding {
  std::vector<std::size_t> active;
  std::vector<const void*> pointers;
};

template <typename T>
TorchRiemannianSgd<T>::TorchRiemannianSgd(std::vector<TorchParameter<T>> params,
                                          SgdOptions options)
    : torch::optim::Optimizer(
          MakeGroups(params, options),
          std::make_unique<TorchSgdGroupOptions>(
              options.lr, options.momentum, options.weight_decay)),
      params_(std::move(params)),
      options_(std::move(options)) {
  std::map<int, std::size_t> index;
  for (const auto& p : params_) index.emplace(p.group, 0);
  for (auto& [id, k] : index) {
    k = group_ids_.size();
    group_ids_.push_back(id);
  }
  members_.resize(group_ids_.size());
  has_momentum_.resize(params_.size());
  parked_.resize(params_.size());
  for (std::size_t i = 0; i < params_.size(); ++i) {
    members_[index[params_[i].group]].push_back(i);
    const auto it = options_.groups.find(params_[i].group);
    const double beta = it != options_.groups.end() && it->second.momentum
                            ? *it->second.momentum
                            : options_.momentum;
    has_momentum_[i] = beta > 0.0;
    if (has_momentum_[i]) {
      parked_[i].assign(std::size_t(params_[i].tensor.numel()), T(0));
    }
  }
}

template <typename T>
TorchRiemannianSgd<T>::~TorchRiemannianSgd() = default;

template <typename T>
std::int64_t TorchRiemannianSgd<T>::step_count() const {
  return sgd_ ? sgd_->step_count() : step_count_;
}

template <typename T>
int TorchRiemannianSgd<T>::GroupId(std::size_t k) const {
  SYMOPT_CHECK(k < group_ids_.size(),
               "param group " << k << " out of range (" << group_ids_.size()
                              << " groups)");
  return group_ids_[k];
}

template <typename T>
std::size_t TorchRiemannianSgd<T>::GroupIndex(int group) const {
  const auto it = std::find(group_ids_.begin(), group_ids_.end(), group);
  SYMOPT_CHECK(it != group_ids_.end(), "no parameter is in group " << group);
  return std::size_t(it - group_ids_.begin());
}

template <typename T>
void TorchRiemannianSgd<T>::CheckGroupsUnchanged() const {
  const char* fix =
      "; the param groups are fixed at construction (build a new "
      "TorchRiemannianSgd to change them)";
  SYMOPT_CHECK(param_groups_.size() == group_ids_.size(),
               "the optimizer has " << param_groups_.size()
                                    << " param groups, it was built with "
                                    << group_ids_.size() << fix);
  for (std::size_t k = 0; k < group_ids_.size(); ++k) {
    const auto& tensors = param_groups_[k].params();
    const auto& members = members_[k];
    SYMOPT_CHECK(tensors.size() == members.size(),
                 "param group " << k << " (group " << group_ids_[k] << ") has "
                                << tensors.size() << " tensors, it was built "
                                << "with " << members.size() << fix);
    for (std::size_t j = 0; j < members.size(); ++j) {
      const std::size_t i = members[j];
      SYMOPT_CHECK(tensors[j].unsafeGetTensorImpl() ==
                       params_[i].tensor.unsafeGetTensorImpl(),
                   "param group " << k << ", entry " << j << " is no longer "
                                  << Who(params_[i].name, i) << fix);
    }
    SYMOPT_CHECK(param_groups_[k].has_options() &&
                     dynamic_cast<const TorchSgdGroupOptions*>(
                         &param_groups_[k].options()) != nullptr,
                 "param group " << k << " has options that are not "
                                << "TorchSgdGroupOptions" << fix);
  }
}

template <typename T>
std::map<int, double> TorchRiemannianSgd<T>::GroupLrs() const {
  std::map<int, double> lrs;
  for (std::size_t k = 0; k < group_ids_.size(); ++k) {
    const double lr = param_groups_[k].options().get_lr();
    SYMOPT_CHECK(std::isfinite(lr) && lr >= 0.0,
                 "param group " << k << " (group " << group_ids_[k]
                                << "): learning rate must be finite and >= "
                                << "0, got " << lr);
    lrs[group_ids_[k]] = lr;
  }
  return lrs;
}

template <typename T>
typename TorchRiemannianSgd<T>::Binding TorchRiemannianSgd<T>::Gather() const {
  Binding b;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const TorchParameter<T>& p = params_[i];
    const std::string who = Who(p.name, i);
    CheckTensor<T>(p.tensor, who, "value", p.manifold->AmbientSize());
    const torch::Tensor& g = p.tensor.grad();
    if (!g.defined()) continue;  // skipped, as torch's SGD does
    CheckTensor<T>(g, who, "gradient", p.tensor.numel());
    SYMOPT_CHECK(g.sizes() == p.tensor.sizes(),
                 who << ": gradient has shape " << g.sizes()
                     << " but the value has " << p.tensor.sizes());
    b.active.push_back(i);
    b.pointers.push_back(p.tensor.data_ptr());
    b.pointers.push_back(g.data_ptr());
  }
  return b;
}

template <typename T>
std::vector<std::vector<T>> TorchRiemannianSgd<T>::AllMomentum() const {
  std::vector<std::vector<T>> all = parked_;
  for (std::size_t k = 0; k < active_.size(); ++k) {
    const TensorView<const T> m = sgd_->MomentumBuffer(k);
    if (!m.empty()) all[active_[k]].assign(m.data, m.data + m.size());
  }
  return all;
}

template <typename T>
void TorchRiemannianSgd<T>::Bind(const Binding& b) {
  if (sgd_ && b.active == active_ && b.pointers == bound_) return;
  CheckDisjoint(params_, b.active);
  const std::map<int, double> lrs = GroupLrs();
  std::vector<std::vector<T>> all = AllMomentum();
  std::vector<Parameter<T>> ps;
  std::set<int> groups;
  SgdState<T> state;
  state.step_count = step_count();
  state.lr = options_.lr;
  for (std::size_t i : b.active) {
    const TorchParameter<T>& p = params_[i];
    ps.push_back(MakeParameter<T>(p.name,
                                  p.tensor.template data_ptr<T>(),
                                  p.tensor.grad().template data_ptr<T>(),
                                  p.manifold->rows(),
                                  p.manifold->cols(),
                                  p.manifold,
                                  p.group));
    groups.insert(p.group);
    state.group_lr[p.group] = lrs.at(p.group);
    state.momentum.push_back(all[i]);
  }
  SgdOptions o = options_;
  for (auto it = o.groups.begin(); it != o.groups.end();) {
    it = groups.count(it->first) ? std::next(it) : o.groups.erase(it);
  }
  // Build and fill the new optimizer (either may throw), then commit.
  auto fresh = std::make_unique<RiemannianSgd<T>>(std::move(ps), o);
  fresh->SetState(state);
  for (std::size_t i : b.active) std::vector<T>().swap(all[i]);
  parked_ = std::move(all);
  step_count_ = state.step_count;
  sgd_ = std::move(fresh);
  active_ = b.active;
  bound_ = b.pointers;
}

template <typename T>
torch::Tensor TorchRiemannianSgd<T>::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  CheckGroupsUnchanged();
  const Binding b = Gather();
  if (b.active.empty()) {
    last_summary_ = StepSummary{};
    return loss;
  }
  const std::map<int, double> lrs = GroupLrs();
  Bind(b);
  for (std::size_t i : active_) {
    sgd_->SetGroupLr(params_[i].group, lrs.at(params_[i].group));
  }
  last_summary_ = sgd_->Step();
  if (!last_summary_.moved()) throw NumericalError(last_summary_.message);
  for (std::size_t i : active_) {
    params_[i].tensor.unsafeGetTensorImpl()->bump_version();
  }
  return loss;
}

template <typename T>
SgdState<T> TorchRiemannianSgd<T>::State() const {
  SgdState<T> s;
  s.step_count = step_count();
  s.lr = options_.lr;
  for (std::size_t k = 0; k < group_ids_.size(); ++k) {
    s.group_lr[group_ids_[k]] = param_groups_[k].options().get_lr();
  }
  s.momentum = AllMomentum();
  return s;
}

template <typename T>
void TorchRiemannianSgd<T>::save(
    torch::serialize::OutputArchive& archive) const {
  using c10::IValue;
  const SgdState<T> s = State();
  archive.write("symopt/format", IValue(kArchiveFormat));
  archive.write("symopt/dtype", IValue(std::string(DtypeName<T>())));
  archive.write("symopt/step_count", IValue(s.step_count));
  archive.write("symopt/num_groups", IValue(std::int64_t(group_ids_.size())));
  for (std::size_t k = 0; k < group_ids_.size(); ++k) {
    const std::string key = "symopt/group/" + std::to_string(k);
    archive.write(key + "/id", IValue(std::int64_t(group_ids_[k])));
    archive.write(key + "/lr", IValue(s.group_lr.at(group_ids_[k])));
  }
  archive.write("symopt/num_params", IValue(std::int64_t(params_.size())));
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const TorchParameter<T>& p = params_[i];
    const std::string key = "symopt/param/" + std::to_string(i);
    archive.write(key + "/name", IValue(p.name));
    archive.write(key + "/manifold", IValue(p.manifold->Describe()));
    if (!has_momentum_[i]) continue;
    auto m = torch::from_blob(const_cast<T*>(s.momentum[i].data()),
                              {p.manifold->rows(), p.manifold->cols()},
                              torch::CppTypeToScalarType<T>::value);
    archive.write(key + "/momentum", m.clone(), /*is_buffer=*/true);
  }
}

namespace {

// Typed reads of one archive entry; FileError when it is missing or of
// another type (the archive is not a TorchRiemannianSgd state).
c10::IValue ReadEntry(torch::serialize::InputArchive& archive,
                      const std::string& key) {
  c10::IValue v;
  bool found = false;
  try {
    found = archive.try_read(key, v);
  } catch (const c10::Error&) {
    found = false;
  }
  if (!found) {
    throw FileError("optimizer archive: no entry '" + key +
                    "' (not a symopt TorchRiemannianSgd state?)");
  }
  return v;
}

std::int64_t ReadInt(torch::serialize::InputArchive& archive,
                     const std::string& key) {
  const c10::IValue v = ReadEntry(archive, key);
  if (!v.isInt()) {
    throw FileError("optimizer archive: entry '" + key + "' is not an integer");
  }
  return v.toInt();
}

double ReadDouble(torch::serialize::InputArchive& archive,
                  const std::string& key) {
  const c10::IValue v = ReadEntry(archive, key);
  if (!v.isDouble()) {
    throw FileError("optimizer archive: entry '" + key + "' is not a double");
  }
  return v.toDouble();
}

std::string ReadString(torch::serialize::InputArchive& archive,
                       const std::string& key) {
  const c10::IValue v = ReadEntry(archive, key);
  if (!v.isString()) {
    throw FileError("optimizer archive: entry '" + key + "' is not a string");
  }
  return v.toStringRef();
}

}  // namespace

template <typename T>
void TorchRiemannianSgd<T>::load(torch::serialize::InputArchive& archive) {
  const std::int64_t format = ReadInt(archive, "symopt/format");
  if (format != kArchiveFormat) {
    throw FileError("optimizer archive: format version " +
                    std::to_string(format) + ", this build reads " +
                    std::to_string(kArchiveFormat));
  }
  const std::string dtype = ReadString(archive, "symopt/dtype");
  SYMOPT_CHECK(dtype == DtypeName<T>(),
               "optimizer archive holds " << dtype << " state, this optimizer "
                                          << "is " << DtypeName<T>());
  const std::int64_t step_count = ReadInt(archive, "symopt/step_count");
  SYMOPT_CHECK(step_count >= 0,
               "optimizer archive: step count " << step_count << " < 0");
  const std::int64_t num_groups = ReadInt(archive, "symopt/num_groups");
  SYMOPT_CHECK(num_groups == std::int64_t(group_ids_.size()),
               "optimizer archive has " << num_groups << " param groups, "
                                        << "this optimizer "
                                        << group_ids_.size());
  std::vector<double> lrs;
  for (std::size_t k = 0; k < group_ids_.size(); ++k) {
    const std::string key = "symopt/group/" + std::to_string(k);
    const std::int64_t id = ReadInt(archive, key + "/id");
    SYMOPT_CHECK(id == group_ids_[k],
                 "optimizer archive: param group " << k << " is group " << id
                                                   << ", here group "
                                                   << group_ids_[k]);
    lrs.push_back(ReadDouble(archive, key + "/lr"));
    SYMOPT_CHECK(std::isfinite(lrs.back()) && lrs.back() >= 0.0,
                 "optimizer archive: group " << id << " has learning rate "
                                             << lrs.back());
  }
  const std::int64_t num_params = ReadInt(archive, "symopt/num_params");
  SYMOPT_CHECK(num_params == std::int64_t(params_.size()),
               "optimizer archive has " << num_params << " parameters, this "
                                        << "optimizer " << params_.size());
  std::vector<std::vector<T>> momentum(params_.size());
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const TorchParameter<T>& p = params_[i];
    const std::string who = Who(p.name, i);
    const std::string key = "symopt/param/" + std::to_string(i);
    const std::string name = ReadString(archive, key + "/name");
    const std::string kind = ReadString(archive, key + "/manifold");
    SYMOPT_CHECK(name == p.name && kind == p.manifold->Describe(),
                 "optimizer archive: parameter "
                     << i << " is '" << name << "' on " << kind << ", here "
                     << who << " on " << p.manifold->Describe());
    torch::Tensor m;
    bool found = false;
    try {
      found = archive.try_read(key + "/momentum", m, /*is_buffer=*/true);
    } catch (const c10::Error&) {
      found = false;
    }
    SYMOPT_CHECK(found == has_momentum_[i],
                 "optimizer archive: " << who
                                       << (found ? " has a momentum buffer "
                                                   "but its group has no "
                                                   "momentum here"
                                                 : " has no momentum buffer "
                                                   "but its group has "
                                                   "momentum here"));
    if (!found) continue;
    CheckTensor<T>(m, who, "archived momentum", p.manifold->AmbientSize());
    const T* data = m.template data_ptr<T>();
    for (std::int64_t k = 0; k < m.numel(); ++k) {
      SYMOPT_CHECK(std::isfinite(double(data[k])),
                   "optimizer archive: " << who << ": momentum has a "
                                         << "non-finite entry at flat index "
                                         << k);
    }
    momentum[i].assign(data, data + m.numel());
  }
  // Everything checked: commit. The next step() re-binds from parked_.
  parked_ = std::move(momentum);
  sgd_.reset();
  active_.clear();
  bound_.clear();
  step_count_ = step_count;
  for (std::size_t k = 0; k < group_ids_.size(); ++k) {
    param_groups_[k].options().set_lr(lrs[k]);
  }
}

template <typename T>
void TorchRiemannianSgd<T>::SaveToFile(const std::string& path) const {
  const std::string prefix = "optimizer state '" + path + "': ";
  torch::serialize::OutputArchive archive;
  save(archive);
  std::ostringstream os;
  try {
    archive.save_to(os);
  } catch (const c10::Error& e) {
    throw FileError(prefix + e.what_without_backtrace());
  }
  const std::string bytes = os.str();
  internal::WriteFileAtomic(
      path, std::vector<std::uint8_t>(bytes.begin(), bytes.end()), prefix);
}

template <typename T>
void TorchRiemannianSgd<T>::LoadFromFile(const std::string& path) {
  const std::string prefix = "optimizer state '" + path + "': ";
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const c10::Error& e) {
    throw FileError(prefix + "cannot read: " + e.what_without_backtrace());
  }
  try {
    load(archive);
  } catch (const FileError& e) {
    throw FileError(prefix + e.what());
  } catch (const InvalidArgument& e) {
    throw InvalidArgument(prefix + e.what());
  }
}

#define SYMOPT_INSTANTIATE_TORCH(T)                      \
  template class TorchRiemannianSgd<T>;                  \
  template TorchParameter<T> TorchEuclideanParameter<T>( \
      std::string, torch::Tensor, int);                  \
  template TorchParameter<T> TorchObliqueParameter<T>(   \
      std::string, torch::Tensor, int);                  \
  template void ProjectToManifold<T>(const TorchParameter<T>&);

SYMOPT_INSTANTIATE_TORCH(float)
SYMOPT_INSTANTIATE_TORCH(double)
#undef SYMOPT_INSTANTIATE_TORCH

}  // namespace symopt
