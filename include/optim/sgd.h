// RiemannianSgd<T>: stochastic gradient descent on a product of manifolds,
// with heavy-ball or Nesterov momentum, weight decay and parameter groups.
//
// For every parameter x (a rows x cols block on its manifold M) with
// Euclidean gradient g, one Step() does (DESIGN.md section 3, STYLE M6):
//
//   r  = EgradToRgrad(x, g + wd * x)       Riemannian gradient (with decay)
//   m  = beta * m + r                      momentum (m in T_x M)
//   d  = nesterov ? r + beta * m : m       (d = r when beta == 0)
//   x' = R_x(-lr * d)                      retraction back onto M
//   m  = T_{x->x'}(m)                      transport m into T_{x'} M
//
// through the manifold's fused Manifold::Step (one pass over x, g, m). lr,
// beta (momentum) and wd (weight decay) come from the parameter's group
// (SgdOptions::groups) or else from the defaults.
//
// Weight decay semantics, per manifold. Decay is added to the EUCLIDEAN
// gradient before it is turned into a Riemannian one, so its effect is the
// Riemannian gradient of wd/2 * ||x||^2 restricted to M:
//   Euclidean        plain L2 ("weight decay" as usual): x <- x - lr*wd*x.
//   Oblique, TiedOblique, spheres
//                    no effect: ||x_i|| = 1 on every row, so wd * x is normal
//                    to the manifold and the tangent projection removes it
//                    (up to rounding). Use the oblique manifold instead of
//                    decay to control the scale of filters (paper 001).
//   TieSubspace      plain L2 on the tied weights: x is in E, so Pi_E(wd * x)
//                    = wd * x and every member of a class decays alike.
//   LinearSubspace   plain L2 inside the subspace, as for ties.
//
// Safety (the project's rules for bad input):
//   * Before ANY parameter moves, Step() screens every gradient for NaN/Inf
//     (SgdOptions::check_finite). If one is found nothing changes: no
//     weight, no momentum buffer, not the step counter. The result says so
//     as a value (StepStatus::kNonFiniteGradient), naming the parameter and
//     the flat index of the first bad entry (STYLE E4).
//   * A row that collapses in a retraction (oblique-type manifolds) is kept
//     unchanged by the manifold and reported in the summary
//     (StepStatus::kCollapsedRows); every other entry takes its step.
//   * The constructor validates every parameter (non-null views, shapes
//     against the manifold, equal devices of value and gradient, unique
//     names, values on their manifolds) and throws InvalidArgument naming
//     the parameter, before anything is allocated or touched.
//
// Memory: parameters are views of the caller's memory (Parameter<T>); the
// optimizer owns one momentum buffer per parameter whose group has momentum
// > 0 (none otherwise), rows x cols, ON THE PARAMETER'S DEVICE (a StateBuffer,
// optim/state_buffer.h). Parameters must stay valid and must not overlap
// while the optimizer is used.
//
// Devices (docs/cuda.md, "Optimizers and training on the GPU"): parameters
// may live on the CPU or the GPU (Device::kCuda views, e.g. an nn model moved
// with Sequential::To), each on its own device. For GPU parameters the
// momentum buffers are device memory (zeroed), the NaN/Inf screen of all GPU
// gradients is ONE kernel launch and one 8-byte copy back per Step, the step
// is the manifolds' device Step (the Euclidean, and the Oblique, parameters
// of one group in one MultiStep launch each), snapshots (TakeSnapshot) are
// device copies, and State()/CopyValues() download while SetState()/SetValues()
// validate on the host and then upload. The constructor's point check and
// GradientNorm copy GPU values (and gradients) to the host (DistanceToManifold
// and Inner have no GPU path). A build without CUDA refuses a GPU parameter
// with NotCompiledError naming it (Error when no device is present), before
// anything is allocated.
//
// Threads: one optimizer is used by one thread at a time; manifold steps
// themselves may use OpenMP (manifolds/parallel.h).
//
// References: Absil, Mahony & Sepulchre, "Optimization Algorithms on Matrix
// Manifolds" (2008), ch. 4; Badrinarayanan, Mishra & Cipolla (paper 001) for
// SGD on the oblique manifold; geoopt's RiemannianSGD (retract, then
// transport; periodic "stabilize").
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "optim/parameter.h"
#include "optim/state_buffer.h"

