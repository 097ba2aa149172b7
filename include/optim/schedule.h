// Learning-rate step decay on a plateau, and stopping rules.
//
// PlateauDecay (paper 000: "the learning rate is first set to 0.01, trained
// until the validation accuracy holds relatively steady and divided by a
// factor of 10", repeated down to 1e-5). Feed it the monitored loss once per
// epoch. An epoch IMPROVES when loss < best - min_delta (best: the lowest
// loss seen so far); a non-finite loss never improves. After `patience`
// epochs in a row without improvement the schedule decays: it returns
// kDecay (the caller multiplies its learning rates by `factor`, e.g.
// RiemannianSgd::ScaleLr, or passes the optimizer to the overload that does
// it) and starts counting again. Once `max_decays` decays have happened, the
// next plateau returns kExhausted instead (nothing is scaled): the schedule
// has nothing left to try, a natural moment to stop.
//
// StoppingRule (the criteria of paper 001's protocol and the usual ones):
// feed it an EpochReport once per epoch; it returns the reason to stop, or
// StopReason::kContinue. Checked in this order:
//   kNonFiniteLoss       the training or validation loss is NaN/Inf (any epoch)
//   kGradientTolerance   gradient_norm <= gradient_tolerance   (> 0 enables)
//   kLossTarget          train_loss <= loss_target             (finite enables)
//   kValidationPatience  no validation improvement (loss < best - min_delta)
//                        for `patience` epochs in a row         (> 0 enables)
//   kMaxEpochs           `max_epochs` epochs have been reported
// The rules with a threshold (gradient, target, patience) do not fire before
// min_epochs epochs have been reported; kNonFiniteLoss and kMaxEpochs always
// do. Reports without a gradient norm or validation loss skip those rules.
//
// Both are plain host-side bookkeeping (a few numbers); State()/SetState let
// training loops checkpoint them next to the optimizer.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

namespace symopt {

struct PlateauOptions {
  double factor = 0.1;     // in (0, 1)
  int patience = 5;        // >= 1 epochs without improvement
  double min_delta = 0.0;  // >= 0: required improvement (absolute)
  int max_decays = -1;     // >= 0 limits the decays; -1: unlimited

  bool IsValid(std::string* error) const;
};

enum class PlateauAction { kNone, kDecay, kExhausted };
const char* PlateauActionName(PlateauAction action);

struct PlateauState {
  double best = std::numeric_limits<double>::infinity();
  int epochs_without_improvement = 0;
  int decays = 0;
};

class PlateauDecay {
 public:
  // Requires: options.IsValid() (throws InvalidArgument otherwise).
  explicit PlateauDecay(PlateauOptions options = {});

  // Records one epoch's monitored loss; see the header comment.
  PlateauAction EndEpoch(double loss);
  // The same, and on kDecay calls optimizer->ScaleLr(options().factor).
  // Optimizer: anything with ScaleLr(double), e.g. RiemannianSgd<T>.
  template <typename Optimizer>
  PlateauAction EndEpoch(double loss, Optimizer* optimizer) {
    const PlateauAction action = EndEpoch(loss);
    if (action == PlateauAction::kDecay) optimizer->ScaleLr(options_.factor);
    return action;
  }

  const PlateauOptions& options() const { return options_; }
  const PlateauState& State() const { return state_; }
  // Requires: counters >= 0; best not NaN.
  void SetState(const PlateauState& state);

 private:
  PlateauOptions options_;
  PlateauState state_;
};

enum class StopReason {
  kContinue,
  kNonFiniteLoss,
  kGradientTolerance,
  kLossTarget,
  kValidationPatience,
  kMaxEpochs,
};
const char* StopReasonName(StopReason reason);

struct StoppingOptions {
  int max_epochs = 100;           // >= 1
  int min_epochs = 0;             // >= 0
  double gradient_tolerance = 0;  // > 0 enables
  double loss_target = -std::numeric_limits<double>::infinity();
  int patience = 0;      // > 0 enables validation patience
  double min_delta = 0;  // >= 0

  bool IsValid(std::string* error) const;
};

struct EpochReport {
  double train_loss = 0.0;
  std::optional<double> validation_loss;
  std::optional<double> gradient_norm;  // e.g. RiemannianSgd::GradientNorm()
};

struct StoppingState {
  int epochs = 0;
  double best_validation = std::numeric_limits<double>::infinity();
  int best_epoch = 0;  // 1-based epoch of best_validation; 0 if none yet
  int epochs_without_improvement = 0;
};

class StoppingRule {
 public:
  // Requires: options.IsValid() (throws InvalidArgument otherwise).
  explicit StoppingRule(StoppingOptions options = {});

  // Records one epoch and says whether to stop (see the header comment).
  StopReason EndEpoch(const EpochReport& report);

  const StoppingOptions& options() const { return options_; }
  const StoppingState& State() const { return state_; }
  // Requires: counters >= 0; best_validation not NaN.
  void SetState(const StoppingState& state);

 private:
  StoppingOptions options_;
  StoppingState state_;
};

}  // namespace symopt
