#include "optim/sgd.h"

#include <cmath>
#include <cstring>
#include <set>
#include <sstream>
#include <type_traits>
#include <utility>

#include "blas1.h"
#include "optim_state.h"

namespace symopt {

namespace {

bool IsRate(double v) { return std::isfinite(v) && v >= 0.0; }

std::string Quoted(const std::string& name) { return "'" + name + "'"; }

}  // namespace

const char* StepStatusName(StepStatus status) {
  switch (status) {
    case StepStatus::kOk:
      return "ok";
    case StepStatus::kCollapsedRows:
      return "collapsed rows";
    case StepStatus::kNonFiniteGradient:
      return "non-finite gradient";
  }
  return "unknown";
}

bool SgdOptions::IsValid(std::string* error) const {
  std::ostringstream os;
  bool any_momentum = momentum > 0.0;
  for (const auto& [id, g] : groups) {
    if (g.momentum && *g.momentum > 0.0) any_momentum = true;
  }
  if (!IsRate(lr)) {
    os << "learning rate must be finite and >= 0, got " << lr;
  } else if (!(momentum >= 0.0 && momentum < 1.0)) {
    os << "momentum must be in [0, 1), got " << momentum;
  } else if (!IsRate(weight_decay)) {
    os << "weight decay must be finite and >= 0, got " << weight_decay;
  } else if (nesterov && !any_momentum) {
    os << "Nesterov momentum needs momentum > 0 (by default or in a group)";
  } else if (restabilize_every < 0) {
    os << "restabilize_every must be >= 0, got " << restabilize_every;
  } else if (std::isnan(point_tolerance)) {
    os << "point tolerance is NaN";
  } else {
    for (const auto& [id, g] : groups) {
      if (g.lr && !IsRate(*g.lr)) {
        os << "group " << id << ": learning rate must be finite and >= 0, got "
           << *g.lr;
      } else if (g.momentum && !(*g.momentum >= 0.0 && *g.momentum < 1.0)) {
        os << "group " << id << ": momentum must be in [0, 1), got "
           << *g.momentum;
      } else if (g.weight_decay && !IsRate(*g.weight_decay)) {
        os << "group " << id << ": weight decay must be finite and >= 0, got "
           << *g.weight_decay;
      }
      if (!os.str().empty()) break;
    }
  }
  if (error) *error = os.str();
  return os.str().empty();
}

template <typename T>
RiemannianSgd<T>::RiemannianSgd(std::vector<Parameter<T>> params,
                                SgdOptions options)
    : params_(std::move(params)), options_(std::move(options)) {
  std::string error;
  SYMOPT_CHECK(options_.IsValid(&error), "RiemannianSgd options: " << error);
  SYMOPT_CHECK(!params_.empty(), "RiemannianSgd needs at least one parameter");
  std::set<std::string> names;
  std::set<int> used_groups;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Parameter<T>& p = params_[i];
    const std::string who =
        "parameter " + Quoted(p.name) + " (index " + std::to_string(i) + ")";
    SYMOPT_CHECK(!p.name.empty(), "parameter " << i << " has no name");
    SYMOPT_CHECK(names.insert(p.name).second,
                 "duplicate parameter name " << Quoted(p.name) << " (index "
                                             << i << ")");
    SYMOPT_CHECK(p.manifold != nullptr, who << " has no manifold");
    SYMOPT_CHECK(p.value.data != nullptr, who << ": value is null");
    SYMOPT_CHECK(p.grad.data != nullptr, who << ": gradient is null");
    SYMOPT_CHECK(p.value.rows == p.manifold->rows() &&
                     p.value.cols == p.manifold->cols(),
                 who << ": value is " << p.value.rows << "x" << p.value.cols
                     << " but its manifold is " << p.manifold->Describe());
    SYMOPT_CHECK(p.grad.rows == p.value.rows && p.grad.cols == p.value.cols,
                 who << ": gradient is " << p.grad.rows << "x" << p.grad.cols
                     << " but the value is " << p.value.rows << "x"
                     << p.value.cols);
    SYMOPT_CHECK(p.grad.device == p.value.device,
                 who << ": value is on " << DeviceName(p.value.device)
                     << " but the gradient is on "
                     << DeviceName(p.grad.device));
    internal::RequireStateDevice(p.value.device, who);
    internal::CheckDeviceView<T>(p.value, who, "value");
    internal::CheckDeviceView<T>(p.grad, who, "gradient");
    const std::int64_t bad = FirstNonFinite(p.value);
    SYMOPT_CHECK(bad < 0,
                 who << ": value has a non-finite entry at flat index " << bad);
    // DistanceToManifold has no GPU path: a GPU value is checked on a host
    // copy (once, here).
    std::vector<T> host;
    const double distance =
        p.manifold->DistanceToManifold(internal::HostView<T>(p.value, &host));
    const double tol = PointTolerance(i);
    SYMOPT_CHECK(distance <= tol,
                 who << " is not on its manifold " << p.manifold->Describe()
                     << ": distance " << distance << " > tolerance " << tol
                     << " (use Manifold::ProjectPoint or RandomPoint to "
                        "initialise it)");
    used_groups.insert(p.group);
  }
  for (const auto& [id, g] : options_.groups) {
    SYMOPT_CHECK(
        used_groups.count(id) != 0,
        "options for parameter group " << id << " but no parameter is in it");
  }
  lr_ = options_.lr;
  for (const auto& [id, g] : options_.groups) {
    if (g.lr) group_lr_[id] = *g.lr;
  }
  momentum_.resize(params_.size());
  std::vector<TensorView<const T>> grads;
  std::vector<std::string> labels;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Parameter<T>& p = params_[i];
    if (ParameterStepOptions(i).momentum > 0.0) {
      momentum_[i] = StateBuffer<T>(p.value.size(), p.value.device);
    }
    grads.push_back(p.grad);
    labels.push_back("parameter " + Quoted(p.name));
  }
  screen_ = std::make_unique<internal::GradientScreen<T>>(grads, labels);
  std::vector<StepTensor<T>> tensors;
  std::vector<int> groups;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Parameter<T>& p = params_[i];
    StepTensor<T> t;
    t.manifold = p.manifold.get();
    t.x = p.value;
    t.g = p.grad;
    if (!momentum_[i].empty())
      t.m = momentum_[i].View(p.value.rows, p.value.cols);
    tensors.push_back(t);
    groups.push_back(p.group);
  }
  plan_ = std::make_unique<internal::StepPlan<T>>(tensors, groups);
}

