#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

#include "backend/nn_conv_dispatch.h"
#include "data/transforms.h"
#include "nn/group_conv.h"
#include "nn_common.h"
#include "nn_conv_cpu.h"
#include "nn_conv_ops.h"
#include "symmetry/constraint.h"
#include "symmetry/group.h"

namespace symopt {
namespace nn {

using internal::CheckInputShape;
using internal::CheckSameShape;

namespace {

// The P4 map [N, C, 4, H, W] read as the NCHW map [N, 4C, H, W] (c_in =
// C*S channels), correlated at stride 1 into ys = [N, C_out, 4, Ho, Wo].
internal::ConvGeometry Geometry(const Shape& x,
                                const Shape& ys,
                                std::int64_t c_in,
                                std::int64_t k,
                                std::int64_t pad) {
  const std::size_t nd = x.size();
  return {x[0], c_in, x[nd - 2], x[nd - 1], k, 1, pad, ys[3], ys[4]};
}

std::int64_t RotationsIn(P4Input input) {
  return input == P4Input::kZ2 ? 1 : kP4Order;
}

}  // namespace

TiePattern P4FilterPattern(P4Input input,
                           std::int64_t in_channels,
                           std::int64_t out_channels,
                           std::int64_t kernel) {
  SYMOPT_CHECK(in_channels >= 1 && out_channels >= 1 && kernel >= 1,
               "P4FilterPattern: channels and kernel must be >= 1, got in="
                   << in_channels << " out=" << out_channels
                   << " kernel=" << kernel);
  const std::int64_t k = kernel;
  // The constraint engine (include/symmetry/) solves rho_out(g) B = B
  // rho_in(g) for the generator g of C4 acting on the bank B [(c_out, r),
  // (c_in, [s,] i, j)]: on the output a cyclic shift of r, on the input a
  // quarter turn of the filter plane and, for P4 -> P4, a cyclic shift of s
  // (Transform::P4Filter). With (g f)[r] = R f[r-1] on feature maps this is
  // exactly layer(g x) = g layer(x) (docs/group_layers.md); the solution is a
  // tie pattern whose classes are numbered by first occurrence.
  const symopt::Shape out_shape({out_channels, kP4Order});
  const symopt::Shape in_shape =
      input == P4Input::kZ2 ? symopt::Shape({in_channels, k, k})
                            : symopt::Shape({in_channels, kP4Order, k, k});
  const GeneratorSet in_action = input == P4Input::kZ2
                                     ? C4Group(in_shape, 1, 2)
                                     : P4FilterGroup(in_shape, 1, 2, 3);
  ConstraintProblem problem(out_shape, in_shape);
  problem.AddGroup(FiniteGroup::Generate(
      RepresentationAction(CyclicShiftGroup(out_shape, 1), in_action),
      GroupKind::Cyclic(kP4Order)));
  Solution solution = Solve(problem);
  SYMOPT_CHECK(solution.is_tie && solution.num_zero == 0,
               "P4FilterPattern: the engine returned no plain tie pattern");
  return std::move(solution.ties);
}

template <typename T>
Tensor<T> ActP4(const Tensor<T>& x, int times) {
  CheckInputShape("ActP4", x.shape(), {-1, -1, kP4Order, -1, -1});
  SYMOPT_CHECK(x.dim(3) == x.dim(4),
               "ActP4: planes must be square, got " << ShapeString(x.shape()));
  const int t = ((times % 4) + 4) % 4;
  const Tensor<T> rotated =
      data::ApplySymmetry(data::GridSymmetry::Rotation(t), x);
  Tensor<T> y(x.shape());
  const std::int64_t plane = x.dim(3) * x.dim(4);
  for (std::int64_t g = 0; g < x.dim(0) * x.dim(1); ++g) {
    for (std::int64_t r = 0; r < kP4Order; ++r) {
      const std::int64_t src = (r - t + kP4Order) % kP4Order;
      std::copy_n(rotated.data() + (g * kP4Order + src) * plane,
                  plane,
                  y.data() + (g * kP4Order + r) * plane);
    }
  }
  return y;
}

// ---- P4Conv ---------------------------------------------------------------

namespace {

Shape ThetaShape(P4Input input,
                 std::int64_t in,
                 std::int64_t out,
                 std::int64_t k) {
  const std::int64_t o = std::max<std::int64_t>(out, 1),
                     i = std::max<std::int64_t>(in, 1),
                     kk = std::max<std::int64_t>(k, 1);
  return input == P4Input::kZ2 ? Shape{o, i, kk, kk}
                               : Shape{o, i, kP4Order, kk, kk};
}

}  // namespace

template <typename T>
P4Conv<T>::P4Conv(P4Input input,
                  std::int64_t in_channels,
                  std::int64_t out_channels,
                  std::int64_t kernel,
                  std::int64_t padding,
                  std::uint64_t seed,
                  bool bias)
    : input_(input),
      in_(in_channels),
      out_(out_channels),
      k_(kernel),
      pad_(padding),
      s_(RotationsIn(input)),
      has_bias_(bias),
      weight_("weight", ThetaShape(input, in_channels, out_channels, kernel)),
      bias_("bias", {std::max<std::int64_t>(out_channels, 1)}),
      column_budget_(backend::kDefaultColumnBudget) {
  SYMOPT_CHECK(
      in_channels >= 1 && out_channels >= 1 && kernel >= 1 && padding >= 0,
      (input == P4Input::kZ2 ? "p4_lift" : "p4_conv")
          << ": need channels >= 1, kernel >= 1, padding >= 0; got "
             "in="
          << in_channels << ", out=" << out_channels << ", kernel=" << kernel
          << ", padding=" << padding);
  pattern_ = P4FilterPattern(input, in_, out_, k_);
  const std::int64_t fan_in = in_ * s_ * k_ * k_;
  // First-appearance numbering puts the r = 0 slice first, so theta row c_out
  // is the filter at output rotation 0 and theta has exactly the classes.
  SYMOPT_CHECK(pattern_.num_classes == weight_.value.size(),
               Name() << ": derived " << pattern_.num_classes
                      << " free weights, expected " << weight_.value.size());
  internal::MemberCsr csr =
      internal::BuildMemberCsr(pattern_.class_of, pattern_.num_classes);
  member_offsets_ = std::move(csr.offsets);
  members_ = std::move(csr.members);
  std::mt19937_64 rng(seed);
  const double bound = 1.0 / std::sqrt(double(fan_in));
  internal::FillUniform(weight_.value.data(), weight_.value.size(), bound, rng);
  if (has_bias_) internal::FillUniform(bias_.value.data(), out_, bound, rng);
}

template <typename T>
P4Conv<T>::~P4Conv() = default;

template <typename T>
void P4Conv<T>::To(Device device) {
  if (device == Device::kCpu) device_state_.reset();
  Layer<T>::To(device);
}

template <typename T>
void P4Conv<T>::set_column_budget(std::int64_t elements) {
  SYMOPT_CHECK(
      elements >= 1,
      Name() << ": the column budget must be >= 1 element, got " << elements);
  column_budget_ = elements;
}

template <typename T>
backend::P4DeviceState<T>& P4Conv<T>::DeviceState() const {
  if (!device_state_) {
    auto state = std::make_unique<backend::P4DeviceState<T>>();
    state->bank_tables =
        backend::UploadTieTables(pattern_.class_of, pattern_.num_classes);
    // Bank row (c_out, r) takes the bias of group channel c_out.
    std::vector<std::int32_t> channel_of(std::size_t(out_ * kP4Order));
    for (std::size_t row = 0; row < channel_of.size(); ++row) {
      channel_of[row] = std::int32_t(row / kP4Order);
    }
    state->bias_tables = backend::UploadTieTables(channel_of, out_);
    device_state_ = std::move(state);
  }
  return *device_state_;
}

template <typename T>
std::string P4Conv<T>::Name() const {
  std::ostringstream os;
  os << (input_ == P4Input::kZ2 ? "p4_lift(" : "p4_conv(") << in_ << "->"
     << out_ << ", k" << k_ << ", p" << pad_ << (has_bias_ ? "" : ", no bias")
     << ")";
  return os.str();
}

template <typename T>
Shape P4Conv<T>::OutputShape(const Shape& input) const {
  if (input_ == P4Input::kZ2) {
    CheckInputShape(Name(), input, {-1, in_, -1, -1});
  } else {
    CheckInputShape(Name(), input, {-1, in_, kP4Order, -1, -1});
  }
  const int nd = int(input.size());
  const std::int64_t h = input[nd - 2], w = input[nd - 1];
  SYMOPT_CHECK(h + 2 * pad_ >= k_ && w + 2 * pad_ >= k_,
               Name() << ": input shape " << ShapeString(input)
                      << " is smaller than the kernel (padded size "
                      << h + 2 * pad_ << "x" << w + 2 * pad_ << ")");
  return {
      input[0], out_, kP4Order, h + 2 * pad_ - k_ + 1, w + 2 * pad_ - k_ + 1};
}

template <typename T>
void P4Conv<T>::ExpandFilters(T* bank) const {
  if (weight_.value.is_cuda()) {
    backend::ExpandGpu(DeviceState().bank_tables,
                       1,
                       weight_.value.data(),
                       std::int64_t(0),
                       bank);
    return;
  }
  const std::vector<std::int32_t>& c = pattern_.class_of;
  const T* theta = weight_.value.data();
  for (std::size_t e = 0; e < c.size(); ++e) bank[e] = theta[c[e]];
}

template <typename T>
void P4Conv<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode) {
  const Shape ys = OutputShape(x.shape());
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  const internal::ConvGeometry g = Geometry(x.shape(), ys, in_ * s_, k_, pad_);
  const std::int64_t rows = out_ * kP4Order;
  if (x.is_cuda()) {
    backend::P4DeviceState<T>& st = DeviceState();
    T* bank = backend::Reserve(st.bank, rows * g.kk());
    ExpandFilters(bank);
    T* bias_rows = nullptr;
    if (has_bias_) {
      bias_rows = backend::Reserve(st.bias_rows, rows);
      backend::ExpandGpu(
          st.bias_tables, 1, bias_.value.data(), std::int64_t(0), bias_rows);
    }
    y.Resize(ys, x.device());
    backend::ConvForwardGpu(
        g, x.data(), bank, rows, bias_rows, y.data(), st.conv, column_budget_);
    return;
  }
  // The expanded bank and the bias of every bank row live only for this call.
  std::vector<T> bank(rows * g.kk()), bias(has_bias_ ? rows : 0);
  ExpandFilters(bank.data());
  for (std::size_t row = 0; row < bias.size(); ++row) {
    bias[row] = bias_.value[row / kP4Order];
  }
  y.Resize(ys, x.device());
  internal::ConvForwardCpu(g,
                           x.data(),
                           bank.data(),
                           rows,
                           has_bias_ ? bias.data() : nullptr,
                           y.data(),
                           scratch_);
}

template <typename T>
void P4Conv<T>::Backward(const Tensor<T>& x,
                         const Tensor<T>&,
                         const Tensor<T>& dy,
                         Tensor<T>& dx) {
  const Shape ys = OutputShape(x.shape());
  CheckSameShape(Name(), "output gradient", dy.shape(), ys);
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  CheckLayerDevice(Name(), "output gradient", this->device(), dy.device());
  const internal::ConvGeometry g = Geometry(x.shape(), ys, in_ * s_, k_, pad_);
  const std::int64_t rows = out_ * kP4Order;
  const bool need_dx = this->input_grad_required();
  dx.Resize(need_dx ? x.shape() : Shape{0}, x.device());
  if (x.is_cuda()) {
    // As below, on the device: the bank, its gradient and the bank rows' bias
    // gradients (zeroed: the convolution adds to them), then the per-class
    // sums into dtheta and dbias (gathers over the CSR of members).
    backend::P4DeviceState<T>& st = DeviceState();
    T* bank = backend::Reserve(st.bank, rows * g.kk());
    ExpandFilters(bank);
    T* dbank = backend::Reserve(st.dbank, rows * g.kk());
    st.dbank.FillBytes(0);
    T* dbias_rows = nullptr;
    if (has_bias_) {
      dbias_rows = backend::Reserve(st.dbias_rows, rows);
      st.dbias_rows.FillBytes(0);
    }
    backend::ConvBackwardGpu(g,
                             x.data(),
                             bank,
                             rows,
                             dy.data(),
                             dbank,
                             dbias_rows,
                             need_dx ? dx.data() : nullptr,
                             st.conv,
                             column_budget_);
    backend::ClassSumGpu(st.bank_tables,
                         1,
                         static_cast<const T*>(dbank),
                         std::int64_t(0),
                         true,
                         weight_.grad.data());
    if (has_bias_) {
      backend::ClassSumGpu(st.bias_tables,
                           1,
                           static_cast<const T*>(dbias_rows),
                           std::int64_t(0),
                           true,
                           bias_.grad.data());
    }
    return;
  }
  std::vector<T> bank(rows * g.kk());
  ExpandFilters(bank.data());
  // Gradients of the bank and of the bank rows' biases, then scatter-added:
  // every bank entry's gradient goes to its free weight, every row's bias
  // gradient to its group channel.
  std::vector<T> dbank(rows * g.kk(), T(0)), dbias(has_bias_ ? rows : 0, T(0));
  internal::ConvBackwardCpu(g,
                            x.data(),
                            bank.data(),
                            rows,
                            dy.data(),
                            dbank.data(),
                            has_bias_ ? dbias.data() : nullptr,
                            need_dx ? dx.data() : nullptr,
                            scratch_);
  // dtheta[c] += sum of dbank over the members of class c, ascending (the
  // GPU's gather, ClassOps::Sum).
  T* dtheta = weight_.grad.data();
  for (std::int64_t c = 0; c < pattern_.num_classes; ++c) {
    dtheta[c] = internal::ClassOps::Sum(dbank.data(),
                                        members_.data(),
                                        member_offsets_[std::size_t(c)],
                                        member_offsets_[std::size_t(c) + 1],
                                        dtheta[c]);
  }
  for (std::size_t row = 0; row < dbias.size(); ++row) {
    bias_.grad[row / kP4Order] += dbias[row];
  }
}

template <typename T>
std::vector<Parameter<T>> P4Conv<T>::Params() {
  std::vector<Parameter<T>> p{weight_.View()};
  if (has_bias_) p.push_back(bias_.View());
  return p;
}

// ---- RotationPool -----------------------------------------------------------

template <typename T>
std::string RotationPool<T>::Name() const {
  return kind_ == RotationPoolKind::kMax ? "rotation_pool(max)"
                                         : "rotation_pool(mean)";
}

template <typename T>
Shape RotationPool<T>::OutputShape(const Shape& input) const {
  CheckInputShape(Name(), input, {-1, -1, kP4Order, -1, -1});
  return {input[0], input[1], input[3], input[4]};
}

template <typename T>
void RotationPool<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode) {
  const Shape ys = OutputShape(x.shape());
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  y.Resize(ys, x.device());
  const std::int64_t groups = ys[0] * ys[1], hw = ys[2] * ys[3];
  const bool is_max = kind_ == RotationPoolKind::kMax;
  if (x.is_cuda()) {
    backend::RotationPoolForwardGpu(x.data(), groups, hw, is_max, y.data());
    return;
  }
  using internal::RotationPoolOps;
  for (std::int64_t g = 0; g < groups; ++g) {
    const T* xg = x.data() + g * kP4Order * hw;
    T* yg = y.data() + g * hw;
    for (std::int64_t p = 0; p < hw; ++p) {
      yg[p] = is_max ? RotationPoolOps::Max(xg, hw, p)
                     : RotationPoolOps::Mean(xg, hw, p);
    }
  }
}

