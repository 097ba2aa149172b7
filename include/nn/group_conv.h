// P4 group convolution (Cohen & Welling 2016; the P4CNN of papers/002_*):
// the lifting layer Z2 -> P4, the group layer P4 -> P4, pooling over
// rotations and P4 batch norm.
//
// Rotation. R rotates a square n x n grid by 90 degrees counter-clockwise
// (data::GridSymmetry::Rotation(1), numpy.rot90):
//   (R f)[i][j] = f[j][n-1-i],
// i.e. R f = f o sigma with sigma(i, j) = (j, n-1-i). About the grid centre
// sigma is the linear map (a, b) -> (b, -a), so for cross-correlation with
// stride 1 and symmetric padding (R x) * (R psi) = R (x * psi).
//
// P4 feature maps are [N, C, 4, H, W]: channel c, rotation r. The group acts
// on them by (g f)[c, r] = R f[c, r-1 mod 4].
//
// Lifting layer (x: [N, C_in, H, W] -> y: [N, C_out, 4, H', W']):
//   y[c_out, r] = sum_{c_in} x[c_in] * (R^r psi[c_out, c_in]) + b[c_out].
// Group layer (x: [N, C_in, 4, H, W] -> y: [N, C_out, 4, H', W']):
//   y[c_out, r] = sum_{c_in, s} x[c_in, s] * (R^r psi[c_out, c_in, s-r mod 4])
//                 + b[c_out].
// Both are equivariant: layer(g x) = g layer(x) (docs/group_layers.md).
// H' = H + 2 padding - kernel + 1, W' likewise (stride 1).
//
// Implementation: the layer stores only the free filters psi (theta,
// out x (in * S * k * k), S = 1 for lifting, 4 for P4 -> P4) and, on every
// Forward/Backward, gathers the expanded filter bank
//   B[(c_out, r), (c_in, s, i, j)] = theta[class_of((c_out, r, c_in, s, i, j))]
// into a transient buffer (freed on return), runs one ordinary
// cross-correlation with B (im2col + Eigen GEMM; the P4 map [N, C, 4, H, W]
// is the NCHW map [N, 4C, H, W]) and, backward, scatter-adds dB into dtheta.
// class_of is DERIVED, not typed in (P4FilterPattern): equivariance holds for
// all inputs iff B[r, s] = R B[r-1, s-1] (docs/group_layers.md), i.e.
// rho_out(g) B = B rho_in(g) for the generator g of C4 acting by a cyclic
// shift of r on the output and by Transform::P4Filter (quarter turn of the
// filter plane and shift of s; a plain quarter turn for lifting) on the input.
// The constraint engine (symmetry/constraint.h) solves it exactly as a tie
// pattern, classes numbered by first occurrence, which puts the r = 0 slice
// of the bank first: theta[c_out, c_in, s, i, j] is the filter applied at
// output rotation 0. Every class has exactly 4 members.
//
// Parameters (Params()): "weight" theta ([out, in, k, k] for lifting,
// [out, in, 4, k, k] for P4 -> P4; viewed as out x in*S*k*k, one filter per
// row; Euclidean, and Sequential::AssignManifoldsBeforeNormalization puts it
// on Oblique when a P4BatchNorm follows), "bias" ([out], Euclidean). The
// gradient written to theta is the exact gradient with respect to the compact
// coordinates: the per-class SUM of the bank gradient, i.e. the shared metric
// of TieSubspace (include/manifolds/tie_subspace.h). The embedded metric on
// E = {expanded banks} gives the per-class MEAN, which here is the sum / 4
// for every class: Euclidean SGD on theta with learning rate lr is embedded-
// metric SGD on E with learning rate 4 lr (docs/group_layers.md). Every
// bank row (c_out, r) is a permutation of theta row c_out, so unit-norm theta
// rows are exactly unit-norm expanded filters (Oblique on theta = Oblique on
// the bank).
//
// GPU (after To(Device::kCuda); an input on the other device is refused with
// InvalidArgument naming the layer and both devices): the pattern's index
// tables (class_of and the members of every class as CSR) are uploaded once,
// on the first GPU use; a gather kernel expands B on the device, the
// convolution is Conv2d's GPU path (chunked im2col + cuBLAS, column_budget()),
// and dtheta is the per-class SUM of dB by a gather over the CSR of members
// (deterministic, no atomics), adding the members in ascending order as the
// CPU does. RotationPool runs the same per-pixel maths (src/nn_conv_ops.h) on
// either device (docs/cuda.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "manifolds/tie_subspace.h"
#include "nn/layer.h"
#include "nn/layers.h"
#include "nn/normalization.h"