template <typename T>
RiemannianSgd<T>::~RiemannianSgd() = default;
template <typename T>
RiemannianSgd<T>::RiemannianSgd(RiemannianSgd&&) noexcept = default;
template <typename T>
RiemannianSgd<T>& RiemannianSgd<T>::operator=(RiemannianSgd&&) noexcept =
    default;

template <typename T>
double RiemannianSgd<T>::PointTolerance(std::size_t i) const {
  return options_.point_tolerance > 0.0
             ? options_.point_tolerance
             : DefaultPointTolerance<T>(params_[i].value.rows);
}

template <typename T>
StepOptions RiemannianSgd<T>::ParameterStepOptions(std::size_t i) const {
  SYMOPT_CHECK(i < params_.size(),
               "parameter index " << i << " out of range (" << params_.size()
                                  << " parameters)");
  const int group = params_[i].group;
  StepOptions o;
  o.lr = GroupLr(group);
  o.momentum = options_.momentum;
  o.weight_decay = options_.weight_decay;
  const auto it = options_.groups.find(group);
  if (it != options_.groups.end()) {
    if (it->second.momentum) o.momentum = *it->second.momentum;
    if (it->second.weight_decay) o.weight_decay = *it->second.weight_decay;
  }
  o.nesterov = options_.nesterov && o.momentum > 0.0;
  return o;
}

template <typename T>
StepSummary RiemannianSgd<T>::Step() {
  StepSummary summary;
  // 1. Screen every gradient before anything moves (host gradients one by
  // one, all GPU gradients in one launch).
  if (options_.check_finite) {
    const internal::ScreenHit hit = screen_->First();
    if (hit.tensor >= 0) {
      const Parameter<T>& p = params_[std::size_t(hit.tensor)];
      T bad_value = T(0);
      Copy(TensorView<const T>(p.grad.data + hit.index, 1, 1, p.grad.device),
           TensorView<T>(&bad_value, 1, 1));
      std::ostringstream os;
      os << "gradient of parameter " << Quoted(p.name) << " has " << bad_value
         << " at flat index " << hit.index << " (row "
         << hit.index / p.grad.cols << ", col " << hit.index % p.grad.cols
         << "); no parameter or optimizer state was changed";
      summary.status = StepStatus::kNonFiniteGradient;
      summary.message = os.str();
      return summary;
    }
  }
  // 2. The fused step of every parameter (on the GPU, a group's Euclidean
  // and Oblique tensors in one launch each).
  const std::vector<RetractReport> reports =
      plan_->Run([this](std::size_t i) { return ParameterStepOptions(i); });
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Parameter<T>& p = params_[i];
    const RetractReport& r = reports[i];
    if (r.ok()) continue;
    if (summary.collapsed_parameter.empty()) {
      summary.collapsed_parameter = p.name;
      summary.retract.first_collapsed_row = r.first_collapsed_row;
      std::ostringstream os;
      os << "parameter " << Quoted(p.name) << ": " << r.collapsed_rows
         << " row(s) collapsed in the retraction and were kept unchanged "
            "(first: row "
         << r.first_collapsed_row << ")";
      summary.message = os.str();
    } else {
      summary.message += "; parameter " + Quoted(p.name) + ": " +
                         std::to_string(r.collapsed_rows) + " row(s) collapsed";
    }
    summary.retract.collapsed_rows += r.collapsed_rows;
    summary.status = StepStatus::kCollapsedRows;
  }
  ++step_count_;
  // 3. Periodic re-projection against accumulated rounding.
  if (options_.restabilize_every > 0 &&
      step_count_ % options_.restabilize_every == 0) {
    Restabilize();
  }
  return summary;
}

