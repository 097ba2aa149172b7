#include <cmath>
#include <sstream>

#include "backend/nn_dense_dispatch.h"
#include "nn/normalization.h"
#include "nn_common.h"
#include "nn_dense_ops.h"

namespace symopt {
namespace nn {

namespace dense = backend::dense;

// ---- BatchNorm
// ---------------------------------------------------------------------

template <typename T>
BatchNorm<T>::BatchNorm(std::int64_t channels, double momentum, double eps)
    : channels_(channels),
      momentum_(momentum),
      eps_(eps),
      scale_("scale", {std::max<std::int64_t>(channels, 1)}),
      shift_("shift", {std::max<std::int64_t>(channels, 1)}),
      running_mean_({std::max<std::int64_t>(channels, 1)}, T(0)),
      running_var_({std::max<std::int64_t>(channels, 1)}, T(1)) {
  SYMOPT_CHECK(
      channels >= 1 && momentum >= 0 && momentum <= 1 && eps > 0,
      "batchnorm: need channels >= 1, momentum in [0, 1], eps > 0; got "
          << channels << ", " << momentum << ", " << eps);
  scale_.value.Fill(T(1));
}

template <typename T>
std::string BatchNorm<T>::Name() const {
  return "batchnorm(" + std::to_string(channels_) + ")";
}

template <typename T>
Shape BatchNorm<T>::OutputShape(const Shape& input) const {
  bool ok = input.size() >= 2 && input[1] == channels_;
  for (size_t i = 0; ok && i < input.size(); ++i) ok = input[i] >= 1;
  SYMOPT_CHECK(ok,
               Name() << ": input shape " << ShapeString(input)
                      << " does not match expected [N, " << channels_
                      << "] or [N, " << channels_ << ", H, W]");
  return input;
}

template <typename T>
void BatchNorm<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) {
  const Shape shape = OutputShape(x.shape());
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  const std::int64_t n = x.dim(0), c_count = channels_;
  const std::int64_t inner = x.size() / (n * c_count), m = n * inner;
  SYMOPT_CHECK(mode != Mode::kTrain || m >= 2,
               Name() << ": training mode needs more than one value per "
                         "channel, got input "
                      << ShapeString(x.shape()));
  y.Resize(shape, x.device());
  last_train_ = mode == Mode::kTrain;
  if (x.is_cuda()) {
    mean_.clear();
    inv_std_.clear();
    device_stats_.Resize({2, c_count}, Device::kCuda);
    dense::BatchNormForward(
        DeviceArgs(n, inner), last_train_, x.data(), y.data());
    return;
  }
  device_stats_ = Tensor<double>();
  mean_.assign(c_count, 0.0);
  inv_std_.assign(c_count, 0.0);
  if (mode == Mode::kTrain) {
    std::vector<double> var(c_count, 0.0);
    // Two passes (mean, then centred squares) for accuracy.
    for (std::int64_t b = 0; b < n; ++b) {
      for (std::int64_t c = 0; c < c_count; ++c) {
        const T* in = x.data() + (b * c_count + c) * inner;
        double s = 0.0;
        for (std::int64_t i = 0; i < inner; ++i) s += in[i];
        mean_[c] += s;
      }
    }
    for (double& mu : mean_) mu /= double(m);
    for (std::int64_t b = 0; b < n; ++b) {
      for (std::int64_t c = 0; c < c_count; ++c) {
        const T* in = x.data() + (b * c_count + c) * inner;
        const double mu = mean_[c];
        double s = 0.0;
        for (std::int64_t i = 0; i < inner; ++i)
          s += BatchNormOps::CentredSquare(in[i], mu);
        var[c] += s;
      }
    }
    bool finite = true;
    for (std::int64_t c = 0; c < c_count; ++c) {
      var[c] /= double(m);
      inv_std_[c] = BatchNormOps::InvStd(var[c], eps_);
      finite = finite && std::isfinite(mean_[c]) && std::isfinite(var[c]);
    }
    // A NaN/Inf input makes the output non-finite (the training loop reports
    // it) but never reaches the running statistics.
    for (std::int64_t c = 0; finite && c < c_count; ++c) {
      BatchNormOps::UpdateRunning(&running_mean_[c],
                                  &running_var_[c],
                                  mean_[c],
                                  var[c],
                                  momentum_,
                                  double(m));
    }
  } else {
    for (std::int64_t c = 0; c < c_count; ++c) {
      mean_[c] = running_mean_[c];
      inv_std_[c] = BatchNormOps::InvStd(double(running_var_[c]), eps_);
    }
  }
  for (std::int64_t b = 0; b < n; ++b) {
    for (std::int64_t c = 0; c < c_count; ++c) {
      T a, o;
      BatchNormOps::ForwardCoefficients(
          scale_.value[c], shift_.value[c], mean_[c], inv_std_[c], &a, &o);
      const T* in = x.data() + (b * c_count + c) * inner;
      T* out = y.data() + (b * c_count + c) * inner;
      for (std::int64_t i = 0; i < inner; ++i)
        out[i] = BatchNormOps::Affine(a, in[i], o);
    }
  }
}

template <typename T>
void BatchNorm<T>::Backward(const Tensor<T>& x,
                            const Tensor<T>&,
                            const Tensor<T>& dy,
                            Tensor<T>& dx) {
  internal::CheckSameShape(
      Name(), "output gradient", dy.shape(), OutputShape(x.shape()));
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  CheckLayerDevice(Name(), "output gradient", this->device(), dy.device());
  const std::int64_t n = x.dim(0), c_count = channels_;
  const std::int64_t inner = x.size() / (n * c_count), m = n * inner;
  SYMOPT_CHECK(x.is_cuda() ? device_stats_.size() == 2 * c_count
                           : std::int64_t(mean_.size()) == c_count,
               Name() << ": Backward without a Forward on this device");
  if (x.is_cuda()) {
    const bool need_dx = this->input_grad_required();
    dx.Resize(need_dx ? x.shape() : Shape{0}, x.device());
    dense::BatchNormBackward(DeviceArgs(n, inner),
                             last_train_,
                             x.data(),
                             dy.data(),
                             scale_.grad.data(),
                             shift_.grad.data(),
                             need_dx ? dx.data() : nullptr);
    return;
  }
  // Per channel: sum(dy) and sum(dy * xhat).
  std::vector<double> sum_dy(c_count, 0.0), sum_dy_xhat(c_count, 0.0);
  for (std::int64_t b = 0; b < n; ++b) {
    for (std::int64_t c = 0; c < c_count; ++c) {
      const T* in = x.data() + (b * c_count + c) * inner;
      const T* g = dy.data() + (b * c_count + c) * inner;
      const double mu = mean_[c];
      double s = 0.0, sx = 0.0;
      for (std::int64_t i = 0; i < inner; ++i) {
        s += g[i];
        sx += BatchNormOps::GradCentred(g[i], in[i], mu);
      }
      sum_dy[c] += s;
      sum_dy_xhat[c] += sx * inv_std_[c];
    }
  }
  for (std::int64_t c = 0; c < c_count; ++c) {
    scale_.grad[c] += T(sum_dy_xhat[c]);
    shift_.grad[c] += T(sum_dy[c]);
  }
  if (!this->input_grad_required()) {
    dx.Resize({0}, x.device());
    return;
  }
  dx.Resize(x.shape(), x.device());
  for (std::int64_t c = 0; c < c_count; ++c) {
    // dx = k * (dy - mean(dy) - xhat * mean(dy * xhat)), k = scale * inv_std,
    // written as a * dy + bx * x + o with per-channel constants (eval: a dy).
    T a, bx, o;
    BatchNormOps::BackwardCoefficients(scale_.value[c],
                                       mean_[c],
                                       inv_std_[c],
                                       sum_dy[c],
                                       sum_dy_xhat[c],
                                       double(m),
                                       last_train_,
                                       &a,
                                       &bx,
                                       &o);
    for (std::int64_t b = 0; b < n; ++b) {
      const T* in = x.data() + (b * c_count + c) * inner;
      const T* g = dy.data() + (b * c_count + c) * inner;
      T* d = dx.data() + (b * c_count + c) * inner;
      if (last_train_) {
        for (std::int64_t i = 0; i < inner; ++i)
          d[i] = BatchNormOps::TrainGrad(a, g[i], bx, in[i], o);
      } else {
        for (std::int64_t i = 0; i < inner; ++i)
          d[i] = BatchNormOps::EvalGrad(a, g[i]);
      }
    }
  }
}

template <typename T>
nn::BatchNormArgs<T> BatchNorm<T>::DeviceArgs(std::int64_t n,
                                              std::int64_t inner) {
  nn::BatchNormArgs<T> a;
  a.n = n;
  a.channels = channels_;
  a.inner = inner;
  a.scale = scale_.value.data();
  a.shift = shift_.value.data();
  a.running_mean = running_mean_.data();
  a.running_var = running_var_.data();
  a.momentum = momentum_;
  a.eps = eps_;
  a.stats = device_stats_.data();
  return a;
}

template <typename T>
void BatchNorm<T>::To(Device device) {
  Layer<T>::To(device);
  // The statistics of the last Forward belong to the old device.
  mean_.clear();
  inv_std_.clear();
  device_stats_ = Tensor<double>();
}

template <typename T>
std::vector<Parameter<T>> BatchNorm<T>::Params() {
  return {scale_.View(), shift_.View()};
}

// ---- LayerNorm
// ---------------------------------------------------------------------

template <typename T>
LayerNorm<T>::LayerNorm(std::int64_t features, double eps)
    : features_(features),
      eps_(eps),
      scale_("scale", {std::max<std::int64_t>(features, 1)}),
      shift_("shift", {std::max<std::int64_t>(features, 1)}) {
  SYMOPT_CHECK(features >= 1 && eps > 0,
               "layernorm: need features >= 1 and eps > 0; got "
                   << features << ", " << eps);
  scale_.value.Fill(T(1));
}

template <typename T>
std::string LayerNorm<T>::Name() const {
  return "layernorm(" + std::to_string(features_) + ")";
}

template <typename T>
Shape LayerNorm<T>::OutputShape(const Shape& input) const {
  bool ok = input.size() >= 2;
  for (size_t i = 0; ok && i < input.size(); ++i) ok = input[i] >= 1;
  SYMOPT_CHECK(ok && NumElements(input) / input[0] == features_,
               Name() << ": input shape " << ShapeString(input)
                      << " does not match expected [N, " << features_
                      << "] (or [N, ...] with " << features_
                      << " values per sample)");
  return input;
}

template <typename T>
void LayerNorm<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode) {
  const Shape shape = OutputShape(x.shape());
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  y.Resize(shape, x.device());
  const std::int64_t n = x.dim(0), f = features_;
  if (x.is_cuda()) {
    mean_.clear();
    inv_std_.clear();
    device_stats_.Resize({2, n}, Device::kCuda);
    dense::LayerNormForward(DeviceArgs(n), x.data(), y.data());
    return;
  }
  device_stats_ = Tensor<double>();
  mean_.assign(n, 0.0);
  inv_std_.assign(n, 0.0);
  for (std::int64_t b = 0; b < n; ++b) {
    const T* in = x.data() + b * f;
    double s = 0.0;
    for (std::int64_t i = 0; i < f; ++i) s += in[i];
    const double mu = s / double(f);
    double v = 0.0;
    for (std::int64_t i = 0; i < f; ++i)
      v += BatchNormOps::CentredSquare(in[i], mu);
    mean_[b] = mu;
    inv_std_[b] = BatchNormOps::InvStd(v / double(f), eps_);
    T* out = y.data() + b * f;
    for (std::int64_t i = 0; i < f; ++i) {
      out[i] = LayerNormOps::Forward(
          in[i], scale_.value[i], shift_.value[i], mu, inv_std_[b]);
    }
  }
}

