#include <cmath>
#include <sstream>

#include "backend/nn_conv_dispatch.h"
#include "nn/conv2d.h"
#include "nn_common.h"
#include "nn_conv_cpu.h"

namespace symopt {
namespace nn {

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
      bias_("bias", {std::max<std::int64_t>(out_channels, 1)}),
      column_budget_(backend::kDefaultColumnBudget) {
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
Conv2d<T>::~Conv2d() = default;

template <typename T>
void Conv2d<T>::To(Device device) {
  if (device == Device::kCpu) device_scratch_.reset();
  Layer<T>::To(device);
}

template <typename T>
void Conv2d<T>::set_column_budget(std::int64_t elements) {
  SYMOPT_CHECK(
      elements >= 1,
      Name() << ": the column budget must be >= 1 element, got " << elements);
  column_budget_ = elements;
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
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  y.Resize(ys, x.device());
  const internal::ConvGeometry g{
      x.dim(0), in_, x.dim(2), x.dim(3), k_, stride_, pad_, ys[2], ys[3]};
  if (x.is_cuda()) {
    if (!device_scratch_) {
      device_scratch_ = std::make_unique<backend::ConvDeviceScratch<T>>();
    }
    backend::ConvForwardGpu(g,
                            x.data(),
                            weight_.value.data(),
                            out_,
                            has_bias_ ? bias_.value.data() : nullptr,
                            y.data(),
                            *device_scratch_,
                            column_budget_);
    return;
  }
  internal::ConvForwardCpu(g,
                           x.data(),
                           weight_.value.data(),
                           out_,
                           has_bias_ ? bias_.value.data() : nullptr,
                           y.data(),
                           scratch_);
}

template <typename T>
void Conv2d<T>::Backward(const Tensor<T>& x,
                         const Tensor<T>&,
                         const Tensor<T>& dy,
                         Tensor<T>& dx) {
  const Shape ys = OutputShape(x.shape());
  internal::CheckSameShape(Name(), "output gradient", dy.shape(), ys);
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  CheckLayerDevice(Name(), "output gradient", this->device(), dy.device());
  const bool need_dx = this->input_grad_required();
  dx.Resize(need_dx ? x.shape() : Shape{0}, x.device());
  const internal::ConvGeometry g{
      x.dim(0), in_, x.dim(2), x.dim(3), k_, stride_, pad_, ys[2], ys[3]};
  if (x.is_cuda()) {
    if (!device_scratch_) {
      device_scratch_ = std::make_unique<backend::ConvDeviceScratch<T>>();
    }
    backend::ConvBackwardGpu(g,
                             x.data(),
                             weight_.value.data(),
                             out_,
                             dy.data(),
                             weight_.grad.data(),
                             has_bias_ ? bias_.grad.data() : nullptr,
                             need_dx ? dx.data() : nullptr,
                             *device_scratch_,
                             column_budget_);
    return;
  }
  internal::ConvBackwardCpu(g,
                            x.data(),
                            weight_.value.data(),
                            out_,
                            dy.data(),
                            weight_.grad.data(),
                            has_bias_ ? bias_.grad.data() : nullptr,
                            need_dx ? dx.data() : nullptr,
                            scratch_);
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