namespace symopt {
namespace nn {

// Number of rotations in P4.
constexpr std::int64_t kP4Order = 4;

enum class P4Input {
  kZ2,  // lifting layer: x is [N, C, H, W]
  kP4,  // group layer:   x is [N, C, 4, H, W]
};

// The weight-sharing pattern of a P4 filter bank: the constraint engine's
// solution of the equivariance constraint above.
// Rows are (c_out, r): out_channels * 4; cols are (c_in, s, i, j):
// in_channels * S * kernel^2, S = 1 (kZ2) or 4 (kP4). num_classes is the
// number of free parameters, out * in * S * kernel^2.
// Requires: channels >= 1, kernel >= 1.
TiePattern P4FilterPattern(P4Input input,
                           std::int64_t in_channels,
                           std::int64_t out_channels,
                           std::int64_t kernel);

// The group action on P4 feature maps, applied `times` times (any integer):
//   (g f)[n, c, r] = R f[n, c, r-1 mod 4],   R = a quarter turn of each plane.
// x: [N, C, 4, H, H] (square planes). Returns a new tensor.
template <typename T>
Tensor<T> ActP4(const Tensor<T>& x, int times = 1);

namespace backend {
template <typename T>
struct P4DeviceState;
}  // namespace backend

template <typename T>
class P4Conv final : public Layer<T> {
 public:
  // theta and bias uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)] from
  // std::mt19937_64(seed), fan_in = in * S * k^2 (Conv2d's initialisation
  // for the expanded bank).
  // Requires: channels >= 1, kernel >= 1, padding >= 0.
  P4Conv(P4Input input,
         std::int64_t in_channels,
         std::int64_t out_channels,
         std::int64_t kernel,
         std::int64_t padding = 0,
         std::uint64_t seed = 0,
         bool bias = true);
  ~P4Conv() override;

  // "p4_lift(1->10, k3, p0)" or "p4_conv(10->10, k3, p0)"
  std::string Name() const override;
  Shape OutputShape(const Shape& input) const override;
  void Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  // Skips dx (leaves it empty) when input_grad_required() is false.
  void Backward(const Tensor<T>& x,
                const Tensor<T>& y,
                const Tensor<T>& dy,
                Tensor<T>& dx) override;
  std::vector<Parameter<T>> Params() override;
  std::vector<ParamTensor<T>*> ParamTensors() override {
    if (has_bias_) return {&weight_, &bias_};
    return {&weight_};
  }

  P4Input input() const { return input_; }
  std::int64_t in_channels() const { return in_; }
  std::int64_t out_channels() const { return out_; }
  std::int64_t kernel() const { return k_; }
  std::int64_t padding() const { return pad_; }
  bool has_bias() const { return has_bias_; }
  // The derived tie pattern of the bank; num_classes = weight().size().
  const TiePattern& pattern() const { return pattern_; }

  // theta: the only stored copy of the filters.
  Tensor<T>& weight() { return weight_.value; }
  Tensor<T>& bias() { return bias_.value; }

  // The expanded bank as a conv weight [out*4, in*S, k, k] (row-major), for
  // tests and for code that wants a plain convolution.
  // bank: out*4 * in*S*k^2 values on the layer's device (host memory for a
  // CPU layer; device memory, filled by the gather kernel, after
  // To(Device::kCuda)), not aliasing weight().
  void ExpandFilters(T* bank) const;

