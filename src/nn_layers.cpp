#include <cmath>
#include <sstream>

#include "backend/nn_dense_dispatch.h"
#include "nn/layers.h"
#include "nn_common.h"
#include "nn_dense_ops.h"

namespace symopt {
namespace nn {

using internal::CheckInputShape;
using internal::CheckSameShape;
using internal::ConstMatrixMap;
using internal::MatrixMap;
namespace dense = backend::dense;

// ---- ParamTensor
// -------------------------------------------------------------

template <typename T>
ParamTensor<T>::ParamTensor(std::string n, const Shape& shape)
    : name(std::move(n)), value(shape), grad(shape) {
  const TensorView<T> v = value.AsView();
  manifold = std::make_shared<Euclidean<T>>(v.rows, v.cols);
}

template <typename T>
Parameter<T> ParamTensor<T>::View() {
  const TensorView<T> v = value.AsView();
  return MakeParameter<T>(name,
                          value.data(),
                          grad.data(),
                          v.rows,
                          v.cols,
                          manifold,
                          /*group=*/0,
                          value.device());
}

// ---- Linear
// ------------------------------------------------------------------

template <typename T>
Linear<T>::Linear(std::int64_t in,
                  std::int64_t out,
                  std::uint64_t seed,
                  bool bias)
    : in_(in),
      out_(out),
      has_bias_(bias),
      weight_("weight",
              {std::max<std::int64_t>(out, 1), std::max<std::int64_t>(in, 1)}),
      bias_("bias", {std::max<std::int64_t>(out, 1)}) {
  SYMOPT_CHECK(in >= 1 && out >= 1,
               "linear: sizes must be >= 1, got in=" << in << ", out=" << out);
  std::mt19937_64 rng(seed);
  const double bound = 1.0 / std::sqrt(double(in));
  internal::FillUniform(weight_.value.data(), weight_.value.size(), bound, rng);
  if (has_bias_) internal::FillUniform(bias_.value.data(), out, bound, rng);
}

template <typename T>
std::string Linear<T>::Name() const {
  std::ostringstream os;
  os << "linear(" << in_ << "->" << out_ << (has_bias_ ? "" : ", no bias")
     << ")";
  return os.str();
}

template <typename T>
Shape Linear<T>::OutputShape(const Shape& input) const {
  CheckInputShape(Name(), input, {-1, in_});
  return {input[0], out_};
}

template <typename T>
void Linear<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode) {
  const Shape out_shape = OutputShape(x.shape());
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  y.Resize(out_shape, x.device());
  const std::int64_t n = x.dim(0);
  if (x.is_cuda()) {
    dense::LinearForward(x.data(),
                         weight_.value.data(),
                         has_bias_ ? bias_.value.data() : nullptr,
                         y.data(),
                         n,
                         in_,
                         out_);
    return;
  }
  ConstMatrixMap<T> X(x.data(), n, in_);
  ConstMatrixMap<T> W(weight_.value.data(), out_, in_);
  MatrixMap<T> Y(y.data(), n, out_);
  const bool bias = has_bias_;
  const T* b = bias_.value.data();
  internal::ParallelRows(
      n, 2.0 * n * in_ * out_, [&](std::int64_t r0, std::int64_t r1) {
        auto y_rows = Y.middleRows(r0, r1 - r0);
        y_rows.noalias() = X.middleRows(r0, r1 - r0) * W.transpose();
        if (bias)
          y_rows.rowwise() += internal::ConstVectorMap<T>(b, out_).transpose();
      });
}

template <typename T>
void Linear<T>::Backward(const Tensor<T>& x,
                         const Tensor<T>& y,
                         const Tensor<T>& dy,
                         Tensor<T>& dx) {
  const Shape out_shape = OutputShape(x.shape());
  CheckSameShape(Name(), "output gradient", dy.shape(), out_shape);
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  CheckLayerDevice(Name(), "output gradient", this->device(), dy.device());
  (void)y;
  const std::int64_t n = x.dim(0);
  if (x.is_cuda()) {
    const bool need_dx = this->input_grad_required();
    dx.Resize(need_dx ? x.shape() : Shape{0}, x.device());
    dense::LinearBackward(x.data(),
                          weight_.value.data(),
                          dy.data(),
                          weight_.grad.data(),
                          has_bias_ ? bias_.grad.data() : nullptr,
                          need_dx ? dx.data() : nullptr,
                          n,
                          in_,
                          out_);
    return;
  }
  ConstMatrixMap<T> X(x.data(), n, in_);
  ConstMatrixMap<T> dY(dy.data(), n, out_);
  ConstMatrixMap<T> W(weight_.value.data(), out_, in_);
  MatrixMap<T> dW(weight_.grad.data(), out_, in_);
  const double flops = 2.0 * n * in_ * out_;
  // dW += dY^T X, split over output units (rows of dW).
  internal::ParallelRows(out_, flops, [&](std::int64_t r0, std::int64_t r1) {
    dW.middleRows(r0, r1 - r0).noalias() +=
        dY.middleCols(r0, r1 - r0).transpose() * X;
  });
  if (has_bias_) {
    internal::VectorMap<T>(bias_.grad.data(), out_).noalias() +=
        dY.colwise().sum().transpose();
  }
  if (this->input_grad_required()) {
    dx.Resize(x.shape(), x.device());
    MatrixMap<T> dX(dx.data(), n, in_);
    // dX = dY W, split over samples.
    internal::ParallelRows(n, flops, [&](std::int64_t r0, std::int64_t r1) {
      dX.middleRows(r0, r1 - r0).noalias() = dY.middleRows(r0, r1 - r0) * W;
    });
  } else {
    dx.Resize({0}, x.device());
  }
}

template <typename T>
std::vector<Parameter<T>> Linear<T>::Params() {
  std::vector<Parameter<T>> p{weight_.View()};
  if (has_bias_) p.push_back(bias_.View());
  return p;
}

// ---- ReLU, Tanh
// ------------------------------------------------------------------

namespace {
Shape AnyBatchShape(const std::string& layer, const Shape& input) {
  SYMOPT_CHECK(!input.empty() && input[0] >= 1,
               layer << ": input shape " << ShapeString(input)
                     << " does not match expected [N, ...] with N >= 1");
  NumElements(input);  // rejects negative sizes
  return input;
}

// The tensors of an element-wise layer's Backward must be on its device.
template <typename T>
void CheckActivationDevices(const std::string& layer,
                            Device device,
                            const Tensor<T>& x,
                            const Tensor<T>& y,
                            const Tensor<T>& dy) {
  CheckLayerDevice(layer, "input", device, x.device());
  CheckLayerDevice(layer, "output", device, y.device());
  CheckLayerDevice(layer, "output gradient", device, dy.device());
}
}  // namespace

template <typename T>
Shape ReLU<T>::OutputShape(const Shape& input) const {
  return AnyBatchShape(Name(), input);
}

template <typename T>
void ReLU<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode) {
  const Shape shape = OutputShape(x.shape());
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  y.Resize(shape, x.device());
  const T* xs = x.data();
  T* ys = y.data();
  const std::int64_t n = x.size();
  if (x.is_cuda()) {
    dense::ActivationForward(nn::Activation::kRelu, xs, ys, n);
    return;
  }
  for (std::int64_t i = 0; i < n; ++i) ys[i] = ElementwiseOps::Relu(xs[i]);
}