template <typename T>
void RiemannianSgd<T>::Restabilize() {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Parameter<T>& p = params_[i];
    p.manifold->ProjectPoint(p.value);
    if (!momentum_[i].empty()) {
      p.manifold->Project(p.value,
                          momentum_[i].View(p.value.rows, p.value.cols));
    }
  }
}

template <typename T>
void RiemannianSgd<T>::ZeroGrad() {
  for (Parameter<T>& p : params_) internal::ZeroView(p.grad);
}

// On host copies of GPU values and gradients (Inner has no GPU path); the
// norm is for stopping rules, not the hot path.
template <typename T>
double RiemannianSgd<T>::GradientNorm() const {
  double sum = 0.0;
  std::vector<T> r, x_host;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Parameter<T>& p = params_[i];
    const StepOptions o = ParameterStepOptions(i);
    const std::int64_t n = p.value.size();
    const TensorView<const T> x = internal::HostView<T>(p.value, &x_host);
    r.resize(std::size_t(n));
    const TensorView<T> rv(r.data(), p.value.rows, p.value.cols);
    Copy(TensorView<const T>(p.grad), rv);
    if (o.weight_decay != 0.0) {
      cpu::Axpby(T(o.weight_decay), x.data, T(1), r.data(), n);
    }
    p.manifold->EgradToRgrad(x, rv);
    sum += p.manifold->Inner(x, rv, rv);
  }
  return std::sqrt(sum);
}

template <typename T>
void RiemannianSgd<T>::SetLr(double lr) {
  SYMOPT_CHECK(IsRate(lr), "learning rate must be finite and >= 0, got " << lr);
  lr_ = lr;
}

template <typename T>
double RiemannianSgd<T>::GroupLr(int group) const {
  const auto it = group_lr_.find(group);
  return it == group_lr_.end() ? lr_ : it->second;
}

template <typename T>
void RiemannianSgd<T>::SetGroupLr(int group, double lr) {
  SYMOPT_CHECK(IsRate(lr),
               "group " << group
                        << ": learning rate must be finite and >= 0, got "
                        << lr);
  bool used = false;
  for (const Parameter<T>& p : params_) used = used || p.group == group;
  SYMOPT_CHECK(used, "no parameter is in group " << group);
  group_lr_[group] = lr;
}

template <typename T>
void RiemannianSgd<T>::ScaleLr(double factor) {
  SYMOPT_CHECK(std::isfinite(factor) && factor > 0.0,
               "learning-rate factor must be finite and > 0, got " << factor);
  // Validate every product first, so nothing changes on failure.
  SYMOPT_CHECK(IsRate(lr_ * factor),
               "learning rate " << lr_ << " * " << factor << " overflows");
  for (const auto& [id, lr] : group_lr_) {
    SYMOPT_CHECK(IsRate(lr * factor),
                 "group " << id << ": learning rate " << lr << " * " << factor
                          << " overflows");
  }
  lr_ *= factor;
  for (auto& [id, lr] : group_lr_) lr *= factor;
}

template <typename T>
TensorView<const T> RiemannianSgd<T>::MomentumBuffer(std::size_t i) const {
  SYMOPT_CHECK(i < params_.size(),
               "parameter index " << i << " out of range (" << params_.size()
                                  << " parameters)");
  if (momentum_[i].empty()) return {};
  return momentum_[i].View(params_[i].value.rows, params_[i].value.cols);
}

template <typename T>
SgdState<T> RiemannianSgd<T>::State() const {
  SgdState<T> s;
  s.step_count = step_count_;
  s.lr = lr_;
  s.group_lr = group_lr_;
  s.momentum.reserve(momentum_.size());
  for (const StateBuffer<T>& m : momentum_) s.momentum.push_back(m.ToHost());
  return s;
}