  // Moves the parameters (Layer::To); moving to the CPU also frees the
  // device tables and scratch.
  void To(Device device) override;
  // GPU convolution scratch bound in elements (Conv2d::set_column_budget).
  void set_column_budget(std::int64_t elements);
  std::int64_t column_budget() const { return column_budget_; }

 private:
  // The device tables and scratch, created on first use.
  backend::P4DeviceState<T>& DeviceState() const;

  P4Input input_;
  std::int64_t in_, out_, k_, pad_, s_;
  bool has_bias_;
  TiePattern pattern_;
  // The members of every class (free weight) of pattern_, ascending, as CSR.
  std::vector<std::int32_t> member_offsets_, members_;
  ParamTensor<T> weight_, bias_;
  std::vector<std::vector<T>> scratch_;  // per-thread im2col / partials
  std::int64_t column_budget_;
  mutable std::unique_ptr<backend::P4DeviceState<T>> device_state_;
};

// Pooling over the rotation axis: [N, C, 4, H, W] -> [N, C, H, W],
//   y[c] = max_r x[c, r]  (kMax)   or   mean_r x[c, r]  (kMean).
// Since (g x)[c, r] = R x[c, r-1], pooling turns equivariance into plain
// rotation covariance: pool(g x) = R pool(x); a spatial pooling over a square
// map after it gives rotation invariance. Backward of kMax sends dy to the
// first maximal rotation.
enum class RotationPoolKind { kMax, kMean };

template <typename T>
class RotationPool final : public Layer<T> {
 public:
  explicit RotationPool(RotationPoolKind kind = RotationPoolKind::kMax)
      : kind_(kind) {}
  std::string Name() const override;
  Shape OutputShape(const Shape& input) const override;
  void Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void Backward(const Tensor<T>& x,
                const Tensor<T>& y,
                const Tensor<T>& dy,
                Tensor<T>& dx) override;

 private:
  RotationPoolKind kind_;
};

// P4 batch norm: one statistic per group channel, shared by the 4 rotations
// (so normalisation commutes with the group action). x, y: [N, C, 4, H, W].
// Statistics of channel c over its N*4*H*W values; otherwise exactly
// BatchNorm (nn/normalization.h: train/eval, running statistics, "scale" and
// "shift" parameters), which it runs on the same memory after checking the P4
// shape. NormalizesInputChannels() is true: scaling a P4 filter theta[c_out]
// scales all 4 rotations of channel c_out, which this layer undoes.
template <typename T>
class P4BatchNorm final : public Layer<T> {
 public:
  // Requires: channels >= 1, 0 <= momentum <= 1, eps > 0.
  explicit P4BatchNorm(std::int64_t channels,
                       double momentum = 0.1,
                       double eps = 1e-5);
  // "p4_batchnorm(10)"
  std::string Name() const override;
  Shape OutputShape(const Shape& input) const override;
  void Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void Backward(const Tensor<T>& x,
                const Tensor<T>& y,
                const Tensor<T>& dy,
                Tensor<T>& dx) override;
  std::vector<Parameter<T>> Params() override { return bn_.Params(); }
  std::vector<Tensor<T>*> Buffers() override { return bn_.Buffers(); }
  void To(Device device) override {
    bn_.To(device);
    Layer<T>::To(device);
  }
  bool NormalizesInputChannels() const override { return true; }

  // scale, shift and running statistics.
  BatchNorm<T>& batch_norm() { return bn_; }

 private:
  std::int64_t c_;
  BatchNorm<T> bn_;
};

extern template class P4Conv<float>;
extern template class P4Conv<double>;
extern template class RotationPool<float>;
extern template class RotationPool<double>;
extern template class P4BatchNorm<float>;
extern template class P4BatchNorm<double>;

}  // namespace nn
}  // namespace symopt
