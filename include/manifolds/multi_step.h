// MultiStep<T>: the fused step (Manifold<T>::Step) of several parameter
// tensors of one manifold kind at once.
//
// On the GPU every tensor's rows (Oblique) or chunks of entries (Euclidean)
// are laid end to end and stepped by ONE kernel launch reading an array of
// per-tensor descriptors {x, g, m, shape, collapse tolerance} kept in device
// memory (uploaded once, by the constructor): a model's many small weight
// tensors cost one launch per step instead of one each. On the CPU it calls
// each tensor's Manifold<T>::Step in turn. The maths is exactly that of
// Manifold<T>::Step for each tensor, so the results equal one Step per tensor
// (bitwise for Euclidean; for Oblique up to the order of the row sums, as
// the thread group of a row depends on the widest tensor).
//
// Supported on the GPU: all tensors Euclidean, or all Oblique. Any manifold
// on the CPU.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "manifolds/manifold.h"

namespace symopt {

// One parameter tensor: its manifold and its point, gradient and momentum
// views (m may be empty when no step uses momentum).
template <typename T>
struct StepTensor {
  const Manifold<T>* manifold = nullptr;
  TensorView<T> x;
  TensorView<const T> g;
  TensorView<T> m;
};

template <typename T>
class MultiStep {
 public:
  // Requires: tensors non-empty; every manifold non-null; all views of a
  // tensor of its manifold's shape; all views of all tensors on one device;
  // with_momentum => every m present; on the GPU every manifold Euclidean
  // or every one Oblique, and no two tensors' x (or m) overlap. Throws
  // InvalidArgument naming the tensor (by position) otherwise,
  // NotCompiledError/Error as Manifold<T> for GPU views.
  // The manifolds and views must outlive this object (they are not copied).
  MultiStep(std::vector<StepTensor<T>> tensors, bool with_momentum);
  ~MultiStep();
  MultiStep(const MultiStep&) = delete;
  MultiStep& operator=(const MultiStep&) = delete;

  // One fused step of every tensor with the same options. Returns one
  // RetractReport per tensor, in order (rows indexed within the tensor).
  // Requires: options.IsValid(); options.momentum > 0 => with_momentum;
  // gradients finite.
  std::vector<RetractReport> Step(const StepOptions& options);

  std::int64_t size() const { return std::int64_t(tensors_.size()); }
  Device device() const { return device_; }

 private:
  struct DeviceData;  // descriptors in device memory (src/backend)

  std::vector<StepTensor<T>> tensors_;
  bool with_momentum_;
  Device device_ = Device::kCpu;
  std::unique_ptr<DeviceData> device_data_;
};

extern template class MultiStep<float>;
extern template class MultiStep<double>;

}  // namespace symopt
