#include <omp.h>

#include <Eigen/Core>
#include <cmath>
#include <random>
#include <sstream>

#include "manifolds/euclidean.h"
#include "nn/group_conv.h"
#include "nn_orbits.h"

namespace symopt {
namespace nn {
namespace {

template <typename T>
using RowMatrix =
    Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Column buffer of a stride-1 cross-correlation: cols[(c, ki, kj), (oh, ow)]
// = x[c, oh - pad + ki, ow - pad + kj] (0 outside). x: [C, H, W]; cols:
// (C*k*k) x (Ho*Wo), row-major.
template <typename T>
void Im2Col(const T* x,
            std::int64_t C,
            std::int64_t H,
            std::int64_t W,
            std::int64_t k,
            std::int64_t pad,
            std::int64_t Ho,
            std::int64_t Wo,
            T* cols) {
  for (std::int64_t c = 0; c < C; ++c) {
    for (std::int64_t ki = 0; ki < k; ++ki) {
      for (std::int64_t kj = 0; kj < k; ++kj) {
        T* out = cols + ((c * k + ki) * k + kj) * Ho * Wo;
        for (std::int64_t oh = 0; oh < Ho; ++oh) {
          const std::int64_t ih = oh - pad + ki;
          T* o = out + oh * Wo;
          if (ih < 0 || ih >= H) {
            for (std::int64_t ow = 0; ow < Wo; ++ow) o[ow] = T(0);
            continue;
          }
          const T* xr = x + (c * H + ih) * W;
          for (std::int64_t ow = 0; ow < Wo; ++ow) {
            const std::int64_t iw = ow - pad + kj;
            o[ow] = (iw >= 0 && iw < W) ? xr[iw] : T(0);
          }
        }
      }
    }
  }
}

// The adjoint of Im2Col: dx[c, ih, iw] += sum of the cols entries that read
// it. dx must be zeroed by the caller.
template <typename T>
void Col2ImAdd(const T* cols,
               std::int64_t C,
               std::int64_t H,
               std::int64_t W,
               std::int64_t k,
               std::int64_t pad,
               std::int64_t Ho,
               std::int64_t Wo,
               T* dx) {
  for (std::int64_t c = 0; c < C; ++c) {
    for (std::int64_t ki = 0; ki < k; ++ki) {
      for (std::int64_t kj = 0; kj < k; ++kj) {
        const T* in = cols + ((c * k + ki) * k + kj) * Ho * Wo;
        for (std::int64_t oh = 0; oh < Ho; ++oh) {
          const std::int64_t ih = oh - pad + ki;
          if (ih < 0 || ih >= H) continue;
          T* xr = dx + (c * H + ih) * W;
          const T* row = in + oh * Wo;
          for (std::int64_t ow = 0; ow < Wo; ++ow) {
            const std::int64_t iw = ow - pad + kj;
            if (iw >= 0 && iw < W) xr[iw] += row[ow];
          }
        }
      }
    }
  }
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
  const std::int64_t S = RotationsIn(input), k = kernel;
  const std::int64_t cols = in_channels * S * k * k;
  const std::int64_t rows = out_channels * kP4Order;
  auto index = [&](std::int64_t co,
                   std::int64_t r,
                   std::int64_t ci,
                   std::int64_t s,
                   std::int64_t i,
                   std::int64_t j) {
    return (co * kP4Order + r) * cols + ((ci * S + s) * k + i) * k + j;
  };
  // Equivariance layer(g x) = g layer(x), with (g f)[r] = R f[r-1], holds for
  // every x iff B[r+1, s+1] = R B[r, s], i.e. B[r+1, s+1][p] = B[r, s][sigma
  // p]: entry (r, s, p) must equal entry (r+1, s+1, sigma^-1 p), where
  // sigma(i, j) = (j, k-1-i) and sigma^-1(i, j) = (k-1-j, i). This generator
  // spans the cyclic group C4; the classes are its orbits.
  std::vector<std::int64_t> generator(rows * cols);
  for (std::int64_t co = 0; co < out_channels; ++co) {
    for (std::int64_t r = 0; r < kP4Order; ++r) {
      for (std::int64_t ci = 0; ci < in_channels; ++ci) {
        for (std::int64_t s = 0; s < S; ++s) {
          for (std::int64_t i = 0; i < k; ++i) {
            for (std::int64_t j = 0; j < k; ++j) {
              generator[index(co, r, ci, s, i, j)] =
                  index(co, (r + 1) % kP4Order, ci, (s + 1) % S, k - 1 - j, i);
            }
          }
        }
      }
    }
  }
  TiePattern pattern;
  pattern.rows = rows;
  pattern.cols = cols;
  pattern.class_of =
      internal::OrbitClasses(rows * cols, {generator}, &pattern.num_classes);
  return pattern;
}

// ---- P4Conv ---------------------------------------------------------------

template <typename T>
P4Conv<T>::P4Conv(P4Input input,
                  std::int64_t in_channels,
                  std::int64_t out_channels,
                  std::int64_t kernel,
                  std::int64_t padding,
                  bool bias,
                  std::uint64_t seed)
    : input_(input),
      in_(in_channels),
      out_(out_channels),
      k_(kernel),
      pad_(padding),
      s_(RotationsIn(input)) {
  SYMOPT_CHECK(
      in_channels >= 1 && out_channels >= 1 && kernel >= 1 && padding >= 0,
      "P4Conv: need channels >= 1, kernel >= 1, padding >= 0; got in="
          << in_channels << " out=" << out_channels << " kernel=" << kernel
          << " padding=" << padding);
  pattern_ = P4FilterPattern(input, in_, out_, k_);
  const std::int64_t fan_in = in_ * s_ * k_ * k_;
  // The compact layout: theta row c_out = the filter at output rotation 0.
  SYMOPT_CHECK(pattern_.num_classes == out_ * fan_in,
               "P4Conv: derived " << pattern_.num_classes
                                  << " free weights, expected "
                                  << out_ * fan_in);
  theta_.resize(pattern_.num_classes);
  dtheta_.assign(theta_.size(), T(0));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, std::sqrt(2.0 / fan_in));
  for (T& w : theta_) w = T(normal(rng));
  if (bias) {
    bias_.assign(out_, T(0));
    dbias_.assign(out_, T(0));
    bias_manifold_ = std::make_shared<Euclidean<T>>(1, out_);
  }
  weight_manifold_ = std::make_shared<Euclidean<T>>(out_, fan_in);
}

template <typename T>
void P4Conv<T>::SetWeightManifold(std::shared_ptr<const Manifold<T>> manifold) {
  SYMOPT_CHECK(manifold != nullptr, Name() << ": weight manifold is null");
  SYMOPT_CHECK(
      manifold->rows() == out_ && manifold->cols() == in_ * s_ * k_ * k_,
      Name() << ": weight manifold " << manifold->Describe()
             << " does not match the weight shape " << out_ << "x"
             << in_ * s_ * k_ * k_);
  weight_manifold_ = std::move(manifold);
}

template <typename T>
std::string P4Conv<T>::Name() const {
  std::ostringstream os;
  os << (input_ == P4Input::kZ2 ? "p4_lift(" : "p4_conv(") << in_ << "->"
     << out_ << ", k" << k_ << ", p" << pad_ << ")";
  return os.str();
}

template <typename T>
void P4Conv<T>::CheckInput(const Shape& x) const {
  const bool lift = input_ == P4Input::kZ2;
  const int nd = lift ? 4 : 5;
  const bool ok = int(x.size()) == nd && x[1] == in_ &&
                  (lift || x[2] == kP4Order) && x[0] >= 1 &&
                  x[nd - 2] + 2 * pad_ >= k_ && x[nd - 1] + 2 * pad_ >= k_;
  SYMOPT_CHECK(ok,
               Name() << ": input shape " << ShapeString(x)
                      << " does not match the expected [N, " << in_
                      << (lift ? "" : ", 4")
                      << ", H, W] with H, W >= " << k_ - 2 * pad_);
}

template <typename T>
Shape P4Conv<T>::OutputShape(const Shape& x) const {
  CheckInput(x);
  const int nd = int(x.size());
  return {x[0],
          out_,
          kP4Order,
          x[nd - 2] + 2 * pad_ - k_ + 1,
          x[nd - 1] + 2 * pad_ - k_ + 1};
}

template <typename T>
void P4Conv<T>::ExpandFilters(T* bank) const {
  const std::vector<std::int32_t>& c = pattern_.class_of;
  for (std::size_t e = 0; e < c.size(); ++e) bank[e] = theta_[c[e]];
}

template <typename T>
void P4Conv<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode) {
  const Shape ys = OutputShape(x.shape());
  const std::int64_t N = x.dim(0), H = x.dim(x.ndim() - 2),
                     W = x.dim(x.ndim() - 1);
  const std::int64_t Ho = ys[3], Wo = ys[4], P = Ho * Wo;
  const std::int64_t cin = in_ * s_, kdim = cin * k_ * k_,
                     rows = out_ * kP4Order;
  // The expanded bank lives only for this call.
  std::vector<T> bank(rows * kdim);
  ExpandFilters(bank.data());
  y.Resize(ys);
  const Eigen::Map<const RowMatrix<T>> B(bank.data(), rows, kdim);
  const T* xd = x.data();
  T* yd = y.data();
#pragma omp parallel
  {
    std::vector<T> cols(kdim * P);
#pragma omp for schedule(static)
    for (std::int64_t n = 0; n < N; ++n) {
      Im2Col(xd + n * cin * H * W, cin, H, W, k_, pad_, Ho, Wo, cols.data());
      Eigen::Map<RowMatrix<T>> Y(yd + n * rows * P, rows, P);
      Y.noalias() = B * Eigen::Map<const RowMatrix<T>>(cols.data(), kdim, P);
      if (!bias_.empty()) {
        for (std::int64_t row = 0; row < rows; ++row) {
          Y.row(row).array() += bias_[row / kP4Order];
        }
      }
    }
  }
}

template <typename T>
void P4Conv<T>::Backward(const Tensor<T>& x,
                         const Tensor<T>&,
                         const Tensor<T>& dy,
                         Tensor<T>& dx) {
  const Shape ys = OutputShape(x.shape());
  SYMOPT_CHECK(dy.shape() == ys,
               Name() << ": output gradient shape " << ShapeString(dy.shape())
                      << " does not match the output shape "
                      << ShapeString(ys));
  const std::int64_t N = x.dim(0), H = x.dim(x.ndim() - 2),
                     W = x.dim(x.ndim() - 1);
  const std::int64_t Ho = ys[3], Wo = ys[4], P = Ho * Wo;
  const std::int64_t cin = in_ * s_, kdim = cin * k_ * k_,
                     rows = out_ * kP4Order;
  std::vector<T> bank(rows * kdim);
  ExpandFilters(bank.data());
  const Eigen::Map<const RowMatrix<T>> B(bank.data(), rows, kdim);
  dx.Resize(x.shape());
  const T* xd = x.data();
  const T* dyd = dy.data();
  T* dxd = dx.data();
  // Per-thread partial gradients of the bank and bias, reduced in thread
  // order afterwards so the result does not depend on scheduling.
  const int max_threads = omp_get_max_threads();
  std::vector<std::vector<T>> dbank(max_threads), dbias(max_threads);
#pragma omp parallel
  {
    const int t = omp_get_thread_num();
    std::vector<T> cols(kdim * P), dcols(kdim * P);
    dbank[t].assign(rows * kdim, T(0));
    dbias[t].assign(rows, T(0));
    Eigen::Map<RowMatrix<T>> dB(dbank[t].data(), rows, kdim);
#pragma omp for schedule(static)
    for (std::int64_t n = 0; n < N; ++n) {
      Im2Col(xd + n * cin * H * W, cin, H, W, k_, pad_, Ho, Wo, cols.data());
      const Eigen::Map<const RowMatrix<T>> C(cols.data(), kdim, P);
      const Eigen::Map<const RowMatrix<T>> dY(dyd + n * rows * P, rows, P);
      dB.noalias() += dY * C.transpose();
      Eigen::Map<RowMatrix<T>>(dcols.data(), kdim, P).noalias() =
          B.transpose() * dY;
      T* dxn = dxd + n * cin * H * W;
      std::fill(dxn, dxn + cin * H * W, T(0));
      Col2ImAdd(dcols.data(), cin, H, W, k_, pad_, Ho, Wo, dxn);
      if (!bias_.empty()) {
        for (std::int64_t row = 0; row < rows; ++row) {
          dbias[t][row] += dY.row(row).sum();
        }
      }
    }
  }
  // Scatter-add: every bank entry's gradient goes to its free weight.
  const std::vector<std::int32_t>& c = pattern_.class_of;
  for (int t = 0; t < max_threads; ++t) {
    if (dbank[t].empty()) continue;
    for (std::size_t e = 0; e < c.size(); ++e) dtheta_[c[e]] += dbank[t][e];
    if (!bias_.empty()) {
      for (std::int64_t row = 0; row < rows; ++row) {
        dbias_[row / kP4Order] += dbias[t][row];
      }
    }
  }
}

template <typename T>
std::vector<Parameter<T>> P4Conv<T>::Params() {
  std::vector<Parameter<T>> p;
  p.push_back(MakeParameter<T>(Name() + ".weight",
                               theta_.data(),
                               dtheta_.data(),
                               out_,
                               in_ * s_ * k_ * k_,
                               weight_manifold_));
  if (!bias_.empty()) {
    p.push_back(MakeParameter<T>(Name() + ".bias",
                                 bias_.data(),
                                 dbias_.data(),
                                 1,
                                 out_,
                                 bias_manifold_));
  }
  return p;
}

// ---- RotationPool -----------------------------------------------------------

template <typename T>
std::string RotationPool<T>::Name() const {
  return kind_ == RotationPoolKind::kMax ? "rotation_pool(max)"
                                         : "rotation_pool(mean)";
}

template <typename T>
Shape RotationPool<T>::OutputShape(const Shape& x) const {
  SYMOPT_CHECK(x.size() == 5 && x[2] == kP4Order,
               Name() << ": input shape " << ShapeString(x)
                      << " does not match the expected [N, C, 4, H, W]");
  return {x[0], x[1], x[3], x[4]};
}

template <typename T>
void RotationPool<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode) {
  const Shape ys = OutputShape(x.shape());
  y.Resize(ys);
  const std::int64_t groups = ys[0] * ys[1], hw = ys[2] * ys[3];
  for (std::int64_t g = 0; g < groups; ++g) {
    const T* xg = x.data() + g * kP4Order * hw;
    T* yg = y.data() + g * hw;
    for (std::int64_t p = 0; p < hw; ++p) {
      T acc = xg[p];
      for (std::int64_t r = 1; r < kP4Order; ++r) {
        const T v = xg[r * hw + p];
        acc = kind_ == RotationPoolKind::kMax ? (v > acc ? v : acc) : acc + v;
      }
      yg[p] = kind_ == RotationPoolKind::kMax ? acc : acc / T(kP4Order);
    }
  }
}