namespace symopt {

// Overrides for one parameter group; unset fields use SgdOptions' defaults.
struct GroupOptions {
  std::optional<double> lr;
  std::optional<double> momentum;
  std::optional<double> weight_decay;
};

struct SgdOptions {
  double lr = 0.01;           // >= 0, finite
  double momentum = 0.0;      // beta in [0, 1)
  bool nesterov = false;      // applies to every group with momentum > 0
  double weight_decay = 0.0;  // >= 0; see the per-manifold semantics above
  // Every N steps, re-project every point onto its manifold (ProjectPoint)
  // and every momentum buffer onto the tangent space at it (Project), so
  // rounding cannot accumulate over long runs (STYLE M6). 0: never.
  std::int64_t restabilize_every = 0;
  // Screen gradients for NaN/Inf before stepping (see above).
  bool check_finite = true;
  // A point is accepted as "on its manifold" when DistanceToManifold <= this;
  // <= 0 selects DefaultPointTolerance<T>(rows).
  double point_tolerance = 0.0;
  // Per-group overrides, by Parameter::group id. Every id listed must be used
  // by at least one parameter.
  std::map<int, GroupOptions> groups;

  // True if usable; otherwise false and *error (when non-null) says why.
  bool IsValid(std::string* error) const;
};

// Frobenius distance to the manifold accepted for a rows x cols point when
// no tolerance is given: rounding of unit rows grows like sqrt(rows).
template <typename T>
double DefaultPointTolerance(std::int64_t rows) {
  const double per_row = sizeof(T) <= 4 ? 1e-5 : 1e-10;
  return per_row * std::sqrt(double(rows < 1 ? 1 : rows));
}

enum class StepStatus {
  kOk,                 // every parameter took its step
  kCollapsedRows,      // every parameter stepped, but some rows collapsed
                       // in a retraction and were kept (see retract)
  kNonFiniteGradient,  // a gradient has NaN/Inf: NOTHING was changed
};
const char* StepStatusName(StepStatus status);

struct StepSummary {
  StepStatus status = StepStatus::kOk;
  // Empty for kOk; otherwise names the parameter and the index, e.g.
  // "gradient of parameter 'fc1.w' has nan at flat index 37 (row 2, col 5)".
  std::string message;
  // collapsed_rows: total over all parameters; first_collapsed_row: the row
  // index inside collapsed_parameter, the first parameter (in order) that had
  // a collapse. Both empty/zero unless status == kCollapsedRows.
  RetractReport retract;
  std::string collapsed_parameter;

  // True when the parameters moved (kOk or kCollapsedRows).
  bool moved() const { return status != StepStatus::kNonFiniteGradient; }
};

// The optimizer's own state, as the bold driver snapshots it and checkpoints
// store it. Parameter values are separate (RiemannianSgd::CopyValues).
template <typename T>
struct SgdState {
  std::int64_t step_count = 0;
  double lr = 0.0;                 // the default learning rate
  std::map<int, double> group_lr;  // explicit per-group learning rates
  // One per parameter, in order: rows*cols entries, or empty for a parameter
  // without momentum.
  std::vector<std::vector<T>> momentum;
};

namespace internal {
template <typename T>
class GradientScreen;
template <typename T>
class StepPlan;
}  // namespace internal

// An exact copy of an optimizer's parameter values, momentum buffers and step
// count, each buffer on its parameter's device (for GPU parameters the copies
// never leave the GPU). Filled by RiemannianSgd::TakeSnapshot, which reuses
// the buffers of an earlier snapshot of the same optimizer.
template <typename T>
struct SgdSnapshot {
  std::vector<StateBuffer<T>> values;    // one per parameter
  std::vector<StateBuffer<T>> momentum;  // one per parameter (may be empty)
  std::int64_t step_count = 0;
  bool empty() const { return values.empty(); }
};

template <typename T>
class RiemannianSgd {
 public:
  // Requires: params non-empty; every parameter valid (see the header
  // comment); options.IsValid(). Throws InvalidArgument naming the parameter
  // or option otherwise, NotCompiledError for a device this build lacks.
  // Ensures: momentum buffers are zero; step_count() == 0.
  RiemannianSgd(std::vector<Parameter<T>> params, SgdOptions options = {});
  ~RiemannianSgd();
  RiemannianSgd(RiemannianSgd&&) noexcept;
  RiemannianSgd& operator=(RiemannianSgd&&) noexcept;