template <typename T>
void RotationPool<T>::Backward(const Tensor<T>& x,
                               const Tensor<T>&,
                               const Tensor<T>& dy,
                               Tensor<T>& dx) {
  const Shape ys = OutputShape(x.shape());
  CheckSameShape(Name(), "output gradient", dy.shape(), ys);
  CheckLayerDevice(Name(), "input", this->device(), x.device());
  CheckLayerDevice(Name(), "output gradient", this->device(), dy.device());
  dx.Resize(x.shape(), x.device());
  const std::int64_t groups = ys[0] * ys[1], hw = ys[2] * ys[3];
  const bool is_max = kind_ == RotationPoolKind::kMax;
  if (x.is_cuda()) {
    backend::RotationPoolBackwardGpu(
        x.data(), dy.data(), groups, hw, is_max, dx.data());
    return;
  }
  for (std::int64_t g = 0; g < groups; ++g) {
    const T* xg = x.data() + g * kP4Order * hw;
    const T* dyg = dy.data() + g * hw;
    T* dxg = dx.data() + g * kP4Order * hw;
    for (std::int64_t p = 0; p < hw; ++p) {
      internal::RotationPoolOps::Backward(xg, dyg[p], hw, p, is_max, dxg);
    }
  }
}

// ---- P4BatchNorm ------------------------------------------------------------