template <typename T>
void RotationPool<T>::Backward(const Tensor<T>& x,
                               const Tensor<T>&,
                               const Tensor<T>& dy,
                               Tensor<T>& dx) {
  const Shape ys = OutputShape(x.shape());
  SYMOPT_CHECK(dy.shape() == ys,
               Name() << ": output gradient shape " << ShapeString(dy.shape())
                      << " does not match the output shape "
                      << ShapeString(ys));
  dx.Resize(x.shape());
  const std::int64_t groups = ys[0] * ys[1], hw = ys[2] * ys[3];
  for (std::int64_t g = 0; g < groups; ++g) {
    const T* xg = x.data() + g * kP4Order * hw;
    const T* dyg = dy.data() + g * hw;
    T* dxg = dx.data() + g * kP4Order * hw;
    for (std::int64_t p = 0; p < hw; ++p) {
      if (kind_ == RotationPoolKind::kMean) {
        for (std::int64_t r = 0; r < kP4Order; ++r) {
          dxg[r * hw + p] = dyg[p] / T(kP4Order);
        }
        continue;
      }
      std::int64_t best = 0;
      for (std::int64_t r = 1; r < kP4Order; ++r) {
        if (xg[r * hw + p] > xg[best * hw + p]) best = r;
      }
      for (std::int64_t r = 0; r < kP4Order; ++r) {
        dxg[r * hw + p] = r == best ? dyg[p] : T(0);
      }
    }
  }
}

