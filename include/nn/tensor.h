// Tensor<T>: an owning, row-major N-d array (up to 5 dims) — the activations
// and weights of the network module. The device is a property of the tensor
// (DESIGN.md section 8): a tensor lives in host memory (Device::kCpu) or in
// device memory (Device::kCuda, plain cudaMalloc through DeviceBuffer), and
// the same layer and optimizer code runs on either, dispatching on device().
//
// Layout conventions: activations are NCHW ([batch, channels, height, width])
// or NF ([batch, features]); P4 feature maps are [batch, channels, 4, H, W]
// (rotation axis after channels). A weight is viewed as a rows x cols block
// (rows = output units / filters) for its manifold via AsView().
//
// Device tensors:
//   data()              a device pointer; operator[] is for host tensors only.
//   Resize              keeps the device; a device tensor reallocates only when
//                       it grows past its capacity (contents unspecified).
//   Fill(v)             works on both devices (device: a memset for zero, else
//                       a host-staged copy).
//   To(device)          a copy on `device` (synchronous for copies to the
//                       host); MoveTo(device) replaces this tensor's storage.
//   CopyFrom(other)     resize to other's shape and copy, any pair of devices.
// Copying a Tensor copies its data on its own device. In a build without CUDA
// a kCuda tensor cannot be made: the constructor throws NotCompiledError (and
// Error when no device is present).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "manifolds/check.h"
#include "manifolds/device.h"
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
  // A host tensor filled with `fill`.
  explicit Tensor(Shape shape, T fill = T(0))
      : shape_(std::move(shape)), host_(NumElements(shape_), fill) {}
  // A tensor on `device`, zero-filled.
  Tensor(Shape shape, Device device) : shape_(std::move(shape)) {
    device_ = device;
    if (device_ == Device::kCpu) {
      host_.assign(std::size_t(NumElements(shape_)), T(0));
    } else {
      dev_ = DeviceBuffer<T>(NumElements(shape_));
      dev_.FillBytes(0);
    }
  }

  Tensor(const Tensor& other) : shape_(other.shape_), device_(other.device_) {
    if (device_ == Device::kCpu) {
      host_ = other.host_;
    } else {
      dev_ = DeviceBuffer<T>(other.size());
      CopyData(other);
    }
  }
  Tensor& operator=(const Tensor& other) {
    if (this != &other) CopyFrom(other, other.device_);
    return *this;
  }
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  const Shape& shape() const { return shape_; }
  std::int64_t dim(int i) const { return shape_.at(std::size_t(i)); }
  int ndim() const { return int(shape_.size()); }
  std::int64_t size() const { return NumElements(shape_); }
  Device device() const { return device_; }
  bool is_cuda() const { return device_ == Device::kCuda; }

  T* data() { return is_cuda() ? dev_.data() : host_.data(); }
  const T* data() const { return is_cuda() ? dev_.data() : host_.data(); }
  // Requires: a host tensor.
  T& operator[](std::int64_t i) { return host_[std::size_t(i)]; }
  const T& operator[](std::int64_t i) const { return host_[std::size_t(i)]; }

  // Reallocates only when needed; contents unspecified.
  void Resize(const Shape& shape) {
    const std::int64_t n = NumElements(shape);
    shape_ = shape;
    if (is_cuda()) {
      if (n > dev_.size()) dev_ = DeviceBuffer<T>(n);
    } else {
      host_.resize(std::size_t(n));
    }
  }
  // Resize, moving to `device` first when the tensor is elsewhere (layers
  // size their outputs with this: y.Resize(shape, x.device())).
  void Resize(const Shape& shape, Device device) {
    if (device != device_) {
      host_.clear();
      host_.shrink_to_fit();
      dev_ = DeviceBuffer<T>();
      device_ = device;
    }
    Resize(shape);
  }
  void Fill(T value) {
    if (!is_cuda()) {
      host_.assign(host_.size(), value);
      return;
    }
    // Bitwise on purpose: only +0 may become a zero-byte fill (-0 == 0 but
    // its bytes are not zero).
    const T zero(0);
    // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): see above
    if (std::memcmp(&value, &zero, sizeof(T)) == 0) {
      dev_.FillBytes(0);
    } else {
      std::vector<T> staged(std::size_t(size()), value);
      Copy(TensorView<const T>(staged.data(), 1, size()), FlatView());
    }
  }

  // A copy of this tensor on `device`.
  Tensor To(Device device) const {
    Tensor out;
    out.CopyFrom(*this, device);
    return out;
  }
  // Moves the data to `device` (no-op when already there).
  void MoveTo(Device device) {
    if (device != device_) *this = To(device);
  }
  // Resizes to other's shape and copies its data; the tensor keeps its device.
  void CopyFrom(const Tensor& other) { CopyFrom(other, device_); }

  // The whole tensor as a rows x cols block, rows = dim(0).
  TensorView<T> AsView() {
    return TensorView<T>(data(),
                         shape_.empty() ? 0 : shape_[0],
                         shape_.empty() ? 0 : size() / shape_[0],
                         device_);
  }
  TensorView<const T> AsView() const {
    return TensorView<const T>(data(),
                               shape_.empty() ? 0 : shape_[0],
                               shape_.empty() ? 0 : size() / shape_[0],
                               device_);
  }
  // All values as one row (1 x size()).
  TensorView<T> FlatView() { return TensorView<T>(data(), 1, size(), device_); }
  TensorView<const T> FlatView() const {
    return TensorView<const T>(data(), 1, size(), device_);
  }

 private:
  void CopyFrom(const Tensor& other, Device device) {
    Resize(other.shape_, device);
    CopyData(other);
  }
  // Requires: equal sizes.
  void CopyData(const Tensor& other) {
    if (size() == 0) return;
    if (!is_cuda() && !other.is_cuda()) {
      std::copy(other.host_.begin(), other.host_.end(), host_.begin());
    } else {
      Copy(other.FlatView(), FlatView());
    }
  }

  Shape shape_;
  Device device_ = Device::kCpu;
  std::vector<T> host_;  // kCpu storage
  DeviceBuffer<T> dev_;  // kCuda storage (capacity >= size())
};

}  // namespace nn
}  // namespace symopt