template <typename T>
void RiemannianSgd<T>::SetState(const SgdState<T>& s) {
  SYMOPT_CHECK(s.step_count >= 0,
               "optimizer state: step count " << s.step_count << " < 0");
  SYMOPT_CHECK(
      IsRate(s.lr),
      "optimizer state: learning rate must be finite and >= 0, got " << s.lr);
  for (const auto& [id, lr] : s.group_lr) {
    SYMOPT_CHECK(
        IsRate(lr),
        "optimizer state: group " << id << " has learning rate " << lr);
    bool used = false;
    for (const Parameter<T>& p : params_) used = used || p.group == id;
    SYMOPT_CHECK(used,
                 "optimizer state: group " << id << " has no parameter here");
  }
  SYMOPT_CHECK(s.momentum.size() == params_.size(),
               "optimizer state has " << s.momentum.size()
                                      << " momentum buffers, the optimizer has "
                                      << params_.size() << " parameters");
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const bool has = !momentum_[i].empty();
    const std::size_t want = has ? std::size_t(momentum_[i].size()) : 0;
    SYMOPT_CHECK(s.momentum[i].size() == want,
                 "optimizer state: momentum buffer of parameter "
                     << Quoted(params_[i].name) << " has "
                     << s.momentum[i].size() << " entries, expected " << want
                     << (has ? "" : " (its group has no momentum)"));
  }
  step_count_ = s.step_count;
  lr_ = s.lr;
  group_lr_ = s.group_lr;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    momentum_[i].FromHost(s.momentum[i]);
  }
}

template <typename T>
std::vector<std::vector<T>> RiemannianSgd<T>::CopyValues() const {
  std::vector<std::vector<T>> values(params_.size());
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Parameter<T>& p = params_[i];
    values[i].resize(std::size_t(p.value.size()));
    Copy(TensorView<const T>(p.value),
         TensorView<T>(values[i].data(), p.value.rows, p.value.cols));
  }
  return values;
}

template <typename T>
void RiemannianSgd<T>::SetValues(const std::vector<std::vector<T>>& values) {
  SYMOPT_CHECK(values.size() == params_.size(),
               "got " << values.size()
                      << " parameter values, the optimizer has "
                      << params_.size() << " parameters");
  for (std::size_t i = 0; i < params_.size(); ++i) {
    SYMOPT_CHECK(std::int64_t(values[i].size()) == params_[i].value.size(),
                 "value for parameter "
                     << Quoted(params_[i].name) << " has " << values[i].size()
                     << " entries, expected " << params_[i].value.size());
  }
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Parameter<T>& p = params_[i];
    Copy(TensorView<const T>(values[i].data(), p.value.rows, p.value.cols),
         p.value);
  }
}

template <typename T>
void RiemannianSgd<T>::TakeSnapshot(SgdSnapshot<T>* snapshot) const {
  SYMOPT_CHECK(snapshot != nullptr, "TakeSnapshot: snapshot is null");
  // Reuse the buffers where they fit (same size and device), else allocate.
  auto fit = [](StateBuffer<T>* b, std::int64_t n, Device device) {
    if (b->size() != n || b->device() != device) {
      *b = StateBuffer<T>(n, device);
    }
  };
  snapshot->values.resize(params_.size());
  snapshot->momentum.resize(params_.size());
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Parameter<T>& p = params_[i];
    fit(&snapshot->values[i], p.value.size(), p.value.device);
    snapshot->values[i].CopyFrom(p.value);
    fit(&snapshot->momentum[i], momentum_[i].size(), p.value.device);
    if (!momentum_[i].empty()) {
      snapshot->momentum[i].CopyFrom(MomentumBuffer(i));
    }
  }
  snapshot->step_count = step_count_;
}

template <typename T>
void RiemannianSgd<T>::RestoreSnapshot(const SgdSnapshot<T>& s) {
  SYMOPT_CHECK(
      s.values.size() == params_.size() && s.momentum.size() == params_.size(),
      "snapshot has " << s.values.size() << " values and " << s.momentum.size()
                      << " momentum buffers, the optimizer has "
                      << params_.size() << " parameters");
  SYMOPT_CHECK(s.step_count >= 0,
               "snapshot: step count " << s.step_count << " < 0");
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Parameter<T>& p = params_[i];
    SYMOPT_CHECK(
        s.values[i].size() == p.value.size() &&
            s.values[i].device() == p.value.device &&
            s.momentum[i].size() == momentum_[i].size() &&
            (s.momentum[i].empty() || s.momentum[i].device() == p.value.device),
        "snapshot of parameter "
            << Quoted(p.name) << " has " << s.values[i].size() << " values on "
            << DeviceName(s.values[i].device()) << " and "
            << s.momentum[i].size() << " momentum entries; expected "
            << p.value.size() << " and " << momentum_[i].size() << " on "
            << DeviceName(p.value.device));
  }
  for (std::size_t i = 0; i < params_.size(); ++i) {
    s.values[i].CopyTo(params_[i].value);
    if (!momentum_[i].empty()) {
      s.momentum[i].CopyTo(
          momentum_[i].View(params_[i].value.rows, params_[i].value.cols));
    }
  }
  step_count_ = s.step_count;
}

template class RiemannianSgd<float>;
template class RiemannianSgd<double>;

}  // namespace symopt
