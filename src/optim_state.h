// Where the optimizers' state lives and how it is screened and copied
// (private; STYLE M4/M5): the one place in the optimizer code that knows
// about devices. RiemannianSgd, the bold driver and checkpoints call these
// and never branch on a device themselves; the manifolds' own operations
// dispatch on the views' device (src/backend/dispatch.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "manifolds/multi_step.h"
#include "manifolds/tensor_view.h"

namespace symopt {
namespace internal {

// Throws NotCompiledError (no CUDA in this build) or Error (no device)
// naming `who` unless tensors on `device` can be used; does nothing for the
// CPU.
void RequireStateDevice(Device device, const std::string& who);

// Throws InvalidArgument naming `who` and `what` when v is marked kCuda but
// does not point to device memory (a kernel would fault on it).
template <typename T>
void CheckDeviceView(TensorView<const T> v,
                     const std::string& who,
                     const char* what);

// Sets every entry of v to zero, on its device.
template <typename T>
void ZeroView(TensorView<T> v);

// A host view of v: v itself for a CPU view, else a copy downloaded into
// *scratch (resized as needed).
template <typename T>
TensorView<const T> HostView(TensorView<const T> v, std::vector<T>* scratch);

// The first NaN/Inf of a list of tensors (gradients), in list order: the
// tensor's position and the flat index inside it, or tensor == -1 when every
// entry is finite.
struct ScreenHit {
  std::int64_t tensor = -1;
  std::int64_t index = -1;
};

// The layout of the fused device screen (src/backend/screen_ops.h) for
// tensors of the given sizes: offset[t] (prefix sums of the sizes, the first
// global index of tensor t) and first_chunk[0..count] (prefix sums of
// backend::ChunksFor(size)).
struct ScreenLayout {
  std::vector<std::int64_t> offset;
  std::vector<std::int64_t> first_chunk;
};
ScreenLayout BuildScreenLayout(const std::vector<std::int64_t>& sizes);

// The (tensor, flat index) of global index g >= 0 under `layout`.
ScreenHit LocateGlobal(const ScreenLayout& layout, std::int64_t g);

// Screens a fixed list of tensors on any mix of devices: host tensors with
// the exponent-bit test of cpu::FirstNonFinite, all device tensors together
// in ONE kernel launch with one 8-byte copy back (descriptors uploaded once,
// by the constructor). The views must stay valid while the screen is used.
template <typename T>
class GradientScreen {
 public:
  // names[i] names tensor i in messages. Requires: equal list sizes; device
  // views point to device memory (else InvalidArgument naming the tensor).
  GradientScreen(std::vector<TensorView<const T>> tensors,
                 const std::vector<std::string>& names);
  ~GradientScreen();
  GradientScreen(const GradientScreen&) = delete;
  GradientScreen& operator=(const GradientScreen&) = delete;

  ScreenHit First() const;

  // Number of device tensors (screened by the one launch).
  std::int64_t num_device_tensors() const { return num_device_; }

 private:
  struct DeviceData;  // descriptors in device memory

  std::vector<TensorView<const T>> tensors_;
  std::vector<std::int64_t> device_index_;  // list position of device tensor j
  ScreenLayout layout_;                     // of the device tensors
  std::int64_t num_device_ = 0;
  std::unique_ptr<DeviceData> device_data_;
};

// How the fused steps of a fixed list of parameter tensors are issued. Host
// tensors, and device tensors without a partner, take one Manifold::Step
// each; device tensors of one parameter group (so one set of StepOptions)
// and one kind that MultiStep runs on the GPU (all Euclidean, or all
// Oblique) are stepped together by ONE launch per step (a MultiStep built
// once here), which also replaces one report read-back per oblique tensor
// with one for all. The maths is Manifold::Step's (multi_step.h).
template <typename T>
class StepPlan {
 public:
  // groups[i]: tensor i's parameter group. Requires: equal list sizes; each
  // tensor's views valid for the plan's lifetime.
  StepPlan(const std::vector<StepTensor<T>>& tensors,
           const std::vector<int>& groups);
  ~StepPlan();
  StepPlan(const StepPlan&) = delete;
  StepPlan& operator=(const StepPlan&) = delete;

  // Steps every tensor, tensor i with options_of(i) (equal within a group);
  // returns one report per tensor, in order.
  template <typename OptionsOf>
  std::vector<RetractReport> Run(OptionsOf&& options_of) {
    std::vector<RetractReport> reports(tensors_.size());
    for (const Batch& b : batches_) {
      const StepOptions o = options_of(b.members.front());
      if (b.multi == nullptr) {
        const StepTensor<T>& t = tensors_[b.members.front()];
        reports[b.members.front()] = t.manifold->Step(
            t.x, t.g, o.momentum > 0.0 ? t.m : TensorView<T>(), o);
        continue;
      }
      const std::vector<RetractReport> r = b.multi->Step(o);
      for (std::size_t k = 0; k < b.members.size(); ++k) {
        reports[b.members[k]] = r[k];
      }
    }
    return reports;
  }

  // Number of launches (MultiStep batches plus single steps) per Run.
  std::int64_t num_batches() const { return std::int64_t(batches_.size()); }

 private:
  struct Batch {
    std::vector<std::size_t> members;     // tensor positions, in order
    std::unique_ptr<MultiStep<T>> multi;  // null: one Step of members[0]
  };
  std::vector<StepTensor<T>> tensors_;
  std::vector<Batch> batches_;
};

}  // namespace internal
}  // namespace symopt
