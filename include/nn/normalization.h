// Batch normalisation and layer normalisation (DESIGN.md section 5).
//
// BatchNorm(C) (Ioffe & Szegedy 2015) normalises each channel c over the batch
// and all positions: x [N, C] (1-d) or [N, C, H, W] (2-d; any rank >= 2, the
// channel axis is 1 and every later axis is a position). With M = N * (values
// per channel per sample):
//
//   train:  mu_c = mean(x[:, c, ...]),  var_c = mean((x - mu_c)^2)   (biased)
//           running_mean <- (1 - m) running_mean + m mu
//           running_var  <- (1 - m) running_var + m var * M / (M - 1)
//           (unbiased)
//   eval:   mu, var = running_mean, running_var
//   y = scale_c * (x - mu_c) / sqrt(var_c + eps) + shift_c
//
// as PyTorch does (momentum m = 0.1, eps = 1e-5 by default). Training mode
// needs M >= 2. A batch whose statistics are not finite (NaN/Inf input) leaves
// the running statistics unchanged. Backward in train mode differentiates
// through the batch statistics: with xhat = (x - mu) / sigma,
//   dx = scale / sigma * (dy - mean(dy) - xhat * mean(dy * xhat))
//   dscale += sum(dy * xhat),  dshift += sum(dy);
// in eval mode mu and sigma are constants. Backward uses the statistics of the
// last Forward, whose mode it follows.
//
// In train mode the output is unchanged when an input channel is scaled by
// c > 0 (up to eps), so NormalizesInputChannels() is true: the weights feeding
// a batch norm have a scale symmetry (papers/001), which Sequential can remove
// by putting their rows on an oblique manifold.
//
// LayerNorm(F) (Ba et al. 2016) normalises each sample over its F values
// (x [N, ...] with F values per sample), then applies per-value scale and
// shift [F]: y = scale * (x - mu_n) / sqrt(var_n + eps) + shift. Same in
// train and eval.
//
// Parameters: "scale" [C] (init 1) and "shift" [C] (init 0), Euclidean.
// Statistics are accumulated in double.
//
// Devices: after To(kCuda) both layers run on the GPU (CUDA tensors in and
// out; the running statistics live on the device too). The per-channel and
// per-sample sums are deterministic reductions in double (two passes for the
// variance, as on the CPU), so results are reproducible run to run; they
// match the CPU to rounding (docs/cuda.md). An input on another device than
// the layer throws InvalidArgument naming the layer and both devices. To()
// forgets the statistics of the last Forward (Backward then needs a new
// Forward).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace symopt {
namespace nn {

// Device arguments of the GPU path (src/nn_dense_ops.h).
template <typename T>
struct BatchNormArgs;
template <typename T>
struct LayerNormArgs;

template <typename T>
class BatchNorm final : public Layer<T> {
 public:
  // Requires: channels >= 1, 0 <= momentum <= 1, eps > 0.
  explicit BatchNorm(std::int64_t channels,
                     double momentum = 0.1,
                     double eps = 1e-5);

  std::string Name() const override;  // "batchnorm(256)"
  Shape OutputShape(const Shape& input) const override;
  void Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void Backward(const Tensor<T>& x,
                const Tensor<T>& y,
                const Tensor<T>& dy,
                Tensor<T>& dx) override;
  std::vector<Parameter<T>> Params() override;
  std::vector<ParamTensor<T>*> ParamTensors() override {
    return {&scale_, &shift_};
  }
  bool NormalizesInputChannels() const override { return true; }
  // {running_mean, running_var}
  std::vector<Tensor<T>*> Buffers() override {
    return {&running_mean_, &running_var_};
  }

  Tensor<T>& scale() { return scale_.value; }
  Tensor<T>& shift() { return shift_.value; }
  // Running statistics (not trained; updated by training-mode Forward).
  Tensor<T>& running_mean() { return running_mean_; }
  Tensor<T>& running_var() { return running_var_; }
  void To(Device device) override;

 private:
  BatchNormArgs<T> DeviceArgs(std::int64_t n, std::int64_t inner);

  std::int64_t channels_;
  double momentum_, eps_;
  ParamTensor<T> scale_, shift_;
  Tensor<T> running_mean_, running_var_;
  std::vector<double> mean_, inv_std_;  // statistics of the last Forward
  Tensor<double> device_stats_;         // [2, C] mean, inv_std (GPU Forward)
  bool last_train_ = false;
};

template <typename T>
class LayerNorm final : public Layer<T> {
 public:
  // Requires: features >= 1, eps > 0.
  explicit LayerNorm(std::int64_t features, double eps = 1e-5);

  std::string Name() const override;  // "layernorm(64)"
  Shape OutputShape(const Shape& input) const override;
  void Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void Backward(const Tensor<T>& x,
                const Tensor<T>& y,
                const Tensor<T>& dy,
                Tensor<T>& dx) override;
  std::vector<Parameter<T>> Params() override;
  std::vector<ParamTensor<T>*> ParamTensors() override {
    return {&scale_, &shift_};
  }

  Tensor<T>& scale() { return scale_.value; }
  Tensor<T>& shift() { return shift_.value; }
  void To(Device device) override;

 private:
  LayerNormArgs<T> DeviceArgs(std::int64_t n);

  std::int64_t features_;
  double eps_;
  ParamTensor<T> scale_, shift_;
  std::vector<double> mean_, inv_std_;  // per sample, last Forward
  Tensor<double> device_stats_;         // [2, N] mean, inv_std (GPU Forward)
};

extern template class BatchNorm<float>;
extern template class BatchNorm<double>;
extern template class LayerNorm<float>;
extern template class LayerNorm<double>;

}  // namespace nn
}  // namespace symopt