// ---- P4BatchNorm ------------------------------------------------------------

template <typename T>
P4BatchNorm<T>::P4BatchNorm(std::int64_t channels, double momentum, double eps)
    : c_(channels), momentum_(momentum), eps_(eps) {
  SYMOPT_CHECK(channels >= 1 && momentum >= 0 && momentum <= 1 && eps > 0,
               "P4BatchNorm: need channels >= 1, momentum in [0, 1], eps > 0;"
               " got channels="
                   << channels << " momentum=" << momentum << " eps=" << eps);
  gamma_.assign(c_, T(1));
  beta_.assign(c_, T(0));
  dgamma_.assign(c_, T(0));
  dbeta_.assign(c_, T(0));
  running_mean_.assign(c_, 0.0);
  running_var_.assign(c_, 1.0);
  manifold_ = std::make_shared<Euclidean<T>>(1, c_);
}

template <typename T>
std::string P4BatchNorm<T>::Name() const {
  return "p4_batch_norm(" + std::to_string(c_) + ")";
}

template <typename T>
Shape P4BatchNorm<T>::OutputShape(const Shape& x) const {
  SYMOPT_CHECK(x.size() == 5 && x[1] == c_ && x[2] == kP4Order && x[0] >= 1,
               Name() << ": input shape " << ShapeString(x)
                      << " does not match the expected [N, " << c_
                      << ", 4, H, W]");
  return x;
}