  // One step of every parameter (formula above). See StepSummary.
  StepSummary Step();

  // Sets every parameter's gradient to zero.
  void ZeroGrad();

  // sqrt(sum_p <r_p, r_p>_{x_p}) with r_p = EgradToRgrad(x_p, g_p + wd_p x_p):
  // the norm of the Riemannian gradient the next Step() descends along (for
  // stopping rules). Reads values and gradients; changes nothing. Returns a
  // non-finite value when a gradient has NaN/Inf.
  double GradientNorm() const;

  // Re-projects points and momentum buffers now (what restabilize_every
  // does every N steps).
  void Restabilize();

  std::int64_t step_count() const { return step_count_; }
  const std::vector<Parameter<T>>& params() const { return params_; }
  const SgdOptions& options() const { return options_; }

  // Learning rates. The default lr applies to every group without its own.
  // Requires: lr finite and >= 0; group used by some parameter.
  double lr() const { return lr_; }
  void SetLr(double lr);
  double GroupLr(int group) const;
  void SetGroupLr(int group, double lr);
  // Multiplies the default and every group's learning rate by factor (the
  // bold driver and plateau schedules use this). Requires: factor finite and
  // > 0.
  void ScaleLr(double factor);

  // The options parameter i steps with (its group's overrides applied).
  StepOptions ParameterStepOptions(std::size_t i) const;
  // Parameter i's momentum buffer (rows x cols, on the parameter's device),
  // or an empty view when its group has no momentum.
  TensorView<const T> MomentumBuffer(std::size_t i) const;

  // State for snapshots and checkpoints. SetState validates the whole state
  // (buffer presence and sizes, group ids, learning rates) before changing
  // anything; it throws InvalidArgument and changes nothing on a mismatch.
  SgdState<T> State() const;
  void SetState(const SgdState<T>& state);

  // Copies of the parameter values (host, one vector per parameter), and
  // writing them back. SetValues validates every size first.
  std::vector<std::vector<T>> CopyValues() const;
  void SetValues(const std::vector<std::vector<T>>& values);

  // Snapshots for exact rollback (the bold driver): values, momentum buffers
  // and step count copied into *snapshot on each parameter's device (its
  // buffers are reused when it came from this optimizer). RestoreSnapshot
  // validates every buffer's size and device first and throws
  // InvalidArgument changing nothing on a mismatch; the learning rates are
  // not part of a snapshot.
  void TakeSnapshot(SgdSnapshot<T>* snapshot) const;
  void RestoreSnapshot(const SgdSnapshot<T>& snapshot);

  // The tolerance used to accept parameter i's value as on its manifold.
  double PointTolerance(std::size_t i) const;

 private:
  std::vector<Parameter<T>> params_;
  SgdOptions options_;
  double lr_;
  std::map<int, double> group_lr_;  // explicit overrides only
  std::vector<StateBuffer<T>> momentum_;
  std::unique_ptr<internal::GradientScreen<T>> screen_;
  std::unique_ptr<internal::StepPlan<T>> plan_;
  std::int64_t step_count_ = 0;
};

extern template class RiemannianSgd<float>;
extern template class RiemannianSgd<double>;

}  // namespace symopt