template <typename T>
void ReLU<T>::Backward(const Tensor<T>& x,
                       const Tensor<T>& y,
                       const Tensor<T>& dy,
                       Tensor<T>& dx) {
  CheckSameShape(Name(), "output gradient", dy.shape(), OutputShape(x.shape()));
  CheckSameShape(Name(), "output", y.shape(), x.shape());
  CheckActivationDevices(Name(), this->device(), x, y, dy);
  dx.Resize(x.shape(), x.device());
  const T* ys = y.data();
  const T* g = dy.data();
  T* d = dx.data();
  const std::int64_t n = x.size();
  if (x.is_cuda()) {
    dense::ActivationBackward(nn::Activation::kRelu, ys, g, d, n);
    return;
  }
  for (std::int64_t i = 0; i < n; ++i)
    d[i] = ElementwiseOps::ReluGrad(ys[i], g[i]);
}

template <typename T>
Shape Tanh<T>::OutputShape(const Shape& input) const {
  return AnyBatchShape(Name(), input);
}

template <typename T>
void Tanh<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode) {
  const Shape shape = OutputShape(x.shape());
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  y.Resize(shape, x.device());
  const std::int64_t n = x.size();
  if (x.is_cuda()) {
    dense::ActivationForward(nn::Activation::kTanh, x.data(), y.data(), n);
    return;
  }
  for (std::int64_t i = 0; i < n; ++i) y[i] = ElementwiseOps::Tanh(x[i]);
}

template <typename T>
void Tanh<T>::Backward(const Tensor<T>& x,
                       const Tensor<T>& y,
                       const Tensor<T>& dy,
                       Tensor<T>& dx) {
  CheckSameShape(Name(), "output gradient", dy.shape(), OutputShape(x.shape()));
  CheckSameShape(Name(), "output", y.shape(), x.shape());
  CheckActivationDevices(Name(), this->device(), x, y, dy);
  dx.Resize(x.shape(), x.device());
  const std::int64_t n = x.size();
  if (x.is_cuda()) {
    dense::ActivationBackward(
        nn::Activation::kTanh, y.data(), dy.data(), dx.data(), n);
    return;
  }
  for (std::int64_t i = 0; i < n; ++i)
    dx[i] = ElementwiseOps::TanhGrad(y[i], dy[i]);
}

