// BoldDriver<T>: the "bold driver" learning-rate protocol (Battiti 1989; used
// for SGD on the oblique manifold by Badrinarayanan, Mishra & Cipolla, paper
// 001), wrapped around a RiemannianSgd.
//
// Call EndEpoch(loss) after each epoch (or evaluation window) with the loss of
// the CURRENT parameters. With L* the loss of the last accepted point:
//
//   first call            the baseline: L* = loss, accepted, lr unchanged.
//   loss <= L*            accept: L* = loss, lr <- lr * up; the current
//                         parameters and optimizer state become the snapshot.
//   loss > L*, or NaN/Inf reject: parameters AND optimizer state (momentum
//                         buffers, step count) are restored bitwise to the
//                         snapshot; lr <- lr * down.
//
// A non-finite loss at the first call is rejected as well, and rolls back to
// the point the driver was constructed at. "lr" is every learning rate of the
// optimizer: the default and each group's are scaled by the same factor
// (RiemannianSgd::ScaleLr); the scaled default is clamped to [min_lr, max_lr].
//
// Rejection is an expected outcome, returned as a value (STYLE M7), never an
// exception. The snapshot is a copy of every parameter value and momentum
// buffer ON THE PARAMETER'S DEVICE (RiemannianSgd::TakeSnapshot: for a model
// on the GPU, snapshots and rollbacks are device-to-device copies); the
// driver's memory is about twice the model's, on the model's device.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "optim/sgd.h"

namespace symopt {

struct BoldDriverOptions {
  double up = 1.05;   // growth factor on acceptance; >= 1
  double down = 0.5;  // shrink factor on rejection; in (0, 1)
  double min_lr = 0.0;
  double max_lr = std::numeric_limits<double>::infinity();

  // True if usable (finite factors in range, 0 <= min_lr <= max_lr);
  // otherwise false and *error (when non-null) says why.
  bool IsValid(std::string* error) const;
};

struct StepResult {
  bool accepted = false;
  double lr = 0.0;    // the optimizer's default learning rate from now on
  double loss = 0.0;  // the loss passed to EndEpoch
};

// Everything a driver needs to continue: for checkpoints.
template <typename T>
struct BoldDriverState {
  bool has_baseline = false;
  double best_loss = 0.0;  // L*, meaningful when has_baseline
  std::int64_t accepted = 0;
  std::int64_t rejected = 0;
  // The snapshot (last accepted point): values and momentum buffers, one per
  // parameter (momentum empty where the parameter has none), step count.
  std::vector<std::vector<T>> values;
  std::vector<std::vector<T>> momentum;
  std::int64_t step_count = 0;
};

template <typename T>
class BoldDriver {
 public:
  // Requires: optimizer non-null, outliving the driver; optimizer->lr() > 0;
  // options.IsValid(). Snapshots the optimizer's current point.
  BoldDriver(RiemannianSgd<T>* optimizer, BoldDriverOptions options = {});

  // The protocol above.
  StepResult EndEpoch(double loss);

  bool has_baseline() const { return state_.has_baseline; }
  double best_loss() const { return state_.best_loss; }
  std::int64_t accepted() const { return state_.accepted; }
  std::int64_t rejected() const { return state_.rejected; }
  const BoldDriverOptions& options() const { return options_; }
  RiemannianSgd<T>& optimizer() const { return *optimizer_; }

  // For checkpoints: the counters and a host copy of the snapshot (a
  // download for GPU parameters). SetState validates the snapshot's sizes
  // against the optimizer's parameters (and the loss) before changing
  // anything, then uploads it; throws InvalidArgument naming the mismatch.
  BoldDriverState<T> State() const;
  void SetState(const BoldDriverState<T>& state);

 private:
  void TakeSnapshot();
  // Multiplies every learning rate so the default becomes
  // clamp(lr * factor, min_lr, max_lr).
  void ScaleLrClamped(double factor);

  RiemannianSgd<T>* optimizer_;
  BoldDriverOptions options_;
  BoldDriverState<T> state_;  // counters only; the point is in snapshot_
  SgdSnapshot<T> snapshot_;
};

extern template class BoldDriver<float>;
extern template class BoldDriver<double>;

}  // namespace symopt
