#include <omp.h>

#include <cmath>
#include <sstream>

#include "nn/conv2d.h"
#include "nn_common.h"

namespace symopt {
namespace nn {

using internal::ConstMatrixMap;
using internal::MatrixMap;

namespace {

// col[(c*k + u)*k + v][i*wo + j] = x[c, i*s - p + u, j*s - p + v] (0 outside).
template <typename T>
void Im2Col(const T* x,
            std::int64_t channels,
            std::int64_t h,
            std::int64_t w,
            std::int64_t k,
            std::int64_t s,
            std::int64_t p,
            std::int64_t ho,
            std::int64_t wo,
            T* col) {
  for (std::int64_t c = 0; c < channels; ++c) {
    for (std::int64_t u = 0; u < k; ++u) {
      for (std::int64_t v = 0; v < k; ++v) {
        T* row = col + ((c * k + u) * k + v) * ho * wo;
        for (std::int64_t i = 0; i < ho; ++i) {
          const std::int64_t r = i * s - p + u;
          T* out = row + i * wo;
          if (r < 0 || r >= h) {
            for (std::int64_t j = 0; j < wo; ++j) out[j] = T(0);
            continue;
          }
          const T* in = x + (c * h + r) * w;
          for (std::int64_t j = 0; j < wo; ++j) {
            const std::int64_t q = j * s - p + v;
            out[j] = (q >= 0 && q < w) ? in[q] : T(0);
          }
        }
      }
    }
  }
}

// The adjoint of Im2Col: dx[c, r, q] += col[...] for every (u, v, i, j) that
// read x[c, r, q]. dx must be zeroed by the caller.
template <typename T>
void Col2Im(const T* col,
            std::int64_t channels,
            std::int64_t h,
            std::int64_t w,
            std::int64_t k,
            std::int64_t s,
            std::int64_t p,
            std::int64_t ho,
            std::int64_t wo,
            T* dx) {
  for (std::int64_t c = 0; c < channels; ++c) {
    for (std::int64_t u = 0; u < k; ++u) {
      for (std::int64_t v = 0; v < k; ++v) {
        const T* row = col + ((c * k + u) * k + v) * ho * wo;
        for (std::int64_t i = 0; i < ho; ++i) {
          const std::int64_t r = i * s - p + u;
          if (r < 0 || r >= h) continue;
          const T* in = row + i * wo;
          T* out = dx + (c * h + r) * w;
          for (std::int64_t j = 0; j < wo; ++j) {
            const std::int64_t q = j * s - p + v;
            if (q >= 0 && q < w) out[q] += in[j];
          }
        }
      }
    }
  }
}

}  // namespace

template <typename T>
Conv2d<T>::Conv2d(std::int64_t in_channels,
                  std::int64_t out_channels,
                  std::int64_t kernel,
                  std::int64_t stride,
                  std::int64_t padding,
                  std::uint64_t seed,
                  bool bias)
    : in_(in_channels),
      out_(out_channels),
      k_(kernel),
      stride_(stride),
      pad_(padding),
      has_bias_(bias),
      weight_("weight",
              {std::max<std::int64_t>(out_channels, 1),
               std::max<std::int64_t>(in_channels, 1),
               std::max<std::int64_t>(kernel, 1),
               std::max<std::int64_t>(kernel, 1)}),
      bias_("bias", {std::max<std::int64_t>(out_channels, 1)}) {
  SYMOPT_CHECK(
      in_channels >= 1 && out_channels >= 1 && kernel >= 1 && stride >= 1 &&
          padding >= 0,
      "conv2d: need channels, kernel, stride >= 1 and padding >= 0, got in="
          << in_channels << ", out=" << out_channels << ", kernel=" << kernel
          << ", stride=" << stride << ", padding=" << padding);
  std::mt19937_64 rng(seed);
  const double bound = 1.0 / std::sqrt(double(in_ * k_ * k_));
  internal::FillUniform(weight_.value.data(), weight_.value.size(), bound, rng);
  if (has_bias_) internal::FillUniform(bias_.value.data(), out_, bound, rng);
}

template <typename T>
std::string Conv2d<T>::Name() const {
  std::ostringstream os;
  os << "conv2d(" << in_ << "->" << out_ << ", k" << k_ << ", s" << stride_
     << ", p" << pad_ << (has_bias_ ? "" : ", no bias") << ")";
  return os.str();
}

template <typename T>
Shape Conv2d<T>::OutputShape(const Shape& input) const {
  internal::CheckInputShape(Name(), input, {-1, in_, -1, -1});
  SYMOPT_CHECK(input[2] + 2 * pad_ >= k_ && input[3] + 2 * pad_ >= k_,
               Name() << ": input shape " << ShapeString(input)
                      << " is smaller than the kernel (padded size "
                      << input[2] + 2 * pad_ << "x" << input[3] + 2 * pad_
                      << ")");
  return {input[0],
          out_,
          (input[2] + 2 * pad_ - k_) / stride_ + 1,
          (input[3] + 2 * pad_ - k_) / stride_ + 1};
}

template <typename T>
void Conv2d<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode) {
  const Shape ys = OutputShape(x.shape());
  y.Resize(ys);
  const std::int64_t n = x.dim(0), h = x.dim(2), w = x.dim(3);
  const std::int64_t ho = ys[2], wo = ys[3], kk = in_ * k_ * k_, hw = ho * wo;
  // One thread when the work (2 flops per multiply-add) cannot pay for a
  // parallel region.
  const int threads =
      2.0 * n * out_ * kk * hw < 2e6
          ? 1
          : int(std::min<std::int64_t>(omp_get_max_threads(), n));
  scratch_.resize(threads);
  ConstMatrixMap<T> W(weight_.value.data(), out_, kk);
#pragma omp parallel num_threads(threads)
  {
    std::vector<T>& col = scratch_[omp_get_thread_num()];
    col.resize(kk * hw);
#pragma omp for schedule(static)
    for (std::int64_t b = 0; b < n; ++b) {
      Im2Col(x.data() + b * in_ * h * w,
             in_,
             h,
             w,
             k_,
             stride_,
             pad_,
             ho,
             wo,
             col.data());
      MatrixMap<T> Y(y.data() + b * out_ * hw, out_, hw);
      Y.noalias() = W * ConstMatrixMap<T>(col.data(), kk, hw);
      if (has_bias_) {
        Y.colwise() += internal::ConstVectorMap<T>(bias_.value.data(), out_);
      }
    }
  }
}

template <typename T>
void Conv2d<T>::Backward(const Tensor<T>& x,
                         const Tensor<T>&,
                         const Tensor<T>& dy,
                         Tensor<T>& dx) {
  const Shape ys = OutputShape(x.shape());
  internal::CheckSameShape(Name(), "output gradient", dy.shape(), ys);
  const std::int64_t n = x.dim(0), h = x.dim(2), w = x.dim(3);
  const std::int64_t ho = ys[2], wo = ys[3], kk = in_ * k_ * k_, hw = ho * wo;
  const bool need_dx = this->input_grad_required();
  if (need_dx) {
    dx.Resize(x.shape());
    dx.Fill(T(0));
  } else {
    dx.Resize({0});
  }
  // One thread when the work (2 flops per multiply-add) cannot pay for a
  // parallel region.
  const int threads =
      2.0 * n * out_ * kk * hw < 2e6
          ? 1
          : int(std::min<std::int64_t>(omp_get_max_threads(), n));
  scratch_.resize(threads);
  // Per-thread buffer: col (kk*hw) | dcol (kk*hw) | dW partial (out*kk) |
  // db partial (out).
  const std::int64_t part = out_ * kk + out_;
  ConstMatrixMap<T> W(weight_.value.data(), out_, kk);
#pragma omp parallel num_threads(threads)
  {
    std::vector<T>& buf = scratch_[omp_get_thread_num()];
    buf.assign(2 * kk * hw + part, T(0));
    MatrixMap<T> col(buf.data(), kk, hw);
    MatrixMap<T> dcol(buf.data() + kk * hw, kk, hw);
    MatrixMap<T> dW(buf.data() + 2 * kk * hw, out_, kk);
    internal::VectorMap<T> db(buf.data() + 2 * kk * hw + out_ * kk, out_);
#pragma omp for schedule(static)
    for (std::int64_t b = 0; b < n; ++b) {
      Im2Col(x.data() + b * in_ * h * w,
             in_,
             h,
             w,
             k_,
             stride_,
             pad_,
             ho,
             wo,
             col.data());
      ConstMatrixMap<T> dY(dy.data() + b * out_ * hw, out_, hw);
      dW.noalias() += dY * col.transpose();
      if (has_bias_) db.noalias() += dY.rowwise().sum();
      if (need_dx) {
        dcol.noalias() = W.transpose() * dY;
        Col2Im(dcol.data(),
               in_,
               h,
               w,
               k_,
               stride_,
               pad_,
               ho,
               wo,
               dx.data() + b * in_ * h * w);
      }
    }
  }
  // Sum the partials in thread order (deterministic).
  MatrixMap<T> dW(weight_.grad.data(), out_, kk);
  internal::VectorMap<T> db(bias_.grad.data(), out_);
  for (int t = 0; t < threads; ++t) {
    const T* p = scratch_[t].data() + 2 * kk * hw;
    dW += ConstMatrixMap<T>(p, out_, kk);
    if (has_bias_) db += internal::ConstVectorMap<T>(p + out_ * kk, out_);
  }
}

template <typename T>
std::vector<Parameter<T>> Conv2d<T>::Params() {
  std::vector<Parameter<T>> p{weight_.View()};
  if (has_bias_) p.push_back(bias_.View());
  return p;
}

template class Conv2d<float>;
template class Conv2d<double>;

}  // namespace nn
}  // namespace symopt
