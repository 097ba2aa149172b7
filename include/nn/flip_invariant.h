// The flip-invariant dense layer of FIAN (papers/000_*, sections 4.1 and 5.3).
//
// A dense layer y = W vec(x) + b on x: [N, C, H, W_] (y: [N, F]) is invariant
// under the horizontal flip (T x)[c, h, w] = x[c, h, W_-1-w] iff W = W T
// (000_* eq. 8), i.e. W[f, c, h, w] = W[f, c, h, W_-1-w]: the input indices
// fall into the orbits of the flip (mirror pairs {w, W_-1-w}, and the single
// middle column when W_ is odd), and W is constant on every orbit.
// The orbits are DERIVED, not typed in: FlipPattern asks the constraint
// engine (symmetry/constraint.h) for the solution of W = W T, T =
// Transform::Flip of the width axis; its classes, numbered by first
// occurrence, are orbit (c, h, w) for w < ceil(W_/2). The layer stores one
// weight per orbit,
//   theta: F x K,  K = C * H * ceil(W_/2),
// and computes y by FOLDING the input instead of expanding the weights:
//   xf[n, k] = sum_{i in orbit k} x[n, i]   (= x[.., w] + x[.., W_-1-w])
//   y = xf theta^T + b.
// Since W vec(x) = sum_k theta_k sum_{i in k} x_i, this equals the dense layer
// with the expanded tied weights W[f, i] = theta[f, class(i)], at about half
// its cost: the GEMMs have inner dimension K ~ C H W_ / 2, and the fold is
// O(N C H W_). Weights take K / (C H W_) ~ 1/2 of the dense layer's memory;
// no expanded copy is ever formed (ExpandWeights exists for tests).
// Backward: dtheta += dy^T xf (exactly the per-orbit SUM of the dense
// gradient: the shared metric of TieSubspace); dx[n, i] = (dy theta)[n,
// class(i)] (unfold). The embedded metric on E gives the per-orbit MEAN, the
// sum divided by the orbit size |k| (2 for a mirror pair, 1 for the middle
// column of odd W_). So Euclidean SGD on theta with learning rate lr is
// embedded-metric SGD on E with learning rate 2 lr when W_ is even; when W_
// is odd the middle column gets half the step the embedded metric would give
// it (docs/group_layers.md).
//
// Parameters: "weight" theta ([F, K], Euclidean; Sequential may reassign),
// "bias" ([F], Euclidean). Input [N, C, H, W_] exactly; output [N, F].
// Initialisation as Linear(C*H*W_, F): uniform in +-1/sqrt(C*H*W_) from
// std::mt19937_64(seed).
// Note: ||W[f, :]||^2 = sum_k |k| theta[f, k]^2, so unit-norm theta rows
// (Oblique on theta) are unit-norm dense rows up to sqrt(2) only when W_ is
// even.
//
// GPU (after To(Device::kCuda); an input on the other device is refused with
// InvalidArgument): the orbit tables (class_of and the members of every orbit
// as CSR) are uploaded once, on first use; the fold is a gather kernel over
// the CSR (ClassOps::Sum: the CPU's order, so the folded input is bitwise the
// CPU's), the products are cuBLAS, the unfold a gather by class_of. No
// atomics (docs/cuda.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "manifolds/tie_subspace.h"
#include "nn/layer.h"
#include "nn/layers.h"

namespace symopt {
namespace nn {

// The tie pattern of ONE output row of the flip-invariant weight: rows = 1,
// cols = C*H*W, class_of[(c*H + h)*W + w] = orbit of (c, h, w) under the flip
// of the w axis. Every row of W repeats it (a row-periodic pattern).
// Requires: channels, height, width >= 1.
TiePattern FlipPattern(std::int64_t channels,
                       std::int64_t height,
                       std::int64_t width);

namespace backend {
template <typename T>
struct FlipDeviceState;
}  // namespace backend

template <typename T>
class FlipInvariantDense final : public Layer<T> {
 public:
  // Requires: all sizes >= 1.
  FlipInvariantDense(std::int64_t channels,
                     std::int64_t height,
                     std::int64_t width,
                     std::int64_t out_features,
                     std::uint64_t seed = 0,
                     bool bias = true);
  ~FlipInvariantDense() override;

  // "flip_invariant_dense([256, 6, 6]->4096)"
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

  std::int64_t in_features() const { return c_ * h_ * w_; }
  std::int64_t out_features() const { return f_; }
  bool has_bias() const { return has_bias_; }
  // K: free weights per output row (pattern().num_classes).
  std::int64_t NumOrbits() const { return pattern_.num_classes; }
  const TiePattern& pattern() const { return pattern_; }

  Tensor<T>& weight() { return weight_.value; }  // theta [F, K]
  Tensor<T>& bias() { return bias_.value; }      // [F]

  // The dense weight it stands for: dense[f, i] = theta[f, class(i)].
  // dense: F * C*H*W values, row-major, on the layer's device (device memory,
  // filled by the gather kernel, after To(Device::kCuda)).
  void ExpandWeights(T* dense) const;

  // Moves the parameters (Layer::To); moving to the CPU also frees the device
  // tables and scratch.
  void To(Device device) override;

 private:
  // xf[s, k] = sum of x[s, i] over the members i of orbit k, s < n.
  void Fold(const T* x, std::int64_t n, T* xf) const;
  // The device tables and scratch, created on first use.
  backend::FlipDeviceState<T>& DeviceState() const;

  std::int64_t c_, h_, w_, f_;
  bool has_bias_;
  TiePattern pattern_;
  std::vector<std::int32_t> offsets_, members_;  // orbit members (CSR)
  ParamTensor<T> weight_, bias_;
  mutable std::unique_ptr<backend::FlipDeviceState<T>> device_state_;
};

extern template class FlipInvariantDense<float>;
extern template class FlipInvariantDense<double>;

}  // namespace nn
}  // namespace symopt
