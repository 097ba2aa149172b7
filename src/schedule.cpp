#include "optim/schedule.h"

#include <cmath>
#include <sstream>

#include "manifolds/check.h"

namespace symopt {

bool PlateauOptions::IsValid(std::string* error) const {
  std::ostringstream os;
  if (!(factor > 0.0 && factor < 1.0)) {
    os << "plateau decay: factor must be in (0, 1), got " << factor;
  } else if (patience < 1) {
    os << "plateau decay: patience must be >= 1, got " << patience;
  } else if (!(min_delta >= 0.0 && std::isfinite(min_delta))) {
    os << "plateau decay: min_delta must be finite and >= 0, got " << min_delta;
  } else if (max_decays < -1) {
    os << "plateau decay: max_decays must be >= 0 or -1 (unlimited), got "
       << max_decays;
  }
  if (error) *error = os.str();
  return os.str().empty();
}

const char* PlateauActionName(PlateauAction action) {
  switch (action) {
    case PlateauAction::kNone:
      return "none";
    case PlateauAction::kDecay:
      return "decay";
    case PlateauAction::kExhausted:
      return "exhausted";
  }
  return "unknown";
}

PlateauDecay::PlateauDecay(PlateauOptions options) : options_(options) {
  std::string error;
  SYMOPT_CHECK(options_.IsValid(&error), error);
}

PlateauAction PlateauDecay::EndEpoch(double loss) {
  if (std::isfinite(loss) && loss < state_.best - options_.min_delta) {
    state_.best = loss;
    state_.epochs_without_improvement = 0;
    return PlateauAction::kNone;
  }
  if (std::isfinite(loss) && loss < state_.best) state_.best = loss;
  if (++state_.epochs_without_improvement < options_.patience) {
    return PlateauAction::kNone;
  }
  state_.epochs_without_improvement = 0;
  if (options_.max_decays >= 0 && state_.decays >= options_.max_decays) {
    return PlateauAction::kExhausted;
  }
  ++state_.decays;
  return PlateauAction::kDecay;
}

void PlateauDecay::SetState(const PlateauState& state) {
  SYMOPT_CHECK(state.epochs_without_improvement >= 0 && state.decays >= 0,
               "plateau state: negative counters");
  SYMOPT_CHECK(!std::isnan(state.best), "plateau state: best loss is NaN");
  state_ = state;
}

const char* StopReasonName(StopReason reason) {
  switch (reason) {
    case StopReason::kContinue:
      return "continue";
    case StopReason::kNonFiniteLoss:
      return "non-finite loss";
    case StopReason::kGradientTolerance:
      return "gradient norm below tolerance";
    case StopReason::kLossTarget:
      return "training loss reached its target";
    case StopReason::kValidationPatience:
      return "validation loss stopped improving";
    case StopReason::kMaxEpochs:
      return "maximum number of epochs";
  }
  return "unknown";
}

bool StoppingOptions::IsValid(std::string* error) const {
  std::ostringstream os;
  if (max_epochs < 1) {
    os << "stopping rule: max_epochs must be >= 1, got " << max_epochs;
  } else if (min_epochs < 0 || min_epochs > max_epochs) {
    os << "stopping rule: min_epochs must be in [0, max_epochs], got "
       << min_epochs;
  } else if (!(gradient_tolerance >= 0.0 &&
               std::isfinite(gradient_tolerance))) {
    os << "stopping rule: gradient_tolerance must be finite and >= 0, got "
       << gradient_tolerance;
  } else if (std::isnan(loss_target)) {
    os << "stopping rule: loss_target is NaN";
  } else if (patience < 0) {
    os << "stopping rule: patience must be >= 0, got " << patience;
  } else if (!(min_delta >= 0.0 && std::isfinite(min_delta))) {
    os << "stopping rule: min_delta must be finite and >= 0, got " << min_delta;
  }
  if (error) *error = os.str();
  return os.str().empty();
}

StoppingRule::StoppingRule(StoppingOptions options) : options_(options) {
  std::string error;
  SYMOPT_CHECK(options_.IsValid(&error), error);
}

StopReason StoppingRule::EndEpoch(const EpochReport& r) {
  ++state_.epochs;
  if (r.validation_loss) {
    const double v = *r.validation_loss;
    if (std::isfinite(v) && v < state_.best_validation - options_.min_delta) {
      state_.best_validation = v;
      state_.best_epoch = state_.epochs;
      state_.epochs_without_improvement = 0;
    } else {
      ++state_.epochs_without_improvement;
    }
  }
  if (!std::isfinite(r.train_loss) ||
      (r.validation_loss && !std::isfinite(*r.validation_loss))) {
    return StopReason::kNonFiniteLoss;
  }
  const bool armed = state_.epochs >= options_.min_epochs;
  if (armed && options_.gradient_tolerance > 0.0 && r.gradient_norm &&
      *r.gradient_norm <= options_.gradient_tolerance) {
    return StopReason::kGradientTolerance;
  }
  if (armed && r.train_loss <= options_.loss_target) {
    return StopReason::kLossTarget;
  }
  if (armed && options_.patience > 0 &&
      state_.epochs_without_improvement >= options_.patience) {
    return StopReason::kValidationPatience;
  }
  if (state_.epochs >= options_.max_epochs) return StopReason::kMaxEpochs;
  return StopReason::kContinue;
}

void StoppingRule::SetState(const StoppingState& state) {
  SYMOPT_CHECK(state.epochs >= 0 && state.best_epoch >= 0 &&
                   state.epochs_without_improvement >= 0,
               "stopping state: negative counters");
  SYMOPT_CHECK(!std::isnan(state.best_validation),
               "stopping state: best validation loss is NaN");
  state_ = state;
}

}  // namespace symopt
