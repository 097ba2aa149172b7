#include <sstream>

#include "backend/nn_conv_dispatch.h"
#include "nn/pooling.h"
#include "nn_common.h"
#include "nn_conv_ops.h"

namespace symopt {
namespace nn {

namespace {

// Input [..., h, w] -> output [..., ho, wo] as planes for the GPU kernels.
internal::PoolGeometry Geometry(const Shape& x,
                                const Shape& y,
                                std::int64_t k,
                                std::int64_t s) {
  const std::size_t r = x.size();
  return {NumElements(x) / (x[r - 2] * x[r - 1]),
          x[r - 2],
          x[r - 1],
          k,
          s,
          y[r - 2],
          y[r - 1]};
}

}  // namespace

template <typename T>
Pool2d<T>::Pool2d(const char* kind, std::int64_t kernel, std::int64_t stride)
    : kind_(kind), k_(kernel), s_(stride == 0 ? kernel : stride) {
  SYMOPT_CHECK(kernel >= 1 && s_ >= 1,
               kind << ": kernel and stride must be >= 1, got " << kernel
                    << ", " << stride);
}

template <typename T>
std::string Pool2d<T>::Name() const {
  std::ostringstream os;
  os << kind_ << "(k" << k_ << ", s" << s_ << ")";
  return os.str();
}

template <typename T>
Shape Pool2d<T>::OutputShape(const Shape& input) const {
  const size_t r = input.size();
  bool ok = r >= 3;
  for (size_t i = 0; ok && i < r; ++i) ok = input[i] >= 1;
  SYMOPT_CHECK(
      ok && input[r - 2] >= k_ && input[r - 1] >= k_,
      Name() << ": input shape " << ShapeString(input)
             << " does not match expected [N, ..., H, W] with H, W >= " << k_);
  Shape out = input;
  out[r - 2] = (input[r - 2] - k_) / s_ + 1;
  out[r - 1] = (input[r - 1] - k_) / s_ + 1;
  return out;
}

template <typename T>
void MaxPool2d<T>::To(Device device) {
  if (device == Device::kCpu) {
    argmax_device_ = DeviceBuffer<std::int32_t>();
    argmax_device_count_ = -1;
  }
  Layer<T>::To(device);
}

template <typename T>
void MaxPool2d<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode) {
  const Shape ys = this->OutputShape(x.shape());
  CheckLayerDevice(this->Name(), "input", this->device(), x.device());
  y.Resize(ys, x.device());
  const int r = x.ndim();
  const std::int64_t h = x.dim(r - 2), w = x.dim(r - 1);
  const std::int64_t ho = ys[r - 2], wo = ys[r - 1];
  const std::int64_t planes = x.size() / (h * w);
  if (x.is_cuda()) {
    argmax_.clear();
    argmax_device_count_ = -1;
    std::int32_t* arg = nn::backend::Reserve(argmax_device_, y.size());
    nn::backend::MaxPoolForwardGpu(
        Geometry(x.shape(), ys, this->k_, this->s_), x.data(), y.data(), arg);
    argmax_device_count_ = y.size();
    return;
  }
  argmax_device_count_ = -1;
  argmax_.resize(y.size());
#pragma omp parallel for schedule(static) if (planes * h * w > 65536)
  for (std::int64_t p = 0; p < planes; ++p) {
    const T* in = x.data() + p * h * w;
    T* out = y.data() + p * ho * wo;
    std::int32_t* arg = argmax_.data() + p * ho * wo;
    for (std::int64_t i = 0; i < ho; ++i) {
      for (std::int64_t j = 0; j < wo; ++j) {
        const std::int64_t best =
            internal::PoolOps::MaxWindow(in, w, this->k_, this->s_, i, j);
        out[i * wo + j] = in[best];
        arg[i * wo + j] = std::int32_t(best);
      }
    }
  }
}

template <typename T>
void MaxPool2d<T>::Backward(const Tensor<T>& x,
                            const Tensor<T>&,
                            const Tensor<T>& dy,
                            Tensor<T>& dx) {
  const Shape ys = this->OutputShape(x.shape());
  internal::CheckSameShape(this->Name(), "output gradient", dy.shape(), ys);
  CheckLayerDevice(this->Name(), "input", this->device(), x.device());
  CheckLayerDevice(
      this->Name(), "output gradient", this->device(), dy.device());
  const std::int64_t recorded =
      x.is_cuda() ? argmax_device_count_ : std::int64_t(argmax_.size());
  SYMOPT_CHECK(recorded == dy.size(),
               this->Name()
                   << ": Backward without a Forward on an input of shape "
                   << ShapeString(x.shape()) << " on "
                   << DeviceName(x.device()));
  dx.Resize(x.shape(), x.device());
  const int r = x.ndim();
  if (x.is_cuda()) {
    nn::backend::MaxPoolBackwardGpu(
        Geometry(x.shape(), ys, this->k_, this->s_),
        dy.data(),
        static_cast<const std::int32_t*>(argmax_device_.data()),
        dx.data());
    return;
  }
  dx.Fill(T(0));
  const std::int64_t hw = x.dim(r - 2) * x.dim(r - 1),
                     howo = ys[r - 2] * ys[r - 1];
  const std::int64_t planes = x.size() / hw;
#pragma omp parallel for schedule(static) if (planes * hw > 65536)
  for (std::int64_t p = 0; p < planes; ++p) {
    T* d = dx.data() + p * hw;
    const T* g = dy.data() + p * howo;
    const std::int32_t* arg = argmax_.data() + p * howo;
    for (std::int64_t o = 0; o < howo; ++o) d[arg[o]] += g[o];
  }
}

template <typename T>
void AvgPool2d<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode) {
  const Shape ys = this->OutputShape(x.shape());
  CheckLayerDevice(this->Name(), "input", this->device(), x.device());
  y.Resize(ys, x.device());
  const int r = x.ndim();
  const std::int64_t h = x.dim(r - 2), w = x.dim(r - 1);
  const std::int64_t ho = ys[r - 2], wo = ys[r - 1];
  const std::int64_t planes = x.size() / (h * w);
  if (x.is_cuda()) {
    nn::backend::AvgPoolForwardGpu(
        Geometry(x.shape(), ys, this->k_, this->s_), x.data(), y.data());
    return;
  }
  const T scale = T(1) / T(this->k_ * this->k_);
#pragma omp parallel for schedule(static) if (planes * h * w > 65536)
  for (std::int64_t p = 0; p < planes; ++p) {
    const T* in = x.data() + p * h * w;
    T* out = y.data() + p * ho * wo;
    for (std::int64_t i = 0; i < ho; ++i) {
      for (std::int64_t j = 0; j < wo; ++j) {
        out[i * wo + j] = internal::PoolOps::AvgWindow(
            in, w, this->k_, this->s_, i, j, scale);
      }
    }
  }
}

