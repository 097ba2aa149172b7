// Spatial pooling over the last two axes (DESIGN.md section 5).
//
//   MaxPool2d(k, s):  y[..., i, j] = max_{0<=u,v<k} x[..., i*s + u, j*s + v]
//   AvgPool2d(k, s):  y[..., i, j] = (1/k^2) sum_{0<=u,v<k} x[..., i*s + u, j*s
//   + v]
//
// x [N, ..., H, W] (rank >= 3: NCHW, or P4 maps [N, C, 4, H, W]) ->
// y [N, ..., Ho, Wo], Ho = (H - k) / s + 1 (floor, no padding), likewise Wo.
// Requires H >= k and W >= k. Stride defaults to the kernel size.
//
// Backward: max pooling routes dy to the arg-max of each window (the first
// one in row-major window order on ties; the gradient is then a subgradient),
// recorded by the last Forward; average pooling spreads dy / k^2 over the
// window. No parameters.
//
// GPU (after To(Device::kCuda); inputs on the other device are refused with
// InvalidArgument): the same window arithmetic (src/nn_conv_ops.h) in one
// thread per output; the backward passes are gathers over the windows
// covering each input element, adding in the CPU's order, so GPU and CPU
// agree bitwise. Max pooling keeps its arg-max table on the device of the
// last Forward.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn/layer.h"
#include "nn/tensor.h"

namespace symopt {
namespace nn {

// The geometry both pooling layers share: kernel, stride, name, output shape.
template <typename T>
class Pool2d : public Layer<T> {
 public:
  std::string Name() const override;  // "maxpool(k2, s2)"
  Shape OutputShape(const Shape& input) const override;
  std::int64_t kernel() const { return k_; }
  std::int64_t stride() const { return s_; }

 protected:
  // Requires: kernel >= 1, stride >= 1 (0 = kernel).
  Pool2d(const char* kind, std::int64_t kernel, std::int64_t stride);

  const char* kind_;
  std::int64_t k_, s_;
};

template <typename T>
class MaxPool2d final : public Pool2d<T> {
 public:
  explicit MaxPool2d(std::int64_t kernel, std::int64_t stride = 0)
      : Pool2d<T>("maxpool", kernel, stride) {}

  void Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  // Requires: the last Forward was on x (on the same device).
  void Backward(const Tensor<T>& x,
                const Tensor<T>& y,
                const Tensor<T>& dy,
                Tensor<T>& dx) override;
  // Records the device; moving to the CPU frees the device arg-max table.
  void To(Device device) override;

 private:
  // Per output of the last Forward: offset of the arg-max in its input plane,
  // in host memory (CPU Forward) or device memory (GPU Forward; the first
  // argmax_device_count_ entries).
  std::vector<std::int32_t> argmax_;
  DeviceBuffer<std::int32_t> argmax_device_;
  std::int64_t argmax_device_count_ = -1;
};

template <typename T>
class AvgPool2d final : public Pool2d<T> {
 public:
  explicit AvgPool2d(std::int64_t kernel, std::int64_t stride = 0)
      : Pool2d<T>("avgpool", kernel, stride) {}

  void Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void Backward(const Tensor<T>& x,
                const Tensor<T>& y,
                const Tensor<T>& dy,
                Tensor<T>& dx) override;
};

extern template class Pool2d<float>;
extern template class Pool2d<double>;
extern template class MaxPool2d<float>;
extern template class MaxPool2d<double>;
extern template class AvgPool2d<float>;
extern template class AvgPool2d<double>;

}  // namespace nn
}  // namespace symopt