template <typename T>
void LayerNorm<T>::Backward(const Tensor<T>& x,
                            const Tensor<T>&,
                            const Tensor<T>& dy,
                            Tensor<T>& dx) {
  internal::CheckSameShape(
      Name(), "output gradient", dy.shape(), OutputShape(x.shape()));
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  CheckLayerDevice(Name(), "output gradient", this->device(), dy.device());
  const std::int64_t n = x.dim(0), f = features_;
  SYMOPT_CHECK(x.is_cuda() ? device_stats_.size() == 2 * n
                           : std::int64_t(mean_.size()) == n,
               Name() << ": Backward without a Forward on x");
  dx.Resize(x.shape(), x.device());
  if (x.is_cuda()) {
    dense::LayerNormBackward(DeviceArgs(n),
                             x.data(),
                             dy.data(),
                             scale_.grad.data(),
                             shift_.grad.data(),
                             dx.data());
    return;
  }
  for (std::int64_t b = 0; b < n; ++b) {
    const T* in = x.data() + b * f;
    const T* g = dy.data() + b * f;
    T* d = dx.data() + b * f;
    const double mu = mean_[b], is = inv_std_[b];
    double sum_g = 0.0, sum_gx = 0.0;  // of dxhat and dxhat * xhat
    for (std::int64_t i = 0; i < f; ++i) {
      const double gh = LayerNormOps::GradHat(g[i], scale_.value[i]);
      sum_g += gh;
      sum_gx += gh * LayerNormOps::Xhat(in[i], mu, is);
      scale_.grad[i] += LayerNormOps::ScaleGradTerm(g[i], in[i], mu, is);
      shift_.grad[i] += g[i];
    }
    const double mean_g = sum_g / double(f), mean_gx = sum_gx / double(f);
    for (std::int64_t i = 0; i < f; ++i) {
      d[i] = LayerNormOps::InputGrad(
          in[i], g[i], scale_.value[i], mu, is, mean_g, mean_gx);
    }
  }
}

template <typename T>
nn::LayerNormArgs<T> LayerNorm<T>::DeviceArgs(std::int64_t n) {
  nn::LayerNormArgs<T> a;
  a.n = n;
  a.features = features_;
  a.scale = scale_.value.data();
  a.shift = shift_.value.data();
  a.eps = eps_;
  a.stats = device_stats_.data();
  return a;
}

template <typename T>
void LayerNorm<T>::To(Device device) {
  Layer<T>::To(device);
  mean_.clear();
  inv_std_.clear();
  device_stats_ = Tensor<double>();
}

template <typename T>
std::vector<Parameter<T>> LayerNorm<T>::Params() {
  return {scale_.View(), shift_.View()};
}

template class BatchNorm<float>;
template class BatchNorm<double>;
template class LayerNorm<float>;
template class LayerNorm<double>;

}  // namespace nn
}  // namespace symopt