// ---- Flatten
// ---------------------------------------------------------------------

template <typename T>
Shape Flatten<T>::OutputShape(const Shape& input) const {
  SYMOPT_CHECK(input.size() >= 2 && input[0] >= 1,
               Name() << ": input shape " << ShapeString(input)
                      << " does not match expected [N, d1, ...] (rank >= 2)");
  return {input[0], NumElements(input) / input[0]};
}

template <typename T>
void Flatten<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode) {
  const Shape shape = OutputShape(x.shape());
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  y.Resize(shape, x.device());
  Copy(x.FlatView(), y.FlatView());  // a device copy for CUDA tensors
}

template <typename T>
void Flatten<T>::Backward(const Tensor<T>& x,
                          const Tensor<T>&,
                          const Tensor<T>& dy,
                          Tensor<T>& dx) {
  CheckSameShape(Name(), "output gradient", dy.shape(), OutputShape(x.shape()));
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  CheckLayerDevice(Name(), "output gradient", this->device(), dy.device());
  dx.Resize(x.shape(), x.device());
  Copy(dy.FlatView(), dx.FlatView());
}

// ---- Dropout
// ---------------------------------------------------------------------

template <typename T>
Dropout<T>::Dropout(double p, std::uint64_t seed) : p_(p), rng_(seed) {
  SYMOPT_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got " << p);
}

template <typename T>
std::string Dropout<T>::Name() const {
  std::ostringstream os;
  os << "dropout(p=" << p_ << ")";
  return os.str();
}

template <typename T>
Shape Dropout<T>::OutputShape(const Shape& input) const {
  return AnyBatchShape(Name(), input);
}

template <typename T>
void Dropout<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) {
  const Shape shape = OutputShape(x.shape());
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  y.Resize(shape, x.device());
  const std::int64_t n = x.size();
  last_train_ = mode == Mode::kTrain;
  if (!last_train_) {
    Copy(x.FlatView(), y.FlatView());
    return;
  }
  // The mask is drawn on the host on both devices, so a model draws the same
  // masks on the GPU as on the CPU.
  mask_.resize(n);
  const T keep_scale = T(1.0 / (1.0 - p_));
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (std::int64_t i = 0; i < n; ++i) {
    mask_[i] = ElementwiseOps::DropoutMask(u(rng_), p_, keep_scale);
  }
  if (x.is_cuda()) {
    device_mask_.Resize({n}, Device::kCuda);
    Copy(TensorView<const T>(mask_.data(), 1, n), device_mask_.FlatView());
    dense::MultiplyMask(x.data(), device_mask_.data(), y.data(), n);
    return;
  }
  for (std::int64_t i = 0; i < n; ++i)
    y[i] = ElementwiseOps::Scale(x[i], mask_[i]);
}

template <typename T>
void Dropout<T>::Backward(const Tensor<T>& x,
                          const Tensor<T>&,
                          const Tensor<T>& dy,
                          Tensor<T>& dx) {
  CheckSameShape(Name(), "output gradient", dy.shape(), OutputShape(x.shape()));
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  CheckLayerDevice(Name(), "output gradient", this->device(), dy.device());
  const std::int64_t n = x.size();
  if (!last_train_) {
    dx.Resize(x.shape(), x.device());
    Copy(dy.FlatView(), dx.FlatView());
    return;
  }
  SYMOPT_CHECK(std::int64_t(mask_.size()) == n &&
                   (!x.is_cuda() || device_mask_.size() == n),
               Name() << ": Backward on an input of another size than the "
                         "last training Forward on this device ("
                      << n << " vs " << mask_.size() << " values)");
  dx.Resize(x.shape(), x.device());
  if (x.is_cuda()) {
    dense::MultiplyMask(dy.data(), device_mask_.data(), dx.data(), n);
    return;
  }
  for (std::int64_t i = 0; i < n; ++i)
    dx[i] = ElementwiseOps::Scale(dy[i], mask_[i]);
}

template <typename T>
void Dropout<T>::To(Device device) {
  Layer<T>::To(device);
  // The mask of the last Forward stays on the host; its device copy goes.
  device_mask_ = Tensor<T>();
  if (device == Device::kCuda) mask_.clear();
}

template struct ParamTensor<float>;
template struct ParamTensor<double>;
template class Linear<float>;
template class Linear<double>;
template class ReLU<float>;
template class ReLU<double>;
template class Tanh<float>;
template class Tanh<double>;
template class Flatten<float>;
template class Flatten<double>;
template class Dropout<float>;
template class Dropout<double>;

}  // namespace nn
}  // namespace symopt
