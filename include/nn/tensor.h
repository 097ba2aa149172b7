// Tensor<T>: an owning, row-major N-d array (up to 5 dims) — the activations
// and weights of the network module. The device is a property of the tensor
// (DESIGN.md section 8); this build stores host tensors, and the CUDA issue
// adds device storage behind the same interface.
//
// Layout conventions: activations are NCHW ([batch, channels, height, width])
// or NF ([batch, features]); P4 feature maps are [batch, channels, 4, H, W]
// (rotation axis after channels). A weight is viewed as a rows x cols block
// (rows = output units / filters) for its manifold via AsView().
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "manifolds/check.h"
#include "manifolds/tensor_view.h"

namespace symopt {
namespace nn {

using Shape = std::vector<std::int64_t>;

// "[64, 1, 28, 28]"
std::string ShapeString(const Shape& shape);
std::int64_t NumElements(const Shape& shape);

template <typename T>
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape, T fill = T(0))
      : shape_(std::move(shape)), data_(NumElements(shape_), fill) {}

  const Shape& shape() const { return shape_; }
  std::int64_t dim(int i) const { return shape_.at(i); }
  int ndim() const { return int(shape_.size()); }
  std::int64_t size() const { return std::int64_t(data_.size()); }
  Device device() const { return Device::kCpu; }

  T* data() { return data_.data(); }
  const T* data() const { return data_.data(); }
  T& operator[](std::int64_t i) { return data_[i]; }
  const T& operator[](std::int64_t i) const { return data_[i]; }

  // Reallocates only when the element count changes; contents unspecified.
  void Resize(const Shape& shape) {
    shape_ = shape;
    data_.resize(NumElements(shape));
  }
  void Fill(T value) { data_.assign(data_.size(), value); }

  // The whole tensor as a rows x cols block, rows = dim(0).
  TensorView<T> AsView() {
    return TensorView<T>(data(),
                         shape_.empty() ? 0 : shape_[0],
                         shape_.empty() ? 0 : size() / shape_[0]);
  }

 private:
  Shape shape_;
  std::vector<T> data_;
};

}  // namespace nn
}  // namespace symopt
