// LibTorch adapter: symopt's Riemannian SGD as a torch::optim::Optimizer, so
// a LibTorch network's weights train on constraint manifolds (unit-norm
// filters, tie subspaces, ...) in place, without a copy. DESIGN.md section 9;
// docs/torch.md. Built only where LibTorch is found (target symopt::torch,
// CMake option SYMOPT_WITH_TORCH).
//
// What a step does. TorchRiemannianSgd<T> wraps a RiemannianSgd<T>
// (optim/sgd.h) whose Parameter<T> views are the torch tensors' own storage
// and their .grad()'s storage, a tensor [d0, d1, ...] read as the row-major
// rows x cols block its manifold has (rows * cols == numel). step() is
//
//   r  = EgradToRgrad(x, g + wd * x)       per parameter, g = x.grad()
//   m  = beta * m + r
//   d  = nesterov ? r + beta * m : m
//   x' = R_x(-lr * d),  m = T_{x->x'}(m)
//
// i.e. exactly RiemannianSgd::Step() over the same data (bitwise: the adapter
// adds no arithmetic). With an Oblique manifold over dim 0 of a conv weight
// [out, in, kh, kw] every filter stays unit-norm (Badrinarayanan et al.,
// paper 001: batch norm makes the loss invariant to the filters' scale).
//
// Semantics (the torch conventions where torch has one):
//   * step(closure): the closure, when given, runs with grad mode on and its
//     loss is returned (as torch::optim::SGD); the step runs under
//     NoGradGuard and bumps each moved tensor's version counter, so autograd
//     still detects a graph that saved the old value.
//   * A parameter whose grad() is undefined is SKIPPED, as torch's SGD skips
//     it: its value and momentum are not touched. If no parameter has a
//     gradient, step() does nothing (the step count stays).
//   * Gradients are read where they are at each step: a gradient torch
//     re-allocated (Module::zero_grad(true), a user assigning mutable_grad())
//     or a value whose storage moved (Tensor::set_, torch::load of a module)
//     is re-bound, keeping every momentum buffer and the step count (the
//     wrapped optimizer is rebuilt from State()/SetState: O(parameters) work
//     and the constructor's on-manifold check, only when a pointer or the set
//     of parameters with a gradient changed).
//   * NaN/Inf in a gradient: nothing changes (weights, momentum, step count)
//     and step() throws NumericalError naming the parameter and flat index.
//     A row that collapses in a retraction is a value, in last_summary().
//   * Learning rates live in torch's param-group options (one torch param
//     group per symopt group id, in increasing id order;
//     TorchSgdGroupOptions), so torch LR schedulers (StepLR, ...) and
//     param_groups()[k].options().set_lr() work; each step() reads them.
//     Momentum, weight decay and nesterov are fixed at construction.
//   * Save/load: torch::save(optimizer, ...) / torch::load(optimizer, ...)
//     store the optimizer's own state (step count, learning rates, momentum
//     buffers), as torch optimizers do; the model's weights are saved with
//     the model. SaveToFile writes the same archive atomically. A reload
//     continues bit-identically.
//   * Errors name the parameter by name and index. Bad input leaves the
//     optimizer, its state and every tensor untouched.
//
// Limits: CPU tensors only (this build's LibTorch is CPU only; symopt's own
// GPU path takes Device::kCuda views, a later adapter could pass CUDA
// storage); dense, contiguous, one floating dtype (float32 for T = float,
// float64 for T = double) per optimizer. The param groups are fixed at
// construction (add_param_group afterwards makes step() throw).
//
// Threads: as RiemannianSgd, one thread at a time.
#pragma once

#include <torch/optim/optimizer.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "optim/sgd.h"

