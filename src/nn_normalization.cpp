#include <cmath>
#include <sstream>

#include "nn/normalization.h"
#include "nn_common.h"

namespace symopt {
namespace nn {

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
  y.Resize(OutputShape(x.shape()), x.device());
  const std::int64_t n = x.dim(0), c_count = channels_;
  const std::int64_t inner = x.size() / (n * c_count), m = n * inner;
  mean_.assign(c_count, 0.0);
  inv_std_.assign(c_count, 0.0);
  if (mode == Mode::kTrain) {
    SYMOPT_CHECK(m >= 2,
                 Name() << ": training mode needs more than one value per "
                           "channel, got input "
                        << ShapeString(x.shape()));
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
          s += (in[i] - mu) * (in[i] - mu);
        var[c] += s;
      }
    }
    bool finite = true;
    for (std::int64_t c = 0; c < c_count; ++c) {
      var[c] /= double(m);
      inv_std_[c] = 1.0 / std::sqrt(var[c] + eps_);
      finite = finite && std::isfinite(mean_[c]) && std::isfinite(var[c]);
    }
    // A NaN/Inf input makes the output non-finite (the training loop reports
    // it) but never reaches the running statistics.
    for (std::int64_t c = 0; finite && c < c_count; ++c) {
      running_mean_[c] =
          T((1 - momentum_) * running_mean_[c] + momentum_ * mean_[c]);
      running_var_[c] = T((1 - momentum_) * running_var_[c] +
                          momentum_ * var[c] * double(m) / double(m - 1));
    }
  } else {
    for (std::int64_t c = 0; c < c_count; ++c) {
      mean_[c] = running_mean_[c];
      inv_std_[c] = 1.0 / std::sqrt(double(running_var_[c]) + eps_);
    }
  }
  for (std::int64_t b = 0; b < n; ++b) {
    for (std::int64_t c = 0; c < c_count; ++c) {
      const T a = T(scale_.value[c] * inv_std_[c]);
      const T o = T(shift_.value[c] - scale_.value[c] * inv_std_[c] * mean_[c]);
      const T* in = x.data() + (b * c_count + c) * inner;
      T* out = y.data() + (b * c_count + c) * inner;
      for (std::int64_t i = 0; i < inner; ++i) out[i] = a * in[i] + o;
    }
  }
  last_train_ = mode == Mode::kTrain;
}

template <typename T>
void BatchNorm<T>::Backward(const Tensor<T>& x,
                            const Tensor<T>&,
                            const Tensor<T>& dy,
                            Tensor<T>& dx) {
  internal::CheckSameShape(
      Name(), "output gradient", dy.shape(), OutputShape(x.shape()));
  SYMOPT_CHECK(std::int64_t(mean_.size()) == channels_,
               Name() << ": Backward without a Forward");
  const std::int64_t n = x.dim(0), c_count = channels_;
  const std::int64_t inner = x.size() / (n * c_count), m = n * inner;
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
        sx += g[i] * (in[i] - mu);
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
  for (std::int64_t b = 0; b < n; ++b) {
    for (std::int64_t c = 0; c < c_count; ++c) {
      const T* in = x.data() + (b * c_count + c) * inner;
      const T* g = dy.data() + (b * c_count + c) * inner;
      T* d = dx.data() + (b * c_count + c) * inner;
      const double k = scale_.value[c] * inv_std_[c];
      if (last_train_) {
        // dx = k * (dy - mean(dy) - xhat * mean(dy * xhat)), written as
        // a * dy + b * x + o with per-channel constants.
        const double mean_g = sum_dy[c] / double(m);
        const double mean_gx = sum_dy_xhat[c] / double(m);
        const T a = T(k);
        const T bx = T(-k * mean_gx * inv_std_[c]);
        const T o = T(-k * mean_g + k * mean_gx * inv_std_[c] * mean_[c]);
        for (std::int64_t i = 0; i < inner; ++i)
          d[i] = a * g[i] + bx * in[i] + o;
      } else {
        const T a = T(k);
        for (std::int64_t i = 0; i < inner; ++i) d[i] = a * g[i];
      }
    }
  }
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
  y.Resize(OutputShape(x.shape()), x.device());
  const std::int64_t n = x.dim(0), f = features_;
  mean_.assign(n, 0.0);
  inv_std_.assign(n, 0.0);
  for (std::int64_t b = 0; b < n; ++b) {
    const T* in = x.data() + b * f;
    double s = 0.0;
    for (std::int64_t i = 0; i < f; ++i) s += in[i];
    const double mu = s / double(f);
    double v = 0.0;
    for (std::int64_t i = 0; i < f; ++i) v += (in[i] - mu) * (in[i] - mu);
    mean_[b] = mu;
    inv_std_[b] = 1.0 / std::sqrt(v / double(f) + eps_);
    T* out = y.data() + b * f;
    for (std::int64_t i = 0; i < f; ++i) {
      out[i] =
          T(scale_.value[i] * ((in[i] - mu) * inv_std_[b]) + shift_.value[i]);
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
  const std::int64_t n = x.dim(0), f = features_;
  SYMOPT_CHECK(std::int64_t(mean_.size()) == n,
               Name() << ": Backward without a Forward on x");
  dx.Resize(x.shape(), x.device());
  for (std::int64_t b = 0; b < n; ++b) {
    const T* in = x.data() + b * f;
    const T* g = dy.data() + b * f;
    T* d = dx.data() + b * f;
    const double mu = mean_[b], is = inv_std_[b];
    double sum_g = 0.0, sum_gx = 0.0;  // of dxhat and dxhat * xhat
    for (std::int64_t i = 0; i < f; ++i) {
      const double xhat = (in[i] - mu) * is;
      const double gh = double(g[i]) * scale_.value[i];
      sum_g += gh;
      sum_gx += gh * xhat;
      scale_.grad[i] += T(g[i] * xhat);
      shift_.grad[i] += g[i];
    }
    const double mean_g = sum_g / double(f), mean_gx = sum_gx / double(f);
    for (std::int64_t i = 0; i < f; ++i) {
      const double xhat = (in[i] - mu) * is;
      d[i] = T(is * (double(g[i]) * scale_.value[i] - mean_g - xhat * mean_gx));
    }
  }
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
