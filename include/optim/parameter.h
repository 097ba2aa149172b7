// Parameter<T>: one trainable block as optimizers see it — a view of its
// values, a view of its gradient, and the manifold it lives on.
//
// A Parameter owns no memory: value and grad point at the model's or the
// user's own buffers (a raw pointer, an Eigen::Map, a framework tensor), so
// symopt optimizers plug into an existing net without a copy. The optimizer
// owns only its state (momentum buffers, snapshots). An optimizer never needs
// to know which layer a parameter belongs to (DESIGN.md section 1).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "manifolds/manifold.h"

namespace symopt {

template <typename T>
struct Parameter {
  std::string name;     // for messages and checkpoints
  TensorView<T> value;  // rows x cols, the point x
  TensorView<T> grad;   // same shape: Euclidean gradient
  std::shared_ptr<const Manifold<T>> manifold;  // shape must match value
  int group = 0;                                // parameter group (lr, decay)
};

namespace internal {
// Blocks template argument deduction, so a std::shared_ptr<Oblique<T>>
// converts to the manifold argument.
template <typename U>
struct NonDeduced {
  using type = U;
};
}  // namespace internal

// A parameter over caller-owned memory: value and grad each hold rows * cols
// row-major entries on `device`.
// Requires: value, grad non-null; manifold non-null with shape rows x cols.
template <typename T>
Parameter<T> MakeParameter(
    // NOLINTNEXTLINE(performance-unnecessary-value-param): moved into p.name
    std::string name,
    T* value,
    T* grad,
    std::int64_t rows,
    std::int64_t cols,
    typename internal::NonDeduced<std::shared_ptr<const Manifold<T>>>::type
        manifold,
    int group = 0,
    Device device = Device::kCpu) {
  SYMOPT_CHECK(
      value != nullptr && grad != nullptr,
      "parameter '" << name << "': value and gradient must be non-null");
  SYMOPT_CHECK(manifold != nullptr, "parameter '" << name << "': no manifold");
  SYMOPT_CHECK(manifold->rows() == rows && manifold->cols() == cols,
               "parameter '" << name << "' has shape " << rows << "x" << cols
                             << " but its manifold is "
                             << manifold->Describe());
  Parameter<T> p;
  p.name = std::move(name);
  p.value = TensorView<T>(value, rows, cols, device);
  p.grad = TensorView<T>(grad, rows, cols, device);
  p.manifold = std::move(manifold);
  p.group = group;
  return p;
}

}  // namespace symopt
