// Conv2d: 2-d cross-correlation over NCHW feature maps (DESIGN.md section 5).
//
//   y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] *
//                   x[n, c, i*s - p + u, j*s - p + v]
//
// with stride s, zero padding p, square kernel k:
//   x [N, C_in, H, W] -> y [N, C_out, Ho, Wo],  Ho = (H + 2p - k) / s + 1
//   (floor), likewise Wo. Requires H + 2p >= k and W + 2p >= k.
// W [C_out, C_in, k, k] is viewed for its manifold as C_out x (C_in*k*k): one
// row per filter, the rows an oblique manifold normalises. b [C_out].
//
// CPU implementation: per sample, im2col (col [C_in*k*k, Ho*Wo]) and one Eigen
// GEMM  Y_n = W col + b; backward  dW += dY_n col^T,  db += dY_n 1,
// dcol = W^T dY_n scattered back by col2im: the GPU's steps with a host
// kernel set (src/backend/nn_conv_steps.h, src/nn_conv_cpu.h). Samples run in
// parallel over OpenMP threads (SetNumThreads), one contiguous range each;
// per-thread weight- and bias-gradient partials are summed in thread order,
// so results do not depend on scheduling, and y and dx do not depend on the
// thread count.
//
// Initialisation: PyTorch's default, W and b uniform in
// [-1/sqrt(C_in k^2), 1/sqrt(C_in k^2)] from std::mt19937_64(seed).
//
// GPU implementation (after To(Device::kCuda); inputs must then be device
// tensors, and a tensor on the other device is refused with InvalidArgument
// naming the layer and both devices): the same im2col + GEMM, on the batch in
// chunks of samples so that the column scratch [C_in*k*k, chunk*Ho*Wo] and
// the row scratch [C_out, chunk*Ho*Wo] stay within column_budget() elements
// each (at least one sample per chunk). Products are cuBLAS (no TF32), dx is
// a gather col2im and db a product with a ones vector, so GPU results are
// deterministic (no atomics). The scratch is owned by the layer, allocated
// lazily on the input's device and released by To(Device::kCpu)
// (docs/cuda.md, "Convolution, pooling and group layers on the GPU").
//
// Aliasing: x, y, dy, dx distinct. Backward follows a Forward on the same x
// (it recomputes im2col rather than caching it).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace symopt {
namespace nn {

namespace backend {
template <typename T>
struct ConvDeviceScratch;
}  // namespace backend

template <typename T>
class Conv2d final : public Layer<T> {
 public:
  // Requires: in_channels, out_channels, kernel, stride >= 1; padding >= 0.
  Conv2d(std::int64_t in_channels,
         std::int64_t out_channels,
         std::int64_t kernel,
         std::int64_t stride = 1,
         std::int64_t padding = 0,
         std::uint64_t seed = 0,
         bool bias = true);
  ~Conv2d() override;

  // "conv2d(1->32, k5, s1, p2)"
  std::string Name() const override;
  Shape OutputShape(const Shape& input) const override;
  void Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void Backward(const Tensor<T>& x,
                const Tensor<T>& y,
                const Tensor<T>& dy,
                Tensor<T>& dx) override;
  std::vector<Parameter<T>> Params() override;
  std::vector<ParamTensor<T>*> ParamTensors() override {
    if (has_bias_) return {&weight_, &bias_};
    return {&weight_};
  }

  Tensor<T>& weight() { return weight_.value; }
  Tensor<T>& bias() { return bias_.value; }

  // Moves the parameters (Layer::To); moving to the CPU also frees the GPU
  // scratch.
  void To(Device device) override;
  // GPU scratch bound in elements (see the header comment); default
  // 2^24. Requires: elements >= 1.
  void set_column_budget(std::int64_t elements);
  std::int64_t column_budget() const { return column_budget_; }

 private:
  std::int64_t in_, out_, k_, stride_, pad_;
  bool has_bias_;
  ParamTensor<T> weight_, bias_;
  std::vector<std::vector<T>> scratch_;  // per-thread col / partial buffers
  std::int64_t column_budget_;
  std::unique_ptr<backend::ConvDeviceScratch<T>> device_scratch_;
};

extern template class Conv2d<float>;
extern template class Conv2d<double>;

}  // namespace nn
}  // namespace symopt
