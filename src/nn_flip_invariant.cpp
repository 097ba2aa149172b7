#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

#include "backend/nn_conv_dispatch.h"
#include "backend/nn_dense_dispatch.h"
#include "nn/flip_invariant.h"
#include "nn_common.h"
#include "nn_conv_ops.h"
#include "symmetry/constraint.h"

namespace symopt {
namespace nn {

using internal::ConstMatrixMap;
using internal::MatrixMap;

TiePattern FlipPattern(std::int64_t channels,
                       std::int64_t height,
                       std::int64_t width) {
  SYMOPT_CHECK(channels >= 1 && height >= 1 && width >= 1,
               "FlipPattern: sizes must be >= 1, got C="
                   << channels << " H=" << height << " W=" << width);
  // The constraint engine (include/symmetry/) solves the invariance W = W T
  // (000_* eq. 8) for the flip T of the width axis (Transform::Flip, eq. 24)
  // on one output row: every row of the layer has the same pattern.
  const symopt::Shape in_shape({channels, height, width});
  ConstraintProblem problem(symopt::Shape({1}), in_shape);
  problem.AddInvariance(Transform::Flip(in_shape, 2));
  Solution solution = Solve(problem);
  SYMOPT_CHECK(solution.is_tie && solution.num_zero == 0,
               "FlipPattern: the engine returned no plain tie pattern");
  return std::move(solution.ties);
}

template <typename T>
FlipInvariantDense<T>::FlipInvariantDense(std::int64_t channels,
                                          std::int64_t height,
                                          std::int64_t width,
                                          std::int64_t out_features,
                                          std::uint64_t seed,
                                          bool bias)
    : c_(channels),
      h_(height),
      w_(width),
      f_(out_features),
      has_bias_(bias),
      pattern_(FlipPattern(std::max<std::int64_t>(channels, 1),
                           std::max<std::int64_t>(height, 1),
                           std::max<std::int64_t>(width, 1))),
      weight_("weight",
              {std::max<std::int64_t>(out_features, 1), pattern_.num_classes}),
      bias_("bias", {std::max<std::int64_t>(out_features, 1)}) {
  SYMOPT_CHECK(channels >= 1 && height >= 1 && width >= 1 && out_features >= 1,
               "flip_invariant_dense: sizes must be >= 1, got C="
                   << channels << ", H=" << height << ", W=" << width
                   << ", F=" << out_features);
  // Members of every orbit as CSR lists, for the fold.
  internal::MemberCsr csr =
      internal::BuildMemberCsr(pattern_.class_of, pattern_.num_classes);
  offsets_ = std::move(csr.offsets);
  members_ = std::move(csr.members);
  std::mt19937_64 rng(seed);
  const double bound = 1.0 / std::sqrt(double(in_features()));
  internal::FillUniform(weight_.value.data(), weight_.value.size(), bound, rng);
  if (has_bias_) internal::FillUniform(bias_.value.data(), f_, bound, rng);
}

template <typename T>
FlipInvariantDense<T>::~FlipInvariantDense() = default;

template <typename T>
void FlipInvariantDense<T>::To(Device device) {
  if (device == Device::kCpu) device_state_.reset();
  Layer<T>::To(device);
}

template <typename T>
backend::FlipDeviceState<T>& FlipInvariantDense<T>::DeviceState() const {
  if (!device_state_) {
    auto state = std::make_unique<backend::FlipDeviceState<T>>();
    state->tables =
        backend::UploadTieTables(pattern_.class_of, pattern_.num_classes);
    device_state_ = std::move(state);
  }
  return *device_state_;
}

template <typename T>
std::string FlipInvariantDense<T>::Name() const {
  std::ostringstream os;
  os << "flip_invariant_dense([" << c_ << ", " << h_ << ", " << w_ << "]->"
     << f_ << ")";
  return os.str();
}

template <typename T>
Shape FlipInvariantDense<T>::OutputShape(const Shape& input) const {
  internal::CheckInputShape(Name(), input, {-1, c_, h_, w_});
  return {input[0], f_};
}

template <typename T>
void FlipInvariantDense<T>::Fold(const T* x, std::int64_t n, T* xf) const {
  const std::int64_t d = in_features(), K = NumOrbits();
#pragma omp parallel for schedule(static)
  for (std::int64_t s = 0; s < n; ++s) {
    const T* xs = x + s * d;
    T* out = xf + s * K;
    for (std::int64_t k = 0; k < K; ++k) {
      out[k] = internal::ClassOps::Sum(xs,
                                       members_.data(),
                                       offsets_[std::size_t(k)],
                                       offsets_[std::size_t(k) + 1],
                                       T(0));
    }
  }
}

template <typename T>
void FlipInvariantDense<T>::ExpandWeights(T* dense) const {
  const std::int64_t d = in_features(), K = NumOrbits();
  const T* theta = weight_.value.data();
  if (weight_.value.is_cuda()) {
    backend::ExpandGpu(DeviceState().tables, f_, theta, K, dense);
    return;
  }
  for (std::int64_t f = 0; f < f_; ++f) {
    for (std::int64_t i = 0; i < d; ++i) {
      dense[f * d + i] = theta[f * K + pattern_.class_of[i]];
    }
  }
}

template <typename T>
void FlipInvariantDense<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode) {
  const Shape ys = OutputShape(x.shape());
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  const std::int64_t n = ys[0], K = NumOrbits();
  if (x.is_cuda()) {
    backend::FlipDeviceState<T>& st = DeviceState();
    T* xf = backend::Reserve(st.folded, n * K);
    backend::ClassSumGpu(st.tables, n, x.data(), in_features(), false, xf);
    y.Resize(ys, x.device());
    symopt::backend::dense::LinearForward(
        static_cast<const T*>(xf),
        weight_.value.data(),
        has_bias_ ? bias_.value.data() : nullptr,
        y.data(),
        n,
        K,
        f_);
    return;
  }
  std::vector<T> xf(n * K);
  Fold(x.data(), n, xf.data());
  y.Resize(ys, x.device());
  MatrixMap<T> Y(y.data(), n, f_);
  const ConstMatrixMap<T> theta(weight_.value.data(), f_, K);
  Y.noalias() = ConstMatrixMap<T>(xf.data(), n, K) * theta.transpose();
  if (has_bias_) {
    Y.rowwise() +=
        internal::ConstVectorMap<T>(bias_.value.data(), f_).transpose();
  }
}

template <typename T>
void FlipInvariantDense<T>::Backward(const Tensor<T>& x,
                                     const Tensor<T>&,
                                     const Tensor<T>& dy,
                                     Tensor<T>& dx) {
  const Shape ys = OutputShape(x.shape());
  internal::CheckSameShape(Name(), "output gradient", dy.shape(), ys);
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  CheckLayerDevice(Name(), "output gradient", this->device(), dy.device());
  const std::int64_t n = ys[0], K = NumOrbits(), d = in_features();
  const bool need_dx = this->input_grad_required();
  if (x.is_cuda()) {
    // Fold, Linear's products (dtheta, dbias, dxf = dy theta), unfold.
    backend::FlipDeviceState<T>& st = DeviceState();
    T* xf = backend::Reserve(st.folded, n * K);
    backend::ClassSumGpu(st.tables, n, x.data(), d, false, xf);
    T* dxf = need_dx ? backend::Reserve(st.dfolded, n * K) : nullptr;
    symopt::backend::dense::LinearBackward(
        static_cast<const T*>(xf),
        weight_.value.data(),
        dy.data(),
        weight_.grad.data(),
        has_bias_ ? bias_.grad.data() : nullptr,
        dxf,
        n,
        K,
        f_);
    dx.Resize(need_dx ? x.shape() : Shape{0}, x.device());
    if (need_dx) {
      backend::ExpandGpu(
          st.tables, n, static_cast<const T*>(dxf), K, dx.data());
    }
    return;
  }
  std::vector<T> xf(n * K);
  Fold(x.data(), n, xf.data());
  const ConstMatrixMap<T> dY(dy.data(), n, f_);
  const ConstMatrixMap<T> theta(weight_.value.data(), f_, K);
  // dtheta += dy^T xf: the dense gradient dy^T x summed over every orbit.
  MatrixMap<T>(weight_.grad.data(), f_, K).noalias() +=
      dY.transpose() * ConstMatrixMap<T>(xf.data(), n, K);
  if (has_bias_) {
    internal::VectorMap<T>(bias_.grad.data(), f_) +=
        dY.colwise().sum().transpose();
  }
  if (!need_dx) {
    dx.Resize({0}, x.device());
    return;
  }
  // dxf = dy theta (in xf's storage), then unfold to every orbit member.
  MatrixMap<T>(xf.data(), n, K).noalias() = dY * theta;
  dx.Resize(x.shape(), x.device());
  const std::vector<std::int32_t>& cls = pattern_.class_of;
  T* dxd = dx.data();
  const T* dxf = xf.data();
#pragma omp parallel for schedule(static)
  for (std::int64_t s = 0; s < n; ++s) {
    for (std::int64_t i = 0; i < d; ++i) dxd[s * d + i] = dxf[s * K + cls[i]];
  }
}

template <typename T>
std::vector<Parameter<T>> FlipInvariantDense<T>::Params() {
  std::vector<Parameter<T>> p{weight_.View()};
  if (has_bias_) p.push_back(bias_.View());
  return p;
}

template class FlipInvariantDense<float>;
template class FlipInvariantDense<double>;

}  // namespace nn
}  // namespace symopt
