// P4 group convolution (Cohen & Welling 2016; the P4CNN of papers/002_*):
// the lifting layer Z2 -> P4, the group layer P4 -> P4, pooling over
// rotations and P4 batch norm.
//
// Rotation. R rotates a square n x n grid by 90 degrees counter-clockwise:
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
// class_of is DERIVED, not typed in: it is the orbit of each bank entry under
// the generator (r, s, i, j) -> (r+1, s+1 mod S, sigma^-1(i, j)) of the
// symmetry (P4FilterPattern), numbered by first appearance, which puts the
// r = 0 slice of the bank first: theta[c_out, c_in, s, i, j] is the filter
// applied at output rotation 0. Every class has exactly 4 members.
//
// Parameters (Params()): "weight" theta (out x in*S*k*k, one filter per row;
// Euclidean by default, or any manifold of that shape, e.g. Oblique when the
// layer is followed by batch norm), "bias" (1 x out, Euclidean). The
// gradient written to theta is the exact gradient with respect to the compact
// coordinates: the per-class SUM of the bank gradient, i.e. the shared metric
// of TieSubspace (include/manifolds/tie_subspace.h). The embedded metric on
// E = {expanded banks} gives the per-class MEAN, which here is the sum / 4
// for every class: Euclidean SGD on theta with learning rate lr is embedded-
// metric SGD on E with learning rate 4 lr (docs/group_layers.md). Every
// bank row (c_out, r) is a permutation of theta row c_out, so unit-norm theta
// rows are exactly unit-norm expanded filters (Oblique on theta = Oblique on
// the bank).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "manifolds/tie_subspace.h"
#include "nn/layer.h"

namespace symopt {
namespace nn {

// Number of rotations in P4.
constexpr std::int64_t kP4Order = 4;

enum class P4Input {
  kZ2,  // lifting layer: x is [N, C, H, W]
  kP4,  // group layer:   x is [N, C, 4, H, W]
};

// The weight-sharing pattern of a P4 filter bank, derived from the group
// action (orbits of the generator above, by union-find).
// Rows are (c_out, r): out_channels * 4; cols are (c_in, s, i, j):
// in_channels * S * kernel^2, S = 1 (kZ2) or 4 (kP4). num_classes is the
// number of free parameters, out * in * S * kernel^2.
// Requires: channels >= 1, kernel >= 1.
TiePattern P4FilterPattern(P4Input input,
                           std::int64_t in_channels,
                           std::int64_t out_channels,
                           std::int64_t kernel);

template <typename T>
class P4Conv final : public Layer<T> {
 public:
  // Filters drawn N(0, 2 / fan_in) from `seed` (fan_in = in * S * k^2),
  // bias 0. The weight manifold is Euclidean(out, in * S * k^2).
  // Requires: channels >= 1, kernel >= 1, padding >= 0.
  P4Conv(P4Input input,
         std::int64_t in_channels,
         std::int64_t out_channels,
         std::int64_t kernel,
         std::int64_t padding = 0,
         bool bias = true,
         std::uint64_t seed = 1);

  // Replaces the weight's manifold (e.g. Oblique for filters followed by
  // batch norm). Requires: shape out x in*S*k^2. The weights are left as they
  // are; call manifold->ProjectPoint on Params()[0].value to move onto it.
  void SetWeightManifold(std::shared_ptr<const Manifold<T>> manifold);

  std::string Name() const override;
  Shape OutputShape(const Shape& input) const override;
  void Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void Backward(const Tensor<T>& x,
                const Tensor<T>& y,
                const Tensor<T>& dy,
                Tensor<T>& dx) override;
  std::vector<Parameter<T>> Params() override;

  P4Input input() const { return input_; }
  std::int64_t in_channels() const { return in_; }
  std::int64_t out_channels() const { return out_; }
  std::int64_t kernel() const { return k_; }
  std::int64_t padding() const { return pad_; }
  // Free parameters of the filters (theta.size()), = pattern().num_classes.
  std::int64_t NumFreeWeights() const { return std::int64_t(theta_.size()); }
  const TiePattern& pattern() const { return pattern_; }

  // theta: out x in*S*k^2, row-major.
  T* weight() { return theta_.data(); }
  const T* weight() const { return theta_.data(); }
  T* weight_grad() { return dtheta_.data(); }
  // bias: out values (empty when the layer has none).
  T* bias() { return bias_.data(); }
  T* bias_grad() { return dbias_.data(); }

  // The expanded bank as a conv weight [out*4, in*S, k, k] (row-major), for
  // tests and for code that wants a plain convolution.
  // bank: out*4 * in*S*k^2 values.
  void ExpandFilters(T* bank) const;

 private:
  void CheckInput(const Shape& x) const;

  P4Input input_;
  std::int64_t in_, out_, k_, pad_, s_;
  TiePattern pattern_;
  std::vector<T> theta_, dtheta_, bias_, dbias_;
  std::shared_ptr<const Manifold<T>> weight_manifold_, bias_manifold_;
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
//   train: mu_c, var_c = mean and biased variance of x[:, c, :, :, :]
//          (N*4*H*W values); running_mean <- (1-m) running_mean + m mu,
//          running_var <- (1-m) running_var + m var * n/(n-1).
//   eval:  mu, var = running statistics.
//   y = gamma_c (x - mu_c) / sqrt(var_c + eps) + beta_c.
// This equals 2-d batch norm on the [N, C, 4H, W] view of the same memory.
// Parameters: "gamma" (1 x C, init 1) and "beta" (1 x C, init 0), Euclidean.
// Backward uses the statistics of the last Forward (train: batch; eval:
// running), and requires x to be the input of that Forward.
template <typename T>
class P4BatchNorm final : public Layer<T> {
 public:
  // Requires: channels >= 1, 0 <= momentum <= 1, eps > 0.
  explicit P4BatchNorm(std::int64_t channels,
                       double momentum = 0.1,
                       double eps = 1e-5);
  std::string Name() const override;
  Shape OutputShape(const Shape& input) const override;
  void Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) override;
  void Backward(const Tensor<T>& x,
                const Tensor<T>& y,
                const Tensor<T>& dy,
                Tensor<T>& dx) override;
  std::vector<Parameter<T>> Params() override;

  const std::vector<double>& running_mean() const { return running_mean_; }
  const std::vector<double>& running_var() const { return running_var_; }
  T* gamma() { return gamma_.data(); }
  T* beta() { return beta_.data(); }

 private:
  std::int64_t c_;
  double momentum_, eps_;
  std::vector<T> gamma_, beta_, dgamma_, dbeta_;
  std::vector<double> running_mean_, running_var_;
  // Statistics of the last Forward (mean, 1/sqrt(var + eps) per channel).
  Mode last_mode_ = Mode::kEval;
  Shape last_shape_;
  std::vector<double> mean_, inv_std_;
  std::shared_ptr<const Manifold<T>> manifold_;
};

extern template class P4Conv<float>;
extern template class P4Conv<double>;
extern template class RotationPool<float>;
extern template class RotationPool<double>;
extern template class P4BatchNorm<float>;
extern template class P4BatchNorm<double>;

}  // namespace nn
}  // namespace symopt
