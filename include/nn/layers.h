// The standard dense and element-wise layers of the network module
// (DESIGN.md section 5). Each implements nn::Layer<T> (nn/layer.h) with a
// plain CPU implementation; float is for training, double for the
// finite-difference checks (tests/layer_checks.h).
//
//   Linear(in, out)   x [N, in] -> y [N, out],  y = x W^T + b
//                     W [out, in] (row r = the filter of unit r), b [out].
//                     Backward: dW += dy^T x, db += sum_n dy_n, dx = dy W.
//   ReLU              y = max(x, 0);  dx = dy * [y > 0]   (any shape)
//   Tanh              y = tanh(x);    dx = dy * (1 - y^2) (any shape)
//   Flatten           [N, d1, ..., dk] -> [N, d1 * ... * dk] (row-major, so
//                     the values are unchanged; dx = dy reshaped)
//   Dropout(p, seed)  train: y = x * m / (1 - p), m_i ~ Bernoulli(1 - p)
//                     drawn from a seeded generator (inverted dropout, so eval
//                     needs no rescaling); eval: y = x. dx = dy * m / (1 - p).
//
// Parameters (Params()): each Parameter's value is the whole tensor viewed as
// dim(0) x rest (so a weight's rows are its output units, the rows an oblique
// manifold normalises). Every parameter starts on Euclidean(rows, cols);
// Sequential (nn/sequential.h) reassigns manifolds, e.g. unit-norm rows for a
// weight followed by batch norm.
//
// Initialisation follows PyTorch's default for Linear: W and b uniform in
// [-1/sqrt(in), 1/sqrt(in)], drawn from std::mt19937_64(seed).
//
// Aliasing: x, y, dy and dx must be distinct tensors. Forward and Backward
// resize their outputs. Backward must follow a Forward on the same x (Dropout
// reuses the mask of that Forward).
//
// Devices: every layer runs on the CPU and, in a CUDA build, on the GPU
// (docs/cuda.md, "Dense layers and losses on the GPU"): after layer.To(kCuda)
// Forward and Backward take CUDA tensors and write CUDA outputs; Linear's
// products are cuBLAS GEMMs (dW and db ADD to the gradients, as on the CPU).
// An input (or output gradient) on another device than the layer throws
// InvalidArgument naming the layer and both devices, before anything is
// written. Dropout draws its mask on the host with the same generator on
// both devices and uploads it, so the GPU and the CPU masks are identical.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "manifolds/euclidean.h"
#include "manifolds/manifold.h"
#include "nn/layer.h"
#include "nn/tensor.h"

namespace symopt {
namespace nn {

template <typename T>
class Linear final : public Layer<T> {
 public:
  // Requires: in >= 1, out >= 1.
  Linear(std::int64_t in,
         std::int64_t out,
         std::uint64_t seed = 0,
         bool bias = true);

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
  bool has_bias() const { return has_bias_; }

 private:
  std::int64_t in_, out_;
  bool has_bias_;
  ParamTensor<T> weight_, bias_;
};

template <typename T>
class ReLU final : public Layer<T> {
 public:
  std::string Name() const override { return "relu"; }
  Shape OutputShape(const Shape& input) const override;
  void Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void Backward(const Tensor<T>& x,
                const Tensor<T>& y,
                const Tensor<T>& dy,
                Tensor<T>& dx) override;
};

template <typename T>
class Tanh final : public Layer<T> {
 public:
  std::string Name() const override { return "tanh"; }
  Shape OutputShape(const Shape& input) const override;
  void Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void Backward(const Tensor<T>& x,
                const Tensor<T>& y,
                const Tensor<T>& dy,
                Tensor<T>& dx) override;
};

template <typename T>
class Flatten final : public Layer<T> {
 public:
  std::string Name() const override { return "flatten"; }
  // Requires: input rank >= 2.
  Shape OutputShape(const Shape& input) const override;
  void Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void Backward(const Tensor<T>& x,
                const Tensor<T>& y,
                const Tensor<T>& dy,
                Tensor<T>& dx) override;
};

template <typename T>
class Dropout final : public Layer<T> {
 public:
  // Requires: 0 <= p < 1.
  explicit Dropout(double p, std::uint64_t seed = 0);

  std::string Name() const override;
  Shape OutputShape(const Shape& input) const override;
  void Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void Backward(const Tensor<T>& x,
                const Tensor<T>& y,
                const Tensor<T>& dy,
                Tensor<T>& dx) override;

  // Restarts the mask generator: the next training Forward draws the same
  // mask as the first one after construction with this seed.
  void Reseed(std::uint64_t seed) { rng_.seed(seed); }
  double p() const { return p_; }
  // Layer<T>::To, and drops the device copy of the last mask (a training
  // Backward then needs a new Forward on the new device).
  void To(Device device) override;

 private:
  double p_;
  std::mt19937_64 rng_;
  std::vector<T> mask_;    // scaled mask of the last training Forward
  Tensor<T> device_mask_;  // its device copy (CUDA layers)
  bool last_train_ = false;
};

extern template class Linear<float>;
extern template class Linear<double>;
extern template class ReLU<float>;
extern template class ReLU<double>;
extern template class Tanh<float>;
extern template class Tanh<double>;
extern template class Flatten<float>;
extern template class Flatten<double>;
extern template class Dropout<float>;
extern template class Dropout<double>;

}  // namespace nn
}  // namespace symopt