template <typename T>
P4BatchNorm<T>::P4BatchNorm(std::int64_t channels, double momentum, double eps)
    : c_(channels), bn_(channels, momentum, eps) {}

template <typename T>
std::string P4BatchNorm<T>::Name() const {
  return "p4_batchnorm(" + std::to_string(c_) + ")";
}

template <typename T>
Shape P4BatchNorm<T>::OutputShape(const Shape& input) const {
  CheckInputShape(Name(), input, {-1, c_, kP4Order, -1, -1});
  return input;
}

template <typename T>
void P4BatchNorm<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) {
  OutputShape(x.shape());
  bn_.Forward(x, y, mode);
}

template <typename T>
void P4BatchNorm<T>::Backward(const Tensor<T>& x,
                              const Tensor<T>& y,
                              const Tensor<T>& dy,
                              Tensor<T>& dx) {
  CheckSameShape(Name(), "output gradient", dy.shape(), OutputShape(x.shape()));
  bn_.set_input_grad_required(this->input_grad_required());
  bn_.Backward(x, y, dy, dx);
}

template Tensor<float> ActP4(const Tensor<float>&, int);
template Tensor<double> ActP4(const Tensor<double>&, int);
template class P4Conv<float>;
template class P4Conv<double>;
template class RotationPool<float>;
template class RotationPool<double>;
template class P4BatchNorm<float>;
template class P4BatchNorm<double>;

}  // namespace nn
}  // namespace symopt
