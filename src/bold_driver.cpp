#include "optim/bold_driver.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace symopt {

bool BoldDriverOptions::IsValid(std::string* error) const {
  std::ostringstream os;
  if (!(std::isfinite(up) && up >= 1.0)) {
    os << "bold driver: up must be finite and >= 1, got " << up;
  } else if (!(down > 0.0 && down < 1.0)) {
    os << "bold driver: down must be in (0, 1), got " << down;
  } else if (!(min_lr >= 0.0 && std::isfinite(min_lr))) {
    os << "bold driver: min_lr must be finite and >= 0, got " << min_lr;
  } else if (!(max_lr >= min_lr)) {
    os << "bold driver: max_lr (" << max_lr << ") must be >= min_lr (" << min_lr
       << ")";
  }
  if (error) *error = os.str();
  return os.str().empty();
}

template <typename T>
BoldDriver<T>::BoldDriver(RiemannianSgd<T>* optimizer,
                          BoldDriverOptions options)
    : optimizer_(optimizer), options_(options) {
  std::string error;
  SYMOPT_CHECK(options_.IsValid(&error), error);
  SYMOPT_CHECK(optimizer_ != nullptr, "bold driver: optimizer is null");
  SYMOPT_CHECK(optimizer_->lr() > 0.0,
               "bold driver: the optimizer's learning rate must be > 0, got "
                   << optimizer_->lr());
  TakeSnapshot();
}

template <typename T>
void BoldDriver<T>::TakeSnapshot() {
  optimizer_->TakeSnapshot(&snapshot_);
}

template <typename T>
BoldDriverState<T> BoldDriver<T>::State() const {
  BoldDriverState<T> s = state_;
  s.values.reserve(snapshot_.values.size());
  s.momentum.reserve(snapshot_.momentum.size());
  for (const StateBuffer<T>& v : snapshot_.values)
    s.values.push_back(v.ToHost());
  for (const StateBuffer<T>& m : snapshot_.momentum) {
    s.momentum.push_back(m.ToHost());
  }
  s.step_count = snapshot_.step_count;
  return s;
}

template <typename T>
void BoldDriver<T>::ScaleLrClamped(double factor) {
  const double lr = optimizer_->lr();
  if (lr == 0.0) return;
  const double target =
      std::min(std::max(lr * factor, options_.min_lr), options_.max_lr);
  if (target > 0.0 && target != lr) optimizer_->ScaleLr(target / lr);
}

template <typename T>
StepResult BoldDriver<T>::EndEpoch(double loss) {
  StepResult result;
  result.loss = loss;
  const bool finite = std::isfinite(loss);
  if (finite && (!state_.has_baseline || loss <= state_.best_loss)) {
    const bool grow = state_.has_baseline;
    state_.has_baseline = true;
    state_.best_loss = loss;
    ++state_.accepted;
    TakeSnapshot();
    if (grow) ScaleLrClamped(options_.up);
    result.accepted = true;
  } else {
    // Roll back to the snapshot: values, momentum and step count; the
    // learning rates are the current ones, shrunk.
    optimizer_->RestoreSnapshot(snapshot_);
    ++state_.rejected;
    ScaleLrClamped(options_.down);
    result.accepted = false;
  }
  result.lr = optimizer_->lr();
  return result;
}

template <typename T>
void BoldDriver<T>::SetState(const BoldDriverState<T>& state) {
  const std::vector<Parameter<T>>& params = optimizer_->params();
  SYMOPT_CHECK(
      !state.has_baseline || std::isfinite(state.best_loss),
      "bold driver state: best loss " << state.best_loss << " is not finite");
  SYMOPT_CHECK(
      state.accepted >= 0 && state.rejected >= 0 && state.step_count >= 0,
      "bold driver state: negative counters");
  SYMOPT_CHECK(state.values.size() == params.size() &&
                   state.momentum.size() == params.size(),
               "bold driver state: snapshot has "
                   << state.values.size() << " values and "
                   << state.momentum.size()
                   << " momentum buffers, the optimizer has " << params.size()
                   << " parameters");
  for (std::size_t i = 0; i < params.size(); ++i) {
    const std::int64_t n = params[i].value.size();
    const std::int64_t want_m = optimizer_->MomentumBuffer(i).empty() ? 0 : n;
    SYMOPT_CHECK(std::int64_t(state.values[i].size()) == n &&
                     std::int64_t(state.momentum[i].size()) == want_m,
                 "bold driver state: snapshot of parameter '"
                     << params[i].name << "' has " << state.values[i].size()
                     << " values and " << state.momentum[i].size()
                     << " momentum entries, expected " << n << " and "
                     << want_m);
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    snapshot_.values[i].FromHost(state.values[i]);
    snapshot_.momentum[i].FromHost(state.momentum[i]);
  }
  snapshot_.step_count = state.step_count;
  state_ = state;
  state_.values.clear();
  state_.momentum.clear();
}

template class BoldDriver<float>;
template class BoldDriver<double>;

}  // namespace symopt