namespace symopt {

// One parameter: a torch tensor and the manifold it lives on.
// Requires (checked by TorchRiemannianSgd): tensor defined, on the CPU,
// dense (strided), contiguous, dtype float32 (T = float) or float64
// (T = double), a leaf with requires_grad; manifold->rows() *
// manifold->cols() == tensor.numel(); the value on the manifold; name
// non-empty and unique within an optimizer.
template <typename T>
struct TorchParameter {
  std::string name;
  torch::Tensor tensor;
  std::shared_ptr<const Manifold<T>> manifold;
  int group = 0;  // symopt parameter group (SgdOptions::groups)
};

// A parameter on Euclidean(rows, cols) with rows = size(0), cols = numel /
// size(0) (rows = cols = 1 for a 0-dim tensor): biases, batch-norm scale and
// shift, unconstrained weights.
// Requires: tensor defined with numel >= 1.
template <typename T>
TorchParameter<T> TorchEuclideanParameter(std::string name,
                                          torch::Tensor tensor,
                                          int group = 0);

// A parameter on Oblique(size(0), numel / size(0)): each slice along dim 0
// (a Linear weight's rows, a conv weight's filters [out, in, kh, kw]) has
// unit 2-norm. Use ProjectToManifold to put an initial value on it.
// Requires: tensor defined with dim() >= 2 and numel >= 1.
template <typename T>
TorchParameter<T> TorchObliqueParameter(std::string name,
                                        torch::Tensor tensor,
                                        int group = 0);

// Moves the parameter's value onto its manifold in place
// (Manifold::ProjectPoint: for Oblique, each row divided by its norm),
// without recording autograd history, and bumps the tensor's version.
// Requires: p valid as above (requires_grad is not needed).
template <typename T>
void ProjectToManifold(const TorchParameter<T>& p);

// The options of one torch param group. lr is read by every step() and may be
// changed (set_lr, torch LR schedulers); momentum and weight decay are the
// group's values in the wrapped optimizer, for inspection only.
class TorchSgdGroupOptions final
    : public torch::optim::OptimizerCloneableOptions<TorchSgdGroupOptions> {
 public:
  // NOLINTNEXTLINE(google-explicit-constructor): torch's convention
  TorchSgdGroupOptions(double lr, double momentum = 0, double weight_decay = 0)
      : lr_(lr), momentum_(momentum), weight_decay_(weight_decay) {}

  double lr() const { return lr_; }
  TorchSgdGroupOptions& lr(double lr) {
    lr_ = lr;
    return *this;
  }
  double momentum() const { return momentum_; }
  double weight_decay() const { return weight_decay_; }

  double get_lr() const override { return lr_; }
  void set_lr(const double lr) override { lr_ = lr; }

 private:
  double lr_;
  double momentum_;
  double weight_decay_;
};

template <typename T>
class TorchRiemannianSgd final : public torch::optim::Optimizer {
 public:
  // Requires: params non-empty, each valid (see TorchParameter), no two
  // sharing storage; options.IsValid() and every id in options.groups used.
  // Throws InvalidArgument naming the parameter ("parameter 'conv.weight'
  // (index 0): ...") or the option otherwise; nothing is allocated then.
  // Ensures: momentum buffers zero, step_count() == 0; one torch param group
  // per group id (increasing), with TorchSgdGroupOptions{lr, momentum,
  // weight_decay} from options.
  TorchRiemannianSgd(std::vector<TorchParameter<T>> params,
                     SgdOptions options = {});
  ~TorchRiemannianSgd() override;

  // One step (see the header comment). Returns the closure's loss, or an
  // undefined tensor without a closure.
  // Throws: InvalidArgument naming the parameter (its value or gradient is
  // no longer a valid CPU dense contiguous tensor of the right dtype and
  // size, a re-bound value is off its manifold, a group's lr is negative or
  // not finite, the param groups were changed); NumericalError for NaN/Inf
  // in a gradient. In every case nothing was changed.
  torch::Tensor step(LossClosure closure = nullptr) override;

  // torch::save(optimizer, ...) / torch::load(optimizer, ...). The archive
  // holds a format version, the dtype, the step count, every group's lr and,
  // per parameter, its name, its manifold's Describe() and its momentum
  // buffer (a [rows, cols] tensor) when its group has momentum.
  // load validates everything (format, dtype, count, names, manifolds,
  // shapes, finite momentum) before changing anything: FileError for an
  // archive that is not this format, InvalidArgument for one that does not
  // fit this optimizer.
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

  // The archive above in a file, written atomically (temporary file, fsync,
  // rename): on any failure `path` is unchanged. Throws FileError naming it.
  void SaveToFile(const std::string& path) const;
  // Reads a file SaveToFile or torch::save wrote. FileError naming the file
  // when it cannot be read, else as load().
  void LoadFromFile(const std::string& path);

  // The summary of the last step that ran (collapsed rows, if any).
  const StepSummary& last_summary() const { return last_summary_; }
  // Steps that moved at least one parameter.
  std::int64_t step_count() const;
  // The symopt group id of torch param group k, and back.
  int GroupId(std::size_t k) const;
  std::size_t GroupIndex(int group) const;
  // The parameters as given (tensor handles share storage with the model).
  const std::vector<TorchParameter<T>>& symopt_params() const {
    return params_;
  }
  // The whole optimizer state, one momentum buffer per parameter in order
  // (what a RiemannianSgd over all parameters would report): step count,
  // default lr and every group's lr (from the torch options).
  SgdState<T> State() const;

 private:
  struct Binding;
  // Reads and validates every parameter's value and gradient pointers.
  Binding Gather() const;
  // Makes the wrapped optimizer step exactly `binding`'s parameters.
  void Bind(const Binding& binding);
  // Momentum of every parameter (live or parked), in order.
  std::vector<std::vector<T>> AllMomentum() const;
  // Learning rates from the torch options, validated.
  std::map<int, double> GroupLrs() const;
  void CheckGroupsUnchanged() const;

  std::vector<TorchParameter<T>> params_;
  SgdOptions options_;
  std::vector<int> group_ids_;  // torch param group k -> symopt id
  std::vector<std::vector<std::size_t>> members_;  // group k's parameters
  std::vector<bool> has_momentum_;                 // per parameter
  std::unique_ptr<RiemannianSgd<T>> sgd_;          // over active_ (may be null)
  std::vector<std::size_t> active_;  // parameters sgd_ steps, in order
  std::vector<const void*> bound_;   // value, grad pointer per active
  // Momentum of parameters not in active_ (empty for those in it, and for
  // groups without momentum).
  std::vector<std::vector<T>> parked_;
  std::int64_t step_count_ = 0;  // authoritative while sgd_ is null
  StepSummary last_summary_;
};

extern template class TorchRiemannianSgd<float>;
extern template class TorchRiemannianSgd<double>;

}  // namespace symopt