template <typename T>
void P4BatchNorm<T>::Forward(const Tensor<T>& x, Tensor<T>& y, Mode mode) {
  const Shape& s = OutputShape(x.shape());
  const std::int64_t N = s[0], block = kP4Order * s[3] * s[4];
  const std::int64_t count = N * block;
  if (mode == Mode::kTrain) {
    SYMOPT_CHECK(count >= 2,
                 Name() << ": batch statistics need at least 2 values per "
                           "channel, input shape "
                        << ShapeString(s));
  }
  std::vector<double> mean(c_), inv_std(c_);
  for (std::int64_t c = 0; c < c_; ++c) {
    if (mode == Mode::kEval) {
      mean[c] = running_mean_[c];
      inv_std[c] = 1.0 / std::sqrt(running_var_[c] + eps_);
      continue;
    }
    double sum = 0.0;
    for (std::int64_t n = 0; n < N; ++n) {
      const T* xb = x.data() + (n * c_ + c) * block;
      for (std::int64_t i = 0; i < block; ++i) sum += double(xb[i]);
    }
    const double mu = sum / double(count);
    double ss = 0.0;
    for (std::int64_t n = 0; n < N; ++n) {
      const T* xb = x.data() + (n * c_ + c) * block;
      for (std::int64_t i = 0; i < block; ++i) {
        const double d = double(xb[i]) - mu;
        ss += d * d;
      }
    }
    const double var = ss / double(count);
    mean[c] = mu;
    inv_std[c] = 1.0 / std::sqrt(var + eps_);
    running_mean_[c] = (1 - momentum_) * running_mean_[c] + momentum_ * mu;
    running_var_[c] = (1 - momentum_) * running_var_[c] +
                      momentum_ * var * double(count) / double(count - 1);
  }
  y.Resize(s);
  for (std::int64_t n = 0; n < N; ++n) {
    for (std::int64_t c = 0; c < c_; ++c) {
      const T* xb = x.data() + (n * c_ + c) * block;
      T* yb = y.data() + (n * c_ + c) * block;
      const double scale = double(gamma_[c]) * inv_std[c];
      const double shift = double(beta_[c]) - scale * mean[c];
      for (std::int64_t i = 0; i < block; ++i) {
        yb[i] = T(scale * double(xb[i]) + shift);
      }
    }
  }
  last_mode_ = mode;
  last_shape_ = s;
  mean_ = std::move(mean);
  inv_std_ = std::move(inv_std);
}