template <typename T>
void AvgPool2d<T>::Backward(const Tensor<T>& x,
                            const Tensor<T>&,
                            const Tensor<T>& dy,
                            Tensor<T>& dx) {
  const Shape ys = this->OutputShape(x.shape());
  internal::CheckSameShape(this->Name(), "output gradient", dy.shape(), ys);
  CheckLayerDevice(this->Name(), "input", this->device(), x.device());
  CheckLayerDevice(
      this->Name(), "output gradient", this->device(), dy.device());
  dx.Resize(x.shape(), x.device());
  const int r = x.ndim();
  const std::int64_t h = x.dim(r - 2), w = x.dim(r - 1);
  const std::int64_t ho = ys[r - 2], wo = ys[r - 1];
  const std::int64_t planes = x.size() / (h * w);
  if (x.is_cuda()) {
    nn::backend::AvgPoolBackwardGpu(
        Geometry(x.shape(), ys, this->k_, this->s_), dy.data(), dx.data());
    return;
  }
  dx.Fill(T(0));
  const T scale = T(1) / T(this->k_ * this->k_);
#pragma omp parallel for schedule(static) if (planes * h * w > 65536)
  for (std::int64_t p = 0; p < planes; ++p) {
    T* d = dx.data() + p * h * w;
    const T* g = dy.data() + p * ho * wo;
    for (std::int64_t i = 0; i < ho; ++i) {
      for (std::int64_t j = 0; j < wo; ++j) {
        const T gij = g[i * wo + j] * scale;
        for (std::int64_t u = 0; u < this->k_; ++u) {
          for (std::int64_t v = 0; v < this->k_; ++v)
            d[(i * this->s_ + u) * w + j * this->s_ + v] += gij;
        }
      }
    }
  }
}

template class Pool2d<float>;
template class Pool2d<double>;
template class MaxPool2d<float>;
template class MaxPool2d<double>;
template class AvgPool2d<float>;
template class AvgPool2d<double>;

}  // namespace nn
}  // namespace symopt