template <typename T>
void P4BatchNorm<T>::Backward(const Tensor<T>& x,
                              const Tensor<T>&,
                              const Tensor<T>& dy,
                              Tensor<T>& dx) {
  const Shape& s = OutputShape(x.shape());
  SYMOPT_CHECK(s == last_shape_,
               Name() << ": Backward input shape " << ShapeString(s)
                      << " differs from the last Forward's "
                      << ShapeString(last_shape_));
  SYMOPT_CHECK(dy.shape() == s,
               Name() << ": output gradient shape " << ShapeString(dy.shape())
                      << " does not match the output shape " << ShapeString(s));
  const std::int64_t N = s[0], block = kP4Order * s[3] * s[4];
  const double count = double(N * block);
  dx.Resize(s);
  for (std::int64_t c = 0; c < c_; ++c) {
    // sum dy and sum dy * xhat over the channel's N*4*H*W values.
    double sdy = 0.0, sdyx = 0.0;
    for (std::int64_t n = 0; n < N; ++n) {
      const T* xb = x.data() + (n * c_ + c) * block;
      const T* db = dy.data() + (n * c_ + c) * block;
      for (std::int64_t i = 0; i < block; ++i) {
        const double xhat = (double(xb[i]) - mean_[c]) * inv_std_[c];
        sdy += double(db[i]);
        sdyx += double(db[i]) * xhat;
      }
    }
    dgamma_[c] += T(sdyx);
    dbeta_[c] += T(sdy);
    const double g = double(gamma_[c]) * inv_std_[c];
    // Train: dx = g (dy - mean(dy) - xhat mean(dy xhat)) (the batch
    // statistics depend on x); eval: dx = g dy.
    const bool train = last_mode_ == Mode::kTrain;
    const double mdy = train ? sdy / count : 0.0;
    const double mdyx = train ? sdyx / count : 0.0;
    for (std::int64_t n = 0; n < N; ++n) {
      const T* xb = x.data() + (n * c_ + c) * block;
      const T* db = dy.data() + (n * c_ + c) * block;
      T* dxb = dx.data() + (n * c_ + c) * block;
      for (std::int64_t i = 0; i < block; ++i) {
        const double xhat = (double(xb[i]) - mean_[c]) * inv_std_[c];
        dxb[i] = T(g * (double(db[i]) - mdy - xhat * mdyx));
      }
    }
  }
}

template <typename T>
std::vector<Parameter<T>> P4BatchNorm<T>::Params() {
  return {
      MakeParameter<T>(
          Name() + ".gamma", gamma_.data(), dgamma_.data(), 1, c_, manifold_),
      MakeParameter<T>(
          Name() + ".beta", beta_.data(), dbeta_.data(), 1, c_, manifold_)};
}

template class P4Conv<float>;
template class P4Conv<double>;
template class RotationPool<float>;
template class RotationPool<double>;
template class P4BatchNorm<float>;
template class P4BatchNorm<double>;

}  // namespace nn
}  // namespace symopt
